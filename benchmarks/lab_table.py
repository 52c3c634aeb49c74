"""The seed report's table for a folder of runs, with a mean predictor and ridge regression on the same split.

    python benchmarks/lab_table.py runs/lab_seed_scale_cli [--truth]
    python benchmarks/lab_table.py runs/lab_seed_scale --json benchmarks/results/lab_seed_scale.json
    python benchmarks/lab_table.py --render benchmarks/results/lab_seed_scale.json --book book/seed_scale.md

``--json`` writes the runs, the baselines and the seed report's numbers (:data:`SEED_REPORT`) to a result file
(sections it does not recompute, such as ``fixed_steps`` and ``truth`` without ``--truth``, are kept from the file
already there); ``--render`` fills the marked regions of the seed-scale book page from that file
(:data:`SECTIONS`), every comparison worded by :func:`mrl.wording.compare`.

Rows: one per run (embedding size), columns: steps, full / eval / train MAE (property units), eval R2 and
wall time. Baselines use the first run's split and data: predict the training mean; ridge regression of the
(log10) target on the raw content vector (sparse, alpha chosen on an inner 20 % split of the training part).
``--truth`` adds, per run, the hidden-truth scores of the learned vectors (:func:`mrl.analysis.truth_scores`:
family agreement of the 10 nearest neighbours and its lift over chance, k-means purity / ARI, probe R2 of the
hidden latents) beside the same scores of the SVD "no learning" baseline of the same size.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

from mrl.book import fill_from_results
from mrl.io import write_text
from mrl.metrics import regression_metrics
from mrl.runs import load_run
from mrl.wording import Score, compare, format_number

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: The seed report's table (195,000 steps per size; MAE in cP): the sizes it gives.
SEED_REPORT = {"steps": 195_000, "rows": [
    {"embedding_dim": 100, "full_mae": 1751, "eval_mae": 5425, "train_mae": 176},
    {"embedding_dim": 2, "full_mae": 2295, "eval_mae": 6731, "train_mae": 394}]}


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


def truth_table(runs: list) -> pd.DataFrame:
    """Hidden-truth scores of each run's vectors and of the SVD baseline of the same size (one data load)."""
    from mrl.analysis import baseline_representation, truth_scores, vector_columns

    data, truth = runs[0].data()
    if truth is None:
        raise SystemExit("--truth needs data with a hidden truth (the synthetic lab)")
    matrix = data.content_matrix()
    rows = []
    for run in runs:
        emb = run.embeddings
        dim = int(run.metrics["embedding_dim"])
        svd = emb.drop(columns=vector_columns(emb))
        base = baseline_representation(matrix, dim)
        svd = pd.concat([svd, pd.DataFrame(base, columns=[f"e{i}" for i in range(dim)])], axis=1)
        for name, table in (("learned", emb), ("svd baseline", svd)):
            res = truth_scores(table, truth)
            rows.append({"embedding_dim": dim, "vectors": name, "neighbour_agreement": res["neighbour_agreement"],
                         "lift": res["neighbour_lift"], "purity": res["purity"], "ari": res["ari"],
                         **{f"probe_r2_{k}": v for k, v in res["probe_r2"].items()}})
    return pd.DataFrame(rows)


def _scores(y, pred, train, ev) -> dict:
    return {"full_mae": regression_metrics(y, pred)["mae"], "eval_mae": regression_metrics(y[ev], pred[ev])["mae"],
            "train_mae": regression_metrics(y[train], pred[train])["mae"],
            "eval_r2": regression_metrics(y[ev], pred[ev])["r2"]}


def _seconds(value: float | None) -> str:
    return f"{value:,.0f}" if value else "–"


def _mae(value: float) -> str:
    return format_number(value, 3) if value is not None else "–"


def render_table(results: dict) -> str:
    """The seed report's table beside ours by embedding size (full / eval / train MAE), then sentences that compare
    them, the baselines and the shape of the error curve, all from ``results``."""
    unit = results.get("unit", "cP")
    seed = {r["embedding_dim"]: r for r in results["seed_report"]["rows"]}
    runs = sorted(results["runs"], key=lambda r: -r["embedding_dim"])
    steps = format_number(results["seed_report"]["steps"])
    setup = results.get("setup", {})
    lines = [f"{results.get('lab', 'The synthetic lab at the seed scale')}; `mrl sweep {setup.get('sweep')}`: batch "
             f"{setup.get('batch_size')}, {setup.get('stopping')}; single runs (seed 0), training time on "
             f"{setup.get('threads')} thread. MAE in {unit}; the seed report's full / eval / train MAE are given for "
             "the sizes it reports.", "",
             f"| embedding size | seed report: full / eval / train MAE ({unit}), {steps} steps | mrl: full / eval / "
             f"train MAE ({unit}) | mrl: steps (kept / stopped at) | mrl: eval R² | mrl: training time (s) |",
             "| --: | --: | --: | --: | --: | --: |"]
    for r in runs:
        s = seed.get(r["embedding_dim"])
        theirs = " / ".join(_mae(s[k]) for k in ("full_mae", "eval_mae", "train_mae")) if s else "–"
        ours = " / ".join(_mae(r[k]) for k in ("full_mae", "eval_mae", "train_mae"))
        kept = f"{format_number(r['best_step'])} / {format_number(r['steps'])}" if r.get("best_step") else \
            format_number(r["steps"])
        lines.append(f"| {r['embedding_dim']} | {theirs} | {ours} | {kept} | {r['eval_r2']:.2f} | "
                     f"{_seconds(r['wall_s'])} |")
    for b in results.get("baselines", []):
        ours = " / ".join(_mae(b[k]) for k in ("full_mae", "eval_mae", "train_mae"))
        lines.append(f"| *{b['model']}* | – | {ours} | – | {b['eval_r2']:.2f} | "
                     f"{_seconds(b.get('wall_s'))} |")
    lines.append("")
    for r in runs:
        s = seed.get(r["embedding_dim"])
        if not s:
            continue
        for split in ("eval",):
            size = r["embedding_dim"]
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


def render_fixed_steps(results: dict) -> str:
    """Early stopping against a fixed number of steps, per size where both were run, worded by compare."""
    fixed = results.get("fixed_steps")
    if not fixed:
        return "(no fixed-step runs in the result file)"
    unit = results.get("unit", "cP")
    runs = {r["embedding_dim"]: r for r in results["runs"]}
    out = [f"Against a fixed {format_number(fixed['steps'])} steps of batch {fixed['batch_size']} "
           f"(`{fixed['command']}`), eval MAE by size:", ""]
    for dim in sorted((int(d) for d in fixed["eval_mae"]), reverse=True):
        if dim in runs:
            c = compare(runs[dim]["eval_mae"], fixed["eval_mae"][str(dim)], f"early stopping at size {dim}",
                        f"{format_number(fixed['steps'])} fixed steps", what="eval MAE", unit=unit)
            out.append(f"- {c.sentence}")
    return "\n".join(out)


def render_truth(results: dict) -> str:
    """What the vectors know against the hidden truth, learned against the co-usage SVD, as a table."""
    truth = results.get("truth")
    if not truth:
        return "(no hidden-truth scores in the result file)"
    sizes = truth["sizes"]
    head = ["score"] + [f"size {d}: learned" for d in sizes] + [f"size {d}: SVD" for d in sizes]
    lines = [f"Scores of {truth['runs']} (`{truth['command']}`): probe R² is a 5-fold ridge probe reading a hidden "
             "effect from the vectors; family neighbours the share of each material's 10 nearest neighbours in its "
             f"hidden family (chance {truth['neighbour_agreement']['chance']:.2f}). SVD: the no-learning co-usage "
             f"vectors of the same size; {truth['svd_note']}.", "",
             "| " + " | ".join(head) + " |", "| --- |" + " --: |" * (len(head) - 1)]

    def cells(values: list) -> list[str]:
        return ["< 0" if v is None else f"{v:.2f}" for v in values]

    for effect, scores in truth["probe_r2"].items():
        lines.append("| " + " | ".join([f"probe R², {effect}"] + cells(scores["learned"]) + cells(scores["svd"]))
                     + " |")
    na = truth["neighbour_agreement"]
    lines.append("| " + " | ".join(["family neighbours"] + cells(na["learned"]) + cells(na["svd"])) + " |")
    lines.append("")
    for name, scores in [*[(f"probe R² of {k}", v) for k, v in truth["probe_r2"].items()],
                         ("family neighbours", na)]:
        verdicts = []
        for d, a, b in zip(sizes, scores["learned"], scores["svd"]):
            if b is None:
                verdicts.append(f"above at size {d} (SVD below 0)" if a > 0 else f"size {d}: not comparable")
                continue
            c = compare(Score(a), Score(b), "learned", "SVD", lower_is_better=False, digits=2)
            verdicts.append(f"{c.relation} at size {d}")
        lines.append(f"- {name}, the learned vectors against the SVD: " + ", ".join(verdicts) + ".")
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
SECTIONS = {"key-result": render_key_result, "seed-table": render_table, "seed-fixed-steps": render_fixed_steps, "seed-truth": render_truth}


def write_book(results: dict, path: str | Path) -> Path:
    """Fill each rendered region of :data:`SECTIONS` between its ``<!-- NAME -->`` markers on the page."""
    return fill_from_results(results, SECTIONS, path)


def results_of(folder: Path, with_truth: bool, previous: dict | None = None) -> dict:
    """The result file's content for a sweep folder: its runs, the baselines on the first run's split, the seed
    report's numbers; ``fixed_steps`` and (without ``with_truth``) ``truth`` kept from ``previous``."""
    table, runs = run_table(folder)
    if not runs:
        raise SystemExit(f"{folder}: no finished run (no */metrics.json)")
    out = dict(previous or {})
    out.update({"unit": "cP", "seed_report": SEED_REPORT,
                "runs": json.loads(table.drop(columns=["run"]).to_json(orient="records")),
                "baselines": json.loads(baselines(runs[0]).to_json(orient="records"))})
    if with_truth:
        t = truth_table(runs)
        out["truth_table"] = json.loads(t.to_json(orient="records"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?", help="a sweep folder of runs (runs/lab_seed_scale)")
    parser.add_argument("--truth", action="store_true", help="add the hidden-truth scores of every run's vectors")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file")
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
        results = results_of(args.folder, args.truth, previous)
        write_text(json.dumps(results, indent=1) + "\n", args.json)
        print(f"wrote {args.json}")
        if args.book:
            print(f"wrote {write_book(results, args.book)}")
        return
    table, runs = run_table(args.folder)
    print(table.round({"full_mae": 0, "eval_mae": 0, "train_mae": 0, "eval_r2": 3, "wall_s": 0}).to_string(index=False))
    if runs:
        print()
        print(baselines(runs[0]).round({"full_mae": 0, "eval_mae": 0, "train_mae": 0, "eval_r2": 3, "wall_s": 1})
              .to_string(index=False))
    if runs and args.truth:
        print()
        print(truth_table(runs).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
