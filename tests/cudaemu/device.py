"""The emulated device: a :class:`gpukmeans._backend.Backend` on NumPy and the CPU-built kernels.

:func:`backend` gives the GPU engine what CuPy and NVRTC give it on a GPU:

- ``xp``: NumPy, except that ``empty`` fills new arrays with poison (NaN, 0x5a bytes), so
  an element that a kernel forgets to write shows up, as uninitialised device memory would;
- ``get_function(kernel, dtype, *template_args)``: the instantiation the engine asks for,
  refused unless it is one that NVRTC compiles (``gpukmeans._kernels.name_expressions``),
  launched through the emulator, with every argument checked against the kernel's C++
  signature (pointer element type, contiguity, the exact integer width of each scalar),
  since a wrong CuPy argument would silently corrupt a real launch.

A launch that breaks a CUDA rule (deadlock, ``__syncthreads`` in divergent code, a warp
collective with a bad mask, an invalid launch shape) raises :class:`EmulatorError`.
"""

import ctypes
import functools
import types

import numpy as np

from gpukmeans import _kernels
from gpukmeans._backend import Backend

from . import build

SIGNATURE_DTYPES = {"f": np.float32, "d": np.float64, "i": np.int32, "q": np.int64,
                    "I": np.uint32, "Q": np.uint64}
SIGNATURE_CTYPES = {"f": ctypes.c_float, "d": ctypes.c_double, "i": ctypes.c_int32,
                    "q": ctypes.c_int64, "I": ctypes.c_uint32, "Q": ctypes.c_uint64}
SCHEDULES = {"forward": 0, "reverse": 1, "random": 2}
"""The order in which a block's threads run between synchronisation points."""


class EmulatorError(AssertionError):
    """A launch broke a CUDA rule, or its arguments do not match the kernel."""


class Device:
    """One loaded emulator library (``variant``: plain, asan or tsan)."""

    def __init__(self, library_path):
        self.lib = lib = ctypes.CDLL(str(library_path))
        lib.cudaemu_kernel_signature.restype = ctypes.c_char_p
        lib.cudaemu_kernel_signature.argtypes = [ctypes.c_char_p]
        lib.cudaemu_kernel_names.restype = ctypes.c_char_p
        lib.cudaemu_errors.restype = ctypes.c_char_p
        lib.cudaemu_launch.restype = ctypes.c_int
        lib.cudaemu_launch.argtypes = [ctypes.c_char_p] + [ctypes.c_uint] * 6 + [ctypes.c_void_p]
        lib.cudaemu_set_schedule.argtypes = [ctypes.c_int, ctypes.c_uint]
        lib.cudaemu_switches.restype = ctypes.c_ulonglong
        self.launches = []
        """``(name, grid, block)`` of every launch, for coverage reports."""

    def kernel_names(self):
        return self.lib.cudaemu_kernel_names().decode().split()

    def set_schedule(self, schedule, seed=0):
        """``"forward"``, ``"reverse"`` or ``"random"`` (reshuffled at every sweep)."""
        self.lib.cudaemu_set_schedule(SCHEDULES[schedule], seed)

    def launch(self, name, grid, block, args):
        signature = self.lib.cudaemu_kernel_signature(name.encode())
        if signature is None:
            raise EmulatorError(f"no emulated kernel {name!r}")
        params = signature.decode().rstrip(",").split(",")
        if len(params) != len(args):
            raise EmulatorError(f"{name}: {len(args)} arguments for {len(params)} parameters")
        holders = []
        pointers = (ctypes.c_void_p * len(args))()
        for i, (param, arg) in enumerate(zip(params, args)):
            if param.endswith("*"):
                if not isinstance(arg, np.ndarray):
                    raise EmulatorError(f"{name}: argument {i} should be an array ({param}), "
                                        f"got {type(arg).__name__}")
                if arg.dtype != SIGNATURE_DTYPES[param[0]]:
                    raise EmulatorError(f"{name}: argument {i} is {arg.dtype}, the kernel reads "
                                        f"{np.dtype(SIGNATURE_DTYPES[param[0]])}")
                if not arg.flags.c_contiguous:
                    raise EmulatorError(f"{name}: argument {i} is not C-contiguous")
                holder = ctypes.c_void_p(arg.ctypes.data)
            else:
                want = SIGNATURE_DTYPES[param]
                if not isinstance(arg, np.generic) or arg.dtype != want:
                    raise EmulatorError(
                        f"{name}: argument {i} is {type(arg).__name__}, the kernel takes "
                        f"{np.dtype(want)} (CuPy would guess the type of a Python scalar)")
                holder = SIGNATURE_CTYPES[param](arg.item())
            holders.append(holder)
            pointers[i] = ctypes.cast(ctypes.pointer(holder), ctypes.c_void_p)
        grid = tuple(int(v) for v in grid) + (1,) * (3 - len(grid))
        block = tuple(int(v) for v in block) + (1,) * (3 - len(block))
        if min(grid + block) < 0:
            raise EmulatorError(f"{name}: negative launch dimension grid={grid} block={block}")
        self.launches.append((name, grid, block))
        self.lib.cudaemu_clear_errors()
        rc = self.lib.cudaemu_launch(name.encode(), *grid, *block, pointers)
        errors = self.lib.cudaemu_errors().decode()
        if rc != 0 or errors:
            raise EmulatorError(f"{name} grid={grid} block={block}: rc={rc}\n{errors}")

    def get_function(self, kernel, dtype=None, *template_args):
        """The backend's loader: the same name expression NVRTC would be asked for."""
        name = _kernels.name_expression(kernel, dtype, *template_args)
        compiled = _kernels.name_expressions(_kernels.source_file_of(kernel))
        if name not in compiled:
            raise EmulatorError(f"{name} is not among the instantiations NVRTC compiles: "
                                f"{compiled}")
        return functools.partial(self._launch_kernel, name)

    def _launch_kernel(self, name, grid, block, args, shared_mem=0, stream=None):
        self.launch(name, grid, block, args)

    def backend(self):
        return Backend(name="cudaemu", xp=ARRAY_MODULE, get_function=self.get_function,
                       status=lambda: (True, "the CUDA emulator (tests/cudaemu)"))


def _poisoned_empty(shape, dtype=np.float64, order="C"):
    array = np.empty(shape, dtype=dtype, order=order)
    if array.dtype.kind == "f":
        array.fill(np.nan)
    else:
        array.view(np.uint8).fill(0x5A)
    return array


def _array_module():
    """NumPy, but ``empty`` poisons: the part of CuPy's API the engine uses, on the host.

    More permissive than CuPy (a NumPy function CuPy lacks would pass here); the real
    backend's tests catch that on a GPU.
    """
    module = types.ModuleType("cudaemu_xp", "NumPy with poisoned empty(), standing in for CuPy.")
    module.__getattr__ = lambda name: getattr(np, name)
    module.empty = _poisoned_empty
    return module


ARRAY_MODULE = _array_module()


@functools.lru_cache(maxsize=None)
def device(variant="plain", kernel_dir=None):
    """The emulated device of one library variant, built on first use (cached)."""
    return Device(build.library_path(variant, kernel_dir))
