"""Spreadsheets as labs keep them: workbooks, sheets with title rows and units, wide formula sheets.

What a data set's files are, each feeding the long-format loader :func:`mrl.data.load_formulas`:

* One sheet is read by :func:`mrl.tables.read_sheet` (title rows, units rows, blanks, totals, merged cells).
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

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from mrl.cells import DEFAULT_RULES, CellRules, _looks_numeric, column_key
from mrl.io import atomic_path
from mrl.tables import (
    FORMULA_COLUMNS,
    REQUIRED_COLUMNS,
    RESERVED_COLUMNS,
    SHEETS,
    SUM_TOLERANCE,
    TABLE_SUFFIXES,
    DataError,
    Label,
    LabelledTable,
    choose_sheet,
    column_index,
    column_letter,
    filled_cell,
    find_table,
    read_sheet,
    read_table,
    require_numeric,
    row_text,
    sheet_names,
)

log = logging.getLogger("mrl.data.workbook")  # a child of mrl.data: one logger tree for reading data

LAYOUTS = ("long", "wide")
_ID_HINT = "set id_column to the header of the column naming each formula"
_WIDE_HINT = ("case and a unit in brackets do not matter; a sheet with one row per formula and one column per "
              "material is read with layout: wide")


# --------------------------------------------------------------------------------------------------------------
# Wide tables
# --------------------------------------------------------------------------------------------------------------
def _find(frame: pd.DataFrame, name: str) -> int | None:
    """Position of the column ``name`` (exact, else by :func:`mrl.cells.column_key`)."""
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
        contents[:, k] = np.nan_to_num(require_numeric(column, name, sub, allow_nan=True, rules=rules))
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
        missing = props[list(targets)].map(lambda v: not filled_cell(v)).any(axis=1).to_numpy()
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
    return rows[i] if rows else row_text(label, i)


# --------------------------------------------------------------------------------------------------------------
# Data sources
# --------------------------------------------------------------------------------------------------------------
def _workbook_sheet(names: Sequence[str], key: str, sheets: Mapping[str, str], path: Path) -> str | None:
    """The sheet holding table ``key``: ``sheets[key]`` (must exist), else the sheet called ``key`` (any case)."""
    if key in sheets:
        return choose_sheet(names, sheets[key], key, path)
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
    :func:`mrl.tables.find_table`: two versions of one table are an error naming the newest), an ``.xlsx`` workbook
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
    path = Path(path)
    with atomic_path(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for name, frame in tables.items():
                frame.to_excel(writer, sheet_name=name, index=False)
    return path


