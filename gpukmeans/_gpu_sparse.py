"""The GPU engine for sparse data: the CSR kernels of ``kernels/sparse.cu``, on a backend.

X is a CSR matrix: ``cupyx.scipy.sparse`` on a GPU, ``scipy.sparse`` on the test suite's
emulated device (whose arrays are NumPy's). Centers are dense.

- E-step (``assign_labels_csr``): one warp per row, each lane a few centers; the row's
  stored entries are read once per pass by every lane (one broadcast load) and multiplied
  with the transposed centers ``centers_t[col, :]`` (coalesced). The dot products are
  scikit-learn's, summed over the stored entries in stored order in float64, with no FMA
  contraction, so that float64 labels are the CPU engine's (and scikit-learn's); only
  ``||c||^2`` is summed in another order (the dense engine's ``row_squared_norms``), which
  can decide an exact tie otherwise.
- M-step (``accumulate_csc``): from X's transpose, made once per run (``X.tocsc()``), one
  thread per feature walks its column's entries in row order and adds each to its
  sample's cluster: every address has one writer, no floating-point atomics, and a summing
  order fixed by the data. The cluster weights are summed by ranges of samples, then the
  ranges in order (``cluster_weight_partials`` + ``sum_partials``).

Why a kernel and not cuSPARSE's SpMM (``X @ centers.T``) plus the argmin epilogue: the
SpMM writes and reads back an ``(n_samples, n_clusters)`` product that the fused kernel
never stores, and cuSPARSE's summation order is its own (no scikit-learn labels). NOT YET
MEASURED on a GPU: ``benchmarks/bench_gpu_sparse.py`` (step 5 of ``benchmarks/gpu_check.sh``)
times both, E-step and M-step, float32 and float64, k=20 and 256; the first session with
a GPU writes the rule down here from its results.

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np

from ._engine import Engine, by_dot_products
from ._gpu import REDUCE_THREADS, GpuKernels, _ceil_div, warp_per_row_launch
from ._kernels import DEFINES

CSR_WEIGHT_RANGE = DEFINES["CSR_WEIGHT_RANGE"]


def thread_per_row_launch(n_rows):
    """``(grid, block)`` of the thread-per-row kernels (rows, columns or ranges)."""
    return (max(1, _ceil_div(n_rows, REDUCE_THREADS)),), (REDUCE_THREADS,)


def n_weight_ranges(n_samples):
    """Ranges of ``CSR_WEIGHT_RANGE`` samples whose cluster weights are summed apart."""
    return max(1, _ceil_div(n_samples, CSR_WEIGHT_RANGE))


class Csr:
    """A CSR matrix's arrays as the kernels read them: values in X's dtype, int32 column
    ids (or row ids, for a transpose), int64 row pointers (nnz may pass 2^31)."""

    def __init__(self, matrix, xp):
        self.data = xp.ascontiguousarray(matrix.data)
        self.indices = xp.ascontiguousarray(matrix.indices, dtype=xp.int32)
        self.indptr = xp.ascontiguousarray(matrix.indptr, dtype=xp.int64)
        self.shape = matrix.shape
        self.dtype = self.data.dtype


class SparseGpuKernels(GpuKernels):
    """The CSR launchers and engine functions (the dense ones reused: centers' norms,
    fixed-order reductions)."""

    # -- launchers -------------------------------------------------------------------

    def assign_labels_csr(self, X, centers_t, centers_squared_norms, labels):
        """Launch ``assign_labels_csr<T>`` (OUT ``labels``)."""
        n_samples = X.shape[0]
        grid, block = warp_per_row_launch(n_samples)
        self._launch(grid, block, "assign_labels_csr", X.dtype,
                     args=(X.data, X.indices, X.indptr, centers_t, centers_squared_norms,
                           np.int64(n_samples), np.int64(centers_t.shape[1]), labels))

    def squared_distances_csr(self, X, x_squared_norms, centers_t, centers_squared_norms, out):
        """Launch ``squared_distances_csr<T>`` (OUT ``out``, ``(n_centers, n_samples)``)."""
        n_samples = X.shape[0]
        grid, block = warp_per_row_launch(n_samples)
        self._launch(grid, block, "squared_distances_csr", X.dtype,
                     args=(X.data, X.indices, X.indptr, x_squared_norms, centers_t,
                           centers_squared_norms, np.int64(n_samples),
                           np.int64(centers_t.shape[1]), out))

    def assigned_distances_csr(self, X, centers, centers_squared_norms, labels, out):
        """Launch ``assigned_distances_csr<T>`` (OUT ``out``, float64 ``(n_samples,)``)."""
        n_samples, n_features = X.shape
        grid, block = thread_per_row_launch(n_samples)
        self._launch(grid, block, "assigned_distances_csr", X.dtype,
                     args=(X.data, X.indices, X.indptr, centers, centers_squared_norms, labels,
                           np.int64(n_samples), np.int64(n_features),
                           np.int64(centers.shape[0]), out))

    def row_squared_norms_csr(self, X, out):
        """Launch ``row_squared_norms_csr<T>`` (OUT ``out``, float64 ``(n_samples,)``)."""
        grid, block = thread_per_row_launch(X.shape[0])
        self._launch(grid, block, "row_squared_norms_csr", X.dtype,
                     args=(X.data, X.indptr, np.int64(X.shape[0]), out))

    def accumulate_csc(self, X_t, sample_weight, labels, sums):
        """Launch ``accumulate_csc<T>`` (INOUT ``sums``, float64 ``(n_clusters, n_features)``,
        zeroed). ``X_t`` is X's transpose as CSR (X in CSC)."""
        n_clusters, n_features = sums.shape
        grid, block = thread_per_row_launch(n_features)
        self._launch(grid, block, "accumulate_csc", X_t.dtype,
                     args=(X_t.data, X_t.indices, X_t.indptr, sample_weight, labels,
                           np.int64(n_features), np.int64(n_clusters), sums))

    def cluster_weight_partials(self, sample_weight, labels, partials):
        """Launch ``cluster_weight_partials<T>`` (INOUT ``partials``, float64
        ``(n_clusters, n_ranges)``, zeroed)."""
        n_clusters, n_ranges = partials.shape
        grid, block = thread_per_row_launch(n_ranges)
        self._launch(grid, block, "cluster_weight_partials", sample_weight.dtype,
                     args=(sample_weight, labels, np.int64(labels.shape[0]), np.int64(n_ranges),
                           np.int64(n_clusters), partials))

    # -- engine functions ------------------------------------------------------------

    def csr(self, X):
        return Csr(X, self.xp)

    def transpose(self, X):
        """X's transpose as the M-step reads it: CSC, row ids ascending in each column."""
        return Csr(X.tocsc(), self.xp)

    def centers_norms(self, centers):
        out = self.xp.empty(centers.shape[0], dtype=self.xp.float64)
        self.row_squared_norms(centers, out)
        return out

    def e_step_sparse(self, X, centers, labels, unit_centers=False):
        """Engine ``assign_labels``; ``||c||^2`` exactly 1 for ``unit_centers`` (cosine
        fits; see :meth:`GpuKernels.assign_labels_gemm`)."""
        X = X if isinstance(X, Csr) else self.csr(X)
        centers_t = self.xp.ascontiguousarray(centers.T)  # (n_features, n_clusters)
        squared_norms = (self.xp.ones(centers.shape[0], dtype=self.xp.float64) if unit_centers
                         else self.centers_norms(centers))
        self.assign_labels_csr(X, centers_t, squared_norms, labels)

    def accumulate_sparse(self, X_t, sample_weight, labels, n_clusters):
        """``(sums, weight_in_clusters)`` in float64, in a fixed order, from X's transpose."""
        xp = self.xp
        sums = xp.zeros((n_clusters, X_t.shape[1]), dtype=xp.float64)
        self.accumulate_csc(X_t, sample_weight, labels, sums)
        partials = xp.zeros((n_clusters, n_weight_ranges(labels.shape[0])), dtype=xp.float64)
        self.cluster_weight_partials(sample_weight, labels, partials)
        weight_in_clusters = xp.empty(n_clusters, dtype=xp.float64)
        self.sum_partials(partials, weight_in_clusters)
        return sums, weight_in_clusters

    def lloyd_iter_sparse(self, X, sample_weight, centers_old, labels, unit_centers=False):
        """Engine ``lloyd_iter`` (transposes X at every call: a run does it once)."""
        return SparseRun(self, X, sample_weight, unit_centers).step(centers_old, labels)

    def start_lloyd_sparse(self, X, x_squared_norms, sample_weight, n_clusters,
                           unit_centers=False):
        """Engine ``start_lloyd``: the run keeps X's arrays and its transpose."""
        return SparseRun(self, X, sample_weight, unit_centers)

    def assigned_distances_sparse(self, X, centers, labels):
        """Engine ``assigned_distances``."""
        X = X if isinstance(X, Csr) else self.csr(X)
        out = self.xp.empty(X.shape[0], dtype=self.xp.float64)
        self.assigned_distances_csr(X, centers, self.centers_norms(centers), labels, out)
        return out

    def inertia_sparse(self, X, sample_weight, centers, labels):
        """Engine ``inertia``: a float64 0-d array, summed in a fixed order."""
        weighted = self.assigned_distances_sparse(X, centers, labels) * sample_weight
        out = self.xp.empty(1, dtype=self.xp.float64)
        self.sum_partials(weighted.reshape(1, -1), out)
        return out.reshape(())

    def row_norms_sparse(self, X):
        """Engine ``row_norms``."""
        X = X if isinstance(X, Csr) else self.csr(X)
        out = self.xp.empty(X.shape[0], dtype=self.xp.float64)
        self.row_squared_norms_csr(X, out)
        return out

    def centered_sparse(self, X, X_mean, x_squared_norms=None):
        """Engine ``centered``: sparse data are not centred (it would make them dense)."""
        return X, self.row_norms_sparse(X), False

    def squared_distances(self, X, x_squared_norms, centers, centers_squared_norms):
        """``(n_centers, n_samples)`` ``max(||x||^2 - 2 x.c + ||c||^2, 0)`` in X's dtype."""
        X = self.csr(X)
        out = self.xp.empty((centers.shape[0], X.shape[0]), dtype=X.dtype)
        self.squared_distances_csr(X, x_squared_norms, self.xp.ascontiguousarray(centers.T),
                                   centers_squared_norms, out)
        return out

    def transform_sparse(self, X, centers):
        """Engine ``pairwise_distances``: ``(n_samples, n_clusters)`` in X's dtype."""
        distances = self.squared_distances(X, self.row_norms_sparse(X), centers,
                                           self.centers_norms(centers))
        return self.xp.ascontiguousarray(self.xp.sqrt(distances).T)

    def kmeanspp_candidates_sparse(self, X, x_squared_norms, sample_weight, candidate_ids,
                                   closest_dist_sq):
        """Engine ``kmeanspp_candidates``: the norm expansion in float64 (a candidate's
        ``||c||^2`` is its sample's own norm), clipped, rounded, min-ed; fixed-order
        potentials."""
        xp = self.xp
        candidate_ids = xp.asarray(candidate_ids, dtype=xp.int64)
        distances = self.squared_distances(X, x_squared_norms, self.take_rows(X, candidate_ids),
                                           xp.ascontiguousarray(x_squared_norms[candidate_ids]))
        distance_to_candidates = xp.ascontiguousarray(
            xp.minimum(distances, closest_dist_sq[None, :]))
        return distance_to_candidates, self.potentials(distance_to_candidates, sample_weight)

    def take_rows(self, X, indices):
        """Engine ``take_rows``: dense rows, C-contiguous."""
        return self.xp.ascontiguousarray(X[indices].toarray())

    def sparse_engine(self, unit_centers=False):
        """This backend's :class:`~gpukmeans._engine.Engine` for CSR data; ``unit_centers``:
        see :meth:`e_step_sparse`."""
        return Engine(
            name="gpu",
            xp=self.xp,
            lloyd_iter=by_dot_products(self.lloyd_iter_sparse, unit_centers),
            start_lloyd=by_dot_products(self.start_lloyd_sparse, unit_centers),
            assign_labels=by_dot_products(self.e_step_sparse, unit_centers),
            assigned_distances=self.assigned_distances_sparse,
            inertia=self.inertia_sparse,
            pairwise_distances=self.transform_sparse,
            row_norms=self.row_norms_sparse,
            centered=self.centered_sparse,
            kmeanspp_candidates=self.kmeanspp_candidates_sparse,
            take_rows=self.take_rows,
        )


class SparseRun:
    """One run's passes over a CSR matrix: its kernel arrays and its transpose, made once."""

    def __init__(self, kernels, X, sample_weight, unit_centers=False):
        self.kernels = kernels
        self.X = kernels.csr(X)
        self.X_t = kernels.transpose(X)
        self.sample_weight = sample_weight
        self.unit_centers = unit_centers

    def step(self, centers_old, labels):
        self.kernels.e_step_sparse(self.X, centers_old, labels, self.unit_centers)
        return self.kernels.accumulate_sparse(self.X_t, self.sample_weight, labels,
                                              centers_old.shape[0])

    def finish(self, centers, labels, assign_labels):
        if assign_labels:
            self.kernels.e_step_sparse(self.X, centers, labels, self.unit_centers)
        return self.kernels.inertia_sparse(self.X, self.sample_weight, centers, labels)


def make_engine(backend, unit_centers=False):
    """The GPU :class:`~gpukmeans._engine.Engine` for CSR data on ``backend``."""
    return SparseGpuKernels(backend).sparse_engine(unit_centers)
