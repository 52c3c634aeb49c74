"""Analysis of learned material vectors: projections, neighbours, clusters, influence, truth scores, evolution.

Every function takes plain tables/arrays, so this module does not depend on the training code:

* ``emb``: embeddings table ``material_id, name, [family], n_formulas, median_content, norm, e0..e{d-1}`` (one row
  per material, in the model's vocabulary order); :func:`vectors` picks the ``e*`` columns as an ``(n, d)`` array.
* ``snapshots``: long table ``step, material_id, e0..e{d-1}`` (the vectors during training).
* ``predict(X, conditions) -> y``: a trained model's prediction in property units, ``X`` a CSR content matrix
  ``(n_rows, n_materials)`` with columns in embedding order, ``conditions`` ``(n_rows, n_conditions)`` or ``None``.

How to read the vectors: a mixture's vector is ``sum_i c_i * e_i``, so a material near the origin adds almost nothing
to its mixtures (it acts as a pure diluent), and materials whose vectors are close are interchangeable for the model.
:func:`influence` and :func:`origin_check` measure whether that reading holds for a given model.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
import warnings
from contextlib import nullcontext
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.linear_model import RidgeCV
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mrl.error_sources import usage_bins

log = logging.getLogger(__name__)

PredictFn = Callable[[sp.csr_matrix, "np.ndarray | None"], np.ndarray]
_VEC_RE = re.compile(r"^e(\d+)$")
#: Methods accepted by :func:`project`.
PROJECTIONS = ("raw", "pca", "umap", "tsne")
#: OpenMP/BLAS threads for the scikit-learn estimators used here (k-means, HDBSCAN, t-SNE, SVD). The problems are
#: small (one row per material); on small shared machines more threads oversubscribe the cores and k-means ran ~50x
#: slower, so one thread is the default. The environment variable ``MRL_SKLEARN_THREADS`` overrides it (a number,
#: or ``none`` for no limit); it is read at each call, so no module state is changed at run time.
DEFAULT_SKLEARN_THREADS = 1
#: Rows of one batched ``predict`` call in :func:`influence` (several materials share a call up to this size).
PREDICT_BATCH_ROWS = 50_000


class UnknownMaterialError(KeyError):
    """A material id that is not in the embeddings table; the message suggests close ids."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------------------------------------
# basics
# ---------------------------------------------------------------------------------------------------------------------
def vector_columns(table: pd.DataFrame) -> list[str]:
    """Names of the ``e0..e{d-1}`` columns of a table, in numeric order."""
    cols = [(int(m.group(1)), c) for c in table.columns if (m := _VEC_RE.match(str(c)))]
    if not cols:
        raise ValueError(f"no vector columns e0..e{{d-1}} found; columns are {list(table.columns)}")
    return [c for _, c in sorted(cols)]


def vectors(emb: pd.DataFrame) -> np.ndarray:
    """The material vectors of an embeddings table, shape ``(n_materials, d)``, float64, columns ``e0..e{d-1}``."""
    return emb[vector_columns(emb)].to_numpy(np.float64)


def _threads():
    """Context limiting native thread pools to :data:`DEFAULT_SKLEARN_THREADS` or ``$MRL_SKLEARN_THREADS``."""
    setting = os.environ.get("MRL_SKLEARN_THREADS", str(DEFAULT_SKLEARN_THREADS)).strip().lower()
    if setting in ("none", "", "0"):
        return nullcontext()
    return threadpool_limits(int(setting))


def material_ids(emb: pd.DataFrame) -> np.ndarray:
    """``material_id`` of every material as strings, shape ``(n,)``, in table order."""
    return emb["material_id"].astype(str).to_numpy()


def material_names(emb: pd.DataFrame) -> np.ndarray:
    """``name`` of every material as strings (the ids when the column is absent), shape ``(n,)``."""
    if "name" in emb.columns:
        return emb["name"].astype(str).to_numpy()
    return material_ids(emb)


def families(emb: pd.DataFrame) -> np.ndarray | None:
    """``family`` of every material as strings (``"unknown"`` where missing), shape ``(n,)``; ``None`` when the
    table has no ``family`` column."""
    if "family" not in emb.columns:
        return None
    return emb["family"].astype(object).where(emb["family"].notna(), "unknown").astype(str).to_numpy()


def usage(emb: pd.DataFrame) -> np.ndarray:
    """``n_formulas`` (formulas using the material) per material, float, shape ``(n,)``; all ones when the column
    is absent."""
    if "n_formulas" in emb.columns:
        return emb["n_formulas"].fillna(0).to_numpy(np.float64)
    return np.ones(len(emb))


def median_contents(emb: pd.DataFrame) -> np.ndarray:
    """``median_content`` (median content fraction where used; 0 where missing) per material, shape ``(n,)``; all
    NaN when the column is absent."""
    if "median_content" in emb.columns:
        return emb["median_content"].fillna(0.0).to_numpy(np.float64)
    return np.full(len(emb), np.nan)


def align(values: pd.Series | pd.DataFrame | np.ndarray | None, emb: pd.DataFrame,
          column: str = "influence") -> np.ndarray | None:
    """Per-material values in the table order of ``emb``, float, shape ``(n,)`` (NaN for materials without a value),
    from a Series indexed by material_id (or positional), a DataFrame with ``material_id`` and ``column`` (as
    returned by :func:`influence`), or an array of length ``n``; ``None`` gives ``None``."""
    if values is None:
        return None
    if isinstance(values, pd.DataFrame):
        if column not in values.columns:
            raise KeyError(f"influence table has no {column!r} column; columns are {list(values.columns)}")
        if "material_id" in values.columns:
            values = pd.Series(values[column].to_numpy(), index=values["material_id"].astype(str))
        else:
            values = values[column]
    if isinstance(values, pd.Series):
        ids = material_ids(emb)
        index = values.index.astype(str)
        if index.isin(ids).any():
            return pd.Series(values.to_numpy(np.float64), index=index).reindex(ids).to_numpy(np.float64)
        values = values.to_numpy(np.float64)
    arr = np.asarray(values, np.float64).ravel()
    if len(arr) != len(emb):
        raise ValueError(f"got {len(arr)} values for {len(emb)} materials")
    return arr


#: What a material map can draw: the vector per unit of content (the model's table), or that vector times the
#: material's median content (its typical contribution to a mixture vector; "near the origin = little influence").
VIEWS = {"dose": "dose-weighted vectors (median content x vector: a material's typical contribution)",
         "unit": "per-unit-content vectors (the model's table; trace materials sit far out)"}


def view_vectors(emb: pd.DataFrame, view: str = "dose") -> np.ndarray:
    """The vectors a map draws, shape ``(n, d)``: ``"unit"`` the table's vectors, ``"dose"`` each vector times the
    material's ``median_content`` (0 for an unused material), which is how far it typically moves a mixture vector:
    with content scaling a 0.1 % material's per-unit vector is ~1,000x longer than its usual contribution."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {list(VIEWS)}, got {view!r}")
    X = vectors(emb)
    if view == "unit":
        return X
    med = median_contents(emb)
    if not np.isfinite(med).all():
        raise ValueError("the dose-weighted view needs a median_content column in the embeddings table")
    return X * med[:, None]


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero (cosine distance 1 to everything)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def _distances(A: np.ndarray, B: np.ndarray, metric: str) -> np.ndarray:
    """Pairwise distances ``(len(A), len(B))``; ``cosine`` = 1 - cosine similarity, or ``euclidean``."""
    if metric == "cosine":
        return np.clip(1.0 - _unit_rows(A) @ _unit_rows(B).T, 0.0, 2.0)
    if metric == "euclidean":
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
        return np.sqrt(np.maximum(sq, 0.0))
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


# ---------------------------------------------------------------------------------------------------------------------
# projections
# ---------------------------------------------------------------------------------------------------------------------
def _pad2(Y: np.ndarray) -> np.ndarray:
    """Pad/truncate to exactly two columns."""
    Y = np.asarray(Y, np.float64)
    if Y.shape[1] >= 2:
        return Y[:, :2].copy()
    return np.hstack([Y, np.zeros((Y.shape[0], 2 - Y.shape[1]))])


def _fit_projector(X: np.ndarray, method: str, seed: int,
                   **kw) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray] | None]:
    """Fit a 2-D projection on ``X`` ``(n, d)``; return its coordinates ``(n, 2)`` and a transform for new rows
    (``None`` for t-SNE, which cannot embed new points)."""
    n, d = X.shape
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; use one of {PROJECTIONS}")
    if method == "raw":
        if d > 2:
            raise ValueError(f"method='raw' needs vectors of dimension <= 2, got {d}; use 'pca', 'umap' or 'tsne'")
        return _pad2(X), _pad2
    if method in ("umap", "tsne") and n <= 3:
        log.info("%s needs more than 3 materials (got %d); using PCA instead", method, n)
        method = "pca"
    if method == "pca" or d <= 1:
        center = bool(kw.get("center", True))
        mean = X.mean(0) if (center and n) else np.zeros(d)
        k = min(2, n, d)
        if k == 0:
            comps = np.zeros((0, d))
        else:
            _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
            comps = vt[:k]
            # deterministic sign: the largest-magnitude loading of each axis is positive
            signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])
            comps = comps * np.where(signs == 0, 1.0, signs)[:, None]

        def transform(Z: np.ndarray) -> np.ndarray:
            return _pad2((np.asarray(Z, np.float64) - mean) @ comps.T)

        return transform(X), transform
    if method == "umap":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba / "n_jobs overridden by random_state" chatter
            import umap

            params = dict(n_neighbors=15, min_dist=0.1, metric="euclidean", random_state=seed, n_jobs=1)
            params.update(kw)
            params["n_neighbors"] = int(max(2, min(params["n_neighbors"], n - 1)))
            params.setdefault("init", "spectral" if n > 4 * params["n_neighbors"] else "pca")
            reducer = umap.UMAP(n_components=2, **params)
            Y = reducer.fit_transform(X)

        def transform(Z: np.ndarray) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(reducer.transform(np.asarray(Z, np.float64)), np.float64)

        return np.asarray(Y, np.float64), transform
    # t-SNE
    params = dict(perplexity=30.0, init="pca", random_state=seed, max_iter=1000)
    params.update(kw)
    params["perplexity"] = float(min(params["perplexity"], max(1.0, (n - 1) / 3.0)))
    Xp = X if d >= 2 else _pad2(X)
    with _threads():
        Y = TSNE(n_components=2, **params).fit_transform(Xp)
    return np.asarray(Y, np.float64), None


def project(X: np.ndarray, method: str = "pca", seed: int = 0, **kw) -> np.ndarray:
    """Project material vectors ``X`` ``(n, d)`` to 2-D coordinates ``(n, 2)``, one row per material.

    Methods: ``"raw"`` (the vectors themselves; d <= 2, padded with zeros for d = 1), ``"pca"`` (keyword
    ``center=False`` keeps the origin at (0, 0)), ``"umap"`` and ``"tsne"`` (extra keywords go to the estimator;
    ``n_neighbors``/``perplexity`` are clipped to the number of materials, and with 3 materials or fewer PCA is used).
    Only ``raw`` and ``pca`` keep distances to the origin meaningful.
    """
    X = np.asarray(X, np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_materials, d), got shape {X.shape}")
    if len(X) == 0:
        return np.zeros((0, 2))
    coords, _ = _fit_projector(X, method, seed, **kw)
    return coords


# ---------------------------------------------------------------------------------------------------------------------
# neighbours, pairs, clusters
# ---------------------------------------------------------------------------------------------------------------------
def _locate(emb: pd.DataFrame, material_id: str) -> int:
    ids = material_ids(emb)
    hits = np.flatnonzero(ids == str(material_id))
    if len(hits) == 0:
        close = difflib.get_close_matches(str(material_id), list(ids), n=5, cutoff=0.5)
        if not close:  # substring matches, e.g. a name fragment
            low = str(material_id).lower()
            close = [i for i in ids if low in i.lower()][:5]
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownMaterialError(f"unknown material_id {material_id!r} ({len(ids)} materials in the table){hint}")
    return int(hits[0])


def _describe(emb: pd.DataFrame, idx: np.ndarray, suffix: str = "") -> dict[str, np.ndarray]:
    out = {f"material_id{suffix}": material_ids(emb)[idx], f"name{suffix}": material_names(emb)[idx]}
    fam = families(emb)
    if fam is not None:
        out[f"family{suffix}"] = fam[idx]
    return out


def nearest_neighbors(emb: pd.DataFrame, material_id: str, k: int = 10, metric: str = "cosine") -> pd.DataFrame:
    """The ``k`` materials closest to ``material_id`` (itself excluded).

    Returns columns ``material_id, name, [family], [n_formulas], distance, rank`` (rank 1 = closest; ties keep
    table order). ``cosine`` distance is 1 - cosine similarity. A zero vector has no direction, so by ``cosine``
    it has no neighbours and is nobody's neighbour: zero-vector materials (the base pinned at the origin, materials
    never trained) are left out of the list; ``euclidean`` ranks every material.

    Raises:
        UnknownMaterialError (a ``KeyError``): unknown id; the message suggests close ids.
        ValueError: ``k < 1``, an unknown ``metric``, or ``metric="cosine"`` for a material whose vector is zero.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 (neighbours to list), got {k}")
    i = _locate(emb, material_id)
    X = vectors(emb)
    dist = _distances(X[i : i + 1], X, metric)[0]
    if metric == "cosine":
        zero = ~np.any(X != 0, axis=1)
        if zero[i]:
            raise ValueError(_zero_vector_message(emb, i))
        dist[zero] = np.inf  # no direction: not a neighbour by angle
    dist[i] = np.inf
    k = int(min(k, np.isfinite(dist).sum()))
    order = np.argsort(dist, kind="stable")[:k]
    out = pd.DataFrame(_describe(emb, order))
    if "n_formulas" in emb.columns:
        out["n_formulas"] = emb["n_formulas"].to_numpy()[order]
    out["distance"] = dist[order]
    out["rank"] = np.arange(1, k + 1)
    return out


def _zero_vector_message(emb: pd.DataFrame, i: int) -> str:
    """Why material ``i`` (a zero vector) has no neighbours by cosine distance, and what to use instead."""
    what = material_ids(emb)[i]
    if "pinned" in emb.columns and bool(emb["pinned"].iloc[i]):
        why = f"material {what!r} is pinned at the origin (the base material, a zero vector)"
    else:
        used = f"used in {usage(emb)[i]:.0f} formulas; " if "n_formulas" in emb.columns else ""
        why = f"material {what!r} has a zero vector ({used}an untrained vector stays at the origin)"
    return (f"{why}: it has no direction, so it has no neighbours by cosine distance; use metric='euclidean' "
            "(mrl similar --metric euclidean) to list the materials nearest to the origin")


def top_pairs(emb: pd.DataFrame, n: int = 20, metric: str = "cosine", min_norm: float | None = None) -> pd.DataFrame:
    """The ``n`` most similar pairs of distinct materials (smallest distance first).

    ``min_norm`` drops materials whose vector norm is below it (directions of near-zero vectors are noise; with
    ``cosine`` exact zero vectors are always dropped). Computed in row blocks, so memory stays ``O(block * n)``.
    Returns ``rank, material_id_a, name_a, [family_a], material_id_b, name_b, [family_b], distance,
    [same_family]``.
    """
    X = vectors(emb)
    norms = np.linalg.norm(X, axis=1)
    keep = np.ones(len(X), bool)
    if min_norm is not None:
        keep &= norms >= min_norm
    if metric == "cosine":
        keep &= norms > 0
    idx = np.flatnonzero(keep)
    m = len(idx)
    n = int(max(0, n))
    best_d = np.empty(0)
    best_a = np.empty(0, int)
    best_b = np.empty(0, int)
    if m >= 2 and n > 0:
        Xk = X[idx]
        block = max(1, int(4_000_000 // max(m, 1)))
        for start in range(0, m, block):
            stop = min(m, start + block)
            D = _distances(Xk[start:stop], Xk, metric)
            rows, cols = np.nonzero(np.arange(start, stop)[:, None] < np.arange(m)[None, :])
            d = D[rows, cols]
            if len(d) > n:
                part = np.argpartition(d, n - 1)[:n]
                rows, cols, d = rows[part], cols[part], d[part]
            best_d = np.concatenate([best_d, d])
            best_a = np.concatenate([best_a, idx[rows + start]])
            best_b = np.concatenate([best_b, idx[cols]])
            if len(best_d) > n:
                part = np.argpartition(best_d, n - 1)[:n]
                best_d, best_a, best_b = best_d[part], best_a[part], best_b[part]
        order = np.lexsort((best_b, best_a, best_d))[:n]
        best_d, best_a, best_b = best_d[order], best_a[order], best_b[order]
    out = pd.DataFrame({"rank": np.arange(1, len(best_d) + 1), **_describe(emb, best_a, "_a"),
                        **_describe(emb, best_b, "_b"), "distance": best_d})
    if "family_a" in out.columns:
        out["same_family"] = out["family_a"] == out["family_b"]
    return out


def cluster(emb: pd.DataFrame, method: str = "kmeans", n_clusters: int = 8, seed: int = 0, metric: str = "euclidean",
            **kw) -> np.ndarray:
    """Cluster the material vectors; labels ``(n,)``. ``metric="euclidean"`` groups by position, so vector length
    dominates (near-origin materials group together); ``"cosine"`` clusters the unit-length vectors, i.e. by
    direction only (zero vectors form their own group).

    ``kmeans``: ``n_clusters`` clusters (clipped to the number of materials). ``hdbscan``: the number of clusters is
    found from the data, ``-1`` marks noise; keywords such as ``min_cluster_size`` (default 5) go to
    :class:`sklearn.cluster.HDBSCAN`.
    """
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    X = vectors(emb) if metric == "euclidean" else _unit_rows(vectors(emb))
    n = len(X)
    if n == 0:
        return np.zeros(0, int)
    if method == "kmeans":
        k = int(max(1, min(n_clusters, n)))
        with _threads():
            return KMeans(n_clusters=k, n_init=10, random_state=seed, **kw).fit_predict(X).astype(int)
    if method == "hdbscan":
        if n < 2:
            return np.zeros(n, int)
        params = dict(min_cluster_size=5, copy=True)
        params.update(kw)
        params["min_cluster_size"] = int(max(2, min(params["min_cluster_size"], n)))
        if params.get("min_samples") is not None:
            params["min_samples"] = int(max(1, min(params["min_samples"], n - 1)))
        with _threads():
            return HDBSCAN(**params).fit_predict(X).astype(int)
    raise ValueError(f"method must be 'kmeans' or 'hdbscan', got {method!r}")


def cluster_summary(emb: pd.DataFrame, labels: np.ndarray, influence: pd.Series | None = None,
                    n_examples: int = 5, n_families: int = 3) -> pd.DataFrame:
    """One row per cluster (largest first): ``cluster, size, n_used, examples`` (most used members' names),
    ``families`` (top families with their shares, e.g. ``"solvent 60%, resin 30%"``), ``top_family,
    top_family_share, mean_norm, total_usage`` (sum of ``n_formulas``) and, when ``influence`` is given (Series
    indexed by material_id or the :func:`influence` table), ``mean_influence``. Label ``-1`` is HDBSCAN noise."""
    labels = np.asarray(labels)
    if len(labels) != len(emb):
        raise ValueError(f"got {len(labels)} labels for {len(emb)} materials")
    names = material_names(emb)
    fam = families(emb)
    use = usage(emb)
    norms = np.linalg.norm(vectors(emb), axis=1)
    infl = align(influence, emb)
    rows = []
    for lab in pd.unique(labels):
        members = np.flatnonzero(labels == lab)
        by_use = members[np.argsort(-use[members], kind="stable")]
        row = {"cluster": lab, "size": len(members), "n_used": int((use[members] > 0).sum()),
               "examples": ", ".join(names[by_use[:n_examples]])}
        if fam is not None:
            shares = pd.Series(fam[members]).value_counts(normalize=True)
            row["families"] = ", ".join(f"{f} {s:.0%}" for f, s in shares.head(n_families).items())
            row["top_family"] = shares.index[0]
            row["top_family_share"] = float(shares.iloc[0])
        row["mean_norm"] = float(norms[members].mean())
        if infl is not None:
            vals = infl[members]
            row["mean_influence"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
        row["total_usage"] = float(use[members].sum())
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        out = out.sort_values(["size", "cluster"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# influence
# ---------------------------------------------------------------------------------------------------------------------
def _sample_pairs(C: sp.csr_matrix, max_formulas: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(material, row) pairs: for every material up to ``max_formulas`` random rows that contain it, vectorised.
    Returns ``mats, rows`` sorted by material then row."""
    coo = C.tocoo()
    keep = coo.data > 0
    mats, rows = coo.col[keep].astype(np.int64), coo.row[keep].astype(np.int64)
    key = np.random.default_rng(seed).random(len(mats))
    order = np.lexsort((key, mats))  # random order within each material
    mats, rows = mats[order], rows[order]
    starts = np.searchsorted(mats, mats, side="left")
    take = (np.arange(len(mats)) - starts) < max_formulas
    mats, rows = mats[take], rows[take]
    order = np.lexsort((rows, mats))
    return mats[order], rows[order]


def _perturb_pairs(C: sp.csr_matrix, mats: np.ndarray, rows: np.ndarray, delta: float,
                   renormalise: bool) -> tuple[sp.csr_matrix, np.ndarray]:
    """One perturbed copy of row ``rows[k]`` per pair, with material ``mats[k]`` raised by ``delta`` (clipped to
    what is possible); with ``renormalise`` the other contents shrink proportionally so the row keeps its total.
    Returns the ``(n_pairs, n_materials)`` matrix and the content change applied per pair."""
    A = C[rows]
    xj = np.asarray(C[rows, mats]).ravel()
    total = np.asarray(A.sum(axis=1)).ravel()
    rest = total - xj
    if renormalise:
        d = np.clip(delta, -xj, rest)  # cannot take more from the others than they hold
        scale = np.divide(rest - d, rest, out=np.ones_like(rest), where=rest > 0)
        A = sp.diags(scale) @ A
        fix = xj + d - scale * xj
    else:
        d = np.maximum(delta, -xj)
        fix = d
    k = np.arange(len(rows))
    B = (A + sp.csr_matrix((fix, (k, mats)), shape=A.shape)).tocsr()
    B.eliminate_zeros()
    return B, d


def _call(predict: PredictFn, X: sp.csr_matrix, cond: np.ndarray | None) -> np.ndarray:
    y = np.asarray(predict(X.tocsr(), cond), np.float64).reshape(X.shape[0], -1)
    return y[:, 0]


def influence(emb: pd.DataFrame, predict: PredictFn | None = None, content_matrix: sp.spmatrix | None = None,
              conditions: np.ndarray | None = None, delta: float = 0.01, max_formulas: int = 200, seed: int = 0,
              renormalise: bool = True) -> pd.DataFrame:
    """How much each material moves the prediction; one row per material in embedding order.

    Always: ``norm`` (vector length: the effect of the material per unit content fraction) and ``dose_norm`` (norm x
    median content: the size of a typical dose's contribution to the mixture vector).

    With ``predict`` and ``content_matrix`` ``(n_rows, n_materials)`` (columns in embedding order; rows aligned with
    ``conditions`` ``(n_rows, n_conditions)``, e.g. ``data.content_matrix()[data.sample_rows()]`` and
    ``data.condition_values()``): for up to ``max_formulas`` randomly chosen rows that use the material, its content
    is raised by ``delta`` (0.01 = one percentage point) and the prediction change is measured:

    * ``influence``: mean ``|y' - y|`` (property units); ``effect``: mean signed ``y' - y`` (direction);
      ``influence_rel``: mean ``|y' - y| / |y|``; ``n_evaluated``: rows used (influence is NaN when none).

    Choice: with ``renormalise=True`` (default) the other contents are scaled down proportionally so the formula
    still sums to 1 — the realistic "a bit more of X instead of the rest" change. The mixture vector then moves by
    ``delta * (e_j - mean of the others)``, so a material at the origin still acts as a diluent. With
    ``renormalise=False`` nothing else changes (the formula sums to 1 + delta); the mixture vector moves by exactly
    ``delta * e_j``, which isolates the material's own effect (zero for a vector at the origin). Rows made of the
    material alone cannot change under renormalisation and are skipped. All (material, row) pairs are perturbed at
    once: one ``predict`` call for the base rows plus one per ``PREDICT_BATCH_ROWS`` perturbed rows.
    """
    X = vectors(emb)
    norms = np.linalg.norm(X, axis=1)
    out = pd.DataFrame(_describe(emb, np.arange(len(emb))))
    out["n_formulas"] = usage(emb).astype(int) if "n_formulas" in emb.columns else np.nan
    med = median_contents(emb)
    out["median_content"] = med
    out["norm"] = norms
    out["dose_norm"] = norms * med
    out.attrs.update(delta=float(delta), renormalise=bool(renormalise))
    if predict is None:
        return out
    if content_matrix is None:
        raise ValueError("influence with predict needs content_matrix (rows = formulas, cols = materials)")
    C = sp.csr_matrix(content_matrix, dtype=np.float64)
    C.sum_duplicates()
    if C.shape[1] != len(emb):
        raise ValueError(f"content_matrix has {C.shape[1]} columns but the embeddings table has {len(emb)} materials")
    cond = None
    if conditions is not None:
        cond = np.asarray(conditions, np.float64)
        if cond.shape[0] != C.shape[0]:
            raise ValueError(f"conditions has {cond.shape[0]} rows but content_matrix has {C.shape[0]}; pass one "
                             "content row per measurement (data.content_matrix()[data.sample_rows()])")
        cond = cond.reshape(C.shape[0], -1)

    mats, rows = _sample_pairs(C, int(max_formulas), seed)
    base = np.full(C.shape[0], np.nan)
    used_rows = np.unique(rows)
    if len(used_rows):
        base[used_rows] = _call(predict, C[used_rows], None if cond is None else cond[used_rows])
    change = np.full(len(rows), np.nan)
    for start in range(0, len(rows), PREDICT_BATCH_ROWS):
        sl = slice(start, start + PREDICT_BATCH_ROWS)
        Xp, d = _perturb_pairs(C, mats[sl], rows[sl], delta, renormalise)
        ok = np.flatnonzero(np.abs(d) > 1e-12)
        if len(ok):
            r = rows[sl][ok]
            yp = _call(predict, Xp[ok], None if cond is None else cond[r])
            change[start + ok] = yp - base[r]
    ok = np.isfinite(change)
    m, ch, b = mats[ok], change[ok], base[rows[ok]]
    n_mat = len(emb)
    n_eval = np.bincount(m, minlength=n_mat)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["influence"] = np.bincount(m, np.abs(ch), n_mat) / n_eval
        out["effect"] = np.bincount(m, ch, n_mat) / n_eval
        relok = b != 0
        out["influence_rel"] = (np.bincount(m[relok], np.abs(ch[relok] / b[relok]), n_mat)
                                / np.bincount(m[relok], minlength=n_mat))
    out["n_evaluated"] = n_eval
    return out


def origin_check(infl: pd.DataFrame, low_quantile: float = 0.25) -> dict:
    """Does "near the origin = little influence" hold for this model?

    Uses the materials with a measured ``influence`` (see :func:`influence`). Returns ``n``, ``spearman_norm`` and
    ``spearman_dose_norm`` (rank correlation with the measured influence, with ``p_norm``/``p_dose_norm``),
    ``low_norm_low_influence``: share of the low-norm materials (norm at or below the ``low_quantile`` quantile)
    whose influence is at or below the median (chance ~0.5), and ``verdict``: a sentence.
    """
    res: dict = {"n": 0, "spearman_norm": np.nan, "p_norm": np.nan, "spearman_dose_norm": np.nan,
                 "p_dose_norm": np.nan, "low_norm_low_influence": np.nan}
    if "influence" not in infl.columns:
        res["verdict"] = "Influence was not measured (call influence() with predict and content_matrix)."
        return res
    ok = np.isfinite(infl["influence"].to_numpy(np.float64)) & np.isfinite(infl["norm"].to_numpy(np.float64))
    t = infl.loc[ok]
    res["n"] = int(len(t))
    if len(t) < 3:
        res["verdict"] = f"Too few materials with measured influence ({len(t)}) to judge."
        return res
    y = t["influence"].to_numpy(np.float64)
    for col, key in (("norm", "norm"), ("dose_norm", "dose_norm")):
        x = t[col].to_numpy(np.float64) if col in t.columns else np.full(len(t), np.nan)
        if np.isfinite(x).all() and np.ptp(x) > 0 and np.ptp(y) > 0:
            rho, p = stats.spearmanr(x, y)
            res[f"spearman_{key}"], res[f"p_{key}"] = float(rho), float(p)
    norm = t["norm"].to_numpy(np.float64)
    low = norm <= np.quantile(norm, low_quantile)
    res["low_norm_low_influence"] = float((y[low] <= np.median(y)).mean())
    rho, share = res["spearman_norm"], res["low_norm_low_influence"]
    renorm = infl.attrs.get("renormalise", True)
    how = ("content +delta, others renormalised" if renorm else "content +delta, nothing else changed")
    if np.isnan(rho):
        verdict = "Norm or influence does not vary across materials; the check is not informative."
    elif rho >= 0.7 and share >= 0.7:
        verdict = (f"Holds: materials near the origin barely change predictions (Spearman {rho:.2f} between norm "
                   f"and measured influence; {share:.0%} of the lowest-norm materials have below-median influence).")
    elif rho >= 0.4:
        verdict = (f"Holds roughly: norm and measured influence agree in rank (Spearman {rho:.2f}), "
                   f"{share:.0%} of the lowest-norm materials have below-median influence; read norms as a guide.")
    else:
        verdict = (f"Does not hold here: norm is a poor guide to influence (Spearman {rho:.2f}; {share:.0%} of the "
                   f"lowest-norm materials have below-median influence); use the measured influence instead.")
    res["verdict"] = f"{verdict} [influence: {how}]"
    return res


# ---------------------------------------------------------------------------------------------------------------------
# scores against hidden truth (synthetic data)
# ---------------------------------------------------------------------------------------------------------------------
def _neighbour_shares(X: np.ndarray, fam: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per material: the share of its ``k`` nearest neighbours with its family, and that share for random
    vectors (its family's size - 1 over n - 1)."""
    n = len(X)
    D = _distances(X, X, metric)
    np.fill_diagonal(D, np.inf)
    nn = np.argsort(D, axis=1, kind="stable")[:, :k]
    counts = pd.Series(fam).map(pd.Series(fam).value_counts()).to_numpy(np.float64)
    return (fam[nn] == fam[:, None]).mean(axis=1), (counts - 1) / (n - 1)


def _neighbour_agreement(X: np.ndarray, fam: np.ndarray, k: int, metric: str) -> tuple[float, float]:
    """Mean share of each material's ``k`` nearest neighbours with its family, and the chance level."""
    shares, chance = _neighbour_shares(X, fam, k, metric)
    return float(shares.mean()), float(chance.mean())


#: Bins of "formulas using the material" (left-closed) for :func:`neighbour_agreement_by_usage`.
MATERIAL_USAGE_BINS = (1, 3, 10, 30, 100, np.inf)


def neighbour_agreement_by_usage(emb: pd.DataFrame, truth: pd.DataFrame, bins: Sequence[float] = MATERIAL_USAGE_BINS,
                                 k: int = 10, metric: str = "cosine") -> pd.DataFrame:
    """How well the vectors place data-poor materials: the share of each material's ``k`` nearest neighbours (among
    all used materials, by ``metric``) in its hidden family, averaged per bin of ``n_formulas`` (formulas using the
    material). One row per non-empty bin: ``usage_bin, n_materials, neighbour_agreement, neighbour_chance``."""
    if "material_id" not in truth.columns or "family" not in truth.columns:
        raise ValueError("truth needs material_id and family columns")
    fam = truth.assign(material_id=truth["material_id"].astype(str)).drop_duplicates("material_id") \
        .set_index("material_id")["family"].reindex(material_ids(emb))
    n_use = usage(emb)
    ok = (n_use > 0) & fam.notna().to_numpy()
    shares, chance = _neighbour_shares(vectors(emb)[ok], fam.astype(str).to_numpy()[ok],
                                       int(max(1, min(k, ok.sum() - 1))), metric)
    binned = usage_bins(n_use[ok], bins)
    table = pd.DataFrame({"usage_bin": binned, "share": shares, "chance": chance})
    out = table.groupby("usage_bin", observed=True).agg(n_materials=("share", "size"),
                                                        neighbour_agreement=("share", "mean"),
                                                        neighbour_chance=("chance", "mean")).reset_index()
    out["usage_bin"] = out["usage_bin"].astype(str)
    return out


def _purity(labels: np.ndarray, fam: np.ndarray) -> float:
    table = pd.crosstab(labels, fam)
    return float(table.max(axis=1).sum() / len(labels))


def truth_scores(emb: pd.DataFrame, truth: pd.DataFrame, k: int = 10, n_clusters: int | None = None, seed: int = 0,
                 metric: str = "cosine", latent: Sequence[str] | None = None) -> dict:
    """Score the vectors against hidden truth (``truth``: one row per ``material_id`` with ``family`` and numeric
    latent properties such as ``thickening``). Only materials used in >= 1 formula are scored.

    Returns a dict: ``n_scored``; ``k``, ``neighbour_agreement`` (mean share of the k nearest neighbours, by
    ``metric``, sharing the hidden family), ``neighbour_chance`` (expected share for random vectors) and
    ``neighbour_lift`` (ratio); ``n_clusters``, ``purity`` and ``ari`` of k-means clusters (default: as many as
    families) vs family; ``spearman_norm`` / ``spearman_dose_norm``: ``{latent: rho}`` between the influence proxy
    and ``|latent|``; ``probe_r2``: ``{latent: R2}`` of a 5-fold cross-validated ridge predicting the latent from the
    vector. Flatten with ``pd.json_normalize``.
    """
    if "material_id" not in truth.columns:
        raise ValueError("truth needs a material_id column")
    t = truth.assign(material_id=truth["material_id"].astype(str)).drop_duplicates("material_id")
    t = t.set_index("material_id").reindex(material_ids(emb))
    used = (usage(emb) > 0) & t.notna().any(axis=1).to_numpy()
    X = vectors(emb)[used]
    t = t.loc[used]
    n = int(used.sum())
    res: dict = {"n_scored": n, "k": np.nan, "neighbour_agreement": np.nan, "neighbour_chance": np.nan,
                 "neighbour_lift": np.nan, "n_clusters": np.nan, "purity": np.nan, "ari": np.nan,
                 "spearman_norm": {}, "spearman_dose_norm": {}, "probe_r2": {}}
    if "family" in t.columns and n >= 3:
        famok = t["family"].notna().to_numpy()
        fam = t["family"].astype(str).to_numpy()[famok]
        Xf = X[famok]
        if len(fam) >= 3:
            kk = int(max(1, min(k, len(fam) - 1)))
            agree, chance = _neighbour_agreement(Xf, fam, kk, metric)
            res.update(k=kk, neighbour_agreement=agree, neighbour_chance=chance,
                       neighbour_lift=agree / chance if chance > 0 else np.nan)
            nc = int(n_clusters or len(np.unique(fam)))
            nc = max(1, min(nc, len(fam)))
            with _threads():
                labels = KMeans(n_clusters=nc, n_init=10, random_state=seed).fit_predict(Xf)
            res.update(n_clusters=nc, purity=_purity(labels, fam), ari=float(adjusted_rand_score(fam, labels)))
    norms = np.linalg.norm(X, axis=1)
    dose = norms * median_contents(emb)[used]
    cols = list(latent) if latent is not None else [
        c for c in t.columns if c not in ("family", "name") and pd.api.types.is_numeric_dtype(t[c])]
    folds = min(5, n)
    for c in cols:
        v = t[c].to_numpy(np.float64)
        ok = np.isfinite(v)
        if ok.sum() < 3:
            continue
        mag = np.abs(v[ok])
        for key, proxy in (("spearman_norm", norms[ok]), ("spearman_dose_norm", dose[ok])):
            if np.ptp(mag) > 0 and np.ptp(proxy) > 0 and np.isfinite(proxy).all():
                res[key][c] = float(stats.spearmanr(proxy, mag)[0])
            else:
                res[key][c] = np.nan
        nf = min(folds, int(ok.sum()))
        if nf >= 2 and np.ptp(v[ok]) > 0:
            probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
            pred = np.empty(int(ok.sum()))
            Xo, vo = X[ok], v[ok]
            for tr, te in KFold(nf, shuffle=True, random_state=seed).split(Xo):
                pred[te] = probe.fit(Xo[tr], vo[tr]).predict(Xo[te])
            # out-of-fold R2 over all scored materials (robust for small folds, unlike a mean of per-fold R2)
            res["probe_r2"][c] = float(1.0 - ((vo - pred) ** 2).sum() / ((vo - vo.mean()) ** 2).sum())
        else:
            res["probe_r2"][c] = np.nan
    return res


def baseline_representation(content_matrix: sp.spmatrix, dim: int, seed: int = 0) -> np.ndarray:
    """The "no learning" baseline: each material's column of the content matrix (its usage across formulas)
    reduced by TruncatedSVD to ``dim``; shape ``(n_materials, dim)`` (zero-padded when ``dim`` exceeds the rank the
    data allows)."""
    M = sp.csr_matrix(content_matrix, dtype=np.float64).T.tocsr()  # materials x formulas
    n_mat, n_form = M.shape
    out = np.zeros((n_mat, int(dim)))
    k = int(min(dim, n_form - 1, n_mat))
    if k >= 1:
        with _threads():
            out[:, :k] = TruncatedSVD(n_components=k, random_state=seed).fit_transform(M)
    elif n_form >= 1 and dim >= 1:  # a single formula: the column itself
        out[:, 0] = M.toarray()[:, 0]
    return out


# ---------------------------------------------------------------------------------------------------------------------
# training evolution
# ---------------------------------------------------------------------------------------------------------------------
def _snapshot_cube(snapshots: pd.DataFrame, steps: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Vectors per step as ``(n_steps, n_materials, d)`` with materials in the order of the last step."""
    cols = vector_columns(snapshots)
    snap = snapshots.assign(material_id=snapshots["material_id"].astype(str))
    last = snap[snap["step"] == steps[-1]]
    ids = pd.unique(last["material_id"])
    cube = np.full((len(steps), len(ids), len(cols)), np.nan)
    pos = pd.Index(ids)
    for s, step in enumerate(steps):
        grp = snap[snap["step"] == step]
        where = pos.get_indexer(grp["material_id"])
        ok = where >= 0
        cube[s, where[ok]] = grp.loc[ok, cols].to_numpy(np.float64)
    return cube, np.asarray(ids)


def evolution_frames(snapshots: pd.DataFrame, steps: Sequence[int] | None = None, n_frames: int = 9,
                     method: str = "pca", seed: int = 0, **kw) -> pd.DataFrame:
    """2-D coordinates of every material at selected training steps: columns ``frame, step, material_id, x, y``.

    ``steps`` default: ``n_frames`` steps evenly spread over the snapshots (first and last included). Vectors of
    dimension <= 2 are shown raw; otherwise ONE projection (``pca`` or ``umap``) is fitted on the final selected
    snapshot and applied to every frame, so frames share axes and can be compared.
    """
    all_steps = np.sort(pd.unique(snapshots["step"]))
    if steps is None:
        pick = np.unique(np.round(np.linspace(0, len(all_steps) - 1, min(n_frames, len(all_steps)))).astype(int))
        steps = all_steps[pick]
    else:
        missing = sorted(set(steps) - set(all_steps.tolist()))
        if missing:
            raise KeyError(f"steps {missing} not in snapshots (have {len(all_steps)} steps, "
                           f"{all_steps[0]}..{all_steps[-1]})")
        steps = np.asarray(sorted(steps))
    cube, ids = _snapshot_cube(snapshots, list(steps))
    d = cube.shape[2]
    if d <= 2:
        transform = _pad2
    else:
        if method == "tsne":
            raise ValueError("t-SNE cannot place earlier snapshots in the final map; use 'pca' or 'umap'")
        final = cube[-1]
        _, transform = _fit_projector(np.nan_to_num(final), method, seed, **kw)
    coords = np.stack([transform(np.nan_to_num(frame)) for frame in cube])  # (n_steps, n_materials, 2)
    coords[np.isnan(cube).all(axis=2)] = np.nan
    n_s, n_m = coords.shape[:2]
    return pd.DataFrame({"frame": np.repeat(np.arange(n_s), n_m), "step": np.repeat(np.asarray(steps), n_m),
                         "material_id": np.tile(ids, n_s), "x": coords[..., 0].ravel(), "y": coords[..., 1].ravel()})


def spread_stats(snapshots: pd.DataFrame) -> pd.DataFrame:
    """Per step: ``n_materials, mean_norm, median_norm, max_norm, pc1_explained, pc2_explained`` (share of the
    variance across materials along the first/second principal axis). Early in training the vectors typically
    spread along one line (``pc1_explained`` near 1), later they separate into groups (it drops)."""
    cols = vector_columns(snapshots)
    rows = []
    for step, grp in snapshots.groupby("step", sort=True):
        V = grp[cols].to_numpy(np.float64)
        norms = np.linalg.norm(V, axis=1)
        s = np.linalg.svd(V - V.mean(0), compute_uv=False) if len(V) > 1 else np.zeros(1)
        var = s**2
        tot = var.sum()
        ratio = var / tot if tot > 0 else np.full(len(var), np.nan)
        rows.append({"step": step, "n_materials": len(V), "mean_norm": norms.mean(), "median_norm": np.median(norms),
                     "max_norm": norms.max(), "pc1_explained": float(ratio[0]),
                     "pc2_explained": float(ratio[1]) if len(ratio) > 1 else 0.0})
    return pd.DataFrame(rows)
