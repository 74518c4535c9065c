"""Non-maximum suppression over torch tensors on any device (``torch.ops.frcnn.nms``).

Use this for (N, 4) boxes and (N,) scores already in torch (the proposal layer, code that
stays on the GPU); :func:`frcnn.boxes.nms_dets` is upstream's (N, 5) detections form.

Checks are made once: this wrapper checks only what the op's dispatcher needs before it can
route the call (two tensors on one device, a numeric threshold, a build with the kernels of
that device); shapes, dtypes and values are checked by the C++ op itself (csrc/nms), which
raises ``ValueError`` / ``TypeError`` naming the argument, for raw callers of
``torch.ops.frcnn.nms`` too.
"""

from __future__ import annotations

import numbers

import torch

from frcnn.ops._native import check_cuda_build, check_same_device, check_tensor, native


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS; returns the kept indices (int64, on the boxes' device) by descending score.

    boxes: (N, 4) x1, y1, x2, y2 in inclusive pixels (width = x2 - x1 + 1); scores: (N,), same
    floating dtype (float32/float64; float16/bfloat16 are widened exactly) and device. A box is
    suppressed when its IoU with an already kept box is strictly greater than ``iou_threshold``;
    equal scores keep the lower index first. IoU is computed in float64 with the arithmetic of
    ``csrc/nms/nms.h``, identical in every version.
    """
    where = "frcnn.ops.nms"
    check_tensor(boxes, "boxes", where)
    check_tensor(scores, "scores", where)
    check_same_device(boxes, scores, "boxes", "scores", where)
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real):
        raise TypeError(f"{where}: iou_threshold must be a number, got {type(iou_threshold).__name__}")
    check_cuda_build(boxes.device.type, where)
    if boxes.dtype in (torch.float16, torch.bfloat16):
        boxes = boxes.float()  # exact: IoU is computed in float64 anyway
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    native()
    return torch.ops.frcnn.nms(boxes, scores, float(iou_threshold))
