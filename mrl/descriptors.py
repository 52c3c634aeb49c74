"""Molecular descriptors and chemical classes of compounds given as SMILES (RDKit).

* :func:`rdkit_descriptors`: a fixed list of physically meaningful RDKit descriptors (:data:`DESCRIPTOR_NAMES`),
  one row per given SMILES (NaN where RDKit cannot parse it);
* :func:`chemical_class`: one coarse class per molecule by ordered substructure rules (:data:`CHEMICAL_CLASSES`);
* :func:`canonical_smiles`: RDKit's canonical SMILES (``None`` where it cannot parse).

RDKit (``rdkit`` on PyPI) is imported on first use, so the rest of mrl works without it.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Columns of :func:`rdkit_descriptors`, in order. Counts are per molecule (all fragments together).
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "MolWt",              # g/mol
    "HeavyAtomCount",
    "NumHeteroatoms",
    "NumValenceElectrons",
    "MolLogP",            # Crippen octanol-water logP
    "MolMR",              # Crippen molar refractivity (polarisability)
    "TPSA",               # topological polar surface area, A^2
    "LabuteASA",          # approximate surface area, A^2
    "NumHDonors",
    "NumHAcceptors",
    "NumRotatableBonds",
    "RingCount",
    "NumAromaticRings",
    "NumAliphaticRings",
    "FractionCSP3",
    "BertzCT",            # complexity
    "BalabanJ",
    "Chi0v",
    "Chi1v",
    "Kappa1",
    "Kappa2",
    "HallKierAlpha",
    "n_C",
    "n_N",
    "n_O",
    "n_S",
    "n_halogen",
    "n_OH",               # H atoms on oxygen (alcohol, phenol, acid OH; water: 2)
    "n_NH",               # N-H bonds (primary/secondary amines and amides)
    "n_carbonyl",
    "formal_charge",      # net formal charge
    "n_charged_atoms",    # atoms with a formal charge (nitro groups count 2)
    "n_fragments",        # disconnected parts ('.' in the SMILES)
    "is_ionic",           # 1.0 when several fragments carry charges or the net charge is not 0
)

#: Classes of :func:`chemical_class`, in the order their rules are tried (the first that matches wins).
CHEMICAL_CLASSES: tuple[str, ...] = ("water", "ionic", "acid", "polyol", "alcohol", "amine", "ester", "ketone",
                                     "ether", "halide", "aromatic", "alkane", "other")

_SMARTS = {
    "acid": "[CX3](=O)[OX2H1,OX1-]",                 # carboxylic acid (or carboxylate)
    "sulfonic": "[SX4](=O)(=O)[OX2H1,OX1-]",
    "aliphatic_oh": "[CX4;!$(C=O)][OX2H1]",            # alcohol OH (not phenol, not acid)
    "amine": "[NX3;!$(N-C=[O,S,N]);!$(N-S(=O)=O);!$(N-[a]);!$([N+]);!$(N-N=O)]",   # aliphatic amine, not amide
    "aryl_amine": "[NX3;H2,H1;!$(N-C=[O,S,N])]-a",
    "aromatic_n_base": "[nX2;r6]",                      # pyridine-type nitrogen
    "ester": "[#6][CX3](=O)[OX2][#6]",
    "carbonate": "[OX2][CX3](=O)[OX2]",
    "ketone": "[#6][CX3](=O)[#6]",
    "aldehyde": "[CX3H1](=O)[#6,#1]",
    "ether": "[OD2]([#6])[#6]",
    "halogen": "[F,Cl,Br,I]",
    "nh": "[#7;!H0]",
    "carbonyl": "[CX3]=[OX1]",
}


def _rdkit() -> Any:
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:  # pragma: no cover - rdkit is a dependency
        raise ImportError("mrl.descriptors needs RDKit: pip install 'rdkit>=2024.3'") from err
    RDLogger.DisableLog("rdApp.*")
    return Chem


@functools.lru_cache(maxsize=None)
def _patterns() -> dict[str, Any]:
    chem = _rdkit()
    return {key: chem.MolFromSmarts(smarts) for key, smarts in _SMARTS.items()}


@functools.lru_cache(maxsize=65536)
def _mol(smiles: str) -> Any:
    """Parsed molecule, or None (empty text or RDKit cannot parse it)."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    return _rdkit().MolFromSmiles(smiles)


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES (stereo kept), or ``None`` where RDKit cannot parse ``smiles``."""
    mol = _mol(smiles)
    return None if mol is None else _rdkit().MolToSmiles(mol)


def _count(mol: Any, key: str) -> int:
    return len(mol.GetSubstructMatches(_patterns()[key]))


def _charges(mol: Any) -> tuple[int, int, int, bool]:
    """(net formal charge, charged atoms, fragments, ionic flag)."""
    charges = [a.GetFormalCharge() for a in mol.GetAtoms()]
    chem = _rdkit()
    frags = chem.GetMolFrags(mol, asMols=True)
    net = int(sum(charges))
    charged_frags = sum(1 for f in frags if sum(a.GetFormalCharge() for a in f.GetAtoms()) != 0)
    return net, sum(1 for c in charges if c != 0), len(frags), bool(net != 0 or charged_frags >= 2)


@functools.lru_cache(maxsize=65536)
def _descriptor_row(smiles: str) -> tuple[float, ...]:
    mol = _mol(smiles)
    if mol is None:
        return (np.nan,) * len(DESCRIPTOR_NAMES)
    from rdkit.Chem import Crippen, Descriptors, GraphDescriptors, Lipinski, rdMolDescriptors

    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    net, n_charged, n_frags, ionic = _charges(mol)

    def safe(fn: Any) -> float:
        if mol.GetNumHeavyAtoms() < 2:  # graph indices are undefined (Kappa2 of water is -27)
            return 0.0
        try:
            return float(fn(mol))
        except Exception:  # some graph indices fail on single atoms
            return 0.0

    values = {
        "MolWt": Descriptors.MolWt(mol),
        "HeavyAtomCount": mol.GetNumHeavyAtoms(),
        "NumHeteroatoms": rdMolDescriptors.CalcNumHeteroatoms(mol),
        "NumValenceElectrons": Descriptors.NumValenceElectrons(mol),
        "MolLogP": Crippen.MolLogP(mol),
        "MolMR": Crippen.MolMR(mol),
        "TPSA": rdMolDescriptors.CalcTPSA(mol),
        "LabuteASA": rdMolDescriptors.CalcLabuteASA(mol),
        "NumHDonors": Lipinski.NumHDonors(mol),
        "NumHAcceptors": Lipinski.NumHAcceptors(mol),
        "NumRotatableBonds": rdMolDescriptors.CalcNumRotatableBonds(mol),
        "RingCount": rdMolDescriptors.CalcNumRings(mol),
        "NumAromaticRings": rdMolDescriptors.CalcNumAromaticRings(mol),
        "NumAliphaticRings": rdMolDescriptors.CalcNumAliphaticRings(mol),
        "FractionCSP3": rdMolDescriptors.CalcFractionCSP3(mol),
        "BertzCT": safe(GraphDescriptors.BertzCT),
        "BalabanJ": safe(GraphDescriptors.BalabanJ),
        "Chi0v": safe(GraphDescriptors.Chi0v),
        "Chi1v": safe(GraphDescriptors.Chi1v),
        "Kappa1": safe(GraphDescriptors.Kappa1),
        "Kappa2": safe(GraphDescriptors.Kappa2),
        "HallKierAlpha": safe(GraphDescriptors.HallKierAlpha),
        "n_C": symbols.count("C"),
        "n_N": symbols.count("N"),
        "n_O": symbols.count("O"),
        "n_S": symbols.count("S"),
        "n_halogen": sum(symbols.count(s) for s in ("F", "Cl", "Br", "I")),
        "n_OH": sum(a.GetTotalNumHs() for a in mol.GetAtoms() if a.GetSymbol() == "O"),
        "n_NH": sum(a.GetTotalNumHs() for a in mol.GetAtoms() if a.GetSymbol() == "N"),
        "n_carbonyl": _count(mol, "carbonyl"),
        "formal_charge": net,
        "n_charged_atoms": n_charged,
        "n_fragments": n_frags,
        "is_ionic": float(ionic),
    }
    return tuple(float(values[name]) for name in DESCRIPTOR_NAMES)


def rdkit_descriptors(smiles: Sequence[str]) -> pd.DataFrame:
    """Descriptors of each molecule, shape ``(len(smiles), len(DESCRIPTOR_NAMES))``.

    Args:
        smiles: SMILES strings (repeats allowed; each distinct string is computed once and cached).

    Returns:
        A float DataFrame indexed by the given SMILES (same order, repeats kept), columns
        :data:`DESCRIPTOR_NAMES`; rows of all-NaN where RDKit cannot parse the SMILES (or it is empty).
    """
    smiles = [str(s) if s is not None and not (isinstance(s, float) and np.isnan(s)) else "" for s in smiles]
    unique = list(dict.fromkeys(smiles))
    table = {s: _descriptor_row(s) for s in unique}
    bad = [s for s in unique if _mol(s) is None]
    if bad:
        log.warning("RDKit could not parse %d SMILES (NaN rows), e.g. %s", len(bad), bad[:3])
    frame = pd.DataFrame([table[s] for s in smiles], columns=list(DESCRIPTOR_NAMES), dtype=np.float64)
    frame.index = pd.Index(smiles, name="smiles")
    return frame


@functools.lru_cache(maxsize=65536)
def chemical_class(smiles: str) -> str:
    """Coarse chemical class of one molecule: the first rule of :data:`CHEMICAL_CLASSES` that matches.

    Rules, in order: ``water`` (H2O); ``ionic`` (net charge, or several charged fragments); ``acid`` (carboxylic
    or sulfonic acid); ``polyol`` (two or more alcohol OH groups); ``alcohol`` (one alcohol OH; phenols are not
    alcohols); ``amine`` (amine N, aliphatic or aromatic amine, or pyridine-type N; amides are not amines);
    ``ester`` (carboxylic ester or carbonate); ``ketone`` (ketone or aldehyde); ``ether``; ``halide`` (any F,
    Cl, Br, I); ``aromatic`` (any aromatic ring); ``alkane`` (only C and H: alkanes, alkenes, alkynes,
    cycloalkanes); ``other`` (e.g. nitriles, amides, nitro compounds, sulfoxides, unparsable SMILES).
    """
    mol = _mol(smiles)
    if mol is None:
        return "other"
    symbols = {a.GetSymbol() for a in mol.GetAtoms()}
    if symbols == {"O"} and mol.GetNumAtoms() == 1 and mol.GetAtomWithIdx(0).GetTotalNumHs() == 2:
        return "water"
    if _charges(mol)[3]:
        return "ionic"
    if _count(mol, "acid") or _count(mol, "sulfonic"):
        return "acid"
    n_oh = _count(mol, "aliphatic_oh")
    if n_oh >= 2:
        return "polyol"
    if n_oh == 1:
        return "alcohol"
    if _count(mol, "amine") or _count(mol, "aryl_amine") or _count(mol, "aromatic_n_base"):
        return "amine"
    if _count(mol, "ester") or _count(mol, "carbonate"):
        return "ester"
    if _count(mol, "ketone") or _count(mol, "aldehyde"):
        return "ketone"
    if _count(mol, "ether"):
        return "ether"
    if _count(mol, "halogen"):
        return "halide"
    if any(a.GetIsAromatic() for a in mol.GetAtoms()):
        return "aromatic"
    if symbols <= {"C", "H"}:
        return "alkane"
    return "other"
