"""New materials: fit their vectors against a frozen model, tie them to known ones, or pin them at the origin."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

from mrl.adapt import add_materials, tie_materials
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.synth import LabPreset, make_lab

torch.set_num_threads(1)
N_KNOWN = 5  # formulas of the new material that add_materials sees; the rest score it


def _formulas_with(data: FormulaData, material_id: str) -> np.ndarray:
    """Sample mask: measurements of formulas that contain ``material_id``."""
    fids = set(data.formulas.loc[data.formulas["material_id"] == material_id, "formula_id"])
    return data.properties["formula_id"].isin(fids).to_numpy()


def _log_mae(est: MixtureRegressor, data: FormulaData) -> float:
    return float(np.abs(np.log10(est.predict(data) / data.target_values())).mean())


@pytest.fixture(scope="module")
def lab() -> dict:
    """A small lab; the most used mid-popular gum is new (every formula with it left out of training)."""
    data, truth = make_lab(LabPreset("test", n_materials=100, n_formulas=500), seed=0)
    kinds = data.materials.merge(truth[["material_id", "kind"]])
    gums = kinds[(kinds["kind"] == "gum") & kinds["n_formulas"].between(20, 80)].sort_values("n_formulas")
    new, like = gums["material_id"].iloc[-1], gums["material_id"].iloc[-2]
    has_new = _formulas_with(data, new)
    train = data.subset(~has_new).with_materials(
        data.materials[data.materials["material_id"] != new].reset_index(drop=True))
    est = MixtureRegressor(embedding_dim=6, hidden=(32, 32), steps=600, lr=1e-2, device="cpu", progress=False,
                           eval_every=600, snapshot_every=300, checkpoint_every=600).fit(train)
    new_data = data.subset(has_new)
    known = np.arange(new_data.n_samples) < N_KNOWN
    return {"est": est, "train": train, "new": new, "like": like, "known": new_data.subset(known),
            "other": new_data.subset(~known)}


def test_add_materials_trains_only_the_new_rows(lab):
    est, train = lab["est"], lab["train"]
    before = {k: v.clone() for k, v in est.module_.state_dict().items()}
    out = add_materials(est, lab["known"])
    assert list(out.materials_["material_id"]) == [*est.materials_["material_id"], lab["new"]]
    assert np.array_equal(out.predict(train), est.predict(train))  # bitwise: head and known vectors frozen
    n_old = len(est.materials_)
    for name, value in out.module_.state_dict().items():
        assert torch.equal(value[:n_old] if name in ("table", "log_scale", "keep") else value, before[name]), name
    assert all(torch.equal(v, before[k]) for k, v in est.module_.state_dict().items())  # input untouched
    assert torch.count_nonzero(out.module_.table[n_old:]) > 0
    assert out.module_.model_params["n_materials"] == n_old + 1
    assert len(est.materials_) == n_old and len(out.embeddings()) == n_old + 1
    snaps = out.snapshots()
    assert snaps.loc[snaps["material_id"] == lab["new"], "e0"].isna().all()


def test_fitted_vector_beats_no_influence_on_other_formulas(lab):
    est, new = lab["est"], lab["new"]
    fitted, zero = add_materials(est, lab["known"], shrinkage=0.0), tie_materials(est, {new: None})
    assert _log_mae(fitted, lab["known"]) < 0.5 * _log_mae(zero, lab["known"])
    assert _log_mae(fitted, lab["other"]) < 0.8 * _log_mae(zero, lab["other"])


def test_shrinkage_pulls_to_the_prior(lab):
    est, new, like = lab["est"], lab["new"], lab["like"]
    norms = [float(add_materials(est, lab["known"], shrinkage=a).module_.table[-1].detach().norm())
             for a in (0.0, 10.0, 1e3)]
    assert norms[0] > norms[1] > norms[2]
    held = add_materials(est, lab["known"], like={new: like}, shrinkage=1e6)
    emb = held.embeddings().set_index("material_id")
    vec = [c for c in emb.columns if c.startswith("e") and c[1:].isdigit()]
    np.testing.assert_allclose(emb.loc[new, vec].to_numpy(float), emb.loc[like, vec].to_numpy(float), atol=1e-3)
    assert emb.loc[new, "like"] == like


def test_adapted_estimator_saves_and_reloads(lab, tmp_path):
    out = add_materials(lab["est"], lab["known"], like={lab["new"]: lab["like"]})
    loaded = MixtureRegressor.load(out.save(tmp_path / "adapted.pt"), device="cpu")
    assert np.array_equal(loaded.predict(lab["other"]), out.predict(lab["other"]))
    assert list(loaded.materials_["material_id"]) == list(out.materials_["material_id"])
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp file left behind


def test_add_materials_is_deterministic(lab):
    a, b = add_materials(lab["est"], lab["known"]), add_materials(lab["est"], lab["known"])
    assert torch.equal(a.module_.table, b.module_.table)
    assert not torch.equal(a.module_.table, add_materials(lab["est"], lab["known"], steps=10).module_.table)


def test_new_content_scale_follows_the_median_rule(lab):
    out = add_materials(lab["est"], lab["known"], steps=1)
    median = lab["known"].formulas.query("material_id == @lab['new']")["content"].median()
    assert float(out.module_.log_scale[-1]) == pytest.approx(-np.log(max(median, 1e-3)), rel=1e-5)


def test_tied_material_predicts_like_the_known_one(lab):
    est, new, like = lab["est"], lab["new"], lab["like"]
    out = tie_materials(est, {new: like})
    emb = out.embeddings().set_index("material_id")
    vec = [c for c in emb.columns if c.startswith("e") and c[1:].isdigit()]
    assert np.array_equal(emb.loc[new, vec].to_numpy(float), emb.loc[like, vec].to_numpy(float))
    assert emb.loc[new, "tied_to"] == like
    other = lab["other"]
    swapped = FormulaData(other.formulas.replace({"material_id": {new: like}}), other.properties, other.materials,
                          other.targets, other.conditions, other.name)
    np.testing.assert_allclose(out.predict(other), est.predict(swapped), rtol=1e-5)
    assert not np.allclose(out.predict(other), tie_materials(est, {new: None}).predict(other), rtol=1e-3)


def test_pinned_new_material_equals_unknown_zero(lab):
    est, new = lab["est"], lab["new"]
    out = tie_materials(est, {new: None})
    assert out.pinned_ == [*est.pinned_, len(est.materials_)]
    assert float(out.embeddings().set_index("material_id").loc[new, "norm"]) == 0.0
    lenient = copy.copy(est)
    lenient.unknown = "zero"
    np.testing.assert_allclose(out.predict(lab["other"]), lenient.predict(lab["other"]), rtol=1e-5)
    base = est.materials_["material_id"].iloc[est.pinned_[0]]
    assert tie_materials(est, {new: base}).pinned_[-1] == len(est.materials_)  # tied to a pinned one: pinned


def test_bad_input_is_refused(lab):
    est, new, known = lab["est"], lab["new"], lab["known"]
    with pytest.raises(ValueError, match="no material outside"):
        add_materials(est, lab["train"])
    with pytest.raises(ValueError, match="steps"):
        add_materials(est, known, steps=0)
    props = known.properties.copy()
    props.loc[1, "viscosity"] = np.nan
    with pytest.raises(ValueError, match="has no value"):
        add_materials(est, FormulaData(known.formulas, props, known.materials, known.targets))
    with pytest.raises(ValueError, match="no column 'viscosity'"):
        add_materials(est, FormulaData(known.formulas, props.rename(columns={"viscosity": "v"}), known.materials,
                                       ("v",)))
    unmeasured = known.formulas[known.formulas["formula_id"] == known.formula_ids[0]].assign(formula_id="X")
    orphan = unmeasured.replace({"material_id": {new: "M_ORPHAN"}})
    with pytest.raises(ValueError, match="only in formulas without a measurement"):
        add_materials(est, FormulaData(pd.concat([known.formulas, orphan]), known.properties, known.materials,
                                       known.targets))
    with pytest.raises(ValueError, match="not new materials"):
        add_materials(est, known, like={lab["like"]: lab["like"]})
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        add_materials(est, known, like={new: "NOPE"})
    with pytest.raises(ValueError, match="already in the model's vocabulary"):
        tie_materials(est, {lab["like"]: None})
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        tie_materials(est, {new: "NOPE"})
    with pytest.raises(ValueError, match="empty mapping"):
        tie_materials(est, {})
    with pytest.raises(NotFittedError, match="not fitted"):
        tie_materials(MixtureRegressor(), {new: None})


def test_add_materials_with_a_condition_column(tiny_data_t):
    data = tiny_data_t
    has_new = _formulas_with(data, "M029")
    est = MixtureRegressor(embedding_dim=3, hidden=(16,), steps=200, device="cpu", progress=False,
                           eval_every=200, snapshot_every=200, checkpoint_every=200)
    train = data.subset(~has_new).with_materials(data.materials[data.materials["material_id"] != "M029"])
    new_data = data.subset(has_new)
    out = add_materials(est.fit(train), new_data, steps=20)
    assert np.array_equal(out.predict(train), est.predict(train))
    assert out.predict(new_data).shape == (new_data.n_samples,)
    with pytest.raises(ValueError, match="condition column"):
        add_materials(est, FormulaData(new_data.formulas, new_data.properties.drop(columns="T"),
                                       new_data.materials, new_data.targets))


@pytest.mark.parametrize("options", [{"interaction": "attention"}, {"content_scale": "rms"},
                                     {"content_scale": "learned"}])
def test_model_options(tiny_data, options):
    has_new = _formulas_with(tiny_data, "M029")
    train = tiny_data.subset(~has_new).with_materials(
        tiny_data.materials[tiny_data.materials["material_id"] != "M029"])
    est = MixtureRegressor(embedding_dim=3, hidden=(16,), steps=100, device="cpu", progress=False, eval_every=100,
                           snapshot_every=100, checkpoint_every=100, **options).fit(train)
    new_data = tiny_data.subset(has_new & ~_formulas_with(tiny_data, "M000"))  # with both, attention sees two
    out = add_materials(est, new_data, steps=20)
    assert np.array_equal(out.predict(train), est.predict(train))
    tied = tie_materials(est, {"M029": "M000"})
    swapped = FormulaData(new_data.formulas.replace({"material_id": {"M029": "M000"}}), new_data.properties,
                          new_data.materials, new_data.targets)
    np.testing.assert_allclose(tied.predict(new_data), est.predict(swapped), rtol=1e-5)


def test_cli_adapts_a_run_folder_and_similar_reads_it(lab, tmp_path, capsys):
    import json

    from mrl import cli

    run = tmp_path / "run"
    lab["est"].save(run / "checkpoint.pt")
    known = lab["known"]
    known.formulas.to_csv(tmp_path / "f.csv", index=False)
    known.properties.to_csv(tmp_path / "p.csv", index=False)
    out = tmp_path / "adapted"
    cli.main(["add-materials", str(run), "--formulas", str(tmp_path / "f.csv"), "--properties",
              str(tmp_path / "p.csv"), "--like", f"{lab['new']}={lab['like']}", "--shrinkage", "0",
              "--out", str(out)])
    record = json.loads((out / "adapt.json").read_text())
    assert record["added"] == [lab["new"]] and record["like"] == {lab["new"]: lab["like"]}
    assert record["fitted"]["mae_log10"] < 0.5 * record["at_origin"]["mae_log10"]  # in-sample: the fit worked
    loaded = MixtureRegressor.load(out / "checkpoint.pt", device="cpu")
    assert lab["new"] in set(loaded.materials_["material_id"])
    capsys.readouterr()
    cli.main(["similar", lab["new"], "--run", str(out), "-k", "3"])
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # header + 3 neighbours
    with pytest.raises(SystemExit):  # the folder exists: refused, nothing changed
        cli.main(["tie-materials", str(run), f"{lab['new']}=none", "--out", str(out)])
    assert json.loads((out / "adapt.json").read_text()) == record
    cli.main(["tie-materials", str(run), f"{lab['new']}={lab['like']}", "--out", str(tmp_path / "tied")])
    tied = MixtureRegressor.load(tmp_path / "tied" / "checkpoint.pt", device="cpu")
    assert tied.materials_.set_index("material_id").loc[lab["new"], "tied_to"] == lab["like"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
