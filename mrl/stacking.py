"""Stacking: mrl learns the residual of a classical model on the contents (``stack: ridge | lightgbm | auto``).

On a few hundred formulas a ridge or LightGBM model on the content fractions beats a network that has to learn one
vector per material from scratch (``book/small_data.md``). With ``stack`` the prediction becomes

    prediction (transformed target, e.g. log10) = base(contents, conditions) + mixture model(contents, conditions)

so the network learns what the base misses, and the material vectors stay the inspectable table. With material
features (``features: rdkit | columns | ...``, not ``graph``) the base also reads the content-weighted sum of the
materials' standardised feature rows, sum_i c_i x_i (what LightGBM on mixture descriptors reads), so a material
the base never saw in a formula still moves its prediction through its features. The base is fitted
on the training formulas only; the residuals the network trains on come from **out-of-fold** predictions
(:data:`FOLDS` folds by formula, seeded), so the network never sees a base that has memorised its rows.
``auto`` fits both candidates and keeps the one with the lower out-of-fold MAE (training formulas only), or none when
neither beats the training mean.

A fitted base is a :class:`StackBase`: plain JSON state (ridge: scaler, clip and coefficients; LightGBM: the booster's
own text model), stored in the checkpoint's estimator section so that ``mrl predict`` reproduces it, and written by a
run as ``stack.json``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from mrl.baselines import make_estimator
from mrl.io import read_json
from mrl.run_baselines import LIGHTGBM, MAX_DENSE_CELLS
from mrl.run_files import STACK
from mrl.wording import capitalised

log = logging.getLogger(__name__)

#: Candidate base models of ``stack: auto`` (in order; ties keep the first).
STACK_MODELS = ("ridge", "lightgbm")
#: Folds (by formula) of the out-of-fold predictions the network's residuals come from.
FOLDS = 5
#: Parameters of each base model (LightGBM: those of the run baselines, :data:`mrl.run_baselines.LIGHTGBM`).
STACK_PARAMS: dict[str, dict[str, Any]] = {"ridge": {}, "lightgbm": dict(LIGHTGBM)}


@dataclass
class StackBase:
    """A fitted base model on ``n_columns`` content columns (the vocabulary at fit time), then ``n_features``
    content-weighted material features (0: none), then the conditions (those flagged in ``inverse`` entered as
    1000 / value). ``state``: ridge ``mean``, ``scale``, ``clip``, ``coef``, ``intercept``; LightGBM ``model``
    (LightGBM's text format)."""

    kind: str
    n_columns: int
    inverse: list[bool]
    state: dict
    oof_mae: float = float("nan")  # out-of-fold MAE on the training rows (transformed target)
    # materials added to the vocabulary after fitting (mrl.adapt), in order: the column each one counts as (a tied
    # material's known partner), or -1 (no column: the base does not see it)
    extra: list[int] = field(default_factory=list)
    n_features: int = 0  # content-weighted material feature columns (the model's standardised feature rows)

    def with_new_materials(self, source: Sequence[int]) -> "StackBase":
        """A copy for a vocabulary extended by materials that count as ``source`` columns (-1: none)."""
        return replace(self, extra=[*self.extra, *(int(s) if 0 <= s < self.n_columns else -1 for s in source)])

    def _feature_rows(self, n_vocabulary: int, features: np.ndarray | None) -> np.ndarray | None:
        """``features`` checked against a vocabulary of ``n_vocabulary`` materials (bases with features), else None."""
        if not self.n_features:
            return None
        if features is None or np.shape(features) != (n_vocabulary, self.n_features):
            raise ValueError(f"this stack base reads {self.n_features} material features per material: give the "
                             f"model's feature rows, shape ({n_vocabulary}, {self.n_features}), got "
                             f"{None if features is None else np.shape(features)}")
        return np.asarray(features, np.float64)

    def inputs(self, matrix: sp.spmatrix, conditions: np.ndarray,
               features: np.ndarray | None = None) -> np.ndarray | sp.csr_matrix:
        """The base's input rows: content fractions of the first ``n_columns`` materials (a material added later
        counts as its :attr:`extra` column, or not at all), the content-weighted ``features`` (the standardised
        feature rows of every material of ``matrix``'s vocabulary; bases with :attr:`n_features` only), then the
        conditions (:func:`stack_inputs`)."""
        matrix = sp.csr_matrix(matrix)
        rows = self._feature_rows(matrix.shape[1], features)
        weighted = None if rows is None else np.asarray(matrix @ rows)
        if matrix.shape[1] > self.n_columns:
            source = [*range(self.n_columns), *self.extra][:matrix.shape[1]]
            keep = [(i, s) for i, s in enumerate(source) if s >= 0]
            fold = sp.csr_matrix((np.ones(len(keep)), ([i for i, _ in keep], [s for _, s in keep])),
                                 shape=(matrix.shape[1], self.n_columns))
            matrix = matrix @ fold
        return stack_inputs(matrix, conditions, self.inverse, weighted)

    def predict(self, matrix: sp.spmatrix, conditions: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Base prediction (transformed target) for each row of a content matrix in vocabulary order (``features``:
        see :meth:`inputs`)."""
        X = self.inputs(matrix, conditions, features)
        if self.kind == "ridge":
            X = X.toarray() if sp.issparse(X) else X
            s = self.state
            z = np.clip((X - np.asarray(s["mean"])) / np.asarray(s["scale"]), -s["clip"], s["clip"])
            return z @ np.asarray(s["coef"]) + s["intercept"]
        import lightgbm

        booster = lightgbm.Booster(model_str=self.state["model"])
        return np.asarray(booster.predict(X), np.float64)

    def predict_local(self, x: torch.Tensor, columns: Sequence[int], conditions: np.ndarray,
                      features: np.ndarray | None = None) -> torch.Tensor:
        """Base prediction (transformed target) for rows ``x`` of contents of the vocabulary's ``columns`` (all other
        materials absent) at one set of raw ``conditions``; shape ``(n,)`` (``features``: the model's feature rows of
        the whole vocabulary, bases with :attr:`n_features` only). Differentiable in ``x`` for ridge;
        LightGBM is piecewise constant in the contents, so its value comes without a gradient (exact almost
        everywhere). What :mod:`mrl.design` adds to the network's value."""
        source = np.asarray([*range(self.n_columns), *self.extra], np.int64)[np.asarray(columns, np.int64)]
        keep = np.flatnonzero(source >= 0)
        full = torch.zeros(x.shape[0], self.n_columns, dtype=x.dtype)
        full = full.index_add(1, torch.as_tensor(source[keep]), x[:, torch.as_tensor(keep)])
        cond = stack_inputs(sp.csr_matrix((1, 0)), np.asarray(conditions, np.float64).reshape(1, -1), self.inverse)
        cond_t = torch.as_tensor(cond, dtype=x.dtype).expand(x.shape[0], -1)
        parts = [full]
        rows = self._feature_rows(len(self.extra) + self.n_columns, features)
        if rows is not None:  # content-weighted features of the searched columns (differentiable)
            parts.append(x @ torch.as_tensor(rows[np.asarray(columns, np.int64)], dtype=x.dtype))
        X = torch.cat([*parts, cond_t], dim=1)
        if self.kind == "ridge":
            s = self.state
            mean, scale = (torch.as_tensor(s[k], dtype=x.dtype) for k in ("mean", "scale"))
            z = ((X - mean) / scale).clamp(-s["clip"], s["clip"])
            return z @ torch.as_tensor(s["coef"], dtype=x.dtype) + s["intercept"]
        import lightgbm

        value = lightgbm.Booster(model_str=self.state["model"]).predict(X.detach().numpy().astype(np.float64))
        return torch.as_tensor(np.asarray(value), dtype=x.dtype)

    def to_state(self) -> dict:
        """JSON-ready state (what :meth:`from_state` reads)."""
        return {"kind": self.kind, "n_columns": self.n_columns, "inverse": list(self.inverse),
                "oof_mae": self.oof_mae, "extra": list(self.extra), "n_features": self.n_features,
                "state": self.state}

    @classmethod
    def from_state(cls, state: dict) -> "StackBase":
        """Rebuild from :meth:`to_state`."""
        return cls(state["kind"], int(state["n_columns"]), list(state["inverse"]), dict(state["state"]),
                   float(state.get("oof_mae", float("nan"))), [int(s) for s in state.get("extra", [])],
                   int(state.get("n_features", 0)))


def stack_inputs(matrix: sp.spmatrix, conditions: np.ndarray, inverse: Sequence[bool],
                 weighted: np.ndarray | None = None) -> np.ndarray | sp.csr_matrix:
    """``(n, n_materials [+ n_features] + n_conditions)``: content fractions, the content-weighted features when
    given, then conditions (1000 / value where ``inverse``). Dense up to :data:`MAX_DENSE_CELLS` cells, else a sparse
    CSR matrix (LightGBM reads it; ridge is not fitted on it)."""
    cond = np.asarray(conditions, np.float64).reshape(matrix.shape[0], -1).copy()
    for j, inv in enumerate(inverse):
        if inv:
            cond[:, j] = 1000.0 / cond[:, j]
    dense = [] if weighted is None else [np.asarray(weighted, np.float64)]
    dense.append(cond)
    if matrix.shape[0] * (matrix.shape[1] + sum(d.shape[1] for d in dense)) > MAX_DENSE_CELLS:
        return sp.hstack([sp.csr_matrix(matrix, dtype=np.float64), *(sp.csr_matrix(d) for d in dense)]).tocsr()
    return np.hstack([np.asarray(sp.csr_matrix(matrix).toarray(), np.float64), *dense])


def _fit_one(kind: str, X: np.ndarray, y: np.ndarray, seed: int) -> dict:
    """Fit base ``kind`` on all of ``(X, y)``; its JSON state."""
    model = make_estimator(kind, seed, **STACK_PARAMS[kind])
    model.fit(X, y)
    if kind == "lightgbm":
        return {"model": model.booster_.model_to_string()}
    scaler, clip, ridge = model.steps[0][1], model.steps[1][1], model.steps[-1][1]
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "clip": float(clip.kw_args["a_max"]),
            "coef": ridge.coef_.tolist(), "intercept": float(ridge.intercept_), "alpha": float(ridge.alpha_)}


def fold_of(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold (0..folds-1) of each row: whole groups (formulas) to one fold, in a seeded random order."""
    uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
    order = np.random.default_rng([seed, 30]).permutation(len(uniq))
    return (order % folds)[inv]


def out_of_fold(kind: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int,
                folds: int = FOLDS) -> np.ndarray:
    """Out-of-fold predictions of base ``kind`` for every row (each from a model that did not see its formula)."""
    fold = fold_of(groups, min(folds, len(np.unique(groups))), seed)
    pred = np.empty(len(y))
    for k in np.unique(fold):
        test = fold == k
        model = make_estimator(kind, seed, **STACK_PARAMS[kind])
        model.fit(X[~test], y[~test])
        pred[test] = model.predict(X[test])
    return pred


def fit_stack(kind: str, matrix: sp.spmatrix, conditions: np.ndarray, inverse: Sequence[bool], y: np.ndarray,
              groups: np.ndarray, seed: int = 0,
              features: np.ndarray | None = None) -> tuple[StackBase | None, np.ndarray, str]:
    """Fit the base of ``stack`` = ``kind`` on the training rows: ``(base or None, out-of-fold predictions (zeros
    without a base), reason)``. ``y`` is the transformed target; ``groups`` the formula of each row; ``features``
    the model's standardised feature rows of the vocabulary (None: the base reads contents and conditions only).

    ``auto`` tries :data:`STACK_MODELS` and keeps the lowest out-of-fold MAE, or none when none beats the training
    mean's out-of-fold MAE. Fewer than 2 formulas per fold: no stacking (logged). Inputs above
    :data:`MAX_DENSE_CELLS` cells stay sparse: LightGBM only (``auto`` leaves ridge out, logged)."""
    y = np.asarray(y, np.float64)
    if kind == "none":
        return None, np.zeros(len(y)), "stack: none"
    n_groups = len(np.unique(groups))
    if n_groups < 2 * FOLDS:
        return None, np.zeros(len(y)), f"stack {kind}: none ({n_groups} training formulas, fewer than {2 * FOLDS})"
    start = time.perf_counter()
    matrix = sp.csr_matrix(matrix)
    n_features = 0 if features is None else int(np.shape(features)[1])
    weighted = None if features is None else np.asarray(matrix @ np.asarray(features, np.float64))
    X = stack_inputs(matrix, conditions, inverse, weighted)
    candidates = STACK_MODELS if kind == "auto" else (kind,)
    left_out = ""
    if sp.issparse(X):
        if kind == "ridge":
            raise ValueError(f"stack ridge: {matrix.shape[0]:,} training rows x {X.shape[1]:,} inputs are too many "
                             f"for ridge's dense copy (> {MAX_DENSE_CELLS:,} cells); use stack: lightgbm or none")
        if "ridge" in candidates:
            left_out = f"; ridge left out: {X.shape[0]:,} x {X.shape[1]:,} inputs > {MAX_DENSE_CELLS:,} cells"
            candidates = tuple(c for c in candidates if c != "ridge")
    fold = fold_of(groups, FOLDS, seed)
    mean_oof = np.empty(len(y))
    for k in range(FOLDS):
        mean_oof[fold == k] = y[fold != k].mean()
    scores = {"mean": float(np.abs(y - mean_oof).mean())}
    oofs: dict[str, np.ndarray] = {}
    for name in candidates:
        oofs[name] = out_of_fold(name, X, y, groups, seed)
        scores[name] = float(np.abs(y - oofs[name]).mean())
    best = min(oofs, key=lambda name: scores[name])
    words = ", ".join(f"{k} {v:.4g}" for k, v in scores.items()) + left_out
    if kind == "auto" and scores[best] >= scores["mean"]:
        return None, np.zeros(len(y)), f"stack auto: none (out-of-fold MAE {words}: no base beats the mean)"
    base = StackBase(best, matrix.shape[1], [bool(v) for v in inverse], _fit_one(best, X, y, seed), scores[best],
                     n_features=n_features)
    reads = "the contents" + (f", the content-weighted material features ({n_features})" if n_features else "") \
        + (" and conditions" if len(inverse) else "")
    reason = (f"stack {kind}: {best} on {reads} (out-of-fold MAE on {n_groups} training formulas, {FOLDS} folds: "
              f"{words}); mrl learns its residual ({time.perf_counter() - start:.1f} s)")
    return base, oofs[best], reason


def refit_stack(base: StackBase, matrix: sp.spmatrix, conditions: np.ndarray, y: np.ndarray, seed: int = 0,
                features: np.ndarray | None = None) -> StackBase:
    """``base``'s kind fitted again on more rows (every training formula, once the network's validation share has
    done its work); the out-of-fold error is kept from the first fit (``features``: see :func:`fit_stack`)."""
    X = base.inputs(matrix, conditions, features)
    return replace(base, state=_fit_one(base.kind, X, np.asarray(y, np.float64), seed))


#: What a stacked run's material vectors are, said wherever they are read as a description of the materials.
STACKED_VECTORS_NOTE = ("the material vectors of a stacked run learn only the correction to its {base} base, so its "
                        "maps and neighbours say little about the materials; train with small_data: off (or stack: "
                        "none) for vectors learned from the data alone")


def _stacked_base(run: str | Path) -> str | None:
    """The name of a run folder's stack base (its ``stack.json``), or None when the run is not stacked."""
    path = Path(run) / STACK
    kind = read_json(path).get("kind") if path.exists() else None
    if kind in (None, "none"):
        return None
    return {"lightgbm": "LightGBM", "ridge": "ridge"}.get(kind, kind)


def stacked_vectors_note(run: str | Path) -> str | None:
    """A note for readers of a run folder's vectors when the run is stacked on a base model (its ``stack.json``
    names one), else None: ``note: the material vectors ...`` (a command's output)."""
    base = _stacked_base(run)
    return None if base is None else "note: " + STACKED_VECTORS_NOTE.format(base=base)


def stacked_vectors_sentence(run: str | Path) -> str | None:
    """:func:`stacked_vectors_note` as a sentence for a page (capitalised, with its full stop), else None."""
    base = _stacked_base(run)
    if base is None:
        return None
    text = STACKED_VECTORS_NOTE.format(base=base)
    return capitalised(text) + "."
