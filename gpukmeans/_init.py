"""Initial centers: greedy k-means++, random, array or callable, for either engine.

The random draws are made on the host with a ``numpy.random.RandomState`` in exactly
the order scikit-learn makes them, so the same ``random_state`` picks the same points;
the passes over the data go through the engine.
"""

import numpy as np

from ._lloyd import to_host
from ._progress import NULL_REPORTER


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
    center_id = random_state.choice(n_samples, p=weight_host / weight_host.sum())
    indices = np.full(n_clusters, -1, dtype=np.int64)
    centers[0] = engine.take_rows(X, xp.asarray([center_id]))[0]
    indices[0] = center_id

    # The first center's distances are its "candidate" step against +inf.
    no_center_yet = xp.full(n_samples, np.inf, dtype=X.dtype)
    distance_to_first, first_pot = engine.kmeanspp_candidates(
        X, x_squared_norms, sample_weight, xp.asarray([center_id], dtype=xp.int64), no_center_yet
    )
    closest_dist_sq = distance_to_first[0]
    current_pot = first_pot[0]
    reporter.init_step(1)

    for c in range(1, n_clusters):
        # Sample candidates with probability proportional to the weighted squared
        # distance to the closest center chosen so far.
        rand_vals = xp.asarray(random_state.uniform(size=n_local_trials)) * current_pot
        cumulative = xp.cumsum(sample_weight.astype(xp.float64) * closest_dist_sq)
        candidate_ids = xp.searchsorted(cumulative, rand_vals)
        # Rounding can put a draw past the last cumulative value.
        candidate_ids = xp.minimum(candidate_ids, n_samples - 1).astype(xp.int64)

        distance_to_candidates, candidates_pot = engine.kmeanspp_candidates(
            X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq
        )
        best = int(xp.argmin(candidates_pot))
        current_pot = candidates_pot[best]
        closest_dist_sq = distance_to_candidates[best]
        best_candidate = int(candidate_ids[best])
        centers[c] = engine.take_rows(X, xp.asarray([best_candidate]))[0]
        indices[c] = best_candidate
        # int() above waited for the engine: the count is of centers really chosen.
        reporter.init_step(c + 1)

    return centers, indices


def random_init(X, n_clusters, sample_weight, random_state, engine):
    """``n_clusters`` distinct rows drawn with probability proportional to their weight."""
    weight_host = to_host(sample_weight)
    seeds = random_state.choice(
        X.shape[0], size=n_clusters, replace=False, p=weight_host / weight_host.sum()
    )
    return engine.take_rows(X, engine.xp.asarray(seeds))
