"""A run is a folder: params in, metrics, checkpoint, embeddings, snapshots and predictions out.

``run_experiment(params)`` resolves the data, splits it, trains, and writes ``runs/<name>/``; ``load_run(path)``
reads it back. Every file is an open format (YAML, JSON, CSV, Parquet) except the torch checkpoint, and every
file is written atomically.
"""
from __future__ import annotations

import logging
import platform
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

import mrl
from mrl.data import FormulaData, load_formulas
from mrl.io import read_json, write_json, write_table, write_text
from mrl.metrics import split_metrics
from mrl.params import RunParams

if TYPE_CHECKING:  # importing torch takes seconds; reading a run folder does not need it
    from mrl.estimator import MixtureRegressor

log = logging.getLogger(__name__)

# The files of a run folder: every module names them through these constants.
PARAMS = "params.yaml"
SPLIT = "split.parquet"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
EMBEDDINGS = "embeddings.parquet"
SNAPSHOTS = "snapshots.parquet"
HISTORY = "history.csv"
PREDICTIONS = "predictions.parquet"
FILES = (PARAMS, SPLIT, METRICS, CHECKPOINT, EMBEDDINGS, SNAPSHOTS, HISTORY, PREDICTIONS)


def _find_table(folder: Path, stem: str) -> Path | None:
    for suffix in (".parquet", ".csv", ".csv.gz"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    return None


def _read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet table, or a CSV one (optionally gzipped) for any other suffix."""
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def resolve_data(params: RunParams) -> tuple[FormulaData, pd.DataFrame | None]:
    """Load the data a run names; return it with the hidden truth table (synthetic data only, else None).

    ``params.data`` is ``"synth:<preset>"``, a name registered in :mod:`mrl.datasets`, or a folder holding
    ``formulas``, ``properties`` and optionally ``materials`` tables (CSV or Parquet).
    """
    spec = params.data
    truth = None
    if spec.startswith("synth:"):
        from mrl.synth import make_lab

        data, truth = make_lab(spec.split(":", 1)[1], seed=params.data_seed)
    elif Path(spec).is_dir():
        folder = Path(spec)
        forms, props = _find_table(folder, "formulas"), _find_table(folder, "properties")
        if forms is None or props is None:
            raise FileNotFoundError(f"{folder}: needs formulas.(csv|parquet) and properties.(csv|parquet)")
        data = load_formulas(forms, props, _find_table(folder, "materials"), targets=params.target,
                             conditions=params.conditions, content_unit=params.content_unit, name=folder.name)
        truth_path = _find_table(folder, "truth")
        truth = _read_table(truth_path) if truth_path else None
    else:
        from mrl.datasets import DATASETS, load_dataset

        if spec not in DATASETS:
            raise ValueError(f"data {spec!r}: not 'synth:<preset>', not a folder, and not a registered dataset "
                             f"({sorted(DATASETS)})")
        data = load_dataset(spec)
    target = params.target or data.targets[0]
    if target not in data.properties.columns:
        raise ValueError(f"target {target!r} not in {data.name} properties {list(data.properties.columns)}")
    conditions = tuple(params.conditions) if params.conditions else data.conditions
    missing = [c for c in conditions if c not in data.properties.columns]
    if missing:
        raise ValueError(f"conditions {missing} not in {data.name} properties {list(data.properties.columns)}")
    return FormulaData(data.formulas, data.properties, data.materials, (target,), conditions, data.name), truth


def make_split(data: FormulaData, method: str = "random", eval_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Split label (``train``/``eval``/``test``) of every measurement, shape ``(n_samples,)``.

    ``random`` holds out a share of *formulas* (all measurements of a formula stay together); ``group`` holds out
    a share of the ``group`` column's values; ``material`` holds out a share of the *materials* (never the base,
    the one with the largest total content) and labels ``eval`` every formula holding one of them; ``column`` uses
    the data's own ``split`` column. Rows the data's ``split`` column marks ``test`` stay ``test`` under every
    method.
    """
    props = data.properties
    if method == "column":
        if "split" not in props.columns:
            raise ValueError(f"{data.name}: split='column' needs a 'split' column in the properties table")
        return props["split"].to_numpy(dtype=object)
    key = {"random": "formula_id", "group": "group", "material": "formula_id"}.get(method)
    if key is None:
        raise ValueError(f"unknown split method {method!r}")
    if key not in props.columns:
        raise ValueError(f"{data.name}: split='group' needs a 'group' column in the properties table")
    # rows the data set reserves as its test split stay out of training and eval whatever the method
    test = props["split"].eq("test").to_numpy() if "split" in props.columns else np.zeros(len(props), bool)
    if method == "material":
        forms = data.formulas[data.formulas["formula_id"].isin(set(props.loc[~test, "formula_id"]))]
        units = np.asarray(sorted(set(forms["material_id"]) - {data.base_material()}))
    else:
        units = np.asarray(pd.unique(props.loc[~test, key]))
    rng = np.random.default_rng(seed)
    held = set(units[rng.permutation(len(units))[:max(1, int(round(eval_fraction * len(units))))]])
    if method == "material":  # held materials -> the formulas holding one of them
        held = set(forms.loc[forms["material_id"].isin(held), "formula_id"])
    labels = np.where(props[key].isin(held), "eval", "train").astype(object)
    labels[test] = "test"
    return labels


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _provenance() -> dict:
    import sklearn
    import torch

    return {"mrl": mrl.__version__, "git_sha": _git_sha(), "python": platform.python_version(),
            "torch": str(torch.__version__), "numpy": np.__version__, "pandas": pd.__version__,
            "sklearn": sklearn.__version__}


def run_dir(params: RunParams) -> Path:
    return Path(params.runs_dir) / params.name


def run_experiment(params: RunParams, resume: bool = False, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Train and evaluate one run; write its folder and return the path.

    A finished run (``metrics.json`` present) is never overwritten unless ``overwrite``; an unfinished one
    (checkpoint only) needs ``resume`` (continue) or ``overwrite`` (start again).
    """
    from mrl.estimator import MixtureRegressor

    out = run_dir(params)
    if (out / "metrics.json").exists() and not overwrite:
        if resume:
            log.info("%s is already finished", out)
            return out
        raise FileExistsError(f"{out} holds a finished run; choose another name or pass overwrite")
    if (out / CHECKPOINT).exists() and not (resume or overwrite):
        raise FileExistsError(f"{out} holds an unfinished run; pass resume to continue it or overwrite")
    if overwrite:
        for name in FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data, _ = resolve_data(params)
    split = make_split(data, params.split, params.eval_fraction, params.split_seed)
    est = MixtureRegressor.from_params(params, progress=progress)
    write_table(pd.DataFrame({"sample": np.arange(data.n_samples), "formula_id": data.properties["formula_id"],
                              "split": split}), out / "split.parquet")
    write_text(yaml.safe_dump({**params.to_dict(), "provenance": _provenance()}, sort_keys=False),
               out / "params.yaml")
    train_data = data.subset(split == "train")
    eval_data = data.subset(split == "eval")
    est.fit(train_data, eval_data, checkpoint_path=out / CHECKPOINT, resume=resume)

    y = data.target_values()
    pred = est.predict(data)
    metrics = split_metrics(y, pred, split)
    metrics.update(steps=est.n_steps_, wall_s=round(est.wall_s_, 2), embedding_dim=params.embedding_dim,
                   target=data.targets[0], target_transform=est.target_transform_, data=data.name,
                   n_materials=data.n_materials, n_formulas=data.n_formulas, n_samples=data.n_samples,
                   pinned=[str(data.material_ids[i]) for i in est.pinned_], device=str(est.device_))
    predictions = data.properties[["formula_id", *data.conditions]].copy()
    predictions["split"] = split
    predictions["y_true"] = y
    predictions["y_pred"] = pred
    write_table(predictions, out / "predictions.parquet")
    write_table(est.embeddings(), out / "embeddings.parquet")
    write_table(est.snapshots(), out / "snapshots.parquet")
    write_table(est.history_, out / "history.csv")
    write_json(metrics, out / "metrics.json")
    log.info("%s: train MAE %.4g, eval MAE %.4g", out, metrics["train"]["mae"], metrics["eval"]["mae"])
    return out


@dataclass
class Run:
    """A finished run folder, read lazily."""

    path: Path

    @cached_property
    def params(self) -> RunParams:
        values = yaml.safe_load((self.path / "params.yaml").read_text())
        values.pop("provenance", None)
        return RunParams.from_dict(values, source=str(self.path / "params.yaml"))

    @cached_property
    def metrics(self) -> dict:
        return read_json(self.path / "metrics.json")

    @cached_property
    def embeddings(self) -> pd.DataFrame:
        return self._read("embeddings.parquet")

    @cached_property
    def snapshots(self) -> pd.DataFrame:
        return self._read("snapshots.parquet")

    @cached_property
    def history(self) -> pd.DataFrame:
        return self._read("history.csv")

    @cached_property
    def predictions(self) -> pd.DataFrame:
        return self._read("predictions.parquet")

    @cached_property
    def split(self) -> pd.DataFrame:
        return self._read("split.parquet")

    @cached_property
    def estimator(self) -> MixtureRegressor:
        """The trained model, rebuilt from the checkpoint (imports torch on first use)."""
        from mrl.estimator import MixtureRegressor

        return MixtureRegressor.load(self.path / CHECKPOINT)

    def _read(self, name: str) -> pd.DataFrame:
        """A table of the run folder by file name."""
        return _read_table(self.path / name)

    def data(self) -> tuple[FormulaData, pd.DataFrame | None]:
        """The run's data set and hidden truth (if any), re-resolved from its params."""
        return resolve_data(self.params)


def load_run(path: str | Path) -> Run:
    """Open a finished run folder."""
    path = Path(path)
    if not (path / "metrics.json").exists():
        raise FileNotFoundError(f"{path}: no metrics.json; not a finished run")
    return Run(path)
