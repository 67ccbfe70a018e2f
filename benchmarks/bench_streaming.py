#!/usr/bin/env python
"""Issue 14, part 2's benchmark: exact Lloyd on a file three times larger than the memory
cap of the process that fits it (``gpukmeans._streaming``), against the disk's read rate
measured in the same run.

1. Writes ``3 x --cap-gib`` GiB of float32 blobs (``--features`` columns) to a ``.npy``
   file in ``--dir``, then measures the disk's sequential read rate: the file's pages are
   dropped from the page cache (``posix_fadvise(POSIX_FADV_DONTNEED)`` after ``fsync``; no
   root needed, no process maps the file then) and it is read in 8 MiB ``read`` calls
   ("cold"); then read again from the page cache ("warm").
2. For each k (``--clusters``), in a child process whose private memory is capped with
   ``resource.setrlimit(RLIMIT_DATA, cap)`` (Linux counts heap and private writable
   mappings there, not the read-only shared mapping of the file): checks that
   ``np.load`` of the whole file fails under the cap, drops the file's pages again, then
   fits ``KMeans(k, init=<k rows>, tol=0, max_iter=--iterations)`` on
   ``np.load(mmap_mode="r")``. Each Lloyd pass is timed (``_streaming.lloyd_iter``
   wrapped); the first pass over the file (the row norms that decide float32 centring)
   reads it from the disk; peak RssAnon is sampled every millisecond.
3. Without a cap, in one process: the streamed fit of the memmap and the in-memory fit of
   the same array loaded whole, alternately (ABBA), ``--repeats`` times after a warm-up,
   each Lloyd pass timed: the cost of streaming when the file is in the page cache.

The machine has 24 GB of RAM: after the first pass the file stays in the page cache,
so the capped fit's later passes read memory, not the disk. Whether a pass would be
disk-bound on a file larger than RAM is read off by comparing the bytes a pass reads per
second (file size / pass time) with the disk's cold rate.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_streaming.py        # results/streaming.{md,json}
    .venv/bin/python benchmarks/bench_streaming.py --quick
"""

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import threading
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

READ_BYTES = 8 * 2**20


def rss_anon():
    """The process's own resident memory (not the file's pages in the page cache)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def drop_from_page_cache(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def read_rate(path):
    """Bytes per second of one sequential read of the whole file."""
    buffer = bytearray(READ_BYTES)
    total = 0
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buffer)
            if not n:
                break
            total += n
    return total / (time.perf_counter() - start)


def write_blobs(path, n_samples, n_features, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-5, 5, (64, n_features)).astype(np.float32)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(n_samples, n_features))
    step = 2**20
    for start in range(0, n_samples, step):
        end = min(start + step, n_samples)
        X[start:end] = (centers[rng.integers(0, 64, end - start)]
                        + rng.standard_normal((end - start, n_features), dtype=np.float32))
    X.flush()
    del X


class PassTimer:
    """Times each call of ``owner.name`` for each ``(owner, name)`` (a module's engine
    function, or a run class's ``step``) during a fit."""

    def __init__(self, *targets):
        self.targets = [(owner, name, getattr(owner, name)) for owner, name in targets]
        self.times = []

    def _timed(self, real):
        def timed(*args):
            start = time.perf_counter()
            out = real(*args)
            self.times.append(time.perf_counter() - start)
            return out

        return timed

    def __enter__(self):
        for owner, name, real in self.targets:
            setattr(owner, name, self._timed(real))
        return self

    def __exit__(self, *exc):
        for owner, name, real in self.targets:
            setattr(owner, name, real)


def step_timer():
    """Times every Lloyd step, whichever run takes it: the streamed one and the in-memory
    plain step (both ``lloyd_iter``), or the in-memory bounds (``BoundsRun.step``)."""
    from gpukmeans import _cpu, _cpu_bounds, _streaming

    return PassTimer((_streaming, "lloyd_iter"), (_cpu.PlainRun, "step"),
                     (_cpu_bounds.BoundsRun, "step"))


def init_rows(X, n_clusters):
    rows = np.random.default_rng(1).choice(X.shape[0], n_clusters, replace=False)
    return np.ascontiguousarray(X[np.sort(rows)])


def child(args):
    """The capped fit: one JSON line on stdout."""
    from gpukmeans import KMeans, _streaming

    cap = int(args.cap_gib * 2**30)
    X = np.load(args.path, mmap_mode="r")
    init = init_rows(X, args.k)
    # Load the kernels before the cap (Numba's loading is no part of a pass).
    small = np.ascontiguousarray(X[: 2**19])
    KMeans(args.k, init=init, n_init=1, max_iter=1, device="cpu",
           stream_block_rows=args.block_rows).fit(small)
    del small
    peak, done = [0], []

    def sample():
        while not done:
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.001)

    thread = threading.Thread(target=sample)  # its stack counts in the cap: started first
    thread.start()
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    try:
        np.load(args.path)
        whole_load = "loaded (the cap did not bind)"
    except MemoryError as exc:
        whole_load = f"MemoryError: {str(exc)[:120]}"
    # One streamed pass from the disk: the row norms' sum (what the fit's centring rule
    # reads), right after the file's pages were dropped; then dropped again for the fit
    # (whose validation reads the file first: the mean, then the extremes).
    drop_from_page_cache(args.path)
    start = time.perf_counter()
    _streaming.StreamedData(X, None, args.block_rows).squared_norms_sum()
    cold_pass_s = time.perf_counter() - start
    drop_from_page_cache(args.path)
    base = rss_anon()
    peak[0] = base
    start = time.perf_counter()
    with step_timer() as passes:
        km = KMeans(args.k, init=init, n_init=1, tol=0, max_iter=args.iterations,
                    device="cpu", stream_block_rows=args.block_rows).fit(X)
    fit_s = time.perf_counter() - start
    done.append(1)
    thread.join()
    print(json.dumps({
        "k": args.k, "cap_bytes": cap, "whole_load_under_cap": whole_load,
        "fit_s": fit_s, "n_iter": int(km.n_iter_), "first_pass_cold_s": cold_pass_s,
        "lloyd_pass_s": passes.times, "rss_anon_growth_bytes": peak[0] - base,
        "rss_anon_base_bytes": base, "inertia": km.inertia_,
    }))


def capped_run(path, k, args):
    command = [sys.executable, __file__, "--child", "--path", str(path), "--k", str(k),
               "--cap-gib", str(args.cap_gib), "--iterations", str(args.iterations),
               "--block-rows", str(args.block_rows)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"capped child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def side_by_side(path, k, args):
    """Streamed memmap against the whole array in memory, alternately, no cap."""
    from gpukmeans import KMeans

    X_file = np.load(path, mmap_mode="r")
    X = np.load(path)
    init = init_rows(X, k)
    params = dict(n_clusters=k, init=init, n_init=1, tol=0, max_iter=args.iterations,
                  device="cpu")
    runs = {"streamed": [], "in_memory": []}
    fits = {}

    def streamed():
        with step_timer() as timer:
            fits["streamed"] = KMeans(**params, stream_block_rows=args.block_rows).fit(X_file)
        return timer.times

    def in_memory():
        with step_timer() as timer:
            fits["in_memory"] = KMeans(**params).fit(X)
        return timer.times

    calls = {"streamed": streamed, "in_memory": in_memory}
    for name in calls:  # warm-up, not counted
        calls[name]()
    for r in range(args.repeats):
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            runs[name].extend(calls[name]())
    same = (np.array_equal(fits["streamed"].labels_, fits["in_memory"].labels_)
            and np.array_equal(fits["streamed"].cluster_centers_,
                               fits["in_memory"].cluster_centers_))
    return {name: {"pass_s": times, "median_s": float(np.median(times))}
            for name, times in runs.items()} | {"bitwise_equal": bool(same)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gib", type=float, default=1.0)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--clusters", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--block-rows", type=int, default=2**17)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "streaming"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        # The cap counts all of the process's private memory (Python, Numba, BLAS: about
        # 0.4 GB here), so it cannot be much smaller.
        args.cap_gib, args.clusters, args.iterations, args.repeats = 0.6, [8], 2, 1
    path = pathlib.Path(args.dir) / f"gpukmeans-streaming-{os.getpid()}.npy"
    file_bytes = int(3 * args.cap_gib * 2**30)
    n_samples = file_bytes // (4 * args.features)
    results = {"machine": f"{platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} cores", "n_samples": n_samples,
               "load_average_start": os.getloadavg(),
               "n_features": args.features, "cap_gib": args.cap_gib,
               "block_rows": args.block_rows, "iterations": args.iterations, "k": {}}
    try:
        start = time.perf_counter()
        write_blobs(path, n_samples, args.features)
        results["write_s"] = time.perf_counter() - start
        results["file_bytes"] = path.stat().st_size
        drop_from_page_cache(path)
        results["disk_read_cold_Bps"] = read_rate(path)
        results["page_cache_read_Bps"] = read_rate(path)
        print(f"file {results['file_bytes'] / 2**30:.2f} GiB ({n_samples} x {args.features} "
              f"float32), disk {results['disk_read_cold_Bps'] / 1e6:.0f} MB/s cold, "
              f"{results['page_cache_read_Bps'] / 1e6:.0f} MB/s from the page cache", flush=True)
        for k in args.clusters:
            capped = capped_run(path, k, args)
            print(f"k={k} capped: {json.dumps(capped)[:400]}", flush=True)
            compared = side_by_side(path, k, args)
            print(f"k={k} side by side: streamed {compared['streamed']['median_s']:.3f} s, "
                  f"in memory {compared['in_memory']['median_s']:.3f} s per pass, "
                  f"bitwise {compared['bitwise_equal']}", flush=True)
            results["k"][k] = {"capped": capped, "side_by_side": compared}
    finally:
        path.unlink(missing_ok=True)
    results["load_average_end"] = os.getloadavg()
    pathlib.Path(args.out + ".json").write_text(json.dumps(results, indent=1))
    pathlib.Path(args.out + ".md").write_text(report(results))
    print(f"wrote {args.out}.md and .json")


def report(r):
    gb = r["file_bytes"] / 1e9
    lines = [
        "# Exact Lloyd on a file larger than the process's memory (issue 14, part 2)",
        "",
        "`benchmarks/bench_streaming.py`: "
        f"{r['n_samples']:,} x {r['n_features']} float32 blobs, a {r['file_bytes'] / 2**30:.2f} "
        f"GiB `.npy` file, three times the {r['cap_gib']} GiB `RLIMIT_DATA` cap of the process "
        f"that fits it; `KMeans(k, init=<k rows>, tol=0, max_iter={r['iterations']}, "
        f"stream_block_rows={r['block_rows']})` on `np.load(mmap_mode=\"r\")`. Machine: "
        f"{r['machine']} (2-core Intel Xeon, Emerald Rapids, AVX-512, 24 GB), shared with "
        "other people's jobs (load average "
        f"{r['load_average_start'][0]:.1f} at the start, {r['load_average_end'][0]:.1f} at "
        "the end): timings are noisy.",
        "",
        f"Disk, read sequentially in the same run: {r['disk_read_cold_Bps'] / 1e6:,.0f} MB/s "
        "after `posix_fadvise(POSIX_FADV_DONTNEED)` dropped the file's pages (cold), "
        f"{r['page_cache_read_Bps'] / 1e6:,.0f} MB/s from the page cache.",
        "",
        "| k | whole `np.load` under the cap | a streamed pass from the disk (s) "
        "| its read rate (MB/s) "
        "| Lloyd pass under the cap, median (s) | bytes/s of a pass (MB/s) "
        "| pass / cold disk read | peak RssAnon growth (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    cold_read_s = r["file_bytes"] / r["disk_read_cold_Bps"]
    for k, v in r["k"].items():
        c = v["capped"]
        lloyd = float(np.median(c["lloyd_pass_s"]))
        lines.append(
            f"| {k} | {c['whole_load_under_cap'].split(':')[0]} | {c['first_pass_cold_s']:.2f} "
            f"| {gb * 1e3 / c['first_pass_cold_s']:,.0f} | {lloyd:.2f} | {gb * 1e3 / lloyd:,.0f} "
            f"| {lloyd / cold_read_s:.2f} | {c['rss_anon_growth_bytes'] / 1e6:.0f} |")
    lines += [
        "",
        "Without a cap, in one process, alternating (ABBA), "
        "each Lloyd pass timed, medians over all passes of the timed fits:",
        "",
        "| k | streamed memmap (s/pass) | whole array in memory (s/pass) | streamed / in memory "
        "| same labels and centers, bit for bit (the in-memory float32 fit keeps bounds "
        "where they pay: not at these k) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, v in r["k"].items():
        s = v["side_by_side"]
        lines.append(
            f"| {k} | {s['streamed']['median_s']:.3f} | {s['in_memory']['median_s']:.3f} "
            f"| {s['streamed']['median_s'] / s['in_memory']['median_s']:.2f} "
            f"| {'yes' if s['bitwise_equal'] else 'NO'} |")
    lines += [
        "",
        "Reading: the pass from the disk is the streamed row norms' sum right after the "
        "file's pages were dropped (little to compute: the streamed reading's own rate); the "
        "fit's Lloyd passes under the cap read the file from the page cache (24 GB of RAM "
        "hold it; the disk is a virtual machine's, which its host may cache too). A "
        "pass / cold-read ratio above 1 means the pass is compute-bound: on a file larger than "
        "RAM it would take about as long; below 1, it would wait for the disk, at the cold "
        "rate. RssAnon growth is the process's own memory during the fit (labels twice: "
        f"{8 * r['n_samples'] / 1e6:.0f} MB, plus blocks and partial sums), not the file's "
        "pages.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
