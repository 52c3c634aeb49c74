"""Designing a formula for a target: the simplex, bounds, fixed materials, the change cap, candidates, the domain
penalty, random search, the hidden rule for any formula, and ``mrl design``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import first_formula, load_benchmark, tiny_lab_run

from mrl.design import CHANGE_TOLERANCE, design, project_to_simplex, random_search
from mrl.predict import Predictor
from mrl.runs import load_run

TINY = dict(steps=300, eval_every=100, snapshot_every=100, checkpoint_every=300, embedding_dim=4, hidden=[16],
            device="cpu", content_scale="none", ensemble=2, small_data="off")  # the plain network (stacked: test_small_data_defaults)
FAST = dict(steps=30, n_starts=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return tiny_lab_run(tmp_path_factory.mktemp("design"), **TINY)


@pytest.fixture(scope="module")
def predictor(tiny_run) -> Predictor:
    return Predictor.from_folder(tiny_run)


@pytest.fixture(scope="module")
def formula(tiny_run) -> pd.DataFrame:
    return first_formula(load_run(tiny_run).data()[0])


def _contents(result, fid) -> pd.Series:
    rows = result.formulas[result.formulas["formula_id"] == fid]
    return rows.set_index("material_id")["content"]


def _check_simplex(result) -> None:
    for fid in result.formulas["formula_id"].unique():
        c = _contents(result, fid)
        assert (c >= 0).all()
        assert abs(c.sum() - 100.0) < 1e-6


def test_projection_onto_the_bounded_simplex():
    y = torch.tensor([[0.5, 0.2, 0.9, -0.3], [2.0, 0.0, 0.0, 0.0]])
    lo = torch.tensor([[0.0, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    hi = torch.tensor([[1.0, 1.0, 0.4, 1.0], [0.5, 1.0, 1.0, 1.0]])
    x = project_to_simplex(y, torch.tensor([1.0, 1.0]), lo, hi)
    assert torch.allclose(x.sum(1), torch.ones(2), atol=1e-5)
    assert (x >= lo - 1e-6).all() and (x <= hi + 1e-6).all()


def test_design_keeps_the_simplex_fixed_materials_and_the_change_cap(predictor, formula):
    original = formula.set_index("material_id")["content"]
    fixed = list(original.sort_values().index[:2])
    target = float(predictor.predict(formula)["prediction"].iloc[0]) * 2
    result = design(predictor, formula, target, fix=fixed, max_changes=2, n_proposals=3, **FAST)
    assert len(result.proposals) >= 1
    _check_simplex(result)
    for fid in result.proposals["proposal"]:
        c = _contents(result, fid).reindex(original.index.union(_contents(result, fid).index), fill_value=0.0)
        delta = (c - original.reindex(c.index, fill_value=0.0)).abs()
        assert (delta > CHANGE_TOLERANCE).sum() <= 2
        for m in fixed:
            assert c[m] == original[m] / original.sum() * 100
    assert set(result.proposals["vouched"].unique()) <= {True, False}
    assert {"prediction", "lower_80", "upper_80", "reasons", "changes", "top_materials"} <= set(result.proposals)


def test_bounds_and_additions_only_from_candidates(predictor, formula):
    original = formula.set_index("material_id")["content"]
    vocab = predictor.members[0].materials_["material_id"].astype(str)
    candidates = [m for m in vocab if m not in set(original.index)][:2]
    big = original.idxmax()
    target = float(predictor.predict(formula)["prediction"].iloc[0]) / 2
    result = design(predictor, formula, target, bounds={big: (original[big] - 5, original[big]),
                                                        candidates[0]: (0.0, 3.0)},
                    add_from=candidates, max_changes=3, n_proposals=3, **FAST)
    _check_simplex(result)
    allowed = set(original.index) | set(candidates)
    for fid in result.proposals["proposal"]:
        c = _contents(result, fid)
        assert set(c.index) <= allowed
        assert c.get(big, 0.0) >= original[big] - 5 - 1e-6 and c.get(big, 0.0) <= original[big] + 1e-6
        assert c.get(candidates[0], 0.0) <= 3.0 + 1e-6


def test_a_huge_domain_weight_keeps_contents_inside_the_training_range(predictor, formula):
    domain = predictor.domain
    target = float(predictor.predict(formula)["prediction"].iloc[0]) * 50  # far: tempts the search out
    result = design(predictor, formula, target, domain_weight=1e6, max_changes=3, n_proposals=2, **FAST)
    index = pd.Index(domain.material_ids.astype(str))
    for fid in result.proposals["proposal"]:
        c = _contents(result, fid) / 100.0
        cmax = domain.content_max[index.get_indexer(c.index)]
        assert (c.to_numpy() <= cmax * 1.01 + 1e-6).all()


def test_the_domain_penalty_allows_an_original_outside_the_domain_its_own_excess(predictor, formula):
    """An original outside the training domain is not pulled back towards the training data: the penalty is zero at
    the original and grows only when a row lies further out than it; inside the domain nothing changes."""
    from mrl.design import _Penalty, _prepare

    def penalty_of(rows: pd.DataFrame, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        problem = _prepare(predictor, rows, 10.0, None, (), {}, (), None, 3)[0]
        pen = _Penalty(predictor, problem)
        from mrl.design import _model_values

        with torch.no_grad():
            return pen(x, _model_values(predictor, problem, x)[1]), torch.as_tensor(problem.c0, dtype=torch.float32)

    # an original outside: its material with the smallest training maximum at 1.2x that maximum (at most 97 %)
    domain = predictor.domain
    index = pd.Index(domain.material_ids.astype(str))
    far = formula.copy()
    cmaxes = domain.content_max[index.get_indexer(far["material_id"].astype(str))]
    j = int(np.argmin(cmaxes))
    level = min(0.97, 1.2 * float(cmaxes[j]))
    assert level > 1.05 * float(cmaxes[j])  # really outside the content range
    small = far.index != far.index[j]
    far.loc[far.index[j], "content"] = 100 * level
    far.loc[small, "content"] = far.loc[small, "content"] / far.loc[small, "content"].sum() * 100 * (1 - level)
    problem = _prepare(predictor, far, 10.0, None, (), {}, (), None, 3)[0]
    x0 = torch.as_tensor(problem.c0[None], dtype=torch.float32)
    assert float(penalty_of(far, x0)[0][0]) == 0.0
    further = x0.clone()
    further[0, j] = float(x0[0, j]) + 0.02
    assert float(penalty_of(far, further)[0][0]) > 0.0


def test_the_content_penalty_starts_before_the_domain_flags_a_content(predictor, formula):
    """A content the penalty leaves alone must not be flagged by the domain: the allowance of every material whose
    original content is inside its training range lies below the domain's flag level (max x (1 + RANGE_SLACK))."""
    from mrl.design import _Penalty, _prepare
    from mrl.domain import RANGE_SLACK

    problem = _prepare(predictor, formula, 10.0, None, (), {}, (), None, 3)[0]
    pen = _Penalty(predictor, problem)
    cmax = predictor.domain.content_max[problem.columns]
    inside = np.isfinite(cmax) & (problem.c0 <= cmax)
    assert inside.sum() >= 3
    allow = pen.content_allow.numpy()[inside]
    assert (allow <= cmax[inside] * (1 + RANGE_SLACK)).all()
    assert (allow >= cmax[inside]).all()  # and the training range itself is free


def test_the_spread_term_is_the_members_variance_of_the_change_when_anchored(predictor, formula):
    """Anchored, the spread term measures how much the members disagree about the *change* from the original (zero at
    the original itself), and with weight 1 the objective is the members' mean squared distance to the target."""
    from mrl.design import _model_values, _objective, _Penalty, _prepare

    assert len(predictor.members) > 1
    problem = _prepare(predictor, formula, 10.0, None, (), {}, (), 5.0, 3)[0]
    penalty = _Penalty(predictor, problem)
    x0 = torch.as_tensor(problem.c0[None], dtype=torch.float32)
    moved = x0.clone()
    moved[0, 0] += 0.05
    moved[0, 1] -= 0.05
    x = torch.cat([x0, moved])
    with torch.no_grad():
        plain = _objective(predictor, problem, penalty, x, 0.0, 0.0)
        spread = _objective(predictor, problem, penalty, x, 1.0, 0.0)
        values = _model_values(predictor, problem, x)[0]
    change = values - values[:, :1]
    assert float(spread[0]) == pytest.approx(float(plain[0]), abs=1e-10)  # no disagreement about no change
    assert float(change[:, 1].var(unbiased=False)) > 0
    assert float(spread[1] - plain[1]) == pytest.approx(float(change[:, 1].var(unbiased=False)), rel=1e-4)
    wanted = problem.target_t - float(values[:, 0].mean())  # the anchored change the target asks for
    assert float(spread[1]) == pytest.approx(float(((change[:, 1] - wanted) ** 2).mean()), rel=1e-4)


def test_random_search_keeps_the_constraints(predictor, formula):
    original = formula.set_index("material_id")["content"]
    fixed = [original.idxmin()]
    target = float(predictor.predict(formula)["prediction"].iloc[0]) * 1.5
    result = random_search(predictor, formula, target, fix=fixed, max_changes=3, n_calls=400, n_proposals=2)
    _check_simplex(result)
    for fid in result.proposals["proposal"]:
        c = _contents(result, fid)
        assert c[fixed[0]] == original[fixed[0]] / original.sum() * 100
    assert result.n_model_calls == 400


def test_bad_requests_are_refused(predictor, formula):
    with pytest.raises(ValueError, match="max_changes"):
        design(predictor, formula, 10.0, max_changes=1)
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        design(predictor, formula, 10.0, add_from=["NOPE"])


def test_hidden_viscosity_reproduces_the_lab():
    from mrl.synth import PRESETS, hidden_viscosity, make_lab

    data, truth = make_lab("small")
    forms = data.formulas[data.formulas["formula_id"].isin(data.formula_ids[:200])]
    clean = hidden_viscosity(forms, truth)
    measured = data.properties.set_index("formula_id").loc[clean.index, "viscosity"]
    ratio = np.log(measured.to_numpy() / clean.to_numpy())
    assert abs(ratio.std() - PRESETS["small"].noise) < 0.01
    percent = forms.assign(content=forms["content"] * 100)
    assert np.allclose(hidden_viscosity(percent, truth).to_numpy(), clean.to_numpy())
    noisy = hidden_viscosity(forms, truth, noise=0.04, seed=1)
    assert not np.allclose(noisy.to_numpy(), clean.to_numpy())
    with pytest.raises(ValueError, match="not in the lab"):
        hidden_viscosity(pd.DataFrame({"formula_id": ["x"], "material_id": ["NOPE"], "content": [1.0]}), truth)


def test_cli_design_writes_the_folder_and_refuses_an_existing_one(tiny_run, formula, tmp_path):
    formula_path = tmp_path / "one.csv"
    formula.to_csv(formula_path, index=False)
    out = tmp_path / "design"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "mrl.cli", "design", str(tiny_run), "--formula", str(formula_path), "--target",
            "300", "--max-changes", "2", "--n-proposals", "2", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {"proposals.csv", "formulas.csv", "design_map.png"} <= {p.name for p in out.iterdir()}
    proposals = pd.read_csv(out / "proposals.csv")
    assert {"proposal", "prediction", "lower_80", "upper_80", "vouched", "reasons", "n_changed",
            "changes", "top_materials"} <= set(proposals.columns)
    assert all(float(f"{v:.4g}") == v for v in proposals[["prediction", "lower_80", "upper_95"]].to_numpy().ravel())
    assert "(M0" in proposals["changes"].iloc[0]  # names beside codes
    contents = pd.read_csv(out / "contents.csv")
    assert list(contents.columns[:3]) == ["material_id", "name", str(formula["formula_id"].iloc[0])]
    assert contents.iloc[:, 2:].sum().round(4).eq(100).all()
    long = pd.read_csv(out / "formulas.csv")
    assert list(long.columns) == ["formula_id", "material_id", "name", "content"]
    assert all(len(repr(v)) <= 12 for v in long["content"])  # no float noise (0.41980000000000006)
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    fid = str(formula["formula_id"].iloc[0])  # an id of the run's own data works too (anchored to its measurement)
    by_id = subprocess.run([*argv[:6], fid, *argv[7:-1], str(tmp_path / "by_id"), "--fix-family", "active,solvent",
                            "--add-from-family", "thickener", "--step", "0.05"], capture_output=True, text=True,
                           env=env, timeout=300)
    assert by_id.returncode == 0, by_id.stderr
    assert "anchored" in by_id.stdout and "by family, fixed: " in by_id.stderr


def test_the_design_page_holds_the_rendering_of_the_committed_benchmark_result(tmp_path):
    """book/design.md's generated regions (key result, table, example, melt) are exactly what benchmarks/design.py
    renders from benchmarks/results/design_lab.json: the page's numbers come from the result file."""
    import json

    root = Path(__file__).resolve().parents[1]
    bench = load_benchmark("design")
    results = json.loads((root / "benchmarks" / "results" / "design_lab.json").read_text())
    page = tmp_path / "design.md"
    page.write_text((root / "book" / "design.md").read_text())
    bench.write_book(results, page)
    assert page.read_text() == (root / "book" / "design.md").read_text()
    assert results["lab"]["summary"][0]["method"] == "design"


def _deltas(result, fid, original: pd.Series) -> pd.Series:
    c = _contents(result, fid)
    c = c.reindex(original.index.union(c.index), fill_value=0.0)
    return c - (original / original.sum() * 100).reindex(c.index, fill_value=0.0)


def test_design_by_role_with_a_dosing_step_names_and_distinct_proposals(predictor, formula):
    original = formula.set_index("material_id")["content"]
    table = predictor.members[0].materials_.set_index("material_id")
    families = table["family"]
    target = float(predictor.predict(formula)["prediction"].iloc[0]) * 2
    result = design(predictor, formula, target, fix_family=["Active", "preservative"], add_from_family=["thickener"],
                    step=0.05, max_changes=3, n_proposals=3, **FAST)
    assert len(result.proposals) >= 2
    _check_simplex(result)
    for fid in result.proposals["proposal"]:
        delta = _deltas(result, fid, original)
        moved = delta[delta.abs() > CHANGE_TOLERANCE]
        assert not set(families[moved.index]) & {"active", "preservative"}  # fixed by role
        added = [m for m in moved.index if m not in original.index]
        assert set(families[added]) <= {"thickener"}  # additions only from the family asked
        assert np.allclose(moved / 0.05, np.round(moved / 0.05), atol=1e-6)  # whole dosing steps
        for m in moved.index:  # named as "name (code)"
            assert f"{table.loc[m, 'name']} ({m})" in result.proposals.set_index("proposal").loc[fid, "changes"]
    p = [_deltas(result, fid, original) for fid in result.proposals["proposal"]]
    for i in range(len(p)):
        for j in range(i):
            a, b = p[i].reindex(p[j].index.union(p[i].index), fill_value=0), p[j].reindex(p[i].index.union(
                p[j].index), fill_value=0)
            assert (a - b).abs().sum() >= 0.5 * max(a.abs().sum(), b.abs().sum()) - 1e-6  # distinct proposals
    assert list(result.table().columns[:1]) == ["name"]
    by_name = design(predictor, formula, target, fix=[table.loc[original.index[0], "name"].lower()],
                     max_changes=2, n_proposals=1, **FAST)
    assert _contents(by_name, by_name.proposals["proposal"][0])[original.index[0]] == pytest.approx(
        original.iloc[0] / original.sum() * 100)
    with pytest.raises(ValueError, match="did you mean 'Material 001'"):
        design(predictor, formula, target, fix=["Materail 001"], **FAST)
    with pytest.raises(ValueError, match="did you mean 'preservative'"):
        design(predictor, formula, target, fix_family=["preservatve"], **FAST)


def test_contents_stay_in_their_training_range_by_default(predictor, formula):
    domain = predictor.domain
    index = pd.Index(domain.material_ids.astype(str))
    original = formula.set_index("material_id")["content"]
    c0 = original / original.sum()
    target = float(predictor.predict(formula)["prediction"].iloc[0]) / 20  # far: tempts the search to cut
    for domain_bounds in (True, False):
        result = design(predictor, formula, target, max_changes=3, n_proposals=3, domain_bounds=domain_bounds,
                        **FAST)
        low = []
        for fid in result.proposals["proposal"]:
            c = _contents(result, fid).reindex(original.index, fill_value=0.0) / 100
            cmin = np.minimum(domain.content_min[index.get_indexer(c.index)], c0[c.index].to_numpy())
            low.append(bool((c.to_numpy() < cmin - 1e-6).any()))
        if domain_bounds:
            assert not any(low)  # nothing cut below its smallest training content
    assert any(low), "the test formula does not tempt the search below a training minimum"
