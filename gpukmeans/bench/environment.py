"""The machine a run runs on: what it is (recorded beside every number) and what it has free."""

import contextlib
import datetime
import importlib.metadata
import os
import pathlib
import platform
import subprocess

_DISTRIBUTIONS = (
    "gpukmeans", "numpy", "scipy", "scikit-learn", "numba", "threadpoolctl",
    "scikit-learn-intelex", "daal", "faiss-cpu", "faiss-gpu", "faiss-gpu-cu12",
    "torch", "fast-pytorch-kmeans", "cupy-cuda12x", "cupy-cuda13x", "matplotlib", "pandas",
)


def default_threads():
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpuinfo():
    info = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    info["model"] = fields.get("model name", info["model"])
    info["cache_size"] = fields.get("cache size")
    flags = fields.get("flags", "").split()
    info["flags"] = [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return info


def _meminfo_bytes(field):
    """A ``/proc/meminfo`` field in bytes, or None where there is none (not Linux)."""
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _memory_bytes():
    return _meminfo_bytes("MemTotal")


def available_memory_bytes():
    available = _meminfo_bytes("MemAvailable")
    return 8 << 30 if available is None else available


def gpu_free_bytes():
    try:
        import cupy

        return int(cupy.cuda.runtime.memGetInfo()[0])
    except Exception:
        pass
    try:
        import torch

        return int(torch.cuda.mem_get_info()[0])
    except Exception:
        return 16 << 30


def git_commit(directory):
    """``(commit, dirty)`` of the git checkout holding ``directory``, or ``(None, None)``."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())


def gpu_info():
    """Name, memory and CUDA versions of GPU 0 through CuPy, or None when none is usable."""
    try:
        from .._device import gpu_status

        if not gpu_status()[0]:
            return None
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        return {
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "memory_bytes": int(props["totalGlobalMem"]),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "driver_version": cupy.cuda.runtime.driverGetVersion(),
            "runtime_version": cupy.cuda.runtime.runtimeGetVersion(),
            "n_devices": cupy.cuda.runtime.getDeviceCount(),
        }
    except Exception as exc:  # a broken CUDA stack must not stop a CPU benchmark
        return {"error": repr(exc)}


def environment(threads, repo=None):
    """Hardware, software versions, commit and date: recorded beside every number."""
    versions = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    if "gpukmeans" not in versions:
        with contextlib.suppress(Exception):
            import gpukmeans

            versions["gpukmeans"] = gpukmeans.__version__
    commit, dirty = git_commit(repo or pathlib.Path(__file__).resolve().parent)
    pools = []
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        pools = [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version",
                                   "architecture")}
            for p in threadpool_info()
        ]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpuinfo(),
        "cpu_count": os.cpu_count(),
        "cores_available": default_threads(),
        "threads": threads,
        "memory_bytes": _memory_bytes(),
        "gpu": gpu_info(),
        "versions": versions,
        "threadpools": pools,
        "threading_variables": threading_variables(),
        "commit": commit,
        "dirty": dirty,
    }


# The environment variables that choose a BLAS's kernels or threads, or the threads of
# OpenMP and Numba: a benchmark's numbers mean little without them. OPENBLAS_CORETYPE,
# for one, can hold OpenBLAS to AVX2 kernels on a CPU with AVX-512 (a GEMM at about half
# the rate), and holds every library that loads OpenBLAS alike (ours through Numba and
# SciPy, scikit-learn's, FAISS's), but not oneDAL (scikit-learn-intelex).
_THREADING_PREFIXES = ("OPENBLAS_", "GOTO", "MKL_", "OMP_", "KMP_", "NUMBA_", "BLIS_")


def threading_variables():
    """The environment variables of :data:`_THREADING_PREFIXES`, sorted by name."""
    return {name: value for name, value in sorted(os.environ.items())
            if name.startswith(_THREADING_PREFIXES)}


def blas_line(env):
    """The BLAS libraries of an :func:`environment` record and the kernels each runs, and
    the variables that chose them, in one line; None where nothing was recorded."""
    parts = []
    for pool in env.get("threadpools") or ():
        if pool.get("user_api") != "blas":
            continue
        name = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(
            pool.get("internal_api"), pool.get("internal_api"))
        kernels = f" ({pool['architecture']} kernels)" if pool.get("architecture") else ""
        parts.append(f"{name} {pool.get('version')}{kernels}")
    variables = env.get("threading_variables") or {}
    chosen = [f"{k}={v}" for k, v in variables.items() if k.startswith(("OPENBLAS_", "GOTO",
                                                                         "MKL_", "BLIS_"))]
    if not parts and not chosen:
        return None
    line = ", ".join(parts) if parts else "no BLAS recorded"
    if chosen:
        line += " under " + " ".join(chosen)
    return line


def free_cupy():
    """Hand CuPy's cached device and pinned memory back, between workloads."""
    with contextlib.suppress(Exception):
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


def hardware_line(env):
    """The hardware of an :func:`environment` record, in one line (reports, plot titles)."""
    cpu = env["cpu"]
    threads = env["threads"]
    parts = [f"{cpu['model']}",
             f"{threads} thread{'s' if threads != 1 else ''} of {env['cores_available']} cores"]
    if env.get("memory_bytes"):
        parts.append(f"{env['memory_bytes'] / 2**30:.0f} GiB RAM")
    if env.get("numba_threading_layer"):
        niced = " (one nice level down)" if env.get("numba_niced_threads") else ""
        parts.append(f"Numba {env['numba_threading_layer']} threads{niced}")
    gpu = env.get("gpu")
    if gpu and "name" in gpu:
        parts.append(f"GPU {gpu['name']} ({gpu['memory_bytes'] / 2**30:.0f} GiB, "
                     f"CUDA runtime {gpu['runtime_version']})")
    else:
        parts.append("no GPU")
    blas = blas_line(env)
    if blas:
        parts.append(f"BLAS {blas}")
    return ", ".join(parts)


def versions_line(env):
    """The versions of an :func:`environment` record, in one line."""
    return ", ".join(f"{k} {v}" for k, v in env["versions"].items())
