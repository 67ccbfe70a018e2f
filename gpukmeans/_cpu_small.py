"""The CPU engine for problems too small to repay a compile: NumPy and SciPy, no JIT.

The Numba engine (:mod:`gpukmeans._cpu`) compiles its kernels on first use, 10-20 s on
two cores with an empty cache, and loads them in every new process, about half a second.
A fit of at most :data:`MAX_WORK` multiply-adds per E-step is over before that here, and
never imports Numba; a larger fit's small single passes run here too (:func:`cpu_engine`).
The shapes alone decide, never a cache or the machine: the same call always runs the same
code, and gives bitwise the same result with any number of threads (BLAS runs on one;
large steps and passes take their pieces of rows on a few threads, pieces that the data
alone decide, their results added in piece order).

Same contract (:class:`gpukmeans._engine.Engine`) and same answers as the Numba engine:
each label is the center with the lowest ``||c||^2 - 2 x.c`` in X's dtype, chunk by
chunk as scikit-learn computes it, and float32 near-ties are decided exactly (float64
from the differences where its rounding allows, else error-free terms summed exactly,
:mod:`gpukmeans._cpu_error_free`, the rule the Numba engine compiles), as there, so
the labels are the exactly nearest centers. Sums, inertia and
transform's distances are float64; float64 sums are added in the Numba engine's order,
so float64 centers agree bit for bit (and with scikit-learn's) wherever the weighted
products are exact, as with unit weights; float32 sums are float64 too, in the
same order, and so the Numba engine's bit for bit (a float32 product is exact in
float64). A float32 run keeps Hamerly's bounds between its steps, as
there, and searches only the samples they leave open (:class:`_BoundsRun`).

Prior validation of data is assumed everywhere in this module.
"""

import contextlib
import functools
import math
import os
import sys
import threading

import numpy as np
import scipy.sparse
from scipy.linalg.blas import dgemm

from ._cpu_error_free import (FLOAT64_EPS, certified_grid_exponent, rank_rounding_and_extent,
                              sum_rounding_coefficient, two_product, two_sum)
from ._engine import Engine, by_dot_products

# A whole fit runs here when one E-step is at most MAX_WORK multiply-adds (n_samples x
# n_features x n_clusters) over at most MAX_ELEMENTS values of X: the notebook's
# KMeans(20) on 5,000 MNIST images (7.8e7 over 3.9e6) is one, and takes 0.13-0.15 s
# here in float32 (Hamerly's bounds), against 0.09-0.14 s on the compiled Numba engine
# and 0.3 s for scikit-learn. Numba would cost 10-20 s of compile on an empty cache, and
# about half a second to load in every new process (importing Numba, its NumPy support,
# the cached kernels). Larger fits iterate on the Numba engine, and pass over the data
# once here where the pass is small: a transform of at most MAX_PASS_WORK multiply-adds
# (milliseconds here, where its Numba kernel would add seconds to a first compile), a
# float64 k-means++ step below MAX_KMEANSPP_DISTANCES and up to MAX_KMEANSPP_WORK
# (below), row norms and centring of at most MAX_PASS_ELEMENTS values.
# Measured: benchmarks/bench_startup.py. And at most MAX_DISTANCES (n_samples x
# n_clusters) per E-step: each costs NumPy about 5 ns of argmin and bookkeeping whatever
# the features, against a fraction of a nanosecond on Numba (float32 per iteration,
# 100,000 x 2 at k=8: 15 ms here, 4.9 ms on Numba; 10,000 x 32 at k=32: 1.6 ms both).
# And at most MAX_SAMPLES samples: each costs NumPy's bounded run a few dozen ns per
# iteration whatever the clusters (a dozen array operations over the samples). Whole
# fits from k-means++, warm, NumPy against Numba (2-core EPYC, float32 blobs):
# 10,000 x 32 k=8 5.9 against 5.7 ms, 16,000 x 32 k=8 9.0 / 8.5, 32,000 x 8 k=4
# 19.6 / 13.3, 65,000 x 2 k=2 18.8 / 11.6, 100,000 x 32 k=2 46.6 / 21.8.
# Row norms and centring run here up to MAX_PASS_ELEMENTS values: a Numba pass costs
# about 0.13 ms to start its threads, NumPy's float32 einsum 0.57 ns a value against
# Numba's 0.11 (100,000 x 32: 1.84 against 0.36 ms; 10,000 x 32: 0.17 against 0.15).
MAX_WORK = 10**8
MAX_ELEMENTS = 2**22
MAX_DISTANCES = 2**18
MAX_SAMPLES = 2**14
MAX_PASS_WORK = 4 * 10**7
MAX_PASS_ELEMENTS = 2**18
# A float64 k-means++ step of a larger fit runs here below MAX_KMEANSPP_DISTANCES
# (sample, candidate) pairs and up to MAX_KMEANSPP_WORK multiply-adds: here it makes
# scikit-learn's own operations, whose picks between copies of a sample the Numba
# kernel does not reproduce (:func:`_sklearn_kmeanspp_candidates`); beyond, NumPy's
# (n_candidates, n_samples) temporaries cost more than the Numba step. A float32 step
# always runs on Numba: whole k-means++ runs, float32, ms, alternated, these limits
# against all on Numba (2,048-row chunks): 600 x 2, k=500 16.0 / 8.5; 2,000 x 2, k=300
# 18.6 / 7.3; 4,096 x 8, k=100 10.2 / 4.9; 10,000 x 32, k=32 8.4 / 5.6 (float64 on
# Numba: 13.4 / 7.6, 7.9 / 5.9, 8.2 / 7.6 — the price of scikit-learn's picks).
MAX_KMEANSPP_DISTANCES = 2**16
MAX_KMEANSPP_WORK = 2**22

# scikit-learn found 256 rows per chunk close to optimal for the GEMM + argmin + update
# pattern; a chunk of MNIST (784 float32 features) is then 800 KB, half of one L2. Both
# engines make the same BLAS calls on the same rows, so float64 labels match bit for bit.
CHUNK_ROWS = 256

# Near-ties are decided in float64 from the differences (then exactly where those are
# too close), at most this many bytes of them at a time.
NEAR_TIE_BLOCK_BYTES = 2**20
# The fraction of a chunk's (row, center) pairs near a tie from which the dot products'
# float64 ranks come from GEMMs over all pairs rather than from each pair's products.
NEAR_TIES_BY_GEMM = 0.5

# A bounded run (:class:`_BoundsRun`) gathers the rows it searches, about this many
# bytes of them at a time: few NumPy calls per step, and little memory. On MNIST the
# fit hardly changes from 1 to 16 MiB.
SEARCH_CHUNK_BYTES = 2**22

# A piece of open rows that fills at least this fraction of the rows it spans is
# searched whole, read where it lies: a gather copies each open row, which costs about
# what searching a closed one does at 20 clusters on MNIST, and a closed row searched
# gets fresh bounds (its label cannot change: the bounds held it). The notebook's fit,
# 5,000 MNIST images, k=20, 20 iterations (three of whose steps open every row), ms,
# alternated with gathering every piece: contiguous pieces read in place 0.96x (the
# same bits); widened from fractions 0.9, 0.7, 0.5, 0.3: 0.96x, 0.96x, 0.94x, 0.95x, the
# same labels and results there; blobs 10,000 x 32 at k=32, 16,000 x 8 at k=8, 8,000 x
# 64 at k=100 unchanged. (A closed row searched gets tighter bounds, so later steps open
# other rows, and the moved rows' sums may be added in another order: the float64 sums
# can differ in their last bits, about 1e-13 relative, from gathering only open rows.)
DENSE_OPEN_FRACTION = 0.5

# A bounded step searches its pieces of rows on several threads (NumPy's GEMM, gathers
# and reductions let go of the GIL) when it has at least this many multiply-adds; so do
# the passes over rows (norms, centring, the inertia) with as many values. The pieces
# and the order their results are added in do not depend on the threads. MNIST's 5,000
# images, k=20 (notebook), 20 steps from the same centers: 63 ms of steps on one
# thread, 52 on two; row norms 4.5 ms, 2.4.
THREADED_MIN_WORK = 2**20

# The passes over rows (norms, centring, the inertia's differences) take pieces of
# about this many float64 bytes: few enough NumPy calls for threads to pay (MNIST's
# 5,000 images on two: the inertia 2.8 ms, 9.5 in pieces of 256 KB, 4.4 on one thread;
# Xeon). Each piece's NumPy calls take the GIL, and on the 2-core Zen 3 VM of stop 55
# threads waiting for it cost more than the second core gave back at 2 MiB: the same
# 5,000 images, pieces of 2 / 4 / 8 MiB (blocks of 512 KiB), medians of 15, the inertia
# 5.4 / 4.5 / 4.1 ms, the norms 3.5 / 2.9 / 2.3; 16,384 x 256: 5.0 / 4.0 / 3.6, 3.3 /
# 2.7 / 2.1 (the old 2 MiB with 256 KiB blocks: the inertia 8.0 ms, the norms 4.6).
# Four pieces of MNIST's 5,000 images still share two threads evenly; tuned on two
# cores, where more threads would take at most four pieces (2^22 values of X, 32 MiB as
# float64). The centring pass counts X's own bytes (float32: twice the rows a piece).
ROW_PIECE_BYTES = 2**23

# Within a piece, the float64 temporaries of the norms and the inertia's differences are
# made this many bytes of rows at a time (_row_ranges), for L2 on the Xeon: a piece's
# 2 MiB of them at once had left it. MNIST's 5,000 images, the inertia pass, ms, whole
# pieces / blocks of 32, 64, 128, 256 rows (256 KiB: 42 rows): one thread 8.4 / 5.3,
# 5.0, 5.7, 7.8; two (the other core busy) 8.2 / 5.4, 5.0, 5.5, 7.7 (Xeon, 2 MiB of L2).
# On the Zen 3 VM (512 KiB of L2) each NumPy call costs more than the cache misses save,
# and larger blocks win: pieces of 8 MiB, blocks of 256 KiB / 512 KiB / 1 MiB, MNIST's
# 5,000 images, the inertia 6.4 / 4.1 / 3.3 ms, the norms 2.9 / 2.3 / 2.1; 16,384 x 256:
# 4.7 / 3.6 / 3.1, 2.7 / 2.1 / 1.8. 512 KiB (83 MNIST rows) is between the Xeon's best
# (64 rows) and this VM's. Each row's sum is einsum's over that row alone: the same bits
# in any block.
ROW_BLOCK_BYTES = 2**19

# Moves of fewer than this many (cluster, sample) pairs go through a dense matrix; more,
# through a sparse one (n_rows x n_features work, not times n_clusters).
DENSE_MOVES_MAX = 2**14

# A float32 k-means++ step multiplies X by its candidates in pieces of this many bytes
# of X, one GEMM a piece, on the pool's threads (:func:`map_pieces`): OpenBLAS copies
# a large product's X into its packed layout first, which costs more than a few
# candidates' products, and many small products cost a call each. MNIST's 5,000
# images, 4 candidates, the step, ms, medians of 60 (Zen 3 VM, two threads): 2.4 in
# blocks of 2^19 multiply-adds on one thread (the rule until stop 55, measured then at
# 0.6 against 1.3 in one call on an earlier machine), pieces of 1 / 2 / 4 / 8 MiB 1.6 /
# 1.1-1.3 / 1.1-1.3 / 1.5-1.9; the same products bit for bit there (not on every
# shape: OpenBLAS's rounding can follow the rows multiplied together). Tuned on two cores:
# a whole fit of this engine has at most 16 MiB of float32 X, so at most four pieces.
KMEANSPP_PIECE_BYTES = 2**22

# Partial sums are (n_groups, n_clusters, n_features) float64, zeroed and added up on
# every iteration: enough groups to feed 16 cores, few enough that at k=256 on MNIST
# the partials stay a small fraction of a pass over the data. Shapes decide, not threads.
MAX_GROUPS = 16
PARTIALS_BUDGET_BYTES = 256 * 2**20


def fold_rows(n_clusters):
    """Rows summed into a partial sum (float64) before it is added to its group's sums:
    the order in which float64 sums match scikit-learn's (see :func:`_cluster_sums`).
    Larger for many clusters, so that folding (``n_clusters x n_features`` adds) stays
    cheap.
    """
    return max(8 * CHUNK_ROWS, 8 * n_clusters)


def n_groups(n_chunks, n_clusters, n_features):
    """Number of independent accumulation groups: a function of the shapes only."""
    per_group = (8 + 8) * (n_clusters * n_features + n_clusters)
    return int(max(1, min(n_chunks, MAX_GROUPS, PARTIALS_BUDGET_BYTES // per_group)))


def n_chunks(n_samples):
    return (n_samples + CHUNK_ROWS - 1) // CHUNK_ROWS



def group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows):
    """Rows ``[start, end)`` of a group: consecutive whole chunks, in group order."""
    first = group * n_chunks // n_groups
    last = (group + 1) * n_chunks // n_groups
    return first * chunk_rows, min(last * chunk_rows, n_samples)


SUBNORMAL_NORM = 2 * float(np.finfo(np.float32).tiny)
"""Below float32's smallest normal number, products round by an absolute amount (up to
half a subnormal), not a relative one. Counting twice that smallest normal into the
squared norms that scale the margin adds 4 (n_features + 2) subnormals to it, which
covers every rounding of such data (|x| below about 1e-19)."""

CANCELLATION = 2.0**-20
"""``transform``: below this fraction of ``||x||^2 + ||c||^2``, a squared distance from the
norm expansion has lost more than 20 bits, and is summed from the differences instead."""


_controller = [None, -1]  # the controller, and len(sys.modules) when it was built


def blas_controller():
    """A threadpoolctl controller of the BLAS libraries loaded now: building one scans
    them (3 ms here), which every fit and predict would otherwise pay, so it is kept
    until a module is imported. An import may load another BLAS (faiss and PyTorch
    bring their own), which a controller built before it would leave unlimited."""
    # Numba's np.dot calls SciPy's BLAS; load it first so that the limit covers it too.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    if _controller[1] != len(sys.modules):
        _controller[0] = ThreadpoolController()
        _controller[1] = len(sys.modules)
    return _controller[0]


_pool = [None, None]  # the executor (None for one thread), and the process it is for
_pool_lock = threading.Lock()

# The limits a user or a process pool (joblib's loky workers set them) puts on a
# library's threads; the Numba engine's thread count follows NUMBA_NUM_THREADS too.
THREAD_LIMIT_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")


def n_row_threads():
    """The pool's size: the CPUs this process may run on, at most 8, and at most what
    :data:`THREAD_LIMIT_VARIABLES` allow where they are set."""
    n_cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)
    limits = [min(8, n_cpus)]
    for variable in THREAD_LIMIT_VARIABLES:
        try:
            limits.append(int(os.environ[variable]))
        except (KeyError, ValueError):
            pass
    return max(1, min(limits))


# How many nice levels below the caller the worker threads of both engines run: the row
# pool's here, Numba's (gpukmeans._cpu_runtime._start_niced_workers, which says why).
WORKER_NICE_INCREMENT = 1


def _nice_this_thread(nice):
    """A pool thread runs :data:`WORKER_NICE_INCREMENT` nice levels below the caller, as
    the Numba engine's workers do (see ``gpukmeans._cpu_runtime._start_niced_workers``):
    the caller waits while the pieces run, and a woken worker that preempted it would
    delay the next piece's start."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass


def _thread_pool():
    """The threads that take a step's or a pass's pieces of rows (:func:`n_row_threads`),
    or None where that is one; started on first use, and again in a forked child (which
    inherits the executor but not its threads)."""
    with _pool_lock:
        if _pool[1] != os.getpid():
            from concurrent.futures import ThreadPoolExecutor

            executor, n_threads = None, n_row_threads()
            if n_threads > 1:
                initializer, nice = None, ()
                if sys.platform.startswith("linux") and hasattr(os, "getpriority"):
                    initializer = _nice_this_thread
                    nice = (min(19, os.getpriority(os.PRIO_PROCESS, 0)
                                + WORKER_NICE_INCREMENT),)
                executor = ThreadPoolExecutor(n_threads, thread_name_prefix="gpukmeans-rows",
                                              initializer=initializer, initargs=nice)
            _pool[:] = [executor, os.getpid()]
        return _pool[0]


def map_pieces(function, pieces, work):
    """``map(function, pieces)``, on the pool's threads where there are several pieces
    and ``work`` (multiply-adds, or values read) is at least :data:`THREADED_MIN_WORK`.
    The results come in the order of the pieces: a caller that adds them up adds them in
    that order, whichever thread made each one. Where a piece raises (or the caller is
    interrupted while it hands them out or waits), the pieces not started are cancelled
    and the running ones waited for, so that none still writes to the caller's arrays,
    or calls BLAS beside the next engine call, after this returns (a second interrupt
    stops the waiting). Where the pool takes no more work (an ``atexit`` handler's call:
    Python has shut every pool down by then), the pieces run here, one after another."""
    pool = None if len(pieces) < 2 or work < THREADED_MIN_WORK else _thread_pool()
    if pool is None:
        return map(function, pieces)
    from concurrent.futures import wait

    futures = []
    try:
        try:
            for piece in pieces:
                futures.append(pool.submit(function, piece))
        except RuntimeError:  # "cannot schedule new futures after (interpreter) shutdown"
            if futures:
                raise
            return list(map(function, pieces))
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        wait(futures)
        raise


def _row_ranges(start, stop, row_bytes, range_bytes=ROW_BLOCK_BYTES):
    """The rows ``start:stop`` as ``(start, stop)`` ranges of at most ``range_bytes``
    (``row_bytes`` a row; at least one row each), as many as that takes and of equal
    rows, one apart at most: no short last range. The pool's threads share them evenly,
    and a product of X's rows never has one row alone, which OpenBLAS multiplies by its
    GEMV and rounds otherwise than the rows beside it (a 3,496-row X in k-means++ pieces
    of 3,495 rows changed 2 of 5 potentials)."""
    range_rows = max(1, range_bytes // max(1, row_bytes))
    n_ranges = -(-(stop - start) // range_rows)
    if n_ranges <= 0:
        return []
    edges = [start + (stop - start) * i // n_ranges for i in range(n_ranges + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _over_row_pieces(function, X, row_bytes):
    """``function((start, stop))`` over X's rows in pieces of about
    :data:`ROW_PIECE_BYTES` (``row_bytes`` a row; the shapes alone decide the pieces),
    for what it writes: on the pool's threads where X is large (:func:`map_pieces`)."""
    pieces = _row_ranges(0, X.shape[0], row_bytes, ROW_PIECE_BYTES)
    for _ in map_pieces(function, pieces, X.size):
        pass


@contextlib.contextmanager
def small_runtime():
    """What every public call runs inside (``Engine.runtime``): BLAS on one thread.

    This engine's products are a few million multiply-adds each, where a second BLAS
    thread's start and join cost more than it saves (3-4x slower on a busy two-core
    machine); and one thread sums in one order, whatever the machine.
    """
    with blas_controller().limit(limits=1, user_api="blas"):
        yield


def is_small(n_samples, n_features, n_clusters):
    """Whether a problem of these shapes runs wholly on this engine, never importing Numba.
    The sizes may be NumPy integers (an estimator's ``n_clusters=np.int8(5)``): they are
    multiplied as Python ints, which cannot overflow."""
    n_samples, n_features, n_clusters = int(n_samples), int(n_features), int(n_clusters)
    return (n_samples <= MAX_SAMPLES
            and n_samples * n_features <= MAX_ELEMENTS
            and n_samples * n_features * n_clusters <= MAX_WORK
            and n_samples * n_clusters <= MAX_DISTANCES)


def cpu_engine(n_samples, n_features, n_clusters, unit_centers=False):
    """The CPU engine for a call of these shapes: this one for a small problem, else the
    Numba engine, whose single passes over small data still run here (see
    :data:`MAX_PASS_WORK`). Each function is chosen by the shapes of its own call only,
    so the same call always runs the same code. ``unit_centers``: see
    :func:`make_engine`."""
    if is_small(n_samples, n_features, n_clusters):
        return make_engine(unit_centers)
    from . import _cpu

    numba_engine = _cpu.make_engine(unit_centers)
    return numba_engine._replace(
        row_norms=_by_size(row_norms, numba_engine.row_norms, _small_pass),
        centered=_by_size(centered, numba_engine.centered, _small_pass),
        pairwise_distances=_by_size(
            pairwise_distances, numba_engine.pairwise_distances,
            lambda X, centers: _small_distances_pass(X, centers.shape[0])),
        kmeanspp_candidates=_by_size(
            kmeanspp_candidates, numba_engine.kmeanspp_candidates,
            lambda X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq:
                _small_kmeanspp_step(X, candidate_ids.shape[0])),
        start_kmeanspp=functools.partial(_start_kmeanspp_by_size, numba_engine.start_kmeanspp),
    )


def _start_kmeanspp_by_size(start_large, X, x_squared_norms, sample_weight, n_clusters):
    """Engine ``start_kmeanspp`` whose steps run here where :func:`_small_kmeanspp_step`
    says so, else by ``start_large``'s steps, prepared at the first such step."""
    large_step = None

    def step(candidate_ids, closest_dist_sq):
        nonlocal large_step
        if _small_kmeanspp_step(X, candidate_ids.shape[0]):
            return kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids,
                                       closest_dist_sq)
        if large_step is None:
            large_step = start_large(X, x_squared_norms, sample_weight, n_clusters)
        return large_step(candidate_ids, closest_dist_sq)

    return step


def _small_distances_pass(X, n_centers):
    """A pass of ``X`` against ``n_centers`` centers small enough for NumPy (see
    :data:`MAX_PASS_WORK` and :data:`MAX_DISTANCES`)."""
    return X.size * n_centers <= MAX_PASS_WORK and X.shape[0] * n_centers <= MAX_DISTANCES


def _small_kmeanspp_step(X, n_candidates):
    """A float64 k-means++ step small enough for NumPy (see
    :data:`MAX_KMEANSPP_DISTANCES`)."""
    return (X.dtype == np.float64
            and X.shape[0] * n_candidates < MAX_KMEANSPP_DISTANCES
            and X.size * n_candidates <= MAX_KMEANSPP_WORK)


def _small_pass(X, *args):
    return X.size <= MAX_PASS_ELEMENTS


def _by_size(small_function, large_function, is_small_call):
    """One engine function: ``small_function`` (this engine's) where ``is_small_call``
    says so for the call's arguments, else ``large_function``."""

    def call(*args):
        return (small_function if is_small_call(*args) else large_function)(*args)

    call.__name__ = large_function.__name__
    return call


def bound_margin_coefficient(dtype, n_features):
    """Relative rounding bound of ``||c||^2 - 2 x.c`` in ``dtype``, against
    ``||x||^2 + max ||c||^2``: twice the worst case of a recursive sum of
    ``n_features + 2`` terms, so that it holds whatever order the sums were vectorised in
    (:func:`gpukmeans._cpu_error_free.sum_rounding_coefficient`).
    """
    return sum_rounding_coefficient(n_features, float(np.finfo(dtype).eps))


def centers_squared_norms(centers, unit_centers=False):
    """``||c||^2`` in the centers' dtype, summed as scikit-learn's ``row_norms`` sums a
    NumPy array, by this einsum: summed in another order, an exact tie in
    ``||c||^2 - 2 x.c`` (integer or one-hot data) can round the other way, and float64
    labels would no longer be scikit-learn's bit for bit. (Called directly: its array-API
    dispatch cost 50 us, a twentieth of a Lloyd step on 10,000 x 32 at k=32.)

    ``unit_centers`` (cosine fits): exactly 1 each, so that the values
    ``1 - 2 x.c`` order the centers by dot product alone and an exact tie in ``x.c``
    goes to the lowest index, not to the center whose norm rounded lowest."""
    if unit_centers:
        return np.ones(centers.shape[0], dtype=centers.dtype)
    return np.einsum("ij,ij->i", centers, centers)


def _squared_distances_f64(x, centers):
    """``||x - c||^2`` from the differences in float64, one row against several centers."""
    diff = x.astype(np.float64) - centers.astype(np.float64)
    return np.einsum("ij,ij->i", diff, diff)


def _sklearn_values(chunk, centers, squared_norms):
    """float64 ``||c||^2 - 2 x.c`` (n_rows, n_clusters) as scikit-learn's E-step computes
    them, so that the labels are its argmin bit for bit: the values start at the norms
    and one GEMM adds ``-2 x.c`` onto them (beta=1). Past the BLAS's depth block (256
    features in OpenBLAS's float64 kernels) the product is added a block of features at
    a time, so the norms enter the sum first; ``chunk @ (-2 C).T`` with the norms added
    after rounds otherwise. scikit-learn's call, through SciPy's BLAS as its Cython GEMM
    calls it: column-major ``values.T = -2 C chunk.T + values.T``."""
    values = np.empty((chunk.shape[0], centers.shape[0]))
    values[...] = squared_norms
    dgemm(-2.0, centers.T, chunk.T, 1.0, values.T, trans_a=1, overwrite_c=1)
    return values


def _assign_chunk(chunk, x_squared_norms, centers, minus_two_centers_t, squared_norms,
                  max_center_norm, margin_coefficient, unit_centers, values_certificate):
    """Labels of one chunk of rows (see :func:`_nearest_centers`)."""
    if chunk.dtype == np.float64:
        values = _sklearn_values(chunk, centers, squared_norms)
    else:
        values = chunk @ minus_two_centers_t  # (n_rows, n_clusters)
        values += squared_norms
    return _nearest_centers(chunk, x_squared_norms, centers, values, max_center_norm,
                            margin_coefficient, unit_centers, values_certificate)[0]


def _nearest_centers(chunk, x_squared_norms, centers, values, max_center_norm,
                     margin_coefficient, unit_centers, values_certificate):
    """The label of each row of the chunk from its ``values`` (``||c||^2 - 2 x.c``).

    A float32 value ``||c||^2 - 2 x.c`` is off by at most the margin, so two centers
    whose values are within twice the margin are a near-tie that float32 cannot order:
    the float64 distances from the differences of the centers in that window decide
    (``-x.c`` for ``unit_centers``: see :func:`gpukmeans._cpu_nearest._exact_rank`),
    lowest index on an exact tie, as argmin; where the values themselves are exact
    (:func:`_values_are_exact`: one-hot or small-integer rows and centers that are rows,
    whose rows tie with many centers), their argmin already is; ``values_certificate()``
    gives the centers' part of that test (:func:`_values_certificate`, once per E-step,
    on first need: most chunks have no near-tie, and on small data the test would cost a
    fifth of an E-step).
    ``margin_coefficient`` 0 (float64) keeps the plain argmin, scikit-learn's.
    ``values`` is overwritten.

    Returns ``labels`` and, where ``margin_coefficient`` is not 0 (else None), for
    Hamerly's bounds: ``own_values``, each row's value of its label, and
    ``other_values``, the smallest of the other centers' (+inf for a single center).
    """
    labels = values.argmin(axis=1)
    if margin_coefficient == 0:
        return labels, None, None
    rows = np.arange(chunk.shape[0])
    best_value = values[rows, labels]
    if values.shape[1] == 1:
        return labels, best_value, np.full(chunk.shape[0], np.inf, dtype=values.dtype)
    # The second smallest value: the minimum once the smallest is masked, taken down
    # the columns of a transposed copy, where NumPy vectorises it across the rows (along
    # rows of a few values it does not: 1,337 x 20 values, 20 us against 66).
    values[rows, labels] = np.inf
    second_value = np.ascontiguousarray(values.T).min(axis=0)
    own_values, other_values = best_value, second_value
    # 2 margin_coefficient (||x||^2 (1 + margin_coefficient) + max_center_norm)
    tie_gap = x_squared_norms * (2 * margin_coefficient * (1 + margin_coefficient))
    tie_gap += 2 * margin_coefficient * max_center_norm
    # (The float32 difference is compared in float64.)
    near = np.flatnonzero(second_value - best_value <= tie_gap)
    if near.shape[0]:
        near = near[~_values_are_exact(chunk[near], x_squared_norms[near],
                                       values_certificate())]
    if near.shape[0]:
        values[near, labels[near]] = best_value[near]
        nearest = _nearest_of_near_ties(chunk[near], centers, values[near],
                                        best_value[near] + tie_gap[near], unit_centers)
        moved = nearest != labels[near]
        near, nearest = near[moved], nearest[moved]
        # The float32 minimum is now another center's.
        own_values = best_value.copy()
        own_values[near] = values[near, nearest]
        other_values[near] = best_value[near]
        labels[near] = nearest
    return labels, own_values, other_values


def _values_are_exact(rows, x_squared_norms, values_certificate):
    """Per row, whether its float32 values ``||c||^2 - 2 x.c`` (the chunk's GEMM onto
    ``-2 C``, plus the centers' norms, each summed in any order) are exact, so that
    their argmin is the exactly nearest center, the lowest index on an exact tie: the
    row and the centers (and 1, the norm of ``unit_centers``) on the float32 grid of
    :func:`certified_grid_exponent` for the values' extent, ``max ||c||^2 + 2 ||x||
    max ||c||`` (every product and partial sum is within it). One-hot, binary and
    small-integer rows against centers that are rows (k-means++ and random inits)
    tie with many centers at once, each tie otherwise decided in float64.
    ``values_certificate``: the centers' part, :func:`_values_certificate` (None: no
    row's values are exact)."""
    if values_certificate is None:
        return np.zeros(rows.shape[0], dtype=bool)
    center_norm, norms_extent, centers_grid = values_certificate
    extent = norms_extent + 2 * np.sqrt(x_squared_norms) * center_norm
    return (np.minimum(_grid_exponents(rows), centers_grid)
            >= _required_grids(extent, *_FLOAT32_BITS))


def _values_certificate(centers, unit_centers):
    """The centers' part of :func:`_values_are_exact`, once per E-step: ``(center_norm,
    norms_extent, centers_grid)``, the largest ``||c||``, the extent of the norms' sums
    and the coarsest grid of every center (and of 1 for ``unit_centers``); None where
    the centers are off the grid their own norms need, and so no row's values can be
    exact. Means, the centers of every step after the first, are: their first row shows
    it at a twentieth of the cost of all of them at k=20 (per chunk, all of them cost
    the notebook's fit, 5,000 MNIST images, k=20, 20 iterations, 12 ms of its 74)."""
    centers64 = centers.astype(np.float64)
    center_norm = math.sqrt(float(np.einsum("ij,ij->i", centers64, centers64).max()))
    norms_extent = 1.0 if unit_centers else center_norm * center_norm
    required = (_required_grids(np.array([norms_extent]), *_FLOAT32_BITS)[0]
                if norms_extent > 0 else -_ZERO_GRID)  # (zero centers: any grid)
    for some in (centers[:1], centers):  # the first row's grid is no finer than all's
        centers_grid = _grid_exponents(some).min()
        if unit_centers:
            centers_grid = min(centers_grid, 0)
        if centers_grid < required:
            return None
    return center_norm, norms_extent, centers_grid


# float32's significand bits and smallest subnormal exponent, for certified_grid_exponent.
_FLOAT32_BITS = (24, -149)


def _required_grids(extent, *float_bits):
    """Per extent, the coarsest grid exponent ``-q`` that values must lie on for sums up
    to it to be exact (:func:`certified_grid_exponent`; ``float_bits``: its type,
    float64 by default). Rows of the same data share a few extents: the exponent is
    taken once for each."""
    extents, each = np.unique(extent, return_inverse=True)
    return -np.array([certified_grid_exponent(float(e), *float_bits) for e in extents],
                     dtype=np.int64)[each]


def _nearest_of_near_ties(rows, centers, values, limits, unit_centers):
    """Per row, the exactly nearest of the centers whose ``values`` are at most its
    ``limits``, the lowest index on an exact tie (argmin's rule): by the float64
    ``||x - c||^2`` from the differences (``-x.c`` for ``unit_centers``) where these are
    further apart than their rounding (:func:`gpukmeans._cpu_exact.rank_bounds`) or
    computed without it (:func:`_float64_is_exact`), else exactly
    (:func:`_exactly_nearest`), as the Numba engine decides
    (:func:`gpukmeans._cpu_nearest._nearer`). Near-ties are rare; their (row, center)
    pairs are taken a block at a time, so that even data where every pair is one use
    little memory, except dot products where most pairs are near (one-hot rows of
    several categories against their means), whose ranks come from GEMMs.
    """
    near = values <= limits[:, None]
    pair_rows, pair_centers = np.nonzero(near)
    rows64, centers64 = rows.astype(np.float64), centers.astype(np.float64)
    rounding_coefficient = sum_rounding_coefficient(rows.shape[1], FLOAT64_EPS)
    if unit_centers and pair_rows.shape[0] >= NEAR_TIES_BY_GEMM * near.size:
        # Most pairs near (rows of one-hot categories, whose centers differ little): two
        # GEMMs beat gathering each pair's rows.
        ranks = np.where(near, -(rows64 @ centers64.T), np.inf)
        rounding, extents = rank_rounding_and_extent(np.abs(rows64) @ np.abs(centers64).T,
                                                     rounding_coefficient)
        return _nearest_of_ranks(rows, centers, ranks, rounding, extents, unit_centers)
    ranks = np.full(values.shape, np.inf)  # (n_rows, n_clusters)
    rounding = np.zeros(values.shape)
    extents = np.zeros(values.shape)
    block = max(1, NEAR_TIE_BLOCK_BYTES // (8 * rows.shape[1]))
    for start in range(0, pair_rows.shape[0], block):
        in_rows = pair_rows[start:start + block]
        of_centers = pair_centers[start:start + block]
        if unit_centers:
            products = rows64[in_rows] * centers64[of_centers]
            ranks[in_rows, of_centers] = -products.sum(axis=1)
            magnitudes = np.abs(products).sum(axis=1)
        else:
            diff = rows64[in_rows] - centers64[of_centers]
            magnitudes = np.einsum("ij,ij->i", diff, diff)
            ranks[in_rows, of_centers] = magnitudes
        rounding[in_rows, of_centers], extents[in_rows, of_centers] = (
            rank_rounding_and_extent(magnitudes, rounding_coefficient))  # as rank_bounds
    return _nearest_of_ranks(rows, centers, ranks, rounding, extents, unit_centers)


def _nearest_of_ranks(rows, centers, ranks, rounding, extents, unit_centers):
    """Per row, the exactly nearest center from the float64 ``ranks`` of its near centers
    (+inf elsewhere), their ``rounding`` and ``extents``: see
    :func:`_nearest_of_near_ties`."""
    nearest = ranks.argmin(axis=1)
    # A center may be the nearest when its rank, less its rounding, is within the
    # rounding of the least rank; where two may, the float64 ranks cannot decide unless
    # they are exact.
    highest_least = (ranks + rounding).min(axis=1)
    maybe = ranks - rounding <= highest_least[:, None]
    tied = np.flatnonzero(maybe.sum(axis=1) > 1)
    if not tied.shape[0]:
        return nearest
    candidates = _without_repeats(maybe[tied], centers)
    alone = candidates.sum(axis=1) == 1
    nearest[tied[alone]] = candidates[alone].argmax(axis=1)
    tied, candidates = tied[~alone], candidates[~alone]
    if not tied.shape[0]:
        return nearest
    extent = np.where(candidates, extents[tied], 0).max(axis=1)
    exact = _float64_is_exact(rows[tied], centers, candidates, extent)
    tied, candidates = tied[~exact], candidates[~exact]
    if tied.shape[0]:
        nearest[tied] = _exactly_nearest(rows[tied], centers, candidates, unit_centers)
    return nearest


def _without_repeats(candidates, centers):
    """``candidates`` (rows x centers, a mask) less each center equal to a lower-index
    candidate of the same row: an exact tie, which the lower index wins. Repeated
    centers (a user's init, or rows repeated in the data) tie for every row near them,
    each of which would otherwise cost an exact sum."""
    first = {}
    candidates = candidates.copy()
    for j in np.flatnonzero(candidates.any(axis=0)):
        i = first.setdefault(centers[j].tobytes(), j)
        if i != j:
            candidates[:, j] &= ~candidates[:, i]
    return candidates


def _float64_is_exact(rows, centers, candidates, extent):
    """Per row, whether the float64 ranks of its ``candidates`` (a mask over
    ``centers``) were computed without rounding, ``extent`` bounding their terms and
    partial sums, and so their argmin is exact (data on a coarse grid: most exact
    ties), as :func:`gpukmeans._cpu_exact.float64_is_exact` decides: the row and the
    candidates on the grid of :func:`certified_grid_exponent`, tested by each vector's
    coarsest grid (:func:`_grid_exponents`, once per candidate center) so that one-hot
    rows, which tie with most centers, cost no pass over the centers each."""
    required = _required_grids(extent)
    used = np.flatnonzero(candidates.any(axis=0))
    centers_grid = np.where(candidates[:, used], _grid_exponents(centers[used])[None, :],
                            _ZERO_GRID)
    on_grid = (_grid_exponents(rows) >= required) & (centers_grid.min(axis=1) >= required)
    return on_grid | (extent == 0)


# The grid exponent of a zero vector: on every grid.
_ZERO_GRID = 1 << 20


def _grid_exponents(vectors):
    """Per row of ``vectors`` (float32 or float64), the largest ``e`` such that every
    value is a multiple of ``2^e`` (:data:`_ZERO_GRID` for zeros): from each value's
    mantissa as a 53-bit integer, its lowest set bit."""
    mantissas, exponents = np.frexp(vectors.astype(np.float64))
    integers = np.ldexp(mantissas, 53).astype(np.int64)  # |mantissa| 2^53 < 2^53: exact
    lowest_bits = np.frexp((integers & -integers).astype(np.float64))[1] - 1
    grids = np.where(vectors == 0, _ZERO_GRID, exponents - 53 + lowest_bits)
    return grids.min(axis=1)


def _exactly_nearest(rows, centers, candidates, unit_centers):
    """Per row, the exactly nearest of its ``candidates`` (a mask over ``centers``, at
    least one per row), the lowest index on an exact tie: a knockout in which each
    round pairs a row's remaining candidates in increasing index order and keeps the
    nearer of each pair, the lower on a tie (:func:`_exactly_nearer`), so that the
    lowest-index nearest center wins every match. A row of ``c`` candidates takes
    ``log2 c`` rounds, each vectorised over all rows' pairs."""
    row_ids, center_ids = np.nonzero(candidates)  # by row, then by increasing center
    while True:
        n_left = row_ids.shape[0]
        starts_row = np.ones(n_left, dtype=bool)
        starts_row[1:] = row_ids[1:] != row_ids[:-1]
        everyone = np.arange(n_left)
        position = everyone - np.maximum.accumulate(np.where(starts_row, everyone, 0))
        # The first of each pair: an even position whose successor is of the same row.
        firsts = np.flatnonzero((position[:-1] % 2 == 0) & ~starts_row[1:])
        if not firsts.shape[0]:
            return center_ids
        second_nearer = _exactly_nearer(rows, row_ids[firsts], centers, center_ids[firsts + 1],
                                        center_ids[firsts], unit_centers)
        keep = np.ones(n_left, dtype=bool)
        keep[np.where(second_nearer, firsts, firsts + 1)] = False
        row_ids, center_ids = row_ids[keep], center_ids[keep]


def _exactly_nearer(rows, row_ids, centers, a, b, unit_centers):
    """Per pair, whether center ``a`` is exactly nearer the row than center ``b``:
    ``||x - a||^2 - ||x - b||^2 < 0`` (``x.b - x.a`` for ``unit_centers``), over the
    features where the two differ, as float64 error-free terms
    (:mod:`gpukmeans._cpu_error_free`) whose exact sum's sign :func:`_exact_signs`
    finds, as :func:`gpukmeans._cpu_exact.exact_order` orders two. Pairs are taken as
    many at a time as the ranks' blocks hold pairs: their terms, 12 float64 values per
    feature that differs, are few where few differ (one-hot rows), and the block's
    NumPy calls are then most of the cost."""
    nearer = np.zeros(row_ids.shape[0], dtype=bool)
    block = max(1, NEAR_TIE_BLOCK_BYTES // (8 * rows.shape[1]))
    for start in range(0, row_ids.shape[0], block):
        pairs = slice(start, start + block)
        x = rows[row_ids[pairs]].astype(np.float64)
        a_f = centers[a[pairs]].astype(np.float64)
        b_f = centers[b[pairs]].astype(np.float64)
        # Only the features where the centers differ (and, for dot products, x is not 0)
        # add to the difference: one-hot rows and sparse centers have few.
        differ = a_f != b_f
        if unit_centers:
            differ &= x != 0
        x, a_f, b_f = _packed(differ, x, a_f, b_f)
        if unit_centers:
            terms = [*two_product(-x, a_f), *two_product(x, b_f)]
        else:
            terms = [*_square_terms(x, a_f), *(-term for term in _square_terms(x, b_f))]
        nearer[pairs] = _exact_signs(np.concatenate(terms, axis=1)) < 0
    return nearer


# Error-free passes of _exact_signs before the undecided sums go to math.fsum: each
# shrinks what is left to decide by about float64's precision.
EXACT_SIGN_PASSES = 4
# Below this many terms in all, math.fsum row by row costs less than a vectorised pass's
# fixed cost (about 40 NumPy calls): measured, 1 row of 24 terms 1 us against 80, 256 x 24
# 0.2 ms against 0.35, 8 x 768 0.19 against 0.32; from 1,000 x 24 and 32 x 768 the passes
# win (1.6 against 2.2 ms, 500 x 768: 11 against 29).
EXACT_SIGN_FSUM_TERMS = 8192


def _exact_signs(terms):
    """Per row of ``terms`` (float64, each a multiple of ``2^-298``, far above float64's
    subnormals, and finite with every partial sum: products and squares of float32
    values and their errors), the sign of its exact sum: -1, 0 or 1.

    Each pass turns a row into ``head + errors`` of the same exact sum by a tree of
    TwoSums (:func:`_error_free_sum`), ``head`` its sum in float64; the sign is
    ``head``'s once ``|head|`` exceeds a bound on the errors' sum (or the errors are 0).
    The next pass sums ``head`` and the errors again, each pass as if in another
    float64's worth of precision: K-fold summation (Ogita, Rump and Oishi, "Accurate
    sum and dot product", SIAM J. Sci. Comput. 26, 2005) on arrays, vectorised over the
    rows. Zero terms are dropped first, row by row. Rows still undecided after
    :data:`EXACT_SIGN_PASSES` (sums exact to within ``2^-200`` of their terms), or as
    soon as fewer than :data:`EXACT_SIGN_FSUM_TERMS` terms are left, are summed by
    ``math.fsum``, correctly rounded and so of the exact sum's sign."""
    signs = np.zeros(terms.shape[0])
    pending = np.arange(terms.shape[0])
    for _ in range(EXACT_SIGN_PASSES):
        terms, = _packed(terms != 0, terms)
        if not terms.shape[1]:  # (every sum left is exactly 0)
            return signs
        if terms.size < EXACT_SIGN_FSUM_TERMS:
            break
        head, errors = _error_free_sum(terms)
        # |sum(errors)| <= sum|errors|, which float64 sums to within (m - 1)u of itself
        # and the product below rounds by u more: 4 m u spares both (u = 2^-53).
        magnitudes = np.abs(errors).sum(axis=1)
        bound = magnitudes * (1 + 4 * (errors.shape[1] + 1) * 2.0**-53)
        decided = (np.abs(head) > bound) | (magnitudes == 0)
        signs[pending[decided]] = np.sign(head[decided])
        pending = pending[~decided]
        if not pending.shape[0]:
            return signs
        terms = np.concatenate([head[~decided, None], errors[~decided]], axis=1)
    for i, row_terms in zip(pending, terms):
        signs[i] = np.sign(math.fsum(row_terms.tolist()))
    return signs


def _packed(mask, *arrays):
    """Each of ``arrays`` (the shape of ``mask``) with its values where ``mask`` holds
    moved to the front of their row, in order, the rest 0, and the columns beyond the
    most such values of any row dropped."""
    rows, columns = np.nonzero(mask)  # by row, then by column
    counts = np.bincount(rows, minlength=mask.shape[0])
    packed_columns = np.arange(rows.shape[0]) - (np.cumsum(counts) - counts)[rows]
    packed = []
    for values in arrays:
        packed.append(np.zeros((mask.shape[0], int(counts.max(initial=0))), values.dtype))
        packed[-1][rows, packed_columns] = values[rows, columns]
    return packed


def _error_free_sum(terms):
    """``(head, errors)`` per row of ``terms`` (``m >= 1`` columns): ``head`` the float64
    sum of the row by a tree of additions, ``errors`` (``m - 1`` columns) the exact
    rounding error of each addition (:func:`two_sum`), so that ``head + sum(errors)`` is
    the row's exact sum, and ``|errors|`` sum to at most ``log2(m) u`` times its
    magnitudes'."""
    errors = []
    while terms.shape[1] > 1:
        half = terms.shape[1] // 2
        high, low = two_sum(terms[:, :half], terms[:, half:2 * half])
        errors.append(low)
        terms = np.concatenate([high, terms[:, 2 * half:]], axis=1)  # an odd column waits
    errors = np.concatenate(errors, axis=1) if errors else np.zeros((terms.shape[0], 0))
    return terms[:, 0], errors


def _square_terms(x, c):
    """``(x - c)^2`` of float64 arrays as six arrays of float64 values whose sum it is,
    exactly: the difference as a TwoSum (high, low), the square of each part and twice
    their product as TwoProducts."""
    high, low = two_sum(x, -c)
    return (*two_product(low, low), *two_product(2 * high, low), *two_product(high, high))


def e_step(X, centers, labels, x_squared_norms=None, unit_centers=False):
    """Engine ``assign_labels``; a run passes the ``x_squared_norms`` it has.
    ``unit_centers`` (cosine fits) orders the centers by dot product alone (see
    :func:`centers_squared_norms`)."""
    n_features = X.shape[1]
    squared_norms = centers_squared_norms(centers, unit_centers)
    # A transposed view, not a copy: the GEMM is then called as scikit-learn calls it
    # (X times the centers transposed), and OpenBLAS sums in the same order; a copy takes
    # another kernel, whose other order breaks exact ties (integer data) the other way.
    minus_two_centers_t = (-2 * centers).T
    max_center_norm = float(squared_norms.max()) + SUBNORMAL_NORM
    margin_coefficient = (
        bound_margin_coefficient(X.dtype, n_features) if X.dtype == np.float32 else 0.0
    )
    if margin_coefficient and x_squared_norms is None:
        x_squared_norms = row_norms(X)
    # Taken on first need, once (see _nearest_centers).
    values_certificate = functools.cache(lambda: _values_certificate(centers, unit_centers))
    # float64 takes scikit-learn's chunks, for its labels bit for bit; float32 labels are
    # exact whatever the chunk, and few features make small chunks all Python overhead.
    chunk_rows = CHUNK_ROWS if X.dtype == np.float64 else max(CHUNK_ROWS, 2**15 // n_features)
    for start in range(0, X.shape[0], chunk_rows):
        stop = start + chunk_rows
        labels[start:stop] = _assign_chunk(
            X[start:stop], None if x_squared_norms is None else x_squared_norms[start:stop],
            centers, minus_two_centers_t, squared_norms, max_center_norm, margin_coefficient,
            unit_centers, values_certificate,
        )


def _cluster_sums(X_f64, sample_weight, labels, n_clusters):
    """``sum_i w_i x_i`` and ``sum_i w_i`` per cluster in float64, summed in the Numba
    engine's order for float64 data (:func:`gpukmeans._cpu_lloyd._lloyd_chunked`, which follows
    scikit-learn's): within a group of chunks, sequential sums over blocks of
    :func:`fold_rows` rows, added block after block; then the groups' partial sums added
    group after group. Exact sums (integer data) then round as there, and float64
    centers stay scikit-learn's bit for bit. Each block is a sparse one-hot product:
    n_samples x n_features work, not times n_clusters.
    """
    n_samples, n_features = X_f64.shape
    weights = sample_weight.astype(np.float64)
    chunks = n_chunks(n_samples)
    groups = n_groups(chunks, n_clusters, n_features)
    # A fold happens at the first chunk boundary at or past fold_rows rows.
    block_rows = -(-fold_rows(n_clusters) // CHUNK_ROWS) * CHUNK_ROWS
    sums = weight_in_clusters = None
    for group in range(groups):
        start, end = group_bounds(group, groups, chunks, n_samples, CHUNK_ROWS)
        group_sums = None
        for block_start in range(start, end, block_rows):
            block_end = min(block_start + block_rows, end)
            one_hot = scipy.sparse.csr_matrix(
                (weights[block_start:block_end],
                 (labels[block_start:block_end], np.arange(block_end - block_start))),
                shape=(n_clusters, block_end - block_start),
            )
            block_sums = np.asarray(one_hot @ X_f64[block_start:block_end])
            group_sums = block_sums if group_sums is None else group_sums + block_sums
        group_weights = np.bincount(labels[start:end], weights=weights[start:end],
                                    minlength=n_clusters)
        if sums is None:
            sums, weight_in_clusters = group_sums, group_weights
        else:
            sums += group_sums
            weight_in_clusters += group_weights
    return sums, weight_in_clusters


def lloyd_iter(X, sample_weight, centers_old, labels, unit_centers=False):
    e_step(X, centers_old, labels, unit_centers=unit_centers)
    return _cluster_sums(X.astype(np.float64, copy=False), sample_weight, labels,
                         centers_old.shape[0])


class _Run:
    """One run's passes with the plain step (``Engine.start_lloyd`` for float64): each
    step searches every sample and sums every sample. A float32 X (the tests' reference
    for :class:`_BoundsRun`) is converted to float64 once, not once per step."""

    def __init__(self, X, x_squared_norms, sample_weight, n_clusters, unit_centers=False):
        self.X, self.x_squared_norms = X, x_squared_norms
        self.sample_weight, self.n_clusters = sample_weight, n_clusters
        self.unit_centers = unit_centers
        self.X_f64 = X.astype(np.float64, copy=False)

    def step(self, centers_old, labels):
        e_step(self.X, centers_old, labels, self.x_squared_norms, self.unit_centers)
        return _cluster_sums(self.X_f64, self.sample_weight, labels, self.n_clusters)

    def finish(self, centers, labels, assign_labels):
        if assign_labels:
            e_step(self.X, centers, labels, self.x_squared_norms, self.unit_centers)
        return inertia(self.X, self.sample_weight, centers, labels)


# Most samples keep their cluster from one iteration to the next. Hamerly (2010) keeps,
# per sample, an upper bound on the distance to its own center and a lower bound on the
# distance to every other; moving the centers loosens them by how far the centers moved.
# While upper <= max(lower, half the gap from its center to the nearest other center),
# no other center can be closer, and the sample is skipped. The Numba engine's float32
# runs test sample by sample (gpukmeans._cpu._hamerly_e_step); here each test is one
# NumPy operation over every sample, and the rows left open are searched by one GEMM on
# their gathered rows, which also sets their bounds afresh.
#
# The Numba engine first tightens an open sample's upper bound with the distance to its
# own center, one dot product against a search's n_clusters. Not here: in NumPy that
# dot product (an einsum over the gathered rows and their centers) costs nearly what
# BLAS takes for a whole search at 20 clusters, settles a quarter of the open samples
# on MNIST, and leaves them with their loose lower bounds, which open them again:
# measured on MNIST, the fit is 40% slower with it at 20 clusters, 25% at 70.
#
# The bounds are exact-arithmetic statements about the float32 centers; the distances
# they are set from are ||x||^2 + (||c||^2 - 2 x.c) with a float32 dot product. A margin
# larger than that rounding (bound_margin_coefficient) keeps them bounds, and strict
# ones, so a skipped sample's label is its exactly nearest center; a searched sample's
# is too, near-ties being decided exactly as in the plain step (_nearest_centers).
# So after every step the labels are the plain e_step's, whichever samples were skipped.
class _BoundsRun:
    """The passes of one float32 run with Hamerly's bounds (``Engine.start_lloyd``).

    Keeps the bounds, the float64 per-cluster sums (updated by the samples that moved)
    and the last centers between passes. :meth:`step` returns copies: the driver may
    change them (a relocation moves weight between clusters), while the run's sums stay
    those of the labels, which a relocation does not change.
    """

    def __init__(self, X, x_squared_norms, sample_weight, n_clusters, unit_centers=False):
        n_samples, n_features = X.shape
        self.X, self.x_squared_norms = X, x_squared_norms
        self.sample_weight = sample_weight
        self.unit_centers = unit_centers
        self.weights = sample_weight.astype(np.float64)
        self.margin_coefficient = bound_margin_coefficient(X.dtype, n_features)
        # Set by the first E-step, which searches every sample.
        self.upper = np.empty(n_samples)  # >= ||x - its center||
        self.lower = np.empty(n_samples)  # <= ||x - c|| for every other center c
        self.sums = np.zeros((n_clusters, n_features))
        self.centers_prev = None
        self.chunk_rows = max(CHUNK_ROWS, SEARCH_CHUNK_BYTES // (X.itemsize * n_features))

    def step(self, centers_old, labels):
        """``lloyd_iter`` on the run's data. The first step (labels all -1) searches
        every sample, sets the bounds and sums every sample."""
        n_clusters = centers_old.shape[0]
        self._e_step(centers_old, labels)
        weight_in_clusters = np.bincount(labels, weights=self.weights, minlength=n_clusters)
        # An emptied cluster's sums are rounding residue: make them the exact zero that
        # fresh sums would be.
        self.sums[weight_in_clusters == 0] = 0.0
        return self.sums.copy(), weight_in_clusters

    def finish(self, centers, labels, assign_labels):
        """The final E-step with the bounds (no sums: the run ends), then the inertia
        pass."""
        if assign_labels:
            self._e_step(centers, labels, track_sums=False)
        return inertia(self.X, self.sample_weight, centers, labels)

    def _e_step(self, centers, labels, track_sums=True):
        """Searches the samples whose bounds leave another center open; with
        ``track_sums``, moves each one that changes cluster from its old cluster's sum to
        its new one's, so that the sums always match the labels."""
        X = self.X
        n_samples, n_clusters = X.shape[0], centers.shape[0]
        squared_norms = centers_squared_norms(centers, self.unit_centers)
        minus_two_centers_t = (-2 * centers).T
        max_center_norm = float(squared_norms.max()) + SUBNORMAL_NORM
        # On first need, once (pieces' threads racing take it twice, the same).
        values_certificate = functools.cache(
            lambda: _values_certificate(centers, self.unit_centers))
        # The bounds after this E-step are for these centers.
        centers_f64 = centers.astype(np.float64)
        centers_prev, self.centers_prev = self.centers_prev, centers_f64
        if centers_prev is None:
            # Every sample, in contiguous chunks (nothing gathered), from no cluster.
            pieces = [np.arange(start, min(start + self.chunk_rows, n_samples))
                      for start in range(0, n_samples, self.chunk_rows)]
        else:
            center_shift = _center_shifts(centers_f64, centers_prev)
            self.upper += center_shift[labels]
            # `lower` covers every center but the own one: it loosens by the largest
            # shift among them, the second largest where the own one moved most (with a
            # single center, `lower` is +inf and stays so).
            others_shift = np.full(n_clusters, center_shift.max())
            if n_clusters > 1:
                others_shift[center_shift.argmax()] = np.sort(center_shift)[-2]
            self.lower -= others_shift[labels]
            bound = np.maximum(self.lower, _half_gaps(centers_f64)[labels])
            open_rows = np.flatnonzero(self.upper > bound)
            pieces = [open_rows[start:start + self.chunk_rows]
                      for start in range(0, open_rows.shape[0], self.chunk_rows)]
            pieces = [np.arange(rows[0], rows[-1] + 1)
                      if (rows[-1] - rows[0] + 1) * DENSE_OPEN_FRACTION <= rows.shape[0]
                      else rows for rows in pieces]  # (see DENSE_OPEN_FRACTION)

        def search(rows):
            # Open rows that follow one another (all of them, in the first steps) are
            # read where they lie; the others are gathered.
            contiguous = rows[-1] - rows[0] + 1 == rows.shape[0]
            chunk = X[rows[0]:rows[-1] + 1] if contiguous else X[rows]
            chunk_norms = self.x_squared_norms[rows]
            values = chunk @ minus_two_centers_t  # (n_rows, n_clusters)
            values += squared_norms
            new_labels, own_values, other_values = _nearest_centers(
                chunk, chunk_norms, centers, values, max_center_norm, self.margin_coefficient,
                self.unit_centers, values_certificate)
            margin = self.margin_coefficient * (chunk_norms + max_center_norm)
            self.upper[rows] = _distance_bound(chunk_norms, own_values, margin)
            self.lower[rows] = _distance_bound(chunk_norms, other_values, -margin)
            old_labels = labels[rows]
            labels[rows] = new_labels
            if not track_sums:
                return None
            changed = np.flatnonzero(new_labels != old_labels)
            if changed.shape[0] < rows.shape[0]:  # all of them in the first step
                rows, chunk = rows[changed], chunk[changed]
                old_labels, new_labels = old_labels[changed], new_labels[changed]
            if not rows.shape[0]:
                return None
            return _moved_sums(n_clusters, self.weights[rows], chunk, old_labels, new_labels)

        work = sum(rows.shape[0] for rows in pieces) * X.shape[1] * n_clusters
        for moved in map_pieces(search, pieces, work):
            if moved is not None:
                self.sums += moved


def _distance_bound(x_squared_norms, values, margin):
    """``sqrt(||x||^2 + value + margin)`` clipped at 0, where ``value = ||c||^2 - 2 x.c``:
    an upper bound on ``||x - c||`` for a margin above the rounding, a lower bound for
    its negative."""
    squared = x_squared_norms + values
    squared += margin
    return np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared)


def _center_shifts(centers_new, centers_old):
    """Row-wise ``||new_j - old_j||`` of float64 centers, rounded up by more than its
    rounding (a bound)."""
    diff = centers_new - centers_old
    rounding = (centers_new.shape[1] + 2) * float(np.finfo(np.float64).eps)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff)) * (1 + rounding)


def _half_gaps(centers):
    """Per float64 center, half the distance to the nearest other center, rounded down
    (Gram form, minus its rounding: a bound); +inf for a single center."""
    norms = np.einsum("ij,ij->i", centers, centers)
    sum_norms = norms[:, None] + norms[None, :]  # (n_clusters, n_clusters)
    squared = sum_norms - 2.0 * (centers @ centers.T)
    rounding = 2 * (centers.shape[1] + 2) * float(np.finfo(np.float64).eps)
    squared -= rounding * sum_norms
    np.fill_diagonal(squared, np.inf)
    return 0.5 * np.sqrt(np.maximum(squared.min(axis=1), 0.0))


def _moved_sums(n_clusters, weights, X_rows, old_labels, new_labels):
    """The change of the per-cluster sums when each row of ``X_rows`` moves: ``+w x`` to
    its ``new`` cluster, ``-w x`` from its ``old`` one (unless -1), float64 (n_clusters,
    n_features), as the product of a (n_clusters, n_rows) matrix of weights and the
    rows: each cluster's change is summed in a fixed order."""
    n_rows = X_rows.shape[0]
    in_rows = np.arange(n_rows)
    had_label = old_labels >= 0
    if n_clusters * n_rows <= DENSE_MOVES_MAX:
        # A few moves (most iterations): a dense product, without scipy's overhead.
        moves = np.zeros((n_clusters, n_rows))
        moves[new_labels, in_rows] = weights
        moves[old_labels[had_label], in_rows[had_label]] = -weights[had_label]
    else:
        moves = scipy.sparse.csr_matrix(
            (np.concatenate([weights, -weights[had_label]]),
             (np.concatenate([new_labels, old_labels[had_label]]),
              np.concatenate([in_rows, in_rows[had_label]]))),
            shape=(n_clusters, n_rows),
        )
    return np.asarray(moves @ X_rows.astype(np.float64))


def start_lloyd(X, x_squared_norms, sample_weight, n_clusters, unit_centers=False):
    """Engine ``start_lloyd``: Hamerly's bounds for float32; float64 runs take the plain
    step, whose GEMM keeps their labels bitwise scikit-learn's."""
    if X.dtype == np.float32:
        return _BoundsRun(X, x_squared_norms, sample_weight, n_clusters, unit_centers)
    return _Run(X, x_squared_norms, sample_weight, n_clusters, unit_centers)


def _distances_to_labels(X, centers, labels, row_sums):
    """``row_sums(diff)`` of each piece of ``X - centers[labels]`` (float64 differences),
    float64 ``(n_samples,)``."""
    centers_f64 = centers.astype(np.float64)
    distances = np.empty(X.shape[0])

    # One float64 dtype per operation keeps NumPy on its fast loops (a mixed float32 -
    # float64 is 3x slower).
    def piece(bounds):
        for start, stop in _row_ranges(*bounds, 8 * X.shape[1]):
            # C order: NumPy sums a row pairwise only along a contiguous axis.
            diff = X[start:stop].astype(np.float64, order="C")
            diff -= centers_f64.take(labels[start:stop], axis=0)
            distances[start:stop] = row_sums(diff)

    _over_row_pieces(piece, X, 8 * X.shape[1])
    return distances


def _squares_summed_as_numpy(diff):
    np.square(diff, out=diff)
    return diff.sum(axis=1)


def assigned_distances(X, centers, labels):
    """Engine ``assigned_distances``: each row's squares summed by NumPy itself
    (:func:`gpukmeans._cpu_passes.numpy_order_distances` replays its order)."""
    return _distances_to_labels(X, centers, labels, _squares_summed_as_numpy)


def inertia(X, sample_weight, centers, labels):
    # NumPy's pairwise sum: a fixed order, whatever the thread count.
    distances = _distances_to_labels(X, centers, labels,
                                     lambda diff: np.einsum("ij,ij->i", diff, diff))
    return np.float64((distances * sample_weight).sum())


def row_norms(X):
    """float64 ``||x||^2`` of each row, summed in float64 (each row's sum is einsum's
    over that row alone, whatever piece it is in)."""
    norms = np.empty(X.shape[0])

    def piece(bounds):
        for start, stop in _row_ranges(*bounds, 8 * X.shape[1]):
            rows = X[start:stop].astype(np.float64, copy=False)
            norms[start:stop] = np.einsum("ij,ij->i", rows, rows)

    _over_row_pieces(piece, X, 8 * X.shape[1])
    return norms


def pairwise_distances(X, centers):
    """Euclidean distances in X's dtype: ``||x||^2 - 2 x.c + ||c||^2`` wholly in float64
    (in float32 the cancellation would leave errors of order sqrt(eps) ||x|| on small
    distances); where even float64's cancellation costs more than 20 of its 52 bits (a
    sample on or near a center), summed from the differences: exactly 0 on a center."""
    X_f64 = X.astype(np.float64, copy=False)
    centers_f64 = centers.astype(np.float64)
    x_squared_norms = row_norms(X_f64)
    squared_norms = row_norms(centers_f64)
    squared = X_f64 @ (-2.0 * centers_f64).T
    squared += x_squared_norms[:, None]
    squared += squared_norms[None, :]
    cancelled = squared <= CANCELLATION * (x_squared_norms[:, None] + squared_norms[None, :])
    for i, j in zip(*np.nonzero(cancelled)):
        squared[i, j] = _squared_distances_f64(X[i], centers[j:j + 1])[0]
    np.maximum(squared, 0.0, out=squared)
    return np.sqrt(squared).astype(X.dtype, copy=False)


def near_the_origin(X_mean, x_squared_norms):
    """Whether float32 data can be used uncentred (both engines' rule; see
    :func:`gpukmeans._cpu.centered`): the mean's squared norm is at most the spread around
    it, mean ||x||^2 - ||mean||^2."""
    mean_squared_norm = float(np.square(X_mean.astype(np.float64)).sum())
    return mean_squared_norm <= float(x_squared_norms.mean()) - mean_squared_norm


def centered(X, X_mean, x_squared_norms=None):
    """Engine ``centered``: float64 always centred, as scikit-learn does; float32 only far
    from the origin (:func:`near_the_origin`). ``x_squared_norms``: X's
    :func:`row_norms`, where the caller has them."""
    if X.dtype == np.float32:
        if x_squared_norms is None:
            x_squared_norms = row_norms(X)
        if near_the_origin(X_mean, x_squared_norms):
            return X, x_squared_norms, False
    out = np.empty_like(X, order="C")
    mean = X_mean.astype(X.dtype, copy=False)

    def piece(bounds):
        start, stop = bounds
        np.subtract(X[start:stop], mean, out=out[start:stop])

    _over_row_pieces(piece, X, X.itemsize * X.shape[1])
    return out, row_norms(out), True


def kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq):
    if X.dtype == np.float64:
        return _sklearn_kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids,
                                            closest_dist_sq)
    candidates = X[candidate_ids]
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, the norms in float64, the dots in X's dtype,
    # X @ candidates.T a piece of rows at a time (see KMEANSPP_PIECE_BYTES). The copy to
    # C order keeps the sums below in their order.
    n_samples = X.shape[0]
    dots = np.empty((n_samples, candidates.shape[0]), dtype=X.dtype)

    def piece(bounds):
        start, stop = bounds
        np.matmul(X[start:stop], candidates.T, out=dots[start:stop])

    # The products' last bits follow the pieces (_row_ranges), which follow the shapes.
    pieces = _row_ranges(0, n_samples, X.itemsize * X.shape[1], KMEANSPP_PIECE_BYTES)
    for _ in map_pieces(piece, pieces, candidates.shape[0] * X.size):
        pass
    dots = np.ascontiguousarray(dots.T)  # (n_candidates, n_samples)
    distances = x_squared_norms[None, :] - 2.0 * dots
    distances += x_squared_norms[candidate_ids][:, None]
    np.maximum(distances, 0.0, out=distances)
    # Rounded to X's dtype before the min, as scikit-learn does.
    distance_to_candidates = np.minimum(distances.astype(X.dtype), closest_dist_sq)
    candidates_pot = (distance_to_candidates * sample_weight.astype(np.float64)).sum(axis=1)
    return distance_to_candidates, candidates_pot


def _sklearn_kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids,
                                 closest_dist_sq):
    """float64: scikit-learn's arithmetic for the step, operation for operation
    (``_kmeans_plusplus`` and ``_euclidean_distances``), so that its picks are ours also
    where two candidates are copies of one sample. Their potentials are then equal but
    for the last bits that NumPy's one GEMM of the candidates by all of X gives each
    candidate's row, which depend on the row's place among the candidates (OpenBLAS
    multiplies the rows past a multiple of its tile with other kernels), and argmin
    takes the lower one; another GEMM (``X @ C.T``, or by blocks of samples) or another
    sum of the potentials picks the other copy, and the run goes another way. Copies are
    common where k-means++ runs on a sample drawn with replacement (MiniBatchKMeans's
    ``init_size``)."""
    candidates = X[candidate_ids]
    distances = -2 * (candidates @ X.T)  # (n_candidates, n_samples)
    distances += row_norms(candidates)[:, None]
    distances += x_squared_norms[None, :]
    np.maximum(distances, 0.0, out=distances)
    np.minimum(closest_dist_sq, distances, out=distances)
    return distances, (distances @ sample_weight.reshape(-1, 1))[:, 0]


def make_engine(unit_centers=False):
    """This engine; ``unit_centers`` (cosine fits and their inference) orders the centers
    by dot product alone (see :func:`centers_squared_norms`)."""
    return Engine(
        name="cpu",
        xp=np,
        lloyd_iter=by_dot_products(lloyd_iter, unit_centers),
        start_lloyd=by_dot_products(start_lloyd, unit_centers),
        assign_labels=by_dot_products(e_step, unit_centers),
        assigned_distances=assigned_distances,
        inertia=inertia,
        pairwise_distances=pairwise_distances,
        row_norms=row_norms,
        centered=centered,
        kmeanspp_candidates=kmeanspp_candidates,
        runtime=small_runtime,
    )
