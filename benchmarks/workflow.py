"""The formulator's day, timed: a 5,000-formula lab as one workbook, then validate, train an ensemble of 5, predict
300 new formulas, design 10 formulas for targets and build the run's report, each step through the ``mrl`` command
line (a subprocess, as a user would run it). Prints each step's wall time as a table and writes a JSON result;
``--page`` renders that JSON as the book page ``book/workflow.md``.

    python benchmarks/workflow.py                      # the whole day (goal: under 10 minutes on 2 cores)
    python benchmarks/workflow.py --format csv         # the lab as a CSV folder instead of one workbook
    python benchmarks/workflow.py --page-only          # re-render book/workflow.md from the JSON result

The lab: the synthetic generator (:func:`mrl.synth.make_lab`) with 500 materials and 5,300 formulas; 5,000 go into
the workbook (sheets ``formulas``, ``properties``, ``materials``), 300 are kept aside without their measurement as
the new formulas to predict. The 10 design tasks: the first 10 eval formulas of the run, target twice their
measurement. Every step over 10 s prints its elapsed time and the last line of its output every 10 s; each step's
full output is in ``<work>/logs/<step>.log``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "workflow.json"
PAGE = ROOT / "book" / "workflow.md"
GOAL_S = 600.0
TICK_S = 10.0


def write_lab(folder: Path, fmt: str, n_formulas: int, n_new: int, n_materials: int, seed: int) -> tuple[Path, Path]:
    """The lab as one workbook (``lab.xlsx``) or a CSV folder (``lab/``), and ``new_formulas.csv`` (long format,
    no measurement). Returns ``(data path, new formulas path)``."""
    from mrl.synth import LabPreset, make_lab
    from mrl.workbook import write_workbook

    data, _ = make_lab(LabPreset("workflow", n_materials=n_materials, n_formulas=n_formulas + n_new), seed=seed)
    ids = list(data.formula_ids)
    new_ids = set(ids[-n_new:])
    forms = data.formulas.copy()
    forms["content"] = (100.0 * forms["content"]).round(4)  # percent, as a lab keeps them
    keep = ~forms["formula_id"].isin(new_ids)
    props = data.properties[~data.properties["formula_id"].isin(new_ids)][["formula_id", *data.targets]]
    mats = data.materials[[c for c in ("material_id", "name", "family") if c in data.materials]]
    new_path = folder / "new_formulas.csv"
    forms[~keep].to_csv(new_path, index=False)
    if fmt == "xlsx":
        path = folder / "lab.xlsx"
        write_workbook({"formulas": forms[keep], "properties": props, "materials": mats}, path)
    else:
        path = folder / "lab"
        path.mkdir(exist_ok=True)
        forms[keep].to_csv(path / "formulas.csv", index=False)
        props.to_csv(path / "properties.csv", index=False)
        mats.to_csv(path / "materials.csv", index=False)
    return path, new_path


def _last_line(log: Path) -> str:
    """The last non-empty line (or progress-bar state) of a log file."""
    try:
        text = log.read_bytes()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [p.strip() for p in text.replace("\r", "\n").splitlines() if p.strip()]
    return parts[-1][:110] if parts else ""


def run_step(name: str, argv: list[str], cwd: Path, logs: Path, env: dict) -> float:
    """Run one command, its output into ``logs/<name>.log``; print progress every :data:`TICK_S` seconds while it
    runs. Returns the wall time; raises on a non-zero exit status (naming the log)."""
    log = logs / (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") + ".log")
    done = threading.Event()
    start = time.perf_counter()

    def tick() -> None:
        while not done.wait(TICK_S):
            print(f"  [{name}] {time.perf_counter() - start:5.0f} s  {_last_line(log)}", flush=True)

    print(f"{name}: {' '.join(argv)}", flush=True)
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    with log.open("w") as out:
        proc = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    done.set()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}) after {wall:.0f} s; see {log}:\n"
                           f"{log.read_text()[-2000:]}")
    print(f"  [{name}] done in {wall:.1f} s", flush=True)
    return wall


def day(work: Path, fmt: str, steps: int, ensemble: int, n_formulas: int, n_new: int, n_design: int,
        n_materials: int, seed: int) -> dict:
    """Run the whole day in ``work``; return the result (steps with wall times, settings, machine)."""
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    mrl = [sys.executable, "-m", "mrl.cli"]
    rows = []

    start = time.perf_counter()
    data, new = write_lab(work, fmt, n_formulas, n_new, n_materials, seed)
    rows.append({"step": "write the lab", "command": f"(Python) {data.name}, {new.name}",
                 "wall_s": time.perf_counter() - start})
    print(f"write the lab: {data} ({n_formulas} formulas), {new} ({n_new} new) in {rows[-1]['wall_s']:.1f} s")
    run = work / "runs" / "workflow"
    if run.exists():
        shutil.rmtree(run)
    steps_cmds = [
        ("validate", [*mrl, "validate", data.name, "--set", "target=viscosity"]),
        ("train", [*mrl, "train", "--set", f"data={data.name}", "target=viscosity", f"ensemble={ensemble}",
                   f"steps={steps}", "name=workflow"]),
        ("predict", [*mrl, "predict", "runs/workflow", "--formulas", new.name, "--out", "predictions.csv",
                     "--overwrite"]),
    ]
    for name, argv in steps_cmds:
        rows.append({"step": name, "command": " ".join(["mrl", *argv[3:]]),
                     "wall_s": run_step(name, argv, work, logs, env)})
    preds = pd.read_parquet(run / "predictions.parquet")
    tasks = preds[preds["split"] == "eval"].head(n_design)
    design_calls = []
    for i, task in enumerate(tasks.itertuples()):
        out = work / "designs" / str(task.formula_id)
        if out.exists():
            shutil.rmtree(out)
        argv = [*mrl, "design", "runs/workflow", "--formula", str(task.formula_id), "--target",
                f"{2 * task.y_true:.6g}", "--out", f"designs/{task.formula_id}"]
        design_calls.append(run_step(f"design {i + 1}/{len(tasks)}", argv, work, logs, env))
    rows.append({"step": f"design ({len(tasks)} formulas)", "command": "mrl design runs/workflow --formula ID "
                 "--target 2xMEASURED --out designs/ID (one call each)", "wall_s": sum(design_calls),
                 "calls_s": design_calls})
    argv = [*mrl, "report", "runs/workflow", "--out", "report"]
    rows.append({"step": "report", "command": " ".join(["mrl", *argv[3:]]), "wall_s": run_step("report", argv, work, logs, env)})
    total = sum(r["wall_s"] for r in rows)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"steps": rows, "total_s": total, "goal_s": GOAL_S, "met": total < GOAL_S,
            "settings": {"format": fmt, "formulas": n_formulas, "new_formulas": n_new, "materials": n_materials,
                         "design_tasks": int(len(tasks)), "ensemble": ensemble, "train_steps": steps, "seed": seed,
                         "OMP_NUM_THREADS": env["OMP_NUM_THREADS"]},
            "run": {"eval_mae": metrics.get("eval", {}).get("mae"), "eval_r2": metrics.get("eval", {}).get("r2"),
                    "coverage_80_eval": metrics.get("intervals", {}).get("eval", {}).get("coverage_80")},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_1min_at_end": os.getloadavg()[0]}}


def table(result: dict) -> str:
    """The steps and wall times as a Markdown table (the total last)."""
    lines = ["| step | command | wall time (s) |", "| --- | --- | --: |"]
    lines += [f"| {r['step']} | `{r['command']}` | {r['wall_s']:.1f} |" for r in result["steps"]]
    lines.append(f"| **total** | | **{result['total_s']:.1f}** |")
    return "\n".join(lines)


def render_page(result: dict | None) -> str:
    """The book page of the workflow: what it runs and, when measured, its table from the JSON result."""
    head = ["# The formulator's day, timed", "",
            "A lab's day with mrl, each step through the command line as a user runs it: check the lab's data "
            "(by default a 5,000-formula workbook), train an ensemble (5 members), predict new formulas (300), "
            "design formulas for targets (10, twice their measurement), build the run's report. "
            "`python benchmarks/workflow.py` runs it and writes "
            "`benchmarks/results/workflow.json`; this page is rendered from that file "
            "(`python benchmarks/workflow.py --page-only`). The goal: under 10 minutes on a 2-core machine.", ""]
    if result is None:
        return "\n".join(head + ["*Not measured yet: run `python benchmarks/workflow.py`.*", ""])
    s = result["settings"]
    fmt = "one workbook (`lab.xlsx`)" if s["format"] == "xlsx" else "a CSV folder"
    run = result.get("run", {})
    biggest = max(result["steps"], key=lambda r: r["wall_s"])
    calls = next((r.get("calls_s", []) for r in result["steps"] if r["step"].startswith("design")), [])
    busy = float(result["machine"].get("loadavg_1min_at_end", 0.0))
    lines = head + [
        f"Measured on {result['machine']['cpus']} cores ({s['OMP_NUM_THREADS']} torch thread per process): the "
        f"lab as {fmt}, {s['formulas']:,} formulas of {s['materials']:,} materials, an ensemble of {s['ensemble']} "
        f"trained {s['train_steps']:,} steps each, {s['new_formulas']} new formulas, {s['design_tasks']} design "
        "tasks (one `mrl design` call each).", "", table(result), "",
        f"Total **{result['total_s'] / 60:.1f} min** against the goal of {result['goal_s'] / 60:.0f} min"
        f" ({'met' if result['met'] else 'not met'}). The largest step is {biggest['step']} "
        f"({100 * biggest['wall_s'] / result['total_s']:.0f} % of the total)."
        + (f" One `mrl design` call took {min(calls):.0f}-{max(calls):.0f} s (median {sorted(calls)[len(calls) // 2]:.0f}"
           " s): each starts Python, reads the data and the members, and searches several supports from several "
           "starts through every member." if calls else "")
        + (f" Other jobs shared the machine ({busy:.1f} processes running or waiting on average at the end, on "
           f"{result['machine']['cpus']} cores), so these times are upper bounds." if busy > result['machine']['cpus']
           else ""), ""]
    if run.get("eval_mae") is not None:
        lines += [f"The trained ensemble: eval MAE {run['eval_mae']:,.0f} cP, eval R² {run['eval_r2']:.2f}, "
                  f"{100 * run['coverage_80_eval']:.0f} % of eval measurements inside their 80 % interval.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/mrl_workflow", help="working folder (the user's folder)")
    parser.add_argument("--format", choices=["xlsx", "csv"], default="xlsx")
    parser.add_argument("--steps", type=int, default=4000, help="training steps of each member")
    parser.add_argument("--ensemble", type=int, default=5)
    parser.add_argument("--formulas", type=int, default=5000)
    parser.add_argument("--new", type=int, default=300, help="new formulas to predict")
    parser.add_argument("--designs", type=int, default=10)
    parser.add_argument("--materials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULT), help="JSON result")
    parser.add_argument("--page", default=str(PAGE), help="book page rendered from the result ('' for none)")
    parser.add_argument("--page-only", action="store_true", help="only render the page from an existing result")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.page_only:
        result = day(Path(args.work), args.format, args.steps, args.ensemble, args.formulas, args.new, args.designs,
                     args.materials, args.seed)
        print("\n" + table(result))
        print(f"total {result['total_s']:.0f} s (goal {GOAL_S:.0f} s: {'met' if result['met'] else 'not met'})")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"result: {out}")
    if args.page:
        result = json.loads(out.read_text()) if out.exists() else None
        Path(args.page).write_text(render_page(result))
        print(f"page: {args.page}")


if __name__ == "__main__":
    main()
