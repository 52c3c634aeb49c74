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
    python benchmarks/supplier_ties.py --seeds 0 1 2 --json benchmarks/results/supplier_ties.json  # the book's rows
    python benchmarks/supplier_ties.py --render benchmarks/results/supplier_ties.json --book book/new_materials.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mrl.analysis import vector_columns
from mrl.book import fill_from_results
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.io import write_json
from mrl.metrics import log10_mae, regression_metrics
from mrl.splits import make_split
from mrl.synth import make_lab
from mrl.wording import Score, compare, format_number

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


#: The three models, in the page's order, with their row labels.
MODELS = {"one code": "one code (the data before the split)", "two codes": "two codes, each its own vector",
          "two codes, tied": "two codes, tied"}


def _score(results: dict, model: str, key: str) -> Score:
    """Mean ± SD over the seeds of one model's ``key``."""
    return Score.of([r[key] for r in results["rows"] if r["model"] == model], over="seeds")


def render_supplier_ties(results: dict) -> str:
    """The table (mean ± SD over seeds) and the comparisons of the tied and untied models with one code."""
    settings = results["settings"]
    lines = [f"{settings['n_materials']} materials each get a second code in a random "
             f"{settings['share'] * 100:.0f} % of their formulas; three models on the same 80/20 split per seed "
             f"(dimension {settings['dim']}, {settings['steps']:,} steps, seeds "
             f"{', '.join(map(str, settings['seeds']))}; {format_number(results['wall_s'])} s on one CPU thread):", "",
             "| model | eval log10 MAE, all | eval log10 MAE, formulas with a second code | cP MAE, those formulas |",
             "|---|--:|--:|--:|"]
    for model, label in MODELS.items():
        cells = [_score(results, model, k).text(digits=3).replace(f" (mean ± SD over {len(settings['seeds'])} seeds)",
                                                                   "") for k in
                 ("all_mae_log10", "code_b_mae_log10", "code_b_mae")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n_b = _score(results, "two codes", "n_eval_code_b")
    lines += ["", f"Mean ± SD over {len(settings['seeds'])} seeds; about {n_b.value:.0f} eval formulas per seed hold a "
              "second code.", ""]
    for model in ("two codes, tied", "two codes"):
        lines.append("* " + compare(_score(results, model, "code_b_mae_log10"),
                                    _score(results, "one code", "code_b_mae_log10"), MODELS[model],
                                    MODELS["one code"], what="log10 MAE on the formulas with a second code").sentence)
    lines.append("* " + compare(_score(results, "two codes, tied", "code_b_mae_log10"),
                                _score(results, "two codes", "code_b_mae_log10"), "the tied model", "the untied one",
                                what="log10 MAE on the formulas with a second code").sentence)
    cos = np.asarray(results["cosine_two_codes"])
    lines.append(f"* In the untied model the two vectors of one material have a median cosine similarity of "
                 f"{np.median(cos):.2f} (1 = the same direction; range {cos.min():.2f} to {cos.max():.2f}).")
    return "\n".join(lines)


#: Regions of book/new_materials.md filled from this script's result file.
SECTIONS = {"supplier-ties": render_supplier_ties}


def write_book(results: dict, path: str | Path) -> Path:
    """Fill each rendered region of :data:`SECTIONS` between its ``<!-- NAME -->`` markers on the page."""
    return fill_from_results(results, SECTIONS, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-materials", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.1, help="share of each material's formulas under code B")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--json", type=Path, default=None, help="write the per-seed rows and settings here")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON", help="only render the book section "
                                                                                   "from this result file")
    parser.add_argument("--book", type=Path, default=None, help="with --render: fill the marked region of this page "
                                                                "(book/new_materials.md)")
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        print(f"wrote {write_book(results, args.book)}" if args.book else render_supplier_ties(results))
        return
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
    wall_s = time.perf_counter() - start
    print(f"total wall time {wall_s:.0f} s")
    if args.json:
        write_json({"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "n_materials_lab": lab.n_materials, "n_formulas_lab": lab.n_formulas, "rows": rows,
                    "cosine_two_codes": [float(s) for s in sims], "wall_s": round(wall_s, 1)}, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
