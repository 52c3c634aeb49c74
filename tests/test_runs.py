"""Reading a run folder back: tables by suffix, and no torch import for a reader that never needs the model."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mrl.io import write_json, write_table
from mrl.runs import load_run

ROOT = Path(__file__).resolve().parents[1]


def _fake_run(folder: Path) -> dict[str, pd.DataFrame]:
    """A finished run folder holding every table (no training), returning the tables written."""
    tables = {
        "embeddings.parquet": pd.DataFrame({"material_id": ["M1", "M2"], "e0": [0.5, -1.0]}),
        "snapshots.parquet": pd.DataFrame({"step": [0, 10], "material_id": ["M1", "M1"], "e0": [0.0, 0.5]}),
        "history.csv": pd.DataFrame({"step": [1, 2], "train_loss": [1.5, 0.75]}),
        "predictions.parquet": pd.DataFrame({"formula_id": ["F1"], "split": ["eval"], "y_true": [1.0],
                                             "y_pred": [1.25]}),
        "split.parquet": pd.DataFrame({"sample": [0], "formula_id": ["F1"], "split": ["eval"]}),
    }
    for name, frame in tables.items():
        write_table(frame, folder / name)
    write_json({"eval": {"mae": 0.25}}, folder / "metrics.json")
    return tables


def test_run_reads_tables_by_suffix(tmp_path):
    tables = _fake_run(tmp_path)
    run = load_run(tmp_path)
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(getattr(run, name.split(".")[0]), frame)
    assert run.metrics == {"eval": {"mae": 0.25}}
