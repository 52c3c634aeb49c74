"""Known material features: one numeric row per material, standardised for the model's feature map ``g``.

:func:`material_features` builds the raw table (index ``material_id``, float columns, NaN where a value is not
known) from one of :data:`FEATURE_KINDS`:

* ``"columns"``: every column of the materials table except identity and usage columns (:data:`NOT_FEATURES`); a
  text value is an error naming the column, the value and the material.
* ``"magpie"``, ``"mat2vec"``, ``"oliynyk"``, ``"jarvis"``: element property tables
  (:func:`mrl.elements.element_table`), looked up by material id = element symbol. A material id that is not an
  element symbol is read as a chemical formula (:func:`mrl.elements.parse_formula`: ``"SiO2"``, ``"Al2O3"``,
  ``"Na2O"``, ``"CaMgSi2O6"``) and described by :func:`compound_features` (see below).
* ``"rdkit"``: RDKit descriptors of the materials table's ``smiles`` column (:mod:`mrl.descriptors`).
* ``"graph"`` (:data:`GRAPH`) is no table: ``g`` is a message-passing network over the ``smiles`` column's
  molecular graphs (:mod:`mrl.graph`).
* ``"supplier"``: the ``sheet_*`` columns (supplier-sheet values; :func:`mrl.synth.make_lab` writes them for its
  materials with ``supplier_sheet=True``).

:class:`FeatureScaler` turns that table into the model's input: each column standardised with its mean and SD over
the materials it was fitted on, a missing value set to the column mean (0 after standardising), and for every
column with gaps a 0/1 missing-indicator column (``<column>_missing``). A material with no feature at all thus gets
the mean row with all its indicators set, and ``g`` of that row: the model learns what "no data sheet" means from
the training materials that have none. Constant columns are dropped (logged); an all-NaN column is an error. The
scaler's state is plain Python values, so it goes into checkpoints.

**Compounds (element kinds).** When at least one material id is a chemical formula of known elements (and not
itself an element symbol), every material gets a *compound row* (:func:`compound_features`), with the element
table's columns ``c`` and three groups more, chosen for oxides (melts, glasses, ceramics) but defined for any formula:

* ``c``: the stoichiometry-weighted mean of the element rows (weights = atoms per formula unit / atoms in it;
  SiO2: (Si + 2 O) / 3);
* ``cation_<c>``: the mean row of the formula's elements other than oxygen, weighted by their amounts (for an oxide
  with one cation: that cation's own row, e.g. Si for SiO2, Al for Al2O3);
* ``n_cations``: atoms other than oxygen per formula unit (Al2O3: 2, so one mole of it brings two Al);
* ``O_per_cation``: oxygen atoms per non-oxygen atom (SiO2 2, Al2O3 1.5, Na2O 0.5, P2O5 2.5); for a single-cation
  oxide this is half the cation's formal charge (oxygen as O2-).

An element id in such a table is its own formula (``"Fe"``: ``c`` and ``cation_c`` its row, ``n_cations`` 1,
``O_per_cation`` 0); pure oxygen has no cation (``cation_*`` NaN). A value missing from an element's row makes the
weighted values missing (NaN, then imputed by the scaler). In such a table an id that is neither an element symbol
nor a parseable formula of the table's elements is an error naming the id (when fitting; a *new* material,
``drop_empty=False``, gets a NaN row). Tables whose ids are all element symbols (or unknown ids, imputed as NaN rows)
are built exactly as without this rule: the columns of the element table, no extra ones. Cation field strength
(charge / radius^2) is not added: it needs ionic radii, which the element tables do not hold.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mrl import elements
from mrl.descriptors import rdkit_descriptors

log = logging.getLogger(__name__)

#: Element property tables (:func:`mrl.elements.element_table`), keyed by element symbol.
ELEMENT_KINDS = ("magpie", "mat2vec", "oliynyk", "jarvis")
#: Every kind :func:`material_features` builds (the ``features`` parameter's values but ``None``).
FEATURE_KINDS = ("columns", *ELEMENT_KINDS, "rdkit", "supplier")
#: The ``features`` value whose ``g`` is a molecular-graph encoder over the ``smiles`` column (:mod:`mrl.graph`),
#: not a map of feature rows: :func:`material_features` does not build a table for it.
GRAPH = "graph"
#: The feature table that stands for ``graph`` where a fixed table is needed (tree baselines): RDKit descriptors of
#: the same ``smiles`` column.
GRAPH_TABLE = "rdkit"
#: Columns of a materials table that are ids, descriptions or usage, never features.
NOT_FEATURES = ("material_id", "n_formulas", "median_content", "name", "family", "smiles", "tied_to", "like")
#: Prefix of supplier-sheet columns (``features="supplier"``).
SHEET_PREFIX = "sheet_"
#: Suffix of missing-indicator columns.
MISSING_SUFFIX = "_missing"


def _numeric(frame: pd.DataFrame, ids: pd.Series, what: str) -> pd.DataFrame:
    """``frame`` as floats; a value that is not a number is an error naming the column, the value and the id."""
    out = {}
    for col in frame.columns:
        values = frame[col]
        if values.dtype == bool:
            values = values.astype(np.float64)
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna().to_numpy() & values.notna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{what}: column {col!r} holds text, e.g. {values.iloc[i]!r} for material "
                             f"{ids.iloc[i]!r}; features must be numbers (drop the column or encode it as numbers)")
        out[str(col)] = numbers.astype(np.float64).to_numpy()
    return pd.DataFrame(out, index=pd.Index(ids.astype(str).to_numpy(), name="material_id"))


def _drop_empty(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """Drop columns without any value over these materials (logged); none left is an error."""
    empty = [c for c in frame.columns if frame[c].isna().all()]
    if empty:
        log.info("%s: %d column(s) without any value for these materials dropped, e.g. %s", what, len(empty),
                 empty[:5])
    out = frame.drop(columns=empty)
    if out.shape[1] == 0:
        raise ValueError(f"{what}: no material has any feature value")
    return out


def material_features(materials: pd.DataFrame, kind: str, drop_empty: bool = True) -> pd.DataFrame:
    """Raw feature table of ``materials`` (a materials table with ``material_id``), one row per material in its
    order: index ``material_id``, float columns, NaN where unknown. See the module docstring for ``kind``.

    For element tables and RDKit (where the columns are not the user's choice), ``drop_empty`` drops columns
    without a value for these materials (logged) and refuses a table where no material has any; with
    ``drop_empty=False`` (features of *new* materials for a fitted scaler) every column is kept and a material
    not found simply gets a NaN row.

    Raises:
        ValueError: unknown ``kind``, no feature column, a text value in a feature column (naming the column, the
            value and the material), a missing ``smiles`` column for ``"rdkit"``, no ``sheet_*`` column for
            ``"supplier"``, or no material found in an element table.
    """
    if "material_id" not in materials.columns:
        raise ValueError("material_features: the materials table needs a material_id column")
    ids = materials["material_id"].astype(str).reset_index(drop=True)
    what = f"features={kind!r}"
    if kind == "columns":
        cols = [c for c in materials.columns if c not in NOT_FEATURES]
        if not cols:
            raise ValueError(f"{what}: the materials table has no column besides {list(NOT_FEATURES)}; add numeric "
                             f"feature columns to materials.csv")
        return _numeric(materials[cols].reset_index(drop=True), ids, f"{what}: materials table")
    if kind == "supplier":
        cols = [c for c in materials.columns if str(c).startswith(SHEET_PREFIX)]
        if not cols:
            raise ValueError(f"{what}: the materials table has no {SHEET_PREFIX}* column (supplier-sheet values); a "
                             f"synthetic lab has them with mrl.synth.make_lab(..., supplier_sheet=True)")
        return _numeric(materials[cols].reset_index(drop=True), ids, f"{what}: materials table")
    if kind in ELEMENT_KINDS:
        table = elements.element_table(kind)
        found = ids.isin(table.index)
        compounds = _formula_ids(ids[~found], table)
        if compounds or not drop_empty:
            frame = compound_features(ids, table, strict=drop_empty, what=what)
            return _drop_empty(frame, what) if drop_empty else frame
        if not found.any() and drop_empty:
            raise ValueError(f"{what}: no material id is an element symbol of the {kind} table (e.g. "
                             f"{ids.iloc[0]!r}); element features need ids like 'Fe', 'O'")
        if not found.all():
            log.warning("%s: %d material(s) not in the %s table get no features (imputed), e.g. %s", what,
                        int((~found).sum()), kind, ids[~found].tolist()[:5])
        frame = table.reindex(ids.to_numpy())
        frame.index = pd.Index(ids.to_numpy(), name="material_id")
        frame = frame.astype(np.float64)
        return _drop_empty(frame, what) if drop_empty else frame
    if kind == "rdkit":
        if "smiles" not in materials.columns:
            raise ValueError(f"{what}: the materials table needs a 'smiles' column")
        smiles = materials["smiles"].reset_index(drop=True)
        known = smiles.notna() & smiles.astype(str).str.strip().ne("")
        desc = rdkit_descriptors(sorted(set(smiles[known].astype(str))))
        desc = desc[~desc.index.duplicated()]
        frame = desc.reindex(smiles.where(known, "").astype(str).to_numpy())
        frame.index = pd.Index(ids.to_numpy(), name="material_id")
        frame = frame.apply(pd.to_numeric, errors="coerce").astype(np.float64)
        return _drop_empty(frame, what) if drop_empty else frame
    if kind == GRAPH:
        raise ValueError(f"{what}: the graph encoder reads SMILES (mrl.graph.material_smiles), not a feature table")
    raise ValueError(f"features must be one of {FEATURE_KINDS} (or None), got {kind!r}")


#: Column names of :func:`compound_features` besides the element table's own.
CATION_PREFIX = "cation_"
N_CATIONS = "n_cations"
O_PER_CATION = "O_per_cation"
#: The anion whose atoms are counted by ``O_per_cation`` and left out of the ``cation_*`` mean.
ANION = "O"


def _parse(material_id: str, table: pd.DataFrame) -> dict[str, float]:
    """``{element: amount}`` of a formula id whose elements are all rows of ``table``; ValueError otherwise."""
    amounts = elements.parse_formula(material_id)
    unknown = [el for el in amounts if el not in table.index]
    if unknown:
        raise ValueError(f"element(s) {unknown} not in the element table")
    if not amounts or sum(amounts.values()) <= 0:
        raise ValueError("no positive amount")
    return amounts


def _formula_ids(ids: pd.Series, table: pd.DataFrame) -> list[str]:
    """The ids (not element symbols of ``table``) that parse as formulas of ``table``'s elements."""
    out = []
    for mid in ids:
        try:
            _parse(str(mid), table)
        except ValueError:
            continue
        out.append(str(mid))
    return out


def compound_features(ids: pd.Series | list[str], table: pd.DataFrame, strict: bool = True,
                      what: str = "features") -> pd.DataFrame:
    """Compound rows of material ids given as element symbols or chemical formulas, from an element table
    (index = element symbol): the stoichiometry-weighted mean row, the ``cation_*`` row, ``n_cations`` and
    ``O_per_cation`` (see the module docstring). Index ``material_id`` in the order of ``ids``.

    Raises:
        ValueError: with ``strict``, an id that is neither an element symbol of ``table`` nor a formula of its
            elements, naming the id and why it failed (with ``strict=False`` it gets a NaN row).
    """
    ids = [str(i) for i in ids]
    values = table.to_numpy(np.float64)
    cols = [str(c) for c in table.columns]
    pos = {str(el): i for i, el in enumerate(table.index)}
    n = len(ids)
    mean = np.full((n, len(cols)), np.nan)
    cation = np.full((n, len(cols)), np.nan)
    n_cat = np.full(n, np.nan)
    o_per = np.full(n, np.nan)
    for r, mid in enumerate(ids):
        try:
            amounts = {mid: 1.0} if mid in pos else _parse(mid, table)
        except ValueError as exc:
            if strict:
                raise ValueError(f"{what}: material id {mid!r} is neither an element symbol of the table nor a "
                                 f"chemical formula of its elements ({exc}); compound features need ids like "
                                 f"'SiO2', 'Al2O3', 'Fe'") from None
            continue
        els = list(amounts)
        w = np.array([amounts[e] for e in els], np.float64)
        rows = values[[pos[e] for e in els]]
        mean[r] = (w[:, None] * rows).sum(0) / w.sum()
        is_cat = np.array([e != ANION for e in els])
        n_o = float(w[~is_cat].sum())
        n_cat[r] = float(w[is_cat].sum())
        if is_cat.any():
            cation[r] = (w[is_cat, None] * rows[is_cat]).sum(0) / w[is_cat].sum()
            o_per[r] = n_o / n_cat[r]
    frame = pd.DataFrame(np.hstack([mean, cation, n_cat[:, None], o_per[:, None]]),
                         columns=[*cols, *(f"{CATION_PREFIX}{c}" for c in cols), N_CATIONS, O_PER_CATION],
                         index=pd.Index(ids, name="material_id"))
    return frame


@dataclass
class FeatureScaler:
    """Standardise a raw feature table, with mean imputation and missing indicators (see the module docstring).

    Attributes:
        columns: value columns kept (constant ones dropped), in output order.
        mean: their means over the fitted materials.
        std: their standard deviations (> 0).
        gaps: columns with a missing value when fitted; each adds an indicator column after the values.
    """

    columns: list[str] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, frame: pd.DataFrame, what: str = "features") -> "FeatureScaler":
        """Fit on a raw table (rows = materials). All-NaN columns are an error naming them; constant ones are
        dropped (logged); a table left without columns is an error."""
        frame = _numeric(frame.reset_index(drop=True), pd.Series(frame.index.astype(str)), what)
        empty = [c for c in frame.columns if frame[c].isna().all()]
        if empty:
            raise ValueError(f"{what}: column(s) {empty[:5]} have no value for any material; drop them")
        mean, std = frame.mean(axis=0), frame.std(axis=0, ddof=0)
        constant = [c for c in frame.columns if not std[c] > 1e-12 * max(1.0, abs(mean[c]))]
        if constant:
            log.info("%s: %d constant column(s) dropped: %s", what, len(constant), constant[:10])
        columns = [c for c in frame.columns if c not in constant]
        gaps = [c for c in frame.columns if frame[c].isna().any()]
        if not columns and not gaps:
            raise ValueError(f"{what}: every feature column is constant; nothing to learn from")
        return cls(columns, [float(mean[c]) for c in columns], [float(std[c]) for c in columns], gaps)

    @property
    def names(self) -> list[str]:
        """Output column names: the standardised values, then the missing indicators."""
        return [*self.columns, *(f"{c}{MISSING_SUFFIX}" for c in self.gaps)]

    def transform(self, frame: pd.DataFrame, missing: str = "error", what: str = "features") -> np.ndarray:
        """Standardised rows of a raw table, shape ``(len(frame), len(names))``, float32; NaN -> 0 plus indicator.

        ``missing="error"`` refuses a table lacking a fitted column (naming it); ``"nan"`` treats it as unknown.
        """
        needed = list(dict.fromkeys([*self.columns, *self.gaps]))
        absent = [c for c in needed if c not in frame.columns]
        if absent and missing == "error":
            raise ValueError(f"{what}: column(s) {absent[:5]} the model was fitted with are missing (give them, "
                             f"with NaN where unknown)")
        frame = frame.reindex(columns=needed)
        values = _numeric(frame.reset_index(drop=True), pd.Series(frame.index.astype(str)), what)
        x = (values[self.columns].to_numpy(np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        x = np.nan_to_num(x, nan=0.0)
        gaps = values[self.gaps].isna().to_numpy(np.float64)
        return np.hstack([x, gaps]).astype(np.float32).reshape(len(frame), len(self.names))

    def fill_row(self) -> np.ndarray:
        """The row of a material without any feature value, shape ``(len(names),)``."""
        return self.transform(pd.DataFrame(index=pd.Index(["?"]), columns=[]), missing="nan")[0]

    def to_state(self) -> dict:
        """Plain values (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "FeatureScaler":
        """Rebuild from :meth:`to_state`."""
        return cls(**{k: list(v) for k, v in state.items()})
