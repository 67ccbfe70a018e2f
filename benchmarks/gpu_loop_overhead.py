#!/usr/bin/env python
"""Is the GPU Lloyd loop bound by its kernels or by the host that launches them?

The H200 run of 2026-12-04 18:00 (benchmarks/results/gpu-check-20261204.md) timed MNIST's
k=20 loop (E-step + M-step + average_centers) at 0.51 ms an iteration although its parts
alone added to 0.34 ms. Here, per iteration over 20, for each E-step path (the rule's, and
the other forced): the loop's device time (CUDA events), the host's time to enqueue the
same loop with no synchronisation (if it is about the device time, the host is the
bound), and the E-step and M-step alone. Medians of 7, paths alternated.

    PYTHONPATH=. python benchmarks/gpu_loop_overhead.py [--data DIR] [--k 20 256]

Prints a Markdown table and returns its rows; writes nothing. ``--emulated`` runs the same
code on the test suite's emulated device on tiny data, wall-clock timed: a smoke test of
this script (CI), not a measurement.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gpu import initial_centers, load_data  # noqa: E402

PATHS = ("fused", "gemm")


def device_for(emulated):
    """``(engine, xp, device_seconds(fn), synchronize, name)``."""
    from gpukmeans._gpu import GpuKernels

    if emulated:
        from cudaemu import device

        def wall_seconds(fn):
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        return (GpuKernels(device.device("plain").backend()), np, wall_seconds,
                lambda: None, "EMULATED device (a smoke test, not a measurement)")
    import cupy

    from bench_gpu import cuda_time
    from gpukmeans._backend import cuda_backend

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return (GpuKernels(cuda_backend()), cupy, cuda_time, cupy.cuda.Device().synchronize,
            name.decode() if isinstance(name, bytes) else name)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="MNIST's folder (else synthetic)")
    p.add_argument("--k", type=int, nargs="*", default=[20, 256])
    p.add_argument("--emulated", action="store_true", help="smoke test: emulated device")
    args = p.parse_args(argv)

    from gpukmeans import _gpu
    from gpukmeans._lloyd import average_centers

    gpu, xp, device_seconds, synchronize, device_name = device_for(args.emulated)
    if args.emulated:
        X_host = np.random.default_rng(0).normal(size=(300, 12)).astype(np.float32)
        origin, n_clusters_list, n_iter, repeats = "random 300 x 12", [3], 2, 1
    else:
        (X_host, origin), n_iter, repeats = load_data(args.data), 20, 7
        n_clusters_list = args.k
    X = xp.asarray(X_host)
    weight = xp.ones(X.shape[0], dtype=X.dtype)
    print(f"# GPU loop: host or kernels ({device_name}; {origin})\n")
    print("| k | E-step path | loop device ms/iter | loop host enqueue ms/iter | "
          "E-step alone | M-step alone |")
    print("|---|---|---|---|---|---|")
    rule_of = _gpu.choose_assign_path
    rows = []
    try:
        for n_clusters in n_clusters_list:
            centers0 = xp.asarray(initial_centers(X_host, n_clusters))
            labels = xp.empty(X.shape[0], dtype=xp.int32)
            rule = rule_of(*X.shape, n_clusters, X.dtype.itemsize)

            def loop():
                centers = centers0.copy()
                for _ in range(n_iter):
                    sums, weights = gpu.lloyd_iter(X, weight, centers, labels)
                    centers = average_centers(sums, weights, centers, X.dtype, xp)
                return centers

            def enqueue_seconds():
                synchronize()
                start = time.perf_counter()
                loop()
                seconds = time.perf_counter() - start
                synchronize()
                return seconds

            samples = {path: {"device": [], "host": [], "e_step": [], "m_step": []}
                       for path in PATHS}
            for r in range(2 + repeats):  # two warm-up rounds: compiles, pools, handles
                for path in PATHS:
                    _gpu.choose_assign_path = lambda *shape, path=path: path
                    timed = {
                        "device": lambda: device_seconds(loop),
                        "host": enqueue_seconds,
                        "e_step": lambda: device_seconds(
                            lambda: [gpu.e_step(X, centers0, labels) for _ in range(n_iter)]),
                        "m_step": lambda: device_seconds(
                            lambda: [gpu.accumulate(X, weight, labels, n_clusters)
                                     for _ in range(n_iter)]),
                    }
                    for key, measure in timed.items():
                        seconds = measure()
                        if r >= 2:
                            samples[path][key].append(seconds / n_iter)
            for path in PATHS:
                row = {"k": n_clusters, "path": path, "rule": path == rule}
                row.update({key: statistics.median(values) * 1e3
                            for key, values in samples[path].items()})
                rows.append(row)
                print(f"| {n_clusters} | {path}{' (the rule)' if path == rule else ''} | "
                      + " | ".join(f"{row[key]:.3f}"
                                   for key in ("device", "host", "e_step", "m_step")) + " |")
    finally:
        _gpu.choose_assign_path = rule_of
    return rows


if __name__ == "__main__":
    main()
