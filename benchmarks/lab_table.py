"""The seed-scale chapter: the seed report's table beside a sweep of ours, the maps of the 5,400 materials, their
evolution through training, what the vectors know and the data-poor materials, all from one sweep's runs.

    mrl sweep params/lab_seed_scale.yaml -j 2      # -> runs/lab_seed_scale (about 25 minutes on 2 cores)
    python benchmarks/lab_table.py runs/lab_seed_scale --truth --json benchmarks/results/lab_seed_scale.json \
        --figures book/figures --book book/seed_scale.md
    python benchmarks/lab_table.py --render benchmarks/results/lab_seed_scale.json --book book/seed_scale.md
    python benchmarks/lab_table.py runs/lab_seed_scale [--truth]          # the tables on the terminal

``--json`` writes the runs, the baselines, the seed report's numbers (:data:`SEED_REPORT`) and the data-poor
materials' errors (each run's ``error_by_usage.csv``, written by its ``03_evaluate``) to a result file; ``--truth``
adds the hidden-truth scores of the runs of :data:`FIGURE_SIZES` against the SVD baseline of the same size, and how
well each places materials by how many formulas use them (``truth`` and ``data_poor.neighbours``; the same runs as
the table). ``--figures DIR`` writes the chapter's figures from the same runs: ``DIR/seed_scale.maps.json.gz`` (the
coordinates of the maps at :data:`FIGURE_SIZES` and of the training evolution at :data:`EVOLUTION_SIZES`, see
:mod:`mrl.map_files`; ``mrl report`` draws the interactive pages from it, offline) and the static maps
``DIR/seed_scale_map_dim_NNNN.png`` and evolutions ``DIR/seed_scale_evolution_dim_NNNN.png``, drawn from the map
file by the report's plotting functions (:func:`mrl.map_files.map_figures`). ``--render`` fills the marked regions
of the page from the result file (:data:`SECTIONS`), every comparison worded by :func:`mrl.wording.compare`.

Rows: one per run (embedding size), columns: steps, full / eval / train MAE (property units), eval R2 and
wall time. Baselines use the first run's split and data: predict the training mean; ridge regression of the
(log10) target on the raw content vector (sparse, alpha chosen on an inner 20 % split of the training part).
Hidden-truth scores (:func:`mrl.analysis.truth_scores`): family agreement of the 10 nearest neighbours and its lift
over chance, k-means purity / ARI, probe R2 of the hidden latents, for the learned vectors and the SVD "no
learning" baseline of the same size.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

from mrl.analysis import baseline_representation, neighbour_agreement_by_usage, truth_scores, vector_columns
from mrl.book import fill_from_results, slim_png
from mrl.io import write_text
from mrl.map_files import SUFFIX as MAP_FILE_SUFFIX
from mrl.map_files import map_figures, read_map_file, write_map_file
from mrl.metrics import regression_metrics
from mrl.plots import save_figure
from mrl.run_outputs import file_path
from mrl.runs import load_run
from mrl.sweep import load_summary
from mrl.wording import Score, compare, format_number

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: The seed report's table (195,000 steps per size; MAE in cP): the sizes it gives.
SEED_REPORT = {"steps": 195_000, "rows": [
    {"embedding_dim": 100, "full_mae": 1751, "eval_mae": 5425, "train_mae": 176},
    {"embedding_dim": 2, "full_mae": 2295, "eval_mae": 6731, "train_mae": 394}]}
#: Embedding sizes whose maps the chapter shows, and whose vectors are scored against the hidden truth.
FIGURE_SIZES = (2, 10, 100)
#: Embedding sizes whose training evolution the chapter shows (a step slider).
EVOLUTION_SIZES = (2, 100)
#: Hidden effects whose probe R² the chapter lists (the thickeners of a viscosity lab); the median over all hidden
#: properties is given beside them.
PROBE_EFFECTS = ("thickening", "carbomer", "neutralizer")
#: Training steps of the evolution (as the sweep's ``04_visualize``).
EVOLUTION_FRAMES = 9
#: The book page of the chapter (``book/<PAGE>.md``) and its title: the interactive maps link back to it.
PAGE, PAGE_TITLE = "seed_scale", "Seed scale and real data"
#: Where the page's interactive maps are served on the site (see :func:`mrl.book.chapter_map_pages`).
MAPS_URL = f"maps/chapters/{PAGE}"


def run_table(folder: Path) -> tuple[pd.DataFrame, list]:
    rows, runs = [], []
    for path in sorted(p.parent for p in folder.glob("*/metrics.json")):
        run = load_run(path)
        m = run.metrics
        runs.append(run)
        rows.append({"run": path.name, "embedding_dim": m["embedding_dim"], "best_step": m.get("best_step"),
                     "steps": m.get("stopped_step") or m["steps"],
                     "full_mae": m["full"]["mae"], "eval_mae": m["eval"]["mae"], "train_mae": m["train"]["mae"],
                     "eval_r2": m["eval"]["r2"], "wall_s": m["wall_s"]})
    return pd.DataFrame(rows).sort_values("embedding_dim", ascending=False), runs


def baselines(run) -> pd.DataFrame:
    data, _ = run.data()
    split = run.split["split"].to_numpy()
    y = data.target_values()
    log = run.metrics.get("target_transform") == "log10"
    t = np.log10(y) if log else y
    X = data.content_matrix()[data.sample_rows()]
    train, ev = split == "train", split == "eval"
    rows = []
    pred = np.full(len(y), y[train].mean())
    rows.append({"model": "mean of train", **_scores(y, pred, train, ev), "wall_s": 0.0})
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    idx = np.flatnonzero(train)
    inner = rng.permutation(idx)
    fit_idx, val_idx = inner[: int(0.8 * len(inner))], inner[int(0.8 * len(inner)):]
    best = min(ALPHAS, key=lambda a: np.mean(np.abs(
        Ridge(alpha=a).fit(X[fit_idx], t[fit_idx]).predict(X[val_idx]) - t[val_idx])))
    fitted = Ridge(alpha=best).fit(X[idx], t[idx]).predict(X)
    fitted = np.clip(fitted, t[train].min(), t[train].max())
    pred = 10 ** fitted if log else fitted
    rows.append({"model": f"ridge on contents (alpha={best:g}{', log10 target' if log else ''})",
                 **_scores(y, pred, train, ev), "wall_s": time.perf_counter() - start})
    return pd.DataFrame(rows)


def truth_table(runs: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hidden-truth scores of each run's vectors and of the SVD baseline of the same size (one data load), and the
    family share of the neighbours by how many formulas use a material (:func:`mrl.analysis.neighbour_agreement_by_usage`)
    for both."""
    data, truth = runs[0].data()
    if truth is None:
        raise SystemExit("--truth needs data with a hidden truth (the synthetic lab)")
    matrix = data.content_matrix()
    rows, by_usage = [], []
    for run in runs:
        emb = run.embeddings
        dim = int(run.metrics["embedding_dim"])
        svd = emb.drop(columns=vector_columns(emb))
        base = baseline_representation(matrix, dim)
        svd = pd.concat([svd, pd.DataFrame(base, columns=[f"e{i}" for i in range(dim)])], axis=1)
        for name, table in (("learned", emb), ("svd baseline", svd)):
            res = truth_scores(table, truth)
            rows.append({"embedding_dim": dim, "vectors": name, "neighbour_agreement": res["neighbour_agreement"],
                         "chance": res["neighbour_chance"], "lift": res["neighbour_lift"], "purity": res["purity"],
                         "ari": res["ari"], **{f"probe_r2_{k}": v for k, v in res["probe_r2"].items()}})
            by_usage.append(neighbour_agreement_by_usage(table, truth).assign(embedding_dim=dim, vectors=name))
    return pd.DataFrame(rows), pd.concat(by_usage, ignore_index=True)


def truth_section(table: pd.DataFrame) -> dict:
    """The result file's ``truth``: per size, the learned and the SVD vectors' scores (from :func:`truth_table`)."""
    sizes = sorted(int(d) for d in table["embedding_dim"].unique())
    learned = table[table["vectors"] == "learned"].set_index("embedding_dim").loc[sizes]
    svd = table[table["vectors"] == "svd baseline"].set_index("embedding_dim").loc[sizes]
    effects = [c for c in table.columns if c.startswith("probe_r2_")]
    median = {"learned": learned[effects].median(axis=1), "svd": svd[effects].median(axis=1)}
    pair = lambda column: {k: [round(float(v), 3) for v in frame[column]]  # noqa: E731
                           for k, frame in (("learned", learned), ("svd", svd))}
    return {"sizes": sizes, "n_effects": len(effects),
            "probe_r2": {e: pair(f"probe_r2_{e}") for e in PROBE_EFFECTS if f"probe_r2_{e}" in table},
            "probe_r2_median": {k: [round(float(v), 3) for v in median[k]] for k in median},
            "neighbour_agreement": {**pair("neighbour_agreement"), "chance": round(float(learned["chance"].iloc[0]), 3)}}


def error_by_usage_section(runs: list) -> dict:
    """Eval error by the usage of each formula's rarest ingredient, per run (from its ``error_by_usage.csv``)."""
    out = {"split": "eval", "sizes": [], "bins": [], "n": [], "median_abs_error": {}, "mae": {}}
    for run in sorted(runs, key=lambda r: r.metrics["embedding_dim"]):
        path = file_path(run.path, "error_by_usage")
        if not path.exists():
            continue
        table = pd.read_csv(path, dtype={"usage_bin": str})
        table = table[table["split"] == out["split"]]
        dim = str(int(run.metrics["embedding_dim"]))
        out["sizes"].append(int(dim))
        out["bins"] = out["bins"] or table["usage_bin"].tolist()
        out["n"] = out["n"] or [int(v) for v in table["n"]]
        by_bin = table.set_index("usage_bin")
        out["median_abs_error"][dim] = [round(float(by_bin.loc[b, "median_abs_error"])) for b in out["bins"]]
        out["mae"][dim] = [round(float(by_bin.loc[b, "mae"])) for b in out["bins"]]
    return out


def neighbours_by_usage_section(by_usage: pd.DataFrame) -> dict:
    """The result file's ``data_poor.neighbours`` from :func:`truth_table`'s second table."""
    learned = by_usage[by_usage["vectors"] == "learned"]
    bins = list(dict.fromkeys(learned["usage_bin"]))
    first = learned[learned["embedding_dim"] == learned["embedding_dim"].min()].set_index("usage_bin").loc[bins]
    out = {"bins": bins, "n_materials": [int(v) for v in first["n_materials"]],
           "chance": [round(float(v), 3) for v in first["neighbour_chance"]], "learned": {}, "svd": {}}
    for (dim, vectors), grp in by_usage.groupby(["embedding_dim", "vectors"]):
        key = "learned" if vectors == "learned" else "svd"
        out[key][str(int(dim))] = [round(float(v), 3) for v in grp.set_index("usage_bin").loc[bins, "neighbour_agreement"]]
    return out


def write_figures(runs: list, folder: Path) -> dict:
    """The chapter's figures from ``runs`` into ``folder``: the map file of the maps at :data:`FIGURE_SIZES` and
    the evolution at :data:`EVOLUTION_SIZES` (:func:`mrl.map_files.write_map_file`), and the static maps and
    evolutions drawn from that file (:func:`mrl.map_files.map_figures`, palette PNGs); returns the result file's
    ``figures`` (paths relative to the book, bytes per file)."""
    by_dim = {int(r.metrics["embedding_dim"]): r for r in runs}
    missing = [d for d in (*FIGURE_SIZES, *EVOLUTION_SIZES) if d not in by_dim]
    if missing:
        raise SystemExit(f"--figures needs runs of embedding sizes {missing} (have {sorted(by_dim)})")
    map_file = folder / f"{PAGE}{MAP_FILE_SUFFIX}"
    write_map_file(map_file, [by_dim[d] for d in FIGURE_SIZES], [by_dim[d] for d in EVOLUTION_SIZES], page=PAGE,
                   page_title=PAGE_TITLE, n_frames=EVOLUTION_FRAMES)
    content = read_map_file(map_file)
    out = {"map_file": f"figures/{map_file.name}", "maps": [], "evolutions": []}
    for name, fig in map_figures(content).items():
        png = folder / f"{PAGE}_{name}.png"
        save_figure(fig, png)
        png.write_bytes(slim_png(png.read_bytes()))
        entry = next(e for e in [*content["maps"], *content["evolutions"]] if e["name"] == name)
        kind = "maps" if name.startswith("map_") else "evolutions"
        out[kind].append({"embedding_dim": entry["embedding_dim"], "method": entry["method"],
                          "png": f"figures/{png.name}", "html": f"{MAPS_URL}/{name}.html"})
    out["bytes"] = {p.name: p.stat().st_size for p in sorted(folder.glob(f"{PAGE}[._]*"))}
    return out


def _scores(y, pred, train, ev) -> dict:
    return {"full_mae": regression_metrics(y, pred)["mae"], "eval_mae": regression_metrics(y[ev], pred[ev])["mae"],
            "train_mae": regression_metrics(y[train], pred[train])["mae"],
            "eval_r2": regression_metrics(y[ev], pred[ev])["r2"]}


def _seconds(value: float | None) -> str:
    return f"{value:,.0f}" if value else "–"


def _mae(value: float) -> str:
    return format_number(value, 3) if value is not None else "–"


def _setup_text(results: dict) -> str:
    """The sweep's setup in words, from the result file's ``setup`` and ``lab``."""
    setup = results.get("setup", {})
    return (f"{results.get('lab', 'The synthetic lab at the seed scale')}; `mrl sweep {setup.get('sweep')}`: batch "
            f"{setup.get('batch_size')}, early stopping on an inner validation of "
            f"{100 * setup.get('validation_fraction', 0.1):g} % of the training formulas (patience "
            f"{setup.get('patience')} x {format_number(setup.get('eval_every'))} steps, at most "
            f"{format_number(setup.get('max_steps'))} steps, the best step kept); single runs (seed "
            f"{setup.get('seed', 0)}), training time on {setup.get('threads')} thread of a shared 2-core machine")


def render_table(results: dict) -> str:
    """The seed report's table beside ours by embedding size (full / eval / train MAE), then sentences that compare
    them, the baselines and the shape of the error curve, all from ``results``."""
    unit = results.get("unit", "cP")
    seed = {r["embedding_dim"]: r for r in results["seed_report"]["rows"]}
    runs = sorted(results["runs"], key=lambda r: -r["embedding_dim"])
    steps = format_number(results["seed_report"]["steps"])
    lines = [f"{_setup_text(results)}. MAE in {unit}, on all formulas (*full*), the held-out *eval* formulas and the "
             f"*train* formulas; the seed report's ({steps} steps) for the sizes it reports. Baselines (italic) on "
             "the same split.", "",
             "| embedding size | seed report: full | seed report: eval | seed report: train | mrl: full | mrl: eval | "
             "mrl: train |",
             "| --: | --: | --: | --: | --: | --: | --: |"]
    for r in runs:
        s = seed.get(r["embedding_dim"])
        theirs = [_mae(s[k]) if s else "–" for k in ("full_mae", "eval_mae", "train_mae")]
        ours = [_mae(r[k]) for k in ("full_mae", "eval_mae", "train_mae")]
        lines.append("| " + " | ".join([str(r["embedding_dim"]), *theirs, *ours]) + " |")
    for b in results.get("baselines", []):
        ours = [_mae(b[k]) for k in ("full_mae", "eval_mae", "train_mae")]
        lines.append("| " + " | ".join([f"*{b['model']}*", "–", "–", "–", *ours]) + " |")
    lines += ["", "Training of each size: the step whose model is kept (best inner-validation loss), the step it "
              "stopped at, eval R² (in cP) and training time:", "",
              "| embedding size | step kept | stopped at | eval R² | training time (s) |", "| --: | --: | --: | --: | --: |"]
    for r in runs:
        kept = format_number(r["best_step"]) if r.get("best_step") else "–"
        lines.append(f"| {r['embedding_dim']} | {kept} | {format_number(r['steps'])} | {_two(r['eval_r2'])} | "
                     f"{_seconds(r['wall_s'])} |")
    for b in results.get("baselines", []):
        lines.append(f"| *{b['model']}* | – | – | {_two(b['eval_r2'])} | {_seconds(b.get('wall_s'))} |")
    lines.append("")
    for r in runs:
        s = seed.get(r["embedding_dim"])
        if not s:
            continue
        size = r["embedding_dim"]
        for split in ("eval", "train"):
            c = compare(r[f"{split}_mae"], s[f"{split}_mae"], f"mrl at size {size}", "the seed report at that size",
                        what=f"{split} MAE", unit=unit)
            lines.append(f"- {c.sentence}")
    by_eval = sorted(runs, key=lambda r: r["eval_mae"])
    best, worst = by_eval[0], by_eval[-1]
    gaps = sum(r["train_mae"] < r["eval_mae"] for r in runs)
    lines.append(f"- Shape: eval MAE is highest at size {worst['embedding_dim']} ({_mae(worst['eval_mae'])} {unit}) "
                 f"and lowest at size {best['embedding_dim']} ({_mae(best['eval_mae'])} {unit}); train MAE is below "
                 f"eval MAE at {gaps} of {len(runs)} sizes.")
    for b in results.get("baselines", []):
        c = compare(best["eval_mae"], b["eval_mae"], f"mrl at size {best['embedding_dim']}", b["model"],
                    what="eval MAE", unit=unit)
        lines.append(f"- {c.sentence}")
    return "\n".join(lines)


def _two(value: float) -> str:
    """A score with two decimals (never "-0.00")."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _missing(section: str) -> str:
    return f"(no {section} in the result file: `python benchmarks/lab_table.py runs/lab_seed_scale --truth --json ...`)"


def render_truth(results: dict) -> str:
    """What the vectors know against the hidden truth, learned against the co-usage SVD, as a table."""
    truth = results.get("truth")
    if not truth:
        return _missing("hidden-truth scores")
    sizes = truth["sizes"]
    head = ["score"] + [f"size {d}: {kind}" for d in sizes for kind in ("learned", "SVD")]
    lines = [f"Scores of the runs of the table above at sizes {', '.join(map(str, sizes))} (`python "
             "benchmarks/lab_table.py runs/lab_seed_scale --truth`): *probe R²* is a 5-fold ridge probe reading a "
             "hidden effect from the vectors (1: read exactly, 0: no better than the mean, below 0: worse); *family "
             "neighbours* the share of each material's 10 nearest neighbours (cosine) in its hidden family (chance "
             f"{truth['neighbour_agreement']['chance']:.2f}). *SVD*: the no-learning co-usage vectors of the same "
             "size (the material x formula content matrix reduced by truncated SVD).", "",
             "| " + " | ".join(head) + " |", "| --- |" + " --: |" * (len(head) - 1)]
    scores = [*[(f"probe R², {k}", f"probe R² of {k}", v) for k, v in truth["probe_r2"].items()],
              (f"probe R², median of all {truth['n_effects']} hidden properties",
               f"the median probe R² of all {truth['n_effects']} hidden properties", truth["probe_r2_median"]),
              ("family neighbours", "family neighbours", truth["neighbour_agreement"])]
    for label, _, values in scores:
        cells = [_two(v) for pair in zip(values["learned"], values["svd"]) for v in pair]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    lines.append("")
    for _, name, values in scores:
        verdicts = []
        for d, a, b in zip(sizes, values["learned"], values["svd"]):
            c = compare(Score(a), Score(b), "learned", "SVD", lower_is_better=False, digits=2)
            verdicts.append(f"{c.relation} at size {d}")
        lines.append(f"- {name}, the learned vectors against the SVD: " + ", ".join(verdicts) + ".")
    return "\n".join(lines)


def _iframe(src: str, title: str, height: int) -> list[str]:
    return [f'<iframe src="{src}" width="100%" height="{height}" style="border:0" loading="lazy" '
            f'title="{title}"></iframe>', "", f'<p><a href="{src}">Open the {title} on its own page</a></p>', ""]


def render_maps(results: dict) -> str:
    """The maps of the materials at :data:`FIGURE_SIZES` (static PNG, then the interactive page) and their
    evolution through training (a step slider), from the result file's ``figures``."""
    figures = results.get("figures")
    if not figures:
        return "(no figures in the result file: `python benchmarks/lab_table.py runs/lab_seed_scale --figures book/figures --json ...`)"
    n = format_number(results.get("n_materials", 5400))
    lines = [f"Each dot is one of the {n} materials, coloured by its hidden family, its size growing with the number "
             "of formulas that use it. The maps draw **dose-weighted vectors** (each material's vector times its "
             "median content: how far it typically moves a formula's vector): raw at size 2, the first two axes of "
             "an uncentred PCA above, so the cross at (0, 0) is the zero vector and a material near it has little "
             "influence at its usual dose. The right panel of each static map zooms on the central 90 % of the "
             "materials. In the interactive maps, hover a dot for its name, family, usage and median content in %; "
             "drag to zoom, double-click to reset; click a family in the legend to hide it.", ""]
    for m in figures["maps"]:
        d = m["embedding_dim"]
        axes = "raw vector components" if m["method"] == "raw" else "uncentred PCA axes"
        lines += [f"### Embedding size {d}", "", f"```{{figure}} {m['png']}", f":name: seed-scale-map-{d}", "",
                  f"The {n} materials at embedding size {d}, dose-weighted vectors ({axes}).", "```", ""]
        lines += _iframe(m["html"], f"interactive map at embedding size {d}", 680)
    lines += ["## Through training", "",
              "The same map at nine training steps, one projection (fitted on the final vectors) for all steps: the "
              "vectors start at the origin and spread as the model learns which materials matter. Drag the step "
              "slider or press play; hover a dot for its name and family.", ""]
    for e in figures["evolutions"]:
        d = e["embedding_dim"]
        lines += [f"### Embedding size {d} through training", ""]
        lines += _iframe(e["html"], f"training evolution at embedding size {d}", 760)
        lines += [f"```{{figure}} {e['png']}", f":name: seed-scale-evolution-{d}", "",
                  f"Embedding size {d}: the dose-weighted vectors at nine training steps, one panel per step.", "```",
                  ""]
    return "\n".join(lines)


def render_data_poor(results: dict) -> str:
    """How error and neighbour quality go with how many formulas use a material, from ``data_poor``."""
    poor = results.get("data_poor") or {}
    unit = results.get("unit", "cP")
    err = poor.get("error")
    if not err or not err.get("sizes"):
        return _missing("error by usage")
    sizes = [d for d in (results.get("truth") or {}).get("sizes", FIGURE_SIZES) if d in err["sizes"]]
    lines = [f"Eval formulas grouped by how many training formulas use their rarest ingredient (0: an ingredient no "
             f"training formula holds), median absolute error in {unit} by embedding size (each run's "
             "`error_by_usage.csv`, the same runs as the table):", "",
             "| training formulas using the rarest ingredient | eval formulas | "
             + " | ".join(f"size {d}: median abs. error ({unit})" for d in sizes) + " |",
             "| --: | --: |" + " --: |" * len(sizes)]
    for i, b in enumerate(err["bins"]):
        lines.append(f"| {b} | {err['n'][i]:,} | "
                     + " | ".join(_mae(err["median_abs_error"][str(d)][i]) for d in sizes) + " |")
    lines.append("")
    first, last = err["bins"][0], err["bins"][-1]
    for d in sizes:
        values = err["median_abs_error"][str(d)]
        c = compare(values[0], values[-1], f"the group {first}", f"the group {last}",
                    what=f"eval median absolute error at size {d}", unit=unit)
        lines.append(f"- {c.sentence}")
    nb = poor.get("neighbours")
    if not nb:
        return "\n".join(lines + ["", _missing("neighbours by usage")])
    lines += ["", "Materials grouped by how many formulas use them: the share of each material's 10 nearest "
              "neighbours in its hidden family, learned vectors / SVD of the same size. *Chance* is that share for "
              "random vectors; it differs between groups (their materials' families differ in size), so groups are "
              "compared by their lift over chance (share / chance).", "",
              "| formulas using the material | materials | chance | "
              + " | ".join(f"size {d}: learned / SVD" for d in sizes) + " |",
              "| --: | --: | --: |" + " --: |" * len(sizes)]
    for i, b in enumerate(nb["bins"]):
        lines.append(f"| {b} | {nb['n_materials'][i]:,} | {nb['chance'][i]:.2f} | "
                     + " | ".join(f"{nb['learned'][str(d)][i]:.2f} / {nb['svd'][str(d)][i]:.2f}" for d in sizes)
                     + " |")
    lines.append("")
    for d in sizes:
        learned, svd = nb["learned"][str(d)], nb["svd"][str(d)]
        chance = nb["chance"]
        rare = compare(Score(learned[0] / chance[0]), Score(learned[-1] / chance[-1]),
                       f"the materials in {nb['bins'][0]} formulas", f"those in {nb['bins'][-1]}",
                       what=f"family-neighbour lift over chance at size {d}", lower_is_better=False)
        vs = compare(Score(learned[0]), Score(svd[0]), "the learned vectors", "the SVD",
                     what=f"family-neighbour share of the materials in {nb['bins'][0]} formulas at size {d}",
                     lower_is_better=False, digits=2)
        lines.append(f"- {rare.sentence} {vs.sentence}")
    return "\n".join(lines)


def render_key_result(results: dict) -> str:
    """The page's key result (quoted on the report's first page): ours against the seed report's eval MAE at the
    sizes both have, worded by compare."""
    unit = results.get("unit", "cP")
    runs = {r["embedding_dim"]: r for r in results["runs"]}
    parts = []
    for s in sorted(results["seed_report"]["rows"], key=lambda r: -r["embedding_dim"]):
        if s["embedding_dim"] in runs:
            c = compare(runs[s["embedding_dim"]]["eval_mae"], s["eval_mae"], f"mrl at size {s['embedding_dim']}",
                        "the seed report", what="eval MAE", unit=unit)
            parts.append(c.sentence)
    return (f"On a synthetic lab of the seed's scale (5,400 materials), single runs with early stopping against the "
            f"seed report's {format_number(results['seed_report']['steps'])} steps. " + " ".join(parts))


#: Regions of the seed-scale page filled from the result file: marker name -> render function.
SECTIONS = {"key-result": render_key_result, "seed-table": render_table, "seed-maps": render_maps,
            "seed-truth": render_truth, "seed-data-poor": render_data_poor}


def write_book(results: dict, path: str | Path) -> Path:
    """Fill each rendered region of :data:`SECTIONS` between its ``<!-- NAME -->`` markers on the page."""
    return fill_from_results(results, SECTIONS, path)


def _setup(run, folder: Path) -> dict:
    p = run.params
    return {"sweep": f"params/{folder.name}.yaml", "batch_size": p.batch_size, "validation_fraction":
            p.validation_fraction, "patience": p.patience, "eval_every": p.eval_every, "max_steps": p.steps,
            "seed": p.seed, "threads": 1}


def _lab(run) -> str:
    m = run.metrics
    n = {s: m.get(s, {}).get("n") for s in ("train", "calib", "eval")}
    return (f"Synthetic lab at the seed's scale (`{run.params.data}`: {format_number(m['n_materials'])} materials, "
            f"{format_number(m['n_formulas'])} formulas; {format_number(n['train'])} train, "
            f"{format_number(n['calib'] or 0)} calibration and {format_number(n['eval'])} eval formulas, split at "
            "random by formula)")


def results_of(folder: Path, with_truth: bool, figures: Path | None = None, previous: dict | None = None) -> dict:
    """The result file's content for a sweep folder: its runs, the baselines on the first run's split, the seed
    report's numbers, the data-poor materials' errors; with ``with_truth`` the hidden-truth scores of the runs of
    :data:`FIGURE_SIZES`, with ``figures`` the chapter's figures written there (else ``truth`` and ``figures`` are
    kept from ``previous``)."""
    table, runs = run_table(folder)
    if not runs:
        raise SystemExit(f"{folder}: no finished run (no */metrics.json)")
    kept = {k: v for k, v in (previous or {}).items() if k in ("truth", "figures", "data_poor", "sweep_seconds")}
    out: dict = {}
    out.update({"what": "The seed-scale chapter's numbers: one run per embedding size of `mrl sweep "
                        f"params/{folder.name}.yaml` beside the seed report's table. Written by `python "
                        "benchmarks/lab_table.py runs/lab_seed_scale --truth --json "
                        "benchmarks/results/lab_seed_scale.json --figures book/figures`.",
                "unit": "cP", "lab": _lab(runs[0]), "setup": _setup(runs[0], folder),
                "n_materials": int(runs[0].metrics["n_materials"]), "seed_report": SEED_REPORT,
                "runs": json.loads(table.drop(columns=["run"]).to_json(orient="records")),
                "baselines": json.loads(baselines(runs[0]).to_json(orient="records"))})
    summary = folder / "summary.csv"
    if summary.exists():
        s = load_summary(folder)
        # seconds summed over the points (the sweep's workers ran in parallel): training, and all its notebooks
        out["sweep_seconds"] = {"training": round(float(s["wall_s"].sum())),
                                **({"notebooks": round(float(s["notebooks_s"].sum()))} if "notebooks_s" in s else {})}
    out.update({k: v for k, v in kept.items() if k not in out})
    out["data_poor"] = {**kept.get("data_poor", {}), "error": error_by_usage_section(runs)}
    if with_truth:
        shown = [r for r in runs if int(r.metrics["embedding_dim"]) in FIGURE_SIZES]
        scores, by_usage = truth_table(shown)
        out["truth"] = truth_section(scores)
        out["data_poor"]["neighbours"] = neighbours_by_usage_section(by_usage)
    if figures is not None:
        out["figures"] = write_figures(runs, figures)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", help="a sweep folder of runs (runs/lab_seed_scale)")
    parser.add_argument("--truth", action="store_true", help="add the hidden-truth scores of the runs of "
                                                             "FIGURE_SIZES and their neighbours by usage")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file")
    parser.add_argument("--figures", type=Path, default=None, metavar="DIR",
                        help="write the chapter's map file and PNGs into DIR (book/figures)")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON", help="render this result file")
    parser.add_argument("--book", type=Path, default=None, help="page whose marked regions are filled "
                                                                "(book/seed_scale.md)")
    args = parser.parse_args()
    if args.render:
        out = fill_from_results(json.loads(args.render.read_text()), SECTIONS, args.book)
        print(f"wrote {out}" if args.book else out)
        return
    if args.folder is None:
        parser.error("give a folder of runs, or --render JSON")
    if args.json:
        previous = json.loads(args.json.read_text()) if args.json.exists() else None
        results = results_of(args.folder, args.truth, args.figures, previous)
        write_text(json.dumps(results, indent=1) + "\n", args.json)
        print(f"wrote {args.json}")
        if args.book:
            print(f"wrote {write_book(results, args.book)}")
        return
    if args.figures:
        parser.error("--figures needs --json (the result file records the figures)")
    table, runs = run_table(args.folder)
    print(table.round({"full_mae": 0, "eval_mae": 0, "train_mae": 0, "eval_r2": 3, "wall_s": 0}).to_string(index=False))
    if runs:
        print()
        print(baselines(runs[0]).round({"full_mae": 0, "eval_mae": 0, "train_mae": 0, "eval_r2": 3, "wall_s": 1})
              .to_string(index=False))
    if runs and args.truth:
        scores, by_usage = truth_table([r for r in runs if int(r.metrics["embedding_dim"]) in FIGURE_SIZES])
        print()
        print(scores.round(3).to_string(index=False))
        print()
        print(by_usage.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
