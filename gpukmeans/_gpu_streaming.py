"""Host data larger than the GPU: a fit that copies X to the device a block of rows at a
time, on the GPU engine's own kernels (:class:`gpukmeans._gpu.GpuKernels`).

A GPU fit of host X (NumPy, or a ``numpy.memmap``) copies X to the device once when the
fit's arrays fit in the device memory it may use (the free memory, or
``max_device_memory``: :func:`plan`); otherwise it streams. Each pass copies the blocks
through two pinned host buffers on a copy stream, the copy of the next block overlapping
the kernels on this one (:class:`_PinnedBlocks`); on the test suite's emulated device,
whose arrays are NumPy's, a block is used in place. Where not even one block of
:data:`gpukmeans._cpu_small.CHUNK_ROWS` rows fits beside what the fit keeps per sample, a
:class:`MemoryError` names the sizes, before any work.

The device keeps per sample the int32 labels (twice: the driver's previous labels) and
k-means++'s closest distances (X's dtype); blocks, centers and sums besides.

Same result as the in-memory GPU fit up to the rounding of float64 sums, and bit for bit
on the emulated device where the in-memory fit's sums are sequential there too:

- labels, per row, are the fused kernel's, or the GEMM path's where the full shape takes
  it (:func:`gpukmeans._gpu.choose_assign_path` on the whole X, so both fits take the
  same path); a GEMM of a block may sum in another order than one of the whole X;
- the M-step sums, the inertia and the k-means++ potentials are the kernels' float64 sums
  per block, added in block order: the in-memory fit adds the same terms grouped
  otherwise (pieces of each cluster's samples, blocks of the reduction kernels), so the
  float64 results agree to a few units in the last place, and float32 centers (rounded
  from them) nearly always exactly;
- k-means++'s cumulative potentials are a CuPy scan per block, continued from block to
  block (the in-memory fit scans the whole array), and the row norms' sum behind the
  tolerance is CuPy's sum per part of NumPy's pairwise split; k-means++'s first draw and
  the centring (per element) are bitwise the in-memory fit's. On the emulated device
  (NumPy) the scans and the sum are bitwise too.
- emptied clusters take the in-memory fit's far samples: ``np.argpartition`` over every
  sample's distance (the same kernel, per row), in a temporary file;
- each k-means++ step takes two passes over X (the candidates' potentials, then the
  chosen candidate's distances again, recomputed bitwise: each candidate's distance is
  computed independently of the others).
"""

import numpy as np

from . import _replay
from ._replay import RowNormsSum
from ._cpu_small import CHUNK_ROWS
from ._engine import StatelessRun, by_dot_products
from ._gpu import GpuKernels, weighted_row_sums_launch
from ._lloyd import far_sample_tuples, farthest, to_host

# Each pinned host buffer (there are two) holds at most this many bytes of rows.
MAX_PINNED_BYTES = 2**28


def _n_local_trials(n_clusters):
    return 2 + int(np.log(n_clusters))


def resident_bytes(n_samples, n_features, n_clusters, itemsize):
    """What an in-memory GPU fit holds at its peak, about: X and its centred copy, the
    row norms, labels twice, weights, k-means++'s closest distances and candidates'
    distances, the M-step's sort (int64 ids), and the centers' few arrays."""
    per_sample = (2 * n_features * itemsize + 8 + 2 * 4 + itemsize
                  + (1 + _n_local_trials(n_clusters)) * itemsize + 8 + 8)
    return n_samples * per_sample + _centers_bytes(n_features, n_clusters, itemsize)


def _centers_bytes(n_features, n_clusters, itemsize):
    return n_clusters * n_features * (8 * 3 + itemsize * 4)


def streamed_bytes(n_samples, n_features, n_clusters, itemsize):
    """``(fixed, per_row)`` of a streamed fit: what it keeps whatever the block (labels
    twice and k-means++'s closest distances per sample, the centers' arrays), and per row
    of a block: two device buffers and the centred block, the candidates' distances,
    the sort's ids, the weights, the GEMM path's products."""
    fixed = n_samples * (2 * 4 + itemsize) + _centers_bytes(n_features, n_clusters, itemsize)
    per_row = (3 * n_features * itemsize + (1 + _n_local_trials(n_clusters)) * itemsize
               + 8 + 8 + 2 * itemsize + n_clusters * itemsize)
    return fixed, per_row


def device_budget(xp, max_device_memory):
    """Bytes of device memory a fit may use: ``max_device_memory``, else the free device
    memory and what CuPy's pool holds free; None (no limit) on the emulated device."""
    if max_device_memory is not None:
        return int(max_device_memory)
    cuda = getattr(xp, "cuda", None)
    if cuda is None:
        return None
    free, _ = cuda.runtime.memGetInfo()
    return int(free) + int(xp.get_default_memory_pool().free_bytes())


def plan(X, n_clusters, budget):
    """Rows per block of a streamed fit of host array ``X`` within ``budget`` bytes of
    device memory, or None when the in-memory fit fits (or no budget is known).

    Raises
    ------
    MemoryError
        When not even a block of ``CHUNK_ROWS`` rows fits beside what a streamed fit keeps
        per sample; the message gives the sizes.
    """
    n_samples, n_features = X.shape
    itemsize = X.dtype.itemsize
    # Python ints: n_clusters may be a NumPy integer (np.int8(20)), whose products with
    # the sizes overflowed (found on the first real GPU: the emulated device sets no budget).
    n_clusters = int(n_clusters)
    if budget is None or resident_bytes(n_samples, n_features, n_clusters, itemsize) <= budget:
        return None
    fixed, per_row = streamed_bytes(n_samples, n_features, n_clusters, itemsize)
    rows = (budget - fixed) // per_row // CHUNK_ROWS * CHUNK_ROWS
    if rows < CHUNK_ROWS:
        raise MemoryError(
            f"X ({X.nbytes} bytes: {n_samples} x {n_features} {X.dtype}) does not fit in the "
            f"{budget} bytes of device memory this fit may use (max_device_memory, or the "
            f"free memory of the GPU), and neither does a streamed fit: it keeps {fixed} "
            f"bytes (labels and k-means++ distances per sample, the {n_clusters} centers) "
            f"plus {CHUNK_ROWS * per_row} bytes for its smallest block of {CHUNK_ROWS} rows. "
            "Use fewer samples or clusters, device='cpu', or a GPU with more memory."
        )
    max_rows = max(CHUNK_ROWS, MAX_PINNED_BYTES // (n_features * itemsize))
    return int(min(rows, max_rows, -(-n_samples // CHUNK_ROWS) * CHUNK_ROWS))


class _PinnedBlocks:
    """Blocks of rows copied host-to-device through two pinned buffers on a copy stream:
    while the kernels run on one block, the host fills the other buffer and its copy is
    under way. A block is the kernels' until the generator moves on."""

    def __init__(self, cupy, block_rows, n_features, dtype):
        self.cupy = cupy
        count = block_rows * n_features
        self.host = [np.frombuffer(cupy.cuda.alloc_pinned_memory(count * dtype.itemsize),
                                   dtype, count).reshape(block_rows, n_features)
                     for _ in range(2)]
        self.device = [cupy.empty((block_rows, n_features), dtype) for _ in range(2)]
        self.copy_stream = cupy.cuda.Stream(non_blocking=True)

    def __call__(self, source, bounds):
        compute = self.cupy.cuda.get_current_stream()
        released = [None, None]
        for i, (start, end) in enumerate(bounds):
            slot = i % 2
            if released[slot] is not None:
                released[slot].synchronize()  # this slot's last block: copied and used
            rows = end - start
            host = self.host[slot][:rows]
            host[...] = source[start:end]
            device = self.device[slot][:rows]
            device.set(host, stream=self.copy_stream)
            compute.wait_event(self.copy_stream.record())
            yield start, end, device
            released[slot] = compute.record()


class DeviceStreamedData:
    """The data of a fit streamed to the GPU: the caller's host array, a block at a time.

    ``shift`` (device, X's dtype) is subtracted from each block, as the in-memory GPU fit
    centres X; ``sample_weight`` (host, X's dtype) is None for unit weights.
    """

    def __init__(self, source, sample_weight, block_rows, backend):
        self.source = source
        self.shape = source.shape
        self.dtype = source.dtype
        self.sample_weight = sample_weight
        self.block_rows = block_rows
        self.kernels = GpuKernels(backend)
        self.xp = backend.xp
        self.shift = None
        self._pinned = None
        if hasattr(self.xp, "cuda"):
            self._pinned = _PinnedBlocks(self.xp, block_rows, source.shape[1], source.dtype)

    def blocks(self):
        n_samples = self.shape[0]
        for start in range(0, n_samples, self.block_rows):
            yield start, min(start + self.block_rows, n_samples)

    def weights(self, start, end):
        if self.sample_weight is None:
            return np.ones(end - start, dtype=self.dtype)
        return self.sample_weight[start:end]

    def device_blocks(self):
        """``(start, end, rows, weights)`` per block, on the device, centred."""
        xp = self.xp
        if self._pinned is None:
            raw = ((start, end, xp.asarray(self.source[start:end]))
                   for start, end in self.blocks())
        else:
            raw = self._pinned(self.source, self.blocks())
        for start, end, rows in raw:
            yield (start, end, rows - self.shift if self.shift is not None else rows,
                   xp.asarray(self.weights(start, end)))

    def weights64(self, start, end):
        return self.weights(start, end).astype(np.float64)

    def nearest_candidates(self, candidates, unit_centers):
        """k-means||'s E-step against ``candidates`` (:func:`gpukmeans._init.nearest_of`)
        a block at a time: ``(start, end, labels, distances)`` per block, on the host,
        int64 and float64, on the paths the whole X takes."""
        for start, end, rows, _ in self.device_blocks():
            labels = self.xp.zeros(end - start, dtype=self.xp.int32)
            if candidates.shape[0] > 1:
                _e_step(self, candidates, labels, rows, unit_centers)
            distances = self.kernels.squared_distances_to_centers(rows, candidates, labels)
            yield start, end, to_host(labels).astype(np.int64), to_host(distances)

    def squared_norms_sum(self):
        """The in-memory fit's ``x_squared_norms.sum()``: the kernel's row norms, summed
        as the array module sums them, part by part as NumPy splits a pairwise sum."""
        def norms(start, end):
            rows = self.xp.asarray(self.source[start:end])
            return self.kernels.row_norms(rows - self.shift if self.shift is not None else rows)

        return _replay.pairwise_sum(norms, self.shape[0], self.block_rows, lambda a: a.sum())

    def take(self, indices):
        """The rows at ``indices`` (a few), on the device, as the fit sees them."""
        rows = self.xp.asarray(np.ascontiguousarray(self.source[np.asarray(indices)]))
        return rows - self.shift if self.shift is not None else rows

    def init_centroids(self, init, n_clusters, random_state, reporter):
        return _replay.init_centroids(self, init, n_clusters, random_state, reporter, self.xp)

    def kmeans_plusplus(self, n_clusters, random_state, reporter):
        return kmeans_plusplus(self, n_clusters, random_state, reporter)

    def far_samples(self, centers_old, labels, n_empty):
        """:func:`gpukmeans._lloyd.relocate_empty_clusters`' far samples, as the
        in-memory fit chooses them: ``np.argpartition``'s order over every sample's
        distance to its center (the kernel's, NumPy's row sums bit for bit). The
        distances go to an unlinked temporary file (8 bytes a sample, page cache), as
        on the CPU (:meth:`gpukmeans._streaming.StreamedData.far_samples`)."""
        distances = _replay.temporary_array((self.shape[0],), np.float64)
        for start, end, rows, _ in self.device_blocks():
            distances[start:end] = to_host(self.kernels.squared_distances_to_centers(
                rows, centers_old, labels[start:end]))
        far = farthest(distances, n_empty)
        rows = self.take(far)
        weights = np.concatenate([self.weights(i, i + 1) for i in far])
        return far_sample_tuples(self.dtype, centers_old, np.array(distances[far]),
                                 to_host(self.kernels.row_norms(rows)),
                                 to_host(labels[self.xp.asarray(far)]), weights, rows)


def _e_step(data, centers, labels_rows, rows, unit_centers):
    """The E-step on a block, on the path the whole X takes."""
    data.kernels.e_step(rows, centers, labels_rows, unit_centers, path_samples=data.shape[0])


def lloyd_iter(data, sample_weight, centers_old, labels, unit_centers=False):
    xp = data.xp
    n_clusters, n_features = centers_old.shape
    sums = xp.zeros((n_clusters, n_features), dtype=xp.float64)
    weight_in_clusters = xp.zeros(n_clusters, dtype=xp.float64)
    for start, end, rows, weights in data.device_blocks():
        _e_step(data, centers_old, labels[start:end], rows, unit_centers)
        block_sums, block_weights = data.kernels.accumulate(rows, weights, labels[start:end],
                                                            n_clusters)
        sums += block_sums
        weight_in_clusters += block_weights
    return sums, weight_in_clusters


def assign_labels(data, centers, labels, unit_centers=False):
    for start, end, rows, _ in data.device_blocks():
        _e_step(data, centers, labels[start:end], rows, unit_centers)


def inertia(data, sample_weight, centers, labels):
    total = data.xp.zeros((), dtype=data.xp.float64)
    for start, end, rows, weights in data.device_blocks():
        total = total + data.kernels.inertia(rows, weights, centers, labels[start:end])
    return total


def centered(data, X_mean, x_squared_norms=None):
    """Engine ``centered``: the GPU engine always centres (each block, as it comes)."""
    data.shift = data.xp.asarray(X_mean)
    return data, RowNormsSum(data), True


def start_lloyd(data, x_squared_norms, sample_weight, n_clusters, unit_centers=False):
    return StatelessRun(data, sample_weight, by_dot_products(lloyd_iter, unit_centers),
                        by_dot_products(assign_labels, unit_centers), inertia)


def streamed_engine(backend, unit_centers=False):
    """The GPU engine with the functions above; those a streamed fit never calls are None.
    ``unit_centers``: see :meth:`gpukmeans._gpu.GpuKernels.engine`."""
    from ._gpu import make_engine

    return make_engine(backend, unit_centers)._replace(
        lloyd_iter=by_dot_products(lloyd_iter, unit_centers),
        start_lloyd=by_dot_products(start_lloyd, unit_centers),
        assign_labels=by_dot_products(assign_labels, unit_centers),
        inertia=inertia, centered=centered, assigned_distances=None, pairwise_distances=None,
        row_norms=None, kmeanspp_candidates=None,  # far_samples, kmeans_plusplus
    )


def _candidates_pass(data, candidates, closest, store_closest):
    """The candidates' potentials, summed per block and added in block order. The
    kernel reads the candidates as rows of X: they go first in each block's buffer.
    With ``store_closest``, the first candidate's distances become ``closest``."""
    xp = data.xp
    n_candidates = candidates.shape[0]
    candidate_ids = xp.arange(n_candidates, dtype=xp.int64)
    pots = xp.zeros(n_candidates, dtype=xp.float64)
    for start, end, rows, weights in data.device_blocks():
        with_candidates = xp.concatenate([candidates, rows])
        closest_rows = xp.empty(n_candidates + end - start, dtype=data.dtype)
        closest_rows[n_candidates:] = xp.inf if store_closest else closest[start:end]
        closest_rows[:n_candidates] = 0
        distances = xp.empty((n_candidates, n_candidates + end - start), dtype=data.dtype)
        data.kernels.kmeanspp_distances(with_candidates, candidate_ids, closest_rows, distances)
        distances = xp.ascontiguousarray(distances[:, n_candidates:])
        if store_closest:
            closest[start:end] = distances[0]
        grid, _ = weighted_row_sums_launch(n_candidates, end - start)
        partials = xp.empty((n_candidates, grid[0]), dtype=xp.float64)
        data.kernels.weighted_row_sums(distances, weights, partials)
        block_pots = xp.empty(n_candidates, dtype=xp.float64)
        data.kernels.sum_partials(partials, block_pots)
        pots += block_pots
    return pots


def _update_closest(data, best, closest):
    """``closest = min(closest, distance to best)``, per block: the distances the
    candidates' pass computed for it, recomputed."""
    xp = data.xp
    for start, end, rows, _ in data.device_blocks():
        with_best = xp.concatenate([best[None], rows])
        closest_rows = xp.empty(1 + end - start, dtype=data.dtype)
        closest_rows[0] = 0
        closest_rows[1:] = closest[start:end]
        distances = xp.empty((1, 1 + end - start), dtype=data.dtype)
        data.kernels.kmeanspp_distances(with_best, xp.zeros(1, dtype=xp.int64), closest_rows,
                                        distances)
        closest[start:end] = distances[0, 1:]


def kmeans_plusplus(data, n_clusters, random_state, reporter):
    """:func:`gpukmeans._init.kmeans_plusplus` on data streamed to the GPU: the same draws
    in the same order (see the module's notes on the sums)."""
    xp = data.xp
    n_samples, n_features = data.shape
    n_local_trials = _n_local_trials(n_clusters)
    centers = xp.empty((n_clusters, n_features), dtype=data.dtype)
    reporter.start_init("k-means++", n_clusters)
    center_id = _replay.weighted_choice(random_state, data)
    centers[0] = data.take([center_id])[0]
    closest = xp.empty(n_samples, dtype=data.dtype)
    current_pot = _candidates_pass(data, centers[:1], closest, store_closest=True)[0]
    reporter.init_step(1)
    for c in range(1, n_clusters):
        rand_vals = random_state.uniform(size=n_local_trials) * float(current_pot)
        candidate_ids = _replay.search_cumulative(data, closest, rand_vals, xp)
        candidates = data.take(candidate_ids)
        candidates_pot = _candidates_pass(data, candidates, closest, store_closest=False)
        best = int(xp.argmin(candidates_pot))
        current_pot = candidates_pot[best]
        centers[c] = candidates[best]
        if c + 1 < n_clusters:
            _update_closest(data, candidates[best], closest)
        reporter.init_step(c + 1)
    return centers
