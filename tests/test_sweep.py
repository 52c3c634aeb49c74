"""Sweeps end to end: papermill notebooks per grid point, idempotence, resume, failure isolation, validation.

One small sweep (``params/quick.yaml``, two embedding sizes) runs once for the module into a temporary runs
folder; the other tests build on it. About a minute and a half on two cores.
"""
from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from mrl.io import read_json
from mrl.sweep import DONE, ERROR, load_sweep, run_sweep

QUICK = Path(__file__).resolve().parents[1] / "params" / "quick.yaml"
#: Lighter display options for 04_visualize than quick.yaml's (the notebook's work is not under test here).
FAST_VISUALIZE = {"map_methods": ["pca"], "n_frames": 4, "gif_frames": 4, "influence_formulas": 20, "n_pairs": 5}


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    sweep = load_sweep(QUICK, runs_dir=str(runs), notebook_params={"04_visualize": FAST_VISUALIZE})
    summary = run_sweep(sweep, jobs=2)
    return sweep, summary


def test_quick_sweep_runs_every_notebook(quick):
    sweep, summary = quick
    assert list(summary["point"]) == ["dim_0002", "dim_0008"]
    assert list(summary["embedding_dim"]) == [2, 8]
    assert (summary["status"] == "done").all(), summary["error"].tolist()
    on_disk = pd.read_csv(sweep.summary_path)
    assert list(on_disk["point"]) == ["dim_0002", "dim_0008"]
    for column in ("steps", "wall_s", "train_mae", "eval_mae", "full_mae", "eval_rmse", "eval_r2", "eval_mape"):
        assert on_disk[column].map(math.isfinite).all(), column
    assert (on_disk["steps"] == 200).all()

    data = sweep.folder / "data"
    assert (data / DONE).exists() and (data / "01_data.ipynb").exists() and (data / "data_usage.png").exists()
    for point, first_map in (("dim_0002", "map_raw"), ("dim_0008", "map_pca")):
        folder = sweep.folder / point
        assert (folder / DONE).exists() and not (folder / ERROR).exists()
        metrics = read_json(folder / "metrics.json")
        assert metrics["eval"]["mae"] == pytest.approx(summary.set_index("point").loc[point, "eval_mae"])
        for name in ("history.png", "parity.png", "error_by_usage.png", "evolution.png", "evolution.gif",
                     f"{first_map}.png", f"{first_map}.html", "top_pairs.csv", "clusters.csv", "truth_scores.csv"):
            assert (folder / name).stat().st_size > 0, f"{point}/{name}"
        for notebook in ("02_train", "03_evaluate", "04_visualize"):
            nb = nbformat.read(folder / f"{notebook}.ipynb", as_version=4)
            assert not nb.metadata.papermill.get("exception")
            injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
            assert injected and f'name = "{point}"' in injected[0].source
            assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    html = sweep.folder / "dim_0008" / "map_pca.html"  # offline: one plotly.min.js beside the maps, no CDN
    assert html.stat().st_size < 1_000_000 and 'src="plotly.min.js"' in html.read_text()
    assert (sweep.folder / "dim_0008" / "plotly.min.js").stat().st_size > 1_000_000


def test_second_run_skips_finished_points(quick):
    sweep, _ = quick
    before = _mtimes(sweep.folder)
    summary = run_sweep(sweep, jobs=2)
    after = _mtimes(sweep.folder)
    assert (summary["status"] == "done").all()
    changed = {k for k in before if before[k] != after.get(k)} - {"summary.csv", "sweep.yaml"}
    assert not changed, f"a finished point was executed again: {sorted(changed)}"


def test_interrupted_point_resumes_from_its_checkpoint(quick):
    """As if the sweep was killed after training one point: no done marker, no metrics, checkpoint kept."""
    sweep, summary = quick
    point = sweep.folder / "dim_0008"
    metrics_before = read_json(point / "metrics.json")
    checkpoint_mtime = (point / "checkpoint.pt").stat().st_mtime_ns
    other_before = _mtimes(sweep.folder / "dim_0002")
    (point / DONE).unlink()
    (point / "metrics.json").unlink()

    # only the training notebook matters here (and the others take a while): execute just that one
    resumed = run_sweep(load_sweep(QUICK, runs_dir=str(sweep.runs_dir), notebooks=["02_train"], notebook_params={}),
                        jobs=1)
    assert (resumed["status"] == "done").all()
    assert (point / DONE).exists()
    metrics_after = read_json(point / "metrics.json")
    assert metrics_after["steps"] == metrics_before["steps"]
    assert metrics_after["eval"] == metrics_before["eval"]
    # continuing at the last step trains nothing, so the checkpoint is not rewritten
    assert (point / "checkpoint.pt").stat().st_mtime_ns == checkpoint_mtime
    assert _mtimes(sweep.folder / "dim_0002") == other_before


def test_failing_point_is_recorded_and_does_not_stop_the_others(tmp_path):
    sweep = load_sweep(QUICK, name="fail", runs_dir=str(tmp_path), data_notebook=None, notebooks=["02_train"],
                       base={"data": "synth:small", "steps": 30, "eval_every": 10, "snapshot_every": 10,
                             "checkpoint_every": 10},
                       grid={"target": ["viscosity", "no_such_property"]}, point_name="target_{target}",
                       notebook_params={})
    summary = run_sweep(sweep, jobs=2).set_index("point")
    assert summary.loc["target_viscosity", "status"] == "done"
    assert summary.loc["target_no_such_property", "status"] == "failed"
    assert "02_train" in summary.loc["target_no_such_property", "error"]
    error = sweep.folder / "target_no_such_property" / ERROR
    text = error.read_text()
    assert "notebook: 02_train" in text and "no_such_property" in text and "Traceback" in text
    assert (sweep.folder / "target_viscosity" / DONE).exists()
    # the run failed before training: its folder keeps the sweep's files, no half-written run
    assert not {"params.yaml", "split.parquet", "checkpoint.pt"} & {p.name for p in error.parent.iterdir()}
    assert pd.read_csv(sweep.summary_path).set_index("point").loc["target_no_such_property", "status"] == "failed"

    mtime = error.stat().st_mtime_ns
    run_sweep(sweep, jobs=1)  # failed points are not retried by default
    assert error.stat().st_mtime_ns == mtime
    again = run_sweep(sweep, jobs=1, retry_failed=True).set_index("point")
    assert error.stat().st_mtime_ns != mtime and again.loc["target_no_such_property", "status"] == "failed"


def test_cli_sweep_exits_non_zero_when_a_point_failed(tmp_path, caplog):
    """``mrl sweep X && mrl report Y`` must stop at a failed point (the target is missing: fails before training)."""
    from mrl.cli import main

    spec = tmp_path / "fail.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "fail", "runs_dir": str(tmp_path / "runs"), "notebooks": ["02_train"],
        "base": {"data": "synth:small", "steps": 10}, "grid": {"target": ["no_such_property"]},
        "point_name": "target_{target}"}))
    error = tmp_path / "runs" / "fail" / "target_no_such_property" / ERROR
    for _ in range(2):  # a failure recorded by an earlier run (not retried) counts too
        caplog.clear()
        with pytest.raises(SystemExit) as exit_info:
            main(["sweep", str(spec), "--jobs", "1"])
        assert exit_info.value.code == 1
        assert error.exists()
        assert f"target_no_such_property ({error})" in caplog.text
    assert pd.read_csv(tmp_path / "runs" / "fail" / "summary.csv")["status"].tolist() == ["failed"]


def test_bad_params_are_rejected_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="embedding_dim must be > 0"):
        run_sweep(QUICK, runs_dir=str(tmp_path), grid={"embedding_dim": [4, 0]})
    with pytest.raises(ValueError, match="unknown parameter"):
        run_sweep(QUICK, runs_dir=str(tmp_path), grid={"embedding_size": [4]})
    with pytest.raises(ValueError, match="steps must be a positive integer or 'auto'"):
        run_sweep(QUICK, runs_dir=str(tmp_path), base={"steps": "many"})
    with pytest.raises(ValueError, match="twice"):
        run_sweep(QUICK, runs_dir=str(tmp_path), grid={"embedding_dim": [2], "seed": [0, 1]})
    with pytest.raises(ValueError, match="not parameters of 04_visualize"):
        run_sweep(QUICK, runs_dir=str(tmp_path), notebook_params={"04_visualize": {"colour": "red"}})
    assert not any(tmp_path.iterdir()), "nothing may be written before all points are valid"


def test_changed_params_of_an_existing_point_are_refused(quick):
    sweep, _ = quick
    changed = load_sweep(QUICK, runs_dir=str(sweep.runs_dir), base={**sweep.base, "steps": 300})
    with pytest.raises(ValueError, match=r"steps: 200 -> 300"):
        run_sweep(changed)


def test_papermill_sees_every_parameter_of_every_notebook():
    """papermill's inspector skips annotations it cannot parse (e.g. ``str | None``); the sweep then would not
    pass that parameter, silently."""
    import ast

    import papermill

    from mrl.sweep import default_notebooks_dir

    for path in sorted(default_notebooks_dir().glob("0*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = [node.target.id for node in ast.parse(cell.source).body if isinstance(node, ast.AnnAssign)]
        assert len(assigned) == len(cell.source.strip().splitlines()), f"{path.name}: one annotated literal a line"
        assert list(papermill.inspect_notebook(str(path))) == assigned, path.name
        assert all(p["help"] for p in papermill.inspect_notebook(str(path)).values()), f"{path.name}: # help"


def test_a_kernel_that_dies_before_it_starts_is_started_again(tmp_path, monkeypatch):
    """Two kernels started at once can race for a port; a notebook whose kernel died before replying ran no cell and
    is executed again (at most KERNEL_START_RETRIES times); any other error is recorded at once."""
    import papermill

    from mrl.sweep import KERNEL_START_FAILURE, KERNEL_START_RETRIES, Point, execute_point

    calls = []

    def flaky(src, dst, **kwargs):
        calls.append(src)
        if len(calls) <= KERNEL_START_RETRIES:
            raise RuntimeError(KERNEL_START_FAILURE)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    point = Point("p", tmp_path / "p", ["02_train"], {"02_train": {}}, {})
    assert execute_point(point, str(tmp_path))["status"] == "done"
    assert len(calls) == KERNEL_START_RETRIES + 1

    def always(src, dst, **kwargs):
        calls.append(src)
        raise RuntimeError(KERNEL_START_FAILURE)

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", always)
    assert execute_point(point, str(tmp_path))["status"] == "failed" and len(calls) == KERNEL_START_RETRIES + 1

    def broken(src, dst, **kwargs):
        calls.append(src)
        raise RuntimeError("something else")

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", broken)
    assert execute_point(point, str(tmp_path))["status"] == "failed" and len(calls) == 1
