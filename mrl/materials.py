"""Materials by code or name: what a formulator types (``Carbomer 001``, ``m00131``) -> the model's ``material_id``.

A run keeps its materials table (``material_id``, ``name``, ``family`` and any other column of the data's
``materials.csv``) in the model's vocabulary order, in ``embeddings.parquet`` and in every checkpoint
(``MixtureRegressor.materials_``). :class:`MaterialIndex` looks materials up there:

* an exact code or an exact name is taken as it is;
* a code or name that differs only in case or whitespace (``m00131``, ``carbomer  001``) is taken with a logged note;
* anything else is an error that suggests the closest codes and names (:mod:`difflib`).

:meth:`MaterialIndex.label` writes a material as a formulator reads it (``Carbomer 001 (M00131)``), and
:meth:`MaterialIndex.family_members` lists the materials of a family (or of any other column, e.g. ``role``).
"""
from __future__ import annotations

import difflib
import logging
import re
from typing import Iterable, Sequence

import pandas as pd

from mrl.analysis import UnknownMaterialError

log = logging.getLogger(__name__)
#: Closest codes/names suggested for an unknown one.
N_SUGGESTIONS = 5


class UnknownMaterial(UnknownMaterialError, ValueError):
    """A code or name that no material of the model has (a ``KeyError`` as :mod:`mrl.analysis` raises, and a
    ``ValueError`` as other bad input); the message suggests the closest codes and names."""


def _norm(text: object) -> str:
    """Case- and whitespace-insensitive key: lower case, inner runs of whitespace as one space, ends stripped."""
    return re.sub(r"\s+", " ", str(text)).strip().casefold()


class MaterialIndex:
    """Look-up of a materials table (``material_id`` and optionally ``name`` and descriptive columns)."""

    def __init__(self, materials: pd.DataFrame) -> None:
        if "material_id" not in materials.columns:
            raise ValueError(f"a materials table needs a material_id column; found {list(materials.columns)}")
        self.table = materials.reset_index(drop=True)
        self.ids = self.table["material_id"].astype(str).tolist()
        has_names = "name" in self.table.columns
        self.names = [str(n) if has_names and pd.notna(n) and str(n).strip() else ""
                      for n in (self.table["name"] if has_names else [None] * len(self.ids))]
        self._by_id = set(self.ids)
        self._by_name: dict[str, list[str]] = {}
        for mid, name in zip(self.ids, self.names):
            if name and name != mid:
                self._by_name.setdefault(name, []).append(mid)
        self._by_key: dict[str, list[str]] = {}
        for mid, name in zip(self.ids, self.names):
            for key in {_norm(mid), _norm(name)} - {""}:
                self._by_key.setdefault(key, [])
                if mid not in self._by_key[key]:
                    self._by_key[key].append(mid)

    @classmethod
    def of_model(cls, est) -> "MaterialIndex":
        """The index of a fitted :class:`~mrl.estimator.MixtureRegressor`'s vocabulary (``materials_``)."""
        return cls(est.materials_)

    def __contains__(self, material_id: object) -> bool:
        return str(material_id) in self._by_id

    def resolve(self, text: str, what: str = "material") -> str:
        """The ``material_id`` that ``text`` (a code or a name) names.

        Raises:
            UnknownMaterial: no material matches (the message suggests the closest codes and names), or a name
                that several materials share (the message lists their codes).
        """
        raw = str(text)
        if raw in self._by_id:
            return raw
        hits = self._by_name.get(raw)
        if hits is None:
            hits = self._by_key.get(_norm(raw))
            if hits is not None and len(hits) == 1:
                log.info("%s %r read as %s (case and whitespace ignored)", what, raw, self.label(hits[0]))
        if not hits:
            raise UnknownMaterial(f"unknown {what} {raw!r}: not in the model's vocabulary ({len(self.ids)} "
                                  f"materials)" + self._did_you_mean(raw))
        if len(hits) > 1:
            raise UnknownMaterial(f"{what} {raw!r} names {len(hits)} materials ({', '.join(hits[:10])}); "
                                       f"give the code")
        return hits[0]

    def find(self, text: str) -> str | None:
        """The one material that ``text`` names (code or name, case and whitespace aside), else None (no log)."""
        raw = str(text)
        if raw in self._by_id:
            return raw
        hits = self._by_name.get(raw) or self._by_key.get(_norm(raw)) or []
        return hits[0] if len(hits) == 1 else None

    def resolve_all(self, texts: Iterable[str], what: str = "material") -> list[str]:
        """:meth:`resolve` of every item, order kept, repeats dropped."""
        return list(dict.fromkeys(self.resolve(t, what) for t in texts))

    def _did_you_mean(self, raw: str) -> str:
        keys = {_norm(m): m for m in self.ids}
        keys.update({_norm(n): n for n in self.names if n})
        close = difflib.get_close_matches(_norm(raw), list(keys), n=N_SUGGESTIONS, cutoff=0.6)
        if not close:  # a fragment of a name ("carbomer")
            close = [k for k in keys if _norm(raw) in k][:N_SUGGESTIONS]
        return f"; did you mean {', '.join(repr(keys[k]) for k in close)}?" if close else ""

    def name(self, material_id: str) -> str:
        """The material's name ("" when the table has none for it)."""
        try:
            name = self.names[self.ids.index(str(material_id))]
        except ValueError:
            return ""
        return "" if name == str(material_id) else name

    def label(self, material_id: str) -> str:
        """``"Carbomer 001 (M00131)"``, or the code alone when the material has no name."""
        name = self.name(material_id)
        return f"{name} ({material_id})" if name else str(material_id)

    def columns(self) -> list[str]:
        """The descriptive columns a family may be taken from (everything but id, name and counts)."""
        skip = {"material_id", "name", "n_formulas", "median_content", "tied_to", "like"}
        return [c for c in self.table.columns if c not in skip and self.table[c].dtype == object]

    def family_members(self, families: Sequence[str], column: str = "family") -> list[str]:
        """Codes of the materials whose ``column`` is one of ``families`` (case and whitespace ignored), in table
        order.

        Raises:
            ValueError: ``column`` absent from the table, or a family that no material has (the message lists the
                column's values, closest first).
        """
        if column not in self.table.columns:
            raise ValueError(f"the run's materials table has no {column!r} column (it has "
                             f"{self.columns() or 'no descriptive column'}); give a column that holds ingredient "
                             f"roles, or the materials by code or name")
        values = self.table[column].astype(object).where(self.table[column].notna(), "").astype(str)
        keys = values.map(_norm)
        out: list[str] = []
        for family in families:
            hit = keys == _norm(family)
            if not hit.any():
                known = sorted(set(values) - {""})
                close = difflib.get_close_matches(_norm(family), [_norm(k) for k in known], n=3, cutoff=0.5)
                raise ValueError(f"no material has {column} {family!r}; {column} values are {known}"
                                 + (f"; did you mean {', '.join(map(repr, close))}?" if close else ""))
            out += [m for m, h in zip(self.ids, hit) if h]
        return list(dict.fromkeys(out))


def split_list(items: Iterable[str]) -> list[str]:
    """Command-line lists: items given space- or comma-separated (``a,b c``) -> ``[a, b, c]`` (blanks dropped).

    A name holding a comma cannot be given this way; give its code."""
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]
