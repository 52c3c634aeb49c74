"""Where a model errs: error against how often a formula's ingredients were seen in training, and against how far
the formula lies from its nearest training formula.

A material's vector is learned only from the training formulas that use it, so a formula holding a rarely-seen
(or never-seen) material is expected to be predicted worse; so is a formula far (in contents) from every training
formula. These functions measure that from a run's ``predictions`` table (``formula_id, split, y_true, y_pred``,
one row per measurement) and the data's ``formulas`` table (``formula_id, material_id, content``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mrl.data import content_matrix
from mrl.metrics import log10_mae, regression_metrics

#: Default bin edges of "training formulas using the formula's rarest ingredient" (left-closed).
USAGE_BINS = (0, 1, 3, 10, 30, 100, np.inf)
#: Default bin edges of the L1 distance to the nearest training formula (right-closed; exactly 0 gets its own bin).
DISTANCE_BINS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
#: Distances below this are float noise of an identical content vector.
DISTANCE_TOLERANCE = 1e-9


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


def nearest_distances(query: sp.spmatrix, reference: sp.spmatrix, chunk_size: int = 256
                      ) -> tuple[np.ndarray, np.ndarray]:
    """L1 distance from each row of ``query`` (shape ``(n_query, n_materials)``) to its nearest row of
    ``reference`` (``(n_reference, n_materials)``), and that row's index; both of shape ``(n_query,)``.

    With non-negative contents, ``|q - r|_1 = |q|_1 + |r|_1 - 2 overlap`` where ``overlap = sum_m min(q_m, r_m)``;
    for fractions summing to 1 the distance is ``2 (1 - overlap)`` in ``[0, 2]``: 0 = the same contents, small =
    the same ingredients at other ratios, 2 = no ingredient in common. A sum of minima is no matrix product, so
    each chunk of ``chunk_size`` query rows adds, per material it uses, the outer minimum of that material's
    (sparse) column entries into a ``chunk_size x n_reference`` block: memory never grows with ``n_query``.
    """
    query, reference = sp.csr_matrix(query, dtype=np.float64), sp.csc_matrix(reference, dtype=np.float64)
    if query.shape[1] != reference.shape[1] or reference.shape[0] == 0:
        raise ValueError(f"query {query.shape} and reference {reference.shape}: need the same material columns "
                         "and at least one reference row")
    query_sums = np.asarray(query.sum(axis=1)).ravel()
    reference_sums = np.asarray(reference.sum(axis=1)).ravel()
    distance = np.empty(query.shape[0])
    nearest = np.empty(query.shape[0], dtype=np.int64)
    for start in range(0, query.shape[0], chunk_size):
        block = query[start:start + chunk_size].tocsc()
        overlap = np.zeros((block.shape[0], reference.shape[0]))
        for m in np.flatnonzero((np.diff(block.indptr) > 0) & (np.diff(reference.indptr) > 0)):
            q, r = slice(*block.indptr[m:m + 2]), slice(*reference.indptr[m:m + 2])
            overlap[np.ix_(block.indices[q], reference.indices[r])] += np.minimum.outer(block.data[q],
                                                                                       reference.data[r])
        gap = reference_sums - 2 * overlap  # the distance less the query row's sum
        rows = np.arange(block.shape[0])
        nearest[start:start + block.shape[0]] = best = gap.argmin(axis=1)
        distance[start:start + block.shape[0]] = query_sums[start:start + block.shape[0]] + gap[rows, best]
    distance[distance < DISTANCE_TOLERANCE] = 0.0
    return distance, nearest


def distance_errors(predictions: pd.DataFrame, formulas: pd.DataFrame, chunk_size: int = 256) -> pd.DataFrame:
    """:func:`usage_errors` plus, per measurement, ``train_distance``: the L1 distance of its formula's content
    fractions to the nearest training formula's (0 for a training formula; see :func:`nearest_distances`), and
    ``nearest_train_formula``, that formula's id. Shape ``(n_measurements, ...)``.
    """
    out = usage_errors(predictions, formulas)
    forms = formulas.assign(formula_id=formulas["formula_id"].astype(str),
                            material_id=formulas["material_id"].astype(str))
    formula_ids = pd.Index(pd.unique(out["formula_id"].astype(str)))
    forms = forms[forms["formula_id"].isin(formula_ids)]
    material_ids = pd.Index(pd.unique(forms["material_id"]))
    content = content_matrix(forms, formula_ids, material_ids)
    content = sp.diags(1.0 / np.maximum(np.asarray(content.sum(axis=1)).ravel(), 1e-300)) @ content  # fractions
    is_train = formula_ids.isin(out.loc[out["split"] == "train", "formula_id"].astype(str))
    distance = np.where(is_train, 0.0, np.nan)
    nearest = np.where(is_train, formula_ids.to_numpy(dtype=object), None)
    if is_train.any() and not is_train.all():  # without training formulas every distance stays NaN
        d, idx = nearest_distances(content[~is_train], content[is_train], chunk_size)
        distance[~is_train], nearest[~is_train] = d, formula_ids[is_train].to_numpy(dtype=object)[idx]
    rows = formula_ids.get_indexer(out["formula_id"].astype(str))
    return out.assign(train_distance=distance[rows], nearest_train_formula=nearest[rows])


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
    binned = usage_bins(table["rarest_train_usage"], bins)
    rows = []
    for (split, label), grp in table.groupby([table["split"], binned], observed=True, sort=False):
        rows.append({"split": split, "usage_bin": str(label), **_error_summary(grp)})
    out = pd.DataFrame(rows, columns=["split", "usage_bin", "n", "mae", "rmse", "mape", "median_abs_error"])
    order = {label: i for i, label in enumerate(binned.cat.categories)}
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
        rows.append({"group": label, "share": len(grp) / max(len(part), 1), **_error_summary(grp)})
    return pd.DataFrame(rows, columns=["group", "n", "share", "mae", "rmse", "mape", "median_abs_error"])


def error_by_distance(table: pd.DataFrame, split: str = "eval", bins: Sequence[float] = DISTANCE_BINS
                      ) -> pd.DataFrame:
    """Metrics of ``split`` measurements per bin of ``train_distance`` (from :func:`distance_errors`) and per
    ``ingredients`` group: ``all seen`` (every material used by some training formula), ``some unseen``, ``any``.

    One row per (distance bin, group), bins in order (``"0"``: a training formula's contents; ``"0.1-0.25"``:
    distance in (0.1, 0.25]), then bin ``"all"``; columns ``distance_bin, ingredients, n, share`` (of the
    split's measurements), ``mae, rmse, median_abs_error, mae_log10`` (NaN unless every value is positive).
    """
    part = table[table["split"] == split]
    distance = part["train_distance"].to_numpy(np.float64)
    edges = list(bins)
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    binned = pd.Categorical(np.where(distance == 0, "0", pd.cut(distance, edges, labels=labels).astype(str)),
                            categories=["0", *labels], ordered=True)
    part = part.assign(distance_bin=binned, ingredients=np.where(part["n_unseen"] > 0, "some unseen", "all seen"))
    rows = []
    for label, in_bin in [*part.groupby("distance_bin", observed=True), ("all", part)]:
        for ingredients, grp in [*in_bin.groupby("ingredients"), ("any", in_bin)]:
            rows.append({"distance_bin": str(label), "ingredients": ingredients,
                         "share": len(grp) / max(len(part), 1), **_error_summary(grp)})
    return pd.DataFrame(rows, columns=["distance_bin", "ingredients", "n", "share", "mae", "rmse",
                                       "median_abs_error", "mae_log10"])


def _error_summary(frame: pd.DataFrame) -> dict[str, float]:
    """``n, mae, rmse, mape, median_abs_error`` of ``y_pred`` against ``y_true``, and ``mae_log10`` (NaN unless
    every value is positive)."""
    y_true, y_pred = frame["y_true"].to_numpy(np.float64), frame["y_pred"].to_numpy(np.float64)
    m = regression_metrics(y_true, y_pred)
    return {"n": m["n"], "mae": m["mae"], "rmse": m["rmse"], "mape": m["mape"],
            "median_abs_error": float(np.median(np.abs(y_pred - y_true))) if len(y_true) else float("nan"),
            "mae_log10": log10_mae(y_true, y_pred)}


def usage_bins(counts: Any, bins: Sequence[float]) -> Any:
    """Counts cut into the left-closed bins between the edges ``bins``, each labelled by :func:`usage_bin_label`
    (a categorical of ``counts``' shape; NaN outside the edges)."""
    edges = list(bins)
    labels = [usage_bin_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
    return pd.cut(counts, edges, right=False, labels=labels)


def usage_bin_label(lo: float, hi: float) -> str:
    """The label of the left-closed count bin ``[lo, hi)``: ``"0"``, ``"3-9"``, ``"100+"``."""
    if np.isinf(hi):
        return f"{int(lo)}+"
    if hi - lo == 1:
        return str(int(lo))
    return f"{int(lo)}-{int(hi) - 1}"
