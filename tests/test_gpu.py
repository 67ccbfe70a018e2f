"""The GPU engine on a device: each kernel against a float64 NumPy reference, whole fits
against the CPU engine, determinism, residency, and a > 2^31-element problem.

Every test is marked ``gpu`` (conftest skips them where no device is usable). Outputs are
poisoned (NaN, -1) before each launch, so an element a kernel forgets to write fails.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")
from gpukmeans import KMeans, _gpu  # noqa: E402
from label_checks import assert_labels_nearest, sq_dist64  # noqa: E402

DTYPES = [np.float32, np.float64]

# (n_samples, n_features, n_clusters): n never a multiple of a tile (64), a range (1024) or
# a piece (256); k in {1, 2, 1000, 5000}; d in {1, 3, 784, 2048}; the large products kept
# few so that the whole file runs in well under a minute.
SHAPES = [
    (1001, 1, 1),
    (1001, 3, 2),
    (3001, 784, 2),
    (1999, 2048, 2),
    (2051, 3, 1000),
    (1003, 784, 1000),
    (1003, 3, 5000),
    (257, 784, 5000),
    (70_001, 3, 20),
]


def _data(n_samples, n_features, n_clusters, dtype, seed=0):
    """Fresh random data and centers drawn from it (k-means-like geometry), plus weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features)).astype(dtype)
    centers = X[rng.choice(n_samples, n_clusters, replace=n_clusters > n_samples)]
    centers = (centers + 0.1 * rng.standard_normal(centers.shape)).astype(dtype)
    sample_weight = rng.uniform(0.5, 2.0, n_samples).astype(dtype)
    return X, centers, sample_weight


SUM_RTOL, SUM_ATOL = 1e-10, 1e-9
"""Float64 sums of float64 products compared with NumPy's, which adds in another order.
Loose against rounding, tight against a missed or doubled sample (an O(1) change)."""


def _rounding_rtol(dtype):
    """A float64 sum rounded once to ``dtype``: 1 ulp for float32; for float64 the order of
    up to 2048 float64 additions (the reference sums in another order)."""
    return 2 * np.finfo(np.float32).eps if dtype == np.float32 else 1e-12


# ----------------------------------------------------------------------------------------
# Kernels against NumPy
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n%d-d%d-k%d" % s)
@pytest.mark.parametrize("path", ["fused", "gemm"])
def test_assign_labels(shape, dtype, path):
    X, centers, _ = _data(*shape, dtype)
    labels = cupy.full(X.shape[0], -1, dtype=cupy.int32)
    launch = _gpu.assign_labels if path == "fused" else _gpu.assign_labels_gemm
    launch(cupy.asarray(X), cupy.asarray(centers), labels)
    assert_labels_nearest(labels.get(), X, centers, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_assign_labels_ties_go_to_the_lowest_index(dtype):
    X = np.zeros((130, 5), dtype=dtype)
    centers = np.ones((200, 5), dtype=dtype)  # all equally far
    centers[[70, 150]] = 0  # two exact matches: the lower index must win
    for launch in (_gpu.assign_labels, _gpu.assign_labels_gemm):
        labels = cupy.full(130, -1, dtype=cupy.int32)
        launch(cupy.asarray(X), cupy.asarray(centers), labels)
        assert (labels.get() == 70).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1001, 1, 1), (1001, 3, 2), (1003, 784, 1000), (129, 2048, 67)],
                         ids=lambda s: "n%d-d%d-k%d" % s)
def test_pairwise_distances(shape, dtype):
    X, centers, _ = _data(*shape, dtype)
    out = cupy.full((X.shape[0], centers.shape[0]), np.nan, dtype=dtype)
    _gpu.pairwise_distances(cupy.asarray(X), cupy.asarray(centers), out)
    expected = np.sqrt(sq_dist64(X, centers))
    np.testing.assert_allclose(out.get(), expected, rtol=_rounding_rtol(dtype), atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n%d-d%d-k%d" % s)
def test_accumulate(shape, dtype):
    """Per-cluster weighted sums and weights in float64, on fixed labels (many clusters
    empty when k is large), bitwise reproducible."""
    X, centers, sample_weight = _data(*shape, dtype)
    n_samples, n_clusters = X.shape[0], centers.shape[0]
    rng = np.random.default_rng(1)
    labels = rng.integers(0, max(1, n_clusters // 2 + 1), n_samples).astype(np.int32)
    labels[: n_samples // 3] = n_clusters - 1  # one big cluster spanning many pieces
    X_d, w_d, labels_d = cupy.asarray(X), cupy.asarray(sample_weight), cupy.asarray(labels)
    sums, weight_in_clusters = _gpu.accumulate(X_d, w_d, labels_d, n_clusters)

    expected_sums = np.zeros((n_clusters, X.shape[1]))
    np.add.at(expected_sums, labels, sample_weight.astype(np.float64)[:, None] * X.astype(np.float64))
    expected_weight = np.bincount(labels, weights=sample_weight.astype(np.float64), minlength=n_clusters)
    assert sums.dtype == np.float64 and weight_in_clusters.dtype == np.float64
    np.testing.assert_allclose(sums.get(), expected_sums, rtol=SUM_RTOL, atol=SUM_ATOL)
    np.testing.assert_allclose(weight_in_clusters.get(), expected_weight, rtol=SUM_RTOL, atol=0)
    empty = np.bincount(labels, minlength=n_clusters) == 0
    assert (weight_in_clusters.get()[empty] == 0).all() and (sums.get()[empty] == 0).all()

    again = _gpu.accumulate(X_d, w_d, labels_d, n_clusters)
    assert sums.get().tobytes() == again[0].get().tobytes()
    assert weight_in_clusters.get().tobytes() == again[1].get().tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate_counts_are_exact(dtype):
    X, _, _ = _data(100_003, 3, 1, dtype)
    labels = np.random.default_rng(2).integers(0, 37, X.shape[0]).astype(np.int32)
    ones = cupy.ones(X.shape[0], dtype=dtype)
    _, weight_in_clusters = _gpu.accumulate(cupy.asarray(X), ones, cupy.asarray(labels), 40)
    np.testing.assert_array_equal(weight_in_clusters.get(), np.bincount(labels, minlength=40))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1001, 1, 1), (3001, 784, 2), (1003, 3, 5000), (1999, 2048, 2)],
                         ids=lambda s: "n%d-d%d-k%d" % s)
def test_lloyd_iter(shape, dtype):
    X, centers, sample_weight = _data(*shape, dtype)
    labels = cupy.full(X.shape[0], -1, dtype=cupy.int32)
    sums, weight_in_clusters = _gpu.lloyd_iter(
        cupy.asarray(X), cupy.asarray(sample_weight), cupy.asarray(centers), labels
    )
    labels = labels.get()
    assert_labels_nearest(labels, X, centers, dtype)
    expected = np.zeros((centers.shape[0], X.shape[1]))
    np.add.at(expected, labels, sample_weight.astype(np.float64)[:, None] * X.astype(np.float64))
    np.testing.assert_allclose(sums.get(), expected, rtol=SUM_RTOL, atol=SUM_ATOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1001, 1, 1), (3001, 784, 20), (1003, 3, 5000), (1999, 2048, 2)],
                         ids=lambda s: "n%d-d%d-k%d" % s)
def test_assigned_distances_inertia_row_norms(shape, dtype):
    X, centers, sample_weight = _data(*shape, dtype)
    labels = np.random.default_rng(3).integers(0, centers.shape[0], X.shape[0]).astype(np.int32)
    X_d, C_d, L_d = cupy.asarray(X), cupy.asarray(centers), cupy.asarray(labels)
    X64, C64 = X.astype(np.float64), centers.astype(np.float64)
    expected = ((X64 - C64[labels]) ** 2).sum(axis=1)

    distances = _gpu.squared_distances_to_centers(X_d, C_d, L_d)
    assert distances.dtype == np.float64
    np.testing.assert_allclose(distances.get(), expected, rtol=1e-12)

    inertia = _gpu.inertia(X_d, cupy.asarray(sample_weight), C_d, L_d)
    assert inertia.shape == () and inertia.dtype == np.float64
    np.testing.assert_allclose(float(inertia), expected @ sample_weight.astype(np.float64), rtol=SUM_RTOL)
    assert float(inertia) == float(_gpu.inertia(X_d, cupy.asarray(sample_weight), C_d, L_d))

    norms = _gpu.row_norms(X_d)
    np.testing.assert_allclose(norms.get(), (X64**2).sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_features", [1, 3, 784, 2048])
@pytest.mark.parametrize("n_candidates", [1, 7, 9])
def test_kmeanspp_candidates(n_features, n_candidates, dtype):
    X, _, sample_weight = _data(2003, n_features, 1, dtype)
    rng = np.random.default_rng(4)
    candidate_ids = rng.choice(X.shape[0], n_candidates, replace=False).astype(np.int64)
    closest = (sq_dist64(X, X[[0]])[:, 0] * rng.uniform(0.5, 1.5, X.shape[0])).astype(dtype)
    X_d = cupy.asarray(X)
    distance_to_candidates, candidates_pot = _gpu.kmeanspp_candidates(
        X_d, _gpu.row_norms(X_d), cupy.asarray(sample_weight), cupy.asarray(candidate_ids),
        cupy.asarray(closest),
    )
    expected = np.minimum(sq_dist64(X, X[candidate_ids]).T.astype(dtype), closest)
    assert distance_to_candidates.shape == (n_candidates, X.shape[0])
    np.testing.assert_allclose(distance_to_candidates.get(), expected, rtol=_rounding_rtol(dtype))
    np.testing.assert_allclose(
        candidates_pot.get(), distance_to_candidates.get().astype(np.float64) @ sample_weight,
        rtol=SUM_RTOL,
    )
    assert (distance_to_candidates.get()[np.arange(n_candidates), candidate_ids] == 0).all()


def test_memory_does_not_grow_with_iterations():
    X, centers, sample_weight = _data(20_001, 784, 300, np.float32)
    X_d, w_d, C_d = cupy.asarray(X), cupy.asarray(sample_weight), cupy.asarray(centers)
    labels = cupy.empty(X.shape[0], dtype=cupy.int32)
    pool = cupy.get_default_memory_pool()
    held = []
    for _ in range(5):
        sums, weight = _gpu.lloyd_iter(X_d, w_d, C_d, labels)
        del sums, weight
        cupy.cuda.Device().synchronize()
        held.append((pool.used_bytes(), pool.total_bytes()))
    assert len(set(held[1:])) == 1, held


# ----------------------------------------------------------------------------------------
# Whole fits
# ----------------------------------------------------------------------------------------


def _blobs(n_samples, n_features, n_clusters, dtype, seed=0):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples, n_features, centers=n_clusters, cluster_std=2.0, random_state=seed)
    init = X[np.random.default_rng(seed).choice(n_samples, n_clusters, replace=False)]
    return X.astype(dtype), init.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5003, 3, 8), (3001, 784, 20), (2999, 64, 300)],
                         ids=lambda s: "n%d-d%d-k%d" % s)
def test_fit_gpu_matches_cpu_from_the_same_init(shape, dtype):
    X, init = _blobs(*shape, dtype)
    params = dict(n_clusters=shape[2], init=init, n_init=1, max_iter=50, tol=0)
    gpu = KMeans(device="gpu", **params).fit(X)
    cpu = KMeans(device="cpu", **params).fit(X)
    assert gpu.device_ == "gpu" and cpu.device_ == "cpu"
    if dtype == np.float64:
        np.testing.assert_array_equal(gpu.labels_, cpu.labels_)
        np.testing.assert_allclose(gpu.cluster_centers_, cpu.cluster_centers_, rtol=1e-10, atol=1e-10)
    else:
        assert np.mean(gpu.labels_ != cpu.labels_) <= 1e-3
    np.testing.assert_allclose(gpu.inertia_, cpu.inertia_, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_gpu_fits_with_the_same_seed_are_bitwise_identical(dtype):
    X, _ = _blobs(20_003, 50, 30, dtype)
    X_d = cupy.asarray(X)
    first = KMeans(30, random_state=0, n_init=2, device="gpu").fit(X_d)
    second = KMeans(30, random_state=0, n_init=2, device="gpu").fit(X_d)
    assert first.cluster_centers_.get().tobytes() == second.cluster_centers_.get().tobytes()
    assert first.labels_.get().tobytes() == second.labels_.get().tobytes()
    assert first.inertia_ == second.inertia_ and first.n_iter_ == second.n_iter_


def test_residency():
    X, _ = _blobs(2000, 5, 4, np.float32)
    X_d = cupy.asarray(X)
    on_device = KMeans(4, random_state=0, device="gpu").fit(X_d)
    assert isinstance(on_device.cluster_centers_, cupy.ndarray)
    assert isinstance(on_device.labels_, cupy.ndarray)
    assert isinstance(on_device.predict(X_d), cupy.ndarray)
    assert isinstance(on_device.transform(X_d), cupy.ndarray)

    on_host = KMeans(4, random_state=0, device="gpu").fit(X)
    assert on_host.device_ == "gpu"
    assert isinstance(on_host.cluster_centers_, np.ndarray)
    assert isinstance(on_host.labels_, np.ndarray)
    assert isinstance(on_host.predict(X), np.ndarray)
    assert isinstance(on_host.transform(X), np.ndarray)

    weighted = KMeans(4, random_state=0, device="gpu").fit(X, sample_weight=np.ones(X.shape[0]))
    assert isinstance(weighted.labels_, np.ndarray)
    weighted = KMeans(4, random_state=0, device="gpu").fit(X_d, sample_weight=cupy.ones(X.shape[0]))
    assert isinstance(weighted.labels_, cupy.ndarray)

    with pytest.raises((TypeError, ValueError)):
        KMeans(4, device="gpu").fit(X_d, sample_weight=np.ones(X.shape[0], np.float32))
    with pytest.raises((TypeError, ValueError)):
        KMeans(4, device="gpu").fit(X, sample_weight=cupy.ones(X.shape[0], np.float32))


def test_torch_cuda_tensor_through_cuda_array_interface():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    X, _ = _blobs(2000, 5, 4, np.float32)
    tensor = torch.as_tensor(X, device="cuda")
    assert _gpu.is_device_array(tensor)
    view = _gpu.as_cupy(tensor)
    assert isinstance(view, cupy.ndarray) and view.data.ptr == tensor.data_ptr()
    km = KMeans(4, random_state=0, device="gpu").fit(view)
    assert isinstance(km.labels_, cupy.ndarray)


@pytest.mark.slow
def test_more_than_2_pow_31_elements():
    """64-bit indexing: n_samples * n_features > 2^31 (8.6 GB of float32)."""
    n_features, n_clusters = 2048, 8
    n_samples = 2**31 // n_features + 4097
    assert n_samples * n_features > 2**31
    rng = cupy.random.default_rng(0)
    centers = (rng.standard_normal((n_clusters, n_features), dtype=cupy.float32) * 10)
    true_labels = rng.integers(0, n_clusters, n_samples).astype(cupy.int32)
    X = rng.standard_normal((n_samples, n_features), dtype=cupy.float32)
    X *= 0.1
    X += centers[true_labels]
    labels = cupy.full(n_samples, -1, dtype=cupy.int32)
    assert _gpu.choose_assign_path(n_samples, n_features, n_clusters, 4) == "fused"
    _gpu.e_step(X, centers, labels)
    assert int((labels != true_labels).sum()) == 0
    assert int(labels[-1]) == int(true_labels[-1])
    labels_gemm = cupy.full(n_samples, -1, dtype=cupy.int32)
    _gpu.assign_labels_gemm(X, centers, labels_gemm)
    assert int((labels_gemm != true_labels).sum()) == 0
    del labels_gemm

    weight = cupy.ones(n_samples, dtype=cupy.float32)
    sums, weight_in_clusters = _gpu.accumulate(X, weight, labels, n_clusters)
    counts = cupy.bincount(true_labels, minlength=n_clusters).astype(cupy.float64)
    assert bool((weight_in_clusters == counts).all())
    tail = slice(n_samples - 5000, n_samples)  # rows past 2^31 elements
    last_cluster = int(labels[-1])
    member = cupy.flatnonzero(labels == last_cluster)
    expected = cupy.zeros(n_features, dtype=cupy.float64)
    for start in range(0, member.size, 100_000):
        expected += X[member[start:start + 100_000]].astype(cupy.float64).sum(axis=0)
    cupy.testing.assert_allclose(sums[last_cluster], expected, rtol=1e-9)

    distances = _gpu.squared_distances_to_centers(X[tail], centers, labels[tail])
    reference = ((X[tail].astype(cupy.float64) - centers[labels[tail]].astype(cupy.float64)) ** 2).sum(1)
    cupy.testing.assert_allclose(distances, reference, rtol=1e-12)
