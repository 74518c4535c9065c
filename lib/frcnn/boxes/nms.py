"""NMS on upstream's (N, 5) detections, and the NMS a config asks for.

- ``nms_dets(dets, thresh, force_cpu=False, device=None)``: upstream's
  ``fast_rcnn.nms_wrapper.nms`` (that path is an alias of it). The kernel follows the data:
  torch tensors on a CUDA device use the CUDA kernel, everything else the (multi-core) CPU
  kernel; NumPy input stays on the CPU unless a ``device`` is given; ``force_cpu`` always
  picks the CPU kernel.
- ``nms_from_config(cfg)``: the ``nms_fn(dets, thresh)`` every tool uses (test_net, demo,
  time_net, reval), so that ``USE_GPU_NMS`` means one thing everywhere: NMS on the configured
  GPU when ``USE_GPU_NMS`` is set and the run is on a GPU (``frcnn.config.device_from_config``),
  else on the CPU.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Union

import numpy as np
import torch

from frcnn.config import device_from_config
from frcnn.ops.nms import nms as _ops_nms

Dets = Union[np.ndarray, torch.Tensor]


def nms_dets(dets: Dets, thresh: float, force_cpu: bool = False,
             device: str | torch.device | None = None) -> Dets:
    """Kept row indices of ``dets`` (x1, y1, x2, y2, score) in descending score order.

    A box is suppressed when its IoU with a kept box is strictly greater than ``thresh``.
    Returns a NumPy int64 array for NumPy input, an int64 tensor on the input's device for
    tensor input (on the CPU when ``force_cpu``). ``device`` moves NumPy input to that device
    first (for example ``"cuda:0"``); it is ignored when ``force_cpu`` is set.

    ``dets`` and ``thresh`` are checked here, under their names; NaN/inf values are reported
    by the kernel (``frcnn::nms: boxes contains NaN or inf``).
    """
    where = "frcnn.boxes.nms_dets"
    if isinstance(dets, torch.Tensor):
        is_numpy = False
        if not dets.is_floating_point():
            raise TypeError(f"{where}: dets must be a floating-point tensor, got {dets.dtype}")
        tensor = dets
    elif isinstance(dets, np.ndarray):
        is_numpy = True
        if dets.dtype not in (np.float32, np.float64):
            raise TypeError(f"{where}: dets must be float32 or float64, got {dets.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(dets))
    else:
        raise TypeError(f"{where}: dets must be a NumPy array or torch tensor, got {type(dets).__name__}")
    if tensor.dim() != 2 or tensor.shape[1] != 5:
        raise ValueError(f"{where}: dets must have shape (N, 5), got {tuple(tensor.shape)}")
    if isinstance(thresh, bool) or not isinstance(thresh, numbers.Real) or not math.isfinite(thresh):
        raise ValueError(f"{where}: thresh must be a finite number, got {thresh!r}")

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


def nms_device(cfg: Any) -> torch.device:
    """Where the tools run NMS: ``cuda:<GPU_ID>`` when ``cfg.USE_GPU_NMS`` and the run is on that
    GPU (``GPU_ID >= 0`` and CUDA available), else the CPU."""
    device = device_from_config(cfg)
    if cfg.USE_GPU_NMS and device.type == "cuda":
        return device
    return torch.device("cpu")


def nms_from_config(cfg: Any) -> Callable[[Dets, float], Dets]:
    """The NMS the config asks for, as ``nms_fn(dets, thresh) -> keep`` (see ``nms_device``).

    NumPy detections go to the chosen device and the kept indices come back as NumPy; on the
    CPU choice torch detections are moved to the CPU too (upstream's ``force_cpu``).
    """
    device = nms_device(cfg)
    if device.type == "cpu":

        def cpu_nms(dets: Dets, thresh: float) -> Dets:
            return nms_dets(dets, thresh, force_cpu=True)

        return cpu_nms

    def gpu_nms(dets: Dets, thresh: float) -> Dets:
        return nms_dets(dets, thresh, device=device)

    return gpu_nms
