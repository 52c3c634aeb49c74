"""The training-length table (benchmarks/training_length.py) and the liquid benchmark's random folds (issue 26):
rendered from their result files into the pages, worded by mrl.wording, and a changed number changes a sentence."""
from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _bench(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(name)


def _lab(fixed: list[float], auto: list[float]) -> dict:
    row = {"data": "bundled lab", "split": "3 seeds", "metric": "eval MAE", "unit": "log10 cP", "fixed_steps": 20000,
           "over": "seeds", "fixed": [{"value": v, "wall_s": 100.0, "seed": s} for s, v in enumerate(fixed)],
           "auto": [{"value": v, "wall_s": 150.0, "seed": s, "budget": 20000, "best_step": 10000 + s}
                    for s, v in enumerate(auto)]}
    return {"data_sets": {"lab": [row]}}


def test_the_table_words_auto_against_fixed_from_the_numbers():
    bench = _bench("training_length")
    won = bench.render_table(_lab([0.50, 0.36, 0.40], [0.45, 0.33, 0.38]))
    assert "| bundled lab | 3 seeds | eval MAE (log10 cP) |" in won
    assert "budget 20,000; kept 10,000-10,002" in won
    assert "(mean ± SD over 3 seeds)" in won
    lost = bench.render_table(_lab([0.30, 0.31, 0.29], [0.45, 0.46, 0.44]))
    assert "above that of 20,000 fixed steps" in lost and "20,000 fixed steps is better than steps: auto" in lost
    assert won != lost


def test_lab_seeds_run_in_separate_calls_are_merged_by_seed():
    bench = _bench("training_length")
    old = _lab([0.5, 0.4, 0.3], [0.4, 0.4, 0.4])["data_sets"]["lab"]
    new = copy.deepcopy(_lab([0.9], [0.8])["data_sets"]["lab"])
    (row,) = bench.merge_runs(old, new)
    assert [r["value"] for r in row["fixed"]] == [0.9, 0.4, 0.3] and [r["seed"] for r in row["auto"]] == [0, 1, 2]
    assert row["split"].endswith("3 seeds")


def test_the_performance_page_shows_the_result_file():
    bench = _bench("training_length")
    path = RESULTS / "training_length.json"
    results = json.loads(path.read_text())
    page = (ROOT / "book" / "performance.md").read_text()
    for name, render in bench.SECTIONS.items():
        assert f"<!-- {name} -->\n{render(results)}\n<!-- /{name} -->" in page, (
            "book/performance.md is stale: python benchmarks/training_length.py --render "
            "benchmarks/results/training_length.json --book book/performance.md")
    changed = copy.deepcopy(results)
    row = bench.rows_of(changed)[0]
    for run in row["auto"]:
        run["value"] *= 3
    assert bench.render_table(changed) != bench.render_table(results)


def test_row_folds_partition_every_row_once_and_are_seeded():
    liquid = _bench("liquid_viscosity")
    folds = liquid.row_folds(23, 5)
    assert len(folds) == 5
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(23))
    for tr, te in folds:
        assert not set(tr) & set(te) and len(tr) + len(te) == 23
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, liquid.row_folds(23, 5)))
    with pytest.raises(ValueError, match="--folds"):
        liquid.row_folds(3, 5)


def test_the_liquid_fold_rows_are_on_the_page_and_worded_from_the_numbers():
    liquid = _bench("liquid_viscosity")
    results = json.loads((RESULTS / "liquid_viscosity.json").read_text())
    text = liquid.render_folds(results)
    assert "mean ± SD over 5 folds" in text and "| LightGBM (mole-fraction-weighted RDKit" in text and "MAE pure" in text
    page = (ROOT / "book" / "liquid_viscosity.md").read_text()
    assert f"<!-- liquid-folds -->\n{text}\n<!-- /liquid-folds -->" in page, (
        "book/liquid_viscosity.md is stale: python benchmarks/liquid_viscosity.py --render "
        "benchmarks/results/liquid_viscosity.json --book book/liquid_viscosity.md")
    changed = copy.deepcopy(results)
    for run in changed["folds"]["rows"]["mrl_rdkit"]:
        run["mae"] = 0.5
    other = liquid.render_folds(changed)
    assert "LightGBM on descriptors is better than mrl + RDKit features" in other and other != text
