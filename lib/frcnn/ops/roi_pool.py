"""RoI max pooling with Caffe's ROIPooling semantics (``torch.ops.frcnn.roi_pool_*``).

Differentiable with respect to ``features`` (backward through the stored argmax); the RoI
coordinates get no gradient, as in Caffe.

Backward, two ways (csrc/roi_pool/roi_pool.h):
- default: a scatter through the argmax. On the CPU it runs in one fixed order (parallel over
  channels, whose planes are disjoint), so it is deterministic by construction; on a GPU it
  uses atomicAdd, so float32 sums vary in their last bits from run to run.
- ``deterministic=True`` (or ``torch.use_deterministic_algorithms(True)``): on a GPU a gather,
  each input cell summing the gradients of the bins whose argmax it is in a fixed order, with
  no atomics: bit-identical across runs and equal to the CPU result. The CPU keeps its scatter
  (already deterministic; the same sums in the same order).

Checks are made once: this wrapper checks what the op's dispatcher needs (tensors on one
device, plain int / float parameters, a build with the device's kernels); shapes, dtypes and
values (RoI rows, argmax entries) are checked by the C++ ops, which raise ``ValueError`` /
``TypeError`` naming the argument, for raw callers of ``torch.ops.frcnn.*`` too.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from frcnn.ops._native import check_cuda_build, check_same_device, check_tensor, native

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class _RoIPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, rois: torch.Tensor, pooled_h: int, pooled_w: int,
                spatial_scale: float, deterministic: bool) -> torch.Tensor:
        output, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, spatial_scale, pooled_h, pooled_w)
        ctx.save_for_backward(rois, argmax)
        ctx.feature_shape = tuple(features.shape)
        ctx.spatial_scale = spatial_scale
        ctx.gather = deterministic and features.device.type == "cuda"
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        rois, argmax = ctx.saved_tensors
        n, c, h, w = ctx.feature_shape
        grad_features = None
        if ctx.needs_input_grad[0]:
            if ctx.gather:
                grad_features = torch.ops.frcnn.roi_pool_backward_gather(
                    grad_output, rois, argmax, ctx.spatial_scale, n, c, h, w)
            else:
                grad_features = torch.ops.frcnn.roi_pool_backward(grad_output, rois, argmax, n, c, h, w)
        return grad_features, None, None, None, None, None


def roi_pool(features: torch.Tensor, rois: torch.Tensor, pooled_h: int, pooled_w: int,
             spatial_scale: float, deterministic: bool | None = None) -> torch.Tensor:
    """Max-pool each RoI of ``features`` into a ``pooled_h x pooled_w`` grid.

    features: (N, C, H, W) float32/float64; rois: (R, 5) rows of batch_index, x1, y1, x2, y2 in
    input-image pixels, same dtype and device (float16/bfloat16 features are pooled in float32
    and returned in their dtype); ``spatial_scale`` maps them onto the map
    (0.0625 for a stride-16 trunk). Returns (R, C, pooled_h, pooled_w). Rounding follows Caffe:
    C ``round`` of the scaled corners, +1 sizes, floor/ceil bin edges clamped to the map, 0 for
    an empty bin (see csrc/roi_pool/roi_pool.h).

    ``deterministic``: the GPU backward without atomics (see the module docstring); ``None``
    follows ``torch.are_deterministic_algorithms_enabled()``.
    """
    _check_params(pooled_h, pooled_w, spatial_scale, deterministic, "frcnn.ops.roi_pool", values=False)
    return _roi_pool(features, rois, int(pooled_h), int(pooled_w), float(spatial_scale), deterministic)


def _roi_pool(features: torch.Tensor, rois: torch.Tensor, pooled_h: int, pooled_w: int,
              spatial_scale: float, deterministic: bool | None) -> torch.Tensor:
    where = "frcnn.ops.roi_pool"
    check_tensor(features, "features", where)
    check_tensor(rois, "rois", where)
    check_same_device(features, rois, "features", "rois", where)
    check_cuda_build(features.device.type, where)
    if features.dtype in _LOW_PRECISION:
        # half / bfloat16 features (mixed precision): pool in float32, return the input dtype
        rois32 = rois.float() if rois.is_floating_point() else rois
        return _roi_pool(features.float(), rois32, pooled_h, pooled_w, spatial_scale,
                         deterministic).to(features.dtype)
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    native()
    return _RoIPoolFunction.apply(features, rois, pooled_h, pooled_w, spatial_scale, deterministic)


def _check_params(pooled_h: object, pooled_w: object, spatial_scale: object, deterministic: object,
                  where: str, values: bool) -> None:
    """ValueError / TypeError naming the parameter. The types are checked always (the op's
    schema takes plain ints and floats); the values only when ``values`` (``RoIPool``, which
    calls no op when it is built: the ops check the values themselves)."""
    for name, v in (("pooled_h", pooled_h), ("pooled_w", pooled_w)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or (values and v <= 0):
            raise ValueError(f"{where}: {name} must be a positive int, got {v!r}")
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, numbers.Real):
        raise TypeError(f"{where}: spatial_scale must be a number, got {type(spatial_scale).__name__}")
    if values and not (0 < spatial_scale < float("inf")):
        raise ValueError(f"{where}: spatial_scale must be finite and > 0, got {spatial_scale}")
    if deterministic is not None and not isinstance(deterministic, bool):
        raise TypeError(f"{where}: deterministic must be True, False or None, got {deterministic!r}")


class RoIPool(nn.Module):
    """``roi_pool`` as a module: ``RoIPool(pooled_h, pooled_w, spatial_scale)(features, rois)``."""

    def __init__(self, pooled_h: int, pooled_w: int, spatial_scale: float,
                 deterministic: bool | None = None) -> None:
        super().__init__()
        _check_params(pooled_h, pooled_w, spatial_scale, deterministic, "RoIPool", values=True)
        self.pooled_h = int(pooled_h)
        self.pooled_w = int(pooled_w)
        self.spatial_scale = float(spatial_scale)
        self.deterministic = deterministic

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return _roi_pool(features, rois, self.pooled_h, self.pooled_w, self.spatial_scale, self.deterministic)

    def extra_repr(self) -> str:
        extra = "" if self.deterministic is None else f", deterministic={self.deterministic}"
        return f"pooled_h={self.pooled_h}, pooled_w={self.pooled_w}, spatial_scale={self.spatial_scale}{extra}"
