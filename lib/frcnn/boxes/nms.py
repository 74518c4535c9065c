"""Upstream's NMS entry point: ``nms(dets, thresh, force_cpu=False)`` on (N, 5) detections.

The kernel follows the data: torch tensors on a CUDA device use the CUDA kernel, everything
else the (multi-core) CPU kernel. NumPy input stays on the CPU unless a ``device`` is given
(the tools pass the configured GPU). ``force_cpu`` always picks the CPU kernel.
"""

from __future__ import annotations

import math
import numbers
from typing import Union

import numpy as np
import torch

from frcnn.ops.nms import nms as _ops_nms

Dets = Union[np.ndarray, torch.Tensor]


def nms_dets(dets: Dets, thresh: float, force_cpu: bool = False,
        device: str | torch.device | None = None) -> Dets:
    """Kept row indices of ``dets`` (x1, y1, x2, y2, score) in descending score order.

    A box is suppressed when its IoU with a kept box is strictly greater than ``thresh``.
    Returns a NumPy int64 array for NumPy input, an int64 tensor on the input's device for
    tensor input (on the CPU when ``force_cpu``). ``device`` moves NumPy input to that device
    first (for example ``"cuda:0"``); it is ignored when ``force_cpu`` is set.
    """
    if isinstance(dets, torch.Tensor):
        is_numpy = False
        tensor = dets
    elif isinstance(dets, np.ndarray):
        is_numpy = True
        if dets.dtype not in (np.float32, np.float64):
            raise TypeError(f"nms_wrapper.nms: dets must be float32 or float64, got {dets.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(dets))
    else:
        raise TypeError(f"nms_wrapper.nms: dets must be a NumPy array or torch tensor, got {type(dets).__name__}")
    if tensor.dim() != 2 or tensor.shape[1] != 5:
        raise ValueError(f"nms_wrapper.nms: dets must have shape (N, 5), got {tuple(tensor.shape)}")
    if isinstance(thresh, bool) or not isinstance(thresh, numbers.Real) or not math.isfinite(thresh):
        raise ValueError(f"nms_wrapper.nms: thresh must be a finite number, got {thresh!r}")

    if force_cpu:
        tensor = tensor.cpu()
    elif is_numpy and device is not None:
        tensor = tensor.to(device)
    if tensor.shape[0] == 0:
        keep = torch.empty(0, dtype=torch.int64, device=tensor.device)
    else:
        keep = _ops_nms(tensor[:, :4], tensor[:, 4], float(thresh))
    if is_numpy:
        return keep.cpu().numpy()
    return keep
