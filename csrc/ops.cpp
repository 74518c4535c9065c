// The one registration of frcnn's native ops (TORCH_LIBRARY) and the Python module frcnn._C.
//
// Python calls them as torch.ops.frcnn.<name> once frcnn._C is imported (lib/frcnn/ops/).
// Each op has a CPU kernel and, in a CUDA build (-DWITH_CUDA), a CUDA kernel, side by side in
// csrc/<op>/. See csrc/README.md for how to add an op.
#include <torch/extension.h>
#include <torch/library.h>

#include "nms/nms.h"
#include "roi_pool/roi_pool.h"
#include "sgd/sgd.h"

TORCH_LIBRARY(frcnn, m) {
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def(
      "roi_pool_forward(Tensor features, Tensor rois, float spatial_scale, int pooled_h, "
      "int pooled_w) -> (Tensor, Tensor)");
  m.def(
      "roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, int batch_size, int channels, "
      "int height, int width) -> Tensor");
  m.def(
      "roi_pool_backward_gather(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, "
      "int batch_size, int channels, int height, int width) -> Tensor");
  m.def(
      "sgd_update_(Tensor(a!) weight, Tensor grad, Tensor(b!) history, float grad_scale, "
      "float decay, float momentum, float rate) -> ()");
}

TORCH_LIBRARY_IMPL(frcnn, CPU, m) {
  m.impl("nms", &frcnn::nms_cpu);
  m.impl("roi_pool_forward", &frcnn::roi_pool_forward_cpu);
  m.impl("roi_pool_backward", &frcnn::roi_pool_backward_cpu);
  m.impl("roi_pool_backward_gather", &frcnn::roi_pool_backward_gather_cpu);
  m.impl("sgd_update_", &frcnn::sgd_update_cpu);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(frcnn, CUDA, m) {
  m.impl("nms", &frcnn::nms_cuda);
  m.impl("roi_pool_forward", &frcnn::roi_pool_forward_cuda);
  m.impl("roi_pool_backward", &frcnn::roi_pool_backward_cuda);
  m.impl("roi_pool_backward_gather", &frcnn::roi_pool_backward_gather_cuda);
  m.impl("sgd_update_", &frcnn::sgd_update_cuda);
}
#endif

namespace {
bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "frcnn native ops; registered as torch.ops.frcnn.* on import";
  m.def("with_cuda", &with_cuda, "True when this build has the CUDA kernels");
}
