"""The contract between the single-run driver and the two compute engines.

The driver (:mod:`gpukmeans._lloyd`) and the initialisations (:mod:`gpukmeans._init`)
are written once, against an :class:`Engine`. The CPU engine (:mod:`gpukmeans._cpu`,
Numba) and the GPU engine (:mod:`gpukmeans._gpu`, CUDA kernels through CuPy) differ only
in the functions they put in it, as scikit-learn picks ``lloyd_iter_chunked_dense`` or
``lloyd_iter_chunked_sparse``. The driver's loop itself (:func:`gpukmeans._lloyd.lloyd`)
runs over a *run*, which holds the data and the labels: :class:`gpukmeans._lloyd.EngineRun`
puts an engine's :attr:`Engine.start_lloyd` passes over one array behind it, and
``gpukmeans.dask`` runs the same engine functions block by block on a Dask cluster.

Every function assumes validated input: ``X`` is a C-contiguous 2-D array of float32 or
float64 in the engine's array module (for a sparse engine, a CSR matrix of float32 or
float64 without duplicate entries: ``scipy.sparse`` on the host, ``cupyx.scipy.sparse``
on a GPU); ``sample_weight`` has ``X``'s dtype and shape
``(n_samples,)``; centers have ``X``'s dtype and shape ``(n_clusters, n_features)``;
``labels`` are int32. No function may depend on thread count or timing: reductions are
done in a fixed order, so the same input gives bitwise the same output.
"""

import contextlib
import functools
from typing import Any, Callable, NamedTuple


def by_dot_products(function, unit_centers):
    """``function`` with ``unit_centers=True`` bound when ``unit_centers`` (a cosine fit's
    engine: labels order the centers by dot product alone, see
    :func:`gpukmeans._device.get_engine`), else ``function`` itself."""
    return functools.partial(function, unit_centers=True) if unit_centers else function


def take_dense_rows(X, indices):
    """:attr:`Engine.take_rows` of a dense engine: fancy indexing (a new array)."""
    return X[indices]


class Engine(NamedTuple):
    name: str
    """``"cpu"`` or ``"gpu"``; becomes the estimator's ``device_``."""

    xp: Any
    """The array module the engine's arrays live in (``numpy`` or ``cupy``)."""

    lloyd_iter: Callable
    """``lloyd_iter(X, sample_weight, centers_old, labels) -> (sums, weight_in_clusters)``

    One fused E-step and M-step accumulation. OUT ``labels[i]``: index of the closest
    center of ``centers_old`` (lowest index on ties), chosen on ``||c||^2 - 2 x.c``
    evaluated in ``X.dtype`` (as scikit-learn does). Returns ``sums`` (float64,
    ``(n_clusters, n_features)``, ``sum_i w_i x_i`` per cluster) and
    ``weight_in_clusters`` (float64, ``(n_clusters,)``), both summed in a fixed order.
    Division, empty-cluster relocation and the convergence test are the driver's.
    """

    start_lloyd: Callable
    """``start_lloyd(X, x_squared_norms, sample_weight, n_clusters) -> run``

    One run's passes over ``X``: ``run.step(centers_old, labels)`` does what
    :attr:`lloyd_iter` does; ``run.finish(centers, labels, assign_labels) -> inertia``
    runs, when ``assign_labels``, what :attr:`assign_labels` does (the run's final
    E-step), then returns what :attr:`inertia` does, bitwise (the CPU engine's float32
    runs compute both in one pass). Both are given the run's same ``labels`` array
    every time (-1 before the first step). An engine may keep state
    between the passes of a run (the CPU engine keeps Hamerly's bounds for float32) or
    use :class:`StatelessRun`. ``x_squared_norms`` is float64 ``(n_samples,)``, from
    :attr:`row_norms`. The arrays returned are the caller's to change.
    """

    assign_labels: Callable
    """``assign_labels(X, centers, labels) -> None``

    E-step only (predict, the final E-step): writes ``labels`` as :attr:`lloyd_iter` does.
    """

    assigned_distances: Callable
    """``assigned_distances(X, centers, labels) -> float64 (n_samples,)``

    ``||x_i - centers[labels[i]]||^2`` from the differences (not the norm expansion),
    in float64, each row's squares summed in NumPy's pairwise order: bit for bit
    ``((X - centers[labels])**2).sum(axis=1)`` for float64 X (for float32 X, of its
    float64 differences), the array that scikit-learn's empty-cluster relocation
    ("farthest points") partitions; also k-means||'s distances to the candidates.
    """

    inertia: Callable
    """``inertia(X, sample_weight, centers, labels) -> float64 0-d array``

    ``sum_i w_i ||x_i - centers[labels[i]]||^2`` from the differences, accumulated in
    float64 in a fixed order. A 0-d array of the engine's module (NumPy scalar on CPU),
    so that the GPU engine needs no synchronisation.
    """

    pairwise_distances: Callable
    """``pairwise_distances(X, centers) -> (n_samples, n_clusters) X.dtype``

    Euclidean (not squared) distances, for ``transform``; ``||x||^2 - 2 x.c + ||c||^2``
    combined in float64 and clipped at 0 before the square root.
    """

    row_norms: Callable
    """``row_norms(X) -> float64 (n_samples,)``: ``||x_i||^2`` in float64."""

    centered: Callable
    """``centered(X, X_mean, x_squared_norms=None) -> (X_work, x_squared_norms,
    is_centred)``: the data the fit works on and :attr:`row_norms` of it, bitwise.
    ``X - X_mean`` in a new array (bitwise NumPy's broadcast subtraction; ``X`` is the
    caller's and is never written), or ``X`` itself where the engine's labels do not need
    the centring (``is_centred`` False). ``x_squared_norms``: :attr:`row_norms` of X
    where validation's pass computed them (CPU float32 fits), else None."""

    kmeanspp_candidates: Callable
    """``kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq)
    -> (distance_to_candidates, candidates_pot)``

    The greedy k-means++ local-trial step. IN ``candidate_ids`` int64 ``(n_candidates,)``;
    IN ``closest_dist_sq`` ``X.dtype`` ``(n_samples,)``; IN ``x_squared_norms`` float64
    ``(n_samples,)`` (from :attr:`row_norms`). OUT ``distance_to_candidates`` ``X.dtype``
    ``(n_candidates, n_samples)``: ``||x - X[candidate]||^2 = ||x||^2 - 2 x.c + ||c||^2``
    (norms and combination in float64; the dot product at least as precise as
    ``X.dtype``; the GPU engine may evaluate it wholly in double), clipped at 0, rounded to
    ``X.dtype``, then ``min``-ed with ``closest_dist_sq``. OUT ``candidates_pot`` float64
    ``(n_candidates,)``: ``sum_i w_i distance_to_candidates[j, i]``, fixed-order sum.
    """

    start_kmeanspp: Any = None
    """``start_kmeanspp(X, x_squared_norms, sample_weight, n_clusters) -> step``, or
    None: greedy k-means++'s steps over one array (a seeding of ``n_clusters``
    centers), ``step(candidate_ids, closest_dist_sq)`` returning bitwise what
    :attr:`kmeanspp_candidates` returns on it, after a preparation made once for all
    the steps (the CPU engine transposes X of few features, where the seeding's steps
    repay the copy). Where None,
    :func:`gpukmeans._init.kmeans_plusplus` calls :attr:`kmeanspp_candidates`."""

    runtime: Callable = contextlib.nullcontext
    """``with engine.runtime(): ...`` is entered once around each public call (a whole
    ``fit``, a ``predict``) and sets up what the other functions assume. The CPU engine
    keeps BLAS single-threaded inside Numba's parallel loops; entering that costs a few
    milliseconds, too much to pay per iteration.
    """

    take_rows: Callable = take_dense_rows
    """``take_rows(X, indices) -> X.dtype (len(indices), n_features)``: rows of ``X`` in a
    new dense C-contiguous array of the engine's module (the k-means++ and random
    centers, the samples moved into empty clusters); ``indices``: ints, on the host or in
    the engine's module."""

    labels_inertia: Any = None
    """``labels_inertia(X, sample_weight, centers, labels) -> float64 0-d array``, or None:
    :attr:`assign_labels`, then :attr:`inertia` on the new labels, both bitwise, in one
    pass over X (the CPU engine's); where None, the caller makes the two calls."""

    minibatch_step: Any = None
    """``minibatch_step(X, rows, sample_weight, centers, weight_sums, compute_inertia)
    -> (labels, centers_new, weight_sums_new, inertia)``, or None: a dense mini-batch
    step on the batch ``X[rows]`` (``rows``: int64 on the host; None: all of X, in
    order), its labels, update and inertia, bitwise what
    :func:`gpukmeans._minibatch_step.mini_batch_step`'s array operations compute on the
    copied batch (which run where this is None); ``inertia`` a float (0.0 unless
    ``compute_inertia``). For an engine whose per-call overhead outweighs a batch's
    arithmetic, and that can read the batch's rows where they lie (the CPU engine)."""

    weighted_draw: Any = None
    """``weighted_draw(random_state, sample_weight) -> int``, or None: k-means++'s first
    center, ``random_state.choice(n_samples, p=sample_weight / sample_weight.sum())`` bit
    for bit (the same index, the same draw taken from ``random_state``) without its
    ``n_samples``-long float64 arrays and checks (which run where this is None). On host
    arrays."""

    kmeanspp_search: Any = None
    """``kmeanspp_search(sample_weight, closest_dist_sq, targets) -> int64 (len(targets),)``,
    or None: greedy k-means++'s local trials, the first sample whose running sum of
    ``w_i closest_dist_sq[i]`` (float64, in sample order) reaches each target, the last
    sample where none does; bitwise what :func:`gpukmeans._init.kmeans_plusplus`'s
    ``searchsorted(cumsum(...))`` finds (which runs where this is None), in one compiled
    pass instead of three ``n_samples``-long arrays. On host arrays."""

    batch_search: Any = None
    """``batch_search(cdf, bucket_starts, uniform) -> int64 (len(uniform),)``, or None:
    :meth:`gpukmeans._minibatch_step.BatchSampler.search` compiled, on host arrays, the
    same indices (the draws are made on the host whatever the engine)."""


def _measured_beside_the_data(engine, X):
    """Whether the engine's float32 labels of X are the argmin of its float32 values
    ``||c||^2 - 2 x.c`` (the GPU engine's, dense data), which cancel far from the origin:
    10,000 away from it, clusters a few units wide, half of MiniBatchKMeans' GPU labels
    were not the nearest center (a helper's run). The CPU engines' float32 labels are
    exact at near-ties."""
    return engine.name == "gpu" and X.dtype == "float32" and not hasattr(X, "tocsr")


def shifted_to_centers(engine, X, centers):
    """``(X - m, centers - m)``, ``m`` the mean of X's rows, where the engine's float32
    labels need it (:func:`_measured_beside_the_data`); else ``(X, centers)``. Beside the
    data the values keep their digits (the data's mean, not the centers': one center far
    out would carry theirs away); a translation changes no distance, so the labels are
    the nearest centers' either way (the values' rounding aside). For data a fit has not
    centred (MiniBatchKMeans' batches, as scikit-learn never centres them; inference on
    assigned centers). ``X - m`` is a new array as large as X, on X's side."""
    if not _measured_beside_the_data(engine, X):
        return X, centers
    shift = _rows_mean(X)
    return X - shift, centers - shift


def _rows_mean(X):
    """The mean of X's rows, summed in float64, in X's dtype: where labels are measured."""
    return X.mean(axis=0, dtype="float64").astype(X.dtype)


# Rows of X moved at a time by assign_labels_beside_the_data: a block, not a second X.
SHIFT_BLOCK_ROWS = 2**16


def assign_labels_beside_the_data(engine, X, centers, labels):
    """``engine.assign_labels(X, centers, labels)``, measured as
    :func:`shifted_to_centers` measures, a block of rows at a time (no copy of the whole
    of X on the device)."""
    if not _measured_beside_the_data(engine, X):
        engine.assign_labels(X, centers, labels)
        return
    shift = _rows_mean(X)
    centers_near = centers - shift
    for start in range(0, X.shape[0], SHIFT_BLOCK_ROWS):
        stop = min(start + SHIFT_BLOCK_ROWS, X.shape[0])
        engine.assign_labels(X[start:stop] - shift, centers_near, labels[start:stop])


def labels_and_inertia(engine, X, sample_weight, centers, labels):
    """``engine``'s :attr:`Engine.assign_labels` into ``labels``, then its
    :attr:`Engine.inertia` as a float: in one pass where the engine has
    :attr:`Engine.labels_inertia`."""
    if engine.labels_inertia is not None:
        return float(engine.labels_inertia(X, sample_weight, centers, labels))
    engine.assign_labels(X, centers, labels)
    return float(engine.inertia(X, sample_weight, centers, labels))


def labels_and_inertia_beside_the_data(engine, X, sample_weight, centers, labels):
    """:func:`labels_and_inertia` of data a fit has not centred: the labels measured as
    :func:`assign_labels_beside_the_data` measures them, the inertia on X as given (its
    float64 differences exact, not those of rows moved and rounded to float32)."""
    if not _measured_beside_the_data(engine, X):
        return labels_and_inertia(engine, X, sample_weight, centers, labels)
    assign_labels_beside_the_data(engine, X, centers, labels)
    return float(engine.inertia(X, sample_weight, centers, labels))


class StatelessRun(NamedTuple):
    """``Engine.start_lloyd``'s run for an engine that keeps nothing between passes."""

    X: Any
    sample_weight: Any
    engine_lloyd_iter: Callable
    engine_assign_labels: Callable
    engine_inertia: Callable

    def step(self, centers_old, labels):
        return self.engine_lloyd_iter(self.X, self.sample_weight, centers_old, labels)

    def finish(self, centers, labels, assign_labels):
        if assign_labels:
            self.engine_assign_labels(self.X, centers, labels)
        return self.engine_inertia(self.X, self.sample_weight, centers, labels)
