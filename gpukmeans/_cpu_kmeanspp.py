"""The CPU engine's k-means++ step: the distances from every sample to a few candidate
centers, and each candidate's potential (scikit-learn's greedy local trials).

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit, prange

from ._cpu_lloyd import _group_bounds
from ._cpu_nearest import (
    _chunk_dots_blocked, _chunk_dots_by_rows, _row_dots, padded_centers,
)
from ._cpu_panel import panel_chunk_dots, transposed_chunk_dots
from ._cpu_runtime import CACHE, ROW_WORK, prange_only, threaded

# Up to FUSED_MAX_FEATURES features, a chunk's distances to the candidates, their min
# with the closest so far and the potentials come from loops vectorised over the chunk's
# rows (_chunk_candidates_fused), after the dot products: up to TRANSPOSED_MAX_FEATURES,
# and for float32 up to PANEL_MAX_FEATURES, multiply-adds across the rows stored feature
# by feature (gpukmeans._cpu_panel: the whole of X transposed once for the run, or each
# chunk as it comes), else a GEMM of the chunk by the candidates. One step of 5
# candidates on 100,000 random float32 rows, one thread, ms, before and after fusing:
# d=2 4.49 -> 0.75, d=8 3.28 -> 1.37, d=16 3.33 -> 1.50, d=32 3.46 -> 2.49, d=64 6.01 ->
# 4.77; d=128 9.9 (12.6 fused). The dot products alone, GEMM against panel: d=16 0.52 /
# 0.28, d=32 0.96-1.0 / 0.31-0.52, d=64 (8 candidates) 1.5-1.8 / 1.6-2.0, d=128 3.5-3.8
# / 4.3-4.9. float64 keeps the GEMM from 9 features: its picks are scikit-learn's
# (see kmeanspp_rows_first).
FUSED_MAX_FEATURES = 64
TRANSPOSED_MAX_FEATURES = 8
PANEL_MAX_FEATURES = 32

# Beyond FUSED_MAX_FEATURES, each row's dot products with its step's candidates come
# from the row alone (_row_dots, _chunk_dots_by_rows: X streamed once, the candidates in
# L1) for up to four candidates, and for more up to ROW_DOTS_MAX_FEATURES; else from
# blocks of six rows by four candidates (_chunk_dots_blocked), which reuse each
# candidate value six times and win on long rows. One step, one thread, ms, blocks of
# six rows / eight candidates a row (alternated, medians of 5-7): float32 100,000 x 100,
# 6 candidates 7.9 / 6.1; x 128, 5: 8.9-9.1 / 4.8-5.5; 9: 10.8 / 7.8; 11: 11.1 / 10.6; x
# 256, 7: 15.6-16.0 / 10.8-13.1; 50,000 x 512, 7: 13.4 / 11.7; 70,000 x 784, 5: 23.8 /
# 31.8, 7: 25.5 / 30.1; float64 100,000 x 128, 5: 17.0 / 14.5; x 256, 7: 23.8 / 19.7.
# (Stop 37, when five and six candidates took a padded pass of eight; they now take
# four and single products, faster still: see _cpu_nearest.BY_EIGHT_MIN_CENTERS.)
ROW_DOTS_MAX_FEATURES = 512

# A step takes its rows KMEANSPP_CHUNK_ROWS at a time, not the E-step's 256: a chunk's
# few candidates make a small product, whose BLAS call, transposition and fold cost
# about what its arithmetic does at 256 rows. One step, two threads, ms, alternated, 256
# against 2048 rows: float32 100,000 x 2, 5 candidates 0.92 / 0.74, x 8 1.04 / 0.73,
# x 32 1.61 / 1.25, 11 candidates 2.16 / 1.98, x 64 (8) 3.08 / 2.78, x 128 4.49 /
# 4.28; 10,000 x 32 0.154 / 0.126; 1,000,000 x 32 (8) 10.3 / 9.4; MNIST (4) 9.2 / 9.5;
# float64 100,000 x 8 0.66 / 0.48, x 32 2.45 / 2.22; 1,000,000 x 32 (8) 30.6 / 27.7. The
# potentials are summed chunk by chunk: a streamed step takes the same chunks
# (gpukmeans._streaming), so that its picks are the in-memory ones.
KMEANSPP_CHUNK_ROWS = 2048


# float32's GEMM multiplies the chunk's rows by the candidates, and the small (chunk,
# n_candidates) result is transposed for the vectorised fold: OpenBLAS packs the chunk
# faster as the left operand, as in the E-step (_cpu_nearest.gemm_rows_first). One step
# on 100,000 random float32 rows, one thread, ms, candidates x rows against rows x
# candidates: d=16 3 candidates 0.89 / 0.66, 8: 1.08 / 0.84; d=32 3: 1.83 / 1.10, 5: 2.22
# / 1.42, 8: 2.37 / 1.39, 11: 3.11 / 2.12; d=48 5: 4.28 / 2.60; d=64 8: 3.94 / 2.95;
# one candidate (a GEMV) the same. float64 keeps scikit-learn's orientation: the bits of
# a product change with it (an odd number of candidates), and float64 picks are
# scikit-learn's (but where its one GEMM over all of X gives two equal rows distances
# that differ in their last bits, and ours do not: the tie then picks the other row).
def kmeanspp_rows_first(dtype_size):
    return dtype_size == 4


_kmeanspp_rows_first = njit(nogil=True, cache=CACHE)(kmeanspp_rows_first)


# X transposed for the steps costs a copy of X: kept within this many bytes, beyond
# which float32 X of more than TRANSPOSED_MAX_FEATURES keeps its GEMM (transposing each
# chunk of each step cost about what the GEMM does).
TRANSPOSED_MAX_BYTES = 256 * 2**20


def by_panel(n_samples, n_features, dtype_size):
    """Whether the k-means++ steps' dot products are multiply-adds over feature-major
    rows (:mod:`gpukmeans._cpu_panel`): by the shape and dtype alone, so that a step over
    X transposed once and one that transposes each chunk (a streamed step) give the same
    bits."""
    return n_features <= TRANSPOSED_MAX_FEATURES or (
        dtype_size == 4 and n_features <= PANEL_MAX_FEATURES
        and n_samples * n_features * dtype_size <= TRANSPOSED_MAX_BYTES)


def transposes_once(n_samples, n_features, dtype_size, n_clusters):
    """Whether a seeding of ``n_clusters`` centers in memory transposes X once for its
    steps: where they take their dot products over feature-major rows, the copy fits in
    TRANSPOSED_MAX_BYTES, and it pays (else each step transposes its chunks, the same
    bits). A seeding passes over X once per center; at two passes (two centers) the
    copy costs more than transposing each chunk as it is read, from three it costs less
    (default fits, float32 blobs, the two alternated in one process, ms, once / each
    chunk: 100,000 x 32, k=2 15.5 / 13.5 and, another run, 14.5 / 12.7; x 16, k=2 8.1
    / 7.3; k=3 21.0 / 21.5)."""
    return (n_clusters >= 3 and by_panel(n_samples, n_features, dtype_size)
            and n_samples * n_features * dtype_size <= TRANSPOSED_MAX_BYTES)


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=CACHE)
def _chunk_candidates_fused(
    X,  # IN (n_samples, n_features)
    X_t,  # IN (n_features, n_samples) X transposed, or (0, 0): transpose each chunk
    chunk_start,
    chunk_end,
    x_squared_norms,  # IN (n_samples,) float64
    sample_weight,  # IN (n_samples,)
    candidates,  # IN (n_candidates, n_features)
    candidates_squared_norms,  # IN (n_candidates,) float64
    closest_dist_sq,  # IN (n_samples,) X.dtype
    scratch,  # SCRATCH (>= (n_features + 2 * n_candidates) * chunk,) X.dtype
    panel,  # by_panel(X's whole shape)
    distance_to_candidates,  # OUT (n_candidates, n_samples) X.dtype, the chunk's columns
    pot,  # INOUT (n_candidates,) float64: the chunk's potentials added
):
    """The chunk's distances to every candidate and their potentials, vectorised over
    the rows; the dot products over feature-major rows (:func:`by_panel`) or by GEMM.
    ``reassoc`` vectorises the potentials' sums; their order is then fixed by the
    compiled code, the same for every thread count."""
    n_rows = chunk_end - chunk_start
    n_candidates = candidates.shape[0]
    all_dots = scratch[: n_candidates * n_rows].reshape((n_candidates, n_rows))
    if panel:
        if X_t.shape[1] > 0:
            panel_chunk_dots(X_t, chunk_start, chunk_end, candidates, all_dots)
        else:
            transposed_chunk_dots(X, chunk_start, chunk_end, candidates,
                                  scratch[n_candidates * n_rows:], all_dots)
    elif _kmeanspp_rows_first(X.itemsize):
        dots_by_row = scratch[n_candidates * n_rows: 2 * n_candidates * n_rows].reshape(
            (n_rows, n_candidates))
        np.dot(X[chunk_start:chunk_end], candidates.T, dots_by_row)
        for j in range(n_candidates):
            for i in range(n_rows):
                all_dots[j, i] = dots_by_row[i, j]
    else:
        np.dot(candidates, X[chunk_start:chunk_end].T, all_dots)
    for j in range(n_candidates):
        dots = all_dots[j]
        distances = distance_to_candidates[j, chunk_start:chunk_end]
        closest = closest_dist_sq[chunk_start:chunk_end]
        norms = x_squared_norms[chunk_start:chunk_end]
        weights = sample_weight[chunk_start:chunk_end]
        candidate_norm = candidates_squared_norms[j]
        total = 0.0
        for i in range(n_rows):
            # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, the norms in float64; rounded to
            # X's dtype before the min, as scikit-learn does.
            d = X.dtype.type(max(norms[i] - 2.0 * dots[i] + candidate_norm, 0.0))
            d = min(d, closest[i])
            distances[i] = d
            total += np.float64(weights[i]) * np.float64(d)
        pot[j] += total


def _kmeanspp_candidates_chunked(
    X,  # IN (n_samples, n_features)
    X_t,  # IN (n_features, n_samples) X transposed, or (0, 0) (see by_panel)
    x_squared_norms,  # IN (n_samples,) float64
    sample_weight,  # IN (n_samples,)
    candidate_ids,  # IN (n_candidates,) int64
    closest_dist_sq,  # IN (n_samples,) X.dtype
    chunk_rows,
    n_groups,
):
    """:func:`kmeanspp_partials` over all of X, its groups' potentials added in group
    order. (Not compiled itself: the kernel it calls is chosen by the features and
    Numba's thread count, :class:`gpukmeans._cpu_runtime.ThreadedKernel`.)"""
    n_samples, n_features = X.shape
    n_candidates = candidate_ids.shape[0]
    candidates = X[candidate_ids]
    distance_to_candidates = np.empty((n_candidates, n_samples), dtype=X.dtype)
    pot_part = np.zeros((n_groups, n_candidates), dtype=np.float64)
    kmeanspp_partials(
        X, X_t, by_panel(n_samples, n_features, X.itemsize), x_squared_norms, sample_weight,
        candidates, x_squared_norms[candidate_ids], closest_dist_sq, chunk_rows, n_groups,
        distance_to_candidates, pot_part,
    )
    candidates_pot = pot_part[0].copy()
    for group in range(1, n_groups):
        candidates_pot += pot_part[group]
    return distance_to_candidates, candidates_pot


def _kmeanspp_work(X, X_t, panel, x_squared_norms, sample_weight, candidates, *args):
    """The step's work, for the threshold of its serial twin
    (:class:`gpukmeans._cpu_runtime.ThreadedKernel`): the E-step's measure of the same
    shapes, whose per-row cost the threshold was set on, two thirds of it for dot
    products over feature-major rows (``panel``). Whole seedings (default fits of one
    iteration), float32 blobs, 0.25 s apart, alternated, medians of 7, ms, serial steps /
    parallel, on a Zen 3 EPYC: 100,000 x 32 k=8 38.9 / 32.1, k=32 139 / 120, k=64 245 /
    182; x 16 k=32 77.0 / 76.0; x 8 k=32 44.6 / 47.8; x 2 k=32 37.3 / 40.2; 30,000 x 32
    k=32 32.9 / 37.8; and on stop 62's Xeon 100,000 x 32 0.91-0.94x, x 16 0.95x, x 8
    1.05x, x 2 1.16x: parallel at 100,000 rows from k=8 at 32 features (4 candidates),
    from k=21 at 24 (5), where half the work (stop 60's rule) had kept them serial. That
    rule came from the steps alone, back to back, which favoured one thread at 100,000
    x 32 (5 candidates, two threads against one: 0.46-0.60 / 0.34-0.49 ms; 150,000:
    0.62-1.10 / 0.99-1.01; 300,000: 1.32 / 2.27; 1,000,000 4.9 / 9.5; 8 features,
    300,000 0.83 / 0.71, 1,000,000 3.9 / 4.1); whole seedings, which the rule is for,
    did not."""
    work = X.shape[0] * (X.shape[1] * candidates.shape[0] + ROW_WORK)
    return work * 2 // 3 if panel else work


def kmeanspp_partials(
    X,  # IN (n_samples, n_features)
    X_t,  # IN (n_features, n_samples) X transposed, or (0, 0) (see by_panel)
    panel,  # by_panel(the whole data's shape)
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
    group's sums block after block: :mod:`gpukmeans._streaming`): by
    :func:`_kmeanspp_fused_partials` up to FUSED_MAX_FEATURES features, else by
    :func:`_kmeanspp_dots_partials`.

    Two kernels, not one with both paths: a compiled kernel carries the code of all it
    calls, compiled again in it, so one kernel made every fit compile both paths, twice
    (a serial twin and a parallel kernel). The first fit on 20,000 MNIST images, an
    empty cache, two threads: 39.7 s of compiles, 24 of them k-means++'s; 28.8 without
    the fused path."""
    partials = (_kmeanspp_fused_partials if X.shape[1] <= FUSED_MAX_FEATURES
                else _kmeanspp_dots_partials)
    partials(X, X_t, panel, x_squared_norms, sample_weight, candidates,
             candidate_squared_norms, closest_dist_sq, chunk_rows, n_groups,
             distance_to_candidates, pot_part)


@threaded(_kmeanspp_work)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _kmeanspp_fused_partials(X, X_t, panel, x_squared_norms, sample_weight, candidates,
                             candidate_squared_norms, closest_dist_sq, chunk_rows, n_groups,
                             distance_to_candidates, pot_part):
    """:func:`kmeanspp_partials` up to FUSED_MAX_FEATURES features: each chunk by
    :func:`_chunk_candidates_fused`."""
    n_samples, n_features = X.shape
    n_candidates = candidates.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        scratch = np.empty((n_features + 2 * n_candidates) * chunk_rows, dtype=X.dtype)
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            _chunk_candidates_fused(
                X, X_t, chunk_start, chunk_end, x_squared_norms, sample_weight,
                candidates, candidate_squared_norms, closest_dist_sq, scratch, panel,
                distance_to_candidates, pot_part[group])


@threaded(_kmeanspp_work)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _kmeanspp_dots_partials(X, X_t, panel, x_squared_norms, sample_weight, candidates,
                            candidate_squared_norms, closest_dist_sq, chunk_rows, n_groups,
                            distance_to_candidates, pot_part):
    """:func:`kmeanspp_partials` beyond FUSED_MAX_FEATURES features: a chunk's dot
    products with the candidates (see ROW_DOTS_MAX_FEATURES), then its distances and
    potentials row by row."""
    n_samples, n_features = X.shape
    n_candidates = candidates.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    by_rows = n_candidates > 4 and n_features <= ROW_DOTS_MAX_FEATURES
    n_padded = padded_centers(n_candidates)
    padded = np.zeros((n_padded if by_rows else 0, n_features), dtype=X.dtype)
    if by_rows:
        # Copied value by value: an array assigned to a slice compiles Numba's
        # shape-mismatch message (string formatting, 2-3 s of a first fit's compile).
        for j in range(n_candidates):
            for f in range(n_features):
                padded[j, f] = candidates[j, f]

    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        dots = np.empty((chunk_rows, n_padded), dtype=X.dtype)
        rows = np.empty(chunk_rows, dtype=np.int64)
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            if n_candidates <= 4:
                for sample in range(chunk_start, chunk_end):
                    _row_dots(X, sample, candidates, dots, sample - chunk_start)
            elif by_rows:
                _chunk_dots_by_rows(X, chunk_start, chunk_end, padded, n_candidates, dots)
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


@njit(nogil=True, cache=CACHE)
def _sorts_before(a, b):
    """Whether ``a`` goes before ``b`` in ``np.sort``'s order, NaN last."""
    return not np.isnan(a) and (np.isnan(b) or a < b)


@njit(nogil=True, cache=CACHE)
def kmeanspp_search(
    sample_weight,  # IN (n_samples,)
    closest_dist_sq,  # IN (n_samples,)
    targets,  # IN (n_targets,) float64
):
    """Engine ``kmeanspp_search``: NumPy's ``cumsum`` of the float64 products is a
    sequential sum, which this loop adds in the same order (no ``fastmath``: nothing may
    reassociate it), and ``searchsorted`` finds the first sum not below each target; a
    target no sum reaches (rounding, or a NaN target) takes the last sample, as the
    clipped ``searchsorted`` gives it. The sums are finite on validated data (a NaN sum,
    which ``searchsorted`` would order last, is not handled)."""
    n_samples = sample_weight.shape[0]
    n_targets = targets.shape[0]
    found = np.full(n_targets, n_samples - 1, dtype=np.int64)
    # The targets in increasing order, NaN last, by insertion: a few (2 + ln k), and
    # np.argsort compiles a quicksort (1.2 s of a first fit). Equal targets find the
    # same sample in any order.
    order = np.empty(n_targets, dtype=np.int64)
    for t in range(n_targets):
        u = t
        while u > 0 and _sorts_before(targets[t], targets[order[u - 1]]):
            order[u] = order[u - 1]
            u -= 1
        order[u] = t
    position = 0
    cumulative = 0.0
    for i in range(n_samples):
        if position == n_targets:
            break
        cumulative += np.float64(sample_weight[i]) * np.float64(closest_dist_sq[i])
        while position < n_targets and cumulative >= targets[order[position]]:
            found[order[position]] = i
            position += 1
    return found


def weighted_draw(random_state, sample_weight):
    """Engine ``weighted_draw``. NumPy's ``choice`` with ``p`` takes ``p`` in float64,
    ``cdf = p.cumsum(); cdf /= cdf[-1]`` and the first index whose ``cdf`` exceeds one
    ``random_sample()``; ``p`` is the weights divided by their sum in their own dtype
    (NumPy's pairwise sum, taken here as the caller took it). Its checks that ``p`` is
    non-negative and sums to 1 are left out: the fit validated the weights (and those
    sums drift past its tolerance in float32 over some 10^8 samples)."""
    weight_sum = sample_weight.sum()
    return int(_weighted_draw(sample_weight, weight_sum, random_state.random_sample()))


@njit(nogil=True, cache=CACHE)
def _weighted_draw(
    sample_weight,  # IN (n_samples,)
    weight_sum,  # IN sample_weight's dtype
    uniform,  # IN float64 in [0, 1)
):
    """:func:`weighted_draw`'s two passes: the last cumulative probability, then the
    first whose quotient by it exceeds ``uniform``; sequential sums, no ``fastmath``."""
    n_samples = sample_weight.shape[0]
    total = 0.0
    for i in range(n_samples):
        total += np.float64(sample_weight[i] / weight_sum)
    cumulative = 0.0
    for i in range(n_samples):
        cumulative += np.float64(sample_weight[i] / weight_sum)
        if cumulative / total > uniform:
            return i
    return n_samples - 1  # unreachable: the last quotient is 1
