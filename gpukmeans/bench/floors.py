"""The floor of the machine: its copy bandwidth and SGEMM rate, measured in the run, and what
one Lloyd iteration or one k-means++ seeding cannot beat on it."""

import numpy as np

from .environment import free_cupy
from .scoring import BLOCK_ELEMENTS
from .timing import summarize, timed


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


def measure_sgemm(size, repeats=5, dtype=np.float32):
    """Square ``np.dot`` rate in GFLOP/s: SGEMM, or DGEMM with ``dtype=np.float64``."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=dtype)
    b = rng.random((size, size), dtype=dtype)
    out = np.empty((size, size), dtype=dtype)
    np.dot(a, b, out=out)
    rates = []
    for _ in range(repeats):
        seconds, _ = timed(lambda: np.dot(a, b, out=out))
        rates.append(2 * size**3 / seconds / 1e9)
    return summarize(rates)


def gemm_seconds(X, n_clusters, repeats=3, xp=np, sync=None, block_elements=BLOCK_ELEMENTS):
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
    free_cupy()
    return floors
