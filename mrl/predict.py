"""Ask a trained model about new formulas: predictions with intervals, domain flags and the materials behind them.

:class:`Predictor` opens a run folder (one model, or an ensemble in ``members/``) or an adapted folder
(:mod:`mrl.adapt`) with what the run saved beside its checkpoints: ``calibration.json``
(:class:`mrl.uncertainty.Calibration`) and ``domain.npz`` (:class:`mrl.domain.Domain`). Its :meth:`~Predictor.predict`
takes formulas in the long format (``formula_id, material_id, content``) without any target and, optionally, a
per-formula table of conditions, and returns one row per formula (per condition row) with

* ``prediction`` (the property's units; for a log-transformed target the members' geometric mean),
* ``lower_80, upper_80, lower_95, upper_95``: calibrated intervals (NaN when the run has no calibration),
* ``spread``: the members' standard deviation in model units (log10 for a log target; NaN for one model),
* ``out_of_domain``, ``reasons`` and ``flag_*``: why the model cannot vouch for the number (:mod:`mrl.domain`),
* ``top_materials``: the materials whose vectors move this prediction most (prediction minus the prediction
  with that material's vector left out, property units), strongest first.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mrl.data import FormulaData, prediction_input
from mrl.domain import Domain
from mrl.run_files import ADAPT, CALIBRATION, CHECKPOINT, DOMAIN, MEMBERS
from mrl.tables import DataError, TableLike, read_table
from mrl.uncertainty import LEVELS, Calibration, from_model_units, interval, member_summary

if TYPE_CHECKING:
    from mrl.estimator import MixtureRegressor

log = logging.getLogger(__name__)
#: Formulas per chunk when computing contributions (each formula becomes one row per ingredient).
CONTRIBUTION_CHUNK = 4096


def _member_paths(folder: Path) -> list[Path]:
    paths = [folder / CHECKPOINT]
    if (folder / MEMBERS).is_dir():
        paths += sorted((folder / MEMBERS).glob(f"*/{CHECKPOINT}"))
    return paths


@dataclass
class Predictor:
    """One model or an ensemble, with its calibration and training domain (either may be None)."""

    members: list["MixtureRegressor"]
    calibration: Calibration | None = None
    domain: Domain | None = None
    name: str = "model"

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu") -> "Predictor":
        """Open a run folder (``checkpoint.pt`` [+ ``members/*/checkpoint.pt``]) or an adapted folder
        (``checkpoint.pt`` + ``adapt.json``, whose source run lends its domain and, for a single model, its
        calibration)."""
        from mrl.estimator import MixtureRegressor

        folder = Path(folder)
        if not (folder / CHECKPOINT).is_file():
            raise FileNotFoundError(f"{folder}: no checkpoint.pt; give a finished run folder or an adapted folder "
                                    f"(mrl add-materials / tie-materials)")
        members = [MixtureRegressor.load(p, device=device) for p in _member_paths(folder)]
        source = folder
        if (folder / ADAPT).is_file():
            source = Path(json.loads((folder / ADAPT).read_text())["source_run"])
        calibration = domain = None
        if (source / CALIBRATION).is_file():
            calibration = Calibration.from_dict(json.loads((source / CALIBRATION).read_text()))
            if calibration.n_members != len(members):
                log.warning("%s: calibration was learned for %d member(s), this model has %d: intervals left out",
                            folder, calibration.n_members, len(members))
                calibration = None
        if (source / DOMAIN).is_file():
            domain = Domain.load(source / DOMAIN)
            ids = members[0].materials_["material_id"].astype(str).tolist()
            if len(ids) > len(domain.material_ids):
                domain = domain.extended(ids)
        if calibration is None:
            log.info("%s: no calibration (train with calibration_fraction > 0): no intervals", folder)
        return cls(members, calibration, domain, folder.name)

    def save_extras(self, folder: str | Path) -> list[Path]:
        """Write ``calibration.json`` and ``domain.npz`` (where present) into a run folder; return the paths."""
        from mrl.io import write_json

        folder = Path(folder)
        paths = []
        if self.calibration is not None:
            paths.append(write_json(self.calibration.to_dict(), folder / CALIBRATION))
        if self.domain is not None:
            paths.append(self.domain.save(folder / DOMAIN))
        return paths

    @property
    def transform(self) -> str:
        """The target transform of the members (``log10`` or ``none``): the model units."""
        return self.members[0].target_transform_

    def member_predictions(self, data: FormulaData) -> np.ndarray:
        """Every member's prediction of every measurement, property units, shape ``(n_members, n_samples)``."""
        return member_predictions(self.members, data)

    def predict(self, formulas: TableLike | FormulaData, conditions: TableLike | None = None,
                unknown: str = "error", top_k: int = 3, distances: bool = True,
                materials: TableLike | None = None) -> pd.DataFrame:
        """The prediction table (see the module docstring), one row per formula and condition row.

        Args:
            formulas: long-format table (path or DataFrame) or a :class:`FormulaData`.
            conditions: per-formula conditions (path or DataFrame) when the model has conditions.
            unknown: materials outside the vocabulary: ``"error"`` (name them), ``"zero"`` (no influence) or
                ``"like:KNOWN"`` (act like material KNOWN) or ``"features"`` (``g(x)`` of a model trained with
                features, from their rows in ``materials``); either way they are flagged.
            top_k: how many materials to list in ``top_materials`` (0: skip the computation).
            distances: compute the L1 distance flag (the slowest part for many formulas).
            materials: for ``unknown="features"``: a table with ``material_id`` and the unknown materials' features
                (see :func:`mrl.adapt.add_by_features`).
        """
        first = self.members[0]
        data = formulas if isinstance(formulas, FormulaData) else prediction_input(
            formulas, conditions, first.conditions_, name=str(formulas) if not isinstance(formulas, pd.DataFrame)
            else "formulas")
        vocab = set(first.materials_["material_id"].astype(str))
        forms = data.formulas
        new = forms.loc[~forms["material_id"].isin(vocab)]
        members = self._members_for(new, unknown, data.name, materials)
        per_formula_unknown = new.groupby("formula_id")["material_id"].agg(list)
        matrix, cond = members[0].encode(data)  # the members share one vocabulary: encode once
        member_preds = _stacked(members, matrix, cond)
        mean, spread = member_summary(member_preds, self.transform)
        out = data.properties[["formula_id", *data.conditions]].reset_index(drop=True).copy()
        out["prediction"] = member_preds[0] if len(members) == 1 else from_model_units(mean, self.transform)
        for level in LEVELS:
            pct = int(round(100 * level))
            if self.calibration is not None:
                lower, upper = interval(mean, spread, self.calibration, level)
            else:
                lower = upper = np.full(len(out), np.nan)
            out[f"lower_{pct}"], out[f"upper_{pct}"] = lower, upper
        out["spread"] = spread if len(members) > 1 else np.nan
        out["n_members"] = len(members)
        if self.domain is not None:
            unknown_ids = [per_formula_unknown.get(f, []) for f in out["formula_id"]]
            flags = self.domain.flags(matrix[:, :len(self.domain.material_ids)],
                                      members[0].mixture_vectors(matrix, cond), cond, unknown_ids, distances)
            out = pd.concat([out, flags], axis=1)
        else:
            out["out_of_domain"] = out["formula_id"].isin(per_formula_unknown.index)
            out["reasons"] = ["unknown material(s) " + ", ".join(per_formula_unknown[f])
                              if f in per_formula_unknown.index else "" for f in out["formula_id"]]
        if top_k > 0:
            out["top_materials"] = top_contributions(members[0], matrix, cond, top_k)
        return out

    def _members_for(self, new: pd.DataFrame, unknown: str, name: str,
                     materials: TableLike | None = None) -> list["MixtureRegressor"]:
        """The members with the unknown-material policy applied."""
        if new.empty:
            return self.members
        ids = sorted(set(new["material_id"]))
        if unknown == "error":
            example = new.iloc[0]
            raise DataError(f"{name}: {len(ids)} material(s) not in the model's vocabulary: {ids[:10]} (e.g. formula "
                            f"{example['formula_id']!r}); use --unknown zero (no influence) or like:KNOWN")
        if unknown == "zero":
            log.warning("%s: unknown material(s) %s get no influence (flagged)", name, ids[:10])
            return [_with_unknown_zero(m) for m in self.members]
        if unknown.startswith("like:"):
            from mrl.adapt import tie_materials

            known = unknown.split(":", 1)[1]
            log.warning("%s: unknown material(s) %s act like %s (flagged)", name, ids[:10], known)
            return [tie_materials(m, {mid: known for mid in ids}) for m in self.members]
        if unknown == "features":
            from mrl.adapt import add_by_features

            if materials is None:
                raise ValueError("unknown='features' needs a materials table with the unknown materials' features")
            table, label = read_table(materials, "materials")
            rows = table[table["material_id"].astype(str).isin(ids)]
            missing = sorted(set(ids) - set(rows["material_id"].astype(str)))
            if missing:
                raise DataError(f"{label}: no row for unknown material(s) {missing[:10]}")
            log.warning("%s: unknown material(s) %s get g(x) from their features (flagged)", name, ids[:10])
            return [add_by_features(m, rows) for m in self.members]
        raise ValueError(f"unknown must be 'error', 'zero', 'like:KNOWN' or 'features', got {unknown!r}")


def _with_unknown_zero(est: "MixtureRegressor") -> "MixtureRegressor":
    import copy

    out = copy.copy(est)
    out.unknown = "zero"
    return out


def top_contributions(est: "MixtureRegressor", matrix: sp.csr_matrix, conditions: np.ndarray, top_k: int = 3
                      ) -> list[str]:
    """Per row of ``matrix``, the ``top_k`` materials whose vector moves the prediction most, as text
    ``"M00042 +1.2e+03; M00007 -310"`` (prediction minus the prediction with that ingredient's content left out of
    the mixture, property units; the pinned base contributes 0 by construction)."""
    matrix = sp.csr_matrix(matrix)
    ids = est.materials_["material_id"].astype(str).to_numpy()
    out: list[str] = []
    for start in range(0, matrix.shape[0], CONTRIBUTION_CHUNK):
        block = matrix[start:start + CONTRIBUTION_CHUNK]
        cond = conditions[start:start + CONTRIBUTION_CHUNK]
        base = est.predict_matrix(block, cond)
        lengths = np.diff(block.indptr)
        rows = np.repeat(np.arange(block.shape[0]), lengths)
        ablated = block[rows].tocsr(copy=True)  # copy k of a formula loses its k-th ingredient
        ablated.data[ablated.indptr[:-1] + np.arange(len(rows)) - block.indptr[rows]] = 0.0
        ablated.eliminate_zeros()
        delta = base[rows] - est.predict_matrix(ablated, cond[rows])
        cols = block.indices
        for r in range(block.shape[0]):
            s, e = block.indptr[r], block.indptr[r + 1]
            order = np.argsort(-np.abs(delta[s:e]))[:top_k]
            out.append("; ".join(f"{ids[cols[s + j]]} {delta[s + j]:+.3g}" for j in order
                                 if delta[s + j] != 0))
    return out


def _formula_rows(data: FormulaData) -> np.ndarray:
    """Index of the first measurement of each formula (a formula measured at several conditions counts once)."""
    return np.unique(data.properties["formula_id"].to_numpy(), return_index=True)[1]


def member_predictions(members: Sequence["MixtureRegressor"], data: FormulaData) -> np.ndarray:
    """Every member's prediction of every measurement of ``data`` (encoded once: members share one vocabulary),
    property units, shape ``(n_members, n_samples)``."""
    return _stacked(members, *members[0].encode(data))


def _stacked(members: Sequence["MixtureRegressor"], matrix: sp.csr_matrix, cond: np.ndarray) -> np.ndarray:
    """Every member's prediction of already encoded rows, shape ``(n_members, n_rows)``."""
    return np.stack([m.predict_matrix(matrix, cond) for m in members])


def calibrated_predictor(members: Sequence["MixtureRegressor"], data: FormulaData, split: np.ndarray,
                         name: str = "model", predictions: np.ndarray | None = None) -> Predictor:
    """A :class:`Predictor` whose calibration is learned on the ``calib`` measurements of ``split`` and whose
    domain is the ``train`` formulas (thresholds from the ``calib`` formulas). Without ``calib`` rows there are
    no intervals and no distance flags. ``predictions``: the members' predictions of all of ``data``
    (:func:`member_predictions`) when the caller has them already."""
    from mrl.uncertainty import calibrate

    split = np.asarray(split)
    first = members[0]
    train = data.subset(split == "train")
    calib = data.subset(split == "calib")
    calib_x = calib_mix = calibration = None
    if calib.n_samples:
        x_calib, c_calib = first.encode(calib)
        preds = _stacked(members, x_calib, c_calib) if predictions is None \
            else np.asarray(predictions)[:, split == "calib"]
        calibration = calibrate(calib.target_values(first.target_), preds, first.target_transform_)
        rows = _formula_rows(calib)
        calib_x, calib_mix = x_calib[rows], first.mixture_vectors(x_calib[rows], c_calib[rows])
    x_train, c_train = first.encode(train)
    keep = _formula_rows(train)
    domain = Domain.build(x_train[keep], first.mixture_vectors(x_train[keep], c_train[keep]), c_train,
                          first.materials_["material_id"].astype(str).tolist(), first.conditions_, calib_x, calib_mix)
    return Predictor(list(members), calibration, domain, name)
