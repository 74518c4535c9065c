"""Box operations, one home each (boxes are x1, y1, x2, y2 in inclusive pixels: width = x2 - x1 + 1).

Which to use for what:

- IoU matrix of NumPy boxes (roidb building, evaluation of proposals): ``bbox_overlaps``
  (float64, Cython, upstream's ``cython_bbox``). Of torch boxes, on their device (the RPN's
  target layers): ``box_iou``. A test holds the two equal.
- NMS of torch (N, 4) boxes and (N,) scores, on their device (the proposal layer):
  :func:`frcnn.ops.nms`, the native kernel. Of upstream's (N, 5) detections, NumPy or torch:
  ``nms_dets`` (which calls :func:`frcnn.ops.nms`). In a tool, whose config says where NMS
  runs: ``nms_from_config(cfg)``, the ``nms_fn(dets, thresh)`` that honours ``USE_GPU_NMS``.
- Regression: ``bbox_transform`` (encode), ``bbox_transform_inv`` (decode), ``clip_boxes``,
  NumPy or torch.

Upstream's import paths stay as aliases: ``fast_rcnn.nms_wrapper.nms`` (= ``nms_dets``),
``fast_rcnn.bbox_transform.*`` and ``utils.cython_bbox.bbox_overlaps``.
"""

from frcnn.boxes.iou import box_iou
from frcnn.boxes.nms import nms_dets, nms_from_config
from frcnn.boxes.overlaps import bbox_overlaps
from frcnn.boxes.transform import bbox_transform, bbox_transform_inv, clip_boxes

__all__ = [
    "bbox_overlaps",
    "bbox_transform",
    "bbox_transform_inv",
    "box_iou",
    "clip_boxes",
    "nms_dets",
    "nms_from_config",
]
