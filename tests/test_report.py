"""The Jupyter Book report of a sweep (mrl.book): pages generated from run files, the offline HTML build, and
(where Chromium is installed) what a browser renders of the results page."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mrl.book import build_report, generate_pages
from mrl.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "params" / "quick.yaml"
BOOK_SOURCES = ("_toc.yml", "intro.md")  # _config.yml: the packaged one (mrl/book_template)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A one-point sweep (with the data notebook) and its built book, in a temporary folder."""
    tmp = tmp_path_factory.mktemp("report")
    sweep = load_sweep(QUICK, runs_dir=str(tmp / "runs"), grid={"embedding_dim": [4]},
                       notebook_params={"04_visualize": {"map_methods": ["pca"], "n_frames": 4, "gif_frames": 4,
                                                         "influence_formulas": 20}})
    summary = run_sweep(sweep, jobs=2)
    assert (summary["status"] == "done").all(), summary["error"].tolist()
    book = tmp / "book"
    book.mkdir()
    for name in BOOK_SOURCES:
        shutil.copy(ROOT / "book" / name, book / name)
    index = build_report(sweep.folder, book_dir=book)
    return sweep, book, index


def test_book_builds_with_results_and_point_pages(report):
    sweep, book, index = report
    html = book / "_build" / "html"
    assert index == html / "index.html" and index.exists()
    results = html / "generated" / "quick" / "index.html"
    page = html / "generated" / "quick" / "dim_0004.html"
    assert results.exists() and page.exists()
    for notebook in ("data/01_data", "dim_0004/02_train", "dim_0004/03_evaluate", "dim_0004/04_visualize"):
        assert (html / "generated" / "quick" / f"{notebook}.html").exists(), notebook
    text = results.read_text()
    assert "dim_0004" in text and "error_by_dim_mae" in text and "Findings" in text and "summary.csv" in text
    # the interactive map is served next to the site, loads the site's one plotly.js, and the iframe points at it
    src = re.search(r'<iframe src="([^"]+)"', page.read_text()).group(1)
    target = (page.parent / src).resolve()
    assert target.exists() and target.stat().st_size < 1_000_000
    assert 'src="../../plotly.min.js"' in target.read_text()
    assert (target.parent / "../../plotly.min.js").resolve().stat().st_size > 1_000_000
    assert "<table" in page.read_text() and "evolution.gif" in page.read_text()
    config = (ROOT / "mrl" / "book_template" / "_config.yml").read_text()
    assert "execute_notebooks: 'off'" in config


def test_pages_are_rewritten_only_when_their_source_changes(report):
    sweep, book, _ = report
    generated = book / "generated" / "quick"
    before = {p: p.stat().st_mtime_ns for p in generated.rglob("*") if p.is_file()}
    generate_pages(sweep.folder, book)
    after = {p: p.stat().st_mtime_ns for p in generated.rglob("*") if p.is_file()}
    assert after == before


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _browser(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_results_page_renders_table_and_maps_in_a_browser(report, tmp_path):
    _, book, _ = report
    results = book / "_build" / "html" / "generated" / "quick" / "index.html"
    dom = _browser(["--virtual-time-budget=5000", "--dump-dom", results.as_uri()], tmp_path / "profile").stdout
    rows = re.findall(r"<tr\b.*?</tr>", dom, flags=re.S)
    assert any(re.search(r"<td[^>]*>(<p>)?\s*4\s*(</p>)?</td>", row) and re.search(r"\d\.\d", row) for row in rows), \
        "error table row of size 4 missing"
    images = re.findall(r'<img[^>]+src="([^"]+)"', dom)
    maps = [src for src in images if "map_pca" in src]
    assert maps, f"no map image on the results page: {images}"
    assert all((results.parent / src).resolve().exists() for src in images)

    import numpy as np
    from PIL import Image

    coloured = 0
    for budget in (5000, 15000, 30000):  # a loaded machine may need more virtual time to paint the images
        shot = tmp_path / f"results_{budget}.png"
        _browser(["--hide-scrollbars", "--window-size=1200,2400", f"--virtual-time-budget={budget}",
                  f"--screenshot={shot}", results.as_uri()], tmp_path / "profile")
        rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
        coloured = int((rgb.max(axis=2) - rgb.min(axis=2) > 60).sum())  # plot lines and map dots; the page is grey
        if coloured > 3000:
            break
    assert coloured > 3000, f"only {coloured} coloured pixels in the screenshot: the figures did not render"


def test_errors_by_rarest_ingredient_and_unseen_materials():
    """Usage counts only training formulas; a formula with a material no training formula uses is 'unseen'."""
    import pandas as pd

    from mrl.error_sources import error_by_usage, log10_metrics, unseen_effect, usage_errors

    formulas = pd.DataFrame({"formula_id": ["F1", "F1", "F2", "F2", "F3", "F3", "F4"],
                             "material_id": ["W", "A", "W", "A", "W", "B", "W"],
                             "content": [0.9, 0.1, 0.8, 0.2, 0.5, 0.5, 1.0]})
    predictions = pd.DataFrame({"formula_id": ["F1", "F2", "F3", "F4"], "split": ["train", "train", "eval", "eval"],
                                "y_true": [10.0, 100.0, 10.0, 1.0], "y_pred": [10.0, 80.0, 100.0, 1.0]})
    table = usage_errors(predictions, formulas).set_index("formula_id")
    assert table["rarest_train_usage"].to_dict() == {"F1": 2, "F2": 2, "F3": 0, "F4": 2}
    assert table["n_unseen"].to_dict() == {"F1": 0, "F2": 0, "F3": 1, "F4": 0}
    assert table.loc["F3", "abs_error"] == 90.0

    binned = error_by_usage(usage_errors(predictions, formulas))
    assert set(zip(binned["split"], binned["usage_bin"])) == {("train", "1-2"), ("eval", "0"), ("eval", "1-2")}
    assert binned.set_index(["split", "usage_bin"]).loc[("eval", "0"), "mae"] == 90.0

    effect = unseen_effect(usage_errors(predictions, formulas)).set_index("group")
    assert effect["n"].tolist() == [1, 1] and effect["mae"].tolist() == [0.0, 90.0]

    logs = log10_metrics(predictions).set_index("split")
    assert logs.loc["eval", "mae_log10"] == pytest.approx(0.5)  # |log10(100/10)| and 0, averaged
    assert log10_metrics(predictions.assign(y_pred=[-1.0, 1, 1, 1])) is None


def test_toc_keeps_the_standalone_parts_whose_pages_exist(tmp_path):
    import yaml

    from mrl.book import _toc

    shutil.copy(ROOT / "book" / "_toc.yml", tmp_path / "_toc.yml")
    standalone = yaml.safe_load((tmp_path / "_toc.yml").read_text())
    first, *rest = [c["file"] for part in standalone["parts"] for c in part["chapters"]]
    for page in rest:
        (tmp_path / f"{page}.md").write_text("# page\n")
    toc = yaml.safe_load(_toc(tmp_path))
    kept = {part["caption"]: [c["file"] for c in part["chapters"]] for part in toc["parts"]}
    assert first not in sum(kept.values(), [])
    assert sorted(sum(kept.values(), [])) == sorted(rest)
    assert set(kept) <= {part["caption"] for part in standalone["parts"]} and "Studies" in kept
