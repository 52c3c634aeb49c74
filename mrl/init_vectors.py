"""Initial material vectors from a descriptor table (e.g. mat2vec or Magpie element properties).

:func:`initial_table` turns a table indexed by material id (one numeric row per material) into starting values
for :class:`mrl.model.MixtureModel`'s raw table ``W`` (``n_materials x embedding_dim``): NaNs are filled with the
column mean, columns standardised, the rows of the vocabulary projected on their first ``embedding_dim`` principal
axes, and the result scaled so that the *activated* values (``tanh(W)`` for ``activation="tanh"``) have overall
standard deviation ``scale``. Materials missing from the table start at zero. Nothing here looks at targets.

``MixtureRegressor.fit(data, initial_table=...)`` takes the result; :func:`set_initial_table` copies it into a
built module.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd
import torch

log = logging.getLogger(__name__)
#: Largest |activated value| before ``arctanh``, so the raw table stays finite.
TANH_LIMIT = 0.95


def initial_table(table: pd.DataFrame, material_ids: Sequence[str], dim: int, activation: str = "tanh",
                  scale: float = 0.5) -> np.ndarray:
    """Raw-table starting values ``(len(material_ids), dim)`` from a descriptor ``table`` (index = material id).

    Columns beyond the table's rank are zero. Rows of materials absent from ``table`` are zero (logged).
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if activation not in ("tanh", "none"):
        raise ValueError(f"activation must be 'tanh' or 'none', got {activation!r}")
    ids = [str(m) for m in material_ids]
    frame = table.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    frame.index = frame.index.astype(str)
    frame = frame.loc[:, frame.notna().any(axis=0)]
    frame = frame.fillna(frame.mean(axis=0))
    present = np.array([m in frame.index for m in ids])
    if not present.all():
        log.warning("initial_table: %d material(s) not in the table start at zero: %s", int((~present).sum()),
                    [m for m, p in zip(ids, present) if not p][:10])
    out = np.zeros((len(ids), dim))
    if present.sum() >= 2:
        X = frame.loc[[m for m, p in zip(ids, present) if p]].to_numpy(np.float64)
        sd = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        U, S, _ = np.linalg.svd(X, full_matrices=False)
        k = min(dim, int((S > 1e-10 * max(S.max(), 1e-300)).sum()))
        Z = U[:, :k] * S[:k]
        total = Z.std()
        if k and total > 0:
            out[present, :k] = Z * (scale / total)
    if activation == "tanh":
        out = np.arctanh(np.clip(out, -TANH_LIMIT, TANH_LIMIT))
    return out


def set_initial_table(module: torch.nn.Module, values: np.ndarray) -> None:
    """Copy ``values`` into ``module.table`` (a :class:`mrl.model.MixtureModel`), checking the shape."""
    values = np.asarray(values, np.float64)
    if tuple(values.shape) != tuple(module.table.shape):
        raise ValueError(f"initial table has shape {values.shape}; the model's table is {tuple(module.table.shape)}")
    with torch.no_grad():
        module.table.copy_(torch.as_tensor(values, dtype=module.table.dtype, device=module.table.device))
