"""steps: auto (best state on an inner validation share, budget by data size), stacking on a ridge/LightGBM base, and
the small-data defaults chosen by the data's size and logged (issues 26 and 30)."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import tiny_tables

from mrl.checkpoint import load_checkpoint
from mrl.data import FormulaData, load_formulas, save_formulas
from mrl.estimator import MixtureRegressor
from mrl.params import RunParams
from mrl.run_files import CHECKPOINT, STACK
from mrl.runs import load_run, plan_run, run_experiment
from mrl.small_data import SMALL_DATA, SMALL_DATA_MAX_FORMULAS, resolve_small_data
from mrl.stacking import StackBase, fit_stack
from mrl.train import AUTO_EPOCHS, AUTO_MAX_STEPS, AUTO_MIN_STEPS, cosine_factor, resolve_steps

FAST = dict(embedding_dim=4, hidden=(16,), batch_size=64, snapshot_every=50, checkpoint_every=100, progress=False,
            device="cpu")


@pytest.fixture
def short_auto(monkeypatch):
    """A small auto budget (the rule, not its constants, is under test): 200 to 400 steps."""
    monkeypatch.setattr("mrl.train.AUTO_MIN_STEPS", 200)
    monkeypatch.setattr("mrl.train.AUTO_MAX_STEPS", 400)
    monkeypatch.setattr("mrl.train.AUTO_EPOCHS", 20)


def _split(data: FormulaData) -> tuple[FormulaData, FormulaData]:
    mask = np.arange(data.n_samples) % 5 != 0
    return data.subset(mask), data.subset(~mask)


def _absurd(data: FormulaData) -> FormulaData:
    out = data.subset(np.ones(data.n_samples, bool))
    out.properties[out.targets[0]] = 1e9
    return out


def test_the_auto_budget_grows_with_the_data_and_is_clipped():
    budgets = [resolve_steps("auto", n, 256, 500, False, 10).steps for n in (50, 300, 1_000, 200_000)]
    assert budgets == sorted(budgets) and budgets[0] < budgets[1] < budgets[2]
    assert budgets[0] == max(AUTO_MIN_STEPS, AUTO_EPOCHS) and budgets[-1] == AUTO_MAX_STEPS
    plan = resolve_steps("auto", 2_000, 256, 500, False, 10)
    assert plan.early_stopping and plan.patience > 10 and "steps auto" in plan.reason
    fixed = resolve_steps(300, 2_000, 256, 500, False, 10)
    assert (fixed.steps, fixed.eval_every, fixed.early_stopping) == (300, 500, False)


def test_steps_auto_restores_the_best_state_and_logs_its_budget(tiny_data, caplog, short_auto):
    train, ev = _split(tiny_data)
    with caplog.at_level(logging.INFO, logger="mrl.estimator"):
        est = MixtureRegressor(steps="auto", auto_refit=False, lr=0.03, **FAST).fit(train, ev)
    assert "steps auto: budget" in caplog.text and "never stopped before the budget's end" in caplog.text
    hist = est.history_
    assert 200 <= est.steps_ <= 400
    assert est.stopped_step_ == est.n_steps_ == est.steps_  # the whole budget: no patience stop (issue 26)
    _, val = est.validation_split(train)
    restored = est._validation_loss(val)(est.module_)
    assert restored <= hist["val_loss"].min() * (1 + 1e-6)
    if est.best_step_:  # the best state is a logged check
        assert est.best_step_ == int(hist.loc[hist["val_loss"].idxmin(), "step"])
        assert restored == pytest.approx(hist["val_loss"].min(), rel=1e-6)


def test_steps_auto_trains_again_on_all_formulas_up_to_the_best_step(tiny_data, caplog, short_auto):
    """auto_refit (the default): the best step is found with the validation share held out (no eval), then the
    model trains on every training formula over the same schedule and stops there."""
    train, ev = _split(tiny_data)
    kw = dict(steps="auto", lr=0.03, **FAST)
    probe = MixtureRegressor(auto_refit=False, **kw).fit(train)
    with caplog.at_level(logging.INFO, logger="mrl.estimator"):
        est = MixtureRegressor(**kw).fit(train, ev)
    assert "trained again on all" in caplog.text
    best = max(1, probe.best_step_)
    assert (est.best_step_, est.steps_) == (best, probe.steps_)
    assert est.n_steps_ == est.stopped_step_ == best and "val_loss" not in est.history_
    assert est.history_["step"].iloc[-1] == best
    # the same as a fixed run of that many steps whose cosine schedule spans the budget, on all training formulas
    lr = est.history_["lr"].iloc[-1]
    assert lr == pytest.approx(0.03 * cosine_factor(best, probe.steps_))
    assert lr > 0.03 * cosine_factor(probe.steps_, probe.steps_) or best == probe.steps_


def test_the_bundled_lab_gets_the_old_fixed_default_as_its_auto_budget():
    """The small lab (~1,750 training formulas after calib and validation shares, batch 256) trains 20,000 steps,
    never stopped before the end: its validation error falls a second time after a long plateau (issue 26)."""
    plan = resolve_steps("auto", 1_750, 256, 500, False, 10)
    assert plan.steps == 20_000 and plan.early_stopping
    assert plan.patience >= math.ceil(plan.steps / plan.eval_every)  # never stopped by patience


@pytest.mark.parametrize("metric", ["mae", "loss"])
def test_the_validation_metric_is_the_mae_of_the_standardised_target_or_the_loss(tiny_data, metric):
    """``validation_metric: mae`` (the default) minimises the validation MAE of the standardised target (the argmin
    of the reported MAE); ``loss`` the training loss (MSE here), as before issue 26."""
    train, _ = _split(tiny_data)
    est = MixtureRegressor(steps=60, early_stopping=True, eval_every=20, patience=10, validation_metric=metric,
                           **FAST).fit(train)
    _, val = est.validation_split(train)
    scaled = [est.module_.target_to_scaled(torch.tensor(np.asarray(v), dtype=torch.float64)).numpy()
              for v in (val.target_values(), est.predict(val))]
    err = scaled[1] - scaled[0]
    expected = np.abs(err).mean() if metric == "mae" else np.square(err).mean()
    got = est._validation_loss(val)(est.module_)
    assert got == pytest.approx(expected, rel=1e-3)
    assert got == pytest.approx(est.history_["val_loss"].min(), rel=1e-6)  # the kept state is the best checked
    assert RunParams().validation_metric == "mae"


def test_an_unknown_validation_metric_is_refused(tiny_data):
    with pytest.raises(ValueError, match="validation_metric"):
        MixtureRegressor(steps=10, early_stopping=True, validation_metric="rmse", **FAST).fit(tiny_data)


@pytest.mark.parametrize("stack", ["none", "ridge"])
def test_auto_and_stacking_never_read_eval(tiny_data, stack, short_auto):
    train, ev = _split(tiny_data)
    kw = dict(steps="auto", stack=stack, **FAST)
    a = MixtureRegressor(**kw).fit(train, ev).predict(ev)
    b = MixtureRegressor(**kw).fit(train, _absurd(ev)).predict(ev)
    c = MixtureRegressor(**kw).fit(train).predict(ev)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_a_stacked_model_predicts_base_plus_residual_and_survives_save_and_load(tiny_data, tmp_path):
    train, ev = _split(tiny_data)
    est = MixtureRegressor(steps=100, stack="ridge", eval_every=50, **FAST).fit(train)
    assert isinstance(est.stack_, StackBase) and est.stack_.kind == "ridge"
    matrix, cond = est.encode(ev)
    base = est.stack_.predict(matrix, cond)
    pred = est.predict(ev)
    assert not np.allclose(pred, base)  # the network adds its residual ...
    plain = MixtureRegressor(steps=100, eval_every=50, **FAST).fit(train).predict(ev)
    truth = ev.target_values()
    assert np.abs(pred - truth).mean() < np.abs(plain - truth).mean()  # ... and the base helps on a linear rule
    json.dumps(est.stack_.to_state())  # plain JSON
    again = MixtureRegressor.load(est.save(tmp_path / "m.pt"), device="cpu")
    np.testing.assert_array_equal(again.predict(ev), pred)


def test_stack_auto_picks_on_out_of_fold_errors_and_says_so(tiny_data, caplog):
    train, _ = _split(tiny_data)
    with caplog.at_level(logging.INFO, logger="mrl.estimator"):
        est = MixtureRegressor(steps=20, eval_every=10, stack="auto", **FAST).fit(train)
    assert "stack auto:" in caplog.text and "out-of-fold MAE" in caplog.text
    assert est.stack_ is None or est.stack_.kind in ("ridge", "lightgbm")


def test_small_data_settings_are_chosen_by_size_and_a_set_value_wins():
    small, why = resolve_small_data(RunParams(), 300)
    assert small.stack == SMALL_DATA["stack"] and small.embedding_dim == SMALL_DATA["embedding_dim"]
    assert "small_data: auto" in why and "300 training formulas" in why
    large, why = resolve_small_data(RunParams(), SMALL_DATA_MAX_FORMULAS + 1)
    assert large == RunParams() and "not used" in why
    mine, why = resolve_small_data(RunParams(embedding_dim=16, stack="lightgbm"), 300)
    assert mine.embedding_dim == 16 and mine.stack == "lightgbm" and "kept as set: stack lightgbm, embedding_dim 16" in why
    assert resolve_small_data(mine, 300) == (mine, why)  # resolving again (a resumed run) changes nothing
    assert resolve_small_data(RunParams(small_data="off"), 300)[0] == RunParams(small_data="off")
    assert resolve_small_data(RunParams(small_data="on"), 10 ** 6)[0].stack == SMALL_DATA["stack"]


def _folder(tmp_path, n_formulas):
    folder = tmp_path / f"d{n_formulas}"
    save_formulas(load_formulas(*tiny_tables(n_formulas=n_formulas), name="tiny"), folder)
    return str(folder)


def test_the_plan_logs_the_size_dependent_choice(tmp_path, monkeypatch):
    folder = _folder(tmp_path, 200)
    plan = plan_run(RunParams(data=folder, device="cpu"))
    assert plan.params.stack == "auto" and plan.params.lr == SMALL_DATA["lr"]
    text = "\n".join(plan.describe())
    assert "small-data settings (small_data: auto" in text and "steps auto: budget" in text
    monkeypatch.setattr("mrl.small_data.SMALL_DATA_MAX_FORMULAS", 10)
    plan = plan_run(RunParams(data=folder, device="cpu"))
    assert plan.params.stack == "none" and "small-data settings: not used" in "\n".join(plan.describe())


def test_mrl_predict_reproduces_a_stacked_run(tmp_path, short_auto):
    """steps: auto refits the base on every training formula at the end: the checkpoint must hold that base."""
    params = RunParams(name="r", runs_dir=str(tmp_path / "runs"), data=_folder(tmp_path, 200), steps="auto",
                       snapshot_every=60, checkpoint_every=60, hidden=[16], device="cpu", stack="ridge",
                       baselines=False)
    out = run_experiment(params, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stack"] == "ridge" and "small-data settings" in metrics["small_data"]
    assert json.loads((out / STACK).read_text())["kind"] == "ridge"
    progress = load_checkpoint(out / CHECKPOINT)["progress"]  # the refit's checkpoint says it finished
    assert progress["stopped_step"] == progress["step"] == progress["best_step"] >= 1
    run = load_run(out)
    data, _ = run.data()
    ids = data.formula_ids[:30]
    table = run.predict(data.formulas[data.formulas["formula_id"].isin(ids)], top_k=0)
    saved = run.predictions.set_index("formula_id").loc[table["formula_id"]]
    np.testing.assert_allclose(table["prediction"].to_numpy(), saved["y_pred"].to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("kind", ["ridge", "lightgbm"])
def test_the_base_in_torch_equals_the_base(tiny_data_t, kind):
    """What mrl.design adds to the network's value (contents of a few columns, one set of conditions) is the base's
    prediction; ridge keeps its gradient."""
    train, _ = _split(tiny_data_t)
    rows = train.content_matrix()[train.sample_rows()]
    cond = train.condition_values()
    t = np.log10(train.target_values())
    base, _, _ = fit_stack(kind, rows, cond, [True], t, train.properties["formula_id"].to_numpy())
    matrix = rows[:5].toarray()
    columns = np.flatnonzero(matrix.any(axis=0))
    x = torch.tensor(matrix[:, columns], dtype=torch.float64, requires_grad=True)
    local = base.predict_local(x, columns, cond[0])
    expected = base.predict(sp.csr_matrix(matrix), np.repeat(cond[:1], 5, axis=0))
    np.testing.assert_allclose(local.detach().numpy(), expected, rtol=1e-6, atol=1e-9)
    if kind == "ridge":
        local.sum().backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_small_data_off_written_unquoted_in_yaml(tmp_path):
    """YAML 1.1 reads an unquoted ``off`` as false: the parameter still means "off" (and ``on`` "on")."""
    from mrl.params import load_params

    path = tmp_path / "p.yaml"
    path.write_text("small_data: off\n")
    assert load_params(path).small_data == "off"
    path.write_text("small_data: on\n")
    assert load_params(path).small_data == "on"


def test_sweep_params_keep_the_seed_experiment():
    """The sweeps reproduce the seed's table: fixed steps and no stacked base at any data size."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1] / "params"
    for name in ("lab_small", "lab_small_seeds", "quick", "lab_seed_scale"):
        base = yaml.safe_load((root / f"{name}.yaml").read_text())["base"]
        assert isinstance(base["steps"], int) and base["small_data"] is False, name


def test_the_vectors_page_says_what_a_stacked_runs_vectors_are(tmp_path):
    """04_visualize shows the stacked-vectors note for a run with a base model, and nothing for one without."""
    from types import SimpleNamespace

    from mrl import run_outputs
    from mrl.io import write_json
    from mrl.run_files import STACK

    run = SimpleNamespace(path=tmp_path)
    assert run_outputs.show_vectors_note(run) is None  # no stack.json
    write_json({"kind": "none"}, tmp_path / STACK)
    assert run_outputs.show_vectors_note(run) is None
    write_json({"kind": "lightgbm"}, tmp_path / STACK)
    note = run_outputs.show_vectors_note(run)
    assert note and "LightGBM base" in note and "small_data: off" in note
    nb = (Path(__file__).resolve().parents[1] / "notebooks" / "04_visualize.ipynb").read_text()
    assert "show_vectors_note(run)" in nb
