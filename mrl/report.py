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
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mrl.io import read_json, write_json, write_table, write_text

if TYPE_CHECKING:
    from mrl.data import FormulaData
    from mrl.params import RunParams
    from mrl.runs import Run

log = logging.getLogger(__name__)

#: Files the notebooks write into a run folder (``{method}``: a projection) and the book reads.
FILES = {
    # 01_data (in the sweep's data folder)
    "data_summary": "data_summary.csv", "data_ingredients": "data_ingredients.png", "data_usage": "data_usage.png",
    "data_content": "data_content.png", "data_target": "data_target.png",
    # 02_train
    "history": "history.png",
    # 03_evaluate
    "metrics_table": "metrics_table.csv", "log10_metrics": "log10_metrics.csv", "parity": "parity.png",
    "error_by_usage": "error_by_usage.csv", "error_by_usage_png": "error_by_usage.png",
    "unseen_effect": "unseen_effect.csv", "error_by_distance": "error_by_distance.csv",
    "error_by_distance_png": "error_by_distance.png",
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


def open_run(params: RunParams) -> Run:
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
def data_summary(data: FormulaData) -> pd.DataFrame:
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


def ingredients_figure(data: FormulaData) -> Figure:
    """Histogram of the number of ingredients per formula."""
    counts = data.formulas.groupby("formula_id").size()
    fig, axes = _figure()
    ax = axes[0, 0]
    ax.hist(counts, bins=np.arange(counts.min(), counts.max() + 2) - 0.5, color="tab:blue", alpha=0.8)
    ax.set_xlabel("ingredients per formula")
    ax.set_ylabel("formulas")
    ax.set_title(f"Ingredients per formula (median {counts.median():g})")
    return fig


def usage_figure(data: FormulaData) -> Figure:
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


def content_figure(data: FormulaData) -> Figure:
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


def target_figure(data: FormulaData) -> Figure:
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


def write_maps(run: Run, methods: Sequence[str] = MAP_METHODS, influence: pd.DataFrame | None = None,
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


def write_evolution(run: Run, n_frames: int = 9, gif_frames: int = 9, method: str = "pca",
                    seed: int = 0) -> Any:
    """Write ``evolution.png`` (``n_frames`` small multiples) and ``evolution.gif`` (``gif_frames`` steps) into the
    run folder; return the small multiples for display. One projection, fitted on the final vectors, is applied
    to every step."""
    from mrl.analysis import evolution_frames
    from mrl.plots import evolution_animation, evolution_grid

    emb = run.embeddings
    frames = evolution_frames(run.snapshots, n_frames=n_frames, method=method, seed=seed)
    shown = save(evolution_grid(frames, emb), run.path, "evolution")
    if gif_frames != n_frames:
        frames = evolution_frames(run.snapshots, n_frames=gif_frames, method=method, seed=seed)
    evolution_animation(frames, emb, file_path(run.path, "evolution_gif"))
    return shown


def run_influence(run: Run, data: FormulaData, max_formulas: int = 200,
                  delta: float = 0.01) -> pd.DataFrame:
    """:func:`mrl.analysis.influence` of a run's materials, measured with its trained model on its own data."""
    from mrl.analysis import influence

    return influence(run.embeddings, predict=run.estimator.predict_matrix,
                     content_matrix=data.content_matrix()[data.sample_rows()], conditions=data.condition_values(),
                     delta=delta, max_formulas=max_formulas)


def truth_comparison(run: Run, data: FormulaData, truth: pd.DataFrame | None,
                     k: int = 10, seed: int = 0) -> pd.DataFrame | None:
    """Learned vectors against the no-learning baseline (:func:`mrl.analysis.baseline_representation`, same size),
    both scored on the hidden truth with :func:`mrl.analysis.truth_scores`. One row per representation (neighbour
    agreement with the hidden family and its lift over chance, cluster purity and ARI against families, median
    cross-validated R² of linear probes for the hidden properties); ``None`` when the data has no truth table."""
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
                     # median over the hidden properties: one badly probed property must not swamp the rest
                     "median_probe_r2": float(np.median(probe)) if probe else float("nan")})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ the book
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
    metrics = read_json(point_dir / "metrics.json")
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
    return "# generated by mrl.report.generate_pages\n" + yaml.safe_dump(toc, sort_keys=False)


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
