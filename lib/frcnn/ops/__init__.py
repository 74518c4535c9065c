"""Python faces of the native ops in csrc/ (the extension frcnn._C).

``nms(boxes, scores, iou_threshold)``, ``roi_pool(features, rois, pooled_h, pooled_w,
spatial_scale)`` and the ``RoIPool`` module; CPU kernels always, CUDA kernels in a CUDA build.
"""

from frcnn.ops._native import with_cuda
from frcnn.ops.nms import nms
from frcnn.ops.roi_pool import RoIPool, roi_pool

__all__ = ["RoIPool", "nms", "roi_pool", "with_cuda"]
