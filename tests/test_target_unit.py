"""A run carries the unit of its target (issue 25): the ``target_unit`` param, else the unit in the properties
header ("viscosity [cP]", "viscosity (cP)"), so a user's report and summary show it."""
from __future__ import annotations

import pytest
from conftest import tiny_tables

from mrl.cells import header_unit
from mrl.params import RunParams
from mrl.run_outputs import property_unit
from mrl.runs import load_run, run_experiment

TINY = dict(embedding_dim=2, steps=20, batch_size=64, hidden=[8], eval_every=20, snapshot_every=20,
            checkpoint_every=20, baselines=False, device="cpu")


@pytest.mark.parametrize("header, unit", [("viscosity [cP]", "cP"), ("viscosity (mPa s)", "mPa s"),
                                          ("content (%)", "%"), ("viscosity", ""), ("ratio (a) b", "")])
def test_header_unit(header, unit):
    assert header_unit(header) == unit


def test_property_unit_prefers_the_runs_own_unit():
    assert property_unit({"data": "lab_small", "target": "viscosity"}) == "cP"
    assert property_unit({"data": "my_lab", "target": "viscosity (mPa s)"}) == "mPa s"
    assert property_unit({"data": "my_lab", "target": "viscosity", "target_unit": "Pa s"}) == "Pa s"
    assert property_unit({"data": "my_lab", "target": "hardness"}) == ""


@pytest.mark.parametrize("header, param, expected", [("viscosity [cP]", "", "cP"), ("viscosity", "mPa s", "mPa s")])
def test_a_users_run_carries_its_unit(tmp_path, header, param, expected):
    forms, props = tiny_tables(n_materials=10, n_formulas=80)
    folder = tmp_path / "data"
    folder.mkdir()
    forms.to_csv(folder / "formulas.csv", index=False)
    props.rename(columns={"viscosity": header}).to_csv(folder / "properties.csv", index=False)
    path = run_experiment(RunParams(name="unit", runs_dir=str(tmp_path / "runs"), data=str(folder),
                                    target_unit=param, **TINY), progress=False)
    metrics = load_run(path).metrics
    assert metrics["target_unit"] == expected
    assert property_unit(metrics) == expected
