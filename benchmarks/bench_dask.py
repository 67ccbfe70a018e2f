"""Issue 13's benchmark: gpukmeans.dask.KMeans against dask_ml.cluster.KMeans on the same
LocalCluster.

Cases: MNIST (70,000 x 784 float32, from ``gpukmeans.datasets.load_mnist``) at k=10, and
N x 32 float32 Gaussian blobs generated block by block on the workers (never on the
client) at k=32 and k=1024. Both contestants fit the same persisted dask array with
``init="k-means||"``, the same ``oversampling_factor`` and number of init rounds
(``init_max_iter``), ``max_iter`` fixed and ``tol=0`` (dask-ml's ``tol`` is an absolute
shift, ours is scaled by the data's variance: fixed work is the fair comparison). They
alternate (ABAB..., the first of each repeat swapped), after one untimed warm-up each (the
workers import and compile): dask-ml's on the first ``20 k`` rows (k at most 32), ours on about
``WARMUP_ROWS`` rows taken from every block (each worker then has loaded the Numba
engine the timed fits use; on fewer rows it runs NumPy's small-problem engine).

Measured per fit:
- time to fit, split into init and iterations from each library's own log lines (ours:
  ``gpukmeans.dask`` "iteration N"; dask-ml: "Finished Lloyd loop"), taken by a handler on
  the client;
- inertia, recomputed for both by one evaluator (float64 squared distances to the
  nearest center, summed block by block), so the two are measured alike;
- traffic per iteration: bytes the scheduler's TCP comms wrote and read (the scheduler
  runs in this process; ``distributed.comm.tcp.TCP`` is wrapped), plus the client's
  direct comms to workers, between the first and last iteration, divided by the
  iterations between them;
- ours only: the fit's own split of the init into the validation pass and centring,
  and k-means|| itself (``KMeans._timings``);
- ours only: the overhead per iteration, the iteration's wall time on the client minus
  the longest time a worker spent on that iteration's pass, as the worker measured it
  (``KMeans._timings``).

A dask-ml fit still running after ``--cap`` seconds (default 600; ours: twice that) is
abandoned and reported as not finished, with the cap.

Run from the repository root:

    .venv/bin/python benchmarks/bench_dask.py --mnist DIR   # 10,000,000 rows, the issue's size
    .venv/bin/python benchmarks/bench_dask.py --n-samples 1000000 --repeats 3

Writes benchmarks/results/dask.{md,json}.
"""

import argparse
import contextvars
import datetime
import json
import logging
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import distributed  # noqa: E402
from distributed.comm import tcp  # noqa: E402
from distributed.utils import nbytes  # noqa: E402

import gpukmeans.dask as gkd  # noqa: E402


# ------------------------------------------------------------------ traffic
class Traffic:
    """Bytes through the TCP comms of this process: the scheduler's (a LocalCluster's
    scheduler lives here) and the client's direct ones to workers."""

    def __init__(self):
        self.scheduler_address = None
        self.counts = {"scheduler_out": 0, "scheduler_in": 0, "client_direct": 0}
        self._comm = contextvars.ContextVar("comm", default=None)
        original_read, original_write = tcp.TCP.read, tcp.TCP.write
        original_from_frames = tcp.from_frames
        traffic = self

        async def read(comm, deserializers=None):
            token = traffic._comm.set(comm)
            try:
                return await original_read(comm, deserializers)
            finally:
                traffic._comm.reset(token)

        async def from_frames(frames, *args, **kwargs):
            comm = traffic._comm.get()
            if comm is not None:
                traffic._count(comm, sum(nbytes(f) for f in frames), "scheduler_in")
            return await original_from_frames(frames, *args, **kwargs)

        async def write(comm, msg, serializers=None, on_error="message"):
            n = await original_write(comm, msg, serializers, on_error)
            traffic._count(comm, n, "scheduler_out")
            return n

        tcp.TCP.read, tcp.TCP.write, tcp.from_frames = read, write, from_frames

    def _count(self, comm, n, scheduler_key):
        if self.scheduler_address is None:
            return
        if comm.local_address == self.scheduler_address:
            self.counts[scheduler_key] += n
        elif comm.peer_address != self.scheduler_address:
            self.counts["client_direct"] += n

    def snapshot(self):
        return dict(self.counts)


# ------------------------------------------------------------------ timing from logs
class LogClock(logging.Handler):
    """Timestamps of each library's iteration lines, and traffic at each."""

    def __init__(self, traffic):
        super().__init__(level=logging.DEBUG)
        self.traffic = traffic
        self.events = []

    def emit(self, record):
        message = record.getMessage()
        if (record.name == "gpukmeans.dask" and message.startswith("iteration ")) or (
                record.name.startswith("dask_ml") and message.startswith("Finished Lloyd loop")):
            self.events.append((time.perf_counter(), self.traffic.snapshot()))


# ------------------------------------------------------------------ data
def _blobs_block(block_info=None, n_features=32, n_centers=32, seed=0):
    """One block of Gaussian blobs, drawn on the worker from the block's own stream."""
    info = block_info[None]
    (start, stop), _ = info["array-location"]
    index = info["chunk-location"][0]
    centers = np.random.default_rng(seed).uniform(-10, 10, (n_centers, n_features))
    rng = np.random.default_rng([seed, index])
    labels = rng.integers(n_centers, size=stop - start)
    return (centers[labels] + rng.standard_normal((stop - start, n_features))).astype(np.float32)


def make_blobs(n_samples, n_features, n_centers, n_blocks, seed=0):
    chunk = -(-n_samples // n_blocks)
    rows = tuple(min(chunk, n_samples - i) for i in range(0, n_samples, chunk))
    return da.map_blocks(_blobs_block, dtype=np.float32, chunks=(rows, (n_features,)),
                         n_features=n_features, n_centers=n_centers, seed=seed,
                         meta=np.empty((0, 0), np.float32))


def _min_sq_block(X, centers, rows=65_536):
    # A slice of rows at a time: a whole block's (rows x k) float64 distances were 10 GB
    # at 1,250,000 rows and k=1,024, more than a worker's memory.
    c = centers.astype(np.float64)
    c_norms = (c**2).sum(1)[None, :]
    total = 0.0
    for start in range(0, X.shape[0], rows):
        part = X[start:start + rows].astype(np.float64)
        d = (part**2).sum(1)[:, None] - 2 * part @ c.T + c_norms
        total += np.maximum(d.min(axis=1), 0).sum()
    return np.array([total])


def inertia(X, centers):
    """Sum of float64 squared distances to the nearest center, the same for both."""
    return float(X.map_blocks(_min_sq_block, centers, drop_axis=1, chunks=((1,) * X.numblocks[0],),
                              dtype=np.float64).sum().compute())


# ------------------------------------------------------------------ contestants
def fit_gpukmeans(X, k, max_iter, rounds, seed):
    km = gkd.KMeans(k, init="k-means||", init_max_iter=rounds, max_iter=max_iter, tol=0,
                    random_state=seed)
    km.fit(X)
    return km.cluster_centers_, km.n_iter_, km._timings


def fit_dask_ml(X, k, max_iter, rounds, seed):
    from dask_ml.cluster import KMeans

    # dask-ml's own number of init rounds, round(log(cost)), unless --same-rounds: it
    # draws about oversampling_factor candidates per round (not oversampling_factor * k),
    # so capping its rounds would only weaken its seeding.
    km = KMeans(k, init="k-means||", init_max_iter=rounds if SAME_ROUNDS else None,
                max_iter=max_iter, tol=0, random_state=seed)
    km.fit(X)
    return km.cluster_centers_, km.n_iter_, None


CONTESTANTS = {"gpukmeans.dask": fit_gpukmeans, "dask_ml": fit_dask_ml}
SAME_ROUNDS = False
WARMUP_ROWS = 400_000


class FitTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise FitTimeout


def one_fit(name, X, k, max_iter, rounds, seed, clock, traffic, cap):
    """One timed fit; a fit still running after ``cap`` seconds is abandoned (its
    futures released) and reported as not finished."""
    clock.events.clear()
    start_traffic = traffic.snapshot()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, cap)
    started = time.perf_counter()
    try:
        centers, n_iter, timings = CONTESTANTS[name](X, k, max_iter, rounds, seed)
    except FitTimeout:
        return {"contestant": name, "finished": False, "cap_seconds": cap}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    total = time.perf_counter() - started
    events = clock.events[:]
    first_iteration_end = events[0][0]
    iteration_times = np.diff([started] + [t for t, _ in events])[1:]  # after the first
    # Init: from the start to the end of the first iteration, less one iteration.
    per_iteration = float(np.median(iteration_times)) if len(iteration_times) else float("nan")
    init = first_iteration_end - started - per_iteration
    per_iteration_bytes = {}
    if len(events) > 1:
        (_, a), (_, b) = events[0], events[-1]
        per_iteration_bytes = {key: (b[key] - a[key]) / (len(events) - 1) for key in a}
    end_traffic = traffic.snapshot()
    run = {
        "contestant": name, "finished": True, "seconds_total": total, "seconds_init": init,
        "seconds_per_iteration": per_iteration, "n_iter": int(n_iter),
        "inertia": inertia(X, np.asarray(centers)),
        "bytes_per_iteration": per_iteration_bytes,
        "bytes_total": {key: end_traffic[key] - start_traffic[key] for key in end_traffic},
    }
    if timings is not None and "validation" in timings:
        # Ours, as the fit measured them: the validation pass and the centring (before
        # the init), and the init alone.
        run["seconds_validation"] = timings["validation"]
        run["seconds_init_only"] = timings["init"]
    if timings is not None and len(timings["iterations"]) > 1:
        # Both as the fit measured them: the iteration's wall time on the client, and
        # the longest time a worker spent on that iteration's pass, on the worker.
        walls, slowest = timings["iterations"][1:], timings["slowest_worker"][1:]
        run["overhead_per_iteration"] = [float(t - s) for t, s in zip(walls, slowest)
                                         if np.isfinite(s)]
        run["slowest_worker_step"] = [float(s) for s in slowest if np.isfinite(s)]
    return run


# ------------------------------------------------------------------ report
def hardware():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} logical CPUs, {memory:.0f} GiB RAM, no GPU used"


def versions():
    import dask_ml
    import numba
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "scikit-learn": sklearn.__version__,
            "dask": dask.__version__, "distributed": distributed.__version__,
            "dask-ml": dask_ml.__version__}


def summarize(runs):
    out = {}
    for name in CONTESTANTS:
        mine = [r for r in runs if r["contestant"] == name and r["finished"]]
        if not mine:
            capped = [r for r in runs if r["contestant"] == name]
            if capped:
                out[name] = {"finished": False, "cap_seconds": capped[0]["cap_seconds"],
                             "n_runs": len(capped)}
            continue
        out[name] = {key: statistics.median(r[key] for r in mine)
                     for key in ("seconds_total", "seconds_init", "seconds_per_iteration",
                                 "inertia")}
        out[name]["finished"] = True
        for key in ("seconds_validation", "seconds_init_only"):
            if key in mine[0]:
                out[name][key] = statistics.median(r[key] for r in mine)
        out[name]["n_iter"] = mine[0]["n_iter"]
        out[name]["bytes_per_iteration"] = {
            key: statistics.median(r["bytes_per_iteration"].get(key, float("nan"))
                                   for r in mine) for key in mine[0]["bytes_per_iteration"]}
        out[name]["n_runs"] = len(mine)
        overheads = [o for r in mine for o in r.get("overhead_per_iteration", [])]
        if overheads:
            out[name]["overhead_per_iteration"] = statistics.median(overheads)
            out[name]["slowest_worker_step"] = statistics.median(
                s for r in mine for s in r["slowest_worker_step"])
    return out


def write_report(path, meta, cases):
    lines = [
        "# Distributed k-means: gpukmeans.dask.KMeans vs dask_ml.cluster.KMeans",
        "",
        f"- Date: {meta['date']}; commit {meta['commit']}",
        f"- Hardware: {meta['hardware']}; load average at start {meta['load']}"
        " (a machine shared with other work: timings are noisy)",
        f"- Cluster: `distributed.LocalCluster(n_workers={meta['workers']}, "
        f"threads_per_worker=1, processes=True)`, both contestants on the same one and "
        "the same persisted data",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- Fits: `init=\"k-means||\"`, oversampling_factor=2; gpukmeans init_max_iter="
        f"{meta['rounds']}, dask-ml "
        + (f"init_max_iter={meta['rounds']}" if meta["same_rounds"] else
           "its default (round(log(cost)) rounds, about oversampling_factor candidates each)")
        + f"; `max_iter={meta['max_iter']}`, `tol=0` for both (fixed work; gpukmeans may stop "
        "earlier, strictly converged, when no label changes); medians of the alternating "
        "repeats (count per case in the JSON) after one warm-up each",
        "- Inertia: recomputed for both by the same float64 evaluator.",
        "- Traffic: bytes written + read by the scheduler's comms per iteration (client and "
        "workers), and the client's direct comms to workers; heartbeats included.",
        "",
        "| case | contestant | fit s | init s | of which validation s, k-means\\|\\| s | "
        "s / iteration | iterations | inertia | scheduler KiB / iter (out + in) | "
        "client-direct KiB / iter |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        for name, s in case["summary"].items():
            if not s["finished"]:
                lines.append(f"| {case['name']} | {name} | not finished in "
                             f"{s['cap_seconds']:.0f} s | | | | | | | |")
                continue
            b = s["bytes_per_iteration"]
            split = (f"{s['seconds_validation']:.2f}, {s['seconds_init_only']:.2f}"
                     if "seconds_init_only" in s else "")
            lines.append(
                f"| {case['name']} | {name} | {s['seconds_total']:.2f} | {s['seconds_init']:.2f}"
                f" | {split} | {s['seconds_per_iteration']:.3f} | {s['n_iter']} | {s['inertia']:.6g} | "
                f"{(b.get('scheduler_out', 0) + b.get('scheduler_in', 0)) / 1024:.1f} | "
                f"{b.get('client_direct', 0) / 1024:.1f} |")
    lines += ["", "Ratios (dask-ml / gpukmeans.dask; > 1 means gpukmeans is faster; inertia "
              "< 1 means dask-ml's is lower):", "",
              "| case | fit time | init | per iteration | inertia | gpukmeans: slowest "
              "worker's steps per iteration, s | gpukmeans overhead per iteration, ms |",
              "|---|---|---|---|---|---|---|"]
    for case in cases:
        s = case["summary"]
        a = s.get("gpukmeans.dask")
        if not a or not a["finished"]:
            continue
        step = a.get("slowest_worker_step", float("nan"))
        overhead = 1000 * a.get("overhead_per_iteration", float("nan"))
        b = s.get("dask_ml")
        if b and b["finished"]:
            lines.append(
                f"| {case['name']} | {b['seconds_total'] / a['seconds_total']:.2f}x | "
                f"{b['seconds_init'] / a['seconds_init']:.2f}x | "
                f"{b['seconds_per_iteration'] / a['seconds_per_iteration']:.2f}x | "
                f"{b['inertia'] / a['inertia']:.6f} | {step:.3f} | {overhead:.1f} |")
        elif b:
            lines.append(
                f"| {case['name']} | > {b['cap_seconds'] / a['seconds_total']:.1f}x (dask-ml "
                f"not finished in {b['cap_seconds']:.0f} s) | | | | {step:.3f} | "
                f"{overhead:.1f} |")
    lines += ["", "Overhead per iteration: each of our iterations' wall time on the client "
              "minus the longest time a worker spent on that iteration's pass, as the worker "
              "measured it; the median over the iterations after the first of every "
              "repeat.", ""]
    for case in cases:
        lines.append(f"- {case['name']}: {case['description']}")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-samples", type=int, default=10_000_000)
    parser.add_argument("--n-blocks", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--same-rounds", action="store_true",
                        help="cap dask-ml's init rounds at --rounds too")
    parser.add_argument("--cases", default="mnist-k10,blobs-k32,blobs-k1024")
    parser.add_argument("--repeats-k1024", type=int, default=None,
                        help="repeats for the k=1024 case (default: --repeats)")
    parser.add_argument("--repeats-mnist", type=int, default=None,
                        help="repeats for the MNIST case (default: --repeats)")
    parser.add_argument("--mnist", default=None, help="directory of the MNIST files")
    parser.add_argument("--contestants", default=",".join(CONTESTANTS),
                        help="comma-separated subset of: " + ", ".join(CONTESTANTS))
    parser.add_argument("--cap", type=float, default=600,
                        help="seconds after which a fit is abandoned and reported as not "
                             "finished")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dask"))
    args = parser.parse_args(argv)

    global SAME_ROUNDS
    SAME_ROUNDS = args.same_rounds
    for name in set(CONTESTANTS) - set(args.contestants.split(",")):
        del CONTESTANTS[name]
    traffic = Traffic()
    clock = LogClock(traffic)
    for name in ("gpukmeans.dask", "dask_ml.cluster.k_means"):
        logging.getLogger(name).addHandler(clock)
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger("dask_ml").propagate = False
    logging.getLogger("gpukmeans").propagate = False

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit, "hardware": hardware(), "load": os.getloadavg(),
            "versions": versions(), "workers": args.workers, "repeats": args.repeats,
            "rounds": args.rounds, "same_rounds": args.same_rounds, "n_samples": args.n_samples,
            "max_iter": args.max_iter, "cap_seconds": args.cap}
    cases = []
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster):
        traffic.scheduler_address = cluster.scheduler.address
        for case in args.cases.split(","):
            kind, k = case.split("-k")
            k = int(k)
            if kind == "mnist":
                from gpukmeans.datasets import load_mnist

                X_host, _ = load_mnist(args.mnist, verbose=False)
                X = da.from_array(X_host, chunks=(-(-X_host.shape[0] // args.n_blocks),
                                                  X_host.shape[1]))
                description = (f"MNIST {X_host.shape[0]:,} x {X_host.shape[1]} float32 (0-255), "
                               f"{X.numblocks[0]} blocks, k={k}, max_iter={args.max_iter}")
            else:
                X = make_blobs(args.n_samples, 32, k, args.n_blocks)
                description = (f"blobs {args.n_samples:,} x 32 float32 made block by block on "
                               f"the workers ({k} Gaussian blobs, std 1, centres in [-10, 10]), "
                               f"{X.numblocks[0]} blocks, k={k}, max_iter={args.max_iter}")
            X = X.persist()
            distributed.wait(X)
            repeats = args.repeats_k1024 if (k >= 1024 and args.repeats_k1024) else args.repeats
            if kind == "mnist" and args.repeats_mnist:
                repeats = args.repeats_mnist
            print(f"[{case}] {description}; warm-up", flush=True)
            for name, fit in CONTESTANTS.items():
                if name == "gpukmeans.dask":
                    # Rows from every block, enough per block for the engine the timed
                    # fits use (Numba's, loaded once per worker process: a few seconds).
                    fit(X[:: max(1, X.shape[0] // WARMUP_ROWS)], k, 2, 1, 0)
                else:
                    # Imports and compiled code only: at k=1024 dask-ml's own warm-up
                    # (20 k rows, k clusters) ran 17 minutes; 32 clusters warm it alike.
                    warm_k = min(k, 32)
                    fit(X[: min(X.shape[0], 20 * warm_k)], warm_k, 2, 1, 0)
            runs = []
            for repeat in range(repeats):
                order = list(CONTESTANTS) if repeat % 2 == 0 else list(CONTESTANTS)[::-1]
                for name in order:
                    # The cap is the peer's; ours gets twice as long, so that a slow
                    # machine does not leave our row empty too.
                    cap = args.cap if name == "dask_ml" else 2 * args.cap
                    run = one_fit(name, X, k, args.max_iter, args.rounds, repeat, clock, traffic,
                                  cap)
                    run["repeat"] = repeat
                    runs.append(run)
                    if not run["finished"]:
                        print(f"[{case}] {name}: not finished in {cap:.0f} s", flush=True)
                        continue
                    split = (f" (validation {run['seconds_validation']:.2f} s, k-means|| "
                             f"{run['seconds_init_only']:.2f} s)"
                             if "seconds_init_only" in run else "")
                    print(f"[{case}] {name}: fit {run['seconds_total']:.2f} s, init "
                          f"{run['seconds_init']:.2f} s{split}, "
                          f"{run['seconds_per_iteration']:.3f} "
                          f"s/iter, inertia {run['inertia']:.6g}, bytes/iter "
                          f"{run['bytes_per_iteration']}", flush=True)
            cases.append({"name": case, "description": description, "runs": runs,
                          "summary": summarize(runs)})
            del X
            out = pathlib.Path(args.out)
            out.with_suffix(".json").write_text(json.dumps({"meta": meta, "cases": cases},
                                                           indent=1, default=float))
            write_report(out, meta, cases)
    print(pathlib.Path(args.out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
