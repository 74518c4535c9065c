"""Class-specific box targets: (R, 4) regression targets spread over 4K columns.

Fast R-CNN's box head predicts 4 numbers per class; a RoI of class ``c > 0`` is trained on
columns ``4c .. 4c+3`` only. Both minibatch makers (the data layer's ``roi_data.minibatch``
and the end2end ``rpn.proposal_target_layer``) expand their targets with this one function:

- ``bbox_targets`` (R, 4K) float32: the row's 4 targets at its class's columns, 0 elsewhere;
- ``bbox_inside_weights`` (R, 4K) float32: the 4 ``inside_weights`` there, 0 elsewhere;
- background rows (class 0) are all zero. (The outside weights, ``inside > 0``, are the
  callers'.)

Class ids may come as floats (the gt blob and the roidb's target rows hold them so); they
are truncated to integers before indexing, as upstream's fix for #480 did. An id outside
``[0, num_classes)`` is an error naming ``where``. The torch form runs on the tensors' device
without host synchronisation (see ``_expand_torch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from frcnn.roi_data.device_values import device_constant
from frcnn.roi_data.sampling import where_true

Array = Union[np.ndarray, torch.Tensor]


def expand_bbox_targets(
    classes: Array,
    targets: Array,
    num_classes: int,
    inside_weights: Sequence[float],
    where: str = "expand_bbox_targets",
) -> tuple[Array, Array]:
    """(bbox_targets, bbox_inside_weights), both (R, 4 * num_classes) float32, of the same
    kind as ``classes`` (NumPy, or torch on its device); ``targets`` is (R, 4) of that kind."""
    if classes.shape[0] != targets.shape[0] or targets.ndim != 2 or targets.shape[1] != 4:
        raise ValueError(
            f"{where}: need classes (R,) and targets (R, 4), got shapes {tuple(classes.shape)}, "
            f"{tuple(targets.shape)}"
        )
    r = classes.shape[0]
    if isinstance(classes, torch.Tensor):
        return _expand_torch(classes, targets, num_classes, inside_weights, where)
    cls = np.asarray(classes).astype(np.int64)
    out = np.zeros((r, 4 * num_classes), dtype=np.float32)
    inside = np.zeros_like(out)
    weights = np.asarray(inside_weights, dtype=np.float32)
    bad = (cls < 0) | (cls >= num_classes)
    if r > 0 and bool(bad.any()):
        raise ValueError(f"{where}: class ids must be in [0, {num_classes}), got {sorted(set(cls.tolist()))}")
    fg = where_true(cls > 0)
    rows = fg[:, None]
    cols = 4 * cls[fg][:, None] + np.arange(4)[None, :]  # (F, 4): columns 4c .. 4c+3
    out[rows, cols] = targets[fg]
    inside[rows, cols] = weights
    return out, inside


def _expand_torch(
    classes: torch.Tensor, targets: torch.Tensor, num_classes: int, inside_weights: Sequence[float], where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch form, fixed-size (a scatter per row; no count leaves the device). The class-id
    check needs the ids on the host: it runs on CPU tensors; on a GPU it is a device-side
    assertion (the training data layer has checked the gt classes on the host already)."""
    device = classes.device
    r = classes.shape[0]
    cls = classes.long()
    bad = (cls < 0) | (cls >= num_classes)
    if device.type == "cpu":
        if r > 0 and bool(bad.any()):
            raise ValueError(f"{where}: class ids must be in [0, {num_classes}), got {sorted(set(cls.tolist()))}")
    elif r > 0:
        torch._assert_async(~bad.any(), f"{where}: class ids must be in [0, {num_classes})")
    out = torch.zeros((r, 4 * num_classes), dtype=torch.float32, device=device)
    inside = torch.zeros_like(out)
    fg = (cls > 0)[:, None]
    weights = device_constant(tuple(inside_weights), torch.float32, device)
    cols = 4 * cls.clamp(0, num_classes - 1)[:, None] + torch.arange(4, device=device)[None, :]  # (R, 4)
    zero = torch.zeros((), dtype=torch.float32, device=device)
    # background rows write zeros into columns 0..3, which hold zeros already
    out.scatter_(1, cols, torch.where(fg, targets.to(torch.float32), zero))
    inside.scatter_(1, cols, torch.where(fg, weights[None, :], zero).expand(r, 4).contiguous())
    return out, inside
