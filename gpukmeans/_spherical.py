"""Spherical k-means (Dhillon and Modha, "Concept decompositions for large sparse text data
using clustering", Machine Learning 42, 2001): what ``KMeans(metric="cosine")`` changes.

For unit vectors ``||x - c||^2 = 2 - 2 x.c``, so on L2-normalised rows with unit centers
the nearest center in Euclidean distance is the one of largest dot product, which is the
largest cosine similarity (ties: lowest index). The engines' E-step, k-means++ (whose D^2
weights ``2 (1 - cos)`` draw with the same probabilities as ``1 - cos``), empty-cluster
relocation (farthest in one is farthest in the other) and inertia (the Euclidean one is
twice the cosine one) therefore serve unchanged. What changes:

- the rows are normalised once, on a copy (:func:`normalize_rows`), and never centred;
- each M-step's centers are the directions of their clusters' weighted sums
  (:func:`unit_centers`, the driver's ``update_centers``);
- inertia and ``transform`` report cosine distances, ``1 - cos``, computed as half the
  squared Euclidean distance between the unit vectors (:data:`INERTIA_SCALE`).

Prior validation of data is assumed everywhere in this module.
"""


import numpy as np

METRICS = ("euclidean", "cosine")

# cosine distance = ||x - c||^2 / 2 for unit x and c. Summed from the differences (as the
# engines sum inertias), it keeps the relative accuracy of the unit vectors; 1 - x.c
# would cancel for a sample near its center, to an absolute error of the dtype's epsilon.
INERTIA_SCALE = 0.5

# Float64 squared norms in this range are accurate: below it, squares of the row's
# values may be subnormal (fewer significant bits) or zero, above it they overflowed.
# Rows outside are first scaled by a power of two (float64 values past about 1e154, or
# all below about 1e-146).
SMALLEST_SQUARED_NORM = float(np.finfo(np.float64).tiny / np.finfo(np.float64).eps)
LARGEST_SQUARED_NORM = float(np.finfo(np.float64).max)
NAMED_ROWS = 10


def normalize_rows(X, engine, name="X"):
    """A copy of ``X`` with every row divided by its L2 norm; zero rows refused.

    The squared norms are the engine's float64 ``row_norms``; each value is scaled in
    float64 and rounded once to X's dtype, so a float32 row's norm is 1 to within a few
    float32 roundings. ``X`` is never modified.

    Parameters
    ----------
    X : {ndarray, cupy.ndarray, scipy.sparse matrix} of shape (n_samples, n_features)
        float32 or float64, in ``engine.xp``'s memory (sparse: on the host).
    engine : Engine
    name : str, default="X"
        The parameter named in the error.

    Returns
    -------
    X_unit : same type, dtype and shape as X.

    Any scale of a row is fine: a float64 row whose squared norm overflows or underflows
    float64 (values beyond about 1e154 or all below 1e-154; a float32 row's cannot) is
    first scaled by powers of two, exactly, to largest absolute value in [0.5, 1).

    Raises
    ------
    ValueError
        When a row is zero: the error names the rows. A zero row has no direction to
        cluster by.
    """
    return _normalized(X, engine, name, keep_zero_rows=False)[0]


def normalize_query_rows(X, engine):
    """:func:`normalize_rows` for inference: zero rows are kept, as zeros, and said.

    A row with no direction has cosine similarity 0 with every center (scikit-learn's
    ``cosine_similarity`` convention): ``predict``, ``transform`` and ``score`` give it
    distance 1 to every center and the first center, so that one empty document does
    not fail a whole batch (a fit still refuses it: it could become a center).

    Returns ``(X_unit, zero_rows)``, ``zero_rows`` a boolean array in ``engine.xp``, or
    None where no row is zero.
    """
    return _normalized(X, engine, "X", keep_zero_rows=True)


def zero_rows_of(X, engine, squared_norms=None):
    """The rows of ``X`` with no direction (every value 0; not a float64 row whose
    squared norm underflowed), a boolean array in ``engine.xp``, or None where there are
    none. ``squared_norms``: ``engine.row_norms(X)`` when the caller has them."""
    if squared_norms is None:
        squared_norms = engine.row_norms(X)
    if not bool((squared_norms == 0).any()):
        return None
    zero_rows = (squared_norms == 0) & (_largest_abs(X, engine.xp) == 0)
    return zero_rows if bool(zero_rows.any()) else None


def _normalized(X, engine, name, keep_zero_rows):
    xp = engine.xp
    squared_norms = engine.row_norms(X)
    zero_rows = zero_rows_of(X, engine, squared_norms) if keep_zero_rows else None
    out_of_range = ~((squared_norms >= SMALLEST_SQUARED_NORM)
                     & (squared_norms <= LARGEST_SQUARED_NORM))
    if zero_rows is not None:
        out_of_range &= ~zero_rows
    if bool(out_of_range.any()):
        X, squared_norms = _power_of_two_scaled(X, squared_norms, out_of_range, engine, name)
    if zero_rows is None:
        scale = 1.0 / xp.sqrt(squared_norms)  # float64, (n_samples,)
    else:  # zero rows stay zero
        scale = xp.where(zero_rows, 0.0, 1.0 / xp.sqrt(xp.where(zero_rows, 1.0, squared_norms)))
    if hasattr(X, "tocsr"):  # sparse: scale the stored values, keep the structure
        return _scaled_csr_rows(X, scale, xp), zero_rows
    X_unit = xp.empty_like(X)
    # Computed in float64, rounded once to X's dtype.
    xp.multiply(X, scale[:, None], out=X_unit)  # same_kind casting, the default
    return X_unit, zero_rows


def _largest_abs(X, xp):
    """Each row's largest absolute value, float64 (dense or CSR)."""
    if hasattr(X, "tocsr"):
        largest = abs(X).max(axis=1)
        largest = xp.asarray(largest.toarray() if hasattr(largest, "toarray") else largest)
        return largest.reshape(-1).astype(np.float64)
    return xp.abs(X).max(axis=1).astype(np.float64)


# _scaled_csr_rows scales this many stored values at a time: its temporaries (each
# value's row, factor and float64 product) stay about 32 MiB, not 24 bytes a value.
SCALE_CHUNK_VALUES = 2**20


def _scaled_csr_rows(X, factors, xp):
    """A copy of the CSR matrix X (``scipy.sparse`` or ``cupyx.scipy.sparse``) with each
    row's stored values times its float64 factor, rounded once to X's dtype, as dense
    rows are scaled. (scikit-learn's ``inplace_row_scale`` takes scipy's matrices only.)"""
    X = X.tocsr(copy=True)
    data = X.data  # the copy's own: scaled in place
    for start in range(0, data.shape[0], SCALE_CHUNK_VALUES):
        stop = min(start + SCALE_CHUNK_VALUES, data.shape[0])
        rows = xp.searchsorted(X.indptr, xp.arange(start, stop), side="right") - 1
        data[start:stop] = data[start:stop] * factors[rows]  # float64, rounded once
    return X


class NoDirectionError(ValueError):
    """Rows of ``name`` (their indices, ``rows``) with a zero L2 norm, refused by a fit."""

    def __init__(self, name, rows):
        self.name, self.rows = name, rows
        named = ", ".join(str(int(i)) for i in rows[:NAMED_ROWS])
        more = f" and {len(rows) - NAMED_ROWS} more" if len(rows) > NAMED_ROWS else ""
        super().__init__(
            f"metric='cosine' needs rows of {name} with a non-zero L2 norm, but "
            f"{len(rows)} have none (rows {named}{more}); drop them or give them a "
            "direction."
        )


def to_host_indices(indices):
    """A list of Python ints from a NumPy or CuPy index array."""
    get = getattr(indices, "get", None)
    return (get() if get is not None else indices).tolist()


def normalize_rows_blockwise(X, block_rows, in_file, name="X"):
    """:func:`normalize_rows` of a host array too large to copy at once (a memmap, or
    data a GPU fit streams), a block of rows at a time, into a new array of X's dtype:
    an unlinked temporary file where ``in_file`` (X was a ``numpy.memmap``: the unit rows
    are as large as X; validation has made X a plain view, so the caller says), else
    memory. Each row is the in-memory function's bit for bit (the Numba engine's
    row norms, as :func:`normalize_rows` of such an X uses them); the error names every
    zero row of X, as :func:`normalize_rows` does."""
    from . import _cpu

    engine = _cpu.make_engine()
    if in_file:
        from ._replay import temporary_array

        out = temporary_array(X.shape, X.dtype)
    else:
        out = np.empty_like(X)
    refused = []
    with engine.runtime():
        for start in range(0, X.shape[0], block_rows):
            block = np.asarray(X[start:start + block_rows])
            try:
                out[start:start + block.shape[0]] = _normalized(block, engine, name, False)[0]
            except NoDirectionError as error:  # go on: the message names them all
                refused.extend(start + i for i in error.rows)
    if refused:
        raise NoDirectionError(name, refused)
    return out


def _power_of_two_scaled(X, squared_norms, rows_to_scale, engine, name):
    """``X`` (a copy) with each of ``rows_to_scale`` multiplied by the power of two that
    brings its largest absolute value to [0.5, 1), and the squared norms of the result.

    Multiplying by a power of two is exact (short of underflowing a value ``2**-1074``
    times smaller than its row's largest, negligible in the norm), so rows whose squared
    norm was in range keep their values and norms bit for bit. The factor is applied in
    two halves: a row of subnormal values needs up to ``2**1074``, past float64's range.
    Zero rows are refused here (see :func:`normalize_rows`).
    """
    xp = engine.xp
    largest = _largest_abs(X, xp)
    refused = xp.flatnonzero((largest == 0) & rows_to_scale)
    if refused.shape[0]:
        raise NoDirectionError(name, to_host_indices(refused))
    exponent = xp.where(rows_to_scale, xp.frexp(largest)[1], 0)
    first_half = -exponent // 2
    halves = (xp.ldexp(1.0, first_half), xp.ldexp(1.0, -exponent - first_half))
    if hasattr(X, "tocsr"):
        X = _scaled_csr_rows(_scaled_csr_rows(X, halves[0], xp), halves[1], xp)
    else:
        X = X * halves[0][:, None].astype(X.dtype)
        X *= halves[1][:, None].astype(X.dtype)
    return X, engine.row_norms(X)


def unit_centers(sums, weight_in_clusters, centers_old, dtype, xp):
    """The M-step of spherical k-means: each cluster's center is the direction of its
    weighted sum, ``sum_i w_i x_i / ||sum_i w_i x_i||`` (float64, cast to ``dtype``); the
    driver's ``update_centers``.

    A cluster keeps its center from ``centers_old`` when its weight is zero (as
    :func:`gpukmeans._lloyd.average_centers` keeps it) and when its sum is exactly the
    zero vector (samples in opposite directions, ``x`` and ``-x``), which has no
    direction: a zero center would be equally far from every sample.
    """
    squared_norms = (sums * sums).sum(axis=1)  # (n_clusters,) float64
    has_direction = (weight_in_clusters > 0) & (squared_norms > 0)
    divisor = xp.sqrt(xp.where(has_direction, squared_norms, 1.0))
    centers = xp.where(has_direction[:, None], sums / divisor[:, None], centers_old)
    return centers.astype(dtype, copy=False)


def cosine_distances(euclidean_distances):
    """``transform``'s ``1 - cos`` from the engine's Euclidean distances between unit
    vectors: ``d^2 / 2``, in their dtype (exactly 0 on a center, as the engines give 0)."""
    return euclidean_distances * euclidean_distances * euclidean_distances.dtype.type(INERTIA_SCALE)
