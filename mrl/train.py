"""The training loop: minibatch Adam over formulas, periodic eval, vector snapshots, checkpoints and resume.

The batch order of step ``s`` depends only on ``(seed, s)`` (one permutation per epoch from
``numpy.random.default_rng([seed, epoch])``), and the checkpoint holds the model, optimiser and torch RNG
state, so a run resumed from a checkpoint ends with exactly the numbers of an uninterrupted run.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from mrl.io import atomic_path
from mrl.model import MixtureModel, make_batch

log = logging.getLogger(__name__)
#: Training losses on the standardised target: ``huber`` is quadratic within 1 SD, linear beyond.
LOSSES = {"mse": torch.nn.functional.mse_loss, "l1": torch.nn.functional.l1_loss,
          "huber": torch.nn.functional.huber_loss}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> the first CUDA GPU when one exists, else the CPU; other names pass through."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def snapshot_steps(steps: int, every: int, n_early: int = 12) -> list[int]:
    """Steps at which material vectors are recorded: 0, a geometric series (early moves are fast), every ``every``."""
    early = np.unique(np.round(np.geomspace(1, max(steps, 2), n_early)).astype(int)) if steps > 1 else []
    regular = range(0, steps + 1, every)
    return sorted({0, steps, *map(int, early), *regular})


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
    loss: str = "mse"


@dataclass
class LoopState:
    """What the loop produced; saved in checkpoints."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    wall_s: float = 0.0


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
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm[pos * self.batch_size:(pos + 1) * self.batch_size]


def make_optimizer(model: MixtureModel, cfg: LoopConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam with separate learning rates for the material table (and scales) and the head."""
    material = [p for n, p in model.named_parameters() if n in ("table", "log_scale")]
    head = [p for n, p in model.named_parameters() if n not in ("table", "log_scale")]
    opt = torch.optim.Adam([{"params": material, "lr": cfg.embedding_lr, "weight_decay": cfg.embedding_weight_decay},
                            {"params": head, "lr": cfg.lr, "weight_decay": cfg.weight_decay}], foreach=True)
    if cfg.lr_schedule == "cosine":
        def factor(step: int) -> float:
            return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / max(cfg.steps, 1)))
    else:
        def factor(step: int) -> float:
            return 1.0
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def run_loop(model: MixtureModel, matrix: sp.csr_matrix, rows: np.ndarray, conditions: np.ndarray,
             y_scaled: np.ndarray, cfg: LoopConfig, device: torch.device,
             evaluate: Callable[[MixtureModel], dict] | None = None,
             checkpoint_path: Path | None = None, resume: bool = False,
             extra_state: dict | None = None, progress: bool = True) -> LoopState:
    """Train ``model`` in place.

    Args:
        model: the module, already on ``device`` with scalers fitted.
        matrix: formula x material content matrix (CSR), shape ``(n_formulas, n_materials)``.
        rows: matrix row of each training sample, shape ``(n_train,)``.
        conditions: raw conditions of each training sample, shape ``(n_train, n_conditions)``.
        y_scaled: standardised targets, shape ``(n_train,)``.
        cfg: optimisation settings.
        evaluate: called every ``cfg.eval_every`` steps; returns a dict of numbers logged into the history.
        checkpoint_path: where to write checkpoints (every ``cfg.checkpoint_every`` steps and at the end).
        resume: continue from ``checkpoint_path`` if it exists.
        extra_state: saved alongside in each checkpoint (e.g. what rebuilds the estimator).
    """
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {cfg.loss!r}")
    loss_fn = LOSSES[cfg.loss]
    torch.manual_seed(cfg.seed)
    opt, sched = make_optimizer(model, cfg)
    state = LoopState()
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        ckpt = torch.load(checkpoint_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = LoopState(ckpt["step"], ckpt["history"], ckpt["snapshots"], ckpt["wall_s"])
        log.info("resumed from %s at step %d", checkpoint_path, state.step)
    y_all = torch.as_tensor(y_scaled, dtype=torch.float32)
    order = BatchOrder(len(rows), cfg.batch_size, cfg.seed)
    record = set(snapshot_steps(cfg.steps, cfg.snapshot_every))
    started = time.perf_counter() - state.wall_s

    def save() -> None:
        if checkpoint_path is None:
            return
        state.wall_s = time.perf_counter() - started
        with atomic_path(checkpoint_path) as tmp:
            torch.save({"state_dict": model.state_dict(), "model_params": model.model_params,
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "torch_rng": torch.get_rng_state(), "step": state.step, "history": state.history,
                        "snapshots": state.snapshots, "wall_s": state.wall_s, **(extra_state or {})}, tmp)

    bar = tqdm(total=cfg.steps, initial=state.step, desc="train", disable=not progress, mininterval=2.0)
    loss_sum, loss_n = 0.0, 0
    while state.step < cfg.steps:
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
        loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
        state.step += 1
        bar.update(1)
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
            entry = {"step": state.step, "train_loss": loss_sum / loss_n,
                     "lr": opt.param_groups[1]["lr"], "wall_s": time.perf_counter() - started}
            loss_sum, loss_n = 0.0, 0
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    entry.update(evaluate(model))
            state.history.append(entry)
            bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k.endswith(("mae", "loss"))})
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            if state.step == cfg.steps:
                state.snapshots[state.step] = model.material_vectors().detach().cpu().numpy().astype(np.float32)
            save()
    bar.close()
    state.wall_s = time.perf_counter() - started
    model.eval()
    return state
