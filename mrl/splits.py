"""Splits: which measurements train, calibrate, evaluate and test a model, and the inner validation part.

Every split keeps all measurements of a formula together. The labels are ``train``, ``calib`` (held out of training
to learn interval widths and domain thresholds), ``eval`` (the error a run reports) and ``test`` (rows the data set
itself reserves; never used for a choice). Each draw is seeded, so the same params give the same split.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mrl.data import FormulaData

#: Second element of the seed sequence of each draw, so the draws of one seed are independent of each other.
CALIBRATION_STREAM = 1
VALIDATION_STREAM = 0x57A1


def draw_formulas(formulas: Sequence[str] | np.ndarray, n: int, seed: int | Sequence[int]) -> np.ndarray:
    """``n`` of ``formulas`` drawn without replacement by a seeded permutation."""
    formulas = np.asarray(formulas)
    return formulas[np.random.default_rng(seed).permutation(len(formulas))[:n]]


def make_split(data: FormulaData, method: str = "random", eval_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Split label (``train``/``eval``/``test``) of every measurement, shape ``(n_samples,)``.

    ``random`` holds out a share of *formulas* (all measurements of a formula stay together); ``group`` holds out
    a share of the ``group`` column's values; ``material`` holds out a share of the *materials* (never the base,
    the one with the largest total content) and labels ``eval`` every formula holding one of them; ``column`` uses
    the data's own ``split`` column. Rows the data's ``split`` column marks ``test`` stay ``test`` under every
    method.
    """
    props = data.properties
    if method == "column":
        if "split" not in props.columns:
            raise ValueError(f"{data.name}: split='column' needs a 'split' column in the properties table")
        return props["split"].to_numpy(dtype=object)
    key = {"random": "formula_id", "group": "group", "material": "formula_id"}.get(method)
    if key is None:
        raise ValueError(f"unknown split method {method!r}")
    if key not in props.columns:
        raise ValueError(f"{data.name}: split='group' needs a 'group' column in the properties table")
    # rows the data set reserves as its test split stay out of training and eval whatever the method
    test = props["split"].eq("test").to_numpy() if "split" in props.columns else np.zeros(len(props), bool)
    if method == "material":
        forms = data.formulas[data.formulas["formula_id"].isin(set(props.loc[~test, "formula_id"]))]
        units = np.asarray(sorted(set(forms["material_id"]) - {data.base_material()}))
    else:
        units = np.asarray(pd.unique(props.loc[~test, key]))
    rng = np.random.default_rng(seed)
    held = set(units[rng.permutation(len(units))[:max(1, int(round(eval_fraction * len(units))))]])
    if method == "material":  # held materials -> the formulas holding one of them
        held = set(forms.loc[forms["material_id"].isin(held), "formula_id"])
    labels = np.where(props[key].isin(held), "eval", "train").astype(object)
    labels[test] = "test"
    return labels


def hold_out_calibration(split: np.ndarray, formula_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Relabel a share ``fraction`` of the ``train`` *formulas* (all their measurements) as ``calib``.

    The calibration formulas are held out of training to learn interval widths and domain thresholds; eval and
    test rows are never touched. ``fraction`` 0 returns ``split`` unchanged.
    """
    split = np.asarray(split, dtype=object).copy()
    if fraction <= 0:
        return split
    formula_ids = np.asarray(formula_ids)
    train_formulas = pd.unique(formula_ids[split == "train"])
    n = int(round(fraction * len(train_formulas)))
    if n < 1 or n >= len(train_formulas):
        return split
    held = set(draw_formulas(train_formulas, n, [seed, CALIBRATION_STREAM]))
    split[(split == "train") & np.isin(formula_ids, list(held))] = "calib"
    return split


def validation_split(data: FormulaData, fraction: float, seed: int) -> tuple[FormulaData, FormulaData]:
    """``(train part, validation part)`` of training data for early stopping: ``fraction`` of the *formulas* (at
    least one, at most all but one; all measurements of a formula stay together), drawn with ``seed``."""
    formulas = np.asarray(pd.unique(data.properties["formula_id"]))
    if len(formulas) < 2:
        raise ValueError(f"{data.name}: early_stopping needs at least 2 training formulas, got {len(formulas)}")
    n_val = min(len(formulas) - 1, max(1, int(round(fraction * len(formulas)))))
    val = data.properties["formula_id"].isin(set(draw_formulas(formulas, n_val, [seed, VALIDATION_STREAM]))).to_numpy()
    return data.subset(~val), data.subset(val)
