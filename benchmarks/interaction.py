"""Interactions between ingredients: speed of the interaction models against the plain sum, their accuracy on the
synthetic formulation lab, and what the transformer learned for a thickener with and without its neutraliser.
Prints tables and writes ``benchmarks/results/interaction_lab.json`` (not a test).

    python benchmarks/interaction.py                       # speed + lab (2 seeds x 4 settings) + example
    python benchmarks/interaction.py --only speed          # the speed table alone (~2 min)
    python benchmarks/interaction.py --steps 2000 --seeds 0
    python benchmarks/interaction.py --render               # book/interactions.md from the result files

(a) **Speed**: seconds per training step (forward, MSE, backward, Adam: what :mod:`mrl.train` does) at batch 256 on
    the small lab (~16.5 ingredients per formula) and the seed-scale lab (~21), one torch thread, best of two
    rounds; the ratio to the plain step is per formula (same batch). Every row has the same head and table.
(b) **Lab**: eval MAE in log10 and in cP on the small lab's random 80/20 split for the plain sum, one attention
    layer (``interaction: attention``) and the transformer (``interaction: transformer``) with attention and with
    pooled mixing; the same steps and seeds for all; mean +- SD over seeds. The settings are fixed in advance (not
    tuned on eval).
(c) **Thickener and neutraliser**: for eval formulas holding a carbomer-type thickener (it only swells once
    neutralised) and a base, the same formula with the base's content moved to water: the hidden rule's viscosity,
    the prediction of the plain sum and of the transformer, and the size of the thickener's interaction term
    ``|c s u|`` against its own term ``|c e|`` (:meth:`mrl.model.MixtureModel.interaction_terms`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import BATCH, Bench, load, timed  # noqa: E402

from mrl.book import fill_marked_sections, markdown_table  # noqa: E402
from mrl.estimator import MixtureRegressor  # noqa: E402
from mrl.io import write_json  # noqa: E402
from mrl.metrics import regression_metrics  # noqa: E402
from mrl.model import MixtureModel, make_batch  # noqa: E402
from mrl.splits import make_split  # noqa: E402
from mrl.synth import make_lab, true_viscosity  # noqa: E402
from mrl.train import make_optimizer  # noqa: E402
from mrl.wording import Score, best_of, compare, format_number  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "interaction_lab.json"
PAGE = ROOT / "book" / "interactions.md"
MATBENCH_PAGE = ROOT / "book" / "matbench.md"
#: Matbench tasks whose transformer rows the page shows: result files of ``benchmarks/matbench.py``.
MATBENCH_TASKS = ("steels", "expt_gap")
#: The settings compared, fixed in advance: label -> model options.
SETTINGS = {
    "plain sum": {},
    "attention, 1 layer": {"interaction": "attention"},
    "transformer, attention": {"interaction": "transformer", "interaction_layers": 2, "interaction_width": 32,
                               "interaction_heads": 2},
    "transformer, pooling": {"interaction": "transformer", "interaction_layers": 3, "interaction_width": 32,
                             "interaction_mixing": "pooling"},
}
SPEED_SETTINGS = {
    **SETTINGS,
    "transformer, attention, 3 x 64": {"interaction": "transformer"},
    "transformer, pooling, 3 x 64": {"interaction": "transformer", "interaction_mixing": "pooling"},
    "transformer, pooling, 2 x 16": {"interaction": "transformer", "interaction_layers": 2, "interaction_width": 16,
                                     "interaction_mixing": "pooling"},
}


def training_step(bench: Bench, options: dict):
    """One mrl training step of ``options`` on ``bench``'s matrix (same head, table and Adam for all)."""
    torch.manual_seed(0)
    model = MixtureModel(bench.X.shape[1], bench.dim, median_content=bench.median, **options)
    opt, sched = make_optimizer(model, bench.cfg)

    def step() -> None:
        idx = bench.rows(BATCH)
        loss = F.mse_loss(model(make_batch(bench.X, idx)), bench.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    return step


def speed_table(presets: list[str], dim: int = 10) -> list[dict]:
    """Milliseconds per training step at batch 256 and the per-formula ratio to the plain step."""
    rows = []
    for preset in presets:
        _, X, y = load(preset)
        bench = Bench(X, y, dim)
        steps = {label: training_step(bench, options) for label, options in SPEED_SETTINGS.items()}
        best: dict[str, float] = {}
        for _ in range(2):  # two rounds, best of each: the load moves
            for label, step in steps.items():
                best[label] = min(best.get(label, float("inf")), timed(step, 2.0, 40))
        for label, seconds in best.items():
            rows.append({"lab": preset, "ingredients per formula": X.nnz / X.shape[0], "model": label,
                         "ms per step": seconds * 1e3, "x plain": seconds / best["plain sum"]})
    return rows


def lab_table(steps: int, seeds: list[int], dim: int, done: list[dict], save) -> tuple[list[dict], dict]:
    """Eval MAE (log10 and cP) of each setting on the small lab, per seed; runs already in ``done`` (same steps and
    dim, from an interrupted run) are kept, not refitted; ``save(rows)`` is called after every run (resume)."""
    data, truth = make_lab("small")
    split = make_split(data, "random", 0.2, 0)
    train, ev = data.subset(split == "train"), data.subset(split == "eval")
    y = ev.target_values()
    rows, models = list(done), {}

    def fit(label: str, seed: int) -> MixtureRegressor:
        return MixtureRegressor(embedding_dim=dim, steps=steps, eval_every=steps, checkpoint_every=steps,
                                snapshot_every=steps, progress=False, device="cpu", seed=seed,
                                **SETTINGS[label]).fit(train)

    for label in SETTINGS:
        for seed in seeds:
            if any(r["model"] == label and r["seed"] == seed for r in rows):
                continue
            start = time.perf_counter()
            est = fit(label, seed)
            pred = est.predict(ev)
            rows.append({"model": label, "seed": seed, "eval MAE log10": regression_metrics(
                np.log10(y), np.log10(pred))["mae"], "eval MAE cP": regression_metrics(y, pred)["mae"],
                "fit s": time.perf_counter() - start})
            print(f"  {label}, seed {seed}: {rows[-1]['eval MAE log10']:.4f} log10, {rows[-1]['eval MAE cP']:,.0f} cP, "
                  f"{rows[-1]['fit s']:.0f} s", flush=True)
            save(rows)
            if seed == seeds[0]:
                models[label] = est
    transformers = [k for k in SETTINGS if k.startswith("transformer")]
    scores = pd.DataFrame(rows).groupby("model")["eval MAE log10"].mean()
    best = min(transformers, key=lambda k: scores.get(k, np.inf))
    for label in ("plain sum", best):  # the example's models: refit (seed of the first run) when resumed
        if label not in models:
            models[label] = fit(label, seeds[0])
    return rows, {"data": data, "truth": truth, "eval": ev, "models": models, "transformer": best}


def thickener_example(lab: dict, n: int = 20) -> dict:
    """Eval formulas with a carbomer and a base, with and without the base (its content moved to water)."""
    data, truth, ev, models = lab["data"], lab["truth"], lab["eval"], lab["models"]
    kind = truth.set_index("material_id")["kind"]
    forms = ev.formulas.assign(kind=ev.formulas["material_id"].map(kind))
    has = forms.groupby("formula_id")["kind"].agg(lambda k: {"carbomer", "base"} <= set(k))
    chosen = has[has].index[:n]
    plain, transformer = models["plain sum"], models[lab["transformer"]]
    ids = pd.Index(plain.materials_["material_id"])
    water = data.base_material()
    truth_order = truth.set_index("material_id").index
    rows = []
    for fid in chosen:
        f = forms[forms["formula_id"] == fid]
        without = f[f["kind"] != "base"].copy()
        moved = f.loc[f["kind"] == "base", "content"].sum()
        without.loc[without["material_id"] == water, "content"] += moved
        entry = {"formula_id": str(fid), "carbomer": str(f.loc[f["kind"] == "carbomer", "material_id"].iloc[0]),
                 "base %": 100 * float(moved)}
        for tag, table in (("with base", f), ("without base", without)):
            X = sp.csr_matrix((table["content"].to_numpy(), (np.zeros(len(table), int),
                                                            ids.get_indexer(table["material_id"]))),
                              shape=(1, len(ids)))
            Xt = sp.csr_matrix((table["content"].to_numpy(), (np.zeros(len(table), int),
                                                             truth_order.get_indexer(table["material_id"]))),
                               shape=(1, len(truth_order)))
            entry[f"truth {tag} (cP)"] = float(true_viscosity(Xt, truth)[0])
            entry[f"plain {tag} (cP)"] = float(plain.predict_matrix(X)[0])
            entry[f"transformer {tag} (cP)"] = float(transformer.predict_matrix(X)[0])
            module = transformer.module_
            batch = make_batch(X, np.array([0])).to(next(module.parameters()).device)
            with torch.no_grad():
                terms = module.interaction_terms(batch)
                own = module.material_vectors()[batch.index] * batch.content[:, None]
            at = int(np.flatnonzero(batch.index.cpu().numpy() == ids.get_loc(entry["carbomer"]))[0])
            entry[f"thickener interaction / own {tag}"] = float(terms[at].norm() / own[at].norm().clamp_min(1e-12))
        rows.append(entry)
    table = pd.DataFrame(rows)

    def ratio(prefix: str) -> pd.Series:
        return np.log10(table[f"{prefix} with base (cP)"] / table[f"{prefix} without base (cP)"])

    return {"transformer": lab["transformer"], "formulas": rows, "median log10 drop without base": {p: float(ratio(p).median())
                                                                 for p in ("truth", "plain", "transformer")},
            "median thickener interaction / own": {
                tag: float(table[f"thickener interaction / own {tag}"].median())
                for tag in ("with base", "without base")}}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and SD over seeds of each setting's eval errors."""
    frame = pd.DataFrame(rows)
    out = []
    for label, group in frame.groupby("model", sort=False):
        out.append({"model": label, "seeds": len(group),
                    **{f"{k} mean": float(group[k].mean()) for k in ("eval MAE log10", "eval MAE cP", "fit s")},
                    **{f"{k} sd": float(group[k].std(ddof=1)) if len(group) > 1 else 0.0
                       for k in ("eval MAE log10", "eval MAE cP")}})
    return out


# ---------------------------------------------------------------------------------------------------- the book page
def _lab_score(summary: dict, key: str) -> Score:
    return Score(summary[f"{key} mean"], summary[f"{key} sd"], summary["seeds"])


def render_speed(result: dict) -> str:
    """The speed table and the ratio of the fastest transformer setting to the plain step."""
    frame = pd.DataFrame(result["speed"])
    frame["ingredients per formula"] = frame["ingredients per formula"].round(1)
    transformer = frame[frame["model"].str.startswith("transformer")]
    fastest = transformer.loc[transformer.groupby("lab")["x plain"].idxmin()]
    words = "; ".join(f"on the {r['lab']} lab, {r['model']} at {format_number(r['x plain'])} x the plain step's "
                      f"time per formula" for _, r in fastest.iterrows())
    load = result.get("machine", {}).get("load_1min")
    return (f"Milliseconds per training step (forward, loss, backward, Adam) at batch 256, one torch thread on "
            f"{result.get('machine', {}).get('cores', '?')} shared cores (load {format_number(load or float('nan'))}); "
            f"best of two rounds. The ratio is per formula against the plain sum.\n\n"
            + markdown_table(frame.rename(columns={"x plain": "x plain (time per formula)"}))
            + f"\n\nFastest transformer setting: {words}.")


def render_lab(result: dict) -> str:
    """The lab table and each interaction against the plain sum, in log10 and in cP."""
    lab = result["lab"]
    rows = {r["model"]: r for r in lab["summary"]}
    frame = pd.DataFrame([{"model": name, "seeds": r["seeds"], "eval MAE (log10 cP)": _lab_score(r, "eval MAE log10").text(),
                           "eval MAE (cP)": _lab_score(r, "eval MAE cP").text("cP", 3),
                           "fit time (s, mean)": r["fit s mean"]} for name, r in rows.items()])
    plain = rows["plain sum"]
    sentences = []
    for name, r in rows.items():
        if name == "plain sum":
            continue
        for key, unit in (("eval MAE log10", "log10"), ("eval MAE cP", "cP")):
            sentences.append("- " + compare(_lab_score(r, key), _lab_score(plain, key), name, "the plain sum",
                                            what=f"eval MAE ({unit})", unit=unit).sentence)
    return (f"Small lab, random 80/20 split by formula, embedding size {lab['dim']}, {lab['steps']:,} steps for every "
            f"model (the seeds column says how many runs each row has); the settings were fixed before the runs.\n\n"
            + markdown_table(frame) + "\n\n" + "\n".join(sentences))


def render_thickener(result: dict) -> str:
    """The thickener example: truth and predictions with and without the neutraliser."""
    t = result["thickener"]
    frame = pd.DataFrame(t["formulas"][:8])
    names = make_lab("small")[0].materials.set_index("material_id")["name"]
    frame["carbomer"] = [f"{names.get(m, m)} ({m})" for m in frame["carbomer"]]
    for who in ("truth", "plain", "transformer"):
        frame[f"{who}, with → without base (cP)"] = [
            f"{format_number(a)} → {format_number(b)}"
            for a, b in zip(frame[f"{who} with base (cP)"], frame[f"{who} without base (cP)"])]
    frame = frame.rename(columns={"formula_id": "formula", "carbomer": "thickener", "base %": "base (%)"})[
        ["formula", "thickener", "base (%)", *(f"{w}, with → without base (cP)" for w in ("truth", "plain",
                                                                                          "transformer"))]]
    drop = t["median log10 drop without base"]
    ratio = t["median thickener interaction / own"]
    return (f"Eval formulas holding a carbomer-type thickener and a base ({len(t['formulas'])} formulas; the first 8 "
            f"shown), measured as made and with the base's content moved to water. The hidden rule (truth) loses a "
            f"median {format_number(drop['truth'])} decades of viscosity without the base; the plain sum predicts a "
            f"drop of {format_number(drop['plain'])} decades, the transformer ({t.get('transformer', 'transformer')}, "
            f"the better of the two on the lab) {format_number(drop['transformer'])}. "
            f"The thickener's interaction term is a median {format_number(100 * ratio['with base'])} % of its own "
            f"term with the base and {format_number(100 * ratio['without base'])} % without.\n\n" + markdown_table(frame))


def render_matbench(tables: dict[str, dict]) -> str:
    """Per task: the transformer row against the best other mrl row, the best baseline and the best published."""
    out = []
    for task, res in tables.items():
        rows = res["rows"]
        unit = {"steels": "MPa", "expt_gap": "eV", "mp_e_form": "eV/atom"}.get(task, "")
        tr = next((r for r in rows if r["model"] == "mrl transformer"), None)
        if tr is None:
            continue
        score = {f"{r['model']} ({r['features']})": Score(r["mae_mean"], r["mae_std"], r["n_folds"], "folds")
                 for r in rows}
        mine = f"mrl transformer ({tr['features']})"
        others = {k: v for k, v in score.items() if k.startswith("mrl") and k != mine}
        baselines = {k: v for k, v in score.items() if not k.startswith("mrl") and not k.startswith("dummy")}
        frame = pd.DataFrame([{"model": k, f"MAE ({unit})": v.text()} for k, v in score.items()])
        lines = [f"### {task}\n", markdown_table(frame), ""]
        for pool in (others, baselines):
            if pool:
                best = best_of(pool)
                lines.append("- " + compare(score[mine], pool[best], "mrl transformer", best, what="MAE",
                                            unit=unit).sentence)
        for name, value in res.get("published_quoted", [])[:1]:
            lines.append("- " + compare(score[mine], Score(value, note="published, quoted"), "mrl transformer",
                                        name, what="MAE", unit=unit).sentence)
        walls = tr.get("fold_wall_s")
        if walls:
            lines.append(f"- Time per fold on CPU (nested selection included): "
                         f"{format_number(float(np.mean(walls)))} s (mean of {len(walls)}).")
        choices = [c["chosen"].get("interaction_mixing", "attention") for c in tr.get("choices", [])]
        if choices:
            lines.append(f"- Mixing chosen on the inner split, fold by fold: {', '.join(choices)}.")
        out.append("\n".join(lines))
    return "\n\n".join(out) if out else "No Matbench transformer rows yet (`benchmarks/matbench.py --rows transformer`)."


def render(result: dict, matbench: dict[str, dict], page: Path = PAGE, matbench_page: Path = MATBENCH_PAGE
           ) -> Path:
    """Fill the generated sections of ``page`` (and the transformer section of the Matbench page) from the result
    files."""
    fill_marked_sections(matbench_page, {"matbench-transformer": render_matbench(matbench)})
    return fill_marked_sections(page, {"interaction-speed": render_speed(result), "interaction-lab": render_lab(result),
                                       "interaction-thickener": render_thickener(result),
                                       "interaction-matbench": render_matbench(matbench)})


def load_matbench(tasks: tuple[str, ...] = MATBENCH_TASKS) -> dict[str, dict]:
    """Each task's result file with its transformer rows (``matbench_<task>_transformer.json``) added."""
    out = {}
    for task in tasks:
        main_file = ROOT / "benchmarks" / "results" / f"matbench_{task}.json"
        extra = ROOT / "benchmarks" / "results" / f"matbench_{task}_transformer.json"
        if main_file.exists() and extra.exists():
            res = json.loads(main_file.read_text())
            res["rows"] = [r for r in res["rows"] if r["model"] != "mrl transformer"] + json.loads(
                extra.read_text())["rows"]
            out[task] = res
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("speed", "lab"))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--speed-presets", nargs="+", default=["small", "seed-scale"])
    parser.add_argument("--json", type=Path, default=RESULT)
    parser.add_argument("--render", action="store_true", help="only fill book/interactions.md from the result files")
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(args.json.read_text())
        print(render(result, load_matbench()))
        return result
    torch.set_num_threads(1)
    result = json.loads(args.json.read_text()) if args.json.exists() else {}
    result["machine"] = {"torch": torch.__version__, "cores": os.cpu_count(), "threads": 1,
                         "load_1min": os.getloadavg()[0]}
    if args.only in (None, "speed"):
        result["speed"] = speed_table(args.speed_presets, args.dim)
        print(pd.DataFrame(result["speed"]).round(2).to_string(index=False))
    if args.only in (None, "lab"):
        previous = result.get("lab", {})
        done = previous.get("runs", []) if (previous.get("steps"), previous.get("dim")) == (args.steps, args.dim) \
            else []

        def save(rows: list[dict]) -> None:
            result["lab"] = {"steps": args.steps, "dim": args.dim, "runs": rows, "summary": summarise(rows),
                             "settings": SETTINGS}
            write_json(result, args.json)

        rows, lab = lab_table(args.steps, args.seeds, args.dim, done, save)
        save(rows)
        print(pd.DataFrame(result["lab"]["summary"]).round(4).to_string(index=False))
        result["thickener"] = thickener_example(lab)
        print(json.dumps({k: v for k, v in result["thickener"].items() if k != "formulas"}, indent=1))
    write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
