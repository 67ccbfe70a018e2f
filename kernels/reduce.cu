// reduce.cu: fixed-order float64 reductions: the inertia and weighted row sums.
//
// inertia_partials<T>    partials[b] = sum over rows of block b of
//                        sample_weight[i] * ||X[i] - centers[labels[i]]||^2, from the
//                        differences (not the norm expansion), in float64.
// assigned_distances<T>  out[i] = ||X[i] - centers[labels[i]]||^2 from the differences, float64,
//                        each row's squares summed in NumPy's pairwise order: bit for bit
//                        ((X - centers[labels])**2).sum(axis=1) for float64 X, the array that
//                        scikit-learn's empty-cluster relocation partitions (where samples tie,
//                        which one np.argpartition leaves last depends on every value's bits).
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
//   assigned_distances: block = 32 * WARPS_PER_BLOCK, grid = ceil(n_samples / (4 *
//                      WARPS_PER_BLOCK)); each segment of PAIRWISE_LANES = 8 lanes (4 per warp)
//                      owns a sample, lane l the running sum of features l, l + 8, ... (below).
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

// NumPy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src, pairwise_sum), which
// .sum(axis=1) of a C-ordered array makes of each row: under 8 values added in order onto 0;
// up to PAIRWISE_BLOCK values in 8 running sums r_l (values l, l + 8, ...) joined as
// ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the values past the last multiple of
// 8 added in order; above, split at n2 = n / 2 - (n / 2) % 8 and the halves' sums added. The
// 8 running sums are the 8 lanes of a segment, and the xor butterfly over offsets 1, 2, 4
// joins them in exactly that tree (addition commutes bitwise, so every lane ends with the
// same sum). No FMA contraction (__dmul_rn, __dadd_rn): NumPy squares and adds in separate
// roundings.
#define PAIRWISE_LANES 8
#define PAIRWISE_BLOCK 128
// Depth of NumPy's splits: every block summed whole holds at least 64 values, so 32 levels
// cover more than 2^37 features.
#define PAIRWISE_MAX_DEPTH 32

template <typename T>
__device__ __forceinline__ double squared_difference(const T* x, const T* c, index_t f) {
    const double diff = __dsub_rn((double)x[f], (double)c[f]);
    return __dmul_rn(diff, diff);
}

// NumPy's sum of (x[f] - c[f])^2 over count <= PAIRWISE_BLOCK features from start.
template <typename T>
__device__ __forceinline__ double pairwise_block(const T* x, const T* c, index_t start,
                                                 index_t count, int lane) {
    if (count < PAIRWISE_LANES) {
        double total = 0.0;
        for (index_t f = start; f < start + count; ++f) {
            total = __dadd_rn(total, squared_difference(x, c, f));
        }
        return total;
    }
    const index_t whole_end = start + count - count % PAIRWISE_LANES;
    double total = squared_difference(x, c, start + lane);
    for (index_t f = start + PAIRWISE_LANES + lane; f < whole_end; f += PAIRWISE_LANES) {
        total = __dadd_rn(total, squared_difference(x, c, f));
    }
#pragma unroll
    for (int offset = 1; offset < PAIRWISE_LANES; offset <<= 1) {
        total = __dadd_rn(total, __shfl_xor_sync(FULL_MASK, total, offset, PAIRWISE_LANES));
    }
    for (index_t f = whole_end; f < start + count; ++f) {
        total = __dadd_rn(total, squared_difference(x, c, f));
    }
    return total;
}

__device__ __forceinline__ index_t pairwise_first(index_t count) {
    return count / 2 - (count / 2) % PAIRWISE_LANES;
}

// The pairwise sum of (x[f] - c[f])^2 over f < count, in every lane of the segment; all 32
// lanes of the warp call it with the same count (the shuffles' full mask). NumPy's recursion
// is walked without recursion (which spills on every architecture): `path` holds, per depth,
// whether the node there is its parent's second half; a left half's sum waits in left_sums.
template <typename T>
__device__ double pairwise_squared_differences(const T* x, const T* c, index_t count, int lane) {
    if (count <= PAIRWISE_BLOCK) return pairwise_block(x, c, 0, count, lane);
    double left_sums[PAIRWISE_MAX_DEPTH];
    unsigned long long path = 0;
    int depth = 0;
    index_t start = 0, n = count;
    for (;;) {
        for (; n > PAIRWISE_BLOCK; ++depth) n = pairwise_first(n);  // the first halves down
        double total = pairwise_block(x, c, start, n, lane);
        while (depth > 0 && ((path >> (depth - 1)) & 1)) {  // a second half: join its sibling
            --depth;
            path &= ~(1ull << depth);
            total = __dadd_rn(left_sums[depth], total);
        }
        if (depth == 0) return total;
        left_sums[depth - 1] = total;  // a first half: its sibling next
        path |= 1ull << (depth - 1);
        index_t parent_start = 0, parent_n = count;
        for (int level = 0; level < depth - 1; ++level) {
            const index_t first = pairwise_first(parent_n);
            if ((path >> level) & 1) {
                parent_start += first;
                parent_n -= first;
            } else {
                parent_n = first;
            }
        }
        const index_t first = pairwise_first(parent_n);
        start = parent_start + first;
        n = parent_n - first;
    }
}

template <typename T>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) assigned_distances(
    const T* __restrict__ X,         // IN  (n_samples, n_features)
    const T* __restrict__ centers,   // IN  (n_clusters, n_features)
    const int* __restrict__ labels,  // IN  (n_samples,)
    index_t n_samples, index_t n_features, index_t n_clusters,
    double* __restrict__ out) {      // OUT (n_samples,)
    const int lane = threadIdx.x % PAIRWISE_LANES;
    const index_t row = ((index_t)blockIdx.x * blockDim.x + threadIdx.x) / PAIRWISE_LANES;
    // A segment past the last sample computes the last sample's sum and writes nothing: the
    // whole warp must reach the shuffles.
    const index_t source = row < n_samples ? row : n_samples - 1;
    const int label = labels[source];
    const bool valid = label >= 0 && label < n_clusters;
    const double sq = pairwise_squared_differences(
        X + source * n_features, centers + (valid ? (index_t)label : 0) * n_features, n_features,
        lane);
    if (row < n_samples && lane == 0) {
        out[row] = valid ? sq : __longlong_as_double(0x7ff8000000000000LL);  // NaN
    }
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
