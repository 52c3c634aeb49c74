"""Nothing lost, nothing silently wrong: a new attempt never destroys a finished run, a failed run leaves nothing
half-written, Ctrl-C / SIGTERM / SIGKILL leave a resumable run, resume keeps a run's own params, and every choice a
run makes is logged before it trains."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import tiny_tables

from mrl.cli import main
from mrl.io import atomic_dir, read_json
from mrl.params import RunParams
from mrl.run_files import CHECKPOINT, METRICS, PARAMS
from mrl.runs import plan_run, read_params, run_experiment

ROOT = Path(__file__).resolve().parents[1]
#: A few tens of steps on 30 materials / 600 formulas: seconds.
TINY = {"steps": 40, "eval_every": 20, "snapshot_every": 20, "checkpoint_every": 20, "batch_size": 64,
        "embedding_dim": 4, "hidden": [16], "device": "cpu"}


def _write_data(folder: Path, n_formulas: int = 600) -> Path:
    forms, props = tiny_tables(n_formulas=n_formulas)
    folder.mkdir(parents=True, exist_ok=True)
    forms.to_csv(folder / "formulas.csv", index=False)
    props.to_csv(folder / "properties.csv", index=False)
    return folder


def _corrupt(folder: Path) -> None:
    """A text content in row 3 of the formulas table: the loader refuses it."""
    forms = pd.read_csv(folder / "formulas.csv", dtype={"content": object})
    forms.loc[3, "content"] = "lots"
    forms.to_csv(folder / "formulas.csv", index=False)


def _params(tmp_path: Path, **kw) -> RunParams:
    data = tmp_path / "data"
    if not data.exists():
        _write_data(data)
    return RunParams.from_dict({**TINY, "data": str(data), "runs_dir": str(tmp_path / "runs"), "name": "r", **kw})


def _params_file(tmp_path: Path, **kw) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_params(tmp_path, **kw).to_dict()))
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*argv: str) -> int:
    """Run ``mrl`` in process; return its exit status."""
    try:
        main(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _same_numbers(a: dict, b: dict) -> None:
    a, b = dict(a), dict(b)
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b


# ------------------------------------------------------------------------------------------ atomic_dir
def test_atomic_dir_replaces_only_on_success(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    (final / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            assert tmp.parent == final.parent and tmp.name.startswith(".run.partial-")
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert (final / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with atomic_dir(final) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_atomic_dir_creates_and_cleans_stale_leftovers(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".run.partial-{dead.pid}"
    stale.mkdir()
    with atomic_dir(tmp_path / "run") as tmp:
        (tmp / "x").write_text("1")
    assert not stale.exists()
    assert (tmp_path / "run" / "x").read_text() == "1"


# ------------------------------------------------------------------------------------------ overwrite
def test_overwrite_with_bad_data_leaves_the_old_run_byte_identical(tmp_path, caplog):
    params_file = _params_file(tmp_path)
    assert _cli("train", "--params", str(params_file), "--quiet") == 0
    run = tmp_path / "runs" / "r"
    before = _snapshot(run)
    _corrupt(tmp_path / "data")
    with caplog.at_level(logging.ERROR):
        assert _cli("train", "--params", str(params_file), "--overwrite", "--quiet") == 2
    assert "formulas.csv: row 3" in caplog.text and "'content'" in caplog.text
    assert _snapshot(run) == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]


def test_overwrite_failing_in_training_leaves_the_old_run(tmp_path, monkeypatch):
    params = _params(tmp_path)
    run = run_experiment(params, progress=False)
    before = _snapshot(run)

    def broken_fit(self, *args, **kwargs):
        raise RuntimeError("out of memory")
    from mrl.estimator import MixtureRegressor
    monkeypatch.setattr(MixtureRegressor, "fit", broken_fit)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_experiment(_params(tmp_path, embedding_dim=6), overwrite=True, progress=False)
    assert _snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["r"]


def test_overwrite_replaces_a_finished_run_when_it_succeeds(tmp_path):
    run = run_experiment(_params(tmp_path), progress=False)
    run_experiment(_params(tmp_path, embedding_dim=6), overwrite=True, progress=False)
    assert read_json(run / METRICS)["embedding_dim"] == 6
    assert sorted(p.name for p in run.parent.iterdir()) == ["r"]


# ------------------------------------------------------------------------------------------ failed runs
def test_bad_data_leaves_no_run_folder(tmp_path):
    params = _params(tmp_path)
    _corrupt(tmp_path / "data")
    with pytest.raises(ValueError, match="row 3"):
        run_experiment(params, progress=False)
    assert not (tmp_path / "runs").exists()


def test_training_failing_before_a_checkpoint_leaves_no_folder(tmp_path, monkeypatch):
    from mrl.estimator import MixtureRegressor

    def broken_fit(self, *args, **kwargs):
        raise RuntimeError("diverged")
    monkeypatch.setattr(MixtureRegressor, "fit", broken_fit)
    with pytest.raises(RuntimeError, match="diverged"):
        run_experiment(_params(tmp_path), progress=False)
    assert not (tmp_path / "runs").exists()


def test_failure_in_an_existing_folder_removes_only_the_runs_own_files(tmp_path, monkeypatch):
    """A sweep point's folder exists before its run (point.yaml, notebooks): only the run's files go."""
    from mrl.estimator import MixtureRegressor

    folder = tmp_path / "runs" / "r"
    folder.mkdir(parents=True)
    (folder / "point.yaml").write_text("embedding_dim: 4\n")

    def broken_fit(self, *args, **kwargs):
        raise RuntimeError("diverged")
    monkeypatch.setattr(MixtureRegressor, "fit", broken_fit)
    with pytest.raises(RuntimeError):
        run_experiment(_params(tmp_path), resume=True, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["point.yaml"]


# ------------------------------------------------------------------------------------------ plan and log
def test_every_choice_is_logged_before_training(tmp_path, caplog, monkeypatch):
    from mrl.estimator import MixtureRegressor

    seen = []
    original = MixtureRegressor.fit

    def fit(self, *args, **kwargs):
        seen.append(caplog.text)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(MixtureRegressor, "fit", fit)
    with caplog.at_level(logging.INFO, logger="mrl"):
        run_experiment(_params(tmp_path), progress=False)
    logged = seen[0]
    for text in ("data: data (", "target: viscosity", "transform: none (auto: spans 1.8 decades",
                 "conditions: none", "split: random by formula", "train 432 samples / 432 formulas", "calib 48 samples / 48 formulas",
                 "eval 120 samples / 120 formulas", "materials: 30", "pinned at the origin",
                 "formulas per material: median", "training: 40 steps", "device cpu"):
        assert text in logged, text


def test_plan_run_names_the_rows_a_log_transform_cannot_take(tmp_path):
    forms, props = tiny_tables()
    props.loc[:49, "viscosity"] = -1.0  # some of these are training rows
    data = tmp_path / "neg"
    data.mkdir()
    forms.to_csv(data / "formulas.csv", index=False)
    props.to_csv(data / "properties.csv", index=False)
    with pytest.raises(ValueError, match=r"log10 needs positive values; \d+ are <= 0 \(formula F00\d\d = -1"):
        plan_run(RunParams(data=str(data), target_transform="log10"))


def test_a_split_without_training_samples_is_refused_clearly(tmp_path):
    forms, props = tiny_tables(n_formulas=1)
    data = tmp_path / "one"
    data.mkdir()
    forms.to_csv(data / "formulas.csv", index=False)
    props.to_csv(data / "properties.csv", index=False)
    params = RunParams(data=str(data), runs_dir=str(tmp_path / "runs"), steps=20)
    with pytest.raises(ValueError, match="split leaves no training samples.*1 formula"):
        run_experiment(params, progress=False)
    assert not (tmp_path / "runs").exists()


def test_tiny_data_is_warned_about(tmp_path):
    plan = plan_run(RunParams(data=str(_write_data(tmp_path / "d", n_formulas=12))))
    assert any("only 9 training formula(s)" in w for w in plan.warnings), plan.warnings
    assert any("only 2 eval formula(s)" in w for w in plan.warnings), plan.warnings
    assert not plan_run(RunParams(data=str(_write_data(tmp_path / "big")))).warnings


# ------------------------------------------------------------------------------------------ resume
def _unfinished(tmp_path: Path) -> tuple[Path, dict]:
    """A run that trained to its last checkpoint but was stopped before its results (as after a kill)."""
    run = run_experiment(_params(tmp_path), progress=False)
    metrics = read_json(run / METRICS)
    (run / METRICS).unlink()
    return run, metrics


def test_resume_run_dir_uses_its_own_params_and_never_rewrites_them(tmp_path, capsys):
    run, metrics = _unfinished(tmp_path)
    params_bytes, params_mtime = (run / PARAMS).read_bytes(), (run / PARAMS).stat().st_mtime_ns
    split_mtime = (run / "split.parquet").stat().st_mtime_ns
    assert _cli("train", "--resume", str(run), "--quiet") == 0
    _same_numbers(read_json(run / METRICS), metrics)
    assert (run / PARAMS).read_bytes() == params_bytes and (run / PARAMS).stat().st_mtime_ns == params_mtime
    assert (run / "split.parquet").stat().st_mtime_ns == split_mtime


def test_resume_refuses_other_params_naming_each_key(tmp_path, caplog):
    run, _ = _unfinished(tmp_path)
    before = _snapshot(run)
    with caplog.at_level(logging.ERROR):
        assert _cli("train", "--resume", str(run), "--set", "embedding_dim=6", "lr=0.01", "--quiet") == 2
    stored = read_params(run).lr  # as the run resolved it (small-data settings on this tiny data)
    assert "embedding_dim: 4 -> 6" in caplog.text and f"lr: {stored!r} -> 0.01" in caplog.text
    caplog.clear()
    params_file = _params_file(tmp_path, embedding_dim=6)
    with caplog.at_level(logging.ERROR):
        assert _cli("train", "--params", str(params_file), "--resume", "--quiet") == 2
    assert "embedding_dim: 4 -> 6" in caplog.text
    assert _snapshot(run) == before


def test_resume_with_nothing_to_resume_is_an_error(tmp_path, caplog):
    params_file = _params_file(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert _cli("train", "--params", str(params_file), "--resume", "--quiet") == 2
    assert f"nothing to resume in {tmp_path / 'runs' / 'r'}" in caplog.text
    assert not (tmp_path / "runs").exists()
    with caplog.at_level(logging.ERROR):
        assert _cli("train", "--resume", str(tmp_path / "runs" / "r"), "--quiet") == 2
    assert "nothing to resume" in caplog.text


def test_resume_of_a_finished_run_says_so_and_touches_nothing(tmp_path, capsys):
    run = run_experiment(_params(tmp_path), progress=False)
    before = _snapshot(run)
    assert _cli("train", "--resume", str(run), "--quiet") == 0
    assert "already finished" in capsys.readouterr().out
    assert _snapshot(run) == before


# ------------------------------------------------------------------------------------------ signals
def _train_process(tmp_path: Path, name: str, steps: int) -> subprocess.Popen:
    params_file = _params_file(tmp_path, name=name, steps=steps, checkpoint_every=100, eval_every=100,
                               snapshot_every=100)
    return subprocess.Popen([sys.executable, "-m", "mrl.cli", "train", "--params", str(params_file), "--quiet"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path} appeared: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def _resume(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrl.cli", "train", "--resume", str(run), "--quiet"],
                          cwd=run.parents[1], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Metrics of an uninterrupted 3000-step run (in a subprocess, like the interrupted ones)."""
    tmp_path = tmp_path_factory.mktemp("reference")
    proc = _train_process(tmp_path, "ref", 3000)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return read_json(tmp_path / "runs" / "ref" / METRICS)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_says_how_to_resume_and_resumes_to_the_same_numbers(tmp_path, reference, sig):
    proc = _train_process(tmp_path, "ref", 3000)
    run = tmp_path / "runs" / "ref"
    _wait_for(run / CHECKPOINT, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err  # 130 for Ctrl-C, 143 for SIGTERM
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and last.endswith(f"of 3000; checkpoint saved; resume with: "
                                                                     f"mrl train --resume {run}"), err
    assert int(last.split()[3]) < 3000
    assert {PARAMS, "split.parquet", CHECKPOINT} <= {p.name for p in run.iterdir()}
    assert not (run / METRICS).exists()
    done = _resume(run)
    assert done.returncode == 0, done.stderr
    _same_numbers(read_json(run / METRICS), reference)


def test_killed_run_resumes_to_the_same_numbers(tmp_path, reference):
    proc = _train_process(tmp_path, "ref", 3000)
    run = tmp_path / "runs" / "ref"
    _wait_for(run / CHECKPOINT, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (run / METRICS).exists()
    done = _resume(run)
    assert done.returncode == 0, done.stderr
    _same_numbers(read_json(run / METRICS), reference)


def test_interrupting_an_overwrite_keeps_the_old_run(tmp_path):
    first = _train_process(tmp_path, "ref", 200)
    assert first.wait(timeout=300) == 0
    run = tmp_path / "runs" / "ref"
    before = _snapshot(run)
    params_file = _params_file(tmp_path, name="ref", steps=3000, checkpoint_every=100, embedding_dim=6)
    proc = subprocess.Popen([sys.executable, "-m", "mrl.cli", "train", "--params", str(params_file), "--overwrite",
                             "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").glob(".ref.partial-*/checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "the new attempt was discarded" in err and "Traceback" not in err
    assert _snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["ref"]
