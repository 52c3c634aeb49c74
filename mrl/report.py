"""Notebook helpers and the Jupyter Book report of a sweep.

Two halves:

* **Notebook helpers** (used by ``notebooks/0*.ipynb``): small figures and tables about the data and a run, and
  functions that write a run's figures into its folder under fixed names (:data:`FILES`), so the book is built
  from files, never from memory.
* :func:`build_report` turns a sweep folder (``runs/<sweep>/``, written by :func:`mrl.sweep.run_sweep`) into book
  pages under ``book/generated/<sweep>/`` and builds the book with ``jupyter-book`` into ``book/_build/html/``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mrl.io import read_json, write_json, write_table, write_text

log = logging.getLogger(__name__)

#: Files the notebooks write into a run folder (``{method}``: a projection) and the book reads.
FILES = {
    # 01_data (in the sweep's data folder)
    "data_summary": "data_summary.csv", "data_ingredients": "data_ingredients.png", "data_usage": "data_usage.png",
    "data_content": "data_content.png", "data_target": "data_target.png",
    # 02_train
    "history": "history.png",
    # 03_evaluate
    "metrics_table": "metrics_table.csv", "parity": "parity.png", "error_by_usage": "error_by_usage.csv",
    "error_by_usage_png": "error_by_usage.png", "unseen_effect": "unseen_effect.csv",
    # 04_visualize
    "map_png": "map_{method}.png", "map_html": "map_{method}.html", "evolution": "evolution.png",
    "evolution_gif": "evolution.gif", "top_pairs": "top_pairs.csv", "clusters": "clusters.csv",
    "influence": "influence.csv", "origin_check": "origin_check.json", "truth_scores": "truth_scores.csv",
}
#: Projections shown by default (the first also gets an interactive HTML map); vectors of size 2 are shown raw.
MAP_METHODS = ("pca", "umap", "tsne")
#: Readable names of projections.
METHOD_TITLES = {"raw": "raw vectors", "pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}


def file_path(folder: str | Path, key: str, method: str | None = None) -> Path:
    """Path of one of :data:`FILES` inside ``folder`` (a run folder)."""
    if key not in FILES:
        raise KeyError(f"unknown file key {key!r}; known: {sorted(FILES)}")
    name = FILES[key]
    if "{method}" in name:
        if method is None:
            raise ValueError(f"file {key!r} needs a method (one of {list(METHOD_TITLES)})")
        name = name.format(method=method)
    return Path(folder) / name


def save(obj: Any, folder: str | Path, key: str, method: str | None = None) -> Any:
    """Write ``obj`` under its :data:`FILES` name in ``folder`` (atomically) and return something to display.

    Figures become PNG (returned as an ``IPython.display.Image`` of that file, so a notebook shows exactly the
    saved picture without drawing it twice), DataFrames CSV, dicts JSON, strings text/HTML (these are returned
    unchanged); ``None`` (nothing to show) writes nothing.
    """
    from mrl.plots import save_figure

    if obj is None:
        return None
    path = file_path(folder, key, method)
    if isinstance(obj, Figure):
        save_figure(obj, path)
        from IPython.display import Image

        return Image(filename=str(path))
    if isinstance(obj, pd.DataFrame):
        write_table(obj, path)
    elif isinstance(obj, dict):
        write_json(obj, path)
    elif isinstance(obj, str):
        write_text(obj, path)
    else:
        raise TypeError(f"save: cannot write a {type(obj).__name__} to {path}")
    return obj


def open_run(params: "mrl.params.RunParams") -> "mrl.runs.Run":  # noqa: F821
    """The finished run named by ``params`` (``runs_dir/name``), with a hint when it is missing."""
    from mrl.runs import load_run, run_dir

    path = run_dir(params)
    if not (path / "metrics.json").exists():
        raise FileNotFoundError(f"{path} holds no finished run: execute 02_train with the same name/runs_dir first")
    return load_run(path)


def show_files(paths: Iterable[str | Path]) -> None:
    """Display image files (PNG, GIF) and HTML files in a notebook, in order."""
    from IPython.display import HTML, Image, display

    for path in paths:
        path = Path(path)
        display(HTML(filename=str(path)) if path.suffix == ".html" else Image(filename=str(path)))


def _figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (7, 4.2)) -> tuple[Figure, np.ndarray]:
    import seaborn as sns

    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


# ------------------------------------------------------------------------------------------------ 01: the data
def data_summary(data: "mrl.data.FormulaData") -> pd.DataFrame:  # noqa: F821
    """Counts that describe a data set: one row per quantity (``quantity, value``)."""
    per_formula = data.formulas.groupby("formula_id").size()
    usage = data.materials["n_formulas"]
    y = data.target_values()
    rows = [
        ("materials", data.n_materials),
        ("materials used in no formula", int((usage == 0).sum())),
        ("materials used in 1-3 formulas", int(usage.between(1, 3).sum())),
        ("families", int(data.materials["family"].nunique()) if "family" in data.materials else "-"),
        ("formulas", data.n_formulas),
        ("measurements", data.n_samples),
        ("ingredients per formula (median, min-max)",
         f"{per_formula.median():g} ({per_formula.min()}-{per_formula.max()})"),
        ("target", data.targets[0]),
        (f"{data.targets[0]} (median, min-max)", f"{np.median(y):.4g} ({y.min():.4g}-{y.max():.4g})"),
        ("conditions", ", ".join(data.conditions) or "none"),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"]).astype({"value": str})


def ingredients_figure(data: "mrl.data.FormulaData") -> Figure:  # noqa: F821
    """Histogram of the number of ingredients per formula."""
    counts = data.formulas.groupby("formula_id").size()
    fig, axes = _figure()
    ax = axes[0, 0]
    ax.hist(counts, bins=np.arange(counts.min(), counts.max() + 2) - 0.5, color="tab:blue", alpha=0.8)
    ax.set_xlabel("ingredients per formula")
    ax.set_ylabel("formulas")
    ax.set_title(f"Ingredients per formula (median {counts.median():g})")
    return fig


def usage_figure(data: "mrl.data.FormulaData") -> Figure:  # noqa: F821
    """Usage of every material (formulas using it) against its usage rank, log-log: the long tail."""
    usage = np.sort(data.materials["n_formulas"].to_numpy())[::-1]
    fig, axes = _figure(1, 2, figsize=(10, 4))
    ax = axes[0, 0]
    ax.loglog(np.arange(1, len(usage) + 1), np.maximum(usage, 0.8), marker=".", ls="none")
    ax.set_xlabel("material rank (most used first)")
    ax.set_ylabel("formulas using it")
    ax.set_title("Usage is long-tailed")
    ax = axes[0, 1]
    edges = [1, 2, 4, 11, 31, 101, 301, 1001, np.inf]
    labels = ["1", "2-3", "4-10", "11-30", "31-100", "101-300", "301-1000", ">1000"]
    binned = pd.cut(pd.Series(usage[usage > 0]), edges, right=False, labels=labels).value_counts(sort=False)
    ax.bar(binned.index.astype(str), binned.to_numpy(), color="tab:blue", alpha=0.8)
    ax.set_xlabel("formulas using the material")
    ax.set_ylabel("materials")
    ax.set_title(f"{int((usage <= 3).sum())} of {len(usage)} materials are in 3 formulas or fewer")
    ax.tick_params(axis="x", labelrotation=30)
    return fig


def content_figure(data: "mrl.data.FormulaData") -> Figure:  # noqa: F821
    """Content (fraction, log scale) of every ingredient entry, one box per material family."""
    import seaborn as sns

    family = data.materials.set_index("material_id")["family"] if "family" in data.materials else None
    entries = data.formulas.assign(
        family=data.formulas["material_id"].map(family) if family is not None else "all")
    entries = entries[entries["content"] > 0]
    order = entries.groupby("family")["content"].median().sort_values(ascending=False).index
    fig, axes = _figure(figsize=(8, 0.35 * len(order) + 1.6))
    sns.boxplot(data=entries, x="content", y="family", order=order, ax=axes[0, 0], log_scale=True, fliersize=1,
                color="tab:blue")
    axes[0, 0].set_xlabel("content (fraction of the formula)")
    axes[0, 0].set_title("Content per family: water near 0.8, actives below 0.001")
    return fig


def target_figure(data: "mrl.data.FormulaData") -> Figure:  # noqa: F821
    """Histogram of the target (log-spaced bins when it is positive and spans more than two decades)."""
    y = data.target_values()
    wide = bool((y > 0).all() and y.max() / y.min() > 100)
    fig, axes = _figure()
    ax = axes[0, 0]
    bins = np.geomspace(y.min(), y.max(), 40) if wide else 40
    ax.hist(y, bins=bins, color="tab:blue", alpha=0.8)
    if wide:
        ax.set_xscale("log")
    ax.set_xlabel(data.targets[0])
    ax.set_ylabel("measurements")
    ax.set_title(f"{data.targets[0]}: {'log' if wide else 'linear'} axis, median {np.median(y):.4g}")
    return fig


# ------------------------------------------------------------------------------------------------ 02/03: a run
def history_figure(history: pd.DataFrame) -> Figure:
    """Training curves: train/eval MAE (property units) and the training loss against the step."""
    fig, axes = _figure(1, 2, figsize=(10, 4))
    ax = axes[0, 0]
    for column, label in (("train_mae", "train (subsample)"), ("eval_mae", "eval")):
        if column in history:
            ax.plot(history["step"], history[column], marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("MAE")
    ax.set_title("MAE during training")
    ax.legend()
    ax = axes[0, 1]
    ax.plot(history["step"], history["train_loss"], color="tab:gray")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (scaled target)")
    ax.set_title("Training loss")
    return fig


def metrics_table(metrics: dict) -> pd.DataFrame:
    """A run's ``metrics.json`` as a table: one row per split (train, eval, ..., full), columns
    ``split, n, mae, rmse, r2, mape``."""
    splits = [s for s in ("train", "eval", "test") if s in metrics] + ["full"]
    rows = [{"split": s, **{k: metrics[s].get(k) for k in ("n", "mae", "rmse", "r2", "mape")}} for s in splits]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ 04: vectors
def map_methods(embedding_dim: int, methods: Sequence[str] = MAP_METHODS) -> list[str]:
    """Projections drawn for vectors of size ``embedding_dim``: ``["raw"]`` for size 2 or less, else ``methods``."""
    return ["raw"] if embedding_dim <= 2 else list(methods)


def umap_neighbours(X: np.ndarray, n_neighbors: int = 15) -> dict[str, Any]:
    """Keywords for :func:`mrl.analysis.project` with ``method="umap"``: the exact euclidean k-nearest-neighbour
    graph from scikit-learn (what UMAP computes itself for small data), which spares UMAP's numba compilation of
    its own neighbour search (tens of seconds in every new process)."""
    from sklearn.neighbors import NearestNeighbors

    k = int(max(2, min(n_neighbors, len(X) - 1)))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
    return {"n_neighbors": k, "precomputed_knn": (idx, dist)}


def write_maps(run: "mrl.runs.Run", methods: Sequence[str] = MAP_METHODS, influence: pd.DataFrame | None = None,  # noqa: F821
               seed: int = 0, interactive: int = 1) -> pd.DataFrame:
    """Draw the material map for each projection (:func:`map_methods`) into the run folder.

    Writes ``map_<method>.png`` for every method and the self-contained interactive ``map_<method>.html`` for the
    first ``interactive`` ones (each holds plotly.js, ~5 MB). Returns ``method, png, html`` (html may be None).
    """
    from mrl.analysis import project, vectors
    from mrl.plots import material_map, material_map_html

    emb = run.embeddings
    X = vectors(emb)
    rows = []
    for i, method in enumerate(map_methods(X.shape[1], methods)):
        coords = project(X, method=method, seed=seed, **(umap_neighbours(X) if method == "umap" else {}))
        title = f"Materials, {METHOD_TITLES.get(method, method)} (embedding size {X.shape[1]})"
        origin = (0.0, 0.0) if method == "raw" else None
        save(material_map(coords, emb, color_by="family", title=title, annotate=8, origin=origin), run.path,
             "map_png", method)
        html = None
        if i < interactive:
            html = file_path(run.path, "map_html", method)
            save(material_map_html(coords, emb, color_by="family", influence=influence, title=title), run.path,
                 "map_html", method)
        rows.append({"method": method, "png": file_path(run.path, "map_png", method), "html": html})
    return pd.DataFrame(rows, columns=["method", "png", "html"])


def write_evolution(run: "mrl.runs.Run", n_frames: int = 9, gif_frames: int = 16, method: str = "pca",  # noqa: F821
                    seed: int = 0) -> Any:
    """Write ``evolution.png`` (``n_frames`` small multiples) and ``evolution.gif`` (``gif_frames`` steps) into the
    run folder; return the small multiples for display. One projection, fitted on the final vectors, is applied
    to every step."""
    from mrl.analysis import evolution_frames
    from mrl.plots import evolution_animation, evolution_grid

    emb = run.embeddings
    frames = evolution_frames(run.snapshots, n_frames=n_frames, method=method, seed=seed)
    shown = save(evolution_grid(frames, emb), run.path, "evolution")
    every = evolution_frames(run.snapshots, n_frames=gif_frames, method=method, seed=seed)
    evolution_animation(every, emb, file_path(run.path, "evolution_gif"))
    return shown


def run_influence(run: "mrl.runs.Run", data: "mrl.data.FormulaData", max_formulas: int = 200,  # noqa: F821
                  delta: float = 0.01) -> pd.DataFrame:
    """:func:`mrl.analysis.influence` of a run's materials, measured with its trained model on its own data."""
    from mrl.analysis import influence

    return influence(run.embeddings, predict=run.estimator.predict_matrix,
                     content_matrix=data.content_matrix()[data.sample_rows()], conditions=data.condition_values(),
                     delta=delta, max_formulas=max_formulas)


def truth_comparison(run: "mrl.runs.Run", data: "mrl.data.FormulaData", truth: pd.DataFrame | None,  # noqa: F821
                     k: int = 10, seed: int = 0) -> pd.DataFrame | None:
    """Learned vectors against the no-learning baseline (:func:`mrl.analysis.baseline_representation`, same size),
    both scored on the hidden truth with :func:`mrl.analysis.truth_scores`. One row per representation; ``None``
    when the data has no truth table (real data)."""
    from mrl.analysis import baseline_representation, truth_scores, vector_columns

    if truth is None:
        return None
    emb = run.embeddings
    cols = vector_columns(emb)
    base = emb.copy()
    base[cols] = baseline_representation(data.content_matrix(), len(cols), seed=seed)
    rows = []
    for label, table in (("learned", emb), ("baseline (content SVD)", base)):
        s = truth_scores(table, truth, k=k, seed=seed)
        probe = [v for v in s["probe_r2"].values() if np.isfinite(v)]
        rows.append({"representation": label, "n_scored": s["n_scored"],
                     "neighbour_agreement": s["neighbour_agreement"], "neighbour_chance": s["neighbour_chance"],
                     "neighbour_lift": s["neighbour_lift"], "cluster_purity": s["purity"], "cluster_ari": s["ari"],
                     "mean_probe_r2": float(np.mean(probe)) if probe else float("nan")})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ the book
def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    found = str(exe) if exe.exists() else shutil.which("jupyter-book")
    if not found:
        raise FileNotFoundError("jupyter-book is not installed: pip install 'jupyter-book<2'")
    return [found]


def _write_if_changed(text: str, path: Path) -> Path:
    """Write text unless the file already holds it (unchanged pages are not rebuilt by Sphinx)."""
    if not (path.exists() and path.read_text() == text):
        write_text(text, path)
    return path


def _copy_if_changed(src: Path, dst: Path) -> Path:
    if not (dst.exists() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime == src.stat().st_mtime):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return dst


def _copy_notebook(src: Path, dst: Path, suffix: str) -> Path:
    """Copy an executed notebook, appending ``suffix`` to its first title so pages of different points differ."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            first, _, rest = cell.source.partition("\n")
            cell.source = f"{first} ({suffix})" + (f"\n{rest}" if rest else "")
            break
    return _write_if_changed(nbformat.writes(nb), dst)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _table(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A MyST (pipe) table with compactly formatted numbers."""
    frame = frame[list(columns)] if columns is not None else frame
    if frame.empty:
        return "*(empty)*\n"
    text = frame.apply(lambda col: col.map(_fmt)).astype(str).replace({r"\|": r"\\|"}, regex=True)
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(row) + " |" for row in text.to_numpy().tolist()]
    return "\n".join([header, rule, *body]) + "\n"


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


SUMMARY_COLUMNS = ("point", "embedding_dim", "steps", "wall_s", "eval_mae", "eval_rmse", "eval_r2", "eval_mape",
                   "train_mae", "train_r2", "full_mae", "status")


def _results_page(sweep_dir: Path, spec: dict, summary: pd.DataFrame, gen: Path, has_data: bool) -> str:
    from mrl.plots import error_by_dim, save_figure

    name = sweep_dir.name
    done = summary[summary["status"] == "done"]
    lines = [f"# Results: {name}", ""]
    grid = ", ".join(f"`{k}` in {v}" for k, v in (spec.get("grid") or {}).items())
    lines += [f"One run per grid point ({grid}); everything else fixed: "
              f"`{json.dumps(spec.get('base') or {})}`. Lower error is better; *eval* formulas were never seen in "
              f"training. {len(done)} of {len(summary)} points finished.", ""]
    if len(done):
        for metric, what in (("mae", "mean absolute error, in the property's units"),
                             ("mape", "mean absolute percentage error")):
            figure = gen / f"error_by_dim_{metric}.png"
            save_figure(error_by_dim(done, metric), figure)
            lines += [f"```{{figure}} {figure.name}", f":name: {name}-error-{metric}", "",
                      f"{metric.upper()} ({what}) by embedding size.", "```", ""]
    table = summary.copy()
    table["point"] = [f"[{p}]({p}.md)" if s == "done" else p for p, s in zip(table["point"], table["status"])]
    cols = [c for c in SUMMARY_COLUMNS if c in table.columns]
    cols += [c for c in summary.columns if c not in cols and c not in METRIC_SKIP]
    lines += ["## Summary table", "", "Wall time `wall_s` is training only (seconds); MAPE is in %.", "",
              _table(table, cols), ""]
    failed = summary[summary["status"] != "done"]
    if len(failed):
        lines += ["## Points not finished", ""]
        lines += [f"- **{r.point}** ({r.status}): {r.error if isinstance(r.error, str) else 'not run yet'}"
                  for r in failed.itertuples()]
        lines += ["", "Re-run the sweep to finish pending points; failed ones need `--retry-failed`.", ""]
    lines += ["## Reproduce", "", "```bash", f"mrl sweep params/{name}.yaml && mrl report {sweep_dir}", "```", ""]
    if has_data:
        lines += [f"The data set is described in [the data notebook](data/01_data.ipynb).", ""]
    return "\n".join(lines)


METRIC_SKIP = {"error", "notebooks_s", "train_rmse", "train_mape", "full_rmse", "full_r2", "full_mape"}


def _point_page(point_dir: Path, row: Any, gen: Path, extra: Path, sweep: str) -> str:
    """Markdown page of one finished point; copies its figures next to the page and its HTML maps to ``extra``."""
    name = point_dir.name
    assets = gen / name
    metrics = read_json(point_dir / "metrics.json")
    lines = [f"# {name}: embedding size {metrics.get('embedding_dim', '?')}", ""]
    ev, tr = metrics.get("eval", {}), metrics.get("train", {})
    lines += [f"Eval MAE **{_fmt(ev.get('mae'))}** (R² {_fmt(ev.get('r2'))}, MAPE {_fmt(ev.get('mape'))} %), train "
              f"MAE {_fmt(tr.get('mae'))}; {metrics.get('steps')} steps in {_fmt(metrics.get('wall_s'))} s on "
              f"{metrics.get('n_materials')} materials and {metrics.get('n_formulas')} formulas.", ""]
    table = _read_csv(file_path(point_dir, "metrics_table"))
    if table is not None:
        lines += [_table(table), ""]

    def image(key: str, caption: str, method: str | None = None) -> list[str]:
        src = file_path(point_dir, key, method)
        if not src.exists():
            return []
        _copy_if_changed(src, assets / src.name)
        label = f"{sweep}-{name}-{src.name}".replace(".", "-")
        return [f"```{{figure}} {name}/{src.name}", f":name: {label}", "", caption, "```", ""]

    maps = sorted(point_dir.glob("map_*.png"), key=lambda p: list(METHOD_TITLES).index(p.stem[4:])
                  if p.stem[4:] in METHOD_TITLES else 99)
    if maps:
        lines += ["## Material maps", "",
                  "Each dot is a raw material, coloured by family, its size growing with usage; the most used are "
                  "named. Materials the model finds interchangeable sit close together. Only raw vectors and PCA "
                  "keep distances to the origin (no influence) meaningful.", ""]
    for png in maps:
        method = png.stem[4:]
        lines += image("map_png", f"{METHOD_TITLES.get(method, method)} map.", method)
        html = file_path(point_dir, "map_html", method)
        if html.exists():
            target = extra / "maps" / sweep / name / html.name
            _copy_if_changed(html, target)
            src = f"../../maps/{sweep}/{name}/{html.name}"
            lines += [f"Interactive {METHOD_TITLES.get(method, method)} map: hover a dot for its name and usage, "
                      f"drag to zoom.", "",
                      f'<iframe src="{src}" width="100%" height="680" style="border:0" loading="lazy" '
                      f'title="interactive map {name} {method}"></iframe>', "",
                      f'<p><a href="{src}">Open the interactive map on its own page</a></p>', ""]
    if file_path(point_dir, "evolution").exists():
        lines += ["## Training evolution", "",
                  "The same map at several training steps (one projection for all panels): the vectors start "
                  "together at the origin and spread as the model learns which materials matter.", ""]
        lines += image("evolution", "Material vectors during training.")
        lines += image("evolution_gif", "Animation over all recorded steps.")
    pairs = _read_csv(file_path(point_dir, "top_pairs"))
    if pairs is not None:
        keep = [c for c in pairs.columns if c in ("rank", "name_a", "family_a", "name_b", "family_b", "distance")]
        lines += ["## Most similar pairs", "", "Materials whose vectors point the same way (cosine distance).", "",
                  _table(pairs.head(15), keep), ""]
    clusters = _read_csv(file_path(point_dir, "clusters"))
    if clusters is not None:
        lines += ["## Clusters", "", "k-means groups of the vectors, largest first, with their most used members.",
                  "", _table(clusters), ""]
    origin = file_path(point_dir, "origin_check")
    if origin.exists():
        check = read_json(origin)
        lines += ["## Influence and the origin", "", str(check.get("verdict", "")), ""]
    truth = _read_csv(file_path(point_dir, "truth_scores"))
    if truth is not None:
        lines += ["## Against the hidden truth", "",
                  "How well the vectors recover the synthetic lab's hidden families and properties, against a "
                  "no-learning baseline of the same size (SVD of the content matrix).", "", _table(truth), ""]
    lines += ["## Notebooks", "", "The executed notebooks of this point, with all outputs:", ""]
    lines += [f"- [{nb.stem}]({name}/{nb.name})" for nb in sorted(point_dir.glob("0*.ipynb"))]
    return "\n".join(lines) + "\n"


def _toc(book_dir: Path) -> str:
    """Table of contents: the intro, then one part per generated sweep (results, data, one chapter per point)."""
    import yaml

    parts = []
    for index in sorted((book_dir / "generated").glob("*/index.md")):
        sweep_gen = index.parent
        rel = sweep_gen.relative_to(book_dir).as_posix()
        order = read_json(sweep_gen / "pages.json")
        chapters = [{"file": f"{rel}/index"}]
        if order.get("data"):
            chapters.append({"file": f"{rel}/data/{order['data']}"})
        for point, notebooks in order["points"].items():
            chapters.append({"file": f"{rel}/{point}",
                             "sections": [{"file": f"{rel}/{point}/{nb}"} for nb in notebooks]})
        parts.append({"caption": f"Sweep {sweep_gen.name}", "chapters": chapters})
    toc = {"format": "jb-book", "root": "intro"}
    if parts:
        toc["parts"] = parts
    return "# generated by mrl.report.build_report\n" + yaml.safe_dump(toc, sort_keys=False)


def generate_pages(sweep_dir: str | Path, book_dir: str | Path = "book") -> Path:
    """Write the book pages of a sweep from its files into ``<book_dir>/generated/<sweep>/``; return the toc path.

    Pages: ``index.md`` (results: summary table, error by embedding size), ``data/01_data.ipynb``, one page per
    finished point (maps, evolution, pairs, clusters, influence, truth) with its executed notebooks below it.
    Interactive maps go to ``generated/_extra/maps/`` (copied to the site root by ``html_extra_path``).
    """
    import yaml

    from mrl.sweep import DATA_POINT, load_summary

    sweep_dir, book_dir = Path(sweep_dir), Path(book_dir)
    if not (book_dir / "_config.yml").exists():
        raise FileNotFoundError(f"{book_dir}/_config.yml not found: book_dir must be the book source folder")
    summary = load_summary(sweep_dir)
    spec_path = sweep_dir / "sweep.yaml"
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.exists() else {}
    sweep = sweep_dir.name
    gen = book_dir / "generated" / sweep
    extra = book_dir / "generated" / "_extra"
    (extra / "maps").mkdir(parents=True, exist_ok=True)
    before = {p for p in gen.rglob("*") if p.is_file()} | {p for p in (extra / "maps" / sweep).rglob("*")
                                                          if p.is_file()}
    gen.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()

    data_nb = None
    data_dir = sweep_dir / DATA_POINT
    executed = sorted(data_dir.glob("0*.ipynb")) if (data_dir / "done").exists() else []
    if executed:
        data_nb = executed[0].stem
        written.add(_copy_notebook(executed[0], gen / "data" / executed[0].name, f"{sweep}"))
    pages: dict[str, list[str]] = {}
    for row in summary.itertuples():
        point_dir = sweep_dir / row.point
        if row.status != "done" or not (point_dir / "metrics.json").exists():
            continue
        text = _point_page(point_dir, row, gen, extra, sweep)
        written.add(_write_if_changed(text, gen / f"{row.point}.md"))
        notebooks = sorted(point_dir.glob("0*.ipynb"))
        for nb in notebooks:
            written.add(_copy_notebook(nb, gen / row.point / nb.name, row.point))
        pages[row.point] = [nb.stem for nb in notebooks]
    written.add(_write_if_changed(_results_page(sweep_dir, spec, summary, gen, data_nb is not None),
                                  gen / "index.md"))
    written.add(_write_if_changed(json.dumps({"data": data_nb, "points": pages}, indent=1), gen / "pages.json"))
    written |= {p for p in gen.rglob("*") if p.is_file() and p.suffix in (".png", ".gif")
                and p.parent.name in pages or p.name.startswith("error_by_dim")}
    written |= {p for p in (extra / "maps" / sweep).rglob("*") if p.is_file() and p.parent.name in pages}
    for stale in before - written:
        stale.unlink(missing_ok=True)
    toc = book_dir / "generated" / "_toc.yml"
    _write_if_changed(_toc(book_dir), toc)
    return toc


def build_report(sweep_dir: str | Path, book_dir: str | Path = "book", build: bool = True,
                 strict: bool = False) -> Path:
    """Generate a sweep's pages (:func:`generate_pages`) and build the book; return ``_build/html/index.html``.

    ``strict`` turns Sphinx warnings into errors (``-W --keep-going``). ``build=False`` only writes the pages.
    """
    book_dir = Path(book_dir)
    toc = generate_pages(sweep_dir, book_dir)
    index = book_dir / "_build" / "html" / "index.html"
    if not build:
        return index
    cmd = [*_jupyter_book(), "build", str(book_dir.resolve()), "--toc", str(toc.resolve())]
    if strict:
        cmd += ["-W", "--keep-going"]
    log.info("building the book: %s", " ".join(cmd))
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if re.search(r"WARNING|ERROR", line)]
    for line in warnings[:20]:
        log.warning("jupyter-book: %s", line)
    if proc.returncode != 0 or not index.exists():
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    log.info("report: %s", index)
    return index
