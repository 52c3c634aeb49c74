"""The files of a run folder: one name for each, used by every module that reads or writes a run.

This module is the ground floor of the package: it imports nothing from mrl, so any module can name a run's files
without importing the code that writes them (:mod:`mrl.runs`) or reads them (:mod:`mrl.predict`).

A run folder (``runs/<name>/``) holds:

==========================  =============================================================================
``params.yaml``             the run's parameters, with the git SHA and package versions
``split.parquet``           split label of every measurement (train / calib / eval / test)
``metrics.json``            error on each split in the property's units (and log10 for log targets), coverage
``checkpoint.pt``           the model (one versioned format, :mod:`mrl.checkpoint`)
``embeddings.parquet``      one vector per material
``snapshots.parquet``       the vectors over training
``history.csv``             loss and eval error over training
``predictions.parquet``     every measurement's prediction with its interval bounds
``baselines.json``          classical baselines on the same split, scored like ``metrics.json`` (:mod:`mrl.run_baselines`)
``calibration.json``        interval factors learned on the calib formulas (:mod:`mrl.uncertainty`)
``domain.npz``              the training domain (:mod:`mrl.domain`)
``neighbour_stability``     ensembles: how far members agree on each material's neighbours
``members/<kk>/``           ensembles: member k >= 1 (member 0 is the run's own checkpoint)
``adapt.json``              adapted folders (:mod:`mrl.adapt`): what was added or tied, and the source run
==========================  =============================================================================
"""
from __future__ import annotations

from pathlib import Path

PARAMS = "params.yaml"
SPLIT = "split.parquet"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
EMBEDDINGS = "embeddings.parquet"
SNAPSHOTS = "snapshots.parquet"
HISTORY = "history.csv"
PREDICTIONS = "predictions.parquet"
BASELINES = "baselines.json"
#: The stacked base model (``stack``; mrl.stacking): ridge coefficients or LightGBM's text model, as JSON.
STACK = "stack.json"
CALIBRATION = "calibration.json"
DOMAIN = "domain.npz"
NEIGHBOUR_STABILITY = "neighbour_stability.parquet"
ADAPT = "adapt.json"
MEMBERS = "members"


def snapshots_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's training snapshots sit beside it: ``checkpoint.pt`` -> ``checkpoint.snapshots.npz``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.snapshots.npz")


#: Material vectors recorded while training, beside the checkpoint.
CHECKPOINT_SNAPSHOTS = snapshots_path(CHECKPOINT).name
#: The files a finished run writes at its top level (what ``--overwrite`` replaces).
RUN_FILES = (PARAMS, SPLIT, METRICS, CHECKPOINT, CHECKPOINT_SNAPSHOTS, EMBEDDINGS, SNAPSHOTS, HISTORY, PREDICTIONS,
             CALIBRATION, DOMAIN, NEIGHBOUR_STABILITY, BASELINES, STACK)


def member_dir(run_dir: str | Path, k: int) -> Path:
    """Folder of ensemble member ``k >= 1`` inside a run folder: ``members/<kk>``."""
    return Path(run_dir) / MEMBERS / f"{k:02d}"
