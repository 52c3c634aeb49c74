"""Measure the model's design options on the synthetic lab and print tables (not a test).

1. Aggregation speed: ``embedding_bag`` vs ``sparse_mm`` (steps per second, ratio) at several embedding sizes.
2. Content scaling and learning rates: ``content_scale`` none / median / learned, with the material table's
   learning rate equal to the head's or 3x it; eval MAE and R2 (log10) after the same number of steps.

    python benchmarks/model_options.py --preset small --steps 4000
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd

from mrl.estimator import MixtureRegressor
from mrl.metrics import regression_metrics
from mrl.runs import make_split
from mrl.synth import make_lab


def speed(train, dims: list[int], steps: int) -> pd.DataFrame:
    rows = []
    for dim, agg in itertools.product(dims, ("embedding_bag", "sparse_mm")):
        est = MixtureRegressor(embedding_dim=dim, aggregation=agg, steps=steps, eval_every=steps,
                               checkpoint_every=steps, snapshot_every=steps, progress=False, device="cpu")
        start = time.perf_counter()
        est.fit(train)
        rows.append({"embedding_dim": dim, "aggregation": agg, "steps_per_s": steps / (time.perf_counter() - start)})
    table = pd.DataFrame(rows).pivot(index="embedding_dim", columns="aggregation", values="steps_per_s")
    table["ratio_bag_over_mm"] = table["embedding_bag"] / table["sparse_mm"]
    return table


def scaling(train, ev, dim: int, steps: int, seeds: list[int]) -> pd.DataFrame:
    rows = []
    y = ev.target_values()
    for scale, emb_mult, seed in itertools.product(("none", "median", "learned"), (1.0, 3.0), seeds):
        est = MixtureRegressor(embedding_dim=dim, content_scale=scale, steps=steps, lr=3e-3,
                               embedding_lr=3e-3 * emb_mult, eval_every=steps, checkpoint_every=steps,
                               snapshot_every=steps, progress=False, device="cpu", seed=seed)
        start = time.perf_counter()
        pred = est.fit(train).predict(ev)
        m = regression_metrics(y, pred)
        rows.append({"content_scale": scale, "embedding_lr_x": emb_mult, "seed": seed, "eval_mae": m["mae"],
                     "eval_r2_log10": regression_metrics(np.log10(y), np.log10(pred))["r2"],
                     "wall_s": time.perf_counter() - start})
    return pd.DataFrame(rows).groupby(["content_scale", "embedding_lr_x"]).mean(numeric_only=True).drop(columns="seed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--speed-steps", type=int, default=300)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    data, _ = make_lab(args.preset)
    split = make_split(data, "random", 0.2, 0)
    train, ev = data.subset(split == "train"), data.subset(split == "eval")
    print(f"data: {data.name}: {data.n_materials} materials, {data.n_formulas} formulas")
    if not args.skip_speed:
        print("\n## aggregation speed (steps/s, CPU)\n")
        print(speed(train, [2, 20, 100], args.speed_steps).round(1).to_string())
    print(f"\n## content scaling x material learning rate (dim {args.dim}, {args.steps} steps, seeds {args.seeds})\n")
    print(scaling(train, ev, args.dim, args.steps, args.seeds).round(3).to_string())


if __name__ == "__main__":
    main()
