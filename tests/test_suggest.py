"""What to make next: data-aware design (trust region, ranking by probability of a hit, "already made", measured
starts), ``suggest`` (batch diversity), ``add_results`` (a new run, the old one intact) and a 2-round campaign on a
tiny lab."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import first_formula, load_benchmark, tiny_lab_run

from mrl.cli import main
from mrl.data import content_matrix, load_formulas
from mrl.design import design
from mrl.predict import Predictor
from mrl.runs import load_run
from mrl.suggest import add_results, suggest
from mrl.synth import LATENTS, LabPreset
from mrl.uncertainty import Calibration, hit_probability

TINY = dict(steps=300, eval_every=100, snapshot_every=100, checkpoint_every=300, embedding_dim=4, hidden=[16],
            device="cpu", content_scale="none", ensemble=2, baselines=False)
FAST = dict(steps=20, n_starts=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return tiny_lab_run(tmp_path_factory.mktemp("suggest"), **TINY)


@pytest.fixture(scope="module")
def predictor(tiny_run) -> Predictor:
    return Predictor.from_folder(tiny_run)


@pytest.fixture(scope="module")
def data(tiny_run):
    return load_run(tiny_run).data()[0]


@pytest.fixture(scope="module")
def formula(data) -> pd.DataFrame:
    return first_formula(data)


def _target(predictor, formula, factor=1.5) -> float:
    return float(predictor.predict(formula)["prediction"].iloc[0]) * factor


def test_hit_probability_prefers_a_centred_narrow_prediction():
    cal = Calibration({0.8: 1.0, 0.95: 2.0}, spread_floor=0.0, n=100, n_members=5, transform="log10")
    target = 100.0
    centred = hit_probability(np.array([2.0, 2.0, 2.3]), np.array([0.05, 0.5, 0.05]), cal, target * 0.85,
                              target * 1.15)
    assert centred[0] > centred[1] > 0 and centred[0] > centred[2]
    assert 0 <= centred.min() and centred.max() <= 1
    # a wide window holds (almost) everything; the 80 % interval holds 80 %
    wide = hit_probability(np.array([2.0]), np.array([0.1]), cal, 10 ** (2 - 0.1 * 1.0), 10 ** (2 + 0.1 * 1.0))
    assert wide[0] == pytest.approx(0.8, abs=1e-6)


def test_design_ranks_by_probability_of_hit_and_says_where_each_came_from(predictor, formula, data):
    result = design(predictor, formula, _target(predictor, formula), measured_data=data, n_proposals=4, **FAST)
    p = result.proposals["p_hit"].to_numpy()
    assert len(p) >= 2 and np.isfinite(p).all()
    assert (np.diff(p) <= 1e-12).all()  # best chance of a hit first
    starts = set(result.proposals["start"])
    assert starts <= {"original", "random"} | {s for s in starts if s.startswith("measured F")}
    # measured starts were searched: at least one row of the pool comes from a measured formula
    pool = design(predictor, formula, _target(predictor, formula), measured_data=data, n_proposals=40, n_pool=40,
                  min_distance=0.05, **FAST)
    assert pool.proposals["start"].str.startswith("measured F").any()


def test_the_trust_region_keeps_proposals_near_the_training_formulas(predictor, formula, data):
    target = _target(predictor, formula, 5.0)  # far: a search without a leash leaves the domain
    result = design(predictor, formula, target, measured_data=data, domain_weight=0.0, trust_region=True,
                    n_proposals=5, **FAST)
    domain = predictor.domain
    scored = predictor.predict(result.formulas).set_index("formula_id")
    original = scored.loc[result.original_id]
    limit_l1 = max(domain.distance_threshold, original["nearest_distance"]) + 1e-3
    limit_mix = max(domain.mixture_threshold, original["mixture_distance"]) + 1e-3
    rows = scored.loc[result.proposals["proposal"]]
    assert (rows["nearest_distance"] <= limit_l1).all()
    assert (rows["mixture_distance"] <= limit_mix).all()


def test_a_measured_formula_meeting_target_and_constraints_is_already_made(predictor, formula, data):
    contents = formula.set_index("material_id")["content"]
    order = contents.sort_values(ascending=False).index
    fixed, big, small = order[-1], order[0], order[1]
    target = 1234.5
    made = contents.copy()
    made[big] -= 0.5
    made[small] += 0.5  # two changes, the fixed material untouched
    broken = made.copy()
    broken[fixed] += 0.1
    broken[big] -= 0.1  # meets the target too, but moves the fixed material
    far = contents.copy()
    far[big] -= 0.5
    far[small] += 0.5  # within the constraints, measured far from the target
    rows = [("NEW1", made, target * 1.05), ("NEW2", broken, target), ("NEW3", far, target * 3)]
    forms = pd.concat([pd.DataFrame({"formula_id": fid, "material_id": c.index, "content": c.to_numpy()})
                       for fid, c, _ in rows])
    props = pd.DataFrame({"formula_id": [r[0] for r in rows], "viscosity": [r[2] for r in rows]})
    library = load_formulas(forms, props, data.materials[["material_id", "name", "family"]], content_unit="percent")
    result = design(predictor, formula, target, fix=[fixed], measured_data=library, n_proposals=2, **FAST)
    assert list(result.already_made["formula_id"]) == ["NEW1"]
    assert set(result.constrained["formula_id"]) == {"NEW1", "NEW3"}
    assert result.note().startswith("already made: NEW1")
    assert design(predictor, formula, target, fix=[fixed], n_proposals=2, **FAST).already_made.empty


def test_a_batch_is_diverse_and_says_why(predictor, formula, data):
    target = _target(predictor, formula, 1.3)
    kw = dict(formula=formula, batch=5, n_pool=30, **FAST)
    plain = suggest(predictor, data, target, diversity=0.0, **kw)
    spread = suggest(predictor, data, target, diversity=2.0, **kw)
    first = predictor.members[0]

    def min_gap(res):
        ids = list(res.batch["suggestion"])
        m = content_matrix(res.formulas.assign(content=res.formulas["content"] / 100), ids,
                           first.materials_["material_id"].astype(str).tolist())
        mix = first.mixture_vectors(m)
        d = np.linalg.norm(mix[:, None] - mix[None], axis=-1)
        return d[np.triu_indices(len(ids), 1)].min()

    assert len(plain.batch) == len(spread.batch) == 5
    assert (np.diff(plain.batch["p_hit"].to_numpy()) <= 1e-12).all()  # no penalty: by P(hit)
    assert min_gap(spread) > min_gap(plain)
    assert spread.batch["p_hit"].sum() <= plain.batch["p_hit"].sum() + 1e-9  # diversity costs some probability
    assert spread.batch["why"].str.contains("P\\(hit\\)").all()
    assert spread.batch["why"].iloc[1:].str.contains("diversity factor").all()
    assert set(spread.formulas["formula_id"]) == set(spread.batch["suggestion"])
    for _, g in spread.formulas.groupby("formula_id"):
        assert abs(g["content"].sum() - 100.0) < 1e-6


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_suggest_and_add_results_make_a_new_run_and_keep_the_old_one(tiny_run, formula, predictor, data, tmp_path,
                                                                     capsys):
    before = _digest(tiny_run)
    out = tmp_path / "next"
    main(["suggest", str(tiny_run), "--target", f"{_target(predictor, formula, 1.3):.4g}", "--batch", "3",
          "--formula", str(formula["formula_id"].iloc[0]), "--out", str(out)])
    batch = pd.read_csv(out / "batch.csv")
    assert len(batch) == 3 and {"p_hit", "lower_80", "why", "out_of_domain"} <= set(batch.columns)
    assert "P(at least one hit)" in capsys.readouterr().out
    forms = pd.read_csv(out / "formulas.csv")
    measured = pd.DataFrame({"formula_id": batch["suggestion"], "viscosity": [120.0, 340.0, 560.0]})
    measured.to_csv(tmp_path / "measured.csv", index=False)
    new = add_results(tiny_run, forms, tmp_path / "measured.csv", tmp_path / "runs" / "round2",
                      overrides={"steps": 30, "ensemble": 1})
    assert _digest(tiny_run) == before  # the old run is untouched
    grown = load_run(new)
    grown_data, _ = grown.data()
    assert grown_data.n_formulas == data.n_formulas + 3
    old_split = load_run(tiny_run).split.drop_duplicates("formula_id").set_index("formula_id")["split"]
    new_split = grown.split.drop_duplicates("formula_id").set_index("formula_id")["split"]
    assert (new_split[old_split.index[old_split == "eval"]] == "eval").all()  # eval stays eval
    assert set(new_split[list(batch["suggestion"])]) <= {"train", "calib"}
    with pytest.raises(FileExistsError):
        add_results(tiny_run, forms, tmp_path / "measured.csv", new)
    with pytest.raises(ValueError, match="already in"):  # the same ids twice
        add_results(new, forms, tmp_path / "measured.csv", tmp_path / "again")


def test_a_two_round_campaign_on_a_tiny_lab():
    bench = load_benchmark("campaign")
    tiny = LabPreset("tiny", n_materials=100, n_formulas=400)
    results = bench.run(1, 2, steps=100, ensemble=2, seed=0, preset=tiny, design_steps=10, n_starts=1, stop=False)
    campaigns = results["campaigns"]
    assert [c["method"] for c in campaigns] == list(bench.METHODS)
    for c in campaigns:
        assert c["rounds_run"] == 2
        assert all(len(h["errors"]) == bench.BATCH for h in c["history"])
        best = [h["best_error"] for h in c["history"]]
        assert best[1] <= best[0]
        assert c["reached"] == (best[-1] <= bench.HIT)
    assert {r["method"] for r in results["summary"]} == set(bench.METHODS)
    assert "| mrl suggest |" in bench.render(results)


def test_campaign_data_hold_no_truth():
    bench = load_benchmark("campaign")
    tables = bench.lab_tables(LabPreset("tiny", n_materials=100, n_formulas=400), seed=0)
    setup = bench._setup(tables, 0, 0, steps=50, ensemble=2)
    for table in (setup["start"].materials, setup["start"].properties, setup["materials"]):
        assert not set(LATENTS) & set(table.columns)


def test_the_design_page_holds_the_rendering_of_the_committed_campaign_result(tmp_path):
    """book/design.md's campaign table is exactly what benchmarks/campaign.py renders from
    benchmarks/results/campaign.json."""
    import json

    root = Path(__file__).resolve().parents[1]
    bench = load_benchmark("campaign")
    results = json.loads((root / "benchmarks" / "results" / "campaign.json").read_text())
    page = tmp_path / "design.md"
    page.write_text((root / "book" / "design.md").read_text())
    bench.write_book(results, page)
    assert page.read_text() == (root / "book" / "design.md").read_text()
    assert (root / "book" / "figures" / "campaign.png").stat().st_size < 300_000


def test_the_campaign_goals_are_worded_from_the_medians():
    """The goal lines come from :func:`mrl.wording.against_target`: a slower mrl suggest misses them."""
    import json

    root = Path(__file__).resolve().parents[1]
    bench = load_benchmark("campaign")
    results = json.loads((root / "benchmarks" / "results" / "campaign.json").read_text())
    goals = [line for line in bench.render(results).splitlines() if line.startswith("Goal:")]
    assert len(goals) == 2 and all("the goal is met" in g for g in goals)
    for row in results["summary"]:
        if row["method"] == "mrl suggest":
            row["median"] = 32.0
    goals = [line for line in bench.render(results).splitlines() if line.startswith("Goal:")]
    assert all("the goal is missed" in g for g in goals), goals
