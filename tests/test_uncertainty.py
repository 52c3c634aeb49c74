"""Calibrated intervals, coverage, and the training-domain flags (pure numpy parts)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mrl.domain import Domain
from mrl.ensemble import member_seed, neighbour_stability
from mrl.uncertainty import calibrate, conformal_quantile, coverage, interval, member_summary


def test_coverage_counts_values_inside_closed_bounds():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert coverage(y, np.array([0, 2, 3.5, 0]), np.array([1, 3, 4, 3.9])) == 0.5
    assert np.isnan(coverage(np.array([]), np.array([]), np.array([])))


def test_conformal_quantile_uses_the_finite_sample_rank():
    scores = np.arange(1, 11, dtype=float)  # n = 10
    assert conformal_quantile(scores, 0.8) == 9.0  # ceil(11 * 0.8) = 9
    assert conformal_quantile(scores, 0.95) == 10.0


def test_calibrated_intervals_cover_about_their_nominal_share():
    rng = np.random.default_rng(0)
    n = 4000
    sigma = rng.uniform(0.1, 1.0, n)  # heteroscedastic truth, members' spread proportional to it
    truth = rng.normal(size=n)
    y = truth + rng.normal(size=n) * sigma
    members = truth + rng.normal(size=(5, n)) * sigma * 0.5
    cal = calibrate(y[:2000], members[:, :2000], "none")
    mean, spread = member_summary(members[:, 2000:], "none")
    for level in (0.8, 0.95):
        lo, hi = interval(mean, spread, cal, level)
        assert abs(coverage(y[2000:], lo, hi) - level) < 0.03


def test_log_target_intervals_are_computed_in_log10_and_returned_in_units():
    members = np.array([[10.0, 100.0], [10.0, 1000.0]])
    mean, spread = member_summary(members, "log10")
    assert np.allclose(mean, [1.0, 2.5])
    cal = calibrate(np.array([10.0, 300.0]), members, "log10")
    lo, hi = interval(mean, spread, cal, 0.8)
    assert (lo > 0).all() and (lo < 10 ** mean).all() and (hi > 10 ** mean).all()


def _domain() -> Domain:
    # 3 materials; training formulas use M0 at 50-70 %, M1 at 30-50 %; M2 never
    train = sp.csr_matrix(np.array([[0.5, 0.5, 0], [0.7, 0.3, 0], [0.6, 0.4, 0]]))
    calib = sp.csr_matrix(np.array([[0.55, 0.45, 0]]))
    mix = np.array([[0.0, 1.0], [0.2, 0.8], [0.1, 0.9]])
    return Domain.build(train, mix, np.array([[300.0], [320.0], [340.0]]), ["M0", "M1", "M2"], ["T"],
                        calib, np.array([[0.05, 0.95]]))


def test_domain_flags_each_reason():
    dom = _domain()
    query = sp.csr_matrix(np.array([[0.6, 0.4, 0], [0.95, 0.05, 0], [0.5, 0.2, 0.3], [0.6, 0.4, 0]]))
    flags = dom.flags(query, np.array([[0.1, 0.9], [0.3, 0.7], [5.0, 5.0], [0.1, 0.9]]),
                      np.array([[310.0], [310.0], [310.0], [400.0]]), unknown=[[], [], ["NEW"], []])
    assert flags["out_of_domain"].tolist() == [False, True, True, True]
    assert flags.loc[1, "flag_content"] and "M0 at 95 %" in flags.loc[1, "reasons"]
    assert flags.loc[2, "flag_unknown"] and flags.loc[2, "flag_content"] and flags.loc[2, "flag_mixture"]
    assert "never in training" in flags.loc[2, "reasons"] and "NEW" in flags.loc[2, "reasons"]
    assert flags.loc[3, "flag_condition"] and "T = 400" in flags.loc[3, "reasons"]
    assert flags.loc[1, "flag_distance"] and not flags.loc[0, "flag_distance"]


def test_domain_survives_its_file_and_extends_to_new_materials(tmp_path):
    dom = _domain()
    again = Domain.load(dom.save(tmp_path / "domain.npz"))
    assert again.material_ids.tolist() == ["M0", "M1", "M2"]
    assert (again.train_matrix != dom.train_matrix).nnz == 0 and again.distance_threshold == dom.distance_threshold
    wider = again.extended(["M0", "M1", "M2", "NEW"])
    flags = wider.flags(sp.csr_matrix(np.array([[0.6, 0.3, 0, 0.1]])), np.array([[0.1, 0.9]]), np.array([[310.0]]))
    assert flags.loc[0, "flag_content"] and "NEW" in flags.loc[0, "reasons"]
    with pytest.raises(ValueError):
        again.extended(["X"])


def test_members_get_distinct_seeds_and_member_zero_keeps_the_runs():
    assert member_seed(3, 0) == 3 and len({member_seed(s, k) for s in range(5) for k in range(5)}) == 25


def test_neighbour_stability_is_one_for_rotated_copies_and_lower_for_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    table = pd.DataFrame(X, columns=[f"e{i}" for i in range(4)]).assign(
        material_id=[f"M{i}" for i in range(40)], n_formulas=5, norm=np.linalg.norm(X, axis=1), pinned=False)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    rotated = table.copy()
    rotated[[f"e{i}" for i in range(4)]] = X @ q
    noisy = table.copy()
    noisy[[f"e{i}" for i in range(4)]] = rng.normal(size=(40, 4))
    assert neighbour_stability([table, rotated], k=5)["neighbour_agreement"].min() == 1.0
    assert neighbour_stability([table, noisy], k=5)["neighbour_agreement"].mean() < 0.5
