"""The CPU engine's distance kernels: dot products of rows with centers without BLAS,
and the nearest center of a row, near-ties decided exactly (:mod:`gpukmeans._cpu_exact`).

Few clusters (the E-step at small k) or a few candidates (each k-means++ step) make a
GEMM skinny; these kernels keep the sums in registers instead, and the value of a (row,
center) pair never depends on the block it sits in. ``||x - c||^2 = ||x||^2 - 2 x.c +
||c||^2``: the argmin over c needs only ``||c||^2 - 2 x.c``.

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import literally, njit

from ._cpu_blas import gemm_nt_accumulate
from ._cpu_distance import squared_distance_f64 as _squared_distance_f64
from ._cpu_distance import squared_norm_f64 as _squared_norm_f64
from ._cpu_exact import (certified_grid_exponent, exact_order, float64_is_exact, on_grid,
                         rank_bounds)
from ._cpu_panel import (BLOCK_CENTERS, BLOCK_ROWS, ROW_DOTS_IN_IR, block_dots,
                         block_dots_two, row_dots_1x4, row_dots_1x8)
from ._cpu_panel import start_nearest_two as _start_nearest_two
from ._cpu_runtime import CACHE
from ._cpu_small import SUBNORMAL_NORM as _SUBNORMAL_NORM


# Every pass that measures samples against their centers (a run's final E-step, the
# inertia pass, relocation, the bounds runs' final steps) calls _chunk_distances on a
# chunk, and so _squared_distance_f64, whose order is written out in LLVM IR: its bits
# cannot depend on the loop LLVM inlines it into (see gpukmeans._cpu_distance; a
# reassociated, contracted Numba loop did, in CI). Stale cached kernels could still mix
# old and new code: see _cpu_runtime._kernel_sources_digest. fastmath=False, said: a
# function that says nothing takes its first caller's flags (Numba), which would put
# fast-math flags on the distance's IR.
@njit(nogil=True, fastmath=False, cache=CACHE)
def _chunk_distances(X, centers, labels, chunk_start, chunk_end, distances):
    """``distances[i] = ||x_i - centers[labels[i]]||^2`` (float64, from the differences)
    for the rows of a chunk; nothing when ``distances`` is empty."""
    if distances.shape[0] == 0:
        return
    for i in range(chunk_start, chunk_end):
        distances[i] = _squared_distance_f64(X[i], centers[labels[i]])


@njit(nogil=True, cache=CACHE)
def _sklearn_values(X_rows, centers, centers_squared_norms, values):
    """``values = ||c||^2 - 2 X_rows c^T`` (n_rows, n_clusters) as scikit-learn's E-step
    computes them, so that float64 labels are its argmin bit for bit: the norms first,
    then one GEMM adds ``-2 x.c`` onto them (:mod:`gpukmeans._cpu_blas`)."""
    for i in range(X_rows.shape[0]):
        for j in range(centers.shape[0]):
            values[i, j] = centers_squared_norms[j]
    gemm_nt_accumulate(-2.0, X_rows, centers, values)


@njit(nogil=True, fastmath={"reassoc", "contract"}, forceinline=True, cache=CACHE)
def _exact_rank(x, c, unit_centers):
    """What the float64 decisions compare for a row ``x`` and a center ``c``, smaller
    being nearer: ``||x - c||^2`` from the differences, or, for ``unit_centers`` (cosine
    fits), ``-x.c``. Unit centers are unit only to a rounding: ``||x - c||^2`` would let
    that rounding of ``||c||^2`` decide exact ties in ``x.c`` (a sparse row that shares
    no term with any center), which go to the lowest index as cosine similarity orders
    them. The products of float32 values are exact in float64."""
    if not unit_centers:
        return _squared_distance_f64(x, c)
    s = 0.0
    for f in range(x.shape[0]):
        s += np.float64(x[f]) * np.float64(c[f])
    return -s


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=CACHE)
def _dot1(x, c):
    """``x . c``, vectorised over features (``reassoc``: its order fixed by the compiled
    code, the same for every thread count)."""
    s = x.dtype.type(0)
    for f in range(x.shape[0]):
        s += x[f] * c[f]
    return s


@njit(nogil=True, cache=CACHE)
def _unit_strides(A, B):
    """Whether the rows of two 2-d arrays lie value after value, as the vector loads of
    :mod:`gpukmeans._cpu_panel`'s kernels read them (the engine's arrays always do: C-
    ordered data, row blocks, centers; a strided view takes the Numba loop)."""
    return A.strides[1] == A.itemsize and B.strides[1] == B.itemsize


# Few clusters (the E-step at small k) or a few candidates (each k-means++ step, 2 + ln k)
# make the GEMM skinny: OpenBLAS packs each chunk of X before multiplying, and at N = 20
# the packing costs about as much as the flops (one core, 20,000 MNIST rows: SGEMM 48
# GFLOP/s, this kernel 68, and 97 with X in cache). A block of BLOCK_ROWS rows x
# BLOCK_CENTERS centers (6 x 4 with 512-bit vectors, 4 x 3 with 256-bit ones: see
# gpukmeans._cpu_panel) keeps its sums in vector registers, vectorised over features;
# each loaded vector of X serves the block's centers and each center's vector its rows,
# and nothing is packed. The sums' order is fixed by the kernel's IR, the same for every
# thread count, block and place, as a BLAS kernel's is (_rows_dots_blocked).
#
# The centers left over from the whole blocks, when fewer than BLOCK_CENTERS - 1, take
# blocks of two (gpukmeans._cpu_panel.block_dots_two, overlapping for one): an
# overlapping whole block had computed 12 products for 10 centers. The E-step's labels of
# MNIST at k=10, one thread, ms, with 6 x 4 blocks: all 70,000 rows 25.7 -> 24.1 (float64
# 42.7 -> 39.6), 1,026 random rows 0.44 -> 0.38 (0.72 -> 0.61).


@njit(nogil=True, cache=CACHE)
def _dots_strided(X, rows, r, n_rows, centers, center, n_centers, dots):
    """A block's products where a row's values are not consecutive (a strided view: the
    IR kernels load whole vectors), one pair at a time."""
    for i in range(r, r + n_rows):
        x = X[rows[i]]
        for c in range(center, center + n_centers):
            dots[i, c] = _dot1(x, centers[c])


@njit(nogil=True, cache=CACHE)
def _minus_two_centers_and_norms(centers, unit_centers):
    """``-2 c`` and ``||c||^2`` in the centers' dtype (exactly 1 for ``unit_centers``:
    see :func:`_exact_rank`), and the largest ``||c||^2`` in float64 as the rounding
    margins use it (padded for subnormals: see :data:`_SUBNORMAL_NORM`).

    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the argmin over c needs only
    ||c||^2 - 2 x.c, computed in X's dtype as scikit-learn's Lloyd does. Scaling the
    centers by -2 is exact in binary floating point, so the products yield -2 x.c with
    no extra multiply. A unit center's ``||c||^2`` is 1 to within a rounding or two of
    X's dtype, well inside the margins, which therefore still bound the values.
    """
    n_clusters, n_features = centers.shape
    minus_two_centers = np.empty((n_clusters, n_features), dtype=centers.dtype)
    squared_norms = np.zeros(n_clusters, dtype=centers.dtype)
    for j in range(n_clusters):
        for f in range(n_features):
            minus_two_centers[j, f] = -2 * centers[j, f]
            squared_norms[j] += centers[j, f] * centers[j, f]
    if unit_centers:
        squared_norms[:] = 1
    max_squared_norm = np.float64(squared_norms.max()) + _SUBNORMAL_NORM
    return minus_two_centers, squared_norms, max_squared_norm


# The one-row kernels below index X, the centers and the dots in place (but for the
# 512-bit IR kernels' row and dots, which they take as arrays): a view per row or center
# (``X[sample]``, ``centers[j]``, a slice) is a new array whose reference count the
# compiled code raises and drops, atomically, on one count shared by every thread,
# several times a row. The k-means++ candidates' dot products of 100,000 float32 rows, one
# thread, ms, with views / in place (the same bits): 128 features, 4 candidates 6.25 /
# 2.88, 8: 6.42 / 4.50; 72 features, 4: 5.31 / 1.83; 256, 4: 8.28 / 5.50.
@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=CACHE)
def _dot1_at(X, sample, centers, center):
    """``X[sample] . centers[center]``, as :func:`_dot1` sums it, without views."""
    s = X.dtype.type(0)
    for f in range(X.shape[1]):
        s += X[sample, f] * centers[center, f]
    return s


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=CACHE)
def _dots_1x2(X, sample, centers, center, dots, row):
    """``dots[row, center + c] = X[sample] . centers[center + c]`` for c < 2: one row,
    streamed once."""
    zero = X.dtype.type(0)
    s0 = s1 = zero
    for f in range(X.shape[1]):
        a = X[sample, f]
        s0 += a * centers[center, f]; s1 += a * centers[center + 1, f]  # noqa: E702
    dots[row, center], dots[row, center + 1] = s0, s1


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=CACHE)
def _dots_1x4(X, sample, centers, center, dots, row):
    """``dots[row, center + c] = X[sample] . centers[center + c]`` for c < 4: one row,
    streamed once (in 512-bit vectors where the CPU has them:
    :func:`gpukmeans._cpu_panel.row_dots_1x4`)."""
    if ROW_DOTS_IN_IR and X.strides[1] == X.itemsize and _unit_strides(centers, centers):
        row_dots_1x4(X[sample], centers, center, dots[row])
        return
    zero = X.dtype.type(0)
    s0 = s1 = s2 = s3 = zero
    for f in range(X.shape[1]):
        a = X[sample, f]
        s0 += a * centers[center, f]; s1 += a * centers[center + 1, f]  # noqa: E702
        s2 += a * centers[center + 2, f]; s3 += a * centers[center + 3, f]  # noqa: E702
    dots[row, center], dots[row, center + 1] = s0, s1
    dots[row, center + 2], dots[row, center + 3] = s2, s3


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=CACHE)
def _dots_1x8(X, sample, centers, center, dots, row):
    """``dots[row, center + c] = X[sample] . centers[center + c]`` for c < 8: one row,
    streamed once (as :func:`_dots_1x4`)."""
    if ROW_DOTS_IN_IR and X.strides[1] == X.itemsize and _unit_strides(centers, centers):
        row_dots_1x8(X[sample], centers, center, dots[row])
        return
    zero = X.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    for f in range(X.shape[1]):
        a = X[sample, f]
        s0 += a * centers[center, f]; s1 += a * centers[center + 1, f]  # noqa: E702
        s2 += a * centers[center + 2, f]; s3 += a * centers[center + 3, f]  # noqa: E702
        s4 += a * centers[center + 4, f]; s5 += a * centers[center + 5, f]  # noqa: E702
        s6 += a * centers[center + 6, f]; s7 += a * centers[center + 7, f]  # noqa: E702
    dots[row, center], dots[row, center + 1] = s0, s1
    dots[row, center + 2], dots[row, center + 3] = s2, s3
    dots[row, center + 4], dots[row, center + 5] = s4, s5
    dots[row, center + 6], dots[row, center + 7] = s6, s7


@njit(nogil=True, cache=CACHE)
def padded_centers(n_centers):
    """The rows :func:`_chunk_dots_by_rows` needs: ``n_centers`` rounded up to a multiple
    of four."""
    return -(-n_centers // 4) * 4


# _chunk_dots_by_rows takes a row's centers eight at a time while seven or more remain,
# four while three to six do, and the last one or two one at a time: a padded center
# costs its multiply-adds and its sum's reduction like a real one, and at 5 and 6
# centers passes of four and one beat a pass of eight with 3 or 2 of them padding. The
# dot products of 100,000 x d float32 rows, one thread, ms, a pass of eight / four then
# one at a time: d=128, 5 centers 5.22 / 4.31, 6: 5.10 / 4.72, 7: 5.08 / 5.49; d=256,
# 5: 10.1 / 8.0, 6: 10.3 / 8.8, 7: 10.2 / 9.9. Three single products cost more than a
# pass with one center of padding (7 centers: 4 and 3 single 5.49, 8 with 1 padding
# 5.08), so three remaining take a pass of four. (Measured with a view per row and
# center, since dropped: see _dot1_at. After, a padded pass of eight for 5 and 6 centers
# still lost: whole k-means++, one thread, 100,000 x 128 k=32 1.10x, x 256 1.14x.) Two
# remaining take one pass of two, not two single products: whole k-means++ of 100,000
# float32 blobs, k=64 (6 candidates), one thread, alternated: 128 features 453 -> 434
# ms, 256: 683 -> 652, 96: 405 -> 386.
BY_EIGHT_MIN_CENTERS = 7
BY_FOUR_MIN_CENTERS = 3


@njit(nogil=True, cache=CACHE)
def _chunk_dots_by_rows(X, chunk_start, chunk_end, centers, n_centers, dots):
    """``dots[r, :n_centers] = centers[:n_centers] @ X[chunk_start + r]`` for the chunk's
    rows, each row alone, eight centers at a time while seven or more remain, four while
    three or more do, then two remaining in one pass, one alone (see
    :data:`BY_EIGHT_MIN_CENTERS`); ``centers``
    has :func:`padded_centers` rows (the extra ones any values, zeros say) and ``dots`` as
    many columns. Which pass takes which center depends on ``n_centers`` only.

    No block overlaps another, so that seven or eight centers cost one pass of eight
    accumulators over the row, not the two overlapping blocks of four of
    :func:`_row_dots`: the k-means++ candidates of k >= 21 beyond 64 features (see
    gpukmeans._cpu_kmeanspp.ROW_DOTS_MAX_FEATURES)."""
    for sample in range(chunk_start, chunk_end):
        row = sample - chunk_start
        center = 0
        while center < n_centers:
            left = n_centers - center
            if left >= BY_EIGHT_MIN_CENTERS:
                _dots_1x8(X, sample, centers, center, dots, row)
                center += 8
            elif left >= BY_FOUR_MIN_CENTERS:
                _dots_1x4(X, sample, centers, center, dots, row)
                center += 4
            elif left == 2:
                _dots_1x2(X, sample, centers, center, dots, row)
                center += 2
            else:
                dots[row, center] = _dot1_at(X, sample, centers, center)
                center += 1


@njit(nogil=True, cache=CACHE)
def _row_dots(X, sample, centers, dots, row):
    """``dots[row] = centers @ X[sample]`` for one row, four centers at a time (the last
    four overlap the previous ones), so that a row's dot products do not depend on its
    neighbours.

    For up to four centers against every row (the k-means++ candidates up to k=20): X
    is streamed once in order. MNIST, whole k-means++ at k=20: 204 ms against 245 with
    the blocked kernel; with 7 candidates (k=256) the blocked kernel wins, 4.2 s to 5.4.
    """
    n_centers = centers.shape[0]
    if n_centers < 4:
        for j in range(n_centers):
            dots[row, j] = _dot1_at(X, sample, centers, j)
        return
    center = 0
    while center < n_centers:
        center = min(center, n_centers - 4)
        _dots_1x4(X, sample, centers, center, dots, row)
        center += 4


@njit(nogil=True, fastmath=False, cache=CACHE)  # the norms' IR as written (_cpu_distance)
def _rows_dots_blocked(X, rows, n_rows, centers, dots, row_norms):
    """``dots[r] = centers @ X[rows[r]]`` for ``r < n_rows``, without BLAS; where
    ``row_norms`` has a place per row (else (0,)), also ``row_norms[r] = ||X[rows[r]]||^2``
    (:func:`_squared_norm_f64`, float64).

    ``rows`` lists the samples: a chunk's consecutive rows, or the few that Hamerly's
    bounds could not settle (gathered by index, never copied). Blocks of
    :data:`BLOCK_ROWS` rows x :data:`BLOCK_CENTERS` centers
    (:func:`gpukmeans._cpu_panel.block_dots`); rows beyond the last whole block are
    covered by one more block that overlaps the previous one; centers beyond it, if
    ``BLOCK_CENTERS - 1``, by an overlapping whole block too, if fewer by a block of two
    (``block_dots_two``; overlapping for one). So a (row, center) pair's product comes
    from the same kernel wherever the row lies, and does not depend on the block it
    sits in: a sample's dot products, hence its label, are the same wherever it lies in
    X. Only fewer rows or centers than a block use the per-row kernel, and a strided
    view of X or of the centers (whose values the IR kernels' vector loads cannot read)
    the Numba loop.

    Whether the strides are unit is decided once a call: decided per block, in a
    helper called per block, it kept the helper's call and its reference counts in
    the loop (one thread, 100,000 rows, ms, the kernel alone: float32 d=32 k=16 5.3 ->
    3.2, d=128 k=128 63 -> 40; float64 d=64 k=32 16.7 -> 10.7; a helper's find).

    A block's norms are taken right after its dot products, while its rows are in
    L1, so that the margins of the rows' labels cost no pass over the chunk of their own
    (256 MNIST rows, 800 KB, have left L1 and much of L2 by then). Taken before the dot
    products, they were the rows' first read from memory, one row at a time where the
    kernel streams a block's, and slower. A 1,024-row mini-batch of MNIST on one thread, ms a
    step, alternated: k=10 0.87 -> 0.82-0.83, k=100 3.08 -> 3.05; an E-step over all of
    MNIST (labels and inertia, k=10 and 100) the same.
    """
    n_clusters = centers.shape[0]
    with_norms = row_norms.shape[0] > 0
    if n_rows < BLOCK_ROWS or n_clusters < BLOCK_CENTERS:
        for r in range(n_rows):
            x = X[rows[r]]
            if with_norms:
                row_norms[r] = _squared_norm_f64(x)
            for j in range(n_clusters):
                dots[r, j] = _dot1(x, centers[j])
        return
    unit = _unit_strides(X, centers)
    left_over = n_clusters % BLOCK_CENTERS
    n_by_blocks = n_clusters if left_over == BLOCK_CENTERS - 1 else n_clusters - left_over
    r = 0
    while r < n_rows:
        r = min(r, n_rows - BLOCK_ROWS)
        center = 0
        while center < n_by_blocks:
            center = min(center, n_by_blocks - BLOCK_CENTERS)
            if unit:
                block_dots(X, rows, r, centers, center, dots)
            else:
                _dots_strided(X, rows, r, BLOCK_ROWS, centers, center, BLOCK_CENTERS, dots)
            center += BLOCK_CENTERS
        if n_by_blocks < n_clusters:
            if unit:
                block_dots_two(X, rows, r, centers, n_clusters - 2, dots)
            else:
                _dots_strided(X, rows, r, BLOCK_ROWS, centers, n_clusters - 2, 2, dots)
        if with_norms:
            for i in range(r, r + BLOCK_ROWS):
                row_norms[i] = _squared_norm_f64(X[rows[i]])
        r += BLOCK_ROWS


@njit(nogil=True, cache=CACHE)
def _chunk_dots_blocked(X, chunk_start, chunk_end, centers, rows, dots):
    """:func:`_rows_dots_blocked` for a chunk's consecutive rows; ``rows`` is scratch."""
    for r in range(chunk_end - chunk_start):
        rows[r] = chunk_start + r
    _rows_dots_blocked(X, rows, chunk_end - chunk_start, centers, dots, np.empty(0))


# A float32 value ||c||^2 - 2 x.c is off by at most the margin, so two centers whose
# values are within twice the margin are a near-tie that float32 cannot order: the
# float64 distances from the differences decide it, exactly where they are too close
# (_nearer), and the label is then the exactly nearest center (lowest index on an exact
# tie, as argmin). Without this, a near-tie in one step sends a float32 run down another
# path than the float64 run's (MNIST, k=256, 20 iterations: 1.6% of the labels and
# 1.8e-5 of the inertia apart). Near-ties are rare, so the extra work is negligible.
@njit(nogil=True, cache=CACHE)
def _nearest_of_near_ties(x, centers, values, best, best_value, tie_gap, unit_centers):
    """The exactly nearest (:func:`_nearer`) of ``best`` and the centers whose float32
    ``values`` (``||c||^2 - 2 x.c``) are within ``tie_gap`` of ``best_value``."""
    limit = best_value + tie_gap
    best_bounds = (0.0, 0.0, 0.0)
    have_best = False
    for j in range(values.shape[0]):
        if j == best or values[j] > limit:
            continue
        if not have_best:
            best_bounds = _rank_bounds(x, centers[best], unit_centers)
            have_best = True
        bounds = _rank_bounds(x, centers[j], unit_centers)
        if _nearer(x, centers, j, bounds, best, best_bounds, unit_centers):
            best, best_bounds = j, bounds
    return best


@njit(nogil=True, forceinline=True, cache=CACHE)
def _rank_bounds(x, c, unit_centers):
    """``(rank, rounding, extent)``: :func:`_exact_rank` and the bounds on its rounding
    and on its terms (:func:`gpukmeans._cpu_exact.rank_bounds`)."""
    rank = _exact_rank(x, c, unit_centers)
    rounding, extent = rank_bounds(x, c, rank, unit_centers)
    return rank, rounding, extent


@njit(nogil=True, cache=CACHE)
def _nearer(x, centers, j, bounds, label, label_bounds, unit_centers):
    """Whether center ``j`` is nearer to ``x`` than ``label``, exactly, the lower index
    winning an exact tie (argmin's order), from their :func:`_rank_bounds`: by their
    float64 ranks where these are further apart than their rounding or computed without
    rounding (:func:`gpukmeans._cpu_exact.float64_is_exact`: data on a coarse grid, where
    exact ties are common), else by the exact sign of their difference
    (:func:`gpukmeans._cpu_exact.exact_order`). The float64 ranks alone had put a row with
    the farther of two centers whose distances differed by 7e-15, and sent exact ties to
    the higher index."""
    rank, rounding, extent = bounds
    label_rank, label_rounding, label_extent = label_bounds
    gap = rank - label_rank
    if gap < -(rounding + label_rounding):
        return True
    if gap > rounding + label_rounding:
        return False
    if float64_is_exact(x, centers[j], centers[label], max(extent, label_extent)):
        return gap < 0 or (gap == 0 and j < label)
    order = exact_order(x, centers[j], centers[label], unit_centers)
    return order < 0 or (order == 0 and j < label)


@njit(nogil=True, cache=CACHE)
def _nearest_two(values):
    """``(argmin, smallest, second smallest)`` of ``values`` (lowest index on equal
    values; the second is inf for a single value, and float64: the gap that callers
    take is the float64 difference of the two)."""
    best = 0
    best_value = values[0]
    second_value = np.inf
    for j in range(1, values.shape[0]):
        value = values[j]
        if value < best_value:
            second_value = best_value
            best_value = value
            best = j
        elif value < second_value:
            second_value = value
    return best, best_value, second_value


@njit(nogil=True, cache=CACHE)
def _exact_argmin(x, centers, values, tie_gap, unit_centers):
    """The argmin of ``values`` (``||c||^2 - 2 x.c``; lowest index on equal values), a
    near-tie within ``tie_gap`` of the minimum decided by :func:`_nearest_of_near_ties`;
    a negative ``tie_gap`` keeps the plain argmin."""
    best, best_value, second_value = _nearest_two(values)
    if second_value - best_value <= tie_gap:
        best = _nearest_of_near_ties(x, centers, values, best, best_value, tie_gap,
                                     unit_centers)
    return best


@njit(nogil=True, cache=CACHE)
def _values_margin(x_squared_norm, margin_coefficient, max_center_norm):
    """How far a value ``||c||^2 - 2 x.c`` of a row may be off by rounding
    (:func:`gpukmeans._cpu_small.bound_margin_coefficient`), its ``||x||^2`` (float64)
    rounded up past its own error."""
    return margin_coefficient * (x_squared_norm * (1 + margin_coefficient) + max_center_norm)


@njit(nogil=True, cache=CACHE)
def _flag_near_ties(best_value, second_value, squared_norms, n_rows, margin_coefficient,
                    max_center_norm, tie_factor, near):
    """``near[i]``: whether row i's two smallest values ``||c||^2 - 2 x.c`` are within
    ``tie_factor`` margins, too close for their rounding to order. Returns the count.
    Branch-free, so that it vectorises: near-ties are rare, and the rows that are not
    (almost all) must cost only this pass."""
    n_near = 0
    for i in range(n_rows):
        margin = _values_margin(squared_norms[i], margin_coefficient, max_center_norm)
        gap = np.float64(second_value[i]) - np.float64(best_value[i])
        is_near = gap <= tie_factor * margin
        near[i] = is_near
        n_near += is_near
    return n_near


@njit(nogil=True, cache=CACHE)
def _labels_of_nearest_two(X, rows, n_rows, centers, centers_squared_norms, best, best_value,
                           second_value, row_norms, margin_coefficient, max_center_norm,
                           exact_labels, unit_centers, near, labels, gemm_rows, gemm_first,
                           gemm_values, gemm_ready):
    """``labels[i]``, the label of ``X[rows[i]]`` (``i < n_rows``), from its nearest two
    values of a fold (``best``, ``best_value``, ``second_value``) and its ``row_norms``
    (float64): the fold's argmin, except for the near-ties (:func:`_flag_near_ties`;
    float32: within twice the margin, decided exactly by :func:`_exactly_nearest`;
    float64: within four, each value and the GEMM's off by one, decided by scikit-learn's
    GEMM on its chunk's rows, as it multiplies them: ``gemm_rows``, of which the rows
    labelled here are ``gemm_rows[gemm_first:gemm_first + n_rows]``, so that a part of a
    chunk labelled alone is decided as the whole chunk would be). ``gemm_values``
    (``(len(gemm_rows), n_clusters)``, X's dtype) keeps that GEMM for the chunk's other
    parts, computed at the first near-tie of any of them (``gemm_ready[0]`` says whether
    it is; the caller clears it for each chunk); of shape (0, 0), it is computed here
    and not kept. The plain step and the mini-batch labels by index both label
    through here."""
    n_near = _flag_near_ties(best_value, second_value, row_norms, n_rows, margin_coefficient,
                             max_center_norm, 2.0 if exact_labels else 4.0, near)
    for i in range(n_rows):
        labels[i] = best[i]
    if n_near and exact_labels:
        for i in range(n_rows):
            if near[i]:
                labels[i] = _exactly_nearest(X[rows[i]], centers, unit_centers)
    elif n_near:
        n_chunk = gemm_rows.shape[0]
        kept = gemm_values.shape[0] > 0
        dots = gemm_values if kept else np.empty((n_chunk, centers.shape[0]), dtype=X.dtype)
        if not (kept and gemm_ready[0]):
            chunk = np.empty((n_chunk, X.shape[1]), dtype=X.dtype)
            for i in range(n_chunk):  # by value: a row assigned whole compiles the
                for f in range(X.shape[1]):  # shape-mismatch message (_reduce_partials)
                    chunk[i, f] = X[gemm_rows[i], f]
            _sklearn_values(chunk, centers, centers_squared_norms, dots)
            if kept:
                gemm_ready[0] = True
        for i in range(n_rows):
            if near[i]:
                labels[i] = _exact_argmin(X[rows[i]], centers, dots[gemm_first + i], -1.0,
                                          unit_centers)


@njit(nogil=True, cache=CACHE)
def _label_of_values(x, x_squared_norm, centers, values, margin_coefficient, max_center_norm,
                     exact_labels, unit_centers):
    """The label of a row ``x`` from its values ``||c||^2 - 2 x.c`` over every center
    (the plain step's GEMM): their argmin, and with ``exact_labels`` (float32)
    the exactly nearest center wherever the values are within twice their rounding
    (:func:`_exact_argmin`). ``x_squared_norm``: ``||x||^2`` in float64, or negative to
    compute it here (in X's dtype, as the margin assumes). float64 keeps the plain
    argmin: scikit-learn's labels."""
    tie_gap = -1.0
    if exact_labels:
        if x_squared_norm < 0:
            x_squared_norm = np.float64(_dot1(x, x))
        tie_gap = 2 * _values_margin(x_squared_norm, margin_coefficient, max_center_norm)
    return _exact_argmin(x, centers, values, tie_gap, unit_centers)


@njit(nogil=True, cache=CACHE)
def _closer_exactly(x, centers, j, label, unit_centers):
    """Whether center ``j`` is nearer to ``x`` than ``label``, exactly (:func:`_nearer`;
    argmin's order)."""
    return _nearer(x, centers, j, _rank_bounds(x, centers[j], unit_centers), label,
                   _rank_bounds(x, centers[label], unit_centers), unit_centers)


@njit(nogil=True, cache=CACHE)
def _nearer_than(x, centers, j, value, label, label_value, margin, unit_centers):
    """Whether center ``j`` (its value ``||c||^2 - 2 x.c``) is nearer to ``x`` than
    ``label`` (``label_value``): by the values where they differ by more than twice
    their rounding ``margin``, else exactly (:func:`_closer_exactly`)."""
    if value > label_value + 2 * margin:
        return False
    return (value < label_value - 2 * margin
            or _closer_exactly(x, centers, j, label, unit_centers))


# The nearest two centers of a chunk's rows, vectorised over the rows: each center's
# values ``||c||^2 - 2 x.c`` for every row of the chunk are folded in turn into each
# row's running minimum, its index and the second smallest value, with selects, not
# branches. A row's minimum is over the same values in the same order wherever the row
# lies, and the caller decides near-ties (second - best within the rounding), so labels
# never depend on the chunking. Three ways to get the values:
#
# - _cpu_panel.panel_chunk_nearest, float32 with few features and clusters: the chunk
#   transposed, then each center's values for a block of rows at once in vector
#   registers (gpukmeans._cpu_panel, as the k-means++ steps take theirs);
# - _chunk_nearest_by_rows, for a few features (up to a dozen or two): a dot product is
#   too short to vectorise over features, and a GEMM on a 2-wide panel spends its time
#   packing. The chunk is transposed once into ``rows_t`` (n_features, chunk) and each
#   center's values grow by one multiply-add per feature, across the rows;
# - _chunk_nearest_by_gemm, for many features: one GEMM per tile of centers, computed
#   transposed (centers x rows), so that the fold reads each center's values as a
#   contiguous row instead of a scalar argmin over each row's (a search over 4,096
#   centers cost more than the GEMM); for few clusters, rows x centers and the small
#   result transposed (gemm_rows_first), or in float64 the blocked kernel's rows x
#   centers (values_by_blocks).


@njit(nogil=True, cache=CACHE, inline="always")
def _fold_value(value, label, nearest, current, second):
    """A row's ``(nearest, current, second)`` (its argmin so far, smallest and second
    smallest value) after center ``label``'s ``value``: a lower index keeps an equal
    value (argmin's order). The one rule of every fold below. Selects, not branches, so
    that the row loops that call it vectorise; scalars in and out, and inlined by Numba
    (``inline="always"``): left to LLVM, the fold of 512 centers ran 8% slower than the
    rule written out in each loop, inlined it is as fast (whole steps, one thread,
    alternated, the same bits)."""
    closer = value < current
    return (label if closer else nearest, value if closer else current,
            current if closer else min(second, value))


@njit(nogil=True, cache=CACHE)
def _fold_center(values, center_norm, label, n_rows, best, best_value, second_value):
    """Fold ``center_norm + values[i]`` (center ``label``, one value per row) into each
    row's smallest two (:func:`_fold_value`)."""
    for i in range(n_rows):
        best[i], best_value[i], second_value[i] = _fold_value(
            center_norm + values[i], label, best[i], best_value[i], second_value[i])


@njit(nogil=True, cache=CACHE)
def _fold_four_centers(values, first, centers_squared_norms, label, n_rows, best, best_value,
                       second_value):
    """:func:`_fold_center` for the four centers ``label`` to ``label + 3`` (their values
    ``values[first]`` to ``values[first + 3]``), in that order, in one pass over the rows:
    each row's smallest two are loaded and stored once for four centers, not four times.
    The same rule in the same order, so the same bits."""
    values0, values1, values2, values3 = (values[first], values[first + 1], values[first + 2],
                                          values[first + 3])
    norm0, norm1, norm2, norm3 = (centers_squared_norms[label], centers_squared_norms[label + 1],
                                  centers_squared_norms[label + 2],
                                  centers_squared_norms[label + 3])
    label0, label1 = np.int32(label), np.int32(label + 1)
    label2, label3 = np.int32(label + 2), np.int32(label + 3)
    for i in range(n_rows):
        nearest, current, second = best[i], best_value[i], second_value[i]
        nearest, current, second = _fold_value(norm0 + values0[i], label0, nearest, current,
                                               second)
        nearest, current, second = _fold_value(norm1 + values1[i], label1, nearest, current,
                                               second)
        nearest, current, second = _fold_value(norm2 + values2[i], label2, nearest, current,
                                               second)
        best[i], best_value[i], second_value[i] = _fold_value(norm3 + values3[i], label3,
                                                              nearest, current, second)


@njit(nogil=True, cache=CACHE)
def _fold_centers(values, first, last, centers_squared_norms, label, n_rows, best, best_value,
                  second_value):
    """Fold ``values[first:last]`` (the centers ``label``, ``label + 1``, ...) in order,
    as :func:`_fold_center` one center at a time would, four centers per pass
    (:func:`_fold_four_centers`). The fold alone, 100,000 rows x 512 centers, one thread:
    9.6 -> 3.4 ms; a whole plain step on 100,000 blob rows, k=512, one thread: 16
    features 25 -> 21 ms, 32 features 42 -> 38.5 (the GEMM is the rest)."""
    while first + 4 <= last:
        _fold_four_centers(values, first, centers_squared_norms, label, n_rows, best,
                           best_value, second_value)
        first += 4
        label += 4
    while first < last:
        _fold_center(values[first], centers_squared_norms[label], np.int32(label), n_rows, best,
                     best_value, second_value)
        first += 1
        label += 1


@njit(nogil=True, fastmath={"contract"}, cache=CACHE)
def _chunk_nearest_by_rows(
    X,  # IN (n_samples, n_features)
    chunk_start,
    chunk_end,
    minus_two_centers,  # IN (n_clusters, n_features) X.dtype: -2 c
    centers_squared_norms,  # IN (n_clusters,) X.dtype
    scratch,  # SCRATCH (>= (n_features + 1) * chunk,) X.dtype
    best,  # OUT (>= chunk,) int32: the argmin of the values (lowest index on equal values)
    best_value,  # OUT (>= chunk,) X.dtype: the smallest value
    second_value,  # OUT (>= chunk,) X.dtype: the second smallest (inf for one center)
):
    n_rows = chunk_end - chunk_start
    n_features = X.shape[1]
    rows_t = scratch[: n_features * n_rows].reshape((n_features, n_rows))
    values = scratch[n_features * n_rows: (n_features + 1) * n_rows]
    for i in range(n_rows):
        x = X[chunk_start + i]
        for f in range(n_features):
            rows_t[f, i] = x[f]
    _start_nearest_two(n_rows, best, best_value, second_value)
    # The feature count as a compile-time constant (BY_ROWS takes at most 8): each row's
    # value then stays in a register and is folded at once.
    if n_features == 1:
        _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value, 1)
    elif n_features == 2:
        _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value, 2)
    elif n_features == 3:
        _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value, 3)
    elif n_features == 4:
        _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value, 4)
    elif n_features == 5:
        _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value, 5)
    elif n_features == 6:
        _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value, 6)
    elif n_features == 7:
        _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value, 7)
    elif n_features == 8:
        _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value, 8)
    else:
        _fold_by_rows_any(rows_t, values, n_rows, minus_two_centers, centers_squared_norms,
                          best, best_value, second_value)


@njit(nogil=True, fastmath={"contract"}, cache=CACHE)
def _fold_by_rows_any(rows_t, values, n_rows, minus_two_centers, centers_squared_norms, best,
                      best_value, second_value):
    """:func:`_fold_by_rows` for any number of features: each center's values summed
    across the rows in ``values``, one feature at a time, then folded."""
    zero = rows_t.dtype.type(0)
    for j in range(minus_two_centers.shape[0]):
        for i in range(n_rows):
            values[i] = zero
        for f in range(rows_t.shape[0]):
            c = minus_two_centers[j, f]
            x_f = rows_t[f]
            for i in range(n_rows):
                values[i] += x_f[i] * c
        _fold_center(values, centers_squared_norms[j], np.int32(j), n_rows,
                     best, best_value, second_value)


@njit(nogil=True, fastmath={"contract"}, cache=CACHE)
def _fold_by_rows(rows_t, n_rows, minus_two_centers, centers_squared_norms, best, best_value,
                  second_value, n_features):
    """:func:`_chunk_nearest_by_rows`'s values and fold for a constant ``n_features``
    (``numba.literally``: one compiled body per count, the loop over the features
    unrolled). Each row's values for four centers are summed in registers, each from 0
    and feature after feature as :func:`_fold_by_rows_any` sums it in memory (the same
    bits), and folded at once (:func:`_fold_value`), four centers per pass over the rows
    as :func:`_fold_four_centers` folds them: each row's smallest two are loaded and
    stored once for four centers, and each feature of the row once. The E-step's values
    and fold on 100,000 random rows, k=32, one thread, ms: float64 x 8 3.7 (a vector of
    values) -> 2.0 (values in registers) -> 1.33 (four centers a pass; 1.45 one a pass),
    x 5 0.96 -> 0.81, x 2 0.79 -> 0.56; float32 x 4 0.65 -> 0.56, x 3 0.59 -> 0.50, x 2
    0.52 -> 0.47; the same labels and values, bit for bit. The four sums in one loop
    over the features rather than four loops: whole plain steps on 100,000 blob rows,
    one thread, alternated, 0.81-0.89x at float32 x 2 to 4 and float64 x 2 and x 8."""
    n_features = literally(n_features)
    zero = rows_t.dtype.type(0)
    n_clusters = minus_two_centers.shape[0]
    j = 0
    while j + 4 <= n_clusters:
        c0, c1 = minus_two_centers[j], minus_two_centers[j + 1]
        c2, c3 = minus_two_centers[j + 2], minus_two_centers[j + 3]
        norm0, norm1 = centers_squared_norms[j], centers_squared_norms[j + 1]
        norm2, norm3 = centers_squared_norms[j + 2], centers_squared_norms[j + 3]
        label0, label1 = np.int32(j), np.int32(j + 1)
        label2, label3 = np.int32(j + 2), np.int32(j + 3)
        for i in range(n_rows):
            value0 = value1 = value2 = value3 = zero
            for f in range(n_features):
                x = rows_t[f, i]
                value0 += x * c0[f]
                value1 += x * c1[f]
                value2 += x * c2[f]
                value3 += x * c3[f]
            nearest, current, second = best[i], best_value[i], second_value[i]
            nearest, current, second = _fold_value(norm0 + value0, label0, nearest, current,
                                                   second)
            nearest, current, second = _fold_value(norm1 + value1, label1, nearest, current,
                                                   second)
            nearest, current, second = _fold_value(norm2 + value2, label2, nearest, current,
                                                   second)
            best[i], best_value[i], second_value[i] = _fold_value(norm3 + value3, label3,
                                                                  nearest, current, second)
        j += 4
    for center in range(j, n_clusters):  # the last n_clusters % 4, one a pass
        c = minus_two_centers[center]
        center_norm = centers_squared_norms[center]
        label = np.int32(center)
        for i in range(n_rows):
            value = zero
            for f in range(n_features):
                value += rows_t[f, i] * c[f]
            best[i], best_value[i], second_value[i] = _fold_value(
                center_norm + value, label, best[i], best_value[i], second_value[i])


# Centers per GEMM of _chunk_nearest_by_gemm: a tile of values (centers x chunk rows)
# stays in L2 (1 MB for float32 at 256 rows) while it is folded.
GEMM_TILE_CENTERS = 1024


def gemm_rows_first(dtype_size, n_features, n_clusters):
    """Whether :func:`_chunk_nearest_by_gemm` multiplies rows x centers (then transposes
    the few values) rather than centers x rows. For few clusters the GEMM's cost is its
    packing of the chunk, which OpenBLAS does faster as the left operand; the transpose
    of a (chunk, n_clusters) result costs less than that from 16 features and up to
    one cluster per two features. One E-step on 100,000 rows, one thread, float32, ms,
    centers x rows against rows x centers: d=32 k=2 1.20 / 0.73, k=8 1.57 / 1.06, k=16
    2.03 / 1.79, k=32 3.18 / 3.42; d=16 k=8 0.91 / 0.77, k=16 1.25 / 1.40; d=64 k=8
    2.92 / 1.92, k=16 3.78 / 3.29, k=32 5.88 / 6.05; d=128 k=8 5.78 / 6.24; d=8 k=8 0.56 /
    0.59. float64 gains little (d=32 k=8 2.97 / 2.72) and loses from k=16."""
    return (dtype_size == 4 and 16 <= n_features <= 64
            and n_clusters <= n_features // 2)


_gemm_rows_first = njit(nogil=True, cache=CACHE)(gemm_rows_first)


def values_by_blocks(dtype_size, n_features, n_clusters):
    """Whether :func:`_chunk_nearest_by_gemm` takes float64's values from the blocked
    kernel (:func:`_rows_dots_blocked`: sums in registers, nothing packed) rather than a
    GEMM: OpenBLAS multiplies a chunk of float64 rows by a few centers at a third of its
    peak (100,000 x 32 by 8 centers, one thread: 2.8 ms, the blocked kernel 1.9). The
    values' order of sums differs from the GEMM's, which near-ties then consult as for
    the other kernels, so labels stay scikit-learn's. A float64 plain step on 100,000
    blob rows, two threads, ms, GEMM against blocks: d=32 k=2 2.50 / 1.70, k=8 2.80 /
    2.44, k=16 3.51 / 2.98; d=48 k=4 3.84 / 2.16, k=16 5.14 / 3.53; d=64 k=4 3.75 / 2.54;
    d=128 k=2 6.83 / 4.10, k=16 9.46 / 7.83; d=16 k=2 1.38 / 0.86; d=12 k=2 1.26 / 1.08;
    not at d=16 k=8 (1.48 / 1.68) and k=16 (1.85 / 2.26), and no longer from k=24 (d=32
    3.81 / 3.68, d=128 10.8 / 10.2, within the runs' drift)."""
    return dtype_size == 8 and (n_clusters <= 3 or (n_features >= 32 and n_clusters <= 16))


_values_by_blocks = njit(nogil=True, cache=CACHE)(values_by_blocks)


@njit(nogil=True, cache=CACHE)
def _values_rows_first(dtype_size, n_features, n_clusters):
    """Whether :func:`_chunk_nearest_by_gemm` computes rows x centers (by GEMM or by
    blocks) and transposes them, which takes twice the scratch."""
    return (_gemm_rows_first(dtype_size, n_features, n_clusters)
            or _values_by_blocks(dtype_size, n_features, n_clusters))


@njit(nogil=True, cache=CACHE)
def _gemm_scratch_size(dtype_size, n_features, n_clusters, chunk_rows):
    """Values of scratch that :func:`_chunk_nearest_by_gemm` needs."""
    tile = min(n_clusters, GEMM_TILE_CENTERS) * chunk_rows
    return 2 * tile if _values_rows_first(dtype_size, n_features, n_clusters) else tile


@njit(nogil=True, cache=CACHE)
def _chunk_nearest_by_gemm(
    X,  # IN (n_samples, n_features)
    chunk_start,
    chunk_end,
    minus_two_centers,  # IN (n_clusters, n_features) X.dtype: -2 c
    centers_squared_norms,  # IN (n_clusters,) X.dtype
    scratch,  # SCRATCH (>= _gemm_scratch_size(...),) X.dtype
    rows,  # SCRATCH (>= chunk,) int64
    best,  # OUT, as in _chunk_nearest_by_rows
    best_value,
    second_value,
):
    n_rows = chunk_end - chunk_start
    n_clusters, n_features = minus_two_centers.shape
    _start_nearest_two(n_rows, best, best_value, second_value)
    if _values_rows_first(X.itemsize, n_features, n_clusters):
        dots = scratch[: n_rows * n_clusters].reshape((n_rows, n_clusters))
        if _values_by_blocks(X.itemsize, n_features, n_clusters):
            _chunk_dots_blocked(X, chunk_start, chunk_end, minus_two_centers, rows, dots)
        else:
            np.dot(X[chunk_start:chunk_end], minus_two_centers.T, dots)
        values = scratch[n_rows * n_clusters: 2 * n_rows * n_clusters].reshape(
            (n_clusters, n_rows))
        for j in range(n_clusters):
            for i in range(n_rows):
                values[j, i] = dots[i, j]
        _fold_centers(values, 0, n_clusters, centers_squared_norms, 0, n_rows, best, best_value,
                      second_value)
        return
    rows_t = X[chunk_start:chunk_end].T
    for tile_start in range(0, n_clusters, GEMM_TILE_CENTERS):
        tile_end = min(tile_start + GEMM_TILE_CENTERS, n_clusters)
        values = scratch[: (tile_end - tile_start) * n_rows].reshape((tile_end - tile_start, n_rows))
        np.dot(minus_two_centers[tile_start:tile_end], rows_t, values)
        _fold_centers(values, 0, tile_end - tile_start, centers_squared_norms, tile_start, n_rows,
                      best, best_value, second_value)


@njit(nogil=True, cache=CACHE)
def _rows_nearest_blocked(
    X,  # IN (n_samples, n_features)
    rows,  # IN (>= n_rows,) int64: the rows of X
    n_rows,
    minus_two_centers,  # IN (n_clusters, n_features) X.dtype: -2 c
    centers_squared_norms,  # IN (n_clusters,) X.dtype
    scratch,  # SCRATCH (>= n_clusters * n_rows,) X.dtype
    best,  # OUT, as in _chunk_nearest_by_rows
    best_value,
    second_value,
    row_norms,  # OUT (n_rows,) float64 ||x||^2, or (0,): not wanted
):
    """The nearest two centers of the rows ``X[rows[i]]``, ``i < n_rows``, from the
    blocked kernel's dot products (:func:`_rows_dots_blocked`, for many features, which
    also takes the rows' norms where ``row_norms`` has room),
    written transposed (centers x rows) so that the fold reads each center's values as
    a contiguous row (:func:`_fold_centers`). Each row's argmin, its row norm and its
    margin test one row at a time had cost about as much as the dot products: MNIST's
    E-step, k=10, one thread, 32.8 -> 26.3 ms with this fold and the chunk's vectorised
    margin test, k=64 111 -> 67; the same labels. A near-tie row is then decided among
    all the centers in float64 (the callers' :func:`_exactly_nearest`), not only those
    within its gap: rare, except where centers coincide."""
    n_clusters = minus_two_centers.shape[0]
    values = scratch[: n_clusters * n_rows].reshape((n_clusters, n_rows))
    _rows_dots_blocked(X, rows, n_rows, minus_two_centers, values.T, row_norms)
    _start_nearest_two(n_rows, best, best_value, second_value)
    _fold_centers(values, 0, n_clusters, centers_squared_norms, 0, n_rows, best, best_value,
                  second_value)


@njit(nogil=True, cache=CACHE)
def _exactly_nearest(x, centers, unit_centers):
    """The center exactly nearest to ``x`` (lowest index on an exact tie), for the rare
    row whose float32 values cannot order its nearest two, as the NumPy engine decides
    (:func:`gpukmeans._cpu_small._nearest_of_near_ties`): the float64 argmin unless
    another center's rank is within their rounding (:func:`_rank_bounds`); then that
    argmin where the candidates' ranks are exact
    (:func:`gpukmeans._cpu_exact.float64_is_exact`, one test for them all: one-hot or
    binary rows tie with most centers), else the exactly nearest candidate
    (:func:`gpukmeans._cpu_exact.exact_order`)."""
    n_clusters = centers.shape[0]
    ranks, rounding, extents = np.empty((3, n_clusters))
    best = 0
    # A center may be the nearest when its rank, less its rounding, is within the
    # rounding of the least rank.
    threshold = np.inf
    for j in range(n_clusters):
        ranks[j], rounding[j], extents[j] = _rank_bounds(x, centers[j], unit_centers)
        if ranks[j] < ranks[best]:
            best = j
        threshold = min(threshold, ranks[j] + rounding[j])
    candidates = np.empty(n_clusters, dtype=np.bool_)
    n_candidates = 0
    extent = 0.0
    for j in range(n_clusters):
        candidates[j] = ranks[j] - rounding[j] <= threshold
        if candidates[j]:
            n_candidates += 1
            extent = max(extent, extents[j])
    if n_candidates == 1 or _float64_is_exact_among(x, centers, candidates, extent):
        return best
    best = -1
    for j in range(n_clusters):
        if candidates[j] and (
                best < 0 or exact_order(x, centers[j], centers[best], unit_centers) < 0):
            best = j
    return best


@njit(nogil=True, cache=CACHE)
def _float64_is_exact_among(x, centers, candidates, extent):
    """:func:`gpukmeans._cpu_exact.float64_is_exact` for ``x`` and every center where
    ``candidates`` is true."""
    if extent == 0.0:
        return True
    q = certified_grid_exponent(extent)
    if not on_grid(x, q):
        return False
    for j in range(centers.shape[0]):
        if candidates[j] and not on_grid(centers[j], q):
            return False
    return True
