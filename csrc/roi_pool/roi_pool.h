// RoI max pooling (Caffe's ROIPooling layer of caffe-fast-rcnn): CPU and CUDA entry points of
// frcnn::roi_pool_forward / _backward / _backward_gather, and the bin arithmetic all share.
//
// Per RoI (batch_index, x1, y1, x2, y2), in the input dtype T:
//   start = round(x1 * scale) ... end = round(x2 * scale)      C round: half away from zero
//   roi_w = max(end_w - start_w + 1, 1), roi_h likewise       malformed RoIs become 1 x 1
//   bin_w = T(roi_w) / T(pooled_w), bin_h likewise
//   bin (ph, pw): rows [floor(ph * bin_h), ceil((ph + 1) * bin_h)) + start_h, clamped to [0, H]
//                 cols [floor(pw * bin_w), ceil((pw + 1) * bin_w)) + start_w, clamped to [0, W]
//   empty bin -> output 0, argmax -1; otherwise the maximum, rows then columns, strict >
//   (first maximum wins), argmax = h * W + w within the (batch, channel) plane.
// Backward: each input location receives the sum of the output gradients whose argmax is it.
//   roi_pool_backward        scatter through the argmax (CPU: in a fixed order, parallel over
//                            channels; CUDA: atomicAdd, so the float sum order varies)
//   roi_pool_backward_gather each input cell sums, RoIs ascending then bins ascending, the
//                            gradients of the bins that contain it and whose argmax is it; no
//                            atomics, the same order as the CPU scatter, so bit-identical to it
//                            (needs spatial_scale to know the bins)
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "roi_pool/roi_pool_bins.h"

namespace frcnn {

// Shape / dtype / device checks shared by both devices; they throw naming the argument
// (ValueError / TypeError in Python).
void roi_pool_check_forward(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                            int64_t pooled_h, int64_t pooled_w);
// `op` names the calling op in the messages.
void roi_pool_check_backward(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                             const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                             int64_t height, int64_t width);
// roi_pool_check_backward, and a spatial_scale that is finite and > 0 (the gather needs it).
void roi_pool_check_gather(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                           const at::Tensor& argmax, double spatial_scale, int64_t batch_size,
                           int64_t channels, int64_t height, int64_t width);
// Throws for the first invalid RoI (NaN/inf coordinates, batch index outside [0, batch_size)
// or not a whole number); `problem` is a RoiProblem, `row` the RoI's row (-1: unknown).
void roi_pool_throw_problem(const char* op, int problem, int64_t row, int64_t batch_size);
// Throws for a bad argmax entry at flat position `index` of an argmax of shape `sizes`: a value
// outside [-1, plane), or (`outside_bin`, checked by the gather backward, which knows the bins)
// a cell of the map that is not in its bin's window.
void roi_pool_throw_argmax(const char* op, int64_t index, int64_t value, at::IntArrayRef sizes,
                           int64_t plane, bool outside_bin);

// input (N, C, H, W), rois (R, 5) -> output (R, C, pooled_h, pooled_w), argmax (int32, same).
std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cpu(const at::Tensor& input,
                                                        const at::Tensor& rois,
                                                        double spatial_scale, int64_t pooled_h,
                                                        int64_t pooled_w);
// grad (R, C, pooled_h, pooled_w) -> grad_input (batch_size, channels, height, width).
at::Tensor roi_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                 const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                                 int64_t height, int64_t width);
// The same result by gathering (see the top of this file); spatial_scale as in the forward.
at::Tensor roi_pool_backward_gather_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                        const at::Tensor& argmax, double spatial_scale,
                                        int64_t batch_size, int64_t channels, int64_t height,
                                        int64_t width);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cuda(const at::Tensor& input,
                                                         const at::Tensor& rois,
                                                         double spatial_scale, int64_t pooled_h,
                                                         int64_t pooled_w);
at::Tensor roi_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                  const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width);
at::Tensor roi_pool_backward_gather_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                         const at::Tensor& argmax, double spatial_scale,
                                         int64_t batch_size, int64_t channels, int64_t height,
                                         int64_t width);
#endif

}  // namespace frcnn
