"""Load and validate formulation data in the long format.

A data set is three tables:

* ``formulas``: one row per ingredient, columns ``formula_id, material_id, content``. Content is in % or in
  fractions (``content_unit``); each formula is normalised to fractions that sum to 1.
* ``properties``: one row per *measurement*, columns ``formula_id``, the property (target) columns and optional
  condition columns (temperature, pressure, shear rate...). A formula measured at several conditions has several
  rows. An optional ``split`` column (``train``/``eval``/``test``) fixes a published split; an optional ``group``
  column groups formulas for grouped splits.
* ``materials`` (optional): ``material_id`` plus descriptive columns (``name``, ``family``...).

Files may be CSV (``,``/``;``/tab separated, decimal point or decimal comma, UTF-8 or cp1252/latin-1; detected from
the first lines, see :func:`read_table`), gzipped CSV, Parquet or Excel ``.xlsx``; a data set may also be one
workbook with sheets ``formulas``/``properties``/``materials``, a folder of such files, or one *wide* sheet (one row
per formula, one column per material); see :mod:`mrl.workbook` and :func:`load_formulas`. Nothing is trained on
silently wrong data: every bad input raises :class:`DataError` naming the file, the 0-based data row (plus the line
of a text file, or the sheet and its Excel row) and the column.

Numbers written as text are read by :func:`mrl.cells.parse_number`, each reading logged: ``12%`` -> 12, a decimal
comma ``1,5`` -> 1.5 (when the table's decimal mark is a comma, or in a sheet when it is not set), ``<0.1``
(below a detection limit) -> an error unless ``below_limit`` says how to read it, ``tr``/``n.d.``/``q.s.`` -> an
error unless ``text_values`` maps them; a date in a numeric column is an error. Headers are matched forgivingly:
``content (%)``, ``Content`` or ``Formula ID`` are read as ``content``/``formula_id`` with a logged note.

Everything is validated once and kept columnar: the material vocabulary is the row order of ``materials`` and the
formula x material content matrix is a ``scipy.sparse.csr_matrix``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mrl.cells import (
    BELOW_LIMIT_POLICIES,
    DEFAULT_RULES,
    CellRules,
    _looks_numeric,
)
from mrl.io import write_table
from mrl.tables import (
    FORMULA_COLUMNS,
    ID_COLUMNS,
    RESERVED_COLUMNS,
    SPLIT_VALUES,
    SUM_TOLERANCE,
    DataError,
    LabelledTable,
    TableLike,
    first_row,
    match_columns,
    read_ids,
    read_table,
    require_columns,
    require_numeric,
    require_rows,
    row_text,
    where,
)
from mrl.workbook import source_tables

log = logging.getLogger(__name__)


DUPLICATE_POLICIES = ("error", "sum")
CONTENT_UNITS = ("auto", "percent", "fraction")
#: Median formula sum above which ``content_unit="auto"`` reads contents as percent.
PERCENT_THRESHOLD = 1.5


@dataclass(frozen=True)
class FormulaData:
    """A validated data set.

    Attributes:
        formulas: long table ``formula_id, material_id, content`` with contents as fractions summing to 1
            per formula; one row per (formula, material) (duplicates are an error, or summed with
            ``load_formulas(duplicates="sum")``).
        properties: one row per measurement: ``formula_id``, targets, conditions, optional ``split``/``group``.
        materials: one row per material in vocabulary order: ``material_id``, descriptive columns,
            ``n_formulas`` (how many of *these* formulas use it) and ``median_content`` (median fraction where
            used); see :func:`material_usage`.
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
        """Size of the material vocabulary."""
        return len(self.materials)

    @property
    def n_formulas(self) -> int:
        """Number of distinct formulas."""
        return int(self.formulas["formula_id"].nunique())

    @property
    def n_samples(self) -> int:
        """Number of measurements (rows of ``properties``)."""
        return len(self.properties)

    def content_matrix(self) -> sp.csr_matrix:
        """Sparse formula x material matrix of content fractions, shape ``(n_formulas, n_materials)``."""
        return content_matrix(self.formulas, self.formula_ids, self.material_ids)

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
        """Keep the measurements selected by a boolean mask and the formulas they use. The materials keep their
        rows and order; their ``n_formulas``/``median_content`` are recomputed on the kept formulas (a training
        subset does not count the eval formulas as usage)."""
        props = self.properties.loc[np.asarray(sample_mask, bool)].reset_index(drop=True)
        keep = set(props["formula_id"])
        forms = self.formulas[self.formulas["formula_id"].isin(keep)].reset_index(drop=True)
        return FormulaData(forms, props, material_usage(self.materials, forms), self.targets, self.conditions,
                           self.name)

    def with_materials(self, materials: pd.DataFrame) -> "FormulaData":
        """Same formulas with another material vocabulary (e.g. the one a model was trained with)."""
        return FormulaData(self.formulas, self.properties, materials, self.targets, self.conditions, self.name)


def content_matrix(formulas: pd.DataFrame, formula_ids: Sequence[str], material_ids: Sequence[str]
                   ) -> sp.csr_matrix:
    """The formula x material matrix of a long ``formula_id, material_id, content`` table, rows in ``formula_ids``
    order and columns in ``material_ids`` order, shape ``(len(formula_ids), len(material_ids))``; rows of the
    table whose formula or material is not listed are left out, repeated pairs are summed, indices sorted."""
    rows = pd.Index(formula_ids).get_indexer(formulas["formula_id"])
    cols = pd.Index(material_ids).get_indexer(formulas["material_id"])
    keep = (rows >= 0) & (cols >= 0)
    mat = sp.csr_matrix((formulas["content"].to_numpy(np.float64)[keep], (rows[keep], cols[keep])),
                        shape=(len(formula_ids), len(material_ids)))
    mat.sum_duplicates()
    mat.sort_indices()
    return mat


def material_rows(vocabulary: Sequence[str], ids: Sequence[str | None], what: str,
                  vocabulary_name: str = "the data's vocabulary") -> np.ndarray:
    """Row of each id in ``vocabulary`` (-1 for None), shape ``(len(ids),)``; an id outside it is an error that
    names ``what`` and ``vocabulary_name``."""
    vocab = pd.Index(vocabulary)
    missing = [m for m in ids if m is not None and m not in vocab]
    if missing:
        raise ValueError(f"{what}: material(s) {missing} are not in {vocabulary_name}")
    return np.array([-1 if m is None else vocab.get_loc(m) for m in ids], dtype=np.int64)


def material_usage(materials: pd.DataFrame, formulas: pd.DataFrame) -> pd.DataFrame:
    """``materials`` (same rows, same order, other columns kept) with ``n_formulas`` (how many formulas of
    ``formulas`` use each material) and ``median_content`` (its median content there) recomputed; unused
    materials get 0 and 0.0."""
    usage = formulas.groupby("material_id")["content"].agg(["size", "median"])
    out = materials.copy()
    out["n_formulas"] = out["material_id"].map(usage["size"]).fillna(0).astype(int)
    out["median_content"] = out["material_id"].map(usage["median"]).fillna(0.0).astype(np.float64)
    return out

# --------------------------------------------------------------------------------------------------------------
# Loading: readers and validators of the three tables
# --------------------------------------------------------------------------------------------------------------
_TOTALS = {"percent": 100.0, "fraction": 1.0}


def _names(columns: Sequence[str] | str) -> tuple[str, ...]:
    """Column names as a tuple (a single name may be given as a string)."""
    return (columns,) if isinstance(columns, str) else tuple(columns)


def _check_duplicates(forms: pd.DataFrame, label: str, policy: str) -> None:
    """Two rows for one (formula, material) are an error, or (``policy="sum"``) summed later with a warning."""
    later = forms.duplicated(list(ID_COLUMNS), keep="first")
    if not later.any():
        return
    row = first_row(forms, later)
    fid, mid = forms.loc[row, "formula_id"], forms.loc[row, "material_id"]
    first = first_row(forms, (forms["formula_id"] == fid) & (forms["material_id"] == mid))
    if policy == "error":
        raise DataError(f"{where(label, row)}, column 'material_id': formula {fid!r} lists material {mid!r} again "
                        f"(first at {row_text(label, first)}); merge the rows, or pass duplicates='sum' to add "
                        f"them up")
    log.warning("%s: %d duplicate (formula, material) rows summed; the first: formula %r, material %r at %s and %s",
                label, int(later.sum()), fid, mid, row_text(label, first), row_text(label, row))


def _read_formulas(formulas: TableLike, duplicates: str, read: dict, rules: CellRules) -> tuple[pd.DataFrame, str]:
    """The formulas table with string ids and float contents (index = data row); checks columns, ids, numbers,
    signs and duplicate (formula, material) rows."""
    forms, label = read_table(formulas, "formulas", **read)
    forms = match_columns(forms, FORMULA_COLUMNS, label)
    require_columns(forms, FORMULA_COLUMNS, label)
    require_rows(forms, label)
    forms = forms[list(FORMULA_COLUMNS)].copy()
    for column in ID_COLUMNS:
        forms[column] = read_ids(forms, column, label)
    forms["content"] = require_numeric(forms, "content", label, rules=rules)
    negative = forms["content"] < 0
    if negative.any():
        row = first_row(forms, negative)
        raise DataError(f"{where(label, row)}, column 'content': negative content {forms['content'].loc[row]!r}")
    _check_duplicates(forms, label, duplicates)
    return forms, label


def read_formula_table(table: TableLike, *, duplicates: str = "error", sep: str | None = None,
                       decimal: str | None = None, sheet: str | int | None = None,
                       rules: CellRules = DEFAULT_RULES) -> tuple[pd.DataFrame, str]:
    """A formulas table read and checked as :func:`load_formulas` reads it (headers matched, ids as text, cells
    read by :func:`mrl.cells.parse_number`, no negative content, duplicates by ``duplicates``), contents still in
    their own unit (not normalised); with its label. For tools that take one formula (``mrl design``)."""
    return _read_formulas(table, duplicates, {"sep": sep, "decimal": decimal, "sheet": sheet}, rules)


def _choose_targets(props: pd.DataFrame, label: str, conditions: Sequence[str]) -> tuple[str, ...]:
    """The target when none is named: the one numeric(-looking) column besides ``formula_id``, ``split``,
    ``group`` and the conditions. None or several are errors (a file ``formula_id,T,viscosity`` must not train
    on ``T``)."""
    excluded = {*RESERVED_COLUMNS, *conditions}
    candidates = [c for c in props.columns if c not in excluded and _looks_numeric(props[c])]
    if not candidates:
        raise DataError(f"{label}: no property (target) column found: no numeric column besides "
                        f"{[*RESERVED_COLUMNS, *conditions]}; columns: {list(props.columns)}")
    if len(candidates) > 1:
        raise DataError(f"{label}: {len(candidates)} columns could be the target: {candidates}; name the one to "
                        f"learn (run param target, or load_formulas(targets=...)) and list measurement conditions "
                        f"such as temperature as conditions")
    log.info("%s: target %r (the only numeric property column)", label, candidates[0])
    return (candidates[0],)


def _check_split(props: pd.DataFrame, label: str) -> None:
    if "split" not in props.columns:
        return
    bad = ~props["split"].isin(SPLIT_VALUES)
    if bad.any():
        row = first_row(props, bad)
        raise DataError(f"{where(label, row)}, column 'split': {props['split'].loc[row]!r} "
                        f"is not one of {SPLIT_VALUES}")


def _read_properties(properties: TableLike, targets: Sequence[str] | str | None, conditions: Sequence[str] | str,
                     read: dict, rules: CellRules) -> tuple[pd.DataFrame, str, tuple[str, ...], tuple[str, ...]]:
    """The properties table with string ids and float targets/conditions; returns it, its label, the targets
    (chosen by :func:`_choose_targets` when None; none when an empty sequence is given) and the conditions."""
    props, label = read_table(properties, "properties", **read)
    require_rows(props, label)
    conditions = _names(conditions)
    props = match_columns(props, ["formula_id", *RESERVED_COLUMNS, *conditions, *_names(targets or ())], label)
    require_columns(props, ["formula_id"], label)
    require_columns(props, conditions, label)
    targets = _choose_targets(props, label, conditions) if targets is None else _names(targets)
    require_columns(props, targets, label)
    clash = set(targets) & set(conditions)
    if clash:
        raise DataError(f"{label}: column(s) {sorted(clash)} named both as target and as condition")
    props = props.copy()
    props["formula_id"] = read_ids(props, "formula_id", label)
    for column in (*targets, *conditions):
        props[column] = require_numeric(props, column, label, rules=rules)
    _check_split(props, label)
    return props, label, targets, conditions


def _measured(forms: pd.DataFrame, flabel: str, props: pd.DataFrame, plabel: str) -> pd.DataFrame:
    """Formulas rows of measured formulas; a measurement of a formula without ingredients is an error."""
    orphan = ~props["formula_id"].isin(forms["formula_id"].unique())
    if orphan.any():
        row = first_row(props, orphan)
        raise DataError(f"{where(plabel, row)}, column 'formula_id': formula {props['formula_id'].loc[row]!r} "
                        f"has no ingredients in {flabel}")
    unmeasured = ~forms["formula_id"].isin(props["formula_id"].unique())
    if unmeasured.any():
        ids = pd.unique(forms["formula_id"][unmeasured])
        log.warning("%s: %d formula(s) have no measurement in %s and are left out: %s%s", flabel, len(ids), plabel,
                    ", ".join(map(repr, ids[:5])), ", ..." if len(ids) > 5 else "")
    return forms[~unmeasured]


def _content_unit(forms: pd.DataFrame, label: str, content_unit: str) -> tuple[str, str]:
    """``(unit, why)``: the given unit, or with ``"auto"`` percent when the median formula sum is above
    :data:`PERCENT_THRESHOLD` (else fraction); logged."""
    if content_unit == "auto":
        median = float(forms.groupby("formula_id", sort=False)["content"].sum().median())
        unit = "percent" if median > PERCENT_THRESHOLD else "fraction"
        why = (f"content_unit='auto': the median formula sums to {median:.4g} "
               f"({'>' if unit == 'percent' else '<='} {PERCENT_THRESHOLD})")
    else:
        unit, why = content_unit, f"content_unit={content_unit!r}"
    log.info("%s: contents read as %s (%s)", label, unit, why)
    return unit, why


def _check_contents(forms: pd.DataFrame, label: str, unit: str, why: str) -> None:
    """Every formula has a positive content; no single content exceeds the whole (100 % or 1) by more than
    :data:`SUM_TOLERANCE`."""
    sums = forms.groupby("formula_id", sort=False)["content"].sum()
    empty = sums.index[(sums <= 0).to_numpy()]
    if len(empty):
        row = first_row(forms, forms["formula_id"] == empty[0])
        raise DataError(f"{where(label, row)}, column 'content': formula {empty[0]!r} has no positive content")
    total = _TOTALS[unit]
    high = forms["content"] > total * (1 + SUM_TOLERANCE)
    if high.any():
        row = first_row(forms, high)
        whole = "100 %" if unit == "percent" else "1 (a fraction)"
        raise DataError(f"{where(label, row)}, column 'content': content {forms['content'].loc[row]:g} is more "
                        f"than the whole formula ({whole}; contents read as {unit}: {why})")


def _read_materials(materials: TableLike | None, forms: pd.DataFrame, flabel: str, read: dict) -> pd.DataFrame:
    """The material vocabulary: the given table (unique ids; every material used with a positive content must be
    listed) or the used materials sorted by id; a ``name`` column defaults to the id."""
    used = forms[forms["content"] > 0]
    if materials is None:
        mats = pd.DataFrame({"material_id": pd.unique(used["material_id"])})
        mats = mats.sort_values("material_id", kind="stable")
    else:
        mats, mlabel = read_table(materials, "materials", **read)
        mats = match_columns(mats, ["material_id", "name"], mlabel)
        require_rows(mats, mlabel)
        require_columns(mats, ["material_id"], mlabel)
        mats = mats.copy()
        mats["material_id"] = read_ids(mats, "material_id", mlabel)
        dup = mats["material_id"].duplicated()
        if dup.any():
            row = first_row(mats, dup)
            raise DataError(f"{where(mlabel, row)}, column 'material_id': duplicate "
                            f"{mats['material_id'].loc[row]!r}")
        unknown = ~used["material_id"].isin(mats["material_id"].unique())
        if unknown.any():
            row = first_row(used, unknown)
            raise DataError(f"{where(flabel, row)}, column 'material_id': unknown material "
                            f"{used['material_id'].loc[row]!r} (not in {mlabel}); {int(unknown.sum())} such rows")
    if "name" not in mats.columns:
        mats["name"] = mats["material_id"]
    return mats.reset_index(drop=True)


def _normalise_contents(forms: pd.DataFrame, label: str, unit: str) -> pd.DataFrame:
    """One row per (formula, material) (duplicates summed), contents as fractions summing to 1 per formula, zero
    contents dropped; formulas whose sum is more than :data:`SUM_TOLERANCE` away from the whole get a warning."""
    merged = forms.groupby(list(ID_COLUMNS), sort=False, as_index=False)["content"].sum()
    sums = merged.groupby("formula_id", sort=False)["content"].sum()
    off = sums.index[((sums / _TOTALS[unit] - 1.0).abs() > SUM_TOLERANCE).to_numpy()]
    if len(off):
        log.warning("%s: %d of %d formulas sum more than %.0f%% away from %s (first: %s); normalised to sum 1 "
                    "(check content_unit and missing ingredients)", label, len(off), len(sums), SUM_TOLERANCE * 100,
                    "100 %" if unit == "percent" else "1", ", ".join(map(repr, off[:5])))
    merged["content"] = merged["content"] / merged["formula_id"].map(sums).to_numpy()
    return merged[merged["content"] > 0].reset_index(drop=True)


def load_formulas(
    formulas: TableLike,
    properties: TableLike | None = None,
    materials: TableLike | None = None,
    targets: Sequence[str] | str | None = None,
    conditions: Sequence[str] | str = (),
    content_unit: str = "auto",
    name: str = "data",
    *,
    duplicates: str = "error",
    sep: str | None = None,
    decimal: str | None = None,
    below_limit: str = "error",
    text_values: Mapping[str, float] | None = None,
    layout: str = "long",
    sheets: Mapping[str, str] | None = None,
    sheet: str | int | None = None,
    id_column: str = "formula_id",
    material_columns: str | Sequence[str] | None = None,
    ignore_columns: Sequence[str] = (),
) -> FormulaData:
    """Load, validate and normalise a data set.

    With ``properties`` given, ``formulas``/``properties``/``materials`` are the three long tables. Without it,
    ``formulas`` is a whole data set, read by :func:`mrl.workbook.source_tables`: a folder holding
    ``formulas``/``properties`` (and optionally ``materials``) tables (``.csv``, ``.csv.gz``, ``.parquet``,
    ``.xlsx``; two versions of one table are an error naming the newest), one workbook with sheets ``formulas``,
    ``properties``, ``materials`` (any case; other names through ``sheets``), or, with ``layout="wide"``, one wide
    sheet or table: one row per formula, one column per material, plus the ``id_column``, the target(s),
    conditions and ``ignore_columns``; ``material_columns`` (a sheet range ``"B:K"`` or a list of names) says which
    columns are materials (default: every other numeric column).

    Args:
        formulas: path (CSV, gzipped CSV, Parquet, ``.xlsx``; see :func:`read_table`) or DataFrame with
            ``formula_id, material_id, content``; or (``properties`` None) a data folder, workbook or wide table.
        properties: path or DataFrame with ``formula_id``, the target columns and the condition columns.
        materials: optional path or DataFrame with ``material_id`` and descriptive columns. When given, every
            material used in ``formulas`` must be listed (unknown codes are errors).
        targets: property column(s) to learn. Default: the only numeric (or numeric-looking, e.g. ``1,234``)
            column that is not ``formula_id``, ``split``, ``group`` or a condition; several such columns are an
            error that names them (a file ``formula_id,T,viscosity`` must not silently train on ``T``). An empty
            sequence means no target (formulas to predict, e.g. :func:`prediction_input`).
        conditions: names of measurement-condition columns in ``properties``.
        content_unit: ``"percent"``, ``"fraction"`` or ``"auto"``: percent when the median formula sum is above
            1.5, else fraction (the choice and its reason are logged). A single content above the whole (100 % or
            1) by more than :data:`SUM_TOLERANCE` is an error; formulas whose sum is off by more than that are
            normalised with a warning.
        name: label of the data set.
        duplicates: two rows for one (formula, material): ``"error"`` (default) or ``"sum"`` (added up, with a
            warning).
        sep: CSV separator (default: detected, see :func:`read_table`).
        decimal: decimal mark of CSV files and of numbers stored as text (default: detected; see
            :class:`CellRules`).
        below_limit: how ``<0.1`` is read: ``"error"`` (default), ``"half"``, ``"zero"`` or ``"limit"``.
        text_values: text cells read as numbers, e.g. ``{"tr": 0.01, "n.d.": 0}``.
        layout: ``"long"`` (three tables) or ``"wide"`` (one row per formula, one column per material); only
            with ``properties`` None.
        sheets: workbook sheet of each table, e.g. ``{"formulas": "Rezepturen"}`` (default: sheets named
            ``formulas``/``properties``/``materials``, any case).
        sheet: the wide sheet of a workbook (default: ``formulas``, else the only sheet).
        id_column: the wide table's column naming each formula.
        material_columns: the wide table's material columns: a sheet range ``"B:K"`` or headers (default: every
            numeric column not named as id, target, condition or ignored).
        ignore_columns: wide-table columns that are neither material, target nor condition (notes, pH...).

    Raises:
        DataError: on empty files, missing columns, non-numeric/NaN/negative/implausible contents, duplicate
            ingredients, empty formulas, unknown materials, measurements of unknown formulas, text or NaN in
            targets or conditions, an ambiguous target; the message names file, row (and line) and column.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    if content_unit not in CONTENT_UNITS:
        raise ValueError(f"content_unit must be one of {CONTENT_UNITS}, got {content_unit!r}")
    if below_limit not in BELOW_LIMIT_POLICIES:
        raise ValueError(f"below_limit must be one of {BELOW_LIMIT_POLICIES}, got {below_limit!r}")
    rules = CellRules(decimal, below_limit, dict(text_values or {}))
    read = {"sep": sep, "decimal": decimal}
    if properties is None:
        if materials is not None:
            raise ValueError("materials is read from the data set itself when properties is not given")
        formulas, properties, materials, targets = source_tables(
            formulas, layout=layout, sheets=sheets, sheet=sheet, id_column=id_column,
            material_columns=material_columns, ignore_columns=ignore_columns, targets=targets,
            conditions=_names(conditions), duplicates=duplicates, rules=rules, read=read)
    elif layout != "long":
        raise ValueError(f"layout {layout!r} needs the whole data set as one source (properties=None)")
    forms, flabel = _read_formulas(formulas, duplicates, read, rules)
    props, plabel, targets, conditions = _read_properties(properties, targets, conditions, read, rules)
    forms = _measured(forms, flabel, props, plabel)
    unit, why = _content_unit(forms, flabel, content_unit)
    _check_contents(forms, flabel, unit, why)
    mats = _read_materials(materials, forms, flabel, read)
    forms = _normalise_contents(forms, flabel, unit)
    return FormulaData(forms, props.reset_index(drop=True), material_usage(mats, forms), targets, conditions, name)


def save_formulas(data: FormulaData, directory: str | Path) -> dict[str, Path]:
    """Write ``formulas.parquet``, ``properties.parquet`` and ``materials.parquet`` atomically into ``directory``."""
    directory = Path(directory)
    paths = {}
    for key, frame in (("formulas", data.formulas), ("properties", data.properties), ("materials", data.materials)):
        paths[key] = write_table(frame, directory / f"{key}.parquet")
    return paths


def prediction_input(formulas: TableLike, conditions: TableLike | None = None,
                     condition_names: Sequence[str] = (), name: str = "formulas") -> FormulaData:
    """Formulas to predict (long format, no target) and their conditions as a :class:`FormulaData`.

    ``conditions`` is a table with ``formula_id`` and one column per name in ``condition_names`` (one or more rows
    per formula: each row is one prediction). A model without conditions needs none; then every formula gets one
    row. Missing condition columns are an error naming them; extra columns are named in a warning and ignored.
    """
    forms, flabel = read_table(formulas, "formulas")
    condition_names = list(condition_names)
    if conditions is None:
        if condition_names:
            raise DataError(f"{flabel}: the model needs condition column(s) {condition_names}; pass a conditions "
                            f"table with formula_id and {condition_names}")
        if "formula_id" not in forms.columns:
            raise DataError(f"{flabel}: missing column(s) ['formula_id']; found {list(forms.columns)}")
        props = pd.DataFrame({"formula_id": pd.unique(forms["formula_id"].astype(str).str.strip())})
        plabel = f"{flabel} (formula list)"
    else:
        props, plabel = read_table(conditions, "conditions")
        missing = [c for c in ["formula_id", *condition_names] if c not in props.columns]
        if missing:
            raise DataError(f"{plabel}: missing condition column(s) {missing} that the model needs; found "
                            f"{list(props.columns)}")
        extra = [c for c in props.columns if c not in ("formula_id", *condition_names)]
        if extra:
            log.warning("%s: column(s) %s are not conditions of the model and are ignored", plabel, extra)
        props = LabelledTable(props, plabel)  # read once: its label still names file, row and line in errors
    return load_formulas(LabelledTable(forms, flabel), props, targets=(), conditions=condition_names, name=name)
