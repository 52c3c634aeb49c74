"""Speed and scale of mrl on CPU: step throughput against simpler paths and an arithmetic floor, cost curves,
time to a target, prediction throughput. Prints tables (not a test); ``--json`` writes them as records with the
machine's facts (torch, threads, cores, load at the start and end, date); ``--render`` fills the marked sections of
``book/performance.md`` from that file (:data:`SECTIONS`; comparisons worded by :mod:`mrl.wording`).

    python benchmarks/speed.py            # all four tables; (c) alone runs the seed's 195,000 steps (~22+ min)
    python benchmarks/speed.py --quick    # ~2 min: fewer sizes and steps
    python benchmarks/speed.py --only step|cost|target|predict [...] [--threads 1] [--json PATH]
    python benchmarks/speed.py --only step cost predict --json benchmarks/results/speed.json   # the page's run
    python benchmarks/speed.py --render benchmarks/results/speed.json --book book/performance.md

(a) **Training step** on the seed-scale lab (5,400 materials, 25,000 formulas, ~21 ingredients per formula), batch
    256, formulas/s for: a naive dense product (the batch's rows of the content matrix as a dense ``B x 5400``
    tensor, ``@ table``), ``torch.sparse.mm``, a bare ``F.embedding_bag``, mrl's full step (:class:`MixtureModel`
    forward, MSE, backward, Adam, schedule: what :mod:`mrl.train` does), mrl at batch 1024, and the attention
    interaction padded to the batch's longest formula vs length-bucketed. Every path has the same head and Adam.
    Ratios are to mrl's step and to a **floor**: the step's FLOPs divided by this machine's dense GEMM rate
    (float32 ``1024 x 1024 @ 1024 x 1024``, measured in the same run). FLOPs counted: 2 per multiply-add, backward
    = 2x forward for matrix products (aggregation ``2 nnz d``, head ``2 B (d*128 + 128*128 + 128)``), plus the
    elementwise work on the whole table (tanh, scale: 6 per entry fwd+bwd) and Adam (10 per parameter). Elementwise
    work is memory-bound, so the floor is optimistic: a ratio near 1 is unreachable, a large one means overhead.
(b) **Cost curve**: time per epoch (dim 20, batch 256) and peak memory (``VmHWM`` of a fresh process, reset with
    ``/proc/self/clear_refs``, over its RSS before the data / before training) at 1k / 10k / 30k / 132,752 formulas
    (above 25k: the lab's rows repeated; 132,752 is mp_e_form's size, with the lab's ~21 ingredients per formula
    instead of its ~4 elements) and 500-21,600 materials (fewer: columns folded modulo the count; more: formula
    ``r`` uses copy ``r % k`` of the vocabulary), beside the size of the data as CSR and as a dense matrix.
(c) **Time to target** on the small lab: the default schedule (cosine, ``steps`` 20,000; 4,000 with ``--quick``),
    inner-validation early stopping with the same cap, and the seed report's fixed 195,000 steps (20,000 with
    ``--quick``): steps and seconds until the eval MAE is within 2 % of its own final value (first reached, and
    for good) and of the best final value of the three, from the run history.
(d) **Prediction**: ``MixtureRegressor.predict_matrix`` on 100,000 seed-scale formulas (target: under 5 s).

Threads: ``--threads`` (default 1) sets torch's intra-op threads. On this project's 2 shared cores under a load of
4-8, two OpenMP threads wait on each other at every operation: mrl's step is 10-50x slower with 2 threads than with
1 (the ``threads`` table measures it in the same run).
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from mrl.book import fill_from_results, markdown_table
from mrl.estimator import MixtureRegressor
from mrl.io import read_json, write_json
from mrl.model import MixtureModel, make_batch, mlp
from mrl.splits import make_split
from mrl.synth import make_lab
from mrl.train import LoopConfig, make_optimizer
from mrl.wording import against_target, compare, format_number

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "speed.json"
HIDDEN = (128, 128)
BATCH = 256
#: Goals of the issue that asked for these measurements: mrl's step this many times faster than the naive dense
#: product; at most this many times its arithmetic floor (at dim >= 20); the attention step at most this many times
#: the plain sum's; 100,000 predictions in under this many seconds.
DENSE_SPEEDUP_GOAL = 10.0
FLOOR_GOAL = 3.0
ATTENTION_GOAL = 3.0
PREDICT_TARGET_S = 5.0


def load(preset: str = "seed-scale"):
    data, _ = make_lab(preset)
    X = data.content_matrix()
    y = np.log10(data.target_values())
    return data, X, ((y - y.mean()) / y.std()).astype(np.float32)


def gemm_rate(n: int = 1024, reps: int = 5) -> float:
    """Dense float32 GEMM rate of this process (FLOP/s), best of ``reps``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def step_flops(batch: int, nnz: float, n_materials: int, dim: int) -> float:
    head = 2 * batch * (dim * HIDDEN[0] + HIDDEN[0] * HIDDEN[1] + HIDDEN[1])
    head_params = (dim + 1) * HIDDEN[0] + (HIDDEN[0] + 1) * HIDDEN[1] + HIDDEN[1] + 1
    return 3 * head + 4 * nnz * dim + 6 * n_materials * dim + 10 * (n_materials * dim + head_params)


def timed(step: Callable[[], None], budget: float, max_steps: int, warmup: int = 3) -> float:
    """Seconds per call of ``step``: ``warmup`` calls, then calls until ``budget`` seconds or ``max_steps``."""
    for _ in range(warmup):
        step()
    n, start = 0, time.perf_counter()
    while n < max_steps and (n < 3 or time.perf_counter() - start < budget):
        step()
        n += 1
    return (time.perf_counter() - start) / n


class Bench:
    """Training steps of one size on one content matrix; every path has the same head and Adam."""

    def __init__(self, X: sp.csr_matrix, y: np.ndarray, dim: int, seed: int = 0) -> None:
        self.X, self.y, self.dim = X, torch.from_numpy(y), dim
        self.rng = np.random.default_rng(seed)
        counts = np.diff(X.tocsc().indptr)
        self.median = np.where(counts > 0, 0.01, 1.0)  # content scale: its value does not change the cost
        self.cfg = LoopConfig(steps=10_000, batch_size=BATCH, lr=3e-3, embedding_lr=3e-3, weight_decay=0.0,
                              embedding_weight_decay=1e-4, lr_schedule="cosine", eval_every=500,
                              snapshot_every=500, checkpoint_every=500, seed=seed)

    epoch_order: np.ndarray | None = None
    _position = 0

    def rows(self, batch: int = BATCH) -> np.ndarray:
        """Random rows, or consecutive slices of ``epoch_order`` when it is set (as the training loop does)."""
        if self.epoch_order is None:
            return self.rng.integers(0, self.X.shape[0], batch)
        start = self._position % len(self.epoch_order)
        self._position = start + batch
        return self.epoch_order[start:start + batch]

    def baseline(self, kind: str) -> Callable[[], None]:
        """A step of a bare table + head with ``kind`` aggregation: dense, sparse_mm or embedding_bag."""
        torch.manual_seed(0)
        table = torch.nn.Parameter(torch.randn(self.X.shape[1], self.dim) * 1e-3)
        head = mlp(self.dim, HIDDEN, 1)
        opt = torch.optim.Adam([table, *head.parameters()], lr=3e-3, foreach=True)

        def step() -> None:
            idx = self.rows()
            if kind == "dense":
                m = torch.from_numpy(self.X[idx].toarray().astype(np.float32)) @ table
            else:
                b = make_batch(self.X, idx)
                if kind == "sparse_mm":
                    lengths = np.diff(np.append(b.offsets.numpy(), b.index.shape[0]))
                    rows = torch.from_numpy(np.repeat(np.arange(len(idx)), lengths))
                    w = torch.sparse_coo_tensor(torch.stack([rows, b.index]), b.content, (len(idx), table.shape[0]),
                                                check_invariants=False)
                    m = torch.sparse.mm(w, table)
                else:
                    m = F.embedding_bag(b.index, table, b.offsets, mode="sum", per_sample_weights=b.content)
            loss = F.mse_loss(head(m)[:, 0], self.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    def mrl(self, batch: int = BATCH, interaction: str = "none", buckets: int | None = None,
            sync: bool = False, compile_model: bool = False) -> Callable[[], None]:
        """The training step of mrl (as in :func:`mrl.train._loop`)."""
        torch.manual_seed(0)
        model = MixtureModel(self.X.shape[1], self.dim, median_content=self.median, interaction=interaction)
        if buckets is not None and model.interaction is not None:
            model.interaction.buckets = buckets
        opt, sched = make_optimizer(model, self.cfg)
        forward = torch.compile(model) if compile_model else model
        total = [torch.zeros((), dtype=torch.float64)]

        def step() -> None:
            idx = self.rows(batch)
            b = make_batch(self.X, idx)
            loss = F.mse_loss(forward(b), self.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if sync:
                float(loss.detach())
            else:
                total[0] = total[0] + loss.detach().double()

        return step


def step_table(X, y, dims: list[int], budget: float, max_steps: int, threads: int, try_compile: bool) -> dict:
    """Table (a), printed; returned as records with the GEMM rate, the threads table and the compile check."""
    nnz = X.nnz / X.shape[0] * BATCH
    rate = gemm_rate()
    print(f"\n## (a) training step, seed-scale lab ({X.shape[1]} materials, {X.shape[0]} formulas, "
          f"{X.nnz / X.shape[0]:.1f} ingredients per formula), batch {BATCH}, {threads} thread(s)\n")
    print(f"dense GEMM rate: {rate / 1e9:.1f} GFLOP/s (float32 1024^3, best of 5)\n")
    rows = []
    for dim in dims:
        bench = Bench(X, y, dim)
        paths = {"naive dense (B x M) @ table": (bench.baseline("dense"), BATCH),
                 "torch.sparse.mm": (bench.baseline("sparse_mm"), BATCH),
                 "F.embedding_bag": (bench.baseline("embedding_bag"), BATCH),
                 "mrl step": (bench.mrl(), BATCH),
                 "mrl step, float(loss) each step": (bench.mrl(sync=True), BATCH),
                 "mrl step, batch 1024": (bench.mrl(batch=1024), 1024),
                 "mrl step, batch 4096": (bench.mrl(batch=4096), 4096),
                 "attention, padded": (bench.mrl(interaction="attention", buckets=1), BATCH),
                 "attention, length buckets": (bench.mrl(interaction="attention"), BATCH)}
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(2):  # two rounds, best of each: the load moves
            for name, (step, _) in paths.items():
                steps = max(5, max_steps // 8) if name.startswith("attention") else max_steps
                seconds[name].append(timed(step, budget, steps))
        floor = {b: step_flops(b, nnz * b / BATCH, X.shape[1], dim) / rate for b in (BATCH, 1024, 4096)}
        mrl_per_formula = min(seconds["mrl step"]) / BATCH
        for name, (_, batch) in paths.items():
            s = min(seconds[name])
            rows.append({"dim": dim, "path": name, "batch": batch, "ms/step": s * 1e3, "formulas/s": batch / s,
                         "x mrl (time/formula)": s / batch / mrl_per_formula,
                         "x floor": s / floor[batch], "floor ms": floor[batch] * 1e3})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(table.to_string(index=False, formatters={"ms/step": "{:.2f}".format, "formulas/s": "{:,.0f}".format,
                                                       "x mrl (time/formula)": "{:.2f}".format,
                                                       "x floor": "{:.1f}".format, "floor ms": "{:.3f}".format}))
    piv = table.pivot(index="dim", columns="path", values="ms/step")
    print("\nsummary: mrl vs naive dense = {}; attention bucketed / mrl = {}; padded / bucketed = {}".format(
        ", ".join(f"dim {d}: {piv.loc[d, 'naive dense (B x M) @ table'] / piv.loc[d, 'mrl step']:.1f}x faster"
                  for d in piv.index),
        ", ".join(f"dim {d}: {piv.loc[d, 'attention, length buckets'] / piv.loc[d, 'mrl step']:.1f}x" for d in piv.index),
        ", ".join(f"dim {d}: {piv.loc[d, 'attention, padded'] / piv.loc[d, 'attention, length buckets']:.2f}"
                  for d in piv.index)))
    return {"materials": X.shape[1], "formulas": X.shape[0], "ingredients_per_formula": X.nnz / X.shape[0],
            "batch": BATCH, "gemm_gflops": rate / 1e9, "records": rows,
            "threads": thread_table(X, y, budget, max_steps, threads),
            "compile": compile_check(X, y, budget, max_steps) if try_compile else None}


def thread_table(X, y, budget: float, max_steps: int, threads: int) -> dict:
    """The mrl step at dim 20 with 1 and 2 torch threads, printed and returned as records."""
    others = sorted({1, 2} - {threads})
    load = os.getloadavg()[0]
    print(f"\n### threads: mrl step, dim 20, batch {BATCH} (load {load:.1f} on {os.cpu_count()} cores)\n")
    out = []
    for n in [threads, *others]:
        torch.set_num_threads(n)
        bench = Bench(X, y, 20)
        out.append({"threads": n, "ms/step": timed(bench.mrl(), budget, max_steps) * 1e3})
    torch.set_num_threads(threads)
    table = pd.DataFrame(out)
    table["x the first"] = table["ms/step"] / table["ms/step"].iloc[0]
    print(table.round(2).to_string(index=False))
    return {"dim": 20, "load_1min": load, "records": table.to_dict("records")}


def compile_check(X, y, budget: float, max_steps: int) -> dict:
    """Eager against ``torch.compile`` (inductor) for mrl's step at dim 20, printed and returned."""
    print("\n### torch.compile (inductor, CPU), mrl step, dim 20\n")
    bench = Bench(X, y, 20)
    eager = timed(bench.mrl(), budget, max_steps)
    start = time.perf_counter()
    try:
        step = bench.mrl(compile_model=True)
        step()
        compile_s = time.perf_counter() - start
        compiled = timed(step, budget, max_steps)
    except Exception as exc:  # noqa: BLE001 - report and go on
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        print(f"torch.compile failed after {time.perf_counter() - start:.0f} s: {error}")
        return {"dim": 20, "eager_ms": eager * 1e3, "error": error}
    print(f"eager {eager * 1e3:.2f} ms/step, compiled {compiled * 1e3:.2f} ms/step (x{eager / compiled:.2f} "
          f"speed-up), first compiled step {compile_s:.0f} s: pays after "
          f"{compile_s / max(eager - compiled, 1e-9):,.0f} steps" if compiled < eager else
          f"eager {eager * 1e3:.2f} ms/step, compiled {compiled * 1e3:.2f} ms/step: no gain "
          f"(first compiled step {compile_s:.0f} s)")
    return {"dim": 20, "eager_ms": eager * 1e3, "compiled_ms": compiled * 1e3, "compile_s": compile_s}


# ------------------------------------------------------------------------------------------------ cost curve
def _memory_kb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, kB (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak() -> None:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _cost_worker(args: tuple) -> dict:
    (indptr, indices, data, shape), y, n_formulas, n_materials, threads = args
    torch.set_num_threads(threads)
    before = _memory_kb("VmRSS")
    _reset_peak()
    X = sp.csr_matrix((data, indices, indptr), shape=shape)
    rows = np.arange(n_formulas) % X.shape[0]
    X = X[rows]
    if n_materials < X.shape[1]:
        X = sp.csr_matrix((X.data, X.indices % n_materials, X.indptr), shape=(X.shape[0], n_materials))
        X.sum_duplicates()
    elif n_materials > X.shape[1]:  # copy k of the vocabulary: formula r uses copy r % k of each material
        copies = -(-n_materials // X.shape[1])
        copy = np.repeat(np.arange(X.shape[0]) % copies, np.diff(X.indptr))
        X = sp.csr_matrix((X.data, (X.indices + X.shape[1] * copy) % n_materials, X.indptr),
                          shape=(X.shape[0], n_materials))
        X.sum_duplicates()
    yy = y[rows]
    del data, indices, indptr
    data_peak = _memory_kb("VmHWM") - before
    start_rss = _memory_kb("VmRSS")
    _reset_peak()
    bench = Bench(X, yy, 20)
    step = bench.mrl()
    bench.epoch_order = np.random.default_rng(0).permutation(X.shape[0])  # one epoch: consecutive slices
    per_epoch = int(np.ceil(X.shape[0] / BATCH))
    step()
    start = time.perf_counter()
    for _ in range(per_epoch):
        step()
    epoch_s = time.perf_counter() - start
    train_peak = _memory_kb("VmHWM") - start_rss
    return {"formulas": X.shape[0], "materials": X.shape[1], "nnz": X.nnz, "epoch s": epoch_s,
            "ms/step": epoch_s / per_epoch * 1e3, "CSR MB": (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1e6,
            "dense MB": X.shape[0] * X.shape[1] * 4 / 1e6, "data peak MB": data_peak / 1e3,
            "training peak MB": train_peak / 1e3}


def cost_table(X, y, grid: list[tuple[int, int]], threads: int) -> dict:
    """Table (b), printed and returned as records."""
    print("\n## (b) cost curve: one epoch (dim 20, batch 256), peak memory of a fresh process\n")
    csr = (X.indptr, X.indices, X.data, X.shape)
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for n_formulas, n_materials in grid:
        with ctx.Pool(1) as pool:
            rows.append(pool.apply(_cost_worker, ((csr, y, n_formulas, n_materials, threads),)))
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    print("\n'data peak MB': peak RSS growth while building the data (CSR, float64 + int32 per non-zero); "
          "'training peak MB': peak RSS growth during model set-up and one epoch (the table with its gradient and "
          "Adam's states: materials x dim; one batch). Neither grows with formulas x materials ('dense MB').")
    return {"dim": 20, "batch": BATCH, "records": rows}


# ----------------------------------------------------------------------------------------- time to target
#: The seed report's fixed schedule: 195,000 steps per embedding size.
SEED_STEPS = 195_000


def _within(history: pd.DataFrame, level: float) -> tuple[pd.Series | None, pd.Series | None]:
    """First row with eval MAE <= ``level``, and the row from which it stays there (None when never)."""
    within = history["eval_mae"] <= level
    if not within.any():
        return None, None
    outside = np.flatnonzero(~within.to_numpy())
    stays = history.iloc[outside[-1] + 1] if len(outside) and outside[-1] + 1 < len(history) else (
        None if len(outside) else history.iloc[0])
    return history[within].iloc[0], stays


def target_table(steps: int, seed_steps: int = SEED_STEPS) -> dict:
    """Steps and seconds to within 2 % of the final eval MAE (and of the best final among schedules)."""
    data, _ = make_lab("small")
    split = make_split(data, "random", 0.2, 0)
    train, ev = data.subset(split == "train"), data.subset(split == "eval")
    schedules = {f"default: cosine, {steps:,} steps": dict(steps=steps),
                 f"inner-validation stopping (10 %, patience 10), cap {steps:,}": dict(steps=steps,
                                                                                      early_stopping=True),
                 f"seed's fixed {seed_steps:,} steps, cosine": dict(steps=seed_steps)}
    fits = {}
    for name, kw in schedules.items():
        est = MixtureRegressor(embedding_dim=10, progress=False, device="cpu", **kw)
        start = time.perf_counter()
        est.fit(train, eval_data=ev)
        fits[name] = (est, time.perf_counter() - start)
    best = min(float(e.history_["eval_mae"].iloc[-1]) for e, _ in fits.values())
    rows = []
    for name, (est, wall) in fits.items():
        h = est.history_
        final = float(h["eval_mae"].iloc[-1])  # with stopping: the restored best state is not in the history
        if est.best_step_ is not None:
            final = float(h.loc[h["step"] == est.best_step_, "eval_mae"].iloc[0])
        first, stays = _within(h, 1.02 * final)
        first_best, _ = _within(h, 1.02 * best)
        rows.append({"schedule": name, "steps run": int(h["step"].iloc[-1]), "fit s": wall,
                     "eval MAE (kept model)": final,
                     "x best final": final / best,
                     "2 % of own final: first step": int(first["step"]), "s": float(first["wall_s"]),
                     "for good from step": None if stays is None else int(stays["step"]),
                     "2 % of best final: first step": None if first_best is None else int(first_best["step"]),
                     "s ": None if first_best is None else float(first_best["wall_s"])})
    print(f"\n## (c) time to target: small lab ({data.n_materials} materials, {data.n_formulas} formulas, "
          f"80/20 split), dim 10, batch 256, eval every {int(est.eval_every)} steps\n")
    with pd.option_context("display.width", 250):
        print(pd.DataFrame(rows).round(3).to_string(index=False))
    print("(eval MAE in cP; 'kept model': the last step, or the best inner-validation step with stopping, which "
          "never reads eval; seconds from the run history, evaluations included)")
    return {"materials": data.n_materials, "formulas": data.n_formulas, "dim": 10, "batch": 256,
            "eval_every": int(est.eval_every), "steps": steps, "seed_steps": seed_steps, "records": rows}


# ------------------------------------------------------------------------------------------------ prediction
def predict_table(data, X, dims: list[int], n: int = 100_000) -> dict:
    print(f"\n## (d) prediction: MixtureRegressor.predict_matrix on {n:,} seed-scale formulas (target < 5 s)\n")
    rows = np.random.default_rng(0).integers(0, X.shape[0], n)
    big = X[rows]
    out = []
    for dim in dims:
        for interaction in ("none", "attention"):
            est = MixtureRegressor(embedding_dim=dim, steps=20, eval_every=20, progress=False, device="cpu",
                                   interaction=interaction).fit(data)
            est.predict_matrix(big[:1000])
            start = time.perf_counter()
            pred = est.predict_matrix(big)
            s = time.perf_counter() - start
            assert pred.shape == (n,) and np.isfinite(pred).all()
            out.append({"dim": dim, "interaction": interaction, "s": s, "formulas/s": n / s,
                        "x the 5 s target": s / PREDICT_TARGET_S})
    print(pd.DataFrame(out).round(3).to_string(index=False))
    return {"formulas": n, "target_s": PREDICT_TARGET_S, "records": out}


# ------------------------------------------------------------------------------- the page, from the result file
#: The step table's paths as the page names them (the JSON keeps the printed names).
PATH_WORDS = {"naive dense (B x M) @ table": "naive dense product (batch rows x materials) @ table",
              "torch.sparse.mm": "`torch.sparse.mm`", "F.embedding_bag": "bare `F.embedding_bag`",
              "mrl step": "mrl's step", "mrl step, float(loss) each step": "mrl's step, loss read every step",
              "mrl step, batch 1024": "mrl's step, batch 1,024", "mrl step, batch 4096": "mrl's step, batch 4,096",
              "attention, padded": "attention, one padded batch", "attention, length buckets":
              "attention, length buckets"}
MRL = "mrl step"
DENSE = "naive dense (B x M) @ table"


def _step(results: dict) -> pd.DataFrame:
    return pd.DataFrame(results["tables"]["step"]["records"])


def _value(table: pd.DataFrame, dim: int, path: str, column: str) -> float:
    return float(table.loc[(table["dim"] == dim) & (table["path"] == path), column].iloc[0])


def _by_dim(table: pd.DataFrame, column: str, paths: list[str] | None = None) -> pd.DataFrame:
    """One row per path, one column per embedding size."""
    dims = sorted(table["dim"].unique())
    paths = paths or list(dict.fromkeys(table["path"]))
    rows = []
    for path in paths:
        batch = int(table.loc[table["path"] == path, "batch"].iloc[0])
        rows.append({"path": PATH_WORDS.get(path, path), "batch": batch,
                     **{f"dim {d}": _value(table, d, path, column) for d in dims}})
    return pd.DataFrame(rows)


def _measured(table: str) -> Callable[[Callable[[dict], str]], Callable[[dict], str]]:
    """A section renderer that says so, instead of failing, when the result file lacks ``table`` (a run with
    ``--only``)."""
    def wrap(render: Callable[[dict], str]) -> Callable[[dict], str]:
        @functools.wraps(render)
        def section(results: dict) -> str:
            if table not in results.get("tables", {}):
                return f"*Not in this result file: run `python benchmarks/speed.py` with `--only {table}` or all tables.*"
            return render(results)
        return section
    return wrap


def _load(values: list[float]) -> str:
    return " / ".join(format_number(v, 2) for v in values)


def render_setup(results: dict) -> str:
    """Where and how the numbers were measured: command, date, torch, threads, cores, loads, wall time."""
    m = results["machine"]
    busy = max(m["load_start"][0], m["load_end"][0]) > m["cores"]
    return (f"Measured on {m['date']} with `{results['command']}` (single run; {format_number(results['wall_s'] / 60)}"
            f" min wall time): torch {m['torch']}, {m['threads']} torch thread{'s' * (m['threads'] > 1)} on a "
            f"{m['cores']}-core machine "
            f"shared with other jobs. Load (processes running or waiting, 1 / 5 / 15-minute averages) "
            f"{_load(m['load_start'])} at the start and {_load(m['load_end'])} at the end"
            + (f": more than {m['cores']} means processes queued for the cores, so the times are upper bounds of "
               "an idle machine's." if busy else "."))


@_measured("step")
def render_goals(results: dict) -> str:
    """Each goal of the issue, worded against its target at the size where it is hardest: the speed-up over the
    dense product (its smallest), the step against its floor (every size >= 20), the attention step against the plain
    sum (its closest size: if that misses, all do), the prediction time (the slowest size of each interaction)."""
    table, step = _step(results), results["tables"]["step"]
    dims = sorted(table["dim"].unique())
    gain = {d: _value(table, d, DENSE, "ms/step") / _value(table, d, MRL, "ms/step") for d in dims}
    worst = min(dims, key=gain.get)
    lines = [against_target(gain[worst], DENSE_SPEEDUP_GOAL, f"speed-up of mrl's step over the naive dense product "
                            f"at dim {worst}, where it is smallest,", "the goal of", unit="times",
                            lower_is_better=False, goal=True).sentence]
    lines += [against_target(_value(table, d, MRL, "x floor"), FLOOR_GOAL, f"time of mrl's step at dim {d}, batch "
                             f"{step['batch']}, in multiples of its arithmetic floor", "the goal of", goal=True).sentence
              for d in dims if d >= 20]
    attention = {d: _value(table, d, "attention, length buckets", "ms/step") / _value(table, d, MRL, "ms/step")
                 for d in dims}
    best = min(dims, key=attention.get)
    lines.append(against_target(attention[best], ATTENTION_GOAL, f"attention step at dim {best}, its closest size, in "
                                "multiples of the plain sum's step", "the goal of", goal=True).sentence)
    info = results["tables"].get("predict")
    if info:
        predict = pd.DataFrame(info["records"])
        for interaction, rows in predict.groupby("interaction", sort=False):
            slow = rows.loc[rows["s"].idxmax()]
            name = "the plain sum" if interaction == "none" else interaction
            lines.append(against_target(float(slow["s"]), info["target_s"],
                                        f"time for {info['formulas']:,} predictions with {name} at its slowest size "
                                        f"(dim {int(slow['dim'])})", "the target of", unit="s", goal=True).sentence)
    return "\n".join(f"- {line}" for line in lines)


@_measured("step")
def render_step(results: dict) -> str:
    """Time per training step of every path by embedding size, and the comparisons of mrl's step."""
    info, table = results["tables"]["step"], _step(results)
    dims = sorted(table["dim"].unique())
    lines = [f"Seed-scale lab: {info['materials']:,} materials, {info['formulas']:,} formulas, "
             f"{format_number(info['ingredients_per_formula'])} ingredients per formula. Milliseconds per training "
             "step (forward, loss, backward, Adam), the best of two rounds:", "",
             markdown_table(_by_dim(table, "ms/step").rename(columns={f"dim {d}": f"dim {d} (ms)" for d in dims}))]
    per_second = ", ".join(f"{format_number(_value(table, d, MRL, 'formulas/s'))} at dim {d}" for d in dims)
    lines += [f"Formulas per second of mrl's step at batch {info['batch']}: {per_second}.", ""]
    gain = {d: _value(table, d, DENSE, "ms/step") / _value(table, d, MRL, "ms/step") for d in dims}
    worst, best = min(dims, key=gain.get), max(dims, key=gain.get)
    for d in sorted({worst, best}):  # the sizes where mrl gains least and most over the dense product
        lines.append("- " + compare(_value(table, d, MRL, "ms/step"), _value(table, d, DENSE, "ms/step"),
                                    f"mrl's step at dim {d}", "the naive dense product", what="time per step",
                                    unit="ms").sentence)
    for d in sorted({dims[0], dims[-1]}):
        lines.append("- " + compare(_value(table, d, MRL, "ms/step"), _value(table, d, "F.embedding_bag", "ms/step"),
                                    f"mrl's step at dim {d}", "a bare `F.embedding_bag` step", what="time per step",
                                    unit="ms").sentence)
    compiled = info.get("compile")
    if compiled and "compiled_ms" in compiled:
        lines.append("- " + compare(compiled["compiled_ms"], compiled["eager_ms"],
                                    f"the step compiled by `torch.compile` (dim {compiled['dim']})", "the eager step",
                                    what="time per step", unit="ms").sentence
                     + f" Compiling took {format_number(compiled['compile_s'])} s (its first step).")
    elif compiled:
        lines.append(f"- `torch.compile` failed: {compiled['error']}.")
    return "\n".join(lines)


@_measured("step")
def render_floor(results: dict) -> str:
    """The mrl step as a multiple of its arithmetic floor, by embedding size and batch."""
    info, table = results["tables"]["step"], _step(results)
    paths = [p for p in (MRL, "mrl step, batch 1024", "mrl step, batch 4096") if p in set(table["path"])]
    dims = sorted(table["dim"].unique())
    frame = pd.DataFrame([{"embedding size": d, f"floor at batch {info['batch']} (ms)": _value(table, d, MRL, "floor ms"),
                           **{f"step / floor, batch {_value(table, d, p, 'batch'):,.0f}": _value(table, d, p, "x floor")
                              for p in paths}} for d in dims])
    return "\n".join([f"Dense float32 GEMM rate of the same process: {format_number(info['gemm_gflops'])} GFLOP/s. "
                      "The floor is the step's FLOPs at that rate:", "", markdown_table(frame)])


@_measured("step")
def render_threads(results: dict) -> str:
    """The mrl step with one and two torch threads."""
    info = results["tables"]["step"]["threads"]
    rows = {int(r["threads"]): float(r["ms/step"]) for r in info["records"]}
    frame = pd.DataFrame([{"torch threads": n, "time per step (ms)": ms, "times the one-thread step": ms / rows[1]}
                          for n, ms in sorted(rows.items())])
    lines = [f"mrl's step at dim {info['dim']} (load {format_number(info['load_1min'], 2)} when measured):", "",
             markdown_table(frame)]
    if 2 in rows:
        lines.append(compare(rows[2], rows[1], "two threads", "one thread", what="time per step", unit="ms").sentence)
    return "\n".join(lines)


@_measured("step")
def render_attention(results: dict) -> str:
    """The attention interaction's step: length buckets against one padded batch, and against the plain sum."""
    table = _step(results)
    dims = sorted(table["dim"].unique())
    ms = {(d, p): _value(table, d, p, "ms/step") for d in dims for p in ("attention, length buckets",
                                                                          "attention, padded", MRL)}
    frame = pd.DataFrame([{"embedding size": d, "one padded batch (ms)": ms[d, "attention, padded"],
                           "length buckets (ms)": ms[d, "attention, length buckets"], "plain sum (ms)": ms[d, MRL],
                           "buckets / plain sum": ms[d, "attention, length buckets"] / ms[d, MRL]} for d in dims])
    least = max(dims, key=lambda d: ms[d, "attention, length buckets"] / ms[d, "attention, padded"])
    return "\n".join([
        f"Time per step at batch {results['tables']['step']['batch']}:", "", markdown_table(frame),
        f"Length buckets gain least at dim {least}. "
        + compare(ms[least, "attention, length buckets"], ms[least, "attention, padded"],
                  f"length buckets at dim {least}", "one padded batch", what="time per attention step",
                  unit="ms").sentence])


@_measured("cost")
def render_cost(results: dict) -> str:
    """Time per epoch and memory by number of formulas and materials."""
    info = results["tables"]["cost"]
    frame = pd.DataFrame(info["records"]).rename(columns={
        "nnz": "non-zeros", "epoch s": "one epoch (s)", "ms/step": "time per step (ms)", "CSR MB": "data as CSR (MB)",
        "dense MB": "data as a dense matrix (MB)", "data peak MB": "peak memory: data (MB)",
        "training peak MB": "peak memory: training (MB)"})
    biggest = frame.loc[frame["formulas"].idxmax()]
    size = ["formulas", "materials"]
    return "\n".join([
        f"One epoch at dim {info['dim']}, batch {info['batch']}, each size in a fresh process:", "",
        markdown_table(frame, [*size, "non-zeros", "one epoch (s)", "time per step (ms)"]),
        "Memory: the data as stored and as a dense matrix would be, and the growth of the process's peak resident "
        "memory while it builds the data and while it sets up the model and trains the epoch:", "",
        markdown_table(frame, [*size, "data as CSR (MB)", "data as a dense matrix (MB)", "peak memory: data (MB)",
                               "peak memory: training (MB)"]),
        f"At {int(biggest['formulas']):,} formulas the data take {format_number(biggest['data as CSR (MB)'])} MB as "
        f"CSR, where a dense matrix would take {format_number(biggest['data as a dense matrix (MB)'])} MB; training "
        f"memory peaks at {format_number(frame['peak memory: training (MB)'].min())}-"
        f"{format_number(frame['peak memory: training (MB)'].max())} MB over all sizes."])


@_measured("predict")
def render_predict(results: dict) -> str:
    """Prediction time for 100,000 formulas by embedding size and interaction."""
    info = results["tables"]["predict"]
    table = pd.DataFrame(info["records"])
    frame = table.rename(columns={"dim": "embedding size", "s": "time (s)", "formulas/s": "formulas per second",
                                  "x the 5 s target": f"times the {info['target_s']:g} s target"})
    return "\n".join([f"`MixtureRegressor.predict_matrix` on {info['formulas']:,} seed-scale formulas:", "",
                      markdown_table(frame)])


#: Regions of book/performance.md filled from benchmarks/results/speed.json: marker name -> render function.
SECTIONS = {"speed-goals": render_goals, "speed-setup": render_setup, "speed-step": render_step, "speed-floor": render_floor,
            "speed-threads": render_threads, "speed-attention": render_attention, "speed-cost": render_cost,
            "speed-predict": render_predict}


def machine_facts(threads: int) -> dict:
    """What the timings depend on: torch, threads, cores, the load (1/5/15 min), the date (UTC)."""
    return {"torch": torch.__version__, "python": platform.python_version(), "threads": threads,
            "cores": os.cpu_count(), "load": [round(v, 2) for v in os.getloadavg()],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and steps (~2 min)")
    parser.add_argument("--only", nargs="+", choices=("step", "cost", "target", "predict"),
                        help="these tables only (the page's run: step cost predict; see book/performance.md)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1; see above)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile check")
    parser.add_argument("--json", type=Path, default=None, help="write every table as records, with the machine's "
                        f"facts, to this file (the page's: {RESULT.relative_to(ROOT)})")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only render the page's sections from this result file")
    parser.add_argument("--book", type=Path, default=None, help="with --render: fill the marked regions of this "
                        "page (book/performance.md); without it the sections are printed")
    args = parser.parse_args(argv)
    if args.render:
        out = fill_from_results(read_json(args.render), SECTIONS, args.book)
        print(f"wrote {out}" if args.book else out)
        return
    torch.set_num_threads(args.threads)
    facts = machine_facts(args.threads)
    print(f"torch {facts['torch']}, {args.threads} thread(s), {facts['cores']} cores, load "
          f"{', '.join(f'{v:.1f}' for v in facts['load'])} (1/5/15 min)")
    started = time.perf_counter()
    run = set(args.only) if args.only else {"step", "cost", "target", "predict"}
    tables: dict[str, dict] = {}
    data = X = y = None
    if run & {"step", "cost", "predict"}:
        data, X, y = load()
    if "step" in run:
        tables["step"] = step_table(X, y, [20] if args.quick else [2, 10, 20, 100],
                                    budget=0.6 if args.quick else 1.5, max_steps=40 if args.quick else 150,
                                    threads=args.threads, try_compile=not args.no_compile and not args.quick)
    if "cost" in run:
        grid = ([(1000, 5400), (10_000, 5400), (30_000, 5400), (10_000, 500)] if args.quick else
                [(1000, 5400), (10_000, 5400), (30_000, 5400), (132_752, 5400), (10_000, 500), (10_000, 2700),
                 (10_000, 10_800), (30_000, 21_600)])
        tables["cost"] = cost_table(X, y, grid, args.threads)
    if "target" in run:
        tables["target"] = target_table(4000 if args.quick else 20_000, 20_000 if args.quick else SEED_STEPS)
    if "predict" in run:
        tables["predict"] = predict_table(data, X, [20] if args.quick else [2, 20, 100])
    wall = time.perf_counter() - started
    load_end = [round(v, 2) for v in os.getloadavg()]
    print(f"\ntotal {wall:.0f} s; load now {', '.join(f'{v:.1f}' for v in load_end)}")
    if args.json:
        command = "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json({"command": command.strip(), "machine": {**{k: v for k, v in facts.items() if k != "load"},
                                                            "load_start": facts["load"], "load_end": load_end},
                    "quick": args.quick, "wall_s": wall, "tables": tables}, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
