"""The CPU engine (Numba): its :class:`gpukmeans._engine.Engine`, assembled from the
kernel modules, each of which holds one idea:

- :mod:`gpukmeans._cpu_runtime`: Numba's cache and threads, BLAS held to one thread;
- :mod:`gpukmeans._cpu_nearest`: dot products without BLAS and the exact nearest center;
- :mod:`gpukmeans._cpu_lloyd`: the plain Lloyd step (E-step and M-step sums);
- :mod:`gpukmeans._cpu_bounds`: float32 runs with Hamerly's or Elkan's bounds;
- :mod:`gpukmeans._cpu_yinyang`: float32 runs with Yinyang's group bounds (many clusters);
- :mod:`gpukmeans._cpu_kmeanspp`: the k-means++ candidates' distances and potentials;
- :mod:`gpukmeans._cpu_panel`: a few centers' dot products with rows stored feature by
  feature, in vector registers (k-means++ at few features);
- :mod:`gpukmeans._cpu_distance`: float64 squared distances and norms in an order written
  out in LLVM IR, the same bits wherever they are inlined (every pass's distances);
- :mod:`gpukmeans._cpu_passes`: row norms, centring, inertia, ``transform``.

The engine functions here are thin wrappers that fix the chunking and the group count;
they run inside :func:`cpu_runtime`, entered once per public call (``Engine.runtime``).
Determinism: every reduction runs in an order fixed by the data's shape, so the same
input gives bitwise the same output with 1 thread or 64.
"""

import contextlib
import functools
from typing import NamedTuple

import numba
import numpy as np

from . import _cpu_bounds, _cpu_yinyang
from ._cpu_bounds import (
    ELKAN_MIN_CLUSTER_FEATURES, BoundsRun, elkan_by_shape, elkan_pays,
)
from ._cpu_kmeanspp import (
    KMEANSPP_CHUNK_ROWS, _kmeanspp_candidates_chunked, kmeanspp_search, transposes_once,
    weighted_draw,
)
from ._cpu_lloyd import (
    _NO_DISTANCES, BLOCKED, BY_GEMM, BY_PANEL, BY_ROWS, GEMM, NARROWED, NARROWED_BLOCKED,
    NARROWED_PANEL, _lloyd_chunked,
)
from ._cpu_minibatch import (
    BY_INDEX_MIN_FEATURES, GEMM_MAX_BATCH_BYTES, UPDATE_GROUPS_PER_THREAD, _batch_labels_by_index,
    _labelled_update_by_index, _minibatch_update, _minibatch_update_by_clusters,
    batch_labels_by_gemm, batch_search, labels_by_gemm, labels_by_index,
)
from ._cpu_nearest import gemm_rows_first
from ._cpu_passes import (
    _pairwise_distances_chunked, _weighted_sum_f64, centered, feature_major, inertia,
    numpy_order_distances, row_norms_f64,
)
from ._cpu_passes import largest_magnitude as _largest_magnitude
from ._cpu_passes import scan_float32 as _scan_float32
from ._cpu_runtime import cpu_runtime, gemm_threads
from ._cpu_small import CHUNK_ROWS, THREADED_MIN_WORK
from ._cpu_small import bound_margin_coefficient as _bound_margin_coefficient
from ._cpu_small import centers_squared_norms as _centers_squared_norms
from ._cpu_small import fold_rows as _fold_rows
from ._cpu_small import n_chunks as _n_chunks
from ._cpu_small import n_groups as _n_groups
from ._cpu_yinyang import YinyangRun
from ._engine import Engine, by_dot_products


# How the plain step finds each row's nearest center, by the shapes (_dots_kernel).
# One E-step on 100,000 random rows, 2 threads, ms: GEMM, BLOCKED, BY_ROWS, BY_GEMM
# (benchmarks/results/cpu-kernels.md, from benchmarks/bench_cpu_kernels.py; BLOCKED
# there still took an argmin per row, before the fold below):
#   float32 d=2 k=32: 6.38, 9.07, 2.09, 2.04     d=2 k=1024: 63.1, 108, 17.0, 24.1
#           d=4 k=128: 12.6, 19.3, 3.34, 3.70    d=8 k=32: 7.91, 8.65, 3.71, 2.10
#           d=32 k=4096: 346, 716, 349, 169      d=128 k=256: 46.7, 81.7, 127, 39.3
#           MNIST (70,000 x 784) k=20: 27.8, 27.5, 160, 61.4;  k=256: 128, 213, 568, 186
#   float64 (no BLOCKED) d=2 k=32: 5.47, 1.91, 2.33   d=8 k=32: 7.13, 2.95, 2.82
#           d=16 k=256: 27.0, 27.6, 16.2   d=32 k=4096: 508, 856, 350
#           MNIST k=20: 53.5, 232, 70.7;  k=256: 254, 1081, 268
# Beyond BLOCKED_MIN_FEATURES, float32 takes the blocked kernel
# (_cpu_nearest._rows_nearest_blocked: blocks of 6 rows x 4 centers of sums in
# registers with AVX-512, 4 x 3 with AVX2, nothing packed, its values folded over the
# centers as the GEMM's are) for few clusters, at most one per
# BLOCKED_FEATURES_PER_CLUSTER features, while they fit in BLOCKED_MAX_CENTER_BYTES (it
# rereads every center for each block of rows; beyond BLOCKED_WIDE_FEATURES,
# BLOCKED_WIDE_MAX_CENTER_BYTES); then the GEMM folded by rows up to
# BY_GEMM_F32_MAX_FEATURES, and the GEMM as scikit-learn calls it beyond (its larger
# products, over every center at once, win there). From 65 to 128 features (stop 53, a
# 2-core Zen 3 EPYC, AVX2, OpenBLAS on its Haswell kernels; one E-step, 100,000 random
# rows, wall ms, two threads, alternated, medians of 21, GEMM / BY_GEMM / BLOCKED):
# d=72 k=4 6.24 / 5.49 / 3.35, k=9 7.44 / 4.60 / 3.34, k=12 8.24 / 4.54 / 4.25, k=16
# 9.42 / 6.18 / 6.45; d=96 k=4 6.06 / 5.24 / 2.57, k=9 8.80 / 7.20 / 4.20, k=12 8.84 /
# 7.35 / 4.29, k=16 9.87 / 7.46 / 6.40; d=128 k=4 8.28 / 7.39 / 3.59, k=9 10.1 / 9.27 /
# 4.68, k=12 13.2 / 10.2 / 6.51, k=16 15.8 / 10.3 / 9.05; one thread d=80 k=8 14.4 /
# 9.22 / 5.96, d=128 k=8 20.5 / 16.0 / 9.22, k=16 23.3 / 17.3 / 13.7. At 64 features the
# GEMM folded by rows (rows first) won: k=4 2.10 / 2.16, k=8 2.20 / 2.71, k=16 3.20 /
# 4.67 (BY_GEMM / BLOCKED); at 128, k=32 tied (11.6 / 12.1). float64's float32 products
# stay folded by rows up to 128 features: there the blocked kernel won and lost by
# turns (d=64-80 mostly lost, d=96-128 k <= 16 mostly won, in noisy runs). One E-step,
# CPU ms of both threads (the work: this VM's wall time drifts), OpenBLAS 0.3.30 on its
# own AVX-512 (SkylakeX) kernels, random rows (100,000 unless named), GEMM (as
# scikit-learn calls it) / BY_GEMM / BLOCKED: MNIST (70,000 x 784) k=10 50.4 / 43.7 /
# 33.6, k=32 77.0 / 75.7 / 62.5, k=64 123 / 118 / 107, k=100 155 / 149 / 146, k=256 333 /
# 333 / 353; 20,000 x 784 k=512 205 / 213 / 233, k=2,048 747 / 846 / 942; 30,000 x 1,024
# k=32 40.8 / 57.8 / 33.5, k=128 111 / 115 / 103, k=512 411 / 444 / 472; 50,000 x 512
# k=64 60.7 / 50.8 / 49.5, k=128 107 / 97.1 / 103, k=256 178 / 162 / 189, k=1,024 673 /
# 702 / 791; d=256 k=32 55.9 / 46.8 / 41.2, k=64 68.8 / 57.6 / 62.5, k=128 105 / 88.1 /
# 101, k=256 181 / 154 / 193; 50,000 x 256 k=1,024 326 / 286 / 396; d=192 k=48 66.5 /
# 55.1 / 59.1; d=160 k=32 41.3 / 30.2 / 29.8, k=64 58.1 / 44.3 / 49.6, k=512 248 / 191 /
# 292. The same labels every way. Stop 30 had given the blocked kernel every k up to 8 MB
# of centers from measurements against OpenBLAS held to its AVX2 (Haswell) kernels by
# the VM's OPENBLAS_CORETYPE; on its native kernels the GEMMs win from about one cluster
# per 8 features (at d=160 k=512 the blocked kernel took 1.5x the GEMM folded by rows).
BY_ROWS_MAX_FEATURES = {4: 4, 8: 8}  # by X's itemsize
# Before both, float32 with few features and few clusters takes BY_PANEL
# (_cpu_panel.panel_chunk_nearest: the chunk transposed, then each center's values
# for a block of rows at once, in vector registers, as k-means++ steps take theirs). The
# same labels and sums as the other kernels, bit for bit (float32 labels are exactly the
# nearest centers). Whole plain steps (E and M), blob rows, two threads, ms, the kernel
# before (BY_ROWS up to 4 features, else BY_GEMM) / BY_PANEL, alternated, medians of
# 21: 100,000 rows d=2 k=2 0.78 / 0.72, k=8 0.76 / 0.72, k=16 0.61 / 0.56; d=4 k=2 0.71 /
# 0.59, k=8 0.72 / 0.68, k=16 0.80 / 0.77; d=6 k=8 0.57 / 0.51; d=8 k=2 0.61 / 0.51, k=4
# 1.20 / 0.70, k=8 0.55 / 0.51, k=16 0.83 / 0.74; d=12 k=2 1.03 / 0.89, k=8 1.24 / 1.09,
# k=16 1.28 / 1.30; 1,000,000 rows d=8 k=4 8.2 / 6.3, k=16 9.8 / 7.9; d=12 k=4 9.8 / 7.5;
# d=3 k=4 5.7 / 5.3, k=16 4.1 / 4.6; 10,000 rows (one thread) d=8 k=8 0.156 / 0.137, d=12
# k=16 0.224 / 0.214. float64 gained at some shapes and lost at others (d=2 k=2 0.83x,
# d=4 k=2 1.19x): not taken. Against BY_GEMM (from 5 features) it gains with more
# clusters too: d=6 k=24 2.39 / 2.06, k=32 1.31 / 1.20, k=48 2.71 / 2.03; d=8 k=24 1.70 /
# 1.75, k=32 1.89 / 1.56, k=48 1.58 / 1.50; d=12 k=24 3.38 / 3.13, k=32 3.65 / 3.10, k=48
# 2.98 / 2.69 (and by the run's drift d=8 k=64 3.65 / 3.13, d=12 k=64 2.85 / 3.42: not
# taken). From 16 to 24 features two runs of 31 alternations gained, one of 21
# lost: d=16 k=2 1.54 / 1.45 and 0.82 / 0.80, k=8 0.99 / 0.87 and 0.96 / 0.80, k=32 1.49 /
# 1.31 and 1.27 / 1.12, k=48 1.61 / 1.51; d=20 k=8 1.05 / 0.95, k=32 1.65 / 1.48; d=24 k=2
# 1.49 / 1.36 and 1.13 / 1.01, k=16 1.74 / 1.44, k=32 2.20 / 1.84 and 1.39 / 1.26, k=48
# 2.41 / 2.04 (the other: d=16 k=2-16 1.01x, 1.00x, 1.06x, d=24 k=2 1.19 / 1.33, k=8 1.39
# / 1.59); 1,000,000 rows d=16 k=4 12.2 / 10.1, k=32 14.7 / 11.8; d=24 k=4 11.6 / 11.1,
# k=16 18.6 / 15.1, k=32 17.6 / 15.9. At 32 features it lost at k=2 (0.72 / 1.02; 0.96 /
# 1.29) and tied at k=8. Within the limits, single shapes lost by the runs' drift (d=8
# k=24 1.70 / 1.75, d=12 k=16 1.28 / 1.30). Against BY_ROWS, up to 4 features, only up to
# 8 clusters gained in every run (d=2 k=16 gained twice and lost once, d=3 k=16 lost on
# 1,000,000 rows; d=2 k=24 0.97 / 0.91, d=4 k=24 1.03 / 1.06, d=3 k=32 0.93 / 1.09).
# From 25 to 32 features it gains from 16 clusters (to 48), where BY_GEMM multiplies
# the centers by the chunk transposed; below 16 it tied or lost. Whole plain steps,
# float32 blob rows, ms, BY_GEMM / BY_PANEL, alternated, medians of 15 (2-core AMD EPYC,
# Zen 3, AVX2, OpenBLAS on its Haswell kernels; 2026-12-06), two threads: 100,000 rows d=28
# k=2 2.64 / 2.86, k=4 1.71 / 1.90, k=8 3.33 / 3.15, k=16 3.80 / 3.46, k=24 5.07 / 4.53,
# k=32 6.51 / 5.69, k=48 6.43 / 5.85; d=32 k=2 3.21 / 2.86, k=4 2.35 / 2.08, k=8 2.93 /
# 2.93, k=12 3.21 / 3.14, k=16 2.99 / 2.63, k=24 5.21 / 4.75, k=32 5.50 / 5.03, k=48
# 7.13 / 6.91; 10,000 rows (serial) d=28 k=32 0.650 / 0.532, d=32 k=16 0.435 / 0.403,
# k=32 0.720 / 0.574, k=48 0.936 / 0.819; one thread, 100,000 rows d=32 k=16 4.42 /
# 4.33, k=32 7.43 / 6.69. From 40 features it lost (d=40 k=8-48 1.00-1.16x, d=48
# 1.08-1.35x). Stop 49's Xeon: d=32 k=32 2.86 / 2.24.
# Since stop 61 BY_PANEL keeps a few centers' sums for a few vectors of rows in registers
# and folds them there (_cpu_panel.panel_chunk_nearest; before, one center at a time over
# 8 vectors of rows, its values folded from memory; the same bits): one thread, E-step
# alone over 100,000 random rows, ms, the old panel / the new / the GEMM folded by rows,
# on a 2-core Xeon with AVX-512: d=32 k=512 31.9 / 21.7 / 34.2 (151 GFLOP/s, its SGEMM
# 191), k=1024 90.9 / 42.5 / 65.6, k=4096 401 / 165 / 261; d=16 k=512 18.6 / 11.2 / 22.0;
# d=8 k=512 16.3 / 7.6 / 17.2 (by rows 9.8); d=2 k=1024 23.6 / 8.8 / 28.6 (by rows 11.3);
# d=64 k=512 89.0 / 39.6 / 50.7; d=128 k=512 278 / 88.5 / 96.3. It now takes many
# clusters too: up to 32 features from BY_PANEL_MANY_MIN_CLUSTERS, to
# BY_PANEL_MANY_MAX_FEATURES from BY_PANEL_MANY_WIDE_MIN_CLUSTERS. Whole plain steps,
# float32 blobs, 100,000 rows, two threads, alternated, medians of 7, the kernel before
# / BY_PANEL: d=2 (by rows) k=64 2.80 / 2.09, k=256 4.47 / 3.76, k=4096 116 / 111 (k=1024
# 14.3 / 15.0); d=3 k=1024 8.46 / 6.18; d=4 k=256 2.60 / 2.09, k=4096 35.7 / 26.4; d=6
# (by GEMM) k=64 3.56 / 2.47, k=1024 17.7 / 8.06; d=8 k=64 3.62 / 2.52, k=512 12.1 /
# 7.19, k=4096 77.0 / 34.8; d=12 k=512 11.8 / 6.52; d=16 k=64 2.44 / 1.91, k=512 12.8 /
# 7.52, k=4096 90.2 / 50.3; d=24 k=64 5.86 / 4.69, k=1024 31.8 / 19.8; d=32 k=64 6.88 /
# 5.19, k=256 9.47 / 6.49, k=1024 36.4 / 24.1, k=4096 141 / 94.6; d=40 k=128 7.06 /
# 5.80, k=1024 43.9 / 31.7; d=48 k=256 13.5 / 11.4, k=4096 190 / 148 (k=128 8.81 /
# 9.06); d=64 k=128 13.2 / 11.0, k=4096 230 / 193; d=96 k=128 15.9 / 14.8, k=1024 83.0
# / 75.3; d=128 k=128 22.6 / 17.1, k=4096 442 / 418. Below those it won and lost by
# turns against the GEMM (d=32 k=2 1.19 / 1.35, k=8 3.23 / 2.69; d=64 k=4 3.48 / 4.95,
# k=8 4.58 / 3.00), and lost to the blocked kernel (d=96 k=2 2.17 / 3.44). Between 16
# and 128 clusters the Xeon's float32 was not measured (its float64 products at d=96
# k=64 lost 5%: _panel_pays); on a 2-core Zen 4 EPYC (AVX-512, stop 64) the panel won
# there from 24 clusters on, so BY_PANEL_MANY_WIDE_MIN_CLUSTERS is 24 (the Xeon's
# included): one E-step (labels and distances), 100,000
# random rows, two threads, alternated, medians of 6-8, ms, the GEMM folded by rows /
# the panel: d=33 k=32 5.5 / 4.0, k=64 6.4 / 5.1, k=96 7.8 / 6.1; d=40 k=24 5.8 / 4.4,
# k=48 6.8 / 5.4; d=56 k=24 6.6 / 5.7, k=64 10.4 / 8.4; d=64 k=24 6.6 / 5.6, k=48 9.2 /
# 7.4, k=96 12.7 / 10.3; d=80 k=32 9.7 / 7.2, k=64 12.4 / 10.3; d=96 k=32 11.6 / 8.5,
# k=96 17.4 / 14.1; d=128 k=32 15.1 / 11.0, k=96 25.5 / 18.8; float64's float32
# products likewise (NARROWED / NARROWED_PANEL): d=40 k=24 5.8 / 5.0, k=96 9.9 / 8.0;
# d=64 k=24 7.1 / 5.5; d=96 k=48 12.8 / 10.1; d=128 k=24 13.0 / 9.9, k=96 23.0 / 19.4.
# At 16 clusters it tied (d=33 3.9 / 3.6, d=48 4.3 / 4.2, d=64 5.2 / 5.7; float64 d=40
# 4.9 / 5.0; d=128 the blocked kernel 9.1 / 8.9). 256-bit vectors take it from 24 too
# since stop 65 (128 before; a 2-core Zen 3 EPYC, AVX2, the same E-steps, medians of
# 8-16): d=33 k=24 5.83 / 4.56, k=64 6.70 / 4.74; d=40 k=24 5.98 / 4.91, k=32 7.32 /
# 4.50, k=48 9.22 / 6.33; d=48 k=24 5.41 / 4.03; d=56 k=64 11.3 / 8.57; d=64 k=24 7.11 /
# 5.73, k=96 15.5 / 12.3; d=80 k=32 10.3 / 7.83; d=96 k=24 11.2 / 8.41, k=96 21.7 /
# 18.6; d=112 k=64 18.6 / 15.1; d=128 k=32 16.4 / 12.7, k=96 26.0 / 21.6 (a first
# run of d=40 k=24-48, d=64 k=24 and d=128 k=96 had lost 5-12%; a second of 16 won
# them all); float64's float32 products d=40 k=24 5.90 / 4.78, k=96 10.8 / 8.19; d=64
# k=24 9.47 / 6.99; d=128 k=24 16.2 / 10.5, k=96 28.4 / 23.8. At 16 clusters, as on the
# Zen 4, won and lost by turns (d=33 3.92 / 2.82, d=48 4.66 / 4.43, d=64 3.59 / 3.87).
# Whole 10-iteration fits from the same centers (blobs, 100,000 rows, medians of 9, the
# same results): float32 d=48 k=64 125 / 101, d=64 k=32 124 / 100, d=96 k=96 292 / 267;
# float64 d=40 k=24 90.7 / 81.5, d=64 k=48 167 / 157. Bounded steps (Hamerly's or
# Elkan's) never take the plain step's kernels (they search with _cpu_bounds'); plain
# runs, the plain steps that runs with bounds take until the labels settle (Yinyang's,
# and since stop 65 Hamerly's and Elkan's up to 256 features), predict, score,
# transform, streamed plain runs and the mini-batch steps of fewer than 129 features
# (their copied batch's E-step) do.
# With 256-bit vectors (2 x 5 sums; measured only on the Xeon, Numba compiling for Haswell and
# OpenBLAS on its Haswell kernels, one thread, E-step alone, old / new / GEMM): d=32
# k=64 7.45 / 5.50 / 6.63, k=512 41.9 / 35.8 / 42.8; d=8 k=16 0.77 / 0.67 / 0.96; d=16
# k=4096 270 / 176 / 234 (3 x 4 sums lost at d=32 k=16: 3.83 against 1.89; on a real
# Zen 3 EPYC they won everywhere, 0.84-0.95x 2 x 5's time, and are AVX2's since
# stop 63: _cpu_panel.NEAREST_VECTORS).
# From 25 to 32 features it takes BY_PANEL_WIDE_MIN_CLUSTERS clusters on, 4 (16 until
# stop 62, and with 256-bit vectors until stop 63, from the stop 61 steps above): whole
# fits of 10 iterations from the same centers, blobs, 0.25 s apart, alternated, medians
# of 11, ms, the GEMM folded by rows (float64: its float32 products, Hamerly's bounds at
# k=8) / the panel, the same results: float32 d=32 k=6 26.8 / 20.8, k=8 23.9 / 21.8,
# 1,000,000 rows k=8 235 / 205; float64 d=32 k=8 35.3 / 30.5, k=12 37.9 / 31.5, d=30
# k=6 37.7 / 32.4, d=28 k=8 33.2 / 31.0, 1,000,000 rows k=8 403 / 353; tied below
# (float64 d=32 k=2 28.1 / 28.5, k=4 30.7 / 30.2; float32 k=3 25.1 / 24.8). With 256-bit
# vectors and the panel's old 2 x 5 sums, nothing to gain (the same Xeon compiling for
# Haswell: float32 d=32 k=8 23.2 / 24.2, k=12 31.0 / 32.3), so stop 62 kept 16 there;
# with stop 63's 3 x 4 sums on a real Zen 3 EPYC (AVX2), two runs of the same fits:
# float32 d=32 k=6 70.6 / 55.5 and 71.2 / 62.9, k=8 62.3 / 58.6 and 66.0 / 56.9, k=12
# 74.2 / 66.0 and 69.9 / 64.3; float64 d=32 k=8 83.4 / 75.8 and 78.7 / 70.3, d=28 k=12
# 101 / 82.1 and 83.1 / 76.2, d=28 k=4 (3 iterations) 41.8 / 37.7 and 43.0 / 37.0; float32
# d=28 tied (k=6 73.4 / 68.0 and 56.7 / 57.9, k=8 76.4 / 76.5 and 58.1 / 61.7, k=12 81.7
# / 82.5 and 74.8 / 77.2): 4 on both widths.
BY_PANEL_MAX_FEATURES = 24
BY_PANEL_MAX_CLUSTERS = 48
BY_PANEL_OVER_ROWS_MAX_CLUSTERS = 8
BY_PANEL_WIDE_MAX_FEATURES = 32
BY_PANEL_WIDE_MIN_CLUSTERS = 4
BY_PANEL_MANY_MIN_CLUSTERS = 49
BY_PANEL_MANY_MAX_FEATURES = 128
BY_PANEL_MANY_WIDE_MIN_CLUSTERS = 24
BY_GEMM_MAX_FEATURES = 128
BLOCKED_MIN_FEATURES = 64
BLOCKED_FEATURES_PER_CLUSTER = 8
BLOCKED_MAX_CENTER_BYTES = 2**23
# Beyond BLOCKED_WIDE_FEATURES features a block's rows and centers (six and four with
# 512-bit vectors, 40 KB at 1,024 features; four and three with 256-bit ones, 28 KB)
# outgrow a 32 KB L1 and are read again from L2 for every few centers; the boundary at
# 1,024 is where the measurements below turn, not that arithmetic. float32 takes the
# blocked kernel there only for BLOCKED_WIDE_MAX_CENTER_BYTES of centers (float64's
# float32 products keep it: their other kernel lost by more), and bounded runs'
# whole-chunk searches follow (dense_search_by_gemm). On a 2-core Zen 4 EPYC (AVX-512,
# stop 64), one E-step, random rows, two threads, alternated, medians of 8, ms, GEMM /
# BLOCKED: 20,000 x 1,280 k=16 17.2 / 14.0, k=64 32.5 / 34.2, k=160 65.6 / 83.7; x 1,536
# k=16 19.1 / 17.0, k=64 36.0 / 42.5, k=192 86.0 / 123; x 2,048 k=8 20.0 / 16.1, k=32
# 34.5 / 38.2, k=64 52.9 / 63.4, k=256 154 / 224; 10,000 x 3,072 k=16 18.1 / 19.1, k=64
# 38.7 / 61.6; x 4,096 k=8 20.9 / 19.8, k=16 23.7 / 29.2, k=64 56.5 / 96.8; up to 1,024
# features it mostly keeps the lead (MNIST k=10 33.2 / 21.5, k=98 93.4 / 86.1; 20,000 x
# 1,024 k=32 18.0 / 16.1, but k=128 43.5 / 46.5, where the Xeon's 30,000 x 1,024 had it
# ahead, 103 against 111 CPU ms). float64, NARROWED / NARROWED_BLOCKED: 20,000 x 2,048
# k=32 79.4 / 53.8, k=128 186 / 166; 10,000 x 4,096 k=64 199 / 170. With 256-bit
# vectors since stop 65 (until then they kept the blocked kernel to one cluster per 8
# features there), on a 2-core Zen 3 EPYC (AVX2), the same E-steps, medians of 8-14:
# 20,000 x 1,280 k=16 16.6 / 13.0, k=24 15.6 / 13.6, k=32 19.4 / 17.8, k=64 32.2 /
# 37.1, k=160 70.1 / 89.4; x 1,536 k=16 17.7 / 15.7, k=24 21.8 / 20.4, k=32 24.4 / 25.5,
# k=64 41.3 / 62.0; x 2,048 k=8 16.3 / 13.4, k=24 25.8 / 26.5, k=32 32.3 / 36.8, k=64
# 46.3 / 71.2, k=256 162 / 258; 10,000 x 3,072 k=12 16.7 / 14.7, k=16 16.1-17.3 / 17.6-20.2,
# k=64 38.9 / 64.9; x 4,096 k=8 18.9 / 16.7, k=16 22.9 / 27.7, k=64 52.6 / 98.5: on both
# widths the turn lies between 128 and 192 KB of centers (x 1,152 k=40, 180 KB, 22.3 /
# 20.0, won; x 1,536 k=32 and x 2,048 k=24, 192 KB, lost 3-5%), and the limit stays at
# 128 KB. float64's float32 products: 20,000 x 2,048 k=32 64.5 / 52.3, k=128 185 /
# 181; 10,000 x 4,096 k=64 169 / 162. Up to 1,024 features the Zen 3 had the GEMM ahead
# from about 384 KB of centers (20,000 x 1,024 k=64 22.6-26.7 / 25.1-28.6, k=96 38.1 /
# 39.3, k=128 46.6 / 55.2; x 960 k=120 46.4 / 51.1; x 896 k=112 40.4 / 44.5; but x 896
# k=64 24.9 / 22.9, x 832 k=104 38.2 / 36.3, MNIST k=98 93.6-105 / 88.0-102): whole fits
# there (Elkan's bounds) moved by 0.95-1.04x with a 384 KB limit, within the noise, and
# the Xeon had measured the opposite at 1,024 features; not taken.
BLOCKED_WIDE_FEATURES = 1024
BLOCKED_WIDE_MAX_CENTER_BYTES = 2**17
BY_GEMM_F32_MAX_FEATURES = 512
# float64 beyond the kernel by rows takes float32 products (_cpu_narrowed: each chunk
# rounded to float32 in cache, the near-ties' values again in float64, labels
# scikit-learn's bit for bit): from NARROWED_MIN_CLUSTERS clusters, from
# NARROWED_FEW_FEATURES_MIN_CLUSTERS below NARROWED_FEW_FEATURES features, every k beyond
# BY_GEMM_MAX_FEATURES (where the float64 kernel is scikit-learn's GEMM). One plain step
# (E and M) on blob rows, ms, the float64 kernel / narrowed, medians of 7-9 alternated,
# one thread, 50,000 rows: d=9 k=8 1.42 / 1.59, k=32 2.53 / 2.21, k=128 6.37 / 4.39;
# d=16 k=2 1.11 / 1.39, k=4 1.42 / 1.42, k=8 2.16 / 1.87, k=32 3.61 / 2.80, k=512
# 28.7 / 16.6; d=32 k=2 1.38 / 1.60, k=4 2.01 / 1.84, k=8 3.28 / 2.80, k=128 13.0 / 7.73,
# k=512 43.3 / 23.9; d=64 k=4 5.04 / 3.00, k=32 12.2 / 6.93; d=128 k=2 3.99 / 4.72, k=4
# 8.43 / 5.06, k=8 8.92 / 7.43, k=32 20.0 / 12.6; 30,000 rows: d=12 k=4 0.80 / 0.93, k=8
# 0.53 / 0.57, k=16 0.73 / 0.70, k=64 2.36 / 1.76; d=200 k=4 7.72 / 4.05, k=256 82.2 /
# 41.4; d=512 k=4 11.6 / 8.98, k=256 211 / 123; MNIST (70,000 x 784) k=10 114 / 73.8,
# k=20 136 / 88.7, k=256 727 / 387. Two threads, 100,000 rows: d=12 k=4 3.55 / 3.60, k=8
# 2.20 / 2.07, k=16 2.38 / 2.10, k=512 27.3 / 14.9; d=16 k=4 2.67 / 2.26, k=8 3.00 /
# 2.59; d=32 k=4 5.02 / 2.83, k=8 4.11 / 3.35, k=32 6.82 / 4.58, k=512 48.5 / 26.0;
# d=128 k=4 17.5 / 6.53, k=8 11.0 / 11.2, k=32 23.0 / 14.7, k=512 162 / 88.9. Up to 8
# features (the kernel by rows) it lost: d=2 k=8-512 1.32-1.47x, d=4 1.19-1.36x, d=8 k=8
# 1.42x, k=512 0.98x.
NARROWED_MIN_CLUSTERS = 4
NARROWED_FEW_FEATURES = 16
NARROWED_FEW_FEATURES_MIN_CLUSTERS = 16
# float32 runs keep Hamerly's or Elkan's bounds (_cpu_bounds) where they pay: with more
# than PLAIN_MAX_FEATURES features and, up to BY_GEMM_MAX_FEATURES, between
# BOUNDS_MIN_CLUSTERS and one cluster per feature; beyond (where the plain step takes
# the blocked kernel or a GEMM, _dots_kernel) up to BOUNDS_CLUSTERS_PER_FEATURE per
# feature. (Measured against OpenBLAS on its AVX2 kernels, which the VM's
# OPENBLAS_CORETYPE=Haswell imposed until stop 31: on its own AVX-512 kernels the plain
# step is faster, which these crossovers have not been measured against again.)
# Elsewhere a full plain step costs less than keeping them. Blobs, 100,000 samples, 10
# iterations from random rows, CPU ms (both threads) per iteration, plain vs bounds
# (benchmarks/bench_cpu_kernels.py runs --clock cpu, results/cpu-kernels.md): d=8 k=8
# 1.96 vs 2.90; d=16 k=8 2.78 vs 3.17; d=24 k=8 3.65 vs 3.85; d=32 k=4 2.79 vs 4.29, k=8
# 4.66 vs 4.41, k=12 5.28 vs 4.45, k=32 6.69 vs 11.6; d=48 k=8 6.83 vs 4.69, k=64 13.8 vs
# 19.3; d=64 k=4 4.31 vs 6.98, k=8 9.03 vs 5.98, k=32 12.9 vs 10.4; d=128 k=4 9.82 vs
# 10.2, k=32 24.1 vs 17.9, k=96 39.0 vs 33.3, k=160 55.5 vs 51.2; d=256 k=8 27.3 vs 10.3.
# (MNIST, d=784: Elkan's bounds at k=256 take 81 ms per iteration, a full step's E-step
# alone 128.) Except where the plain step multiplies rows x centers
# (_cpu_nearest.gemm_rows_first: up to 64 features and one cluster per two), which
# halved its E-step there: whole 10-iteration fits, wall ms, plain vs bounds, on the
# 2-core EPYC: d=32 k=8 13.7 vs 24.9, k=16 17.8 vs 20.9; d=48 k=8 10.3 vs 18.6; d=64
# k=8 12.1 vs 16.9, k=32 53.5 vs 57.0; with as many blobs as clusters, d=32 k=8 21.4 vs
# 33.4, d=48 k=24 35.5 vs 41.3, d=64 k=32 61.1 vs 66.5; from k-means++, d=32 k=8 8.1 vs
# 15.0 (4 iterations), d=64 k=8 39.8 vs 37.4 (10: the one shape where the bounds still
# won, by 6%); d=128 k=32 (centers x rows) 110 vs 84.
PLAIN_MAX_FEATURES = 24
BOUNDS_MIN_CLUSTERS = 8
BOUNDS_CLUSTERS_PER_FEATURE = 2
# Elsewhere, from YINYANG_MIN_FEATURES features and YINYANG_MIN_CLUSTER_FEATURES
# (n_clusters x n_features) on, float32 runs keep Yinyang's group bounds (_cpu_yinyang),
# whose results are the plain step's bit for bit. Blobs, 100,000 samples, 10 iterations
# from random rows, CPU ms (both threads) per iteration, plain / Hamerly or Elkan /
# Yinyang: d=16 k=512 37.7 / 106 / 41.1, k=1024 72.2 / 135 / 65.3, k=4096 250 / - / 246;
# d=24 k=256 25.2 / 53.3 / 26.6, k=512 45.3 / 113 / 35.9; d=32 k=256 29.5 / 57.1 / 35.0,
# k=512 53.1 / 125 / 43.7, k=1024 98.7 / 146 / 66.9; d=48 k=128 24.1 / 45.9 / 27.2,
# k=256 40.7 / 67.3 / 34.8; d=64 k=128 29.6 / 38.8 / 31.5, k=256 43.9 / 61.1 / 33.0;
# d=128 k=64 34.5 / 28.2 / 31.6, k=128 49.9 / 41.1 / 37.6, k=1024 239 / 222 / 126;
# d=256 k=256 168 / 94.5 / 92.1, k=512 279 / 175 / 119; d=8 k=4096 242 / - / 333.
# (Yinyang's bounds from the first step then, and its open search's divisor 8 at
# every width: runs now take plain steps until the labels settle, and search
# fewer centers one by one at few features; see _cpu_yinyang.)
YINYANG_MIN_FEATURES = 24
YINYANG_MIN_CLUSTER_FEATURES = 12288


# --- the Engine functions: thin wrappers that fix the group count; they run inside
# cpu_runtime(), entered once per public call (Engine.runtime) ---


def narrowed_pays(dtype, n_features, n_clusters):
    """Whether float64 rows take the plain step's float32 products (``NARROWED``, see
    :data:`NARROWED_MIN_CLUSTERS`)."""
    if dtype != np.float64 or n_features <= BY_ROWS_MAX_FEATURES[8]:
        return False
    if n_features > BY_GEMM_MAX_FEATURES:
        return True
    if n_features < NARROWED_FEW_FEATURES:
        return n_clusters >= NARROWED_FEW_FEATURES_MIN_CLUSTERS
    return n_clusters >= NARROWED_MIN_CLUSTERS


def _panel_pays(n_features, n_clusters):
    """Whether float32 values come from the chunk transposed (``BY_PANEL``; float64's
    float32 products too, ``NARROWED_PANEL``): few features and up to
    :data:`BY_PANEL_MAX_CLUSTERS` clusters (:data:`BY_PANEL_OVER_ROWS_MAX_CLUSTERS` where
    the kernel by rows would run; from :data:`BY_PANEL_WIDE_MIN_CLUSTERS` beyond
    :data:`BY_PANEL_MAX_FEATURES`), and many clusters (see
    :data:`BY_PANEL_MANY_MIN_CLUSTERS`). float64's float32 products, whole plain steps,
    100,000 blob rows, two threads, alternated, medians of 5, the GEMM folded by rows /
    the panel, ms, on the AVX-512 Xeon: d=9 k=32 3.46 / 1.74, k=4,096 81.9 / 39.3; d=12
    k=16 1.97 / 1.45, k=512 12.2 / 6.90; d=16 k=4 1.56 / 1.30, k=64 2.75 / 1.98, k=1,024
    25.4 / 14.0; d=24 k=4 2.01 / 1.75, k=512 16.3 / 10.8 (k=8 and k=32 tied); d=32 k=32
    5.73 / 3.81, k=512 24.0 / 17.9, k=4,096 148 / 96.4; d=40 k=128 8.07 / 6.52; d=64
    k=128 11.5 / 10.6, k=4,096 251 / 211; d=128 k=128 22.7 / 21.1, k=1,024 125 / 112.
    Where float32 data would not take it, it tied or lost (d=32 k=4 1.92 / 1.98; d=48
    k=8 4.62 / 6.50; d=64 k=4 3.13 / 4.72; d=96 k=64 15.1 / 15.8, which it takes
    since stop 64: :data:`BY_PANEL_MANY_WIDE_MIN_CLUSTERS`)."""
    if n_features <= BY_ROWS_MAX_FEATURES[4]:
        return (n_clusters <= BY_PANEL_OVER_ROWS_MAX_CLUSTERS
                or n_clusters >= BY_PANEL_MANY_MIN_CLUSTERS)
    if n_features <= BY_PANEL_MAX_FEATURES:
        return True  # up to BY_PANEL_MAX_CLUSTERS, and from BY_PANEL_MANY_MIN_CLUSTERS
    if n_features <= BY_PANEL_WIDE_MAX_FEATURES:
        return n_clusters >= BY_PANEL_WIDE_MIN_CLUSTERS
    return BY_PANEL_MANY_WIDE_MIN_CLUSTERS <= n_clusters and (
        n_features <= BY_PANEL_MANY_MAX_FEATURES)


def _blocked_pays(dtype, n_features, n_clusters):
    """Whether the float32 values of ``dtype`` data come from the blocked kernel (see
    :data:`BLOCKED_FEATURES_PER_CLUSTER`, and :data:`BLOCKED_WIDE_FEATURES` for
    float32): float32 data's beyond
    :data:`BLOCKED_MIN_FEATURES`, and float64's float32 products beyond
    :data:`BY_GEMM_MAX_FEATURES` (float64 plain steps, one thread, ms, the float32 values
    by the GEMM folded by rows / by the blocked kernel: MNIST k=10 62.7 / 41.9, k=20 71.7
    / 55.1, k=98 170 / 159; 30,000 x 200 k=8 7.89 / 6.04, k=25 11.2 / 11.5, k=64 16.4 /
    19.8; 30,000 x 512 k=8 20.8 / 13.2, k=64 44.4 / 39.4)."""
    float32 = np.dtype(dtype) == np.float32
    min_features = BLOCKED_MIN_FEATURES if float32 else BY_GEMM_MAX_FEATURES
    max_center_bytes = BLOCKED_MAX_CENTER_BYTES
    if float32 and n_features > BLOCKED_WIDE_FEATURES:
        max_center_bytes = BLOCKED_WIDE_MAX_CENTER_BYTES
    return (n_features > min_features
            and n_clusters * BLOCKED_FEATURES_PER_CLUSTER <= n_features
            and n_clusters * n_features * 4 <= max_center_bytes)


def dense_search_by_gemm(n_features, n_clusters):
    """Whether a bounded run's chunks searched whole (its first bounded steps) take BLAS's
    GEMM rather than the blocked kernel
    (:func:`gpukmeans._cpu_bounds._searched_rows_dots`): wherever the plain step would
    not take the blocked kernel. On a Zen 3 EPYC, from the
    same centers, alternated, blocked / GEMM, the same labels and centers bit for bit:
    20,000 MNIST images, k=256, 3 iterations 296 / 242 ms; 100,000 x 128 blobs, k=32,
    the first E-step 22-30 / 16-21 ms, the 10-iteration fit within this VM's noise."""
    return not _blocked_pays(np.float32, n_features, n_clusters)


def _dots_kernel(X, n_clusters):
    """How the plain step computes ``x . c`` (see :mod:`gpukmeans._cpu_lloyd`): float64
    from float32 products where :func:`narrowed_pays` (beyond a few features, and for
    all but a few clusters), by the blocked kernel beyond :data:`BY_GEMM_MAX_FEATURES`
    where float32 data would take it (and beyond :data:`BLOCKED_WIDE_FEATURES`
    where float32 data would not for the centers' bytes), else folded by rows; float32
    over the chunk transposed for few features and clusters (:data:`BY_PANEL_MAX_FEATURES`,
    :data:`BY_PANEL_MAX_CLUSTERS`, fewer where it would replace the kernel by rows; up to
    :data:`BY_PANEL_WIDE_MAX_FEATURES` from :data:`BY_PANEL_WIDE_MIN_CLUSTERS`), and for
    many clusters (:data:`BY_PANEL_MANY_MIN_CLUSTERS`, to
    :data:`BY_PANEL_MANY_MAX_FEATURES` from :data:`BY_PANEL_MANY_WIDE_MIN_CLUSTERS`); by
    rows for a few features; beyond :data:`BLOCKED_MIN_FEATURES`, float32 without BLAS
    (:func:`gpukmeans._cpu_nearest._rows_dots_blocked`) for at most one cluster per
    :data:`BLOCKED_FEATURES_PER_CLUSTER` features and :data:`BLOCKED_MAX_CENTER_BYTES`
    of centers (:data:`BLOCKED_WIDE_MAX_CENTER_BYTES` beyond :data:`BLOCKED_WIDE_FEATURES`);
    else a GEMM folded by rows up to :data:`BY_GEMM_MAX_FEATURES` (float32:
    :data:`BY_GEMM_F32_MAX_FEATURES`); the rest, the GEMM as scikit-learn calls it."""
    n_features = X.shape[1]
    if narrowed_pays(X.dtype, n_features, n_clusters):
        if _blocked_pays(X.dtype, n_features, n_clusters):
            return NARROWED_BLOCKED
        return NARROWED_PANEL if _panel_pays(n_features, n_clusters) else NARROWED
    by_rows = n_features <= BY_ROWS_MAX_FEATURES[X.dtype.itemsize]
    if X.dtype == np.float32 and _panel_pays(n_features, n_clusters):
        return BY_PANEL
    if by_rows:
        return BY_ROWS
    if X.dtype == np.float32 and _blocked_pays(X.dtype, n_features, n_clusters):
        return BLOCKED
    if n_features <= BY_GEMM_MAX_FEATURES or (
            X.dtype == np.float32 and n_features <= BY_GEMM_F32_MAX_FEATURES):
        return BY_GEMM
    return GEMM


_NO_NORMS = np.empty(0)


def lloyd_iter(X, sample_weight, centers_old, labels, x_squared_norms=_NO_NORMS,
               unit_centers=False):
    """Engine ``lloyd_iter``; a run passes its ``x_squared_norms`` (float64) along.
    ``unit_centers`` (cosine fits) orders the centers by dot product alone (see
    :func:`gpukmeans._cpu_nearest._exact_rank`)."""
    n_samples, n_features = X.shape
    n_clusters = centers_old.shape[0]
    n_groups = _n_groups(_n_chunks(n_samples), n_clusters, n_features)
    return _lloyd_chunked(
        X, sample_weight, centers_old, _centers_squared_norms(centers_old, unit_centers),
        labels, x_squared_norms, CHUNK_ROWS, _fold_rows(n_clusters),
        n_groups, True, _dots_kernel(X, n_clusters),
        _bound_margin_coefficient(X.dtype, n_features), X.dtype == np.float32, unit_centers,
    )


def _bounds_pay(X, n_clusters):
    n_features = X.shape[1]
    if (n_features <= PLAIN_MAX_FEATURES
            or gemm_rows_first(X.dtype.itemsize, n_features, n_clusters)):
        return False
    if n_features <= BY_GEMM_MAX_FEATURES:
        return BOUNDS_MIN_CLUSTERS <= n_clusters < n_features
    return n_clusters < BOUNDS_CLUSTERS_PER_FEATURE * n_features


def _yinyang_pays(X, n_clusters):
    n_features = X.shape[1]
    return (n_features >= YINYANG_MIN_FEATURES
            and n_clusters * n_features >= YINYANG_MIN_CLUSTER_FEATURES)


def run_kind(X, n_clusters):
    """How a run on X keeps its steps, by the shapes and dtype alone: "plain",
    "bounds" (Hamerly's or Elkan's, :class:`BoundsRun`) or "yinyang"
    (:class:`YinyangRun`). float32 only keeps bounds; float64's labels stay bitwise
    scikit-learn's by the plain step's GEMM."""
    if X.dtype != np.float32:
        return "plain"
    # Where Elkan's bounds would pay (_cpu_bounds.elkan_by_shape) but their n x k would
    # not fit, Hamerly's single bound filters little among so many clusters: MNIST,
    # k=1,024, 20 iterations, CPU ms per iteration: Hamerly 1,420, Yinyang 791 (k=256,
    # where Elkan's fit: Elkan 155, Yinyang 220). Below that shape Hamerly's beat
    # Yinyang's (60,000 MNIST images on 128 principal axes, k=100, whole fit 1,174 / 2,179
    # ms; on 256, k=128 1,689 / 2,629; k=256 a tie, 2,135 / 2,068).
    n_samples, n_features = X.shape
    hamerly_among_many = (elkan_by_shape(n_features, n_clusters)
                          and not elkan_pays(n_samples, n_features, n_clusters))
    yinyang = _yinyang_pays(X, n_clusters)
    if _bounds_pay(X, n_clusters) and not (hamerly_among_many and yinyang):
        return "bounds"
    return "yinyang" if yinyang else "plain"


def start_lloyd(X, x_squared_norms, sample_weight, n_clusters, unit_centers=False):
    """Engine ``start_lloyd``: the run :func:`run_kind` says; Hamerly's or Elkan's
    bounds where they pay (see :data:`PLAIN_MAX_FEATURES`), Yinyang's group bounds for
    many clusters (see :data:`YINYANG_MIN_FEATURES`), else the plain step."""
    kind = run_kind(X, n_clusters)
    plain = PlainRun(X, x_squared_norms, sample_weight, unit_centers)
    if kind == "bounds":  # plain steps until the labels settle, for few features
        return BoundsRun(X, x_squared_norms, sample_weight, n_clusters, unit_centers,
                         dense_search_by_gemm(X.shape[1], n_clusters), plain)
    if kind == "yinyang":
        return YinyangRun(X, x_squared_norms, sample_weight, n_clusters, plain, unit_centers)
    return plain


class PlainRun(NamedTuple):
    """A run of plain steps, which keeps nothing between them but the row norms."""

    X: np.ndarray
    x_squared_norms: np.ndarray
    sample_weight: np.ndarray
    unit_centers: bool = False

    def step(self, centers_old, labels):
        return lloyd_iter(self.X, self.sample_weight, centers_old, labels, self.x_squared_norms,
                          self.unit_centers)

    def finish(self, centers, labels, assign_labels):
        if assign_labels:
            return labels_inertia(self.X, self.sample_weight, centers, labels,
                                  self.x_squared_norms, self.unit_centers)
        return inertia(self.X, self.sample_weight, centers, labels)


def e_step(X, centers, labels, x_squared_norms=_NO_NORMS, distances=_NO_DISTANCES,
           unit_centers=False):
    """Engine ``assign_labels``; a run passes its ``x_squared_norms`` along, and
    :func:`labels_inertia` a ``distances`` to fill."""
    no_weight = np.empty(0, dtype=X.dtype)
    _lloyd_chunked(
        X, no_weight, centers, _centers_squared_norms(centers, unit_centers), labels,
        x_squared_norms, CHUNK_ROWS, 0,
        _n_chunks(X.shape[0]), False,
        _dots_kernel(X, centers.shape[0]), _bound_margin_coefficient(X.dtype, X.shape[1]),
        X.dtype == np.float32, unit_centers, distances,
    )


def labels_inertia(X, sample_weight, centers, labels, x_squared_norms=_NO_NORMS,
                   unit_centers=False):
    """Engine ``labels_inertia``: :func:`e_step`, which also measures each sample's
    distance to its new center while its chunk is in cache, then :func:`inertia`'s sum
    of them (bitwise: the same distances, the same sequential sum); one pass over X
    instead of two (MNIST, k=10, one thread: 47 ms instead of 67)."""
    distances = np.empty(X.shape[0])
    e_step(X, centers, labels, x_squared_norms, distances, unit_centers)
    return np.float64(_weighted_sum_f64(distances, sample_weight))


def minibatch_step(X, rows, sample_weight, centers, weight_sums, compute_inertia):
    """Engine ``minibatch_step``: the batch ``X[rows]``'s labels (copied and labelled in
    pieces by :func:`batch_labels_by_gemm` where :func:`labels_by_gemm` says and the
    batch is at most GEMM_MAX_BATCH_BYTES, by index where :func:`labels_by_index` says,
    else on the copied batch by :func:`e_step`), then its update and inertia (see
    :mod:`gpukmeans._cpu_minibatch`)."""
    n_features, n_clusters = centers.shape[1], centers.shape[0]
    n_rows = X.shape[0] if rows is None else rows.shape[0]
    # Several pieces only where the pool would run them on its threads (map_pieces):
    # the rule's lower limits were measured so.
    n_pieces = (gemm_threads() if X.dtype == np.float32
                and n_rows * n_features * n_clusters >= THREADED_MIN_WORK else 1)
    by_gemm = (labels_by_gemm(X.dtype, n_features, n_clusters, n_pieces)
               and n_rows * n_features * X.itemsize <= GEMM_MAX_BATCH_BYTES)
    by_index = not by_gemm and labels_by_index(n_features, n_clusters)
    labels = np.empty(n_rows, dtype=np.int32)
    if by_gemm:  # copied (where rows are given) and labelled in pieces
        X = batch_labels_by_gemm(X, rows, centers, _centers_squared_norms(centers),
                                 _bound_margin_coefficient(X.dtype, n_features), labels,
                                 n_pieces)
        rows = None
    elif rows is not None and not by_index:
        X, rows = np.take(X, rows, axis=0), None  # labelled on the copy
    if rows is None:
        rows = np.arange(X.shape[0])
    distances = np.empty(n_rows if compute_inertia else 0)
    tiny = np.finfo(X.dtype).tiny
    if by_index:
        label_args = (X, rows, centers, _centers_squared_norms(centers),
                      _bound_margin_coefficient(X.dtype, n_features), X.dtype == np.float32,
                      narrowed_pays(X.dtype, n_features, n_clusters))
        if _batch_labels_by_index.runs_serially(*label_args, labels):
            # On one thread, each chunk is summed while its rows are in cache.
            centers_new, weight_sums_new = _labelled_update_by_index(
                X, rows, sample_weight, *label_args[2:], weight_sums, tiny, labels, distances)
        else:
            _batch_labels_by_index(*label_args, labels)
            # On the threads too: see _minibatch_update_by_clusters.
            centers_new, weight_sums_new = _minibatch_update_by_clusters(
                X, rows, sample_weight, labels, centers, weight_sums, tiny, distances,
                min(n_clusters, UPDATE_GROUPS_PER_THREAD * numba.get_num_threads()))
    else:
        if not by_gemm:
            e_step(X, centers, labels)
        centers_new, weight_sums_new = _minibatch_update(X, rows, sample_weight, labels,
                                                         centers, weight_sums, tiny, distances)
    inertia = float(_weighted_sum_f64(distances, sample_weight)) if compute_inertia else 0.0
    return labels, centers_new, weight_sums_new, inertia


def assigned_distances(X, centers, labels):
    return numpy_order_distances(X, centers, labels)


def pairwise_distances(X, centers):
    x_squared_norms = row_norms_f64(X)
    return _pairwise_distances_chunked(X, x_squared_norms, centers, CHUNK_ROWS)


def kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq,
                        X_t=None):
    """Engine ``kmeanspp_candidates``; ``X_t``: X transposed, where
    :func:`start_kmeanspp` made it."""
    n_groups = kmeanspp_groups(X.shape[0], candidate_ids.shape[0])
    return _kmeanspp_candidates_chunked(
        X, np.empty((0, 0), dtype=X.dtype) if X_t is None else X_t, x_squared_norms,
        sample_weight, candidate_ids, closest_dist_sq, KMEANSPP_CHUNK_ROWS, n_groups,
    )


def start_kmeanspp(X, x_squared_norms, sample_weight, n_clusters):
    """Engine ``start_kmeanspp``: X transposed once for all the steps where
    :func:`gpukmeans._cpu_kmeanspp.transposes_once` says so, instead of each step
    transposing each chunk; the same bits either way."""
    X_t = (feature_major(X) if transposes_once(*X.shape, X.itemsize, n_clusters)
           else None)
    return functools.partial(kmeanspp_candidates, X, x_squared_norms, sample_weight, X_t=X_t)


def kmeanspp_groups(n_samples, n_candidates):
    """The k-means++ step's accumulation groups, of whole :data:`KMEANSPP_CHUNK_ROWS`
    chunks: a function of the shapes only, as for the E-step."""
    return _n_groups(-(-n_samples // KMEANSPP_CHUNK_ROWS), n_candidates, 1)



def largest_magnitude(X):
    """Validation's largest ``|x|`` of a large C-contiguous float NumPy array, in one pass
    on the engine's threads (:func:`gpukmeans._cpu_passes.largest_magnitude`). Part of the
    call that validates X, not a call of its own (see :func:`cpu_runtime`)."""
    with cpu_runtime(new_call=False):
        return _largest_magnitude(X)


def scan_float32(X, with_norms):
    """Validation's one pass over large float32 data
    (:func:`gpukmeans._cpu_passes.scan_float32`), on the engine's threads, as
    :func:`largest_magnitude`."""
    with cpu_runtime(new_call=False):
        return _scan_float32(X, with_norms)


def make_engine(unit_centers=False):
    """The Numba engine; ``unit_centers`` (cosine fits and their inference) orders the
    centers by dot product alone (:func:`gpukmeans._cpu_nearest._exact_rank`)."""
    return Engine(
        name="cpu",
        xp=np,
        lloyd_iter=by_dot_products(lloyd_iter, unit_centers),
        start_lloyd=by_dot_products(start_lloyd, unit_centers),
        assign_labels=by_dot_products(e_step, unit_centers),
        assigned_distances=assigned_distances,
        inertia=inertia,
        pairwise_distances=pairwise_distances,
        row_norms=row_norms_f64,
        centered=centered,
        kmeanspp_candidates=kmeanspp_candidates,
        start_kmeanspp=start_kmeanspp,
        runtime=cpu_runtime,
        weighted_draw=weighted_draw,
        kmeanspp_search=kmeanspp_search,
        minibatch_step=minibatch_step,
        labels_inertia=by_dot_products(labels_inertia, unit_centers),
        batch_search=batch_search,
    )


# The (n_features, n_clusters) of the runs that warm_up makes by default: the plain step,
# Hamerly's bounds, Elkan's and Yinyang's, each float32 and float64 (and then the plain
# step's kernel of each way of taking the dot products, _dots_kernel_shapes).
WARM_UP_SHAPES = ((5, 3), (BY_GEMM_MAX_FEATURES + 1, 3),
                  (384, ELKAN_MIN_CLUSTER_FEATURES // 384),
                  (64, YINYANG_MIN_CLUSTER_FEATURES // 64))


def _dots_kernel_shapes(dtype):
    """One ``(n_features, n_clusters)`` for each :func:`_dots_kernel` that ``dtype``
    data reach, keyed by it."""
    shapes = {}
    for n_features in (2, 5, 9, 20, 33, 64, 129, 200, 513):
        for n_clusters in (2, 3, 8, 16, 30, 49, 70, 130):
            kernel = _dots_kernel(np.empty((0, n_features), dtype=dtype), n_clusters)
            shapes.setdefault(kernel, (n_features, n_clusters))
    return shapes


def _each_kernel_version():
    """Yields once per version of the threaded kernels that calls in this process can
    run (:class:`gpukmeans._cpu_runtime.ThreadedKernel`): on one thread (the serial
    twins), and, where Numba has more, on more with every call parallel however small
    (the warm-up's tiny data would otherwise run the twins only, and a large fit would
    compile the parallel kernels). Numba's thread count is restored after."""
    import numba

    from . import _cpu_runtime

    n_threads = numba.get_num_threads()
    serial_max_work = _cpu_runtime.SERIAL_MAX_WORK
    counts = [1] if numba.config.NUMBA_NUM_THREADS == 1 else [1, max(2, n_threads)]
    try:
        for count in counts:
            numba.set_num_threads(count)
            _cpu_runtime.SERIAL_MAX_WORK = 0 if count > 1 else serial_max_work
            yield count
    finally:
        numba.set_num_threads(n_threads)
        _cpu_runtime.SERIAL_MAX_WORK = serial_max_work


def warm_up(dtypes=(np.float32, np.float64), shapes=WARM_UP_SHAPES):
    """Compile, or load from the cache, every kernel this engine runs for ``dtypes``:
    what ``gpukmeans compile`` does, so that no later fit waits for a compile.

    Runs the engine's every path on tiny data: both branches of :func:`centered`,
    k-means++, the steps of runs of each ``(n_features, n_clusters)`` in ``shapes``
    (by default the plain step, Hamerly's, Elkan's and Yinyang's bounds, each with an
    empty cluster to relocate), the final E-step, predict, inertia and transform. One shape
    compiles what fits of that shape run (the demo's warm-up). Read-only data take the
    same kernels (:func:`gpukmeans._validation.kernel_view`).
    """
    from ._init import kmeans_plusplus
    from ._lloyd import kmeans_single_lloyd

    engine = make_engine()
    rng = np.random.default_rng(0)
    n_samples = 2 * CHUNK_ROWS + 1 + 2 * max(n_clusters for _, n_clusters in shapes)
    # Runs with bounds keep them once the labels settle, which these runs' random data
    # and three steps may never do: bounded from their second step here.
    with engine.runtime(), contextlib.ExitStack() as restore:
        for module in (_cpu_bounds, _cpu_yinyang):
            restore.callback(setattr, module, "START_CHANGED", module.START_CHANGED)
            module.START_CHANGED = 1.0
        for _ in _each_kernel_version():
            for dtype in map(np.dtype, dtypes):
                sample_weight = np.ones(n_samples, dtype=dtype)
                for n_features, n_clusters in shapes:
                    # Near the origin and far from it (float32 near the origin is used
                    # uncentred: the caller's array, of the same type as a centred copy).
                    for offset in (0.0, 100.0):
                        X = (rng.standard_normal((n_samples, n_features)) + offset).astype(dtype)
                        source = X
                        X, x_squared_norms, _ = engine.centered(X, X.mean(axis=0))
                    centers, _ = kmeans_plusplus(X, n_clusters, x_squared_norms, sample_weight,
                                                 np.random.RandomState(0), engine)
                    centers[-1] = 1e6  # far from every sample: its cluster empties
                    labels, _, centers, _ = kmeans_single_lloyd(
                        X, x_squared_norms, sample_weight, centers, engine, max_iter=3
                    )
                    engine.assign_labels(X, centers, labels)
                    engine.inertia(X, sample_weight, centers, labels)
                    engine.pairwise_distances(X, centers)
                    engine.lloyd_iter(X, sample_weight, centers, labels)
                    largest_magnitude(source)  # validation's, on the caller's X
                    if dtype == np.float32:
                        scan_float32(source, with_norms=True)
                # The plain step's kernel of every way of taking the dot products that
                # this dtype's data reach (one kernel each: _cpu_lloyd.LLOYD_PARTIALS).
                for n_features, n_clusters in _dots_kernel_shapes(dtype).values():
                    X = rng.standard_normal((n_samples, n_features)).astype(dtype)
                    centers = X[:n_clusters].copy()
                    engine.lloyd_iter(X, sample_weight, centers, np.empty(n_samples, np.int32))


def warm_up_all(dtypes=(np.float32, np.float64), announce=True):
    """:func:`warm_up`, and what fits of other kinds of data compile: streamed
    k-means++, CSR matrices (the sparse engine, int32 and int64 indices) and
    MiniBatchKMeans's step (read-only arrays, a memmap's, take the writable arrays'
    kernels: :func:`gpukmeans._validation.kernel_view`). What ``gpukmeans compile``
    does, so that no later fit waits for a compile; one runtime around
    it all, so that its compile is announced once, or not at all without ``announce``
    (the command says how long it takes instead: a fit's notice promises a minute)."""
    with cpu_runtime(new_call=announce):
        _warm_up_all(dtypes)


def _warm_up_all(dtypes):
    import scipy.sparse

    from . import _streaming
    from ._cpu_sparse import make_engine as make_sparse_engine
    from ._minibatch_step import BatchSampler

    warm_up(dtypes)
    engine, sparse_engine = make_engine(), make_sparse_engine()
    rng = np.random.default_rng(0)
    n_samples, n_features, n_clusters = 2 * CHUNK_ROWS + 1, 6, 3
    with engine.runtime():
        for _ in _each_kernel_version():
            for dtype in map(np.dtype, dtypes):
                X = rng.standard_normal((n_samples, n_features)).astype(dtype)
                sample_weight = np.ones(n_samples, dtype=dtype)
                centers = np.ascontiguousarray(X[:n_clusters])
                labels = np.zeros(n_samples, dtype=np.int32)
                # MiniBatchKMeans's step: on the copied batch, and by index on wide
                # rows.
                for data in (X, rng.standard_normal((n_samples, BY_INDEX_MIN_FEATURES))):
                    data = data.astype(dtype)
                    engine.minibatch_step(data, np.arange(0, n_samples, 2),
                                          sample_weight[: (n_samples + 1) // 2],
                                          np.ascontiguousarray(data[:n_clusters]),
                                          np.ones(n_clusters, dtype=dtype), True)
                if dtype == np.float32:  # and by BLAS's GEMM, on many features and clusters
                    batch_labels_by_gemm(X, None, centers, _centers_squared_norms(centers),
                                         _bound_margin_coefficient(dtype, n_features), labels,
                                         1)
                sampler = BatchSampler(np.full(n_samples, 1.0 / n_samples), 8, engine.batch_search)
                sampler(np.random.RandomState(0))
                # A streamed fit's k-means++ (its potentials a block at a time).
                _streaming.kmeans_plusplus(_streaming.StreamedData(X, None, CHUNK_ROWS), n_clusters,
                                           np.random.RandomState(0))
                for index_dtype in (np.int32, np.int64):
                    csr = scipy.sparse.csr_matrix(X * (rng.uniform(size=X.shape) < 0.5))
                    csr.indices = csr.indices.astype(index_dtype)
                    csr.indptr = csr.indptr.astype(index_dtype)
                    norms = sparse_engine.row_norms(csr)
                    run = sparse_engine.start_lloyd(csr, norms, sample_weight, n_clusters)
                    run.step(centers, labels)
                    run.finish(centers, labels, True)
                    sparse_engine.assign_labels(csr, centers, labels)
                    sparse_engine.assigned_distances(csr, centers, labels)
                    sparse_engine.inertia(csr, sample_weight, centers, labels)
                    sparse_engine.pairwise_distances(csr, centers)
                    sparse_engine.kmeanspp_candidates(
                        csr, norms, sample_weight, np.arange(2),
                        np.full(n_samples, 1.0, dtype=dtype))
