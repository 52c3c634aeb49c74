"""Small data: where do the classical baselines beat mrl, and which settings close the gap? (issue 30; not a test)

    python benchmarks/small_data.py [--steps 1000] [--seeds 0 1 2] [--json PATH] [--work DIR]
    python benchmarks/small_data.py --render [--json PATH] [--page book/small_data.md]

Data sets: the small synthetic lab (``synth:small``, 3,000 formulas) subsampled to 300, 1,000 and 3,000 formulas (one
seeded subsample per size), and Matbench steels (312 steels) when its wheel is cached (never downloaded here).

For each data set and seed, each candidate setting of :data:`CANDIDATES` is one ordinary run
(:func:`mrl.runs.run_experiment`: random split by formula, ``eval_fraction`` 0.2, ``split_seed`` = seed, 10 % of the
training formulas held out as calib). The run fits its own baselines (:mod:`mrl.run_baselines`) on the same split.
mrl's setting is chosen per seed on the calib formulas only, and so is the best baseline; both are then read on eval.
A row of the table: mrl (chosen) and the best baseline, mean ± SD of the eval error over the seeds, the verdict
worded by :func:`mrl.wording.compare`, and the fit seconds of each.

The headline error is the MAE of log10 for a log target (the lab's viscosity), else the MAE in the property's unit
(steels: MPa). Every run trains ``--steps`` steps (default 1,000, far below the 20,000 of a default run: CPU time was
scarce), so "mrl" here means "mrl at that budget".
``--render`` writes the book page from the result file (no training; the table is summarised again from its runs).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mrl.data import save_formulas
from mrl.io import read_json, write_json, write_text
from mrl.params import RunParams
from mrl.public_data import DATASETS, load_dataset
from mrl.run_files import BASELINES, METRICS
from mrl.runs import run_experiment
from mrl.synth import make_lab
from mrl.wheels import cache_dir
from mrl.wording import Score, compare, format_number

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "small_data.json"
PAGE = ROOT / "book" / "small_data.md"

#: Lab sizes (formulas) of the subsamples.
LAB_SIZES = (300, 1000, 3000)
#: Candidate settings of mrl (name -> params), chosen per seed on calib. ``default``: the package defaults but the
#: steps; ``small``: fewer dimensions, a narrower head and stronger weight decay, with early stopping on an inner
#: validation part of the training formulas.
CANDIDATES: dict[str, dict[str, Any]] = {
    "default": {},
    "small": {"embedding_dim": 4, "hidden": [64, 64], "weight_decay": 1e-3, "embedding_weight_decay": 1e-3,
              "early_stopping": True, "patience": 4},
}


def prepare(work: Path, steels: bool) -> dict[str, Path]:
    """Write each data set's folder under ``work``; return ``{row name: folder}``."""
    out: dict[str, Path] = {}
    wheel = cache_dir() / "wheels" / f"{DATASETS['matbench_steels'].package}-{DATASETS['matbench_steels'].version}"
    if steels and any(p.name.startswith(wheel.name) for p in wheel.parent.glob("*.whl")):
        folder = work / "steels"
        save_formulas(load_dataset("matbench_steels"), folder)
        out["steels 312"] = folder
    elif steels:
        print(f"matbench_steels: no cached wheel under {wheel.parent}; row skipped (not downloaded)", flush=True)
    lab, _ = make_lab("small", seed=0)
    rng = np.random.default_rng(0)
    ids = np.asarray(lab.formula_ids)
    for size in LAB_SIZES:
        keep = set(rng.choice(ids, size=min(size, len(ids)), replace=False))
        folder = work / f"lab_{size}"
        save_formulas(lab.subset(lab.properties["formula_id"].isin(keep).to_numpy()), folder)
        out[f"lab {size:,}"] = folder
    return out


def run_one(folder: Path, name: str, seed: int, candidate: str, steps: int, runs: Path) -> dict[str, Any]:
    """One run of a candidate setting; its calib and eval errors and those of its baselines."""
    params = RunParams(name=name, runs_dir=str(runs), data=str(folder), split_seed=seed, seed=seed, steps=steps,
                       eval_every=max(steps // 10, 1), snapshot_every=steps, checkpoint_every=steps, device="cpu",
                       **CANDIDATES[candidate])
    start = time.perf_counter()
    out = run_experiment(params, overwrite=True, progress=False)
    wall = time.perf_counter() - start
    metrics, base = read_json(out / METRICS), read_json(out / BASELINES)
    metric = base["metric"]
    models = {label: {"calib": m["calib"][metric], "eval": m["eval"][metric], "fit_s": m["fit_s"]}
              for label, m in base["models"].items()}
    return {"candidate": candidate, "seed": seed, "metric": metric, "calib": metrics["calib"][metric],
            "eval": metrics["eval"][metric], "fit_s": metrics["wall_s"], "run_s": round(wall, 2),
            "steps": metrics["steps"], "best_step": metrics.get("best_step"), "baselines": models,
            "best_baseline": base["best"], "n_train": metrics["train"]["n"]}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per data set: mrl (setting chosen per seed on calib) and the best baseline (chosen per seed on calib),
    mean ± SD of the eval error over seeds, the verdict, and each candidate's own eval error."""
    rows = []
    for data in dict.fromkeys(r["data"] for r in runs):
        mine = [r for r in runs if r["data"] == data]
        seeds = sorted({r["seed"] for r in mine})
        chosen, base, base_names, chosen_names, mrl_s, base_s = [], [], [], [], [], []
        for seed in seeds:
            at = [r for r in mine if r["seed"] == seed]
            pick = min(at, key=lambda r: r["calib"])
            chosen.append(pick["eval"])
            chosen_names.append(pick["candidate"])
            mrl_s.append(pick["fit_s"])
            best = at[0]["best_baseline"]
            base.append(at[0]["baselines"][best]["eval"])
            base_names.append(best)
            base_s.append(at[0]["baselines"][best]["fit_s"])
        a, b = Score.of(chosen), Score.of(base)
        mean = Score.of([r["baselines"]["mean of train"]["eval"] for r in mine if r["candidate"] == mine[0]["candidate"]])
        best_name = max(set(base_names), key=base_names.count)
        words = compare(a, b, "mrl", best_name, what="eval error")
        per_candidate = {c: Score.of([r["eval"] for r in mine if r["candidate"] == c]).__dict__
                         for c in dict.fromkeys(r["candidate"] for r in mine)}
        rows.append({"data": data, "metric": mine[0]["metric"], "n_train": mine[0]["n_train"], "seeds": seeds,
                     "mrl": a.__dict__, "mrl_choices": chosen_names, "mrl_fit_s": float(np.mean(mrl_s)),
                     "baseline": b.__dict__, "mean_of_train": mean.__dict__, "baseline_names": base_names, "baseline_fit_s": float(np.mean(base_s)),
                     "verdict": words.verdict, "sentence": words.sentence, "difference": words.difference,
                     "relative": words.relative, "candidates": per_candidate})
    return rows


def render(result: dict[str, Any]) -> str:
    """The book page (Markdown) from a result file's contents."""
    lines = ["# Small data: mrl against the baselines", "",
             "*Generated by `python benchmarks/small_data.py --render` from `benchmarks/results/small_data.json`; "
             "do not edit by hand.*", "",
             "Every run now fits classical baselines on its own split (`baselines.json`, a line of the train summary; "
             "`baselines: false` skips them). This page asks where they beat mrl on a few hundred to a few thousand "
             "formulas. Protocol: random split by formula (eval 20 %, 10 % of the training formulas held out as "
             "calib), seeds " + ", ".join(map(str, result["seeds"])) + f"; every mrl run trains "
             f"{result['steps']:,} steps. mrl's setting (" + ", ".join(f"`{k}`" for k in result["candidates"]) +
             ") and the best baseline are each chosen per seed on calib, then read on eval.", "",
             "| data | training formulas | error | mrl (chosen) | best baseline | verdict | mean of train | mrl fit s "
             "| baseline fit s |",
             "|---|---:|---|---|---|---|---|---:|---:|"]
    for row in result["rows"]:
        a, b = Score(**row["mrl"]), Score(**row["baseline"])
        unit = "log10 MAE" if row["metric"] == "mae_log10" else "MAE"
        base_name = max(set(row["baseline_names"]), key=row["baseline_names"].count)
        lines.append(f"| {row['data']} | {row['n_train']:,} | {unit} | {a.text()} | {b.text()} ({base_name}) | "
                     f"{row['verdict']} | {Score(**row['mean_of_train']).text()} | {format_number(row['mrl_fit_s'])} | {format_number(row['baseline_fit_s'])} |")
    lost = [row for row in result["rows"] if row["verdict"] == "worse"]
    choices = [c for row in result["rows"] for c in row["mrl_choices"]]
    lines += ["", "## In words", "",
              f"mrl loses {len(lost)} of {len(result['rows'])} rows to the best baseline"
              + (f", by {min(abs(r['relative']) for r in lost) * 100:.0f} to {max(abs(r['relative']) for r in lost) * 100:.0f} %"
                 f" of the baseline's error" if lost else "") + ". "
              + "; ".join(f"`{c}` was chosen on calib in {choices.count(c)} of {len(choices)} runs"
                          for c in result["candidates"]) + ".", ""]
    lines += [f"- **{row['data']}**: {row['sentence']} mrl's setting chosen on calib: "
              f"{', '.join(row['mrl_choices'])}." for row in result["rows"]]
    lines += ["", "## Each candidate setting on eval", "",
              "| data | " + " | ".join(result["candidates"]) + " |", "|---|" + "---|" * len(result["candidates"])]
    for row in result["rows"]:
        cells = [Score(**row["candidates"][c]).text() if c in row["candidates"] else "" for c in result["candidates"]]
        lines.append(f"| {row['data']} | " + " | ".join(cells) + " |")
    lines += ["", "Candidate settings: " + "; ".join(f"`{k}`: {v or 'the package defaults'}"
                                                     for k, v in result["candidates"].items()) + ".", "",
              f"Total wall time {format_number(result['total_wall_s'])} s on 2 shared CPU cores."]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or ``--render`` its page)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", nargs="*", help="row names to run (default: all)")
    parser.add_argument("--no-steels", action="store_true")
    parser.add_argument("--json", type=Path, default=RESULT)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mrl_small_data"))
    parser.add_argument("--render", action="store_true", help="write the book page from --json and stop")
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    if args.render:  # the table is summarised again from the runs, so the file and the page always agree
        result = json.loads(args.json.read_text())
        result["rows"] = summarise(result["runs"])
        write_json(result, args.json)
        write_text(render(result), args.page)
        print(f"wrote {args.page}")
        return 0
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    folders = prepare(args.work / "data", steels=not args.no_steels)
    if args.data:
        folders = {k: v for k, v in folders.items() if k in args.data}
    runs: list[dict[str, Any]] = []
    for data, folder in folders.items():
        for seed in args.seeds:
            for candidate in CANDIDATES:
                name = f"{folder.name}_{candidate}_s{seed}"
                row = {"data": data, **run_one(folder, name, seed, candidate, args.steps, args.work / "runs")}
                runs.append(row)
                print(f"{data} seed {seed} {candidate}: calib {row['calib']:.4g}, eval {row['eval']:.4g} "
                      f"({row['metric']}); best baseline {row['best_baseline']} eval "
                      f"{row['baselines'][row['best_baseline']]['eval']:.4g}; {row['run_s']:.0f} s", flush=True)
                result = {"steps": args.steps, "seeds": args.seeds, "candidates": CANDIDATES,
                          "rows": summarise(runs), "runs": runs, "total_wall_s": round(time.perf_counter() - start, 1)}
                write_json(result, args.json)
    for row in result["rows"]:
        print(row["data"], row["sentence"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
