"""float64 labels from float32 products: scikit-learn's labels at float32's rate.

A float64 label is scikit-learn's argmin of its GEMM's values ``||c||^2 - 2 x.c``, bit
for bit. The values need not be computed in float64 to know that argmin wherever the
nearest two are far apart. :func:`rows_nearest_narrowed` (the plain step's
``NARROWED`` kernels, :mod:`gpukmeans._cpu_lloyd`, and the mini-batch step's labels by
index, :mod:`gpukmeans._cpu_minibatch`) rounds each chunk of float64 rows to float32
while it is in cache and takes the values from float32 products, by the kernel float32
data of the shapes would take (the GEMM folded by rows, the blocked kernel or the panel's
sums in registers, with the centers rounded to float32), at twice float64's rate and on
half the bytes. Each value is then off from the exact ``||c||^2 - 2 x.c`` by at most
``m32``, float32's margin (:func:`gpukmeans._cpu_small.bound_margin_coefficient`:
``n_features + 2`` roundings of ``||x||^2 + max ||c||^2``, twice over; rounding the row,
the centers and the norms to float32 adds at most three more, so the products'
``n_features`` and these stay within it), and scikit-learn's by at most the float64
margin ``m64 <= m32``. So where a row's nearest two float32 values are more than
``4 m32`` apart, no other center's scikit-learn value comes within its rounding of the
nearest one's: the float32 argmin is scikit-learn's. The rest (0.1-1 % of the rows of
blobs or MNIST) have their values computed again in float64 and go on as the other
float64 kernels' rows do: labelled by those values, and those within four float64
margins by scikit-learn's GEMM on their chunk
(:func:`gpukmeans._cpu_nearest._labels_of_nearest_two`).

Below float32's smallest normal number rounding is absolute, not relative: a feature of
a row or a center rounded to a subnormal is off by up to 2^-150, which moves a value by
at most ``2^-149 n_features a`` (``a`` the larger of ``||x||`` and ``||c||``), less than
the margin's ``(n_features + 2) 2^-22 (a^2 + 2^-125)`` at any ``a`` (the last term is
:data:`gpukmeans._cpu_small.SUBNORMAL_NORM`, there for float32 data's products). Above
:data:`NARROWED_MAX_MAGNITUDE` float32 could overflow: a chunk with a row norm beyond
its square (``|x| <= ||x||``), or centers beyond it, have every value computed in
float64.

The M-step sums the float64 rows of the same chunk, still in cache, as every plain step
does: sums, inertia and labels are the other kernels' bit for bit, and the float32 chunk
(``chunk_rows x n_features``) is all the memory it adds.

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit

from ._cpu_exact import sum_rounding_coefficient
from ._cpu_nearest import (
    _chunk_nearest_by_gemm, _dot1, _flag_near_ties, _nearest_two, _rows_nearest_blocked,
)
from ._cpu_panel import panel_chunk_nearest
from ._cpu_runtime import CACHE

# How rows_nearest_narrowed takes its float32 values: as float32 data of the shapes would
# (gpukmeans._cpu._dots_kernel), but by blocks beyond 1,024 features where float32 data
# take the GEMM (_cpu.BLOCKED_WIDE_FEATURES).
BY_GEMM_FOLDED = 0  # the GEMM folded by rows (_cpu_nearest._chunk_nearest_by_gemm)
BY_BLOCKS = 1  # the blocked kernel (_cpu_nearest._rows_nearest_blocked)
BY_PANEL = 2  # the chunk transposed, sums in registers (_cpu_panel.panel_chunk_nearest)

NARROWED_MAX_MAGNITUDE = 2.0**40
"""Data or centers with a larger ``|x|`` take the float64 kernels: up to it, float32 holds
every squared norm and dot product of up to 2^45 features."""


_FLOAT32_EPS = float(np.finfo(np.float32).eps)


@njit(nogil=True, cache=CACHE)
def narrowed_margin(n_features):
    """float32's :func:`gpukmeans._cpu_small.bound_margin_coefficient`, compiled."""
    return sum_rounding_coefficient(n_features, _FLOAT32_EPS)


@njit(nogil=True, cache=CACHE)
def narrowed_centers(minus_two_centers, centers_squared_norms):
    """``-2 c`` and ``||c||^2`` rounded to float32 (``-2 c`` is ``-2`` times the centers
    rounded, except in float32's subnormal range, where rounding ``-2 c`` errs less),
    and whether every ``|c|`` is within :data:`NARROWED_MAX_MAGNITUDE`."""
    n_clusters, n_features = minus_two_centers.shape
    minus_two_narrow = np.empty((n_clusters, n_features), dtype=np.float32)
    norms_narrow = np.empty(n_clusters, dtype=np.float32)
    largest = 0.0
    for j in range(n_clusters):
        norms_narrow[j] = np.float32(centers_squared_norms[j])
        for f in range(n_features):
            minus_two_narrow[j, f] = np.float32(minus_two_centers[j, f])
            largest = max(largest, abs(minus_two_centers[j, f]))
    return minus_two_narrow, norms_narrow, largest <= 2 * NARROWED_MAX_MAGNITUDE


@njit(nogil=True, cache=CACHE)
def rows_nearest_narrowed(
    X,  # IN (n_samples, n_features) float64
    rows,  # IN (>= n_rows,) int64: the rows of X
    n_rows,
    minus_two_centers,  # IN (n_clusters, n_features) float64: -2 c
    centers_squared_norms,  # IN (n_clusters,) float64, scikit-learn's
    minus_two_narrow,  # IN (n_clusters, n_features) float32: narrowed_centers
    norms_narrow,  # IN (n_clusters,) float32
    centers_in_range,  # narrowed_centers's: else every value in float64
    row_norms,  # IN (n_rows,) float64 ||x||^2 of the rows
    margin_narrow,  # float32's bound_margin_coefficient
    max_center_norm,  # float64 largest ||c||^2, padded for subnormals
    rows_narrow,  # SCRATCH (>= n_rows, n_features) float32
    scratch,  # SCRATCH (>= max(_gemm_scratch_size(4, ...), n_clusters * n_rows,
    #           panel_scratch_size(4, ...)),) float32
    local_rows,  # SCRATCH (>= n_rows,) int64
    best_narrow,  # SCRATCH (>= n_rows,) float32
    second_narrow,  # SCRATCH (>= n_rows,) float32
    near,  # SCRATCH (>= n_rows,) bool
    values,  # SCRATCH (n_clusters,) float64
    float32_kernel,  # BY_GEMM_FOLDED, BY_BLOCKS or BY_PANEL: how the float32 values come
    best,  # OUT (>= n_rows,) int32
    best_value,  # OUT (>= n_rows,) float64
    second_value,  # OUT (>= n_rows,) float64
):
    """Each row's nearest center and two values for
    :func:`gpukmeans._cpu_nearest._labels_of_nearest_two` (float64's rules): where the
    float32 values settle the label (see the module), that center with a gap no margin
    reaches (0 and inf); else the float64 values' nearest two. The float32 values come
    from the GEMM folded by rows, the register-blocked kernel or the panel
    (``float32_kernel``), as float32 data of the shapes would take them. Rows or centers
    beyond :data:`NARROWED_MAX_MAGNITUDE` have all their values in float64."""
    n_clusters, n_features = minus_two_centers.shape
    # |x| <= ||x||: the norms bound every feature, at no pass of their own.
    largest_norm = 0.0
    for i in range(n_rows):
        largest_norm = max(largest_norm, row_norms[i])
        x = X[rows[i]]
        for f in range(n_features):
            rows_narrow[i, f] = np.float32(x[f])
    if centers_in_range and largest_norm <= NARROWED_MAX_MAGNITUDE**2:
        if float32_kernel == BY_BLOCKS:
            for i in range(n_rows):
                local_rows[i] = i
            _rows_nearest_blocked(rows_narrow, local_rows, n_rows, minus_two_narrow,
                                  norms_narrow, scratch, best, best_narrow, second_narrow,
                                  np.empty(0, dtype=np.float64))
        elif float32_kernel == BY_PANEL:
            panel_chunk_nearest(rows_narrow, 0, n_rows, minus_two_narrow, norms_narrow, scratch,
                                best, best_narrow, second_narrow)
        else:
            _chunk_nearest_by_gemm(rows_narrow, 0, n_rows, minus_two_narrow, norms_narrow,
                                   scratch, local_rows, best, best_narrow, second_narrow)
        _flag_near_ties(best_narrow, second_narrow, row_norms, n_rows, margin_narrow,
                        max_center_norm, 4.0, near)
    else:
        near[:n_rows] = True
    for i in range(n_rows):
        if near[i]:
            x = X[rows[i]]
            for j in range(n_clusters):
                values[j] = centers_squared_norms[j] + _dot1(x, minus_two_centers[j])
            best[i], best_value[i], second_value[i] = _nearest_two(values)
        else:
            best_value[i] = 0.0
            second_value[i] = np.inf
