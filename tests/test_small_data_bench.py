"""benchmarks/small_data.py: choices on calib only, the verdict from the numbers, the book page from its result file."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


bench = load_benchmark("small_data")


def _run(seed: int, candidate: str, calib: float, evaluation: float, base_eval: float) -> dict:
    return {"data": "lab 300", "candidate": candidate, "seed": seed, "metric": "mae_log10", "calib": calib,
            "eval": evaluation, "fit_s": 3.0, "n_train": 216, "best_baseline": "LightGBM on contents",
            "baselines": {"LightGBM on contents": {"calib": 0.3, "eval": base_eval, "fit_s": 0.5},
                          "mean of train": {"calib": 1.0, "eval": 1.0, "fit_s": 0.0}}}


def test_mrl_is_chosen_on_calib_never_on_eval():
    runs = [_run(s, "default", 0.40, 0.30, 0.35) for s in range(3)]
    runs += [_run(s, "small", 0.35, 0.50, 0.35) for s in range(3)]  # better on calib, worse on eval: still chosen
    (row,) = bench.summarise(runs)
    assert row["mrl_choices"] == ["small"] * 3
    assert row["mrl"]["value"] == 0.5 and row["verdict"] == "worse"
    assert "LightGBM on contents is better than mrl" in row["sentence"]


def test_the_page_is_rendered_from_the_result_file():
    result = json.loads((ROOT / "benchmarks" / "results" / "small_data.json").read_text())
    page = bench.render(result)
    assert (ROOT / "book" / "small_data.md").read_text() == page
    for row in result["rows"]:
        assert f"| {row['data']} |" in page and row["sentence"] in page
