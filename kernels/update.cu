// update.cu: the M-step accumulation, deterministic without floating-point atomics.
//
//   sums[c]               = sum_{i : labels[i] = c} sample_weight[i] * X[i]   (float64)
//   weight_in_clusters[c] = sum_{i : labels[i] = c} sample_weight[i]          (float64)
//
// The summation order is fixed by the data alone: samples are ordered by label with a stable
// counting sort (ties keep sample order), each cluster's run of the ordered samples is cut into
// pieces of ACCUMULATE_PIECE_SAMPLES, each piece is summed sequentially, and each cluster adds
// its pieces in piece order. Counts are integers; nothing floating-point depends on timing.
// Float products w * x of float32 inputs are exact in float64.
//
// The pipeline (gpukmeans/_gpu.py runs it; R = n_ranges = ceil(n_samples / range_samples), where
// range_samples, a multiple of 32, is chosen by the launcher: 256 unless the counts matrix
// n_clusters x R would pass 2^20 entries, then doubled until it does not):
//   1. count_labels       counts[c, r] = #{i in range r : labels[i] = c}        (counts zeroed)
//   2. (cupy.cumsum)      cursor = exclusive prefix sum of counts, cluster-major: cursor[c, r]
//                         is where range r's members of cluster c start in sorted order
//   3. plan_pieces        bounds[c] = first sorted position of cluster c (bounds[n_clusters] =
//                         the number of samples counted), piece_counts[c] = ceil(cluster size
//                         / PIECE)
//   4. (cupy.cumsum)      piece_offsets = exclusive prefix sum of piece_counts (n_clusters + 1)
//   5. order_by_label     sorted_ids[cursor[c, r] + rank] = i; cursor advanced (INOUT)
//   6. accumulate_pieces  piece_sums[p, :], piece_weights[p] over the piece's samples, in order
//   7. accumulate_centers sums[c, :], weight_in_clusters[c] = pieces of c added in order
//
// Labels are read, never trusted: a label outside [0, n_clusters) is counted nowhere and
// sorted nowhere (its sample is left out of every sum), so no input can send a write out of
// bounds. The E-step never produces one.
//
// Launch shapes:
//   count_labels, order_by_label: one warp per range of range_samples consecutive
//     samples; block = 32 * WARPS_PER_BLOCK, grid = ceil(R / WARPS_PER_BLOCK). The warp walks its
//     range 32 samples at a time; lanes with equal labels find each other with __match_any_sync.
//   plan_pieces: one thread per cluster (and one for the end), block = REDUCE_THREADS,
//     grid = ceil((n_clusters + 1) / REDUCE_THREADS).
//   accumulate_pieces: grid = (max_pieces, ceil(n_features / blockDim.x)), where max_pieces =
//     n_samples // PIECE + min(n_clusters, n_samples) bounds the real count (blocks past it
//     return); block = feature threads (a multiple of 32, <= ACCUMULATE_THREADS); thread t owns
//     one feature of one piece.
//   accumulate_centers: grid = (n_clusters, ceil(n_features / blockDim.x)), same block.
#include "common.cuh"

#ifndef ACCUMULATE_PIECE_SAMPLES
#define ACCUMULATE_PIECE_SAMPLES 256
#endif
#ifndef ACCUMULATE_THREADS
#define ACCUMULATE_THREADS 128
#endif

// The label a sample is sorted under: its own, or -1 (sorted nowhere) when out of range.
__device__ __forceinline__ int checked_label(const int* __restrict__ labels, index_t i,
                                             bool active, index_t n_clusters) {
    const int label = active ? labels[i] : -1;
    return (label >= 0 && label < n_clusters) ? label : -1;
}

__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) count_labels(
    const int* __restrict__ labels,  // IN  (n_samples,)
    index_t n_samples, index_t range_samples, index_t n_ranges, index_t n_clusters,
    int* __restrict__ counts) {      // INOUT (n_clusters, n_ranges), zero on entry
    const int lane = threadIdx.x % WARP_SIZE;
    const index_t range = (index_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (range >= n_ranges) return;  // whole warps leave together
    const index_t begin = range * range_samples;
    const index_t end = min(begin + range_samples, n_samples);
    const unsigned lanes_below = (1u << lane) - 1u;
    for (index_t base = begin; base < end; base += WARP_SIZE) {
        const index_t i = base + lane;
        const bool active = i < end;
        const int label = checked_label(labels, i, active, n_clusters);  // idle lanes: -1
        const unsigned peers = __match_any_sync(FULL_MASK, label);
        // The lowest lane of each label adds the group's size: one writer per address per step.
        if (label >= 0 && (peers & lanes_below) == 0u) {
            counts[(index_t)label * n_ranges + range] += __popc(peers);
        }
        __syncwarp();  // the next step's writer may be another lane: order the updates
    }
}

__global__ void __launch_bounds__(REDUCE_THREADS) plan_pieces(
    const index_t* __restrict__ cursor,   // IN  (n_clusters, n_ranges) exclusive prefix sums
    const int* __restrict__ counts,       // IN  (n_clusters, n_ranges)
    index_t n_ranges, index_t n_clusters,
    index_t* __restrict__ bounds,         // OUT (n_clusters + 1,)
    index_t* __restrict__ piece_counts) { // OUT (n_clusters + 1,); the last is 0
    const index_t c = (index_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c > n_clusters) return;
    // Where the sorted samples end: every counted sample, not n_samples (labels out of range
    // are not counted).
    const index_t last = n_clusters * n_ranges - 1;
    const index_t n_sorted = cursor[last] + counts[last];
    const index_t start = c < n_clusters ? cursor[c * n_ranges] : n_sorted;
    bounds[c] = start;
    if (c < n_clusters) {
        const index_t end = c + 1 < n_clusters ? cursor[(c + 1) * n_ranges] : n_sorted;
        piece_counts[c] = (end - start + ACCUMULATE_PIECE_SAMPLES - 1) / ACCUMULATE_PIECE_SAMPLES;
    } else {
        piece_counts[c] = 0;
    }
}

__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) order_by_label(
    const int* __restrict__ labels,  // IN    (n_samples,)
    index_t n_samples, index_t range_samples, index_t n_ranges, index_t n_clusters,
    index_t* __restrict__ cursor,    // INOUT (n_clusters, n_ranges) next free sorted position
    index_t* __restrict__ sorted_ids) {  // OUT (n_samples,) sample ids, ordered by label
    const int lane = threadIdx.x % WARP_SIZE;
    const index_t range = (index_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (range >= n_ranges) return;
    const index_t begin = range * range_samples;
    const index_t end = min(begin + range_samples, n_samples);
    const unsigned lanes_below = (1u << lane) - 1u;
    for (index_t base = begin; base < end; base += WARP_SIZE) {
        const index_t i = base + lane;
        const bool active = i < end;
        const int label = checked_label(labels, i, active, n_clusters);
        const unsigned peers = __match_any_sync(FULL_MASK, label);
        const int rank = __popc(peers & lanes_below);  // earlier samples with this label
        index_t* slot = cursor + (index_t)label * n_ranges + range;
        if (label >= 0) sorted_ids[*slot + rank] = i;  // stable: sample order within a label
        __syncwarp();  // every peer has read *slot before it moves
        if (label >= 0 && rank == 0) *slot += __popc(peers);
        __syncwarp();
    }
}

// Sum one piece (at most ACCUMULATE_PIECE_SAMPLES consecutive sorted samples of one cluster)
// sequentially, in float64. Piece p belongs to the cluster c with
// piece_offsets[c] <= p < piece_offsets[c + 1] (binary search; empty clusters own no piece).
template <typename T>
__global__ void __launch_bounds__(ACCUMULATE_THREADS) accumulate_pieces(
    const T* __restrict__ X,                    // IN  (n_samples, n_features)
    const T* __restrict__ sample_weight,        // IN  (n_samples,)
    const index_t* __restrict__ sorted_ids,     // IN  (n_samples,)
    const index_t* __restrict__ bounds,         // IN  (n_clusters + 1,)
    const index_t* __restrict__ piece_offsets,  // IN  (n_clusters + 1,)
    index_t n_features, index_t n_clusters,
    double* __restrict__ piece_sums,            // OUT (max_pieces, n_features)
    double* __restrict__ piece_weights) {       // OUT (max_pieces,)
    const index_t piece = blockIdx.x;
    if (piece >= piece_offsets[n_clusters]) return;  // beyond the real piece count
    index_t lo = 0, hi = n_clusters;  // piece_offsets[lo] <= piece < piece_offsets[hi]
    while (hi - lo > 1) {
        const index_t mid = lo + (hi - lo) / 2;
        if (piece_offsets[mid] <= piece) lo = mid; else hi = mid;
    }
    const index_t cluster = lo;
    const index_t first = bounds[cluster] + (piece - piece_offsets[cluster]) * ACCUMULATE_PIECE_SAMPLES;
    const index_t last = min(first + ACCUMULATE_PIECE_SAMPLES, bounds[cluster + 1]);

    const index_t feature = (index_t)blockIdx.y * blockDim.x + threadIdx.x;
    if (feature < n_features) {
        double sum = 0.0;
#pragma unroll 4
        for (index_t p = first; p < last; ++p) {
            const index_t i = sorted_ids[p];
            sum += (double)sample_weight[i] * (double)X[i * n_features + feature];
        }
        piece_sums[piece * n_features + feature] = sum;
    }
    if (blockIdx.y == 0 && threadIdx.x == 0) {
        double weight = 0.0;
        for (index_t p = first; p < last; ++p) weight += (double)sample_weight[sorted_ids[p]];
        piece_weights[piece] = weight;
    }
}

// sums[c, f] = piece_sums[piece_offsets[c], f] + ... + piece_sums[piece_offsets[c + 1] - 1, f],
// left to right. An empty cluster gets exact zeros.
__global__ void __launch_bounds__(ACCUMULATE_THREADS) accumulate_centers(
    const double* __restrict__ piece_sums,      // IN  (max_pieces, n_features)
    const double* __restrict__ piece_weights,   // IN  (max_pieces,)
    const index_t* __restrict__ piece_offsets,  // IN  (n_clusters + 1,)
    index_t n_features,
    double* __restrict__ sums,                  // OUT (n_clusters, n_features)
    double* __restrict__ weight_in_clusters) {  // OUT (n_clusters,)
    const index_t cluster = blockIdx.x;
    const index_t p0 = piece_offsets[cluster];
    const index_t p1 = piece_offsets[cluster + 1];
    const index_t feature = (index_t)blockIdx.y * blockDim.x + threadIdx.x;
    if (feature < n_features) {
        double sum = 0.0;
        for (index_t p = p0; p < p1; ++p) sum += piece_sums[p * n_features + feature];
        sums[cluster * n_features + feature] = sum;
    }
    if (blockIdx.y == 0 && threadIdx.x == 0) {
        double weight = 0.0;
        for (index_t p = p0; p < p1; ++p) weight += piece_weights[p];
        weight_in_clusters[cluster] = weight;
    }
}
