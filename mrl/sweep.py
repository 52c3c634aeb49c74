"""Sweeps: run the notebooks with papermill for every point of a parameter grid.

A sweep is a YAML file, ``params/<sweep>.yaml``::

    name: lab_small                       # sweep folder: <runs_dir>/<name>/
    notebooks: [02_train, 03_evaluate, 04_visualize]   # executed for every point, in order
    data_notebook: 01_data                # executed once per sweep, into <runs_dir>/<name>/data/
    base: {data: "synth:small", steps: 3000}           # RunParams keys shared by all points
    grid: {embedding_dim: [2, 4, 6]}      # RunParams keys -> values; the points are the cartesian product
    point_name: "dim_{embedding_dim:04d}" # folder of a point (zero-padded so names sort)
    notebook_params: {04_visualize: {map_methods: [pca]}}   # optional: display options of one notebook
    runs_dir: runs                        # optional, default "runs"
    jobs: 2                               # optional: parallel workers when the caller does not say (default 1)
    scheduler: tcp://head-node:8786       # optional: hand points to a dask.distributed cluster (see below)

Every point runs in ``<runs_dir>/<name>/<point>/``: the run's files (``params.yaml``, ``metrics.json``,
checkpoint...), the executed notebooks with their outputs, the figures they save, and then either a ``done``
marker or ``error.txt`` (which notebook failed, and its traceback).

Behaviour:

* All points' params are validated with :meth:`RunParams.from_dict` before anything runs, and a point whose
  folder holds a run made with other params is refused (delete the folder or rename the sweep).
* Resumable and idempotent: a point with a ``done`` marker is skipped. An interrupted point (Ctrl-C, SIGKILL)
  has no marker and is executed again; ``run_experiment(resume=True)`` in ``02_train`` continues training from
  its last checkpoint, so finished work is not redone.
* A failed point writes ``error.txt`` and never stops the others. Failed points are **not** re-run by default
  (a deterministic failure would only fail again); pass ``retry_failed=True`` (``mrl sweep --retry-failed``)
  after fixing the cause. With ``check=True`` (what ``mrl sweep`` uses) :func:`run_sweep` then raises
  :class:`SweepFailed` naming every failed point (this run's or an earlier one's), so ``mrl sweep`` exits with
  status 1 and ``mrl sweep ... && mrl report ...`` stops there.
* ``jobs > 1`` runs points in parallel worker processes, each notebook in its own kernel, with the CPU
  threads split between workers (``OMP_NUM_THREADS``; unless already set).
* ``scheduler`` (``mrl sweep --scheduler ADDRESS``, or the sweep file's ``scheduler:`` key) hands the points to a
  `dask.distributed <https://distributed.dask.org>`_ scheduler instead of the local pool: ``tcp://host:8786`` (a
  running scheduler, e.g. one started by dask-jobqueue on SLURM or dask-kubernetes), or ``local:N`` (a
  ``LocalCluster`` of N worker processes on this machine). Each point is one task; the run folders must lie on a
  path every worker sees under the same name (the folders are made absolute before they are sent), and the
  notebooks run in this process's working directory, so relative data paths mean the same on every worker.
  Everything else is as with the pool: resumable, a failed point writes ``error.txt`` (a task that dies with its
  worker too), ``retry_failed``, progress. dask is optional: ``pip install "mrl[cluster]"``.
* At the end ``<runs_dir>/<name>/summary.csv`` gets one row per point (grid keys, status, steps, wall times,
  train/eval/full MAE, RMSE, R2, MAPE, and MAE/R2 of log10 of the property when it is positive), built from the
  run files.

Notebook parameters: a notebook receives the keys of ``base``/point/``notebook_params`` that its ``parameters``
cell declares (found with ``papermill.inspect_notebook``); RunParams keys it does not declare go into its
``extra`` dict parameter when it has one (``02_train`` does), so every RunParams key reaches training.
"""
from __future__ import annotations

import concurrent.futures as cf
import ctypes
import dataclasses
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tqdm.auto import tqdm

from mrl.error_sources import log10_metrics
from mrl.io import read_json, write_json, write_table, write_text
from mrl.params import RunParams
from mrl.run_files import METRICS, PREDICTIONS

log = logging.getLogger(__name__)

#: Marker written into a point folder once all its notebooks ran.
DONE = "done"
#: Written into a point folder when one of its notebooks failed.
ERROR = "error.txt"
#: The params a point was executed with (RunParams minus name/runs_dir), compared on the next run.
POINT_PARAMS = "point.yaml"
#: Folder name (inside the sweep folder) of the data notebook's "point".
DATA_POINT = "data"
#: Notebook parameter that collects RunParams keys the notebook does not declare one by one.
EXTRA = "extra"
SPEC_KEYS = ("name", "notebooks", "data_notebook", "base", "grid", "point_name", "notebook_params", "runs_dir",
             "notebooks_dir", "jobs", "scheduler")
METRIC_COLUMNS = [f"{split}_{m}" for split in ("train", "eval", "full") for m in ("mae", "rmse", "r2", "mape")]
#: Errors of log10(property) (see :func:`mrl.error_sources.log10_metrics`), empty for non-positive properties.
LOG10_COLUMNS = [f"{split}_{m}" for split in ("train", "eval", "full") for m in ("mae_log10", "r2_log10")]
#: Seconds papermill waits for a kernel to start (a busy machine is slow).
KERNEL_START_TIMEOUT = 180
#: Kernel command-line options: keep the kernels' own log quiet (ipykernel warns in every kernel that its local TCP
#: connection is unencrypted, and logs the interrupt sent at shutdown); errors still land in the notebooks.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
#: A kernel that dies before it answers (jupyter_client picks free ports before the kernel binds them, so two kernels
#: started at once can race for a port: "ZMQError: Address already in use") ran no cell: its notebook is started
#: again, at most this many times.
KERNEL_START_RETRIES = 2
KERNEL_START_FAILURE = "Kernel died before replying to kernel_info"


class SweepFailed(RuntimeError):
    """Some points of a sweep failed (raised by :func:`run_sweep` with ``check=True``, after the summary)."""


def default_notebooks_dir(sweep_path: Path | None = None) -> Path:
    """Where a sweep's notebooks are when its file does not say (``notebooks_dir``): the ``notebooks/`` folder of
    the project the sweep file belongs to (``params/<sweep>.yaml`` -> ``notebooks/`` beside ``params/``, or beside
    the file), else the ``notebooks/`` of the repository the package runs from (an in-place install)."""
    candidates = []
    if sweep_path is not None:
        folder = Path(sweep_path).resolve().parent
        candidates += [folder.parent / "notebooks", folder / "notebooks"]
    candidates.append(Path(__file__).resolve().parents[1] / "notebooks")
    found = next((c for c in candidates if c.is_dir() and any(c.glob("*.ipynb"))), None)
    if found is None:
        raise FileNotFoundError(f"no notebooks/ folder found (looked in {[str(c) for c in candidates]}); set "
                                f"notebooks_dir in the sweep file")
    return found


@dataclass
class Point:
    """One unit of work: notebooks executed with parameters into a folder."""

    name: str
    folder: Path
    notebooks: list[str]
    parameters: dict[str, dict[str, Any]]  # notebook -> papermill parameters
    params: dict[str, Any]  # RunParams values compared between runs (no name/runs_dir)
    grid_values: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``done``, ``failed`` or ``pending``, read from the folder."""
        if (self.folder / DONE).exists():
            return "done"
        if (self.folder / ERROR).exists():
            return "failed"
        return "pending"


@dataclass
class Sweep:
    """A parsed, validated sweep file."""

    name: str
    notebooks: list[str]
    data_notebook: str | None
    base: dict[str, Any]
    grid: dict[str, list]
    point_name: str
    notebook_params: dict[str, dict[str, Any]]
    runs_dir: Path
    notebooks_dir: Path
    jobs: int = 1
    source: str = "sweep"
    scheduler: str | None = None

    @property
    def folder(self) -> Path:
        """The sweep's folder: ``<runs_dir>/<name>``."""
        return self.runs_dir / self.name

    @property
    def summary_path(self) -> Path:
        """``summary.csv`` of the sweep."""
        return self.folder / "summary.csv"

    def grid_points(self) -> list[dict[str, Any]]:
        """The cartesian product of the grid, in grid order (first key slowest)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def points(self) -> list[Point]:
        """Every point (the data notebook's first, when there is one), validated; raises before any work."""
        declared = {nb: notebook_parameters(self.notebook_path(nb)) for nb in self.all_notebooks()}
        for nb, values in self.notebook_params.items():
            if nb not in declared:
                raise ValueError(f"{self.source}: notebook_params names {nb!r}, not one of {self.all_notebooks()}")
            unknown = sorted(set(values) - set(declared[nb]))
            if unknown:
                raise ValueError(f"{self.source}: notebook_params[{nb!r}] has {unknown}, not parameters of "
                                 f"{nb}; it declares {sorted(declared[nb])}")
        points = []
        if self.data_notebook:
            varied = sorted(set(self.grid) & set(declared[self.data_notebook]) - {"name", "runs_dir"})
            if varied:
                log.warning("%s: the grid varies %s, but %s runs once with the base values", self.source, varied,
                            self.data_notebook)
            values = {**self.base, "name": DATA_POINT, "runs_dir": str(self.folder)}
            points.append(self._point(DATA_POINT, values, [self.data_notebook], declared, {}, strict=False))
        names = set()
        for grid_values in self.grid_points():
            try:
                name = self.point_name.format(**grid_values)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"{self.source}: point_name {self.point_name!r} cannot format {grid_values}: "
                                 f"{exc!r}") from None
            if not name or "/" in name or name.startswith(".") or name == DATA_POINT:
                raise ValueError(f"{self.source}: point_name gives {name!r} for {grid_values}: not a usable "
                                 f"folder name")
            if name in names:
                raise ValueError(f"{self.source}: point_name {self.point_name!r} gives {name!r} twice; put every "
                                 f"grid key in it ({list(self.grid)})")
            names.add(name)
            values = {**self.base, **grid_values, "name": name, "runs_dir": str(self.folder)}
            points.append(self._point(name, values, self.notebooks, declared, grid_values))
        return points

    def _point(self, name: str, values: dict, notebooks: list[str], declared: dict[str, dict],
               grid_values: dict, strict: bool = True) -> Point:
        """``strict``: every value must reach a notebook (grid points); else only declared ones count (data)."""
        params = RunParams.from_dict(values, source=f"{self.source} point {name}").to_dict()
        parameters = {}
        for nb in notebooks:
            names = declared[nb]
            # every run parameter a notebook declares gets the value the point resolves (RunParams' default where
            # the sweep file is silent), so point.yaml records what the notebooks used
            given = {k: params[k] if k in params else v for k, v in values.items() if k in names}
            given.update({k: params[k] for k in names if k in params and k not in ("name", "runs_dir")})
            rest = {k: v for k, v in values.items() if k not in names}
            if EXTRA in names and rest:
                given[EXTRA] = rest
            given.update(self.notebook_params.get(nb, {}))
            parameters[nb] = given
        reached = set().union(*(set(p) | set(p.get(EXTRA, {})) for p in parameters.values()))
        lost = sorted(set(values) - reached)
        if lost and strict:
            raise ValueError(f"{self.source}: {lost} reach none of the notebooks {notebooks} of point {name} "
                             f"(no parameter of that name and no {EXTRA!r} parameter)")
        compared = {k: v for k, v in params.items() if k not in ("name", "runs_dir") and (strict or k in reached)}
        return Point(name, self.folder / name, list(notebooks), parameters, compared, grid_values)

    def all_notebooks(self) -> list[str]:
        """The data notebook (if any) and the per-point notebooks, in run order."""
        return ([self.data_notebook] if self.data_notebook else []) + list(self.notebooks)

    def notebook_path(self, notebook: str) -> Path:
        """The source ``.ipynb`` of a notebook name."""
        path = self.notebooks_dir / f"{notebook}.ipynb"
        if not path.exists():
            raise FileNotFoundError(f"{self.source}: notebook {path} not found")
        return path


def _quiet_papermill() -> None:
    """Papermill logs every notebook it opens at INFO ("Input Notebook: ..."); keep that out of the sweep's log."""
    if logging.getLogger("papermill").level == logging.NOTSET:
        logging.getLogger("papermill").setLevel(logging.WARNING)


def notebook_parameters(path: Path) -> dict[str, dict]:
    """Parameters declared in a notebook's ``parameters`` cell: name -> papermill's description."""
    import papermill

    _quiet_papermill()
    return papermill.inspect_notebook(str(path))


def load_sweep(path: str | Path, **overrides: Any) -> Sweep:
    """Read and check a sweep YAML file; ``overrides`` replace top-level keys (``runs_dir=...``, ``base={...}``).

    Relative ``runs_dir`` is taken from the current directory (like :attr:`RunParams.runs_dir`); relative
    ``notebooks_dir`` from the YAML file's folder; the default is the repository's ``notebooks/``.
    """
    path = Path(path)
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a mapping with keys {SPEC_KEYS}")
    spec.update(overrides)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; valid: {list(SPEC_KEYS)}")
    for key in ("name", "notebooks", "grid", "point_name"):
        if key not in spec:
            raise ValueError(f"{path}: missing key {key!r}")
    grid = spec["grid"] or {}
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"{path}: grid must be a non-empty mapping of RunParams keys to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{path}: grid[{key!r}] must be a non-empty list, got {values!r}")
    for key in ("base", "notebook_params"):
        if not isinstance(spec.get(key) or {}, dict):
            raise ValueError(f"{path}: {key} must be a mapping")
    unknown_params = sorted((set(spec.get("base") or {}) | set(grid)) - set(RunParams.names()))
    if unknown_params:
        raise ValueError(f"{path}: unknown parameter(s) {unknown_params} in base/grid; valid: {RunParams.names()}")
    notebooks_dir = Path(spec["notebooks_dir"]) if spec.get("notebooks_dir") else default_notebooks_dir(path)
    if not notebooks_dir.is_absolute() and spec.get("notebooks_dir"):
        notebooks_dir = path.parent / notebooks_dir
    name = str(spec["name"])
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{path}: name {name!r} is not a usable folder name")
    stem = lambda nb: str(nb).removesuffix(".ipynb")  # noqa: E731
    return Sweep(name=name, notebooks=[stem(nb) for nb in spec["notebooks"]],
                 data_notebook=stem(spec["data_notebook"]) if spec.get("data_notebook") else None,
                 base=dict(spec.get("base") or {}), grid=dict(grid), point_name=str(spec["point_name"]),
                 notebook_params={stem(k): v for k, v in (spec.get("notebook_params") or {}).items()},
                 runs_dir=Path(spec.get("runs_dir") or "runs"), notebooks_dir=notebooks_dir,
                 jobs=int(spec.get("jobs") or 1), source=str(path),
                 scheduler=str(spec["scheduler"]) if spec.get("scheduler") else None)


# ---------------------------------------------------------------------------------------------- execution
def _interrupted(exc: BaseException) -> bool:
    """True when a notebook stopped because of Ctrl-C/termination rather than an error of its own."""
    return getattr(exc, "ename", None) in ("KeyboardInterrupt", "SystemExit")


def execute_point(point: Point, notebooks_dir: str, cwd: str | None = None) -> dict[str, Any]:
    """Execute one point's notebooks in order into its folder; write ``done`` or ``error.txt``.

    ``cwd``: the notebooks' working directory (default: this process's).

    Returns ``{"point", "status", "seconds", "error"}``. Exceptions from the notebooks (a dead kernel included)
    are caught and recorded; interruptions (Ctrl-C, termination) propagate and leave the point pending.
    """
    import papermill

    _quiet_papermill()
    started = time.perf_counter()
    point.folder.mkdir(parents=True, exist_ok=True)
    (point.folder / ERROR).unlink(missing_ok=True)
    write_text(yaml.safe_dump(point.params, sort_keys=True), point.folder / POINT_PARAMS)
    current = None
    try:
        for notebook in point.notebooks:
            current = notebook
            for attempt in range(KERNEL_START_RETRIES + 1):
                try:
                    papermill.execute_notebook(
                        str(Path(notebooks_dir) / f"{notebook}.ipynb"), str(point.folder / f"{notebook}.ipynb"),
                        parameters=point.parameters[notebook], kernel_name="python3", progress_bar=False,
                        start_timeout=KERNEL_START_TIMEOUT, cwd=cwd or os.getcwd(), extra_arguments=KERNEL_ARGUMENTS)
                    break
                except RuntimeError as exc:
                    if KERNEL_START_FAILURE not in str(exc) or attempt == KERNEL_START_RETRIES:
                        raise
                    log.warning("%s: %s: the kernel died before it started (%s); starting it again", point.name,
                                notebook, exc)
    except Exception as exc:  # noqa: BLE001 - any notebook error is recorded, the sweep goes on
        if _interrupted(exc):
            raise KeyboardInterrupt(f"{point.name}: {current} interrupted") from exc
        seconds = time.perf_counter() - started
        detail = str(exc) if type(exc).__name__ == "PapermillExecutionError" else traceback.format_exc()
        write_text(f"point: {point.name}\nnotebook: {current} (executed copy: {point.folder / current}.ipynb)\n"
                   f"error: {type(exc).__name__}: {getattr(exc, 'ename', '')} {getattr(exc, 'evalue', '')}\n\n"
                   f"{detail}\n", point.folder / ERROR)
        return {"point": point.name, "status": "failed", "seconds": seconds,
                "error": f"{current}: {getattr(exc, 'ename', type(exc).__name__)}: "
                         f"{getattr(exc, 'evalue', exc)}".strip()}
    seconds = time.perf_counter() - started
    write_json({"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(seconds, 1), "notebooks": point.notebooks}, point.folder / DONE)
    return {"point": point.name, "status": "done", "seconds": seconds, "error": None}


def _worker_execute(point: Point, notebooks_dir: str) -> dict[str, Any]:
    """:func:`execute_point` in a pool worker. An interruption (Ctrl-C, or SIGTERM because the sweep process died)
    ends the worker once papermill has stopped its kernel: the pool would otherwise hand it the next point."""
    try:
        return execute_point(point, notebooks_dir)
    except (KeyboardInterrupt, SystemExit):
        os._exit(130)


def _worker_init(threads: int | None) -> None:
    """Pool worker set-up: die with the parent, exit cleanly on SIGTERM, split the CPU threads."""
    try:  # Linux: get SIGTERM when the sweep process dies (even by SIGKILL), so no orphan keeps writing
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # raises in the worker -> papermill stops its kernel
    if threads:
        for var in _THREAD_VARIABLES:
            os.environ.setdefault(var, str(threads))


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def _check_previous(points: list[Point]) -> None:
    """Refuse points whose folder holds work done with other params (resuming it would mix two runs)."""
    for point in points:
        stored = point.folder / POINT_PARAMS
        if not stored.exists():
            continue
        before = yaml.safe_load(stored.read_text()) or {}
        changed = {k: (before.get(k), v) for k, v in point.params.items() if before.get(k) != v}
        if changed:
            desc = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            raise ValueError(f"{point.folder} was run with other params ({desc}); delete that folder or give the "
                             f"sweep another name")


class _SweepLock:
    """``<sweep>/.lock`` holding the pid, so two processes never run the same sweep folder at once."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".lock"

    def __enter__(self) -> "_SweepLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            try:
                pid = int(self.path.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError):
                pass  # stale lock of a killed sweep
            except PermissionError:
                raise ValueError(f"{self.path.parent} is being run by process {pid}") from None
            else:
                if pid != os.getpid():
                    raise ValueError(f"{self.path.parent} is being run by process {pid} (else delete {self.path})")
        write_text(str(os.getpid()), self.path)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def run_sweep(path: str | Path | Sweep, jobs: int | None = None, retry_failed: bool = False, check: bool = False,
              scheduler: str | None = None, **overrides: Any) -> pd.DataFrame:
    """Execute every pending point of a sweep; write and return its summary table (one row per point).

    Args:
        path: the sweep YAML file (or a :class:`Sweep` from :func:`load_sweep`).
        jobs: parallel worker processes (each runs one point at a time, each notebook in its own kernel);
            ``None``: the sweep file's ``jobs`` (default 1).
        retry_failed: also re-run points that failed before (their ``error.txt`` is replaced).
        check: raise :class:`SweepFailed` when any point (the data notebook's included) has failed, in this run
            or before; otherwise failures are only logged and shown in the summary.
        scheduler: a dask.distributed scheduler address (``tcp://host:8786``) or ``local:N`` (a LocalCluster of N
            worker processes) that runs the points instead of the local pool (``jobs`` is then unused); ``None``:
            the sweep file's ``scheduler``, else the local pool.
        overrides: top-level keys of the sweep file to replace (e.g. ``runs_dir``, ``base``, ``grid``).
    """
    sweep = path if isinstance(path, Sweep) else load_sweep(path, **overrides)
    jobs = sweep.jobs if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    scheduler = scheduler or sweep.scheduler
    if scheduler:
        _check_scheduler(scheduler)  # before any work, like the params
    points = sweep.points()  # validates everything before any work
    _check_previous(points)
    todo = [p for p in points if p.status == "pending" or (retry_failed and p.status == "failed")]
    skipped = {s: sum(p.status == s for p in points if p not in todo) for s in ("done", "failed")}
    log.info("sweep %s: %d point(s), %d to run, %d done, %d failed before%s -> %s", sweep.name, len(points),
             len(todo), skipped["done"], skipped["failed"],
             "" if retry_failed or not skipped["failed"] else " (not retried; use --retry-failed)", sweep.folder)
    with _SweepLock(sweep.folder):
        write_text(yaml.safe_dump({"name": sweep.name, "notebooks": sweep.notebooks,
                                   "data_notebook": sweep.data_notebook, "base": sweep.base, "grid": sweep.grid,
                                   "point_name": sweep.point_name, "notebook_params": sweep.notebook_params,
                                   "points": [p.name for p in points]}, sort_keys=False),
                   sweep.folder / "sweep.yaml")
        try:
            if scheduler and todo:
                _execute_dask(todo, sweep, scheduler)
            else:
                _execute(todo, sweep, jobs)
        except KeyboardInterrupt:
            log.warning("sweep %s interrupted: finished points are kept; run the same command again to continue "
                        "(an interrupted point resumes from its last checkpoint)", sweep.name)
            raise
        finally:
            summary = write_summary(sweep, points)
    statuses = [p.status for p in points]
    failed = [p for p, status in zip(points, statuses) if status == "failed"]
    for point in failed:
        log.error("point %s failed: %s (see %s)", point.name, _error_line(point.folder / ERROR), point.folder / ERROR)
    log.info("sweep %s: %d done, %d failed, %d pending; summary %s", sweep.name, statuses.count("done"),
             len(failed), statuses.count("pending"), sweep.summary_path)
    if check and failed:
        raise SweepFailed(f"sweep {sweep.name}: {len(failed)} of {len(points)} point(s) failed: "
                          + ", ".join(f"{p.name} ({p.folder / ERROR})" for p in failed))
    return summary


def _execute(todo: list[Point], sweep: Sweep, jobs: int) -> None:
    bar = tqdm(total=len(todo), desc=f"sweep {sweep.name}", unit="point", disable=not todo)

    def finished(result: dict) -> None:
        bar.update(1)
        _log_result(result)

    notebooks_dir = str(sweep.notebooks_dir)
    try:
        if jobs == 1 or len(todo) <= 1:
            for point in todo:
                bar.set_postfix_str(point.name)
                finished(execute_point(point, notebooks_dir))
            return
        threads = max(1, (os.cpu_count() or 1) // jobs)
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_worker_init,
                                    initargs=(threads,)) as pool:
            futures = {pool.submit(_worker_execute, p, notebooks_dir): p for p in todo}
            try:
                for future in cf.as_completed(futures):
                    finished(future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        bar.close()


def _log_result(result: dict) -> None:
    if result["status"] == "done":
        log.info("%s done in %.0f s", result["point"], result["seconds"])
    else:
        log.error("%s FAILED after %.0f s: %s", result["point"], result["seconds"], result["error"])


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError('a sweep scheduler needs dask.distributed, which is not installed; install it with '
                          'pip install "mrl[cluster]" (or pip install "dask[distributed]"), or leave out '
                          '--scheduler / the scheduler key to use the local process pool') from None
    return distributed


def _check_scheduler(scheduler: str) -> None:
    """Refuse a malformed address (and a missing dask) before any work."""
    _import_distributed()
    if scheduler.startswith("local:"):
        count = scheduler.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"scheduler {scheduler!r}: expected local:N with N >= 1 workers")
    elif "://" not in scheduler and ":" not in scheduler:
        raise ValueError(f"scheduler {scheduler!r}: expected an address such as tcp://host:8786, or local:N")


def _dask_client(scheduler: str) -> tuple[Any, Any]:
    """(client, cluster or None) for ``scheduler``; ``local:N`` starts a LocalCluster of N worker processes (one
    thread each, CPU threads split between them as in the local pool)."""
    distributed = _import_distributed()
    if scheduler.startswith("local:"):
        workers = int(scheduler.split(":", 1)[1])
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        env = {var: os.environ.get(var, threads) for var in _THREAD_VARIABLES}
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, env=env)
        return distributed.Client(cluster), cluster
    return distributed.Client(scheduler, timeout="60s"), None


def _dask_task(point: Point, notebooks_dir: str, cwd: str) -> dict[str, Any]:
    """:func:`execute_point` in a dask worker; an interruption leaves the point pending (no marker)."""
    return execute_point(point, notebooks_dir, cwd=cwd)


def _execute_dask(todo: list[Point], sweep: Sweep, scheduler: str) -> None:
    """Run ``todo`` as tasks of a dask.distributed cluster (one task per point, no retries: a failed point is
    recorded, as with the pool). A task that raises (its worker died, say) gets an ``error.txt`` here."""
    distributed = _import_distributed()
    todo = [dataclasses.replace(p, folder=p.folder.resolve()) for p in todo]  # workers may run elsewhere
    notebooks_dir, cwd = str(Path(sweep.notebooks_dir).resolve()), os.getcwd()
    client, cluster = _dask_client(scheduler)
    bar = tqdm(total=len(todo), desc=f"sweep {sweep.name}", unit="point")
    try:
        log.info("sweep %s: %d point(s) to dask scheduler %s (%d worker(s))", sweep.name, len(todo),
                 client.scheduler.address, len(client.scheduler_info().get("workers", {})))
        tag = uuid.uuid4().hex[:8]
        futures = {client.submit(_dask_task, p, notebooks_dir, cwd, key=f"mrl-{sweep.name}-{p.name}-{tag}",
                                 pure=False, retries=0): p for p in todo}
        try:
            for future in distributed.as_completed(list(futures)):
                point = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - the task itself died: record it, go on
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    detail = "".join(traceback.format_exception(exc))
                    write_text(f"point: {point.name}\nnotebook: ? (the dask task failed: {type(exc).__name__})\n"
                               f"error: {type(exc).__name__}: {exc}\n\n{detail}\n", point.folder / ERROR)
                    result = {"point": point.name, "status": "failed", "seconds": 0.0,
                              "error": f"dask task: {type(exc).__name__}: {exc}"}
                bar.update(1)
                bar.set_postfix_str(point.name)
                _log_result(result)
        except BaseException:
            client.cancel(list(futures))
            raise
    finally:
        bar.close()
        client.close()
        if cluster is not None:
            cluster.close()


def write_summary(sweep: Sweep, points: list[Point] | None = None) -> pd.DataFrame:
    """Build ``summary.csv`` from the point folders (one row per grid point) and write it atomically."""
    points = [p for p in (points or sweep.points()) if p.name != DATA_POINT]
    rows = []
    for point in points:
        row = {"point": point.name, **point.grid_values, "status": point.status}
        metrics_path = point.folder / METRICS
        metrics = read_json(metrics_path) if metrics_path.exists() else {}
        row["embedding_dim"] = metrics.get("embedding_dim", point.params["embedding_dim"])
        row["steps"] = metrics.get("steps")
        row["wall_s"] = metrics.get("wall_s")
        for split in ("train", "eval", "full"):
            for m in ("mae", "rmse", "r2", "mape"):
                row[f"{split}_{m}"] = metrics.get(split, {}).get(m)
        row.update(_log10_columns(point.folder / PREDICTIONS) if metrics else {})
        done = point.folder / DONE
        row["notebooks_s"] = read_json(done).get("seconds") if done.exists() else None
        error = point.folder / ERROR
        row["error"] = _error_line(error) if error.exists() else None
        rows.append(row)
    columns = ["point", *sweep.grid, *(["embedding_dim"] if "embedding_dim" not in sweep.grid else []), "steps",
               "wall_s", *METRIC_COLUMNS, *LOG10_COLUMNS, "status", "notebooks_s", "error"]
    summary = pd.DataFrame(rows, columns=columns)
    write_table(summary, sweep.summary_path)
    return summary


def _log10_columns(predictions_path: Path) -> dict[str, float]:
    """``<split>_mae_log10`` and ``<split>_r2_log10`` from a run's predictions (nothing when not all positive)."""
    if not predictions_path.exists():
        return {}
    table = log10_metrics(pd.read_parquet(predictions_path))
    if table is None:
        return {}
    return {f"{row.split}_{m}": getattr(row, m) for row in table.itertuples() for m in ("mae_log10", "r2_log10")}


def _error_line(path: Path) -> str:
    lines = path.read_text().splitlines()
    notebook = next((line.split(":", 1)[1].split("(")[0].strip() for line in lines if line.startswith("notebook:")),
                    "?")
    error = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("error:")), "")
    return f"{notebook}: {error}"[:300]


def load_summary(sweep_dir: str | Path) -> pd.DataFrame:
    """Read ``<sweep_dir>/summary.csv``."""
    path = Path(sweep_dir) / "summary.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; run `mrl sweep params/<sweep>.yaml` first")
    return pd.read_csv(path)

