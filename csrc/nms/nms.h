// Non-maximum suppression: CPU and CUDA entry points of frcnn::nms.
//
// Rule (one for every implementation in the project): boxes are visited by descending score,
// equal scores in ascending index order (a stable sort); a box is suppressed when its IoU with
// an already kept box is strictly greater than iou_threshold.
//
// Arithmetic (fixed so that the C++ and CUDA kernels and the tests' NumPy reference agree bit
// for bit, also at IoU exactly equal to the threshold): every coordinate is converted to
// double, and
//   area  = ((x2 - x1) + 1) * ((y2 - y1) + 1)
//   w     = max(0, (min(x2) - max(x1)) + 1),  h likewise
//   inter = w * h
//   iou   = inter / ((area_i + area_j) - inter)
// each operation rounded on its own (no fused multiply-add).
#pragma once

#include <ATen/ATen.h>

namespace frcnn {

// True when IoU(a, b) > iou_threshold, IoU taken with the +1 pixel convention in the project's
// one arithmetic (above). No overlap gives inter = 0 and IoU = 0 / union: +-0, or NaN when the
// union is 0 or NaN, and NaN is never above the threshold. The CUDA kernel spells the same
// steps with __d*_rn intrinsics and skips the division when inter == 0 (same answer).
inline bool nms_iou_above(double ax1, double ay1, double ax2, double ay2, double a_area,
                          double bx1, double by1, double bx2, double by2, double b_area,
                          double iou_threshold) {
  const double xx1 = ax1 > bx1 ? ax1 : bx1;
  const double yy1 = ay1 > by1 ? ay1 : by1;
  const double xx2 = ax2 < bx2 ? ax2 : bx2;
  const double yy2 = ay2 < by2 ? ay2 : by2;
  const double dw = (xx2 - xx1) + 1.0;
  const double dh = (yy2 - yy1) + 1.0;
  const double w = dw > 0.0 ? dw : 0.0;
  const double h = dh > 0.0 ? dh : 0.0;
  const double inter = w * h;
  const double uni = (a_area + b_area) - inter;
  return inter / uni > iou_threshold;
}

// boxes (N, 4) x1, y1, x2, y2 and scores (N,) on the CPU, same floating dtype.
// Returns the kept indices (int64) in descending score order.
at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);

#ifdef WITH_CUDA
// The same on a CUDA device; the result stays on that device.
at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);
#endif

// Checks shared by both devices: ranks, sizes, dtypes, devices. Throws naming the argument.
void nms_check_inputs(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);

}  // namespace frcnn
