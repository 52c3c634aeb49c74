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
* ``clipped`` and ``interval_note``: predictions and interval bounds are held inside the range the model may
  predict (the training targets' range widened by :data:`mrl.model.PREDICTION_MARGIN`); ``clipped`` is True where
  one was cut there, and ``interval_note`` says so, and says when the row is out of domain so that its interval
  is not to be trusted,
* ``top_materials``: the materials whose vectors move this prediction most (prediction minus the prediction
  with that material's vector left out, property units), strongest first, by name and code.

:func:`column_glossary` says what each column means, with its unit and threshold (``mrl predict --explain``), and
:func:`rounded` rounds a table to a few significant digits for a CSV meant for people (Parquet keeps full
precision).
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mrl.adapt import add_by_features, tie_materials
from mrl.data import FormulaData, prediction_input
from mrl.domain import RANGE_SLACK, THRESHOLD_QUANTILE, Domain
from mrl.ensemble import load_members
from mrl.io import write_json
from mrl.materials import MaterialIndex
from mrl.run_files import ADAPT, CALIBRATION, CHECKPOINT, DOMAIN
from mrl.tables import DataError, TableLike, read_table
from mrl.uncertainty import LEVELS, Calibration, calibrate, from_model_units, interval, member_summary, to_model_units
from mrl.wording import format_number

if TYPE_CHECKING:
    from mrl.estimator import MixtureRegressor

log = logging.getLogger(__name__)
#: Formulas per chunk when computing contributions (each formula becomes one row per ingredient).
CONTRIBUTION_CHUNK = 4096


@dataclass
class Predictor:
    """One model or an ensemble, with its calibration and training domain (either may be None)."""

    members: list["MixtureRegressor"]
    calibration: Calibration | None = None
    domain: Domain | None = None
    name: str = "model"

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu", first: "MixtureRegressor | None" = None
                    ) -> "Predictor":
        """Open a run folder (``checkpoint.pt`` [+ ``members/*/checkpoint.pt``]) or an adapted folder (the same +
        ``adapt.json``), with its ``calibration.json`` and ``domain.npz`` (an adapted folder written before it kept
        its own lends them from its source run). ``first``: member 0 (``checkpoint.pt``) when already loaded."""
        folder = Path(folder)
        if not (folder / CHECKPOINT).is_file():
            raise FileNotFoundError(f"{folder}: no checkpoint.pt; give a finished run folder or an adapted folder "
                                    f"(mrl add-materials / tie-materials)")
        members = load_members(folder, device, first)
        source = folder
        if (folder / ADAPT).is_file() and not (folder / CALIBRATION).is_file() and not (folder / DOMAIN).is_file():
            source = Path(json.loads((folder / ADAPT).read_text())["source_run"])
        calibration = domain = None
        if (source / CALIBRATION).is_file():
            calibration = Calibration.from_dict(json.loads((source / CALIBRATION).read_text()))
            if calibration.n_members != len(members):
                log.warning("%s: calibration was learned for %d member(s), this model has %d: intervals left out",
                            folder, calibration.n_members, len(members))
                calibration = None
        else:
            log.info("%s: no calibration (train with calibration_fraction > 0): no intervals", folder)
        if (source / DOMAIN).is_file():
            domain = Domain.load(source / DOMAIN)
            ids = members[0].materials_["material_id"].astype(str).tolist()
            if len(ids) > len(domain.material_ids):
                domain = domain.extended(ids)
        return cls(members, calibration, domain, folder.name)

    def save_extras(self, folder: str | Path) -> list[Path]:
        """Write ``calibration.json`` and ``domain.npz`` (where present) into a run folder; return the paths."""
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
        clipped = self._at_clip_edge(member_preds)
        for level in LEVELS:
            pct = int(round(100 * level))
            if self.calibration is not None:
                lower, upper, cut = self.interval(mean, spread, level)
                clipped |= cut
            else:
                lower = upper = np.full(len(out), np.nan)
            out[f"lower_{pct}"], out[f"upper_{pct}"] = lower, upper
        out["spread"] = spread if len(members) > 1 else np.nan
        out["n_members"] = len(members)
        out["clipped"] = clipped
        if self.domain is not None:
            unknown_ids = [per_formula_unknown.get(f, []) for f in out["formula_id"]]
            index = MaterialIndex.of_model(members[0])
            flags = self.domain.flags(matrix[:, :len(self.domain.material_ids)],
                                      members[0].mixture_vectors(matrix, cond), cond, unknown_ids, distances,
                                      labels=[index.label(m) for m in index.ids])
            out = pd.concat([out, flags], axis=1)
        else:
            out["out_of_domain"] = out["formula_id"].isin(per_formula_unknown.index)
            out["reasons"] = ["unknown material(s) " + ", ".join(per_formula_unknown[f])
                              if f in per_formula_unknown.index else "" for f in out["formula_id"]]
        out["interval_note"] = _interval_notes(out, self.calibration is not None)
        if top_k > 0:
            out["top_materials"] = top_contributions(members[0], matrix, cond, top_k)
        return out

    def clip_range(self) -> tuple[float, float]:
        """The range the model may predict, property units: the training targets' range widened by
        :data:`mrl.model.PREDICTION_MARGIN` (members share their training data, so their widest)."""
        low = min(m.prediction_range()[0] for m in self.members)
        high = max(m.prediction_range()[1] for m in self.members)
        low_p, high_p = from_model_units(np.array([low, high]), self.transform)
        return float(low_p), float(high_p)

    def _at_clip_edge(self, member_preds: np.ndarray) -> np.ndarray:
        """True per column of ``member_preds`` (property units) where a member's prediction sits at the edge of
        :meth:`clip_range` (it was clipped there)."""
        edges = to_model_units(np.array(self.clip_range()), self.transform)
        tol = 1e-5 * float(edges[1] - edges[0])  # the members clip in float32
        with np.errstate(divide="ignore", invalid="ignore"):
            t = to_model_units(member_preds, self.transform)
        return np.asarray(((t <= edges[0] + tol) | (t >= edges[1] - tol)).any(axis=0), bool)

    def interval(self, mean: np.ndarray, spread: np.ndarray, level: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The calibrated ``level`` interval (property units) from the members' ``mean`` and ``spread`` (model units),
        clipped to :meth:`clip_range` like the predictions, and True per row where a bound was cut there."""
        if self.calibration is None:
            raise ValueError(f"{self.name}: no calibration, no intervals (train with calibration_fraction > 0)")
        lower, upper = interval(mean, spread, self.calibration, level)
        low, high = self.clip_range()
        cut = (lower < low) | (upper > high)
        return np.clip(lower, low, high), np.clip(upper, low, high), cut

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
            known = MaterialIndex.of_model(self.members[0]).resolve(unknown.split(":", 1)[1], "like:")
            log.warning("%s: unknown material(s) %s act like %s (flagged)", name, ids[:10], known)
            return [tie_materials(m, {mid: known for mid in ids}) for m in self.members]
        if unknown == "features":
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


#: Significant digits of the numbers in a CSV meant for people (:func:`rounded`).
SIGNIFICANT_DIGITS = 4


def round_significant(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits (0, NaN and inf kept)."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values) & (values != 0)
    out = values.copy()
    magnitude = np.floor(np.log10(np.abs(values[finite])))
    scale = 10.0 ** (digits - 1 - magnitude)
    out[finite] = np.round(values[finite] * scale) / scale
    return out


def rounded(table: pd.DataFrame, digits: int = SIGNIFICANT_DIGITS) -> pd.DataFrame:
    """A copy of ``table`` whose float columns are rounded to ``digits`` significant digits (for CSV files read
    by people: ``528.7`` instead of ``528.6744504419322``); other columns unchanged."""
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = round_significant(out[col].to_numpy(), digits)
    return out


def column_glossary(predictor: Predictor | None = None) -> list[tuple[str, str]]:
    """``(column, meaning with unit and threshold)`` for every column of :meth:`Predictor.predict`'s table; with a
    ``predictor``, its own target, units, clip range and domain thresholds."""
    target, unit, log_target, conditions = "the property", "property units", True, []
    clip = mixture = distance = ""
    if predictor is not None:
        first = predictor.members[0]
        target = repr(first.target_)
        unit = f"the units of {first.target_}"
        log_target = predictor.transform == "log10"
        conditions = list(first.conditions_)
        low, high = predictor.clip_range()
        clip = f" [{low:.4g}, {high:.4g}]"
        if predictor.domain is not None:
            distance = f" (this run: {predictor.domain.distance_threshold:.3g})"
            mixture = f" (this run: {predictor.domain.mixture_threshold:.3g})"
    spread_unit = "log10 units (0.3 = a factor of 2)" if log_target else unit
    mean = "geometric mean of the members" if log_target else "mean of the members"
    rows = [("formula_id", "the formula, as in the input")]
    rows += [(c, "a condition of the prediction, as in the conditions table") for c in conditions]
    rows += [
        ("prediction", f"predicted {target}, {unit}; the {mean} for an ensemble, held inside the range the model "
                       f"may predict{clip}"),
        ("lower_80, upper_80", f"calibrated 80 % interval, {unit}: 8 in 10 held-out formulas fell inside; "
                               f"clipped to the same range (NaN when the run has no calibration)"),
        ("lower_95, upper_95", f"calibrated 95 % interval, {unit}, clipped likewise"),
        ("spread", f"standard deviation of the members' predictions, {spread_unit} (NaN for one model)"),
        ("n_members", "ensemble members that predicted"),
        ("clipped", "True where the prediction or an interval bound was cut at the range the model may predict"),
        ("out_of_domain", "True when any flag_* is True: the model cannot vouch for this number"),
        ("reasons", "the flags in words (empty inside the domain)"),
        ("flag_unknown", "a material the model never saw (its influence is a guess)"),
        ("flag_content", f"a material above its largest training content (+{100 * RANGE_SLACK:g} %), or never in a "
                         f"training formula"),
        ("flag_condition", f"a condition outside its training range (+- {100 * RANGE_SLACK:g} % of it)"),
        ("flag_distance", f"nearest_distance above its threshold{distance}"),
        ("flag_mixture", f"mixture_distance above its threshold{mixture}"),
        ("nearest_distance", f"L1 distance of the content fractions to the nearest training formula (0: a training "
                             f"formula, 2: nothing in common); threshold: the {100 * THRESHOLD_QUANTILE:g}th "
                             f"percentile over held-out formulas{distance}"),
        ("mixture_distance", f"distance of the mixture vector to the nearest training mixture (model's vector "
                             f"units); threshold: the {100 * THRESHOLD_QUANTILE:g}th percentile over held-out "
                             f"formulas{mixture}"),
        ("interval_note", "why to read the interval with care: out of domain (not to be trusted), clipped"),
        ("top_materials", f"materials that move this prediction most: prediction minus the prediction without "
                          f"that material, {unit}, strongest first"),
    ]
    return rows


def _interval_notes(table: pd.DataFrame, calibrated: bool) -> list[str]:
    """Per row: why its interval should be read with care ("" when there is nothing to say)."""
    notes = []
    for clipped, outside in zip(table["clipped"], table["out_of_domain"]):
        why = []
        if outside:
            why.append("out of domain: the interval is not to be trusted" if calibrated
                       else "out of domain: the number is not to be trusted")
        if clipped:
            why.append("clipped to the range the model may predict")
        notes.append("; ".join(why))
    return notes


def _with_unknown_zero(est: "MixtureRegressor") -> "MixtureRegressor":
    out = copy.copy(est)
    out.unknown = "zero"
    return out


def top_contributions(est: "MixtureRegressor", matrix: sp.csr_matrix, conditions: np.ndarray, top_k: int = 3
                      ) -> list[str]:
    """Per row of ``matrix``, the ``top_k`` materials whose vector moves the prediction most, as text
    ``"Carbomer 001 (M00042) +1,200; Glycerin (M00007) -310"`` (prediction minus the prediction with that
    ingredient's content left out of the mixture, property units; the pinned base contributes 0 by construction;
    materials by name and code, the code alone where the run has no name)."""
    matrix = sp.csr_matrix(matrix)
    index = MaterialIndex.of_model(est)
    ids = np.array([index.label(m) for m in index.ids], dtype=object)
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
            out.append("; ".join(f"{ids[cols[s + j]]} {'+' if delta[s + j] > 0 else '-'}"
                                 f"{format_number(abs(float(delta[s + j])))}" for j in order if delta[s + j] != 0))
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
