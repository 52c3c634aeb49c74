"""The metrics a formulator reads for a log target (mrl.metrics.log_target_metrics, describe_split)."""
from __future__ import annotations

import numpy as np

from mrl.metrics import describe_split, log_target_metrics, regression_metrics


def test_log_target_metrics():
    y = np.array([100.0, 100.0, 100.0, 100.0])
    pred = np.array([110.0, 150.0, 250.0, 40.0])  # within 20 %: 1; within 2x: 2
    m = log_target_metrics(y, pred)
    assert m["within_20pct"] == 0.25 and m["within_2x"] == 0.5
    assert np.isclose(m["mae_log10"], np.mean(np.abs(np.log10(pred / y))))
    assert np.isnan(log_target_metrics(np.array([1.0, -1.0]), np.array([1.0, 1.0]))["mae_log10"])


def test_the_summary_names_each_view():
    y, pred = np.array([10.0, 100.0, 1000.0]), np.array([12.0, 90.0, 2000.0])
    line = describe_split("eval", {**regression_metrics(y, pred), **log_target_metrics(y, pred)}, "viscosity")
    assert line.startswith("eval: on log10") and "within 2x" in line and "in viscosity's units: MAE 337.3" in line
    plain = describe_split("eval", regression_metrics(y, pred), "density")
    assert "log10" not in plain and "MAE 337.3" in plain
