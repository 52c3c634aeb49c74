"""Chemical elements: the periodic table, chemical formula parsing, and element property tables.

Used wherever a material id is an element symbol or a chemical formula (Matbench compositions, oxide melts):
:func:`parse_formula` reads ``"Fe0.62C0.000953"`` or ``"Ca3(PO4)2"``, :func:`formulas_to_long` turns formulas into
mrl's long format (materials = elements, content = atomic fraction), and :func:`element_table` reads the element
property tables (Magpie, mat2vec, Oliynyk, JARVIS) from the ``crabnet==2.0.8`` wheel (:mod:`mrl.wheels`).
"""
from __future__ import annotations

import io
import math
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mrl.wheels import fetch_wheel, read_wheel_member

# --------------------------------------------------------------------------------------------------------------
# Periodic table (elements 1-118): symbol and English name; group, period, block and family are derived from Z.
# --------------------------------------------------------------------------------------------------------------
_ELEMENTS = (
    "H Hydrogen,He Helium,Li Lithium,Be Beryllium,B Boron,C Carbon,N Nitrogen,O Oxygen,F Fluorine,Ne Neon,"
    "Na Sodium,Mg Magnesium,Al Aluminium,Si Silicon,P Phosphorus,S Sulfur,Cl Chlorine,Ar Argon,K Potassium,"
    "Ca Calcium,Sc Scandium,Ti Titanium,V Vanadium,Cr Chromium,Mn Manganese,Fe Iron,Co Cobalt,Ni Nickel,Cu Copper,"
    "Zn Zinc,Ga Gallium,Ge Germanium,As Arsenic,Se Selenium,Br Bromine,Kr Krypton,Rb Rubidium,Sr Strontium,"
    "Y Yttrium,Zr Zirconium,Nb Niobium,Mo Molybdenum,Tc Technetium,Ru Ruthenium,Rh Rhodium,Pd Palladium,Ag Silver,"
    "Cd Cadmium,In Indium,Sn Tin,Sb Antimony,Te Tellurium,I Iodine,Xe Xenon,Cs Caesium,Ba Barium,La Lanthanum,"
    "Ce Cerium,Pr Praseodymium,Nd Neodymium,Pm Promethium,Sm Samarium,Eu Europium,Gd Gadolinium,Tb Terbium,"
    "Dy Dysprosium,Ho Holmium,Er Erbium,Tm Thulium,Yb Ytterbium,Lu Lutetium,Hf Hafnium,Ta Tantalum,W Tungsten,"
    "Re Rhenium,Os Osmium,Ir Iridium,Pt Platinum,Au Gold,Hg Mercury,Tl Thallium,Pb Lead,Bi Bismuth,Po Polonium,"
    "At Astatine,Rn Radon,Fr Francium,Ra Radium,Ac Actinium,Th Thorium,Pa Protactinium,U Uranium,Np Neptunium,"
    "Pu Plutonium,Am Americium,Cm Curium,Bk Berkelium,Cf Californium,Es Einsteinium,Fm Fermium,Md Mendelevium,"
    "No Nobelium,Lr Lawrencium,Rf Rutherfordium,Db Dubnium,Sg Seaborgium,Bh Bohrium,Hs Hassium,Mt Meitnerium,"
    "Ds Darmstadtium,Rg Roentgenium,Cn Copernicium,Nh Nihonium,Fl Flerovium,Mc Moscovium,Lv Livermorium,"
    "Ts Tennessine,Og Oganesson"
)
SYMBOLS: tuple[str, ...] = tuple(item.split(" ")[0] for item in _ELEMENTS.split(","))
_NAMES = {item.split(" ")[0]: item.split(" ")[1] for item in _ELEMENTS.split(",")}
ATOMIC_NUMBER: dict[str, int] = {sym: z for z, sym in enumerate(SYMBOLS, start=1)}
_METALLOIDS = {"B", "Si", "Ge", "As", "Sb", "Te"}
_NONMETALS = {"H", "C", "N", "O", "P", "S", "Se"}
_HALOGENS = {"F", "Cl", "Br", "I", "At", "Ts"}
_PERIOD_START = (1, 3, 11, 19, 37, 55, 87, 119)


def _position(z: int) -> tuple[int, int, str]:
    """(group, period, block) of atomic number ``z``; lanthanides and actinides get group 3, block ``f``."""
    period = next(p for p in range(1, 8) if _PERIOD_START[p] > z)
    k = z - _PERIOD_START[period - 1]
    if period == 1:
        return (1 if z == 1 else 18), 1, "s"
    if k < 2:
        return k + 1, period, "s"
    if period <= 3:
        return 13 + (k - 2), period, "p"
    if period <= 5:
        return (3 + (k - 2), period, "d") if k < 12 else (13 + (k - 12), period, "p")
    if k < 17:  # La..Lu, Ac..Lr
        return 3, period, "f"
    return (4 + (k - 17), period, "d") if k < 26 else (13 + (k - 26), period, "p")


def _family(symbol: str, group: int, block: str, z: int) -> str:
    if block == "f":
        return "lanthanide" if z < 89 else "actinide"
    if symbol in _NONMETALS:
        return "nonmetal"
    if symbol in _METALLOIDS:
        return "metalloid"
    if symbol in _HALOGENS:
        return "halogen"
    if group == 18:
        return "noble gas"
    if group == 1:
        return "alkali metal"
    if group == 2:
        return "alkaline earth metal"
    if block == "d":
        return "transition metal"
    return "post-transition metal"


def periodic_table() -> pd.DataFrame:
    """Elements 1-118: ``material_id`` (symbol), ``name``, ``family``, ``Z``, ``group``, ``period``, ``block``."""
    rows = []
    for sym in SYMBOLS:
        z = ATOMIC_NUMBER[sym]
        group, period, block = _position(z)
        rows.append({"material_id": sym, "name": _NAMES[sym], "family": _family(sym, group, block, z), "Z": z,
                     "group": group, "period": period, "block": block})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------------
# Chemical formulas
# --------------------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"([A-Z][a-z]?)|([(\[{])|([)\]}])|(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")
_CLOSE = {"(": ")", "[": "]", "{": "}"}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SIMPLE = re.compile(rf"(?:[A-Z][a-z]?(?:{_NUMBER})?)+")
_SIMPLE_PART = re.compile(rf"([A-Z][a-z]?)({_NUMBER})?")


def parse_formula(formula: str) -> dict[str, float]:
    """Parse a chemical formula into ``{element: amount}`` (amounts summed over repeats, in order of appearance).

    Accepts integer and decimal amounts (``"Fe0.620C0.000953"``, ``"Al2O3"``, ``"Fe1e-05"``), nested brackets with
    multipliers (``"(Fe2O3)0.5"``, ``"Ag(W3Br7)2"``, ``"K[Fe(CN)6]"``); whitespace between tokens is skipped.

    Raises:
        ValueError: on an empty string, an unknown element symbol, unbalanced brackets, a number with nothing
            before it, or any other character.
    """
    if not isinstance(formula, str):
        raise ValueError(f"formula must be a string, got {type(formula).__name__}: {formula!r}")
    text = formula.strip()
    if not text:
        raise ValueError(f"empty formula {formula!r}")
    if _SIMPLE.fullmatch(text):  # fast path: no brackets, no spaces
        simple: dict[str, float] = {}
        for sym, number in _SIMPLE_PART.findall(text):
            if sym not in ATOMIC_NUMBER:
                raise ValueError(f"cannot parse formula {formula!r}: unknown element {sym!r}")
            simple[sym] = simple.get(sym, 0.0) + (float(number) if number else 1.0)
        if not all(math.isfinite(v) for v in simple.values()):
            raise ValueError(f"cannot parse formula {formula!r}: non-finite amount")
        return simple
    # stack of (opening bracket, parsed groups); a number scales the group just before it
    stack: list[tuple[str, list[dict[str, float]]]] = [("", [])]
    scalable = False
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot parse formula {formula!r}: unexpected {text[pos]!r} at position {pos}")
        sym, opening, closing, number = m.groups()
        if sym is not None:
            if sym not in ATOMIC_NUMBER:
                raise ValueError(f"cannot parse formula {formula!r}: unknown element {sym!r}")
            stack[-1][1].append({sym: 1.0})
            scalable = True
        elif opening is not None:
            stack.append((opening, []))
            scalable = False
        elif closing is not None:
            if len(stack) == 1 or _CLOSE[stack[-1][0]] != closing:
                raise ValueError(f"cannot parse formula {formula!r}: unbalanced {closing!r} at position {pos}")
            _, groups = stack.pop()
            if not groups:
                raise ValueError(f"cannot parse formula {formula!r}: empty brackets before position {pos}")
            stack[-1][1].append(_sum_groups(groups))
            scalable = True
        else:
            if not scalable:
                raise ValueError(f"cannot parse formula {formula!r}: number {number!r} at position {pos} "
                                 "does not follow an element or a bracket")
            factor = float(number)
            stack[-1][1][-1] = {k: v * factor for k, v in stack[-1][1][-1].items()}
            scalable = False
        pos = m.end()
    if len(stack) != 1:
        raise ValueError(f"cannot parse formula {formula!r}: unclosed {stack[-1][0]!r}")
    out = _sum_groups(stack[0][1])
    if not out:
        raise ValueError(f"cannot parse formula {formula!r}: no element")
    if not all(math.isfinite(v) for v in out.values()):
        raise ValueError(f"cannot parse formula {formula!r}: non-finite amount")
    return out


def _sum_groups(groups: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for group in groups:
        for key, value in group.items():
            out[key] = out.get(key, 0.0) + value
    return out


def formulas_to_long(formulas: Sequence[str], ids: Sequence[Any] | None = None) -> pd.DataFrame:
    """Long table ``formula_id, material_id, content`` (atomic fractions summing to 1 per formula).

    ``ids`` default to the row numbers zero-padded to a common width (``"0000"``, ``"0001"``...). Elements with
    zero amount are left out; a formula whose amounts sum to zero raises ``ValueError``.
    """
    formulas = list(formulas)
    if ids is None:
        width = max(len(str(max(len(formulas) - 1, 0))), 1)
        ids = [f"{i:0{width}d}" for i in range(len(formulas))]
    ids = [str(i) for i in ids]
    if len(ids) != len(formulas):
        raise ValueError(f"{len(ids)} ids for {len(formulas)} formulas")
    if len(set(ids)) != len(ids):
        raise ValueError("formula ids are not unique")
    fid: list[str] = []
    mid: list[str] = []
    amt: list[float] = []
    cache: dict[str, dict[str, float]] = {}
    for row, (formula_id, formula) in enumerate(zip(ids, formulas)):
        parsed = cache.get(formula)
        if parsed is None:
            try:
                parsed = parse_formula(formula)
            except ValueError as err:
                raise ValueError(f"formula {row} (id {formula_id!r}): {err}") from None
            cache[formula] = parsed
        total = sum(parsed.values())
        if not total > 0:
            raise ValueError(f"formula {row} (id {formula_id!r}): {formula!r} has no positive amount")
        for element, amount in parsed.items():
            if amount > 0:
                fid.append(formula_id)
                mid.append(element)
                amt.append(amount / total)
    return pd.DataFrame({"formula_id": fid, "material_id": mid, "content": np.asarray(amt, np.float64)})


ELEMENT_TABLES = ("magpie", "mat2vec", "oliynyk", "jarvis")


def element_table(name: str = "magpie") -> pd.DataFrame:
    """Element property table from the crabnet wheel (``crabnet/data/element_properties/<name>.csv``): index =
    element symbol, numeric (float) columns only; NaNs are kept."""
    if name not in ELEMENT_TABLES:
        raise ValueError(f"unknown element table {name!r}; known: {ELEMENT_TABLES}")
    wheel = fetch_wheel("crabnet", "2.0.8")
    frame = pd.read_csv(io.BytesIO(read_wheel_member(wheel, f"crabnet/data/element_properties/{name}.csv")))
    frame = frame.set_index(frame.columns[0])
    frame.index = frame.index.astype(str).str.strip()
    frame.index.name = "element"
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    keep = [c for c in frame.columns if numeric[c].notna().any()]
    out = numeric[keep].astype(np.float64)
    out.columns = [str(c) for c in out.columns]
    return out
