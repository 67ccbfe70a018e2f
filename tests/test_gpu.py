"""The GPU engine, on the emulated device in every run and on a real GPU where one is usable.

Every test that checks results runs twice: on ``emulated`` (``tests/cudaemu``: the same
``kernels/*.cu`` compiled for the CPU, through the same launchers, launch shapes and
template choices, with NumPy arrays) and on ``cuda`` (CuPy and NVRTC; marked ``gpu``, so
skipped where no device is usable). Each kernel is checked against a float64 NumPy
reference, whole fits against the CPU engine. Outputs are poisoned (NaN, -1, or the
emulator's poisoned ``empty``) before each launch, so an element a kernel forgets to write
fails. What only hardware can tell (residency of CuPy and PyTorch arrays, the memory pool,
a > 2^31-element problem) is ``cuda`` only.
"""

import numpy as np
import pytest

from gpukmeans import KMeans, _gpu, kmeans_plusplus
from gpukmeans._backend import cuda_backend, use_backend
from gpukmeans._lloyd import to_host
from label_checks import assert_labels_nearest, near_tie_clusters, sq_dist64

BACKENDS = [
    pytest.param("emulated", id="emulated"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The GPU engine's backend: the emulated device, or CuPy + NVRTC."""
    if request.param == "cuda":
        return cuda_backend()
    return request.getfixturevalue("emulated_device").backend()


@pytest.fixture
def gpu(backend):
    """The GPU engine's launchers and engine functions on ``backend``."""
    return _gpu.GpuKernels(backend)


@pytest.fixture
def on_gpu(backend):
    """``KMeans(device="gpu")`` runs on ``backend`` inside the test."""
    with use_backend(backend):
        yield backend


@pytest.fixture
def cupy():
    return pytest.importorskip("cupy")


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


def _to_device(gpu, *arrays):
    return tuple(gpu.xp.asarray(a) for a in arrays)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n%d-d%d-k%d" % s)
@pytest.mark.parametrize("path", ["fused", "gemm"])
def test_assign_labels(gpu, shape, dtype, path):
    X, centers, _ = _data(*shape, dtype)
    labels = gpu.xp.full(X.shape[0], -1, dtype=np.int32)
    launch = gpu.assign_labels if path == "fused" else gpu.assign_labels_gemm
    launch(*_to_device(gpu, X, centers), labels)
    assert_labels_nearest(to_host(labels), X, centers, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_assign_labels_ties_go_to_the_lowest_index(gpu, dtype):
    X = np.zeros((130, 5), dtype=dtype)
    centers = np.ones((200, 5), dtype=dtype)  # all equally far
    centers[[70, 150]] = 0  # two exact matches: the lower index must win
    for launch in (gpu.assign_labels, gpu.assign_labels_gemm):
        labels = gpu.xp.full(130, -1, dtype=np.int32)
        launch(*_to_device(gpu, X, centers), labels)
        assert (to_host(labels) == 70).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1001, 1, 1), (1001, 3, 2), (1003, 784, 1000), (129, 2048, 67)],
                         ids=lambda s: "n%d-d%d-k%d" % s)
def test_pairwise_distances(gpu, shape, dtype):
    X, centers, _ = _data(*shape, dtype)
    out = gpu.xp.full((X.shape[0], centers.shape[0]), np.nan, dtype=dtype)
    gpu.pairwise_distances(*_to_device(gpu, X, centers), out)
    expected = np.sqrt(sq_dist64(X, centers))
    np.testing.assert_allclose(to_host(out), expected, rtol=_rounding_rtol(dtype), atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n%d-d%d-k%d" % s)
def test_accumulate(gpu, shape, dtype):
    """Per-cluster weighted sums and weights in float64, on fixed labels (many clusters
    empty when k is large), bitwise reproducible."""
    X, centers, sample_weight = _data(*shape, dtype)
    n_samples, n_clusters = X.shape[0], centers.shape[0]
    rng = np.random.default_rng(1)
    labels = rng.integers(0, max(1, n_clusters // 2 + 1), n_samples).astype(np.int32)
    labels[: n_samples // 3] = n_clusters - 1  # one big cluster spanning many pieces
    X_d, w_d, labels_d = _to_device(gpu, X, sample_weight, labels)
    sums, weight_in_clusters = gpu.accumulate(X_d, w_d, labels_d, n_clusters)

    expected_sums = np.zeros((n_clusters, X.shape[1]))
    np.add.at(expected_sums, labels, sample_weight.astype(np.float64)[:, None] * X.astype(np.float64))
    expected_weight = np.bincount(labels, weights=sample_weight.astype(np.float64), minlength=n_clusters)
    sums, weight_in_clusters = to_host(sums), to_host(weight_in_clusters)
    assert sums.dtype == np.float64 and weight_in_clusters.dtype == np.float64
    np.testing.assert_allclose(sums, expected_sums, rtol=SUM_RTOL, atol=SUM_ATOL)
    np.testing.assert_allclose(weight_in_clusters, expected_weight, rtol=SUM_RTOL, atol=0)
    empty = np.bincount(labels, minlength=n_clusters) == 0
    assert (weight_in_clusters[empty] == 0).all() and (sums[empty] == 0).all()

    again = gpu.accumulate(X_d, w_d, labels_d, n_clusters)
    assert sums.tobytes() == to_host(again[0]).tobytes()
    assert weight_in_clusters.tobytes() == to_host(again[1]).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate_counts_are_exact(gpu, dtype):
    X, _, _ = _data(100_003, 3, 1, dtype)
    labels = np.random.default_rng(2).integers(0, 37, X.shape[0]).astype(np.int32)
    ones = gpu.xp.ones(X.shape[0], dtype=dtype)
    _, weight_in_clusters = gpu.accumulate(*_to_device(gpu, X), ones, *_to_device(gpu, labels), 40)
    np.testing.assert_array_equal(to_host(weight_in_clusters), np.bincount(labels, minlength=40))


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate_with_wide_sort_ranges(gpu, dtype, monkeypatch):
    """Many clusters: the counting sort widens its ranges past one warp's 256 samples."""
    monkeypatch.setattr(_gpu, "SORT_MAX_COUNTS", 64)
    X, _, sample_weight = _data(3001, 5, 1, dtype)
    labels = np.random.default_rng(6).integers(0, 40, X.shape[0]).astype(np.int32)
    assert _gpu.sort_range_samples(X.shape[0], 40) > _gpu.SORT_RANGE_SAMPLES
    sums, weight = gpu.accumulate(*_to_device(gpu, X, sample_weight, labels), 40)
    expected = np.zeros((40, 5))
    np.add.at(expected, labels, sample_weight.astype(np.float64)[:, None] * X.astype(np.float64))
    np.testing.assert_allclose(to_host(sums), expected, rtol=SUM_RTOL, atol=SUM_ATOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1001, 1, 1), (3001, 784, 2), (1003, 3, 5000), (1999, 2048, 2)],
                         ids=lambda s: "n%d-d%d-k%d" % s)
def test_lloyd_iter(gpu, shape, dtype):
    X, centers, sample_weight = _data(*shape, dtype)
    labels = gpu.xp.full(X.shape[0], -1, dtype=np.int32)
    sums, weight_in_clusters = gpu.lloyd_iter(*_to_device(gpu, X, sample_weight, centers), labels)
    labels = to_host(labels)
    assert_labels_nearest(labels, X, centers, dtype)
    expected = np.zeros((centers.shape[0], X.shape[1]))
    np.add.at(expected, labels, sample_weight.astype(np.float64)[:, None] * X.astype(np.float64))
    np.testing.assert_allclose(to_host(sums), expected, rtol=SUM_RTOL, atol=SUM_ATOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1001, 1, 1), (3001, 784, 20), (1003, 3, 5000), (1999, 2048, 2),
                                   (1001, 37, 7)],
                         ids=lambda s: "n%d-d%d-k%d" % s)
def test_assigned_distances_inertia_row_norms(gpu, shape, dtype):
    """The assigned distances are NumPy's row sums bit for bit (relocation partitions
    them as scikit-learn partitions its own): d = 1, 3 (under 8 values), 37 (8 running
    sums and a remainder), 784 and 2048 (NumPy's pairwise splits)."""
    X, centers, sample_weight = _data(*shape, dtype)
    labels = np.random.default_rng(3).integers(0, centers.shape[0], X.shape[0]).astype(np.int32)
    X_d, C_d, L_d, w_d = _to_device(gpu, X, centers, labels, sample_weight)
    X64, C64 = X.astype(np.float64), centers.astype(np.float64)
    expected = ((X64 - C64[labels]) ** 2).sum(axis=1)

    distances = gpu.squared_distances_to_centers(X_d, C_d, L_d)
    assert distances.dtype == np.float64
    np.testing.assert_array_equal(to_host(distances), expected)

    inertia = gpu.inertia(X_d, w_d, C_d, L_d)
    assert inertia.shape == () and inertia.dtype == np.float64
    np.testing.assert_allclose(float(inertia), expected @ sample_weight.astype(np.float64), rtol=SUM_RTOL)
    assert float(inertia) == float(gpu.inertia(X_d, w_d, C_d, L_d))

    norms = gpu.row_norms(X_d)
    np.testing.assert_allclose(to_host(norms), (X64**2).sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_features", [1, 3, 784, 2048])
@pytest.mark.parametrize("n_candidates", [1, 7, 9])
def test_kmeanspp_candidates(gpu, n_features, n_candidates, dtype):
    X, _, sample_weight = _data(2003, n_features, 1, dtype)
    rng = np.random.default_rng(4)
    candidate_ids = rng.choice(X.shape[0], n_candidates, replace=False).astype(np.int64)
    closest = (sq_dist64(X, X[[0]])[:, 0] * rng.uniform(0.5, 1.5, X.shape[0])).astype(dtype)
    X_d, w_d, ids_d, closest_d = _to_device(gpu, X, sample_weight, candidate_ids, closest)
    distance_to_candidates, candidates_pot = gpu.kmeanspp_candidates(
        X_d, gpu.row_norms(X_d), w_d, ids_d, closest_d
    )
    distance_to_candidates = to_host(distance_to_candidates)
    expected = np.minimum(sq_dist64(X, X[candidate_ids]).T.astype(dtype), closest)
    assert distance_to_candidates.shape == (n_candidates, X.shape[0])
    np.testing.assert_allclose(distance_to_candidates, expected, rtol=_rounding_rtol(dtype))
    np.testing.assert_allclose(
        to_host(candidates_pot), distance_to_candidates.astype(np.float64) @ sample_weight,
        rtol=SUM_RTOL,
    )
    assert (distance_to_candidates[np.arange(n_candidates), candidate_ids] == 0).all()


# ----------------------------------------------------------------------------------------
# Inputs at the edges: overflow, labels the kernels did not produce, nothing at all
# ----------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
@pytest.mark.parametrize("path", ["fused", "gemm"])
def test_overflowing_float32_data_get_labels_in_range(gpu, path):
    """Finite float32 data whose squared norms overflow: every ``||c||^2 - 2 x.c`` is inf.
    Validation refuses such data (tests/test_robustness.py), but the kernels must not
    trust it did: the labels stay in [0, n_clusters), as the CPU engine's E-step gives
    (both 0), and the M-step then writes nowhere out of bounds."""
    from gpukmeans import _cpu

    X = np.array([[1e20, 1e20], [-1e20, -1e20], [1e20, 1e20]], np.float32)
    centers = X[:2].copy()
    labels = gpu.xp.full(3, -1, dtype=np.int32)
    launch = gpu.assign_labels if path == "fused" else gpu.assign_labels_gemm
    launch(*_to_device(gpu, X, centers), labels)
    cpu_labels = np.full(3, -1, dtype=np.int32)
    _cpu.e_step(X, centers, cpu_labels)
    np.testing.assert_array_equal(to_host(labels), cpu_labels)
    sums, weight = gpu.accumulate(*_to_device(gpu, X), gpu.xp.ones(3, np.float32), labels, 2)
    assert to_host(weight).sum() == 3


def test_labels_out_of_range_are_not_trusted(gpu):
    """The M-step and the distance kernels read labels but never index with one outside
    [0, n_clusters): such a sample is in no sum, and its distance is NaN."""
    X, centers, sample_weight = _data(300, 5, 4, np.float64)
    labels = np.random.default_rng(5).integers(0, 4, 300).astype(np.int32)
    bad = [0, 7, 64, 299]
    labels[bad] = [-1, 4, 2**31 - 1, -(2**31)]
    X_d, C_d, L_d, w_d = _to_device(gpu, X, centers, labels, sample_weight)
    sums, weight = gpu.accumulate(X_d, w_d, L_d, 4)
    keep = np.ones(300, bool)
    keep[bad] = False
    expected = np.zeros((4, 5))
    np.add.at(expected, labels[keep], sample_weight[keep, None] * X[keep])
    np.testing.assert_allclose(to_host(sums), expected, rtol=SUM_RTOL, atol=SUM_ATOL)
    np.testing.assert_allclose(to_host(weight), np.bincount(labels[keep], sample_weight[keep], 4),
                               rtol=SUM_RTOL)
    distances = to_host(gpu.squared_distances_to_centers(X_d, C_d, L_d))
    assert np.isnan(distances[bad]).all() and np.isfinite(distances[keep]).all()
    assert np.isnan(float(gpu.inertia(X_d, w_d, C_d, L_d)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_inputs_launch_nothing_invalid(gpu, dtype):
    """No samples: every engine function returns empty (or zero) results without a launch
    of an empty grid, which CUDA rejects."""
    xp = gpu.xp
    X = xp.zeros((0, 3), dtype=dtype)
    centers = xp.asarray(np.ones((2, 3), dtype=dtype))
    weight = xp.zeros(0, dtype=dtype)
    labels = xp.zeros(0, dtype=np.int32)
    gpu.e_step(X, centers, labels)
    gpu.assign_labels_gemm(X, centers, labels)
    sums, weight_in_clusters = gpu.lloyd_iter(X, weight, centers, labels)
    assert (to_host(sums) == 0).all() and (to_host(weight_in_clusters) == 0).all()
    assert float(gpu.inertia(X, weight, centers, labels)) == 0.0
    assert to_host(gpu.squared_distances_to_centers(X, centers, labels)).shape == (0,)
    assert to_host(gpu.row_norms(X)).shape == (0,)
    assert to_host(gpu.transform_distances(X, centers)).shape == (0, 2)
    distances, pot = gpu.kmeanspp_candidates(X, gpu.row_norms(X), weight,
                                             np.zeros(0, np.int64), xp.zeros(0, dtype=dtype))
    assert to_host(distances).shape == (0, 0) and to_host(pot).shape == (0,)


# ----------------------------------------------------------------------------------------
# Whole fits: estimator, driver, launchers and kernels, against the CPU engine
# ----------------------------------------------------------------------------------------


def _blobs(n_samples, n_features, n_clusters, dtype, seed=0):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples, n_features, centers=n_clusters, cluster_std=2.0, random_state=seed)
    init = X[np.random.default_rng(seed).choice(n_samples, n_clusters, replace=False)]
    return X.astype(dtype), init.astype(dtype)


def _assert_same_fit(gpu_fit, cpu_fit, X):
    """float64: the CPU engine's labels, iterations and centers; float32: its labels but
    for near-ties in float32 (which the CPU engine decides in float64), in both fits'
    final centers. Inertia within 1e-6 relative either way."""
    assert gpu_fit.device_ == "gpu" and cpu_fit.device_ == "cpu"
    gpu_labels, cpu_labels = to_host(gpu_fit.labels_), cpu_fit.labels_
    if X.dtype == np.float64:
        np.testing.assert_array_equal(gpu_labels, cpu_labels)
        assert gpu_fit.n_iter_ == cpu_fit.n_iter_
        np.testing.assert_allclose(to_host(gpu_fit.cluster_centers_), cpu_fit.cluster_centers_,
                                   rtol=1e-10, atol=1e-10)
    else:
        differ = np.flatnonzero(gpu_labels != cpu_labels)
        for centers in (to_host(gpu_fit.cluster_centers_), cpu_fit.cluster_centers_):
            ties = near_tie_clusters(X[differ], centers, X.dtype)
            assert set(gpu_labels[differ]) | set(cpu_labels[differ]) <= ties, differ
    np.testing.assert_allclose(gpu_fit.inertia_, cpu_fit.inertia_, rtol=1e-6)


FIT_CASES = [
    # (n_samples, n_features, n_clusters, dtype, weighted)
    (500, 2, 1, np.float64, False),
    (700, 3, 2, np.float32, True),
    (1000, 5, 7, np.float64, True),
    (1000, 17, 33, np.float32, False),
    (1500, 8, 65, np.float64, False),
    (2000, 16, 200, np.float32, True),
    (2000, 16, 200, np.float64, False),
]


@pytest.mark.parametrize("case", FIT_CASES,
                         ids=lambda c: "n%d-d%d-k%d-%s%s" % (*c[:3], np.dtype(c[3]).name,
                                                            "-weighted" * c[4]))
def test_fit_gpu_matches_cpu_from_the_same_init(on_gpu, case):
    n_samples, n_features, n_clusters, dtype, weighted = case
    X, init = _blobs(n_samples, n_features, n_clusters, dtype, seed=n_clusters)
    sample_weight = np.random.default_rng(1).uniform(0, 3, n_samples) if weighted else None
    params = dict(n_clusters=n_clusters, init=init, n_init=1, max_iter=60)
    gpu = KMeans(device="gpu", **params).fit(X, sample_weight=sample_weight)
    cpu = KMeans(device="cpu", **params).fit(X, sample_weight=sample_weight)
    _assert_same_fit(gpu, cpu, X)
    np.testing.assert_array_equal(to_host(gpu.predict(X)), to_host(gpu.labels_))
    np.testing.assert_allclose(to_host(gpu.transform(X)),
                               np.sqrt(sq_dist64(X, to_host(gpu.cluster_centers_))), rtol=1e-6)
    np.testing.assert_allclose(gpu.score(X, sample_weight=sample_weight),
                               cpu.score(X, sample_weight=sample_weight), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_with_empty_clusters_forced(on_gpu, dtype):
    """Three of six initial centers far from every sample: their clusters empty in the
    first step, and relocation gives each the farthest points, as on the CPU."""
    X = np.random.default_rng(2).standard_normal((300, 3)).astype(dtype)
    init = np.vstack([X[:3], np.full((3, 3), 50.0)]).astype(dtype)
    params = dict(n_clusters=6, init=init, n_init=1)
    _assert_same_fit(KMeans(device="gpu", **params).fit(X), KMeans(device="cpu", **params).fit(X), X)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_on_duplicated_points_and_zero_weights(on_gpu, dtype):
    """40 distinct points each repeated 10 times, a tenth of the weights zero: duplicates
    everywhere (on integer-valued data, exact ties between centers can go either way on
    the two engines, whose dot products are summed in other orders: docs/exactness.md)."""
    rng = np.random.default_rng(3)
    X = np.repeat(rng.standard_normal((40, 4)) * 3, 10, axis=0).astype(dtype)
    sample_weight = np.where(rng.random(400) < 0.1, 0.0, 1.0)
    init = X[rng.choice(400, 10, replace=False)]
    params = dict(n_clusters=10, init=init, n_init=1, max_iter=30)
    gpu = KMeans(device="gpu", **params).fit(X, sample_weight=sample_weight)
    cpu = KMeans(device="cpu", **params).fit(X, sample_weight=sample_weight)
    _assert_same_fit(gpu, cpu, X)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kmeans_plusplus_picks_the_cpu_engines_rows(on_gpu, dtype):
    X, _ = _blobs(600, 6, 12, dtype)
    sample_weight = np.random.default_rng(4).uniform(0.5, 2, 600)
    centers, indices = kmeans_plusplus(X, 12, sample_weight=sample_weight, random_state=5,
                                       device="gpu")
    cpu_centers, cpu_indices = kmeans_plusplus(X, 12, sample_weight=sample_weight,
                                               random_state=5, device="cpu")
    np.testing.assert_array_equal(to_host(indices), cpu_indices)
    np.testing.assert_array_equal(to_host(centers), cpu_centers)
    fit = KMeans(12, random_state=5, device="gpu").fit(X)
    _assert_same_fit(fit, KMeans(12, random_state=5, device="cpu").fit(X), X)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_gpu_fits_with_the_same_seed_are_bitwise_identical(on_gpu, dtype):
    X, _ = _blobs(1003, 7, 12, dtype)
    X_d = on_gpu.xp.asarray(X)
    first = KMeans(12, random_state=0, n_init=2, device="gpu").fit(X_d)
    second = KMeans(12, random_state=0, n_init=2, device="gpu").fit(X_d)
    assert to_host(first.cluster_centers_).tobytes() == to_host(second.cluster_centers_).tobytes()
    assert to_host(first.labels_).tobytes() == to_host(second.labels_).tobytes()
    assert first.inertia_ == second.inertia_ and first.n_iter_ == second.n_iter_


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5003, 3, 8), (3001, 784, 20), (2999, 64, 300)],
                         ids=lambda s: "n%d-d%d-k%d" % s)
def test_fit_gpu_matches_cpu_on_larger_shapes(shape, dtype):
    X, init = _blobs(*shape, dtype)
    params = dict(n_clusters=shape[2], init=init, n_init=1, max_iter=50, tol=0)
    gpu = KMeans(device="gpu", **params).fit(X)
    cpu = KMeans(device="cpu", **params).fit(X)
    _assert_same_fit(gpu, cpu, X)


# ----------------------------------------------------------------------------------------
# Only on a GPU: memory pool, residency, PyTorch, 64-bit indexing
# ----------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_memory_does_not_grow_with_iterations(cupy):
    gpu = _gpu.GpuKernels(cuda_backend())
    X, centers, sample_weight = _data(20_001, 784, 300, np.float32)
    X_d, w_d, C_d = cupy.asarray(X), cupy.asarray(sample_weight), cupy.asarray(centers)
    labels = cupy.empty(X.shape[0], dtype=cupy.int32)
    pool = cupy.get_default_memory_pool()
    held = []
    for _ in range(5):
        sums, weight = gpu.lloyd_iter(X_d, w_d, C_d, labels)
        del sums, weight
        cupy.cuda.Device().synchronize()
        held.append((pool.used_bytes(), pool.total_bytes()))
    assert len(set(held[1:])) == 1, held


@pytest.mark.gpu
@pytest.mark.parametrize("estimator", ["KMeans", "MiniBatchKMeans"])
def test_a_number_weights_gpu_data_as_its_copies(cupy, estimator):
    """``sample_weight=2.5`` with a CuPy X: the fit of 2.5 for every sample, as on the
    host (it was refused as a host array); 2.0, a power of two, the unit-weight fit bit
    for bit with twice its inertia (weights are scaled by powers of two, exactly)."""
    import gpukmeans

    X, _ = _blobs(2000, 5, 4, np.float32)
    X_d = cupy.asarray(X)
    cls = getattr(gpukmeans, estimator)

    def fit(sample_weight=None):
        return cls(4, random_state=0, device="gpu").fit(X_d, sample_weight=sample_weight)

    number, vector = fit(2.5), fit(cupy.full(X.shape[0], 2.5, dtype=cupy.float32))
    cupy.testing.assert_array_equal(number.cluster_centers_, vector.cluster_centers_)
    assert number.inertia_ == vector.inertia_
    plain, doubled = fit(), fit(2.0)
    cupy.testing.assert_array_equal(doubled.cluster_centers_, plain.cluster_centers_)
    assert doubled.inertia_ == 2 * plain.inertia_


@pytest.mark.gpu
def test_residency(cupy):
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


@pytest.mark.gpu
def test_torch_cuda_tensor_through_cuda_array_interface(cupy):
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


@pytest.mark.gpu
@pytest.mark.slow
def test_more_than_2_pow_31_elements(cupy):
    """64-bit indexing: n_samples * n_features > 2^31 (8.6 GB of float32)."""
    gpu = _gpu.GpuKernels(cuda_backend())
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
    gpu.assign_labels(X, centers, labels)  # the fused kernel (the rule takes the GEMM here)
    assert int((labels != true_labels).sum()) == 0
    assert int(labels[-1]) == int(true_labels[-1])
    labels_gemm = cupy.full(n_samples, -1, dtype=cupy.int32)
    gpu.assign_labels_gemm(X, centers, labels_gemm)
    assert int((labels_gemm != true_labels).sum()) == 0
    del labels_gemm

    weight = cupy.ones(n_samples, dtype=cupy.float32)
    sums, weight_in_clusters = gpu.accumulate(X, weight, labels, n_clusters)
    counts = cupy.bincount(true_labels, minlength=n_clusters).astype(cupy.float64)
    assert bool((weight_in_clusters == counts).all())
    tail = slice(n_samples - 5000, n_samples)  # rows past 2^31 elements
    last_cluster = int(labels[-1])
    member = cupy.flatnonzero(labels == last_cluster)
    expected = cupy.zeros(n_features, dtype=cupy.float64)
    for start in range(0, member.size, 100_000):
        expected += X[member[start:start + 100_000]].astype(cupy.float64).sum(axis=0)
    cupy.testing.assert_allclose(sums[last_cluster], expected, rtol=1e-9)

    distances = gpu.squared_distances_to_centers(X[tail], centers, labels[tail])
    reference = ((X[tail].astype(cupy.float64) - centers[labels[tail]].astype(cupy.float64)) ** 2).sum(1)
    cupy.testing.assert_allclose(distances, reference, rtol=1e-12)
