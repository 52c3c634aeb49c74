"""Command line: ``mrl train``, ``mrl data``, ``mrl similar``, ``mrl sweep``, ``mrl report``."""
from __future__ import annotations

import argparse
import logging
import sys
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
    from mrl.analysis import nearest_neighbors
    from mrl.runs import load_run

    table = nearest_neighbors(load_run(args.run).embeddings, args.material, k=args.k, metric=args.metric)
    print(table.to_string(index=False))


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
