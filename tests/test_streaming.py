"""Exact Lloyd on data larger than memory (gpukmeans._streaming): a fit on a numpy.memmap
read a block of rows at a time gives the in-memory fit of the same array, bit for bit, and
its memory stays a few blocks whatever the number of samples."""

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpukmeans import KMeans, _cpu_small, _streaming
from streaming_checks import fit_streamed

REPO = pathlib.Path(__file__).resolve().parents[1]


def _n_samples(n_features):
    """Past the NumPy engine's passes (its distances' samples, and its row norms'
    values), so that the data stream; no multiple of anything."""
    return max(_cpu_small.MAX_DISTANCES, _cpu_small.MAX_PASS_ELEMENTS // n_features) + 4001


def _memmap(X, tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X)
    return np.load(path, mmap_mode="r")


def _blobs(rng, n_samples, n_features, dtype, offset=0.0, n_centers=6):
    centers = rng.uniform(-5, 5, (n_centers, n_features))
    X = (centers[rng.integers(0, n_centers, n_samples)]
         + rng.standard_normal((n_samples, n_features)))
    return (X + offset).astype(dtype)


def _assert_same_fit(streamed, in_memory):
    assert np.array_equal(streamed.labels_, in_memory.labels_)
    assert np.array_equal(streamed.cluster_centers_, in_memory.cluster_centers_)
    assert streamed.inertia_ == in_memory.inertia_
    assert streamed.n_iter_ == in_memory.n_iter_


@pytest.mark.parametrize(
    "dtype, n_features, n_clusters, offset, weighted",
    [
        # float64 is always centred; float32 far from the origin too, near it used as is.
        (np.float64, 17, 9, 0.0, False),
        (np.float32, 17, 32, 100.0, False),
        (np.float32, 4, 5, 0.0, True),  # few features: the by-rows kernel
        (np.float64, 1, 3, 0.0, True),  # one feature: NumPy's pairwise variance
        # beyond 64 features, 5 k-means++ candidates: their dot products row by row
        (np.float64, 80, 24, 0.0, True),
    ],
)
def test_streamed_fit_is_the_in_memory_fit(dtype, n_features, n_clusters, offset, weighted,
                                           rng, tmp_path, monkeypatch):
    """k-means++, the tolerance, every step's sums and labels, the final E-step and the
    inertia: equal bit for bit, from blocks of a few thousand rows that cut the groups
    of the in-memory sums (n_samples is no multiple of anything)."""
    n_samples = _n_samples(n_features)
    X = _blobs(rng, n_samples, n_features, dtype, offset)
    sample_weight = rng.uniform(0.5, 2.0, n_samples) if weighted else None
    params = dict(n_clusters=n_clusters, random_state=3, device="cpu", max_iter=15)
    in_memory = KMeans(**params).fit(X, sample_weight=sample_weight)
    streamed = fit_streamed(KMeans(**params, stream_block_rows=3000), _memmap(X, tmp_path),
                            monkeypatch, _streaming, sample_weight=sample_weight)
    _assert_same_fit(streamed, in_memory)
    # Inference on the streamed model is the in-memory model's.
    assert np.array_equal(streamed.predict(X[:1000]), in_memory.predict(X[:1000]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_fit_streams_its_unit_rows(dtype, rng, tmp_path, monkeypatch):
    """metric="cosine" on a memmap: the unit rows go to a temporary file, block by block,
    and the fit streams them: the in-memory cosine fit bit for bit. Zero rows anywhere in
    the file are named before any work, all of them, by their rows in X."""
    n_samples = _n_samples(16)
    X = _blobs(rng, n_samples, 16, dtype, offset=3.0) * rng.uniform(0.1, 10, (n_samples, 1))
    X = X.astype(dtype)
    params = dict(n_clusters=7, metric="cosine", random_state=2, device="cpu", max_iter=15)
    in_memory = KMeans(**params).fit(X)
    from gpukmeans import _replay

    files = []
    real_temporary_array = _replay.temporary_array
    monkeypatch.setattr(_replay, "temporary_array",
                        lambda *a, **k: files.append(real_temporary_array(*a, **k)) or files[-1])
    streamed = fit_streamed(KMeans(**params, stream_block_rows=3000), _memmap(X, tmp_path),
                            monkeypatch, _streaming)
    _assert_same_fit(streamed, in_memory)
    # The unit rows went to a file, not to the process's memory.
    assert [f.shape for f in files] == [X.shape] and files[0].dtype == dtype
    X[[5, n_samples - 2]] = 0
    with pytest.raises(ValueError, match=rf"2 have none \(rows 5, {n_samples - 2}\)"):
        KMeans(**params, stream_block_rows=3000).fit(_memmap(X, tmp_path))


def test_final_pass_is_the_in_memory_plain_runs(rng):
    """The streamed plain run's final E-step and inertia are the in-memory run's one pass
    (``labels_inertia``) bit for bit, on data that need not stream."""
    from gpukmeans import _cpu

    with _cpu.cpu_runtime():
        for _ in range(40):
            n_samples, n_features = int(rng.integers(500, 3000)), int(rng.integers(1, 5))
            X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.1, 10)
            centers = X[rng.integers(0, n_samples, int(rng.integers(1, 40)))] + 0.5
            weights = rng.uniform(0, 3, n_samples)
            labels, streamed_labels = (np.empty(n_samples, dtype=np.int32) for _ in range(2))
            in_memory = _cpu.labels_inertia(X, weights, centers, labels)
            data = _streaming.StreamedData(X, weights, 700)
            streamed = _streaming.StreamedPlainRun(data).finish(centers, streamed_labels, True)
            np.testing.assert_array_equal(streamed_labels, labels)
            assert streamed == in_memory


def test_memmap_streams_without_parameters(rng, tmp_path, monkeypatch):
    """A memmap streams by default (blocks of about 32 MiB), and gives the same fit."""
    X = _blobs(rng, _n_samples(16), 16, np.float64)
    streamed = fit_streamed(KMeans(5, random_state=0, device="cpu"), _memmap(X, tmp_path),
                            monkeypatch, _streaming)
    _assert_same_fit(streamed, KMeans(5, random_state=0, device="cpu").fit(X))


def test_streamed_fits_take_no_row_norms_in_validation(rng, tmp_path, monkeypatch):
    """Validation's float32 pass takes row norms (8 bytes a sample) only for in-memory
    fits: a memmap, or an array with ``stream_block_rows``, streams its norms block by
    block; the fits are still the in-memory fit."""
    from gpukmeans import _cpu

    asked = []
    monkeypatch.setattr(_cpu, "scan_float32", lambda X, with_norms, scan=_cpu.scan_float32:
                        asked.append(with_norms) or scan(X, with_norms))
    X = _blobs(rng, 2**15 + 100, 8, np.float32)  # past MAX_SAMPLES and MAX_PASS_ELEMENTS
    in_memory = KMeans(5, random_state=0, device="cpu", max_iter=5).fit(X)
    assert asked == [True]
    for data, params in ((_memmap(X, tmp_path), {}), (X, {"stream_block_rows": 10_000})):
        asked.clear()
        streamed = KMeans(5, random_state=0, device="cpu", max_iter=5, **params).fit(data)
        assert asked == [False]
        _assert_same_fit(streamed, in_memory)


@pytest.mark.parametrize("init", ["random", "array", "callable"])
def test_other_inits_and_an_emptied_cluster(init, rng, tmp_path, monkeypatch):
    """init="random", an array (one center far away: its cluster empties at the first
    step and takes the farthest sample) and a callable, which is given the caller's
    array and whose centers are moved into the fit's (centred) frame."""
    n_samples = _n_samples(6)
    X = _blobs(rng, n_samples, 6, np.float64, offset=50.0)
    start = X[rng.choice(n_samples, 4, replace=False)].copy()
    start[-1] = 1e4
    init_param = {"random": "random", "array": start,
                  "callable": lambda data, k, random_state: data[:k] * 1.0}[init]
    params = dict(n_clusters=4, init=init_param, n_init=1, random_state=0, device="cpu",
                  max_iter=20)
    in_memory = KMeans(**params).fit(X)
    from gpukmeans import _streaming

    relocations = []
    far_samples = _streaming.StreamedData.far_samples
    monkeypatch.setattr(_streaming.StreamedData, "far_samples",
                        lambda *a: relocations.append(a[-1]) or far_samples(*a))
    streamed = fit_streamed(KMeans(**params, stream_block_rows=5000), _memmap(X, tmp_path),
                            monkeypatch, _streaming)
    if init == "callable":
        # The callable saw X itself, not X - mean: its centers went through one rounding
        # more. The same clustering, to the rounding of the centring.
        assert np.array_equal(streamed.labels_, in_memory.labels_)
        np.testing.assert_allclose(streamed.cluster_centers_, in_memory.cluster_centers_,
                                   rtol=1e-12, atol=1e-12)
        return
    _assert_same_fit(streamed, in_memory)
    if init == "array":
        assert relocations == [1]


@pytest.mark.parametrize(
    "dtype, n_clusters, weighted, init, block_rows",
    [
        (np.float32, 22, True, "k-means++", 3000),  # Hamerly's bounds in memory
        (np.float32, 26, False, "array", 2000),  # Elkan's, a far center that empties
        pytest.param(np.float32, 21, False, "array", 7000, marks=pytest.mark.slow),
        pytest.param(np.float32, 24, True, "k-means++", 5000, marks=pytest.mark.slow),
        # float64: the plain step, in memory as streamed
        pytest.param(np.float64, 10, True, "array", 3000, marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("start", ["plain-first", "bounded-first"])
def test_bounds_shapes_stream_bit_for_bit(dtype, n_clusters, weighted, init, block_rows,
                                          start, rng, tmp_path, monkeypatch):
    """Where the in-memory float32 fit keeps Hamerly's or Elkan's bounds (many features,
    few clusters), the streamed fit runs the same bounds kernels on the gathered blocks:
    each sample is moved between the clusters' sums in the same order, and the fit is
    the in-memory fit's, bit for bit."""
    from gpukmeans import _cpu, _cpu_bounds

    # Elkan's bounds from 24 clusters of 40 features (by default only from 98,304
    # clusters x features: elkan_pays), bounded from the second step on (by default
    # once the labels settle: the first step is plain, streamed or not), or from the
    # first.
    monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTER_FEATURES", 1)
    monkeypatch.setattr(_cpu_bounds, "START_CHANGED", 1.0)
    if start == "bounded-first":  # as runs of more than 256 features are
        monkeypatch.setattr(_cpu_bounds, "START_PLAIN_MAX_FEATURES", 0)
    n_features = 40
    n_samples = _n_samples(n_features)
    X = _blobs(rng, n_samples, n_features, dtype, n_centers=n_clusters)
    assert _cpu._bounds_pay(X, n_clusters)
    elkan = _cpu_bounds.elkan_by_shape(n_features, n_clusters)
    sample_weight = rng.uniform(0.5, 2.0, n_samples) if weighted else None
    if init == "array":
        init = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
        init[-1] = 1e3  # far from every sample: its cluster empties at the first step
    params = dict(n_clusters=n_clusters, init=init, n_init=1, random_state=1,
                  device="cpu", max_iter=12, tol=0)
    in_memory = KMeans(**params).fit(X, sample_weight=sample_weight)
    runs = []
    real_init = _streaming.StreamedBoundsRun.__init__
    monkeypatch.setattr(_streaming.StreamedBoundsRun, "__init__",
                        lambda self, *a: runs.append(self) or real_init(self, *a))
    step = "StreamedBoundsRun.step" if dtype == np.float32 else "lloyd_iter"
    streamed = fit_streamed(KMeans(**params, stream_block_rows=block_rows),
                            _memmap(X, tmp_path), monkeypatch, _streaming, step=step,
                            sample_weight=sample_weight)
    _assert_same_fit(streamed, in_memory)
    if dtype == np.float32:
        assert [run.elkan for run in runs] == [elkan]
        # The bounds live in files, not in the process's memory.
        assert all(isinstance(array, np.memmap) for array in runs[0].per_sample)


@pytest.mark.parametrize("max_iter", [1, 2])
def test_bounds_runs_ended_before_their_bounds_stream_bit_for_bit(max_iter, rng, tmp_path,
                                                                 monkeypatch):
    """A run with bounds that ends while it still takes plain steps (the labels never
    settled) ends with the plain run's final pass, streamed as in memory: the same fit
    bit for bit, and no bounded step or search in either."""
    from gpukmeans import _cpu, _cpu_bounds

    monkeypatch.setattr(_cpu_bounds, "START_CHANGED", 0.0)  # never settled
    n_features, n_clusters = 40, 22
    n_samples = _n_samples(n_features)
    X = _blobs(rng, n_samples, n_features, np.float32, n_centers=n_clusters)
    assert _cpu.run_kind(X, n_clusters) == "bounds"
    bounded = []
    e_step = _cpu_bounds.BoundsRun._e_step
    monkeypatch.setattr(_cpu_bounds.BoundsRun, "_e_step",
                        lambda self, *a: bounded.append(self) or e_step(self, *a))
    params = dict(n_clusters=n_clusters, random_state=1, device="cpu", max_iter=max_iter,
                  tol=0)
    in_memory = KMeans(**params).fit(X)
    streamed = fit_streamed(KMeans(**params, stream_block_rows=3000), _memmap(X, tmp_path),
                            monkeypatch, _streaming, step="StreamedBoundsRun.step")
    _assert_same_fit(streamed, in_memory)
    assert bounded == []


def test_yinyang_shapes_stream_bit_for_bit(rng, tmp_path, monkeypatch):
    """Where the in-memory float32 fit keeps Yinyang's group bounds (many clusters), the
    streamed fit takes the plain step: Yinyang's results are the plain step's bit for
    bit, so the streamed fit is the in-memory one."""
    from gpukmeans import _cpu, _cpu_yinyang

    n_features, n_clusters = 24, 40
    monkeypatch.setattr(_cpu, "YINYANG_MIN_CLUSTER_FEATURES", n_features * n_clusters)
    monkeypatch.setattr(_cpu_yinyang, "CLUSTERS_PER_GROUP", 4)
    n_samples = _n_samples(n_features)
    X = _blobs(rng, n_samples, n_features, np.float32, n_centers=n_clusters)
    assert _cpu.run_kind(X, n_clusters) == "yinyang"
    runs = []
    real_init = _cpu_yinyang.YinyangRun.__init__
    monkeypatch.setattr(_cpu_yinyang.YinyangRun, "__init__",
                        lambda self, *a: runs.append(self) or real_init(self, *a))
    params = dict(n_clusters=n_clusters, random_state=1, device="cpu", max_iter=15, tol=0)
    in_memory = KMeans(**params).fit(X)
    assert len(runs) == 1
    streamed = fit_streamed(KMeans(**params, stream_block_rows=3000), _memmap(X, tmp_path),
                            monkeypatch, _streaming, step="lloyd_iter")
    _assert_same_fit(streamed, in_memory)


# The copies' three centers are one point: fewer distinct clusters, as the data say.
@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
@pytest.mark.parametrize("dtype, n_features", [(np.float64, 6), (np.float32, 40)])
def test_clusters_emptied_together_take_argpartitions_order(dtype, n_features, rng,
                                                              tmp_path, monkeypatch):
    """Four clusters empty at the first step; the farthest samples are three copies of
    one outlier (tied distances) with different weights. The streamed fit pairs them
    with the empty clusters in ``np.argpartition``'s order over all the distances
    (scikit-learn's; not lowest index first on ties), as the in-memory fit does, and the
    fits are equal bit for bit."""
    from gpukmeans import _cpu_bounds

    n_samples = _n_samples(n_features)
    X = _blobs(rng, n_samples, n_features, dtype, n_centers=4)
    copies = [10, n_samples // 2, n_samples - 7]
    X[copies] = X.max(axis=0) + 20
    sample_weight = rng.uniform(0.5, 2.0, n_samples)
    n_clusters = 22 if dtype == np.float32 else 8  # float32: Hamerly's bounds, ...
    # ... from the first step (by default, up to 256 features, once the labels settle).
    monkeypatch.setattr(_cpu_bounds, "START_PLAIN_MAX_FEATURES", 0)
    init = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    init[-4:] = 1e3 * rng.standard_normal((4, n_features))  # far from every sample
    # One iteration: the centers returned are the relocation's own.
    params = dict(n_clusters=n_clusters, init=init, n_init=1, device="cpu", max_iter=1)
    in_memory = KMeans(**params).fit(X, sample_weight=sample_weight)
    moved = []
    far_samples = _streaming.StreamedData.far_samples

    def recorded(*args):
        samples = list(far_samples(*args))
        moved.append([weight for _, _, _, weight, _ in samples])
        return samples

    monkeypatch.setattr(_streaming.StreamedData, "far_samples", recorded)
    step = "StreamedBoundsRun.step" if dtype == np.float32 else "lloyd_iter"
    streamed = fit_streamed(KMeans(**params, stream_block_rows=4000), _memmap(X, tmp_path),
                            monkeypatch, _streaming, step=step, sample_weight=sample_weight)
    _assert_same_fit(streamed, in_memory)
    # The three copies moved first (the fit rescales the weights).
    ratios = np.sort(moved[0][:3]) / np.sort(sample_weight[copies])
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-6)


def test_small_or_unsuitable_memmaps_are_read_into_memory(rng, tmp_path):
    """Below the Numba engine's passes, or in Fortran order, the memmap is an ordinary
    input: the same fit as ever."""
    from gpukmeans import _streaming

    small = rng.standard_normal((1000, 3))
    assert not _streaming.streams(small, 3)
    assert _streaming.streams(np.zeros((_n_samples(17), 17)), 3)
    assert not _streaming.streams(np.zeros((_n_samples(17), 17), order="F"), 3)
    X = _memmap(small, tmp_path)
    a = KMeans(3, random_state=0, device="cpu").fit(X)
    b = KMeans(3, random_state=0, device="cpu").fit(small)
    _assert_same_fit(a, b)


@pytest.mark.parametrize(
    "dtype, n_features, metric, weighted, few_rows",
    [
        (np.float32, 17, "euclidean", True, False),
        (np.float64, 5, "euclidean", True, False),
        (np.float32, 16, "cosine", False, False),
        # 5 distinct rows for 9 clusters and an oversampling of 0.01 (0.09 expected
        # draws a round): too few candidates, topped up by a draw over every weight.
        (np.float64, 3, "euclidean", True, True),
    ],
)
@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
def test_kmeans_parallel_streams_bit_for_bit(dtype, n_features, metric, weighted, few_rows,
                                            rng, tmp_path, monkeypatch):
    """init="k-means||" on a memmap: each sample's distance to its nearest candidate and
    that candidate's number live in temporary files, the draws are made a block at a
    time from the one stream, the cost is NumPy's pairwise sum replayed, the candidates'
    weights a sequential sum continued from block to block: the in-memory candidates,
    their weights and the fit bit for bit, from blocks that cut everything."""
    from gpukmeans import _init

    n_samples = _n_samples(n_features)
    X = _blobs(rng, n_samples, n_features, dtype, offset=3.0)
    if few_rows:
        X = X[np.arange(n_samples) % 5]
    sample_weight = rng.uniform(0.5, 2.0, n_samples) if weighted else None
    reclustered, per_sample = [], []
    recluster, temporary_array = _init.recluster_candidates, _init.temporary_array
    monkeypatch.setattr(_init, "recluster_candidates",
                        lambda *a: reclustered.append(a[:2]) or recluster(*a))
    monkeypatch.setattr(_init, "temporary_array",
                        lambda *a, **kw: per_sample.append(temporary_array(*a, **kw))
                        or per_sample[-1])
    params = dict(n_clusters=9, init="k-means||", metric=metric, random_state=4,
                  device="cpu", max_iter=10, oversampling_factor=0.01 if few_rows else 2.0)
    topped_up, setdiff1d = [], np.setdiff1d  # called by the top-up only
    monkeypatch.setattr(np, "setdiff1d", lambda *a: topped_up.append(1) or setdiff1d(*a))
    in_memory = KMeans(**params).fit(X, sample_weight=sample_weight)
    streamed = fit_streamed(KMeans(**params, stream_block_rows=3000), _memmap(X, tmp_path),
                            monkeypatch, _streaming, sample_weight=sample_weight)
    (candidates, weights), (streamed_candidates, streamed_weights) = reclustered
    # The streamed fit's two per-sample arrays (distances, nearest candidates) are files.
    assert len(per_sample) == 2 and all(isinstance(a, np.memmap) for a in per_sample)
    assert [a.shape for a in per_sample] == [(n_samples,)] * 2
    assert len(topped_up) == (2 if few_rows else 0)
    assert candidates.shape[0] >= 9 if few_rows else candidates.shape[0] > 50
    assert np.array_equal(streamed_candidates, candidates)
    assert np.array_equal(streamed_weights, weights)
    _assert_same_fit(streamed, in_memory)


def test_temporary_arrays_leave_no_file_to_the_garbage_collector():
    """The streamed fits' temporary arrays (k-means||'s and k-means++'s per-sample
    values, bounds, relocation distances, cosine unit rows) come from one function,
    which closes its file object at once: np.memmap of a TemporaryFile left it to the
    garbage collector, a ResourceWarning under ``python -X dev``."""
    import gc
    import warnings

    from gpukmeans._replay import temporary_array

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        array = temporary_array((1000, 3), np.float32)
        array[:] = 2
        assert array.sum() == 6000 and isinstance(array, np.memmap)
        del array
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    package = REPO / "gpukmeans"
    users = [path.name for path in package.glob("*.py") if "tempfile.TemporaryFile(" in path.read_text()]
    assert users == ["_replay.py"]


def test_stream_block_rows_is_validated():
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="stream_block_rows"):
        KMeans(2, stream_block_rows=0).fit(X)
    with pytest.raises(TypeError, match="stream_block_rows"):
        KMeans(2, stream_block_rows=2.5).fit(X)


def test_numpy_sums_are_replayed_block_by_block(rng):
    """The pairwise sum that decides float32 centring and sums the weights, and the
    sequential column sums of the variances, equal NumPy's own."""
    from gpukmeans._streaming import pairwise_sum

    for n in (7, 129, 8193, 1_000_003):
        values = rng.random(n).astype(np.float32)
        for max_rows in (100, 4096):
            got = pairwise_sum(lambda a, b: values[a:b], n, max_rows)
            assert got == np.add.reduce(values)


PEAK_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    from gpukmeans import KMeans

    def rss_anon():  # the process's own memory, not the file's pages in the page cache
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024

    path, block_rows, n_clusters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    inference = sys.argv[4] == "inference"
    X = np.load(path, mmap_mode="r")
    params = dict(random_state=0, device="cpu", max_iter=3, stream_block_rows=block_rows)
    small = KMeans(n_clusters, **params).fit(X[: 2**18 + 1000])  # loads the kernels first
    if inference:
        small.predict(X[: 2**18 + 1000]), small.score(X[: 2**18 + 1000])
        model = KMeans(n_clusters, **params).fit(X)
        assert model._fit_origin is not None  # inference centres X as the fit did
    base = rss_anon()
    peak, done = [base], []

    def sample():
        while not done:
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.001)

    thread = threading.Thread(target=sample)
    thread.start()
    if inference:
        model.predict(X), model.score(X)
    else:
        KMeans(n_clusters, **params).fit(X)
    done.append(1)
    thread.join()
    print(peak[0] - base)
""")


def _peak_growth(path, block_rows, n_clusters, what="fit"):
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path), str(block_rows), str(n_clusters), what],
        capture_output=True, text=True, check=True, cwd=REPO,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    return int(out.stdout.split()[-1])


def _write_blobs(path, n_samples, n_features, rng, offset=0.0):
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(n_samples, n_features))
    for start in range(0, n_samples, 2**17):
        end = min(start + 2**17, n_samples)
        X[start:end] = (rng.standard_normal((end - start, n_features), dtype=np.float32)
                        + rng.integers(0, 4, (end - start, 1)) + offset)
    X.flush()
    return X.nbytes


@pytest.mark.parametrize("n_samples", [2**19, pytest.param(2**22, marks=pytest.mark.slow)])
def test_peak_memory_is_a_few_blocks(n_samples, rng, tmp_path):
    """RssAnon (the process's own pages; the file's are the page cache's) grows by the
    labels (two int32 per sample) and a few blocks, not by the data: 64 MB of data
    (512 MB in the slow run), blocks of 16,384 rows (2 MB). Far from the origin, so that
    the warm-up fit centres as the measured one does (with the offset 0 of these blobs,
    the mean's squared norm equals the spread in expectation: either fit could take the
    other path, and compile its kernels while measured)."""
    block_rows, n_features = 16384, 32
    data_bytes = _write_blobs(tmp_path / "X.npy", n_samples, n_features, rng, offset=10.0)
    growth = _peak_growth(tmp_path / "X.npy", block_rows, 8)
    block_bytes = block_rows * n_features * 4
    bound = 2 * 4 * n_samples + 6 * block_bytes + 16 * 2**20
    assert growth < bound, (growth, bound, data_bytes)
    # Not a copy of the data (64 MB at 2^19 rows): measured 11-15 MB on the 2-core EPYC
    # and 18.8 MB in one CI run, against data / 4 = 16 MB before.
    assert growth < data_bytes / 3


def test_inference_on_a_memmap_holds_no_copy_of_it(rng, tmp_path):
    """predict and score on a memmap whose fit was centred read it block by block:
    RssAnon grows by the labels, the unit weights and a few blocks, not by a centred
    copy of X."""
    n_samples, block_rows, n_features = 2**19, 16384, 32
    # Far from the origin: the float32 fit centres.
    data_bytes = _write_blobs(tmp_path / "X.npy", n_samples, n_features, rng, offset=10.0)
    growth = _peak_growth(tmp_path / "X.npy", block_rows, 8, "inference")
    bound = 2 * 4 * n_samples + 6 * block_rows * n_features * 4 + 16 * 2**20
    assert growth < bound, (growth, bound, data_bytes)
    assert growth < data_bytes / 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_inference_on_a_memmap_streams(dtype, rng, tmp_path, monkeypatch):
    """A cosine model's predict and score on a memmap normalise it block by block (no
    copy of X) and equal the in-memory inference bit for bit, zero rows (cosine
    distance 1, label 0) and weights included; transform is unchanged."""
    n_features = 12
    X = _blobs(rng, _n_samples(n_features), n_features, dtype, offset=2.0)
    X *= rng.uniform(0.1, 10, (X.shape[0], 1)).astype(dtype)
    km = KMeans(6, metric="cosine", random_state=0, device="cpu", max_iter=5).fit(X)
    X[[3, X.shape[0] - 7]] = 0  # empty documents at query time
    labels, _ = _assert_streamed_inference(km, X, rng, tmp_path, monkeypatch)
    assert labels[3] == 0


@pytest.mark.parametrize("dtype, offset", [(np.float32, 100.0), (np.float64, 0.0)])
def test_inference_on_a_memmap_is_the_in_memory_inference(dtype, offset, rng, tmp_path,
                                                          monkeypatch):
    """predict, score (weighted or not) and transform on a memmap, centred block by
    block as the fit centred X, equal the same model's on the array in memory, bit for
    bit; fit_predict is the fit's labels."""
    n_features = 17
    X = _blobs(rng, _n_samples(n_features), n_features, dtype, offset)
    km = KMeans(7, random_state=0, device="cpu", max_iter=5).fit(X)
    assert km._fit_origin is not None  # inference centres X
    _, memmap = _assert_streamed_inference(km, X, rng, tmp_path, monkeypatch)
    refit = KMeans(7, random_state=0, device="cpu", max_iter=5, stream_block_rows=3000)
    assert np.array_equal(refit.fit_predict(memmap), km.labels_)


def _assert_streamed_inference(km, X, rng, tmp_path, monkeypatch):
    """predict, score (weighted or not) and transform of ``km`` on X as a memmap, with
    blocks of 3,000 rows: the in-memory inference bit for bit, predict and both scores
    streamed. Returns the labels and the memmap."""
    sample_weight = rng.uniform(0.5, 2.0, X.shape[0])
    labels, score = km.predict(X), km.score(X)
    weighted_score, distances = km.score(X, sample_weight=sample_weight), km.transform(X)
    memmap = _memmap(X, tmp_path)
    streamed = []
    real = _streaming.assign_labels
    monkeypatch.setattr(_streaming, "assign_labels",
                        lambda *a, **kw: streamed.append(1) or real(*a, **kw))
    km.set_params(stream_block_rows=3000)
    assert np.array_equal(km.predict(memmap), labels)
    assert km.score(memmap) == score
    assert km.score(memmap, sample_weight=sample_weight) == weighted_score
    assert np.array_equal(km.transform(memmap), distances)
    assert len(streamed) == 3
    return labels, memmap
