"""The command line: one-line errors with exit status 2 (no tracebacks), ``mrl validate``, and ``mrl train`` without
anything to train printing its help instead of starting a default run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_tables

ROOT = Path(__file__).resolve().parents[1]


def mrl(*argv: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrl.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture
def data_folder(tmp_path) -> Path:
    forms, props = tiny_tables()
    folder = tmp_path / "lab"
    folder.mkdir()
    forms.to_csv(folder / "formulas.csv", index=False)
    props.to_csv(folder / "properties.csv", index=False)
    return folder


def test_train_without_params_prints_help_and_exits_2(tmp_path):
    proc = mrl("train", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "usage: mrl train" in proc.stderr and "--resume" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_malformed_set_value_names_the_pair(tmp_path):
    line = _one_error_line(mrl("train", "--set", "hidden=[64,", cwd=tmp_path))
    assert "hidden=[64," in line and "not valid YAML" in line
    line = _one_error_line(mrl("validate", "--set", "steps", cwd=tmp_path))
    assert "key=value" in line and "'steps'" in line


def test_similar_rejects_non_positive_k(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"material_id": ["A", "B", "C"], "e0": [0.1, 0.2, -0.3], "e1": [1.0, 0.5, 0.2]}).to_parquet(
        run / "embeddings.parquet")
    for k in ("0", "-3"):
        proc = mrl("similar", "A", "--run", str(run), "-k", k, cwd=tmp_path)
        assert proc.returncode == 2 and "argument -k: must be >= 1" in proc.stderr, proc.stderr
    assert mrl("similar", "A", "--run", str(run), "-k", "1", cwd=tmp_path).returncode == 0


def test_yaml_syntax_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nhidden: [64, 64\nsteps: 10\n")
    line = _one_error_line(mrl("validate", str(bad), cwd=tmp_path))
    assert "bad.yaml" in line or "line" in line


def test_data_error_names_file_row_and_column(tmp_path, data_folder):
    forms = pd.read_csv(data_folder / "formulas.csv", dtype={"content": object})
    forms.loc[7, "content"] = "a lot"
    forms.to_csv(data_folder / "formulas.csv", index=False)
    for argv in (("validate", str(data_folder)), ("train", "--set", f"data={data_folder}", "steps=20")):
        line = _one_error_line(mrl(*argv, cwd=tmp_path))
        assert "formulas.csv: row 7" in line and "'content'" in line, line
    assert not (tmp_path / "runs").exists()


def test_validate_prints_the_plan_without_training(tmp_path, data_folder):
    proc = mrl("validate", str(data_folder), "--set", "eval_fraction=0.25", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("target: viscosity", "transform: none (auto: spans", "conditions: none",
                 "split: random by formula, eval_fraction 0.25", "train 405 samples / 405 formulas",
                 "calib 45 samples / 45 formulas", "calibrated on 45 held-out training formulas",
                 "eval 150 samples / 150 formulas", "materials: 30", "pinned at the origin",
                 "formulas per material: median", "used once", "ok"):
        assert text in out, (text, out)
    assert not (tmp_path / "runs").exists()


def test_validate_reads_a_params_file_and_reports_warnings(tmp_path):
    forms, props = tiny_tables(n_formulas=12)
    folder = tmp_path / "few"
    folder.mkdir()
    forms.to_csv(folder / "formulas.csv", index=False)
    props.to_csv(folder / "properties.csv", index=False)
    params = tmp_path / "p.yaml"
    params.write_text(f"data: {folder}\nsteps: 50\n")
    proc = mrl("validate", str(params), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING: only 9 training formula(s)" in proc.stdout and "ok, with 2 warning(s)" in proc.stdout


def test_validate_errors_exit_2(tmp_path, data_folder):
    line = _one_error_line(mrl("validate", str(tmp_path / "nowhere"), cwd=tmp_path))
    assert "neither a data folder nor a params YAML file" in line
    line = _one_error_line(mrl("validate", str(data_folder), "--set", "target=density", cwd=tmp_path))
    assert "density" in line
    line = _one_error_line(mrl("validate", str(data_folder), "--set", "pin=[NOPE]", cwd=tmp_path))
    assert "NOPE" in line
    forms, props = tiny_tables(n_formulas=1)
    one = tmp_path / "one"
    one.mkdir()
    forms.to_csv(one / "formulas.csv", index=False)
    props.to_csv(one / "properties.csv", index=False)
    line = _one_error_line(mrl("validate", str(one), cwd=tmp_path))
    assert "leaves no training samples" in line


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    line = _one_error_line(mrl("train", "--set", "steps=20", "--resume", "--overwrite", cwd=tmp_path))
    assert "exclude each other" in line


def _subcommands(parser) -> dict:
    import argparse

    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def test_every_command_prints_its_help(capsys):
    from mrl.cli import build_parser

    names = list(_subcommands(build_parser()))
    assert {"train", "predict", "design", "similar", "tie-materials", "add-materials"} <= set(names)
    for argv in (["--help"], ["-h"], *([name, "--help"] for name in names)):
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args(argv)
        assert stop.value.code == 0, argv
        out = capsys.readouterr().out
        assert out.startswith("usage: mrl"), (argv, out[:200])
    proc = mrl("--help", cwd=ROOT)  # the console entry point too, in a fresh interpreter
    assert proc.returncode == 0 and "predict" in proc.stdout and "Traceback" not in proc.stderr
