"""The CPU engine (Numba): its :class:`gpukmeans._engine.Engine`, assembled from the
kernel modules, each of which holds one idea:

- :mod:`gpukmeans._cpu_runtime`: Numba's cache and threads, BLAS held to one thread;
- :mod:`gpukmeans._cpu_nearest`: dot products without BLAS and the exact nearest center;
- :mod:`gpukmeans._cpu_lloyd`: the plain Lloyd step (E-step and M-step sums);
- :mod:`gpukmeans._cpu_bounds`: float32 runs with Hamerly's or Elkan's bounds;
- :mod:`gpukmeans._cpu_kmeanspp`: the k-means++ candidates' distances and potentials;
- :mod:`gpukmeans._cpu_passes`: row norms, centring, inertia, ``transform``.

The engine functions here are thin wrappers that fix the chunking and the group count;
they run inside :func:`cpu_runtime`, entered once per public call (``Engine.runtime``).
Determinism: every reduction runs in an order fixed by the data's shape, so the same
input gives bitwise the same output with 1 thread or 64.
"""

import numpy as np

from ._cpu_bounds import ELKAN_MIN_CLUSTERS, BoundsRun
from ._cpu_kmeanspp import _kmeanspp_candidates_chunked
from ._cpu_lloyd import BLOCKED_DOTS_MAX_CLUSTERS, _lloyd_chunked
from ._cpu_passes import (
    _assigned_distances, _pairwise_distances_chunked, centered, inertia, row_norms_f64,
)
from ._cpu_runtime import cpu_runtime
from ._cpu_small import CHUNK_ROWS
from ._cpu_small import bound_margin_coefficient as _bound_margin_coefficient
from ._cpu_small import centers_squared_norms as _centers_squared_norms
from ._cpu_small import fold_rows as _fold_rows
from ._cpu_small import n_chunks as _n_chunks
from ._cpu_small import n_groups as _n_groups
from ._engine import Engine, StatelessRun


# --- the Engine functions: thin wrappers that fix the group count; they run inside
# cpu_runtime(), entered once per public call (Engine.runtime) ---


def _use_blocked_dots(X, n_clusters):
    """The E-step's ``x . c`` without BLAS: float32 with few clusters, where the GEMM
    is skinny (see :func:`_dots_6x4`). float64 keeps the GEMM, so that its labels
    stay bitwise scikit-learn's."""
    return X.dtype == np.float32 and n_clusters <= BLOCKED_DOTS_MAX_CLUSTERS


def _tie_margin_coefficient(X):
    """float32 decides near-ties in float64; float64 keeps scikit-learn's argmin."""
    if X.dtype == np.float32:
        return _bound_margin_coefficient(X.dtype, X.shape[1])
    return 0.0


def lloyd_iter(X, sample_weight, centers_old, labels):
    n_samples, n_features = X.shape
    n_clusters = centers_old.shape[0]
    n_groups = _n_groups(_n_chunks(n_samples), n_clusters, n_features)
    return _lloyd_chunked(
        X, sample_weight, centers_old, _centers_squared_norms(centers_old), labels,
        CHUNK_ROWS, _fold_rows(n_clusters),
        n_groups, True, _use_blocked_dots(X, n_clusters), _tie_margin_coefficient(X),
    )


def start_lloyd(X, x_squared_norms, sample_weight, n_clusters):
    """Engine ``start_lloyd``: Hamerly's bounds for float32; float64 runs take the plain
    step, whose GEMM keeps their labels bitwise scikit-learn's."""
    if X.dtype == np.float32:
        return BoundsRun(X, x_squared_norms, sample_weight, n_clusters)
    return StatelessRun(X, sample_weight, lloyd_iter, assign_labels, inertia)


def assign_labels(X, centers, labels):
    no_weight = np.empty(0, dtype=X.dtype)
    _lloyd_chunked(
        X, no_weight, centers, _centers_squared_norms(centers), labels, CHUNK_ROWS, 0,
        _n_chunks(X.shape[0]), False,
        _use_blocked_dots(X, centers.shape[0]), _tie_margin_coefficient(X),
    )


def assigned_distances(X, centers, labels):
    return _assigned_distances(X, centers, labels)


def pairwise_distances(X, centers):
    x_squared_norms = row_norms_f64(X)
    return _pairwise_distances_chunked(X, x_squared_norms, centers, CHUNK_ROWS)


def kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq):
    n_samples, n_features = X.shape
    n_groups = _n_groups(_n_chunks(n_samples), candidate_ids.shape[0], 1)
    return _kmeanspp_candidates_chunked(
        X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq, CHUNK_ROWS, n_groups
    )



def make_engine():
    return Engine(
        name="cpu",
        xp=np,
        lloyd_iter=lloyd_iter,
        start_lloyd=start_lloyd,
        assign_labels=assign_labels,
        assigned_distances=assigned_distances,
        inertia=inertia,
        pairwise_distances=pairwise_distances,
        row_norms=row_norms_f64,
        centered=centered,
        kmeanspp_candidates=kmeanspp_candidates,
        runtime=cpu_runtime,
    )


def warm_up(dtypes=(np.float32, np.float64), cluster_counts=(3, ELKAN_MIN_CLUSTERS)):
    """Compile, or load from the cache, every kernel this engine runs for ``dtypes``:
    what ``gpukmeans compile`` does, so that no later fit waits for a compile.

    Runs the engine's every path on tiny data: both branches of :func:`centered`,
    k-means++, the steps of runs with ``cluster_counts`` clusters (by default one with
    Hamerly's bounds and one with Elkan's, each with an empty cluster to relocate), the
    final E-step, predict, inertia and transform. One count compiles what fits with
    that many clusters run (the demo's warm-up).
    """
    from ._init import kmeans_plusplus
    from ._lloyd import kmeans_single_lloyd

    engine = make_engine()
    rng = np.random.default_rng(0)
    n_samples = 2 * CHUNK_ROWS + 1 + 2 * max(cluster_counts)
    with engine.runtime():
        for dtype in map(np.dtype, dtypes):
            sample_weight = np.ones(n_samples, dtype=dtype)
            for offset in (0.0, 100.0):  # near the origin and far from it
                X = (rng.standard_normal((n_samples, 5)) + offset).astype(dtype)
                X, x_squared_norms, _ = engine.centered(X, X.mean(axis=0))
            for n_clusters in cluster_counts:
                centers, _ = kmeans_plusplus(X, n_clusters, x_squared_norms, sample_weight,
                                             np.random.RandomState(0), engine)
                centers[-1] = 1e6  # far from every sample: its cluster empties
                labels, _, centers, _ = kmeans_single_lloyd(
                    X, x_squared_norms, sample_weight, centers, engine, max_iter=3
                )
                engine.assign_labels(X, centers, labels)
                engine.inertia(X, sample_weight, centers, labels)
                engine.pairwise_distances(X, centers)
                engine.lloyd_iter(X, sample_weight, centers, labels)
