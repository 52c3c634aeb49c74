"""benchmarks/small_data.py: the table's mrl is the package defaults, the best baseline is chosen on calib, the verdict
comes from the numbers, and the book page is rendered from its result file."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


bench = load_benchmark("small_data")


def _run(seed: int, candidate: str, evaluation: float, base_eval: float, base_calib: float = 0.3) -> dict:
    return {"data": "lab 300", "candidate": candidate, "seed": seed, "metric": "mae_log10", "calib": 0.4,
            "eval": evaluation, "fit_s": 3.0, "n_train": 216, "best_baseline": "LightGBM on contents",
            "stack": "ridge", "steps": 500, "step_budget": 2000, "small_data": "small-data settings (...)",
            "baselines": {"LightGBM on contents": {"calib": base_calib, "eval": base_eval, "fit_s": 0.5},
                          "mean of train": {"calib": 1.0, "eval": 1.0, "fit_s": 0.0}}}


def test_the_row_is_the_defaults_candidate_against_the_calib_chosen_baseline():
    runs = [_run(s, "defaults", 0.50, 0.35) for s in range(3)]
    runs += [_run(s, "net only", 0.20, 0.35) for s in range(3)]  # better on eval: never the table's mrl
    (row,) = bench.summarise(runs)
    assert row["mrl"]["value"] == 0.5 and row["verdict"] == "worse"
    assert "LightGBM on contents is better than mrl" in row["sentence"]
    assert abs(row["candidates"]["net only"]["value"] - 0.2) < 1e-12
    win = bench.summarise([_run(s, "defaults", 0.30 + 0.001 * s, 0.40 + 0.001 * s) for s in range(3)])[0]
    assert win["verdict"] == "better" and "mrl is better" in win["sentence"]


def test_the_page_is_rendered_from_the_result_file():
    result = json.loads((ROOT / "benchmarks" / "results" / "small_data.json").read_text())
    page = bench.render({**result, "rows": bench.summarise(result["runs"])})
    assert (ROOT / "book" / "small_data.md").read_text() == page
    for row in result["rows"]:
        assert f"| {row['data']} |" in page and row["sentence"] in page
