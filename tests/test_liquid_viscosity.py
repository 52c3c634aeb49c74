"""Tests of the vendored liquid viscosity data set, mrl.descriptors and the benchmark's splits and tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mrl import public_data as ds
from mrl.tables import DataError

pytest.importorskip("rdkit")
from conftest import load_benchmark

from mrl.descriptors import CHEMICAL_CLASSES, DESCRIPTOR_NAMES, canonical_smiles, chemical_class, rdkit_descriptors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "fixtures" / "liquid_viscosity_tiny.csv"


@pytest.fixture(scope="module")
def tiny():
    frame = pd.read_csv(TINY, dtype={"SMILES_0": str, "SMILES_1": str})
    return frame, ds.liquid_from_frame(frame, name="tiny")


def _id(data, smiles: str) -> str:
    mats = data.materials
    return mats.loc[mats["smiles"] == canonical_smiles(smiles), "material_id"].item()


# ----- loader quirks on the tiny fixture ----------------------------------------------------------------------
def test_tiny_shape_and_columns(tiny):
    frame, data = tiny
    assert data.n_samples == len(frame) == 30
    assert data.targets == ("viscosity",) and data.conditions == ("T",)
    assert {"formula_id", "viscosity", "T", "split", "group", "kind", "published", "published_sd",
            "label"} <= set(data.properties.columns)
    np.testing.assert_allclose(data.target_values(), frame["logV"])
    np.testing.assert_allclose(data.properties["published"], frame["Predict logV"])
    # 7 molecules: the two spellings of ethanol (CCO, C(C)O) are one material
    assert data.n_materials == 7
    assert set(data.materials["name"]) == {"water", "ethanol", "glycerol", "hexane", "toluene", "acetone",
                                           "methanol"}
    assert data.materials.set_index("name").loc["ethanol", "given_smiles"] == "C(C)O | CCO"
    assert data.materials.set_index("name").loc["water", "family"] == "water"
    np.testing.assert_allclose(np.asarray(data.content_matrix().sum(axis=1)).ravel(), 1.0)


def test_tiny_pure_liquid_given_as_second_component(tiny):
    _, data = tiny
    props = data.properties.set_index("label")
    ethanol = _id(data, "CCO")
    assert props.loc[2, "formula_id"] == ethanol and props.loc[2, "kind"] == "pure"  # empty SMILES_0, comp_0 = 0
    assert props.loc[3, "formula_id"] == ethanol  # the other spelling, C(C)O
    assert props.loc[2, "group"] == ethanol


def test_tiny_fraction_zero_drops_the_ingredient(tiny):
    _, data = tiny
    props = data.properties.set_index("label")
    # rows 23/24 name both SMILES but one fraction is 0: pure acetone / pure methanol, same formulas as rows 7/8
    assert props.loc[23, "formula_id"] == props.loc[7, "formula_id"] == _id(data, "CC(C)=O")
    assert props.loc[24, "formula_id"] == props.loc[8, "formula_id"] == _id(data, "CO")
    assert props.loc[23, "kind"] == "pure"
    for fid in (props.loc[23, "formula_id"], props.loc[24, "formula_id"]):
        assert len(data.formulas[data.formulas["formula_id"] == fid]) == 1


def test_tiny_several_temperatures_and_pair_order(tiny):
    _, data = tiny
    props = data.properties.set_index("label")
    water, ethanol = _id(data, "O"), _id(data, "CCO")
    fid = props.loc[9, "formula_id"]
    assert props.loc[10, "formula_id"] == props.loc[11, "formula_id"] == fid  # one formula, three T
    assert sorted(props.loc[[9, 10, 11], "T"]) == [298.15, 303.15, 308.15]
    assert props.loc[12, "formula_id"] == props.loc[13, "formula_id"]  # (water, ethanol) and (ethanol, water)
    rows = data.formulas[data.formulas["formula_id"] == fid].set_index("material_id")["content"]
    assert rows[water] == pytest.approx(0.8) and rows[ethanol] == pytest.approx(0.2)
    assert props.loc[9, "group"] == "+".join(sorted([water, ethanol])) == props.loc[14, "group"]
    assert props.loc[9, "kind"] == "mixture"
    assert data.n_formulas == len(set(data.properties["formula_id"]))


def test_tiny_split_column(tiny):
    frame, data = tiny
    assert data.properties["split"].tolist() == frame["Train_Test_Label"].tolist()
    assert set(data.properties["split"]) == {"train", "test"}


def test_loader_errors():
    base = pd.read_csv(TINY, dtype={"SMILES_0": str, "SMILES_1": str}).head(3)
    bad = base.copy()
    bad.loc[0, "SMILES_0"] = np.nan  # fraction 1.0 but no SMILES
    with pytest.raises(DataError, match="SMILES_0 is empty"):
        ds.liquid_from_frame(bad)
    bad = base.copy()
    bad.loc[0, "comp_0"] = 0.0  # nothing left
    with pytest.raises(DataError, match="no component"):
        ds.liquid_from_frame(bad)
    with pytest.raises(ValueError, match="missing column"):
        ds.liquid_from_frame(base.drop(columns=["T"]))


# ----- the vendored data set ----------------------------------------------------------------------------------
def test_card():
    info = ds.DATASETS["liquid_viscosity"]
    assert info.unit == "log10 cP" and info.conditions == ("T",) and info.n_samples == 34374
    assert info.target == "viscosity" and "target_transform='none'" in info.description
    assert "Bilodeau" in info.citation and "2506.12231" in info.citation and "6b878cc" in info.citation
    assert "MIT" in info.license
    cards = ds.list_datasets().set_index("name")
    assert cards.loc["liquid_viscosity", "source"].startswith("vendored:")


def test_vendored_files_are_in_the_package():
    folder = ds.liquid_data_dir()
    assert folder.parent.parent == Path(ds.__file__).resolve().parent  # mrl/data_files/liquid_viscosity
    for name in (ds.LIQUID_FILE, ds.LIQUID_COMPOUNDS, "LICENSE.chemixhub", "README.md"):
        assert (folder / name).exists(), name
    assert "MIT" in (folder / "LICENSE.chemixhub").read_text()


def test_load_real_liquid_viscosity(monkeypatch, tmp_path):
    monkeypatch.setenv("MRL_CACHE", str(tmp_path / "no-cache"))  # nothing fetched, nothing cached
    data = ds.load_dataset("liquid_viscosity")
    props = data.properties
    assert data.n_samples == 34374 and data.n_materials == 1397
    assert props["split"].value_counts().to_dict() == {"train": 30936, "test": 3438}
    assert props["kind"].value_counts().to_dict() == {"mixture": 31464, "pure": 2910}
    assert props.loc[props["kind"] == "mixture", "group"].nunique() == 3216
    test = props[props["split"] == "test"]
    assert np.mean(np.abs(test["published"] - test["viscosity"])) == pytest.approx(0.0333, abs=5e-5)
    assert not (tmp_path / "no-cache").exists()
    names = set(data.materials["name"])
    assert {"water", "ethanol", "methanol", "glycerol", "hexane", "toluene", "benzene", "DMSO (dimethyl sulfoxide)",
            "acetone", "1-propanol", "1-butanol"} <= names
    assert data.materials["material_id"].is_monotonic_increasing


# ----- descriptors --------------------------------------------------------------------------------------------
def test_rdkit_descriptors():
    table = rdkit_descriptors(["O", "CCO", "not a smiles", "CCO", ""])
    assert list(table.columns) == list(DESCRIPTOR_NAMES) and 20 <= len(DESCRIPTOR_NAMES) <= 40
    assert list(table.index) == ["O", "CCO", "not a smiles", "CCO", ""]
    assert table.iloc[2].isna().all() and table.iloc[4].isna().all()
    assert table.iloc[0]["n_OH"] == 2.0 and table.iloc[1]["MolWt"] == pytest.approx(46.07, abs=0.01)
    assert table.iloc[1].equals(table.iloc[3])
    assert rdkit_descriptors(["[Na+].[Cl-]"])["is_ionic"].item() == 1.0
    assert rdkit_descriptors(["C[N+](=O)[O-]"])["is_ionic"].item() == 0.0  # nitro: charges cancel


@pytest.mark.parametrize("smiles, expected", [
    ("O", "water"), ("CCO", "alcohol"), ("OCC(O)CO", "polyol"), ("CC(=O)O", "acid"), ("CCN(CC)CC", "amine"),
    ("CC(C)=O", "ketone"), ("CCOC(C)=O", "ester"), ("C1CCOC1", "ether"), ("ClC(Cl)Cl", "halide"),
    ("Cc1ccccc1", "aromatic"), ("CCCCCC", "alkane"), ("CS(C)=O", "other"), ("[Na+].[Cl-]", "ionic"),
    ("junk(", "other")])
def test_chemical_class(smiles, expected):
    assert chemical_class(smiles) == expected and expected in CHEMICAL_CLASSES


# ----- benchmark pieces ---------------------------------------------------------------------------------------
def test_unseen_compound_split_is_disjoint(tiny):
    bench = load_benchmark("liquid_viscosity")
    _, data = tiny
    train = data.subset(data.properties["split"].to_numpy() == "train")
    for seed in range(5):
        keep, held, ids = bench.unseen_compound_split(train, 0.3, seed)
        assert ids and keep.sum() + held.sum() == train.n_samples and not (keep & held).any()
        kept = train.subset(keep)
        assert not set(ids) & set(kept.formulas["material_id"])  # no held-out compound in a training formula
        held_forms = train.subset(held).formulas.groupby("formula_id")["material_id"].agg(set)
        assert all(s & set(ids) for s in held_forms)  # every held row holds a held-out compound


def test_unseen_compound_split_real():
    bench = load_benchmark("liquid_viscosity")
    data = ds.load_dataset("liquid_viscosity")
    train = data.subset(data.properties["split"].to_numpy() == "train")
    keep, held, ids = bench.unseen_compound_split(train, 0.1, 0)
    assert len(ids) == round(0.1 * len(set(train.formulas["material_id"])))
    assert not set(ids) & set(train.subset(keep).formulas["material_id"])


def test_inner_split_holds_out_whole_systems(tiny):
    bench = load_benchmark("liquid_viscosity")
    _, data = tiny
    fit, val = bench.inner_split(data, 0.3, 0)
    assert not set(fit.properties["group"]) & set(val.properties["group"])


def test_render_markdown():
    bench = load_benchmark("liquid_viscosity")
    row = {"mae": 0.05, "rmse": 0.08, "pure_mae": 0.06, "mix_mae": 0.049, "wall_s": 12.3}
    results = {"test": {"ridge": {**row, "config": "alpha 0.1"}, "mrl_rdkit": {"pending": "needs features=rdkit"},
                        "published": {**row, "wall_s": None}},
               "unseen": {"mrl": [{**row, "seed": 0}, {**row, "mae": 0.07, "seed": 1}]}}
    text = bench.render_markdown(results)
    assert "| ridge (alpha 0.1) |" in text and "0.0500 | 0.0800 | 0.0600 | 0.0490 | 12 |" in text
    assert "pending: needs features=rdkit" in text and "0.0600 ± 0.0141" in text
    assert text.count("|---|") == 2


def test_the_pages_comparisons_follow_the_result_file():
    """The paper-split and held-out sections are worded from the numbers: mrl made worse than ridge flips the sentence;
    the graph goals are worded by against_target."""
    import copy
    import json

    bench = load_benchmark("liquid_viscosity")
    root = Path(__file__).resolve().parents[1]
    results = json.loads((root / "benchmarks" / "results" / "liquid_viscosity.json").read_text())
    before = bench.render_test(results)
    assert "mrl (vectors from data alone) is better than ridge" in before
    worse = copy.deepcopy(results)
    worse["test"]["mrl"]["mae"] = 0.09
    assert "ridge is better than mrl (vectors from data alone)" in bench.render_test(worse)
    unseen = bench.render_unseen(results)
    assert "LightGBM on descriptors is better than mrl + RDKit features" in unseen
    for run in worse["unseen"]["mrl_rdkit"]:
        run["mae"] = 0.03
    assert "mrl + RDKit features is better than LightGBM on descriptors" in bench.render_unseen(worse)
    graph = bench.render_graph(results)
    assert "Goals: " in graph and "the goal is missed" in graph and "issue" not in graph


def test_the_pull_screen_chooses_on_the_inner_split_and_the_goals_follow_it(monkeypatch):
    """``--unseen-pull``: every candidate decay is fitted on the inner split of seed 0 only, the lowest inner MAE is
    used on the seeds' splits, and the held-out goals are judged on that row once it is in the file."""
    bench = load_benchmark("liquid_viscosity")
    calls = []
    inner_mae = {0.001: 0.10, 0.03: 0.09, 0.1: 0.08, 0.3: 0.085, 1.0: 0.12}

    def fake(settings, seed, train, extra=None, inner=False):
        calls.append((seed, inner, extra["residual_weight_decay"]))
        mae = inner_mae[extra["residual_weight_decay"]] if inner else 0.05 + 0.001 * seed
        return {"mae": mae, "rmse": mae, "pure_mae": mae, "mix_mae": mae, "wall_s": 1.0, "seed": seed, **extra}

    monkeypatch.setattr(bench, "_unseen_auto_seed", fake)
    screen, rows = bench.unseen_pull_rows({}, None, seeds=3)
    assert [c for c in calls if c[1]] == [(0, True, d) for d in bench.PULL_CANDIDATES]  # the screen: inner only
    assert [c for c in calls if not c[1]] == [(s, False, 0.1) for s in range(3)]  # the seeds: the chosen decay
    assert [r["chosen"] for r in screen] == [d == 0.1 for d in bench.PULL_CANDIDATES]
    row = {"mae": 0.07, "rmse": 0.1, "pure_mae": 0.1, "mix_mae": 0.07, "wall_s": 1.0}
    results = {"unseen": {"lightgbm_descriptors": [{**row, "mae": 0.059, "seed": s} for s in range(3)],
                          "mrl_rdkit_auto": [{**row, "seed": s} for s in range(3)]}}
    assert "MAE of mrl + RDKit features with steps: auto (against" in bench.render_unseen(results)
    results["unseen"]["mrl_rdkit_pull"], results["pull_screen"] = rows, screen
    text = bench.render_unseen(results)
    assert "pulled onto g(x) (against LightGBM on descriptors' 0.059)" in text and "the goal is met" in text
    assert "| 0.1 (chosen) | 0.0800 |" in text


def test_the_extra_fold_rows_are_fitted_with_their_settings_and_shown():
    bench = load_benchmark("liquid_viscosity")
    fits = bench.fold_row_fits({}, 3000, 1.0, np.zeros((2, 2)))
    assert set(fits) == {*bench.FOLD_ROWS, "mrl_graph"}  # the pull row needs the decay chosen on the inner split
    assert set(bench.fold_row_fits({}, 3000, 1.0, np.zeros((2, 2)), pull_decay=0.1)) == {*bench.FOLD_ROWS,
                                                                                         *bench.EXTRA_FOLD_ROWS}
    run = {"mae": 0.05, "pure_mae": 0.1, "mix_mae": 0.04, "pure_n": 10, "wall_s": 3.0}
    folds = {"k": 2, "seed": 0, "n_rows": 100,
             "rows": {key: [run, {**run, "mae": 0.07}] for key in ("ridge", "mrl_rdkit_pull", "mrl_graph")}}
    text = bench.render_folds({"folds": folds})
    for key in ("ridge", "mrl_rdkit_pull", "mrl_graph"):
        assert f"| {bench._LABELS[key][0]}" in text
    assert "0.0600 ± 0.0141" in text
