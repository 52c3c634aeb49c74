"""Known material features and early stopping on the synthetic small lab; prints two tables.

1. New materials: ~10 % of the materials are held out (``make_split(data, "material")``: every formula holding one
   of them is eval). Eval error of those formulas without features (held-out materials sit near the origin) and
   with ``features="supplier"`` (noisy supplier-sheet values of the lab's hidden chemistry; held-out materials get
   ``g(x)``, their residual never sees data).
2. Early stopping on the random split (80/20 by formula): the default run (all steps) against ``early_stopping``
   (10 % of the training formulas as validation, never eval): eval error and the chosen step.

Errors are MAE of log10(cP) and MAE in cP; with several seeds, mean +- SD over seeds (the seed changes the model's
initialisation, the batch order and the validation part; the splits stay fixed).

    python benchmarks/features.py                 # 1 seed, 2,000 steps, dim 10 (a few minutes on 2 cores)
    python benchmarks/features.py --seeds 0 1 2 --steps 4000
"""
from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pandas as pd


def _fit_score(train, ev, **kw) -> dict:
    from mrl.estimator import MixtureRegressor
    from mrl.metrics import log10_mae, regression_metrics

    t0 = time.perf_counter()
    est = MixtureRegressor(progress=False, device="cpu", **kw).fit(train)
    y, pred = ev.target_values(), est.predict(ev)
    return {"log10_mae": log10_mae(y, pred), "mae_cP": regression_metrics(y, pred)["mae"],
            "step": est.best_step_ if est.best_step_ is not None else est.n_steps_,
            "wall_s": time.perf_counter() - t0}


def _summary(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    out = []
    for label, group in frame.groupby("setting", sort=False):
        row = {"setting": label, "n_seeds": len(group)}
        for k in keys:
            v = group[k].to_numpy(np.float64)
            row[k] = f"{v.mean():.4g}" + (f" +- {v.std(ddof=1):.2g}" if len(v) > 1 else "")
        out.append(row)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="model seeds (default: 0)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default: 2000)")
    parser.add_argument("--dim", type=int, default=10, help="embedding_dim (default: 10)")
    parser.add_argument("--held-out", type=float, default=0.1, help="share of materials held out (default: 0.1)")
    parser.add_argument("--feature-map", default="linear", choices=("linear", "mlp"))
    parser.add_argument("--skip-stopping", action="store_true", help="only the feature table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    from mrl.splits import make_split
    from mrl.synth import make_lab

    torch.set_num_threads(2)
    data, _ = make_lab("small", supplier_sheet=True)
    base = dict(embedding_dim=args.dim, steps=args.steps, eval_every=max(1, args.steps // 20))
    split = make_split(data, "material", args.held_out, seed=0)
    train, ev = data.subset(split == "train"), data.subset(split == "eval")
    held = sorted(set(ev.formulas["material_id"]) - set(train.formulas["material_id"]))
    print(f"small lab, material split: {len(held)} held-out materials, {train.n_formulas} train / "
          f"{ev.n_formulas} eval formulas; dim {args.dim}, {args.steps} steps, seeds {args.seeds}")
    rows = []
    for seed in args.seeds:
        for label, kw in (("no features", {}),
                          (f"supplier ({args.feature_map})", {"features": "supplier",
                                                              "feature_map": args.feature_map})):
            rows.append({"setting": label, **_fit_score(train, ev, seed=seed, **base, **kw)})
            print(f"  seed {seed} {label}: {rows[-1]}", flush=True)
    print("\nEval formulas holding a held-out material")
    print(_summary(rows, ["log10_mae", "mae_cP", "wall_s"]).to_string(index=False))
    if args.skip_stopping:
        return
    split = make_split(data, "random", 0.2, seed=0)
    train, ev = data.subset(split == "train"), data.subset(split == "eval")
    rows = []
    for seed in args.seeds:
        for label, kw in (("all steps", {}), ("early stopping", {"early_stopping": True})):
            rows.append({"setting": label, **_fit_score(train, ev, seed=seed, **base, **kw)})
            print(f"  seed {seed} {label}: {rows[-1]}", flush=True)
    print(f"\nRandom split ({train.n_formulas} train / {ev.n_formulas} eval formulas); step = the restored step")
    print(_summary(rows, ["log10_mae", "mae_cP", "step", "wall_s"]).to_string(index=False))


if __name__ == "__main__":
    main()
