"""Loader validation: clear errors naming file, row and column; normalisation; order invariance."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrl.data import load_formulas
from mrl.io import atomic_path, write_json
from mrl.tables import DataError


def _write(tmp_path, forms: pd.DataFrame, props: pd.DataFrame, mats: pd.DataFrame | None = None):
    fp, pp = tmp_path / "formulas.csv", tmp_path / "properties.csv"
    forms.to_csv(fp, index=False)
    props.to_csv(pp, index=False)
    mp = None
    if mats is not None:
        mp = tmp_path / "materials.csv"
        mats.to_csv(mp, index=False)
    return fp, pp, mp


FORMS = pd.DataFrame({"formula_id": ["A", "A", "B", "B", "B"], "material_id": ["W", "X", "W", "X", "Y"],
                      "content": [90.0, 10.0, 80.0, 15.0, 5.0]})
PROPS = pd.DataFrame({"formula_id": ["A", "B"], "viscosity": [100.0, 2000.0]})


def test_percent_contents_are_normalised_to_fractions(tmp_path):
    data = load_formulas(*_write(tmp_path, FORMS, PROPS))
    sums = data.formulas.groupby("formula_id")["content"].sum()
    assert np.allclose(sums, 1.0)
    assert data.content_matrix().shape == (2, 3)
    assert data.materials.set_index("material_id").loc["W", "n_formulas"] == 2


def test_parquet_and_csv_load_the_same(tmp_path):
    fp, pp, _ = _write(tmp_path, FORMS, PROPS)
    FORMS.to_parquet(tmp_path / "f.parquet")
    PROPS.to_parquet(tmp_path / "p.parquet")
    a = load_formulas(fp, pp)
    b = load_formulas(tmp_path / "f.parquet", tmp_path / "p.parquet")
    assert (a.content_matrix() != b.content_matrix()).nnz == 0


@pytest.mark.parametrize("column", ["formula_id", "material_id", "content"])
def test_missing_formula_column_names_file_and_column(tmp_path, column):
    fp, pp, _ = _write(tmp_path, FORMS.drop(columns=[column]), PROPS)
    with pytest.raises(DataError, match=rf"formulas\.csv.*missing column.*{column}"):
        load_formulas(fp, pp)


@pytest.mark.parametrize("value, message", [(-5.0, "negative content"), (np.nan, "missing value"),
                                            ("ten", "value 'ten' is not a number")])
def test_bad_content_names_row_line_and_column(tmp_path, value, message):
    forms = FORMS.astype({"content": object}).copy()
    forms.loc[3, "content"] = value
    fp, pp, _ = _write(tmp_path, forms, PROPS)
    with pytest.raises(DataError, match=rf"formulas\.csv: row 3 \(line 5\), column 'content': {message}"):
        load_formulas(fp, pp)


def test_empty_formula_is_an_error(tmp_path):
    forms = FORMS.copy()
    forms.loc[[0, 1], "content"] = 0.0
    fp, pp, _ = _write(tmp_path, forms, PROPS)
    with pytest.raises(DataError, match="formula 'A' has no positive content"):
        load_formulas(fp, pp)


def test_unknown_material_code_is_an_error(tmp_path):
    mats = pd.DataFrame({"material_id": ["W", "X"], "name": ["water", "thickener"]})
    fp, pp, mp = _write(tmp_path, FORMS, PROPS, mats)
    with pytest.raises(DataError, match=r"row 4 \(line 6\), column 'material_id': unknown material 'Y'"):
        load_formulas(fp, pp, mp)


def test_property_of_unknown_formula_and_nan_target(tmp_path):
    fp, pp, _ = _write(tmp_path, FORMS, pd.DataFrame({"formula_id": ["A", "Z"], "viscosity": [1.0, 2.0]}))
    with pytest.raises(DataError, match=r"properties\.csv: row 1.*formula 'Z' has no ingredients"):
        load_formulas(fp, pp)
    fp, pp, _ = _write(tmp_path, FORMS, pd.DataFrame({"formula_id": ["A", "B"], "viscosity": [1.0, None]}))
    with pytest.raises(DataError, match=r"row 1 \(line 3\), column 'viscosity': missing value"):
        load_formulas(fp, pp)


def test_missing_condition_column_and_nan_condition(tmp_path):
    fp, pp, _ = _write(tmp_path, FORMS, PROPS)
    with pytest.raises(DataError, match=r"missing column.*'T'"):
        load_formulas(fp, pp, conditions=["T"])
    fp, pp, _ = _write(tmp_path, FORMS, PROPS.assign(T=[300.0, np.nan]))
    with pytest.raises(DataError, match=r"row 1 \(line 3\), column 'T': missing value"):
        load_formulas(fp, pp, conditions=["T"])


def test_wrong_file_type_and_missing_file(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_formulas(tmp_path / "f.txt", tmp_path / "f.txt")
    with pytest.raises(FileNotFoundError, match="formulas file not found"):
        load_formulas(tmp_path / "nope.csv", tmp_path / "f.txt")


def test_duplicate_ingredients_are_summed_on_request_and_order_does_not_matter(tmp_path, caplog):
    shuffled = FORMS.sample(frac=1.0, random_state=3)
    a = load_formulas(FORMS, PROPS)
    b = load_formulas(shuffled, PROPS)
    assert np.allclose(a.content_matrix().toarray(), b.content_matrix().toarray())
    doubled = pd.concat([FORMS, FORMS.iloc[[1]]])
    with pytest.raises(DataError, match=r"row 5, column 'material_id': formula 'A' lists material 'X' again "
                                         r"\(first at row 1\)"):
        load_formulas(doubled, PROPS)
    with caplog.at_level("WARNING", logger="mrl.data"):
        c = load_formulas(doubled, PROPS, duplicates="sum")
    assert "1 duplicate (formula, material) rows summed" in caplog.text and "'A'" in caplog.text
    row = c.content_matrix().toarray()[0]
    assert np.allclose(row[:2], [90 / 110, 20 / 110])


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_json({"a": np.float32(1.5)}, target)
    assert target.read_text().strip().startswith("{")
