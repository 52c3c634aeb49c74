"""Viscosity of liquids and binary liquid mixtures (Bilodeau et al. 2023, via CheMixHub; vendored in mrl): mrl
against the median, ridge, LightGBM and the published model's own predictions, on the paper's split and on an
unseen-compound split; the tables and figure of ``book/liquid_viscosity.md``.

Everything is in log10 cP. mrl's settings (embedding size, steps, pinned base) are chosen on an *inner* split of
the paper's training rows (15 % of the binary systems held out, as the paper's test split holds out whole
systems); the winner is refitted on all training rows and scored once on the test split.

    python benchmarks/liquid_viscosity.py                       # ~15 min on 2 busy cores
    python benchmarks/liquid_viscosity.py --quick               # ~2 min smoke run
    python benchmarks/liquid_viscosity.py --json /tmp/lv.json --figures book/figures
    python benchmarks/liquid_viscosity.py --render /tmp/lv.json # markdown tables from a --json file
    python benchmarks/liquid_viscosity.py --graph-only --json benchmarks/results/liquid_viscosity.json \
        --figures book/figures                                   # add the graph rows (features: graph) to a file
    python benchmarks/liquid_viscosity.py --folds 5 --json benchmarks/results/liquid_viscosity.json
                                                                 # add the 5-random-fold rows to a file (~5 min)
    python benchmarks/liquid_viscosity.py --folds 5 --fold-rows mrl_rdkit_pull mrl_graph \
        --json benchmarks/results/liquid_viscosity.json           # add rows to those folds (~10 min per fold)
    python benchmarks/liquid_viscosity.py --unseen-pull 2 --json benchmarks/results/liquid_viscosity.json
                                                                 # the pull onto g(x): screen, held-out, paper rows

Pull rows (``--unseen-pull``, :func:`run_pull_rows`): a compound never seen in training gets only g(x), its vector
from its RDKit features. The residual weight decay pulls every vector onto g(x) while training, so that g has to
carry what the residuals would otherwise absorb; its value is chosen among :data:`PULL_CANDIDATES` on an inner
held-out-compound split of seed 0's kept part, then used on the 5 held-out splits and the paper split.

Random folds (``--folds K``, :func:`row_folds`): K-fold by row over all rows of the data set (the paper's train and
test rows together; ``KFold(K, shuffle=True, random_state=FOLD_SEED)``), the protocol of mixture benchmarks such as
CheMixHub's random splits: a mixture measured at several temperatures can sit in training and test folds. Rows
(:data:`FOLD_ROWS`): ridge (the paper-split alpha), LightGBM on descriptors, mrl and mrl + RDKit features with the
settings chosen on the paper split's inner split; mean ± SD over the folds, pure and mixture rows apart. The
published model's predictions are left out (it trained on most of these rows).

Graph rows (``features: graph``, :mod:`mrl.graph`): each compound's vector is a chemprop message-passing network
over its molecular graph plus a learned residual, trained end to end; the plain mrl row's chosen settings plus
:data:`GRAPH_EXTRA` and :data:`GRAPH_STEPS` (chosen on the inner split, :data:`GRAPH_SCREEN`). The same
unseen-compound seeds as the other rows; on seed 0 the *new-compound story*: a held-out compound with pure-liquid
measurements, its vector from its structure, its nearest compounds by name, and its predicted curve against
temperature beside the measurements (``liquid_new_compound.png``).

Unseen-compound split: 10 % of the compounds of the paper's *training* rows are held out with every training row
that holds one (5 seeds); models train on the remaining training rows and are scored on the held-out rows. The
published model was trained on all of the paper's training rows, so it *saw* these rows: its numbers there are
an optimistic reference, not a comparable score.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from mrl.book import fill_marked_sections
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.io import write_json
from mrl.public_data import load_dataset
from mrl.wording import Score, against_target, capitalised, compare, format_number

#: Settings shared by every mrl variant (mole fractions, no trace dosing: no content scaling; log10 target).
MRL_BASE = dict(activation="tanh", hidden=[128, 128], content_scale="none", target_transform="none",
                inverse_conditions=["T"], batch_size=512, lr=3e-3, lr_schedule="cosine", device="cpu",
                progress=False, seed=0, unknown="zero")
#: Variants tried on the inner split: (label, settings, steps). Longer training overfits the data-poor compounds
#: (d16, 15,000 steps of batch 1,024 scored 0.073 on the inner split against 0.069 for 3,000 steps of 512).
MRL_VARIANTS: list[tuple[str, dict, int]] = [
    ("d16 pin-auto 3k", dict(embedding_dim=16, pin_origin="auto", embedding_weight_decay=1e-4), 3000),
    ("d16 pin-auto 1.5k", dict(embedding_dim=16, pin_origin="auto", embedding_weight_decay=1e-4), 1500),
    ("d16 no-pin 3k", dict(embedding_dim=16, pin_origin=None, embedding_weight_decay=1e-4), 3000),
]
#: The graph rows: the plain row's settings plus these. The whole vocabulary's graphs are encoded at every step
#: (~0.3-0.5 s a step on one shared core, whatever the batch), so batches are larger and steps fewer.
GRAPH_EXTRA = dict(features="graph", batch_size=2048, residual_weight_decay=0.1)
GRAPH_STEPS = 1000
#: Chosen on the inner split (the plain row's settings, seed 0, single runs, 2 shared CPU cores): inner MAE, pure,
#: mixtures, wall s. Written by hand from that run; the hidden size is mrl.graph.GRAPH_HIDDEN.
GRAPH_SCREEN = [
    {"variant": "message passing 32 hidden, batch 2048, 400 steps", "inner_mae": 0.0682, "inner_pure_mae": 0.1322,
     "inner_mix_mae": 0.0612, "wall_s": 127},
    {"variant": "message passing 64 hidden, batch 2048, 400 steps", "inner_mae": 0.0667, "inner_pure_mae": 0.1156,
     "inner_mix_mae": 0.0613, "wall_s": 185},
    {"variant": "message passing 64 hidden, batch 2048, 1,000 steps", "inner_mae": 0.0654, "inner_pure_mae": 0.1013,
     "inner_mix_mae": 0.0614, "wall_s": 480},
    # an inner unseen-compound split (10 % of the compounds of seed 0's training part, split seed 100): the residual
    # weight decay that pushes the vectors onto g(graph) (400 steps, hidden 64, batch 2048)
    {"variant": "inner unseen compounds: residual weight decay 0.001 (default), 400 steps", "inner_mae": 0.1953,
     "inner_pure_mae": 0.2464, "inner_mix_mae": 0.1933, "wall_s": 193},
    {"variant": "inner unseen compounds: residual weight decay 0.1, 400 steps", "inner_mae": 0.1508,
     "inner_pure_mae": 0.1200, "inner_mix_mae": 0.1520, "wall_s": 276},
]
#: ``--unseen-pull``: residual weight decays of mrl + RDKit features tried on an inner held-out-compound split (10 % of
#: the compounds of seed 0's kept part, split seed INNER_UNSEEN_SEED). A compound never seen in training gets only
#: g(x): the decay pulls every vector onto g(x) while training, so that g learns what the residuals would absorb.
PULL_CANDIDATES = (0.001, 0.03, 0.1, 0.3, 1.0)
INNER_UNSEEN_SEED = 100
#: ``--folds``: the shuffle seed of the K-fold split by row, and its rows (keys of ``_LABELS``).
FOLD_SEED = 0
FOLD_ROWS = ("ridge", "lightgbm_descriptors", "mrl", "mrl_rdkit")
#: Rows ``--fold-rows`` may add to the folds of a result file (the graph encoder; the pull row needs ``--unseen-pull``
#: first, for its decay).
EXTRA_FOLD_ROWS = ("mrl_rdkit_pull", "mrl_graph")
PENDING = {"mrl_rdkit": "mrl + RDKit features (g(x)+r)", "mrl_ensemble": "mrl ensemble"}
NAMED = ("water", "ethanol", "glycerol", "hexane", "toluene", "DMSO (dimethyl sulfoxide)")
CURVE_SYSTEMS = (("water", "ethanol"), ("water", "glycerol"))
CURVE_T = (298.15, 323.15)


# ----------------------------------------------------------------------------------------------- scoring
def scores(y: np.ndarray, pred: np.ndarray, kind: np.ndarray) -> dict[str, Any]:
    """MAE and RMSE (log10 cP) overall and for pure liquids and mixtures, with the row counts."""
    out: dict[str, Any] = {}
    for label, mask in (("", np.ones(len(y), bool)), ("pure_", kind == "pure"), ("mix_", kind == "mixture")):
        err = np.asarray(pred, np.float64)[mask] - np.asarray(y, np.float64)[mask]
        out[f"{label}mae"] = float(np.mean(np.abs(err))) if mask.any() else None
        out[f"{label}rmse"] = float(np.sqrt(np.mean(err ** 2))) if mask.any() else None
        out[f"{label}n"] = int(mask.sum())
    return out


def _kind(data: FormulaData) -> np.ndarray:
    return data.properties["kind"].to_numpy()


# ----------------------------------------------------------------------------------------------- features
def fractions(data: FormulaData) -> sp.csr_matrix:
    """Mole fractions per measurement, sparse ``(n_samples, n_materials)`` in the data's vocabulary order."""
    return sp.csr_matrix(data.content_matrix()[data.sample_rows()])


def inv_t(data: FormulaData) -> np.ndarray:
    return (1000.0 / data.properties["T"].to_numpy(np.float64))[:, None]


def ridge_features(data: FormulaData) -> sp.csr_matrix:
    """Fractions, 1000/T, fractions x 1000/T: a per-compound Arrhenius line with a log-linear mixing rule."""
    frac, it = fractions(data), inv_t(data)
    return sp.hstack([frac, sp.csr_matrix(it), frac.multiply(it)]).tocsr()


def tree_features(data: FormulaData) -> sp.csr_matrix:
    return sp.hstack([fractions(data), sp.csr_matrix(inv_t(data))]).tocsr()


def descriptor_table(data: FormulaData) -> np.ndarray:
    """RDKit descriptors of every material (rows in vocabulary order), NaN filled with the column median."""
    from mrl.descriptors import rdkit_descriptors

    table = rdkit_descriptors(data.materials["smiles"].astype(str).tolist())
    return table.fillna(table.median()).to_numpy(np.float64)


def descriptor_features(data: FormulaData, table: np.ndarray) -> np.ndarray:
    """Mole-fraction-weighted descriptors and 1000/T, ``(n_samples, n_descriptors + 1)``."""
    return np.hstack([np.asarray(fractions(data) @ table), inv_t(data)])


# ----------------------------------------------------------------------------------------------- models
def fit_ridge(train: FormulaData, test: FormulaData, alpha: float) -> np.ndarray:
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=alpha).fit(ridge_features(train), train.target_values())
    return model.predict(ridge_features(test))


def fit_lightgbm(X_train: Any, y_train: np.ndarray, X_test: Any, quick: bool, seed: int = 0) -> np.ndarray:
    from lightgbm import LGBMRegressor

    model = LGBMRegressor(n_estimators=300 if quick else 1000, learning_rate=0.05, num_leaves=63,
                          min_child_samples=5, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                          n_jobs=1, random_state=seed, verbose=-1)
    model.fit(X_train, y_train)
    return model.predict(X_test)


def make_mrl(settings: dict, steps: int | str, **extra: Any) -> MixtureRegressor:
    """An mrl model with :data:`MRL_BASE`, ``settings`` and ``extra``; ``steps`` fixed (no checks on the way) or ``"auto"``
    (:func:`mrl.train.resolve_steps`: its validation checks only)."""
    every = steps if isinstance(steps, int) else 10 ** 9
    return MixtureRegressor(steps=steps, eval_every=every, snapshot_every=every, checkpoint_every=every,
                            **{**MRL_BASE, **settings, **extra})


def has_features_option() -> bool:
    """Whether :class:`MixtureRegressor` takes ``features`` (the ``features: rdkit`` option)."""
    return "features" in inspect.signature(MixtureRegressor).parameters


def _member_prediction(settings: dict, steps: int | str, k: int, extra: dict, train: FormulaData,
                       test: FormulaData) -> np.ndarray:
    """Member ``k`` of :func:`ensemble_row` (seed :func:`mrl.ensemble.member_seed`), fitted and predicting ``test``."""
    from mrl.ensemble import member_seed

    torch.set_num_threads(1)
    return make_mrl(settings, steps, seed=member_seed(MRL_BASE.get("seed", 0), k), **extra).fit(train).predict(test)


def _unseen_auto_seed(settings: dict, seed: int, train: FormulaData, extra: dict | None = None,
                      inner: bool = False) -> dict[str, Any]:
    """Fit mrl + RDKit features with ``steps: auto`` (and ``extra``) on the held-out-compound split of ``seed``
    (:func:`unseen_compound_split`), scored on the held-out rows; ``inner``: on an inner split of that seed's kept
    part instead (:data:`INNER_UNSEEN_SEED`; the seed's held-out compounds are never read)."""
    torch.set_num_threads(1)
    keep, held, _ = unseen_compound_split(train, 0.1, seed)
    tr, ho = train.subset(keep), train.subset(held)
    if inner:
        keep, held, _ = unseen_compound_split(tr, 0.1, INNER_UNSEEN_SEED)
        tr, ho = tr.subset(keep), tr.subset(held)
    est, wall = timed(lambda: make_mrl(settings, "auto", features="rdkit", **(extra or {})).fit(tr))
    return {**scores(ho.target_values(), est.predict(ho), _kind(ho)), "wall_s": wall, "seed": seed, **(extra or {})}


def unseen_auto_rows(settings: dict, train: FormulaData, seeds: int, workers: int = 1,
                     extra: dict | None = None) -> list[dict[str, Any]]:
    """:func:`_unseen_auto_seed` for ``seeds`` seeds, ``workers`` processes side by side."""
    return _parallel(_unseen_auto_seed, [(settings, seed, train, extra) for seed in range(seeds)], workers)


def _parallel(fn: Callable[..., Any], calls: list[tuple], workers: int) -> list[Any]:
    """``fn(*args)`` for each of ``calls``, in order; ``workers`` processes side by side (1: in this process)."""
    from concurrent.futures import ProcessPoolExecutor

    if workers <= 1:
        return [fn(*args) for args in calls]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(fn, *zip(*calls)))


def unseen_pull_rows(settings: dict, train: FormulaData, seeds: int,
                     workers: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(screen, rows)``: each of :data:`PULL_CANDIDATES` (residual weight decay) on the inner held-out-compound
    split of seed 0 (:func:`_unseen_auto_seed` with ``inner``), then the lowest inner MAE on the ``seeds``
    held-out-compound splits."""
    screen = _parallel(_unseen_auto_seed, [(settings, 0, train, {"residual_weight_decay": decay}, True)
                                           for decay in PULL_CANDIDATES], workers)
    best = min(screen, key=lambda r: r["mae"])["residual_weight_decay"]
    for row in screen:
        row["chosen"] = row["residual_weight_decay"] == best
    return screen, unseen_auto_rows(settings, train, seeds, workers, {"residual_weight_decay": best})


def ensemble_row(settings: dict, steps: int | str, train: FormulaData, test: FormulaData, y_test: np.ndarray,
                 kind_test: np.ndarray, members: int = 5, workers: int = 1) -> dict[str, Any]:
    """An ensemble of ``members`` mrl models (RDKit features where the option exists; seeds as in
    :func:`mrl.ensemble.member_seed`): the prediction is the members' mean (the target is already log10). ``workers``
    processes fit the members side by side (one thread each)."""
    extra = {"features": "rdkit"} if has_features_option() else {}
    start = time.perf_counter()
    preds = _parallel(_member_prediction, [(settings, steps, k, extra, train, test) for k in range(members)], workers)
    return {**scores(y_test, np.mean(preds, axis=0), kind_test), "wall_s": time.perf_counter() - start,
            "config": f"{members} members" + (", features rdkit" if extra else "")
            + (", steps auto" if steps == "auto" else ""),
            "members": [scores(y_test, p, kind_test)["mae"] for p in preds]}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def inner_split(train: FormulaData, fraction: float = 0.15, seed: int = 0) -> tuple[FormulaData, FormulaData]:
    """Hold out ``fraction`` of the binary systems (``group``) of the training rows, as the paper's test does."""
    from sklearn.model_selection import GroupShuffleSplit

    groups = train.properties["group"].to_numpy()
    fit_idx, _ = next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(groups, groups=groups))
    mask = np.zeros(len(groups), bool)
    mask[fit_idx] = True
    return train.subset(mask), train.subset(~mask)


def unseen_compound_split(train: FormulaData, fraction: float = 0.1,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Hold out ``fraction`` of the compounds used in ``train`` with every row that holds one.

    Returns ``(keep_mask, held_mask, held_ids)`` over ``train``'s rows: no held-out compound occurs in a kept
    row's formula."""
    used = sorted(set(train.formulas["material_id"]))
    rng = np.random.default_rng(seed)
    held = sorted(rng.choice(used, size=max(1, int(round(fraction * len(used)))), replace=False).tolist())
    bad_formulas = set(train.formulas.loc[train.formulas["material_id"].isin(held), "formula_id"])
    held_rows = train.properties["formula_id"].isin(bad_formulas).to_numpy()
    return ~held_rows, held_rows, held


def row_folds(n: int, k: int, seed: int = FOLD_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` folds by row over ``n`` rows: ``(train indices, test indices)`` of each (shuffled, seeded)."""
    from sklearn.model_selection import KFold

    if not 2 <= k <= n:
        raise ValueError(f"--folds must be between 2 and the number of rows ({n}), got {k}")
    return [(tr, te) for tr, te in KFold(k, shuffle=True, random_state=seed).split(np.arange(n))]


def fold_row_fits(settings: dict, steps: int | str, alpha: float, desc: np.ndarray, quick: bool = False,
                  pull_decay: float | None = None,
                  graph_steps: int = GRAPH_STEPS) -> dict[str, Callable[[FormulaData, FormulaData], np.ndarray]]:
    """The :data:`FOLD_ROWS` as ``key -> fit(train, test) -> test predictions``; mrl rows with ``steps``; with
    ``pull_decay`` (the ``--unseen-pull`` choice) also ``mrl_rdkit_pull`` (steps auto), and ``mrl_graph`` (the graph
    rows' settings, ``graph_steps``)."""
    fits = {"ridge": lambda tr, te: fit_ridge(tr, te, alpha),
            "lightgbm_descriptors": lambda tr, te: fit_lightgbm(descriptor_features(tr, desc), tr.target_values(),
                                                                descriptor_features(te, desc), quick),
            "mrl": lambda tr, te: make_mrl(settings, steps).fit(tr).predict(te),
            "mrl_rdkit": lambda tr, te: make_mrl(settings, steps, features="rdkit").fit(tr).predict(te),
            "mrl_graph": lambda tr, te: make_mrl({**settings, **GRAPH_EXTRA}, graph_steps).fit(tr).predict(te)}
    if pull_decay is not None:
        fits["mrl_rdkit_pull"] = lambda tr, te: make_mrl(settings, "auto", features="rdkit",
                                                         residual_weight_decay=pull_decay).fit(tr).predict(te)
    return fits


def run_folds(data: FormulaData, k: int, fits: dict[str, Callable[[FormulaData, FormulaData], np.ndarray]],
              save: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Each row of ``fits`` on each of :func:`row_folds`: ``{"k", "seed", "rows": {key: [scores of each fold]}}``
    (:func:`scores` plus ``wall_s`` and ``fold``); ``save`` is called with the result after every fold."""
    out: dict[str, Any] = {"k": k, "seed": FOLD_SEED, "n_rows": data.n_samples, "rows": {key: [] for key in fits}}
    for fold, (tr_idx, _) in enumerate(row_folds(data.n_samples, k)):
        mask = np.zeros(data.n_samples, bool)
        mask[tr_idx] = True
        tr, te = data.subset(mask), data.subset(~mask)
        kind = _kind(te)
        for key, fit in fits.items():
            pred, wall = timed(lambda: fit(tr, te))
            out["rows"][key].append({**scores(te.target_values(), pred, kind), "wall_s": wall, "fold": fold})
        print(f"  fold {fold}: " + ", ".join(f"{key} {runs[-1]['mae']:.4f}" for key, runs in out["rows"].items()),
              flush=True)
        if save is not None:
            save(out)
    return out


# ----------------------------------------------------------------------------------------------- rendering
_ROW_ORDER = ("median", "ridge", "lightgbm_fractions", "lightgbm_descriptors", "mrl", "mrl_rdkit", "mrl_rdkit_auto",
              "mrl_rdkit_pull", "mrl_ensemble", "mrl_ensemble_auto", "mrl_graph", "published")
_LABELS = {
    "median": ("median of training targets", "–"),
    "ridge": ("ridge", "fractions, 1000/*T*, fractions × 1000/*T*"),
    "lightgbm_fractions": ("LightGBM", "fractions, 1000/*T*"),
    "lightgbm_descriptors": ("LightGBM", "mole-fraction-weighted RDKit descriptors, 1000/*T*"),
    "mrl": ("mrl (vectors from data alone)", "mixture vector, 1000/*T*"),
    "mrl_rdkit": ("mrl + RDKit features (g(x)+r)", "mixture vector, 1000/*T*"),
    "mrl_ensemble": ("mrl + RDKit features, ensemble of 5", "mixture vector (g(x) + r), 1000/*T*"),
    "mrl_ensemble_auto": ("mrl + RDKit features, ensemble of 5, steps auto", "mixture vector (g(x) + r), 1000/*T*"),
    "mrl_rdkit_auto": ("mrl + RDKit features (g(x)+r), steps auto", "mixture vector, 1000/*T*"),
    "mrl_rdkit_pull": ("mrl + RDKit features (g(x)+r), steps auto, vectors pulled onto g(x)",
                       "mixture vector, 1000/*T*"),
    "mrl_graph": ("mrl + molecular-graph encoder (g(graph)+r)", "mixture vector, 1000/*T*"),
    "published": ("published model (Bilodeau et al. 2023), predictions from the file", "molecular graphs, *T*"),
}


def _num(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def readable_config(config: str) -> str:
    """A variant's short label in words: ``d16 pin-auto 3k`` -> ``size 16, base pinned, 3,000 steps``."""
    def words(m: re.Match) -> str:
        return f"size {m.group(1)}, base pinned, {round(float(m.group(2)) * 1000):,} steps"

    return re.sub(r"\bd(\d+) pin-auto ([\d.]+)k\b", words, config)


def compound_label(text: str) -> str:
    """A compound for a chemist: its name where the data has one, else its short molecular formula with the SMILES
    on hover (``<abbr title="SMILES">``); SMILES that RDKit cannot read are shown as they are."""
    import html

    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem.rdMolDescriptors import CalcMolFormula
    except ImportError:
        return text
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(text) if " " not in text else None
    if mol is None:
        return text
    return f'<abbr title="{html.escape(text)}">{CalcMolFormula(mol)}</abbr>'


def render_similar(results: dict) -> str:
    """The "nearest compounds" table of the analysis: names where the data has them, else formulas (SMILES on
    hover), each with its chemical class."""
    similar = results.get("analysis", {}).get("similar", {})
    lines = ["| compound | 5 nearest (class) |", "|---|---|"]
    for name, neighbours in similar.items():
        cells = []
        for entry in neighbours:
            compound, _, klass = entry.rpartition(" (")
            cells.append(f"{compound_label(compound)} ({klass}" if compound else compound_label(entry))
        lines.append(f"| {compound_label(name)} | {'; '.join(cells)} |")
    return "\n".join(lines)


#: Goals of the graph rows (issue 26), log10 cP: (key, split, threshold, words).
#: The graph encoder's goals: (split, threshold in log10 cP, what is measured, against what).
GRAPH_GOALS = (("unseen", 0.059, "held-out-compound MAE of mrl + graph encoder (against LightGBM on descriptors' 0.059)"),
               ("unseen", 0.045, "held-out-compound MAE of mrl + graph encoder"),
               ("test", 0.0333, "paper-split MAE of mrl + graph encoder (against the published 0.0333)"))


#: The held-out-compound goals for the best mrl row (log10 cP): below LightGBM on descriptors, then at most 0.045;
#: ``{name}``: the row's name (:data:`_SENTENCE_NAMES`).
HELD_OUT_GOALS = (("unseen", 0.059, "held-out-compound MAE of {name} (against LightGBM on descriptors' 0.059)"),
                  ("unseen", 0.045, "held-out-compound MAE of {name}"))
#: Names of the rows in the page's sentences (the tables use :data:`_LABELS`).
_SENTENCE_NAMES = {"ridge": "ridge", "lightgbm_descriptors": "LightGBM on descriptors", "mrl": "mrl from data alone",
                 "mrl_rdkit": "mrl + RDKit features", "mrl_graph": "mrl + graph encoder",
                 "mrl_rdkit_auto": "mrl + RDKit features with steps: auto",
                 "mrl_rdkit_pull": "mrl + RDKit features with steps: auto and the vectors pulled onto g(x)"}
#: The row the held-out goals are judged on: the last of these in the result file (the pull row was chosen on the
#: inner split among settings of the steps-auto row).
GOAL_ROWS = ("mrl_rdkit_auto", "mrl_rdkit_pull")


def _seed_score(runs: Any, key: str = "mae") -> Score:
    return Score.of([r[key] for r in runs if r.get(key) is not None]) if isinstance(runs, list) else Score(float("nan"))


def _goal(value: Score | float, threshold: float, words: str) -> str:
    """A goal "below ``threshold``" worded by :func:`mrl.wording.against_target` (the score's SD over seeds, where it
    has one, decides only whether it is "within" the goal; the goal is met only below it)."""
    return against_target(value, threshold, words, "the goal of", unit="log10 cP", digits=3, goal=True).sentence


def render_graph(results: dict) -> str:
    """The graph rows of the page: a table (held-out compounds, paper split; pure and mixture rows apart), the
    comparisons (:func:`mrl.wording.compare`), the goals met or missed, the neighbour share and the fit time."""
    test, unseen = results.get("test", {}), results.get("unseen", {})
    graph = test.get("mrl_graph")
    runs = unseen.get("mrl_graph")
    if not graph or not isinstance(runs, list) or not runs:
        return "Graph rows pending: run `python benchmarks/liquid_viscosity.py --graph-only --json ...`."
    cols = [("mrl_graph", "mrl + graph encoder"), ("mrl_rdkit", "mrl + RDKit features"),
            ("lightgbm_descriptors", "LightGBM on descriptors"), ("published", "published")]
    n = len(runs)

    def cell(key: str, field: str, split: str) -> str:
        if split == "test":
            row = test.get(key) or {}
            return _num(row.get(field))
        sc = _seed_score(unseen.get(key), field)
        if not math.isfinite(sc.value):
            return "–"
        return f"{sc.value:.4f} ± {sc.sd:.4f}" if sc.n > 1 else f"{sc.value:.4f}"

    lines = ["| split | rows | " + " | ".join(label for _, label in cols) + " |", "|---|---|" + "--:|" * len(cols)]
    for split, label in (("unseen", f"held-out compounds (10 %, {n} seed{'s' if n > 1 else ''})"),
                         ("test", "paper split")):
        for field, rows in (("mae", "all"), ("pure_mae", "pure"), ("mix_mae", "mixtures")):
            lines.append(f"| {label} | {rows} | " + " | ".join(cell(k, field, split) for k, _ in cols) + " |")
    out = ["\n".join(lines), ""]
    g_unseen = _seed_score(runs)
    names = {**_SENTENCE_NAMES, "published": "the published model"}
    sentences = [compare(g_unseen, _seed_score(unseen.get(key)), names["mrl_graph"], names[key],
                         what="held-out-compound MAE", unit="log10 cP", digits=3).sentence
                 for key in ("lightgbm_descriptors", "mrl_rdkit") if isinstance(unseen.get(key), list)]
    for key in ("published", "mrl_rdkit"):
        if test.get(key):
            sentences.append(compare(graph["mae"], test[key]["mae"], names["mrl_graph"], names[key],
                                     what="paper-split MAE", unit="log10 cP", digits=3).sentence)
    out.append(" ".join(sentences))
    goals = [_goal(g_unseen if split == "unseen" else Score(graph["mae"]), threshold, words)
             for split, threshold, words in GRAPH_GOALS]
    out += ["", "Goals: " + " ".join(goals)]
    share = results.get("analysis_graph", {})
    if share:
        out += ["", compare(share["share_learned"], share["share_descriptors"], "the graph vectors",
                            "standardised RDKit descriptors", what="own-class share of the 10 nearest neighbours",
                            lower_is_better=False, digits=2).sentence
                + f" Chance: {share['share_chance']:.2f}; {share['n_compounds']} compounds in at least "
                  f"{share['min_formulas']} training formulas (paper split, the pinned base left out)."]
    previous = results.get("graph_previous")
    if previous:
        prev = _seed_score(previous["unseen"])
        setting = previous["setting"].replace("; stopped after 3 seeds to free the CPU", "")
        out += ["", f"With {setting}: paper split {_num(previous['test']['mae'])} (pure "
                f"{_num(previous['test']['pure_mae'])}, mixtures {_num(previous['test']['mix_mae'])}); held-out "
                f"compounds {prev.text('log10 cP', 3)} (pure {_num(_seed_score(previous['unseen'], 'pure_mae').value)}"
                f", mixtures {_num(_seed_score(previous['unseen'], 'mix_mae').value)}); own-class share "
                f"{previous['share_learned']:.2f}."]
    walls = [r["wall_s"] for r in runs if r.get("wall_s")]
    steps = results.get("settings", {}).get("graph", {}).get("steps", 0)
    out += ["", f"Fit time: {format_number(graph['wall_s'], 3)} s on the paper split ({steps:,} steps), "
            f"{format_number(float(np.mean(walls)), 3)} s per held-out "
            f"split (mean of {len(walls)}), on 2 CPU cores shared with other jobs, one thread "
            f"(`OMP_NUM_THREADS=1`); the graph encoder runs over all compounds at every step. Not timed on a GPU."]
    return "\n".join(out)


def render_new_compound(results: dict) -> str:
    """The new-compound story in words, from the ``new_compound`` entry (names where the data has them, else
    formulas with the SMILES on hover)."""
    story = results.get("new_compound")
    if not story:
        return "New-compound story pending: run the graph rows."
    neighbours = "; ".join(f"{compound_label(nb['name'])} ({nb['family']})" for nb in story["neighbours"])
    pub = compare(story["pure_mae"], story["published_pure_mae"], "mrl + graph encoder (never saw it)",
                  "the published model (trained on these rows)", what=f"MAE on its {len(story['measured'])} "
                  f"pure-liquid rows", unit="log10 cP", digits=3).sentence
    return (f"**{compound_label(story['name'])}** ({story['family']}, `{story['smiles']}`) is one of the compounds held "
            f"out on seed 0 (by a fixed rule: the named held-out compound with the most pure-liquid rows): it occurs "
            f"in none of the model's training formulas ({story['n_mixture_rows']:,} held-out mixture rows and "
            f"{len(story['measured'])} pure-liquid rows hold it). Its vector comes from its "
            f"structure: the graph encoder's part has norm {story['norm_graph']:.3f}, its never-trained residual "
            f"{story['norm_residual']:.3f}. Its 5 nearest compounds (cosine, among compounds in at least 3 training "
            f"formulas): {neighbours}. {pub}")


def render_folds(results: dict) -> str:
    """The ``--folds`` rows: a table (MAE overall, pure, mixtures; mean ± SD over the folds; fit seconds) and the
    comparison of mrl + RDKit features with LightGBM on descriptors (:func:`mrl.wording.compare`)."""
    folds = results.get("folds")
    if not folds or not folds.get("rows"):
        return "Random-fold rows pending: run `python benchmarks/liquid_viscosity.py --folds 5 --json ...`."
    rows, k = folds["rows"], folds["k"]
    lines = [f"| model | MAE (mean ± SD over {k} folds) | MAE pure | MAE mixtures | fit time per fold (s) |",
             "|---|--:|--:|--:|--:|"]
    for key in (*FOLD_ROWS, *EXTRA_FOLD_ROWS):
        runs = rows.get(key)
        if not runs:
            continue
        cells = [_seed_score(runs, field) for field in ("mae", "pure_mae", "mix_mae")]
        name = _LABELS[key][0] + (f" ({_LABELS[key][1]})" if key in ("ridge", "lightgbm_descriptors") else "")
        lines.append(f"| {name} | " + " | ".join(f"{c.value:.4f} ± {c.spread:.4f}" for c in cells)
                     + f" | {np.mean([r['wall_s'] for r in runs]):.0f} |")
    text = "\n".join(lines)
    if rows.get("mrl_rdkit") and rows.get("lightgbm_descriptors"):
        for field, what in (("mae", "random-fold MAE"), ("pure_mae", "random-fold MAE on pure liquids"),
                            ("mix_mae", "random-fold MAE on mixtures")):
            sentence = compare(_fold_score(rows["mrl_rdkit"], field), _fold_score(rows["lightgbm_descriptors"], field),
                               _SENTENCE_NAMES["mrl_rdkit"], _SENTENCE_NAMES["lightgbm_descriptors"], what=what,
                               unit="log10 cP").sentence
            text += ("\n\n" if field == "mae" else " ") + sentence
    extra = [compare(_fold_score(rows[key], "mae"), _fold_score(rows["lightgbm_descriptors"], "mae"), _LABELS[key][0],
                     _SENTENCE_NAMES["lightgbm_descriptors"], what="random-fold MAE", unit="log10 cP").sentence
             for key in EXTRA_FOLD_ROWS if rows.get(key) and rows.get("lightgbm_descriptors")]
    if extra:
        text += "\n\n" + " ".join(capitalised(sentence) for sentence in extra)
    n_pure = rows[FOLD_ROWS[0]][0]["pure_n"] if rows.get(FOLD_ROWS[0]) else 0
    text += (f"\n\n{folds['n_rows']:,} rows in {k} folds by row (seed {folds['seed']}); about {n_pure:,} pure-liquid "
             f"rows per test fold. Fit time on 2 CPU cores shared with other jobs, one thread.")
    return text


def _fold_score(runs: list[dict], key: str) -> Score:
    return Score.of([r[key] for r in runs if r.get(key) is not None], over="folds")


def render_key_result(results: dict) -> str:
    """The page's key result, worded by :func:`mrl.wording.compare` from the test rows: mrl from data alone against
    LightGBM on fractions, mrl + RDKit features against LightGBM on the same descriptors, the ensemble against the
    published model, the graph encoder (``features: graph``) against the RDKit features on the paper split and
    against LightGBM on held-out compounds (mean ± SD over seeds)."""
    test, unseen = results.get("test", {}), results.get("unseen", {})

    pairs = (("mrl", "mrl from data alone", "lightgbm_fractions", "LightGBM on mole fractions"),
             ("mrl_rdkit", "mrl + RDKit features (g(x) + r)", "lightgbm_descriptors", "LightGBM on the same descriptors"),
             ("mrl_ensemble", "an ensemble of five mrl + RDKit models", "published",
              "the published model (graph networks)"),
             ("mrl_ensemble_auto", "an ensemble of five mrl + RDKit models trained with `steps: auto`", "published",
              "the published model (graph networks)"),
             ("mrl_graph", "mrl + molecular-graph encoder (`features: graph`)", "mrl_rdkit", "mrl + RDKit features"),
             ("mrl_rdkit_pull", "mrl + RDKit features with the vectors pulled onto g(x)", "mrl_rdkit_auto",
              "mrl + RDKit features with the same training length (`steps: auto`)"))
    parts = ["On the paper's test split (MAE, log10 cP):"]
    parts += [compare(_test_score(test, a), _test_score(test, b), a_name, b_name, what="test MAE", unit="log10 cP",
                      digits=3).sentence
              for a, a_name, b, b_name in pairs if test.get(a) and test.get(b)]
    held = [compare(_seed_score(unseen[key]), _seed_score(unseen["lightgbm_descriptors"]), _SENTENCE_NAMES[key],
                    _SENTENCE_NAMES["lightgbm_descriptors"], what="held-out-compound MAE", unit="log10 cP",
                    digits=3).sentence
            for key in ("mrl_rdkit_auto", "mrl_rdkit_pull", "mrl_graph")
            if isinstance(unseen.get(key), list) and isinstance(unseen.get("lightgbm_descriptors"), list)]
    if held:
        parts.append("On compounds held out of training: " + " ".join(held))
    return " ".join(parts)


def write_book(results: dict, path: str | Path) -> Path:
    """Fill the page's marked regions: ``key-result`` (:func:`render_key_result`), ``liquid-similar``
    (:func:`render_similar`) and, where the page has their markers, ``liquid-graph`` (:func:`render_graph`),
    ``liquid-new-compound`` (:func:`render_new_compound`) and ``liquid-folds`` (:func:`render_folds`)."""
    return fill_marked_sections(path, {"key-result": render_key_result(results),
                                       "liquid-similar": render_similar(results), "liquid-graph": render_graph(results),
                                       "liquid-new-compound": render_new_compound(results),
                                       "liquid-folds": render_folds(results), "liquid-test": render_test(results),
                                       "liquid-inner": render_inner(results), "liquid-unseen": render_unseen(results),
                                       "liquid-graph-screen": render_graph_screen(results),
                                       "liquid-class-share": render_class_share(results)},
                                optional=("liquid-graph", "liquid-new-compound", "liquid-folds", "liquid-test",
                                          "liquid-inner", "liquid-unseen", "liquid-graph-screen",
                                          "liquid-class-share"))


def test_table(results: dict) -> str:
    """The paper's test split: one row per model (MAE, RMSE, pure and mixture MAE in log10 cP, wall time)."""
    lines = ["| model | features | MAE (log10 cP) | RMSE (log10 cP) | MAE pure (log10 cP) | MAE mixtures (log10 cP) "
             "| wall time (s) |", "|---|---|--:|--:|--:|--:|--:|"]
    test = results.get("test", {})
    for key in _ROW_ORDER:
        name, feats = _LABELS[key]
        row = test.get(key)
        if row is None:
            continue
        if row.get("pending"):
            lines.append(f"| {name} | {feats} | pending: {row['pending']} | | | | |")
            continue
        extra = f" ({readable_config(row['config'])})" if row.get("config") else ""
        lines.append(f"| {name}{extra} | {feats} | {_num(row['mae'])} | {_num(row['rmse'])} | "
                     f"{_num(row['pure_mae'])} | {_num(row['mix_mae'])} | "
                     f"{_num(row.get('wall_s'), 0)} |")
    return "\n".join(lines)


def unseen_table(results: dict) -> str:
    """Held-out compounds: one row per model, mean ± SD over the seeds (log10 cP) and the wall time of all seeds."""
    unseen = results.get("unseen", {})
    rows = ["| model | MAE (log10 cP), mean ± SD over seeds | RMSE (log10 cP) | MAE pure (log10 cP) | "
            "MAE mixtures (log10 cP) | wall time (s, all seeds) |", "|---|--:|--:|--:|--:|--:|"]
    for key in ("ridge", "lightgbm_descriptors", "mrl", "mrl_rdkit", "mrl_rdkit_auto", "mrl_rdkit_pull", "mrl_ensemble",
                "mrl_graph", "published"):
        runs = unseen.get(key)
        if runs is None:
            continue
        name = _LABELS[key][0] + (" (saw these rows in training)" if key == "published" else "")
        if isinstance(runs, dict) and runs.get("pending"):
            rows.append(f"| {name} | pending: {runs['pending']} | | | | |")
            continue
        frame = pd.DataFrame(runs)
        wall = float(frame["wall_s"].sum()) if frame["wall_s"].notna().any() else None
        rows.append(f"| {name} | {frame['mae'].mean():.4f} ± {frame['mae'].std(ddof=1):.4f} | "
                    f"{frame['rmse'].mean():.4f} | {frame['pure_mae'].mean():.4f} | {frame['mix_mae'].mean():.4f} | "
                    f"{_num(wall, 0)} |")
    return "\n".join(rows)


def render_markdown(results: dict) -> str:
    """The two benchmark tables (paper's test split; unseen compounds) as markdown, from ``--json`` output."""
    out = test_table(results)
    if results.get("unseen"):
        out += "\n\n" + unseen_table(results)
    return out


def _test_score(test: dict, key: str, field: str = "mae") -> Score:
    note = "the published predictions, from the file" if key == "published" else ""
    return Score(test[key][field], note=note)


def render_test(results: dict) -> str:
    """The paper-split section: its table, and every comparison the page draws from it, worded by
    :func:`mrl.wording.compare` (mrl from data alone against ridge and LightGBM, where its error lies, the RDKit
    features and the ensemble against LightGBM on descriptors and the published model)."""
    test = results.get("test", {})
    names = {k: _LABELS[k][0] for k in _LABELS}
    names["lightgbm_fractions"], names["lightgbm_descriptors"] = "LightGBM on fractions", "LightGBM on descriptors"
    names["published"] = "the published model"
    out = [test_table(results), ""]

    def vs(a: str, b: str, field: str = "mae", what: str = "test MAE") -> str:
        if not (test.get(a) and test.get(b)) or test[a].get("pending") or test[b].get("pending"):
            return ""
        return compare(_test_score(test, a, field), _test_score(test, b, field), names[a], names[b], what=what,
                       unit="log10 cP", digits=3).sentence

    bullets = [vs("mrl", "ridge"), vs("mrl", "lightgbm_fractions"), vs("mrl", "lightgbm_descriptors")]
    if test.get("mrl") and not test["mrl"].get("pending"):
        bullets.append(compare(_test_score(test, "mrl", "pure_mae"), _test_score(test, "mrl", "mix_mae"),
                               f"{names['mrl']} on pure liquids", f"{names['mrl']} on mixtures", what="test MAE",
                               unit="log10 cP", digits=3).sentence)
    bullets += [vs("mrl_rdkit", "lightgbm_descriptors"),
                vs("mrl_rdkit", "lightgbm_descriptors", "mix_mae", "test MAE on mixtures"),
                vs("mrl_ensemble", "mrl_rdkit"), vs("mrl_ensemble", "published"),
                vs("mrl_ensemble_auto", "mrl_ensemble"), vs("mrl_ensemble_auto", "published")]
    auto = test.get("mrl_ensemble_auto") or {}
    if auto.get("members") and test.get("published"):
        members = Score.of(auto["members"])
        bullets.append(compare(members, _test_score(test, "published"), "the members of the steps-auto ensemble, each alone",
                               names["published"], what="test MAE", unit="log10 cP", digits=3).sentence)
    out += [f"- {b}" for b in bullets if b]
    return "\n".join(out)


def render_inner(results: dict) -> str:
    """The inner split's screening of the plain mrl variants (the choice of the test row) as a table."""
    screen = results.get("screen") or []
    if not screen:
        return "No inner-split screening in the result file."
    chosen = results.get("settings", {}).get("mrl_variant")
    lines = ["| variant (inner split) | MAE (log10 cP) | RMSE (log10 cP) | wall time (s) |", "|---|--:|--:|--:|"]
    for row in screen:
        label = _variant_words(row["variant"]) + (" (chosen)" if row["variant"] == chosen else "")
        lines.append(f"| {label} | {_num(row['inner_mae'])} | {_num(row['inner_rmse'])} | {_num(row['wall_s'], 0)} |")
    return "\n".join(lines)


def _variant_words(variant: str) -> str:
    """``d16 pin-auto 1.5k`` / ``d16 no-pin 3k`` in words (size, base pinned or not, steps)."""
    m = re.fullmatch(r"d(\d+) (pin-auto|no-pin) ([\d.]+)k", variant)
    if not m:
        return variant
    pin = "base pinned" if m.group(2) == "pin-auto" else "no pinned base"
    return f"size {m.group(1)}, {pin}, {round(float(m.group(3)) * 1000):,} steps"


def render_unseen(results: dict) -> str:
    """The held-out-compound section: its table, the comparisons (mean ± SD over seeds), the goals on the chosen
    mrl row (:data:`GOAL_ROWS`) and the residual-weight-decay screen (:func:`render_pull_screen`)."""
    unseen = results.get("unseen", {})
    if not unseen:
        return "No held-out-compound rows in the result file."
    names = _SENTENCE_NAMES

    def vs(a: str, b: str) -> str:
        if not (isinstance(unseen.get(a), list) and isinstance(unseen.get(b), list)):
            return ""
        return compare(_seed_score(unseen[a]), _seed_score(unseen[b]), names[a], names[b],
                       what="held-out-compound MAE", unit="log10 cP", digits=3).sentence

    bullets = [vs("mrl", "ridge"), vs("mrl_rdkit", "mrl"), vs("mrl_rdkit", "lightgbm_descriptors"),
               vs("mrl_rdkit_auto", "mrl_rdkit"), vs("mrl_rdkit_auto", "lightgbm_descriptors"),
               vs("mrl_rdkit_pull", "mrl_rdkit_auto"), vs("mrl_rdkit_pull", "lightgbm_descriptors")]
    goal_row = next((key for key in reversed(GOAL_ROWS) if isinstance(unseen.get(key), list)), None)
    if goal_row:
        bullets += [_goal(_seed_score(unseen[goal_row]), threshold, words.format(name=names[goal_row]))
                    for split, threshold, words in HELD_OUT_GOALS]
    runs = unseen.get("mrl") if isinstance(unseen.get("mrl"), list) else []
    sizes = [r["n"] for r in runs if r.get("n")]
    pure = [r["pure_n"] for r in runs if r.get("pure_n")]
    head = (f"{format_number(min(sizes), 3)}-{format_number(max(sizes), 3)} held-out rows per seed "
            f"({format_number(min(pure), 3)}-{format_number(max(pure), 3)} of them pure liquids).\n\n"
            if sizes and pure else "")
    screen = render_pull_screen(results)
    return (head + unseen_table(results) + "\n\n" + "\n".join(f"- {b}" for b in bullets if b)
            + (f"\n\n{screen}" if screen else ""))


def render_pull_screen(results: dict) -> str:
    """The residual-weight-decay screen of ``--unseen-pull`` (inner held-out-compound split), or ``""``."""
    screen = results.get("pull_screen")
    if not screen:
        return ""
    lines = ["How hard the vectors are pulled onto g(x) (the residual weight decay) was chosen on an inner split: 10 % "
             f"of the compounds of seed 0's training part held out again (split seed {INNER_UNSEEN_SEED}); the "
             "seeds' held-out compounds were never read. Single runs, `steps: auto`:", "",
             "| residual weight decay | inner MAE (log10 cP) | MAE pure (log10 cP) | MAE mixtures (log10 cP) "
             "| wall time (s) |", "|--:|--:|--:|--:|--:|"]
    for row in screen:
        mark = " (chosen)" if row.get("chosen") else ""
        lines.append(f"| {row['residual_weight_decay']:g}{mark} | {_num(row['mae'])} | "
                     f"{_num(row['pure_mae'])} | {_num(row['mix_mae'])} | {_num(row['wall_s'], 0)} |")
    return "\n".join(lines)


def render_class_share(results: dict) -> str:
    """The own-class share of the learned vectors' 10 nearest neighbours against the descriptors', worded by
    :func:`mrl.wording.compare`, with chance beside them."""
    share = results.get("analysis") or {}
    if not share:
        return "No neighbour analysis in the result file."
    words = dict(what="own-class share of the 10 nearest neighbours", lower_is_better=False, digits=2)
    text = (compare(share["share_learned"], share["share_descriptors"], "the learned vectors (mrl from data alone)",
                    "standardised RDKit descriptors", **words).sentence
            + f" Chance: {share['share_chance']:.2f}; {share['n_compounds']:,} compounds in at least "
              f"{share['min_formulas']} training formulas (paper split, the pinned base left out).")
    pull = results.get("analysis_pull")
    if pull:
        text += " " + capitalised(compare(pull["share_learned"], pull["share_descriptors"],
                                       "mrl + RDKit features with the vectors pulled onto g(x)",
                                       "standardised RDKit descriptors", **words).sentence)
    return text


def render_graph_screen(results: dict) -> str:
    """The graph encoder's settings screen (inner splits only) as a table."""
    screen = results.get("graph_screen") or []
    if not screen:
        return "No graph-encoder screening in the result file."
    lines = ["| setting (inner split) | MAE (log10 cP) | MAE pure (log10 cP) | MAE mixtures (log10 cP) | wall time (s) |",
             "|---|--:|--:|--:|--:|"]
    for row in screen:
        lines.append(f"| {row['variant']} | {_num(row['inner_mae'])} | {_num(row.get('inner_pure_mae'))} | "
                     f"{_num(row.get('inner_mix_mae'))} | {_num(row.get('wall_s'), 0)} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- analysis
def neighbour_class_share(X: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each point's ``k`` nearest neighbours (cosine distance) that have its own label."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(X)
    idx = nn.kneighbors(X, return_distance=False)[:, 1:]
    return float(np.mean(labels[idx] == labels[:, None]))


def chance_share(labels: np.ndarray) -> float:
    """Expected share of same-label neighbours for neighbours drawn at random."""
    counts = pd.Series(labels).value_counts().to_numpy(np.float64)
    n = counts.sum()
    return float(np.sum(counts * (counts - 1)) / (n * (n - 1)))


def analysis(est: MixtureRegressor, train: FormulaData, data: FormulaData, desc: np.ndarray,
             min_formulas: int = 3) -> dict:
    """Chemist's questions on the final model: same-class neighbour share, similar compounds, named compounds."""
    from mrl.analysis import nearest_neighbors, vector_columns

    emb = est.embeddings()
    emb["n_formulas"] = train.materials["n_formulas"].to_numpy()
    known = emb[(emb["n_formulas"] >= min_formulas) & ~emb["pinned"]].reset_index(drop=True)
    labels = known["family"].to_numpy()
    rows = emb.index[(emb["n_formulas"] >= min_formulas) & ~emb["pinned"]].to_numpy()
    d = desc[rows]
    d = (d - d.mean(0)) / np.where(d.std(0) > 0, d.std(0), 1.0)
    out = {"n_compounds": len(known), "min_formulas": min_formulas,
           "share_learned": neighbour_class_share(known[vector_columns(known)].to_numpy(), labels),
           "share_descriptors": neighbour_class_share(d, labels), "share_chance": chance_share(labels)}
    similar = {}
    ids = dict(zip(emb["name"], emb["material_id"]))
    pool = emb[(emb["n_formulas"] >= min_formulas)].reset_index(drop=True)
    for name in NAMED:
        if name not in ids or ids[name] not in set(pool["material_id"]):
            continue
        pinned = bool(pool.loc[pool["material_id"] == ids[name], "pinned"].iloc[0])
        nb = nearest_neighbors(pool, ids[name], k=5, metric="euclidean" if pinned else "cosine")
        smiles = dict(zip(emb["material_id"], emb["smiles"]))
        similar[name] = [f"{r['name'] or smiles[r['material_id']]} ({r['family']})" for _, r in nb.iterrows()]
    out["similar"] = similar
    return out


def curves_figure(est: MixtureRegressor, data: FormulaData, path: Path) -> Path:
    """Predicted log10 viscosity of water-ethanol and water-glycerol across the mole fraction at two
    temperatures, with the measured points within 1 K of them."""
    from matplotlib.figure import Figure

    from mrl.plots import save_figure

    ids = dict(zip(data.materials["name"], data.materials["material_id"]))
    vocab = list(est.materials_["material_id"])
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    axes = fig.subplots(1, len(CURVE_SYSTEMS))
    x = np.linspace(0, 1, 101)
    props = data.properties
    for ax, (a, b) in zip(axes, CURVE_SYSTEMS):
        ia, ib = vocab.index(ids[a]), vocab.index(ids[b])
        group = "+".join(sorted([ids[a], ids[b]]))
        for temp, color in zip(CURVE_T, ("tab:blue", "tab:red")):
            rows = np.repeat(np.arange(len(x)), 2)
            cols = np.tile([ia, ib], len(x))
            vals = np.column_stack([1 - x, x]).ravel()
            mat = sp.csr_matrix((vals, (rows, cols)), shape=(len(x), len(vocab)))
            ax.plot(x, est.predict_matrix(mat, np.full((len(x), 1), temp)), color=color, label=f"mrl, {temp:.2f} K")
            for split, marker in (("train", "o"), ("test", "^")):
                sel = props[(props["group"].isin([group, ids[a], ids[b]])) & ((props["T"] - temp).abs() <= 1.0)
                            & (props["split"] == split)]
                if not len(sel):
                    continue
                frac_b = [float(dict(p.split(":") for p in f.split("+")).get(ids[b], 0.0)) if "+" in f
                          else (1.0 if f == ids[b] else 0.0) for f in sel["formula_id"]]
                ax.scatter(frac_b, sel["viscosity"], color=color, marker=marker, s=16, alpha=0.8,
                           label=f"measured ({split}), {temp:.2f} ± 1 K")
        ax.set_xlabel(f"mole fraction of {b}")
        ax.set_ylabel("log10 viscosity (cP)")
        ax.set_title(f"{a} + {b}", fontsize=10)
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=90)


# ----------------------------------------------------------------------------------------------- graph rows
def pick_new_compound(held: FormulaData, held_ids: list[str]) -> str:
    """The held-out compound with the most pure-liquid measurements, preferring one with a name in the data."""
    props = held.properties
    counts = props.loc[(props["kind"] == "pure") & props["formula_id"].isin(held_ids), "formula_id"].value_counts()
    if counts.empty:
        raise ValueError("no held-out compound has pure-liquid measurements")
    names = dict(zip(held.materials["material_id"], held.materials["name"].fillna("")))
    named = [c for c in counts.index if names.get(c)]
    return named[0] if named else str(counts.index[0])


def new_compound_story(est: MixtureRegressor, held: FormulaData, held_ids: list[str], published: pd.Series,
                       min_formulas: int = 3, k: int = 5) -> dict[str, Any]:
    """A compound the model never saw (in no training formula): its vector (g(graph) and the untrained residual),
    its ``k`` nearest compounds by cosine among those in ``min_formulas``+ training formulas, and its predicted
    log10 viscosity against temperature beside its pure-liquid measurements (and the published model's
    predictions, which saw them)."""
    from mrl.analysis import nearest_neighbors

    cid = pick_new_compound(held, held_ids)
    vocab = est.materials_["material_id"].astype(str).tolist()
    i = vocab.index(cid)
    mats = est.materials_.set_index("material_id")
    with torch.no_grad():
        g = est.module_.graph()[i].cpu().numpy()
        r = est.module_.table[i].cpu().numpy()
    emb = est.embeddings()
    pool = emb[(emb["n_formulas"] >= min_formulas) & ~emb["pinned"] | (emb["material_id"] == cid)]
    pool = pool.reset_index(drop=True)
    nb = nearest_neighbors(pool, cid, k=k, metric="cosine")
    label = dict(zip(emb["material_id"], [n or sm for n, sm in zip(emb["name"].fillna(""), emb["smiles"])]))
    props = held.properties
    pure = props[(props["kind"] == "pure") & (props["formula_id"] == cid)].sort_values("T")
    temps = np.linspace(float(pure["T"].min()) - 5.0, float(pure["T"].max()) + 5.0, 41)
    matrix = sp.csr_matrix((np.ones(len(temps)), (np.arange(len(temps)), np.full(len(temps), i))),
                           shape=(len(temps), len(vocab)))
    curve = est.predict_matrix(matrix, temps[:, None])
    at_rows = est.predict_matrix(sp.csr_matrix((np.ones(len(pure)), (np.arange(len(pure)), np.full(len(pure), i))),
                                               shape=(len(pure), len(vocab))), pure[["T"]].to_numpy(np.float64))
    mix = props[(props["kind"] == "mixture") & props["formula_id"].str.contains(f"{cid}:", regex=False)]
    return {"material_id": cid, "name": label[cid], "smiles": str(mats.loc[cid, "smiles"]),
            "family": str(mats.loc[cid, "family"]), "n_training_formulas": int(mats.loc[cid, "n_formulas"]),
            "norm_graph": float(np.linalg.norm(g)), "norm_residual": float(np.linalg.norm(r)),
            "neighbours": [{"material_id": m, "name": label[m], "family": f, "cosine_distance": float(d)}
                           for m, f, d in zip(nb["material_id"], nb["family"], nb["distance"])],
            "T": temps.tolist(), "predicted": curve.tolist(),
            "measured_T": pure["T"].tolist(), "measured": pure["viscosity"].tolist(),
            "published": published.loc[pure.index].tolist(),
            "pure_mae": float(np.mean(np.abs(at_rows - pure["viscosity"].to_numpy()))),
            "published_pure_mae": float(np.mean(np.abs(published.loc[pure.index].to_numpy()
                                                       - pure["viscosity"].to_numpy()))),
            "n_mixture_rows": int(len(mix))}


def new_compound_figure(story: dict, path: Path) -> Path:
    """The new-compound story as a figure, from its result entry: predicted log10 viscosity against temperature,
    the measurements and the published model's predictions, and the compound's nearest compounds by name."""
    from matplotlib.figure import Figure

    from mrl.plots import save_figure

    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax, text = fig.subplots(1, 2, width_ratios=[3, 2])
    ax.plot(story["T"], story["predicted"], color="tab:blue", label="mrl + graph encoder (never saw it)")
    ax.scatter(story["measured_T"], story["measured"], color="black", s=18, label="measured")
    ax.scatter(story["measured_T"], story["published"], color="tab:orange", marker="x", s=18,
               label="published model (trained on these rows)")
    ax.set_xlabel("T (K)")
    ax.set_ylabel("log10 viscosity (cP)")
    ax.set_title(f"{story['name']} ({story['family']}), pure liquid", fontsize=10)
    ax.legend(fontsize=7)
    text.axis("off")
    lines = ["nearest compounds", "(cosine on the vectors):", ""]
    lines += [f"{n['name'][:28]} ({n['family']})" for n in story["neighbours"]]
    text.text(0.0, 1.0, "\n".join(lines), va="top", fontsize=8, family="monospace")
    return save_figure(fig, path, dpi=90)


def run_pull_rows(results: dict, data: FormulaData, train: FormulaData, test: FormulaData, desc: np.ndarray,
                  settings: dict, seeds: int, workers: int, save: Callable[[], None]) -> None:
    """The rows of mrl + RDKit features with the vectors pulled onto g(x) (``--unseen-pull``): the screen and the
    held-out-compound seeds (:func:`unseen_pull_rows`), then on the paper split mrl + RDKit with ``steps: auto``
    without the pull (the reference) and with the chosen decay, with the neighbour analysis of that model. Parts already in ``results`` are kept (a second call finishes an interrupted one);
    ``save`` is called after each part."""
    if not results.get("pull_screen") or not isinstance(results.get("unseen", {}).get("mrl_rdkit_pull"), list):
        results["pull_screen"], results.setdefault("unseen", {})["mrl_rdkit_pull"] = unseen_pull_rows(
            settings, train, seeds, workers)
        save()
    decay = next(r["residual_weight_decay"] for r in results["pull_screen"] if r.get("chosen"))
    print(f"## vectors pulled onto g(x): residual weight decay {decay:g} (inner split)", flush=True)
    if "mrl_rdkit_auto" not in results.setdefault("test", {}):  # the reference without the pull, same training length
        est, wall = timed(lambda: make_mrl(settings, "auto", features="rdkit").fit(train))
        results["test"]["mrl_rdkit_auto"] = {**scores(test.target_values(), est.predict(test), _kind(test)),
                                             "wall_s": wall}
        print(f"  paper split without the pull: MAE {results['test']['mrl_rdkit_auto']['mae']:.4f} ({wall:.0f} s)",
              flush=True)
        save()
    if "mrl_rdkit_pull" not in results["test"]:
        est, wall = timed(lambda: make_mrl(settings, "auto", features="rdkit", residual_weight_decay=decay).fit(train))
        results["test"]["mrl_rdkit_pull"] = {**scores(test.target_values(), est.predict(test), _kind(test)),
                                             "wall_s": wall, "config": f"residual weight decay {decay:g}"}
        results["analysis_pull"] = analysis(est, train, data, desc)
        print(f"  paper split: MAE {results['test']['mrl_rdkit_pull']['mae']:.4f} ({wall:.0f} s); own-class share "
              f"of 10 nearest {results['analysis_pull']['share_learned']:.2f}", flush=True)
        save()


def run_graph_rows(results: dict, data: FormulaData, train: FormulaData, test: FormulaData, desc: np.ndarray,
                   settings: dict, steps: int, seeds: int, save: Callable[[], None],
                   figures: str | None = None) -> None:
    """The graph rows (``features: graph``): paper split, unseen compounds over ``seeds`` (the story on seed 0),
    the neighbour analysis of the paper-split model; ``save`` is called after each fit (partial results kept)."""
    graph_settings = {**settings, **GRAPH_EXTRA}
    config = f"message passing over molecular graphs, batch {GRAPH_EXTRA['batch_size']}, {steps:,} steps"
    results["graph_screen"] = GRAPH_SCREEN
    results.setdefault("settings", {})["graph"] = {**GRAPH_EXTRA, "steps": steps, "from": "the plain row's settings"}
    print(f"\n## mrl + molecular-graph encoder ({config})", flush=True)
    est, wall = timed(lambda: make_mrl(graph_settings, steps).fit(train))
    results.setdefault("test", {})["mrl_graph"] = {**scores(test.target_values(), est.predict(test), _kind(test)),
                                                   "wall_s": wall, "config": config}
    print(f"  paper split: MAE {results['test']['mrl_graph']['mae']:.4f} ({wall:.0f} s)", flush=True)
    results["analysis_graph"] = analysis(est, train, data, desc)
    print(f"  own-class share of 10 nearest: graph vectors {results['analysis_graph']['share_learned']:.2f}, "
          f"descriptors {results['analysis_graph']['share_descriptors']:.2f}", flush=True)
    save()
    runs: list[dict] = []
    results.setdefault("unseen", {})["mrl_graph"] = runs
    for seed in range(seeds):
        keep, held, ids = unseen_compound_split(train, 0.1, seed)
        tr, ho = train.subset(keep), train.subset(held)
        est, wall = timed(lambda: make_mrl(graph_settings, steps).fit(tr))
        runs.append({**scores(ho.target_values(), est.predict(ho), _kind(ho)), "wall_s": wall, "seed": seed})
        print(f"  unseen seed {seed}: MAE {runs[-1]['mae']:.4f} (pure {runs[-1]['pure_mae']:.4f}, mixtures "
              f"{runs[-1]['mix_mae']:.4f}; {wall:.0f} s)", flush=True)
        if seed == 0:
            results["new_compound"] = new_compound_story(est, ho, ids, ho.properties["published"])
            if figures:
                print(f"  figure: {new_compound_figure(results['new_compound'], Path(figures) / 'liquid_new_compound.png')}")
        save()


# ----------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write all results here (render with --render)")
    parser.add_argument("--render", metavar="JSON", help="only print the markdown tables of a --json file")
    parser.add_argument("--book", default=None, help="with --render: fill the page's marked regions (the nearest "
                                                     "compounds of book/liquid_viscosity.md)")
    parser.add_argument("--quick", action="store_true", help="~2-min smoke run (few steps, 2 seeds)")
    parser.add_argument("--steps", type=int, default=None,
                        help="override the steps of every mrl variant (default: each variant's own)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the unseen-compound split")
    parser.add_argument("--skip-lightgbm", action="store_true", help="skip both LightGBM rows (slowest baselines)")
    parser.add_argument("--skip-unseen", action="store_true", help="skip the unseen-compound split")
    parser.add_argument("--skip-analysis", action="store_true", help="skip the neighbour/similarity analysis")
    parser.add_argument("--figures", default=None, help="folder for liquid_curves.png (e.g. book/figures)")
    parser.add_argument("--graph", action="store_true", help="also the graph rows (features: graph; slow on CPU)")
    parser.add_argument("--graph-only", action="store_true",
                        help="only the graph rows, added to the --json file's results (other keys kept)")
    parser.add_argument("--graph-steps", type=int, default=GRAPH_STEPS, help="steps of the graph rows")
    parser.add_argument("--ensemble-auto", type=int, default=None, metavar="WORKERS",
                        help="only the ensemble of five mrl + RDKit models with steps: auto on the paper split "
                             "(WORKERS processes), added to the --json file's results")
    parser.add_argument("--unseen-auto", type=int, default=None, metavar="WORKERS",
                        help="only mrl + RDKit features with steps: auto on the held-out-compound splits (--seeds "
                             "seeds, WORKERS processes), added to the --json file's results")
    parser.add_argument("--unseen-pull", type=int, default=None, metavar="WORKERS",
                        help="only the residual-weight-decay screen (PULL_CANDIDATES, inner held-out-compound split) "
                             "and the chosen decay on the held-out-compound splits (--seeds seeds, WORKERS "
                             "processes), added to the --json file's results")
    parser.add_argument("--fold-rows", nargs="+", default=None, choices=(*FOLD_ROWS, *EXTRA_FOLD_ROWS),
                        help="with --folds: only these rows, added to the file's folds (default: FOLD_ROWS)")
    parser.add_argument("--folds", type=int, default=None, metavar="K",
                        help="only the K-fold-by-row rows (FOLD_ROWS), added to the --json file's results")
    return parser.parse_args()


def print_table(title: str, table: dict) -> None:
    print(f"\n## {title} (log10 cP)")
    frame = pd.DataFrame([{"model": k, **{c: v.get(c) for c in ("mae", "rmse", "pure_mae", "mix_mae", "n", "wall_s")}}
                          if not v.get("pending") else {"model": k, "mae": f"pending: {v['pending']}"}
                          for k, v in table.items()])
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def main() -> None:
    args = parse_args()
    if args.render:
        results = json.loads(Path(args.render).read_text())
        if args.book:
            print(f"wrote {write_book(results, args.book)}")
        else:
            print(render_markdown(results))
        return
    torch.set_num_threads(1)
    quick = args.quick
    variants = [(label, settings, args.steps or (300 if quick else n)) for label, settings, n in MRL_VARIANTS]
    variants = variants[:2] if quick else variants
    seeds = 2 if quick else args.seeds
    total = time.perf_counter()

    data = load_dataset("liquid_viscosity")
    split = data.properties["split"].to_numpy()
    train, test = data.subset(split == "train"), data.subset(split == "test")
    if args.folds:
        if not args.json:
            raise SystemExit("--folds adds to a --json file's results; give --json")
        path = Path(args.json)
        results = json.loads(path.read_text()) if path.is_file() else {}
        settings = results.get("settings", {})
        keys = args.fold_rows or list(FOLD_ROWS)
        chosen = [r["residual_weight_decay"] for r in results.get("pull_screen", []) if r.get("chosen")]
        if "mrl_rdkit_pull" in keys and not chosen:
            raise SystemExit("--fold-rows mrl_rdkit_pull needs the decay chosen by --unseen-pull in the --json file")
        fits = fold_row_fits(settings.get("mrl") or MRL_VARIANTS[0][1], args.steps or settings.get("steps", 3000),
                             settings.get("ridge_alpha", 1.0), descriptor_table(data), quick,
                             chosen[0] if chosen else None, args.graph_steps)
        fits = {key: fits[key] for key in keys}
        print(f"## {args.folds} folds by row over {data.n_samples} rows; rows {', '.join(keys)}; mrl "
              f"{settings.get('mrl_variant')}")
        previous = results.get("folds") or {}
        kept = previous.get("rows", {}) if (previous.get("k"), previous.get("seed")) == (args.folds, FOLD_SEED) else {}

        def save(folds: dict) -> None:  # rows not run this time are kept from the file (same folds)
            results["folds"] = {**folds, "rows": {**kept, **folds["rows"]}}
            write_json(results, path)
        run_folds(data, args.folds, fits, save)
        print("\n" + render_folds(results))
        print(f"wrote {path}; fold rows {time.perf_counter() - total:.0f} s")
        return
    if args.ensemble_auto or args.graph_only or args.unseen_auto or args.unseen_pull:
        if not args.json:
            raise SystemExit("--ensemble-auto, --unseen-auto, --unseen-pull and --graph-only add to a --json file's "
                             "results; give --json")
        path = Path(args.json)
        results = json.loads(path.read_text()) if path.is_file() else {}
        chosen = results.get("settings", {}).get("mrl") or MRL_VARIANTS[0][1]
        if args.ensemble_auto:
            results.setdefault("test", {})["mrl_ensemble_auto"] = ensemble_row(
                chosen, "auto", train, test, test.target_values(), _kind(test), workers=args.ensemble_auto)
            write_json(results, path)
        elif args.unseen_auto:
            results.setdefault("unseen", {})["mrl_rdkit_auto"] = unseen_auto_rows(chosen, train, seeds,
                                                                                 args.unseen_auto)
            write_json(results, path)
        elif args.unseen_pull:
            run_pull_rows(results, data, train, test, descriptor_table(data), chosen, seeds, args.unseen_pull,
                          lambda: write_json(results, path))
        else:
            run_graph_rows(results, data, train, test, descriptor_table(data), chosen, args.graph_steps, seeds,
                           lambda: write_json(results, path), args.figures)
        print("\n" + render_markdown(results))
        what = "ensemble with steps auto" if args.ensemble_auto else "held-out compounds with steps auto" \
            if args.unseen_auto else "residual-weight-decay screen and held-out rows" if args.unseen_pull \
            else "graph rows"
        print(f"wrote {path}; {what} "
              f"{time.perf_counter() - total:.0f} s")
        return
    y_train, y_test, kind_test = train.target_values(), test.target_values(), _kind(test)
    print(f"liquid_viscosity: {data.n_samples} rows ({len(train.properties)} train / {len(test.properties)} test), "
          f"{data.n_formulas} formulas, {data.n_materials} compounds, "
          f"{data.properties['group'].nunique()} systems")
    results: dict[str, Any] = {"test": {}, "unseen": {}, "settings": {}}
    res = results["test"]

    # ---- baselines on the paper's split
    pred, wall = timed(lambda: np.full(len(y_test), np.median(y_train)))
    res["median"] = {**scores(y_test, pred, kind_test), "wall_s": wall}
    inner_fit, inner_val = inner_split(train)
    alphas = (1e-3, 1e-2, 1e-1, 1.0)
    inner_ridge = {a: scores(inner_val.target_values(), fit_ridge(inner_fit, inner_val, a), _kind(inner_val))["mae"]
                   for a in alphas}
    alpha = min(inner_ridge, key=inner_ridge.get)
    print(f"ridge alpha on the inner split: {alpha} (inner MAE {inner_ridge})")
    pred, wall = timed(lambda: fit_ridge(train, test, alpha))
    res["ridge"] = {**scores(y_test, pred, kind_test), "wall_s": wall, "config": f"alpha {alpha}"}
    desc = descriptor_table(data)
    if not args.skip_lightgbm:
        pred, wall = timed(lambda: fit_lightgbm(tree_features(train), y_train, tree_features(test), quick))
        res["lightgbm_fractions"] = {**scores(y_test, pred, kind_test), "wall_s": wall}
        pred, wall = timed(lambda: fit_lightgbm(descriptor_features(train, desc), y_train,
                                                descriptor_features(test, desc), quick))
        res["lightgbm_descriptors"] = {**scores(y_test, pred, kind_test), "wall_s": wall}
    print_table("baselines, paper's test split", res)

    # ---- mrl: choose on the inner split, refit on all training rows, score test once
    print(f"\n## mrl variants on the inner split ({len(inner_fit.properties)} fit / {len(inner_val.properties)} "
          "validation rows)")
    screen = []
    for label, settings, steps in variants:
        est, wall = timed(lambda: make_mrl(settings, steps).fit(inner_fit))
        sc = scores(inner_val.target_values(), est.predict(inner_val), _kind(inner_val))
        screen.append({"variant": label, "steps": steps, "inner_mae": sc["mae"], "inner_rmse": sc["rmse"],
                       "wall_s": wall})
        print(f"  {label:24s} inner MAE {sc['mae']:.4f} RMSE {sc['rmse']:.4f} ({wall:.0f} s)", flush=True)
    results["screen"] = screen
    best = min(screen, key=lambda r: r["inner_mae"])
    best_settings, final_steps = {v[0]: v[1] for v in variants}[best["variant"]], best["steps"]
    results["settings"] = {"mrl_variant": best["variant"], "mrl": best_settings, "steps": final_steps,
                           "base": MRL_BASE, "ridge_alpha": alpha}
    final, wall = timed(lambda: make_mrl(best_settings, final_steps).fit(train))
    res["mrl"] = {**scores(y_test, final.predict(test), kind_test), "wall_s": wall,
                  "config": f"{best['variant']}, chosen on the inner split"}
    if has_features_option():
        est, wall = timed(lambda: make_mrl(best_settings, final_steps, features="rdkit").fit(train))
        res["mrl_rdkit"] = {**scores(y_test, est.predict(test), kind_test), "wall_s": wall,
                            "config": best["variant"]}
    else:
        res["mrl_rdkit"] = {"pending": "needs features=rdkit"}
    res["mrl_ensemble"] = ensemble_row(best_settings, final_steps, train, test, y_test, kind_test)
    res["published"] = {**scores(y_test, test.properties["published"].to_numpy(), kind_test), "wall_s": None}
    print_table("paper's test split", res)

    # ---- unseen compounds
    if not args.skip_unseen:
        print(f"\n## unseen compounds: 10 % of the training compounds held out with their rows, {seeds} seeds")
        uns: dict[str, list] = {"ridge": [], "lightgbm_descriptors": [], "mrl": [], "published": []}
        for seed in range(seeds):
            keep, held, ids = unseen_compound_split(train, 0.1, seed)
            tr, ho = train.subset(keep), train.subset(held)
            kind = _kind(ho)
            y_ho = ho.target_values()
            pred, wall = timed(lambda: fit_ridge(tr, ho, alpha))
            uns["ridge"].append({**scores(y_ho, pred, kind), "wall_s": wall, "seed": seed})
            if not args.skip_lightgbm:
                pred, wall = timed(lambda: fit_lightgbm(descriptor_features(tr, desc), tr.target_values(),
                                                        descriptor_features(ho, desc), quick, seed))
                uns["lightgbm_descriptors"].append({**scores(y_ho, pred, kind), "wall_s": wall, "seed": seed})
            est, wall = timed(lambda: make_mrl(best_settings, final_steps).fit(tr))
            uns["mrl"].append({**scores(y_ho, est.predict(ho), kind), "wall_s": wall, "seed": seed})
            if has_features_option():
                est, wall = timed(lambda: make_mrl(best_settings, final_steps, features="rdkit").fit(tr))
                uns.setdefault("mrl_rdkit", []).append({**scores(y_ho, est.predict(ho), kind), "wall_s": wall,
                                                        "seed": seed})
            uns["published"].append({**scores(y_ho, ho.properties["published"].to_numpy(), kind), "wall_s": None,
                                     "seed": seed})
            print(f"  seed {seed}: {len(ids)} compounds, {len(y_ho)} held rows ({int((kind == 'pure').sum())} pure); "
                  + ", ".join(f"{k} {v[-1]['mae']:.4f}" for k, v in uns.items() if v), flush=True)
        results["unseen"] = {k: v for k, v in uns.items() if v}
        results["unseen"].setdefault("mrl_rdkit", {"pending": "needs features=rdkit"})

    if not args.skip_analysis:
        print("\n## what the learned vectors know (final model, compounds in >= 3 training formulas)")
        results["analysis"] = analysis(final, train, data, desc)
        print(json.dumps(results["analysis"], indent=1))
    if args.figures:
        path = curves_figure(final, data, Path(args.figures) / "liquid_curves.png")
        print(f"  figure: {path}")
    if args.graph:
        run_graph_rows(results, data, train, test, desc, best_settings, args.graph_steps, seeds,
                       lambda: write_json(results, args.json) if args.json else None, args.figures)
    results["total_wall_s"] = time.perf_counter() - total
    print("\n" + render_markdown(results))
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}")
    print(f"\ntotal wall time {results['total_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
