#!/usr/bin/env bash
# gpu_check.sh: the GPU checks of gpukmeans, prepared for ONE device call of at most 10 minutes.
#
# Runs, from the repository root, with PYTHONPATH=. (nothing of ours is installed):
#   1. the environment record: GPU model, driver, CuPy version, git commit, date;
#   2. pytest -m gpu: every GPU test on CuPy + NVRTC (the `cuda` side of tests/test_gpu.py,
#      the > 2^31-element `slow` one included, and `gpukmeans compile --device gpu` in
#      tests/test_startup.py), <= 330 s (the first run, an H200, needed about 300: 261 tests,
#      the CPU references' Numba compile included);
#   3. benchmarks/emulated_vs_real.py: the same kernel inputs through the emulated device
#      (tests/cudaemu, built with the device's g++) and the GPU; bitwise agreement per output,
#      and which float32 labels went the other way (each must be a near-tie), <= 60 s;
#   4. benchmarks/bench_gpu.py: MNIST iterations against PyTorch, naive CuPy, flash-kmeans and
#      fastkmeans (--all-peers only), a whole fit, compile times, the fused-vs-GEMM crossover,
#      <= 120 s (about 45 on the H200);
#   5. benchmarks/bench_gpu_sparse.py: the CSR kernels against cuSPARSE's SpMM on a 200,000 x
#      100,000 TF-IDF-like matrix (issue 15's rule), <= 80 s (about 40);
#   6. benchmarks/gpu_loop_overhead.py: is MNIST's Lloyd loop bound by its kernels or by the
#      host's launches (per E-step path), <= 60 s (never run yet; a few seconds expected).
# Everything goes to $OUT (when set) and to benchmarks/results/gpu-check-<date>.log; the
# benchmark also writes benchmarks/results/gpu-<date>.{md,json}. Exit status: the first
# failing step's.
#
# Steps 1-5 took about 7 minutes on the H200 (6 at b6bb7b2), 10 at most: run with
# timeout_s=595, nothing else
# in the call, and copy the files it returns into benchmarks/results/.
# Before the call, here (the device reaches no network and gets only the working tree):
#     mkdir -p out/mnist && cp ../shared/data/mnist/*.gz out/mnist/
#     pip download --no-deps -d out/wheels flash-kmeans==0.3.1 fastkmeans==0.5.0
#     pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d out/wheels \
#         dask distributed     # the device image has no Dask: tests/test_dask.py's GPU test
#     rm out/wheels/{click,cloudpickle,fsspec,jinja2,markupsafe,msgpack,packaging,psutil}-* \
#        out/wheels/{pyyaml,sortedcontainers,toolz,zipp}-*   # the image has these: keep its own
#     run(command="GPUKMEANS_COMMIT=<the sha, literally> bash benchmarks/gpu_check.sh",
#         carry=["out/mnist", "out/wheels"], timeout_s=595)
# A rerun in the same session's leftover device time can narrow the steps:
# GPU_CHECK_TESTS (pytest's paths and -k, default "tests"), GPU_CHECK_PYTEST_S (default 330),
# GPU_CHECK_NO_SPARSE=1 (skips step 5).
# ($GPUKMEANS_DATA, benchmarks/data/ and ../shared/data are looked at for MNIST too.) Without
# MNIST the benchmark runs on a synthetic 70,000 x 784 set and labels every table so; without
# the wheels the two peers are reported as not timed.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls out/wheels/*.whl >/dev/null 2>&1; then  # the GPU peers, carried as wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpukmeans-peers out/wheels/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gpukmeans-peers"
fi
export GPUKMEANS_COMMIT="${GPUKMEANS_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p benchmarks/results
LOG="benchmarks/results/gpu-check-$STAMP.log"
PYTHON="${PYTHON:-python3}"

{
    echo "# gpukmeans gpu_check $STAMP"
    echo "commit: $GPUKMEANS_COMMIT$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
    "$PYTHON" - <<'PY' 2>&1
import platform, cupy, numpy
print("python", platform.python_version(), "| numpy", numpy.__version__, "| cupy", cupy.__version__)
print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "| driver", cupy.cuda.runtime.driverGetVersion())
print("device 0:", cupy.cuda.runtime.getDeviceProperties(0)["name"])
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
except ImportError:
    print("torch absent")
PY
    echo
    echo "## pytest -m gpu"
    # --durations: which tests spend the step's budget (the first real run, 2026-12-04,
    # ran out of it after 200 of 261 tests).
    timeout "${GPU_CHECK_PYTEST_S:-330}" "$PYTHON" -m pytest -m gpu -q -rfEs --tb=short \
        --durations=25 -p no:cacheprovider ${GPU_CHECK_TESTS:-tests} 2>&1
    TEST_STATUS=$?
    echo "pytest exit status: $TEST_STATUS"
    echo
    echo "## emulated device vs GPU (benchmarks/emulated_vs_real.py)"
    timeout 60 "$PYTHON" benchmarks/emulated_vs_real.py --json "benchmarks/results/gpu-emulated-vs-real-$STAMP.json" 2>&1
    EMU_STATUS=$?
    echo "emulated-vs-real exit status: $EMU_STATUS"
    echo
    echo "## benchmarks/bench_gpu.py"
    timeout 120 "$PYTHON" benchmarks/bench_gpu.py 2>&1
    BENCH_STATUS=$?
    echo "bench exit status: $BENCH_STATUS"
    echo
    echo "## benchmarks/bench_gpu_sparse.py"
    SPARSE_STATUS=0
    if [ -z "${GPU_CHECK_NO_SPARSE:-}" ]; then
        timeout 80 "$PYTHON" benchmarks/bench_gpu_sparse.py 2>&1
        SPARSE_STATUS=$?
    else
        echo "not run (GPU_CHECK_NO_SPARSE)"
    fi
    echo "sparse bench exit status: $SPARSE_STATUS"
    echo
    echo "## benchmarks/gpu_loop_overhead.py"
    timeout 60 "$PYTHON" benchmarks/gpu_loop_overhead.py 2>&1
    LOOP_STATUS=$?
    echo "loop overhead exit status: $LOOP_STATUS"
    for status in "$TEST_STATUS" "$EMU_STATUS" "$BENCH_STATUS" "$SPARSE_STATUS" "$LOOP_STATUS"; do
        [ "$status" -ne 0 ] && exit "$status"
    done
    exit 0
} 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$LOG" "$OUT/"
    cp benchmarks/results/gpu-*"$STAMP"* benchmarks/results/gpu-2*.md benchmarks/results/gpu-2*.json "$OUT/" 2>/dev/null || true
fi
exit "$STATUS"
