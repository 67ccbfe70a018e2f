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
@pytest.mark.parametrize("n_samples, n_features, n_clusters", [(700, 3, 1), (1500, 20, 7), (5000, 5, 300)])
def test_lloyd_step_against_float64_reference(dtype, n_samples, n_features, n_clusters, rng):
    X = (rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 3, n_features)).astype(dtype)
    sample_weight = rng.uniform(0.5, 2, n_samples).astype(dtype)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    labels = np.full(n_samples, -1, np.int32)
    with _cpu.cpu_runtime():
        for _ in range(3):
            sums, weights = _cpu.lloyd_iter(X, sample_weight, centers, labels)
            ref_labels, d, ref_sums, ref_w = _reference_step(X, sample_weight, centers)
            differ = labels != ref_labels
            # Only float32 near-ties may differ from the float64 reference.
            np.testing.assert_allclose(d[differ, labels[differ]], d[differ, ref_labels[differ]], rtol=1e-4)
            assert differ.sum() <= (0 if dtype == np.float64 else max(1, n_samples // 500))
            if not differ.any():
                # float32 sums run in float32 over a few thousand samples at most before
                # moving to float64: allow that rounding, relative to the sum of magnitudes.
                tol = 1e-5 if dtype == np.float32 else 1e-12
                ref_abs = np.zeros_like(ref_sums)
                np.add.at(ref_abs, ref_labels, np.abs(sample_weight[:, None] * X.astype(np.float64)))
                assert np.all(np.abs(sums - ref_sums) <= tol * ref_abs + 1e-12)
                np.testing.assert_allclose(weights, ref_w, rtol=1e-12)
            centers = average_centers(sums, weights, X.dtype, np)


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
