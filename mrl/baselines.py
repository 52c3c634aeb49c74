"""Classical baselines on the same :class:`~mrl.data.FormulaData`, so that benchmarks compare like with like.

Features (one row per measurement, i.e. per row of ``data.properties``):

* :func:`fraction_matrix`: the content fractions themselves (dense ``n_samples x n_materials``);
* :func:`magpie_features`: composition statistics of element properties (fraction-weighted mean, weighted mean
  absolute deviation, min, max, range), like matminer's ``ElementProperty.from_preset("magpie")``; materials that
  are not elements (e.g. ``"SiO2"``) are expanded into their atoms first;
* :func:`condition_features`: the measurement conditions (plus ``1000/T`` when a ``T`` column exists).

Estimators (:data:`ESTIMATORS`): ``dummy`` (training mean), ``ridge`` (standardised features clipped to +-5 SD,
alpha chosen by efficient leave-one-out CV on the training part only), ``random_forest`` and ``lightgbm``; all through
:func:`fit_predict`. Nothing here knows about a particular data set.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mrl import elements
from mrl.data import FormulaData
from mrl.metrics import regression_metrics

log = logging.getLogger(__name__)

MAGPIE_STATS = ("mean", "avg_dev", "min", "max", "range")


# --------------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------------
def fraction_matrix(data: FormulaData) -> np.ndarray:
    """Content fractions per measurement, dense ``(n_samples, n_materials)`` in vocabulary order."""
    return np.asarray(data.content_matrix()[data.sample_rows()].toarray(), np.float64)


def _resolve_table(table: str | pd.DataFrame) -> pd.DataFrame:
    if isinstance(table, str):
        table = elements.element_table(table)
    frame = table.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    frame = frame.loc[:, frame.notna().any(axis=0)]
    frame.index = frame.index.astype(str)
    return frame.fillna(frame.mean(axis=0))


def _atom_matrix(material_ids: Sequence[str], index: pd.Index) -> tuple[sp.csr_matrix, list[str]]:
    """Materials x table-rows matrix of atom counts (a material in the table counts 1 of itself); also the
    element symbols that had to be added because the table lacks them."""
    columns = {sym: i for i, sym in enumerate(index)}
    missing: list[str] = []
    rows, cols, vals = [], [], []
    for r, mid in enumerate(material_ids):
        if mid in columns:
            atoms = {mid: 1.0}
        else:
            try:
                atoms = elements.parse_formula(mid)
            except ValueError as err:
                raise ValueError(f"material {mid!r} is neither in the element table nor a chemical formula "
                                 f"({err})") from None
        for sym, count in atoms.items():
            if sym not in columns:
                columns[sym] = len(columns)
                missing.append(sym)
            rows.append(r)
            cols.append(columns[sym])
            vals.append(count)
    mat = sp.csr_matrix((vals, (rows, cols)), shape=(len(material_ids), len(columns)))
    return mat, missing


def magpie_feature_names(table: str | pd.DataFrame = "magpie", stats: Sequence[str] = MAGPIE_STATS) -> list[str]:
    """Column names of :func:`magpie_features`: ``"<stat>_<property>"``, property-major."""
    props = _resolve_table(table).columns
    return [f"{stat}_{prop}" for prop in props for stat in stats]


def magpie_features(data: FormulaData, table: str | pd.DataFrame = "magpie",
                    stats: Sequence[str] = MAGPIE_STATS) -> np.ndarray:
    """Element-property statistics of each measurement's composition, ``(n_samples, n_properties * len(stats))``.

    Args:
        data: the data set; materials are element symbols or formulas of elements (e.g. oxides), whose contents
            are converted to atomic fractions.
        table: an element table name (``magpie``, ``mat2vec``, ``oliynyk``, ``jarvis``; see
            :func:`mrl.elements.element_table`) or a DataFrame indexed by element symbol with numeric columns.
            NaNs are filled with the column mean; elements absent from the table get the column means too
            (with a warning).
        stats: any of ``mean`` (fraction-weighted mean), ``avg_dev`` (fraction-weighted mean absolute deviation
            from that mean), ``min``, ``max``, ``range`` (over the elements present).

    Columns are property-major, named by :func:`magpie_feature_names`.
    """
    unknown = [s for s in stats if s not in MAGPIE_STATS]
    if unknown:
        raise ValueError(f"unknown stats {unknown}; choose from {MAGPIE_STATS}")
    props = _resolve_table(table)
    atoms, missing = _atom_matrix([str(m) for m in data.material_ids], props.index)
    values = props.to_numpy(np.float64)
    if missing:
        log.warning("element table lacks %s; using column means for them", missing)
        values = np.vstack([values, np.tile(props.mean(axis=0).to_numpy(), (len(missing), 1))])
    # formula x element atomic fractions
    comp = sp.csr_matrix(data.content_matrix() @ atoms)
    totals = np.asarray(comp.sum(axis=1)).ravel()
    comp = sp.csr_matrix(sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ comp)
    comp.eliminate_zeros()
    comp.sort_indices()
    n_formulas, n_props = comp.shape[0], values.shape[1]
    empty = np.diff(comp.indptr) == 0
    if empty.any():
        raise ValueError(f"{int(empty.sum())} formulas have no content")
    entry_vals = values[comp.indices]                          # (nnz, n_props)
    row_of_entry = np.repeat(np.arange(n_formulas), np.diff(comp.indptr))
    starts = comp.indptr[:-1]
    out: dict[str, np.ndarray] = {}
    mean = np.asarray(comp @ values)
    out["mean"] = mean
    if "avg_dev" in stats:
        dev = np.abs(entry_vals - mean[row_of_entry]) * comp.data[:, None]
        out["avg_dev"] = np.add.reduceat(dev, starts, axis=0)
    if {"min", "max", "range"} & set(stats):
        out["min"] = np.minimum.reduceat(entry_vals, starts, axis=0)
        out["max"] = np.maximum.reduceat(entry_vals, starts, axis=0)
        out["range"] = out["max"] - out["min"]
    per_formula = np.stack([out[s] for s in stats], axis=2).reshape(n_formulas, n_props * len(stats))
    return per_formula[data.sample_rows()]


def condition_features(data: FormulaData, inverse_T: bool = True) -> np.ndarray:
    """Condition columns per measurement, ``(n_samples, n_conditions [+1])``; with ``inverse_T`` and a ``T``
    condition (absolute temperature, must be > 0), ``1000 / T`` is appended as the last column."""
    values = data.condition_values()
    if inverse_T and "T" in data.conditions:
        temp = values[:, list(data.conditions).index("T")]
        if (temp <= 0).any():
            raise ValueError("inverse_T needs absolute temperatures > 0 in condition 'T'")
        values = np.column_stack([values, 1000.0 / temp])
    return values


def condition_feature_names(data: FormulaData, inverse_T: bool = True) -> list[str]:
    """Column names of :func:`condition_features`."""
    names = list(data.conditions)
    return names + ["1000/T"] if inverse_T and "T" in data.conditions else names


# --------------------------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------------------------
def _dummy(seed: int, **params: Any) -> Any:
    return DummyRegressor(strategy="mean", **params)


def _ridge(seed: int, alphas: Sequence[float] | None = None, clip: float | None = 5.0, **params: Any) -> Any:
    """Standardise (training mean/SD), clip to +-``clip`` SD, RidgeCV (efficient LOO over ``alphas``).

    The clip keeps a feature that is almost constant in training (e.g. ``min_GSmagmom`` in expt_gap) from
    exploding on a test row (a z-score of millions otherwise)."""
    alphas = np.logspace(-4, 4, 17) if alphas is None else np.asarray(alphas, np.float64)
    steps: list[Any] = [StandardScaler()]
    if clip is not None:
        steps.append(FunctionTransformer(np.clip, kw_args={"a_min": -clip, "a_max": clip}))
    return make_pipeline(*steps, RidgeCV(alphas=alphas, **params))


def _random_forest(seed: int, n_estimators: int = 300, n_jobs: int = -1, **params: Any) -> Any:
    return RandomForestRegressor(n_estimators=n_estimators, n_jobs=n_jobs, random_state=seed, **params)


def _lightgbm(seed: int, n_estimators: int = 1000, learning_rate: float = 0.03, num_leaves: int = 31,
              **params: Any) -> Any:
    from lightgbm import LGBMRegressor

    defaults = {"subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "min_child_samples": 5,
                "verbose": -1}
    defaults.update(params)
    return LGBMRegressor(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                         random_state=seed, **defaults)


#: name -> factory ``(seed, **params) -> unfitted sklearn-style regressor``.
ESTIMATORS: dict[str, Callable[..., Any]] = {
    "dummy": _dummy,
    "ridge": _ridge,
    "random_forest": _random_forest,
    "lightgbm": _lightgbm,
}


def make_estimator(name: str, seed: int = 0, **params: Any) -> Any:
    """An unfitted regressor from :data:`ESTIMATORS` with the given parameters."""
    try:
        factory = ESTIMATORS[name]
    except KeyError:
        raise KeyError(f"unknown estimator {name!r}; known: {sorted(ESTIMATORS)}") from None
    return factory(seed, **params)


def fit_predict(name: str, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, seed: int = 0,
                **params: Any) -> np.ndarray:
    """Fit estimator ``name`` on ``(X_train, y_train)`` only and predict ``X_test``; returns ``(n_test,)``. Sparse
    inputs stay sparse (CSR; for estimators that take them, e.g. LightGBM)."""
    X_train = sp.csr_matrix(X_train, dtype=np.float64) if sp.issparse(X_train) else np.asarray(X_train, np.float64)
    X_test = sp.csr_matrix(X_test, dtype=np.float64) if sp.issparse(X_test) else np.asarray(X_test, np.float64)
    y_train = np.asarray(y_train, np.float64).ravel()
    if X_train.ndim != 2 or X_test.ndim != 2 or X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"X_train {X_train.shape} and X_test {X_test.shape} must be 2-D with equal columns")
    if X_train.shape[0] != len(y_train):
        raise ValueError(f"{X_train.shape[0]} training rows but {len(y_train)} targets")
    start = time.perf_counter()
    model = make_estimator(name, seed, **params)
    model.fit(X_train, y_train)
    pred = np.asarray(model.predict(X_test), np.float64).ravel()
    log.info("%s: fit on %d x %d, predicted %d in %.2f s", name, *X_train.shape, X_test.shape[0],
             time.perf_counter() - start)
    return pred


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R2 of one set of predictions (a subset of :func:`mrl.metrics.regression_metrics`)."""
    scores = regression_metrics(y_true, y_pred)
    return {key: scores[key] for key in ("mae", "rmse", "r2")}


def cross_validate(name: str, X: np.ndarray, y: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]],
                   seed: int = 0, **params: Any) -> pd.DataFrame:
    """Fit/predict on each ``(train_idx, test_idx)`` fold; one row per fold: ``fold, mae, rmse, r2, n, wall_s``."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64).ravel()
    rows = []
    for k, (train, test) in enumerate(folds):
        start = time.perf_counter()
        pred = fit_predict(name, X[train], y[train], X[test], seed=seed, **params)
        rows.append({"fold": k, **regression_scores(y[test], pred), "n": len(test),
                     "wall_s": time.perf_counter() - start})
    return pd.DataFrame(rows)
