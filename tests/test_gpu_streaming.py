"""Host data larger than the GPU (gpukmeans._gpu_streaming): a GPU fit within
``max_device_memory`` streams X to the device in blocks and gives the in-memory GPU fit,
up to the rounding of float64 sums; where not even a block fits, MemoryError. On the
emulated device in every run, on a real GPU (pinned buffers, a copy stream) where one is
usable."""

import warnings

import numpy as np
import pytest

from gpukmeans import KMeans, _gpu_streaming
from gpukmeans._backend import cuda_backend, use_backend
from streaming_checks import fit_streamed


@pytest.fixture(params=["emulated", pytest.param("cuda", marks=pytest.mark.gpu)])
def on_gpu(request):
    """``KMeans(device="gpu")`` runs on the emulated device, or on CuPy + NVRTC."""
    backend = (cuda_backend() if request.param == "cuda"
               else request.getfixturevalue("emulated_device").backend())
    with use_backend(backend):
        yield backend


def _budget(X, n_clusters, block_rows):
    """The ``max_device_memory`` that makes a streamed fit of blocks of ``block_rows``."""
    fixed, per_row = _gpu_streaming.streamed_bytes(*X.shape, n_clusters, X.dtype.itemsize)
    return fixed + block_rows * per_row


@pytest.mark.parametrize("dtype, weighted", [(np.float32, True), (np.float64, False)])
def test_streamed_gpu_fit_is_the_in_memory_gpu_fit(on_gpu, dtype, weighted, rng,
                                                   monkeypatch, tmp_path):
    """From a memmap, blocks of 512 rows (n no multiple of a block): the same labels,
    iterations and k-means++ centers; centers and inertia within the rounding of float64
    sums grouped otherwise (bitwise for float32 centers on these data)."""
    n_samples, n_features, n_clusters = 2501, 5, 4
    centers = rng.uniform(-5, 5, (n_clusters, n_features))
    X = (centers[rng.integers(0, n_clusters, n_samples)]
         + rng.standard_normal((n_samples, n_features)) + 20).astype(dtype)
    np.save(tmp_path / "X.npy", X)
    X_file = np.load(tmp_path / "X.npy", mmap_mode="r")
    sample_weight = rng.uniform(0.5, 2, n_samples) if weighted else None
    params = dict(n_clusters=n_clusters, random_state=0, device="gpu", max_iter=20)
    in_memory = KMeans(**params).fit(X, sample_weight=sample_weight)
    streamed = fit_streamed(
        KMeans(**params, max_device_memory=_budget(X, n_clusters, 512)), X_file, monkeypatch,
        _gpu_streaming, sample_weight=sample_weight)
    assert np.array_equal(streamed.labels_, in_memory.labels_)
    assert streamed.n_iter_ == in_memory.n_iter_
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(streamed.cluster_centers_, in_memory.cluster_centers_,
                               rtol=rtol, atol=0)
    assert streamed.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_parallel_when_streamed(on_gpu, dtype, rng, monkeypatch, tmp_path):
    """init="k-means||" on data larger than the GPU: the in-memory GPU fit's candidates
    and their weights bit for bit (labels and distances per row, on the paths the whole
    X takes; the draws, the cost and the weights' sums on the host, replayed), then its
    labels."""
    from gpukmeans import _init

    n_samples, n_features, n_clusters = 2501, 5, 4
    centers = rng.uniform(-5, 5, (n_clusters, n_features))
    X = (centers[rng.integers(0, n_clusters, n_samples)]
         + rng.standard_normal((n_samples, n_features))).astype(dtype)
    np.save(tmp_path / "X.npy", X)
    sample_weight = rng.uniform(0.5, 2, n_samples)
    reclustered = []
    recluster = _init.recluster_candidates
    monkeypatch.setattr(_init, "recluster_candidates",
                        lambda *a: reclustered.append(a[:2]) or recluster(*a))
    params = dict(n_clusters=n_clusters, init="k-means||", random_state=0, device="gpu",
                  max_iter=20)
    in_memory = KMeans(**params).fit(X, sample_weight=sample_weight)
    streamed = fit_streamed(
        KMeans(**params, max_device_memory=_budget(X, n_clusters, 512)),
        np.load(tmp_path / "X.npy", mmap_mode="r"), monkeypatch, _gpu_streaming,
        sample_weight=sample_weight)
    (candidates, weights), (streamed_candidates, streamed_weights) = reclustered
    assert candidates.shape[0] > 2 * n_clusters
    assert np.array_equal(streamed_candidates, candidates)
    assert np.array_equal(streamed_weights, weights)
    assert np.array_equal(streamed.labels_, in_memory.labels_)
    assert streamed.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-12)


def test_cosine_fit_streams_its_unit_rows(on_gpu, rng, monkeypatch, tmp_path):
    """metric="cosine" on data larger than the GPU: the unit rows, made on the host
    block by block, are streamed; the in-memory GPU cosine fit (unit rows made on the
    GPU, rounded alike to within an ulp) up to float64 sums' rounding."""
    n_samples, n_features, n_clusters = 2501, 6, 4
    X = rng.standard_normal((n_samples, n_features)) + rng.uniform(-2, 2, n_features)
    np.save(tmp_path / "X.npy", X)
    params = dict(n_clusters=n_clusters, metric="cosine", random_state=0, device="gpu",
                  max_iter=20)
    in_memory = KMeans(**params).fit(X)
    streamed = fit_streamed(
        KMeans(**params, max_device_memory=_budget(X, n_clusters, 512)),
        np.load(tmp_path / "X.npy", mmap_mode="r"), monkeypatch, _gpu_streaming)
    assert np.array_equal(streamed.labels_, in_memory.labels_)
    np.testing.assert_allclose(streamed.cluster_centers_, in_memory.cluster_centers_,
                               rtol=1e-12, atol=1e-15)
    assert streamed.inertia_ == pytest.approx(in_memory.inertia_, rel=1e-10)


def test_relocation_and_array_init_when_streamed(on_gpu, rng, monkeypatch):
    """An init center far away empties its cluster: the farthest sample moves to it."""
    X = rng.standard_normal((1500, 3))
    init = X[:3].copy()
    init[-1] = 1e3
    params = dict(n_clusters=3, init=init, n_init=1, device="gpu", max_iter=10)
    in_memory = KMeans(**params).fit(X)
    streamed = fit_streamed(KMeans(**params, max_device_memory=_budget(X, 3, 256)), X,
                            monkeypatch, _gpu_streaming)
    assert np.array_equal(streamed.labels_, in_memory.labels_)
    np.testing.assert_allclose(streamed.cluster_centers_, in_memory.cluster_centers_,
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clusters_emptied_together_take_argpartitions_order_when_streamed(on_gpu, dtype, rng,
                                                                            monkeypatch):
    """Eight clusters empty at the first step: the streamed fit pairs the farthest samples
    with them in ``np.argpartition``'s order over all the distances, as the in-memory fit
    does (it took them farthest first, lowest index on ties, before: other rows on other
    centers whenever argpartition leaves its last eight otherwise)."""
    from gpukmeans import _lloyd

    n_samples, n_features, n_clusters = 3001, 5, 16
    X = rng.standard_normal((n_samples, n_features)).astype(dtype)
    X[rng.choice(n_samples, 12, replace=False)] *= 6  # far, distinct samples
    # Five tied farthest samples, weighed differently: with ties, argpartition's order is
    # not lowest index first (it was in 3 of 200 draws of such data).
    X[[10, 600, 1500, 2200, 2990]] = X.max(axis=0) + 20
    sample_weight = rng.uniform(0.5, 2.0, n_samples)
    init = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    init[-8:] = 1e3 * rng.standard_normal((8, n_features))  # far from every sample
    params = dict(n_clusters=n_clusters, init=init, n_init=1, device="gpu", max_iter=1)
    moved = []
    move = _lloyd.move_to_empty_clusters

    def recorded(empty_clusters, far_samples, *args):
        far_samples = list(far_samples)
        moved.append([(label, float(weight)) for _, _, label, weight, _ in far_samples])
        return move(empty_clusters, far_samples, *args)

    monkeypatch.setattr(_lloyd, "move_to_empty_clusters", recorded)
    in_memory = KMeans(**params).fit(X, sample_weight=sample_weight)
    streamed = fit_streamed(KMeans(**params, max_device_memory=_budget(X, n_clusters, 512)),
                            X, monkeypatch, _gpu_streaming, sample_weight=sample_weight)
    assert len(moved) == 2 and len(moved[0]) == 8
    assert moved[1] == moved[0]
    assert np.array_equal(streamed.labels_, in_memory.labels_)
    np.testing.assert_allclose(streamed.cluster_centers_, in_memory.cluster_centers_,
                               rtol=1e-12 if dtype == np.float64 else 1e-6)


def test_data_that_fit_are_not_streamed(on_gpu, rng, monkeypatch):
    X = rng.standard_normal((800, 3))
    passes = []
    monkeypatch.setattr(_gpu_streaming, "lloyd_iter", lambda *a: passes.append(1))
    KMeans(3, device="gpu", random_state=0, max_device_memory=10**9).fit(X)
    assert not passes


def test_memory_error_names_the_sizes(on_gpu, rng):
    """Not even a block of 256 rows beside the labels: a clear MemoryError, no work."""
    X = rng.standard_normal((5000, 3))
    fixed, per_row = _gpu_streaming.streamed_bytes(5000, 3, 4, 8)
    with pytest.raises(MemoryError, match=r"120000 bytes: 5000 x 3 float64.*1000 bytes"):
        KMeans(4, device="gpu", max_device_memory=1000).fit(X)
    with pytest.raises(MemoryError, match="smallest block of 256 rows"):
        KMeans(4, device="gpu", max_device_memory=fixed + 255 * per_row).fit(X)


def test_plan():
    """Blocks are whole chunks, at most the data rounded up, and none without a budget."""
    X = np.zeros((10_000, 8))
    assert _gpu_streaming.plan(X, 4, None) is None
    assert _gpu_streaming.plan(X, 4, 10**9) is None
    fixed, per_row = _gpu_streaming.streamed_bytes(10_000, 8, 4, 8)
    assert _gpu_streaming.plan(X, 4, fixed + 1000 * per_row) == 768
    with pytest.raises(ValueError, match="max_device_memory"):
        KMeans(2, max_device_memory=0).fit(X)


@pytest.mark.parametrize("integer", [np.int8, np.int16, np.int32, np.uint8])
def test_plan_takes_numpy_integer_cluster_counts(integer):
    """A NumPy integer n_clusters plans as the Python int does: its products with the
    sizes overflowed int8/int16 (a RuntimeWarning or OverflowError on a real GPU, whose
    free memory is a budget; the emulated device has none). Streamed and resident."""
    X = np.zeros((10_000, 100))
    fixed, per_row = _gpu_streaming.streamed_bytes(10_000, 100, 100, 8)
    for budget in (fixed + 3000 * per_row, 10**12):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert (_gpu_streaming.plan(X, integer(100), budget)
                    == _gpu_streaming.plan(X, 100, budget))
    assert _gpu_streaming.plan(X, integer(100), fixed + 3000 * per_row) is not None


def test_pinned_blocks_wait_before_reusing_a_buffer():
    """The double buffering's order, on a stand-in for CuPy's streams and events (no GPU
    here): each block reaches the kernels with its rows, and a buffer is refilled only
    after the compute stream finished with the block it held two steps before."""
    log = []

    class Event:
        def __init__(self, name):
            self.name = name

        def synchronize(self):
            log.append(("wait", self.name))

    class Stream:
        def __init__(self, name="compute", non_blocking=False):
            self.name, self.count = name, 0

        def record(self):
            self.count += 1
            return Event(f"{self.name}{self.count}")

        def wait_event(self, event):
            log.append(("compute waits", event.name))

    class DeviceArray(np.ndarray):
        def set(self, host, stream):
            self[...] = host
            log.append(("copy", stream.name))

    compute = Stream()
    fake = type("cupy", (), {})()
    fake.cuda = type("cuda", (), {})()
    fake.cuda.alloc_pinned_memory = lambda nbytes: bytearray(nbytes)
    fake.cuda.Stream = lambda non_blocking: Stream("copy", non_blocking)
    fake.cuda.get_current_stream = lambda: compute
    fake.empty = lambda shape, dtype: np.empty(shape, dtype).view(DeviceArray)
    source = np.arange(50, dtype=np.float32).reshape(25, 2)
    pinned = _gpu_streaming._PinnedBlocks(fake, 10, 2, np.dtype(np.float32))
    seen = []
    for start, end, rows in pinned(source, [(0, 10), (10, 20), (20, 25)]):
        seen.append(np.array(rows))
        log.append(("kernels", start))
    assert all(np.array_equal(got, source[a:b])
               for got, (a, b) in zip(seen, [(0, 10), (10, 20), (20, 25)]))
    # Block 2 reuses block 0's buffers: only after the compute stream's event for block 0.
    third_copy = [i for i, entry in enumerate(log) if entry == ("copy", "copy")][2]
    assert ("wait", "compute1") in log[:third_copy]
    assert log.index(("kernels", 0)) < log.index(("wait", "compute1"))
