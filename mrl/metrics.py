"""Regression metrics in the property's own units."""
from __future__ import annotations

import numpy as np

#: |y| below this is left out of MAPE (a relative error of a zero value is undefined).
MAPE_FLOOR = 1e-9


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R2, MAPE (%, over |y| > MAPE_FLOOR) and n for one set of predictions, shapes ``(n,)``."""
    y_true = np.asarray(y_true, np.float64).ravel()
    y_pred = np.asarray(y_pred, np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: y_true {y_true.shape} vs y_pred {y_pred.shape}")
    if y_true.size == 0:
        return {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan"), "mape": float("nan"), "n": 0}
    err = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    nz = np.abs(y_true) > MAPE_FLOOR
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "r2": float(1.0 - (err ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "mape": float(100.0 * np.mean(np.abs(err[nz]) / np.abs(y_true[nz]))) if nz.any() else float("nan"),
        "n": int(y_true.size),
    }


def log10_mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error of ``log10`` (decades; 0.3 is a factor of 2), NaN unless every value is positive."""
    y_true = np.asarray(y_true, np.float64).ravel()
    y_pred = np.asarray(y_pred, np.float64).ravel()
    if not len(y_true) or (y_true <= 0).any() or (y_pred <= 0).any():
        return float("nan")
    return regression_metrics(np.log10(y_true), np.log10(y_pred))["mae"]


def split_metrics(y_true: np.ndarray, y_pred: np.ndarray, split: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics per split label (e.g. ``train``, ``eval``, ``test``) plus ``full`` over all samples."""
    split = np.asarray(split)
    out = {name: regression_metrics(y_true[split == name], y_pred[split == name])
           for name in dict.fromkeys(split.tolist())}
    out["full"] = regression_metrics(y_true, y_pred)
    return out


def log_target_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """What a formulator reads for a positive property learned on log10 (viscosity): ``mae_log10`` (decades; 0.3 is a
    factor of 2), ``r2_log10`` (R² of log10), ``within_2x`` (share of predictions within a factor 2 of the
    measurement) and ``within_20pct`` (share within 20 % of it); NaN unless every value is positive."""
    y_true = np.asarray(y_true, np.float64).ravel()
    y_pred = np.asarray(y_pred, np.float64).ravel()
    if not len(y_true) or (y_true <= 0).any() or (y_pred <= 0).any():
        return {key: float("nan") for key in ("mae_log10", "r2_log10", "within_2x", "within_20pct")}
    logs = regression_metrics(np.log10(y_true), np.log10(y_pred))
    ratio = y_pred / y_true
    return {"mae_log10": logs["mae"], "r2_log10": logs["r2"],
            "within_2x": float(np.mean((ratio <= 2.0) & (ratio >= 0.5))),
            "within_20pct": float(np.mean(np.abs(ratio - 1.0) <= 0.2))}
