"""Exact Lloyd on data larger than memory: the CPU engine over a ``numpy.memmap``, a
block of rows at a time.

:func:`streamed_engine` wraps the Numba engine's kernels into an
:class:`gpukmeans._engine.Engine` whose ``X`` is a :class:`StreamedData`: the caller's
file-backed array, read a block at a time (centred block by block where the fit centres),
never copied whole. The driver (:mod:`gpukmeans._lloyd`) runs on it unchanged; k-means++,
the tolerance and empty-cluster relocation have streamed counterparts here.

Same result as the in-memory fit, bit for bit. Every reduction of the in-memory engine is
reproduced in its own order:

- the M-step's sums and the k-means++ potentials are float64 partials per *group* of
  256-row chunks (2,048-row chunks for k-means++: :func:`gpukmeans._cpu_small.n_groups`,
  fixed by the shapes), added in group order. A streamed pass gathers the next ``block_rows / n_groups`` rows of every
  group into one buffer and runs the same kernel on it, each group continuing its own
  partial (:func:`gpukmeans._cpu_lloyd._lloyd_partials`,
  :func:`gpukmeans._cpu_kmeanspp.kmeanspp_partials`); a group's block ends where its
  partial sums are folded into its sums, so nothing in flight is cut. The groups run in
  parallel, as in memory. Each pass reads every group's rows once, in order: as many
  sequential streams as groups (at most 16).
- labels are per row, decided on the same 256-row chunks;
- float32 runs that keep Hamerly's or Elkan's distance bounds in memory
  (:func:`gpukmeans._cpu.start_lloyd`) keep them here too (:class:`StreamedBoundsRun`),
  from the same step (up to 256 features, plain steps until the labels settle): the
  same E-step kernels run on the gathered rows, each part a kernel group continuing
  its own float64 deltas, so every sample that changes cluster is moved between the
  sums in the in-memory order; the bounds are gathered and written back with the rows;
- the inertia is a sequential sum, continued from block to block; k-means++'s
  cumulative potentials are a sequential ``cumsum``, its first draw replays
  ``RandomState.choice``, and NumPy's pairwise sums (the row norms' sum behind the
  tolerance and the centring rule of float32 data, the weights' sum) are replayed by
  splitting the array where NumPy splits it (:mod:`gpukmeans._replay`);
- emptied clusters take the far samples in ``np.argpartition``'s order over every
  sample's distance, as in memory (scikit-learn's rule): the distances are written to a
  temporary file and partitioned there.

Memory: a few blocks of ``block_rows`` rows, the centers and each group's partial sums,
plus per sample the fit's int32 ``labels`` and the driver's previous labels, and
``sample_weight`` when given (in X's dtype); no other ``n_samples``-long array in the
process's memory, but for a moment at a relocation (rare): ``np.argpartition``'s int64
indices. Temporary files (``tempfile``'s directory; page cache, read and written in
order) hold k-means++'s per-sample distances, ``(2 + int(ln(n_clusters))) x 2 + 1``
values of X's dtype per sample; k-means||'s nearest candidate and its distance, 16 bytes
per sample (:func:`gpukmeans._init.kmeans_parallel`); a bounds run's bounds, 28 bytes
per sample (Hamerly's) or ``16 + 4 n_clusters`` (Elkan's, which the in-memory fit keeps only while
``n_samples x n_clusters`` float32 fit 256 MiB); a relocation's distances, 8 bytes per
sample.

Inference (``predict``, ``score``) on such an array, where the fit centred X, centres
it block by block here instead of a centred copy (:func:`assign_labels`,
:func:`inertia`).

Prior validation of data is assumed everywhere in this module.
"""

from typing import NamedTuple

import numpy as np

from . import _cpu, _cpu_small, _spherical
from ._cpu_bounds import BoundsRun, _add_weight_in_clusters
from ._cpu_kmeanspp import KMEANSPP_CHUNK_ROWS, by_panel, kmeanspp_partials
from ._cpu_lloyd import _NO_DISTANCES, _lloyd_partials, _reduce_partials
from ._cpu_passes import (
    _assigned_distances, _row_norms_f64, _subtract_rows_and_norms, _weighted_sum_f64,
    numpy_order_distances,
)
from ._cpu_small import CHUNK_ROWS
from ._engine import StatelessRun, by_dot_products
from ._lloyd import far_sample_tuples, farthest
from ._progress import NULL_REPORTER
from ._replay import (
    RowNormsSum, init_centroids, pairwise_sum, search_cumulative, temporary_array,
    weighted_choice,
)



# The engine whose row norms normalise a cosine query's blocks: the in-memory inference
# of data large enough to stream takes the Numba engine's (see streams).
_NUMBA_ENGINE = _cpu.make_engine()


def zero_rows(data):
    """:func:`gpukmeans._spherical.zero_rows_of` of the whole source, a block at a time
    (one pass): a boolean array, or None where no row is zero."""
    found = np.zeros(data.shape[0], dtype=np.bool_)
    any_found = False
    for start, end in data.blocks():
        block = np.asarray(data.source[start:end])
        block_zero = _spherical.zero_rows_of(block, _NUMBA_ENGINE)
        if block_zero is not None:
            found[start:end] = block_zero
            any_found = True
    return found if any_found else None


def streams(X, n_clusters):
    """Whether a CPU fit of validated host array ``X`` (a ``numpy.memmap``, or any array
    given with ``stream_block_rows``) streams: float32 or float64 in C order, large enough
    that every pass of the in-memory fit runs on the Numba engine, so that both give the
    same numbers. Smaller data are read into memory."""
    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype in (np.float32, np.float64)
            and X.flags.c_contiguous):
        return False
    n_samples, n_features = X.shape
    return (not _cpu_small.is_small(n_samples, n_features, n_clusters)
            and X.size > _cpu_small.MAX_PASS_ELEMENTS
            and not _cpu_small._small_distances_pass(X, 1))


class StreamedData:
    """The data of a streamed fit: the caller's array, read ``block_rows`` rows at a time.

    ``shift`` (X's dtype, ``(n_features,)``) is subtracted from each block read when the
    fit centres (set by :func:`centered`); ``sample_weight`` is None for unit weights.
    """

    def __init__(self, source, sample_weight, block_rows):
        self.source = source
        self.shape = source.shape
        self.dtype = source.dtype
        self.sample_weight = sample_weight
        self.shift = None
        self.unit_rows = False  # cosine inference: each block normalised (see rows)
        self.block_rows = block_rows
        self._norms_sum = None

    def rows(self, start, end, out=None, with_norms=True):
        """Rows ``[start, end)`` as the fit sees them (a view of the source where they
        need no centring and ``out`` is None), and their float64 squared norms (None
        unless ``with_norms`` or centred, when they come with the subtraction). With
        ``unit_rows``, the rows divided by their norms (zero rows kept), as
        :func:`gpukmeans._spherical.normalize_query_rows` makes them from the whole array,
        bit for bit."""
        source = self.source[start:end]
        norms = np.empty(end - start)
        if self.unit_rows:
            unit, _ = _spherical.normalize_query_rows(np.asarray(source), _NUMBA_ENGINE)
            if out is not None:
                out[:] = unit
                unit = out
            return unit, _row_norms_f64(unit) if with_norms else None
        if self.shift is None:
            if out is None:
                out = source
            else:
                out[:] = source
            return out, _row_norms_f64(out) if with_norms else None
        if out is None:
            out = np.empty_like(source)
        _subtract_rows_and_norms(source, self.shift, out, norms)
        return out, norms

    def take(self, indices):
        """The rows at ``indices`` (a few) as the fit sees them."""
        return self.take_with_norms(indices)[0]

    def take_with_norms(self, indices):
        """The rows at ``indices`` (a few) as the fit sees them, and their norms."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.ascontiguousarray(self.source[indices])
        norms = np.empty(indices.shape[0])
        if self.shift is None:
            norms[:] = _row_norms_f64(out)
            return out, norms
        centred = np.empty_like(out)
        _subtract_rows_and_norms(out, self.shift, centred, norms)
        return centred, norms

    def weights(self, start, end):
        if self.sample_weight is None:
            return np.ones(end - start, dtype=self.dtype)
        return self.sample_weight[start:end]

    def weights64(self, start, end):
        return self.weights(start, end).astype(np.float64)

    def nearest_candidates(self, candidates, unit_centers):
        """k-means||'s E-step against ``candidates`` (:func:`gpukmeans._init.nearest_of`)
        a block at a time: ``(start, end, labels, distances)`` per block, host int64
        and float64, the in-memory engine's bit for bit (labels are per row)."""
        for start, end in self.blocks():
            block, norms = self.rows(start, end)
            labels = np.zeros(end - start, dtype=np.int32)
            if candidates.shape[0] > 1:
                _cpu.e_step(block, candidates, labels, norms, unit_centers=unit_centers)
            yield (start, end, labels.astype(np.int64),
                   numpy_order_distances(block, candidates, labels))

    def squared_norms_sum(self):
        """The in-memory fit's ``x_squared_norms.sum()`` (NumPy's pairwise sum, replayed)."""
        if self._norms_sum is None:
            self._norms_sum = pairwise_sum(lambda start, end: self.rows(start, end)[1],
                                           self.shape[0], self.block_rows)
        return self._norms_sum

    def blocks(self):
        """``(start, end)`` of consecutive blocks of whole chunks, in order."""
        n_samples = self.shape[0]
        for start in range(0, n_samples, self.block_rows):
            yield start, min(start + self.block_rows, n_samples)

    def init_centroids(self, init, n_clusters, random_state, reporter):
        return init_centroids(self, init, n_clusters, random_state, reporter, np)

    def kmeans_plusplus(self, n_clusters, random_state, reporter):
        return kmeans_plusplus(self, n_clusters, random_state, reporter=reporter)[0]

    def far_samples(self, centers_old, labels, n_empty):
        """:func:`gpukmeans._lloyd.relocate_empty_clusters`' far samples, as the
        in-memory fit chooses them: ``np.argpartition``'s order over every sample's
        distance to its center. The distances go to an unlinked temporary file
        (8 bytes a sample, page cache); argpartition's int64 indices are held for the
        while (8 bytes a sample, transiently; emptied clusters are rare)."""
        n_samples = self.shape[0]
        distances = temporary_array((n_samples,), np.float64)
        for start, end in self.blocks():
            block, _ = self.rows(start, end, with_norms=False)
            distances[start:end] = numpy_order_distances(block, centers_old,
                                                         labels[start:end])
        far = farthest(distances, n_empty)
        rows, norms = self.take_with_norms(far)
        weights = np.concatenate([self.weights(i, i + 1) for i in far])
        return far_sample_tuples(self.dtype, centers_old, np.array(distances[far]), norms,
                                 labels[far], weights, rows)


# --- the groups' rows, a block at a time ---


def _rounds(n_samples, n_groups, group_rows, chunk_rows):
    """The blocks of a grouped pass: ``(offset, [(start, end) per group])``; each round
    takes the next ``group_rows`` rows of every group (fewer at the end of a group), so
    that each group's rows are read in order and end where a group ends. The groups are
    the in-memory kernel's, of whole ``chunk_rows`` chunks."""
    n_chunks = -(-n_samples // chunk_rows)
    bounds = [_cpu_small.group_bounds(g, n_groups, n_chunks, n_samples, chunk_rows)
              for g in range(n_groups)]
    offset = 0
    while any(start + offset < end for start, end in bounds):
        parts = [(min(start + offset, end), min(start + offset + group_rows, end))
                 for start, end in bounds]
        yield parts
        offset += group_rows


def _group_rows(data, n_groups, period_rows):
    """Rows of each group per round: a multiple of ``period_rows`` (where a group's sums
    are folded), about ``block_rows / n_groups``."""
    per_group = data.block_rows // n_groups
    return max(period_rows, per_group // period_rows * period_rows)


def _gathered(data, parts, out_rows, out_norms, with_norms):
    """The rows of ``parts`` one after the other in ``out_rows`` (a view of the source
    when a single part needs no centring), and their norms when ``with_norms``."""
    if len(parts) == 1 and data.shift is None:
        return data.rows(*parts[0], with_norms=with_norms)
    position = 0
    for start, end in parts:
        out_rows[position: position + end - start] = data.source[start:end]
        position += end - start
    rows, norms = out_rows[:position], out_norms[:position]
    # One parallel call for the whole buffer (one per part costs its thread start-up
    # each time), centred in place: the same values as row by row.
    if data.shift is not None:
        _subtract_rows_and_norms(rows, data.shift, rows, norms)
    elif with_norms:
        norms[:] = _row_norms_f64(rows)
    return rows, norms


def _gather(array, parts):
    """``array``'s rows of ``parts``, one after the other (a copy)."""
    return np.concatenate([array[start:end] for start, end in parts])


def _gathered_weights(data, parts):
    if data.sample_weight is None:
        return np.ones(sum(end - start for start, end in parts), dtype=data.dtype)
    return _gather(data.sample_weight, parts)


def _grouped_pass(data, n_groups, period_rows, run_block, with_norms,
                  chunk_rows=CHUNK_ROWS):
    """Run ``run_block(rows, norms, weights, parts, groups)`` on every round of the
    groups (of whole ``chunk_rows`` chunks, a divisor of ``period_rows``): all groups
    together while each has a whole round of rows left (the kernel's own groups are
    then the gathered parts), then each group's rest alone (``groups`` the slice of the
    partials it continues). ``norms`` are the rows' float64 squared norms when
    ``with_norms``."""
    n_samples, n_features = data.shape
    group_rows = _group_rows(data, n_groups, period_rows)
    buffer = np.empty((n_groups * group_rows, n_features), dtype=data.dtype)
    norms = np.empty(n_groups * group_rows)
    for parts in _rounds(n_samples, n_groups, group_rows, chunk_rows):
        if all(end - start == group_rows for start, end in parts):
            rows, row_norms = _gathered(data, parts, buffer, norms, with_norms)
            run_block(rows, row_norms, _gathered_weights(data, parts), parts, slice(None))
            continue
        for group, (start, end) in enumerate(parts):
            if end > start:
                rows, row_norms = _gathered(data, [(start, end)], buffer, norms,
                                             with_norms)
                run_block(rows, row_norms, data.weights(start, end), [(start, end)],
                          slice(group, group + 1))


def _scatter(values, parts, out):
    """``out[start:end] = values[...]`` part after part (the last axis)."""
    position = 0
    for start, end in parts:
        out[..., start:end] = values[..., position: position + end - start]
        position += end - start


# --- the engine functions ---


def lloyd_iter(data, sample_weight, centers_old, labels, unit_centers=False):
    n_samples, n_features = data.shape
    n_clusters = centers_old.shape[0]
    n_groups = _cpu_small.n_groups(_cpu_small.n_chunks(n_samples), n_clusters, n_features)
    sums_part = np.zeros((n_groups, n_clusters, n_features))
    weights_part = np.zeros((n_groups, n_clusters))
    centers_squared_norms = _cpu_small.centers_squared_norms(centers_old, unit_centers)
    fold_rows = _cpu_small.fold_rows(n_clusters)
    dots_kernel = _cpu._dots_kernel(data, n_clusters)
    margin = _cpu_small.bound_margin_coefficient(data.dtype, n_features)
    exact = data.dtype == np.float32

    def run_block(rows, norms, weights, parts, groups):
        block_labels = np.empty(rows.shape[0], dtype=np.int32)
        _lloyd_partials(
            rows, weights, centers_old, centers_squared_norms, block_labels, norms,
            CHUNK_ROWS, fold_rows, len(parts), True, dots_kernel, margin, exact,
            unit_centers, sums_part[groups], weights_part[groups], False, _NO_DISTANCES,
        )
        _scatter(block_labels, parts, labels)

    # A group folds its partial sums every this many rows: blocks end there.
    period_rows = -(-fold_rows // CHUNK_ROWS) * CHUNK_ROWS
    # The in-memory run hands its row norms to each step (the near-ties' margins).
    _grouped_pass(data, n_groups, period_rows, run_block, with_norms=True)
    return _reduce_partials(sums_part, weights_part)


def assign_labels(data, centers, labels, unit_centers=False):
    for start, end in data.blocks():
        block, norms = data.rows(start, end)
        _cpu.e_step(block, centers, labels[start:end], norms, unit_centers=unit_centers)


def inertia(data, sample_weight, centers, labels):
    return _summed_by_block(data, lambda start, end: _assigned_distances(
        data.rows(start, end, with_norms=False)[0], centers, labels[start:end]))


def labels_inertia(data, sample_weight, centers, labels, unit_centers=False):
    """The in-memory plain run's final pass (:func:`gpukmeans._cpu.labels_inertia`: the
    E-step measures each sample's distance to its new center) a block at a time: its
    labels and inertia bit for bit: the same compiled E-step measures the distances."""
    def distances_of(start, end):
        block, norms = data.rows(start, end)
        distances = np.empty(end - start)
        _cpu.e_step(block, centers, labels[start:end], norms, distances,
                    unit_centers=unit_centers)
        return distances

    return _summed_by_block(data, distances_of)


def _summed_by_block(data, distances_of):
    """``sum_i w_i d_i`` of the blocks' ``distances_of(start, end)``, as the in-memory
    sum: sequential over the samples, each block's sum starting from the total so far
    (a first value of weight one)."""
    total = np.zeros(1)
    one = np.ones(1, dtype=data.dtype)
    for start, end in data.blocks():
        total[0] = _weighted_sum_f64(np.concatenate([total, distances_of(start, end)]),
                                     np.concatenate([one, data.weights(start, end)]))
    return np.float64(total[0])


def centered(data, X_mean, x_squared_norms=None):
    """Engine ``centered`` (:func:`gpukmeans._cpu_passes.centered`'s rule): float64 always
    centred; float32 when the mean's squared norm exceeds the spread around it, from the
    mean of the row norms, summed as NumPy sums them. Returns ``(data, RowNormsSum(data),
    is_centred)``: the norms are computed again block by block."""
    if data.dtype == np.float32:
        mean_norm = data.squared_norms_sum() / data.shape[0]
        if _cpu_small.near_the_origin(X_mean, np.asarray([mean_norm])):
            return data, RowNormsSum(data), False
    data.shift = X_mean.astype(data.dtype, copy=False)
    data._norms_sum = None  # the centred rows' are others
    return data, RowNormsSum(data), True


def start_lloyd(data, x_squared_norms, sample_weight, n_clusters, unit_centers=False):
    """The in-memory engine's choice (:func:`gpukmeans._cpu.run_kind`): Hamerly's or
    Elkan's bounds where it keeps them; the plain step otherwise, also where it keeps
    Yinyang's, whose results are the plain step's bit for bit."""
    kind = _cpu.run_kind(data, n_clusters)
    if kind == "bounds":  # plain steps first where the in-memory run takes them
        return StreamedBoundsRun(data, n_clusters, unit_centers,
                                 StreamedPlainRun(data, unit_centers))
    if kind == "yinyang":  # its final pass: an E-step, then inertia's pass
        return StatelessRun(data, sample_weight, by_dot_products(lloyd_iter, unit_centers),
                            by_dot_products(assign_labels, unit_centers), inertia)
    return StreamedPlainRun(data, unit_centers)


class StreamedPlainRun(NamedTuple):
    """The in-memory :class:`gpukmeans._cpu.PlainRun` on streamed data: its final pass
    is :func:`labels_inertia`, as the plain run's."""

    data: StreamedData
    unit_centers: bool = False

    def step(self, centers_old, labels):
        return lloyd_iter(self.data, None, centers_old, labels, self.unit_centers)

    def finish(self, centers, labels, assign_labels):
        if assign_labels:
            return labels_inertia(self.data, None, centers, labels, self.unit_centers)
        return inertia(self.data, None, centers, labels)


class StreamedBoundsRun(BoundsRun):
    """:class:`gpukmeans._cpu_bounds.BoundsRun` on streamed data: the same E-step
    kernels on each round's gathered rows (each part a kernel group continuing its
    own float64 deltas, as :func:`lloyd_iter`'s partials), so that every sample is moved
    between the clusters' sums in the in-memory order. The per-sample bounds live in
    unlinked temporary files (page cache), gathered and written back with the rows."""

    def __init__(self, data, n_clusters, unit_centers=False, plain=None):
        super().__init__(data, None, data.sample_weight, n_clusters, unit_centers,
                         _cpu.dense_search_by_gemm(data.shape[1], n_clusters), plain)

    def new_per_sample(self, shape, dtype, fill):
        return temporary_array(shape, dtype, 0 if fill is None else fill)

    def weight_in_clusters(self, labels, n_clusters):
        weights = np.zeros(n_clusters)
        for start, end in self.X.blocks():
            _add_weight_in_clusters(labels[start:end], self.X.weights(start, end), weights)
        return weights

    def e_step_pass(self, kernel, centers, labels, distances):
        def run_block(rows, norms, weights, parts, groups):
            arrays = (labels,) + self.per_sample
            gathered = tuple(_gather(array, parts) for array in arrays)
            kernel(rows, norms, gathered[0], gathered[1:], weights, self.delta_sums[groups],
                   self.touched[groups], distances, len(parts))
            for values, out in zip(gathered, arrays):
                _scatter(values.T, parts, out.T)  # along the samples' axis

        # The bounds kernels carry no partial sums from chunk to chunk: a block may end
        # at any chunk.
        _grouped_pass(self.X, self.n_groups, CHUNK_ROWS, run_block, with_norms=True)

    def _finish_bounded(self, centers, labels, assign_labels):
        """The final E-step with the bounds, then the inertia in another pass (the
        in-memory run sums the same distances in the same order during its E-step)."""
        if assign_labels:
            self._e_step(centers, labels)
            self.centers_prev = centers.copy()
        return inertia(self.X, None, centers, labels)


def streamed_engine(unit_centers=False):
    """The Numba engine with the functions above; the ones that a streamed fit never
    calls (inference, whole-array passes) are None. ``unit_centers``: see
    :func:`gpukmeans._cpu.make_engine`."""
    return _cpu.make_engine(unit_centers)._replace(
        lloyd_iter=by_dot_products(lloyd_iter, unit_centers),
        start_lloyd=by_dot_products(start_lloyd, unit_centers),
        assign_labels=by_dot_products(assign_labels, unit_centers),
        inertia=inertia, centered=centered, assigned_distances=None, pairwise_distances=None,
        # StreamedData.far_samples, kmeans_plusplus:
        row_norms=None, kmeanspp_candidates=None, start_kmeanspp=None,
    )


# --- initialisation ---


def _candidates_pass(data, candidates, candidate_norms, closest, distance_to_candidates):
    """The k-means++ candidates' distances (written to ``distance_to_candidates``, an
    ``(n_candidates, n_samples)`` array) and potentials, as
    :func:`gpukmeans._cpu._kmeanspp_candidates_chunked` computes them in memory."""
    n_samples, n_features = data.shape
    n_candidates = candidates.shape[0]
    n_groups = _cpu.kmeanspp_groups(n_samples, n_candidates)
    pot_part = np.zeros((n_groups, n_candidates))
    # The in-memory step's choice of dot products, by the whole data's shape; each chunk
    # is transposed as it comes (same bits as the in-memory X transposed once).
    panel = by_panel(n_samples, n_features, data.dtype.itemsize)
    no_transposed = np.empty((0, 0), dtype=data.dtype)

    def run_block(rows, norms, weights, parts, groups):
        block_closest = np.empty(rows.shape[0], dtype=data.dtype)
        if closest is None:
            block_closest[:] = np.inf
        else:
            _scatter_back(closest, parts, block_closest)
        distances = np.empty((n_candidates, rows.shape[0]), dtype=data.dtype)
        kmeanspp_partials(rows, no_transposed, panel, norms, weights, candidates,
                           candidate_norms, block_closest, KMEANSPP_CHUNK_ROWS, len(parts),
                           distances, pot_part[groups])
        _scatter(distances, parts, distance_to_candidates)

    _grouped_pass(data, n_groups, KMEANSPP_CHUNK_ROWS, run_block, with_norms=True,
                  chunk_rows=KMEANSPP_CHUNK_ROWS)
    candidates_pot = pot_part[0].copy()
    for group in range(1, n_groups):
        candidates_pot += pot_part[group]
    return candidates_pot


def _scatter_back(source, parts, out):
    """``out`` = ``source``'s ranges of ``parts``, one after the other."""
    position = 0
    for start, end in parts:
        out[position: position + end - start] = source[start:end]
        position += end - start


def kmeans_plusplus(data, n_clusters, random_state, n_local_trials=None,
                    reporter=NULL_REPORTER):
    """:func:`gpukmeans._init.kmeans_plusplus` on streamed data: the same draws, in the
    same order, the same numbers. Returns ``(centers, indices)``."""
    n_samples, n_features = data.shape
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    centers = np.empty((n_clusters, n_features), dtype=data.dtype)
    indices = np.full(n_clusters, -1, dtype=np.int64)
    reporter.start_init("k-means++", n_clusters)
    center_id = weighted_choice(random_state, data)
    first, first_norm = data.take_with_norms([center_id])
    centers[0], indices[0] = first[0], center_id
    # Two files of candidate distances, in turn: the best row of one is the closest
    # distances that the next step reads while it writes the other.
    first_distances = temporary_array((1, n_samples), data.dtype)
    trials_a = temporary_array((n_local_trials, n_samples), data.dtype)
    trials_b = temporary_array((n_local_trials, n_samples), data.dtype)
    current_pot = _candidates_pass(data, first, first_norm, None, first_distances)[0]
    closest = first_distances[0]
    reporter.init_step(1)
    for c in range(1, n_clusters):
        rand_vals = random_state.uniform(size=n_local_trials) * current_pot
        candidate_ids = search_cumulative(data, closest, rand_vals)
        candidates, candidate_norms = data.take_with_norms(candidate_ids)
        trials = trials_a if c % 2 else trials_b
        candidates_pot = _candidates_pass(data, candidates, candidate_norms, closest, trials)
        best = int(np.argmin(candidates_pot))
        current_pot = candidates_pot[best]
        closest = trials[best]
        centers[c] = candidates[best]
        indices[c] = candidate_ids[best]
        reporter.init_step(c + 1)
    return centers, indices
