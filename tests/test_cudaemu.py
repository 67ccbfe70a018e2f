"""The CUDA emulator (tests/cudaemu) checks itself, then runs the kernels' shape matrix:
in every CI run the plain build in the forward order (the quick matrix) and in a random
order (small shapes), and the ASan+UBSan build on small shapes; as ``slow`` tests the
small shapes in reversed order, the ThreadSanitizer build, the full matrix, and the
planted bugs that prove the harness catches each kind of fault."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from cudaemu import build, matrix, mutants
from cudaemu.device import EmulatorError
from gpukmeans import _kernels

TESTS = pathlib.Path(__file__).resolve().parent


def _matrix_command(variant, *args, kernels=None, env=None):
    """Run the shape matrix in a fresh interpreter (sanitizer runtimes must be preloaded
    before Python starts); return the CompletedProcess."""
    command = [sys.executable, "-m", "cudaemu.matrix", "--variant", variant, *args]
    if kernels:
        command += ["--kernels", str(kernels)]
    environment = dict(os.environ, **build.sanitizer_environment(variant), **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), str(TESTS.parent), environment.get("PYTHONPATH", "")])
    return subprocess.run(command, cwd=TESTS, env=environment, capture_output=True, text=True,
                          timeout=1800)


def _skip_without_sanitizer(variant):
    env = build.sanitizer_environment(variant)
    missing = [p for p in env["LD_PRELOAD"].split(":") if not os.path.isfile(p)]
    if missing:
        pytest.skip(f"no {variant} runtime for {build.compiler()}: {missing}")


# ----------------------------------------------------------------------------------------
# The emulator itself
# ----------------------------------------------------------------------------------------


def test_a_machine_without_a_compiler_gets_a_reason_not_a_failure(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    reason = build.unavailable_reason()
    assert reason and "no-such-compiler-here" in reason
    with pytest.raises(build.Unavailable, match="no-such-compiler-here"):
        build.library_path("plain")


def test_every_instantiation_nvrtc_compiles_is_emulated(emulated_device):
    wanted = {name.replace(" ", "") for f in _kernels.KERNELS for name in _kernels.name_expressions(f)}
    assert wanted <= set(emulated_device.kernel_names())


def test_shuffles_follow_ptx_segment_rules(emulated_device):
    out = np.zeros(32, np.int32)
    emulated_device.launch("shfl_width", (1,), (32,), [out])
    lane = np.arange(32)
    # xor 8 within segments of 8 lanes leaves the segment: the lane keeps its own value.
    own_segment_end = (lane & ~7) + 7
    xor8 = np.where((lane ^ 8) <= own_segment_end, lane ^ 8, lane)
    np.testing.assert_array_equal(out, xor8 * 1000 + (lane ^ 4))


def test_match_any_groups_equal_values(emulated_device):
    values = np.array([3, 1, 3, 2] * 8, np.int32)
    out = np.zeros(32, np.uint32)
    emulated_device.launch("match_any", (1,), (32,), [values, out])
    expected = [sum(1 << j for j in range(32) if values[j] == values[i]) for i in range(32)]
    np.testing.assert_array_equal(out, expected)


def test_barriers_and_shuffles_exchange_data(emulated_device):
    out = np.zeros(64, np.int32)
    emulated_device.launch("synced", (1,), (64,), [out])
    expected = 63 - np.arange(64)
    expected[[0, 32]] += [1, 33]  # lanes 0 of each warp add their xor-1 neighbour's index
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("kernel, message", [
    ("bad_divergent_syncthreads", "__syncthreads"),
    ("bad_partial_shfl", "does not take part"),
])
def test_broken_cuda_rules_are_errors(emulated_device, kernel, message):
    with pytest.raises(EmulatorError, match=message):
        emulated_device.launch(kernel, (1,), (64,), [np.zeros(64, np.int32)])


def test_bad_launches_and_arguments_are_errors(emulated_device):
    args = [np.zeros(64, np.int32)]
    with pytest.raises(EmulatorError, match="invalid grid"):
        emulated_device.launch("synced", (0,), (64,), args)
    with pytest.raises(EmulatorError, match="invalid block"):
        emulated_device.launch("synced", (1,), (2048,), args)
    with pytest.raises(EmulatorError, match="the kernel reads int32"):
        emulated_device.launch("synced", (1,), (64,), [np.zeros(64, np.int64)])
    get = emulated_device.get_function
    with pytest.raises(EmulatorError, match="takes int64"):
        get("sum_partials")((1,), (256,), (np.zeros((1, 4)), 4, np.zeros(1)))
    with pytest.raises(EmulatorError, match="not among the instantiations"):
        get("assign_labels", np.float32, 128)


# ----------------------------------------------------------------------------------------
# The shape matrix: every kernel through the real launchers, against NumPy
# ----------------------------------------------------------------------------------------

QUICK = matrix.cases(quick=True, max_cost=20_000)
SMALL = matrix.cases(quick=True, max_cost=3_000)


def _case_id(case):
    n, d, k, dtype, weights, kind = case
    return f"n{n}-d{d}-k{k}-{np.dtype(dtype).name}-{weights}-{kind}"


@pytest.mark.parametrize("case", QUICK, ids=_case_id)
def test_shape_matrix(emulated_device, case):
    failures = matrix.run(emulated_device, [case], report=lambda line: None)
    assert not failures, "\n".join(f"{f['check']}: {f['error']}" for f in failures)


# The reversed order runs by hand (-m slow), for CI's 15 minutes; CI keeps the shuffled
# order, which also departs from the forward one between barriers.
@pytest.mark.parametrize("schedule", [pytest.param("reverse", marks=pytest.mark.slow), "random"])
def test_shape_matrix_in_other_thread_orders(emulated_device, schedule):
    """Threads of a block run in reversed or shuffled order between barriers: a kernel that
    leans on the forward order (a missing barrier) gives other results."""
    failures = matrix.run(emulated_device, SMALL, schedules=(schedule,), report=lambda line: None)
    assert not failures, "\n".join(f"{f['check']} {_case_id(tuple(f[k] for k in ('n', 'd', 'k', 'dtype', 'weights', 'kind')))}: {f['error']}" for f in failures[:10])


def test_shape_matrix_under_asan_and_ubsan(emulated_device):
    """Out-of-bounds reads and writes of the kernels' arguments (NumPy buffers get ASan's
    redzones) and of shared arrays, and undefined behaviour, on the small shapes."""
    _skip_without_sanitizer("asan")
    build.library_path("asan")
    result = _matrix_command("asan", "--max-cost", "3000")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert " 0 failed" in result.stdout


# The matrix's checks, one slow test each under TSan: the whole quick matrix took more
# than 17 minutes on a 2-core VM (gemm, accumulate, kmeanspp and sparse each more than
# one), past what one subprocess may take.


@pytest.mark.slow
def test_tsan_reports_races(emulated_device):
    """Every CUDA thread a ThreadSanitizer fiber: an access pair between two threads with no
    barrier or collective between them is a race. Proof that races are reported."""
    _skip_without_sanitizer("tsan")
    build.library_path("tsan")
    for kernel in ("race_same_warp", "race_other_warp", "race_other_block"):
        code = (f"from cudaemu.device import device; import numpy as np; "
                f"device('tsan').launch('{kernel}', (2,), (64,), [np.zeros(64, np.int32)])")
        environment = dict(os.environ, **build.sanitizer_environment("tsan"),
                           PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
        result = subprocess.run([sys.executable, "-c", code], cwd=TESTS, env=environment,
                                capture_output=True, text=True, timeout=600)
        assert "data race" in result.stderr, (kernel, result.stderr[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("check", matrix.CHECKS)
def test_shape_matrix_under_tsan(emulated_device, check):
    _skip_without_sanitizer("tsan")
    build.library_path("tsan")
    result = _matrix_command("tsan", "--max-cost", "300", "--only", check)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert " 0 failed" in result.stdout


# One order per test: the full matrix took 370 s in one order on a 2-core VM, and the
# three in one subprocess passed its timeout.
@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["forward", "reverse", "random"])
def test_full_shape_matrix_in_each_thread_order(emulated_device, schedule):
    result = _matrix_command("plain", "--full", "--schedule", schedule)
    assert result.returncode == 0, result.stdout[-5000:]
    assert " 0 failed" in result.stdout


# ----------------------------------------------------------------------------------------
# Proof that the harness bites: planted bugs must fail it
# ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(mutants.MUTANTS))
def test_planted_bug_fails_the_matrix(emulated_device, tmp_path, name):
    mutant = mutants.MUTANTS[name]
    if mutant.variant != "plain":
        _skip_without_sanitizer(mutant.variant)
    kernels = mutants.plant(name, _kernels.kernel_dir(), tmp_path / "kernels")
    result = _matrix_command(mutant.variant, "--max-cost", "20000", "--only", mutant.checks,
                             kernels=kernels, env={"CUDAEMU_BUILD": str(tmp_path / "build")})
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"the planted bug {name} went unnoticed:\n{output[-3000:]}"
    # Caught as a wrong result, a sanitizer report, or a crash (a corrupted sort order sends
    # the M-step to read far outside X: a signal, before any line is printed).
    assert "FAIL" in output or "ERROR: AddressSanitizer" in output or result.returncode < 0, (
        result.returncode, output[-3000:])
