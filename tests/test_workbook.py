"""A lab's own spreadsheets (issue 24, deliverables 1-2; issue 29, point 7): one workbook, a folder of workbooks,
wide sheets, and the spreadsheet reality of title rows, units, blanks, totals, odd cells and merged headers; every
entry (Python, ``data:`` in params, ``mrl validate``) reaches the same reader."""
from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrl import cli
from mrl.cells import CellRules, parse_number
from mrl.data import FormulaData, load_formulas
from mrl.params import RunParams
from mrl.runs import resolve_data
from mrl.tables import DataError, LabelledTable, column_index, column_letter, sheet_table
from mrl.workbook import write_workbook

FORMS = pd.DataFrame({"formula_id": ["A", "A", "B", "B", "B", "C", "C"],
                      "material_id": ["W", "X", "W", "X", "Y", "W", "Y"],
                      "content": [90.0, 10.0, 80.0, 15.0, 5.0, 70.0, 30.0]})
PROPS = pd.DataFrame({"formula_id": ["A", "B", "C"], "viscosity": [10.0, 20.0, 40.0]})
MATS = pd.DataFrame({"material_id": ["W", "X", "Y"], "name": ["water", "xanthan", "glycerol"]})


@pytest.fixture
def notes(caplog):
    caplog.set_level(logging.INFO, logger="mrl.data")
    return caplog


def _book(path: Path, sheets: dict[str, list[list]], merges: dict[str, list[str]] | None = None) -> Path:
    """A workbook whose sheets hold the given rows (row 1 first), with merged ranges."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
        for ref in (merges or {}).get(title, []):
            sheet.merge_cells(ref)
    book.save(path)
    return path


def _rows(frame: pd.DataFrame) -> list[list]:
    return [list(frame.columns), *frame.astype(object).values.tolist()]


def _lab_book(path: Path, names=("Formulas", "PROPERTIES", "materials")) -> Path:
    return _book(path, dict(zip(names, (_rows(FORMS), _rows(PROPS), _rows(MATS)))))


def _wide_rows() -> list[list]:
    return [["Formula ID", "W", "X", "Y", "viscosity [cP]", "T (°C)", "notes"],
            ["A", 90, 10, None, 10.0, 25, "first"],
            ["B", 80, 15, 5, 20.0, 25, None],
            ["C", 70, None, 30, 40.0, 25, "thick"],
            ["C", 70, None, 30, 30.0, 40, None]]


# ----- one loader: workbooks, folders, stale files ------------------------------------------------------------
def test_one_workbook_any_sheet_case_through_python_and_params(tmp_path, notes):
    book = _lab_book(tmp_path / "lab.xlsx")
    data = load_formulas(book, targets="viscosity")
    assert data.n_formulas == 3 and list(data.material_ids) == ["W", "X", "Y"]
    assert data.materials["name"].tolist() == ["water", "xanthan", "glycerol"]
    assert "sheet 'Formulas': header on Excel row 1" in notes.text
    via_params, truth = resolve_data(RunParams(data=str(book), target="viscosity"))
    assert via_params.content_matrix().toarray().tolist() == data.content_matrix().toarray().tolist()
    assert truth is None


def test_other_sheet_names_through_a_sheets_mapping(tmp_path):
    book = _lab_book(tmp_path / "lab.xlsx", names=("Rezepturen", "Messungen", "Rohstoffe"))
    with pytest.raises(DataError, match=r"no sheet\(s\) \['formulas', 'properties'\].*sheets: \{formulas: SHEET"):
        load_formulas(book, targets="viscosity")
    params = RunParams.from_dict({"data": str(book), "target": "viscosity",
                                  "sheets": {"formulas": "rezepturen", "properties": "Messungen",
                                             "materials": "Rohstoffe"}})
    data, _ = resolve_data(params)
    assert data.n_formulas == 3 and data.materials["name"].iloc[1] == "xanthan"


def test_a_folder_of_workbooks_is_read(tmp_path):
    for name, frame in (("formulas", FORMS), ("properties", PROPS), ("materials", MATS)):
        write_workbook({name: frame}, tmp_path / f"{name}.xlsx")
    data = load_formulas(tmp_path, targets="viscosity")
    assert data.n_formulas == 3 and data.materials["name"].iloc[2] == "glycerol"
    assert resolve_data(RunParams(data=str(tmp_path)))[0].n_samples == 3


def test_a_stale_table_is_refused_through_every_entry(tmp_path, capsys):
    FORMS.to_parquet(tmp_path / "formulas.parquet")
    FORMS.to_csv(tmp_path / "formulas.csv", index=False)
    PROPS.to_csv(tmp_path / "properties.csv", index=False)
    os.utime(tmp_path / "formulas.parquet", (1_600_000_000, 1_600_000_000))
    stale = r"2 'formulas' tables: .*formulas\.csv is the newest"
    with pytest.raises(DataError, match=stale):
        load_formulas(tmp_path)
    with pytest.raises(DataError, match=stale):
        resolve_data(RunParams(data=str(tmp_path)))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["validate", str(tmp_path)])
    assert exit_.value.code == 2


def test_a_single_long_table_says_what_to_give(tmp_path):
    FORMS.to_csv(tmp_path / "formulas.csv", index=False)
    with pytest.raises(DataError, match="one table cannot hold a long-format data set.*layout: wide"):
        load_formulas(tmp_path / "formulas.csv")


# ----- wide sheets --------------------------------------------------------------------------------------------
def test_a_wide_sheet_lists_its_materials_and_keeps_conditions(tmp_path, notes):
    book = _book(tmp_path / "wide.xlsx", {"Sheet1": _wide_rows()})
    data = load_formulas(book, targets="viscosity", conditions=["T"], layout="wide", ignore_columns=["notes"])
    assert list(data.material_ids) == ["W", "X", "Y"] and data.n_formulas == 3 and data.n_samples == 4
    assert data.content_matrix().toarray()[2].tolist() == pytest.approx([0.7, 0.0, 0.3])
    assert data.properties["T"].tolist() == [25, 25, 25, 40]
    assert "3 material column(s) (every numeric column not named" in notes.text and "B W, C X, D Y" in notes.text
    assert "'Formula ID' as 'formula_id'" not in notes.text  # the id column is named by id_column, matched by key


def test_wide_material_columns_as_a_range_or_a_list_through_params(tmp_path, notes):
    rows = _wide_rows()
    for row in rows:
        row.insert(4, "pH" if row[0] == "Formula ID" else 7.0)  # a property column that is not a material
    book = _book(tmp_path / "wide.xlsx", {"formulas": rows})
    params = RunParams.from_dict({"data": str(book), "layout": "wide", "target": "viscosity", "conditions": "T",
                                  "material_columns": "B:D"})
    assert params.material_columns == ["B:D"]
    data, _ = resolve_data(params)
    assert list(data.material_ids) == ["W", "X", "Y"]
    assert "E 'pH'" in notes.text and "are not materials" in notes.text
    listed = load_formulas(book, targets="viscosity", conditions="T", layout="wide", material_columns=["W", "y"])
    assert list(listed.material_ids) == ["W", "Y"]


def test_an_ambiguous_wide_sheet_is_an_error_naming_the_key(tmp_path):
    rows = _wide_rows()
    for row in rows:
        row.insert(4, "density" if row[0] == "Formula ID" else 1050.0)
    book = _book(tmp_path / "wide.xlsx", {"formulas": rows})
    with pytest.raises(DataError, match=r"needs its target named \(target=COLUMN\)"):
        load_formulas(book, layout="wide")
    with pytest.raises(DataError, match=r"Excel row 2, column E 'density': 1050 cannot be a content.*ignore_columns"):
        load_formulas(book, targets="viscosity", conditions="T", layout="wide")
    with pytest.raises(DataError, match=r"no header row holding column\(s\) \['code'\].*set id_column"):
        load_formulas(book, targets="viscosity", layout="wide", id_column="code")
    with pytest.raises(DataError, match="2 sheets .* set sheet"):
        load_formulas(_book(tmp_path / "two.xlsx", {"a": rows, "b": rows}), targets="viscosity", layout="wide")


def test_duplicate_material_columns_are_named_or_summed(tmp_path, caplog):
    rows = [["formula_id", "W", "X", "X", "viscosity"], ["A", 80, 10, 10, 1.0], ["B", 90, 5, 5, 2.0]]
    book = _book(tmp_path / "wide.xlsx", {"formulas": rows})
    with pytest.raises(DataError, match=r"material 'X' has two columns \(C and D\).*duplicates: sum"):
        load_formulas(book, targets="viscosity", layout="wide")
    data = load_formulas(book, targets="viscosity", layout="wide", duplicates="sum")
    assert data.content_matrix().toarray()[0].tolist() == pytest.approx([0.8, 0.2])


def test_a_wide_formula_without_measurement_is_named_at_warning(tmp_path, caplog):
    rows = _wide_rows()[:3] + [["D", 50, 50, None, None, 25, None]]
    book = _book(tmp_path / "wide.xlsx", {"formulas": rows})
    data = load_formulas(book, targets="viscosity", layout="wide", ignore_columns=["notes", "T"])
    assert data.n_formulas == 2
    assert any(r.levelno == logging.WARNING and "without a viscosity value are left out: 'D'" in r.getMessage()
               for r in caplog.records)


# ----- spreadsheet reality ------------------------------------------------------------------------------------
def test_title_rows_units_blanks_totals_and_odd_cells_are_read_with_notes(tmp_path, notes):
    rows = [["Lab book 2024"], [],
            ["formula_id", "material_id", None, "content (%)"],
            [None, None, None, "%"],
            ["A", "W", None, "90"],
            ["A", "X", None, "10%"],
            [],
            ["B", "W", None, "80,5"],
            ["B", "X", None, 19.5],
            [None, "Total", None, 190]]
    book = _book(tmp_path / "lab.xlsx", {"formulas": rows, "properties": [["formula_id", "viscosity"], ["A", 1],
                                                                           ["B", 2]]},
                 merges={"formulas": ["A1:D1"]})
    data = load_formulas(book)
    assert data.content_matrix().toarray().ravel().tolist() == pytest.approx([0.9, 0.1, 0.805, 0.195])
    text = notes.text
    assert "header on Excel row 3; 2 row(s) above it skipped as titles (Lab book 2024)" in text
    assert "Excel row 4 read as units under the header (content (%): %)" in text
    assert "1 blank row(s) skipped (Excel rows 7)" in text and "blank column(s) C skipped" in text
    assert "Excel row 10 ('Total') skipped: a total row" in text
    assert "'content (%)' as 'content'" in text
    assert "column D 'content': 1 cell(s) read as percent" in text and "Excel row 6" in text
    assert "1 cell(s) with a decimal comma read as numbers" in text


@pytest.mark.parametrize("cell, cause, rules, value", [
    ("<0.1", "below a detection limit; write a value, or set below_limit", dict(below_limit="half"), 0.05),
    ("tr", "a trace marker; write the amount.*text_values", dict(text_values={"TR": 0.0}), 0.0),
    ("n.d.", "'not detected'", dict(text_values={"n.d.": 0.0}), 0.0),
    ("q.s.", "'quantum satis' \\(the balance\\)", None, None),
    ("1.234,5", "looks like a thousands separator", None, None),
    (datetime(2024, 3, 1), "a date or time .*format the column as Number", None, None),
])
def test_a_bad_cell_is_named_with_sheet_excel_row_column_and_cause(tmp_path, cell, cause, rules, value):
    props = [["Measurements"], ["formula_id", "viscosity"], ["A", 1.0], ["B", cell], ["C", 3.0]]
    book = _book(tmp_path / "lab.xlsx", {"formulas": _rows(FORMS), "properties": props})
    with pytest.raises(DataError, match=rf"lab\.xlsx, sheet 'properties': row 1 \(Excel row 4\), column B "
                                        rf"'viscosity': value .* is not a number \({cause}"):
        load_formulas(book)
    if rules:
        assert load_formulas(book, **rules).target_values()[1] == pytest.approx(value)


def test_merged_cells_in_the_header_or_data_are_named(tmp_path):
    rows = [["formula_id", "material_id", "content", None], ["A", "W", 90, None], ["A", "X", 10, None]]
    props = [["formula_id", "viscosity"], ["A", 1.0]]
    book = _book(tmp_path / "a.xlsx", {"formulas": rows, "properties": props}, merges={"formulas": ["C1:D1"]})
    with pytest.raises(DataError, match=r"header cell C1:D1 \('content'\) is merged over 2 columns"):
        load_formulas(book)
    book = _book(tmp_path / "b.xlsx", {"formulas": rows, "properties": props}, merges={"formulas": ["A2:A3"]})
    with pytest.raises(DataError, match=r"merged cells A2:A3 in the data"):
        load_formulas(book)
    rows = [["formula_id", "material_id", "content", None], ["A", "W", 90, "x"]]
    with pytest.raises(DataError, match=r"column D has values \(first 'x' at Excel row 2\) but no header"):
        load_formulas(_book(tmp_path / "c.xlsx", {"formulas": rows, "properties": props}))


def test_no_header_row_says_what_it_looked_for(tmp_path):
    book = _book(tmp_path / "lab.xlsx", {"formulas": [["code", "mat", "pct"], ["A", "W", 100]],
                                         "properties": _rows(PROPS)})
    with pytest.raises(DataError, match=r"sheet 'formulas': no header row holding column\(s\) \['formula_id', "
                                        r"'material_id', 'content'\].*Excel row 1 holds \['code', 'mat', 'pct'\]"):
        load_formulas(book)


# ----- issue 29, point 7 ----------------------------------------------------------------------------------------
def test_a_stray_percent_no_longer_blames_row_0_and_the_first_bad_cell_is_named(tmp_path, notes):
    (tmp_path / "formulas.csv").write_text("formula_id;material_id;content\nA;W;88,5\nA;X;11,5%\nB;W;90\nB;X;q.s.\n")
    (tmp_path / "properties.csv").write_text("formula_id,viscosity\nA,1\nB,2\n")
    with pytest.raises(DataError, match=r"formulas\.csv: row 3 \(line 5\), column 'content': value 'q\.s\.' is not a "
                                        r"number \('quantum satis'"):
        load_formulas(tmp_path)
    (tmp_path / "formulas.csv").write_text("formula_id;material_id;content\nA;W;88,5\nA;X;11,5%\nB;W;90\nB;X;10\n")
    data = load_formulas(tmp_path)
    assert data.content_matrix().toarray()[0].tolist() == pytest.approx([0.885, 0.115])
    assert "1 cell(s) read as percent ('12%' -> 12); the first: '11,5%' at row 1 (line 3)" in notes.text


def test_decimal_sep_and_sheet_are_params_and_set_keys(tmp_path, capsys):
    (tmp_path / "wide.csv").write_text("formula_id|W|X|viscosity\nA|90|10|1,5\nB|80|20|2,5\n")
    params = cli._params(None, [f"data={tmp_path / 'wide.csv'}", "layout=wide", "target=viscosity", "sep=|",
                                "decimal=,"])
    assert (params.sep, params.decimal) == ("|", ",")
    data, _ = resolve_data(params)
    assert data.target_values().tolist() == [1.5, 2.5]
    book = _book(tmp_path / "two.xlsx", {"notes": [["x"]], "Rezepte": [["formula_id", "W", "X", "viscosity"],
                                                                       ["A", 90, 10, 1.0], ["B", 80, 20, 2.0]]})
    data, _ = resolve_data(RunParams.from_dict({"data": str(book), "layout": "wide", "target": "viscosity",
                                                "sheet": "rezepte"}))
    assert data.n_formulas == 2
    with pytest.raises(ValueError, match="decimal must be one of"):
        RunParams.from_dict({"decimal": ";"})


def test_unmeasured_formulas_are_named_and_counted_at_warning(tmp_path, caplog):
    props = PROPS.iloc[:2]
    load_formulas(FORMS, props)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1 formula(s) have no measurement" in m and "left out: 'C'" in m for m in warning), warning


def test_parse_number_rules():
    assert parse_number("12 %") == (12.0, "percent")
    assert parse_number("1,5") == (1.5, "decimal comma")
    with pytest.raises(ValueError, match="the decimal mark here is '.'"):
        parse_number("1,5", decimal=".")
    with pytest.raises(ValueError, match="decimal comma"):
        parse_number("1,5", CellRules(decimal="."))
    assert parse_number("<0,2", CellRules(below_limit="limit")) == (0.2, "below limit")
    with pytest.raises(ValueError, match="above a measuring limit"):
        parse_number(">1000")
    assert column_letter(0) == "A" and column_letter(27) == "AB" and column_index("ab") == 27


# ----- mrl data / validate / train on a workbook --------------------------------------------------------------
def test_mrl_data_writes_one_workbook_that_validates_and_trains(tmp_path, monkeypatch, capsys):
    from mrl.synth import PRESETS, LabPreset

    monkeypatch.setitem(PRESETS, "tiny", LabPreset("tiny", n_materials=100, n_formulas=80, max_ingredients=8))
    monkeypatch.chdir(tmp_path)
    cli.main(["data", "--preset", "tiny", "--out", "lab.xlsx"])
    assert openpyxl.load_workbook("lab.xlsx", read_only=True).sheetnames == ["formulas", "properties", "materials"]
    capsys.readouterr()
    cli.main(["validate", "lab.xlsx", "--set", "target=viscosity"])
    out = capsys.readouterr().out
    assert "read: lab.xlsx, sheet 'formulas': header on Excel row 1" in out
    assert "target: viscosity; transform: log10" in out and "80 formulas" in out
    cli.main(["train", "--set", "data=lab.xlsx", "target=viscosity", "steps=3", "eval_every=3", "name=wb",
              "--quiet"])
    assert (tmp_path / "runs" / "wb" / "metrics.json").exists()
    with pytest.raises(SystemExit):
        cli.main(["data", "--help"])
    assert "small: 3000 formulas" in capsys.readouterr().out


# ----- fuzz: any messy grid reads to a table and a FormulaData, or a DataError ----------------------------------
CELLS = st.one_of(st.none(), st.sampled_from(["", " ", "Total", "%", "12%", "1,5", "<0.1", "tr", "n.d.", "x", "A",
                                              "W", "cP"]),
                  st.floats(-1, 200, allow_nan=False), st.integers(0, 120), st.just(datetime(2024, 1, 1)))


@st.composite
def messy_grids(draw) -> tuple[list[list], list[tuple[int, int, int, int]]]:
    """The three-column formulas of FORMS with title rows, a units row, blank rows, odd cells and merges."""
    rows = _rows(FORMS)
    grid = [[draw(CELLS)] for _ in range(draw(st.integers(0, 3)))] + [rows[0]]
    if draw(st.booleans()):
        grid.append([None, None, "%"])
    for row in rows[1:]:
        grid.append(list(row))
        if draw(st.integers(0, 5)) == 0:
            grid.append([None, None, None])
    for _ in range(draw(st.integers(0, 3))):
        r, c = draw(st.integers(0, len(grid) - 1)), draw(st.integers(0, 3))
        grid[r] = grid[r] + [None] * (c + 1 - len(grid[r]))
        grid[r][c] = draw(CELLS)
    merged = []
    if draw(st.booleans()):
        r = draw(st.integers(1, len(grid)))
        c = draw(st.integers(1, 3))
        merged.append((r, c, r + draw(st.integers(0, 1)), c + draw(st.integers(0, 1))))
    return grid, merged


@st.composite
def messy_wide_grids(draw) -> list[list]:
    """A wide sheet (id, three materials, target, notes) with odd cells anywhere and maybe a duplicate header."""
    header = ["formula_id", "W", "X", draw(st.sampled_from(["Y", "X", "", "viscosity (cP)"])), "viscosity", "notes"]
    grid = [header] + [[f"F{i}", 80.0, 15.0, 5.0, float(i + 1), "ok"] for i in range(4)]
    for _ in range(draw(st.integers(0, 4))):
        r, c = draw(st.integers(0, len(grid) - 1)), draw(st.integers(0, 5))
        grid[r][c] = draw(CELLS)
    return grid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_wide_grids(), st.sampled_from([None, "B:D", ["W", "X"]]), st.sampled_from(["error", "sum"]))
def test_fuzz_messy_wide_sheets_read_or_raise_data_error(grid, material_columns, duplicates):
    try:
        table = sheet_table(grid, "w.xlsx, sheet 'formulas'", ("formula_id",), unique=False)
        data = load_formulas(table, targets="viscosity", layout="wide", material_columns=material_columns,
                             ignore_columns=["notes"] if any(str(c) == "notes" for c in grid[0]) else (),
                             duplicates=duplicates)
    except DataError as err:
        assert "w.xlsx" in str(err)
        return
    assert isinstance(data, FormulaData) and data.n_formulas >= 1
    assert np.allclose(np.asarray(data.content_matrix().sum(axis=1)).ravel(), 1.0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_grids())
def test_fuzz_messy_sheets_read_or_raise_data_error(case):
    grid, merged = case
    try:
        table = sheet_table(grid, "f.xlsx, sheet 'formulas'", ("formula_id", "material_id", "content"), merged)
        data = load_formulas(table, LabelledTable(PROPS, "props"), duplicates="sum")
    except DataError as err:
        assert "f.xlsx" in str(err) or "props" in str(err)
        return
    assert isinstance(data, FormulaData)
    sums = np.asarray(data.content_matrix().sum(axis=1)).ravel()
    assert np.allclose(sums, 1.0)


def test_predict_and_design_inputs_go_through_the_same_sheet_reader(tmp_path):
    from mrl.predict import prediction_input

    rows = [["New gels"], ["formula_id", "material_id", "content (%)"], [None, None, "%"], ["N1", "W", "90,5"],
            ["N1", "X", "9.5%"], [None, "Total", 100]]
    book = _book(tmp_path / "new.xlsx", {"new": rows})
    data = prediction_input(book)
    assert data.formula_ids.tolist() == ["N1"] and data.content_matrix().toarray().tolist() == [[0.905, 0.095]]
    formula, measured = cli._design_formula(tmp_path, str(book))
    assert formula[["material_id", "content"]].values.tolist() == [["W", 90.5], ["X", 9.5]] and measured is None
