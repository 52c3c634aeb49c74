"""The Jupyter Book report of a sweep or a single run: pages generated from their files, then the HTML build.

:func:`build_report` turns a sweep folder (``runs/<sweep>/``, written by :func:`mrl.sweep.run_sweep`) or a run folder
(``mrl train``) into book pages under ``<book>/generated/<name>/`` (:func:`generate_pages`,
:func:`generate_run_pages`) and builds the book with ``jupyter-book`` into ``<book>/_build/html/``. The book folder
may be empty: the configuration and first page ship with the package (:data:`TEMPLATE`); the repository's
``book/`` adds its own first page and hand-written chapters. Sweep pages read only files: the run files
(:mod:`mrl.runs`) and those the notebooks wrote under their :data:`mrl.run_outputs.OUTPUT_FILES` names; a run's pages draw its
maps and tables from the run folder itself.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml
from docutils import nodes
from latex2mathml.converter import convert
from PIL import Image

from mrl.io import copy_if_changed, read_json, write_table, write_text, write_text_if_changed
from mrl.map_files import SUFFIX as MAP_FILE_SUFFIX
from mrl.map_files import map_pages, read_map_file
from mrl.plots import error_by_dim, history_figure, parity, plotly_js_path, save_figure, target_figure, usage_figure
from mrl.run_baselines import report_lines as baseline_report_lines
from mrl.run_files import METRICS
from mrl.run_outputs import (
    AXIS_LABELS,
    METHOD_TITLES,
    baseline_scores,
    data_summary,
    file_path,
    member_embeddings,
    neighbour_agreement_table,
    property_unit,
    run_influence,
    write_maps,
)
from mrl.runs import load_run
from mrl.stacking import stacked_vectors_sentence
from mrl.sweep import DATA_POINT, DONE, load_summary
from mrl.wording import BETTER, TIE, WORSE, Score, best_of, compare, format_number

log = logging.getLogger(__name__)

#: Columns of the downloadable summary table (others from the grid are added after ``point``).
SUMMARY_COLUMNS = ("point", "embedding_dim", "steps", "wall_s", "eval_mae_log10", "eval_r2_log10", "eval_mae",
                   "eval_rmse", "eval_r2", "eval_mape", "train_mae_log10", "train_mae", "full_mae", "status")
#: Projection shown in the results page's gallery, by preference.
GALLERY_METHODS = ("raw", "pca", "umap", "tsne")
#: Maps per row in the results page's gallery (on wide screens).
GALLERY_COLUMNS = 2
#: Splits of the compact error table, in order.
SPLITS = ("train", "eval", "full")
#: An embedding size is on the plateau when its eval log10 MAE is within this much of the best size's.
PLATEAU_LOG10 = 0.02
#: Marks around the paragraph of a hand-written page that the first page quotes under "Key results".
KEY_RESULT_START, KEY_RESULT_END = "<!-- key-result -->", "<!-- /key-result -->"


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    found = str(exe) if exe.exists() else shutil.which("jupyter-book")
    if not found:
        raise FileNotFoundError("jupyter-book is not installed: pip install 'jupyter-book<2'")
    return found

def fill_marked_sections(path: str | Path, sections: dict[str, str], optional: Sequence[str] = ()) -> Path:
    """Replace the text between ``<!-- NAME -->`` and ``<!-- /NAME -->`` of a hand-written page with
    ``sections[NAME]`` (rendered from a result file); everything else on the page is kept. A missing pair of markers
    is an error unless its name is in ``optional``."""
    text = Path(path).read_text()
    for name, body in sections.items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        if start not in text or end not in text:
            if name in optional:
                continue
            raise ValueError(f"{path}: markers {start} ... {end} not found")
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"
    return write_text(text, path)



def fill_from_results(results: Any, sections: Mapping[str, Callable[[Any], str]], path: str | Path | None = None,
                      optional: Sequence[str] = ()) -> Path | str:
    """Each of ``sections`` (marker name -> renderer) rendered from ``results``: filled into the marked regions of
    the page ``path`` (its path returned, see :func:`fill_marked_sections`), or, without a page, the texts joined by
    blank lines (what a benchmark's ``--render`` without ``--book`` prints)."""
    if path is None:
        return "\n\n".join(fn(results) for fn in sections.values())
    return fill_marked_sections(path, {name: fn(results) for name, fn in sections.items()}, optional)

def _fmt(value: Any) -> str:
    """A table cell: numbers with about 3 significant digits and thousands separators (never e-notation)."""
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return format_number(float(value))
    return str(value)


def markdown_table(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A MyST pipe table with compactly formatted numbers."""
    frame = frame[list(columns)] if columns is not None else frame
    if frame.empty:
        return "*(empty)*\n"
    cells = [[_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def slim_png(data: bytes) -> bytes:
    """A PNG re-encoded with a 256-colour palette (plots have few colours; about a third of the bytes), or the
    original when that is not smaller."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                return data
            out = io.BytesIO()
            image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    except Exception:  # noqa: BLE001 - keep a picture PIL cannot read as it is
        return data
    return out.getvalue() if out.tell() < len(data) else data


def _copy_figure(src: Path, dst: Path) -> None:
    """Copy a figure for the site, PNGs slimmed by :func:`slim_png`."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() == ".png":
        dst.write_bytes(slim_png(src.read_bytes()))
    else:
        shutil.copy2(src, dst)


def _figure_block(src: str, label: str, caption: str) -> list[str]:
    return [f"```{{figure}} {src}", f":name: {re.sub(r'[^A-Za-z0-9-]+', '-', label)}", "", caption, "```", ""]


#: Jupyter Book tags that drop a notebook cell from its page: the defaults cell and papermill's injected values.
PARAMETER_TAGS = ("parameters", "injected-parameters")


def _copy_notebook(src: Path, dst: Path, suffix: str) -> None:
    """Copy an executed notebook for a reader: its title followed by ``suffix`` (``: embedding size 2``) so the
    pages of different points differ, every code input hidden (``remove-input``: the outputs stay), the parameter
    cells removed (``remove-cell``), oversized HTML outputs dropped and PNGs slimmed. A figure that is also a file
    of ``dst``'s folder (the chapter page's copy) is shown from that file, so the site holds it once."""
    import nbformat

    shared = {hashlib.sha1(p.read_bytes()).hexdigest(): p.name for p in dst.parent.glob("*.png")} \
        if dst.parent.exists() else {}

    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            first, _, rest = cell.source.partition("\n")
            rest = re.sub(r"\s*Execute `\w+` with the same `name` and `runs_dir` first\.", "", rest)  # for users
            cell.source = f"{first}{suffix}" + (f"\n{rest}" if rest else "")
            break
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.get("metadata", {}).get("tags", []))
        hide = "remove-cell" if any(t in tags for t in PARAMETER_TAGS) else "remove-input"
        if hide not in tags:
            cell.metadata["tags"] = [*tags, hide]
        # an interactive map inlined by an older notebook (plotly.js, ~5 MB)
        cell.outputs = [o for o in cell.get("outputs", [])
                        if len(str(o.get("data", {}).get("text/html", ""))) < MAX_INLINE_HTML]
        for k, output in enumerate(cell.outputs):  # figures: the same palette PNGs as on the pages
            png = output.get("data", {}).get("image/png")
            if isinstance(png, str):
                slim = slim_png(base64.b64decode(png))
                same = shared.get(hashlib.sha1(slim).hexdigest())
                if same:
                    cell.outputs[k] = nbformat.v4.new_output("display_data", data={"text/markdown": f"![]({same})"})
                else:
                    output["data"]["image/png"] = base64.b64encode(slim).decode("ascii")
    nb.metadata["orphan"] = True  # linked from its chapter's page, not listed in the sidebar
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)


#: Notebook HTML outputs larger than this (bytes) are dropped from the book's copy (an inlined plotly.js).
MAX_INLINE_HTML = 1_000_000
#: An interactive evolution page (plotly frames) larger than this (bytes) stays out of the site.
MAX_EVOLUTION_HTML = 5_000_000


def _maps(point_dir: Path) -> list[Path]:
    """The point's static maps, in :data:`METHOD_TITLES` order."""
    order = list(METHOD_TITLES)
    return sorted((p for p in point_dir.glob("map_*.png") if p.stem[4:] in order), key=lambda p: order.index(p.stem[4:]))


def _gallery_map(point_dir: Path) -> Path | None:
    """The point's map in the first available projection of :data:`GALLERY_METHODS`."""
    maps = {p.stem[4:]: p for p in _maps(point_dir)}
    return next((maps[m] for m in GALLERY_METHODS if m in maps), next(iter(maps.values()), None))


def _num(value: Any, digits: int = 3) -> str:
    """A number for prose and tables: ``digits`` significant digits, thousands separators, never e-notation, "–"
    when missing."""
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return "–"
    return format_number(float(value), digits)


def _pm(mean: float, sd: float, n: int, digits: int = 3) -> str:
    return _num(mean, digits) + (f" ± {_num(sd, 2)}" if n > 1 and np.isfinite(sd) else "")


def _by_size(done: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Mean, SD and number of runs of ``columns`` per embedding size (several runs: a ``seed`` grid key)."""
    cols = [c for c in columns if c in done.columns]
    grouped = done.groupby("embedding_dim")
    out = grouped[cols].mean()
    out = out.join(grouped[cols].std().add_suffix("_sd")).join(grouped.size().rename("n_runs"))
    return out.reset_index()


def _unit(sweep_dir: Path, done: pd.DataFrame) -> tuple[str, dict]:
    for point in done["point"]:
        if (sweep_dir / point / METRICS).exists():
            metrics = read_json(sweep_dir / point / METRICS)
            return property_unit(metrics), metrics
    return "", {}


def _baselines(sweep_dir: Path, done: pd.DataFrame) -> pd.DataFrame | None:
    """The classical baselines on the first finished point's split (:func:`mrl.run_outputs.baseline_scores`), cached as
    that point's ``baselines.csv``; ``None`` when they cannot be computed."""
    if done.empty:
        return None
    point_dir = sweep_dir / done["point"].iloc[0]
    path = file_path(point_dir, "baselines")
    if not path.exists():
        try:
            write_table(baseline_scores(load_run(point_dir)), path)
        except Exception as exc:  # noqa: BLE001 - the page is still useful without them
            log.warning("baselines for %s not computed: %s", point_dir, exc)
            return None
    return pd.read_csv(path)


def _truth_by_size(sweep_dir: Path, done: pd.DataFrame) -> pd.DataFrame | None:
    """``truth_scores.csv`` of every finished point in one table (``embedding_dim, representation, ...``)."""
    frames = []
    for row in done.itertuples():
        path = file_path(sweep_dir / row.point, "truth_scores")
        if path.exists():
            frames.append(pd.read_csv(path).assign(point=row.point, embedding_dim=row.embedding_dim))
    return pd.concat(frames, ignore_index=True) if frames else None


def _learned_vs_svd(truth: pd.DataFrame) -> pd.DataFrame:
    """Per embedding size: neighbour agreement, cluster purity and median probe R² of the learned vectors and of
    the co-usage SVD baseline (means over runs)."""
    truth = truth.assign(rep=np.where(truth["representation"].str.startswith("learned"), "learned", "svd"))
    cols = [c for c in ("neighbour_agreement", "neighbour_chance", "cluster_purity", "median_probe_r2")
            if c in truth.columns]
    grouped = truth.groupby(["embedding_dim", "rep"])[cols]
    wide = grouped.mean().join(grouped.std().add_suffix("_sd")).join(grouped.size().rename("n_runs")).unstack("rep")
    wide.columns = [f"{c}_{r}" for c, r in wide.columns]
    return wide.reset_index()


def _learned_vs_svd_counts(lv: pd.DataFrame, column: str) -> dict[str, int]:
    """How many sizes the learned vectors score better than / worse than / within the spread of the SVD baseline
    on ``column`` (higher is better), each decided by :func:`mrl.wording.compare`."""
    counts = {BETTER: 0, WORSE: 0, TIE: 0}
    for r in lv.itertuples():
        d = r._asdict()
        learned, svd = (_rep_score(d, column, rep) for rep in ("learned", "svd"))
        counts[compare(learned, svd, "learned", "SVD", lower_is_better=False, digits=2).verdict] += 1
    return counts


def _rep_score(row: dict, column: str, rep: str) -> Score:
    """One size's score of a representation (``learned`` or ``svd``) from a :func:`_learned_vs_svd` row."""
    n = int(row.get(f"n_runs_{rep}", 1) or 1)
    sd = row.get(f"{column}_sd_{rep}", np.nan)
    value = float(row[f"{column}_{rep}"])
    return Score(value, float(sd), n) if n > 1 and np.isfinite(sd) else Score(value)


def _shape_sentences(stats: pd.DataFrame, baselines: pd.DataFrame | None, unit: str) -> list[str]:
    """The sweep's findings about error by size, as sentences with numbers from the files."""
    out = []
    if "eval_mae_log10" not in stats or stats["eval_mae_log10"].isna().all():
        return out
    st = stats.dropna(subset=["eval_mae_log10"]).sort_values("embedding_dim")
    best = st.loc[st["eval_mae_log10"].idxmin()]
    smallest = st.iloc[0]
    within = st["eval_mae_log10"] <= best["eval_mae_log10"] + PLATEAU_LOG10
    sizes = [int(d) for d in st.loc[within, "embedding_dim"]]
    if len(sizes) == 1:
        plateau = f"no other size comes within {PLATEAU_LOG10} of it"
    elif within.iloc[within.to_numpy().argmax():].all():  # every size from the first one within on
        plateau = f"sizes {sizes[0]} to {sizes[-1]} are all within {PLATEAU_LOG10} of it (the plateau)"
    else:
        plateau = f"sizes {', '.join(map(str, sizes))} are within {PLATEAU_LOG10} of it"
    out.append(f"Eval error (MAE of log10 {unit or 'of the property'}) is {_num(smallest['eval_mae_log10'])} at size "
               f"{int(smallest['embedding_dim'])} and lowest at size {int(best['embedding_dim'])} "
               f"({_num(best['eval_mae_log10'])}); {plateau}.")
    if "train_mae_log10" in st and st["train_mae_log10"].iloc[-1] < 0.7 * st["eval_mae_log10"].iloc[-1]:
        out.append(f"Train error is far below eval error at the large sizes ({_num(st['train_mae_log10'].iloc[-1])} "
                   f"against {_num(st['eval_mae_log10'].iloc[-1])} at size {int(st['embedding_dim'].iloc[-1])}): "
                   f"the model memorises training formulas.")
    if baselines is not None:
        out += _baseline_sentences(st, baselines, unit)
    return out


def _size_score(row: Any, column: str) -> Score:
    """One embedding size's ``column`` as a :class:`Score`: the mean and SD over its runs, or a single run."""
    d = row._asdict() if hasattr(row, "_asdict") else dict(row)
    n = int(d.get("n_runs", 1) or 1)
    sd = d.get(f"{column}_sd", np.nan)
    if n > 1 and np.isfinite(sd):
        return Score(float(d[column]), float(sd), n)
    return Score(float(d[column]))


def _baseline_sentences(stats: pd.DataFrame, baselines: pd.DataFrame, unit: str) -> list[str]:
    """The model against the baselines on the same eval formulas, worded by :func:`mrl.wording.compare`: per scale (log10
    and the property's unit) the best size against the strongest baseline, how many sizes are below / above / within
    the spread of it, and where the best size stands against the other baselines."""
    out = []
    ev = baselines[baselines["split"] == "eval"].set_index("model")
    for metric, u in (("mae_log10", f"log10 {unit}" if unit else "log10"), ("mae", unit)):
        col = f"eval_{metric}"
        if metric not in ev or col not in stats:
            continue
        base = {m: Score(float(v)) for m, v in ev[metric].dropna().items()}
        sizes = stats.dropna(subset=[col]).sort_values("embedding_dim")
        if not base or not len(sizes):
            continue
        strongest = best_of(base)
        best = sizes.loc[sizes[col].idxmin()]
        best_name = f"mrl at size {int(best['embedding_dim'])} (its best size)"
        head = compare(_size_score(best, col), base[strongest], best_name, strongest, what="eval MAE", unit=u)
        verdicts = [compare(_size_score(r, col), base[strongest], "mrl", strongest).relation
                    for r in sizes.itertuples()]
        counts = ", ".join(f"{relation} it at {verdicts.count(relation)} of {len(verdicts)} sizes"
                           for relation in ("below", "within the spread of", "above") if verdicts.count(relation))
        others = [f"{relation} {m} ({format_number(s.value)})" for m, s in base.items() if m != strongest
                  for relation in [compare(_size_score(best, col), s, "mrl", m).relation]]
        text = f"{head.sentence} Against {strongest}, mrl is {counts}."
        if others:
            text += f" Its best size is {' and '.join(others)}."
        out.append(text)
    return out


def _f2(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.2f}"


def _knowledge_sentences(lv: pd.DataFrame) -> list[str]:
    """What the vectors know against the no-learning SVD baseline, as sentences."""
    out = []
    n = len(lv)

    def who(counts: dict[str, int]) -> str:
        won, lost, tied = counts[BETTER], counts[WORSE], counts[TIE]
        parts = [f"{text} at {k} of {n} sizes" for k, text in (
            (won, "the learned vectors score higher"), (lost, "the no-learning baseline scores higher"),
            (tied, "the two are within the spread of each other")) if k]
        return "; ".join(parts).replace(f" at {n} of {n} sizes", " at every size")

    if {"neighbour_agreement_learned", "neighbour_agreement_svd"} <= set(lv.columns):
        chance = lv["neighbour_chance_learned"].mean() if "neighbour_chance_learned" in lv else np.nan
        out.append(f"**Hidden families: {who(_learned_vs_svd_counts(lv, 'neighbour_agreement'))}.** "
                   f"Share of each material's 10 nearest neighbours in its hidden family: learned "
                   f"{_f2(lv['neighbour_agreement_learned'].min())}-{_f2(lv['neighbour_agreement_learned'].max())}, "
                   f"co-usage SVD {_f2(lv['neighbour_agreement_svd'].min())}-{_f2(lv['neighbour_agreement_svd'].max())}"
                   + (f", chance {_f2(chance)}" if np.isfinite(chance) else "") + ". Families fill the same slots of "
                   "formula templates, so usage alone reveals them.")
    if {"median_probe_r2_learned", "median_probe_r2_svd"} <= set(lv.columns):
        weak = lv["median_probe_r2_learned"].max() < 0.1
        verdict = who(_learned_vs_svd_counts(lv, "median_probe_r2")) + (
            ", but neither reads them well here (median R² below 0.1)" if weak else "")
        out.append(f"**Hidden effects: {verdict}.** A cross-validated linear probe reads the hidden material "
                   f"properties that set the viscosity (median R² over them) from the learned vectors at "
                   f"{_f2(lv['median_probe_r2_learned'].min())} to {_f2(lv['median_probe_r2_learned'].max())}, from "
                   f"the SVD at {_f2(lv['median_probe_r2_svd'].min())} to {_f2(lv['median_probe_r2_svd'].max())}."
                   + (" The seed-scale lab (page *Seed scale*) has more data per material." if weak else ""))
    return out


def _compact_table(stats: pd.DataFrame, unit: str, baselines: pd.DataFrame | None, metric: str = "mae_log10",
                   r2: str | None = "r2_log10") -> str:
    """Size x {train, eval, full} of ``metric`` (mean ± SD over runs) and eval ``r2``, the baselines last."""
    head = ["embedding size", *SPLITS] + (["eval R²"] if r2 else [])
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["--:"] * len(head)) + " |"]
    for r in stats.sort_values("embedding_dim").itertuples():
        d = r._asdict()
        cells = [str(int(r.embedding_dim))]
        cells += [_pm(d.get(f"{s}_{metric}", np.nan), d.get(f"{s}_{metric}_sd", np.nan), r.n_runs) for s in SPLITS]
        if r2:
            cells.append(_pm(d.get(f"eval_{r2}", np.nan), d.get(f"eval_{r2}_sd", np.nan), r.n_runs))
        lines.append("| " + " | ".join(cells) + " |")
    if baselines is not None:
        for model, grp in baselines.groupby("model", sort=False):
            g = grp.set_index("split")
            cells = [f"*{model}*"] + [_num(g[metric].get(s, np.nan)) if metric in g else "–" for s in SPLITS]
            if r2:
                cells.append(_num(g[r2].get("eval", np.nan)) if r2 in g else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_findings(sweep_dir: str | Path) -> dict[str, Any]:
    """The sweep's key results, read from its files: ``unit``, ``stats`` (per size), ``baselines``, ``lv`` (learned
    vs SVD per size), ``shape`` and ``knowledge`` (sentences), ``single_run`` (one run per size)."""
    sweep_dir = Path(sweep_dir)
    summary = load_summary(sweep_dir)
    done = summary[summary["status"] == "done"]
    unit, metrics = _unit(sweep_dir, done)
    cols = [f"{s}_{m}" for s in SPLITS for m in ("mae_log10", "mae", "r2_log10", "r2")]
    stats = _by_size(done, cols) if len(done) else pd.DataFrame()
    baselines = _baselines(sweep_dir, done)
    truth = _truth_by_size(sweep_dir, done)
    lv = _learned_vs_svd(truth) if truth is not None else None
    return {"summary": summary, "done": done, "unit": unit, "metrics": metrics, "stats": stats,
            "baselines": baselines, "truth": truth, "lv": lv,
            "single_run": bool(len(stats) and stats["n_runs"].max() <= 1),
            "shape": _shape_sentences(stats, baselines, unit) if len(stats) else [],
            "knowledge": _knowledge_sentences(lv) if lv is not None and len(lv) else []}


def _results_page(sweep_dir: Path, spec: dict, summary: pd.DataFrame, out: Path, data_notebook: str | None,
                  found: dict | None = None) -> str:
    """The sweep's results page: findings, error by embedding size against baselines, the compact table, what the
    vectors know, map gallery, downloads, unfinished points."""
    found = found or sweep_findings(sweep_dir)
    name = sweep_dir.name
    done, stats, unit, baselines = found["done"], found["stats"], found["unit"], found["baselines"]
    target = found["metrics"].get("target", "the property")
    grid = ", ".join(f"`{k}` in {v}" for k, v in (spec.get("grid") or {}).items())
    runs_note = ("Each size is a **single run** (one seed): differences of a few hundredths in log10 MAE between "
                 "neighbouring sizes are within run-to-run noise." if found["single_run"] else
                 "Points are the mean over the runs of each size (the `seed` key of the grid), error bars ± one SD.")
    lines = [f"# Results: {name}", "",
             f"Error of the predicted {target} by embedding size (the length of each material vector), the same "
             f"model otherwise ({grid}). *eval* formulas were held out from training; {len(done)} of "
             f"{len(summary)} points finished. {runs_note}", ""]
    if found["shape"] or found["knowledge"]:
        lines += ["## Findings", ""] + [f"- {t}" for t in found["shape"] + found["knowledge"]] + [""]
    for metric, what, axis in (
            ("mae_log10", f"Mean absolute error of log10 {target} by embedding size (0.3: predictions typically "
                          f"within a factor of 2; lower is better). Dashed lines: baselines on the same split.",
             f"log10 {unit}" if unit else "log10"),
            ("mae", f"Mean absolute error of {target} in {unit or 'its unit'} by embedding size (log axis): "
                    f"dominated by the few thickest formulas.", unit)):
        if len(done) and f"eval_{metric}" in done and done[f"eval_{metric}"].notna().any():
            save_figure(error_by_dim(done, metric, baselines=baselines, unit=axis, logy=metric == "mae"),
                        out / f"error_by_dim_{metric}.png")
            lines += _figure_block(f"error_by_dim_{metric}.png", f"{name}-error-{metric}", what)
    if len(stats):
        lines += ["## Error by size", "",
                  f"MAE per split, in log10 of {target} and in {unit or 'its unit'}" +
                  (" (mean ± SD over runs)" if not found["single_run"] else "") + "; the baselines (italic) are fitted "
                  "on the same training formulas: the mean of the training targets, a ridge regression and LightGBM "
                  "on the content fractions (both on log10 of the target). *full* = train + eval.", "",
                  f"MAE of log10 {target} (0.3 = a factor of 2) and eval R² on the log10 scale:", "",
                  _compact_table(stats, unit, baselines), "",
                  f"MAE in {unit or 'the property unit'} and eval R² on that scale:", "",
                  _compact_table(stats, unit, baselines, "mae", "r2"), ""]
        if "eval_r2" in stats:
            neg = stats[stats["eval_r2"] < 0]
            if len(neg):
                lines += [f"Eval R² in {unit or 'the unit'} is negative at {len(neg)} of {len(stats)} sizes ("
                          + ", ".join(str(int(d)) for d in neg["embedding_dim"]) + f"): in {unit or 'linear units'} a "
                          "handful of very thick eval formulas, under-predicted by a factor of a few, weigh more "
                          "than all the rest, so R² on the linear scale can fall below that of predicting the mean. "
                          "On the log10 scale, which the model is trained on, eval R² is "
                          f"{_num(stats['eval_r2_log10'].min())} to {_num(stats['eval_r2_log10'].max())}.", ""]
    lv = found["lv"]
    if lv is not None and len(lv):
        lines += ["## What the vectors know", "",
                  "The synthetic lab's hidden truth scores the vectors; the baseline is a *no-learning* "
                  "representation of the same size, the SVD of the material x formula content matrix (co-usage). "
                  "*Family neighbours*: share of each material's 10 nearest neighbours (cosine) in its hidden family; "
                  "*cluster purity*: k-means clusters against families; *probe R²*: median over the hidden "
                  "properties of a cross-validated ridge probe reading each property from the vector.", ""]
        lines += [f"- {t}" for t in found["knowledge"]] + [""]
        head = ["embedding size", "family neighbours, learned", "SVD", "cluster purity, learned", "SVD",
                "probe R², learned", "SVD"]
        rows = ["| " + " | ".join(head) + " |", "| " + " | ".join(["--:"] * len(head)) + " |"]
        for r in lv.sort_values("embedding_dim").itertuples():
            d = r._asdict()
            rows.append("| " + " | ".join([str(int(r.embedding_dim))] + [
                _num(d.get(f"{c}_{rep}", np.nan)) for c in ("neighbour_agreement", "cluster_purity", "median_probe_r2")
                for rep in ("learned", "svd")]) + " |")
        lines += rows + [""]
        write_table(found["truth"].round(6), out / "truth_scores_by_size.csv")
    write_table(summary, out / "summary.csv")
    downloads = ["summary.csv"] + (["baselines.csv"] if baselines is not None else []) + (
        ["truth_scores_by_size.csv"] if lv is not None and len(lv) else [])
    if baselines is not None:
        write_table(baselines, out / "baselines.csv")
    lines += ["## Downloads", "", "The numbers of this page as CSV: " + ", ".join(
        f"{{download}}`{f} <{f}>`" for f in downloads) + " (`summary.csv` has every metric of every point, "
        "`*_log10` columns on log10 of the property, `wall_s` the training time in seconds, MAPE in %).", ""]
    gallery = [(row.point, _gallery_map(sweep_dir / row.point)) for row in done.itertuples()]
    gallery = [(point, png) for point, png in gallery if png is not None]
    if gallery:
        lines += ["## Maps at a glance", "",
                  "One material map per embedding size (dose-weighted vectors, coloured by family; the right panel "
                  "zooms on the crowded centre). Each links to its size's page.", ""]
        lines += [f"::::{{grid}} 1 1 {GALLERY_COLUMNS} {GALLERY_COLUMNS}", ":gutter: 2", ""]
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
    lines += ["## Reproduce", "", "```bash", f"mrl sweep params/{name}.yaml -j 2 && mrl report runs/{name}", "```",
              ""]
    if data_notebook:
        lines += ["The data set is described in [the data notebook](data/" + data_notebook + ".ipynb).", ""]
    return "\n".join(lines)


def _key_results(book_dir: Path, sweeps: dict[str, dict]) -> list[str]:
    """The first page's "Key results": per sweep its findings with links, then the quoted result paragraph of each
    hand-written page (between :data:`KEY_RESULT_START` and :data:`KEY_RESULT_END`) with a link to it."""
    lines = ["## Key results", ""]
    for sweep, found in sweeps.items():
        if found.get("kind") == "run":
            lines += [f"**Run `{sweep}`** ([its pages](generated/{sweep}/index.md)):", ""]
            lines += [f"- {t}" for t in found["key"]] + [""]
            continue
        stats = found["stats"]
        if not len(stats):
            continue
        lines += [f"**Synthetic lab, sweep `{sweep}`** ([results page](generated/{sweep}/index.md)):", ""]
        lines += [f"- {t}" for t in found["shape"]]
        lines += [f"- {t}" for t in found["knowledge"]]
        if found["single_run"]:
            lines += ["- Each embedding size is a single training run."]
        lines += [""]
    path = book_dir / "_toc.yml"
    standalone = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    for part in standalone.get("parts", []):
        for chapter in part.get("chapters", []):
            page = book_dir / f"{chapter['file']}.md"
            if not page.exists():
                continue
            text = page.read_text()
            title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), chapter["file"])
            quote = ""
            if KEY_RESULT_START in text and KEY_RESULT_END in text:
                quote = text.split(KEY_RESULT_START, 1)[1].split(KEY_RESULT_END, 1)[0].strip()
                quote = re.sub(r"\]\((?!https?:|#|/)([^)]+)\)", r"](\1)", quote)
            lines += [f"**{part.get('caption', '')}: [{title}]({chapter['file']}.md).** " + (quote or ""), ""]
    return lines


def _intro_page(book_dir: Path, sweeps: dict[str, dict]) -> str:
    """The book's first page: ``intro.md`` with the "Key results" after its first paragraph; its relative links
    are rewritten for the page's place in ``generated/``."""
    intro = _book_file(book_dir, "intro.md").read_text()
    blocks = intro.strip().split("\n\n")
    head, rest = blocks[:2], blocks[2:]
    text = "\n\n".join(head) + "\n\n" + "\n".join(_key_results(book_dir, sweeps)) + "\n" + "\n\n".join(rest) + "\n"
    # links and images relative to book/ -> relative to book/generated/
    return re.sub(r"(\]\()(?!https?:|#|/|mailto:)([^)\s]+)", r"\1../\2", text)


def _csv_table(path: Path | pd.DataFrame, columns: dict[str, str], n: int | None = None) -> str:
    """A table's (or CSV file's) ``columns`` (column -> header) as a pipe table with readable numbers."""
    frame = path if isinstance(path, pd.DataFrame) else pd.read_csv(path)
    keep = {c: h for c, h in columns.items() if c in frame.columns}
    frame = frame[list(keep)]
    if n is not None:
        frame = frame.head(n)
    frame = frame.apply(lambda col: col.map(lambda v: _num(v) if isinstance(v, (float, np.floating)) else v))
    frame.columns = list(keep.values())
    return markdown_table(frame)


def _map_page(text: str, title: str, back: str, back_title: str) -> str:
    """An interactive map's HTML page for the site: a ``<title>`` and a link back to the chapter that shows it."""
    title_tag = f"<title>{html.escape(title)}</title>"
    if re.search(r"<title>[^<]+</title>", text) is None:
        text = re.sub(r"<title>\s*</title>", "", text)
        text = text.replace("<head>", f"<head><meta charset=\"utf-8\" />{title_tag}", 1)
    link = (f'<p style="font-family:sans-serif;margin:0.6em 1em"><a href="{back}">&larr; Back to '
            f'{html.escape(back_title)}</a></p>')
    return re.sub(r"<body[^>]*>", lambda m: m.group(0) + link, text, count=1)


def _map_section(point_dir: Path, where: str, maps_out: Path, figure: Any, back: str = "",
                 back_title: str = "its chapter") -> tuple[list[str], bool]:
    """The "Material maps" section of a page from the maps in ``point_dir`` (``map_<method>.png`` and ``.html``):
    ``figure(src, caption)`` copies a PNG and returns its figure block; interactive maps are copied to ``maps_out``
    (served at ``maps/<where>/`` of the site), each with a title and a link back to the page ``back`` (its path in
    the book without suffix, e.g. ``generated/quick/dim_0008``). Returns the lines and whether plotly.js is
    needed."""
    maps = _maps(point_dir)
    lines: list[str] = []
    if maps:
        lines += ["## Material maps", "",
                  "Each dot is a raw material, coloured by family, its size growing with usage. The maps draw "
                  "**dose-weighted vectors**: each material's vector times its median content, i.e. how far it "
                  "typically moves a mixture vector, so a material near the origin (+) has little influence at the "
                  "doses it is used in. Raw vectors and PCA (uncentred) keep the origin; UMAP and t-SNE keep "
                  "neighbourhoods only. The right panel zooms on the central 90 % of the materials; only names that "
                  "fit without overlapping are written, farthest from the origin first.", ""]
    plotly_needed = False
    for png in maps:
        method = png.stem[4:]
        title = METHOD_TITLES.get(method, method)
        lines += figure(png, f"{title} map of the dose-weighted vectors ({AXIS_LABELS.get(method, 'axis')} axes).")
        html = file_path(point_dir, "map_html", method)
        if html.exists() and html.stat().st_size < MAX_INLINE_HTML:
            maps_out.mkdir(parents=True, exist_ok=True)
            text = html.read_text().replace('src="plotly.min.js"', 'src="../../plotly.min.js"')
            if back:
                up = "../" * (len(where.split("/")) + 1)  # maps/<where>/ -> the site's root
                text = _map_page(text, f"Interactive {title} map, {back_title}", f"{up}{back}.html", back_title)
            (maps_out / html.name).write_text(text)
            plotly_needed = True
            src = f"../../maps/{where}/{html.name}"
            lines += [f"Interactive {title} map: hover a dot for its name, family and usage, drag to zoom, "
                      "double-click to reset.", "",
                      f'<iframe src="{src}" width="100%" height="680" style="border:0" loading="lazy" '
                      f'title="interactive map {where} {method}"></iframe>', "",
                      f'<p><a href="{src}">Open the interactive {title} map on its own page</a></p>', ""]
        elif html.exists():
            log.warning("%s inlines plotly.js (an older 04_visualize); re-run the notebook to show it", html)
    if maps and file_path(point_dir, "map_unit_png", maps[0].stem[4:]).exists():
        unit_png = file_path(point_dir, "map_unit_png", maps[0].stem[4:])
        lines += ["### The same map per unit of content", "",
                  "The model's table holds vectors per unit of content (each scaled by 1 / the material's median "
                  "content). Drawn as they are, a material dosed at 0.1 % sits ~1,000x farther out than its usual "
                  "contribution, so data-poor trace materials look influential; compare with the dose-weighted map "
                  "above.", ""]
        lines += figure(unit_png, f"{METHOD_TITLES.get(maps[0].stem[4:], '')} map of the per-unit-content vectors.")
    return lines, plotly_needed


def _notebook_title(path: Path) -> str:
    """The title (first ``# `` heading) of a notebook, else its file name."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.partition("\n")[0][2:].strip()
    return path.stem


def _point_title(name: str, metrics: dict) -> str:
    """A point's chapter title in words: "Embedding size 8" (", seed 1" when the point name carries a seed)."""
    title = f"Embedding size {metrics.get('embedding_dim', '?')}"
    seed = re.search(r"seed[_-]?(\d+)", name)
    return f"{title}, seed {int(seed.group(1))}" if seed else title


def _point_page(point_dir: Path, out: Path, maps_out: Path, sweep: str) -> str:
    """Markdown page of one finished point; copies its figures to ``out/<point>/`` and its interactive maps to
    ``maps_out`` (served at ``maps/<sweep>/<point>/`` of the site, next to one shared ``maps/plotly.min.js``)."""
    name = point_dir.name
    metrics = read_json(point_dir / METRICS)
    unit = property_unit(metrics)
    target = metrics.get("target", "property")
    ev, tr = metrics.get("eval", {}), metrics.get("train", {})
    logs = (pd.read_csv(file_path(point_dir, "log10_metrics"))
            if file_path(point_dir, "log10_metrics").exists() else None)
    lead = f"eval MAE **{_num(ev.get('mae'))} {unit}** (train {_num(tr.get('mae'))} {unit})"
    if logs is not None and "mae_log10" in logs and (logs["split"] == "eval").any():
        by = logs.set_index("split")["mae_log10"]
        lead = (f"eval MAE of log10 {target} **{_num(by.get('eval'))}** (train {_num(by.get('train'))}), " + lead)
    title = _point_title(name, metrics)
    lines = [f"# {title}", "",
             f"A single training run: {lead}; {_fmt(metrics.get('steps'))} steps in {_num(metrics.get('wall_s'))} s on "
             f"{_fmt(metrics.get('n_materials'))} materials and {_fmt(metrics.get('n_formulas'))} formulas.", ""]
    if file_path(point_dir, "metrics_table").exists():
        frame = pd.read_csv(file_path(point_dir, "metrics_table"))
        if logs is not None:
            frame = frame.merge(logs[[c for c in ("split", "mae_log10", "r2_log10") if c in logs]], on="split",
                                how="left")
        u = f" ({unit})" if unit else ""
        lines += [_csv_table(frame, {"split": "split", "n": "formulas", "mae_log10": "MAE (log10)",
                                     "r2_log10": "R² (log10)", "mae": f"MAE{u}", "rmse": f"RMSE{u}", "r2": f"R²{u}",
                                     "mape": "MAPE (%)"}), ""]

    def figure(src: Path, caption: str) -> list[str]:
        _copy_figure(src, out / name / src.name)
        return _figure_block(f"{name}/{src.name}", f"{sweep}-{name}-{src.name}", caption)

    if file_path(point_dir, "parity").exists():
        lines += ["## Predicted against measured", "",
                  "Each dot is one formula; on the dashed line the prediction is exact (log axes).", ""]
        lines += figure(file_path(point_dir, "parity"), f"Predicted against measured {target}"
                        + (f" ({unit})" if unit else "") + ", train and eval formulas.")
    if file_path(point_dir, "error_by_usage_png").exists():
        lines += ["## Error against the rarest ingredient", "",
                  "Formulas grouped by how many training formulas use their rarest ingredient: formulas holding a "
                  "rarely used material are predicted worse.", ""]
        lines += figure(file_path(point_dir, "error_by_usage_png"),
                        "Error by usage of the formula's rarest ingredient, per split.")
    map_lines, plotly_needed = _map_section(point_dir, f"{sweep}/{name}", maps_out, figure,
                                            back=f"generated/{sweep}/{name}", back_title=f"{title} (sweep {sweep})")
    lines += map_lines
    if file_path(point_dir, "evolution").exists():
        lines += ["## Training evolution", "",
                  "The map at several training steps, one uncentred projection for all panels: the vectors start "
                  "at the origin (+) and spread as the model learns which materials matter.", ""]
        lines += figure(file_path(point_dir, "evolution"), "Dose-weighted material vectors during training.")
        if file_path(point_dir, "evolution_gif").exists():
            lines += figure(file_path(point_dir, "evolution_gif"), "The same as an animation.")
        evolution = file_path(point_dir, "evolution_html")
        if evolution.exists() and evolution.stat().st_size < MAX_EVOLUTION_HTML:
            maps_out.mkdir(parents=True, exist_ok=True)
            where = f"{sweep}/{name}"
            text = evolution.read_text().replace('src="plotly.min.js"', 'src="../../plotly.min.js"')
            up = "../" * (len(where.split("/")) + 1)
            (maps_out / evolution.name).write_text(_map_page(text, f"Materials through training, {title}",
                                                             f"{up}generated/{sweep}/{name}.html",
                                                             f"{title} (sweep {sweep})"))
            plotly_needed = True
            src = f"../../maps/{where}/{evolution.name}"
            lines += ["Interactive: drag the step slider or press play; hover a dot for its name.", "",
                      f'<iframe src="{src}" width="100%" height="760" style="border:0" loading="lazy" '
                      f'title="training evolution {where}"></iframe>', "",
                      f'<p><a href="{src}">Open the evolution on its own page</a></p>', ""]
        elif evolution.exists():
            log.warning("%s is over %d bytes: linked from the run folder only", evolution, MAX_EVOLUTION_HTML)
    pairs = file_path(point_dir, "top_pairs")
    if pairs.exists():
        lines += ["## Most similar pairs", "",
                  "Materials whose vectors point the same way (cosine distance: 0 = same direction). A single "
                  "training run: another seed may pair materials differently, so treat a pair as a lead to check at "
                  "the bench (how far ensemble members agree is measured on the page *How far a prediction can be "
                  "trusted*).", "",
                  _csv_table(pairs, {"rank": "rank", "name_a": "material", "family_a": "family", "name_b": "partner",
                                     "family_b": "its family", "distance": "cosine distance"}, 15), ""]
    clusters = file_path(point_dir, "clusters")
    if clusters.exists():
        lines += ["## Clusters", "",
                  "k-means groups of the vectors' directions (cosine; clustering positions would sort materials by "
                  "vector length more than by family), largest first, with their main families and most used "
                  "members.", "",
                  _csv_table(clusters, {"cluster": "cluster", "size": "materials", "families": "main families",
                                        "examples": "most used members", "mean_influence": "mean influence"}), ""]
    origin = file_path(point_dir, "origin_check")
    if origin.exists():
        lines += ["## Influence and the origin", "", str(read_json(origin).get("verdict", "")), ""]
    truth = file_path(point_dir, "truth_scores")
    if truth.exists():
        lines += ["## Against the hidden truth", "",
                  "How well the vectors recover the synthetic lab's hidden families and properties, against a "
                  "no-learning baseline of the same size (SVD of the content matrix: co-usage).", "",
                  _csv_table(truth, {"representation": "vectors", "neighbour_agreement": "family neighbours",
                                     "neighbour_chance": "chance", "cluster_purity": "cluster purity",
                                     "cluster_ari": "cluster ARI", "median_probe_r2": "probe R² (median)"}), ""]
    notebooks = sorted(point_dir.glob("0*.ipynb"))
    lines += ["## Notebooks", "", "The executed notebooks of this point, with all their outputs:", ""]
    lines += [f"- [{_notebook_title(nb)}]({name}/{nb.name})" for nb in notebooks]
    lines += ["", "## Reproduce", "", "```bash", f"mrl sweep params/{sweep}.yaml && mrl report runs/{sweep}", "```",
              "", f"The run folder `runs/{sweep}/{name}/` holds the parameters, the learned vectors, the predictions "
              "and the notebooks above.", ""]
    for nb in notebooks:
        _copy_notebook(nb, out / name / nb.name, f": {title[0].lower()}{title[1:]}")
    if plotly_needed:
        (maps_out / ".needs_plotly").write_text("")
    return "\n".join(lines) + "\n"


def _sync(src: Path, dst: Path) -> None:
    """Make ``dst`` hold exactly ``src``'s files, leaving identical files untouched (Sphinx then skips them)."""
    new = {p.relative_to(src) for p in src.rglob("*") if p.is_file()}
    old = {p.relative_to(dst) for p in dst.rglob("*") if p.is_file()} if dst.exists() else set()
    for rel in sorted(new):
        copy_if_changed(src / rel, dst / rel)
    for rel in old - new:
        (dst / rel).unlink()


def _toc(book_dir: Path) -> str:
    """Table of contents: the intro, one part per generated sweep (results, data, a chapter per point with its
    notebooks as sections), then the hand-written parts of the stand-alone ``<book_dir>/_toc.yml`` (real data,
    studies), keeping the chapters whose page exists."""
    parts = []
    for pages in sorted((book_dir / "generated").glob("*/pages.json")):
        rel = pages.parent.relative_to(book_dir).as_posix()
        order = read_json(pages)
        chapters = [{"file": f"{rel}/index"}]
        if order.get("kind") == "run":
            chapters += [{"file": f"{rel}/{page}"} for page in order["pages"]]
            parts.append({"caption": f"Run {pages.parent.name}", "chapters": chapters})
            continue
        if order.get("data"):
            chapters.append({"file": f"{rel}/data/{order['data']}"})
        chapters += [{"file": f"{rel}/{point}"} for point in order["points"]]  # notebooks: linked from the page
        parts.append({"caption": f"Sweep {pages.parent.name}", "chapters": chapters})
    path = book_dir / "_toc.yml"
    standalone = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    for part in standalone.get("parts", []):
        chapters = [c for c in part.get("chapters", []) if (book_dir / f"{c['file']}.md").exists()]
        if chapters:
            parts.append({**part, "chapters": chapters})
    root = "generated/intro" if (book_dir / "generated" / "intro.md").exists() else "intro"
    toc = {"format": "jb-book", "root": root, **({"parts": parts} if parts else {})}
    return "# generated by mrl.book.generate_pages\n" + yaml.safe_dump(toc, sort_keys=False)


def _findings_json(found: dict) -> str:
    """The parts of :func:`sweep_findings` the first page needs, as JSON (so every sweep's findings can be read
    back without recomputing them)."""
    keep = {"unit": found["unit"], "single_run": found["single_run"], "shape": found["shape"],
            "knowledge": found["knowledge"], "n_sizes": int(len(found["stats"]))}
    return json.dumps(keep, indent=1) + "\n"


def _all_findings(book_dir: Path) -> dict[str, dict]:
    """Every generated sweep's ``findings.json``, by sweep name."""
    out = {}
    for path in sorted((book_dir / "generated").glob("*/findings.json")):
        found = read_json(path)
        found["stats"] = range(found.get("n_sizes", 0))
        out[path.parent.name] = found
    return out


def generate_pages(sweep_dir: str | Path, book_dir: str | Path = "book") -> Path:
    """Write a sweep's book pages from its files into ``<book_dir>/generated/<sweep>/``; return the toc path.

    Pages: ``index.md`` (results: error by embedding size, map gallery, summary table), ``data/01_data.ipynb``,
    and for every finished point ``<point>.md`` (maps, evolution, pairs, clusters, influence, truth) with its
    executed notebooks in ``<point>/``. Interactive maps go to ``generated/_extra/maps/<sweep>/`` (copied to the
    site root by ``html_extra_path`` in ``_config.yml``). The table of contents is ``generated/_toc.yml`` and
    lists every sweep under ``generated/``. Unchanged files keep their time stamps, so rebuilds are incremental.
    """
    sweep_dir, book_dir = Path(sweep_dir), Path(book_dir)
    summary = load_summary(sweep_dir)
    spec_path = sweep_dir / "sweep.yaml"
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.exists() else {}
    sweep = sweep_dir.name
    with _staged_pages(book_dir, sweep) as (out, maps_out):
        data_notebook = None
        data_dir = sweep_dir / DATA_POINT
        executed = sorted(data_dir.glob("0*.ipynb")) if (data_dir / DONE).exists() else []
        if executed:
            data_notebook = executed[0].stem
            _copy_notebook(executed[0], out / "data" / executed[0].name, f": sweep {sweep}")
        points = {}
        for row in summary[summary["status"] == "done"].itertuples():
            point_dir = sweep_dir / row.point
            (out / f"{row.point}.md").write_text(_point_page(point_dir, out, maps_out / row.point, sweep))
            points[row.point] = [nb.stem for nb in sorted(point_dir.glob("0*.ipynb"))]
        found = sweep_findings(sweep_dir)
        (out / "index.md").write_text(_results_page(sweep_dir, spec, summary, out, data_notebook, found))
        (out / "pages.json").write_text(json.dumps({"data": data_notebook, "points": points}, indent=1) + "\n")
        (out / "findings.json").write_text(_findings_json(found))
        needs_plotly = any(maps_out.rglob(".needs_plotly"))
        for flag in list(maps_out.rglob(".needs_plotly")):
            flag.unlink()
    return _finish_generated(book_dir, needs_plotly)


#: The packaged book sources: ``_config.yml`` and the first page of a report built outside the checkout.
TEMPLATE = Path(__file__).with_name("book_template")
#: Pages of a single run's report, in order (file stem -> title).
RUN_PAGES = {"data": "Data", "error": "Error", "intervals": "Intervals and their coverage", "maps": "Material maps",
             "neighbours": "Each material's neighbours", "predictions": "Predictions"}
#: Rows of the predictions table shown on the page (all rows are in its CSV download).
PREDICTION_ROWS = 200
#: Neighbours listed per material on the neighbours page (its CSV download lists :data:`NEIGHBOURS_CSV_K`).
NEIGHBOURS_K, NEIGHBOURS_CSV_K = 5, 10
#: Most used materials whose neighbours the neighbours page lists first.
NEIGHBOURS_TOP = 20
#: Projections drawn for a single run's report by default (UMAP costs tens of seconds of compilation per process).
RUN_MAP_METHODS = ("pca", "tsne")


def _book_file(book_dir: Path, name: str) -> Path:
    """``book_dir/name`` when the book folder has its own copy, else the packaged :data:`TEMPLATE` one."""
    own = book_dir / name
    return own if own.exists() else TEMPLATE / name


def is_sweep_folder(path: str | Path) -> bool:
    """True for a sweep folder (``summary.csv`` written by ``mrl sweep``), False for a run folder."""
    return (Path(path) / "summary.csv").exists()


def default_book_dir(path: str | Path, cwd: str | Path | None = None) -> Path:
    """Where ``mrl report PATH`` writes without ``--out``: the checkout's ``book/`` when the working folder holds
    the project's book (``book/_toc.yml``), else ``PATH/report/``."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    return cwd / "book" if (cwd / "book" / "_toc.yml").exists() else Path(path) / "report"


def _run_error_table(metrics: dict, predictions: pd.DataFrame, unit: str, log_target: bool) -> str:
    """Errors of a run per split (train, calib, eval, test, full) in the property's unit, with log10 MAE for a log
    target (from the predictions table)."""
    u = f" ({unit})" if unit else ""
    rows = []
    for part in [s for s in ("train", "calib", "eval", "test") if s in metrics] + ["full"]:
        m = metrics[part]
        row = {"split": part, "formulas": m.get("n"), f"MAE{u}": m.get("mae"), f"RMSE{u}": m.get("rmse"),
               "R²": m.get("r2"), "MAPE (%)": m.get("mape")}
        if log_target:
            sel = predictions if part == "full" else predictions[predictions["split"] == part]
            ok = (sel["y_true"] > 0) & (sel["y_pred"] > 0)
            row["MAE of log10"] = (float(np.abs(np.log10(sel.loc[ok, "y_pred"]) - np.log10(sel.loc[ok, "y_true"]))
                                         .mean()) if ok.any() else None)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return markdown_table(frame.apply(lambda col: col.map(lambda v: _num(v) if isinstance(v, (float, np.floating)) else v)))


def _searchable_table(frame: pd.DataFrame, table_id: str) -> str:
    """A table as raw HTML with a filter box above it (a few lines of inline JavaScript: works offline)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    script = (f"var q=this.value.toLowerCase();document.querySelectorAll('#{table_id} tbody tr').forEach("
              "function(r){r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':'';});")
    return (f'<p><input type="search" placeholder="Filter by name, id or family" aria-label="filter the table" '
            f'style="width:100%;padding:0.3em" oninput="{script}"></p>\n'
            f'<table id="{table_id}" class="table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n')


def _stacked_note(run_dir: Path) -> list[str]:
    """A note block (markdown lines) for the maps and neighbours pages of a stacked run, else no lines."""
    note = stacked_vectors_sentence(run_dir)
    return [":::{note}", note, ":::", ""] if note else []


def _neighbours_page(run_dir: Path, emb: pd.DataFrame, out: Path, name: str) -> str:
    """The run's neighbours page: a caveat with the members' agreement, the neighbours of the most used materials
    (each with how many other members list it), a searchable table of every material and the CSV."""
    members = member_embeddings(run_dir)
    table = neighbour_agreement_table(emb, members, k=NEIGHBOURS_CSV_K)
    ids = emb["material_id"].astype(str)
    names = dict(zip(ids, emb["name"].astype(str))) if "name" in emb else {}
    meta = emb.assign(material_id=ids).set_index("material_id")
    table.insert(1, "name", table["material_id"].map(names))
    table.insert(4, "neighbour_name", table["neighbour_id"].map(names))
    write_table(table, out / name / "neighbours.csv")
    lines = [f"# {RUN_PAGES['neighbours']}", "",
             "For every material, the materials whose vectors point most nearly the same way (cosine distance: "
             "0 = same direction): candidates to behave alike in a formula, to be checked at the bench. Materials "
             "with a zero vector (the pinned base, unused materials) have no direction and are left out.", ""]
    if table.empty:
        return "\n".join(lines + ["*(no material has a direction)*", ""])
    top = table[table["rank"] <= NEIGHBOURS_K]
    if members:
        share = top["agree"] / top["members"]
        lines += [f"**How far to trust these lists.** The run is an ensemble of {len(members) + 1} models trained "
                  f"from different seeds. Of the {NEIGHBOURS_K} nearest neighbours listed here, another member also "
                  f"lists a neighbour among its {NEIGHBOURS_CSV_K} nearest in {_num(100 * share.mean(), 2)} % of "
                  f"cases (median material {_num(100 * share.groupby(top['material_id']).mean().median(), 2)} %); "
                  "a neighbour that few members list is a weak lead.", ""]
    else:
        lines += ["**How far to trust these lists.** This run is a single model: whether another training run "
                  "would list the same neighbours is not measured. Train an ensemble (`--set ensemble=5`) to see "
                  "how many members agree on each neighbour.", ""]

    def described(row: Any) -> str:
        agree = (f"; {int(row.agree)} of {int(row.members)} other member{'s' if row.members > 1 else ''}"
                 if members else "")
        return f"{row.neighbour_name or row.neighbour_id} ({row.distance:.2f}{agree})"

    used = meta["n_formulas"].sort_values(ascending=False) if "n_formulas" in meta else pd.Series(dtype=float)
    most_used = [m for m in used.index if m in set(top["material_id"])][:NEIGHBOURS_TOP]
    if most_used:
        lines += [f"## The {len(most_used)} most used materials", "",
                  f"Each with its {NEIGHBOURS_K} nearest (cosine distance" + ("; how many other members list the "
                  "same neighbour" if members else "") + "):", ""]
        for mid in most_used:
            rows = top[top["material_id"] == mid]
            family = f"{meta.at[mid, 'family']}, " if "family" in meta else ""
            lines.append(f"- **{names.get(mid, mid)}** ({mid}; {family}{int(meta.at[mid, 'n_formulas']):,} "
                         f"formulas): " + "; ".join(described(r) for r in rows.itertuples()))
        lines.append("")
    every = top.groupby("material_id", sort=False)
    rows = [{"material": names.get(mid, mid), "id": mid, "family": meta.at[mid, "family"] if "family" in meta
             else "", "formulas": int(meta.at[mid, "n_formulas"]) if "n_formulas" in meta else None,
             "nearest (cosine distance" + ("; members agreeing)" if members else ")"):
             "; ".join(described(r) for r in grp.itertuples())} for mid, grp in every]
    lines += ["## Every material", "", f"The {NEIGHBOURS_K} nearest of each; type in the box to filter. The "
              f"{NEIGHBOURS_CSV_K} nearest of every material as CSV: "
              f"{{download}}`neighbours.csv <{name}/neighbours.csv>`.", "",
              _searchable_table(pd.DataFrame(rows), f"neighbours-{re.sub(r'[^A-Za-z0-9-]+', '-', name)}"), ""]
    return "\n".join(lines)


def _run_pages(run_dir: Path, out: Path, maps_out: Path, map_methods: Sequence[str]) -> tuple[dict, bool, list[str]]:
    """Write a single run's pages (:data:`RUN_PAGES` and ``index.md``) into ``out``; interactive maps into
    ``maps_out``. Returns the page order for the table of contents, whether plotly.js is needed, and the run's key
    results as sentences."""
    run = load_run(run_dir)
    name = run_dir.name
    metrics = run.metrics
    unit = property_unit(metrics)
    target = metrics.get("target", "the property")
    log_target = metrics.get("target_transform") == "log10"
    preds = run.predictions
    try:
        data, _ = run.data()
    except (OSError, ValueError) as exc:  # e.g. a data folder given relative to the folder the run was trained in
        log.warning("the data of %s cannot be read from here (%s): the data page shows only the run's counts and "
                    "the maps are labelled without influence; build the report from the folder the run was "
                    "trained in to have them", run_dir, exc)
        data = None
    pages: dict[str, str] = {}

    if data is not None:
        summary = data_summary(data)
    else:
        summary = pd.DataFrame([("materials", metrics.get("n_materials")), ("formulas", metrics.get("n_formulas")),
                                ("measurements", metrics.get("n_samples")), ("target", target),
                                ("data", f"{metrics.get('data')} (not readable from the report's working folder)")],
                               columns=["quantity", "value"]).astype({"value": str})
    counts = preds["split"].value_counts()
    split_text = ", ".join(f"{s} {int(counts[s]):,}" for s in ("train", "calib", "eval", "test") if s in counts)
    pages["data"] = "\n".join([
        f"# {RUN_PAGES['data']}", "", f"The data the run `{name}` was trained on (`{metrics.get('data')}`).", "",
        _csv_table(summary, {"quantity": "quantity", "value": "value"}), "",
        f"Measurements by split: {split_text}. *train* formulas fit the model, *calib* formulas (held out of "
        "training) set the width of the intervals, *eval* formulas were held out from both and score the model.",
        ""])
    (out / name).mkdir(parents=True, exist_ok=True)
    if data is not None:
        save_figure(target_figure(data), out / name / "data_target.png")
        save_figure(usage_figure(data), out / name / "data_usage.png")
        pages["data"] += "\n" + "\n".join(
            _figure_block(f"{name}/data_target.png", f"{name}-data-target", f"Distribution of the measured {target}.")
            + _figure_block(f"{name}/data_usage.png", f"{name}-data-usage",
                            "How many formulas use each material, most used first: most materials appear in few "
                            "formulas."))

    ev = metrics.get("eval", {})
    u = f" {unit}" if unit else ""
    if log_target and ev.get("mae_log10") is not None:  # the view the model learns on, and a formulator reads, first
        lead = (f"On the eval formulas (held out of training) the mean absolute error of log10 {target} is "
                f"**{_num(ev['mae_log10'])}** (a typical factor of {_num(10 ** ev['mae_log10'])}; "
                f"{_num(100 * ev.get('within_2x', float('nan')), 2)} % of predictions within 2x of the measurement, "
                f"R² on log10 {_num(ev.get('r2_log10'))}); in {unit or 'its unit'} the MAE is {_num(ev.get('mae'))}{u}, "
                f"dominated by the largest values. On the training formulas: "
                f"{_num(metrics.get('train', {}).get('mae_log10'))} in log10.")
    else:
        lead = (f"On the eval formulas (held out of training) the mean absolute error is **{_num(ev.get('mae'))}{u}** "
                f"(R² {_num(ev.get('r2'))}); on the training formulas {_num(metrics.get('train', {}).get('mae'))}{u}.")
    lines = [f"# {RUN_PAGES['error']}", "", lead, "",
             f"Errors of the predicted {target} per split, in {unit or 'its unit'}"
             + (" and as MAE of log10 (0.3 = typically within a factor of 2; the model learns on log10)"
                if log_target else "") + ". *full* = every measurement.", "",
             _run_error_table(metrics, preds, unit, log_target), "", *baseline_report_lines(run.path, metrics, unit)]
    fig = parity(preds["y_true"].to_numpy(), preds["y_pred"].to_numpy(), preds["split"].to_numpy(),
                 label=f"{target} ({unit})" if unit else target)
    (out / name).mkdir(parents=True, exist_ok=True)
    save_figure(fig, out / name / "parity.png")
    lines += _figure_block(f"{name}/parity.png", f"{name}-parity",
                           "Predicted against measured, one dot per formula; on the dashed line the prediction is "
                           "exact.")
    if len(run.history):
        save_figure(history_figure(run.history, unit=unit), out / name / "history.png")
        lines += ["## Training", ""] + _figure_block(f"{name}/history.png", f"{name}-history",
                                                     "Error and loss against the training step.")
    pages["error"] = "\n".join(lines)

    cover = metrics.get("intervals", {})
    rows = []
    for part in [s for s in ("train", "calib", "eval", "test") if s in cover]:
        sel = preds[preds["split"] == part]
        rows.append({"split": part, "formulas": len(sel),
                     "inside 80 % interval": cover[part].get("coverage_80"),
                     "inside 95 % interval": cover[part].get("coverage_95"),
                     f"median 80 % width{u and f' ({unit})'}": float((sel["upper_80"] - sel["lower_80"]).median())
                     if len(sel) else None})
    members = metrics.get("ensemble") or 1
    how = (f"an ensemble of {members} models: the interval is the members' mean ± a multiple of their spread, the "
           "multiple chosen on the calib formulas (split conformal)" if members > 1 else
           "a single model: constant-width intervals (in model units) from the calib formulas' errors")
    lines = [f"# {RUN_PAGES['intervals']}", "",
             f"Every prediction comes with an 80 % and a 95 % interval, made by {how}. Where a formula resembles "
             "the training formulas, about 80 % (95 %) of measurements should fall inside; the share observed:", ""]
    lines += [markdown_table(pd.DataFrame(rows).apply(lambda col: col.map(
        lambda v: _num(v) if isinstance(v, (float, np.floating)) else v))) if rows else "*(no interval coverage in "
        "metrics.json)*", ""]
    ev_cov = cover.get("eval", {})
    if ev_cov:
        lines += [f"On the eval formulas {_num(100 * ev_cov.get('coverage_80', np.nan))} % of measurements fall in "
                  f"their 80 % interval and {_num(100 * ev_cov.get('coverage_95', np.nan))} % in their 95 % "
                  "interval. `mrl predict` also flags formulas outside the training domain, whose intervals are "
                  "not to be trusted.", ""]
    pages["intervals"] = "\n".join(lines)

    plotly_needed = False
    with tempfile.TemporaryDirectory() as tmp:
        influence = run_influence(run, data, max_formulas=50) if data is not None else None
        write_maps(run, methods=map_methods, influence=influence, interactive=1, folder=tmp)

        def figure(src: Path, caption: str) -> list[str]:
            _copy_figure(src, out / name / src.name)
            return _figure_block(f"{name}/{src.name}", f"{name}-{src.name}", caption)

        map_lines, plotly_needed = _map_section(Path(tmp), name, maps_out, figure, back=f"generated/{name}/maps",
                                                back_title=f"Material maps of run {name}")
    stacked = _stacked_note(run_dir)
    pages["maps"] = "\n".join([f"# {RUN_PAGES['maps']}", ""] + stacked + map_lines[1:])

    neighbours = _neighbours_page(run_dir, run.embeddings, out, name).split("\n")
    pages["neighbours"] = "\n".join(neighbours[:2] + stacked + neighbours[2:])


    show = preds.copy()
    show["abs_error"] = (show["y_pred"] - show["y_true"]).abs()
    write_table(show, out / name / "predictions.csv")
    shown = show[show["split"] == "eval"] if (show["split"] == "eval").any() else show
    shown = shown.sort_values("abs_error", ascending=False).head(PREDICTION_ROWS)
    cols = {"formula_id": "formula", **({} if shown["split"].nunique() == 1 else {"split": "split"}), "y_true": f"measured{u}", "y_pred": f"predicted{u}",
            "lower_80": "80 % low", "upper_80": "80 % high", "abs_error": "absolute error"}
    pages["predictions"] = "\n".join([
        f"# {RUN_PAGES['predictions']}", "",
        f"The {len(shown)} eval formulas with the largest errors, worst first (every formula's prediction, split "
        f"and 80 % / 95 % interval: {{download}}`predictions.csv <{name}/predictions.csv>`).", "",
        _csv_table(shown, cols), ""])

    key = [f"{metrics.get('n_formulas'):,} formulas, {metrics.get('n_materials'):,} materials, "
           f"embedding size {metrics.get('embedding_dim')}, {metrics.get('steps'):,} steps"
           + (f", an ensemble of {members}" if members > 1 else "") + ".", lead]
    if ev_cov:
        key.append(f"Share of eval measurements inside their 80 % interval: {_num(ev_cov.get('coverage_80'))}; "
                   f"inside their 95 % interval: {_num(ev_cov.get('coverage_95'))}.")
    index = [f"# Run {name}", "", *[f"- {t}" for t in key], "", "Pages:", ""]
    index += [f"- [{title}]({stem}.md)" for stem, title in RUN_PAGES.items()]
    (out / "index.md").write_text("\n".join(index) + "\n")
    for stem, text in pages.items():
        (out / f"{stem}.md").write_text(text + "\n")
    return {"kind": "run", "pages": list(RUN_PAGES)}, plotly_needed, key


def generate_run_pages(run_dir: str | Path, book_dir: str | Path,
                       map_methods: Sequence[str] = RUN_MAP_METHODS) -> Path:
    """Write a single run's book pages into ``<book_dir>/generated/<run>/`` (``index.md`` and one page per
    :data:`RUN_PAGES`), refresh the first page and table of contents; return the toc path."""
    run_dir, book_dir = Path(run_dir), Path(book_dir)
    with _staged_pages(book_dir, run_dir.name) as (out, maps_out):
        order, needs_plotly, key = _run_pages(run_dir, out, maps_out, map_methods)
        (out / "pages.json").write_text(json.dumps(order, indent=1) + "\n")
        (out / "findings.json").write_text(json.dumps({"kind": "run", "key": key}, indent=1) + "\n")
    return _finish_generated(book_dir, needs_plotly)

@contextmanager
def _staged_pages(book_dir: Path, name: str) -> Iterator[tuple[Path, Path]]:
    """Folders ``(pages, maps)`` to write one sweep's or run's pages into; when the block ends without an error they
    are synced into ``generated/<name>/`` and ``generated/_extra/maps/<name>/`` (unchanged files keep their time
    stamps, so rebuilds are incremental)."""
    generated = book_dir / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=generated, prefix=".tmp-") as tmp:
        out, maps_out = Path(tmp) / "pages", Path(tmp) / "maps"
        out.mkdir()
        maps_out.mkdir()
        yield out, maps_out
        _sync(out, generated / name)
        _sync(maps_out, generated / "_extra" / "maps" / name)


#: Folder under the site's ``maps/`` with the interactive maps of the hand-written chapters (one folder per page).
CHAPTER_MAPS = "chapters"


def chapter_map_pages(book_dir: str | Path) -> list[Path]:
    """The interactive maps of the hand-written chapters, drawn from their committed map files
    (``<book_dir>/figures/<page>.maps.json.gz``, :mod:`mrl.map_files`) into
    ``generated/_extra/maps/chapters/<page>/`` (served at ``maps/chapters/<page>/``), each with a title and a link
    back to its page, loading the site's one ``maps/plotly.min.js``. A page is rewritten only when it changed; pages
    no map file gives any more are removed. Returns the pages."""
    book_dir = Path(book_dir)
    root = book_dir / "generated" / "_extra" / "maps" / CHAPTER_MAPS
    written = []
    for path in sorted((book_dir / "figures").glob(f"*{MAP_FILE_SUFFIX}")):
        content = read_map_file(path)
        page = content.get("page") or path.name[: -len(MAP_FILE_SUFFIX)]
        if not (book_dir / f"{page}.md").exists():
            log.warning("%s: its page %s.md is not in %s; its maps are left out", path, page, book_dir)
            continue
        back_title = content.get("page_title") or page
        for name, text in map_pages(content, "../../plotly.min.js").items():
            title = re.search(r"<title>([^<]*)</title>", text)
            text = _map_page(text, title.group(1) if title else name, f"../../../{page}.html", back_title)
            out = root / page / name
            write_text_if_changed(text, out)
            written.append(out)
    for old in set(root.rglob("*.html")) - set(written) if root.exists() else ():
        old.unlink()
    return written


def _finish_generated(book_dir: Path, needs_plotly: bool) -> Path:
    """After a sweep's or run's pages: the hand-written chapters' maps (:func:`chapter_map_pages`), the shared
    plotly.js (when a page needs it), the first page and the table of contents, each rewritten only when it changed;
    returns the toc path."""
    generated = book_dir / "generated"
    needs_plotly = bool(chapter_map_pages(book_dir)) or needs_plotly
    if needs_plotly:  # one plotly.js for every interactive map of the site
        copy_if_changed(plotly_js_path(), generated / "_extra" / "maps" / "plotly.min.js")
    write_text_if_changed(_intro_page(book_dir, _all_findings(book_dir)), generated / "intro.md")
    toc = generated / "_toc.yml"
    write_text_if_changed(_toc(book_dir), toc)
    return toc


def build_report(path: str | Path, book_dir: str | Path = "book", build: bool = True, strict: bool = False,
                 map_methods: Sequence[str] = RUN_MAP_METHODS) -> Path:
    """Generate the pages of a sweep (:func:`generate_pages`) or of a single run (:func:`generate_run_pages`, maps
    in ``map_methods``) into ``book_dir`` and build the book; return ``<book_dir>/_build/html/index.html``.

    ``book_dir`` need hold nothing: its own ``_config.yml``, ``intro.md`` and ``_toc.yml`` (the repository's
    ``book/`` has the latter two) are used when present, else the packaged copies in :data:`TEMPLATE`. The build
    runs ``jupyter-book build <book_dir> --config <_config.yml> --toc <book_dir>/generated/_toc.yml`` (notebooks
    are not executed again: ``execute_notebooks: 'off'``). ``strict`` turns Sphinx warnings into errors
    (``-W --keep-going``); ``build=False`` only writes the pages.
    """
    path, book_dir = Path(path), Path(book_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder (give a run folder or a sweep folder)")
    book_dir.mkdir(parents=True, exist_ok=True)
    if is_sweep_folder(path):
        log.info("%s is a sweep (summary.csv): one part per sweep, a chapter per point", path)
        toc = generate_pages(path, book_dir)
    else:
        log.info("%s is a single run: pages %s", path, ", ".join(RUN_PAGES))
        toc = generate_run_pages(path, book_dir, map_methods=map_methods)
    index = book_dir / "_build" / "html" / "index.html"
    if not build:
        return index
    config = _book_file(book_dir, "_config.yml")
    cmd = [_jupyter_book(), "build", str(book_dir.resolve()), "--config", str(config.resolve()),
           "--toc", str(toc.resolve())]
    if strict:
        cmd += ["-W", "--keep-going"]
    log.info("building the book: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in [ln for ln in (proc.stdout + proc.stderr).splitlines() if "WARNING" in ln or "ERROR" in ln][:20]:
        log.warning("jupyter-book: %s", line.strip())
    if proc.returncode != 0 or not index.exists():
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    if not (book_dir / "_toc.yml").exists():  # a report folder of its own (not a hand-written book): a front door
        write_text('<!DOCTYPE html>\n<meta charset="utf-8">\n<title>mrl report</title>\n'
                   '<meta http-equiv="refresh" content="0; url=_build/html/index.html">\n'
                   '<a href="_build/html/index.html">Open the report</a>\n', book_dir / "index.html")
    log.info("report: %s", index)
    return index


# ------------------------------------------------------------------------------------------------ offline math
def _mathml(latex: str, display: str) -> str:
    """LaTeX as MathML (rendered by the browser itself, nothing fetched); the LaTeX as code when it cannot be
    converted (``latex2mathml`` missing or an unsupported command)."""
    try:
        return convert(latex.strip(), display=display)
    except Exception as exc:  # noqa: BLE001 - show the source rather than break the page
        log.warning("math not converted to MathML (%s): %s", exc, latex)
        return f'<code class="math-source">{html.escape(latex)}</code>'


def _visit_inline_math(self, node) -> None:
    self.body.append(f'<span class="math mathml">{_mathml(node.astext(), "inline")}</span>')
    raise nodes.SkipNode


def _visit_block_math(self, node) -> None:
    number = f'<span class="eqno">({node["number"]})</span>' if node.get("number") else ""
    self.body.append(f'<div class="math mathml" style="text-align:center;margin:1em 0">'
                     f'{_mathml(node.astext(), "block")}{number}</div>')
    raise nodes.SkipNode


def setup(app: Any) -> dict:
    """Sphinx extension (``extra_extensions: [mrl.book]`` in ``_config.yml``): renders math as MathML at build
    time (``html_math_renderer: mathml``), so formulas show without MathJax or any network access."""
    app.add_html_math_renderer("mathml", (_visit_inline_math, None), (_visit_block_math, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
