#!/usr/bin/env python
"""Issue 11's start-up benchmark: what a new user waits for, gpukmeans beside scikit-learn.

Every measurement is a new Python process, as a user's first run is. The contestants
alternate (ours, then scikit-learn's, then ours...), each case is repeated, and medians
are reported with their ratio or difference. "Cold" means an empty Numba cache (a new
``NUMBA_CACHE_DIR`` for each run), "warm" the cache a previous run left.

Cases and issue 11's targets:

- ``import``: ``import sklearn.cluster`` against ``import sklearn.cluster`` then
  ``from gpukmeans import KMeans``: gpukmeans adds at most 0.2 s;
- ``help``: ``python -m gpukmeans --help`` answers in under 1 s;
- ``readme``: the README's snippet (the notebook's blobs, ``KMeans(4, random_state=8)``),
  import + fit timed inside the process: cold, at most 3x scikit-learn's import + fit;
  warm, at most 0.3 s above it;
- ``notebook``: float32 ``KMeans(20)`` on the first 5,000 MNIST images (loading excluded):
  the cold fit at most 15 s; the warm first fit at most 0.3 s above scikit-learn's;
- ``compile`` (with ``--compile``): ``gpukmeans compile --device cpu`` on an empty cache,
  and the cold first fit of all 70,000 images, for the record.

Usage, from the repository root (about 3 minutes on 2 quiet cores, 5 with --compile)::

    .venv/bin/python benchmarks/bench_startup.py --mnist ../shared/data/mnist
    .venv/bin/python benchmarks/bench_startup.py --quick    # one repeat each, a smoke test
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from gpukmeans.bench.environment import environment, hardware_line  # noqa: E402

READMES = {
    "gpukmeans": "from gpukmeans import KMeans",
    "scikit-learn": "from sklearn.cluster import KMeans",
}
# Timed inside the child from its first statement: import, then fit (the data made or
# loaded in between is not counted). The child prints one JSON line.
CHILD = """\
import time
started = time.perf_counter()
{import_line}
imported = time.perf_counter()
import json, numpy as np
{data}
before_fit = time.perf_counter()
model = KMeans({n_clusters}, random_state={seed}).fit(X)
done = time.perf_counter()
print(json.dumps(dict(import_s=imported - started, fit_s=done - before_fit,
                      import_fit_s=imported - started + done - before_fit,
                      inertia=float(model.inertia_))))
"""
BLOBS = ("from sklearn.datasets import make_blobs\n"
         "X, _ = make_blobs(centers=4, cluster_std=0.5, random_state=0)")


def _run(argv, env=None):
    """Run a child; return (wall seconds, its JSON line or None)."""
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                            timeout=900)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{result.stderr}")
    lines = result.stdout.strip().splitlines()
    try:
        return wall, json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return wall, None


def _fit_child(library, data, n_clusters, seed, cache_dir):
    code = CHILD.format(import_line=READMES[library], data=data, n_clusters=n_clusters, seed=seed)
    wall, measured = _run([sys.executable, "-c", code], env={"NUMBA_CACHE_DIR": cache_dir})
    return dict(measured, wall_s=wall)


def _median(runs, key):
    return statistics.median(run[key] for run in runs)


def measure(repeats, mnist_npy, with_compile, workdir):
    results = {}

    def record(case, contestant, value):
        results.setdefault(case, {}).setdefault(contestant, []).append(value)

    imports = {
        "scikit-learn": "import sklearn.cluster",
        "gpukmeans": "import sklearn.cluster\nfrom gpukmeans import KMeans",
    }
    for _ in range(repeats):
        for contestant, code in imports.items():
            record("import", contestant, dict(wall_s=_run([sys.executable, "-c", code])[0]))
        record("help", "gpukmeans",
               dict(wall_s=_run([sys.executable, "-m", "gpukmeans", "--help"])[0]))

    cases = [("readme", BLOBS, 4, 8)]
    if mnist_npy is not None:
        cases.append(("notebook", f"X = np.load({str(mnist_npy)!r})", 20, 0))
    for case, data, n_clusters, seed in cases:
        warm_cache = str(workdir / f"warm-{case}")
        _fit_child("gpukmeans", data, n_clusters, seed, warm_cache)  # fills the warm cache
        for repeat in range(repeats):
            cold_cache = str(workdir / f"cold-{case}-{repeat}")
            record(f"{case}-cold", "gpukmeans",
                   _fit_child("gpukmeans", data, n_clusters, seed, cold_cache))
            record(f"{case}-cold", "scikit-learn",
                   _fit_child("scikit-learn", data, n_clusters, seed, cold_cache))
            record(f"{case}-warm", "gpukmeans",
                   _fit_child("gpukmeans", data, n_clusters, seed, warm_cache))
            record(f"{case}-warm", "scikit-learn",
                   _fit_child("scikit-learn", data, n_clusters, seed, warm_cache))

    if with_compile:
        cache = str(workdir / "compile")
        wall, _ = _run([sys.executable, "-m", "gpukmeans", "compile", "--device", "cpu"],
                       env={"NUMBA_CACHE_DIR": cache})
        record("compile", "gpukmeans", dict(wall_s=wall))
        if mnist_npy is not None:
            full = str(mnist_npy).replace("mnist5000", "mnist70000")
            record("mnist-cold", "gpukmeans", _fit_child(
                "gpukmeans", f"X = np.load({full!r})", 20, 0, str(workdir / "cold-full")))
    return results


def summarize(results):
    """Medians, and each target's verdict."""
    rows, targets = [], []

    def median(case, contestant, key):
        return _median(results[case][contestant], key)

    for case in results:
        for contestant, runs in results[case].items():
            row = dict(case=case, contestant=contestant, runs=len(runs),
                       wall_s=_median(runs, "wall_s"))
            for key in ("import_s", "fit_s", "import_fit_s"):
                if key in runs[0]:
                    row[key] = _median(runs, key)
            rows.append(row)

    def target(name, value, limit, unit):
        targets.append(dict(target=name, value=value, limit=limit, unit=unit, met=value <= limit))

    target("import gpukmeans adds to importing scikit-learn",
           median("import", "gpukmeans", "wall_s") - median("import", "scikit-learn", "wall_s"),
           0.2, "s")
    target("gpukmeans --help", median("help", "gpukmeans", "wall_s"), 1.0, "s")
    target("README snippet cold, import + fit, over scikit-learn's",
           median("readme-cold", "gpukmeans", "import_fit_s")
           / median("readme-cold", "scikit-learn", "import_fit_s"), 3.0, "x")
    for case in ("readme", "notebook"):
        if f"{case}-warm" in results:
            target(f"{case} warm first fit above scikit-learn's",
                   median(f"{case}-warm", "gpukmeans", "fit_s")
                   - median(f"{case}-warm", "scikit-learn", "fit_s"), 0.3, "s")
    if "notebook-cold" in results:
        target("notebook cold first fit (5,000 MNIST, float32, KMeans(20))",
               median("notebook-cold", "gpukmeans", "fit_s"), 15.0, "s")
    return rows, targets


def write_reports(rows, targets, env, out, name):
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(dict(environment=env, rows=rows,
                                                      targets=targets), indent=2) + "\n")
    lines = [f"# Start-up: {name}", "", hardware_line(env), "",
             f"commit {env.get('commit')}, {env.get('date')}; Python {platform.python_version()}; "
             "each measurement a new process, contestants alternating, medians.", "",
             "| target | measured | limit | met |", "|---|---|---|---|"]
    for t in targets:
        lines.append(f"| {t['target']} | {t['value']:.3f} {t['unit']} | {t['limit']} {t['unit']} "
                     f"| {'yes' if t['met'] else '**no**'} |")
    lines += ["", "| case | contestant | runs | process wall (s) | import (s) | fit (s) | "
              "import + fit (s) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]:.3f}" if k in r else "" for k in ("wall_s", "import_s", "fit_s",
                                                            "import_fit_s")]
        lines.append(f"| {r['case']} | {r['contestant']} | {r['runs']} | " + " | ".join(cells) + " |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=pathlib.Path,
                        help="directory of the MNIST IDX files (default: $GPUKMEANS_DATA, "
                        "then the cache); without MNIST the notebook case is left out")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repeat of each case")
    parser.add_argument("--compile", action="store_true",
                        help="also time `gpukmeans compile` and a cold full-MNIST fit")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="startup")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats

    with tempfile.TemporaryDirectory(prefix="gpukmeans-startup-") as tmp:
        workdir = pathlib.Path(tmp)
        mnist_npy = None
        try:
            from gpukmeans.datasets import load_mnist

            X, _ = load_mnist(args.mnist, download=False, verbose=False)
        except (FileNotFoundError, ValueError, OSError) as exc:
            print(f"no MNIST ({exc}); the notebook case is left out", file=sys.stderr)
        else:
            mnist_npy = workdir / "mnist5000.npy"
            np.save(mnist_npy, np.ascontiguousarray(X[:5000]))
            np.save(workdir / "mnist70000.npy", X)
        results = measure(repeats, mnist_npy, args.compile, workdir)
    rows, targets = summarize(results)
    env = environment(threads=os.cpu_count(), repo=REPO)
    env["loadavg_after"] = os.getloadavg()
    print(write_reports(rows, targets, env, args.out, args.name))
    return 0 if all(t["met"] for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
