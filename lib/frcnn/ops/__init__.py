"""Python faces of the native ops in csrc/ (the extension frcnn._C, ``torch.ops.frcnn.*``).

- ``nms(boxes, scores, iou_threshold)``: NMS of torch (N, 4) boxes on their device. For
  upstream's (N, 5) detections use :func:`frcnn.boxes.nms_dets`.
- ``roi_pool(features, rois, pooled_h, pooled_w, spatial_scale, deterministic=None)`` and the
  ``RoIPool`` module: Caffe's RoI max pooling, differentiable in ``features``.

CPU kernels always, CUDA kernels in a CUDA build (``with_cuda()``). Each face checks only what
the op's dispatcher needs; the C++ ops check shapes, dtypes and values themselves.
"""

from frcnn.ops._native import with_cuda
from frcnn.ops.nms import nms
from frcnn.ops.roi_pool import RoIPool, roi_pool

__all__ = ["RoIPool", "nms", "roi_pool", "with_cuda"]
