"""benchmarks/workflow.py: the lab it writes, a step's progress and failure, and the book page from its JSON."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


bench = load_benchmark("workflow")


def test_lab_workbook_has_three_sheets_and_new_formulas_apart(tmp_path):
    path, new = bench.write_lab(tmp_path, "xlsx", n_formulas=150, n_new=20, n_materials=100, seed=0)
    sheets = pd.read_excel(path, sheet_name=None, engine="openpyxl")
    assert set(sheets) == {"formulas", "properties", "materials"}
    assert sheets["properties"]["formula_id"].nunique() == 150
    new_ids = set(pd.read_csv(new)["formula_id"])
    assert len(new_ids) == 20 and not new_ids & set(sheets["formulas"]["formula_id"])
    sums = sheets["formulas"].groupby("formula_id")["content"].sum()
    assert sums.between(99.9, 100.1).all()  # percent, as a lab keeps them


def test_step_reports_progress_and_names_its_log_on_failure(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "TICK_S", 0.2)
    wall = bench.run_step("wait 1/2", [sys.executable, "-c", "import time; print('working'); time.sleep(0.7)"],
                          tmp_path, tmp_path, {})
    out = capsys.readouterr().out
    assert wall >= 0.7 and "[wait 1/2]" in out and "working" in out and (tmp_path / "wait_1_2.log").exists()
    with pytest.raises(RuntimeError, match="wait_1_2.log"):
        bench.run_step("wait 1/2", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path, tmp_path, {})


def test_page_renders_the_table_from_the_json_or_says_not_measured():
    assert "Not measured yet" in bench.render_page(None)
    result = {"steps": [{"step": "validate", "command": "mrl validate lab.xlsx", "wall_s": 12.5},
                        {"step": "train", "command": "mrl train ...", "wall_s": 300.0},
                        {"step": "design (2 formulas)", "command": "mrl design ...", "wall_s": 50.0,
                         "calls_s": [20.0, 30.0]}],
              "total_s": 362.5, "goal_s": 600.0, "met": True,
              "settings": {"format": "xlsx", "formulas": 5000, "new_formulas": 300, "materials": 500,
                           "design_tasks": 10, "ensemble": 5, "train_steps": 4000, "seed": 0,
                           "OMP_NUM_THREADS": "1"},
              "run": {"eval_mae": 3000.0, "eval_r2": 0.6, "coverage_80_eval": 0.79},
              "machine": {"cpus": 2, "python": "3.11", "loadavg_1min_at_end": 1.0}}
    page = bench.render_page(json.loads(json.dumps(result)))
    assert "| validate | `mrl validate lab.xlsx` | 12.5 |" in page and "**362.5**" in page
    assert "6.0 min" in page and "took 20-30 s" in page and "largest step is train" in page and "(met)" in page and "one workbook" in page
