"""GPU benchmark of gpukmeans, run by ``benchmarks/gpu_check.sh`` in one device call.

Measures, in one process on one GPU:

* the device's copy bandwidth and SGEMM rate (the yardsticks);
* NVRTC compile time of every kernel file, cold and with CuPy's on-disk cache warm;
* MNIST 70,000 x 784 float32, 20 fixed Lloyd iterations from the same initial centers,
  warm, timed with CUDA events, for k = 20 and k = 256: gpukmeans, a straightforward
  PyTorch implementation (``torch.cdist`` / ``argmin`` / ``index_add_``) and a naive CuPy
  one (norm expansion + ``cupyx.scatter_add``), alternating contestants over repeats,
  medians reported; gpukmeans' E- and M-steps alone as well; and, when importable, the
  Triton peers ``flash-kmeans`` (from the same initial centers) and ``fastkmeans`` (its own
  random init; it copies X from the host every iteration, by design);
* a whole ``KMeans(20).fit`` warm (k-means++ and iterations to convergence);
* the crossover between the fused assignment kernel and the cuBLAS GEMM path, over a grid
  of (n_features, n_clusters), beside the rule's choice (gpukmeans._gpu.choose_assign_path).

Writes ``gpu-<UTC date>.json`` and ``.md`` to ``benchmarks/results/`` and to ``$OUT`` if set.
MNIST is read (never downloaded) from ``--data``, ``$GPUKMEANS_DATA``, ``benchmarks/data``,
``out/mnist`` or ``../shared/data``; without it a synthetic 70,000 x 784 set is used and
every table says so.

    PYTHONPATH=. python benchmarks/bench_gpu.py [--data DIR] [--repeats 5] [--quick]
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
MNIST_DIRS = ("benchmarks/data", "out/mnist", "../shared/data")
TARGETS_MS = {"iter_k20": 0.15, "iter_k256": 0.6, "fit_k20": 25.0}
"""Issue 9's targets on an H200 (per iteration for k = 20 and 256; a whole fit)."""
PEERS = {"flash-kmeans": "flash_kmeans", "fastkmeans": "fastkmeans"}
"""GPU peers that install as small wheels (torch and triton are on the device), timed
when importable: carry them as wheels (gpu_check.sh's header says how)."""

ISOLATE = {"fastkmeans"}
"""Peers timed only with ``--all-peers``: fastkmeans 0.5.0 tripped a device-side assert
(PyTorch's ``index_add``, ``dstIndex < dstAddDimSize``) on MNIST from our initial centers
on an H200 (2026-12-04), which poisons the CUDA context of every contestant after it."""


# ----------------------------------------------------------------------------------------
# CPU-only helpers
# ----------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="directory holding the MNIST IDX files")
    parser.add_argument("--n-iter", type=int, default=20, help="fixed Lloyd iterations")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per contestant")
    parser.add_argument("--clusters", type=int, nargs="+", default=[20, 256])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sweep")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch contestant")
    parser.add_argument("--all-peers", action="store_true",
                        help=f"also time {', '.join(sorted(ISOLATE))} (see ISOLATE)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    return parser.parse_args(argv)


def find_mnist_dir(explicit=None, env=None, root=ROOT):
    """The first candidate directory that holds the MNIST images, or None."""
    from gpukmeans.datasets import _find_mnist  # the loader's own file lookup

    env = os.environ.get("GPUKMEANS_DATA") if env is None else env
    candidates = [explicit, env, *(root / d for d in MNIST_DIRS)]
    for candidate in candidates:
        if not candidate:
            continue
        directory = pathlib.Path(candidate).expanduser()
        found = _find_mnist(directory)
        if "train-images-idx3-ubyte" in found and "t10k-images-idx3-ubyte" in found:
            return directory
    return None


def load_data(explicit=None, env=None, root=ROOT):
    """``(X float32 (70000, 784), description)``: MNIST if found, else labelled synthetic."""
    directory = find_mnist_dir(explicit, env, root)
    if directory is not None:
        from gpukmeans.datasets import load_mnist

        X, _ = load_mnist(directory, download=False, verbose=False)
        return np.ascontiguousarray(X, dtype=np.float32), f"MNIST 70,000 x 784 from {directory}"
    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 255, (10, 784)).astype(np.float32)
    X = centers[rng.integers(0, 10, 70_000)] + rng.normal(0, 40, (70_000, 784)).astype(np.float32)
    return X.astype(np.float32), "SYNTHETIC 70,000 x 784 (10 gaussian blobs; MNIST not found)"


def initial_centers(X, n_clusters, seed=0):
    """The same initial centers for every contestant: distinct rows drawn with a fixed seed."""
    rows = np.random.default_rng(seed).choice(X.shape[0], n_clusters, replace=False)
    return np.ascontiguousarray(X[np.sort(rows)])


def iteration_work(n_samples, n_features, n_clusters, itemsize=4):
    """Bytes and flops of one Lloyd iteration as gpukmeans does it: X is read twice (E-step,
    M-step gather); 2 n k d flops of distances plus n d of accumulation."""
    return {
        "bytes": 2 * n_samples * n_features * itemsize,
        "flops": 2 * n_samples * n_clusters * n_features + n_samples * n_features,
    }


def _fmt_ms(seconds):
    return "n/a" if seconds is None else f"{seconds * 1e3:.3f}"


def format_report(results):
    """The Markdown report of a results dictionary (as main() builds it)."""
    env, peaks = results["environment"], results["peaks"]
    lines = [
        f"# gpukmeans GPU benchmark, {env['date']}",
        "",
        f"- GPU: {env['gpu']} (driver {env['driver']}, CUDA runtime {env['cuda_runtime']})",
        f"- CuPy {env['cupy']}, NumPy {env['numpy']}, PyTorch {env.get('torch') or 'absent'},"
        f" Python {env['python']}",
        f"- commit {env['commit']}",
        f"- data: {results['data']}",
        f"- measured copy bandwidth {peaks['copy_GBps']:.0f} GB/s (read + write),"
        f" SGEMM {peaks['sgemm_GFLOPs']:.0f} GFLOP/s ({peaks['sgemm_shape']})",
        "",
        "## Compile (NVRTC, all kernel files, both dtypes)",
        "",
        f"- cold cache: {results['compile']['cold_s']:.2f} s; warm on-disk cache:"
        f" {results['compile']['warm_s']:.2f} s (fresh processes)",
        "",
        f"## Lloyd iterations ({results['n_iter']} fixed, warm, CUDA events,"
        f" median of {results['repeats']})",
        "",
        "| k | contestant | ms / iteration | GB/s | % copy BW | GFLOP/s | % SGEMM | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["iterations"]:
        target = TARGETS_MS.get(f"iter_k{row['k']}") if row["contestant"] == "gpukmeans" else None
        verdict = "" if target is None else (
            f"<= {target} ms: {'met' if row['s_per_iter'] * 1e3 <= target else 'NOT met'}"
        )
        lines.append(
            f"| {row['k']} | {row['contestant']} | {_fmt_ms(row['s_per_iter'])} |"
            f" {row['GBps']:.0f} | {100 * row['GBps'] / peaks['copy_GBps']:.0f} |"
            f" {row['GFLOPs']:.0f} | {100 * row['GFLOPs'] / peaks['sgemm_GFLOPs']:.0f} | {verdict} |"
        )
    fit = results["fit"]
    lines += [
        "",
        "## Whole fit, warm",
        "",
        f"`KMeans(20).fit` on device-resident X: median {_fmt_ms(fit['s'])} ms over"
        f" {fit['repeats']} fits ({fit['n_iter']} iterations; target <= {TARGETS_MS['fit_k20']} ms:"
        f" {'met' if fit['s'] * 1e3 <= TARGETS_MS['fit_k20'] else 'NOT met'});"
        f" from host NumPy X: {_fmt_ms(fit['s_host_input'])} ms.",
        "",
        "## Fused kernel vs cuBLAS GEMM path (E-step only, n = 70,000 float32)",
        "",
        "| d | k | fused ms | gemm ms | faster | rule chose |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["crossover"]:
        faster = "fused" if row["fused_s"] <= row["gemm_s"] else "gemm"
        mark = "" if faster == row["rule"] else " (rule wrong)"
        lines.append(
            f"| {row['d']} | {row['k']} | {_fmt_ms(row['fused_s'])} | {_fmt_ms(row['gemm_s'])} |"
            f" {faster} | {row['rule']}{mark} |"
        )
    return "\n".join(lines) + "\n"


def write_results(results, directories):
    """Write ``gpu-<date>.json`` and ``.md`` into each directory; return the paths."""
    stem = "gpu-" + results["environment"]["date"].replace(":", "").replace("-", "")
    paths = []
    for directory in directories:
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
        (directory / f"{stem}.md").write_text(format_report(results))
        paths += [directory / f"{stem}.json", directory / f"{stem}.md"]
    return paths


# ----------------------------------------------------------------------------------------
# GPU measurements
# ----------------------------------------------------------------------------------------


def environment():
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else name
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    commit = os.environ.get("GPUKMEANS_COMMIT")
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"

    def version(v):
        return f"{v // 1000}.{v % 1000 // 10}"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gpu": name,
        "driver": version(cupy.cuda.runtime.driverGetVersion()),
        "cuda_runtime": version(cupy.cuda.runtime.runtimeGetVersion()),
        "cupy": cupy.__version__,
        "numpy": np.__version__,
        "torch": torch_version,
        "python": platform.python_version(),
        "commit": commit,
    }


def cuda_time(fn):
    """Seconds ``fn()`` takes on the device, by CUDA events on the legacy default stream
    (CuPy's and PyTorch's default); the device is idle before the start event."""
    import cupy

    cupy.cuda.Device().synchronize()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    fn()
    stop.record()
    stop.synchronize()
    return cupy.cuda.get_elapsed_time(start, stop) / 1e3


def measure_peaks(repeats):
    import cupy

    src = cupy.empty(2**28, dtype=cupy.float32)  # 1 GiB
    dst = cupy.empty_like(src)
    src.fill(1.0)
    cuda_time(lambda: dst.__setitem__(Ellipsis, src))
    copy_s = statistics.median(cuda_time(lambda: dst.__setitem__(Ellipsis, src)) for _ in range(repeats))
    src = dst = None  # the 2 GiB freed before the GEMM's operands (a `del` of names a
    # lambda closes over reads to pyflakes as a use after deletion)
    n = 8192
    a = cupy.random.default_rng(0).standard_normal((n, n), dtype=cupy.float32)
    b = cupy.random.default_rng(1).standard_normal((n, n), dtype=cupy.float32)
    cuda_time(lambda: a @ b)
    gemm_s = statistics.median(cuda_time(lambda: a @ b) for _ in range(repeats))
    return {
        "copy_GBps": 2 * 2**30 / copy_s / 1e9,
        "sgemm_GFLOPs": 2 * n**3 / gemm_s / 1e9,
        "sgemm_shape": f"{n} x {n} x {n} float32, cupy.matmul",
    }


COMPILE_SNIPPET = (
    "import time, cupy; from gpukmeans import _kernels; t = time.perf_counter();"
    "[_kernels._module(f, cupy.cuda.runtime.getDevice()) for f in _kernels.KERNELS];"
    "print(time.perf_counter() - t)"
)


def measure_compile(cache_dir):
    """NVRTC time of every kernel file in a fresh process: cold cache, then warm."""
    env = dict(os.environ, CUPY_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    times = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET], env=env, capture_output=True,
                             text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return {"cold_s": times[0], "warm_s": times[1], "cache_dir": str(cache_dir)}


def gpu_engine():
    """The GPU engine's launchers on CuPy + NVRTC."""
    from gpukmeans._backend import cuda_backend
    from gpukmeans._gpu import GpuKernels

    return GpuKernels(cuda_backend())


def gpukmeans_lloyd(X, sample_weight, centers_init, n_iter):
    """``n_iter`` Lloyd iterations with the engine, as the driver does them (no checks)."""
    import cupy

    from gpukmeans._lloyd import average_centers

    gpu = gpu_engine()
    centers = centers_init.copy()
    labels = cupy.empty(X.shape[0], dtype=cupy.int32)
    for _ in range(n_iter):
        sums, weight_in_clusters = gpu.lloyd_iter(X, sample_weight, centers, labels)
        centers = average_centers(sums, weight_in_clusters, centers, X.dtype, cupy)
    return centers


def torch_lloyd(X, centers_init, n_iter):
    """The straightforward PyTorch k-means iteration."""
    import torch

    centers = centers_init.clone()
    n_clusters = centers.shape[0]
    for _ in range(n_iter):
        labels = torch.cdist(X, centers).argmin(dim=1)
        sums = torch.zeros_like(centers).index_add_(0, labels, X)
        counts = torch.bincount(labels, minlength=n_clusters).to(X.dtype)
        centers = sums / counts.clamp(min=1).unsqueeze(1)
    return centers


def cupy_naive_lloyd(X, centers_init, n_iter):
    """A naive CuPy iteration: the full distance matrix, argmin, scatter_add."""
    import cupy
    import cupyx

    centers = centers_init.copy()
    n_clusters = centers.shape[0]
    x_sq = (X * X).sum(axis=1)
    for _ in range(n_iter):
        distances = x_sq[:, None] - 2 * (X @ centers.T) + (centers * centers).sum(axis=1)[None, :]
        labels = distances.argmin(axis=1)
        sums = cupy.zeros_like(centers)
        cupyx.scatter_add(sums, labels, X)
        counts = cupy.bincount(labels, minlength=n_clusters).astype(X.dtype)
        centers = sums / cupy.maximum(counts, 1)[:, None]
    return centers


def peer_contestants(X, X_host, centers, n_clusters, n_iter, all_peers=False):
    """``{name: fn}`` of the importable Triton peers, each running ``n_iter`` iterations
    (those of :data:`ISOLATE` only with ``all_peers``)."""
    import importlib

    import torch

    contestants = {}
    X_t, centers_t = torch.from_dlpack(X), torch.from_dlpack(centers)
    for name, module in PEERS.items():
        if name in ISOLATE and not all_peers:
            print(f"{name}: not timed (see ISOLATE; --all-peers times it)", flush=True)
            continue
        try:
            peer = importlib.import_module(module)
        except Exception as exc:  # absent, or a broken install: say so in the log
            print(f"{name}: not timed ({exc!r})", flush=True)
            continue
        version = getattr(peer, "__version__", "?")
        if module == "flash_kmeans":
            def flash_kmeans_iterations(peer=peer):  # bound now: the loop rebinds peer
                peer.batch_kmeans_Euclid(X_t[None], n_clusters, max_iters=n_iter, tol=0.0,
                                         init_centroids=centers_t[None].clone())

            contestants[f"flash-kmeans {version}"] = flash_kmeans_iterations
        else:
            def fastkmeans_train(peer=peer):
                peer.FastKMeans(X_host.shape[1], n_clusters, niter=n_iter, tol=-1.0, seed=0,
                                dtype=torch.float32).train(X_host)

            contestants[f"fastkmeans {version} (host input, own init)"] = fastkmeans_train
    return contestants


def bench_iterations(X_host, n_clusters, n_iter, repeats, use_torch, all_peers=False):
    """Median seconds per iteration of each contestant, contestants alternated per repeat."""
    import cupy

    from gpukmeans import _gpu

    gpu = gpu_engine()
    X = cupy.asarray(X_host)
    weight = cupy.ones(X.shape[0], dtype=X.dtype)
    centers = cupy.asarray(initial_centers(X_host, n_clusters))
    labels = cupy.empty(X.shape[0], dtype=cupy.int32)
    contestants = {
        "gpukmeans": lambda: gpukmeans_lloyd(X, weight, centers, n_iter),
        "gpukmeans E-step only": lambda: [gpu.e_step(X, centers, labels) for _ in range(n_iter)],
        "gpukmeans M-step only": lambda: [gpu.accumulate(X, weight, labels, n_clusters)
                                          for _ in range(n_iter)],
        "cupy naive": lambda: cupy_naive_lloyd(X, centers, n_iter),
    }
    if use_torch:
        import torch

        X_t = torch.from_dlpack(X)
        centers_t = torch.from_dlpack(centers)
        contestants["pytorch"] = lambda: torch_lloyd(X_t, centers_t, n_iter)
        contestants.update(peer_contestants(X, X_host, centers, n_clusters, n_iter, all_peers))
    gpu.e_step(X, centers, labels)
    times = {name: [] for name in contestants}
    for name, fn in contestants.items():  # warm-up: compile, cuBLAS handles, pools
        fn()
    names = list(contestants)
    for r in range(repeats):  # rotate the order each repeat
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(cuda_time(contestants[name]) / n_iter)
    work = iteration_work(*X.shape, n_clusters)
    rows = []
    for name, samples in times.items():
        s = statistics.median(samples)
        rows.append({
            "k": n_clusters, "contestant": name, "s_per_iter": s, "samples_s": samples,
            "GBps": work["bytes"] / s / 1e9, "GFLOPs": work["flops"] / s / 1e9,
            "path": _gpu.choose_assign_path(*X.shape, n_clusters, 4),
        })
    return rows


def bench_fit(X_host, repeats):
    import cupy

    from gpukmeans import KMeans

    X = cupy.asarray(X_host)
    KMeans(20, random_state=0, device="gpu").fit(X)  # warm-up
    device_times, host_times, n_iter = [], [], None
    for _ in range(repeats):
        cupy.cuda.Device().synchronize()
        t = time.perf_counter()
        km = KMeans(20, random_state=0, device="gpu").fit(X)
        cupy.cuda.Device().synchronize()
        device_times.append(time.perf_counter() - t)
        n_iter = km.n_iter_
        t = time.perf_counter()
        KMeans(20, random_state=0, device="gpu").fit(X_host)
        host_times.append(time.perf_counter() - t)
    return {"s": statistics.median(device_times), "s_host_input": statistics.median(host_times),
            "samples_s": device_times, "repeats": repeats, "n_iter": n_iter,
            "timing": "wall clock around fit, device synchronized before and after"}


def bench_crossover(X_host, quick):
    import cupy

    from gpukmeans import _gpu

    gpu = gpu_engine()
    features = (32, 784) if quick else (32, 128, 784)
    clusters = (8, 32, 128, 512) if quick else (8, 16, 32, 64, 128, 256, 512, 1024)
    rows = []
    for d in features:
        X = cupy.asarray(np.ascontiguousarray(X_host[:, :d]))
        labels = cupy.empty(X.shape[0], dtype=cupy.int32)
        for k in clusters:
            centers = cupy.asarray(initial_centers(X_host[:, :d], k))
            result = {"d": d, "k": k, "rule": _gpu.choose_assign_path(X.shape[0], d, k, 4)}
            for path, fn in (("fused", gpu.assign_labels), ("gemm", gpu.assign_labels_gemm)):
                fn(X, centers, labels)
                result[f"{path}_s"] = statistics.median(
                    cuda_time(lambda: [fn(X, centers, labels) for _ in range(5)]) / 5 for _ in range(3)
                )
            rows.append(result)
    return rows


def main(argv=None):
    args = parse_args(argv)
    import tempfile

    repeats = 3 if args.quick else args.repeats
    results = {"environment": environment(), "n_iter": args.n_iter, "repeats": repeats}
    X, description = load_data(args.data)
    results["data"] = description
    print(f"{results['environment']['gpu']}: {description}", flush=True)
    with tempfile.TemporaryDirectory() as cache_dir:
        results["compile"] = measure_compile(cache_dir)
    print("compile", results["compile"], flush=True)
    results["peaks"] = measure_peaks(repeats)
    print("peaks", results["peaks"], flush=True)
    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch

            use_torch = torch.cuda.is_available()
        except ImportError:
            use_torch = False
    results["iterations"] = []
    for k in args.clusters:
        results["iterations"] += bench_iterations(X, k, args.n_iter, repeats, use_torch,
                                                  args.all_peers)
        print(f"k={k} done", flush=True)
    results["fit"] = bench_fit(X, repeats)
    results["crossover"] = bench_crossover(X, args.quick)
    directories = [args.results] + ([os.environ["OUT"]] if os.environ.get("OUT") else [])
    for path in write_results(results, directories):
        print("wrote", path)
    print(format_report(results))


if __name__ == "__main__":
    main()
