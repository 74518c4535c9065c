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

    # x and y side by side (18 tensor operations instead of 29: on a GPU, kernel launches), each
    # element by the same arithmetic as the per-coordinate form of bbox_overlaps
    wh_b = b[:, 2:4] - b[:, 0:2] + 1  # (K, 2)
    wh_a = a[:, 2:4] - a[:, 0:2] + 1  # (N, 2)
    area_b = wh_b[:, 0] * wh_b[:, 1]
    area_a = wh_a[:, 0] * wh_a[:, 1]
    iwh = torch.minimum(a[:, None, 2:4], b[None, :, 2:4]) - torch.maximum(a[:, None, 0:2], b[None, :, 0:2]) + 1
    valid = (iwh > 0).all(dim=2)  # (N, K): intersection width and height both > 0
    inter = iwh[..., 0] * iwh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    # where() keeps a 0/0 of a pair that does not count from turning into NaN
    return torch.where(valid, inter / torch.where(valid, union, 1.0), 0.0)
