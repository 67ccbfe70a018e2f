"""The CPU engine's float32 runs with distance bounds: Hamerly's, and Elkan's from
many clusters and features (:func:`elkan_pays`; :class:`BoundsRun`, an
``Engine.start_lloyd`` run).

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np
from numba import njit, prange

from ._cpu_lloyd import _group_bounds
from ._cpu_nearest import (
    _chunk_distances, _dot1, _exact_argmin, _minus_two_centers_and_norms, _nearer_than,
    _nearest_of_near_ties, _rows_dots_blocked,
)
from ._cpu_passes import _weighted_sum_f64, inertia
from ._cpu_runtime import CACHE, always_parallel, prange_only, threaded
from ._cpu_small import CHUNK_ROWS
from ._cpu_small import bound_margin_coefficient as _bound_margin_coefficient
from ._cpu_small import n_chunks as _n_chunks
from ._cpu_small import n_groups as _n_groups


# float32 runs use Elkan's bounds from this many clusters on, while n_samples x n_clusters
# float32 bounds fit in the budget; Hamerly's otherwise. MNIST, 20 iterations, per
# iteration, Elkan against Hamerly: k=12 23.6 ms vs 20.0, k=20 24.8 vs 23.7, k=32 28.9 vs
# 30.3, k=64 42.5 vs 49.8, k=256 76 vs 131. Below the crossover the samples left open
# cost a dot product or two each either way, and Elkan's k bounds per sample cost more
# to keep than they save. Remeasured with the moves inside the E-step and Elkan's full
# searches (ELKAN_OPEN_DIVISOR): k=20, whole fit, 424 ms Elkan vs 421 ms Hamerly.
ELKAN_MIN_CLUSTERS = 24
ELKAN_BOUNDS_BUDGET_BYTES = 256 * 2**20
# ... and only from ELKAN_MIN_CLUSTER_FEATURES (n_clusters x n_features) on (since stop
# 65): with fewer, an open sample's full search by Hamerly's bound costs less than
# keeping k bounds per sample, and the plain step's kernels had got faster than those
# measurements above. Whole fits to convergence (tol 1e-4) from the same random rows,
# 60,000 MNIST images projected on their first d principal axes, a 2-core Zen 3 EPYC,
# alternated, medians of 3, ms, Elkan / Hamerly: d=48 k=32 989 / 437; d=64 k=40 1,119 /
# 542; d=96 k=24 962 / 434, k=64 872 / 523; d=128 k=32 945 / 451, k=100 2,890 / 1,174;
# d=160 k=64 1,612 / 822; d=256 k=32 1,147 / 544, k=128 2,647 / 1,689, k=256 2,217 /
# 2,135 (40 iterations); d=384 k=48 1,090 / 811, k=192 2,540 / 2,214 (60), k=256 2,131 /
# 2,476 (40); d=512 k=64 1,415 / 1,078, k=256 3,355 / 3,722 (60); d=256 k=384 2,914 /
# 3,304 (40); MNIST itself (784 features, 60 or 40 iterations) k=24 954 / 691, k=64
# 1,659 / 1,586, k=128 1,727 / 2,027, k=256 3,835 / 5,503, k=512 5,090 / 9,487. The
# same labels every way. Elkan's won from about 98,304 (d=256 k=384, d=384 k=256, d=784
# k=128) and lost below (d=384 k=192, 73,728; d=256 k=256, 65,536, a tie).
ELKAN_MIN_CLUSTER_FEATURES = 96 * 1024
# Up to START_PLAIN_MAX_FEATURES features, a run of the engine's (_cpu.start_lloyd) takes
# plain steps until one changes at most START_CHANGED of the labels, and keeps its bounds
# from the next step on, as Yinyang's runs do (_cpu_yinyang.START_CHANGED): while many
# labels change, most samples fail the bounds and a bounded step costs more than a
# plain one. Beyond, a plain step costs so much more than the bounds' bookkeeping that
# bounds pay from the first step. Whole float32 fits from the same random rows, a 2-core
# Zen 3 EPYC (stop 65), alternated, medians of 3, ms, bounded from the first step /
# plain steps first / plain steps only: 100,000 standard-normal rows, 20 iterations, d=32
# k=24 181 / 101 / 80, d=64 k=48 280 / 212 / 148, d=96 k=64 544 / 354 / 321, d=128 k=32
# 442 / 311 / 288, d=256 k=128 1,762 / 1,661 / 1,696; 60,000 MNIST images on their first
# d principal axes, to convergence (84-169 iterations): d=32 k=24 420 / 345 / 420, d=48
# k=32 358 / 353 / 431, d=64 k=40 405 / 356 / 586, d=96 k=64 636 / 554 / 887, d=128 k=12
# 351 / 317 / 765, k=100 1,117 / 1,017 / 2,166, d=256 k=32 588 / 526 / 1,463, k=128
# 1,516 / 1,511 / 2,302; but MNIST itself (784 features, up to 100 iterations) k=20
# 1,081 / 1,255 / 2,675, k=64 1,463 / 1,653 / 3,110, k=256 4,798 / 5,723 / 7,594. The
# same labels every way.
START_CHANGED = 0.02
START_PLAIN_MAX_FEATURES = 256


def starts_plain(n_features):
    """Whether a run with bounds takes plain steps until the labels settle (see
    :data:`START_PLAIN_MAX_FEATURES`)."""
    return n_features <= START_PLAIN_MAX_FEATURES


def plain_step_settles(plain, centers_old, labels, labels_before, start_changed):
    """``plain``'s step, and whether it changed at most ``start_changed`` of the
    labels: the plain steps that runs with bounds (this module's and Yinyang's) take
    until the labels settle. ``labels_before``: the run's buffer for the labels before
    the step. Returns ``(sums, weight_in_clusters, settled)``."""
    labels_before[:] = labels
    sums, weight_in_clusters = plain.step(centers_old, labels)
    n_changed = np.count_nonzero(labels != labels_before)
    return sums, weight_in_clusters, n_changed <= start_changed * labels.shape[0]


def elkan_pays(n_samples, n_features, n_clusters):
    """Whether a float32 run with bounds keeps Elkan's (one per sample and center)
    rather than Hamerly's: from :data:`ELKAN_MIN_CLUSTERS` and
    :data:`ELKAN_MIN_CLUSTER_FEATURES` on, while they fit
    :data:`ELKAN_BOUNDS_BUDGET_BYTES`."""
    return elkan_by_shape(n_features, n_clusters) and (
        n_samples * n_clusters * 4 <= ELKAN_BOUNDS_BUDGET_BYTES)


def elkan_by_shape(n_features, n_clusters):
    """Whether Elkan's bounds would pay for these shapes if they fit their budget."""
    return (n_clusters >= ELKAN_MIN_CLUSTERS
            and n_clusters * n_features >= ELKAN_MIN_CLUSTER_FEATURES)
# In Elkan's step, a sample with more than n_clusters // ELKAN_OPEN_DIVISOR centers
# still open after tightening is searched in full by the blocked kernel (which computes
# a distance several times faster than a single dot product, and refreshes every bound)
# instead of one dot product per open center. MNIST, 20 iterations, whole fit: k=256
# 1.34 s at k // 32 and k // 8 open, 1.37 s never searching, 1.58 s from 2 open; k=20
# the same either way (within the noise).
ELKAN_OPEN_DIVISOR = 16

# --- Distance bounds (float32 runs): Hamerly's, and Elkan's where elkan_pays ---
#
# Most samples keep their cluster from one iteration to the next. Hamerly (2010) keeps,
# per sample, an upper bound on the distance to its own center and a lower bound on the
# distance to every other; moving the centers loosens them by how far the centers moved.
# While upper <= max(lower, half the gap from its center to the nearest other center),
# no other center can be closer, and the sample is skipped; if not, the exact distance
# to its own center tightens the upper bound and may still settle it. Only the rest are
# searched. Ours keeps the lower bound of the runner-up apart: when only it is left open,
# one more dot product settles the sample. On MNIST at k=20 (from k-means++) 35-75% of
# the samples are settled from the fifth iteration on. Elkan (2003) keeps a lower bound per center instead, so that an
# unsettled sample computes only the distances its bounds leave open (_elkan_e_step).
# Either way, a sample that changes cluster moves its row between the two clusters'
# sums during the E-step (_move_sample); the M-step adds up those moves.
#
# The bounds are exact-arithmetic statements about float32 centers; the distances they
# are set from are ||x||^2 + (||c||^2 - 2 x.c) with a float32 dot product. A margin
# larger than that rounding (see _bound_margin_coefficient) keeps them bounds, so a
# skipped sample's label is its exact nearest center; a searched sample's is too, as in
# the plain step, since near-ties within twice the margin are decided exactly
# (_nearest_of_near_ties). Both can differ from scikit-learn only at near-ties.



@njit(nogil=True, cache=CACHE)
def _distance_bound(x_squared_norm, value, margin):
    """``sqrt(||x||^2 + value + margin)`` clipped at 0, where ``value = ||c||^2 - 2 x.c``:
    an upper bound on ``||x - c||`` for a margin above the rounding, a lower bound for
    its negative."""
    return np.sqrt(max(x_squared_norm + value + margin, 0.0))


@njit(nogil=True, cache=CACHE)
def _searched_rows_dots(X, rows, n_search, chunk_start, chunk_end, minus_two_centers, dots,
                        dense_by_gemm):
    """``dots[r] = minus_two_centers @ X[rows[r]]`` for the ``n_search`` rows a bounded
    E-step searches in the chunk ``chunk_start:chunk_end``: BLAS's GEMM on the chunk
    where it is searched whole (a run's first steps) and ``dense_by_gemm``, else the
    blocked kernel on the rows where they lie. The labels are the exactly nearest centers
    either way and the bounds carry the margin of any order of the sums, so the run's
    labels and sums are the same bits (the rows that change cluster are the same); only
    which rows later steps search may differ. One thread, ms, the products of 100,000
    random rows in chunks of 256, blocked kernel / GEMM, on a Zen 3 EPYC (AVX2): d=48
    k=24 9.7 / 4.1, d=64 k=32 27 / 11, d=128 k=32 34 / 22; 50,000 x 256, k=64 57 / 32."""
    if dense_by_gemm and n_search == chunk_end - chunk_start and n_search > 0:
        np.dot(X[chunk_start:chunk_end], minus_two_centers.T, dots[:n_search])
    else:
        _rows_dots_blocked(X, rows, n_search, minus_two_centers, dots, np.empty(0))


@threaded(always_parallel)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _hamerly_e_step(
    X,  # IN (n_samples, n_features)
    x_squared_norms,  # IN (n_samples,) float64
    centers,  # IN (n_clusters, n_features)
    labels,  # INOUT (n_samples,) int32
    upper,  # INOUT (n_samples,) float64
    runner_up,  # INOUT (n_samples,) int32: the second nearest center at the last search
    lower_runner_up,  # INOUT (n_samples,) float64: a lower bound on the distance to it
    lower,  # INOUT (n_samples,) float64: ... to every center but the label and runner-up
    center_shift,  # IN (n_clusters,) float64: how far each center moved since the last call
    half_gap,  # IN (n_clusters,) float64: half the distance to the nearest other center
    margin_coefficient,
    unit_centers,  # compare by dot products (cosine fits): see _exact_rank
    sample_weight,  # IN (n_samples,)
    delta_sums,  # INOUT (n_groups, n_clusters, n_features) float64, zero on entry
    touched,  # INOUT (n_groups, n_clusters) bool, False on entry
    distances,  # OUT (n_samples,) float64 ||x - its center||^2, or (0,): not wanted
    chunk_rows,
    n_groups,
    dense_by_gemm,  # a chunk searched whole takes BLAS's GEMM (_searched_rows_dots)
):
    """One E-step with Hamerly's bounds; moves the samples that change cluster in the
    per-group ``delta_sums`` (see :func:`_move_sample`).

    The runner-up keeps a bound of its own: it is usually the one center that Hamerly's
    single bound cannot rule out, and then one dot product settles the sample instead
    of a search of every center.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows

    minus_two_centers, centers_squared_norms, max_center_norm = _minus_two_centers_and_norms(
        centers, unit_centers
    )

    # `lower` covers every center but two: it loosens by the largest shift among them,
    # which is at most the second largest when the one that moved most is one of the two.
    farthest = np.argmax(center_shift)
    largest_shift = center_shift[farthest]
    second_shift = 0.0
    for j in range(n_clusters):
        if j != farthest and center_shift[j] > second_shift:
            second_shift = center_shift[j]

    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        rows = np.empty(chunk_rows, dtype=np.int64)
        dots = np.empty((chunk_rows, n_clusters), dtype=X.dtype)
        values_buffer = np.empty(n_clusters, dtype=X.dtype)
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            n_search = 0
            for i in range(chunk_start, chunk_end):
                label = labels[i]
                if label < 0:  # the run's first E-step: nothing to bound yet
                    rows[n_search] = i
                    n_search += 1
                    continue
                second = runner_up[i]
                upper[i] += center_shift[label]
                lower_runner_up[i] -= center_shift[second]
                lower[i] -= second_shift if farthest == label or farthest == second else largest_shift
                others = max(lower[i], half_gap[label])
                bound = max(min(lower_runner_up[i], lower[i]), half_gap[label])
                if upper[i] <= bound:
                    continue
                # The upper bound only grows between searches: the distance to the own
                # center (one dot product, against a search's n_clusters) often settles it.
                x = X[i]
                label_value = centers_squared_norms[label] + _dot1(x, minus_two_centers[label])
                margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
                upper[i] = _distance_bound(x_squared_norms[i], label_value, margin)
                if upper[i] <= bound:
                    continue
                if upper[i] > others:
                    rows[n_search] = i
                    n_search += 1
                    continue
                if second == label:  # bounds that were never set: `others` covers all
                    continue
                # Only the runner-up may be nearer.
                value = centers_squared_norms[second] + _dot1(x, minus_two_centers[second])
                if not _nearer_than(x, centers, second, value, label, label_value, margin,
                                    unit_centers):
                    lower_runner_up[i] = _distance_bound(x_squared_norms[i], value, -margin)
                    continue
                runner_up[i] = label
                lower_runner_up[i] = _distance_bound(x_squared_norms[i], label_value, -margin)
                upper[i] = _distance_bound(x_squared_norms[i], value, margin)
                _move_sample(x, sample_weight[i], label, second, delta_sums[group], touched[group])
                labels[i] = second
            _searched_rows_dots(X, rows, n_search, chunk_start, chunk_end, minus_two_centers,
                                dots, dense_by_gemm)
            for r in range(n_search):
                i = rows[r]
                values = values_buffer
                for j in range(n_clusters):
                    values[j] = centers_squared_norms[j] + dots[r, j]
                best = 0
                best_value = values[0]
                second = 0
                second_value = np.inf
                third_value = np.inf
                for j in range(1, n_clusters):
                    value = values[j]
                    if value < best_value:
                        third_value = second_value
                        second_value = best_value
                        second = best
                        best_value = value
                        best = j
                    elif value < second_value:
                        third_value = second_value
                        second_value = value
                        second = j
                    elif value < third_value:
                        third_value = value
                margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
                label = best
                if second_value - best_value <= 2 * margin:
                    label = _nearest_of_near_ties(X[i], centers, values, best, best_value,
                                                  2 * margin, unit_centers)
                if label != best:
                    # The float32 minimum is now the runner-up, and every other center's
                    # value is at least the second smallest.
                    second = best
                    third_value = second_value
                    second_value = best_value
                upper[i] = _distance_bound(x_squared_norms[i], values[label], margin)
                runner_up[i] = second if n_clusters > 1 else label
                lower_runner_up[i] = _distance_bound(x_squared_norms[i], second_value, -margin)
                lower[i] = _distance_bound(x_squared_norms[i], third_value, -margin)
                if labels[i] != label:
                    _move_sample(X[i], sample_weight[i], labels[i], label, delta_sums[group], touched[group])
                    labels[i] = label
            _chunk_distances(X, centers, labels, chunk_start, chunk_end, distances)


@njit(nogil=True, cache=CACHE)
def _lower_bound_f32(distance):
    """A float32 no larger than ``distance`` (>= 0): rounding to nearest may round up,
    by a relative 6e-8, or by half a subnormal below float32's normal range."""
    return np.float32(max(distance * (1.0 - 1e-6) - 1e-45, 0.0))


@njit(nogil=True, cache=CACHE)
def _any_center_open(upper, bounds, half_distances, label):
    """Whether some center other than ``label`` is not ruled out by Elkan's test."""
    for j in range(bounds.shape[0]):
        if j != label and upper > max(np.float64(bounds[j]), half_distances[j]):
            return True
    return False


@njit(nogil=True, cache=CACHE)
def _elkan_open_distances(
    x, x_squared_norm, label, upper, bounds, half_center_distances, centers,
    minus_two_centers, centers_squared_norms, margin, max_open, unit_centers,
):
    """One unsettled sample of :func:`_elkan_e_step`: the distances its bounds leave open.

    A center stays closed while ``upper <= max(bounds[j], half the distance between the
    sample's center and j)``. If one is open, the distance to the sample's own center
    tightens ``upper``. Up to ``max_open`` centers still open then cost one dot product
    each, which also refreshes their bounds. Returns ``(label, upper, search)``;
    ``search`` asks the caller to search the sample in full instead (more centers open):
    the blocked kernel computes every distance for little more than a few single dot
    products, and refreshing every bound keeps the sample settled for longer.
    A center within twice the margin of the current label's value is compared
    exactly (:func:`_closer_exactly`). ``bounds`` (float32, up to date) is updated in
    place.
    """
    if not _any_center_open(upper, bounds, half_center_distances[label], label):
        return label, upper, False
    label_value = centers_squared_norms[label] + _dot1(x, minus_two_centers[label])
    upper = _distance_bound(x_squared_norm, label_value, margin)
    bounds[label] = _lower_bound_f32(_distance_bound(x_squared_norm, label_value, -margin))
    n_open = 0
    half_distances = half_center_distances[label]
    for j in range(bounds.shape[0]):
        if j != label and upper > max(np.float64(bounds[j]), half_distances[j]):
            n_open += 1
    if n_open > max_open:
        return label, upper, True
    for j in range(bounds.shape[0]):
        if j == label or upper <= max(np.float64(bounds[j]), half_center_distances[label, j]):
            continue
        value = centers_squared_norms[j] + _dot1(x, minus_two_centers[j])
        bounds[j] = _lower_bound_f32(_distance_bound(x_squared_norm, value, -margin))
        if not _nearer_than(x, centers, j, value, label, label_value, margin, unit_centers):
            continue
        label = j
        label_value = value
        upper = _distance_bound(x_squared_norm, value, margin)
    return label, upper, False


@threaded(always_parallel)
@njit(parallel=prange_only(), nogil=True, cache=CACHE)
def _elkan_e_step(
    X,  # IN (n_samples, n_features)
    x_squared_norms,  # IN (n_samples,) float64
    centers,  # IN (n_clusters, n_features)
    labels,  # INOUT (n_samples,) int32
    upper,  # INOUT (n_samples,) float64
    lower,  # INOUT (n_samples, n_clusters) float32: a bound per center, as of `stamp`
    stamp,  # INOUT (n_samples,) int64: the row of `drift` at which `lower[i]` was set
    drift,  # IN (n_steps + 1, n_clusters) float64: cumulative center shifts; last row is now
    center_shift,  # IN (n_clusters,) float64: this step's shifts (the last row of drift's)
    half_center_distances,  # IN (n_clusters, n_clusters) float64, +inf on the diagonal
    half_gap,  # IN (n_clusters,) float64: its row minima
    margin_coefficient,
    unit_centers,  # compare by dot products (cosine fits): see _exact_rank
    search_all,  # no bounds yet: search every sample and set them all
    max_open,  # more open centers than this: search the sample in full
    sample_weight,  # IN, and the moves, as in _hamerly_e_step
    delta_sums,  # INOUT
    touched,  # INOUT
    distances,  # OUT, as in _hamerly_e_step
    chunk_rows,
    n_groups,
    dense_by_gemm,  # as in _hamerly_e_step
):
    """One E-step with Elkan's bounds.

    A lower bound per (sample, center) lets a sample that Hamerly's single bound cannot
    settle compute only the few distances its bounds leave open, one dot product each,
    instead of searching every center. The per-center bounds are loosened lazily: a
    sample's are brought up to date (by the centers' drift since its stamp) only when
    its upper bound fails the cheap test, so a settled sample costs O(1), not O(k).
    Samples with many centers open are gathered per chunk and searched in full with
    the blocked kernel, as in Hamerly's step.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    n_chunks = (n_samples + chunk_rows - 1) // chunk_rows

    minus_two_centers, centers_squared_norms, max_center_norm = _minus_two_centers_and_norms(
        centers, unit_centers
    )

    now = drift.shape[0] - 1
    drift_now = drift[now]

    for group in prange(n_groups):
        start, end = _group_bounds(group, n_groups, n_chunks, n_samples, chunk_rows)
        rows = np.empty(chunk_rows, dtype=np.int64)
        dots = np.empty((chunk_rows, n_clusters), dtype=X.dtype)
        values_buffer = np.empty(n_clusters, dtype=X.dtype)
        for chunk_start in range(start, end, chunk_rows):
            chunk_end = min(chunk_start + chunk_rows, end)
            n_search = 0
            for i in range(chunk_start, chunk_end):
                old = labels[i]
                bound_upper = upper[i] + center_shift[old]
                if search_all or bound_upper > half_gap[old]:
                    if search_all:
                        rows[n_search] = i
                        n_search += 1
                        continue
                    # Loosen by the drift since the stamp; the relative 1e-12 covers
                    # the rounding of the cumulative sums' difference.
                    bounds = lower[i]
                    then = drift[stamp[i]]
                    for j in range(n_clusters):
                        loosen = drift_now[j] - then[j] + 1e-12 * drift_now[j]
                        bounds[j] = _lower_bound_f32(max(np.float64(bounds[j]) - loosen, 0.0))
                    stamp[i] = now
                    margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
                    label, bound_upper, search = _elkan_open_distances(
                        X[i], x_squared_norms[i], old, bound_upper, bounds,
                        half_center_distances, centers, minus_two_centers,
                        centers_squared_norms, margin, max_open, unit_centers,
                    )
                    if search:
                        rows[n_search] = i
                        n_search += 1
                        continue
                    if label != old:
                        _move_sample(X[i], sample_weight[i], old, label, delta_sums[group], touched[group])
                        labels[i] = label
                upper[i] = bound_upper
            _searched_rows_dots(X, rows, n_search, chunk_start, chunk_end, minus_two_centers,
                                dots, dense_by_gemm)
            for r in range(n_search):
                i = rows[r]
                margin = margin_coefficient * (x_squared_norms[i] + max_center_norm)
                bounds = lower[i]
                values = values_buffer
                for j in range(n_clusters):
                    value = centers_squared_norms[j] + dots[r, j]
                    values[j] = value
                    bounds[j] = _lower_bound_f32(_distance_bound(x_squared_norms[i], value, -margin))
                label = _exact_argmin(X[i], centers, values, 2 * margin, unit_centers)
                upper[i] = _distance_bound(x_squared_norms[i], values[label], margin)
                stamp[i] = now
                if label != labels[i]:
                    _move_sample(X[i], sample_weight[i], labels[i], label, delta_sums[group], touched[group])
                    labels[i] = label
            _chunk_distances(X, centers, labels, chunk_start, chunk_end, distances)


# A sample that changes cluster moves its weighted row between the two clusters' float64
# sums right where the E-step found it, while the row is in cache: moved later, each
# row would be read from memory again (half a microsecond each on MNIST). Each group
# keeps its own deltas, added to the run's sums in group order, so the sums do not
# depend on the number of threads.
@njit(nogil=True, cache=CACHE)
def _move_sample(x, weight, old, new, delta_sums, touched):
    """``delta_sums[new] += w x``, ``delta_sums[old] -= w x`` (unless ``old`` is -1)
    in float64."""
    weight = np.float64(weight)
    new_sums = delta_sums[new]
    if old < 0:  # the run's first E-step: no cluster yet
        for f in range(x.shape[0]):
            new_sums[f] += weight * np.float64(x[f])
    else:
        old_sums = delta_sums[old]
        for f in range(x.shape[0]):
            contribution = weight * np.float64(x[f])
            old_sums[f] -= contribution
            new_sums[f] += contribution
        touched[old] = True
    touched[new] = True


@njit(nogil=True, cache=CACHE)
def _add_delta_sums(sums, delta_sums, touched):
    """``sums += delta_sums[g]`` for each group g in order; leaves the deltas zero.
    Element by element, as :func:`gpukmeans._cpu_lloyd._reduce_partials` says why."""
    for group in range(delta_sums.shape[0]):
        for j in range(sums.shape[0]):
            if touched[group, j]:
                for f in range(sums.shape[1]):
                    sums[j, f] += delta_sums[group, j, f]
                    delta_sums[group, j, f] = 0.0
                touched[group, j] = False


@njit(nogil=True, cache=CACHE)
def _add_weight_in_clusters(labels, sample_weight, weights):
    """``weights[labels[i]] += w_i`` in float64, in sample order (a streamed run
    continues it block by block): fresh weights, so an emptied cluster is exactly 0."""
    for i in range(labels.shape[0]):
        weights[labels[i]] += np.float64(sample_weight[i])


class BoundsRun:
    """The passes of one float32 run with distance bounds (``Engine.start_lloyd``).

    Elkan's bounds (one lower bound per sample and center, float32) where
    :func:`elkan_pays`, else Hamerly's (one lower bound per sample). Keeps the bounds,
    the per-cluster sums (updated by the samples that moved) and the last centers
    between passes; :meth:`step` returns copies, which the driver may change
    (relocation).
    """

    def __init__(self, X, x_squared_norms, sample_weight, n_clusters, unit_centers=False,
                 dense_by_gemm=False, plain=None):
        n_samples, n_features = X.shape
        self.X, self.x_squared_norms, self.sample_weight = X, x_squared_norms, sample_weight
        self.unit_centers = unit_centers
        # The plain run on the same data (the engine's), whose steps this one takes
        # until the labels settle (START_CHANGED) where it starts plain (starts_plain);
        # None: bounded from the first step.
        self.plain = plain if plain is not None and starts_plain(n_features) else None
        self.bounded = self.plain is None
        # The labels before a plain step, to count its changes (the driver counts them
        # too, but after the step returns: the run decides within it, as Yinyang's).
        self.labels_before = (None if self.plain is None
                              else np.empty(n_samples, dtype=np.int32))
        # Chunks searched whole by BLAS's GEMM (_searched_rows_dots): the engine's rule.
        self.dense_by_gemm = dense_by_gemm
        self.elkan = elkan_pays(n_samples, n_features, n_clusters)
        # Bounds that hold nothing: the first E-step searches every sample and sets them.
        # The per-sample arrays, in the kernel's argument order (see per_sample_arrays).
        self.per_sample = tuple(
            self.new_per_sample(shape, dtype, fill)
            for _, shape, dtype, fill in self.per_sample_arrays(n_samples, n_clusters))
        for (name, *_), array in zip(self.per_sample_arrays(0, 0), self.per_sample):
            setattr(self, name, array)
        if self.elkan:
            # Row t: each center's total shift over the first t bounded E-steps.
            self.drift = np.zeros((1, n_clusters))
            self.max_open = max(1, n_clusters // ELKAN_OPEN_DIVISOR)
        self.sums = np.zeros((n_clusters, n_features))
        self.margin_coefficient = _bound_margin_coefficient(X.dtype, n_features)
        self.n_groups = _n_groups(_n_chunks(n_samples), n_clusters, n_features)
        self.delta_sums = np.zeros((self.n_groups, n_clusters, n_features))
        self.touched = np.zeros((self.n_groups, n_clusters), dtype=np.bool_)
        self.centers_prev = None
        self.bounds_set = False

    def step(self, centers_old, labels):
        """``lloyd_iter`` on the run's data: the plain run's step while it has one and
        the labels have not settled (:data:`START_CHANGED`); the first bounded step
        searches every sample, sets the bounds and adds every sample to the sums."""
        if not self.bounded:
            sums, weight_in_clusters, self.bounded = plain_step_settles(
                self.plain, centers_old, labels, self.labels_before, START_CHANGED)
            return sums, weight_in_clusters
        n_clusters = centers_old.shape[0]
        if not self.bounds_set:
            # Every sample to be searched and added to the sums, whatever a plain step
            # labelled it (the driver keeps its own copy of the labels before a step).
            labels[:] = -1
        self._e_step(centers_old, labels)
        weight_in_clusters = self.weight_in_clusters(labels, n_clusters)
        # An emptied cluster's sums are rounding residue: make them the exact zero that
        # scikit-learn's fresh sums would be.
        self.sums[weight_in_clusters == 0] = 0.0
        self.centers_prev = centers_old.copy()
        return self.sums.copy(), weight_in_clusters

    def finish(self, centers, labels, assign_labels):
        """The final pass: the plain run's where no bounded step ran (no bounds yet,
        whose first search costs more than that pass), else :meth:`_finish_bounded`."""
        if not self.bounds_set and self.plain is not None:
            return self.plain.finish(centers, labels, assign_labels)
        return self._finish_bounded(centers, labels, assign_labels)

    def _finish_bounded(self, centers, labels, assign_labels):
        """The final E-step with the bounds, which also computes every sample's distance
        to its center for the inertia (one pass over X instead of two), or the inertia
        alone."""
        if not assign_labels:
            return inertia(self.X, self.sample_weight, centers, labels)
        distances = np.empty(self.X.shape[0])
        self._e_step(centers, labels, distances)
        self.centers_prev = centers.copy()
        return np.float64(_weighted_sum_f64(distances, self.sample_weight))

    def current_lower_bounds(self, labels):
        """``(n_samples, n_clusters)`` lower bounds on the distances to the last centers,
        as they stand (Elkan's are stored as of each sample's stamp; Hamerly's as one for
        the runner-up and one for the rest, none for the own center); for tests."""
        if self.elkan:
            loosen = self.drift[-1] - self.drift[self.stamp]
            return self.lower.astype(np.float64) - loosen
        rows = np.arange(labels.shape[0])
        bounds = np.repeat(self.lower[:, None], self.sums.shape[0], axis=1)
        bounds[rows, self.runner_up] = self.lower_runner_up
        bounds[rows, labels] = 0.0
        return bounds

    def weight_in_clusters(self, labels, n_clusters):
        """Fresh float64 weights per cluster (:func:`_add_weight_in_clusters`)."""
        weights = np.zeros(n_clusters)
        _add_weight_in_clusters(labels, self.sample_weight, weights)
        return weights

    def per_sample_arrays(self, n_samples, n_clusters):
        """``(name, shape, dtype, fill)`` of the bounds per sample, in the kernel's
        order: Elkan's ``upper``, ``lower`` (one per center, set at the first E-step) and
        ``stamp``; Hamerly's ``upper``, ``runner_up``, ``lower_runner_up`` and ``lower``.
        ``upper`` is +inf: bounds that hold nothing."""
        if self.elkan:
            return (("upper", (n_samples,), np.float64, np.inf),
                    ("lower", (n_samples, n_clusters), np.float32, None),
                    ("stamp", (n_samples,), np.int64, 0))
        return (("upper", (n_samples,), np.float64, np.inf),
                ("runner_up", (n_samples,), np.int32, 0),
                ("lower_runner_up", (n_samples,), np.float64, 0),
                ("lower", (n_samples,), np.float64, 0))

    def new_per_sample(self, shape, dtype, fill):
        """One per-sample array (in memory here; :mod:`gpukmeans._streaming`'s run keeps
        them in files); ``fill`` None leaves it unset."""
        return np.empty(shape, dtype=dtype) if fill is None else np.full(shape, fill, dtype=dtype)

    def e_step_pass(self, kernel, centers, labels, distances):
        """Run ``kernel(X, x_squared_norms, labels, per_sample, sample_weight, delta_sums,
        touched, distances, n_groups)`` (the E-step kernel with this step's other
        arguments bound) on the run's data: on the whole arrays here, on each block's
        gathered rows in a streamed run."""
        kernel(self.X, self.x_squared_norms, labels, self.per_sample, self.sample_weight,
               self.delta_sums, self.touched, distances, self.n_groups)

    def _e_step(self, centers, labels, distances=None):
        if distances is None:
            distances = np.empty(0)
        if self.centers_prev is None:
            center_shift = np.zeros(centers.shape[0])
        else:
            center_shift = _center_distances(centers, self.centers_prev)
        half_center_distances = _half_center_distances(centers)
        half_gap = half_center_distances.min(axis=1)
        margin, unit_centers = self.margin_coefficient, self.unit_centers
        dense_by_gemm = self.dense_by_gemm
        if self.elkan:
            if self.bounds_set:
                self.drift = np.vstack([self.drift, self.drift[-1] + center_shift])
            drift, search_all, max_open = self.drift, not self.bounds_set, self.max_open

            def kernel(X, x_squared_norms, labels, per_sample, sample_weight, delta_sums,
                       touched, distances, n_groups):
                upper, lower, stamp = per_sample
                _elkan_e_step(
                    X, x_squared_norms, centers, labels, upper, lower, stamp, drift,
                    center_shift, half_center_distances, half_gap, margin, unit_centers,
                    search_all,
                    max_open, sample_weight, delta_sums, touched, distances, CHUNK_ROWS,
                    n_groups, dense_by_gemm,
                )
        else:
            # Hamerly's step searches every sample whose bounds hold nothing.
            def kernel(X, x_squared_norms, labels, per_sample, sample_weight, delta_sums,
                       touched, distances, n_groups):
                upper, runner_up, lower_runner_up, lower = per_sample
                _hamerly_e_step(
                    X, x_squared_norms, centers, labels, upper, runner_up, lower_runner_up,
                    lower, center_shift, half_gap, margin, unit_centers, sample_weight,
                    delta_sums,
                    touched, distances, CHUNK_ROWS, n_groups, dense_by_gemm,
                )
        self.e_step_pass(kernel, centers, labels, distances)
        self.bounds_set = True
        # The moves' deltas, also in the final E-step: the sums always match the labels.
        _add_delta_sums(self.sums, self.delta_sums, self.touched)


def _center_distances(centers_a, centers_b):
    """Row-wise ``||a_j - b_j||`` in float64, rounded up by a relative 1e-12 (a bound)."""
    diff = centers_a.astype(np.float64) - centers_b.astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff)) * (1 + 1e-12)


def _half_center_distances(centers):
    """Half the distance between every two centers, rounded down (float64 Gram form,
    minus its rounding: a bound); +inf on the diagonal."""
    c = centers.astype(np.float64)
    norms = np.einsum("ij,ij->i", c, c)
    squared = norms[:, None] + norms[None, :] - 2.0 * (c @ c.T)
    squared -= 1e-12 * (norms[:, None] + norms[None, :])
    np.fill_diagonal(squared, np.inf)
    return 0.5 * np.sqrt(np.maximum(squared, 0.0))
