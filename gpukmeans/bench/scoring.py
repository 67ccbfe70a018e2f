"""One judge for every contestant: the labels and inertia of its final centres, recomputed
here (``track_inertia``), and their agreement with the reference's."""

import numpy as np

# A distance block of the naive contestants and of the reference holds at most this many
# elements (rows x n_clusters), so that no contestant of ours allocates n x k at once.
BLOCK_ELEMENTS = 1 << 22
GPU_BLOCK_ELEMENTS = 1 << 27


def reference_assign(X, centers, xp=np, block_elements=BLOCK_ELEMENTS):
    """Labels and float64 inertia of ``centers`` on ``X``, one function for everyone.

    The argmin uses the blocked product in X's dtype (``-2 x.c + ||c||^2``); the inertia
    sums the exact squared differences to the chosen centre in float64.
    Prior validation of data is assumed.
    """
    n_samples, n_clusters = X.shape[0], centers.shape[0]
    centers = xp.asarray(centers, dtype=X.dtype)
    centers_sq = (centers.astype(xp.float64) ** 2).sum(axis=1).astype(X.dtype)
    rows = max(1, min(n_samples, block_elements // max(n_clusters, 1)))
    labels = xp.empty(n_samples, dtype=xp.int64)
    inertia = 0.0
    for start in range(0, n_samples, rows):
        block = X[start : start + rows]
        scores = centers_sq[None, :] - 2 * (block @ centers.T)  # (rows, n_clusters)
        block_labels = scores.argmin(axis=1)
        labels[start : start + rows] = block_labels
        diff = block.astype(xp.float64) - centers[block_labels].astype(xp.float64)
        inertia += float((diff * diff).sum())
    return labels, inertia


def agreement(reference, candidate):
    """Compare a contestant's answer with the reference's (same initial centres, so the
    cluster indices correspond and no permutation is needed)."""
    ref_labels, ref_inertia, ref_centers = reference
    labels, inertia, centers = candidate
    scale = max(float(np.abs(ref_centers).max()), np.finfo(np.float64).tiny)
    return {
        "inertia_rel_diff": (inertia - ref_inertia) / ref_inertia if ref_inertia else 0.0,
        "label_agreement": float((to_host(labels) == to_host(ref_labels)).mean()),
        "center_max_rel_diff": float(
            np.abs(np.asarray(centers, np.float64) - np.asarray(ref_centers, np.float64)).max()
            / scale
        ),
    }


def to_host(a):
    """A NumPy array of ``a``, copied from the GPU when it lives there."""
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)

