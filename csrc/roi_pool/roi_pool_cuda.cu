// RoI max pooling on a CUDA device (frcnn::roi_pool_forward / _backward, CUDA dispatch key).
//
// Forward: one thread per output element (RoI, channel, ph, pw), pw fastest so that the
// threads of a warp read neighbouring windows of one feature row; the window arithmetic is
// roi_pool_bin (csrc/roi_pool/roi_pool.h), shared with the CPU kernel. Invalid RoIs (NaN/inf,
// batch index outside the batch) are recorded with atomicMin of their row in a device flag,
// which the host reads once after the kernel (the only synchronisation) and turns into an error.
// Backward: one thread per output gradient, atomicAdd into the input location of its argmax.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>

#include "roi_pool/roi_pool.h"

namespace frcnn {
namespace {

constexpr int kThreads = 256;
constexpr int kNoProblem = std::numeric_limits<int>::max();

int grid_for(int64_t total) {
  return static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 65536));
}

template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ input, const T* __restrict__ rois, T scale,
                   index_t total, index_t channels, index_t height, index_t width,
                   index_t pooled_h, index_t pooled_w, int64_t batch_size, T* __restrict__ output,
                   int32_t* __restrict__ argmax, int* __restrict__ bad_row) {
  for (index_t idx = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t pw = idx % pooled_w;
    const index_t ph = (idx / pooled_w) % pooled_h;
    const index_t c = (idx / (pooled_w * pooled_h)) % channels;
    const index_t r = idx / (pooled_w * pooled_h * channels);
    const T* roi = rois + 5 * r;
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

template <typename T, typename index_t>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ grad, const T* __restrict__ rois,
                    const int32_t* __restrict__ argmax, index_t total, index_t channels,
                    index_t bins, int64_t plane, int64_t batch_size, T* __restrict__ grad_input) {
  for (index_t idx = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const int32_t a = argmax[idx];
    if (a < 0) continue;
    const index_t c = (idx / bins) % channels;
    const index_t r = idx / (bins * channels);
    const T bf = rois[5 * r];
    if (!(bf >= T(0) && bf < static_cast<T>(batch_size))) continue;  // checked in forward
    const int64_t b = static_cast<int64_t>(bf);
    atomicAdd(grad_input + (b * channels + c) * plane + a, grad[idx]);
  }
}

bool fits_int32(int64_t v) { return v < std::numeric_limits<int32_t>::max(); }

}  // namespace

std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cuda(const at::Tensor& input,
                                                         const at::Tensor& rois,
                                                         double spatial_scale, int64_t pooled_h,
                                                         int64_t pooled_w) {
  roi_pool_check_forward(input, rois, spatial_scale, pooled_h, pooled_w);
  TORCH_CHECK_VALUE(input.is_cuda(), "frcnn::roi_pool_forward (CUDA kernel): features must be on a "
                    "CUDA device, got ", input.device());
  TORCH_CHECK_VALUE(fits_int32(rois.size(0)), "frcnn::roi_pool_forward: too many rois (",
                    rois.size(0), ")");
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  at::Tensor output = at::empty({num_rois, channels, pooled_h, pooled_w}, input.options());
  at::Tensor argmax = at::empty({num_rois, channels, pooled_h, pooled_w},
                                input.options().dtype(at::kInt));
  const int64_t total = output.numel();
  if (total == 0) return std::make_tuple(output, argmax);
  const at::Tensor in = input.contiguous();
  const at::Tensor rr = rois.contiguous();
  at::Tensor bad_row = at::full({1}, kNoProblem, input.options().dtype(at::kInt));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool small = fits_int32(total) && fits_int32(in.numel());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_forward_cuda", [&] {
    const scalar_t scale = static_cast<scalar_t>(spatial_scale);
    if (small) {
      forward_kernel<scalar_t, int32_t><<<grid_for(total), kThreads, 0, stream>>>(
          in.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(), scale, static_cast<int32_t>(total),
          static_cast<int32_t>(channels), static_cast<int32_t>(height),
          static_cast<int32_t>(width), static_cast<int32_t>(pooled_h),
          static_cast<int32_t>(pooled_w), input.size(0), output.data_ptr<scalar_t>(),
          argmax.data_ptr<int32_t>(), bad_row.data_ptr<int>());
    } else {
      forward_kernel<scalar_t, int64_t><<<grid_for(total), kThreads, 0, stream>>>(
          in.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(), scale, total, channels, height, width,
          pooled_h, pooled_w, input.size(0), output.data_ptr<scalar_t>(),
          argmax.data_ptr<int32_t>(), bad_row.data_ptr<int>());
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int row = bad_row.item<int>();  // the one synchronisation
  if (row != kNoProblem) {
    const at::Tensor bad = rr[row].to(at::kCPU);
    AT_DISPATCH_FLOATING_TYPES(bad.scalar_type(), "roi_pool_problem", [&] {
      roi_pool_throw_problem(roi_problem(bad.data_ptr<scalar_t>(), input.size(0)), row,
                             input.size(0));
    });
  }
  return std::make_tuple(output, argmax);
}

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                  const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width) {
  roi_pool_check_backward(grad, rois, argmax, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(grad.is_cuda(), "frcnn::roi_pool_backward (CUDA kernel): grad must be on a "
                    "CUDA device, got ", grad.device());
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  const int64_t total = grad.numel();
  if (total == 0 || grad_input.numel() == 0) return grad_input;
  const at::Tensor g = grad.contiguous();
  const at::Tensor rr = rois.to(grad.scalar_type()).contiguous();
  const at::Tensor am = argmax.contiguous();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t bins = grad.size(2) * grad.size(3);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_cuda", [&] {
    if (fits_int32(total)) {
      backward_kernel<scalar_t, int32_t><<<grid_for(total), kThreads, 0, stream>>>(
          g.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(), am.data_ptr<int32_t>(),
          static_cast<int32_t>(total), static_cast<int32_t>(channels),
          static_cast<int32_t>(bins), height * width, batch_size,
          grad_input.data_ptr<scalar_t>());
    } else {
      backward_kernel<scalar_t, int64_t><<<grid_for(total), kThreads, 0, stream>>>(
          g.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(), am.data_ptr<int32_t>(), total,
          channels, bins, height * width, batch_size, grad_input.data_ptr<scalar_t>());
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

}  // namespace frcnn
