"""Every kernel compiles, for every dtype and every target architecture, without spilling.

No GPU is needed: NVRTC (pip ``nvidia-cuda-nvrtc``) compiles to cubin for a named
``sm_XX``, which runs ptxas, whose ``-v`` report gives registers and spills. The sources,
options and instantiations come from :mod:`gpukmeans._kernels`, the loader the engine uses.
Also here: the GPU engine's launch shapes and its fused-vs-GEMM rule, pure Python.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import skip_kernel_test
from gpukmeans import _gpu, _kernels

ARCHS = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
NO_SPILL_FILES = ("assign.cu", "update.cu", "reduce.cu")
"""Assignment and reduction kernels must not spill (the issue's requirement)."""

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def _nvrtc():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # no CuPy, or no libnvrtc: nothing to compile with
        skip_kernel_test(f"NVRTC is not usable: {exc!r} (install the nvrtc extra)")
    return nvrtc


def _compile(filename, arch):
    """Compile one source file for one architecture; return {name expression: ptxas stats}."""
    nvrtc = _nvrtc()
    names = _kernels.name_expressions(filename)
    prog = nvrtc.createProgram(_kernels.read_source(filename), filename, [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(prog, name)
        options = [
            *_kernels.compile_options(),
            *_kernels.CUPY_ADDED_OPTIONS,
            f"--gpu-architecture={arch}",  # cubin, so that ptxas runs and reports
            "--ptxas-options=-v",
        ]
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as exc:
            pytest.fail(f"{filename} for {arch} failed to compile: {exc}\n{nvrtc.getProgramLog(prog)}")
        log = nvrtc.getProgramLog(prog)
        lowered = {nvrtc.getLoweredName(prog, name): name for name in names}
    finally:
        nvrtc.destroyProgram(prog)

    stats, current = {}, None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            current = lowered.get(m.group(1), m.group(1))
            stats[current] = {}
        elif current and (m := _SPILL.search(line)):
            stats[current].update(
                stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3))
            )
        elif current and (m := _REGS.search(line)):
            stats[current]["registers"] = int(m.group(1))
    return stats


@pytest.fixture(scope="module")
def ptxas_report():
    """{(file, arch): {name expression: stats}}, compiled once for the module."""
    return {(f, a): _compile(f, a) for f in _kernels.KERNELS for a in ARCHS}


@pytest.mark.parametrize("filename", sorted(_kernels.KERNELS))
@pytest.mark.parametrize("arch", ARCHS)
def test_every_instantiation_compiles(ptxas_report, filename, arch):
    stats = ptxas_report[(filename, arch)]
    assert sorted(stats) == sorted(_kernels.name_expressions(filename))
    for name, s in stats.items():
        assert "registers" in s and "spill_stores" in s, (name, s)


@pytest.mark.parametrize("filename", NO_SPILL_FILES)
@pytest.mark.parametrize("arch", ARCHS)
def test_no_spills(ptxas_report, filename, arch):
    spilling = {
        name: s for name, s in ptxas_report[(filename, arch)].items()
        if s["spill_stores"] or s["spill_loads"]
    }
    assert not spilling, f"{filename} spills registers on {arch}: {spilling}"


def test_print_register_table(ptxas_report, capsys):
    """The register table (shown with ``pytest -s`` or in the summary of ``-rA``)."""
    names = [n for f in _kernels.KERNELS for n in _kernels.name_expressions(f)]
    width = max(map(len, names))
    lines = [f"{'kernel':<{width}}  " + "  ".join(f"{a:>12}" for a in ARCHS)]
    for f in _kernels.KERNELS:
        for name in _kernels.name_expressions(f):
            cells = []
            for a in ARCHS:
                s = ptxas_report[(f, a)][name]
                spill = s["spill_stores"] + s["spill_loads"]
                cells.append(f"{s['registers']:>4} r {spill:>3} sp")
            lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    with capsys.disabled():
        print("\nregisters (r) and spill bytes (sp) per kernel, from ptxas -v:")
        print("\n".join(lines))


# ----------------------------------------------------------------------------------------
# The loader
# ----------------------------------------------------------------------------------------


def test_sources_found_and_line_directive():
    directory = _kernels.kernel_dir()
    for filename in _kernels.KERNELS:
        source = _kernels.read_source(filename)
        first = source.splitlines()[0]
        assert first == f'#line 1 "{(directory / filename).as_posix()}"'
        for kernel in _kernels.KERNELS[filename]:
            assert re.search(rf"\b{kernel}\(", source), (filename, kernel)


def test_every_kernel_file_is_registered():
    on_disk = {p.name for p in _kernels.kernel_dir().glob("*.cu")}
    assert on_disk == set(_kernels.KERNELS)


def test_defines_match_source_defaults():
    """The ``#ifndef`` defaults in the sources equal the values Python passes with -D."""
    text = "".join((_kernels.kernel_dir() / f).read_text() for f in (*_kernels.KERNELS, "common.cuh"))
    for name, value in _kernels.DEFINES.items():
        m = re.search(rf"#ifndef {name}\s+#define {name} (\d+)", text)
        assert m, f"{name} has no #ifndef default"
        assert int(m.group(1)) == value, name


def test_options_carry_includes_and_header_hash():
    options = _kernels.compile_options()
    assert f"-I{_kernels.kernel_dir().as_posix()}" in options
    assert any(o.startswith("-DGPUKMEANS_HEADERS_HASH=0x") for o in options)
    assert not any(o.startswith(("-arch", "--gpu-architecture")) for o in options)


def test_name_expressions():
    assert _kernels.name_expression("assign_labels", np.float32, 16) == "assign_labels<float, 16>"
    assert _kernels.name_expression("inertia_partials", np.float64) == "inertia_partials<double>"
    assert "assign_labels<double, 64>" in _kernels.name_expressions("assign.cu")
    assert _kernels.name_expression("sum_partials") == "sum_partials"
    assert _kernels.source_file_of("accumulate_pieces") == "update.cu"
    with pytest.raises(KeyError):
        _kernels.source_file_of("no_such_kernel")


def test_importing_the_package_does_not_import_cupy():
    import subprocess
    import sys

    code = "import sys, gpukmeans, gpukmeans._gpu, gpukmeans._kernels; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------
# Launch shapes and the GEMM rule
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_samples", [1, 63, 64, 65, 70_000, 2**31 + 5])
def test_assign_labels_launch_covers_every_sample(n_samples):
    (grid,), (block,) = _gpu.assign_labels_launch(n_samples)
    assert block == _gpu.ASSIGN_THREADS
    assert (grid - 1) * _gpu.ASSIGN_TILE_SAMPLES < n_samples <= grid * _gpu.ASSIGN_TILE_SAMPLES
    assert grid <= 2**31 - 1


@pytest.mark.parametrize(
    "n_clusters, tile", [(1, 16), (16, 16), (17, 32), (20, 32), (32, 32), (33, 64), (5000, 64)]
)
def test_assign_labels_tile(n_clusters, tile):
    assert _gpu.assign_labels_tile(n_clusters) == tile
    assert tile in _kernels.ASSIGN_CLUSTER_TILES


@pytest.mark.parametrize("n_samples, n_clusters", [(1, 1), (65, 1000), (70_000, 5000)])
def test_pairwise_distances_launch(n_samples, n_clusters):
    (gx, gy), _ = _gpu.pairwise_distances_launch(n_samples, n_clusters)
    assert gx * _gpu.ASSIGN_TILE_SAMPLES >= n_samples > (gx - 1) * _gpu.ASSIGN_TILE_SAMPLES
    assert gy * _gpu.ASSIGN_TILE_CLUSTERS >= n_clusters > (gy - 1) * _gpu.ASSIGN_TILE_CLUSTERS


@pytest.mark.parametrize("n_rows", [1, 7, 8, 9, 70_001])
def test_warp_per_row_launch(n_rows):
    (grid,), (block,) = _gpu.warp_per_row_launch(n_rows)
    warps = block // 32
    assert block % 32 == 0 and (grid - 1) * warps < n_rows <= grid * warps


@pytest.mark.parametrize("n_rows", [0, 1, 31, 32, 33, 70_001])
def test_pairwise_rows_launch(n_rows):
    """8 lanes (one segment) per row: just enough blocks, none for no rows."""
    (grid,), (block,) = _gpu.pairwise_rows_launch(n_rows)
    segments = block // 8
    assert block % 32 == 0 and (grid - 1) * segments < n_rows <= grid * segments
    assert (grid == 0) == (n_rows == 0)


@pytest.mark.parametrize("n_features", [1, 3, 31, 32, 33, 784, 2048])
def test_feature_launch_whole_warps(n_features):
    (gx, gy), (threads,) = _gpu.feature_launch(10, n_features)
    assert gx == 10 and threads % 32 == 0 and threads <= _gpu.ACCUMULATE_THREADS
    assert (gy - 1) * threads < n_features <= gy * threads


def test_reduction_launches():
    (grid,), (block,) = _gpu.inertia_launch(70_000)
    assert block == _gpu.REDUCE_THREADS and grid * _gpu.INERTIA_ROWS_PER_BLOCK >= 70_000
    (parts, rows), _ = _gpu.weighted_row_sums_launch(7, 70_000)
    assert rows == 7 and (parts - 1) * _gpu.REDUCE_CHUNK < 70_000 <= parts * _gpu.REDUCE_CHUNK
    assert _gpu.sum_partials_launch(3) == ((3,), (_gpu.REDUCE_THREADS,))


def test_grid_y_limits_are_reported():
    with pytest.raises(ValueError, match="n_clusters"):
        _gpu.pairwise_distances_launch(10, (_gpu.MAX_GRID_Y + 1) * _gpu.ASSIGN_TILE_CLUSTERS)
    with pytest.raises(ValueError, match="n_rows"):
        _gpu.weighted_row_sums_launch(_gpu.MAX_GRID_Y + 1, 10)


def _pieces_needed(labels, n_clusters):
    sizes = np.bincount(labels, minlength=n_clusters)
    return int(np.sum(-(-sizes // _gpu.ACCUMULATE_PIECE_SAMPLES)))


@pytest.mark.parametrize("seed", range(5))
def test_max_pieces_bounds_any_labelling(seed):
    """The M-step grid is sized before the labels are known: the bound must always hold."""
    rng = np.random.default_rng(seed)
    for n_samples, n_clusters in [(1, 1), (255, 3), (257, 1), (70_000, 20), (70_000, 5000), (1000, 5000)]:
        for labels in (
            rng.integers(0, n_clusters, n_samples),  # spread out
            np.zeros(n_samples, dtype=np.int64),  # one cluster
            np.minimum(np.arange(n_samples), n_clusters - 1),  # one sample each, then the rest
        ):
            assert _pieces_needed(labels, n_clusters) <= _gpu.max_pieces(n_samples, n_clusters)


def test_counting_sort_plan_matches_a_stable_argsort():
    """A NumPy model of count_labels / cumsum / plan_pieces / order_by_label (the index
    arithmetic of kernels/update.cu) gives a stable sort by label and exact piece offsets."""
    rng = np.random.default_rng(0)
    n_samples, n_clusters = 5000, 7
    labels = rng.integers(0, n_clusters, n_samples).astype(np.int32)
    labels[labels == 3] = 4  # an empty cluster
    R, P = _gpu.sort_range_samples(n_samples, n_clusters), _gpu.ACCUMULATE_PIECE_SAMPLES
    n_ranges = _gpu.n_sort_ranges(n_samples, R)
    assert n_ranges > 1
    counts = np.zeros((n_clusters, n_ranges), np.int32)
    for r in range(n_ranges):
        counts[:, r] = np.bincount(labels[r * R:(r + 1) * R], minlength=n_clusters)
    cursor = np.cumsum(counts.ravel()) - counts.ravel()
    bounds = np.append(cursor[::n_ranges], n_samples)
    piece_counts = np.append(-(-np.diff(bounds) // P), 0)
    piece_offsets = np.cumsum(piece_counts) - piece_counts
    sorted_ids = np.empty(n_samples, np.int64)
    cur = cursor.reshape(n_clusters, n_ranges).copy()
    for i, c in enumerate(labels):
        r = i // R
        sorted_ids[cur[c, r]] = i
        cur[c, r] += 1
    np.testing.assert_array_equal(sorted_ids, np.argsort(labels, kind="stable"))
    assert piece_offsets[-1] <= _gpu.max_pieces(n_samples, n_clusters)
    assert piece_offsets[3] == piece_offsets[4]  # the empty cluster owns no piece


@pytest.mark.parametrize(
    "n_samples, n_clusters", [(1, 1), (70_000, 20), (70_000, 5000), (10**7, 5000), (2**20, 2**20)]
)
def test_sort_range_samples(n_samples, n_clusters):
    r = _gpu.sort_range_samples(n_samples, n_clusters)
    assert r % 32 == 0 and r >= _gpu.SORT_RANGE_SAMPLES
    n_ranges = _gpu.n_sort_ranges(n_samples, r)
    assert (n_ranges - 1) * r < n_samples <= n_ranges * r
    assert n_clusters * n_ranges <= max(_gpu.SORT_MAX_COUNTS, n_clusters)
    if r > _gpu.SORT_RANGE_SAMPLES:  # doubled only when needed
        assert n_clusters * _gpu.n_sort_ranges(n_samples, r // 2) > _gpu.SORT_MAX_COUNTS


@pytest.mark.parametrize("itemsize", [4, 8])
def test_gemm_rule_small_problems_stay_fused(itemsize):
    for n_samples, n_features, n_clusters in [
        (70_000, 1, 1000), (70_000, 3, 5000), (1000, 50, 8), (70_000, 32, 1024),
    ]:
        assert _gpu.choose_assign_path(n_samples, n_features, n_clusters, itemsize) == "fused"


# The real GPU runs' crossover tables (bench_gpu.py on an H200): each path timed alone. The
# rule was fitted to the first; the second ran the fitted rule.
MEASURED_CROSSOVERS = [
    Path(__file__).parent.parent / "benchmarks" / "results" / name
    for name in ("gpu-20261204T111423Z.json", "gpu-20261204T180616Z.json")
]


@pytest.mark.parametrize("table", MEASURED_CROSSOVERS, ids=lambda path: path.stem)
def test_gemm_rule_picks_the_path_measured_faster(table):
    """On every shape of a measured table where one path was more than 10 % faster, the
    rule picks it (MNIST k = 8..32 included: the fused kernel reads X at a fifth of the
    copy rate there, the GEMM path in 0.15-0.17 ms against 0.23-0.28)."""
    rows = json.loads(table.read_text())["crossover"]
    assert len(rows) == 24
    for row in rows:
        fused_s, gemm_s = row["fused_s"], row["gemm_s"]
        if max(fused_s, gemm_s) < 1.1 * min(fused_s, gemm_s):
            continue
        faster = "fused" if fused_s < gemm_s else "gemm"
        assert _gpu.choose_assign_path(70_000, row["d"], row["k"], 4) == faster, row


def test_gemm_rule_large_k_times_d_uses_gemm():
    assert _gpu.choose_assign_path(70_000, 784, 256, 4) == "gemm"
    assert _gpu.choose_assign_path(70_000, 2048, 1000, 4) == "gemm"
    assert _gpu.choose_assign_path(1_000_000, 784, 5000, 8) == "gemm"


def test_gemm_rule_is_monotone_in_whole_tiles_of_clusters():
    """Once the GEMM wins, more clusters (in whole tiles: between them the fused kernel's
    zero padding makes the model a staircase) never send the E-step back to the fused kernel."""
    for n_features in (16, 64, 784, 2048):
        paths = [_gpu.choose_assign_path(70_000, n_features, k, 4) for k in range(64, 4097, 64)]
        first_gemm = paths.index("gemm") if "gemm" in paths else len(paths)
        assert all(p == "gemm" for p in paths[first_gemm:]), n_features


def test_gemm_chunk_rows():
    assert _gpu.gemm_chunk_rows(70_000, 256, 4) == 70_000
    rows = _gpu.gemm_chunk_rows(10**8, 5000, 4)
    assert rows * 5000 * 4 <= _gpu.GEMM_CHUNK_BYTES and rows >= 1
    assert _gpu.gemm_chunk_rows(10, 2**40, 8) == 1


# ----------------------------------------------------------------------------------------
# Residency
# ----------------------------------------------------------------------------------------


class _CudaLike:
    __cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False), "version": 3}


class _RefusesExport:
    """As a PyTorch CUDA tensor that requires grad: on the device, raises RuntimeError."""

    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("requires grad")


class _HostTensorLike:
    """As a PyTorch CPU tensor: raises AttributeError for the interface."""

    @property
    def __cuda_array_interface__(self):
        raise AttributeError("not a CUDA tensor")


def test_is_device_array():
    assert not _gpu.is_device_array(np.zeros(3))
    assert not _gpu.is_device_array([1.0, 2.0])
    assert not _gpu.is_device_array(_HostTensorLike())
    assert _gpu.is_device_array(_CudaLike())
    assert _gpu.is_device_array(_RefusesExport())


def test_is_device_array_does_not_import_cupy():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from gpukmeans._gpu import is_device_array; "
        "assert not is_device_array(np.ones(2)); print('cupy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_engine_rejects_layouts_the_kernels_would_misread():
    X = np.zeros((4, 3), np.float32)
    _gpu._check_operands(X, (np.zeros((2, 3), np.float32),), np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        _gpu._check_operands(X, (np.zeros((2, 3), np.float64),))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        _gpu._check_operands(X, (np.zeros((3, 2), np.float32).T,))
    with pytest.raises(ValueError, match="labels"):
        _gpu._check_operands(X, (), np.zeros(4, np.int64))
