"""Melt viscosity (gpvisc 0.3.5 data, Le Losq, Ferraina et al. 2024, arXiv 2409.20235): mrl against classical
baselines and the published Gaussian-process models, on the paper's split, plus a grouped cross-validation and the
analysis figures of ``book/melt_viscosity.md``.

Everything is in log10 Pa s. The mrl variants (head ``direct``/``vft`` x embedding size) are trained on the
paper's *train* split; the winner is chosen on the *valid* split only (``eval`` in mrl) and then retrained for
``--final-steps``; the *test* split is only reported.

    python benchmarks/melt_viscosity.py                    # ~22 min on 2 cores (one thread)
    python benchmarks/melt_viscosity.py --quick            # ~2 min smoke run (few steps, fewer variants)
    python benchmarks/melt_viscosity.py --json runs/melt_benchmark.json --figures book/figures
    python benchmarks/melt_viscosity.py --rows plain,features,ensemble \
        --rows-json runs/melt_rows.json                    # only some rows (here: ~10 min)
    python benchmarks/melt_viscosity.py --rows screen --json benchmarks/results/melt_viscosity.json \
        --models runs/melt_models --figures book/figures   # the screening run, its analysis and the figures
    python benchmarks/melt_viscosity.py --analysis-from runs/melt_models \
        --json benchmarks/results/melt_viscosity.json --figures book/figures  # redo analysis + figures, no training
    python benchmarks/melt_viscosity.py --render --book book/melt_viscosity.md
        # the book page's numbers, from the committed result files (RESULT_FILES; their shared rows must agree)

``--rows`` picks row groups (:data:`ROW_GROUPS`; default all): ``screen`` is the screening run above (baselines on
fractions, head x dim screening, the retrained winner, the other head, the grouped CV, the analysis and figures);
``feature_baselines`` are ridge / random forest / LightGBM on fractions plus the mole-fraction-weighted oxide
features; ``plain``, ``features``, ``early``, ``best_checkpoint``, ``ensemble``, ``features_ensemble`` and
``together`` are the chosen mrl model (the screening winner, or :data:`CHOSEN` without ``screen``) alone, with oxide
features (``features="magpie"``, each oxide described by its formula: :func:`mrl.features.compound_features`), with
stopping on an inner validation part of *train* (:data:`EARLY`: patience 2,000 steps; :data:`BEST_CHECKPOINT`:
the best state over all steps), as an ensemble of ``--members`` seeds (mean prediction; the JSON also holds each
member's scores), with features as an ensemble, and with all three.

The data come from the gpvisc wheel (GPL-3.0); see ``mrl.public_data``.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from mrl.baselines import condition_features, fit_predict, fraction_matrix, regression_scores
from mrl.book import fill_from_results
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.io import write_json
from mrl.public_data import load_dataset, published_gp_metrics
from mrl.wording import Score, against_target, compare, format_number

#: Shared settings of every mrl variant (tuned on the valid split; see book/melt_viscosity.md).
MRL_BASE = dict(activation="tanh", hidden=[128, 128], content_scale="none", pin_origin=None,
                target_transform="none", inverse_conditions=["T"], batch_size=1024, lr=1e-2,
                embedding_weight_decay=1e-4, lr_schedule="cosine", device="cpu", progress=False, seed=0)
#: The head and embedding size chosen on the valid split by the screening (used when ``screen`` is not run).
CHOSEN = ("direct", 16)
#: Oxide features of the ``features`` rows: the magpie element table, each oxide described from its formula.
FEATURES = "magpie"
#: Early stopping of the ``early`` row: 10 % of the *train* compositions held out (drawn with the model's seed),
#: their loss checked every 200 steps, stop after 10 checks (2,000 steps) without improvement, best state kept.
EARLY = {"early_stopping": True, "validation_fraction": 0.1, "patience": 10, "eval_every": 200,
         "validation_metric": "loss"}  # the criterion the committed rows were run with (the default is now mae)
#: The ``best_checkpoint`` row: the same held-out part and checks, but never stopped before the last step (patience
#: 60 checks = the whole 12,000 steps): the state with the lowest held-out loss is kept.
BEST_CHECKPOINT = {**EARLY, "patience": 60}
#: Members of the ensemble rows (seeds ``mrl.ensemble.member_seed(0, k)``; member 0 = the single model).
MEMBERS = 5
#: ``--rows`` groups (see the module docstring).
ROW_GROUPS = ("screen", "feature_baselines", "plain", "features", "early", "best_checkpoint", "ensemble",
              "features_ensemble", "together")
#: The mrl rows: group -> (row key, overrides of MRL_BASE, ensemble?). ``together`` (features + stopping +
#: ensemble) takes the stopping rule of ``early`` / ``best_checkpoint`` with the lower *valid* RMSE when both ran in
#: the same call, else ``BEST_CHECKPOINT`` (the rule chosen on valid; see book/melt_viscosity.md).
MRL_ROWS = {"plain": ("mrl", {}, False), "features": ("mrl_features", {"features": FEATURES}, False),
            "early": ("mrl_early", EARLY, False), "best_checkpoint": ("mrl_best_checkpoint", BEST_CHECKPOINT, False),
            "ensemble": ("mrl_ensemble", {}, True),
            "features_ensemble": ("mrl_features_ensemble", {"features": FEATURES}, True),
            "together": ("mrl_features_stopping_ensemble", {"features": FEATURES, **BEST_CHECKPOINT}, True)}
FORMERS = ("SiO2", "Al2O3", "P2O5", "TiO2")
MODIFIERS = ("Na2O", "K2O", "CaO", "MgO", "FeO", "MnO")
#: Well-known melts for the viscosity-temperature figure: target mole fractions.
REFERENCE_MELTS = {
    "SiO2 (silica)": {"SiO2": 1.0},
    "albite NaAlSi3O8": {"SiO2": 0.75, "Al2O3": 0.125, "Na2O": 0.125},
    "diopside CaMgSi2O6": {"SiO2": 0.5, "MgO": 0.25, "CaO": 0.25},
    "basalt": {"SiO2": 0.532, "TiO2": 0.021, "Al2O3": 0.093, "FeO": 0.083, "MnO": 0.002, "Na2O": 0.028,
               "K2O": 0.005, "MgO": 0.106, "CaO": 0.129, "P2O5": 0.002},
}


# ----------------------------------------------------------------------------------------------- features
def baseline_features(data: FormulaData, kind: str) -> np.ndarray:
    """``trees``: fractions, 1000/T, P; ``ridge``: those plus fractions x 1000/T."""
    frac = fraction_matrix(data)
    cond = condition_features(data, inverse_T=True)  # T, P, 1000/T
    inv_t, p = cond[:, -1:], cond[:, list(data.conditions).index("P")][:, None]
    X = np.hstack([frac, inv_t, p])
    if kind == "ridge":
        X = np.hstack([X, frac * inv_t])
    return X


BASELINES = {"dummy": ("trees", {}), "ridge": ("ridge", {}),
             "random_forest": ("trees", {"n_jobs": 1, "n_estimators": 200, "min_samples_leaf": 2}),
             "lightgbm": ("trees", {"n_jobs": 1})}


def run_baseline(name: str, train: FormulaData, test: FormulaData, seed: int = 0,
                 quick: bool = False) -> tuple[np.ndarray, float]:
    kind, params = BASELINES[name]
    if quick and name in ("random_forest", "lightgbm"):
        params = {**params, "n_estimators": 50 if name == "random_forest" else 300}
    start = time.perf_counter()
    pred = fit_predict(name, baseline_features(train, kind), train.target_values(), baseline_features(test, kind),
                       seed=seed, **params)
    return pred, time.perf_counter() - start


# ----------------------------------------------------------------------------------------------- mrl
def make_mrl(head: str, dim: int, steps: int, **overrides) -> MixtureRegressor:
    params = {**MRL_BASE, **overrides}
    every = max(steps, 1)
    eval_every = params.pop("eval_every", every)
    return MixtureRegressor(embedding_dim=dim, head=head, steps=steps, eval_every=eval_every, snapshot_every=every,
                            checkpoint_every=every, **params)


def fit_mrl(head: str, dim: int, steps: int, train: FormulaData, **overrides) -> tuple[MixtureRegressor, float]:
    start = time.perf_counter()
    est = make_mrl(head, dim, steps, **overrides).fit(train)
    return est, time.perf_counter() - start


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p)) ** 2)))


# ----------------------------------------------------------------------------------------------- issue-18 rows
def oxide_feature_matrix(data: FormulaData, kind: str = FEATURES) -> np.ndarray:
    """Per measurement: the mole-fraction-weighted mean of the oxides' raw feature rows
    (:func:`mrl.features.material_features`; columns without a value dropped, gaps filled with the column mean
    over the oxides), ``(n_samples, n_features)``."""
    from mrl.features import material_features

    raw = material_features(data.materials, kind).reindex(list(data.material_ids))
    raw = raw.fillna(raw.mean()).fillna(0.0)
    return fraction_matrix(data) @ raw.to_numpy(np.float64)


def feature_baseline_features(data: FormulaData, kind: str) -> np.ndarray:
    """:func:`baseline_features` plus the mole-fraction-weighted oxide features (and, for ``ridge``, those x
    1000/T)."""
    X = baseline_features(data, kind)
    F = oxide_feature_matrix(data)
    if kind == "ridge":
        inv_t = condition_features(data, inverse_T=True)[:, -1:]
        return np.hstack([X, F, F * inv_t])
    return np.hstack([X, F])


def run_feature_baselines(train: FormulaData, valid: FormulaData, test: FormulaData, results: dict,
                          rows_json: str | None, quick: bool = False) -> None:
    """Ridge / random forest / LightGBM on fractions + mole-fraction-weighted oxide features (fit on train)."""
    print(f"\n## baselines on fractions + mole-fraction-weighted oxide features ({FEATURES}, from the formulas)")
    for name in ("ridge", "random_forest", "lightgbm"):
        kind, params = BASELINES[name]
        if quick and name in ("random_forest", "lightgbm"):
            params = {**params, "n_estimators": 50 if name == "random_forest" else 300}
        start = time.perf_counter()
        Xtr = feature_baseline_features(train, kind)
        preds = [fit_predict(name, Xtr, train.target_values(), feature_baseline_features(part, kind), seed=0,
                             **params) for part in (valid, test)]
        wall = time.perf_counter() - start
        key = f"{name}_oxide_features"
        results[key] = {**regression_scores(test.target_values(), preds[1]), "wall_s": wall,
                        "valid_rmse": rmse(valid.target_values(), preds[0]), "n_features": int(Xtr.shape[1])}
        print(f"  {name:14s} test rmse {results[key]['rmse']:.3f} valid {results[key]['valid_rmse']:.3f} "
              f"({wall:.1f} s, {Xtr.shape[1]} columns)", flush=True)
        save_rows(results, rows_json)


def _fit_predict_member(head: str, dim: int, steps: int, overrides: dict, seed: int, train: FormulaData,
                        parts: Sequence[FormulaData]) -> tuple[list[np.ndarray], float, int | None]:
    """Fit one mrl model (a worker-process entry point) and predict ``parts``; returns the predictions, the fit's
    wall time and the early-stopping step (None without stopping)."""
    torch.set_num_threads(1)
    est, wall = fit_mrl(head, dim, steps, train, **{**overrides, "seed": seed})
    return [est.predict(p) for p in parts], wall, getattr(est, "best_step_", None)


def run_mrl_rows(groups: Sequence[str], head: str, dim: int, steps: int, train: FormulaData, valid: FormulaData,
                 test: FormulaData, results: dict, rows_json: str | None, members: int = MEMBERS, jobs: int = 1,
                 known: dict | None = None) -> None:
    """The mrl rows of :data:`MRL_ROWS` in ``groups``. An ensemble's member 0 is the single model of the same
    settings (reused when that row ran, or is in ``known``: overrides key -> (predictions, wall, step)); members
    1.. run in ``jobs`` worker processes (1 thread each). Ensemble wall time = member 0's fit + the elapsed time of
    the others."""
    import concurrent.futures as cf
    import multiprocessing

    from mrl.ensemble import member_seed

    parts = (valid, test)
    single = dict(known or {})
    for group in [g for g in MRL_ROWS if g in groups]:
        key, overrides, ensemble = MRL_ROWS[group]
        if group == "together" and "mrl_early" in results and "mrl_best_checkpoint" in results:
            rule = min(("mrl_early", "mrl_best_checkpoint"), key=lambda k: results[k]["valid_rmse"])
            overrides = {"features": FEATURES, **(EARLY if rule == "mrl_early" else BEST_CHECKPOINT)}
            print(f"  stopping rule of the combined row, chosen on valid: {rule}", flush=True)
        cfg = repr(sorted(overrides.items()))
        if cfg not in single:
            single[cfg] = _fit_predict_member(head, dim, steps, overrides, member_seed(0, 0), train, parts)
        preds, wall, stop = single[cfg]
        stops = [stop]
        if ensemble:
            all_preds = [preds]
            start = time.perf_counter()
            args = [(head, dim, steps, overrides, member_seed(0, k), train, parts) for k in range(1, members)]
            if jobs > 1:
                with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                    outs = list(pool.map(_fit_predict_member, *zip(*args)))
            else:
                outs = [_fit_predict_member(*a) for a in args]
            all_preds += [o[0] for o in outs]
            stops += [o[2] for o in outs]
            member_walls = [wall, *(o[1] for o in outs)]
            member_scores = [regression_scores(test.target_values(), p[1]) for p in all_preds]
            member_valid = [rmse(valid.target_values(), p[0]) for p in all_preds]
            wall = wall + time.perf_counter() - start
            preds = [np.mean([p[i] for p in all_preds], axis=0) for i in range(len(parts))]
        results[key] = {**regression_scores(test.target_values(), preds[1]), "wall_s": wall,
                        "valid_rmse": rmse(valid.target_values(), preds[0]), "head": head, "dim": dim,
                        "steps": steps, "settings": {k: v for k, v in overrides.items()},
                        "members": members if ensemble else 1, "seeds": [member_seed(0, k) for k in
                                                                         range(members if ensemble else 1)]}
        if ensemble:
            results[key]["member_fit_s"] = member_walls
            results[key]["jobs"] = jobs
            results[key]["member_rmse"] = [m["rmse"] for m in member_scores]
            results[key]["member_mae"] = [m["mae"] for m in member_scores]
            results[key]["member_r2"] = [m["r2"] for m in member_scores]
            results[key]["member_valid_rmse"] = member_valid
            print(f"  {'':28s} members: test rmse {np.mean(results[key]['member_rmse']):.3f} +- "
                  f"{np.std(results[key]['member_rmse'], ddof=1):.3f} (mean +- SD over {members} seeds)", flush=True)
        if any(st is not None for st in stops):
            results[key]["best_step"] = [None if st is None else int(st) for st in stops]
        print(f"  {key:28s} test rmse {results[key]['rmse']:.3f} mae {results[key]['mae']:.3f} "
              f"r2 {results[key]['r2']:.3f} valid {results[key]['valid_rmse']:.3f} ({wall:.0f} s)"
              f"{' best step ' + str(results[key]['best_step']) if 'best_step' in results[key] else ''}",
              flush=True)
        save_rows(results, rows_json)


@functools.lru_cache(maxsize=1)
def _published_gp_rows() -> tuple[tuple[str, float], ...]:
    """``(row key, test RMSE)`` of the published GP models (read from the gpvisc wheel once)."""
    return tuple((f"gp_published_{r['model']}", float(r["test"])) for _, r in published_gp_metrics().iterrows())


def published_gp_rows() -> dict[str, dict]:
    """The published GP models as result rows (test RMSE only)."""
    return {key: {"rmse": value, "mae": None, "r2": None, "wall_s": None} for key, value in _published_gp_rows()}


def save_rows(results: dict, path: str | None) -> None:
    """Write the results so far (the published GP rows added) to ``path`` (None: nothing)."""
    if not path:
        return
    out = dict(results)
    for key, row in published_gp_rows().items():
        out.setdefault(key, row)
    write_json(out, path)


# ----------------------------------------------------------------------------------------------- grouped CV
def grouped_cv(data: FormulaData, models: dict, n_splits: int = 5) -> pd.DataFrame:
    """GroupKFold over ``group`` (composition name) on all measurements; one row per (model, fold).

    ``models``: name -> callable ``(train, test) -> predictions``."""
    from sklearn.model_selection import GroupKFold

    groups = data.properties["group"].to_numpy()
    folds = list(GroupKFold(n_splits=n_splits).split(np.zeros(data.n_samples), groups=groups))
    y = data.target_values()
    rows = []
    for name, fn in models.items():
        for k, (tr, _) in enumerate(folds):
            m_tr = np.zeros(data.n_samples, bool)
            m_tr[tr] = True
            start = time.perf_counter()
            pred = fn(data.subset(m_tr), data.subset(~m_tr))
            rows.append({"model": name, "fold": k, **regression_scores(y[~m_tr], pred), "n": int((~m_tr).sum()),
                         "wall_s": time.perf_counter() - start})
            print(f"  cv {name} fold {k}: rmse {rows[-1]['rmse']:.3f} ({rows[-1]['wall_s']:.0f} s)", flush=True)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- analysis
def composition_table(data: FormulaData) -> pd.DataFrame:
    return data.formulas.pivot_table(index="formula_id", columns="material_id", values="content",
                                     fill_value=0.0).reindex(columns=data.material_ids, fill_value=0.0)


def find_melt(comp: pd.DataFrame, target: dict, tol: float = 0.01) -> list[str]:
    """Formula ids whose mole fractions are within ``tol`` (Euclidean) of ``target``; the nearest if none."""
    t = pd.Series(target).reindex(comp.columns).fillna(0.0)
    dist = np.sqrt(((comp - t) ** 2).sum(axis=1))
    close = dist[dist <= tol]
    return list(close.index) if len(close) else [dist.idxmin()]


def embedding_analysis(est: MixtureRegressor, data: FormulaData, max_formulas: int = 300) -> dict:
    """Vectors, 2-D map, influence (+1 mol%, others renormalised, at each measurement's own T and P) and the
    former/modifier separation of the learned vectors."""
    from mrl.analysis import influence, project, vector_columns

    emb = est.embeddings()
    X = emb[vector_columns(emb)].to_numpy()
    coords = project(X, "pca" if X.shape[1] > 2 else "raw")
    matrix = data.content_matrix()[data.sample_rows()]
    infl = influence(emb, predict=est.predict_matrix, content_matrix=matrix, conditions=data.condition_values(),
                     delta=0.01, max_formulas=max_formulas, seed=0)
    ids = emb["material_id"].to_numpy()
    is_f, is_m = np.isin(ids, FORMERS), np.isin(ids, MODIFIERS)
    cf, cm = X[is_f].mean(0), X[is_m].mean(0)
    within = np.sqrt(np.mean(np.concatenate([((X[is_f] - cf) ** 2).sum(1), ((X[is_m] - cm) ** 2).sum(1)])))
    # nearest-centroid classification of each former/modifier (leave-one-out)
    correct = 0
    for i in np.flatnonzero(is_f | is_m):
        f_mask, m_mask = is_f.copy(), is_m.copy()
        f_mask[i] = m_mask[i] = False
        d_f = np.linalg.norm(X[i] - X[f_mask].mean(0))
        d_m = np.linalg.norm(X[i] - X[m_mask].mean(0))
        correct += int((d_f < d_m) == bool(is_f[i]))
    sep = {"centroid_distance": float(np.linalg.norm(cf - cm)), "within_rms": float(within),
           "loo_nearest_centroid_correct": f"{correct}/{int((is_f | is_m).sum())}",
           "loo_correct": int(correct), "loo_n": int((is_f | is_m).sum())}
    centred = X - X.mean(0)
    var = np.linalg.svd(centred, compute_uv=False) ** 2
    share = (var / var.sum())[:2] if var.sum() > 0 else np.zeros(2)
    return {"emb": emb, "coords": coords, "influence": infl, "separation": sep,
            "pca_variance_share": [float(v) for v in share]}


def analysis_summary(analysis: dict) -> dict:
    """The JSON part of :func:`embedding_analysis`: per oxide (in effect order) its mean signed effect per +1 mol%,
    mean absolute change, rows evaluated, median mole fraction where present, vector norm and map position; the
    former/modifier separation and the variance share of the map's two axes."""
    infl = analysis["influence"].set_index("material_id")
    coords = dict(zip(analysis["emb"]["material_id"], np.asarray(analysis["coords"], np.float64)))
    oxides = {}
    for mid, row in infl.sort_values("effect").iterrows():
        oxides[str(mid)] = {"effect": float(row["effect"]), "influence": float(row["influence"]),
                            "n_evaluated": int(row["n_evaluated"]), "median_content": float(row["median_content"]),
                            "norm": float(row["norm"]), "pc1": float(coords[mid][0]), "pc2": float(coords[mid][1])}
    return {"oxides": oxides, "separation": analysis["separation"], "pca_variance_share": analysis["pca_variance_share"],
            "delta": float(infl.attrs.get("delta", 0.01)), "formers": list(FORMERS), "modifiers": list(MODIFIERS)}


def reference_melt_fits(best: MixtureRegressor, other: MixtureRegressor | None, data: FormulaData) -> dict:
    """Per reference melt (:data:`REFERENCE_MELTS`): the compositions found, the measured points at 1 bar (by
    split) and the RMSE of each model on them (log10 Pa s)."""
    comp = composition_table(data)
    props = data.properties
    out = {}
    for label, target in REFERENCE_MELTS.items():
        ids = find_melt(comp, target)
        mask = (props["formula_id"].isin(ids) & (props["P"] <= 1e-3)).to_numpy()
        part = data.subset(mask)
        y = part.target_values()
        row = {"compositions": len(ids), "points": int(mask.sum()),
               "splits": {str(k): int(v) for k, v in props.loc[mask, "split"].value_counts().items()},
               "T_min": float(props.loc[mask, "T"].min()) if mask.any() else None,
               "T_max": float(props.loc[mask, "T"].max()) if mask.any() else None,
               "y_min": float(y.min()) if mask.any() else None, "y_max": float(y.max()) if mask.any() else None}
        if mask.any():
            row["rmse_best"] = rmse(y, best.predict(part))
            if other is not None:
                row["rmse_other"] = rmse(y, other.predict(part))
        out[label] = row
    return out


#: Marker and colour of the measured points of each split in the viscosity-temperature figure.
SPLIT_STYLE = {"train": ("o", "tab:blue"), "eval": ("s", "tab:orange"), "test": ("^", "tab:green")}
#: Resolution of the page's figures (their text stays readable at 1280 px).
FIGURE_DPI = 110


def figures(best: MixtureRegressor, other: MixtureRegressor | None, data: FormulaData, analysis: dict,
            folder: Path, best_label: str, other_label: str) -> list[Path]:
    """book/figures/melt_map.png, melt_effect.png, melt_vft_curves.png, melt_parity.png (units on every axis,
    legends off the data)."""
    import scipy.sparse as sp
    from matplotlib.patches import Patch

    from mrl.plots import material_map, new_figure, parity, save_figure

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    emb, infl = analysis["emb"], analysis["influence"]
    share = analysis.get("pca_variance_share", [np.nan, np.nan])
    fig = material_map(analysis["coords"], emb, color_by="family", annotate=len(emb),
                       title=f"Oxide vectors of {best_label}: first two principal components")
    ax = fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, title="family (from the data)", loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncols=3, frameon=False)
    for k, axis in enumerate((ax.xaxis, ax.yaxis)):
        axis.set_label_text(f"principal component {k + 1} ({share[k]:.0%} of the variance; vector units)")
    out.append(save_figure(fig, folder / "melt_map.png", dpi=FIGURE_DPI))

    order = infl.sort_values("effect")
    fig, axes = new_figure(figsize=(7, 4.2))
    ax = axes[0, 0]
    kinds = {"network former": ("tab:red", FORMERS), "modifier": ("tab:blue", MODIFIERS)}
    colors = [next((c for c, members in kinds.values() if m in members), "tab:gray") for m in order["material_id"]]
    ax.barh(order["material_id"], order["effect"], color=colors)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("mean change of predicted log10 viscosity (Pa s) per +1 mol%")
    ax.set_ylabel("oxide")
    legend = [Patch(color=c, label=k) for k, (c, _) in kinds.items()] + [Patch(color="tab:gray", label="other")]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Signed effect of each oxide (others renormalised, at the measured T and P)", fontsize="medium")
    out.append(save_figure(fig, folder / "melt_effect.png", dpi=FIGURE_DPI))

    comp = composition_table(data)
    props = data.properties
    fig, axes = new_figure(2, 2, figsize=(8.5, 7.2))
    for ax, (label, target) in zip(axes.ravel(), REFERENCE_MELTS.items()):
        ids = find_melt(comp, target)
        pts = props[props["formula_id"].isin(ids) & (props["P"] <= 1e-3)]
        for split, (marker, color) in SPLIT_STYLE.items():
            part = pts[pts["split"] == split]
            ax.scatter(1e4 / part["T"], part["viscosity"], marker=marker, s=18, color=color, alpha=0.8,
                       label=f"measured ({'valid' if split == 'eval' else split} split)")
        t_lo = float(pts["T"].min()) if len(pts) else 800.0
        t_hi = float(pts["T"].max()) if len(pts) else 2000.0
        grid = np.linspace(t_lo * 0.95, t_hi * 1.05, 80)
        mat = sp.csr_matrix(np.repeat(comp.loc[ids[0]].to_numpy()[None, :], len(grid), axis=0))
        cond = np.column_stack([grid, np.zeros_like(grid)])
        ax.plot(1e4 / grid, best.predict_matrix(mat, cond), color="black", label=f"{best_label} (chosen)")
        if other is not None:
            ax.plot(1e4 / grid, other.predict_matrix(mat, cond), color="gray", ls="--", label=other_label)
        ax.set_title(f"{label}: {len(ids)} composition(s), {len(pts)} points at 1 bar", fontsize="medium")
        ax.set_xlabel("10⁴ / T (1/K)")
        ax.set_ylabel("log10 viscosity (Pa s)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    out.append(save_figure(fig, folder / "melt_vft_curves.png", dpi=FIGURE_DPI))

    test = data.subset(props["split"].to_numpy() == "test")
    fig = parity(test.target_values(), best.predict(test), split=np.full(test.n_samples, "test split"), log=False,
                 label="log10 viscosity (Pa s)", points="measurements")
    fig.axes[0].set_title(f"{best_label}: predicted against measured")
    out.append(save_figure(fig, folder / "melt_parity.png", dpi=FIGURE_DPI))
    return out


def run_cv(data: FormulaData, head: str, dim: int, cv_steps: int, folds: int, quick: bool) -> dict:
    """Grouped CV of ridge, lightgbm and one mrl variant; prints per fold and the mean table."""
    print(f"\n## grouped {folds}-fold CV (GroupKFold on composition name, all {data.n_samples} rows; "
          f"mrl {head} d{dim} trained {cv_steps} steps per fold)")

    def baseline_fn(name):
        return lambda tr, te: run_baseline(name, tr, te, quick=quick)[0]

    def mrl_fn(tr, te):
        return fit_mrl(head, dim, cv_steps, tr)[0].predict(te)

    cv = grouped_cv(data, {"ridge": baseline_fn("ridge"), "lightgbm": baseline_fn("lightgbm"),
                           f"mrl_{head}_d{dim}_{cv_steps}steps": mrl_fn}, n_splits=folds)
    table = cv.groupby("model", sort=False).agg(rmse=("rmse", "mean"), rmse_sd=("rmse", "std"),
                                                mae=("mae", "mean"), r2=("r2", "mean"), wall_s=("wall_s", "sum"))
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print("per-fold RMSE:")
    print(cv.pivot(index="fold", columns="model", values="rmse").to_string(float_format=lambda v: f"{v:.3f}"))
    return {f"cv_{name}": {"rmse": r["rmse"], "mae": r["mae"], "r2": r["r2"], "wall_s": r["wall_s"],
                           "rmse_sd": r["rmse_sd"]} for name, r in table.iterrows()}


def cv_only(data: FormulaData, head: str, dim: int, cv_steps: int, folds: int, quick: bool,
            json_path: str | None) -> None:
    start = time.perf_counter()
    results = run_cv(data, head, dim, cv_steps, folds, quick)
    if json_path:
        write_json(results, json_path)
        print(f"wrote {json_path}")
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


def _label(est: MixtureRegressor) -> str:
    return f"mrl {est.head} d{est.embedding_dim}"


def analyse(best: MixtureRegressor, other: MixtureRegressor | None, data: FormulaData, train: FormulaData,
            results: dict, figures_dir: str | None) -> None:
    """The analysis of the chosen model (fit on train) into ``results["analysis"]`` and
    ``results["reference_melts"]``, printed; the figures into ``figures_dir`` (None: none)."""
    print("\n## analysis of the winner (fit on train)")
    analysis = embedding_analysis(best, train)
    print_analysis(analysis)
    results["analysis"] = {**analysis_summary(analysis),
                           "models": {"best": _label(best), "other": _label(other) if other is not None else None}}
    results["reference_melts"] = reference_melt_fits(best, other, data)
    print("  reference melts:", json.dumps(results["reference_melts"], indent=1))
    if figures_dir:
        paths = figures(best, other, data, analysis, Path(figures_dir), _label(best),
                        _label(other) if other is not None else "")
        print("  figures:", ", ".join(str(p) for p in paths))


def save_models(best: MixtureRegressor, other: MixtureRegressor | None, folder: str | Path) -> None:
    """``best.pt`` (the chosen model) and ``other.pt`` (the best of the other head) in ``folder``."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    best.save(Path(folder) / "best.pt")
    if other is not None:
        other.save(Path(folder) / "other.pt")
    print(f"  models saved in {folder}")


def analyse_saved(models: str | Path, json_path: str | None, figures_dir: str | None) -> dict:
    """Redo the analysis and the figures from the models a screening run saved (``--models``), without training;
    the analysis, the reference-melt fits and the data description replace those of the result file ``json_path``
    (its scores are kept)."""
    data = load_dataset("melt_viscosity")
    split = data.properties["split"].to_numpy()
    train, valid, test = (data.subset(split == s) for s in ("train", "eval", "test"))
    results = json.loads(Path(json_path).read_text()) if json_path and Path(json_path).exists() else {}
    results["data"] = describe_split(data, split, train, valid, test)
    best = MixtureRegressor.load(Path(models) / "best.pt", device="cpu")
    other_path = Path(models) / "other.pt"
    other = MixtureRegressor.load(other_path, device="cpu") if other_path.exists() else None
    analyse(best, other, data, train, results, figures_dir)
    results.setdefault("provenance", {})["analysis"] = (f"python benchmarks/melt_viscosity.py --analysis-from {models}"
                                                        f" --json {json_path}" + (f" --figures {figures_dir}"
                                                                                  if figures_dir else ""))
    if json_path:
        write_json(results, json_path)
        print(f"wrote {json_path}")
    return results


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="training steps of each screened mrl variant")
    parser.add_argument("--final-steps", type=int, default=None, help="steps of the retrained winner")
    parser.add_argument("--cv-steps", type=int, default=None, help="steps of mrl in each grouped-CV fold")
    parser.add_argument("--dims", type=int, nargs="+", default=None)
    parser.add_argument("--heads", nargs="+", default=["direct", "vft"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-cv", action="store_true")
    parser.add_argument("--json", help="write {name: {rmse, mae, r2, wall_s}} here")
    parser.add_argument("--figures", default=None, help="folder for the analysis PNGs (e.g. book/figures)")
    parser.add_argument("--quick", action="store_true", help="~2-min smoke run")
    parser.add_argument("--cv-only", metavar="HEAD:DIM", default=None,
                        help="only the grouped CV (ridge, lightgbm, mrl HEAD:DIM with --cv-steps), e.g. direct:16")
    parser.add_argument("--rows", default=",".join(ROW_GROUPS),
                        help=f"comma-separated row groups among {', '.join(ROW_GROUPS)} (default: all)")
    parser.add_argument("--members", type=int, default=MEMBERS, help="members of the ensemble rows")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for ensemble members (1 thread each)")
    parser.add_argument("--render", nargs="*", default=None, metavar="JSON",
                        help="only render the book page's sections from these result files (default: "
                             f"{' '.join(RESULT_FILES)})")
    parser.add_argument("--book", default=None, help="with --render: fill the marked regions of this page "
                                                     "(book/melt_viscosity.md)")
    parser.add_argument("--models", default=None, help="with screen: save the chosen model and the best of the other "
                                                       "head here (best.pt, other.pt), to redraw the figures")
    parser.add_argument("--analysis-from", default=None, metavar="MODELS",
                        help="only redo the analysis and figures from the models saved by --models (no training); "
                             "updates the --json file's analysis")
    parser.add_argument("--rows-json", default=None, help="write the results (updated after every row) here, e.g. "
                                                          "benchmarks/results/melt_viscosity_rows.json")
    args = parser.parse_args(argv)
    args.rows = [g for g in args.rows.split(",") if g]
    if bad := sorted(set(args.rows) - set(ROW_GROUPS)):
        parser.error(f"unknown --rows group(s) {bad}; choose among {ROW_GROUPS}")
    return args


def describe_split(data: FormulaData, split: np.ndarray, train: FormulaData, valid: FormulaData,
                   test: FormulaData) -> dict:
    """Print (and return) the data's size and how far the published test split overlaps the training split."""
    groups = data.properties["group"]
    train_names = set(groups[split == "train"])
    test_names = set(groups[split == "test"])
    train_forms = set(data.properties["formula_id"][split == "train"])
    test_forms = set(data.properties["formula_id"][split == "test"])
    leak_rows = int((groups[split == "test"].isin(train_names)).sum())
    print(f"melt_viscosity: {data.n_samples} measurements, {data.n_formulas} compositions, "
          f"{data.n_materials} oxides; train/valid/test rows {len(train.properties)}/{len(valid.properties)}/"
          f"{len(test.properties)}")
    print(f"published split overlap: {len(test_names & train_names)} of {len(test_names)} test names "
          f"({len(test_forms & train_forms)} of {len(test_forms)} test compositions, {leak_rows} test rows) "
          f"also occur in train")
    return {"measurements": int(data.n_samples), "compositions": int(data.n_formulas),
            "oxides": int(data.n_materials), "rows": {"train": len(train.properties), "valid": len(valid.properties),
                                                      "test": len(test.properties)},
            "test_names": len(test_names), "test_names_in_train": len(test_names & train_names),
            "test_compositions": len(test_forms), "test_compositions_in_train": len(test_forms & train_forms),
            "test_rows_named_in_train": leak_rows}


def screen_variants(heads: Sequence[str], dims: Sequence[int], steps: int, train: FormulaData, valid: FormulaData,
                    test: FormulaData, results: dict[str, dict]) -> pd.DataFrame:
    """Fit every head x dim for ``steps`` steps; one row per variant (``head, dim, valid_rmse, test_rmse,
    wall_s``); each variant's test scores go into ``results``."""
    y_test, y_valid = test.target_values(), valid.target_values()
    screen = []
    for head in heads:
        for dim in dims:
            est, wall = fit_mrl(head, dim, steps, train)
            row = {"head": head, "dim": dim, "valid_rmse": rmse(y_valid, est.predict(valid)),
                   "test_rmse": rmse(y_test, est.predict(test)), "wall_s": wall}
            screen.append(row)
            results[f"mrl_{head}_d{dim}_screen"] = {**regression_scores(y_test, est.predict(test)), "wall_s": wall}
            print(f"  {head:6s} dim {dim:2d}: valid {row['valid_rmse']:.3f} test {row['test_rmse']:.3f} "
                  f"({wall:.0f} s)", flush=True)
    return pd.DataFrame(screen)


def retrain(head: str, dim: int, steps: int, key: str, train: FormulaData, valid: FormulaData, test: FormulaData,
            results: dict[str, dict]) -> MixtureRegressor:
    """Fit ``head``/``dim`` for ``steps`` steps, store its scores under ``results[key]`` and print them."""
    est, wall = fit_mrl(head, dim, steps, train)
    results[key] = {**regression_scores(test.target_values(), est.predict(test)), "wall_s": wall, "head": head,
                    "dim": dim, "steps": steps, "valid_rmse": rmse(valid.target_values(), est.predict(valid))}
    print(f"  mrl {head} dim {dim}: valid {results[key]['valid_rmse']:.3f} test {results[key]['rmse']:.3f} "
          f"({wall:.0f} s)", flush=True)
    return est


def print_analysis(analysis: dict) -> None:
    infl = analysis["influence"][["material_id", "family", "norm", "influence", "effect", "n_evaluated"]]
    print(infl.sort_values("effect").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("  former/modifier separation:", analysis["separation"])
    emb = analysis["emb"]
    coords = pd.DataFrame(analysis["coords"], columns=["pc1", "pc2"])
    coords.insert(0, "material_id", emb["material_id"])
    print(coords.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


# ----------------------------------------------------------------------------------------------- book page
#: Unit of every error on the page.
UNIT = "log10 Pa s"
#: The rows of the page's main table, in order: (row key, model, features).
TABLE_ROWS = (
    ("dummy", "dummy (training mean)", "–"),
    ("ridge", "ridge", "fractions, 1000/*T*, *P*, fractions × 1000/*T*"),
    ("random_forest", "random forest (200 trees, 1 thread)", "fractions, 1000/*T*, *P*"),
    ("lightgbm", "LightGBM (1,000 trees, 1 thread)", "fractions, 1000/*T*, *P*"),
    ("ridge_oxide_features", "ridge", "+ oxide features, both × 1000/*T*"),
    ("random_forest_oxide_features", "random forest (200 trees, 1 thread)", "+ oxide features"),
    ("lightgbm_oxide_features", "LightGBM (1,000 trees, 1 thread)", "+ oxide features"),
    ("mrl", "**mrl**, direct head, dim 16, 12,000 steps (chosen on valid)", "mixture vector, 1000/*T*, *P*"),
    ("mrl_features", "mrl + oxide features", "vector $g(x) + r$"),
    ("mrl_early", "mrl + early stop", "held-out 10 % of train"),
    ("mrl_best_checkpoint", "mrl + best checkpoint", "held-out 10 % of train"),
    ("mrl_ensemble", "**mrl ensemble of 5**", "5 seeds, mean"),
    ("mrl_features_ensemble", "mrl + oxide features, ensemble of 5", "5 seeds, mean"),
    ("mrl_features_stopping_ensemble", "mrl + oxide features + best checkpoint, ensemble of 5", "all together"),
    ("mrl_vft", "mrl, vft head (best vft on valid)", "mixture vector, *P*; *T* in the VFT law"),
)
#: Grouped-CV rows: (row key, label).
CV_ROWS = (("cv_ridge", "ridge"), ("cv_lightgbm", "LightGBM"),
           ("cv_mrl_direct_d16_2000steps", "mrl direct/16, 2,000 steps per fold"))


def _name(key: str) -> str:
    """The readable name of a row key (its model column without markup; the chosen model is "mrl (seed 0)")."""
    if key == "mrl":
        return "mrl (seed 0)"
    return next((m.replace("**", "") for k, m, _ in TABLE_ROWS if k == key), key)


def _gp(results: dict) -> dict[str, float]:
    return {k.removeprefix("gp_published_"): v["rmse"] for k, v in results.items() if k.startswith("gp_published_")}


def _single(results: dict, key: str) -> Score:
    return Score(results[key]["rmse"])


def _published(value: float) -> Score:
    return Score(value, note="published, quoted")


def _members(results: dict, key: str) -> Score:
    return Score.of(results[key]["member_rmse"], over="seeds")


def render_key_result(results: dict) -> str:
    """The page's key result: the ensemble against the best published GP and against the goal, the single model
    over seeds, the single model against LightGBM, and the grouped CV, worded by mrl.wording."""
    gp = _gp(results)
    best_gp = min(gp, key=gp.get)
    ens, one = _single(results, "mrl_ensemble"), _single(results, "mrl")
    parts = ["On the paper's test split (test RMSE, log10 Pa s):",
             compare(ens, _published(gp[best_gp]), "an ensemble of five mrl models", f"the best published GP "
                     f"({best_gp})", what="test RMSE").sentence,
             compare(_members(results, "mrl_ensemble"), _published(gp[best_gp]), "its members alone",
                     best_gp, what="test RMSE").sentence,
             compare(one, _single(results, "lightgbm_oxide_features"), "the single model (seed 0)",
                     "LightGBM with oxide features", what="test RMSE").sentence]
    if "cv_mrl_direct_d16_2000steps" in results and "cv_lightgbm" in results:
        parts.append("Under a 5-fold CV grouped by composition: " + compare(
            _cv(results, "cv_mrl_direct_d16_2000steps"), _cv(results, "cv_lightgbm"), "mrl (2,000 steps per fold)",
            "LightGBM", what="RMSE").sentence)
    return " ".join(parts)


def _cv(results: dict, key: str) -> Score:
    row = results[key]
    return Score(row["rmse"], row.get("rmse_sd"), 5, "folds")


def _f3(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}".replace("-", "−")


def render_table(results: dict) -> str:
    """The main test-split table, the published GP row and the seed spread of each ensemble's members."""
    lines = [f"| model | features | RMSE ({UNIT}) | MAE ({UNIT}) | R² (–) | valid RMSE ({UNIT}) | wall time (s) |",
             "|---|---|---|---|---|---|---|"]
    for key, model, features in TABLE_ROWS:
        if key in results:
            r = results[key]
            steps = f", {r['steps']:,} steps" if key == "mrl_vft" and "steps" in r else ""
            lines.append(f"| {model}{steps} | {features} | {_f3(r['rmse'])} | {_f3(r.get('mae'))} | {_f3(r.get('r2'))}"
                         f" | {_f3(r.get('valid_rmse'))} | {format_number(r['wall_s'])} |")
    gp = _gp(results)
    lines.append(f"| published {' / '.join(gp)} (gpvisc `metrics.csv`) | | {' / '.join(_f3(v) for v in gp.values())}"
                 " | | | | |")
    lines += ["", f"Single models over the five ensemble seeds (test RMSE, {UNIT}):", ""]
    for key, model, _ in TABLE_ROWS:
        if results.get(key, {}).get("member_rmse"):
            m = results[key]["member_rmse"]
            lines.append(f"* members of the {model.replace('**', '')}: {_members(results, key).text()}, range "
                         f"{min(m):.3f}-{max(m):.3f}.")
    return "\n".join(lines)


def render_findings(results: dict) -> str:
    """The goal and what features, stopping and ensembles change, worded by mrl.wording."""
    gp = _gp(results)
    best_gp = min(gp, key=gp.get)
    out = [f"* **Goal: below the best published GP ({best_gp}).** "
           + against_target(_single(results, "mrl_ensemble"), gp[best_gp], "test RMSE of the ensemble of 5",
                            f"{best_gp}'s", goal=True).sentence + " "
           + against_target(_members(results, "mrl_ensemble"), gp[best_gp], "test RMSE of its single members",
                            f"{best_gp}'s", goal=True).sentence]
    members = _members(results, "mrl_ensemble")
    margin = gp[best_gp] - results["mrl_ensemble"]["rmse"]
    out[0] += (f" The ensemble's margin, {margin:.3f}, is {abs(margin) / members.sd:.1f} times the SD of its members "
               "over seeds.") if members.sd else ""
    #: (first row, its name, second row, its name, what changes)
    pairs = (("mrl_features", "mrl + oxide features", "mrl", "mrl (seed 0)", "oxide features, single model"),
             ("mrl_features_ensemble", "the ensemble with oxide features", "mrl_ensemble", "the ensemble without",
              "oxide features, ensemble"),
             ("lightgbm_oxide_features", "LightGBM with oxide features", "lightgbm", "LightGBM on fractions",
              "oxide features, LightGBM"),
             ("random_forest_oxide_features", "the random forest with oxide features", "random_forest",
              "the random forest on fractions", "oxide features, random forest"),
             ("mrl_early", "mrl + early stop", "mrl", "mrl (seed 0)", "early stopping"),
             ("mrl_best_checkpoint", "mrl + best checkpoint", "mrl", "mrl (seed 0)", "best checkpoint"),
             ("mrl_ensemble", "the ensemble of 5", "mrl", "mrl (seed 0)", "ensemble of 5"),
             ("mrl_vft", "the vft head", "mrl", "the direct head (mrl, seed 0)", "vft head"))
    for first, first_name, second, second_name, what in pairs:
        if first in results and second in results:
            out.append(f"* **{what}:** " + compare(_single(results, first), _single(results, second), first_name,
                                                   second_name, what="test RMSE").sentence)
    for key in ("mrl_early", "mrl_best_checkpoint"):
        if results.get(key, {}).get("best_step"):
            out.append(f"* {_name(key)} kept the state of step {results[key]['best_step'][0]:,} "
                       f"(valid RMSE {_f3(results[key]['valid_rmse'])}).")
    return "\n".join(out)


def render_screening(results: dict) -> str:
    """The head x size screening table (valid chose, test only reported; the result file keeps the test scores)."""
    chosen = results.get("mrl", {})
    lines = [f"| head | dim | test RMSE ({UNIT}) | wall time (s) |", "|---|---|---|---|"]
    for key, r in results.items():
        if key.endswith("_screen"):
            _, head, dim, _ = key.split("_")
            mark = " (chosen on valid)" if (head, int(dim[1:])) == (chosen.get("head"), chosen.get("dim")) else ""
            lines.append(f"| {head} | {dim[1:]}{mark} | {_f3(r['rmse'])} | {format_number(r['wall_s'])} |")
    if chosen:
        lines += ["", f"The chosen {chosen['head']}/{chosen['dim']} model, retrained for {chosen['steps']:,} steps: "
                      f"test RMSE {_f3(chosen['rmse'])}."]
    return "\n".join(lines)


def render_cv(results: dict) -> str:
    """The grouped 5-fold CV table and its comparison, worded by mrl.wording."""
    lines = [f"| model (grouped 5-fold CV) | RMSE mean ± SD over folds ({UNIT}) | MAE ({UNIT}) | R² (–) | "
             "wall time, 5 folds (s) |", "|---|---|---|---|---|"]
    for key, label in CV_ROWS:
        if key in results:
            r = results[key]
            lines.append(f"| {label} | {_f3(r['rmse'])} ± {_f3(r['rmse_sd'])} | {_f3(r['mae'])} | {_f3(r['r2'])} | "
                         f"{format_number(r['wall_s'])} |")
    lines.append("")
    if "cv_mrl_direct_d16_2000steps" in results and "cv_lightgbm" in results:
        lines.append("* " + compare(_cv(results, "cv_mrl_direct_d16_2000steps"), _cv(results, "cv_lightgbm"),
                                    "mrl (2,000 steps per fold)", "LightGBM", what="grouped-CV RMSE").sentence)
        lines.append("* " + compare(_cv(results, "cv_lightgbm"), _single(results, "lightgbm"), "LightGBM, grouped CV",
                                    "LightGBM on the paper's test split", what="RMSE").sentence)
    return "\n".join(lines)


#: The alkali and alkaline-earth modifiers, compared in the effect findings.
ALKALIS, ALKALINE_EARTHS = ("Na2O", "K2O"), ("CaO", "MgO")
#: Oxides whose median mole fraction where present is below this are called sparse (their mean effect rests on
#: small contents).
SPARSE_CONTENT = 0.005


def _signed(value: float) -> str:
    """``+0.12`` / ``−0.52``: an effect per mol% at two decimals, with a typographic minus."""
    return f"{value:+.2f}".replace("-", "−")


def _listed(names: Sequence[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _share(k: int, n: int) -> str:
    """``All six``, ``Three of the four``, ``No`` (capitalised, for the start of a sentence)."""
    word = _WORDS[k] if k < len(_WORDS) else f"{k:,}"
    total = _WORDS[n] if n < len(_WORDS) else f"{n:,}"
    text = f"all {total}" if k == n else word if k == 0 else f"{word} of the {total}"
    return text[0].upper() + text[1:]


def _minus(value: float, digits: int = 1) -> str:
    """A value at ``digits`` decimals with a typographic minus."""
    return f"{value:.{digits}f}".replace("-", "−")


def _span(values: Sequence[float]) -> str:
    """``−0.13 to −0.19`` (weakest to strongest), or one value when they agree at two decimals."""
    lo, hi = _signed(max(values, key=abs)), _signed(min(values, key=abs))
    return lo if lo == hi else f"{hi} to {lo}"


def render_data(results: dict) -> str:
    """The data's size and the overlap of the published test split with the training split."""
    d = results["data"]
    rows = d["rows"]
    return (f"{d['measurements']:,} measurements of {d['compositions']:,} compositions ({d['oxides']} oxides); the "
            f"paper's split gives {rows['train']:,} training, {rows['valid']:,} validation and {rows['test']:,} test "
            f"rows. The paper split by composition name: {d['test_names_in_train']} of its {d['test_names']} test "
            f"names ({d['test_compositions_in_train']} of {d['test_compositions']} test compositions, "
            f"{d['test_rows_named_in_train']} of the {rows['test']:,} test rows) also occur in the training split.")


def render_effects(results: dict) -> str:
    """The effect table (mean signed change of the predicted log10 viscosity per +1 mol%, with the median content
    where present) and the findings worded from it: the strongest reducer, the modifiers, the formers, the sparse
    oxides. Qualitative chemistry is said only where the numbers agree with it."""
    ox = results["analysis"]["oxides"]
    eff = {k: v["effect"] for k, v in sorted(ox.items(), key=lambda kv: kv[1]["effect"])}
    med = {k: 100 * ox[k]["median_content"] for k in eff}
    pct = results["analysis"].get("delta", 0.01) * 100
    lines = [f"| oxide | effect per +{pct:g} mol% ({UNIT}) | median content where present (mol%) |",
             "|---|--:|--:|"]
    lines += [f"| {m} | {_signed(v)} | {format_number(med[m], 2)} |" for m, v in eff.items()]
    lines += ["", "![Signed effect per oxide](figures/melt_effect.png)", ""]
    first, second = list(eff)[:2]
    bullet = (f"* **{first} lowers viscosity most**: {_signed(eff[first])} log units per mol%, "
              f"{eff[first] / eff[second]:.1f} times {second} ({_signed(eff[second])}), the next strongest.")
    if first == "H2O":
        bullet += (" This matches the textbook picture: dissolved water depolymerises the silicate network very "
                   "efficiently at low contents.")
    lines.append(bullet)
    lower = [m for m in MODIFIERS if eff[m] < 0]
    raise_ = [m for m in MODIFIERS if eff[m] >= 0]
    bullet = (f"* **{_share(len(lower), len(MODIFIERS))} modifiers lower{'s' if len(lower) == 1 else ''} viscosity**"
              + (f" ({_listed(f'{m} {_signed(eff[m])}' for m in sorted(lower, key=eff.get))})" if lower else "")
              + (f"; {_listed(raise_)} raise{'s' if len(raise_) == 1 else ''} it" if raise_ else "") + ".")
    alk, ear = [eff[m] for m in ALKALIS], [eff[m] for m in ALKALINE_EARTHS]
    stronger = np.mean(alk) < np.mean(ear)
    bullet += (f" The alkalis ({_listed(ALKALIS)}: {_span(alk)}) lower it {'more' if stronger else 'less'} on "
               f"average than the alkaline earths ({_listed(ALKALINE_EARTHS)}: {_span(ear)}).")
    fe3, fe2 = eff["Fe2O3"], eff["FeO"]
    how = (("lowers it less than" if fe3 > fe2 else "lowers it more than") if max(fe3, fe2) < 0 else
           "has a higher effect than" if fe3 > fe2 else "has a lower effect than")
    bullet += (f" Fe2O3 ({_signed(fe3)}) {how} FeO ({_signed(fe2)})" + (", in line with Fe³⁺ taking part in the network more than Fe²⁺." if fe3 > fe2
                                      else ", against the expectation that Fe³⁺ takes part in the network more than "
                                           "Fe²⁺."))
    lines.append(bullet)
    up = sorted((f for f in FORMERS if eff[f] > 0), key=eff.get, reverse=True)
    down = [f for f in FORMERS if eff[f] <= 0]
    bullet = (f"* **{_share(len(up), len(FORMERS))} network formers raise{'s' if len(up) == 1 else ''} viscosity**"
              + (f" ({', '.join(f'{f} {_signed(eff[f])}' for f in up)})" if up else "") + ".")
    if up and up[0] != "SiO2" and "SiO2" in up:
        bullet += f" {up[0]} ranks above SiO2 here."
        if up[0] == "Al2O3":
            bullet += (" A likely reason is that Al2O3 added to melts rich in alkalis or alkaline earths takes those "
                       "cations as charge balancers, which stops them acting as modifiers.")
    for f in down:
        bullet += f" **{f} disagrees** with a simple \"former\" label: {_signed(eff[f])} on average."
        if f == "P2O5":
            bullet += " In the literature P2O5 raises viscosity in peralkaline melts and lowers it in others."
    lines.append(bullet)
    strong = [m for m in eff if eff[m] < 0][:len(eff) // 2]
    sparse = [m for m in list(eff) if ox[m]["median_content"] < SPARSE_CONTENT and (m in strong or m in down)]
    if sparse:
        lines.append(f"* **Sparse oxides:** {_listed(f'{m} ({format_number(med[m], 2)} mol%)' for m in sparse)} "
                     f"{'has' if len(sparse) == 1 else 'have'} a median content below {100 * SPARSE_CONTENT:g} mol% "
                     "where present, so "
                     f"{'its average rests' if len(sparse) == 1 else 'their averages rest'} on small additions "
                     "(and, for an oxide whose effect changes sign between melts, on a blend of regimes); they "
                     "should not be over-read.")
    return "\n".join(lines)


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    return float(np.corrcoef(ra, rb)[0, 1])


def render_map(results: dict) -> str:
    """The map's axes, the order along its first axis against the effect ranking, the alkaline earths' nearest
    neighbours on the map, and the former/modifier separation in the full vector space."""
    an = results["analysis"]
    ox = an["oxides"]
    ids = list(ox)
    pc1 = np.array([ox[m]["pc1"] for m in ids])
    eff = np.array([ox[m]["effect"] for m in ids])
    rho = _spearman(pc1, eff)
    order = [ids[i] for i in np.argsort(-pc1 * (1.0 if rho >= 0 else -1.0))]  # from the viscosity-raising end
    share = an["pca_variance_share"]
    xy = np.array([[ox[m]["pc1"], ox[m]["pc2"]] for m in ids])

    def nearest(m: str) -> str:
        d = np.linalg.norm(xy - xy[ids.index(m)], axis=1)
        d[ids.index(m)] = np.inf
        return ids[int(np.argmin(d))]

    a, b = ALKALINE_EARTHS
    pair = (f"{a} and {b} (the alkaline earths) are each other's nearest oxide on the map" if nearest(a) == b
            and nearest(b) == a else f"{a}'s nearest oxide on the map is {nearest(a)}, {b}'s is {nearest(b)}")
    sep = an["separation"]
    dim = results.get("mrl", {}).get("dim")
    space = f"{dim}-D" if dim else "vector"
    apart = sep["centroid_distance"] < sep["within_rms"]
    return "\n".join([
        f"The first principal component holds {100 * share[0]:.0f} % of the variance of the oxide vectors, the "
        f"second {100 * share[1]:.0f} %. Along the first axis, from the end of the oxides that raise viscosity most: "
        f"{', '.join(order)}. The rank correlation of the first axis with the effect is {_signed(rho)} (Spearman, "
        f"{len(ids)} oxides; single run, seed 0; the axis's sign is arbitrary). {pair}; P2O5's is "
        f"{nearest('P2O5')}.",
        "",
        f"In the full {space} space a leave-one-out nearest-centroid test puts {sep['loo_correct']} of the "
        f"{sep['loo_n']} formers ({_listed(FORMERS)}) and modifiers ({_listed(MODIFIERS)}) with their own group. "
        f"The group centroids are {sep['centroid_distance']:.2f} apart against a within-group RMS spread of "
        f"{sep['within_rms']:.2f}, so "
        + ("formers and modifiers are separated only partly, rather than as two clusters." if apart else
           "the two groups are further apart than they are wide.")])


def render_curves(results: dict) -> str:
    """Per reference melt: its points at 1 bar and the two heads' RMSE on them, worded by mrl.wording."""
    models = results["analysis"]["models"]
    lines = []
    for label, r in results["reference_melts"].items():
        if not r["points"]:
            lines.append(f"* {label}: no measured point at 1 bar.")
            continue
        splits = ", ".join(f"{n} {'valid' if s == 'eval' else s}" for s, n in sorted(r["splits"].items()))
        text = (f"* **{label}** ({r['compositions']} composition(s), {r['points']} points at 1 bar: {splits}; "
                f"measured log10 η from {_minus(r['y_min'])} to {_minus(r['y_max'])}, {r['T_min']:,.0f}-{r['T_max']:,.0f} K): ")
        if "rmse_other" in r:
            text += compare(Score(r["rmse_best"]), Score(r["rmse_other"]), f"the chosen {models['best']}",
                            f"{models['other']}", what="RMSE on these points", unit=UNIT).sentence
        else:
            text += f"RMSE of the chosen {models['best']} {Score(r['rmse_best']).text(UNIT)}."
        lines.append(text)
    return "\n".join(lines)


#: Regions of book/melt_viscosity.md filled from the result files: marker name -> render function.
SECTIONS = {"key-result": render_key_result, "melt-data": render_data, "melt-table": render_table,
            "melt-findings": render_findings, "melt-screening": render_screening, "melt-cv": render_cv,
            "melt-effects": render_effects, "melt-map": render_map, "melt-curves": render_curves}
#: The committed result files the page is rendered from: the rows of the main table (all ``--rows``) and the
#: screening run with its analysis (``--rows screen --models``). Their shared rows must agree.
RESULT_FILES = ("benchmarks/results/melt_viscosity_rows.json", "benchmarks/results/melt_viscosity.json")


#: The repository root (relative result paths are read from it).
ROOT = Path(__file__).resolve().parents[1]


def page_results(paths: Sequence[str | Path] = RESULT_FILES, root: Path = ROOT) -> dict:
    """The result files merged into one dict: a key found in several comes from the first (its wall time too), and
    its test RMSE must agree across them to 4 decimals (same seeds and code), else a ValueError names the key."""
    merged: dict = {}
    origin: dict[str, str] = {}
    for path in paths:
        path = Path(path) if Path(path).is_absolute() else root / path
        for key, row in json.loads(path.read_text()).items():
            if key not in merged:
                merged[key], origin[key] = row, str(path)
            elif isinstance(row, dict) and row.get("rmse") is not None and merged[key].get("rmse") is not None \
                    and abs(row["rmse"] - merged[key]["rmse"]) > 5e-5:
                raise ValueError(f"{path}: row {key!r} has test RMSE {row['rmse']:.4f}, but {origin[key]} has "
                                 f"{merged[key]['rmse']:.4f}; the files come from different code or seeds: rerun both")
    return merged


def write_book(results: dict, path: str | Path) -> Path:
    """Fill each rendered region of :data:`SECTIONS` between its ``<!-- NAME -->`` markers on the page."""
    return fill_from_results(results, SECTIONS, path)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render is not None:
        results = page_results(args.render or RESULT_FILES)
        if missing := [k for k in ("data", "analysis", "reference_melts") if k not in results]:
            raise SystemExit(f"--render: {' '.join(args.render)} hold no {', '.join(missing)} (written by --rows screen "
                             f"or --analysis-from); render from both {' '.join(RESULT_FILES)}")
        if args.book:
            print(f"wrote {write_book(results, args.book)}")
        else:
            print("\n\n".join(fn(results) for fn in SECTIONS.values()))
        return results
    torch.set_num_threads(1)
    if args.analysis_from:
        return analyse_saved(args.analysis_from, args.json, args.figures)
    quick = args.quick
    steps = args.steps or (150 if quick else 1000)
    final_steps = args.final_steps or (300 if quick else 12000)
    cv_steps = args.cv_steps or (100 if quick else 2000)
    dims = args.dims or ([2, 8] if quick else [2, 4, 8, 12, 16])
    total_start = time.perf_counter()

    data = load_dataset("melt_viscosity")
    if args.cv_only:
        head, dim = args.cv_only.split(":")
        cv_only(data, head, int(dim), cv_steps, 2 if quick else args.folds, quick, args.json)
        return {}
    split = data.properties["split"].to_numpy()
    train, valid, test = (data.subset(split == s) for s in ("train", "eval", "test"))
    results: dict[str, dict] = {"data": describe_split(data, split, train, valid, test),
                                "provenance": {"run": " ".join(["python benchmarks/melt_viscosity.py",
                                                                *(sys.argv[1:] if argv is None else argv)])}}
    head, dim = CHOSEN
    known: dict = {}
    screen = other_cfg = best = other = None

    if "screen" in args.rows:
        print("\n## baselines (fit on train, scored on test)")
        for name in BASELINES:
            pred, wall = run_baseline(name, train, test, quick=quick)
            results[name] = {**regression_scores(test.target_values(), pred), "wall_s": wall}
            print(f"  {name:14s} test rmse {results[name]['rmse']:.3f} ({wall:.1f} s)", flush=True)

        print(f"\n## mrl variants ({steps} steps each, batch {MRL_BASE['batch_size']}, lr {MRL_BASE['lr']}); "
              "winner by valid RMSE")
        screen = screen_variants(args.heads, dims, steps, train, valid, test, results)
        win = screen.loc[screen["valid_rmse"].idxmin()]
        head, dim = str(win["head"]), int(win["dim"])
        print(f"  winner on valid: head={head} dim={dim}")
        others = screen[screen["head"] != head]
        other_cfg = others.loc[others["valid_rmse"].idxmin()] if len(others) else None

        print(f"\n## winner retrained for {final_steps} steps (best of the other head: {final_steps // 3}, for the "
              "figures)")
        best = retrain(head, dim, final_steps, "mrl", train, valid, test, results)
        known[repr(sorted({}.items()))] = ([best.predict(valid), best.predict(test)], results["mrl"]["wall_s"], None)
        if other_cfg is not None:
            oh, od = str(other_cfg["head"]), int(other_cfg["dim"])
            other = retrain(oh, od, final_steps // 3, f"mrl_{oh}", train, valid, test, results)
        save_rows(results, args.rows_json)

    if "feature_baselines" in args.rows:
        run_feature_baselines(train, valid, test, results, args.rows_json, quick)
    if any(g in MRL_ROWS for g in args.rows):
        print(f"\n## mrl {head} dim {dim}, {final_steps} steps: plain, + oxide features, + early stopping, "
              f"ensembles of {args.members} (mean)")
        run_mrl_rows(args.rows, head, dim, final_steps, train, valid, test, results, args.rows_json,
                     members=args.members, jobs=args.jobs, known=known)

    results.update(published_gp_rows())

    print("\n## test split (paper's test), log10 Pa s")
    table = pd.DataFrame([{"model": k, **{m: v.get(m) for m in ("rmse", "mae", "r2", "wall_s", "valid_rmse")}}
                          for k, v in results.items() if not k.endswith("_screen") and "rmse" in v])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if screen is not None:
        print("\n## all screened variants (valid = selection, test = report only)")
        print(screen.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    if "screen" in args.rows and not args.no_cv:
        results.update(run_cv(data, head, dim, cv_steps, 2 if quick else args.folds, quick))

    if best is not None:
        analyse(best, other, data, train, results, args.figures)
        if args.models:
            save_models(best, other, args.models)
    results["total_wall_s"] = {"wall_s": time.perf_counter() - total_start}
    save_rows(results, args.rows_json)
    if args.json:
        write_json(results, args.json)
        print(f"wrote {args.json}")
    print(f"\ntotal wall time {time.perf_counter() - total_start:.0f} s")
    return results


if __name__ == "__main__":
    main()
