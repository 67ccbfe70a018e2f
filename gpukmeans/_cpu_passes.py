"""The CPU engine's single passes over the data: row norms, centring, the distances of
samples to their centers (inertia, relocation) and to every center (``transform``), X
transposed (k-means++'s dot products).

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit, prange

from ._cpu_nearest import _chunk_distances, _squared_norm_f64
from ._cpu_panel import TRANSPOSE_ROWS, transpose_rows
from ._cpu_runtime import CACHE, prange_only, rows_times, threaded
from ._cpu_small import CANCELLATION as _CANCELLATION
from ._cpu_small import CHUNK_ROWS as DISTANCE_CHUNK_ROWS
from ._cpu_small import near_the_origin
from ._replay import PAIRWISE_BLOCK, pairwise_split
from ._validation import MEAN_BLOCKS


@threaded(rows_times(lambda X, *args: X.shape[1]))
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _assigned_distances(X, centers, labels):
    """``||x_i - centers[labels[i]]||^2`` per sample, float64, from the differences, by
    :func:`_chunk_distances`, as the final E-step and every inertia pass measure them
    (relocation and k-means|| take NumPy's order instead: :func:`numpy_order_distances`)."""
    n_samples = X.shape[0]
    distances = np.empty(n_samples, dtype=np.float64)
    n_chunks = (n_samples + DISTANCE_CHUNK_ROWS - 1) // DISTANCE_CHUNK_ROWS
    for chunk in prange(n_chunks):
        start = chunk * DISTANCE_CHUNK_ROWS
        _chunk_distances(X, centers, labels, start, min(start + DISTANCE_CHUNK_ROWS, n_samples),
                         distances)
    return distances


# NumPy's pairwise summation, which ``.sum(axis=1)`` of a C-ordered array makes of each
# row (numpy/_core/src/umath/loops_utils.h.src, ``pairwise_sum``): under 8 values added
# in order onto 0.0; up to PAIRWISE_BLOCK values in 8 running sums (values i, i + 8,
# ...) joined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), the values past the
# last multiple of 8 added after, in order; above, split at :func:`pairwise_split`.
_ADD = -1


def pairwise_plan(count):
    """NumPy's splits of a pairwise sum of ``count`` values, as a postfix program: int64
    rows ``(start, count)`` for a block summed whole, ``(0, _ADD)`` for "add the last two
    sums". The same for every row, so made once; Numba loops over it (a recursive Numba
    function crashed when loaded from its on-disk cache)."""
    plan = []

    def part(start, count):
        if count <= PAIRWISE_BLOCK:
            plan.append((start, count))
            return
        first = pairwise_split(count)
        part(start, first)
        part(start + first, count - first)
        plan.append((0, _ADD))

    part(0, count)
    return np.array(plan, dtype=np.int64).reshape(-1, 2)


@njit(nogil=True, fastmath=False, forceinline=True, cache=CACHE)
def _squared_difference(X, i, centers, j, f):
    diff = np.float64(X[i, f]) - np.float64(centers[j, f])
    return diff * diff


@njit(nogil=True, fastmath=False, forceinline=True, cache=CACHE)
def _pairwise_block(X, i, centers, j, start, count):
    """NumPy's sum of ``(X[i, f] - centers[j, f])**2`` (float64) over ``count <=
    PAIRWISE_BLOCK`` features from ``start``. Rows are passed as indices, not views, and
    it is inlined: called per row, where a call or a view's reference counts cost more
    than the sum at a few features."""
    if count < 8:
        total = 0.0
        for f in range(start, start + count):
            total += _squared_difference(X, i, centers, j, f)
        return total
    r0 = _squared_difference(X, i, centers, j, start)
    r1 = _squared_difference(X, i, centers, j, start + 1)
    r2 = _squared_difference(X, i, centers, j, start + 2)
    r3 = _squared_difference(X, i, centers, j, start + 3)
    r4 = _squared_difference(X, i, centers, j, start + 4)
    r5 = _squared_difference(X, i, centers, j, start + 5)
    r6 = _squared_difference(X, i, centers, j, start + 6)
    r7 = _squared_difference(X, i, centers, j, start + 7)
    whole_end = start + count - count % 8
    for f in range(start + 8, whole_end, 8):
        r0 += _squared_difference(X, i, centers, j, f)
        r1 += _squared_difference(X, i, centers, j, f + 1)
        r2 += _squared_difference(X, i, centers, j, f + 2)
        r3 += _squared_difference(X, i, centers, j, f + 3)
        r4 += _squared_difference(X, i, centers, j, f + 4)
        r5 += _squared_difference(X, i, centers, j, f + 5)
        r6 += _squared_difference(X, i, centers, j, f + 6)
        r7 += _squared_difference(X, i, centers, j, f + 7)
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for f in range(whole_end, start + count):
        total += _squared_difference(X, i, centers, j, f)
    return total


@njit(nogil=True, fastmath=False, forceinline=True, cache=CACHE)
def _pairwise_squared_differences(X, i, centers, j, plan, sums):
    """NumPy's pairwise sum of ``(X[i] - centers[j])**2`` over a row of more than
    PAIRWISE_BLOCK features, by :func:`pairwise_plan`'s ``plan``; ``sums``: scratch,
    ``plan.shape[0]`` float64."""
    depth = 0
    for step in range(plan.shape[0]):
        if plan[step, 1] == _ADD:
            depth -= 1
            sums[depth - 1] = sums[depth - 1] + sums[depth]
        else:
            sums[depth] = _pairwise_block(X, i, centers, j, plan[step, 0], plan[step, 1])
            depth += 1
    return sums[0]


@threaded(rows_times(lambda X, *args: X.shape[1]))
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _numpy_order_distances(X, centers, labels, plan):
    """:func:`numpy_order_distances`, ``plan`` its :func:`pairwise_plan`."""
    n_samples = X.shape[0]
    distances = np.empty(n_samples, dtype=np.float64)
    n_chunks = (n_samples + DISTANCE_CHUNK_ROWS - 1) // DISTANCE_CHUNK_ROWS
    # One block a row is decided here, not per row: the plan's loop in the row loop
    # kept each row's reference counts of its arrays (10,000 x 32: 0.45 against 0.2 ms).
    one_block = plan.shape[0] == 1
    for chunk in prange(n_chunks):
        start = chunk * DISTANCE_CHUNK_ROWS
        end = min(start + DISTANCE_CHUNK_ROWS, n_samples)
        if one_block:
            for i in range(start, end):
                distances[i] = _pairwise_block(X, i, centers, labels[i], 0, plan[0, 1])
        else:
            sums = np.empty(plan.shape[0], dtype=np.float64)
            for i in range(start, end):
                distances[i] = _pairwise_squared_differences(X, i, centers, labels[i], plan,
                                                              sums)
    return distances


def numpy_order_distances(X, centers, labels):
    """``||x_i - centers[labels[i]]||^2`` per sample, float64, each row's squares summed
    as NumPy sums them: bit for bit ``((X - centers[labels])**2).sum(axis=1)`` for
    float64 X (for float32 X, of its float64 differences). A relocation takes the
    farthest samples by ``np.argpartition`` over these, as scikit-learn does over its
    own: where samples tie, which one introselect leaves last depends on every value's
    last bits, not only the tied ones'."""
    return _numpy_order_distances(X, centers, labels, pairwise_plan(X.shape[1]))


@njit(nogil=True, cache=CACHE)
def _weighted_sum_f64(values, sample_weight):
    """``sum_i w_i v_i`` in float64, sequential: the order never changes."""
    total = 0.0
    for i in range(values.shape[0]):
        total += np.float64(sample_weight[i]) * values[i]
    return total


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _pairwise_distances_chunked(X, x_squared_norms, centers, chunk_rows):
    """Euclidean distances (n_samples, n_clusters) in X's dtype for ``transform``.

    ``||x||^2 - 2 x.c + ||c||^2`` wholly in float64 (each chunk is upcast, as
    scikit-learn does for float32): in float32 the cancellation would leave errors of
    order sqrt(eps) ||x|| on small distances. Where even float64's cancellation costs
    more than 20 of its 52 bits (a sample on or near a center), the distance is summed
    from the differences instead: exactly 0 on a center, as on the GPU engine.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    minus_two_centers_t = np.empty((n_features, n_clusters), dtype=np.float64)
    centers_squared_norms = np.zeros(n_clusters, dtype=np.float64)
    for j in range(n_clusters):
        for f in range(n_features):
            minus_two_centers_t[f, j] = -2.0 * centers[j, f]
            centers_squared_norms[j] += np.float64(centers[j, f]) * centers[j, f]
    out = np.empty((n_samples, n_clusters), dtype=X.dtype)
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    for chunk in prange(n_chunks):
        chunk_start = chunk * chunk_rows
        chunk_end = min(chunk_start + chunk_rows, n_samples)
        chunk_f64 = X[chunk_start:chunk_end].astype(np.float64)
        dots = np.dot(chunk_f64, minus_two_centers_t)
        for i in range(chunk_end - chunk_start):
            sample = chunk_start + i
            for j in range(n_clusters):
                scale = x_squared_norms[sample] + centers_squared_norms[j]
                d = x_squared_norms[sample] + dots[i, j] + centers_squared_norms[j]
                if d <= _CANCELLATION * scale:
                    d = 0.0
                    for f in range(n_features):
                        diff = np.float64(X[sample, f]) - np.float64(centers[j, f])
                        d += diff * diff
                out[sample, j] = np.sqrt(max(d, 0.0))
    return out



@njit(nogil=True, fastmath=False, cache=CACHE)
def _chunk_squared_norms(X, chunk_start, chunk_end, out):
    """``out[i] = ||x_i||^2`` in float64 for the rows of a chunk, every pass that computes
    row norms by this one loop; their order is written out in LLVM IR
    (:mod:`gpukmeans._cpu_distance`), so that passes agree bitwise wherever LLVM inlines
    it (with a reassociated Numba loop, the norms of ``centered`` and of ``row_norms``
    differed once one of them came from another process's cache). ``fastmath=False``:
    see :func:`gpukmeans._cpu_nearest._chunk_distances`."""
    for i in range(chunk_start, chunk_end):
        out[i] = _squared_norm_f64(X[i])


# The once-a-fit passes (validation's scan, the row norms, centring, the largest
# magnitude) run on one thread (their serial twins) below the runtime's SERIAL_MAX_WORK,
# counted as PASS_WORK_PER_VALUE a value and ROW_WORK a row (at 32 features, up to 28,000
# rows; at 8, 60,000): in a small fit whose steps run serially they were its only
# parallel loops, and waking the workers cost more than the pass. Alone, one thread /
# two, ms, warm / after 50 ms idle: the scan, 10,000 x 32 0.09 / 0.26, 0.20 / 0.56;
# 30,000 x 32 0.36 / 0.30, 0.78 / 0.80; 100,000 x 8 0.65 / 0.45, 1.09 / 0.95; 5,000 x
# 784 1.24 / 1.45, 2.00 / 1.49; 100,000 x 32 1.24 / 1.33, 2.02 / 1.34; the row norms,
# 10,000 x 32 0.04 / 0.18, 0.13 / 0.42; 30,000 x 32 0.14 / 0.31, 0.60 / 0.83; 100,000 x 8
# 0.42 / 0.32, 1.25 / 0.95. Whole fits (10 iterations from the same centers, 0.25 s
# apart, medians of 21 alternated), serial scan / parallel: 10,000 x 32, k=32 7.32 /
# 7.81; 16,000 x 16, k=64 8.79 / 9.32; 20,000 x 32, k=32 12.3 / 13.1.
PASS_WORK_PER_VALUE = 16
_pass_work = rows_times(lambda X, *args: PASS_WORK_PER_VALUE * X.shape[1])


@threaded(_pass_work)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _row_norms_f64(X):
    """``||x_i||^2`` in float64 (:func:`_chunk_squared_norms`)."""
    n_samples = X.shape[0]
    out = np.empty(n_samples, dtype=np.float64)
    n_chunks = (n_samples + DISTANCE_CHUNK_ROWS - 1) // DISTANCE_CHUNK_ROWS
    for chunk in prange(n_chunks):
        start = chunk * DISTANCE_CHUNK_ROWS
        _chunk_squared_norms(X, start, min(start + DISTANCE_CHUNK_ROWS, n_samples), out)
    return out


def row_norms_f64(X):
    return _row_norms_f64(X)


@threaded(_pass_work)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _subtract_rows_and_norms(X, vector, out, out_squared_norms):
    """``out = X - vector`` and its row norms (:func:`_chunk_squared_norms`), a chunk's
    while it is in cache."""
    n_samples = X.shape[0]
    n_chunks = (n_samples + DISTANCE_CHUNK_ROWS - 1) // DISTANCE_CHUNK_ROWS
    for chunk in prange(n_chunks):
        start = chunk * DISTANCE_CHUNK_ROWS
        end = min(start + DISTANCE_CHUNK_ROWS, n_samples)
        for i in range(start, end):
            for f in range(X.shape[1]):
                out[i, f] = X[i, f] - vector[f]
        _chunk_squared_norms(out, start, end, out_squared_norms)


def centered(X, X_mean, x_squared_norms=None):
    """Engine ``centered``; ``x_squared_norms``: X's :func:`row_norms_f64`, where
    validation's pass computed them (:func:`scan_float32`).

    float64 is centred, as scikit-learn does, so that its labels stay bitwise
    scikit-learn's. float32 labels are exact either way (near-ties are decided in
    float64), so float32 data near the origin are used as they are: no copy of X (on
    MNIST, 220 MB and 20 ms or more of page faults per fit). Far from the origin, the
    float32 ``||c||^2 - 2 x.c`` loses digits to the norms, which widens the bounds'
    margin and the near-tie window: centre when the mean's squared norm exceeds the
    spread around it (mean ||x||^2 - ||mean||^2, from the row norms that the uncentred
    fit needs anyway).

    Centring: NumPy allocates (its large arrays get huge pages, which Numba's
    allocator does not ask for: page faults then cost more than the copy) and both
    threads subtract; on MNIST 24 ms against NumPy's 53, and the row norms come with
    the same pass instead of another read of X.
    """
    if X.dtype == np.float32:
        if x_squared_norms is None:
            x_squared_norms = _row_norms_f64(X)
        if near_the_origin(X_mean, x_squared_norms):
            return X, x_squared_norms, False
    out = np.empty_like(X)
    out_squared_norms = np.empty(X.shape[0])
    _subtract_rows_and_norms(X, X_mean.astype(X.dtype, copy=False), out, out_squared_norms)
    return out, out_squared_norms, True


# The largest magnitude (validation's scale and finiteness check) over blocks of X's
# values taken as integers: a float's bits without the sign grow with its magnitude,
# and infinity's and NaN's exceed every finite value's, so one integer maximum (which
# vectorises; a NaN-aware float maximum does not) answers both. Blocks: a fixed number,
# so that the threads share the pass whatever their count (a maximum is exact in any
# order; the means' sums are added in the blocks' order, as NumPy's route adds them):
# MEAN_BLOCKS, the one number both routes read.


@njit(nogil=True, cache=CACHE)
def _largest_bits(bits, magnitude_mask):
    """The largest ``bits[i] & magnitude_mask`` (0 for none). Indexed from 0: from a
    ``start`` that might be negative as far as the compiler knows, each load would
    carry NumPy's negative-index wraparound, and the loop ran 5x slower."""
    largest = bits.dtype.type(0)
    for i in range(bits.shape[0]):
        largest = max(largest, bits.dtype.type(bits[i] & magnitude_mask))
    return largest


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _transpose_blocks(X, X_t):
    n_samples = X.shape[0]
    for block in prange((n_samples + TRANSPOSE_ROWS - 1) // TRANSPOSE_ROWS):
        start = block * TRANSPOSE_ROWS
        end = min(start + TRANSPOSE_ROWS, n_samples)
        transpose_rows(X, start, end, X_t[:, start:end])


def feature_major(X):
    """``X.T`` in a new C-contiguous ``(n_features, n_samples)`` array (NumPy's copy took
    2.4-3.7 ms for 100,000 x 32 float32 rows; element by element this took 4.3 ms on one
    thread and 1.6 on two on a slow day of the EPYC VM, in squares of a vector's lanes
    (:func:`gpukmeans._cpu_panel.transpose_tile`) 1.0 and 0.4-0.5)."""
    X_t = np.empty((X.shape[1], X.shape[0]), dtype=X.dtype)
    _transpose_blocks(X, X_t)
    return X_t


@threaded(lambda bits, *args: PASS_WORK_PER_VALUE * bits.shape[0])
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _largest_magnitude_bits(bits, magnitude_mask):
    """:func:`_largest_bits` over all of ``bits``, a block per ``prange`` iteration."""
    n_values = bits.shape[0]
    block_largest = np.empty(MEAN_BLOCKS, dtype=bits.dtype)
    for block in prange(MEAN_BLOCKS):
        start = block * n_values // MEAN_BLOCKS
        end = (block + 1) * n_values // MEAN_BLOCKS
        block_largest[block] = _largest_bits(bits[start:end], magnitude_mask)
    # Not ``block_largest.max()``, whose NumPy implementation compiles for 0.7 s more.
    return _largest_bits(block_largest, magnitude_mask)


_SIGNED_OF_FLOAT = {4: np.int32, 8: np.int64}


# Rows of one piece of a scan's block (:func:`_scan_block`): its three sweeps over the
# piece read it from L2 (about 128 KiB of rows).
SCAN_PIECE_VALUES = 2**15


@njit(nogil=True, cache=CACHE)
def _scan_block(X, bits, magnitude_mask, start, end, sums, squared_norms, with_norms):
    """:func:`_scan_float32` over rows ``start:end``: returns their largest bits, adds the
    rows to ``sums`` (float64, in row order) and writes their norms."""
    n_features = X.shape[1]
    piece_rows = max(1, SCAN_PIECE_VALUES // max(1, n_features))
    largest = bits.dtype.type(0)
    for piece_start in range(start, end, piece_rows):
        piece_end = min(piece_start + piece_rows, end)
        largest = max(largest, _largest_bits(
            bits[piece_start * n_features:piece_end * n_features], magnitude_mask))
        for i in range(piece_start, piece_end):
            for f in range(n_features):
                sums[f] += np.float64(X[i, f])
        if with_norms:
            _chunk_squared_norms(X, piece_start, piece_end, squared_norms)
    return largest


@threaded(_pass_work)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _scan_float32(X, bits, magnitude_mask, squared_norms, with_norms):
    """:func:`scan_float32`'s pass, a fixed block of rows per ``prange`` iteration, the
    blocks' sums then added in block order: the same bits with any thread count (and by
    the serial twin, which small data take: see PASS_WORK_PER_VALUE)."""
    n_samples, n_features = X.shape
    block_largest = np.empty(MEAN_BLOCKS, dtype=bits.dtype)
    block_sums = np.zeros((MEAN_BLOCKS, n_features), dtype=np.float64)
    for block in prange(MEAN_BLOCKS):
        start = block * n_samples // MEAN_BLOCKS
        end = (block + 1) * n_samples // MEAN_BLOCKS
        block_largest[block] = _scan_block(X, bits, magnitude_mask, start, end,
                                           block_sums[block], squared_norms, with_norms)
    sums = np.zeros(n_features, dtype=np.float64)
    for block in range(MEAN_BLOCKS):
        for f in range(n_features):
            sums[f] += block_sums[block, f]
    return _largest_bits(block_largest, magnitude_mask), sums


def scan_float32(X, with_norms):
    """One pass over a C-contiguous float32 array for validation and the fit: ``(largest,
    X_mean, x_squared_norms)``, where ``largest`` is :func:`largest_magnitude`'s value,
    ``X_mean`` the column means summed in float64 and rounded to float32 (NumPy's float32
    mean sums in float32), and ``x_squared_norms`` :func:`row_norms_f64`'s values bit
    for bit, or None without ``with_norms``. Three passes before (MNIST float32 on two
    threads: largest 15.9 ms, NumPy's mean 22.7, row norms 12.5)."""
    magnitude_mask = np.int32(np.iinfo(np.int32).max)
    squared_norms = np.empty(X.shape[0] if with_norms else 0, dtype=np.float64)
    largest, sums = _scan_float32(X, X.reshape(-1).view(np.int32), magnitude_mask,
                                  squared_norms, with_norms)
    X_mean = (sums / X.shape[0]).astype(np.float32)
    return (float(np.int32(largest).view(np.float32)), X_mean,
            squared_norms if with_norms else None)


def largest_magnitude(X):
    """The largest ``|x|`` of a C-contiguous float32 or float64 array, as a Python float:
    NaN where X holds a NaN, else infinity where it holds one. One pass, against NumPy's
    two (``max`` and ``min``): MNIST float32, one thread, 6.2 against 14.5 ms."""
    signed = _SIGNED_OF_FLOAT[X.dtype.itemsize]
    magnitude_mask = signed(np.iinfo(signed).max)  # every bit but the sign
    largest = _largest_magnitude_bits(X.reshape(-1).view(signed), magnitude_mask)
    return float(signed(largest).view(X.dtype))


def inertia(X, sample_weight, centers, labels):
    return np.float64(_weighted_sum_f64(_assigned_distances(X, centers, labels), sample_weight))
