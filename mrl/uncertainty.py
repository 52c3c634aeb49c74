"""Prediction intervals: members' spread scaled on held-out calibration formulas (split conformal).

An ensemble's members disagree more where the data say less, but their raw spread is not an interval: members
share the training data and the model's bias. :func:`calibrate` learns, on formulas held out of training (the
``calib`` part of the training split, never eval or test), the factor ``q_p`` by which the spread must be widened
so that a share ``p`` of held-out measurements falls inside ``mean +- q_p * spread``. With a single model the
spread is taken as 1, so the interval is the held-out residuals' quantile: the same width everywhere.

Everything here works in the *model's* units (log10 of the property for a log-transformed target), where errors
are roughly symmetric; :func:`interval` returns bounds in the property's own units.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy.stats import norm

#: Nominal coverages of the intervals every prediction gets.
LEVELS = (0.8, 0.95)
#: A member spread below this share of the calibration formulas' median spread is raised to it, so a formula the
#: members happen to agree on does not get a zero-width interval.
SPREAD_FLOOR = 0.1


@dataclass
class Calibration:
    """Scale factors ``q`` per nominal level, learned on ``n`` held-out measurements.

    Attributes:
        levels: nominal coverage -> factor ``q`` (interval ``mean +- q * spread``, model units).
        spread_floor: smallest spread used (model units).
        n: number of calibration measurements.
        n_members: ensemble size the factors were learned for (1: constant-width intervals).
        transform: ``"log10"`` or ``"none"``: the model units.
        method: a sentence saying how the factors were obtained.
    """

    levels: dict[float, float]
    spread_floor: float
    n: int
    n_members: int
    transform: str
    method: str = field(default="split conformal: empirical quantile of |y - mean| / spread on held-out formulas")

    def to_dict(self) -> dict:
        """Plain values for ``calibration.json``."""
        out = asdict(self)
        out["levels"] = {str(k): v for k, v in self.levels.items()}
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "Calibration":
        """Rebuild from :meth:`to_dict`."""
        return cls(**{**values, "levels": {float(k): float(v) for k, v in values["levels"].items()}})


def to_model_units(y: np.ndarray, transform: str) -> np.ndarray:
    """Property units -> model units (``log10`` for a log-transformed target)."""
    y = np.asarray(y, np.float64)
    return np.log10(y) if transform == "log10" else y


def from_model_units(t: np.ndarray, transform: str) -> np.ndarray:
    """Model units -> property units (inverse of :func:`to_model_units`)."""
    return np.power(10.0, t) if transform == "log10" else np.asarray(t, np.float64)


def member_summary(member_predictions: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over members in model units; ``member_predictions`` in property units, shape
    ``(n_members, n)``. One member gives a spread of ones (constant-width intervals)."""
    t = to_model_units(np.atleast_2d(member_predictions), transform)
    spread = t.std(axis=0, ddof=1) if t.shape[0] > 1 else np.ones(t.shape[1])
    return t.mean(axis=0), spread


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level) / n`` empirical quantile of ``scores`` (finite-sample split-conformal rule)."""
    scores = np.sort(np.asarray(scores, np.float64))
    n = len(scores)
    if n == 0:
        return float("nan")
    k = min(n, max(1, math.ceil((n + 1) * level)))
    return float(scores[k - 1])


def calibrate(y: np.ndarray, member_predictions: np.ndarray, transform: str,
              levels: Sequence[float] = LEVELS) -> Calibration:
    """Learn the interval factors from held-out measurements ``y`` (property units, shape ``(n,)``) and the members'
    predictions of them (shape ``(n_members, n)``)."""
    mean, spread = member_summary(member_predictions, transform)
    floor = SPREAD_FLOOR * float(np.median(spread)) if len(spread) else 0.0
    scores = np.abs(to_model_units(y, transform) - mean) / np.maximum(spread, floor)
    return Calibration({float(p): conformal_quantile(scores, p) for p in levels}, floor, int(len(y)),
                       int(np.atleast_2d(member_predictions).shape[0]), transform)


def interval(mean: np.ndarray, spread: np.ndarray, calibration: Calibration, level: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds (property units) of the nominal ``level`` interval; ``mean``/``spread`` in model
    units."""
    half = calibration.levels[float(level)] * np.maximum(spread, calibration.spread_floor)
    return from_model_units(mean - half, calibration.transform), from_model_units(mean + half, calibration.transform)


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of ``y`` inside ``[lower, upper]`` (NaN for no values)."""
    y = np.asarray(y, np.float64)
    return float(np.mean((y >= lower) & (y <= upper))) if len(y) else float("nan")


def hit_probability(mean: np.ndarray, spread: np.ndarray, calibration: Calibration, lower: float, upper: float,
                    extra_sd: np.ndarray | float = 0.0) -> np.ndarray:
    """Calibrated probability that the true value lies in ``[lower, upper]`` (property units), per row.

    The predictive distribution is taken as normal in model units around the members' ``mean`` with the standard
    deviation that gives the calibrated 80 % interval its width: ``q_0.8 * max(spread, floor) / z_0.9`` (``z_0.9``
    = 1.2816, the normal's 90th percentile). It is calibrated where the intervals are (the 80 % interval holds 80 %
    of it); its tails are an assumption. ``mean``/``spread`` in model units, shape ``(n,)``. ``extra_sd`` (model
    units) is added in quadrature: an uncertainty the calibration does not see (e.g. of a designed move).
    """
    mean = np.asarray(mean, np.float64)
    sigma = calibration.levels[0.8] * np.maximum(np.asarray(spread, np.float64), calibration.spread_floor) / Z_80
    sigma = np.hypot(sigma, np.asarray(extra_sd, np.float64))
    lo, hi = to_model_units(np.array([lower, upper]), calibration.transform)
    return norm.cdf((hi - mean) / sigma) - norm.cdf((lo - mean) / sigma)


#: The standard normal's 90th percentile: the half-width of a central 80 % interval in standard deviations.
Z_80 = 1.2815515655446004
