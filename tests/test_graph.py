"""features: graph: chemprop molecular graphs from SMILES as g(x), fallback without SMILES, new compounds by structure."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from mrl.adapt import add_by_features, tie_materials
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.graph import GraphEncoder, batch_graph, material_smiles
from mrl.predict import Predictor

FAST = dict(embedding_dim=4, hidden=(16,), batch_size=64, eval_every=50, snapshot_every=50, checkpoint_every=100,
            progress=False, device="cpu", content_scale="none", activation="none", pin_origin=None)
#: Small molecules for the tiny data's 30 materials; "" = no structure known (fallback).
SMILES = ["", "CCO", "CCCO", "CCCCO", "OCC(O)CO", "CC(C)O", "c1ccccc1", "Cc1ccccc1", "CCCCCC", "CCCCCCCC",
          "CC(=O)C", "CS(C)=O", "[Na+].[Cl-]", "CC(=O)[O-].[Na+]", "", "OCCO", "CCOCC", "ClCCl", "CC#N", "O=CO",
          "CCN(CC)CC", "C1CCCCC1", "CCCCCCCCCC", "", "CC(=O)OCC", "c1ccncc1", "OC1CCCCC1", "CCCC(=O)O", "CO",
          "NCCO"]


def _with_smiles(data: FormulaData) -> FormulaData:
    mats = data.materials.copy()
    mats["smiles"] = SMILES[:len(mats)]
    return data.with_materials(mats)


def test_graphs_of_molecules_salts_and_single_atoms():
    graph = batch_graph(["CCO", "[Na+].[Cl-]", "CC(=O)[O-].[Na+]", "O"])
    atoms = np.bincount(graph.batch.numpy())
    assert atoms.tolist() == [3, 2, 5, 1]  # heavy atoms; a salt keeps every fragment, the counter-ion included
    assert graph.E.shape[0] == 2 * (2 + 0 + 3 + 0)  # directed bonds: none between fragments
    enc = GraphEncoder(["CCO", None, "[Na+].[Cl-]", "CC(=O)[O-].[Na+]", "O"], out_dim=3)
    assert torch.count_nonzero(enc()) == 0  # the output layer starts at zero: training starts from the table
    torch.nn.init.normal_(enc.output.weight)
    out = enc().detach()
    assert out.shape == (5, 3) and torch.count_nonzero(out[1]) == 0 and (out[[0, 2, 3, 4]].abs().sum(1) > 0).all()
    assert not torch.allclose(out[2], out[3])  # sodium chloride and sodium acetate differ


def test_invalid_smiles_names_material_and_row_and_blanks_are_logged(caplog):
    mats = pd.DataFrame({"material_id": ["W", "E", "BAD"], "smiles": [np.nan, "CCO", "C1CC(("]})
    with pytest.raises(ValueError, match=r"material 'BAD' \(materials table row 3\): invalid SMILES 'C1CC\(\('"):
        material_smiles(mats)
    with caplog.at_level(logging.INFO, logger="mrl.graph"):
        assert material_smiles(mats.iloc[:2]) == [None, "CCO"]
    assert "1 of 2 material(s) without SMILES" in caplog.text and "['W']" in caplog.text
    with pytest.raises(ValueError, match="needs a 'smiles' column"):
        material_smiles(mats.drop(columns="smiles"))


def test_graph_model_fits_falls_back_without_smiles_and_round_trips(tiny_data, tmp_path):
    data = _with_smiles(tiny_data)
    est = MixtureRegressor(steps=60, features="graph", **FAST).fit(data)
    module = est.module_
    assert module.graph is not None and module.feature_map is None and est.feature_scaler_ is None
    g = module.graph().detach()
    blank = [i for i, s in enumerate(SMILES) if not s]
    assert torch.count_nonzero(g[blank]) == 0 and g[[1, 12]].abs().sum() > 0  # trained, and 0 without a graph
    with torch.no_grad():  # a material without SMILES: its learned residual alone; others g + residual
        assert torch.equal(module.material_vectors()[blank], module.table[blank])
        assert torch.allclose(module.material_vectors()[1], g[1] + module.table[1])
    emb = est.embeddings()  # still one table of vectors, one row per material
    assert len(emb) == data.n_materials and emb["material_id"].tolist() == data.materials["material_id"].tolist()
    est.save(tmp_path / "checkpoint.pt")
    loaded = MixtureRegressor.load(tmp_path / "checkpoint.pt", device="cpu")
    assert np.array_equal(loaded.predict(data), est.predict(data))
    bad = data.materials.assign(smiles=[*SMILES[:5], "not a smiles", *SMILES[6:len(data.materials)]])
    with pytest.raises(ValueError, match=r"material 'M005' \(materials table row 6\)"):
        MixtureRegressor(steps=5, features="graph", **FAST).fit(data.with_materials(bad))


def test_new_compound_from_its_smiles_alone(tiny_data, tmp_path):
    data = _with_smiles(tiny_data)
    est = MixtureRegressor(steps=80, features="graph", **FAST).fit(data)
    est.save(tmp_path / "checkpoint.pt")
    sheet = pd.DataFrame({"material_id": ["PROPANEDIOL", "GRADE7"], "smiles": ["OCCCO", None]})
    out = add_by_features(est, sheet)  # mrl add-materials --features: no formula
    with torch.no_grad():
        vec = out.module_.material_vectors()
        enc, graph = out.module_.graph, batch_graph(["OCCCO"])
        expected = enc.output(enc.aggregation(enc.message_passing(graph), graph.batch))
    assert torch.allclose(vec[-2], expected[0], atol=1e-6) and torch.count_nonzero(vec[-1]) == 0
    assert torch.equal(out.module_.table[-2:], torch.zeros(2, 4))  # residual 0: the vector is g(graph)
    assert np.array_equal(out.predict(data), est.predict(data))  # known formulas unchanged
    twin = tie_materials(est, {"TWIN": "M001"}).module_  # a tied material takes its partner's graph and vector
    assert twin.model_params["graph_smiles"][-1] == "CCO" and torch.equal(twin.material_vectors()[-1],
                                                                          twin.material_vectors()[1])
    # mrl predict --unknown features, from the saved folder: the new compound's vector from its structure
    forms = pd.DataFrame({"formula_id": ["X", "X"], "material_id": ["M001", "PROPANEDIOL"], "content": [0.5, 0.5]})
    predictor = Predictor.from_folder(tmp_path)
    by_graph = predictor.predict(forms, unknown="features", materials=sheet.iloc[:1])
    zero = predictor.predict(forms, unknown="zero")
    assert np.isfinite(by_graph["prediction"]).all()
    assert not np.isclose(by_graph.loc[0, "prediction"], zero.loc[0, "prediction"])
    with pytest.raises(ValueError, match=r"material 'BAD' \(materials table row 1\): invalid SMILES"):
        add_by_features(est, pd.DataFrame({"material_id": ["BAD"], "smiles": ["C(("]}))


def test_run_baselines_of_a_graph_run_use_descriptors_of_its_smiles():
    from mrl.run_baselines import baseline_models

    labels = [m.label for m in baseline_models("graph")]
    assert "LightGBM on rdkit features" in labels and not any("graph" in label for label in labels)


def test_liquid_benchmark_renders_graph_rows_and_new_compound_story():
    from conftest import load_benchmark

    bench = load_benchmark("liquid_viscosity")
    row = {"mae": 0.05, "rmse": 0.08, "pure_mae": 0.07, "mix_mae": 0.049, "wall_s": 100.0}
    results = {"test": {"mrl_graph": {**row, "mae": 0.04}, "published": {**row, "mae": 0.0333}},
               "unseen": {"mrl_graph": [{**row, "seed": 0}, {**row, "mae": 0.06, "seed": 1}],
                          "lightgbm_descriptors": [{**row, "mae": 0.058}, {**row, "mae": 0.060}]},
               "settings": {"graph": {"steps": 1000}},
               "analysis_graph": {"share_learned": 0.5, "share_descriptors": 0.69, "share_chance": 0.11,
                                  "n_compounds": 500, "min_formulas": 3}}
    text = bench.render_graph(results)
    assert "| held-out compounds (10 %, 2 seeds) | all | 0.0550 ± 0.0071 |" in text
    assert "mrl + graph encoder is 0.0550 ± 0.00707 log10 cP (mean ± SD over 2 seeds), within the spread" in text
    assert "above the goal of 0.0333 log10 cP by 0.0067 log10 cP: the goal is missed" in text
    assert "above the goal of 0.0450 log10 cP by 0.0100 log10 cP: the goal is missed" in text
    assert "within the spread of the goal of 0.0590 log10 cP: the goal is met" in text and "own-class share" in text
    story = {"name": "1-propanol", "family": "alcohol", "smiles": "CCCO", "n_mixture_rows": 3, "measured": [0.3, 0.2],
             "norm_graph": 1.0, "norm_residual": 0.01, "pure_mae": 0.05, "published_pure_mae": 0.02,
             "neighbours": [{"name": "1-butanol", "family": "alcohol"}]}
    words = bench.render_new_compound({"new_compound": story})
    assert "**1-propanol**" in words and "1-butanol (alcohol)" in words and "2 pure-liquid rows" in words


def test_liquid_page_shows_the_graph_rows_of_the_result_file():
    import json
    from pathlib import Path

    from conftest import load_benchmark

    root = Path(__file__).resolve().parents[1]
    bench = load_benchmark("liquid_viscosity")
    results = json.loads((root / "benchmarks" / "results" / "liquid_viscosity.json").read_text())
    page = (root / "book" / "liquid_viscosity.md").read_text()
    assert "mrl_graph" in results["test"] and results["new_compound"]["n_training_formulas"] == 0
    for text in (bench.render_graph(results), bench.render_new_compound(results)):
        assert text in page, ("book/liquid_viscosity.md is stale: python benchmarks/liquid_viscosity.py --render "
                              "benchmarks/results/liquid_viscosity.json --book book/liquid_viscosity.md")
    assert (root / "book" / "figures" / "liquid_new_compound.png").is_file()
