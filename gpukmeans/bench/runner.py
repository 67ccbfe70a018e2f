"""The runner: workloads x contestants under the fairness rules and a time budget, and
:func:`run_suite`, which runs a profile from the machine's floor to the written reports."""

import contextlib
import dataclasses
import os
import sys
import time

import numpy as np

from .contestants import NO_FINAL_LABELS, REFERENCE, NotSupported, select_contestants
from .environment import (
    available_memory_bytes, default_threads, environment, free_cupy, gpu_free_bytes,
)
from .floors import (
    gemm_seconds, iteration_floor, kmeanspp_floor, measure_bandwidth, measure_gpu_floors,
    measure_sgemm, peak,
)
from .reports import SCHEMA, write_reports
from .scoring import BLOCK_ELEMENTS, GPU_BLOCK_ELEMENTS, agreement, reference_assign
from .timing import collect_warnings, summarize, timed
from .workloads import find_mnist, load_mnist_images, make_blobs_data, profile_workloads

DEFAULT_TOL = 1e-4
CONVERGE_MAX_ITER = 300


def tolerance(X, tol):
    """scikit-learn's absolute tolerance: ``tol`` times the mean feature variance."""
    return float(tol * np.mean(np.var(X, axis=0, dtype=np.float64)))


@dataclasses.dataclass
class Settings:
    repeats: int = 3
    """Samples per measurement after the first call (fewer when measure_seconds is hit)."""
    measure_seconds: float = 15.0
    """Stop sampling a contestant once its samples add up to this."""
    max_seconds: float = 110.0
    """Whole-run budget: later measurements are skipped once it is spent."""
    slow_cap: float = 60.0
    """Skip a contestant on a sweep point predicted to take longer than this per fit."""
    threads: int = dataclasses.field(default_factory=default_threads)
    floor_bytes: int = 256 << 20
    sgemm_size: int = 2048
    plots: bool = True
    warm_up_fits: int = 5
    """Untimed fits of each contestant on small blobs before the first workload (see
    :meth:`Runner.warm_up`)."""
    settle_seconds: float = 0.0
    """A pause after each timed call, so that the threads a library leaves spinning
    (OpenBLAS's busy-wait for about 0.1 s after a call, OpenMP's for a few ms) are idle
    before the next contestant's call. Without it the harness measured whoever came
    next beside them: in one full run on the 2-core EPYC, scikit-learn's 100,000 x 32
    k=2 fits took 55.8, 60.2 and 10.4 ms, the last after a quiet neighbour."""


class Runner:
    """Runs workloads x contestants under the fairness rules and a time budget."""

    def __init__(self, contestants, settings, log=print):
        self.contestants = contestants
        self.settings = settings
        self.log = log
        self.start = time.perf_counter()
        self.results = []
        self.workload_info = []
        self.floors = {}
        self._last_fit = {}  # (group, key) -> (work x n_iter, median fit seconds)

    # -- budget -------------------------------------------------------------------------

    def elapsed(self):
        return time.perf_counter() - self.start

    def over_budget(self):
        return self.elapsed() > self.settings.max_seconds

    # -- measurement ----------------------------------------------------------------------

    def measure(self, calls, warmup=True, repeats=None):
        """Time ``calls`` (``key -> (contestant, fn)``) in rotating rounds.

        Round 0 is each contestant's first call (reported as ``first_call_s``); rounds
        1..repeats are the samples. Without ``warmup`` (the contestant has already run on
        this data), round 0 is a sample too. Returns ``key -> {"first": s, "samples":
        [...], "result": last result, "error": str, "notes": [...]}``.
        """
        repeats = self.settings.repeats if repeats is None else repeats
        out = {key: {"samples": [], "notes": [], "first": None, "first_used": False,
                     "result": None, "error": None}
               for key in calls}
        keys = list(calls)
        for rnd in range(repeats + 1):
            order = keys[rnd % len(keys):] + keys[: rnd % len(keys)] if keys else []
            for key in order:
                contestant, fn = calls[key]
                entry = out[key]
                if entry["error"]:
                    continue
                if rnd > 0:
                    spent = sum(entry["samples"])
                    if entry["samples"] and (spent >= self.settings.measure_seconds
                                             or self.over_budget()):
                        continue
                    if entry["first_used"]:
                        continue
                elif self.over_budget():
                    entry["error"] = "skipped: time budget (--max-seconds) spent"
                    continue
                try:
                    with collect_warnings(entry["notes"]):
                        seconds, result = timed(fn, contestant.sync)
                    if self.settings.settle_seconds:
                        time.sleep(self.settings.settle_seconds)
                except NotSupported as exc:
                    entry["error"] = f"not supported{': ' + str(exc) if str(exc) else ''}"
                    continue
                except Exception as exc:
                    entry["error"] = f"error: {type(exc).__name__}: {exc}"[:300]
                    continue
                entry["result"] = result
                if rnd == 0:
                    entry["first"] = seconds
                    # A slow first call of a library with nothing to compile is a fair sample.
                    entry["first_used"] = (
                        not warmup
                        or repeats == 0
                        or (seconds >= self.settings.measure_seconds
                            and not contestant.needs_warmup)
                    )
                    if entry["first_used"]:
                        entry["samples"].append(seconds)
                else:
                    entry["samples"].append(seconds)
        return out

    def warm_up(self):
        """A few untimed fits of every contestant, alternated, on small blobs before the
        first workload: a new process's first fits run slower than its later ones (Numba's
        and OpenMP's threads, page faults of first allocations: on the 2-core EPYC
        gpukmeans' fits 2 to 5 of 10,000 x 32 took 11, 8, 8 and 7 ms, then 5-6), so without
        it the run's first workload read slow for whoever had run least."""
        if not self.settings.warm_up_fits:
            return
        X = make_blobs_data(20000, 16, 16, seed=1)
        init = np.ascontiguousarray(X[:16])
        for _ in range(self.settings.warm_up_fits):
            for c in self.contestants.values():
                with contextlib.suppress(Exception):
                    c.fit_fixed(c.to_device(X), init, 10)

    # -- one workload ---------------------------------------------------------------------

    def run_workload(self, workload, X):
        s = self.settings
        wl = dataclasses.asdict(workload)
        self.workload_info.append(wl)
        eligible = {}
        for key, c in self.contestants.items():
            if c.device not in workload.devices:
                continue  # e.g. the 10^7 and anchor shapes are for GPUs only
            reason = self._skip_reason(workload, c)
            if reason:
                self._record(workload, key, "time_fit", status="skipped", reason=reason)
            else:
                eligible[key] = c
        if not eligible:
            return
        self.log(f"[{self.elapsed():7.1f}s] {workload.name}: {X.shape[0]}x{X.shape[1]}, "
                 f"k={workload.n_clusters} ({', '.join(eligible)})")

        # Device copies, timed apart.
        Xd, h2d = {}, {}
        for key, c in eligible.items():
            try:
                Xd[key] = c.to_device(X)
                c.sync()
                if c.device == "gpu" and not c.host_input:
                    times = []
                    for _ in range(max(1, s.repeats)):
                        seconds, copy = timed(lambda: c.to_device(X), c.sync)
                        times.append(seconds)
                        del copy
                    h2d[key] = summarize(times)
            except Exception as exc:
                self._record(workload, key, "time_fit", status="error",
                             reason=f"to_device: {type(exc).__name__}: {exc}")
        eligible = {k: c for k, c in eligible.items() if k in Xd}

        # What BLAS takes for this shape's X @ C.T, on each device that runs it (the floors
        # themselves are set by finish(), from the best rates of the whole run).
        wl["floors"] = {d: self._blas_time(workload, X, d)
                        for d in sorted({c.device for c in eligible.values()})}

        # Initialisation, timed apart; sklearn's seeding doubles as everyone's init.
        init = None
        if workload.init_timing:
            calls = {key: (c, (lambda c=c, key=key: c.kmeans_plusplus(
                        Xd[key], workload.n_clusters, workload.seed)))
                     for key, c in eligible.items()}
            measured = self.measure(calls)
            if REFERENCE in measured and measured[REFERENCE]["result"] is not None:
                init = np.asarray(measured[REFERENCE]["result"], dtype=X.dtype)
            for key, m in measured.items():
                self._record_measured(workload, key, "time_init", m)
        if init is None:
            init = self._initial_centers(workload, X)

        ref_xp, X_ref = self._reference_array(workload, X)

        # Fixed work: per-iteration time.
        calls = {key: (c, (lambda c=c, key=key: c.fit_fixed(Xd[key], init, workload.n_iter)))
                 for key, c in eligible.items()}
        measured = self.measure(calls)
        self._score(workload, "time_fit", measured, X_ref, ref_xp, h2d)
        for key, m in measured.items():
            if m["samples"]:
                self._last_fit[(workload.group, key)] = (
                    workload.work * workload.n_iter, float(np.median(m["samples"])))

        # One iteration from the same centres: its difference from the fixed-work fit is
        # the cost of an iteration without the fit's fixed costs (validation, norms, the
        # final labels), for the contestants whose fixed-work fit ran and ran every
        # iteration (_record_marginal).
        timed_fits = [key for key, m in measured.items() if m["samples"]]
        if workload.n_iter > 1 and timed_fits:
            calls = {key: (eligible[key], (lambda c=eligible[key], key=key: c.fit_fixed(
                          Xd[key], init, 1)))
                     for key in timed_fits}
            for key, m in self.measure(calls).items():
                result = m["result"]
                self._record_measured(workload, key, "time_fit_one", m,
                                      n_iter=None if result is None else result.n_iter)
                self._record_marginal(workload, key)

        # To convergence from the same centres.
        if workload.converge:
            tol_abs = tolerance(X, DEFAULT_TOL)
            calls = {key: (c, (lambda c=c, key=key: c.fit_converge(
                        Xd[key], init, CONVERGE_MAX_ITER, DEFAULT_TOL, tol_abs)))
                     for key, c in eligible.items()}
            # A first-call round of its own: a run that converges can take paths that the
            # fixed-work fits never took (gpukmeans' inertia pass after strict convergence
            # compiled inside this measurement once, 0.49 s against 0.07).
            measured = self.measure(calls, repeats=min(1, s.repeats))
            self._score(workload, "time_fit_converge", measured, X_ref, ref_xp, h2d)

        # The library's own defaults (its own init), several seeds: the notebook's case.
        for i, seed in enumerate(workload.defaults_seeds):
            calls = {key: (c, (lambda c=c, key=key: c.fit_defaults(
                        Xd[key], workload.n_clusters, seed)))
                     for key, c in eligible.items()}
            # One sample per seed, after one warm-up call on the first seed (the library's
            # own seeding may compile code the fixed-work fits did not use).
            measured = self.measure(calls, warmup=(i == 0), repeats=int(i == 0))
            self._score(workload, "time_fit_defaults", measured, X_ref, ref_xp, h2d, seed=seed)

        for c in eligible.values():
            c.release()

    def _skip_reason(self, workload, c):
        limit = (gpu_free_bytes() if c.device == "gpu" else available_memory_bytes()) // 2
        need = c.memory_bytes(workload.n_samples, workload.n_features, workload.n_clusters)
        if need > limit:
            return f"would need ~{need / 2**30:.1f} GiB beyond the data"
        last = self._last_fit.get((workload.group, c.key))
        if last is not None:
            work, seconds = last
            predicted = seconds * workload.work * workload.n_iter / work
            if predicted > self.settings.slow_cap:
                return (f"predicted {predicted:.0f} s per fit from the previous sweep point "
                        f"> --slow-cap {self.settings.slow_cap:.0f} s")
        if self.over_budget():
            return "time budget (--max-seconds) spent"
        return None

    def _initial_centers(self, workload, X):
        """The shared initial centres: sklearn's k-means++ on MNIST (the realistic start),
        distinct random data points on synthetic data (cheap at any size)."""
        if workload.dataset == "mnist" and "cpu" in workload.devices:
            from sklearn.cluster import kmeans_plusplus

            return kmeans_plusplus(X, workload.n_clusters, random_state=workload.seed)[0]
        rng = np.random.default_rng(workload.seed)
        return X[np.sort(rng.choice(X.shape[0], workload.n_clusters, replace=False))].copy()

    def _reference_array(self, workload, X):
        """Score GPU-only workloads on the GPU (the CPU would take minutes per contestant)."""
        if "cpu" not in workload.devices:
            with contextlib.suppress(Exception):
                import cupy

                return cupy, cupy.asarray(X)
        return np, X

    def _blas_time(self, workload, X, device):
        """``X @ C.T`` through BLAS (cuBLAS on a GPU) on this shape: see :func:`gemm_seconds`."""
        repeats = min(3, max(1, self.settings.repeats))
        if device == "cpu":
            gemm = gemm_seconds(X, workload.n_clusters, repeats=repeats)
            return {"gemm_s": gemm["median"], "gemm": gemm, "device": "cpu"}
        try:
            import cupy

            Xg = cupy.asarray(X)
            sync = cupy.cuda.Device().synchronize
            gemm = gemm_seconds(Xg, workload.n_clusters, repeats=repeats, xp=cupy, sync=sync,
                                block_elements=GPU_BLOCK_ELEMENTS)
            del Xg
            free_cupy()
            return {"gemm_s": gemm["median"], "gemm": gemm, "device": "gpu"}
        except Exception as exc:
            return {"gemm_s": None, "device": "gpu", "error": repr(exc)}

    def finish(self, want_gpu):
        """Measure the rates again and set every floor from the best samples of the run.

        Noise only slows a measurement down, so rates measured at the start and at the end
        are pooled and the best taken: the floor is a lower bound, every ratio to it >= 1
        unless an implementation beats the machine's BLAS.
        """
        start = self.floors
        self.floors = {}
        self.measure_floors(want_gpu)
        for name in ("bandwidth_gbps", "sgemm_gflops", "gpu_bandwidth_gbps", "gpu_sgemm_gflops"):
            if name in start and name in self.floors:
                self.floors[name] = summarize(start[name]["samples"] + self.floors[name]["samples"])
            elif name in start:
                self.floors[name] = start[name]
        # The peak SGEMM rate: the best of the square products and of the workloads' own
        # X @ C.T products (BLAS can run a tall product faster than a small square one).
        shapes = {wl["name"]: (wl["n_samples"], wl["n_features"], wl["n_clusters"],
                               np.dtype(wl.get("dtype", "float32")).itemsize)
                  for wl in self.workload_info}
        rates = {}
        for device, prefix in (("cpu", ""), ("gpu", "gpu_")):
            if f"{prefix}sgemm_gflops" not in self.floors or f"{prefix}bandwidth_gbps" not in self.floors:
                continue
            sgemm = peak(self.floors[f"{prefix}sgemm_gflops"])
            source = f"{self.floors[f'{prefix}sgemm_size']}² square product"
            for wl in self.workload_info:
                gemm = wl.get("floors", {}).get(device, {}).get("gemm")
                if gemm:
                    n, d, k, _ = shapes[wl["name"]]
                    rate = 2 * n * d * k / gemm["min"] / 1e9
                    if rate > sgemm:
                        sgemm, source = rate, f"X @ C.T of {wl['name']}"
            self.floors[f"{prefix}sgemm_peak_gflops"] = sgemm
            self.floors[f"{prefix}sgemm_peak_source"] = source
            rates[device] = (sgemm, peak(self.floors[f"{prefix}bandwidth_gbps"]))
        for wl in self.workload_info:
            shape = shapes[wl["name"]]
            for device, floor in wl.get("floors", {}).items():
                if device in rates:
                    floor.update(iteration_floor(*shape, *rates[device]))
            wl["floor"] = wl.get("floors", {}).get("cpu") or wl.get("floors", {}).get("gpu")
        by_name = {wl["name"]: wl for wl in self.workload_info}
        for r in self.results:
            if r["status"] != "ok" or r["device"] not in rates:
                continue
            if r["benchmark"] in ("time_fit", "time_fit_converge") and r.get("per_iter_s"):
                floor_s = by_name[r["workload"]]["floors"][r["device"]].get("floor_s")
                measured = r["per_iter_s"]["median"]
            elif r["benchmark"] == "time_init":
                floor_s = kmeanspp_floor(*shapes[r["workload"]], *rates[r["device"]])
                measured = r["time_s"]["median"]
            else:
                continue
            if floor_s:
                r["floor_s"] = floor_s
                r["ratio_to_floor"] = measured / floor_s

    # -- scoring and records --------------------------------------------------------------

    def _score(self, workload, kind, measured, X_ref, ref_xp, h2d, seed=None):
        scored = {}
        for key, m in measured.items():
            r = m["result"]
            if r is None:
                continue
            labels, inertia = reference_assign(
                X_ref, ref_xp.asarray(r.centers, dtype=X_ref.dtype), xp=ref_xp,
                block_elements=BLOCK_ELEMENTS if ref_xp is np else GPU_BLOCK_ELEMENTS)
            scored[key] = (labels, inertia, r.centers)
        ref_key = REFERENCE if REFERENCE in scored else next(iter(scored), None)
        for key, m in measured.items():
            extra = {}
            r = m["result"]
            if key in scored:
                extra["inertia"] = scored[key][1]
                extra["reference"] = ref_key
                extra.update(agreement(scored[ref_key], scored[key]))
                extra["n_iter"] = r.n_iter
                extra["inertia_reported"] = r.inertia_reported
            if seed is not None:
                extra["seed"] = seed
            if key in h2d:
                extra["h2d_s"] = h2d[key]
            elif self.contestants[key].host_input:
                m["notes"].insert(0, "host data in: the copy to the GPU is inside the timed call")
            if (kind in ("time_fit", "time_fit_converge")
                    and not self.contestants[key].final_labels):
                m["notes"].insert(0, NO_FINAL_LABELS)
            if kind == "time_fit" and getattr(self.contestants[key], "last_log", None):
                extra["library_log"] = self.contestants[key].last_log
            self._record_measured(workload, key, kind, m, **extra)

    def _record_marginal(self, workload, key):
        """Onto the fixed-work fit's record, ``marginal_per_iter_s``: the difference of its
        median time from the one-iteration fit's (the record just made), over the
        iterations between them; a difference of two noisy medians, so on a small
        workload it can come out negative.

        Only where the fixed-work fit ran all its iterations and the other one: a fit that
        stops on strict convergence skips the final labelling pass that a one-iteration
        fit makes (its labels are already its centres'), so the difference would leave
        an E-step out of its iterations. Those rows are compared by whole fits."""
        one = self.results[-1]
        fits = [r for r in self.results if r["workload"] == workload.name
                and r["contestant"] == key and r["benchmark"] == "time_fit"]
        if not fits or one["status"] != "ok" or fits[-1]["status"] != "ok":
            return
        fit = fits[-1]
        if fit.get("n_iter") == workload.n_iter and one.get("n_iter") == 1:
            fit["marginal_per_iter_s"] = (
                fit["time_s"]["median"] - one["time_s"]["median"]) / (workload.n_iter - 1)

    def _record_measured(self, workload, key, kind, m, **extra):
        if m["error"] and not m["samples"]:
            status = "skipped" if m["error"].startswith(("not supported", "skipped")) else "error"
            keep = {k: extra[k] for k in ("seed",) if k in extra}
            self._record(workload, key, kind, status=status, reason=m["error"], notes=m["notes"],
                         **keep)
            return
        time_s = summarize(m["samples"])
        record = dict(status="ok", time_s=time_s, first_call_s=m["first"], notes=m["notes"],
                      first_call_used_as_sample=bool(m.get("first_used")), **extra)
        if m["first"] is not None and not m.get("first_used"):
            # What the first call costs beyond a warm one: JIT or kernel compilation, caches.
            record["first_call_overhead_s"] = m["first"] - time_s["median"]
        n_iter = extra.get("n_iter")
        if kind in ("time_fit", "time_fit_converge") and n_iter:
            record["per_iter_s"] = summarize([t / n_iter for t in m["samples"]])
        if "h2d_s" in extra:
            record["time_with_h2d_s"] = time_s["median"] + extra["h2d_s"]["median"]
        self._record(workload, key, kind, **record)

    def _record(self, workload, key, kind, **fields):
        c = self.contestants[key]
        self.results.append({
            "workload": workload.name, "group": workload.group, "contestant": key,
            "library": c.library, "device": c.device, "untested": c.untested,
            "benchmark": kind, **fields,
        })

    # -- floors ---------------------------------------------------------------------------

    def measure_floors(self, want_gpu):
        s = self.settings
        self.floors["bandwidth_gbps"] = measure_bandwidth(s.floor_bytes, repeats=max(3, s.repeats))
        self.floors["sgemm_gflops"] = measure_sgemm(s.sgemm_size, repeats=max(3, s.repeats))
        self.floors["bandwidth_bytes"] = s.floor_bytes
        self.floors["sgemm_size"] = s.sgemm_size
        if want_gpu:
            try:
                self.floors.update(measure_gpu_floors(s.floor_bytes * 4, 8192))
            except Exception as exc:  # untested on a GPU: keep the CPU run alive
                self.floors["gpu_error"] = repr(exc)


def run_suite(profile, *, contestants=None, device="all", mnist=None, settings=None,
              out_dir=".", name=None, repo=None, log=print, workloads=None):
    """Run a profile's workloads and write ``<name>.json``, ``<name>.md`` and plots.

    Returns the report dictionary.
    """
    settings = settings or Settings()
    chosen, report = select_contestants(contestants, device)
    if REFERENCE in chosen:  # the reference first: its k-means++ is everyone's init
        chosen = {REFERENCE: chosen.pop(REFERENCE), **chosen}
    for c in chosen.values():
        with contextlib.suppress(Exception):
            c.setup(settings.threads)
    runner = Runner(chosen, settings, log=log)
    want_gpu = any(c.device == "gpu" for c in chosen.values())
    mnist_dir = find_mnist(mnist)
    workloads = workloads if workloads is not None else profile_workloads(profile)
    skipped_workloads = []

    with thread_limits(settings.threads):
        env = environment(settings.threads, repo=repo)
        log(f"{profile} benchmark on {env['cpu']['model']} ({settings.threads} threads); "
            f"contestants: {', '.join(chosen) or 'none'}")
        for r in report:
            if not r["available"]:
                log(f"  not run: {r['key']}: {r['reason']}")
        runner.measure_floors(want_gpu)
        log(f"  floor: {runner.floors['bandwidth_gbps']['median']:.1f} GB/s copy, "
            f"{runner.floors['sgemm_gflops']['median']:.0f} GFLOP/s SGEMM")
        runner.warm_up()

        mnist_cache = None
        for workload in workloads:
            if not any(d in workload.devices for d in {c.device for c in chosen.values()}):
                skipped_workloads.append({"workload": workload.name,
                                          "reason": "no contestant on its device"})
                continue
            if runner.over_budget():
                skipped_workloads.append({"workload": workload.name,
                                          "reason": "time budget (--max-seconds) spent"})
                continue
            if workload.dataset == "mnist":
                if mnist_dir is None:
                    skipped_workloads.append({"workload": workload.name, "reason":
                        "MNIST not found (pass --mnist DIR, set GPUKMEANS_DATA, or run "
                        "gpukmeans.datasets.load_mnist() once to download it)"})
                    continue
                if mnist_cache is None or mnist_cache.shape[0] < workload.n_samples:
                    mnist_cache = load_mnist_images(mnist_dir)
                X = np.ascontiguousarray(mnist_cache[: workload.n_samples])
            else:
                X = make_blobs_data(workload.n_samples, workload.n_features,
                                    min(workload.n_clusters, 64), workload.seed)
            X = X.astype(workload.dtype, copy=False)
            runner.run_workload(workload, X)
            del X
        runner.finish(want_gpu)
        if "numba" in sys.modules:  # the layer gpukmeans' CPU engine ran on, once it has run
            with contextlib.suppress(Exception):
                env["numba_threading_layer"] = sys.modules["numba"].threading_layer()
                env["numba_niced_threads"] = _niced_thread_count()

    result = {
        "schema": SCHEMA,
        "profile": profile,
        "environment": env,
        "settings": dataclasses.asdict(settings),
        "mnist": str(mnist_dir) if mnist_dir else None,
        "contestants": report,
        "floors": runner.floors,
        "workloads": runner.workload_info,
        "skipped_workloads": skipped_workloads,
        "results": runner.results,
        "elapsed_s": runner.elapsed(),
    }
    write_reports(result, out_dir, name or f"harness-{profile}", plots=settings.plots, log=log)
    return result


@contextlib.contextmanager
def thread_limits(threads):
    """Hold BLAS and OpenMP pools to ``threads`` (threadpoolctl permitting)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=threads):
        yield


def _niced_thread_count():
    """How many of the process's threads run at a higher nice level than the main
    thread (Numba's workers, where the CPU engine set them so:
    ``gpukmeans._cpu_runtime._start_niced_workers``); None off Linux."""
    if not hasattr(os, "getpriority") or not os.path.isdir("/proc/self/task"):
        return None
    main_nice = os.getpriority(os.PRIO_PROCESS, 0)
    count = 0
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            count += os.getpriority(os.PRIO_PROCESS, int(tid)) > main_nice
    return count
