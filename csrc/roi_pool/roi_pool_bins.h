// Caffe's ROIPooling bin arithmetic (see roi_pool.h for the rule), shared by the CPU kernel,
// the CUDA kernels and their host emulation in the tests: plain C++ with no ATen, callable on
// the host and the device.
#pragma once

#include <cmath>
#include <cstdint>

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

}  // namespace frcnn
