"""Where a gpukmeans.dask.KMeans fit's time goes, pass by pass: runs
``benchmarks/bench_dask.py`` (ours only) and prints, after each of our fits, the
client's wall time of each pass over the blocks (the validation pass, the centring's
persist, each init pass, each iteration; with the slowest worker's own time for the
passes on actors) and ``KMeans._timings``.

    .venv/bin/python benchmarks/dask_init_passes.py --cases blobs-k32 --repeats 2

Arguments are ``bench_dask.py``'s (``--contestants`` is set to ours). Works on older
commits too (their init passes appear as ``compute``/``persist`` calls).
"""

import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import dask  # noqa: E402
import distributed  # noqa: E402

import bench_dask  # noqa: E402
import gpukmeans.dask as gkd  # noqa: E402

PASSES = []


def _timed(name, func, wait=False):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = func(*args, **kwargs)
        if wait:  # a persist returns at once: wait for what it computes
            distributed.wait([f for r in result for f in distributed.futures_of(r)])
        label = name(*args) if callable(name) else name
        PASSES.append((label, time.perf_counter() - started))
        return result
    return timed


def _instrument():
    gkd.dask.compute = _timed("compute", dask.compute)
    gkd.dask.persist = _timed("persist", dask.persist, wait=True)
    for method in ("_data_stats", "_init_centers"):
        setattr(gkd.KMeans, method, _timed(method, getattr(gkd.KMeans, method)))
    map_blocks = gkd._Runner.map_blocks

    def on_actors(self, func, *args, **kwargs):
        started = time.perf_counter()
        result = map_blocks(self, func, *args, **kwargs)
        PASSES.append((f"{func.__name__} (slowest worker {self.slowest_worker_seconds:.3f} s)",
                       time.perf_counter() - started))
        return result

    gkd._Runner.map_blocks = on_actors
    fit = bench_dask.CONTESTANTS["gpukmeans.dask"]

    def reporting_fit(*args, **kwargs):
        PASSES.clear()
        result = fit(*args, **kwargs)
        print(f"--- passes of this fit (client wall s), load average {os.getloadavg()}")
        for label, seconds in PASSES:
            print(f"   {label:55s} {seconds:8.3f}")
        timings = result[2]
        print("--- KMeans._timings:", {key: value for key, value in timings.items()
                                       if not isinstance(value, list)},
              "iterations", [round(t, 3) for t in timings["iterations"]], flush=True)
        return result

    bench_dask.CONTESTANTS["gpukmeans.dask"] = reporting_fit


if __name__ == "__main__":
    _instrument()
    bench_dask.main(sys.argv[1:] + ["--contestants", "gpukmeans.dask"])
