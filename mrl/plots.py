"""Every figure of mrl: the data, training, errors, material maps and their evolution.

Every function returns a :class:`matplotlib.figure.Figure` (or HTML text) made by :func:`new_figure`, without
pyplot's global state, so it neither shows nor leaks figures; display it in a notebook by returning it, save it with
:func:`save_figure`. Only :func:`evolution_animation`, :func:`save_figure` and :func:`save_html` write files
(atomically, through :mod:`mrl.io`).
"""
from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mrl.analysis import align, families, material_ids, material_names, usage
from mrl.io import atomic_path, write_text
from mrl.transforms import spans_decades
from mrl.wording import format_number

if TYPE_CHECKING:
    from mrl.data import FormulaData

log = logging.getLogger(__name__)

#: Families beyond this many (by size) are shown as "other" so legends stay readable.
MAX_FAMILIES = 12
_STYLE = "whitegrid"


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (7, 4.2),
               **kw) -> tuple[Figure, np.ndarray]:
    """A pyplot-free figure with seaborn's whitegrid style and a constrained layout; its axes as an array of shape
    ``(nrows, ncols)``. Keywords (``sharex``, ``sharey``...) go to :meth:`Figure.subplots`."""
    with sns.axes_style(_STYLE):
        fig = Figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


# ------------------------------------------------------------------------------------------------ material maps
def _family_labels(emb: pd.DataFrame) -> np.ndarray:
    """Family per material, the smallest families folded into ``other``."""
    fam = families(emb)
    if fam is None:
        return np.full(len(emb), "material", dtype=object)
    counts = pd.Series(fam).value_counts()
    if len(counts) > MAX_FAMILIES:
        keep = set(counts.index[: MAX_FAMILIES - 1])
        fam = np.where(np.isin(fam, list(keep)), fam, "other")
    return fam.astype(object)


def _family_palette(labels: np.ndarray) -> dict[str, tuple]:
    order = [f for f in pd.Series(labels).value_counts().index if f not in ("other", "unknown")]
    order += [f for f in ("other", "unknown") if f in set(labels)]
    cols = sns.color_palette("tab10" if len(order) <= 10 else "tab20", len(order))
    pal = dict(zip(order, cols))
    for grey in ("other", "unknown"):
        if grey in pal:
            pal[grey] = (0.6, 0.6, 0.6)
    return pal


def _sizes(emb: pd.DataFrame) -> np.ndarray:
    """Marker areas growing with usage."""
    use = usage(emb)
    return 12.0 + 60.0 * np.sqrt(use / max(use.max(), 1.0))


def _color_values(emb: pd.DataFrame, color_by: str, influence) -> tuple[str, np.ndarray]:
    """``("family", labels)`` or ``("continuous", values)``."""
    if color_by == "family":
        return "family", _family_labels(emb)
    if color_by == "n_formulas":
        return "continuous", usage(emb)
    if color_by == "influence":
        if influence is None:
            raise ValueError("color_by='influence' needs influence= (Series by material_id or influence() table)")
        return "continuous", align(influence, emb)
    raise ValueError(f"color_by must be 'family', 'n_formulas' or 'influence', got {color_by!r}")


def _scatter(ax, xy: np.ndarray, emb: pd.DataFrame, color_by: str, influence, legend: bool = True,
             cax_fig: Figure | None = None):
    kind, values = _color_values(emb, color_by, influence)
    sizes = _sizes(emb)
    unused = usage(emb) <= 0
    if unused.any():
        ax.scatter(xy[unused, 0], xy[unused, 1], s=14, marker="x", c="0.7", linewidths=0.8,
                   label="unused" if legend else None, zorder=1)
    used = ~unused
    if kind == "family":
        pal = _family_palette(values)
        for fam, col in pal.items():
            m = used & (values == fam)
            if m.any():
                ax.scatter(xy[m, 0], xy[m, 1], s=sizes[m], color=col, alpha=0.8, edgecolors="white",
                           linewidths=0.4, label=str(fam) if legend else None, zorder=2)
        if legend and len(pal) > 1:
            ax.legend(title="family", fontsize="small", loc="best", markerscale=0.8, frameon=True)
        return None
    vals = np.asarray(values, np.float64)
    pos = vals[used & np.isfinite(vals)]
    norm = (mcolors.LogNorm(vmin=max(pos[pos > 0].min(), 1e-12), vmax=pos.max())
            if color_by == "n_formulas" and (pos > 0).sum() > 1 and pos.max() / max(pos[pos > 0].min(), 1e-12) > 20
            else None)
    m = used & np.isfinite(vals) & ((vals > 0) if norm is not None else True)
    sc = ax.scatter(xy[m, 0], xy[m, 1], s=sizes[m], c=vals[m], cmap="viridis", norm=norm, alpha=0.85,
                    edgecolors="white", linewidths=0.4, zorder=2)
    rest = used & ~m
    if rest.any():
        ax.scatter(xy[rest, 0], xy[rest, 1], s=sizes[rest], c="0.75", zorder=1)
    if cax_fig is not None and m.any():
        cax_fig.colorbar(sc, ax=ax, label=color_by.replace("_", " "))
    return sc


def _place_labels(fig: Figure, ax, xy: np.ndarray, names: np.ndarray, order: np.ndarray, k: int,
                  fontsize: float = 7) -> int:
    """Label up to ``k`` materials of ``order`` (most important first) whose point lies inside the axes' limits: each
    label goes up-right of its point, else up-left, down-right or down-left, the first side where it stays inside the
    axes and overlaps no label already placed (else it is skipped); return the number placed."""
    if k <= 0:
        return 0
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    frame = ax.get_window_extent(renderer)
    placed: list = []
    for i in order:
        if len(placed) >= k:
            break
        x, y = xy[i]
        if not (np.isfinite(x) and np.isfinite(y) and x0 <= x <= x1 and y0 <= y <= y1):
            continue
        for (dx, dy), ha, va in _LABEL_SIDES:
            text = ax.annotate(str(names[i]), (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                               fontsize=fontsize, alpha=0.95, zorder=4,
                               bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()
    return len(placed)


#: Where :func:`_place_labels` tries a label, in order: (offset in points, horizontal and vertical alignment).
_LABEL_SIDES = (((4, 3), "left", "bottom"), ((-4, 3), "right", "bottom"), ((4, -3), "left", "top"),
                ((-4, -3), "right", "top"))


def _zoom_limits(xy: np.ndarray, quantile: float = 0.9, origin: Sequence[float] | None = None
                 ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Limits holding the central ``quantile`` share of the points on each axis (and ``origin``), padded 8 %."""
    ok = np.isfinite(xy).all(axis=1)
    lo_q, hi_q = (1 - quantile) / 2, 1 - (1 - quantile) / 2
    lims = []
    for a in range(2):
        v = xy[ok, a]
        lo, hi = (float(np.quantile(v, lo_q)), float(np.quantile(v, hi_q))) if len(v) else (-1.0, 1.0)
        if origin is not None:
            lo, hi = min(lo, origin[a]), max(hi, origin[a])
        pad = 0.08 * (hi - lo) if hi > lo else 1.0
        lims.append((lo - pad, hi + pad))
    return lims[0], lims[1]


def label_order(emb: pd.DataFrame, xy: np.ndarray, influence=None, origin: Sequence[float] | None = None
                ) -> np.ndarray:
    """Materials in the order they deserve a label: by measured influence when given, else by distance from the
    origin (when it is meaningful) or from the map's centre, ties broken by usage."""
    if influence is not None:
        score = np.nan_to_num(align(influence, emb), nan=-np.inf)
    else:
        centre = np.asarray(origin, np.float64) if origin is not None else np.nanmedian(xy, axis=0)
        score = np.nan_to_num(np.linalg.norm(xy - centre, axis=1), nan=-np.inf)
    return np.lexsort((-usage(emb), -score))


def material_map(coords: np.ndarray, emb: pd.DataFrame, color_by: str = "family", influence=None,
                 title: str | None = None, annotate: int = 0, origin: Sequence[float] | None = None,
                 zoom: bool = False, view: str | None = None, axis_label: str = "axis") -> Figure:
    """Scatter of materials at ``coords`` ``(n, 2)`` (from :func:`mrl.analysis.project`), marker area ~ usage,
    unused materials as grey crosses.

    ``color_by``: ``"family"``, ``"n_formulas"`` or ``"influence"`` (needs ``influence``: Series by material_id or
    the :func:`mrl.analysis.influence` table). ``annotate``: label up to that many materials, most influential first
    (by ``influence`` when given, else by distance from the origin or the centre), never two overlapping labels.
    ``origin``: where the zero vector lands (``(0, 0)`` for raw or uncentred PCA), drawn as a cross. ``zoom`` adds a
    second panel on the central 90 % of the materials (where the most used ones crowd), with its own labels.
    ``view`` (e.g. "dose-weighted vectors") is written under the title, so every map says what it draws.
    """
    xy = np.asarray(coords, np.float64)
    if xy.shape != (len(emb), 2):
        raise ValueError(f"coords must have shape ({len(emb)}, 2), got {xy.shape}")
    fig, axes = new_figure(1, 2 if zoom else 1, figsize=(12.5, 5.6) if zoom else (7, 5.6))
    order = label_order(emb, xy, influence if color_by == "influence" else None, origin)
    names = material_names(emb)
    panels = [("all materials", None)] + ([("zoom: central 90 % of the materials", _zoom_limits(xy, 0.9, origin))]
                                          if zoom else [])
    for ax, (label, limits) in zip(axes.ravel(), panels):
        _scatter(ax, xy, emb, color_by, influence, legend=ax is axes[0, -1], cax_fig=fig if ax is axes[0, -1] else None)
        if origin is not None:
            ax.scatter([origin[0]], [origin[1]], marker="+", s=150, c="black", linewidths=1.5, zorder=3)
            ax.annotate("origin (no influence)", origin, textcoords="offset points", xytext=(5, -11),
                        fontsize="small")
        if limits is not None:
            ax.set_xlim(limits[0])
            ax.set_ylim(limits[1])
            inside = ((xy[:, 0] >= limits[0][0]) & (xy[:, 0] <= limits[0][1]) & (xy[:, 1] >= limits[1][0])
                      & (xy[:, 1] <= limits[1][1])).sum()
            label = f"zoom: {inside} of {len(xy)} materials"
        ax.set_xlabel(f"{axis_label} 1")
        ax.set_ylabel(f"{axis_label} 2")
        if zoom:
            ax.set_title(label, fontsize="medium")
    for ax in axes.ravel():
        _place_labels(fig, ax, xy, names, order, annotate)
    head = title or f"Material map ({len(emb)} materials, coloured by {color_by.replace('_', ' ')})"
    if zoom:
        fig.suptitle(head + (f"\n{view}" if view else ""))
    else:
        axes[0, 0].set_title(head + (f"\n{view}" if view else ""), fontsize="medium")
    return fig


def material_map_html(coords: np.ndarray, emb: pd.DataFrame, color_by: str = "family", influence=None,
                      title: str | None = None, plotlyjs: str | bool = True, view: str | None = None,
                      axis_label: str = "axis") -> str:
    """Interactive map as an HTML page; hovering a point shows material_id, name, family, usage (n_formulas,
    median content), norm and influence when given.

    ``plotlyjs``: ``True`` inlines plotly.js (~4.6 MB, self-contained), a string is the relative path of a
    ``plotly.min.js`` next to the page (see :func:`plotly_js_path`), loaded once for a whole site; never a CDN.
    ``view`` names the vectors drawn (shown under the title)."""
    import plotly.graph_objects as go

    xy = np.asarray(coords, np.float64)
    if xy.shape != (len(emb), 2):
        raise ValueError(f"coords must have shape ({len(emb)}, 2), got {xy.shape}")
    ids, names = material_ids(emb), material_names(emb)
    fam = families(emb)
    fam = fam if fam is not None else np.full(len(emb), "")
    use = usage(emb)
    med = emb["median_content"].to_numpy(np.float64) if "median_content" in emb.columns else np.full(len(emb), np.nan)
    norm = emb["norm"].to_numpy(np.float64) if "norm" in emb.columns else np.full(len(emb), np.nan)
    infl = align(influence, emb) if influence is not None else np.full(len(emb), np.nan)
    custom = np.column_stack([ids, names, fam, use.astype(int), 100 * med, norm, infl]).astype(object)
    hover = ("<b>%{customdata[0]}</b> %{customdata[1]}<br>family: %{customdata[2]}<br>"
             "used in %{customdata[3]} formulas, median content %{customdata[4]:.3~g} %<br>"
             "norm %{customdata[5]:.3g}" + ("<br>influence %{customdata[6]:.3g}" if influence is not None else "")
             + "<extra></extra>")
    size = np.sqrt(_sizes(emb)) * 1.3
    kind, values = _color_values(emb, color_by, influence)
    fig = go.Figure()
    if kind == "family":
        pal = _family_palette(values)
        for f, col in pal.items():
            m = values == f
            fig.add_trace(go.Scatter(
                x=xy[m, 0], y=xy[m, 1], mode="markers", name=str(f), customdata=custom[m], hovertemplate=hover,
                marker=dict(size=size[m], color=mcolors.to_hex(col), opacity=0.85,
                            line=dict(width=0.5, color="white"))))
    else:
        vals = np.asarray(values, np.float64)
        fig.add_trace(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name=color_by, customdata=custom, hovertemplate=hover,
            marker=dict(size=size, color=np.nan_to_num(vals, nan=0.0), colorscale="Viridis", showscale=True,
                        colorbar=dict(title=color_by.replace("_", " ")), opacity=0.85)))
    head = title or f"Material map ({len(emb)} materials)"
    fig.update_layout(title=head + (f"<br><sup>{view}</sup>" if view else ""), template="plotly_white",
                      xaxis_title=f"{axis_label} 1", yaxis_title=f"{axis_label} 2", legend_title_text=color_by,
                      height=650, margin=dict(t=80))
    page = fig.to_html(full_html=True, include_plotlyjs=plotlyjs, include_mathjax=False)
    return page.replace("<head>", f"<head><meta charset=\"utf-8\" /><title>{html.escape(head)}</title>", 1)


def plotly_js_path() -> Path:
    """The ``plotly.min.js`` that the installed plotly package ships (copied next to HTML maps; no CDN)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the plotly package ships no plotly.min.js")
    return path


def _frame_arrays(frames: pd.DataFrame, emb: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Coordinates ``(n_steps, n, 2)`` in the order of ``emb`` (materials missing from ``emb`` are appended with
    no metadata), the steps, and the matching embeddings rows."""
    steps = np.sort(pd.unique(frames["step"]))
    mids = frames["material_id"].astype(str)
    ids = list(material_ids(emb))
    extra = [m for m in pd.unique(mids) if m not in set(ids)]
    meta = emb.assign(material_id=emb["material_id"].astype(str))
    if extra:
        meta = pd.concat([meta, pd.DataFrame({"material_id": extra})], ignore_index=True)
    pos = pd.Index(meta["material_id"])
    cube = np.full((len(steps), len(meta), 2), np.nan)
    s_idx = pd.Index(steps).get_indexer(frames["step"])
    m_idx = pos.get_indexer(mids)
    cube[s_idx, m_idx] = frames[["x", "y"]].to_numpy(np.float64)
    return cube, steps, meta.reset_index(drop=True)


def _limits(cube: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    lims = []
    for a in range(2):
        v = cube[..., a]
        v = v[np.isfinite(v)]
        lo, hi = (float(v.min()), float(v.max())) if len(v) else (-1.0, 1.0)
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        lims.append((lo - pad, hi + pad))
    return lims[0], lims[1]


def evolution_grid(frames: pd.DataFrame, emb: pd.DataFrame, color_by: str = "family", influence=None,
                   origin: Sequence[float] | None = None, view: str | None = None) -> Figure:
    """Small multiples of :func:`mrl.analysis.evolution_frames` output, one panel per step, all sharing limits;
    ``origin`` (where the zero vector lands) is drawn as a cross in every panel."""
    cube, steps, meta = _frame_arrays(frames, emb)
    n = len(steps)
    ncols = int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    fig, axes = new_figure(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows + 0.6), sharex=True, sharey=True)
    xlim, ylim = _limits(cube)
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_visible(False)
            continue
        _scatter(ax, cube[i], meta, color_by, influence, legend=False)
        if origin is not None:
            ax.scatter([origin[0]], [origin[1]], marker="+", s=80, c="black", linewidths=1.2, zorder=3)
        ax.set_title(f"step {steps[i]}", fontsize="medium")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
    if color_by == "family":
        pal = _family_palette(_family_labels(meta))
        if len(pal) > 1:
            handles = [Line2D([], [], marker="o", ls="", color=c, label=str(f)) for f, c in pal.items()]
            fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize="small")
    fig.suptitle("Material vectors during training (one projection for all panels; + marks the origin)"
                 + (f"\n{view}" if view else ""))
    return fig


def evolution_html(frames: pd.DataFrame, emb: pd.DataFrame, title: str, plotlyjs: str | bool = True,
                   view: str | None = None, axis_label: str = "uncentred PCA axis") -> str:
    """The material map through training as one interactive page: a step slider and a play button (plotly frames),
    one colour per family, the material's name and family on hover; coordinates from
    :func:`mrl.analysis.evolution_frames`. ``plotlyjs`` as in :func:`material_map_html`."""
    import plotly.graph_objects as go

    cube, steps, meta = _frame_arrays(frames, emb)
    cube = np.round(np.nan_to_num(cube), 5)
    names = np.asarray([f"{n}" for n in material_names(meta)], dtype=object)
    fam = families(meta)
    fam = np.asarray(fam if fam is not None else np.full(len(meta), "material"), dtype=object)
    groups = list(_family_palette(fam).items())

    def traces(i: int) -> list:
        return [go.Scattergl(x=cube[i, fam == f, 0], y=cube[i, fam == f, 1], mode="markers", name=str(f),
                             text=names[fam == f], hovertemplate="%{text}<br>" + str(f) + "<extra></extra>",
                             marker=dict(size=6, color=mcolors.to_hex(col), opacity=0.8)) for f, col in groups]

    xlim, ylim = _limits(cube)
    labels = [f"{int(step):,}" for step in steps]
    fig = go.Figure(data=traces(len(steps) - 1),
                    frames=[go.Frame(data=traces(i), name=labels[i]) for i in range(len(steps))])
    slider = dict(active=len(steps) - 1, currentvalue=dict(prefix="training step "), pad=dict(t=40), x=0.1, len=0.9,
                  steps=[dict(label=lab, method="animate", args=[[lab], dict(mode="immediate",
                                                                             frame=dict(duration=0, redraw=True))])
                         for lab in labels])
    play = dict(type="buttons", showactive=False, x=0, y=-0.1, xanchor="left", yanchor="top", buttons=[dict(
        label="play", method="animate", args=[None, dict(frame=dict(duration=500, redraw=True), fromcurrent=False)])])
    fig.update_layout(title=title + (f"<br><sup>{view}</sup>" if view else ""), template="plotly_white",
                      xaxis=dict(title=f"{axis_label} 1", range=xlim), yaxis=dict(title=f"{axis_label} 2", range=ylim),
                      legend_title_text="family", height=700, sliders=[slider], updatemenus=[play])
    page = fig.to_html(full_html=True, include_plotlyjs=plotlyjs, include_mathjax=False, auto_play=False)
    return page.replace("<head>", f"<head><meta charset=\"utf-8\" /><title>{html.escape(title)}</title>", 1)


def evolution_animation(frames: pd.DataFrame, emb: pd.DataFrame, path: str | Path, color_by: str = "family",
                        fps: int = 3, influence=None, dpi: int = 100, origin: Sequence[float] | None = None,
                        view: str | None = None) -> Path:
    """Write an animated GIF of the material map over training steps (atomically, via :func:`mrl.io.atomic_path`)."""
    path = Path(path)
    cube, steps, meta = _frame_arrays(frames, emb)
    fig, axes = new_figure(figsize=(7.5, 6.5))
    FigureCanvasAgg(fig)
    ax = axes[0, 0]
    xlim, ylim = _limits(cube)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_xlabel("axis 1")
    ax.set_ylabel("axis 2")
    if origin is not None:
        ax.scatter([origin[0]], [origin[1]], marker="+", s=150, c="black", linewidths=1.5, zorder=3)
        ax.annotate("origin", origin, textcoords="offset points", xytext=(5, -11), fontsize="small")
    if view:
        fig.suptitle(view, fontsize="medium")
    kind, values = _color_values(meta, color_by, influence)
    if kind == "family":
        pal = _family_palette(values)
        cols = np.array([pal[v] for v in values])
        if len(pal) > 1:
            ax.legend(handles=[Line2D([], [], marker="o", ls="", color=c, label=str(f)) for f, c in pal.items()],
                      fontsize="x-small", loc="upper left")
    else:
        vals = np.nan_to_num(np.asarray(values, np.float64))
        cols = sns.color_palette("viridis", as_cmap=True)(mcolors.Normalize()(vals))
    sc = ax.scatter(np.nan_to_num(cube[0, :, 0]), np.nan_to_num(cube[0, :, 1]), s=_sizes(meta), c=cols,
                    alpha=0.8, edgecolors="white", linewidths=0.3)
    title = ax.set_title("")

    def update(i: int):
        sc.set_offsets(np.nan_to_num(cube[i]))
        title.set_text(f"training step {steps[i]} of {steps[-1]}")
        return sc, title

    anim = FuncAnimation(fig, update, frames=len(steps), blit=False)
    with atomic_path(path) as tmp:
        gif = tmp.with_suffix(path.suffix or ".gif")  # Pillow picks the file format from the suffix
        try:
            anim.save(gif, writer=PillowWriter(fps=fps), dpi=dpi)
            gif.replace(tmp)
        finally:
            gif.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------------------ the data, training
def ingredients_figure(data: FormulaData) -> Figure:
    """Histogram of the number of ingredients per formula."""
    counts = data.formulas.groupby("formula_id").size()
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.hist(counts, bins=np.arange(counts.min(), counts.max() + 2) - 0.5, color="tab:blue", alpha=0.8)
    ax.set_xlabel("ingredients per formula")
    ax.set_ylabel("formulas")
    ax.set_title(f"Ingredients per formula (median {counts.median():g})")
    return fig


def usage_figure(data: FormulaData) -> Figure:
    """Usage of every material (formulas using it) against its usage rank, log-log: the long tail."""
    usage = np.sort(data.materials["n_formulas"].to_numpy())[::-1]
    fig, axes = new_figure(1, 2, figsize=(10, 4))
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
    family = data.materials.set_index("material_id")["family"] if "family" in data.materials else None
    entries = data.formulas.assign(
        family=data.formulas["material_id"].map(family) if family is not None else "all")
    entries = entries[entries["content"] > 0]
    order = entries.groupby("family")["content"].median().sort_values(ascending=False).index
    fig, axes = new_figure(figsize=(8, 0.35 * len(order) + 1.6))
    sns.boxplot(data=entries, x="content", y="family", order=order, ax=axes[0, 0], log_scale=True, fliersize=1,
                color="tab:blue")
    axes[0, 0].set_xlabel("content (fraction of the formula)")
    axes[0, 0].set_title("Content per family: water near 0.8, actives below 0.001")
    return fig


def target_figure(data: FormulaData) -> Figure:
    """Histogram of the target (log-spaced bins when it is positive and spans more than two decades)."""
    y = data.target_values()
    wide = spans_decades(y)
    fig, axes = new_figure()
    ax = axes[0, 0]
    bins = np.geomspace(y.min(), y.max(), 40) if wide else 40
    ax.hist(y, bins=bins, color="tab:blue", alpha=0.8)
    if wide:
        ax.set_xscale("log")
    ax.set_xlabel(data.targets[0])
    ax.set_ylabel("measurements")
    ax.set_title(f"{data.targets[0]}: {'log' if wide else 'linear'} axis, median {np.median(y):.4g}")
    return fig


def history_figure(history: pd.DataFrame, unit: str = "") -> Figure:
    """Training curves: train/eval MAE (in the property's ``unit``) and the training loss against the step."""
    fig, axes = new_figure(1, 2, figsize=(10, 4))
    ax = axes[0, 0]
    for column, label in (("train_mae", "train (subsample)"), ("eval_mae", "eval")):
        if column in history:
            ax.plot(history["step"], history[column], marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"MAE ({unit})" if unit else "MAE")
    ax.set_xlabel("training step")
    ax.set_title("MAE during training")
    ax.legend(loc="upper right")
    ax = axes[0, 1]
    ax.plot(history["step"], history["train_loss"], color="tab:gray")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (mean squared error of the scaled target)")
    ax.set_title("Training loss")
    return fig


# ------------------------------------------------------------------------------------------------ errors
def error_by_usage_figure(binned: pd.DataFrame, metric: str = "median_abs_error", unit: str = "") -> Figure:
    """Bars of ``metric`` per usage bin (from :func:`mrl.error_sources.error_by_usage`), one colour per split, with
    the number of measurements on each bar."""
    splits = [s for s in ("train", "eval", "test") if s in set(binned["split"])]
    splits += [s for s in pd.unique(binned["split"]) if s not in splits]
    return _grouped_bars(binned, "usage_bin", "split", splits, metric,
                         xlabel="training formulas using the formula's rarest ingredient",
                         title="Error against familiarity of the rarest ingredient", unit=unit)


def error_by_distance_figure(binned: pd.DataFrame, metric: str = "mae_log10", hue: str = "ingredients",
                             unit: str = "") -> Figure:
    """Bars of ``metric`` per bin of distance to the nearest training formula (from
    :func:`mrl.error_sources.error_by_distance`), one colour per value of column ``hue`` (e.g. a column naming the
    split of tables put together), with the number of measurements on each bar. ``mae_log10`` falls back to
    ``median_abs_error`` when it is undefined (a value not positive)."""
    if metric == "mae_log10" and binned["mae_log10"].isna().all():
        metric = "median_abs_error"
    order = ("all seen", "some unseen", "any")
    groups = sorted(dict.fromkeys(binned[hue]), key=lambda g: order.index(g) if g in order else len(order))
    if "any" in groups and "some unseen" not in groups:  # nothing unseen: "any" repeats "all seen"
        groups = [g for g in groups if g != "any"]
    return _grouped_bars(binned, "distance_bin", hue, groups, metric,
                         xlabel="L1 distance of contents to the nearest training formula (2 = nothing in common)",
                         title="Error against distance to the nearest training formula", unit=unit)


def _grouped_bars(table: pd.DataFrame, x: str, hue: str, hues: Sequence[str], metric: str, xlabel: str,
                  title: str, unit: str = "") -> Figure:
    """Bars of ``metric`` per value of column ``x`` (in table order), one colour per value ``hues`` of column
    ``hue``, with the number of measurements (column ``n``) on each bar; the y axis in the property's ``unit``
    and the legend beside the axes, off the bars."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    labels = list(dict.fromkeys(table[x]))
    width = 0.8 / max(len(hues), 1)
    colors = dict(zip(hues, sns.color_palette("deep", len(hues))))
    positions = np.arange(len(labels))
    for i, value in enumerate(hues):
        part = table[table[hue] == value].set_index(x).reindex(labels)
        bars = ax.bar(positions + (i - (len(hues) - 1) / 2) * width, part[metric], width, label=value,
                      color=colors[value])
        ax.bar_label(bars, labels=[f"n={int(n)}" if np.isfinite(n) else "" for n in part["n"]], fontsize=7)
    ax.set_xticks(positions, labels)
    ax.set_xlabel(xlabel)
    u = unit or "unit of the property"
    ax.set_ylabel({"mae_log10": f"MAE of log10 {unit or 'of the property'} (0.3 = factor 2)",
                   "median_abs_error": f"median absolute error ({u})",
                   "mae": f"MAE ({u})"}.get(metric, metric.replace("_", " ")))
    ax.set_title(title)
    ax.legend(title=hue if len(hues) > 1 else None, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return fig


# ------------------------------------------------------------------------------------------------ sweeps, predictions
def error_by_dim(summary: pd.DataFrame, metric: str = "mae", baselines: pd.DataFrame | None = None,
                 unit: str = "", splits: Sequence[str] = ("train", "eval", "full"), title: str | None = None,
                 logy: bool = False) -> Figure:
    """Error against the embedding size (log x): one line per split found among the ``<split>_<metric>`` columns.

    Several rows per size (a ``seed`` key in the sweep grid) are drawn as mean +- SD over the rows (error bars); the
    legend says how many runs each point averages ("single run" otherwise). ``baselines``: rows ``model, split,
    <metric>`` (e.g. mean of train, ridge on contents) drawn as horizontal lines for the eval split. ``unit``
    labels the y axis ("log10 cP", "cP"); ``logy`` puts it on a log scale (errors in linear units spanning decades)."""
    present = [s for s in splits if f"{s}_{metric}" in summary.columns and summary[f"{s}_{metric}"].notna().any()]
    if not present:
        raise KeyError(f"no <split>_{metric} columns in summary; columns are {list(summary.columns)}")
    fig, axes = new_figure(figsize=(7.5, 4.8))
    ax = axes[0, 0]
    colors = dict(zip(("train", "eval", "full", "test"), sns.color_palette("deep", 4)))
    grouped = summary.groupby("embedding_dim")
    n_runs = grouped.size()
    runs_note = ("single run per size" if n_runs.max() <= 1
                 else f"mean ± SD over {n_runs.min()}-{n_runs.max()} runs" if n_runs.min() != n_runs.max()
                 else f"mean ± SD over {n_runs.max()} runs (seeds)")
    for split in present:
        stats = grouped[f"{split}_{metric}"].agg(["mean", "std", "count"]).reset_index()
        sd = stats["std"].where(stats["count"] > 1)
        ax.errorbar(stats["embedding_dim"], stats["mean"], yerr=None if sd.isna().all() else sd.fillna(0),
                    marker="o", ms=5, capsize=3, color=colors.get(split), label=split,
                    ls="-" if split != "full" else ":")
    if baselines is not None and len(baselines) and metric in baselines.columns:
        styles = ["--", "-.", (0, (1, 1)), (0, (5, 2, 1, 2))]
        rows = baselines[(baselines["split"] == "eval") & baselines[metric].notna()]
        for (model, value), ls in zip(rows[["model", metric]].itertuples(index=False), styles):
            ax.axhline(value, color="0.35", lw=1.2, ls=ls, label=f"{model} (eval)", zorder=0)
    dims = np.sort(pd.unique(summary["embedding_dim"]))
    if len(dims) and (dims > 0).all():
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims)
        ax.set_xticklabels([str(int(d)) if float(d).is_integer() else f"{d:g}" for d in dims])
        ax.minorticks_off()
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("embedding size (length of each material vector)")
    name = "MAE" if metric.startswith("mae") else metric.split("_")[0].upper()
    ax.set_ylabel(f"{name} ({unit})" if unit else name)
    ax.set_title(title or f"{name} by embedding size ({runs_note}; lower is better)", fontsize="medium")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
              title="split / baseline")
    return fig


def parity(y_true: np.ndarray, y_pred: np.ndarray, split: np.ndarray | None = None, log: bool = True,
           label: str = "property", points: str = "formulas") -> Figure:
    """Predicted vs measured with the y = x line, one colour per split (legend, below the axes, shows the count of
    ``points``, MAE and R2 per split). ``log`` uses log axes when every value is positive (falls back to linear
    otherwise)."""
    yt = np.asarray(y_true, np.float64).ravel()
    yp = np.asarray(y_pred, np.float64).ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true {yt.shape} and y_pred {yp.shape} differ in shape")
    groups = np.asarray(split).astype(str) if split is not None else np.full(len(yt), "all")
    ok = np.isfinite(yt) & np.isfinite(yp)
    use_log = bool(log and ok.any() and (yt[ok] > 0).all() and (yp[ok] > 0).all())
    if log and not use_log:
        logging.getLogger(__name__).info("parity: non-positive values, using linear axes")
    fig, axes = new_figure(figsize=(5.5, 5.5))
    ax = axes[0, 0]
    order = [s for s in ("train", "eval", "test", "all") if s in set(groups)]
    order += [s for s in pd.unique(groups) if s not in order]
    pal = dict(zip(order, sns.color_palette("deep", len(order))))
    for s in order:
        m = ok & (groups == s)
        if not m.any():
            continue
        err = yp[m] - yt[m]
        ss = ((yt[m] - yt[m].mean()) ** 2).sum()
        r2 = 1 - (err**2).sum() / ss if ss > 0 else np.nan
        ax.scatter(yt[m], yp[m], s=10, alpha=0.5, color=pal[s],
                   label=f"{s} ({m.sum():,} {points}, MAE {format_number(np.abs(err).mean())}, R² {r2:.2f})")
    if ok.any():
        lo, hi = min(yt[ok].min(), yp[ok].min()), max(yt[ok].max(), yp[ok].max())
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", zorder=0)
    if use_log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"measured {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=1, frameon=False)
    ax.set_title("Predicted against measured")
    return fig


# ------------------------------------------------------------------------------------------------ files
def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save a figure atomically; the format follows the suffix (``.png``, ``.svg``, ``.pdf``...)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=(path.suffix.lstrip(".") or "png"), bbox_inches="tight")
    return path


def save_html(html: str, path: str | Path) -> Path:
    """Write HTML text (e.g. :func:`material_map_html`) atomically."""
    return write_text(html, path)
