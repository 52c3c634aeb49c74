"""Comparisons put into words from the numbers they compare, never by hand.

Every sentence of the report, the train summary and the README's generated tables that says one model is better than
another goes through :func:`compare`: it decides "below", "above" or "within the spread of" from the two scores and
their spread, and says "single run" where a score has no spread. A changed number changes the sentence.

A :class:`Score` is one error figure: a single run's value, or the mean and SD over several seeds or folds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: The verdicts of :func:`compare`, from the first score's point of view (errors: lower is better).
BETTER, WORSE, TIE = "better", "worse", "tie"


@dataclass(frozen=True)
class Score:
    """An error figure: ``value`` of a single run (``n == 1``), or the mean and SD over ``n`` seeds or folds."""

    value: float
    sd: float | None = None
    n: int = 1
    over: str = "seeds"  # what the n runs are: "seeds", "folds" or "splits"
    note: str = ""  # said instead of "single run" for a figure that is not one of our runs ("published, quoted")

    @classmethod
    def of(cls, values: Sequence[float] | float, over: str = "seeds") -> "Score":
        """A score from one value or from several (mean and sample SD, ``ddof=1``)."""
        arr = np.atleast_1d(np.asarray(values, np.float64))
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return cls(float("nan"))
        if arr.size == 1:
            return cls(float(arr[0]))
        return cls(float(arr.mean()), float(arr.std(ddof=1)), int(arr.size), over)

    @property
    def spread(self) -> float:
        """The SD, or 0 for a single run."""
        return 0.0 if self.sd is None or self.n < 2 else float(self.sd)

    def text(self, unit: str = "", digits: int = 3) -> str:
        """``0.342 log10 (single run)`` or ``0.342 ± 0.012 log10 (mean ± SD over 3 seeds)`` (or ``0.446 eV
        (published, quoted)`` with a ``note``)."""
        suffix = f" {unit}" if unit else ""
        if self.n < 2 or self.sd is None:
            return f"{format_number(self.value, digits)}{suffix} ({self.note or 'single run'})"
        return (f"{format_number(self.value, digits)} ± {format_number(self.sd, digits)}{suffix} "
                f"(mean ± SD over {self.n} {self.over})")


def _as_score(score: Score | float) -> Score:
    return score if isinstance(score, Score) else Score(float(score))


def decimals_for(value: float, digits: int = 3) -> int:
    """Decimals that show ``value`` with about ``digits`` significant digits (0 for large values)."""
    if value is None or not math.isfinite(value) or value == 0:
        return 0
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def format_number(value: float, digits: int = 3, decimals: int | None = None) -> str:
    """About ``digits`` significant digits (or fixed ``decimals``), thousands separators, never e-notation
    (``4,700``, ``0.342``)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if value == 0:
        return "0"
    decimals = decimals_for(value, digits) if decimals is None else decimals
    return f"{value:,.{decimals}f}"


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`: the verdict for ``first`` and the words that say it."""

    verdict: str  # BETTER, WORSE or TIE for the first score
    relation: str  # "below", "above" or "within the spread of"
    difference: float  # first - second
    relative: float  # (first - second) / |second|
    sentence: str


def compare(first: Score | float, second: Score | float, first_name: str, second_name: str, what: str = "error",
            unit: str = "", lower_is_better: bool = True, digits: int = 3, tolerance: float = 0.0,
            difference_unit: str | None = None) -> Comparison:
    """Compare two scores and word the result.

    The two are "within the spread" of each other when their difference is at most the combined SD
    (``sqrt(sd1^2 + sd2^2)``; 0 for single runs) plus ``tolerance`` times the second's magnitude, or when both show
    the same at ``digits`` significant digits; otherwise the first is "below" or "above" the second.
    ``difference_unit`` names the unit of the difference where it differs from ``unit`` (``"percentage points"``
    for rates in %). Example: ``The eval MAE of mrl is 0.387 log10 (single run), above that of LightGBM, 0.342
    log10 (single run): LightGBM is better than mrl by 0.045 log10 (13 %).``
    """
    a, b = _as_score(first), _as_score(second)
    diff = a.value - b.value
    relative = diff / abs(b.value) if b.value else float("inf") if diff else 0.0
    margin = math.hypot(a.spread, b.spread) + tolerance * abs(b.value)
    head = f"The {what} of {first_name} is {a.text(unit, digits)}"
    other = f"that of {second_name}, {b.text(unit, digits)}"
    suffix = f" {unit}" if unit else ""
    if not (math.isfinite(a.value) and math.isfinite(b.value)):
        return Comparison(TIE, "not comparable with", diff, relative, f"{head}; {other}: not comparable.")
    if abs(diff) <= margin or format_number(a.value, digits) == format_number(b.value, digits):
        spread = "the spread" if margin > 0 else "rounding"
        return Comparison(TIE, "within the spread of", diff, relative,
                          f"{head}, within {spread} of {other}: a tie.")
    relation = "below" if diff < 0 else "above"
    first_wins = (diff < 0) == lower_is_better
    winner, loser = (first_name, second_name) if first_wins else (second_name, first_name)
    shown = max(decimals_for(a.value, digits), decimals_for(b.value, digits))  # the difference at the values' digits
    by_unit = suffix if difference_unit is None else f" {difference_unit}"
    share = f" ({abs(relative) * 100:,.0f} %)" if math.isfinite(relative) else ""  # no share of a zero
    by = f"{format_number(abs(diff), decimals=shown)}{by_unit}{share}"
    sentence = f"{head}, {relation} {other}: {winner} is better than {loser} by {by}."
    return Comparison(BETTER if first_wins else WORSE, relation, diff, relative, sentence)


def against_target(score: Score | float, target: float, what: str, target_name: str, unit: str = "",
                   digits: int = 3, tolerance: float = 0.0, goal: bool = False,
                   lower_is_better: bool = True, spread: bool = True) -> Comparison:
    """Word a score against a fixed target (a nominal coverage, a goal), not against another model.

    The score is "within" the target when they differ by at most ``tolerance`` plus the score's SD (without
    ``spread``: ``tolerance`` alone, for a goal such as "coverage within 5 points"), or show the same
    at ``digits`` significant digits; otherwise it is "below" or "above" it, by how much. With ``goal``, the sentence
    ends with whether the goal (below the target for errors, ``lower_is_better``) is met: only a score on the good
    side of the target meets it, whatever the spread. Example: ``The 80 % coverage of one model is 0.763 ± 0.018
    (mean ± SD over 3 splits), within 0.05 of the nominal 0.800.``
    """
    a = _as_score(score)
    diff = a.value - target
    relative = diff / abs(target) if target else float("inf") if diff else 0.0
    head = f"The {what} is {a.text(unit, digits)}"
    suffix = f" {unit}" if unit else ""
    shown_target = f"{format_number(target, digits)}{suffix}"
    if not (math.isfinite(a.value) and math.isfinite(target)):
        return Comparison(TIE, "not comparable with", diff, relative, f"{head}; {target_name} {shown_target}.")
    met = (diff < 0) == lower_is_better and diff != 0
    outcome = (": the goal is met" if met else ": the goal is missed") if goal else ""
    sd = a.spread if spread else 0.0
    margin = tolerance + sd
    if abs(diff) <= margin or format_number(a.value, digits) == format_number(target, digits):
        within = (f"{tolerance:g}{suffix}" if tolerance and not sd else f"{tolerance:g}{suffix} plus the spread"
                  if tolerance else "the spread" if sd else "rounding")
        return Comparison(TIE, "within", diff, relative,
                          f"{head}, within {within} of {target_name} {shown_target}{outcome}.")
    relation = "below" if diff < 0 else "above"
    shown = max(decimals_for(a.value, digits), decimals_for(target, digits))
    verdict = BETTER if (diff < 0) == lower_is_better else WORSE
    return Comparison(verdict, relation, diff, relative,
                      f"{head}, {relation} {target_name} {shown_target} by "
                      f"{format_number(abs(diff), decimals=shown)}{suffix}{outcome}.")


def best_of(scores: dict[str, Score | float], lower_is_better: bool = True) -> str:
    """The name of the best score (lowest error by default); NaN scores never win."""
    finite = {k: _as_score(v).value for k, v in scores.items() if math.isfinite(_as_score(v).value)}
    if not finite:
        raise ValueError("no finite score to choose from")
    return (min if lower_is_better else max)(finite, key=finite.get)


def capitalised(sentence: str) -> str:
    """``sentence`` with its first letter upper-case (a generated sentence placed at the start of a paragraph)."""
    return sentence[:1].upper() + sentence[1:]
