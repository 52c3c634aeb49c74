"""New and data-poor materials: extend a fitted :class:`~mrl.estimator.MixtureRegressor` without retraining it.

* :func:`add_materials` fits only the new materials' rows of the table, from the few formulas that use them,
  against the frozen head and the frozen vectors of the known materials; it starts from, and is pulled towards,
  the origin or the vector of a known material the practitioner names.
* :func:`tie_materials` gives a new material the effective vector of a known one ("this new grade acts like
  M00042"), or pins it at the origin (no influence, like the base solvent; same predictions as
  ``unknown="zero"``).
* :func:`add_by_features` (models fitted with ``features``) gives a new material ``g(x)`` from its known features
  alone, without any formula (residual 0).

With a feature model, every new row gets a feature row too: a tied (or ``like``) material copies its partner's
(so it gets the partner's vector), :func:`add_materials` reads the new materials' feature columns from the data's
materials table where it has them, and a material without features gets the row of "no feature known" (the mean
row with its missing indicators set; see :mod:`mrl.features`), i.e. ``g`` of that row plus its own residual.

Both return a new estimator; the one passed in is not changed, and predictions for formulas without new
materials are bitwise the same.
"""
from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch.func import functional_call

from mrl.data import FormulaData, material_rows
from mrl.domain import Domain
from mrl.ensemble import load_members
from mrl.estimator import MixtureRegressor
from mrl.features import GRAPH
from mrl.io import atomic_dir, write_json, write_table
from mrl.metrics import log10_mae, regression_metrics
from mrl.model import Batch, MixtureModel, make_batch
from mrl.run_files import ADAPT, CALIBRATION, CHECKPOINT, DOMAIN, EMBEDDINGS, member_dir
from mrl.train import cosine_factor
from mrl.uncertainty import from_model_units, member_summary

log = logging.getLogger(__name__)


def _feature_rows(est: MixtureRegressor, materials: pd.DataFrame | None,
                  n: int) -> np.ndarray | list[str | None] | None:
    """Standardised feature rows of ``n`` new materials for a feature model (None without features): from
    ``materials`` where given (absent columns count as unknown), else the "no feature known" row. A graph model
    gets their SMILES (None where unknown)."""
    if est.features == GRAPH:  # SMILES, None where unknown (g = 0)
        return [None] * n if materials is None else est.material_feature_rows(materials, missing="nan")
    scaler = getattr(est, "feature_scaler_", None)
    if scaler is None:
        return None
    if materials is None:
        return np.tile(scaler.fill_row(), (n, 1))
    return est.material_feature_rows(materials, missing="nan")


def _with_new_rows(est: MixtureRegressor, materials: pd.DataFrame, typical_content: np.ndarray,
                   source: np.ndarray, pinned: np.ndarray,
                   features: np.ndarray | list[str | None] | None = None) -> MixtureRegressor:
    """A copy of ``est`` whose vocabulary ends with ``materials`` (see :meth:`MixtureModel.with_new_materials`).
    Snapshots get NaN rows for the new materials (they were not in the vocabulary then)."""
    module = est.module_.with_new_materials(source, typical_content, pinned, features)
    n_old, n_new = len(est.materials_), len(materials)
    out = copy.copy(est)
    out.module_ = module.eval()
    out.materials_ = pd.concat([est.materials_, materials], ignore_index=True)
    out.pinned_ = [*est.pinned_, *(n_old + int(j) for j in np.flatnonzero(pinned))]
    if getattr(est, "stack_", None) is not None:  # a stacked base sees a tied material as its partner
        out.stack_ = est.stack_.with_new_materials(np.where(pinned, -1, source))
    out.snapshots_ = {step: np.vstack([vec, np.full((n_new, vec.shape[1]), np.nan, vec.dtype)])
                      for step, vec in est.snapshots_.items()}
    return out


def tie_materials(est: MixtureRegressor, mapping: Mapping[str, str | None]) -> MixtureRegressor:
    """Add materials that act like known ones (``{new_id: known_id}``) or sit at the origin (``{new_id: None}``).

    A tied material gets the known material's raw vector and content scale, so the same content of either gives
    the same mixture vector. A material pinned at the origin adds nothing to the mixture vector (as with
    ``unknown="zero"``); with ``interaction="attention"`` it still takes part in its partners' attention, as the
    pinned base does.

    Raises:
        ValueError: empty mapping, a new id already in the vocabulary, or a known id that is not.
    """
    check_is_fitted(est, "module_")
    if not mapping:
        raise ValueError("tie_materials: empty mapping; give {new_id: known_id or None}")
    clash = [m for m in mapping if m in set(est.materials_["material_id"])]
    if clash:
        raise ValueError(f"tie_materials: {clash} already in the model's vocabulary")
    new_ids = list(mapping)
    source = material_rows(est.materials_["material_id"], [mapping[m] for m in new_ids], "tie_materials",
                           "the model's vocabulary")
    keep = est.module_.keep.cpu().numpy()
    materials = pd.DataFrame({"material_id": new_ids, "name": new_ids, "n_formulas": 0,
                              "tied_to": [mapping[m] for m in new_ids]})
    return _with_new_rows(est, materials, np.ones(len(new_ids)), source, (source < 0) | (keep[source] == 0),
                          _feature_rows(est, None, len(new_ids)))


def add_materials(est: MixtureRegressor, data: FormulaData, like: Mapping[str, str] | None = None,
                  steps: int = 300, lr: float = 3e-2, shrinkage: float = 10.0) -> MixtureRegressor:
    """Fit the vectors of the materials in ``data`` that ``est`` does not know, everything else frozen.

    Each new vector starts at a prior, the origin or (``like={new_id: known_id}``) the known material's vector
    with its content scale, and is pulled back to it by ``shrinkage``. The loss is the MSE on the standardised
    target (as in training) over the formulas that contain a new material (the others carry no information),
    plus ``shrinkage * ||W_new - W_prior||^2 / n_samples``: the pull weighs like ``shrinkage`` formulas and
    fades as formulas accumulate. Full batch, Adam with a cosine schedule; no randomness. Without a prior, a new
    material's content scale follows the estimator's rule from its contents in ``data`` (median or RMS; it stays
    fixed with ``content_scale="learned"``).

    Args:
        est: a fitted estimator (unchanged).
        data: measured formulas using the new materials (known materials may appear too).
        like: optional known material per new one: start and centre of the pull (default: the origin).
        steps: optimisation steps.
        lr: Adam learning rate of the new rows.
        shrinkage: strength of the pull to the prior, in formulas.

    Raises:
        ValueError: ``steps < 1``, no new material, ``like`` naming an id that is not new or a partner that is
            not known, the target or a condition column missing, a missing (NaN) target, or a new material used
            only in formulas without a measurement.
    """
    check_is_fitted(est, "module_")
    if steps < 1:
        raise ValueError(f"add_materials: steps must be >= 1, got {steps}")
    vocab = pd.Index(est.materials_["material_id"])
    props = data.properties
    if est.target_ not in props.columns:
        raise ValueError(f"{data.name}: no column {est.target_!r} (the model's target) in the properties")
    missing = [c for c in est.conditions_ if c not in props.columns]
    if missing:
        raise ValueError(f"{data.name}: condition column(s) {missing} required by the model are missing")
    nan = props[est.target_].isna().to_numpy()
    if nan.any():
        raise ValueError(f"{data.name}: formula {props['formula_id'].iloc[int(np.flatnonzero(nan)[0])]!r} "
                         f"has no value of {est.target_!r}")
    forms = data.formulas
    unknown = forms[~forms["material_id"].isin(vocab)]
    if unknown.empty:
        raise ValueError(f"{data.name}: no material outside the model's vocabulary; nothing to add")
    measured = unknown[unknown["formula_id"].isin(set(props["formula_id"]))]
    unmeasured = sorted(set(unknown["material_id"]) - set(measured["material_id"]))
    if unmeasured:
        raise ValueError(f"{data.name}: new material(s) {unmeasured[:5]} appear only in formulas without a "
                         f"measurement of {est.target_!r}")
    new_ids = list(pd.unique(measured["material_id"]))
    like = dict(like or {})
    stray = sorted(set(like) - set(new_ids))
    if stray:
        raise ValueError(f"add_materials: like names {stray[:5]}, which are not new materials of {data.name}")
    source = material_rows(est.materials_["material_id"], [like.get(m) for m in new_ids], "add_materials",
                           "the model's vocabulary")
    keep = est.module_.keep.cpu().numpy()
    source = np.where((source >= 0) & (keep[source] == 0), -1, source)  # a pinned partner means the origin
    materials = data.materials.set_index("material_id").reindex(new_ids).rename_axis("material_id").reset_index()
    materials["like"] = [like.get(m) for m in new_ids]
    probe = copy.copy(est)
    probe.materials_ = materials
    typical = probe.typical_content(data)  # the estimator's own rule (median or RMS content)
    out = _with_new_rows(est, materials, typical, source, np.zeros(len(new_ids), bool),
                         _feature_rows(est, materials, len(new_ids)))
    matrix, conditions = out.encode(data)
    rows = np.flatnonzero(matrix[:, len(vocab):].getnnz(axis=1) > 0)
    _fit_rows(out.module_, len(vocab), make_batch(matrix, rows, conditions[rows]).to(est.device_),
              out.network_target(data.target_values(est.target_)[rows], matrix[rows], conditions[rows]), steps, lr,
              shrinkage)
    return out


def add_by_features(est: MixtureRegressor, materials: pd.DataFrame) -> MixtureRegressor:
    """Add materials known only by their features: each gets ``g(x)`` (residual 0), no formula needed.

    Args:
        est: an estimator fitted with ``features`` (unchanged).
        materials: one row per new material: ``material_id``, what its features come from (the feature columns for
            ``features="columns"``/``"supplier"``, with NaN where unknown; ``smiles`` for ``"rdkit"`` and ``"graph"``; the id as
            element symbol for element tables), and, for a content-scaled model (``content_scale`` other than
            ``"none"``), ``median_content``: the typical content *fraction* it will be dosed at (its content scale
            is ``1 / median_content``, as for a trained material).

    Raises:
        ValueError: a model without features, an id already in the vocabulary, a missing feature column or
            ``median_content`` column, or a non-positive ``median_content``.
    """
    check_is_fitted(est, "module_")
    if getattr(est, "feature_scaler_", None) is None and est.features != GRAPH:
        raise ValueError("add_by_features: the model was fitted without features (features=None); use "
                         "add_materials (formulas) or tie_materials instead")
    if "material_id" not in materials.columns or materials.empty:
        raise ValueError("add_by_features: give a non-empty table with a material_id column")
    new_ids = materials["material_id"].astype(str).tolist()
    clash = sorted(set(new_ids) & set(est.materials_["material_id"].astype(str)))
    if clash or len(set(new_ids)) < len(new_ids):
        raise ValueError(f"add_by_features: {clash[:5] or 'repeated ids'} already in the model's vocabulary")
    if est.content_scale == "none":
        typical = np.ones(len(new_ids))
    else:
        if "median_content" not in materials.columns:
            raise ValueError(f"add_by_features: content_scale={est.content_scale!r} needs each new material's "
                             f"typical content fraction in a 'median_content' column")
        typical = pd.to_numeric(materials["median_content"], errors="coerce").to_numpy(np.float64)
        if not (typical > 0).all():
            bad = new_ids[int(np.flatnonzero(~(typical > 0))[0])]
            raise ValueError(f"add_by_features: median_content of {bad!r} must be a fraction > 0")
    features = est.material_feature_rows(materials, missing="error")
    table = materials.reset_index(drop=True).copy()
    table["material_id"] = new_ids
    table["n_formulas"] = 0
    return _with_new_rows(est, table, typical, np.full(len(new_ids), -1), np.zeros(len(new_ids), bool), features)


def _fit_rows(module: MixtureModel, n_old: int, batch: Batch, y: np.ndarray, steps: int, lr: float,
              shrinkage: float) -> None:
    """Train ``module.table[n_old:]`` in place on one full batch, pulled to its start; all else is frozen."""
    fixed, prior = module.table.detach()[:n_old], module.table.detach()[n_old:].clone()
    rows = torch.nn.Parameter(prior.clone())
    target = module.target_to_scaled(torch.as_tensor(y, dtype=torch.float32, device=prior.device))
    opt = torch.optim.Adam([rows], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_factor(step, steps))
    module.eval().requires_grad_(False)
    for _ in range(steps):
        pred = functional_call(module, {"table": torch.cat([fixed, rows])}, (batch,))
        loss = F.mse_loss(pred, target) + shrinkage * (rows - prior).square().sum() / len(target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    module.requires_grad_(True)
    with torch.no_grad():
        module.table[n_old:] = rows
    log.info("add_materials: %d new material(s), %d samples, final loss %.4g", len(prior), len(y),
             float(loss.detach()))


def adapt_run(run_dir: str | Path, out_dir: str | Path, data: FormulaData | None = None,
              like: Mapping[str, str] | None = None, tie: Mapping[str, str | None] | None = None,
              overwrite: bool = False, est: MixtureRegressor | None = None,
              features: pd.DataFrame | None = None, **fit_kw) -> Path:
    """Add new materials to every member of a finished run's model and write the result as a folder.

    Exactly one of ``tie`` (:func:`tie_materials`), ``data`` (:func:`add_materials`, with ``like`` and ``fit_kw``;
    each member fits its own vectors of the new materials, in its own material space) or ``features``
    (:func:`add_by_features`) is given. The folder holds ``checkpoint.pt`` (member 0; :meth:`MixtureRegressor.load`
    reads it) and ``members/<kk>/checkpoint.pt`` for an ensemble's other members, ``embeddings.parquet``
    (member 0's; ``mrl similar`` reads it), the source run's ``calibration.json`` (its interval factors are kept:
    formulas without a new material predict exactly as before, and a formula with one is flagged out of domain,
    so its interval is not to be trusted; nothing is recalibrated), ``domain.npz`` (the source's training domain
    over the longer vocabulary: new materials were in no training formula) and ``adapt.json`` (the source run,
    what was done, what happened to calibration and domain; with ``data``, the MAE (and MAE of log10 for positive
    targets) of the ensemble's prediction on its formulas with the new materials at the origin and after the fit,
    in-sample). It is written into a temporary folder that is renamed at the end, so an interruption leaves nothing
    half-written. ``est`` is the run's model (member 0) when the caller has already loaded it.
    """
    if sum(x is not None for x in (tie, data, features)) != 1:
        raise ValueError("adapt_run: give exactly one of tie (a mapping), data (formulas with the new materials) "
                         "or features (a materials table: new materials known by their features)")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.resolve() == run_dir.resolve():
        raise ValueError(f"{out_dir}: the adapted model must go to another folder than its source run {run_dir}")
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; choose another folder or overwrite")
    if not (run_dir / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run_dir}: no checkpoint.pt; give a finished run folder")
    members = load_members(run_dir, first=est)
    calibrated = (run_dir / CALIBRATION).is_file()
    domain = Domain.load(run_dir / DOMAIN) if (run_dir / DOMAIN).is_file() else None
    record: dict = {"source_run": str(run_dir), "members": len(members)}
    if tie is not None:
        adapted = [tie_materials(m, tie) for m in members]
        record["tie"] = dict(tie)
        calibration_note = "kept: a tie changes no formula the interval factors were learned on"
    elif features is not None:
        adapted = [add_by_features(m, features) for m in members]
        record["by_features"] = features["material_id"].astype(str).tolist()
        calibration_note = ("kept from the source run (nothing recalibrated); a formula with a new material is "
                            "flagged out of domain, so its interval is not to be trusted")
    else:
        adapted = [add_materials(m, data, like=like, **fit_kw) for m in members]
        old = set(members[0].materials_["material_id"])
        new = [m for m in adapted[0].materials_["material_id"] if m not in old]
        y = data.target_values(members[0].target_)
        zero = _ensemble_prediction([tie_materials(m, {mid: None for mid in new}) for m in members], data)
        record.update(added=new, like=dict(like or {}), fit=fit_kw, n_samples=int(len(y)),
                      at_origin=_errors(y, zero), fitted=_errors(y, _ensemble_prediction(adapted, data)))
        calibration_note = ("kept from the source run (nothing recalibrated: the new materials' few formulas were "
                            "used to fit their vectors); a formula with a new material is flagged out of domain, "
                            "so its interval is not to be trusted")
    record["calibration"] = calibration_note if calibrated else "none in the source run"
    record["domain"] = ("the source run's training domain; new materials were in no training formula (a formula "
                        "with one is flagged)") if domain is not None else "none in the source run"
    with atomic_dir(out_dir) as tmp:
        adapted[0].save(tmp / CHECKPOINT)
        for k, member in enumerate(adapted[1:], start=1):
            member_dir(tmp, k).mkdir(parents=True)
            member.save(member_dir(tmp, k) / CHECKPOINT)
        write_table(adapted[0].embeddings(), tmp / EMBEDDINGS)
        if calibrated:  # the same interval factors: the source's file as it is
            shutil.copyfile(run_dir / CALIBRATION, tmp / CALIBRATION)
        if domain is not None:
            domain.extended(adapted[0].materials_["material_id"].astype(str).tolist()).save(tmp / DOMAIN)
        write_json(record, tmp / ADAPT)
    log.info("%s: %d member(s) adapted; calibration %s; domain: %s", out_dir, len(adapted),
             record["calibration"], record["domain"])
    return out_dir


def _ensemble_prediction(members: list[MixtureRegressor], data: FormulaData) -> np.ndarray:
    """The members' prediction of ``data`` as a run makes it (property units): member 0's for one model, else the
    mean in model units (the geometric mean for a log target)."""
    preds = np.stack([m.predict(data) for m in members])
    transform = members[0].target_transform_
    return preds[0] if len(members) == 1 else from_model_units(member_summary(preds, transform)[0], transform)


def _errors(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, and MAE of log10 where target and prediction are all positive."""
    out = {"mae": regression_metrics(y, pred)["mae"]}
    log_mae = log10_mae(y, pred)
    if np.isfinite(log_mae):
        out["mae_log10"] = log_mae
    return out
