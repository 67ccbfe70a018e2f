"""Initial centers: greedy k-means++, random, array or callable, for either engine.

The random draws are made on the host with a ``numpy.random.RandomState`` in exactly
the order scikit-learn makes them, so the same ``random_state`` picks the same points;
the passes over the data go through the engine.
"""

import functools
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._lloyd import to_host
from ._progress import NULL_REPORTER, progress_bars
from ._replay import pairwise_sum, temporary_array, weighted_choice


def kmeans_plusplus(
    X,
    n_clusters,
    x_squared_norms,
    sample_weight,
    random_state,
    engine,
    n_local_trials=None,
    reporter=NULL_REPORTER,
):
    """Greedy k-means++ (Arthur & Vassilvitskii, with local trials as in scikit-learn).

    Prior validation of data is assumed.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), in ``engine.xp``'s memory.
    n_clusters : int
    x_squared_norms : float64 array of shape (n_samples,)
    sample_weight : array of shape (n_samples,), X's dtype.
    random_state : numpy.random.RandomState
    engine : Engine
    n_local_trials : int, default=None
        Candidates tried per center; ``2 + int(ln(n_clusters))`` when None.
    reporter : Reporter, default=NULL_REPORTER
        Told of each center chosen (see :mod:`gpukmeans._progress`).

    Returns
    -------
    centers : array of shape (n_clusters, n_features), X's dtype and module.
    indices : int64 ndarray of shape (n_clusters,)
        Row of X each center was taken from.
    """
    xp = engine.xp
    n_samples, n_features = X.shape
    centers = xp.empty((n_clusters, n_features), dtype=X.dtype)
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))

    reporter.start_init("k-means++", n_clusters)
    weight_host = to_host(sample_weight)
    if engine.weighted_draw is not None:
        center_id = engine.weighted_draw(random_state, weight_host)
    else:
        center_id = random_state.choice(n_samples, p=weight_host / weight_host.sum())
    indices = np.full(n_clusters, -1, dtype=np.int64)
    centers[0] = engine.take_rows(X, xp.asarray([center_id]))[0]
    indices[0] = center_id

    if engine.start_kmeanspp is not None:
        candidates_step = engine.start_kmeanspp(X, x_squared_norms, sample_weight,
                                                n_clusters)
    else:
        candidates_step = functools.partial(
            engine.kmeanspp_candidates, X, x_squared_norms, sample_weight)
    # The first center's distances are its "candidate" step against +inf.
    no_center_yet = xp.full(n_samples, np.inf, dtype=X.dtype)
    distance_to_first, first_pot = candidates_step(
        xp.asarray([center_id], dtype=xp.int64), no_center_yet)
    closest_dist_sq = distance_to_first[0]
    current_pot = first_pot[0]
    reporter.init_step(1)

    for c in range(1, n_clusters):
        # Sample candidates with probability proportional to the weighted squared
        # distance to the closest center chosen so far.
        rand_vals = xp.asarray(random_state.uniform(size=n_local_trials)) * current_pot
        if engine.kmeanspp_search is not None:
            candidate_ids = engine.kmeanspp_search(sample_weight, closest_dist_sq, rand_vals)
        else:
            cumulative = xp.cumsum(sample_weight.astype(xp.float64) * closest_dist_sq)
            candidate_ids = xp.searchsorted(cumulative, rand_vals)
            # Rounding can put a draw past the last cumulative value.
            candidate_ids = xp.minimum(candidate_ids, n_samples - 1).astype(xp.int64)

        distance_to_candidates, candidates_pot = candidates_step(candidate_ids, closest_dist_sq)
        best = int(xp.argmin(candidates_pot))
        current_pot = candidates_pot[best]
        closest_dist_sq = distance_to_candidates[best]
        best_candidate = int(candidate_ids[best])
        centers[c] = engine.take_rows(X, xp.asarray([best_candidate]))[0]
        indices[c] = best_candidate
        # int() above waited for the engine: the count is of centers really chosen.
        reporter.init_step(c + 1)

    return centers, indices



def kmeans_plusplus_centred(X, X_mean, n_clusters, sample_weight, random_state, engine,
                            n_local_trials=None):
    """:func:`kmeans_plusplus` on X moved by ``X_mean`` (the engine's ``centered`` copy,
    as a fit seeds it), its centers X's own rows: ``(centers, indices)``."""
    seeded, x_squared_norms, _ = engine.centered(X, X_mean)
    _, indices = kmeans_plusplus(seeded, n_clusters, x_squared_norms, sample_weight,
                                 random_state, engine, n_local_trials)
    return engine.take_rows(X, engine.xp.asarray(indices)), indices

def random_init(X, n_clusters, sample_weight, random_state, engine):
    """``n_clusters`` distinct rows drawn with probability proportional to their weight."""
    weight_host = to_host(sample_weight)
    seeds = random_state.choice(
        X.shape[0], size=n_clusters, replace=False, p=weight_host / weight_host.sum()
    )
    return engine.take_rows(X, engine.xp.asarray(seeds))


KMEANS_PARALLEL_ROUNDS = 5
"""k-means||'s default number of rounds: Bahmani et al. found 5 enough (their Fig. 5.2),
and cuML, dask-ml and :class:`gpukmeans.dask.KMeans` use 5 too."""


def kmeans_parallel(
    X,
    n_clusters,
    sample_weight,
    random_state,
    engine,
    oversampling_factor=2.0,
    n_rounds=KMEANS_PARALLEL_ROUNDS,
    reporter=NULL_REPORTER,
    metric="euclidean",
):
    """k-means|| (scalable k-means++; Bahmani, Moseley, Vattani, Kumar and Vassilvitskii,
    "Scalable K-Means++", VLDB 2012), as cuML's and dask-ml's ``init="k-means||"``.

    One weighted random row, then ``n_rounds`` passes that each keep every sample
    independently with probability ``min(1, l w d^2 / cost)`` (``l = oversampling_factor
    * n_clusters``, ``d`` the distance to the nearest row kept so far, ``cost`` the sum of
    ``w d^2``): about ``l`` new candidates a round, found with one E-step against them.
    Each candidate is weighted by the weight of the samples nearest to it (each
    sample's nearest candidate is kept up to date round by round, see
    :func:`nearer_candidates`), and the weighted candidates are clustered into
    ``n_clusters`` by :class:`gpukmeans.KMeans` (k-means++, then Lloyd) on the CPU
    (:func:`recluster_candidates`). Greedy k-means++ makes ``n_clusters`` passes over X;
    this makes ``2 n_rounds + 1`` (the distances to the first row; each round an E-step
    against the new candidates, then the distances to them), whose E-steps are
    GEMM-shaped (against ``l`` candidates at a time): it pays when ``n_samples`` is many
    times ``5 l``.

    ``X`` is an array in the engine's memory, or a streamed fit's data
    (:class:`gpukmeans._streaming.StreamedData`,
    :class:`gpukmeans._gpu_streaming.DeviceStreamedData`), read a block at a time; then
    each sample's float64 distance to its nearest candidate and that candidate's int64
    number live in unlinked temporary files, and the result is the in-memory one bit for
    bit: the draws are made block by block from the same stream, the cost is NumPy's
    pairwise sum replayed (:func:`gpukmeans._replay.pairwise_sum`), the candidates'
    weights a sequential sum continued from block to block.

    Prior validation of data is assumed. The draws come from ``random_state`` (a
    ``numpy.random.RandomState``) on the host, so the same seed gives the same centers.
    ``metric="cosine"`` (X's rows unit vectors, whose ``d^2`` is ``2 (1 - cos)``): the
    candidates are reclustered by cosine k-means, so the centers are unit vectors.

    Returns
    -------
    centers : array of shape (n_clusters, n_features), X's dtype and module.
    candidates : int64 ndarray of shape (n_candidates,)
        The rows of X kept, in the order they were kept.
    """
    data = X if hasattr(X, "nearest_candidates") else _InMemoryData(X, sample_weight, engine)
    n_samples = data.shape[0]
    unit_centers = metric == "cosine"
    reporter.start_init("k-means||", n_clusters)

    def new_per_sample(fill, dtype):  # streamed: a file (page cache), not our memory
        return (temporary_array((n_samples,), dtype, fill) if data is X
                else np.full(n_samples, fill, dtype=dtype))

    closest_dist_sq = new_per_sample(np.inf, np.float64)
    nearest = new_per_sample(-1, np.int64)
    chosen = [np.array([weighted_choice(random_state, data, data.weights64)])]
    _nearer(data, data.take(chosen[0]), 0, closest_dist_sq, nearest, unit_centers)
    n_kept = 1
    oversampling = float(oversampling_factor) * n_clusters
    for _ in range(n_rounds):
        cost = float(pairwise_sum(
            lambda start, end: data.weights64(start, end) * closest_dist_sq[start:end],
            n_samples, data.block_rows))
        if not cost > 0:
            break  # every sample sits on a candidate
        new = []
        for start, end in data.blocks():  # one stream of draws, a block at a time
            draws = random_state.random_sample(end - start)
            new.append(start + np.flatnonzero(
                draws * cost
                < oversampling * data.weights64(start, end) * closest_dist_sq[start:end]))
        new = np.concatenate(new)
        if new.size == 0:
            continue
        _nearer(data, data.take(new), n_kept, closest_dist_sq, nearest, unit_centers)
        chosen.append(new)
        n_kept += new.size
    # A sample kept once sits at distance 0 from then on, so never twice.
    index = np.concatenate(chosen)
    if index.size < n_clusters:
        # Too few candidates (few distinct samples): top up with distinct rows drawn by
        # weight, as many as there are samples of positive weight. NumPy's draw needs
        # every weight at once: streamed, n_samples float64 for its while.
        weight = np.concatenate([data.weights64(start, end) for start, end in data.blocks()])
        n_draws = min(n_clusters, int(np.count_nonzero(weight)))
        extra = random_state.choice(n_samples, size=n_draws, replace=False,
                                    p=weight / weight.sum())
        del weight
        extra = np.setdiff1d(extra, index)
        if extra.size:  # none where every sample of positive weight is a candidate already
            _nearer(data, data.take(extra), index.size, closest_dist_sq, nearest,
                    unit_centers)
            index = np.concatenate([index, extra])
    candidates = data.take(index)
    # Each candidate weighs what its nearest samples weigh: no E-step against them all.
    candidate_weight = None
    for start, end in data.blocks():
        block_nearest, block_weight = nearest[start:end], data.weights64(start, end)
        if candidate_weight is not None:  # bincount's sums, continued sequentially
            block_nearest = np.concatenate([np.arange(index.size), block_nearest])
            block_weight = np.concatenate([candidate_weight, block_weight])
        candidate_weight = np.bincount(block_nearest, weights=block_weight,
                                       minlength=index.size)
    centers = recluster_candidates(to_host(candidates), candidate_weight, n_clusters,
                                   random_state, metric)
    reporter.init_step(n_clusters)
    xp = engine.xp
    return xp.ascontiguousarray(xp.asarray(centers).astype(candidates.dtype, copy=False)), index


class _InMemoryData:
    """k-means||'s view of an array in the engine's memory: one block (the protocol of
    the streamed fits' data, which :func:`kmeans_parallel` reads a block at a time)."""

    def __init__(self, X, sample_weight, engine):
        self.X, self.engine = X, engine
        self.shape = X.shape
        self.block_rows = X.shape[0]
        self._weight = to_host(sample_weight).astype(np.float64)

    def blocks(self):
        yield 0, self.shape[0]

    def weights64(self, start, end):
        return self._weight[start:end]

    def take(self, indices):
        return self.engine.take_rows(self.X, self.engine.xp.asarray(indices))

    def nearest_candidates(self, candidates, unit_centers):
        # The engine orders unit centers by dot products already (see get_engine).
        yield (0, self.shape[0]) + nearest_of(self.engine, self.X, candidates)


def nearest_of(engine, X, candidates):
    """Each row's nearest candidate (the engine's E-step label, host int64) and its
    squared distance to it (computed from the differences, host float64)."""
    labels = engine.xp.zeros(X.shape[0], dtype=engine.xp.int32)
    if candidates.shape[0] > 1:  # against one candidate every label is 0
        engine.assign_labels(X, candidates, labels)
    distances = to_host(engine.assigned_distances(X, candidates, labels))
    return to_host(labels).astype(np.int64), distances


def _nearer(data, candidates, first, closest_dist_sq, nearest, unit_centers):
    """:func:`nearer_candidates` on ``data``'s blocks, in place."""
    for start, end, labels, distances in data.nearest_candidates(candidates, unit_centers):
        closer = distances < closest_dist_sq[start:end]
        closest_dist_sq[start:end] = np.where(closer, distances, closest_dist_sq[start:end])
        nearest[start:end] = np.where(closer, labels + first, nearest[start:end])


def nearer_candidates(engine, X, candidates, first, closest_dist_sq, nearest):
    """k-means||'s bookkeeping after new candidates, in memory and on Dask: each
    sample's squared distance to its nearest candidate so far, and that candidate's
    number. Prior validation of data is assumed.

    Parameters
    ----------
    engine : Engine
    X : array of shape (n_samples, n_features), in ``engine.xp``'s memory.
    candidates : array of shape (n_new, n_features), X's dtype and module
        The new candidates, numbered ``first, first + 1, ...``; at least one.
    first : int
    closest_dist_sq : float64 ndarray of shape (n_samples,)
        Before the new candidates (``+inf`` before any).
    nearest : int64 ndarray of shape (n_samples,)
        Before the new candidates (-1 before any).

    Returns
    -------
    closest_dist_sq, nearest : new NumPy arrays, the same dtypes and shapes.
        A sample's nearest new candidate is the engine's E-step label, its distance
        computed from the differences in float64; it replaces the older one only when
        strictly nearer (ties keep the earlier candidate).
    """
    labels, distances = nearest_of(engine, X, candidates)
    closer = distances < closest_dist_sq
    return (np.where(closer, distances, closest_dist_sq),
            np.where(closer, labels + first, nearest))


def repeated_rows(rows, n_clusters):
    """``n_clusters`` initial centers from at most as many ``rows``: each row, then the
    rows again in order; the clusters of the repeats start empty and are relocated as in
    any fit. (k-means|| with too few candidates, k-means++ on Dask with too few samples
    of positive weight.)"""
    return rows[np.arange(n_clusters) % rows.shape[0]]


def recluster_candidates(candidates, candidate_weight, n_clusters, random_state,
                         metric="euclidean"):
    """k-means||'s last step, in memory and on Dask: the weighted candidates clustered
    into ``n_clusters`` by :class:`gpukmeans.KMeans` (weighted greedy k-means++, then
    Lloyd) on the CPU.

    Parameters
    ----------
    candidates : ndarray of shape (n_candidates, n_features), float32 or float64
        Distinct rows of X.
    candidate_weight : float64 ndarray of shape (n_candidates,)
        Weight of the samples nearest to each candidate.
    n_clusters : int
    random_state : numpy.random.RandomState
    metric : {"euclidean", "cosine"}, default="euclidean"

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), NumPy, the candidates' dtype.
        With no more candidates than clusters, the candidates themselves, repeated where
        there are fewer (those clusters start empty and are relocated as in any fit).
    """
    if candidates.shape[0] <= n_clusters:
        return repeated_rows(candidates, n_clusters)
    from ._estimator import KMeans  # the estimator reclusters the candidates

    # Inside the caller's fit: its bars and its one distinct-cluster warning (fewer
    # distinct candidates than clusters is fewer distinct samples) are the user's.
    with warnings.catch_warnings(), progress_bars(False):
        warnings.simplefilter("ignore", ConvergenceWarning)
        recluster = KMeans(n_clusters, init="k-means++", n_init=1, random_state=random_state,
                           metric=metric, device="cpu").fit(candidates,
                                                            sample_weight=candidate_weight)
    return recluster.cluster_centers_.astype(candidates.dtype, copy=False)
