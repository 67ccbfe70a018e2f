#!/usr/bin/env python
"""The measurements behind the CPU engine's dispatch rules (gpukmeans/_cpu.py).

Two tables, each contestant alternated with the others and repeated, medians quoted:

- ``kernels``: one E-step (no M-step) of the plain step, on random normal rows, by each
  way of finding the nearest centers (GEMM as scikit-learn calls it, BLOCKED, BY_ROWS,
  BY_GEMM), in float32 and float64. Decides ``_dots_kernel``.
- ``runs``: a float32 fit of 10 iterations from random rows of blobs, per iteration, by
  the plain step and by the bounded run (Hamerly's or Elkan's, as the engine runs it: up
  to 256 features, plain steps until the labels settle). Decides ``_bounds_pay``.

``--clock cpu`` times the process's CPU time (all threads) instead of the wall time: the
work each way does, which a machine shared with other jobs does not blur as much.

Usage, from the repository root::

    .venv/bin/python benchmarks/bench_cpu_kernels.py            # both tables, to stdout
    .venv/bin/python benchmarks/bench_cpu_kernels.py kernels --out benchmarks/results
"""

import argparse
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from gpukmeans.bench.timing import alternate  # noqa: E402

KERNEL_SHAPES = [  # (n_samples, n_features, n_clusters)
    (100_000, 2, 32), (100_000, 2, 1024), (100_000, 4, 128), (100_000, 8, 32),
    (100_000, 16, 256), (100_000, 32, 32), (100_000, 32, 4096), (100_000, 64, 64),
    (100_000, 128, 256), (70_000, 784, 20), (70_000, 784, 256),
]
RUN_SHAPES = ([(100_000, d, k) for d in (2, 8, 16, 32, 64) for k in (4, 8, 32, 128, 1024)]
              + [(100_000, d, k) for d in (24, 48, 128, 256) for k in (4, 8, 12, 64, 96, 160)]
              + [(100_000, d, k) for d in (16, 24, 32, 48, 64, 128, 256)
                 for k in (256, 512, 4096)])


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = [time.perf_counter]


def _medians_ms(functions, repeats):
    """Each function's median time in ms, the functions alternated (ABBA), after one
    warm-up call each."""
    measured = alternate(functions, repeats, log=lambda *args: None, clock=_clock[0])
    return {name: 1e3 * m["time_s"]["median"] for name, m in measured.items()}


def kernels_table(repeats):
    from gpukmeans import _cpu, _cpu_lloyd
    from gpukmeans._cpu_small import (
        CHUNK_ROWS, bound_margin_coefficient, centers_squared_norms, fold_rows, n_chunks,
        n_groups,
    )

    kernels = {"GEMM": _cpu_lloyd.GEMM, "BLOCKED": _cpu_lloyd.BLOCKED,
               "BY_ROWS": _cpu_lloyd.BY_ROWS, "BY_GEMM": _cpu_lloyd.BY_GEMM}
    rows = []
    for dtype in (np.float32, np.float64):
        for n_samples, n_features, n_clusters in KERNEL_SHAPES:
            rng = np.random.default_rng(0)
            X = rng.standard_normal((n_samples, n_features)).astype(dtype)
            centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
            labels = np.full(n_samples, -1, np.int32)
            args = (X, np.ones(n_samples, dtype), centers, centers_squared_norms(centers),
                    labels, np.empty(0), CHUNK_ROWS, fold_rows(n_clusters),
                    n_groups(n_chunks(n_samples), n_clusters, n_features), False)
            tail = (bound_margin_coefficient(dtype, n_features), dtype == np.float32)
            # The engine never runs the blocked kernel on float64 (its own summation
            # order would not keep scikit-learn's labels).
            names = [name for name in kernels if not (name == "BLOCKED" and dtype == np.float64)]
            with _cpu.cpu_runtime():
                medians = _medians_ms(
                    {name: (lambda kernel=kernels[name]: _cpu_lloyd._lloyd_chunked(*args, kernel, *tail))
                     for name in names}, repeats)
            chosen = {v: k for k, v in kernels.items()}[_cpu._dots_kernel(X, n_clusters)]
            rows.append((np.dtype(dtype).name, n_samples, n_features, n_clusters, medians, chosen))
            _print_kernel_row(rows[-1])
    return rows


def _print_kernel_row(row):
    dtype, n, d, k, times, chosen = row
    cells = "  ".join(f"{name} {ms:8.2f}" for name, ms in times.items())
    print(f"{dtype:7s} {n:>7} x {d:>3}  k={k:<5} {cells}   chosen: {chosen}", flush=True)


def runs_table(repeats):
    from gpukmeans import KMeans, _cpu, _cpu_small
    from gpukmeans.bench.workloads import make_blobs_data

    n_iter = 10
    rows = []
    rules = _cpu._bounds_pay, _cpu._yinyang_pays
    # Each run kind forced: the plain step, Hamerly's or Elkan's bounds, Yinyang's.
    kinds = {"plain": (False, False), "bounds": (True, False), "yinyang": (False, True)}
    try:
        small = _cpu_small.is_small
        _cpu_small.is_small = lambda *shape: False  # the Numba engine at every size
        for n_samples, n_features, n_clusters in RUN_SHAPES:
            X = make_blobs_data(n_samples, n_features, n_clusters, 0)
            init = X[np.random.default_rng(1).choice(n_samples, n_clusters, replace=False)]

            def fit(kind):
                bounds, yinyang = kinds[kind]
                _cpu._bounds_pay = lambda X, n_clusters: bounds
                _cpu._yinyang_pays = lambda X, n_clusters: yinyang
                KMeans(n_clusters, init=init, n_init=1, max_iter=n_iter, tol=0.0,
                       device="cpu").fit(X)

            medians = _medians_ms({kind: (lambda kind=kind: fit(kind)) for kind in kinds},
                                  repeats)
            rows.append((n_samples, n_features, n_clusters,
                         {name: ms / n_iter for name, ms in medians.items()}))
            print(f"{n_samples:>7} x {n_features:>3}  k={n_clusters:<5} "
                  + "  ".join(f"{name} {ms:8.2f}" for name, ms in rows[-1][3].items()), flush=True)
    finally:
        _cpu_small.is_small = small
        _cpu._bounds_pay, _cpu._yinyang_pays = rules
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", nargs="?", choices=["kernels", "runs", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or the process's CPU time (all threads)")
    args = parser.parse_args(argv)
    _clock[0] = CLOCKS[args.clock]
    from gpukmeans.bench.environment import default_threads, environment

    env = environment(default_threads(), repo=REPO)
    print(f"{env['cpu']}, {env['cores_available']} cores; commit {env['commit'][:10]}"
          f"{' (uncommitted changes)' if env['dirty'] else ''}; {env['date']}; "
          f"{args.clock} clock")
    if args.table in ("kernels", "both"):
        print("\nOne E-step, ms (median):")
        kernels_table(args.repeats)
    if args.table in ("runs", "both"):
        print("\nfloat32 fit, 10 iterations, ms per iteration (median):")
        runs_table(args.repeats)


if __name__ == "__main__":
    main()
