"""The CPU engine for sparse data (Numba): CSR rows against dense centers.

scikit-learn's ``lloyd_iter_chunked_sparse`` (``sklearn/cluster/_k_means_lloyd.pyx``)
computes, for each row and each center, ``x.c`` over the row's stored entries, in their
stored order, then ``||c||^2 - 2 x.c``; the lowest value wins, the lowest index on ties.
The E-step here computes the same sums in the same order, center by center, but walks
each stored entry once and adds its products with a whole row of the transposed centers
``centers_t[col, :]``, which is contiguous: scikit-learn reads ``centers[j, col]`` for
every center, ``n_features`` values apart. For float64 data every product and sum is
scikit-learn's, so the labels are its own, bit for bit; float32 data are summed in
float64 (products of float32 values are exact there), so float32 labels are the nearest
centers by float64 arithmetic rather than scikit-learn's float32 rounding.

The M-step sorts the rows by label (a stable counting sort) and sums each cluster's rows
in row order into its own row of ``sums`` (float64): clusters run in parallel, and every
sum has an order fixed by the data alone, whatever the number of threads.

Data are never centred (a centred sparse matrix is dense), as in scikit-learn. ``X`` is
a CSR matrix in canonical form (sorted indices or not, but no duplicate entries:
:func:`gpukmeans._validation.check_fit_data` sums them on a copy).

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit, prange

from ._cpu_runtime import CACHE, cpu_runtime, prange_only
from ._cpu_small import CHUNK_ROWS, centers_squared_norms
from ._engine import Engine, StatelessRun, by_dot_products

LARGEST_FLOAT64 = float(np.finfo(np.float64).max)


# --- kernels ---------------------------------------------------------------------------


@njit(nogil=True, forceinline=True, cache=CACHE)
def _row_dots(data, indices, start, end, centers_t, dots):
    """``dots[j] = x.c_j`` in float64 for the row whose entries are ``[start, end)``:
    each center's products added in the row's stored order, starting from 0. Inlined:
    called per row, where its call cost float32 labels 4-13% (a helper's audit)."""
    n_clusters = centers_t.shape[1]
    for j in range(n_clusters):
        dots[j] = 0.0
    for k in range(start, end):
        value = np.float64(data[k])
        center_column = centers_t[indices[k]]  # (n_clusters,), contiguous
        for j in range(n_clusters):
            dots[j] += np.float64(center_column[j]) * value


@njit(nogil=True, cache=CACHE)
def _nearest(dots, centers_squared_norms):
    """The lowest ``||c||^2 - 2 x.c``, the lowest index on ties (scikit-learn's loop)."""
    best = LARGEST_FLOAT64
    label = 0
    for j in range(dots.shape[0]):
        value = centers_squared_norms[j] - 2.0 * dots[j]
        if value < best:
            best = value
            label = j
    return label


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _assign_labels_csr(
    data,  # IN (nnz,)
    indices,  # IN (nnz,)
    indptr,  # IN (n_samples + 1,)
    centers_t,  # IN (n_features, n_clusters), X's dtype
    centers_squared_norms,  # IN (n_clusters,) float64
    labels,  # OUT (n_samples,) int32
    chunk_rows,
):
    n_samples = indptr.shape[0] - 1
    n_clusters = centers_t.shape[1]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    for chunk in prange(n_chunks):
        dots = np.empty(n_clusters, dtype=np.float64)
        for i in range(chunk * chunk_rows, min((chunk + 1) * chunk_rows, n_samples)):
            _row_dots(data, indices, indptr[i], indptr[i + 1], centers_t, dots)
            labels[i] = _nearest(dots, centers_squared_norms)


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _cluster_sums_csr(
    data,  # IN (nnz,)
    indices,  # IN (nnz,)
    indptr,  # IN (n_samples + 1,)
    sample_weight,  # IN (n_samples,)
    labels,  # IN (n_samples,) int32, in [0, n_clusters)
    n_clusters,
    n_features,
):
    """``(sums, weight_in_clusters)``: ``sum_i w_i x_i`` and ``sum_i w_i`` per cluster,
    float64, each cluster's rows added in row order."""
    n_samples = indptr.shape[0] - 1
    # A stable counting sort of the rows by label.
    starts = np.zeros(n_clusters + 1, dtype=np.int64)
    for i in range(n_samples):
        starts[labels[i] + 1] += 1
    for c in range(n_clusters):
        starts[c + 1] += starts[c]
    cursor = starts[:-1].copy()
    order = np.empty(n_samples, dtype=np.int64)
    for i in range(n_samples):
        order[cursor[labels[i]]] = i
        cursor[labels[i]] += 1

    sums = np.empty((n_clusters, n_features), dtype=np.float64)
    weight_in_clusters = np.empty(n_clusters, dtype=np.float64)
    for c in prange(n_clusters):
        center_sum = sums[c]
        center_sum[:] = 0.0
        weight = 0.0
        for p in range(starts[c], starts[c + 1]):
            i = order[p]
            w = np.float64(sample_weight[i])
            weight += w
            for k in range(indptr[i], indptr[i + 1]):
                center_sum[indices[k]] += w * np.float64(data[k])
        weight_in_clusters[c] = weight
    return sums, weight_in_clusters


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _assigned_distances_csr(data, indices, indptr, centers, centers_squared_norms, labels):
    """``||x_i - centers[labels[i]]||^2`` in float64, scikit-learn's
    ``_euclidean_sparse_dense``: ``sum over stored (x - c)^2 - c^2``, then ``+ ||c||^2``,
    clipped at 0 (the differences where x is stored, the norm elsewhere)."""
    n_samples = indptr.shape[0] - 1
    distances = np.empty(n_samples, dtype=np.float64)
    for i in prange(n_samples):
        center = centers[labels[i]]
        result = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            c = np.float64(center[indices[k]])
            diff = np.float64(data[k]) - c
            result += diff * diff - c * c
        result += centers_squared_norms[labels[i]]
        distances[i] = max(result, 0.0)
    return distances


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _inertia_csr(data, indices, indptr, sample_weight, centers, centers_squared_norms, labels,
                 chunk_rows):
    """``sum_i w_i ||x_i - centers[labels[i]]||^2`` in float64: per chunk, then the chunks'
    sums in chunk order."""
    distances = _assigned_distances_csr(data, indices, indptr, centers, centers_squared_norms,
                                        labels)
    n_samples = distances.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    partials = np.zeros(n_chunks, dtype=np.float64)
    for chunk in prange(n_chunks):
        total = 0.0
        for i in range(chunk * chunk_rows, min((chunk + 1) * chunk_rows, n_samples)):
            total += np.float64(sample_weight[i]) * distances[i]
        partials[chunk] = total
    total = 0.0
    for chunk in range(n_chunks):
        total += partials[chunk]
    return total


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _row_norms_csr(data, indptr):
    """``||x_i||^2`` in float64, the stored entries squared and added in order."""
    n_samples = indptr.shape[0] - 1
    norms = np.empty(n_samples, dtype=np.float64)
    for i in prange(n_samples):
        total = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            value = np.float64(data[k])
            total += value * value
        norms[i] = total
    return norms


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _squared_distances_csr(
    data,  # IN (nnz,)
    indices,  # IN (nnz,)
    indptr,  # IN (n_samples + 1,)
    x_squared_norms,  # IN (n_samples,) float64
    centers_t,  # IN (n_features, n_centers)
    centers_squared_norms,  # IN (n_centers,) float64
    out,  # OUT (n_centers, n_samples): ||x - c||^2 rounded to out's dtype
    chunk_rows,
):
    """``||x||^2 - 2 x.c + ||c||^2`` in float64, clipped at 0, for every (center, row)."""
    n_samples = indptr.shape[0] - 1
    n_centers = centers_t.shape[1]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    for chunk in prange(n_chunks):
        dots = np.empty(n_centers, dtype=np.float64)
        for i in range(chunk * chunk_rows, min((chunk + 1) * chunk_rows, n_samples)):
            _row_dots(data, indices, indptr[i], indptr[i + 1], centers_t, dots)
            for j in range(n_centers):
                value = x_squared_norms[i] - 2.0 * dots[j] + centers_squared_norms[j]
                out[j, i] = max(value, 0.0)


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _kmeanspp_potentials(distance_to_candidates, closest_dist_sq, sample_weight, chunk_rows):
    """INOUT ``distance_to_candidates`` min-ed with ``closest_dist_sq``; returns each
    candidate's ``sum_i w_i d_i`` in float64 (per chunk, then the chunks in order)."""
    n_candidates, n_samples = distance_to_candidates.shape
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    partials = np.zeros((n_chunks, n_candidates), dtype=np.float64)
    for chunk in prange(n_chunks):
        for i in range(chunk * chunk_rows, min((chunk + 1) * chunk_rows, n_samples)):
            weight = np.float64(sample_weight[i])
            for j in range(n_candidates):
                if closest_dist_sq[i] < distance_to_candidates[j, i]:
                    distance_to_candidates[j, i] = closest_dist_sq[i]
                partials[chunk, j] += weight * distance_to_candidates[j, i]
    candidates_pot = np.zeros(n_candidates, dtype=np.float64)
    for chunk in range(n_chunks):
        for j in range(n_candidates):
            candidates_pot[j] += partials[chunk, j]
    return candidates_pot


@njit(nogil=True, cache=CACHE)
def has_duplicate_entries(indices, indptr, n_features):
    """Whether a row stores a column twice: one pass, remembering the last row that stored
    each column (sorting every row, as ``sum_duplicates`` does, costs far more)."""
    last_row = np.full(n_features, -1, dtype=np.int64)
    for i in range(indptr.shape[0] - 1):
        for k in range(indptr[i], indptr[i + 1]):
            if last_row[indices[k]] == i:
                return True
            last_row[indices[k]] = i
    return False


# --- the Engine functions ----------------------------------------------------------------


def _csr(X):
    return X.data, X.indices, X.indptr


def _squared_norms_f64(centers):
    """``||c||^2`` in float64: scikit-learn's own ``row_norms`` (an einsum) for float64
    centers, so that float64 labels are its own bit for bit; float32 centers are upcast."""
    return centers_squared_norms(centers.astype(np.float64, copy=False))


def _transposed(centers):
    return np.ascontiguousarray(centers.T)  # (n_features, n_clusters)


def assign_labels(X, centers, labels, unit_centers=False):
    """Engine ``assign_labels``: the least ``||c||^2 - 2 x.c`` in float64, ``||c||^2``
    exactly 1 for ``unit_centers`` (cosine fits: ordered by dot product alone, an exact
    tie, as a row that shares no term with any center, to the lowest index)."""
    squared_norms = (np.ones(centers.shape[0]) if unit_centers
                     else _squared_norms_f64(centers))
    _assign_labels_csr(*_csr(X), _transposed(centers), squared_norms, labels, CHUNK_ROWS)


def cluster_sums(X, sample_weight, labels, n_clusters):
    """``(sums, weight_in_clusters)`` of the rows by label, float64, in a fixed order."""
    return _cluster_sums_csr(*_csr(X), sample_weight, labels, n_clusters, X.shape[1])


def lloyd_iter(X, sample_weight, centers_old, labels, unit_centers=False):
    assign_labels(X, centers_old, labels, unit_centers)
    return cluster_sums(X, sample_weight, labels, centers_old.shape[0])


def start_lloyd(X, x_squared_norms, sample_weight, n_clusters, unit_centers=False):
    return StatelessRun(X, sample_weight,
                        by_dot_products(lloyd_iter, unit_centers),
                        by_dot_products(assign_labels, unit_centers), inertia)


def assigned_distances(X, centers, labels):
    return _assigned_distances_csr(*_csr(X), centers, _squared_norms_f64(centers), labels)


def inertia(X, sample_weight, centers, labels):
    return np.float64(_inertia_csr(*_csr(X), sample_weight, centers, _squared_norms_f64(centers),
                                   labels, CHUNK_ROWS))


def row_norms(X):
    return _row_norms_csr(X.data, X.indptr)


def squared_distances(X, x_squared_norms, centers, dtype):
    """``(n_centers, n_samples)`` ``||x - c||^2`` in float64 arithmetic, rounded to ``dtype``."""
    out = np.empty((centers.shape[0], X.shape[0]), dtype=dtype)
    _squared_distances_csr(*_csr(X), x_squared_norms, _transposed(centers),
                           _squared_norms_f64(centers), out, CHUNK_ROWS)
    return out


def pairwise_distances(X, centers):
    distances = squared_distances(X, row_norms(X), centers, np.float64)
    return np.sqrt(distances).T.astype(X.dtype, order="C")  # (n_samples, n_clusters)


def kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq):
    candidates = take_rows(X, candidate_ids)
    # ||c||^2 as the samples' own norms, so that a candidate's distance to itself is 0.
    distance_to_candidates = np.empty((candidates.shape[0], X.shape[0]), dtype=X.dtype)
    _squared_distances_csr(*_csr(X), x_squared_norms, _transposed(candidates),
                           x_squared_norms[candidate_ids], distance_to_candidates, CHUNK_ROWS)
    candidates_pot = _kmeanspp_potentials(distance_to_candidates, closest_dist_sq, sample_weight,
                                          CHUNK_ROWS)
    return distance_to_candidates, candidates_pot


def centered(X, X_mean, x_squared_norms=None):
    """Sparse data are not centred (scikit-learn does not either): it would make them dense."""
    return X, row_norms(X), False


def take_rows(X, indices):
    return np.ascontiguousarray(X[np.asarray(indices)].toarray())


def make_engine(unit_centers=False):
    """The CSR engine; ``unit_centers`` (cosine fits and their inference): see
    :func:`assign_labels`."""
    return Engine(
        name="cpu",
        xp=np,
        lloyd_iter=by_dot_products(lloyd_iter, unit_centers),
        start_lloyd=by_dot_products(start_lloyd, unit_centers),
        assign_labels=by_dot_products(assign_labels, unit_centers),
        assigned_distances=assigned_distances,
        inertia=inertia,
        pairwise_distances=pairwise_distances,
        row_norms=row_norms,
        centered=centered,
        kmeanspp_candidates=kmeanspp_candidates,
        runtime=cpu_runtime,
        take_rows=take_rows,
    )
