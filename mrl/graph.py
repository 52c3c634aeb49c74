"""A learned molecular-graph encoder ``g(graph)`` behind each material's vector (``features: graph``).

Each material with a ``smiles`` value in the materials table is turned into a molecular graph by chemprop 2's
featuriser (:class:`chemprop.featurizers.SimpleMoleculeMolGraphFeaturizer`: 72 atom and 14 bond features). The
graphs of the whole vocabulary form one :class:`chemprop.data.BatchMolGraph`, kept in the model (rebuilt from the
SMILES, which the checkpoint holds, never pickled). :class:`GraphEncoder` runs chemprop's directed bond message
passing (:class:`chemprop.nn.BondMessagePassing`, :data:`GRAPH_HIDDEN` units, :data:`GRAPH_DEPTH` steps) over all
of them, sums each molecule's atom states (:class:`chemprop.nn.NormAggregation`: the sum / 100, chemprop's
default, so size counts) and maps the result linearly to the embedding size. The model adds it to the residual
table: ``e_i = g(graph_i) + r_i`` (see :mod:`mrl.model`), trained end to end with the regressor inside mrl's own
loop (not chemprop's Lightning trainer). The output layer starts at zero, so training starts from the plain table.

* **No SMILES** (empty cell: water given only by name, a salt without a structure, a polymer grade): the material
  has no graph, ``g`` gives 0 and its vector is its learned residual alone (the plain learned vector); the fit logs
  how many and which (:func:`material_smiles`).
* **Invalid SMILES**: an error naming the material and its row of the materials table.
* **Salts and multi-fragment SMILES** (``"[Na+].[Cl-]"``, ``"CC(=O)[O-].[Na+]"``, hydrates): the whole
  disconnected graph is one molecule. Message passing stays within each fragment (there are no bonds between
  them), and the sum over atoms adds up every fragment, the counter-ion included, with its formal charge as an
  atom feature. A single-atom SMILES (``"O"``, ``"[Na+]"``) is a graph without bonds: its state is its atom
  features through the output layer of the message passing.

chemprop imports slowly (seconds, it brings Lightning), so it is imported inside the functions that need it.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

log = logging.getLogger(__name__)

#: Hidden units of the bond message passing (chemprop's default is 300; 64 keeps a CPU fit of ~1,400 compounds fast).
GRAPH_HIDDEN = 64
#: Message-passing steps (chemprop's default).
GRAPH_DEPTH = 3


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip()


def parse_smiles(smiles: str, what: str = "smiles") -> "object":
    """The RDKit molecule of ``smiles``; ValueError naming ``what`` (material and row) when RDKit cannot read it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(str(smiles).strip())
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"{what}: invalid SMILES {smiles!r} (RDKit cannot parse it); fix it or leave the cell empty "
                         f"(the material then gets a learned vector without a graph)")
    return mol


def material_smiles(materials: pd.DataFrame, what: str = "features='graph'") -> list[str | None]:
    """The SMILES of each material of a materials table (None where the cell is empty), each checked by RDKit.

    Logs how many and which materials have no SMILES (they get a learned vector only).

    Raises:
        ValueError: no ``smiles`` column, or an invalid SMILES (naming the material and its row).
    """
    if "smiles" not in materials.columns:
        raise ValueError(f"{what}: the materials table needs a 'smiles' column (molecular structure per material)")
    ids = materials["material_id"].astype(str).tolist()
    out: list[str | None] = []
    for row, (mid, value) in enumerate(zip(ids, materials["smiles"].tolist())):
        if _is_blank(value):
            out.append(None)
            continue
        parse_smiles(str(value), f"{what}: material {mid!r} (materials table row {row + 1})")
        out.append(str(value).strip())
    missing = [m for m, s in zip(ids, out) if s is None]
    if missing:
        log.info("%s: %d of %d material(s) without SMILES get a learned vector without a graph: %s%s", what,
                 len(missing), len(ids), missing[:10], " ..." if len(missing) > 10 else "")
    return out


def batch_graph(smiles: Sequence[str]) -> "object":
    """One chemprop ``BatchMolGraph`` of ``smiles`` (each already valid), in their order."""
    from chemprop.data import BatchMolGraph
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer

    featurizer = SimpleMoleculeMolGraphFeaturizer()
    return BatchMolGraph([featurizer(parse_smiles(s)) for s in smiles])


class GraphEncoder(nn.Module):
    """``g``: chemprop bond message passing + sum aggregation + a linear map, over the vocabulary's graphs.

    Args:
        smiles: one entry per material (None: no graph, ``g`` = 0).
        out_dim: embedding size.
        hidden: message-passing hidden units.
        depth: message-passing steps.
    """

    def __init__(self, smiles: Sequence[str | None], out_dim: int, hidden: int = GRAPH_HIDDEN,
                 depth: int = GRAPH_DEPTH) -> None:
        super().__init__()
        from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer
        from chemprop.nn import BondMessagePassing, NormAggregation

        featurizer = SimpleMoleculeMolGraphFeaturizer()
        self.n_materials = len(smiles)
        self.message_passing = BondMessagePassing(d_v=featurizer.atom_fdim, d_e=featurizer.bond_fdim, d_h=hidden,
                                                  depth=depth)
        self.aggregation = NormAggregation()
        self.output = nn.Linear(hidden, out_dim)
        with torch.no_grad():
            self.output.weight.zero_()
            self.output.bias.zero_()
        has = [i for i, s in enumerate(smiles) if s is not None]
        self.register_buffer("rows", torch.as_tensor(has, dtype=torch.long), persistent=False)
        graph = batch_graph([smiles[i] for i in has]) if has else None
        for name in ("V", "E", "edge_index", "rev_edge_index", "batch"):
            value = getattr(graph, name) if graph is not None else torch.zeros(0)
            self.register_buffer(f"graph_{name}", value, persistent=False)

    def _graph(self) -> "object":
        from chemprop.data import BatchMolGraph

        graph = BatchMolGraph.__new__(BatchMolGraph)  # its tensors, on this module's device
        graph.V, graph.E = self.graph_V, self.graph_E
        graph.edge_index, graph.rev_edge_index, graph.batch = self.graph_edge_index, self.graph_rev_edge_index, \
            self.graph_batch
        return graph

    def forward(self) -> torch.Tensor:
        """``g`` of every material, shape ``(n_materials, out_dim)``; 0 for materials without a graph."""
        out = torch.zeros(self.n_materials, self.output.out_features, device=self.output.weight.device)
        if not len(self.rows):
            return out
        hidden = self.message_passing(self._graph())
        pooled = self.aggregation(hidden, self.graph_batch)
        return out.index_copy(0, self.rows, self.output(pooled))
