"""Where a model has seen data: flags for formulas it is asked about but cannot vouch for.

A :class:`Domain` is built once, after training, from the training formulas (and the held-out calibration
formulas for its thresholds) and saved in the run folder (``domain.npz``). :meth:`Domain.flags` then names, for
every formula asked about, each reason it lies outside what the model has seen:

* ``unknown``: a material absent from training (handled by the ``unknown`` policy, but the number is a guess);
* ``content``: a material's content above the largest it had in training formulas (less of it lies between
  "absent" and the smallest content seen: no extrapolation), or a material in no training formula;
* ``condition``: a condition (e.g. temperature) outside the training range;
* ``distance``: L1 distance of its content fractions to the nearest training formula above the 95th percentile
  of the calibration formulas' distances (0 = a training formula, 2 = no ingredient in common;
  :func:`mrl.error_sources.nearest_distances`);
* ``mixture``: its mixture vector farther from the nearest training mixture vector than 95 % of the calibration
  formulas' (the model's own notion of "unlike anything seen").

Thresholds come from the calibration formulas (held out of training, never eval or test), so how well the flags
separate large from small errors can be measured honestly on eval.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from mrl.error_sources import nearest_distances
from mrl.io import atomic_path

log = logging.getLogger(__name__)
#: Share of calibration formulas that lie within the distance thresholds.
THRESHOLD_QUANTILE = 0.95
#: Relative slack on content and condition ranges before a value counts as outside (rounding in lab records).
RANGE_SLACK = 0.01
REASONS = ("unknown", "content", "condition", "distance", "mixture")


@dataclass
class Domain:
    """The training domain of one model.

    Attributes:
        material_ids: the model's vocabulary, shape ``(n_materials,)``.
        content_min, content_max: smallest and largest content fraction of each material in training formulas
            (NaN where unused), shape ``(n_materials,)``.
        condition_names: the model's condition columns.
        condition_min, condition_max: their training ranges, shape ``(n_conditions,)``.
        train_matrix: content fractions of the training formulas, shape ``(n_train_formulas, n_materials)``.
        train_mixtures: their mixture vectors (the model's), shape ``(n_train_formulas, dim)``.
        distance_threshold, mixture_threshold: 95th percentiles on calibration formulas (NaN without them).
    """

    material_ids: np.ndarray
    content_min: np.ndarray
    content_max: np.ndarray
    condition_names: list[str]
    condition_min: np.ndarray
    condition_max: np.ndarray
    train_matrix: sp.csr_matrix
    train_mixtures: np.ndarray
    distance_threshold: float
    mixture_threshold: float

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, matrix: sp.csr_matrix, mixtures: np.ndarray, conditions: np.ndarray,
              material_ids: Sequence[str], condition_names: Sequence[str],
              calib_matrix: sp.csr_matrix | None = None, calib_mixtures: np.ndarray | None = None) -> "Domain":
        """From the training formulas' content matrix (one row per formula), mixture vectors and conditions (one
        row per measurement), and optionally the calibration formulas' matrix and mixtures for the thresholds."""
        matrix = sp.csr_matrix(matrix, dtype=np.float64)
        csc = matrix.tocsc()
        lo, hi = np.full(matrix.shape[1], np.nan), np.full(matrix.shape[1], np.nan)
        for m in np.flatnonzero(np.diff(csc.indptr)):
            values = csc.data[csc.indptr[m]:csc.indptr[m + 1]]
            lo[m], hi[m] = values.min(), values.max()
        conditions = np.asarray(conditions, np.float64).reshape(len(conditions), -1)
        ref = cls(np.asarray(material_ids, dtype=object), lo, hi, list(condition_names),
                  conditions.min(axis=0) if len(conditions) else np.zeros(0),
                  conditions.max(axis=0) if len(conditions) else np.zeros(0),
                  matrix, np.asarray(mixtures, np.float32), float("nan"), float("nan"))
        if calib_matrix is not None and calib_matrix.shape[0]:
            ref.distance_threshold = float(np.quantile(ref.nearest_distance(calib_matrix), THRESHOLD_QUANTILE))
            ref.mixture_threshold = float(np.quantile(ref.mixture_distance(calib_mixtures), THRESHOLD_QUANTILE))
        else:
            log.info("domain: no calibration formulas; distance and mixture flags are off")
        return ref

    # ------------------------------------------------------------------ distances
    def nearest_distance(self, matrix: sp.csr_matrix) -> np.ndarray:
        """L1 distance of each row's content fractions to the nearest training formula, shape ``(n,)``."""
        return nearest_distances(matrix, self.train_matrix)[0]

    def mixture_distance(self, mixtures: np.ndarray) -> np.ndarray:
        """Euclidean distance of each mixture vector to the nearest training mixture vector, shape ``(n,)``."""
        index = NearestNeighbors(n_neighbors=1).fit(self.train_mixtures)
        return index.kneighbors(np.asarray(mixtures, np.float32))[0][:, 0].astype(np.float64)

    # ------------------------------------------------------------------ flags
    def flags(self, matrix: sp.csr_matrix, mixtures: np.ndarray, conditions: np.ndarray,
              unknown: Sequence[Sequence[str]] | None = None, distances: bool = True,
              labels: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per formula: ``out_of_domain`` (bool), ``reasons`` (text, ``""`` when inside), a bool column
        per reason of :data:`REASONS`, ``nearest_distance`` and ``mixture_distance``.

        Args:
            matrix: content fractions in the model's vocabulary order, shape ``(n, n_materials)``.
            mixtures: the model's mixture vectors of the same formulas, shape ``(n, dim)``.
            conditions: their conditions, shape ``(n, n_conditions)``.
            unknown: per formula, the material ids outside the vocabulary (already left out of ``matrix``).
            distances: compute the two distance flags (the L1 search costs most of the time).
            labels: how the reasons name each material of the vocabulary (e.g. ``"Carbomer 001 (M00238)"``;
                default: its id).
        """
        matrix = sp.csr_matrix(matrix, dtype=np.float64)
        n = matrix.shape[0]
        text: list[list[str]] = [[] for _ in range(n)]
        hit = {reason: np.zeros(n, bool) for reason in REASONS}
        if unknown is not None:
            for i, ids in enumerate(unknown):
                if len(ids):
                    hit["unknown"][i] = True
                    text[i].append(f"unknown material(s) {', '.join(map(str, ids))}")
        coo = matrix.tocoo()
        lo, hi = self.content_min[coo.col], self.content_max[coo.col]
        # below the smallest content seen is no extrapolation (content 0, i.e. absent, is seen): only above the
        # largest, or a material never in a training formula, is flagged
        outside = np.isnan(hi) | (coo.data > hi * (1 + RANGE_SLACK))
        for r, c, v, a, b in zip(coo.row[outside], coo.col[outside], coo.data[outside], lo[outside], hi[outside]):
            hit["content"][r] = True
            seen = "never in training formulas" if np.isnan(a) else f"training range {100 * a:.3g}-{100 * b:.3g} %"
            text[r].append(f"{self.material_ids[c] if labels is None else labels[c]} at {100 * v:.3g} % ({seen})")
        conditions = np.asarray(conditions, np.float64).reshape(n, -1)
        for j, name in enumerate(self.condition_names):
            span = self.condition_max[j] - self.condition_min[j]
            out = (conditions[:, j] < self.condition_min[j] - RANGE_SLACK * span) | \
                  (conditions[:, j] > self.condition_max[j] + RANGE_SLACK * span)
            for r in np.flatnonzero(out):
                hit["condition"][r] = True
                text[r].append(f"{name} = {conditions[r, j]:g} (training range {self.condition_min[j]:g}-"
                               f"{self.condition_max[j]:g})")
        nearest = np.full(n, np.nan)
        mixture = self.mixture_distance(mixtures) if n else np.zeros(0)
        if distances and n and np.isfinite(self.distance_threshold):
            nearest = self.nearest_distance(matrix)
            for r in np.flatnonzero(nearest > self.distance_threshold):
                hit["distance"][r] = True
                text[r].append(f"far from every training formula (L1 {nearest[r]:.2f} > {self.distance_threshold:.2f})")
        if np.isfinite(self.mixture_threshold):
            for r in np.flatnonzero(mixture > self.mixture_threshold):
                hit["mixture"][r] = True
                text[r].append(f"mixture vector unlike training ({mixture[r]:.3g} > {self.mixture_threshold:.3g})")
        out = pd.DataFrame({"out_of_domain": np.any(np.stack(list(hit.values())), axis=0) if n else np.zeros(0, bool),
                            "reasons": ["; ".join(t) for t in text]})
        for reason in REASONS:
            out[f"flag_{reason}"] = hit[reason]
        out["nearest_distance"] = nearest
        out["mixture_distance"] = mixture
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write ``domain.npz`` atomically (open format: numpy arrays, the matrix as CSR parts)."""
        m = self.train_matrix
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(
                    handle, material_ids=self.material_ids.astype(str), content_min=self.content_min,
                    content_max=self.content_max, condition_names=np.asarray(self.condition_names, dtype=str),
                    condition_min=self.condition_min, condition_max=self.condition_max, data=m.data,
                    indices=m.indices, indptr=m.indptr, shape=np.asarray(m.shape), train_mixtures=self.train_mixtures,
                    thresholds=np.asarray([self.distance_threshold, self.mixture_threshold]))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Domain":
        """Read what :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as z:
            matrix = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            return cls(z["material_ids"].astype(object), z["content_min"], z["content_max"],
                       [str(c) for c in z["condition_names"]], z["condition_min"], z["condition_max"], matrix,
                       z["train_mixtures"], float(z["thresholds"][0]), float(z["thresholds"][1]))

    def extended(self, material_ids: Sequence[str]) -> "Domain":
        """The same domain over a longer vocabulary (an adapted model's): new materials were never in training."""
        n_new = len(material_ids) - len(self.material_ids)
        if n_new < 0 or list(material_ids[:len(self.material_ids)]) != list(self.material_ids):
            raise ValueError("extended: the vocabulary must start with the domain's own materials")
        pad = np.full(n_new, np.nan)
        matrix = sp.hstack([self.train_matrix, sp.csr_matrix((self.train_matrix.shape[0], n_new))]).tocsr()
        return Domain(np.asarray(material_ids, dtype=object), np.concatenate([self.content_min, pad]),
                      np.concatenate([self.content_max, pad]), self.condition_names, self.condition_min,
                      self.condition_max, matrix, self.train_mixtures, self.distance_threshold,
                      self.mixture_threshold)
