"""Material maps as small coordinate files, so a hand-written chapter shows its runs' maps without the runs.

A map file (``<book>/figures/<page>.maps.json.gz``, gzip'd JSON) holds, for runs on the same materials:

* ``materials``: id, name, family, usage (``n_formulas``) and median content, once;
* ``maps``: per run, the 2-D coordinates its report draws (:func:`mrl.run_outputs.map_coordinates`: raw vectors
  at size 2, uncentred PCA above, of the dose-weighted vectors), the vectors' norms and influence;
* ``evolutions``: per run, the coordinates at the training steps of its evolution
  (:func:`mrl.run_outputs.evolution_coordinates`: raw at size 2, else PCA fitted on the final vectors);
* ``page`` and ``page_title``: the book page that shows them (the maps link back to it).

Coordinates are rounded to :data:`DIGITS` significant digits of each array's largest value (a screen shows no
more), hover values to as many digits of their own, so
5,400 materials at three sizes plus nine training steps take about 1 MB. :func:`write_map_file` writes one from
runs; :func:`map_pages` turns it back into the interactive pages of :func:`mrl.plots.material_map_html` and
:func:`mrl.plots.evolution_html` (the same functions as a run's report), which ``mrl report`` serves under
``maps/chapters/<page>/`` (:func:`mrl.book.chapter_map_pages`), and :func:`map_figures` into the static maps
(:func:`mrl.plots.material_map`, :func:`mrl.plots.evolution_grid`).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from mrl.analysis import VIEWS, align, families, material_ids, material_names, median_contents, usage
from mrl.io import atomic_path
from mrl.plots import evolution_grid, evolution_html, material_map, material_map_html
from mrl.run_outputs import (
    AXIS_LABELS,
    ORIGIN_METHODS,
    evolution_coordinates,
    evolution_title,
    file_path,
    map_coordinates,
    map_methods,
    map_title,
)

#: Version tag of the file format.
FORMAT = "mrl-maps/1"
#: Significant digits kept, relative to each array's largest absolute value.
DIGITS = 4
#: Suffix of a map file's name: ``<page>.maps.json.gz``.
SUFFIX = ".maps.json.gz"


def rounded(values: Any, digits: int = DIGITS) -> list:
    """``values`` (any shape) as nested lists rounded to ``digits`` significant digits of the largest absolute
    value, NaN as None."""
    arr = np.asarray(values, np.float64)
    finite = np.isfinite(arr)
    top = float(np.abs(arr[finite]).max()) if finite.any() else 0.0
    step = 10.0 ** (int(np.floor(np.log10(top))) - digits + 1) if top > 0 else 1.0
    decimals = max(0, -int(np.floor(np.log10(step))))
    out = np.round(np.round(arr / step) * step, decimals).astype(object)
    out[~finite] = None
    return out.tolist()


def significant(values: Any, digits: int = DIGITS) -> list:
    """``values`` (1-D) as a list, each rounded to ``digits`` significant digits of its own (NaN as None): for
    hover values such as a median content of 0.004 %."""
    return [float(f"{v:.{digits}g}") if np.isfinite(v) else None for v in np.asarray(values, np.float64).tolist()]


def _name(kind: str, embedding_dim: int) -> str:
    return f"{kind}_dim_{int(embedding_dim):04d}"


def write_map_file(path: str | Path, runs: Sequence[Any], evolution_runs: Sequence[Any] = (), page: str = "",
                   page_title: str = "", n_frames: int = 9, seed: int = 0, view: str = "dose") -> Path:
    """Write the map file of ``runs`` (:class:`mrl.runs.Run` on the same materials, one map each in the first
    projection of :func:`mrl.run_outputs.map_methods`) and of the training evolution of ``evolution_runs``
    (``n_frames`` steps; raw at size 2, else PCA) to ``path``; ``page`` / ``page_title``: the book page the maps
    link back to."""
    if not runs:
        raise ValueError("write_map_file needs at least one run")
    emb0 = runs[0].embeddings
    ids = material_ids(emb0)
    out: dict[str, Any] = {
        "format": FORMAT, "page": page, "page_title": page_title, "view": view,
        "materials": {"material_id": ids.tolist(), "name": material_names(emb0).tolist(),
                      "family": (families(emb0) if families(emb0) is not None else np.full(len(ids), "")).tolist(),
                      "n_formulas": usage(emb0).astype(int).tolist(),
                      "median_content": significant(median_contents(emb0))},
        "maps": [], "evolutions": []}
    for run in runs:
        dim = int(run.metrics["embedding_dim"])
        emb = run.embeddings.set_index(run.embeddings["material_id"].astype(str)).loc[ids].reset_index(drop=True)
        method = map_methods(dim)[0]
        coords, _ = map_coordinates(run, method, view, seed)
        coords = pd.DataFrame(coords, index=material_ids(run.embeddings)).loc[ids].to_numpy()
        entry = {"name": _name("map", dim), "embedding_dim": dim, "method": method, "title": map_title(method, dim),
                 "x": rounded(coords[:, 0]), "y": rounded(coords[:, 1]), "norm": significant(emb["norm"])}
        infl = file_path(run.path, "influence")
        if infl.exists():
            entry["influence"] = significant(align(pd.read_csv(infl), emb))
        out["maps"].append(entry)
    for run in evolution_runs:
        dim = int(run.metrics["embedding_dim"])
        method = map_methods(dim, ("pca",))[0]  # raw at size 2, else PCA (t-SNE cannot place earlier steps)
        frames, _ = evolution_coordinates(run, n_frames, method, seed, view)
        steps = np.sort(frames["step"].unique())
        cube = {a: frames.pivot(index="step", columns="material_id", values=a).reindex(index=steps, columns=ids)
                for a in ("x", "y")}
        out["evolutions"].append({"name": _name("evolution", dim), "embedding_dim": dim, "method": method,
                                  "title": evolution_title(dim), "steps": [int(s) for s in steps],
                                  **{a: rounded(cube[a].to_numpy()) for a in ("x", "y")}})
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(json.dumps(out, separators=(",", ":")).encode(), compresslevel=9, mtime=0))
    return Path(path)


def read_map_file(path: str | Path) -> dict[str, Any]:
    """A map file's content (see the module docstring); a clear error when it is not one."""
    try:
        out = json.loads(gzip.decompress(Path(path).read_bytes()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a map file (gzip'd JSON): {exc}") from exc
    if out.get("format") != FORMAT:
        raise ValueError(f"{path}: format {out.get('format')!r}, expected {FORMAT!r}")
    return out


def _floats(values: Sequence) -> np.ndarray:
    """A (nested) list with None for NaN as a float array."""
    return np.asarray(pd.DataFrame(values).astype(np.float64).to_numpy() if values and isinstance(values[0], list)
                      else [np.nan if v is None else v for v in values], np.float64)


def _table(materials: dict, **columns: Any) -> pd.DataFrame:
    frame = pd.DataFrame(materials)
    for name, values in columns.items():
        frame[name] = _floats(values)
    return frame


def _maps_and_evolutions(content: dict[str, Any]) -> tuple[list, list]:
    """``(entry, emb, coords, influence)`` per map and ``(entry, emb, frames)`` per evolution of a map file."""
    materials = content["materials"]
    maps, evolutions = [], []
    for m in content["maps"]:
        emb = _table(materials, norm=m["norm"])
        coords = np.nan_to_num(np.column_stack([_floats(m["x"]), _floats(m["y"])]))
        infl = pd.Series(_floats(m["influence"]), index=emb["material_id"].astype(str)) if m.get("influence") else None
        maps.append((m, emb, coords, infl))
    for e in content["evolutions"]:
        emb = _table(materials)
        ids = emb["material_id"].astype(str).to_numpy()
        frames = pd.DataFrame({"step": np.repeat(e["steps"], len(ids)), "material_id": np.tile(ids, len(e["steps"])),
                               "x": _floats(e["x"]).ravel(), "y": _floats(e["y"]).ravel()})
        evolutions.append((e, emb, frames))
    return maps, evolutions


def map_pages(content: dict[str, Any], plotlyjs: str) -> dict[str, str]:
    """The interactive pages of a map file's content (:func:`read_map_file`): ``<name>.html`` -> page, drawn by
    :func:`mrl.plots.material_map_html` / :func:`mrl.plots.evolution_html` loading ``plotlyjs`` (a relative path)."""
    view = VIEWS[content.get("view", "dose")]
    maps, evolutions = _maps_and_evolutions(content)
    pages = {}
    for m, emb, coords, infl in maps:
        pages[f"{m['name']}.html"] = material_map_html(coords, emb, influence=infl, title=m["title"], plotlyjs=plotlyjs,
                                                      view=view, axis_label=AXIS_LABELS.get(m["method"], "axis"),
                                                      div_id=m["name"])
    for e, emb, frames in evolutions:
        pages[f"{e['name']}.html"] = evolution_html(frames, emb, e["title"], plotlyjs=plotlyjs, view=view,
                                                   axis_label=AXIS_LABELS.get(e["method"], "axis"), div_id=e["name"])
    return pages


def map_figures(content: dict[str, Any], annotate: int = 12, font_size: float = 16,
                evolution_font_size: float = 12) -> dict[str, Figure]:
    """The static figures of a map file's content: ``<name>`` -> the map with its zoom panel
    (:func:`mrl.plots.material_map`, ``annotate`` names) or the evolution's small multiples
    (:func:`mrl.plots.evolution_grid`), as a run's report draws them, with text of ``font_size`` points (names
    0.8 of it; ``evolution_font_size`` in the evolution's 9.6-inch grid of small panels): a 12.5-inch-wide map shown
    in a book's ~700-pixel column (at 1280 pixels) then has tick labels of about 11 pixels."""
    view = VIEWS[content.get("view", "dose")]
    maps, evolutions = _maps_and_evolutions(content)
    out = {}
    with rc_context({"font.size": font_size}):
        _draw(out, maps, [], view, annotate, 0.8 * font_size)
    with rc_context({"font.size": evolution_font_size}):
        _draw(out, [], evolutions, view, annotate, 0.8 * evolution_font_size)
    return out


def _draw(out: dict, maps: list, evolutions: list, view: str, annotate: int, label_size: float) -> None:
    for m, emb, coords, infl in maps:
        origin = (0.0, 0.0) if m["method"] in ORIGIN_METHODS else None
        out[m["name"]] = material_map(coords, emb, color_by="family", influence=infl, title=m["title"],
                                      annotate=annotate, origin=origin, zoom=True, view=view,
                                      axis_label=AXIS_LABELS.get(m["method"], "axis"), label_size=label_size)
    for e, emb, frames in evolutions:
        origin = (0.0, 0.0) if e["method"] in ORIGIN_METHODS else None
        out[e["name"]] = evolution_grid(frames, emb, origin=origin, view=view,
                                        axis_label=AXIS_LABELS.get(e["method"], "axis"))
