// sparse.cu: k-means on a CSR matrix X (data, indices, indptr) against dense centers.
//
// assign_labels_csr<T>     labels[i] = argmin_j ||c_j||^2 - 2 x_i.c_j (lowest j on ties), the
//                          dot over x_i's stored entries in stored order, in float64 with no
//                          FMA contraction (__dmul_rn, __dadd_rn): for float64 data every
//                          product and sum is scikit-learn's _update_chunk_sparse's (and the
//                          CPU engine's); float32 products are exact in float64.
// squared_distances_csr<T> out[j, i] = max(||x_i||^2 - 2 x_i.c_j + ||c_j||^2, 0) in float64,
//                          rounded to T: transform and the k-means++ candidates.
// assigned_distances_csr<T> out[i] = ||x_i - c_{labels[i]}||^2 in float64 as scikit-learn's
//                          _euclidean_sparse_dense: sum over stored (x - c)^2 - c^2, in stored
//                          order, then + ||c||^2, clipped at 0; NaN for a label out of range.
// row_squared_norms_csr<T> out[i] = ||x_i||^2, the stored values squared and added in order.
// accumulate_csc<T>        sums[c, f] = sum_{i : labels[i] = c} w_i X[i, f] (float64), from the
//                          transpose of X (CSC: X's columns as rows, row ids ascending), each
//                          column's entries added in row order by the one thread that owns the
//                          column: no two threads write one address, no atomics, and the order
//                          of every sum is fixed by the data.
// cluster_weight_partials<T> partials[c, r] = sum of w_i over the samples of range r (of
//                          CSR_WEIGHT_RANGE consecutive samples) labelled c, in sample order;
//                          sum_partials (reduce.cu) then adds each cluster's ranges in order.
//
// Labels are read, never trusted: a label outside [0, n_clusters) adds to no sum.
//
// Launch shapes:
//   assign_labels_csr, squared_distances_csr: one warp per row; block = 32 * WARPS_PER_BLOCK,
//     grid = ceil(n_samples / WARPS_PER_BLOCK). Lane l owns centers l, l + 32, ... in passes of
//     32 * CSR_CENTERS_PER_LANE; every lane walks the row's entries (the same address: one
//     broadcast load) and reads centers_t[col, j] for its centers: 32 consecutive values,
//     one coalesced load. centers_t is the centers transposed, (n_features, n_clusters).
//   assigned_distances_csr, row_squared_norms_csr, cluster_weight_partials, accumulate_csc:
//     one thread per row (per range, per column); block = REDUCE_THREADS,
//     grid = ceil(rows / REDUCE_THREADS).
// Arguments: data (nnz,) T; indices (nnz,) int32 column ids; indptr (n_rows + 1,) int64
// (nnz may pass 2^31); centers (n_clusters, n_features) T; norms float64; labels int32.
#include "common.cuh"

#ifndef CSR_CENTERS_PER_LANE
#define CSR_CENTERS_PER_LANE 4
#endif
#ifndef CSR_WEIGHT_RANGE
#define CSR_WEIGHT_RANGE 256
#endif

// The largest finite double: scikit-learn's starting minimum (DBL_MAX), so that a row whose
// every value is +inf or NaN gets label 0, as there.
__device__ __forceinline__ double largest_double() { return __longlong_as_double(0x7fefffffffffffffLL); }

// dots[r] = x_row . centers_t[:, j0 + r * 32 + lane] for this lane's centers of the pass.
template <typename T>
__device__ __forceinline__ void row_dots_csr(
    const T* __restrict__ data, const int* __restrict__ indices, index_t start, index_t end,
    const T* __restrict__ centers_t, index_t n_clusters, index_t j0, int lane,
    double (&dots)[CSR_CENTERS_PER_LANE]) {
#pragma unroll
    for (int r = 0; r < CSR_CENTERS_PER_LANE; ++r) dots[r] = 0.0;
    for (index_t k = start; k < end; ++k) {
        const double value = (double)data[k];
        const T* center_column = centers_t + (index_t)indices[k] * n_clusters;
#pragma unroll
        for (int r = 0; r < CSR_CENTERS_PER_LANE; ++r) {
            const index_t j = j0 + r * WARP_SIZE + lane;
            if (j < n_clusters) {
                dots[r] = __dadd_rn(dots[r], __dmul_rn((double)center_column[j], value));
            }
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) assign_labels_csr(
    const T* __restrict__ data,                    // IN  (nnz,)
    const int* __restrict__ indices,               // IN  (nnz,)
    const index_t* __restrict__ indptr,            // IN  (n_samples + 1,)
    const T* __restrict__ centers_t,               // IN  (n_features, n_clusters)
    const double* __restrict__ centers_squared_norms,  // IN (n_clusters,)
    index_t n_samples, index_t n_clusters,
    int* __restrict__ labels) {                    // OUT (n_samples,)
    const int lane = threadIdx.x % WARP_SIZE;
    const index_t row = (index_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (row >= n_samples) return;  // whole warps leave together
    const index_t start = indptr[row], end = indptr[row + 1];
    double best = largest_double();
    int best_index = 0;
    for (index_t j0 = 0; j0 < n_clusters; j0 += WARP_SIZE * CSR_CENTERS_PER_LANE) {
        double dots[CSR_CENTERS_PER_LANE];
        row_dots_csr(data, indices, start, end, centers_t, n_clusters, j0, lane, dots);
#pragma unroll
        for (int r = 0; r < CSR_CENTERS_PER_LANE; ++r) {
            const index_t j = j0 + r * WARP_SIZE + lane;
            if (j < n_clusters) {
                // ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the argmin needs ||c||^2 - 2 x.c.
                const double value = __dsub_rn(centers_squared_norms[j], __dmul_rn(2.0, dots[r]));
                keep_closer(best, best_index, value, (int)j);
            }
        }
    }
    segment_argmin(best, best_index, WARP_SIZE);
    if (lane == 0) labels[row] = best_index;
}

template <typename T>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) squared_distances_csr(
    const T* __restrict__ data,                    // IN  (nnz,)
    const int* __restrict__ indices,               // IN  (nnz,)
    const index_t* __restrict__ indptr,            // IN  (n_samples + 1,)
    const double* __restrict__ x_squared_norms,    // IN  (n_samples,)
    const T* __restrict__ centers_t,               // IN  (n_features, n_centers)
    const double* __restrict__ centers_squared_norms,  // IN (n_centers,)
    index_t n_samples, index_t n_centers,
    T* __restrict__ out) {                         // OUT (n_centers, n_samples)
    const int lane = threadIdx.x % WARP_SIZE;
    const index_t row = (index_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (row >= n_samples) return;
    const index_t start = indptr[row], end = indptr[row + 1];
    for (index_t j0 = 0; j0 < n_centers; j0 += WARP_SIZE * CSR_CENTERS_PER_LANE) {
        double dots[CSR_CENTERS_PER_LANE];
        row_dots_csr(data, indices, start, end, centers_t, n_centers, j0, lane, dots);
#pragma unroll
        for (int r = 0; r < CSR_CENTERS_PER_LANE; ++r) {
            const index_t j = j0 + r * WARP_SIZE + lane;
            if (j < n_centers) {
                const double value = __dadd_rn(
                    __dsub_rn(x_squared_norms[row], __dmul_rn(2.0, dots[r])),
                    centers_squared_norms[j]);
                out[j * n_samples + row] = T(value > 0.0 ? value : 0.0);
            }
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS) assigned_distances_csr(
    const T* __restrict__ data,                    // IN  (nnz,)
    const int* __restrict__ indices,               // IN  (nnz,)
    const index_t* __restrict__ indptr,            // IN  (n_samples + 1,)
    const T* __restrict__ centers,                 // IN  (n_clusters, n_features)
    const double* __restrict__ centers_squared_norms,  // IN (n_clusters,)
    const int* __restrict__ labels,                // IN  (n_samples,)
    index_t n_samples, index_t n_features, index_t n_clusters,
    double* __restrict__ out) {                    // OUT (n_samples,)
    const index_t row = (index_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= n_samples) return;
    const int label = labels[row];
    if (label < 0 || label >= n_clusters) {
        out[row] = __longlong_as_double(0x7ff8000000000000LL);  // NaN
        return;
    }
    const T* center = centers + (index_t)label * n_features;
    double result = 0.0;
    for (index_t k = indptr[row]; k < indptr[row + 1]; ++k) {
        const double c = (double)center[indices[k]];
        const double diff = __dsub_rn((double)data[k], c);
        result = __dadd_rn(result, __dsub_rn(__dmul_rn(diff, diff), __dmul_rn(c, c)));
    }
    result = __dadd_rn(result, centers_squared_norms[label]);
    out[row] = result > 0.0 ? result : 0.0;
}

template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS) row_squared_norms_csr(
    const T* __restrict__ data,                    // IN  (nnz,)
    const index_t* __restrict__ indptr,            // IN  (n_samples + 1,)
    index_t n_samples,
    double* __restrict__ out) {                    // OUT (n_samples,)
    const index_t row = (index_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= n_samples) return;
    double total = 0.0;
    for (index_t k = indptr[row]; k < indptr[row + 1]; ++k) {
        const double value = (double)data[k];
        total = __dadd_rn(total, __dmul_rn(value, value));
    }
    out[row] = total;
}

template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS) accumulate_csc(
    const T* __restrict__ data_t,                  // IN  (nnz,) X's values, column by column
    const int* __restrict__ row_ids,               // IN  (nnz,) ascending within a column
    const index_t* __restrict__ column_ptr,        // IN  (n_features + 1,)
    const T* __restrict__ sample_weight,           // IN  (n_samples,)
    const int* __restrict__ labels,                // IN  (n_samples,)
    index_t n_features, index_t n_clusters,
    double* __restrict__ sums) {                   // INOUT (n_clusters, n_features), zeroed
    const index_t feature = (index_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (feature >= n_features) return;
    for (index_t p = column_ptr[feature]; p < column_ptr[feature + 1]; ++p) {
        const int i = row_ids[p];
        const int label = labels[i];
        if (label < 0 || label >= n_clusters) continue;
        double* sum = sums + (index_t)label * n_features + feature;
        *sum = __dadd_rn(*sum, __dmul_rn((double)sample_weight[i], (double)data_t[p]));
    }
}

template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS) cluster_weight_partials(
    const T* __restrict__ sample_weight,           // IN  (n_samples,)
    const int* __restrict__ labels,                // IN  (n_samples,)
    index_t n_samples, index_t n_ranges, index_t n_clusters,
    double* __restrict__ partials) {               // INOUT (n_clusters, n_ranges), zeroed
    const index_t range = (index_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (range >= n_ranges) return;
    const index_t end = min(range * CSR_WEIGHT_RANGE + CSR_WEIGHT_RANGE, n_samples);
    for (index_t i = range * CSR_WEIGHT_RANGE; i < end; ++i) {
        const int label = labels[i];
        if (label < 0 || label >= n_clusters) continue;
        partials[(index_t)label * n_ranges + range] += (double)sample_weight[i];
    }
}
