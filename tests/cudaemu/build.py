"""Build the emulated device: ``kernels/*.cu`` compiled by g++ into a shared library.

One wrapper per kernel file includes ``cuda_cpu.h`` and the unchanged ``.cu`` source and
registers every instantiation that :mod:`gpukmeans._kernels` asks NVRTC for (its
``KERNELS`` table and ``name_expressions``), with the same ``-D`` tunables
(``DEFINES``): the emulator has exactly the kernels the engine can launch, no more.

Three variants:

- ``plain``: -O2, the fast one (the test suite's default);
- ``asan``: AddressSanitizer + UndefinedBehaviorSanitizer on the kernels (-O1 -g);
  Python must run with libasan preloaded (see :func:`sanitizer_environment`);
- ``tsan``: ThreadSanitizer on the kernels; every CUDA thread a TSan fiber, with
  happens-before only at barriers, warp collectives and kernel boundaries.

Builds are cached by a hash of everything that goes in (sources, headers, options,
instantiations, compiler), under ``$CUDAEMU_BUILD``, else ``~/.cache/gpukmeans/cudaemu``,
else a temporary folder. ``python tests/cudaemu/build.py [plain|asan|tsan ...]`` builds
from the command line and prints the libraries' paths.
"""

import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
RUNTIME_SOURCES = ("cuda_cpu.h", "runtime.cpp", "selftest.cu")
SELFTEST_KERNELS = (
    "race_same_warp", "race_other_warp", "race_other_block", "synced", "shfl_width",
    "match_any", "bad_divergent_syncthreads", "bad_partial_shfl",
)
"""selftest.cu's kernels: the emulator's checks of itself, built into every library."""

VARIANTS = {
    # name: (kernel flags, runtime flags, link flags)
    "plain": ("-O2", "-O2", ""),
    "asan": ("-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined "
             "-fno-sanitize-recover=all", "-O1 -g", "-fsanitize=address,undefined"),
    "tsan": ("-O1 -g -DCUDAEMU_TSAN -fsanitize=thread", "-O1 -g -DCUDAEMU_TSAN",
             "-fsanitize=thread"),
}


class Unavailable(RuntimeError):
    """The emulator cannot be built here; the message says why."""


def compiler():
    return os.environ.get("CXX", "g++")


def unavailable_reason():
    """Why the emulated device cannot run here, or None when it can."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return (f"the CUDA emulator's fiber switch is x86-64 Linux only "
                f"(this is {sys.platform} {platform.machine()})")
    for tool in (compiler(), "nm"):
        if shutil.which(tool) is None:
            return f"no {tool!r} on PATH: the CUDA emulator compiles the kernels with g++"
    return None


def _cache_root():
    if os.environ.get("CUDAEMU_BUILD"):
        return pathlib.Path(os.environ["CUDAEMU_BUILD"])
    home = pathlib.Path.home() / ".cache" / "gpukmeans" / "cudaemu"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home
    except OSError:
        pass
    return pathlib.Path(tempfile.gettempdir()) / "gpukmeans-cudaemu"


def _wrappers(kernel_dir):
    """{file name: C++ text} for every kernel file, plus the self-test."""
    from gpukmeans import _kernels

    wrappers = {}
    for filename in _kernels.KERNELS:
        lines = ['#include "cuda_cpu.h"', f'#include "{(kernel_dir / filename).as_posix()}"']
        lines += [f'CUDAEMU_REGISTER("{name}", {name});'
                  for name in _kernels.name_expressions(filename)]
        wrappers[f"wrap_{filename.replace('.cu', '')}.cpp"] = "\n".join(lines) + "\n"
    lines = ['#include "cuda_cpu.h"', '#include "selftest.cu"']
    lines += [f'CUDAEMU_REGISTER("{name}", {name});' for name in SELFTEST_KERNELS]
    wrappers["wrap_selftest.cpp"] = "\n".join(lines) + "\n"
    return wrappers


def _defines():
    from gpukmeans import _kernels

    return [f"-D{name}={value}" for name, value in _kernels.DEFINES.items()]


def _version(cxx):
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout


def library_path(variant="plain", kernel_dir=None):
    """Build (or find in the cache) one variant's library; return its path.

    ``kernel_dir``: the folder of ``.cu``/``.cuh`` sources (default: the package's own;
    the planted-bug tests point it at a modified copy).
    """
    reason = unavailable_reason()
    if reason:
        raise Unavailable(reason)
    from gpukmeans import _kernels

    kernel_dir = pathlib.Path(kernel_dir or _kernels.kernel_dir()).resolve()
    cxx = compiler()
    wrappers = _wrappers(kernel_dir)
    digest = hashlib.sha256()
    for part in (variant, *VARIANTS[variant], _version(cxx), *_defines(), kernel_dir.as_posix(),
                 *wrappers.values()):
        digest.update(part.encode() + b"\0")
    for path in sorted([*(HERE / name for name in RUNTIME_SOURCES),
                        *kernel_dir.glob("*.cu"), *kernel_dir.glob("*.cuh")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    out = _cache_root() / f"{variant}-{digest.hexdigest()[:20]}"
    library = out / "libcudaemu.so"
    if library.is_file():
        return library

    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(dir=out))
    try:
        _compile(variant, cxx, wrappers, work)
        os.replace(work / "libcudaemu.so", library)  # atomic: a reader sees all or nothing
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return library


def _compile(variant, cxx, wrappers, work):
    kernel_flags, runtime_flags, link_flags = (f.split() for f in VARIANTS[variant])
    common = ["-std=c++17", "-fPIC", f"-I{HERE}", "-Wall", "-Wno-unknown-pragmas",
              "-Wno-unused-variable", *_defines()]
    jobs, objects = [], []
    jobs.append(([cxx, *common, *runtime_flags, "-c", str(HERE / "runtime.cpp"),
                  "-o", str(work / "runtime.o")], "runtime.cpp"))
    for name, text in wrappers.items():
        (work / name).write_text(text)
        obj = work / name.replace(".cpp", ".o")
        objects.append(obj)
        jobs.append(([cxx, *common, *kernel_flags, "-c", str(work / name), "-o", str(obj)], name))
    running = [(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                what) for cmd, what in jobs]
    failures = []
    for proc, what in running:
        log = proc.communicate()[0]
        if proc.returncode:
            failures.append(f"{what}:\n{log}")
    if failures:
        raise RuntimeError("building the CUDA emulator failed:\n" + "\n".join(failures))

    # __shared__ statics of template kernels are GNU-unique symbols (GCC ignores the section
    # attribute there): list them with nm, so that the runtime can poison them before each
    # block. (TSan build: they are thread_local, fresh per block thread; no table.)
    table = []
    if variant != "tsan":
        nm = subprocess.run(["nm", "-S", "--defined-only", *map(str, objects)],
                            capture_output=True, text=True, check=True).stdout
        table = sorted({(f[3], f[1]) for f in (line.split() for line in nm.splitlines())
                        if len(f) == 4 and f[2] == "u" and f[3].startswith("_ZZ")})
    lines = ["struct CudaemuSharedVar { char* p; unsigned long n; };"]
    lines += [f'extern "C" char s{i}[] __asm__("{symbol}");' for i, (symbol, _) in enumerate(table)]
    lines.append('extern "C" const CudaemuSharedVar cudaemu_shared_table[] = {')
    lines += [f"  {{s{i}, 0x{size}}}," for i, (_, size) in enumerate(table)]
    lines += ["  {0, 0}};", f'extern "C" const int cudaemu_shared_table_len = {len(table)};']
    (work / "shared_table.cpp").write_text("\n".join(lines) + "\n")
    subprocess.run([cxx, "-std=c++17", "-fPIC", "-c", str(work / "shared_table.cpp"),
                    "-o", str(work / "shared_table.o")], check=True)
    subprocess.run([cxx, "-shared", *link_flags, str(work / "runtime.o"),
                    str(work / "shared_table.o"), *map(str, objects),
                    "-o", str(work / "libcudaemu.so")], check=True)


def sanitizer_environment(variant):
    """Environment additions for a Python process that loads a sanitizer build: the
    sanitizer runtime must be the first library loaded, so it is preloaded."""
    if variant == "plain":
        return {}
    cxx = compiler()

    def runtime(name):
        return subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True,
                              text=True, check=True).stdout.strip()

    if variant == "asan":
        return {
            "LD_PRELOAD": f"{runtime('libasan.so')}:{runtime('libubsan.so')}",
            "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        }
    return {
        "LD_PRELOAD": runtime("libtsan.so"),
        "TSAN_OPTIONS": "halt_on_error=1:report_signal_unsafe=0:history_size=4",
    }


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent.parent))
    for name in sys.argv[1:] or ["plain"]:
        print(library_path(name))
