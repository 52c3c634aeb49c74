"""Measurement conditions (temperature, pressure) through the whole estimator: fit, predict, vectors, errors.

The fixture is built here: a small melt-like data set whose log10 viscosity follows a VFT law
``A(x) + B(x) / (T - C)`` with composition-dependent ``A`` and ``B``, measured at several temperatures.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mrl.data import load_formulas
from mrl.estimator import MixtureRegressor
from mrl.model import make_batch
from mrl.params import RunParams
from mrl.tables import DataError

torch.set_num_threads(1)

N_MATERIALS, N_FORMULAS, N_T = 6, 80, 5


def melt_tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Formulas (fractions) and one property row per (formula, temperature): ``viscosity`` in log10 units."""
    rng = np.random.default_rng(seed)
    a = rng.normal(-4.0, 0.5, N_MATERIALS)  # per-material contribution to A
    b = rng.uniform(3000.0, 9000.0, N_MATERIALS)  # per-material contribution to B (all > 0)
    forms, props = [], []
    for f in range(N_FORMULAS):
        k = int(rng.integers(2, 4))
        mats = rng.choice(N_MATERIALS, k, replace=False)
        c = rng.dirichlet(np.ones(k))
        fid = f"F{f:03d}"
        forms += [(fid, f"M{m}", float(cc)) for m, cc in zip(mats, c)]
        A, B = float(c @ a[mats]), float(c @ b[mats])
        for T in np.sort(rng.uniform(900.0, 1800.0, N_T)):
            props.append({"formula_id": fid, "T": float(T), "P": float(rng.choice([0.0, 1.0])),
                          "viscosity": A + B / (T - 400.0)})
    return pd.DataFrame(forms, columns=["formula_id", "material_id", "content"]), pd.DataFrame(props)


@pytest.fixture(scope="module")
def melt():
    forms, props = melt_tables()
    return load_formulas(forms, props, targets="viscosity", conditions=["T", "P"], content_unit="fraction",
                         name="melt_tiny")


def _fit(data, **kw) -> MixtureRegressor:
    params = dict(embedding_dim=4, hidden=[32, 32], steps=600, batch_size=64, lr=1e-2, content_scale="none",
                  pin_origin=None, target_transform="none", inverse_conditions=["T"], eval_every=600,
                  snapshot_every=600, checkpoint_every=600, progress=False, device="cpu", seed=0)
    params.update(kw)
    return MixtureRegressor(**params).fit(data)


@pytest.fixture(scope="module")
def direct_est(melt):
    return _fit(melt, head="direct")


@pytest.fixture(scope="module")
def vft_est(melt):
    return _fit(melt, head="vft")


def _at_temperature(data, T: float):
    """The same measurements with every temperature set to ``T``."""
    props = data.properties.copy()
    props["T"] = T
    return load_formulas(data.formulas, props, data.materials, targets="viscosity", conditions=["T", "P"],
                         content_unit="fraction", name=data.name)


# --------------------------------------------------------------------------------------------- conditions matter
def test_fit_beats_the_mean_so_later_checks_are_meaningful(melt, direct_est, vft_est):
    y = melt.target_values()
    base = np.sqrt(np.mean((y - y.mean()) ** 2))
    for est in (direct_est, vft_est):
        rmse = np.sqrt(np.mean((est.predict(melt) - y) ** 2))
        assert rmse < 0.5 * base, (est.head, rmse, base)


def test_conditions_enter_the_regressor_and_change_the_prediction(melt, direct_est):
    cold = direct_est.predict(_at_temperature(melt, 950.0))
    hot = direct_est.predict(_at_temperature(melt, 1750.0))
    assert np.abs(cold - hot).min() > 0
    # the fixture's viscosity falls with T by ~2-7 log units between these temperatures: the model learned it
    assert np.median(cold - hot) > 1.0
    assert direct_est.conditions_ == ["T", "P"]


def test_material_vectors_do_not_depend_on_conditions(melt, direct_est):
    before = direct_est.embeddings()
    direct_est.predict(_at_temperature(melt, 950.0))
    direct_est.predict(_at_temperature(melt, 1750.0))
    after = direct_est.embeddings()
    cols = [c for c in before.columns if c.startswith("e") and c[1:].isdigit()]
    np.testing.assert_array_equal(before[cols].to_numpy(), after[cols].to_numpy())
    # the mixture vector of a batch is the same whatever its conditions; only the condition features move
    matrix, rows = melt.content_matrix(), np.arange(10)
    module = direct_est.module_
    with torch.no_grad():
        b1 = make_batch(matrix, rows, np.column_stack([np.full(10, 950.0), np.zeros(10)]))
        b2 = make_batch(matrix, rows, np.column_stack([np.full(10, 1750.0), np.ones(10)]))
        f1, f2 = module.head_features(b1), module.head_features(b2)
    dim = direct_est.embedding_dim
    torch.testing.assert_close(f1[:, :dim], f2[:, :dim], rtol=0, atol=0)
    torch.testing.assert_close(module.mixture(b1), f1[:, :dim], rtol=0, atol=0)
    assert not torch.equal(f1[:, dim:], f2[:, dim:])


def test_vft_head_is_monotone_decreasing_in_temperature(melt, vft_est):
    grid = np.linspace(700.0, 2200.0, 40)  # wider than the training range (900-1800 K)
    formulas = melt.formula_ids[:15]
    matrix = melt.content_matrix()[:15]
    rows = np.repeat(np.arange(15), len(grid))
    cond = np.column_stack([np.tile(grid, 15), np.zeros(len(rows))])
    pred = vft_est.predict_matrix(matrix[rows], cond).reshape(15, len(grid))
    assert np.all(np.diff(pred, axis=1) <= 1e-9), formulas
    # and it is not flat: each curve drops over the grid (unless clipped at the training range on both ends)
    assert np.all(pred[:, 0] - pred[:, -1] > 0.5)


def test_direct_head_is_not_constrained_to_be_monotone_but_fits_the_trend(melt, direct_est):
    grid = np.linspace(950.0, 1750.0, 9)
    matrix = melt.content_matrix()[:5]
    rows = np.repeat(np.arange(5), len(grid))
    cond = np.column_stack([np.tile(grid, 5), np.zeros(len(rows))])
    pred = direct_est.predict_matrix(matrix[rows], cond).reshape(5, len(grid))
    assert np.all(pred[:, 0] > pred[:, -1])


# --------------------------------------------------------------------------------------------- errors
def test_missing_condition_column_at_predict_time_is_a_clear_error(melt, direct_est):
    props = melt.properties.drop(columns=["P"])
    data = load_formulas(melt.formulas, props, melt.materials, targets="viscosity", conditions=["T"],
                         content_unit="fraction", name="no_pressure")
    with pytest.raises(DataError, match=r"no_pressure.*\['P'\].*missing"):
        direct_est.predict(data)


def test_nan_condition_at_predict_time_is_an_error(melt, direct_est):
    props = melt.properties.copy()
    props.loc[3, "T"] = np.nan
    bad = type(melt)(melt.formulas, props, melt.materials, melt.targets, melt.conditions, "nan_t")
    with pytest.raises(DataError, match="NaN"):
        direct_est.predict(bad)


def test_nan_condition_in_the_loader_names_file_row_and_column(tmp_path):
    forms, props = melt_tables()
    props.loc[7, "T"] = np.nan
    fpath, ppath = tmp_path / "formulas.csv", tmp_path / "properties.csv"
    forms.to_csv(fpath, index=False)
    props.to_csv(ppath, index=False)
    with pytest.raises(DataError) as info:
        load_formulas(fpath, ppath, targets="viscosity", conditions=["T", "P"])
    msg = str(info.value)
    assert "properties.csv" in msg and "row 7" in msg and "line 9" in msg and "'T'" in msg and "NaN" in msg


def test_text_in_a_condition_column_names_the_value(tmp_path):
    forms, props = melt_tables()
    props["P"] = props["P"].astype(object)
    props.loc[2, "P"] = "high"
    with pytest.raises(DataError, match=r"row 2.*'P'.*'high'"):
        load_formulas(forms, props, targets="viscosity", conditions=["T", "P"])


def test_missing_condition_column_in_the_loader_is_an_error():
    forms, props = melt_tables()
    with pytest.raises(DataError, match=r"missing column.*'shear_rate'"):
        load_formulas(forms, props, targets="viscosity", conditions=["T", "shear_rate"])


def test_vft_head_without_a_temperature_condition_is_a_clear_error(melt):
    no_t = load_formulas(melt.formulas, melt.properties, melt.materials, targets="viscosity", conditions=["P"],
                         content_unit="fraction", name="pressure_only")
    with pytest.raises(ValueError, match=r"vft.*temperature.*'T'"):
        MixtureRegressor(head="vft", steps=5, progress=False, device="cpu").fit(no_t)
    no_cond = load_formulas(melt.formulas, melt.properties, melt.materials, targets="viscosity",
                            content_unit="fraction", name="no_conditions")
    with pytest.raises(ValueError, match="vft"):
        MixtureRegressor(head="vft", steps=5, progress=False, device="cpu").fit(no_cond)
    with pytest.raises(ValueError, match=r"vft.*temperature"):
        RunParams.from_dict({"head": "vft", "conditions": ["P"]})


def test_inverse_conditions_naming_a_non_condition_is_an_error(melt):
    with pytest.raises(ValueError, match=r"inverse_conditions.*'Temp'"):
        MixtureRegressor(inverse_conditions=["Temp"], steps=5, progress=False, device="cpu").fit(melt)
    with pytest.raises(ValueError, match=r"inverse_conditions.*'Temp'"):
        RunParams.from_dict({"conditions": ["T", "P"], "inverse_conditions": ["Temp"]})


def test_inverse_temperature_is_what_the_head_sees(melt, direct_est):
    module = direct_est.module_
    assert module.cond_inverse.tolist() == [True, False]
    expected = 1000.0 / melt.properties["T"].to_numpy()
    assert np.isclose(float(module.cond_mean[0]), expected.mean(), rtol=1e-4)
