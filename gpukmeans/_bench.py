"""The benchmark harness: gpukmeans against every peer, on the same work, in the same run.

``gpukmeans bench`` runs the quick profile (under two minutes on 2 CPU cores);
``benchmarks/harness.py`` runs the full one from a source checkout. Both are this
module: one implementation of the workloads, the contestants, the timing rules and the
reports.

Fair by construction
--------------------
- Every contestant starts from the same initial centres (scikit-learn's
  ``kmeans_plusplus`` on MNIST, random data points on synthetic data), with a fixed
  iteration count and no tolerance for the per-iteration time (``time_fit``), and from
  the same centres with ``tol=1e-4`` (scikit-learn's meaning, scaled by the mean feature
  variance) for the run to convergence (``time_fit_converge``).
- Initialisation is timed apart (``time_init``: k-means++ where a library exposes it).
- The first call of each contestant is timed and reported apart (``first_call_s``: JIT
  or kernel compilation, caches); the samples come after it, taken in rounds whose order
  rotates so that drift in the machine's speed spreads over everyone.
- GPU timings end with a synchronisation; the host-to-device copy is timed apart
  (``h2d_s``) and reported both excluded and included.
- The final inertia of every contestant's centres is recomputed here by one function
  (``track_inertia``), and compared with the reference (scikit-learn's Lloyd) together
  with the agreement of the labels and the centres, so that a fast wrong answer shows.
- The floor of this machine is measured in the same run: memory bandwidth (a NumPy copy)
  and the SGEMM time of the iteration's own distance product ``X @ centers.T``; every
  per-iteration time is also given as a multiple of that floor.

Nothing heavier than NumPy is imported at module import; each contestant imports its
library when asked whether it is available.
"""

import argparse
import contextlib
import dataclasses
import datetime
import gzip
import importlib
import importlib.metadata
import json
import logging
import math
import os
import pathlib
import platform
import struct
import subprocess
import sys
import time
import warnings

import numpy as np

SCHEMA = "gpukmeans-bench/1"

DEFAULT_TOL = 1e-4
CONVERGE_MAX_ITER = 300

_MNIST_IMAGES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# A distance block of the naive contestants and of the reference holds at most this many
# elements (rows x n_clusters), so that no contestant of ours allocates n x k at once.
_BLOCK_ELEMENTS = 1 << 22
_GPU_BLOCK_ELEMENTS = 1 << 27


class NotSupported(Exception):
    """The contestant has no such operation (e.g. faiss has no convergence test)."""


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def read_idx(path):
    """Read one IDX file (optionally gzip-compressed) into a NumPy array."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, type_code, n_dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic {data[:4]!r}).")
    shape = struct.unpack(f">{n_dims}I", data[4 : 4 + 4 * n_dims])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * n_dims, count=math.prod(shape))
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def _mnist_file(directory, stem):
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_mnist(path=None):
    """Return the folder holding the MNIST IDX image files, or None.

    Looks at ``path``; else where :func:`gpukmeans.datasets.load_mnist` keeps them
    (``$GPUKMEANS_DATA``, the user cache), then ``shared/data/mnist`` beside or above the
    working directory and this source tree. Never downloads.
    """
    if path is not None:
        candidates = [pathlib.Path(path).expanduser()]
    else:
        candidates = []
        if os.environ.get("GPUKMEANS_DATA"):
            candidates.append(pathlib.Path(os.environ["GPUKMEANS_DATA"]).expanduser())
        with contextlib.suppress(Exception):
            from .datasets import mnist_cache_dir

            candidates.append(mnist_cache_dir())
        here = pathlib.Path(__file__).resolve().parent
        for base in (pathlib.Path.cwd(), here.parent):
            for up in (base, base.parent):
                candidates.append(up / "shared" / "data" / "mnist")
    for directory in candidates:
        for folder in (directory, directory / "mnist"):
            if all(_mnist_file(folder, stem) for stem in _MNIST_IMAGES):
                return folder
    return None


def load_mnist_images(directory, n_samples=None):
    """The MNIST images (train then test) as float32 in [0, 1], shape (n_samples, 784)."""
    directory = pathlib.Path(directory)
    parts = []
    for stem in _MNIST_IMAGES:
        path = _mnist_file(directory, stem)
        if path is None:
            raise FileNotFoundError(f"{stem}[.gz] not found in {directory}")
        images = read_idx(path)
        parts.append(images.reshape(images.shape[0], -1))
        if n_samples is not None and sum(p.shape[0] for p in parts) >= n_samples:
            break
    X = np.concatenate(parts)[:n_samples]
    return np.ascontiguousarray(X, dtype=np.float32) / np.float32(255.0)


def make_blobs_data(n_samples, n_features, n_centers, seed):
    """Gaussian blobs as float32: the synthetic workload of the sweeps."""
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(
        n_samples=n_samples, n_features=n_features, centers=n_centers, random_state=seed
    )
    return np.ascontiguousarray(X, dtype=np.float32)


def tolerance(X, tol):
    """scikit-learn's absolute tolerance: ``tol`` times the mean feature variance."""
    return float(tol * np.mean(np.var(X, axis=0, dtype=np.float64)))


# ---------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------

_DISTRIBUTIONS = (
    "gpukmeans", "numpy", "scipy", "scikit-learn", "numba", "threadpoolctl",
    "scikit-learn-intelex", "daal", "faiss-cpu", "faiss-gpu", "faiss-gpu-cu12",
    "torch", "fast-pytorch-kmeans", "cupy-cuda12x", "cupy-cuda13x", "matplotlib", "pandas",
)


def default_threads():
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpuinfo():
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    info["model"] = fields.get("model name", info["model"])
    info["cache_size"] = fields.get("cache size")
    flags = fields.get("flags", "").split()
    info["flags"] = [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return info


def _memory_bytes():
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _available_memory_bytes():
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def _gpu_free_bytes():
    try:
        import cupy

        return int(cupy.cuda.runtime.memGetInfo()[0])
    except Exception:
        pass
    try:
        import torch

        return int(torch.cuda.mem_get_info()[0])
    except Exception:
        return 16 << 30


def git_commit(directory):
    """``(commit, dirty)`` of the git checkout holding ``directory``, or ``(None, None)``."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())


def gpu_info():
    """Name, memory and CUDA versions of GPU 0 through CuPy, or None when none is usable."""
    try:
        from ._device import gpu_status

        if not gpu_status()[0]:
            return None
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        return {
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "memory_bytes": int(props["totalGlobalMem"]),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "driver_version": cupy.cuda.runtime.driverGetVersion(),
            "runtime_version": cupy.cuda.runtime.runtimeGetVersion(),
            "n_devices": cupy.cuda.runtime.getDeviceCount(),
        }
    except Exception as exc:  # a broken CUDA stack must not stop a CPU benchmark
        return {"error": repr(exc)}


def environment(threads, repo=None):
    """Hardware, software versions, commit and date: recorded beside every number."""
    versions = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    if "gpukmeans" not in versions:
        with contextlib.suppress(Exception):
            import gpukmeans

            versions["gpukmeans"] = gpukmeans.__version__
    commit, dirty = git_commit(repo or pathlib.Path(__file__).resolve().parent)
    pools = []
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        pools = [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
            for p in threadpool_info()
        ]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpuinfo(),
        "cpu_count": os.cpu_count(),
        "cores_available": default_threads(),
        "threads": threads,
        "memory_bytes": _memory_bytes(),
        "gpu": gpu_info(),
        "versions": versions,
        "threadpools": pools,
        "commit": commit,
        "dirty": dirty,
    }


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------


def summarize(samples):
    """``{"min", "median", "max", "n", "samples"}`` of a list of numbers (None if empty)."""
    samples = [float(s) for s in samples]
    if not samples:
        return None
    return {
        "min": min(samples),
        "median": float(np.median(samples)),
        "max": max(samples),
        "n": len(samples),
        "samples": samples,
    }


def timed(fn, sync=None):
    """``(seconds, result)`` of one call, synchronised when ``sync`` is given."""
    start = time.perf_counter()
    result = fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start, result


@contextlib.contextmanager
def collect_warnings(notes):
    """Silence warnings during a timed call, keeping each distinct message in ``notes``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        message = f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}"
        if message not in notes:
            notes.append(message)


# ---------------------------------------------------------------------------------------
# The floor of the machine
# ---------------------------------------------------------------------------------------


def measure_bandwidth(n_bytes, repeats=5):
    """Memory bandwidth in GB/s of a NumPy float32 copy (read + write counted)."""
    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch: page faults are not bandwidth
    rates = []
    for _ in range(repeats):
        seconds, _ = timed(lambda: np.copyto(dst, src))
        rates.append(2 * src.nbytes / seconds / 1e9)
    return summarize(rates)


def measure_sgemm(size, repeats=5):
    """Square float32 ``np.dot`` rate in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    np.dot(a, b, out=out)
    rates = []
    for _ in range(repeats):
        seconds, _ = timed(lambda: np.dot(a, b, out=out))
        rates.append(2 * size**3 / seconds / 1e9)
    return summarize(rates)


def gemm_seconds(X, n_clusters, repeats=3, xp=np, sync=None, block_elements=_BLOCK_ELEMENTS):
    """Seconds for the iteration's distance product ``X @ centers.T`` through BLAS (blocked).

    Not the floor (BLAS is slow on skinny shapes, and a fused kernel can beat it): what a
    BLAS-based implementation pays on this shape, reported beside the floor.
    Prior validation of data is assumed.
    """
    n_samples, n_features = X.shape
    centers_t = xp.asarray(
        np.random.default_rng(0).random((n_features, n_clusters), dtype=np.float32)
    ).astype(X.dtype)
    rows = max(1, min(n_samples, block_elements // max(n_clusters, 1)))
    out = xp.empty((rows, n_clusters), dtype=X.dtype)

    def product():
        for start in range(0, n_samples, rows):
            stop = min(start + rows, n_samples)
            xp.dot(X[start:stop], centers_t, out=out[: stop - start])

    product()
    if sync is not None:
        sync()
    return summarize([timed(product, sync)[0] for _ in range(repeats)])


def iteration_floor(n_samples, n_features, n_clusters, itemsize, sgemm_gflops, bandwidth_gbps):
    """One Lloyd iteration's floor: the larger of its ``2 n k d`` flops at the peak SGEMM
    rate and one read of X at the copy bandwidth."""
    flop_s = 2 * n_samples * n_features * n_clusters / (sgemm_gflops * 1e9)
    read_s = n_samples * n_features * itemsize / (bandwidth_gbps * 1e9)
    return {"flop_s": flop_s, "read_s": read_s, "floor_s": max(flop_s, read_s)}


def peak(stats):
    """The best rate observed: noise only ever slows a run down, so a floor uses the max."""
    return stats["max"]


def kmeanspp_floor(n_samples, n_features, n_clusters, itemsize, sgemm_gflops, bandwidth_gbps):
    """Greedy k-means++'s floor: each of the k-1 steps reads X once (the step depends on
    the previous one) and computes the distances to ``2 + ln k`` candidates.

    Assumes X does not fit in cache; for small X the true floor is lower.
    """
    n_trials = 2 + int(np.log(n_clusters))
    read_s = n_samples * n_features * itemsize / (bandwidth_gbps * 1e9)
    flop_s = 2 * n_samples * n_features * n_trials / (sgemm_gflops * 1e9)
    return (n_clusters - 1) * max(read_s, flop_s)


def measure_gpu_floors(n_bytes, size, repeats=5):
    """GPU copy bandwidth (GB/s) and square float32 matmul rate (GFLOP/s), through CuPy.

    Untested: written for the GPU runs, never run on this project's CPU machines.
    """
    import cupy

    sync = cupy.cuda.Device().synchronize

    def rates(work, fn):
        fn()
        sync()
        return summarize([work / timed(fn, sync)[0] / 1e9 for _ in range(repeats)])

    def bandwidth():
        src = cupy.ones(n_bytes // 4, dtype=cupy.float32)
        dst = cupy.empty_like(src)
        return rates(2 * src.nbytes, lambda: cupy.copyto(dst, src))

    def sgemm():
        a = cupy.random.random((size, size), dtype=cupy.float32)
        b = cupy.random.random((size, size), dtype=cupy.float32)
        out = cupy.empty((size, size), dtype=cupy.float32)
        return rates(2 * size**3, lambda: cupy.matmul(a, b, out=out))

    floors = {"gpu_bandwidth_gbps": bandwidth(), "gpu_sgemm_gflops": sgemm(),
              "gpu_bandwidth_bytes": n_bytes, "gpu_sgemm_size": size}
    _free_cupy()
    return floors


# ---------------------------------------------------------------------------------------
# The reference inertia and agreement
# ---------------------------------------------------------------------------------------


def reference_assign(X, centers, xp=np, block_elements=_BLOCK_ELEMENTS):
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
        "label_agreement": float((_to_host(labels) == _to_host(ref_labels)).mean()),
        "center_max_rel_diff": float(
            np.abs(np.asarray(centers, np.float64) - np.asarray(ref_centers, np.float64)).max()
            / scale
        ),
    }


def _to_host(a):
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


# ---------------------------------------------------------------------------------------
# Contestants
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class FitResult:
    centers: np.ndarray
    n_iter: int | None = None
    inertia_reported: float | None = None


class Contestant:
    """One library on one device. Subclasses fill in what their library can do.

    ``fit_fixed`` runs exactly ``n_iter`` iterations from ``init``; ``fit_converge`` runs
    to scikit-learn's convergence test; ``fit_defaults`` is the library's own estimator
    with default parameters (its own initialisation); ``kmeans_plusplus`` is the
    library's k-means++ seeding. Each returns host (NumPy) centres.
    """

    key = ""
    library = ""
    device = "cpu"
    untested = False
    needs_warmup = False
    """The first call pays for compilation: never use it as a sample."""
    host_input = False
    """A GPU contestant that takes host data and copies it inside the timed call."""

    def availability(self):
        """None when usable here, else the reason it is not."""
        return None

    def setup(self, threads):
        """Set the library's thread count."""

    def to_device(self, X):
        return X

    def release(self):
        """Free device memory between workloads."""

    def sync(self):
        pass

    def memory_bytes(self, n_samples, n_features, n_clusters):
        """Rough peak memory of one fit beyond the data, to skip what cannot fit."""
        return 0

    def fit_fixed(self, X, init, n_iter):
        raise NotSupported

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        raise NotSupported

    def fit_defaults(self, X, n_clusters, seed):
        raise NotSupported

    def kmeans_plusplus(self, X, n_clusters, seed):
        raise NotSupported

    def describe(self):
        return {"key": self.key, "library": self.library, "device": self.device,
                "untested": self.untested}


def _import_reason(module):
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{module} is not importable ({type(exc).__name__}: {exc})"
    return None


def set_numba_threads(threads):
    """Set gpukmeans' Numba thread count, after its CPU engine has chosen Numba's
    threading layer (a layer starts on first use, so importing the engine comes first)."""
    import numba

    from . import _cpu

    _cpu.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


class _SklearnLike(Contestant):
    """A scikit-learn-compatible estimator class: sklearn, sklearnex, gpukmeans."""

    algorithm = "lloyd"
    extra = {}

    def estimator_class(self):
        raise NotImplementedError

    def _fit(self, X, **params):
        km = self.estimator_class()(algorithm=self.algorithm, **self.extra, **params).fit(X)
        return FitResult(_to_host(km.cluster_centers_), int(km.n_iter_), float(km.inertia_))

    def fit_fixed(self, X, init, n_iter):
        k = init.shape[0]
        return self._fit(X, n_clusters=k, init=self.to_device(init), n_init=1,
                         max_iter=n_iter, tol=0.0)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        k = init.shape[0]
        return self._fit(X, n_clusters=k, init=self.to_device(init), n_init=1,
                         max_iter=max_iter, tol=tol)

    def fit_defaults(self, X, n_clusters, seed):
        return self._fit(X, n_clusters=n_clusters, random_state=seed)


class SklearnLloyd(_SklearnLike):
    key, library = "sklearn-lloyd", "scikit-learn"

    def estimator_class(self):
        from sklearn.cluster import KMeans

        return KMeans

    def kmeans_plusplus(self, X, n_clusters, seed):
        from sklearn.cluster import kmeans_plusplus

        return kmeans_plusplus(X, n_clusters, random_state=seed)[0]


class SklearnElkan(SklearnLloyd):
    key, algorithm = "sklearn-elkan", "elkan"

    def memory_bytes(self, n_samples, n_features, n_clusters):
        return n_samples * n_clusters * 4 + n_clusters * n_clusters * 8  # lower bounds

    def kmeans_plusplus(self, X, n_clusters, seed):
        raise NotSupported  # the same function as sklearn-lloyd's


class SklearnIntelex(_SklearnLike):
    key, library = "sklearnex", "scikit-learn-intelex"

    def availability(self):
        return _import_reason("sklearnex.cluster")

    def setup(self, threads):
        import daal4py  # oneDAL's threads are TBB's, which threadpoolctl does not limit

        daal4py.daalinit(threads)

    def estimator_class(self):
        from sklearnex.cluster import KMeans

        return KMeans

    def _fit(self, X, **params):
        # sklearnex logs whether it ran its own code or fell back to scikit-learn.
        records = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())
        logger = logging.getLogger("sklearnex")
        saved = logger.level, logger.propagate, logger.handlers
        logger.handlers, logger.propagate = [handler], False  # its own handler prints
        logger.setLevel(logging.INFO)
        try:
            result = super()._fit(X, **params)
        finally:
            logger.setLevel(saved[0])
            logger.propagate, logger.handlers = saved[1], saved[2]
        self.last_log = [r for r in records if "fit" in r]
        return result


class GpukmeansCPU(_SklearnLike):
    key, library, device = "gpukmeans-cpu", "gpukmeans", "cpu"
    needs_warmup = True

    def availability(self):
        try:
            from gpukmeans import KMeans  # noqa: F401
        except Exception as exc:
            return f"gpukmeans.KMeans is not importable ({type(exc).__name__}: {exc})"
        return None

    def setup(self, threads):
        set_numba_threads(threads)

    @property
    def extra(self):
        return {"device": self.device}

    def estimator_class(self):
        from gpukmeans import KMeans

        return KMeans

    def kmeans_plusplus(self, X, n_clusters, seed):
        import gpukmeans

        if not hasattr(gpukmeans, "kmeans_plusplus"):
            raise NotSupported("gpukmeans.kmeans_plusplus does not exist yet")
        centers, _ = gpukmeans.kmeans_plusplus(X, n_clusters, random_state=seed, device=self.device)
        return _to_host(centers)


class _CupyDevice:
    """Data on the GPU through CuPy, device-wide synchronisation, pools freed after."""

    def to_device(self, X):
        import cupy

        return cupy.asarray(X)

    def sync(self):
        import cupy

        cupy.cuda.Device().synchronize()

    def release(self):
        _free_cupy()


class GpukmeansGPU(_CupyDevice, GpukmeansCPU):
    """gpukmeans' CUDA engine on CuPy arrays (copy timed apart). Untested: no GPU here."""

    key, device, untested = "gpukmeans-gpu", "gpu", True

    def availability(self):
        reason = super().availability()
        if reason:
            return reason
        from ._device import gpu_status

        usable, why = gpu_status()
        return None if usable else why


def _free_cupy():
    with contextlib.suppress(Exception):
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


class FaissCPU(Contestant):
    """faiss.Kmeans, subsampling switched off (``max_points_per_centroid`` raised)."""

    key, library = "faiss-cpu", "faiss"
    use_gpu = False

    def availability(self):
        return _import_reason("faiss")

    def setup(self, threads):
        import faiss

        faiss.omp_set_num_threads(threads)

    def _kmeans(self, X, init, n_iter):
        import faiss

        n_samples, n_features = X.shape
        km = faiss.Kmeans(
            n_features, init.shape[0], niter=n_iter, verbose=False, seed=0,
            max_points_per_centroid=n_samples,  # never subsample
            min_points_per_centroid=1,
            gpu=1 if self.use_gpu else False,  # True would spread over every GPU
        )
        km.train(X, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        return FitResult(np.array(km.centroids), n_iter, None)

    def fit_fixed(self, X, init, n_iter):
        return self._kmeans(X, init, n_iter)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        raise NotSupported("faiss has no convergence test")


class FaissGPU(FaissCPU):
    """faiss.Kmeans(gpu=True) on host data (faiss copies it). Untested: no GPU here."""

    key, device, untested, use_gpu = "faiss-gpu", "gpu", True, True
    needs_warmup = host_input = True

    def availability(self):
        reason = _import_reason("faiss")
        if reason:
            return reason
        import faiss

        if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() < 1:
            return "faiss has no GPU support here (faiss-cpu build or no device)"
        return None


def _converged(shift, tol_abs, labels, labels_old, xp):
    """scikit-learn's two stopping rules: labels unchanged, or centre shift <= tol."""
    if labels_old is not None and bool((labels == labels_old).all()):
        return True
    return shift <= tol_abs


class NumpyNaive(Contestant):
    """The textbook Lloyd in NumPy: blocked ``-2 x.c + ||c||^2`` argmin, a sparse one-hot
    product for the sums; an empty cluster keeps its centre."""

    key, library = "numpy-naive", "numpy"

    @property
    def xp(self):
        return np

    def _assign(self, X, centers):
        xp = self.xp
        n_samples, n_clusters = X.shape[0], centers.shape[0]
        centers_sq = (centers * centers).sum(axis=1)
        rows = max(1, min(n_samples, _BLOCK_ELEMENTS // n_clusters))
        labels = xp.empty(n_samples, dtype=xp.int64)
        for start in range(0, n_samples, rows):
            scores = centers_sq[None, :] - 2 * (X[start : start + rows] @ centers.T)
            labels[start : start + rows] = scores.argmin(axis=1)
        return labels

    def _sums(self, X, labels, n_clusters):
        import scipy.sparse as sp

        n_samples = X.shape[0]
        one_hot = sp.csr_matrix(
            (np.ones(n_samples, dtype=X.dtype), (labels, np.arange(n_samples))),
            shape=(n_clusters, n_samples),
        )
        return np.asarray(one_hot @ X)

    def _lloyd(self, X, init, max_iter, tol_abs):
        xp = self.xp
        centers = xp.asarray(init, dtype=X.dtype).copy()
        n_clusters = centers.shape[0]
        labels_old = None
        for n_iter in range(1, max_iter + 1):
            labels = self._assign(X, centers)
            sums = self._sums(X, labels, n_clusters)
            counts = xp.bincount(labels, minlength=n_clusters).astype(X.dtype)
            new = xp.where(counts[:, None] > 0, sums / xp.maximum(counts, 1)[:, None], centers)
            if tol_abs is not None:
                shift = float(((new - centers) ** 2).sum())
                if _converged(shift, tol_abs, labels, labels_old, xp):
                    centers = new
                    break
            centers = new
            labels_old = labels
        return FitResult(_to_host(centers), n_iter, None)

    def fit_fixed(self, X, init, n_iter):
        return self._lloyd(X, init, n_iter, None)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        return self._lloyd(X, init, max_iter, tol_abs)


class CupyNaive(_CupyDevice, NumpyNaive):
    """The same textbook Lloyd on CuPy (atomic scatter-add). Untested: no GPU here."""

    key, library, device, untested = "cupy-naive", "cupy", "gpu", True
    needs_warmup = True

    def availability(self):
        reason = _import_reason("cupy")
        if reason:
            return reason
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "no CUDA device"
        except Exception as exc:
            return f"no usable CUDA device ({exc})"
        return None

    @property
    def xp(self):
        import cupy

        return cupy

    def _sums(self, X, labels, n_clusters):
        import cupy
        import cupyx

        sums = cupy.zeros((n_clusters, X.shape[1]), dtype=X.dtype)
        if hasattr(cupy.add, "at"):
            cupy.add.at(sums, labels, X)
        else:  # older CuPy
            cupyx.scatter_add(sums, labels, X)
        return sums


class TorchNaive(Contestant):
    """A straightforward PyTorch Lloyd: blocked ``cdist``/``argmin``, ``index_add_``."""

    key, library = "torch-cpu", "torch"
    torch_device = "cpu"

    def availability(self):
        return _import_reason("torch")

    def setup(self, threads):
        import torch

        torch.set_num_threads(threads)

    def to_device(self, X):
        import torch

        return torch.as_tensor(X, device=self.torch_device)

    def _lloyd(self, X, init, max_iter, tol_abs):
        import torch

        centers = torch.as_tensor(init, device=X.device, dtype=X.dtype).clone()
        n_samples, n_clusters = X.shape[0], centers.shape[0]
        rows = max(1, min(n_samples, _BLOCK_ELEMENTS // n_clusters))
        labels_old = None
        for n_iter in range(1, max_iter + 1):
            labels = torch.cat(
                [torch.cdist(X[s : s + rows], centers).argmin(dim=1)
                 for s in range(0, n_samples, rows)]
            )
            sums = torch.zeros_like(centers).index_add_(0, labels, X)
            counts = torch.bincount(labels, minlength=n_clusters).to(X.dtype)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers)
            if tol_abs is not None:
                shift = float(((new - centers) ** 2).sum())
                if _converged(shift, tol_abs, labels, labels_old, torch):
                    centers = new
                    break
            centers = new
            labels_old = labels
        return FitResult(centers.cpu().numpy(), n_iter, None)

    def fit_fixed(self, X, init, n_iter):
        return self._lloyd(X, init, n_iter, None)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        return self._lloyd(X, init, max_iter, tol_abs)


class _TorchCUDA:
    device, untested, needs_warmup = "gpu", True, True
    torch_device = "cuda"

    def availability(self):
        reason = _import_reason("torch")
        if reason:
            return reason
        import torch

        return None if torch.cuda.is_available() else "torch has no usable CUDA device"

    def sync(self):
        import torch

        torch.cuda.synchronize()

    def release(self):
        with contextlib.suppress(Exception):
            import torch

            torch.cuda.empty_cache()


class TorchCUDA(_TorchCUDA, TorchNaive):
    """The same PyTorch Lloyd on CUDA. Untested: no GPU here."""

    key = "torch-cuda"


class FastPytorchKMeans(TorchNaive):
    """fast-pytorch-kmeans' full-batch KMeans, given our initial centres."""

    key, library = "fast-pytorch-kmeans", "fast-pytorch-kmeans"

    def availability(self):
        return _import_reason("fast_pytorch_kmeans")

    def memory_bytes(self, n_samples, n_features, n_clusters):
        return 3 * n_samples * n_clusters * 4  # an n x k similarity and a k x n one-hot

    def _fit(self, X, init, max_iter, tol_abs):
        import torch
        from fast_pytorch_kmeans import KMeans

        # Its test is ``sum of squared centre shifts <= tol``: scikit-learn's absolute one.
        # A negative tol never stops: the fixed-work run.
        km = KMeans(n_clusters=init.shape[0], max_iter=max_iter, tol=tol_abs, verbose=0)
        km.fit_predict(X, centroids=torch.as_tensor(init, device=X.device, dtype=X.dtype))
        return FitResult(km.centroids.cpu().numpy(), max_iter if tol_abs < 0 else None, None)

    def fit_fixed(self, X, init, n_iter):
        return self._fit(X, init, n_iter, -1.0)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        return self._fit(X, init, max_iter, tol_abs)


class FastPytorchKMeansCUDA(_TorchCUDA, FastPytorchKMeans):
    """fast-pytorch-kmeans on CUDA. Untested: no GPU here."""

    key = "fast-pytorch-kmeans-cuda"

    def availability(self):
        return FastPytorchKMeans.availability(self) or _TorchCUDA.availability(self)


CONTESTANTS = {
    c.key: c
    for c in (
        GpukmeansCPU, SklearnLloyd, SklearnElkan, SklearnIntelex, FaissCPU, TorchNaive,
        FastPytorchKMeans, NumpyNaive,
        GpukmeansGPU, FaissGPU, TorchCUDA, FastPytorchKMeansCUDA, CupyNaive,
    )
}
REFERENCE = "sklearn-lloyd"


# ---------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Workload:
    name: str
    group: str
    """"mnist", "notebook", "sweep_n", "sweep_k", "sweep_d" or "anchor"; a sweep's
    workloads run from the smallest up."""
    dataset: str  # "mnist" or "blobs"
    n_samples: int
    n_features: int
    n_clusters: int
    n_iter: int = 20
    converge: bool = True
    init_timing: bool = False
    defaults_seeds: tuple = ()
    devices: tuple = ("cpu", "gpu")
    seed: int = 0

    @property
    def work(self):
        return self.n_samples * self.n_features * self.n_clusters


def _mnist(name, n, k, **kw):
    return Workload(name, kw.pop("group", "mnist"), "mnist", n, 784, k, **kw)


def _blobs(group, n, d, k, **kw):
    return Workload(f"blobs-n{n}-d{d}-k{k}", group, "blobs", n, d, k, **kw)


def profile_workloads(profile):
    """The workloads of a profile: ``"tiny"`` (tests), ``"quick"`` (``gpukmeans bench``),
    ``"full"`` (``benchmarks/harness.py``)."""
    if profile == "tiny":
        return [
            _mnist("notebook-tiny", 600, 8, group="notebook", n_iter=5, init_timing=True,
                   defaults_seeds=(0, 1)),
            _blobs("sweep_k", 2000, 8, 4, n_iter=5, init_timing=True),
            _blobs("sweep_k", 2000, 8, 16, n_iter=5),
        ]
    if profile == "quick":
        return [
            _mnist("notebook", 5000, 20, group="notebook", init_timing=True,
                   defaults_seeds=(0, 1)),
            _mnist("mnist-k20", 70000, 20, n_iter=10, converge=False),
            _blobs("sweep_k", 50_000, 32, 16, n_iter=10, converge=False),
            _blobs("sweep_k", 50_000, 32, 256, n_iter=10, converge=False),
        ]
    if profile == "full":
        workloads = [
            _mnist("notebook", 5000, 20, group="notebook", init_timing=True,
                   defaults_seeds=(0, 1, 2, 3, 4)),
            _mnist("mnist-k10", 70000, 10),
            _mnist("mnist-k20", 70000, 20, init_timing=True),
            _mnist("mnist-k256", 70000, 256, init_timing=True, converge=False),
        ]
        # The sweeps show how the per-iteration cost grows: fixed work only (a run to
        # convergence from random centres can take hundreds of iterations at large k).
        sweep = dict(n_iter=10, converge=False)
        workloads += [_blobs("sweep_n", n, 32, 32, **sweep) for n in (10**4, 10**5, 10**6)]
        workloads += [_blobs("sweep_n", 10**7, 32, 32, devices=("gpu",), **sweep)]
        workloads += [_blobs("sweep_k", 10**5, 32, k, **sweep) for k in (8, 64, 512, 4096)]
        workloads += [_blobs("sweep_d", 10**5, d, 32, **sweep) for d in (2, 16, 128, 1024)]
        workloads += [
            Workload("anchor-1M-d256-k20000", "anchor", "blobs", 10**6, 256, 20000, n_iter=25,
                     converge=False, devices=("gpu",)),
            Workload("anchor-100k-d256-k1024", "anchor", "blobs", 10**5, 256, 1024, n_iter=15,
                     converge=False, devices=("gpu",)),
        ]
        return workloads
    raise ValueError(f"profile={profile!r} should be one of 'tiny', 'quick', 'full'.")


# ---------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Settings:
    repeats: int = 3
    """Samples per measurement after the first call (fewer when measure_seconds is hit)."""
    measure_seconds: float = 15.0
    """Stop sampling a contestant once its samples add up to this."""
    max_seconds: float = 110.0
    """Whole-run budget: later measurements are skipped once it is spent."""
    slow_cap: float = 60.0
    """Skip a contestant on a sweep point predicted to take longer than this per fit."""
    threads: int = dataclasses.field(default_factory=default_threads)
    floor_bytes: int = 256 << 20
    sgemm_size: int = 2048
    plots: bool = True


class Runner:
    """Runs workloads x contestants under the fairness rules and a time budget."""

    def __init__(self, contestants, settings, log=print):
        self.contestants = contestants
        self.settings = settings
        self.log = log
        self.start = time.perf_counter()
        self.results = []
        self.workload_info = []
        self.floors = {}
        self._last_fit = {}  # (group, key) -> (work x n_iter, median fit seconds)

    # -- budget -------------------------------------------------------------------------

    def elapsed(self):
        return time.perf_counter() - self.start

    def over_budget(self):
        return self.elapsed() > self.settings.max_seconds

    # -- measurement ----------------------------------------------------------------------

    def measure(self, calls, warmup=True, repeats=None):
        """Time ``calls`` (``key -> (contestant, fn)``) in rotating rounds.

        Round 0 is each contestant's first call (reported as ``first_call_s``); rounds
        1..repeats are the samples. Without ``warmup`` (the contestant has already run on
        this data), round 0 is a sample too. Returns ``key -> {"first": s, "samples":
        [...], "result": last result, "error": str, "notes": [...]}``.
        """
        repeats = self.settings.repeats if repeats is None else repeats
        out = {key: {"samples": [], "notes": [], "first": None, "first_used": False,
                     "result": None, "error": None}
               for key in calls}
        keys = list(calls)
        for rnd in range(repeats + 1):
            order = keys[rnd % len(keys):] + keys[: rnd % len(keys)] if keys else []
            for key in order:
                contestant, fn = calls[key]
                entry = out[key]
                if entry["error"]:
                    continue
                if rnd > 0:
                    spent = sum(entry["samples"])
                    if entry["samples"] and (spent >= self.settings.measure_seconds
                                             or self.over_budget()):
                        continue
                    if entry["first_used"]:
                        continue
                elif self.over_budget():
                    entry["error"] = "skipped: time budget (--max-seconds) spent"
                    continue
                try:
                    with collect_warnings(entry["notes"]):
                        seconds, result = timed(fn, contestant.sync)
                except NotSupported as exc:
                    entry["error"] = f"not supported{': ' + str(exc) if str(exc) else ''}"
                    continue
                except Exception as exc:
                    entry["error"] = f"error: {type(exc).__name__}: {exc}"[:300]
                    continue
                entry["result"] = result
                if rnd == 0:
                    entry["first"] = seconds
                    # A slow first call of a library with nothing to compile is a fair sample.
                    entry["first_used"] = (
                        not warmup
                        or repeats == 0
                        or (seconds >= self.settings.measure_seconds
                            and not contestant.needs_warmup)
                    )
                    if entry["first_used"]:
                        entry["samples"].append(seconds)
                else:
                    entry["samples"].append(seconds)
        return out

    # -- one workload ---------------------------------------------------------------------

    def run_workload(self, workload, X):
        s = self.settings
        wl = dataclasses.asdict(workload)
        self.workload_info.append(wl)
        eligible = {}
        for key, c in self.contestants.items():
            if c.device not in workload.devices:
                continue  # e.g. the 10^7 and anchor shapes are for GPUs only
            reason = self._skip_reason(workload, c)
            if reason:
                self._record(workload, key, "time_fit", status="skipped", reason=reason)
            else:
                eligible[key] = c
        if not eligible:
            return
        self.log(f"[{self.elapsed():7.1f}s] {workload.name}: {X.shape[0]}x{X.shape[1]}, "
                 f"k={workload.n_clusters} ({', '.join(eligible)})")

        # Device copies, timed apart.
        Xd, h2d = {}, {}
        for key, c in eligible.items():
            try:
                Xd[key] = c.to_device(X)
                c.sync()
                if c.device == "gpu" and not c.host_input:
                    times = []
                    for _ in range(max(1, s.repeats)):
                        seconds, copy = timed(lambda: c.to_device(X), c.sync)
                        times.append(seconds)
                        del copy
                    h2d[key] = summarize(times)
            except Exception as exc:
                self._record(workload, key, "time_fit", status="error",
                             reason=f"to_device: {type(exc).__name__}: {exc}")
        eligible = {k: c for k, c in eligible.items() if k in Xd}

        # What BLAS takes for this shape's X @ C.T, on each device that runs it (the floors
        # themselves are set by finish(), from the best rates of the whole run).
        wl["floors"] = {d: self._blas_time(workload, X, d)
                        for d in sorted({c.device for c in eligible.values()})}

        # Initialisation, timed apart; sklearn's seeding doubles as everyone's init.
        init = None
        if workload.init_timing:
            calls = {key: (c, (lambda c=c, key=key: c.kmeans_plusplus(
                        Xd[key], workload.n_clusters, workload.seed)))
                     for key, c in eligible.items()}
            measured = self.measure(calls)
            if REFERENCE in measured and measured[REFERENCE]["result"] is not None:
                init = np.asarray(measured[REFERENCE]["result"], dtype=X.dtype)
            for key, m in measured.items():
                self._record_measured(workload, key, "time_init", m)
        if init is None:
            init = self._initial_centers(workload, X)

        ref_xp, X_ref = self._reference_array(workload, X)

        # Fixed work: per-iteration time.
        calls = {key: (c, (lambda c=c, key=key: c.fit_fixed(Xd[key], init, workload.n_iter)))
                 for key, c in eligible.items()}
        measured = self.measure(calls)
        self._score(workload, "time_fit", measured, X_ref, ref_xp, h2d)
        for key, m in measured.items():
            if m["samples"]:
                self._last_fit[(workload.group, key)] = (
                    workload.work * workload.n_iter, float(np.median(m["samples"])))

        # To convergence from the same centres.
        if workload.converge:
            tol_abs = tolerance(X, DEFAULT_TOL)
            calls = {key: (c, (lambda c=c, key=key: c.fit_converge(
                        Xd[key], init, CONVERGE_MAX_ITER, DEFAULT_TOL, tol_abs)))
                     for key, c in eligible.items()}
            # A first-call round of its own: a run that converges can take paths that the
            # fixed-work fits never took (gpukmeans' inertia pass after strict convergence
            # compiled inside this measurement once, 0.49 s against 0.07).
            measured = self.measure(calls, repeats=min(1, s.repeats))
            self._score(workload, "time_fit_converge", measured, X_ref, ref_xp, h2d)

        # The library's own defaults (its own init), several seeds: the notebook's case.
        for i, seed in enumerate(workload.defaults_seeds):
            calls = {key: (c, (lambda c=c, key=key: c.fit_defaults(
                        Xd[key], workload.n_clusters, seed)))
                     for key, c in eligible.items()}
            # One sample per seed, after one warm-up call on the first seed (the library's
            # own seeding may compile code the fixed-work fits did not use).
            measured = self.measure(calls, warmup=(i == 0), repeats=int(i == 0))
            self._score(workload, "time_fit_defaults", measured, X_ref, ref_xp, h2d, seed=seed)

        for c in eligible.values():
            c.release()

    def _skip_reason(self, workload, c):
        limit = (_gpu_free_bytes() if c.device == "gpu" else _available_memory_bytes()) // 2
        need = c.memory_bytes(workload.n_samples, workload.n_features, workload.n_clusters)
        if need > limit:
            return f"would need ~{need / 2**30:.1f} GiB beyond the data"
        last = self._last_fit.get((workload.group, c.key))
        if last is not None:
            work, seconds = last
            predicted = seconds * workload.work * workload.n_iter / work
            if predicted > self.settings.slow_cap:
                return (f"predicted {predicted:.0f} s per fit from the previous sweep point "
                        f"> --slow-cap {self.settings.slow_cap:.0f} s")
        if self.over_budget():
            return "time budget (--max-seconds) spent"
        return None

    def _initial_centers(self, workload, X):
        """The shared initial centres: sklearn's k-means++ on MNIST (the realistic start),
        distinct random data points on synthetic data (cheap at any size)."""
        if workload.dataset == "mnist" and "cpu" in workload.devices:
            from sklearn.cluster import kmeans_plusplus

            return kmeans_plusplus(X, workload.n_clusters, random_state=workload.seed)[0]
        rng = np.random.default_rng(workload.seed)
        return X[np.sort(rng.choice(X.shape[0], workload.n_clusters, replace=False))].copy()

    def _reference_array(self, workload, X):
        """Score GPU-only workloads on the GPU (the CPU would take minutes per contestant)."""
        if "cpu" not in workload.devices:
            with contextlib.suppress(Exception):
                import cupy

                return cupy, cupy.asarray(X)
        return np, X

    def _blas_time(self, workload, X, device):
        """``X @ C.T`` through BLAS (cuBLAS on a GPU) on this shape: see :func:`gemm_seconds`."""
        repeats = min(3, max(1, self.settings.repeats))
        if device == "cpu":
            gemm = gemm_seconds(X, workload.n_clusters, repeats=repeats)
            return {"gemm_s": gemm["median"], "gemm": gemm, "device": "cpu"}
        try:
            import cupy

            Xg = cupy.asarray(X)
            sync = cupy.cuda.Device().synchronize
            gemm = gemm_seconds(Xg, workload.n_clusters, repeats=repeats, xp=cupy, sync=sync,
                                block_elements=_GPU_BLOCK_ELEMENTS)
            del Xg
            _free_cupy()
            return {"gemm_s": gemm["median"], "gemm": gemm, "device": "gpu"}
        except Exception as exc:
            return {"gemm_s": None, "device": "gpu", "error": repr(exc)}

    def finish(self, want_gpu):
        """Measure the rates again and set every floor from the best samples of the run.

        Noise only slows a measurement down, so rates measured at the start and at the end
        are pooled and the best taken: the floor is a lower bound, every ratio to it >= 1
        unless an implementation beats the machine's BLAS.
        """
        start = self.floors
        self.floors = {}
        self.measure_floors(want_gpu)
        for name in ("bandwidth_gbps", "sgemm_gflops", "gpu_bandwidth_gbps", "gpu_sgemm_gflops"):
            if name in start and name in self.floors:
                self.floors[name] = summarize(start[name]["samples"] + self.floors[name]["samples"])
            elif name in start:
                self.floors[name] = start[name]
        # The peak SGEMM rate: the best of the square products and of the workloads' own
        # X @ C.T products (BLAS can run a tall product faster than a small square one).
        shapes = {wl["name"]: (wl["n_samples"], wl["n_features"], wl["n_clusters"], 4)  # float32
                  for wl in self.workload_info}
        rates = {}
        for device, prefix in (("cpu", ""), ("gpu", "gpu_")):
            if f"{prefix}sgemm_gflops" not in self.floors or f"{prefix}bandwidth_gbps" not in self.floors:
                continue
            sgemm = peak(self.floors[f"{prefix}sgemm_gflops"])
            source = f"{self.floors[f'{prefix}sgemm_size']}² square product"
            for wl in self.workload_info:
                gemm = wl.get("floors", {}).get(device, {}).get("gemm")
                if gemm:
                    n, d, k, _ = shapes[wl["name"]]
                    rate = 2 * n * d * k / gemm["min"] / 1e9
                    if rate > sgemm:
                        sgemm, source = rate, f"X @ C.T of {wl['name']}"
            self.floors[f"{prefix}sgemm_peak_gflops"] = sgemm
            self.floors[f"{prefix}sgemm_peak_source"] = source
            rates[device] = (sgemm, peak(self.floors[f"{prefix}bandwidth_gbps"]))
        for wl in self.workload_info:
            shape = shapes[wl["name"]]
            for device, floor in wl.get("floors", {}).items():
                if device in rates:
                    floor.update(iteration_floor(*shape, *rates[device]))
            wl["floor"] = wl.get("floors", {}).get("cpu") or wl.get("floors", {}).get("gpu")
        by_name = {wl["name"]: wl for wl in self.workload_info}
        for r in self.results:
            if r["status"] != "ok" or r["device"] not in rates:
                continue
            if r["benchmark"] in ("time_fit", "time_fit_converge") and r.get("per_iter_s"):
                floor_s = by_name[r["workload"]]["floors"][r["device"]].get("floor_s")
                measured = r["per_iter_s"]["median"]
            elif r["benchmark"] == "time_init":
                floor_s = kmeanspp_floor(*shapes[r["workload"]], *rates[r["device"]])
                measured = r["time_s"]["median"]
            else:
                continue
            if floor_s:
                r["floor_s"] = floor_s
                r["ratio_to_floor"] = measured / floor_s

    # -- scoring and records --------------------------------------------------------------

    def _score(self, workload, kind, measured, X_ref, ref_xp, h2d, seed=None):
        scored = {}
        for key, m in measured.items():
            r = m["result"]
            if r is None:
                continue
            labels, inertia = reference_assign(
                X_ref, ref_xp.asarray(r.centers, dtype=X_ref.dtype), xp=ref_xp,
                block_elements=_BLOCK_ELEMENTS if ref_xp is np else _GPU_BLOCK_ELEMENTS)
            scored[key] = (labels, inertia, r.centers)
        ref_key = REFERENCE if REFERENCE in scored else next(iter(scored), None)
        for key, m in measured.items():
            extra = {}
            r = m["result"]
            if key in scored:
                extra["inertia"] = scored[key][1]
                extra["reference"] = ref_key
                extra.update(agreement(scored[ref_key], scored[key]))
                extra["n_iter"] = r.n_iter
                extra["inertia_reported"] = r.inertia_reported
            if seed is not None:
                extra["seed"] = seed
            if key in h2d:
                extra["h2d_s"] = h2d[key]
            elif self.contestants[key].host_input:
                m["notes"].insert(0, "host data in: the copy to the GPU is inside the timed call")
            if kind == "time_fit" and getattr(self.contestants[key], "last_log", None):
                extra["library_log"] = self.contestants[key].last_log
            self._record_measured(workload, key, kind, m, **extra)

    def _record_measured(self, workload, key, kind, m, **extra):
        if m["error"] and not m["samples"]:
            status = "skipped" if m["error"].startswith(("not supported", "skipped")) else "error"
            keep = {k: extra[k] for k in ("seed",) if k in extra}
            self._record(workload, key, kind, status=status, reason=m["error"], notes=m["notes"],
                         **keep)
            return
        time_s = summarize(m["samples"])
        record = dict(status="ok", time_s=time_s, first_call_s=m["first"], notes=m["notes"],
                      first_call_used_as_sample=bool(m.get("first_used")), **extra)
        if m["first"] is not None and not m.get("first_used"):
            # What the first call costs beyond a warm one: JIT or kernel compilation, caches.
            record["first_call_overhead_s"] = m["first"] - time_s["median"]
        n_iter = extra.get("n_iter")
        if kind in ("time_fit", "time_fit_converge") and n_iter:
            record["per_iter_s"] = summarize([t / n_iter for t in m["samples"]])
        if "h2d_s" in extra:
            record["time_with_h2d_s"] = time_s["median"] + extra["h2d_s"]["median"]
        self._record(workload, key, kind, **record)

    def _record(self, workload, key, kind, **fields):
        c = self.contestants[key]
        self.results.append({
            "workload": workload.name, "group": workload.group, "contestant": key,
            "library": c.library, "device": c.device, "untested": c.untested,
            "benchmark": kind, **fields,
        })

    # -- floors ---------------------------------------------------------------------------

    def measure_floors(self, want_gpu):
        s = self.settings
        self.floors["bandwidth_gbps"] = measure_bandwidth(s.floor_bytes, repeats=max(3, s.repeats))
        self.floors["sgemm_gflops"] = measure_sgemm(s.sgemm_size, repeats=max(3, s.repeats))
        self.floors["bandwidth_bytes"] = s.floor_bytes
        self.floors["sgemm_size"] = s.sgemm_size
        if want_gpu:
            try:
                self.floors.update(measure_gpu_floors(s.floor_bytes * 4, 8192))
            except Exception as exc:  # untested on a GPU: keep the CPU run alive
                self.floors["gpu_error"] = repr(exc)


def select_contestants(names=None, device="all"):
    """Instantiate the requested contestants (all by default), with availability."""
    keys = list(CONTESTANTS) if not names else names
    unknown = [k for k in keys if k not in CONTESTANTS]
    if unknown:
        raise ValueError(f"unknown contestants {unknown}; choose from {list(CONTESTANTS)}")
    chosen, report = {}, []
    for key in keys:
        c = CONTESTANTS[key]()
        if device != "all" and c.device != device:
            continue
        try:
            reason = c.availability()
        except Exception as exc:
            reason = f"availability check failed: {type(exc).__name__}: {exc}"
        report.append({**c.describe(), "available": reason is None, "reason": reason})
        if reason is None:
            chosen[key] = c
    return chosen, report


def run_suite(profile, *, contestants=None, device="all", mnist=None, settings=None,
              out_dir=".", name=None, repo=None, log=print, workloads=None):
    """Run a profile's workloads and write ``<name>.json``, ``<name>.md`` and plots.

    Returns the report dictionary.
    """
    settings = settings or Settings()
    chosen, report = select_contestants(contestants, device)
    if REFERENCE in chosen:  # the reference first: its k-means++ is everyone's init
        chosen = {REFERENCE: chosen.pop(REFERENCE), **chosen}
    for c in chosen.values():
        with contextlib.suppress(Exception):
            c.setup(settings.threads)
    runner = Runner(chosen, settings, log=log)
    want_gpu = any(c.device == "gpu" for c in chosen.values())
    mnist_dir = find_mnist(mnist)
    workloads = workloads if workloads is not None else profile_workloads(profile)
    skipped_workloads = []

    with _thread_limits(settings.threads):
        env = environment(settings.threads, repo=repo)
        log(f"{profile} benchmark on {env['cpu']['model']} ({settings.threads} threads); "
            f"contestants: {', '.join(chosen) or 'none'}")
        for r in report:
            if not r["available"]:
                log(f"  not run: {r['key']}: {r['reason']}")
        runner.measure_floors(want_gpu)
        log(f"  floor: {runner.floors['bandwidth_gbps']['median']:.1f} GB/s copy, "
            f"{runner.floors['sgemm_gflops']['median']:.0f} GFLOP/s SGEMM")

        mnist_cache = None
        for workload in workloads:
            if not any(d in workload.devices for d in {c.device for c in chosen.values()}):
                skipped_workloads.append({"workload": workload.name,
                                          "reason": "no contestant on its device"})
                continue
            if runner.over_budget():
                skipped_workloads.append({"workload": workload.name,
                                          "reason": "time budget (--max-seconds) spent"})
                continue
            if workload.dataset == "mnist":
                if mnist_dir is None:
                    skipped_workloads.append({"workload": workload.name, "reason":
                        "MNIST not found (pass --mnist DIR, set GPUKMEANS_DATA, or run "
                        "gpukmeans.datasets.load_mnist() once to download it)"})
                    continue
                if mnist_cache is None or mnist_cache.shape[0] < workload.n_samples:
                    mnist_cache = load_mnist_images(mnist_dir)
                X = np.ascontiguousarray(mnist_cache[: workload.n_samples])
            else:
                X = make_blobs_data(workload.n_samples, workload.n_features,
                                    min(workload.n_clusters, 64), workload.seed)
            runner.run_workload(workload, X)
            del X
        runner.finish(want_gpu)
        if "numba" in sys.modules:  # the layer gpukmeans' CPU engine ran on, once it has run
            with contextlib.suppress(Exception):
                env["numba_threading_layer"] = sys.modules["numba"].threading_layer()

    result = {
        "schema": SCHEMA,
        "profile": profile,
        "environment": env,
        "settings": dataclasses.asdict(settings),
        "mnist": str(mnist_dir) if mnist_dir else None,
        "contestants": report,
        "floors": runner.floors,
        "workloads": runner.workload_info,
        "skipped_workloads": skipped_workloads,
        "results": runner.results,
        "elapsed_s": runner.elapsed(),
    }
    write_reports(result, out_dir, name or f"harness-{profile}", plots=settings.plots, log=log)
    return result


@contextlib.contextmanager
def _thread_limits(threads):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=threads):
        yield


# ---------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------


def _ms(stats, key="median"):
    return "—" if not stats else f"{stats[key] * 1e3:.1f}"


def _ms_range(stats):
    if not stats:
        return "—"
    if stats["n"] == 1:
        return f"{stats['median'] * 1e3:.1f} (1 run)"
    return f"{stats['median'] * 1e3:.1f} [{stats['min'] * 1e3:.1f}–{stats['max'] * 1e3:.1f}]"


def _num(x, fmt):
    return "—" if x is None else format(x, fmt)


def hardware_line(env):
    cpu = env["cpu"]
    threads = env["threads"]
    parts = [f"{cpu['model']}",
             f"{threads} thread{'s' if threads != 1 else ''} of {env['cores_available']} cores"]
    if env.get("memory_bytes"):
        parts.append(f"{env['memory_bytes'] / 2**30:.0f} GiB RAM")
    if env.get("numba_threading_layer"):
        parts.append(f"Numba {env['numba_threading_layer']} threads")
    gpu = env.get("gpu")
    if gpu and "name" in gpu:
        parts.append(f"GPU {gpu['name']} ({gpu['memory_bytes'] / 2**30:.0f} GiB, "
                     f"CUDA runtime {gpu['runtime_version']})")
    else:
        parts.append("no GPU")
    return ", ".join(parts)


def _peak_sgemm(floors, prefix):
    rate = floors.get(f"{prefix}sgemm_peak_gflops") or peak(floors[f"{prefix}sgemm_gflops"])
    source = floors.get(f"{prefix}sgemm_peak_source", "square product")
    return f"{rate:.0f} GFLOP/s SGEMM ({source}, float32)"


def versions_line(env):
    return ", ".join(f"{k} {v}" for k, v in env["versions"].items())


def render_markdown(result):
    env = result["environment"]
    lines = [
        f"# gpukmeans benchmark ({result['profile']} profile)",
        "",
        f"- Date: {env['date']}; commit {env['commit'] or 'unknown'}"
        f"{' (with uncommitted changes)' if env.get('dirty') else ''}",
        f"- Hardware: {hardware_line(env)}",
        f"- Versions: {versions_line(env)}",
        f"- Floor (same run, best sample): {peak(result['floors']['bandwidth_gbps']):.1f} GB/s "
        f"memory copy, {_peak_sgemm(result['floors'], '')}"
        + (f"; GPU {peak(result['floors']['gpu_bandwidth_gbps']):.0f} GB/s copy, "
           f"{_peak_sgemm(result['floors'], 'gpu_')}"
           if "gpu_bandwidth_gbps" in result["floors"] else ""),
        f"- Run time: {result['elapsed_s']:.0f} s",
        "",
        "Times are medians [min–max] in ms over the samples taken after each contestant's first "
        "call. *per iter* = fixed-work fit time / iterations run (includes the fit's fixed costs: "
        "validation, final assignment); *× floor* divides it by this machine's floor for one "
        "iteration (the larger of its 2nkd flops at the peak SGEMM rate and one read of X); *× ref* divides it by "
        "the reference's (scikit-learn Lloyd) per-iteration time (k-means++: whole times). Inertia is recomputed here from each "
        "contestant's final centres; *Δinertia* is relative to the reference; *labels* is the "
        "fraction of points assigned as the reference assigns them (same initial centres, so no "
        "permutation). GPU rows marked † have never run on a GPU in this project's CI.",
        "",
    ]
    not_run = [c for c in result["contestants"] if not c["available"]]
    if not_run:
        lines.append("Not run here: " + "; ".join(f"{c['key']} ({c['reason']})" for c in not_run))
        lines.append("")
    for s in result["skipped_workloads"]:
        lines.append(f"Workload {s['workload']} skipped: {s['reason']}.")
    by_workload = {}
    for r in result["results"]:
        by_workload.setdefault(r["workload"], []).append(r)
    for wl in result["workloads"]:
        rows = by_workload.get(wl["name"], [])
        lines += _workload_table(wl, rows)
    return "\n".join(lines) + "\n"


def _workload_table(wl, rows):
    head = (f"## {wl['name']}: {wl['dataset']} {wl['n_samples']:,} x {wl['n_features']}, "
            f"k={wl['n_clusters']}, {wl['n_iter']} iterations")
    lines = ["", head, ""]
    for device, floor in (wl.get("floors") or {}).items():
        if floor.get("floor_s"):
            lines.append(f"Floor per iteration ({device}): {floor['floor_s'] * 1e3:.3g} ms "
                         f"(2nkd flops at peak SGEMM {floor['flop_s'] * 1e3:.3g} ms, one read "
                         f"of X {floor['read_s'] * 1e3:.3g} ms); BLAS `X @ C.T` on this shape "
                         f"takes {floor['gemm_s'] * 1e3:.3g} ms.")
            lines.append("")
    get = {(r["contestant"], r["benchmark"], r.get("seed")): r for r in rows}
    references = {r["reference"] for r in rows if r.get("reference")}
    if references and references != {REFERENCE}:
        lines += [f"Reference for Δinertia and labels: {', '.join(sorted(references))} "
                  "(scikit-learn does not run this shape).", ""]
    keys = list(dict.fromkeys(r["contestant"] for r in rows))
    ref_fit = get.get(("sklearn-lloyd", "time_fit", None))
    ref_init = get.get(("sklearn-lloyd", "time_init", None))
    lines += ["| contestant | per iter ms | × floor | × ref | first call ms | iters | "
              "Δinertia | labels | to convergence ms (iters) | k-means++ ms | × ref | notes |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in keys:
        fit = get.get((key, "time_fit", None), {})
        conv = get.get((key, "time_fit_converge", None), {})
        init = get.get((key, "time_init", None), {})
        name = key + (" †" if fit.get("untested") else "")
        if fit.get("status") != "ok":
            lines.append(f"| {name} | {fit.get('reason') or fit.get('status', '—')} "
                         "| | | | | | | | | | |")
            continue
        ratio_ref = _ratio(fit, ref_fit, "per_iter_s")
        conv_cell = "—"
        if conv.get("status") == "ok":
            conv_cell = f"{_ms(conv['time_s'])} ({_num(conv.get('n_iter'), 'd')})"
        elif conv:
            conv_cell = conv.get("reason", conv.get("status"))[:40]
        init_cell = _ms_range(init.get("time_s")) if init.get("status") == "ok" else "—"
        notes = list(fit.get("notes", []))[:2]
        if fit.get("h2d_s"):
            notes.insert(0, f"H2D copy {_ms(fit['h2d_s'])} ms excluded "
                            f"(fit incl. copy {fit['time_with_h2d_s'] * 1e3:.1f} ms)")
        if fit.get("n_iter") is not None and fit["n_iter"] != wl["n_iter"]:
            notes.insert(0, f"stopped after {fit['n_iter']} of {wl['n_iter']} iterations "
                            "(strict convergence)")
        if fit.get("first_call_used_as_sample"):
            notes.append("single slow run")
        if fit.get("library_log"):
            notes.append("; ".join(fit["library_log"])[:120])
        lines.append(
            f"| {name} | {_ms_range(fit.get('per_iter_s'))} | {_num(fit.get('ratio_to_floor'), '.2f')} "
            f"| {_num(ratio_ref, '.2f')} | {_num(fit.get('first_call_s') and fit['first_call_s'] * 1e3, '.0f')} "
            f"| {_num(fit.get('n_iter'), 'd')} | {_num(fit.get('inertia_rel_diff'), '+.1e')} "
            f"| {_num(fit.get('label_agreement'), '.4f')} | {conv_cell} | {init_cell} "
            f"| {_num(_ratio(init, ref_init), '.2f')} | {'; '.join(notes).replace('|', '/')} |"
        )
    seeds = sorted({r["seed"] for r in rows if r.get("seed") is not None})
    if seeds:
        lines += ["", f"Library defaults, `KMeans({wl['n_clusters']}, random_state=seed)` end to end "
                  "(own k-means++ init): time ms and Δinertia vs scikit-learn on the same seed.", "",
                  "| contestant | " + " | ".join(f"seed {s}" for s in seeds) + " | median ms | × ref |",
                  "|---|" + "---|" * (len(seeds) + 2)]
        for key in keys:
            cells, times, ref_times = [], [], []
            for seed in seeds:
                r = get.get((key, "time_fit_defaults", seed), {})
                ref = get.get(("sklearn-lloyd", "time_fit_defaults", seed), {})
                if r.get("status") != "ok":
                    cells.append(r.get("status", "—"))
                    continue
                t = r["time_s"]["median"]
                times.append(t)
                if ref.get("status") == "ok":
                    ref_times.append(ref["time_s"]["median"])
                cells.append(f"{t * 1e3:.0f} ({_num(r.get('inertia_rel_diff'), '+.1e')})")
            if not times:
                continue
            med = float(np.median(times))
            ratio = med / float(np.median(ref_times)) if ref_times else None
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {med * 1e3:.0f} | {_num(ratio, '.2f')} |")
    return lines


def _ratio(record, reference, field="time_s"):
    if not record or not reference or record.get("status") != "ok" or reference.get("status") != "ok":
        return None
    if not record.get(field) or not reference.get(field):
        return None
    return record[field]["median"] / reference[field]["median"]


def write_plots(result, out_dir, name):
    """PNG plots (time per iteration vs n, k, d; per library on MNIST). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    workloads = {w["name"]: w for w in result["workloads"]}
    fits = [r for r in result["results"] if r["benchmark"] == "time_fit" and r["status"] == "ok"]
    written = []
    for group, axis in (("sweep_n", "n_samples"), ("sweep_k", "n_clusters"), ("sweep_d", "n_features")):
        series = {}
        for r in fits:
            if r["group"] == group and r.get("per_iter_s"):
                x = workloads[r["workload"]][axis]
                series.setdefault(r["contestant"], []).append((x, r["per_iter_s"]["median"]))
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key, points in sorted(series.items()):
            points.sort()
            ax.plot(*zip(*points), marker="o", label=key)
        floors = sorted({(workloads[w][axis], workloads[w]["floor"]["floor_s"])
                         for w in workloads if workloads[w]["group"] == group
                         and (workloads[w].get("floor") or {}).get("floor_s")})
        if floors:
            ax.plot(*zip(*floors), "k--", label="floor (this machine)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel("seconds per iteration")
        fixed = [a for a in ("n_samples", "n_features", "n_clusters") if a != axis]
        group_wls = [w for w in workloads.values() if w["group"] == group]
        held = ", ".join(f"{a}={group_wls[0][a]:,}" for a in fixed
                         if len({w[a] for w in group_wls}) == 1)
        ax.set_title(f"Time per iteration vs {axis} ({held}, blobs, float32)\n"
                     f"{hardware_line(result['environment'])}", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        path = pathlib.Path(out_dir) / f"{name}-{group}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    # Per-iteration time per library, one bar group per MNIST/notebook workload.
    names = [w for w in workloads if workloads[w]["group"] in ("mnist", "notebook", "anchor")]
    keys = list(dict.fromkeys(r["contestant"] for r in fits if r["workload"] in names))
    if names and keys:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            values = []
            for w in names:
                r = next((r for r in fits if r["workload"] == w and r["contestant"] == key), None)
                values.append(r["per_iter_s"]["median"] * 1e3 if r and r.get("per_iter_s") else 0)
            ax.bar(np.arange(len(names)) + i * width, values, width, label=key)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=8)
        ax.set_ylabel("ms per iteration")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title("Time per iteration per library", fontsize=9)
        path = pathlib.Path(out_dir) / f"{name}-per-library.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray,)):
        return o.tolist()
    if isinstance(o, pathlib.Path):
        return str(o)
    return repr(o)


def write_reports(result, out_dir, name, plots=True, log=print):
    """``<name>.json``, ``<name>.md`` and (matplotlib permitting) ``<name>-*.png``."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    pngs = write_plots(result, out_dir, name) if plots else []
    result["files"] = [json_path.name, md_path.name] + [p.name for p in pngs]
    json_path.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    md_path.write_text(render_markdown(result))
    log(f"wrote {', '.join(str(out_dir / f) for f in result['files'])}")
    return json_path, md_path, pngs


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def build_parser(prog="gpukmeans bench", profile="quick", max_seconds=110.0, out="gpukmeans-bench"):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark gpukmeans against the k-means libraries importable here, on "
        "the same work (same initial centres, fixed iterations), with inertia and agreement "
        "reported next to each time. Writes JSON, markdown and PNG plots.",
    )
    p.add_argument("--profile", choices=("tiny", "quick", "full"), default=profile,
                   help=f"workload set (default {profile}; tiny is for smoke tests)")
    p.add_argument("--contestants", help="comma-separated subset (see --list)")
    p.add_argument("--device", choices=("all", "cpu", "gpu"), default="all",
                   help="run only the contestants on this device")
    p.add_argument("--mnist", help="folder of the MNIST IDX files (default: $GPUKMEANS_DATA, the "
                   "user cache of gpukmeans.datasets, then shared/data/mnist; never downloads)")
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--name", help="file stem (default harness-<profile>)")
    p.add_argument("--repeats", type=int, default=None,
                   help="samples after the first call (default: tiny 1, quick 2, full 3)")
    p.add_argument("--max-seconds", type=float, default=max_seconds,
                   help=f"time budget; later measurements are skipped (default {max_seconds:g})")
    p.add_argument("--measure-seconds", type=float, default=None,
                   help="stop sampling one contestant after this many seconds (default: by profile)")
    p.add_argument("--slow-cap", type=float, default=60.0,
                   help="skip sweep points predicted slower than this per fit (default 60)")
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="threads for every library (default: the cores available)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--list", action="store_true", help="list contestants and availability, then exit")
    p.add_argument("--quiet", action="store_true")
    return p


_PROFILE_SETTINGS = {
    "tiny": dict(repeats=1, floor_bytes=8 << 20, sgemm_size=256, measure_seconds=2.0),
    "quick": dict(repeats=2, floor_bytes=128 << 20, sgemm_size=1024, measure_seconds=3.0),
    "full": dict(repeats=3, floor_bytes=256 << 20, sgemm_size=2048, measure_seconds=15.0),
}


def settings_from_args(args):
    kw = dict(_PROFILE_SETTINGS[args.profile])
    if args.measure_seconds is not None:
        kw["measure_seconds"] = args.measure_seconds
    if args.repeats is not None:
        kw["repeats"] = args.repeats
    return Settings(max_seconds=args.max_seconds, slow_cap=args.slow_cap,
                    threads=args.threads, plots=not args.no_plots, **kw)


def main(argv=None, *, prog="gpukmeans bench", profile="quick", max_seconds=110.0,
         out="gpukmeans-bench", repo=None):
    """Entry point of ``gpukmeans bench`` (quick profile) and of ``benchmarks/harness.py``."""
    args = build_parser(prog, profile, max_seconds, out).parse_args(argv)
    names = [s.strip() for s in args.contestants.split(",")] if args.contestants else None
    if args.list:
        _, report = select_contestants(names, args.device)
        for r in report:
            state = "available" if r["available"] else f"not available: {r['reason']}"
            print(f"{r['key']:26s} {r['device']:4s} {state}{' (untested)' if r['untested'] else ''}")
        return 0
    try:
        run_suite(args.profile, contestants=names, device=args.device, mnist=args.mnist,
                  settings=settings_from_args(args), out_dir=args.out, name=args.name, repo=repo,
                  log=(lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True)))
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
