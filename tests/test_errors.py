"""Error sources: the split by material, and the distance of each eval formula to its nearest training formula."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from mrl.runs import make_split


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
