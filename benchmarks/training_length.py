"""Training length (issue 26): ``steps: auto``, the default of ``mrl train``, beside the fixed steps of each data set.

    python benchmarks/training_length.py --json benchmarks/results/training_length.json        # every data set
    python benchmarks/training_length.py --only lab,steels --json ...   # some data sets, merged into the file
    python benchmarks/training_length.py --only lab --seeds 1 --before --json ...  # one lab seed, the old rule too
    python benchmarks/training_length.py --render benchmarks/results/training_length.json [--book book/performance.md]

``steps: auto`` (:func:`mrl.train.resolve_steps`) keeps the state with the lowest validation MAE on an inner share of
the training formulas (``validation_fraction`` 0.1, never eval or test) over a budget of
:data:`mrl.train.AUTO_EPOCHS` epochs clipped to [:data:`mrl.train.AUTO_MIN_STEPS`, :data:`mrl.train.AUTO_MAX_STEPS`]
steps, the cosine schedule spread over that budget. Each data set's *fixed* row is the model its own benchmark
reports, with everything else the same:

* ``lab``: the bundled lab (``synth:small``, 3,000 formulas), random split by formula (eval 20 %, 10 % of the
  training formulas held out as calib, ``split_seed`` = seed), a plain network of dimension 10 (``small_data: off``),
  seeds 0, 1, 2 (``--seeds``; separate calls merge by seed); fixed: the old default of 20,000 steps. With
  ``--before`` also the rule before issue 26's fix (:data:`BEFORE`) on the same splits. Eval MAE of log10.
* ``steels``: Matbench steels, its 5 folds (:func:`mrl.public_data.matbench_folds`), the benchmark's best mrl row
  (mat2vec start, dimension 16, L1 loss; ``benchmarks/matbench.py``), fixed 1,500 steps. Test MAE, MPa.
* ``liquid``: the vendored liquid viscosity, mrl + RDKit features with the settings of
  ``benchmarks/liquid_viscosity.py`` (chosen on its inner split: fixed 3,000 steps), on the paper split and on 5
  folds by row (:func:`liquid_viscosity.row_folds`), LightGBM on descriptors beside. Test MAE, log10 cP.
* ``seed_scale``: ``mrl train --set data=synth:seed-scale embedding_dim=10`` with ``steps=20000`` and ``steps=auto``
  (baselines off: they do not change the model), beside the seed-scale sweep's run at dimension 10
  (``benchmarks/results/lab_seed_scale.json``, read when this ran). Eval MAE, cP.
* ``melt``: the melt benchmark's chosen row (head direct, dimension 16; ``benchmarks/melt_viscosity.py``), fixed
  12,000 steps, trained on the paper's train split, scored on its test split. Test RMSE, log10 Pa s.

Single-threaded, on 2 CPU cores shared with other jobs: wall times are those of a busy machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import liquid_viscosity as liquid  # noqa: E402  (benchmarks/liquid_viscosity.py)
import matbench  # noqa: E402  (benchmarks/matbench.py)
import melt_viscosity as melt  # noqa: E402  (benchmarks/melt_viscosity.py)
from liquid_viscosity import timed  # noqa: E402

import mrl.train  # noqa: E402
from mrl.book import fill_from_results, markdown_table  # noqa: E402
from mrl.estimator import MixtureRegressor  # noqa: E402
from mrl.io import read_json, write_json  # noqa: E402
from mrl.metrics import log10_mae  # noqa: E402
from mrl.params import RunParams  # noqa: E402
from mrl.public_data import load_dataset  # noqa: E402
from mrl.run_files import CHECKPOINT, METRICS  # noqa: E402
from mrl.runs import plan_run, run_experiment  # noqa: E402
from mrl.wording import Score, compare, format_number  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "training_length.json"
PAGE = ROOT / "book" / "performance.md"
#: Seeds of the lab rows.
LAB_SEEDS = (0, 1, 2)
#: The lab's fixed row: the old default of ``mrl train``.
LAB_FIXED_STEPS = 20000
#: The rule before issue 26's fix (``--before``, run beside on the lab): a budget of 1,000 epochs, the validation MSE,
#: the kept state of that run (no refit). Its patience (a quarter of the checks) is not restored: it is the full budget.
BEFORE = {"epochs": 1000, "validation_metric": "loss"}
BEFORE_NAME = "a shorter rule (1,000 epochs, validation MSE, no refit)"
FOLDS = 5
#: The inner study that chose the rule (written by hand from that run; single runs). Each seed's training formulas
#: of the lab row's split were split again: 20 % of them a pseudo-eval set no run used, the rest trained on (with a
#: 10 % validation share where a rule needs one). Pseudo-eval MAE of log10 for: the fixed 20,000 steps on all of the
#: rest; the rule before the fix (1,000 epochs = 7,000 steps, validation MSE, its patience of a quarter of the
#: checks: the kept step in brackets); 20,000 steps keeping the best validation-MAE state, with that patience and
#: without it; and that without patience followed by the refit on all of the rest up to the kept step (the rule
#: chosen: its value is the fixed run's at that step, the same trajectory: seed, data and 20,000-step schedule).
INNER_STUDY = [
    {"seed": 0, "fixed": 0.5416, "before": 0.5340, "before_step": 210, "best_patience": 0.4827,
     "best_patience_step": 11400, "best": 0.4827, "best_step": 11400, "refit": 0.5129},
    {"seed": 1, "fixed": 0.3650, "before": 0.5759, "before_step": 630, "best_patience": 0.4783,
     "best_patience_step": 2000, "best": 0.4174, "best_step": 10400, "refit": 0.3355},
    {"seed": 2, "fixed": 0.4160, "before": None, "before_step": None, "best_patience": 0.4270,
     "best_patience_step": 2000, "best": 0.4270, "best_step": 2000, "refit": 0.4231},
]


@contextmanager
def auto_epochs(epochs: int) -> Iterator[None]:
    """``mrl.train.AUTO_EPOCHS`` set to ``epochs`` inside the block (the rule before issue 26's fix)."""
    old = mrl.train.AUTO_EPOCHS
    mrl.train.AUTO_EPOCHS = epochs
    try:
        yield
    finally:
        mrl.train.AUTO_EPOCHS = old


def auto_facts(est: MixtureRegressor) -> dict:
    """What an auto run resolved: its budget, the step of the kept state and the step it stopped at."""
    return {"budget": int(est.steps_), "best_step": est.best_step_, "stopped_step": est.stopped_step_}


def _row(data: str, split: str, metric: str, unit: str, fixed_steps: int, over: str | None) -> dict:
    return {"data": data, "split": split, "metric": metric, "unit": unit, "fixed_steps": fixed_steps, "over": over,
            "fixed": [], "auto": []}


# ----------------------------------------------------------------------------------------------- data sets
def run_lab(log: Callable[[str], None], seeds: tuple[int, ...] = LAB_SEEDS, before: bool = False) -> list[dict]:
    row = _row("bundled lab (synth:small), dim 10", f"random split by formula, {len(seeds)} seeds", "eval MAE",
               "log10 cP", LAB_FIXED_STEPS, "seeds")
    row["before"] = []
    base = dict(embedding_dim=10, progress=False, device="cpu")
    for seed in seeds:
        plan = plan_run(RunParams(data="synth:small", embedding_dim=10, small_data="off", seed=seed,
                                  split_seed=seed))
        train, ev = plan.train_data, plan.eval_data
        y = ev.target_values()
        est, wall = timed(lambda: MixtureRegressor(steps=LAB_FIXED_STEPS, seed=seed, **base).fit(train))
        row["fixed"].append({"value": log10_mae(y, est.predict(ev)), "wall_s": wall, "seed": seed})
        est, wall = timed(lambda: MixtureRegressor(steps="auto", seed=seed, **base).fit(train))
        row["auto"].append({"value": log10_mae(y, est.predict(ev)), "wall_s": wall, "seed": seed, **auto_facts(est)})
        if before:
            with auto_epochs(BEFORE["epochs"]):
                est, wall = timed(lambda: MixtureRegressor(steps="auto", seed=seed, auto_refit=False, validation_metric=
                                                           BEFORE["validation_metric"], **base).fit(train))
            row["before"].append({"value": log10_mae(y, est.predict(ev)), "wall_s": wall, "seed": seed,
                                  **auto_facts(est)})
        log(f"  lab seed {seed}: fixed {row['fixed'][-1]['value']:.4f}, auto {row['auto'][-1]['value']:.4f} "
            f"(budget {row['auto'][-1]['budget']}, best step {row['auto'][-1]['best_step']})")
    return [row]


def run_steels(log: Callable[[str], None]) -> list[dict]:
    task = matbench.load_task(argparse.Namespace(task="steels", quick=False))
    label, cand = task.cfg["best_row"]
    fixed = int(task.settings["steps"])
    row = _row(f"Matbench steels, {label} ({matbench.describe(cand, task.settings)})", "its 5 folds", "test MAE",
               "MPa", fixed, "folds")
    y = task.data.target_values()
    for fold, (train, test) in enumerate(task.folds):
        mask = np.isin(np.arange(task.data.n_samples), train)
        for key, extra in (("fixed", {}), ("auto", {"steps": "auto"})):
            est, wall = timed(lambda: matbench.fit_candidate(task.data, mask, task.settings, {**cand, **extra},
                                                             task.init_for))
            mae = float(np.abs(est.predict(task.data.subset(~mask)) - y[test]).mean())
            row[key].append({"value": mae, "wall_s": wall, "fold": fold,
                             **(auto_facts(est) if key == "auto" else {})})
        log(f"  steels fold {fold}: fixed {row['fixed'][-1]['value']:.2f}, auto {row['auto'][-1]['value']:.2f}")
    return [row]


def run_liquid(log: Callable[[str], None], parts: tuple[str, ...] = ("paper", *map(str, range(FOLDS)))) -> list[dict]:
    """The paper split (``"paper"`` in ``parts``) and the folds of :func:`liquid_viscosity.row_folds` whose index
    is in ``parts`` (each a string)."""
    folds = FOLDS
    data = load_dataset("liquid_viscosity")
    label, settings, fixed = liquid.MRL_VARIANTS[0]
    desc = liquid.descriptor_table(data)

    def fits(steps: int | str) -> Callable[[Any, Any], MixtureRegressor]:
        return lambda tr, te: liquid.make_mrl(settings, steps, features="rdkit").fit(tr)

    def score(est_or_pred: Any, te: Any) -> dict:
        pred = est_or_pred.predict(te) if isinstance(est_or_pred, MixtureRegressor) else est_or_pred
        return liquid.scores(te.target_values(), pred, te.properties["kind"].to_numpy())

    split = data.properties["split"].to_numpy()
    jobs = []
    if "paper" in parts:
        jobs.append(("paper split", None, [(0, data.subset(split == "train"), data.subset(split == "test"))]))
    cuts = []
    for k, (tr_idx, _) in enumerate(liquid.row_folds(data.n_samples, folds)):
        if str(k) in parts:
            mask = np.zeros(data.n_samples, bool)
            mask[tr_idx] = True
            cuts.append((k, data.subset(mask), data.subset(~mask)))
    if cuts:
        jobs.append((f"{folds} random folds by row", "folds", cuts))
    rows = []
    for name, over, pairs in jobs:
        row = _row(f"liquid viscosity, mrl + RDKit features ({liquid.readable_config(label)})", name, "test MAE",
                   "log10 cP", fixed, over)
        row["beside"] = {"name": "LightGBM on descriptors", "runs": []}
        for k, tr, te in pairs:
            for key, steps in (("fixed", fixed), ("auto", "auto")):
                est, wall = timed(lambda: fits(steps)(tr, te))
                sc = score(est, te)
                row[key].append({"value": sc["mae"], "pure": sc["pure_mae"], "mixtures": sc["mix_mae"],
                                 "wall_s": wall, "fold": k, **(auto_facts(est) if key == "auto" else {})})
            pred, wall = timed(lambda: liquid.fit_lightgbm(liquid.descriptor_features(tr, desc), tr.target_values(),
                                                           liquid.descriptor_features(te, desc), False))
            sc = score(pred, te)
            row["beside"]["runs"].append({"value": sc["mae"], "pure": sc["pure_mae"], "mixtures": sc["mix_mae"],
                                          "wall_s": wall, "fold": k})
            log(f"  liquid {name} {k}: fixed {row['fixed'][-1]['value']:.4f}, auto {row['auto'][-1]['value']:.4f} "
                f"(best step {row['auto'][-1]['best_step']} of {row['auto'][-1]['budget']}), "
                f"LightGBM {sc['mae']:.4f}")
        rows.append(row)
    return rows


def run_seed_scale(log: Callable[[str], None]) -> list[dict]:
    """``mrl train --set data=synth:seed-scale embedding_dim=10`` with ``steps=20000`` (the old fixed default) and
    ``steps=auto`` (baselines off: they do not change the model), beside the seed-scale sweep's dimension-10 run
    (``benchmarks/results/lab_seed_scale.json``, read when this ran)."""
    sweep = read_json(ROOT / "benchmarks" / "results" / "lab_seed_scale.json")
    early = next(r for r in sweep["runs"] if r["embedding_dim"] == 10)
    row = _row("seed-scale lab (synth:seed-scale), dim 10", "random split by formula, seed 0", "eval MAE", "cP",
               LAB_FIXED_STEPS, None)
    row["beside"] = {"name": "the seed-scale sweep (early stopping, patience 5 x 1,000 steps, batch 512)",
                     "runs": [{"value": float(early["eval_mae"]), "wall_s": early.get("wall_s"),
                               "best_step": early.get("best_step"), "steps": early.get("steps")}]}
    for key, steps in (("fixed", LAB_FIXED_STEPS), ("auto", "auto")):
        with tempfile.TemporaryDirectory() as tmp:
            params = RunParams(name=key, runs_dir=tmp, data="synth:seed-scale", embedding_dim=10, steps=steps,
                               baselines=False)
            folder, wall = timed(lambda: run_experiment(params, progress=False))
            metrics = read_json(folder / METRICS)
            est = MixtureRegressor.load(folder / CHECKPOINT, device="cpu")
        row[key].append({"value": float(metrics["eval"]["mae"]), "wall_s": wall,
                         "command": f"mrl train --set data=synth:seed-scale embedding_dim=10 steps={steps} "
                                    "baselines=false",
                         **({"budget": int(est.steps_), "best_step": est.best_step_, "stopped_step": est.stopped_step_}
                            if key == "auto" else {})})
        log(f"  seed-scale {key}: {row[key][0]['value']:.0f} cP ({wall:.0f} s)")
    return [row]


def run_melt(log: Callable[[str], None]) -> list[dict]:
    data = load_dataset("melt_viscosity")
    split = data.properties["split"].to_numpy()
    train, test = data.subset(split == "train"), data.subset(split == "test")
    head, dim = melt.CHOSEN
    fixed = 12000
    row = _row(f"melt viscosity, mrl head {head} dim {dim}", "paper split (train -> test)", "test RMSE",
               "log10 Pa s", fixed, None)
    y = test.target_values()
    for key, steps in (("fixed", fixed), ("auto", "auto")):
        every = steps if isinstance(steps, int) else 10 ** 9
        est, wall = timed(lambda: MixtureRegressor(embedding_dim=dim, head=head, steps=steps, eval_every=every,
                                                   snapshot_every=every, checkpoint_every=every,
                                                   **melt.MRL_BASE).fit(train))
        pred = est.predict(test)
        row[key].append({"value": melt.rmse(y, pred), "mae": float(np.abs(pred - y).mean()), "wall_s": wall,
                         **(auto_facts(est) if key == "auto" else {})})
        log(f"  melt {key}: test RMSE {row[key][-1]['value']:.4f} ({wall:.0f} s)")
    return [row]


def merge_runs(old: list[dict], new: list[dict]) -> list[dict]:
    """The rows of ``new`` with the runs of ``old``'s rows of the same split whose seed or fold ``new`` did not run
    (runs sorted by seed or fold): seeds and folds run in separate calls end in one row."""
    prev = {r["split"].split(",")[0]: r for r in old}
    out = []
    for row in new:
        before = prev.get(row["split"].split(",")[0], {})
        for key in ("fixed", "auto", "before", "beside"):
            runs = row.get(key)
            if key == "beside":
                if not runs:
                    continue
                runs, earlier = runs["runs"], before.get("beside", {}).get("runs", [])
            else:
                earlier = before.get(key, [])
            unit = "seed" if "seed" in (runs or earlier or [{}])[0] else "fold"
            ran = {r.get(unit) for r in runs or []}
            merged = sorted([r for r in earlier if r.get(unit) not in ran] + list(runs or []),
                            key=lambda r: r.get(unit) or 0)
            if key == "beside":
                row["beside"]["runs"] = merged
            else:
                row[key] = merged
        if row["over"] == "seeds":
            row["split"] = f"{row['split'].split(',')[0]}, {len(row['fixed'])} seeds"
        out.append(row)
    names = {r["split"].split(",")[0] for r in out}
    return out + [r for r in old if r["split"].split(",")[0] not in names]


DATA_SETS: dict[str, Callable[[Callable[[str], None]], list[dict]]] = {
    "lab": run_lab, "steels": run_steels, "liquid": run_liquid, "seed_scale": run_seed_scale, "melt": run_melt}


# ----------------------------------------------------------------------------------------------- rendering
def _score(runs: list[dict], over: str | None, key: str = "value") -> Score:
    return Score.of([r[key] for r in runs if r.get(key) is not None], over=over or "seeds")


def _cell(score: Score, digits: int = 3) -> str:
    if score.n < 2:
        return format_number(score.value, digits)
    return f"{format_number(score.value, digits)} ± {format_number(score.spread, digits)}"


def _steps(runs: list[dict]) -> str:
    best = [r.get("best_step") for r in runs if r.get("best_step") is not None]
    budget = sorted({r["budget"] for r in runs if r.get("budget")})
    kept = f"kept {min(best):,}-{max(best):,}" if len(best) > 1 else f"kept {best[0]:,}" if best else "kept step not recorded"
    return f"budget {'/'.join(f'{b:,}' for b in budget)}; {kept}"


def _wall(runs: list[dict]) -> str:
    walls = [r["wall_s"] for r in runs if r.get("wall_s") is not None]
    return f"{np.mean(walls):.0f}" if walls else "–"


def rows_of(results: dict) -> list[dict]:
    """The rows of every data set in :data:`DATA_SETS` order."""
    return [row for name in DATA_SETS for row in _ordered(results.get("data_sets", {}).get(name, []))]


def _ordered(rows: list[dict]) -> list[dict]:
    """Single splits before folds (the order calls that ran separately wrote them in does not matter)."""
    return sorted(rows, key=lambda r: r["over"] == "folds")


def render_table(results: dict) -> str:
    """The table (fixed against auto per data set; mean ± SD where over seeds or folds) and one sentence per row
    worded by :func:`mrl.wording.compare`."""
    rows = rows_of(results)
    if not rows:
        return "Training-length rows pending: run `python benchmarks/training_length.py --json ...`."
    table, sentences = [], []
    for row in rows:
        fixed, auto = _score(row["fixed"], row["over"]), _score(row["auto"], row["over"])
        beside = row.get("beside")
        split = row["split"] + (f" ({len(row['fixed'])} of them run)" if row["over"] == "folds" and
                                 row["data"].startswith("liquid") and len(row["fixed"]) < FOLDS else "")
        table.append({"data set": row["data"], "split": split, "metric": f"{row['metric']} ({row['unit']})",
                      "fixed steps": f"{_cell(fixed)} ({row['fixed_steps']:,} steps)",
                      "steps: auto": f"{_cell(auto)} ({_steps(row['auto'])})",
                      "beside": (f"{beside['name']}: {_cell(_score(beside['runs'], row['over']))}" if beside else
                                 f"{BEFORE_NAME}: {_cell(_score(row['before'], row['over']))}" if row.get("before")
                                 else ""),
                      "fit s (fixed / auto)": f"{_wall(row['fixed'])} / {_wall(row['auto'])}"})
        sentences.append(compare(auto, fixed, "steps: auto", f"{row['fixed_steps']:,} fixed steps",
                                 what=f"{row['metric']} on {row['data']} ({row['split']})", unit=row["unit"]).sentence)
        if beside:
            sentences.append(compare(auto, _score(beside["runs"], row["over"]), "steps: auto", beside["name"],
                                     what=f"{row['metric']} on {row['data']} ({row['split']})",
                                     unit=row["unit"]).sentence)
        if row.get("before"):
            before = _score(row["before"], row["over"])
            sentences.append(compare(before, fixed, BEFORE_NAME,
                                     f"{row['fixed_steps']:,} fixed steps",
                                     what=f"{row['metric']} on {row['data']}", unit=row["unit"]).sentence)
    return markdown_table(pd.DataFrame(table)) + "\n" + " ".join(sentences)


def render_pure_mixtures(results: dict) -> str:
    """The liquid rows apart for pure liquids and mixtures."""
    lines = ["| split | rows | fixed steps | steps: auto | LightGBM on descriptors |", "|---|---|--:|--:|--:|"]
    for row in _ordered(results.get("data_sets", {}).get("liquid", [])):
        for key, words in (("pure", "pure"), ("mixtures", "mixtures")):
            cells = [_cell(_score(runs, row["over"], key), 3)
                     for runs in (row["fixed"], row["auto"], row["beside"]["runs"])]
            lines.append(f"| {row['split']} | {words} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def render_inner(results: dict) -> str:
    """The inner study (:data:`INNER_STUDY`, as recorded in the result file) as a table and the chosen rule against
    the fixed steps in words."""
    inner = results.get("inner") or []
    if not inner:
        return ""
    cols = {"seed": "seed", "fixed": "fixed 20,000 steps", "before": "shorter rule (1,000 epochs, MSE)",
            "best_patience": "best state, patience 1/4", "best": "best state, whole budget",
            "refit": "whole budget + refit (chosen)"}
    rows = []
    for r in inner:
        row = {}
        for key, name in cols.items():
            value, step = r.get(key), r.get(f"{key}_step")
            row[name] = value if key == "seed" else ("not run" if value is None else
                                                     f"{value:.3f}" + (f" ({step:,})" if step is not None else ""))
        rows.append(row)
    text = markdown_table(pd.DataFrame(rows))
    refit, fixed = (Score.of([r[k] for r in inner]) for k in ("refit", "fixed"))
    best = Score.of([r["best"] for r in inner])
    diffs = [r["refit"] - r["fixed"] for r in inner]
    paired = (f"Seed by seed (the same inner split), the chosen rule is below the fixed steps on "
              f"{sum(d < 0 for d in diffs)} of {len(diffs)} seeds; the differences are "
              + ", ".join(f"{d:+.3f}" for d in diffs) + " log10 cP.")
    return (text + "\n" + paired + " " + compare(refit, fixed, "the chosen rule", "the fixed 20,000 steps",
                                  what="pseudo-eval MAE on the inner splits", unit="log10 cP").sentence + " "
            + compare(best, fixed, "the best state without the refit", "the fixed 20,000 steps",
                      what="pseudo-eval MAE", unit="log10 cP").sentence)


SECTIONS = {"training-length-inner": render_inner, "training-length": render_table,
            "training-length-liquid": render_pure_mixtures}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(DATA_SETS), help=f"comma-separated, of {list(DATA_SETS)}")
    parser.add_argument("--json", type=Path, default=None, help="merge the results into this file")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON", help="only render this result file")
    parser.add_argument("--book", type=Path, default=None, help="with --render: fill this page's marked sections")
    parser.add_argument("--seeds", default=",".join(map(str, LAB_SEEDS)), help="lab seeds (merged into the file's lab "
                        "row by seed)")
    parser.add_argument("--before", action="store_true", help="also the rule before issue 26's fix on the lab")
    parser.add_argument("--liquid-parts", default="paper,0,1,2,3,4",
                        help="liquid: 'paper' and/or fold indices (merged into the file's rows by fold)")
    args = parser.parse_args(argv)
    if args.render:
        out = fill_from_results(json.loads(args.render.read_text()), SECTIONS, args.book)
        print(f"wrote {out}" if args.book else out)
        return
    torch.set_num_threads(1)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(DATA_SETS))
    if unknown:
        raise SystemExit(f"--only: unknown data set(s) {unknown}; choose from {list(DATA_SETS)}")

    def log(msg: str) -> None:
        print(msg, flush=True)
    log(f"steps auto: {mrl.train.AUTO_EPOCHS} epochs clipped to [{mrl.train.AUTO_MIN_STEPS:,}, "
        f"{mrl.train.AUTO_MAX_STEPS:,}] steps, validation metric {RunParams.validation_metric}")
    seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    runners = {"lab": lambda: run_lab(log, seeds, args.before),
               "liquid": lambda: run_liquid(log, tuple(p for p in args.liquid_parts.split(",") if p))}
    for name in names:
        run = runners.get(name, lambda: DATA_SETS[name](log))
        rows, wall = timed(run)
        if args.json:  # merged into the file as it is now (other data sets may be written by another call)
            results = read_json(args.json) if args.json.is_file() else {}
            if results.get("data_sets", {}).get(name):  # other seeds' or folds' runs kept
                rows = merge_runs(results["data_sets"][name], rows)
            results.setdefault("data_sets", {})[name] = rows
            results.setdefault("wall_s", {})[name] = wall
            results["inner"] = INNER_STUDY
            results["rule"] = {"epochs": mrl.train.AUTO_EPOCHS, "min_steps": mrl.train.AUTO_MIN_STEPS,
                               "max_steps": mrl.train.AUTO_MAX_STEPS, "validation_metric": RunParams.validation_metric,
                               "patience_share": mrl.train.AUTO_PATIENCE_SHARE}
            write_json(results, args.json)
        log(f"{name}: {wall:.0f} s")
        print(render_table({"data_sets": {name: rows}}), flush=True)


if __name__ == "__main__":
    main()
