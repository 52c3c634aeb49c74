"""Early stopping on an inner validation part of the training data: never eval, exact resume, defaults unchanged."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from mrl.checkpoint import load_checkpoint
from mrl.data import FormulaData
from mrl.estimator import MixtureRegressor
from mrl.params import RunParams

FAST = dict(embedding_dim=4, hidden=(16,), batch_size=64, eval_every=50, snapshot_every=50, checkpoint_every=100,
            progress=False, device="cpu")
NEW = {"features": None, "feature_map": "linear", "residual_weight_decay": 1e-3, "early_stopping": False,
       "validation_fraction": 0.1, "patience": 10}


def _split(data):
    mask = np.arange(data.n_samples) % 5 != 0
    return data.subset(mask), data.subset(~mask)


def test_new_params_have_equal_defaults_in_run_params_and_the_estimator():
    est = {k: v.default for k, v in inspect.signature(MixtureRegressor).parameters.items()}
    run = RunParams().to_dict()
    for key, value in NEW.items():
        assert est[key] == run[key] == value, key


def test_defaults_give_the_numbers_of_before(tiny_data):
    """Predictions of a fixed tiny fit (same machine): unchanged by features and early stopping; re-recorded once when
    ``MixtureModel.mixture`` began activating only the batch's materials (the first value moved in its last bit)."""
    train, ev = _split(tiny_data)
    est = MixtureRegressor(steps=120, dropout=0.1, **{**FAST, "hidden": (16,)}).fit(train, ev)
    pred = est.predict(ev)
    assert [float(x).hex() for x in pred[:5]] == [
        '0x1.e3145c0000000p+5', '0x1.74585e0000000p+6', '0x1.6352d40000000p+7', '0x1.4a698c0000000p+7',
        '0x1.2ab1680000000p+5']
    assert float(pred.sum()).hex() == '0x1.a71fb2b400000p+13'
    assert "val_loss" not in est.history_ and est.best_step_ is None and est.stopped_step_ is None
    est = MixtureRegressor(steps=120, dropout=0.1, content_scale="learned", embedding_lr=0.01,
                           interaction="attention", **FAST).fit(train, ev)
    assert float(est.predict(ev).sum()).hex() == '0x1.a6f6363200000p+13'


def test_early_stopping_restores_the_best_step(tiny_data):
    train, ev = _split(tiny_data)
    est = MixtureRegressor(steps=600, early_stopping=True, patience=2, lr=0.05, **FAST).fit(train, ev)
    hist = est.history_
    assert "val_loss" in hist and hist["val_loss"].notna().all()
    assert est.best_step_ == int(hist.loc[hist["val_loss"].idxmin(), "step"])
    assert est.stopped_step_ == est.n_steps_ == int(hist["step"].iloc[-1])
    if est.stopped_step_ < 600:  # patience ran out: two checks without improvement
        assert est.stopped_step_ == est.best_step_ + 2 * 50
    # the restored model is the best one: its validation loss is the smallest logged
    _, val = est.validation_split(train)
    assert est._validation_loss(val)(est.module_) == pytest.approx(hist["val_loss"].min(), rel=1e-6)


def test_validation_split_is_by_formula_seeded_and_inside_training(tiny_data):
    props = pd_concat_repeat(tiny_data)
    est = MixtureRegressor(validation_fraction=0.2, seed=1)
    tr, val = est.validation_split(props)
    f_tr, f_val = set(tr.properties["formula_id"]), set(val.properties["formula_id"])
    assert not f_tr & f_val and len(f_val) == round(0.2 * props.n_formulas)
    assert tr.n_samples + val.n_samples == props.n_samples
    again = MixtureRegressor(validation_fraction=0.2, seed=1).validation_split(props)[1]
    assert set(again.properties["formula_id"]) == f_val
    other = MixtureRegressor(validation_fraction=0.2, seed=2).validation_split(props)[1]
    assert set(other.properties["formula_id"]) != f_val


def pd_concat_repeat(data: FormulaData) -> FormulaData:
    """The data with every formula measured twice (two rows in properties)."""
    import pandas as pd

    props = pd.concat([data.properties, data.properties], ignore_index=True)
    return FormulaData(data.formulas, props, data.materials, data.targets, data.conditions, data.name)


def test_stopping_never_reads_eval(tiny_data):
    train, ev = _split(tiny_data)
    kw = dict(steps=400, early_stopping=True, patience=2, lr=0.05, **FAST)
    a = MixtureRegressor(**kw).fit(train, ev)
    props = ev.properties.copy()
    props["viscosity"] = props["viscosity"].to_numpy()[::-1] * 7.0
    shuffled = FormulaData(ev.formulas, props, ev.materials, ev.targets, ev.conditions, ev.name)
    b = MixtureRegressor(**kw).fit(train, shuffled)
    c = MixtureRegressor(**kw).fit(train)
    assert a.best_step_ == b.best_step_ == c.best_step_ and a.stopped_step_ == b.stopped_step_
    assert np.array_equal(a.predict(ev), b.predict(ev)) and np.array_equal(a.predict(ev), c.predict(ev))
    assert not a.history_["eval_mae"].equals(b.history_["eval_mae"])  # eval was monitored, and differed


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_after", [3, 7])
def test_resume_with_early_stopping_is_exact(tiny_data, tmp_path, monkeypatch, stop_after):
    train, ev = _split(tiny_data)
    kw = dict(steps=500, early_stopping=True, patience=4, lr=0.02, **FAST)
    full = MixtureRegressor(**kw).fit(train, ev, checkpoint_path=tmp_path / "a.pt")
    import mrl.train as train_mod

    original = train_mod.run_loop

    def interrupted(*args, **kwargs):
        validate = kwargs["validate"]

        def stop(model):
            calls.append(1)
            if len(calls) == stop_after + 1:  # the first call checks the start (step 0)
                raise _Interrupt
            return validate(model)
        kwargs["validate"] = stop
        return original(*args, **kwargs)

    calls: list = []
    monkeypatch.setattr("mrl.estimator.run_loop", interrupted)
    with pytest.raises(_Interrupt):
        MixtureRegressor(**kw).fit(train, ev, checkpoint_path=tmp_path / "b.pt")
    monkeypatch.setattr("mrl.estimator.run_loop", original)
    ckpt = load_checkpoint(tmp_path / "b.pt")
    assert ckpt["training"]["best"]["state_dict"] is not None
    resumed = MixtureRegressor(**kw).fit(train, ev, checkpoint_path=tmp_path / "b.pt", resume=True)
    assert (resumed.best_step_, resumed.stopped_step_) == (full.best_step_, full.stopped_step_)
    assert np.array_equal(full.predict(ev), resumed.predict(ev))
    assert full.history_[["step", "val_loss"]].equals(resumed.history_[["step", "val_loss"]])
    # a finished run resumes to itself, and the saved model is the best state
    again = MixtureRegressor(**kw).fit(train, ev, checkpoint_path=tmp_path / "a.pt", resume=True)
    assert np.array_equal(again.predict(ev), full.predict(ev))
    loaded = MixtureRegressor.load(tmp_path / "a.pt", device="cpu")
    assert np.array_equal(loaded.predict(ev), full.predict(ev)) and loaded.best_step_ == full.best_step_


@pytest.mark.parametrize("bad", [{"validation_fraction": 0.0}, {"validation_fraction": 1.0}, {"patience": 0}])
def test_bad_stopping_params_are_refused(tiny_data, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        MixtureRegressor(steps=5, early_stopping=True, **bad, **FAST).fit(tiny_data)
    with pytest.raises(ValueError, match=next(iter(bad))):
        RunParams(**bad).validate()
