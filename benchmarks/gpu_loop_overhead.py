#!/usr/bin/env python
"""Is the GPU Lloyd loop bound by its kernels or by the host that launches them?

The H200 run of 2026-12-04 18:00 (benchmarks/results/gpu-check-20261204.md) timed MNIST's
k=20 loop (E-step + M-step + average_centers) at 0.51 ms an iteration although its parts
alone added to 0.34 ms. Here, per iteration over 20, for each E-step path (the rule's, and
each forced): the loop's device time (CUDA events), the host's time to enqueue the same
loop with no synchronisation (perf_counter; if it is about the device time, the host is
the bound), and the E-step and M-step alone. Medians of 7, paths alternated.

    PYTHONPATH=. python benchmarks/gpu_loop_overhead.py [--data DIR]

Prints a Markdown table; writes nothing else.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import cuda_time, gpu_engine, initial_centers, load_data  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None)
    p.add_argument("--k", type=int, nargs="*", default=[20, 256])
    args = p.parse_args(argv)

    import cupy

    from gpukmeans import _gpu
    from gpukmeans._lloyd import average_centers

    X_host, origin = load_data(args.data)
    gpu = gpu_engine()
    X = cupy.asarray(X_host)
    weight = cupy.ones(X.shape[0], dtype=X.dtype)
    n_iter, repeats = 20, 7
    print(f"# GPU loop: host or kernels ({cupy.cuda.runtime.getDeviceProperties(0)['name']!r}, "
          f"{origin}, {X.shape[0]:,} x {X.shape[1]})\n")
    print("| k | path | loop device ms/iter | loop host enqueue ms/iter | E-step alone | "
          "M-step alone |")
    print("|---|---|---|---|---|---|")
    chosen = _gpu.choose_assign_path
    for n_clusters in args.k:
        centers0 = cupy.asarray(initial_centers(X_host, n_clusters))
        labels = cupy.empty(X.shape[0], dtype=cupy.int32)
        rule = chosen(*X.shape, n_clusters, X.dtype.itemsize)

        def loop():
            centers = centers0.copy()
            for _ in range(n_iter):
                sums, weights = gpu.lloyd_iter(X, weight, centers, labels)
                centers = average_centers(sums, weights, centers, X.dtype, cupy)
            return centers

        def enqueue_time():
            cupy.cuda.Device().synchronize()
            start = time.perf_counter()
            loop()
            seconds = time.perf_counter() - start
            cupy.cuda.Device().synchronize()
            return seconds

        results = {}
        for path in ("fused", "gemm"):
            results[path] = {"device": [], "host": [], "e": [], "m": []}
        for _ in range(2):  # warm-up both paths
            for path in ("fused", "gemm"):
                _gpu.choose_assign_path = lambda *a, path=path: path
                loop()
        for _ in range(repeats):
            for path in ("fused", "gemm"):
                _gpu.choose_assign_path = lambda *a, path=path: path
                r = results[path]
                r["device"].append(cuda_time(loop) / n_iter)
                r["host"].append(enqueue_time() / n_iter)
                r["e"].append(cuda_time(lambda: [gpu.e_step(X, centers0, labels)
                                                 for _ in range(n_iter)]) / n_iter)
                r["m"].append(cuda_time(lambda: [gpu.accumulate(X, weight, labels, n_clusters)
                                                 for _ in range(n_iter)]) / n_iter)
        _gpu.choose_assign_path = chosen
        for path, r in results.items():
            name = path + (" (rule)" if path == rule else "")
            cells = [f"{statistics.median(r[key]) * 1e3:.3f}"
                     for key in ("device", "host", "e", "m")]
            print(f"| {n_clusters} | {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
