"""Model algebra: linear in contents, zero vectors contribute nothing, aggregation options agree, heads."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mrl.model import MixtureModel, make_batch


def _model(**kw) -> MixtureModel:
    torch.manual_seed(0)
    model = MixtureModel(n_materials=6, embedding_dim=3, init_std=0.5, **kw)
    return model.eval()


def _matrix(rows: list[list[float]]) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(rows, dtype=np.float64))


def test_mixture_is_linear_in_contents():
    model = _model()
    a = [0.7, 0.3, 0, 0, 0, 0]
    b = [0.1, 0, 0.5, 0.4, 0, 0]
    mix = model.mixture(make_batch(_matrix([a, b, list(0.25 * np.array(a) + 0.75 * np.array(b))]), np.arange(3)))
    assert torch.allclose(mix[2], 0.25 * mix[0] + 0.75 * mix[1], atol=1e-6)
    table = model.material_vectors()
    assert torch.allclose(mix[0], 0.7 * table[0] + 0.3 * table[1], atol=1e-6)


def test_pinned_material_has_zero_vector_and_contributes_nothing():
    model = _model(pinned=[0])
    assert torch.count_nonzero(model.material_vectors()[0]) == 0
    with_base = make_batch(_matrix([[0.9, 0.1, 0, 0, 0, 0]]), np.arange(1))
    without = make_batch(_matrix([[0.0, 0.1, 0, 0, 0, 0]]), np.arange(1))
    assert torch.allclose(model(with_base), model(without))


def test_ingredient_order_does_not_matter():
    model = _model()
    index = torch.tensor([0, 3, 5])
    content = torch.tensor([0.5, 0.3, 0.2])
    perm = torch.tensor([2, 0, 1])
    from mrl.model import Batch

    cond = torch.zeros(1, 0)
    one = model(Batch(index, torch.tensor([0]), content, cond))
    two = model(Batch(index[perm], torch.tensor([0]), content[perm], cond))
    assert torch.allclose(one, two, atol=1e-6)


def test_embedding_bag_and_sparse_mm_agree():
    matrix = sp.random(20, 6, density=0.5, random_state=1, format="csr")
    a, b = _model(aggregation="embedding_bag"), _model(aggregation="sparse_mm")
    b.load_state_dict(a.state_dict())
    batch = make_batch(matrix, np.array([3, 1, 1, 7, 19]))
    assert torch.allclose(a.mixture(batch), b.mixture(batch), atol=1e-5)
    expected = torch.as_tensor(matrix[[3, 1, 1, 7, 19]].toarray(), dtype=torch.float32) @ a.material_vectors()
    assert torch.allclose(a.mixture(batch), expected, atol=1e-5)


def test_median_content_scale_lets_a_trace_material_move_the_mixture():
    model = _model(content_scale="median", median_content=[0.8, 0.005, 0.1, 0.1, 0.1, 0.1], activation="tanh")
    scale = torch.exp(model.log_scale)
    assert scale[1] / scale[0] == pytest.approx(0.8 / 0.005, rel=1e-4)


def test_conditions_change_the_prediction_but_not_the_vectors():
    model = _model(n_conditions=1)
    model.fit_scalers(np.array([1.0, 10.0]), np.array([[300.0], [350.0]]), "log10", [True])
    vectors = model.material_vectors().detach().clone()
    m = _matrix([[0.5, 0.5, 0, 0, 0, 0]] * 2)
    out = model(make_batch(m, np.arange(2), np.array([[300.0], [360.0]])))
    assert not torch.isclose(out[0], out[1])
    assert torch.equal(vectors, model.material_vectors())


def test_vft_head_is_monotone_decreasing_in_temperature():
    model = _model(n_conditions=2, head="vft", temperature_index=0)
    model.fit_scalers(np.array([1.0, 5.0]), np.array([[800.0, 0.0], [1600.0, 1.0]]), "none", [False, False])
    temps = np.linspace(600, 2200, 50)
    m = _matrix([[0.5, 0.2, 0.3, 0, 0, 0]] * len(temps))
    cond = np.stack([temps, np.full_like(temps, 0.5)], axis=1)
    batch = make_batch(m, np.arange(len(temps)), cond)
    pred = model(batch).detach().numpy()
    abc = model.vft_parameters(batch).detach().numpy()
    assert np.all(abc[:, 1] > 0)
    assert np.all(np.diff(pred) < 0)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="activation"):
        MixtureModel(3, 2, activation="relu")
    with pytest.raises(ValueError, match="vft head needs a temperature"):
        MixtureModel(3, 2, head="vft")


INTERACTIONS = pytest.mark.parametrize("interaction", ["attention", "transformer", "pooling"])


def _interaction(interaction: str) -> dict:
    """Model options of an interaction; ``"pooling"`` is the transformer with pooled mixing."""
    if interaction == "pooling":
        return {"interaction": "transformer", "interaction_mixing": "pooling"}
    return {"interaction": interaction}


def _attention_model(interaction: str = "attention") -> MixtureModel:
    model = _model(**_interaction(interaction), pinned=[0])
    with torch.no_grad():
        model.interaction.gate.fill_(1.0)  # switch the (zero-initialised) interaction on
    return model


@INTERACTIONS
def test_attention_starts_as_the_plain_sum_then_couples_ingredients(interaction):
    matrix = _matrix([[0.6, 0.3, 0.1, 0, 0, 0], [0.6, 0.3, 0, 0.1, 0, 0]])
    batch = make_batch(matrix, np.arange(2))
    fresh = _model(**_interaction(interaction), pinned=[0])
    plain = _model(pinned=[0])
    plain.load_state_dict({k: v for k, v in fresh.state_dict().items() if not k.startswith("interaction.")})
    assert torch.allclose(fresh.mixture(batch), plain.mixture(batch), atol=1e-7)
    model = _attention_model(interaction)
    mix = model.mixture(batch)
    table = model.material_vectors()
    # the part of material 1's contribution that is not its own vector depends on its partner (2 vs 3)
    rest = mix.detach() - torch.from_numpy(matrix.toarray().astype(np.float32)) @ table.detach()
    assert not torch.allclose(rest[0], rest[1], atol=1e-4)


@INTERACTIONS
def test_attention_is_order_invariant_and_batches_do_not_leak(interaction):
    model = _attention_model(interaction)
    matrix = sp.random(12, 6, density=0.5, random_state=3, format="csr")
    matrix = sp.csr_matrix(matrix.multiply(1 / matrix.sum(axis=1).clip(1e-9)))
    rows = np.flatnonzero(matrix.getnnz(axis=1) > 0)
    together = model(make_batch(matrix, rows))
    alone = torch.cat([model(make_batch(matrix, np.array([r]))) for r in rows])
    assert torch.allclose(together, alone, atol=1e-5)
    from mrl.model import Batch

    index, content = torch.tensor([1, 3, 5]), torch.tensor([0.5, 0.3, 0.2])
    perm = torch.tensor([2, 0, 1])
    cond = torch.zeros(1, 0)
    assert torch.allclose(model(Batch(index, torch.tensor([0]), content, cond)),
                          model(Batch(index[perm], torch.tensor([0]), content[perm], cond)), atol=1e-6)


@INTERACTIONS
def test_attention_pinned_material_still_contributes_nothing_of_its_own(interaction):
    model = _attention_model(interaction)
    alone = make_batch(_matrix([[1.0, 0, 0, 0, 0, 0]]), np.arange(1))
    assert torch.count_nonzero(model.mixture(alone)) == 0


@INTERACTIONS
def test_interaction_on_a_formula_of_one_ingredient(interaction):
    """A lone ingredient attends only to itself: a finite output, the same alone as inside a batch."""
    model = _attention_model(interaction)
    matrix = _matrix([[0, 1.0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0]])
    alone, together = model(make_batch(matrix, np.array([0]))), model(make_batch(matrix, np.arange(2)))
    assert torch.isfinite(alone).all() and torch.allclose(alone, together[:1], atol=1e-6)
    update = model.mixture(make_batch(matrix, np.array([0]))) - model.material_vectors()[1]
    assert torch.count_nonzero(update.detach()) > 0  # its own update still takes part


def test_transformer_layers_heads_and_fractional_encoding():
    from mrl.model import ContentTransformer, fraction_encoding

    model = _model(interaction="transformer", interaction_layers=2, interaction_heads=8)
    assert isinstance(model.interaction, ContentTransformer) and len(model.interaction.blocks) == 2
    assert model.interaction.blocks[0].heads == 8 and model.model_params["interaction_layers"] == 2
    enc = fraction_encoding(torch.tensor([1e-6, 1e-3, 0.5, 1.0]))
    assert enc[0, 0] == 0 and enc[-1, 0] == 1 and not torch.allclose(enc[1], enc[2])
    with pytest.raises(ValueError, match="multiple of heads"):
        _model(interaction="transformer", interaction_heads=7)


@INTERACTIONS
def test_attention_length_buckets_match_one_padded_batch(interaction):
    """Bucketing formulas by length (pad each bucket to its own longest) changes nothing but float rounding, in the
    outputs and in every gradient; formulas of one length, and small batches, take the single padded path."""
    from mrl.model import MIN_BUCKET_FORMULAS, _length_buckets

    rng = np.random.default_rng(0)
    n, n_materials = 200, 30
    dense = np.zeros((n, n_materials))
    for row in range(n):  # 1 to 25 ingredients: very different lengths
        cols = rng.choice(n_materials, size=int(rng.integers(1, 26)), replace=False)
        dense[row, cols] = rng.random(len(cols))
    dense /= dense.sum(1, keepdims=True)
    matrix = sp.csr_matrix(dense)
    batch = make_batch(matrix, rng.permutation(n), rng.random((n, 1)))
    torch.manual_seed(0)
    model = MixtureModel(n_materials=n_materials, embedding_dim=5, init_std=0.5, n_conditions=1,
                         **_interaction(interaction))
    with torch.no_grad():
        model.interaction.gate.fill_(0.8)
    results = {}
    for buckets in (1, 4):
        model.interaction.buckets = buckets
        model.zero_grad()
        out = model(batch)
        out.sum().backward()
        results[buckets] = (out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()})
    assert _length_buckets(batch.offsets, batch.index.shape[0], 4) is not None
    assert torch.allclose(results[1][0], results[4][0], atol=1e-5, rtol=1e-5)
    for name, grad in results[1][1].items():
        assert torch.allclose(grad, results[4][1][name], atol=1e-4, rtol=1e-4), name
    same_length = make_batch(sp.csr_matrix(np.ones((40, 3)) / 3), np.arange(40))
    assert _length_buckets(same_length.offsets, same_length.index.shape[0], 4) is None
    small = make_batch(matrix, np.arange(MIN_BUCKET_FORMULAS * 2 - 1))
    assert _length_buckets(small.offsets, small.index.shape[0], 4) is None


@pytest.mark.parametrize("kw", [dict(), dict(tied_to=[0, 1, 1, 3, 3, 5], pinned=[0]), dict(content_scale="learned"),
                                dict(n_features=2, feature_map="mlp"), dict(activation="none")])
def test_batch_materials_only_give_the_full_table_sum_and_its_gradients(kw):
    """``mixture`` activates only the batch's materials: same values and gradients as the full table's sum."""
    model = _model(**kw)
    if model.feature_map is not None:
        model.set_features(np.random.default_rng(0).normal(size=(6, 2)))
        torch.nn.init.normal_(model.feature_map[-1].weight)
    matrix = sp.csr_matrix(np.array([[0.5, 0, 0.5, 0, 0, 0], [0, 0.2, 0.3, 0, 0.5, 0], [0.1, 0, 0, 0, 0.9, 0]]))
    batch = make_batch(matrix, np.array([0, 2, 1]))
    expected = torch.as_tensor(matrix[[0, 2, 1]].toarray(), dtype=torch.float32) @ model.material_vectors()
    got = model.mixture(batch)
    assert torch.allclose(got, expected, atol=1e-6)
    grads = []
    for value in (got, expected):
        model.zero_grad()
        (value ** 2).sum().backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name
    assert torch.count_nonzero(grads[0]["table"][5]) == 0  # material 5 is in no formula of the batch, tied to none
