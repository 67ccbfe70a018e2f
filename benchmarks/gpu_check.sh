#!/usr/bin/env bash
# gpu_check.sh: the GPU checks of gpukmeans, prepared for ONE device call of at most 8 minutes.
#
# Runs, from the repository root, with PYTHONPATH=. (nothing is installed):
#   1. the environment record: GPU model, driver, CuPy version, git commit, date;
#   2. pytest -m gpu (every GPU test, the > 2^31-element `slow` one included), <= 270 s;
#   3. benchmarks/bench_gpu.py (MNIST iterations vs PyTorch and naive CuPy, a whole fit,
#      compile times, the fused-vs-GEMM crossover), <= 170 s.
# Everything goes to $OUT (when set) and to benchmarks/results/gpu-check-<date>.log; the
# benchmark also writes benchmarks/results/gpu-<date>.{md,json}. Exit status: pytest's, or
# the benchmark's when pytest passed.
#
# MNIST: the device machine gets the working tree, not ../shared. Before the call, copy the
# four IDX files into an ignored folder and carry it, e.g.
#     mkdir -p out/mnist && cp ../shared/data/mnist/*.gz out/mnist/
#     run(command="bash benchmarks/gpu_check.sh", carry=["out/mnist"], timeout_s=480)
# ($GPUKMEANS_DATA, benchmarks/data/ and ../shared/data are looked at too.) Without MNIST the
# benchmark runs on a synthetic 70,000 x 784 set and labels every table so.
#
# The git commit: .git may not travel; set GPUKMEANS_COMMIT=$(git rev-parse HEAD) in the
# command line if `git rev-parse` fails on the device.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
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
    timeout 270 "$PYTHON" -m pytest -m gpu -q -rfEs -p no:cacheprovider tests 2>&1
    TEST_STATUS=$?
    echo "pytest exit status: $TEST_STATUS"
    echo
    echo "## benchmarks/bench_gpu.py"
    timeout 170 "$PYTHON" benchmarks/bench_gpu.py 2>&1
    BENCH_STATUS=$?
    echo "bench exit status: $BENCH_STATUS"
    [ "$TEST_STATUS" -ne 0 ] && exit "$TEST_STATUS"
    exit "$BENCH_STATUS"
} 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$LOG" "$OUT/"
    cp benchmarks/results/gpu-*.md benchmarks/results/gpu-*.json "$OUT/" 2>/dev/null || true
fi
exit "$STATUS"
