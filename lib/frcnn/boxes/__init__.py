"""Box operations, one home each (boxes are x1, y1, x2, y2 in inclusive pixels: width = x2 - x1 + 1).

- IoU matrix: ``bbox_overlaps`` (NumPy float64, Cython) and ``box_iou`` (torch, any device);
  a test holds the two equal.
- NMS: ``nms_dets(dets, thresh)`` on upstream's (N, 5) detections, NumPy or torch; it calls the
  native kernel :func:`frcnn.ops.nms` (boxes, scores), which runs on the tensors' device.
- Regression: ``bbox_transform``, ``bbox_transform_inv``, ``clip_boxes`` (NumPy or torch).

Upstream's import paths stay as aliases: ``fast_rcnn.nms_wrapper.nms``,
``fast_rcnn.bbox_transform.*`` and ``utils.cython_bbox.bbox_overlaps``.
"""

from frcnn.boxes.iou import box_iou
from frcnn.boxes.nms import nms_dets
from frcnn.boxes.overlaps import bbox_overlaps
from frcnn.boxes.transform import bbox_transform, bbox_transform_inv, clip_boxes

__all__ = ["bbox_overlaps", "bbox_transform", "bbox_transform_inv", "box_iou", "clip_boxes", "nms_dets"]
