// The CUDA kernel of frcnn::sgd_update_ (device code only; the host wrapper is sgd_cuda.cu). Kept
// apart so that the tests run the very same kernel on the CPU under the host emulation of
// tests/ops/cuda_emulation/. The arithmetic is the one of sgd.h, spelled with the _rn intrinsics
// so that nvcc can neither fuse nor split a step.
//
// Before including this file outside nvcc, define the CUDA built-ins it uses (__global__,
// __device__, __forceinline__, __launch_bounds__, blockIdx, blockDim, threadIdx, gridDim,
// __fmul_rn, __fadd_rn, __fsub_rn, __fmaf_rn).
#pragma once

#include <algorithm>
#include <cstdint>

namespace frcnn {
namespace sgd_kernels {

constexpr int kThreads = 256;

inline int grid_for(int64_t total) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 65536)));
}

// One thread per element, grid-stride with a 64-bit counter.
__global__ void __launch_bounds__(kThreads)
    update_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ v, int64_t n,
                  bool scale_grad, float grad_scale, bool use_decay, float decay, float momentum,
                  float rate) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float d = g[i];
    if (scale_grad) d = __fmul_rn(d, grad_scale);
    const float wi = w[i];
    if (use_decay) d = __fadd_rn(__fmul_rn(wi, decay), d);
    const float h = __fmaf_rn(d, rate, __fmul_rn(v[i], momentum));
    v[i] = h;
    w[i] = __fsub_rn(wi, h);
  }
}

}  // namespace sgd_kernels
}  // namespace frcnn
