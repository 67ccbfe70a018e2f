"""Which of two centers is nearer to a row, decided exactly: the Numba engine's last word
on a float32 near-tie.

The float64 distance ``sum_f (x_f - c_f)^2`` of float32 values rounds: its differences
can carry more than 53 bits (2^10 - 2^-20), their squares up to 106, and the sum of the
squares rounds at each addition. Two centers whose exact distances differ by less than
that rounding (or are equal: integer data, centers that are rows) can then come out in
the wrong order, or an exact tie go to the higher index. So where two float64 distances
are within their rounding bound of each other (:func:`rank_rounding`), the sign of
their difference is computed exactly instead: each difference as a sum of two float64
values (Knuth's TwoSum), each square as a sum of float64 products each with its exact
error (Dekker's TwoProduct), all added into a floating-point expansion, a sum of
non-overlapping float64 components held exactly (Shewchuk, "Adaptive Precision
Floating-Point Arithmetic and Fast Robust Geometric Predicates", Discrete Comput. Geom.
18, 1997: Grow-Expansion with zero elimination). The sign of an expansion is the sign of
its largest component.

Exact for float32 rows and centers, whose values are multiples of 2^-149 below 2^128:
every product is a multiple of 2^-298, far above float64's underflow, and far below its
overflow. Such decisions are rare (the float64 test settles all but ties within about
``n_features`` ulps), so their cost does not matter; their correctness does.

Most exact ties are between rows and centers of integers (binary or count data, centers
that are rows), where float64 adds the squares without rounding: :func:`float64_is_exact`
proves that in one pass, and the float64 ranks then decide, at about a tenth of the
expansion's cost (binarised MNIST, k=20, the first iterations: 2-3x the fit's time
without it).

Every function here is compiled without fast-math: reassociation or a fused
multiply-add would change the error terms the algorithms rely on.
"""

import math

import numpy as np
from numba import njit

from ._cpu_runtime import CACHE

_SPLITTER = 134217729.0  # 2^27 + 1: Veltkamp's split of a float64 into two 26-bit halves

_FLOAT64_EPS = 2.0 ** -52

# A nonoverlapping expansion of nonzero float64 components has at most one component per
# bit position of float64's range (2^-1074 to 2^1023).
_MAX_COMPONENTS = 2100


@njit(nogil=True, fastmath=False, cache=CACHE)
def _two_sum(a, b):
    """``(s, e)``: ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth)."""
    s = a + b
    b_virtual = s - a
    a_virtual = s - b_virtual
    return s, (a - a_virtual) + (b - b_virtual)


@njit(nogil=True, fastmath=False, cache=CACHE)
def _split(a):
    """``(high, low)``, ``a = high + low`` exactly, each of at most 26 bits (Veltkamp)."""
    c = _SPLITTER * a
    high = c - (c - a)
    return high, a - high


@njit(nogil=True, fastmath=False, cache=CACHE)
def _two_product(a, b):
    """``(p, e)``: ``p = fl(a b)`` and ``a b = p + e`` exactly (Dekker), without a fused
    multiply-add."""
    p = a * b
    a_high, a_low = _split(a)
    b_high, b_low = _split(b)
    e = ((a_high * b_high - p) + a_high * b_low + a_low * b_high) + a_low * b_low
    return p, e


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
    :func:`gpukmeans._cpu_nearest._exact_rank`). -1: ``a`` is nearer."""
    n_features = x.shape[0]
    expansion = np.empty(min(12 * n_features + 1, _MAX_COMPONENTS))
    n = 0
    for f in range(n_features):
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
def rank_rounding(x, c, rank, unit_centers):
    """How far a float64 ``rank`` of ``c`` for ``x`` (:func:`gpukmeans._cpu_nearest._exact_rank`,
    any order of summation) may be from the exact value, bounded generously: ``||x - c||^2``
    sums ``n_features`` non-negative terms, each a difference and a square rounded once,
    so it is off by less than ``(n_features + 2) u`` of itself (``u = eps / 2``); ``-x.c``
    sums exact products of both signs, off by less than ``n_features u`` of the sum of
    their magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 2002,
    section 3.1). Four times those: float64's
    :func:`gpukmeans._cpu_small.bound_margin_coefficient`, as the NumPy engine takes it."""
    n_features = x.shape[0]
    coefficient = 2.0 * (n_features + 2) * _FLOAT64_EPS
    if not unit_centers:
        return coefficient * rank
    magnitudes = 0.0
    for f in range(n_features):
        magnitudes += abs(np.float64(x[f]) * np.float64(c[f]))
    return coefficient * magnitudes


@njit(nogil=True, fastmath=False, cache=CACHE)
def float64_is_exact(x, a, b, unit_centers):
    """Whether the float64 ranks of ``a`` and ``b`` for ``x`` (:func:`exact_order`'s) were
    computed without rounding, in any order of summation: true where some power of two
    ``2^q`` makes every value an integer and ``n_features M^2 2^(2q) < 2^53``, ``M`` the
    largest difference ``|x_f - c_f|`` (the largest ``|x_f|``, ``|c_f|`` for
    ``unit_centers``), for then every difference, square, product and partial sum is an
    integer times ``2^(-2q)`` below ``2^53`` of them. A sufficient test, not a necessary one."""
    n_features = x.shape[0]
    largest = 0.0
    for f in range(n_features):
        x_f = np.float64(x[f])
        a_f, b_f = np.float64(a[f]), np.float64(b[f])
        if unit_centers:
            largest = max(largest, abs(x_f), abs(a_f), abs(b_f))
        else:
            largest = max(largest, abs(x_f - a_f), abs(x_f - b_f))
    if largest == 0.0:
        return True
    # 2^(2q) n_features M^2 <= 2^51: q = floor((51 - log2(n_features) - 2 log2(M)) / 2)
    _, largest_exponent = math.frexp(largest)  # M < 2^largest_exponent
    _, features_exponent = math.frexp(np.float64(n_features))
    q = (51 - features_exponent - 2 * largest_exponent) // 2
    for f in range(n_features):
        for value in (np.float64(x[f]), np.float64(a[f]), np.float64(b[f])):
            scaled = math.ldexp(value, q)
            if scaled != math.floor(scaled):
                return False
    return True
