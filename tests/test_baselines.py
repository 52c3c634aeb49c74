"""Tests of mrl.baselines on tiny hand-made data (no network)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mrl import baselines as bl
from mrl import public_data as ds
from mrl import wheels
from mrl.data import load_formulas

FIXTURES = Path(__file__).parent / "fixtures"
REAL_CRABNET = (wheels.cache_dir() / "wheels" / "crabnet-2.0.8-py3-none-any.whl").exists()


def _alloys():
    """Three formulas of two elements A=Fe, B=Ni; the second measured twice (two conditions)."""
    formulas = pd.DataFrame({"formula_id": ["f1", "f1", "f2", "f2", "f3"],
                             "material_id": ["Fe", "Ni", "Fe", "Ni", "Ni"],
                             "content": [0.25, 0.75, 0.5, 0.5, 1.0]})
    props = pd.DataFrame({"formula_id": ["f1", "f2", "f2", "f3"], "y": [1.0, 2.0, 3.0, 4.0],
                          "T": [500.0, 1000.0, 2000.0, 800.0], "P": [0.0, 0.1, 0.2, 0.0]})
    mats = pd.DataFrame({"material_id": ["Fe", "Ni"]})
    return load_formulas(formulas, props, mats, targets="y", conditions=("T", "P"), content_unit="fraction")


TABLE = pd.DataFrame({"p": [10.0, 20.0], "q": [1.0, np.nan]}, index=["Fe", "Ni"])


def test_fraction_matrix():
    data = _alloys()
    np.testing.assert_allclose(bl.fraction_matrix(data), [[0.25, 0.75], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])


def test_magpie_features_hand_table():
    data = _alloys()
    X = bl.magpie_features(data, TABLE)
    names = bl.magpie_feature_names(TABLE)
    assert X.shape == (4, 10) and len(names) == 10
    feats = pd.DataFrame(X, columns=names)
    # fraction-weighted mean of p: 0.25*10 + 0.75*20 = 17.5
    np.testing.assert_allclose(feats["mean_p"], [17.5, 15.0, 15.0, 20.0])
    # weighted mean absolute deviation: 0.25*7.5 + 0.75*2.5 = 3.75
    np.testing.assert_allclose(feats["avg_dev_p"], [3.75, 5.0, 5.0, 0.0])
    np.testing.assert_allclose(feats["min_p"], [10, 10, 10, 20])
    np.testing.assert_allclose(feats["max_p"], [20, 20, 20, 20])
    np.testing.assert_allclose(feats["range_p"], [10, 10, 10, 0])
    # NaN of Ni in q is filled with the column mean (1.0): q is 1 everywhere
    np.testing.assert_allclose(feats["mean_q"], 1.0)
    only_mean = bl.magpie_features(data, TABLE, stats=("mean",))
    np.testing.assert_allclose(only_mean, feats[["mean_p", "mean_q"]].to_numpy())
    with pytest.raises(ValueError, match="unknown stats"):
        bl.magpie_features(data, TABLE, stats=("median",))


def test_magpie_features_expand_compounds_and_missing(caplog):
    formulas = pd.DataFrame({"formula_id": ["a", "a", "b"], "material_id": ["FeO", "NiO", "Fe2O3"],
                             "content": [0.5, 0.5, 1.0]})
    props = pd.DataFrame({"formula_id": ["a", "b"], "y": [0.0, 1.0]})
    data = load_formulas(formulas, props, targets="y", content_unit="fraction")
    table = pd.DataFrame({"p": [10.0, 20.0, 0.0]}, index=["Fe", "Ni", "O"])
    X = pd.DataFrame(bl.magpie_features(data, table), columns=bl.magpie_feature_names(table))
    # a: atoms Fe 0.25, Ni 0.25, O 0.5 -> mean 7.5; b (Fe2O3): Fe 0.4, O 0.6 -> mean 4
    np.testing.assert_allclose(X["mean_p"], [7.5, 4.0])
    np.testing.assert_allclose(X["max_p"], [20.0, 10.0])
    with caplog.at_level(logging.WARNING, logger="mrl.baselines"):
        partial = pd.DataFrame({"p": [10.0, 0.0]}, index=["Fe", "O"])
        Xp = bl.magpie_features(data, partial, stats=("mean",))
    assert "lacks ['Ni']" in caplog.text
    np.testing.assert_allclose(Xp[:, 0], [0.25 * 10 + 0.25 * 5, 4.0])  # Ni gets the column mean 5
    bad = load_formulas(pd.DataFrame({"formula_id": ["x"], "material_id": ["resin#1"], "content": [1.0]}),
                        pd.DataFrame({"formula_id": ["x"], "y": [1.0]}), targets="y")
    with pytest.raises(ValueError, match="neither in the element table nor a chemical formula"):
        bl.magpie_features(bad, table)


def test_condition_features():
    data = _alloys()
    X = bl.condition_features(data)
    assert bl.condition_feature_names(data) == ["T", "P", "1000/T"]
    np.testing.assert_allclose(X[:, 2], [2.0, 1.0, 0.5, 1.25])
    assert bl.condition_features(data, inverse_T=False).shape == (4, 2)
    no_cond = load_formulas(pd.DataFrame({"formula_id": ["x"], "material_id": ["Fe"], "content": [1.0]}),
                            pd.DataFrame({"formula_id": ["x"], "y": [1.0]}), targets="y")
    assert bl.condition_features(no_cond).shape == (1, 0)


def _linear(n=200, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X @ np.arange(1.0, d + 1.0) + 3.0


def test_fit_predict_estimators():
    X, y = _linear()
    Xtr, ytr, Xte, yte = X[:150], y[:150], X[150:], y[150:]
    assert set(bl.ESTIMATORS) == {"dummy", "ridge", "random_forest", "lightgbm"}
    np.testing.assert_allclose(bl.fit_predict("dummy", Xtr, ytr, Xte), ytr.mean())
    ridge = bl.fit_predict("ridge", Xtr, ytr, Xte)
    assert np.abs(ridge - yte).max() < 1e-2
    rf = bl.fit_predict("random_forest", Xtr, ytr, Xte, seed=1, n_estimators=20)
    gbm = bl.fit_predict("lightgbm", Xtr, ytr, Xte, seed=1, n_estimators=50)
    for pred in (rf, gbm):
        assert pred.shape == (50,) and np.corrcoef(pred, yte)[0, 1] > 0.8
    again = bl.fit_predict("random_forest", Xtr, ytr, Xte, seed=1, n_estimators=20)
    np.testing.assert_allclose(rf, again, rtol=1e-12)  # seeded (threads may reorder sums)
    with pytest.raises(KeyError, match="known"):
        bl.fit_predict("svm", Xtr, ytr, Xte)
    with pytest.raises(ValueError, match="equal columns"):
        bl.fit_predict("ridge", Xtr, ytr, Xte[:, :2])


def test_ridge_alpha_uses_training_part_only():
    X, y = _linear()
    model = bl.make_estimator("ridge")
    model.fit(X[:150], y[:150])
    alpha = model[-1].alpha_
    # test targets never reach the estimator: corrupting them changes nothing
    y_bad = y.copy()
    y_bad[150:] = 1e6
    model2 = bl.make_estimator("ridge").fit(X[:150], y_bad[:150])
    assert model2[-1].alpha_ == alpha


def test_ridge_clips_outlying_features():
    X, y = _linear()
    X = np.column_stack([X, np.zeros(len(X))])
    X[0, -1] = 1e-9  # almost constant in training ...
    y = y.copy()
    y[0] += 5.0  # ... and correlated with a residual, so the unclipped model leans on it
    Xte = X[150:].copy()
    Xte[:, -1] = 1.0  # ... and far outside on test rows: z-score ~ 1e10
    clipped = bl.fit_predict("ridge", X[:150], y[:150], Xte)
    assert np.abs(clipped - y[150:]).max() < 50
    raw = bl.fit_predict("ridge", X[:150], y[:150], Xte, clip=None)
    assert np.abs(raw - y[150:]).max() > 1e3


def test_cross_validate_and_scores():
    X, y = _linear(n=60)
    folds = [(np.arange(0, 40), np.arange(40, 60)), (np.arange(20, 60), np.arange(0, 20))]
    table = bl.cross_validate("ridge", X, y, folds)
    assert list(table.columns) == ["fold", "mae", "rmse", "r2", "n", "wall_s"]
    assert len(table) == 2 and (table["r2"] > 0.99).all()
    scores = bl.regression_scores([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert scores["mae"] == pytest.approx(2 / 3) and scores["rmse"] == pytest.approx(np.sqrt(4 / 3))


@pytest.mark.skipif(not REAL_CRABNET, reason="crabnet-2.0.8 wheel not cached (mrl.wheels.fetch_wheel)")
def test_real_magpie_on_steels():
    data = ds.load_dataset("matbench_steels", use_cache=False)
    X = bl.magpie_features(data)
    assert X.shape == (312, 22 * 5) and np.isfinite(X).all()
    assert bl.fraction_matrix(data).shape == (312, 14)
