"""One material under two codes (two suppliers, two grades): tie the codes while training, or learn two vectors.

On the synthetic lab, ``--n-materials`` materials used in 40-300 formulas each get a second code ``<id>~B`` in a
seeded random share (``--share``, default 10 %: a new supplier with a handful of formulas) of their formulas.
Three models are trained on the same 80/20 split by formula (dim 10):

* ``one code``: the original data (the reference: as if the lab had kept one code);
* ``two codes``: each code learns its own vector from its own formulas;
* ``two codes, tied``: ``tie={"<id>~B": "<id>"}``: one vector for both codes (``RunParams.tie``).

Printed: eval MAE (log10 and cP) over all eval formulas and over the eval formulas holding a second code, mean
over ``--seeds``; and, for the untied model, the cosine similarity of the two codes' vectors.

    python benchmarks/supplier_ties.py                    # ~3 min on one core
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from mrl.analysis import vector_columns
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.metrics import log10_mae, regression_metrics
from mrl.splits import make_split
from mrl.synth import make_lab

SUFFIX = "~B"


def split_codes(data: FormulaData, n: int, share: float, seed: int) -> tuple[FormulaData, list[str]]:
    """``data`` where ``n`` materials (40-300 formulas, not the base) use a second code in ``share`` of their
    formulas."""
    usage = data.formulas.groupby("material_id")["formula_id"].nunique()
    pool = sorted(usage[(usage >= 40) & (usage <= 300) & (usage.index != data.base_material())].index)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(pool, size=min(n, len(pool)), replace=False).tolist())
    forms = data.formulas.copy()
    for mid in chosen:
        fids = forms.loc[forms["material_id"] == mid, "formula_id"].unique()
        second = set(rng.choice(fids, size=max(1, int(round(share * len(fids)))), replace=False))
        forms.loc[(forms["material_id"] == mid) & forms["formula_id"].isin(second), "material_id"] = mid + SUFFIX
    extra = data.materials[data.materials["material_id"].isin(chosen)].assign(
        material_id=lambda t: t["material_id"] + SUFFIX)
    materials = pd.concat([data.materials, extra], ignore_index=True)
    return FormulaData(forms, data.properties, materials, data.targets, data.conditions, data.name), chosen


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {"mae_log10": log10_mae(y, pred), "mae": regression_metrics(y, pred)["mae"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-materials", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.1, help="share of each material's formulas under code B")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    torch.set_num_threads(1)
    lab, _ = make_lab("small")
    rows, sims = [], []
    start = time.perf_counter()
    for seed in args.seeds:
        data, chosen = split_codes(lab, args.n_materials, args.share, seed)
        split = make_split(data, "random", 0.2, seed)
        ev = data.subset(split == "eval")
        y = ev.target_values()
        holds = ev.properties["formula_id"].isin(
            ev.formulas.loc[ev.formulas["material_id"].str.endswith(SUFFIX), "formula_id"]).to_numpy()
        variants = {"one code": (lab, {}), "two codes": (data, {}),
                    "two codes, tied": (data, {m + SUFFIX: m for m in chosen})}
        for name, (source, tie) in variants.items():
            tr = source.subset(split == "train")
            est = MixtureRegressor(embedding_dim=args.dim, steps=args.steps, tie=tie, seed=seed, device="cpu",
                                   progress=False, eval_every=args.steps, snapshot_every=args.steps,
                                   checkpoint_every=args.steps).fit(tr)
            pred = est.predict(source.subset(split == "eval"))
            rows.append({"seed": seed, "model": name, **{f"all_{k}": v for k, v in scores(y, pred).items()},
                         **{f"code_b_{k}": v for k, v in scores(y[holds], pred[holds]).items()},
                         "n_eval_code_b": int(holds.sum())})
            if name == "two codes":
                emb = est.embeddings().set_index("material_id")
                vec = emb[vector_columns(emb)]
                a, b = vec.loc[chosen].to_numpy(), vec.loc[[m + SUFFIX for m in chosen]].to_numpy()
                sims += list((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12))
    table = pd.DataFrame(rows).groupby("model", sort=False).mean().drop(columns="seed")
    print(f"lab: {lab.n_materials} materials, {lab.n_formulas} formulas; {args.n_materials} materials with a "
          f"second code in {args.share:.0%} of their formulas; dim {args.dim}, {args.steps} steps; mean over seeds "
          f"{args.seeds}\n")
    print(table.round({"all_mae_log10": 3, "code_b_mae_log10": 3, "all_mae": 0, "code_b_mae": 0,
                       "n_eval_code_b": 0}).to_string())
    print(f"\nuntied model: cosine similarity of the two codes' vectors: median {np.median(sims):.2f} "
          f"(min {np.min(sims):.2f}, max {np.max(sims):.2f}; 1 = the same direction)")
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
