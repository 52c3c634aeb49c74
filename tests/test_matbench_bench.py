"""Helpers of benchmarks/matbench.py and mrl.init_vectors on tiny fixtures; real-data checks skip without the cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import load_benchmark

from mrl.data import load_formulas
from mrl.init_vectors import initial_table, set_initial_table

ROOT = Path(__file__).resolve().parents[1]


bench = load_benchmark("matbench")


def _tiny():
    forms = pd.DataFrame({"formula_id": ["a", "a", "b", "b", "c", "d"],
                          "material_id": ["Fe", "C", "Fe", "C", "Fe", "Ni"],
                          "content": [0.9, 0.1, 0.5, 0.5, 1.0, 1.0]})
    props = pd.DataFrame({"formula_id": ["a", "b", "c", "d"], "y": [1.0, 2.0, 3.0, 4.0]})
    return load_formulas(forms, props, targets="y", content_unit="fraction")


def test_fold_summary_mean_and_population_sd():
    row = bench.fold_summary("ridge", "fractions", [1.0, 3.0], 2.5)
    assert row["mae_mean"] == 2.0 and row["mae_std"] == 1.0 and row["n_folds"] == 2 and row["wall_s"] == 2.5
    assert row["fold_mae"] == [1.0, 3.0]


def test_format_results_sorted_and_side_by_side():
    rows = [bench.fold_summary("dummy", "fractions", [10.0], 0.1), bench.fold_summary("mrl", "dim 4", [2.0], 3.0)]
    text = bench.format_results(rows, [("A", 1.5), ("B", 9.0), ("C", 11.0)], "eV")
    lines = text.splitlines()
    assert len(lines) == 4  # header + max(2 ours, 3 published)
    assert lines[1].startswith("mrl") and lines[2].startswith("dummy")
    assert "| A" in lines[1] and "| C" in lines[3]
    assert all("|" in line for line in lines)


def test_neighbour_agreement_perfect_and_chance():
    X = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], float)
    agree, chance = bench.neighbour_agreement(X, ["a", "a", "b", "b"], k=1)
    assert agree == 1.0 and chance == pytest.approx(1 / 3)
    agree, _ = bench.neighbour_agreement(X, ["a", "b", "a", "b"], k=1)
    assert agree == 0.0
    # k is clipped to n - 1; zero rows do not crash
    agree, _ = bench.neighbour_agreement(np.zeros((3, 2)), ["a", "a", "b"], k=10)
    assert 0.0 <= agree <= 1.0


def test_subset_recomputes_usage():  # was the benchmark's refit_usage; FormulaData.subset does it now
    data = _tiny()
    sub = data.subset(np.array([True, False, True, False]))
    mats = sub.materials.set_index("material_id")
    assert list(sub.materials["material_id"]) == list(data.materials["material_id"])
    assert mats.loc["Ni", "n_formulas"] == 0 and mats.loc["Ni", "median_content"] == 0.0
    assert mats.loc["C", "n_formulas"] == 1 and mats.loc["C", "median_content"] == pytest.approx(0.1)
    assert mats.loc["Fe", "median_content"] == pytest.approx(0.95)


def test_initial_table_shape_scale_and_missing():
    table = pd.DataFrame(np.random.default_rng(0).standard_normal((5, 7)), index=list("ABCDE"))
    out = initial_table(table, ["A", "B", "C", "Z", "D", "E"], dim=3, activation="none", scale=0.5)
    assert out.shape == (6, 3)
    assert np.all(out[3] == 0)  # Z is not in the table
    assert np.tanh(initial_table(table, list("ABCDE"), 3, "tanh")).std() == pytest.approx(0.5, rel=1e-6)
    # more dims than the table's rank: extra columns are zero
    wide = initial_table(table.iloc[:, :2], list("ABCDE"), dim=4, activation="none")
    assert np.all(wide[:, 2:] == 0) and np.abs(wide[:, :2]).sum() > 0
    with pytest.raises(ValueError):
        initial_table(table, list("AB"), 0)


def test_set_initial_table_and_fit_hook():
    from mrl.estimator import MixtureRegressor
    from mrl.model import MixtureModel

    module = MixtureModel(n_materials=3, embedding_dim=2, hidden=(4,))
    set_initial_table(module, np.ones((3, 2)))
    assert torch.allclose(module.table, torch.ones(3, 2))
    with pytest.raises(ValueError):
        set_initial_table(module, np.ones((2, 2)))

    data = _tiny()
    values = np.full((data.n_materials, 2), 0.3)  # a tiny lr (lr must be > 0): one step moves nothing measurably
    est = MixtureRegressor(embedding_dim=2, hidden=(4,), steps=1, lr=1e-12, progress=False, device="cpu",
                           pin_origin=None, eval_every=10, snapshot_every=10, checkpoint_every=10)
    est.fit(data, initial_table=values)
    assert np.allclose(est.module_.table.detach().numpy(), 0.3)


def _cached(name: str) -> bool:
    from mrl.wheels import cache_dir

    return (cache_dir() / "datasets" / f"{name}-v1" / "done.json").exists()


@pytest.mark.skipif(not _cached("matbench_steels"), reason="matbench_steels not in the local cache")
def test_real_steels_folds_and_tables():
    from mrl.public_data import load_dataset, matbench_folds

    data = load_dataset("matbench_steels")
    folds = matbench_folds(data)
    assert len(folds) == 5 and sum(len(te) for _, te in folds) == data.n_samples == 312
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(312))
    sub = data.subset(np.isin(np.arange(312), folds[0][0]))
    assert (sub.materials["n_formulas"] <= data.materials["n_formulas"]).all()


def test_mae_figure_and_plot_from(tmp_path):
    import json

    rows = [bench.fold_summary("dummy", "fractions", [2.0, 2.2], 0.1), bench.fold_summary("mrl", "dim 4", [1.0], 3.0)]
    result = {"task": "expt_gap", "rows": rows, "published_quoted": [["A", 1.5], ["B", 0.5]]}
    out = bench.mae_figure(result, tmp_path / "f.png")
    assert out.exists() and out.stat().st_size > 1000
    (tmp_path / "r.json").write_text(json.dumps(result))
    bench.main(["--plot-from", str(tmp_path / "r.json"), "--figure", str(tmp_path / "g.png")])
    assert (tmp_path / "g.png").exists()


def test_inner_split_deterministic_share():
    a = bench.inner_split(10, 0.2, seed=3)
    assert a.sum() == 2 and np.array_equal(a, bench.inner_split(10, 0.2, seed=3))
    assert bench.inner_split(3, 0.1).sum() == 1
    with pytest.raises(ValueError):
        bench.inner_split(10, 1.0)


def test_run_mrl_tuned_tiny():
    rng = np.random.default_rng(0)
    n = 30
    forms = pd.DataFrame({"formula_id": np.repeat([f"f{i}" for i in range(n)], 2),
                          "material_id": np.tile(["Fe", "C"], n),
                          "content": np.column_stack([1 - (c := rng.uniform(0, 0.3, n)), c]).ravel()})
    props = pd.DataFrame({"formula_id": [f"f{i}" for i in range(n)], "y": c * 10})
    data = load_formulas(forms, props, targets="y", content_unit="fraction")
    folds = [(np.arange(0, 20), np.arange(20, 30))]
    settings = dict(steps=5, batch_size=8, hidden=(4,), pin_origin=None, target_transform="none")
    grid = [{"embedding_dim": 2}, {"embedding_dim": 3, "mat2vec": True}]
    row, choices = bench.run_mrl_tuned(data, folds, settings, grid, lambda d: np.zeros((2, d)), "t", print)
    assert row["n_folds"] == 1 and np.isfinite(row["mae_mean"])
    assert choices[0]["chosen"] in grid and len(choices[0]["inner_mae"]) == 2
    cand = {"embedding_dim": 3, "interaction": "attention", "loss": "l1"}
    row, est = bench.run_mrl(data, folds, settings, cand, None, "mrl attention", print)
    assert row["features"] == "dim 3, attn, l1" and est.module_.interaction is not None
    assert np.isfinite(row["fold_mae"]).all()


def test_format_results_keeps_columns_aligned_for_long_labels():
    rows = [bench.fold_summary("mrl attention+mat2vec", "dim 16, attn, l1", [1.0], 1.0),
            bench.fold_summary("dummy", "fractions", [2.0], 0.1)]
    lines = bench.format_results(rows, [("A", 1.5)], "eV").splitlines()
    assert len({line.index("|") for line in lines}) == 1
    assert lines[1].split()[:4] == ["mrl", "attention+mat2vec", "dim", "16,"]
    assert "1" in lines[1].split("|")[0].split()[-3]
