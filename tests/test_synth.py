"""Tests of the synthetic formulation lab (small preset only, fast)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrl import synth
from mrl.data import FormulaData, load_formulas


@pytest.fixture(scope="module")
def raw() -> dict[str, pd.DataFrame]:
    return synth._generate(synth.PRESETS["small"], 0)


@pytest.fixture(scope="module")
def lab() -> tuple[FormulaData, pd.DataFrame]:
    return synth.make_lab("small", seed=0)


def test_make_lab_shapes_and_names(lab):
    data, truth = lab
    preset = synth.PRESETS["small"]
    assert isinstance(data, FormulaData)
    assert data.name == "lab_small"
    assert data.targets == ("viscosity",)
    assert data.n_materials == preset.n_materials
    assert data.n_formulas == preset.n_formulas == data.n_samples
    assert {"material_id", "name", "family"} <= set(data.materials.columns)
    assert set(data.materials["family"]) == set(synth.FAMILIES)
    assert data.materials["material_id"].str.fullmatch(r"M\d{5}").all()
    assert data.materials["name"].is_unique


def test_truth_table(lab):
    data, truth = lab
    assert len(truth) == data.n_materials
    assert truth["material_id"].is_unique
    assert (truth["material_id"].to_numpy() == data.material_ids).all()
    assert (truth["family"].to_numpy() == data.materials["family"].to_numpy()).all()
    idio = [f"idio_{k}" for k in range(synth.PRESETS["small"].n_idio)]
    assert set(synth.LATENTS) | set(idio) <= set(truth.columns)
    values = truth[list(synth.LATENTS)].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all()
    # hidden properties are never handed to the model
    assert not set(synth.LATENTS) & set(data.materials.columns)


def test_deterministic():
    a_data, a_truth = synth.make_lab("small", seed=3)
    b_data, b_truth = synth.make_lab(synth.PRESETS["small"], seed=3)
    pd.testing.assert_frame_equal(a_data.formulas, b_data.formulas)
    pd.testing.assert_frame_equal(a_data.properties, b_data.properties)
    pd.testing.assert_frame_equal(a_data.materials, b_data.materials)
    pd.testing.assert_frame_equal(a_truth, b_truth)
    c_data, _ = synth.make_lab("small", seed=4)
    assert not a_data.properties["viscosity"].equals(c_data.properties["viscosity"])


def test_contents_sum_to_100_with_water_balance(raw):
    forms = raw["formulas"]
    assert (forms["content"] > 0).all()
    assert np.allclose(forms["content"], forms["content"].round(4), atol=1e-9)
    sums = forms.groupby("formula_id")["content"].sum()
    assert np.abs(sums - 100.0).max() < 1e-9
    assert not forms.duplicated(["formula_id", "material_id"]).any()
    # the first (largest) ingredient is the balance solvent, 60-95 %
    first = forms.groupby("formula_id", sort=False).head(1).merge(raw["truth"], on="material_id")
    assert (first["family"] == "solvent").all()
    assert first["content"].between(60.0, 95.0).all()
    assert (first["kind"] == "water").mean() > 0.85


def test_low_dose_families(raw):
    rows = raw["formulas"].merge(raw["truth"][["material_id", "family"]], on="material_id")
    for family, limit in (("thickener", 2.0), ("electrolyte", 2.5), ("neutralizer", 2.0)):
        assert rows.loc[rows["family"] == family, "content"].max() <= limit, family


def test_ingredient_counts_in_range(raw):
    preset = synth.PRESETS["small"]
    counts = raw["formulas"].groupby("formula_id").size()
    assert counts.min() >= preset.min_ingredients
    assert counts.max() <= preset.max_ingredients
    assert 10 <= counts.median() <= 30
    assert set(raw["templates"]["template"]) == set(synth._TEMPLATES)


def test_viscosity_range(lab):
    data, _ = lab
    visc = data.target_values()
    assert np.isfinite(visc).all() and (visc > 0).all()
    assert visc.min() > 0.5 and visc.max() < 3e5
    q01, q99 = np.quantile(visc, [0.01, 0.99])
    assert q01 < 3.0 and q99 > 3e4  # water-thin toners to stiff creams and gels


def test_usage_is_long_tailed(lab):
    data, _ = lab
    used = data.materials["n_formulas"].to_numpy()
    assert used.min() >= 1  # every material appears somewhere
    assert np.median(used) < 0.05 * used.max()
    assert used.max() > 0.85 * data.n_formulas  # water
    assert (used > 0.5 * data.n_formulas).sum() <= 10  # only a few staples
    top = data.materials.nlargest(3, "n_formulas")["name"].tolist()
    assert "Water" in top


def test_measured_viscosity_follows_hidden_rule(lab):
    data, truth = lab
    true = synth.true_viscosity(data.content_matrix(), truth)[data.sample_rows()]
    log_ratio = np.log(data.target_values() / true)
    assert abs(log_ratio.mean()) < 0.01
    assert 0.02 < log_ratio.std() < 0.06  # ~4 % multiplicative noise


def _one(truth: pd.DataFrame, kind: str, **zero: str) -> int:
    """Row of the first material of a kind (optionally with some latents equal to zero)."""
    mask = truth["kind"] == kind
    for latent in zero.values():
        mask &= truth[latent] == 0
    return int(np.flatnonzero(mask.to_numpy())[0])


def _visc(truth: pd.DataFrame, recipe: dict[int, float]) -> float:
    """Noise-free viscosity of a recipe {material row: %}, water is the balance."""
    content = np.zeros((1, len(truth)))
    for row, pct in recipe.items():
        content[0, row] += pct / 100.0
    content[0, _one(truth, "water")] += 1.0 - content.sum()
    return float(synth.true_viscosity(content, truth)[0])


def test_hidden_rule_gel_chemistry(lab):
    _, truth = lab
    glycerin = _one(truth, "glycerin")
    carbomer = _one(truth, "carbomer", a="neutralizer")
    base = _one(truth, "base")
    salt = _one(truth, "salt")
    neutral = 0.9 * truth.loc[carbomer, "acid"] * 0.5 / truth.loc[base, "neutralizer"]  # % base for 0.5 % carbomer
    water_glycerin = _visc(truth, {glycerin: 3.0})
    raw_gel = _visc(truth, {glycerin: 3.0, carbomer: 0.5})
    gel = _visc(truth, {glycerin: 3.0, carbomer: 0.5, base: neutral})
    salty_gel = _visc(truth, {glycerin: 3.0, carbomer: 0.5, base: neutral, salt: 1.0})
    assert water_glycerin < 3.0
    assert gel > 100 * water_glycerin  # a neutralised carbomer gel
    assert gel > 10 * raw_gel  # carbomer needs its neutraliser
    assert salty_gel < 0.5 * gel  # salt collapses the gel
    assert _visc(truth, {glycerin: 3.0, carbomer: 1.0, base: 2 * neutral}) > gel  # more polymer, thicker


def test_hidden_rule_emulsion_and_shampoo(lab):
    _, truth = lab
    oil = _one(truth, "oil", a="structurant")
    wax = _one(truth, "wax")
    emulsifier = _one(truth, "emulsifier")
    cream = _visc(truth, {oil: 15.0, wax: 3.0, emulsifier: 3.0})
    broken = _visc(truth, {oil: 15.0, wax: 3.0})
    assert cream > 1000 and cream > 10 * broken  # the oil needs its emulsifier
    surfactant = _one(truth, "anionic")
    salt = _one(truth, "salt")
    no_salt = _visc(truth, {surfactant: 12.0})
    optimum = 100 * (0.15 * 12.0 / 100 * truth.loc[surfactant, "surfactant"] + 0.004)  # % salt at the optimum
    optimum = max(optimum - 12.0 / 100 * truth.loc[surfactant, "salt"] * 100, 0.1) / truth.loc[salt, "salt"]
    peak = _visc(truth, {surfactant: 12.0, salt: optimum})
    too_salty = _visc(truth, {surfactant: 12.0, salt: 4 * optimum + 2.0})
    assert peak > 3 * no_salt and peak > 3 * too_salty  # the salt curve


def test_rule_depends_on_sums_only(lab):
    _, truth = lab
    rng = np.random.default_rng(0)
    content = rng.dirichlet(np.ones(len(truth)) * 0.05, size=20)
    sums = synth.latent_sums(content, truth)
    direct = synth.true_viscosity(content, truth)
    assert np.allclose(np.log10(direct), synth.log10_viscosity_from_sums(sums))
    # splitting a material into two identical copies changes nothing
    twin = pd.concat([truth, truth.iloc[[5]]], ignore_index=True)
    split = np.hstack([content, content[:, [5]] * 0.5])
    split[:, 5] *= 0.5
    assert np.allclose(synth.true_viscosity(split, twin), direct)


def test_unknown_preset():
    with pytest.raises(ValueError, match="small"):
        synth.make_lab("huge")


def test_write_lab_round_trip(tmp_path, lab):
    paths = synth.write_lab(tmp_path / "lab", "small", seed=0)
    assert set(paths) == {"formulas", "properties", "materials", "truth"}
    for path in paths.values():
        assert path.exists() and path.suffix == ".csv"
    assert not list((tmp_path / "lab").glob(".*tmp"))
    data, truth = lab
    loaded = load_formulas(paths["formulas"], paths["properties"], paths["materials"], targets="viscosity",
                           name="lab_small")
    assert loaded.n_formulas == data.n_formulas and loaded.n_materials == data.n_materials
    assert np.allclose(loaded.target_values(), data.target_values())
    assert np.allclose(loaded.formulas["content"], data.formulas["content"])
    assert len(pd.read_csv(paths["truth"])) == len(truth)
