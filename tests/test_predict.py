"""Asking a finished run about new formulas: mrl predict, ensembles, intervals and domain flags."""
from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mrl.params import RunParams
from mrl.predict import Predictor
from mrl.runs import load_run, run_experiment
from mrl.tables import DataError

SMALL = dict(data="synth:small", steps=120, eval_every=60, snapshot_every=60, checkpoint_every=60, embedding_dim=4,
             hidden=[16], device="cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    one = run_experiment(RunParams(name="one", runs_dir=str(root), **SMALL), progress=False)
    three = run_experiment(RunParams(name="three", runs_dir=str(root), ensemble=3, **SMALL), progress=False)
    return {"one": load_run(one), "three": load_run(three), "root": root}


def _formulas(run, n=40):
    data, _ = run.data()
    ids = data.formula_ids[:n]
    return data, data.formulas[data.formulas["formula_id"].isin(ids)]


@pytest.mark.parametrize("which", ["one", "three"])
def test_predicting_the_training_formulas_reproduces_the_runs_predictions(runs, which):
    run = runs[which]
    data, forms = _formulas(run)
    table = run.predict(forms, top_k=0)
    saved = run.predictions.set_index("formula_id").loc[table["formula_id"]]
    assert np.allclose(table["prediction"].to_numpy(), saved["y_pred"].to_numpy(), rtol=1e-6)
    assert np.allclose(table["lower_80"].to_numpy(), saved["lower_80"].to_numpy(), rtol=1e-6)
    assert (table["lower_95"] <= table["lower_80"]).all() and (table["upper_80"] <= table["upper_95"]).all()
    assert ((table["lower_80"] <= table["prediction"]) & (table["prediction"] <= table["upper_80"])).all()


def test_ensemble_members_differ_and_the_prediction_is_their_mean(runs):
    run = runs["three"]
    predictor = run.predictor
    data, _ = run.data()
    assert len(predictor.members) == 3
    preds = predictor.member_predictions(data)
    assert not np.allclose(preds[0], preds[1])
    geometric = 10 ** np.log10(preds).mean(axis=0)  # a log10 target: the mean in model units
    assert np.allclose(run.predictions["y_pred"].to_numpy(), geometric, rtol=1e-5)
    assert run.metrics["ensemble"] == 3 and "coverage_80" in run.metrics["intervals"]["eval"]
    stability = pd.read_parquet(run.path / "neighbour_stability.parquet")
    assert stability["neighbour_agreement"].between(0, 1).all()


def test_unknown_material_policies(runs):
    run = runs["one"]
    _, forms = _formulas(run, 3)
    fid = forms["formula_id"].iloc[0]
    with_new = pd.concat([forms, pd.DataFrame({"formula_id": [fid], "material_id": ["NEW"], "content": [0.05]})])
    with pytest.raises(DataError, match=r"\['NEW'\].*formula '" + fid):
        run.predict(with_new)
    zero = run.predict(with_new, unknown="zero").set_index("formula_id")
    assert zero.loc[fid, "flag_unknown"] and "NEW" in zero.loc[fid, "reasons"]
    known = forms["material_id"].iloc[1]
    like = run.predict(with_new, unknown=f"like:{known}").set_index("formula_id")
    as_known = with_new.assign(material_id=with_new["material_id"].replace("NEW", known))
    as_known = as_known.groupby(["formula_id", "material_id"], as_index=False)["content"].sum()
    direct = run.predict(as_known).set_index("formula_id")
    assert np.isclose(like.loc[fid, "prediction"], direct.loc[fid, "prediction"], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown must be"):
        run.predict(with_new, unknown="maybe")


def test_a_formula_outside_the_training_domain_is_flagged(runs):
    run = runs["one"]
    _, forms = _formulas(run, 1)
    odd = forms.copy()
    odd["content"] = 0.0
    odd.iloc[-1, odd.columns.get_loc("content")] = 100.0  # one ingredient at 100 %: above its training range
    table = run.predict(pd.concat([forms, odd.assign(formula_id="ODD")]))
    flags = table.set_index("formula_id")
    assert flags.loc["ODD", "out_of_domain"] and flags.loc["ODD", "flag_content"]
    assert not flags.loc[forms["formula_id"].iloc[0], "flag_content"]


def test_conditions_are_checked_by_name(tiny_data_t):
    from mrl.estimator import MixtureRegressor

    est = MixtureRegressor(embedding_dim=3, hidden=(8,), steps=20, progress=False, device="cpu").fit(tiny_data_t)
    predictor = Predictor([est])
    forms = tiny_data_t.formulas[tiny_data_t.formulas["formula_id"].isin(["F0000", "F0001"])]
    with pytest.raises(DataError, match=r"needs condition column\(s\) \['T'\]"):
        predictor.predict(forms)
    with pytest.raises(DataError, match=r"missing condition column\(s\) \['T'\]"):
        predictor.predict(forms, pd.DataFrame({"formula_id": ["F0000"], "temp": [300.0]}))
    table = predictor.predict(forms, pd.DataFrame({"formula_id": ["F0000", "F0000", "F0001"], "T": [290.0, 330, 300],
                                                   "note": ["a", "b", "c"]}))
    assert len(table) == 3 and np.isnan(table["lower_80"]).all()  # no calibration: no intervals


def test_adapted_folder_and_the_command_line(runs, tmp_path):
    run = runs["one"]
    _, forms = _formulas(run, 4)
    fid = forms["formula_id"].iloc[0]
    new = pd.concat([forms, pd.DataFrame({"formula_id": [fid], "material_id": ["NEW"], "content": [0.5]})])
    new.to_csv(tmp_path / "new_f.csv", index=False)
    adapted = tmp_path / "adapted"
    mrl = [sys.executable, "-m", "mrl.cli"]
    subprocess.run([*mrl, "tie-materials", str(run.path), "NEW=none", "--out", str(adapted)], check=True)
    assert load_run(adapted).adapted and load_run(adapted).params.embedding_dim == 4
    out = tmp_path / "p.csv"
    done = subprocess.run([*mrl, "predict", str(adapted), "--formulas", str(tmp_path / "new_f.csv"), "--out",
                           str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert len(table) == 4 and {"prediction", "lower_80", "upper_95", "out_of_domain", "top_materials"} <= set(table)
    again = subprocess.run([*mrl, "predict", str(adapted), "--formulas", str(tmp_path / "new_f.csv"), "--out",
                            str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr
    missing = subprocess.run([*mrl, "predict", str(tmp_path), "--formulas", str(tmp_path / "new_f.csv"), "--out",
                              str(tmp_path / "q.csv")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no checkpoint.pt" in missing.stderr


def test_unknown_materials_by_their_features(tiny_data):
    from mrl.data import load_formulas
    from mrl.estimator import MixtureRegressor

    rng = np.random.default_rng(0)
    materials = tiny_data.materials[["material_id"]].assign(density=rng.uniform(0.8, 1.2, tiny_data.n_materials),
                                                            polarity=rng.normal(size=tiny_data.n_materials))
    data = load_formulas(tiny_data.formulas, tiny_data.properties, materials, targets="viscosity", name="tiny")
    est = MixtureRegressor(embedding_dim=3, hidden=(8,), steps=30, features="columns", progress=False,
                           device="cpu").fit(data)
    forms = data.formulas[data.formulas["formula_id"] == "F0001"]
    new = pd.concat([forms, pd.DataFrame({"formula_id": ["F0001"], "material_id": ["NEW"], "content": [0.1]})])
    sheet = pd.DataFrame({"material_id": ["NEW"], "density": [1.1], "polarity": [2.0], "median_content": [0.1]})
    predictor = Predictor([est])
    with pytest.raises(ValueError, match="needs a materials table"):
        predictor.predict(new, unknown="features")
    by_features = predictor.predict(new, unknown="features", materials=sheet)
    zero = predictor.predict(new, unknown="zero")
    assert by_features.loc[0, "flag_unknown"] if "flag_unknown" in by_features else True
    assert not np.isclose(by_features.loc[0, "prediction"], zero.loc[0, "prediction"])


def test_adapting_a_run_never_writes_over_its_source(runs):
    from mrl.adapt import adapt_run

    run = runs["one"]
    before = sorted(p.name for p in run.path.iterdir())
    with pytest.raises(ValueError, match="another folder than its source"):
        adapt_run(run.path, run.path, tie={"NEW": None}, overwrite=True)
    assert sorted(p.name for p in run.path.iterdir()) == before


def test_intervals_are_clipped_to_the_prediction_range_and_recorded(runs):
    predictor = runs["three"].predictor
    low, high = predictor.clip_range()
    t_low, t_high = np.log10([low, high])
    mean = np.array([t_low + 0.01, 0.5 * (t_low + t_high), t_high - 0.01])
    lower, upper, cut = predictor.interval(mean, np.array([5.0, 1e-3, 5.0]), 0.95)
    assert (lower >= low).all() and (upper <= high).all()
    assert lower[0] == low and upper[2] == high and cut.tolist() == [True, False, True]
    _, forms = _formulas(runs["three"], 1)
    odd = forms.assign(content=0.0, formula_id="ODD")
    odd.iloc[-1, odd.columns.get_loc("content")] = 100.0
    table = predictor.predict(pd.concat([forms, odd])).set_index("formula_id")
    for col in ["prediction", "lower_80", "upper_80", "lower_95", "upper_95"]:
        assert table[col].between(low, high).all(), col
    assert table.loc["ODD", "out_of_domain"] and "not to be trusted" in table.loc["ODD", "interval_note"]
    code = odd["material_id"].iloc[-1]
    name = predictor.members[0].materials_.set_index("material_id").loc[code, "name"]
    assert f"{name} ({code}) at 100 %" in table.loc["ODD", "reasons"]  # reasons name materials too
    inside = forms["formula_id"].iloc[0]
    assert table.loc[inside, "interval_note"] == ("clipped to the range the model may predict"
                                                  if table.loc[inside, "clipped"] else "")
    saved = runs["three"].predictions
    assert saved["lower_95"].between(low, high).all() and saved["upper_95"].between(low, high).all()


def test_the_table_names_materials_and_the_csv_is_rounded_for_people(runs, tmp_path):
    run = runs["three"]
    _, forms = _formulas(run, 5)
    forms.to_csv(tmp_path / "f.csv", index=False)
    table = run.predict(forms)
    names = run.predictor.members[0].materials_.set_index("material_id")["name"]
    first = table["top_materials"].iloc[0].split("; ")[0]  # "Carbomer 001 (M00238) +42.2"
    code = first.split("(")[1].split(")")[0]
    assert first.startswith(f"{names[code]} ({code}) ")
    mrl = [sys.executable, "-m", "mrl.cli"]
    done = subprocess.run([*mrl, "predict", str(run.path), "--formulas", str(tmp_path / "f.csv"), "--out",
                           str(tmp_path / "p.csv")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "p.csv").read_text()
    numbers = [float(v) for line in text.splitlines()[1:] for v in line.split(",")[1:7]]
    assert all(float(f"{v:.4g}") == v for v in numbers), numbers
    assert "528.6744504419322" not in text and len(max(text.split(","), key=len)) < 200
    done = subprocess.run([*mrl, "predict", str(run.path), "--formulas", str(tmp_path / "f.csv"), "--out",
                           str(tmp_path / "p.parquet")], capture_output=True, text=True)
    full = pd.read_parquet(tmp_path / "p.parquet")
    assert not all(float(f"{v:.4g}") == v for v in full["prediction"])  # Parquet keeps full precision
    explain = subprocess.run([*mrl, "predict", str(run.path), "--explain"], capture_output=True, text=True)
    assert explain.returncode == 0, explain.stderr
    glossary = explain.stdout
    for col in ["prediction", "lower_80, upper_80", "spread", "clipped", "interval_note", "nearest_distance",
                "mixture_distance", "top_materials", "flag_distance"]:
        assert f"\n  {col} " in glossary, col
    assert "log10 units" in glossary  # spread of a log target
    assert f"(this run: {run.predictor.domain.distance_threshold:.3g})" in glossary


@pytest.mark.parametrize("how", ["tie", "add"])
def test_an_adapted_ensemble_keeps_members_calibration_and_domain(runs, tmp_path, caplog, how):
    import json

    from mrl.adapt import adapt_run
    from mrl.data import load_formulas

    run = runs["three"]
    data, forms = _formulas(run, 30)
    source = run.predictor
    known = forms["material_id"].iloc[0]
    out = tmp_path / how
    if how == "tie":
        adapt_run(run.path, out, tie={"NEWGEL": known})
    else:
        used = data.formulas[data.formulas["material_id"] == known]["formula_id"].unique()[:6]
        new_forms = data.formulas[data.formulas["formula_id"].isin(used)].replace({"material_id": {known: "NEWGEL"}})
        props = data.properties[data.properties["formula_id"].isin(used)]
        adapt_run(run.path, out, data=load_formulas(new_forms, props, name="new"), like={"NEWGEL": known},
                  steps=20)
    with caplog.at_level(logging.INFO, logger="mrl.predict"):
        adapted = Predictor.from_folder(out)
    assert not [r for r in caplog.records if "intervals left out" in r.getMessage() or "no calibration" in
                r.getMessage()]
    assert len(adapted.members) == 3 and adapted.calibration == source.calibration
    assert adapted.domain is not None and "NEWGEL" in list(adapted.domain.material_ids)
    before, after = source.predict(forms, top_k=0), adapted.predict(forms, top_k=0)
    for col in ["prediction", "lower_80", "upper_80", "lower_95", "upper_95", "spread"]:
        assert np.array_equal(before[col].to_numpy(), after[col].to_numpy()), col  # bitwise the same
    assert (after["n_members"] == 3).all()
    fid = forms["formula_id"].iloc[0]
    with_new = forms[forms["formula_id"] == fid].replace({"material_id": {known: "NEWGEL"}})
    row = adapted.predict(with_new).iloc[0]
    assert np.isfinite(row["lower_80"]) and row["out_of_domain"] and "not to be trusted" in row["interval_note"]
    record = json.loads((out / "adapt.json").read_text())
    assert record["members"] == 3 and record["calibration"].startswith("kept")


def test_the_command_line_takes_names_and_says_did_you_mean(runs, tmp_path, capsys, caplog):
    import json

    from mrl import cli

    run = runs["three"]
    table = run.predictor.members[0].materials_
    thick = table[table["family"] == "thickener"].iloc[0]
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="mrl.materials"):
        cli.main(["similar", f"  {thick['name'].upper()} ", "--run", str(run.path), "-k", "2"])
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert any("case and whitespace ignored" in r.getMessage() for r in caplog.records)
    with pytest.raises(SystemExit) as stop:
        cli.main(["similar", thick["name"][:-1] + "x", "--run", str(run.path)])
    message = caplog.records[-1].getMessage()
    assert stop.value.code == 2 and "did you mean" in message and f"'{thick['name']}'" in message
    cli.main(["tie-materials", str(run.path), f"NEWGEL={thick['name']}", "--out", str(tmp_path / "tied")])
    assert json.loads((tmp_path / "tied" / "adapt.json").read_text())["tie"] == {"NEWGEL": thick["material_id"]}
    with pytest.raises(SystemExit):
        cli.main(["tie-materials", str(run.path), f"{thick['material_id'].lower()}=none", "--out",
                  str(tmp_path / "clash")])
    assert "already in the model's vocabulary" in caplog.records[-1].getMessage()


def test_metrics_of_a_log_target_hold_the_formulators_view(runs):
    metrics = runs["three"].metrics
    assert metrics["target_transform"] == "log10"
    for split in ("train", "eval", "full"):
        m = metrics[split]
        assert {"mae", "rmse", "r2", "mape", "mae_log10", "r2_log10", "within_2x", "within_20pct"} <= set(m)
        assert 0 <= m["within_20pct"] <= m["within_2x"] <= 1 and m["mae_log10"] > 0
