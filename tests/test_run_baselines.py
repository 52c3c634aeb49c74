"""Baselines beside every run (issue 30): baselines.json, the train summary's verdict, the plan, ``baselines: false``."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_tables

from mrl.baselines import fit_predict
from mrl.data import load_formulas
from mrl.io import read_json
from mrl.params import RunParams
from mrl.run_baselines import fit_baselines, report_lines, summary_line
from mrl.run_files import BASELINES, METRICS
from mrl.run_outputs import baseline_scores
from mrl.runs import load_run, plan_run, run_experiment

TINY = {"steps": 40, "eval_every": 20, "snapshot_every": 20, "checkpoint_every": 20, "batch_size": 64,
        "embedding_dim": 4, "hidden": [16], "device": "cpu"}


def _tiny_lab(folder, columns: bool = False):
    forms, props = tiny_tables(n_formulas=300)
    folder.mkdir(parents=True, exist_ok=True)
    forms.to_csv(folder / "formulas.csv", index=False)
    props.to_csv(folder / "properties.csv", index=False)
    if columns:
        ids = sorted(forms["material_id"].unique())
        rng = np.random.default_rng(1)
        pd.DataFrame({"material_id": ids, "density": rng.uniform(0.8, 1.6, len(ids)),
                      "mw": rng.uniform(50, 500, len(ids))}).to_csv(folder / "materials.csv", index=False)
    return folder


def test_every_run_writes_its_baselines_and_says_who_wins(tmp_path, caplog, monkeypatch):
    data = _tiny_lab(tmp_path / "data")
    params = RunParams(name="r", runs_dir=str(tmp_path / "runs"), data=str(data), target_transform="log10", **TINY)
    with caplog.at_level(logging.INFO):
        run = run_experiment(params, progress=False)
    base = read_json(run / BASELINES)
    metrics = read_json(run / METRICS)
    assert list(base["models"]) == ["mean of train", "ridge on contents", "LightGBM on contents"]
    assert base["target_transform"] == metrics["target_transform"] == "log10"
    assert base["chosen_on"] == "calib" and base["best"] in base["models"]
    for scores in base["models"].values():
        assert scores["fit_s"] >= 0
        for split in ("train", "calib", "eval", "full"):
            assert set(metrics[split]) <= set(scores[split])  # the same metrics as metrics.json, log10 view too
            assert np.isfinite(scores[split]["mae_log10"]) and 0 <= scores[split]["within_2x"] <= 1
    # the mean is the worst of them on this learnable data, and fitted on train only (its train error is not zero)
    calib = {k: v["calib"]["mae_log10"] for k, v in base["models"].items()}
    assert max(calib, key=calib.get) == "mean of train"
    assert "baselines: mean of train, ridge on contents, LightGBM on contents" in caplog.text  # the plan
    assert "against the best baseline (chosen on calib): The eval MAE of log10 viscosity of mrl is" in caplog.text
    assert "Within 2x of the measurement: mrl" in caplog.text
    # the run's report has a section on them
    section = "\n".join(report_lines(run, metrics))
    assert "## Against classical baselines" in section and "| **mrl** |" in section
    assert all(f"| {label} |" in section for label in base["models"])
    # the sweep report reads them from the run (one path), without refitting
    monkeypatch.setattr("mrl.baselines.fit_predict", lambda *a, **k: pytest.fail("refitted"))
    frame = baseline_scores(load_run(run))
    assert list(frame["model"].unique()) == list(base["models"])
    row = frame[(frame["model"] == "ridge on contents") & (frame["split"] == "eval")].iloc[0]
    assert row["mae_log10"] == pytest.approx(base["models"]["ridge on contents"]["eval"]["mae_log10"], abs=1e-6)


def test_baselines_false_skips_them_and_the_plan_says_so(tmp_path):
    data = _tiny_lab(tmp_path / "data")
    params = RunParams(name="r", runs_dir=str(tmp_path / "runs"), data=str(data), baselines=False, **TINY)
    assert "baselines: none (baselines: false)" in plan_run(params).describe()
    run = run_experiment(params, progress=False)
    assert not (run / BASELINES).exists() and (run / METRICS).exists()
    assert report_lines(run, read_json(run / METRICS)) == []


def test_material_features_add_trees_on_content_weighted_features(tmp_path):
    data = _tiny_lab(tmp_path / "data", columns=True)
    params = RunParams(data=str(data), features="columns", **TINY)
    plan = plan_run(params)
    assert "LightGBM on columns features, random forest on columns features" in "\n".join(plan.describe())
    base = fit_baselines(plan.data, plan.split, plan.target_transform, "columns")
    assert list(base["models"])[3:] == ["LightGBM on columns features", "random forest on columns features"]
    assert base["models"]["random forest on columns features"]["inputs"] == "features"


def test_a_plain_target_is_scored_in_its_units(tiny_data):
    split = np.where(np.arange(tiny_data.n_samples) % 5 == 0, "eval", "train")
    base = fit_baselines(tiny_data, split, "none")
    assert base["metric"] == "mae" and base["chosen_on"] == "eval"
    assert "mae_log10" not in base["models"]["ridge on contents"]["eval"]
    ridge = base["models"]["ridge on contents"]["eval"]["mae"]
    line = summary_line({"eval": {"n": 120, "mae": ridge / 2}}, base | {"best": "ridge on contents"}, unit="cP")
    assert "The eval MAE of the property of mrl is" in line and "cP" in line and "mrl is better than ridge on contents" in line
    line = summary_line({"eval": {"n": 120, "mae": ridge * 2}}, base | {"best": "ridge on contents"}, unit="cP")
    assert "ridge on contents is better than mrl" in line


def test_the_summary_has_nothing_to_say_without_eval_samples():
    base = {"best": "ridge on contents", "metric": "mae", "chosen_on": "calib",
            "models": {"ridge on contents": {"eval": {"mae": 1.0, "n": 3}}}}
    assert summary_line({"train": {"n": 10, "mae": 1.0}}, base) is None
    assert summary_line({"eval": {"n": 3, "mae": 1.0}}, base | {"best": None}) is None


def test_conditions_enter_the_baselines(tiny_data_t):
    split = np.where(np.arange(tiny_data_t.n_samples) % 5 == 0, "eval", "train")
    data = load_formulas(tiny_data_t.formulas, tiny_data_t.properties, conditions=["T"], name="t")
    with_t = fit_baselines(data, split, "log10")["models"]["ridge on contents"]["eval"]["mae_log10"]
    without = fit_baselines(load_formulas(data.formulas, data.properties.drop(columns="T"), name="no_t"), split,
                            "log10")["models"]["ridge on contents"]["eval"]["mae_log10"]
    assert with_t < without


def test_a_baseline_that_cannot_be_fitted_is_logged_not_fatal(tiny_data, monkeypatch, caplog):
    def broken(name, *args, **kwargs):
        if name == "lightgbm":
            raise ValueError("too few rows")
        return fit_predict(name, *args, **kwargs)
    monkeypatch.setattr("mrl.run_baselines.fit_predict", broken)
    split = np.where(np.arange(tiny_data.n_samples) % 5 == 0, "eval", "train")
    with caplog.at_level(logging.WARNING):
        base = fit_baselines(tiny_data, split, "none")
    assert base["models"]["LightGBM on contents"]["not_fitted"] == "ValueError: too few rows"
    assert base["best"] == "ridge on contents" and "LightGBM on contents not fitted" in caplog.text


def test_large_contents_stay_sparse_and_ridge_is_left_out(tiny_data, monkeypatch, caplog):
    monkeypatch.setattr("mrl.run_baselines.MAX_DENSE_CELLS", 100)
    split = np.where(np.arange(tiny_data.n_samples) % 5 == 0, "eval", "train")
    with caplog.at_level(logging.WARNING):
        base = fit_baselines(tiny_data, split, "none")
    assert "too large to standardise densely" in base["models"]["ridge on contents"]["not_fitted"]
    assert np.isfinite(base["models"]["LightGBM on contents"]["eval"]["mae"])
    assert base["best"] == "LightGBM on contents" and "ridge on contents not fitted" in caplog.text
