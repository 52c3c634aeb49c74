"""The one checkpoint format: what rebuilds a model, what resumes its training, and a version that is checked.

A checkpoint is a ``torch.save`` dict loaded with ``weights_only=True`` (tensors and plain Python values only):

* ``format``, ``version``, ``mrl_version``: :data:`FORMAT`, :data:`VERSION` and the writing package's version;
  another format or version is refused with a message saying what to do.
* ``model_params`` and ``state_dict``: rebuild the module (``MixtureModel(**model_params)``).
* ``estimator``: what rebuilds the fitted estimator around it (params, vocabulary, target, transform...).
* ``progress``: ``step``, ``history`` (list of dicts) and ``wall_s``.
* ``training`` (only in checkpoints written while training): optimiser, scheduler and RNG state, so a resumed run
  ends with exactly the numbers of an uninterrupted one.

Material vectors recorded during training (snapshots) are not kept in the ``.pt`` file: while training runs they
sit beside it in ``<stem>.snapshots.npz`` (:func:`mrl.run_files.snapshots_path`), and a finished run has them in
``snapshots.parquet``.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mrl
from mrl.io import atomic_path

FORMAT = "mrl-checkpoint"
#: Version 1 (mrl <= 0.1.0 before this module) pickled numpy arrays and is not read any more.
VERSION = 2


class CheckpointError(ValueError):
    """A file that is not an mrl checkpoint of the version this package reads."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, estimator: dict[str, Any],
                    progress: dict[str, Any], training: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (see the module docstring for its sections); return ``path``."""
    payload = {"format": FORMAT, "version": VERSION, "mrl_version": mrl.__version__,
               "model_params": model.model_params, "state_dict": model.state_dict(), "estimator": estimator,
               "progress": progress, "training": training}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU with ``weights_only=True``; refuse other formats and versions."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here (is this a run folder that finished or was "
                                f"interrupted after its first checkpoint?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a checkpoint this mrl ({mrl.__version__}) can read: it was written "
                              f"by an older mrl (format 1) or is damaged ({str(exc).splitlines()[0][:120]}); "
                              f"retrain the run, or read it with the mrl version that wrote it") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mrl checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload.get('version')} (written by mrl "
                              f"{payload.get('mrl_version')}); this mrl ({mrl.__version__}) reads version {VERSION}: "
                              f"retrain the run, or read it with the mrl version that wrote it")
    return payload


def save_snapshots(path: str | Path, snapshots: dict[int, np.ndarray]) -> Path:
    """Write ``{step: vectors}`` atomically as an ``.npz`` (one array per step, named ``step_<n>``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{f"step_{int(step)}": vec for step, vec in snapshots.items()})
    return Path(path)


def load_snapshots(path: str | Path) -> dict[int, np.ndarray]:
    """Read what :func:`save_snapshots` wrote; an absent file gives ``{}``."""
    path = Path(path)
    if not path.is_file():
        return {}
    with np.load(path) as npz:
        return {int(key.split("_", 1)[1]): npz[key] for key in npz.files}
