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

#include <cmath>
#include <cstdint>
#include <string>

#if defined(__CUDACC__)
#define FRCNN_HOST_DEVICE __host__ __device__
#else
#define FRCNN_HOST_DEVICE
#endif

namespace frcnn {

FRCNN_HOST_DEVICE inline float roi_round(float x) { return roundf(x); }
FRCNN_HOST_DEVICE inline double roi_round(double x) { return round(x); }
FRCNN_HOST_DEVICE inline float roi_floor(float x) { return floorf(x); }
FRCNN_HOST_DEVICE inline double roi_floor(double x) { return floor(x); }
FRCNN_HOST_DEVICE inline float roi_ceil(float x) { return ceilf(x); }
FRCNN_HOST_DEVICE inline double roi_ceil(double x) { return ceil(x); }

// Converts an already rounded coordinate to an integer without overflow: values beyond
// +-2^40 pixels are clamped (no real feature map comes near them).
template <typename T>
FRCNN_HOST_DEVICE inline int64_t roi_to_int(T v) {
  const T lim = static_cast<T>(1099511627776.0);  // 2^40
  return static_cast<int64_t>(v > lim ? lim : (v < -lim ? -lim : v));
}

FRCNN_HOST_DEVICE inline int64_t roi_clamp(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Problems a RoI row can have; 0 when it is valid.
enum RoiProblem : int { kRoiOk = 0, kRoiNotFinite = 1, kRoiBatchIndex = 2 };

template <typename T>
FRCNN_HOST_DEVICE inline int roi_problem(const T* roi, int64_t batch_size) {
  for (int k = 0; k < 5; ++k) {
    if (!(roi[k] - roi[k] == T(0))) return kRoiNotFinite;  // false for NaN and +-inf only
  }
  const T b = roi[0];
  if (b < T(0) || b >= static_cast<T>(batch_size) || roi_floor(b) != b) return kRoiBatchIndex;
  return kRoiOk;
}

// Where one RoI's bins start and how tall / wide they are (Caffe's arithmetic).
template <typename T>
struct RoiGeometry {
  int64_t start_h, start_w;
  T bin_h, bin_w;
};

template <typename T>
FRCNN_HOST_DEVICE inline RoiGeometry<T> roi_pool_geometry(const T* roi, T scale, int64_t pooled_h,
                                                          int64_t pooled_w) {
  const int64_t start_w = roi_to_int(roi_round(roi[1] * scale));
  const int64_t start_h = roi_to_int(roi_round(roi[2] * scale));
  const int64_t end_w = roi_to_int(roi_round(roi[3] * scale));
  const int64_t end_h = roi_to_int(roi_round(roi[4] * scale));
  const int64_t roi_w = end_w - start_w + 1 > 1 ? end_w - start_w + 1 : 1;
  const int64_t roi_h = end_h - start_h + 1 > 1 ? end_h - start_h + 1 : 1;
  RoiGeometry<T> g;
  g.start_h = start_h;
  g.start_w = start_w;
  g.bin_h = static_cast<T>(roi_h) / static_cast<T>(pooled_h);
  g.bin_w = static_cast<T>(roi_w) / static_cast<T>(pooled_w);
  return g;
}

// First row (column) of bin p along one axis: floor(p * bin) + start, clamped to [0, size].
template <typename T>
FRCNN_HOST_DEVICE inline int64_t roi_bin_begin(int64_t p, T bin, int64_t start, int64_t size) {
  return roi_clamp(roi_to_int(roi_floor(static_cast<T>(p) * bin)) + start, 0, size);
}

// One past the last row (column) of bin p: ceil((p + 1) * bin) + start, clamped to [0, size].
template <typename T>
FRCNN_HOST_DEVICE inline int64_t roi_bin_end(int64_t p, T bin, int64_t start, int64_t size) {
  return roi_clamp(roi_to_int(roi_ceil(static_cast<T>(p + 1) * bin)) + start, 0, size);
}

// The window [hstart, hend) x [wstart, wend) of bin (ph, pw) of one RoI.
struct RoiBin {
  int64_t hstart, hend, wstart, wend;
  FRCNN_HOST_DEVICE bool empty() const { return hend <= hstart || wend <= wstart; }
};

template <typename T>
FRCNN_HOST_DEVICE inline RoiBin roi_bin_window(const RoiGeometry<T>& g, int64_t ph, int64_t pw,
                                               int64_t height, int64_t width) {
  RoiBin bin;
  bin.hstart = roi_bin_begin(ph, g.bin_h, g.start_h, height);
  bin.hend = roi_bin_end(ph, g.bin_h, g.start_h, height);
  bin.wstart = roi_bin_begin(pw, g.bin_w, g.start_w, width);
  bin.wend = roi_bin_end(pw, g.bin_w, g.start_w, width);
  return bin;
}

template <typename T>
FRCNN_HOST_DEVICE inline RoiBin roi_pool_bin(const T* roi, T scale, int64_t ph, int64_t pw,
                                             int64_t pooled_h, int64_t pooled_w, int64_t height,
                                             int64_t width) {
  return roi_bin_window(roi_pool_geometry(roi, scale, pooled_h, pooled_w), ph, pw, height, width);
}

// The bins [lo, hi) along one axis whose span contains coordinate x (0 <= x < size); lo >= hi
// when none does. Begin and end are non-decreasing in p, so the bins containing x are
// contiguous: lo is the first bin ending after x, hi the first bin beginning after x (two
// binary searches over the exact arithmetic above, so the answer is exact for any sizes).
struct BinRange {
  int32_t lo, hi;
};

template <typename T>
FRCNN_HOST_DEVICE inline BinRange roi_bins_containing(int64_t x, T bin, int64_t start, int64_t size,
                                                      int64_t pooled) {
  int64_t a = 0, b = pooled;  // first p in [0, pooled) with end(p) > x
  while (a < b) {
    const int64_t m = a + (b - a) / 2;
    if (roi_bin_end(m, bin, start, size) > x) b = m; else a = m + 1;
  }
  const int64_t lo = a;
  b = pooled;  // first p in [lo, pooled) with begin(p) > x
  while (a < b) {
    const int64_t m = a + (b - a) / 2;
    if (roi_bin_begin(m, bin, start, size) > x) b = m; else a = m + 1;
  }
  BinRange r;
  r.lo = static_cast<int32_t>(lo);
  r.hi = static_cast<int32_t>(a);
  return r;
}

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
