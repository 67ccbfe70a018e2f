"""The one rule every test uses for float32 labels: the float64 nearest center, except at
near-ties that the GEMM form of the distance cannot resolve in the working precision."""

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
    # The rounding error of the GEMM form grows with the squared norms, not the distance.
    eps = np.finfo(dtype).eps
    scale = (X.astype(np.float64) ** 2).sum(1)[differ] + (centers.astype(np.float64) ** 2).sum(1).max()
    gap = d[differ, labels[differ]] - d[differ, expected[differ]]
    tolerance = 16 * eps * np.sqrt(X.shape[1]) * scale
    assert np.all(gap <= tolerance), f"{(gap > tolerance).sum()} labels are not near-ties"
    assert differ.size <= max(2, 0.01 * labels.size), f"{differ.size} near-ties is too many"
