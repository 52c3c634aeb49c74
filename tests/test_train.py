"""Training: error goes down, same params give same numbers, resume equals an uninterrupted run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mrl.estimator import MixtureRegressor
from mrl.metrics import regression_metrics
from mrl.splits import make_split

FAST = dict(embedding_dim=4, hidden=(32, 32), batch_size=64, eval_every=50, snapshot_every=100,
            checkpoint_every=100, progress=False, device="cpu")


def _split(data):
    split = make_split(data, "random", 0.25, seed=0)
    return data.subset(split == "train"), data.subset(split == "eval")


def test_training_lowers_eval_error(tiny_data):
    train, ev = _split(tiny_data)
    short = MixtureRegressor(steps=5, **FAST).fit(train, ev)
    long = MixtureRegressor(steps=800, **FAST).fit(train, ev)
    y = ev.target_values()
    assert regression_metrics(y, long.predict(ev))["mae"] < 0.7 * regression_metrics(y, short.predict(ev))["mae"]
    assert long.history_["eval_mae"].iloc[-1] < long.history_["eval_mae"].iloc[0]


def test_same_params_same_numbers(tiny_data):
    train, ev = _split(tiny_data)
    a = MixtureRegressor(steps=150, seed=3, **FAST).fit(train, ev).predict(ev)
    b = MixtureRegressor(steps=150, seed=3, **FAST).fit(train, ev).predict(ev)
    c = MixtureRegressor(steps=150, seed=4, **FAST).fit(train, ev).predict(ev)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


class _Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted(tiny_data, tmp_path, monkeypatch):
    train, ev = _split(tiny_data)
    full = MixtureRegressor(steps=300, **FAST).fit(train, ev, checkpoint_path=tmp_path / "a.pt")

    import mrl.train as train_mod

    original = train_mod.run_loop

    def interrupted(*args, **kwargs):
        evaluate = kwargs["evaluate"]

        def stop_at_250(model):
            out = evaluate(model)
            if len(calls) == 4:  # evaluations at 50..200 done, checkpoint at 200 written
                raise _Interrupt
            calls.append(1)
            return out
        kwargs["evaluate"] = stop_at_250
        return original(*args, **kwargs)

    calls: list = []
    monkeypatch.setattr("mrl.estimator.run_loop", interrupted)
    with pytest.raises(_Interrupt):
        MixtureRegressor(steps=300, **FAST).fit(train, ev, checkpoint_path=tmp_path / "b.pt")
    monkeypatch.setattr("mrl.estimator.run_loop", original)
    resumed = MixtureRegressor(steps=300, **FAST).fit(train, ev, checkpoint_path=tmp_path / "b.pt", resume=True)
    assert resumed.n_steps_ == 300
    assert np.array_equal(full.predict(ev), resumed.predict(ev))
    assert np.array_equal(full.embeddings().filter(like="e").to_numpy(),
                          resumed.embeddings().filter(like="e").to_numpy())
    assert full.history_[["step", "eval_mae"]].equals(resumed.history_[["step", "eval_mae"]])


def test_checkpoint_rebuilds_the_predictor(tiny_data_t, tmp_path):
    train, ev = _split(tiny_data_t)
    est = MixtureRegressor(steps=100, inverse_conditions=["T"], **FAST).fit(train, checkpoint_path=tmp_path / "c.pt")
    loaded = MixtureRegressor.load(tmp_path / "c.pt", device="cpu")
    assert np.array_equal(est.predict(ev), loaded.predict(ev))
    assert loaded.conditions_ == ["T"]


def test_predict_requires_conditions_and_known_materials(tiny_data_t, tiny_data):
    est = MixtureRegressor(steps=20, **FAST).fit(tiny_data_t)
    with pytest.raises(ValueError, match=r"condition column\(s\) \['T'\]"):
        est.predict(tiny_data)
    other = tiny_data_t.formulas.assign(material_id=tiny_data_t.formulas["material_id"].str.replace("M0", "Q"))
    from mrl.data import FormulaData

    strange = FormulaData(other, tiny_data_t.properties, tiny_data_t.materials, ("viscosity",), ("T",), "strange")
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        est.predict(strange)


def test_pin_origin_auto_pins_the_base_material(tiny_data):
    est = MixtureRegressor(steps=30, **FAST).fit(tiny_data)
    emb = est.embeddings()
    totals = tiny_data.formulas.groupby("material_id")["content"].sum()
    pinned = emb.loc[emb["pinned"], "material_id"].tolist()
    assert pinned == [totals.idxmax()]
    assert emb.loc[emb["pinned"], "norm"].iloc[0] == 0.0


def test_data_test_rows_stay_out_of_random_splits(tiny_data):
    from mrl.data import FormulaData

    props = tiny_data.properties.assign(split=np.where(np.arange(tiny_data.n_samples) % 5 == 0, "test", "train"))
    data = FormulaData(tiny_data.formulas, props, tiny_data.materials, tiny_data.targets)
    labels = make_split(data, "random", 0.3, seed=1)
    assert set(labels[props["split"].eq("test")]) == {"test"}
    assert {"train", "eval"} <= set(labels[~props["split"].eq("test")])


def test_content_scale_uses_training_formulas_only(tiny_data):
    train, ev = _split(tiny_data)
    est = MixtureRegressor(steps=1, content_scale="median", **FAST).fit(train)
    medians = train.formulas.groupby("material_id")["content"].median()
    mid = medians.index[0]
    i = int(np.flatnonzero(est.materials_["material_id"] == mid)[0])
    scale = float(torch.exp(est.module_.log_scale[i].detach()))
    assert scale == pytest.approx(1.0 / max(medians[mid], 1e-3), rel=1e-5)


def test_rms_content_scale_follows_the_root_mean_square(tiny_data):
    est = MixtureRegressor(steps=1, content_scale="rms", **FAST).fit(tiny_data)
    content = tiny_data.formulas.groupby("material_id")["content"]
    rms = np.sqrt(content.apply(lambda c: float(np.mean(c.to_numpy() ** 2))))
    scale = torch.exp(est.module_.log_scale.detach()).numpy()
    expected = 1.0 / np.clip(est.materials_["material_id"].map(rms).to_numpy(), 1e-3, None)
    np.testing.assert_allclose(scale, expected, rtol=1e-5)
    assert not np.allclose(rms.to_numpy(), content.median().to_numpy(), rtol=1e-3)  # not the median under a new name


@pytest.mark.parametrize("loss", ["l1", "huber"])
def test_loss_option_changes_training_and_checks_its_name(tiny_data, loss):
    train, ev = _split(tiny_data)
    mse = MixtureRegressor(steps=200, **FAST).fit(train).predict(ev)
    other = MixtureRegressor(steps=200, loss=loss, **FAST).fit(train)
    assert not np.allclose(mse, other.predict(ev))
    y = ev.target_values()
    assert regression_metrics(y, other.predict(ev))["mae"] < np.abs(y - np.median(y)).mean()
    with pytest.raises(ValueError, match="loss must be one of"):
        MixtureRegressor(steps=1, loss="hinge", **FAST).fit(train)


@pytest.mark.parametrize("options", [{"interaction": "attention"},
                                     {"interaction": "transformer", "interaction_layers": 2, "interaction_width": 16,
                                      "interaction_heads": 2},
                                     {"interaction": "transformer", "interaction_mixing": "pooling",
                                      "interaction_width": 16}])
def test_attention_interaction_trains_and_reloads(tiny_data, tmp_path, options):
    train, ev = _split(tiny_data)
    est = MixtureRegressor(steps=200, **options, **FAST).fit(train, checkpoint_path=tmp_path / "a.pt")
    assert float(est.module_.interaction.gate.detach()) != 0.0  # the interaction took part in training
    loaded = MixtureRegressor.load(tmp_path / "a.pt", device="cpu")
    assert loaded.module_.model_params == est.module_.model_params
    assert np.array_equal(est.predict(ev), loaded.predict(ev))
    y = ev.target_values()
    assert regression_metrics(y, est.predict(ev))["mae"] < np.abs(y - np.median(y)).mean()


def _two_popular(data) -> tuple[str, str]:
    usage = data.formulas.groupby("material_id").size().sort_values()
    return usage.index[-2], usage.index[-3]  # the most used is the auto-pinned base


def test_tie_shares_one_vector_and_pin_fixes_materials_at_the_origin(tiny_data, tmp_path):
    a, b = _two_popular(tiny_data)
    est = MixtureRegressor(steps=150, tie={a: b}, pin=[a], **FAST)
    with pytest.raises(ValueError, match="not in the data's vocabulary"):
        MixtureRegressor(steps=1, pin=["NOPE"], **FAST).fit(tiny_data)
    with pytest.raises(ValueError, match="tie each material straight"):
        MixtureRegressor(steps=1, tie={a: b, b: "M000"}, **FAST).fit(tiny_data)
    tied = MixtureRegressor(steps=150, tie={a: b}, **FAST).fit(tiny_data, checkpoint_path=tmp_path / "t.pt")
    emb = tied.embeddings().set_index("material_id")
    vec = [c for c in emb.columns if c.startswith("e") and c[1:].isdigit()]
    assert np.array_equal(emb.loc[a, vec].to_numpy(float), emb.loc[b, vec].to_numpy(float))
    assert emb.loc[a, "tied_to"] == b and np.linalg.norm(emb.loc[b, vec].to_numpy(float)) > 0
    i = int(np.flatnonzero(tied.materials_["material_id"] == a)[0])
    raw = tied.module_.table.detach()[i]
    assert torch.allclose(raw, torch.zeros_like(raw), atol=1e-2)  # a's own row is unused: it only decays
    loaded = MixtureRegressor.load(tmp_path / "t.pt", device="cpu")
    assert np.array_equal(loaded.predict(tiny_data), tied.predict(tiny_data))
    est.tie = None
    pinned = est.fit(tiny_data).embeddings().set_index("material_id")
    assert pinned.loc[a, "norm"] == 0.0 and pinned.loc[a, "pinned"] and pinned["pinned"].sum() == 2
    assert pinned.loc[b, "norm"] > 0


def test_run_params_carry_pin_and_tie_to_the_estimator():
    from mrl.params import RunParams

    params = RunParams.from_dict({"pin": ["M001"], "tie": {"M002": "M003"}})
    est = MixtureRegressor.from_params(params)
    assert list(est.pin) == ["M001"] and dict(est.tie) == {"M002": "M003"}
    with pytest.raises(TypeError, match="tie must be dict"):
        RunParams.from_dict({"tie": ["M002", "M003"]})
