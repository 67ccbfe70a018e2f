"""The CPU engine's k-means++ step: the distances from every sample to a few candidate
centers, and each candidate's potential (scikit-learn's greedy local trials).

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit, prange

from ._cpu_lloyd import _group_bounds
from ._cpu_nearest import _chunk_dots_blocked, _row_dots
from ._cpu_runtime import CACHE, prange_only


@njit(nogil=True, cache=CACHE)
def _kmeanspp_candidates_chunked(
    X,  # IN (n_samples, n_features)
    x_squared_norms,  # IN (n_samples,) float64
    sample_weight,  # IN (n_samples,)
    candidate_ids,  # IN (n_candidates,) int64
    closest_dist_sq,  # IN (n_samples,) X.dtype
    chunk_rows,
    n_groups,
):
    n_samples, n_features = X.shape
    n_candidates = candidate_ids.shape[0]
    candidates = np.empty((n_candidates, n_features), dtype=X.dtype)
    for j in range(n_candidates):
        candidates[j] = X[candidate_ids[j]]
    distance_to_candidates = np.empty((n_candidates, n_samples), dtype=X.dtype)
    pot_part = np.zeros((n_groups, n_candidates), dtype=np.float64)
    _kmeanspp_partials(
        X, x_squared_norms, sample_weight, candidates, x_squared_norms[candidate_ids],
        closest_dist_sq, chunk_rows, n_groups, distance_to_candidates, pot_part,
    )
    candidates_pot = pot_part[0].copy()
    for group in range(1, n_groups):
        candidates_pot += pot_part[group]
    return distance_to_candidates, candidates_pot


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _kmeanspp_partials(
    X,  # IN (n_samples, n_features)
    x_squared_norms,  # IN (n_samples,) float64
    sample_weight,  # IN (n_samples,)
    candidates,  # IN (n_candidates, n_features) X.dtype
    candidate_squared_norms,  # IN (n_candidates,) float64
    closest_dist_sq,  # IN (n_samples,) X.dtype
    chunk_rows,
    n_groups,
    distance_to_candidates,  # OUT (n_candidates, n_samples) X.dtype
    pot_part,  # INOUT (n_groups, n_candidates) float64: each group's potentials, added to
):
    """Each group's samples' distances to the candidates, and the group's weighted sums of
    them added to its row of ``pot_part`` in sample order (a streamed fit continues a
    group's sums block after block: :mod:`gpukmeans._streaming`)."""
    n_samples, n_features = X.shape
    n_candidates = candidates.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows

    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        dots = np.empty((chunk_rows, n_candidates), dtype=X.dtype)
        rows = np.empty(chunk_rows, dtype=np.int64)
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            if n_candidates <= 4:
                for sample in range(chunk_start, chunk_end):
                    _row_dots(X[sample], candidates, dots[sample - chunk_start])
            else:
                _chunk_dots_blocked(X, chunk_start, chunk_end, candidates, rows, dots)
            for sample in range(chunk_start, chunk_end):
                weight = np.float64(sample_weight[sample])
                for j in range(n_candidates):
                    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, the norms in float64.
                    d = (
                        x_squared_norms[sample]
                        - 2.0 * dots[sample - chunk_start, j]
                        + candidate_squared_norms[j]
                    )
                    # Stored (rounded to X's dtype) before the min, as scikit-learn does.
                    distance_to_candidates[j, sample] = max(d, 0.0)
                    if closest_dist_sq[sample] < distance_to_candidates[j, sample]:
                        distance_to_candidates[j, sample] = closest_dist_sq[sample]
                    pot_part[group, j] += weight * distance_to_candidates[j, sample]
