"""Inputs a lab really has, and inputs that must never train the wrong thing silently (issue 11).

Each test names the case of the issue it covers; every bad input is a DataError naming file, row/line and column.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mrl.data import load_formulas, material_usage
from mrl.tables import DataError, find_table, read_table

INPUTS = Path(__file__).parent / "fixtures" / "inputs"
FORMS_CSV = "formula_id,material_id,content\nA,W,90\nA,X,10\nB,W,80\nB,X,15\nB,Y,5\n"


def _files(tmp_path: Path, props: str, forms: str = FORMS_CSV) -> tuple[Path, Path]:
    fp, pp = tmp_path / "formulas.csv", tmp_path / "properties.csv"
    fp.write_text(forms)
    pp.write_text(props)
    return fp, pp


@pytest.fixture
def info_log(caplog):
    caplog.set_level(logging.INFO, logger="mrl.data")
    return caplog


# ----- 1. target guessing -------------------------------------------------------------------------------------
def test_several_candidate_targets_are_an_error_not_the_first_column(tmp_path):
    fp, pp = _files(tmp_path, "formula_id,T,viscosity\nA,25,100\nB,25,2000\n")
    with pytest.raises(DataError, match=r"properties\.csv: 2 columns could be the target: \['T', 'viscosity'\]"):
        load_formulas(fp, pp)
    assert load_formulas(fp, pp, conditions=["T"]).targets == ("viscosity",)
    assert load_formulas(fp, pp, targets="viscosity").targets == ("viscosity",)


def test_the_one_candidate_is_used_and_logged_text_columns_are_not_candidates(tmp_path, info_log):
    fp, pp = _files(tmp_path, "formula_id,operator,notes,viscosity,split\n"
                              "A,Eva,redone after a spill,100,train\nB,Max,ok,2000,eval\n")
    data = load_formulas(fp, pp)
    assert data.targets == ("viscosity",)
    assert "target 'viscosity' (the only numeric property column)" in info_log.text


def test_no_candidate_names_the_columns(tmp_path):
    fp, pp = _files(tmp_path, "formula_id,notes\nA,ok\nB,ok\n")
    with pytest.raises(DataError, match=r"properties\.csv: no property \(target\) column.*'notes'"):
        load_formulas(fp, pp)


def test_an_empty_target_list_loads_formulas_to_predict(tmp_path):
    fp, pp = _files(tmp_path, "formula_id,T\nA,25\nB,30\n")
    data = load_formulas(fp, pp, targets=(), conditions=["T"])
    assert data.targets == () and data.condition_values().ravel().tolist() == [25.0, 30.0]


# ----- 2. text and thousands separators in targets ------------------------------------------------------------
@pytest.mark.parametrize("value, hint", [("1,234", "thousands separator"), ("12 500", "thousands separator"),
                                         ("n/a", "missing-value marker"), ("12 cP", "a unit")])
@pytest.mark.parametrize("targets", [None, "viscosity"])
def test_text_in_the_target_is_found_and_explained(tmp_path, value, hint, targets):
    fp, pp = _files(tmp_path, f'formula_id,viscosity\nA,100\nB,"{value}"\n')
    with pytest.raises(DataError, match=rf"properties\.csv: row 1 \(line 3\), column 'viscosity': value "
                                        rf"'{value}' is not a number \(.*{hint}"):
        load_formulas(fp, pp, targets=targets)


def test_na_is_an_identifier_not_a_missing_value(tmp_path):
    fp, pp = _files(tmp_path, "formula_id,viscosity\nA,1\nB,2\n",
                    forms="formula_id,material_id,content\nA,NA,90\nA,X,10\nB,NA,100\n")
    assert list(load_formulas(fp, pp).material_ids) == ["NA", "X"]


# ----- 3. duplicate ingredients -------------------------------------------------------------------------------
def test_duplicate_ingredient_names_formula_material_and_both_lines(tmp_path, caplog):
    fp, pp = _files(tmp_path, "formula_id,viscosity\nA,1\nB,2\n", forms=FORMS_CSV + "B,X,5\n")
    with pytest.raises(DataError, match=r"formulas\.csv: row 5 \(line 7\), column 'material_id': formula 'B' "
                                        r"lists material 'X' again \(first at row 3 \(line 5\)\)"):
        load_formulas(fp, pp)
    with caplog.at_level(logging.WARNING, logger="mrl.data"):
        data = load_formulas(fp, pp, duplicates="sum")
    assert "1 duplicate (formula, material) rows summed; the first: formula 'B', material 'X'" in caplog.text
    assert data.formulas.set_index(["formula_id", "material_id"]).loc[("B", "X"), "content"] == pytest.approx(20 / 105)
    with pytest.raises(ValueError, match="duplicates must be one of"):
        load_formulas(fp, pp, duplicates="mean")


# ----- 4. implausible contents and the unit rule --------------------------------------------------------------
def test_a_huge_content_is_an_error_not_a_normalised_formula(tmp_path):
    fp, pp = _files(tmp_path, "formula_id,viscosity\nA,1\nB,2\n",
                    forms=FORMS_CSV.replace("A,X,10", "A,X,1e12"))
    with pytest.raises(DataError, match=r"formulas\.csv: row 1 \(line 3\), column 'content': content 1e\+12 is "
                                        r"more than the whole formula \(100 %; contents read as percent"):
        load_formulas(fp, pp)


def test_a_fraction_above_one_is_an_error(tmp_path):
    fp, pp = _files(tmp_path, "formula_id,viscosity\nA,1\nB,2\n",
                    forms="formula_id,material_id,content\nA,W,0.5\nA,X,0.5\nB,W,1.4\n")
    with pytest.raises(DataError, match=r"row 2 \(line 4\), column 'content': content 1\.4 .*1 \(a fraction\)"):
        load_formulas(fp, pp, content_unit="fraction")


def test_off_sums_warn_and_the_unit_choice_is_logged(tmp_path, info_log):
    fp, pp = _files(tmp_path, "formula_id,viscosity\nA,1\nB,2\n", forms=FORMS_CSV.replace("B,Y,5", "B,Y,50"))
    data = load_formulas(fp, pp)
    assert np.allclose(data.formulas.groupby("formula_id")["content"].sum(), 1.0)
    warnings = [r.getMessage() for r in info_log.records if r.levelno == logging.WARNING]
    assert any("1 of 2 formulas sum more than 5% away from 100 % (first: 'B')" in w for w in warnings)
    assert "contents read as percent (content_unit='auto': the median formula sums to 122.5 (> 1.5))" in info_log.text


# ----- 5. file-level problems ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("", r"formulas\.csv: empty file"),
    ("\n\n", r"formulas\.csv: empty file"),
    ("formula_id,material_id,content\n", r"formulas\.csv: no data rows"),
    (FORMS_CSV.replace("A,X,10", "A,X,10,3"), r"formulas\.csv: line 3 has 4 fields but the header has 3"),
    (FORMS_CSV.replace("A,W,90", "A,W,90,3"), r"formulas\.csv: line 2 has 4 fields but the header has 3"),
    (FORMS_CSV.replace("A,X,10", 'A,X,"10'), r"formulas\.csv: line 3: a quote .* never closed"),
    (FORMS_CSV.replace("A,X,10\n", "A,X,10\n\n"), r"formulas\.csv: row 2 \(line 4\), column 'formula_id': empty"),
])
def test_file_level_problems_name_the_file_and_line(tmp_path, text, message):
    fp, pp = _files(tmp_path, "formula_id,viscosity\nA,1\nB,2\n", forms=text)
    with pytest.raises(DataError, match=message):
        load_formulas(fp, pp)


def test_trailing_empty_rows_of_a_spreadsheet_export_are_ignored(tmp_path):
    fp, pp = _files(tmp_path, "formula_id,viscosity\nA,1\nB,2\n,\n", forms=FORMS_CSV + ",,\n,,\n\n")
    assert load_formulas(fp, pp).n_formulas == 2


def test_cp1252_file_is_read_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="mrl.data"):
        mats, label = read_table(INPUTS / "cp1252_materials.csv")
    assert "cp1252_materials.csv: not UTF-8; read as cp1252" in caplog.text
    assert mats["name"].tolist() == ["Wasser – entmineralisiert", "Carbopol® 980", "Glycérine"]


def test_unreadable_and_unsupported_files(tmp_path):
    (tmp_path / "f.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"f\.parquet: not a readable Parquet file"):
        read_table(tmp_path / "f.parquet")
    (tmp_path / "f.xlsx").write_bytes(b"not a workbook")
    with pytest.raises(DataError, match=r"f\.xlsx: not a readable \.xlsx file"):
        read_table(tmp_path / "f.xlsx")
    (tmp_path / "f.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(DataError, match=r"f\.tsv: unsupported file type '\.tsv'"):
        read_table(tmp_path / "f.tsv")


# ----- 6. inputs a lab has: xlsx, ';' and decimal commas ------------------------------------------------------
def test_xlsx_files_and_sheets(info_log):
    data = load_formulas(INPUTS / "formulas.xlsx", INPUTS / "properties.xlsx")
    assert data.content_matrix().toarray()[1].tolist() == pytest.approx([0.8, 0.15, 0.05])
    assert "formulas.xlsx: read sheet 'formulas'" in info_log.text
    notes, _ = read_table(INPUTS / "formulas.xlsx", sheet="README")
    assert list(notes.columns) == ["note"]
    with pytest.raises(DataError, match=r"formulas\.xlsx: no sheet 'nope'; sheets: \['formulas', 'README'\]"):
        read_table(INPUTS / "formulas.xlsx", sheet="nope")


def test_xlsx_errors_name_the_sheet_row(tmp_path, info_log):
    # a number stored as text with a decimal comma is read, with a note; thousands stay an error naming the cell
    pd.DataFrame({"formula_id": ["A", "B"], "viscosity": [1.0, "1,5"]}).to_excel(tmp_path / "p.xlsx", index=False)
    data = load_formulas(INPUTS / "formulas.xlsx", tmp_path / "p.xlsx")
    assert data.target_values().tolist() == [1.0, 1.5]
    assert "column B 'viscosity': 1 cell(s) with a decimal comma read as numbers" in info_log.text
    pd.DataFrame({"formula_id": ["A", "B"], "viscosity": [1.0, "1,234"]}).to_excel(tmp_path / "p.xlsx", index=False)
    with pytest.raises(DataError, match=r"p\.xlsx, sheet 'Sheet1': row 1 \(Excel row 3\), column B 'viscosity': "
                                        r"value '1,234'.*thousands"):
        load_formulas(INPUTS / "formulas.xlsx", tmp_path / "p.xlsx")


def test_semicolons_and_decimal_commas_are_detected(info_log):
    data = load_formulas(INPUTS / "semicolon_formulas.csv", INPUTS / "semicolon_properties.csv",
                         INPUTS / "cp1252_materials.csv", targets="viscosity", conditions=["T"])
    assert data.target_values().tolist() == [1234.5, 20.25]
    assert data.content_matrix().toarray()[0].tolist() == pytest.approx([0.895, 0.105, 0.0])
    assert "semicolon_formulas.csv: separator ';' (detected), decimal mark ',' (detected)" in info_log.text


def test_explicit_separator_and_decimal_win(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("formula_id\tviscosity\nA\t1,5\nB\t2\n")
    frame, _ = read_table(path, sep="\t", decimal=",")
    assert frame["viscosity"].tolist() == [1.5, 2.0]
    fp, _ = _files(tmp_path, "", forms=FORMS_CSV.replace(",", "\t"))
    with pytest.raises(DataError, match=r"p\.csv: row 0 \(line 2\).*value '1,5'.*decimal comma"):
        load_formulas(fp, path, sep="\t", decimal=".")


# ----- 7. stale tables ----------------------------------------------------------------------------------------
def test_find_table_names_every_candidate_and_the_newest(tmp_path):
    assert find_table(tmp_path, "formulas") is None
    (tmp_path / "formulas.parquet").write_bytes(b"old")
    assert find_table(tmp_path, "formulas") == tmp_path / "formulas.parquet"
    (tmp_path / "formulas.csv").write_text("new")
    os.utime(tmp_path / "formulas.parquet", (1_600_000_000, 1_600_000_000))
    with pytest.raises(DataError, match=r"2 'formulas' tables: formulas\.parquet \(modified 2020-.*\), "
                                        r"formulas\.csv \(modified .*\); formulas\.csv is the newest\. Keep one"):
        find_table(tmp_path, "formulas")


# ----- 9. usage columns of a subset ---------------------------------------------------------------------------
def test_subset_recomputes_usage_on_the_kept_formulas(tmp_path):
    fp, pp = _files(tmp_path, "formula_id,viscosity\nA,1\nB,2\n")
    data = load_formulas(fp, pp)
    only_a = data.subset(np.array([True, False]))
    mats = only_a.materials.set_index("material_id")
    assert list(mats.index) == ["W", "X", "Y"]
    assert mats["n_formulas"].tolist() == [1, 1, 0]
    assert mats["median_content"].tolist() == pytest.approx([0.9, 0.1, 0.0])
    assert data.materials["n_formulas"].tolist() == [2, 2, 1]  # the full data is untouched
    assert material_usage(data.materials, data.formulas).equals(data.materials)
