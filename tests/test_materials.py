"""Materials by code or name: mrl.materials.MaterialIndex (case and whitespace forgiven, "did you mean")."""
from __future__ import annotations

import logging

import pandas as pd
import pytest

from mrl.materials import MaterialIndex, split_list

TABLE = pd.DataFrame({"material_id": ["M00001", "M00131", "M00238", "M00300", "M00301"],
                      "name": ["Water", "Glycerin", "Carbomer 001", "Phenoxyethanol", "Benzyl Alcohol"],
                      "family": ["solvent", "humectant", "thickener", "preservative", "preservative"],
                      "role": ["base", "other", "thickener", "preservative", "preservative"]})


def test_codes_and_names_resolve_and_case_and_spaces_are_forgiven_with_a_note(caplog):
    index = MaterialIndex(TABLE)
    assert index.resolve("M00238") == "M00238" and index.resolve("Carbomer 001") == "M00238"
    with caplog.at_level(logging.INFO, logger="mrl.materials"):
        assert index.resolve("  carbomer   001 ") == "M00238"
        assert index.resolve("m00131") == "M00131"
    notes = [r.getMessage() for r in caplog.records]
    assert any("'m00131' read as Glycerin (M00131)" in n for n in notes), notes
    assert index.label("M00238") == "Carbomer 001 (M00238)"
    assert MaterialIndex(TABLE[["material_id"]]).label("M00238") == "M00238"  # no names: codes alone


def test_unknown_ids_suggest_the_closest_codes_and_names():
    index = MaterialIndex(TABLE)
    with pytest.raises(KeyError, match="did you mean 'Carbomer 001'"):
        index.resolve("Carbomr 001")
    with pytest.raises(KeyError, match="did you mean 'M00131'"):
        index.resolve("M0131")
    with pytest.raises(KeyError, match="unknown material 'xyz'") as err:
        index.resolve("xyz")
    assert "did you mean" not in str(err.value)
    twice = MaterialIndex(pd.DataFrame({"material_id": ["A", "B"], "name": ["Same", "Same"]}))
    with pytest.raises(KeyError, match="names 2 materials"):
        twice.resolve("Same")


def test_families_from_any_column():
    index = MaterialIndex(TABLE)
    assert index.family_members(["Preservative", "thickener"]) == ["M00300", "M00301", "M00238"]
    assert index.family_members(["base"], column="role") == ["M00001"]
    with pytest.raises(ValueError, match="did you mean 'preservative'"):
        index.family_members(["preservatve"])
    with pytest.raises(ValueError, match="no 'grade' column"):
        index.family_members(["x"], column="grade")
    assert split_list(["active,preservative", "thickener", ""]) == ["active", "preservative", "thickener"]
