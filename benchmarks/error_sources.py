"""Why eval error is high: unseen materials against unseen combinations and ratios, measured by two splits.

The synthetic lab is trained with the same settings under two splits, for each split seed:

* ``random``: 20 % of the formulas held out. Nearly every eval formula uses only materials seen in training, in a
  combination or at ratios no training formula has: its error is the cost of new combinations and ratios.
* ``material``: a share of the materials held out (never the base); every formula holding one is eval. The share
  is the one whose eval formula count comes closest to the random split's, so both eval sets are about as large.

Reported: train (fit) error of each model, eval error per split, and eval error by L1 distance of the formula's
contents to its nearest training formula (``mrl.error_sources.distance_errors``; 0 = a training formula's contents, 2 =
no ingredient in common) and by whether all its ingredients were seen in training.

    python benchmarks/error_sources.py                      # ~3-4 min on one busy core
    python benchmarks/error_sources.py --n-seeds 1 --steps 300   # smoke run (~15 s)
    python benchmarks/error_sources.py --json benchmarks/results/error_sources.json   # the book's result file
    python benchmarks/error_sources.py --render benchmarks/results/error_sources.json --book book/error_sources.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mrl.book import fill_from_results
from mrl.data import FormulaData
from mrl.error_sources import DISTANCE_BINS, distance_errors, error_by_distance, log10_metrics
from mrl.io import write_json
from mrl.metrics import log10_mae
from mrl.params import RunParams
from mrl.plots import error_by_distance_figure, save_figure
from mrl.runs import load_run, resolve_data, run_experiment
from mrl.splits import make_split
from mrl.wording import Score, compare, format_number

SPLITS = ("random", "material")


def material_splits(data: FormulaData, formula_share: float, n: int, tolerance: float) -> list[tuple[int, float]]:
    """The first ``n`` split seeds (with their ``eval_fraction``) of a ``material`` split for which some number k
    of held-out materials puts ``formula_share`` +- ``tolerance`` of the formulas in eval. Seeds whose first
    held-out material alone takes far more (a material in 40 % of the formulas) are skipped."""
    n_units = data.formulas["material_id"].nunique() - 1  # every material but the base is a candidate
    chosen: list[tuple[int, float]] = []
    seed = 0
    while len(chosen) < n:
        for k in range(1, n_units + 1):
            share = np.mean(make_split(data, "material", k / n_units, seed) == "eval")
            if abs(share - formula_share) <= tolerance:
                chosen.append((seed, k / n_units))
            if share >= formula_share - tolerance:
                break
        seed += 1
    return chosen


def summary_row(run_path: Path, table: pd.DataFrame) -> dict:
    """Counts and errors of one run: fit (train) and eval, in the property's units and log10."""
    run = load_run(run_path)
    logs = log10_metrics(run.predictions).set_index("split")["mae_log10"]
    part = table[table["split"] == "eval"]
    return {"train_formulas": int(table.loc[table["split"] == "train", "formula_id"].nunique()),
            "eval_formulas": int(part["formula_id"].nunique()),
            "train_mae": run.metrics["train"]["mae"], "train_mae_log10": float(logs["train"]),
            "eval_mae": run.metrics["eval"]["mae"], "eval_mae_log10": float(logs["eval"]),
            "eval_median_distance": float(part["train_distance"].median()),
            "eval_share_unseen": float((part["n_unseen"] > 0).mean())}


def held_out_materials(data: FormulaData, table: pd.DataFrame) -> pd.DataFrame:
    """The materials that eval formulas use and no training formula does, with their descriptive columns."""
    used = data.formulas.merge(table[["formula_id", "split"]].drop_duplicates(), on="formula_id")
    held = set(used.loc[used["split"] == "eval", "material_id"]) - set(used.loc[used["split"] == "train",
                                                                              "material_id"])
    return data.materials[data.materials["material_id"].isin(held)]


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synth:small")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="share of formulas of the random split")
    parser.add_argument("--n-seeds", type=int, default=5, help="splits of each kind (random: seeds 0..n-1)")
    parser.add_argument("--tolerance", type=float, default=0.03,
                        help="material splits: eval share of the formulas within eval-fraction +- this")
    parser.add_argument("--runs-dir", default="runs/error_sources", help="parent of the run folders")
    parser.add_argument("--json", default="runs/error_sources.json", help="tables and settings")
    parser.add_argument("--figure", default="book/figures/error_sources.png", help="error by distance, per split")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only render the book page's sections from this result file")
    parser.add_argument("--book", type=Path, default=None, help="with --render: fill the marked regions of this "
                                                                "page (book/error_sources.md)")
    return parser.parse_args()


def train_runs(base: RunParams, data: FormulaData, args: argparse.Namespace,
               start: float) -> tuple[pd.DataFrame, dict[str, list[pd.DataFrame]]]:
    """Train one run per split kind and seed; return the summary (one row per run, then the mean per kind) and the
    :func:`distance_errors` tables of each kind's runs."""
    runs = [("random", seed, args.eval_fraction) for seed in range(args.n_seeds)]
    runs += [("material", seed, fraction)
             for seed, fraction in material_splits(data, args.eval_fraction, args.n_seeds, args.tolerance)]
    rows, tables = [], {split: [] for split in SPLITS}
    for split, seed, eval_fraction in runs:
        params = RunParams(**{**base.to_dict(), "name": f"{split}__seed_{seed}", "split": split,
                              "eval_fraction": eval_fraction, "split_seed": seed})
        path = run_experiment(params, overwrite=True, progress=False)
        table = distance_errors(load_run(path).predictions, data.formulas).assign(seed=seed)
        tables[split].append(table)
        held = held_out_materials(data, table)
        rows.append({"split": split, "seed": seed, "held_out_materials": len(held), **summary_row(path, table),
                     "held_out": [{"name": r.name, "family": r.family, "n_formulas": int(r.n_formulas),
                                   "median_content": float(r.median_content)} for r in held.itertuples()]})
        print(f"  {split} seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
        if split == "material":
            print("    held out: " + ", ".join(f"{r.name} ({r.family}, {r.n_formulas} formulas, median content "
                                               f"{r.median_content:.2g})" for r in held.itertuples()), flush=True)
    summary = pd.DataFrame(rows)
    mean = (summary.drop(columns=["seed", "held_out"]).groupby("split", sort=False).mean().reset_index()
            .assign(seed="mean"))
    return pd.concat([summary, mean], ignore_index=True), tables


def error_sources(tables: dict[str, list[pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Eval error by distance bin per split kind (pooled over seeds), and the error sources: the fit error of the
    random-split models, random eval per ingredients group, material eval."""
    by_distance = pd.concat([error_by_distance(pd.concat(tables[split], ignore_index=True)).assign(split=split)
                             for split in SPLITS], ignore_index=True)
    pooled = pd.concat(tables["random"], ignore_index=True)
    fit = pooled[pooled["split"] == "train"]
    random_eval = by_distance[(by_distance["split"] == "random") & (by_distance["distance_bin"] == "all")]
    if len(random_eval) == 2:  # one ingredients group: its "any" row repeats it
        random_eval = random_eval[random_eval["ingredients"] != "any"]
    material_eval = by_distance[(by_distance["split"] == "material") & (by_distance["distance_bin"] == "all")
                                & (by_distance["ingredients"] == "any")]
    sources = pd.DataFrame([
        {"formulas": "train (fit error of the random-split models)", "n": len(fit),
         "mae": float((fit["y_pred"] - fit["y_true"]).abs().mean()),
         "mae_log10": log10_mae(fit["y_true"], fit["y_pred"])},
        *({"formulas": f"random eval, {r.ingredients} ingredients" if r.ingredients != "any" else "random eval, all",
           "n": r.n, "mae": r.mae, "mae_log10": r.mae_log10} for r in random_eval.itertuples()),
        *({"formulas": "material eval (every formula holds an unseen material)", "n": r.n, "mae": r.mae,
           "mae_log10": r.mae_log10} for r in material_eval.itertuples())])
    return by_distance, sources


def median_measured(tables: dict[str, list[pd.DataFrame]]) -> dict[str, float]:
    """Median measured value of the random-split eval formulas (pooled over seeds) per distance bin."""
    part = pd.concat(tables["random"], ignore_index=True)
    part = part[part["split"] == "eval"]
    edges = list(DISTANCE_BINS)
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    binned = pd.cut(part["train_distance"], edges, labels=labels)
    return {str(k): float(v) for k, v in part.groupby(binned, observed=True)["y_true"].median().items()}


def print_tables(data: FormulaData, args: argparse.Namespace, summary: pd.DataFrame, sources: pd.DataFrame,
                 by_distance: pd.DataFrame, wall_s: float) -> None:
    pd.set_option("display.width", 200)
    print(f"\n{data.name}: {data.n_formulas} formulas, {data.n_materials} materials; dim {args.dim}, "
          f"{args.steps} steps, {args.n_seeds} splits of each kind")
    print("\n## splits (MAE in the property's units and in log10)")
    print(summary.drop(columns="held_out").to_string(index=False, float_format=_number))
    print("\n## error sources (pooled over split seeds)")
    print(sources.to_string(index=False, float_format=_number))
    print("\n## eval error by L1 distance to the nearest training formula (pooled over split seeds)")
    wide = by_distance.pivot_table(index=["distance_bin", "ingredients"], columns="split", sort=False,
                                   values=["n", "mae", "mae_log10"])[["n", "mae", "mae_log10"]]
    lower_edge = {b: (np.inf if b == "all" else float(b.split("-")[0]), len(b)) for b in wide.index.levels[0]}
    groups = ("all seen", "some unseen", "any")
    wide = wide.sort_index(key=lambda level: level.map(lower_edge if level.name == "distance_bin" else groups.index))
    print(wide.to_string(float_format=_number))
    print(f"\nwall time {wall_s:.0f} s")


def write_figure(by_distance: pd.DataFrame, sources: pd.DataFrame, path: str | Path) -> Path:
    """Eval error by distance bin, one colour per split kind, with the fit error as a dashed line."""
    fig = error_by_distance_figure(by_distance[by_distance["ingredients"] == "any"], hue="split")
    ax = fig.axes[0]
    ax.axhline(sources.loc[0, "mae_log10"], color="0.3", linestyle="--", linewidth=1)
    ax.annotate("train (fit)", (ax.get_xlim()[0], sources.loc[0, "mae_log10"]), fontsize=8,
                xytext=(4, 3), textcoords="offset points")
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------------------
# the book page (book/error_sources.md), rendered from the result file
# --------------------------------------------------------------------------------------------------------------
def _runs(results: dict, split: str) -> list[dict]:
    return [r for r in results["summary"] if r["split"] == split and r["seed"] != "mean"]


def _split_score(results: dict, split: str, key: str) -> Score:
    """Mean ± SD over the splits of one kind."""
    return Score.of([r[key] for r in _runs(results, split)], over="splits")


def _bin(results: dict, split: str, distance_bin: str) -> dict | None:
    return next((r for r in results["by_distance"] if r["split"] == split and r["distance_bin"] == distance_bin
                 and r["ingredients"] == "any"), None)


def _kinds(held: list[dict]) -> str:
    """``2 actives, an emollient``: the held-out materials by family."""
    counts = pd.Series([m["family"] for m in held]).value_counts(sort=False)
    return ", ".join(f"{n} {fam}s" if n > 1 else f"a{'n' if fam[0] in 'aeiou' else ''} {fam}"
                     for fam, n in counts.items())


def render_key_result(results: dict) -> str:
    """The page's key result: fit error and eval error of known materials' new combinations (mean ± SD over the
    splits), and formulas with an unseen material against those, worded by compare."""
    fit = _split_score(results, "random", "train_mae_log10")
    rnd = _split_score(results, "random", "eval_mae_log10")
    mat = _split_score(results, "material", "eval_mae_log10")
    return (f"On the small synthetic lab (log10 MAE, {len(_runs(results, 'random'))} splits of each kind), the models "
            f"fit their training formulas to {fit.text()}, and held-out formulas whose materials were all seen (new "
            f"combinations) cost {rnd.text()}, {rnd.value / fit.value:.1f} times the fit error. "
            + compare(mat, rnd, "held-out formulas that each hold an unseen material",
                      "held-out formulas of seen materials", what="eval error").sentence)


def render_tables(results: dict) -> str:
    """The error sources (pooled), the error by distance bin, and each split's eval error."""
    lines = ["| formulas | n | MAE (cP) | MAE (log10) |", "| --- | --: | --: | --: |"]
    for r in results["sources"]:
        lines.append(f"| {r['formulas']} | {r['n']:,} | {format_number(r['mae'])} | {r['mae_log10']:.3f} |")
    lines += ["", "Eval error by L1 distance to the nearest training formula:", "",
              "| distance | random: n | random: MAE log10 | random: MAE cP | material: n | material: MAE log10 "
              "| material: MAE cP |", "| --- | --: | --: | --: | --: | --: | --: |"]
    bins = [r["distance_bin"] for r in results["by_distance"] if r["split"] == "random" and r["ingredients"] == "any"]
    for b in bins:
        cells = []
        for split in ("random", "material"):
            r = _bin(results, split, b)
            cells += ([f"{r['n']:,}", f"{r['mae_log10']:.3f}", format_number(r["mae"])] if r else ["", "", ""])
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "![Eval MAE (log10) by distance to the nearest training formula, random against material split; "
              "dashed: fit error](figures/error_sources.png)", "", "Eval error of each split (log10):", "",
              "| random: seed | random: MAE | material: seed | material: MAE | held-out materials |",
              "| --: | --: | --: | --: | --- |"]
    for a, b in zip(_runs(results, "random"), _runs(results, "material")):
        lines.append(f"| {a['seed']} | {a['eval_mae_log10']:.3f} | {b['seed']} | {b['eval_mae_log10']:.3f} | "
                     f"{_kinds(b.get('held_out', []))} |")
    return "\n".join(lines)


def render_findings(results: dict) -> str:
    """What the tables say, in compare sentences and ranges read from them."""
    rnd_runs, mat_runs = _runs(results, "random"), _runs(results, "material")
    lo, hi = min(r["eval_mae_log10"] for r in rnd_runs), max(r["eval_mae_log10"] for r in rnd_runs)
    inside = [r for r in mat_runs if lo <= r["eval_mae_log10"] <= hi]
    above = [r for r in mat_runs if r["eval_mae_log10"] > hi]
    out = [f"* **Unseen materials, split by split.** {len(inside)} of {len(mat_runs)} material splits fall within "
           f"the range of the random splits ({lo:.3f}-{hi:.3f} log10)"
           + "".join(f"; split {r['seed']} ({_kinds(r.get('held_out', []))}) reaches {r['eval_mae_log10']:.3f}"
                     for r in above) + "."]
    pooled = f"pooled over {len(rnd_runs)} splits"
    first = _bin(results, "random", "0-0.1")
    fit = next(r for r in results["sources"] if r["formulas"].startswith("train"))
    if first:
        out.append(f"* **Near formulas.** {first['n']:,} of the random-split eval formulas lie within 0.1 of a "
                   f"training formula; their log10 MAE is {first['mae_log10']:.3f} ({pooled}), "
                   f"{first['mae_log10'] / fit['mae_log10']:.1f} times the fit error ({fit['mae_log10']:.3f}).")
    for b in ("0-0.1", "0.25-0.5"):
        r, m = _bin(results, "random", b), _bin(results, "material", b)
        if r and m:
            out.append(f"* **Distance {b}, unseen material against none.** "
                       + compare(Score(m["mae_log10"], note=pooled), Score(r["mae_log10"], note=pooled),
                                 "material-split formulas", "random-split formulas", what="log10 MAE").sentence)
    med = results.get("median_measured_random_eval", {})
    near, far = _bin(results, "random", "0-0.1"), _bin(results, "random", "0.25-0.5")
    if near and far and "0-0.1" in med and "0.25-0.5" in med:
        out.append(f"* **In cP.** The random-split eval MAE is {format_number(near['mae'])} cP at distance 0-0.1 and "
                   f"{format_number(far['mae'])} cP at 0.25-0.5; the median measured viscosity of those formulas is "
                   f"{format_number(med['0-0.1'])} and {format_number(med['0.25-0.5'])} cP, and thick formulas "
                   "dominate any cP mean.")
    held = [m for r in mat_runs for m in r.get("held_out", [])]
    if held:
        contents = [m["median_content"] * 100 for m in held]
        out.append(f"* **Which materials were held out.** Median contents {format_number(min(contents), 2)}-"
                   f"{format_number(max(contents), 2)} %; the material splits trained on "
                   f"{min(r['train_formulas'] for r in mat_runs):,.0f}-{max(r['train_formulas'] for r in mat_runs):,.0f}"
                   f" formulas, the random splits on {rnd_runs[0]['train_formulas']:,.0f}.")
    return "\n".join(out)


def render_protocol(results: dict) -> str:
    """The run's settings and wall time, and which split seeds the material splits use."""
    mat = _runs(results, "material")
    seeds = [int(r["seed"]) for r in mat]
    passed = sorted(set(range(max(seeds) + 1)) - set(seeds))
    n_eval = [int(r["eval_formulas"]) for r in mat]
    k = [int(r["held_out_materials"]) for r in mat]
    return (f"`{results['data']}` ({results['n_formulas']:,} formulas, {results['n_materials']} materials), "
            f"embedding dimension {results['embedding_dim']}, {results['steps']:,} steps, otherwise the defaults; "
            f"{results['n_seeds']} splits of each kind; {format_number(results['wall_s'])} s wall time on one CPU "
            f"thread of a shared machine. The material splits hold out {min(k)}-{max(k)} materials and put "
            f"{min(n_eval)}-{max(n_eval)} formulas in eval; they use split seeds {', '.join(map(str, seeds))}"
            + (f" (seeds {', '.join(map(str, passed))} put far more than "
               f"{results['eval_fraction'] * 100:.0f} ± {results['tolerance'] * 100:.0f} % of the formulas in eval "
               "with their first held-out material alone)" if passed else "") + ".")


#: Regions of book/error_sources.md filled from the result file: marker name -> render function.
SECTIONS = {"key-result": render_key_result, "error-protocol": render_protocol, "error-tables": render_tables,
            "error-findings": render_findings}


def write_book(results: dict, path: str | Path) -> Path:
    """Fill each rendered region of :data:`SECTIONS` between its ``<!-- NAME -->`` markers on the page."""
    return fill_from_results(results, SECTIONS, path)


def main() -> None:
    args = parse_args()
    if args.render:
        out = fill_from_results(json.loads(args.render.read_text()), SECTIONS, args.book)
        print(f"wrote {out}" if args.book else out)
        return
    torch.set_num_threads(1)
    start = time.perf_counter()
    base = RunParams(data=args.data, embedding_dim=args.dim, steps=args.steps, runs_dir=args.runs_dir, device="cpu")
    data, _ = resolve_data(base)
    summary, tables = train_runs(base, data, args, start)
    by_distance, sources = error_sources(tables)
    wall_s = time.perf_counter() - start
    print_tables(data, args, summary, sources, by_distance, wall_s)
    if args.json:
        write_json({"data": data.name, "n_formulas": data.n_formulas, "n_materials": data.n_materials,
                    "steps": args.steps, "embedding_dim": args.dim, "n_seeds": args.n_seeds,
                    "eval_fraction": args.eval_fraction, "tolerance": args.tolerance, "wall_s": round(wall_s, 1),
                    "summary": summary.to_dict("records"), "sources": sources.to_dict("records"),
                    "by_distance": by_distance.to_dict("records"),
                    "median_measured_random_eval": median_measured(tables)}, Path(args.json))
    if args.figure:
        write_figure(by_distance, sources, args.figure)


if __name__ == "__main__":
    main()
