"""RoI max pooling with Caffe's ROIPooling semantics (``torch.ops.frcnn.roi_pool_*``).

Differentiable with respect to ``features`` (backward scatters through the stored argmax);
the RoI coordinates get no gradient, as in Caffe.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from frcnn.ops._native import check_cuda_build, native


class _RoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, rois: torch.Tensor, pooled_h: int, pooled_w: int,
                spatial_scale: float) -> torch.Tensor:
        output, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, spatial_scale, pooled_h, pooled_w)
        ctx.save_for_backward(rois, argmax)
        ctx.feature_shape = tuple(features.shape)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        rois, argmax = ctx.saved_tensors
        n, c, h, w = ctx.feature_shape
        grad_features = None
        if ctx.needs_input_grad[0]:
            grad_features = torch.ops.frcnn.roi_pool_backward(grad_output, rois, argmax, n, c, h, w)
        return grad_features, None, None, None, None


def roi_pool(features: torch.Tensor, rois: torch.Tensor, pooled_h: int, pooled_w: int,
             spatial_scale: float) -> torch.Tensor:
    """Max-pool each RoI of ``features`` into a ``pooled_h x pooled_w`` grid.

    features: (N, C, H, W) float32/float64; rois: (R, 5) rows of batch_index, x1, y1, x2, y2 in
    input-image pixels, same dtype and device (float16/bfloat16 features are pooled in float32
    and returned in their dtype); ``spatial_scale`` maps them onto the map
    (0.0625 for a stride-16 trunk). Returns (R, C, pooled_h, pooled_w). Rounding follows Caffe:
    C ``round`` of the scaled corners, +1 sizes, floor/ceil bin edges clamped to the map, 0 for
    an empty bin (see csrc/roi_pool/roi_pool.h).
    """
    if isinstance(features, torch.Tensor) and features.dtype in _LOW_PRECISION:
        # half / bfloat16 features (mixed precision): pool in float32, return the input dtype
        rois32 = rois.float() if isinstance(rois, torch.Tensor) and rois.is_floating_point() else rois
        return roi_pool(features.float(), rois32, pooled_h, pooled_w, spatial_scale).to(features.dtype)
    check_roi_pool_inputs(features, rois, pooled_h, pooled_w, spatial_scale)
    check_cuda_build(features.device.type, "frcnn.ops.roi_pool")
    native()
    return _RoIPoolFunction.apply(features, rois, int(pooled_h), int(pooled_w), float(spatial_scale))


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_roi_pool_inputs(features: object, rois: object, pooled_h: object, pooled_w: object,
                          spatial_scale: object) -> None:
    """Raise TypeError/ValueError naming the argument when the inputs are malformed.

    Values inside ``rois`` (NaN/inf, batch index outside the batch) are checked by the kernels.
    """
    where = "frcnn.ops.roi_pool"
    for name, t in (("features", features), ("rois", rois)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{where}: {name} must be float32 or float64, got {t.dtype}")
    assert isinstance(features, torch.Tensor) and isinstance(rois, torch.Tensor)
    if features.dim() != 4:
        raise ValueError(f"{where}: features must have shape (N, C, H, W), got {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"{where}: rois must have shape (R, 5) [batch_index, x1, y1, x2, y2], got {tuple(rois.shape)}"
        )
    if features.dtype != rois.dtype:
        raise TypeError(f"{where}: features ({features.dtype}) and rois ({rois.dtype}) differ in dtype")
    if features.device != rois.device:
        raise ValueError(f"{where}: features is on {features.device} but rois is on {rois.device}")
    for name, v in (("pooled_h", pooled_h), ("pooled_w", pooled_w)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"{where}: {name} must be a positive int, got {v!r}")
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, numbers.Real):
        raise TypeError(f"{where}: spatial_scale must be a number, got {type(spatial_scale).__name__}")
    if not math.isfinite(spatial_scale) or spatial_scale <= 0:
        raise ValueError(f"{where}: spatial_scale must be finite and > 0, got {spatial_scale}")


class RoIPool(nn.Module):
    """``roi_pool`` as a module: ``RoIPool(pooled_h, pooled_w, spatial_scale)(features, rois)``."""

    def __init__(self, pooled_h: int, pooled_w: int, spatial_scale: float) -> None:
        super().__init__()
        check_roi_pool_inputs(torch.empty(1, 1, 1, 1), torch.empty(0, 5), pooled_h, pooled_w, spatial_scale)
        self.pooled_h = int(pooled_h)
        self.pooled_w = int(pooled_w)
        self.spatial_scale = float(spatial_scale)

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_pool(features, rois, self.pooled_h, self.pooled_w, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"pooled_h={self.pooled_h}, pooled_w={self.pooled_w}, spatial_scale={self.spatial_scale}"
