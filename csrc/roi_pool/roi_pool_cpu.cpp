// RoI max pooling on the CPU (frcnn::roi_pool_forward / _backward, CPU dispatch key).
//
// Forward: 1. validate every RoI; 2. compute the windows of all (RoI, bin) pairs once;
//          3. max over each window for every (RoI, channel), in parallel over RoIs x channels.
// Backward: scatter each output gradient to its argmax, in parallel over channels (the
//          channels' input planes are disjoint, so no two threads write the same location and
//          the sum order is fixed: RoIs ascending, then bins).
#include <ATen/Parallel.h>

#include <limits>
#include <vector>

#include "roi_pool/roi_pool.h"

namespace frcnn {

void roi_pool_check_forward(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                            int64_t pooled_h, int64_t pooled_w) {
  TORCH_CHECK_VALUE(input.dim() == 4, "frcnn::roi_pool_forward: features must be (N, C, H, W), got shape ",
              input.sizes());
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5,
              "frcnn::roi_pool_forward: rois must be an (R, 5) tensor of "
              "batch_index, x1, y1, x2, y2, got shape ",
              rois.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(input.scalar_type()),
              "frcnn::roi_pool_forward: features must be floating point, got ", input.scalar_type());
  TORCH_CHECK_TYPE(input.scalar_type() == rois.scalar_type(), "frcnn::roi_pool_forward: features (",
              input.scalar_type(), ") and rois (", rois.scalar_type(), ") must have the same dtype");
  TORCH_CHECK_VALUE(input.device() == rois.device(), "frcnn::roi_pool_forward: features is on ",
              input.device(), " but rois is on ", rois.device());
  TORCH_CHECK_VALUE(pooled_h > 0 && pooled_w > 0,
              "frcnn::roi_pool_forward: pooled_h and pooled_w must be > 0, got ", pooled_h, " and ",
              pooled_w);
  TORCH_CHECK_VALUE(std::isfinite(spatial_scale) && spatial_scale > 0,
              "frcnn::roi_pool_forward: spatial_scale must be a finite number > 0, got ",
              spatial_scale);
  TORCH_CHECK_VALUE(input.size(2) * input.size(3) <= std::numeric_limits<int32_t>::max(),
              "frcnn::roi_pool_forward: features H * W must fit in int32, got ", input.sizes());
}

void roi_pool_check_backward(const at::Tensor& grad, const at::Tensor& rois,
                             const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                             int64_t height, int64_t width) {
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(1) == channels,
              "frcnn::roi_pool_backward: grad must be (R, C, pooled_h, pooled_w) with C = ",
              channels, ", got shape ", grad.sizes());
  TORCH_CHECK_VALUE(rois.dim() == 2 && rois.size(1) == 5 && rois.size(0) == grad.size(0),
              "frcnn::roi_pool_backward: rois must be (R, 5) with R = ", grad.size(0),
              ", got shape ", rois.sizes());
  TORCH_CHECK_TYPE(argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kInt,
              "frcnn::roi_pool_backward: argmax must be an int32 tensor of shape ", grad.sizes(),
              ", got ", argmax.scalar_type(), " ", argmax.sizes());
  TORCH_CHECK_VALUE(grad.device() == rois.device() && grad.device() == argmax.device(),
              "frcnn::roi_pool_backward: grad, rois and argmax must be on one device, got ",
              grad.device(), ", ", rois.device(), ", ", argmax.device());
  TORCH_CHECK_VALUE(batch_size >= 0 && height >= 0 && width >= 0,
              "frcnn::roi_pool_backward: negative feature size");
}

void roi_pool_throw_problem(int problem, int64_t row, int64_t batch_size) {
  const std::string where = row >= 0 ? "rois[" + std::to_string(row) + "]" : "rois";
  TORCH_CHECK_VALUE(problem != kRoiNotFinite, "frcnn::roi_pool_forward: ", where,
              " contains NaN or inf coordinates");
  TORCH_CHECK_VALUE(problem != kRoiBatchIndex, "frcnn::roi_pool_forward: ", where,
              " has a batch index (column 0) that is not a whole number in [0, ", batch_size,
              ") (features has batch size ", batch_size, ")");
  TORCH_CHECK_VALUE(problem == kRoiOk, "frcnn::roi_pool_forward: ", where, " is invalid");
}

namespace {

template <typename T>
void forward_kernel(const T* input, const T* rois, T scale, int64_t num_rois, int64_t channels,
                    int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w, T* output,
                    int32_t* argmax) {
  const int64_t bins = pooled_h * pooled_w;
  std::vector<RoiBin> windows(num_rois * bins);
  at::parallel_for(0, num_rois, 4096, [&](int64_t begin, int64_t end) {  // cheap: rarely split
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t ph = 0; ph < pooled_h; ++ph) {
        for (int64_t pw = 0; pw < pooled_w; ++pw) {
          windows[r * bins + ph * pooled_w + pw] =
              roi_pool_bin(rois + 5 * r, scale, ph, pw, pooled_h, pooled_w, height, width);
        }
      }
    }
  });
  const int64_t plane = height * width;
  at::parallel_for(0, num_rois * channels, 16, [&](int64_t begin, int64_t end) {
    for (int64_t rc = begin; rc < end; ++rc) {
      const int64_t r = rc / channels;
      const int64_t c = rc % channels;
      const int64_t b = static_cast<int64_t>(rois[5 * r]);
      const T* src = input + (b * channels + c) * plane;
      T* out = output + rc * bins;
      int32_t* arg = argmax + rc * bins;
      for (int64_t k = 0; k < bins; ++k) {
        const RoiBin& win = windows[r * bins + k];
        if (win.empty()) {
          out[k] = T(0);
          arg[k] = -1;
          continue;
        }
        T best = std::numeric_limits<T>::lowest();
        int64_t best_idx = -1;
        for (int64_t h = win.hstart; h < win.hend; ++h) {
          for (int64_t w = win.wstart; w < win.wend; ++w) {
            const int64_t idx = h * width + w;
            if (src[idx] > best) {
              best = src[idx];
              best_idx = idx;
            }
          }
        }
        out[k] = best;
        arg[k] = static_cast<int32_t>(best_idx);
      }
    }
  });
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
  const at::Tensor in = input.contiguous();
  const at::Tensor rr = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_pool_forward_cpu", [&] {
    const scalar_t* rp = rr.data_ptr<scalar_t>();
    for (int64_t r = 0; r < num_rois; ++r) {
      const int problem = roi_problem(rp + 5 * r, input.size(0));
      if (problem != kRoiOk) roi_pool_throw_problem(problem, r, input.size(0));
    }
    forward_kernel<scalar_t>(in.data_ptr<scalar_t>(), rp, static_cast<scalar_t>(spatial_scale),
                             num_rois, channels, height, width, pooled_h, pooled_w,
                             output.data_ptr<scalar_t>(), argmax.data_ptr<int32_t>());
  });
  return std::make_tuple(output, argmax);
}

at::Tensor roi_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                 const at::Tensor& argmax, int64_t batch_size, int64_t channels,
                                 int64_t height, int64_t width) {
  roi_pool_check_backward(grad, rois, argmax, batch_size, channels, height, width);
  TORCH_CHECK_VALUE(grad.device().is_cpu(), "frcnn::roi_pool_backward (CPU kernel): grad must be on the "
              "CPU, got ", grad.device());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input;
  }
  const at::Tensor g = grad.contiguous();
  const at::Tensor rr = rois.to(grad.scalar_type()).contiguous();
  const at::Tensor am = argmax.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "roi_pool_backward_cpu", [&] {
    const scalar_t* rp = rr.data_ptr<scalar_t>();
    for (int64_t r = 0; r < grad.size(0); ++r) {
      const int problem = roi_problem(rp + 5 * r, batch_size);
      if (problem != kRoiOk) roi_pool_throw_problem(problem, r, batch_size);
    }
    backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), rr.data_ptr<scalar_t>(),
                              am.data_ptr<int32_t>(), grad.size(0), channels, height * width,
                              grad.size(2) * grad.size(3), grad_input.data_ptr<scalar_t>());
  });
  return grad_input;
}

}  // namespace frcnn
