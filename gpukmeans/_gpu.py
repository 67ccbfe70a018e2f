"""The GPU engine: CUDA kernels from ``kernels/``, launched on a backend.

:class:`GpuKernels` holds one small launcher per kernel, named as the kernel
(``assign_labels`` launches ``assign_labels<T, TILE>``) and taking every output as an
argument, and the engine functions (:meth:`~GpuKernels.lloyd_iter`,
:meth:`~GpuKernels.e_step`, :meth:`~GpuKernels.inertia`, ...) that chain launchers and own
their temporaries. Launch shapes come from small pure functions of the sizes
(``*_launch``), testable without a GPU.

It takes its array module and its kernel loader from a :class:`gpukmeans._backend.Backend`:
CuPy and NVRTC on a GPU; NumPy and the same kernels compiled for the CPU in the test
suite's emulated device (``tests/cudaemu``). Nothing else differs between the two.

Every launcher only enqueues work on the current stream: no host synchronisation, and no
kernel argument left to CuPy's guessing (sizes are ``np.int64``). Temporaries come from
CuPy's memory pool and have the same sizes every iteration, so the pool serves them from
the blocks the previous iteration freed: device memory does not grow with iterations.

Residency helpers: :func:`is_device_array` (never imports CuPy) and :func:`as_cupy`.
A PyTorch CUDA tensor becomes a CuPy array without a copy through
``__cuda_array_interface__`` (``cupy.asarray(tensor.detach())``) or DLPack
(``cupy.from_dlpack(tensor.detach())``); both share the tensor's memory.

CuPy is never imported at module import: the estimator imports this module for
:func:`is_device_array` on machines without CuPy.
"""

import sys

import numpy as np

from ._backend import current_backend
from ._engine import Engine, StatelessRun, by_dot_products
from ._kernels import ASSIGN_CLUSTER_TILES, DEFINES

# Launch geometry: the tunables compiled into the kernels (gpukmeans._kernels.DEFINES).
WARP_SIZE = 32
ASSIGN_TILE_SAMPLES = DEFINES["ASSIGN_TILE_SAMPLES"]
ASSIGN_TILE_CLUSTERS = DEFINES["ASSIGN_TILE_CLUSTERS"]
ASSIGN_THREADS = DEFINES["ASSIGN_THREADS"]
WARPS_PER_BLOCK = DEFINES["WARPS_PER_BLOCK"]
REDUCE_THREADS = DEFINES["REDUCE_THREADS"]
REDUCE_CHUNK = DEFINES["REDUCE_THREADS"] * DEFINES["REDUCE_ITEMS"]
INERTIA_ROWS_PER_BLOCK = DEFINES["INERTIA_ROWS_PER_BLOCK"]
SORT_RANGE_SAMPLES = 256
"""Samples per warp in the counting sort by label, at least (a multiple of 32)."""
SORT_MAX_COUNTS = 2**20
"""The counts matrix (n_clusters x n_ranges, int32) is kept under this many entries."""
ACCUMULATE_PIECE_SAMPLES = DEFINES["ACCUMULATE_PIECE_SAMPLES"]
ACCUMULATE_THREADS = DEFINES["ACCUMULATE_THREADS"]

PAIRWISE_ROWS_PER_WARP = WARP_SIZE // 8
"""Samples per warp of ``assigned_distances``: a segment of 8 lanes each, NumPy's 8 running
sums (reduce.cu); not a tunable."""

MAX_GRID_Y = 65535
"""CUDA's limit on gridDim.y (gridDim.x goes to 2^31 - 1)."""


# ----------------------------------------------------------------------------------------
# Residency
# ----------------------------------------------------------------------------------------


def is_device_array(x):
    """True when ``x`` lives in GPU memory: a ``cupy.ndarray`` or any object exporting
    ``__cuda_array_interface__`` (PyTorch CUDA tensors, Numba device arrays, ...).

    Never imports CuPy: when it is not imported yet, no ``cupy.ndarray`` can exist.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return True
    try:
        getattr(x, "__cuda_array_interface__")
    except AttributeError:  # host arrays; PyTorch raises this for CPU tensors
        return False
    except Exception:  # e.g. a CUDA tensor that requires grad: on the device, not exportable
        return True
    return True


def as_cupy(x):
    """``x`` as a ``cupy.ndarray`` sharing its device memory (no copy).

    Accepts CuPy arrays, ``__cuda_array_interface__`` exporters and DLPack exporters.
    A PyTorch tensor that requires grad must be detached first (``tensor.detach()``).
    """
    import cupy

    if isinstance(x, cupy.ndarray):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return cupy.asarray(x)
    return cupy.from_dlpack(x)


# ----------------------------------------------------------------------------------------
# Launch shapes (pure functions of the sizes)
# ----------------------------------------------------------------------------------------


def _ceil_div(a, b):
    return -(-a // b)


def assign_labels_launch(n_samples):
    """``(grid, block)`` of ``assign_labels``: one block per tile of samples."""
    return (_ceil_div(n_samples, ASSIGN_TILE_SAMPLES),), (ASSIGN_THREADS,)


def assign_labels_tile(n_clusters):
    """Centers per tile of ``assign_labels``: the smallest tile that holds ``n_clusters``,
    else the largest (fewer products wasted on zero padding when k is small)."""
    for tile in ASSIGN_CLUSTER_TILES:
        if n_clusters <= tile:
            return tile
    return ASSIGN_CLUSTER_TILES[-1]


def pairwise_distances_launch(n_samples, n_clusters):
    """``(grid, block)`` of ``pairwise_distances``: one block per (sample tile, center tile)."""
    grid_y = _ceil_div(n_clusters, ASSIGN_TILE_CLUSTERS)
    if grid_y > MAX_GRID_Y:
        raise ValueError(f"n_clusters={n_clusters} is too large for pairwise_distances.")
    return (_ceil_div(n_samples, ASSIGN_TILE_SAMPLES), grid_y), (ASSIGN_THREADS,)


def warp_per_row_launch(n_rows):
    """``(grid, block)`` of the warp-per-row kernels (row norms, argmin epilogue,
    k-means++ distances; label counting and ordering, one warp per range)."""
    return (max(1, _ceil_div(n_rows, WARPS_PER_BLOCK)),), (WARPS_PER_BLOCK * WARP_SIZE,)


def pairwise_rows_launch(n_rows):
    """``(grid, block)`` of ``assigned_distances``: 8 lanes per row (no block for no rows)."""
    rows_per_block = WARPS_PER_BLOCK * PAIRWISE_ROWS_PER_WARP
    return (_ceil_div(n_rows, rows_per_block),), (WARPS_PER_BLOCK * WARP_SIZE,)


def sort_range_samples(n_samples, n_clusters):
    """Samples per range (one warp each) of the counting sort: ``SORT_RANGE_SAMPLES``, doubled
    while the ``(n_clusters, n_ranges)`` counts would pass ``SORT_MAX_COUNTS`` entries. Short
    ranges give many warps (the walk is latency-bound); the counts must stay small to zero
    and scan."""
    range_samples = SORT_RANGE_SAMPLES
    while n_clusters * _ceil_div(n_samples, range_samples) > SORT_MAX_COUNTS and range_samples < n_samples:
        range_samples *= 2
    return range_samples


def n_sort_ranges(n_samples, range_samples):
    """How many ranges of ``range_samples`` samples the counting sort walks."""
    return _ceil_div(n_samples, range_samples)


def max_pieces(n_samples, n_clusters):
    """An upper bound on the pieces of the M-step, known without reading the labels.

    Cluster ``c`` of size ``m_c`` has ``ceil(m_c / P)`` pieces, at most ``m_c // P + 1`` when
    ``m_c > 0``; summed over the non-empty clusters this is at most
    ``n_samples // P + min(n_clusters, n_samples)``.
    """
    return n_samples // ACCUMULATE_PIECE_SAMPLES + min(n_clusters, n_samples)


def feature_launch(n_blocks, n_features):
    """``(grid, block)`` of ``accumulate_pieces`` / ``accumulate_centers``: ``n_blocks``
    pieces or clusters along x, features along y, one thread per feature (whole warps)."""
    threads = min(ACCUMULATE_THREADS, WARP_SIZE * _ceil_div(n_features, WARP_SIZE))
    grid_y = _ceil_div(n_features, threads)
    if grid_y > MAX_GRID_Y:
        raise ValueError(f"n_features={n_features} is too large for the M-step kernels.")
    return (max(1, n_blocks), grid_y), (threads,)


def inertia_launch(n_samples):
    """``(grid, block)`` of ``inertia_partials``; the grid size is the number of partials."""
    return (max(1, _ceil_div(n_samples, INERTIA_ROWS_PER_BLOCK)),), (REDUCE_THREADS,)


def weighted_row_sums_launch(n_rows, n_cols):
    """``(grid, block)`` of ``weighted_row_sums``: parts of ``REDUCE_CHUNK`` columns x rows."""
    if n_rows > MAX_GRID_Y:
        raise ValueError(f"n_rows={n_rows} is too large for weighted_row_sums.")
    return (max(1, _ceil_div(n_cols, REDUCE_CHUNK)), n_rows), (REDUCE_THREADS,)


def sum_partials_launch(n_rows):
    """``(grid, block)`` of ``sum_partials``: one block per row."""
    return (n_rows,), (REDUCE_THREADS,)


# ----------------------------------------------------------------------------------------
# Fused kernel or cuBLAS GEMM for the E-step
# ----------------------------------------------------------------------------------------

# Measured on an NVIDIA H200 (benchmarks/results/gpu-20261204T111423Z.md: float32,
# n = 70,000, d in {32, 128, 784}, k from 8 to 1024, each path timed alone with CUDA
# events). Each path is modelled as a fixed cost plus the larger of reading X and its
# multiply-adds; the constants are those runs' rates, and the rule then picks the faster
# path on every shape measured where the two differ by more than 10 % (a test reads that
# file). The fused kernel reads X at only ~0.9 TB/s (22 % of the copy rate): where X's
# read dominates (large d, small k) cuBLAS's path wins despite its fixed cost.
GEMM_CHUNK_BYTES = 256 * 2**20
"""The GEMM path's (rows, n_clusters) product buffer is at most this large."""
FUSED_FIXED_S = 12e-6
"""Launch and tail of the fused kernel (d = 32, k = 8 took 22 us for 9 MB of X)."""
FUSED_READ_BYTES_PER_S = 0.89e12
"""X read by the fused kernel (d = 784, k = 8 to 32: 219 MB in 0.24-0.28 ms)."""
FUSED_FLOPS_PER_S = {4: 19e12, 8: 19e12 * 34 / 67}
"""Its multiply-adds (2 flops each, zero-padded center tiles included): 18-19 TFLOP/s at
d = 128 and 784, k >= 64. float64 was not measured: scaled by the datasheet's FP64/FP32
CUDA-core ratio (34 / 67 TFLOP/s)."""
GEMM_FIXED_S = 115e-6
"""The GEMM path's fixed cost (centers' norms, cuBLAS's set-up, the epilogue's launch):
its E-step never took less than 0.12 ms, even at d = 32, k = 8."""
GEMM_BYTES_PER_S = 4.0e12
"""X read by cuBLAS and the products written and read back: about the copy rate (4.1 TB/s)."""
GEMM_FLOPS_PER_S = {4: 48e12, 8: 48e12}
"""cuBLAS's SGEMM on these thin shapes (d = 784, k = 512 to 1024: 45-50 TFLOP/s; the
8192^3 SGEMM 50.5). float64 (DGEMM on the FP64 tensor cores, 67 TFLOP/s by the datasheet)
was not measured."""


def assign_path_costs(n_samples, n_features, n_clusters, itemsize):
    """Modelled E-step seconds of the fused kernel and of the GEMM path, from the rates
    measured on an H200 (see the constants above; float64's are scaled, not measured).

    fused: fixed + max(read X, 2 n k' d flops), k' being k rounded up to whole tiles of
           centers (the padding is computed too);
    gemm:  fixed + max(read X, 2 n k d flops) + write and read the n x k products (the
           measured d = 784, k = 1024 took two chunks of products, within the model).
    """
    x_bytes = n_samples * n_features * itemsize
    flops = 2.0 * n_samples * n_clusters * n_features
    tile = assign_labels_tile(n_clusters)
    padded_flops = flops * (_ceil_div(n_clusters, tile) * tile) / n_clusters
    fused = FUSED_FIXED_S + max(x_bytes / FUSED_READ_BYTES_PER_S,
                                padded_flops / FUSED_FLOPS_PER_S[itemsize])
    gemm = (GEMM_FIXED_S
            + max(x_bytes / GEMM_BYTES_PER_S, flops / GEMM_FLOPS_PER_S[itemsize])
            + 2 * n_samples * n_clusters * itemsize / GEMM_BYTES_PER_S)
    return fused, gemm


def choose_assign_path(n_samples, n_features, n_clusters, itemsize):
    """``"gemm"`` when the cuBLAS path is modelled faster than the fused kernel, else
    ``"fused"``; the one place the choice is made (see :func:`assign_path_costs`)."""
    fused, gemm = assign_path_costs(n_samples, n_features, n_clusters, itemsize)
    return "gemm" if gemm < fused else "fused"


def gemm_chunk_rows(n_samples, n_clusters, itemsize):
    """Rows of X per GEMM so that the product buffer stays within ``GEMM_CHUNK_BYTES``."""
    return max(1, min(n_samples, GEMM_CHUNK_BYTES // (n_clusters * itemsize)))


# ----------------------------------------------------------------------------------------
# Launchers and engine functions, on a backend
# ----------------------------------------------------------------------------------------


def _check_operands(X, floats=(), labels=None):
    """Kernels index raw pointers: an array of the wrong dtype or layout would be read as
    garbage, silently. One cheap check per engine call (attributes only, no device work)."""
    for a in (X, *floats):
        if a.dtype != X.dtype or not a.flags.c_contiguous:
            raise ValueError(
                f"the GPU engine needs C-contiguous {X.dtype} arrays; got {a.dtype}, "
                f"C-contiguous={a.flags.c_contiguous}, shape {a.shape}."
            )
    if labels is not None and (labels.dtype != np.int32 or not labels.flags.c_contiguous):
        raise ValueError(f"labels must be C-contiguous int32, got {labels.dtype}.")


class GpuKernels:
    """The GPU engine's launchers and engine functions, on one :class:`~gpukmeans._backend.Backend`.

    One small launcher per kernel, named as the kernel (``assign_labels`` launches
    ``assign_labels<T, TILE>``), taking every output as an argument. Prior validation of
    data is assumed: C-contiguous arrays of ``backend.xp`` of the dtypes each kernel header
    states. The engine functions (:meth:`lloyd_iter`, :meth:`e_step`, :meth:`inertia`, ...)
    chain launchers and own their temporaries.

    The backend supplies only the array module (``self.xp``) and the kernel loader: the
    launch shapes, template choices and argument lists are the same on a GPU and on the
    test suite's emulated device.
    """

    def __init__(self, backend):
        self.backend = backend
        self.xp = backend.xp

    def _launch(self, grid, block, kernel, *template, args):
        """Enqueue ``kernel<template...>`` with explicit sizes. A grid with no block is
        no work: it is never launched (CUDA rejects it), so empty inputs are harmless."""
        if min(grid) == 0:
            return
        self.backend.get_function(kernel, *template)(grid, block, args)

    # -- launchers -------------------------------------------------------------------

    def assign_labels(self, X, centers, labels):
        """Launch ``assign_labels<T, TILE>``: fused distances + argmin (OUT ``labels``)."""
        n_samples, n_features = X.shape
        grid, block = assign_labels_launch(n_samples)
        self._launch(
            grid, block, "assign_labels", X.dtype, assign_labels_tile(centers.shape[0]),
            args=(X, centers, np.int64(n_samples), np.int64(n_features),
                  np.int64(centers.shape[0]), labels),
        )

    def pairwise_distances(self, X, centers, out):
        """Launch ``pairwise_distances<T>`` (OUT ``out``, ``(n_samples, n_clusters)``)."""
        n_samples, n_features = X.shape
        n_clusters = centers.shape[0]
        grid, block = pairwise_distances_launch(n_samples, n_clusters)
        self._launch(
            grid, block, "pairwise_distances", X.dtype,
            args=(X, centers, np.int64(n_samples), np.int64(n_features), np.int64(n_clusters),
                  out),
        )

    def row_squared_norms(self, A, out):
        """Launch ``row_squared_norms<T>`` (OUT ``out[r] = ||A[r]||^2``, float64)."""
        n_rows, n_features = A.shape
        grid, block = warp_per_row_launch(n_rows)
        self._launch(grid, block, "row_squared_norms", A.dtype,
                     args=(A, np.int64(n_rows), np.int64(n_features), out))

    def argmin_from_dots(self, dots, center_sq_norms, labels):
        """Launch ``argmin_from_dots<T>``, the GEMM path's epilogue (OUT ``labels``)."""
        n_rows, n_clusters = dots.shape
        grid, block = warp_per_row_launch(n_rows)
        self._launch(grid, block, "argmin_from_dots", dots.dtype,
                     args=(dots, center_sq_norms, np.int64(n_rows), np.int64(n_clusters), labels))

    def count_labels(self, labels, range_samples, counts):
        """Launch ``count_labels`` (INOUT ``counts``, ``(n_clusters, n_ranges)`` int32, zeroed)."""
        n_clusters, n_ranges = counts.shape
        grid, block = warp_per_row_launch(n_ranges)
        self._launch(
            grid, block, "count_labels",
            args=(labels, np.int64(labels.shape[0]), np.int64(range_samples), np.int64(n_ranges),
                  np.int64(n_clusters), counts),
        )

    def plan_pieces(self, cursor, counts, bounds, piece_counts):
        """Launch ``plan_pieces`` (OUT ``bounds``, ``piece_counts``, both ``(n_clusters + 1,)``)."""
        n_clusters, n_ranges = counts.shape
        grid = (_ceil_div(n_clusters + 1, REDUCE_THREADS),)
        self._launch(
            grid, (REDUCE_THREADS,), "plan_pieces",
            args=(cursor, counts, np.int64(n_ranges), np.int64(n_clusters), bounds,
                  piece_counts),
        )

    def order_by_label(self, labels, range_samples, cursor, sorted_ids):
        """Launch ``order_by_label`` (INOUT ``cursor``; OUT ``sorted_ids`` int64)."""
        n_clusters, n_ranges = cursor.shape
        grid, block = warp_per_row_launch(n_ranges)
        self._launch(
            grid, block, "order_by_label",
            args=(labels, np.int64(labels.shape[0]), np.int64(range_samples), np.int64(n_ranges),
                  np.int64(n_clusters), cursor, sorted_ids),
        )

    def accumulate_pieces(self, X, sample_weight, sorted_ids, bounds, piece_offsets, piece_sums,
                          piece_weights):
        """Launch ``accumulate_pieces<T>`` (OUT ``piece_sums``, ``piece_weights``, float64)."""
        n_features = X.shape[1]
        n_clusters = bounds.shape[0] - 1
        grid, block = feature_launch(piece_sums.shape[0], n_features)
        self._launch(
            grid, block, "accumulate_pieces", X.dtype,
            args=(X, sample_weight, sorted_ids, bounds, piece_offsets, np.int64(n_features),
                  np.int64(n_clusters), piece_sums, piece_weights),
        )

    def accumulate_centers(self, piece_sums, piece_weights, piece_offsets, sums,
                           weight_in_clusters):
        """Launch ``accumulate_centers`` (OUT ``sums``, ``weight_in_clusters``, float64)."""
        n_clusters, n_features = sums.shape
        grid, block = feature_launch(n_clusters, n_features)
        self._launch(
            grid, block, "accumulate_centers",
            args=(piece_sums, piece_weights, piece_offsets, np.int64(n_features), sums,
                  weight_in_clusters),
        )

    def inertia_partials(self, X, sample_weight, centers, labels, partials):
        """Launch ``inertia_partials<T>`` (OUT ``partials``, one float64 per block)."""
        n_samples, n_features = X.shape
        grid, block = inertia_launch(n_samples)
        self._launch(
            grid, block, "inertia_partials", X.dtype,
            args=(X, sample_weight, centers, labels, np.int64(n_samples), np.int64(n_features),
                  np.int64(centers.shape[0]), partials),
        )

    def assigned_distances(self, X, centers, labels, out):
        """Launch ``assigned_distances<T>`` (OUT ``out[i] = ||x_i - centers[labels[i]]||^2``,
        float64, summed as NumPy's ``.sum(axis=1)``)."""
        n_samples, n_features = X.shape
        grid, block = pairwise_rows_launch(n_samples)
        self._launch(
            grid, block, "assigned_distances", X.dtype,
            args=(X, centers, labels, np.int64(n_samples), np.int64(n_features),
                  np.int64(centers.shape[0]), out),
        )

    def weighted_row_sums(self, values, weights, partials):
        """Launch ``weighted_row_sums<T>`` (OUT ``partials``, ``(n_rows, n_parts)`` float64)."""
        n_rows, n_cols = values.shape
        grid, block = weighted_row_sums_launch(n_rows, n_cols)
        self._launch(grid, block, "weighted_row_sums", values.dtype,
                     args=(values, weights, np.int64(n_rows), np.int64(n_cols), partials))

    def sum_partials(self, partials, out):
        """Launch ``sum_partials`` (OUT ``out[r] = sum(partials[r])``, in a fixed order)."""
        n_rows, n_parts = partials.shape
        grid, block = sum_partials_launch(n_rows)
        self._launch(grid, block, "sum_partials", args=(partials, np.int64(n_parts), out))

    def kmeanspp_distances(self, X, candidate_ids, closest_dist_sq, distance_to_candidates):
        """Launch ``kmeanspp_distances<T>`` (OUT ``distance_to_candidates``,
        ``(n_candidates, n_samples)``)."""
        n_samples, n_features = X.shape
        grid, block = warp_per_row_launch(n_samples)
        self._launch(
            grid, block, "kmeanspp_distances", X.dtype,
            args=(X, candidate_ids, closest_dist_sq, np.int64(n_samples), np.int64(n_features),
                  np.int64(candidate_ids.shape[0]), distance_to_candidates),
        )

    # -- engine functions (the contract in gpukmeans._engine) -------------------------

    def assign_labels_gemm(self, X, centers, labels, unit_centers=False):
        """The E-step through a GEMM (cuBLAS, by ``xp.matmul``) in row chunks, then the
        ``argmin_from_dots`` epilogue. Same output as :meth:`assign_labels` (up to the
        rounding of the dot products, which cuBLAS sums in its own order).

        ``unit_centers`` (cosine fits): ``||c||^2`` is taken as exactly 1, so that the
        centers are ordered by dot product alone and an exact tie in ``x.c`` (a row that
        shares no feature with any center) goes to the lowest index, not to the center
        whose norm rounded lowest.

        cuBLAS is deterministic for a given GPU, library version and shape (CuPy enables no
        atomics mode), so fits stay bitwise reproducible.
        """
        xp = self.xp
        n_samples = X.shape[0]
        n_clusters = centers.shape[0]
        if unit_centers:
            center_sq_norms = xp.ones(n_clusters, dtype=xp.float64)
        else:
            center_sq_norms = xp.empty(n_clusters, dtype=xp.float64)
            self.row_squared_norms(centers, center_sq_norms)
        chunk = gemm_chunk_rows(n_samples, n_clusters, X.dtype.itemsize)
        dots = xp.empty((chunk, n_clusters), dtype=X.dtype)
        for start in range(0, n_samples, chunk):
            stop = min(start + chunk, n_samples)
            block = dots[: stop - start]
            xp.matmul(X[start:stop], centers.T, out=block)  # (rows, n_clusters)
            self.argmin_from_dots(block, center_sq_norms, labels[start:stop])

    def e_step(self, X, centers, labels, unit_centers=False, path_samples=None):
        """Engine ``assign_labels``: the fused kernel or the GEMM path, as
        :func:`choose_assign_path` decides from the shapes alone; always the GEMM path
        for ``unit_centers`` (cosine fits), whose epilogue takes their norms as given
        (see :meth:`assign_labels_gemm`). ``path_samples``: the number of samples the
        path is chosen for, by default X's (a block of a streamed X takes the whole X's
        path: :mod:`gpukmeans._gpu_streaming`)."""
        _check_operands(X, (centers,), labels)
        n_samples, n_features = X.shape
        if path_samples is not None:
            n_samples = path_samples
        path = choose_assign_path(n_samples, n_features, centers.shape[0], X.dtype.itemsize)
        if path == "gemm" or unit_centers:
            self.assign_labels_gemm(X, centers, labels, unit_centers)
        else:
            self.assign_labels(X, centers, labels)

    def accumulate(self, X, sample_weight, labels, n_clusters):
        """Per-cluster ``sum_i w_i x_i`` and ``sum_i w_i`` in float64, in a fixed order.

        Counting sort of the samples by label (stable), then fixed-size pieces of each
        cluster summed sequentially and added in piece order; see ``kernels/update.cu``.
        A label outside ``[0, n_clusters)`` is not counted (the kernels never trust labels).
        """
        xp = self.xp
        n_samples, n_features = X.shape
        range_samples = sort_range_samples(n_samples, n_clusters)
        n_ranges = n_sort_ranges(n_samples, range_samples)
        counts = xp.zeros((n_clusters, max(1, n_ranges)), dtype=xp.int32)
        self.count_labels(labels, range_samples, counts)
        flat_counts = counts.ravel()
        cursor = xp.cumsum(flat_counts, dtype=xp.int64)
        cursor -= flat_counts  # exclusive prefix sum: where (cluster, range) starts
        cursor = cursor.reshape(counts.shape)
        bounds = xp.empty(n_clusters + 1, dtype=xp.int64)
        piece_counts = xp.empty(n_clusters + 1, dtype=xp.int64)
        self.plan_pieces(cursor, counts, bounds, piece_counts)
        piece_offsets = xp.cumsum(piece_counts)
        piece_offsets -= piece_counts  # exclusive; piece_offsets[n_clusters] = total pieces
        sorted_ids = xp.empty(n_samples, dtype=xp.int64)
        self.order_by_label(labels, range_samples, cursor, sorted_ids)

        n_pieces = max_pieces(n_samples, n_clusters)
        piece_sums = xp.empty((n_pieces, n_features), dtype=xp.float64)
        piece_weights = xp.empty(n_pieces, dtype=xp.float64)
        self.accumulate_pieces(X, sample_weight, sorted_ids, bounds, piece_offsets, piece_sums,
                               piece_weights)
        sums = xp.empty((n_clusters, n_features), dtype=xp.float64)
        weight_in_clusters = xp.empty(n_clusters, dtype=xp.float64)
        self.accumulate_centers(piece_sums, piece_weights, piece_offsets, sums,
                                weight_in_clusters)
        return sums, weight_in_clusters

    def lloyd_iter(self, X, sample_weight, centers_old, labels, unit_centers=False):
        """Engine ``lloyd_iter``: the E-step, then the M-step accumulation."""
        _check_operands(X, (sample_weight,))
        self.e_step(X, centers_old, labels, unit_centers)
        return self.accumulate(X, sample_weight, labels, centers_old.shape[0])

    def start_lloyd(self, X, x_squared_norms, sample_weight, n_clusters, unit_centers=False):
        """Engine ``start_lloyd``: the GPU step keeps no state between iterations."""
        return StatelessRun(X, sample_weight, by_dot_products(self.lloyd_iter, unit_centers),
                            by_dot_products(self.e_step, unit_centers), self.inertia)

    def inertia(self, X, sample_weight, centers, labels):
        """Engine ``inertia``: ``sum_i w_i ||x_i - centers[labels[i]]||^2`` (float64 0-d array)."""
        xp = self.xp
        _check_operands(X, (sample_weight, centers), labels)
        grid, _ = inertia_launch(X.shape[0])
        partials = xp.empty(grid[0], dtype=xp.float64)
        self.inertia_partials(X, sample_weight, centers, labels, partials)
        out = xp.empty(1, dtype=xp.float64)
        self.sum_partials(partials.reshape(1, -1), out)
        return out.reshape(())

    def squared_distances_to_centers(self, X, centers, labels):
        """Engine ``assigned_distances``: ``||x_i - centers[labels[i]]||^2``, float64
        ``(n_samples,)``, each row summed as NumPy's ``.sum(axis=1)``, bit for bit."""
        _check_operands(X, (centers,), labels)
        out = self.xp.empty(X.shape[0], dtype=self.xp.float64)
        self.assigned_distances(X, centers, labels, out)
        return out

    def row_norms(self, X):
        """Engine ``row_norms``: ``||x_i||^2`` in float64, ``(n_samples,)``."""
        _check_operands(X)
        out = self.xp.empty(X.shape[0], dtype=self.xp.float64)
        self.row_squared_norms(X, out)
        return out

    def centered(self, X, X_mean, x_squared_norms=None):
        """Engine ``centered``: always centres (the float32 labels come from the float32
        ``||c||^2 - 2 x.c``, more accurate on centred data); the array module's elementwise
        kernel is already parallel."""
        X_centered = X - X_mean
        return X_centered, self.row_norms(X_centered), True

    def transform_distances(self, X, centers):
        """Engine ``pairwise_distances``: ``(n_samples, n_clusters)`` euclidean distances.

        Summed from the differences in float64 (never negative, exact 0 on a center), which
        is at least as accurate as the contract's norm expansion combined in float64.
        """
        _check_operands(X, (centers,))
        out = self.xp.empty((X.shape[0], centers.shape[0]), dtype=X.dtype)
        self.pairwise_distances(X, centers, out)
        return out

    def kmeanspp_candidates(self, X, x_squared_norms, sample_weight, candidate_ids,
                            closest_dist_sq):
        """Engine ``kmeanspp_candidates``: distances to the candidates and their potentials.

        The distances are summed from differences in float64, so ``x_squared_norms`` (part
        of the contract, for engines that use the norm expansion) is not needed here.
        """
        xp = self.xp
        _check_operands(X, (sample_weight, closest_dist_sq))
        candidate_ids = xp.ascontiguousarray(xp.asarray(candidate_ids, dtype=xp.int64))
        n_candidates = candidate_ids.shape[0]
        n_samples = X.shape[0]
        distance_to_candidates = xp.empty((n_candidates, n_samples), dtype=X.dtype)
        self.kmeanspp_distances(X, candidate_ids, closest_dist_sq, distance_to_candidates)
        return distance_to_candidates, self.potentials(distance_to_candidates, sample_weight)

    def potentials(self, distance_to_candidates, sample_weight):
        """``distance_to_candidates @ sample_weight`` in float64, in a fixed order:
        ``(n_candidates,)``."""
        xp = self.xp
        n_candidates, n_samples = distance_to_candidates.shape
        grid, _ = weighted_row_sums_launch(n_candidates, n_samples)
        partials = xp.empty((n_candidates, grid[0]), dtype=xp.float64)
        self.weighted_row_sums(distance_to_candidates, sample_weight, partials)
        candidates_pot = xp.empty(n_candidates, dtype=xp.float64)
        self.sum_partials(partials, candidates_pot)
        return candidates_pot

    def engine(self, unit_centers=False):
        """This backend's :class:`~gpukmeans._engine.Engine`; ``unit_centers`` (cosine fits
        and their inference): see :meth:`assign_labels_gemm`."""
        return Engine(
            name="gpu",
            xp=self.xp,
            lloyd_iter=by_dot_products(self.lloyd_iter, unit_centers),
            start_lloyd=by_dot_products(self.start_lloyd, unit_centers),
            assign_labels=by_dot_products(self.e_step, unit_centers),
            assigned_distances=self.squared_distances_to_centers,
            inertia=self.inertia,
            pairwise_distances=self.transform_distances,
            row_norms=self.row_norms,
            centered=self.centered,
            kmeanspp_candidates=self.kmeanspp_candidates,
        )


def make_engine(backend=None, unit_centers=False):
    """The GPU :class:`~gpukmeans._engine.Engine` on ``backend`` (default: the one
    :func:`gpukmeans._backend.current_backend` gives, CuPy and NVRTC outside tests);
    ``unit_centers``: see :meth:`GpuKernels.engine`."""
    return GpuKernels(backend if backend is not None else current_backend()).engine(
        unit_centers)
