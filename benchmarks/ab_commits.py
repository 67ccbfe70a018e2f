#!/usr/bin/env python
"""One workload timed on two versions of gpukmeans in one process, alternated.

This VM's speed drifts by more than most changes gain (the same kernel 1.8 to 3.5 ms
minutes apart), so two processes run one after the other compare the hour, not the
code. Here the base revision's ``gpukmeans/`` is exported from git (``git archive``)
as a package of another name, imported beside the working tree's ``gpukmeans``, and
the two take turns (ABBA) on the same data; medians, their ratio, and whether the two
gave the same result bit for bit are printed.

The base's kernels compile on its first run into its own folder, kept under
``~/.cache/gpukmeans-ab/<commit>/`` (or ``--cache``) for later runs.

Usage, from the repository root::

    .venv/bin/python benchmarks/ab_commits.py --base HEAD~1 kmeans++ 100000 128 32
    .venv/bin/python benchmarks/ab_commits.py --base a644795 fit 100000 8 32 --threads 1
    .venv/bin/python benchmarks/ab_commits.py --base HEAD lloyd 100000 96 8
    .venv/bin/python benchmarks/ab_commits.py --base main minibatch 70000 784 10 --dtype float64
    .venv/bin/python benchmarks/ab_commits.py --base HEAD minibatch 70000 784 10 --mnist DIR

Blobs (``make_blobs``, ``n_clusters`` centers, ``random_state=0``) by default; with
``--mnist DIR``, MNIST's first ``n_samples`` images in [0, 1] (``n_features`` 784):
blobs converge in fewer mini-batch steps than digits do, which weighs a fit's parts
otherwise. ``fit`` is the default fit (k-means++ and its iterations); ``lloyd`` the
iterations alone, as the harness times them: 20 from random rows, ``tol=0``.
"""

import argparse
import importlib
import io
import pathlib
import subprocess
import sys
import tarfile

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from gpukmeans.bench.timing import alternate  # noqa: E402
from gpukmeans.bench.workloads import find_mnist, load_mnist_images  # noqa: E402

BASE_PACKAGE = "gpukmeans_base"


def export_base(revision, cache):
    """Import ``revision``'s ``gpukmeans/`` as :data:`BASE_PACKAGE`; returns ``(module,
    commit)``. Its files are written once per commit under ``cache``."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", revision],
                            check=True, capture_output=True, text=True).stdout.strip()
    root = pathlib.Path(cache).expanduser() / commit
    package = root / BASE_PACKAGE
    if not (package / "__init__.py").exists():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "gpukmeans"],
                                 check=True, capture_output=True).stdout
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(root, filter="data")
        (root / "gpukmeans").rename(package)
    sys.path.insert(0, str(root))
    return importlib.import_module(BASE_PACKAGE), commit


def workload(module, what, X, n_clusters, seed):
    """A call of ``module`` on ``X``: its result, to compare bit for bit."""
    if what == "kmeans++":
        return module.kmeans_plusplus(X, n_clusters, random_state=seed)[0]
    if what in ("fit", "lloyd"):
        # "lloyd": the iterations alone, as the harness times them (random rows, tol=0)
        options = dict(init="random", n_init=1, max_iter=20, tol=0.0) if what == "lloyd" else {}
        km = module.KMeans(n_clusters, random_state=seed, device="cpu", **options).fit(X)
        return km.cluster_centers_, km.labels_, np.float64(km.inertia_)
    km = module.MiniBatchKMeans(n_clusters, random_state=seed, device="cpu").fit(X)
    return km.cluster_centers_, km.labels_, np.float64(km.inertia_)


def same(a, b):
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["kmeans++", "fit", "lloyd", "minibatch"])
    parser.add_argument("n_samples", type=int)
    parser.add_argument("n_features", type=int)
    parser.add_argument("n_clusters", type=int)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None,
                        help="Numba threads for both (default: all)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cache", default="~/.cache/gpukmeans-ab")
    parser.add_argument("--mnist", default=None, metavar="DIR",
                        help="MNIST's images instead of blobs: the folder of its IDX files")
    args = parser.parse_args(argv)
    if args.mnist is not None and args.n_features != 784:
        parser.error(f"--mnist: MNIST has 784 features, not n_features={args.n_features}")

    from sklearn.datasets import make_blobs

    import gpukmeans
    from gpukmeans._cpu_runtime import set_num_threads

    base, commit = export_base(args.base, args.cache)
    if args.threads:
        set_num_threads(args.threads)
    if args.mnist is None:
        X, _ = make_blobs(args.n_samples, args.n_features, centers=args.n_clusters,
                          random_state=0)
        data = "blobs"
    else:
        directory = find_mnist(args.mnist)
        if directory is None:
            parser.error(f"--mnist: no MNIST IDX files in {args.mnist}")
        X = load_mnist_images(directory)[:args.n_samples]  # at most n_samples
        data = "MNIST"
    X = X.astype(args.dtype)
    head = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip()
    print(f"{args.what} {data} {X.shape[0]:,} x {X.shape[1]} {args.dtype}, "
          f"k={args.n_clusters}, threads {args.threads or 'all'}: base {commit[:10]} "
          f"against the working tree ({head})")
    seeds = iter(range(10**6))
    results = {}

    def call(name, module):
        def run():
            seed = next(seeds) // 2  # both sides of a pair get the same seed
            results.setdefault(seed, {})[name] = workload(module, args.what, X,
                                                          args.n_clusters, seed)
        return run

    timings = alternate({"base": call("base", base), "new": call("new", gpukmeans)},
                        args.repeats)
    pairs = [r for r in results.values() if len(r) == 2]
    identical = sum(same(r["base"], r["new"]) for r in pairs)
    ratio = timings["new"]["time_s"]["median"] / timings["base"]["time_s"]["median"]
    print(f"    new / base: {ratio:.2f}; the same result in {identical} of {len(pairs)} "
          "seeds")


if __name__ == "__main__":
    main()
