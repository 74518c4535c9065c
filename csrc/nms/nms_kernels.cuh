// The CUDA kernels of greedy NMS (device code only; the host wrapper, which sorts, allocates,
// launches these and reads the result count back, is in nms_cuda.cu, where the three steps are
// described). Kept apart so that the tests can run the very same kernels on the CPU under a
// host emulation of CUDA's execution model (tests/ops/cuda_emulation/), with no ATen.
//
// Before including this file outside nvcc, define the CUDA built-ins it uses (__global__,
// __device__, __forceinline__, __launch_bounds__, __shared__, FRCNN_DYNAMIC_SHARED, blockIdx,
// blockDim, threadIdx, gridDim, __syncthreads, __shfl_sync, __shfl_up_sync, __ffsll, __popcll,
// atomicOr, __dadd_rn, __dsub_rn, __dmul_rn, __ddiv_rn, min, max).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

// `extern __shared__ T name[]`: the block's dynamic shared memory, as an array of T
#ifndef FRCNN_DYNAMIC_SHARED
#define FRCNN_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace frcnn {
namespace nms_kernels {

using u64 = unsigned long long;
constexpr int kTile = 64;             // boxes per tile = bits per mask word
constexpr int kReduceThreads = 1024;  // threads of the single reduce block (a template argument
                                      // of reduce_kernel, so that the emulation tests can run
                                      // it with fewer and reach its many-words-per-thread paths)
constexpr unsigned kFullWarp = 0xffffffffu;

struct SortedBox {
  double x1, y1, x2, y2, area;
};

__device__ __forceinline__ bool finite_value(double v) { return v - v == 0.0; }

// 1. sorted position k <- box order[k]; info[1] = 1 when a coordinate or score is not finite.
template <typename T>
__global__ void gather_kernel(const T* __restrict__ boxes, const T* __restrict__ scores,
                              const int64_t* __restrict__ order, int64_t n,
                              SortedBox* __restrict__ out, int64_t* __restrict__ info) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = order[k];
    SortedBox b;
    b.x1 = static_cast<double>(boxes[4 * i + 0]);
    b.y1 = static_cast<double>(boxes[4 * i + 1]);
    b.x2 = static_cast<double>(boxes[4 * i + 2]);
    b.y2 = static_cast<double>(boxes[4 * i + 3]);
    b.area = __dmul_rn(__dadd_rn(__dsub_rn(b.x2, b.x1), 1.0), __dadd_rn(__dsub_rn(b.y2, b.y1), 1.0));
    const double s = static_cast<double>(scores[i]);
    if (!(finite_value(b.x1) && finite_value(b.y1) && finite_value(b.x2) && finite_value(b.y2) &&
          finite_value(s))) {
      info[1] = 1;
    }
    out[k] = b;
  }
}

// nms_iou_above (csrc/nms/nms.h) with __d*_rn intrinsics (no FMA). When the boxes do not
// intersect, inter = 0 and the IoU 0 / union is +-0, or NaN when the union is 0 or NaN; that
// is decided without the division: above iff the union is a nonzero number and 0 > thr.
__device__ __forceinline__ bool iou_above(double ax1, double ay1, double ax2, double ay2,
                                          double aa, const SortedBox& b, double thr) {
  const double xx1 = ax1 > b.x1 ? ax1 : b.x1;
  const double yy1 = ay1 > b.y1 ? ay1 : b.y1;
  const double xx2 = ax2 < b.x2 ? ax2 : b.x2;
  const double yy2 = ay2 < b.y2 ? ay2 : b.y2;
  const double dw = __dadd_rn(__dsub_rn(xx2, xx1), 1.0);
  const double dh = __dadd_rn(__dsub_rn(yy2, yy1), 1.0);
  const double w = dw > 0.0 ? dw : 0.0;
  const double h = dh > 0.0 ? dh : 0.0;
  const double inter = __dmul_rn(w, h);
  const double uni = __dsub_rn(__dadd_rn(aa, b.area), inter);
  if (inter == 0.0) return uni == uni && uni != 0.0 && 0.0 > thr;
  return __ddiv_rn(inter, uni) > thr;
}

// 2. One 64 x 64 tile of the suppression relation; only tiles with row <= col do work.
__global__ void __launch_bounds__(kTile)
    mask_kernel(const SortedBox* __restrict__ boxes, int64_t n, int64_t col_blocks, double thr,
                u64* __restrict__ mask) {
  const int64_t row = blockIdx.y;
  const int64_t col = blockIdx.x;
  if (col < row) return;
  const int row_size = static_cast<int>(min(n - row * kTile, static_cast<int64_t>(kTile)));
  const int col_size = static_cast<int>(min(n - col * kTile, static_cast<int64_t>(kTile)));
  __shared__ SortedBox tile[kTile];
  const int t = threadIdx.x;
  if (t < col_size) tile[t] = boxes[col * kTile + t];
  __syncthreads();
  if (t >= row_size) return;
  const int64_t i = row * kTile + t;
  const SortedBox a = boxes[i];
  u64 bits = 0;
  for (int j = (row == col) ? t + 1 : 0; j < col_size; ++j) {
    if (iou_above(a.x1, a.y1, a.x2, a.y2, a.area, tile[j], thr)) bits |= 1ULL << j;
  }
  mask[i * col_blocks + col] = bits;
}

// 3. Greedy resolution and compaction in one thread block. `removed` (col_blocks words) is in
// dynamic shared memory, or in global memory (removed_global) when it does not fit.
template <int Threads>
__global__ void __launch_bounds__(Threads)
    reduce_kernel(const u64* __restrict__ mask, const int64_t* __restrict__ order, int64_t n,
                  int64_t col_blocks, u64* removed_global, u64* __restrict__ kept_words,
                  int64_t* __restrict__ keep, int64_t* __restrict__ info) {
  FRCNN_DYNAMIC_SHARED(u64, removed_shared);
  u64* removed = removed_global != nullptr ? removed_global : removed_shared;
  __shared__ int kept_list[kTile];  // bit positions of the kept boxes of the current block
  __shared__ int kept_count;
  __shared__ int64_t warp_sums[Threads / 32];
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  for (int64_t j = tid; j < col_blocks; j += blockDim.x) removed[j] = 0;

  // warp 0 keeps the diagonal words of the current block (rows 64b + lane and 64b + 32 + lane)
  // and prefetches those of the next block while it works
  u64 diag_lo = 0, diag_hi = 0, next_lo = 0, next_hi = 0;
  if (warp == 0) {
    const int64_t r0 = lane, r1 = lane + 32;
    next_lo = r0 < n ? mask[r0 * col_blocks] : 0;
    next_hi = r1 < n ? mask[r1 * col_blocks] : 0;
  }
  __syncthreads();

  for (int64_t b = 0; b < col_blocks; ++b) {
    if (warp == 0) {
      diag_lo = next_lo;
      diag_hi = next_hi;
      if (b + 1 < col_blocks) {
        const int64_t r0 = (b + 1) * kTile + lane, r1 = r0 + 32;
        next_lo = r0 < n ? mask[r0 * col_blocks + b + 1] : 0;
        next_hi = r1 < n ? mask[r1 * col_blocks + b + 1] : 0;
      }
      const int64_t valid = min(n - b * kTile, static_cast<int64_t>(kTile));
      const u64 valid_bits = valid == kTile ? ~0ULL : ((1ULL << valid) - 1);
      u64 candidates = ~removed[b] & valid_bits;
      u64 kept = 0;
      while (candidates != 0) {  // uniform across the warp
        const int i = __ffsll(static_cast<long long>(candidates)) - 1;
        kept |= 1ULL << i;
        const u64 row_word = __shfl_sync(kFullWarp, i < 32 ? diag_lo : diag_hi, i & 31);
        candidates &= ~row_word;  // diagonal words only hold bits above their own box
        candidates &= ~(1ULL << i);
      }
      const u64 lo_mask = (1ULL << lane) - 1;
      if ((kept >> lane) & 1ULL) kept_list[__popcll(kept & lo_mask)] = lane;
      if ((kept >> (lane + 32)) & 1ULL) {
        kept_list[__popcll(kept & ((lo_mask << 32) | 0xffffffffULL))] = lane + 32;
      }
      if (lane == 0) {
        kept_count = __popcll(kept);
        kept_words[b] = kept;
      }
    }
    __syncthreads();
    // OR the rows of the kept boxes into the later words: thread (g, j) ORs kept boxes
    // g, g + G, g + 2G, ... at word j; several loads in flight before their use.
    const int nk = kept_count;
    const int64_t width = col_blocks - b - 1;
    if (width > 0 && nk > 0) {
      const int64_t groups = max(static_cast<int64_t>(1),
                                 min(static_cast<int64_t>(nk), blockDim.x / width));
      const u64* base = mask + b * kTile * col_blocks;
      for (int64_t t = tid; t < groups * width; t += blockDim.x) {
        const int g = static_cast<int>(t / width);
        const int64_t j = b + 1 + t % width;
        u64 acc = 0;
        int s = g;
        const int step = static_cast<int>(groups);
        for (; s + 3 * step < nk; s += 4 * step) {
          const u64 v0 = base[kept_list[s] * col_blocks + j];
          const u64 v1 = base[kept_list[s + step] * col_blocks + j];
          const u64 v2 = base[kept_list[s + 2 * step] * col_blocks + j];
          const u64 v3 = base[kept_list[s + 3 * step] * col_blocks + j];
          acc |= v0 | v1 | v2 | v3;
        }
        for (; s < nk; s += step) acc |= base[kept_list[s] * col_blocks + j];
        if (acc != 0) atomicOr(&removed[j], acc);
      }
    }
    __syncthreads();
  }

  // compaction: each thread owns a contiguous run of words; block-wide exclusive prefix sum of
  // their kept counts gives where its indices go
  const int64_t per_thread = (col_blocks + blockDim.x - 1) / blockDim.x;
  const int64_t w_begin = min(static_cast<int64_t>(tid) * per_thread, col_blocks);
  const int64_t w_end = min(w_begin + per_thread, col_blocks);
  int64_t local = 0;
  for (int64_t j = w_begin; j < w_end; ++j) local += __popcll(kept_words[j]);
  int64_t inclusive = local;
  for (int off = 1; off < 32; off <<= 1) {
    const int64_t y = __shfl_up_sync(kFullWarp, inclusive, off);
    if (lane >= off) inclusive += y;
  }
  if (lane == 31) warp_sums[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    const int nwarps = blockDim.x / 32;
    int64_t v = lane < nwarps ? warp_sums[lane] : 0;
    for (int off = 1; off < 32; off <<= 1) {
      const int64_t y = __shfl_up_sync(kFullWarp, v, off);
      if (lane >= off) v += y;
    }
    if (lane < nwarps) warp_sums[lane] = v;
  }
  __syncthreads();
  int64_t pos = inclusive - local + (warp > 0 ? warp_sums[warp - 1] : 0);
  for (int64_t j = w_begin; j < w_end; ++j) {
    u64 word = kept_words[j];
    while (word != 0) {
      const int bit = __ffsll(static_cast<long long>(word)) - 1;
      word &= word - 1;
      keep[pos++] = order[j * kTile + bit];
    }
  }
  if (tid == 0) info[0] = warp_sums[blockDim.x / 32 - 1];
}

// Launch shapes, shared by the host wrapper and the emulation tests.
inline int gather_blocks(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096));
}
// Whether the reduce kernel's `removed` bit vector (col_blocks words) goes in dynamic shared
// memory: its static shared use stays under 48 KB with up to 40 KB of it.
inline bool removed_in_shared(int64_t col_blocks) {
  return static_cast<size_t>(col_blocks) * sizeof(u64) <= 40 * 1024;
}

}  // namespace nms_kernels
}  // namespace frcnn
