"""Closed-loop campaigns on the synthetic lab, judged on its hidden truth.

A simulated lab (``mrl.synth`` small lab) starts from the measured formulas of one product family (cream, gel,
lotion, serum or shampoo, in turn). A base formula of that family (measured at >= 10 cP) is to be moved to a target
(2x or 0.5x its measured viscosity, in turn) with the family's ``active`` materials fixed, at most 3 materials
changed and additions only from the family's shelf (its most used material of every other family); by
construction no measured formula that satisfies these constraints meets the target within 15 % (checked; a base
where one does is skipped). Each round 8 formulas are made and "measured" with the hidden rule plus the lab's noise
(4 %, :func:`mrl.synth.hidden_viscosity`); the campaign data never hold the truth except through these
measurements. A campaign reaches the target when a made formula's TRUE (noise-free) viscosity lies within 15 % of
it; experiments needed = 8 x that round (censored at ``8 x rounds`` when not reached). Three ways to choose the 8:

* ``random search``: random formulas within the constraints (:func:`mrl.design.random_formulas`);
* ``perturb nearest``: the formulator's habit: perturbations (log-normal factors, SD 0.3) of the measured formula
  that satisfies the constraints and lies closest to the target, base and campaign formulas included;
* ``mrl suggest``: :func:`mrl.suggest.suggest` with an ensemble retrained in memory every round on the family's
  formulas plus the campaign's measurements (:func:`mrl.suggest.fit_predictor`, no warm start).

    python benchmarks/campaign.py [--campaigns 20] [--rounds 10] [--json benchmarks/results/campaign.json]
    python benchmarks/campaign.py --render benchmarks/results/campaign.json --book book/design.md
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mrl.book import fill_from_results  # noqa: E402
from mrl.data import FormulaData, content_matrix, load_formulas  # noqa: E402
from mrl.design import measured_within_constraints, random_formulas  # noqa: E402
from mrl.params import RunParams  # noqa: E402
from mrl.plots import save_figure  # noqa: E402
from mrl.suggest import fit_predictor, suggest  # noqa: E402
from mrl.synth import PRESETS, LabPreset, hidden_viscosity, lab_tables  # noqa: E402
from mrl.wording import Score, against_target, compare  # noqa: E402

log = logging.getLogger(__name__)
HIT = 0.15
BATCH = 8
NOISE_SEED = 7919
FAMILIES = ("cream", "gel", "lotion", "serum", "shampoo")
METHODS = ("random search", "perturb nearest", "mrl suggest")
TARGETS = (2.0, 0.5)


def model_params(steps: int, ensemble: int, seed: int) -> RunParams:
    """The small, cheap model retrained every round."""
    return RunParams(embedding_dim=8, steps=steps, ensemble=ensemble, dropout=0.1, device="cpu", seed=seed,
                     eval_every=10 ** 9, snapshot_every=10 ** 9, checkpoint_every=10 ** 9, calibration_fraction=0.15,
                     baselines=False)


def _grown(start: FormulaData, made: list[pd.DataFrame], values: list[pd.Series], materials: pd.DataFrame
           ) -> FormulaData:
    """The start data plus the campaign's measured formulas (contents in %)."""
    if not made:
        return start
    target = start.targets[0]
    forms = pd.concat([start.formulas.assign(content=start.formulas["content"] * 100.0), *made], ignore_index=True)
    props = pd.concat([start.properties[["formula_id", target]],
                       *(pd.DataFrame({"formula_id": v.index, target: v.to_numpy()}) for v in values)],
                      ignore_index=True)
    return load_formulas(forms, props, materials, targets=target, content_unit="percent", name=start.name)


def _setup(tables: dict, k: int, seed: int, steps: int, ensemble: int) -> dict | None:
    """Campaign ``k``: family, start data, base formula, target, constraints and the round-0 model."""
    family = FAMILIES[k % len(FAMILIES)]
    rng = np.random.default_rng([seed, k])
    ids = set(tables["templates"].loc[tables["templates"]["template"] == family, "formula_id"])
    materials = tables["materials"][["material_id", "name", "family"]]
    props = tables["properties"][tables["properties"]["formula_id"].isin(ids)].reset_index(drop=True)
    start = load_formulas(tables["formulas"][tables["formulas"]["formula_id"].isin(ids)], props, materials,
                          targets="viscosity", content_unit="percent", name=f"lab_{family}")
    predictor = fit_predictor(start, model_params(steps, ensemble, seed + k))
    fam = dict(zip(materials["material_id"], materials["family"]))
    used = start.formulas.groupby("material_id").size()
    shelf = [str(used.reindex(g["material_id"]).idxmax()) for f, g in materials.groupby("family")
             if f != "active" and used.reindex(g["material_id"]).notna().any()]
    mult = TARGETS[(k // len(FAMILIES)) % len(TARGETS)]
    candidates = props.loc[props["viscosity"] >= 10.0, "formula_id"].to_numpy()
    for base in rng.permutation(candidates)[:20]:
        base_forms = tables["formulas"][tables["formulas"]["formula_id"] == base]
        target = float(props.set_index("formula_id").loc[base, "viscosity"]) * mult
        constraints = dict(fix=[m for m in base_forms["material_id"] if fam[m] == "active"], max_changes=3,
                           add_from=[m for m in shelf if m not in set(base_forms["material_id"])])
        within = measured_within_constraints(predictor, base_forms, target, start, **constraints)
        if not within["hit"].any():
            return dict(k=k, family=family, base=str(base), target=target, mult=mult, start=start,
                        base_forms=base_forms, constraints=constraints, predictor=predictor, materials=materials,
                        n_within=int(len(within)))
    return None


def _map(predictor, forms: pd.DataFrame) -> np.ndarray:
    """The formulas' mixture vectors (member 0 of the round-0 model) on the uncentred PCA map of its material
    vectors (linear, so mixtures and materials share the axes), shape ``(n_formulas, 2)``, in order of first
    appearance."""
    first = predictor.members[0]
    vocab = first.materials_["material_id"].astype(str).tolist()
    vectors = first.embeddings().filter(regex=r"^e\d+$").to_numpy(np.float64)
    axes = np.linalg.svd(vectors, full_matrices=False)[2][:2].T
    ids = list(pd.unique(forms["formula_id"]))
    matrix = content_matrix(forms.assign(content=forms["content"] / forms.groupby("formula_id")["content"]
                                         .transform("sum")), ids, vocab)
    return first.mixture_vectors(matrix) @ axes


def run_campaign(setup: dict, method: str, truth: pd.DataFrame, rounds: int, steps: int, ensemble: int, seed: int,
                 design_steps: int = 60, n_starts: int = 2, stop: bool = True) -> dict:
    """One campaign of one method; per round the made formulas' true errors and the best so far (``stop``: end
    at the first round that reaches the target)."""
    k, target, base_forms = setup["k"], setup["target"], setup["base_forms"]
    cons, pred0 = setup["constraints"], setup["predictor"]
    made: list[pd.DataFrame] = []
    values: list[pd.Series] = []
    history, reached, measured = [], None, setup["start"]
    for r in range(1, rounds + 1):
        prefix = f"C{k:02d}{method[0].upper()}{r:02d}_"
        if method == "random search":
            forms = random_formulas(pred0, base_forms, BATCH, seed=seed * 1000 + k * 20 + r, prefix=prefix, **cons)
        elif method == "perturb nearest":
            within = measured_within_constraints(pred0, base_forms, target, measured, **cons)
            nearest = within["formula_id"].iloc[0]
            around = measured.formulas[measured.formulas["formula_id"] == nearest]
            forms = random_formulas(pred0, base_forms, BATCH, around=around, seed=seed * 1000 + k * 20 + r,
                                    prefix=prefix, **cons)
        else:
            predictor = pred0 if r == 1 else fit_predictor(measured, model_params(steps, ensemble, seed + k + 97 * r))
            result = suggest(predictor, measured, target, formula=setup["base"], batch=BATCH, seed=r,
                             steps=design_steps, n_starts=n_starts, **cons)
            forms = result.formulas.assign(formula_id=lambda f: prefix + f["formula_id"])
        true = hidden_viscosity(forms, truth)
        noisy = hidden_viscosity(forms, truth, noise=PRESETS["small"].noise, seed=NOISE_SEED + 1000 * k + 10 * r
                                 + METHODS.index(method))
        errors = (true / target - 1.0).to_numpy()
        best = min([abs(h["best_error"]) for h in history] + [float(np.min(np.abs(errors)))])
        xy = _map(pred0, forms)
        history.append(dict(round=r, errors=[round(float(e), 4) for e in errors], best_error=best,
                            xy=np.round(xy, 4).tolist()))
        made.append(forms)
        values.append(noisy)
        if reached is None and np.any(np.abs(errors) <= HIT):
            reached = r
            if stop:
                break
        measured = _grown(setup["start"], made, values, setup["materials"])
    return dict(k=k, family=setup["family"], base=setup["base"], target=target, mult=setup["mult"], method=method,
                base_xy=np.round(_map(pred0, base_forms)[0], 4).tolist(), reached=reached is not None, experiments=BATCH * reached if reached else None,
                rounds_run=len(history), history=history)


def summarise(campaigns: list[dict], rounds: int) -> list[dict]:
    """Per method: share reaching the target; experiments needed, median and quartiles (not reached = censored
    above ``8 x rounds``: a quartile that falls there is reported as None)."""
    out = []
    cap = BATCH * rounds
    for method in METHODS:
        rows = [c for c in campaigns if c["method"] == method]
        n = np.array([c["experiments"] if c["reached"] else np.inf for c in rows], float)
        q = {name: float(np.quantile(n, p, method="lower")) for name, p in (("q25", 0.25), ("median", 0.5),
                                                                             ("q75", 0.75))}
        out.append(dict(method=method, campaigns=len(rows), reached=int(sum(c["reached"] for c in rows)),
                        share=float(np.mean([c["reached"] for c in rows])) if rows else float("nan"),
                        **{key: (v if np.isfinite(v) else None) for key, v in q.items()}, cap=cap,
                        mean_reached=float(np.mean(n[np.isfinite(n)])) if np.isfinite(n).any() else None))
    return out


def run(n_campaigns: int, rounds: int, steps: int, ensemble: int, seed: int, preset: str | LabPreset = "small",
        design_steps: int = 60, n_starts: int = 2, methods=METHODS, stop: bool = True,
        json_path: str | Path | None = None) -> dict:
    """``n_campaigns`` campaigns of every method (see the module docstring); with ``json_path`` the results so far
    are written after every campaign (a run stopped early keeps what it finished)."""
    t0 = time.perf_counter()
    tables = lab_tables(preset, seed=0)
    truth = tables["truth"]
    campaigns, skipped, results = [], 0, {}
    for k in range(n_campaigns):
        setup = _setup(tables, k, seed, steps, ensemble)
        if setup is None:
            skipped += 1
            log.warning("campaign %d skipped: no base formula without a constrained measured hit", k)
        for method in methods if setup is not None else ():
            t1 = time.perf_counter()
            c = run_campaign(setup, method, truth, rounds, steps, ensemble, seed, design_steps, n_starts, stop)
            c["wall_s"] = round(time.perf_counter() - t1, 1)
            campaigns.append(c)
            print(f"campaign {k} ({setup['family']}, {setup['base']} x{setup['mult']:g}): {method}: "
                  f"{'reached after ' + str(c['experiments']) if c['reached'] else 'not reached'} "
                  f"({c['wall_s']:.0f} s)", flush=True)
        results = dict(summary=summarise(campaigns, rounds), campaigns=campaigns,
                       setup=dict(n_campaigns=k + 1, skipped=skipped, rounds=rounds, batch=BATCH, steps=steps,
                                  ensemble=ensemble, embedding_dim=8, dropout=0.1, seed=seed,
                                  design_steps=design_steps, n_starts=n_starts, families=list(FAMILIES),
                                  targets=list(TARGETS), hit=HIT, noise=PRESETS["small"].noise,
                                  preset=preset if isinstance(preset, str) else preset.name),
                       wall_s=round(time.perf_counter() - t0, 1))
        if json_path is not None:
            Path(json_path).write_text(json.dumps(results, default=float) + "\n")
    return results


# ------------------------------------------------------------------------------------------------ rendering
def _experiments(value: float | None, cap: int) -> str:
    return f"> {cap}" if value is None else f"{value:.0f}"


def render(results: dict) -> str:
    """The campaign table (markdown) and its comparisons, worded by :func:`mrl.wording.compare`."""
    s = results["setup"]
    rows = {r["method"]: r for r in results["summary"]}
    n = rows[METHODS[0]]["campaigns"]
    lines = [f"{n} campaigns ({s['skipped']} skipped: no base without a constrained measured hit), up to "
             f"{s['rounds']} rounds of {s['batch']} formulas; model retrained every round (dim {s['embedding_dim']}, "
             f"{s['steps']} steps, ensemble of {s['ensemble']}, dropout {s['dropout']:g}, no warm start); a campaign "
             f"reaches the target when a made formula's true viscosity lies within {100 * s['hit']:.0f} % of it. "
             f"Single run per campaign (seed {s['seed']}); wall time {results['wall_s']:.0f} s on a shared 2-core "
             f"machine.", "",
             "| method | campaigns | reached the target | experiments needed: median | experiments needed: 25 % to 75 % of campaigns |",
             "| --- | --: | --: | --: | --: |"]
    for m in METHODS:
        r = rows[m]
        lines.append(f"| {m} | {r['campaigns']} | {r['reached']} ({100 * r['share']:.0f} %) | "
                     f"{_experiments(r['median'], r['cap'])} | {_experiments(r['q25'], r['cap'])} to "
                     f"{_experiments(r['q75'], r['cap'])} |")
    lines += ["", "Not reached counts as more than the cap (8 x rounds) in the median and quartiles.", ""]
    lines += [_sentence(rows, "mrl suggest", other) for other in ("random search", "perturb nearest")]
    med = {m: (rows[m]["median"] if rows[m]["median"] is not None else float("inf")) for m in METHODS}
    lines += ["", _goal(med["mrl suggest"], 0.5 * med["random search"], "half the median of random search", n),
              _goal(med["mrl suggest"], med["perturb nearest"], "the median of the perturb-nearest habit", n,
                    strict=True)]
    return "\n".join(lines)


def _goal(value: float, target: float, target_name: str, n: int, strict: bool = False) -> str:
    """The campaign goal "mrl suggest needs at most (``strict``: fewer than) ``target`` experiments", worded by
    :func:`mrl.wording.against_target` (a median over campaigns: no spread)."""
    if not (np.isfinite(value) and np.isfinite(target)):  # a median beyond the cap (not reached in most campaigns)
        met = np.isfinite(value)
        return (f"Goal: the median number of experiments of mrl suggest is {_experiments(value if met else None, 0)}"
                f" against {target_name} beyond the cap: the goal is {'met' if met else 'missed'}.")
    if value == target and not strict:  # "at most" half: equal meets it
        return (f"Goal: the median number of experiments of mrl suggest is {value:.0f}, equal to {target_name} "
                f"({target:g}): the goal is met.")
    median = Score(value, note=f"over {n} campaigns")
    sentence = against_target(median, target, "median number of experiments of mrl suggest", target_name,
                              digits=2, goal=True, spread=False).sentence
    return "Goal: " + sentence[0].lower() + sentence[1:]


def _sentence(rows: dict, a: str, b: str) -> str:
    def over(value: float, method: str) -> Score:  # a share or a median over the method's campaigns
        return Score(value, note=f"over {rows[method]['campaigns']} campaigns")

    share = compare(over(100 * rows[a]["share"], a), over(100 * rows[b]["share"], b), a, b,
                    what="share of campaigns reaching the target", unit="%", lower_is_better=False, digits=2,
                    difference_unit="percentage points")
    cap = rows[a]["cap"]
    med_a = rows[a]["median"] if rows[a]["median"] is not None else float("inf")
    med_b = rows[b]["median"] if rows[b]["median"] is not None else float("inf")
    if np.isfinite(med_a) and np.isfinite(med_b):
        need = compare(over(med_a, a), over(med_b, b), a, b, what="median number of experiments",
                       digits=2).sentence
    else:
        need = (f"The median number of experiments of {a} is {_experiments(rows[a]['median'], cap)}, of {b} "
                f"{_experiments(rows[b]['median'], cap)} (not reached in half the campaigns or more).")
    return f"{share.sentence} {need}"


def figure(results: dict, k: int | None = None):
    """One campaign as a picture: the made formulas on the material map (mixture vectors on the round-0 model's
    map, coloured by round), each round's true viscosities with the target band, and the best true error so far
    against the round, for every method."""
    campaigns = results["campaigns"]
    if k is None:  # the first campaign where mrl suggest needed more than one round, else the first
        longer = [c["k"] for c in campaigns if c["method"] == "mrl suggest" and c["rounds_run"] > 1]
        k = longer[0] if longer else campaigns[0]["k"]
    chosen = {c["method"]: c for c in campaigns if c["k"] == k}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    colors = dict(zip(METHODS, ("tab:gray", "tab:orange", "tab:blue")))
    markers = dict(zip(METHODS, ("x", "^", "o")))
    offsets = dict(zip(METHODS, (-0.2, 0.0, 0.2)))
    any_c = next(iter(chosen.values()))
    target = any_c["target"]
    ax = axes[0]
    rounds = max(c["rounds_run"] for c in chosen.values())
    cmap = plt.get_cmap("viridis", max(rounds, 2))
    for m, c in chosen.items():
        for h in c["history"]:
            xy = np.asarray(h["xy"])
            ax.scatter(xy[:, 0], xy[:, 1], s=18, marker=markers[m], color=cmap(h["round"] - 1),
                       label=m if h["round"] == 1 else None)
    ax.scatter(*any_c["base_xy"], marker="*", s=250, color="black", label="base formula", zorder=5)
    ax.set_xlabel("map axis 1")
    ax.set_ylabel("map axis 2")
    ax.set_title("made formulas on the material map (colour: round)", fontsize="medium")
    ax.legend(fontsize="x-small", loc="best")
    ax = axes[1]
    ax.axhspan(target * (1 - HIT), target * (1 + HIT), color="tab:green", alpha=0.15, label="target +-15 %")
    ax.axhline(target, color="tab:green", lw=1)
    for m, c in chosen.items():
        for h in c["history"]:
            true = target * (1 + np.asarray(h["errors"]))
            ax.scatter(np.full(len(true), h["round"] + offsets[m]), true, s=14, color=colors[m],
                       marker=markers[m], label=m if h["round"] == 1 else None, alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel("true viscosity (cP)")
    ax.set_title(f"campaign {k}: {any_c['family']} {any_c['base']}, target {target:,.0f} cP ({any_c['mult']:g}x)",
                 fontsize="medium")
    ax.legend(fontsize="x-small", loc="best")
    ax = axes[2]
    for m, c in chosen.items():
        ax.plot([h["round"] for h in c["history"]], [100 * h["best_error"] for h in c["history"]], "-",
                color=colors[m], marker=markers[m], label=m)
    ax.axhline(100 * HIT, color="tab:green", lw=1, ls="--", label="15 %")
    ax.set_xlabel("round")
    ax.set_ylabel("best |true / target - 1| so far (%)")
    ax.set_yscale("log")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


SECTIONS = {"campaign-table": render}


def write_book(results: dict, path: str | Path, figure_path: str | Path | None = None) -> Path:
    """Fill the page's ``campaign-table`` section; save the campaign picture to ``figure_path``."""
    if figure_path is not None:
        save_figure(figure(results), figure_path, dpi=80)
    return fill_from_results(results, SECTIONS, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000, help="training steps of each round's model")
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--design-steps", type=int, default=60)
    parser.add_argument("--n-starts", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--render", default=None, metavar="JSON", help="do not run: render a --json result")
    parser.add_argument("--book", default=None, help="book page to fill (book/design.md)")
    parser.add_argument("--figure", default=None, help="campaign picture (book/figures/campaign.png)")
    args = parser.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
    else:
        logging.basicConfig(level=logging.WARNING)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        results = run(args.campaigns, args.rounds, args.steps, args.ensemble, args.seed,
                      design_steps=args.design_steps, n_starts=args.n_starts, json_path=args.json)
    print(render(results))
    if args.book:
        write_book(results, args.book, args.figure)


if __name__ == "__main__":
    sys.exit(main())
