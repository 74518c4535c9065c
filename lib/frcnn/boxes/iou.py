"""Box geometry on torch tensors, with py-faster-rcnn's +1 pixel convention.

``box_iou`` is the torch twin of ``frcnn.boxes.overlaps.bbox_overlaps`` (a test holds them
equal): it runs on the inputs' device, in their (promoted) float type, so the RPN layers can
compute overlaps without leaving the GPU.
"""

from __future__ import annotations

import torch


def box_iou(boxes: torch.Tensor, query_boxes: torch.Tensor) -> torch.Tensor:
    """IoU of every row of ``boxes`` (N, >=4) against every row of ``query_boxes`` (K, >=4) -> (N, K).

    Widths and heights are ``x2 - x1 + 1``; a pair counts only when both the intersection
    width and height are > 0 (otherwise 0), exactly as upstream's ``bbox_overlaps``.
    """
    for name, t in (("boxes", boxes), ("query_boxes", query_boxes)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"box_iou: {name} must be a torch tensor, got {type(t).__name__}")
        if t.ndim != 2 or t.shape[1] < 4:
            raise ValueError(f"box_iou: {name} must be an (N, 4) tensor, got shape {tuple(t.shape)}")
    if boxes.device != query_boxes.device:
        raise ValueError(f"box_iou: boxes is on {boxes.device} but query_boxes is on {query_boxes.device}")
    dtype = torch.promote_types(boxes.dtype, query_boxes.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    a = boxes[:, :4].to(dtype)
    b = query_boxes[:, :4].to(dtype)

    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)  # (K,)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)  # (N,)
    iw = torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1]) + 1
    valid = (iw > 0) & (ih > 0)  # (N, K)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    # where() keeps a 0/0 of a pair that does not count from turning into NaN
    return torch.where(valid, inter / torch.where(valid, union, torch.ones_like(union)), torch.zeros_like(inter))
