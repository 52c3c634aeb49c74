"""Tests of the representation-analysis layer (mrl.analysis, mrl.plots) on small hand-made embeddings."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from matplotlib.figure import Figure

from mrl import analysis as A
from mrl import plots as P


def make_emb(V: np.ndarray, family=None, n_formulas=None, median_content=None, ids=None) -> pd.DataFrame:
    V = np.asarray(V, float)
    n = len(V)
    ids = ids if ids is not None else [f"M{i:03d}" for i in range(n)]
    out = pd.DataFrame({"material_id": ids, "name": [f"mat {i}" for i in ids]})
    if family is not None:
        out["family"] = family
    out["n_formulas"] = n_formulas if n_formulas is not None else np.full(n, 5)
    out["median_content"] = median_content if median_content is not None else np.full(n, 0.1)
    out["norm"] = np.linalg.norm(V, axis=1)
    for j in range(V.shape[1]):
        out[f"e{j}"] = V[:, j]
    return out


def blobs(n_fam: int = 4, per: int = 10, d: int = 6, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_fam, d)) * 3
    V = np.repeat(centres, per, axis=0) + rng.normal(scale=spread, size=(n_fam * per, d))
    fam = np.repeat([f"fam{i}" for i in range(n_fam)], per)
    return V, fam


@pytest.fixture(scope="module")
def hand_emb() -> pd.DataFrame:
    V = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.5, 0.0]])
    return make_emb(V, family=["a", "a", "b", "c", "a"], ids=["water", "ethanol", "resin", "acid", "glycol"])


# --- basics -----------------------------------------------------------------------------------------------------------
def test_vectors_orders_columns_numerically():
    emb = make_emb(np.arange(24.0).reshape(2, 12))
    shuffled = emb[["material_id"] + [f"e{j}" for j in (10, 2, 0, 11, 1, 3, 4, 5, 6, 7, 8, 9)]]
    np.testing.assert_array_equal(A.vectors(shuffled), np.arange(24.0).reshape(2, 12))


def test_nearest_neighbors_cosine(hand_emb):
    nn = A.nearest_neighbors(hand_emb, "water", k=3, metric="cosine")
    assert "water" not in set(nn["material_id"])
    # glycol is exactly parallel (distance 0), ethanol nearly so, then resin (orthogonal, 1); acid (opposite, 2) last
    assert list(nn["material_id"]) == ["glycol", "ethanol", "resin"]
    assert nn["distance"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert nn["distance"].iloc[2] == pytest.approx(1.0)
    assert list(nn["rank"]) == [1, 2, 3]
    assert {"material_id", "name", "family", "distance", "rank"} <= set(nn.columns)


def test_nearest_neighbors_euclidean(hand_emb):
    nn = A.nearest_neighbors(hand_emb, "water", k=10, metric="euclidean")
    assert len(nn) == 4  # k clipped, itself excluded
    assert list(nn["material_id"]) == ["glycol", "ethanol", "resin", "acid"]
    np.testing.assert_allclose(nn["distance"], [0.5, np.hypot(1, 0.1), np.sqrt(2), 2.0])


def test_nearest_neighbors_unknown_id(hand_emb):
    with pytest.raises(KeyError, match="did you mean 'water'"):
        A.nearest_neighbors(hand_emb, "watr")
    with pytest.raises(ValueError):
        A.nearest_neighbors(hand_emb, "water", metric="manhattan")


def test_nearest_neighbors_refuses_the_pinned_base_by_cosine_but_not_euclidean(hand_emb):
    emb = make_emb(np.vstack([[0.0, 0.0], A.vectors(hand_emb)]), ids=["base", *hand_emb["material_id"]])
    emb["pinned"] = emb["material_id"] == "base"
    with pytest.raises(ValueError, match=r"(?s)'base' is pinned at the origin.*no neighbours.*euclidean"):
        A.nearest_neighbors(emb, "base")
    nn = A.nearest_neighbors(emb, "base", k=2, metric="euclidean")
    assert list(nn["material_id"]) == ["glycol", "water"] and nn["distance"].tolist() == [0.5, 1.0]


def test_nearest_neighbors_leaves_zero_vectors_out_of_cosine_lists(hand_emb):
    emb = make_emb(np.vstack([A.vectors(hand_emb), [0.0, 0.0]]), ids=[*hand_emb["material_id"], "unused"],
                   n_formulas=[5, 5, 5, 5, 5, 0])
    emb["pinned"] = False
    nn = A.nearest_neighbors(emb, "resin", k=10)
    assert "unused" not in set(nn["material_id"]) and len(nn) == 4  # itself and the zero vector left out
    assert "unused" in set(A.nearest_neighbors(emb, "resin", k=10, metric="euclidean")["material_id"])
    with pytest.raises(ValueError, match="'unused' has a zero vector.*used in 0 formulas"):
        A.nearest_neighbors(emb, "unused")


@pytest.mark.parametrize("k", [0, -3])
def test_nearest_neighbors_needs_k_of_at_least_one(hand_emb, k):
    with pytest.raises(ValueError, match="k must be at least 1"):
        A.nearest_neighbors(hand_emb, "water", k=k)


def test_table_accessors_name_what_they_return(hand_emb):
    emb = hand_emb.drop(columns=["name"]).assign(family=["a", None, "b", "c", "a"])
    assert A.material_ids(emb).tolist() == ["water", "ethanol", "resin", "acid", "glycol"]
    assert A.material_names(emb).tolist() == A.material_ids(emb).tolist()  # no name column: the ids
    assert A.families(emb).tolist() == ["a", "unknown", "b", "c", "a"]
    assert A.families(emb.drop(columns="family")) is None
    np.testing.assert_array_equal(A.usage(emb.drop(columns="n_formulas")), np.ones(5))
    assert np.isnan(A.median_contents(emb.drop(columns="median_content"))).all()
    aligned = A.align(pd.Series({"glycol": 2.0, "water": 1.0}), emb)
    np.testing.assert_array_equal(aligned[[0, 4]], [1.0, 2.0])
    assert np.isnan(aligned[1:4]).all() and A.align(None, emb) is None


def test_top_pairs(hand_emb):
    pairs = A.top_pairs(hand_emb, n=2, metric="cosine")
    assert len(pairs) == 2
    assert {pairs["material_id_a"].iloc[0], pairs["material_id_b"].iloc[0]} == {"water", "glycol"}
    assert (pairs["material_id_a"] != pairs["material_id_b"]).all()
    assert pairs["distance"].is_monotonic_increasing
    # min_norm removes glycol (norm 0.5); the closest pair becomes water-ethanol
    pairs = A.top_pairs(hand_emb, n=1, metric="euclidean", min_norm=0.9)
    assert {pairs["material_id_a"].iloc[0], pairs["material_id_b"].iloc[0]} == {"water", "ethanol"}
    # all pairs for 5 materials = 10, no duplicates
    allp = A.top_pairs(hand_emb, n=100, metric="euclidean")
    assert len(allp) == 10
    assert len({frozenset(p) for p in zip(allp["material_id_a"], allp["material_id_b"])}) == 10


# --- projections ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
@pytest.mark.parametrize("n", [1, 2, 3, 12])
def test_project_shapes(method, n):
    if method == "umap" and n > 3:
        pytest.skip("see test_project_umap (slow)")  # n <= 3 falls back to PCA without importing umap
    X = np.random.default_rng(0).normal(size=(n, 5))
    kw = {"max_iter": 250} if method == "tsne" else {}  # sklearn's minimum; keeps the test fast
    Y = A.project(X, method=method, seed=0, **kw)
    assert Y.shape == (n, 2)
    assert np.isfinite(Y).all()


@pytest.mark.slow
def test_project_umap(request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("UMAP's numba compilation takes 20-40 s per process; run with -m slow")
    X = np.random.default_rng(0).normal(size=(12, 5))
    for n in (4, 12):
        Y = A.project(X[:n], method="umap", seed=0, n_neighbors=15)
        assert Y.shape == (n, 2) and np.isfinite(Y).all()


def test_project_raw_and_errors():
    X = np.random.default_rng(1).normal(size=(7, 2))
    np.testing.assert_array_equal(A.project(X, "raw"), X)
    assert A.project(X[:, :1], "raw").shape == (7, 2)
    with pytest.raises(ValueError, match="raw"):
        A.project(np.zeros((3, 4)), "raw")
    with pytest.raises(ValueError, match="unknown projection"):
        A.project(X, "mds")
    assert A.project(np.zeros((0, 3))).shape == (0, 2)


# --- clusters ---------------------------------------------------------------------------------------------------------
def test_cluster_and_summary():
    V, fam = blobs(n_fam=3, per=8)
    emb = make_emb(V, family=fam, n_formulas=np.arange(24) + 1)
    for method in ("kmeans", "hdbscan"):
        labels = A.cluster(emb, method=method, n_clusters=3, seed=0)
        assert labels.shape == (24,)
        assert pd.crosstab(labels, fam).gt(0).sum(axis=1).max() == 1  # every cluster is one family
    infl = pd.Series(np.linspace(0, 1, 24), index=emb["material_id"])
    summ = A.cluster_summary(emb, labels, influence=infl)
    assert len(summ) == 3 and summ["size"].sum() == 24
    assert (summ["top_family_share"] == 1.0).all()
    assert summ["families"].str.endswith("100%").all()
    assert summ["mean_influence"].notna().all()
    assert summ["total_usage"].sum() == pytest.approx(emb["n_formulas"].sum())
    assert A.cluster(emb.iloc[:2], n_clusters=8).shape == (2,)


# --- influence --------------------------------------------------------------------------------------------------------
def linear_setup():
    """4 materials, weights w; material 3 is used but has weight 0."""
    w = np.array([2.0, -1.0, 5.0, 0.0])
    C = sp.csr_matrix(np.array([
        [0.5, 0.5, 0.0, 0.0],
        [0.2, 0.0, 0.3, 0.5],
        [0.0, 0.6, 0.0, 0.4],
        [0.1, 0.1, 0.1, 0.7],
        [0.0, 0.0, 1.0, 0.0],  # material 2 alone: cannot change under renormalisation
    ]))
    emb = make_emb(np.c_[w, np.zeros(4)], n_formulas=[3, 3, 3, 3])
    calls = []

    def predict(X, cond):
        calls.append(X.shape[0])
        assert cond is None
        return X @ w

    return w, C, emb, predict, calls


def test_influence_linear_no_renormalisation():
    w, C, emb, predict, calls = linear_setup()
    res = A.influence(emb, predict, C, delta=0.01, renormalise=False)
    # the change is exactly delta * w_j for every formula using j
    np.testing.assert_allclose(res["influence"], 0.01 * np.abs(w), atol=1e-12)
    np.testing.assert_allclose(res["effect"], 0.01 * w, atol=1e-12)
    assert res.loc[3, "influence"] == pytest.approx(0.0, abs=1e-12)  # zero-influence material
    np.testing.assert_array_equal(res["n_evaluated"], [3, 3, 3, 3])
    assert len(calls) <= 1 + len(w)  # batched: base + perturbed rows in few calls


def test_influence_linear_renormalised():
    w, C, emb, predict, _ = linear_setup()
    delta = 0.01
    res = A.influence(emb, predict, C, delta=delta)
    dense = C.toarray()
    for j in range(4):
        rows = [r for r in range(len(dense)) if dense[r, j] > 0 and dense[r, j] < 1]
        # y' - y = delta * (w_j - sum_{i != j} x_i w_i / (1 - x_j))
        ch = [delta * (w[j] - (dense[r] @ w - dense[r, j] * w[j]) / (1 - dense[r, j])) for r in rows]
        assert res.loc[j, "influence"] == pytest.approx(np.mean(np.abs(ch)), rel=1e-9)
        assert res.loc[j, "effect"] == pytest.approx(np.mean(ch), rel=1e-9)
        assert res.loc[j, "n_evaluated"] == len(rows)
    # a material identical to what it replaces has zero influence: make all weights equal
    flat = lambda X, cond: X @ np.full(4, 3.0)  # noqa: E731
    res = A.influence(emb, flat, C, delta=delta)
    np.testing.assert_allclose(res["influence"], 0.0, atol=1e-12)


def test_influence_sampling_conditions_and_proxies():
    rng = np.random.default_rng(0)
    n_f, n_m = 300, 6
    dense = rng.random((n_f, n_m)) * (rng.random((n_f, n_m)) < 0.6)
    dense[:, 0] += 0.01
    dense /= dense.sum(1, keepdims=True)
    C = sp.csr_matrix(dense)
    cond = rng.normal(size=(n_f, 1))
    V = rng.normal(size=(n_m, 3))
    emb = make_emb(V, n_formulas=(dense > 0).sum(0), median_content=np.full(n_m, 0.2))

    def predict(X, c):
        assert c.shape == (X.shape[0], 1)
        return np.asarray(X @ V[:, 0]).ravel() * (1 + c[:, 0] ** 2)

    res = A.influence(emb, predict, C, conditions=cond, max_formulas=50, seed=1)
    assert (res["n_evaluated"] <= 50).all() and (res["n_evaluated"] > 0).all()
    np.testing.assert_allclose(res["dose_norm"], np.linalg.norm(V, axis=1) * 0.2)
    again = A.influence(emb, predict, C, conditions=cond, max_formulas=50, seed=1)
    pd.testing.assert_frame_equal(res, again)
    proxies = A.influence(emb)
    assert "influence" not in proxies.columns and np.allclose(proxies["norm"], np.linalg.norm(V, axis=1))
    check = A.origin_check(res)
    assert {"spearman_norm", "spearman_dose_norm", "low_norm_low_influence", "verdict"} <= set(check)
    assert isinstance(check["verdict"], str) and check["verdict"]
    assert "not measured" in A.origin_check(proxies)["verdict"]


def test_origin_check_holds_for_norm_proportional_influence():
    V = np.outer(np.linspace(0.01, 2, 20), [1.0, 0.5])
    emb = make_emb(V)
    infl = A.influence(emb)
    infl["influence"] = infl["norm"] * 0.3
    res = A.origin_check(infl)
    assert res["spearman_norm"] == pytest.approx(1.0)
    assert res["low_norm_low_influence"] == 1.0
    assert res["verdict"].startswith("Holds")


# --- truth scores -----------------------------------------------------------------------------------------------------
def test_truth_scores_separated_blobs():
    V, fam = blobs(n_fam=4, per=10, d=6)
    rng = np.random.default_rng(3)
    thick = V @ rng.normal(size=6)  # a linear latent: the probe must recover it
    emb = make_emb(V, family=["observed"] * 40, median_content=np.full(40, 0.1))
    truth = pd.DataFrame({"material_id": emb["material_id"], "family": fam, "thickening": thick,
                          "size_norm": np.linalg.norm(V, axis=1)})
    res = A.truth_scores(emb, truth, k=5, seed=0)
    assert res["neighbour_agreement"] == pytest.approx(1.0)
    assert res["neighbour_chance"] == pytest.approx(9 / 39)
    assert res["purity"] == pytest.approx(1.0) and res["ari"] == pytest.approx(1.0)
    assert res["probe_r2"]["thickening"] > 0.95
    assert res["spearman_norm"]["size_norm"] == pytest.approx(1.0)
    assert res["n_scored"] == 40


def test_truth_scores_random_vectors_near_chance():
    rng = np.random.default_rng(0)
    fam = np.repeat(["a", "b", "c", "d"], 50)
    emb = make_emb(rng.normal(size=(200, 8)))
    truth = pd.DataFrame({"material_id": emb["material_id"], "family": fam, "z": rng.normal(size=200)})
    res = A.truth_scores(emb, truth, k=10)
    assert abs(res["neighbour_agreement"] - res["neighbour_chance"]) < 0.06
    assert res["ari"] < 0.1
    assert res["probe_r2"]["z"] < 0.1


def test_truth_scores_skips_unused_materials():
    V, fam = blobs(n_fam=2, per=6, d=3)
    use = np.r_[np.full(10, 3), 0, 0]
    V[10:] = np.random.default_rng(0).normal(size=(2, 3)) * 10  # unused: random init, must be ignored
    emb = make_emb(V, n_formulas=use)
    truth = pd.DataFrame({"material_id": emb["material_id"], "family": fam})
    res = A.truth_scores(emb, truth, k=3)
    assert res["n_scored"] == 10 and res["neighbour_agreement"] == pytest.approx(1.0)


# --- baseline, evolution ----------------------------------------------------------------------------------------------
def test_baseline_representation_shape():
    C = sp.random(50, 12, density=0.3, random_state=0, format="csr")
    B = A.baseline_representation(C, dim=4, seed=0)
    assert B.shape == (12, 4) and np.isfinite(B).all()
    assert A.baseline_representation(C[:3], dim=8).shape == (12, 8)  # more dims than formulas: zero-padded


def make_snapshots(steps, V_by_step) -> pd.DataFrame:
    frames = []
    for s, V in zip(steps, V_by_step):
        f = pd.DataFrame(V, columns=[f"e{j}" for j in range(V.shape[1])])
        f.insert(0, "material_id", [f"M{i:03d}" for i in range(len(V))])
        f.insert(0, "step", s)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def test_evolution_frames_single_projection():
    V = np.random.default_rng(0).normal(size=(15, 5))
    steps = list(range(0, 200, 10))
    snaps = make_snapshots(steps, [V] * len(steps))
    fr = A.evolution_frames(snaps, n_frames=5)
    assert fr["step"].nunique() == 5
    assert fr["step"].min() == 0 and fr["step"].max() == 190
    xy = fr[["x", "y"]].to_numpy().reshape(5, 15, 2)
    for i in range(1, 5):
        np.testing.assert_array_equal(xy[i], xy[0])
    np.testing.assert_allclose(xy[-1], A.project(V, "pca"))
    # growing vectors: the same projection shows them moving outwards (an independent PCA per step would not)
    grow = make_snapshots([0, 1, 2], [V * 0.1, V * 0.5, V])
    fr = A.evolution_frames(grow, method="pca", center=False)
    spread = fr.groupby("step")[["x", "y"]].apply(lambda g: np.linalg.norm(g.to_numpy(), axis=1).mean())
    assert spread.is_monotonic_increasing
    two = A.evolution_frames(make_snapshots([0, 5], [V[:, :2], V[:, :2] * 2]), steps=[5])
    np.testing.assert_allclose(two[["x", "y"]].to_numpy(), V[:, :2] * 2)
    with pytest.raises(KeyError):
        A.evolution_frames(grow, steps=[7])


def test_spread_stats():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=4)
    line = np.outer(rng.normal(size=20), direction)
    spread = rng.normal(size=(20, 4))
    st = A.spread_stats(make_snapshots([0, 1], [line, spread]))
    assert list(st["step"]) == [0, 1]
    assert st["pc1_explained"].iloc[0] == pytest.approx(1.0)
    assert st["pc1_explained"].iloc[1] < 0.6
    assert st["mean_norm"].iloc[1] == pytest.approx(np.linalg.norm(spread, axis=1).mean())


# --- plots ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plot_emb():
    V, fam = blobs(n_fam=3, per=5, d=4)
    use = np.arange(15)  # first material unused
    return make_emb(V, family=fam, n_formulas=use)


def test_material_map_variants(plot_emb):
    xy = A.project(A.vectors(plot_emb), "pca")
    infl = A.influence(plot_emb)
    for color_by in ("family", "n_formulas", "influence"):
        fig = P.material_map(xy, plot_emb, color_by=color_by, influence=infl.rename(columns={"norm": "influence"}),
                             annotate=3, origin=(0, 0))
        assert isinstance(fig, Figure)
    with pytest.raises(ValueError):
        P.material_map(xy, plot_emb, color_by="influence")
    fig = P.material_map(xy, plot_emb.drop(columns=["family"]))
    assert isinstance(fig, Figure)


def test_material_map_labels_a_point_in_the_corner(plot_emb):
    """A label that would leave the axes up-right of its point goes to another side instead of being dropped."""
    xy = np.column_stack([np.arange(15.0), np.arange(15.0)])  # the last point sits in the top-right corner
    fig = P.material_map(xy, plot_emb, annotate=15)
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert any(label.endswith(str(plot_emb["material_id"].iloc[-1])) for label in labels) and len(labels) == 15


def test_material_map_html_offline(plot_emb, tmp_path):
    xy = A.project(A.vectors(plot_emb), "pca")
    html = P.material_map_html(xy, plot_emb)
    for mid in plot_emb["material_id"]:
        assert mid in html
    # plotly.js is inlined: no <script src=...> tag (plotly.js itself mentions CDN urls in strings, so only tags count)
    assert re.search(r"<script[^>]*\ssrc\s*=", html, flags=re.I) is None
    assert len(html) > 1_000_000 and "Plotly.newPlot" in html
    html2 = P.material_map_html(xy, plot_emb, color_by="n_formulas")
    out = P.save_html(html2, tmp_path / "map.html")
    assert "M001" in out.read_text()


def test_evolution_plots(plot_emb, tmp_path):
    V = A.vectors(plot_emb)
    snaps = make_snapshots([0, 10, 20, 30], [V * 0.1, V * 0.4, V * 0.8, V])
    frames = A.evolution_frames(snaps)
    assert isinstance(P.evolution_grid(frames, plot_emb), Figure)
    assert isinstance(P.evolution_grid(frames, plot_emb, color_by="n_formulas"), Figure)
    gif = P.evolution_animation(frames, plot_emb, tmp_path / "sub" / "evo.gif", fps=2)
    assert gif.exists() and gif.read_bytes()[:3] == b"GIF"
    assert [p.name for p in gif.parent.iterdir()] == ["evo.gif"]  # no temp file left


def test_error_by_dim_and_parity(tmp_path):
    summary = pd.DataFrame({"embedding_dim": [1, 2, 4, 8, 8], "train_mae": [5, 3, 2, 1, 1.2],
                            "eval_mae": [6, 4, 3, 2.5, 2.7], "full_mae": [5.5, 3.5, 2.5, 1.5, 1.6],
                            "eval_r2": [0.1, 0.5, 0.7, 0.8, 0.8]})
    assert isinstance(P.error_by_dim(summary), Figure)
    assert isinstance(P.error_by_dim(summary, metric="r2"), Figure)
    with pytest.raises(KeyError):
        P.error_by_dim(summary, metric="rmse")
    rng = np.random.default_rng(0)
    y = np.exp(rng.normal(size=100))
    fig = P.parity(y, y * np.exp(rng.normal(scale=0.1, size=100)), split=np.where(np.arange(100) < 80, "train", "eval"))
    assert isinstance(fig, Figure)
    assert isinstance(P.parity(y - 1, y, log=True), Figure)  # negative values: linear fallback
    png = P.save_figure(fig, tmp_path / "parity.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
