"""mrl: learn one vector per raw material from a lab's formulas, predict new formulas with intervals, design
towards a target, and report. Start with: mrl data --preset small --out lab.xlsx; mrl validate lab.xlsx.

Errors the user can fix (bad data, params, paths) end with one line naming the cause and exit status 2; an
interrupted training run ends with one line saying how to resume it and exit status 130 (143 for SIGTERM)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import yaml

import mrl.train
from mrl.adapt import adapt_run
from mrl.analysis import nearest_neighbors
from mrl.book import build_report, default_book_dir
from mrl.data import load_formulas, read_formula_table
from mrl.design import design, design_map
from mrl.estimator import MixtureRegressor
from mrl.io import atomic_dir, write_table
from mrl.materials import MaterialIndex, split_list
from mrl.notebook import write_notebook
from mrl.params import RunParams, load_params
from mrl.plots import save_figure
from mrl.predict import Predictor, column_glossary, rounded
from mrl.run_files import CHECKPOINT, EMBEDDINGS
from mrl.runs import (
    LOCATION_KEYS,
    PARAMS,
    load_run,
    params_differences,
    plan_run,
    read_params,
    run_dir,
    run_experiment,
    run_state,
)
from mrl.stacking import stacked_vectors_note
from mrl.suggest import add_results, suggest
from mrl.sweep import SweepFailed, run_sweep
from mrl.synth import PRESETS, lab_tables, write_lab
from mrl.tables import SHEETS, read_table
from mrl.wording import format_number
from mrl.workbook import write_workbook

#: Exit status of an interrupted command (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130


#: ``--set`` keys whose value is taken as plain text, not YAML (``decimal=,``, ``sep=;``, ``sep=\t``).
TEXT_KEYS = ("sep", "decimal", "sheet", "id_column")


def _overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``key=value`` strings -> dict, values parsed as YAML (``embedding_dim=4``, ``hidden=[64,64]``), except the
    :data:`TEXT_KEYS`, taken as text (a backslash-t is a tab)."""
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {pair!r}")
        if key.strip() in TEXT_KEYS:
            out[key.strip()] = "\t" if value == "\\t" else value
            continue
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"--set {pair!r}: the value is not valid YAML ({problem}); check its brackets "
                             f"and quotes") from None
    return out


def _params(path: str | None, pairs: Sequence[str] | None):
    """RunParams from a params file and/or ``--set`` pairs (None when neither is given)."""
    if path:
        return load_params(path, **_overrides(pairs))
    if pairs:
        return RunParams.from_dict(_overrides(pairs), source="--set")
    return None


def _resume_params(run: Path, path: str | None, pairs: Sequence[str] | None):
    """The params of ``--resume RUN_DIR``: the run's own ``params.yaml``, placed at ``run``; any ``--params`` or
    ``--set`` given too must not change a thing (each differing key is named)."""
    if not (run / PARAMS).exists():
        raise FileNotFoundError(f"nothing to resume in {run}: " + ("no params.yaml, not a run folder" if run.is_dir()
                                                                    else "no such folder"))
    own = read_params(run)
    if path:
        asked = load_params(path, **_overrides(pairs))
    else:
        asked = RunParams.from_dict({**own.to_dict(), **_overrides(pairs)}, source="--set")
    diff = params_differences(own, asked, ignore=LOCATION_KEYS if path else ())
    if diff:
        raise ValueError(f"{run} was run with other params than asked ({'; '.join(diff)}); a resumed run keeps its "
                         f"own params: drop those settings, or train a new run under another name")
    return dataclasses.replace(own, name=run.name, runs_dir=str(run.parent))


def cmd_train(args: argparse.Namespace) -> None:
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if isinstance(args.resume, str):
        params = _resume_params(Path(args.resume), args.params, args.set)
    else:
        params = _params(args.params, args.set)
        if params is None:
            args.parser.print_help(sys.stderr)
            print("\nmrl train: give --params FILE, --set KEY=VALUE ... or --resume RUN_DIR", file=sys.stderr)
            sys.exit(2)
    out = run_dir(params)
    if args.resume:
        state = run_state(out)
        if state == "finished":
            print(f"{out} is already finished (metrics.json); nothing to resume")
            return
        if state == "none":
            raise FileNotFoundError(f"nothing to resume in {out}: no checkpoint and no finished run")
    try:
        path = run_experiment(params, resume=bool(args.resume), overwrite=args.overwrite, progress=not args.quiet)
    except mrl.train.TrainingInterrupted as exc:
        checkpoint = exc.checkpoint_path
        if checkpoint is not None and Path(checkpoint).exists():
            print(f"interrupted at step {exc.step} of {exc.steps}; checkpoint saved; resume with: "
                  f"mrl train --resume {out}", file=sys.stderr)
        else:
            print(f"interrupted at step {exc.step} of {exc.steps}; the new attempt was discarded"
                  + (f" and {out} is unchanged" if out.exists() else ""), file=sys.stderr)
        signum = getattr(signal.Signals, "SIGTERM" if exc.signal_name == "SIGTERM" else "SIGINT")
        sys.exit(128 + signum)  # 130 for Ctrl-C, 143 for SIGTERM, as the shell reports a killed process
    print(path)


#: Suffixes of a params file (any other file given to ``mrl validate`` is data).
PARAMS_SUFFIXES = (".yaml", ".yml")


class _Collect(logging.Handler):
    """Keeps the log records it is handed (what the reader noted while loading the data)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record``."""
        self.records.append(record)


def cmd_validate(args: argparse.Namespace) -> None:
    target = args.target
    if target is None:
        params = _params(None, args.set)
        if params is None:
            args.parser.print_help(sys.stderr)
            sys.exit(2)
    elif Path(target).is_dir() or (Path(target).is_file() and Path(target).suffix.lower() not in PARAMS_SUFFIXES):
        params = RunParams.from_dict({"data": target, **_overrides(args.set)}, source=f"{target} with --set")
    elif Path(target).is_file():
        params = load_params(target, **_overrides(args.set))
    else:
        raise FileNotFoundError(f"{target}: not found: neither a data folder nor a params YAML file (nor a data "
                                f"file)")
    reader = logging.getLogger("mrl.data")  # the reader's notes (sheet, header row, skipped rows...) go to stdout
    collect, propagate, level = _Collect(), reader.propagate, reader.level
    reader.addHandler(collect)
    reader.propagate = False
    reader.setLevel(min(logging.INFO, reader.getEffectiveLevel()))
    try:
        plan = plan_run(params)
    finally:
        reader.removeHandler(collect)
        reader.propagate = propagate
        reader.setLevel(level)
        for record in collect.records if sys.exc_info()[0] else ():
            print(f"  read: {record.getMessage()}", file=sys.stderr)
    print(f"plan for {params.data} (no training):")
    for record in collect.records:
        level = "" if record.levelno < logging.WARNING else "WARNING: "
        print(f"  read: {level}{record.getMessage()}")
    for line in plan.describe():
        print(f"  {line}")
    for warning in plan.warnings:
        print(f"  WARNING: {warning}")
    print("ok" if not plan.warnings else f"ok, with {len(plan.warnings)} warning(s)")


def cmd_data(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.suffix.lower() != ".xlsx":
        for path in write_lab(out, preset=args.preset, seed=args.seed).values():
            print(path)
        return
    tables = lab_tables(args.preset, seed=args.seed)
    print(write_workbook({key: tables[key] for key in SHEETS}, out))


def _list_presets(parser: argparse.ArgumentParser) -> None:
    """Make ``parser``'s help end with the synthetic lab presets (mrl.synth is imported only when it is shown)."""
    plain = parser.format_help

    def format_help() -> str:
        rows = [f"  {name}: {lab.n_formulas} formulas, {lab.n_materials} materials, {lab.min_ingredients}-"
                f"{lab.max_ingredients} ingredients each" for name, lab in PRESETS.items()]
        return plain() + "\npresets:\n" + "\n".join(rows) + "\n"

    parser.format_help = format_help  # type: ignore[method-assign]


def cmd_similar(args: argparse.Namespace) -> None:
    path = Path(args.run) / EMBEDDINGS
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a finished run (or an adapted one) folder")
    emb = pd.read_parquet(path)
    material = MaterialIndex(emb).resolve(args.material)
    table = nearest_neighbors(emb, material, k=args.k, metric=args.metric)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    note = stacked_vectors_note(Path(args.run))
    if note:
        print(note, file=sys.stderr)


def _mapping(pairs: Sequence[str], what: str) -> dict[str, str | None]:
    """``NEW=KNOWN`` strings -> dict; ``KNOWN`` ``none`` means the origin."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{what} expects NEW=KNOWN, got {pair!r}")
        new, known = (s.strip() for s in pair.split("=", 1))
        out[new] = None if known.lower() == "none" else known
    return out


def _resolved_mapping(est, pairs: Sequence[str], what: str) -> dict[str, str | None]:
    """``NEW=KNOWN`` strings with each KNOWN looked up by code or name in the model's vocabulary; a NEW that is
    already a known material (case and whitespace aside) is refused."""
    index = MaterialIndex.of_model(est)
    out = {}
    for new, known in _mapping(pairs, what).items():
        clash = index.find(new)
        if clash is not None:
            raise ValueError(f"{what}: {new!r} is already in the model's vocabulary, as {index.label(clash)}; "
                             f"give the new material another code")
        out[new] = None if known is None else index.resolve(known, f"{what} partner of {new}")
    return out


def cmd_add_materials(args: argparse.Namespace) -> None:
    est = MixtureRegressor.load(Path(args.run) / CHECKPOINT, device="cpu")
    if args.features:
        if args.formulas or args.properties:
            raise ValueError("--features adds materials by their features alone; leave out --formulas/--properties")
        table, _ = read_table(args.features, "materials")
        print(adapt_run(args.run, args.out, features=table, overwrite=args.overwrite, est=est))
        return
    if not (args.formulas and args.properties):
        raise ValueError("add-materials needs --formulas and --properties (or --features MATERIALS)")
    data = load_formulas(args.formulas, args.properties, args.materials, targets=est.target_,
                         conditions=est.conditions_, name=str(args.formulas))
    like = {k: v for k, v in _resolved_mapping(est, args.like, "--like").items() if v is not None}
    print(adapt_run(args.run, args.out, data=data, like=like, overwrite=args.overwrite, est=est, steps=args.steps,
                    shrinkage=args.shrinkage))


def cmd_tie_materials(args: argparse.Namespace) -> None:
    run = Path(args.run)
    if not (run / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run}: no checkpoint.pt; give a finished run folder")
    est = MixtureRegressor.load(run / CHECKPOINT, device="cpu")
    print(adapt_run(run, args.out, tie=_resolved_mapping(est, args.pairs, "tie-materials"), overwrite=args.overwrite,
                    est=est))


def cmd_sweep(args: argparse.Namespace) -> None:
    try:
        run_sweep(args.sweep, jobs=args.jobs, retry_failed=args.retry_failed, check=True, scheduler=args.scheduler)
    except SweepFailed as exc:
        logging.getLogger("mrl").error("%s", exc)
        sys.exit(1)
    except ImportError as exc:  # --scheduler without dask installed
        logging.getLogger("mrl").error("%s", exc)
        sys.exit(2)


def _for_people(table, path: Path):
    """``table`` as written to ``path``: rounded to 4 significant digits in a CSV (read by people), full precision
    in Parquet."""
    return rounded(table) if path.suffix.lower() == ".csv" else table


def _print_glossary(predictor) -> None:
    rows = column_glossary(predictor)
    width = max(len(name) for name, _ in rows)
    print(f"columns of mrl predict's table ({predictor.name}):")
    for name, meaning in rows:
        print(f"  {name:<{width}}  {meaning}")


def cmd_predict(args: argparse.Namespace) -> None:
    if args.explain:
        _print_glossary(Predictor.from_folder(args.run))
        if args.formulas is None:
            return
    if args.formulas is None or args.out is None:
        raise ValueError("mrl predict needs --formulas and --out (or --explain alone for the column glossary)")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; choose another file or pass --overwrite")
    table = Predictor.from_folder(args.run).predict(args.formulas, args.conditions, unknown=args.unknown,
                                                    top_k=args.top_k, distances=not args.no_distance,
                                                    materials=args.materials)
    write_table(_for_people(table, out), out)
    flagged = int(table["out_of_domain"].sum())
    print(f"{out}: {len(table)} prediction(s), {flagged} flagged out of domain (see the reasons column), "
          f"{int(table['clipped'].sum())} clipped" + ("" if args.explain else "; mrl predict RUN --explain says "
                                                       "what each column means"))


def _bounds(pairs: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``MAT=lo:hi`` strings (in %) -> dict."""
    out = {}
    for pair in pairs:
        mat, sep, rng = pair.partition("=")
        lo, colon, hi = rng.partition(":")
        try:
            if not (sep and colon and mat.strip()):
                raise ValueError
            out[mat.strip()] = (float(lo), float(hi))
        except ValueError:
            raise ValueError(f"--bounds expects MAT=lo:hi (in %), got {pair!r}") from None
    return out


def _design_formula(run: Path, spec: str):
    """``--formula``: a long-format file holding one formula, or a formula id of the run's own data (then also its
    measured value, or None)."""
    if Path(spec).is_file():
        table, label = read_formula_table(spec)  # the loader's reader: sheets, headers, cells as everywhere
        return table.reset_index(drop=True), None
    data, _ = load_run(run).data()
    rows = data.formulas[data.formulas["formula_id"].astype(str) == spec]
    if rows.empty:
        raise FileNotFoundError(f"--formula {spec!r}: neither a file nor a formula id of {run}'s data")
    measured = data.properties.loc[data.properties["formula_id"].astype(str) == spec, data.targets[0]]
    return pd.DataFrame(rows), (float(measured.iloc[0]) if len(measured) == 1 else None)


#: Decimals of contents (%) in design's CSV files: the lab's resolution, without float noise (0.4198, not
#: 0.41980000000000006), and the formula still sums to 100 % within 1e-6.
CONTENT_DECIMALS = 6


def _with_names(forms, names: dict[str, str]):
    """A long-format table with a ``name`` column beside ``material_id`` (where the run knows names)."""
    if not names:
        return forms
    out = forms.copy()
    out.insert(out.columns.get_loc("material_id") + 1, "name", out["material_id"].map(names).fillna(""))
    return out


def _add_from(items: Sequence[str]) -> list[str]:
    """``--add-from``: codes or names (comma or space separated) or tables with a material_id column."""
    add_from: list[str] = []
    for item in items:
        if Path(item).is_file():
            table, label = read_table(item, "candidates")
            if "material_id" not in table.columns:
                raise ValueError(f"{label}: needs a material_id column")
            add_from += table["material_id"].astype(str).tolist()
        else:
            add_from += split_list([item])
    return add_from


def _constraints(args: argparse.Namespace) -> dict[str, Any]:
    """The constraint arguments shared by ``design`` and ``suggest`` as keyword arguments of
    :func:`mrl.design.design`."""
    return dict(conditions={k: float(v) for k, v in _overrides(args.conditions).items()}, fix=split_list(args.fix),
                bounds=_bounds(args.bounds), max_changes=args.max_changes, add_from=_add_from(args.add_from),
                fix_family=split_list(args.fix_family), add_from_family=split_list(args.add_from_family),
                family_column=args.family_column, domain_bounds=not args.no_domain_bounds, step=args.step)


def _window(text: str) -> float:
    """``--window``: ``15%`` or ``0.15`` -> 0.15."""
    try:
        value = float(text[:-1]) / 100.0 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share such as 15% or 0.15, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"the window must lie between 0 and 100 %, got {text!r}")
    return value


def cmd_design(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another folder")
    run = Path(args.run)
    predictor = Predictor.from_folder(run)
    formula, measured = _design_formula(run, args.formula)
    if args.measured is not None:
        measured = args.measured
    if args.no_anchor:
        measured = None
    measured_data = None if args.no_measured else load_run(run).data()[0]
    result = design(predictor, formula, args.target, n_proposals=args.n_proposals, measured=measured, seed=args.seed,
                    min_distance=args.min_distance, measured_data=measured_data, window=args.window,
                    **_constraints(args))
    contents = result.table().reset_index()
    with atomic_dir(out) as tmp:
        write_table(rounded(result.proposals), tmp / "proposals.csv")
        write_table(_with_names(result.formulas.assign(content=result.formulas["content"].round(CONTENT_DECIMALS)),
                                result.names), tmp / "formulas.csv")
        write_table(contents.round(CONTENT_DECIMALS), tmp / "contents.csv")
        save_figure(design_map(predictor, result), tmp / "design_map.png")
    if result.note():
        print(result.note())
    n_ok = int(result.proposals["vouched"].sum())
    print(f"{out}: {len(result.proposals)} proposal(s), {n_ok} vouched (inside the domain, target inside the 80 % "
          f"interval)" + ("" if measured is None else f"; anchored to the measured {measured:g}"))
    for _, row in result.proposals.iterrows():
        print(f"  {row['proposal']}: {format_number(row['prediction'], 4)} [{format_number(row['lower_80'], 4)}, "
              f"{format_number(row['upper_80'], 4)}] P(hit) {row['p_hit']:.2f}, from {row['start']}; "
              f"{'vouched' if row['vouched'] else 'NOT vouched: ' + row['reasons']}; {row['changes']}")
    print(f"contents in % (original and proposals; {out / 'contents.csv'}):")
    print(contents.round(4).to_string(index=False))


def cmd_suggest(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another folder")
    run = Path(args.run)
    predictor = Predictor.from_folder(run)
    data, _ = load_run(run).data()
    result = suggest(predictor, data, args.target, formula=args.formula, window=args.window, batch=args.batch,
                     diversity=args.diversity, seed=args.seed, **_constraints(args))
    names = result.design.names
    with atomic_dir(out) as tmp:
        write_table(rounded(result.batch), tmp / "batch.csv")
        write_table(_with_names(result.formulas.assign(content=result.formulas["content"].round(CONTENT_DECIMALS)),
                                names), tmp / "formulas.csv")
        write_table(rounded(result.design.constrained), tmp / "measured_within_constraints.csv")
    if result.design.note():
        print(result.design.note())
    print(f"{out}: {len(result.batch)} formula(s) to make from {result.base_id} for {format_number(args.target, 4)} "
          f"+-{100 * args.window:g} %; P(at least one hit) {result.p_any:.2f} (picks taken as independent)")
    for _, row in result.batch.iterrows():
        print(f"  {row['suggestion']}: {format_number(row['prediction'], 4)} [{format_number(row['lower_80'], 4)}, "
              f"{format_number(row['upper_80'], 4)}]; {row['changes']}; {row['why']}")
    print(f"measure them and run: mrl add-results {run} --formulas {out / 'formulas.csv'} --properties "
          f"MEASURED.csv --out NEW_RUN")


def cmd_add_results(args: argparse.Namespace) -> None:
    path = add_results(args.run, args.formulas, args.properties, args.out, _overrides(args.overrides))
    print(f"{path}: trained on {args.run}'s data plus the measured formulas of {args.properties} "
          f"({args.run} unchanged)")


def cmd_report(args: argparse.Namespace) -> None:
    if args.out and args.book:
        raise ValueError("give --out or --book, not both (they name the same folder)")
    out = Path(args.out or args.book or default_book_dir(args.path))
    logging.getLogger("mrl").info("report of %s into %s%s", args.path, out,
                                  "" if args.out or args.book else " (no --out given)")
    methods = [m for m in args.maps.split(",") if m]
    print(build_report(args.path, book_dir=out, map_methods=methods).resolve())


def cmd_notebook(args: argparse.Namespace) -> None:
    path = write_notebook(args.run, out=args.out, overwrite=args.overwrite)
    print(path)
    print(f"open it with: jupyter lab {shlex.quote(str(path))}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _target_arguments(p: argparse.ArgumentParser) -> None:
    """The run, target and window options shared by ``design`` and ``suggest``."""
    p.add_argument("run", help="finished run folder")
    p.add_argument("--target", required=True, type=float, help="wanted property value (property units)")
    p.add_argument("--window", type=_window, default="15%",
                   help="a hit lies within this share of the target (default 15%%): P(hit) and 'already made'")


def _output_arguments(p: argparse.ArgumentParser) -> None:
    """The seed and output folder shared by ``design`` and ``suggest``."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (must not exist)")


def _constraint_arguments(p: argparse.ArgumentParser) -> None:
    """The constraint options shared by ``design`` and ``suggest``."""
    p.add_argument("--conditions", nargs="*", default=[], metavar="NAME=VALUE", help="the model's conditions")
    p.add_argument("--fix", nargs="*", default=[], metavar="MAT",
                   help="materials whose content must not change: codes or names (comma or space separated)")
    p.add_argument("--fix-family", nargs="*", default=[], metavar="FAMILY",
                   help="fix every material of these families (e.g. active,preservative; see --family-column)")
    p.add_argument("--bounds", nargs="*", default=[], metavar="MAT=lo:hi",
                   help="content range in %% (code or name); overrides the training range")
    p.add_argument("--no-domain-bounds", action="store_true",
                   help="let contents leave the range each material had in training formulas (by default a "
                        "material of the formula stays between its smallest and largest training content)")
    p.add_argument("--max-changes", type=_positive_int, default=3, help="at most this many materials change")
    p.add_argument("--add-from", nargs="*", default=[], metavar="IDS_OR_FILE",
                   help="materials that may be added: codes or names (comma or space separated) or a table with "
                        "material_id")
    p.add_argument("--add-from-family", nargs="*", default=[], metavar="FAMILY",
                   help="materials of these families may be added (e.g. thickener)")
    p.add_argument("--family-column", default="family",
                   help="the column of the run's materials table that holds the roles (default: family)")
    p.add_argument("--step", type=float, default=None, metavar="PERCENT",
                   help="dosing resolution in %%: every change is a whole multiple of it (e.g. 0.05)")


def build_parser() -> argparse.ArgumentParser:
    """The ``mrl`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mrl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run into runs/<name>/",
                       description="Train one run into <runs_dir>/<name>/. Give --params and/or --set for a new "
                                   "run, or --resume RUN_DIR to continue an interrupted one with its own params.")
    p.add_argument("--params", help="params YAML file")
    p.add_argument("--set", nargs="*", default=None, metavar="KEY=VALUE", help="override params")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue an unfinished run from its last checkpoint: RUN_DIR (with its own params.yaml), "
                        "or the run that --params/--set name; --params/--set may not change its params")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run (the old one is kept until the new one has finished)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train, parser=p)

    p = sub.add_parser("validate", help="check data and params as a run would, and print the plan (no training)",
                       description="Dry run: load and check the data, target, target transform, conditions and "
                                   "split a run would use, and print the plan: what was read (sheet, header row, "
                                   "units row, rows skipped and why, material columns of a wide sheet), formulas, "
                                   "materials, target and transform, conditions, split. Exit status 0 when fine, 2 "
                                   "on an error. Reading keys for --set: layout=wide, sheets={formulas: NAME}, "
                                   "sheet=NAME, id_column, material_columns=B:K, ignore_columns=[...], decimal=',', "
                                   "sep=';', below_limit=half, text_values={tr: 0}.")
    p.add_argument("target", nargs="?", metavar="DATA_OR_PARAMS_YAML",
                   help="data (a folder, a workbook lab.xlsx, or with --set layout=wide one wide sheet or table) "
                        "read with default params, or a params YAML file")
    p.add_argument("--set", nargs="*", default=None, metavar="KEY=VALUE", help="override params")
    p.set_defaults(func=cmd_validate, parser=p)

    p = sub.add_parser("data", help="write the synthetic formulation lab as one workbook or as CSV files",
                       description="Write the bundled synthetic lab: --out lab.xlsx writes one workbook with sheets "
                                   "formulas, properties and materials; --out DIR writes formulas.csv, "
                                   "properties.csv, materials.csv and truth.csv into DIR.")
    p.add_argument("--preset", default="small", help="lab size (listed below; default small)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="a workbook (.xlsx) or an output folder")
    p.set_defaults(func=cmd_data)
    _list_presets(p)

    p = sub.add_parser("similar", help="nearest neighbours of a material in a run's embedding")
    p.add_argument("material", help="material code or name (case and spaces forgiven)")
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("-k", type=_positive_int, default=10, help="how many neighbours (>= 1)")
    p.add_argument("--metric", default="cosine", choices=["cosine", "euclidean"])
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("sweep", help="run a sweep's notebooks with papermill for every grid point "
                                     "(exit status 1 when a point failed)")
    p.add_argument("sweep", help="sweep YAML file (params/<sweep>.yaml)")
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="parallel workers (default: the sweep file's jobs, else 1)")
    p.add_argument("--retry-failed", action="store_true", help="re-run points that failed before")
    p.add_argument("--scheduler", default=None,
                   help="dask.distributed scheduler address (tcp://host:8786) or local:N (a LocalCluster of N "
                        "workers); default: the sweep file's scheduler key, else the local process pool; needs "
                        "pip install 'mrl[cluster]'")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("predict", help="predict new formulas with a run (or adapted) folder: values, 80/95 %% "
                                       "intervals, out-of-domain flags and the materials behind each prediction",
                       description="Predict formulas in the long format (formula_id, material_id, content; no target "
                                   "needed). Writes one row per formula (per conditions row) to --out (.csv or "
                                   ".parquet).")
    p.add_argument("run", help="finished run folder or adapted folder")
    p.add_argument("--formulas", default=None, help="long-format formulas (CSV/Parquet/xlsx)")
    p.add_argument("--conditions", default=None, help="table with formula_id and the model's condition columns")
    p.add_argument("--unknown", default="error", help="materials the model does not know: error (default), zero "
                                                      "(no influence), like:KNOWN (act like material KNOWN: code or "
                                                      "name) or features (g(x) from --materials; models trained with features)")
    p.add_argument("--materials", default=None, help="materials table with the unknown materials' features "
                                                     "(for --unknown features)")
    p.add_argument("--top-k", type=int, default=3, help="materials listed per prediction (0: none)")
    p.add_argument("--no-distance", action="store_true", help="skip the distance-to-training flag (faster)")
    p.add_argument("--out", default=None, help="output table: .csv (numbers rounded to 4 significant digits) or "
                                                 ".parquet (full precision)")
    p.add_argument("--explain", action="store_true", help="print what each column means, with its unit and "
                                                          "threshold (alone: without predicting)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("add-materials", help="fit only the vectors of new materials from their few formulas, "
                                             "the run's model frozen; writes an adapted model folder")
    p.add_argument("run", help="finished run folder")
    p.add_argument("--formulas", default=None, help="long-format formulas (CSV/Parquet) using the new materials")
    p.add_argument("--properties", default=None, help="their measured properties (the run's target)")
    p.add_argument("--features", default=None, metavar="MATERIALS",
                   help="instead of formulas: a materials table (material_id, the model's feature columns or "
                        "smiles, median_content) for a model trained with features: each new material gets g(x)")
    p.add_argument("--materials", default=None, help="optional materials table")
    p.add_argument("--like", nargs="*", default=[], metavar="NEW=KNOWN", help="start a new material from a "
                                                                               "known one's vector (code or name)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--shrinkage", type=float, default=10.0, help="pull to the start, weighing like N formulas")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_add_materials)

    p = sub.add_parser("tie-materials", help="give new materials a known material's vector (NEW=KNOWN) or no "
                                             "influence (NEW=none); writes an adapted model folder")
    p.add_argument("run", help="finished run folder")
    p.add_argument("pairs", nargs="+", metavar="NEW=KNOWN", help="NEW: the new material's code; KNOWN: a known "
                                                                 "material's code or name, or none (no influence)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_tie_materials)

    p = sub.add_parser("design", help="propose content changes that move a formula's predicted property to a target",
                       description="Search contents (at most --max-changes materials, --fix/--fix-family kept, "
                                   "each material within its training range unless --bounds or --no-domain-bounds, "
                                   "additions only from --add-from/--add-from-family) by gradient through the run's "
                                   "model; writes proposals.csv, formulas.csv, contents.csv (original and proposals "
                                   "side by side, with names) and design_map.png into --out (refuses an existing "
                                   "folder). A proposal is vouched only inside the training domain with the target in "
                                   "its 80 % interval.")
    _target_arguments(p)
    p.add_argument("--formula", required=True, help="a formula id of the run's data, or a long-format file holding "
                                                    "one formula")
    _constraint_arguments(p)
    p.add_argument("--min-distance", type=float, default=None, metavar="PERCENT",
                   help="proposals differ from each other by at least this (L1 of contents, %%; default: half the "
                        "larger move)")
    p.add_argument("--n-proposals", type=_positive_int, default=3)
    p.add_argument("--measured", type=float, default=None,
                   help="the formula's measured value: aim at target/measured under the model (default for a "
                        "formula id of the run's data: its recorded measurement)")
    p.add_argument("--no-anchor", action="store_true", help="aim at the target itself, ignoring any measurement")
    p.add_argument("--no-measured", action="store_true",
                   help="ignore the run's measured formulas (no 'already made', no starts from measured formulas)")
    _output_arguments(p)
    p.set_defaults(func=cmd_design)

    p = sub.add_parser("suggest", help="the next batch of formulas to make for a target (probability of a hit with a "
                                       "diversity penalty)",
                       description="Design from a base formula (--formula, default: the measured formula closest to "
                                   "the target) under the constraints, starting also from the run's measured "
                                   "formulas, rank the candidates by the calibrated probability that the true value "
                                   "lies within --window of the target, and pick --batch of them greedily with a "
                                   "penalty for lying close (in the model's mixture vectors) to earlier picks. Writes "
                                   "batch.csv (interval, P(hit), flags, why chosen), formulas.csv and "
                                   "measured_within_constraints.csv into --out (refuses an existing folder).")
    _target_arguments(p)
    p.add_argument("--batch", type=_positive_int, default=8, help="formulas to make (default 8)")
    p.add_argument("--formula", default=None, help="base formula: a formula id of the run's data or a long-format "
                                                   "file (default: the measured formula closest to the target)")
    _constraint_arguments(p)
    p.add_argument("--diversity", type=float, default=0.5, help="length scale of the diversity penalty (share of the "
                                                                "candidates' median mixture distance; 0: none)")
    _output_arguments(p)
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("add-results", help="a new run trained on a run's data plus measured new formulas (the old "
                                           "run is never altered)",
                       description="Write a NEW run folder --out: the old run's data plus --formulas (long format, "
                                   "e.g. a suggest folder's formulas.csv) measured in --properties, in --out/data/; "
                                   "old formulas keep their split, new ones train; trained with the old run's params "
                                   "(override with --set KEY=VALUE, e.g. --set steps=3000).")
    p.add_argument("run", help="finished run folder (left as it is)")
    p.add_argument("--formulas", required=True, help="the new formulas, long format (formula_id, material_id, "
                                                     "content)")
    p.add_argument("--properties", required=True, help="their measurements (formula_id and the run's target)")
    p.add_argument("--out", required=True, help="the new run folder (must not exist)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="params to change for the new run")
    p.set_defaults(func=cmd_add_results)

    p = sub.add_parser("report", help="build the HTML report (a Jupyter Book) of a run or a sweep folder",
                       description="Build the report of a run folder (pages: data, error, intervals, maps, "
                                   "neighbours, predictions) or a sweep folder (results by embedding size, a chapter "
                                   "per point) into --out DIR; open DIR/_build/html/index.html. Runs from any folder.")
    p.add_argument("path", metavar="RUN_OR_SWEEP", help="a run folder (runs/<name>) or a sweep folder")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="report folder (default: ./book when the working folder holds the project's book/, "
                        "else RUN_OR_SWEEP/report); several runs and sweeps may share one")
    p.add_argument("--book", default=None, help=argparse.SUPPRESS)  # the older name of --out
    p.add_argument("--maps", default="pca,tsne", help="projections of a run's maps, comma separated (pca, umap, "
                                                      "tsne); sweeps draw theirs in their notebooks")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("notebook", help="write a notebook that opens a run for exploration and print the command "
                                        "that opens it",
                       description="Write a thin Jupyter notebook beside the run (RUN.ipynb next to the RUN folder): "
                                   "load the run, its map, a material's neighbours, a new formula's prediction and a "
                                   "design. Prints the `jupyter lab` command that opens it.")
    p.add_argument("run", help="finished run folder")
    p.add_argument("--out", default=None, help="notebook path (default: beside the run, <run>.ipynb)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing notebook")
    p.set_defaults(func=cmd_notebook)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run one subcommand; user-fixable errors end with one line and exit status 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError, yaml.YAMLError) as exc:
        # mrl.tables.DataError is a ValueError: its message names the file, row and column
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        lines = [line.strip() for line in str(message).splitlines() if line.strip()]
        logging.getLogger("mrl").error("%s", "; ".join(lines) if isinstance(exc, yaml.YAMLError) else message)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
