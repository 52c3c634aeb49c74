"""The material-embedding model: one vector per material, a content-weighted sum, a regressor head.

For a formula with content fractions ``c_i`` the mixture vector is ``m = sum_i c_i * e_i`` where the effective
material vector is ``e_i = s_i * act(W_i)``: ``W`` is the learned table (``n_materials x embedding_dim``),
``act`` is ``tanh`` (the seed report's ``CODE_ACT``) or the identity, and ``s_i`` a per-material content scale.
``s_i = 1 / median content of material i`` ("median" scaling) lets a thickener dosed at 0.5 % move the mixture
vector as far as the 80 % water base without its raw parameters growing 160-fold; "learned" starts there and
learns ``log s_i``; "rms" uses the root mean square content instead of the median (robust when a material is
mostly dosed in traces but sometimes at 10-100x that); "none" keeps ``s_i = 1``. Without interactions (below) the
mixture is linear in the contents for every option.

Optionally (``interaction="attention"``) the ingredients of a formula first look at each other: one layer of
content-weighted multi-head attention (as Roost/CrabNet do for elements) gives every ingredient an update
``u_i`` from its partners, and ``m = sum_i c_i (e_i + s_i u_i)``. The table stays the one inspectable vector per
material; the update starts at zero (a learned gate initialised at 0), so training starts from the plain sum.
``interaction="transformer"`` is the deeper form (:class:`ContentTransformer`: ``interaction_layers`` pre-norm
layers of content-weighted attention with ``interaction_heads`` heads, residual connections and layer norm, the
amount entered as a fractional encoding), with the same gate, the same update rule and the same table.

Known material features (``n_features > 0``): each material's raw vector becomes ``g(x_i) + r_i`` before the
activation, with ``x_i`` its standardised feature row (the ``features`` buffer, built by :mod:`mrl.features`), ``g``
a learned map shared by all materials (``feature_map``: ``"linear"``, or ``"mlp"`` with one hidden layer of
:data:`FEATURE_HIDDEN` units) and ``r_i`` the per-material residual (the table ``W``). ``g``'s output layer starts at
zero, so training starts from the plain table; content scaling, pinning and ties then apply as without features,
and :meth:`MixtureModel.material_vectors` still gives one effective vector per material. With ``graph_smiles``
(``features: graph``) ``g`` is a message-passing network over each material's molecular graph
(:class:`mrl.graph.GraphEncoder`, chemprop 2), trained end to end; a material without SMILES has ``g`` = 0.

Measurement conditions (temperature, pressure, ...) are standardised (optionally ``1000 / value`` first) and
enter the head beside ``m``; they never touch the material vectors. Target scaling (``log10`` then
standardisation) is stored in buffers so a checkpoint rebuilds the whole predictor.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from mrl.graph import GraphEncoder
from mrl.params import check_constraints

#: Transforms a fitted model applies (``auto`` is resolved before, by :mod:`mrl.transforms`).
TARGET_TRANSFORMS = ("none", "log10")
#: Width of the hidden layer of the ``"mlp"`` feature map.
FEATURE_HIDDEN = 64
#: Predictions are clipped to the training target range widened by this share of it (transformed units).
PREDICTION_MARGIN = 0.1
#: Typical Vogel-Fulcher-Tammann B (K) and C (K) the vft head starts from (silicate melts: B ~ 4,000-10,000 K).
VFT_B_INIT = 5000.0
VFT_C_INIT = 500.0
#: Smallest typical content used for content scaling, so a trace material's scale stays bounded.
MIN_SCALE_CONTENT = 1e-3


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """A plain MLP: Linear-SiLU(-Dropout) blocks and a linear output."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.SiLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Batch:
    """A batch of formulas as flat tensors, without padding.

    Attributes:
        index: material index of every ingredient, shape ``(nnz,)``.
        offsets: start of each formula in ``index``, shape ``(n,)``.
        content: content fraction of every ingredient, shape ``(nnz,)``.
        conditions: raw condition values, shape ``(n, n_conditions)``.
    """

    def __init__(self, index: torch.Tensor, offsets: torch.Tensor, content: torch.Tensor,
                 conditions: torch.Tensor) -> None:
        self.index, self.offsets, self.content, self.conditions = index, offsets, content, conditions

    @property
    def size(self) -> int:
        """Number of formulas in the batch."""
        return int(self.offsets.shape[0])

    def to(self, device: torch.device) -> "Batch":
        """The batch on ``device``."""
        return Batch(self.index.to(device), self.offsets.to(device), self.content.to(device),
                     self.conditions.to(device))


def make_batch(matrix: sp.csr_matrix, rows: np.ndarray, conditions: np.ndarray | None = None) -> Batch:
    """Gather ``rows`` of a CSR content matrix into a :class:`Batch` (vectorised, no Python loop).

    Args:
        matrix: formula x material content fractions, shape ``(n_formulas, n_materials)``.
        rows: formula rows to gather, shape ``(n,)``; repeats allowed.
        conditions: condition values for those rows, shape ``(n, n_conditions)`` or None.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))
    cond = np.zeros((len(rows), 0)) if conditions is None else np.asarray(conditions, np.float64)
    return Batch(torch.from_numpy(matrix.indices[flat].astype(np.int64)), torch.from_numpy(offsets),
                 torch.from_numpy(matrix.data[flat].astype(np.float32)),
                 torch.from_numpy(cond.astype(np.float32).reshape(len(rows), -1)))


def formula_rows(offsets: torch.Tensor, nnz: int) -> torch.Tensor:
    """Formula (row) index of each of the ``nnz`` flat ingredients of a batch with these ``offsets``."""
    lengths = torch.diff(offsets, append=torch.tensor([nnz], device=offsets.device))
    return torch.repeat_interleave(torch.arange(offsets.shape[0], device=offsets.device), lengths)


def _pad(values: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor, shape: tuple[int, int],
         fill: float = 0.0) -> torch.Tensor:
    """Flat per-ingredient rows -> padded ``(n_formulas, max_len, ...)``; ingredient ``i`` goes to
    ``(rows[i], slots[i])``."""
    padded = values.new_full((*shape, *values.shape[1:]), fill)
    padded[rows, slots] = values
    return padded


class ContentAttention(nn.Module):
    """One layer of content-weighted self-attention between the ingredients of each formula.

    Ingredient ``i`` attends to ``j`` with weight ``c_j exp(q_i.k_j) / sum_l c_l exp(q_i.k_l)`` (Roost's weighted
    attention: a 0.1 % partner counts less than a 50 % one); a feed-forward layer maps the ingredient's own
    vector, the attended context and its log content to the update ``u_i``, scaled by a gate that starts at 0.
    """

    def __init__(self, dim: int, width: int = 64, heads: int = 4) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * width)
        self.update = mlp(dim + width + 1, (width,), dim)
        self.gate = nn.Parameter(torch.zeros(()))
        self.buckets = ATTENTION_BUCKETS  # length buckets per batch (1: pad the batch to its longest formula)

    def forward(self, x: torch.Tensor, content: torch.Tensor, offsets: torch.Tensor,
                rows: torch.Tensor) -> torch.Tensor:
        """Updates ``u_i`` for flat ingredient vectors ``x`` (``(nnz, dim)``) with contents ``(nnz,)``;
        ``rows`` is each ingredient's formula (:func:`formula_rows`)."""
        if not x.shape[0]:
            return torch.zeros_like(x)
        log_c = torch.log(content.clamp_min(1e-8))
        ctx = padded_apply(self._attend, self.qkv(x), log_c, offsets, rows, self.buckets)
        return self.gate * self.update(torch.cat([x, ctx, log_c[:, None]], dim=1))

    def _attend(self, qkv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Attended context of padded formulas: ``qkv`` ``(n, length, 3 width)``, ``bias`` the log contents
        ``(n, length)`` (-inf at padding)."""
        return content_attention(qkv, bias, self.heads)


def content_attention(qkv: torch.Tensor, bias: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention of padded formulas whose logits get each key's log content added (Roost's weighting:
    softmax over ``c_j exp(q_i.k_j)``), through :func:`torch.nn.functional.scaled_dot_product_attention`.

    Args:
        qkv: queries, keys and values side by side, shape ``(n, length, 3 width)``.
        bias: log content of each slot, ``-inf`` at padding, shape ``(n, length)``.
        heads: number of heads (``width`` a multiple of it).

    Returns:
        The attended context, shape ``(n, length, width)`` (padding slots hold values that are never read).
    """
    n, length = bias.shape
    q, k, v = (t.reshape(n, length, heads, -1).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    mask = bias[:, None, None, :].expand(n, heads, length, length)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(n, length, -1)


def fraction_encoding(content: torch.Tensor, frequencies: int = 4) -> torch.Tensor:
    """The amount of each ingredient as features (CrabNet's fractional encoding, on a log scale so that a 0.1 %
    trace and a 1 % dose differ as much as 10 % and 100 %): ``u = (log10 c + 5) / 5`` clipped to [0, 1] (1e-5 to
    100 %), the fraction ``c`` itself, and ``sin``/``cos`` of ``2^k pi u`` for ``k < frequencies``; shape
    ``(nnz, 2 + 2 frequencies)``."""
    u = ((torch.log10(content.clamp_min(1e-8)) + 5.0) / 5.0).clamp(0.0, 1.0)
    angles = u[:, None] * (math.pi * 2.0 ** torch.arange(frequencies, device=content.device, dtype=content.dtype))
    return torch.cat([u[:, None], content[:, None], torch.sin(angles), torch.cos(angles)], dim=1)


class TransformerBlock(nn.Module):
    """Pre-norm transformer layer: a mixing step between the ingredients of a formula and a feed-forward layer,
    each added back (residual) after a layer norm.

    ``mixing="attention"``: content-weighted multi-head self-attention (:func:`content_attention`) on padded
    formulas. ``mixing="pooling"``: every ingredient receives the content-weighted mean of its formula's messages
    (a DeepSets/Roost-style pooled message, on the flat batch: no padding, no pairwise scores, linear in the
    number of ingredients); its own state and that context then meet in the feed-forward layer.
    """

    def __init__(self, width: int, heads: int, mixing: str = "attention") -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        if mixing not in MIXINGS:
            raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
        self.heads, self.mixing = heads, mixing
        self.norm_mix, self.norm_feed = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mix_in = nn.Linear(width, 3 * width if mixing == "attention" else width)
        self.project = nn.Linear(width, width)
        self.feed = mlp(width, (2 * width,), width)

    def forward(self, h: torch.Tensor, mix: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``h`` -> same shape; ``mix`` turns the normed, projected states into each ingredient's context."""
        h = h + self.project(mix(self.mix_in(self.norm_mix(h))))
        return h + self.feed(self.norm_feed(h))


#: How the transformer's layers mix ingredients (:class:`TransformerBlock`).
MIXINGS = ("attention", "pooling")


class ContentTransformer(nn.Module):
    """Several layers of content-weighted mixing between the ingredients of each formula (the depth of CrabNet and
    Roost), starting from mrl's material vectors.

    Each ingredient's input is its (activated, unscaled) material vector beside the encoding of its amount
    (:func:`fraction_encoding`), mapped to ``width``; ``layers`` :class:`TransformerBlock` s (residual, layer norm,
    content-weighted attention or pooling) let every ingredient see its partners; a final layer norm and a linear
    map give the update ``u_i`` in the material space, scaled by a gate that starts at 0 (training starts from the
    plain sum; the table stays the one inspectable vector per material). With attention, the padded work runs once
    per length bucket for all layers (:func:`padded_apply`); pooling needs no padding.
    """

    def __init__(self, dim: int, width: int = 64, heads: int = 4, layers: int = 3, mixing: str = "attention"
                 ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.mixing = mixing
        self.encode = nn.Linear(dim + fraction_encoding(torch.ones(1)).shape[1], width)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mixing) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        self.gate = nn.Parameter(torch.zeros(()))
        self.buckets = ATTENTION_BUCKETS

    def forward(self, x: torch.Tensor, content: torch.Tensor, offsets: torch.Tensor,
                rows: torch.Tensor) -> torch.Tensor:
        """Updates ``u_i`` (``(nnz, dim)``) for flat ingredient vectors ``x`` with contents ``(nnz,)``; ``rows`` is
        each ingredient's formula (:func:`formula_rows`)."""
        if not x.shape[0]:
            return torch.zeros_like(x)
        h = self.encode(torch.cat([x, fraction_encoding(content)], dim=1))
        if self.mixing == "attention":
            h = padded_apply(self._attention_layers, h, torch.log(content.clamp_min(1e-8)), offsets, rows,
                             self.buckets)
        else:
            weight = (content / torch.zeros(offsets.shape[0], device=x.device).index_add(0, rows, content)
                      .clamp_min(1e-12)[rows])[:, None]

            def pool(messages: torch.Tensor) -> torch.Tensor:
                return torch.zeros(offsets.shape[0], messages.shape[1], device=x.device, dtype=messages.dtype
                                   ).index_add(0, rows, weight * messages)[rows]

            for block in self.blocks:
                h = block(h, pool)
        return self.gate * self.out(self.norm(h))

    def _attention_layers(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, lambda qkv, heads=block.heads: content_attention(qkv, bias, heads))
        return h


def padded_apply(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, log_c: torch.Tensor,
                 offsets: torch.Tensor, rows: torch.Tensor, buckets: int) -> torch.Tensor:
    """``fn`` applied to the formulas of a flat batch padded to ``(n, length, ...)``, back in flat order.

    ``fn(padded_x, bias)`` gets the ingredients' rows of ``x`` padded per formula and their log contents ``bias``
    (-inf at padding) and returns padded rows. Formulas are sorted by length and split into up to ``buckets``
    groups, each padded only to its own longest formula (one host read of the lengths per call): padded attention
    then costs ``sum_b n_b L_b^2`` instead of ``n L_max^2`` (seed-scale lab, batch 256: ~3x less with 4 buckets;
    ~1.4x less time per training step). The result does not depend on the grouping (each formula attends only
    within itself), up to float rounding.
    """
    slots = torch.arange(x.shape[0], device=x.device) - offsets[rows]  # position within its formula
    groups = _length_buckets(offsets, x.shape[0], buckets)
    if groups is None:  # one group: pad the whole batch to its longest formula
        return _apply_padded(fn, x, log_c, rows, slots, offsets.shape[0], int(slots.max()) + 1)
    # one gather into bucket order, then contiguous pieces (split's backward is a cat, not a zero-fill of the
    # whole batch per bucket), and one gather back
    order = np.concatenate([flat for flat, *_ in groups])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    order_t = torch.as_tensor(order, device=x.device)
    sizes = [len(flat) for flat, *_ in groups]
    pieces = zip(x[order_t].split(sizes), log_c[order_t].split(sizes), slots[order_t].split(sizes))
    parts = [_apply_padded(fn, piece, c, torch.as_tensor(local_rows, device=x.device), s, n, length)
             for (piece, c, s), (_, local_rows, n, length) in zip(pieces, groups)]
    return torch.cat(parts)[torch.as_tensor(inverse, device=x.device)]


def _apply_padded(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, log_c: torch.Tensor,
                  rows: torch.Tensor, slots: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """``fn`` on flat ingredients padded into ``(n, length)`` formulas, back in flat order."""
    bias = _pad(log_c, rows, slots, (n, length), fill=-float("inf"))
    return fn(_pad(x, rows, slots, (n, length)), bias)[rows, slots]


#: Most length buckets :class:`ContentAttention` splits a batch into, and fewest formulas in a bucket (a training
#: batch of 256 gets 4 buckets, a prediction chunk of 8,192 gets 16).
ATTENTION_BUCKETS = 16
MIN_BUCKET_FORMULAS = 64


def _length_buckets(offsets: torch.Tensor, nnz: int, buckets: int
                    ) -> list[tuple[np.ndarray, np.ndarray, int, int]] | None:
    """Formulas grouped by length: for each group, the flat positions of its ingredients, each ingredient's row
    within the group, the group's formula count and longest length; None when one group is as good."""
    n = offsets.shape[0]
    k = min(buckets, n // MIN_BUCKET_FORMULAS)
    if k < 2:
        return None
    starts = offsets.cpu().numpy()
    lengths = np.diff(starts, append=nnz)
    by_length = np.argsort(lengths, kind="stable")
    if lengths[by_length[-1]] == lengths[by_length[0]]:
        return None
    groups = []
    for members in np.array_split(by_length, k):
        member_lengths = lengths[members]
        flat = np.repeat(starts[members], member_lengths) + (
            np.arange(int(member_lengths.sum())) - np.repeat(np.cumsum(member_lengths) - member_lengths,
                                                             member_lengths))
        local_rows = np.repeat(np.arange(len(members)), member_lengths)
        if len(flat):
            groups.append((flat, local_rows, len(members), int(member_lengths.max())))
    return groups


class MixtureModel(nn.Module):
    """Material table -> content-weighted sum -> regressor head.

    Args:
        n_materials: vocabulary size.
        embedding_dim: length of each material vector.
        activation: ``"tanh"`` or ``"none"`` applied to the raw table.
        hidden: widths of the head's hidden layers.
        dropout: dropout in the head.
        n_conditions: number of condition columns fed to the head.
        head: ``"direct"`` (MLP -> property) or ``"vft"`` (MLP -> A, B, C; y = A + B / (T - C)).
        content_scale: ``"none"``, ``"median"``, ``"rms"`` or ``"learned"`` (see module docstring).
        median_content: typical content fraction of each material (median, or RMS for ``"rms"``), shape
            ``(n_materials,)``; used by scaling.
        pinned: material indices whose vector is fixed at the origin (e.g. the base solvent).
        init_std: standard deviation of the initial table (all materials start near the origin).
        aggregation: ``"embedding_bag"`` or ``"sparse_mm"`` (same result; speed measured in benchmarks/).
        temperature_index: which condition column is the temperature (``vft`` head only).
        interaction: ``"none"`` (plain content-weighted sum), ``"attention"`` (:class:`ContentAttention`) or
            ``"transformer"`` (:class:`ContentTransformer`).
        tied_to: for each material, the material whose vector (and content scale) it uses, shape
            ``(n_materials,)``; a practitioner's "X acts like Y" (default: each its own). Tied rows of the table
            get no gradient.
        n_features: length of each material's standardised feature row (0: no features, the table alone).
        feature_map: ``"linear"`` or ``"mlp"``: the map ``g`` from features to the raw vector (see the module
            docstring); the rows themselves live in the ``features`` buffer (:meth:`set_features`).
        interaction_layers: transformer layers (``interaction="transformer"``).
        interaction_heads: attention heads per transformer layer (a divisor of ``interaction_width``).
        interaction_width: width of the transformer layers.
        interaction_mixing: ``"attention"`` or ``"pooling"`` (:class:`TransformerBlock`).
        graph_smiles: with ``features: graph``, each material's SMILES (None: no structure); ``g`` is then a
            :class:`mrl.graph.GraphEncoder` over their molecular graphs instead of a map of feature rows (the
            SMILES are model parameters, so a checkpoint rebuilds the graphs).
    """

    def __init__(self, n_materials: int, embedding_dim: int, activation: str = "tanh",
                 hidden: Sequence[int] = (128, 128), dropout: float = 0.0, n_conditions: int = 0,
                 head: str = "direct", content_scale: str = "median",
                 median_content: Sequence[float] | None = None, pinned: Sequence[int] = (),
                 init_std: float = 1e-3, aggregation: str = "embedding_bag", temperature_index: int = 0,
                 interaction: str = "none", tied_to: Sequence[int] | None = None, n_features: int = 0,
                 feature_map: str = "linear", interaction_layers: int = 3, interaction_heads: int = 4,
                 interaction_width: int = 64, interaction_mixing: str = "attention",
                 graph_smiles: Sequence[str | None] | None = None) -> None:
        super().__init__()
        check_constraints({"activation": activation, "content_scale": content_scale, "aggregation": aggregation,
                           "interaction": interaction, "head": head, "feature_map": feature_map}, "MixtureModel")
        if graph_smiles is not None and (n_features or len(graph_smiles) != n_materials):
            raise ValueError(f"graph_smiles needs one entry per material ({n_materials}, got {len(graph_smiles)}) "
                             f"and no feature rows (n_features=0)")
        if n_features < 0:
            raise ValueError(f"n_features must be >= 0, got {n_features}")
        if head == "vft" and n_conditions < 1:
            raise ValueError("the vft head needs a temperature condition (n_conditions >= 1)")
        source = np.arange(n_materials) if tied_to is None else np.asarray(tied_to, np.int64)
        if source.shape != (n_materials,) or (source < 0).any() or (source >= n_materials).any() or \
                (source[source] != source).any():
            raise ValueError("tied_to must give, for each material, a material index that is tied to itself")
        self.model_params = dict(
            n_materials=n_materials, embedding_dim=embedding_dim, activation=activation, hidden=list(hidden),
            dropout=dropout, n_conditions=n_conditions, head=head, content_scale=content_scale,
            median_content=None if median_content is None else [float(v) for v in median_content],
            pinned=[int(p) for p in pinned], init_std=init_std, aggregation=aggregation,
            temperature_index=temperature_index, interaction=interaction,
            tied_to=None if tied_to is None else [int(t) for t in source], n_features=int(n_features),
            feature_map=feature_map, interaction_layers=int(interaction_layers),
            interaction_heads=int(interaction_heads), interaction_width=int(interaction_width),
            interaction_mixing=interaction_mixing,
            **({} if graph_smiles is None else {"graph_smiles": [None if v is None else str(v) for v in graph_smiles]}))
        self.activation = activation
        self.aggregation = aggregation
        self.head_kind = head
        self.temperature_index = temperature_index
        self.table = nn.Parameter(torch.randn(n_materials, embedding_dim) * init_std)
        self.interaction: ContentAttention | ContentTransformer | None = None
        if interaction == "attention":
            self.interaction = ContentAttention(embedding_dim)
        elif interaction == "transformer":
            self.interaction = ContentTransformer(embedding_dim, interaction_width, interaction_heads,
                                                  interaction_layers, interaction_mixing)
        typical = np.ones(n_materials) if median_content is None else np.asarray(median_content, np.float64)
        log_scale = torch.zeros(n_materials) if content_scale == "none" else torch.from_numpy(
            -np.log(np.clip(np.where(typical > 0, typical, 1.0), MIN_SCALE_CONTENT, None))).float()
        if content_scale == "learned":
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        keep = torch.ones(n_materials)
        keep[list(pinned)] = 0.0
        self.register_buffer("keep", keep)
        self.register_buffer("source", torch.from_numpy(source), persistent=False)
        # condition and target scaling (set by fit_scalers, saved in the state_dict)
        self.register_buffer("cond_mean", torch.zeros(n_conditions))
        self.register_buffer("cond_std", torch.ones(n_conditions))
        self.register_buffer("cond_inverse", torch.zeros(n_conditions, dtype=torch.bool))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        self.register_buffer("y_log10", torch.zeros((), dtype=torch.bool))
        self.register_buffer("y_low", torch.tensor(-float("inf")))
        self.register_buffer("y_high", torch.tensor(float("inf")))
        self.register_buffer("c_max", torch.tensor(VFT_C_INIT / 0.5))  # vft: C in (0, c_max), set from data
        n_out, n_in = (3, embedding_dim + n_conditions - 1) if head == "vft" else (1, embedding_dim + n_conditions)
        self.head = mlp(n_in, hidden, n_out, dropout)
        # built after everything else, so that a model without features draws the same random numbers as before
        self.feature_map: nn.Sequential | None = None
        if n_features:
            self.register_buffer("features", torch.zeros(n_materials, n_features))
            self.feature_map = mlp(n_features, (FEATURE_HIDDEN,) if feature_map == "mlp" else (), embedding_dim)
            with torch.no_grad():
                self.feature_map[-1].weight.zero_()
                self.feature_map[-1].bias.zero_()
        self.graph = None if graph_smiles is None else GraphEncoder(graph_smiles, embedding_dim)

    def set_features(self, features: np.ndarray) -> None:
        """Copy the standardised feature rows, shape ``(n_materials, n_features)``, into the ``features`` buffer."""
        if self.feature_map is None:
            raise ValueError("set_features: this model was built without features (n_features=0)")
        values = torch.as_tensor(np.asarray(features, np.float32))
        if tuple(values.shape) != tuple(self.features.shape):
            raise ValueError(f"features have shape {tuple(values.shape)}; the model expects "
                             f"{tuple(self.features.shape)}")
        self.features.copy_(values.to(self.features.device))

    def with_new_materials(self, source: np.ndarray, typical_content: np.ndarray,
                           pinned: np.ndarray,
                           features: np.ndarray | Sequence[str | None] | None = None) -> "MixtureModel":
        """A copy whose vocabulary ends with ``len(source)`` new materials; this module is unchanged.

        New material ``j`` copies the raw row and content scale of known row ``source[j]`` (a known row that is
        itself tied lends its partner's); where ``source[j] < 0`` its raw row is 0 and its scale follows the
        ``content_scale`` rule from ``typical_content[j]``. ``pinned[j]`` fixes it at the origin. Every known
        row, the head and the scalers are copied exactly, so predictions without new materials do not change.

        A model with features needs ``features``, the new materials' standardised feature rows, shape
        ``(len(source), n_features)``; a copied material takes its source's row instead (so it gets the source's
        vector), a new one ``g(features[j])`` plus a zero residual. A graph model (``graph_smiles``) takes the new
        materials' SMILES there instead (a sequence, None where unknown: ``g`` = 0); a copied material takes its
        source's SMILES.
        """
        source = np.asarray(source, np.int64)
        n_old, n_new = self.model_params["n_materials"], len(source)
        copied = source >= 0
        typical = np.ones(n_old) if self.model_params["median_content"] is None else \
            np.asarray(self.model_params["median_content"], np.float64)
        tied = self.model_params.get("tied_to")
        if tied is not None:
            source = np.where(copied, np.asarray(tied)[np.clip(source, 0, None)], source)
        new_pins = [n_old + int(j) for j in np.flatnonzero(pinned)]
        graph = {}
        if self.graph is not None:
            smiles = self.model_params["graph_smiles"]
            given = [None] * n_new if features is None else list(features)
            if len(given) != n_new:
                raise ValueError(f"with_new_materials: a graph model needs one SMILES (or None) per new material "
                                 f"({n_new}), got {len(given)}")
            graph["graph_smiles"] = [*smiles, *(smiles[int(s)] if s >= 0 else given[j] for j, s in enumerate(source))]
        params = dict(self.model_params, n_materials=n_old + n_new, **graph,
                      tied_to=None if tied is None else [*tied, *range(n_old, n_old + n_new)],
                      median_content=[*typical, *np.where(copied, typical[np.clip(source, 0, None)],
                                                          np.asarray(typical_content, np.float64))],
                      pinned=[*self.model_params["pinned"], *new_pins])
        module = MixtureModel(**params)
        state, fresh = self.state_dict(), module.state_dict()
        take = torch.as_tensor(np.flatnonzero(copied))
        names = ["table", "log_scale", "keep"]
        if self.feature_map is not None:
            if features is None or np.shape(features) != (n_new, self.features.shape[1]):
                raise ValueError(f"with_new_materials: a model with features needs the new materials' feature rows, "
                                 f"shape ({n_new}, {self.features.shape[1]})")
            fresh["features"][n_old:] = torch.as_tensor(np.asarray(features, np.float32))
            names.append("features")
        for name in names:
            tail = fresh[name][n_old:].clone()
            if name == "table":
                tail.zero_()
            if name != "keep":
                tail[take] = state[name][torch.as_tensor(source[copied])].cpu()
            state[name] = torch.cat([state[name], tail.to(state[name].device)])
        module.load_state_dict(state)
        return module.to(self.table.device)

    # ------------------------------------------------------------------ scaling
    def fit_scalers(self, y: np.ndarray, conditions: np.ndarray, target_transform: str,
                    inverse: Sequence[bool]) -> None:
        """Set target and condition scaling from training data (property units in, buffers out)."""
        if target_transform not in TARGET_TRANSFORMS:
            raise ValueError(f"target_transform must be one of {TARGET_TRANSFORMS}, got {target_transform!r}")
        log10 = target_transform == "log10"
        if log10 and (y <= 0).any():
            raise ValueError("target_transform 'log10' needs strictly positive targets")
        t = np.log10(y) if log10 else np.asarray(y, np.float64)
        self.y_log10.fill_(log10)
        self.y_mean.fill_(float(t.mean()))
        self.y_std.fill_(float(t.std()) or 1.0)
        margin = PREDICTION_MARGIN * float(t.max() - t.min())
        self.y_low.fill_(float(t.min()) - margin)
        self.y_high.fill_(float(t.max()) + margin)
        inv = torch.as_tensor(list(inverse), dtype=torch.bool).reshape(-1)
        self.cond_inverse.copy_(inv)
        c = self._transform_conditions(torch.tensor(np.asarray(conditions), dtype=torch.float32), scale=False)
        if c.shape[1]:
            self.cond_mean.copy_(c.mean(0))
            self.cond_std.copy_(c.std(0, unbiased=False).clamp_min(1e-8))
        if self.head_kind == "vft":
            self._init_vft(np.asarray(conditions, np.float64)[:, self.temperature_index], float(t.mean()))

    def _init_vft(self, temperature: np.ndarray, t_mean: float) -> None:
        """Bound C below 0.9 x the lowest training temperature and start B, C at typical values.

        The output layer's biases start at B = VFT_B_INIT, C = c_max / 2 and an A that puts the initial
        prediction at the training mean for the mean temperature.
        """
        if (temperature <= 0).any():
            raise ValueError("the vft head needs absolute temperatures > 0 (e.g. kelvin)")
        self.c_max.fill_(0.9 * float(temperature.min()))
        c0 = 0.5 * float(self.c_max)
        last = self.head[-1]
        with torch.no_grad():
            last.bias[1] = float(np.log(np.expm1(VFT_B_INIT / 1000.0)))
            last.bias[2] = 0.0
            a0 = t_mean - VFT_B_INIT / (float(temperature.mean()) - c0)
            last.bias[0] = (a0 - float(self.y_mean)) / float(self.y_std)

    def _transform_conditions(self, cond: torch.Tensor, scale: bool = True) -> torch.Tensor:
        cond = torch.where(self.cond_inverse, 1000.0 / cond, cond)
        return (cond - self.cond_mean) / self.cond_std if scale else cond

    def target_to_scaled(self, y: torch.Tensor) -> torch.Tensor:
        """Property units -> standardised (transformed) target."""
        t = torch.log10(y) if bool(self.y_log10) else y
        return (t - self.y_mean) / self.y_std

    def scaled_to_target(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised (transformed) target -> property units, clipped to the training range +- a margin.

        The clip stops an out-of-distribution mixture from extrapolating to absurd values (10**20 cP) that
        ``10 ** prediction`` would otherwise turn into a dominating error.
        """
        t = (z * self.y_std + self.y_mean).clamp(self.y_low, self.y_high)
        return torch.pow(10.0, t) if bool(self.y_log10) else t

    # ------------------------------------------------------------------ vectors
    def pre_activation(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Raw vectors before the activation: the table ``W``, plus ``g(x)`` with features, shape
        ``(n_materials, dim)``, or only ``rows`` of it (ties not resolved)."""
        table = self.table if rows is None else self.table[rows]
        if self.graph is not None:
            g = self.graph()
            return (g if rows is None else g[rows]) + table
        if self.feature_map is None:
            return table
        return self.feature_map(self.features if rows is None else self.features[rows]) + table

    def _raw_and_scale(self, materials: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``act(W)`` (``act(g(x) + W)`` with features) and the scales ``s`` (0 for pinned materials), ties
        resolved, of every material or only of ``materials``."""
        source = self.source if materials is None else self.source[materials]
        pre = self.pre_activation(source)
        raw = torch.tanh(pre) if self.activation == "tanh" else pre
        return raw, self.keep[source] * torch.exp(self.log_scale[source])

    def material_vectors(self) -> torch.Tensor:
        """Effective vectors ``e_i = s_i * act(W_i)`` (zero for pinned materials; a tied material has its
        partner's), shape ``(n_materials, dim)``."""
        raw, scale = self._raw_and_scale()
        return raw * scale.unsqueeze(1)

    def mixture(self, batch: Batch) -> torch.Tensor:
        """Content-weighted sum of material vectors (plus the interaction updates), shape ``(batch.size, dim)``.

        Only the batch's own materials are activated and scaled (a batch of 256 formulas holds ~1,300 of the
        seed-scale lab's 5,400): the same numbers as summing :meth:`material_vectors`, at a fraction of the cost.
        """
        materials, local = torch.unique(batch.index, return_inverse=True)
        raw, scale = self._raw_and_scale(materials)
        m = self._weighted_sum(raw * scale.unsqueeze(1), local, batch)
        if self.interaction is None:
            return m
        rows = formula_rows(batch.offsets, batch.index.shape[0])
        return m.index_add(0, rows, self._interaction_terms(raw[local], scale[local], batch, rows))

    def interaction_terms(self, batch: Batch) -> torch.Tensor:
        """What each ingredient adds to its formula's mixture vector beyond its own ``c_i e_i``: ``c_i s_i u_i``,
        shape ``(nnz, dim)`` in ``batch.index`` order (zero without an interaction)."""
        if self.interaction is None:
            return torch.zeros(batch.index.shape[0], self.table.shape[1], device=self.table.device)
        materials, local = torch.unique(batch.index, return_inverse=True)
        raw, scale = self._raw_and_scale(materials)
        return self._interaction_terms(raw[local], scale[local], batch,
                                       formula_rows(batch.offsets, batch.index.shape[0]))

    def _interaction_terms(self, raw: torch.Tensor, scale: torch.Tensor, batch: Batch, rows: torch.Tensor
                           ) -> torch.Tensor:
        u = self.interaction(raw, batch.content, batch.offsets, rows)
        return u * (batch.content * scale)[:, None]

    def _weighted_sum(self, vectors: torch.Tensor, index: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``sum_i c_i vectors[index_i]`` per formula of ``batch``."""
        if self.aggregation == "embedding_bag":
            return F.embedding_bag(index, vectors, batch.offsets, mode="sum", per_sample_weights=batch.content)
        rows = formula_rows(batch.offsets, index.shape[0])
        weights = torch.sparse_coo_tensor(torch.stack([rows, index]), batch.content,
                                          (batch.size, vectors.shape[0]), check_invariants=False)
        return torch.sparse.mm(weights, vectors)

    # ------------------------------------------------------------------ forward
    def head_features(self, batch: Batch) -> torch.Tensor:
        """Head input: mixture vector and scaled conditions (the ``vft`` head leaves temperature out)."""
        m = self.mixture(batch)
        if not batch.conditions.shape[1]:
            return m
        cond = self._transform_conditions(batch.conditions)
        if self.head_kind == "vft":
            keep = [i for i in range(cond.shape[1]) if i != self.temperature_index]
            cond = cond[:, keep]
        return torch.cat([m, cond], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Standardised prediction, shape ``(batch.size,)``."""
        out = self.head(self.head_features(batch))
        if self.head_kind == "direct":
            return out[:, 0]
        abc = self._vft_parameters(out)
        temperature = batch.conditions[:, self.temperature_index]
        # C < c_max = 0.9 T_min(train) by construction; the floor only acts far below the training range
        t = abc[:, 0] + abc[:, 1] / (temperature - abc[:, 2]).clamp_min(0.1 * temperature)
        return (t - self.y_mean) / self.y_std

    def _vft_parameters(self, out: torch.Tensor) -> torch.Tensor:
        """Vogel-Fulcher-Tammann parameters in transformed-target units: ``y = A + B / (T - C)``.

        ``B = 1000 softplus(.) > 0`` and ``C = c_max sigmoid(.)`` with ``c_max`` = 0.9 x the lowest training
        temperature, so ``T - C > 0`` across the training range without a hard clamp. The head does not see T,
        so the prediction decreases monotonically with T.
        """
        return torch.stack([out[:, 0] * self.y_std + self.y_mean, F.softplus(out[:, 1]) * 1000.0,
                            torch.sigmoid(out[:, 2]) * self.c_max], dim=1)

    def vft_parameters(self, batch: Batch) -> torch.Tensor:
        """A, B, C of the ``vft`` head for each formula, shape ``(batch.size, 3)``."""
        if self.head_kind != "vft":
            raise ValueError("vft_parameters needs head='vft'")
        return self._vft_parameters(self.head(self.head_features(batch)))
