"""The CPU engine's mini-batch step, after the batch is drawn: its labels, its center
update and its inertia, each one call, reading the batch's rows of X by index.

A batch (scikit-learn's default: 1,024 rows) is too small to repay a parallel region
(Numba's workqueue layer costs about 120 us to start one here), and NumPy's dozen small
calls per step (the sums by label, the weights, the learning rates, the inertia) cost
more than the arithmetic. Copying the batch out of X first (``X[indices]``, as
scikit-learn does) costs as much again as labelling it: its rows are scattered over X,
and the copy waits on memory that the labelling's arithmetic would otherwise overlap.
So the rows are read where they lie:

- the labels (:func:`_batch_labels_by_index`), by the blocked kernel for many features
  (:func:`labels_by_index`); elsewhere the batch is copied and labelled by the engine's
  E-step (few features take its other kernels), or, float32 with many features and
  clusters, copied and labelled in pieces on the row pool's threads, a GEMM each
  (:func:`labels_by_gemm`, :func:`batch_labels_by_gemm`).
  Every way the labels are the same: float32's the exactly nearest centers, float64's
  scikit-learn's (its GEMM's argmin on the batch, consulted where the blocked values
  cannot decide);
- the update (:func:`_minibatch_update`), scikit-learn's arithmetic in its order, in
  float64 (so float64 centers are its bit for bit), as
  :func:`gpukmeans._minibatch_step.mini_batch_step`'s generic path does on the host:
  each cluster's sum starts at ``c * W`` and adds ``w_i x_i`` in sample order (no fused
  multiply-add), its weight ``w_new`` from zero likewise; each center that received
  weight becomes ``sum * (1 / (W + w_new))``, rounded to X's dtype;
- the inertia ``sum_i w_i ||x_i - c_{l_i}||^2``: each distance measured in the update's
  own loop over the row (from the differences in float64, against the old center; its
  sum reassociated, in another order than
  :func:`gpukmeans._cpu_distance.squared_distance_f64`'s), added in sample order
  as the engine's ``inertia`` adds them; the same up to the last bits of each
  distance's sum (scikit-learn's own batch inertia, summed on its threads,
  is another rounding). A second pass over the batch's rows cost a tenth of a step
  (MNIST, k=10), a second loop over each row a twentieth.

Where the labels run on one thread (one thread, or a batch too small for two:
:class:`gpukmeans._cpu_runtime.ThreadedKernel`), labels and update go a chunk of the
batch at a time (:func:`_labelled_update_by_index`), parts of SUMMED_ROWS rows that
are summed while they are in cache from their labelling, not gathered from X a second
time. The same labels, the rows added in the same order: the same bits. MNIST, 1,024
random rows, one thread, a step at k=10: 0.64 -> 0.57-0.60 ms with chunks of 256 rows
(at k=100, 1.8 ms, the arithmetic hides it), and 10-15% less again with parts of 64.
Where the labels run on the threads, so does the update, its clusters in groups
(:func:`_minibatch_update_by_clusters`, the same bits): run serially between two
parallel labellings, it left the workers idle long enough that the next labelling lost
most of its second thread to waking them. Whole fits on MNIST, two threads, base / new
alternated (``benchmarks/ab_commits.py``), the same results: k=100 699-750 / 648-650 ms,
k=30 313 / 275, k=10 206 / 195, float64 k=100 773 / 743.

It also holds the batch draw's search, :meth:`gpukmeans._minibatch_step.BatchSampler.search`
compiled (NumPy's vectorised binary search costs 0.14 ms a batch in small array calls,
this loop 0.01).

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit, prange

from ._cpu_narrowed import BY_BLOCKS, narrowed_centers, narrowed_margin, rows_nearest_narrowed
from ._cpu_panel import VECTOR_BYTES
from ._cpu_nearest import (
    _label_of_values, _labels_of_nearest_two, _minus_two_centers_and_norms,
    _rows_nearest_blocked, _squared_norm_f64,
)
from ._cpu_runtime import CACHE, ROW_WORK, prange_only, threaded
from ._cpu_small import CHUNK_ROWS, map_pieces
from ._cpu_small import SUBNORMAL_NORM as _SUBNORMAL_NORM


# A batch is labelled by index (_batch_labels_by_index) from BY_INDEX_MIN_FEATURES
# features (fewer take the E-step's other kernels) up to BY_INDEX_MAX_CLUSTERS clusters,
# and from BY_INDEX_MANY_FEATURES up to BY_INDEX_MANY_FEATURES_MAX_CLUSTERS; beyond, a
# GEMM on the copied batch catches up. One 1,024-row batch of random rows of 70,000 x
# 784 random values (of 70,000 x 784 / d at d features), one thread, ms, by index
# against copied + GEMM: float32 d=784 k=10 0.30 / 0.70, k=64 0.90 / 1.99, k=128 1.68 /
# 3.00, k=256 3.38 / 5.28, k=512 7.33 / 10.0; d=256 k=10 0.18 / 0.38, k=128 0.79 / 1.26,
# k=512 2.59 / 3.39; d=130 k=64 0.36 / 0.42, k=128 0.62 / 0.63, k=256 1.27 / 1.24, k=512
# 2.98 / 2.41; float64 d=784 k=10 0.62 / 1.74, k=100 3.00 / 4.73, k=256 7.67 / 9.91;
# d=256 k=10 0.23 / 0.45, k=100 0.97 / 1.65, k=256 1.87 / 3.04. (Measured against
# OpenBLAS held to its AVX2 kernels by the VM's OPENBLAS_CORETYPE=Haswell; beyond these
# limits a copied batch is labelled by the plain step's kernel for its shapes
# (_cpu._dots_kernel), on OpenBLAS's native kernels now a GEMM: not measured again.)
# From 65 features by index was slower (Zen 3, two threads, whole fits of 200,000 blobs
# alternated, by index / copied: d=100 k=10 1.02x, k=64 1.38x; d=72 k=32 1.13x).
# Those limits are the 512-bit kernels' (6 x 4 blocks, the Xeon). With 256-bit vectors
# (4 x 3 blocks: AVX2 alone, as on the Zen 3 VM of stop 58, OpenBLAS on its own Haswell
# kernels) the copied batch's GEMM wins from about one cluster per
# BY_INDEX_AVX2_FEATURES_PER_CLUSTER features: the whole step, the same 1,024-row
# batches, alternated, medians of 34, one thread, ms, by index / copied (float32):
# d=784 k=10 0.84 / 1.00, k=64 2.42 / 2.59, k=100 3.38 / 3.47, k=128 4.19 / 4.01,
# k=256 8.41 / 7.46; d=512 k=32 1.07 / 1.17, k=64 1.85 / 1.91, k=100 2.88 / 2.90; d=256
# k=32 0.62 / 0.62, k=64 1.03 / 0.96, k=128 1.85 / 1.58, k=512 7.87 / 6.67; d=130 k=32
# 0.45 / 0.39, k=64 0.69 / 0.53, k=128 1.21 / 0.83 (float64 alike: d=256 k=128 2.01 /
# 1.67, d=130 k=128 1.29 / 0.87); two threads, d=784 k=100 4.14 / 3.67, k=128 5.10 /
# 4.45, d=130 k=64 0.70 / 0.53.
BY_INDEX_MIN_FEATURES = 129
BY_INDEX_MAX_CLUSTERS = 128
BY_INDEX_MANY_FEATURES = 256
BY_INDEX_MANY_FEATURES_MAX_CLUSTERS = 512
BY_INDEX_AVX2_FEATURES_PER_CLUSTER = 8


# A float32 batch of at least BY_GEMM_MIN_FEATURES features and BY_GEMM_MIN_CLUSTERS
# clusters is labelled by batch_labels_by_gemm rather than by index or by the E-step on
# the copy (its blocked kernel). With 256-bit vectors (the Zen 3), the whole step,
# 1,024 random rows of uniform values, medians of 3 x 60 alternated, ms, by index /
# copied (E-step) / by GEMM, two threads then one: d=784 k=10 0.91 / 1.04 / 1.07, 0.90
# / 1.05 / 1.14; k=20 1.32 / 1.48 / 1.51, 1.32 / 1.49 / 1.38; k=32 2.08 / 2.25 / 1.85,
# 1.84 / 1.99 / 1.57; k=64 3.37 / 3.53 / 2.64, 3.22 / 3.40 / 2.22; k=98 4.17 / 4.94 /
# 2.07, 4.72 / 5.08 / 2.94; d=512 k=32 1.16 / 1.24 / 1.18, 1.15 / 1.23 / 1.11; d=384
# k=32 0.89 / 0.95 / 0.81, 0.87 / 0.95 / 0.88; k=48 1.18 / 1.22 / 0.91, 1.15 / 1.22 /
# 1.05; d=256 k=32 0.64 / 0.64 / 0.61, 0.62 / 0.63 / 0.65; k=64 1.03 / 0.98 / 0.78, 1.04
# / 0.97 / 0.90; k=128 1.97 / 1.92 / 1.09, 1.88 / 1.59 / 1.36; fewer features lose on one
# thread (d=130 k=256 1.49 / 1.13 on two, 1.37 / 1.42 on one; d=64 k=64 0.28 / 0.48).
# On MNIST's rows, by index / by GEMM, two threads then one: k=20 1.10 / 1.20, 1.08 /
# 1.41; k=32 1.64 / 1.37, 1.42 / 1.51; k=48 2.12 / 1.80, 1.88 / 1.83; k=64 2.57 / 2.05,
# 2.33 / 2.19; k=98 3.45 / 2.38, 3.44 / 3.23.
# Beyond, measured by a helper, by GEMM / before: d=256 k=128 0.59-0.80x, d=2048 k=200
# 0.11-0.26x. With 512-bit vectors (a 2-core Xeon, stop 60), the whole step by index /
# by GEMM, medians of 120 alternated in blocks of 12, ms, two threads: MNIST k=20 0.83 /
# 1.09, k=32 1.46 / 1.14, k=48 1.80 / 1.28, k=64 1.97 / 1.40, k=100 2.57 / 1.73, k=200
# 4.26 / 2.40; uniform rows d=256 k=32 0.52 / 0.57, k=48 0.64 / 0.60, k=64 0.80 / 0.65,
# k=128 1.38 / 1.31; d=384 k=48 0.91 / 0.76, k=128 2.06 / 1.08; d=512 k=32 0.91 / 0.86,
# k=48 1.36 / 0.93, k=128 2.78 / 1.34; d=1024 k=32 2.42 / 1.54, k=128 7.27 / 2.60. One
# thread: MNIST k=32 1.10 / 1.33, k=48 1.31 / 1.49 (the rule's one loss), k=64 1.76 /
# 1.74, k=100 2.40 / 2.13; d=256 k=48 0.63 / 0.62, k=128 1.33 / 0.93; d=384 k=48 0.95 /
# 0.87; d=1024 k=48 2.77 / 2.06. So one rule for both widths.
# Since stop 66 the batch is labelled in pieces on the row pool's threads (below), which
# on two threads wins from fewer features and clusters too: from
# BY_GEMM_THREADED_MIN_FEATURES features and BY_GEMM_THREADED_MIN_CLUSTERS clusters
# where they make BY_GEMM_THREADED_MIN_CLUSTER_FEATURES. Whole float32 fits (Zen 4 EPYC,
# two threads, alternated, medians of 6-8, the same results), in pieces / by the rule
# before (by index, or the E-step on the copy below 129 features): MNIST (70,000 images)
# k=10 1.12x, k=16 1.21x, k=20 1.00x, k=24 1.01x, k=32 0.91x, k=40 1.00x; uniform rows
# (70,000 x 784 values) d=1024 k=8 0.73x, k=16 0.54x; d=640 k=12 0.82x; d=512 k=8
# 1.35x, k=16 0.89x, k=32 0.62x; d=384 k=16 0.92x, k=24 0.88x; d=300 k=24 0.89x; d=256
# k=16 1.16x, k=24 1.01x, k=32 0.88x; d=200 k=40 0.91x, k=64 0.78x; d=160 k=32 1.07x,
# k=64 0.91x, k=128 0.83x; d=129 k=64 1.05x; d=128 k=32 1.16x, k=128 0.93x; d=100 k=64
# 1.19x; d=64 k=128 1.26x; d=48 k=256 1.25x. MNIST's few clusters lose where uniform
# rows as wide win (d=640 k=12): the limits keep clusters from 32. On one thread (one
# piece: the GEMM and the gather serial, as before) the old limits stay: MNIST k=32
# 1.12x there, d=256 k=32 0.99x, d=200 k=64 0.92x.
BY_GEMM_MIN_FEATURES = 256
BY_GEMM_MIN_CLUSTERS = 48
BY_GEMM_THREADED_MIN_FEATURES = 160
BY_GEMM_THREADED_MIN_CLUSTERS = 32
BY_GEMM_THREADED_MIN_CLUSTER_FEATURES = 8192


def labels_by_gemm(dtype, n_features, n_clusters, n_pieces):
    """Whether a batch (of at most GEMM_MAX_BATCH_BYTES) of this dtype and these shapes
    is copied and labelled by :func:`batch_labels_by_gemm` in ``n_pieces`` pieces:
    float32 (whose labels are the exactly nearest centers however the products are
    summed) from BY_GEMM_MIN_FEATURES features and BY_GEMM_MIN_CLUSTERS clusters, on
    256-bit and 512-bit vectors alike (measured on both); in several pieces (on as many
    threads) from the BY_GEMM_THREADED_ limits. Speed only, as :func:`labels_by_index`:
    the same labels every way."""
    if dtype != np.float32:
        return False
    if n_features >= BY_GEMM_MIN_FEATURES and n_clusters >= BY_GEMM_MIN_CLUSTERS:
        return True
    return (n_pieces > 1 and n_features >= BY_GEMM_THREADED_MIN_FEATURES
            and n_clusters >= BY_GEMM_THREADED_MIN_CLUSTERS
            and n_features * n_clusters >= BY_GEMM_THREADED_MIN_CLUSTER_FEATURES)


def labels_by_index(n_features, n_clusters):
    """Whether a batch of these shapes is labelled by index
    (:func:`_batch_labels_by_index`) rather than copied and labelled by the E-step. The
    same labels either way (exactly nearest in float32, scikit-learn's in float64): the
    rule is speed only, and so follows the CPU's vector width."""
    if n_features < BY_INDEX_MIN_FEATURES:
        return False
    if VECTOR_BYTES < 64:
        return n_clusters * BY_INDEX_AVX2_FEATURES_PER_CLUSTER <= n_features
    if n_features >= BY_INDEX_MANY_FEATURES:
        return n_clusters <= BY_INDEX_MANY_FEATURES_MAX_CLUSTERS
    return n_clusters <= BY_INDEX_MAX_CLUSTERS


# A float32 batch that labels_by_gemm picks is copied and labelled in pieces, one per
# thread of the row pool (gpukmeans._cpu_small's, whose threads sleep when idle), each
# piece gathering its rows, multiplying them by one single-threaded GEMM and folding
# the products (batch_labels_by_gemm). The plain step's GEMMs run a 256-row chunk each
# on Numba's threads, whose second thread the Zen 3 VM of stop 59 seldom gave a loop
# that follows serial work (docs/cpu-engine.md); from stop 59 to stop 65 the batch was
# one GEMM on OpenBLAS's own threads instead, folded on one thread (MNIST, 1,024 random
# rows, k=100, the whole step: 3.45 -> 2.0 ms on the Zen 3, 2.57 -> 1.73 on a Xeon).
# But OpenBLAS's idle threads spin for about a tenth of a second after each call and
# hold a core: a fit's final labels on Numba's threads, right after the steps, took
# 105-134 ms on a Zen 4 EPYC (stop 66), 74-90 after a pause. In pieces on the pool, BLAS
# on one thread as everywhere in the engine, the gather and the fold run on both
# threads too: whole float32 fits on 70,000 MNIST images, k=100, two threads,
# alternated, the same results: 476 -> 400 ms (medians of 8), the final labels 67-82 ms.
# The labels are the same every way: float32's are the exactly nearest centers,
# whatever order the products are summed in (the margin covers any). Only a batch of at
# most GEMM_MAX_BATCH_BYTES: a larger one keeps the other ways (its copy would be a
# second X for a batch_size of all of it). The values are made GEMM_VALUES_BYTES at a
# time (or CHUNK_ROWS rows) within a piece.
GEMM_MAX_BATCH_BYTES = 2**23
GEMM_VALUES_BYTES = 2**23


def batch_labels_by_gemm(X, rows, centers, centers_squared_norms, margin_coefficient, labels,
                         n_pieces):
    """The float32 labels of the batch ``X[rows]`` (``rows`` None: all of ``X``, which is
    C-contiguous, partial_fit's batch) as the plain step's GEMM kernel gives them (each
    the exactly nearest center, the lowest index on an exact tie), in ``n_pieces`` pieces
    of rows (:func:`gpukmeans._cpu_runtime.gemm_threads`) on the row pool's threads
    (:func:`gpukmeans._cpu_small.map_pieces`): each copies its rows, makes their
    ``||c||^2 - 2 x.c`` by NumPy's GEMM (BLAS on one thread, as the runtime holds it), a
    block of rows at a time, and folds them (:func:`_labels_of_gemm_values`).

    Returns the batch: the rows copied (C-contiguous), or ``X`` where ``rows`` is None.
    """
    n_rows, n_clusters = (X.shape[0] if rows is None else rows.shape[0]), centers.shape[0]
    batch = X if rows is None else np.empty((n_rows, X.shape[1]), dtype=X.dtype)
    minus_two_centers_t = (-2 * centers).T  # exact: a power of two
    max_center_norm = float(centers_squared_norms.max()) + _SUBNORMAL_NORM
    block_rows = max(CHUNK_ROWS, GEMM_VALUES_BYTES // (X.itemsize * n_clusters))

    def label_piece(piece):
        first, last = piece
        if rows is not None:
            # mode="clip" (the rows are valid): "raise" buffers the copy, 3.6x as long.
            np.take(X, rows[first:last], axis=0, out=batch[first:last], mode="clip")
        for start in range(first, last, block_rows):
            block = batch[start:min(start + block_rows, last)]
            _labels_of_gemm_values(block, block @ minus_two_centers_t, centers,
                                   centers_squared_norms, margin_coefficient,
                                   max_center_norm, labels[start:start + block.shape[0]])

    n_pieces = max(1, min(n_pieces, n_rows))
    edges = [n_rows * piece // n_pieces for piece in range(n_pieces + 1)]
    for _ in map_pieces(label_piece, list(zip(edges[:-1], edges[1:])),
                        n_rows * X.shape[1] * n_clusters):
        pass
    return batch


@njit(nogil=True, cache=CACHE)
def _labels_of_gemm_values(X, dots, centers, centers_squared_norms, margin_coefficient,
                           max_center_norm, labels):
    """``labels[i]``: the exactly nearest center to ``X[i]`` from its products ``dots[i]``
    (``-2 x.c``, overwritten by the values ``||c||^2 - 2 x.c``), as the plain step's GEMM
    kernel folds them (:func:`gpukmeans._cpu_nearest._label_of_values`)."""
    n_clusters = centers.shape[0]
    for i in range(X.shape[0]):
        values = dots[i]
        for j in range(n_clusters):
            values[j] = centers_squared_norms[j] + values[j]
        labels[i] = _label_of_values(X[i], -1.0, centers, values, margin_coefficient,
                                     max_center_norm, True, False)


def _batch_work(X, rows, centers, *args):
    """:func:`_batch_labels_by_index`'s ``work``: multiply-adds, and each row's bookkeeping."""
    return rows.shape[0] * (X.shape[1] * centers.shape[0] + ROW_WORK)


@threaded(_batch_work)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _batch_labels_by_index(
    X,  # IN (n_samples, n_features)
    rows,  # IN (n_rows,) int64: the batch's rows of X
    centers,  # IN (n_clusters, n_features)
    centers_squared_norms,  # IN (n_clusters,) X.dtype (_cpu_small.centers_squared_norms)
    margin_coefficient,  # bound_margin_coefficient(X.dtype, n_features)
    exact_labels,  # float32: the exactly nearest centers; float64: scikit-learn's
    narrowed,  # float64 rows by float32 products (gpukmeans._cpu_narrowed)
    labels,  # OUT (n_rows,) int32
):
    """The E-step's labels of ``X[rows]``, the dot products by the blocked kernel on the
    rows where they lie (:func:`gpukmeans._cpu_nearest._rows_dots_blocked`, whose value
    for a (row, center) pair is the same wherever the row sits), in chunks of
    CHUNK_ROWS (:func:`_label_chunk_by_index`), in parallel where the batch repays the
    threads (:func:`_batch_work`).

    float32: each label the exactly nearest center. float64: scikit-learn's, the
    argmin of the GEMM on the batch's chunk (as its E-step multiplies the copied batch's,
    256 rows at a time): the blocked values' argmin wherever their two smallest are
    further apart than both computations' rounding (then both argmins agree), and for
    the rows that are not, the chunk copied and multiplied as scikit-learn does
    (:func:`gpukmeans._cpu_nearest._sklearn_values`).
    """
    n_rows = rows.shape[0]
    minus_two_centers, _, _ = _minus_two_centers_and_norms(centers, False)
    max_center_norm = np.float64(centers_squared_norms.max()) + _SUBNORMAL_NORM
    n_narrow = centers.shape[0] if narrowed else 0
    narrow_centers = narrowed_centers(minus_two_centers[:n_narrow],
                                      centers_squared_norms[:n_narrow])
    n_chunks = (n_rows + CHUNK_ROWS - 1) // CHUNK_ROWS
    for chunk in prange(n_chunks):
        start = chunk * CHUNK_ROWS
        end = min(start + CHUNK_ROWS, n_rows)
        _label_chunk_by_index(X, rows[start:end], 0, end - start, centers,
                              minus_two_centers, centers_squared_norms, margin_coefficient,
                              max_center_norm, exact_labels, narrow_centers,
                              labels[start:end], np.empty((0, 0), dtype=X.dtype),
                              np.zeros(1, dtype=np.bool_))


@njit(nogil=True, cache=CACHE)
def _label_chunk_by_index(X, chunk_rows, first, last, centers, minus_two_centers,
                          centers_squared_norms, margin_coefficient, max_center_norm,
                          exact_labels, narrow_centers, chunk_labels, gemm_values,
                          gemm_ready):
    """:func:`_batch_labels_by_index` for the rows ``first:last`` of one chunk of the
    batch (at most CHUNK_ROWS): ``chunk_labels[i]`` is ``X[chunk_rows[i]]``'s label. The
    nearest two centers of every row by the blocked kernel and a fold over the centers
    (:func:`gpukmeans._cpu_nearest._rows_nearest_blocked`); the rows whose two are within
    the values' rounding (float32: twice the margin; float64: four, each value and the
    GEMM's off by one) decided exactly (float32) or by the whole chunk's GEMM
    (float64: scikit-learn's chunk, whichever part of it is labelled; computed once
    for all the chunk's parts into ``gemm_values``, see
    :func:`gpukmeans._cpu_nearest._labels_of_nearest_two`), as the plain step decides
    them. float64 with ``narrow_centers`` (:func:`gpukmeans._cpu_narrowed.narrowed_centers`
    of at least one center): the blocked kernel's values from float32 products, as the
    plain step's float64 rows take them."""
    rows = chunk_rows[first:last]
    n_rows, n_clusters = last - first, centers.shape[0]
    best = np.empty(n_rows, dtype=np.int32)
    best_value = np.empty(n_rows, dtype=X.dtype)
    second_value = np.empty(n_rows, dtype=X.dtype)
    row_norms = np.empty(n_rows, dtype=np.float64)
    minus_two_narrow, norms_narrow, centers_in_range = narrow_centers
    if minus_two_narrow.shape[0]:
        n_features = X.shape[1]
        for i in range(n_rows):
            row_norms[i] = _squared_norm_f64(X[rows[i]])
        rows_nearest_narrowed(
            X, rows, n_rows, minus_two_centers, centers_squared_norms, minus_two_narrow,
            norms_narrow, centers_in_range, row_norms, narrowed_margin(n_features),
            max_center_norm, np.empty((n_rows, n_features), dtype=np.float32),
            np.empty(n_clusters * n_rows, dtype=np.float32), np.empty(n_rows, dtype=np.int64),
            np.empty(n_rows, dtype=np.float32), np.empty(n_rows, dtype=np.float32),
            np.empty(n_rows, dtype=np.bool_), np.empty(n_clusters, dtype=np.float64),
            BY_BLOCKS, best, best_value, second_value)
    else:
        scratch = np.empty(n_clusters * n_rows, dtype=X.dtype)
        _rows_nearest_blocked(X, rows, n_rows, minus_two_centers, centers_squared_norms,
                              scratch, best, best_value, second_value, row_norms)
    _labels_of_nearest_two(X, rows, n_rows, centers, centers_squared_norms, best,
                           best_value, second_value, row_norms, margin_coefficient,
                           max_center_norm, exact_labels, False,
                           np.empty(n_rows, dtype=np.bool_), chunk_labels[first:last],
                           chunk_rows, first, gemm_values, gemm_ready)


@njit(nogil=True, cache=CACHE)
def _minibatch_update(
    X,  # IN (n_samples, n_features)
    rows,  # IN (n_rows,) int64: the batch's rows of X
    sample_weight,  # IN (n_rows,) X.dtype: the batch's
    labels,  # IN (n_rows,) int32
    centers,  # IN (n_clusters, n_features) X.dtype
    weight_sums,  # IN (n_clusters,) X.dtype: the weight each center has accumulated
    tiny,  # X.dtype's smallest normal number
    distances,  # OUT (n_rows,) float64, or (0,): no distances wanted
):
    """Returns ``(centers_new, weight_sums_new)``; the inputs are not written. Where
    ``distances`` has a place per row, each row's squared distance to its (old) center,
    from the differences in float64, is written there.

    scikit-learn's arithmetic in its order (``_minibatch_update_dense``), in float64:
    each cluster's sum starts at ``c * W`` and adds each ``w_i x_i`` in sample order, its
    weight ``w_new`` from zero likewise; ``W + w_new`` is rounded to X's dtype, and a
    center that received weight becomes ``sum * (1 / (W + w_new))``, rounded to X's
    dtype. float64 centers are scikit-learn's bit for bit; float32 ones are rounded
    once, from float64 sums (the products of float32 values are exact there), where
    scikit-learn rounds each addition in float32. A weight sum below ``tiny`` (a cluster
    reached only by a batch far lighter than the earlier ones) has a reciprocal that
    overflows float64: the sum is divided by it instead."""
    sums, weight_in_clusters, centers_new, weight_sums_new = _update_arrays(centers,
                                                                            weight_sums)
    _update_clusters(X, rows, sample_weight, labels, centers, weight_sums, tiny, distances,
                     sums, weight_in_clusters, centers_new, weight_sums_new, 0,
                     centers.shape[0])
    return centers_new, weight_sums_new


# _minibatch_update_by_clusters splits the clusters into this many groups a thread (the
# groups' sizes follow the labels, not the split: several a thread even out the work).
UPDATE_GROUPS_PER_THREAD = 4


@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _minibatch_update_by_clusters(X, rows, sample_weight, labels, centers, weight_sums, tiny,
                                  distances, n_groups):
    """:func:`_minibatch_update` on Numba's threads, its clusters in ``n_groups`` groups:
    each group's sums start, gather their rows (in sample order, every row read by the
    group of its label alone) and finish in one ``prange`` iteration, so the bits are
    :func:`_minibatch_update`'s whatever the groups. For steps whose labels ran on the
    threads: run serially between two parallel labellings, the update left the
    workers idle long enough that waking them cost the next labelling its second thread
    (MNIST, 1,024 rows, k=100, two threads: a labelling alone 1.8 ms back to back, 3.0
    after 0.5 ms of serial work, as long as on one thread)."""
    sums, weight_in_clusters, centers_new, weight_sums_new = _update_arrays(centers,
                                                                            weight_sums)
    n_clusters = centers.shape[0]
    for group in prange(n_groups):
        _update_clusters(X, rows, sample_weight, labels, centers, weight_sums, tiny,
                         distances, sums, weight_in_clusters, centers_new, weight_sums_new,
                         group * n_clusters // n_groups, (group + 1) * n_clusters // n_groups)
    return centers_new, weight_sums_new


@njit(nogil=True, cache=CACHE)
def _update_clusters(X, rows, sample_weight, labels, centers, weight_sums, tiny, distances,
                     sums, weight_in_clusters, centers_new, weight_sums_new, first, last):
    """The whole update of clusters ``first:last`` (:func:`_minibatch_update`): their
    sums started, their rows added, their centers and weight sums finished."""
    _start_update(centers, weight_sums, sums, first, last)
    _add_batch_rows(X, rows, sample_weight, labels, centers, sums, weight_in_clusters,
                    distances, first, last)
    _finish_update(centers, weight_sums, sums, weight_in_clusters, tiny, centers_new,
                   weight_sums_new, first, last)


@njit(nogil=True, cache=CACHE)
def _update_arrays(centers, weight_sums):
    """The update's float64 ``sums`` and ``weight_in_clusters`` (zeros), and
    ``centers_new`` and ``weight_sums_new`` (copies of the old)."""
    n_clusters, n_features = centers.shape
    return (np.empty((n_clusters, n_features), dtype=np.float64),
            np.zeros(n_clusters, dtype=np.float64), centers.copy(), weight_sums.copy())


@njit(nogil=True, cache=CACHE)
def _start_update(centers, weight_sums, sums, first, last):
    """The float64 sums of clusters ``first:last`` before the batch: ``c * W``."""
    n_features = centers.shape[1]
    for j in range(first, last):
        for f in range(n_features):
            sums[j, f] = np.float64(centers[j, f]) * np.float64(weight_sums[j])


# ``reassoc`` vectorises the distance's sum (its order then fixed by the compiled code, the
# same for every thread count); it cannot reorder the sums' additions, one per element,
# and without ``contract`` no product is fused into them: scikit-learn's arithmetic.
@njit(nogil=True, fastmath={"reassoc"}, cache=CACHE)
def _add_batch_rows(X, rows, sample_weight, labels, centers, sums, weight_in_clusters,
                    distances, first, last):
    """Add ``w_i x_i`` of the rows ``X[rows[i]]`` labelled ``first:last`` to their
    clusters' ``sums``, in order, and ``w_i`` to ``weight_in_clusters``; each such row's
    squared distance to its (old) center, from the differences in float64, into
    ``distances`` unless it is empty (see :func:`_minibatch_update`), in the same loop
    over the row (MNIST, k=10, one thread: a second loop cost 5% of a step)."""
    n_features = X.shape[1]
    measure = distances.shape[0] > 0
    for i in range(rows.shape[0]):
        label = labels[i]
        if label < first or label >= last:
            continue
        weight = np.float64(sample_weight[i])
        weight_in_clusters[label] += weight
        row = sums[label]
        x = X[rows[i]]
        if measure:
            center = centers[label]
            distance = 0.0
            for f in range(n_features):
                value = np.float64(x[f])
                row[f] += value * weight
                difference = value - np.float64(center[f])
                distance += difference * difference
            distances[i] = distance
        else:
            for f in range(n_features):
                row[f] += np.float64(x[f]) * weight


@njit(nogil=True, cache=CACHE)
def _finish_update(centers, weight_sums, sums, weight_in_clusters, tiny, centers_new,
                   weight_sums_new, first, last):
    """:func:`_minibatch_update`'s ``centers_new`` and ``weight_sums_new`` of clusters
    ``first:last`` from the batch's sums (the others' stay as they are)."""
    n_features = centers.shape[1]
    dtype = centers.dtype.type
    for j in range(first, last):
        if weight_in_clusters[j] > 0:
            weight_sums_new[j] = weight_sums[j] + dtype(weight_in_clusters[j])
            total = np.float64(weight_sums_new[j])
            if weight_sums_new[j] >= tiny:
                alpha = 1.0 / total
                for f in range(n_features):
                    centers_new[j, f] = dtype(sums[j, f] * alpha)
            else:
                for f in range(n_features):
                    centers_new[j, f] = dtype(sums[j, f] / total)


# _labelled_update_by_index labels and sums the batch SUMMED_ROWS at a time, which stay
# in L2 (64 MNIST rows: 200 KB of float32, 400 KB of float64; L2 here is 1 MiB a core)
# between their labelling and their sum; a whole chunk's 256 had partly left it. MNIST,
# 1,024 random rows, one thread, ms a step, 256 / 128 / 64 / 32 rows, medians of 60
# alternated: float32 k=10 0.83-0.94 / 0.73-0.81 / 0.71-0.80 / 0.76-0.84, k=30 1.23 /
# 1.19 / 1.14 / 1.22, k=100 2.79 / 2.78 / 2.71 / 2.90; float64 k=10 1.19 / 1.13 / 1.06
# / 1.10, k=100 4.38 / 4.36 / 4.33 / 4.66.
SUMMED_ROWS = 64


@njit(nogil=True, cache=CACHE)
def _labelled_update_by_index(
    X,  # IN (n_samples, n_features)
    rows,  # IN (n_rows,) int64: the batch's rows of X
    sample_weight,  # IN (n_rows,) X.dtype: the batch's
    centers,  # IN (n_clusters, n_features) X.dtype
    centers_squared_norms,  # IN (n_clusters,) X.dtype
    margin_coefficient,
    exact_labels,
    narrowed,  # as in _batch_labels_by_index
    weight_sums,  # IN (n_clusters,) X.dtype
    tiny,
    labels,  # OUT (n_rows,) int32
    distances,  # OUT (n_rows,) float64, or (0,)
):
    """:func:`_batch_labels_by_index` then :func:`_minibatch_update`, on one thread,
    SUMMED_ROWS of the batch at a time: each part's rows are added to the sums while
    they are still in cache from their labelling, instead of gathered from X a second
    time. The same labels (float64's near-ties still decided on scikit-learn's
    CHUNK_ROWS-row chunks), and the rows added in the same order, so the same bits.
    Returns ``(centers_new, weight_sums_new)``."""
    n_rows = rows.shape[0]
    minus_two_centers, _, _ = _minus_two_centers_and_norms(centers, False)
    max_center_norm = np.float64(centers_squared_norms.max()) + _SUBNORMAL_NORM
    n_narrow = centers.shape[0] if narrowed else 0
    narrow_centers = narrowed_centers(minus_two_centers[:n_narrow],
                                      centers_squared_norms[:n_narrow])
    sums, weight_in_clusters, centers_new, weight_sums_new = _update_arrays(centers,
                                                                            weight_sums)
    n_clusters = centers.shape[0]
    _start_update(centers, weight_sums, sums, 0, n_clusters)
    # float64's near-ties: the chunk's GEMM, once for all its parts.
    gemm_values = np.empty((CHUNK_ROWS, centers.shape[0]), dtype=X.dtype)
    gemm_ready = np.zeros(1, dtype=np.bool_)
    for start in range(0, n_rows, CHUNK_ROWS):
        end = min(start + CHUNK_ROWS, n_rows)
        chunk_rows = rows[start:end]
        gemm_ready[0] = False
        for first in range(0, end - start, SUMMED_ROWS):
            last = min(first + SUMMED_ROWS, end - start)
            _label_chunk_by_index(X, chunk_rows, first, last, centers, minus_two_centers,
                                  centers_squared_norms, margin_coefficient,
                                  max_center_norm, exact_labels, narrow_centers,
                                  labels[start:end], gemm_values[:end - start], gemm_ready)
            part_start, part_end = start + first, start + last
            _add_batch_rows(X, rows[part_start:part_end], sample_weight[part_start:part_end],
                            labels[part_start:part_end], centers, sums, weight_in_clusters,
                            distances[part_start:part_end], 0, n_clusters)
    _finish_update(centers, weight_sums, sums, weight_in_clusters, tiny, centers_new,
                   weight_sums_new, 0, n_clusters)
    return centers_new, weight_sums_new


@njit(nogil=True, cache=CACHE)
def _bucket_search(cdf, bucket_starts, uniform):
    """``cdf.searchsorted(uniform, side="right")``, each draw searched between the
    starts of its slice's neighbours (see ``BatchSampler.search``).

    In three passes: every draw's range, then a read of each range's ends and middle,
    then the searches. Each pass's reads are independent of one another, so their cache
    misses overlap (a step has just read a batch of rows, which evicts the table and the
    cdf from the nearer caches); one search after another waited for each miss in turn.
    1,024 draws after 4 MB of other reads, one thread, us: 70,000 samples 53 -> 45,
    1,000,000 95 -> 46, 10,000,000 125 -> 51."""
    n_buckets = bucket_starts.shape[0] - 1
    n_last = cdf.shape[0] - 1
    n_draws = uniform.shape[0]
    out = np.empty(n_draws, dtype=np.int64)
    upper = np.empty(n_draws, dtype=np.int64)
    for i in range(n_draws):
        bucket = np.int64(np.floor(uniform[i] * n_buckets))
        out[i] = bucket_starts[min(max(bucket - 1, 0), n_buckets)]
        upper[i] = bucket_starts[min(max(bucket + 2, 0), n_buckets)]
    touched = 0.0
    for i in range(n_draws):
        lo, hi = out[i], upper[i]
        touched += cdf[min(lo, n_last)] + cdf[min((lo + hi) // 2, n_last)] + cdf[min(hi, n_last)]
    for i in range(n_draws):
        u = uniform[i]
        lo, hi = out[i], upper[i]
        while lo < hi:
            mid = (lo + hi) // 2
            if cdf[min(mid, n_last)] > u:
                hi = mid
            else:
                lo = mid + 1
        out[i] = lo
    if touched != touched:  # never: cdf is finite; keeps the reads from being dropped
        out[:] = -1
    return out


def batch_search(cdf, bucket_starts, uniform):
    """Engine ``batch_search``."""
    return _bucket_search(cdf, bucket_starts, uniform)
