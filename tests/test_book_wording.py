"""Comparisons on the report's pages are worded by mrl.wording from the numbers (issue 25): change a number in the
fixture and the sentence changes; no page says more than its table."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pandas as pd

from mrl.book import _knowledge_sentences, _shape_sentences

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
    assert "below that of the nearest training formula, 73 %" in text
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
    assert "| 100 | 1,751 / 5,425 / 176 |" in table and "| 2 | 2,295 / 6,731 / 394 |" in table
    assert "below that of the seed report at that size, 5,425 cP" in table
    page = (ROOT / "book" / "seed_scale.md").read_text()
    for render in lab_table.SECTIONS.values():
        assert render(results) in page, ("book/seed_scale.md is stale: python benchmarks/lab_table.py --render "
                                         "benchmarks/results/lab_seed_scale.json --book book/seed_scale.md")
    changed = copy.deepcopy(results)
    next(r for r in changed["runs"] if r["embedding_dim"] == 100)["eval_mae"] = 6000.0
    assert "above that of the seed report, 5,425 cP" in lab_table.render_key_result(changed)


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
