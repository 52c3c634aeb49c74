"""How far can a prediction be trusted? One model vs an ensemble, calibrated intervals, and domain flags.

For each scenario the model is trained on the ``train`` formulas, intervals and domain thresholds are learned on
the ``calib`` formulas (a share of the training formulas held out; never eval or test), and everything is scored
on the evaluation rows (``eval`` for the lab, the paper's ``test`` for melt viscosity, the Matbench test folds
for expt_gap). Rows: one model (member 0) and an ensemble of ``--members`` (member 0 and others from other seeds).

Columns: eval MAE in model units (log10 for a log-transformed target) and in the property's units; observed
coverage of the nominal 80 % and 95 % intervals (goal: within 5 points); mean 80 % interval width (model units);
Spearman correlation between the members' spread and the absolute error; MAE of the 10 % most and least confident
predictions; share of eval formulas flagged out of domain and the MAE of flagged vs unflagged ones; wall time.
A last table times prediction of 100,000 seed-scale formulas (target: under 5 s on 2 cores).

    OMP_NUM_THREADS=1 python benchmarks/uncertainty.py    # lab (random and material split, 3 splits each)
    python benchmarks/uncertainty.py --only melt expt_gap # the real-data scenarios (slower)
    python benchmarks/uncertainty.py --only speed
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from mrl.book import fill_marked_sections
from mrl.data import FormulaData
from mrl.ensemble import member_seed
from mrl.estimator import MixtureRegressor
from mrl.predict import calibrated_predictor
from mrl.splits import hold_out_calibration
from mrl.uncertainty import coverage, to_model_units
from mrl.wording import Score, against_target, compare, format_number

log = logging.getLogger("uncertainty")
LAB = dict(embedding_dim=10, steps=4000, batch_size=256)
MELT = dict(embedding_dim=16, hidden=(128, 128), content_scale="none", pin_origin=None, target_transform="none",
            inverse_conditions=("T",), steps=12000, batch_size=1024, lr=0.01)
EXPT_GAP = dict(embedding_dim=16, content_scale="none", pin_origin=None, target_transform="none", steps=2000,
                loss="l1", batch_size=256)


@dataclass
class Scenario:
    """One data set with its evaluation rows and model settings."""

    name: str
    data: FormulaData
    splits: list[np.ndarray]  # one label array per fold ("train" / "eval" / other)
    settings: dict
    initial_table: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


#: Share held out for eval: 20 % of the formulas, or 5 % of the materials (each formula holds ~16 materials, so
#: that already puts about half of the formulas in eval).
EVAL_FRACTION = {"random": 0.2, "material": 0.05}


def lab_scenario(split: str, steps: int, seeds: int = 1) -> Scenario:
    """The small lab with ``seeds`` different splits (one fold each)."""
    from mrl.splits import make_split
    from mrl.synth import make_lab

    data, _ = make_lab("small", seed=0)
    splits = [make_split(data, split, EVAL_FRACTION[split], seed=seed) for seed in range(seeds)]
    share = np.mean([(labels == "eval").mean() for labels in splits])
    return Scenario(f"lab, {split} split", data, splits, {**LAB, "steps": steps},
                    notes=[f"{100 * share:.0f} % of the formulas in eval"])


def melt_scenario(steps: int) -> Scenario:
    from mrl.public_data import load_dataset

    data = load_dataset("melt_viscosity")
    labels = data.properties["split"].to_numpy(dtype=object).copy()
    labels[labels == "eval"] = "unused"  # the paper's valid split: not needed here
    labels[labels == "test"] = "eval"
    return Scenario("melt viscosity, paper's test", data, [labels], {**MELT, "steps": steps,
                    "conditions": None}, notes=["eval = the paper's test split"])


def expt_gap_scenario(steps: int, folds: int) -> Scenario:
    from mrl.elements import element_table
    from mrl.init_vectors import initial_table
    from mrl.public_data import load_dataset, matbench_folds

    data = load_dataset("matbench_expt_gap")
    splits = []
    for _, test_idx in matbench_folds(data)[:folds]:
        labels = np.full(data.n_samples, "train", dtype=object)
        labels[test_idx] = "eval"
        splits.append(labels)
    start = initial_table(element_table("mat2vec"), data.material_ids, EXPT_GAP["embedding_dim"])
    return Scenario(f"expt_gap, {folds} Matbench folds", data, splits, {**EXPT_GAP, "steps": steps}, start)


def fit_members(scenario: Scenario, train: FormulaData, n_members: int) -> list[MixtureRegressor]:
    settings = {k: v for k, v in scenario.settings.items() if k != "conditions"}
    out = []
    for k in range(n_members):
        est = MixtureRegressor(**settings, seed=member_seed(0, k), progress=False, device="cpu")
        out.append(est.fit(train, initial_table=scenario.initial_table))
    return out


def score(predictor, data: FormulaData) -> dict:
    """The row's numbers on ``data`` (the evaluation rows)."""
    table = predictor.predict(data, top_k=0)
    y = data.target_values(predictor.members[0].target_)
    transform = predictor.transform
    err_model = np.abs(to_model_units(table["prediction"].to_numpy(), transform) - to_model_units(y, transform))
    out = {"mae_model": float(err_model.mean()), "mae": float(np.abs(table["prediction"] - y).mean()),
           "cov80": coverage(y, table["lower_80"], table["upper_80"]),
           "cov95": coverage(y, table["lower_95"], table["upper_95"]),
           "width80": float(np.mean(to_model_units(table["upper_80"].to_numpy(), transform)
                                    - to_model_units(table["lower_80"].to_numpy(), transform)))}
    spread = table["spread"].to_numpy()
    if np.isfinite(spread).all() and len(predictor.members) > 1:
        out["spearman"] = float(stats.spearmanr(spread, err_model).statistic)
        order = np.argsort(spread)
        tenth = max(1, len(order) // 10)
        out["mae_confident"] = float(err_model[order[:tenth]].mean())
        out["mae_unsure"] = float(err_model[order[-tenth:]].mean())
    flagged = table["out_of_domain"].to_numpy(bool)
    out["flagged"] = float(flagged.mean())
    out["mae_flagged"] = float(err_model[flagged].mean()) if flagged.any() else float("nan")
    out["mae_unflagged"] = float(err_model[~flagged].mean()) if (~flagged).any() else float("nan")
    return out


def run_scenario(scenario: Scenario, n_members: int) -> list[dict]:
    rows: dict[str, list[dict]] = {"one model": [], f"ensemble of {n_members}": []}
    for fold, labels in enumerate(scenario.splits):
        labels = hold_out_calibration(labels, scenario.data.properties["formula_id"].to_numpy(), 0.1, seed=fold)
        train = scenario.data.subset(labels == "train")
        started = time.perf_counter()
        members = fit_members(scenario, train, n_members)
        fit_s = time.perf_counter() - started
        evaluation = scenario.data.subset(labels == "eval")
        for name, chosen in (("one model", members[:1]), (f"ensemble of {n_members}", members)):
            predictor = calibrated_predictor(chosen, scenario.data, labels)
            rows[name].append({**score(predictor, evaluation), "fit_s": fit_s * len(chosen) / n_members})
        log.info("%s fold %d done in %.0f s", scenario.name, fold, time.perf_counter() - started)
    out = []
    for name, folds in rows.items():
        frame = pd.DataFrame(folds)
        row = {"scenario": scenario.name, "model": name, "folds": len(folds), **frame.mean().to_dict()}
        if len(folds) > 1:  # spread over folds (splits) of the main numbers
            for key in ("mae_model", "cov80", "cov95"):
                row[f"{key}_sd"] = float(frame[key].std())
        out.append(row)
    return out


#: Formulas-per-material bins of the neighbour-stability table.
USAGE_BINS = (0, 5, 20, 100, 10**9)


def neighbours(n_members: int, steps: int) -> list[dict]:
    """How far the members of one ensemble (small lab, random split) agree on each material's 10 nearest
    neighbours (cosine), by how many training formulas use the material: median and quartiles of the share of
    member 0's neighbours that another member also lists (:func:`mrl.ensemble.neighbour_stability`)."""
    from mrl.ensemble import neighbour_stability

    scenario = lab_scenario("random", steps)
    labels = hold_out_calibration(scenario.splits[0], scenario.data.properties["formula_id"].to_numpy(), 0.1, 0)
    members = fit_members(scenario, scenario.data.subset(labels == "train"), n_members)
    table = neighbour_stability([m.embeddings() for m in members], k=10)
    table["usage"] = pd.cut(table["n_formulas"], USAGE_BINS, right=True,
                            labels=[f"{a + 1}-{b}" if b < 10**9 else f"> {a}" for a, b in zip(USAGE_BINS, USAGE_BINS[1:])])
    out = []
    for usage, group in table.groupby("usage", observed=True):
        q = group["neighbour_agreement"].quantile([0.25, 0.5, 0.75])
        out.append({"training formulas per material": str(usage), "materials": int(len(group)),
                    "median agreement": float(q[0.5]), "quartiles": f"{q[0.25]:.2f}-{q[0.75]:.2f}"})
    return out


def speed(n: int = 100_000) -> dict:
    """Seconds to predict ``n`` seed-scale formulas: bare predictions, and the full table with flags."""
    from mrl.synth import make_lab

    data, _ = make_lab("seed-scale", seed=0)
    est = MixtureRegressor(embedding_dim=10, steps=50, progress=False, device="cpu").fit(data)
    matrix, cond = est.encode(data)
    rows = np.resize(np.arange(matrix.shape[0]), n)
    big, big_cond = matrix[rows], cond[rows]
    started = time.perf_counter()
    est.predict_matrix(big, big_cond)
    bare = time.perf_counter() - started
    labels = hold_out_calibration(np.full(data.n_samples, "train", dtype=object),
                                  data.properties["formula_id"].to_numpy(), 0.1, 0)
    predictor = calibrated_predictor([est], data, labels)
    sample = data.subset(np.isin(np.arange(data.n_samples), np.arange(2000)))
    started = time.perf_counter()
    predictor.predict(sample, top_k=3, distances=False)
    table_2k = time.perf_counter() - started
    started = time.perf_counter()
    predictor.predict(sample, top_k=0, distances=True)
    distance_2k = time.perf_counter() - started
    return {"n": n, "bare_s": bare, "target_s": 5.0, "ratio_to_target": bare / 5.0,
            "table_s_per_1000 (flags without L1, top 3)": table_2k / 2, "table_s_per_1000 (with L1 distance)":
            distance_2k / 2}


COLUMNS = {"scenario": "scenario", "model": "model", "folds": "folds", "mae_model": "MAE (model units)",
           "mae": "MAE (property units)", "cov80": "coverage of 80 %", "cov95": "coverage of 95 %",
           "width80": "80 % width (model units)", "spearman": "Spearman(spread, error)",
           "mae_confident": "MAE, 10 % most confident", "mae_unsure": "MAE, 10 % least confident",
           "flagged": "share flagged", "mae_flagged": "MAE flagged", "mae_unflagged": "MAE not flagged",
           "fit_s": "fit s"}


#: The two tables a page shows (a single 15-column table does not fit a page): accuracy and coverage; ranking and
#: flags.
TABLES = (("scenario", "model", "folds", "mae_model", "cov80", "cov95", "width80", "fit_s"),
          ("scenario", "model", "spearman", "mae_confident", "mae_unsure", "flagged", "mae_flagged", "mae_unflagged"))


def render_markdown(rows: list[dict], columns: tuple[str, ...] | None = None) -> str:
    """The rows as a markdown table (``columns``: keys of :data:`COLUMNS`; default: all present); without
    ``columns`` and with rows of ensembles, the two :data:`TABLES` one after the other."""
    if columns is None:
        return "\n\n".join(render_markdown(rows, table) for table in TABLES)
    def fmt(key: str, value) -> str:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return ""
        if key in ("scenario", "model"):
            return str(value)
        if key == "folds":
            return str(int(value))
        if key == "fit_s":
            return f"{value:,.0f}"
        if key == "mae":
            return f"{value:,.4g}"
        return f"{value:.3f}"

    keys = [k for k in columns if any(k in row for row in rows)]
    lines = ["| " + " | ".join(COLUMNS[k] for k in keys) + " |", "|" + "|".join("---" if k in ("scenario", "model")
                                                                           else "--:" for k in keys) + "|"]
    def cell(row: dict, key: str) -> str:
        sd = row.get(f"{key}_sd")
        return fmt(key, row.get(key)) + (f" ± {sd:.3f}" if sd is not None and np.isfinite(sd) else "")

    lines += ["| " + " | ".join(cell(row, k) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


#: The committed result files of book/uncertainty.md, in the order of its table.
RESULT_FILES = ("benchmarks/results/uncertainty_lab_expt_gap.json", "benchmarks/results/uncertainty_melt.json",
                "benchmarks/results/uncertainty_neighbours.json")
#: Coverage goal: the nominal share within this many points (as a share).
COVERAGE_TOLERANCE = 0.05
#: Nearest neighbours compared across members in the neighbour-stability table.
NEIGHBOURS_K = 10


def _score(row: dict, key: str) -> Score:
    """A row's value with its SD over folds or splits (a single run where ``folds`` is 1)."""
    n = int(row.get("folds", 1))
    return Score(row[key], row.get(f"{key}_sd"), n, "splits" if row["scenario"].startswith("lab") else "folds")


def _coverage_sentence(row: dict, level: int) -> str:
    return against_target(_score(row, f"cov{level}"), level / 100, f"{level} % coverage of {row['scenario']}, "
                          f"{row['model']}", "the nominal", tolerance=COVERAGE_TOLERANCE, spread=False).sentence


def render_coverage(files: list[dict]) -> str:
    """Each row's observed coverage against the nominal share (goal: within 5 points), and each ensemble against
    its one model, worded by mrl.wording."""
    rows = [row for data in files for row in data["rows"]]
    lines = [f"Coverage against the nominal share (goal: within {COVERAGE_TOLERANCE * 100:.0f} points), and each "
             "ensemble's eval MAE against its one model's:", ""]
    for row in rows:
        lines.append(f"* {_coverage_sentence(row, 80)} {_coverage_sentence(row, 95)}")
    for row in rows:
        if row["model"] != "one model":
            one = next((r for r in rows if r["scenario"] == row["scenario"] and r["model"] == "one model"), None)
            if one is not None:
                c = compare(_score(row, "mae_model"), _score(one, "mae_model"), f"the {row['model']}", "one model",
                            what=f"eval MAE on {row['scenario']} (model units)")
                lines.append(f"* {c.sentence}")
    return "\n".join(lines)


def render_key_result(files: list[dict]) -> str:
    """The page's key result (quoted on the report's first page): the lab's ensemble against one model, the
    coverage where eval is like training and on the material split, and the error by confidence."""
    rows = [row for data in files for row in data["rows"]]
    def find(scenario: str, model: str) -> dict | None:
        return next((r for r in rows if r["scenario"].startswith(scenario) and r["model"] == model), None)
    parts = ["Every prediction comes with calibrated 80 % and 95 % intervals and out-of-domain flags."]
    ens, one = find("lab, random", "ensemble of 5"), find("lab, random", "one model")
    if ens and one:
        parts.append(compare(_score(ens, "mae_model"), _score(one, "mae_model"), "an ensemble of 5", "one model",
                             what="lab's eval MAE (log10)").sentence)
        parts.append(f"The ensemble's 10 % most confident predictions err {format_number(ens['mae_confident'])} "
                     f"log10, its least confident {format_number(ens['mae_unsure'])}.")
        parts.append(_coverage_sentence(ens, 80))
    mat = find("lab, material", "ensemble of 5")
    if mat:
        parts.append(f"On the material split, {mat['flagged'] * 100:.0f} % of eval formulas are flagged out of domain. "
                     + _coverage_sentence(mat, 80))
    return " ".join(parts)


def render_neighbours(files: list[dict]) -> str:
    """The neighbour-stability table and its chance level."""
    table = next((data["neighbours"] for data in files if data.get("neighbours")), None)
    if not table:
        return "(no neighbour-stability rows in the result files)"
    frame = pd.DataFrame(table)
    n = int(frame["materials"].sum())
    chance = NEIGHBOURS_K / (n - 1)
    ratios = frame["median agreement"] / chance
    return (f"{n} used materials; chance: {NEIGHBOURS_K} / {n - 1} = {chance:.2f}.\n\n"
            + frame.to_markdown(index=False, floatfmt=".2f")
            + f"\n\nThe median agreement is {ratios.min():.1f} to {ratios.max():.1f} times chance.")


#: Regions of book/uncertainty.md filled from the result files: marker name -> render function of the files.
SECTIONS = {"key-result": render_key_result,
            "uncertainty-table": lambda files: render_markdown([r for d in files for r in d["rows"]]),
            "uncertainty-coverage": render_coverage, "uncertainty-neighbours": render_neighbours}


def write_book(files: list[dict], path: str) -> None:
    """Fill each rendered region of :data:`SECTIONS` between its ``<!-- NAME -->`` markers on the page."""
    fill_marked_sections(path, {name: fn(files) for name, fn in SECTIONS.items()})


def coverage_figure(rows: list[dict], path: str) -> None:
    """Observed vs nominal coverage, and MAE of the most/least confident tenth and of flagged/unflagged formulas."""
    from mrl.plots import new_figure, save_figure

    fig, axes = new_figure(1, 2, figsize=(12, 5.2))
    left, right = np.ravel(axes)
    labels = [f"{r['scenario']}\n{r['model']}" for r in rows]
    x = np.arange(len(rows))
    left.bar(x - 0.2, [r["cov80"] for r in rows], 0.4, label="80 % interval")
    left.bar(x + 0.2, [r["cov95"] for r in rows], 0.4, label="95 % interval")
    for level in (0.8, 0.95):
        left.axhline(level, color="k", lw=0.8, ls="--")
    left.set_xticks(x, labels, fontsize=9, rotation=30, ha="right")
    left.set_ylim(0.5, 1.0)
    left.set_ylabel("observed coverage on eval (share of measurements)")
    left.set_title("Calibrated intervals: observed vs nominal (dashed)")
    left.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.42), ncols=2, frameon=False)
    ens = [r for r in rows if "mae_confident" in r and np.isfinite(r.get("mae_confident", np.nan))]
    xe = np.arange(len(ens))
    right.bar(xe - 0.3, [r["mae_confident"] for r in ens], 0.2, label="10 % most confident")
    right.bar(xe - 0.1, [r["mae_unsure"] for r in ens], 0.2, label="10 % least confident")
    right.bar(xe + 0.1, [r["mae_unflagged"] for r in ens], 0.2, label="not flagged")
    right.bar(xe + 0.3, [r["mae_flagged"] for r in ens], 0.2, label="flagged out of domain")
    right.set_xticks(xe, [r["scenario"] for r in ens], fontsize=9, rotation=30, ha="right")
    right.set_ylabel("eval MAE (log10 of viscosity; eV for expt_gap)")
    right.set_title("Ensembles: error by confidence and by flag")
    right.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.42), ncols=2, frameon=False)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=["lab", "material"],
                        choices=["lab", "material", "melt", "expt_gap", "speed", "neighbours"])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="override the scenarios' training steps")
    parser.add_argument("--folds", type=int, default=5, help="expt_gap: Matbench folds to run")
    parser.add_argument("--seeds", type=int, default=3, help="lab: splits (split seeds) to run")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    parser.add_argument("--render", nargs="*", metavar="JSON", help="only print the markdown table of --json files (none given: RESULT_FILES)")
    parser.add_argument("--figure", default=None, help="with --render: also draw the coverage figure here (PNG)")
    parser.add_argument("--book", default=None, help="with --render: fill the marked regions of this page "
                                                     "(book/uncertainty.md; give the RESULT_FILES)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.render is not None:
        files = [json.loads(open(path).read()) for path in args.render or RESULT_FILES]
        rows = [row for data in files for row in data["rows"]]
        if args.book:
            write_book(files, args.book)
            print(f"wrote {args.book}")
            return
        if rows:
            print(render_markdown(rows))
        for data in files:
            if data.get("neighbours"):
                print("\n" + pd.DataFrame(data["neighbours"]).to_markdown(index=False, floatfmt=".2f"))
        if args.figure:
            coverage_figure(rows, args.figure)
        return
    rows, timing, stability = [], None, None
    for which in args.only:
        if which == "speed":
            timing = speed()
            continue
        if which == "neighbours":
            stability = neighbours(args.members, args.steps or LAB["steps"])
            print(pd.DataFrame(stability).to_markdown(index=False, floatfmt=".2f"))
            continue
        scenario = {"lab": lambda: lab_scenario("random", args.steps or LAB["steps"], args.seeds),
                    "material": lambda: lab_scenario("material", args.steps or LAB["steps"], args.seeds),
                    "melt": lambda: melt_scenario(args.steps or MELT["steps"]),
                    "expt_gap": lambda: expt_gap_scenario(args.steps or EXPT_GAP["steps"], args.folds)}[which]()
        rows += run_scenario(scenario, args.members)
    if rows:
        table = pd.DataFrame(rows)
        with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
            print(table.to_string(index=False))
    if timing:
        print(pd.Series(timing).to_string())
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "speed": timing, "neighbours": stability}, handle, indent=2)


if __name__ == "__main__":
    main()
