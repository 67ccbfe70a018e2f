"""The CPU engine's plain Lloyd step: one E-step and the M-step's sums, chunk by chunk.

Layout follows scikit-learn's ``_k_means_lloyd.pyx``: rows are processed in chunks of
``chunk_rows`` samples; a chunk's dot products with the centers come from a BLAS GEMM
(single-threaded inside the parallel loop, see :func:`gpukmeans._cpu_runtime.cpu_runtime`),
a register-blocked kernel (:func:`gpukmeans._cpu_nearest._rows_dots_blocked`), a kernel by rows
or vectors of rows over the chunk transposed (``dots_kernel`` below), and the labels and
the center accumulation run while the chunk is still in cache.

Determinism: ``prange`` runs over *groups* of consecutive chunks whose number depends
only on the data's shape, never on the thread count. Each group accumulates into its own
float64 partial buffer in sample order, and the partials are added in group order after
the loop. So the same input gives bitwise the same output with 1 thread or 64.

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit, prange

from ._cpu_nearest import (
    _chunk_distances, _chunk_nearest_by_gemm, _chunk_nearest_by_rows,
    _gemm_scratch_size, _label_of_values, _labels_of_nearest_two, _minus_two_centers_and_norms,
    _rows_nearest_blocked, _sklearn_values, _squared_norm_f64,
)
from ._cpu_narrowed import BY_BLOCKS as NARROW_BY_BLOCKS
from ._cpu_narrowed import BY_GEMM_FOLDED as NARROW_BY_GEMM_FOLDED
from ._cpu_narrowed import BY_PANEL as NARROW_BY_PANEL
from ._cpu_narrowed import narrowed_centers, narrowed_margin, rows_nearest_narrowed
from ._cpu_panel import panel_chunk_nearest, panel_scratch_size
from ._cpu_runtime import CACHE, always_parallel, prange_only, rows_times, threaded
from ._cpu_small import SUBNORMAL_NORM as _SUBNORMAL_NORM
from ._cpu_small import group_bounds


# How the plain step finds each row's nearest center (``dots_kernel``):
GEMM = 0  # one BLAS GEMM per chunk: many features and clusters; float64's labels are
#           scikit-learn's GEMM's bit for bit.
BLOCKED = 1  # _rows_nearest_blocked, vectorised over features: float32, many features.
BY_ROWS = 2  # _chunk_nearest_by_rows, vectorised over the rows: few features.
BY_GEMM = 3  # _chunk_nearest_by_gemm: a GEMM per tile of centers, folded by rows.
BY_PANEL = 4  # _cpu_panel.panel_chunk_nearest: multiply-adds over the chunk transposed, sums
#               and fold in vector registers.
NARROWED = 5  # _cpu_narrowed.rows_nearest_narrowed: float64 rows by float32 products,
#               the GEMM folded by rows,
NARROWED_BLOCKED = 6  # or the blocked kernel (few clusters, many features),
NARROWED_PANEL = 7  # or the panel (few features).


_group_bounds = njit(nogil=True, cache=CACHE)(group_bounds)


# Partials of at most this many float64 values are added by one thread: a parallel
# region's launch (about 0.1 ms here) costs more than the additions (16 groups x 32 x 33
# values, 10,000 x 32 at k=32: 76 us per step in parallel, 20 us serially).
REDUCE_SERIAL_MAX_VALUES = 2**17


def _reduce_work(sums_part, weights_part):
    """:func:`_reduce_partials`'s ``work``: serial up to REDUCE_SERIAL_MAX_VALUES values."""
    return always_parallel() if sums_part.size > REDUCE_SERIAL_MAX_VALUES else 0


@threaded(_reduce_work)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _reduce_partials(sums_part, weights_part):
    """Add the groups' float64 partial sums in group order, clusters in parallel where
    they are many. Each output element is ``((p_0 + p_1) + p_2) + ...`` either way."""
    n_groups, n_clusters, n_features = sums_part.shape
    sums = np.empty((n_clusters, n_features), dtype=np.float64)
    weight_in_clusters = np.empty(n_clusters, dtype=np.float64)
    # Element by element: an array added to a row (``sums[j] += sums_part[g, j]``)
    # makes Numba compile its shape-mismatch message (string formatting, about 2 s).
    for j in prange(n_clusters):
        for f in range(n_features):
            sums[j, f] = sums_part[0, j, f]
        weight_in_clusters[j] = weights_part[0, j]
        for group in range(1, n_groups):
            for f in range(n_features):
                sums[j, f] += sums_part[group, j, f]
            weight_in_clusters[j] += weights_part[group, j]
    return sums, weight_in_clusters


@njit(nogil=True, fastmath={"contract"}, cache=CACHE)
def _accumulate_chunk(
    X,  # IN (n_samples, n_features)
    sample_weight,  # IN (n_samples,)
    labels,  # IN (n_samples,)
    chunk_start,
    chunk_end,
    center_acc,  # INOUT (n_clusters, n_features) float64
    weights,  # INOUT (n_clusters,) float64
    touched,  # INOUT (n_clusters,) bool: rows of center_acc not yet folded
):
    """Add ``w_i x_i`` of a chunk's samples to their cluster's row, in float64.

    float32 too: its products are exact in float64, so each sum is rounded once per
    addition, in float64, as on the NumPy engine and the GPU (bit for bit the NumPy
    engine's). Summed in float32 between folds (as until stop 25, for full-width SIMD),
    a cluster of 10,000 identical float32 rows averaged 1.6e-5 away from that row, and
    float32 MNIST iterations were no faster: the rows are read from L2 after the E-step.
    ``contract`` allows fused multiply-adds here only: the order of the additions is
    unchanged.
    """
    n_features = X.shape[1]
    for sample in range(chunk_start, chunk_end):
        label = labels[sample]
        weight = np.float64(sample_weight[sample])
        weights[label] += weight
        touched[label] = True
        center_row = center_acc[label]
        x = X[sample]
        for f in range(n_features):
            center_row[f] += weight * np.float64(x[f])


@njit(nogil=True, cache=CACHE)
def _fold_centers(center_acc, touched, sums):
    """``sums += center_acc`` (float64) for the touched rows, which are then cleared."""
    n_clusters, n_features = center_acc.shape
    for j in range(n_clusters):
        if touched[j]:
            for f in range(n_features):
                sums[j, f] += center_acc[j, f]
                center_acc[j, f] = 0
            touched[j] = False


@njit(nogil=True, cache=CACHE)
def _accumulate_and_fold(X, sample_weight, labels, chunk_start, chunk_end, group_end,
                         fold_rows, rows_since_fold, center_acc, weights, touched, sums):
    """One chunk of a group's M-step: :func:`_accumulate_chunk`, then
    :func:`_fold_centers` once ``fold_rows`` rows have been summed or the group ends.
    Returns the rows summed since the last fold. The plain step and Yinyang's M-step
    (:func:`_accumulate_partials`) both sum through here, which keeps their sums the
    same bit for bit."""
    _accumulate_chunk(X, sample_weight, labels, chunk_start, chunk_end, center_acc, weights,
                      touched)
    rows_since_fold += chunk_end - chunk_start
    if rows_since_fold >= fold_rows or chunk_end == group_end:
        _fold_centers(center_acc, touched, sums)
        rows_since_fold = 0
    return rows_since_fold


_NO_DISTANCES = np.empty(0)


def _lloyd_chunked(
    X, sample_weight, centers_old, centers_squared_norms, labels, x_squared_norms, chunk_rows,
    fold_rows, n_groups, update_centers, dots_kernel, margin_coefficient, exact_labels,
    unit_centers=False, distances=_NO_DISTANCES,
):
    """One E-step, and the M-step sums when ``update_centers``: :func:`_lloyd_partials`
    on fresh partials, then added up in group order. ``distances``: see there.

    Returns ``(sums, weight_in_clusters)`` in float64; both are all zero when
    ``update_centers`` is False.
    """
    n_clusters, n_features = centers_old.shape
    n_part = n_groups if update_centers else 1
    # Zeroed by each group's own thread, in parallel (zero_partials).
    sums_part = np.empty((n_part, n_clusters, n_features), dtype=np.float64)
    weights_part = np.empty((n_part, n_clusters), dtype=np.float64)
    _lloyd_partials(
        X, sample_weight, centers_old, centers_squared_norms, labels, x_squared_norms,
        chunk_rows, fold_rows, n_groups, update_centers, dots_kernel, margin_coefficient,
        exact_labels, unit_centers, sums_part, weights_part, True, distances,
    )
    if not update_centers:
        return np.zeros((n_clusters, n_features)), np.zeros(n_clusters)
    return _reduce_partials(sums_part, weights_part)


def _lloyd_partials(
    X, sample_weight, centers_old, centers_squared_norms, labels, x_squared_norms, chunk_rows,
    fold_rows, n_groups, update_centers, dots_kernel, margin_coefficient, exact_labels,
    unit_centers, sums_part, weights_part, zero_partials, distances,
):
    """The plain step's kernel for ``dots_kernel`` (:data:`LLOYD_PARTIALS`), called with
    the other arguments (see :func:`_make_lloyd_partials`)."""
    LLOYD_PARTIALS[dots_kernel](
        X, sample_weight, centers_old, centers_squared_norms, labels, x_squared_norms,
        chunk_rows, fold_rows, n_groups, update_centers, margin_coefficient, exact_labels,
        unit_centers, sums_part, weights_part, zero_partials, distances)


def _make_lloyd_partials(dots_kernel):
    """The plain step's kernel with ``dots_kernel`` fixed: a constant of the compiled
    code, whose branches for the other kernels Numba drops before compiling them.

    One kernel with every ``dots_kernel`` made every fit compile every way of taking the
    dot products, twice (the serial twin and the parallel kernel): a compiled kernel
    carries the code of all it calls, compiled again in it. The first float64 fit on
    20,000 MNIST images, an empty cache, two threads: 55 of its 79 s of compiles in this
    one kernel.
    """
    def _lloyd_partials(
        X,  # IN (n_samples, n_features)
        sample_weight,  # IN (n_samples,)
        centers_old,  # IN (n_clusters, n_features)
        centers_squared_norms,  # IN (n_clusters,) X.dtype, from _centers_squared_norms (ones
        #                         for unit_centers)
        labels,  # OUT (n_samples,) int32
        x_squared_norms,  # IN (n_samples,) float64 ||x||^2, or (0,): computed where needed
        chunk_rows,
        fold_rows,
        n_groups,
        update_centers,
        margin_coefficient,
        exact_labels,
        unit_centers,  # compare by dot products (cosine fits): see _exact_rank
        sums_part,  # INOUT (n_groups, n_clusters, n_features) float64 (unused unless
        #             update_centers)
        weights_part,  # INOUT (n_groups, n_clusters) float64
        zero_partials,
        distances,  # OUT (n_samples,) float64, or (0,): not computed
    ):
        """One E-step, and each group's M-step sums added to its partials when
        ``update_centers``; the partials are first zeroed when ``zero_partials``. With a
        ``distances`` of n_samples, also each sample's ``||x - c||^2`` to its new center, as
        the engine's ``assigned_distances`` computes it, while the chunk is in cache (the
        final E-step and the inertia in one pass over X).

        A group's partial continues where it left off: a streamed fit
        (:mod:`gpukmeans._streaming`) runs each group's rows a block at a time, each block
        ending where the group's partial sums fold, and so adds up what one call over the
        whole array would, bit for bit.

        ``dots_kernel`` (GEMM, BLOCKED, BY_ROWS, BY_GEMM, BY_PANEL, NARROWED,
        NARROWED_BLOCKED or NARROWED_PANEL, a constant of the closure) says how ``x . c``
        is computed; ``margin_coefficient`` bounds its rounding
        (:func:`bound_margin_coefficient`), which grows with ``||x||^2``: a run passes the
        norms it has (``x_squared_norms``; a tenth of a step at d=32 to compute again), a
        single E-step computes each row's as it needs it.
        ``exact_labels`` (float32) has near-ties decided exactly
        (:func:`_labels_of_nearest_two`, or :func:`_label_of_values` after the GEMM kernel),
        so each label is the exactly nearest center. float64 keeps scikit-learn's argmin of
        its GEMM's values: with GEMM directly, with the other kernels wherever the values'
        gap is wider than both computations' rounding (then both argmins agree), and from
        the chunk's GEMM for a row whose gap is not.
        """
        n_samples, n_features = X.shape
        n_clusters = centers_old.shape[0]
        n_chunks = (n_samples + chunk_rows - 1) // chunk_rows

        have_norms = x_squared_norms.shape[0] == n_samples
        with_distances = distances.shape[0] == n_samples
        minus_two_centers, _, _ = _minus_two_centers_and_norms(centers_old, unit_centers)
        max_center_norm = np.float64(centers_squared_norms.max()) + _SUBNORMAL_NORM
        narrowed = (dots_kernel == NARROWED or dots_kernel == NARROWED_BLOCKED
                    or dots_kernel == NARROWED_PANEL)
        float32_kernel = (NARROW_BY_BLOCKS if dots_kernel == NARROWED_BLOCKED
                          else NARROW_BY_PANEL if dots_kernel == NARROWED_PANEL
                          else NARROW_BY_GEMM_FOLDED)
        n_narrow = n_clusters if narrowed else 0
        minus_two_narrow, norms_narrow, centers_in_range = narrowed_centers(
            minus_two_centers[:n_narrow], centers_squared_norms[:n_narrow])
        margin_narrow = narrowed_margin(n_features)
        # float32's GEMM (float64's is scikit-learn's own call, _sklearn_values): a
        # transposed view, not a copy, X times the centers transposed as scikit-learn
        # multiplies them.
        minus_two_centers_t = minus_two_centers.T

        for group in prange(n_groups):
            start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
            if update_centers and zero_partials:
                sums_part[group] = 0.0
                weights_part[group] = 0.0
            n_acc = n_clusters if update_centers else 0
            center_acc = np.zeros((n_acc, n_features), dtype=np.float64)
            touched = np.zeros(n_acc, dtype=np.bool_)
            rows_since_fold = 0
            # The GEMM kernel's (chunk, n_clusters) values.
            n_dots = chunk_rows if dots_kernel == GEMM else 0
            dots_buffer = np.empty((n_dots, n_clusters), dtype=X.dtype)
            values_buffer = np.empty(n_clusters, dtype=X.dtype)
            rows = np.empty(chunk_rows, dtype=np.int64)
            n_scratch = 0
            if dots_kernel == BY_ROWS:
                n_scratch = (n_features + 1) * chunk_rows
            elif dots_kernel == BY_GEMM:
                n_scratch = _gemm_scratch_size(X.itemsize, n_features, n_clusters, chunk_rows)
            elif dots_kernel == BLOCKED:
                n_scratch = n_clusters * chunk_rows
            elif dots_kernel == BY_PANEL:
                n_scratch = panel_scratch_size(X.itemsize, n_features, chunk_rows)
            scratch = np.empty(n_scratch, dtype=X.dtype)
            # NARROWED's float32 chunk, scratch and values.
            n_rows_narrow = chunk_rows if narrowed else 0
            chunk_narrow = np.empty((n_rows_narrow, n_features), dtype=np.float32)
            scratch_narrow = np.empty(
                max(_gemm_scratch_size(4, n_features, n_clusters, chunk_rows),
                    n_clusters * chunk_rows, panel_scratch_size(4, n_features, chunk_rows))
                if n_rows_narrow else 0,
                dtype=np.float32)
            local_rows = np.empty(n_rows_narrow, dtype=np.int64)
            best_narrow = np.empty(n_rows_narrow, dtype=np.float32)
            second_narrow = np.empty(n_rows_narrow, dtype=np.float32)
            values_wide = np.empty(n_clusters if n_rows_narrow else 0, dtype=np.float64)
            n_by_rows = 0 if dots_kernel == GEMM else chunk_rows
            best = np.empty(n_by_rows, dtype=np.int32)
            best_value = np.empty(n_by_rows, dtype=X.dtype)
            second_value = np.empty(n_by_rows, dtype=X.dtype)
            near = np.empty(n_by_rows, dtype=np.bool_)
            norms_buffer = np.empty(0 if have_norms else n_by_rows, dtype=np.float64)
            # Each chunk is labelled whole: its near-ties' GEMM is not kept.
            no_gemm_values = np.empty((0, 0), dtype=X.dtype)
            gemm_ready = np.zeros(1, dtype=np.bool_)
            for chunk_start in range(start, end, chunk_rows):
                chunk_end = min(chunk_start + chunk_rows, end)
                dots = dots_buffer[: chunk_end - chunk_start]  # (chunk, n_clusters)
                if dots_kernel != GEMM:
                    n_rows = chunk_end - chunk_start
                    for i in range(n_rows):
                        rows[i] = chunk_start + i
                    if dots_kernel == BY_ROWS:
                        _chunk_nearest_by_rows(
                            X, chunk_start, chunk_end, minus_two_centers, centers_squared_norms,
                            scratch, best, best_value, second_value,
                        )
                    elif dots_kernel == BLOCKED:
                        # Without norms, the kernel takes each row's after its block's dots.
                        _rows_nearest_blocked(
                            X, rows, n_rows, minus_two_centers,
                            centers_squared_norms, scratch, best, best_value, second_value,
                            norms_buffer[:n_rows],
                        )
                    elif dots_kernel == BY_PANEL:
                        panel_chunk_nearest(
                            X, chunk_start, chunk_end, minus_two_centers, centers_squared_norms,
                            scratch, best, best_value, second_value,
                        )
                    elif narrowed:
                        if not have_norms:  # the margins need them first
                            for i in range(n_rows):
                                norms_buffer[i] = _squared_norm_f64(X[chunk_start + i])
                        rows_nearest_narrowed(
                            X, rows, n_rows, minus_two_centers, centers_squared_norms,
                            minus_two_narrow, norms_narrow, centers_in_range,
                            x_squared_norms[chunk_start:chunk_end] if have_norms
                            else norms_buffer[:n_rows],
                            margin_narrow, max_center_norm, chunk_narrow, scratch_narrow,
                            local_rows, best_narrow, second_narrow, near, values_wide,
                            float32_kernel, best, best_value, second_value)
                    else:
                        _chunk_nearest_by_gemm(
                            X, chunk_start, chunk_end, minus_two_centers, centers_squared_norms,
                            scratch, rows, best, best_value, second_value,
                        )
                    if have_norms:
                        row_norms = x_squared_norms[chunk_start:chunk_end]
                    else:
                        row_norms = norms_buffer[:n_rows]
                        if dots_kernel != BLOCKED and not narrowed:
                            for i in range(n_rows):
                                row_norms[i] = _squared_norm_f64(X[chunk_start + i])
                    _labels_of_nearest_two(
                        X, rows, n_rows, centers_old, centers_squared_norms, best, best_value,
                        second_value, row_norms, margin_coefficient, max_center_norm,
                        exact_labels, unit_centers, near, labels[chunk_start:chunk_end],
                        rows[:n_rows], 0, no_gemm_values, gemm_ready)
                else:
                    # float64's GEMM values are scikit-learn's, its norms already added.
                    norms_in_dots = not exact_labels
                    if norms_in_dots:
                        _sklearn_values(X[chunk_start:chunk_end], centers_old,
                                        centers_squared_norms, dots)
                    else:
                        np.dot(X[chunk_start:chunk_end], minus_two_centers_t, dots)
                    for i in range(chunk_end - chunk_start):
                        if norms_in_dots:
                            values = dots[i]
                        else:
                            values = values_buffer
                            for j in range(n_clusters):
                                values[j] = centers_squared_norms[j] + dots[i, j]
                        labels[chunk_start + i] = _label_of_values(
                            X[chunk_start + i],
                            x_squared_norms[chunk_start + i] if have_norms else -1.0,
                            centers_old, values, margin_coefficient, max_center_norm,
                            exact_labels, unit_centers)
                if with_distances:
                    _chunk_distances(X, centers_old, labels, chunk_start, chunk_end, distances)
                if update_centers:
                    rows_since_fold = _accumulate_and_fold(
                        X, sample_weight, labels, chunk_start, chunk_end, end, fold_rows,
                        rows_since_fold, center_acc, weights_part[group], touched,
                        sums_part[group])

    return _lloyd_partials


# The plain step's kernels, one per dots_kernel (see _make_lloyd_partials).
LLOYD_PARTIALS = {
    dots_kernel: threaded(rows_times(
        lambda X, sample_weight, centers, *args: X.shape[1] * centers.shape[0]))(
            njit(parallel=prange_only(), nogil=True, cache=CACHE)(
                _make_lloyd_partials(dots_kernel)))
    for dots_kernel in (GEMM, BLOCKED, BY_ROWS, BY_GEMM, BY_PANEL, NARROWED, NARROWED_BLOCKED,
                        NARROWED_PANEL)
}


@threaded(rows_times(lambda X, *args: X.shape[1]))
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _accumulate_partials(
    X,  # IN (n_samples, n_features)
    sample_weight,  # IN (n_samples,)
    labels,  # IN (n_samples,) int32
    chunk_rows,
    fold_rows,
    n_groups,
    sums_part,  # OUT (n_groups, n_clusters, n_features) float64
    weights_part,  # OUT (n_groups, n_clusters) float64
):
    """The plain step's M-step alone, for labels found otherwise (Yinyang's E-step,
    :mod:`gpukmeans._cpu_yinyang`): each group's partials added over the same chunks
    and folded at the same rows as :func:`_lloyd_partials` adds them, so, reduced by
    :func:`_reduce_partials`, they are its sums bit for bit."""
    n_samples, n_features = X.shape
    n_clusters = sums_part.shape[1]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        sums_part[group] = 0.0
        weights_part[group] = 0.0
        center_acc = np.zeros((n_clusters, n_features), dtype=np.float64)
        touched = np.zeros(n_clusters, dtype=np.bool_)
        rows_since_fold = 0
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            rows_since_fold = _accumulate_and_fold(
                X, sample_weight, labels, chunk_start, chunk_end, end, fold_rows,
                rows_since_fold, center_acc, weights_part[group], touched, sums_part[group])

