"""Reading one table: a CSV, Parquet or Excel sheet (or a DataFrame), with a label that names the file, sheet, row
and column in every error.

* :func:`read_table` reads a file by its type. CSV: the separator (``,``, ``;`` or tab) and the decimal mark are
  detected from the first lines (``sep``/``decimal`` override), text that is not UTF-8 is read as cp1252 (else
  latin-1) with a warning, and only empty fields are missing values. ``.xlsx`` sheets go through
  :func:`read_sheet`, which reads a sheet the way a person does and logs each choice:

  - **header row**: the first row holding the columns the table needs (``formula_id, material_id, content`` for
    formulas, ``formula_id`` for properties, ``material_id`` for materials, the ``id_column`` of a wide sheet;
    headers match ignoring case and a unit in brackets, see :func:`mrl.cells.column_key`); title rows above it are
    skipped with a note. No such row in the first :data:`HEADER_SEARCH_ROWS` rows is an error naming them.
  - **units row**: a row right under the header with text only and no identifier (``%``, ``cP``) is skipped.
  - **blank rows and columns** are skipped with a note; a column with values but no header is an error naming
    its letter (often a merged header cell).
  - **total rows** (``Total``, ``Sum``, ``Summe``, ``Gesamt``, ``Subtotal``) are skipped with a warning naming them.
  - **merged cells**: a merged title is ignored; a header merged over several columns, or merged data cells, are
    errors naming the range; a header merged down over the units row is read as its value.
  - **duplicate columns** are an error naming both letters.

* :func:`find_table` finds the one ``stem.{parquet,csv,csv.gz,xlsx}`` of a folder; two versions of one table (a
  stale ``formulas.parquet`` beside an edited ``formulas.csv``) are an error naming the newest.
* The checks every table gets (:func:`match_columns`, required columns and rows, numeric columns read through
  :func:`mrl.cells.parse_number`) raise :class:`DataError` naming the file, the 0-based data row (plus the line of
  a text file, or the sheet and its Excel row) and the column.
"""
from __future__ import annotations

import csv
import functools
import gzip
import io
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence, Union

import numpy as np
import pandas as pd
from python_calamine import CalamineWorkbook

from mrl.cells import (
    _DECIMAL_COMMA,
    _NOTES,
    DEFAULT_RULES,
    CellRules,
    _cell_key,
    _to_float,
    column_key,
    parse_number,
)

log = logging.getLogger("mrl.data")  # one logger for reading data


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


#: Columns a table read by name must have (its header row is the first row holding them; see :func:`read_sheet`).
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
    called ``name``, else the first); sheets are read by :func:`read_sheet` (title rows, a units row,
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
def row_text(label: str, row: int) -> str:
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


def where(label: str, row: int) -> str:
    """Human location of a 0-based data row in a table labelled ``label`` (see :func:`row_text`)."""
    return f"{label}: {row_text(label, row)}"


def first_row(frame: pd.DataFrame, mask: pd.Series | np.ndarray) -> int:
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


def require_columns(frame: pd.DataFrame, columns: Sequence[str], label: str) -> None:
    """DataError naming the columns of ``columns`` that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{label}: missing column(s) {missing}; found {list(frame.columns)}")


def require_rows(frame: pd.DataFrame, label: str) -> None:
    """DataError when ``frame`` has no data rows."""
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
        row = first_row(raw.to_frame(), bad)
        value = raw.loc[row]
        raise DataError(f"{where(label, row)}, column {column_text(label, column)}: value {value!r} is not a "
                        f"number ({results[int(np.flatnonzero(bad)[0])]})")
    how = pd.Series([r[1] for r in results], index=raw.index)
    for kind in ("percent", "decimal comma", "text", "below limit", "mapped"):
        hit = how == kind
        if hit.any():
            row = first_row(raw.to_frame(), hit)
            note = _NOTES[kind].format(policy=rules.below_limit)
            log.info("%s, column %s: %d cell(s) %s; the first: %r at %s", label, column_text(label, column),
                     int(hit.sum()), note, raw.loc[row], row_text(label, row))
    return pd.Series([r[0] for r in results], index=raw.index, dtype=np.float64)


def column_text(label: str, column: str) -> str:
    """``'content'``, or ``C 'content'`` when the table's sheet column letter is known."""
    letter = getattr(label, "columns", {}).get(column)
    return f"{letter} {column!r}" if letter else repr(column)


def require_numeric(frame: pd.DataFrame, column: str, label: str, allow_nan: bool = False,
                     rules: CellRules = DEFAULT_RULES) -> np.ndarray:
    """Return ``frame[column]`` as float64 (text read by :func:`parse_number`), raising on text that is not a
    number, NaN (unless allowed) or infinities."""
    values = _parse_numbers(frame[column], column, label, rules)
    arr = values.to_numpy(dtype=np.float64)
    if not allow_nan and np.isnan(arr).any():
        raise DataError(f"{where(label, first_row(frame, np.isnan(arr)))}, column {column!r}: missing value (NaN)")
    if np.isinf(arr).any():
        raise DataError(f"{where(label, first_row(frame, np.isinf(arr)))}, column {column!r}: infinite value")
    return arr


def read_ids(frame: pd.DataFrame, column: str, label: str) -> pd.Series:
    """Identifiers as stripped strings (a whole number typed in a sheet, ``7.0``, is ``7``); empty or missing ids
    are errors."""
    ids = frame[column]
    if ids.dtype == object:
        ids = ids.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    text = ids.astype(str).str.strip()
    missing = ids.isna() | (text == "")
    if missing.any():
        raise DataError(f"{where(label, first_row(frame, missing))}, column {column!r}: empty identifier")
    return text


#: Sheets (and folder tables) of a long-format data set; ``materials`` is optional.
SHEETS = ("formulas", "properties", "materials")


#: Rows searched for the header.
HEADER_SEARCH_ROWS = 30


#: Cell texts that mark a total row (compared by :func:`mrl.cells.column_key`).
TOTAL_WORDS = frozenset({"total", "totals", "sum", "subtotal", "sub_total", "summe", "gesamt", "grand_total", "σ"})


_UNIT_TEXT_MAX = 20


def column_letter(index: int) -> str:
    """Excel's letter of a 0-based column index (0 -> ``A``, 26 -> ``AA``)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def column_index(letters: str) -> int:
    """0-based column index of Excel letters (``A`` -> 0); raises ValueError on anything else."""
    letters = letters.strip().upper()
    if not re.fullmatch(r"[A-Z]{1,3}", letters):
        raise ValueError(f"{letters!r} is not a column letter")
    index = 0
    for char in letters:
        index = index * 26 + ord(char) - 64
    return index - 1


def choose_sheet(names: Sequence[str], sheet: str | int | None, name: str, path: Path) -> str:
    """The sheet to read: ``sheet`` (a name, any case, or a position), else the one called ``name``, else the
    first."""
    if sheet is None:
        same = [s for s in names if s.strip().casefold() == name.casefold()]
        return same[0] if same else names[0]
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        if -len(names) <= sheet < len(names):
            return names[sheet]
    else:
        same = [s for s in names if s == sheet] or [s for s in names if s.strip().casefold() == str(sheet).casefold()]
        if same:
            return same[0]
    raise DataError(f"{path}: no sheet {sheet!r}; sheets: {list(names)}")


def _open(path: Path):
    """The workbook, opened with calamine (a fast reader); an unreadable file is a :class:`DataError`."""
    try:
        return CalamineWorkbook.from_path(str(path))
    except Exception as err:  # calamine raises its own error types for every kind of bad file
        raise DataError(f"{path}: not a readable .xlsx file ({type(err).__name__}: {err})") from err


def sheet_names(path: str | Path) -> list[str]:
    """The sheet names of an ``.xlsx`` workbook."""
    return list(_open(Path(path)).sheet_names)


def read_sheet(path: str | Path, sheet: str | int | None = None, name: str = "table",
               required: Sequence[str] = (), unique: bool = True, hint: str = "") -> LabelledTable:
    """One sheet of an ``.xlsx`` workbook as a table of cell values (see the module docstring for what is skipped
    and what is an error); its :class:`Label` names the sheet and knows each row's Excel row.

    Args:
        path: the workbook.
        sheet: sheet name (any case) or position; default: the sheet called ``name``, else the first.
        name: what the table is (``formulas``...), for the default sheet and messages.
        required: columns the header row must hold (see :data:`mrl.data.REQUIRED_COLUMNS`); none: the first
            filled row is the header.
        unique: two columns with one header are an error (else both are kept, for :func:`wide_tables`).
        hint: what to do when no header row is found (appended to the error).
    """
    path = Path(path)
    book = _open(path)
    title = choose_sheet(book.sheet_names, sheet, name, path)
    try:
        content = book.get_sheet_by_name(title)
        grid = [[None if v == "" else v for v in row] for row in content.to_python(skip_empty_area=False)]
        merged = [(r0 + 1, c0 + 1, r1 + 1, c1 + 1) for (r0, c0), (r1, c1) in content.merged_cell_ranges or ()]
    except Exception as err:  # calamine's own error types
        raise DataError(f"{path}: sheet {title!r} cannot be read ({type(err).__name__}: {err})") from err
    log.info("%s: read sheet %r", path, title)
    return sheet_table(grid, f"{path}, sheet {title!r}", required, merged, unique, hint)


def _ref(box: tuple[int, int, int, int]) -> str:
    """``B4:D4`` of a 1-based ``(min_row, min_col, max_row, max_col)``."""
    return f"{column_letter(box[1] - 1)}{box[0]}:{column_letter(box[3] - 1)}{box[2]}"


def filled_cell(value: Any) -> bool:
    """A cell holding something: not None, not blank text, not NaN."""
    return value is not None and not (isinstance(value, str) and not value.strip()) and not (
        isinstance(value, float) and np.isnan(value))


def _is_number(value: Any) -> bool:
    """A number, or text that is one (``12``, ``1,5``, ``12%``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return isinstance(value, str) and bool(re.fullmatch(r"\s*[<>]?\s*[+-]?(\d+([.,]\d*)?|[.,]\d+)\s*%?\s*", value))


def _header_row(grid: list[list[Any]], label: str, required: Sequence[str], hint: str = "") -> int:
    """0-based index of the header row: the first row holding every required column, else (none required) the
    first filled row."""
    filled = [i for i, row in enumerate(grid) if any(filled_cell(v) for v in row)]
    if not filled:
        raise DataError(f"{label}: empty sheet")
    if not required:
        return filled[0]
    keys = {column_key(c) for c in required}
    for i in filled[:HEADER_SEARCH_ROWS]:
        if keys <= {column_key(v) for v in grid[i] if filled_cell(v)}:
            return i
    first = [str(v) for v in grid[filled[0]] if filled_cell(v)]
    raise DataError(f"{label}: no header row holding column(s) {list(required)} in the first {HEADER_SEARCH_ROWS} "
                    f"filled rows; Excel row {filled[0] + 1} holds {first}"
                    + (f"; {hint}" if hint else " (case and a unit in brackets do not matter)"))


def sheet_table(grid: list[list[Any]], label: str, required: Sequence[str] = (),
                merged: Sequence[tuple[int, int, int, int]] = (), unique: bool = True, hint: str = ""
                ) -> LabelledTable:
    """The table in a grid of cell values (``grid[r][c]`` is Excel row ``r + 1``, column ``c``): see
    :func:`read_sheet`, which reads the grid from a workbook."""
    width = max((len(row) for row in grid), default=0)
    grid = [list(row) + [None] * (width - len(row)) for row in grid]
    head = _header_row(grid, label, required, hint)
    if head > 0 and any(any(filled_cell(v) for v in row) for row in grid[:head]):
        titles = [str(v).strip() for row in grid[:head] for v in row if filled_cell(v)]
        log.info("%s: header on Excel row %d; %d row(s) above it skipped as titles (%s)", label, head + 1, head,
                 "; ".join(titles[:3]) + ("; ..." if len(titles) > 3 else ""))
    header_merges = [m for m in merged if m[0] <= head + 1 <= m[2]]
    for box in header_merges:
        if box[3] > box[1]:
            value = grid[box[0] - 1][box[1] - 1]
            raise DataError(f"{label}: header cell {_ref(box)} ({value!r}) is merged over {box[3] - box[1] + 1} "
                            f"columns; give each column its own header (unmerge the cells)")
    names = ["" if not filled_cell(v) else str(v).strip() for v in grid[head]]
    body = list(range(head + 1, len(grid)))
    skipped: dict[str, list[int]] = {"blank": [], "units": [], "total": []}
    # a header merged down over the row below makes that row part of the header (read as units)
    below = max((m[2] for m in header_merges), default=head + 1) - 1
    id_columns = [j for j, n in enumerate(names) if n and column_key(n) in {column_key(c) for c in required}
                  and column_key(n) != "content"]
    if body and (below > head or _units_row(grid[body[0]], names, id_columns)):
        units = {names[j]: str(v).strip() for j, v in enumerate(grid[body[0]]) if filled_cell(v) and names[j]}
        log.info("%s: Excel row %d read as units under the header (%s)", label, body[0] + 1,
                 ", ".join(f"{k}: {v}" for k, v in units.items()) or "empty")
        skipped["units"].append(body.pop(0))
    keep_columns = []
    for j, column in enumerate(names):
        filled = [r for r in body if filled_cell(grid[r][j])]
        if column:
            keep_columns.append(j)
        elif filled:
            raise DataError(f"{label}: column {column_letter(j)} has values (first {grid[filled[0]][j]!r} at Excel "
                            f"row {filled[0] + 1}) but no header; name the column or delete it (a merged header "
                            f"cell?)")
    inner_blank = [column_letter(j) for j in range(min(keep_columns, default=0), max(keep_columns, default=0))
                   if not names[j]]
    if inner_blank:
        log.info("%s: blank column(s) %s skipped", label, ", ".join(inner_blank))
    rows = []
    for r in body:
        cells = [grid[r][j] for j in keep_columns]
        if not any(filled_cell(v) for v in cells):
            skipped["blank"].append(r)
        elif any(isinstance(v, str) and _is_total(v) for v in cells):
            skipped["total"].append(r)
        else:
            rows.append(r)
    trailing = [r for r in skipped["blank"] if not rows or r > rows[-1]]
    blank = [r for r in skipped["blank"] if r not in trailing]
    if blank:
        log.info("%s: %d blank row(s) skipped (Excel rows %s)", label, len(blank), _row_list(blank))
    for r in skipped["total"]:
        text = next(str(v).strip() for v in grid[r] if isinstance(v, str) and _is_total(v))
        log.warning("%s: Excel row %d (%r) skipped: a total row, not a formula", label, r + 1, text)
    for box in merged:
        if box[0] > head + 1 and any(box[0] - 1 <= r <= box[2] - 1 for r in rows):
            raise DataError(f"{label}: merged cells {_ref(box)} in the data (Excel rows {box[0]}-{box[2]}); "
                            f"unmerge them and fill every cell")
    columns = [names[j] for j in keep_columns]
    letters = {names[j]: column_letter(j) for j in keep_columns}
    if unique:
        seen: dict[str, int] = {}
        for j in keep_columns:
            if names[j] in seen:
                raise DataError(f"{label}: column {names[j]!r} appears twice (columns {column_letter(seen[names[j]])} "
                                f"and {column_letter(j)}); rename or merge one of them")
            seen[names[j]] = j
    frame = pd.DataFrame([[grid[r][j] for j in keep_columns] for r in rows], columns=columns, dtype=object)
    id_keys = {column_key(c) for c in required} - {"content"}
    for j, column in zip(keep_columns, columns):  # all-number columns become float (identifiers stay as typed)
        values = frame.iloc[:, keep_columns.index(j)]
        if column_key(column) not in id_keys and len(values) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in values):
            frame.isetitem(keep_columns.index(j), pd.to_numeric(values, errors="coerce").astype(np.float64))
    log.info("%s: header on Excel row %d (%s); %d data row(s)", label, head + 1,
             ", ".join(f"{letters[c]} {c}" for c in columns[:12]) + (", ..." if len(columns) > 12 else ""), len(rows))
    sheet_label = Label(label, rows=[f"Excel row {r + 1}" for r in rows], columns=letters)
    sheet_label.letters = [column_letter(j) for j in keep_columns]
    return LabelledTable(frame, sheet_label)


@functools.lru_cache(maxsize=65536)
def _is_total(text: str) -> bool:
    """Whether a cell's text marks a total row (``Total``, ``Sum:``, ``Gesamt``...)."""
    return column_key(text.rstrip(": ")) in TOTAL_WORDS


def _units_row(cells: list[Any], names: list[str], id_columns: list[int]) -> bool:
    """A units row: some short text, no number, and no identifier."""
    filled = [(j, v) for j, v in enumerate(cells) if filled_cell(v) and names[j]]
    return bool(filled) and all(isinstance(v, str) and not _is_number(v) and len(v.strip()) <= _UNIT_TEXT_MAX
                                and not _is_total(v) for _, v in filled) and not any(
        filled_cell(cells[j]) for j in id_columns)


def _row_list(rows: Sequence[int], most: int = 8) -> str:
    text = ", ".join(str(r + 1) for r in rows[:most])
    return text + (f", ... ({len(rows)} in all)" if len(rows) > most else "")
