"""A sweep that grids over seeds: the results page reports mean +- SD over the seeds of each size."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from mrl.book import generate_pages
from mrl.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_seed_grid_gives_mean_and_sd_per_size(tmp_path):
    spec = yaml.safe_load((ROOT / "params" / "lab_small_seeds.yaml").read_text())
    spec.update(name="seeds", data_notebook=None, notebooks=["02_train", "03_evaluate"],
                grid={"embedding_dim": [2], "seed": [0, 1]}, notebook_params={})
    spec["base"].update(steps=40, eval_every=20, snapshot_every=20, checkpoint_every=20)
    spec.pop("data_notebook")
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump(spec))
    sweep = load_sweep(path, runs_dir=str(tmp_path / "runs"))
    summary = run_sweep(sweep, jobs=2)
    assert list(summary["point"]) == ["dim_0002__seed_0", "dim_0002__seed_1"]
    assert (summary["status"] == "done").all(), summary.get("error")
    assert summary["eval_mae"].nunique() == 2  # the seeds differ
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "generated"))
    generate_pages(sweep.folder, book_dir=book)
    page = (book / "generated" / "seeds" / "index.md").read_text()
    assert "mean ± SD over 2 runs" in page or "± one SD" in page, page[:2000]


def test_notebooks_come_from_the_sweep_files_project(tmp_path):
    from mrl.sweep import default_notebooks_dir

    (tmp_path / "params").mkdir()
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "02_train.ipynb", tmp_path / "notebooks")
    sweep_file = tmp_path / "params" / "s.yaml"
    sweep_file.write_text("name: s\n")
    assert default_notebooks_dir(sweep_file) == (tmp_path / "notebooks").resolve()
    elsewhere = tmp_path / "a" / "b" / "s.yaml"  # no notebooks near it: the repository's
    elsewhere.parent.mkdir(parents=True)
    assert default_notebooks_dir(elsewhere) == (ROOT / "notebooks").resolve()
