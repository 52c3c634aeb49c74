"""Numbers in cells as people type them: ``12%``, ``1,5``, ``<0.1``, ``tr``, ``n.d.``, ``q.s.``, dates.

:func:`parse_number` reads one cell of a numeric column, by :class:`CellRules`, and says how it read it (the
loader, :mod:`mrl.data`, logs each kind once per column and names the first cell it cannot read);
:func:`column_key` is how headers are matched (``content (%)`` is ``content``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Mapping

import numpy as np
import pandas as pd

#: How a cell ``<x`` (below a detection limit) is read: an error, x / 2, 0, or x.
BELOW_LIMIT_POLICIES = ("error", "half", "zero", "limit")

_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:[,.'\s\u00a0\u202f]\d{3})+(?:[.,]\d+)?")

_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")

_NUMBER_WITH_TEXT = re.compile(r"[+-]?(?:\d+[.,]?\d*|[.,]\d+)(?:[eE][+-]?\d+)?\s*[%A-Za-z\u00b5\u00b0/].*")

_MISSING_MARKERS = frozenset({"", "n/a", "na", "nan", "null", "none", "-", "--", "?", "#n/a", "missing", "n.a.", "nd"})


def column_key(name: object) -> str:
    """A header as it is matched: a trailing unit in brackets dropped (``content (%)``, ``viscosity [cP]``), lower
    case, spaces, dots and dashes as ``_`` (``Formula ID`` -> ``formula_id``)."""
    text = re.sub(r"\s*[(\[][^()\[\]]*[)\]]\s*$", "", str(name).strip())
    return re.sub(r"[\s.\-]+", "_", text.strip().lower()).strip("_")


def header_unit(name: object) -> str:
    """The unit in a header's trailing brackets (``viscosity [cP]`` -> ``cP``, ``content (%)`` -> ``%``), or ""."""
    found = re.search(r"[(\[]([^()\[\]]*)[)\]]\s*$", str(name).strip())
    return found.group(1).strip() if found else ""


def _to_float(values: pd.Series) -> pd.Series:
    """``values`` as float64, NaN where a value is not a number (no exception for odd objects)."""
    try:
        out = pd.to_numeric(values, errors="coerce")
    except (OverflowError, TypeError, ValueError):
        out = values.map(_safe_float)
    return pd.Series(np.asarray(out, dtype=np.float64), index=values.index)


def _safe_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError):
        return float("inf") if isinstance(value, int) else float("nan")


@dataclass(frozen=True)
class CellRules:
    """How text in a numeric column is read (see :func:`parse_number`).

    Attributes:
        decimal: decimal mark of text numbers: ``","`` reads ``1,5`` as 1.5; ``"."`` makes it an error; None (the
            default) takes the table's own mark (a CSV's detected one; a sheet has none: there an unambiguous
            ``1,5`` is read as 1.5 with a note, while ``1,234`` stays an error).
        below_limit: a cell ``<0.1`` (below a detection limit): ``"error"`` (default), ``"half"`` (0.05),
            ``"zero"`` or ``"limit"`` (0.1).
        text_values: text read as a number, e.g. ``{"tr": 0.01, "n.d.": 0}`` (keys matched ignoring case).
    """

    decimal: str | None = None
    below_limit: str = "error"
    text_values: Mapping[str, float] = field(default_factory=dict)


DEFAULT_RULES = CellRules()


_NUMBER = r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?"

_PERCENT = re.compile(rf"({_NUMBER})\s*%")

_BELOW = re.compile(rf"<\s*({_NUMBER})\s*%?")

_ABOVE = re.compile(rf">\s*({_NUMBER})\s*%?")

_DATE_TEXT = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")

_TEXT_MARKERS = {
    "tr": "a trace marker", "tr.": "a trace marker", "trace": "a trace marker", "traces": "a trace marker",
    "n.d.": "'not detected'", "n.d": "'not detected'", "nd": "'not detected'", "n.n.": "'not detected'",
    "q.s.": "'quantum satis' (the balance)", "qs": "'quantum satis' (the balance)",
    "q.s": "'quantum satis' (the balance)", "ad": "'ad' (the balance)", "bal": "'balance'", "bal.": "'balance'",
    "balance": "'balance'", "rest": "'the rest'",
}

_NOTES = {"percent": "read as percent ('12%' -> 12)", "decimal comma": "with a decimal comma read as numbers",
          "text": "held numbers stored as text (read as numbers)", "below limit": "below a detection limit ('<x') read as "
          "{policy}", "mapped": "read through text_values"}


class _CellProblem(ValueError):
    """Why one cell is not a number (a phrase)."""


def _plain_number(text: str, decimal: str | None) -> tuple[float, str]:
    """A bare number in text, with ``text`` or ``decimal comma`` as how it was read."""
    if "," not in text:
        return float(text), "text"
    if decimal != "." and "." not in text and _DECIMAL_COMMA.fullmatch(text) and (
            decimal == "," or not _THOUSANDS.fullmatch(text)):
        return float(text.replace(",", ".")), "decimal comma"
    raise ValueError(text)


def parse_number(value: object, rules: CellRules = DEFAULT_RULES, decimal: str | None = None) -> tuple[float, str]:
    """One cell of a numeric column as a float, with how it was read: ``number``, ``text`` (a number stored as
    text), ``percent`` (``12%`` -> 12), ``decimal comma`` (``1,5`` -> 1.5; see :class:`CellRules`), ``below
    limit`` (``<0.1``, by ``rules.below_limit``), ``mapped`` (``rules.text_values``) or ``missing`` (NaN).

    ``decimal`` is the table's own decimal mark (``rules.decimal`` wins when set).

    Raises:
        ValueError: the cell is not a number; the message says why (a date, ``<0.1`` without a
            ``below_limit``, a marker such as ``tr``, ``n.d.`` or ``q.s.``, a thousands separator, a decimal comma
            where the decimal mark is a point, a unit, text).
    """
    decimal = rules.decimal or decimal
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return float("nan"), "missing"
    if isinstance(value, (datetime, date, time, pd.Timestamp)):
        raise _CellProblem(f"a date or time ({value}); the sheet turned a number into a date: format the column "
                           f"as Number and type the value again")
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return _safe_float(value), "number"
    text = str(value).replace("\u00a0", " ").strip()
    low = text.lower()
    mapped = {str(k).strip().lower(): v for k, v in rules.text_values.items()}
    if text == "":
        return float("nan"), "missing"
    if low in mapped:
        return float(mapped[low]), "mapped"
    if low in _TEXT_MARKERS:
        raise _CellProblem(f"{_TEXT_MARKERS[low]}; write the amount, or map it with text_values "
                           f"(e.g. text_values: {{{text!r}: 0}})")
    below = _BELOW.fullmatch(text)
    if below:
        if rules.below_limit == "error":
            raise _CellProblem("below a detection limit; write a value, or set below_limit (half, zero or limit)")
        limit = _plain_number(below.group(1), decimal)[0]
        return {"half": limit / 2, "zero": 0.0, "limit": limit}[rules.below_limit], "below limit"
    if _ABOVE.fullmatch(text):
        raise _CellProblem("above a measuring limit ('>x'); write a value or leave the measurement out")
    percent = _PERCENT.fullmatch(text)
    try:
        if percent:
            return _plain_number(percent.group(1), decimal)[0], "percent"
        return _plain_number(text, decimal)
    except ValueError:
        pass
    if _DATE_TEXT.fullmatch(text):
        raise _CellProblem("a date, not a number")
    kind = _number_kind(text)
    if kind == "decimal comma" and decimal == ".":
        raise _CellProblem(f"{_HINTS[kind].strip()[1:-1]}; the decimal mark here is '.'")
    raise _CellProblem(_HINTS[kind].strip()[1:-1] if kind else "text, not a number")


def _cell_key(value: object) -> object:
    """A hashable key that is equal for equal cells (every missing value is one key)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "\x00missing"
    return (type(value).__name__, value) if isinstance(value, (str, int, float)) else repr(value)


_HINTS = {
    "marker": " (a missing-value marker; fill in the value or drop the row)",
    "thousands": " (looks like a thousands separator; write the digits alone, e.g. 1234)",
    "decimal comma": " (looks like a decimal comma; write 1.5, or pass decimal=',')",
    "unit": " (a number followed by text, a unit?; put units in the column name)",
}


def _number_kind(text: str) -> str | None:
    """Which near-number ``text`` is: ``marker``, ``thousands``, ``decimal comma``, ``unit`` or None."""
    if text.lower() in _MISSING_MARKERS:
        return "marker"
    for kind, pattern in (("thousands", _THOUSANDS), ("decimal comma", _DECIMAL_COMMA), ("unit", _NUMBER_WITH_TEXT)):
        if pattern.fullmatch(text):
            return kind
    return None


def _looks_numeric(values: pd.Series) -> bool:
    """Whether a column holds (mostly) numbers, or text that reads as numbers (``1,234``, ``12 cP``, ``n/a``):
    at least one such value, and numbers or missing-value markers make up at least half of the filled cells."""
    if pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        return bool(values.notna().any())
    text = values.dropna().map(str).str.strip()
    text = text[text != ""]
    if text.empty:
        return False
    kinds = text.map(_number_kind)
    numeric = _to_float(text).notna() | kinds.isin(["thousands", "decimal comma", "unit"])
    return bool(numeric.any()) and float((numeric | (kinds == "marker")).mean()) >= 0.5
