"""The CPU engine's mini-batch center update: one serial pass over a batch.

A batch (scikit-learn's default: 1,024 rows) is too small to repay a parallel region
(Numba's workqueue layer costs about 120 us to start one here), and NumPy's dozen small
calls per step (the sums by label, the weights, the learning rates, the inertia) cost
more than the arithmetic. This kernel does what
:func:`gpukmeans._minibatch_step.mini_batch_step`'s generic path does, after the labels,
in one call, with the same operations in the same order, so bitwise the same results:

- ``sum_i w_i x_i`` per cluster in X's dtype, each cluster's samples added in sample
  order to a zero start (``y += w * x``, no fused multiply-add, as
  ``scipy.sparse``'s CSR product computes it);
- ``sum_i w_i`` per cluster in float64, in sample order (``numpy.bincount``), then
  rounded to X's dtype;
- each center that received weight: ``(sums + c * W) * (1 / (W + w_new))`` in X's dtype;
- the inertia ``sum_i w_i ||x_i - c_{l_i}||^2`` by the engine's own ``inertia`` call
  (a second, cheap pass over the batch in cache): a squared distance is a reassociated
  sum whose order the compiler chooses where it inlines it, and the same function
  inlined in this loop gave another last bit than the inertia pass's for about one
  float64 batch in 60 at 3 features (seen with freshly compiled kernels).

It also holds the batch draw's search, :meth:`gpukmeans._minibatch_step.BatchSampler.search`
compiled (NumPy's vectorised binary search costs 0.14 ms a batch in small array calls,
this loop 0.01).

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit

from ._cpu_passes import inertia as _inertia
from ._cpu_runtime import CACHE


@njit(nogil=True, cache=CACHE)
def _minibatch_update(
    X,  # IN (n_samples, n_features): the batch
    sample_weight,  # IN (n_samples,) X.dtype
    labels,  # IN (n_samples,) int32, from the engine's assign_labels
    centers,  # IN (n_clusters, n_features) X.dtype
    weight_sums,  # IN (n_clusters,) X.dtype: the weight each center has accumulated
    tiny,  # X.dtype's smallest normal number
):
    """Returns ``(centers_new, weight_sums_new)``. The inputs are not written. A weight
    sum below ``tiny`` (a cluster reached only by a batch far lighter than the earlier
    ones) has a reciprocal that overflows: its center is divided by it instead."""
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    dtype = X.dtype.type
    sums = np.zeros((n_clusters, n_features), dtype=X.dtype)
    weight_in_clusters = np.zeros(n_clusters, dtype=np.float64)
    for i in range(n_samples):
        label = labels[i]
        weight = sample_weight[i]
        weight_in_clusters[label] += np.float64(weight)
        row = sums[label]
        x = X[i]
        for f in range(n_features):
            row[f] += weight * x[f]
    centers_new = centers.copy()
    weight_sums_new = np.empty(n_clusters, dtype=X.dtype)
    for j in range(n_clusters):
        weight_new = dtype(weight_in_clusters[j])
        weight_sums_new[j] = weight_sums[j] + weight_new
        if weight_new > 0 and weight_sums_new[j] >= tiny:
            alpha = dtype(1) / weight_sums_new[j]
            for f in range(n_features):
                scaled = centers[j, f] * weight_sums[j]
                centers_new[j, f] = (sums[j, f] + scaled) * alpha
        elif weight_new > 0:
            for f in range(n_features):
                scaled = centers[j, f] * weight_sums[j]
                centers_new[j, f] = (sums[j, f] + scaled) / weight_sums_new[j]
    return centers_new, weight_sums_new


def minibatch_update(X, sample_weight, labels, centers, weight_sums, compute_inertia):
    """Engine ``minibatch_update``."""
    centers_new, weight_sums_new = _minibatch_update(X, sample_weight, labels, centers,
                                                     weight_sums, np.finfo(X.dtype).tiny)
    inertia = float(_inertia(X, sample_weight, centers, labels)) if compute_inertia else 0.0
    return centers_new, weight_sums_new, inertia


@njit(nogil=True, cache=CACHE)
def _bucket_search(cdf, bucket_starts, uniform):
    """``cdf.searchsorted(uniform, side="right")``, each draw searched between the
    starts of its slice's neighbours (see ``BatchSampler.search``)."""
    n_buckets = bucket_starts.shape[0] - 1
    n_last = cdf.shape[0] - 1
    out = np.empty(uniform.shape[0], dtype=np.int64)
    for i in range(uniform.shape[0]):
        u = uniform[i]
        bucket = np.int64(np.floor(u * n_buckets))
        lo = bucket_starts[min(max(bucket - 1, 0), n_buckets)]
        hi = bucket_starts[min(max(bucket + 2, 0), n_buckets)]
        while lo < hi:
            mid = (lo + hi) // 2
            if cdf[min(mid, n_last)] > u:
                hi = mid
            else:
                lo = mid + 1
        out[i] = lo
    return out


def batch_search(cdf, bucket_starts, uniform):
    """Engine ``batch_search``."""
    return _bucket_search(cdf, bucket_starts, uniform)
