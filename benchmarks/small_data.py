"""Small data: where do the classical baselines beat mrl, and which settings close the gap? (issue 30; not a test)

    python benchmarks/small_data.py [--steps auto] [--seeds 0 1 2] [--data NAME ...] [--json PATH] [--work DIR]
    python benchmarks/small_data.py --render [--json PATH] [--page book/small_data.md]

Data sets: the small synthetic lab (``synth:small``, 3,000 formulas) subsampled to 300, 1,000 and 3,000 formulas (one
seeded subsample per size), Matbench steels (312 steels) when its wheel is cached (never downloaded here), and the
vendored liquid viscosity data subsampled to 500 and 2,000 rows (log10 cP at temperature T). The melt data (gpvisc
wheel) is not cached on the machine this ran on: no melt row.

For each data set and seed, each candidate setting of :data:`CANDIDATES` is one ordinary run
(:func:`mrl.runs.run_experiment`: random split by formula, ``eval_fraction`` 0.2, ``split_seed`` = seed, 10 % of the
training formulas held out as calib). The run fits its own baselines (:mod:`mrl.run_baselines`) on the same split.
A row of the table: mrl with the package defaults (``steps: auto``, ``small_data: auto``: :mod:`mrl.small_data`
picks the settings by the number of training formulas) and the best baseline (chosen per seed on calib), mean ± SD
of the eval error over the seeds, the verdict worded by :func:`mrl.wording.compare`, and the fit seconds of each.
The other candidates (the small-data settings forced off or on) show what the size rule chose between; a candidate
whose resolved params equal the defaults' is not trained again (the same run).

The headline error is the MAE of log10 for a log target (the lab's viscosity), else the MAE in the property's unit
(steels: MPa). ``--steps`` (default ``auto``, the package default) can fix the training length instead.
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
from mrl.runs import plan_run, run_experiment
from mrl.small_data import SMALL_DATA, SMALL_DATA_MAX_FORMULAS
from mrl.synth import make_lab
from mrl.wheels import cache_dir
from mrl.wording import BETTER, Score, compare, format_number

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "small_data.json"
PAGE = ROOT / "book" / "small_data.md"

#: Lab sizes (formulas) of the subsamples.
LAB_SIZES = (300, 1000, 3000)
#: Liquid viscosity subsamples (rows: measurements at a temperature).
LIQUID_SIZES = (500, 2000)
#: Settings a data set needs (its conditions and target), by folder-name prefix: the liquid data's target is already
#: log10 cP (no transform), its contents are mole fractions (no content scaling), the head sees 1000/T.
DATA_PARAMS: dict[str, dict[str, Any]] = {
    "liquid": {"target": "viscosity", "conditions": ["T"], "inverse_conditions": ["T"], "target_transform": "none", "content_scale": "none"},
}
#: Candidate settings of mrl (name -> params). ``defaults``: the package defaults (the table's mrl); ``net only``:
#: without the small-data settings (``small_data: off``); ``stacked``: with them at any size (``small_data: on``).
CANDIDATES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "net only": {"small_data": "off"},
    "stacked": {"small_data": "on"},
}
#: The candidate whose eval error is the table's mrl.
HEADLINE = "defaults"


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
    liquid = load_dataset("liquid_viscosity")
    for size in LIQUID_SIZES:  # rows (measurements), split by formula as everywhere
        keep = np.zeros(liquid.n_samples, bool)
        keep[np.random.default_rng(0).choice(liquid.n_samples, size=size, replace=False)] = True
        folder = work / f"liquid_{size}"
        save_formulas(liquid.subset(keep), folder)
        out[f"liquid {size:,}"] = folder
    return out


def candidate_params(folder: Path, name: str, seed: int, candidate: str, steps: int | str,
                     runs: Path) -> RunParams:
    """The params of one run of a candidate setting."""
    every = {} if steps == "auto" else {"eval_every": max(int(steps) // 10, 1)}
    extra = DATA_PARAMS.get(folder.name.split("_")[0], {})
    return RunParams(name=name, runs_dir=str(runs), data=str(folder), split_seed=seed, seed=seed, steps=steps,
                     snapshot_every=100_000, checkpoint_every=100_000, device="cpu", **every, **extra,
                     **CANDIDATES[candidate])


def resolved(params: RunParams) -> tuple:
    """What a run with ``params`` trains (its plan's params but the name): equal keys = the same run."""
    values = plan_run(params).params.to_dict()
    return tuple((k, str(v)) for k, v in values.items() if k not in ("name", "runs_dir", "small_data"))


def run_one(params: RunParams, candidate: str) -> dict[str, Any]:
    """One run of a candidate setting; its calib and eval errors and those of its baselines."""
    start = time.perf_counter()
    out = run_experiment(params, overwrite=True, progress=False)
    wall = time.perf_counter() - start
    metrics, base = read_json(out / METRICS), read_json(out / BASELINES)
    metric = base["metric"]
    models = {label: {"calib": m["calib"][metric], "eval": m["eval"][metric], "fit_s": m["fit_s"]}
              for label, m in base["models"].items()}
    # mrl's fit time: the whole run (stacking base, training, outputs) less its baselines
    return {"candidate": candidate, "seed": params.seed, "metric": metric, "calib": metrics["calib"][metric],
            "eval": metrics["eval"][metric], "fit_s": round(wall - base["wall_s"], 2), "train_s": metrics["wall_s"],
            "run_s": round(wall, 2),
            "steps": metrics["steps"], "best_step": metrics.get("best_step"), "step_budget": metrics.get("step_budget"),
            "stack": metrics.get("stack"), "small_data": metrics.get("small_data"), "baselines": models,
            "best_baseline": base["best"], "n_train": metrics["train"]["n"]}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per data set: mrl with the defaults (:data:`HEADLINE`) and the best baseline (chosen per seed on
    calib), mean ± SD of the eval error over seeds, the verdict, and each candidate's own eval error."""
    rows = []
    for data in dict.fromkeys(r["data"] for r in runs):
        mine = [r for r in runs if r["data"] == data]
        head = [r for r in mine if r["candidate"] == HEADLINE]
        seeds = [r["seed"] for r in head]
        at = {r["seed"]: r for r in head}
        base_names = [at[s]["best_baseline"] for s in seeds]
        a = Score.of([at[s]["eval"] for s in seeds])
        b = Score.of([at[s]["baselines"][at[s]["best_baseline"]]["eval"] for s in seeds])
        mean = Score.of([at[s]["baselines"]["mean of train"]["eval"] for s in seeds])
        best_name = max(set(base_names), key=base_names.count)
        words = compare(a, b, "mrl", best_name, what="eval error")
        names = list(dict.fromkeys(r["candidate"] for r in mine))
        per_candidate = {c: Score.of([r["eval"] for r in mine if r["candidate"] == c]).__dict__ for c in names}
        per_calib = {c: Score.of([r["calib"] for r in mine if r["candidate"] == c]).__dict__ for c in names}
        rows.append({"data": data, "metric": head[0]["metric"], "n_train": head[0]["n_train"], "seeds": seeds,
                     "mrl": a.__dict__, "mrl_fit_s": float(np.mean([at[s]["fit_s"] for s in seeds])),
                     "stack": [at[s]["stack"] for s in seeds], "steps": [at[s]["steps"] for s in seeds],
                     "step_budget": [at[s]["step_budget"] for s in seeds],
                     "small_data": at[seeds[0]]["small_data"],
                     "baseline": b.__dict__, "mean_of_train": mean.__dict__, "baseline_names": base_names,
                     "baseline_fit_s": float(np.mean([at[s]["baselines"][at[s]["best_baseline"]]["fit_s"]
                                                      for s in seeds])),
                     "verdict": words.verdict, "sentence": words.sentence, "difference": words.difference,
                     "relative": words.relative, "candidates": per_candidate, "candidates_calib": per_calib})
    return rows


def render(result: dict[str, Any]) -> str:
    """The book page (Markdown) from a result file's contents."""
    steps = result["steps"]
    length = ("`steps: auto` (the best state on an inner validation share of the training formulas, over a budget "
              "that grows with the data)" if steps == "auto" else f"{steps:,} steps")
    lines = ["# Small data: mrl against the baselines", "",
             "*Generated by `python benchmarks/small_data.py --render` from `benchmarks/results/small_data.json`; "
             "do not edit by hand.*", "",
             "Every run fits classical baselines on its own split (`baselines.json`, a line of the train summary; "
             "`baselines: false` skips them). This page asks whether mrl's **defaults** hold their own against them "
             "on a few hundred to a few thousand formulas. Below "
             f"{SMALL_DATA_MAX_FORMULAS:,} training formulas the defaults (`small_data: auto`, `mrl.small_data`) "
             "switch to the small-data settings: mrl learns the residual of the better of ridge and LightGBM on the "
             "contents (`stack: auto`, chosen on out-of-fold predictions of the training formulas), with "
             + ", ".join(f"`{k}: {v}`" for k, v in SMALL_DATA.items() if k != "stack") + ". "
             "Protocol: random split by formula (eval 20 %, 10 % of the training formulas held out as calib), seeds "
             + ", ".join(map(str, result["seeds"])) + f"; training length {length}. The best baseline is chosen per "
             "seed on calib, then read on eval.", "",
             "| data | training formulas | error | mrl (defaults) | best baseline | verdict | mean of train | "
             "mrl fit s | baseline fit s | stacked on |",
             "|---|---:|---|---|---|---|---|---:|---:|---|"]
    for row in result["rows"]:
        a, b = Score(**row["mrl"]), Score(**row["baseline"])
        unit = "log10 MAE" if row["metric"] == "mae_log10" else "MAE"
        base_name = max(set(row["baseline_names"]), key=row["baseline_names"].count)
        stacked = ", ".join(str(s or "none") for s in row["stack"])
        lines.append(f"| {row['data']} | {row['n_train']:,} | {unit} | {a.text()} | {b.text()} ({base_name}) | "
                     f"{row['verdict']} | {Score(**row['mean_of_train']).text()} | {format_number(row['mrl_fit_s'])} | "
                     f"{format_number(row['baseline_fit_s'])} | {stacked} |")
    lost = [row for row in result["rows"] if row["verdict"] == "worse"]
    lines += ["", "## In words", "",
              f"mrl with its defaults loses {len(lost)} of {len(result['rows'])} rows to the best baseline"
              + (f", by {min(abs(r['relative']) for r in lost) * 100:.0f} to "
                 f"{max(abs(r['relative']) for r in lost) * 100:.0f} % of the baseline's error" if lost else "")
              + ". Where a row is lost, a run's train summary says so (`mrl.run_baselines.summary_line`).", ""]
    lines += [f"- **{row['data']}**: {row['sentence']} {row['small_data'] or ''}." for row in result["rows"]]
    names = list(result["candidates"])
    lines += ["", "## What the size rule chose between (eval error)", "",
              "| data | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in result["rows"]:
        cells = [Score(**row["candidates"][c]).text() if c in row["candidates"] else "" for c in names]
        lines.append(f"| {row['data']} | " + " | ".join(cells) + " |")
    better = []
    for row in result["rows"]:
        for name in names:
            if name == HEADLINE or name not in row["candidates"]:
                continue
            on_eval = compare(Score(**row["candidates"][name]), Score(**row["mrl"]), f"`{name}`", "the defaults",
                              what="eval error")
            on_calib = compare(Score(**row["candidates_calib"][name]), Score(**row["candidates_calib"][HEADLINE]),
                               f"`{name}`", "the defaults", what="calib error")
            if BETTER in (on_eval.verdict, on_calib.verdict):
                better.append(f"- **{row['data']}**: {on_calib.sentence} {on_eval.sentence}")
    if better:
        lines += ["", "Where another setting does better than the defaults (the size rule chose wrong; calib is what an "
                  "inner choice could have seen):", "", *better]
    lines += ["", "Candidates: " + "; ".join(f"`{k}`: {v or 'the package defaults'}"
                                             for k, v in result["candidates"].items())
              + ". A candidate whose resolved settings equal the defaults' is the same run. The threshold "
              f"({SMALL_DATA_MAX_FORMULAS:,} training formulas) and the settings were chosen on inner splits of "
              "training data (calib and inner validation shares), never on these eval numbers.", "",
              f"Total wall time {format_number(result['total_wall_s'])} s on 2 CPU cores shared with other jobs "
              "(fit seconds are inflated by the sharing)."]
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or ``--render`` its page)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="auto", help="auto (default) or a fixed number of steps")
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
    steps: int | str = args.steps if args.steps == "auto" else int(args.steps)
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    folders = prepare(args.work / "data", steels=not args.no_steels)
    if args.data:
        folders = {k: v for k, v in folders.items() if k in args.data}
    runs: list[dict[str, Any]] = []
    for data, folder in folders.items():
        for seed in args.seeds:
            done: dict[tuple, dict] = {}
            for candidate in CANDIDATES:
                params = candidate_params(folder, f"{folder.name}_{candidate.replace(' ', '_')}_s{seed}", seed,
                                          candidate, steps, args.work / "runs")
                key = resolved(params)
                if key in done:  # the same settings as an earlier candidate: the same run
                    row = {**done[key], "candidate": candidate, "same_as": done[key]["candidate"]}
                else:
                    row = {"data": data, **run_one(params, candidate)}
                    done[key] = row
                runs.append(row)
                print(f"{data} seed {seed} {candidate}: calib {row['calib']:.4g}, eval {row['eval']:.4g} "
                      f"({row['metric']}; stack {row['stack']}, {row['steps']} of {row['step_budget']} steps); best "
                      f"baseline {row['best_baseline']} eval {row['baselines'][row['best_baseline']]['eval']:.4g}; "
                      f"{row['run_s']:.0f} s" + (f" (same run as {row['same_as']})" if "same_as" in row else ""),
                      flush=True)
                result = {"steps": steps, "seeds": args.seeds, "candidates": CANDIDATES,
                          "rows": summarise(runs), "runs": runs, "total_wall_s": round(time.perf_counter() - start, 1)}
                write_json(result, args.json)
    for row in result["rows"]:
        print(row["data"], row["sentence"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
