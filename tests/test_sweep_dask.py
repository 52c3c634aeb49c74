"""Sweeps on a dask.distributed cluster (``scheduler: local:2``, a LocalCluster of 2 worker processes): the same
run folders, resume, failure isolation and ``retry_failed`` as the local pool. Skipped without dask.distributed.
About two minutes on two cores."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from mrl.sweep import DONE, ERROR, load_sweep, run_sweep

QUICK = Path(__file__).resolve().parents[1] / "params" / "quick.yaml"
FAST_VISUALIZE = {"map_methods": ["pca"], "n_frames": 4, "gif_frames": 4, "influence_formulas": 20, "n_pairs": 5}


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_quick_sweep_on_a_local_dask_cluster(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)  # a relative runs_dir: the folders sent to the workers must be absolute
    sweep = load_sweep(QUICK, runs_dir="runs", notebook_params={"04_visualize": FAST_VISUALIZE})
    summary = run_sweep(sweep, scheduler="local:2")
    assert list(summary["point"]) == ["dim_0002", "dim_0008"]
    assert (summary["status"] == "done").all(), summary["error"].tolist()
    folder = tmp_path / "runs" / "quick"
    for point in ("data", "dim_0002", "dim_0008"):
        assert (folder / point / DONE).exists() and not (folder / point / ERROR).exists()
    for point in ("dim_0002", "dim_0008"):
        assert (folder / point / "metrics.json").exists() and (folder / point / "04_visualize.ipynb").exists()
    assert (pd.read_csv(folder / "summary.csv")["steps"] == 200).all()

    before = _mtimes(folder)  # resumable: a second run (pool or cluster) executes nothing
    again = run_sweep(sweep, scheduler="local:2")
    assert (again["status"] == "done").all()
    changed = {k for k in before if before[k] != _mtimes(folder).get(k)} - {"summary.csv", "sweep.yaml"}
    assert not changed, f"a finished point was executed again: {sorted(changed)}"


def test_failed_point_on_the_cluster_is_isolated_and_retried_on_request(tmp_path):
    pytest.importorskip("distributed")
    sweep = load_sweep(QUICK, name="fail", runs_dir=str(tmp_path), data_notebook=None, notebooks=["02_train"],
                       base={"data": "synth:small", "steps": 30, "eval_every": 10, "snapshot_every": 10,
                             "checkpoint_every": 10},
                       grid={"target": ["viscosity", "no_such_property"]}, point_name="target_{target}",
                       notebook_params={}, scheduler="local:2")  # the sweep file's scheduler key
    summary = run_sweep(sweep).set_index("point")
    assert summary.loc["target_viscosity", "status"] == "done"
    assert summary.loc["target_no_such_property", "status"] == "failed"
    error = sweep.folder / "target_no_such_property" / ERROR
    assert "notebook: 02_train" in error.read_text() and "no_such_property" in error.read_text()
    mtime = error.stat().st_mtime_ns
    run_sweep(sweep)  # not retried by default
    assert error.stat().st_mtime_ns == mtime
    again = run_sweep(sweep, retry_failed=True).set_index("point")
    assert error.stat().st_mtime_ns != mtime and again.loc["target_no_such_property", "status"] == "failed"
    assert again.loc["target_viscosity", "status"] == "done"


def test_scheduler_without_dask_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ImportError, match=r"mrl\[cluster\]"):
        run_sweep(QUICK, runs_dir=str(tmp_path), scheduler="local:2")
    assert not any(tmp_path.iterdir()), "nothing may be written before the scheduler is usable"


def test_bad_scheduler_is_refused_before_anything_runs(tmp_path):
    pytest.importorskip("distributed")
    for bad in ("local:0", "local:two", "somewhere"):
        with pytest.raises(ValueError, match="scheduler"):
            run_sweep(QUICK, runs_dir=str(tmp_path), scheduler=bad)
    assert not any(tmp_path.iterdir())
