"""Command line: ``mrl train``, ``mrl data``, ``mrl similar``, ``mrl sweep``, ``mrl report``,
``mrl add-materials``, ``mrl tie-materials``."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings -> dict, values parsed as YAML (``embedding_dim=4``, ``hidden=[64,64]``)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_train(args: argparse.Namespace) -> None:
    from mrl.params import RunParams, load_params
    from mrl.runs import run_experiment

    params = load_params(args.params, **_overrides(args.set)) if args.params else \
        RunParams.from_dict(_overrides(args.set), source="--set")
    path = run_experiment(params, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    print(path)


def cmd_data(args: argparse.Namespace) -> None:
    from mrl.synth import write_lab

    for path in write_lab(args.out, preset=args.preset, seed=args.seed).values():
        print(path)


def cmd_similar(args: argparse.Namespace) -> None:
    import pandas as pd

    from mrl.analysis import nearest_neighbors

    path = Path(args.run) / "embeddings.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a finished run (or an adapted one) folder")
    table = nearest_neighbors(pd.read_parquet(path), args.material, k=args.k, metric=args.metric)
    print(table.to_string(index=False))


def _mapping(pairs: Sequence[str], what: str) -> dict[str, str | None]:
    """``NEW=KNOWN`` strings -> dict; ``KNOWN`` ``none`` means the origin."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"{what} expects NEW=KNOWN, got {pair!r}")
        new, known = (s.strip() for s in pair.split("=", 1))
        out[new] = None if known.lower() == "none" else known
    return out


def cmd_add_materials(args: argparse.Namespace) -> None:
    from mrl.adapt import adapt_run
    from mrl.data import load_formulas
    from mrl.estimator import MixtureRegressor

    est = MixtureRegressor.load(Path(args.run) / "checkpoint.pt", device="cpu")
    data = load_formulas(args.formulas, args.properties, args.materials, targets=est.target_,
                         conditions=est.conditions_, name=str(args.formulas))
    like = {k: v for k, v in _mapping(args.like, "--like").items() if v is not None}
    print(adapt_run(args.run, args.out, data=data, like=like, overwrite=args.overwrite, est=est, steps=args.steps,
                    shrinkage=args.shrinkage))


def cmd_tie_materials(args: argparse.Namespace) -> None:
    from mrl.adapt import adapt_run

    print(adapt_run(args.run, args.out, tie=_mapping(args.pairs, "tie-materials"), overwrite=args.overwrite))


def cmd_sweep(args: argparse.Namespace) -> None:
    from mrl.sweep import SweepFailed, run_sweep

    try:
        run_sweep(args.sweep, jobs=args.jobs, retry_failed=args.retry_failed, check=True)
    except SweepFailed as exc:
        logging.getLogger("mrl").error("%s", exc)
        sys.exit(1)


def cmd_report(args: argparse.Namespace) -> None:
    from mrl.report import build_report

    print(build_report(args.sweep_dir, book_dir=args.book))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrl", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run into runs/<name>/")
    p.add_argument("--params", help="params YAML file")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override params")
    p.add_argument("--resume", action="store_true", help="continue an unfinished run from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("data", help="write the synthetic formulation lab as CSV files")
    p.add_argument("--preset", default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("similar", help="nearest neighbours of a material in a run's embedding")
    p.add_argument("material", help="material id")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("sweep", help="run a sweep's notebooks with papermill for every grid point "
                                     "(exit status 1 when a point failed)")
    p.add_argument("sweep", help="sweep YAML file (params/<sweep>.yaml)")
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="parallel workers (default: the sweep file's jobs, else 1)")
    p.add_argument("--retry-failed", action="store_true", help="re-run points that failed before")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("add-materials", help="fit only the vectors of new materials from their few formulas, "
                                             "the run's model frozen; writes an adapted model folder")
    p.add_argument("run", help="finished run folder")
    p.add_argument("--formulas", required=True, help="long-format formulas (CSV/Parquet) using the new materials")
    p.add_argument("--properties", required=True, help="their measured properties (the run's target)")
    p.add_argument("--materials", default=None, help="optional materials table")
    p.add_argument("--like", nargs="*", default=[], metavar="NEW=KNOWN", help="start a new material from a "
                                                                               "known one's vector")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--shrinkage", type=float, default=10.0, help="pull to the start, weighing like N formulas")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_add_materials)

    p = sub.add_parser("tie-materials", help="give new materials a known material's vector (NEW=KNOWN) or no "
                                             "influence (NEW=none); writes an adapted model folder")
    p.add_argument("run", help="finished run folder")
    p.add_argument("pairs", nargs="+", metavar="NEW=KNOWN")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_tie_materials)

    p = sub.add_parser("report", help="build the Jupyter Book report for a sweep folder")
    p.add_argument("sweep_dir", help="runs/<sweep>")
    p.add_argument("--book", default="book", help="book source folder")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError) as exc:
        logging.getLogger("mrl").error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
