"""A new user's first minutes: which CPU engine a call takes, what it costs to start, and
that a compile is never silent.

Small problems run on the NumPy engine (:mod:`gpukmeans._cpu_small`), which compiles
nothing; the rest on the Numba engine, whose compile is announced, and which
``gpukmeans compile`` warms ahead of time. Timings are not asserted here (they belong to
``benchmarks/bench_startup.py``); what is asserted is what makes them: what is imported,
what is compiled, and that both engines give the same fit.
"""

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from command_checks import run
from conftest import route_cpu_fits
from gpukmeans import KMeans, _cpu_runtime, _cpu_small, kmeans_plusplus
from gpukmeans._device import get_engine

ROOT = Path(__file__).resolve().parents[1]


def _python(code, env=None, timeout=600):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        cwd=ROOT, env=env, timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result


# ---------------------------------------------------------------------- which engine


@pytest.mark.parametrize("shape, small", [
    ((100, 2, 4), True),  # the README's blobs
    ((1797, 64, 10), True),  # scikit-learn's digits
    ((5000, 784, 20), True),  # the notebook's MNIST subset
    ((2**14, 8, 16), True),
    ((2**14 + 1, 2, 2), False),  # NumPy's bookkeeping per sample outweighs Numba's load
    ((10**5, 2, 2), False),
    ((10**6, 2, 4), False),  # 4M distances per E-step: NumPy's 5 ns each would outweigh a load
    ((70000, 784, 20), False),  # all of MNIST
    ((20000, 784, 5), False),  # few clusters, but every pass reads 16M values
    ((2000, 784, 100), False),  # 157M multiply-adds per E-step
    ((10**7, 1, 1), False),
])
def test_the_shapes_alone_choose_the_cpu_engine(shape, small):
    engine = get_engine("cpu", *shape)
    assert _cpu_small.is_small(*shape) == small
    assert (engine.lloyd_iter is _cpu_small.lloyd_iter) == small
    assert engine.name == "cpu"


def test_a_larger_fit_makes_its_small_passes_in_numpy(monkeypatch, rng):
    """20,000 samples of 8 features iterate on Numba, but their row norms and centring
    are NumPy's, and so are float64 k-means++ steps while they are small (there they
    make scikit-learn's own operations): at k=3 all three (3 candidates, 60,000
    distances each), at k=40 only the first (one candidate; then 5, 100,000 distances,
    where NumPy's temporaries cost more than Numba's step). float32 steps are all
    Numba's (faster at every size measured), and so are full MNIST's."""
    calls = []
    for name in ("kmeanspp_candidates", "row_norms", "centered"):
        original = getattr(_cpu_small, name)
        monkeypatch.setattr(_cpu_small, name, lambda *args, _f=original, _n=name:
                            calls.append(_n) or _f(*args))
    X = rng.normal(size=(20000, 8)) + 3
    for dtype, n_clusters, numpy_steps in ((np.float64, 3, 3), (np.float64, 40, 1),
                                           (np.float32, 3, 0)):
        calls.clear()
        KMeans(n_clusters, random_state=0, max_iter=3, device="cpu").fit(X.astype(dtype))
        assert not _cpu_small.is_small(*X.shape, n_clusters)
        assert calls.count("kmeanspp_candidates") == numpy_steps and "centered" in calls
    calls.clear()
    engine = get_engine("cpu", 70000, 784, 20)
    big = np.zeros((70000, 784), np.float32)  # 220M multiply-adds per k-means++ step
    with engine.runtime():
        engine.row_norms(big)
        engine.kmeanspp_candidates(big, np.zeros(70000), np.ones(70000, np.float32),
                                   np.arange(4), np.zeros(70000, np.float32))
    assert calls == []


def test_small_problems_never_import_numba():
    """The README's snippet, and every method of a small model, with no JIT at all: a
    first fit costs what NumPy costs, never a compile."""
    result = _python("""
        import sys
        import numpy as np
        from sklearn.datasets import make_blobs
        from gpukmeans import KMeans, kmeans_plusplus
        X, _ = make_blobs(centers=4, cluster_std=0.5, random_state=0)
        for dtype in (np.float64, np.float32):
            km = KMeans(n_clusters=4, random_state=8, device="cpu").fit(X.astype(dtype))
            km.predict(X); km.transform(X); km.score(X); km.fit_predict(X)
        kmeans_plusplus(X, 4, random_state=0, device="cpu")
        print(km.device_, "numba" in sys.modules, "numba.core" in sys.modules)
    """)
    assert result.stdout.split() == ["cpu", "False", "False"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_samples, n_features, n_clusters", [
    (100, 2, 4), (1031, 17, 9), (3000, 30, 40), (5000, 5, 300),
])
def test_both_cpu_engines_give_the_same_fit(
    dtype, n_samples, n_features, n_clusters, rng, monkeypatch
):
    """Whichever engine the shapes pick, the answer is the same: the same k-means++ rows,
    the same labels and iterations, centers equal up to the rounding of their sums
    (float64 throughout on the NumPy engine, float32 folds on Numba's)."""
    X, _ = make_blobs(n_samples=n_samples, n_features=n_features, centers=n_clusters,
                      cluster_std=rng.uniform(0.5, 3.0), random_state=int(rng.integers(2**31)))
    X = (X + rng.normal(scale=10, size=n_features)).astype(dtype)
    sample_weight = rng.uniform(0.5, 2.0, n_samples)
    seed = int(rng.integers(2**31))
    fits = {}
    for engine in ("numpy", "numba"):
        route_cpu_fits(monkeypatch, engine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = KMeans(n_clusters, random_state=seed, device="cpu").fit(
                X, sample_weight=sample_weight)
        indices = kmeans_plusplus(X, n_clusters, random_state=seed, device="cpu")[1]
        fits[engine] = model, indices, model.transform(X[:50]), model.predict(X[::7])
    (ours, ours_idx, ours_t, ours_p), (ref, ref_idx, ref_t, ref_p) = fits["numpy"], fits["numba"]
    np.testing.assert_array_equal(ours_idx, ref_idx)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.n_iter_ == ref.n_iter_
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.abs(X).max()
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=rtol,
                               atol=rtol * scale)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-5 if dtype == np.float32 else 1e-10)
    np.testing.assert_allclose(ours_t, ref_t, rtol=rtol, atol=rtol * scale)
    np.testing.assert_array_equal(ours_p, ref_p)
    assert ours.cluster_centers_.dtype == dtype


def test_float32_fits_centre_on_one_mean_whatever_the_engine(rng, monkeypatch):
    """Float32 data far from the origin are centred on their column means summed in float64
    and rounded once, the same bits on either CPU engine: the NumPy engine's used to be
    NumPy's float32 mean, a unit in the last place off on such data, and a fit then
    drew other k-means++ rows than on the Numba engine (5,000 x 5, k=300: 700 labels
    apart)."""
    n_samples, n_features = 5000, 5
    X = (rng.normal(size=(n_samples, n_features))
         + rng.uniform(50, 500, n_features)).astype(np.float32)
    exact = np.array([math.fsum(column) for column in X.T.astype(np.float64)]) / n_samples
    origins = {}
    for engine in ("numpy", "numba"):
        route_cpu_fits(monkeypatch, engine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = KMeans(3, random_state=0, max_iter=2, device="cpu").fit(X)
        origins[engine] = model._fit_origin
    assert origins["numpy"].dtype == np.float32
    assert origins["numpy"].tobytes() == origins["numba"].tobytes()
    np.testing.assert_array_max_ulp(origins["numpy"], exact.astype(np.float32), maxulp=1)


def test_numpy_engine_is_bitwise_deterministic_across_blas_threads(rng):
    """It keeps BLAS on one thread, so the machine's core count never changes a bit."""
    from threadpoolctl import threadpool_limits

    X = rng.normal(size=(3000, 40)).astype(np.float32)
    fits = []
    for threads in (1, None):
        with threadpool_limits(threads):
            fits.append(KMeans(12, random_state=3, device="cpu").fit(X))
    np.testing.assert_array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    assert fits[0].inertia_ == fits[1].inertia_
    from threadpoolctl import threadpool_info

    with _cpu_small.small_runtime():
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}


def test_the_blas_limit_covers_a_blas_imported_after_the_first_fit(monkeypatch):
    """The threadpoolctl controller is kept between calls (building one costs
    milliseconds) but built again once a module was imported since: faiss or PyTorch
    load a BLAS of their own, which an older controller would leave unlimited."""
    import sys
    import types

    first = _cpu_small.blas_controller()
    assert _cpu_small.blas_controller() is first  # nothing imported: kept
    monkeypatch.setitem(sys.modules, "a_package_with_its_own_blas", types.ModuleType("x"))
    again = _cpu_small.blas_controller()
    assert again is not first
    assert _cpu_small.blas_controller() is again


# ---------------------------------------------------------------------- start-up


def test_import_and_help_load_neither_scikit_learn_nor_numba():
    """``import gpukmeans`` and ``gpukmeans --help`` cost what Python's own start costs:
    the public names are imported on first use."""
    result = _python("""
        import contextlib, io, sys
        import gpukmeans
        heavy = lambda: sorted(m for m in ("sklearn", "numba", "scipy", "cupy") if m in sys.modules)
        print(heavy())
        from gpukmeans._cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main(["--help"])
            except SystemExit:
                pass
        print(heavy(), "compile" in out.getvalue())
        print(gpukmeans.KMeans.__name__, "kmeans_plusplus" in dir(gpukmeans))
    """)
    assert result.stdout.splitlines() == ["[]", "[] True", "KMeans True"]


# ---------------------------------------------------------------------- compiling


def _announces_one_compile(code, tmp_path):
    """Run ``code`` (which prints "done") in a fresh Numba cache; assert that its stderr
    holds the compile notice once. Returns the environment, to run it again."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = _python(code, env=env)
    notices = [line for line in first.stderr.splitlines() if "compiling" in line]
    assert notices == [_cpu_runtime.COMPILE_NOTICE], first.stderr
    assert first.stdout.strip() == "done"
    return env


def test_a_compile_is_announced_once_per_call_and_never_for_a_cached_kernel(tmp_path):
    """In a fresh cache the first call logs a WARNING "compiling the CPU kernels", once
    per public call (its outermost runtime) however many kernels it compiles and however
    many runtimes it enters inside (``gpukmeans compile`` enters one per warm-up; it
    printed the notice 10 times), which Python shows on stderr with
    no logging set up (a new user's first fit in a notebook was silent for 14 s at
    INFO); a process that finds them in the cache says nothing. ``_group_bounds`` is the
    cheapest kernel to compile."""
    code = """
        from gpukmeans import _cpu, _cpu_lloyd, _cpu_passes
        for call in range(2):
            with _cpu.cpu_runtime():
                with _cpu.cpu_runtime():  # nested runtimes, as gpukmeans compile's
                    _cpu_lloyd._group_bounds(0, 1, 1, 1, 1)
                with _cpu.cpu_runtime():
                    _cpu_passes._squared_norm_f64(__import__("numpy").ones(3))
        print("done")
    """
    env = _announces_one_compile(code, tmp_path)
    second = _python(code, env=env)
    assert "compiling" not in second.stderr and second.stdout.strip() == "done"


def test_a_first_fit_that_validates_on_numba_announces_its_compile_once(tmp_path):
    """A fit past the NumPy engine's MAX_ELEMENTS checks X's magnitude with a Numba pass
    before it enters its engine's runtime: in a fresh cache that pass compiles too, and
    the call still announces once, not once per runtime it entered."""
    code = """
        import numpy as np
        from gpukmeans import _cpu, _cpu_lloyd, _validation
        X = np.ones((5000, 1000), dtype=np.float32)  # past MAX_ELEMENTS
        for call in range(2):
            assert _validation.largest_magnitude(X, compiled=True) == 1.0
            with _cpu.cpu_runtime():
                _cpu_lloyd._group_bounds(0, 1, 1, 1, 1)
        print("done")
    """
    _announces_one_compile(code, tmp_path)


def test_the_command_shows_the_compile_notice_on_stderr(capsys, monkeypatch):
    """The command shows the engine's compile line (and only that one) on stderr, once,
    whatever the logging configuration."""
    from gpukmeans import _cli

    def fit_that_compiles(args):
        logging.getLogger("gpukmeans._cpu").warning(_cpu_runtime.COMPILE_NOTICE)
        logging.getLogger("gpukmeans._cpu").info("something else")
        return 0

    monkeypatch.setattr(_cli, "_run_info", fit_that_compiles)
    code, out, err = run(capsys, "info")
    assert code == 0 and out == ""
    assert err == _cpu_runtime.COMPILE_NOTICE + "\n"
    assert not logging.getLogger("gpukmeans._cpu").handlers  # removed when the command ends


def test_compile_command_without_a_gpu(capsys, monkeypatch):
    from gpukmeans import _device

    monkeypatch.setattr(_device, "gpu_status", lambda: (False, "no CuPy"))
    code, out, err = run(capsys, "compile", "--device", "gpu")
    assert code == 2 and out == ""
    assert err == "gpukmeans compile: error: no GPU is usable: no CuPy\n"


def test_the_compile_command_keeps_the_fit_notice_quiet_and_restores_it(monkeypatch):
    """``gpukmeans compile`` says itself how long compiling everything takes; the fit's
    notice ("up to a minute") stays quiet inside it, and speaks again after."""
    from gpukmeans import _cpu

    seen = []
    monkeypatch.setattr(_cpu, "_warm_up_all",
                        lambda dtypes: seen.append(_cpu_runtime._COMPILE_NOTICE.quiet))
    _cpu.warm_up_all(announce=False)
    _cpu.warm_up_all()
    assert seen == [True, False]
    assert not _cpu_runtime._COMPILE_NOTICE.quiet


def _kernel_signatures():
    """Every compiled signature of the CPU engine's kernels in this process, by name."""
    import importlib
    import pkgutil

    import gpukmeans

    found = {}
    for info in pkgutil.iter_modules(gpukmeans.__path__):
        if not info.name.startswith("_cpu"):
            continue
        module = importlib.import_module(f"gpukmeans.{info.name}")
        for name, value in vars(module).items():
            each = value.items() if isinstance(value, dict) else [(None, value)]
            for key, kernel in each:
                for version in (kernel, getattr(kernel, "serial", None),
                                getattr(kernel, "parallel", None)):
                    if hasattr(version, "signatures"):
                        found.setdefault(f"{info.name}.{name}[{key}]", set()).update(
                            map(str, version.signatures))
    return found


def test_read_only_data_run_the_writable_datas_kernels(tmp_path, monkeypatch):
    """A read-only X (a memmap opened with mode="r", an array marked unwritable, a CSR
    matrix of read-only parts) and read-only ``x_squared_norms`` run the kernels that
    the same fit, predict, transform, score, kmeans_plusplus and MiniBatchKMeans of
    writable data compiled: no kernel of a signature of its own (they were all compiled
    again for it: 14 s on a first memmap fit, and half of ``gpukmeans compile``). The
    fits are the same bit for bit, and the memmap is not written."""
    from gpukmeans import MiniBatchKMeans

    route_cpu_fits(monkeypatch, "numba")  # these shapes would run on NumPy, no kernels
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(3000, 40)) * 3 + 7).astype(np.float32)
    path = tmp_path / "X.npy"
    np.save(path, X)

    def fits(data):
        params = dict(n_init=1, max_iter=3, device="cpu", random_state=0)
        km = KMeans(20, **params).fit(data)
        minibatch = MiniBatchKMeans(20, batch_size=256, max_iter=2, device="cpu",
                                    random_state=0).fit(data).partial_fit(data)
        return (km.cluster_centers_, km.labels_, km.predict(data), km.transform(data),
                km.score(data), KMeans(20, stream_block_rows=512, **params).fit(data).labels_,
                minibatch.cluster_centers_)

    def sparse_fits(data, norms):
        km = KMeans(6, n_init=1, max_iter=3, device="cpu", random_state=0).fit(data)
        seeds = kmeans_plusplus(data, 6, x_squared_norms=norms, random_state=0,
                                device="cpu")
        return km.cluster_centers_, km.labels_, km.predict(data), seeds[0], seeds[1]

    def read_only(array):
        array = array.copy()
        array.flags.writeable = False
        return array

    X_csr = sparse.random(2000, 30, density=0.2, format="csr", random_state=0,
                          dtype=np.float64)
    norms = np.asarray(X_csr.multiply(X_csr).sum(axis=1)).ravel()
    expected, sparse_expected = fits(X), sparse_fits(X_csr, norms)
    compiled = _kernel_signatures()
    for data in (read_only(X), np.load(path, mmap_mode="r")):
        for ours, theirs in zip(fits(data), expected):
            np.testing.assert_array_equal(ours, theirs)
    X_csr.data, X_csr.indices, X_csr.indptr = map(
        read_only, (X_csr.data, X_csr.indices, X_csr.indptr))
    for ours, theirs in zip(sparse_fits(X_csr, read_only(norms)), sparse_expected):
        np.testing.assert_array_equal(ours, theirs)
    new = {name: sorted(signatures - compiled.get(name, set()))
           for name, signatures in _kernel_signatures().items()
           if signatures - compiled.get(name, set())}
    assert new == {}, new
    np.testing.assert_array_equal(np.load(path), X)


def test_a_dask_score_without_weights_runs_the_weighted_scores_kernels(monkeypatch):
    """``gpukmeans.dask.KMeans.score`` without weights gives its blocks unit weights from
    ``da.ones``, read-only broadcasts: they run the kernels of a score with weights (no
    signature of their own), and give its score."""
    da = pytest.importorskip("dask.array")
    import gpukmeans.dask as gkd

    route_cpu_fits(monkeypatch, "numba")
    X = np.random.default_rng(1).normal(size=(3000, 12))
    Xd = da.from_array(X, chunks=(1000, 12))
    km = gkd.KMeans(5, max_iter=3, random_state=0, device="cpu").fit(Xd)
    weighted = km.score(Xd, sample_weight=da.from_array(np.ones(3000), chunks=1000))
    compiled = _kernel_signatures()
    assert km.score(Xd) == weighted
    new = {name: sorted(signatures - compiled.get(name, set()))
           for name, signatures in _kernel_signatures().items()
           if signatures - compiled.get(name, set())}
    assert new == {}, new


def test_a_callable_init_cannot_unlock_a_read_only_array():
    """A callable ``init`` is shown the caller's read-only array (uncentred float32 near
    the origin, in memory and streamed; a CSR matrix's parts), read-only, and cannot
    mark it writable: it is a view of the caller's array, not of the writable view the
    kernels are given."""
    X = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    X.flags.writeable = False
    refused = []

    def init(data, n_clusters, random_state):
        with pytest.raises(ValueError):
            data.flags.writeable = True
        refused.append(True)
        return np.array(data[:n_clusters])

    KMeans(3, init=init, n_init=1, device="cpu").fit(X)
    KMeans(3, init=init, n_init=1, device="cpu", stream_block_rows=128).fit(X)
    assert refused == [True, True]

    # A CSR X of read-only parts: each part shown read-only, its own memory (the
    # kernels' writable views of them could be unlocked: a reviewer's find).
    from gpukmeans import MiniBatchKMeans

    def read_only(part):
        return np.frombuffer(part.tobytes(), dtype=part.dtype)

    csr = sparse.random(200, 10, density=0.3, format="csr", random_state=0)
    csr = sparse.csr_matrix(tuple(map(read_only, (csr.data, csr.indices, csr.indptr))),
                            shape=csr.shape)
    before = csr.data.copy()

    def sparse_init(data, n_clusters, random_state):
        for part in (data.data, data.indices, data.indptr):
            with pytest.raises(ValueError):
                part.flags.writeable = True
        refused.append(True)
        return data[:n_clusters].toarray()

    KMeans(3, init=sparse_init, n_init=1, device="cpu").fit(csr)
    MiniBatchKMeans(3, init=sparse_init, n_init=1, device="cpu").fit(csr)
    assert refused == [True] * 4
    np.testing.assert_array_equal(csr.data, before)


# Its cold compile is all of ``gpukmeans compile``, minutes of CI's 15 (see conftest.py):
# run by hand before a change to the kernels or to what a fit runs.
@pytest.mark.slow
def test_compile_command_warms_every_numba_kernel_a_fit_can_run(tmp_path):
    """After ``gpukmeans compile`` no fit, predict, transform or score of any shape
    compiles or loads another kernel: the warm-up ran every path. (It shares the suite's
    cache: cold, it compiles what the CPU engine's tests would.) Also on read-only arrays
    (which take the writable arrays' kernels: _validation.kernel_view; a memmap's first
    fit took 14 s of compiles before), streamed, cosine and k-means|| fits, CSR matrices
    (4 s) and MiniBatchKMeans."""
    result = _python("""
        import json, warnings
        import numpy as np
        import scipy.sparse
        import importlib, pkgutil
        import gpukmeans
        from gpukmeans import _cli, _cpu_small, KMeans, MiniBatchKMeans, kmeans_plusplus
        assert _cli.main(["compile", "--device", "cpu"]) == 0
        modules = [importlib.import_module(f"gpukmeans.{m.name}")
                   for m in pkgutil.iter_modules(gpukmeans.__path__) if m.name.startswith("_cpu")]
        def signatures():
            found = {}
            for module in modules:
                for name, value in vars(module).items():
                    # A kernel, a ThreadedKernel's two versions, or a dict of kernels
                    # (the plain step's, one per way of taking the dot products).
                    each = value.items() if isinstance(value, dict) else [(None, value)]
                    for key, kernel in each:
                        label = f"{module.__name__}.{name}" + ("" if key is None else f"[{key}]")
                        for version in ("", ".serial", ".parallel"):
                            dispatcher = getattr(kernel, version[1:], None) if version else kernel
                            if hasattr(dispatcher, "signatures"):
                                found[label + version] = sorted(map(str, dispatcher.signatures))
            return found
        before = signatures()
        for name in ("MAX_WORK", "MAX_DISTANCES", "MAX_PASS_WORK", "MAX_PASS_ELEMENTS",
                     "MAX_KMEANSPP_DISTANCES", "MAX_KMEANSPP_WORK"):
            setattr(_cpu_small, name, 0)  # every call on the Numba engine
        rng = np.random.default_rng(0)
        warnings.simplefilter("ignore")
        for dtype in (np.float32, np.float64):
            for n_samples, n_clusters, n_features in [
                    (1, 1, 1), (700, 2, 3), (3000, 30, 40), (2000, 100, 9), (600, 20, 784),
                    (3000, 8, 40), (600, 20, 300), (2500, 1100, 20), (1000, 16, 3)]:
                X = (rng.normal(size=(n_samples, n_features)) * 3 + 7).astype(dtype)
                w = rng.uniform(0, 2, n_samples)
                for init in ("k-means++", "random"):
                    km = KMeans(n_clusters, init=init, n_init=2, max_iter=5, device="cpu",
                                random_state=0).fit(X, sample_weight=w)
                km.predict(X); km.transform(X); km.score(X, sample_weight=w)
                KMeans(n_clusters, init=X[:n_clusters], n_init=1, device="cpu").fit(X)
                kmeans_plusplus(X, n_clusters, random_state=0, device="cpu")
                if n_samples < 700:
                    continue
                params = dict(n_init=1, max_iter=3, device="cpu", random_state=0)
                read_only = X.copy()
                read_only.flags.writeable = False
                km = KMeans(n_clusters, **params).fit(read_only)
                km.predict(read_only); km.transform(read_only); km.score(read_only)
                KMeans(n_clusters, stream_block_rows=512, **params).fit(read_only)
                kmeans_plusplus(read_only, n_clusters, random_state=0, device="cpu")
                MiniBatchKMeans(n_clusters, batch_size=256, max_iter=2, device="cpu",
                                random_state=0).fit(read_only).partial_fit(read_only)
                KMeans(n_clusters, init="k-means||", **params).fit(X)
                KMeans(n_clusters, metric="cosine", **params).fit(X).predict(X)
                MiniBatchKMeans(n_clusters, batch_size=256, max_iter=2, device="cpu",
                                random_state=0).fit(X).partial_fit(X)
            sparse = scipy.sparse.random(3000, 50, density=0.1, format="csr", dtype=dtype,
                                         random_state=0)
            sparse.data += 1
            km = KMeans(5, n_init=1, max_iter=3, device="cpu", random_state=0).fit(sparse)
            km.predict(sparse); km.transform(sparse); km.score(sparse)
            MiniBatchKMeans(5, batch_size=256, max_iter=2, device="cpu",
                            random_state=0).fit(sparse)
        after = signatures()
        print(json.dumps({name: sorted(set(after[name]) - set(before[name]))
                          for name in after if after[name] != before[name]}))
    """)
    assert "CPU kernels: ready" in result.stdout
    assert json.loads(result.stdout.splitlines()[-1]) == {}, "compiled after the warm-up"
    # The command says how long compiling everything takes; a fit's notice (a minute)
    # would understate it several times.
    assert "CPU kernels: compiling every one not yet cached" in result.stdout
    assert "up to a minute" not in result.stderr


def test_no_cuda_driver_is_known_before_cupy_is_imported(monkeypatch):
    """With no NVIDIA driver, device="auto" learns it without CuPy's import (a tenth of
    a second of every first fit on a machine with CuPy but no GPU)."""
    import ctypes

    from gpukmeans import _backend

    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    monkeypatch.setitem(sys.modules, "cupy", None)  # an import would raise
    _backend.cuda_status.cache_clear()
    try:
        usable, reason = _backend.cuda_status()
    finally:
        _backend.cuda_status.cache_clear()
    assert not usable and reason.startswith("no usable CUDA driver: ")
    assert "cannot be loaded" in reason


def test_a_first_fit_without_a_driver_imports_no_cupy():
    result = _python("""
        import ctypes, sys
        from gpukmeans._backend import CUDA_DRIVER_LIBRARIES
        try:
            ctypes.CDLL(CUDA_DRIVER_LIBRARIES.get(sys.platform, "none"))
            print("driver present")
        except OSError:
            import numpy as np
            from gpukmeans import KMeans
            print(KMeans(2, random_state=0).fit(np.eye(4)).device_, "cupy" in sys.modules)
    """)
    if result.stdout.strip() != "driver present":
        assert result.stdout.split() == ["cpu", "False"]


@pytest.mark.gpu
def test_compile_command_compiles_every_cuda_kernel(capsys):
    from gpukmeans import _kernels

    code, out, err = run(capsys, "compile", "--device", "gpu")
    assert code == 0, err
    assert out.startswith("GPU kernels: ready in ")
    import cupy

    device_id = cupy.cuda.runtime.getDevice()
    assert _kernels._module.cache_info().currsize >= len(_kernels.KERNELS)
    for filename in _kernels.KERNELS:  # compiled already: each module only hands it out
        _kernels._module(filename, device_id).get_function(
            _kernels.name_expressions(filename)[0])
