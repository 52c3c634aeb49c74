"""Property-based test of the loader: any small malformed input either loads to a valid FormulaData or raises a
DataError naming the file or table (FileNotFoundError for a missing file); never any other exception."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mrl.data import FormulaData, load_formulas
from mrl.tables import DataError

BAD_IDS = st.sampled_from(["", " ", None, "NA", " F1", "F9"])
BAD_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e12, -1.0, 1e-300, 10 ** 400, True]),
    st.sampled_from(["1,5", "n/a", "ten", "12 500", "", "1e400", " 7 ", "12 cP", "1,234", '"', "a;b"]),
)
FORMATS = st.sampled_from(["frame", "csv", "csv", "csv_extra_field", "semicolon", "missing", "empty_file"])
MATERIALS = ["M1", "M2", "M3", "M4"]


def _set_cell(draw, frame: pd.DataFrame) -> pd.DataFrame:
    """One cell replaced by a bad id or a bad number."""
    if frame.empty:
        return frame
    row = draw(st.integers(0, len(frame) - 1))
    column = draw(st.sampled_from(list(frame.columns)))
    frame = frame.astype(object)
    frame.iat[row, frame.columns.get_loc(column)] = draw(BAD_IDS if "id" in str(column) else BAD_NUMBERS)
    return frame


def _mutate(draw, forms: pd.DataFrame, props: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One random defect: a bad cell, a duplicate or orphan row, a dropped or extra column, an empty table."""
    kind = draw(st.sampled_from(["forms_cell", "props_cell", "duplicate", "orphan", "drop_column", "condition",
                                 "notes", "empty", "second_target"]))
    if kind == "forms_cell":
        forms = _set_cell(draw, forms)
    elif kind == "props_cell":
        props = _set_cell(draw, props)
    elif kind == "duplicate" and len(forms):
        forms = pd.concat([forms, forms.iloc[[draw(st.integers(0, len(forms) - 1))]]], ignore_index=True)
    elif kind == "orphan":
        props = pd.concat([props, pd.DataFrame({"formula_id": ["F9"], "y": [1.0]})], ignore_index=True)
    elif kind == "drop_column":
        column = draw(st.sampled_from(["formula_id", "material_id", "content"]))
        if draw(st.booleans()):
            forms = forms.drop(columns=[column], errors="ignore")
        else:
            props = props.drop(columns=["formula_id"], errors="ignore")
    elif kind == "condition":
        props = props.assign(T=draw(st.lists(st.floats(250, 400), min_size=len(props), max_size=len(props))))
    elif kind == "notes":
        props = props.assign(notes="measured twice")
    elif kind == "second_target":
        props = props.assign(y2=1.0)
    elif kind == "empty":
        forms = forms.iloc[:0]
    return forms, props


@st.composite
def _tables(draw) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Valid formulas (percent or fractions), properties and materials, then 0-3 defects."""
    scale = draw(st.sampled_from([100.0, 1.0]))
    rows = []
    for f in range(draw(st.integers(1, 4))):
        used = draw(st.lists(st.sampled_from(MATERIALS), min_size=1, max_size=3, unique=True))
        share = np.asarray(draw(st.lists(st.floats(0.01, 1.0), min_size=len(used), max_size=len(used))))
        rows += [(f"F{f}", m, float(c)) for m, c in zip(used, scale * share / share.sum())]
    forms = pd.DataFrame(rows, columns=["formula_id", "material_id", "content"]).astype(object)
    ids = list(pd.unique(forms["formula_id"]))
    props = pd.DataFrame({"formula_id": ids, "y": draw(st.lists(st.floats(-1e6, 1e6), min_size=len(ids),
                                                               max_size=len(ids)))}).astype(object)
    for _ in range(draw(st.integers(0, 3))):
        forms, props = _mutate(draw, forms, props)
    mats = draw(st.sampled_from([None, MATERIALS, MATERIALS[:2], MATERIALS + ["M1"]]))
    return forms, props, None if mats is None else pd.DataFrame({"material_id": mats, "family": "x"})


def _as_input(frame: pd.DataFrame, how: str, folder: Path, stem: str) -> pd.DataFrame | Path:
    """The table as a DataFrame or as a (possibly malformed) file under ``folder``."""
    path = folder / f"{stem}.csv"
    if how == "frame":
        return frame
    if how == "missing":
        return path
    if how == "empty_file":
        path.write_bytes(b"")
    elif how == "semicolon":
        frame.to_csv(path, sep=";", decimal=",", index=False)
    else:
        frame.to_csv(path, index=False)
        if how == "csv_extra_field":
            lines = path.read_text().splitlines()
            lines[len(lines) // 2] += ",extra"
            path.write_text("\n".join(lines) + "\n")
    return path


def _label(table: pd.DataFrame | Path, name: str) -> str:
    return f"<{name} DataFrame>" if isinstance(table, pd.DataFrame) else str(table)


def _assert_valid(data: FormulaData) -> None:
    forms = data.formulas
    assert not forms["content"].isna().any() and (forms["content"] > 0).all()
    assert np.allclose(forms.groupby("formula_id")["content"].sum(), 1.0)
    assert not forms.duplicated(["formula_id", "material_id"]).any()
    assert set(data.properties["formula_id"]) <= set(forms["formula_id"])
    assert np.isfinite(data.target_values()).all() and np.isfinite(data.condition_values()).all()
    assert set(forms["material_id"]) <= set(data.material_ids)
    assert data.content_matrix().shape == (data.n_formulas, data.n_materials)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=_tables(), form_how=FORMATS, prop_how=FORMATS, targets=st.sampled_from([None, None, "y", ("y",), "nope"]),
       conditions=st.sampled_from([(), ("T",)]), duplicates=st.sampled_from(["error", "sum"]),
       unit=st.sampled_from(["auto", "auto", "percent", "fraction"]))
def test_loader_loads_valid_data_or_names_the_file(tables, form_how, prop_how, targets, conditions, duplicates, unit):
    forms, props, mats = tables
    with tempfile.TemporaryDirectory(prefix="mrl_fuzz_") as tmp:
        folder = Path(tmp)
        f_in = _as_input(forms, form_how, folder, "formulas")
        p_in = _as_input(props, prop_how, folder, "properties")
        m_in = None if mats is None else _as_input(mats, "csv", folder, "materials")
        labels = [_label(f_in, "formulas"), _label(p_in, "properties")] + ([str(m_in)] if m_in else [])
        try:
            data = load_formulas(f_in, p_in, m_in, targets=targets, conditions=conditions, content_unit=unit,
                                 duplicates=duplicates)
        except FileNotFoundError as err:
            assert "missing" in (form_how, prop_how) and "file not found" in str(err)
        except DataError as err:
            assert any(label in str(err) for label in labels), str(err)
            event("DataError")
        else:
            _assert_valid(data)
            event("loaded")
