"""`mrl report` of a single run and `mrl notebook`, run as a user would: from a temporary folder outside the
checkout, through the command line (issue 24, deliverables 3 and 4)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    """The test's own package first on the path (a worktree), one thread per process."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def mrl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mrl.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert proc.returncode == 0, f"mrl {' '.join(args)}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 30-step ensemble of 2 on the small lab, trained from a folder outside the checkout."""
    work = tmp_path_factory.mktemp("user")
    mrl("train", "--set", "data=synth:small", "steps=30", "ensemble=2", "name=tiny", "--quiet", cwd=work)
    return work / "runs" / "tiny"


@pytest.fixture(scope="module")
def run_report(tiny_run) -> Path:
    """The run's report, built from the user's folder (no book/ there) into --out."""
    work = tiny_run.parents[1]
    assert not (work / "book").exists()
    proc = mrl("report", "runs/tiny", "--out", "tiny_report", "--maps", "pca", cwd=work)
    index = Path(proc.stdout.strip().splitlines()[-1])
    assert index.is_absolute() and index == (work / "tiny_report" / "_build" / "html" / "index.html").resolve()
    return work / "tiny_report" / "_build" / "html"


def test_run_report_has_every_page_from_outside_the_checkout(run_report):
    pages = run_report / "generated" / "tiny"
    for page in ("index", "data", "error", "intervals", "maps", "neighbours", "predictions"):
        assert (pages / f"{page}.html").exists(), page
    error = (pages / "error.html").read_text()
    for split in ("train", "calib", "eval"):
        assert f"<td>{split}</td>" in error or f">{split}<" in error, split
    assert "MAE (cP)" in error and "parity.png" in error and "history.png" in error
    lead = error.split("mean absolute error", 1)[1][:400]  # a log target leads with the log10 view, then cP
    assert lead.startswith(" of log10 viscosity") and "within 2x" in lead and lead.index("log10") < lead.index("cP")
    stack = json.loads((run_report.parents[2] / "runs" / "tiny" / "stack.json").read_text())
    for page in ("maps", "neighbours"):  # a stacked run's vectors pages say what its vectors are
        said = "learn only the correction" in (pages / f"{page}.html").read_text()
        assert said == (stack["kind"] not in (None, "none")), (page, stack)
    assert "data_target.png" in (pages / "data.html").read_text()
    intervals = (pages / "intervals.html").read_text()
    assert "inside 80 % interval" in intervals and "inside 95 % interval" in intervals
    assert "map_pca" in (pages / "maps.html").read_text()
    neighbours = (pages / "neighbours.html").read_text()
    assert "nearest (cosine distance" in neighbours and "of 1 other member)" in neighbours  # agreement per neighbour
    predictions = (pages / "predictions.html").read_text()
    assert "predicted cP" in predictions and "predictions.csv" in predictions
    assert "_build/html/index.html" in (run_report.parents[1] / "index.html").read_text()  # DIR/index.html
    first = (run_report / "generated" / "intro.html").read_text()  # the first page: the run's key results
    assert "Run <code" in first and "tiny" in first and "80 % interval" in first


def test_run_report_default_folder_is_beside_the_run_outside_the_checkout(tiny_run, tmp_path):
    from mrl.book import default_book_dir

    assert default_book_dir(tiny_run, cwd=tmp_path) == tiny_run / "report"
    assert default_book_dir("runs/x", cwd=ROOT) == ROOT / "book"


def test_report_refuses_a_missing_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mrl.cli", "report", "runs/nothing", "--out", "r"], cwd=tmp_path,
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 2 and "runs/nothing" in proc.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_run_report_error_page_renders_its_table_in_a_browser(run_report, tmp_path):
    page = run_report / "generated" / "tiny" / "error.html"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}",
           "--virtual-time-budget=3000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert "<table" in dom and "calib" in dom


def test_notebook_is_written_beside_the_run_and_executes(tiny_run):
    papermill = pytest.importorskip("papermill")
    work = tiny_run.parents[1]
    proc = mrl("notebook", "runs/tiny", cwd=work)
    path = work / "runs" / "tiny.ipynb"
    assert str(path) in proc.stdout and f"jupyter lab {path}" in proc.stdout
    nb = json.loads(path.read_text())
    params = "".join(nb["cells"][1]["source"])
    assert "run_dir = 'runs/tiny'" in params and f"work_dir = {str(work.resolve())!r}" in params
    again = subprocess.run([sys.executable, "-m", "mrl.cli", "notebook", "runs/tiny"], cwd=work, capture_output=True,
                           text=True, env=_env(), timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    out = work / "executed.ipynb"
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = _env()["PYTHONPATH"]  # the kernel imports this checkout's mrl
    try:
        papermill.execute_notebook(str(path), str(out), cwd=str(path.parent), parameters={"design_steps": 10},
                                   kernel_name="python3", progress_bar=False)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    executed = json.loads(out.read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = json.dumps(outputs)
    assert "NEW-1" in text and "vouched" in text and "image/png" in text


def test_run_report_from_another_folder_says_when_the_data_is_not_readable(tmp_path, monkeypatch):
    """A run trained on a data folder named relative to its working folder: from elsewhere its pages are still
    written; the data page says the data could not be read."""
    from mrl.book import generate_run_pages

    work = tmp_path / "lab_work"
    work.mkdir()
    mrl("data", "--preset", "small", "--out", "lab", cwd=work)
    mrl("train", "--set", "data=lab", "target=viscosity", "steps=30", "name=rel", "--quiet", cwd=work)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    generate_run_pages(work / "runs" / "rel", elsewhere / "book", map_methods=["pca"])
    page = (elsewhere / "book" / "generated" / "rel" / "data.md").read_text()
    assert "not readable from the report's working folder" in page
    assert (elsewhere / "book" / "generated" / "rel" / "maps.md").exists()
