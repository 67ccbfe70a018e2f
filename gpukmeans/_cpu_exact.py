"""Which of two centers is nearer to a row, decided exactly: the Numba engine's last word
on a float32 near-tie.

The float64 distance ``sum_f (x_f - c_f)^2`` of float32 values rounds: its differences
can carry more than 53 bits (2^10 - 2^-20), their squares up to 106, and the sum of the
squares rounds at each addition. Two centers whose exact distances differ by less than
that rounding (or are equal: integer data, centers that are rows) can then come out in
the wrong order, or an exact tie go to the higher index. So where two float64 distances
are within their rounding bound of each other (:func:`rank_bounds`), the sign of
their difference is computed exactly instead, over the features where the two centers
differ: each difference as a sum of two float64 values (Knuth's TwoSum), each square as
a sum of float64 products each with its exact error (Dekker's TwoProduct; both shared
with the NumPy engine, :mod:`gpukmeans._cpu_error_free`), all added into a
floating-point expansion, a sum of non-overlapping float64 components held exactly
(Shewchuk, "Adaptive Precision Floating-Point Arithmetic and Fast Robust Geometric
Predicates", Discrete Comput. Geom. 18, 1997: Grow-Expansion with zero elimination).
The sign of an expansion is the sign of its largest component.

Exact for float32 rows and centers, whose values are multiples of 2^-149 below 2^128:
every product is a multiple of 2^-298, far above float64's underflow, and far below its
overflow.

Most exact ties are between rows and centers on a coarse grid (binary, one-hot or count
data, scaled or not, and centers that are rows), where float64 adds the squares without
rounding: :func:`float64_is_exact` proves that from the ranks' size and one pass over
the values, and the float64 ranks then decide. A tie it cannot certify costs an
expansion over the features where the centers differ only. (One-hot data x 0.1,
30,000 x 50, k=20, 4 iterations: 1.2 s a fit when the test bounded the ranks by
n_features times the largest squared difference and the expansion took every feature;
28 ms now, against 20 ms deciding the ties in float64 alone, inexactly.)

Every function here is compiled without fast-math: reassociation or a fused
multiply-add would change the error terms the algorithms rely on.
"""

import math

import numpy as np
from numba import njit

from . import _cpu_error_free
from ._cpu_runtime import CACHE

# A nonoverlapping expansion of nonzero float64 components has at most one component per
# bit position of float64's range (2^-1074 to 2^1023).
_MAX_COMPONENTS = 2100

_two_sum = njit(nogil=True, fastmath=False, cache=CACHE)(_cpu_error_free.two_sum)
_two_product = njit(nogil=True, fastmath=False, cache=CACHE)(_cpu_error_free.two_product)
certified_grid_exponent = njit(nogil=True, fastmath=False, cache=CACHE)(
    _cpu_error_free.certified_grid_exponent)
_rank_rounding_and_extent = njit(nogil=True, fastmath=False, cache=CACHE)(
    _cpu_error_free.rank_rounding_and_extent)
sum_rounding_coefficient = njit(nogil=True, fastmath=False, cache=CACHE)(
    _cpu_error_free.sum_rounding_coefficient)
_FLOAT64_EPS = _cpu_error_free.FLOAT64_EPS


@njit(nogil=True, fastmath=False, cache=CACHE)
def _grow(expansion, n_components, value):
    """Add ``value`` exactly to ``expansion[:n_components]`` (nonoverlapping, increasing
    magnitude, no zeros) in place; returns the new number of components (Shewchuk's
    Grow-Expansion with zero elimination). Components are written at or below the index
    being read, so no scratch is needed."""
    if value == 0.0:
        return n_components
    q = value
    n = 0
    for i in range(n_components):
        q, h = _two_sum(q, expansion[i])
        if h != 0.0:
            expansion[n] = h
            n += 1
    if q != 0.0:
        expansion[n] = q
        n += 1
    return n


@njit(nogil=True, fastmath=False, cache=CACHE)
def _grow_product(expansion, n_components, a, b):
    """Add ``a b`` exactly."""
    p, e = _two_product(a, b)
    n_components = _grow(expansion, n_components, e)
    return _grow(expansion, n_components, p)


@njit(nogil=True, fastmath=False, cache=CACHE)
def _grow_square_difference(expansion, n_components, x, c, sign):
    """Add ``sign (x - c)^2`` exactly (``sign`` +1 or -1)."""
    high, low = _two_sum(x, -c)
    n_components = _grow_product(expansion, n_components, sign * low, low)
    n_components = _grow_product(expansion, n_components, 2 * sign * high, low)
    return _grow_product(expansion, n_components, sign * high, high)


@njit(nogil=True, fastmath=False, cache=CACHE)
def exact_order(x, a, b, unit_centers):
    """The sign (-1, 0 or 1) of ``rank(a) - rank(b)`` for the row ``x``, computed exactly:
    ``rank(c) = ||x - c||^2``, or ``-x.c`` for ``unit_centers`` (cosine fits: see
    :func:`gpukmeans._cpu_nearest._exact_rank`). -1: ``a`` is nearer. Only the features
    where ``a`` and ``b`` differ add to the difference (and, for dot products, where
    ``x`` is not 0): of two one-hot centers, two features; of duplicated centers, none
    (an exact tie in one pass)."""
    n_features = x.shape[0]
    expansion = np.empty(min(12 * n_features + 1, _MAX_COMPONENTS))
    n = 0
    for f in range(n_features):
        if a[f] == b[f] or (unit_centers and x[f] == 0):
            continue
        x_f = np.float64(x[f])
        if unit_centers:
            # rank(a) - rank(b) = x.b - x.a
            n = _grow_product(expansion, n, x_f, np.float64(b[f]))
            n = _grow_product(expansion, n, -x_f, np.float64(a[f]))
        else:
            n = _grow_square_difference(expansion, n, x_f, np.float64(a[f]), 1.0)
            n = _grow_square_difference(expansion, n, x_f, np.float64(b[f]), -1.0)
    if n == 0:
        return 0
    return 1 if expansion[n - 1] > 0 else -1


@njit(nogil=True, fastmath=False, cache=CACHE)
def rank_bounds(x, c, rank, unit_centers):
    """``(rounding, extent)`` of a float64 ``rank`` of ``c`` for ``x``
    (:func:`gpukmeans._cpu_nearest._exact_rank`, any order of summation), by
    :func:`gpukmeans._cpu_error_free.rank_rounding_and_extent`: ``||x - c||^2`` sums
    ``n_features`` non-negative terms, each a difference and a square rounded once, so
    it is off by less than ``(n_features + 2) u`` of itself (``u = eps / 2``); ``-x.c``
    sums exact products of both signs, off by less than ``n_features u`` of the sum of
    their magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 2002,
    section 3.1); ``rounding`` is four times those, ``extent`` the rank or the
    magnitudes plus it."""
    coefficient = sum_rounding_coefficient(x.shape[0], _FLOAT64_EPS)
    if not unit_centers:
        return _rank_rounding_and_extent(rank, coefficient)
    magnitudes = 0.0
    for f in range(x.shape[0]):
        magnitudes += abs(np.float64(x[f]) * np.float64(c[f]))
    return _rank_rounding_and_extent(magnitudes, coefficient)


@njit(nogil=True, fastmath=False, cache=CACHE)
def on_grid(values, q):
    """Whether every value (float32, or float64 of float32 values) is a multiple of
    ``2^-q``, for a ``q`` of :func:`certified_grid_exponent`: between about -114 and
    175 for float32 data, so that the scaling by ``2^q`` neither overflows nor
    underflows and is exact. Without an early exit, so that it vectorises: one-hot rows
    tie with most centers, and the test runs over all of them."""
    scale = math.ldexp(1.0, q)
    off_grid = 0
    for f in range(values.shape[0]):
        scaled = np.float64(values[f]) * scale
        off_grid += scaled != math.floor(scaled)
    return off_grid == 0


@njit(nogil=True, fastmath=False, cache=CACHE)
def float64_is_exact(x, a, b, extent):
    """Whether the float64 ranks of ``a`` and ``b`` for ``x`` (:func:`exact_order`'s) were
    computed without rounding, in any order of summation, ``extent`` bounding the terms
    and partial sums of both (:func:`rank_bounds`): true where ``x``, ``a`` and ``b`` lie
    on the grid of :func:`gpukmeans._cpu_error_free.certified_grid_exponent`. A
    sufficient test, not a necessary one."""
    if extent == 0.0:
        return True
    q = certified_grid_exponent(extent)
    return on_grid(x, q) and on_grid(a, q) and on_grid(b, q)
