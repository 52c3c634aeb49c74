"""Where a model errs: error against how often a formula's ingredients were seen in training.

A material's vector is learned only from the training formulas that use it, so a formula holding a rarely-seen
(or never-seen) material is expected to be predicted worse. These functions measure that from a run's
``predictions`` table (``formula_id, split, y_true, y_pred``, one row per measurement) and the data's
``formulas`` table (``formula_id, material_id, content``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mrl.metrics import regression_metrics

#: Default bin edges of "training formulas using the formula's rarest ingredient" (left-closed).
USAGE_BINS = (0, 1, 3, 10, 30, 100, np.inf)


def usage_errors(predictions: pd.DataFrame, formulas: pd.DataFrame) -> pd.DataFrame:
    """Per measurement: the prediction, its error, and how familiar its ingredients were in training.

    Adds to ``predictions`` the columns ``abs_error``, ``n_ingredients``, ``rarest_train_usage`` (number of
    training formulas that use the formula's least-used ingredient; 0 = an ingredient absent from training) and
    ``n_unseen`` (ingredients used by no training formula). Shape ``(n_measurements, ...)``.
    """
    missing = [c for c in ("formula_id", "split", "y_true", "y_pred") if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions: missing column(s) {missing}; found {list(predictions.columns)}")
    forms = formulas[["formula_id", "material_id"]].astype(str).drop_duplicates()
    train_ids = set(predictions.loc[predictions["split"] == "train", "formula_id"].astype(str))
    usage = forms[forms["formula_id"].isin(train_ids)].groupby("material_id")["formula_id"].nunique()
    forms = forms.assign(train_usage=forms["material_id"].map(usage).fillna(0).astype(int))
    per_formula = forms.groupby("formula_id").agg(
        n_ingredients=("material_id", "size"), rarest_train_usage=("train_usage", "min"),
        n_unseen=("train_usage", lambda u: int((u == 0).sum())))
    out = predictions.copy()
    out["abs_error"] = (out["y_pred"] - out["y_true"]).abs()
    per_row = per_formula.reindex(out["formula_id"].astype(str).to_numpy())
    for column in per_formula.columns:
        out[column] = per_row[column].to_numpy()
    return out


def log10_metrics(predictions: pd.DataFrame) -> pd.DataFrame | None:
    """Metrics of ``log10`` of the property per split (and ``full``): ``split, n, mae_log10, rmse_log10,
    r2_log10``; ``None`` unless every measured and predicted value is positive.

    For a property spanning decades (viscosity), errors in its own units are dominated by the few largest values;
    on the log scale an MAE of 0.3 means predictions typically within a factor of 2.
    """
    y_true = predictions["y_true"].to_numpy(np.float64)
    y_pred = predictions["y_pred"].to_numpy(np.float64)
    if not len(y_true) or (y_true <= 0).any() or (y_pred <= 0).any():
        return None
    log_true, log_pred = np.log10(y_true), np.log10(y_pred)
    split = predictions["split"].to_numpy()
    groups = [(s, split == s) for s in dict.fromkeys(split.tolist())] + [("full", np.ones(len(split), bool))]
    rows = []
    for name, mask in groups:
        m = regression_metrics(log_true[mask], log_pred[mask])
        rows.append({"split": name, "n": m["n"], "mae_log10": m["mae"], "rmse_log10": m["rmse"], "r2_log10": m["r2"]})
    return pd.DataFrame(rows)


def error_by_usage(table: pd.DataFrame, bins: Sequence[float] = USAGE_BINS) -> pd.DataFrame:
    """Metrics per split and bin of ``rarest_train_usage`` (from :func:`usage_errors`).

    Returns one row per (split, bin) with ``split, usage_bin`` (e.g. ``"0"``, ``"1-2"``, ``"100+"``),
    ``n``, ``mae``, ``rmse``, ``mape`` and ``median_abs_error``; empty bins are left out.
    """
    edges = list(bins)
    labels = [_bin_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
    binned = pd.cut(table["rarest_train_usage"], edges, right=False, labels=labels)
    rows = []
    for (split, label), grp in table.groupby([table["split"], binned], observed=True, sort=False):
        m = regression_metrics(grp["y_true"], grp["y_pred"])
        rows.append({"split": split, "usage_bin": str(label), "n": m["n"], "mae": m["mae"], "rmse": m["rmse"],
                     "mape": m["mape"], "median_abs_error": float(grp["abs_error"].median())})
    out = pd.DataFrame(rows, columns=["split", "usage_bin", "n", "mae", "rmse", "mape", "median_abs_error"])
    order = {label: i for i, label in enumerate(labels)}
    return out.sort_values(["split", "usage_bin"], key=lambda s: s.map(order) if s.name == "usage_bin" else s,
                           ignore_index=True)


def unseen_effect(table: pd.DataFrame, split: str = "eval") -> pd.DataFrame:
    """The unseen-material effect: metrics of ``split`` measurements whose formula holds at least one material
    absent from training, against those whose materials were all seen. One row per group (``group, n, share,
    mae, rmse, mape, median_abs_error``)."""
    part = table[table["split"] == split]
    rows = []
    for label, grp in (("all materials seen in training", part[part["n_unseen"] == 0]),
                       ("holds a material unseen in training", part[part["n_unseen"] > 0])):
        m = regression_metrics(grp["y_true"], grp["y_pred"])
        rows.append({"group": label, "n": m["n"], "share": m["n"] / max(len(part), 1), "mae": m["mae"],
                     "rmse": m["rmse"], "mape": m["mape"],
                     "median_abs_error": float(grp["abs_error"].median()) if len(grp) else float("nan")})
    return pd.DataFrame(rows)


def error_by_usage_figure(binned: pd.DataFrame, metric: str = "median_abs_error") -> Figure:
    """Bars of ``metric`` per usage bin, one colour per split, with the number of measurements on each bar."""
    import seaborn as sns

    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(7, 4.2), layout="constrained")
        ax = fig.subplots()
    splits = [s for s in ("train", "eval", "test") if s in set(binned["split"])]
    splits += [s for s in pd.unique(binned["split"]) if s not in splits]
    labels = list(dict.fromkeys(binned["usage_bin"]))
    width = 0.8 / max(len(splits), 1)
    colors = dict(zip(splits, sns.color_palette("deep", len(splits))))
    x = np.arange(len(labels))
    for i, split in enumerate(splits):
        part = binned[binned["split"] == split].set_index("usage_bin").reindex(labels)
        bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, part[metric], width, label=split, color=colors[split])
        ax.bar_label(bars, labels=[f"n={int(n)}" if np.isfinite(n) else "" for n in part["n"]], fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_xlabel("training formulas using the formula's rarest ingredient")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title("Error against familiarity of the rarest ingredient")
    ax.legend(title="split")
    return fig


def _bin_label(lo: float, hi: float) -> str:
    if np.isinf(hi):
        return f"{int(lo)}+"
    if hi - lo == 1:
        return str(int(lo))
    return f"{int(lo)}-{int(hi) - 1}"
