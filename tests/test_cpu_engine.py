"""The CPU engine's functions against float64 NumPy references, one call at a time."""

import numpy as np
import pytest

from gpukmeans import _cpu
from gpukmeans._lloyd import average_centers


@pytest.fixture
def rng():
    seed = np.random.SeedSequence().entropy % 2**32
    print(f"random seed: {seed}")
    return np.random.default_rng(seed)


def _reference_step(X, sample_weight, centers):
    X64, c64 = X.astype(np.float64), centers.astype(np.float64)
    d = ((X64[:, None, :] - c64[None]) ** 2).sum(-1)
    labels = d.argmin(1)
    sums = np.zeros_like(c64)
    np.add.at(sums, labels, sample_weight[:, None].astype(np.float64) * X64)
    weights = np.bincount(labels, weights=sample_weight, minlength=len(centers))
    return labels, d, sums, weights


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_samples, n_features, n_clusters", [(700, 3, 1), (1500, 20, 7), (2049, 5, 40)])
def test_bounded_step_equals_plain_step_at_every_iteration(dtype, n_samples, n_features, n_clusters, rng):
    X = (rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 3, n_features)).astype(dtype)
    sample_weight = rng.uniform(0.5, 2, n_samples).astype(dtype)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    x_squared_norms = _cpu.row_norms_f64(X)
    bounded = _cpu.make_lloyd_iter(X, sample_weight, x_squared_norms, n_clusters)
    labels_bounded = np.full(n_samples, -1, np.int32)
    labels_plain = np.full(n_samples, -1, np.int32)
    with _cpu.cpu_runtime():
        for _ in range(8):
            sums_b, w_b = bounded(X, sample_weight, centers, labels_bounded)
            sums_p, w_p = _cpu.lloyd_iter(X, sample_weight, centers, labels_plain)
            ref_labels, d, ref_sums, ref_w = _reference_step(X, sample_weight, centers)
            differ = labels_bounded != ref_labels
            # Only float32 near-ties may differ from the float64 reference.
            np.testing.assert_allclose(
                d[differ, labels_bounded[differ]], d[differ, ref_labels[differ]], rtol=1e-4
            )
            np.testing.assert_array_equal(labels_bounded, labels_plain)
            np.testing.assert_array_equal(w_b, w_p)
            np.testing.assert_allclose(sums_b, sums_p, rtol=1e-12, atol=1e-9)
            if not differ.any():
                np.testing.assert_allclose(sums_b, ref_sums, rtol=1e-9, atol=1e-6)
                np.testing.assert_allclose(w_b, ref_w, rtol=1e-9)
            centers = average_centers(sums_b, w_b, X.dtype, np)
            # Move one center far away now and then, as a relocation would.
            if rng.uniform() < 0.3:
                centers[rng.integers(n_clusters)] = X[rng.integers(n_samples)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distances_inertia_transform_and_kmeanspp_step(dtype, rng):
    X = rng.normal(size=(1000, 9)).astype(dtype) + 5
    centers = X[:6].copy()
    sample_weight = rng.uniform(0, 2, 1000).astype(dtype)
    labels = np.full(1000, -1, np.int32)
    with _cpu.cpu_runtime():
        _cpu.assign_labels(X, centers, labels)
        ref_labels, d, _, _ = _reference_step(X, sample_weight, centers)
        np.testing.assert_array_equal(d[np.arange(1000), labels], d.min(1))
        np.testing.assert_allclose(_cpu.assigned_distances(X, centers, labels), d[np.arange(1000), labels], rtol=1e-12 if dtype == np.float64 else 1e-6)
        np.testing.assert_allclose(
            _cpu.inertia(X, sample_weight, centers, labels), (d.min(1) * sample_weight).sum(), rtol=1e-6
        )
        np.testing.assert_allclose(_cpu.pairwise_distances(X, centers), np.sqrt(d), rtol=1e-5, atol=1e-5)
        closest = d[:, 0].astype(dtype)
        ids = np.array([3, 999, 10], dtype=np.int64)
        dist, pot = _cpu.kmeanspp_candidates(X, _cpu.row_norms_f64(X), sample_weight, ids, closest)
        X64 = X.astype(np.float64)
        ref = np.minimum(((X64[None] - X64[ids][:, None]) ** 2).sum(-1), closest)
        np.testing.assert_allclose(dist, ref, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(pot, dist.astype(np.float64) @ sample_weight.astype(np.float64), rtol=1e-10)
