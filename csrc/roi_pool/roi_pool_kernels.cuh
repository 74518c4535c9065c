// The CUDA kernels of RoI max pooling (device code only; the host wrappers, which check the
// inputs, launch these and read the flags back, are in roi_pool_cuda.cu). Kept apart so that the
// tests can run the very same kernels on the CPU under a host emulation of CUDA's execution
// model (tests/ops/cuda_emulation/), with no ATen. What each kernel does is described at the
// top of roi_pool_cuda.cu.
//
// Before including this file outside nvcc, define the CUDA built-ins it uses (__global__,
// __device__, __forceinline__, __launch_bounds__, blockIdx, blockDim, threadIdx, gridDim, __ldg,
// atomicMin, atomicAdd).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "roi_pool/roi_pool_bins.h"

namespace frcnn {
namespace roi_pool_kernels {

using u64 = unsigned long long;
constexpr int kThreads = 256;
constexpr int kNoProblem = std::numeric_limits<int>::max();

inline int grid_for(int64_t total) {
  return static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65536));
}

__device__ __forceinline__ int64_t first_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

inline bool fits_int32(int64_t v) { return v < std::numeric_limits<int32_t>::max(); }

template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ input, const T* __restrict__ rois, T scale,
                   int64_t total, index_t channels, index_t height, index_t width,
                   index_t pooled_h, index_t pooled_w, int64_t batch_size, T* __restrict__ output,
                   int32_t* __restrict__ argmax, int* __restrict__ bad_row) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const index_t idx = static_cast<index_t>(i);
    const index_t pw = idx % pooled_w;
    const index_t ph = (idx / pooled_w) % pooled_h;
    const index_t c = (idx / (pooled_w * pooled_h)) % channels;
    const index_t r = idx / (pooled_w * pooled_h * channels);
    const T* roi = rois + 5 * static_cast<int64_t>(r);
    if (roi_problem(roi, batch_size) != kRoiOk) {
      atomicMin(bad_row, static_cast<int>(r));
      output[idx] = T(0);
      argmax[idx] = -1;
      continue;
    }
    const RoiBin bin = roi_pool_bin(roi, scale, ph, pw, pooled_h, pooled_w, height, width);
    if (bin.empty()) {
      output[idx] = T(0);
      argmax[idx] = -1;
      continue;
    }
    const index_t b = static_cast<index_t>(roi[0]);
    const T* src = input + (b * channels + c) * height * width;
    T best = std::numeric_limits<T>::lowest();
    int32_t best_idx = -1;
    for (index_t h = static_cast<index_t>(bin.hstart); h < static_cast<index_t>(bin.hend); ++h) {
      for (index_t w = static_cast<index_t>(bin.wstart); w < static_cast<index_t>(bin.wend); ++w) {
        const index_t k = h * width + w;
        const T v = __ldg(src + k);
        if (v > best) {
          best = v;
          best_idx = static_cast<int32_t>(k);
        }
      }
    }
    output[idx] = best;
    argmax[idx] = best_idx;
  }
}

// bad[0]: first invalid RoI row; bad[1]: first argmax entry outside [-1, plane). A RoI is
// flagged by its (channel 0, bin 0) thread, so every RoI is checked once.
template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ grad, const T* __restrict__ rois,
                    const int32_t* __restrict__ argmax, int64_t total, index_t channels,
                    index_t bins, int64_t plane, int64_t batch_size, T* __restrict__ grad_input,
                    u64* __restrict__ bad) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const index_t idx = static_cast<index_t>(i);
    const index_t k = idx % bins;
    const index_t c = (idx / bins) % channels;
    const index_t r = idx / (bins * channels);
    const T* roi = rois + 5 * static_cast<int64_t>(r);
    if (roi_problem(roi, batch_size) != kRoiOk) {
      if (c == 0 && k == 0) atomicMin(bad, static_cast<u64>(r));
      continue;
    }
    const int32_t a = argmax[idx];
    if (a == -1) continue;
    if (a < -1 || a >= plane) {
      atomicMin(bad + 1, static_cast<u64>(i));
      continue;
    }
    const int64_t b = static_cast<int64_t>(roi[0]);
    atomicAdd(grad_input + (b * channels + c) * plane + a, grad[idx]);
  }
}

// 1. geometry and batch of every RoI; an invalid RoI gets batch -1 (matches no cell) and is
// flagged in bad[0].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gather_geometry_kernel(const T* __restrict__ rois, T scale, int64_t num_rois,
                           int64_t pooled_h, int64_t pooled_w, int64_t batch_size,
                           RoiGeometry<T>* __restrict__ geometry, int64_t* __restrict__ roi_batch,
                           u64* __restrict__ bad) {
  for (int64_t r = first_index(); r < num_rois; r += grid_stride()) {
    const T* roi = rois + 5 * r;
    const bool ok = roi_problem(roi, batch_size) == kRoiOk;
    if (!ok) atomicMin(bad, static_cast<u64>(r));
    // a bad row's geometry is never used; it is not computed either (NaN has no integer value)
    geometry[r] = ok ? roi_pool_geometry(roi, scale, pooled_h, pooled_w) : RoiGeometry<T>{0, 0, T(1), T(1)};
    roi_batch[r] = ok ? static_cast<int64_t>(roi[0]) : -1;
  }
}

// 2. rows[r * H + h] and cols[r * W + w]: the bins of RoI r containing row h / column w.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gather_tables_kernel(const RoiGeometry<T>* __restrict__ geometry, int64_t num_rois,
                         int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                         BinRange* __restrict__ rows, BinRange* __restrict__ cols) {
  const int64_t per_roi = height + width;
  for (int64_t i = first_index(); i < num_rois * per_roi; i += grid_stride()) {
    const int64_t r = i / per_roi;
    const int64_t j = i % per_roi;
    const RoiGeometry<T> g = geometry[r];
    if (j < height) {
      rows[r * height + j] = roi_bins_containing(j, g.bin_h, g.start_h, height, pooled_h);
    } else {
      cols[r * width + (j - height)] =
          roi_bins_containing(j - height, g.bin_w, g.start_w, width, pooled_w);
    }
  }
}

// 3. bad[1]: first argmax entry outside [-1, plane); bad[2]: first one inside the map but not
// in its bin's window (the gather reads only the bins containing a cell).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gather_check_kernel(const int32_t* __restrict__ argmax, const RoiGeometry<T>* __restrict__ geometry,
                        const int64_t* __restrict__ roi_batch, int64_t total, int64_t channels,
                        int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                        u64* __restrict__ bad) {
  const int64_t bins = pooled_h * pooled_w;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int32_t a = argmax[e];
    if (a == -1) continue;
    if (a < -1 || a >= height * width) {
      atomicMin(bad + 1, static_cast<u64>(e));
      continue;
    }
    const int64_t r = e / (channels * bins);
    if (roi_batch[r] < 0) continue;  // reported as a bad RoI
    const int64_t k = e % bins;
    const RoiBin win = roi_bin_window(geometry[r], k / pooled_w, k % pooled_w, height, width);
    const int64_t h = a / width, w = a % width;
    if (h < win.hstart || h >= win.hend || w < win.wstart || w >= win.wend) {
      atomicMin(bad + 2, static_cast<u64>(e));
    }
  }
}

// 4. one thread per input cell (b, c, h, w), w fastest; the loop order (r, ph, pw ascending)
// is the CPU scatter's order for that cell.
template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    gather_kernel(const T* __restrict__ grad, const int64_t* __restrict__ roi_batch,
                  const BinRange* __restrict__ rows, const BinRange* __restrict__ cols,
                  const int32_t* __restrict__ argmax, int64_t total, index_t num_rois,
                  index_t channels, index_t height, index_t width, index_t pooled_h,
                  index_t pooled_w, T* __restrict__ grad_input) {
  const index_t bins = pooled_h * pooled_w;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const index_t idx = static_cast<index_t>(i);
    const index_t w = idx % width;
    const index_t h = (idx / width) % height;
    const index_t c = (idx / (width * height)) % channels;
    const int64_t b = idx / (width * height * channels);
    const int32_t cell = static_cast<int32_t>(h * width + w);
    T acc = T(0);
    for (index_t r = 0; r < num_rois; ++r) {
      if (__ldg(roi_batch + r) != b) continue;
      const BinRange pr = rows[r * height + h];
      if (pr.lo >= pr.hi) continue;
      const BinRange pc = cols[r * width + w];
      const index_t off = (r * channels + c) * bins;
      for (index_t ph = pr.lo; ph < pr.hi; ++ph) {
        for (index_t pw = pc.lo; pw < pc.hi; ++pw) {
          const index_t e = off + ph * pooled_w + pw;
          if (__ldg(argmax + e) == cell) acc += __ldg(grad + e);
        }
      }
    }
    grad_input[idx] = acc;
  }
}

}  // namespace roi_pool_kernels
}  // namespace frcnn
