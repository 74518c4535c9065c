// The SGD solver's per-blob update in one pass over memory: entry points of frcnn::sgd_update_.
//
// For each element, in float32, each operation rounded as torch's element-wise kernels round
// the same steps (lib/frcnn/caffe/solver.py: regularized_gradient, momentum_update, w.sub_(v)):
//   d = g * grad_scale                 (skipped when grad_scale == 1: iter_size 1)
//   d = w * decay + d                  (two roundings; skipped when decay == 0)
//   v = fma(d, rate, v * momentum)     (torch's add_(d, alpha=rate) is a fused multiply-add in
//                                       its AVX2 and AVX-512 kernels, and nvcc contracts it in
//                                       torch's CUDA kernel)
//   w = w - v
// The solver uses this op only after checking, on the machine and device it runs on, that its
// results equal the torch operations' bit for bit (frcnn.caffe.solver._fused_update_matches_torch);
// otherwise it runs the torch operations. The torch form reads and writes the blob-sized tensors
// 12 times in 5 passes (5 kernel launches on a GPU), this one 5 times in one.
#pragma once

#include <ATen/ATen.h>

namespace frcnn {

// weight, grad, history: float32 tensors of one shape on one device, contiguous, three different
// tensors; weight and history are updated in place.
void sgd_update_cpu(const at::Tensor& weight, const at::Tensor& grad, const at::Tensor& history,
                    double grad_scale, double decay, double momentum, double rate);

#ifdef WITH_CUDA
void sgd_update_cuda(const at::Tensor& weight, const at::Tensor& grad, const at::Tensor& history,
                     double grad_scale, double decay, double momentum, double rate);
#endif

// The checks both devices make (throws ValueError naming the argument).
void check_sgd_update_inputs(const at::Tensor& weight, const at::Tensor& grad, const at::Tensor& history,
                             c10::DeviceType device_type);

}  // namespace frcnn
