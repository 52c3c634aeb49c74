"""What the feature map ``g`` and the residuals ``r`` learn, on Matbench expt_gap (elements as materials).

    python benchmarks/feature_analysis.py [--json benchmarks/results/feature_analysis_expt_gap.json]   # ~1-2 min

One training fold (Matbench fold 1, the test fold is not used), the settings of ``benchmarks/matbench.py``'s
expt_gap feature row (attention, L1 loss, dim 16, 2,000 steps, residual table started from mat2vec, linear ``g`` on
standardised Magpie element properties); beside it the same row with the residuals started at zero, and the task's
best row without features. Two questions:

1. **Does g carry the periodic table?** For the elements used in at least ``--min-formulas`` training formulas: the
   share of each element's ``--k`` nearest neighbours (cosine) in the same group / period / block, for ``g(x_i)``,
   the residuals ``r_i``, the full learned vectors ``e_i`` (after the activation), the model without features, the
   standardised Magpie rows themselves (g's input) and chance (the expected share for a random neighbour order).
2. **Do residuals stay small where data are few, and grow where there are many?** ``||r_i|| / ||g(x_i) + r_i||`` (raw
   vectors, before the activation) against the number of training formulas that use element ``i``: Spearman's
   rho and the medians of the least-used and most-used thirds of the elements.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def raw_parts(est) -> tuple[np.ndarray, np.ndarray]:
    """``(g(x_i), r_i)`` of a fitted feature model, raw (before the activation), rows in vocabulary order."""
    import torch

    module = est.module_
    with torch.no_grad():
        g = module.feature_map(module.features).cpu().numpy().astype(np.float64)
        r = module.table.detach().cpu().numpy().astype(np.float64)
    return g, r


def vectors_of(est) -> np.ndarray:
    """Effective vectors ``e_i`` (after activation and content scale)."""
    from mrl.analysis import vectors

    return vectors(est.embeddings())


def agreement_table(sets: dict[str, np.ndarray], positions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Share of ``k`` nearest neighbours (cosine) in the same group / period / block, and its chance level."""
    from matbench import neighbour_agreement

    rows = []
    for name, X in sets.items():
        row = {"vectors": name}
        for col in ("group", "period", "block"):
            row[f"{col}_agree"], row[f"{col}_chance"] = neighbour_agreement(X, positions[col].to_numpy(), k)
        rows.append(row)
    return pd.DataFrame(rows)


def residual_share(g: np.ndarray, r: np.ndarray, n_formulas: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """Per element ``||r|| / ||g + r||`` with its usage; Spearman's rho and the medians of the usage thirds
    (elements used in at least one training formula)."""
    from scipy.stats import spearmanr

    share = np.linalg.norm(r, axis=1) / np.maximum(np.linalg.norm(g + r, axis=1), 1e-12)
    frame = pd.DataFrame({"n_formulas": n_formulas, "residual_share": share, "g_norm": np.linalg.norm(g, axis=1),
                          "r_norm": np.linalg.norm(r, axis=1)})
    used = frame[frame["n_formulas"] > 0].sort_values("n_formulas", kind="stable")
    third = len(used) // 3
    rho, p = spearmanr(used["n_formulas"], used["residual_share"])
    summary = {"n_elements": int(len(used)), "spearman_rho": float(rho), "spearman_p": float(p),
               "median_share_least_used_third": float(used["residual_share"].iloc[:third].median()),
               "median_share_most_used_third": float(used["residual_share"].iloc[-third:].median()),
               "least_used_third_formulas": [int(used["n_formulas"].iloc[0]), int(used["n_formulas"].iloc[third - 1])],
               "most_used_third_formulas": [int(used["n_formulas"].iloc[-third]), int(used["n_formulas"].iloc[-1])],
               "median_share_all": float(used["residual_share"].median())}
    return frame, summary


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--k", type=int, default=5, help="neighbours per element")
    parser.add_argument("--min-formulas", type=int, default=10, help="elements in the neighbour analysis are used in "
                                                                     "at least this many training formulas")
    parser.add_argument("--steps", type=int, default=None, help="override the training steps (smoke runs)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import matbench as mb

    from mrl.elements import element_table, periodic_table

    t0 = time.perf_counter()
    task = mb.load_task(argparse.Namespace(task="expt_gap", quick=False))
    settings = dict(task.settings)
    if args.steps:
        settings["steps"] = args.steps
    train, _test = task.folds[0]
    mask = np.isin(np.arange(task.data.n_samples), train)
    feat_label, feat_cand = task.cfg["new_rows"][0]
    best_label, best_cand = task.cfg["best_row"]
    fits = {}
    for name, cand in (("features (r from mat2vec)", feat_cand),
                       ("features (r from 0)", {**feat_cand, "mat2vec": False}),
                       ("no features", best_cand)):
        start = time.perf_counter()
        fits[name] = mb.fit_candidate(task.data, mask, settings, cand, task.init_for)
        print(f"  fitted {name}: {time.perf_counter() - start:.0f} s", flush=True)

    est = fits["features (r from mat2vec)"]
    mats = est.materials_
    ids = mats["material_id"].astype(str).to_numpy()
    n_formulas = mats["n_formulas"].to_numpy(np.int64)
    keep = n_formulas >= args.min_formulas
    positions = periodic_table().set_index("material_id").loc[ids[keep]]
    magpie = element_table("magpie").reindex(ids[keep])
    magpie = magpie.loc[:, magpie.notna().all()]
    magpie = ((magpie - magpie.mean()) / magpie.std().replace(0, 1)).to_numpy()
    with_features = ("features (r from mat2vec)", "features (r from 0)")
    parts = {name: raw_parts(fits[name]) for name in with_features}
    sets = {}
    for name in with_features:
        g, r = parts[name]
        sets[f"g(x_i), {name}"] = g[keep]
        sets[f"r_i, {name}"] = r[keep]
        sets[f"e_i, {name}"] = vectors_of(fits[name])[keep]
    sets["e_i, no features (mat2vec start)"] = vectors_of(fits["no features"])[keep]
    sets["magpie rows (standardised; g's input)"] = magpie
    agree = agreement_table(sets, positions, args.k)
    print(f"\n## expt_gap fold 1: share of {args.k} nearest neighbours (cosine) in the same group / period / block, "
          f"{int(keep.sum())} elements used in >= {args.min_formulas} training formulas")
    print(agree.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    shares = {}
    print("\n## residual share ||r_i|| / ||g(x_i) + r_i|| (raw vectors) against training formulas using element i")
    for name in with_features:
        frame, summary = residual_share(*parts[name], n_formulas)
        frame.insert(0, "material_id", ids)
        shares[name] = {"summary": summary, "per_element": frame.to_dict(orient="records")}
        print(f"  {name}: {json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()})}")
    total = time.perf_counter() - t0
    print(f"\ntotal wall time {total:.0f} s")
    result = {"task": "expt_gap", "fold": 1, "settings": {**settings, "hidden": list(settings["hidden"])},
              "feature_row": [feat_label, feat_cand], "no_feature_row": [best_label, best_cand], "k": args.k,
              "min_formulas": args.min_formulas, "elements": [str(i) for i in ids[keep]],
              "agreement": agree.to_dict(orient="records"), "residual_share": shares, "total_wall_s": total}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
