"""Where the GPU engine gets its array module and its kernels: one small backend object.

The GPU engine (:mod:`gpukmeans._gpu`) never imports CuPy or NVRTC itself. It takes a
:class:`Backend`: the array module its arrays live in, and the loader that turns a kernel
name and its template arguments into something to launch as
``kernel(grid, block, args)``. Two exist:

- the CUDA backend (:func:`cuda_backend`): CuPy, and kernels compiled by NVRTC through
  :func:`gpukmeans._kernels.get_function`; the one users get;
- the emulated backend of the test suite (``tests/cudaemu``): NumPy, and the same
  ``kernels/*.cu`` compiled by g++ and run on the CPU, one fiber per CUDA thread.

Everything between the two (launchers, launch shapes, template choices, the driver) is
the same code. :func:`use_backend` makes a backend the one that ``device="gpu"`` runs on,
for the block it guards; outside it, the CUDA backend is used.
"""

import contextlib
import contextvars
import functools
from typing import Any, Callable, NamedTuple


class Backend(NamedTuple):
    name: str
    """``"cuda"``, or the name of a stand-in (``"cudaemu"``)."""

    xp: Any
    """The array module of the engine's arrays: ``cupy``, or a NumPy stand-in."""

    get_function: Callable
    """``get_function(kernel, dtype=None, *template_args)`` -> launchable
    ``kernel(grid, block, args)``, as :func:`gpukmeans._kernels.get_function`."""

    status: Callable
    """``status() -> (usable, reason)``: whether this backend can run, and why not."""


# The CUDA driver's library, which CuPy's runtime loads under these names.
CUDA_DRIVER_LIBRARIES = {"win32": "nvcuda.dll", "linux": "libcuda.so.1"}


def _cuda_driver_missing():
    """Why the CUDA driver's library cannot be loaded, or None. Asked before CuPy is
    imported: on a machine with CuPy but no NVIDIA driver (CI, a laptop), a fit with
    ``device="auto"`` then learns at once that there is no GPU, instead of paying about
    a tenth of a second for CuPy's import to be told the same."""
    import ctypes
    import sys

    name = CUDA_DRIVER_LIBRARIES.get(sys.platform)
    if name is None:
        return f"no CUDA driver on {sys.platform}"
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return f"no usable CUDA driver: {name} cannot be loaded ({exc})"
    return None


@functools.lru_cache(maxsize=1)
def cuda_status():
    """``(usable, reason)`` of the CUDA backend: the driver's library loads, CuPy imports
    and the driver reports a device. Cached: the probe runs once per process and prints
    nothing."""
    missing = _cuda_driver_missing()
    if missing:
        return False, missing
    try:
        import cupy
    except ImportError as exc:
        return False, (
            f"CuPy is not installed ({exc}); install gpukmeans[cuda12] or gpukmeans[cuda13]"
        )
    except Exception as exc:  # a broken CuPy install raises more than ImportError
        return False, f"CuPy failed to import: {exc!r}"
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no usable CUDA driver: {exc}"
    if n_devices < 1:
        return False, "the CUDA driver reports no device"
    return True, f"{n_devices} CUDA device(s)"


@functools.lru_cache(maxsize=1)
def cuda_backend():
    """The CUDA backend: CuPy arrays, kernels compiled by NVRTC. Imports CuPy."""
    import cupy

    from ._kernels import get_function

    return Backend(name="cuda", xp=cupy, get_function=get_function, status=cuda_status)


_override = contextvars.ContextVar("gpukmeans_gpu_backend", default=None)


def current_backend():
    """The backend ``device="gpu"`` runs on here: the one :func:`use_backend` set, else
    the CUDA backend (which imports CuPy: ask :func:`current_status` first)."""
    backend = _override.get()
    return backend if backend is not None else cuda_backend()


def current_status():
    """``(usable, reason)`` of :func:`current_backend`, without importing CuPy for a
    stand-in."""
    backend = _override.get()
    return backend.status() if backend is not None else cuda_status()


@contextlib.contextmanager
def use_backend(backend):
    """Run ``device="gpu"`` (and ``"auto"``) on ``backend`` inside the block.

    For the test suite's emulated device; a context variable, so it is undone on exit
    and does not leak into other threads or tasks.
    """
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a gpukmeans._backend.Backend, got {type(backend)!r}.")
    token = _override.set(backend)
    try:
        yield backend
    finally:
        _override.reset(token)
