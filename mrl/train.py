"""The training loop: minibatch Adam over formulas, periodic eval, vector snapshots, checkpoints and resume.

The batch order of step ``s`` depends only on ``(seed, s)`` (one permutation per epoch from
``numpy.random.default_rng([seed, epoch])``), and the checkpoint holds the model, optimiser and torch RNG
state, so a run resumed from a checkpoint ends with exactly the numbers of an uninterrupted run.

Early stopping (``LoopConfig.early_stopping``): a ``validate`` callback gives the validation metric (its MAE, or the
training loss: ``validation_metric``) on an inner validation part of the training data every ``eval_every`` steps; the loop keeps the state with the lowest one in memory (and in the
checkpoint's ``training`` section, so resume stays exact), stops after ``patience`` checks without improvement and
restores that state at the end. The state before the first step is a candidate too (checked at step 0, not logged),
and the validation loss is taken on predictions clipped as they are at prediction time.

``steps: auto`` (:func:`resolve_steps`, the default of ``mrl train``) keeps the state with the lowest validation
MAE over a budget that grows with the data: :data:`AUTO_EPOCHS` epochs clipped to [:data:`AUTO_MIN_STEPS`,
:data:`AUTO_MAX_STEPS`] steps, the cosine schedule spread over that budget, never stopped before its end
(:data:`AUTO_PATIENCE_SHARE`). Why (``benchmarks/training_length.py``, ``book/performance.md``): on the small lab
the network first fits the training formulas (train loss near 0 by ~2,000 steps) and only then, still at a high
learning rate, does the validation error fall a second time (best validation states at 10,000-11,000 of 20,000
steps); a shorter budget anneals before that second descent and a patience stop ends on the first dip (the history
of the rule is in CHANGELOG.md).
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from mrl.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_snapshots,
    save_checkpoint,
    save_snapshots,
)
from mrl.model import MixtureModel, make_batch
from mrl.params import RunParams, check_device_name
from mrl.run_files import snapshots_path

log = logging.getLogger(__name__)
#: Training losses on the standardised target: ``huber`` is quadratic within 1 SD, linear beyond.
LOSSES = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss,
          "huber": torch.nn.functional.huber_loss}
#: What early stopping minimises on the validation share (``validation_metric``): ``mae`` of the standardised
#: (transformed) target, whose argmin is that of the MAE the metrics report (log10 MAE for a log target); ``loss``
#: (None here) is the training loss of :data:`LOSSES`.
VALIDATION_METRICS = {"mae": torch.nn.functional.l1_loss, "loss": None}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> the first CUDA GPU when one exists, else the CPU; other names are checked to exist."""
    check_device_name(device, "device")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA GPU is available here; use device: auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here; use device: auto or cpu")
    return dev


def cosine_factor(step: int, steps: int, floor: float = 0.02) -> float:
    """Learning-rate factor of a cosine schedule from 1 at step 0 to ``floor`` at ``steps`` (held after)."""
    return floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1)))


def snapshot_steps(steps: int, every: int, n_early: int = 12) -> list[int]:
    """Steps at which material vectors are recorded: 0, a geometric series (early moves are fast), every ``every``."""
    early = np.unique(np.round(np.geomspace(1, max(steps, 2), n_early)).astype(int)) if steps > 1 else []
    regular = range(0, steps + 1, every)
    return sorted({0, steps, *map(int, early), *regular})


#: ``steps: auto``: the budget is AUTO_EPOCHS passes over the training samples, clipped to [AUTO_MIN_STEPS,
#: AUTO_MAX_STEPS] (large data never more than the old fixed default; AUTO_MIN_STEPS binds only for AUTO_EPOCHS below it).
#: 3,000 epochs give the small lab (7-8 batches an epoch) the old default's 20,000 steps: chosen on inner splits of
#: its training formulas (issue 26; 1,000 epochs annealed before the second descent of the validation error).
AUTO_EPOCHS = 3000
AUTO_MIN_STEPS = 2000
AUTO_MAX_STEPS = 20000
#: ``steps: auto`` checks the validation metric this many times over the budget ...
AUTO_CHECKS = 100
#: ... and stops only after this share of the checks without a lower one; 1.0: never before the budget's end (the
#: validation curve of the small lab falls a second time after a plateau of up to ~8,000 steps: a patience of 0.25
#: stopped there on an inner split); the best state is restored either way.
AUTO_PATIENCE_SHARE = 1.0


@dataclass(frozen=True)
class StepPlan:
    """The training length a run resolves: ``steps`` (the budget), ``eval_every``, whether it keeps the best
    validation state (``early_stopping``) with what ``patience``, and a readable ``reason``."""

    steps: int
    eval_every: int
    early_stopping: bool
    patience: int
    reason: str


def resolve_steps(steps: int | str, n_samples: int, batch_size: int, eval_every: int, early_stopping: bool,
                  patience: int) -> StepPlan:
    """Resolve ``steps`` (an int, or ``"auto"``) for ``n_samples`` training samples (after the validation share is
    held out). ``auto``: :data:`AUTO_EPOCHS` epochs clipped to [:data:`AUTO_MIN_STEPS`, :data:`AUTO_MAX_STEPS`],
    the validation metric checked :data:`AUTO_CHECKS` times (or every ``eval_every`` steps if that is more often),
    stopping after :data:`AUTO_PATIENCE_SHARE` of the checks without improvement (1.0: at the budget's end), the best
    state kept."""
    if steps != "auto":
        return StepPlan(int(steps), eval_every, early_stopping, patience, f"{int(steps):,} steps (fixed)")
    per_epoch = max(1, math.ceil(n_samples / batch_size))
    budget = int(min(AUTO_MAX_STEPS, max(AUTO_MIN_STEPS, AUTO_EPOCHS * per_epoch)))
    every = max(1, min(eval_every, budget // AUTO_CHECKS))
    checks = math.ceil(budget / every)
    wait = max(1, math.ceil(AUTO_PATIENCE_SHARE * checks))
    stop = "never stopped before the budget's end" if wait >= checks else f"stop after {wait} checks without improvement"
    reason = (f"steps auto: budget {budget:,} steps ({AUTO_EPOCHS:,} epochs of {per_epoch} batches of {batch_size} "
              f"over {n_samples:,} samples, clipped to [{AUTO_MIN_STEPS:,}, {AUTO_MAX_STEPS:,}]); validation check "
              f"every {every} steps, the best state kept, {stop}")
    return StepPlan(budget, every, True, wait, reason)


@dataclass
class LoopConfig:
    """Optimisation settings of one training loop."""

    steps: int
    batch_size: int
    lr: float
    embedding_lr: float
    weight_decay: float
    embedding_weight_decay: float
    lr_schedule: str
    eval_every: int
    snapshot_every: int
    checkpoint_every: int
    seed: int
    loss: str = RunParams.loss
    residual_weight_decay: float = RunParams.residual_weight_decay
    early_stopping: bool = RunParams.early_stopping
    patience: int = RunParams.patience
    schedule_steps: int | None = None  # the cosine schedule's length, when it is not ``steps`` (steps: auto's refit)

    @classmethod
    def from_params(cls, params: dict) -> "LoopConfig":
        """The loop's settings out of an estimator's (or run's) params; ``embedding_lr`` None means ``lr``."""
        values = {f.name: params[f.name] if f.name in params or f.default is MISSING else f.default
                  for f in fields(cls)}
        values["embedding_lr"] = values["embedding_lr"] or values["lr"]
        return cls(**values)


@dataclass
class LoopState:
    """What the loop produced; saved in checkpoints."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    wall_s: float = 0.0
    best_step: int | None = None  # early stopping: step of the lowest validation loss so far
    best_loss: float = float("inf")
    bad_checks: int = 0  # validation checks since the last improvement
    stopped_step: int | None = None  # early stopping: step where training ended (patience ran out or the last)
    best_state: dict[str, torch.Tensor] | None = None


class BatchOrder:
    """Sample indices of the batch at any step: consecutive slices of one permutation per epoch.

    The permutation of epoch ``e`` is ``default_rng([seed, e]).permutation(n)``, so the order depends only on
    ``(seed, step)`` and a resumed run sees the same batches.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = max(1, math.ceil(n / batch_size))
        self._epoch, self._perm = -1, np.arange(0)

    def __call__(self, step: int) -> np.ndarray:
        """Sample indices of the batch at ``step``."""
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]


def make_optimizer(model: MixtureModel, cfg: LoopConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam with separate learning rates for the material table (and scales) and the head.

    With features, the table is the per-material residual and gets ``residual_weight_decay``; the feature map ``g``
    (or graph encoder; and learned content scales) form a third group with ``embedding_lr`` and ``embedding_weight_decay``. Group 1
    is always the head.
    """
    if model.feature_map is None and model.graph is None:
        material = [p for n, p in model.named_parameters() if n in ("table", "log_scale")]
        head = [p for n, p in model.named_parameters() if n not in ("table", "log_scale")]
        groups = [{"params": material, "lr": cfg.embedding_lr, "weight_decay": cfg.embedding_weight_decay},
                  {"params": head, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
    else:
        named = dict(model.named_parameters())
        is_map = [n == "log_scale" or n.startswith(("feature_map.", "graph.")) for n in named]  # g: map or graph
        mapping = [p for p, m in zip(named.values(), is_map) if m]
        head = [p for (n, p), m in zip(named.items(), is_map) if n != "table" and not m]
        groups = [{"params": [named["table"]], "lr": cfg.embedding_lr, "weight_decay": cfg.residual_weight_decay},
                  {"params": head, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
                  {"params": mapping, "lr": cfg.embedding_lr, "weight_decay": cfg.embedding_weight_decay}]
    opt = torch.optim.Adam(groups, foreach=True)
    if cfg.lr_schedule == "cosine":
        def factor(step: int) -> float:
            return cosine_factor(step, cfg.schedule_steps or cfg.steps)
    elif cfg.lr_schedule == "constant":
        def factor(step: int) -> float:
            return 1.0
    else:
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {cfg.lr_schedule!r}")
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


class TrainingInterrupted(Exception):
    """Training stopped by SIGINT (Ctrl-C) or SIGTERM after its checkpoint was saved; resume continues it."""

    def __init__(self, step: int, steps: int, checkpoint_path: Path | None, signal_name: str) -> None:
        self.step, self.steps, self.checkpoint_path, self.signal_name = step, steps, checkpoint_path, signal_name
        saved = f"checkpoint saved to {checkpoint_path}" if checkpoint_path else "no checkpoint path: nothing saved"
        super().__init__(f"{signal_name}: training interrupted at step {step} of {steps}; {saved}")


@contextmanager
def _stop_on_signals() -> Iterator[dict]:
    """While active, SIGINT and SIGTERM set ``flag["signal"]`` instead of killing the process (main thread only;
    elsewhere the flag never gets set). A second SIGINT raises KeyboardInterrupt at once."""
    flag: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag["signal"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["signal"] = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def run_loop(model: MixtureModel, matrix: sp.csr_matrix, rows: np.ndarray, conditions: np.ndarray,
             y_scaled: np.ndarray, cfg: LoopConfig, device: torch.device,
             evaluate: Callable[[MixtureModel], dict] | None = None,
             checkpoint_path: Path | None = None, resume: bool = False,
             estimator_state: dict | None = None, progress: bool = True,
             validate: Callable[[MixtureModel], float] | None = None) -> LoopState:
    """Train ``model`` in place.

    Randomness (dropout) comes from torch's RNG seeded with ``cfg.seed`` inside :func:`torch.random.fork_rng`,
    so the caller's global RNG state is left as it was; the state is saved in each checkpoint.

    Args:
        model: the module, already on ``device`` with scalers fitted.
        matrix: formula x material content matrix (CSR), shape ``(n_formulas, n_materials)``.
        rows: matrix row of each training sample, shape ``(n_train,)``.
        conditions: raw conditions of each training sample, shape ``(n_train, n_conditions)``.
        y_scaled: standardised targets, shape ``(n_train,)``.
        cfg: optimisation settings.
        evaluate: called every ``cfg.eval_every`` steps; returns a dict of numbers logged into the history.
        checkpoint_path: where to write checkpoints (every ``cfg.checkpoint_every`` steps, at the end, and when
            SIGINT/SIGTERM arrives); snapshots go beside it (:func:`mrl.run_files.snapshots_path`).
        resume: continue from ``checkpoint_path`` if it exists.
        device: where the model and batches live.
        estimator_state: the checkpoint's ``estimator`` section (what rebuilds the estimator).
        progress: show a progress bar.
        validate: with ``cfg.early_stopping``, the validation loss of the model (inner validation part of the
            training data, never eval), called every ``cfg.eval_every`` steps and logged as ``val_loss``.

    Raises:
        TrainingInterrupted: after saving a checkpoint, when SIGINT or SIGTERM arrived during training.
    """
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {cfg.loss!r}")
    if cfg.early_stopping and validate is None:
        raise ValueError("early_stopping needs a validate callback (the validation loss)")
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(cfg.seed)
        return _loop(model, matrix, rows, conditions, y_scaled, cfg, device, evaluate,
                     Path(checkpoint_path) if checkpoint_path is not None else None, resume,
                     estimator_state or {}, progress, validate if cfg.early_stopping else None)


def _copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _loop(model: MixtureModel, matrix: sp.csr_matrix, rows: np.ndarray, conditions: np.ndarray,
          y_scaled: np.ndarray, cfg: LoopConfig, device: torch.device,
          evaluate: Callable[[MixtureModel], dict] | None, checkpoint_path: Path | None, resume: bool,
          estimator_state: dict, progress: bool,
          validate: Callable[[MixtureModel], float] | None = None) -> LoopState:
    loss_fn = LOSSES[cfg.loss]
    opt, sched = make_optimizer(model, cfg)
    state = LoopState()
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        ckpt = load_checkpoint(checkpoint_path)
        if ckpt["training"] is None:
            raise CheckpointError(f"{checkpoint_path}: holds a model without its training state; it cannot resume")
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["training"]["optimizer"])
        sched.load_state_dict(ckpt["training"]["scheduler"])
        torch.set_rng_state(ckpt["training"]["rng"])
        progress_state = ckpt["progress"]
        state = LoopState(progress_state["step"], progress_state["history"],
                          load_snapshots(snapshots_path(checkpoint_path)), progress_state["wall_s"])
        best = ckpt["training"].get("best")
        if best is not None:
            state.best_step, state.best_loss, state.bad_checks = best["step"], best["loss"], best["bad_checks"]
            state.stopped_step, state.best_state = best["stopped_step"], best["state_dict"]
        log.info("resumed from %s at step %d", checkpoint_path, state.step)
    y_all = torch.as_tensor(y_scaled, dtype=torch.float32)
    order = BatchOrder(len(rows), cfg.batch_size, cfg.seed)
    record = set(snapshot_steps(cfg.steps, cfg.snapshot_every))
    started = time.perf_counter() - state.wall_s

    def save() -> None:
        if checkpoint_path is None:
            return
        state.wall_s = time.perf_counter() - started
        save_snapshots(snapshots_path(checkpoint_path), state.snapshots)
        progress_state = {"step": state.step, "history": state.history, "wall_s": state.wall_s}
        training = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}
        if validate is not None:
            progress_state.update(best_step=state.best_step, stopped_step=state.stopped_step)
            training["best"] = {"step": state.best_step, "loss": state.best_loss, "bad_checks": state.bad_checks,
                                "stopped_step": state.stopped_step, "state_dict": state.best_state}
        save_checkpoint(checkpoint_path, model, estimator_state, progress=progress_state, training=training)

    bar = tqdm(total=cfg.steps, initial=state.step, desc="train", disable=not progress, mininterval=2.0)
    # the training loss is summed on the device (in float64, as Python floats were: the same numbers) and read
    # only at eval steps, so a step does not wait for the device (no host sync per step)
    # (MPS has no float64: there the sum stays on the host, one read per step as before)
    sum_device = torch.device("cpu") if device.type == "mps" else device
    loss_sum, loss_n = torch.zeros((), dtype=torch.float64, device=sum_device), 0
    if validate is not None and state.step == 0 and state.best_state is None:  # the start is a candidate too
        model.eval()
        with torch.no_grad():
            state.best_step, state.best_loss, state.best_state = 0, float(validate(model)), _copy_state(model)
    with _stop_on_signals() as stop:
        while state.step < cfg.steps and state.stopped_step is None:
            if state.step in record and state.step not in state.snapshots:
                state.snapshots[state.step] = model.material_vectors().detach().cpu().numpy().astype(np.float32)
            model.train()
            idx = order(state.step)
            batch = make_batch(matrix, rows[idx], conditions[idx]).to(device)
            loss = loss_fn(model(batch), y_all[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum, loss_n = loss_sum + loss.detach().to(sum_device).double(), loss_n + 1
            state.step += 1
            bar.update(1)
            if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
                entry = {"step": state.step, "train_loss": float(loss_sum) / loss_n,
                         "lr": opt.param_groups[1]["lr"], "wall_s": time.perf_counter() - started}
                loss_sum, loss_n = torch.zeros((), dtype=torch.float64, device=sum_device), 0
                if evaluate is not None:
                    model.eval()
                    with torch.no_grad():
                        entry.update(evaluate(model))
                if validate is not None:
                    model.eval()
                    with torch.no_grad():
                        val_loss = float(validate(model))
                    entry["val_loss"] = val_loss
                    if val_loss < state.best_loss:
                        state.best_step, state.best_loss, state.bad_checks = state.step, val_loss, 0
                        state.best_state = _copy_state(model)
                    else:
                        state.bad_checks += 1
                    if state.bad_checks >= cfg.patience or state.step == cfg.steps:
                        state.stopped_step = state.step
                        if state.step < cfg.steps:
                            log.info("early stopping at step %d: no lower validation loss in %d checks; best step "
                                     "%d (validation loss %.4g)", state.step, state.bad_checks, state.best_step,
                                     state.best_loss)
                state.history.append(entry)
                bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k.endswith(("mae", "loss"))})
            finished = state.step == cfg.steps or state.stopped_step is not None
            if state.step % cfg.checkpoint_every == 0 or finished:
                if finished:
                    state.snapshots[state.step] = model.material_vectors().detach().cpu().numpy().astype(np.float32)
                    if state.best_state is not None:  # early stopping: the best state is the result
                        model.load_state_dict(state.best_state)
                save()
            elif stop["signal"] is not None:
                save()
            if stop["signal"] is not None and not finished:
                bar.close()
                raise TrainingInterrupted(state.step, cfg.steps, checkpoint_path, stop["signal"])
    bar.close()
    if state.best_state is not None:  # also after resuming a finished run
        model.load_state_dict(state.best_state)
    state.wall_s = time.perf_counter() - started
    model.eval()
    return state
