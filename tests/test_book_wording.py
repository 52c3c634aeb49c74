"""Comparisons on the report's pages are worded by mrl.wording from the numbers (issue 25): change a number in the
fixture and the sentence changes; no page says more than its table."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pandas as pd

from mrl.book import _knowledge_sentences, _shape_sentences
from mrl.wording import format_number

ROOT = Path(__file__).resolve().parents[1]


def _stats(evals: list[float], sd: float | None = None, n: int = 1) -> pd.DataFrame:
    rows = []
    for dim, ev in zip((2, 8, 20), evals):
        rows.append({"embedding_dim": dim, "eval_mae_log10": ev, "train_mae_log10": ev * 0.9, "eval_mae": ev * 1e4,
                     "n_runs": n, "eval_mae_log10_sd": sd if sd is not None else float("nan"),
                     "eval_mae_sd": sd * 1e4 if sd is not None else float("nan")})
    return pd.DataFrame(rows)


def _baselines(lightgbm: float) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "split": "eval", "mae_log10": v, "mae": v * 1e4}
                         for m, v in (("mean of train", 1.18), ("ridge", 0.681), ("LightGBM", lightgbm))])


def test_changing_the_baseline_changes_the_verdict():
    stats = _stats([0.528, 0.387, 0.40])
    lost = " ".join(_shape_sentences(stats, _baselines(0.342), "cP"))
    assert "above that of LightGBM, 0.342 log10 cP (single run)" in lost
    assert "LightGBM is better than mrl at size 8" in lost
    assert "above it at 3 of 3 sizes" in lost and "beat them all" not in lost
    assert "4,700 cP" not in lost and "3,420 cP" in lost  # the unit's scale, thousands separators
    won = " ".join(_shape_sentences(stats, _baselines(0.45), "cP"))
    assert "below that of LightGBM, 0.450 log10 cP" in won and "mrl at size 8 (its best size) is better" in won
    assert "below it at 2 of 3 sizes" in won and "above it at 1 of 3 sizes" in won
    assert won != lost


def test_spread_over_seeds_makes_a_tie():
    text = " ".join(_shape_sentences(_stats([0.528, 0.35, 0.40], sd=0.02, n=3), _baselines(0.342), "cP"))
    assert "mean ± SD over 3 seeds" in text and "within the spread of that of LightGBM" in text


def test_learned_against_svd_counts_come_from_the_numbers():
    lv = pd.DataFrame({"embedding_dim": [2, 8], "neighbour_agreement_learned": [0.39, 0.36],
                       "neighbour_agreement_svd": [0.70, 0.36], "median_probe_r2_learned": [0.5, 0.6],
                       "median_probe_r2_svd": [0.1, 0.2]})
    text = " ".join(_knowledge_sentences(lv))
    assert "the no-learning baseline scores higher at 1 of 2 sizes" in text
    assert "within the spread of each other at 1 of 2 sizes" in text
    assert "the learned vectors score higher at every size" in text
    lv["neighbour_agreement_learned"] = [0.80, 0.80]
    assert "Hidden families: the learned vectors score higher at every size" in " ".join(_knowledge_sentences(lv))


def test_design_key_result_is_worded_from_the_json():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import design  # benchmarks/design.py

    results = json.loads((ROOT / "benchmarks" / "results" / "design_lab.json").read_text())
    text = design.render_key_result(results)
    assert "below that of the nearest training formula, 76 %" in text
    assert "the nearest training formula is better than the design" in text
    assert "above that of random search, 48 %" in text
    page = (ROOT / "book" / "design.md").read_text()
    assert text in page, "book/design.md is stale: python benchmarks/design.py --render benchmarks/results/design_lab.json --book book/design.md"
    changed = copy.deepcopy(results)
    for row in changed["lab"]["summary"]:
        if row["method"] == "nearest training formula":
            row["hit"] = 0.40
    other = design.render_key_result(changed)
    assert "above that of the nearest training formula, 40 %" in other
    assert "the design is better than the nearest training formula" in other


def test_seed_scale_page_is_rendered_from_its_result_file():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import lab_table  # benchmarks/lab_table.py

    results = json.loads((ROOT / "benchmarks" / "results" / "lab_seed_scale.json").read_text())
    table = lab_table.render_table(results)
    assert "| 100 | 1,751 | 5,425 | 176 |" in table and "| 2 | 2,295 | 6,731 | 394 |" in table
    page = (ROOT / "book" / "seed_scale.md").read_text()
    for render in lab_table.SECTIONS.values():
        assert render(results) in page, ("book/seed_scale.md is stale: python benchmarks/lab_table.py --render "
                                         "benchmarks/results/lab_seed_scale.json --book book/seed_scale.md")
    assert "(no " not in page  # every section has its numbers (truth, figures, data-poor)
    for value, relation in ((6000.0, "above"), (3000.0, "below")):
        changed = copy.deepcopy(results)
        next(r for r in changed["runs"] if r["embedding_dim"] == 100)["eval_mae"] = value
        assert f"{relation} that of the seed report, 5,425 cP" in lab_table.render_key_result(changed)
        assert f"{format_number(value)} cP (single run), {relation} that of the seed report at that size" in \
            lab_table.render_table(changed)


def test_seed_scale_truth_and_data_poor_sentences_follow_the_numbers():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import lab_table  # benchmarks/lab_table.py

    results = json.loads((ROOT / "benchmarks" / "results" / "lab_seed_scale.json").read_text())
    changed = copy.deepcopy(results)
    na = changed["truth"]["neighbour_agreement"]
    na["learned"], na["svd"] = [0.9] * len(na["learned"]), [0.1] * len(na["svd"])
    assert "family neighbours, the learned vectors against the SVD: above at size" in lab_table.render_truth(changed)
    na["learned"], na["svd"] = na["svd"], na["learned"]
    assert "family neighbours, the learned vectors against the SVD: below at size" in lab_table.render_truth(changed)
    err = changed["data_poor"]["error"]
    size = str(err["sizes"][-1])
    err["median_abs_error"][size][0], err["median_abs_error"][size][-1] = 900, 100
    text = lab_table.render_data_poor(changed)
    assert f"median absolute error at size {size} of the group {err['bins'][0]} is 900 cP (single run), above" in text
    err["median_abs_error"][size][0] = 50
    assert f"of the group {err['bins'][0]} is 50.0 cP (single run), below" in lab_table.render_data_poor(changed)


def test_liquid_page_names_compounds_with_smiles_on_hover():
    import pytest

    pytest.importorskip("rdkit")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import liquid_viscosity  # benchmarks/liquid_viscosity.py

    results = json.loads((ROOT / "benchmarks" / "results" / "liquid_viscosity.json").read_text())
    table = liquid_viscosity.render_similar(results)
    assert '<abbr title="NCCCN">C3H10N2</abbr> (amine)' in table and "1-propanol (alcohol)" in table
    assert table in (ROOT / "book" / "liquid_viscosity.md").read_text(), (
        "book/liquid_viscosity.md is stale: python benchmarks/liquid_viscosity.py --render "
        "benchmarks/results/liquid_viscosity.json --book book/liquid_viscosity.md")


# --------------------------------------------------------------------------------------------------------------
# hand-written pages whose numbers are rendered from result files (issue 25): each page is up to date with its
# files, and a changed number in a result changes the rendered sentence
# --------------------------------------------------------------------------------------------------------------
RESULTS = ROOT / "benchmarks" / "results"


def load_benchmark(name: str):
    """A script of ``benchmarks/`` imported by name (registered in ``sys.modules``, as its dataclasses need)."""
    import importlib

    sys.path.insert(0, str(ROOT / "benchmarks"))
    return importlib.import_module(name)


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _assert_rendered(sections: dict, results, page: str, command: str) -> None:
    text = (ROOT / "book" / page).read_text()
    for name, render in sections.items():
        assert f"<!-- {name} -->\n{render(results)}\n<!-- /{name} -->" in text, f"book/{page} is stale: {command}"


def test_quoted_figures_and_targets_are_worded_from_the_numbers():
    from mrl.wording import BETTER, TIE, Score, against_target, compare

    quoted = Score(0.446, note="published, quoted")
    c = compare(Score(0.414, 0.019, 5, "folds"), quoted, "mrl", "RF-SCM/Magpie", what="MAE", unit="eV")
    assert "0.446 eV (published, quoted)" in c.sentence and "single run" not in c.sentence.split("RF-SCM")[1]
    assert c.verdict == BETTER
    met = against_target(Score(0.438), 0.439, "RMSE", "the goal of", goal=True)
    assert met.relation == "below" and met.sentence.endswith("the goal is met.")
    missed = against_target(Score(0.414, 0.019, 5, "folds"), 0.40, "MAE", "the goal of", unit="eV", goal=True)
    assert missed.verdict == TIE and "within the spread" in missed.sentence and "the goal is missed" in missed.sentence
    cov = against_target(Score(0.636, 0.17, 3, "splits"), 0.80, "80 % coverage", "the nominal", tolerance=0.05,
                         spread=False)
    assert cov.relation == "below" and "by 0.164" in cov.sentence
    assert against_target(Score(0.763, 0.018, 3, "splits"), 0.80, "80 % coverage", "the nominal", tolerance=0.05,
                          spread=False).relation == "within"


def test_matbench_page_is_rendered_and_follows_its_numbers():
    mb = load_benchmark("matbench")
    results = mb.page_results()
    _assert_rendered(mb.SECTIONS, results, "matbench.md", "python benchmarks/matbench.py --render --book "
                                                          "book/matbench.md")
    key = mb.render_key_result(results)
    assert "within the spread of that of RF-SCM/Magpie, 104 MPa (published, quoted): a tie" in key
    assert "below that of RF-SCM/Magpie, 0.446 eV (published, quoted)" in key
    changed = copy.deepcopy(results)
    for row in changed["expt_gap"]["rows"]:
        if row["model"].startswith("mrl"):
            row["mae_mean"] += 0.09
    other = mb.render_key_result(changed)
    assert "below that of RF-SCM/Magpie, 0.446 eV" not in other
    assert "above that of RF-SCM/Magpie, 0.446 eV (published, quoted): RF-SCM/Magpie is better than" in other
    goal = " ".join(mb.task_findings(changed["expt_gap"]))
    assert "the goal is missed" in goal
    for row in changed["expt_gap"]["rows"]:
        row["mae_mean"] = 0.35 if row["model"].startswith("mrl") and "early stop, 5 seeds" in row["features"] \
            else row["mae_mean"]
    assert "0.350 ± 0.0189 eV (mean ± SD over 5 folds), below the goal of 0.400 eV by 0.050 eV: the goal is met" in \
        " ".join(mb.task_findings(changed["expt_gap"]))
    steels = " ".join(mb.task_findings(results["steels"]))
    assert "The MAE of mrl tuned (inner-selected)" in steels and "outer folds chose" in steels
    for choice in changed["steels"]["tuned_choices"]:
        choice["chosen"] = {"embedding_dim": 16, "mat2vec": True}
    assert "The 5 outer folds chose (on inner splits of their training folds): MSE (5)." in " ".join(
        mb.task_findings(changed["steels"]))
    folds = mb.render_mp_e_form(results)
    assert "mean ± SD over 5 folds" in folds and "5-fold mean" not in (ROOT / "book" / "matbench.md").read_text()


def test_uncertainty_page_is_rendered_and_follows_its_numbers():
    unc = load_benchmark("uncertainty")
    files = [json.loads((ROOT / f).read_text()) for f in unc.RESULT_FILES]
    _assert_rendered(unc.SECTIONS, files, "uncertainty.md", "python benchmarks/uncertainty.py --render --book "
                                                             "book/uncertainty.md")
    text = unc.render_coverage(files)
    assert "80 % coverage of lab, material split, one model is 0.636 ± 0.172 (mean ± SD over 3 splits), below the " \
           "nominal 0.800 by 0.164" in text
    changed = copy.deepcopy(files)
    changed[0]["rows"][2]["cov80"] = 0.79
    assert "lab, material split, one model is 0.790 ± 0.172 (mean ± SD over 3 splits), within 0.05 of the nominal" \
        in unc.render_coverage(changed)


def test_melt_page_is_rendered_and_follows_its_numbers():
    melt = load_benchmark("melt_viscosity")
    results = melt.page_results()
    _assert_rendered(melt.SECTIONS, results, "melt_viscosity.md", "python benchmarks/melt_viscosity.py --render "
                     "--book book/melt_viscosity.md")
    assert "below GP_model2's 0.439 by 0.001: the goal is met" in melt.render_findings(results)
    changed = copy.deepcopy(results)
    changed["mrl_ensemble"]["rmse"] = 0.45
    text = melt.render_findings(changed)
    assert "above GP_model2's 0.439 by 0.011: the goal is missed" in text
    assert "GP_model2) is better than an ensemble of five mrl models" in melt.render_key_result(changed)


def test_melt_analysis_sections_follow_the_result_file():
    """The effect table, the oxide findings, the map and the reference-melt sentences of the melt page come from
    benchmarks/results/melt_viscosity.json: a changed number changes the sentence."""
    melt = load_benchmark("melt_viscosity")
    results = melt.page_results()
    effects = melt.render_effects(results)
    assert "* **H2O lowers viscosity most**: −0.52 log units per mol%, 2.7 times Na2O (−0.19)" in effects
    assert "**Three of the four network formers raise viscosity** (Al2O3 +0.12, TiO2 +0.10, SiO2 +0.06)" in effects
    assert "**P2O5 disagrees**" in effects and "Fe2O3 (−0.08) lowers it less than FeO (−0.13), in line" in effects
    changed = copy.deepcopy(results)
    ox = changed["analysis"]["oxides"]
    ox["H2O"]["effect"], ox["P2O5"]["effect"], ox["Fe2O3"]["effect"] = -0.1, 0.05, -0.15
    other = melt.render_effects(changed)
    assert "* **Na2O lowers viscosity most**" in other and "H2O lowers viscosity most" not in other
    assert "**All four network formers raise viscosity**" in other and "P2O5 disagrees" not in other
    assert "Fe2O3 (−0.15) lowers it more than FeO (−0.13), against the expectation" in other

    text = melt.render_map(results)
    assert "puts 8 of the 10 formers" in text and "0.68 apart against a within-group RMS spread of 0.84" in text
    assert "separated only partly" in text and "CaO and MgO (the alkaline earths) are each other's nearest" in text
    changed["analysis"]["separation"].update(centroid_distance=1.5, loo_correct=10)
    other = melt.render_map(changed)
    assert "puts 10 of the 10" in other and "further apart than they are wide" in other

    curves = melt.render_curves(results)
    basalt = next(line for line in curves.splitlines() if "**basalt**" in line)
    assert "mrl vft d16 is better than the chosen mrl direct d16" in basalt
    changed["reference_melts"]["basalt"]["rmse_other"] = 0.5
    basalt = next(line for line in melt.render_curves(changed).splitlines() if "**basalt**" in line)
    assert "the chosen mrl direct d16 is better than mrl vft d16" in basalt

    assert "66 of its 630 test names" in melt.render_data(results)
    changed["data"]["test_names_in_train"] = 70
    assert "70 of its 630 test names" in melt.render_data(changed)


def test_melt_result_files_must_agree(tmp_path):
    import pytest

    melt = load_benchmark("melt_viscosity")
    rows, run = (json.loads((ROOT / f).read_text()) for f in melt.RESULT_FILES)
    run["mrl"]["rmse"] += 0.01
    paths = [tmp_path / "rows.json", tmp_path / "run.json"]
    for path, data in zip(paths, (rows, run)):
        path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="row 'mrl' has test RMSE"):
        melt.page_results(paths)
    run["mrl"]["rmse"] -= 0.01
    run["mrl"]["wall_s"] = 999.0  # a shared row is shown from the first file
    paths[1].write_text(json.dumps(run))
    assert melt.page_results(paths)["mrl"]["wall_s"] == rows["mrl"]["wall_s"]


def test_liquid_key_result_includes_the_graph_rows():
    liquid = load_benchmark("liquid_viscosity")
    results = _json("liquid_viscosity.json")
    text = liquid.render_key_result(results)
    assert text in (ROOT / "book" / "liquid_viscosity.md").read_text(), (
        "book/liquid_viscosity.md is stale: python benchmarks/liquid_viscosity.py --render "
        "benchmarks/results/liquid_viscosity.json --book book/liquid_viscosity.md")
    assert "mrl + RDKit features is better than mrl + molecular-graph encoder (`features: graph`)" in text
    assert "LightGBM on descriptors is better than mrl + graph encoder" in text and "over 5 seeds" in text
    changed = copy.deepcopy(results)
    changed["test"]["mrl_graph"]["mae"] = 0.040
    assert "mrl + molecular-graph encoder (`features: graph`) is better than mrl + RDKit features" in \
        liquid.render_key_result(changed)


def test_new_materials_and_error_sources_pages_follow_their_numbers():
    new = load_benchmark("new_materials")
    results = _json("new_materials.json")
    _assert_rendered(new.SECTIONS, results, "new_materials.md", "python benchmarks/new_materials.py --render "
                     "benchmarks/results/new_materials.json --book book/new_materials.md")
    changed = copy.deepcopy(results)
    for row in changed["table"]:
        if row["method"] == "tie_kind":
            row["mae_log10"] = 0.70
    assert "no influence is better than a tie to a known material of its kind" in new.render_key_result(changed)
    sup = load_benchmark("supplier_ties")
    ties = _json("supplier_ties.json")
    _assert_rendered(sup.SECTIONS, ties, "new_materials.md", "python benchmarks/supplier_ties.py --render "
                     "benchmarks/results/supplier_ties.json --book book/new_materials.md")
    for row in ties["rows"]:
        if row["model"] == "two codes, tied":
            row["code_b_mae_log10"] += 0.3
    assert "the untied one is better than the tied model" in sup.render_supplier_ties(ties)
    err = load_benchmark("error_sources")
    results = _json("error_sources.json")
    _assert_rendered(err.SECTIONS, results, "error_sources.md", "python benchmarks/error_sources.py --render "
                     "benchmarks/results/error_sources.json --book book/error_sources.md")
    changed = copy.deepcopy(results)
    for row in changed["summary"]:
        if row["split"] == "material":
            row["eval_mae_log10"] = 0.2
    assert "held-out formulas of seen materials is better" not in err.render_key_result(changed)
    assert "held-out formulas that each hold an unseen material is better" in err.render_key_result(changed)


def test_intro_names_every_chapter_of_its_parts():
    import re

    import yaml

    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    intro = (ROOT / "book" / "intro.md").read_text()
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
    studies = next(p for p in toc["parts"] if p["caption"] == "Studies")["chapters"]
    asked = re.search(r"asks\s+(\w+)\s+practical\s+questions", intro)
    assert asked and words[asked.group(1)] == len(studies)
    named = {"melt_viscosity": "melt viscosity", "matbench": "Matbench", "small_data": "small data sets",
             "liquid_viscosity": "liquid mixtures"}
    intro = " ".join(intro.split())
    real = next(p for p in toc["parts"] if p["caption"] == "Real data")["chapters"]
    assert {c["file"] for c in real} == set(named)
    assert all(named[c["file"]] in intro for c in real)



def test_matbench_merge_adds_only_missing_rows():
    import pytest

    mb = load_benchmark("matbench")
    base = {"task": "expt_gap", "rows": [{"model": "mrl", "features": "dim 16", "mae_mean": 0.5}],
            "element_agreement": [{"vectors": "mrl dim 16"}], "row_groups": ["best"], "total_wall_s": 5.0,
            "command": "python benchmarks/matbench.py --task expt_gap --rows best"}
    extra = {"task": "expt_gap", "rows": [{"model": "mrl", "features": "dim 16", "mae_mean": 0.9},
                                          {"model": "mrl", "features": "dim 4", "mae_mean": 0.6}],
             "element_agreement": [{"vectors": "mrl dim 16"}, {"vectors": "mrl dim 4"}], "row_groups": ["mrl"],
             "total_wall_s": 12.0}
    merged = mb.merge_result(base, extra, "python benchmarks/matbench.py --task expt_gap --rows mrl")
    assert [r["mae_mean"] for r in merged["rows"]] == [0.5, 0.6]
    assert [r["vectors"] for r in merged["element_agreement"]] == ["mrl dim 16", "mrl dim 4"]
    assert merged["row_groups"] == ["best", "mrl"]
    assert [p["total_wall_s"] for p in merged["parts"]] == [5.0, 12.0] and merged["total_wall_s"] == 17.0
    assert merged["parts"][0]["command"].endswith("--rows best")
    with pytest.raises(ValueError, match="cannot merge"):
        mb.merge_result(base, {**extra, "task": "steels"}, "x")
