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

import csv
import gzip
import io
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mrl.cells import (  # noqa: F401  (BELOW_LIMIT_POLICIES, CellRules, column_key, parse_number: re-exported)
    _DECIMAL_COMMA,
    _NOTES,
    BELOW_LIMIT_POLICIES,
    DEFAULT_RULES,
    CellRules,
    _cell_key,
    _looks_numeric,
    _to_float,
    column_key,
    parse_number,
)

log = logging.getLogger(__name__)


class Label(str):
    """A table's name in messages (the path, or ``path, sheet 'name'``), which also knows where each data row sits
    in the source (``rows[i]``, e.g. ``Excel row 7``; None: the line of a text file), the sheet column letter of each
    column (``columns``) and the decimal mark its text numbers use (None: not fixed)."""

    rows: Sequence[str] | None
    columns: Mapping[str, str]
    decimal: str | None

    def __new__(cls, text: str, rows: Sequence[str] | None = None, columns: Mapping[str, str] | None = None,
                decimal: str | None = None) -> "Label":
        """The label ``text`` with its row locations, column letters and decimal mark."""
        label = super().__new__(cls, text)
        label.rows, label.columns, label.decimal = rows, dict(columns or {}), decimal
        return label

    #: Sheet column letter of each column by position (sheets only; several columns may share a header).
    letters: Sequence[str] | None = None

    def subset(self, positions: Sequence[int] | np.ndarray) -> "Label":
        """The label of the table's rows at ``positions`` (in that order)."""
        rows = None if self.rows is None else [self.rows[int(i)] for i in positions]
        return Label(str(self), rows, self.columns, self.decimal)


class LabelledTable(NamedTuple):
    """A table already read, with its :class:`Label` (passed anywhere a path or DataFrame is taken)."""

    frame: pd.DataFrame
    label: str


TableLike = Union[str, Path, pd.DataFrame, LabelledTable]
FORMULA_COLUMNS = ("formula_id", "material_id", "content")
ID_COLUMNS = ("formula_id", "material_id")
SPLIT_VALUES = ("train", "eval", "test")
#: Properties columns that are never a target.
RESERVED_COLUMNS = ("formula_id", "split", "group")
#: Largest deviation of a formula's content sum from 100 % (or 1) that is accepted before normalising; a single
#: content above 100 % (or 1) by more than this share is an error.
SUM_TOLERANCE = 0.05
#: Suffixes :func:`find_table` looks for, in this order.
TABLE_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".xlsx")
#: Encodings tried in turn for text files (latin-1 decodes any byte, so it is the last resort).
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
DUPLICATE_POLICIES = ("error", "sum")
CONTENT_UNITS = ("auto", "percent", "fraction")
#: Median formula sum above which ``content_unit="auto"`` reads contents as percent.
PERCENT_THRESHOLD = 1.5
#: Columns a table read by name must have (its header row is the first row holding them; see :mod:`mrl.workbook`).
REQUIRED_COLUMNS = {"formulas": FORMULA_COLUMNS, "formula": FORMULA_COLUMNS, "properties": ("formula_id",),
                    "conditions": ("formula_id",), "materials": ("material_id",), "candidates": ("material_id",)}
_SNIFF_LINES = 50
_TEXT_SUFFIXES = (".csv", ".csv.gz")



class DataError(ValueError):
    """Bad input data; the message names the file, row and column."""


# --------------------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------------------
def read_table(table: TableLike, name: str = "table", *, sep: str | None = None, decimal: str | None = None,
               sheet: str | int | None = None) -> tuple[pd.DataFrame, str]:
    """Read a CSV, gzipped CSV, Parquet or ``.xlsx`` file (or take a DataFrame); return it with a label used in
    error messages (the path, or ``<name DataFrame>``).

    CSV: the separator (``,``, ``;`` or tab) is the one that splits the header into most fields; the decimal mark
    is a comma when the separator is not ``,`` and the first lines hold values like ``1,5``. ``sep``/``decimal``
    override the detection. Text that is not UTF-8 is read as cp1252 (else latin-1) with a warning. Only empty
    fields are missing values: ``NA`` or ``n/a`` stay text (a material may be called ``NA``; a target ``n/a`` is
    reported, not dropped). ``sheet`` picks an ``.xlsx`` sheet by name (any case) or position (default: the sheet
    called ``name``, else the first); sheets are read by :func:`mrl.workbook.read_sheet` (title rows, a units row,
    blank rows and columns, total rows and merged cells handled there, each logged).

    Raises:
        FileNotFoundError: no such file.
        DataError: unsupported file type, empty file, no data rows, a line with more fields than the header,
            an unreadable file; the message names the file.
    """
    if isinstance(table, LabelledTable):
        frame, label = table.frame.reset_index(drop=True), table.label
    elif isinstance(table, pd.DataFrame):
        frame, label = table.reset_index(drop=True), f"<{name} DataFrame>"
    else:
        path = Path(table)
        if not path.exists():
            raise FileNotFoundError(f"{name} file not found: {path}")
        if _suffix(path).endswith(".xlsx") and path.stat().st_size:
            from mrl.workbook import read_sheet

            frame, label = read_sheet(path, sheet, name, REQUIRED_COLUMNS.get(name, ()))
        else:
            frame, label = _read_file(path, sep, decimal, sheet)
    _require_unique_columns(frame, label)
    return frame, label


def find_table(folder: str | Path, stem: str) -> Path | None:
    """The one table ``folder/stem.{parquet,csv,csv.gz,xlsx}`` (None when there is none).

    Raises:
        DataError: more than one exists (e.g. a stale ``formulas.parquet`` beside an edited ``formulas.csv``);
            the message names all of them and the newest.
    """
    folder = Path(folder)
    found = [folder / f"{stem}{suffix}" for suffix in TABLE_SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    if len(found) <= 1:
        return found[0] if found else None
    stamps = {p: datetime.fromtimestamp(p.stat().st_mtime).isoformat(sep=" ", timespec="seconds") for p in found}
    newest = max(found, key=lambda p: p.stat().st_mtime)
    listing = ", ".join(f"{p.name} (modified {stamps[p]})" for p in found)
    raise DataError(f"{folder}: {len(found)} {stem!r} tables: {listing}; {newest.name} is the newest. "
                    f"Keep one and move or delete the others")


def _suffix(path: Path) -> str:
    """Lower-case file type, two suffixes deep (``.csv.gz``)."""
    return "".join(path.suffixes[-2:]).lower()


def _read_file(path: Path, sep: str | None, decimal: str | None, sheet: str | int | None
               ) -> tuple[pd.DataFrame, Label]:
    """Read one file by its suffix; empty files and files without data rows are errors."""
    suffix = _suffix(path)
    if not suffix.endswith((".parquet", ".pq", ".csv", ".csv.gz", ".xlsx")):
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .csv, .csv.gz, .parquet or .xlsx")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    label = Label(str(path))
    if suffix.endswith((".parquet", ".pq")):
        frame = _read_parquet(path)
    else:
        frame, label = _read_csv(path, sep, decimal)
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows (columns {list(frame.columns)})")
    return frame.reset_index(drop=True), label


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file; an unreadable one is a :class:`DataError`."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err


def _read_csv(path: Path, sep: str | None, decimal: str | None) -> tuple[pd.DataFrame, Label]:
    """A CSV file (optionally gzipped): decode, detect separator and decimal mark, parse."""
    try:
        raw = gzip.decompress(path.read_bytes()) if _suffix(path).endswith(".gz") else path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot be decompressed ({err})") from err
    text = _decode(raw, str(path))
    if not text.strip():
        raise DataError(f"{path}: empty file (no header line)")
    sep, decimal = _sniff(text, sep, decimal, str(path))
    return _parse_csv(text, sep, decimal, str(path)), Label(str(path), decimal=decimal)


def _decode(raw: bytes, label: str) -> str:
    """Text of a file: UTF-8 (a byte-order mark is dropped), else cp1252, else latin-1, with a warning."""
    for encoding in ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding != ENCODINGS[0]:
            log.warning("%s: not UTF-8; read as %s (check accented names; save as UTF-8 to silence this)",
                        label, encoding)
        return text
    raise AssertionError("latin-1 decodes any byte")  # pragma: no cover


def _header_fields(header: str, sep: str) -> int:
    """Number of fields the header line splits into with ``sep`` (quotes respected)."""
    return len(next(csv.reader([header], delimiter=sep), []))


def _sniff(text: str, sep: str | None, decimal: str | None, label: str) -> tuple[str, str]:
    """Separator and decimal mark of a CSV text: given ones win; else the separator that splits the header into
    most fields (``,`` on a tie) and a decimal comma when the separator is not ``,`` and a value looks like
    ``1,5`` in the first lines."""
    lines = [line for line in text.splitlines()[:_SNIFF_LINES] if line.strip()]
    given = (sep, decimal)
    if sep is None:
        sep = max((",", ";", "\t"), key=lambda s: _header_fields(lines[0], s))
    if decimal is None:
        fields = (f.strip().strip('"') for line in lines[1:] for f in next(csv.reader([line], delimiter=sep), []))
        decimal = "," if sep != "," and any(_DECIMAL_COMMA.fullmatch(f) for f in fields) else "."
    if sep == decimal:
        raise ValueError(f"{label}: separator and decimal mark are both {sep!r}")
    if (sep, decimal) != (",", "."):
        how = ["given" if g else "detected" for g in given]
        log.info("%s: separator %r (%s), decimal mark %r (%s)", label, sep, how[0], decimal, how[1])
    return sep, decimal


def _parse_csv(text: str, sep: str, decimal: str, label: str) -> pd.DataFrame:
    """Parse CSV text; a line with more fields than the header is an error naming the line (pandas would
    otherwise silently take a first line with one extra field as an index column)."""
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, decimal=decimal, dtype={c: str for c in ID_COLUMNS},
                            keep_default_na=False, na_values=[""], skip_blank_lines=False, low_memory=False)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{label}: empty file (no header line)") from err
    except pd.errors.ParserError as err:
        raise DataError(f"{label}: {_parser_problem(str(err), sep)}") from err
    if not (isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0):
        raise DataError(f"{label}: line 2 has {len(frame.columns) + 1} fields but the header has "
                        f"{len(frame.columns)} (an extra {sep!r}?)")
    frame.columns = [c.strip() if isinstance(c, str) else c for c in frame.columns]
    return _drop_trailing_empty_rows(frame)


def _parser_problem(message: str, sep: str) -> str:
    """A pandas tokenizer message in the loader's words (line number first)."""
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if fields:
        expected, line, saw = fields.groups()
        return f"line {line} has {saw} fields but the header has {expected} (an extra {sep!r}? quote text holding it)"
    quote = re.search(r"EOF inside string starting at row (\d+)", message)
    if quote:  # pandas counts rows from 0 at the header
        return f"line {int(quote.group(1)) + 1}: a quote (\") is never closed"
    return f"cannot parse ({message.strip()})"


def _drop_trailing_empty_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Without the all-empty rows at the end (spreadsheet exports); empty rows in between stay and are reported."""
    filled = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
    return frame.iloc[: filled[-1] + 1 if len(filled) else 0]


# --------------------------------------------------------------------------------------------------------------
# Validating columns
# --------------------------------------------------------------------------------------------------------------
def _row_text(label: str, row: int) -> str:
    """``row R`` plus ``(line N)`` for text files, ``(Excel row N)`` for a sheet (see :class:`Label`) or
    ``(sheet row N)`` for ``.xlsx`` (the header is line 1)."""
    rows = getattr(label, "rows", None)
    if rows is not None:
        return f"row {row} ({rows[row]})" if 0 <= row < len(rows) else f"row {row}"
    if label.lower().endswith(_TEXT_SUFFIXES):
        return f"row {row} (line {row + 2})"
    if label.lower().endswith(".xlsx"):
        return f"row {row} (sheet row {row + 2})"
    return f"row {row}"


def _where(label: str, row: int) -> str:
    """Human location of a 0-based data row in a table labelled ``label`` (see :func:`_row_text`)."""
    return f"{label}: {_row_text(label, row)}"


def _first_row(frame: pd.DataFrame, mask: pd.Series | np.ndarray) -> int:
    """Data row (index label) of the first row where ``mask`` holds."""
    return int(frame.index[np.flatnonzero(np.asarray(mask, bool))[0]])


def _require_unique_columns(frame: pd.DataFrame, label: str) -> None:
    dup = frame.columns[frame.columns.duplicated()]
    if len(dup):
        raise DataError(f"{label}: column(s) {sorted(map(str, set(dup)))} appear more than once")




def match_columns(frame: pd.DataFrame, names: Sequence[str], label: str) -> pd.DataFrame:
    """``frame`` with each of ``names`` it lacks taken from the one column whose :func:`column_key` is the name's
    (``content (%)`` read as ``content``), with a logged note; two such columns are an error naming both."""
    renames = {}
    for name in dict.fromkeys(names):
        if name in frame.columns or name in renames.values():
            continue
        found = [c for c in frame.columns if column_key(c) == column_key(name) and c not in renames]
        if len(found) > 1:
            raise DataError(f"{label}: columns {found} could each be {name!r}; rename one of them")
        if found:
            renames[found[0]] = name
    if renames:
        log.info("%s: column(s) read by name: %s", label, ", ".join(f"{old!r} as {new!r}"
                                                                     for old, new in renames.items()))
        frame = frame.rename(columns=renames)
        if isinstance(label, Label) and label.columns:
            label.columns.update({new: label.columns[old] for old, new in renames.items() if old in label.columns})
    return frame


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], label: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{label}: missing column(s) {missing}; found {list(frame.columns)}")


def _require_rows(frame: pd.DataFrame, label: str) -> None:
    if len(frame) == 0:
        raise DataError(f"{label}: no data rows (columns {list(frame.columns)})")
















def _parse_numbers(raw: pd.Series, column: str, label: str, rules: CellRules) -> pd.Series:
    """A column as float64 by :func:`parse_number`; the first cell (in row order) that is not a number is an error
    naming its row and why; how text cells were read is logged once per column."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return _to_float(raw)
    decimal = getattr(label, "decimal", None)
    parsed: dict[object, tuple[float, str] | str] = {}
    keys = [_cell_key(v) for v in raw.to_numpy(dtype=object)]
    for key, value in zip(keys, raw.to_numpy(dtype=object)):
        if key not in parsed:
            try:
                parsed[key] = parse_number(value, rules, decimal)
            except ValueError as err:
                parsed[key] = str(err)
    results = [parsed[k] for k in keys]
    bad = np.array([isinstance(r, str) for r in results])
    if bad.any():
        row = _first_row(raw.to_frame(), bad)
        value = raw.loc[row]
        raise DataError(f"{_where(label, row)}, column {_column_text(label, column)}: value {value!r} is not a "
                        f"number ({results[int(np.flatnonzero(bad)[0])]})")
    how = pd.Series([r[1] for r in results], index=raw.index)
    for kind in ("percent", "decimal comma", "text", "below limit", "mapped"):
        hit = how == kind
        if hit.any():
            row = _first_row(raw.to_frame(), hit)
            note = _NOTES[kind].format(policy=rules.below_limit)
            log.info("%s, column %s: %d cell(s) %s; the first: %r at %s", label, _column_text(label, column),
                     int(hit.sum()), note, raw.loc[row], _row_text(label, row))
    return pd.Series([r[0] for r in results], index=raw.index, dtype=np.float64)




def _column_text(label: str, column: str) -> str:
    """``'content'``, or ``C 'content'`` when the table's sheet column letter is known."""
    letter = getattr(label, "columns", {}).get(column)
    return f"{letter} {column!r}" if letter else repr(column)


def _require_numeric(frame: pd.DataFrame, column: str, label: str, allow_nan: bool = False,
                     rules: CellRules = DEFAULT_RULES) -> np.ndarray:
    """Return ``frame[column]`` as float64 (text read by :func:`parse_number`), raising on text that is not a
    number, NaN (unless allowed) or infinities."""
    values = _parse_numbers(frame[column], column, label, rules)
    arr = values.to_numpy(dtype=np.float64)
    if not allow_nan and np.isnan(arr).any():
        raise DataError(f"{_where(label, _first_row(frame, np.isnan(arr)))}, column {column!r}: missing value (NaN)")
    if np.isinf(arr).any():
        raise DataError(f"{_where(label, _first_row(frame, np.isinf(arr)))}, column {column!r}: infinite value")
    return arr


def _ids(frame: pd.DataFrame, column: str, label: str) -> pd.Series:
    """Identifiers as stripped strings (a whole number typed in a sheet, ``7.0``, is ``7``); empty or missing ids
    are errors."""
    ids = frame[column]
    if ids.dtype == object:
        ids = ids.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    text = ids.astype(str).str.strip()
    missing = ids.isna() | (text == "")
    if missing.any():
        raise DataError(f"{_where(label, _first_row(frame, missing))}, column {column!r}: empty identifier")
    return text


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
    row = _first_row(forms, later)
    fid, mid = forms.loc[row, "formula_id"], forms.loc[row, "material_id"]
    first = _first_row(forms, (forms["formula_id"] == fid) & (forms["material_id"] == mid))
    if policy == "error":
        raise DataError(f"{_where(label, row)}, column 'material_id': formula {fid!r} lists material {mid!r} again "
                        f"(first at {_row_text(label, first)}); merge the rows, or pass duplicates='sum' to add "
                        f"them up")
    log.warning("%s: %d duplicate (formula, material) rows summed; the first: formula %r, material %r at %s and %s",
                label, int(later.sum()), fid, mid, _row_text(label, first), _row_text(label, row))


def _read_formulas(formulas: TableLike, duplicates: str, read: dict, rules: CellRules) -> tuple[pd.DataFrame, str]:
    """The formulas table with string ids and float contents (index = data row); checks columns, ids, numbers,
    signs and duplicate (formula, material) rows."""
    forms, label = read_table(formulas, "formulas", **read)
    forms = match_columns(forms, FORMULA_COLUMNS, label)
    _require_columns(forms, FORMULA_COLUMNS, label)
    _require_rows(forms, label)
    forms = forms[list(FORMULA_COLUMNS)].copy()
    for column in ID_COLUMNS:
        forms[column] = _ids(forms, column, label)
    forms["content"] = _require_numeric(forms, "content", label, rules=rules)
    negative = forms["content"] < 0
    if negative.any():
        row = _first_row(forms, negative)
        raise DataError(f"{_where(label, row)}, column 'content': negative content {forms['content'].loc[row]!r}")
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
        row = _first_row(props, bad)
        raise DataError(f"{_where(label, row)}, column 'split': {props['split'].loc[row]!r} "
                        f"is not one of {SPLIT_VALUES}")


def _read_properties(properties: TableLike, targets: Sequence[str] | str | None, conditions: Sequence[str] | str,
                     read: dict, rules: CellRules) -> tuple[pd.DataFrame, str, tuple[str, ...], tuple[str, ...]]:
    """The properties table with string ids and float targets/conditions; returns it, its label, the targets
    (chosen by :func:`_choose_targets` when None; none when an empty sequence is given) and the conditions."""
    props, label = read_table(properties, "properties", **read)
    _require_rows(props, label)
    conditions = _names(conditions)
    props = match_columns(props, ["formula_id", *RESERVED_COLUMNS, *conditions, *_names(targets or ())], label)
    _require_columns(props, ["formula_id"], label)
    _require_columns(props, conditions, label)
    targets = _choose_targets(props, label, conditions) if targets is None else _names(targets)
    _require_columns(props, targets, label)
    clash = set(targets) & set(conditions)
    if clash:
        raise DataError(f"{label}: column(s) {sorted(clash)} named both as target and as condition")
    props = props.copy()
    props["formula_id"] = _ids(props, "formula_id", label)
    for column in (*targets, *conditions):
        props[column] = _require_numeric(props, column, label, rules=rules)
    _check_split(props, label)
    return props, label, targets, conditions


def _measured(forms: pd.DataFrame, flabel: str, props: pd.DataFrame, plabel: str) -> pd.DataFrame:
    """Formulas rows of measured formulas; a measurement of a formula without ingredients is an error."""
    orphan = ~props["formula_id"].isin(forms["formula_id"].unique())
    if orphan.any():
        row = _first_row(props, orphan)
        raise DataError(f"{_where(plabel, row)}, column 'formula_id': formula {props['formula_id'].loc[row]!r} "
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
        row = _first_row(forms, forms["formula_id"] == empty[0])
        raise DataError(f"{_where(label, row)}, column 'content': formula {empty[0]!r} has no positive content")
    total = _TOTALS[unit]
    high = forms["content"] > total * (1 + SUM_TOLERANCE)
    if high.any():
        row = _first_row(forms, high)
        whole = "100 %" if unit == "percent" else "1 (a fraction)"
        raise DataError(f"{_where(label, row)}, column 'content': content {forms['content'].loc[row]:g} is more "
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
        _require_rows(mats, mlabel)
        _require_columns(mats, ["material_id"], mlabel)
        mats = mats.copy()
        mats["material_id"] = _ids(mats, "material_id", mlabel)
        dup = mats["material_id"].duplicated()
        if dup.any():
            row = _first_row(mats, dup)
            raise DataError(f"{_where(mlabel, row)}, column 'material_id': duplicate "
                            f"{mats['material_id'].loc[row]!r}")
        unknown = ~used["material_id"].isin(mats["material_id"].unique())
        if unknown.any():
            row = _first_row(used, unknown)
            raise DataError(f"{_where(flabel, row)}, column 'material_id': unknown material "
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
            sequence means no target (formulas to predict, e.g. :func:`mrl.predict.prediction_input`).
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
        from mrl.workbook import source_tables

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
    from mrl.io import write_table

    directory = Path(directory)
    paths = {}
    for key, frame in (("formulas", data.formulas), ("properties", data.properties), ("materials", data.materials)):
        paths[key] = write_table(frame, directory / f"{key}.parquet")
    return paths
