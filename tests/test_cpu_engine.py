"""The CPU engines' functions against float64 NumPy references, one call at a time: the
Numba engine, and the NumPy engine that takes problems too small to repay a compile."""

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
import pytest

from gpukmeans import (
    KMeans, _cpu, _cpu_bounds, _cpu_kmeanspp, _cpu_lloyd, _cpu_nearest, _cpu_small, _cpu_yinyang,
    _lloyd,
)
from gpukmeans._lloyd import average_centers
from label_checks import (assert_labels_exactly_nearest, assert_labels_nearest,
                          exactly_nearest_labels)


@pytest.fixture(params=["numba", "numpy"])
def engine(request):
    return (_cpu if request.param == "numba" else _cpu_small).make_engine()


def _reference_step(X, sample_weight, centers):
    X64, c64 = X.astype(np.float64), centers.astype(np.float64)
    d = ((X64[:, None, :] - c64[None]) ** 2).sum(-1)
    labels = d.argmin(1)
    sums = np.zeros_like(c64)
    np.add.at(sums, labels, sample_weight[:, None].astype(np.float64) * X64)
    weights = np.bincount(labels, weights=sample_weight, minlength=len(centers))
    return labels, d, sums, weights


@pytest.mark.parametrize("offset", [0.0, 30.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_samples, n_features, n_clusters", [(700, 3, 1), (1500, 20, 7), (5000, 5, 300)])
def test_lloyd_step_against_float64_reference(
    engine, dtype, n_samples, n_features, n_clusters, offset, rng
):
    """The plain step: float64 labels are the float64 GEMM argmin, float32 labels are
    exactly the nearest centers (near-ties decided in float64; the offset makes them
    common), and the sums match float64 ones."""
    X = (rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 3, n_features) + offset)
    X = X.astype(dtype)
    sample_weight = rng.uniform(0.5, 2, n_samples).astype(dtype)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    labels = np.full(n_samples, -1, np.int32)
    with engine.runtime():
        for _ in range(3):
            sums, weights = engine.lloyd_iter(X, sample_weight, centers, labels)
            ref_labels, _, ref_sums, ref_w = _reference_step(X, sample_weight, centers)
            if dtype == np.float32:
                assert_labels_exactly_nearest(labels, X, centers)
                assigned = np.empty_like(labels)
                engine.assign_labels(X, centers, assigned)
                np.testing.assert_array_equal(assigned, labels)
            else:
                assert_labels_nearest(labels, X, centers, dtype)
            if np.array_equal(labels, ref_labels):
                # float32 sums run in float32 over a few thousand samples at most before
                # moving to float64: allow that rounding, relative to the sum of magnitudes.
                tol = 1e-5 if dtype == np.float32 else 1e-12
                ref_abs = np.zeros_like(ref_sums)
                np.add.at(ref_abs, ref_labels, np.abs(sample_weight[:, None] * X.astype(np.float64)))
                assert np.all(np.abs(sums - ref_sums) <= tol * ref_abs + 1e-12)
                np.testing.assert_allclose(weights, ref_w, rtol=1e-12)
            else:
                # Only an exact float64 tie (duplicate centers) may be resolved otherwise.
                d = _reference_step(X, sample_weight, centers)[1]
                rows = np.flatnonzero(labels != ref_labels)
                assert np.all(d[rows, labels[rows]] == d[rows, ref_labels[rows]])
            centers = average_centers(sums, weights, centers, X.dtype, np)


@pytest.mark.parametrize("candidate_ids", [
    [3, 999, 10], [3, 999, 10, 7], [3, 999, 10, 7, 0], [3, 999, 10, 7, 0, 512],
    [3, 999, 10, 7, 0, 512, 77], [3, 999, 10, 7, 0, 512, 77, 400, 401],
    [3, 999, 10, 7, 0, 512, 77, 400, 401, 2], [3, 999, 10, 7, 0, 512, 77, 400, 401, 2, 5],
    [3, 999, 10, 7, 0, 512, 77, 400, 401, 2, 5, 8, 9]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [3, 9, 70, 520])
def test_distances_inertia_transform_and_kmeanspp_step(engine, dtype, candidate_ids, n_features,
                                                       rng):
    """The k-means++ step against float64: up to 64 features fused with the distances
    (dot products across the transposed rows up to 8 features, by GEMM above); beyond,
    below 4 candidates one dot product each, at 4 the one-row kernel, above it passes of
    eight, four and one candidates a row up to 512 features (5 candidates: 4 and 1; 6: 4,
    1 and 1; 7: 8; 9: 8 and 1; 10: 8, 1 and 1; 11: 8 and 4 of which one padding; 13: 8, 4
    and 1), the blocked kernel past them."""
    X = rng.normal(size=(1000, n_features)).astype(dtype) + 5
    centers = X[:6].copy()
    sample_weight = rng.uniform(0, 2, 1000).astype(dtype)
    labels = np.full(1000, -1, np.int32)
    with engine.runtime():
        engine.assign_labels(X, centers, labels)
        ref_labels, d, _, _ = _reference_step(X, sample_weight, centers)
        np.testing.assert_array_equal(d[np.arange(1000), labels], d.min(1))
        np.testing.assert_allclose(engine.assigned_distances(X, centers, labels), d[np.arange(1000), labels], rtol=1e-12 if dtype == np.float64 else 1e-6)
        np.testing.assert_allclose(
            engine.inertia(X, sample_weight, centers, labels), (d.min(1) * sample_weight).sum(), rtol=1e-6
        )
        np.testing.assert_allclose(engine.pairwise_distances(X, centers), np.sqrt(d), rtol=1e-5, atol=1e-5)
        closest = d[:, 0].astype(dtype)
        ids = np.array(candidate_ids, dtype=np.int64)
        dist, pot = engine.kmeanspp_candidates(X, engine.row_norms(X), sample_weight, ids, closest)
        X64 = X.astype(np.float64)
        ref = np.minimum(((X64[None] - X64[ids][:, None]) ** 2).sum(-1), closest)
        # ||x||^2 - 2 x.c + ||c||^2 with the dot product in X's dtype: off by up to its
        # rounding of the norms (a candidate's distance to itself is not exactly 0).
        norms = (X64 ** 2).sum(axis=1)
        rounding = 4 * (n_features + 2) * np.finfo(dtype).eps * 2 * norms.max()
        np.testing.assert_allclose(dist, ref, rtol=1e-4, atol=max(1e-3, rounding))
        np.testing.assert_allclose(pot, dist.astype(np.float64) @ sample_weight.astype(np.float64), rtol=1e-10)


@pytest.mark.parametrize("n_candidates", [5, 6, 7, 8, 9, 10, 11, 13])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [65, 200, 512, 513])
def test_kmeanspp_step_gives_each_row_the_same_bits_wherever_it_lies(dtype, n_features,
                                                                   n_candidates, rng,
                                                                   monkeypatch):
    """Beyond 64 features a row's distances to the candidates come from the row alone
    (up to ROW_DOTS_MAX_FEATURES) or from blocks of six rows that overlap at the end
    (beyond): either way its bits do not depend on its place in X, hence on the chunk,
    group or streamed block it falls in. Rows shuffled, on one thread and on two."""
    from gpukmeans import _cpu_runtime

    assert _cpu_kmeanspp.ROW_DOTS_MAX_FEATURES == 512
    n_samples = 2 * _cpu_kmeanspp.KMEANSPP_CHUNK_ROWS + 1001
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    order = rng.permutation(n_samples)
    inverse = np.argsort(order)
    ids = rng.choice(n_samples, n_candidates, replace=False)
    weight = np.ones(n_samples, dtype=dtype)
    norms = _cpu.row_norms_f64(X)
    closest = np.full(n_samples, np.inf, dtype=dtype)
    monkeypatch.setattr(_cpu_runtime, "SERIAL_MAX_WORK", 0)  # the parallel kernel
    results = []
    with _cpu.cpu_runtime():
        for n_threads in (1, 2):
            _cpu_runtime.set_num_threads(n_threads)
            try:
                dist, _ = _cpu.kmeanspp_candidates(X, norms, weight, ids, closest)
                shuffled, _ = _cpu.kmeanspp_candidates(X[order], norms[order], weight,
                                                       inverse[ids], closest)
            finally:
                _cpu_runtime.set_num_threads(_cpu_runtime.numba.config.NUMBA_NUM_THREADS)
            np.testing.assert_array_equal(shuffled[:, inverse], dist)
            results.append(dist)
    np.testing.assert_array_equal(results[0], results[1])
    X64 = X.astype(np.float64)
    reference = ((X64[None] - X64[ids][:, None]) ** 2).sum(-1)
    tol = 8 * (n_features + 2) * np.finfo(dtype).eps * (norms.max() + norms[ids].max())
    assert np.all(np.abs(dist - reference) <= tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [1, 8, 9, 32])
def test_panel_dots_give_each_row_the_same_bits_wherever_its_block_starts(dtype, n_features,
                                                                         rng):
    """_cpu_panel.panel_chunk_dots: whole blocks by the vector kernel, the rest one
    multiply-add at a time, both in feature order, so a row's dot products do not depend
    on whether it fell in a block or in the rest; against float64 too."""
    from gpukmeans import _cpu_panel

    block = _cpu_panel.block_rows(np.dtype(dtype).itemsize)
    n_samples = 3 * block + 17
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    X_t = np.ascontiguousarray(X.T)
    candidates = X[rng.integers(0, n_samples, 5)] + dtype(0.5)
    reference = candidates.astype(np.float64) @ X.T.astype(np.float64)
    whole = np.full((5, n_samples), np.nan, dtype=dtype)
    _cpu_panel.panel_chunk_dots(X_t, 0, n_samples, candidates, whole)
    tol = 4 * n_features * np.finfo(dtype).eps
    scale = np.abs(candidates).astype(np.float64) @ np.abs(X.T).astype(np.float64)
    assert np.all(np.abs(whole - reference) <= tol * scale)
    for start in (1, block - 3, block + 5, 2 * block + 16):
        end = min(n_samples, start + block + 7)
        part = np.full((5, end - start), np.nan, dtype=dtype)
        _cpu_panel.panel_chunk_dots(X_t, start, end, candidates, part)
        np.testing.assert_array_equal(part, whole[:, start:end])
    rows_t = np.empty((n_features, 40), dtype=dtype)
    _cpu_panel.transpose_rows(X, 7, 47, rows_t)
    np.testing.assert_array_equal(rows_t, X[7:47].T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [1, 3, 16, 17, 33])
@pytest.mark.parametrize("n_clusters", [1, 5, 6, 7, 13, 70])
def test_panel_nearest_folds_in_registers_what_the_values_fold_in_memory(
        dtype, n_features, n_clusters, rng):
    """_cpu_panel.panel_chunk_nearest (sums of a few centers by a few vectors of rows in
    registers, folded there, the last block padded with zero rows) against each center's
    values by panel_chunk_dots then folded by _cpu_nearest._fold_centers: the same
    nearest, smallest and second smallest values, bit for bit, on chunks of whole and
    partial blocks, a group of centers and the centers after the last group, copies of
    one center (exact ties: the lower index keeps them), tails a block less a vector or
    fewer rows (a block a vector narrower) and more; and the nearest are the exactly
    nearest centers, from float64, where the gap is clear."""
    from gpukmeans import _cpu_nearest, _cpu_panel

    block = _cpu_panel.nearest_block_rows(np.dtype(dtype).itemsize)
    n_samples = max(4 * block + 11, 260)
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    centers = X[rng.integers(0, n_samples, n_clusters)] + dtype(0.25)
    centers[n_clusters // 2:: 3] = centers[0]
    minus_two_centers = -2 * centers
    norms = (centers.astype(np.float64) ** 2).sum(axis=1).astype(dtype)
    lanes = block // _cpu_panel.NEAREST_VECTORS
    # Tails of a block less a vector or fewer rows (a narrower block: 256-row chunks with
    # AVX2) and of more (padded to a whole block).
    for start, end in ((0, n_samples), (0, 3 * block), (block + 1, 2 * block + 7),
                       (n_samples - 5, n_samples), (0, 2 * block + block - lanes),
                       (3, block + block - lanes + 4), (0, 256)):
        n_rows = end - start
        results = []
        for by_registers in (True, False):
            best = np.full(n_rows + 3, -1, np.int32)
            best_value, second_value = (np.full(n_rows + 3, np.nan, dtype) for _ in range(2))
            if by_registers:
                scratch = np.full(_cpu_panel.panel_scratch_size(X.itemsize, n_features, n_rows),
                                  np.nan, dtype)
                _cpu_panel.panel_chunk_nearest(X, start, end, minus_two_centers, norms, scratch,
                                               best, best_value, second_value)
            else:
                values = np.empty((n_clusters, n_rows), dtype)
                _cpu_panel.panel_chunk_dots(np.ascontiguousarray(X.T), start, end,
                                            minus_two_centers, values)
                _cpu_nearest._start_nearest_two(n_rows, best, best_value, second_value)
                _cpu_nearest._fold_centers(values, 0, n_clusters, norms, 0, n_rows, best,
                                           best_value, second_value)
            assert np.all(best[n_rows:] == -1) and np.isnan(best_value[n_rows:]).all()
            results.append((best[:n_rows], best_value[:n_rows], second_value[:n_rows]))
        for by_registers, by_values in zip(*results):
            np.testing.assert_array_equal(by_registers, by_values)
        exact = ((X[start:end, None].astype(np.float64) - centers.astype(np.float64)) ** 2).sum(-1)
        ordered = np.sort(exact, axis=1)
        clear = (ordered[:, 1] - ordered[:, 0] if n_clusters > 1 else np.inf) > 1e-3
        np.testing.assert_array_equal(results[0][0][clear], exact.argmin(axis=1)[clear])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_rows_are_the_rows_transposed(dtype, rng):
    """_cpu_panel.transpose_rows: squares of a vector's lanes transposed in registers,
    the rows and features after them element by element; every shape gives ``X.T``
    exactly, and nothing is written past the rows (NaN left there). Feature counts below,
    at and past a square's side (16 float32 or 8 float64 lanes with AVX-512, half with
    AVX2), row counts across the squares and the 256-row blocks, windows not at 0."""
    from gpukmeans import _cpu_panel

    lanes = _cpu_panel.tile_lanes(np.dtype(dtype).itemsize)
    for n_features in sorted({1, 2, 3, lanes - 1, lanes, lanes + 1, 2 * lanes - 3, 2 * lanes,
                              2 * lanes + 5, 40}):
        X = rng.normal(size=(700, n_features)).astype(dtype)
        for start, end in [(0, 0), (0, 1), (3, 3 + lanes - 1), (5, 5 + lanes),
                           (0, 2 * lanes + 3), (1, 257), (7, 600), (0, 700)]:
            out = np.full((n_features, end - start + 9), np.nan, dtype=dtype)
            _cpu_panel.transpose_rows(X, start, end, out)
            np.testing.assert_array_equal(out[:, :end - start], X[start:end].T)
            assert np.isnan(out[:, end - start:]).all()
        np.testing.assert_array_equal(_cpu.feature_major(X), X.T)


@pytest.mark.parametrize("dtype, bits", [(np.float32, 12), (np.float64, 27)])
def test_fused_multiply_add_rounds_once(dtype, bits):
    """(1 + 2^-b)^2 - 1 = 2^(1-b) + 2^-2b, which a multiply rounded before the add loses:
    the panel's last rows take the vectors' one rounding on any CPU."""
    from numba import njit

    from gpukmeans import _cpu_panel

    fma = njit(lambda x, y, z: _cpu_panel.fused_multiply_add(x, y, z))
    x = dtype(1 + 2.0**-bits)
    assert fma(x, x, dtype(-1)) == dtype(2.0**(1 - bits) + 2.0**(-2 * bits))
    assert x * x - dtype(1) == dtype(2.0**(1 - bits))


def test_kmeanspp_steps_by_panel_by_shape_and_dtype():
    """Dot products over feature-major rows up to 8 features, and for float32 up to 32
    while X transposed fits in 256 MiB; the GEMM elsewhere. X transposed once only while
    the copy fits, and for three centers or more (two take two passes over X, which
    do not repay the copy)."""
    by_panel = _cpu_kmeanspp.by_panel
    assert by_panel(10**7, 8, 8) and not by_panel(10**5, 9, 8)
    assert by_panel(10**5, 32, 4) and not by_panel(10**5, 33, 4)
    assert by_panel(2**21, 32, 4) and not by_panel(2**21 + 1, 32, 4)
    assert by_panel(10**9, 2, 4)
    # X is transposed once for the steps only while the copy fits in 256 MiB, and
    # only for three centers or more.
    transposes_once = _cpu_kmeanspp.transposes_once
    assert transposes_once(2**22, 8, 8, 3) and not transposes_once(2**22 + 1, 8, 8, 3)
    assert transposes_once(2**21, 32, 4, 3) and not transposes_once(10**5, 33, 4, 3)
    assert not transposes_once(10**5, 8, 4, 2) and transposes_once(10**5, 8, 4, 16)


def _count_transpositions(monkeypatch):
    """A list that gains an item at each X the CPU engine transposes for k-means++."""
    transposed = []
    feature_major = _cpu.feature_major
    monkeypatch.setattr(_cpu, "feature_major", lambda X: transposed.append(1) or feature_major(X))
    return transposed


@pytest.mark.parametrize("dtype, n_features", [
    (np.float32, 3), (np.float32, 20), (np.float32, 40), (np.float64, 8), (np.float64, 20)])
def test_kmeanspp_steps_on_x_transposed_once_are_the_chunked_steps(dtype, n_features, rng,
                                                                   monkeypatch):
    """The engine's start_kmeanspp transposes X once where the steps take their dot
    products over feature-major rows, and its steps are those of a start that may not
    copy X (each chunk transposed, as a streamed step does) bit for bit, on 1 and 2
    threads."""
    from gpukmeans import _cpu_runtime

    n_samples = 3 * _cpu_kmeanspp.KMEANSPP_CHUNK_ROWS + 301
    X = rng.normal(size=(n_samples, n_features)).astype(dtype) + 2
    sample_weight = rng.uniform(0.5, 2, n_samples).astype(dtype)
    norms = _cpu.row_norms_f64(X)
    closest = rng.uniform(0, 4 * n_features, n_samples).astype(dtype)
    ids = rng.integers(0, n_samples, 6)
    monkeypatch.setattr(_cpu_runtime, "SERIAL_MAX_WORK", 0)  # the parallel kernel
    transposed = _count_transpositions(monkeypatch)
    with _cpu.cpu_runtime():
        step = _cpu.start_kmeanspp(X, norms, sample_weight, 8)
        assert len(transposed) == _cpu_kmeanspp.by_panel(n_samples, n_features, X.itemsize)
        chunked_step = _cpu.start_kmeanspp(X, norms, sample_weight, 2)  # two passes
        assert len(transposed) == _cpu_kmeanspp.by_panel(n_samples, n_features, X.itemsize)
        for n_threads in (1, 2):
            _cpu_runtime.set_num_threads(n_threads)
            try:
                distances, pot = step(ids, closest)
                chunked = chunked_step(ids, closest)
            finally:
                _cpu_runtime.set_num_threads(_cpu_runtime.numba.config.NUMBA_NUM_THREADS)
            np.testing.assert_array_equal(distances, chunked[0])
            np.testing.assert_array_equal(pot, chunked[1])
    X64 = X.astype(np.float64)
    reference = np.minimum(((X64[None] - X64[ids][:, None]) ** 2).sum(-1), closest)
    np.testing.assert_allclose(distances, reference, rtol=1e-4, atol=1e-3)


def test_mixed_engine_takes_small_float64_kmeanspp_steps_on_numpy(rng, monkeypatch):
    """The Numba engine of a fit too large for NumPy takes a float64 k-means++ step with
    few (sample, candidate) pairs on NumPy, scikit-learn's operations, and prepares its
    own steps (X transposed) at the first larger one only."""
    n_samples, n_features = 20000, 4
    assert not _cpu_small.is_small(n_samples, n_features, 32)
    engine = _cpu_small.cpu_engine(n_samples, n_features, 32)
    X = rng.normal(size=(n_samples, n_features))
    sample_weight = rng.uniform(0.5, 2, n_samples)
    norms = _cpu.row_norms_f64(X)
    closest = np.full(n_samples, np.inf)
    transposed = _count_transpositions(monkeypatch)
    with engine.runtime():
        step = engine.start_kmeanspp(X, norms, sample_weight, 32)
        first = step(np.array([3]), closest)
        assert transposed == []
        np.testing.assert_array_equal(first[0], _cpu_small.kmeanspp_candidates(
            X, norms, sample_weight, np.array([3]), closest)[0])
        ids = rng.integers(0, n_samples, 5)
        closest = first[0][0]
        later = step(ids, closest)
        assert transposed == [1]
        np.testing.assert_array_equal(
            later[0], _cpu.kmeanspp_candidates(X, norms, sample_weight, ids, closest)[0])
        step(ids, closest)
        assert transposed == [1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeanspp_search_is_numpys_cumsum_and_searchsorted(dtype, rng):
    """The compiled draw of k-means++'s local trials finds what ``searchsorted`` on the
    float64 ``cumsum`` finds, clipped to the last sample: on running sums met exactly
    (after samples of zero weight or distance, the first of equal sums), at 0, at the
    total, past it, NaN, and a target repeated."""
    n_samples = 5000
    sample_weight = rng.uniform(0, 2, n_samples).astype(dtype)
    closest_dist_sq = rng.uniform(0, 5, n_samples).astype(dtype)
    sample_weight[:10] = 0
    sample_weight[rng.choice(n_samples, 100)] = 0
    closest_dist_sq[rng.choice(n_samples, 100)] = 0
    cumulative = np.cumsum(sample_weight.astype(np.float64) * closest_dist_sq)
    total = cumulative[-1]
    targets = np.concatenate([
        rng.uniform(0, 1, 20) * total, cumulative[rng.choice(n_samples, 20)],
        [0.0, total, np.nextafter(total, np.inf), 2 * total, np.nan],
        [cumulative[100]] * 2,
    ])
    targets = targets[rng.permutation(targets.shape[0])]
    found = _cpu_kmeanspp.kmeanspp_search(sample_weight, closest_dist_sq, targets)
    assert found.dtype == np.int64
    np.testing.assert_array_equal(
        found, np.minimum(np.searchsorted(cumulative, targets), n_samples - 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_draw_is_numpys_choice(dtype, rng):
    """k-means++'s first center drawn as ``RandomState.choice(n, p=w / w.sum())`` draws
    it, and the random state left where ``choice`` leaves it: on unit, random and mostly
    zero weights, a single positive weight, and draws near 0 and 1 (seeds that give
    them)."""
    def cases():
        for n_samples in (1, 2, 7, 1000, 100_003):
            yield np.ones(n_samples, dtype=dtype)
            yield rng.uniform(0, 3, n_samples).astype(dtype)
            sparse_weights = np.zeros(n_samples, dtype=dtype)
            sparse_weights[rng.choice(n_samples, max(1, n_samples // 50))] = 1.5
            yield sparse_weights
        one = np.zeros(5000, dtype=dtype)
        one[4321] = 0.25
        yield one

    seeds = [int(seed) for seed in rng.integers(2**31, size=3)]
    draws = [np.random.RandomState(seed).random_sample() for seed in range(2000)]
    seeds += [int(np.argmin(draws)), int(np.argmax(draws))]
    for sample_weight in cases():
        for seed in seeds:
            expected_state = np.random.RandomState(seed)
            expected = expected_state.choice(sample_weight.shape[0],
                                             p=sample_weight / sample_weight.sum())
            state = np.random.RandomState(seed)
            assert _cpu_kmeanspp.weighted_draw(state, sample_weight) == expected
            assert state.random_sample() == expected_state.random_sample()
        # Draws exactly on NumPy's cdf values and just below them: the first index whose
        # cdf exceeds the draw, so the cdf must be NumPy's to the bit.
        weight_sum = sample_weight.sum()
        cdf = (sample_weight / weight_sum).astype(np.float64).cumsum()
        cdf /= cdf[-1]
        at = rng.choice(cdf.shape[0], min(cdf.shape[0], 20), replace=False)
        for uniform in np.concatenate([cdf[at], np.nextafter(cdf[at], -np.inf)]):
            if 0 <= uniform < 1:
                assert (_cpu_kmeanspp._weighted_draw(sample_weight, weight_sum, uniform)
                        == np.searchsorted(cdf, uniform, side="right"))


@pytest.mark.parametrize("n_clusters", [1, 3, 4, 5, 6, 8, 10, 11, 64])
@pytest.mark.parametrize("chunk_start, chunk_end", [(0, 256), (5, 17), (250, 253)])
def test_blocked_dots_against_float64_reference(n_clusters, chunk_start, chunk_end, rng):
    """Every row and center, including those left over from the blocks (BLOCK_ROWS x
    BLOCK_CENTERS; one short of a block: an overlapping whole block; fewer: a block of
    two); and each
    row's norm, taken as its block is first read: the one the engine takes of the row
    alone (its labels' margins), bit for bit, with the same dot products as without."""
    X = rng.normal(size=(300, 37)).astype(np.float32)
    centers = rng.normal(size=(n_clusters, 37)).astype(np.float32)
    rows, n_rows = np.arange(chunk_start, chunk_end), chunk_end - chunk_start
    dots = np.full((n_rows, n_clusters), np.nan, np.float32)
    norms = np.full(n_rows, np.nan)
    _cpu_nearest._rows_dots_blocked(X, rows, n_rows, centers, dots, norms)
    expected = X[chunk_start:chunk_end].astype(np.float64) @ centers.T.astype(np.float64)
    scale = np.abs(X[chunk_start:chunk_end]).astype(np.float64) @ np.abs(centers.T).astype(np.float64)
    assert np.all(np.abs(dots - expected) <= 1e-6 * scale)
    np.testing.assert_array_equal(
        norms, [_cpu_nearest._squared_norm_f64(x) for x in X[chunk_start:chunk_end]])
    np.testing.assert_allclose(norms, (X[chunk_start:chunk_end].astype(np.float64) ** 2).sum(1),
                               rtol=1e-12)
    dots_alone = np.full((n_rows, n_clusters), np.nan, np.float32)
    _cpu_nearest._rows_dots_blocked(X, rows, n_rows, centers, dots_alone, np.empty(0))
    np.testing.assert_array_equal(dots_alone, dots)


@pytest.mark.parametrize("n_clusters", [10, 11])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [1, 7, 8, 16, 17, 48, 784])
def test_blocked_dots_of_any_width_into_a_transposed_output(dtype, n_features, n_clusters,
                                                            rng):
    """The blocks of :data:`gpukmeans._cpu_panel.BLOCK_ROWS` x ``BLOCK_CENTERS`` (6 x 4
    with 512-bit vectors, 4 x 3 else) and the leftover centers' blocks (10 clusters:
    4 + 4 + 2 or 3 + 3 + 3 and two overlapping; 11: overlapping whole blocks) in LLVM
    IR: fewer features than a vector's lanes, whole vectors, whole vectors and a
    remainder; into ``dots`` as given and into a transposed view (the fold's layout),
    the same bits; within the float64 product's rounding bound of a float64 reference;
    rows gathered by index in any order."""
    X = rng.normal(size=(40, n_features)).astype(dtype)
    centers = rng.normal(size=(n_clusters, n_features)).astype(dtype)
    rows = rng.choice(40, 13).astype(np.int64)
    dots = np.full((13, n_clusters), np.nan, dtype)
    _cpu_nearest._rows_dots_blocked(X, rows, 13, centers, dots, np.empty(0))
    transposed = np.full((n_clusters, 13), np.nan, dtype)
    _cpu_nearest._rows_dots_blocked(X, rows, 13, centers, transposed.T, np.empty(0))
    np.testing.assert_array_equal(transposed.T, dots)
    expected = X[rows].astype(np.float64) @ centers.T.astype(np.float64)
    scale = np.abs(X[rows]).astype(np.float64) @ np.abs(centers.T).astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    assert np.all(np.abs(dots - expected) <= (n_features + 2) * eps * scale)


def _block_driver(n_rows, n_centers):
    from numba import njit

    from gpukmeans._cpu_panel import _make_block_dots

    block_dots = _make_block_dots(n_rows, n_centers)

    @njit
    def drive(X, rows, centers, dots):
        for r in range(0, rows.shape[0] - n_rows + 1, n_rows):
            for center in range(0, centers.shape[0] - n_centers + 1, n_centers):
                block_dots(X, rows, r, centers, center, dots)

    return drive


def test_a_blocks_shape_changes_no_products_bits(rng):
    """The engine takes 6 x 4 blocks with 512-bit vectors and 4 x 3 with 256-bit ones
    (the registers each CPU has), and blocks of two for leftover centers: a (row,
    center) pair's product is the same operations in a block of any shape, so the
    choice changes no bits (12 rows, 12 centers: every shape covers all of them)."""
    for n_features in (5, 37, 784):
        X = rng.normal(size=(30, n_features)).astype(np.float32)
        rows = rng.choice(30, 12).astype(np.int64)
        centers = rng.normal(size=(12, n_features)).astype(np.float32)
        products = []
        for n_rows, n_centers in [(6, 4), (4, 3), (6, 2)]:
            dots = np.full((12, 12), np.nan, np.float32)
            _block_driver(n_rows, n_centers)(X, rows, centers, dots)
            products.append(dots)
        assert not np.isnan(products[0]).any()
        for dots in products[1:]:
            np.testing.assert_array_equal(dots, products[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_features", [1, 8, 15, 16, 33, 47, 48, 49, 65, 784])
def test_row_dots_of_any_width(dtype, n_features, rng):
    """One row against a few centers, two, four or eight at a time (four and eight in
    LLVM IR with 512-bit vectors and two chains per center where the CPU has them,
    :func:`gpukmeans._cpu_panel.row_dots_1x4`): widths below a vector, at whole rounds
    of chains, with one vector and with a remainder left over; every count of centers
    passes of eight, four and two and single products cover; within the float64 product's
    rounding bound; k-means++'s two ways (overlapping fours, and passes by rows) agree
    where they take the same kernels (one and four centers)."""
    X = rng.normal(size=(5, n_features)).astype(dtype)
    eps = float(np.finfo(dtype).eps)
    for n_centers in range(1, 12):
        centers = rng.normal(size=(_cpu_nearest.padded_centers(n_centers), n_features))
        centers = centers.astype(dtype)
        by_rows = np.full((5, centers.shape[0]), np.nan, dtype)
        _cpu_nearest._chunk_dots_by_rows(X, 0, 5, centers, n_centers, by_rows)
        expected = X.astype(np.float64) @ centers.T.astype(np.float64)
        scale = np.abs(X).astype(np.float64) @ np.abs(centers.T).astype(np.float64)
        bound = (n_features + 2) * eps * scale
        assert np.all(np.abs(by_rows[:, :n_centers] - expected[:, :n_centers])
                      <= bound[:, :n_centers]), n_centers
        # A chunk that starts further in: its rows' products at the chunk's rows.
        later = np.full((5, centers.shape[0]), np.nan, dtype)
        _cpu_nearest._chunk_dots_by_rows(X, 2, 5, centers, n_centers, later)
        np.testing.assert_array_equal(later[:3, :n_centers], by_rows[2:, :n_centers])
        assert np.all(np.isnan(later[3:]))
        for i in range(5):
            row = np.full((2, n_centers), np.nan, dtype)
            _cpu_nearest._row_dots(X, i, centers[:n_centers], row, 1)
            assert np.all(np.isnan(row[0]))
            assert np.all(np.abs(row[1] - expected[i, :n_centers]) <= bound[i, :n_centers])
            # The same kernels: a single product for one center, one pass of four for
            # four.
            shared = n_centers if n_centers in (1, 4) else 0
            np.testing.assert_array_equal(row[1, :shared], by_rows[i, :shared])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_clusters", [5, 6, 7, 10])
def test_blocked_dots_do_not_depend_on_where_the_row_lies(n_clusters, dtype, rng):
    """The overlapping tail blocks make each (row, center) product come from the same
    code: a sample's label cannot change with the rows around it (predict on a slice).
    The leftover centers (here one, two and three) take the same kernel for every row."""
    X = rng.normal(size=(300, 50)).astype(dtype)
    centers = rng.normal(size=(n_clusters, 50)).astype(dtype)
    whole = np.empty((256, n_clusters), dtype)
    _cpu_nearest._rows_dots_blocked(X, np.arange(256), 256, centers, whole, np.empty(0))
    for chunk_start, chunk_end in [(3, 11), (100, 107), (249, 256)]:
        part = np.empty((chunk_end - chunk_start, n_clusters), dtype)
        _cpu_nearest._rows_dots_blocked(X, np.arange(chunk_start, chunk_end), chunk_end - chunk_start, centers, part,
                                        np.empty(0))
        np.testing.assert_array_equal(part, whole[chunk_start:chunk_end])


def _bisectors(rng, n_samples, n_features, n_clusters):
    """Samples near the bisector of two random centers: each two nearest centers tie
    in exact arithmetic (one center: plain normal samples)."""
    centers = rng.normal(size=(n_clusters, n_features)) * 3
    if n_clusters == 1:
        return rng.normal(size=(n_samples, n_features)), centers
    a = rng.integers(0, n_clusters, n_samples)
    b = (a + 1 + rng.integers(0, n_clusters - 1, n_samples)) % n_clusters
    axis = centers[b] - centers[a]
    offset = rng.normal(size=(n_samples, n_features)) * 0.1
    offset -= (np.einsum("ij,ij->i", offset, axis) / np.einsum("ij,ij->i", axis, axis))[:, None] * axis
    return (centers[a] + centers[b]) / 2 + offset, centers


def _plain_step(X, sample_weight, centers, dots_kernel, x_squared_norms=np.empty(0)):
    from gpukmeans._cpu_small import fold_rows, n_chunks, n_groups

    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    labels = np.full(n_samples, -1, np.int32)
    with _cpu.cpu_runtime():
        sums, weights = _cpu_lloyd._lloyd_chunked(
            X, sample_weight, centers, _cpu_small.centers_squared_norms(centers), labels,
            x_squared_norms, _cpu_small.CHUNK_ROWS, fold_rows(n_clusters),
            n_groups(n_chunks(n_samples), n_clusters, n_features), True, dots_kernel,
            _cpu_small.bound_margin_coefficient(X.dtype, n_features), X.dtype == np.float32,
        )
    return labels, sums, weights


_DOTS_KERNELS = {"gemm": _cpu_lloyd.GEMM, "blocked": _cpu_lloyd.BLOCKED,
                 "by-rows": _cpu_lloyd.BY_ROWS, "by-gemm": _cpu_lloyd.BY_GEMM,
                 "by-panel": _cpu_lloyd.BY_PANEL}


@pytest.mark.parametrize("kernel", ["blocked", "by-rows", "by-gemm", "by-panel"])
@pytest.mark.parametrize("data", ["normal", "far", "integers", "bisectors"])
@pytest.mark.parametrize("n_samples, n_features, n_clusters", [
    (700, 2, 5), (1300, 3, 40), (900, 8, 1), (2000, 16, 33), (1500, 33, 1100),
    (1700, 24, 7), (900, 64, 32), (1100, 40, 16), (800, 12, 3)])
def test_every_plain_kernel_gives_the_gemm_labels_and_sums(
        kernel, data, n_samples, n_features, n_clusters, rng):
    """Whatever computes ``x . c``, float32 labels are exactly the nearest centers and
    float64 labels are those of scikit-learn's GEMM call (the GEMM kernel), also on
    integer data full of exact ties, which the other kernels hand back to that GEMM;
    and the sums are the same. 1,100 centers take two GEMM tiles of centers. On
    "bisectors" every sample is equidistant from two centers up to rounding: which one
    wins depends on the order of the sums, so float64 rows that near go by the GEMM's.
    (OpenBLAS's dot products add in feature order with fused multiply-adds, as the
    kernel by rows does: there both orders agree anyway.)"""
    if data == "bisectors":
        X, centers64 = _bisectors(rng, n_samples, n_features, n_clusters)
    elif data == "integers":
        X = rng.integers(-3, 4, (n_samples, n_features)).astype(np.float64)
    else:
        X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 3, n_features)
        X += 30.0 if data == "far" else 0.0
    sample_weight = rng.uniform(0.5, 2, n_samples)
    # The blocked kernel sums in its own order; the engine uses it for float32 only.
    for dtype in (np.float32,) if kernel == "blocked" else (np.float32, np.float64):
        Xd, weight = X.astype(dtype), sample_weight.astype(dtype)
        centers = Xd[rng.choice(n_samples, n_clusters, replace=False)].copy()
        if data == "bisectors":
            centers = centers64.astype(dtype)
        if data == "integers":  # duplicate centers: exact ties for every sample of theirs
            centers[n_clusters // 2:] = centers[: n_clusters - n_clusters // 2]
        labels, sums, weights = _plain_step(Xd, weight, centers, _DOTS_KERNELS[kernel])
        gemm_labels, gemm_sums, gemm_weights = _plain_step(Xd, weight, centers, _cpu_lloyd.GEMM)
        if dtype == np.float32:
            assert_labels_exactly_nearest(labels, Xd, centers)
        else:
            np.testing.assert_array_equal(labels, gemm_labels)
        if np.array_equal(labels, gemm_labels):
            np.testing.assert_array_equal(sums, gemm_sums)
            np.testing.assert_array_equal(weights, gemm_weights)
        # A run hands the kernels its row norms instead of having them computed again.
        run_labels, _, _ = _plain_step(Xd, weight, centers, _DOTS_KERNELS[kernel],
                                       _cpu.row_norms_f64(Xd))
        np.testing.assert_array_equal(run_labels, labels)


def test_the_gemm_by_rows_takes_every_way_in_those_cases():
    """The cases above reach every way of :func:`_chunk_nearest_by_gemm`: the GEMM rows x
    centers (few clusters, float32), float64's blocked kernel (few clusters) and the GEMM
    centers x rows."""
    from gpukmeans._cpu_nearest import gemm_rows_first, values_by_blocks

    assert gemm_rows_first(4, 24, 7) and gemm_rows_first(4, 64, 32)
    assert not gemm_rows_first(8, 24, 7) and not gemm_rows_first(4, 16, 33)
    assert not gemm_rows_first(4, 8, 1) and not gemm_rows_first(4, 33, 1100)
    assert values_by_blocks(8, 40, 16) and values_by_blocks(8, 12, 3)
    assert not values_by_blocks(4, 40, 16) and not values_by_blocks(8, 24, 7)
    assert not values_by_blocks(8, 64, 32) and not values_by_blocks(8, 33, 1100)


def test_the_plain_step_kernel_by_shapes():
    """Up to 64 features, float32 over the chunk transposed for few features and
    clusters (from 33 features, from BY_PANEL_MANY_WIDE_MIN_CLUSTERS), else by rows or a
    GEMM folded by rows; beyond, float32 takes the blocked kernel for at most one
    cluster per BLOCKED_FEATURES_PER_CLUSTER features while its centers fit in
    BLOCKED_MAX_CENTER_BYTES (it rereads them for every block of rows; beyond
    BLOCKED_WIDE_FEATURES features, BLOCKED_WIDE_MAX_CENTER_BYTES), else the GEMM folded
    by rows up to BY_GEMM_F32_MAX_FEATURES; the rest the GEMM as scikit-learn calls it. float64
    beyond the kernel by rows takes float32 products for all but a few clusters, and
    always beyond 128 features (by the blocked kernel from there only)."""

    def kernel(dtype, n_features, n_clusters):
        return _cpu._dots_kernel(np.empty((1, n_features), dtype=dtype), n_clusters)

    # float32 over the chunk transposed up to 24 features and 48 clusters, 8 where the
    # kernel by rows would run (_cpu.py's table), before both; from 25 to 32 features
    # with 4 to 48 clusters; from 49 clusters up to 32 features, from 24 up to 128.
    wide_min = _cpu.BY_PANEL_WIDE_MIN_CLUSTERS
    assert wide_min == 4
    # From 33 to 128 features, many clusters: from 24 (measured on a Zen 4 and a Zen 3,
    # 512- and 256-bit vectors).
    many_wide_min = _cpu.BY_PANEL_MANY_WIDE_MIN_CLUSTERS
    assert many_wide_min == 24
    assert (kernel(np.float32, 33, many_wide_min) == kernel(np.float32, 128, many_wide_min)
            == _cpu_lloyd.BY_PANEL)
    assert (kernel(np.float32, 33, many_wide_min - 1)
            == kernel(np.float32, 128, many_wide_min - 1) == _cpu_lloyd.BY_GEMM)
    assert kernel(np.float64, 64, many_wide_min) == _cpu_lloyd.NARROWED_PANEL
    assert kernel(np.float64, 64, many_wide_min - 1) == _cpu_lloyd.NARROWED
    assert (kernel(np.float32, 1, 1) == kernel(np.float32, 4, 8) == kernel(np.float32, 5, 48)
            == kernel(np.float32, 24, 48) == kernel(np.float32, 25, wide_min)
            == kernel(np.float32, 32, wide_min) == kernel(np.float32, 25, 16)
            == kernel(np.float32, 32, 16) == kernel(np.float32, 32, 48)
            == kernel(np.float32, 4, 49) == kernel(np.float32, 24, 49)
            == kernel(np.float32, 32, 49) == kernel(np.float32, 2, 16384)
            == kernel(np.float32, 33, 128) == kernel(np.float32, 128, 4096)
            == _cpu_lloyd.BY_PANEL)
    assert (kernel(np.float32, 4, 9) == kernel(np.float32, 4, 16) == kernel(np.float32, 4, 48)
            == kernel(np.float64, 2, 2) == _cpu_lloyd.BY_ROWS)
    assert (kernel(np.float32, 25, wide_min - 1) == kernel(np.float32, 32, 2)
            == kernel(np.float32, 33, 16) == kernel(np.float32, 129, 4096)
            == kernel(np.float64, 12, 2) == _cpu_lloyd.BY_GEMM)
    assert kernel(np.float32, 4, 48) == kernel(np.float64, 8, 3) == _cpu_lloyd.BY_ROWS
    assert kernel(np.float64, 9, 3) == _cpu_lloyd.BY_GEMM
    per_cluster = _cpu.BLOCKED_FEATURES_PER_CLUSTER
    assert (kernel(np.float32, 784, 10) == kernel(np.float32, 784, 784 // per_cluster)
            == kernel(np.float32, 129, 1) == kernel(np.float32, 65, 8)
            == kernel(np.float32, 128, 16) == _cpu_lloyd.BLOCKED)
    # From 65 features (_cpu.py's table: at 64 the GEMM folded by rows won).
    assert (kernel(np.float32, 64, 8) == kernel(np.float32, 65, 9)
            == kernel(np.float32, 128, 17) == _cpu_lloyd.BY_GEMM)
    assert kernel(np.float32, 784, 784 // per_cluster + 1) == _cpu_lloyd.GEMM
    widest = _cpu.BY_GEMM_F32_MAX_FEATURES
    assert (kernel(np.float32, 129, 129 // per_cluster + 1) == kernel(np.float32, widest, 4096)
            == _cpu_lloyd.BY_GEMM)
    assert kernel(np.float32, widest + 1, 4096) == _cpu_lloyd.GEMM
    # Few clusters for their features, but more centers than the limit: beyond
    # BLOCKED_WIDE_FEATURES features a far lower limit (a block's rows outgrow L1), for
    # float32 data only.
    n_features = 4096
    n_clusters = _cpu.BLOCKED_MAX_CENTER_BYTES // (4 * n_features)
    assert n_clusters * per_cluster <= n_features
    wide = _cpu.BLOCKED_WIDE_FEATURES
    assert wide == 1024 and _cpu.BLOCKED_WIDE_MAX_CENTER_BYTES == 2**17
    assert kernel(np.float32, n_features, n_clusters) == _cpu_lloyd.GEMM
    assert (kernel(np.float32, n_features, 8) == kernel(np.float32, wide + 1, 31)
            == kernel(np.float32, wide, wide // per_cluster) == _cpu_lloyd.BLOCKED)
    assert (kernel(np.float32, n_features, 9) == kernel(np.float32, wide + 1, 32)
            == kernel(np.float32, 2048, 64) == _cpu_lloyd.GEMM)
    assert kernel(np.float32, wide, 32) == _cpu_lloyd.BLOCKED  # the same k, narrower
    assert kernel(np.float32, 2 * n_features, n_clusters) == _cpu_lloyd.GEMM
    # float64: float32 products from 4 clusters, from 16 below 16 features, always
    # beyond 128 features (by the blocked kernel or the panel where float32 takes
    # them, and by the blocked kernel beyond 1,024 features where float32 takes
    # the GEMM); never where the kernel by rows runs.
    assert (kernel(np.float64, 129, 1) == kernel(np.float64, 784, 98)
            == kernel(np.float64, n_features, n_clusters) == kernel(np.float64, 2048, 64)
            == _cpu_lloyd.NARROWED_BLOCKED)
    assert (kernel(np.float64, 784, 99) == kernel(np.float64, 2 * n_features, n_clusters)
            == kernel(np.float64, 33, 4) == kernel(np.float64, 33, many_wide_min - 1)
            == kernel(np.float64, 128, 4)
            == kernel(np.float64, 129, 4096) == _cpu_lloyd.NARROWED)
    assert (kernel(np.float64, 9, 16) == kernel(np.float64, 15, 16)
            == kernel(np.float64, 16, 4) == kernel(np.float64, 24, 48)
            == kernel(np.float64, 32, 16) == kernel(np.float64, 32, 16384)
            == kernel(np.float64, 33, 128) == kernel(np.float64, 128, 4096)
            == _cpu_lloyd.NARROWED_PANEL)
    for n_features, n_clusters in ((9, 16), (30, 3), (30, 4), (30, 15), (40, 127), (40, 128),
                                   (128, 4096), (129, 4096)):
        float32_kernel = kernel(np.float32, n_features, n_clusters)
        assert (kernel(np.float64, n_features, n_clusters) == _cpu_lloyd.NARROWED_PANEL) == (
            float32_kernel == _cpu_lloyd.BY_PANEL)
    assert (kernel(np.float64, 9, 15) == kernel(np.float64, 15, 15)
            == kernel(np.float64, 16, 3) == kernel(np.float64, 32, 3)
            == kernel(np.float64, 128, 3) == _cpu_lloyd.BY_GEMM)
    assert kernel(np.float64, 8, 4096) == _cpu_lloyd.BY_ROWS
    # The measured boundaries themselves (_cpu.py's table): MNIST to k=98 blocked, 160
    # features folded by rows from k=32.
    assert kernel(np.float32, 784, 98) == _cpu_lloyd.BLOCKED
    assert kernel(np.float32, 160, 32) == kernel(np.float32, 256, 64) == _cpu_lloyd.BY_GEMM


@pytest.mark.parametrize("n_features, n_clusters", [(65, 8), (100, 12), (129, 17), (300, 64),
                                                     (513, 70)])
def test_wide_float32_steps_agree_by_every_kernel(n_features, n_clusters, rng):
    """Beyond 64 features float32 takes the blocked kernel, the GEMM folded by rows or
    scikit-learn's GEMM call by its shapes (_dots_kernel): each labels every row with its
    exactly nearest center, the lower index of two equal ones, so the three plain steps
    are one: the same labels, sums and weights."""
    n_samples = int(rng.integers(300, 1500))
    X = (rng.normal(size=(n_samples, n_features)) + 3).astype(np.float32)
    sample_weight = rng.uniform(0.5, 2, n_samples).astype(np.float32)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)] + np.float32(0.01)
    centers[-1] = centers[0]
    steps = [_plain_step(X, sample_weight, centers, kernel)
             for kernel in (_cpu_lloyd.BLOCKED, _cpu_lloyd.BY_GEMM, _cpu_lloyd.GEMM)]
    for labels, _, _ in steps:
        assert_labels_exactly_nearest(labels, X, centers)
        assert n_clusters - 1 not in labels
    for labels, sums, weights in steps[1:]:
        np.testing.assert_array_equal(labels, steps[0][0])
        np.testing.assert_array_equal(sums, steps[0][1])
        np.testing.assert_array_equal(weights, steps[0][2])
    # The engine's own E-step, on the kernel its shapes choose.
    labels = np.empty(n_samples, dtype=np.int32)
    with _cpu.cpu_runtime():
        _cpu.e_step(X, centers, labels)
    np.testing.assert_array_equal(labels, steps[0][0])


@pytest.mark.parametrize("n_samples", [257, 262, 1])
def test_blocked_labels_with_a_short_last_block(n_samples, rng):
    """A chunk whose rows end in fewer than 6 (or one row in all): the blocked kernel's
    last block overlaps the previous one, or its per-row path runs; the labels are the
    exactly nearest centers either way, ties to the lowest index (duplicate centers)."""
    X = rng.normal(size=(n_samples, 140)).astype(np.float32) + np.float32(3)
    sources = rng.choice(n_samples, 9, replace=n_samples < 9)
    centers = X[sources] + np.float32(0.01)
    centers[5] = centers[2]
    labels, _, _ = _plain_step(X, np.ones(n_samples, np.float32), centers,
                               _cpu_lloyd.BLOCKED)
    assert_labels_exactly_nearest(labels, X, centers)
    assert 5 not in labels
    if n_samples > 1:  # the row under centers 2 and 5 takes the lower index
        assert labels[sources[2]] == 2


@pytest.mark.parametrize("kernel, dtype", [  # the blocked kernel is float32's only
    (kernel, dtype) for kernel in _DOTS_KERNELS for dtype in (np.float32, np.float64)
    if kernel != "blocked" or dtype == np.float32])
def test_labels_inertia_in_one_pass_is_bitwise_the_two_passes(kernel, dtype, rng):
    """The E-step that also measures each sample's distance (``distances``), with each
    way of computing ``x . c``: the same labels, and the inertia of those distances is
    bitwise the engine's ``inertia``; so is the engine's ``labels_inertia``."""
    n_samples, n_clusters = int(rng.integers(1, 3000)), int(rng.integers(1, 80))
    n_features = int(rng.integers(1, 200))
    X = (rng.normal(size=(n_samples, n_features)) + rng.uniform(-5, 5)).astype(dtype)
    sample_weight = rng.uniform(0, 2, n_samples).astype(dtype)
    centers = X[rng.integers(0, n_samples, n_clusters)] + dtype(0.1)
    norms = _cpu_small.centers_squared_norms(centers)
    margin = _cpu_small.bound_margin_coefficient(X.dtype, n_features)
    chunks = _cpu_small.n_chunks(n_samples)
    labels, labels_too = (np.empty(n_samples, dtype=np.int32) for _ in range(2))
    distances = np.empty(n_samples)
    for out, dist in ((labels, _cpu_lloyd._NO_DISTANCES), (labels_too, distances)):
        with _cpu.cpu_runtime():
            _cpu_lloyd._lloyd_chunked(
                X, sample_weight[:0], centers, norms, out, np.empty(0),
                _cpu_small.CHUNK_ROWS, 0, chunks, False, _DOTS_KERNELS[kernel], margin,
                dtype == np.float32, False, dist)
    np.testing.assert_array_equal(labels_too, labels)
    expected = _cpu.inertia(X, sample_weight, centers, labels)
    assert _cpu._weighted_sum_f64(distances, sample_weight) == expected
    with _cpu.cpu_runtime():
        engine_labels = np.empty(n_samples, dtype=np.int32)
        assert _cpu.labels_inertia(X, sample_weight, centers, engine_labels) == expected
    np.testing.assert_array_equal(engine_labels, labels)
    if dtype == np.float32:
        assert_labels_exactly_nearest(labels, X, centers)


def _clustered_float32(rng, n_clusters, offset, scale, n_samples=3000, n_features=24):
    """Blobs around ``n_clusters`` modes, moved by ``offset`` and scaled by ``scale``, and
    weights with some zeros."""
    modes = rng.normal(scale=4.0, size=(n_clusters, n_features))
    X = (modes[rng.integers(n_clusters, size=n_samples)] + rng.normal(size=(n_samples, n_features)))
    X = ((X + offset) * scale).astype(np.float32)
    sample_weight = rng.uniform(0.5, 2, n_samples).astype(np.float32)
    sample_weight[rng.choice(n_samples, 50, replace=False)] = 0
    return X, sample_weight


def _assert_kept_sums_are_fresh(sums, labels, X64, sample_weight, total_abs):
    """Sums kept by moving samples between clusters equal fresh float64 sums: each add and
    subtract rounds at 1e-16 of at most the whole data's magnitude; one missing move
    would be 1e-4 of it."""
    weighted = sample_weight[:, None].astype(np.float64) * X64
    ref_sums = np.zeros_like(sums)
    np.add.at(ref_sums, labels, weighted)
    ref_abs = np.zeros_like(sums)
    np.add.at(ref_abs, labels, np.abs(weighted))
    assert np.all(np.abs(sums - ref_sums) <= 1e-12 * (ref_abs + total_abs) + 1e-300)


@pytest.mark.parametrize("bounds", ["elkan", "elkan-single-dots", "hamerly"])
@pytest.mark.parametrize("n_clusters", [1, 3, 20, 70])
@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (30.0, 1.0), (0.0, 1e-21)])
def test_bounded_steps_keep_valid_bounds_and_exact_sums(
    bounds, n_clusters, offset, scale, rng, monkeypatch
):
    """A float32 run's steps (Elkan's or Hamerly's bounds): after every step the bounds
    hold for the centers just used, labels are exactly the nearest centers (near-ties
    decided in float64), and the incrementally kept sums and weights equal fresh ones
    for those labels. "elkan-single-dots" never sends a sample to the full search.

    The offset moves the data away from the origin, where ||c||^2 - 2 x.c loses the most
    digits: the bounds' rounding margin must still cover it. The scale of 1e-21 makes
    the products float32 subnormals, whose rounding is absolute, not relative.
    """
    n_samples = 3000
    X, sample_weight = _clustered_float32(rng, n_clusters, offset, scale, n_samples)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    labels = np.full(n_samples, -1, np.int32)
    X64 = X.astype(np.float64)
    total_abs = np.abs(sample_weight[:, None].astype(np.float64) * X64).sum(axis=0)
    if bounds == "hamerly":
        monkeypatch.setattr(_cpu_bounds, "ELKAN_BOUNDS_BUDGET_BYTES", 0)
    else:
        monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTERS", 1)
        monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTER_FEATURES", 1)
    if bounds == "elkan-single-dots":
        monkeypatch.setattr(_cpu_bounds, "ELKAN_OPEN_DIVISOR", 1)
    with _cpu.cpu_runtime():
        run = _cpu_bounds.BoundsRun(X, _cpu.row_norms_f64(X), sample_weight, n_clusters)
        for _ in range(12):
            sums, weights = run.step(centers, labels)
            assert_labels_exactly_nearest(labels, X, centers)
            distances = np.sqrt(((X64[:, None, :] - centers.astype(np.float64)[None]) ** 2).sum(-1))
            own = distances[np.arange(n_samples), labels]
            assert run.elkan == bounds.startswith("elkan")
            assert np.all(run.upper >= own * (1 - 1e-12))
            lower = run.current_lower_bounds(labels)
            assert np.all(lower <= distances * (1 + 1e-12))
            _assert_kept_sums_are_fresh(sums, labels, X64, sample_weight, total_abs)
            np.testing.assert_allclose(
                weights, np.bincount(labels, sample_weight, minlength=n_clusters), rtol=1e-14
            )
            centers = average_centers(sums, weights, centers, X.dtype, np)
        # The final E-step, with the bounds, gives the plain E-step's labels, and the
        # inertia it computes on the way is the inertia pass's, bitwise.
        inertia = run.finish(centers, labels, assign_labels=True)
        plain = np.empty_like(labels)
        _cpu.e_step(X, centers, plain)
        np.testing.assert_array_equal(labels, plain)
        assert inertia == _cpu.inertia(X, sample_weight, centers, labels)
        assert run.finish(centers, labels, assign_labels=False) == inertia
    assert_labels_exactly_nearest(labels, X, centers)


@pytest.mark.parametrize("n_clusters", [1, 3, 20, 70])
@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (30.0, 1.0), (0.0, 1e-21)])
def test_numpy_bounded_steps_keep_valid_bounds_and_exact_sums(
    n_clusters, offset, scale, rng, monkeypatch
):
    """The NumPy engine's float32 run (Hamerly's bounds, vectorised): after every step
    the labels are the plain E-step's (so exactly the nearest centers), the bounds hold
    for the centers just used, the sums kept by moving only the samples that changed
    cluster equal fresh float64 sums, and the weights are fresh; samples are skipped.

    The offset moves the data away from the origin, where ||c||^2 - 2 x.c loses the most
    digits: the bounds' rounding margin must still cover it. The scale of 1e-21 makes
    the products float32 subnormals, whose rounding is absolute, not relative.
    """
    n_samples = 3000
    X, sample_weight = _clustered_float32(rng, n_clusters, offset, scale, n_samples)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    labels = np.full(n_samples, -1, np.int32)
    X64 = X.astype(np.float64)
    total_abs = np.abs(sample_weight[:, None].astype(np.float64) * X64).sum(axis=0)
    searched, searched_by_step = [], []
    nearest_centers = _cpu_small._nearest_centers
    monkeypatch.setattr(_cpu_small, "_nearest_centers",
                        lambda chunk, *args: searched.append(chunk.shape[0])
                        or nearest_centers(chunk, *args))
    with _cpu_small.small_runtime():
        run = _cpu_small.start_lloyd(X, _cpu_small.row_norms(X), sample_weight, n_clusters)
        assert isinstance(run, _cpu_small._BoundsRun)
        for _ in range(12):
            searched.clear()
            sums, weights = run.step(centers, labels)
            searched_by_step.append(sum(searched))
            plain = np.empty_like(labels)
            _cpu_small.e_step(X, centers, plain)
            np.testing.assert_array_equal(labels, plain)
            assert_labels_exactly_nearest(labels, X, centers)
            distances = np.sqrt(((X64[:, None, :] - centers.astype(np.float64)[None]) ** 2).sum(-1))
            rows = np.arange(n_samples)
            assert np.all(run.upper >= distances[rows, labels] * (1 - 1e-12))
            distances[rows, labels] = np.inf
            assert np.all(run.lower <= distances.min(axis=1) * (1 + 1e-12))
            _assert_kept_sums_are_fresh(sums, labels, X64, sample_weight, total_abs)
            np.testing.assert_array_equal(
                weights, np.bincount(labels, sample_weight, minlength=n_clusters))
            assert np.all(sums[weights == 0] == 0)
            centers = average_centers(sums, weights, centers, X.dtype, np)
        inertia = run.finish(centers, labels, assign_labels=True)
        plain = np.empty_like(labels)
        _cpu_small.e_step(X, centers, plain)
        np.testing.assert_array_equal(labels, plain)
        assert inertia == _cpu_small.inertia(X, sample_weight, centers, labels)
        assert run.finish(centers, labels, assign_labels=False) == inertia
    # The first step searches every sample; the bounds spare some later.
    assert searched_by_step[0] == n_samples and sum(searched_by_step) < 12 * n_samples


@pytest.mark.parametrize("offset", [0.0, 30.0])  # uncentred and centred float32
def test_numpy_engine_threads_change_no_bit(offset, rng, monkeypatch, request):
    """The NumPy engine takes a bounded step's pieces of rows, a float32 k-means++
    step's products, and the norms, centring and inertia passes, on threads where they
    are large: the pieces and the order their sums are added in follow from the data
    alone, so a fit is bitwise the one made on the caller's thread alone, and so are its
    passes and its k-means++ picks."""
    from gpukmeans import KMeans, kmeans_plusplus

    X, sample_weight = _clustered_float32(rng, 20, offset, 1.0, n_samples=5000,
                                          n_features=300)
    assert _cpu_small.is_small(*X.shape, 20)
    # Threads of the test's own, whatever the CPUs or the thread limits of the runner.
    pool = ThreadPoolExecutor(2, thread_name_prefix="test-rows")
    request.addfinalizer(pool.shutdown)
    monkeypatch.setattr(_cpu_small, "_thread_pool", lambda: pool)
    # Six pieces of X for each k-means++ step, whatever the constant's value.
    monkeypatch.setattr(_cpu_small, "KMEANSPP_PIECE_BYTES", 2**20)
    calls = []  # (piece function, whether a pool thread ran it)
    map_pieces = _cpu_small.map_pieces

    def traced_map_pieces(function, pieces, work):
        def traced(piece):
            calls.append((function.__qualname__,
                          threading.current_thread().name.startswith("test-rows")))
            return function(piece)
        return map_pieces(traced, pieces, work)

    monkeypatch.setattr(_cpu_small, "map_pieces", traced_map_pieces)
    fits = []
    for threaded_min_work in (2**62, 0):
        monkeypatch.setattr(_cpu_small, "THREADED_MIN_WORK", threaded_min_work)
        calls.clear()
        model = KMeans(20, init="random", n_init=1, random_state=0, tol=0, max_iter=15,
                       device="cpu").fit(X, sample_weight=sample_weight)
        with _cpu_small.small_runtime():
            passes = (_cpu_small.row_norms(X), _cpu_small.centered(X, X.mean(axis=0))[0],
                      _cpu_small.inertia(X, sample_weight, model.cluster_centers_,
                                         model.labels_))
        picks = kmeans_plusplus(X, 20, sample_weight=sample_weight, random_state=0,
                                device="cpu")
        on_threads = [name for name, on_pool in calls if on_pool]
        fits.append((model, on_threads, *passes, *picks))
    (serial, serial_threads, *serial_passes), (threaded, threaded_threads, *threaded_passes) = fits
    # Threads took the first steps' search (every row open), the passes over rows and
    # each k-means++ step's six pieces (the first center's and 19 steps').
    assert serial_threads == []
    assert {"_BoundsRun._e_step.<locals>.search",
            "row_norms.<locals>.piece"} <= set(threaded_threads)
    assert threaded_threads.count("kmeanspp_candidates.<locals>.piece") == 6 * 20
    assert serial.n_iter_ == threaded.n_iter_ > 2
    np.testing.assert_array_equal(serial.labels_, threaded.labels_)
    np.testing.assert_array_equal(serial.cluster_centers_, threaded.cluster_centers_)
    assert serial.inertia_ == threaded.inertia_
    for ours, theirs in zip(serial_passes, threaded_passes):
        np.testing.assert_array_equal(ours, theirs)
    # The float64 sums themselves (the fit's float32 centers hide their last bits).
    steps = []
    for threaded_min_work in (2**62, 0):
        monkeypatch.setattr(_cpu_small, "THREADED_MIN_WORK", threaded_min_work)
        labels, centers, sums_by_step = np.full(5000, -1, np.int32), X[:20].copy(), []
        with _cpu_small.small_runtime():
            run = _cpu_small.start_lloyd(X, _cpu_small.row_norms(X), sample_weight, 20)
            for _ in range(4):
                sums, weights = run.step(centers, labels)
                sums_by_step.append(sums)
                centers = average_centers(sums, weights, centers, X.dtype, np)
        steps.append(sums_by_step)
    np.testing.assert_array_equal(*steps)


def test_numpy_engine_threads_follow_the_thread_limits(monkeypatch):
    """The NumPy engine's row threads stay within NUMBA_NUM_THREADS and OMP_NUM_THREADS
    (which joblib's process workers set), and within the CPUs the process may use."""
    for variable in _cpu_small.THREAD_LIMIT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    free = _cpu_small.n_row_threads()
    assert 1 <= free <= min(8, len(os.sched_getaffinity(0)))
    for variable in _cpu_small.THREAD_LIMIT_VARIABLES:
        monkeypatch.setenv(variable, "1")
        assert _cpu_small.n_row_threads() == 1
        monkeypatch.setenv(variable, "not a number")
        assert _cpu_small.n_row_threads() == free
        monkeypatch.delenv(variable)


def test_numpy_bounded_run_empties_a_cluster_exactly(rng):
    """A cluster that loses all its samples at once has weight and sums exactly 0, as
    fresh sums would (its kept sums would otherwise hold the rounding of the samples
    added and then taken away), and takes its samples back when its center returns."""
    # Four blobs 10 apart, a center on each: every cluster holds about 100 samples (from
    # four random samples as centers, cluster 2 could hold as few as 10: a flaky premise).
    modes = 10 * np.eye(4, 5)
    X = (rng.normal(size=(400, 5)) + modes[np.arange(400) % 4]).astype(np.float32)
    sample_weight = rng.uniform(0.5, 2, 400).astype(np.float32)
    centers = modes.astype(np.float32)
    far = centers.copy()
    far[2] = 1e3
    labels = np.full(400, -1, np.int32)
    with _cpu_small.small_runtime():
        run = _cpu_small.start_lloyd(X, _cpu_small.row_norms(X), sample_weight, 4)
        first_sums, first_weights = run.step(centers, labels)
        assert np.count_nonzero(labels == 2) > 10
        sums, weights = run.step(far, labels)
        assert weights[2] == 0 and np.all(sums[2] == 0)
        assert not np.any(labels == 2)
        sums, weights = run.step(centers, labels)
    np.testing.assert_array_equal(weights, first_weights)
    np.testing.assert_allclose(sums, first_sums, rtol=0, atol=1e-12 * np.abs(X).sum())


@pytest.mark.parametrize("n_clusters", [3, 20])
def test_numpy_bounded_run_follows_the_plain_run_through_a_relocation(n_clusters, rng,
                                                                      monkeypatch):
    """A whole run from centers of which one is far from every sample: its cluster is
    empty after the first step, and the driver moves a far sample's weight into it in
    the sums and weights it was given. The bounded run's next sums are still those of
    its labels, and the run is the plain step's: same labels and iterations."""
    X, sample_weight = _clustered_float32(rng, n_clusters, 0.0, 1.0)
    sample_weight[sample_weight == 0] = 1  # a relocated sample moves weight
    centers_init = X[rng.choice(X.shape[0], n_clusters, replace=False)].copy()
    centers_init[1] = 1e3
    x_squared_norms = _cpu_small.row_norms(X)
    engine = _cpu_small.make_engine()
    X64 = X.astype(np.float64)

    def checked_start_lloyd(*args):
        run = _cpu_small.start_lloyd(*args)
        assert isinstance(run, _cpu_small._BoundsRun)
        step = run.step

        def checked_step(centers_old, labels):
            sums, weights = step(centers_old, labels)
            ref_sums = np.zeros_like(sums)
            np.add.at(ref_sums, labels, sample_weight[:, None].astype(np.float64) * X64)
            np.testing.assert_allclose(sums, ref_sums, rtol=0, atol=1e-9 * np.abs(X64).max())
            return sums, weights

        run.step = checked_step
        return run

    relocations = []
    relocate = _lloyd.relocate_empty_clusters
    monkeypatch.setattr(_lloyd, "relocate_empty_clusters",
                        lambda *args: relocations.append(1) or relocate(*args))
    runs = {}
    with engine.runtime():
        for name, start_lloyd in [("bounded", checked_start_lloyd), ("plain", _cpu_small._Run)]:
            runs[name] = _lloyd.kmeans_single_lloyd(
                X, x_squared_norms, sample_weight, centers_init,
                engine._replace(start_lloyd=start_lloyd), max_iter=100)
    assert relocations
    (labels, inertia, centers, n_iter), (ref_labels, ref_inertia, ref_centers, ref_n_iter) = (
        runs["bounded"], runs["plain"])
    np.testing.assert_array_equal(labels, ref_labels)
    assert n_iter == ref_n_iter
    np.testing.assert_allclose(centers, ref_centers, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(inertia, ref_inertia, rtol=1e-6)
    assert np.bincount(labels, minlength=n_clusters)[1] > 0


@pytest.mark.parametrize("n_features", [13, 100])
@pytest.mark.parametrize("dtype, offset, expect_centred", [
    (np.float64, 0.0, True),  # float64 always: scikit-learn's labels, bitwise
    (np.float32, 0.0, False),  # exact float32 labels need no centring near the origin
    (np.float32, 3.0, True),  # the mean's norm above the spread around it
])
def test_centered_is_numpys_subtraction_in_a_new_array_with_its_norms(
    engine, dtype, offset, expect_centred, n_features, rng
):
    X = rng.normal(offset, 1, size=(1001, n_features)).astype(dtype)
    before = X.copy()
    X_mean = X.mean(axis=0)
    with engine.runtime():
        out, out_squared_norms, is_centred = engine.centered(X, X_mean)
        separate_norms = engine.row_norms(out)
    assert is_centred == expect_centred
    if is_centred:
        np.testing.assert_array_equal(out, X - X_mean)
        assert not np.shares_memory(out, X)
    else:
        assert out is X
    np.testing.assert_array_equal(out_squared_norms, separate_norms)
    assert out.dtype == dtype
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_samples, n_clusters", [(300, 3), (5000, 7), (20000, 300)])
def test_float64_sums_add_up_in_the_numba_engines_order(n_samples, n_clusters, dtype, rng):
    """Exact products (weights that are powers of two; any float32 weight times a float32
    value, in float64) leave only the order of the additions, which rounds differently
    in every order on full-precision data: both engines add in float64, block after block
    within a group of chunks, then group after group, as scikit-learn's threads do, so
    their sums, hence centers, agree bit for bit (and scikit-learn's with them in
    float64: tests/test_robustness.py). float32 data were summed in float32 between
    folds on the Numba engine until stop 25."""
    X = (rng.normal(size=(n_samples, 7)) * 1e3).astype(dtype)
    sample_weight = (2.0 ** rng.integers(0, 3, n_samples) if dtype == np.float64
                     else rng.uniform(0.5, 3.0, n_samples)).astype(dtype)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)]
    results = []
    for module in (_cpu, _cpu_small):
        engine = module.make_engine()
        labels = np.full(n_samples, -1, np.int32)
        with engine.runtime():
            results.append((*engine.lloyd_iter(X, sample_weight, centers, labels), labels))
    (sums, weights, labels), (small_sums, small_weights, small_labels) = results
    np.testing.assert_array_equal(small_labels, labels)
    np.testing.assert_array_equal(small_sums, sums)
    np.testing.assert_array_equal(small_weights, weights)


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("n_copies", [4096, 10_001, 100_000])
def test_float32_clusters_of_one_repeated_row_average_to_that_row(n_copies):
    """A cluster of identical float32 rows has that row for its center and no inertia:
    its float64 sum of unit-weight copies is exact. (Summed in float32 between folds,
    the Numba engine's centers were 1.6e-5 off, over 100 ulps, and the inertia positive;
    rows sorted by cluster put one float32 sum over up to 2,048 copies.)"""
    points = np.array([[0.1, 0.4], [0.7, 0.12], [1.5, -0.3], [-0.8, 0.9]], np.float32)
    X = np.repeat(points, n_copies, axis=0)
    fit = KMeans(4, init=points + np.float32(0.01), n_init=1, device="cpu").fit(X)
    np.testing.assert_array_equal(fit.cluster_centers_, points)
    assert fit.inertia_ == 0.0
    np.testing.assert_array_equal(fit.labels_, np.repeat(np.arange(4), n_copies))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centers_squared_norms_are_scikit_learns_row_norms(rng, dtype):
    """Our ||c||^2 (an einsum called directly) must sum as scikit-learn's row_norms does:
    float64 labels at exact ties depend on it. Checked on shapes whose einsum takes
    different inner loops, integer-valued rows (exact ties) and a strided view."""
    from sklearn.utils.extmath import row_norms

    for n_features in (1, 2, 3, 7, 8, 16, 31, 64, 100, 784):
        centers = (rng.standard_normal((37, n_features)) * 1e3).astype(dtype)
        for case in (centers, np.round(centers), centers[::2], centers.T.copy().T):
            np.testing.assert_array_equal(_cpu_small.centers_squared_norms(case),
                                          row_norms(case, squared=True))


@pytest.mark.parametrize("search", ["mixed", "open-groups-only", "full-only"])
@pytest.mark.parametrize("n_clusters", [1, 3, 20, 70])
@pytest.mark.parametrize("offset, scale", [(0.0, 1.0), (30.0, 1.0), (0.0, 1e-21)])
def test_yinyang_steps_keep_valid_bounds_and_are_the_plain_steps(
    search, n_clusters, offset, scale, rng, monkeypatch
):
    """A float32 run with Yinyang's group bounds, step by step beside a plain run: after
    every step the labels are exactly the nearest centers and the plain step's, the sums
    and weights are the plain step's bit for bit (the M-step is the plain one), and the
    bounds hold for the centers just used, also after a center jumps (as a relocation
    moves it) between two bounded steps. Three centers per group, so that 20 and 70
    clusters make several groups; "open-groups-only" never sends a sample to the full
    search, "full-only" always does. Offset and scale as for Hamerly's and Elkan's test.
    The bounds start from the second step (START_CHANGED raised: the first is plain)."""
    monkeypatch.setattr(_cpu_yinyang, "CLUSTERS_PER_GROUP", 3)
    monkeypatch.setattr(_cpu_yinyang, "START_CHANGED", 1.0)
    divisor = {"mixed": 8, "open-groups-only": 1, "full-only": 10**9}[search]
    monkeypatch.setattr(_cpu_yinyang, "open_divisor", lambda n_features: divisor)
    n_samples = 3000
    X, sample_weight = _clustered_float32(rng, n_clusters, offset, scale, n_samples)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    labels = np.full(n_samples, -1, np.int32)
    plain_labels = labels.copy()
    X64 = X.astype(np.float64)
    norms = _cpu.row_norms_f64(X)
    with _cpu.cpu_runtime():
        plain = _cpu.PlainRun(X, norms, sample_weight)
        run = _cpu_yinyang.YinyangRun(X, norms, sample_weight, n_clusters, plain)
        assert run.n_center_groups == max(1, n_clusters // 3)
        for step in range(12):
            sums, weights = run.step(centers, labels)
            plain_sums, plain_weights = plain.step(centers, plain_labels)
            np.testing.assert_array_equal(labels, plain_labels)
            assert_labels_exactly_nearest(labels, X, centers)
            np.testing.assert_array_equal(sums, plain_sums)
            np.testing.assert_array_equal(weights, plain_weights)
            assert run.bounded and (run.centers_prev is None) == (step == 0)
            if step == 0:
                centers = average_centers(sums, weights, centers, X.dtype, np)
                continue
            distances = np.sqrt(((X64[:, None, :] - centers.astype(np.float64)[None]) ** 2).sum(-1))
            own = distances[np.arange(n_samples), labels]
            assert np.all(run.upper >= own * (1 - 1e-12))
            assert np.all(run.current_lower_bounds(labels) <= distances * (1 + 1e-12))
            others = distances.copy()
            others[np.arange(n_samples), labels] = np.inf
            assert np.all(run.global_lower <= others.min(axis=1) * (1 + 1e-12))
            centers = average_centers(sums, weights, centers, X.dtype, np)
            if step == 5:  # a center jumps onto a sample, as a relocation moves it
                centers[-1] = X[rng.integers(n_samples)]
        inertia = run.finish(centers, labels, assign_labels=True)
        assert inertia == plain.finish(centers, plain_labels, assign_labels=True)
        np.testing.assert_array_equal(labels, plain_labels)


def test_yinyang_searches_fewer_centers_one_by_one_at_few_features():
    """The measured divisors (see open_divisor): 128 up to 32 features, 32 at 64, 8 from
    128; and a run's limit on the centers it searches one dot product at a time."""
    divisors = {d: _cpu_yinyang.open_divisor(d) for d in (2, 24, 32, 48, 64, 96, 128, 784)}
    assert divisors == {2: 128, 24: 128, 32: 128, 48: 56, 64: 32, 96: 14, 128: 8, 784: 8}
    X = np.zeros((10, 32), np.float32)
    run = _cpu_yinyang.YinyangRun(X, np.zeros(10), np.ones(10, np.float32), 1024, None)
    assert run.max_open == 8


@pytest.mark.parametrize("kind", ["yinyang", "hamerly", "elkan"])
@pytest.mark.parametrize("max_iter", [3, 30])
def test_runs_with_bounds_keep_them_from_the_step_after_the_labels_settle(
        kind, max_iter, rng, monkeypatch):
    """A run with Yinyang's, Hamerly's or Elkan's bounds, given the plain run (as the
    engine's start_lloyd gives it), takes plain steps while they change more than its
    module's START_CHANGED of the labels (bounded steps cost more then), and its bounds
    from the next step on, whose first search sets them (Hamerly's and Elkan's also the
    sums, whatever the plain steps labelled). Each step's labels are the plain run's;
    its sums and weights too, bit for bit, while plain and always with Yinyang's (whose
    M-step is the plain step's), up to a rounding after with Hamerly's and Elkan's
    (which move samples between kept sums); the final labels and inertia the plain
    run's, bit for bit also when the run ends before its first bounded step
    (max_iter=3: a plain final pass, no full search for it)."""
    if kind == "elkan":
        monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTER_FEATURES", 1)
    module = _cpu_yinyang if kind == "yinyang" else _cpu_bounds
    n_samples, n_clusters = 4000, 40
    X, sample_weight = _clustered_float32(rng, n_clusters, 0.0, 1.0, n_samples)
    X64 = X.astype(np.float64)
    total_abs = np.abs(sample_weight[:, None].astype(np.float64) * X64).sum(axis=0)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    labels = np.full(n_samples, -1, np.int32)
    plain_labels = labels.copy()
    norms = _cpu.row_norms_f64(X)
    changed = []
    with _cpu.cpu_runtime():
        plain = _cpu.PlainRun(X, norms, sample_weight)
        given = _cpu.PlainRun(X, norms, sample_weight)
        if kind == "yinyang":
            run = _cpu_yinyang.YinyangRun(X, norms, sample_weight, n_clusters, given)

            def bounds_set():
                return run.centers_prev is not None
        else:
            run = _cpu_bounds.BoundsRun(X, norms, sample_weight, n_clusters, plain=given)
            assert run.elkan == (kind == "elkan")

            def bounds_set():
                return run.bounds_set
        for _ in range(max_iter):
            before = labels.copy()
            bounded = run.bounded
            sums, weights = run.step(centers, labels)
            plain_sums, plain_weights = plain.step(centers, plain_labels)
            np.testing.assert_array_equal(labels, plain_labels)
            if bounded and kind != "yinyang":
                _assert_kept_sums_are_fresh(sums, labels, X64, sample_weight, total_abs)
                np.testing.assert_allclose(weights, plain_weights, rtol=1e-12)
            else:
                np.testing.assert_array_equal(sums, plain_sums)
                np.testing.assert_array_equal(weights, plain_weights)
            # Bounds kept from the step after the first that changed few labels.
            assert bounded == any(c <= module.START_CHANGED for c in changed)
            assert bounds_set() == bounded
            changed.append(np.mean(labels != before))
            centers = average_centers(sums, weights, centers, X.dtype, np)
            plain_labels[:] = labels  # from the same labels and centers each step
        inertia = run.finish(centers, labels, True)
        plain_inertia = plain.finish(centers, plain_labels, True)
        np.testing.assert_array_equal(labels, plain_labels)
        if kind == "yinyang" or not bounds_set():
            assert inertia == plain_inertia
        else:
            assert inertia == pytest.approx(plain_inertia, rel=1e-12)
    # The blobs settle within the longer run, not within three steps.
    assert bounds_set() == (max_iter == 30), changed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_center_groups_partition_the_centers(rng, dtype):
    centers = rng.standard_normal((103, 5)).astype(dtype)
    order, starts = _cpu_yinyang.center_groups(centers, 10)
    assert starts[0] == 0 and starts[-1] == 103 and np.all(np.diff(starts) >= 0)
    np.testing.assert_array_equal(np.sort(order), np.arange(103))
    for g in range(10):  # centers by index within a group
        assert np.all(np.diff(order[starts[g]:starts[g + 1]]) > 0)
    again = _cpu_yinyang.center_groups(centers.copy(), 10)
    np.testing.assert_array_equal(again[0], order)


@pytest.mark.parametrize("start_changed", [1.0, None])
@pytest.mark.parametrize("data", ["blobs", "uniform", "integers"])
def test_yinyang_fit_is_the_plain_fit(rng, monkeypatch, data, start_changed):
    """Whole float32 fits with Yinyang's bounds (thresholds lowered so that 40 clusters
    take them) against the same fits on plain steps: labels, centers, inertia and
    iterations bit for bit, with a center far from every sample (its cluster empties and
    is relocated after the first step, which is plain) and a sample weight; with bounds
    from the second step and from the run's own switch. (A center's jump inside the
    bounds' drift: the step-by-step test.)"""
    if start_changed is not None:
        monkeypatch.setattr(_cpu_yinyang, "START_CHANGED", start_changed)
    bounded_steps = []
    bounded_e_step = _cpu_yinyang._yinyang_e_step

    def counted(*args):
        bounded_steps.append(1)
        return bounded_e_step(*args)

    monkeypatch.setattr(_cpu_yinyang, "_yinyang_e_step", counted)

    n_samples, n_features, n_clusters = 2500, 24, 40
    if data == "blobs":
        X, _ = _clustered_float32(rng, n_clusters, 0.0, 1.0, n_samples, n_features)
    elif data == "uniform":
        X = rng.random((n_samples, n_features), dtype=np.float32)
    else:
        X = rng.integers(0, 3, (n_samples, n_features)).astype(np.float32)
    init = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    init[-1] = 1e3
    sample_weight = rng.uniform(0.5, 2.0, n_samples)
    monkeypatch.setattr(_cpu_yinyang, "CLUSTERS_PER_GROUP", 4)
    monkeypatch.setattr(_cpu, "YINYANG_MIN_CLUSTER_FEATURES", n_clusters * n_features)
    for name in ("MAX_WORK", "MAX_ELEMENTS", "MAX_DISTANCES"):  # the Numba engine
        monkeypatch.setattr(_cpu_small, name, 0)
    assert _cpu._yinyang_pays(X, n_clusters) and not _cpu._bounds_pay(X, n_clusters)
    fits = []
    for yinyang in (True, False):
        monkeypatch.setattr(_cpu, "_yinyang_pays", lambda X, k, pays=yinyang: pays)
        fits.append(KMeans(n_clusters, init=init, n_init=1, max_iter=40, device="cpu")
                    .fit(X, sample_weight=sample_weight))
    yinyang, plain = fits
    np.testing.assert_array_equal(yinyang.labels_, plain.labels_)
    np.testing.assert_array_equal(yinyang.cluster_centers_, plain.cluster_centers_)
    assert yinyang.inertia_ == plain.inertia_ and yinyang.n_iter_ == plain.n_iter_
    if start_changed is not None:  # bounded from the second step: most steps were
        assert len(bounded_steps) >= yinyang.n_iter_ - 1 > 0


def test_many_clusters_take_yinyang_where_elkans_bounds_would_not_fit(monkeypatch):
    """In the bounds' region (here 400 features), Elkan's bounds from 98,304 clusters x
    features (246 clusters) while they fit their budget, Yinyang's rather than
    Hamerly's when they do not; Hamerly's below that shape, whatever the budget;
    Yinyang's beyond the bounds' region (1,024 clusters) and the plain step for
    float64."""
    n_features = 400
    X = np.zeros((1000, n_features), dtype=np.float32)
    norms, weights = np.zeros(1000), np.ones(1000, dtype=np.float32)
    elkan_min = -(-_cpu_bounds.ELKAN_MIN_CLUSTER_FEATURES // n_features)
    assert elkan_min == 246
    for n_clusters, elkan in ((elkan_min, True), (elkan_min - 1, False), (16, False)):
        run = _cpu.start_lloyd(X, norms, weights, n_clusters)
        assert type(run) is _cpu_bounds.BoundsRun and run.elkan == elkan
    monkeypatch.setattr(_cpu_bounds, "ELKAN_BOUNDS_BUDGET_BYTES", 1000 * elkan_min * 4 - 1)
    assert type(_cpu.start_lloyd(X, norms, weights, elkan_min)) is _cpu_yinyang.YinyangRun
    for n_clusters in (elkan_min - 1, 16):  # Hamerly's
        run = _cpu.start_lloyd(X, norms, weights, n_clusters)
        assert type(run) is _cpu_bounds.BoundsRun and not run.elkan
    assert type(_cpu.start_lloyd(X, norms, weights, 1024)) is _cpu_yinyang.YinyangRun
    assert type(_cpu.start_lloyd(X.astype(np.float64), norms, weights.astype(np.float64),
                                 1024)) is _cpu.PlainRun



def _narrowed_data(rng, data, n_samples, n_features, n_clusters):
    """float64 rows and centers for the float32-products run's tests."""
    if data == "bisectors":
        return _bisectors(rng, n_samples, n_features, n_clusters)
    if data == "integers":  # duplicate centers: exact float64 ties, the GEMM decides
        X = rng.integers(-3, 4, (n_samples, n_features)).astype(np.float64)
        centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
        centers[n_clusters // 2:] = centers[: n_clusters - n_clusters // 2]
        return X, centers
    X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 3, n_features)
    if data == "far":
        X += 30.0
    elif data == "subnormal":  # float32's subnormals, float64's normal numbers
        X *= 1e-40
    elif data == "mixed":  # features of 1e-42 beside features of 1e9
        X[:, ::2] *= 1e-42
        X[:, 1::2] *= 1e9
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    if data == "row-beyond-float32":  # a row of a chunk, and so its square
        X[300] *= 1e40
    elif data == "center-beyond-float32":
        centers[-1] = 2.0**41
    return X, centers



@pytest.mark.parametrize("data", ["normal", "far", "integers", "bisectors", "subnormal",
                                  "mixed", "row-beyond-float32", "center-beyond-float32"])
@pytest.mark.parametrize("n_samples, n_features, n_clusters, kernel", [
    (1500, 24, 7, "gemm"), (2000, 16, 33, "gemm"), (1300, 33, 1100, "gemm"),
    (900, 64, 32, "gemm"), (700, 9, 1, "gemm"), (600, 200, 12, "gemm"),
    (600, 200, 12, "blocked"), (700, 300, 6, "blocked"), (500, 130, 1, "blocked"),
    (1500, 24, 7, "panel"), (2000, 16, 33, "panel"), (1300, 33, 1100, "panel"),
    (700, 9, 1, "panel"), (800, 40, 130, "panel")])
def test_narrowed_steps_are_scikit_learns_gemm_labels_and_sums(
        data, n_samples, n_features, n_clusters, kernel, rng):
    """float64 rows labelled from float32 products (:mod:`gpukmeans._cpu_narrowed`) are
    labelled as scikit-learn's float64 GEMM labels them (the GEMM kernel), with its
    sums bit for bit, given row norms or not: on rows near the bisector of two centers
    (every one a float32 near-tie), on integers with duplicate centers (exact float64
    ties, decided by the GEMM), on float32's subnormal range, on features of 1e-42
    beside 1e9 (float32 rounds them by an absolute amount), and with a row or a center
    beyond float32's range (the row's chunk, or all rows, take float64 values). 1,100 centers take
    two tiles of centers, 7 of 24 features the GEMM rows x centers; the float32 values
    by the GEMM folded by rows, by the blocked kernel or by the panel."""
    X, centers = _narrowed_data(rng, data, n_samples, n_features, n_clusters)
    sample_weight = rng.uniform(0.5, 2, n_samples)
    narrowed = {"gemm": _cpu_lloyd.NARROWED, "blocked": _cpu_lloyd.NARROWED_BLOCKED,
                "panel": _cpu_lloyd.NARROWED_PANEL}[kernel]
    labels, sums, weights = _plain_step(X, sample_weight, centers, narrowed)
    gemm_labels, gemm_sums, gemm_weights = _plain_step(X, sample_weight, centers,
                                                       _cpu_lloyd.GEMM)
    np.testing.assert_array_equal(labels, gemm_labels)
    np.testing.assert_array_equal(sums, gemm_sums)
    np.testing.assert_array_equal(weights, gemm_weights)
    run_labels, _, _ = _plain_step(X, sample_weight, centers, narrowed, _cpu.row_norms_f64(X))
    np.testing.assert_array_equal(run_labels, labels)


@pytest.mark.parametrize("by_panel", [True, False])
@pytest.mark.parametrize("data", ["blobs", "integers"])
def test_narrowed_fit_is_the_plain_fit_and_scikit_learns(rng, monkeypatch, data, by_panel):
    """Whole float64 fits whose steps take float32 products (by the panel or by the GEMM
    folded by rows) against the same fits on float64 products: labels, centers, inertia
    and iterations bit for bit, with a center far from every sample (its cluster empties
    and is relocated) and a sample weight; labels and iterations scikit-learn's."""
    from sklearn.cluster import KMeans as SklearnKMeans

    n_samples, n_features, n_clusters = 3000, 16, 60
    if data == "blobs":
        modes = rng.normal(scale=4.0, size=(n_clusters, n_features))
        X = modes[rng.integers(n_clusters, size=n_samples)] + rng.normal(
            size=(n_samples, n_features))
    else:
        X = rng.integers(0, 3, (n_samples, n_features)).astype(np.float64)
    init = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    init[-1] = 1e3
    sample_weight = rng.uniform(0.5, 2.0, n_samples)
    for name in ("MAX_WORK", "MAX_ELEMENTS", "MAX_DISTANCES"):  # the Numba engine
        monkeypatch.setattr(_cpu_small, name, 0)
    kernels = []
    dots_kernel = _cpu._dots_kernel
    monkeypatch.setattr(_cpu, "_dots_kernel",
                        lambda X, k: kernels.append(dots_kernel(X, k)) or kernels[-1])
    monkeypatch.setattr(_cpu, "_panel_pays", lambda *shape: by_panel)
    fits = []
    for narrowed in (True, False):
        monkeypatch.setattr(_cpu, "narrowed_pays", lambda *shape, pays=narrowed: pays)
        fits.append(KMeans(n_clusters, init=init, n_init=1, max_iter=40, device="cpu")
                    .fit(X, sample_weight=sample_weight))
    narrowed, plain = fits
    narrowed_kernel = _cpu_lloyd.NARROWED_PANEL if by_panel else _cpu_lloyd.NARROWED
    assert kernels.count(narrowed_kernel) >= narrowed.n_iter_ > 1
    assert kernels.count(narrowed_kernel) < len(kernels)
    np.testing.assert_array_equal(narrowed.labels_, plain.labels_)
    np.testing.assert_array_equal(narrowed.cluster_centers_, plain.cluster_centers_)
    assert narrowed.inertia_ == plain.inertia_ and narrowed.n_iter_ == plain.n_iter_
    reference = SklearnKMeans(n_clusters, init=init, n_init=1, max_iter=40).fit(
        X, sample_weight=sample_weight)
    np.testing.assert_array_equal(narrowed.labels_, reference.labels_)
    assert narrowed.n_iter_ == reference.n_iter_


@pytest.mark.parametrize("engine_sizes", ["numba", "numpy"])
def test_emptied_cluster_takes_scikit_learns_sample_among_tied_farthest(monkeypatch,
                                                                          engine_sizes):
    """Integer data, float64: three samples tie exactly at the farthest distance when the
    far center's cluster empties in the first step; scikit-learn takes the index
    ``np.argpartition`` leaves last over its own distances, whose choice among the tied
    depends on every other value's last bits. (Found by the draw of seed 901568924 in
    test_narrowed_fit_is_the_plain_fit_and_scikit_learns: our distances were summed in
    another order than NumPy's row sums, and 22% of the labels ended elsewhere.)"""
    from sklearn.cluster import KMeans as SklearnKMeans

    rng = np.random.default_rng(901568924)
    n_samples, n_features, n_clusters = 3000, 16, 60
    X = rng.integers(0, 3, (n_samples, n_features)).astype(np.float64)
    init = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    init[-1] = 1e3
    sample_weight = rng.uniform(0.5, 2.0, n_samples)
    if engine_sizes == "numba":
        for name in ("MAX_WORK", "MAX_ELEMENTS", "MAX_DISTANCES"):
            monkeypatch.setattr(_cpu_small, name, 0)
    for max_iter in (1, 40):
        ours = KMeans(n_clusters, init=init, n_init=1, max_iter=max_iter, device="cpu").fit(
            X, sample_weight=sample_weight)
        reference = SklearnKMeans(n_clusters, init=init, n_init=1, max_iter=max_iter).fit(
            X, sample_weight=sample_weight)
        np.testing.assert_array_equal(ours.labels_, reference.labels_)
        # Centers: scikit-learn's to their last bit or two (float64 sums in our order).
        np.testing.assert_allclose(ours.cluster_centers_, reference.cluster_centers_,
                                   rtol=1e-13, atol=1e-13)
        assert ours.n_iter_ == reference.n_iter_


@pytest.mark.parametrize("n_far, seed", [(1, None), (5, None), (5, 30)])
def test_emptied_clusters_take_scikit_learns_samples(cpu_engine, n_far, seed, rng):
    """Integer data, float64, ``n_far`` initial centers far from every sample: their
    clusters empty at the first step, with many samples tied at the farthest distance.
    scikit-learn pairs them with np.argpartition's last ``n_far`` over
    ``((X - centers[labels])**2).sum(axis=1)``, in an order that depends on every value's
    bits, not only the tied ones': the same samples go to the same clusters here. (Summed
    in another order, about 1 draw in 50 differed: seed 30 did, on both engines.)"""
    from sklearn.cluster import KMeans as SklearnKMeans

    if seed is not None:
        rng = np.random.default_rng(seed)
    n_samples, n_features, n_clusters = 3000, 16, 60
    X = rng.integers(0, 3, (n_samples, n_features)).astype(np.float64)
    init = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    init[-n_far:] = 1e3 + np.arange(n_far)[:, None]
    sample_weight = rng.uniform(0.5, 2.0, n_samples)
    ours = KMeans(n_clusters, init=init, n_init=1, max_iter=1, device="cpu").fit(
        X, sample_weight=sample_weight)
    reference = SklearnKMeans(n_clusters, init=init, n_init=1, max_iter=1).fit(
        X, sample_weight=sample_weight)
    np.testing.assert_array_equal(ours.labels_, reference.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, reference.cluster_centers_,
                               rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_assigned_distances_are_numpys_row_sums(dtype, rng):
    """Both CPU engines' relocation distances are NumPy's ``.sum(axis=1)`` of the float64
    squared differences, bit for bit: under 8 features (added in order), 8 to 128 (8
    running sums and a remainder) and NumPy's pairwise splits above 128."""
    with _cpu.cpu_runtime():
        for n_features in (1, 3, 7, 8, 9, 16, 37, 128, 129, 200, 784, 2049):
            n_samples = int(rng.integers(100, 1000))
            X = (rng.standard_normal((n_samples, n_features))
                 * rng.uniform(0.01, 1e3, (n_samples, 1))).astype(dtype)
            centers = rng.standard_normal((9, n_features)).astype(dtype)
            labels = rng.integers(0, 9, n_samples).astype(np.int32)
            expected = ((X.astype(np.float64) - centers.astype(np.float64)[labels]) ** 2).sum(
                axis=1)
            for engine in (_cpu, _cpu_small):
                np.testing.assert_array_equal(engine.assigned_distances(X, centers, labels),
                                              expected, err_msg=f"{engine.__name__} d={n_features}")


def test_every_pass_measures_a_distance_alike(rng):
    """The final E-step's distances (``labels_inertia``, one pass) and the inertia pass
    are bitwise equal, and so a fit's ``inertia_`` and ``-score(X)``: both go through
    ``_chunk_distances``. (About one array in 50, float64 at 2 or 3 features, differed
    when a stale cached inertia pass ran an older distance function.)"""
    with _cpu.cpu_runtime():
        for _ in range(150):
            n_samples, n_features = int(rng.integers(200, 3000)), int(rng.integers(1, 6))
            X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.1, 10)
            centers = X[rng.integers(0, n_samples, int(rng.integers(1, 40)))] + 0.5
            weights = rng.uniform(0, 3, n_samples)
            labels = np.empty(n_samples, dtype=np.int32)
            one_pass = _cpu.labels_inertia(X, weights, centers, labels)
            assert one_pass == _cpu.inertia(X, weights, centers, labels)
    X = rng.normal(size=(300_000, 2)) * 3
    km = KMeans(5, random_state=0, device="cpu", max_iter=5).fit(X)
    assert -km.score(X) == km.inertia_


def test_centring_gives_row_norms_bitwise(rng):
    """``Engine.centered``'s norms are ``row_norms`` of the centred data, bit for bit (the
    contract): both go through ``_chunk_squared_norms``."""
    from gpukmeans._cpu_passes import centered

    with _cpu.cpu_runtime():
        for _ in range(200):
            n_samples, n_features = int(rng.integers(100, 3000)), int(rng.integers(1, 8))
            dtype = rng.choice([np.float32, np.float64])
            X = (rng.normal(size=(n_samples, n_features)) * rng.uniform(0.1, 10)
                 + rng.uniform(50, 100, n_features)).astype(dtype)  # far: centred
            X_work, norms, is_centred = centered(X, X.mean(axis=0))
            assert is_centred
            np.testing.assert_array_equal(norms, _cpu.row_norms_f64(X_work))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_squared_distances_in_their_written_order(rng, dtype):
    """``_cpu_distance``'s IR gives the order of its plain-loop reference bit for bit
    (lengths across the 16-lane blocks, rows of any stride, norms as distances to zero),
    and is within float64 rounding of the exact sums."""
    from numba import njit

    from gpukmeans._cpu_distance import (
        reference_squared_distance_f64, squared_distance_f64, squared_norm_f64,
    )

    @njit
    def measured(X, C):
        out = np.empty((X.shape[0], 3))
        for i in range(X.shape[0]):
            out[i, 0] = squared_distance_f64(X[i], C[i])
            out[i, 1] = reference_squared_distance_f64(X[i], C[i])
            out[i, 2] = squared_norm_f64(X[i])
        return out

    for n_features in (1, 2, 7, 15, 16, 17, 31, 32, 33, 100, 784):
        X = (rng.normal(size=(40, n_features)) * 10.0 ** rng.integers(-3, 4, (40, 1)))
        C = X + rng.normal(size=X.shape)
        X, C = X.astype(dtype), C.astype(dtype)
        fields = np.zeros(X.shape, dtype=[("value", dtype), ("other", np.int8)])
        fields["value"] = X  # rows of items 5 or 9 bytes apart
        for X_, C_ in ((X, C), (np.asfortranarray(X), C), (X, C[::-1][::-1].T.copy().T),
                       (fields["value"], C)):
            out = measured(X_, C_)
            np.testing.assert_array_equal(out[:, 0], out[:, 1])
            np.testing.assert_array_equal(out[:, 2], measured(X_, np.zeros_like(C_))[:, 1])
            exact = ((X.astype(np.float64) - C.astype(np.float64)) ** 2).sum(axis=1)
            np.testing.assert_allclose(out[:, 0], exact, rtol=n_features * 2.3e-16)


_WARM_SOME_KERNELS = """
    import numpy as np
    from gpukmeans import _cpu
    from gpukmeans._cpu_passes import centered
    X = np.random.default_rng(0).normal(size=(600, 2))
    with _cpu.cpu_runtime():
        _cpu.labels_inertia(X, np.ones(600), X[:14] + 0.5, np.empty(600, dtype=np.int32))
        centered(X + 70, X.mean(axis=0) + 70)
"""

_PASSES_AGREE = """
    import numpy as np
    from gpukmeans import _cpu
    from gpukmeans._cpu_passes import centered
    rng = np.random.default_rng(4134753483)  # CI's draw: an ulp apart at 622 x 2, k = 14
    with _cpu.cpu_runtime():
        for _ in range(150):
            n_samples, n_features = int(rng.integers(200, 3000)), int(rng.integers(1, 6))
            X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.1, 10)
            centers = X[rng.integers(0, n_samples, int(rng.integers(1, 40)))] + 0.5
            weights = rng.uniform(0, 3, n_samples)
            labels = np.empty(n_samples, dtype=np.int32)
            one_pass = _cpu.labels_inertia(X, weights, centers, labels)
            assert one_pass == _cpu.inertia(X, weights, centers, labels), (n_samples, n_features)
            X_work, norms, _ = centered(X + 70, X.mean(axis=0) + 70)
            assert (norms == _cpu.row_norms_f64(X_work)).all(), (n_samples, n_features)
"""


@pytest.mark.slow  # two processes compiling into an empty cache: 40 s of CI's 15 minutes
def test_passes_agree_with_kernels_from_another_processs_cache(tmp_path):
    """The final E-step's distances and the inertia pass, and the norms of ``centered``
    and of ``row_norms``, are bitwise equal also where some kernels were compiled by an
    earlier process (its cache) and the others by this one. CI failed so (float64, 2
    features, one ulp of inertia): the distance's Numba loop, reassociated and
    contracted, was compiled with its sum in one order inside the cached kernels and in
    another inside the fresh ones (``fma(d0, d0, d1^2)`` against ``fma(d1, d1,
    d0^2)``). Its order is now written out in LLVM IR (:mod:`gpukmeans._cpu_distance`).
    Whether the old code's copies differed depends on the CPU and on LLVM: this test
    failed on it here once (at 557 x 2) and passed on it in a reviewer's run."""
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    for script in (_WARM_SOME_KERNELS, _PASSES_AGREE):
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                                env=environment, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]


_THREAD_POLICIES = """
    import multiprocessing, os, threading
    import numba
    from gpukmeans import _cpu_runtime
    assert multiprocessing.get_start_method(allow_none=True) is None  # not fixed on import
    {prelude}
    with _cpu_runtime.cpu_runtime():
        pass
    numba.get_num_threads()  # the pool, where the engine left it unstarted
    main_nice = os.getpriority(os.PRIO_PROCESS, 0)
    nices = [os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir("/proc/self/task")]
    print(numba.threading_layer(), numba.config.NUMBA_NUM_THREADS,
          nices.count(main_nice + 1), os.sched_getscheduler(0) == os.SCHED_OTHER)
"""


def _env_without_numba_settings():
    """This process's environment but its ``NUMBA_*`` variables: a new process's Numba
    as the engine would find it by default."""
    return {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_")}


def _thread_policies(extra_env, prelude="pass"):
    """Numba's threading layer, thread count, how many threads run one nice level below the
    main thread and whether
    the main thread runs SCHED_OTHER, in a new process with ``extra_env`` after its first
    engine call (``prelude`` first: Python code)."""
    env = _env_without_numba_settings()
    env.update(extra_env)
    code = textwrap.dedent(_THREAD_POLICIES.replace("{prelude}", prelude))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    layer, n_threads, n_niced, main_is_other = result.stdout.split()
    return layer, int(n_threads), int(n_niced), main_is_other == "True"


_POLICIES_APPLY = (sys.platform.startswith("linux")
                   and hasattr(os, "sched_getscheduler")
                   and os.sched_getscheduler(0) == os.SCHED_OTHER
                   and os.getpriority(os.PRIO_PROCESS, 0) < 19)
needs_sched_other = pytest.mark.skipif(
    not _POLICIES_APPLY, reason="the workers' nice level is set on Linux, under SCHED_OTHER "
                                "below nice 19 only")


@needs_sched_other
@pytest.mark.parametrize("n_threads", ["1", "2", "3"])
def test_numbas_workers_run_one_nice_level_down_and_the_caller_does_not(n_threads):
    """The first engine call starts Numba's workqueue threads one nice level below the
    caller (a woken worker then does not preempt the thread still waking the others):
    every one of them and no other thread (_cpu_runtime._start_niced_workers); importing
    the engine does not start them (nor fix the multiprocessing start method)."""
    layer, found_threads, n_niced, main_is_other = _thread_policies(
        {"NUMBA_NUM_THREADS": n_threads})
    assert layer == "workqueue"
    assert found_threads == int(n_threads)
    assert n_niced == int(n_threads)
    assert main_is_other


@needs_sched_other
def test_a_threading_layer_the_user_chose_is_left_alone():
    layer, _, n_niced, main_is_other = _thread_policies({"NUMBA_THREADING_LAYER": "workqueue"})
    assert layer == "workqueue"
    assert n_niced == 0
    assert main_is_other


@needs_sched_other
def test_a_policy_the_user_chose_is_left_alone():
    """Under ``chrt --batch`` the workers inherit SCHED_BATCH and keep it, at the caller's
    nice level. (Not ``--idle``, which the code treats alike: an idle-class process waits
    for every busy core, and beside CI's background compile it waited a minute.)"""
    _, _, n_niced, main_is_other = _thread_policies(
        {}, "os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))")
    assert n_niced == 0
    assert not main_is_other


@needs_sched_other
def test_workers_not_told_apart_from_another_new_thread_are_left_alone():
    """A thread started while the pool starts makes the new threads more than Numba's:
    none is changed."""
    prelude = textwrap.dedent("""\
        start_pool = numba.get_num_threads
        def start_pool_and_a_thread():
            threading.Thread(target=threading.Event().wait, daemon=True).start()
            return start_pool()
        numba.get_num_threads = start_pool_and_a_thread""").replace("\n", "\n    ")
    layer, _, n_niced, _ = _thread_policies({}, prelude)
    assert layer == "workqueue"
    assert n_niced == 0


@needs_sched_other
def test_a_forked_childs_new_workers_run_one_nice_level_down_too(rng):
    """Numba starts a new pool in a child forked after its first parallel loop; the
    child's first engine call sets those one nice level down, and the fit is the
    parent's."""
    code = textwrap.dedent("""
        import os
        import numpy as np
        import numba
        from gpukmeans import KMeans
        X = np.random.default_rng(0).normal(size=(60_000, 8)).astype(np.float32)
        parent = KMeans(8, random_state=0, device="cpu").fit(X)
        pid = os.fork()
        if pid == 0:
            child = KMeans(8, random_state=0, device="cpu").fit(X)
            tids = os.listdir("/proc/self/task")
            main_nice = os.getpriority(os.PRIO_PROCESS, 0)
            n_niced = sum(os.getpriority(os.PRIO_PROCESS, int(t)) == main_nice + 1 for t in tids)
            same = (np.array_equal(child.labels_, parent.labels_)
                    and child.inertia_ == parent.inertia_)
            os._exit(0 if same and n_niced == numba.config.NUMBA_NUM_THREADS else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env_without_numba_settings(), timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"]


@needs_sched_other
def test_setting_the_thread_count_first_starts_niced_workers_too():
    """The benchmarks set the thread count before any fit: that starts Numba's pool, one
    nice level down too."""
    layer, n_threads, n_niced, _ = _thread_policies(
        {"NUMBA_NUM_THREADS": "2"}, "_cpu_runtime.set_num_threads(1)")
    assert (layer, n_threads, n_niced) == ("workqueue", 2, 2)


def _threaded_kernels():
    from gpukmeans import _cpu_passes
    from gpukmeans._cpu_runtime import ThreadedKernel

    modules = (_cpu_bounds, _cpu_kmeanspp, _cpu_lloyd, _cpu_passes, _cpu_yinyang)
    kernels = {name: kernel for module in modules for name, kernel in vars(module).items()
               if isinstance(kernel, ThreadedKernel)}
    # The plain step's, one per way of taking the dot products.
    kernels.update({f"_lloyd_partials[{dots_kernel}]": kernel
                    for dots_kernel, kernel in _cpu_lloyd.LLOYD_PARTIALS.items()})
    return kernels


def test_the_kernels_with_serial_twins():
    """The per-step kernels (a parallel region costs about 0.1 ms to start, even on one
    thread), the partials' reduction, and the once-a-fit passes over the data (whose
    parallel loops were a small serial fit's only ones: waking the workers cost more
    than the pass) have serial twins."""
    assert set(_threaded_kernels()) == {
        *(f"_lloyd_partials[{dots_kernel}]" for dots_kernel in range(8)),
        "_accumulate_partials", "_assigned_distances", "_numpy_order_distances",
        "_hamerly_e_step",
        "_elkan_e_step", "_yinyang_e_step", "_kmeanspp_fused_partials",
        "_kmeanspp_dots_partials", "_reduce_partials", "_scan_float32", "_row_norms_f64",
        "_subtract_rows_and_norms", "_largest_magnitude_bits"}


@pytest.mark.parametrize("n_features, n_clusters, dtype, path", [
    (200, 8, np.float32, "blocked"), (200, 80, np.float32, "gemm"),
    (40, 30, np.float32, "elkan"), (200, 80, np.float64, "gemm"), (64, 192, np.float32, "yinyang"),
])
def test_serial_twins_give_the_parallel_kernels_bits(n_features, n_clusters, dtype, path,
                                                     rng, monkeypatch):
    """A fit, a mini-batch fit and a streamed fit on one thread (the serial twins) and on
    two (the parallel kernels, however small the call) agree bit for bit, on the paths
    the thread-count test of test_kmeans does not take; and one thread runs the twins
    only, two the parallel kernels only."""
    from conftest import route_cpu_fits

    from gpukmeans import MiniBatchKMeans, _cpu_runtime
    from gpukmeans._cpu_runtime import numba, set_num_threads

    route_cpu_fits(monkeypatch, "numba")
    monkeypatch.setattr(_cpu_runtime, "SERIAL_MAX_WORK", 0)
    for module in (_cpu_bounds, _cpu_yinyang):  # bounded from the 2nd step
        monkeypatch.setattr(module, "START_CHANGED", 1.0)
    monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTER_FEATURES", 1)  # at 40 x 30
    calls = []
    for name, kernel in _threaded_kernels().items():
        for version in ("serial", "parallel"):
            compiled = getattr(kernel, version)

            def spy(*args, _compiled=compiled, _name=name, _version=version):
                calls.append((_name, _version))
                return _compiled(*args)

            monkeypatch.setattr(kernel, version, spy)
    X = rng.normal(size=(6000, n_features)).astype(dtype)
    X[: 3000] += 5.0  # two groups of blobs, so that the bounds skip work
    seed = int(rng.integers(1000))
    memmap = np.lib.format.open_memmap(
        os.path.join(os.environ.get("TMPDIR", "/tmp"), f"twins-{os.getpid()}.npy"),
        mode="w+", dtype=dtype, shape=X.shape)
    memmap[:] = X
    runs = {}
    try:
        for n_threads in (1, 2):
            set_num_threads(n_threads)
            del calls[:]
            fit = KMeans(n_clusters, random_state=seed, n_init=1, device="cpu").fit(X)
            minibatch = MiniBatchKMeans(n_clusters, random_state=seed, batch_size=512,
                                        max_iter=3, device="cpu").fit(X)
            streamed = KMeans(n_clusters, random_state=seed, n_init=1, device="cpu",
                              max_iter=3, stream_block_rows=1000).fit(memmap)
            runs[n_threads] = (fit, minibatch, streamed, sorted(set(calls)))
    finally:
        set_num_threads(numba.config.NUMBA_NUM_THREADS)
        del memmap
        os.remove(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"twins-{os.getpid()}.npy"))
    assert runs[1][3] and {version for _, version in runs[1][3]} == {"serial"}
    assert {version for _, version in runs[2][3]} == {"parallel"}
    # Both thread counts ran the same kernels, which include the path's own.
    assert [name for name, _ in runs[1][3]] == [name for name, _ in runs[2][3]]
    plain_step = f"_lloyd_partials[{_cpu._dots_kernel(X, n_clusters)}]"
    expected = {"blocked": plain_step, "gemm": plain_step,
                "elkan": "_elkan_e_step", "yinyang": "_yinyang_e_step"}[path]
    assert expected in [name for name, _ in runs[1][3]]
    for one, two in zip(runs[1][:3], runs[2][:3]):
        np.testing.assert_array_equal(one.cluster_centers_, two.cluster_centers_)
        np.testing.assert_array_equal(one.labels_, two.labels_)
        assert one.inertia_ == two.inertia_


def test_small_calls_run_serially_on_any_number_of_threads(rng, monkeypatch):
    """A call below SERIAL_MAX_WORK runs the serial twin on two threads too (waking the
    workers costs more than it saves there); a larger one the parallel kernel, whose
    labels are the serial twin's."""
    from gpukmeans import _cpu_runtime
    from gpukmeans._cpu_runtime import ROW_WORK, SERIAL_MAX_WORK, numba, set_num_threads

    n_features, n_clusters = 32, 32
    kernel = _cpu_lloyd.LLOYD_PARTIALS[
        _cpu._dots_kernel(np.empty((0, n_features), np.float32), n_clusters)]
    calls = []
    for version in ("serial", "parallel"):
        compiled = getattr(kernel, version)
        monkeypatch.setattr(kernel, version,
                            lambda *args, _c=compiled, _v=version: calls.append(_v) or _c(*args))
    per_row = n_features * n_clusters + ROW_WORK
    small_rows = SERIAL_MAX_WORK // per_row - 1
    results = []
    try:
        for n_threads, n_samples in ((2, small_rows), (2, small_rows + 2), (1, small_rows + 2)):
            set_num_threads(n_threads)
            X = np.random.default_rng(n_samples).normal(size=(n_samples, n_features))
            X = X.astype(np.float32)
            centers = X[:n_clusters].copy()
            labels = np.empty(n_samples, np.int32)
            with _cpu_runtime.cpu_runtime():
                _cpu.e_step(X, centers, labels)
            results.append(labels)
    finally:
        set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert calls == ["serial", "parallel", "serial"]
    assert kernel.work(X, None, centers) == (small_rows + 2) * per_row >= SERIAL_MAX_WORK
    np.testing.assert_array_equal(results[1], results[2])


def test_warm_up_compiles_both_versions_of_every_threaded_kernel():
    """What gpukmeans compile runs: with the serial twins taking small calls on any
    number of threads, the warm-up's tiny data compiled the parallel kernels of the plain
    step, the inertia and k-means++ no more, and a large fit after it compiled them
    (a reviewer's find: 11 s). In a fresh process, so that no other test's calls count."""
    code = textwrap.dedent("""
        import numba, numpy as np
        from gpukmeans import _cpu, _cpu_bounds, _cpu_runtime, _cpu_yinyang
        start_changed = _cpu_yinyang.START_CHANGED, _cpu_bounds.START_CHANGED
        _cpu.warm_up(dtypes=(np.float32,))
        assert _cpu_runtime.SERIAL_MAX_WORK == 2 * 10**7  # restored
        # Its runs with bounds kept them from their second step (else their random data
        # might never settle within the warm-up's steps): restored after.
        assert (_cpu_yinyang.START_CHANGED, _cpu_bounds.START_CHANGED) == start_changed
        from gpukmeans import _cpu_bounds, _cpu_kmeanspp, _cpu_lloyd, _cpu_passes, _cpu_yinyang
        kernels = [(name, kernel) for module in
                   (_cpu_bounds, _cpu_kmeanspp, _cpu_lloyd, _cpu_passes, _cpu_yinyang)
                   for name, kernel in vars(module).items()]
        # The plain step's, but for the ways float32 data never take (float64 rows by
        # float32 products).
        kernels += [(f"_lloyd_partials[{dots_kernel}]", kernel)
                    for dots_kernel, kernel in _cpu_lloyd.LLOYD_PARTIALS.items()
                    if dots_kernel in _cpu._dots_kernel_shapes(np.float32)]
        assert len(_cpu._dots_kernel_shapes(np.float32)) == 5
        for name, kernel in kernels:
            if isinstance(kernel, _cpu_runtime.ThreadedKernel):
                for version in ("serial", "parallel"):
                    signatures = [str(s) for s in getattr(kernel, version).signatures]
                    # The float32 data's kernels; the reduction takes float64 partials,
                    # the largest magnitude the data's bits as integers.
                    wanted = ("(Array(float64, 3, 'C'" if name == "_reduce_partials"
                              else "(Array(int32, 1, 'C'" if name == "_largest_magnitude_bits"
                              else "(Array(float32, 2, 'C'")
                    if not any(s.startswith(wanted) for s in signatures):
                        print("missing", name, version)
        print("checked")
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["NUMBA_NUM_THREADS"] = "2"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["checked"], result.stdout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_by_rows_fold_per_feature_count_is_the_general_loop_bit_for_bit(dtype, rng):
    """BY_ROWS compiles its values and fold once per feature count up to 8 (the value of
    a row in a register, folded at once): the labels, smallest and second smallest
    values of the general loop over a vector of values, bit for bit, for every count,
    with ties (integer data) and more rows than a vector."""
    from gpukmeans._cpu_nearest import _fold_by_rows, _fold_by_rows_any

    for n_features in range(1, 9):
        for data in ("normal", "integers"):
            n_rows, n_clusters = 203, int(rng.integers(1, 40))
            if data == "normal":
                rows = rng.normal(size=(n_rows, n_features))
            else:
                rows = rng.integers(0, 3, size=(n_rows, n_features)).astype(float)
            centers = rows[rng.integers(0, n_rows, n_clusters)] + (
                0 if data == "integers" else rng.normal(scale=0.1, size=(n_clusters, n_features)))
            rows_t = np.ascontiguousarray(rows.T, dtype=dtype)
            minus_two_centers = (-2 * centers).astype(dtype)
            norms = (centers.astype(dtype) ** 2).sum(axis=1).astype(dtype)
            outputs = []
            for fold in ("unrolled", "general"):
                best = np.empty(n_rows, np.int32)
                best_value = np.full(n_rows, np.inf, dtype=dtype)
                second_value = np.full(n_rows, np.inf, dtype=dtype)
                best[:] = 0
                if fold == "unrolled":
                    _fold_by_rows(rows_t, n_rows, minus_two_centers, norms, best, best_value,
                                  second_value, n_features)
                else:
                    _fold_by_rows_any(rows_t, np.empty(n_rows, dtype=dtype), n_rows,
                                      minus_two_centers, norms, best, best_value, second_value)
                outputs.append((best, best_value, second_value))
            for unrolled, general in zip(*outputs):
                np.testing.assert_array_equal(unrolled, general)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_folding_four_centers_a_pass_is_one_at_a_time_bit_for_bit(dtype, rng):
    """The GEMM's values are folded four centers per pass over the rows
    (_fold_centers): the labels, smallest and second smallest values of folding one
    center at a time (_fold_center), bit for bit, for every remainder of the centers by
    four, a range that starts inside the values, ties (integer values) and more rows
    than a vector."""
    from gpukmeans._cpu_nearest import _fold_center, _fold_centers

    for n_clusters in range(1, 14):
        for data in ("normal", "integers"):
            n_rows = 203
            if data == "normal":
                values = rng.normal(size=(n_clusters + 3, n_rows)).astype(dtype)
                norms = rng.normal(size=n_clusters + 5).astype(dtype)
            else:
                values = rng.integers(-2, 2, size=(n_clusters + 3, n_rows)).astype(dtype)
                norms = rng.integers(0, 2, size=n_clusters + 5).astype(dtype)
            first, label = 3, 2  # values[3:] are the centers 2, 3, ...
            outputs = []
            for fold in ("four a pass", "one a pass"):
                best = np.zeros(n_rows, np.int32)
                best_value = np.full(n_rows, np.inf, dtype=dtype)
                second_value = np.full(n_rows, np.inf, dtype=dtype)
                if fold == "four a pass":
                    _fold_centers(values, first, n_clusters + 3, norms, label, n_rows, best,
                                  best_value, second_value)
                else:
                    for t in range(first, n_clusters + 3):
                        _fold_center(values[t], norms[label + t - first],
                                     np.int32(label + t - first), n_rows, best, best_value,
                                     second_value)
                outputs.append((best, best_value, second_value))
            for four, one in zip(*outputs):
                np.testing.assert_array_equal(four, one)
            assert set(np.unique(outputs[0][0])) <= set(range(label, label + n_clusters))


@pytest.mark.parametrize("n_features", [200, 300, 784])
@pytest.mark.parametrize("engine_name", ["numba", "numpy"])
def test_float64_labels_are_sklearns_beyond_the_blas_depth_block(engine_name, n_features, rng):
    """float64 labels are scikit-learn's E-step's at near-ties, also past 256 features,
    where the BLAS adds the product a block of features at a time: scikit-learn fills
    the values with ``||c||^2`` and lets the GEMM add ``-2 x.c`` onto them (beta=1), and
    so do both engines (``_sklearn_values``); ``np.dot`` (or ``@``) and the norms added
    after gave other last bits, 15-23 rows in 51,200 apart at 300 features (a reviewer's
    data; the NumPy engine's 41 in 108,000 were found later). The plain step, its
    inertia pass and MiniBatchKMeans's batch labels (by index on the Numba engine, the
    copied batch's E-step on the NumPy engine, which has no fused step)."""
    from sklearn.cluster._kmeans import _labels_inertia

    module = _cpu if engine_name == "numba" else _cpu_small
    engine = module.make_engine()
    mismatches = 0
    with engine.runtime():
        for _ in range(60):
            X = 1e4 * rng.random((1, n_features)) + 1e-2 * rng.random((600, n_features))
            centers = X[rng.choice(600, 2, replace=False)].copy()
            centers[1] = centers[0] + 1e-3
            theirs = _labels_inertia(X, np.ones(600), centers, n_threads=1)[0]
            ours = np.empty(600, dtype=np.int32)
            module.e_step(X, centers, ours)
            sums_labels = np.empty(600, dtype=np.int32)
            module.lloyd_iter(X, np.ones(600), centers, sums_labels)
            rows = rng.integers(0, 600, 512)
            if engine.minibatch_step is not None:
                batch_labels = engine.minibatch_step(X, rows, np.ones(512), centers,
                                                     np.ones(2), False)[0]
            else:
                batch_labels = np.empty(512, dtype=np.int32)
                engine.assign_labels(X[rows], centers, batch_labels)
            theirs_batch = _labels_inertia(X[rows], np.ones(512), centers, n_threads=1)[0]
            mismatches += int((ours != theirs).sum() + (sums_labels != theirs).sum()
                              + (batch_labels != theirs_batch).sum())
    assert mismatches == 0


def _ties_beyond_float64(rng, n_samples, n_features, n_clusters):
    """float32 rows and centers whose exact squared distances tie, or differ by less
    than float64 rounds them: each center has one coordinate 1 + 2^-23 (a square of 47
    bits) and tiny ones elsewhere (squares 2^-54 to 2^-56, below float64's rounding
    of the sum near 1), the rows tiny values, so that differences carry up to 29 bits
    and their squares up to 58. Which center a float64 sum finds nearest then depends
    on its order of summation."""
    tiny = np.float32([2.0**-27, 2.0**-28, 3 * 2.0**-28, 0.0])
    shape = (n_clusters, n_features)
    centers = rng.choice(tiny, shape) * rng.choice([-1, 1], shape)
    centers[np.arange(n_clusters), rng.integers(0, n_features, n_clusters)] = 1 + 2.0**-23
    X = rng.choice(tiny, (n_samples, n_features)) * rng.choice([-1, 1], (n_samples, n_features))
    return X.astype(np.float32), centers.astype(np.float32)


# Draws of _ties_beyond_float64 until one has a row whose float64 distances (NumPy's
# pairwise sum, the same on every machine) give another label than the exact ones: one
# draw almost always does, but the test must not depend on it.
_ADVERSARIAL_DRAWS = 20


def _adversarial_draw(rng, n_samples, n_features, n_clusters):
    """``(X, centers, exact_labels)`` from :func:`_ties_beyond_float64`, where float64
    distances from the differences get some label wrong."""
    for _ in range(_ADVERSARIAL_DRAWS):
        X, centers = _ties_beyond_float64(rng, n_samples, n_features, n_clusters)
        exact = exactly_nearest_labels(X, centers)
        if np.any(exact != _reference_step(X, np.ones(n_samples), centers)[0]):
            return X, centers, exact
    pytest.fail("no draw where float64 distances cannot tell")


def _labels_by_path(path, X, centers, monkeypatch):
    """The labels of X from ``centers`` by one of the CPU engines' float32 E-steps, after
    a first step from other centers where a run keeps bounds (so that its second step
    searches by its bounds)."""
    n_samples, n_clusters = X.shape[0], centers.shape[0]
    sample_weight = np.ones(n_samples, np.float32)
    labels = np.full(n_samples, -1, np.int32)
    norms = _cpu.row_norms_f64(X)
    first_centers = centers[::-1].copy()
    if path in _DOTS_KERNELS:
        return _plain_step(X, sample_weight, centers, _DOTS_KERNELS[path])[0]
    if path == "numpy-e-step":
        _cpu_small.e_step(X, centers, labels)
    elif path == "numba-e-step":
        with _cpu.cpu_runtime():
            _cpu.e_step(X, centers, labels)
    elif path == "numpy-hamerly":
        with _cpu_small.small_runtime():
            run = _cpu_small.start_lloyd(X, _cpu_small.row_norms(X), sample_weight, n_clusters)
            run.step(first_centers, labels)
            run.step(centers, labels)
    elif path in ("hamerly", "elkan"):
        if path == "hamerly":
            monkeypatch.setattr(_cpu_bounds, "ELKAN_BOUNDS_BUDGET_BYTES", 0)
        else:
            monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTERS", 1)
            monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTER_FEATURES", 1)
        with _cpu.cpu_runtime():
            run = _cpu_bounds.BoundsRun(X, norms, sample_weight, n_clusters)
            run.step(first_centers, labels)
            run.step(centers, labels)
            assert run.elkan == (path == "elkan")
    elif path == "yinyang":
        monkeypatch.setattr(_cpu_yinyang, "CLUSTERS_PER_GROUP", 3)
        monkeypatch.setattr(_cpu_yinyang, "START_CHANGED", 1.0)
        with _cpu.cpu_runtime():
            plain = _cpu.PlainRun(X, norms, sample_weight)
            run = _cpu_yinyang.YinyangRun(X, norms, sample_weight, n_clusters, plain)
            for step_centers in (first_centers, first_centers, centers):
                run.step(step_centers, labels)
    elif path == "minibatch":
        rows = np.arange(n_samples, dtype=np.int64)
        with _cpu.cpu_runtime():
            labels = _cpu.minibatch_step(X, rows, sample_weight, centers,
                                         np.ones(n_clusters, np.float32), False)[0]
    return labels


@pytest.mark.parametrize("path", [
    "numpy-e-step", "numpy-hamerly", "numba-e-step", *_DOTS_KERNELS, "hamerly", "elkan",
    "yinyang", "minibatch"])
@pytest.mark.parametrize("n_features, n_clusters", [(5, 4), (40, 9)])
def test_float32_labels_are_exactly_nearest_beyond_float64(
        path, n_features, n_clusters, rng, monkeypatch):
    """float32 labels are the exactly nearest centers, the lowest index on an exact tie,
    also where float64 distances summed from the differences cannot tell (the data make
    such rows common: the float64 argmin is wrong for some of them, so a step deciding
    near-ties in float64 alone fails here). Each engine's E-step, the Numba engine's
    plain kernels, bounds runs and mini-batch step."""
    X, centers, exact = _adversarial_draw(rng, 300, n_features, n_clusters)
    labels = _labels_by_path(path, X, centers, monkeypatch)
    np.testing.assert_array_equal(labels, exact)


@pytest.mark.parametrize("path", [
    "numpy-e-step", "numpy-hamerly", "numba-e-step", *_DOTS_KERNELS, "hamerly", "elkan",
    "yinyang", "minibatch"])
def test_float32_labels_are_exactly_nearest_with_repeated_centers(path, rng, monkeypatch):
    """Centers repeated (an exact tie for every row: the lowest index) or repeated but
    for one feature (their distances differ by less than float64 rounds them, and only
    that feature decides): each float32 path gives the exactly nearest center. The
    exact sums skip the features where two centers agree; a skip of the wrong features
    or a tie sent to the higher index fails here."""
    n_features = 40
    X, centers = _ties_beyond_float64(rng, 300, n_features, 5)
    one_feature_off = centers[[1, 3]].copy()
    feature = rng.integers(0, n_features, 2)
    tiny = np.float32([2.0**-27, 2.0**-28, 3 * 2.0**-28, 0.0])
    for row, f in enumerate(feature):
        others = tiny[tiny != abs(one_feature_off[row, f])]
        one_feature_off[row, f] = rng.choice(others) * rng.choice([-1, 1])
    # Every center repeated at a higher index (one also at a lower), so that each row
    # ties exactly with a copy of its nearest center, or is nearest a one-feature-off one.
    centers = np.concatenate([centers[[2]], centers, one_feature_off, centers])
    exact = exactly_nearest_labels(X, centers)
    labels = _labels_by_path(path, X, centers, monkeypatch)
    np.testing.assert_array_equal(labels, exact)


def test_predict_float32_is_exactly_nearest_beyond_float64(cpu_engine, rng):
    """The estimator's float32 ``predict`` on each CPU engine: the exactly nearest of the
    fitted centers where float64 cannot tell (each center fitted
    as its own cluster, so that the model's centers are the adversarial ones)."""
    X, centers, exact = _adversarial_draw(rng, 300, 40, 9)
    km = KMeans(9, init=centers, n_init=1, device="cpu").fit(centers)
    np.testing.assert_array_equal(km.cluster_centers_, centers)
    np.testing.assert_array_equal(km.predict(X), exact)


@pytest.mark.parametrize("engine_module, by_gemm", [
    (_cpu_small, 0.0), (_cpu_small, np.inf), (_cpu, None)],
    ids=["numpy-gemm", "numpy-pairs", "numba"])
def test_float32_dot_product_labels_are_exact_beyond_float64(
        engine_module, by_gemm, rng, monkeypatch):
    """With ``unit_centers`` (cosine fits) a float32 label is the center of the exactly
    largest ``x.c``, the lowest index on an exact tie, where float64 sums of the (exact)
    products cannot tell: rows and centers of one coordinate 1 + 2^-23 and tiny others,
    products from 2^-56 to about 1 (few features, so that a row's big coordinate often
    meets two centers'). The NumPy engine takes the float64 ranks of near-ties from
    GEMMs or from each pair's products: both."""
    if by_gemm is not None:
        monkeypatch.setattr(_cpu_small, "NEAR_TIES_BY_GEMM", by_gemm)
    n_samples, n_features, n_clusters = 300, 6, 8
    for _ in range(_ADVERSARIAL_DRAWS):
        _, centers = _ties_beyond_float64(rng, 1, n_features, n_clusters)
        X = _ties_beyond_float64(rng, 1, n_features, n_samples)[1]
        X64, centers64 = X.astype(np.float64), centers.astype(np.float64)
        exact = np.array([
            max(range(n_clusters), key=lambda j: (
                sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(x, centers64[j])),
                -j))
            for x in X64])
        if np.any(exact != (X64[:, None, :] * centers64[None]).sum(axis=-1).argmax(axis=1)):
            break
    else:
        pytest.fail("no draw where float64 dot products cannot tell")
    labels = np.full(n_samples, -1, np.int32)
    with engine_module.make_engine().runtime():
        engine_module.e_step(X, centers, labels, unit_centers=True)
    np.testing.assert_array_equal(labels, exact)


@pytest.mark.parametrize("passes, fsum_terms", [
    (1, 0), (2, 0), (_cpu_small.EXACT_SIGN_PASSES, 0),
    (_cpu_small.EXACT_SIGN_PASSES, _cpu_small.EXACT_SIGN_FSUM_TERMS)])
def test_exact_signs_are_the_signs_of_exact_sums(passes, fsum_terms, rng, monkeypatch):
    """The NumPy engine's vectorised exact sign of a sum of float64 terms (products of
    float32 values and their errors) is the sign of the rational sum: sums that cancel
    to 0 exactly, to within one term's last bit, or across 500 binary orders of
    magnitude, with too few error-free passes to decide (the rest go to math.fsum),
    with the usual number and every pass vectorised, and as shipped (math.fsum once
    few terms are left)."""
    monkeypatch.setattr(_cpu_small, "EXACT_SIGN_PASSES", passes)
    monkeypatch.setattr(_cpu_small, "EXACT_SIGN_FSUM_TERMS", fsum_terms)
    n_rows, n_terms = 400, 24
    exponents = rng.integers(-268, 200, (n_rows, n_terms))  # multiples of 2^-298
    terms = np.ldexp(rng.integers(-2**24, 2**24, (n_rows, n_terms)) * 2.0**-24, exponents)
    kind = np.arange(n_rows) % 4
    # Exact zeros: each term with its negation, shuffled.
    zero = kind == 1
    terms[zero, n_terms // 2:] = -terms[zero, :n_terms // 2]
    # One bit of the smallest term off a sum of 0.
    off = kind == 2
    terms[off, n_terms // 2:] = -terms[off, :n_terms // 2]
    terms[off, -1] += np.ldexp(1.0, exponents[off, -1] - 30)
    # Many large terms that cancel and a tiny one that decides, split into parts.
    split = kind == 3
    big = np.ldexp(rng.integers(1, 2**24, (split.sum(), 4)) * 1.0, 180)
    terms[split, :4], terms[split, 4:8] = big, -big
    terms[split, 8] = 2.0**-280 * rng.choice([-1, 0, 1], split.sum())
    terms[split, 9:] = 0
    order = rng.permuted(np.tile(np.arange(n_terms), (n_rows, 1)), axis=1)
    terms = np.take_along_axis(terms, order, axis=1)
    exact = [sum(map(Fraction, row.tolist())) for row in terms]
    expected = np.array([(s > 0) - (s < 0) for s in exact], dtype=np.float64)
    assert set(expected[zero]) == {0} and set(expected[split]) == {-1, 0, 1}
    np.testing.assert_array_equal(_cpu_small._exact_signs(terms), expected)


@pytest.mark.parametrize("fsum_terms", [_cpu_small.EXACT_SIGN_FSUM_TERMS, 0])
@pytest.mark.parametrize("block_bytes", [_cpu_small.NEAR_TIE_BLOCK_BYTES, 1])
@pytest.mark.parametrize("unit_centers", [False, True])
def test_knockout_finds_the_lowest_exactly_nearest_candidate(
        unit_centers, block_bytes, fsum_terms, rng, monkeypatch):
    """The NumPy engine's exact decision among a row's candidate centers (a knockout,
    pairs in index order): the exactly nearest of the candidates, the lowest index on an
    exact tie, with up to all 23 centers a candidate and exact ties common (small
    integers, where the float64 ranks are exact too, and centers that are mirror
    images about a row); pairs in one block, and one pair a block; signs by math.fsum
    (few terms) and by the vectorised passes."""
    monkeypatch.setattr(_cpu_small, "NEAR_TIE_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(_cpu_small, "EXACT_SIGN_FSUM_TERMS", fsum_terms)
    n_samples, n_features, n_clusters = 200, 3, 23
    X = rng.integers(-2, 3, (n_samples, n_features)).astype(np.float32)
    centers = rng.integers(-3, 4, (n_clusters, n_features)).astype(np.float32)
    centers[n_clusters // 2:] = (2 * X[:n_clusters - n_clusters // 2]
                                 - centers[:n_clusters - n_clusters // 2])
    candidates = rng.random((n_samples, n_clusters)) < rng.random((n_samples, 1))
    candidates[np.arange(n_samples), rng.integers(0, n_clusters, n_samples)] = True
    nearest = _cpu_small._exactly_nearest(X, centers, candidates, unit_centers)

    def rank(x, c):
        x, c = map(Fraction, x.tolist()), map(Fraction, c.tolist())
        pairs = list(zip(x, c))
        return -sum(a * b for a, b in pairs) if unit_centers else sum((a - b) ** 2 for a, b in pairs)

    expected = [min(np.flatnonzero(cands), key=lambda j: (rank(x, centers[j]), j))
                for x, cands in zip(X.astype(np.float64), candidates)]
    ties = sum(len({rank(x, centers[j]) for j in np.flatnonzero(c)}) < c.sum()
               for x, c in zip(X.astype(np.float64), candidates))
    assert ties > n_samples // 4  # the lowest-index rule is exercised
    np.testing.assert_array_equal(nearest, expected)


@pytest.mark.parametrize("data", ["one-hot", "binary", "small-integers", "integers",
                                  "coarse-integers", "tiny-one-hot", "subnormal-integers",
                                  "one-hot-tenths", "one-hot-third-last", "normal"])
@pytest.mark.parametrize("unit_centers", [False, True])
def test_float32_values_are_exact_only_where_they_are(data, unit_centers, rng):
    """The NumPy engine takes a near-tie's float32 values ``||c||^2 - 2 x.c`` as they are
    where ``_values_are_exact`` says they were computed without rounding (one-hot, binary
    and small-integer rows against centers that are rows): there, each value is the
    exact one, and the labels of an E-step are the exactly nearest centers; larger
    integers and finer grids (one-hot rows of 0.1, normal data) must be refused where
    float32 rounds, and so must multiples of 2^12 against unit centers, whose 1 is
    finer than their grid, and tiny values whose products underflow."""
    n_samples, n_features, n_clusters = 60, int(rng.integers(1, 300)), 8

    def one_hot(scale):
        X = np.zeros((n_samples, n_features))
        X[np.arange(n_samples), rng.integers(0, n_features, n_samples)] = scale
        return X

    X = {
        "one-hot": lambda: one_hot(1.0),
        "binary": lambda: rng.integers(0, 2, (n_samples, n_features)),
        "small-integers": lambda: rng.integers(0, 4, (n_samples, n_features)),
        "integers": lambda: rng.integers(0, 2**10, (n_samples, n_features)),
        "coarse-integers": lambda: rng.integers(1, 16, (n_samples, n_features)) * 2.0**12,
        "one-hot-tenths": lambda: one_hot(np.float32(0.1)),
        "one-hot-third-last": lambda: one_hot(1.0),
        # Products below float32's 2^-149 round (underflow): never exact.
        "tiny-one-hot": lambda: one_hot(2.0**-80),
        "subnormal-integers": lambda: rng.integers(0, 3, (n_samples, n_features)) * 2.0**-130,
        "normal": lambda: rng.normal(size=(n_samples, n_features)),
    }[data]().astype(np.float32)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)]
    centers[1] = centers[0]  # a repeated center: exact ties for the rows near it
    x_squared_norms = np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64))
    if data == "one-hot-third-last":
        centers[-1] = X[0] / 3  # the last center off the grid: no row's values exact
    exact = _cpu_small._values_are_exact(
        X, x_squared_norms, _cpu_small._values_certificate(centers, unit_centers))
    values = X @ (-2 * centers).T + _cpu_small.centers_squared_norms(centers, unit_centers)
    for i in np.flatnonzero(exact):
        for j in range(n_clusters):
            dot = sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(X[i], centers[j]))
            norm = 1 if unit_centers else sum(Fraction(float(b)) ** 2 for b in centers[j])
            assert Fraction(float(values[i, j])) == norm - 2 * dot
    expected = {"one-hot": n_samples, "binary": n_samples, "small-integers": n_samples,
                "coarse-integers": 0 if unit_centers else n_samples, "tiny-one-hot": 0,
                "one-hot-tenths": 0, "one-hot-third-last": 0, "normal": 0}
    if data in expected:
        assert exact.sum() == expected[data]
    if not unit_centers:
        labels = np.full(n_samples, -1, np.int32)
        _cpu_small.e_step(X, centers, labels)
        np.testing.assert_array_equal(labels, exactly_nearest_labels(X, centers))


@pytest.mark.parametrize("data", ["integers", "binary", "one-hot-tenths", "dyadic",
                                  "large-integers", "tiny", "wide-integers", "normal"])
def test_float64_is_exact_only_where_the_float64_ranks_are(data, rng):
    """The test that lets an exact tie be decided from float64 ranks (both engines'
    ``float64_is_exact``) holds only where those ranks are the exact values, for squared
    distances and for dot products; and it holds on data on a coarse grid (small, large
    and subnormal integers, one-hot rows of 0.1, whose grid is fine but whose ranks are
    small), where exact ties are common (else each would cost an exact sum)."""
    from gpukmeans import _cpu_exact

    # Dot products of large integers are exact up to 64 or so features.
    n_features = int(rng.integers(100 if data == "large-integers" else 1, 300))

    def one_hot_tenths(size):
        values = np.zeros(size)
        values[np.arange(size[0]), rng.integers(0, size[1], size[0])] = np.float32(0.1)
        return values

    draw = {
        "integers": lambda size: rng.integers(0, 256, size),
        "binary": lambda size: rng.integers(0, 2, size),
        "one-hot-tenths": one_hot_tenths,
        "dyadic": lambda size: rng.integers(-2**12, 2**12, size) * 2.0**-int(rng.integers(0, 30)),
        "large-integers": lambda size: ((2**23 + rng.integers(0, 2**10, size))
                                        * 2.0**int(rng.integers(0, 60))),
        "tiny": lambda size: rng.integers(0, 2**10, size) * 2.0**-140,
        # Squares of 48 bits: their float64 sums round past a feature or two.
        "wide-integers": lambda size: rng.integers(0, 2**24, size),
        "normal": lambda size: rng.normal(size=size),
    }[data]
    certified = 0
    for _ in range(40):
        x, a, b = draw((3, n_features)).astype(np.float32)
        for unit_centers in (False, True):
            with _cpu.cpu_runtime():
                bounds = [_cpu_nearest._rank_bounds(x, c, unit_centers) for c in (a, b)]
                extent = max(bounds[0][2], bounds[1][2])
                numba_says = _cpu_exact.float64_is_exact(x, a, b, extent)
            numpy_says = _cpu_small._float64_is_exact(
                x[None], np.stack([a, b]), np.ones((1, 2), bool), np.array([extent]))[0]
            assert numba_says == numpy_says
            if numba_says:
                certified += 1
                for c, (rank, _, _) in zip((a, b), bounds):
                    exact = sum((Fraction(float(x_f)) * Fraction(float(c_f)) if unit_centers
                                 else (Fraction(float(x_f)) - Fraction(float(c_f))) ** 2)
                                for x_f, c_f in zip(x, c))
                    assert Fraction(rank) == (-exact if unit_centers else exact)
    # Large integers' products (dot products) do round; their differences do not.
    expected = {"integers": 80, "binary": 80, "one-hot-tenths": 80, "tiny": 80,
                "large-integers": 40}
    if data in expected:
        assert certified == expected[data]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_views_take_the_loop_and_give_the_same_products(dtype, rng):
    """The 512-bit kernels load whole vectors of a row: a view whose rows are strided
    (every other feature) must not reach them, and gives what a copy of it gives (up to
    the two kernels' summation orders)."""
    wide = rng.normal(size=(30, 2 * 40)).astype(dtype)
    X, centers = wide[:, ::2], rng.normal(size=(9, 80)).astype(dtype)[:, ::2]
    rows = np.arange(30)
    dots = np.empty((30, 9), dtype)
    _cpu_nearest._rows_dots_blocked(X, rows, 30, centers, dots, np.empty(0))
    expected = X.astype(np.float64) @ centers.T.astype(np.float64)
    scale = np.abs(X).astype(np.float64) @ np.abs(centers.T).astype(np.float64)
    assert np.all(np.abs(dots - expected) <= 42 * float(np.finfo(dtype).eps) * scale)
    row = np.empty((1, 9), dtype)
    padded = np.zeros((12, 40), dtype)
    padded[:9] = np.ascontiguousarray(centers)
    by_rows = np.empty((1, 12), dtype)
    _cpu_nearest._chunk_dots_by_rows(X, 0, 1, padded, 9, by_rows)
    _cpu_nearest._row_dots(X, 0, centers, row, 0)
    for products in (row[0], by_rows[0, :9]):
        assert np.all(np.abs(products - expected[0])
                      <= 42 * float(np.finfo(dtype).eps) * scale[0])


@pytest.mark.parametrize("path", ["hamerly", "elkan"])
@pytest.mark.parametrize("n_features, n_clusters", [(40, 30), (200, 60)])
def test_bounded_runs_search_whole_chunks_by_gemm_to_the_same_bits(
        path, n_features, n_clusters, rng, monkeypatch):
    """A bounded run's chunks searched whole (its first step, and wherever every row of
    a chunk is open) take BLAS's GEMM where the engine's rule says
    (_cpu.dense_search_by_gemm), else the blocked kernel: other products, other bounds,
    but each label is the exactly nearest center, so the labels, sums and weights of
    every step are the same bits, and so are the whole fit's."""
    if path == "hamerly":
        monkeypatch.setattr(_cpu_bounds, "ELKAN_BOUNDS_BUDGET_BYTES", 0)
    else:
        monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTERS", 1)
        monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTER_FEATURES", 1)
    n_samples = int(rng.integers(1500, 3000))
    X = (rng.normal(size=(n_samples, n_features))
         + 4 * rng.integers(0, 5, size=(n_samples, 1))).astype(np.float32)
    sample_weight = rng.uniform(0.5, 2, n_samples).astype(np.float32)
    norms = _cpu.row_norms_f64(X)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)].copy()
    steps = {}
    for dense_by_gemm in (False, True):
        labels = np.full(n_samples, -1, np.int32)
        results = []
        with _cpu.cpu_runtime():
            run = _cpu_bounds.BoundsRun(X, norms, sample_weight, n_clusters,
                                        dense_by_gemm=dense_by_gemm)
            step_centers = centers
            for _ in range(4):
                sums, weights = run.step(step_centers, labels)
                results.append((labels.copy(), sums, weights))
                step_centers = (sums / np.maximum(weights, 1e-300)[:, None]).astype(np.float32)
            inertia = run.finish(step_centers, labels, True)
        assert run.elkan == (path == "elkan")
        steps[dense_by_gemm] = results, labels.copy(), inertia
    for (labels_a, sums_a, weights_a), (labels_b, sums_b, weights_b) in zip(
            steps[False][0], steps[True][0]):
        np.testing.assert_array_equal(labels_a, labels_b)
        np.testing.assert_array_equal(sums_a, sums_b)
        np.testing.assert_array_equal(weights_a, weights_b)
    np.testing.assert_array_equal(steps[False][1], steps[True][1])
    assert steps[False][2] == steps[True][2]
    # The rule: the GEMM wherever the plain step would not take the blocked kernel.
    assert _cpu.dense_search_by_gemm(40, 30) and _cpu.dense_search_by_gemm(784, 256)
    assert _cpu.dense_search_by_gemm(64, 8) and _cpu.dense_search_by_gemm(128, 17)
    assert not _cpu.dense_search_by_gemm(784, 20) and not _cpu.dense_search_by_gemm(128, 16)
