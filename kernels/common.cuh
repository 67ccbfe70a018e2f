// common.cuh: types, tunables and fixed-order reductions shared by every kernel file.
//
// Nothing here launches anything. Every reduction below combines values in an order that
// depends only on the launch shape (never on timing), so the same input gives bitwise the
// same output on the same device.
#pragma once

// 64-bit indices: n_samples * n_features can pass 2^31. NVRTC has no <cstdint>.
typedef long long index_t;

#define WARP_SIZE 32
#define FULL_MASK 0xffffffffu

// Warps per block of the warp-per-row kernels (row norms, argmin epilogue, inertia,
// k-means++ distances, label sorting).
#ifndef WARPS_PER_BLOCK
#define WARPS_PER_BLOCK 8
#endif

// Threads per block of the flat fixed-order reductions (reduce.cu).
#ifndef REDUCE_THREADS
#define REDUCE_THREADS 256
#endif

// Sum over a warp by an xor butterfly: lane l adds lane l^16, then l^8, ... The pairing
// is fixed, so the result is the same on every run (and identical in every lane).
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int offset = WARP_SIZE / 2; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(FULL_MASK, v, offset);
    }
    return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024): warp butterflies,
// then warp 0 adds the per-warp sums by another butterfly. The result is valid in thread 0.
// `scratch` holds WARP_SIZE doubles of shared memory.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int n_warps = blockDim.x / WARP_SIZE;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = (lane < n_warps) ? scratch[lane] : 0.0;
        v = warp_sum(v);
    }
    return v;
}

// Lexicographic (distance, index) minimum: the lower index wins a tie in distance, so the
// argmin is the lowest index among equal distances whatever order candidates are compared in.
template <typename T>
__device__ __forceinline__ void keep_closer(T& best, int& best_index, T other, int other_index) {
    if (other < best || (other == best && other_index < best_index)) {
        best = other;
        best_index = other_index;
    }
}

// Argmin over the `width` lanes of a warp segment (width a power of two <= 32); every lane
// of the segment ends with the segment's (distance, lowest index).
template <typename T>
__device__ __forceinline__ void segment_argmin(T& best, int& best_index, int width) {
    for (int offset = width / 2; offset > 0; offset >>= 1) {
        T other = __shfl_xor_sync(FULL_MASK, best, offset, width);
        int other_index = __shfl_xor_sync(FULL_MASK, best_index, offset, width);
        keep_closer(best, best_index, other, other_index);
    }
}

template <typename T> __device__ __forceinline__ T positive_infinity();
template <> __device__ __forceinline__ float positive_infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double positive_infinity<double>() { return __longlong_as_double(0x7ff0000000000000LL); }

