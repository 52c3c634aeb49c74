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
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mrl.data import FormulaData
from mrl.error_sources import distance_errors, error_by_distance, log10_metrics
from mrl.io import write_json
from mrl.metrics import log10_mae
from mrl.params import RunParams
from mrl.plots import error_by_distance_figure, save_figure
from mrl.runs import load_run, resolve_data, run_experiment
from mrl.splits import make_split

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
        rows.append({"split": split, "seed": seed, "held_out_materials": len(held), **summary_row(path, table)})
        print(f"  {split} seed {seed} done ({time.perf_counter() - start:.0f} s)", flush=True)
        if split == "material":
            print("    held out: " + ", ".join(f"{r.name} ({r.family}, {r.n_formulas} formulas, median content "
                                               f"{r.median_content:.2g})" for r in held.itertuples()), flush=True)
    summary = pd.DataFrame(rows)
    mean = summary.drop(columns="seed").groupby("split", sort=False).mean().reset_index().assign(seed="mean")
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


def print_tables(data: FormulaData, args: argparse.Namespace, summary: pd.DataFrame, sources: pd.DataFrame,
                 by_distance: pd.DataFrame, wall_s: float) -> None:
    pd.set_option("display.width", 200)
    print(f"\n{data.name}: {data.n_formulas} formulas, {data.n_materials} materials; dim {args.dim}, "
          f"{args.steps} steps, {args.n_seeds} splits of each kind")
    print("\n## splits (MAE in the property's units and in log10)")
    print(summary.to_string(index=False, float_format=_number))
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


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    base = RunParams(data=args.data, embedding_dim=args.dim, steps=args.steps, runs_dir=args.runs_dir, device="cpu")
    data, _ = resolve_data(base)
    summary, tables = train_runs(base, data, args, start)
    by_distance, sources = error_sources(tables)
    wall_s = time.perf_counter() - start
    print_tables(data, args, summary, sources, by_distance, wall_s)
    if args.json:
        write_json({"data": data.name, "steps": args.steps, "embedding_dim": args.dim, "n_seeds": args.n_seeds,
                    "eval_fraction": args.eval_fraction, "wall_s": round(wall_s, 1),
                    "summary": summary.to_dict("records"), "sources": sources.to_dict("records"),
                    "by_distance": by_distance.to_dict("records")}, Path(args.json))
    if args.figure:
        write_figure(by_distance, sources, args.figure)


if __name__ == "__main__":
    main()
