"""Speed and scale of mrl on CPU: step throughput against simpler paths and an arithmetic floor, cost curves,
time to a target, prediction throughput. Prints tables (not a test).

    python benchmarks/speed.py            # ~6-10 min on 2 loaded cores
    python benchmarks/speed.py --quick    # ~2 min: fewer sizes and steps
    python benchmarks/speed.py --only step|cost|target|predict [--threads 1]

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
import multiprocessing
import os
import time
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from mrl.model import MixtureModel, make_batch, mlp
from mrl.train import LoopConfig, make_optimizer

HIDDEN = (128, 128)
BATCH = 256


def load(preset: str = "seed-scale"):
    from mrl.synth import make_lab

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


def step_table(X, y, dims: list[int], budget: float, max_steps: int, threads: int, try_compile: bool) -> None:
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
            rows.append({"dim": dim, "path": name, "ms/step": s * 1e3, "formulas/s": batch / s,
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
    thread_table(X, y, budget, max_steps, threads)
    if try_compile:
        compile_check(X, y, budget, max_steps)


def thread_table(X, y, budget: float, max_steps: int, threads: int) -> None:
    others = sorted({1, 2} - {threads})
    print(f"\n### threads: mrl step, dim 20, batch {BATCH} (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n")
    out = []
    for n in [threads, *others]:
        torch.set_num_threads(n)
        bench = Bench(X, y, 20)
        out.append({"threads": n, "ms/step": timed(bench.mrl(), budget, max_steps) * 1e3})
    torch.set_num_threads(threads)
    table = pd.DataFrame(out)
    table["x the first"] = table["ms/step"] / table["ms/step"].iloc[0]
    print(table.round(2).to_string(index=False))


def compile_check(X, y, budget: float, max_steps: int) -> None:
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
        print(f"torch.compile failed after {time.perf_counter() - start:.0f} s: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:200]}")
        return
    print(f"eager {eager * 1e3:.2f} ms/step, compiled {compiled * 1e3:.2f} ms/step (x{eager / compiled:.2f} "
          f"speed-up), first compiled step {compile_s:.0f} s: pays after "
          f"{compile_s / max(eager - compiled, 1e-9):,.0f} steps" if compiled < eager else
          f"eager {eager * 1e3:.2f} ms/step, compiled {compiled * 1e3:.2f} ms/step: no gain "
          f"(first compiled step {compile_s:.0f} s)")


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


def cost_table(X, y, grid: list[tuple[int, int]], threads: int) -> None:
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


def target_table(steps: int, seed_steps: int = SEED_STEPS) -> None:
    """Steps and seconds to within 2 % of the final eval MAE (and of the best final among schedules)."""
    from mrl.estimator import MixtureRegressor
    from mrl.splits import make_split
    from mrl.synth import make_lab

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


# ------------------------------------------------------------------------------------------------ prediction
def predict_table(data, X, dims: list[int], n: int = 100_000) -> None:
    from mrl.estimator import MixtureRegressor

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
                        "x the 5 s target": s / 5.0})
    print(pd.DataFrame(out).round(3).to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and steps (~2 min)")
    parser.add_argument("--only", choices=("step", "cost", "target", "predict"), help="one table only")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1; see above)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cores, load "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} (1/5/15 min)")
    started = time.perf_counter()
    run = {args.only} if args.only else {"step", "cost", "target", "predict"}
    data = X = y = None
    if run & {"step", "cost", "predict"}:
        data, X, y = load()
    if "step" in run:
        step_table(X, y, [20] if args.quick else [2, 10, 20, 100], budget=0.6 if args.quick else 1.5,
                   max_steps=40 if args.quick else 150, threads=args.threads,
                   try_compile=not args.no_compile and not args.quick)
    if "cost" in run:
        grid = ([(1000, 5400), (10_000, 5400), (30_000, 5400), (10_000, 500)] if args.quick else
                [(1000, 5400), (10_000, 5400), (30_000, 5400), (132_752, 5400), (10_000, 500), (10_000, 2700),
                 (10_000, 10_800), (30_000, 21_600)])
        cost_table(X, y, grid, args.threads)
    if "target" in run:
        target_table(4000 if args.quick else 20_000, 20_000 if args.quick else SEED_STEPS)
    if "predict" in run:
        predict_table(data, X, [20] if args.quick else [2, 20, 100])
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load now "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
