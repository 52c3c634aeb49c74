"""Design a formula for a target: which contents to change so the model predicts a wanted property value.

A formulator asks "what should I change to move this lotion from 3,000 to 8,000 cP without touching the actives?".
The model is differentiable in the contents (the mixture vector is ``sum_i c_i e_i``), so :func:`design` searches the
contents by gradient, under the formulator's constraints:

* contents stay non-negative and sum to 100 %; ``fix`` materials keep their content exactly; ``bounds`` gives a
  per-material range in %;
* at most ``max_changes`` materials change (changed: ``|delta| >`` :data:`CHANGE_TOLERANCE` %). The cap is kept by
  construction: the search optimises the contents of a chosen *support* (a set of at most ``max_changes``
  materials) with every other content frozen, so the support's total mass is conserved. Supports are drawn from the
  materials whose content moves the objective most (the gradient along "more of material i, proportionally less of
  everything else" at the original);
* materials may be added only from ``add_from`` (candidates, at content 0 in the original);
* materials may be named by code or name (:class:`mrl.materials.MaterialIndex`), and by role: ``fix_family`` fixes
  every material of the formula whose ``family`` (or any other column of the run's materials table,
  ``family_column``) is one of those named (e.g. ``active, preservative``), ``add_from_family`` offers every
  material of those families as a candidate;
* by default (``domain_bounds``) each material stays within the contents it had in training formulas: a material of
  the formula never below its smallest training content (a preservative is not cut to a trace) and none above its
  largest (explicit ``bounds`` win; a formula's own content outside that range widens it to include it);
* ``step`` (in %) is the dosing resolution: every change is a whole multiple of it (+0.15 % xanthan with step 0.05;
  the balance material, the largest changed one, takes the rest so that the formula sums to 100 %);
* proposals differ from each other: the contents of any two differ by at least ``min_distance`` % (L1; by default
  :data:`MIN_DISTANCE_SHARE` of the larger of the two moves).

For every support and several starts (the original and random feasible points), projected gradient descent (Adam
steps in per-material relative units, then the exact projection onto ``{sum = support mass, lo <= x <= hi}``)
minimises, in the model's units (log10 for a log target):

``(members' mean - target)^2 + spread_weight * members' variance + domain_weight * domain penalty``

The variance is that of the members' predicted *change* from the original when the design is anchored (see
``measured`` below), else of their predictions: how much the members disagree about what the move does. With
``spread_weight`` 1 (the default, chosen on calibration formulas: see :func:`design`) the first two terms are the
members' mean squared distance to the target, so a move the members agree on beats one they only agree on in the
mean.

The domain penalty is smooth and zero inside the training domain (:class:`mrl.domain.Domain`): squared relative
excess of each content over its training maximum, squared relative excess of the mixture vector's distance to the
nearest training mixture over the domain's threshold, and the same for the L1 distance of the contents to the
nearest training formula. Each term's allowance is the larger of its margin and the original's own excess: a proposal
is penalised only for lying further outside the domain than the original already does. With ``measured`` (the
original's measured value) the target is *anchored*: the search aims
at ``prediction(original) * target / measured`` (the model's local bias cancels; the model is asked for a ratio, not
an absolute value), and predictions and intervals are shifted by the same factor.

Every proposal is then scored by :meth:`mrl.predict.Predictor.predict` (prediction, calibrated intervals, domain
flags, ``top_materials``); ``vouched`` is True only when the proposal lies inside the training domain and the target
lies inside its 80 % interval: a proposal the model cannot vouch for is never presented as a success.
:func:`random_search` is the reference at the same number of model evaluations.

**Data-aware design** (``measured_data``, the lab's measured formulas): a formulator's first move is to look up the
closest formula the lab has already made, so the search uses the lab's records:

* a measured formula that already meets the target (within ``window``) *and* the constraints (only the formula's
  materials and ``add_from``, fixed ones unchanged, at most ``max_changes`` changes, within the bounds) is returned
  in :attr:`DesignResult.already_made` ("already made: F0123"); every constraint-satisfying measured formula is in
  :attr:`DesignResult.constrained`;
* beside the original and the random starts, the search starts from up to ``n_measured_starts`` measured formulas:
  the constraint-satisfying ones first, then, among the :data:`NEIGHBOURS` formulas nearest the original (L1 of
  contents), those whose measured value lies closest to the target, each projected onto the constraints (its
  :data:`max_changes` largest relative differences from the original, the balance among them, the support's mass
  kept). Every proposal's ``start`` column says where it came from (``original``, ``random``, ``measured F0123``);
* ``trust_region``: rows whose L1 distance to the nearest training formula or whose mixture vector's distance to
  the nearest training mixture exceeds the domain's threshold (or the original's own distance, when larger) are
  dropped before ranking (kept, flagged, only when nothing lies inside);
* ranking: the ``n_pool`` best rows by objective are scored by the predictor and ranked by ``p_hit``, the
  calibrated probability that the true value lies within ``window`` of the target
  (:func:`mrl.uncertainty.hit_probability`), not by the distance of the mean alone. When anchored, the members'
  standard deviation of the predicted *move* (model units) is added in quadrature to the calibrated one: the
  calibrated interval sees how much the members disagree about the value, not about what the move does, and
  without this term the ranking favoured moves the members disagree on (on 12 tasks of the lab benchmark's
  formulas: 6 hits against 10 for the objective's order).
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from mrl import analysis
from mrl.analysis import vectors as material_vectors
from mrl.data import FormulaData, content_matrix
from mrl.domain import RANGE_SLACK
from mrl.materials import MaterialIndex
from mrl.model import Batch
from mrl.plots import material_map
from mrl.tables import DataError, TableLike, read_table
from mrl.uncertainty import from_model_units, hit_probability, to_model_units

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mrl.predict import Predictor

log = logging.getLogger(__name__)
#: A material counts as changed when its content moves by more than this (in %).
CHANGE_TOLERANCE = 0.005
#: Contents of proposals are rounded to this many decimals in % (like the lab's records).
DECIMALS = 4
#: Materials ranked by gradient that form the pool from which supports are drawn (at least max_changes + 2).
POOL_SIZE = 7
#: At most this many supports are optimised (drawn at random from the pool's combinations beyond it).
MAX_SUPPORTS = 24
#: The domain penalty starts at this share of each threshold, so that optimised proposals end inside the domain.
PENALTY_MARGIN = 0.9
#: Smallest reference content (fraction) of a material that has none in the original (scale of its steps).
MIN_STEP_CONTENT = 1e-3
#: By default two proposals differ by at least this share of the larger of their moves (L1 of the content changes).
MIN_DISTANCE_SHARE = 0.5
#: Two proposals closer than this (L1 of contents, %) are the same proposal whatever ``min_distance`` says.
SAME_PROPOSAL = 0.05
#: A hit: the true value within this share of the target (the window of ``p_hit`` and of "already made").
HIT_WINDOW = 0.15
#: Measured formulas nearest the original (L1 of contents) among which measured starts near the target are chosen.
NEIGHBOURS = 50
#: Starts taken from measured formulas (``n_measured_starts`` default).
MEASURED_STARTS = 8
#: Candidates scored by the predictor and ranked by ``p_hit``: this many times ``n_proposals`` (``n_pool`` default).
POOL_FACTOR = 4


@dataclass
class DesignResult:
    """Proposals for one formula and target.

    Attributes:
        proposals: one row per proposal (best first): ``proposal``, ``prediction`` (property units; anchored when
            ``measured`` was given), ``lower_80, upper_80, lower_95, upper_95``, ``vouched``, ``reasons`` (why
            not vouched; empty when vouched), ``n_changed``, ``changes`` (per-material deltas as text,
            ``"M00042 +0.35 %; M00001 -0.35 %"``), ``objective`` (model units), ``out_of_domain``, ``spread``,
            ``raw_prediction`` (the model's own number), ``top_materials``.
        formulas: long format ``formula_id, material_id, content`` (content in %): the original (id
            ``original_id``) and every proposal (id ``proposal``).
        original: the original's row of the prediction table (same columns as ``proposals``, ``proposal`` =
            ``original_id``).
        target: the wanted value (property units); measured: the original's measured value or None.
        n_model_calls: formula evaluations the search used (forward passes x formulas x members).
        constrained: measured formulas (``measured_data``) that satisfy the constraints: ``formula_id, measured,
            error`` (measured / target - 1), ``n_changed``, ``distance`` (L1 of contents to the original, %), the
            one closest to the target first (empty without ``measured_data``).
        already_made: the rows of ``constrained`` within ``window`` of the target.
        window: the relative window of ``p_hit`` and ``already_made``.

    ``proposals`` also has ``p_hit`` (calibrated probability that the true value lies within ``window`` of the
    target; NaN without calibration) and ``start`` (``original``, ``random``, ``measured F0123``).
    """

    proposals: pd.DataFrame
    formulas: pd.DataFrame
    original: pd.Series
    original_id: str
    target: float
    measured: float | None = None
    conditions: dict[str, float] = field(default_factory=dict)
    n_model_calls: int = 0
    names: dict[str, str] = field(default_factory=dict)
    constrained: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["formula_id", "measured", "error", "n_changed", "distance"]))
    window: float = HIT_WINDOW

    @property
    def already_made(self) -> pd.DataFrame:
        """Measured formulas that meet the target (within ``window``) and the constraints."""
        return self.constrained[self.constrained["error"].abs() <= self.window].reset_index(drop=True)

    def note(self) -> str:
        """``"already made: F0123 (measured 2,150, -2 % from the target)"`` or ``""``."""
        if self.already_made.empty:
            return ""
        return "already made: " + "; ".join(f"{r.formula_id} (measured {r.measured:.4g}, {100 * r.error:+.0f} % "
                                            f"from the target)" for r in self.already_made.itertuples())

    def table(self) -> pd.DataFrame:
        """Before/after: one row per material of the original or any proposal, contents in % (original first), with
        the material's ``name`` in the first column where the run knows it."""
        wide = self.formulas.pivot_table(index="material_id", columns="formula_id", values="content",
                                         aggfunc="sum", fill_value=0.0)
        order = [self.original_id, *self.proposals["proposal"]]
        wide = wide[[c for c in order if c in wide.columns]]
        wide = wide.sort_values(self.original_id, ascending=False)
        if self.names:
            wide.insert(0, "name", [self.names.get(m, "") for m in wide.index])
        return wide


# ------------------------------------------------------------------------------------------------ problem set-up
@dataclass
class _Problem:
    """The search space in the model's vocabulary: local materials (the original's and the candidates)."""

    columns: np.ndarray  # vocabulary index of each local material, shape (L,)
    ids: list[str]
    c0: np.ndarray  # original content fractions, shape (L,)
    lo: np.ndarray  # bounds (fractions), shape (L,)
    hi: np.ndarray
    free: np.ndarray  # bool: may change (not fixed)
    forced: np.ndarray  # bool: must be in every support (original outside its bounds)
    conditions: np.ndarray  # shape (n_conditions,)
    target_t: float  # target in model units (anchored when measured is given)
    origin_mixture: torch.Tensor | None = None  # member 0's mixture vector of the original, shape (1, dim)
    origin_t: torch.Tensor | None = None  # members' predictions at the original (model units), set when anchored
    names: list[str] = field(default_factory=list)  # name of each local material ("" where the run has none)
    step: float | None = None  # dosing resolution, %

    @property
    def labels(self) -> list[str]:
        """``"Carbomer 001 (M00238)"`` per local material (the code alone without a name)."""
        names = self.names or [""] * len(self.ids)
        return [f"{n} ({m})" if n else m for m, n in zip(self.ids, names)]


def _as_percent(forms: pd.DataFrame) -> pd.DataFrame:
    """One formula's rows as ``material_id, content`` in % summing to 100."""
    if forms["formula_id"].nunique() != 1:
        raise DataError(f"design needs exactly one formula; got {forms['formula_id'].nunique()} formula ids")
    out = forms.groupby("material_id", sort=False, as_index=False)["content"].sum()
    if (out["content"] < 0).any() or not np.isfinite(out["content"]).all():
        raise DataError("formula: contents must be finite and non-negative")
    out = out[out["content"] > 0]
    total = float(out["content"].sum())
    if total <= 0:
        raise DataError("formula: no positive content")
    out["content"] = out["content"] * 100.0 / total
    return out.reset_index(drop=True)


def _problem(predictor: "Predictor", formula: pd.DataFrame, target: float, conditions: Mapping[str, float] | None,
             fix: Sequence[str], bounds: Mapping[str, tuple[float, float]], add_from: Sequence[str],
             measured: float | None, fix_family: Sequence[str] = (), add_from_family: Sequence[str] = (),
             family_column: str = "family", domain_bounds: bool = True, step: float | None = None
             ) -> tuple[_Problem, pd.DataFrame]:
    first = predictor.members[0]
    vocab = pd.Index(first.materials_["material_id"].astype(str))
    index = MaterialIndex.of_model(first)
    fix = index.resolve_all(fix, "fix")
    add_from = index.resolve_all(add_from, "add_from")
    bounds = {index.resolve(m, "bounds"): v for m, v in bounds.items()}
    if fix_family:
        fix = [*fix, *index.family_members(fix_family, family_column)]
    if add_from_family:
        add_from = [*add_from, *index.family_members(add_from_family, family_column)]
    base = _as_percent(formula.assign(material_id=formula["material_id"].astype(str)))
    unknown = sorted(set(base["material_id"]) - set(vocab))
    if unknown:
        raise DataError(f"formula: material(s) {unknown[:10]} are not in the model's vocabulary; design can only move "
                        f"materials the model knows")
    candidates = [str(m) for m in add_from if str(m) not in set(base["material_id"])]
    bad = sorted(set(candidates) - set(vocab))
    if bad:
        raise DataError(f"add_from: material(s) {bad[:10]} are not in the model's vocabulary")
    candidates = list(dict.fromkeys(candidates))
    ids = [*base["material_id"], *candidates]
    c0 = np.concatenate([base["content"].to_numpy() / 100.0, np.zeros(len(candidates))])
    unknown_bounds = sorted(set(map(str, bounds)) - set(ids))
    if unknown_bounds:
        raise ValueError(f"bounds name material(s) {unknown_bounds} that are neither in the formula nor in add_from")
    lo, hi = np.zeros(len(ids)), np.ones(len(ids))
    if domain_bounds and predictor.domain is not None:
        lo, hi = _domain_bounds(predictor, vocab.get_indexer(ids), c0)
    for mid, (a, b) in bounds.items():
        if not 0.0 <= float(a) <= float(b) <= 100.0:
            raise ValueError(f"bounds for {mid}: need 0 <= lo <= hi <= 100 (in %), got {a}:{b}")
        j = ids.index(str(mid))
        lo[j], hi[j] = float(a) / 100.0, float(b) / 100.0
    fixed = set(map(str, fix))
    free = np.array([m not in fixed for m in ids])
    # a fixed material that is not in the formula stays at 0: it is simply not a candidate
    keep = free | (c0 > 0)
    ids = [m for m, k in zip(ids, keep) if k]
    c0, lo, hi, free = c0[keep], lo[keep], hi[keep], free[keep]
    if fix_family or add_from_family:
        log.info("design: by %s, fixed: %s; candidates to add: %s", family_column,
                 ", ".join(index.label(m) for m, f in zip(ids, free) if not f) or "none",
                 ", ".join(index.label(m) for m, c in zip(ids, c0) if c == 0) or "none")
    if step is not None and not 0 < step <= 100:
        raise ValueError(f"step (dosing resolution, %) must be in (0, 100], got {step}")
    clash = [m for m, f, c, a, b in zip(ids, free, c0, lo, hi) if not f and not a - 1e-12 <= c <= b + 1e-12]
    if clash:
        raise ValueError(f"material(s) {clash} are fixed but their content lies outside their bounds")
    forced = free & ((c0 < lo - 1e-12) | (c0 > hi + 1e-12))
    names = list(first.conditions_)
    conditions = dict(conditions or {})
    missing = [c for c in names if c not in conditions]
    if missing:
        raise ValueError(f"the model needs condition(s) {missing}; pass conditions={{{missing[0]!r}: ...}}")
    cond = np.array([float(conditions[c]) for c in names])
    target_t = float(to_model_units(np.array([target]), predictor.transform)[0])
    problem = _Problem(vocab.get_indexer(ids), ids, c0, lo, hi, free, forced, cond, target_t,
                       names=[index.name(m) for m in ids], step=step)
    with torch.no_grad():
        origin_values, problem.origin_mixture = _model_values(predictor, problem,
                                                              torch.as_tensor(c0[None], dtype=torch.float32))
    if measured is not None:
        problem.origin_t = origin_values[:, 0]
        offset = float(problem.origin_t.mean()) - float(to_model_units(np.array([measured]), predictor.transform)[0])
        problem.target_t = target_t + offset
    return problem, base


def _domain_bounds(predictor: "Predictor", columns: np.ndarray, c0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per local material, the content range (fractions) it had in training formulas: a material of the formula
    (``c0 > 0``) between its smallest and largest training content, a candidate between 0 and its largest; each
    range widened to hold the original's content; (0, 1) for a material in no training formula."""
    domain = predictor.domain
    cmin, cmax = domain.content_min[columns], domain.content_max[columns]
    seen = np.isfinite(cmin) & np.isfinite(cmax)
    lo = np.where(seen & (c0 > 0), np.minimum(np.nan_to_num(cmin), c0), 0.0)
    hi = np.where(seen, np.maximum(np.nan_to_num(cmax, nan=1.0), c0), 1.0)
    return lo, hi


# ------------------------------------------------------------------------------------------------ model in torch
def _batch(problem: _Problem, x: torch.Tensor) -> Batch:
    """Local content rows ``x`` (shape ``(n, L)``) as a :class:`Batch` over the model's vocabulary."""
    n, length = x.shape
    index = torch.as_tensor(problem.columns, dtype=torch.int64).repeat(n)
    offsets = torch.arange(n, dtype=torch.int64) * length
    cond = torch.as_tensor(np.tile(problem.conditions, (n, 1)), dtype=torch.float32).reshape(n, -1)
    return Batch(index, offsets, x.reshape(-1), cond)


def _model_values(predictor: "Predictor", problem: _Problem, x: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Members' predictions in model units, shape ``(n_members, n)`` (unclipped, differentiable), and member 0's
    mixture vectors, shape ``(n, dim)``."""
    batch = _batch(problem, x)
    values, mixture = [], None
    for k, member in enumerate(predictor.members):
        module = member.module_
        module.eval()
        value = module(batch) * module.y_std + module.y_mean
        if getattr(member, "stack_", None) is not None:  # a stacked run: base (mrl.stacking) + the network's residual
            value = value + member.stack_.predict_local(x, problem.columns, problem.conditions,
                                                        member.stack_feature_rows())
        values.append(value)
        if k == 0:
            mixture = module.mixture(batch)
    return torch.stack(values), mixture


class _Penalty:
    """The smooth domain penalty on local content rows: zero well inside the training domain, and zero wherever a row
    lies no further outside it than the original does (each term's allowance is the larger of its margin and the
    original's own excess), so an original outside the domain is not dragged back towards the training data at the
    expense of the target."""

    def __init__(self, predictor: "Predictor", problem: _Problem) -> None:
        domain = predictor.domain
        self.active = domain is not None
        if not self.active:
            return
        cmax = domain.content_max[problem.columns]
        self.cmax = torch.as_tensor(np.nan_to_num(cmax, nan=0.0), dtype=torch.float32)
        self.cref = torch.as_tensor(np.where(np.isnan(cmax) | (cmax <= 0), 0.01, cmax), dtype=torch.float32)
        self.mix_threshold = float(domain.mixture_threshold)
        self.l1_threshold = float(domain.distance_threshold)
        self.train_mix = torch.as_tensor(np.asarray(domain.train_mixtures, np.float32))
        if np.isfinite(self.l1_threshold):
            train = domain.train_matrix.tocsc()
            local = np.asarray(train[:, problem.columns].todense(), np.float32)
            rest = np.asarray(train.sum(axis=1)).ravel() - local.sum(axis=1)
            self.train_local = torch.as_tensor(local)
            self.train_rest = torch.as_tensor(rest, dtype=torch.float32)
        x0 = torch.as_tensor(problem.c0[None], dtype=torch.float32)
        with torch.no_grad():
            # the domain flags a content above cmax * (1 + RANGE_SLACK): the penalty starts inside that
            self.content_allow = torch.maximum(self.cmax * (1 + PENALTY_MARGIN * RANGE_SLACK), x0[0])
            mix0 = float(self._mix_distance(problem.origin_mixture)[0]) if self._uses_mixture() else 0.0
            self.mix_allow = max(PENALTY_MARGIN * self.mix_threshold, mix0) if self._uses_mixture() else 0.0
            self.l1_allow = max(PENALTY_MARGIN * self.l1_threshold, float(self._l1_distance(x0)[0])) \
                if self._uses_l1() else 0.0

    def _uses_mixture(self) -> bool:
        return math.isfinite(self.mix_threshold) and self.mix_threshold > 0

    def _uses_l1(self) -> bool:
        return math.isfinite(self.l1_threshold) and self.l1_threshold > 0

    def _mix_distance(self, mixture: torch.Tensor) -> torch.Tensor:
        return torch.cdist(mixture, self.train_mix).min(dim=1).values

    def _l1_distance(self, x: torch.Tensor) -> torch.Tensor:
        return ((x[:, None, :] - self.train_local[None]).abs().sum(-1) + self.train_rest[None]).min(dim=1).values

    def inside(self, x: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
        """The trust region, per row (bool, shape ``(n,)``): L1 distance to the nearest training formula and mixture
        distance to the nearest training mixture within the domain's thresholds (or within the original's own
        distances, when larger)."""
        ok = torch.ones(x.shape[0], dtype=torch.bool)
        if not self.active:
            return ok
        if self._uses_mixture():
            ok &= self._mix_distance(mixture) <= max(self.mix_threshold, self.mix_allow)
        if self._uses_l1():
            ok &= self._l1_distance(x) <= max(self.l1_threshold, self.l1_allow)
        return ok

    def __call__(self, x: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return torch.zeros(x.shape[0])
        total = ((torch.relu(x - self.content_allow) / self.cref) ** 2).sum(dim=1)
        if self._uses_mixture():
            total = total + (torch.relu(self._mix_distance(mixture) - self.mix_allow) / self.mix_threshold) ** 2
        if self._uses_l1():
            total = total + (torch.relu(self._l1_distance(x) - self.l1_allow) / self.l1_threshold) ** 2
        return total


def _objective(predictor: "Predictor", problem: _Problem, penalty: _Penalty, x: torch.Tensor,
               spread_weight: float, domain_weight: float) -> torch.Tensor:
    """Objective of each row of ``x`` (shape ``(n, L)``), shape ``(n,)``: squared distance of the members' mean to
    the target, plus ``spread_weight`` times the members' variance (of the predicted change from the original when
    anchored, else of the prediction), plus the domain penalty. With ``spread_weight`` 1 the first two terms are the
    members' mean squared distance to the target."""
    values, mixture = _model_values(predictor, problem, x)
    out = (values.mean(0) - problem.target_t) ** 2
    if values.shape[0] > 1 and spread_weight:
        change = values if problem.origin_t is None else values - problem.origin_t[:, None]
        out = out + spread_weight * change.var(0, unbiased=False)
    if domain_weight and penalty.active:
        out = out + domain_weight * penalty(x, mixture)
    return out


def project_to_simplex(y: torch.Tensor, mass: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, iterations: int = 60
            ) -> torch.Tensor:
    """Euclidean projection of each row of ``y`` (shape ``(n, k)``) onto ``{x: sum x = mass, lo <= x <= hi}``
    (``mass`` shape ``(n,)``; ``lo``/``hi`` shape ``(n, k)``): ``x = clip(y - tau, lo, hi)`` with ``tau`` found by
    bisection. Rows must be feasible (``sum lo <= mass <= sum hi``)."""
    low = (y - hi).min(dim=1).values - 1.0
    high = (y - lo).max(dim=1).values + 1.0
    for _ in range(iterations):
        tau = 0.5 * (low + high)
        s = torch.clamp(y - tau[:, None], lo, hi).sum(dim=1)
        low = torch.where(s > mass, tau, low)
        high = torch.where(s > mass, high, tau)
    return torch.clamp(y - (0.5 * (low + high))[:, None], lo, hi)


# ------------------------------------------------------------------------------------------------ supports
def _gradient(predictor: "Predictor", problem: _Problem) -> np.ndarray:
    """D prediction / d content at the original along "more of i, proportionally less of every free material"."""
    x = torch.as_tensor(problem.c0[None], dtype=torch.float32).requires_grad_(True)
    values, _ = _model_values(predictor, problem, x)
    values.mean(0).sum().backward()
    g = x.grad[0].numpy().astype(np.float64)
    free_mass = problem.c0 * problem.free
    mean = float((g * free_mass).sum() / max(free_mass.sum(), 1e-12))
    return g - mean


def _supports(predictor: "Predictor", problem: _Problem, max_changes: int, rng: np.random.Generator
              ) -> list[tuple[int, ...]]:
    """Candidate supports: sets of at most ``max_changes`` free materials (forced ones always in), drawn from the
    materials whose content moves the prediction most (relative to their typical step)."""
    free = np.flatnonzero(problem.free)
    forced = [int(i) for i in np.flatnonzero(problem.forced)]
    if len(forced) > max_changes:
        raise ValueError(f"{len(forced)} material(s) lie outside their bounds and must change, more than "
                         f"max_changes={max_changes}")
    g = _gradient(predictor, problem)
    step = np.maximum(problem.c0, MIN_STEP_CONTENT)
    score = np.abs(g) * step
    biggest = int(free[np.argmax(problem.c0[free])]) if len(free) else -1
    ranked = [int(i) for i in free[np.argsort(-score[free])] if int(i) not in forced]
    pool = ranked[:max(POOL_SIZE, max_changes + 2)]
    if biggest >= 0 and biggest not in pool and biggest not in forced:
        pool[-1:] = [biggest]  # the balance (largest free material) is the natural mass sink
    size = max_changes - len(forced)
    supports = [tuple(sorted(forced + list(c))) for c in itertools.combinations(pool, min(size, len(pool)))]
    if size < 1:
        supports = [tuple(sorted(forced))]
    supports = [s for s in supports if len(s) >= 2 and _feasible(problem, s)]
    if len(supports) > MAX_SUPPORTS:
        keep = rng.choice(len(supports), MAX_SUPPORTS, replace=False)
        supports = [supports[i] for i in sorted(keep)]
    return supports


def _feasible(problem: _Problem, support: Sequence[int]) -> bool:
    s = list(support)
    mass = problem.c0[s].sum()
    return problem.lo[s].sum() - 1e-12 <= mass <= problem.hi[s].sum() + 1e-12 and mass > 0


# ------------------------------------------------------------------------------------------------ search
def _stack_supports(problem: _Problem, supports: list[tuple[int, ...]], n_starts: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every (support, start) row: a mask of the support, its mass, and lo/hi (frozen materials: lo = hi =
    original)."""
    n = len(supports) * n_starts
    length = len(problem.ids)
    mask = np.zeros((n, length), bool)
    for k, s in enumerate(supports):
        mask[k * n_starts:(k + 1) * n_starts, list(s)] = True
    c0 = np.broadcast_to(problem.c0, (n, length))
    lo = np.where(mask, problem.lo, c0)
    hi = np.where(mask, problem.hi, c0)
    mass = (c0 * mask).sum(1)
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    return as_t(mask), as_t(mass), as_t(lo), as_t(hi), as_t(c0)


def _starts(problem: _Problem, mask: torch.Tensor, mass: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
            c0: torch.Tensor, n_starts: int, rng: np.random.Generator) -> torch.Tensor:
    """The original (first start of each support) and random feasible points around it (log-normal factors)."""
    factor = torch.as_tensor(np.exp(rng.normal(0.0, 1.0, tuple(mask.shape))), dtype=torch.float32)
    step = torch.as_tensor(np.maximum(problem.c0, MIN_STEP_CONTENT), dtype=torch.float32)
    y = torch.where(mask.bool(), torch.maximum(c0, 0.5 * step) * factor, c0)
    y[::n_starts] = c0[::n_starts]
    return _project_rows(y, mask, mass, lo, hi)


def _project_rows(y: torch.Tensor, mask: torch.Tensor, mass: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
                  ) -> torch.Tensor:
    """Project the support part of each row; frozen entries keep lo = hi."""
    big = 1e3
    ys = torch.where(mask.bool(), y, torch.full_like(y, -big))  # outside the support: clipped to lo = hi = c0
    x = project_to_simplex(ys, mass + (lo * (1 - mask)).sum(1), lo, hi)
    return x


def _search(predictor: "Predictor", problem: _Problem, supports: list[tuple[int, ...]], n_starts: int,
            steps: int, lr: float, spread_weight: float, domain_weight: float, rng: np.random.Generator,
            extra: Sequence[tuple[tuple[int, ...], np.ndarray, str]] = (), trust_region: bool = False
            ) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Projected Adam over all (support, start) rows at once (plus the ``extra`` rows: a support, a start point in
    fractions and its label); returns final rows, their objectives (inf outside the trust region when
    ``trust_region`` and some row lies inside), model calls and each row's start label."""
    mask, mass, lo, hi, c0 = _stack_supports(problem, supports, n_starts)
    x = _starts(problem, mask, mass, lo, hi, c0, n_starts, rng)
    labels = ["original" if k % n_starts == 0 else "random" for k in range(len(supports) * n_starts)]
    if extra:
        parts = _stack_supports(problem, [e[0] for e in extra], 1)
        y = torch.as_tensor(np.stack([e[1] for e in extra]), dtype=torch.float32)
        x = torch.cat([x, _project_rows(y, *parts[:4])])
        mask, mass, lo, hi, c0 = (torch.cat([a, b]) for a, b in zip((mask, mass, lo, hi, c0), parts))
        labels += [e[2] for e in extra]
    penalty = _Penalty(predictor, problem)
    scale = torch.as_tensor(np.maximum(problem.c0, MIN_STEP_CONTENT), dtype=torch.float32)
    u = (x / scale).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=lr)
    best_x, best_f = x.clone(), torch.full((x.shape[0],), float("inf"))
    calls = 0
    for it in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * it / steps)))
        optimizer.zero_grad()
        xs = u * scale
        f = _objective(predictor, problem, penalty, xs, spread_weight, domain_weight)
        calls += xs.shape[0] * len(predictor.members)
        with torch.no_grad():
            better = f < best_f
            best_f = torch.where(better, f, best_f)
            best_x[better] = xs[better]
        f.sum().backward()
        optimizer.step()
        with torch.no_grad():
            u.copy_(_project_rows(u * scale, mask, mass, lo, hi) / scale)
    with torch.no_grad():
        xs = u * scale
        f = _objective(predictor, problem, penalty, xs, spread_weight, domain_weight)
        calls += xs.shape[0] * len(predictor.members)
        better = f < best_f
        best_f = torch.where(better, f, best_f)
        best_x[better] = xs[better]
        if trust_region and penalty.active:
            inside = penalty.inside(best_x, _model_values(predictor, problem, best_x)[1])
            log.info("design: %d of %d searched rows inside the trust region", int(inside.sum()), len(inside))
            if inside.any():
                best_f = torch.where(inside, best_f, torch.full_like(best_f, float("inf")))
            else:
                log.warning("design: no searched row lies inside the trust region; proposals are flagged")
    return best_x.numpy().astype(np.float64), best_f.numpy().astype(np.float64), calls, labels


def _clean(problem: _Problem, x: np.ndarray) -> np.ndarray | None:
    """Snap tiny moves back to the original, round changed contents to :data:`DECIMALS` in % (changes to whole
    multiples of ``problem.step`` when given, within the bounds) and put the rounding remainder on the largest
    changed material (the balance) so the contents sum to 100 % (None when fewer than two materials still
    change)."""
    c0 = problem.c0 * 100.0
    p = x * 100.0
    changed = np.abs(p - c0) > CHANGE_TOLERANCE
    if changed.sum() < 2:
        return None
    lo, hi = problem.lo * 100.0, problem.hi * 100.0
    if problem.step:  # changes in whole steps, within the bounds
        s = problem.step
        k = np.clip(np.round((p - c0) / s), np.ceil((lo - c0) / s - 1e-9), np.floor((hi - c0) / s + 1e-9))
        p = np.where(changed, np.round(c0 + k * s, DECIMALS + 2), c0)
    else:
        p = np.where(changed, np.clip(np.round(p, DECIMALS), lo, hi), c0)
    j = int(np.flatnonzero(changed)[np.argmax(p[changed])])
    p[j] = max(p[j] + 100.0 - p.sum(), 0.0)
    if (np.abs(p - c0) > CHANGE_TOLERANCE).sum() < 2:
        return None
    return p


def _select(problem: _Problem, rows: np.ndarray, objectives: np.ndarray, n_proposals: int,
            min_distance: float | None = None, labels: Sequence[str] | None = None
            ) -> list[tuple[np.ndarray, float, str]]:
    """The best cleaned rows that differ from every better one by at least ``min_distance`` % (L1 of contents;
    None: :data:`MIN_DISTANCE_SHARE` of the larger of the two moves; never less than :data:`SAME_PROPOSAL`), best
    objective first, each with its start label (``labels``, default ``random``)."""
    chosen: list[tuple[np.ndarray, float, str]] = []
    c0 = problem.c0 * 100.0
    for i in np.argsort(objectives):
        if not np.isfinite(objectives[i]):
            continue
        p = _clean(problem, rows[i])
        if p is None:
            continue
        move = np.abs(p - c0).sum()
        if any(np.abs(p - q).sum() < max(SAME_PROPOSAL, min_distance if min_distance is not None
                                         else MIN_DISTANCE_SHARE * max(move, np.abs(q - c0).sum()))
               for q, *_ in chosen):
            continue
        chosen.append((p, float(objectives[i]), "random" if labels is None else labels[i]))
        if len(chosen) == n_proposals:
            break
    return chosen


def _changes(problem: _Problem, p: np.ndarray) -> tuple[int, str]:
    delta = p - problem.c0 * 100.0
    moved = np.flatnonzero(np.abs(delta) > CHANGE_TOLERANCE)
    moved = moved[np.argsort(-np.abs(delta[moved]))]
    labels = problem.labels
    return len(moved), "; ".join(f"{labels[j]} {delta[j]:+.4g} %" for j in moved)


def _result(predictor: "Predictor", problem: _Problem, base: pd.DataFrame, original_id: str,
            chosen: list[tuple[np.ndarray, float, str]], target: float, measured: float | None,
            conditions: Mapping[str, float] | None, calls: int, window: float = HIT_WINDOW) -> DesignResult:
    """Score the original and the chosen proposals with the predictor and build the result."""
    ids = [original_id, *(f"{original_id}_P{k + 1:02d}" for k in range(len(chosen)))]
    contents = [problem.c0 * 100.0, *(p for p, *_ in chosen)]
    rows = [(fid, mid, float(c)) for fid, p in zip(ids, contents) for mid, c in zip(problem.ids, p) if c > 0]
    forms = pd.DataFrame(rows, columns=["formula_id", "material_id", "content"])
    names = list(predictor.members[0].conditions_)
    cond_table = None
    if names:
        cond_table = pd.DataFrame({"formula_id": ids, **{c: float(dict(conditions or {})[c]) for c in names}})
    table = predictor.predict(forms, cond_table).set_index("formula_id").loc[ids].reset_index()
    table = table.rename(columns={"formula_id": "proposal"})
    table["raw_prediction"] = table["prediction"]
    factor_t = 0.0
    transform = predictor.transform
    if measured is not None:  # anchored: shift by the original's residual in model units
        t_orig = float(to_model_units(table["prediction"].to_numpy()[:1], transform)[0])
        factor_t = float(to_model_units(np.array([measured]), transform)[0]) - t_orig
    low, high = predictor.clip_range()
    for col in ["prediction", "lower_80", "upper_80", "lower_95", "upper_95"]:
        shifted = from_model_units(to_model_units(table[col].to_numpy(), transform) + factor_t, transform) \
            if transform == "log10" else table[col].to_numpy() + factor_t
        table["clipped"] = table["clipped"] | (shifted < low) | (shifted > high)
        table[col] = np.clip(shifted, low, high)  # anchored values stay in the range the model may predict
    inside = (table["lower_80"] <= target) & (target <= table["upper_80"])
    reasons = []
    for _, row in table.iterrows():
        why = []
        if row["out_of_domain"]:
            why.append(f"outside the training domain: {row['reasons']}")
        if not np.isfinite(row["lower_80"]):
            why.append("no calibrated interval (train with calibration_fraction > 0)")
        elif not row["lower_80"] <= target <= row["upper_80"]:
            why.append(f"target {target:.4g} outside the 80 % interval {row['lower_80']:.4g}-{row['upper_80']:.4g}")
        reasons.append("; ".join(why))
    table["domain_reasons"] = table["reasons"]
    table["reasons"] = reasons
    table["vouched"] = (~table["out_of_domain"].astype(bool)) & inside
    table["n_changed"] = [0, *(_changes(problem, p)[0] for p, *_ in chosen)]
    table["changes"] = ["", *(_changes(problem, p)[1] for p, *_ in chosen)]
    table["objective"] = [np.nan, *(f for _, f, _ in chosen)]
    table["start"] = ["", *(label for *_, label in chosen)]
    table["p_hit"] = np.nan
    if predictor.calibration is not None:
        mean_t = to_model_units(table["prediction"].to_numpy(), transform)
        spread = table["spread"].fillna(1.0).to_numpy()  # one model: constant-width intervals (spread 1)
        move_sd = np.zeros(len(table))
        if measured is not None and len(predictor.members) > 1:
            # anchored: the members' disagreement on the absolute value says nothing about the move (it ranked
            # moves by how much they calm the members); take the original's calibrated width for every row and
            # add the members' disagreement on the move
            spread = np.full(len(table), spread[0])
            with torch.no_grad():
                values, _ = _model_values(predictor, problem, torch.as_tensor(np.stack(contents) / 100.0,
                                                                              dtype=torch.float32))
            move_sd = (values - values[:, :1]).std(0, unbiased=False).numpy().astype(np.float64)
        table["p_hit"] = hit_probability(mean_t, spread, predictor.calibration, target * (1 - window),
                                         target * (1 + window), move_sd)
    front = ["proposal", "prediction", "lower_80", "upper_80", "lower_95", "upper_95", "p_hit", "vouched",
             "reasons", "n_changed", "changes", "start", "objective", "out_of_domain", "spread", "raw_prediction"]
    table = table[[*front, *[c for c in table.columns if c not in front]]]
    names = {m: n for m, n in zip(problem.ids, problem.names) if n}
    return DesignResult(table.iloc[1:].reset_index(drop=True), forms, table.iloc[0], original_id, float(target),
                        measured, dict(conditions or {}), calls, names, window=window)


def _prepare(predictor, formula, target, conditions, fix, bounds, add_from, measured, max_changes, **roles):
    forms, _ = read_table(formula, "formula")
    missing = [c for c in ("formula_id", "material_id", "content") if c not in forms.columns]
    if missing:
        raise DataError(f"formula: missing column(s) {missing}; found {list(forms.columns)}")
    if not (np.isfinite(target) and (target > 0 or predictor.transform != "log10")):
        raise ValueError(f"target must be a finite value (> 0 for a log target), got {target!r}")
    if max_changes < 2:
        raise ValueError(f"max_changes must be >= 2 (contents sum to 100 %: one material cannot change alone), "
                         f"got {max_changes}")
    original_id = str(forms["formula_id"].iloc[0])
    problem, base = _problem(predictor, forms, target, conditions, fix, bounds or {}, add_from, measured, **roles)
    return problem, base, original_id


def design(predictor: "Predictor", formula: TableLike, target: float, conditions: Mapping[str, float] | None = None,
           fix: Sequence[str] = (), bounds: Mapping[str, tuple[float, float]] | None = None, max_changes: int = 3,
           add_from: Sequence[str] = (), n_proposals: int = 3, n_starts: int = 4, spread_weight: float = 1.0,
           domain_weight: float = 1.0, measured: float | None = None, steps: int = 150, lr: float = 0.05,
           seed: int = 0, fix_family: Sequence[str] = (), add_from_family: Sequence[str] = (),
           family_column: str = "family", domain_bounds: bool = True, step: float | None = None,
           min_distance: float | None = None, measured_data: FormulaData | None = None, window: float = HIT_WINDOW,
           n_measured_starts: int = MEASURED_STARTS, trust_region: bool = True, n_pool: int | None = None,
           rank_by_hit: bool = True) -> DesignResult:
    """Proposals that move ``formula`` towards ``target`` under the constraints (see the module docstring).

    Args:
        predictor: a :class:`mrl.predict.Predictor` (one model or an ensemble, with calibration and domain).
        formula: long-format table (path or DataFrame) of one formula: ``formula_id, material_id, content``
            (% or fractions; normalised to 100 %).
        target: wanted property value (property units, e.g. cP).
        conditions: the model's conditions, e.g. ``{"T": 1500.0}`` (required when the model has conditions).
        fix: materials (codes or names) whose content must not change (absent ones are never added).
        bounds: ``{material: (lo, hi)}`` in % (codes or names); they override ``domain_bounds``.
        max_changes: at most this many materials change (>= 2).
        add_from: materials (codes or names) that may be added (content 0 in the original).
        n_proposals: how many distinct proposals to return (fewer when the search finds fewer).
        n_starts: starts per support (the original and random feasible points).
        spread_weight: weight of the members' variance (model units squared; of the predicted change when
            anchored) in the objective (ensembles only). Default 1: on the small lab's calibration formulas
            (``benchmarks/design.py --pool calib``, 40 formulas x 2 targets, one 5-member model), weights 0 / 1 /
            3 / 10 put the true viscosity within 15 % of the target in 40 / 48 / 44 / 34 % of the 80 tasks.
        domain_weight: weight of the smooth out-of-domain penalty.
        measured: the original's measured value: anchor the design to it (aim at the ratio target / measured).
        steps: projected Adam steps per start (cosine decay of the learning rate).
        lr: Adam learning rate (relative content units: per-material steps scaled by its original content).
        seed: random starts and support sampling.
        fix_family: families (values of ``family_column`` in the run's materials table, e.g. ``active``) whose
            materials keep their content.
        add_from_family: families whose materials may be added.
        family_column: the materials table's column that holds the roles (``family``, ``role``...).
        domain_bounds: keep each material within the contents it had in training formulas (see the module
            docstring); ``bounds`` override it per material.
        step: dosing resolution in %: every change is a whole multiple of it (None: contents to :data:`DECIMALS`
            decimals).
        min_distance: smallest L1 difference of contents (%) between two proposals (None: :data:`MIN_DISTANCE_SHARE`
            of the larger move).
        measured_data: the lab's measured formulas (a :class:`mrl.data.FormulaData` with the model's target):
            "already made" and measured starts (see the module docstring); None: the original and random starts.
        window: relative window around the target of ``p_hit`` and "already made" (0.15: within 15 %).
        n_measured_starts: starts taken from measured formulas.
        trust_region: drop searched rows outside the training domain's distance thresholds before ranking.
        n_pool: candidates scored and ranked by ``p_hit`` (None: :data:`POOL_FACTOR` x ``n_proposals``).
        rank_by_hit: rank by ``p_hit`` (needs calibration); False: by the objective, as the search found them.
    """
    if not 0 < window < 1:
        raise ValueError(f"window must be in (0, 1) (0.15: within 15 % of the target), got {window!r}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    problem, base, original_id = _prepare(predictor, formula, target, conditions, fix, bounds, add_from, measured,
                                          max_changes, fix_family=fix_family, add_from_family=add_from_family,
                                          family_column=family_column, domain_bounds=domain_bounds, step=step)
    constrained, extra = _EMPTY_CONSTRAINED, []
    if measured_data is not None:
        library = _library(predictor, problem, measured_data, conditions)
        ok, n_changed = _within_constraints(problem, library, max_changes)
        constrained = _constrained_table(problem, library, ok, n_changed, target, predictor.transform)
        extra = _measured_starts(problem, library, ok, target, predictor.transform, max_changes, n_measured_starts)
        log.info("design %s: %d measured formula(s) satisfy the constraints, %d measured start(s)", original_id,
                 len(constrained), len(extra))
    supports = _supports(predictor, problem, max_changes, rng)
    if not supports and not extra:
        raise ValueError("no feasible set of materials to change: loosen fix, bounds or max_changes, or give add_from")
    rows, objectives, calls, labels = _search(predictor, problem, supports, n_starts, steps, lr, spread_weight,
                                              domain_weight, rng, extra, trust_region)
    chosen = _select(problem, rows, objectives, (n_pool or POOL_FACTOR * n_proposals) if rank_by_hit else n_proposals,
                     min_distance, labels)
    if rank_by_hit and predictor.calibration is not None and chosen:  # rank the pool by the calibrated probability of a hit
        pool = _result(predictor, problem, base, original_id, chosen, target, measured, conditions, calls, window)
        p_hit = pool.proposals["p_hit"].fillna(-1.0).to_numpy()
        chosen = [chosen[i] for i in np.lexsort((pool.proposals["objective"].to_numpy(), -p_hit))]
    chosen = chosen[:n_proposals]
    log.info("design %s: %d supports x %d starts + %d measured start(s), %d model calls, %d proposal(s)",
             original_id, len(supports), n_starts, len(extra), calls, len(chosen))
    result = _result(predictor, problem, base, original_id, chosen, target, measured, conditions, calls, window)
    result.constrained = constrained
    if not result.already_made.empty:
        log.info("design %s: %s", original_id, result.note())
    return result


def measured_within_constraints(predictor: "Predictor", formula: TableLike, target: float,
                                measured_data: FormulaData, conditions: Mapping[str, float] | None = None,
                                fix: Sequence[str] = (), bounds: Mapping[str, tuple[float, float]] | None = None,
                                max_changes: int = 3, add_from: Sequence[str] = (), window: float = HIT_WINDOW,
                                **roles) -> pd.DataFrame:
    """The measured formulas that satisfy :func:`design`'s constraints relative to ``formula`` (the table
    :attr:`DesignResult.constrained`, closest to the target first, with ``hit`` = within ``window``), without a
    search: the formulator's "nearest measured formula under the same constraints"."""
    problem, _, _ = _prepare(predictor, formula, target, conditions, fix, bounds, add_from, None, max_changes, **roles)
    library = _library(predictor, problem, measured_data, conditions)
    ok, n_changed = _within_constraints(problem, library, max_changes)
    table = _constrained_table(problem, library, ok, n_changed, target, predictor.transform)
    return table.assign(hit=table["error"].abs() <= window)


# ------------------------------------------------------------------------------------------------ measured formulas
_EMPTY_CONSTRAINED = pd.DataFrame(columns=["formula_id", "measured", "error", "n_changed", "distance"])


@dataclass
class _Library:
    """The lab's measured formulas in the problem's local materials."""

    ids: np.ndarray  # formula ids, shape (n,)
    local: np.ndarray  # content fractions of the local materials, shape (n, L)
    rest: np.ndarray  # content fraction outside the local materials, shape (n,)
    values: np.ndarray  # measured values (property units), shape (n,)


def _library(predictor: "Predictor", problem: _Problem, data: FormulaData, conditions: Mapping[str, float] | None
             ) -> _Library:
    """The measured formulas of ``data`` (their mean measurement of the model's target at the requested conditions)
    over the problem's local materials."""
    first = predictor.members[0]
    target = first.target_
    props = data.properties
    if target not in props.columns:
        raise DataError(f"{data.name}: the measured formulas have no {target!r} column (the model's target)")
    keep = np.isfinite(pd.to_numeric(props[target], errors="coerce").to_numpy(np.float64))
    for name in first.conditions_:
        if name not in props.columns:
            raise DataError(f"{data.name}: the measured formulas have no condition column {name!r}")
        keep &= np.isclose(props[name].to_numpy(np.float64), float(dict(conditions or {})[name]))
    values = props.loc[keep].groupby("formula_id", sort=False)[target].mean()
    rows = pd.Index(data.formula_ids).get_indexer(values.index)
    cols = pd.Index(data.material_ids.astype(str)).get_indexer(problem.ids)
    sub = data.content_matrix()[rows]
    local = np.zeros((len(rows), len(problem.ids)))
    local[:, cols >= 0] = sub[:, cols[cols >= 0]].toarray()
    rest = np.clip(np.asarray(sub.sum(axis=1)).ravel() - local.sum(axis=1), 0.0, None)
    return _Library(values.index.to_numpy().astype(str), local, rest, values.to_numpy(np.float64))


def _within_constraints(problem: _Problem, library: _Library, max_changes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per measured formula: does it satisfy the constraints relative to the original (only local materials, fixed
    ones unchanged, at most ``max_changes`` changed, changed ones within their bounds), and how many changed."""
    tol = CHANGE_TOLERANCE / 100.0
    changed = np.abs(library.local - problem.c0) > tol
    outside = (library.local < problem.lo - tol) | (library.local > problem.hi + tol)
    ok = (library.rest <= tol) & (changed.sum(axis=1) <= max_changes) & ~(changed & ~problem.free).any(axis=1) \
        & ~(changed & outside).any(axis=1)
    return ok, changed.sum(axis=1)


def _gap(values: np.ndarray, target: float, transform: str) -> np.ndarray:
    """Distance of measured values from the target in model units (log10 for a log target)."""
    return np.abs(to_model_units(values, transform) - to_model_units(np.array([target]), transform)[0])


def _constrained_table(problem: _Problem, library: _Library, ok: np.ndarray, n_changed: np.ndarray, target: float,
                       transform: str) -> pd.DataFrame:
    """The constraint-satisfying measured formulas, the one closest to the target first."""
    rows = np.flatnonzero(ok)
    rows = rows[np.argsort(_gap(library.values[rows], target, transform), kind="stable")]
    distance = 100.0 * (np.abs(library.local[rows] - problem.c0).sum(axis=1) + library.rest[rows])
    return pd.DataFrame({"formula_id": library.ids[rows], "measured": library.values[rows],
                         "error": library.values[rows] / target - 1.0, "n_changed": n_changed[rows].astype(int),
                         "distance": distance})


def _measured_starts(problem: _Problem, library: _Library, ok: np.ndarray, target: float, transform: str,
                     max_changes: int, n: int) -> list[tuple[tuple[int, ...], np.ndarray, str]]:
    """Up to ``n`` starts from measured formulas (see the module docstring): each a support, a start point
    (fractions, before projection onto the support's mass and bounds) and its label ``measured F0123``."""
    if n <= 0 or not len(library.ids):
        return []
    tol = CHANGE_TOLERANCE / 100.0
    distance = np.abs(library.local - problem.c0).sum(axis=1) + library.rest
    gap = _gap(library.values, target, transform)
    moved = distance > tol  # the original itself is started from anyway
    first = np.flatnonzero(ok & moved)
    first = first[np.argsort(gap[first], kind="stable")]
    near = np.flatnonzero(~ok & moved)
    near = near[np.argsort(distance[near], kind="stable")][:NEIGHBOURS]
    near = near[np.argsort(gap[near], kind="stable")]
    free = np.flatnonzero(problem.free)
    forced = [int(i) for i in np.flatnonzero(problem.forced)]
    size = max_changes - len(forced)
    if not len(free) or size < 1:
        return []
    biggest = int(free[np.argmax(problem.c0[free])])
    step = np.maximum(problem.c0, MIN_STEP_CONTENT)
    out = []
    for i in [*first, *near]:
        rel = np.abs(library.local[i] - problem.c0) / step
        rel[~problem.free] = -1.0
        rel[forced] = -1.0
        ranked = [int(j) for j in np.argsort(-rel, kind="stable") if rel[j] * step[j] > tol][:size]
        if not ranked:
            continue
        if not ok[i] and biggest not in ranked and biggest not in forced:
            ranked = [*ranked[:size - 1], biggest]  # the balance takes up the mass
        support = tuple(sorted({*forced, *ranked}))
        if len(support) < 2 or not _feasible(problem, support):
            continue
        start = problem.c0.copy()
        start[list(support)] = library.local[i][list(support)]
        out.append((support, start, f"measured {library.ids[i]}"))
        if len(out) == n:
            break
    return out


def random_search(predictor: "Predictor", formula: TableLike, target: float,
                  conditions: Mapping[str, float] | None = None, fix: Sequence[str] = (),
                  bounds: Mapping[str, tuple[float, float]] | None = None, max_changes: int = 3,
                  add_from: Sequence[str] = (), n_proposals: int = 3, n_calls: int = 20000,
                  spread_weight: float = 1.0, domain_weight: float = 1.0, measured: float | None = None,
                  seed: int = 0, chunk: int = 2048, min_distance: float | None = None, **roles) -> DesignResult:
    """The reference search under the same constraints and objective: ``n_calls`` model evaluations (formulas x
    members) of random proposals (a random support of ``max_changes`` free materials among the formula's and
    ``add_from``, contents drawn log-uniformly between 1/10 and 10x their original (or typical) level and projected
    onto the bounds and the support's mass), keeping the best. ``roles``: :func:`design`'s ``fix_family``,
    ``add_from_family``, ``family_column``, ``domain_bounds`` and ``step``."""
    rng = np.random.default_rng(seed)
    problem, base, original_id = _prepare(predictor, formula, target, conditions, fix, bounds, add_from, measured,
                                          max_changes, **roles)
    free = [int(i) for i in np.flatnonzero(problem.free)]
    forced = [int(i) for i in np.flatnonzero(problem.forced)]
    size = max_changes - len(forced)
    penalty = _Penalty(predictor, problem)
    n_rows = max(1, n_calls // len(predictor.members))
    step = np.maximum(problem.c0, MIN_STEP_CONTENT)
    all_rows, all_f = [], []
    done = 0
    while done < n_rows:
        n = min(chunk, n_rows - done)
        supports = [tuple(sorted(forced + list(rng.choice([i for i in free if i not in forced],
                                                          min(size, len(free) - len(forced)), replace=False))))
                    for _ in range(n)]
        ok = [s for s in supports if len(s) >= 2 and _feasible(problem, s)]
        if not ok:
            raise ValueError("no feasible set of materials to change: loosen fix, bounds or max_changes")
        supports = [ok[i % len(ok)] for i in range(n)]
        mask = np.zeros((n, len(problem.ids)))
        for k, s in enumerate(supports):
            mask[k, list(s)] = 1.0
        c0 = np.broadcast_to(problem.c0, mask.shape)
        y = np.where(mask > 0, step * np.exp(rng.uniform(np.log(0.1), np.log(10.0), mask.shape)), c0)
        as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        lo, hi = np.where(mask > 0, problem.lo, c0), np.where(mask > 0, problem.hi, c0)
        x = _project_rows(as_t(y), as_t(mask), as_t((c0 * mask).sum(1)), as_t(lo), as_t(hi))
        with torch.no_grad():
            f = _objective(predictor, problem, penalty, x, spread_weight, domain_weight)
        all_rows.append(x.numpy().astype(np.float64))
        all_f.append(f.numpy().astype(np.float64))
        done += n
    rows, objectives = np.concatenate(all_rows), np.concatenate(all_f)
    chosen = _select(problem, rows, objectives, n_proposals, min_distance)  # start label: random
    return _result(predictor, problem, base, original_id, chosen, target, measured, conditions,
                   n_rows * len(predictor.members))


def random_formulas(predictor: "Predictor", formula: TableLike, n: int, around: TableLike | None = None,
                    scale: float | None = None, fix: Sequence[str] = (),
                    bounds: Mapping[str, tuple[float, float]] | None = None, max_changes: int = 3,
                    add_from: Sequence[str] = (), seed: int = 0, prefix: str = "R", **roles) -> pd.DataFrame:
    """``n`` random formulas within :func:`design`'s constraints relative to ``formula``, without the model (it only
    lends its vocabulary and training domain): long format ``formula_id, material_id, content`` (%), ids
    ``{prefix}001``...

    Without ``around``: random search within the constraints (a random support of ``max_changes`` free materials,
    contents log-uniform between 1/10 and 10x their original or typical level, projected onto the bounds and the
    support's mass). With ``around`` (one formula that satisfies the constraints, e.g. the measured formula nearest
    the target): perturbations of it, the formulator's habit: its changed materials plus random free ones up to
    ``max_changes``, each content times ``exp(scale * N(0, 1))`` (``scale`` default 0.3), projected likewise.
    ``roles``: :func:`design`'s ``fix_family``, ``add_from_family``, ``family_column``, ``domain_bounds``."""
    rng = np.random.default_rng(seed)
    problem, _, _ = _prepare(predictor, formula, 1.0, None, fix, bounds, add_from, None, max_changes, **roles)
    free = np.flatnonzero(problem.free)
    forced = [int(i) for i in np.flatnonzero(problem.forced)]
    step = np.maximum(problem.c0, MIN_STEP_CONTENT)
    x0, changed = problem.c0, np.zeros(len(problem.ids), bool)
    if around is not None:
        table, _ = read_table(around, "around")
        near = _as_percent(table.assign(material_id=table["material_id"].astype(str)))
        extra = sorted(set(near["material_id"]) - set(problem.ids))
        if extra:
            raise DataError(f"around: material(s) {extra[:10]} are neither in the formula nor candidates")
        x0 = near.set_index("material_id")["content"].reindex(problem.ids).fillna(0.0).to_numpy() / 100.0
        changed = np.abs(x0 - problem.c0) > CHANGE_TOLERANCE / 100.0
        if changed.sum() > max_changes or (changed & ~problem.free).any():
            raise ValueError(f"around: changes {int(changed.sum())} material(s) or a fixed one; it must satisfy the "
                             f"constraints (at most max_changes={max_changes})")
    rows = []
    k = 0
    for _attempt in range(50 * n):
        if k == n:
            break
        keep = sorted({*forced, *np.flatnonzero(changed)})
        others = [int(i) for i in free if int(i) not in keep]
        size = max(0, min(max_changes - len(keep), len(others)))
        support = tuple(sorted({*keep, *(int(i) for i in rng.choice(others, size, replace=False))}))
        if len(support) < 2:
            continue
        mass = x0[list(support)].sum()
        lo, hi = problem.lo[list(support)], problem.hi[list(support)]
        if not lo.sum() - 1e-12 <= mass <= hi.sum() + 1e-12:
            continue
        if around is None:
            y = step[list(support)] * np.exp(rng.uniform(np.log(0.1), np.log(10.0), len(support)))
        else:
            y = np.maximum(x0[list(support)], 0.5 * step[list(support)]) * \
                np.exp((0.3 if scale is None else scale) * rng.standard_normal(len(support)))
        t = lambda a: torch.as_tensor(np.asarray(a, np.float64)[None], dtype=torch.float32)  # noqa: E731
        x = x0.copy()
        x[list(support)] = project_to_simplex(t(y), torch.tensor([float(mass)]), t(lo), t(hi))[0].numpy()
        p = _clean(problem, x)
        if p is None:
            continue
        k += 1
        rows += [(f"{prefix}{k:03d}", m, float(c)) for m, c in zip(problem.ids, p) if c > 0]
    if k < n:
        log.warning("random_formulas: only %d of %d feasible formulas drawn", k, n)
    return pd.DataFrame(rows, columns=["formula_id", "material_id", "content"])


# ------------------------------------------------------------------------------------------------ the map
def design_map(predictor: "Predictor", result: DesignResult, embeddings: pd.DataFrame | None = None) -> "Figure":
    """The move on the material map: materials' vectors on the run's PCA map (:func:`mrl.analysis.project`,
    uncentred so the pinned base stays at the origin), the original's and each proposal's mixture vector placed on
    the same axes (the map is linear), with arrows from the original to the proposals."""
    first = predictor.members[0]
    emb = first.embeddings() if embeddings is None else embeddings
    vectors = material_vectors(emb)
    coords = analysis.project(vectors, "pca", center=False)
    # the uncentred PCA map is linear: recover its 2 axes and apply them to the mixture vectors
    axes_, *_ = np.linalg.lstsq(vectors, coords, rcond=None)
    ids = [result.original_id, *result.proposals["proposal"]]
    data_matrix, cond = _matrix(predictor, result.formulas, ids, result.conditions)
    mixes = first.mixture_vectors(data_matrix, cond) @ axes_
    fig = material_map(coords, emb, color_by="family" if "family" in emb.columns else "n_formulas", origin=(0.0, 0.0),
                       view="uncentred PCA of material vectors; stars/circles: mixture vectors")
    ax = fig.axes[0]
    ax.scatter(mixes[:1, 0], mixes[:1, 1], marker="*", s=220, c="black", zorder=5, label="original")
    for k in range(1, len(ids)):
        vouched = bool(result.proposals["vouched"].iloc[k - 1])
        ax.annotate("", xy=mixes[k], xytext=mixes[0], zorder=5,
                    arrowprops=dict(arrowstyle="->", color="tab:green" if vouched else "tab:red", lw=1.5))
        ax.scatter(mixes[k, 0], mixes[k, 1], marker="o", s=60, facecolors="none",
                   edgecolors="tab:green" if vouched else "tab:red", zorder=6)
        ax.annotate(f"P{k}", mixes[k], xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_title(f"{result.original_id} -> target {result.target:.4g} (green: vouched, red: not)", fontsize="medium")
    ax.legend(loc="best", fontsize="small")
    return fig


def _matrix(predictor: "Predictor", forms: pd.DataFrame, ids: Sequence[str], conditions: Mapping[str, float]):
    first = predictor.members[0]
    vocab = first.materials_["material_id"].astype(str).tolist()
    fractions = forms.assign(content=forms["content"] / 100.0, material_id=forms["material_id"].astype(str))
    matrix = content_matrix(fractions, list(ids), vocab)
    cond = np.array([[float(conditions[c]) for c in first.conditions_]] * len(ids)).reshape(len(ids), -1)
    return matrix, cond
