// reduce.cu: fixed-order float64 reductions: the inertia and weighted row sums.
//
// inertia_partials<T>    partials[b] = sum over rows of block b of
//                        sample_weight[i] * ||X[i] - centers[labels[i]]||^2, from the
//                        differences (not the norm expansion), in float64.
// assigned_distances<T>  out[i] = ||X[i] - centers[labels[i]]||^2 from the differences, float64.
// weighted_row_sums<T>   partials[r, b] = sum over columns of part b of values[r, j] * weights[j].
// sum_partials           out[r] = sum_b partials[r, b].
//
// Labels are read, never trusted: a sample whose label is outside [0, n_clusters) has no
// center, so its distance is NaN (and so is the inertia); centers are never read out of
// bounds.
//
// Launch shapes (block = REDUCE_THREADS = 256 threads for all three):
//   inertia_partials:  grid = ceil(n_samples / INERTIA_ROWS_PER_BLOCK). Warp w of block b owns
//                      rows b * INERTIA_ROWS_PER_BLOCK + w, + w + 8, ...; lanes stride features.
//   assigned_distances: block = 32 * WARPS_PER_BLOCK, grid = ceil(n_samples / WARPS_PER_BLOCK);
//                      warp w of block b owns sample b * WARPS_PER_BLOCK + w.
//   weighted_row_sums: grid = (ceil(n_cols / REDUCE_CHUNK), n_rows), REDUCE_CHUNK =
//                      REDUCE_THREADS * REDUCE_ITEMS; thread t adds columns t, t + 256, ... of
//                      its part, in order.
//   sum_partials:      grid = n_rows; thread t adds partials t, t + 256, ... in order.
// Each block ends with block_sum (common.cuh), a fixed butterfly: the order of every addition
// depends only on the shapes, so results are bitwise reproducible.
#include "common.cuh"

#ifndef INERTIA_ROWS_PER_BLOCK
#define INERTIA_ROWS_PER_BLOCK 64
#endif
#ifndef REDUCE_ITEMS
#define REDUCE_ITEMS 16
#endif

// This lane's part of ||X[row] - centers[labels[row]]||^2 (features lane, lane + 32, ...,
// added in order in float64); NaN for a label outside [0, n_clusters).
template <typename T>
__device__ __forceinline__ double distance_to_label(
    const T* __restrict__ X, const T* __restrict__ centers, const int* __restrict__ labels,
    index_t row, index_t n_features, index_t n_clusters, int lane) {
    const int label = labels[row];
    const bool valid = label >= 0 && label < n_clusters;
    const T* x = X + row * n_features;
    const T* c = centers + (valid ? (index_t)label : 0) * n_features;  // center 0 is in bounds
    double sq = 0.0;
    for (index_t f = lane; f < n_features; f += WARP_SIZE) {
        const double diff = (double)x[f] - (double)c[f];
        sq += diff * diff;
    }
    return valid ? sq : __longlong_as_double(0x7ff8000000000000LL);  // NaN
}

template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS) inertia_partials(
    const T* __restrict__ X,              // IN  (n_samples, n_features)
    const T* __restrict__ sample_weight,  // IN  (n_samples,)
    const T* __restrict__ centers,        // IN  (n_clusters, n_features)
    const int* __restrict__ labels,       // IN  (n_samples,)
    index_t n_samples, index_t n_features, index_t n_clusters,
    double* __restrict__ partials) {      // OUT (gridDim.x,)
    __shared__ double scratch[WARP_SIZE];
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const index_t row0 = (index_t)blockIdx.x * INERTIA_ROWS_PER_BLOCK;
    const index_t row_end = min(row0 + INERTIA_ROWS_PER_BLOCK, n_samples);
    double acc = 0.0;
#pragma unroll 1
    for (index_t row = row0 + warp; row < row_end; row += REDUCE_THREADS / WARP_SIZE) {
        const double sq = distance_to_label(X, centers, labels, row, n_features, n_clusters, lane);
        acc += (double)sample_weight[row] * sq;
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

template <typename T>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) assigned_distances(
    const T* __restrict__ X,         // IN  (n_samples, n_features)
    const T* __restrict__ centers,   // IN  (n_clusters, n_features)
    const int* __restrict__ labels,  // IN  (n_samples,)
    index_t n_samples, index_t n_features, index_t n_clusters,
    double* __restrict__ out) {      // OUT (n_samples,)
    const int lane = threadIdx.x % WARP_SIZE;
    const index_t row = (index_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (row >= n_samples) return;  // whole warps leave together
    const double sq = warp_sum(distance_to_label(X, centers, labels, row, n_features, n_clusters, lane));
    if (lane == 0) out[row] = sq;
}

template <typename T>
__global__ void __launch_bounds__(REDUCE_THREADS) weighted_row_sums(
    const T* __restrict__ values,   // IN  (n_rows, n_cols)
    const T* __restrict__ weights,  // IN  (n_cols,)
    index_t n_rows, index_t n_cols,
    double* __restrict__ partials) {  // OUT (n_rows, gridDim.x)
    __shared__ double scratch[WARP_SIZE];
    const index_t row = blockIdx.y;
    const index_t col0 = (index_t)blockIdx.x * (REDUCE_THREADS * REDUCE_ITEMS);
    const T* v = values + row * n_cols;
    double acc = 0.0;
#pragma unroll
    for (int s = 0; s < REDUCE_ITEMS; ++s) {
        const index_t j = col0 + threadIdx.x + (index_t)s * REDUCE_THREADS;
        if (j < n_cols) acc += (double)v[j] * (double)weights[j];
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[row * gridDim.x + blockIdx.x] = acc;
}

__global__ void __launch_bounds__(REDUCE_THREADS) sum_partials(
    const double* __restrict__ partials,  // IN  (n_rows, n_parts)
    index_t n_parts,
    double* __restrict__ out) {           // OUT (n_rows,)
    __shared__ double scratch[WARP_SIZE];
    const double* p = partials + (index_t)blockIdx.x * n_parts;
    double acc = 0.0;
    for (index_t j = threadIdx.x; j < n_parts; j += REDUCE_THREADS) acc += p[j];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = acc;
}
