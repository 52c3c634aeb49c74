"""A run is a folder: params in, metrics, checkpoint, embeddings, snapshots and predictions out.

``run_experiment(params)`` resolves the data, splits it, trains, and writes ``runs/<name>/``; ``load_run(path)``
reads it back. Every file is an open format (YAML, JSON, CSV, Parquet) except the torch checkpoint, and every
file is written atomically.
"""
from __future__ import annotations

import logging
import platform
import shutil
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import torch
import yaml

import mrl
from mrl.cells import header_unit
from mrl.data import FormulaData, load_formulas, material_rows
from mrl.ensemble import fit_members, neighbour_stability
from mrl.estimator import MixtureRegressor
from mrl.io import atomic_dir, read_json, write_json, write_table, write_text
from mrl.metrics import describe_split
from mrl.params import RunParams, check_conditions
from mrl.predict import Predictor, calibrated_predictor, member_predictions
from mrl.public_data import DATASETS, load_dataset
from mrl.run_baselines import describe_baselines, fit_baselines, score_predictions, summary_line
from mrl.run_files import (
    ADAPT,
    BASELINES,
    CHECKPOINT,
    EMBEDDINGS,
    HISTORY,
    METRICS,
    NEIGHBOUR_STABILITY,
    PARAMS,
    PREDICTIONS,
    RUN_FILES,
    SNAPSHOTS,
    SPLIT,
    STACK,
    member_dir,
)
from mrl.small_data import resolve_small_data
from mrl.splits import hold_out_calibration, make_split
from mrl.synth import make_lab
from mrl.train import StepPlan, resolve_device, resolve_steps
from mrl.transforms import resolve_target_transform
from mrl.uncertainty import LEVELS, coverage, from_model_units, member_summary
from mrl.workbook import truth_table

log = logging.getLogger(__name__)


def describe_interaction(params: RunParams) -> str:
    """The interaction setting in words: ``none``, ``attention``, or the transformer's layers, width and mixing."""
    if params.interaction != "transformer":
        return params.interaction
    heads = f", {params.interaction_heads} heads" if params.interaction_mixing == "attention" else ""
    return (f"transformer ({params.interaction_layers} layers of width {params.interaction_width}, "
            f"{params.interaction_mixing}{heads})")


def resolve_data(params: RunParams) -> tuple[FormulaData, pd.DataFrame | None]:
    """Load the data a run names; return it with the hidden truth table (synthetic data only, else None).

    ``params.data`` is ``"synth:<preset>"``, a name registered in :mod:`mrl.public_data`, or a path read by
    :func:`mrl.data.load_formulas` (the one reader of every entry): a folder holding ``formulas``, ``properties``
    and optionally ``materials`` tables (CSV, Parquet or ``.xlsx``), a workbook with those sheets, or with
    ``layout: wide`` one wide sheet or table; the reading keys (``layout``, ``sheets``, ``sheet``, ``id_column``,
    ``material_columns``, ``ignore_columns``, ``decimal``, ``sep``, ``below_limit``, ``text_values``,
    ``duplicates``) come from the params.
    """
    spec = params.data
    truth = None
    if spec.startswith("synth:"):
        data, truth = make_lab(spec.split(":", 1)[1], seed=params.data_seed,
                               supplier_sheet=params.features == "supplier")
    elif Path(spec).exists():
        path = Path(spec)
        data = load_formulas(path, targets=params.target, conditions=params.conditions,
                             content_unit=params.content_unit, name=path.stem if path.is_file() else path.name,
                             **reading_options(params))
        truth = truth_table(path)
    else:
        if spec not in DATASETS:
            raise ValueError(f"data {spec!r}: not 'synth:<preset>', not an existing folder or file, and not a "
                             f"registered dataset ({sorted(DATASETS)})")
        data = load_dataset(spec)
    target = params.target or data.targets[0]
    if target not in data.properties.columns:
        raise ValueError(f"target {target!r} not in {data.name} properties {list(data.properties.columns)}")
    conditions = tuple(params.conditions) if params.conditions else data.conditions
    missing = [c for c in conditions if c not in data.properties.columns]
    if missing:
        raise ValueError(f"conditions {missing} not in {data.name} properties {list(data.properties.columns)}")
    return FormulaData(data.formulas, data.properties, data.materials, (target,), conditions, data.name), truth


def reading_options(params: RunParams) -> dict:
    """The keyword arguments of :func:`mrl.data.load_formulas` that say how a run's data files are read."""
    return {"layout": params.layout, "sheets": params.sheets, "sheet": params.sheet, "id_column": params.id_column,
            "material_columns": params.material_columns or None, "ignore_columns": params.ignore_columns,
            "sep": params.sep, "decimal": params.decimal, "below_limit": params.below_limit,
            "text_values": params.text_values, "duplicates": params.duplicates}


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _provenance() -> dict:
    return {"mrl": mrl.__version__, "git_sha": _git_sha(), "python": platform.python_version(),
            "torch": str(torch.__version__), "numpy": np.__version__, "pandas": pd.__version__,
            "sklearn": sklearn.__version__}


def run_dir(params: RunParams) -> Path:
    """The folder a run with these params is written to: ``<runs_dir>/<name>``."""
    return Path(params.runs_dir) / params.name


# ---------------------------------------------------------------------------------------------- planning
#: Fewer training formulas than this: the plan warns (too little to learn one vector per material from).
MIN_TRAIN_FORMULAS = 20
#: Fewer eval formulas than this (but some): the plan warns (eval metrics are noise).
MIN_EVAL_FORMULAS = 5
#: Keys of a run's params that say where it is, not what it is (ignored when resuming a moved folder).
LOCATION_KEYS = ("name", "runs_dir")


@dataclass
class RunPlan:
    """Everything a run decides before training: the data, its split, and each choice with its reason.

    Built by :func:`plan_run`; :func:`run_experiment` logs :meth:`describe` and trains on it, ``mrl validate``
    prints it.
    """

    params: RunParams
    data: FormulaData
    truth: pd.DataFrame | None
    split: np.ndarray  # label of every sample: train / calib / eval / test
    target: str
    target_transform: str  # resolved: none | log10
    transform_reason: str
    base_material: str | None  # pinned at the origin (pin_origin resolved on the training formulas)
    device: str  # resolved: cpu, cuda...
    warnings: list[str]
    small_data: str = ""  # what small_data resolved to (mrl.small_data), in words

    @property
    def train_data(self) -> FormulaData:
        """The samples the model trains on."""
        return self.data.subset(self.split == "train")

    @property
    def eval_data(self) -> FormulaData:
        """The samples it is evaluated on (monitoring only)."""
        return self.data.subset(self.split == "eval")

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{split: (samples, formulas)}`` for train, calib (held out of training for intervals), eval and test."""
        fids = self.data.properties["formula_id"].to_numpy()
        return {name: (int((self.split == name).sum()), len(set(fids[self.split == name])))
                for name in ("train", "calib", "eval", "test")}

    def steps(self) -> StepPlan:
        """The training length (:func:`mrl.train.resolve_steps`); for ``steps: auto`` from the training samples
        less the validation share (about: the validation formulas are drawn when training starts)."""
        p = self.params
        n = self.counts()["train"][0]
        if p.early_stopping or p.steps == "auto":
            n = max(1, round(n * (1 - p.validation_fraction)))
        return resolve_steps(p.steps, n, p.batch_size, p.eval_every, p.early_stopping, p.patience)

    def usage(self) -> dict[str, float]:
        """Formulas per material over the whole data: median, max, materials used once, unused materials."""
        per = self.data.formulas.groupby("material_id")["formula_id"].nunique()
        per = per.reindex(self.data.material_ids, fill_value=0)
        used = per[per > 0]
        return {"median": float(used.median()) if len(used) else 0.0, "max": int(per.max()) if len(per) else 0,
                "once": int((per == 1).sum()), "unused": int((per == 0).sum())}

    def describe(self) -> list[str]:
        """The plan as readable lines (warnings not included: see :attr:`warnings`)."""
        p, data = self.params, self.data
        counts = self.counts()
        usage = self.usage()
        inverse = f"; entered as 1000 / value: {', '.join(p.inverse_conditions)}" if p.inverse_conditions else ""
        split_desc = {"random": f"random by formula, eval_fraction {p.eval_fraction:g}, seed {p.split_seed}",
                      "group": f"by group, eval_fraction {p.eval_fraction:g}, seed {p.split_seed}",
                      "material": f"by material, eval_fraction {p.eval_fraction:g} of the materials, "
                                  f"seed {p.split_seed}",
                      "column": "the data's split column"}[p.split]
        pins = (f"base {self.base_material} pinned at the origin" if self.base_material
                else "no base pinned (pin_origin: null)")
        extra = [f"{len(p.pin)} more pinned" if p.pin else "", f"{len(p.tie)} tied" if p.tie else ""]
        return [
            f"data: {data.name} ({p.data}): {data.n_materials} materials, {data.n_formulas} formulas, "
            f"{data.n_samples} samples",
            f"target: {self.target}; transform: {self.target_transform} ({self.transform_reason})",
            f"conditions: {', '.join(data.conditions) or 'none'}{inverse}",
            f"split: {split_desc}: " + ", ".join(f"{name} {n} samples / {f} formulas"
                                                 for name, (n, f) in counts.items()),
            f"materials: {data.n_materials}, {'; '.join(x for x in (pins, *extra) if x)}; formulas per material: "
            f"median {usage['median']:g}, max {usage['max']}, {usage['once']} used once, {usage['unused']} unused",
            f"model: embedding_dim {p.embedding_dim}, head {p.head}, interaction {describe_interaction(p)}, "
            f"content_scale {p.content_scale}, loss {p.loss}, "
            + (f"material features {p.features} through a {p.feature_map} map (residual weight decay "
               f"{p.residual_weight_decay:g})" if p.features else "no material features (vectors from data alone)"),
            f"training: {self.steps().reason}"
            + ("; then trained again on all training formulas over the same schedule up to the best step (auto_refit)"
               if p.steps == "auto" and p.auto_refit else "")
            + f", batch {p.batch_size}, lr {p.lr:g}, seed {p.seed}, device {self.device}"
            + (f" ({p.device})" if p.device != self.device else "")
            + (f"; early stopping on {p.validation_fraction:g} of the training formulas (patience {p.patience})"
               if p.early_stopping and p.steps != "auto" else "")
            + (f"; stacked on {p.stack} (mrl.stacking)" if p.stack != "none" else ""),
            self.small_data or f"small-data settings: small_data {p.small_data}",
            f"uncertainty: {'one model' if p.ensemble == 1 else f'an ensemble of {p.ensemble} members'}; "
            + (f"intervals and domain thresholds calibrated on {counts['calib'][1]} held-out training formulas "
               f"(calibration_fraction {p.calibration_fraction:g})" if counts["calib"][0]
               else "no calibration formulas (calibration_fraction 0): no intervals"),
            describe_baselines(p.features, p.baselines),
        ]


def plan_run(params: RunParams) -> RunPlan:
    """Load and check everything a run needs, without training: data, target and its transform, conditions,
    split, pinned and tied materials, device. Raises ValueError (or :class:`mrl.tables.DataError`, or FileNotFoundError)
    naming what is wrong; collects warnings (tiny data) in :attr:`RunPlan.warnings`."""
    device = str(resolve_device(params.device))
    data, truth = resolve_data(params)
    target = data.targets[0]
    check_conditions(params.inverse_conditions, params.head, params.temperature, data.conditions, data.name)
    split = make_split(data, params.split, params.eval_fraction, params.split_seed)
    split = hold_out_calibration(split, data.properties["formula_id"].to_numpy(), params.calibration_fraction,
                                 params.split_seed)
    labels = pd.Series(split).value_counts(dropna=False).to_dict()
    train = split == "train"
    if not train.any():
        held = {"random": "formula", "group": "group", "material": "material (and every formula holding it)"}
        raise ValueError(
            f"{data.name}: the {params.split} split leaves no training samples ({data.n_formulas} formula(s), "
            f"{data.n_samples} sample(s): " + ", ".join(f"{k} {v}" for k, v in labels.items()) + "; "
            + (f"it holds out at least one {held[params.split]}: add data or choose another split"
               if params.split in held else "mark some rows 'train' in the split column") + ")")
    fids = data.properties["formula_id"].to_numpy()
    transform, reason = resolve_target_transform(
        data.target_values()[train], params.target_transform, labels=[f"formula {f}" for f in fids[train]],
        what=f"{data.name}: target {target!r} (training samples)")
    train_data = data.subset(train)
    params, small = resolve_small_data(params, int(pd.unique(fids[train]).size))
    base = None
    if params.pin_origin is not None:
        base = train_data.base_material() if params.pin_origin == "auto" else params.pin_origin
        material_rows(data.material_ids, [base], "pin_origin")
    material_rows(data.material_ids, list(params.pin), "pin")
    material_rows(data.material_ids, [*params.tie, *params.tie.values()], "tie")
    plan = RunPlan(params, data, truth, split, target, transform, reason, base, device, [], small)
    if params.calibration_fraction > 0 and not (split == "calib").any():
        plan.warnings.append("too few training formulas to hold out calibration formulas: no intervals")
    other = {k: v for k, v in labels.items() if k not in ("train", "eval", "test", "calib")}
    if other:
        plan.warnings.append(f"split labels {sorted(map(str, other))} ({sum(other.values())} samples) are neither "
                             f"train, eval nor test: those samples are not used")
    counts = plan.counts()
    if counts["train"][1] < MIN_TRAIN_FORMULAS:
        plan.warnings.append(f"only {counts['train'][1]} training formula(s) (< {MIN_TRAIN_FORMULAS}): too few to "
                             f"learn {data.n_materials} material vectors from; expect a poor model")
    if counts["eval"][0] == 0:
        plan.warnings.append("no eval samples: eval metrics will be empty")
    elif counts["eval"][1] < MIN_EVAL_FORMULAS:
        plan.warnings.append(f"only {counts['eval'][1]} eval formula(s) (< {MIN_EVAL_FORMULAS}): eval metrics "
                             f"will be noise")
    if params.split != "material" and counts["eval"][0]:
        seen = set(train_data.formulas["material_id"])
        eval_forms = data.subset(split == "eval").formulas
        unseen = sorted(set(eval_forms["material_id"]) - seen)
        if unseen:
            plan.warnings.append(f"{len(unseen)} material(s) appear only in eval formulas (never in training), "
                                 f"e.g. {unseen[:3]}: their vectors stay at the start")
    return plan


def log_plan(plan: RunPlan, where: Path | str | None = None) -> None:
    """Log the plan's choices (INFO) and warnings (WARNING)."""
    if where is not None:
        log.info("run %s", where)
    for line in plan.describe():
        log.info("%s", line)
    for warning in plan.warnings:
        log.warning("%s", warning)


# ---------------------------------------------------------------------------------------------- running
def read_params(folder: str | Path) -> RunParams:
    """A run folder's own params (``params.yaml`` without its provenance)."""
    path = Path(folder) / PARAMS
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a run folder")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    values.pop("provenance", None)
    return RunParams.from_dict(values, source=str(path))


def params_differences(old: RunParams, new: RunParams, ignore: tuple[str, ...] = LOCATION_KEYS) -> list[str]:
    """``"key: old -> new"`` for every key (but ``ignore``) whose value differs."""
    a, b = old.to_dict(), new.to_dict()
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if k not in ignore and a[k] != b[k]]


def run_state(folder: str | Path) -> str:
    """``finished`` (metrics.json), ``unfinished`` (a checkpoint to resume from) or ``none``."""
    folder = Path(folder)
    if (folder / METRICS).exists():
        return "finished"
    if (folder / CHECKPOINT).exists():
        return "unfinished"
    return "none"


def _check_resumable(out: Path, plan: RunPlan) -> None:
    """Refuse to continue a run with other params, or on a split that the data no longer gives."""
    if (out / PARAMS).exists():
        diff = params_differences(read_params(out), plan.params)
        if diff:
            raise ValueError(f"{out} was started with other params ({'; '.join(diff)}); resume it with its own "
                             f"params (mrl train --resume {out}) or start a new run under another name")
    if (out / SPLIT).exists():
        stored = pd.read_parquet(out / SPLIT)
        now = plan.data.properties["formula_id"].astype(str).to_numpy()
        if (len(stored) != len(now) or not (stored["formula_id"].astype(str).to_numpy() == now).all()
                or not (stored["split"].astype(str).to_numpy() == plan.split.astype(str)).all()):
            raise ValueError(f"{out / SPLIT} differs from the split that {plan.data.name} and the params give now "
                             f"(did the data change?); start a new run instead of resuming")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what creating it makes), or None."""
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def run_experiment(params: RunParams, resume: bool = False, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Train and evaluate one run; write its folder and return the path.

    * Nothing is created before the data, the target transform, the split and the estimator's settings have been
      checked (:func:`plan_run`); the plan is logged. A new run that fails before its first checkpoint leaves no
      folder (in a folder that existed before, e.g. a sweep point's, only its own files are removed).
    * A finished run (``metrics.json`` present) is never overwritten unless ``overwrite``; an unfinished one
      (checkpoint only) needs ``resume`` (continue) or ``overwrite`` (start again).
    * ``overwrite`` builds the new run in a temporary sibling folder and swaps it in only when it has finished
      (:func:`mrl.io.atomic_dir`): a failing or interrupted attempt leaves the old run untouched.
    * ``resume`` continues from the checkpoint, after checking that ``params`` (but ``name``/``runs_dir``) and the
      split equal the run's own; ``params.yaml`` and ``split.parquet`` are not rewritten. A finished run is
      returned as it is; with nothing to continue, the run starts from step 0 (what a sweep point relies on;
      ``mrl train --resume`` refuses that case).
    * :class:`mrl.train.TrainingInterrupted` (Ctrl-C, SIGTERM) propagates after the loop saved a checkpoint; the
      folder is kept for ``resume``.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    out = run_dir(params)
    state = run_state(out)
    if state == "finished" and not overwrite:
        if resume:
            log.info("%s is already finished; nothing to resume", out)
            return out
        raise FileExistsError(f"{out} holds a finished run; choose another name or pass overwrite")
    if state == "unfinished" and not (resume or overwrite):
        raise FileExistsError(f"{out} holds an unfinished run; pass resume to continue it or overwrite")
    continuing = resume and state == "unfinished"
    plan = plan_run(params)
    if continuing:
        _check_resumable(out, plan)
    log_plan(plan, f"{out} ({'resumed' if continuing else 'replacing the old run' if state != 'none' else 'new'})")
    est = MixtureRegressor.from_params(plan.params, progress=progress)
    if state != "none" and overwrite:
        with atomic_dir(out) as tmp:
            _train(tmp, plan, est, resume=False)
    elif continuing:
        _train(out, plan, est, resume=True)
    else:
        created = _first_missing(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            _train(out, plan, est, resume=False)
        except BaseException:
            if not (out / CHECKPOINT).exists():  # nothing to resume from: leave nothing behind
                if created is not None:
                    shutil.rmtree(created, ignore_errors=True)
                else:
                    for name in RUN_FILES:
                        (out / name).unlink(missing_ok=True)
            raise
    metrics = read_json(out / METRICS)
    for name in ("train", "eval", "test"):
        if metrics.get(name, {}).get("n"):
            log.info("%s: %s", out, describe_split(name, metrics[name], metrics.get("target", "the property")))
    if (out / BASELINES).exists():
        line = summary_line(metrics, read_json(out / BASELINES), unit=metrics.get("target_unit") or "")
        if line:
            log.info("%s: %s", out, line)
    return out


def _train(folder: Path, plan: RunPlan, est: MixtureRegressor, resume: bool) -> None:
    """Write the run's inputs (unless they are there), train (or continue) its members and write its results:
    predictions with calibrated intervals, calibration and domain files, vectors; metrics last."""
    params, data, split = plan.params, plan.data, plan.split
    if not (resume and (folder / SPLIT).exists()):
        write_table(pd.DataFrame({"sample": np.arange(data.n_samples), "formula_id": data.properties["formula_id"],
                                  "split": split}), folder / SPLIT)
    if not (resume and (folder / PARAMS).exists()):
        write_text(yaml.safe_dump({**params.to_dict(), "provenance": _provenance()}, sort_keys=False),
                   folder / PARAMS)
    est.fit(plan.train_data, plan.eval_data, checkpoint_path=folder / CHECKPOINT, resume=resume)
    log.info("trained %d steps on %s", est.n_steps_, est.device_)
    members = [est, *fit_members(params, plan.train_data, plan.eval_data, folder, resume=resume)]
    member_preds = member_predictions(members, data)
    predictor = calibrated_predictor(members, data, split, name=folder.name, predictions=member_preds)

    y = data.target_values()
    mean, spread = member_summary(member_preds, predictor.transform)
    pred = member_preds[0] if len(members) == 1 else from_model_units(mean, predictor.transform)
    metrics = score_predictions(y, pred, split, est.target_transform_ == "log10")
    metrics.update(steps=est.n_steps_, wall_s=round(est.wall_s_ + sum(m.wall_s_ for m in members[1:]), 2),
                   embedding_dim=params.embedding_dim, target=data.targets[0],
                   target_unit=params.target_unit or header_unit(data.targets[0]),
                   target_transform=est.target_transform_, data=data.name, n_materials=data.n_materials,
                   n_formulas=data.n_formulas, n_samples=data.n_samples,
                   pinned=[str(data.material_ids[i]) for i in est.pinned_], device=str(est.device_),
                   ensemble=len(members), best_step=est.best_step_, stopped_step=est.stopped_step_,
                   step_budget=est.steps_, stack=None if est.stack_ is None else est.stack_.kind,
                   small_data=plan.small_data)
    predictions = data.properties[["formula_id", *data.conditions]].copy()
    predictions["split"] = split
    predictions["y_true"] = y
    predictions["y_pred"] = pred
    if predictor.calibration is not None:
        metrics["intervals"] = {}
        for level in LEVELS:
            pct = int(round(100 * level))
            lower, upper, _ = predictor.interval(mean, spread, level)  # clipped like the predictions
            predictions[f"lower_{pct}"], predictions[f"upper_{pct}"] = lower, upper
            for name in dict.fromkeys(split.tolist()):
                rows = split == name
                metrics["intervals"].setdefault(name, {})[f"coverage_{pct}"] = coverage(y[rows], lower[rows],
                                                                                         upper[rows])
    if len(members) > 1:
        predictions["spread"] = spread
    write_table(predictions, folder / PREDICTIONS)
    predictor.save_extras(folder)
    write_table(est.embeddings(), folder / EMBEDDINGS)
    if len(members) > 1:
        tables = [m.embeddings() for m in members]
        for k, table in enumerate(tables[1:], start=1):
            write_table(table, member_dir(folder, k) / EMBEDDINGS)
        write_table(neighbour_stability(tables), folder / NEIGHBOUR_STABILITY)
    write_table(est.snapshots(), folder / SNAPSHOTS)
    write_table(est.history_, folder / HISTORY)
    if est.stack_ is not None:  # also in the checkpoint, which is what mrl predict reads
        write_json(est.stack_.to_state(), folder / STACK)
    if params.baselines:
        write_json(fit_baselines(data, split, est.target_transform_, params.features, seed=params.seed),
                   folder / BASELINES)
    write_json(metrics, folder / METRICS)


@dataclass
class Run:
    """A finished run folder (or an adapted one: ``checkpoint.pt`` + ``adapt.json``), read lazily."""

    path: Path

    @property
    def adapted(self) -> bool:
        """True for a folder written by ``mrl add-materials`` / ``tie-materials`` (its params are its source's)."""
        return (self.path / ADAPT).exists()

    @cached_property
    def params(self) -> RunParams:
        """The run's params (an adapted folder's: its source run's)."""
        if self.adapted:
            return read_params(read_json(self.path / ADAPT)["source_run"])
        return read_params(self.path)

    @cached_property
    def metrics(self) -> dict:
        """``metrics.json``: errors per split, interval coverage, steps, wall time."""
        return read_json(self.path / METRICS)

    @cached_property
    def embeddings(self) -> pd.DataFrame:
        """One row per material: usage, norm and the vector ``e0..`` (member 0)."""
        return self._read(EMBEDDINGS)

    @cached_property
    def snapshots(self) -> pd.DataFrame:
        """The vectors over training: ``step, material_id, e0..``."""
        return self._read(SNAPSHOTS)

    @cached_property
    def history(self) -> pd.DataFrame:
        """Loss and eval MAE by step."""
        return self._read(HISTORY)

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """Every measurement's split, measured and predicted value (and interval)."""
        return self._read(PREDICTIONS)

    @cached_property
    def split(self) -> pd.DataFrame:
        """Split label of every measurement."""
        return self._read(SPLIT)

    @cached_property
    def estimator(self) -> MixtureRegressor:
        """The trained model (member 0 of an ensemble), rebuilt from the checkpoint (imports torch on first use)."""
        return MixtureRegressor.load(self.path / CHECKPOINT)

    @cached_property
    def predictor(self) -> Predictor:
        """All members with the run's calibration and domain (:class:`mrl.predict.Predictor`)."""
        return Predictor.from_folder(self.path)

    def predict(self, formulas: pd.DataFrame | str | Path, conditions: pd.DataFrame | str | Path | None = None,
                **kw) -> pd.DataFrame:
        """The prediction table of new formulas (long format, no target): prediction, 80 %/95 % intervals,
        domain flags and the materials that move each prediction most (see :meth:`mrl.predict.Predictor.predict`)."""
        return self.predictor.predict(formulas, conditions, **kw)

    def _read(self, name: str) -> pd.DataFrame:
        """A table of the run folder by file name (Parquet, or ``history.csv``)."""
        path = self.path / name
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)

    def data(self) -> tuple[FormulaData, pd.DataFrame | None]:
        """The run's data set and hidden truth (if any), re-resolved from its params."""
        return resolve_data(self.params)


def load_run(path: str | Path) -> Run:
    """Open a finished run folder or an adapted model folder."""
    path = Path(path)
    if not (path / METRICS).exists() and not ((path / ADAPT).exists() and (path / CHECKPOINT).exists()):
        raise FileNotFoundError(f"{path}: no metrics.json (and not an adapted folder with adapt.json and "
                                f"checkpoint.pt); not a finished run")
    return Run(path)
