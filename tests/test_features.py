"""Known material features beside the learned vectors: the feature table, the standardiser, g(x) + residual."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from mrl.adapt import add_by_features, add_materials, tie_materials
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.features import FeatureScaler, material_features
from mrl.model import MixtureModel, make_batch

FAST = dict(embedding_dim=4, hidden=(16,), batch_size=64, eval_every=50, snapshot_every=50, checkpoint_every=100,
            progress=False, device="cpu")


def _with_columns(data: FormulaData, seed: int = 0, gaps: bool = True) -> FormulaData:
    """The tiny data with two numeric feature columns (one with gaps) and a text description."""
    rng = np.random.default_rng(seed)
    mats = data.materials.copy()
    mats["density"] = rng.normal(1.0, 0.2, len(mats))
    mats["hlb"] = rng.uniform(1, 20, len(mats))
    if gaps:
        mats.loc[[2, 5], "hlb"] = np.nan
        mats.loc[7, ["density", "hlb"]] = np.nan  # a material without any feature
    mats["name"] = mats["material_id"]
    return data.with_materials(mats)


def test_material_features_and_scaler_handle_gaps_constants_and_order(tiny_data):
    data = _with_columns(tiny_data)
    mats = data.materials.assign(constant=3.0)
    raw = material_features(mats, "columns")
    assert list(raw.index) == list(mats["material_id"]) and list(raw.columns) == ["density", "hlb", "constant"]
    scaler = FeatureScaler.fit(raw)
    assert scaler.columns == ["density", "hlb"] and scaler.gaps == ["density", "hlb"]
    assert scaler.names == ["density", "hlb", "density_missing", "hlb_missing"]
    x = scaler.transform(raw)
    assert x.shape == (len(mats), 4) and np.isfinite(x).all()
    known = ~np.isnan(raw["hlb"].to_numpy())
    assert abs(x[known, 1].mean()) < 1e-5 and x[~known, 1].tolist() == [0.0] * 3 and x[~known, 3].tolist() == [1.0] * 3
    # a material without any value gets the mean row with every indicator set
    assert np.array_equal(x[7], scaler.fill_row()) and scaler.fill_row().tolist() == [0, 0, 1, 1]
    again = FeatureScaler.from_state(scaler.to_state())
    assert np.array_equal(again.transform(raw), x)


def test_text_and_all_nan_feature_columns_are_clear_errors(tiny_data):
    mats = tiny_data.materials.assign(grade="7")
    mats.loc[4, "grade"] = "premium"
    with pytest.raises(ValueError, match=r"column 'grade' holds text, e\.g\. 'premium' for material 'M\d+'"):
        material_features(mats, "columns")
    mats = tiny_data.materials.assign(density=np.nan)
    with pytest.raises(ValueError, match=r"\['density'\] have no value for any material"):
        MixtureRegressor(steps=5, features="columns", **FAST).fit(tiny_data.with_materials(mats))
    with pytest.raises(ValueError, match="no column besides"):
        material_features(tiny_data.materials, "columns")
    with pytest.raises(ValueError, match=r"supplier_sheet=True"):
        material_features(tiny_data.materials, "supplier")
    with pytest.raises(ValueError, match="features must be one of"):
        material_features(tiny_data.materials, "smell")
    with pytest.raises(ValueError, match="features must be one of"):
        MixtureRegressor(steps=5, features="smell", **FAST).fit(tiny_data)


def test_features_enter_only_through_g():
    """With g's weights zeroed a feature model equals the plain model with the same table and head."""
    torch.manual_seed(0)
    plain = MixtureModel(n_materials=6, embedding_dim=3, init_std=0.5, pinned=[0],
                         median_content=[0.5, 0.1, 0.01, 0.2, 0.05, 0.3]).eval()
    torch.manual_seed(0)
    feat = MixtureModel(n_materials=6, embedding_dim=3, init_std=0.5, pinned=[0], n_features=4, feature_map="mlp",
                        median_content=[0.5, 0.1, 0.01, 0.2, 0.05, 0.3]).eval()
    feat.set_features(np.random.default_rng(0).normal(size=(6, 4)))
    # built after the head: the same seed gives the same table and head as the plain model
    assert torch.equal(plain.table, feat.table) and torch.equal(plain.head[0].weight, feat.head[0].weight)
    batch = make_batch(sp.csr_matrix(np.random.default_rng(1).dirichlet(np.ones(6), size=5)), np.arange(5))
    assert torch.equal(plain(batch), feat(batch))  # g's output layer starts at zero
    with torch.no_grad():
        for p in feat.feature_map.parameters():
            p.normal_()
        assert not torch.allclose(plain(batch), feat(batch))
        for p in feat.feature_map.parameters():
            p.zero_()
    assert torch.equal(plain(batch), feat(batch)) and torch.equal(plain.material_vectors(), feat.material_vectors())


def test_raw_vector_is_g_of_x_plus_residual(tiny_data):
    est = MixtureRegressor(steps=100, features="columns", activation="none", content_scale="none", pin_origin=None,
                           **FAST).fit(_with_columns(tiny_data))
    module = est.module_
    with torch.no_grad():
        g = module.feature_map(module.features)
        assert torch.allclose(module.material_vectors(), g + module.table, atol=1e-6)
        assert g.abs().sum() > 0  # g learned something
    vec = est.embeddings().filter(regex=r"^e\d+$").to_numpy()
    assert vec.shape == (tiny_data.n_materials, 4)  # one table of effective vectors


def test_features_none_takes_the_old_path(tiny_data):
    est = MixtureRegressor(steps=5, **FAST).fit(tiny_data)
    assert est.module_.feature_map is None and est.feature_scaler_ is None
    assert "features" not in est.module_.state_dict() and len(est.module_.state_dict()) == len(
        MixtureModel(n_materials=3, embedding_dim=2, hidden=(16,)).state_dict())


def test_material_without_data_gets_g_of_x(tiny_data):
    data = _with_columns(tiny_data)
    est = MixtureRegressor(steps=150, features="columns", activation="none", content_scale="none", **FAST).fit(data)
    new = pd.DataFrame({"material_id": ["NEW1", "NEW2"], "density": [1.3, np.nan], "hlb": [4.0, 12.0]})
    out = add_by_features(est, new)
    module = out.module_
    x = est.feature_scaler_.transform(new.set_index("material_id")[["density", "hlb"]])
    with torch.no_grad():
        g = module.feature_map(torch.as_tensor(x)).numpy()
    vec = out.embeddings().set_index("material_id").filter(regex=r"^e\d+$")
    assert np.allclose(vec.loc[["NEW1", "NEW2"]].to_numpy(), g, atol=1e-6)
    assert np.array_equal(module.table[-2:].detach().numpy(), np.zeros((2, 4)))  # residual 0
    # known materials and predictions without the new ones are unchanged
    assert np.array_equal(out.predict(tiny_data), est.predict(tiny_data))
    formulas = pd.DataFrame({"formula_id": ["X", "X"], "material_id": ["M000", "NEW1"], "content": [60.0, 40.0]})
    assert np.isfinite(out.predict(formulas)).all()
    with pytest.raises(ValueError, match="fitted without features"):
        add_by_features(MixtureRegressor(steps=5, **FAST).fit(tiny_data), new)
    with pytest.raises(ValueError, match=r"\['hlb'\].*missing"):
        add_by_features(est, new.drop(columns="hlb"))
    with pytest.raises(ValueError, match="already in the model's vocabulary"):
        add_by_features(est, new.assign(material_id=["M000", "N"]))


def test_add_by_features_with_median_scaling_and_tanh(tiny_data):
    est = MixtureRegressor(steps=50, features="columns", **FAST).fit(_with_columns(tiny_data))
    new = pd.DataFrame({"material_id": ["NEW"], "density": [0.9], "hlb": [3.0]})
    with pytest.raises(ValueError, match="median_content"):
        add_by_features(est, new)
    out = add_by_features(est, new.assign(median_content=0.02))
    x = torch.as_tensor(est.feature_scaler_.transform(new.set_index("material_id")[["density", "hlb"]]))
    with torch.no_grad():
        expected = torch.tanh(out.module_.feature_map(x))[0] / 0.02
    assert torch.allclose(out.module_.material_vectors()[-1], expected, rtol=1e-5)


def test_tie_and_add_materials_keep_working_with_features(tiny_data):
    data = _with_columns(tiny_data)
    est = MixtureRegressor(steps=100, features="columns", **FAST).fit(data)
    tied = tie_materials(est, {"TWIN": "M003", "NOTHING": None})
    vec = tied.module_.material_vectors()
    assert torch.equal(vec[-2], vec[3]) and torch.count_nonzero(vec[-1]) == 0
    # add_materials: a new material with feature columns in the data's materials table starts at g(x)
    forms = data.formulas.copy()
    rows = forms["formula_id"].isin(forms["formula_id"].unique()[:40]) & forms["material_id"].eq("M001")
    forms.loc[rows, "material_id"] = "NEWX"
    mats = pd.concat([data.materials, pd.DataFrame({"material_id": ["NEWX"], "density": [1.1], "hlb": [7.0]})],
                     ignore_index=True)
    new_data = FormulaData(forms, data.properties, mats, data.targets, (), "new")
    fitted = add_materials(est, new_data.subset(new_data.properties["formula_id"].isin(
        forms.loc[rows, "formula_id"]).to_numpy()), steps=20)
    x = est.feature_scaler_.transform(pd.DataFrame({"density": [1.1], "hlb": [7.0]}))
    assert np.allclose(fitted.module_.features[-1].numpy(), x[0])
    assert np.array_equal(fitted.predict(tiny_data), est.predict(tiny_data))


def test_checkpoint_round_trip_of_a_feature_model(tiny_data, tmp_path):
    data = _with_columns(tiny_data)
    est = MixtureRegressor(steps=100, features="columns", feature_map="mlp", **FAST).fit(
        data, checkpoint_path=tmp_path / "c.pt")
    loaded = MixtureRegressor.load(tmp_path / "c.pt", device="cpu")
    assert np.array_equal(loaded.predict(tiny_data), est.predict(tiny_data))
    assert loaded.feature_scaler_ == est.feature_scaler_
    assert torch.equal(loaded.module_.features, est.module_.features)
    new = pd.DataFrame({"material_id": ["NEW"], "density": [0.9], "hlb": [np.nan], "median_content": [0.1]})
    a, b = add_by_features(est, new), add_by_features(loaded, new)
    assert torch.equal(a.module_.material_vectors(), b.module_.material_vectors())
    saved = a.save(tmp_path / "adapted.pt")
    assert torch.equal(MixtureRegressor.load(saved, device="cpu").module_.material_vectors(),
                       a.module_.material_vectors())


def test_supplier_sheet_features_from_the_synthetic_lab():
    from mrl.synth import LATENTS, make_lab

    plain, truth = make_lab("small")
    data, _ = make_lab("small", supplier_sheet=True)
    assert np.array_equal(plain.target_values(), data.target_values())
    sheet = data.materials.filter(like="sheet_")
    assert list(sheet.columns) == [f"sheet_{c}" for c in LATENTS]
    assert not set(LATENTS) & set(data.materials.columns)  # the truth itself is never a column
    z = truth.set_index("material_id").loc[data.materials["material_id"], list(LATENTS)].to_numpy()
    s = sheet.to_numpy()
    assert 0.05 < np.isnan(s).mean() < 0.4 and not np.array_equal(np.nan_to_num(s), z)
    known = ~np.isnan(s)
    assert np.array_equal(s[known] == 0, z[known] == 0)  # zeros stay zero, the rest is noisy
    assert 0.6 < np.corrcoef(np.log(s[known & (z > 0)]), np.log(z[known & (z > 0)]))[0, 1]
    raw = material_features(data.materials, "supplier")
    assert raw.shape == (data.n_materials, len(LATENTS))


def test_element_table_features(tiny_data, monkeypatch):
    table = pd.DataFrame({"mass": [1.0, 4.0, 12.0], "radius": [0.5, np.nan, 0.7], "empty": [np.nan] * 3},
                         index=pd.Index(["H", "He", "C"], name="element"))
    monkeypatch.setattr("mrl.elements.element_table", lambda name: table)
    mats = pd.DataFrame({"material_id": ["C", "H", "Xx"]})
    raw = material_features(mats, "magpie")
    assert list(raw.columns) == ["mass", "radius"] and raw.loc["C", "mass"] == 12.0 and raw.loc["Xx"].isna().all()
    with pytest.raises(ValueError, match="no material id is an element symbol"):
        material_features(tiny_data.materials, "magpie")


def test_rdkit_features():
    pytest.importorskip("rdkit")
    pytest.importorskip("mrl.descriptors")
    mats = pd.DataFrame({"material_id": ["W", "E", "X", "N"], "smiles": ["O", "CCO", "not a smiles", None]})
    raw = material_features(mats, "rdkit")
    assert list(raw.index) == ["W", "E", "X", "N"]
    assert raw.loc[["W", "E"]].notna().any(axis=1).all() and raw.loc[["X", "N"]].isna().all(axis=None)
    with pytest.raises(ValueError, match="smiles"):
        material_features(mats.drop(columns="smiles"), "rdkit")


def test_formula_ids_get_stoichiometry_weighted_compound_rows(monkeypatch):
    table = pd.DataFrame({"mass": [28.0, 16.0, 27.0, 23.0], "chi": [1.9, 3.4, 1.6, np.nan]},
                         index=pd.Index(["Si", "O", "Al", "Na"], name="element"))
    monkeypatch.setattr("mrl.elements.element_table", lambda name: table)
    mats = pd.DataFrame({"material_id": ["SiO2", "Al2O3", "Na2O", "Si"]})
    raw = material_features(mats, "magpie")
    assert list(raw.index) == ["SiO2", "Al2O3", "Na2O", "Si"]
    assert list(raw.columns) == ["mass", "chi", "cation_mass", "cation_chi", "n_cations", "O_per_cation"]
    assert raw.loc["SiO2", "mass"] == pytest.approx((28.0 + 2 * 16.0) / 3)
    assert raw.loc["Al2O3", "chi"] == pytest.approx((2 * 1.6 + 3 * 3.4) / 5)
    assert raw.loc["Al2O3", "cation_mass"] == 27.0 and raw.loc["Al2O3", "n_cations"] == 2.0
    assert raw.loc["Al2O3", "O_per_cation"] == pytest.approx(1.5)
    assert raw.loc["Na2O", "O_per_cation"] == pytest.approx(0.5) and np.isnan(raw.loc["Na2O", "chi"])
    assert raw.loc["Si", "mass"] == 28.0 and raw.loc["Si", "cation_mass"] == 28.0
    assert raw.loc["Si", "n_cations"] == 1.0 and raw.loc["Si", "O_per_cation"] == 0.0
    # an id that is neither an element nor a formula of the table's elements is a clear error naming it
    bad = pd.DataFrame({"material_id": ["SiO2", "glass frit"]})
    with pytest.raises(ValueError, match="'glass frit'"):
        material_features(bad, "magpie")
    with pytest.raises(ValueError, match="'K2O'"):
        material_features(pd.DataFrame({"material_id": ["SiO2", "K2O"]}), "magpie")
    # a new material (drop_empty=False) that does not parse gets a NaN row
    new = material_features(pd.DataFrame({"material_id": ["Al2O3", "frit"]}), "magpie", drop_empty=False)
    assert new.loc["frit"].isna().all() and new.loc["Al2O3", "cation_mass"] == 27.0


def test_pure_element_ids_keep_the_element_table_rows_bitwise():
    from mrl.elements import element_table

    table = element_table("magpie")
    mats = pd.DataFrame({"material_id": ["Fe", "O", "Si", "Na", "Xx"]})
    raw = material_features(mats, "magpie")
    expected = table.reindex(["Fe", "O", "Si", "Na", "Xx"]).astype(np.float64)
    expected = expected.loc[:, expected.notna().any()]
    assert list(raw.columns) == list(expected.columns)
    assert np.array_equal(raw.to_numpy(), expected.to_numpy(), equal_nan=True)
    assert not any(c.startswith("cation_") for c in raw.columns)


def test_oxide_formula_features_fit_a_model():
    from mrl.data import load_formulas

    rng = np.random.default_rng(0)
    oxides = ["SiO2", "Al2O3", "Na2O", "CaO", "MgO"]
    rows, props = [], []
    for f in range(80):
        c = rng.dirichlet(np.ones(len(oxides))) * 100
        rows += [(f"F{f}", o, float(v)) for o, v in zip(oxides, c)]
        props.append({"formula_id": f"F{f}", "viscosity": float(np.exp(c[0] / 50 - c[2] / 40))})
    data = load_formulas(pd.DataFrame(rows, columns=["formula_id", "material_id", "content"]),
                         pd.DataFrame(props), name="oxides")
    est = MixtureRegressor(embedding_dim=4, features="magpie", steps=20, batch_size=32, progress=False,
                           device="cpu", seed=0).fit(data)
    assert "O_per_cation" in est.feature_scaler_.columns and "cation_Electronegativity" in est.feature_scaler_.columns
    new = est.material_feature_rows(pd.DataFrame({"material_id": ["K2O"]}))
    assert new.shape == (1, len(est.feature_scaler_.names)) and np.isfinite(new).all()
