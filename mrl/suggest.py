"""What to make next: a batch of formulas for a target, and a new run with the measured results added.

A lab does not ask for one formula but "which 8 formulas do we make in the next round?", again after each round of
measurements. :func:`suggest` answers it from a run's model and the lab's measured formulas:

1. **Candidates.** :func:`mrl.design.design` runs once from the base formula (given, or the measured formula whose
   value lies closest to the target) under the constraints, data-aware (starts from measured formulas, trust
   region, "already made"), and keeps a pool of ``n_pool`` distinct proposals (default :data:`POOL_FACTOR` x
   ``batch``), each with its calibrated probability of a hit ``p_hit`` (the true value within ``window`` of the
   target; :func:`mrl.uncertainty.hit_probability`). Candidates that repeat a measured formula are dropped.
2. **Batch.** Greedy: the next pick maximises ``p_hit x (1 - exp(-(d / l)^2))`` where ``d`` is the candidate's
   distance to the nearest formula already in the batch in the model's mixture-vector space (member 0's; the
   factor is 1 for the first pick) and ``l`` = ``diversity`` x the median pairwise mixture distance of the pool.

Why probability of a hit with a diversity penalty (rather than expected improvement): the lab's goal is a formula
inside a window, not a record value, so the chance of landing in it is the utility itself, and it is a number a
formulator can read ("41 % chance this one is within 15 %") and check against the calibrated intervals. Alone it
would fill the batch with near-copies of the single best move, and if the model is wrong about that move all eight
experiments fail together and teach the model about one point. The penalty (local penalisation of batch Bayesian
optimisation, Gonzalez et al. 2016) works in the model's own mixture vectors: two formulas the model cannot tell
apart count as nearly one experiment, so the batch spreads over moves the model considers different, which is what
corrects it fastest when it is wrong. ``diversity`` 0 gives the pure ranking by ``p_hit``.

:func:`add_results` makes the next round possible: it writes a NEW run folder trained on the old run's data plus
the measured new formulas (the old split kept, new formulas in training), never touching the old run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mrl.data import FormulaData, content_matrix, load_formulas
from mrl.design import SAME_PROPOSAL, DesignResult, design
from mrl.ensemble import member_seed
from mrl.error_sources import nearest_distances
from mrl.estimator import MixtureRegressor
from mrl.io import write_table
from mrl.params import RunParams
from mrl.predict import Predictor, calibrated_predictor
from mrl.runs import load_run, run_experiment
from mrl.splits import hold_out_calibration
from mrl.tables import DataError, TableLike, read_table
from mrl.uncertainty import to_model_units

log = logging.getLogger(__name__)
#: Candidates in the pool: this many times the batch size (``n_pool`` default).
POOL_FACTOR = 5
#: Length scale of the diversity penalty as a share of the pool's median pairwise mixture distance.
DIVERSITY = 0.5
#: Columns of the batch table, in order.
BATCH_COLUMNS = ["suggestion", "formula_id", "prediction", "lower_80", "upper_80", "lower_95", "upper_95", "p_hit",
                 "vouched", "out_of_domain", "reasons", "n_changed", "changes", "start", "batch_distance",
                 "penalty", "why"]


@dataclass
class Suggestion:
    """A batch of formulas to make next.

    Attributes:
        batch: one row per formula to make (:data:`BATCH_COLUMNS`): ``suggestion`` (``S01``...), ``formula_id``
            (the design proposal's id), prediction and 80/95 % intervals, ``p_hit``, ``vouched``, domain flags,
            ``changes`` from the base, ``start`` of the search it came from, ``batch_distance`` (mixture distance
            to the nearest earlier pick), ``penalty`` (its diversity factor) and ``why`` (in words).
        formulas: the batch in long format ``formula_id, material_id, content`` (%), ids ``suggestion``.
        design: the candidate pool (:class:`mrl.design.DesignResult`; its ``already_made`` names measured formulas
            that already meet the target and the constraints).
        base_id: the formula the constraints refer to; target, window: the goal.
        p_any: probability that at least one formula of the batch hits (the picks taken as independent).
    """

    batch: pd.DataFrame
    formulas: pd.DataFrame
    design: DesignResult
    base_id: str
    target: float
    window: float
    p_any: float


def _base(predictor: "Predictor", measured_data: FormulaData, formula: TableLike | str | None, target: float
          ) -> tuple[pd.DataFrame, float | None]:
    """The base formula (long format, content %) and its measured value (None when not among the measured)."""
    values = measured_data.properties.groupby("formula_id", sort=False)[predictor.members[0].target_].mean()
    if formula is None:
        gap = np.abs(to_model_units(values.to_numpy(), predictor.transform)
                     - to_model_units(np.array([target]), predictor.transform)[0])
        formula = str(values.index[int(np.nanargmin(gap))])
        log.info("suggest: base formula %s (measured %.4g, the closest to the target %.4g)", formula,
                 values[formula], target)
    if isinstance(formula, str) and formula in set(values.index.astype(str)):
        rows = measured_data.formulas[measured_data.formulas["formula_id"].astype(str) == formula]
        return rows.assign(content=rows["content"] * 100.0), float(values[formula])
    table, label = read_table(formula, "formula")
    return table, None


def suggest(predictor: "Predictor", measured_data: FormulaData, target: float, formula: TableLike | str | None = None,
            window: float = 0.15, batch: int = 8, diversity: float = DIVERSITY, n_pool: int | None = None,
            conditions: Mapping[str, float] | None = None, seed: int = 0, **constraints) -> Suggestion:
    """The next ``batch`` formulas to make for ``target`` (see the module docstring).

    Args:
        predictor: the run's :class:`mrl.predict.Predictor` (needs calibrated intervals).
        measured_data: the lab's measured formulas (:class:`mrl.data.FormulaData` with the model's target).
        target: wanted value (property units).
        formula: base formula: a formula id of ``measured_data``, a long-format table of one formula, or None (the
            measured formula closest to the target). The constraints refer to it; a measured base anchors the
            design to its measurement.
        window: a hit lies within ``window`` of the target (0.15: 15 %).
        batch: formulas to suggest.
        diversity: length scale of the diversity penalty (share of the pool's median pairwise mixture distance;
            0: rank by ``p_hit`` alone).
        n_pool: candidates to choose from (None: :data:`POOL_FACTOR` x ``batch``).
        conditions: the model's conditions.
        seed: the design's random starts.
        constraints: :func:`mrl.design.design`'s ``fix``, ``bounds``, ``max_changes``, ``add_from``, ``fix_family``,
            ``add_from_family``, ``family_column``, ``domain_bounds``, ``step``, and search settings (``steps``,
            ``n_starts``, ``spread_weight``, ``n_measured_starts``, ``trust_region``).
    """
    if predictor.calibration is None:
        raise ValueError(f"{predictor.name}: suggest needs calibrated intervals (train with calibration_fraction > 0)")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if diversity < 0:
        raise ValueError(f"diversity must be >= 0, got {diversity}")
    base, measured = _base(predictor, measured_data, formula, target)
    pool_size = n_pool or POOL_FACTOR * batch
    result = design(predictor, base, target, conditions=conditions, measured=measured, measured_data=measured_data,
                    window=window, n_proposals=pool_size, n_pool=pool_size, min_distance=SAME_PROPOSAL, seed=seed,
                    **constraints)
    pool = result.proposals.reset_index(drop=True)
    forms = result.formulas
    first = predictor.members[0]
    vocab = first.materials_["material_id"].astype(str).tolist()
    matrix = content_matrix(forms.assign(content=forms["content"] / 100.0, material_id=forms["material_id"].astype(
        str)), list(pool["proposal"]), vocab)
    if len(pool):  # a candidate that repeats a measured formula teaches nothing new
        measured_matrix = content_matrix(measured_data.formulas.assign(material_id=measured_data.formulas[
            "material_id"].astype(str)), list(measured_data.formula_ids), vocab)
        repeat = nearest_distances(matrix, measured_matrix)[0] < SAME_PROPOSAL / 100.0
        if repeat.any():
            log.info("suggest: %d candidate(s) repeat a measured formula; dropped", int(repeat.sum()))
            pool, matrix = pool[~repeat].reset_index(drop=True), sp.csr_matrix(matrix)[np.flatnonzero(~repeat)]
    cond = np.array([[float(dict(conditions or {})[c]) for c in first.conditions_]] * len(pool)).reshape(len(pool),
                                                                                                         -1)
    mixtures = first.mixture_vectors(matrix, cond) if len(pool) else np.zeros((0, 1))
    picks, why, distances, penalties = _greedy(pool["p_hit"].to_numpy(np.float64), mixtures, batch, diversity)
    rows = pool.iloc[picks].reset_index(drop=True).rename(columns={"proposal": "formula_id"})
    rows.insert(0, "suggestion", [f"S{k + 1:02d}" for k in range(len(rows))])
    rows["batch_distance"], rows["penalty"] = distances, penalties
    rows["why"] = [f"{w}; start: {s}; {'vouched' if v else 'not vouched: ' + r}"
                   for w, s, v, r in zip(why, rows["start"], rows["vouched"], rows["reasons"])]
    table = rows[BATCH_COLUMNS]
    rename = dict(zip(table["formula_id"], table["suggestion"]))
    batch_forms = forms[forms["formula_id"].isin(rename)].assign(formula_id=lambda f: f["formula_id"].map(rename))
    batch_forms = batch_forms.sort_values("formula_id", kind="stable").reset_index(drop=True)
    p_any = float(1.0 - np.prod(1.0 - table["p_hit"].to_numpy(np.float64))) if len(table) else 0.0
    log.info("suggest: %d of %d candidates chosen; P(at least one hit) %.2f (picks taken as independent)",
             len(table), len(pool), p_any)
    return Suggestion(table, batch_forms, result, result.original_id, float(target), float(window), p_any)


def _greedy(p_hit: np.ndarray, mixtures: np.ndarray, batch: int, diversity: float
            ) -> tuple[list[int], list[str], list[float], list[float]]:
    """Greedy picks maximising ``p_hit x (1 - exp(-(d / l)^2))`` (see the module docstring); per pick its reason,
    mixture distance to the nearest earlier pick (inf for the first) and penalty factor."""
    n = len(p_hit)
    p = np.nan_to_num(p_hit, nan=0.0)
    if n == 0:
        return [], [], [], []
    diffs = np.linalg.norm(mixtures[:, None, :] - mixtures[None, :, :], axis=-1)
    median = float(np.median(diffs[np.triu_indices(n, 1)])) if n > 1 else 1.0
    scale = diversity * (median if median > 0 else 1.0)
    rank = {int(i): r + 1 for r, i in enumerate(np.argsort(-p, kind="stable"))}
    nearest = np.full(n, np.inf)
    chosen: list[int] = []
    why, distances, penalties = [], [], []
    while len(chosen) < min(batch, n):
        factor = 1.0 - np.exp(-(nearest / scale) ** 2) if scale > 0 else np.ones(n)
        score = p * factor
        score[chosen] = -np.inf
        i = int(np.argmax(score))
        text = f"P(hit) {p[i]:.2f}, #{rank[i]} of {n} candidates by P(hit)"
        if chosen:
            text += f"; diversity factor {factor[i]:.2f} (mixture distance {nearest[i]:.3g} to the batch so far)"
        chosen.append(i)
        why.append(text)
        distances.append(float(nearest[i]))
        penalties.append(float(factor[i]))
        nearest = np.minimum(nearest, diffs[i])
    return chosen, why, distances, penalties


# ------------------------------------------------------------------------------------------------ next round
def add_results(run: str | Path, formulas: TableLike, properties: TableLike, out: str | Path,
                overrides: Mapping[str, object] | None = None) -> Path:
    """A NEW run folder ``out`` trained on ``run``'s data plus measured new formulas; ``run`` is never altered.

    The grown data set is written into ``out/data/`` (``formulas.csv`` in %, ``properties.csv`` with a ``split``
    column, ``materials.csv``); the old formulas keep their split (``calib`` counts as ``train``; a new calibration
    share is held out of training), the new ones are training formulas. The run's params are kept but for ``data``,
    ``split`` (``column``), ``name``/``runs_dir`` and ``overrides`` (e.g. ``{"steps": 3000}``).

    Raises:
        FileExistsError: ``out`` exists. DataError: a new formula id already in the run's data, an unknown
        material, or a new formula without a measurement of the run's target.
    """
    old = load_run(run)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new folder (the old run {run} is never altered)")
    data, _ = old.data()  # the truth of a synthetic lab is never written into the new data
    target = data.targets[0]
    new_forms, flabel = read_table(formulas, "formulas")
    new_props, plabel = read_table(properties, "properties")
    for label, table, cols in ((flabel, new_forms, ("formula_id", "material_id", "content")),
                               (plabel, new_props, ("formula_id", target))):
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise DataError(f"{label}: missing column(s) {missing}; found {list(table.columns)}")
    new_forms = new_forms.assign(formula_id=new_forms["formula_id"].astype(str),
                                 material_id=new_forms["material_id"].astype(str))
    new_props = new_props.assign(formula_id=new_props["formula_id"].astype(str))
    clash = sorted(set(new_props["formula_id"]) & set(data.properties["formula_id"].astype(str)))
    if clash:
        raise DataError(f"{plabel}: formula id(s) {clash[:10]} are already in {run}'s data; give new ids")
    unmeasured = sorted(set(new_forms["formula_id"]) - set(new_props["formula_id"]))
    if unmeasured:
        log.info("add_results: formula(s) %s have no measurement and are left out", unmeasured[:10])
        new_forms = new_forms[~new_forms["formula_id"].isin(unmeasured)]
    unknown = sorted(set(new_forms["material_id"]) - set(data.material_ids.astype(str)))
    if unknown:
        raise DataError(f"{flabel}: material(s) {unknown[:10]} are not in {run}'s materials; add them to its "
                        f"materials table first")
    split = old.split.drop_duplicates("formula_id").set_index("formula_id")["split"].replace({"calib": "train"})
    props = data.properties.drop(columns=["split"], errors="ignore").copy()
    props["split"] = props["formula_id"].astype(str).map(split).fillna("train").to_numpy()
    new_props = new_props[["formula_id", target, *data.conditions]].assign(split="train")
    totals = new_forms.groupby("formula_id")["content"].transform("sum")
    grown_forms = pd.concat([data.formulas.assign(content=data.formulas["content"] * 100.0),
                             new_forms.assign(content=new_forms["content"] * 100.0 / totals)], ignore_index=True)
    materials = data.materials.drop(columns=["n_formulas", "median_content"], errors="ignore")
    folder = out / "data"
    write_table(grown_forms[["formula_id", "material_id", "content"]], folder / "formulas.csv")
    write_table(pd.concat([props, new_props], ignore_index=True), folder / "properties.csv")
    write_table(materials, folder / "materials.csv")
    load_formulas(folder, targets=target, conditions=data.conditions, content_unit="percent")  # check it reads
    reading = dict(layout="long", sheets={}, sheet=None, id_column="formula_id", material_columns=[],
                   ignore_columns=[], sep=None, decimal=None, content_unit="percent")  # the files written above
    values = {**old.params.to_dict(), **reading, "data": str(folder), "split": "column", "name": out.name,
              "runs_dir": str(out.parent), "target": target, **dict(overrides or {})}
    log.info("add_results: %d new formula(s) added to %d; training %s", new_props["formula_id"].nunique(),
             data.n_formulas, out)
    return run_experiment(RunParams.from_dict(values, f"add_results({run})"), progress=False)


def fit_predictor(data: FormulaData, params: RunParams, name: str = "campaign") -> Predictor:
    """An ensemble of ``params.ensemble`` members trained in memory on ``data`` less a ``calibration_fraction``
    share of its formulas (held out for the intervals and domain thresholds); no eval split, no run folder. For
    simulated campaigns that retrain every round (a lab would use :func:`add_results`)."""
    split = hold_out_calibration(np.full(data.n_samples, "train", dtype=object),
                                 data.properties["formula_id"].to_numpy(), params.calibration_fraction, params.seed)
    train = data.subset(split == "train")
    members = []
    for k in range(params.ensemble):
        est = MixtureRegressor.from_params(params, progress=False)
        est.set_params(seed=member_seed(params.seed, k))
        members.append(est.fit(train))
    return calibrated_predictor(members, data, split, name=name)
