"""The rules tests use for labels: the float64 nearest center, except at near-ties that
the GEMM form of the distance cannot resolve in the working precision (scikit-learn, the
GPU engine); the nearest by float64 distances (sparse data on the CPU); or exactly the
nearest (the CPU engine's dense float32 passes, which decide near-ties exactly)."""

import numpy as np
from scipy.spatial import distance as scipy_distance


def sq_dist64(X, centers):
    """Exact squared distances, from the differences in float64."""
    return scipy_distance.cdist(X.astype(np.float64), centers.astype(np.float64), "sqeuclidean")


def assert_labels_nearest(labels, X, centers, dtype):
    """Labels equal the float64 argmin except where the two distances are within the
    rounding of ``||c||^2 - 2 x.c`` in ``dtype``, and such near-ties are rare."""
    labels = np.asarray(labels)
    assert labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < centers.shape[0], "unwritten or invalid labels"
    d = sq_dist64(X, centers)
    expected = d.argmin(axis=1)
    differ = np.flatnonzero(labels != expected)
    if differ.size == 0:
        return
    gap = d[differ, labels[differ]] - d[differ, expected[differ]]
    tolerance = _near_tie_tolerance(X[differ], centers, dtype)
    assert np.all(gap <= tolerance), f"{(gap > tolerance).sum()} labels are not near-ties"
    assert differ.size <= max(2, 0.01 * labels.size), f"{differ.size} near-ties is too many"


def assert_labels_exactly_nearest(labels, X, centers):
    """Each label is the exactly nearest center, by rational arithmetic on the given
    float values where the float64 distances are too close to tell (within 1e-12 of
    each other), the lowest index on an exact tie: no near-tie exception."""
    labels = np.asarray(labels)
    assert labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < centers.shape[0], "unwritten or invalid labels"
    d = sq_dist64(X, centers)
    close = d <= d.min(axis=1, keepdims=True) * (1 + 1e-12) + 1e-300
    rows = np.arange(X.shape[0])
    wrong = np.flatnonzero(~close[rows, labels])
    assert wrong.size == 0, f"{wrong.size} labels are not the nearest center (first: {wrong[:5]})"
    undecided = np.flatnonzero(close.sum(axis=1) > 1)
    exact = [exactly_nearest(X[i], centers, np.flatnonzero(close[i])) for i in undecided]
    wrong = undecided[labels[undecided] != np.asarray(exact, dtype=np.int64)]
    assert wrong.size == 0, (
        f"{wrong.size} labels are not the exactly nearest center (first: {wrong[:5]})")


def assert_labels_nearest_in_float64(labels, X, centers):
    """Each label is a nearest center by the float64 distances from the differences, up
    to their own 1e-12 rounding (sparse data, whose CPU labels are float64's)."""
    labels = np.asarray(labels)
    assert labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < centers.shape[0], "unwritten or invalid labels"
    d = sq_dist64(X, centers)
    own = d[np.arange(X.shape[0]), labels]
    wrong = np.flatnonzero(own > d.min(axis=1) * (1 + 1e-12) + 1e-300)
    assert wrong.size == 0, f"{wrong.size} labels are not the nearest center (first: {wrong[:5]})"


def _as_integers(*arrays):
    """Each array's float values, exactly, as Python ints over one power-of-two
    denominator common to all of them (a float is an integer over a power of two): the
    sums of their squared differences are then exact in integer arithmetic, orders of
    magnitude faster than in ``Fraction``, which reduces every intermediate result."""
    ratios = [[value.as_integer_ratio() for value in np.asarray(a, np.float64).ravel().tolist()]
              for a in arrays]
    denominator = max((d for r in ratios for _, d in r), default=1)
    return [np.array([n * (denominator // d) for n, d in r], dtype=object).reshape(np.shape(a))
            for r, a in zip(ratios, arrays)]


def exactly_nearest_labels(X, centers):
    """:func:`exactly_nearest` of every row of ``X`` (int64 array of shape (n_samples,))."""
    X_int, centers_int = _as_integers(X, centers)
    candidates = list(range(centers_int.shape[0]))
    return np.array([_nearest_of(x, centers_int, candidates) for x in X_int], dtype=np.int64)


def exactly_nearest(x, centers, candidates=None):
    """The center nearest to ``x`` of ``candidates`` (all by default) in exact arithmetic
    on the float values, the lowest index on an exact tie."""
    candidates = list(range(centers.shape[0]) if candidates is None else candidates)
    return _nearest_of(*_as_integers(x, np.asarray(centers)[candidates]), candidates)


def _nearest_of(x_int, centers_int, candidates):
    """Of ``candidates`` (the indices of the rows of ``centers_int``, in their order),
    the one nearest ``x_int``, the lowest index on a tie (:func:`_as_integers`' values)."""
    distances = ((centers_int - x_int) ** 2).sum(axis=1)
    return candidates[min(range(len(candidates)), key=lambda i: (distances[i], candidates[i]))]


def near_tie_clusters(X, centers, dtype):
    """The clusters that an E-step from ``centers`` may resolve either way: the nearest
    and second nearest center of every sample whose two distances are a near-tie."""
    d = sq_dist64(X, centers)
    if centers.shape[0] < 2:
        return set()
    nearest_two = np.argsort(d, axis=1)[:, :2]
    rows = np.arange(X.shape[0])
    gap = d[rows, nearest_two[:, 1]] - d[rows, nearest_two[:, 0]]
    ties = np.flatnonzero(gap <= _near_tie_tolerance(X, centers, dtype))
    return set(nearest_two[ties].ravel().tolist())


def _near_tie_tolerance(X, centers, dtype):
    """Per sample: the rounding of ``||c||^2 - 2 x.c`` in ``dtype``, which grows with the
    squared norms, not with the distance."""
    eps = np.finfo(dtype).eps
    scale = (X.astype(np.float64) ** 2).sum(1) + (centers.astype(np.float64) ** 2).sum(1).max()
    return 16 * eps * np.sqrt(X.shape[1]) * scale
