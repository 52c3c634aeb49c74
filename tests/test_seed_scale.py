"""The seed-scale chapter (issue 25): its maps come from a committed map file (mrl.map_files) that `mrl report` draws
into titled pages linking back to the chapter, offline; the data-poor scores come from mrl.analysis."""
from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mrl.analysis import neighbour_agreement_by_usage
from mrl.book import CHAPTER_MAPS, chapter_map_pages
from mrl.map_files import FORMAT, read_map_file, rounded, significant, write_map_file

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, dim: int, n: int = 30) -> SimpleNamespace:
    """A stand-in for a finished run: embeddings, snapshots, metrics and a folder (no influence file)."""
    rng = np.random.default_rng(dim)
    vec = {f"e{i}": rng.normal(size=n) for i in range(dim)}
    emb = pd.DataFrame({"material_id": [f"M{i:03d}" for i in range(n)], "name": [f"Material {i}" for i in range(n)],
                        "family": ["oil", "wax", "acid"] * (n // 3), "n_formulas": rng.integers(1, 50, n),
                        "median_content": np.r_[0.00004, rng.uniform(0.001, 0.5, n - 1)],
                        "norm": rng.uniform(0.1, 2, n), **vec})
    snaps = pd.concat([emb[["material_id", *vec]].assign(**{c: emb[c] * step / 3000 for c in vec}, step=step)
                       for step in (0, 1000, 2000, 3000)], ignore_index=True)
    folder = tmp_path / f"dim_{dim:04d}"
    folder.mkdir()
    return SimpleNamespace(embeddings=emb, snapshots=snaps, metrics={"embedding_dim": dim}, path=folder)


def test_rounding_keeps_four_significant_digits():
    assert rounded([1234.5678, 0.001, np.nan, -12.3456]) == [1235.0, 0.0, None, -12.0]
    assert rounded([[0.012345, 0.5], [np.nan, 0.25]]) == [[0.0123, 0.5], [None, 0.25]]
    assert significant([0.00004123456, 2.5, np.nan]) == [4.123e-05, 2.5, None]


def test_map_file_round_trip_and_pages_with_title_link_back_and_hover_in_percent(tmp_path):
    runs = [_run(tmp_path, 2), _run(tmp_path, 3)]
    book = tmp_path / "book"
    (book / "figures").mkdir(parents=True)
    (book / "chapter.md").write_text("# A chapter\n")
    path = write_map_file(book / "figures" / "chapter.maps.json.gz", runs, [runs[1]], page="chapter",
                          page_title="A chapter", n_frames=3)
    content = read_map_file(path)
    assert content["format"] == FORMAT and [m["name"] for m in content["maps"]] == ["map_dim_0002", "map_dim_0003"]
    assert [m["method"] for m in content["maps"]] == ["raw", "pca"]  # as the run's own report draws them
    assert content["materials"]["median_content"][0] == 4e-05  # a trace material keeps its content
    assert np.allclose(content["maps"][0]["x"], runs[0].embeddings["e0"] * runs[0].embeddings["median_content"],
                       rtol=1e-3, atol=1e-3 * np.abs(content["maps"][0]["x"]).max())
    assert content["evolutions"][0]["steps"] == [0, 2000, 3000] or len(content["evolutions"][0]["steps"]) == 3

    pages = chapter_map_pages(book)
    folder = book / "generated" / "_extra" / "maps" / CHAPTER_MAPS / "chapter"
    assert sorted(p.name for p in pages) == ["evolution_dim_0003.html", "map_dim_0002.html", "map_dim_0003.html"]
    for page in pages:
        text = page.read_text()
        assert re.search(r"<title>[^<\s][^<]*</title>", text), page.name
        assert 'href="../../../chapter.html"' in text and "Back to A chapter" in text
        assert 'src="../../plotly.min.js"' in text and "cdn" not in text.lower().split("<body", 1)[0]
    assert "median content %{customdata[4]:.3~g} %" in (folder / "map_dim_0002.html").read_text()
    evolution = (folder / "evolution_dim_0003.html").read_text()
    assert "training step " in evolution and "addFrames" in evolution
    stamp = (folder / "map_dim_0002.html").stat().st_mtime_ns
    chapter_map_pages(book)  # unchanged: not rewritten (Sphinx skips it)
    assert (folder / "map_dim_0002.html").stat().st_mtime_ns == stamp


def test_a_map_file_of_another_format_is_refused(tmp_path):
    path = tmp_path / "x.maps.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"format": "other"}).encode()))
    with pytest.raises(ValueError, match="format 'other'"):
        read_map_file(path)
    path.write_text("not gzip")
    with pytest.raises(ValueError, match="not a map file"):
        read_map_file(path)


def test_the_committed_chapter_shows_maps_that_exist(tmp_path):
    """Every figure and interactive map the seed-scale page shows is a committed file or a page `mrl report` draws
    from the committed map file."""
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "generated"))
    pages = {p.relative_to(book / "generated" / "_extra").as_posix() for p in chapter_map_pages(book)}
    text = (book / "seed_scale.md").read_text()
    frames = re.findall(r'<iframe src="([^"]+)"', text)
    assert len(frames) >= 4 and any("evolution" in f for f in frames)  # maps at several sizes, the evolution
    assert set(frames) <= pages, set(frames) - pages
    pngs = re.findall(r"```\{figure\} (\S+)", text)
    assert pngs and all((book / png).exists() for png in pngs)
    size = sum((book / png).stat().st_size for png in pngs) + (book / "figures" / "seed_scale.maps.json.gz").stat().st_size
    assert size < 3_000_000  # committed bytes of the chapter's figures


def test_neighbours_of_data_poor_materials_are_scored_per_usage_bin():
    rng = np.random.default_rng(0)
    n = 90
    fam = np.array(["a", "b", "c"] * (n // 3))
    centre = {"a": (5.0, 0.0), "b": (0.0, 5.0), "c": (-5.0, -5.0)}
    xy = np.array([centre[f] for f in fam]) + rng.normal(scale=0.3, size=(n, 2))
    used = np.r_[np.zeros(3), np.full(27, 2), np.full(60, 150)]  # 3 unused, 27 rarely used, 60 well used
    emb = pd.DataFrame({"material_id": [f"M{i}" for i in range(n)], "n_formulas": used, "e0": xy[:, 0],
                        "e1": xy[:, 1]})
    truth = pd.DataFrame({"material_id": emb["material_id"], "family": fam})
    table = neighbour_agreement_by_usage(emb, truth)
    assert table["usage_bin"].tolist() == ["1-2", "100+"] and table["n_materials"].tolist() == [27, 60]
    assert (table["neighbour_agreement"] > 0.95).all() and (table["neighbour_chance"] < 0.4).all()
    # scramble the rarely used materials' vectors: only their bin drops to chance
    emb.loc[3:29, ["e0", "e1"]] = rng.normal(scale=5, size=(27, 2))
    scrambled = neighbour_agreement_by_usage(emb, truth).set_index("usage_bin")["neighbour_agreement"]
    assert scrambled["1-2"] < 0.6 and scrambled["100+"] > 0.8
