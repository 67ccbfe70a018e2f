// kmeanspp.cu: the candidate step of greedy k-means++ (scikit-learn's _kmeans_plusplus).
//
// kmeanspp_distances<T>
//   distance_to_candidates[j, i] = min(closest_dist_sq[i], ||X[i] - X[candidate_ids[j]]||^2)
//   The squared distance is summed from the differences in float64 (scikit-learn upcasts
//   float32 here too), so it is >= 0 with no clipping needed, then rounded to T.
//   The potentials candidates_pot[j] = distance_to_candidates[j] @ sample_weight come after,
//   from weighted_row_sums + sum_partials (reduce.cu), in a fixed order.
//
// Launch: block = 32 * WARPS_PER_BLOCK threads, grid = ceil(n_samples / WARPS_PER_BLOCK).
// Warp w of block b owns sample i = b * WARPS_PER_BLOCK + w; lane l owns features l, l + 32, ...
// Candidates go KMEANSPP_CANDIDATES_PER_PASS at a time, each with its own float64 register
// accumulator; the candidate rows are few and shared by every warp, so they stay in cache.
// Each (sample, candidate) sum ends with a fixed butterfly over the warp.
#include "common.cuh"

#ifndef KMEANSPP_CANDIDATES_PER_PASS
#define KMEANSPP_CANDIDATES_PER_PASS 8
#endif

template <typename T>
__global__ void __launch_bounds__(WARPS_PER_BLOCK * WARP_SIZE) kmeanspp_distances(
    const T* __restrict__ X,                  // IN  (n_samples, n_features)
    const index_t* __restrict__ candidate_ids,  // IN  (n_candidates,)
    const T* __restrict__ closest_dist_sq,    // IN  (n_samples,)
    index_t n_samples, index_t n_features, index_t n_candidates,
    T* __restrict__ distance_to_candidates) {  // OUT (n_candidates, n_samples)
    const int lane = threadIdx.x % WARP_SIZE;
    const index_t sample = (index_t)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP_SIZE;
    if (sample >= n_samples) return;  // whole warps leave together
    const T* x = X + sample * n_features;
    const double closest = (double)closest_dist_sq[sample];

    for (index_t j0 = 0; j0 < n_candidates; j0 += KMEANSPP_CANDIDATES_PER_PASS) {
        const T* candidate[KMEANSPP_CANDIDATES_PER_PASS];
        double sq[KMEANSPP_CANDIDATES_PER_PASS];
#pragma unroll
        for (int j = 0; j < KMEANSPP_CANDIDATES_PER_PASS; ++j) {
            // Past the last candidate, point at x itself: valid memory, result discarded.
            candidate[j] = (j0 + j < n_candidates) ? X + candidate_ids[j0 + j] * n_features : x;
            sq[j] = 0.0;
        }
        for (index_t f = lane; f < n_features; f += WARP_SIZE) {
            const double xf = (double)x[f];
#pragma unroll
            for (int j = 0; j < KMEANSPP_CANDIDATES_PER_PASS; ++j) {
                const double diff = xf - (double)candidate[j][f];
                sq[j] += diff * diff;
            }
        }
#pragma unroll
        for (int j = 0; j < KMEANSPP_CANDIDATES_PER_PASS; ++j) {
            const double s = warp_sum(sq[j]);
            if (lane == 0 && j0 + j < n_candidates) {
                distance_to_candidates[(j0 + j) * n_samples + sample] = T(s < closest ? s : closest);
            }
        }
    }
}
