"""Find the CUDA sources in ``kernels/`` and compile them lazily through CuPy (NVRTC).

One loader for every kernel file, used by the GPU engine (:mod:`gpukmeans._gpu`) and by
the compile test (``tests/test_kernels_compile.py``) alike: the same source lookup, the
same ``#line`` prefix, the same options and the same template instantiations.

Nothing here imports CuPy at module import, and nothing compiles before a kernel is first
asked for. Compiled modules are cached per (file, device) for the life of the process;
CuPy's own on-disk cache (``CUPY_CACHE_DIR``, default ``~/.cupy/kernel_cache``) makes later
processes skip NVRTC. Its key covers the source text and the options, not the headers a
source includes, so the options carry a hash of the headers (``GPUKMEANS_HEADERS_HASH``):
editing ``common.cuh`` invalidates the cache as editing a ``.cu`` file does.
"""

import functools
import hashlib
import importlib.resources
import pathlib

import numpy as np

KERNEL_PACKAGE = "gpukmeans.kernels"
"""Where a wheel puts ``kernels/`` (pyproject maps the package to that folder)."""

DEFINES = {
    # assign.cu: fused assignment and pairwise distances (tiles of samples x centers)
    "ASSIGN_TILE_SAMPLES": 64,
    "ASSIGN_TILE_CLUSTERS": 64,
    "ASSIGN_TILE_FEATURES": 16,
    "ASSIGN_THREADS": 256,
    "ASSIGN_MIN_BLOCKS_FLOAT": 0,
    "ASSIGN_MIN_BLOCKS_DOUBLE": 2,
    # common.cuh: warp-per-row kernels and flat reductions
    "WARPS_PER_BLOCK": 8,
    "REDUCE_THREADS": 256,
    # reduce.cu
    "REDUCE_ITEMS": 16,
    "INERTIA_ROWS_PER_BLOCK": 64,
    # update.cu: counting sort by label, then fixed-size pieces of each cluster
    "ACCUMULATE_PIECE_SAMPLES": 256,
    "ACCUMULATE_THREADS": 128,
    # kmeanspp.cu
    "KMEANSPP_CANDIDATES_PER_PASS": 8,
    # sparse.cu: centers per lane per pass of the CSR E-step; samples per weight range
    "CSR_CENTERS_PER_LANE": 4,
    "CSR_WEIGHT_RANGE": 256,
}
"""The kernels' tunables, passed to NVRTC as ``-D``; :mod:`gpukmeans._gpu` computes launch
shapes from the same numbers. The ``#ifndef`` defaults in the sources are the same values."""

ASSIGN_CLUSTER_TILES = (16, 32, 64)
"""Centers per shared-memory tile of ``assign_labels``: its second template argument. The
launcher takes the smallest that holds ``n_clusters`` (less zero padding for small k)."""

KERNELS = {
    "assign.cu": {
        "assign_labels": ASSIGN_CLUSTER_TILES,
        "pairwise_distances": True,
        "row_squared_norms": True,
        "argmin_from_dots": True,
    },
    "update.cu": {
        "count_labels": False,
        "plan_pieces": False,
        "order_by_label": False,
        "accumulate_pieces": True,
        "accumulate_centers": False,
    },
    "reduce.cu": {
        "inertia_partials": True,
        "assigned_distances": True,
        "weighted_row_sums": True,
        "sum_partials": False,
    },
    "kmeanspp.cu": {
        "kmeanspp_distances": True,
    },
    "sparse.cu": {
        "assign_labels_csr": True,
        "squared_distances_csr": True,
        "assigned_distances_csr": True,
        "row_squared_norms_csr": True,
        "accumulate_csc": True,
        "cluster_weight_partials": True,
    },
}
"""Each source file's kernels: ``False``, a plain kernel; ``True``, a template on the
floating dtype; a tuple, a template on the dtype and one more argument, instantiated for
each value of the tuple."""

CUPY_ADDED_OPTIONS = ("-ftz=true",)
"""Options CuPy's RawModule appends itself (``cupy.cuda.compiler``); the compile test adds
them too, so that it compiles exactly what the engine loads (besides ``-arch``)."""

C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def name_expression(kernel, dtype=None, *template_args):
    """The NVRTC name expression of a kernel: ``"sum_partials"``, ``"inertia_partials<float>"``,
    ``"assign_labels<double, 32>"``."""
    if dtype is None:
        return kernel
    return f"{kernel}<{', '.join([C_TYPES[np.dtype(dtype)], *map(str, template_args)])}>"


def name_expressions(filename):
    """Every instantiation a source file is compiled with (both dtypes of each template)."""
    names = []
    for kernel, templated in KERNELS[filename].items():
        if isinstance(templated, tuple):
            names.extend(name_expression(kernel, dtype, arg) for dtype in C_TYPES for arg in templated)
        elif templated:
            names.extend(name_expression(kernel, dtype) for dtype in C_TYPES)
        else:
            names.append(name_expression(kernel))
    return names


def source_file_of(kernel):
    """The ``.cu`` file that defines ``kernel``."""
    for filename, kernels in KERNELS.items():
        if kernel in kernels:
            return filename
    raise KeyError(f"no kernel named {kernel!r} in {sorted(KERNELS)}")


@functools.lru_cache(maxsize=1)
def kernel_dir():
    """The folder holding the ``.cu``/``.cuh`` sources.

    An installed wheel (and an editable install) has them as the resource package
    ``gpukmeans.kernels``; a plain source checkout has them in ``kernels/`` beside
    ``gpukmeans/``.
    """
    try:
        resource = importlib.resources.files(KERNEL_PACKAGE).joinpath("common.cuh")
        path = pathlib.Path(str(resource))
        if path.is_file():
            return path.parent
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    path = pathlib.Path(__file__).resolve().parent.parent / "kernels"
    if (path / "common.cuh").is_file():
        return path
    raise FileNotFoundError(
        f"the CUDA sources are missing: neither the package {KERNEL_PACKAGE!r} nor {path} "
        "holds common.cuh"
    )


def read_source(filename):
    """The source of ``filename``, prefixed with ``#line 1`` so that NVRTC names the real file."""
    path = kernel_dir() / filename
    return f'#line 1 "{path.as_posix()}"\n' + path.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def headers_hash():
    """A short hash of every ``.cuh`` header, for CuPy's cache key."""
    digest = hashlib.sha256()
    for header in sorted(kernel_dir().glob("*.cuh")):
        digest.update(header.name.encode())
        digest.update(header.read_bytes())
    return digest.hexdigest()[:16]


def compile_options():
    """NVRTC options for every kernel file (CuPy adds the architecture itself)."""
    return (
        "-std=c++17",
        f"-I{kernel_dir().as_posix()}",
        *(f"-D{name}={value}" for name, value in DEFINES.items()),
        f"-DGPUKMEANS_HEADERS_HASH=0x{headers_hash()}",
    )


@functools.lru_cache(maxsize=None)
def _module(filename, device_id):
    """The compiled ``cupy.RawModule`` of one source file on one device."""
    import cupy

    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(
            code=read_source(filename),
            options=compile_options(),
            name_expressions=name_expressions(filename),
        )
        module.compile()
    return module


def get_function(kernel, dtype=None, *template_args):
    """The ``cupy.RawKernel`` of ``kernel<T, template_args...>`` (``T`` from ``dtype`` when
    given) on the current device.

    Compiles the kernel's source file on first use on each device.
    """
    import cupy

    module = _module(source_file_of(kernel), cupy.cuda.runtime.getDevice())
    return module.get_function(name_expression(kernel, dtype, *template_args))


def compile_all():
    """Compile every kernel source file for the current device (into CuPy's kernel cache,
    which later processes reuse): what ``gpukmeans compile`` does on a GPU."""
    import cupy

    device_id = cupy.cuda.runtime.getDevice()
    for filename in KERNELS:
        _module(filename, device_id)
