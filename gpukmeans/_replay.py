"""What a streamed fit replays of the in-memory fit's NumPy code, a block of rows at a
time, bit for bit: NumPy's pairwise sums (the row norms' sum for the tolerance and the
centring rule, the weights' sum), ``RandomState.choice``'s first k-means++ draw, the
cumulative potentials' search. For
both streamed engines (:mod:`gpukmeans._streaming` on the CPU,
:mod:`gpukmeans._gpu_streaming` to the GPU); NumPy only.

``data`` is a streamed fit's data object: ``shape``, ``dtype``, ``source`` (the caller's
host array), ``block_rows``, ``blocks()`` and ``weights(start, end)``.
"""

import tempfile

import numpy as np

from ._cpu_small import CHUNK_ROWS
from ._lloyd import to_host

# The default block: about this many bytes of X's rows.
BLOCK_BYTES = 2**25


def temporary_array(shape, dtype, fill=0):
    """A new array in an unlinked temporary file (``tempfile``'s directory): page cache,
    not the process's own memory; its space goes with the mapping. Holds ``fill`` (a new
    file reads as zeros: other values are written). The file object is closed at once
    (the mapping holds its own descriptor), so nothing is left for the garbage collector
    to close (a ResourceWarning)."""
    with tempfile.TemporaryFile(prefix="gpukmeans-") as file:
        array = np.memmap(file, mode="w+", dtype=dtype, shape=shape)
    if fill != 0:
        array[...] = fill
    return array


def block_rows_for(X, block_rows):
    """Rows per block: ``block_rows`` rounded up to whole chunks, or about
    :data:`BLOCK_BYTES` of rows."""
    if block_rows is None:
        block_rows = BLOCK_BYTES // (X.shape[1] * X.dtype.itemsize)
    return max(CHUNK_ROWS, -(-int(block_rows) // CHUNK_ROWS) * CHUNK_ROWS)


class RowNormsSum:
    """What a streamed fit's ``engine.centered`` returns for ``x_squared_norms``: the
    norms are computed block by block where a step needs them, and the fit asks for the
    whole array only for its sum (the tolerance): ``shape`` and ``sum()``, the latter
    the data's ``squared_norms_sum()``, computed on demand."""

    def __init__(self, data):
        self.data = data
        self.shape = (data.shape[0],)

    def sum(self):
        return self.data.squared_norms_sum()


# NumPy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src, ``pairwise_sum``):
# at most PAIRWISE_BLOCK values are summed in one block (8 running sums); more are split
# in two at :func:`pairwise_split` and the halves' sums added.
PAIRWISE_BLOCK = 128


def pairwise_split(count):
    """The length of the first part where NumPy's pairwise summation splits ``count``
    values: half of them, down to a multiple of 8."""
    half = count // 2
    return half - half % 8


def pairwise_sum(read, n, max_rows, reduce=np.add.reduce):
    """``np.add.reduce`` of a 1-D array of ``n`` values that ``read(start, end)`` gives a
    slice at a time (at most ``max_rows``), bit for bit: NumPy's pairwise summation
    splits at ``n2 = n // 2 - (n // 2) % 8``, and any part of at most ``max_rows`` values
    is summed by NumPy itself (``reduce``), which splits it the same way down to 128
    values. (With CuPy's ``sum`` as ``reduce``, each part is summed CuPy's way.)"""
    max_rows = max(max_rows, PAIRWISE_BLOCK)

    def part(start, count):
        if count <= max_rows:
            return reduce(read(start, start + count))
        half = pairwise_split(count)
        return part(start, half) + part(start + half, count - half)

    return part(0, n)


def weighted_choice(random_state, data, weights=None):
    """``random_state.choice(n_samples, p=w / w.sum())`` as scikit-learn's k-means++ draws
    its first center, bit for bit, without the ``n_samples``-long float64 ``p`` and
    ``cdf``: NumPy's ``cdf = p.cumsum(); cdf /= cdf[-1]``, then the first index whose
    ``cdf`` exceeds one uniform draw. ``w`` is ``weights(start, end)`` a block at a time,
    by default ``data.weights`` (X's dtype)."""
    n_samples = data.shape[0]
    weights = data.weights if weights is None else weights
    weight_sum = pairwise_sum(weights, n_samples, data.block_rows)

    def probabilities(start, end):
        return (weights(start, end) / weight_sum).astype(np.float64)

    def cumulative_blocks():
        carry = None
        for start, end in data.blocks():
            cdf = carried_cumsum(probabilities(start, end), carry)
            carry = cdf[-1:].copy()  # the caller divides cdf in place
            yield start, cdf

    last = None
    for _, cdf in cumulative_blocks():
        last = cdf[-1]
    uniform = random_state.random_sample()
    for start, cdf in cumulative_blocks():
        cdf /= last
        position = int(np.searchsorted(cdf, uniform, side="right"))
        if position < cdf.shape[0]:
            return start + position
    return n_samples  # as NumPy's searchsorted would (cdf[-1] is 1, above any draw)


def carried_cumsum(values, carry, xp=np):
    """``cumsum`` of a whole array, continued from ``carry`` (the last value so far, a
    1-element array, or None at the start). NumPy's cumsum is sequential: bit for bit
    the whole array's; CuPy's scan is its own within each block."""
    if carry is None:
        return xp.cumsum(values)
    return xp.cumsum(xp.concatenate([carry, values]))[1:]


def search_cumulative(data, closest, targets, xp=np):
    """``searchsorted(cumsum(w * closest), targets)``, clipped to the last sample, block
    by block: the k-means++ candidates of ``targets`` (a NumPy float64 array).
    ``closest`` is in ``xp``'s memory, the weights (``data.weights``) on the host."""
    n_samples = data.shape[0]
    found = np.full(targets.shape[0], -1, dtype=np.int64)
    carry = None
    for start, end in data.blocks():
        weights = xp.asarray(data.weights(start, end)).astype(xp.float64)
        cumulative = carried_cumsum(weights * closest[start:end], carry, xp)
        carry = cumulative[-1:]
        here = (found < 0) & (targets <= float(carry[0]))
        if here.any():
            found[here] = start + to_host(xp.searchsorted(cumulative, xp.asarray(targets[here])))
        if not (found < 0).any():
            break
    found[found < 0] = n_samples - 1
    return found



def init_centroids(data, init, n_clusters, random_state, reporter, xp):
    """Initial centers for one run of a streamed fit (the estimator's ``_init_centroids``),
    in ``xp``'s memory: the in-memory fit's draws, in its order. ``data`` also has
    ``take(indices)`` (rows as the fit sees them), ``kmeans_plusplus(n_clusters,
    random_state, reporter)`` and ``shift`` (the mean subtracted, or None). "random"
    builds NumPy's ``n_samples``-long probabilities for the while of its draw, as the
    in-memory fit does. A callable ``init`` is given the caller's array, read-only (not
    centred: that would be a copy of it); its centers are moved into the fit's frame."""
    if isinstance(init, str) and init == "k-means++":
        return data.kmeans_plusplus(n_clusters, random_state, reporter)
    if isinstance(init, str) and init == "random":
        n_samples = data.shape[0]
        weights = (np.ones(n_samples, dtype=data.dtype) if data.sample_weight is None
                   else data.sample_weight)
        seeds = random_state.choice(n_samples, size=n_clusters, replace=False,
                                    p=weights / weights.sum())
        return data.take(seeds)
    if callable(init):
        from ._validation import check_init_array, original_array

        source = original_array(data.source).view()
        source.flags.writeable = False
        centers = check_init_array(init(source, n_clusters, random_state=random_state),
                                   n_clusters, data.shape[1], data.dtype, xp)
        if data.shift is not None:
            centers -= data.shift
        return xp.ascontiguousarray(centers)
    return xp.ascontiguousarray(init)
