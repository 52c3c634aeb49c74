"""Measure the model's design options on the synthetic lab and print tables (not a test).

1. Aggregation speed: ``embedding_bag`` vs ``sparse_mm`` (steps per second, ratio) at several embedding sizes.
2. Content scaling and learning rates: ``content_scale`` none / median / rms / learned, with the material table's
   learning rate equal to the head's or 3x it; eval MAE and R2 (log10) after the same number of steps.
3. Interactions and loss: ``interaction`` none / attention x ``loss`` mse / l1 (thickeners depend on salt and
   neutralisation in the lab, so the plain sum cannot express every effect).

    python benchmarks/model_options.py --preset small --steps 4000 [--only scaling|interaction]
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd

from mrl.estimator import MixtureRegressor
from mrl.metrics import regression_metrics
from mrl.splits import make_split
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


def compare(train, ev, variants: list[dict], dim: int, steps: int, seeds: list[int]) -> pd.DataFrame:
    """Eval MAE (cP), MAE and R2 of log10 and wall time of each option set in ``variants``, mean over ``seeds``."""
    rows = []
    y = ev.target_values()
    for options, seed in itertools.product(variants, seeds):
        est = MixtureRegressor(embedding_dim=dim, steps=steps, lr=3e-3, eval_every=steps, checkpoint_every=steps,
                               snapshot_every=steps, progress=False, device="cpu", seed=seed, **options)
        start = time.perf_counter()
        pred = est.fit(train).predict(ev)
        logs = regression_metrics(np.log10(y), np.log10(pred))
        rows.append({**{k: str(v) for k, v in options.items()}, "seed": seed,
                     "eval_mae": regression_metrics(y, pred)["mae"], "eval_mae_log10": logs["mae"],
                     "eval_r2_log10": logs["r2"], "wall_s": time.perf_counter() - start})
    keys = list(variants[0])
    return pd.DataFrame(rows).groupby(keys, sort=False).mean(numeric_only=True).drop(columns="seed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--speed-steps", type=int, default=300)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", choices=("speed", "scaling", "interaction"), help="run one table only")
    args = parser.parse_args()
    data, _ = make_lab(args.preset)
    split = make_split(data, "random", 0.2, 0)
    train, ev = data.subset(split == "train"), data.subset(split == "eval")
    print(f"data: {data.name}: {data.n_materials} materials, {data.n_formulas} formulas")
    run = {args.only} if args.only else {"speed", "scaling", "interaction"}
    if "speed" in run:
        print("\n## aggregation speed (steps/s, CPU)\n")
        print(speed(train, [2, 20, 100], args.speed_steps).round(1).to_string())
    tables = {"scaling": [{"content_scale": c, "embedding_lr": 3e-3 * m}
                          for c in ("none", "median", "rms", "learned") for m in (1.0, 3.0)],
              "interaction": [{"interaction": i, "loss": loss}
                              for i in ("none", "attention") for loss in ("mse", "l1")]}
    for name, variants in tables.items():
        if name in run:
            print(f"\n## {name} (dim {args.dim}, {args.steps} steps, mean over seeds {args.seeds})\n")
            print(compare(train, ev, variants, args.dim, args.steps, args.seeds).round(3).to_string())


if __name__ == "__main__":
    main()
