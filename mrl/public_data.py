"""Named real data sets, built offline from files shipped inside PyPI wheels or vendored in this package.

One data set is vendored (no PyPI package ships it): ``liquid_viscosity`` (Bilodeau et al. 2023 via CheMixHub,
MIT), gzip-compressed under ``mrl/data_files/liquid_viscosity/`` with its provenance and licence. The others come
from a wheel on PyPI that ships them (no copy in this repository):

* ``crabnet==2.0.8`` (MIT; installable only on Python < 3.11, so it is *downloaded*, never installed) carries the
  composition-only Matbench v0.1 tasks (``crabnet/data/matbench/<task>.csv``, columns ``formula,target``) and
  element property tables (``crabnet/data/element_properties/*.csv``).
* ``gpvisc==0.3.5`` (GPL-3) carries the melt viscosity database of Le Losq, Ferraina et al. (arXiv 2409.20235)
  with the paper's train/valid/test split (``gpvisc/data/all_viscosity.hdf5``).

:func:`mrl.wheels.fetch_wheel` downloads a wheel once into ``cache_dir()/"wheels"`` with ``python -m pip download`` (so only
the package registry pip is configured with is contacted); members are read straight from the wheel zip. Converted
data sets are cached as Parquet under ``cache_dir()/"datasets"``.

Matbench tasks become long-format data with one formula per dataset row and materials = chemical elements
(``material_id`` = element symbol, content = atomic fraction). The melt data set has materials = the 12 oxides,
one formula per distinct composition and one measurement row per (T, P) point.
"""
from __future__ import annotations

import gzip
import io
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from mrl.data import FormulaData, load_formulas, save_formulas
from mrl.descriptors import canonical_smiles, chemical_class
from mrl.elements import formulas_to_long, periodic_table
from mrl.io import write_json
from mrl.tables import DataError
from mrl.wheels import cache_dir, fetch_wheel, read_wheel_member

log = logging.getLogger(__name__)

#: Bump when the conversion of any data set changes, so stale Parquet caches are ignored.
CONVERSION_VERSION = 1
#: Matbench v0.1 cross-validation protocol: ``KFold(5, shuffle=True, random_state=18012019)`` over dataset order.
MATBENCH_SEED = 18012019
#: Vendored liquid viscosity data: folder under ``mrl/data_files`` and its files.
LIQUID_FOLDER = "liquid_viscosity"
LIQUID_FILE = "published_logV.csv.gz"
LIQUID_COMPOUNDS = "compounds.csv"

# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------
_MATBENCH_CITE = ("Dunn A., Wang Q., Ganose A., Dopp D., Jain A. (2020) Benchmarking materials property prediction "
                  "methods: the Matbench test set and Automatminer reference algorithm. npj Comput. Mater. 6, 138. "
                  "Composition CSVs as redistributed by CrabNet: Wang A. Y.-T., Kauwe S. K., Murdock R. J., "
                  "Sparks T. D. (2021) Compositionally restricted attention-based network for materials property "
                  "predictions. npj Comput. Mater. 7, 77.")
_CRABNET_LICENSE = ("Files read from the crabnet 2.0.8 wheel on PyPI (MIT licence); the Matbench data keep the "
                    "terms of their original sources (see the Matbench documentation).")


@dataclass(frozen=True)
class DatasetInfo:
    """Card of a named data set."""

    name: str
    description: str
    package: str
    version: str
    member: str
    target: str
    unit: str
    conditions: tuple[str, ...] = ()
    citation: str = ""
    license: str = ""
    n_samples: int | None = None
    loader: str = "matbench"


def _matbench_card(name: str, csv: str, target: str, unit: str, n_samples: int, description: str, source: str,
                   license_note: str = "") -> DatasetInfo:
    """Card of a Matbench v0.1 composition task read from ``crabnet/data/matbench/<csv>`` in the crabnet wheel."""
    return DatasetInfo(
        name=name, description=description, package="crabnet", version="2.0.8",
        member=f"crabnet/data/matbench/{csv}", target=target, unit=unit, n_samples=n_samples,
        citation=f"{_MATBENCH_CITE} Original data: {source}",
        license=" ".join(filter(None, (_CRABNET_LICENSE, license_note))))


DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    _matbench_card(
        "matbench_steels", "steels_yield.csv", "yield_strength", "MPa", 312,
        "Matbench v0.1 matbench_steels: yield strength of 312 steels from their composition "
        "(atomic fractions of up to 14 elements). 5-fold CV protocol (see matbench_folds).",
        "Citrine Informatics steel strength data set."),
    _matbench_card(
        "matbench_expt_gap", "expt_gap.csv", "band_gap", "eV", 4604,
        "Matbench v0.1 matbench_expt_gap: experimental band gap of 4,604 inorganic compounds from "
        "their composition (metals have gap 0). 5-fold CV protocol (see matbench_folds).",
        "Zhuo Y., Mansouri Tehrani A., Brgoch J. (2018) Predicting the band gaps of inorganic solids by machine "
        "learning. J. Phys. Chem. Lett. 9, 1668-1673."),
    _matbench_card(
        "mp_e_form", "mp_e_form.csv", "e_form", "eV/atom", 132752,
        "Matbench v0.1 matbench_mp_e_form reduced to compositions: DFT formation energy of 132,752 "
        "Materials Project structures. Several polymorphs share a formula (same input, different "
        "targets), which bounds the error a composition-only model can reach.",
        "Jain A. et al. (2013) The Materials Project. APL Mater. 1, 011002.",
        license_note="Materials Project data: CC BY 4.0."),
    DatasetInfo(
        name="melt_viscosity",
        description="Viscosity of silicate/aluminosilicate melts (12 oxides, mole fractions) at temperature T (K) "
                    "and pressure P (GPa): 28,898 measurements of 8,013 compositions, with the published "
                    "train/valid/test split (valid -> eval). See load_melt_viscosity for split statistics.",
        package="gpvisc", version="0.3.5", member="gpvisc/data/all_viscosity.hdf5",
        target="viscosity", unit="log10 Pa s", conditions=("T", "P"), n_samples=28898, loader="melt",
        citation="Le Losq C., Ferraina C., et al. (2024) A general machine learning model of aluminosilicate melt "
                 "viscosity and its application to the surface properties of dry lava planets. "
                 "arXiv:2409.20235. Data and code: gpvisc 0.3.5 (https://github.com/charlesll/gpvisc, "
                 "Zenodo 10.5281/zenodo.13843250).",
        license="gpvisc code is GPL-3.0; the data set (measurements compiled from the literature and SciGlass) is "
                "read from the gpvisc 0.3.5 wheel on PyPI and not redistributed here. Cite the paper and the "
                "original measurement references when using it."),
    DatasetInfo(
        name="liquid_viscosity",
        description="Viscosity of 1,397 pure organic liquids and water (1,628 SMILES in the source; 231 are a "
                    "second spelling of the same molecule and are merged by canonical SMILES) and of 3,216 binary "
                    "systems, at temperature T (K, 293-323): 34,374 measurements, materials = compounds "
                    "(ids C0001... in canonical-SMILES order, with smiles, name and chemical-class 'family' "
                    "columns), contents = mole fractions, one formula per (system, composition), group = the "
                    "system (sorted pair of compound ids), split = the paper's train/test split (30,936 / 3,438). "
                    "The target is already log10 viscosity in cP, so use target_transform='none'. Properties also "
                    "hold the published model's prediction ('published') and uncertainty ('published_sd').",
        package="", version="", member=f"mrl/data_files/{LIQUID_FOLDER}/{LIQUID_FILE}",
        target="viscosity", unit="log10 cP", conditions=("T",), n_samples=34374, loader="liquid",
        citation="Bilodeau C., Kazakov A., Mukhopadhyay S., Emerson J., Kalantar T., Muzny C., Jensen K. (2023) "
                 "Machine learning for predicting the viscosity of binary liquid mixtures. Chem. Eng. J. 464, "
                 "142454. As redistributed by CheMixHub: Rajaonson et al. (2025) CheMixHub: datasets and "
                 "benchmarks for chemical mixture property prediction. arXiv:2506.12231 "
                 "(https://github.com/chemcognition-lab/chemixhub, commit 6b878cc, "
                 "datasets/logV/raw_data/published_logV.csv).",
        license="MIT (CheMixHub repository licence, copied as mrl/data_files/liquid_viscosity/LICENSE.chemixhub). "
                "Vendored in this package (gzip-compressed, content unchanged), read offline. Cite both papers."),
)}


def list_datasets() -> pd.DataFrame:
    """One row per registered data set: name, target, unit, conditions, size, source wheel, citation, licence."""
    rows = []
    for info in DATASETS.values():
        row = asdict(info)
        row["conditions"] = ",".join(info.conditions)
        row["source"] = (f"{info.package}=={info.version}:{info.member}" if info.package
                         else f"vendored:{info.member}")
        rows.append(row)
    cols = ["name", "target", "unit", "conditions", "n_samples", "description", "source", "citation", "license"]
    return pd.DataFrame(rows)[cols]


def dataset_info(name: str) -> DatasetInfo:
    """The card of a registered data set (``KeyError`` listing the known names otherwise)."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(DATASETS)}") from None


# --------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------
def _cache_folder(name: str) -> Path:
    return cache_dir() / "datasets" / f"{name}-v{CONVERSION_VERSION}"


def _read_cached(name: str, info: DatasetInfo) -> FormulaData | None:
    folder = _cache_folder(name)
    if not (folder / "done.json").exists():
        return None
    try:
        return load_formulas(folder / "formulas.parquet", folder / "properties.parquet", folder / "materials.parquet",
                             targets=(info.target,), conditions=info.conditions, content_unit="fraction", name=name)
    except Exception as err:  # a damaged cache is rebuilt, not fatal
        log.warning("ignoring damaged cache %s: %s", folder, err)
        return None


def _write_cached(name: str, data: FormulaData) -> None:

    folder = _cache_folder(name)
    try:
        save_formulas(data, folder)
        write_json({"name": name, "conversion_version": CONVERSION_VERSION, "n_samples": data.n_samples}, folder /
                   "done.json")
    except OSError as err:
        log.warning("could not cache %s in %s: %s", name, folder, err)


def load_dataset(name: str, use_cache: bool = True, **kwargs: Any) -> FormulaData:
    """Load a registered data set as :class:`~mrl.data.FormulaData` (downloading its wheel once).

    Args:
        name: one of :data:`DATASETS` (``matbench_steels``, ``matbench_expt_gap``, ``mp_e_form``,
            ``melt_viscosity``, ``liquid_viscosity``; the last is vendored in the package and read offline).
        use_cache: read/write the converted tables under ``cache_dir()/"datasets"`` (only with default kwargs).
        **kwargs: passed to the converter (``melt_viscosity``: ``decimals``).
    """
    info = dataset_info(name)
    if info.loader in _VENDORED:  # shipped inside mrl: fast to read, never cached or downloaded
        return _VENDORED[info.loader](info, **kwargs)
    cacheable = use_cache and not kwargs
    if cacheable:
        cached = _read_cached(name, info)
        if cached is not None:
            return cached
    wheel = fetch_wheel(info.package, info.version)
    converter: Callable[..., FormulaData] = _CONVERTERS[info.loader]
    data = converter(wheel, info, **kwargs)
    if cacheable:
        _write_cached(name, data)
    return data


def _matbench(wheel: Path, info: DatasetInfo) -> FormulaData:
    frame = pd.read_csv(io.BytesIO(read_wheel_member(wheel, info.member)))
    if list(frame.columns[:2]) != ["formula", "target"]:
        raise ValueError(f"{info.member}: expected columns formula,target; found {list(frame.columns)}")
    return matbench_from_frame(frame, info.target, name=info.name)


def matbench_from_frame(frame: pd.DataFrame, target: str, name: str = "matbench") -> FormulaData:
    """Long-format data from a ``formula,target`` table: one formula per row (ids = zero-padded row numbers,
    dataset order kept), materials = the elements used, sorted by atomic number."""
    formulas = formulas_to_long(frame["formula"].astype(str).tolist())
    ids = pd.unique(formulas["formula_id"])
    props = pd.DataFrame({"formula_id": ids, "formula": frame["formula"].astype(str).to_numpy(),
                          target: frame["target"].to_numpy(np.float64)})
    table = periodic_table()
    mats = table[table["material_id"].isin(set(formulas["material_id"]))].reset_index(drop=True)
    return load_formulas(formulas, props, mats, targets=(target,), content_unit="fraction", name=name)


# ----- melt viscosity -----------------------------------------------------------------------------------------
#: The 12 oxides of the melt data set, in the column order of gpvisc's ``X_*`` arrays.
MELT_OXIDES = ("SiO2", "TiO2", "Al2O3", "FeO", "Fe2O3", "MnO", "Na2O", "K2O", "MgO", "CaO", "P2O5", "H2O")
_OXIDE_FAMILY = {"SiO2": "network former", "P2O5": "network former", "TiO2": "intermediate",
                 "Al2O3": "intermediate", "Fe2O3": "intermediate", "FeO": "transition metal (2+)",
                 "MnO": "transition metal (2+)", "Na2O": "alkali", "K2O": "alkali", "MgO": "alkaline earth",
                 "CaO": "alkaline earth", "H2O": "volatile"}
_MELT_SPLITS = (("train", "train"), ("valid", "eval"), ("test", "test"))


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel()]


def melt_measurements(hdf5_bytes: bytes) -> pd.DataFrame:
    """One row per measurement from gpvisc's ``all_viscosity.hdf5``: the 12 oxide mole fractions (first 12
    columns of ``X_*``), ``T`` (K), ``P`` (GPa), ``viscosity`` (log10 Pa s), ``Name``, ``split`` (train/eval/test),
    in file order (train, then valid, then test)."""
    import h5py

    frames = []
    with h5py.File(io.BytesIO(hdf5_bytes), "r") as h5:
        if "X_columns" in h5:
            cols = [c.lower() for c in _decode(h5["X_columns"][:12])]
            if cols != [o.lower() for o in MELT_OXIDES]:
                raise ValueError(f"all_viscosity.hdf5: unexpected first X columns {cols}")
        for key, split in _MELT_SPLITS:
            x = np.asarray(h5[f"X_{key}"][:, :12], np.float64)
            part = pd.DataFrame(x, columns=list(MELT_OXIDES))
            part["T"] = np.asarray(h5[f"T_{key}"], np.float64).ravel()
            part["P"] = np.asarray(h5[f"P_{key}"], np.float64).ravel()
            part["viscosity"] = np.asarray(h5[f"y_{key}"], np.float64).ravel()
            part["Name"] = _decode(h5[f"Name_{key}"])
            part["split"] = split
            frames.append(part)
    return pd.concat(frames, ignore_index=True)


def melt_from_measurements(frame: pd.DataFrame, decimals: int = 6, name: str = "melt_viscosity") -> FormulaData:
    """Group measurements into formulas: one formula per distinct (``Name``, oxide fractions rounded to
    ``decimals``). The formula id is the ``Name``, suffixed ``#2``, ``#3``... when one name covers several
    compositions (gpvisc names are nominal compositions; the fractions differ e.g. by Fe redox state).

    A formula measured in several splits keeps one id; ``split`` is per measurement row."""
    fractions = frame[list(MELT_OXIDES)].to_numpy(np.float64)
    key_frame = pd.DataFrame(np.round(fractions, decimals) + 0.0, columns=list(MELT_OXIDES))
    key_frame.insert(0, "Name", frame["Name"].astype(str).to_numpy())
    codes = key_frame.groupby(list(key_frame.columns), sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()  # first row of each composition
    names = frame["Name"].astype(str).to_numpy()[first]
    rank = pd.Series(names).groupby(names).cumcount().to_numpy()
    ids = np.array([n if r == 0 else f"{n}#{r + 1}" for n, r in zip(names, rank)], dtype=object)
    comp = fractions[first]
    rows, cols = np.nonzero(comp > 0)
    formulas = pd.DataFrame({"formula_id": ids[rows], "material_id": np.asarray(MELT_OXIDES)[cols],
                             "content": comp[rows, cols]})
    props = pd.DataFrame({"formula_id": ids[codes], "viscosity": frame["viscosity"].to_numpy(np.float64),
                          "T": frame["T"].to_numpy(np.float64), "P": frame["P"].to_numpy(np.float64),
                          "split": frame["split"].to_numpy(), "group": frame["Name"].astype(str).to_numpy()})
    mats = pd.DataFrame({"material_id": list(MELT_OXIDES), "name": list(MELT_OXIDES),
                         "family": [_OXIDE_FAMILY[o] for o in MELT_OXIDES]})
    return load_formulas(formulas, props, mats, targets=("viscosity",), conditions=("T", "P"),
                         content_unit="fraction", name=name)


def _melt(wheel: Path, info: DatasetInfo, decimals: int = 6) -> FormulaData:
    """Converter of ``melt_viscosity`` (see :func:`load_melt_viscosity`)."""
    frame = melt_measurements(read_wheel_member(wheel, info.member))
    return melt_from_measurements(frame, decimals=decimals, name=info.name)


def load_melt_viscosity(decimals: int = 6, use_cache: bool = True) -> FormulaData:
    """Melt viscosity from gpvisc's ``all_viscosity.hdf5`` (same as ``load_dataset("melt_viscosity")``).

    With the default ``decimals=6`` (gpvisc 0.3.5): 28,898 measurements (= the 27,671 rows of
    ``dataset+sciglass_lp.csv`` plus the 1,227 of ``dataset_hp.csv``) of 8,013 compositions (5,728 names).
    Per split: train 22,673 rows / 6,384 compositions / 4,614 names; eval (paper's "valid") 3,249 / 930 / 634;
    test 2,976 / 841 / 630. The paper split by name, yet 66 of the 630 test names (and 63 of the 841 test
    compositions, with identical fractions; 177 test rows) also occur in training; 84 of the 634 eval names
    occur in training. 110 names and 108 compositions have measurements in more than one split, so ``split``
    is per measurement row, not per formula.
    """
    kwargs = {} if decimals == 6 else {"decimals": decimals}
    return load_dataset("melt_viscosity", use_cache=use_cache, **kwargs)


_CONVERTERS: dict[str, Callable[..., FormulaData]] = {"matbench": _matbench, "melt": _melt}


# ----- liquid viscosity (vendored) ----------------------------------------------------------------------------
#: Names of common liquids (name -> any SMILES; matched by canonical SMILES when the compound table is built).
LIQUID_NAMES: dict[str, str] = {
    "water": "O", "methanol": "CO", "ethanol": "CCO", "1-propanol": "CCCO", "2-propanol": "CC(C)O",
    "1-butanol": "CCCCO", "2-butanol": "CCC(C)O", "isobutanol": "CC(C)CO", "tert-butanol": "CC(C)(C)O",
    "1-pentanol": "CCCCCO", "1-hexanol": "CCCCCCO", "1-heptanol": "CCCCCCCO", "1-octanol": "CCCCCCCCO",
    "1-decanol": "CCCCCCCCCCO", "benzyl alcohol": "OCc1ccccc1", "cyclohexanol": "OC1CCCCC1",
    "ethylene glycol": "OCCO", "propylene glycol": "CC(O)CO", "1,3-propanediol": "OCCCO", "glycerol": "OCC(O)CO",
    "diethylene glycol": "OCCOCCO", "triethylene glycol": "OCCOCCOCCO", "2-methoxyethanol": "COCCO",
    "2-ethoxyethanol": "CCOCCO", "2-butoxyethanol": "CCCCOCCO", "pentane": "CCCCC", "hexane": "CCCCCC",
    "heptane": "CCCCCCC", "octane": "CCCCCCCC", "nonane": "CCCCCCCCC", "decane": "CCCCCCCCCC",
    "dodecane": "CCCCCCCCCCCC", "hexadecane": "CCCCCCCCCCCCCCCC", "isooctane": "CC(C)CC(C)(C)C",
    "cyclohexane": "C1CCCCC1", "methylcyclohexane": "CC1CCCCC1", "1-hexene": "C=CCCCC", "benzene": "c1ccccc1",
    "toluene": "Cc1ccccc1", "ethylbenzene": "CCc1ccccc1", "o-xylene": "Cc1ccccc1C", "m-xylene": "Cc1cccc(C)c1",
    "p-xylene": "Cc1ccc(C)cc1", "mesitylene": "Cc1cc(C)cc(C)c1", "styrene": "C=Cc1ccccc1",
    "chlorobenzene": "Clc1ccccc1", "bromobenzene": "Brc1ccccc1", "nitrobenzene": "O=[N+]([O-])c1ccccc1",
    "aniline": "Nc1ccccc1", "phenol": "Oc1ccccc1", "anisole": "COc1ccccc1", "acetophenone": "CC(=O)c1ccccc1",
    "benzaldehyde": "O=Cc1ccccc1", "pyridine": "c1ccncc1", "quinoline": "c1ccc2ncccc2c1",
    "DMSO (dimethyl sulfoxide)": "CS(C)=O", "acetone": "CC(C)=O", "2-butanone": "CCC(C)=O",
    "cyclohexanone": "O=C1CCCCC1", "acetonitrile": "CC#N", "DMF (N,N-dimethylformamide)": "CN(C)C=O",
    "N,N-dimethylacetamide": "CC(=O)N(C)C", "NMP (N-methyl-2-pyrrolidone)": "CN1CCCC1=O", "formamide": "NC=O",
    "N-methylformamide": "CNC=O", "THF (tetrahydrofuran)": "C1CCOC1", "1,4-dioxane": "C1COCCO1",
    "diethyl ether": "CCOCC", "diisopropyl ether": "CC(C)OC(C)C", "MTBE (methyl tert-butyl ether)": "COC(C)(C)C",
    "1,2-dimethoxyethane": "COCCOC", "ethyl acetate": "CCOC(C)=O", "methyl acetate": "COC(C)=O",
    "butyl acetate": "CCCCOC(C)=O", "dimethyl carbonate": "COC(=O)OC", "diethyl carbonate": "CCOC(=O)OCC",
    "propylene carbonate": "CC1COC(=O)O1", "ethylene carbonate": "O=C1OCCO1", "acetic acid": "CC(=O)O",
    "formic acid": "OC=O", "propanoic acid": "CCC(=O)O", "chloroform": "ClC(Cl)Cl",
    "dichloromethane": "ClCCl", "carbon tetrachloride": "ClC(Cl)(Cl)Cl", "1,2-dichloroethane": "ClCCCl",
    "trichloroethylene": "ClC=C(Cl)Cl", "tetrachloroethylene": "ClC(Cl)=C(Cl)Cl", "carbon disulfide": "S=C=S",
    "nitromethane": "C[N+](=O)[O-]", "triethylamine": "CCN(CC)CC", "diethylamine": "CCNCC",
    "morpholine": "C1COCCN1", "piperidine": "C1CCNCC1", "ethanolamine": "NCCO", "diethanolamine": "OCCNCCO",
    "sulfolane": "O=S1(=O)CCCC1", "tetraethylene glycol dimethyl ether": "COCCOCCOCCOCCOC",
    "squalane": "CC(C)CCCC(C)CCCC(C)CCCCC(C)CCCC(C)CCCC(C)C",
}


def liquid_data_dir() -> Path:
    """Folder of the vendored liquid viscosity files (``mrl/data_files/liquid_viscosity``)."""
    return Path(__file__).resolve().parent / "data_files" / LIQUID_FOLDER


def liquid_compound_table(smiles: Sequence[str], compound_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Material ids of compounds given as SMILES (needs RDKit).

    Each given SMILES is canonicalised (RDKit, stereo kept); spellings of one molecule share one ``material_id``.
    Ids are ``C0001``, ``C0002``... in sorted canonical-SMILES order (unparsable SMILES keep their text). Returns
    one row per given SMILES: ``given_smiles``, ``compound_id`` (the source's id, or the position),
    ``material_id``, ``smiles`` (canonical), ``name`` (from :data:`LIQUID_NAMES`, else empty) and ``family``
    (:func:`mrl.descriptors.chemical_class`).
    """
    given = [str(s) for s in smiles]
    canon = [canonical_smiles(s) or s for s in given]
    order = sorted(set(canon))
    width = max(4, len(str(len(order))))
    ids = {c: f"C{i:0{width}d}" for i, c in enumerate(order, start=1)}
    names = {canonical_smiles(smi): name for name, smi in LIQUID_NAMES.items()}
    return pd.DataFrame({
        "given_smiles": given,
        "compound_id": list(compound_ids) if compound_ids is not None else list(range(len(given))),
        "material_id": [ids[c] for c in canon],
        "smiles": canon,
        "name": [names.get(c, "") for c in canon],
        "family": [chemical_class(c) for c in canon],
    })


def vendor_liquid_viscosity(source_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the vendored files from a CheMixHub checkout's logV files (needs RDKit; run once by a maintainer).

    ``source_dir`` holds ``published_logV.csv``, ``compounds.csv`` and ``LICENSE.chemixhub``. Writes into
    ``out_dir`` (default :func:`liquid_data_dir`): ``published_logV.csv.gz`` (the CSV byte for byte, gzip with
    mtime 0, so the file is reproducible), ``compounds.csv`` (:func:`liquid_compound_table` of CheMixHub's
    compound table, plus its ``salt`` column) and ``LICENSE.chemixhub``. The README is written by hand.
    """
    source, out = Path(source_dir), Path(out_dir) if out_dir is not None else liquid_data_dir()
    out.mkdir(parents=True, exist_ok=True)
    raw = (source / "published_logV.csv").read_bytes()
    with open(out / LIQUID_FILE, "wb") as handle, gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=9,
                                                                 mtime=0, filename="") as gz:
        gz.write(raw)
    comp = pd.read_csv(source / "compounds.csv")
    table = liquid_compound_table(comp["smiles"], comp["compound_id"])
    table["salt"] = comp["salt"].to_numpy()
    table.to_csv(out / LIQUID_COMPOUNDS, index=False)
    shutil.copyfile(source / "LICENSE.chemixhub", out / "LICENSE.chemixhub")
    return [out / LIQUID_FILE, out / LIQUID_COMPOUNDS, out / "LICENSE.chemixhub"]


def _fraction_text(value: float) -> str:
    return format(round(float(value), 6), ".6g")


def liquid_from_frame(frame: pd.DataFrame, compounds: pd.DataFrame | None = None,
                      name: str = "liquid_viscosity") -> FormulaData:
    """Long-format data from rows in the format of CheMixHub's ``published_logV.csv``.

    Args:
        frame: columns ``Label, logV, T, Predict logV, Predict uncertainty logV, Train_Test_Label, SMILES_0,
            SMILES_1, comp_0, comp_1`` (one row per measurement).
        compounds: a :func:`liquid_compound_table` (``given_smiles``, ``material_id``, ``smiles``, ``name``,
            ``family``) covering every SMILES of ``frame``; built from ``frame`` with RDKit when None.
        name: label of the data set.

    A component with an empty SMILES or a mole fraction of 0 is left out (a pure liquid may be given as
    component 1 with ``comp_0 = 0`` and no ``SMILES_0``); a row left with no component is an error. One formula
    per distinct composition: its id is the material id for a pure liquid (``C0042``), else
    ``C0001:0.25+C0002:0.75`` (ids sorted, fractions rounded to 6 decimals), so both orders of a pair and repeated
    measurements at several T share one formula. Properties: ``formula_id``, ``viscosity`` (log10 cP), ``T`` (K),
    ``split`` (the paper's ``train``/``test``), ``group`` (the system: sorted ids joined by ``+``), ``kind``
    (``pure``/``mixture``), ``published`` and ``published_sd`` (the published model's prediction and uncertainty,
    log10 cP) and ``label`` (the source's row id).
    """
    need = ["Label", "logV", "T", "Predict logV", "Predict uncertainty logV", "Train_Test_Label", "SMILES_0",
            "SMILES_1", "comp_0", "comp_1"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; expected {need}")
    smi = [frame[c].fillna("").astype(str).str.strip().to_numpy() for c in ("SMILES_0", "SMILES_1")]
    frac = [pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64) for c in ("comp_0", "comp_1")]
    if compounds is None:
        given = sorted({s for col in smi for s in col if s})
        compounds = liquid_compound_table(given)
    lookup = dict(zip(compounds["given_smiles"].astype(str), compounds["material_id"].astype(str)))
    fids, groups, kinds = [], [], []
    parts: dict[str, list[tuple[str, float]]] = {}
    for row in range(len(frame)):
        comps: dict[str, float] = {}
        for k in (0, 1):
            s, x = smi[k][row], frac[k][row]
            if not s or not (x > 0):
                if s == "" and x > 0:
                    raise DataError(f"{name}: row {row} (Label {frame['Label'].iloc[row]}): comp_{k} = {x:g} but "
                                    f"SMILES_{k} is empty")
                continue
            if s not in lookup:
                raise DataError(f"{name}: row {row}: SMILES_{k} {s!r} is not in the compound table")
            mid = lookup[s]
            comps[mid] = comps.get(mid, 0.0) + float(x)
        if not comps:
            raise DataError(f"{name}: row {row} (Label {frame['Label'].iloc[row]}): no component with a positive "
                            "mole fraction")
        items = sorted(comps.items())
        fid = items[0][0] if len(items) == 1 else "+".join(f"{m}:{_fraction_text(x)}" for m, x in items)
        if fid not in parts:
            parts[fid] = [(m, round(x, 6)) for m, x in items]
        fids.append(fid)
        groups.append("+".join(m for m, _ in items))
        kinds.append("pure" if len(items) == 1 else "mixture")
    formulas = pd.DataFrame([(f, m, x) for f, items in parts.items() for m, x in items],
                            columns=["formula_id", "material_id", "content"])
    props = pd.DataFrame({
        "formula_id": fids,
        "viscosity": pd.to_numeric(frame["logV"], errors="coerce").to_numpy(np.float64),
        "T": pd.to_numeric(frame["T"], errors="coerce").to_numpy(np.float64),
        "split": frame["Train_Test_Label"].astype(str).str.strip().str.lower().to_numpy(),
        "group": groups,
        "kind": kinds,
        "published": pd.to_numeric(frame["Predict logV"], errors="coerce").to_numpy(np.float64),
        "published_sd": pd.to_numeric(frame["Predict uncertainty logV"], errors="coerce").to_numpy(np.float64),
        "label": frame["Label"].to_numpy(),
    })
    used = set(formulas["material_id"])
    comp = compounds.copy()
    comp["given_smiles"] = comp["given_smiles"].astype(str)
    spellings = comp.groupby("material_id")["given_smiles"].agg(lambda v: " | ".join(sorted(set(v))))
    mats = (comp.drop_duplicates("material_id").sort_values("material_id")
            [["material_id", "smiles", "name", "family"]].reset_index(drop=True))
    mats = mats[mats["material_id"].isin(used)].reset_index(drop=True)
    mats["name"] = mats["name"].fillna("").astype(str)
    mats["given_smiles"] = mats["material_id"].map(spellings).to_numpy()
    return load_formulas(formulas, props, mats, targets=("viscosity",), conditions=("T",),
                         content_unit="fraction", name=name)


def _liquid(info: DatasetInfo) -> FormulaData:
    """Loader of ``liquid_viscosity`` from the vendored files (see :func:`liquid_from_frame`)."""
    folder = liquid_data_dir()
    frame = pd.read_csv(folder / LIQUID_FILE, dtype={"SMILES_0": str, "SMILES_1": str}, keep_default_na=False,
                        na_values={c: [""] for c in ("logV", "T", "comp_0", "comp_1")})
    compounds = pd.read_csv(folder / LIQUID_COMPOUNDS, dtype={"given_smiles": str, "name": str},
                            keep_default_na=False)
    return liquid_from_frame(frame, compounds, name=info.name)


def load_liquid_viscosity() -> FormulaData:
    """Viscosity of pure liquids and binary mixtures (same as ``load_dataset("liquid_viscosity")``).

    34,374 measurements (30,936 train / 3,438 test, the paper's split): 2,910 of pure liquids and 31,464 of
    binary mixtures. The 1,628 SMILES of the source are 1,397 molecules after RDKit canonicalisation (231
    molecules are spelled two ways, e.g. ``Brc1ccccc1`` and ``c1(Br)ccccc1``, mostly one spelling in mixtures
    and one in a second pure-liquid source at 298 K); they are merged into one material each.
    """
    return load_dataset("liquid_viscosity")


#: Data sets vendored in the package: loader name -> function ``(info, **kwargs) -> FormulaData``.
_VENDORED: dict[str, Callable[..., FormulaData]] = {"liquid": _liquid}


def published_gp_metrics() -> pd.DataFrame:
    """Published metrics of gpvisc's three GP models (``gpvisc/models/GP_model{1,2,3}/metrics.csv``): columns
    ``model``, ``train``, ``test``, ``handtest`` (RMSE, log10 Pa s)."""
    wheel = fetch_wheel("gpvisc", "0.3.5")
    rows = []
    for i in (1, 2, 3):
        frame = pd.read_csv(io.BytesIO(read_wheel_member(wheel, f"gpvisc/models/GP_model{i}/metrics.csv")))
        frame = frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed")])
        frame.insert(0, "model", f"GP_model{i}")
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


# --------------------------------------------------------------------------------------------------------------
# Protocols and element tables
# --------------------------------------------------------------------------------------------------------------
def matbench_folds(data: FormulaData, n_splits: int = 5,
                   random_state: int = MATBENCH_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """Matbench v0.1 folds: ``KFold(n_splits, shuffle=True, random_state)`` over the samples in dataset order;
    a list of ``(train_indices, test_indices)`` into ``data.properties`` rows."""
    kfold = KFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return [(tr, te) for tr, te in kfold.split(np.arange(data.n_samples))]
