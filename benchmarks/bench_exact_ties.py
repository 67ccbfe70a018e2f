#!/usr/bin/env python
"""What exact float32 labels cost where ties are common: gpukmeans ``KMeans(device="cpu")``
on each CPU engine against scikit-learn, on data whose rows tie exactly or nearly with
several centers.

float32 labels are the exactly nearest centers, the lowest index on an exact tie
(``gpukmeans._cpu_exact``, ``gpukmeans._cpu_small._nearest_of_near_ties``): a row whose
float32 values cannot order its nearest centers is decided from float64 ranks when
these are provably exact (a coarse grid), else by an exact sum. Data of one-hot rows,
small integers, binarised images (scaled by 1/255 too, whose grid is fine) and
duplicated initial centers make such rows common; scikit-learn decides them by float32
rounding, and is the yardstick. In one process, the two alternate call by call (ABBA),
the same initial centers (rows drawn with a fixed seed; two duplicated pairs for the
duplicated case), ``n_init=1``, ``tol=0``, a fixed ``max_iter``; medians of the repeats,
their ratio gpukmeans / scikit-learn, and how many labels differ (ties decided otherwise).
Each engine is forced for every workload, at a size it would take: the NumPy engine's
rows are fewer. The cosine workload (``metric="cosine"``: rows that differ from each
other and from their means by a coordinate 1e-4 of their norm, so that nearly every row
is a near-tie of many centers) has no scikit-learn counterpart: scikit-learn's KMeans
runs on the rows normalised, from the initial centers normalised (the same E-step
products; its centers are not renormalised).

Usage (from the repository root; about 3 minutes on 2 quiet cores)::

    .venv/bin/python benchmarks/bench_exact_ties.py     # writes benchmarks/results/exact-ties.{md,json}
    .venv/bin/python benchmarks/bench_exact_ties.py --quick
"""

import argparse
import contextlib
import json
import math
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from gpukmeans.bench.contestants import set_numba_threads  # noqa: E402
from gpukmeans.bench.environment import (  # noqa: E402
    default_threads, environment, hardware_line, versions_line,
)
from gpukmeans.bench.reports import json_default  # noqa: E402
from gpukmeans.bench.runner import thread_limits  # noqa: E402
from gpukmeans.bench.timing import alternate  # noqa: E402
from gpukmeans.bench.workloads import find_mnist, load_mnist_images  # noqa: E402

# The NumPy engine's size limits, set to force one engine for a whole fit (the tests'
# route_cpu_fits does the same).
_ENGINE_LIMITS = ("MAX_WORK", "MAX_ELEMENTS", "MAX_DISTANCES", "MAX_PASS_WORK",
                  "MAX_PASS_ELEMENTS", "MAX_KMEANSPP_DISTANCES", "MAX_KMEANSPP_WORK")

# name: (rows on the NumPy engine, rows on the Numba engine, n_clusters, max_iter)
WORKLOADS = {
    "one-hot, 50 categories": (8000, 30000, 20, 20),
    "one-hot x 0.1, 50 categories": (8000, 30000, 20, 20),
    "integers 0-3, 20 features": (8000, 40000, 30, 20),
    "binarised MNIST": (5000, 70000, 20, 20),
    "binarised MNIST x 1/255": (5000, 70000, 20, 20),
    "Gaussian 784, two duplicated initial centers": (4000, 30000, 10, 3),
    "cosine: one-hot x 0.1 and a feature of 1000": (8000, 30000, 20, 20),
}
QUICK_ROWS = 0.2


@contextlib.contextmanager
def engine(name):
    """Every CPU call of the block on the NumPy ("numpy") or Numba ("numba") engine."""
    from gpukmeans import _cpu_small

    saved = {limit: getattr(_cpu_small, limit) for limit in _ENGINE_LIMITS}
    for limit in _ENGINE_LIMITS:
        setattr(_cpu_small, limit, math.inf if name == "numpy" else 0)
    try:
        yield
    finally:
        for limit, value in saved.items():
            setattr(_cpu_small, limit, value)


def make_data(name, n_samples, mnist, rng):
    """``(X, init)`` float32 for a workload, or None where it needs MNIST and there is none."""
    n_clusters = WORKLOADS[name][2]
    if name.startswith("cosine"):
        X = np.zeros((n_samples, 50), np.float32)
        X[np.arange(n_samples), rng.integers(0, 49, n_samples)] = 0.1
        X[:, 49] = 1000
    elif name.startswith("one-hot"):
        X = np.zeros((n_samples, 50), np.float32)
        X[np.arange(n_samples), rng.integers(0, 50, n_samples)] = 0.1 if "0.1" in name else 1
    elif name.startswith("integers"):
        X = rng.integers(0, 4, (n_samples, 20)).astype(np.float32)
    elif name.startswith("binarised"):
        if mnist is None:
            return None
        X = (load_mnist_images(mnist)[:n_samples] > 0.5).astype(np.float32)
        if "1/255" in name:
            X *= np.float32(1 / 255)
    else:
        X = rng.standard_normal((n_samples, 784)).astype(np.float32)
    init = X[rng.choice(X.shape[0], n_clusters, replace=False)].copy()
    if name.startswith("Gaussian"):
        init[1], init[3] = init[0], init[2]
    return X, init


def run(rows_scale, repeats, mnist, log=print):
    from sklearn.cluster import KMeans as SkKMeans

    from gpukmeans import KMeans as GkKMeans

    rows = []
    for name, (numpy_rows, numba_rows, n_clusters, max_iter) in WORKLOADS.items():
        for engine_name, n_samples in (("numpy", numpy_rows), ("numba", numba_rows)):
            n_samples = max(n_clusters, int(n_samples * rows_scale))
            data = make_data(name, n_samples, mnist, np.random.default_rng(0))
            if data is None:
                log(f"{name}: skipped (no MNIST)")
                continue
            X, init = data
            n_samples = X.shape[0]  # MNIST may hold fewer
            params = dict(n_clusters=n_clusters, init=init, n_init=1, max_iter=max_iter, tol=0.0)
            cosine = name.startswith("cosine")
            X_sk, sk_params = X, params
            if cosine:
                X_sk = X / np.linalg.norm(X, axis=1, keepdims=True)
                sk_params = {**params, "init": init / np.linalg.norm(init, axis=1, keepdims=True)}
            log(f"{name}, {n_samples} x {X.shape[1]}, k={n_clusters}, {engine_name} engine")
            with engine(engine_name):
                measured = alternate({
                    "sklearn": lambda p=sk_params: SkKMeans(**p).fit(X_sk),
                    "gpukmeans": lambda p=params: GkKMeans(
                        **p, device="cpu", metric="cosine" if cosine else "euclidean").fit(X),
                }, repeats, log=log)
            sk, gk = measured["sklearn"]["result"], measured["gpukmeans"]["result"]
            medians = {n: m["time_s"]["median"] for n, m in measured.items()}
            rows.append({
                "workload": name, "engine": engine_name, "n_samples": n_samples,
                "metric": "cosine" if cosine else "euclidean",
                "n_features": X.shape[1], "n_clusters": n_clusters, "max_iter": max_iter,
                "median_s": medians, "samples_s": {n: m["samples"] for n, m in measured.items()},
                "ratio": medians["gpukmeans"] / medians["sklearn"],
                "n_iter": {"sklearn": int(sk.n_iter_), "gpukmeans": int(gk.n_iter_)},
                "inertia": {"sklearn": float(sk.inertia_), "gpukmeans": float(gk.inertia_)},
                "labels_differing": int(np.sum(sk.labels_ != gk.labels_)),
            })
    return rows


def render(result):
    env = result["environment"]
    lines = [
        "# Exact float32 labels on tie-heavy data: gpukmeans (CPU) vs scikit-learn",
        "",
        f"{result['hardware']}; {result['versions']}; commit {env.get('commit')}"
        f"{' (dirty)' if env.get('dirty') else ''}; {env.get('date')};"
        f" {result['repeats']} alternated repeats, medians.",
        "",
        "| workload | engine | n x d, k, iterations (scikit-learn / ours) | scikit-learn ms |"
        " gpukmeans ms | ratio |"
        " labels differing |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['workload']} | {row['engine']} | {row['n_samples']} x {row['n_features']},"
            f" k={row['n_clusters']}, {row['n_iter']['sklearn']} / {row['n_iter']['gpukmeans']} |"
            f" {1e3 * row['median_s']['sklearn']:.1f} | {1e3 * row['median_s']['gpukmeans']:.1f} |"
            f" {row['ratio']:.2f}x | {row['labels_differing']} |")
    lines += ["", "Labels differ where scikit-learn's float32 rounding decides a tie that ours"
              " decides exactly (lowest index on an exact tie); the runs can then part ways."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a fifth of the rows, 2 repeats")
    p.add_argument("--scale", type=float, help="fraction of each workload's rows (default 1)")
    p.add_argument("--mnist", help="folder of the MNIST IDX files (default: ../shared/data/mnist)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output folder")
    p.add_argument("--repeats", type=int, default=5, help="samples per measurement")
    p.add_argument("--threads", type=int, default=default_threads(), help="threads for both")
    args = p.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    mnist = find_mnist(args.mnist)
    set_numba_threads(args.threads)
    start = time.perf_counter()
    with thread_limits(args.threads):
        env = environment(args.threads, repo=REPO)
        print(f"on {hardware_line(env)}", flush=True)
        rows = run(args.scale or (QUICK_ROWS if args.quick else 1.0), repeats, mnist,
                   log=lambda *a: print(*a, flush=True))
    result = {
        "schema": "gpukmeans-bench-exact-ties/1", "quick": args.quick, "environment": env,
        "hardware": hardware_line(env), "versions": versions_line(env),
        "repeats": repeats, "rows": rows,
        "elapsed_s": time.perf_counter() - start,
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "exact-ties-quick" if args.quick else "exact-ties"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    (out / f"{name}.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
