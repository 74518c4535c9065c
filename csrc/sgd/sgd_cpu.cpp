// frcnn::sgd_update_ on the CPU: see sgd.h for the arithmetic.
#include "sgd/sgd.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdlib>

namespace frcnn {
namespace {

// One body for both copies. -ffp-contract=off (setup.py) keeps every "*" and "+" rounded on its
// own; the one fused multiply-add is the explicit FMA(...).
#define FRCNN_SGD_BODY(FMA)                                   \
  for (int64_t i = 0; i < n; ++i) {                           \
    float d = g[i];                                           \
    if (scale_grad) d = d * grad_scale;                       \
    if (use_decay) d = w[i] * decay + d;                      \
    const float h = FMA(d, rate, v[i] * momentum);            \
    v[i] = h;                                                 \
    w[i] = w[i] - h;                                          \
  }

#define FRCNN_SGD_ARGS                                                                        \
  float* __restrict__ w, const float* __restrict__ g, float* __restrict__ v, int64_t n,      \
      bool scale_grad, float grad_scale, bool use_decay, float decay, float momentum, float rate

// Without FMA hardware torch's kernels round the product and the sum apart: so does this copy.
inline float mul_add_apart(float a, float b, float c) { return a * b + c; }

void update_portable(FRCNN_SGD_ARGS) { FRCNN_SGD_BODY(mul_add_apart) }

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx2,fma"))) void update_fma(FRCNN_SGD_ARGS) { FRCNN_SGD_BODY(__builtin_fmaf) }
// FRCNN_CPU_NO_AVX2=1 takes the portable copy (as for RoI pooling).
bool cpu_has_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          std::getenv("FRCNN_CPU_NO_AVX2") == nullptr;
  return has;
}
#elif defined(__aarch64__)
void update_fma(FRCNN_SGD_ARGS) { FRCNN_SGD_BODY(__builtin_fmaf) }
bool cpu_has_fma() { return std::getenv("FRCNN_CPU_NO_AVX2") == nullptr; }
#else
void update_fma(FRCNN_SGD_ARGS) { FRCNN_SGD_BODY(mul_add_apart) }
bool cpu_has_fma() { return false; }
#endif
#undef FRCNN_SGD_BODY
#undef FRCNN_SGD_ARGS

}  // namespace

void check_sgd_update_inputs(const at::Tensor& weight, const at::Tensor& grad, const at::Tensor& history,
                             c10::DeviceType device_type) {
  const char* op = "frcnn::sgd_update_";
  for (const auto* t : {&weight, &grad, &history}) {
    const char* name = t == &weight ? "weight" : (t == &grad ? "grad" : "history");
    TORCH_CHECK_VALUE(t->device().type() == device_type && t->device() == weight.device(), op, ": ",
                      name, " is on ", t->device(), ", weight on ", weight.device(),
                      " (all three on one ", c10::DeviceTypeName(device_type), " device)");
    TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat, op, ": ", name, " must be float32, got ",
                      t->scalar_type());
    TORCH_CHECK_VALUE(t->is_contiguous(), op, ": ", name, " must be contiguous");
    TORCH_CHECK_VALUE(t->sizes() == weight.sizes(), op, ": ", name, " has shape ", t->sizes(),
                      ", weight ", weight.sizes());
  }
  TORCH_CHECK_VALUE(!weight.is_same(grad) && !weight.is_same(history) && !grad.is_same(history), op,
                    ": weight, grad and history must be three different tensors");
}

void sgd_update_cpu(const at::Tensor& weight, const at::Tensor& grad, const at::Tensor& history,
                    double grad_scale, double decay, double momentum, double rate) {
  check_sgd_update_inputs(weight, grad, history, c10::DeviceType::CPU);
  const int64_t total = weight.numel();
  float* w = weight.data_ptr<float>();
  const float* g = grad.data_ptr<float>();
  float* v = history.data_ptr<float>();
  // Python floats become float32 scalars in torch's float32 kernels: the same conversions here.
  const float gs = static_cast<float>(grad_scale), dc = static_cast<float>(decay);
  const float mo = static_cast<float>(momentum), rt = static_cast<float>(rate);
  const bool scale_grad = grad_scale != 1.0, use_decay = decay != 0.0;
  const bool fma = cpu_has_fma();
  // Element-wise: the split over threads cannot change a result.
  at::parallel_for(0, total, 1 << 15, [&](int64_t begin, int64_t end) {
    if (fma)
      update_fma(w + begin, g + begin, v + begin, end - begin, scale_grad, gs, use_decay, dc, mo, rt);
    else
      update_portable(w + begin, g + begin, v + begin, end - begin, scale_grad, gs, use_decay, dc, mo, rt);
  });
}

}  // namespace frcnn
