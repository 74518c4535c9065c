// RoI max pooling on the CPU (frcnn::roi_pool_forward / _backward / _backward_gather, CPU key).
//
// Forward: 1. validate every RoI; 2. for every (RoI, bin), in parallel over RoIs, the max over
//          its window of each channel at once, on an NHWC copy of the features.
// Backward (scatter): 1. validate every RoI, then every argmax entry (-1 or inside the map);
//          2. add each output gradient to its argmax, in parallel over channels. The channels'
//          input planes are disjoint, so no two threads write one location and every location
//          sums its gradients in one fixed order (RoIs ascending, then bins): deterministic by
//          construction, whatever the number of threads.
// Backward (gather): the CUDA gather kernel's formulation on the CPU (same helpers, same
//          order): each input cell adds, RoIs ascending then bins ascending, the gradients of
//          the bins containing it whose argmax is it. Bit-identical to the scatter.
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <vector>

#include "roi_pool/roi_pool.h"

namespace frcnn {

void roi_pool_check_forward(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                            int64_t pooled_h, int64_t pooled_w) {
  const char* op = "frcnn::roi_pool_forward";
  TORCH_CHECK_VALUE(input.dim() == 4, op, ": features must have shape (N, C, H, W), got ",
                    input.sizes());
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5, op,
                    ": rois must have shape (R, 5) [batch_index, x1, y1, x2, y2], got ",
                    rois.sizes());
  const at::ScalarType dt = input.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kDouble, op,
                   ": features must be float32 or float64, got ", dt);
  TORCH_CHECK_TYPE(rois.scalar_type() == dt, op, ": features (", dt, ") and rois (",
                   rois.scalar_type(), ") differ in dtype; they must have the same dtype");
  TORCH_CHECK_VALUE(input.device() == rois.device(), op, ": features is on ", input.device(),
                    " but rois is on ", rois.device());
  TORCH_CHECK_VALUE(pooled_h > 0, op, ": pooled_h must be > 0, got ", pooled_h);
  TORCH_CHECK_VALUE(pooled_w > 0, op, ": pooled_w must be > 0, got ", pooled_w);
  TORCH_CHECK_VALUE(std::isfinite(spatial_scale) && spatial_scale > 0, op,
                    ": spatial_scale must be a finite number > 0, got ", spatial_scale);
  TORCH_CHECK_VALUE(input.size(2) * input.size(3) <= std::numeric_limits<int32_t>::max(), op,
                    ": features H * W must fit in int32, got ", input.sizes());
}

void roi_pool_check_backward(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                             const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                             int64_t height, int64_t width) {
  TORCH_CHECK_VALUE(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0, op,
                    ": batch_size, channels, height and width must be >= 0, got ", batch_size,
                    ", ", channels, ", ", height, ", ", width);
  TORCH_CHECK_VALUE(height * width <= std::numeric_limits<int32_t>::max(), op,
                    ": height * width must fit in int32, got ", height, " x ", width);
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(1) == channels, op,
                    ": grad must have shape (R, C, pooled_h, pooled_w) with C = channels = ",
                    channels, ", got ", grad.sizes());
  const at::ScalarType dt = grad.scalar_type();
  TORCH_CHECK_TYPE(dt == at::kFloat || dt == at::kDouble, op,
                   ": grad must be float32 or float64, got ", dt);
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5 && rois.size(0) == grad.size(0), op,
                    ": rois must have shape (R, 5) with R = grad.size(0) = ", grad.size(0),
                    ", got ", rois.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(rois.scalar_type()), op,
                   ": rois must be a floating-point tensor, got ", rois.scalar_type());
  TORCH_CHECK_TYPE(argmax.scalar_type() == at::kInt, op,
                   ": argmax must be an int32 tensor (the forward's), got ", argmax.scalar_type());
  TORCH_CHECK_VALUE(argmax.sizes() == grad.sizes(), op, ": argmax must have grad's shape ",
                    grad.sizes(), ", got ", argmax.sizes());
  TORCH_CHECK_VALUE(grad.device() == rois.device() && grad.device() == argmax.device(), op,
                    ": grad, rois and argmax must be on one device, got ", grad.device(), ", ",
                    rois.device(), ", ", argmax.device());
}

void roi_pool_check_gather(const char* op, const at::Tensor& grad, const at::Tensor& rois,
                           const at::Tensor& argmax, double spatial_scale, int64_t batch_size,
                           int64_t channels, int64_t height, int64_t width) {
  roi_pool_check_backward(op, grad, rois, argmax, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(std::isfinite(spatial_scale) && spatial_scale > 0, op,
                    ": spatial_scale must be a finite number > 0, got ", spatial_scale);
}

void roi_pool_throw_problem(const char* op, int problem, int64_t row, int64_t batch_size) {
  const std::string where = row >= 0 ? "rois[" + std::to_string(row) + "]" : "rois";
  TORCH_CHECK_VALUE(problem != kRoiNotFinite, op, ": ", where, " contains NaN or inf coordinates");
  TORCH_CHECK_VALUE(problem != kRoiBatchIndex, op, ": ", where,
                    " has a batch index (column 0) that is not a whole number in "
                    "[0, batch size) = [0, ", batch_size, ")");
  TORCH_CHECK_VALUE(problem == kRoiOk, op, ": ", where, " is invalid");
}

void roi_pool_throw_argmax(const char* op, int64_t index, int64_t value, at::IntArrayRef sizes,
                           int64_t plane, bool outside_bin) {
  // flat index -> [r, c, ph, pw]
  std::ostringstream pos;
  int64_t rest = index;
  std::vector<int64_t> coord(sizes.size());
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    coord[d] = sizes[d] > 0 ? rest % sizes[d] : 0;
    rest = sizes[d] > 0 ? rest / sizes[d] : 0;
  }
  for (size_t d = 0; d < coord.size(); ++d) pos << (d ? ", " : "") << coord[d];
  TORCH_CHECK_VALUE(outside_bin, op, ": argmax[", pos.str(), "] = ", value,
                    " is outside the feature map: it must be -1 (an empty bin) or in [0, H * W) = "
                    "[0, ", plane, ")");
  TORCH_CHECK_VALUE(false, op, ": argmax[", pos.str(), "] = ", value,
                    " is not inside the window of its bin (argmax must come from the forward "
                    "with the same rois and spatial_scale)");
}

namespace {

// Max over one window for channels [0, n) of an NHWC image (``cells`` points at channel 0 of
// the map's first cell): per channel, cells in the NCHW kernel's order (rows, then columns),
// strict ">" from the lowest value, so the first maximum wins and NaN never does (a window of
// NaN or -inf keeps the lowest value and argmax -1). ``isgreater`` is ">" without the FP
// exception on NaN, which lets the compiler turn the loop over channels into vector compares and
// selects (SSE2 in the default build; an AVX2 copy is chosen at run time where the CPU has it).
// The two copies compute the same comparisons in the same order: identical results. The body
// is a macro, not an always_inline template called by both: inlined, GCC vectorised it worse
// (ZF-sized case, 256 x 38 x 63, 300 RoIs: 9.0 ms against 6.7 ms, the portable copy 12.3 / 7.4).
#define FRCNN_WINDOW_MAX_BODY                                                        \
  for (int64_t c = 0; c < n; ++c) {                                                 \
    best[c] = std::numeric_limits<T>::lowest();                                     \
    barg[c] = -1;                                                                   \
  }                                                                                 \
  for (int64_t h = win.hstart; h < win.hend; ++h) {                                 \
    for (int64_t w = win.wstart; w < win.wend; ++w) {                               \
      const int32_t idx = static_cast<int32_t>(h * width + w);                      \
      const T* __restrict__ cell = cells + (h * width + w) * channels;              \
      for (int64_t c = 0; c < n; ++c) {                                             \
        const T v = cell[c];                                                        \
        const bool above = std::isgreater(v, best[c]);                              \
        best[c] = above ? v : best[c];                                              \
        barg[c] = above ? idx : barg[c];                                            \
      }                                                                             \
    }                                                                               \
  }

template <typename T>
void window_max(const T* cells, int64_t channels, int64_t width, const RoiBin& win, int64_t n,
                T* __restrict__ best, int32_t* __restrict__ barg) {
  FRCNN_WINDOW_MAX_BODY
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
template <typename T>
__attribute__((target("avx2"))) void window_max_avx2(const T* cells, int64_t channels, int64_t width,
                                                     const RoiBin& win, int64_t n, T* __restrict__ best,
                                                     int32_t* __restrict__ barg) {
  FRCNN_WINDOW_MAX_BODY
}
// FRCNN_CPU_NO_AVX2=1 takes the default copy (so that the tests can check both).
inline bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && std::getenv("FRCNN_CPU_NO_AVX2") == nullptr;
  return has;
}
#else
template <typename T>
void window_max_avx2(const T* cells, int64_t channels, int64_t width, const RoiBin& win, int64_t n,
                     T* __restrict__ best, int32_t* __restrict__ barg) {
  window_max<T>(cells, channels, width, win, n, best, barg);
}
inline bool cpu_has_avx2() { return false; }
#endif
#undef FRCNN_WINDOW_MAX_BODY

// The features are read in NHWC order (a copy of an NCHW map: 5 MB for VGG16's conv5_3 at
// 600 x 1000, free for a channels-last one): each window cell is then a contiguous row of all
// the channels, and the max over a window runs for every channel at once (window_max), in
// parallel over RoIs. Every output and argmax is what the per-channel scan gives.
template <typename T>
void forward_kernel(const T* input_nhwc, const T* rois, T scale, int64_t num_rois, int64_t channels,
                    int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w, T* output,
                    int32_t* argmax) {
  const int64_t bins = pooled_h * pooled_w;
  const bool avx2 = cpu_has_avx2();
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> best(channels);
    std::vector<int32_t> barg(channels);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = static_cast<int64_t>(rois[5 * r]);
      const T* image = input_nhwc + b * height * width * channels;
      T* out = output + r * channels * bins;
      int32_t* arg = argmax + r * channels * bins;
      for (int64_t ph = 0; ph < pooled_h; ++ph) {
        for (int64_t pw = 0; pw < pooled_w; ++pw) {
          const int64_t k = ph * pooled_w + pw;
          const RoiBin win = roi_pool_bin(rois + 5 * r, scale, ph, pw, pooled_h, pooled_w, height, width);
          if (win.empty()) {
            for (int64_t c = 0; c < channels; ++c) {
              out[c * bins + k] = T(0);
              arg[c * bins + k] = -1;
            }
            continue;
          }
          if (avx2) {
            window_max_avx2<T>(image, channels, width, win, channels, best.data(), barg.data());
          } else {
            window_max<T>(image, channels, width, win, channels, best.data(), barg.data());
          }
          for (int64_t c = 0; c < channels; ++c) {
            out[c * bins + k] = best[c];
            arg[c * bins + k] = barg[c];
          }
        }
      }
    }
  });
}

// Validates every RoI row (before anything is written).
template <typename T>
void check_rois(const char* op, const T* rois, int64_t num_rois, int64_t batch_size) {
  for (int64_t r = 0; r < num_rois; ++r) {
    const int problem = roi_problem(rois + 5 * r, batch_size);
    if (problem != kRoiOk) roi_pool_throw_problem(op, problem, r, batch_size);
  }
}

// Every argmax entry is -1 (an empty bin) or a cell of the map.
void check_argmax_range(const char* op, const at::Tensor& argmax, int64_t plane) {
  const int32_t* a = argmax.data_ptr<int32_t>();
  const int64_t n = argmax.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] < -1 || a[i] >= plane) roi_pool_throw_argmax(op, i, a[i], argmax.sizes(), plane, false);
  }
}

template <typename T>
void backward_kernel(const T* grad, const T* rois, const int32_t* argmax, int64_t num_rois,
                     int64_t channels, int64_t plane, int64_t bins, T* grad_input) {
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t r = 0; r < num_rois; ++r) {
        const int64_t b = static_cast<int64_t>(rois[5 * r]);
        T* dst = grad_input + (b * channels + c) * plane;
        const int64_t off = (r * channels + c) * bins;
        for (int64_t k = 0; k < bins; ++k) {
          const int32_t a = argmax[off + k];
          if (a >= 0) dst[a] += grad[off + k];
        }
      }
    }
  });
}

// The gather: per RoI r, rows[r * H + h] / cols[r * W + w] are the bins containing row h /
// column w (roi_bins_containing); a cell (b, c, h, w) sums, r ascending, ph then pw ascending,
// grad[r, c, ph, pw] where rois[r] is in batch b and argmax[r, c, ph, pw] == h * W + w.
template <typename T>
void gather_kernel(const T* grad, const int64_t* roi_batch, const BinRange* rows,
                   const BinRange* cols, const int32_t* argmax, int64_t num_rois, int64_t channels,
                   int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                   int64_t batch_size, T* grad_input) {
  const int64_t bins = pooled_h * pooled_w;
  at::parallel_for(0, batch_size * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / channels;
      const int64_t c = bc % channels;
      T* dst = grad_input + bc * height * width;
      for (int64_t h = 0; h < height; ++h) {
        for (int64_t w = 0; w < width; ++w) {
          const int32_t cell = static_cast<int32_t>(h * width + w);
          T acc = T(0);
          for (int64_t r = 0; r < num_rois; ++r) {
            if (roi_batch[r] != b) continue;
            const BinRange pr = rows[r * height + h];
            if (pr.lo >= pr.hi) continue;
            const BinRange pc = cols[r * width + w];
            const int64_t off = (r * channels + c) * bins;
            for (int64_t ph = pr.lo; ph < pr.hi; ++ph) {
              for (int64_t pw = pc.lo; pw < pc.hi; ++pw) {
                const int64_t e = off + ph * pooled_w + pw;
                if (argmax[e] == cell) acc += grad[e];
              }
            }
          }
          dst[cell] = acc;
        }
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> roi_pool_forward_cpu(const at::Tensor& input,
                                                        const at::Tensor& rois,
                                                        double spatial_scale, int64_t pooled_h,
                                                        int64_t pooled_w) {
  roi_pool_check_forward(input, rois, spatial_scale, pooled_h, pooled_w);
  TORCH_CHECK_VALUE(input.device().is_cpu(), "frcnn::roi_pool_forward (CPU kernel): features must be on "
              "the CPU, got ", input.device());
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  at::Tensor output = at::empty({num_rois, channels, pooled_h, pooled_w}, input.options());
  at::Tensor argmax = at::empty({num_rois, channels, pooled_h, pooled_w},
                                input.options().dtype(at::kInt));
  if (output.numel() == 0) {
    return std::make_tuple(output, argmax);
  }
  const at::Tensor in = input.permute({0, 2, 3, 1}).contiguous();  // NHWC (see forward_kernel)
  const at::Tensor rr = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_forward_cpu", [&] {
    const scalar_t* rp = rr.data_ptr<scalar_t>();
    check_rois("frcnn::roi_pool_forward", rp, num_rois, input.size(0));
    forward_kernel<scalar_t>(in.data_ptr<scalar_t>(), rp, static_cast<scalar_t>(spatial_scale),
                             num_rois, channels, height, width, pooled_h, pooled_w,
                             output.data_ptr<scalar_t>(), argmax.data_ptr<int32_t>());
  });
  return std::make_tuple(output, argmax);
}

at::Tensor roi_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                 const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                                 int64_t height, int64_t width) {
  const char* op = "frcnn::roi_pool_backward";
  roi_pool_check_backward(op, grad, rois, argmax, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(grad.device().is_cpu(), op, " (CPU kernel): grad must be on the CPU, got ",
                    grad.device());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  if (grad.numel() == 0) {
    return grad_input;
  }
  const at::Tensor g = grad.contiguous();
  const at::Tensor rr = rois.to(grad.scalar_type()).contiguous();
  const at::Tensor am = argmax.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_cpu", [&] {
    const scalar_t* rp = rr.data_ptr<scalar_t>();
    check_rois(op, rp, grad.size(0), batch_size);
    check_argmax_range(op, am, height * width);
    backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), rp, am.data_ptr<int32_t>(), grad.size(0),
                              channels, height * width, grad.size(2) * grad.size(3),
                              grad_input.data_ptr<scalar_t>());
  });
  return grad_input;
}

at::Tensor roi_pool_backward_gather_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                        const at::Tensor& argmax, double spatial_scale,
                                        int64_t batch_size, int64_t channels, int64_t height,
                                        int64_t width) {
  const char* op = "frcnn::roi_pool_backward_gather";
  roi_pool_check_gather(op, grad, rois, argmax, spatial_scale, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(grad.device().is_cpu(), op, " (CPU kernel): grad must be on the CPU, got ",
                    grad.device());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  if (grad.numel() == 0) {
    return grad_input;
  }
  const int64_t num_rois = grad.size(0), pooled_h = grad.size(2), pooled_w = grad.size(3);
  const at::Tensor g = grad.contiguous();
  const at::Tensor rr = rois.to(grad.scalar_type()).contiguous();
  const at::Tensor am = argmax.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_gather_cpu", [&] {
    const scalar_t* rp = rr.data_ptr<scalar_t>();
    check_rois(op, rp, num_rois, batch_size);
    check_argmax_range(op, am, height * width);
    const scalar_t scale = static_cast<scalar_t>(spatial_scale);
    std::vector<RoiGeometry<scalar_t>> geometry(num_rois);
    std::vector<int64_t> roi_batch(num_rois);
    std::vector<BinRange> rows(num_rois * height), cols(num_rois * width);
    for (int64_t r = 0; r < num_rois; ++r) {
      const RoiGeometry<scalar_t> geo = roi_pool_geometry(rp + 5 * r, scale, pooled_h, pooled_w);
      geometry[r] = geo;
      roi_batch[r] = static_cast<int64_t>(rp[5 * r]);
      for (int64_t h = 0; h < height; ++h) {
        rows[r * height + h] = roi_bins_containing(h, geo.bin_h, geo.start_h, height, pooled_h);
      }
      for (int64_t w = 0; w < width; ++w) {
        cols[r * width + w] = roi_bins_containing(w, geo.bin_w, geo.start_w, width, pooled_w);
      }
    }
    // the gather reads only the bins that contain a cell: every argmax >= 0 must lie in its
    // bin's window, or its gradient would be dropped where the scatter would add it
    const int32_t* ap = am.data_ptr<int32_t>();
    const int64_t bins = pooled_h * pooled_w;
    for (int64_t e = 0; e < am.numel(); ++e) {
      if (ap[e] < 0) continue;
      const int64_t r = e / (channels * bins);
      const int64_t k = e % bins;
      const RoiBin win = roi_bin_window(geometry[r], k / pooled_w, k % pooled_w, height, width);
      const int64_t h = ap[e] / width, w = ap[e] % width;
      if (h < win.hstart || h >= win.hend || w < win.wstart || w >= win.wend) {
        roi_pool_throw_argmax(op, e, ap[e], am.sizes(), height * width, true);
      }
    }
    gather_kernel<scalar_t>(g.data_ptr<scalar_t>(), roi_batch.data(), rows.data(), cols.data(),
                            ap, num_rois, channels, height, width, pooled_h, pooled_w, batch_size,
                            grad_input.data_ptr<scalar_t>());
  });
  return grad_input;
}

}  // namespace frcnn
