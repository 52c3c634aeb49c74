"""Ensembles: several members trained on the same training formulas from different seeds, and what a run saves
so that its predictions come with intervals and domain flags.

Member 0 is the run's own model (``checkpoint.pt``, seed ``params.seed``), so a one-member run is exactly the
single model it always was; members 1..N-1 live in ``members/<k>/checkpoint.pt`` with seeds
:func:`member_seed`, each trained and resumed on its own, in parallel worker processes where cores allow.
Members' vectors are not aligned with each other (any rotation of the material space fits equally well):
maps and neighbour tables use member 0; :func:`neighbour_stability` says how far the others agree.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.neighbors import NearestNeighbors

from mrl.analysis import vector_columns
from mrl.checkpoint import load_checkpoint
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.params import RunParams
from mrl.run_files import CHECKPOINT, MEMBERS, member_dir
from mrl.train import TrainingInterrupted

log = logging.getLogger(__name__)
#: Seed of member k >= 1 is ``seed + SEED_STRIDE * k`` (member 0 keeps ``seed``), so sweeps over nearby seeds
#: never share members.
SEED_STRIDE = 7919


def member_seed(seed: int, k: int) -> int:
    """Seed of ensemble member ``k`` (member 0 keeps the run's ``seed``)."""
    return seed + SEED_STRIDE * k


def _fit_member(params: dict, k: int, train: FormulaData, eval_data: FormulaData | None, path: Path,
                resume: bool, threads: int | None) -> tuple[int, int, str | None]:
    """Train member ``k`` into ``path`` (a worker-process entry point). Returns ``(k, step, signal)``: the
    signal's name when SIGINT/SIGTERM stopped it (its checkpoint is saved), else None."""
    if threads:
        torch.set_num_threads(threads)
    est = MixtureRegressor.from_params(RunParams.from_dict(params), progress=False)
    est.set_params(seed=member_seed(params["seed"], k))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        est.fit(train, eval_data, checkpoint_path=path, resume=resume and path.exists())
    except TrainingInterrupted as exc:
        return k, exc.step, exc.signal_name
    log.info("member %d done: %d steps", k, est.n_steps_)
    return k, est.n_steps_, None


def fit_members(params: "RunParams", train: FormulaData, eval_data: FormulaData | None, run_dir: Path,
                resume: bool = False, jobs: int | None = None) -> list["MixtureRegressor"]:
    """Train members 1..``params.ensemble``-1 (member 0 is the run's own model) and return them loaded.

    ``jobs`` worker processes (default: as many as cores allow, at most the number of members), each with an equal
    share of the CPU threads; every member resumes from its own checkpoint when ``resume``.

    Raises:
        TrainingInterrupted: when SIGINT/SIGTERM stopped a member (after every member saved its checkpoint).
    """
    ks = list(range(1, params.ensemble))
    if not ks:
        return []
    jobs = max(1, min(len(ks), jobs or (os.cpu_count() or 1)))
    threads = max(1, (os.cpu_count() or 1) // jobs)

    paths = {k: member_dir(run_dir, k) / CHECKPOINT for k in ks}
    todo = [k for k in ks if not (resume and _finished(paths[k], params.steps))]
    values = params.to_dict()
    results = []
    if jobs == 1 or len(todo) <= 1:
        for k in todo:
            results.append(_fit_member(values, k, train, eval_data, paths[k], resume, None))
            if results[-1][2]:
                break
    else:
        log.info("training %d ensemble members in %d worker processes (%d threads each)", len(todo), jobs, threads)
        with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_fit_member, values, k, train, eval_data, paths[k], resume, threads) for k in todo]
            try:
                results = [f.result() for f in cf.as_completed(futures)]
            except KeyboardInterrupt:  # the workers got the signal too: let them save their checkpoints
                results = [f.result() for f in futures if not f.cancel()]
                results.append((0, 0, "SIGINT"))
    stopped = [r for r in results if r[2]]
    if stopped:
        k, step, signal_name = stopped[0]
        raise TrainingInterrupted(step, params.steps, paths.get(k), signal_name)
    return [MixtureRegressor.load(paths[k], device=params.device) for k in ks]


def member_paths(folder: str | Path) -> list[Path]:
    """``checkpoint.pt`` of every member of a run (or adapted) folder: member 0's, then ``members/*/``'s in order."""
    folder = Path(folder)
    return [folder / CHECKPOINT, *sorted(folder.glob(f"{MEMBERS}/*/{CHECKPOINT}"))]


def load_members(folder: str | Path, device: str = "cpu", first: MixtureRegressor | None = None
                 ) -> list[MixtureRegressor]:
    """Every member of a run (or adapted) folder; ``first``: member 0 when the caller has loaded it already."""
    paths = member_paths(folder)
    return [first or MixtureRegressor.load(paths[0], device=device),
            *(MixtureRegressor.load(p, device=device) for p in paths[1:])]


def _finished(path: Path, steps: int | str) -> bool:
    if not path.exists():
        return False

    progress = load_checkpoint(path)["progress"]  # steps "auto" always ends with a stopped_step
    return progress.get("stopped_step") is not None or isinstance(steps, int) and progress["step"] >= steps


def neighbour_stability(embeddings: Sequence[pd.DataFrame], k: int = 10, metric: str = "cosine") -> pd.DataFrame:
    """How stable each material's ``k`` nearest neighbours are across members: per material, the mean share of
    member 0's neighbours that another member also lists (1 = the same neighbours in every member).

    Columns ``material_id, n_formulas, neighbour_agreement``; pinned and never-used materials are left out.
    """
    first = embeddings[0]
    keep = (first["norm"] > 0).to_numpy() & ~first.get("pinned", pd.Series(False, index=first.index)).to_numpy(bool)
    ids = first["material_id"].to_numpy()[keep]
    k = min(k, int(keep.sum()) - 1)
    if k < 1:
        return pd.DataFrame(columns=["material_id", "n_formulas", "neighbour_agreement"])

    def neighbours(table: pd.DataFrame) -> np.ndarray:
        table = table.set_index("material_id").loc[ids]
        X = table[vector_columns(table)].to_numpy(np.float64)
        index = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(X)
        return index.kneighbors(X, return_distance=False)[:, 1:]

    ref = neighbours(first)
    shares = []
    for other in embeddings[1:]:
        nb = neighbours(other)
        shares.append([len(set(a) & set(b)) / k for a, b in zip(ref, nb)])
    agreement = np.mean(shares, axis=0) if shares else np.ones(len(ids))
    return pd.DataFrame({"material_id": ids, "n_formulas": first["n_formulas"].to_numpy()[keep],
                         "neighbour_agreement": agreement})
