"""Matbench mp_e_form (132,752 compositions) with all five folds: mrl with a mat2vec start, plain sum and attention,
each without and with Magpie element features (single models per fold, CPU, one thread), with the fold loop of
``benchmarks/matbench.py`` (``run_mrl``), and the transformer interaction (``--rows transformer``: the two settings
of ``matbench.TRANSFORMER_GRID``, chosen per outer fold on an inner 80/20 split of its training fold,
``run_mrl_tuned``). Prints each row with its per-fold wall times and writes
``{settings, rows: [{model, features, mae_mean, mae_std, fold_mae, fold_wall_s, ...}], total_wall_s}``;
``--merge`` replaces only the rows it ran in an existing file.

    python benchmarks/mp_e_form_folds.py --json benchmarks/results/matbench_mp_e_form_5fold.json   # ~14 min
    python benchmarks/mp_e_form_folds.py --rows transformer --folds 1 --merge \
        --json benchmarks/results/matbench_mp_e_form_5fold.json     # the transformer on fold 1 only (CPU)

Settings are those of ``benchmarks/matbench.py`` (``MAT2VEC_L1``, ``ATTENTION``, the task's training settings); the
fold-1 rows there are the same models.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matbench as mb  # noqa: E402

ROWS = {"plain": [("mrl+mat2vec", mb.MAT2VEC_L1), ("mrl+mat2vec+magpie", {**mb.MAT2VEC_L1, "features": "magpie"})],
        "attention": [("mrl attention+mat2vec", mb.ATTENTION),
                      ("mrl attention+mat2vec+magpie", {**mb.ATTENTION, "features": "magpie"})],
        "transformer": [("mrl transformer+mat2vec", mb.TRANSFORMER_GRID)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=sorted(ROWS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--merge", action="store_true", help="keep the other rows of an existing --json file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mb.TASKS["mp_e_form"]["n_folds"] = args.folds
    task = mb.load_task(argparse.Namespace(task="mp_e_form", quick=False))
    out = {"settings": {**task.settings, "hidden": list(task.settings["hidden"])}, "rows": []}
    t0 = time.perf_counter()
    for label, cand in [row for group in args.rows for row in ROWS[group]]:
        if isinstance(cand, tuple):  # a grid: chosen per outer fold on an inner split
            row, choices = mb.run_mrl_tuned(task.data, task.folds, task.settings, cand, task.init_for, label, mb.log)
            row.update(features="transformer, inner-selected", choices=choices)
        else:
            row, _ = mb.run_mrl(task.data, task.folds, task.settings, cand, task.init_for, label, mb.log)
        out["rows"].append(row)
        print(f"{label}: {row['mae_mean']:.4f} +- {row['mae_std']:.4f} eV/atom over {row['n_folds']} folds; "
              f"per fold {', '.join(f'{s:.0f}' for s in row['fold_wall_s'])} s", flush=True)
    out["total_wall_s"] = time.perf_counter() - t0
    if args.json and args.merge and args.json.exists():
        old = json.loads(args.json.read_text())
        ran = {r["model"] for r in out["rows"]}
        old["rows"] = [r for r in old["rows"] if r["model"] not in ran] + out["rows"]
        out = old
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
