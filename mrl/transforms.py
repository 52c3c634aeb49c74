"""Target transforms: which scale a property is learned on, decided by one rule and explained.

A property that is positive and spans more than :data:`LOG_SPAN_DECADES` decades (viscosity) is learned as
``log10``; anything else as is. The decision is returned with its reason so a run can log it, and a property that
*would* be log-transformed but holds values <= 0 is an error naming them rather than a silent switch to ``none``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: ``auto`` takes log10 when the positive values span more than this many decades.
LOG_SPAN_DECADES = 2.0
TARGET_TRANSFORMS = ("none", "log10", "auto")


def spans_decades(values: np.ndarray, decades: float = LOG_SPAN_DECADES) -> bool:
    """True when every value is positive and max / min exceeds ``10 ** decades``."""
    values = np.asarray(values, np.float64).ravel()
    return bool(values.size and (values > 0).all() and values.max() / values.min() > 10 ** decades)


def resolve_target_transform(y: np.ndarray, choice: str = "auto", labels: Sequence[str] | None = None,
                             what: str = "target") -> tuple[str, str]:
    """Resolve ``choice`` (``none | log10 | auto``) for targets ``y``; return ``(transform, reason)``.

    Raises ValueError, naming up to five offending samples by ``labels`` (e.g. ``"formula F0012"``), when
    ``log10`` is asked for, or when ``auto`` would pick it from the positive values, but some values are <= 0:
    the user then chooses (fix the rows, or ``target_transform: none``).
    """
    if choice not in TARGET_TRANSFORMS:
        raise ValueError(f"target_transform must be one of {TARGET_TRANSFORMS}, got {choice!r}")
    y = np.asarray(y, np.float64).ravel()
    bad = np.flatnonzero(~(y > 0))
    positive = y[y > 0]
    span = float(np.log10(positive.max() / positive.min())) if positive.size else 0.0

    def named() -> str:
        shown = [f"{labels[i] if labels is not None else f'sample {i}'} = {y[i]:g}" for i in bad[:5]]
        return ", ".join(shown) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")

    if choice == "none":
        return "none", "target_transform: none (asked for)"
    if choice == "log10":
        if bad.size:
            raise ValueError(f"{what}: target_transform log10 needs positive values; {bad.size} are <= 0 "
                             f"({named()}); fix or remove them, or set target_transform: none")
        return "log10", "target_transform: log10 (asked for)"
    if not bad.size:
        if span > LOG_SPAN_DECADES:
            return "log10", f"auto: positive and spanning {span:.1f} decades (> {LOG_SPAN_DECADES:g}) -> log10"
        return "none", f"auto: spans {span:.1f} decades (<= {LOG_SPAN_DECADES:g}) -> none"
    if positive.size and span > LOG_SPAN_DECADES:
        raise ValueError(f"{what}: target_transform auto would learn log10 (the positive values span {span:.1f} "
                         f"decades) but {bad.size} value(s) are <= 0 ({named()}); fix or remove those rows, or "
                         f"set target_transform: none to learn the raw values")
    return "none", f"auto: {bad.size} value(s) <= 0 and the positive ones span {span:.1f} decades -> none"
