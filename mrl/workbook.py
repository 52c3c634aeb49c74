"""Spreadsheets as labs keep them: workbooks, sheets with title rows and units, wide formula sheets.

Three things live here, each feeding the long-format loader :func:`mrl.data.load_formulas`:

* :func:`read_sheet` reads one ``.xlsx`` sheet the way a person reads it, and logs each choice:

  - **header row**: the first row holding the columns the table needs (``formula_id, material_id, content`` for
    formulas, ``formula_id`` for properties, ``material_id`` for materials, the ``id_column`` of a wide sheet;
    headers match ignoring case and a unit in brackets, see :func:`mrl.data.column_key`); title rows above it are
    skipped with a note. No such row in the first :data:`HEADER_SEARCH_ROWS` rows is an error naming them.
  - **units row**: a row right under the header with text only and no identifier (``%``, ``cP``) is skipped with a
    note naming the units.
  - **blank rows and columns** are skipped with a note; a column with values but no header is an error naming
    its letter (often a merged header cell).
  - **total rows**: a row with a cell ``Total``, ``Sum``, ``Summe``, ``Gesamt`` or ``Subtotal`` is skipped with a
    warning naming its row.
  - **merged cells**: a merged title above the header is ignored; a header cell merged over several columns is an
    error naming the range (each column needs its own header); a header merged down over the units row is read
    as its value; merged cells in the data are an error naming the range.
  - **duplicate columns** are an error naming both letters (in a wide sheet, two columns of one material are
    summed with ``duplicates="sum"``).

  Rows in messages are Excel's (1-based, as the user sees them), with the column letter. Cell values (``12%``,
  ``<0.1``, ``tr``, decimal commas, dates) are read later by :func:`mrl.data.parse_number`.
* :func:`wide_tables` turns a **wide** table (``layout: wide``: one row per formula, one column per material) into
  the long tables. The user names the non-material columns: ``id_column`` (default ``formula_id``), the target(s),
  the conditions and ``ignore_columns``; every other numeric column is a material (or exactly the
  ``material_columns``: a sheet range ``"B:K"`` or a list of headers). The material columns are logged (and
  printed by ``mrl validate``). Nothing is guessed: a wide table needs a named target, and a would-be material
  column holding a value that cannot be a content (above 100 or negative) is an error saying which key to set.
* :func:`source_tables` resolves what ``data:`` (or ``mrl validate PATH``, or ``load_formulas(PATH)``) names: a
  folder, a workbook or one wide table.
"""
from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from mrl.cells import DEFAULT_RULES, CellRules, _looks_numeric, column_key
from mrl.data import (
    FORMULA_COLUMNS,
    REQUIRED_COLUMNS,
    RESERVED_COLUMNS,
    SUM_TOLERANCE,
    TABLE_SUFFIXES,
    DataError,
    Label,
    LabelledTable,
    _require_numeric,
    _row_text,
    find_table,
    read_table,
)

log = logging.getLogger("mrl.data.workbook")  # a child of mrl.data: one logger tree for reading data

#: Sheets (and folder tables) of a long-format data set; ``materials`` is optional.
SHEETS = ("formulas", "properties", "materials")
#: Rows searched for the header.
HEADER_SEARCH_ROWS = 30
#: Cell texts that mark a total row (compared by :func:`mrl.data.column_key`).
TOTAL_WORDS = frozenset({"total", "totals", "sum", "subtotal", "sub_total", "summe", "gesamt", "grand_total", "σ"})
LAYOUTS = ("long", "wide")
_ID_HINT = "set id_column to the header of the column naming each formula"
_WIDE_HINT = ("case and a unit in brackets do not matter; a sheet with one row per formula and one column per "
              "material is read with layout: wide")
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


def _choose_sheet(names: Sequence[str], sheet: str | int | None, name: str, path: Path) -> str:
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
    """The workbook, opened with calamine (a fast reader); an unreadable file is a :class:`mrl.data.DataError`."""
    from python_calamine import CalamineWorkbook

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
    and what is an error); its :class:`mrl.data.Label` names the sheet and knows each row's Excel row.

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
    title = _choose_sheet(book.sheet_names, sheet, name, path)
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


def _filled(value: Any) -> bool:
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
    filled = [i for i, row in enumerate(grid) if any(_filled(v) for v in row)]
    if not filled:
        raise DataError(f"{label}: empty sheet")
    if not required:
        return filled[0]
    keys = {column_key(c) for c in required}
    for i in filled[:HEADER_SEARCH_ROWS]:
        if keys <= {column_key(v) for v in grid[i] if _filled(v)}:
            return i
    first = [str(v) for v in grid[filled[0]] if _filled(v)]
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
    if head > 0 and any(any(_filled(v) for v in row) for row in grid[:head]):
        titles = [str(v).strip() for row in grid[:head] for v in row if _filled(v)]
        log.info("%s: header on Excel row %d; %d row(s) above it skipped as titles (%s)", label, head + 1, head,
                 "; ".join(titles[:3]) + ("; ..." if len(titles) > 3 else ""))
    header_merges = [m for m in merged if m[0] <= head + 1 <= m[2]]
    for box in header_merges:
        if box[3] > box[1]:
            value = grid[box[0] - 1][box[1] - 1]
            raise DataError(f"{label}: header cell {_ref(box)} ({value!r}) is merged over {box[3] - box[1] + 1} "
                            f"columns; give each column its own header (unmerge the cells)")
    names = ["" if not _filled(v) else str(v).strip() for v in grid[head]]
    body = list(range(head + 1, len(grid)))
    skipped: dict[str, list[int]] = {"blank": [], "units": [], "total": []}
    # a header merged down over the row below makes that row part of the header (read as units)
    below = max((m[2] for m in header_merges), default=head + 1) - 1
    id_columns = [j for j, n in enumerate(names) if n and column_key(n) in {column_key(c) for c in required}
                  and column_key(n) != "content"]
    if body and (below > head or _units_row(grid[body[0]], names, id_columns)):
        units = {names[j]: str(v).strip() for j, v in enumerate(grid[body[0]]) if _filled(v) and names[j]}
        log.info("%s: Excel row %d read as units under the header (%s)", label, body[0] + 1,
                 ", ".join(f"{k}: {v}" for k, v in units.items()) or "empty")
        skipped["units"].append(body.pop(0))
    keep_columns = []
    for j, column in enumerate(names):
        filled = [r for r in body if _filled(grid[r][j])]
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
        if not any(_filled(v) for v in cells):
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
    filled = [(j, v) for j, v in enumerate(cells) if _filled(v) and names[j]]
    return bool(filled) and all(isinstance(v, str) and not _is_number(v) and len(v.strip()) <= _UNIT_TEXT_MAX
                                and not _is_total(v) for _, v in filled) and not any(
        _filled(cells[j]) for j in id_columns)


def _row_list(rows: Sequence[int], most: int = 8) -> str:
    text = ", ".join(str(r + 1) for r in rows[:most])
    return text + (f", ... ({len(rows)} in all)" if len(rows) > most else "")


# --------------------------------------------------------------------------------------------------------------
# Wide tables
# --------------------------------------------------------------------------------------------------------------
def _find(frame: pd.DataFrame, name: str) -> int | None:
    """Position of the column ``name`` (exact, else by :func:`mrl.data.column_key`)."""
    exact = [i for i, c in enumerate(frame.columns) if c == name]
    if exact:
        return exact[0]
    keyed = [i for i, c in enumerate(frame.columns) if column_key(c) == column_key(name)]
    return keyed[0] if keyed else None


def _letters(frame: pd.DataFrame, label: str) -> list[str]:
    """Sheet column letter of each column (by position for a CSV or Parquet table)."""
    letters = getattr(label, "letters", None)
    return list(letters) if letters else [column_letter(i) for i in range(frame.shape[1])]


def _material_positions(frame: pd.DataFrame, label: str, material_columns: str | Sequence[str],
                        named: set[int]) -> list[int]:
    """Positions of the columns ``material_columns`` names: a range of letters (``"B:K"``) or headers."""
    letters = _letters(frame, label)
    spec = [material_columns] if isinstance(material_columns, str) else list(material_columns)
    positions: list[int] = []
    for item in spec:
        item = str(item)
        span = re.fullmatch(r"\s*([A-Za-z]{1,3})\s*:\s*([A-Za-z]{1,3})\s*", item)
        if span:
            lo, hi = column_index(span.group(1)), column_index(span.group(2))
            inside = [i for i, letter in enumerate(letters) if lo <= column_index(letter) <= hi]
            if not inside:
                raise DataError(f"{label}: material_columns {item!r} holds no column (columns: "
                                f"{dict(zip(letters, map(str, frame.columns)))})")
            positions += inside
        else:
            found = _find(frame, item)
            if found is None:
                raise DataError(f"{label}: material_columns names {item!r}, which is not a column; columns: "
                                f"{list(map(str, frame.columns))}")
            positions.append(found)
    clash = sorted({str(frame.columns[i]) for i in positions} & {str(frame.columns[i]) for i in named})
    if clash:
        raise DataError(f"{label}: column(s) {clash} are named both as material_columns and as id, target, "
                        f"condition or ignored column")
    return list(dict.fromkeys(positions))


def wide_tables(table: LabelledTable, targets: Sequence[str] | None, conditions: Sequence[str] = (),
                id_column: str = "formula_id", material_columns: str | Sequence[str] | None = None,
                ignore_columns: Sequence[str] = (), duplicates: str = "error",
                rules: CellRules = DEFAULT_RULES) -> tuple[LabelledTable, LabelledTable]:
    """The long ``formulas`` and ``properties`` tables of a wide table (one row per formula, one column per
    material content); see the module docstring for which columns are materials.

    Empty material cells are 0 (absent). Rows with the same id are one formula measured at several conditions:
    their contents must agree. A formula without a target value is left out with a warning naming it.

    Raises:
        DataError: no ``id_column``, no target named (``targets`` None), a named column missing, a material cell
            that is not a number, negative or above 100, two columns of one material (unless
            ``duplicates="sum"``), rows of one formula with different contents; naming the key to set.
    """
    frame, label = table
    if targets is None:
        raise DataError(f"{label}: a wide sheet needs its target named (target=COLUMN): every numeric column could "
                        f"be a material; columns: {list(map(str, frame.columns))}")
    id_pos = _find(frame, id_column)
    if id_pos is None:
        raise DataError(f"{label}: no id column {id_column!r} in the wide sheet; set id_column to the column "
                        f"naming each formula; columns: {list(map(str, frame.columns))}")
    named: dict[int, str] = {id_pos: "formula_id"}
    for role, names in (("target", targets), ("condition", conditions), ("ignored", ignore_columns),
                        ("reserved", [c for c in RESERVED_COLUMNS if c != "formula_id"])):
        for name in names:
            pos = _find(frame, name)
            if pos is None:
                if role == "reserved":
                    continue
                key = {"target": "target", "condition": "conditions", "ignored": "ignore_columns"}[role]
                raise DataError(f"{label}: {key} names {name!r}, which is not a column; columns: "
                                f"{list(map(str, frame.columns))}")
            if pos in named:
                raise DataError(f"{label}: column {frame.columns[pos]!r} named twice (as {named[pos]!r} and {role})")
            named[pos] = name if role != "ignored" else "\x00ignored"
    letters = _letters(frame, label)
    if material_columns:
        materials = _material_positions(frame, label, material_columns, set(named))
        why = f"material_columns {material_columns!r}"
    else:
        materials = [i for i in range(frame.shape[1]) if i not in named and _looks_numeric(frame.iloc[:, i])]
        why = "every numeric column not named as id, target, condition or ignore_columns"
    left = [f"{letters[i]} {frame.columns[i]!r}" for i in range(frame.shape[1]) if i not in named and i not in
            materials and frame.iloc[:, i].notna().any()]
    if left:
        log.info("%s: column(s) %s are not materials (%s) and are ignored", label, ", ".join(left), why)
    if not materials:
        raise DataError(f"{label}: no material columns ({why}); set material_columns (e.g. \"B:K\")")
    wide = frame.iloc[:, materials].copy()
    wide.columns = [str(c).strip() for c in wide.columns]
    contents = np.zeros((len(frame), len(materials)))
    for k, pos in enumerate(materials):
        name = str(frame.columns[pos]).strip()
        sub = Label(str(label), getattr(label, "rows", None), {name: letters[pos]}, getattr(label, "decimal", None))
        column = pd.DataFrame({name: frame.iloc[:, pos].to_numpy()})
        contents[:, k] = np.nan_to_num(_require_numeric(column, name, sub, allow_nan=True, rules=rules))
        bad = (contents[:, k] < 0) | (contents[:, k] > 100 * (1 + SUM_TOLERANCE))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{label}: {_row(label, i)}, column {letters[pos]} {frame.columns[pos]!r}: "
                            f"{contents[i, k]:g} cannot be a content (it is taken as a material: {why}); name it "
                            f"as the target, in conditions or in ignore_columns, or set material_columns")
    names = list(wide.columns)
    mangled = [n for n in names if re.fullmatch(r"(.+)\.\d+", n) and re.fullmatch(r"(.+)\.\d+", n).group(1) in names]
    if mangled and getattr(label, "letters", None) is None:  # pandas renames a CSV's second 'M3' column to 'M3.1'
        raise DataError(f"{label}: column {mangled[0]!r} looks like a second {mangled[0].rsplit('.', 1)[0]!r} "
                        f"column (renamed by the CSV reader); merge the two columns or rename one")
    if len(set(names)) < len(names):
        first = {n: letters[materials[i]] for i, n in reversed(list(enumerate(names)))}
        dup = next(i for i, n in enumerate(names) if names.index(n) != i)
        if duplicates != "sum":
            raise DataError(f"{label}: material {names[dup]!r} has two columns ({first[names[dup]]} and "
                            f"{letters[materials[dup]]}); merge them, or set duplicates: sum to add them up")
        log.warning("%s: material columns with one name summed (%s)", label, names[dup])
    shown = [f"{letters[p]} {n}" for p, n in zip(materials, names)]
    log.info("%s: %d material column(s) (%s): %s", label, len(names), why,
             ", ".join(shown[:40]) + (f", ... ({len(shown)} in all)" if len(shown) > 40 else ""))
    ids = frame.iloc[:, id_pos]
    keys = ids.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v).astype(str).str.strip()
    empty = ids.isna().to_numpy() | (keys == "").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise DataError(f"{label}: {_row(label, i)}, column {letters[id_pos]} {frame.columns[id_pos]!r}: empty "
                        f"formula id")
    first_row = pd.Series(np.arange(len(keys))).groupby(keys.to_numpy()).transform("min").to_numpy()
    differs = ~np.isclose(contents, contents[first_row]).all(axis=1)
    if differs.any():
        i = int(np.flatnonzero(differs)[0])
        raise DataError(f"{label}: {_row(label, i)}: formula {keys.iloc[i]!r} has other contents than at "
                        f"{_row(label, int(first_row[i]))}; one formula's rows (several conditions) must list the same "
                        f"contents")
    once = np.flatnonzero(first_row == np.arange(len(keys)))
    rows, cols = np.nonzero(contents[once] != 0)
    forms = pd.DataFrame({"formula_id": keys.to_numpy()[once][rows], "material_id": np.asarray(names)[cols],
                          "content": contents[once][rows, cols]}, columns=list(FORMULA_COLUMNS))
    src = getattr(label, "rows", None)
    forms_label = Label(str(label), [f"{_row(label, int(once[r]))}, column {letters[materials[c]]} ({names[c]!r})"
                                     for r, c in zip(rows, cols)])
    props = pd.DataFrame({"formula_id": keys.to_numpy()})
    for pos, name in named.items():
        if name not in ("formula_id", "\x00ignored"):
            props[name] = frame.iloc[:, pos].to_numpy()
    props_label = Label(str(label), src, {n: letters[p] for p, n in named.items()}, getattr(label, "decimal", None))
    if targets:
        missing = props[list(targets)].map(lambda v: not _filled(v)).any(axis=1).to_numpy()
        if missing.any():
            dropped = pd.unique(props["formula_id"][missing])
            log.warning("%s: %d formula row(s) without a %s value are left out: %s%s", label, int(missing.sum()),
                        "/".join(targets), ", ".join(map(repr, dropped[:5])), ", ..." if len(dropped) > 5 else "")
            keep = np.flatnonzero(~missing)
            props, props_label = props.iloc[keep].reset_index(drop=True), props_label.subset(keep)
    return LabelledTable(forms, forms_label), LabelledTable(props, props_label)


def _row(label: str, i: int) -> str:
    """Where data row ``i`` of a table is (``Excel row 7``, or ``row 5 (line 7)`` of a text file)."""
    rows = getattr(label, "rows", None)
    return rows[i] if rows else _row_text(label, i)


# --------------------------------------------------------------------------------------------------------------
# Data sources
# --------------------------------------------------------------------------------------------------------------
def _workbook_sheet(names: Sequence[str], key: str, sheets: Mapping[str, str], path: Path) -> str | None:
    """The sheet holding table ``key``: ``sheets[key]`` (must exist), else the sheet called ``key`` (any case)."""
    if key in sheets:
        return _choose_sheet(names, sheets[key], key, path)
    same = [s for s in names if s.strip().casefold() == key]
    return same[0] if same else None


def source_tables(source: str | Path | pd.DataFrame | LabelledTable, *, layout: str = "long", sheets: Mapping[str, str] | None = None,
                  sheet: str | int | None = None, id_column: str = "formula_id",
                  material_columns: str | Sequence[str] | None = None, ignore_columns: Sequence[str] = (),
                  targets: Sequence[str] | str | None = None, conditions: Sequence[str] = (),
                  duplicates: str = "error", rules: CellRules = DEFAULT_RULES, read: dict | None = None
                  ) -> tuple[Any, Any, Any, Sequence[str] | str | None]:
    """``(formulas, properties, materials, targets)`` of a whole data set, for :func:`mrl.data.load_formulas`.

    ``source`` is a folder holding ``formulas``/``properties`` (and optionally ``materials``) tables (see
    :func:`mrl.data.find_table`: two versions of one table are an error naming the newest), an ``.xlsx`` workbook
    (sheets ``formulas``/``properties``/``materials`` in any case, or as ``sheets`` maps them), or with
    ``layout="wide"`` a wide table: a workbook's ``sheet`` (default: the one called ``formulas``, else the only
    sheet), a CSV/Parquet file, a folder's ``formulas`` table, or a table already read (see :func:`wide_tables`).
    """
    read = dict(read or {})
    sheets = dict(sheets or {})
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    unknown = sorted(set(sheets) - set(SHEETS))
    if unknown:
        raise ValueError(f"sheets: unknown table(s) {unknown}; map any of {list(SHEETS)} to sheet names")
    names = [t for t in ((targets,) if isinstance(targets, str) else targets or ())]
    if isinstance(source, (pd.DataFrame, LabelledTable)):  # a table already read: only a wide one is a data set
        if layout != "wide":
            raise ValueError("one table holds a whole data set only with layout='wide'; pass the formulas and "
                             "properties tables")
        table = source if isinstance(source, LabelledTable) else LabelledTable(*read_table(source, "wide"))
        forms, props = wide_tables(table, names if targets is not None else None, conditions, id_column,
                                   material_columns, ignore_columns, duplicates, rules)
        return forms, props, None, names
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"data not found: {path}")
    if path.is_dir():
        if sheets:
            raise ValueError(f"{path}: sheets maps the sheets of one workbook; a folder's tables are its files "
                             f"formulas.*, properties.*, materials.*")
        found = {key: find_table(path, key) for key in SHEETS}
        if found["formulas"] is None or (layout == "long" and found["properties"] is None):
            need = "formulas" if layout == "wide" else "formulas and properties"
            raise FileNotFoundError(f"{path}: needs {need} tables ({need.replace(' and ', ', ')}.*, one of "
                                    f"{', '.join(TABLE_SUFFIXES)}); found {sorted(p.name for p in path.iterdir())}")
        if layout == "long":
            return found["formulas"], found["properties"], found["materials"], targets
        if found["formulas"].name.lower().endswith(".xlsx"):
            table = read_sheet(found["formulas"], sheet, "formulas", (id_column,), unique=False, hint=_ID_HINT)
        else:
            table = read_table(found["formulas"], "wide", **read)
        forms, props = wide_tables(table, names if targets is not None else None, conditions, id_column,
                                   material_columns, ignore_columns, duplicates, rules)
        return forms, props, found["materials"], names
    is_book = path.name.lower().endswith(".xlsx")
    if layout == "long":
        if not is_book:
            raise DataError(f"{path}: one table cannot hold a long-format data set; give a folder with formulas "
                            f"and properties tables, a workbook with those sheets, or set layout: wide for a sheet "
                            f"with one row per formula and one column per material")
        available = sheet_names(path)
        chosen = {key: _workbook_sheet(available, key, sheets, path) for key in SHEETS}
        missing = [key for key in ("formulas", "properties") if chosen[key] is None]
        if missing:
            raise DataError(f"{path}: no sheet(s) {missing}; sheets: {available}; name them with sheets: "
                            f"{{{', '.join(f'{k}: SHEET' for k in missing)}}}, or set layout: wide for one sheet "
                            f"with one row per formula")
        tables = {key: read_sheet(path, chosen[key], key, _required(key), hint=_WIDE_HINT if key == "formulas" else "")
                  if chosen[key] else None for key in SHEETS}
        return tables["formulas"], tables["properties"], tables["materials"], targets
    if is_book:
        available = sheet_names(path)
        if sheet is None and len(available) > 1 and not any(s.strip().casefold() == "formulas" for s in available):
            raise DataError(f"{path}: {len(available)} sheets {available} and none called 'formulas'; set sheet to "
                            f"the wide sheet")
        table = read_sheet(path, sheet, "formulas", (id_column,), unique=False, hint=_ID_HINT)
        mats_sheet = _workbook_sheet(available, "materials", sheets, path)
        mats = read_sheet(path, mats_sheet, "materials", _required("materials")) if mats_sheet else None
    else:
        table, mats = read_table(path, "wide", **read), None
    forms, props = wide_tables(table, names if targets is not None else None, conditions, id_column,
                               material_columns, ignore_columns, duplicates, rules)
    return forms, props, mats, names


def _required(key: str) -> Sequence[str]:
    return REQUIRED_COLUMNS[key]


def truth_table(source: str | Path) -> pd.DataFrame | None:
    """The hidden per-material truth of a synthetic lab written to disk (``truth`` table of a folder or sheet of a
    workbook), else None."""
    path = Path(source)
    if path.is_dir():
        found = find_table(path, "truth")
        return read_table(found, "truth")[0] if found else None
    if path.name.lower().endswith(".xlsx") and "truth" in [s.casefold() for s in sheet_names(path)]:
        return read_sheet(path, "truth", "truth", ("material_id",)).frame
    return None


def write_workbook(tables: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """Write tables as the sheets of one ``.xlsx`` workbook (atomically), one sheet per key, in order."""
    from mrl.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for name, frame in tables.items():
                frame.to_excel(writer, sheet_name=name, index=False)
    return path


__all__ = ["LAYOUTS", "SHEETS", "column_index", "column_letter", "read_sheet", "sheet_names", "sheet_table",
           "source_tables", "truth_table", "wide_tables", "write_workbook", "FORMULA_COLUMNS"]
