"""The CPU engine's float32 runs with Yinyang's group bounds, for many clusters
(:class:`YinyangRun`, an ``Engine.start_lloyd`` run).

Ding, Zhao, Shen, Musuvathi and Mytkowicz, "Yinyang K-Means: A Drop-In Replacement of
the Classic K-Means with Consistent Speedup", ICML 2015. The centers are split once into
groups (k-means on the centers of the first bounded step, :func:`center_groups`). Each
sample keeps an upper bound on the distance to its center, a lower bound per group on
the distance to every center of the group but its own, and the least of those (the
global bound). Moving the centers loosens the upper bound by its center's shift, a
group's bound by the largest shift in the group, the global bound by the largest of all.
A sample whose upper bound is below its global bound keeps its center (O(1)); else the
distance to its own center tightens the upper bound, and only the groups whose bound is
still below it are searched. Hamerly's single bound (:mod:`gpukmeans._cpu_bounds`) fails
for almost every sample when clusters are many and Elkan's per-center bounds outgrow
memory; group bounds cost ``n_samples x n_groups`` float32 values and filter nearly as
well. While the centers still move enough to change many labels, the bounds filter
little and cost more than they save: a run takes plain steps until the labels settle
(:data:`START_CHANGED`), and its bounds from then on.

The bounds are exact-arithmetic statements about the float32 centers, set from
``||x||^2 + (||c||^2 - 2 x.c)`` with a margin above its rounding, as Hamerly's and
Elkan's are (their module says how); a searched center within twice the margin of the
best is compared exactly (:func:`gpukmeans._cpu_nearest._closer_exactly`). So each
label is the exactly nearest center, as the plain step's. The M-step is the plain
step's, over every sample in its order (:func:`gpukmeans._cpu_lloyd._accumulate_partials`),
not moves between sums: a Yinyang run's labels, centers and inertia are the plain run's
bit for bit, the choice between them is speed alone, and a streamed fit (which takes the
plain step) gives the same result.

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit, prange

from ._cpu_bounds import (
    _center_distances, _distance_bound, _lower_bound_f32, plain_step_settles,
)
from ._cpu_lloyd import _accumulate_partials, _group_bounds, _reduce_partials
from ._cpu_nearest import (
    GEMM_TILE_CENTERS, _dot1, _exactly_nearest, _fold_centers, _minus_two_centers_and_norms,
    _nearer_than, _start_nearest_two,
)
from ._cpu_passes import inertia
from ._cpu_runtime import CACHE, always_parallel, prange_only, threaded
from ._cpu_small import CHUNK_ROWS
from ._cpu_small import bound_margin_coefficient as _bound_margin_coefficient
from ._cpu_small import fold_rows as _fold_rows
from ._cpu_small import n_chunks as _n_chunks
from ._cpu_small import n_groups as _n_groups

# Ding et al.'s choice: a tenth as many groups as clusters, while the group bounds fit
# in the budget (float32, n_samples x n_groups), and at most MAX_CENTER_GROUPS: a full
# search costs a pass over every group's values per sample, and more groups filter
# little better. 100,000 x 32 blobs, 10 iterations, CPU ms per iteration, at most 16 /
# 32 / 64 / 160 groups: k=512 46.8 / 43.8 / - / 49.4 (51 groups), k=1024 71.0 / 69.6 /
# 70.3 / 80.0, k=4096 342 / 309 / 322 / 328 (the plain step: 52, 98, 351).
CLUSTERS_PER_GROUP = 10
MAX_CENTER_GROUPS = 32
GROUP_BOUNDS_BUDGET_BYTES = 256 * 2**20
# Lloyd iterations that group the centers (Ding et al.: five).
GROUPING_ITERATIONS = 5
# A run takes plain steps until one changes at most this fraction of the labels, and
# keeps the group bounds from the next step on. While many labels change, most samples
# fail the bounds and a bounded step costs more than a plain one; the first bounded
# step (a full search that sets every bound) costs more still. 100,000 x 32 blobs,
# random rows as centers, one thread, CPU ms a step, plain / bounded (labels changed):
# k=512, 64 blobs: steps 2-10 50-55 / 62-87 (20.7% .. 2.1%), from step 11 50 / 34-48
# (1.8% and fewer), the first bounded step 93; 512 blobs: steps 2-3 51 / 67-71 (18.8%,
# 2.8%), step 5 on 50 / 7-32 (0.4% and fewer); k=1,024, 64 blobs: steps 2-7 98-109 /
# 101-152 (25.2% .. 3.7%), step 8 on 90-101 / 59-106 (3.0% and fewer). The plain step
# and the bounded one give the same labels and sums bit for bit, so the switch changes
# nothing but the time.
START_CHANGED = 0.02


def open_divisor(n_features):
    """A sample with more than ``n_clusters // open_divisor(n_features)`` centers open
    after its group test is searched in full by its chunk's GEMM, not one dot product
    per open center: ``128 (32 / n_features)^2``, within [8, 128].

    A lone dot product costs its call, its center's row fetched and a horizontal sum
    whatever the features, where the GEMM's cost per pair grows with them. 100,000
    blobs (64 modes), 12 steps from random rows with bounds from the second, one thread,
    CPU ms of steps 3-12, divisor 8 / 32 / 128: d=32 k=512 71-122 / - / 65-89 (64: 60-89),
    k=1,024 184-230 / - / 121-167, k=4,096 504-720 / - / 338-519 (64: 343-494), k=16,384
    (steps 3-8) 2,961-3,509 / 1,801-2,446 / 1,491-1,950; d=64 k=512 119-164 / 92-147 / 116-171;
    d=128 k=512 142-205 / 201-302 / 246-376 (the divisor was 8 at every width before).
    """
    return int(min(128, max(8, 128 * 32**2 // max(n_features, 1) ** 2)))


def n_center_groups(n_samples, n_clusters):
    """Groups of centers: ``n_clusters / CLUSTERS_PER_GROUP``, fewer where their bounds
    would outgrow :data:`GROUP_BOUNDS_BUDGET_BYTES`; at least 1."""
    fits = GROUP_BOUNDS_BUDGET_BYTES // (4 * max(n_samples, 1))
    return int(max(1, min(n_clusters // CLUSTERS_PER_GROUP, fits, MAX_CENTER_GROUPS)))


def center_groups(centers, n_groups):
    """Each center's group: Lloyd's k-means on the centers (float64), from every
    ``n_clusters / n_groups``-th center, :data:`GROUPING_ITERATIONS` iterations, ties to
    the lower group; a group left empty keeps its seed. A function of the centers alone.

    Returns ``(order, starts)``: the centers' indices sorted by group (by index within a
    group), and where each group starts in ``order`` (``n_groups + 1`` offsets).
    """
    c = centers.astype(np.float64)
    n_clusters = c.shape[0]
    seeds = c[np.linspace(0, n_clusters - 1, n_groups).astype(np.int64)]
    c_norms = np.einsum("ij,ij->i", c, c)
    group_of = np.zeros(n_clusters, dtype=np.int64)
    for _ in range(GROUPING_ITERATIONS):
        distances = c_norms[:, None] - 2.0 * (c @ seeds.T) + np.einsum("ij,ij->i", seeds, seeds)
        group_of = distances.argmin(axis=1)
        counts = np.bincount(group_of, minlength=n_groups)
        sums = np.zeros_like(seeds)
        np.add.at(sums, group_of, c)
        has = counts > 0
        seeds[has] = sums[has] / counts[has][:, None]
    order = np.argsort(group_of, kind="stable")
    starts = np.searchsorted(group_of[order], np.arange(n_groups + 1))
    return order.astype(np.int32), starts.astype(np.int64)


@njit(nogil=True, cache=CACHE)
def _squared_lower_bound(x_squared_norm, value, margin):
    """A float32 lower bound on ``||x - c||^2`` from ``value = ||c||^2 - 2 x.c`` (0 at
    least; +inf for an infinite value)."""
    return _lower_bound_f32(max(x_squared_norm + value - margin, 0.0))


@njit(nogil=True, cache=CACHE)
def _group_bound(x_squared_norm, values, label, order, first, last, margin):
    """A lower bound on the squared distances to the centers ``order[first:last]`` but
    ``label``, from their ``values`` (the least value's), as float32; +inf for none."""
    least = np.inf
    for position in range(first, last):
        j = order[position]
        if j != label and values[j] < least:
            least = values[j]
    return _squared_lower_bound(x_squared_norm, least, margin)


@njit(nogil=True, cache=CACHE)
def _full_search(
    X, rows, n_rows, block, x_squared_norms, centers, perm_minus_two_centers,
    perm_centers_squared_norms, order, inverse_order, group_of_position, max_center_norm,
    margin_coefficient, unit_centers, labels, upper, global_lower, lower, stamp, now, scratch,
    group_best, group_least, group_second, best, best_value, second_value, row_norms,
    margins, row_bounds, least_bounds,
):
    """Search the samples ``rows[:n_rows]`` (their rows in ``block``) in full: their
    labels, upper bounds and every group bound afresh.

    The centers are taken in group order (``perm_*``; ``order[p]`` is the center at
    position p), a tile at a time by one GEMM, and folded across the rows (vectorised,
    as the plain step's :func:`_chunk_nearest_by_gemm`) into each row's smallest value
    per group, its position and the group's next smallest. A row's two smallest values
    overall come from those; within twice the margin of each other, the row takes the
    exactly nearest center (:func:`_exactly_nearest`, as the plain step does). A group's
    bound is its smallest value but the label's.
    """
    n_center_groups = group_best.shape[0]
    n_clusters = perm_minus_two_centers.shape[0]
    rows_t = block[:n_rows].T
    for g in range(n_center_groups):
        _start_nearest_two(n_rows, group_best[g], group_least[g], group_second[g])
    for tile_start in range(0, n_clusters, GEMM_TILE_CENTERS):
        tile_end = min(tile_start + GEMM_TILE_CENTERS, n_clusters)
        n_tile = tile_end - tile_start
        values = scratch[: n_tile * n_rows].reshape((n_tile, n_rows))
        np.dot(perm_minus_two_centers[tile_start:tile_end], rows_t, values)
        # Each run of positions of one group in the tile, folded into its group's.
        p = tile_start
        while p < tile_end:
            g = group_of_position[p]
            run_end = p + 1
            while run_end < tile_end and group_of_position[run_end] == g:
                run_end += 1
            _fold_centers(values, p - tile_start, run_end - tile_start,
                          perm_centers_squared_norms, p, n_rows, group_best[g], group_least[g],
                          group_second[g])
            p = run_end
    # Each row's smallest two values overall, from the groups' (equal values to the
    # lower position, as argmin: the groups are in position order), and its margin;
    # loops over the rows innermost, branch-free, so that they vectorise.
    for r in range(n_rows):
        row_norms[r] = x_squared_norms[rows[r]]
        margins[r] = margin_coefficient * (row_norms[r] + max_center_norm)
        best[r] = group_best[0, r]
        best_value[r] = group_least[0, r]
        second_value[r] = group_second[0, r]
    for g in range(1, n_center_groups):
        for r in range(n_rows):
            value = group_least[g, r]
            current = best_value[r]
            closer = value < current
            second_value[r] = (min(current, group_second[g, r]) if closer
                               else min(second_value[r], value))
            best[r] = group_best[g, r] if closer else best[r]
            best_value[r] = value if closer else current
    for r in range(n_rows):
        i = rows[r]
        if second_value[r] - best_value[r] <= 2 * margins[r]:
            position = inverse_order[_exactly_nearest(X[i], centers, unit_centers)]
            best_value[r] = perm_centers_squared_norms[position] + _dot1(
                X[i], perm_minus_two_centers[position])
            best[r] = position
        labels[i] = order[best[r]]
        upper[i] = _distance_bound(row_norms[r], best_value[r], margins[r])
        stamp[i] = now
        least_bounds[r] = np.inf
    # A group's bound: its smallest value but the label's.
    for g in range(n_center_groups):
        for r in range(n_rows):
            value = group_second[g, r] if group_best[g, r] == best[r] else group_least[g, r]
            row_bounds[r] = _squared_lower_bound(row_norms[r], value, margins[r])
            least_bounds[r] = min(least_bounds[r], np.float64(row_bounds[r]))
        for r in range(n_rows):
            lower[rows[r], g] = row_bounds[r]
    for r in range(n_rows):
        global_lower[rows[r]] = np.sqrt(least_bounds[r])


@njit(nogil=True, cache=CACHE)
def _search_open_groups(x, x_squared_norm, old, old_value, upper, bounds, group_distances,
                        values, centers, minus_two_centers, centers_squared_norms, order,
                        starts, group_of, margin, unit_centers, searched):
    """A sample with few centers left open by its group bounds (``group_distances``, as
    distances; ``bounds``, the same squared, float32): one dot product per center of
    each open group; the searched groups' bounds afresh, the old center into its
    group's bound when it loses its samples. Returns ``(label, upper, global_lower)``.
    """
    label = old
    label_value = old_value
    values[old] = old_value
    n_searched = 0
    for g in range(starts.shape[0] - 1):
        # Closed: every center of the group is farther than the best so far.
        if upper <= group_distances[g]:
            continue
        searched[n_searched] = g
        n_searched += 1
        for position in range(starts[g], starts[g + 1]):
            j = order[position]
            if j == old:
                continue
            value = centers_squared_norms[j] + _dot1(x, minus_two_centers[j])
            values[j] = value
            if _nearer_than(x, centers, j, value, label, label_value, margin, unit_centers):
                label = j
                label_value = value
                upper = _distance_bound(x_squared_norm, value, margin)
    for s in range(n_searched):
        g = searched[s]
        bounds[g] = _group_bound(x_squared_norm, values, label, order, starts[g],
                                 starts[g + 1], margin)
    if label != old:
        g = group_of[old]
        bounds[g] = min(bounds[g], _squared_lower_bound(x_squared_norm, old_value, margin))
    least = np.inf
    for g in range(starts.shape[0] - 1):
        least = min(least, np.float64(bounds[g]))
    return label, upper, np.sqrt(least)


@njit(nogil=True, cache=CACHE)
def _yinyang_chunk(
    X, x_squared_norms, centers, minus_two_centers, centers_squared_norms,
    perm_minus_two_centers, perm_centers_squared_norms, max_center_norm, labels, upper,
    global_lower, lower, stamp, drift, center_shift, max_shift, order, inverse_order,
    starts, group_of, group_of_position, margin_coefficient, unit_centers, search_all,
    max_open, chunk_start, chunk_end, values, searched, group_distances, rows, gathered, scratch,
    group_best, group_least, group_second, best, best_value, second_value, row_norms, margins,
    row_bounds, least_bounds,
):
    """:func:`_yinyang_e_step` on one chunk of rows; the rest are its scratch buffers."""
    n_center_groups = starts.shape[0] - 1
    now = drift.shape[0] - 1
    drift_now = drift[now]
    n_search = 0
    for i in range(chunk_start, chunk_end):
        if search_all:
            rows[n_search] = i
            n_search += 1
            continue
        x = X[i]
        old = labels[i]
        margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
        bound_upper = upper[i] + center_shift[old]
        bound_lower = global_lower[i] - max_shift
        old_value = np.inf
        if bound_upper > bound_lower:
            old_value = centers_squared_norms[old] + _dot1(x, minus_two_centers[old])
            bound_upper = _distance_bound(x_squared_norms[i], old_value, margin)
        if bound_upper <= bound_lower:
            upper[i] = bound_upper
            global_lower[i] = bound_lower
            continue
        # Bring the group bounds up to date; the relative 1e-12 covers the rounding of
        # the cumulative drifts' difference.
        bounds = lower[i]
        then = drift[stamp[i]]
        n_open = 0
        for g in range(n_center_groups):
            loosen = drift_now[g] - then[g] + 1e-12 * drift_now[g]
            distance = max(np.sqrt(np.float64(bounds[g])) - loosen, 0.0)
            group_distances[g] = distance
            bounds[g] = _lower_bound_f32(distance * distance)
            if bound_upper > distance:
                n_open += starts[g + 1] - starts[g]
        stamp[i] = now
        if n_open > max_open:
            rows[n_search] = i
            n_search += 1
            continue
        label, new_upper, new_lower = _search_open_groups(
            x, x_squared_norms[i], old, old_value, bound_upper, bounds, group_distances, values,
            centers, minus_two_centers, centers_squared_norms, order, starts, group_of, margin,
            unit_centers, searched)
        labels[i] = label
        upper[i] = new_upper
        global_lower[i] = new_lower
    if n_search == 0:
        return
    if search_all:
        block = X[chunk_start:chunk_end]
    else:
        for r in range(n_search):  # by value: a row assigned whole compiles Numba's
            for f in range(X.shape[1]):  # shape-mismatch message (_reduce_partials)
                gathered[r, f] = X[rows[r], f]
        block = gathered
    _full_search(
        X, rows, n_search, block, x_squared_norms, centers, perm_minus_two_centers,
        perm_centers_squared_norms, order, inverse_order, group_of_position, max_center_norm,
        margin_coefficient, unit_centers, labels, upper, global_lower, lower, stamp, now,
        scratch, group_best, group_least, group_second, best, best_value, second_value,
        row_norms, margins, row_bounds, least_bounds)


@threaded(always_parallel)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _yinyang_e_step(
    X,  # IN (n_samples, n_features)
    x_squared_norms,  # IN (n_samples,) float64
    centers,  # IN (n_clusters, n_features)
    labels,  # INOUT (n_samples,) int32
    upper,  # INOUT (n_samples,) float64: >= the distance to its center
    global_lower,  # INOUT (n_samples,) float64: <= the distance to every other center
    lower,  # INOUT (n_samples, n_center_groups) float32: per group, squared, as of `stamp`
    stamp,  # INOUT (n_samples,) int64: the row of `drift` at which `lower[i]` was set
    drift,  # IN (n_steps + 1, n_center_groups) float64: cumulative largest shift per group
    center_shift,  # IN (n_clusters,) float64: this step's shifts
    max_shift,  # this step's largest shift
    order,  # IN (n_clusters,) int32: centers by group (center_groups)
    starts,  # IN (n_center_groups + 1,) int64
    group_of,  # IN (n_clusters,) int64: each center's group
    margin_coefficient,
    unit_centers,  # compare by dot products (cosine fits): see _exact_rank
    search_all,  # no bounds yet: search every sample and set them all
    max_open,  # more centers open than this: search the sample in full
    chunk_rows,
    n_groups,  # groups of chunks of samples, run in parallel (not of centers)
):
    """One E-step with Yinyang's bounds (see the module's docstring).

    Group bounds are loosened lazily, by the groups' drift since the sample's stamp,
    only for a sample that fails the global test: a settled sample costs O(1). A sample
    with more than ``max_open`` centers still open is gathered with the chunk's others
    and searched in full by one GEMM (BLAS computes a distance many times faster than a
    single dot product), which also sets all its bounds afresh.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    n_center_groups = starts.shape[0] - 1
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows
    minus_two_centers, centers_squared_norms, max_center_norm = _minus_two_centers_and_norms(
        centers, unit_centers)
    perm_minus_two_centers = np.ascontiguousarray(minus_two_centers[order])
    perm_centers_squared_norms = centers_squared_norms[order]
    inverse_order = np.empty(n_clusters, dtype=np.int64)
    group_of_position = np.empty(n_clusters, dtype=np.int64)
    for position in range(n_clusters):
        inverse_order[order[position]] = position
        group_of_position[position] = group_of[order[position]]
    tile = min(n_clusters, GEMM_TILE_CENTERS)
    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        values = np.empty(n_clusters, dtype=X.dtype)
        searched = np.empty(n_center_groups, dtype=np.int64)
        group_distances = np.empty(n_center_groups)
        rows = np.empty(chunk_rows, dtype=np.int64)
        gathered = np.empty((chunk_rows, n_features), dtype=X.dtype)
        scratch = np.empty(tile * chunk_rows, dtype=X.dtype)
        best = np.empty(chunk_rows, dtype=np.int32)
        best_value = np.empty(chunk_rows, dtype=X.dtype)
        second_value = np.empty(chunk_rows, dtype=X.dtype)
        row_norms = np.empty(chunk_rows)
        margins = np.empty(chunk_rows)
        row_bounds = np.empty(chunk_rows, dtype=np.float32)
        least_bounds = np.empty(chunk_rows)
        group_best = np.empty((n_center_groups, chunk_rows), dtype=np.int32)
        group_least = np.empty((n_center_groups, chunk_rows), dtype=X.dtype)
        group_second = np.empty((n_center_groups, chunk_rows), dtype=X.dtype)
        for chunk_start in range(start, end, chunk_rows):
            _yinyang_chunk(
                X, x_squared_norms, centers, minus_two_centers, centers_squared_norms,
                perm_minus_two_centers, perm_centers_squared_norms, max_center_norm, labels,
                upper, global_lower, lower, stamp, drift, center_shift, max_shift, order,
                inverse_order, starts, group_of, group_of_position, margin_coefficient,
                unit_centers, search_all, max_open, chunk_start, min(chunk_start + chunk_rows, end), values,
                searched, group_distances, rows, gathered, scratch, group_best, group_least,
                group_second,
                best, best_value, second_value, row_norms, margins, row_bounds, least_bounds)


class YinyangRun:
    """The passes of one float32 run with Yinyang's group bounds (``Engine.start_lloyd``).

    Takes ``plain``'s steps (the plain run's, :class:`gpukmeans._cpu.PlainRun`) until one
    changes at most :data:`START_CHANGED` of the labels, then keeps the bounds, the
    center groups and the last centers between passes. Each bounded step sums every
    sample by the plain step's M-step, so its results are the plain run's.
    """

    def __init__(self, X, x_squared_norms, sample_weight, n_clusters, plain,
                 unit_centers=False):
        n_samples, n_features = X.shape
        self.X, self.x_squared_norms, self.sample_weight = X, x_squared_norms, sample_weight
        self.unit_centers = unit_centers
        self.plain = plain
        self.bounded = False  # from the step after the first that settled the labels
        self.labels_before = np.empty(n_samples, dtype=np.int32)
        self.n_center_groups = n_center_groups(n_samples, n_clusters)
        self.upper = np.empty(n_samples)
        self.global_lower = np.empty(n_samples)
        self.lower = np.empty((n_samples, self.n_center_groups), dtype=np.float32)
        self.stamp = np.zeros(n_samples, dtype=np.int64)
        # Row t: each group's total largest shift over the first t bounded E-steps.
        self.drift = np.zeros((1, self.n_center_groups))
        self.margin_coefficient = _bound_margin_coefficient(X.dtype, n_features)
        self.n_groups = _n_groups(_n_chunks(n_samples), n_clusters, n_features)
        self.fold_rows = _fold_rows(n_clusters)
        self.max_open = max(1, n_clusters // open_divisor(n_features))
        self.groups = None  # (order, starts, group_of), at the first bounded step
        self.centers_prev = None

    def step(self, centers_old, labels):
        """``lloyd_iter`` on the run's data: a plain step until the labels settle (see
        :data:`START_CHANGED`); the first bounded step searches every sample and sets
        the bounds."""
        if not self.bounded:
            sums, weight_in_clusters, self.bounded = plain_step_settles(
                self.plain, centers_old, labels, self.labels_before, START_CHANGED)
            return sums, weight_in_clusters
        self._e_step(centers_old, labels)
        n_clusters, n_features = centers_old.shape
        sums_part = np.empty((self.n_groups, n_clusters, n_features))
        weights_part = np.empty((self.n_groups, n_clusters))
        _accumulate_partials(self.X, self.sample_weight, labels, CHUNK_ROWS, self.fold_rows,
                             self.n_groups, sums_part, weights_part)
        return _reduce_partials(sums_part, weights_part)

    def finish(self, centers, labels, assign_labels):
        if self.centers_prev is None:  # no bounds yet, whose first search costs more
            return self.plain.finish(centers, labels, assign_labels)
        if assign_labels:
            self._e_step(centers, labels)
        return inertia(self.X, self.sample_weight, centers, labels)

    def current_lower_bounds(self, labels):
        """``(n_samples, n_clusters)`` lower bounds on the distances to the last centers,
        as they stand (a group's bound, stored squared as of each sample's stamp, loosened
        by the group's drift since; none for the own center); for tests."""
        order, starts, group_of = self.groups
        loosen = self.drift[-1] - self.drift[self.stamp]  # (n_samples, n_center_groups)
        group_bounds = np.sqrt(self.lower.astype(np.float64)) - loosen
        bounds = group_bounds[:, group_of]
        bounds[np.arange(labels.shape[0]), labels] = 0.0
        return bounds

    def _e_step(self, centers, labels):
        search_all = self.centers_prev is None
        if search_all:
            order, starts = center_groups(centers, self.n_center_groups)
            group_of = np.empty(centers.shape[0], dtype=np.int64)
            for g in range(self.n_center_groups):
                group_of[order[starts[g]:starts[g + 1]]] = g
            self.groups = order, starts, group_of
            center_shift = np.zeros(centers.shape[0])
        else:
            center_shift = _center_distances(centers, self.centers_prev)
            group_drift = np.zeros(self.n_center_groups)
            np.maximum.at(group_drift, self.groups[2], center_shift)
            self.drift = np.vstack([self.drift, self.drift[-1] + group_drift])
        order, starts, group_of = self.groups
        _yinyang_e_step(
            self.X, self.x_squared_norms, centers, labels, self.upper, self.global_lower,
            self.lower, self.stamp, self.drift, center_shift, float(center_shift.max()),
            order, starts, group_of, self.margin_coefficient, self.unit_centers, search_all,
            self.max_open,
            CHUNK_ROWS, self.n_groups,
        )
        self.centers_prev = centers.copy()
