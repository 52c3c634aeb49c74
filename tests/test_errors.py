"""Error sources: the split by material, and the distance of each eval formula to its nearest training formula."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mrl.error_sources import distance_errors, error_by_distance, nearest_distances
from mrl.plots import error_by_distance_figure
from mrl.splits import make_split


def test_material_split_holds_out_materials_never_the_base(tiny_data):
    labels = make_split(tiny_data, "material", eval_fraction=0.1, seed=3)
    forms = tiny_data.formulas.merge(
        tiny_data.properties[["formula_id"]].assign(split=labels), on="formula_id")
    train_materials = set(forms.loc[forms["split"] == "train", "material_id"])
    held = set(forms["material_id"]) - train_materials
    totals = tiny_data.formulas.groupby("material_id")["content"].sum()
    assert len(held) == round(0.1 * (tiny_data.n_materials - 1))  # the base is not a candidate
    assert totals.idxmax() not in held
    eval_sets = forms[forms["split"] == "eval"].groupby("formula_id")["material_id"].agg(set)
    assert all(s & held for s in eval_sets)  # every eval formula holds a held-out material; no train one does
    assert set(labels) == {"train", "eval"}
    assert (make_split(tiny_data, "material", 0.1, seed=3) == labels).all()
    assert (make_split(tiny_data, "material", 0.1, seed=4) != labels).any()


def test_material_split_keeps_test_rows(tiny_data):
    props = tiny_data.properties.assign(split=np.where(np.arange(tiny_data.n_samples) < 50, "test", "train"))
    data = replace(tiny_data, properties=props)
    labels = make_split(data, "material", 0.1, seed=0)
    assert (labels[:50] == "test").all() and (labels[50:] != "test").all()


def _case() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training formulas T1, T2; eval formulas: E1 = T1's contents, E2 = T1's ingredients plus B at other ratios,
    E3 sharing no ingredient with any training formula. Contents in %, as a user would give them."""
    formulas = pd.DataFrame(
        [("T1", "W", 80), ("T1", "A", 20), ("T2", "W", 50), ("T2", "B", 50), ("E1", "A", 20), ("E1", "W", 80),
         ("E2", "W", 70), ("E2", "A", 20), ("E2", "B", 10), ("E3", "C", 60), ("E3", "D", 40)],
        columns=["formula_id", "material_id", "content"])
    predictions = pd.DataFrame({"formula_id": ["T1", "T2", "E1", "E2", "E3"],
                                "split": ["train", "train", "eval", "eval", "eval"],
                                "y_true": [10.0, 100.0, 10.0, 10.0, 10.0], "y_pred": [10.0, 100.0, 10.0, 20.0, 1000.0]})
    return formulas, predictions


def test_distance_to_the_nearest_training_formula():
    formulas, predictions = _case()
    table = distance_errors(predictions, formulas).set_index("formula_id")
    # E2 against T1: overlap min(.7,.8) + min(.2,.2) = .9 -> 0.2; against T2: min(.7,.5) + min(.1,.5) = .6 -> 0.8
    assert table["train_distance"].to_dict() == pytest.approx({"T1": 0, "T2": 0, "E1": 0, "E2": 0.2, "E3": 2})
    assert table.loc[["E1", "E2"], "nearest_train_formula"].tolist() == ["T1", "T1"]
    assert table.loc["E3", "n_unseen"] == 2  # the usage columns come along

    binned = error_by_distance(distance_errors(predictions, formulas)).set_index(["distance_bin", "ingredients"])
    assert binned.loc[("0", "any"), "n"] == 1 and binned.loc[("0.1-0.25", "all seen"), "mae"] == 10.0
    assert binned.loc[("1-2", "some unseen"), "mae_log10"] == pytest.approx(2.0)
    assert binned.loc[("all", "any"), "n"] == 3 and binned.loc[("all", "any"), "mae_log10"] == pytest.approx(0.767,
                                                                                                         abs=1e-3)
    assert list(dict.fromkeys(binned.index.get_level_values(0))) == ["0", "0.1-0.25", "1-2", "all"]
    assert error_by_distance_figure(binned.reset_index()).axes


def test_chunked_distances_equal_unchunked_and_brute_force():
    rng = np.random.default_rng(0)
    query = sp.random(37, 15, density=0.3, random_state=1, format="csr")
    reference = sp.random(23, 15, density=0.3, random_state=2, format="csr")
    brute = np.abs(query.toarray()[:, None, :] - reference.toarray()[None, :, :]).sum(axis=2)
    whole = nearest_distances(query, reference, chunk_size=1000)
    np.testing.assert_allclose(whole[0], brute.min(axis=1), atol=1e-12)
    np.testing.assert_array_equal(whole[1], brute.argmin(axis=1))
    for chunk_size in (1, 5, int(rng.integers(2, 30))):
        chunked = nearest_distances(query, reference, chunk_size=chunk_size)
        np.testing.assert_array_equal(chunked[0], whole[0])
        np.testing.assert_array_equal(chunked[1], whole[1])


def test_log10_mae_in_decades_and_nan_unless_positive():
    from mrl.metrics import log10_mae

    assert log10_mae([10.0, 100.0], [100.0, 100.0]) == pytest.approx(0.5)
    assert np.isnan(log10_mae([1.0, 0.0], [1.0, 1.0])) and np.isnan(log10_mae([1.0], [-1.0]))
    assert np.isnan(log10_mae([], []))
