// frcnn::sgd_update_ on a CUDA device: see sgd.h for the arithmetic, sgd_kernels.cuh for the
// kernel. One launch per blob on the current stream; nothing is read back.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "sgd/sgd.h"
#include "sgd/sgd_kernels.cuh"

namespace frcnn {

void sgd_update_cuda(const at::Tensor& weight, const at::Tensor& grad, const at::Tensor& history,
                     double grad_scale, double decay, double momentum, double rate) {
  check_sgd_update_inputs(weight, grad, history, c10::DeviceType::CUDA);
  const int64_t n = weight.numel();
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(weight.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  sgd_kernels::update_kernel<<<sgd_kernels::grid_for(n), sgd_kernels::kThreads, 0, stream>>>(
      weight.data_ptr<float>(), grad.data_ptr<float>(), history.data_ptr<float>(), n, grad_scale != 1.0,
      static_cast<float>(grad_scale), decay != 0.0, static_cast<float>(decay), static_cast<float>(momentum),
      static_cast<float>(rate));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace frcnn
