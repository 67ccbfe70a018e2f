"""Shared test configuration.

- ``gpu`` tests are skipped where no usable GPU is present.
- The emulated device (tests/cudaemu) is built once per session for the GPU engine's tests.
- A run of the whole suite (plain ``pytest``, as CI runs it) measures the line coverage of
  the GPU engine, ``gpukmeans/_gpu.py``, and fails below ``GPU_ENGINE_MIN_COVERAGE`` when
  the emulated device ran: the CUDA code paths that CI exercises must not shrink unseen.
- A run of the whole suite also compiles the CPU engine's Numba kernels in a second
  process (:func:`gpukmeans._cpu.warm_up`: the kernels of fits of writable arrays, both
  dtypes, each thread count's version) while the emulator's tests, which need none of
  them, run first: on CI's two cores a cold cache's minutes of compiling then cost no
  time. The kernels land in the cache the suite reads; a test that needs one before it
  is written, or one the warm-up does not make (CSR, streaming, MiniBatchKMeans),
  compiles it itself, so the order changes when, never what, is tested. (The whole of
  ``gpukmeans compile``, read-only arrays and the rest, took 761 s of CI's run at
  83d9113 beside the suite, and its 133 s of tests after it ended the run 136 s after
  the main process: the kernels beyond the warm-up's are compiled only by the tests that
  run them, and the test that the command compiles every kernel runs by hand. Read-only
  dense arrays have taken the writable arrays' kernels since: ``kernel_view``.)
- That second process then runs the tests of :data:`RUN_IN_BACKGROUND` in a pytest
  of its own, which this run waits for at its end: its report is printed below this
  run's, and its failure fails this run. (When it compiled all of ``gpukmeans compile``,
  that compile had ended about 250 s before the suite did, a fresh-clone CI run on a
  2-core Zen 3: compile 688-709 s, suite 921-946 s, leaving one core idle for those
  files; see :data:`RUN_IN_BACKGROUND` for the balance now.) (pytest-xdist would
  split every file between two workers from the start, each compiling the same
  kernels, where this one process compiles them once ahead of the tests.) A failed
  warm-up fails the run too. ``GPUKMEANS_TEST_BACKGROUND_COMPILE=0`` runs
  everything here, in order, and compiles nothing ahead.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import time

import pytest

GPU_ENGINE = pathlib.Path(__file__).resolve().parents[1] / "gpukmeans" / "_gpu.py"
GPU_ENGINE_MIN_COVERAGE = 90.0
_state = {"coverage": None, "emulated": False}


def _whole_suite(config):
    source = getattr(config, "args_source", None)
    return (source is not None and source.name == "TESTPATHS" and not config.option.keyword
            and config.option.markexpr in ("", "not slow"))


# Test files that need no Numba kernel, run first in a whole-suite run (see above).
RUN_FIRST = ("test_cudaemu.py", "test_gpu.py", "test_kernels_compile.py")
# Test files, or single tests (``file::name``), that a whole-suite run leaves to the
# background process once its compile is done (see above): about five minutes of tests,
# none on the emulated device (whose line coverage this process measures) and none of
# RUN_FIRST. The serial-twins test compiled kernels of both thread counts that the
# compile had not reached yet (33 + 24 s of CI's run); after it, it loads them.
# With the warm-up's compile (372 s in the CI run that brought it) its 256 s of tests ended
# 160 s before the main process's 788: test_cli, test_kmeans and test_packaging (62 s
# there, none on the emulated device) moved here; it still ended about 100 s before the
# main process (compile 398 s + tests 279 s, against 777 s): the wide-rows MiniBatchKMeans
# test and the strided-views test (27 + 24 s there, CPU only) moved here too.
RUN_IN_BACKGROUND = ("test_cli.py", "test_examples.py", "test_faults.py", "test_kmeans.py",
                     "test_packaging.py", "test_sklearn_minibatch_suite.py",
                     "test_sklearn_suite.py", "test_startup.py", "test_streaming.py",
                     "test_cpu_engine.py::test_serial_twins_give_the_parallel_kernels_bits",
                     "test_cpu_engine.py::"
                     "test_strided_views_take_the_loop_and_give_the_same_products",
                     "test_minibatch.py::test_float64_fit_on_wide_rows_matches_sklearn")
BACKGROUND_TIMEOUT_S = 1800
_BACKGROUND = """
import subprocess, sys, time
start = time.perf_counter()
warm_up = subprocess.run([sys.executable, "-c", "from gpukmeans import _cpu; _cpu.warm_up()"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
print(f"the compile took {time.perf_counter() - start:.0f} s, exit status {warm_up.returncode}",
      flush=True)
if warm_up.returncode:  # the warm-up that the demo and gpukmeans compile run failed
    print(warm_up.stderr[-5000:], flush=True)
tests = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                        *sys.argv[1:]], stdin=subprocess.DEVNULL).returncode
sys.exit(tests or warm_up.returncode)
"""


def _runs_in_background(item):
    test = getattr(item, "originalname", item.name)  # without its parameters
    return (item.path.name in RUN_IN_BACKGROUND
            or f"{item.path.name}::{test}" in RUN_IN_BACKGROUND)


def pytest_configure(config):
    if _whole_suite(config) and os.environ.get("GPUKMEANS_TEST_BACKGROUND_COMPILE") != "0":
        log = tempfile.TemporaryFile()
        here = pathlib.Path(__file__).resolve().parent
        _state["background"] = subprocess.Popen(
            [sys.executable, "-c", _BACKGROUND, *(str(here / name) for name in RUN_IN_BACKGROUND)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(config.rootpath),
        ), log
    if not _whole_suite(config) or sys.gettrace() is not None:  # a subset, or already traced
        return
    try:
        import coverage
    except ImportError:
        return
    _state["coverage"] = coverage.Coverage(data_file=None, include=[str(GPU_ENGINE)])
    _state["coverage"].start()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    if "background" in _state:
        process, log = _state.pop("background")
        finished = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        waited = time.perf_counter()
        try:
            returncode = process.wait(timeout=BACKGROUND_TIMEOUT_S if finished else 0)
        except subprocess.TimeoutExpired:  # this run was cut short, or the other hangs
            process.kill()
            returncode = process.wait()
        log.seek(0)
        # Which of the two processes ends the run, and by how much: where to move tests.
        report = (f"this run waited {time.perf_counter() - waited:.0f} s for the background "
                  f"process at its end\n" + log.read().decode(errors="replace"))
        log.close()
        if finished:
            _state["background report"] = report, returncode
            if returncode != 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
    cov = _state["coverage"]
    if cov is None:
        return
    cov.stop()
    _, statements, _, missing, _ = cov.analysis2(str(GPU_ENGINE))
    percent = 100.0 * (1 - len(missing) / max(1, len(statements)))
    _state["report"] = (percent, missing)
    if _state["emulated"] and percent < GPU_ENGINE_MIN_COVERAGE and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if "background report" in _state:
        report, returncode = _state["background report"]
        terminalreporter.section(f"the tests run by the background process: "
                                 f"{', '.join(RUN_IN_BACKGROUND)} (exit status {returncode})")
        terminalreporter.write(report)
        if returncode != 0:
            terminalreporter.write_line("FAILED: the background process's tests failed",
                                        red=True)
    if "report" not in _state:
        return
    percent, missing = _state["report"]
    verdict = "" if _state["emulated"] else " (the emulated device did not run: not enforced)"
    terminalreporter.write_line(
        f"gpukmeans/_gpu.py line coverage: {percent:.1f}% (at least {GPU_ENGINE_MIN_COVERAGE:.0f}%"
        f" required){verdict}; lines not run: {missing}")
    if _state["emulated"] and percent < GPU_ENGINE_MIN_COVERAGE:
        terminalreporter.write_line("FAILED: the GPU engine's coverage fell below the minimum",
                                    red=True)


def pytest_collection_modifyitems(config, items):
    if "background" in _state:
        items.sort(key=lambda item: item.path.name not in RUN_FIRST)  # stable
        elsewhere = [item for item in items if _runs_in_background(item)]
        items[:] = [item for item in items if not _runs_in_background(item)]
        config.hook.pytest_deselected(items=elsewhere)
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from gpukmeans._device import gpu_status

    usable, reason = gpu_status()
    if usable:
        return
    skip = pytest.mark.skip(reason=f"no usable GPU: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def emulated_device():
    """The CUDA emulator (tests/cudaemu), plain build: ``kernels/*.cu`` compiled by g++ and
    run on the CPU. Built once per machine and cached; skipped where it cannot be built."""
    from cudaemu import build, device

    reason = build.unavailable_reason()
    if reason:
        skip_kernel_test(reason)
    emulated = device.device("plain")
    _state["emulated"] = True
    return emulated


def skip_kernel_test(reason):
    """Skip a test that needs the emulator's compiler or NVRTC, where they are missing;
    under ``GPUKMEANS_REQUIRE_KERNEL_TESTS=1`` (CI, see .ci/run) fail instead, so that a
    run that exercised no kernel is never reported as a pass."""
    if os.environ.get("GPUKMEANS_REQUIRE_KERNEL_TESTS") == "1":
        pytest.fail(f"GPUKMEANS_REQUIRE_KERNEL_TESTS=1, but {reason}")
    pytest.skip(reason)


def route_cpu_fits(monkeypatch, engine):
    """Send every CPU call to one engine: "numpy" (:mod:`gpukmeans._cpu_small`) or
    "numba" (:mod:`gpukmeans._cpu`); outside such a test the shapes decide."""
    import math

    from gpukmeans import _cpu_small

    limit = math.inf if engine == "numpy" else 0
    for name in ("MAX_WORK", "MAX_ELEMENTS", "MAX_DISTANCES", "MAX_PASS_WORK", "MAX_PASS_ELEMENTS",
                 "MAX_KMEANSPP_DISTANCES", "MAX_KMEANSPP_WORK"):
        monkeypatch.setattr(_cpu_small, name, limit)


def fit_device(request, engine):
    """Set up ``engine`` for the rest of the test and return the ``device`` to fit on:
    "cpu" (the shapes choose the CPU engine), "cpu-numba" (every CPU call on Numba),
    "emulated" (the GPU engine on tests/cudaemu) or "cuda" (the GPU engine on CuPy)."""
    if engine.startswith("cpu"):
        if engine == "cpu-numba":
            route_cpu_fits(request.getfixturevalue("monkeypatch"), "numba")
        return "cpu"
    from gpukmeans._backend import cuda_backend, use_backend

    backend = (cuda_backend() if engine == "cuda"
               else request.getfixturevalue("emulated_device").backend())
    context = use_backend(backend)
    context.__enter__()
    request.addfinalizer(lambda: context.__exit__(None, None, None))
    return "gpu"


# Every engine a fit can run on: the CPU as the shapes choose, the CPU all on Numba, the
# GPU engine on the emulated device, and on CUDA where a GPU is usable.
ENGINES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cpu-numba", id="cpu-numba"),
    pytest.param("emulated", id="gpu-emulated"),
    pytest.param("cuda", id="gpu", marks=pytest.mark.gpu),
]


@pytest.fixture(params=ENGINES)
def device(request):
    """The ``device`` to fit on, once per engine of :data:`ENGINES` ("gpu" runs on the
    emulated device or on CUDA). A test file may define its own."""
    return fit_device(request, request.param)


@pytest.fixture
def rng(request):
    """A fresh random generator per test; its seed is printed (shown on failure) and kept
    in the test's report, so that a failing draw can be replayed: with
    ``GPUKMEANS_TEST_SEED=<seed>`` every test that takes this fixture draws from that
    seed."""
    import numpy as np

    replayed = os.environ.get("GPUKMEANS_TEST_SEED")
    seed = int(replayed) if replayed else np.random.SeedSequence().entropy % 2**32
    request.node.user_properties.append(("seed", seed))
    print(f"random seed: {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(params=["numpy", "numba"])
def cpu_engine(request, monkeypatch):
    """The test's CPU fits run on each CPU engine in turn, whatever their shapes."""
    route_cpu_fits(monkeypatch, request.param)
    return request.param


@pytest.fixture
def no_user_mnist(monkeypatch, tmp_path):
    """Keep a test away from the user's GPUKMEANS_DATA and MNIST cache."""
    from gpukmeans import datasets

    monkeypatch.delenv("GPUKMEANS_DATA", raising=False)
    monkeypatch.setattr(datasets, "mnist_cache_dir", lambda: tmp_path / "cache" / "mnist")


@pytest.fixture
def subset_checksums(monkeypatch):
    """Make the bundled MNIST subset the 'published' MNIST, so that a download of it
    verifies."""
    import gzip
    import hashlib

    from gpukmeans import datasets

    subset = pathlib.Path(__file__).parent / "data" / "mnist"
    checksums = {
        name: hashlib.sha256(gzip.decompress((subset / f"{name}.gz").read_bytes())).hexdigest()
        for name in datasets.MNIST_FILES
    }
    monkeypatch.setattr(datasets, "MNIST_FILES", checksums)
    return checksums
