"""Error-free float64 arithmetic and the float64-is-exact certificate, written once for
both CPU engines: the NumPy engine (:mod:`gpukmeans._cpu_small`) calls these functions on
arrays, the Numba engine (:mod:`gpukmeans._cpu_exact`) compiles them for scalars, so the
two decide a float32 near-tie by the same rule.

Nothing here may import Numba: the NumPy engine runs without compiling anything. The
callers keep the arithmetic free of fused multiply-adds and reassociation (NumPy's
ufuncs round each operation; the Numba engine compiles these without fast-math), on
which the error terms rely.
"""

import math

_SPLITTER = 134217729.0  # 2^27 + 1: Veltkamp's split of a float64 into two 26-bit halves

FLOAT64_EPS = 2.0 ** -52


def two_sum(a, b):
    """``(s, e)``: ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth, The Art of
    Computer Programming 2, 4.2.2)."""
    s = a + b
    b_virtual = s - a
    a_virtual = s - b_virtual
    return s, (a - a_virtual) + (b - b_virtual)


def two_product(a, b):
    """``(p, e)``: ``p = fl(a b)`` and ``a b = p + e`` exactly (Dekker, "A floating-point
    technique for extending the available precision", Numer. Math. 18, 1971), without a
    fused multiply-add: each factor split into two halves of at most 26 bits (Veltkamp),
    whose products are exact. Exact where ``a b`` neither overflows nor underflows: for
    products of float32 values, always. (The split is written out twice: a function
    called from here would be a global the Numba engine cannot compile.)"""
    p = a * b
    a_split = _SPLITTER * a
    a_high = a_split - (a_split - a)
    a_low = a - a_high
    b_split = _SPLITTER * b
    b_high = b_split - (b_split - b)
    b_low = b - b_high
    e = ((a_high * b_high - p) + a_high * b_low + a_low * b_high) + a_low * b_low
    return p, e


def sum_rounding_coefficient(n_features, eps):
    """The relative rounding bound of every sum of ``n_features + 2`` terms that k-means
    compares (``||c||^2 - 2 x.c``, and the float64 ranks ``||x - c||^2`` and ``-x.c``)
    computed in a type of machine epsilon ``eps``, against the sum of the terms'
    magnitudes: twice the worst case of a recursive sum, ``4 (n_features + 2) u``
    (``u = eps / 2``), so that it holds in whatever order the sum was vectorised, fused
    multiply-adds included. The one formula of the bounds' margin
    (:func:`gpukmeans._cpu_small.bound_margin_coefficient`), the narrowed kernels'
    (:func:`gpukmeans._cpu_narrowed.narrowed_margin`) and the ranks' rounding
    (:func:`rank_rounding_and_extent`)."""
    return 2.0 * (n_features + 2) * eps


def rank_rounding_and_extent(magnitudes, rounding_coefficient):
    """``(rounding, extent)`` of a float64 rank (``||x - c||^2``, or ``-x.c``) summed in
    any order from ``n_features`` terms whose magnitudes sum to ``magnitudes`` (computed
    in float64: the rank itself for a distance): ``rounding`` bounds how far the rank
    may be from the exact value, ``rounding_coefficient``
    (``sum_rounding_coefficient(n_features, FLOAT64_EPS)``: a parameter, since a
    function called from here would be a global the Numba engine cannot compile) times
    ``magnitudes``, and ``extent`` every term and partial sum of the exact rank, for
    :func:`certified_grid_exponent`."""
    rounding = rounding_coefficient * magnitudes
    return rounding, magnitudes + rounding


def certified_grid_exponent(extent, significand_bits=53, smallest_exponent=-1074):
    """The finest grid ``2^-q`` on which sums of products are exact up to ``extent`` in
    a floating-point type of ``significand_bits`` whose smallest subnormal is
    ``2^smallest_exponent`` (float64: 53 and -1074, float32: 24 and -149): where every
    value is a multiple of ``2^-q``, each product and each partial sum of magnitude at
    most ``extent`` is a multiple of ``2^-2q`` with at most ``2^(significand_bits - 1)``
    steps (half the type's integers, to spare the rounding of the bound itself), which
    the type holds exactly, ``2^-2q`` not below its smallest subnormal (finer products
    would underflow: one-hot rows of 2^-80 in float32). Returns ``q``, the largest with
    ``extent 2^(2q) <= 2^(significand_bits - 1)`` and ``2q <= -smallest_exponent``
    (``extent > 0``).

    The ranks that decide a near-tie are such sums: ``||x - c||^2`` of squared
    differences (each difference at most the square root of the sum, so exact on the
    grid too; every partial sum at most the whole), ``-x.c`` of products (every partial
    sum at most the sum of their magnitudes). With ``extent`` bounding those, a rank is
    exact, in any order of summation and with or without fused multiply-adds, wherever
    ``x`` and the centers lie on the grid: integer, binary and count data and centers
    that are rows, where exact ties are common, in one cheap test. A sufficient
    condition, not a necessary one."""
    _, extent_exponent = math.frexp(extent)  # extent < 2^extent_exponent
    return min((significand_bits - 1 - extent_exponent) // 2, -smallest_exponent // 2)
