"""The CPU engine: Numba kernels for one Lloyd step, inertia, transform and k-means++.

Layout follows scikit-learn's ``_k_means_lloyd.pyx``: rows are processed in chunks of
``chunk_rows`` samples; a chunk's dot products with the centers come from one BLAS GEMM
(single-threaded inside the parallel loop, see :func:`cpu_runtime`) or, when the product
is skinny, from a register-blocked kernel (:func:`_dots_6x4`), and the argmin and the
center accumulation run while the chunk is still in cache. float32 runs keep distance
bounds between iterations (Elkan's or Hamerly's, :class:`_BoundsRun`) and compute only
the distances that the bounds leave open.

Determinism: ``prange`` runs over *groups* of consecutive chunks whose number depends
only on the data's shape, never on the thread count. Each group accumulates into its own
float64 partial buffer in sample order, and the partials are added in group order after
the loop. So the same input gives bitwise the same output with 1 thread or 64.

Prior validation of data is assumed everywhere in this module.
"""

import contextlib
import logging
import os
import signal
import tempfile
import threading

import numpy as np

import numba
from numba import njit, prange
from numba.core import event as numba_event

from ._cpu_small import CANCELLATION as _CANCELLATION
from ._cpu_small import CHUNK_ROWS, group_bounds
from ._cpu_small import fold_rows as _fold_rows
from ._cpu_small import n_chunks as _n_chunks
from ._cpu_small import n_groups as _n_groups
from ._cpu_small import SUBNORMAL_NORM as _SUBNORMAL_NORM
from ._cpu_small import blas_controller
from ._cpu_small import bound_margin_coefficient as _bound_margin_coefficient
from ._cpu_small import centers_squared_norms as _centers_squared_norms
from ._cpu_small import near_the_origin
from ._engine import Engine, StatelessRun

logger = logging.getLogger(__name__)


def _ensure_writable_numba_cache():
    """Point Numba's cache at a writable directory before any ``cache=True`` function.

    Numba caches beside the module (``__pycache__``) or else under the home directory,
    and raises at decoration time when it can use neither. In a read-only site-packages
    with no usable home that would make ``import gpukmeans`` fail; a per-user temporary
    directory keeps it working (and the cache useful within a machine). Returns whether
    caching is possible at all.
    """
    if numba.config.CACHE_DIR:
        return True
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    candidates = [here]
    home = os.path.expanduser("~")
    if home and home != "~":
        candidates.append(os.path.join(home, ".cache", "gpukmeans", "numba"))
    candidates.append(os.path.join(tempfile.gettempdir(), f"gpukmeans-numba-{os.getuid()}"))
    for path in candidates:
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".probe"):
                pass
        except OSError:
            continue
        if path != here:
            numba.config.CACHE_DIR = path
        return True
    logger.debug("no writable directory for Numba's cache; kernels compile in every process")
    return False


_CACHE = _ensure_writable_numba_cache()


def _prefer_workqueue_threads():
    """Use Numba's own thread pool unless the user chose a threading layer.

    Our parallel loops are coarse (tens of groups per call), so nothing is gained from
    OpenMP, while libgomp's threads spin actively between parallel regions: on a shared
    or busy machine that made each Lloyd step ten times slower here. The workqueue layer
    sleeps instead. It cannot run two parallel regions at once, so every public call
    holds :data:`_ENGINE_LOCK` (see :func:`cpu_runtime`). An explicit
    ``NUMBA_THREADING_LAYER``, or a layer already started, is left alone.
    """
    if os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER != "default":
        return
    try:
        numba.threading_layer()
        return  # already started: too late to choose
    except ValueError:
        pass
    numba.config.THREADING_LAYER = "workqueue"


_prefer_workqueue_threads()
_ENGINE_LOCK = threading.RLock()


class _CompileNotice(numba_event.Listener):
    """Says, once per public call, that this engine's kernels are being compiled: with an
    empty cache a first fit compiles for up to a minute, which must not look like a hang.

    Numba raises the event only for a real compile, never for a load from the cache.
    The command shows the INFO line on stderr; :func:`warm_up` (``gpukmeans compile``)
    compiles everything ahead of time.
    """

    def __init__(self):
        self.announced = False

    def on_start(self, event):
        dispatcher = event.data["dispatcher"]
        module = getattr(dispatcher.py_func, "__module__", None) or ""
        if self.announced or not module.startswith("gpukmeans."):
            return
        self.announced = True
        if _CACHE:
            logger.info("compiling the CPU kernels once (up to a minute); later runs reuse them")
        else:
            logger.info("compiling the CPU kernels (up to a minute); with no writable cache "
                        "directory, every process compiles them again")

    def on_end(self, event):
        pass


_COMPILE_NOTICE = _CompileNotice()
numba_event.register("numba:compile", _COMPILE_NOTICE)

# float32 runs use Elkan's bounds from this many clusters on, while n_samples x n_clusters
# float32 bounds fit in the budget; Hamerly's otherwise. MNIST, 20 iterations, per
# iteration, Elkan against Hamerly: k=12 23.6 ms vs 20.0, k=20 24.8 vs 23.7, k=32 28.9 vs
# 30.3, k=64 42.5 vs 49.8, k=256 76 vs 131. Below the crossover the samples left open
# cost a dot product or two each either way, and Elkan's k bounds per sample cost more
# to keep than they save. Remeasured with the moves inside the E-step and Elkan's full
# searches (ELKAN_OPEN_DIVISOR): k=20, whole fit, 424 ms Elkan vs 421 ms Hamerly.
ELKAN_MIN_CLUSTERS = 24
ELKAN_BOUNDS_BUDGET_BYTES = 256 * 2**20
# In Elkan's step, a sample with more than n_clusters // ELKAN_OPEN_DIVISOR centers
# still open after tightening is searched in full by the blocked kernel (which computes
# a distance several times faster than a single dot product, and refreshes every bound)
# instead of one dot product per open center. MNIST, 20 iterations, whole fit: k=256
# 1.34 s at k // 32 and k // 8 open, 1.37 s never searching, 1.58 s from 2 open; k=20
# the same either way (within the noise).
ELKAN_OPEN_DIVISOR = 16
# Up to this many clusters the float32 E-step uses _rows_dots_blocked. Full MNIST, 2
# threads, whole E+M step against the SGEMM path: 0.84x at k=20, 0.92x at 32, 0.97x at
# 64, even from 128 on (one noisy run each; the SGEMM wins as k grows).
BLOCKED_DOTS_MAX_CLUSTERS = 64


@contextlib.contextmanager
def cpu_runtime():
    """What every public call runs inside (``Engine.runtime``): one engine call at a
    time per process, and BLAS limited to one thread while Numba's threads each call it
    on their own chunk.

    Without the limit, every Numba thread's GEMM would start its own BLAS threads
    (oversubscription), and a multi-threaded GEMM is not guaranteed to sum in the
    same order as a single-threaded one.
    """
    try:
        with _ENGINE_LOCK, blas_controller().limit(limits=1, user_api="blas"), \
                _interrupts_not_dropped():
            _COMPILE_NOTICE.announced = False
            yield
    except SystemError as exc:
        # Ctrl-C while Numba code runs: the KeyboardInterrupt is raised as a compiled
        # function (or a helper it calls back, such as _numba_unpickle) returns, and
        # CPython reports "returned a result with an exception set": a SystemError caused
        # by it, possibly through another such SystemError. The caller gets its
        # KeyboardInterrupt.
        cause, seen = exc, 0
        while cause is not None and seen < 16:
            if isinstance(cause, KeyboardInterrupt):
                raise KeyboardInterrupt from None
            cause, seen = cause.__cause__ or cause.__context__, seen + 1
        raise


@contextlib.contextmanager
def _interrupts_not_dropped():
    """A Ctrl-C during the block reaches the caller as a KeyboardInterrupt, even one that
    lands while Numba compiles, inside an llvmlite ctypes callback, which prints the
    exception and drops it: the interrupt is remembered, and raised when the block ends.

    Only where Python's own SIGINT handler is in place, in the main thread: a program's
    (or the command's) own handler is left alone.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    interrupted = []

    def remember_and_raise(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, remember_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:  # raised, and dropped on the way
        raise KeyboardInterrupt


def _prange_only():
    """Numba's ``parallel`` option with only the explicit ``prange`` loops parallel.

    With ``parallel=True`` Numba also turns array expressions, ``np.zeros`` and
    reductions such as ``a.min()`` into parallel regions of their own. Each costs a
    thread-pool launch (about 0.1 ms here), which on a small array is all cost: twenty
    ``row.min()`` made a k=20 Elkan step 2 ms slower. A new dict each time: Numba
    consumes the one it is given.
    """
    return dict(
        comprehension=False, reduction=False, inplace_binop=False, setitem=False,
        numpy=False, stencil=False, fusion=False, prange=True,
    )


# The same rows per group as the NumPy engine's float64 sums (one definition, compiled).
_group_bounds = njit(nogil=True, cache=_CACHE)(group_bounds)


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=_CACHE)
def _squared_distance_f64(x, c):
    """``||x - c||^2`` from the differences, in float64.

    ``reassoc`` lets the sum vectorise (the inertia pass was 3x slower with four scalar
    running sums); the order is then fixed by the compiled code, the same for every
    thread count.
    """
    s = 0.0
    for f in range(x.shape[0]):
        d = np.float64(x[f]) - np.float64(c[f])
        s += d * d
    return s


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
def _reduce_partials(sums_part, weights_part):
    """Add the groups' float64 partial sums in group order, clusters in parallel.

    Each output element is ``((p_0 + p_1) + p_2) + ...`` whatever the thread count.
    """
    n_groups, n_clusters, n_features = sums_part.shape
    sums = np.empty((n_clusters, n_features), dtype=np.float64)
    weight_in_clusters = np.empty(n_clusters, dtype=np.float64)
    for j in prange(n_clusters):
        sums[j] = sums_part[0, j]
        weight_in_clusters[j] = weights_part[0, j]
        for group in range(1, n_groups):
            sums[j] += sums_part[group, j]
            weight_in_clusters[j] += weights_part[group, j]
    return sums, weight_in_clusters


@njit(nogil=True, fastmath={"contract"}, cache=_CACHE)
def _accumulate_chunk(
    X,  # IN (n_samples, n_features)
    sample_weight,  # IN (n_samples,)
    labels,  # IN (n_samples,)
    chunk_start,
    chunk_end,
    center_acc,  # INOUT (n_clusters, n_features) X.dtype
    weights,  # INOUT (n_clusters,) float64
    touched,  # INOUT (n_clusters,) bool: rows of center_acc not yet folded
):
    """Add ``w_i x_i`` of a chunk's samples to their cluster's row, in X's dtype.

    Summing in X's dtype lets float32 data use full-width SIMD (float64 would halve
    it and add a conversion per element); :func:`_fold_centers` moves the sums into
    float64 often enough that each float32 sum spans few samples. ``contract`` allows
    fused multiply-adds here only: the order of the additions is unchanged.
    """
    n_features = X.shape[1]
    for sample in range(chunk_start, chunk_end):
        label = labels[sample]
        weight = sample_weight[sample]
        weights[label] += np.float64(weight)
        touched[label] = True
        center_row = center_acc[label]
        x = X[sample]
        for f in range(n_features):
            center_row[f] += weight * x[f]


@njit(nogil=True, cache=_CACHE)
def _fold_centers(center_acc, touched, sums):
    """``sums += center_acc`` (float64) for the touched rows, which are then cleared."""
    n_clusters, n_features = center_acc.shape
    for j in range(n_clusters):
        if touched[j]:
            for f in range(n_features):
                sums[j, f] += center_acc[j, f]
                center_acc[j, f] = 0
            touched[j] = False


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=_CACHE)
def _dot1(x, c):
    """``x . c``, vectorised over features (``reassoc``: see below)."""
    s = x.dtype.type(0)
    for f in range(x.shape[0]):
        s += x[f] * c[f]
    return s


# Few clusters (the E-step at small k) or a few candidates (each k-means++ step, 2 + ln k)
# make the GEMM skinny: OpenBLAS packs each chunk of X before multiplying, and at N = 20
# the packing costs about as much as the flops (one core, 20,000 MNIST rows: SGEMM 48
# GFLOP/s, this kernel 68, and 97 with X in cache). A block of 6 rows x 4 centers keeps
# 24 sums in vector registers, vectorised over features; each loaded feature of X serves
# 4 centers and each center's 6 rows, and nothing is packed. ``reassoc`` lets the sums
# over features vectorise; their order is then fixed by the compiled code, the same for
# every thread count, as a BLAS kernel's is.
@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=_CACHE)
def _dots_6x4(X, rows, r, centers, center, dots):
    """``dots[r + i, center + c] = X[rows[r + i]] . centers[center + c]``, i < 6, c < 4."""
    x0, x1, x2 = X[rows[r]], X[rows[r + 1]], X[rows[r + 2]]
    x3, x4, x5 = X[rows[r + 3]], X[rows[r + 4]], X[rows[r + 5]]
    c0, c1, c2, c3 = centers[center], centers[center + 1], centers[center + 2], centers[center + 3]
    zero = X.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    s40 = s41 = s42 = s43 = s50 = s51 = s52 = s53 = zero
    for f in range(X.shape[1]):
        b0, b1, b2, b3 = c0[f], c1[f], c2[f], c3[f]
        a = x0[f]
        s00 += a * b0; s01 += a * b1; s02 += a * b2; s03 += a * b3  # noqa: E702
        a = x1[f]
        s10 += a * b0; s11 += a * b1; s12 += a * b2; s13 += a * b3  # noqa: E702
        a = x2[f]
        s20 += a * b0; s21 += a * b1; s22 += a * b2; s23 += a * b3  # noqa: E702
        a = x3[f]
        s30 += a * b0; s31 += a * b1; s32 += a * b2; s33 += a * b3  # noqa: E702
        a = x4[f]
        s40 += a * b0; s41 += a * b1; s42 += a * b2; s43 += a * b3  # noqa: E702
        a = x5[f]
        s50 += a * b0; s51 += a * b1; s52 += a * b2; s53 += a * b3  # noqa: E702
    out = dots[r:r + 6, center:center + 4]
    out[0, 0], out[0, 1], out[0, 2], out[0, 3] = s00, s01, s02, s03
    out[1, 0], out[1, 1], out[1, 2], out[1, 3] = s10, s11, s12, s13
    out[2, 0], out[2, 1], out[2, 2], out[2, 3] = s20, s21, s22, s23
    out[3, 0], out[3, 1], out[3, 2], out[3, 3] = s30, s31, s32, s33
    out[4, 0], out[4, 1], out[4, 2], out[4, 3] = s40, s41, s42, s43
    out[5, 0], out[5, 1], out[5, 2], out[5, 3] = s50, s51, s52, s53


@njit(nogil=True, cache=_CACHE)
def _minus_two_centers_and_norms(centers):
    """``-2 c`` and ``||c||^2`` in the centers' dtype, and the largest ``||c||^2`` in
    float64 as the rounding margins use it (padded for subnormals: see
    :data:`_SUBNORMAL_NORM`).

    ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the argmin over c needs only
    ||c||^2 - 2 x.c, computed in X's dtype as scikit-learn's Lloyd does. Scaling the
    centers by -2 is exact in binary floating point, so the products yield -2 x.c with
    no extra multiply.
    """
    n_clusters, n_features = centers.shape
    minus_two_centers = np.empty((n_clusters, n_features), dtype=centers.dtype)
    squared_norms = np.zeros(n_clusters, dtype=centers.dtype)
    for j in range(n_clusters):
        for f in range(n_features):
            minus_two_centers[j, f] = -2 * centers[j, f]
            squared_norms[j] += centers[j, f] * centers[j, f]
    max_squared_norm = np.float64(squared_norms.max()) + _SUBNORMAL_NORM
    return minus_two_centers, squared_norms, max_squared_norm


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=_CACHE)
def _dots_1x4(x, centers, center, dots):
    """``dots[center + c] = x . centers[center + c]`` for c < 4: one row, streamed once."""
    c0, c1, c2, c3 = centers[center], centers[center + 1], centers[center + 2], centers[center + 3]
    zero = x.dtype.type(0)
    s0 = s1 = s2 = s3 = zero
    for f in range(x.shape[0]):
        a = x[f]
        s0 += a * c0[f]; s1 += a * c1[f]; s2 += a * c2[f]; s3 += a * c3[f]  # noqa: E702
    dots[center], dots[center + 1], dots[center + 2], dots[center + 3] = s0, s1, s2, s3


@njit(nogil=True, cache=_CACHE)
def _row_dots(x, centers, dots):
    """``dots = centers @ x`` for one row, four centers at a time (the last four overlap
    the previous ones), so that a row's dot products do not depend on its neighbours.

    For up to four centers against every row (the k-means++ candidates up to k=20): X
    is streamed once in order. MNIST, whole k-means++ at k=20: 204 ms against 245 with
    the blocked kernel; with 7 candidates (k=256) the blocked kernel wins, 4.2 s to 5.4.
    """
    n_centers = centers.shape[0]
    if n_centers < 4:
        for j in range(n_centers):
            dots[j] = _dot1(x, centers[j])
        return
    center = 0
    while center < n_centers:
        center = min(center, n_centers - 4)
        _dots_1x4(x, centers, center, dots)
        center += 4


@njit(nogil=True, cache=_CACHE)
def _rows_dots_blocked(X, rows, n_rows, centers, dots):
    """``dots[r] = centers @ X[rows[r]]`` for ``r < n_rows``, without BLAS.

    ``rows`` lists the samples: a chunk's consecutive rows, or the few that Hamerly's
    bounds could not settle (gathered by index, never copied). Rows and centers beyond
    the last full block are covered by one more block that overlaps the previous one,
    so every product comes from :func:`_dots_6x4`, whose value for a (row, center) pair
    does not depend on the block it sits in: a sample's dot products, hence its label,
    are the same wherever it lies in X. Only fewer than 6 rows or fewer than 4 centers
    use the per-row kernel.
    """
    n_clusters = centers.shape[0]
    if n_rows < 6 or n_clusters < 4:
        for r in range(n_rows):
            x = X[rows[r]]
            for j in range(n_clusters):
                dots[r, j] = _dot1(x, centers[j])
        return
    r = 0
    while r < n_rows:
        r = min(r, n_rows - 6)
        center = 0
        while center < n_clusters:
            center = min(center, n_clusters - 4)
            _dots_6x4(X, rows, r, centers, center, dots)
            center += 4
        r += 6


@njit(nogil=True, cache=_CACHE)
def _chunk_dots_blocked(X, chunk_start, chunk_end, centers, rows, dots):
    """:func:`_rows_dots_blocked` for a chunk's consecutive rows; ``rows`` is scratch."""
    for r in range(chunk_end - chunk_start):
        rows[r] = chunk_start + r
    _rows_dots_blocked(X, rows, chunk_end - chunk_start, centers, dots)


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
def _lloyd_chunked(
    X,  # IN (n_samples, n_features)
    sample_weight,  # IN (n_samples,)
    centers_old,  # IN (n_clusters, n_features)
    centers_squared_norms,  # IN (n_clusters,) X.dtype, from _centers_squared_norms
    labels,  # OUT (n_samples,) int32
    chunk_rows,
    fold_rows,
    n_groups,
    update_centers,
    blocked_dots,
    margin_coefficient,
):
    """One E-step, and the M-step sums when ``update_centers``.

    ``blocked_dots`` picks :func:`_rows_dots_blocked` over a BLAS GEMM for ``x . c``.
    ``margin_coefficient`` > 0 (float32) has near-ties decided in float64
    (:func:`_nearest_of_near_ties`); 0 keeps the plain argmin (float64, whose labels
    stay bitwise scikit-learn's).

    Returns ``(sums, weight_in_clusters)`` in float64; both are all zero when
    ``update_centers`` is False.
    """
    n_samples, n_features = X.shape
    n_clusters = centers_old.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows

    minus_two_centers, _, _ = _minus_two_centers_and_norms(centers_old)
    max_center_norm = np.float64(centers_squared_norms.max()) + _SUBNORMAL_NORM
    # A transposed view, not a copy: the GEMM is then called as scikit-learn calls it
    # (X times the centers transposed), and OpenBLAS sums in the same order; a copy takes
    # another kernel, whose other order breaks exact ties (integer data) the other way.
    minus_two_centers_t = minus_two_centers.T

    n_part = n_groups if update_centers else 1
    # Zeroed by each group's own thread, in parallel (see below).
    sums_part = np.empty((n_part, n_clusters, n_features), dtype=np.float64)
    weights_part = np.zeros((n_part, n_clusters), dtype=np.float64)

    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        if update_centers:
            sums_part[group] = 0.0
        n_acc = n_clusters if update_centers else 0
        center_acc = np.zeros((n_acc, n_features), dtype=X.dtype)
        touched = np.zeros(n_acc, dtype=np.bool_)
        rows_since_fold = 0
        dots_buffer = np.empty((chunk_rows, n_clusters), dtype=X.dtype)
        values_buffer = np.empty(n_clusters, dtype=X.dtype)
        rows = np.empty(chunk_rows, dtype=np.int64)
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            dots = dots_buffer[: chunk_end - chunk_start]  # (chunk, n_clusters)
            if blocked_dots:
                _chunk_dots_blocked(X, chunk_start, chunk_end, minus_two_centers, rows, dots)
            else:
                np.dot(X[chunk_start:chunk_end], minus_two_centers_t, dots)
            for i in range(chunk_end - chunk_start):
                values = values_buffer
                for j in range(n_clusters):
                    values[j] = centers_squared_norms[j] + dots[i, j]
                x = X[chunk_start + i]
                tie_gap = -1.0  # float64: the plain argmin
                if margin_coefficient > 0:
                    # ||x||^2 from the cached row, rounded up past its float32 error.
                    x_squared_norm = np.float64(_dot1(x, x)) * (1 + margin_coefficient)
                    tie_gap = 2 * margin_coefficient * (x_squared_norm + max_center_norm)
                labels[chunk_start + i] = _exact_argmin(x, centers_old, values, tie_gap)
            if update_centers:
                _accumulate_chunk(
                    X, sample_weight, labels, chunk_start, chunk_end,
                    center_acc, weights_part[group], touched,
                )
                rows_since_fold += chunk_end - chunk_start
                if rows_since_fold >= fold_rows or chunk_end == end:
                    _fold_centers(center_acc, touched, sums_part[group])
                    rows_since_fold = 0

    # Fixed-order reduction of the per-group partials.
    if not update_centers:
        return np.zeros((n_clusters, n_features)), np.zeros(n_clusters)
    return _reduce_partials(sums_part, weights_part)


# --- Distance bounds (float32 runs): Hamerly's, and Elkan's from ELKAN_MIN_CLUSTERS on ---
#
# Most samples keep their cluster from one iteration to the next. Hamerly (2010) keeps,
# per sample, an upper bound on the distance to its own center and a lower bound on the
# distance to every other; moving the centers loosens them by how far the centers moved.
# While upper <= max(lower, half the gap from its center to the nearest other center),
# no other center can be closer, and the sample is skipped; if not, the exact distance
# to its own center tightens the upper bound and may still settle it. Only the rest are
# searched. Ours keeps the lower bound of the runner-up apart: when only it is left open,
# one more dot product settles the sample. On MNIST at k=20 (from k-means++) 35-75% of
# the samples are settled from the fifth iteration on. Elkan (2003) keeps a lower bound per center instead, so that an
# unsettled sample computes only the distances its bounds leave open (_elkan_e_step).
# Either way, a sample that changes cluster moves its row between the two clusters'
# sums during the E-step (_move_sample); the M-step adds up those moves.
#
# The bounds are exact-arithmetic statements about float32 centers; the distances they
# are set from are ||x||^2 + (||c||^2 - 2 x.c) with a float32 dot product. A margin
# larger than that rounding (see _bound_margin_coefficient) keeps them bounds, so a
# skipped sample's label is its exact nearest center; a searched sample's is too, as in
# the plain step, since near-ties within twice the margin are decided in float64
# (_nearest_of_near_ties). Both can differ from scikit-learn only at near-ties.


@njit(nogil=True, cache=_CACHE)
def _distance_bound(x_squared_norm, value, margin):
    """``sqrt(||x||^2 + value + margin)`` clipped at 0, where ``value = ||c||^2 - 2 x.c``:
    an upper bound on ``||x - c||`` for a margin above the rounding, a lower bound for
    its negative."""
    return np.sqrt(max(x_squared_norm + value + margin, 0.0))


# A float32 value ||c||^2 - 2 x.c is off by at most the margin, so two centers whose
# values are within twice the margin are a near-tie that float32 cannot order: the
# float64 distances from the differences decide it, and the label is then the exactly
# nearest center (lowest index on an exact tie, as argmin). Without this, a near-tie
# in one step sends a float32 run down another path than the float64 run's (MNIST,
# k=256, 20 iterations: 1.6% of the labels and 1.8e-5 of the inertia apart). Near-ties
# are rare, so the float64 work is negligible.
@njit(nogil=True, cache=_CACHE)
def _nearest_of_near_ties(x, centers, values, best, best_value, tie_gap):
    """The exactly nearest of ``best`` and the centers whose float32 ``values``
    (``||c||^2 - 2 x.c``) are within ``tie_gap`` of ``best_value``."""
    limit = best_value + tie_gap
    best_distance = -1.0
    for j in range(values.shape[0]):
        if j == best or values[j] > limit:
            continue
        if best_distance < 0:
            best_distance = _squared_distance_f64(x, centers[best])
        distance = _squared_distance_f64(x, centers[j])
        if distance < best_distance or (distance == best_distance and j < best):
            best = j
            best_distance = distance
    return best


@njit(nogil=True, cache=_CACHE)
def _exact_argmin(x, centers, values, tie_gap):
    """The argmin of ``values`` (``||c||^2 - 2 x.c``; lowest index on equal values), a
    near-tie within ``tie_gap`` of the minimum decided by :func:`_nearest_of_near_ties`;
    a negative ``tie_gap`` keeps the plain argmin."""
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
    if second_value - best_value <= tie_gap:
        best = _nearest_of_near_ties(x, centers, values, best, best_value, tie_gap)
    return best


@njit(nogil=True, cache=_CACHE)
def _closer_exactly(x, centers, j, label):
    """Whether center ``j`` is nearer to ``x`` than ``label`` in float64 (argmin's order)."""
    distance = _squared_distance_f64(x, centers[j])
    label_distance = _squared_distance_f64(x, centers[label])
    return distance < label_distance or (distance == label_distance and j < label)


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
def _hamerly_e_step(
    X,  # IN (n_samples, n_features)
    x_squared_norms,  # IN (n_samples,) float64
    centers,  # IN (n_clusters, n_features)
    labels,  # INOUT (n_samples,) int32
    upper,  # INOUT (n_samples,) float64
    runner_up,  # INOUT (n_samples,) int32: the second nearest center at the last search
    lower_runner_up,  # INOUT (n_samples,) float64: a lower bound on the distance to it
    lower,  # INOUT (n_samples,) float64: ... to every center but the label and runner-up
    center_shift,  # IN (n_clusters,) float64: how far each center moved since the last call
    half_gap,  # IN (n_clusters,) float64: half the distance to the nearest other center
    margin_coefficient,
    sample_weight,  # IN (n_samples,)
    delta_sums,  # INOUT (n_groups, n_clusters, n_features) float64, zero on entry
    touched,  # INOUT (n_groups, n_clusters) bool, False on entry
    distances,  # OUT (n_samples,) float64 ||x - its center||^2, or (0,): not wanted
    chunk_rows,
    n_groups,
):
    """One E-step with Hamerly's bounds; moves the samples that change cluster in the
    per-group ``delta_sums`` (see :func:`_move_sample`).

    The runner-up keeps a bound of its own: it is usually the one center that Hamerly's
    single bound cannot rule out, and then one dot product settles the sample instead
    of a search of every center.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows

    minus_two_centers, centers_squared_norms, max_center_norm = _minus_two_centers_and_norms(
        centers
    )

    # `lower` covers every center but two: it loosens by the largest shift among them,
    # which is at most the second largest when the one that moved most is one of the two.
    farthest = np.argmax(center_shift)
    largest_shift = center_shift[farthest]
    second_shift = 0.0
    for j in range(n_clusters):
        if j != farthest and center_shift[j] > second_shift:
            second_shift = center_shift[j]

    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        rows = np.empty(chunk_rows, dtype=np.int64)
        dots = np.empty((chunk_rows, n_clusters), dtype=X.dtype)
        values_buffer = np.empty(n_clusters, dtype=X.dtype)
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            n_search = 0
            for i in range(chunk_start, chunk_end):
                label = labels[i]
                if label < 0:  # the run's first E-step: nothing to bound yet
                    rows[n_search] = i
                    n_search += 1
                    continue
                second = runner_up[i]
                upper[i] += center_shift[label]
                lower_runner_up[i] -= center_shift[second]
                lower[i] -= second_shift if farthest == label or farthest == second else largest_shift
                others = max(lower[i], half_gap[label])
                bound = max(min(lower_runner_up[i], lower[i]), half_gap[label])
                if upper[i] <= bound:
                    continue
                # The upper bound only grows between searches: the distance to the own
                # center (one dot product, against a search's n_clusters) often settles it.
                x = X[i]
                label_value = centers_squared_norms[label] + _dot1(x, minus_two_centers[label])
                margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
                upper[i] = _distance_bound(x_squared_norms[i], label_value, margin)
                if upper[i] <= bound:
                    continue
                if upper[i] > others:
                    rows[n_search] = i
                    n_search += 1
                    continue
                if second == label:  # bounds that were never set: `others` covers all
                    continue
                # Only the runner-up may be nearer.
                value = centers_squared_norms[second] + _dot1(x, minus_two_centers[second])
                if value > label_value + 2 * margin or (
                    value >= label_value - 2 * margin
                    and not _closer_exactly(x, centers, second, label)
                ):
                    lower_runner_up[i] = _distance_bound(x_squared_norms[i], value, -margin)
                    continue
                runner_up[i] = label
                lower_runner_up[i] = _distance_bound(x_squared_norms[i], label_value, -margin)
                upper[i] = _distance_bound(x_squared_norms[i], value, margin)
                _move_sample(x, sample_weight[i], label, second, delta_sums[group], touched[group])
                labels[i] = second
            _rows_dots_blocked(X, rows, n_search, minus_two_centers, dots)
            for r in range(n_search):
                i = rows[r]
                values = values_buffer
                for j in range(n_clusters):
                    values[j] = centers_squared_norms[j] + dots[r, j]
                best = 0
                best_value = values[0]
                second = 0
                second_value = np.inf
                third_value = np.inf
                for j in range(1, n_clusters):
                    value = values[j]
                    if value < best_value:
                        third_value = second_value
                        second_value = best_value
                        second = best
                        best_value = value
                        best = j
                    elif value < second_value:
                        third_value = second_value
                        second_value = value
                        second = j
                    elif value < third_value:
                        third_value = value
                margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
                label = best
                if second_value - best_value <= 2 * margin:
                    label = _nearest_of_near_ties(X[i], centers, values, best, best_value, 2 * margin)
                if label != best:
                    # The float32 minimum is now the runner-up, and every other center's
                    # value is at least the second smallest.
                    second = best
                    third_value = second_value
                    second_value = best_value
                upper[i] = _distance_bound(x_squared_norms[i], values[label], margin)
                runner_up[i] = second if n_clusters > 1 else label
                lower_runner_up[i] = _distance_bound(x_squared_norms[i], second_value, -margin)
                lower[i] = _distance_bound(x_squared_norms[i], third_value, -margin)
                if labels[i] != label:
                    _move_sample(X[i], sample_weight[i], labels[i], label, delta_sums[group], touched[group])
                    labels[i] = label
            _chunk_distances(X, centers, labels, chunk_start, chunk_end, distances)


@njit(nogil=True, cache=_CACHE)
def _lower_bound_f32(distance):
    """A float32 no larger than ``distance`` (>= 0): rounding to nearest may round up,
    by a relative 6e-8, or by half a subnormal below float32's normal range."""
    return np.float32(max(distance * (1.0 - 1e-6) - 1e-45, 0.0))


@njit(nogil=True, cache=_CACHE)
def _any_center_open(upper, bounds, half_distances, label):
    """Whether some center other than ``label`` is not ruled out by Elkan's test."""
    for j in range(bounds.shape[0]):
        if j != label and upper > max(np.float64(bounds[j]), half_distances[j]):
            return True
    return False


@njit(nogil=True, cache=_CACHE)
def _elkan_open_distances(
    x, x_squared_norm, label, upper, bounds, half_center_distances, centers,
    minus_two_centers, centers_squared_norms, margin, max_open,
):
    """One unsettled sample of :func:`_elkan_e_step`: the distances its bounds leave open.

    A center stays closed while ``upper <= max(bounds[j], half the distance between the
    sample's center and j)``. If one is open, the distance to the sample's own center
    tightens ``upper``. Up to ``max_open`` centers still open then cost one dot product
    each, which also refreshes their bounds. Returns ``(label, upper, search)``;
    ``search`` asks the caller to search the sample in full instead (more centers open):
    the blocked kernel computes every distance for little more than a few single dot
    products, and refreshing every bound keeps the sample settled for longer.
    A center within twice the margin of the current label's value is compared in
    float64 (:func:`_closer_exactly`). ``bounds`` (float32, up to date) is updated in
    place.
    """
    if not _any_center_open(upper, bounds, half_center_distances[label], label):
        return label, upper, False
    label_value = centers_squared_norms[label] + _dot1(x, minus_two_centers[label])
    upper = _distance_bound(x_squared_norm, label_value, margin)
    bounds[label] = _lower_bound_f32(_distance_bound(x_squared_norm, label_value, -margin))
    n_open = 0
    half_distances = half_center_distances[label]
    for j in range(bounds.shape[0]):
        if j != label and upper > max(np.float64(bounds[j]), half_distances[j]):
            n_open += 1
    if n_open > max_open:
        return label, upper, True
    for j in range(bounds.shape[0]):
        if j == label or upper <= max(np.float64(bounds[j]), half_center_distances[label, j]):
            continue
        value = centers_squared_norms[j] + _dot1(x, minus_two_centers[j])
        bounds[j] = _lower_bound_f32(_distance_bound(x_squared_norm, value, -margin))
        if value > label_value + 2 * margin:
            continue
        if value >= label_value - 2 * margin and not _closer_exactly(x, centers, j, label):
            continue
        label = j
        label_value = value
        upper = _distance_bound(x_squared_norm, value, margin)
    return label, upper, False


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
def _elkan_e_step(
    X,  # IN (n_samples, n_features)
    x_squared_norms,  # IN (n_samples,) float64
    centers,  # IN (n_clusters, n_features)
    labels,  # INOUT (n_samples,) int32
    upper,  # INOUT (n_samples,) float64
    lower,  # INOUT (n_samples, n_clusters) float32: a bound per center, as of `stamp`
    stamp,  # INOUT (n_samples,) int64: the row of `drift` at which `lower[i]` was set
    drift,  # IN (n_steps + 1, n_clusters) float64: cumulative center shifts; last row is now
    center_shift,  # IN (n_clusters,) float64: this step's shifts (the last row of drift's)
    half_center_distances,  # IN (n_clusters, n_clusters) float64, +inf on the diagonal
    half_gap,  # IN (n_clusters,) float64: its row minima
    margin_coefficient,
    search_all,  # no bounds yet: search every sample and set them all
    max_open,  # more open centers than this: search the sample in full
    sample_weight,  # IN, and the moves, as in _hamerly_e_step
    delta_sums,  # INOUT
    touched,  # INOUT
    distances,  # OUT, as in _hamerly_e_step
    chunk_rows,
    n_groups,
):
    """One E-step with Elkan's bounds.

    A lower bound per (sample, center) lets a sample that Hamerly's single bound cannot
    settle compute only the few distances its bounds leave open, one dot product each,
    instead of searching every center. The per-center bounds are loosened lazily: a
    sample's are brought up to date (by the centers' drift since its stamp) only when
    its upper bound fails the cheap test, so a settled sample costs O(1), not O(k).
    Samples with many centers open are gathered per chunk and searched in full with
    the blocked kernel, as in Hamerly's step.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows

    minus_two_centers, centers_squared_norms, max_center_norm = _minus_two_centers_and_norms(
        centers
    )

    now = drift.shape[0] - 1
    drift_now = drift[now]

    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        rows = np.empty(chunk_rows, dtype=np.int64)
        dots = np.empty((chunk_rows, n_clusters), dtype=X.dtype)
        values_buffer = np.empty(n_clusters, dtype=X.dtype)
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            n_search = 0
            for i in range(chunk_start, chunk_end):
                old = labels[i]
                bound_upper = upper[i] + center_shift[old]
                if search_all or bound_upper > half_gap[old]:
                    if search_all:
                        rows[n_search] = i
                        n_search += 1
                        continue
                    # Loosen by the drift since the stamp; the relative 1e-12 covers
                    # the rounding of the cumulative sums' difference.
                    bounds = lower[i]
                    then = drift[stamp[i]]
                    for j in range(n_clusters):
                        loosen = drift_now[j] - then[j] + 1e-12 * drift_now[j]
                        bounds[j] = _lower_bound_f32(max(np.float64(bounds[j]) - loosen, 0.0))
                    stamp[i] = now
                    margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
                    label, bound_upper, search = _elkan_open_distances(
                        X[i], x_squared_norms[i], old, bound_upper, bounds,
                        half_center_distances, centers, minus_two_centers,
                        centers_squared_norms, margin, max_open,
                    )
                    if search:
                        rows[n_search] = i
                        n_search += 1
                        continue
                    if label != old:
                        _move_sample(X[i], sample_weight[i], old, label, delta_sums[group], touched[group])
                        labels[i] = label
                upper[i] = bound_upper
            _rows_dots_blocked(X, rows, n_search, minus_two_centers, dots)
            for r in range(n_search):
                i = rows[r]
                margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
                bounds = lower[i]
                values = values_buffer
                for j in range(n_clusters):
                    value = centers_squared_norms[j] + dots[r, j]
                    values[j] = value
                    bounds[j] = _lower_bound_f32(_distance_bound(x_squared_norms[i], value, -margin))
                label = _exact_argmin(X[i], centers, values, 2 * margin)
                upper[i] = _distance_bound(x_squared_norms[i], values[label], margin)
                stamp[i] = now
                if label != labels[i]:
                    _move_sample(X[i], sample_weight[i], labels[i], label, delta_sums[group], touched[group])
                    labels[i] = label
            _chunk_distances(X, centers, labels, chunk_start, chunk_end, distances)


# A sample that changes cluster moves its weighted row between the two clusters' float64
# sums right where the E-step found it, while the row is in cache: moved later, each
# row would be read from memory again (half a microsecond each on MNIST). Each group
# keeps its own deltas, added to the run's sums in group order, so the sums do not
# depend on the number of threads.
@njit(nogil=True, cache=_CACHE)
def _move_sample(x, weight, old, new, delta_sums, touched):
    """``delta_sums[new] += w x``, ``delta_sums[old] -= w x`` (unless ``old`` is -1)
    in float64."""
    weight = np.float64(weight)
    new_sums = delta_sums[new]
    if old < 0:  # the run's first E-step: no cluster yet
        for f in range(x.shape[0]):
            new_sums[f] += weight * np.float64(x[f])
    else:
        old_sums = delta_sums[old]
        for f in range(x.shape[0]):
            contribution = weight * np.float64(x[f])
            old_sums[f] -= contribution
            new_sums[f] += contribution
        touched[old] = True
    touched[new] = True


@njit(nogil=True, cache=_CACHE)
def _chunk_distances(X, centers, labels, chunk_start, chunk_end, distances):
    """The final E-step's ``distances[i] = ||x_i - centers[labels[i]]||^2`` for a chunk,
    right after its labels are final: the rows it read are still in cache, and the
    values are :func:`_assigned_distances`' bitwise. Nothing when ``distances`` is empty."""
    if distances.shape[0] == 0:
        return
    for i in range(chunk_start, chunk_end):
        distances[i] = _squared_distance_f64(X[i], centers[labels[i]])


@njit(nogil=True, cache=_CACHE)
def _add_delta_sums(sums, delta_sums, touched):
    """``sums += delta_sums[g]`` for each group g in order; leaves the deltas zero."""
    for group in range(delta_sums.shape[0]):
        for j in range(sums.shape[0]):
            if touched[group, j]:
                sums[j] += delta_sums[group, j]
                delta_sums[group, j] = 0.0
                touched[group, j] = False


@njit(nogil=True, cache=_CACHE)
def _weight_in_clusters(labels, sample_weight, n_clusters):
    """Fresh float64 weights per cluster, in sample order: an emptied cluster is exactly 0."""
    weights = np.zeros(n_clusters, dtype=np.float64)
    for i in range(labels.shape[0]):
        weights[labels[i]] += np.float64(sample_weight[i])
    return weights


class _BoundsRun:
    """The passes of one float32 run with distance bounds (``Engine.start_lloyd``).

    Elkan's bounds (one lower bound per sample and center, float32) from
    ``ELKAN_MIN_CLUSTERS`` on when they fit ``ELKAN_BOUNDS_BUDGET_BYTES``, else Hamerly's
    (one lower bound per sample). Keeps the bounds, the per-cluster sums (updated by the
    samples that moved) and the last centers between passes; :meth:`step` returns
    copies, which the driver may change (relocation).
    """

    def __init__(self, X, x_squared_norms, sample_weight, n_clusters):
        n_samples, n_features = X.shape
        self.X, self.x_squared_norms, self.sample_weight = X, x_squared_norms, sample_weight
        self.elkan = (
            n_clusters >= ELKAN_MIN_CLUSTERS
            and n_samples * n_clusters * 4 <= ELKAN_BOUNDS_BUDGET_BYTES
        )
        # Bounds that hold nothing: the first E-step searches every sample and sets them.
        self.upper = np.full(n_samples, np.inf)
        if self.elkan:
            self.lower = np.empty((n_samples, n_clusters), dtype=np.float32)
            self.stamp = np.zeros(n_samples, dtype=np.int64)
            # Row t: each center's total shift over the first t bounded E-steps.
            self.drift = np.zeros((1, n_clusters))
            self.max_open = max(1, n_clusters // ELKAN_OPEN_DIVISOR)
        else:
            self.lower = np.zeros(n_samples)
            self.runner_up = np.zeros(n_samples, dtype=np.int32)
            self.lower_runner_up = np.zeros(n_samples)
        self.sums = np.zeros((n_clusters, n_features))
        self.margin_coefficient = _bound_margin_coefficient(X.dtype, n_features)
        self.n_groups = _n_groups(_n_chunks(n_samples), n_clusters, n_features)
        self.delta_sums = np.zeros((self.n_groups, n_clusters, n_features))
        self.touched = np.zeros((self.n_groups, n_clusters), dtype=np.bool_)
        self.centers_prev = None
        self.bounds_set = False

    def step(self, centers_old, labels):
        """``lloyd_iter`` on the run's data. The first step (labels all -1) searches
        every sample, sets the bounds and adds every sample to the sums."""
        n_clusters = centers_old.shape[0]
        self._e_step(centers_old, labels)
        weight_in_clusters = _weight_in_clusters(labels, self.sample_weight, n_clusters)
        # An emptied cluster's sums are rounding residue: make them the exact zero that
        # scikit-learn's fresh sums would be.
        self.sums[weight_in_clusters == 0] = 0.0
        self.centers_prev = centers_old.copy()
        return self.sums.copy(), weight_in_clusters

    def finish(self, centers, labels, assign_labels):
        """The final E-step with the bounds, which also computes every sample's distance
        to its center for the inertia (one pass over X instead of two), or the inertia
        alone."""
        if not assign_labels:
            return inertia(self.X, self.sample_weight, centers, labels)
        distances = np.empty(self.X.shape[0])
        self._e_step(centers, labels, distances)
        self.centers_prev = centers.copy()
        return np.float64(_weighted_sum_f64(distances, self.sample_weight))

    def current_lower_bounds(self, labels):
        """``(n_samples, n_clusters)`` lower bounds on the distances to the last centers,
        as they stand (Elkan's are stored as of each sample's stamp; Hamerly's as one for
        the runner-up and one for the rest, none for the own center); for tests."""
        if self.elkan:
            loosen = self.drift[-1] - self.drift[self.stamp]
            return self.lower.astype(np.float64) - loosen
        rows = np.arange(labels.shape[0])
        bounds = np.repeat(self.lower[:, None], self.sums.shape[0], axis=1)
        bounds[rows, self.runner_up] = self.lower_runner_up
        bounds[rows, labels] = 0.0
        return bounds

    def _e_step(self, centers, labels, distances=None):
        if distances is None:
            distances = np.empty(0)
        if self.centers_prev is None:
            center_shift = np.zeros(centers.shape[0])
        else:
            center_shift = _center_distances(centers, self.centers_prev)
        half_center_distances = _half_center_distances(centers)
        half_gap = half_center_distances.min(axis=1)
        if self.elkan:
            if self.bounds_set:
                self.drift = np.vstack([self.drift, self.drift[-1] + center_shift])
            _elkan_e_step(
                self.X, self.x_squared_norms, centers, labels, self.upper, self.lower,
                self.stamp, self.drift, center_shift, half_center_distances, half_gap,
                self.margin_coefficient, not self.bounds_set, self.max_open,
                self.sample_weight, self.delta_sums, self.touched, distances, CHUNK_ROWS,
                self.n_groups,
            )
        else:
            # Hamerly's step searches every sample whose bounds hold nothing.
            _hamerly_e_step(
                self.X, self.x_squared_norms, centers, labels, self.upper, self.runner_up,
                self.lower_runner_up, self.lower, center_shift, half_gap, self.margin_coefficient,
                self.sample_weight, self.delta_sums, self.touched, distances, CHUNK_ROWS,
                self.n_groups,
            )
        self.bounds_set = True
        # The moves' deltas, also in the final E-step: the sums always match the labels.
        _add_delta_sums(self.sums, self.delta_sums, self.touched)


def _center_distances(centers_a, centers_b):
    """Row-wise ``||a_j - b_j||`` in float64, rounded up by a relative 1e-12 (a bound)."""
    diff = centers_a.astype(np.float64) - centers_b.astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff)) * (1 + 1e-12)


def _half_center_distances(centers):
    """Half the distance between every two centers, rounded down (float64 Gram form,
    minus its rounding: a bound); +inf on the diagonal."""
    c = centers.astype(np.float64)
    norms = np.einsum("ij,ij->i", c, c)
    squared = norms[:, None] + norms[None, :] - 2.0 * (c @ c.T)
    squared -= 1e-12 * (norms[:, None] + norms[None, :])
    np.fill_diagonal(squared, np.inf)
    return 0.5 * np.sqrt(np.maximum(squared, 0.0))


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
def _assigned_distances(X, centers, labels):
    """``||x_i - centers[labels[i]]||^2`` per sample, float64, from the differences."""
    n_samples = X.shape[0]
    distances = np.empty(n_samples, dtype=np.float64)
    for i in prange(n_samples):
        distances[i] = _squared_distance_f64(X[i], centers[labels[i]])
    return distances


@njit(nogil=True, cache=_CACHE)
def _weighted_sum_f64(values, sample_weight):
    """``sum_i w_i v_i`` in float64, sequential: the order never changes."""
    total = 0.0
    for i in range(values.shape[0]):
        total += np.float64(sample_weight[i]) * values[i]
    return total


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
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


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
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
                        + x_squared_norms[candidate_ids[j]]
                    )
                    # Stored (rounded to X's dtype) before the min, as scikit-learn does.
                    distance_to_candidates[j, sample] = max(d, 0.0)
                    if closest_dist_sq[sample] < distance_to_candidates[j, sample]:
                        distance_to_candidates[j, sample] = closest_dist_sq[sample]
                    pot_part[group, j] += weight * distance_to_candidates[j, sample]

    candidates_pot = pot_part[0].copy()
    for group in range(1, n_groups):
        candidates_pot += pot_part[group]
    return distance_to_candidates, candidates_pot


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
        return _BoundsRun(X, x_squared_norms, sample_weight, n_clusters)
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


def inertia(X, sample_weight, centers, labels):
    return np.float64(_weighted_sum_f64(_assigned_distances(X, centers, labels), sample_weight))


def pairwise_distances(X, centers):
    x_squared_norms = row_norms_f64(X)
    return _pairwise_distances_chunked(X, x_squared_norms, centers, CHUNK_ROWS)


def kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq):
    n_samples, n_features = X.shape
    n_groups = _n_groups(_n_chunks(n_samples), candidate_ids.shape[0], 1)
    return _kmeanspp_candidates_chunked(
        X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq, CHUNK_ROWS, n_groups
    )


@njit(nogil=True, fastmath={"reassoc", "contract"}, cache=_CACHE)
def _squared_norm_f64(x):
    s = 0.0
    for f in range(x.shape[0]):
        s += np.float64(x[f]) * np.float64(x[f])
    return s


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
def _row_norms_f64(X):
    """``||x_i||^2`` in float64; vectorised as :func:`_dot1` is (fixed order per build)."""
    n_samples = X.shape[0]
    out = np.empty(n_samples, dtype=np.float64)
    for i in prange(n_samples):
        out[i] = _squared_norm_f64(X[i])
    return out


def row_norms_f64(X):
    return _row_norms_f64(X)


@njit(parallel=_prange_only(), nogil=True, cache=_CACHE)
def _subtract_rows_and_norms(X, vector, out, out_squared_norms):
    """``out = X - vector`` and its row norms, each row's while it is in cache."""
    for i in prange(X.shape[0]):
        for f in range(X.shape[1]):
            out[i, f] = X[i, f] - vector[f]
        out_squared_norms[i] = _squared_norm_f64(out[i])


def centered(X, X_mean):
    """Engine ``centered``.

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
        x_squared_norms = _row_norms_f64(X)
        if near_the_origin(X_mean, x_squared_norms):
            return X, x_squared_norms, False
    out = np.empty_like(X)
    out_squared_norms = np.empty(X.shape[0])
    _subtract_rows_and_norms(X, X_mean.astype(X.dtype, copy=False), out, out_squared_norms)
    return out, out_squared_norms, True


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


def set_num_threads(n_threads):
    """Set Numba's thread count (for tests of thread-count independence)."""
    numba.set_num_threads(n_threads)
