"""Classical baselines beside every run: is mrl beaten on this data, and by how much?

:func:`fit_baselines` fits, on a run's own split (the ``train`` samples only), the models of :func:`baseline_models`:

* the mean of the training values;
* ridge on the contents (the content fractions, plus the conditions);
* LightGBM on the contents;
* where the run uses material features (``features``: columns, element tables, RDKit, supplier sheets; for ``graph``
  the RDKit descriptors of the same SMILES), LightGBM and
  random forest on the content-weighted features (each formula's contents times its materials' standardised
  feature rows, :func:`weighted_features`, plus the conditions).

Each is scored on every split with the metrics of ``metrics.json`` (:func:`mrl.metrics.split_metrics`; for a log
target fitted on log10 like mrl, and with the log10 view of :func:`mrl.metrics.log_target_metrics`); predictions are
clipped to the training range +-10 % as mrl's are. The best baseline is chosen on the calib samples (held out of
training; the eval samples when there are none), never on eval or test. :func:`summary_line` puts mrl beside it in
words (:func:`mrl.wording.compare`). The run writes the result as ``baselines.json`` (:data:`mrl.run_files.BASELINES`).

The trees are kept small so that the baselines cost seconds, not minutes (:data:`LIGHTGBM`, :data:`RANDOM_FOREST`:
one thread each).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mrl.baselines import condition_features, fit_predict, fraction_matrix
from mrl.data import FormulaData
from mrl.features import GRAPH, GRAPH_TABLE, FeatureScaler, material_features
from mrl.io import read_json
from mrl.metrics import log_target_metrics, split_metrics
from mrl.model import PREDICTION_MARGIN
from mrl.run_files import BASELINES
from mrl.wording import Score, best_of, capitalised, compare, format_number

log = logging.getLogger(__name__)

#: LightGBM of the run baselines: a modest number of trees on one thread (seconds on 3,000 formulas).
LIGHTGBM = {"n_estimators": 300, "learning_rate": 0.05, "n_jobs": 1}
#: Random forest of the run baselines: 100 trees (half the columns per split) on one thread.
RANDOM_FOREST = {"n_estimators": 100, "n_jobs": 1, "min_samples_leaf": 2, "max_features": 0.5}
#: Above this many cells (measurements x materials) the contents stay a sparse matrix: LightGBM reads it sparse, ridge
#: (which standardises a dense copy) is left out, logged (a seed-scale lab: 25,000 x 5,400 would be 1 GB dense).
MAX_DENSE_CELLS = 20_000_000
#: Splits a baseline is scored on (those present), then ``full``.
SCORED_SPLITS = ("train", "calib", "eval", "test")


@dataclass(frozen=True)
class BaselineModel:
    """One baseline: its readable ``label``, estimator of :data:`mrl.baselines.ESTIMATORS`, inputs
    (``contents`` or ``features``) and estimator parameters."""

    label: str
    estimator: str
    inputs: str
    params: dict = field(default_factory=dict)


def baseline_models(features: str | None) -> list[BaselineModel]:
    """The baselines of a run: mean, ridge and LightGBM on contents; with material ``features`` also LightGBM and
    random forest on the content-weighted features."""
    models = [BaselineModel("mean of train", "dummy", "contents"),
              BaselineModel("ridge on contents", "ridge", "contents"),
              BaselineModel("LightGBM on contents", "lightgbm", "contents", LIGHTGBM)]
    if features:
        features = GRAPH_TABLE if features == GRAPH else features  # a graph run's trees: descriptors of its SMILES
        models += [BaselineModel(f"LightGBM on {features} features", "lightgbm", "features", LIGHTGBM),
                   BaselineModel(f"random forest on {features} features", "random_forest", "features",
                                 RANDOM_FOREST)]
    return models


def describe_baselines(features: str | None, enabled: bool = True) -> str:
    """The plan's line about the baselines (``mrl validate`` prints it)."""
    if not enabled:
        return "baselines: none (baselines: false)"
    labels = ", ".join(m.label for m in baseline_models(features))
    return (f"baselines: {labels}; fitted on the train split, scored on every split (baselines.json), the best "
            f"(chosen on calib) beside mrl in the summary; seconds on a few thousand formulas")


def weighted_features(data: FormulaData, kind: str) -> np.ndarray:
    """Content-weighted material features per measurement, ``(n_samples, n_features)``: the formula's contents
    times its materials' feature rows (:func:`mrl.features.material_features` of ``kind``, standardised and
    gap-filled by :class:`mrl.features.FeatureScaler` as the model's feature map sees them)."""
    raw = material_features(data.materials, kind)
    scaler = FeatureScaler.fit(raw, what=f"features={kind!r}")
    rows = np.asarray(scaler.transform(raw, what=f"features={kind!r}"), np.float64)
    return np.asarray(data.content_matrix() @ rows)[data.sample_rows()]


def _inputs(data: FormulaData, kind: str, features: str | None) -> np.ndarray | sp.csr_matrix:
    """The inputs of a baseline: contents (sparse above :data:`MAX_DENSE_CELLS`) or content-weighted features, then
    the conditions."""
    if kind == "contents" and data.n_samples * data.n_materials > MAX_DENSE_CELLS:
        X = sp.csr_matrix(data.content_matrix()[data.sample_rows()], dtype=np.float64)
        return sp.hstack([X, sp.csr_matrix(condition_features(data))], format="csr") if data.conditions else X
    X = fraction_matrix(data) if kind == "contents" else weighted_features(
        data, GRAPH_TABLE if features == GRAPH else str(features))
    return np.hstack([X, condition_features(data)]) if data.conditions else X


def score_predictions(y: np.ndarray, pred: np.ndarray, split: np.ndarray, log_target: bool) -> dict:
    """The metrics of ``metrics.json`` per split label and ``full`` (with the log10 view for a log target)."""
    scores = split_metrics(y, pred, split)
    if log_target:
        for name in scores:
            rows = np.ones(len(y), bool) if name == "full" else split == name
            scores[name].update(log_target_metrics(y[rows], pred[rows]))
    return scores


def choice_split(split: np.ndarray) -> str | None:
    """Where the best baseline is chosen: ``calib`` (held out of training) when it has samples, else ``eval``."""
    return next((name for name in ("calib", "eval") if (np.asarray(split) == name).any()), None)


def headline_metric(log_target: bool) -> str:
    """The error a formulator reads first: ``mae_log10`` for a log target, else ``mae``."""
    return "mae_log10" if log_target else "mae"


def fit_baselines(data: FormulaData, split: np.ndarray, target_transform: str, features: str | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Fit every baseline of :func:`baseline_models` on the ``train`` samples and score it on every split.

    Returns what ``baselines.json`` holds: ``target_transform``, ``chosen_on`` (the split the best is chosen on),
    ``best`` (its label), ``metric`` (the headline error), ``wall_s`` and ``models``: per label its ``estimator``,
    ``inputs``, ``params``, ``fit_s`` and the metrics per split (or ``not_fitted``: a baseline that cannot be fitted,
    e.g. on a handful of training formulas, is logged as a warning and left out; the run goes on).
    """
    split = np.asarray(split).astype(str)
    y = data.target_values().astype(np.float64)
    log_target = target_transform == "log10" and bool((y > 0).all())
    fit_y = np.log10(y) if log_target else y
    train = split == "train"
    lo, hi = fit_y[train].min(), fit_y[train].max()
    margin = PREDICTION_MARGIN * (hi - lo)
    start = time.perf_counter()
    inputs: dict[str, np.ndarray] = {}
    models: dict[str, dict] = {}
    for model in baseline_models(features):
        began = time.perf_counter()
        try:
            if model.inputs not in inputs:
                inputs[model.inputs] = _inputs(data, model.inputs, features)
            X = inputs[model.inputs]
            if model.estimator == "ridge" and sp.issparse(X):
                raise MemoryError(f"left out: {X.shape[0]:,} x {X.shape[1]:,} contents are too large to standardise "
                                  f"densely (> {MAX_DENSE_CELLS:,} cells)")
            pred = fit_predict(model.estimator, X[train], fit_y[train], X, seed=seed, **model.params)
        except Exception as exc:  # noqa: BLE001 - a baseline that cannot be fitted must not fail the run
            log.warning("baseline %s not fitted (%s: %s); the run goes on without it", model.label,
                        type(exc).__name__, exc)
            models[model.label] = {"estimator": model.estimator, "inputs": model.inputs, "params": model.params,
                                   "not_fitted": f"{type(exc).__name__}: {exc}"}
            continue
        pred = np.clip(pred, lo - margin, hi + margin)  # as mrl's predictions are
        pred = 10 ** pred if log_target else pred
        models[model.label] = {"estimator": model.estimator, "inputs": model.inputs, "params": model.params,
                               "fit_s": round(time.perf_counter() - began, 2),
                               **score_predictions(y, pred, split, log_target)}
    metric = headline_metric(log_target)
    chosen_on = choice_split(split)
    best = None
    if chosen_on is not None:
        values = {label: m[chosen_on][metric] for label, m in models.items() if "not_fitted" not in m}
        best = best_of(values) if any(np.isfinite(v) for v in values.values()) else None
    wall = round(time.perf_counter() - start, 2)
    log.info("baselines: %d models fitted on %d training samples in %s s; best on %s: %s", len(models),
             int(train.sum()), format_number(wall), chosen_on, best)
    return {"target_transform": "log10" if log_target else "none", "metric": metric, "chosen_on": chosen_on,
            "best": best, "wall_s": wall, "models": models}


def summary_line(metrics: dict, baselines: dict, split: str = "eval", unit: str = "") -> str | None:
    """The run against the best baseline on ``split``, in words: the headline error (log10 MAE for a log target, with
    the share within 2x of each; else MAE in ``unit``), which is better and by how much. None when there is nothing
    to compare (no best baseline, or no ``split`` samples)."""
    best = baselines.get("best")
    if best is None or not metrics.get(split, {}).get("n"):
        return None
    base = baselines["models"][best][split]
    metric = baselines["metric"]
    if metric not in metrics[split]:  # an mrl without the log view: compute nothing here, say so
        return None
    log_target = metric == "mae_log10"
    target = metrics.get("target", "the property")
    what = f"{split} MAE of log10 {target}" if log_target else f"{split} MAE of {target}"
    words = compare(Score(metrics[split][metric]), Score(base[metric]), "mrl", best, what=what,
                    unit="" if log_target else unit)
    line = f"against the best baseline (chosen on {baselines['chosen_on']}): {words.sentence}"
    if log_target and "within_2x" in metrics[split] and "within_2x" in base:
        line += (f" Within 2x of the measurement: mrl {format_number(100 * metrics[split]['within_2x'], decimals=0)}"
                 f" %, {best} {format_number(100 * base['within_2x'], decimals=0)} %.")
    return line


def report_lines(folder: str | Path, metrics: dict, unit: str = "") -> list[str]:
    """The run report's section on the baselines (Markdown lines): the summary's sentence and a table of every
    baseline's calib and eval error and fit seconds beside mrl's; ``[]`` for a run without ``baselines.json``."""
    path = Path(folder) / BASELINES
    if not path.exists():
        return []
    base = read_json(path)
    metric = base["metric"]
    what = "MAE of log10" if metric == "mae_log10" else f"MAE{f' ({unit})' if unit else ''}"
    parts = [s for s in ("calib", "eval", "test") if metrics.get(s, {}).get("n")]
    lines = ["## Against classical baselines", "",
             f"Fitted on the same training formulas (`baselines.json`; `baselines: false` skips them), {what} per "
             f"split; the best baseline is chosen on {base['chosen_on']}.", ""]
    sentence = summary_line(metrics, base, unit=unit)
    if sentence:
        lines += [capitalised(sentence), ""]
    lines += ["| model | " + " | ".join(parts) + " | fit s |", "|---|" + "---:|" * (len(parts) + 1),
              "| **mrl** | " + " | ".join(format_number(metrics[s].get(metric, float("nan"))) for s in parts)
              + f" | {format_number(metrics.get('wall_s', float('nan')), decimals=1)} |"]
    for label, scores in base["models"].items():
        if "not_fitted" in scores:
            lines.append(f"| {label} | not fitted: {scores['not_fitted']} |" + " |" * len(parts))
            continue
        lines.append(f"| {label} | " + " | ".join(format_number(scores[s][metric]) if s in scores else "" for s in parts)
                     + f" | {format_number(scores['fit_s'], decimals=1)} |")
    return lines + [""]
