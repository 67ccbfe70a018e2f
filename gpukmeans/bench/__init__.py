"""The benchmark harness: gpukmeans against every peer, on the same work, in the same run.

``gpukmeans bench`` runs the quick profile (under two minutes on 2 CPU cores);
``benchmarks/harness.py`` runs the full one from a source checkout. Both are this
package: one implementation of the workloads, the contestants, the timing rules and the
reports, one module each:

- :mod:`.workloads`: the workloads of each profile and their data (MNIST, blobs);
- :mod:`.contestants`: one class per library and device, and the registry;
- :mod:`.runner`: the fairness rules, the time budget, :func:`.runner.run_suite`;
- :mod:`.timing`, :mod:`.floors`, :mod:`.scoring`: one timed call, the machine's floor,
  the recomputed inertia and agreement;
- :mod:`.environment`: the hardware and versions recorded beside every number;
- :mod:`.reports`, :mod:`.plots`: JSON, markdown and PNG;
- this module: the command line.

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

Nothing heavier than NumPy is imported at package import; each contestant imports its
library when asked whether it is available.
"""

import argparse
import fnmatch
import os
import pathlib
import sys

from .contestants import select_contestants
from .environment import default_threads
from .reports import render_text
from .runner import Settings, run_suite
from .workloads import profile_workloads


def _at_least(kind, low):
    """An argparse type: a number of ``kind`` of at least ``low`` (``--threads 0`` and
    ``--max-seconds -5`` were taken, and ``--repeats -1`` failed after the run)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if not value >= low:  # NaN too
            raise argparse.ArgumentTypeError(f"expected at least {low}, got {text}")
        return value

    return parse


def _folder(text):
    # An empty argument would be the current folder (pathlib.Path("") is ".").
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty argument")
    return text


def _out_problem(out):
    """Why the results could not be written in folder ``out`` (None if they could),
    found without making it: a run that fails or stops early leaves nothing behind."""
    path = pathlib.Path(out).absolute()
    if path.exists():
        if not path.is_dir():
            return "is not a folder"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    parent = next(p for p in path.parents if p.exists())  # the root always exists
    if not parent.is_dir():
        return f"cannot be made: {parent} is not a folder"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot be made in {parent}"


def build_parser(prog="gpukmeans bench", profile="quick", max_seconds=110.0, out="gpukmeans-bench"):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark gpukmeans against the k-means libraries importable here, on "
        "the same work (same initial centres, fixed iterations), with inertia and agreement "
        "reported next to each time. Prints the results table and writes JSON, markdown and "
        "PNG plots.",
    )
    p.add_argument("--profile", choices=("tiny", "quick", "full"), default=profile,
                   help=f"workload set (default {profile}; tiny is for smoke tests)")
    p.add_argument("--contestants", help="comma-separated subset (see --list)")
    p.add_argument("--workloads", help="comma-separated names or shell patterns of the "
                   "profile's workloads to run (e.g. 'blobs-n100000-d2-*,notebook'); all by default")
    p.add_argument("--device", choices=("all", "cpu", "gpu"), default="all",
                   help="run only the contestants on this device")
    p.add_argument("--mnist", type=_folder, help="folder of the MNIST IDX files (default: $GPUKMEANS_DATA, the "
                   "user cache of gpukmeans.datasets, then shared/data/mnist; never downloads)")
    p.add_argument("--out", type=_folder, default=out, help=f"output folder (default {out})")
    p.add_argument("--name", help="file stem (default harness-<profile>)")
    p.add_argument("--repeats", type=_at_least(int, 0), default=None,
                   help="samples after the first call (default: tiny 1, quick 2, full 3)")
    p.add_argument("--max-seconds", type=_at_least(float, 0), default=max_seconds,
                   help=f"time budget; later measurements are skipped (default {max_seconds:g})")
    p.add_argument("--measure-seconds", type=_at_least(float, 0), default=None,
                   help="stop sampling one contestant after this many seconds (default: by profile)")
    p.add_argument("--slow-cap", type=_at_least(float, 0), default=60.0,
                   help="skip sweep points predicted slower than this per fit (default 60)")
    p.add_argument("--threads", type=_at_least(int, 1), default=default_threads(),
                   help="threads for every library (default: the cores available)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--list", action="store_true", help="list contestants and availability, then exit")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing (the reports are still written)")
    return p


_PROFILE_SETTINGS = {
    "tiny": dict(repeats=1, floor_bytes=8 << 20, sgemm_size=256, measure_seconds=2.0),
    "quick": dict(repeats=2, floor_bytes=128 << 20, sgemm_size=1024, measure_seconds=3.0,
                  settle_seconds=0.25),
    "full": dict(repeats=3, floor_bytes=256 << 20, sgemm_size=2048, measure_seconds=15.0,
                 settle_seconds=0.25),
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
    problem = _out_problem(args.out)  # before the run, not after it: its results lost
    if problem:
        print(f"{prog}: error: --out {args.out} {problem}", file=sys.stderr)
        return 2
    workloads = None
    if args.workloads:
        patterns = [p.strip() for p in args.workloads.split(",")]
        workloads = [w for w in profile_workloads(args.profile)
                     if any(fnmatch.fnmatchcase(w.name, p) for p in patterns)]
        if not workloads:
            print(f"{prog}: error: no workload of the {args.profile} profile matches "
                  f"--workloads {args.workloads!r}", file=sys.stderr)
            return 2
    try:
        result = run_suite(
            args.profile, contestants=names, device=args.device, mnist=args.mnist,
            workloads=workloads,
            settings=settings_from_args(args), out_dir=args.out, name=args.name, repo=repo,
            log=(lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True)))
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:  # the answer itself, not only where it was written
        print("\n" + render_text(result), end="", flush=True)
    return 0

