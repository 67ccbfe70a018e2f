#!/usr/bin/env python
"""Issue 14's CPU benchmark: ``gpukmeans.MiniBatchKMeans(device="cpu")`` against
``sklearn.cluster.MiniBatchKMeans``, side by side in one process.

Both contestants get the same data, parameters and ``random_state``: they draw the same
initialisation samples and the same mini-batches, so they make the same steps and stop at
the same step, and their inertias should agree (the report checks it). Each ``fit`` is
timed end to end (validation, k-means++ on ``init_size`` samples, the steps, the final
labels over all the data), after one untimed warm-up call each; the contestants
alternate call by call (ABBA), every measurement is repeated, medians are reported.

Workloads (float32, scikit-learn's defaults: ``batch_size=1024``, ``max_no_improvement=10``,
``n_init=1`` with k-means++):

- MNIST, 70,000 x 784, pixels in [0, 1], read by :mod:`gpukmeans.datasets` (never
  downloaded here), k=10 and k=100, seeds 0-2, and k=10, seed 0 in float64;
- blobs, 2,000,000 x 32 (the issue asks for 10,000,000 x 32; this 2-core machine with
  others' jobs on it runs 2,000,000, and says so in the report), k=32 and k=256, seed 0;
- every workload at 1 thread and at all cores (scikit-learn's OpenMP and BLAS pools and
  gpukmeans' Numba threads held to the count).

Goal (issue 14): at least 3x faster than scikit-learn at equal inertia.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_minibatch.py             # results/minibatch.{md,json}
    .venv/bin/python benchmarks/bench_minibatch.py --quick     # smoke test, small sizes
"""

import argparse
import json
import os
import pathlib
import sys

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
from gpukmeans.bench.workloads import find_mnist, load_mnist_images, make_blobs_data  # noqa: E402

GOAL_RATIO = 1 / 3  # gpukmeans time / scikit-learn time, at most
INERTIA_RTOL = 1e-6
"""float64: the same run, so the same inertia. float32: scikit-learn's labels are float32
approximations at near-ties (ours are exact, as in float64), so on data with near-ties (MNIST)
the two runs may part ways; there "equal" means ours is no worse."""

FULL = dict(mnist_ks=(10, 100), mnist_seeds=(0, 1, 2), mnist_float64=(10, 0),
            blobs=(2_000_000, 32), blobs_ks=(32, 256), blobs_seeds=(0,), repeats=3,
            blobs_repeats=2, name="minibatch")
QUICK = dict(mnist_ks=(10,), mnist_seeds=(0,), mnist_float64=(10, 0), blobs=(100_000, 32),
             blobs_ks=(32,), blobs_seeds=(0,), repeats=1, blobs_repeats=1,
             name="minibatch-quick")


def measure(X, dataset, k, seed, repeats, threads, log=print):
    """Both contestants on ``threads`` threads: scikit-learn's OpenMP and BLAS pools, and
    gpukmeans' Numba engine (its per-batch work runs on NumPy with BLAS on one thread)."""
    from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans

    from gpukmeans import MiniBatchKMeans

    log(f"{dataset} {X.shape[0]:,} x {X.shape[1]} {X.dtype}, k={k}, seed {seed}, "
        f"{threads} thread(s)")
    set_numba_threads(threads)
    with thread_limits(threads):
        measured = alternate({
            "sklearn": lambda: SkMiniBatchKMeans(k, random_state=seed).fit(X),
            "gpukmeans": lambda: MiniBatchKMeans(k, random_state=seed, device="cpu").fit(X),
        }, repeats, log=log, unit="s")
    sk, gk = measured["sklearn"]["result"], measured["gpukmeans"]["result"]
    ratio = measured["gpukmeans"]["time_s"]["median"] / measured["sklearn"]["time_s"]["median"]
    inertia_rel_diff = (gk.inertia_ - sk.inertia_) / sk.inertia_
    return {
        "dataset": dataset, "dtype": str(X.dtype), "n_samples": X.shape[0],
        "n_features": X.shape[1],
        "n_clusters": k, "seed": seed, "threads": threads,
        "time_s": {n: m["time_s"] for n, m in measured.items()},
        "first_call_s": {n: m["first_call_s"] for n, m in measured.items()},
        "notes": {n: m["notes"] for n, m in measured.items()},
        "n_steps": {"sklearn": int(sk.n_steps_), "gpukmeans": int(gk.n_steps_)},
        "inertia": {"sklearn": float(sk.inertia_), "gpukmeans": float(gk.inertia_)},
        "inertia_rel_diff": float(inertia_rel_diff),
        "equal_inertia": bool(abs(inertia_rel_diff) <= INERTIA_RTOL
                              or (X.dtype == np.float32 and inertia_rel_diff <= 0)),
        "centers_rel_diff": float(np.abs(gk.cluster_centers_ - sk.cluster_centers_).max()
                                  / np.abs(sk.cluster_centers_).max()),
        "ratio": ratio,
        "speedup": 1 / ratio,
        "per_step_ms": {
            "sklearn": measured["sklearn"]["time_s"]["median"] / sk.n_steps_ * 1e3,
            "gpukmeans": measured["gpukmeans"]["time_s"]["median"] / gk.n_steps_ * 1e3,
        },
    }


def report_markdown(report, cfg):
    env = report["environment"]
    lines = [
        "# MiniBatchKMeans on the CPU: gpukmeans against scikit-learn",
        "",
        f"Written by `benchmarks/bench_minibatch.py` ({'--quick' if cfg is QUICK else 'full'} "
        f"run) on {env['date']}.",
        "",
        f"- Hardware: {hardware_line(env)}",
        f"- Versions: {versions_line(env)}",
        f"- Commit: {env['commit']}{' (dirty)' if env['dirty'] else ''}",
        "- Load average (1, 5, 15 min) at the start: "
        f"{', '.join(f'{v:.2f}' for v in report['load_average_start'])}; at the end: "
        f"{', '.join(f'{v:.2f}' for v in report['load_average_end'])} (a shared machine: "
        "other jobs ran beside this one)",
        "",
        "Both fit the data with scikit-learn's defaults (`batch_size=1024`, "
        "`max_no_improvement=10`, k-means++, `n_init=1`) and the same `random_state`: the "
        "same initialisation, the same mini-batches, the same number of steps. Each `fit` "
        f"is timed end to end, {cfg['repeats']} times (blobs: {cfg['blobs_repeats']}) after a "
        "warm-up, alternating; medians. "
        "Goal (issue 14): at least 3x faster at equal inertia. float64: the same run, so "
        f"equal means within {INERTIA_RTOL:g} relative. float32: scikit-learn's float32 "
        "labels are approximate at near-ties (ours are exact there, and follow the float64 "
        "run), so on MNIST the two float32 runs may part ways; equal then means ours is no "
        "worse.",
        "",
    ]
    if report.get("blobs_note"):
        lines += [report["blobs_note"], ""]
    lines += [
        "| data | dtype | k | seed | threads | steps (sk / gk) | scikit-learn s | gpukmeans s "
        "| speed-up | ms/step (sk / gk) | inertia rel. diff | goal met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        met = r["speedup"] >= 1 / GOAL_RATIO and r["equal_inertia"]
        lines.append(
            f"| {r['dataset']} {r['n_samples']:,} x {r['n_features']} | {r['dtype']} | "
            f"{r['n_clusters']} | {r['seed']} | {r['threads']} | "
            f"{r['n_steps']['sklearn']} / {r['n_steps']['gpukmeans']} | "
            f"{r['time_s']['sklearn']['median']:.3f} | {r['time_s']['gpukmeans']['median']:.3f} | "
            f"{r['speedup']:.2f}x | {r['per_step_ms']['sklearn']:.2f} / "
            f"{r['per_step_ms']['gpukmeans']:.2f} | {r['inertia_rel_diff']:.1e} | "
            f"{'yes' if met else 'no'} |")
    lines += ["", "Where the time goes (per step, both libraries): the labels of a batch "
              "(1024 x k distances), its inertia, the center update, and drawing the batch. "
              "scikit-learn draws each batch with `RandomState.choice(n_samples, "
              "batch_size, p=...)`, which sums all n_samples weights at every step "
              "(30 ms on 2,000,000 samples); gpukmeans builds that cumulative sum once and "
              "draws the same indices from the same random numbers (`BatchSampler`).", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke test")
    parser.add_argument("--mnist", default=None, help="folder holding the MNIST IDX files")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts to measure at (default: 1 and all cores)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    threads = default_threads()
    thread_counts = args.threads or sorted({1, threads})
    report = {"environment": environment(threads, REPO), "config": dict(cfg), "results": [],
              "thread_counts": thread_counts, "load_average_start": os.getloadavg()}
    from gpukmeans import _cpu  # noqa: F401  (Numba's threading layer, for set_numba_threads)

    mnist = find_mnist(args.mnist)
    if mnist is None:
        print("MNIST not found (pass --mnist DIR): MNIST workloads skipped")
        report["mnist_note"] = "MNIST not found: skipped"
    else:
        X = load_mnist_images(mnist, n_samples=5000 if args.quick else None)
        for n_threads in thread_counts:
            for k in cfg["mnist_ks"]:
                for seed in cfg["mnist_seeds"]:
                    report["results"].append(
                        measure(X, "MNIST", k, seed, cfg["repeats"], n_threads))
            k, seed = cfg["mnist_float64"]
            report["results"].append(
                measure(X.astype(np.float64), "MNIST", k, seed, cfg["repeats"], n_threads))
        del X

    n_samples, n_features = cfg["blobs"]
    if not args.quick:
        report["blobs_note"] = (
            f"Blobs: {n_samples:,} x {n_features}, not the issue's 10,000,000 x 32: this "
            f"machine has {threads} cores shared with other jobs. scikit-learn's cost per "
            "step grows with n_samples (its batch draw reads every weight), ours does not.")
    for k in cfg["blobs_ks"]:
        X = make_blobs_data(n_samples, n_features, k, seed=0)
        for n_threads in thread_counts:
            for seed in cfg["blobs_seeds"]:
                report["results"].append(
                    measure(X, "blobs", k, seed, cfg["blobs_repeats"], n_threads))
        del X

    report["load_average_end"] = os.getloadavg()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{cfg['name']}.json").write_text(json.dumps(report, indent=1, default=json_default))
    (out / f"{cfg['name']}.md").write_text(report_markdown(report, cfg))
    print(report_markdown(report, cfg))


if __name__ == "__main__":
    main()
