"""New materials with few formulas on the synthetic lab: no influence, tie to a known material, fit the vector.

Up to 15 materials are held out entirely (every formula containing one is dropped from training): random
materials used in 20-150 formulas, at most two of a kind, together in at most 35 % of the formulas (13 on the
seed-0 lab). The model is trained once on 80 % of the rest (the other 20 % give the error on unseen formulas of
known materials). For each held-out material, its formulas that contain no other held-out material are shuffled
(3 orders): the first k (k = 1, 3, 10) are "known", the formulas after the first 10 score every method (the same
formulas for every k and method). Methods:

* ``zero``: the material has no influence (pinned at the origin; the same as ``unknown="zero"``);
* ``tie_kind``: tied to the most used training material of its kind (what a formulator knows of a new grade);
* ``tie_truth``: tied to the training material of its kind with the nearest hidden truth (an oracle: the
  lab's truth table is never available for real materials);
* ``fit``: :func:`mrl.adapt.add_materials` on the k known formulas (one material at a time), from the origin;
* ``fit_tie``: the same, starting from (and pulled towards) the ``tie_kind`` material's vector;
* ``retrain``: the whole model retrained with the k known formulas of every held-out material added.

The defaults of ``add_materials`` (shrinkage 10, 300 steps, lr 0.03) were chosen on the lab with ``--data-seed 1``;
the reported numbers use seed 0.

    python benchmarks/new_materials.py                                    # ~5 min on one busy core
    python benchmarks/new_materials.py --json benchmarks/results/new_materials.json \
        --figure book/figures/new_materials.png
    python benchmarks/new_materials.py --render benchmarks/results/new_materials.json --book book/new_materials.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mrl.adapt import add_materials, tie_materials
from mrl.book import fill_from_results
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.io import write_json
from mrl.metrics import log10_mae
from mrl.splits import make_split
from mrl.synth import LATENTS, make_lab
from mrl.wording import Score, compare, format_number

KS = (1, 3, 10)
METHODS = ("zero", "tie_kind", "tie_truth", "fit", "fit_tie", "retrain")
#: Held-out materials need this many formulas free of other held-out materials (10 known at most + scoring).
MIN_SOLO = 20
#: At most this many held-out materials of one kind (else the many actives and fragrances dominate).
PER_KIND = 2
#: Largest share of the lab's formulas that the held-out materials may take out of training together.
MAX_DROPPED = 0.35
#: A tie partner must be used in at least this many training formulas (a well-trained vector).
MIN_PARTNER_FORMULAS = 5


def formula_sets(data: FormulaData) -> dict[str, set]:
    """Material id -> ids of the formulas that use it."""
    return data.formulas.groupby("material_id")["formula_id"].agg(set).to_dict()


def solo_formulas(uses: dict[str, set], chosen: list[str]) -> dict[str, set]:
    """For each chosen material, the formulas that use it and no other chosen material."""
    return {m: uses[m] - set().union(*(uses[o] for o in chosen if o != m)) for m in chosen}


def choose_held_out(data: FormulaData, kind: pd.Series, n: int, max_formulas: int, seed: int) -> dict[str, list]:
    """``n`` random materials used in ``MIN_SOLO..max_formulas`` formulas, at most ``PER_KIND`` of a kind, each
    with ``MIN_SOLO`` formulas free of the other chosen ones, together in at most ``MAX_DROPPED`` of the
    formulas -> each one's formulas free of the others (sorted ids)."""
    uses = formula_sets(data)
    counts = data.materials.set_index("material_id")["n_formulas"]
    eligible = np.asarray(counts[(counts >= MIN_SOLO) & (counts <= max_formulas)].index)
    chosen: list[str] = []
    for mid in np.random.default_rng(seed).permutation(eligible):
        trial = [*chosen, mid]
        if sum(kind[m] == kind[mid] for m in chosen) < PER_KIND and all(
                len(s) >= MIN_SOLO for s in solo_formulas(uses, trial).values()) and \
                len(set().union(*(uses[m] for m in trial))) <= MAX_DROPPED * data.n_formulas:
            chosen = trial
        if len(chosen) == n:
            break
    return {m: sorted(s) for m, s in solo_formulas(uses, chosen).items()}


def rows_of(data: FormulaData, formula_ids) -> np.ndarray:
    return data.properties["formula_id"].isin(set(formula_ids)).to_numpy()


def partners(truth: pd.DataFrame, held: list[str], train: FormulaData) -> pd.DataFrame:
    """For each held-out material: the most used training material of its kind (of its family where the kind has
    no other), and the one of those nearest in hidden truth per unit content (latents and idiosyncratic
    effects, the quantities the lab's rule sums by content)."""
    truth = truth.set_index("material_id")
    z = truth[[*LATENTS, *[c for c in truth.columns if c.startswith("idio_")]]]
    used = train.formulas.groupby("material_id").size()
    pool = used[used >= MIN_PARTNER_FORMULAS].index
    rows = []
    for m in held:
        same = [p for p in pool if truth.at[p, "kind"] == truth.at[m, "kind"]] or \
            [p for p in pool if truth.at[p, "family"] == truth.at[m, "family"]]
        dist = np.linalg.norm(z.loc[same].to_numpy() - z.loc[m].to_numpy(), axis=1)
        rows.append({"material_id": m, "kind": truth.at[m, "kind"], "tie_kind": max(same, key=lambda p: used[p]),
                     "tie_truth": same[int(np.argmin(dist))]})
    return pd.DataFrame(rows)


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {"mae_cp": float(np.abs(pred - y).mean()), "mae_log10": log10_mae(y, pred)}


def new_model(steps: int, dim: int, seed: int) -> MixtureRegressor:
    return MixtureRegressor(embedding_dim=dim, steps=steps, eval_every=steps, snapshot_every=steps,
                            checkpoint_every=steps, device="cpu", progress=False, seed=seed)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000, help="training steps of the base and retrained models")
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--n-held-out", type=int, default=15)
    parser.add_argument("--max-formulas", type=int, default=150,
                        help="held-out materials are used in at most this many formulas")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic lab")
    parser.add_argument("--fit-steps", type=int, default=300, help="add_materials: steps")
    parser.add_argument("--fit-lr", type=float, default=3e-2, help="add_materials: learning rate")
    parser.add_argument("--fit-shrinkage", type=float, default=10.0, help="add_materials: pull to the prior")
    parser.add_argument("--repeats", type=int, default=3, help="random orders of each material's formulas")
    parser.add_argument("--no-retrain", action="store_true", help="skip the retrained reference (the slow part)")
    parser.add_argument("--json", default=None, help="write the tables and per-material errors here")
    parser.add_argument("--figure", default=None, help="error vs k per method (book/figures/new_materials.png)")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only render the book page's sections from this result file")
    parser.add_argument("--book", type=Path, default=None, help="with --render: fill the marked regions of this "
                                                                "page (book/new_materials.md)")
    return parser.parse_args()


def base_model(args: argparse.Namespace) -> dict:
    """Hold materials out, train the base model without them and print it: returns the lab (``data``), the held-out
    materials' solo formulas (``held``), the training data, the base estimator, its error on unseen formulas of
    known materials (``context``, with ``known_eval``) and the tie partners (``ties``)."""
    data, truth = make_lab("small", seed=args.data_seed)
    kind = truth.set_index("material_id")["kind"]
    held = choose_held_out(data, kind, args.n_held_out, args.max_formulas, seed=0)
    held_ids = list(held)
    uses = formula_sets(data)
    touched = set().union(*(uses[m] for m in held_ids))
    rest = data.subset(~rows_of(data, touched))
    split = make_split(rest, "random", 0.2, seed=0)
    vocab = data.materials[~data.materials["material_id"].isin(held_ids)].reset_index(drop=True)
    train, known_eval = rest.subset(split == "train").with_materials(vocab), rest.subset(split == "eval")
    est = new_model(args.steps, args.dim, seed=0).fit(train)
    context = scores(known_eval.target_values(), est.predict(known_eval))
    ties = partners(truth, held_ids, train)
    print(f"{data.name}: {data.n_formulas} formulas; {len(held_ids)} held-out materials "
          f"({len(touched)} formulas dropped); base model: {train.n_formulas} training formulas, dim {args.dim}, "
          f"{args.steps} steps, {est.wall_s_:.0f} s; eval on {known_eval.n_formulas} formulas of known materials: "
          f"MAE {context['mae_cp']:,.0f} cP, {context['mae_log10']:.3f} log10")
    ties["n_formulas"] = ties["material_id"].map(data.materials.set_index("material_id")["n_formulas"])
    ties["n_solo"] = ties["material_id"].map({m: len(f) for m, f in held.items()})
    print(ties.to_string(index=False))
    return {"data": data, "held": held, "train": train, "known_eval": known_eval, "est": est, "context": context,
            "ties": ties}


def predict_new(base: dict, args: argparse.Namespace, start: float) -> pd.DataFrame:
    """For each repeat (a random order of each held-out material's formulas) and each k of :data:`KS`: every
    method's predictions of the formulas after the first ``max(KS)``, knowing the first k. One row per
    prediction: ``repeat, k, method, material_id, y, pred``."""
    data, held, est, ties = base["data"], base["held"], base["est"], base["ties"]
    held_ids = list(held)
    tie_kind = dict(zip(ties["material_id"], ties["tie_kind"]))
    fixed = {"zero": tie_materials(est, {m: None for m in held_ids}), "tie_kind": tie_materials(est, tie_kind),
             "tie_truth": tie_materials(est, dict(zip(ties["material_id"], ties["tie_truth"])))}
    reference = est.predict(base["known_eval"])
    per_material = []
    for r in range(args.repeats):
        rng = np.random.default_rng([r, 1])
        order = {m: list(rng.permutation(f)) for m, f in held.items()}
        scored = {m: rows_of(data, order[m][max(KS):]) for m in held_ids}
        for k in KS:
            known = {m: rows_of(data, order[m][:k]) for m in held_ids}
            preds = {name: {m: model.predict(data.subset(scored[m])) for m in held_ids}
                     for name, model in fixed.items()}
            preds["fit"], preds["fit_tie"] = {}, {}
            for m in held_ids:
                for name, like in (("fit", None), ("fit_tie", {m: tie_kind[m]})):
                    fitted = add_materials(est, data.subset(known[m]), like=like, steps=args.fit_steps,
                                           lr=args.fit_lr, shrinkage=args.fit_shrinkage)
                    assert np.array_equal(fitted.predict(base["known_eval"]), reference), "known materials changed"
                    preds[name][m] = fitted.predict(data.subset(scored[m]))
            if not args.no_retrain:
                extra = np.logical_or.reduce(list(known.values()))
                again = new_model(args.steps, args.dim, seed=0).fit(data.subset(
                    rows_of(data, set(base["train"].formula_ids) | set(data.properties["formula_id"][extra]))))
                preds["retrain"] = {m: again.predict(data.subset(scored[m])) for m in held_ids}
            for name, by_material in preds.items():
                for m, pred in by_material.items():
                    y = data.subset(scored[m]).target_values()
                    per_material += [{"repeat": r, "k": k, "method": name, "material_id": m, "y": float(v),
                                      "pred": float(p)} for v, p in zip(y, pred)]
            print(f"  repeat {r} k {k:2d} done ({time.perf_counter() - start:.0f} s)", flush=True)
    return pd.DataFrame(per_material)


def error_tables(long: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per method and k: errors (mean over repeats) and ``beats_zero`` (materials whose log10 MAE beats the zero
    vector's, pooled over repeats); and the errors per method, k and material."""
    by_repeat = pd.DataFrame([{"method": name, "k": k, "repeat": r,
                               **scores(g["y"].to_numpy(), g["pred"].to_numpy())}
                              for (name, k, r), g in long.groupby(["method", "k", "repeat"])])
    table = by_repeat.groupby(["method", "k"])[["mae_cp", "mae_log10"]].mean().reset_index()
    per_mat = pd.DataFrame([{"method": name, "k": k, "material_id": m,
                             **scores(g["y"].to_numpy(), g["pred"].to_numpy())}
                            for (name, k, m), g in long.groupby(["method", "k", "material_id"])])
    zero = per_mat[per_mat["method"] == "zero"].set_index(["k", "material_id"])["mae_log10"]
    per_mat["beats_zero"] = per_mat["mae_log10"].to_numpy() < zero.loc[
        list(zip(per_mat["k"], per_mat["material_id"]))].to_numpy()
    table = table.merge(per_mat.groupby(["method", "k"])["beats_zero"].sum().reset_index(), on=["method", "k"])
    return table, per_mat


# --------------------------------------------------------------------------------------------------------------
# the book page (book/new_materials.md), rendered from the result file
# --------------------------------------------------------------------------------------------------------------
#: Row labels of the page's table, by method.
LABELS = {"zero": "zero (no influence)", "tie_kind": "tie to most used of its kind",
          "tie_truth": "tie to nearest truth (oracle)", "fit": "fit from the origin", "fit_tie": "fit from the tie",
          "retrain": "retrain everything"}


def _note(results: dict) -> str:
    return f"mean over {results['settings']['repeats']} orders"


def _cell(results: dict, method: str, k: int, key: str = "mae_log10") -> Score:
    row = next(r for r in results["table"] if r["method"] == method and r["k"] == k)
    return Score(row[key], note=_note(results))


def _known(results: dict, key: str = "mae_log10") -> Score:
    return Score(results["known_materials_eval"][key], note="single run")


def _ks(results: dict) -> list[int]:
    return list(results["settings"]["ks"])


def _per_material(results: dict, material: str, method: str, k: int) -> float:
    return next(r["mae_log10"] for r in results["per_material"]
                if r["material_id"] == material and r["method"] == method and r["k"] == k)


def render_key_result(results: dict) -> str:
    """The page's key result: a tie against no influence, and the fit from the tie with the most known formulas
    against known materials' unseen formulas, worded by compare."""
    k_max = max(_ks(results))
    return ("For a material held out of training (log10 MAE on its formulas): "
            + compare(_cell(results, "tie_kind", k_max), _cell(results, "zero", k_max),
                      "a tie to a known material of its kind (no formula needed)", "no influence",
                      what="error").sentence + " "
            + compare(_cell(results, "fit_tie", k_max), _known(results),
                      f"fitting only its vector from the tie with {k_max} known formulas",
                      "known materials' unseen formulas", what="error").sentence)


def render_protocol(results: dict) -> str:
    """How many materials were held out, of which kinds, and how many formulas were scored."""
    ties = pd.DataFrame(results["ties"])
    kinds = ties["kind"].value_counts(sort=False)
    described = ", ".join(f"{n} {k}{'es' if k.endswith(('x', 's')) else 's'}" if n > 1 else f"one {k}"
                          for k, n in kinds.items())
    k_max = max(_ks(results))
    scored = int((ties["n_solo"] - k_max).sum())
    st = results["settings"]
    return (f"{len(ties)} materials are held out ({described}); each has {ties['n_solo'].min()}-"
            f"{ties['n_solo'].max()} formulas without another held-out material, and the formulas after the first "
            f"{k_max} of each are scored ({scored:,} in all). Base model: dimension {st['dim']}, {st['steps']:,} steps; "
            f"`add_materials`: shrinkage {st['fit_shrinkage']:g}, {st['fit_steps']} steps, lr {st['fit_lr']:g}; "
            f"{st['repeats']} orders; {format_number(results['wall_s'])} s wall time on one CPU thread.")


def render_table(results: dict) -> str:
    """Error per method and k, in log10 and cP, and materials better than ``zero``."""
    ks = _ks(results)
    n = len(results["ties"])
    head = ([f"MAE log10, k={k}" for k in ks] + [f"MAE cP, k={k}" for k in ks]
            + [f"materials better than `zero` (of {n}), k={' / '.join(map(str, ks))}"])
    lines = ["| method | " + " | ".join(head) + " |", "| --- |" + " --: |" * (2 * len(ks)) + " :-: |"]
    methods = [m for m in LABELS if any(r["method"] == m for r in results["table"])]
    for m in methods:
        rows = {r["k"]: r for r in results["table"] if r["method"] == m}
        beats = "–" if m == "zero" else " / ".join(str(int(rows[k]["beats_zero"])) for k in ks)
        lines.append(f"| {LABELS[m]} | " + " | ".join(f"{rows[k]['mae_log10']:.3f}" for k in ks) + " | "
                     + " | ".join(format_number(rows[k]["mae_cp"]) for k in ks) + f" | {beats} |")
    known = results["known_materials_eval"]
    lines.append(f"| *known materials, unseen formulas* | *{known['mae_log10']:.3f}* |" + " |" * (len(ks) - 1)
                 + f" *{format_number(known['mae_cp'])}* |" + " |" * (len(ks) - 1) + " |")
    return "\n".join(lines)


def render_findings(results: dict) -> str:
    """What the table says, worded by compare: every method at every k against no influence and against known
    materials; the fit from the tie against the fit from the origin; per kind of material."""
    ks = _ks(results)
    out = []
    worse = [(m, k) for r in results["table"] for m, k in [(r["method"], r["k"])]
             if compare(_cell(results, m, k), _known(results), "a", "b").verdict != "better"]
    out.append(f"* **A new material costs accuracy.** {len(worse)} of {len(results['table'])} method and k cells "
               f"are not below the error on known materials' unseen formulas, {_known(results).text()}.")
    for m in ("tie_kind", "tie_truth"):
        out.append(f"* **{LABELS[m]}:** " + compare(_cell(results, m, ks[0]), _cell(results, "zero", ks[0]),
                                                      LABELS[m], "no influence", what="log10 MAE").sentence)
    for m in ("fit", "fit_tie", "retrain"):
        if any(r["method"] == m for r in results["table"]):
            for k in ks:
                out.append(f"* **{LABELS[m]}, k = {k}:** " + compare(_cell(results, m, k), _cell(results, "zero", k),
                                                                     LABELS[m], "no influence",
                                                                     what="log10 MAE").sentence)
    for k in ks:
        out.append(f"* **Start of the fit, k = {k}:** " + compare(_cell(results, "fit_tie", k),
                                                                  _cell(results, "fit", k), LABELS["fit_tie"],
                                                                  LABELS["fit"], what="log10 MAE").sentence)
    if any(r["method"] == "retrain" for r in results["table"]):
        k = max(ks)
        out.append(f"* **In cP, k = {k}:** " + compare(_cell(results, "retrain", k, "mae_cp"),
                                                       _cell(results, "zero", k, "mae_cp"), LABELS["retrain"],
                                                       "no influence", what="MAE", unit="cP").sentence)
    k = max(ks)
    for kind in ("gum", "wax", "fragrance"):
        for t in (t for t in results["ties"] if t["kind"] == kind):
            mid = t["material_id"]
            out.append(f"* **{kind} {mid}** (log10 MAE): no influence {_per_material(results, mid, 'zero', k):.2f}, "
                       f"a tie {_per_material(results, mid, 'tie_kind', k):.2f}, the fit from the tie with {k} "
                       f"formulas {_per_material(results, mid, 'fit_tie', k):.2f}, the fit from the origin "
                       f"{_per_material(results, mid, 'fit', k):.2f}.")
    return "\n".join(out)


#: Regions of book/new_materials.md filled from the result file: marker name -> render function.
SECTIONS = {"key-result": render_key_result, "new-protocol": render_protocol, "new-table": render_table,
            "new-findings": render_findings}


def write_book(results: dict, path: str | Path) -> Path:
    """Fill each rendered region of :data:`SECTIONS` between its ``<!-- NAME -->`` markers on the page."""
    return fill_from_results(results, SECTIONS, path)


def main() -> None:
    args = parse_args()
    if args.render:
        out = fill_from_results(json.loads(args.render.read_text()), SECTIONS, args.book)
        print(f"wrote {out}" if args.book else out)
        return
    torch.set_num_threads(1)
    start = time.perf_counter()
    base = base_model(args)
    long = predict_new(base, args, start)
    table, per_mat = error_tables(long)
    context = base["context"]
    methods = [m for m in METHODS if m in set(table["method"])]
    n_scored = long[(long["method"] == "zero") & (long["k"] == KS[0]) & (long["repeat"] == 0)].shape[0]
    print(f"\n## error on the held-out materials' other formulas ({n_scored} formulas, mean of {args.repeats} "
          f"orders; beats_zero: materials of {len(base['held'])} with lower log10 MAE than zero, pooled over orders)")
    for metric, fmt in (("mae_log10", "{:.3f}"), ("mae_cp", "{:,.0f}"), ("beats_zero", "{:.0f}")):
        wide = table.pivot(index="method", columns="k", values=metric).reindex(methods)
        print(f"\n{metric}\n" + wide.to_string(float_format=lambda v: fmt.format(v)))
    wall = time.perf_counter() - start
    print(f"\nknown materials, unseen formulas: MAE {context['mae_cp']:,.0f} cP, {context['mae_log10']:.3f} log10")
    print(f"total wall time {wall:.0f} s")
    if args.json:
        write_json({"table": table.to_dict(orient="records"), "per_material": per_mat.to_dict(orient="records"),
                    "ties": base["ties"].to_dict(orient="records"), "known_materials_eval": context,
                    "settings": {**vars(args), "ks": list(KS)}, "wall_s": round(wall, 1)}, args.json)
        print(f"wrote {args.json}")
    if args.figure:
        print(f"wrote {figure(table, methods, context, Path(args.figure))}")


def figure(table: pd.DataFrame, methods: list[str], context: dict, path: Path) -> Path:
    """Error vs k, one line per method; the dashed line is the error on unseen formulas of known materials."""
    from matplotlib.figure import Figure

    from mrl.plots import save_figure

    fig = Figure(figsize=(9, 3.8), layout="constrained")
    for ax, (metric, label) in zip(fig.subplots(1, 2), (("mae_log10", "MAE (log10 cP)"), ("mae_cp", "MAE (cP)"))):
        for name in methods:
            rows = table[table["method"] == name].sort_values("k")
            ax.plot(rows["k"], rows[metric], marker="o", label=name)
        ax.axhline(context[metric], color="grey", ls="--", lw=1, label="known materials")
        ax.set_xscale("log")
        ax.set_xticks(KS, [str(k) for k in KS])
        ax.set_xlabel("known formulas of the new material (k)")
        ax.set_ylabel(label)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=90)


if __name__ == "__main__":
    main()
