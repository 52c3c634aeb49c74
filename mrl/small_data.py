"""Defaults that depend on the data's size (``small_data: auto | on | off``).

On a few hundred to a few thousand formulas a network that learns one vector per material from scratch loses to
ridge or LightGBM on the contents (``book/small_data.md``). ``small_data`` switches, on such data, to the settings of
:data:`SMALL_DATA`: mrl learns the residual of the better of ridge and LightGBM (``stack: auto``, chosen on
out-of-fold predictions of the training formulas, :mod:`mrl.stacking`) with a smaller, more strongly regularised
network. ``auto`` turns them on at or below :data:`SMALL_DATA_MAX_FORMULAS` training formulas. Only keys left at
their package default are changed: a value the user set wins (a value equal to the package default counts as not
set; ``small_data: off`` keeps every default). The plan and the run log say what was chosen.

The settings and the threshold were chosen on inner splits of training data (the study in
``benchmarks/small_data.py``; its candidates are chosen on calib formulas, never eval).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from mrl.params import RunParams
from mrl.stacking import STACKED_VECTORS_NOTE

#: At or below this many training formulas ``small_data: auto`` uses :data:`SMALL_DATA`.
SMALL_DATA_MAX_FORMULAS = 5000
#: The small-data settings: stack on the better of ridge and LightGBM, a 4-dimensional table, one narrow hidden layer,
#: strong weight decay on the head and the table, a lower learning rate (the network only corrects the base).
SMALL_DATA: dict[str, Any] = {"stack": "auto", "embedding_dim": 4, "hidden": [32], "weight_decay": 0.01,
                              "embedding_weight_decay": 0.01, "lr": 0.0003}


def resolve_small_data(params: RunParams, n_train_formulas: int) -> tuple[RunParams, str]:
    """``(params with the small-data settings applied where they apply, the reason in words)``."""
    mode = params.small_data
    on = mode == "on" or (mode == "auto" and n_train_formulas <= SMALL_DATA_MAX_FORMULAS)
    size = f"{n_train_formulas:,} training formulas"
    if not on:
        why = "small_data: off" if mode == "off" else f"{size} > {SMALL_DATA_MAX_FORMULAS:,}"
        return params, f"small-data settings: not used ({why})"
    defaults = RunParams()
    changed = {k: v for k, v in SMALL_DATA.items() if getattr(params, k) == getattr(defaults, k)}
    out = dataclasses.replace(params, **changed)
    # worded from the result, so that resolving resolved params (a resumed run) says the same
    used = [f"{k} {v}" for k, v in SMALL_DATA.items() if getattr(out, k) == v]
    kept = [f"{k} {getattr(out, k)}" for k, v in SMALL_DATA.items() if getattr(out, k) != v]
    why = "small_data: on" if mode == "on" else f"small_data: auto, {size} <= {SMALL_DATA_MAX_FORMULAS:,}"
    reason = (f"small-data settings ({why}): " + (", ".join(used) or "none")
              + (f"; kept as set: {', '.join(kept)}" if kept else ""))
    if out.stack != "none":
        reason += "; " + STACKED_VECTORS_NOTE.format(base=f"stack {out.stack}")
    return out, reason
