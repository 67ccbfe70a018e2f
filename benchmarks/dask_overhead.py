"""Per-iteration overhead of gpukmeans.dask.KMeans on a LocalCluster: each iteration's
wall time on the client minus the longest time a worker spent on that iteration's pass,
as the worker measured it (``KMeans._timings``), medians over many iterations.

Uniform random data (no blob structure), ``init="random"``, ``tol=0``: the labels keep
changing, so every fit runs ``--max-iter`` iterations. The first iteration of each fit
is left out (actors start, Numba's first call).

    .venv/bin/python benchmarks/dask_overhead.py --n-samples 200000 --n-clusters 32
    .venv/bin/python benchmarks/dask_overhead.py --n-clusters 1024 --direct

``--direct`` makes the client with ``direct_to_workers=True`` (the actors' calls then go
straight to the workers, not through the scheduler's proxy).
"""

import argparse
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import dask.array as da  # noqa: E402
import distributed  # noqa: E402

import gpukmeans.dask as gkd  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=32)
    parser.add_argument("--n-clusters", type=int, default=32)
    parser.add_argument("--n-blocks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=40)
    parser.add_argument("--fits", type=int, default=2)
    parser.add_argument("--direct", action="store_true")
    args = parser.parse_args(argv)

    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                  processes=True, dashboard_address=":0") as cluster, \
            distributed.Client(cluster, direct_to_workers=args.direct):
        X = da.random.RandomState(0).random_sample(
            (args.n_samples, args.n_features),
            chunks=(-(-args.n_samples // args.n_blocks), args.n_features)).astype(np.float32)
        X = X.persist()
        distributed.wait(X)
        gkd.KMeans(args.n_clusters, init="random", max_iter=3, tol=0, random_state=0).fit(X)
        walls, slowest = [], []
        for seed in range(1, args.fits + 1):
            km = gkd.KMeans(args.n_clusters, init="random", max_iter=args.max_iter, tol=0,
                            random_state=seed).fit(X)
            walls += km._timings["iterations"][1:]
            slowest += km._timings["slowest_worker"][1:]
    walls, slowest = np.array(walls), np.array(slowest)
    overhead = 1000 * (walls - slowest)
    print(f"{args.n_samples:,} x {args.n_features}, k={args.n_clusters}, {args.n_blocks} blocks, "
          f"{args.workers} workers, direct_to_workers={args.direct}, load average "
          f"{os.getloadavg()[0]:.1f}: {overhead.size} iterations; per iteration median "
          f"{1000 * np.median(walls):.1f} ms, slowest worker's pass "
          f"{1000 * np.median(slowest):.1f} ms, overhead median {np.median(overhead):.1f} ms "
          f"(quartiles {np.percentile(overhead, 25):.1f}-{np.percentile(overhead, 75):.1f}, "
          f"min {overhead.min():.1f})")


if __name__ == "__main__":
    main()
