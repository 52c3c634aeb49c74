"""The Jupyter Book report of a sweep: pages generated from the files of its runs, then the HTML build.

:func:`build_report` turns a sweep folder (``runs/<sweep>/``, written by :func:`mrl.sweep.run_sweep`) into book pages
under ``book/generated/<sweep>/`` (:func:`generate_pages`) and builds the book with ``jupyter-book`` into
``book/_build/html/``. Pages read only files: the run files (:mod:`mrl.runs`) and those the notebooks wrote under
their :data:`mrl.report.FILES` names.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mrl.io import read_json, write_text
from mrl.report import METHOD_TITLES, file_path
from mrl.runs import METRICS

log = logging.getLogger(__name__)

#: Columns of the results page's summary table (others from the grid are added after ``point``).
SUMMARY_COLUMNS = ("point", "embedding_dim", "steps", "wall_s", "eval_mae_log10", "eval_r2_log10", "eval_mae",
                   "eval_rmse", "eval_r2", "eval_mape", "train_mae_log10", "train_mae", "full_mae", "status")
#: Projection shown in the results page's gallery, by preference.
GALLERY_METHODS = ("raw", "umap", "tsne", "pca")
#: Maps per row in the results page's gallery (on wide screens).
GALLERY_COLUMNS = 3


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    found = str(exe) if exe.exists() else shutil.which("jupyter-book")
    if not found:
        raise FileNotFoundError("jupyter-book is not installed: pip install 'jupyter-book<2'")
    return found


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _table(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A MyST pipe table with compactly formatted numbers."""
    frame = frame[list(columns)] if columns is not None else frame
    if frame.empty:
        return "*(empty)*\n"
    cells = [[_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _figure_block(src: str, label: str, caption: str) -> list[str]:
    return [f"```{{figure}} {src}", f":name: {re.sub(r'[^A-Za-z0-9-]+', '-', label)}", "", caption, "```", ""]


def _copy_notebook(src: Path, dst: Path, suffix: str) -> None:
    """Copy an executed notebook, appending ``suffix`` to its title so the pages of different points differ."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            first, _, rest = cell.source.partition("\n")
            cell.source = f"{first} ({suffix})" + (f"\n{rest}" if rest else "")
            break
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)


def _maps(point_dir: Path) -> list[Path]:
    """The point's static maps, in :data:`METHOD_TITLES` order."""
    order = list(METHOD_TITLES)
    return sorted(point_dir.glob("map_*.png"), key=lambda p: order.index(p.stem[4:]) if p.stem[4:] in order else 99)


def _gallery_map(point_dir: Path) -> Path | None:
    """The point's map in the first available projection of :data:`GALLERY_METHODS`."""
    maps = {p.stem[4:]: p for p in _maps(point_dir)}
    return next((maps[m] for m in GALLERY_METHODS if m in maps), next(iter(maps.values()), None))


def _results_page(sweep_dir: Path, spec: dict, summary: pd.DataFrame, out: Path, data_notebook: str | None) -> str:
    """The sweep's results page: error by embedding size, map gallery, summary table, unfinished points."""
    from mrl.plots import error_by_dim, save_figure

    name = sweep_dir.name
    done = summary[summary["status"] == "done"]
    grid = ", ".join(f"`{k}` in {v}" for k, v in (spec.get("grid") or {}).items())
    lines = [f"# Results: {name}", "",
             f"One run per grid point ({grid}), everything else fixed (`{json.dumps(spec.get('base') or {})}`). "
             f"*eval* formulas were held out from training; {len(done)} of {len(summary)} points finished.", ""]
    for metric, what in (("mae_log10", "Mean absolute error of log10 of the property (0.3: typically within a "
                                       "factor of 2; lower is better)"),
                         ("mae", "Mean absolute error in the property's units (dominated by the largest values)")):
        if len(done) and f"eval_{metric}" in done and done[f"eval_{metric}"].notna().any():
            save_figure(error_by_dim(done, metric), out / f"error_by_dim_{metric}.png")
            lines += _figure_block(f"error_by_dim_{metric}.png", f"{name}-error-{metric}",
                                   f"{what} by embedding size.")
    table = summary.assign(point=[f"[{p}]({p}.md)" if s == "done" else p
                                  for p, s in zip(summary["point"], summary["status"])])
    columns = ["point", *[c for c in (spec.get("grid") or {}) if c in table.columns and c != "embedding_dim"],
               *[c for c in SUMMARY_COLUMNS[1:] if c in table.columns]]
    lines += ["## Summary table", "",
              "`*_log10`: errors of log10 of the property; `wall_s`: training time in seconds; MAPE in %. Each point "
              "links to its page.", "", _table(table, columns), ""]
    gallery = [(row.point, _gallery_map(sweep_dir / row.point)) for row in done.itertuples()]
    gallery = [(point, png) for point, png in gallery if png is not None]
    if gallery:
        lines += ["## Maps at a glance", "",
                  "One material map per embedding size (coloured by family): how the picture changes with the size.",
                  ""]
        lines += [f"::::{{grid}} 1 2 {GALLERY_COLUMNS} {GALLERY_COLUMNS}", ":gutter: 2", ""]
        for point, png in gallery:
            lines += [f":::{{grid-item-card}} {point} ({METHOD_TITLES.get(png.stem[4:], png.stem[4:])})",
                      f":link: {point}", ":link-type: doc", "", f"![map of {point}]({point}/{png.name})", ":::", ""]
        lines += ["::::", ""]
    unfinished = summary[summary["status"] != "done"]
    if len(unfinished):
        lines += ["## Points not finished", ""]
        lines += [f"- **{r.point}** ({r.status}): {r.error if isinstance(r.error, str) else 'not run yet'}"
                  for r in unfinished.itertuples()]
        lines += ["", "Re-running the sweep finishes pending points; failed points need `--retry-failed`.", ""]
    lines += ["## Reproduce", "", "```bash", f"mrl sweep params/{name}.yaml -j 2 && mrl report {sweep_dir}", "```",
              ""]
    if data_notebook:
        lines += ["The data set is described in [the data notebook](data/" + data_notebook + ".ipynb).", ""]
    return "\n".join(lines)


def _point_page(point_dir: Path, out: Path, maps_out: Path, sweep: str) -> str:
    """Markdown page of one finished point; copies its figures to ``out/<point>/`` and its interactive maps to
    ``maps_out`` (served at ``maps/<sweep>/<point>/`` of the site)."""
    name = point_dir.name
    metrics = read_json(point_dir / METRICS)
    ev, tr = metrics.get("eval", {}), metrics.get("train", {})
    lines = [f"# {name}: embedding size {metrics.get('embedding_dim', '?')}", "",
             f"Eval MAE **{_fmt(ev.get('mae'))}** (R² {_fmt(ev.get('r2'))}, MAPE {_fmt(ev.get('mape'))} %), train "
             f"MAE {_fmt(tr.get('mae'))}; {metrics.get('steps')} steps in {_fmt(metrics.get('wall_s'))} s on "
             f"{metrics.get('n_materials')} materials and {metrics.get('n_formulas')} formulas.", ""]
    for key in ("metrics_table", "log10_metrics"):
        if file_path(point_dir, key).exists():
            lines += [_table(pd.read_csv(file_path(point_dir, key))), ""]

    def figure(src: Path, caption: str) -> list[str]:
        (out / name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out / name / src.name)
        return _figure_block(f"{name}/{src.name}", f"{sweep}-{name}-{src.name}", caption)

    maps = _maps(point_dir)
    if maps:
        lines += ["## Material maps", "",
                  "Each dot is a raw material, coloured by family, its size growing with usage; the most used are "
                  "named. Materials the model treats alike sit close together. Only raw vectors and PCA keep the "
                  "origin (no influence) meaningful.", ""]
    for png in maps:
        method = png.stem[4:]
        title = METHOD_TITLES.get(method, method)
        lines += figure(png, f"{title} map.")
        html = file_path(point_dir, "map_html", method)
        if html.exists():
            maps_out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(html, maps_out / html.name)
            src = f"../../maps/{sweep}/{name}/{html.name}"
            lines += [f"Interactive {title} map: hover a dot for its name and usage, drag to zoom.", "",
                      f'<iframe src="{src}" width="100%" height="680" style="border:0" loading="lazy" '
                      f'title="interactive map {name} {method}"></iframe>', "",
                      f'<p><a href="{src}">Open the interactive map on its own page</a></p>', ""]
    if file_path(point_dir, "evolution").exists():
        lines += ["## Training evolution", "",
                  "The map at several training steps, one projection for all panels: the vectors start together "
                  "at the origin and spread as the model learns which materials matter.", ""]
        lines += figure(file_path(point_dir, "evolution"), "Material vectors during training.")
        if file_path(point_dir, "evolution_gif").exists():
            lines += figure(file_path(point_dir, "evolution_gif"), "The same as an animation.")
    pairs = file_path(point_dir, "top_pairs")
    if pairs.exists():
        frame = pd.read_csv(pairs)
        keep = [c for c in ("rank", "name_a", "family_a", "name_b", "family_b", "distance") if c in frame.columns]
        lines += ["## Most similar pairs", "", "Materials whose vectors point the same way (cosine distance).", "",
                  _table(frame.head(15), keep), ""]
    clusters = file_path(point_dir, "clusters")
    if clusters.exists():
        lines += ["## Clusters", "", "k-means groups of the vectors, largest first, with their most used members.",
                  "", _table(pd.read_csv(clusters)), ""]
    origin = file_path(point_dir, "origin_check")
    if origin.exists():
        lines += ["## Influence and the origin", "", str(read_json(origin).get("verdict", "")), ""]
    truth = file_path(point_dir, "truth_scores")
    if truth.exists():
        lines += ["## Against the hidden truth", "",
                  "How well the vectors recover the synthetic lab's hidden families and properties, against a "
                  "no-learning baseline of the same size (SVD of the content matrix).", "",
                  _table(pd.read_csv(truth)), ""]
    notebooks = sorted(point_dir.glob("0*.ipynb"))
    lines += ["## Notebooks", "", "The executed notebooks of this point, with all their outputs:", ""]
    lines += [f"- [{nb.stem}]({name}/{nb.name})" for nb in notebooks]
    for nb in notebooks:
        _copy_notebook(nb, out / name / nb.name, name)
    return "\n".join(lines) + "\n"


def _sync(src: Path, dst: Path) -> None:
    """Make ``dst`` hold exactly ``src``'s files, leaving identical files untouched (Sphinx then skips them)."""
    import filecmp

    new = {p.relative_to(src) for p in src.rglob("*") if p.is_file()}
    old = {p.relative_to(dst) for p in dst.rglob("*") if p.is_file()} if dst.exists() else set()
    for rel in sorted(new):
        target = dst / rel
        if not (target.exists() and filecmp.cmp(src / rel, target, shallow=False)):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, target)
    for rel in old - new:
        (dst / rel).unlink()


def _toc(book_dir: Path) -> str:
    """Table of contents: the intro, one part per generated sweep (results, data, a chapter per point with its
    notebooks as sections), then the hand-written parts of the stand-alone ``<book_dir>/_toc.yml`` (real data,
    studies), keeping the chapters whose page exists."""
    import yaml

    parts = []
    for pages in sorted((book_dir / "generated").glob("*/pages.json")):
        rel = pages.parent.relative_to(book_dir).as_posix()
        order = read_json(pages)
        chapters = [{"file": f"{rel}/index"}]
        if order.get("data"):
            chapters.append({"file": f"{rel}/data/{order['data']}"})
        chapters += [{"file": f"{rel}/{point}", "sections": [{"file": f"{rel}/{point}/{nb}"} for nb in notebooks]}
                     for point, notebooks in order["points"].items()]
        parts.append({"caption": f"Sweep {pages.parent.name}", "chapters": chapters})
    path = book_dir / "_toc.yml"
    standalone = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    for part in standalone.get("parts", []):
        chapters = [c for c in part.get("chapters", []) if (book_dir / f"{c['file']}.md").exists()]
        if chapters:
            parts.append({**part, "chapters": chapters})
    toc = {"format": "jb-book", "root": "intro", **({"parts": parts} if parts else {})}
    return "# generated by mrl.book.generate_pages\n" + yaml.safe_dump(toc, sort_keys=False)


def generate_pages(sweep_dir: str | Path, book_dir: str | Path = "book") -> Path:
    """Write a sweep's book pages from its files into ``<book_dir>/generated/<sweep>/``; return the toc path.

    Pages: ``index.md`` (results: error by embedding size, map gallery, summary table), ``data/01_data.ipynb``,
    and for every finished point ``<point>.md`` (maps, evolution, pairs, clusters, influence, truth) with its
    executed notebooks in ``<point>/``. Interactive maps go to ``generated/_extra/maps/<sweep>/`` (copied to the
    site root by ``html_extra_path`` in ``_config.yml``). The table of contents is ``generated/_toc.yml`` and
    lists every sweep under ``generated/``. Unchanged files keep their time stamps, so rebuilds are incremental.
    """
    import tempfile

    import yaml

    from mrl.sweep import DATA_POINT, DONE, load_summary

    sweep_dir, book_dir = Path(sweep_dir), Path(book_dir)
    if not (book_dir / "_config.yml").exists():
        raise FileNotFoundError(f"{book_dir / '_config.yml'} not found: book_dir must be the book's source folder")
    summary = load_summary(sweep_dir)
    spec_path = sweep_dir / "sweep.yaml"
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.exists() else {}
    sweep = sweep_dir.name
    generated = book_dir / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=generated, prefix=".tmp-") as tmp:
        out, maps_out = Path(tmp) / "pages", Path(tmp) / "maps"
        out.mkdir()
        maps_out.mkdir()
        data_notebook = None
        data_dir = sweep_dir / DATA_POINT
        executed = sorted(data_dir.glob("0*.ipynb")) if (data_dir / DONE).exists() else []
        if executed:
            data_notebook = executed[0].stem
            _copy_notebook(executed[0], out / "data" / executed[0].name, sweep)
        points = {}
        for row in summary[summary["status"] == "done"].itertuples():
            point_dir = sweep_dir / row.point
            (out / f"{row.point}.md").write_text(_point_page(point_dir, out, maps_out / row.point, sweep))
            points[row.point] = [nb.stem for nb in sorted(point_dir.glob("0*.ipynb"))]
        (out / "index.md").write_text(_results_page(sweep_dir, spec, summary, out, data_notebook))
        (out / "pages.json").write_text(json.dumps({"data": data_notebook, "points": points}, indent=1) + "\n")
        _sync(out, generated / sweep)
        _sync(maps_out, generated / "_extra" / "maps" / sweep)
    toc = generated / "_toc.yml"
    text = _toc(book_dir)
    if not (toc.exists() and toc.read_text() == text):
        write_text(text, toc)
    return toc


def build_report(sweep_dir: str | Path, book_dir: str | Path = "book", build: bool = True,
                 strict: bool = False) -> Path:
    """Generate a sweep's pages (:func:`generate_pages`) and build the book; return ``_build/html/index.html``.

    The build runs ``jupyter-book build <book_dir> --toc <book_dir>/generated/_toc.yml`` (notebooks are not
    executed again: ``execute_notebooks: 'off'``). ``strict`` turns Sphinx warnings into errors
    (``-W --keep-going``); ``build=False`` only writes the pages.
    """
    book_dir = Path(book_dir)
    toc = generate_pages(sweep_dir, book_dir)
    index = book_dir / "_build" / "html" / "index.html"
    if not build:
        return index
    cmd = [_jupyter_book(), "build", str(book_dir.resolve()), "--toc", str(toc.resolve())]
    if strict:
        cmd += ["-W", "--keep-going"]
    log.info("building the book: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln or "ERROR" in ln][:20]:
        log.warning("jupyter-book: %s", line.strip())
    if proc.returncode != 0 or not index.exists():
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    log.info("report: %s", index)
    return index
