// assign.cu: the E-step (closest center per sample) and the distances for transform().
//
// assign_labels<T, TILE_CLUSTERS>  fused squared distance + argmin; the (n_samples,
//                        n_clusters) distance matrix is never written. TILE_CLUSTERS is
//                        16, 32 or 64 (centers per shared-memory tile).
// pairwise_distances<T>  euclidean distances (n_samples, n_clusters), for transform().
// row_squared_norms<T>   ||a_i||^2 for each row, in float64 (the engine's row_norms, and
//                        the centers' norms of the GEMM path).
// argmin_from_dots<T>    the GEMM path's epilogue: argmin over a row of x.c products
//                        computed by cuBLAS (cupy.matmul).
//
// Only the labels leave the E-step: the distance of a sample to its center, when wanted
// (relocation, inertia), is recomputed from the differences in float64 (reduce.cu).
//
// T is float or double. Indices are 64-bit (index_t) wherever a product of sizes appears.
//
// Tiled kernels (assign_labels, pairwise_distances)
// -------------------------------------------------
// Launch: block = ASSIGN_THREADS (256) threads, 1-D;
//         grid  = (ceil(n_samples / ASSIGN_TILE_SAMPLES), 1) for assign_labels,
//                 (ceil(n_samples / ASSIGN_TILE_SAMPLES), ceil(n_clusters / ASSIGN_TILE_CLUSTERS))
//                 for pairwise_distances.
// A block owns ASSIGN_TILE_SAMPLES (64) samples and walks the centers in tiles of
// TILE_CLUSTERS (assign_labels: all of them, TILE_CLUSTERS a template argument, 16, 32 or
// 64, the smallest that holds n_clusters, so that few products are wasted on the zero
// padding when k is small; pairwise_distances: the one tile of ASSIGN_TILE_CLUSTERS (64)
// that blockIdx.y names). Features stream through shared memory ASSIGN_TILE_FEATURES (16)
// at a time, as an SGEMM does: x_tile[feature][sample], center_tile[feature][cluster].
// Thread t is (ty, tx) = (t / 16, t % 16); it owns the 4 x (TILE_CLUSTERS / 16) register
// micro-tile of samples ty + 16 i and centers tx + 16 j. Strided, not contiguous, ownership
// keeps shared-memory reads conflict-free and visits each thread's centers in increasing
// order, so a strict `<` keeps the lowest index on ties.
// After the last tile the 16 threads sharing a sample (one half-warp) combine their
// (distance, index) pairs by a lexicographic butterfly: ties go to the lowest index.
//
// Warp-per-row kernels (row_squared_norms, argmin_from_dots)
// ----------------------------------------------------------
// Launch: block = 32 * WARPS_PER_BLOCK threads; grid = ceil(n_rows / WARPS_PER_BLOCK).
// Warp w of block b owns row b * WARPS_PER_BLOCK + w; lanes stride over its columns.
#include "common.cuh"

#ifndef ASSIGN_TILE_SAMPLES
#define ASSIGN_TILE_SAMPLES 64
#endif
#ifndef ASSIGN_TILE_CLUSTERS
#define ASSIGN_TILE_CLUSTERS 64
#endif
#ifndef ASSIGN_TILE_FEATURES
#define ASSIGN_TILE_FEATURES 16
#endif
#ifndef ASSIGN_THREADS
#define ASSIGN_THREADS 256
#endif
// Minimum resident blocks per SM promised to ptxas in __launch_bounds__, by element size.
// float: 0, no promise; ptxas then keeps assign_labels<float, *> at 48-80 registers with no
// spills (a promise of 1 to 3 made it use up to 104 registers, or spill at the cap).
// double: 2 (at most 128 registers); with no promise ptxas capped assign_labels<double, 32>
// at 64 registers on sm_90 and spilled. Checked by tests/test_kernels_compile.py.
#ifndef ASSIGN_MIN_BLOCKS_FLOAT
#define ASSIGN_MIN_BLOCKS_FLOAT 0
#endif
#ifndef ASSIGN_MIN_BLOCKS_DOUBLE
#define ASSIGN_MIN_BLOCKS_DOUBLE 2
#endif

// One half-warp shares a sample: the final argmin is a 16-lane butterfly.
#define ASSIGN_THREADS_CLUSTERS 16
#define ASSIGN_THREADS_SAMPLES (ASSIGN_THREADS / ASSIGN_THREADS_CLUSTERS)
#define THREAD_SAMPLES (ASSIGN_TILE_SAMPLES / ASSIGN_THREADS_SAMPLES)
// One padding column: the transposing store x_tile[f][r] spreads over more banks.
#define TILE_PAD 1

static_assert(ASSIGN_TILE_SAMPLES % ASSIGN_THREADS_SAMPLES == 0, "samples per thread");
static_assert((ASSIGN_TILE_FEATURES * ASSIGN_TILE_SAMPLES) % ASSIGN_THREADS == 0, "tile load");

// Copy rows [row0, row0 + ROWS) x features [feature0, feature0 + TILE_FEATURES) of the
// row-major (n_rows, n_features) array A into tile[feature][row], zeros outside A.
// Consecutive threads read consecutive features of one row (coalesced when n_features
// allows). Zero padding makes partial tiles need no special case in the products.
template <typename T, int ROWS>
__device__ __forceinline__ void load_tile(const T* __restrict__ A, index_t n_rows,
                                          index_t n_features, index_t row0, index_t feature0,
                                          T (*tile)[ROWS + TILE_PAD]) {
    static_assert((ASSIGN_TILE_FEATURES * ROWS) % ASSIGN_THREADS == 0, "whole loads per thread");
#pragma unroll
    for (int s = 0; s < (ASSIGN_TILE_FEATURES * ROWS) / ASSIGN_THREADS; ++s) {
        const int e = threadIdx.x + s * ASSIGN_THREADS;
        const int f = e % ASSIGN_TILE_FEATURES;
        const int r = e / ASSIGN_TILE_FEATURES;
        const index_t row = row0 + r;
        const index_t feature = feature0 + f;
        tile[f][r] = (row < n_rows && feature < n_features) ? A[row * n_features + feature] : T(0);
    }
}

// Accumulate, for this thread's micro-tile, either the dot products x.y (kDifferences false)
// or the squared differences sum (x - y)^2 (kDifferences true) between samples
// [sample0, sample0 + ASSIGN_TILE_SAMPLES) of X and rows [row_y0, row_y0 + TILE_CLUSTERS) of Y.
// With kNorms, also leave ||y||^2 of the tile's Y rows in y_sq_norms (shared; thread r <
// TILE_CLUSTERS adds row r's squares sequentially over features). Ends with a __syncthreads().
template <typename T, typename Acc, bool kDifferences, bool kNorms, int TILE_CLUSTERS>
__device__ __forceinline__ void tile_products(
    const T* __restrict__ X, const T* __restrict__ Y, index_t n_samples, index_t n_rows_y,
    index_t n_features, index_t sample0, index_t row_y0,
    T (*x_tile)[ASSIGN_TILE_SAMPLES + TILE_PAD], T (*y_tile)[TILE_CLUSTERS + TILE_PAD],
    Acc (&acc)[THREAD_SAMPLES][TILE_CLUSTERS / ASSIGN_THREADS_CLUSTERS], Acc* y_sq_norms) {
    constexpr int THREAD_CLUSTERS = TILE_CLUSTERS / ASSIGN_THREADS_CLUSTERS;
    static_assert(TILE_CLUSTERS % ASSIGN_THREADS_CLUSTERS == 0, "clusters per thread");
    static_assert(TILE_CLUSTERS <= ASSIGN_THREADS, "one thread per center norm");
    const int tx = threadIdx.x % ASSIGN_THREADS_CLUSTERS;
    const int ty = threadIdx.x / ASSIGN_THREADS_CLUSTERS;
#pragma unroll
    for (int i = 0; i < THREAD_SAMPLES; ++i)
#pragma unroll
        for (int j = 0; j < THREAD_CLUSTERS; ++j) acc[i][j] = Acc(0);
    Acc norm = Acc(0);

    for (index_t feature0 = 0; feature0 < n_features; feature0 += ASSIGN_TILE_FEATURES) {
        load_tile<T, ASSIGN_TILE_SAMPLES>(X, n_samples, n_features, sample0, feature0, x_tile);
        load_tile<T, TILE_CLUSTERS>(Y, n_rows_y, n_features, row_y0, feature0, y_tile);
        __syncthreads();
        if (kNorms && threadIdx.x < TILE_CLUSTERS) {
#pragma unroll
            for (int f = 0; f < ASSIGN_TILE_FEATURES; ++f) {
                const Acc v = y_tile[f][threadIdx.x];
                norm += v * v;
            }
        }
#pragma unroll
        for (int f = 0; f < ASSIGN_TILE_FEATURES; ++f) {
            Acc xs[THREAD_SAMPLES];
            Acc ys[THREAD_CLUSTERS];
#pragma unroll
            for (int i = 0; i < THREAD_SAMPLES; ++i) xs[i] = x_tile[f][ty + i * ASSIGN_THREADS_SAMPLES];
#pragma unroll
            for (int j = 0; j < THREAD_CLUSTERS; ++j) ys[j] = y_tile[f][tx + j * ASSIGN_THREADS_CLUSTERS];
#pragma unroll
            for (int i = 0; i < THREAD_SAMPLES; ++i)
#pragma unroll
                for (int j = 0; j < THREAD_CLUSTERS; ++j) {
                    if (kDifferences) {
                        const Acc diff = xs[i] - ys[j];
                        acc[i][j] += diff * diff;
                    } else {
                        acc[i][j] += xs[i] * ys[j];
                    }
                }
        }
        __syncthreads();  // the next tile load overwrites x_tile / y_tile
    }
    if (kNorms && threadIdx.x < TILE_CLUSTERS) y_sq_norms[threadIdx.x] = norm;
    __syncthreads();
}

// labels[i] = argmin_c ||x_i - c||^2, the lowest c on ties.
// ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; the argmin over c needs only ||c||^2 - 2 x.c,
// which a tile gets from its dot products and its centers' norms (summed by the block as the
// center tile streams through shared memory). Evaluated in T, as scikit-learn does.
template <typename T, int TILE_CLUSTERS>
__global__ void __launch_bounds__(ASSIGN_THREADS, sizeof(T) == 4 ? ASSIGN_MIN_BLOCKS_FLOAT : ASSIGN_MIN_BLOCKS_DOUBLE) assign_labels(
    const T* __restrict__ X,        // IN  (n_samples, n_features)
    const T* __restrict__ centers,  // IN  (n_clusters, n_features)
    index_t n_samples, index_t n_features, index_t n_clusters,
    int* __restrict__ labels) {     // OUT (n_samples,)
    __shared__ T x_tile[ASSIGN_TILE_FEATURES][ASSIGN_TILE_SAMPLES + TILE_PAD];
    __shared__ T center_tile[ASSIGN_TILE_FEATURES][TILE_CLUSTERS + TILE_PAD];
    __shared__ T center_sq_norms[TILE_CLUSTERS];
    constexpr int THREAD_CLUSTERS = TILE_CLUSTERS / ASSIGN_THREADS_CLUSTERS;
    const int tx = threadIdx.x % ASSIGN_THREADS_CLUSTERS;
    const int ty = threadIdx.x / ASSIGN_THREADS_CLUSTERS;
    const index_t sample0 = (index_t)blockIdx.x * ASSIGN_TILE_SAMPLES;

    // Start from center 0 at +inf: where every ||c||^2 - 2 x.c overflows to +inf (finite
    // data near the dtype's limit) or is NaN, the label is still a valid index, 0, as the
    // CPU engine gives; a label outside [0, n_clusters) would send the M-step astray.
    T best[THREAD_SAMPLES];
    int best_index[THREAD_SAMPLES];
#pragma unroll
    for (int i = 0; i < THREAD_SAMPLES; ++i) {
        best[i] = positive_infinity<T>();
        best_index[i] = 0;
    }

    for (index_t cluster0 = 0; cluster0 < n_clusters; cluster0 += TILE_CLUSTERS) {
        T dots[THREAD_SAMPLES][THREAD_CLUSTERS];  // x.c for this thread's micro-tile
        tile_products<T, T, false, true, TILE_CLUSTERS>(X, centers, n_samples, n_clusters, n_features,
                                         sample0, cluster0, x_tile, center_tile, dots,
                                         center_sq_norms);
#pragma unroll
        for (int j = 0; j < THREAD_CLUSTERS; ++j) {
            const int local = tx + j * ASSIGN_THREADS_CLUSTERS;
            const index_t cluster = cluster0 + local;
            if (cluster < n_clusters) {
                const T center_sq_norm = center_sq_norms[local];
#pragma unroll
                for (int i = 0; i < THREAD_SAMPLES; ++i) {
                    const T partial = center_sq_norm - T(2) * dots[i][j];  // ||c||^2 - 2 x.c
                    if (partial < best[i]) {  // clusters ascend: strict < keeps the lowest
                        best[i] = partial;
                        best_index[i] = (int)cluster;
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < THREAD_SAMPLES; ++i) {
        segment_argmin(best[i], best_index[i], ASSIGN_THREADS_CLUSTERS);
        const index_t sample = sample0 + ty + i * ASSIGN_THREADS_SAMPLES;
        if (tx == 0 && sample < n_samples) labels[sample] = best_index[i];
    }
}

// out[i, c] = ||x_i - c||, from the differences accumulated in double (no cancellation:
// transform() of a point on a center is exactly 0, as scikit-learn's float64 upcast gives).
template <typename T>
__global__ void __launch_bounds__(ASSIGN_THREADS) pairwise_distances(
    const T* __restrict__ X,        // IN  (n_samples, n_features)
    const T* __restrict__ centers,  // IN  (n_clusters, n_features)
    index_t n_samples, index_t n_features, index_t n_clusters,
    T* __restrict__ out) {          // OUT (n_samples, n_clusters)
    __shared__ T x_tile[ASSIGN_TILE_FEATURES][ASSIGN_TILE_SAMPLES + TILE_PAD];
    __shared__ T center_tile[ASSIGN_TILE_FEATURES][ASSIGN_TILE_CLUSTERS + TILE_PAD];
    const int tx = threadIdx.x % ASSIGN_THREADS_CLUSTERS;
    const int ty = threadIdx.x / ASSIGN_THREADS_CLUSTERS;
    const index_t sample0 = (index_t)blockIdx.x * ASSIGN_TILE_SAMPLES;
    const index_t cluster0 = (index_t)blockIdx.y * ASSIGN_TILE_CLUSTERS;

    constexpr int THREAD_CLUSTERS = ASSIGN_TILE_CLUSTERS / ASSIGN_THREADS_CLUSTERS;
    double sq[THREAD_SAMPLES][THREAD_CLUSTERS];  // sum (x - c)^2
    tile_products<T, double, true, false, ASSIGN_TILE_CLUSTERS>(
        X, centers, n_samples, n_clusters, n_features, sample0, cluster0, x_tile, center_tile,
        sq, nullptr);
#pragma unroll
    for (int i = 0; i < THREAD_SAMPLES; ++i) {
        const index_t sample = sample0 + ty + i * ASSIGN_THREADS_SAMPLES;
#pragma unroll
        for (int j = 0; j < THREAD_CLUSTERS; ++j) {
            const index_t cluster = cluster0 + tx + j * ASSIGN_THREADS_CLUSTERS;
            if (sample < n_samples && cluster < n_clusters) {
                out[sample * n_clusters + cluster] = T(sqrt(sq[i][j]));
            }
        }
    }
}

// out[r] = ||A[r]||^2 in float64: each lane adds features lane, lane + 32, ... in order,
// then a fixed butterfly.
template <typename T>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) row_squared_norms(
    const T* __restrict__ A,  // IN  (n_rows, n_features)
    index_t n_rows, index_t n_features,
    double* __restrict__ out) {  // OUT (n_rows,)
    const int lane = threadIdx.x % WARP_SIZE;
    const index_t row = (index_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (row >= n_rows) return;  // whole warps leave together
    const T* a = A + row * n_features;
    double sum = 0.0;
    for (index_t f = lane; f < n_features; f += WARP_SIZE) {
        const double v = a[f];
        sum += v * v;
    }
    sum = warp_sum(sum);
    if (lane == 0) out[row] = sum;
}

// The GEMM path's epilogue. dots = X @ centers.T came from cuBLAS; as in assign_labels,
// argmin_c ||x - c||^2 = argmin_c (||c||^2 - 2 x.c), evaluated in T (||c||^2 rounded to T).
// Lane l scans clusters l, l + 32, ... in increasing order (strict < keeps the lowest),
// then a lexicographic butterfly gives the warp's lowest-index minimum.
template <typename T>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) argmin_from_dots(
    const T* __restrict__ dots,                  // IN  (n_rows, n_clusters)
    const double* __restrict__ center_sq_norms,  // IN  (n_clusters,)
    index_t n_rows, index_t n_clusters,
    int* __restrict__ labels) {                  // OUT (n_rows,)
    const int lane = threadIdx.x % WARP_SIZE;
    const index_t row = (index_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (row >= n_rows) return;
    const T* d = dots + row * n_clusters;
    T best = positive_infinity<T>();
    int best_index = 0;  // a valid label even when every partial is +inf or NaN
    for (index_t c = lane; c < n_clusters; c += WARP_SIZE) {
        const T partial = T(center_sq_norms[c]) - T(2) * d[c];  // ||c||^2 - 2 x.c
        if (partial < best) {
            best = partial;
            best_index = (int)c;
        }
    }
    segment_argmin(best, best_index, WARP_SIZE);
    if (lane == 0) labels[row] = best_index;
}
