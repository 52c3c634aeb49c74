"""Load and validate formulation data in the long format.

A data set is three tables:

* ``formulas``: one row per ingredient, columns ``formula_id, material_id, content``. Content is in % or in
  fractions (``content_unit``); each formula is normalised to fractions that sum to 1.
* ``properties``: one row per *measurement*, columns ``formula_id``, the property (target) columns and optional
  condition columns (temperature, pressure, shear rate...). A formula measured at several conditions has several
  rows. An optional ``split`` column (``train``/``eval``/``test``) fixes a published split; an optional ``group``
  column groups formulas for grouped splits.
* ``materials`` (optional): ``material_id`` plus descriptive columns (``name``, ``family``...).

Everything is validated once and kept columnar: the material vocabulary is the row order of ``materials`` and the
formula x material content matrix is a ``scipy.sparse.csr_matrix``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

log = logging.getLogger(__name__)

TableLike = Union[str, Path, pd.DataFrame]
FORMULA_COLUMNS = ("formula_id", "material_id", "content")
SPLIT_VALUES = ("train", "eval", "test")
#: Largest deviation of a formula's content sum from 100 % (or 1) that is accepted before normalising.
SUM_TOLERANCE = 0.05


class DataError(ValueError):
    """Bad input data; the message names the file, row and column."""


def read_table(table: TableLike, name: str = "table") -> tuple[pd.DataFrame, str]:
    """Read a CSV or Parquet file (or take a DataFrame); return it with a label used in error messages."""
    if isinstance(table, pd.DataFrame):
        return table.reset_index(drop=True), f"<{name} DataFrame>"
    path = Path(table)
    if not path.exists():
        raise FileNotFoundError(f"{name} file not found: {path}")
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        frame = pd.read_parquet(path)
    elif suffix.endswith(".csv") or suffix.endswith(".csv.gz"):
        frame = pd.read_csv(path)
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet")
    return frame.reset_index(drop=True), str(path)


def _where(label: str, row: int) -> str:
    """Human location of a 0-based data row: CSV files also get their line number (header is line 1)."""
    line = f" (line {row + 2})" if label.endswith((".csv", ".csv.gz")) else ""
    return f"{label}: row {row}{line}"


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], label: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{label}: missing column(s) {missing}; found {list(frame.columns)}")


def _require_numeric(frame: pd.DataFrame, column: str, label: str, allow_nan: bool = False) -> np.ndarray:
    """Return ``frame[column]`` as float64, raising on text, NaN (unless allowed) or infinities."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad_text = values.isna() & frame[column].notna()
    if bad_text.any():
        row = int(np.flatnonzero(bad_text.to_numpy())[0])
        raise DataError(
            f"{_where(label, row)}, column {column!r}: value {frame[column].iloc[row]!r} is not a number"
        )
    arr = values.to_numpy(dtype=np.float64)
    if not allow_nan and np.isnan(arr).any():
        row = int(np.flatnonzero(np.isnan(arr))[0])
        raise DataError(f"{_where(label, row)}, column {column!r}: missing value (NaN)")
    if np.isinf(arr).any():
        row = int(np.flatnonzero(np.isinf(arr))[0])
        raise DataError(f"{_where(label, row)}, column {column!r}: infinite value")
    return arr


def _ids(frame: pd.DataFrame, column: str, label: str) -> pd.Series:
    """Identifiers as strings; empty or missing ids are errors."""
    ids = frame[column]
    missing = ids.isna() | (ids.astype(str).str.strip() == "")
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise DataError(f"{_where(label, row)}, column {column!r}: empty identifier")
    return ids.astype(str).str.strip()


@dataclass(frozen=True)
class FormulaData:
    """A validated data set.

    Attributes:
        formulas: long table ``formula_id, material_id, content`` with contents as fractions summing to 1
            per formula; duplicate (formula, material) rows are summed.
        properties: one row per measurement: ``formula_id``, targets, conditions, optional ``split``/``group``.
        materials: one row per material in vocabulary order: ``material_id``, descriptive columns,
            ``n_formulas`` (how many formulas use it) and ``median_content`` (median fraction where used).
        targets: names of the property columns.
        conditions: names of the condition columns (inputs to the regressor beside the mixture vector).
        name: a short label of the data set.
    """

    formulas: pd.DataFrame
    properties: pd.DataFrame
    materials: pd.DataFrame
    targets: tuple[str, ...]
    conditions: tuple[str, ...] = ()
    name: str = "data"

    @property
    def material_ids(self) -> np.ndarray:
        """Material ids in vocabulary order, shape ``(n_materials,)``."""
        return self.materials["material_id"].to_numpy()

    def base_material(self) -> str:
        """The material with the largest total content (the base solvent, e.g. water)."""
        return self.formulas.groupby("material_id")["content"].sum().idxmax()

    @property
    def formula_ids(self) -> np.ndarray:
        """Formula ids in content-matrix row order (first appearance in ``properties``), shape ``(n_formulas,)``."""
        return np.asarray(pd.unique(self.properties["formula_id"]))

    @property
    def n_materials(self) -> int:
        return len(self.materials)

    @property
    def n_formulas(self) -> int:
        return int(self.formulas["formula_id"].nunique())

    @property
    def n_samples(self) -> int:
        """Number of measurements (rows of ``properties``)."""
        return len(self.properties)

    def content_matrix(self) -> sp.csr_matrix:
        """Sparse formula x material matrix of content fractions, shape ``(n_formulas, n_materials)``."""
        rows = pd.Index(self.formula_ids).get_indexer(self.formulas["formula_id"])
        cols = pd.Index(self.material_ids).get_indexer(self.formulas["material_id"])
        mat = sp.csr_matrix(
            (self.formulas["content"].to_numpy(np.float64), (rows, cols)),
            shape=(len(self.formula_ids), self.n_materials),
        )
        mat.sum_duplicates()
        mat.sort_indices()
        return mat

    def sample_rows(self) -> np.ndarray:
        """For each measurement, its row in :meth:`content_matrix`, shape ``(n_samples,)``."""
        return pd.Index(self.formula_ids).get_indexer(self.properties["formula_id"].astype(str))

    def target_values(self, target: str | None = None) -> np.ndarray:
        """Measured values of one target, shape ``(n_samples,)``."""
        return self.properties[target or self.targets[0]].to_numpy(np.float64)

    def condition_values(self) -> np.ndarray:
        """Condition columns as a float array, shape ``(n_samples, n_conditions)``."""
        return self.properties[list(self.conditions)].to_numpy(np.float64).reshape(self.n_samples, -1)

    def subset(self, sample_mask: np.ndarray) -> "FormulaData":
        """Keep the measurements selected by a boolean mask and the formulas they use (materials unchanged)."""
        props = self.properties.loc[np.asarray(sample_mask, bool)].reset_index(drop=True)
        keep = set(props["formula_id"])
        forms = self.formulas[self.formulas["formula_id"].isin(keep)].reset_index(drop=True)
        return FormulaData(forms, props, self.materials, self.targets, self.conditions, self.name)

    def with_materials(self, materials: pd.DataFrame) -> "FormulaData":
        """Same formulas with another material vocabulary (e.g. the one a model was trained with)."""
        return FormulaData(self.formulas, self.properties, materials, self.targets, self.conditions, self.name)


def material_rows(vocabulary: Sequence[str], ids: Sequence[str | None], what: str,
                  vocabulary_name: str = "the data's vocabulary") -> np.ndarray:
    """Row of each id in ``vocabulary`` (-1 for None), shape ``(len(ids),)``; an id outside it is an error that
    names ``what`` and ``vocabulary_name``."""
    vocab = pd.Index(vocabulary)
    missing = [m for m in ids if m is not None and m not in vocab]
    if missing:
        raise ValueError(f"{what}: material(s) {missing} are not in {vocabulary_name}")
    return np.array([-1 if m is None else vocab.get_loc(m) for m in ids], dtype=np.int64)


def _normalise_contents(formulas: pd.DataFrame, label: str, content_unit: str) -> pd.DataFrame:
    """Convert contents to fractions and rescale each formula to sum to 1."""
    sums = formulas.groupby("formula_id", sort=False)["content"].sum()
    empty = sums[sums <= 0]
    if len(empty):
        fid = empty.index[0]
        row = int(np.flatnonzero((formulas["formula_id"] == fid).to_numpy())[0])
        raise DataError(f"{_where(label, row)}, column 'content': formula {fid!r} has no positive content")
    unit = content_unit
    if unit == "auto":
        unit = "percent" if float(sums.median()) > 1.5 else "fraction"
    if unit not in ("percent", "fraction"):
        raise ValueError(f"content_unit must be 'auto', 'percent' or 'fraction', got {content_unit!r}")
    total = 100.0 if unit == "percent" else 1.0
    off = (sums / total - 1.0).abs()
    if (off > SUM_TOLERANCE).any():
        log.info("%s: %d formulas deviate more than %.0f%% from %s total; normalised to sum 1",
                 label, int((off > SUM_TOLERANCE).sum()), SUM_TOLERANCE * 100, unit)
    out = formulas.copy()
    out["content"] = out["content"] / out["formula_id"].map(sums).to_numpy()
    return out


def load_formulas(
    formulas: TableLike,
    properties: TableLike,
    materials: TableLike | None = None,
    targets: Sequence[str] | str | None = None,
    conditions: Sequence[str] = (),
    content_unit: str = "auto",
    name: str = "data",
) -> FormulaData:
    """Load, validate and normalise a data set in the long format.

    Args:
        formulas: path or DataFrame with ``formula_id, material_id, content``.
        properties: path or DataFrame with ``formula_id``, the target columns and the condition columns.
        materials: optional path or DataFrame with ``material_id`` and descriptive columns. When given, every
            material used in ``formulas`` must be listed (unknown codes are errors).
        targets: property column(s) to learn; default: every numeric column that is not an id, condition,
            ``split`` or ``group``.
        conditions: names of measurement-condition columns in ``properties``.
        content_unit: ``"percent"``, ``"fraction"`` or ``"auto"`` (percent when the median formula sums > 1.5).
        name: label of the data set.

    Raises:
        DataError: on missing columns, non-numeric/NaN/negative contents, empty formulas, unknown materials,
            measurements of unknown formulas, NaN targets or conditions; the message names file, row and column.
    """
    forms, flabel = read_table(formulas, "formulas")
    props, plabel = read_table(properties, "properties")
    _require_columns(forms, FORMULA_COLUMNS, flabel)
    if len(forms) == 0:
        raise DataError(f"{flabel}: no rows")
    forms = forms[list(FORMULA_COLUMNS)].copy()
    forms["formula_id"] = _ids(forms, "formula_id", flabel)
    forms["material_id"] = _ids(forms, "material_id", flabel)
    forms["content"] = _require_numeric(forms, "content", flabel)
    negative = forms["content"].to_numpy() < 0
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise DataError(
            f"{_where(flabel, row)}, column 'content': negative content {forms['content'].iloc[row]!r}"
        )

    _require_columns(props, ["formula_id"], plabel)
    conditions = tuple(conditions)
    _require_columns(props, conditions, plabel)
    reserved = {"formula_id", "split", "group", *conditions}
    if targets is None:
        targets = tuple(c for c in props.columns if c not in reserved and pd.api.types.is_numeric_dtype(props[c]))
    elif isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    if not targets:
        raise DataError(f"{plabel}: no property (target) column found")
    _require_columns(props, targets, plabel)
    clash = set(targets) & set(conditions)
    if clash:
        raise DataError(f"{plabel}: column(s) {sorted(clash)} named both as target and as condition")
    props = props.copy()
    props["formula_id"] = _ids(props, "formula_id", plabel)
    for col in (*targets, *conditions):
        props[col] = _require_numeric(props, col, plabel)
    if "split" in props.columns:
        bad = ~props["split"].isin(SPLIT_VALUES)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{_where(plabel, row)}, column 'split': {props['split'].iloc[row]!r} "
                            f"is not one of {SPLIT_VALUES}")
    known = pd.Index(pd.unique(forms["formula_id"]))
    orphan = ~props["formula_id"].isin(known)
    if orphan.any():
        row = int(np.flatnonzero(orphan.to_numpy())[0])
        raise DataError(f"{_where(plabel, row)}, column 'formula_id': formula {props['formula_id'].iloc[row]!r} "
                        f"has no ingredients in {flabel}")

    unmeasured = ~forms["formula_id"].isin(set(props["formula_id"]))
    if unmeasured.any():
        log.info("%s: %d formulas have no measurement in %s and are left out",
                 flabel, forms["formula_id"][unmeasured].nunique(), plabel)
        forms = forms[~unmeasured]
    forms = forms.groupby(["formula_id", "material_id"], sort=False, as_index=False)["content"].sum()
    forms = _normalise_contents(forms, flabel, content_unit)
    forms = forms[forms["content"] > 0].reset_index(drop=True)

    if materials is not None:
        mats, mlabel = read_table(materials, "materials")
        _require_columns(mats, ["material_id"], mlabel)
        mats = mats.copy()
        mats["material_id"] = _ids(mats, "material_id", mlabel)
        dup = mats["material_id"].duplicated()
        if dup.any():
            row = int(np.flatnonzero(dup.to_numpy())[0])
            raise DataError(f"{_where(mlabel, row)}, column 'material_id': duplicate {mats['material_id'].iloc[row]!r}")
        unknown = ~forms["material_id"].isin(set(mats["material_id"]))
        if unknown.any():
            mid = forms["material_id"][unknown].iloc[0]
            raw, _ = read_table(formulas, "formulas") if not isinstance(formulas, pd.DataFrame) else (formulas, "")
            row = int(np.flatnonzero((raw["material_id"].astype(str).str.strip() == mid).to_numpy())[0])
            raise DataError(f"{_where(flabel, row)}, column 'material_id': unknown material {mid!r} "
                            f"(not in {mlabel}); {int(unknown.sum())} such rows")
    else:
        mats = pd.DataFrame({"material_id": pd.unique(forms["material_id"])})
        mats = mats.sort_values("material_id", kind="stable").reset_index(drop=True)
    if "name" not in mats.columns:
        mats["name"] = mats["material_id"]
    usage = forms.groupby("material_id")["content"].agg(["size", "median"])
    mats["n_formulas"] = mats["material_id"].map(usage["size"]).fillna(0).astype(int)
    mats["median_content"] = mats["material_id"].map(usage["median"]).fillna(0.0)
    return FormulaData(forms, props.reset_index(drop=True), mats.reset_index(drop=True), targets, conditions, name)


def save_formulas(data: FormulaData, directory: str | Path) -> dict[str, Path]:
    """Write ``formulas.parquet``, ``properties.parquet`` and ``materials.parquet`` atomically into ``directory``."""
    from mrl.io import write_table

    directory = Path(directory)
    paths = {}
    for key, frame in (("formulas", data.formulas), ("properties", data.properties), ("materials", data.materials)):
        paths[key] = write_table(frame, directory / f"{key}.parquet")
    return paths
