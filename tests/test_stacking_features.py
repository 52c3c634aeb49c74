"""A stack base that reads the content-weighted material features (issue 26: new materials from their structure)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import tiny_tables

from mrl.adapt import add_by_features
from mrl.data import FormulaData, load_formulas
from mrl.estimator import MixtureRegressor
from mrl.stacking import fit_stack

FAST = dict(embedding_dim=4, hidden=(16,), batch_size=64, snapshot_every=50, checkpoint_every=100, progress=False,
            device="cpu")
HELD = ["M000", "M001", "M002"]


def _featured(seed: int = 0) -> FormulaData:
    """The tiny data whose materials carry their hidden vectors as feature columns (the rule is a function of the
    content-weighted features)."""
    forms, props = tiny_tables(seed=seed)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(30, 3))  # the same draw as tiny_tables' hidden vectors
    data = load_formulas(forms, props, name="tiny")
    mats = data.materials.copy()
    order = mats["material_id"].str[1:].astype(int).to_numpy()
    for j in range(3):
        mats[f"z{j}"] = z[order, j]
    return data.with_materials(mats)


def _held_out(data: FormulaData) -> tuple[FormulaData, FormulaData]:
    """Every formula holding one of :data:`HELD` to the test part: materials never seen in a training formula."""
    bad = set(data.formulas.loc[data.formulas["material_id"].isin(HELD), "formula_id"])
    test = data.properties["formula_id"].isin(bad).to_numpy()
    return data.subset(~test), data.subset(test)


def _base_inputs(est: MixtureRegressor, data: FormulaData):
    matrix, cond = est.encode(data)
    y = data.target_values()
    return matrix, cond, np.log10(y) if est.target_transform_ == "log10" else y


def test_a_feature_base_places_unseen_materials_and_says_what_it_reads(caplog):
    train, test = _held_out(_featured())
    with caplog.at_level(logging.INFO, logger="mrl.estimator"):
        est = MixtureRegressor(steps=60, eval_every=30, stack="lightgbm", features="columns", **FAST).fit(train)
    assert est.stack_.n_features == 3
    assert "content-weighted material features (3)" in caplog.text
    matrix, cond, t = _base_inputs(est, test)
    with_features = est.stack_.predict(matrix, cond, est.stack_feature_rows())
    rows, c_train, t_train = _base_inputs(est, train)
    contents_only, _, _ = fit_stack("lightgbm", rows, c_train, [], t_train, train.properties["formula_id"].to_numpy())
    assert contents_only.n_features == 0
    # the held-out materials' columns are empty in training: only the features let the base see them
    assert np.abs(with_features - t).mean() < 0.6 * np.abs(contents_only.predict(matrix, cond) - t).mean()
    with pytest.raises(ValueError, match="reads 3 material features"):
        est.stack_.predict(matrix, cond)


def test_a_feature_base_survives_save_and_load_and_new_materials(tmp_path):
    data = _featured()
    est = MixtureRegressor(steps=60, eval_every=30, stack="lightgbm", features="columns", **FAST).fit(data)
    again = MixtureRegressor.load(est.save(tmp_path / "m.pt"), device="cpu")
    np.testing.assert_array_equal(again.predict(data), est.predict(data))
    assert again.stack_.to_state()["n_features"] == 3
    # a material added from its features alone moves the base through them
    new = pd.DataFrame({"material_id": ["NEW_LOW", "NEW_HIGH"], "z0": [-2.0, 2.0], "z1": [0.0, 0.0],
                        "z2": [0.0, 0.0], "median_content": [0.2, 0.2]})
    out = add_by_features(est, new)
    formulas = pd.DataFrame({"formula_id": ["A", "A", "B", "B"], "material_id": ["M010", "NEW_LOW", "M010", "NEW_HIGH"],
                             "content": [50.0, 50.0, 50.0, 50.0]})
    low, high = out.predict(formulas)
    assert high > 2 * low  # z0 enters the hidden rule as exp(mix_0)
    np.testing.assert_array_equal(out.predict(data), est.predict(data))  # known formulas unchanged


@pytest.mark.parametrize("kind", ["ridge", "lightgbm"])
def test_the_feature_base_in_torch_equals_the_base(kind):
    """What mrl.design adds to the network's value is the base's prediction, features included; ridge keeps its
    gradient through the content-weighted features."""
    data = _featured()
    rows = data.content_matrix()[data.sample_rows()]
    features = data.materials[["z0", "z1", "z2"]].to_numpy(np.float64)
    base, _, reason = fit_stack(kind, rows, np.zeros((len(rows.indptr) - 1, 0)), [], np.log10(data.target_values()),
                                data.properties["formula_id"].to_numpy(), features=features)
    assert base.n_features == 3 and "content-weighted material features (3)" in reason
    matrix = rows[:5].toarray()
    columns = np.flatnonzero(matrix.any(axis=0))
    x = torch.tensor(matrix[:, columns], dtype=torch.float64, requires_grad=True)
    local = base.predict_local(x, columns, np.zeros(0), features)
    expected = base.predict(sp.csr_matrix(matrix), np.zeros((5, 0)), features)
    np.testing.assert_allclose(local.detach().numpy(), expected, rtol=1e-6, atol=1e-9)
    if kind == "ridge":
        local.sum().backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_inputs_too_large_for_a_dense_copy_stay_sparse_for_lightgbm(monkeypatch):
    data = _featured()
    rows = data.content_matrix()[data.sample_rows()]
    features = data.materials[["z0", "z1", "z2"]].to_numpy(np.float64)
    t = np.log10(data.target_values())
    groups = data.properties["formula_id"].to_numpy()
    no_cond = np.zeros((len(t), 0))
    dense, _, _ = fit_stack("lightgbm", rows, no_cond, [], t, groups, features=features)
    monkeypatch.setattr("mrl.stacking.MAX_DENSE_CELLS", 100)
    sparse, _, reason = fit_stack("auto", rows, no_cond, [], t, groups, features=features)
    assert sparse.kind == "lightgbm" and "ridge left out" in reason
    np.testing.assert_allclose(sparse.predict(rows, no_cond, features), dense.predict(rows, no_cond, features),
                               rtol=1e-9)
    with pytest.raises(ValueError, match="stack ridge: .* too many"):
        fit_stack("ridge", rows, no_cond, [], t, groups, features=features)
