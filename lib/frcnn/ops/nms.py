"""Non-maximum suppression over torch tensors on any device (``torch.ops.frcnn.nms``)."""

from __future__ import annotations

import math
import numbers

import torch

from frcnn.ops._native import check_cuda_build, native


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS; returns the kept indices (int64, on the boxes' device) by descending score.

    boxes: (N, 4) x1, y1, x2, y2 in inclusive pixels (width = x2 - x1 + 1); scores: (N,), same
    floating dtype (float32/float64; float16/bfloat16 are widened exactly) and device. A box is suppressed when its IoU with an already kept box is
    strictly greater than ``iou_threshold``; equal scores keep the lower index first. IoU is
    computed in float64 with the arithmetic of ``csrc/nms/nms.h``, identical in every version.
    """
    if isinstance(boxes, torch.Tensor) and boxes.dtype in (torch.float16, torch.bfloat16):
        boxes = boxes.float()  # exact: IoU is computed in float64 anyway
    if isinstance(scores, torch.Tensor) and scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    check_nms_inputs(boxes, scores, iou_threshold, "frcnn.ops.nms")
    check_cuda_build(boxes.device.type, "frcnn.ops.nms")
    native()
    return torch.ops.frcnn.nms(boxes, scores, float(iou_threshold))


def check_nms_inputs(boxes: object, scores: object, iou_threshold: object, where: str) -> None:
    """Raise TypeError/ValueError naming the argument when the NMS inputs are malformed."""
    for name, t in (("boxes", boxes), ("scores", scores)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{where}: {name} must be float32 or float64, got {t.dtype}")
    assert isinstance(boxes, torch.Tensor) and isinstance(scores, torch.Tensor)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"{where}: scores must have shape (N,) = ({boxes.shape[0]},), got {tuple(scores.shape)}"
        )
    if boxes.dtype != scores.dtype:
        raise TypeError(f"{where}: boxes ({boxes.dtype}) and scores ({scores.dtype}) differ in dtype")
    if boxes.device != scores.device:
        raise ValueError(f"{where}: boxes is on {boxes.device} but scores is on {scores.device}")
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real):
        raise TypeError(f"{where}: iou_threshold must be a number, got {type(iou_threshold).__name__}")
    if not math.isfinite(iou_threshold):
        raise ValueError(f"{where}: iou_threshold must be finite, got {iou_threshold}")
