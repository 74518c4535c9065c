// RoI max pooling on a CUDA device (frcnn::roi_pool_forward / _backward / _backward_gather,
// CUDA dispatch key).
//
// Forward: one thread per output element (RoI, channel, ph, pw), pw fastest so that the
// threads of a warp read neighbouring windows of one feature row; the window arithmetic is
// roi_pool_bin (csrc/roi_pool/roi_pool.h), shared with the CPU kernel.
// Backward (scatter): one thread per output gradient, atomicAdd into the input location of
// its argmax; the float sum order depends on the scheduling.
// Backward (gather, deterministic): 1. per RoI its geometry and batch; 2. per RoI and row /
// column of the map the bins containing it (roi_bins_containing); 3. every argmax entry
// checked (in the map, in its bin); 4. one thread per input cell sums, RoIs ascending then
// bins ascending, the gradients of the bins containing it whose argmax is it. No atomics on
// the gradient; the order is the CPU scatter's, so the result is bit-identical to the CPU's.
//
// Checks: the host wrappers check shapes, dtypes and devices (roi_pool_cpu.cpp); the values
// (RoI rows, argmax entries) are checked inside the kernels, which skip a bad entry instead of
// writing out of bounds and record the first bad position with atomicMin in a device flag.
// The host reads the flags once after the kernels (the one synchronisation) and throws.
// Grid-stride loops count in int64 (an int32 counter wraps past 2^31 - stride); the index
// arithmetic inside runs in int32 when every index fits.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "roi_pool/roi_pool.h"
#include "roi_pool/roi_pool_kernels.cuh"

namespace frcnn {
namespace {

using namespace roi_pool_kernels;

// Reads the flags (the one synchronisation) and throws for the first problem found:
// flags[0] a RoI row, flags[1] an argmax outside the map, flags[2] one outside its bin.
void throw_backward_problems(const char* op, const at::Tensor& flags, const at::Tensor& rois,
                             const at::Tensor& argmax, int64_t batch_size, int64_t plane) {
  const at::Tensor host = flags.to(at::kCPU);
  const int64_t* f = host.data_ptr<int64_t>();  // -1 (all bits set): nothing found
  if (f[0] >= 0) {
    const at::Tensor bad = rois[f[0]].to(at::kCPU);
    AT_DISPATCH_FLOATING_TYPES(bad.scalar_type(), "roi_pool_problem", [&] {
      roi_pool_throw_problem(op, roi_problem(bad.data_ptr<scalar_t>(), batch_size), f[0],
                             batch_size);
    });
  }
  for (int64_t kind = 1; kind < host.numel(); ++kind) {
    if (f[kind] >= 0) {
      const int64_t value = argmax.reshape({-1})[f[kind]].item<int64_t>();
      roi_pool_throw_argmax(op, f[kind], value, argmax.sizes(), plane, kind == 2);
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cuda(const at::Tensor& input,
                                                         const at::Tensor& rois,
                                                         double spatial_scale, int64_t pooled_h,
                                                         int64_t pooled_w) {
  const char* op = "frcnn::roi_pool_forward";
  roi_pool_check_forward(input, rois, spatial_scale, pooled_h, pooled_w);
  TORCH_CHECK_VALUE(input.is_cuda(), op, " (CUDA kernel): features must be on a CUDA device, got ",
                    input.device());
  TORCH_CHECK_VALUE(fits_int32(rois.size(0)), op, ": too many rois (", rois.size(0), ")");
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
          in.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(), scale, total,
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
      roi_pool_throw_problem(op, roi_problem(bad.data_ptr<scalar_t>(), input.size(0)), row,
                             input.size(0));
    });
  }
  return std::make_tuple(output, argmax);
}

at::Tensor roi_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                  const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width) {
  const char* op = "frcnn::roi_pool_backward";
  roi_pool_check_backward(op, grad, rois, argmax, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(grad.is_cuda(), op, " (CUDA kernel): grad must be on a CUDA device, got ",
                    grad.device());
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  const int64_t total = grad.numel();
  if (total == 0) return grad_input;
  const at::Tensor g = grad.contiguous();
  const at::Tensor rr = rois.to(grad.scalar_type()).contiguous();
  const at::Tensor am = argmax.contiguous();
  at::Tensor flags = at::full({2}, -1, grad.options().dtype(at::kLong));  // -1 = all bits set
  u64* bad = reinterpret_cast<u64*>(flags.data_ptr<int64_t>());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t bins = grad.size(2) * grad.size(3);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_cuda", [&] {
    if (fits_int32(total)) {
      backward_kernel<scalar_t, int32_t><<<grid_for(total), kThreads, 0, stream>>>(
          g.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(), am.data_ptr<int32_t>(), total,
          static_cast<int32_t>(channels), static_cast<int32_t>(bins), height * width, batch_size,
          grad_input.data_ptr<scalar_t>(), bad);
    } else {
      backward_kernel<scalar_t, int64_t><<<grid_for(total), kThreads, 0, stream>>>(
          g.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(), am.data_ptr<int32_t>(), total,
          channels, bins, height * width, batch_size, grad_input.data_ptr<scalar_t>(), bad);
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  throw_backward_problems(op, flags, rr, am, batch_size, height * width);
  return grad_input;
}

at::Tensor roi_pool_backward_gather_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                         const at::Tensor& argmax, double spatial_scale,
                                         int64_t batch_size, int64_t channels, int64_t height,
                                         int64_t width) {
  const char* op = "frcnn::roi_pool_backward_gather";
  roi_pool_check_gather(op, grad, rois, argmax, spatial_scale, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(grad.is_cuda(), op, " (CUDA kernel): grad must be on a CUDA device, got ",
                    grad.device());
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  if (grad.numel() == 0) return grad_input;
  const int64_t num_rois = grad.size(0), pooled_h = grad.size(2), pooled_w = grad.size(3);
  const int64_t cells = grad_input.numel();
  const at::Tensor g = grad.contiguous();
  const at::Tensor rr = rois.to(grad.scalar_type()).contiguous();
  const at::Tensor am = argmax.contiguous();
  const at::TensorOptions long_opts = grad.options().dtype(at::kLong);
  at::Tensor flags = at::full({3}, -1, long_opts);  // -1 = all bits set
  u64* bad = reinterpret_cast<u64*>(flags.data_ptr<int64_t>());
  at::Tensor roi_batch = at::empty({num_rois}, long_opts);
  // BinRange is two int32: (lo, hi)
  at::Tensor rows = at::empty({num_rois * height, 2}, grad.options().dtype(at::kInt));
  at::Tensor cols = at::empty({num_rois * width, 2}, grad.options().dtype(at::kInt));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool small = fits_int32(cells) && fits_int32(grad.numel()) &&
                     fits_int32(num_rois * height) && fits_int32(num_rois * width);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_gather_cuda", [&] {
    using Geo = RoiGeometry<scalar_t>;
    at::Tensor geometry = at::empty({num_rois, static_cast<int64_t>(sizeof(Geo))},
                                    grad.options().dtype(at::kByte));
    Geo* geo = reinterpret_cast<Geo*>(geometry.data_ptr<uint8_t>());
    BinRange* row_tab = reinterpret_cast<BinRange*>(rows.data_ptr<int32_t>());
    BinRange* col_tab = reinterpret_cast<BinRange*>(cols.data_ptr<int32_t>());
    gather_geometry_kernel<scalar_t><<<grid_for(num_rois), kThreads, 0, stream>>>(
        rr.data_ptr<scalar_t>(), static_cast<scalar_t>(spatial_scale), num_rois, pooled_h,
        pooled_w, batch_size, geo, roi_batch.data_ptr<int64_t>(), bad);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (height + width > 0) {
      gather_tables_kernel<scalar_t><<<grid_for(num_rois * (height + width)), kThreads, 0, stream>>>(
          geo, num_rois, height, width, pooled_h, pooled_w, row_tab, col_tab);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    gather_check_kernel<scalar_t><<<grid_for(grad.numel()), kThreads, 0, stream>>>(
        am.data_ptr<int32_t>(), geo, roi_batch.data_ptr<int64_t>(), grad.numel(), channels,
        height, width, pooled_h, pooled_w, bad);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (cells > 0) {
      if (small) {
        gather_kernel<scalar_t, int32_t><<<grid_for(cells), kThreads, 0, stream>>>(
            g.data_ptr<scalar_t>(), roi_batch.data_ptr<int64_t>(), row_tab, col_tab,
            am.data_ptr<int32_t>(), cells, static_cast<int32_t>(num_rois),
            static_cast<int32_t>(channels), static_cast<int32_t>(height),
            static_cast<int32_t>(width), static_cast<int32_t>(pooled_h),
            static_cast<int32_t>(pooled_w), grad_input.data_ptr<scalar_t>());
      } else {
        gather_kernel<scalar_t, int64_t><<<grid_for(cells), kThreads, 0, stream>>>(
            g.data_ptr<scalar_t>(), roi_batch.data_ptr<int64_t>(), row_tab, col_tab,
            am.data_ptr<int32_t>(), cells, num_rois, channels, height, width, pooled_h, pooled_w,
            grad_input.data_ptr<scalar_t>());
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    throw_backward_problems(op, flags, rr, am, batch_size, height * width);
  });
  return grad_input;
}

}  // namespace frcnn
