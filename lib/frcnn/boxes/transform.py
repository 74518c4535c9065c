"""Box regression encode/decode and clipping, py-faster-rcnn's arithmetic exactly.

Boxes are ``x1, y1, x2, y2`` in inclusive pixels: width = x2 - x1 + 1, centre x1 + 0.5 * width.
Each function takes NumPy arrays or torch tensors and returns the same kind (a torch result
stays on its input's device). Upstream's one-pixel quirk is kept on purpose: the decoder has
no -1 on x2/y2, so decoding zero deltas returns ``(x1, y1, x2 + 1, y2 + 1)``.

    encode  tx = (gx - ex) / ew    ty = (gy - ey) / eh    tw = log(gw / ew)    th = log(gh / eh)
    decode  cx = dx * w + x        cy = dy * h + y        pw = exp(dw) * w     ph = exp(dh) * h
            box = (cx - pw/2, cy - ph/2, cx + pw/2, cy + ph/2)     (no clamp before exp)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]


def _check_rows(name: str, fn: str, x: Array, ncols: int | None = 4, multiple_of_4: bool = False) -> None:
    if x.ndim != 2:
        raise ValueError(f"{fn}: {name} must be a 2-D (N, 4) array, got shape {tuple(x.shape)}")
    if ncols is not None and x.shape[1] < ncols:
        raise ValueError(f"{fn}: {name} needs at least {ncols} columns, got shape {tuple(x.shape)}")
    if multiple_of_4 and x.shape[1] % 4 != 0:
        raise ValueError(f"{fn}: {name} must have 4*C columns, got shape {tuple(x.shape)}")


def _same_kind(fn: str, a: Array, b: Array, na: str, nb: str) -> bool:
    """True for torch, False for NumPy; raises when the two inputs are of different kinds."""
    ta, tb = isinstance(a, torch.Tensor), isinstance(b, torch.Tensor)
    if ta != tb:
        raise TypeError(
            f"{fn}: {na} and {nb} must both be NumPy arrays or both torch tensors, "
            f"got {type(a).__name__} and {type(b).__name__}"
        )
    if ta and a.device != b.device:
        raise ValueError(f"{fn}: {na} is on {a.device} but {nb} is on {b.device}")
    return ta


def bbox_transform(ex_rois: Array, gt_rois: Array) -> Array:
    """Regression targets (N, 4) = (dx, dy, dw, dh) that take each ``ex_rois`` row to its ``gt_rois`` row.

    Only the first four columns of each input are used. The result has the inputs' promoted
    float type (integer boxes give float64 in NumPy, the default float type in torch).
    """
    is_torch = _same_kind("bbox_transform", ex_rois, gt_rois, "ex_rois", "gt_rois")
    _check_rows("ex_rois", "bbox_transform", ex_rois)
    _check_rows("gt_rois", "bbox_transform", gt_rois)
    if ex_rois.shape[0] != gt_rois.shape[0]:
        raise ValueError(
            f"bbox_transform: ex_rois has {ex_rois.shape[0]} rows but gt_rois has {gt_rois.shape[0]}"
        )
    if is_torch:
        return _bbox_transform_torch(ex_rois, gt_rois)
    ex_w = ex_rois[:, 2] - ex_rois[:, 0] + 1.0
    ex_h = ex_rois[:, 3] - ex_rois[:, 1] + 1.0
    ex_x = ex_rois[:, 0] + 0.5 * ex_w
    ex_y = ex_rois[:, 1] + 0.5 * ex_h

    gt_w = gt_rois[:, 2] - gt_rois[:, 0] + 1.0
    gt_h = gt_rois[:, 3] - gt_rois[:, 1] + 1.0
    gt_x = gt_rois[:, 0] + 0.5 * gt_w
    gt_y = gt_rois[:, 1] + 0.5 * gt_h

    dx = (gt_x - ex_x) / ex_w
    dy = (gt_y - ex_y) / ex_h
    dw = np.log(gt_w / ex_w)
    dh = np.log(gt_h / ex_h)
    return np.vstack((dx, dy, dw, dh)).transpose()


def _bbox_transform_torch(ex_rois: torch.Tensor, gt_rois: torch.Tensor) -> torch.Tensor:
    """The encode of :func:`bbox_transform` for torch, x and y side by side: per element the
    arithmetic of the NumPy branch's per-column form, in 13 tensor operations instead of 25."""
    ex_wh = ex_rois[:, 2:4] - ex_rois[:, 0:2] + 1.0
    ex_ctr = ex_rois[:, 0:2] + 0.5 * ex_wh
    gt_wh = gt_rois[:, 2:4] - gt_rois[:, 0:2] + 1.0
    gt_ctr = gt_rois[:, 0:2] + 0.5 * gt_wh
    return torch.cat(((gt_ctr - ex_ctr) / ex_wh, torch.log(gt_wh / ex_wh)), dim=1)


def bbox_transform_inv(boxes: Array, deltas: Array) -> Array:
    """Apply ``deltas`` (N, 4C) to ``boxes`` (N, 4), for every 4-column group; returns (N, 4C).

    ``boxes`` are cast to the deltas' dtype first (as upstream does); no -1 on x2/y2 and no
    clamp on dw/dh before exp. Empty ``boxes`` give an empty (0, C') array of the deltas' dtype.
    """
    is_torch = _same_kind("bbox_transform_inv", boxes, deltas, "boxes", "deltas")
    _check_rows("boxes", "bbox_transform_inv", boxes)
    _check_rows("deltas", "bbox_transform_inv", deltas, ncols=None, multiple_of_4=True)
    if boxes.shape[0] == 0:
        if is_torch:
            return torch.zeros((0, deltas.shape[1]), dtype=deltas.dtype, device=deltas.device)
        return np.zeros((0, deltas.shape[1]), dtype=deltas.dtype)
    if boxes.shape[0] != deltas.shape[0]:
        raise ValueError(
            f"bbox_transform_inv: boxes has {boxes.shape[0]} rows but deltas has {deltas.shape[0]}"
        )
    if is_torch:
        return _bbox_transform_inv_torch(boxes.to(deltas.dtype), deltas)
    boxes = boxes.astype(deltas.dtype, copy=False)

    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights

    dx = deltas[:, 0::4]
    dy = deltas[:, 1::4]
    dw = deltas[:, 2::4]
    dh = deltas[:, 3::4]

    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = np.exp(dw) * widths[:, None]
    pred_h = np.exp(dh) * heights[:, None]

    pred = np.zeros(deltas.shape, dtype=deltas.dtype)
    pred[:, 0::4] = pred_ctr_x - 0.5 * pred_w
    pred[:, 1::4] = pred_ctr_y - 0.5 * pred_h
    pred[:, 2::4] = pred_ctr_x + 0.5 * pred_w
    pred[:, 3::4] = pred_ctr_y + 0.5 * pred_h
    return pred


def _bbox_transform_inv_torch(boxes: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """The decode of :func:`bbox_transform_inv` for torch, x and y side by side: the same
    operations on every element as the per-column form of the NumPy branch (each rounded on its
    own), in 12 tensor operations instead of about 30 (on a GPU, 12 kernel launches)."""
    n, k = deltas.shape
    wh = boxes[:, 2:4] - boxes[:, 0:2] + 1.0  # (N, 2): widths, heights
    ctr = boxes[:, 0:2] + 0.5 * wh
    d = deltas.reshape(n, k // 4, 4)
    wh = wh[:, None, :]
    pred_ctr = d[..., 0:2] * wh + ctr[:, None, :]
    half = 0.5 * (torch.exp(d[..., 2:4]) * wh)
    return torch.cat((pred_ctr - half, pred_ctr + half), dim=2).reshape(n, k)


def clip_boxes(boxes: Array, im_shape: Sequence[float] | Array) -> Array:
    """Clamp x to [0, W - 1] and y to [0, H - 1], every 4-column group; ``im_shape`` is (H, W, ...).

    Returns a new array (upstream wrote into its input and returned it; every caller used
    the return value). For torch boxes ``im_shape`` may be a tensor (e.g. ``im_info[:2]``) on
    the same device, so no value leaves the device.
    """
    _check_rows("boxes", "clip_boxes", boxes, ncols=None, multiple_of_4=True)
    if len(im_shape) < 2:
        raise ValueError(f"clip_boxes: im_shape must hold (height, width), got {im_shape!r}")
    if isinstance(boxes, torch.Tensor):
        h, w = im_shape[0], im_shape[1]
        n, k = boxes.shape
        xy = boxes.reshape(n, k // 4, 2, 2)  # [..., 0]: x1 and x2, [..., 1]: y1 and y2
        if isinstance(h, torch.Tensor) or isinstance(w, torch.Tensor):
            # (W - 1, H - 1) in the boxes' type, on their device: min(x, limit), then max(., 0)
            limits = torch.stack([torch.as_tensor(v, device=boxes.device).reshape(()) for v in (w, h)])
            limits = limits.to(boxes.dtype) - 1
            return torch.minimum(xy, limits).clamp_min_(0).reshape(n, k)
        # H - 1 and W - 1 in the boxes' type, computed on the host and passed to the kernels
        # as numbers (a tensor made on a GPU from a host number is a copy the host waits for)
        h_max = (torch.tensor(float(h), dtype=boxes.dtype) - 1).item()
        w_max = (torch.tensor(float(w), dtype=boxes.dtype) - 1).item()
        x = xy[..., 0].clamp(max=w_max).clamp_min_(0)
        y = xy[..., 1].clamp(max=h_max).clamp_min_(0)
        return torch.stack((x, y), dim=3).reshape(n, k)
    if isinstance(im_shape, torch.Tensor):
        raise TypeError("clip_boxes: NumPy boxes need a plain (height, width) im_shape, got a tensor")
    h, w = im_shape[0], im_shape[1]
    out = np.array(boxes, copy=True)
    out[:, 0::4] = np.maximum(np.minimum(boxes[:, 0::4], w - 1), 0)
    out[:, 1::4] = np.maximum(np.minimum(boxes[:, 1::4], h - 1), 0)
    out[:, 2::4] = np.maximum(np.minimum(boxes[:, 2::4], w - 1), 0)
    out[:, 3::4] = np.maximum(np.minimum(boxes[:, 3::4], h - 1), 0)
    return out
