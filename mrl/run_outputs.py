"""Notebook helpers: the files a run's notebooks write.

Used by ``notebooks/0*.ipynb``: tables about the data and a run, and functions that write a run's figures (drawn by
:mod:`mrl.plots`) and tables into its folder under fixed names (:data:`OUTPUT_FILES`), so the book (:mod:`mrl.book`) is
built from files, never from memory.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd
from IPython.display import HTML, Image, display
from matplotlib.figure import Figure
from sklearn.neighbors import NearestNeighbors

from mrl.analysis import (
    VIEWS,
    baseline_representation,
    evolution_frames,
    influence,
    median_contents,
    project,
    truth_scores,
    vector_columns,
    view_vectors,
)
from mrl.baselines import condition_features, fit_predict, fraction_matrix
from mrl.cells import header_unit
from mrl.io import copy_if_changed, read_json, write_json, write_table, write_text
from mrl.model import PREDICTION_MARGIN
from mrl.plots import (
    evolution_animation,
    evolution_grid,
    evolution_html,
    material_map,
    material_map_html,
    plotly_js_path,
    save_figure,
)
from mrl.public_data import dataset_info
from mrl.run_files import BASELINES as BASELINES_FILE
from mrl.run_files import EMBEDDINGS, METRICS, SPLIT, member_dir
from mrl.runs import load_run, run_dir
from mrl.stacking import stacked_vectors_sentence
from mrl.wording import format_number

if TYPE_CHECKING:
    from mrl.data import FormulaData
    from mrl.params import RunParams
    from mrl.runs import Run

log = logging.getLogger(__name__)

#: Files the notebooks write into a run folder (``{method}``: a projection) and the book reads.
OUTPUT_FILES = {
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
    "map_png": "map_{method}.png", "map_html": "map_{method}.html", "map_unit_png": "unit_map_{method}.png",
    "plotly_js": "plotly.min.js", "evolution": "evolution.png", "evolution_html": "evolution.html",
    "evolution_gif": "evolution.gif", "top_pairs": "top_pairs.csv", "clusters": "clusters.csv",
    "influence": "influence.csv", "origin_check": "origin_check.json", "truth_scores": "truth_scores.csv",
    # the book (one per sweep, in the first finished point's folder)
    "baselines": "baselines.csv",
}
#: Projections shown by default (the first also gets an interactive HTML map); vectors of size 2 are shown raw.
MAP_METHODS = ("pca", "umap", "tsne")
#: Readable names of projections.
METHOD_TITLES = {"raw": "raw vectors", "pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
#: Projections whose (0, 0) is the zero vector (PCA is drawn uncentred), so "near the origin" can be read.
ORIGIN_METHODS = ("raw", "pca")
#: Axis names of the projections.
AXIS_LABELS = {"raw": "vector component", "pca": "uncentred PCA axis", "umap": "UMAP", "tsne": "t-SNE"}
#: Baselines of the results page: (label, estimator of :mod:`mrl.baselines`), fitted on the content fractions.
BASELINES = (("mean of train", "dummy"), ("ridge on contents", "ridge"), ("LightGBM on contents", "lightgbm"))
#: Columns of :func:`baseline_scores`.
BASELINE_COLUMNS = ("model", "split", "n", "mae", "mae_log10", "r2", "r2_log10")


def file_path(folder: str | Path, key: str, method: str | None = None) -> Path:
    """Path of one of :data:`OUTPUT_FILES` inside ``folder`` (a run folder)."""
    if key not in OUTPUT_FILES:
        raise KeyError(f"unknown file key {key!r}; known: {sorted(OUTPUT_FILES)}")
    name = OUTPUT_FILES[key]
    if "{method}" in name:
        if method is None:
            raise ValueError(f"file {key!r} needs a method (one of {list(METHOD_TITLES)})")
        name = name.format(method=method)
    return Path(folder) / name


def save(obj: Any, folder: str | Path, key: str, method: str | None = None) -> Any:
    """Write ``obj`` under its :data:`OUTPUT_FILES` name in ``folder`` (atomically) and return something to display.

    Figures become PNG (returned as an ``IPython.display.Image`` of that file, so a notebook shows exactly the
    saved picture without drawing it twice), DataFrames CSV, dicts JSON, strings text/HTML (these are returned
    unchanged); ``None`` (nothing to show) writes nothing.
    """
    if obj is None:
        return None
    path = file_path(folder, key, method)
    if isinstance(obj, Figure):
        save_figure(obj, path)

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
    path = run_dir(params)
    if not (path / METRICS).exists():
        raise FileNotFoundError(f"{path} holds no finished run: execute 02_train with the same name/runs_dir first")
    return load_run(path)


def show_files(paths: Iterable[str | Path]) -> None:
    """Display image files (PNG, GIF) and HTML files in a notebook, in order."""
    for path in paths:
        path = Path(path)
        display(HTML(filename=str(path)) if path.suffix == ".html" else Image(filename=str(path)))


#: Column headers in words for the notebooks' tables (``{unit}``: the property's unit, `` ({unit})`` dropped when
#: unknown). Other columns keep their name with ``_`` read as a space.
COLUMN_WORDS = {
    "split": "split", "n": "formulas", "mae": "MAE ({unit})", "rmse": "RMSE ({unit})", "r2": "R²",
    "mape": "MAPE (%)", "median_abs_error": "median absolute error ({unit})", "mae_log10": "MAE of log10",
    "rmse_log10": "RMSE of log10", "r2_log10": "R² of log10", "usage_bin": "training formulas using the rarest "
    "ingredient", "group": "group", "share": "share of formulas", "distance_bin": "distance to nearest training "
    "formula (L1)", "ingredients": "ingredients", "rank": "rank", "name_a": "material", "family_a": "family",
    "name_b": "partner", "family_b": "its family", "distance": "cosine distance", "cluster": "cluster",
    "size": "materials", "families": "main families", "examples": "most used members",
    "mean_influence": "mean influence ({unit} per % content)", "representation": "vectors",
    "n_scored": "materials scored", "neighbour_agreement": "family neighbours (share)",
    "neighbour_chance": "by chance", "neighbour_lift": "lift over chance", "cluster_purity": "cluster purity",
    "cluster_ari": "cluster ARI", "median_probe_r2": "probe R² (median)", "method": "projection",
    "png": "picture file", "html": "interactive page", "quantity": "quantity", "value": "value",
}


def column_words(column: str, unit: str = "") -> str:
    """A table header in words (:data:`COLUMN_WORDS`) with the property's ``unit`` where it has one."""
    words = COLUMN_WORDS.get(column, str(column).replace("_", " "))
    return words.replace("{unit}", unit) if unit else words.replace(" ({unit})", "").replace("{unit}", "")


def format_cell(value: Any, digits: int = 3) -> str:
    """A table cell: integers with thousands separators, other numbers with about ``digits`` significant digits
    (:func:`mrl.wording.format_number`, never e-notation), text as it is, missing values empty."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return "" if value is None else str(value)
    if not np.isfinite(value):
        return ""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return format_number(float(value), digits)


#: Cell padding and alignment of the notebooks' tables (numbers right, text left).
TABLE_STYLES = [{"selector": "th, td", "props": "padding: 0.25em 0.9em; text-align: right;"},
                {"selector": "th", "props": "font-weight: 600; vertical-align: bottom;"}]


def show_table(frame: pd.DataFrame | None, digits: int = 3, caption: str | None = None, unit: str = "") -> Any:
    """A table for a notebook page: headers in words with the property's ``unit`` (:func:`column_words`), no 0..n
    index, numbers with ``digits`` significant digits and thousands separators (:func:`format_cell`), padded cells
    (a pandas Styler; ``None`` stays ``None``)."""
    if frame is None:
        return None
    shown = frame.rename(columns={c: column_words(c, unit) for c in frame.columns})
    shown = shown.loc[:, ~shown.columns.duplicated()]
    styler = shown.style.hide(axis="index").format(lambda v: format_cell(v, digits)).set_table_styles(TABLE_STYLES)
    text = [c for c in shown.columns if not pd.api.types.is_numeric_dtype(shown[c])]
    if text:
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
    return styler.set_caption(caption) if caption else styler


def show_vectors_note(run: Any) -> str | None:
    """Show, above a page of material vectors, what a stacked run's vectors mean (they learn only the correction to
    the base model: maps and neighbours say little); nothing for a run that is not stacked. Returns the note."""
    note = stacked_vectors_sentence(run.path)
    if note:
        display(HTML(f'<div class="admonition note"><p class="admonition-title">Stacked run</p><p>{note}</p></div>'))
    return note


def show_dict(result: dict, keys: Sequence[str] | None = None) -> Any:
    """A dict (e.g. :func:`mrl.analysis.origin_check`) as a two-column table, long text wrapped, not cut."""
    rows = [(k, v) for k, v in result.items() if keys is None or k in keys]
    frame = pd.DataFrame(rows, columns=["quantity", "value"])
    return show_table(frame.astype({"value": object})).set_properties(**{"white-space": "normal",
                                                                         "text-align": "left"})


def property_unit(metrics: dict) -> str:
    """The unit of a run's property (from its ``metrics.json``): the run's ``target_unit`` (the ``target_unit``
    param, or the unit in the target's header, ``viscosity [cP]``), else cP for the synthetic lab, the registry's
    unit for a registered data set, "" when unknown."""
    unit = metrics.get("target_unit") or header_unit(metrics.get("target") or "")
    if unit:
        return str(unit)
    data = str(metrics.get("data", ""))
    if data.startswith("lab_") or data.startswith("synth"):
        return "cP"
    try:
        unit = str(dataset_info(data).unit)
        return unit.removeprefix("log10 ") if metrics.get("target_transform") == "log10" else unit
    except Exception:  # noqa: BLE001 - an unknown data set simply has no unit
        return ""


def baseline_scores(run: Run, data: FormulaData | None = None,
                    models: Sequence[tuple[str, str]] = BASELINES) -> pd.DataFrame:
    """Classical baselines on the run's own split and data: each :data:`BASELINES` model fitted on the training
    measurements' content fractions (and conditions), on log10 of the property when the run's target was
    log-transformed, predictions clipped to the training range +-10 % as mrl's are. One row per (model, split):
    :data:`BASELINE_COLUMNS`. A run that fitted its baselines itself (``baselines.json``, :mod:`mrl.run_baselines`)
    is read, not refitted."""
    if (run.path / BASELINES_FILE).exists():  # what the run fitted itself (mrl.run_baselines)
        return baselines_frame(read_json(run.path / BASELINES_FILE), [label for label, _ in models])
    data = data if data is not None else run.data()[0]
    X = fraction_matrix(data)
    if data.conditions:
        X = np.hstack([X, condition_features(data)])
    y = data.target_values().astype(np.float64)
    split = pd.read_parquet(run.path / SPLIT).sort_values("sample")["split"].to_numpy().astype(str)
    log_target = run.metrics.get("target_transform") == "log10" and bool((y > 0).all())
    fit_y = np.log10(y) if log_target else y
    train = split == "train"
    rows = []
    for label, name in models:
        pred = fit_predict(name, X[train], fit_y[train], X, seed=0, **({"n_jobs": 1} if name == "lightgbm" else {}))
        lo, hi = fit_y[train].min(), fit_y[train].max()  # clipped like mrl's predictions: train range +-10 %
        pred = np.clip(pred, lo - PREDICTION_MARGIN * (hi - lo), hi + PREDICTION_MARGIN * (hi - lo))
        pred = 10 ** pred if log_target else pred
        for part in [s for s in ("train", "eval", "test") if (split == s).any()] + ["full"]:
            m = np.ones(len(y), bool) if part == "full" else split == part
            yt, yp = y[m], pred[m]
            row = {"model": label, "split": part, "n": int(m.sum()), "mae": float(np.abs(yp - yt).mean()),
                   "r2": float(1 - ((yp - yt) ** 2).sum() / max(((yt - yt.mean()) ** 2).sum(), 1e-300))}
            if (yt > 0).all() and (yp > 0).all():
                lt, lp = np.log10(yt), np.log10(yp)
                row["mae_log10"] = float(np.abs(lp - lt).mean())
                row["r2_log10"] = float(1 - ((lp - lt) ** 2).sum() / max(((lt - lt.mean()) ** 2).sum(), 1e-300))
            rows.append(row)
    return pd.DataFrame(rows, columns=list(BASELINE_COLUMNS)).round(6)


def baselines_frame(baselines: dict, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """A run's ``baselines.json`` as the rows of :func:`baseline_scores` (``labels``: those models only)."""
    rows = []
    for label, scores in baselines["models"].items():
        if "not_fitted" in scores or labels is not None and label not in labels:  # not fitted, or not asked for
            continue
        for part in [s for s in ("train", "eval", "test") if s in scores] + ["full"]:
            rows.append({"model": label, "split": part, **{k: scores[part].get(k) for k in BASELINE_COLUMNS[2:]}})
    return pd.DataFrame(rows, columns=list(BASELINE_COLUMNS)).round(6)


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
        (f"{data.targets[0]} (median, min-max)",
         f"{format_number(np.median(y))} ({format_number(y.min())} to {format_number(y.max())})"),
        ("conditions", ", ".join(data.conditions) or "none"),
    ]
    rows = [(k, f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)) for k, v in rows]
    return pd.DataFrame(rows, columns=["quantity", "value"])


# ------------------------------------------------------------------------------------------------ 02/03: a run
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
    k = int(max(2, min(n_neighbors, len(X) - 1)))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
    return {"n_neighbors": k, "precomputed_knn": (idx, dist)}


def _plotly_js_next_to(folder: Path) -> str:
    """Copy plotly.js (from the plotly package) into ``folder`` once; return its name for ``include_plotlyjs``."""
    dst = file_path(folder, "plotly_js")
    copy_if_changed(plotly_js_path(), dst)
    return dst.name


def map_coordinates(run: Run, method: str, view: str = "dose", seed: int = 0) -> tuple[np.ndarray, Any]:
    """2-D coordinates of a run's materials in projection ``method`` of the ``view`` vectors
    (:func:`mrl.analysis.view_vectors`), and where the zero vector lands (``(0, 0)`` for raw and uncentred PCA,
    else ``None``)."""
    X = view_vectors(run.embeddings, view)
    kw = {"center": False} if method == "pca" else umap_neighbours(X) if method == "umap" else {}
    coords = project(X, method=method, seed=seed, **kw)
    return coords, ((0.0, 0.0) if method in ORIGIN_METHODS else None)


def write_maps(run: Run, methods: Sequence[str] = MAP_METHODS, influence: pd.DataFrame | None = None,
               seed: int = 0, interactive: int | None = None, view: str = "dose", compare_unit: bool = True,
               annotate: int = 12, folder: str | Path | None = None) -> pd.DataFrame:
    """Draw the material map for each projection (:func:`map_methods`) into ``folder`` (default: the run folder).

    Every map draws the ``view`` vectors (default ``"dose"``: median content x vector, a material's typical
    contribution, so "near the origin = little influence" can be read) and says so; PCA is uncentred, so its
    (0, 0) is the zero vector. Each PNG has a second panel zoomed on the central 90 % of the materials, and labels
    only the most influential materials whose names fit without overlapping. Writes ``map_<method>.png``, the
    interactive ``map_<method>.html`` for the first ``interactive`` methods (default: all; they load one
    ``plotly.min.js`` copied next to them, no CDN) and, with ``compare_unit``, ``unit_map_<method>.png`` of the
    first method in the other view. Returns ``method, png, html`` (html may be None).
    """
    emb = run.embeddings
    folder = Path(folder) if folder is not None else run.path
    methods = map_methods(len([c for c in emb.columns if c[:1] == "e" and c[1:].isdigit()]), methods)
    interactive = len(methods) if interactive is None else interactive
    rows = []
    for i, method in enumerate(methods):
        coords, origin = map_coordinates(run, method, view, seed)
        title = map_title(method, run.metrics.get("embedding_dim"))
        axis = AXIS_LABELS.get(method, "axis")
        save(material_map(coords, emb, color_by="family", influence=influence, title=title, annotate=annotate,
                          origin=origin, zoom=True, view=VIEWS[view], axis_label=axis), folder, "map_png", method)
        html = None
        if i < interactive:
            html = file_path(folder, "map_html", method)
            save(material_map_html(coords, emb, color_by="family", influence=influence, title=title,
                                   plotlyjs=_plotly_js_next_to(folder), view=VIEWS[view], axis_label=axis),
                 folder, "map_html", method)
        if i == 0 and compare_unit:
            other = "unit" if view == "dose" else "dose"
            o_coords, o_origin = map_coordinates(run, method, other, seed)
            save(material_map(o_coords, emb, color_by="family", influence=influence, title=title,
                              annotate=annotate, origin=o_origin, zoom=True, view=VIEWS[other], axis_label=axis),
                 folder, "map_unit_png", method)
        rows.append({"method": method, "png": file_path(folder, "map_png", method), "html": html})
    return pd.DataFrame(rows, columns=["method", "png", "html"])


def evolution_coordinates(run: Run, n_frames: int = 9, method: str = "pca", seed: int = 0,
                          view: str = "dose") -> tuple[pd.DataFrame, Any]:
    """2-D coordinates of a run's materials at ``n_frames`` training steps (:func:`mrl.analysis.evolution_frames`:
    ``frame, step, material_id, x, y``) in projection ``method`` of the ``view`` vectors (``"dose"``: each step's
    vector times the final median content), and where the zero vector lands (as :func:`map_coordinates`)."""
    emb = run.embeddings
    snaps = run.snapshots
    if view == "dose":
        med = pd.Series(median_contents(emb), index=emb["material_id"].astype(str))
        cols = vector_columns(snaps)
        weight = snaps["material_id"].astype(str).map(med).fillna(0.0).to_numpy(np.float64)
        snaps = snaps.assign(**{c: snaps[c].to_numpy(np.float64) * weight for c in cols})
    kw = {"center": False} if method == "pca" else {}
    frames = evolution_frames(snaps, n_frames=n_frames, method=method, seed=seed, **kw)
    return frames, ((0.0, 0.0) if method in ORIGIN_METHODS else None)


def write_evolution(run: Run, n_frames: int = 9, gif_frames: int = 9, method: str = "pca",
                    seed: int = 0, view: str = "dose") -> Any:
    """Write ``evolution.png`` (``n_frames`` small multiples), ``evolution.gif`` and the interactive
    ``evolution.html`` with a step slider (``gif_frames`` steps) into the run folder; return the small multiples for
    display. One projection, fitted on the final vectors, is applied to every step (:func:`evolution_coordinates`);
    PCA is uncentred, so the frames show the vectors leaving the origin. ``view`` as in :func:`write_maps`."""
    emb = run.embeddings
    frames, origin = evolution_coordinates(run, n_frames, method, seed, view)
    axis = AXIS_LABELS.get(map_methods(len(vector_columns(emb)), (method,))[0], "axis")  # size 2: raw vectors
    shown = save(evolution_grid(frames, emb, origin=origin, view=VIEWS[view], axis_label=axis), run.path, "evolution")
    if gif_frames != n_frames:
        frames, _ = evolution_coordinates(run, gif_frames, method, seed, view)
    evolution_animation(frames, emb, file_path(run.path, "evolution_gif"), origin=origin, view=VIEWS[view])
    save(evolution_html(frames, emb, evolution_title(run.metrics.get("embedding_dim")),
                        plotlyjs=_plotly_js_next_to(run.path), view=VIEWS[view], axis_label=axis),
         run.path, "evolution_html")
    return shown


def map_title(method: str, embedding_dim: Any) -> str:
    """The title of a material map (static and interactive)."""
    return f"Materials, {METHOD_TITLES.get(method, method)} (embedding size {embedding_dim})"


def evolution_title(embedding_dim: Any) -> str:
    """The title of the interactive training evolution."""
    return f"Materials through training (embedding size {embedding_dim})"


def run_influence(run: Run, data: FormulaData, max_formulas: int = 200,
                  delta: float = 0.01) -> pd.DataFrame:
    """:func:`mrl.analysis.influence` of a run's materials, measured with its trained model on its own data."""
    return influence(run.embeddings, predict=run.estimator.predict_matrix,
                     content_matrix=data.content_matrix()[data.sample_rows()], conditions=data.condition_values(),
                     delta=delta, max_formulas=max_formulas)


def truth_comparison(run: Run, data: FormulaData, truth: pd.DataFrame | None,
                     k: int = 10, seed: int = 0) -> pd.DataFrame | None:
    """Learned vectors against the no-learning baseline (:func:`mrl.analysis.baseline_representation`, same size),
    both scored on the hidden truth with :func:`mrl.analysis.truth_scores`. One row per representation (neighbour
    agreement with the hidden family and its lift over chance, cluster purity and ARI against families, median
    cross-validated R² of linear probes for the hidden properties); ``None`` when the data has no truth table."""
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



# ------------------------------------------------------------------------------------------------ neighbours
def member_embeddings(run_dir: str | Path) -> list[pd.DataFrame]:
    """The embeddings of an ensemble's members 1, 2, ... (``members/<kk>/embeddings.parquet``); empty for a single
    model."""
    out, k = [], 1
    while (member_dir(run_dir, k) / EMBEDDINGS).exists():
        out.append(pd.read_parquet(member_dir(run_dir, k) / EMBEDDINGS))
        k += 1
    return out


def _cosine_neighbours(emb: pd.DataFrame, k: int) -> dict[str, list[tuple[str, float]]]:
    """Per material with a direction, its ``k`` nearest by cosine distance: ``[(material_id, distance), ...]``."""
    ids = emb["material_id"].astype(str).to_numpy()
    X = emb[vector_columns(emb)].to_numpy(np.float64)
    norm = np.linalg.norm(X, axis=1)
    keep = norm > 0
    ids, X = ids[keep], X[keep] / norm[keep, None]
    k = min(k, len(ids) - 1)
    out: dict[str, list[tuple[str, float]]] = {}
    for start in range(0, len(ids), 1024):  # blocks of rows: memory stays small for thousands of materials
        dist = 1.0 - X[start:start + 1024] @ X.T
        dist[np.arange(len(dist)), np.arange(start, start + len(dist))] = np.inf
        part = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < dist.shape[1] else np.argsort(dist, axis=1)
        order = np.take_along_axis(part, np.argsort(np.take_along_axis(dist, part, axis=1), axis=1, kind="stable"), 1)
        for r, row in enumerate(order):
            out[ids[start + r]] = [(ids[j], float(dist[r, j])) for j in row]
    return out


def neighbour_agreement_table(emb: pd.DataFrame, members: Sequence[pd.DataFrame] = (), k: int = 10) -> pd.DataFrame:
    """Each material's ``k`` nearest neighbours (cosine, the run's own vectors) with, per neighbour, how many of
    the other ensemble ``members`` also list it among their ``k`` nearest (``agree``, out of ``members``; empty
    without members). Columns ``material_id, rank, neighbour_id, distance, agree, members``."""
    own = _cosine_neighbours(emb, k)
    others = [_cosine_neighbours(m, k) for m in members]
    rows = []
    for mid, neighbours in own.items():
        for rank, (nid, distance) in enumerate(neighbours, start=1):
            agree = sum(nid in {n for n, _ in other.get(mid, [])} for other in others) if others else None
            rows.append({"material_id": mid, "rank": rank, "neighbour_id": nid, "distance": distance,
                         "agree": agree, "members": len(others) or None})
    return pd.DataFrame(rows, columns=["material_id", "rank", "neighbour_id", "distance", "agree", "members"])
