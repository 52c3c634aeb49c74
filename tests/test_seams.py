"""One source of truth: params vs estimator, the constraint table, the checkpoint format, RNG isolation,
signals during training, and the target-transform rule."""
from __future__ import annotations

import inspect
import os
import signal

import numpy as np
import pytest
import torch
from sklearn.base import clone

from mrl.checkpoint import CheckpointError, load_checkpoint
from mrl.estimator import MixtureRegressor
from mrl.params import CHOICES, RunParams, load_params
from mrl.run_files import snapshots_path
from mrl.train import LOSSES, LoopConfig, TrainingInterrupted, resolve_device
from mrl.transforms import resolve_target_transform

FAST = dict(embedding_dim=4, hidden=(16,), batch_size=64, eval_every=50, snapshot_every=50, checkpoint_every=100,
            progress=False, device="cpu")


def _split(data):
    mask = np.arange(data.n_samples) % 5 != 0
    return data.subset(mask), data.subset(~mask)


def _normal(value):
    return list(value) if isinstance(value, tuple) else value


def test_run_params_defaults_equal_the_estimators():
    est_defaults = {k: v.default for k, v in inspect.signature(MixtureRegressor).parameters.items()}
    run_defaults = RunParams().to_dict()
    shared = set(est_defaults) & set(run_defaults)
    assert len(shared) >= 25, shared
    for key in shared:
        est, run = est_defaults[key], run_defaults[key]
        if key == "tie":
            est = est or {}
        assert _normal(est) == _normal(run), key
    # everything the estimator takes is a run parameter, except what only the Python API sets
    assert set(est_defaults) - set(run_defaults) == {"unknown", "progress"}


def test_estimator_is_a_scikit_learn_estimator():
    est = MixtureRegressor(embedding_dim=3, hidden=(8,), tie={"a": "b"})
    copy = clone(est)
    assert copy.get_params() == est.get_params() and copy is not est
    assert est.get_params(deep=True)["embedding_dim"] == 3
    assert est.set_params(steps=7) is est and est.steps == 7


@pytest.mark.parametrize("bad", [{"unknown": "eror"}, {"lr_schedule": "linear"}, {"loss": "l3"},
                                 {"device": "gpu"}, {"steps": 0}, {"dropout": -0.1}])
def test_fit_checks_every_parameter_against_the_shared_table(tiny_data, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        MixtureRegressor(**{**FAST, "steps": 5, **bad}).fit(tiny_data)


def test_unknown_schedule_is_refused_by_the_loop_too():
    cfg = LoopConfig.from_params({**MixtureRegressor().get_params(), "lr_schedule": "linear"})
    from mrl.model import MixtureModel
    from mrl.train import make_optimizer
    with pytest.raises(ValueError, match="lr_schedule"):
        make_optimizer(MixtureModel(n_materials=3, embedding_dim=2), cfg)


def test_loop_config_is_derived_from_the_estimator():
    cfg = LoopConfig.from_params(MixtureRegressor(lr=0.01, embedding_lr=None, steps=9).get_params())
    assert cfg.steps == 9 and cfg.lr == 0.01 and cfg.embedding_lr == 0.01
    assert set(LOSSES) == set(CHOICES["loss"])


def test_checkpoint_loads_weights_only_without_snapshots_and_refuses_other_versions(tiny_data, tmp_path):
    train, ev = _split(tiny_data)
    path = tmp_path / "c.pt"
    est = MixtureRegressor(steps=120, **FAST).fit(train, ev, checkpoint_path=path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["format"] == "mrl-checkpoint" and "snapshots" not in ckpt and "snapshots" not in ckpt["progress"]
    assert snapshots_path(path).exists()
    again = MixtureRegressor.load(path, device="cpu")
    assert np.array_equal(again.predict(ev), est.predict(ev))
    ckpt["version"] = 99
    torch.save(ckpt, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "v99.pt")
    torch.save({"state_dict": {}, "snapshots": {0: np.zeros(3)}}, tmp_path / "old.pt")  # a format-1 file
    with pytest.raises(CheckpointError, match="older mrl"):
        MixtureRegressor.load(tmp_path / "old.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        MixtureRegressor.load(tmp_path / "missing.pt")


def test_fit_leaves_the_global_rng_alone(tiny_data):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    MixtureRegressor(steps=20, dropout=0.1, **FAST).fit(tiny_data)
    assert torch.equal(before, torch.get_rng_state())


def test_sigint_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    train, ev = _split(tiny_data)
    full = MixtureRegressor(steps=300, **FAST).fit(train, ev, checkpoint_path=tmp_path / "a.pt")
    import mrl.train as train_mod

    original = train_mod.run_loop

    def signalled(*args, **kwargs):
        evaluate = kwargs["evaluate"]

        def send_at_150(model):
            out = evaluate(model)
            calls.append(1)
            if len(calls) == 3:  # step 150: not a checkpoint step (every 100)
                os.kill(os.getpid(), signal.SIGINT)
            return out
        kwargs["evaluate"] = send_at_150
        return original(*args, **kwargs)

    calls: list = []
    monkeypatch.setattr("mrl.estimator.run_loop", signalled)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a shell's background job
    with pytest.raises(TrainingInterrupted) as info:
        MixtureRegressor(steps=300, **FAST).fit(train, ev, checkpoint_path=tmp_path / "b.pt")
    assert info.value.step == 150 and info.value.signal_name == "SIGINT"
    assert load_checkpoint(tmp_path / "b.pt")["progress"]["step"] == 150
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    monkeypatch.setattr("mrl.estimator.run_loop", original)
    resumed = MixtureRegressor(steps=300, **FAST).fit(train, ev, checkpoint_path=tmp_path / "b.pt", resume=True)
    assert np.array_equal(full.predict(ev), resumed.predict(ev))
    assert np.array_equal(full.snapshots().filter(like="e").to_numpy(), resumed.snapshots().filter(like="e").to_numpy())


def test_yaml_strings_for_numbers_and_syntax_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("lr: 1e-3\nsteps: 1e4\n")
    params = load_params(tmp_path / "a.yaml")
    assert params.lr == 0.001 and params.steps == 10000
    (tmp_path / "b.yaml").write_text("steps: 10\nhidden: [64,\n")
    with pytest.raises(ValueError, match=r"b\.yaml: line \d+, column \d+: not valid YAML"):
        load_params(tmp_path / "b.yaml")
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_params(tmp_path / "none.yaml")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_target_transform_names_non_positive_values_instead_of_switching():
    y = np.array([0.0, 10.0, 1e5, 3.0])
    with pytest.raises(ValueError, match="formula B = 0.*target_transform: none"):
        resolve_target_transform(y, "auto", labels=["formula A", "formula B", "formula C", "formula D"][1:] + ["x"])
    assert resolve_target_transform(y, "none")[0] == "none"
    assert resolve_target_transform(np.array([1.0, 1e4]), "auto")[0] == "log10"
    assert resolve_target_transform(np.array([-1.0, 2.0]), "auto")[0] == "none"
    with pytest.raises(ValueError, match="log10 needs positive"):
        resolve_target_transform(np.array([-1.0, 2.0]), "log10")


def test_fit_refuses_auto_log_with_a_non_positive_target(tiny_data):
    props = tiny_data.properties.copy()
    props.loc[3, "viscosity"] = 0.0
    props.loc[4, "viscosity"] = props["viscosity"].max() * 1e3  # spans > 2 decades: auto would take log10
    from mrl.data import FormulaData
    data = FormulaData(tiny_data.formulas, props, tiny_data.materials, tiny_data.targets, (), "tiny")
    with pytest.raises(ValueError, match=f"formula {props.loc[3, 'formula_id']} = 0"):
        MixtureRegressor(steps=5, **FAST).fit(data)
