"""The seed report's table for a folder of runs, with a mean predictor and ridge regression on the same split.

    python benchmarks/lab_table.py runs/lab_seed_scale_cli [--truth]

Rows: one per run (embedding size), columns: steps, full / eval / train MAE (property units), eval R2 and
wall time. Baselines use the first run's split and data: predict the training mean; ridge regression of the
(log10) target on the raw content vector (sparse, alpha chosen on an inner 20 % split of the training part).
``--truth`` adds, per run, the hidden-truth scores of the learned vectors (:func:`mrl.analysis.truth_scores`:
family agreement of the 10 nearest neighbours and its lift over chance, k-means purity / ARI, probe R2 of the
hidden latents) beside the same scores of the SVD "no learning" baseline of the same size.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

from mrl.metrics import regression_metrics
from mrl.runs import load_run

ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def run_table(folder: Path) -> tuple[pd.DataFrame, list]:
    rows, runs = [], []
    for path in sorted(p.parent for p in folder.glob("*/metrics.json")):
        run = load_run(path)
        m = run.metrics
        runs.append(run)
        rows.append({"run": path.name, "embedding_dim": m["embedding_dim"], "steps": m["steps"],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--truth", action="store_true", help="add the hidden-truth scores of every run's vectors")
    args = parser.parse_args()
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
