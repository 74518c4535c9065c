"""LRN (across and within channels), BatchNorm (Caffe's three blobs) and Scale."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..prototxt import Message
from .base import Layer, Shape, register

_REGION = {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1}


@register("LRN")
class LRN(Layer):
    """ACROSS_CHANNELS: ``x * (k + alpha/n * sum_{n channels} x^2)^-beta`` (zero-padded window).
    WITHIN_CHANNEL: ``x * (1 + alpha * avgpool_{n x n, pad (n-1)/2}(x^2))^-beta``; the average
    divides by n^2 everywhere (padding counted) and ``k`` is unused, as Caffe."""

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)
        self.expect_tops(1)
        p = lp.get_msg("lrn_param")
        self.size = p.get_int("local_size", 5)
        if self.size <= 0 or self.size % 2 == 0:
            raise self.error(f"local_size must be a positive odd number, got {self.size}", "lrn_param")
        self.alpha = p.get_float("alpha", 1.0)
        self.beta = p.get_float("beta", 0.75)
        self.k = p.get_float("k", 1.0)
        self.region = p.get_enum("norm_region", "ACROSS_CHANNELS", _REGION)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        if x.dim() != 4:
            raise self.error(f"needs a 4-D bottom, got shape {tuple(x.shape)}")
        half = (self.size - 1) // 2
        sq = x * x
        if self.region == "ACROSS_CHANNELS":
            # sum over a window of channels: pad the channel axis and pool it as a 3-D volume
            s = F.pad(sq.unsqueeze(1), (0, 0, 0, 0, half, half))
            s = F.avg_pool3d(s, (self.size, 1, 1), stride=1, divisor_override=1).squeeze(1)
            scale = self.k + (self.alpha / self.size) * s
        else:
            avg = F.avg_pool2d(sq, self.size, stride=1, padding=half, count_include_pad=True)
            scale = 1.0 + self.alpha * avg
        return (x * scale.pow(-self.beta),)


@register("BatchNorm")
class BatchNorm(Layer):
    """Caffe's BatchNorm (no affine part; pair it with Scale). Blobs: running mean sum,
    running variance sum, and the scale factor ``s``; the statistics are ``blob / s``.
    Training updates ``s <- maf * s + 1``, ``mean_sum <- maf * mean_sum + mean`` and
    ``var_sum <- maf * var_sum + m/(m-1) * var``. The blobs are never trained by the solver."""

    learnable_blobs = False

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)
        self.expect_tops(1)
        p = lp.get_msg("batch_norm_param")
        self.use_global_stats = p.get_bool("use_global_stats", phase == "TEST")
        self.maf = p.get_float("moving_average_fraction", 0.999)
        self.eps = p.get_float("eps", 1e-5)
        s0 = bottom_shapes[0]
        c = s0[1] if s0 is not None and len(s0) > 1 else None
        self.plan_blobs([((c,), None, 0.0), ((c,), None, 0.0), ((1,), None, 0.0)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        if x.dim() < 2:
            raise self.error(f"needs a bottom of at least 2 axes, got shape {tuple(x.shape)}")
        c = x.shape[1]
        self.materialize([(c,), (c,), (1,)], x.device)
        if self.blobs[0].shape[0] != c:
            raise self.error(f"bottom has {c} channels, the blobs {self.blobs[0].shape[0]}")
        if self.use_global_stats:  # Caffe: the flag (default: TEST phase) decides, not the mode
            sf = self.blobs[2].detach()
            factor = torch.where(sf == 0, torch.zeros_like(sf), 1.0 / sf)
            mean, var = self.blobs[0].detach() * factor, self.blobs[1].detach() * factor
            return (F.batch_norm(x, mean, var, None, None, False, 0.0, self.eps),)
        # Batch statistics through the fused kernel. With momentum 1 the two buffers come back
        # holding this batch's mean and its unbiased (m/(m-1)) variance, which is exactly what
        # Caffe adds to its running sums.
        batch_mean = torch.zeros(c, dtype=x.dtype, device=x.device)
        batch_var = torch.ones(c, dtype=x.dtype, device=x.device)
        y = F.batch_norm(x, batch_mean, batch_var, None, None, True, 1.0, self.eps)
        with torch.no_grad():
            self.blobs[2].mul_(self.maf).add_(1.0)
            self.blobs[0].mul_(self.maf).add_(batch_mean.to(self.blobs[0].dtype))
            self.blobs[1].mul_(self.maf).add_(batch_var.to(self.blobs[1].dtype))
        return (y,)


class _ScaleBias(torch.autograd.Function):
    """``torch.addcmul(bias, x, scale)`` (bias and scale broadcast over ``x``) with a leaner backward.

    The forward is that very call. Its autograd formula computes the scale's gradient as
    ``grad * (x * 1)``: a copy of ``x`` the size of the bottom (the first Scale layer of the SMALL
    net: 4 MB per iteration) before the product; here ``grad * x``, the same numbers
    (``x * 1 == x``). The other two are addcmul's too: ``grad * scale`` and ``sum_to(grad)``.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, scale)
        ctx.shapes = (scale.shape, bias.shape)
        return torch.addcmul(bias, x, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, scale = ctx.saved_tensors
        scale_shape, bias_shape = ctx.shapes
        gx = grad * scale if ctx.needs_input_grad[0] else None
        gs = (grad * x).sum_to_size(scale_shape) if ctx.needs_input_grad[1] else None
        gb = grad.sum_to_size(bias_shape) if ctx.needs_input_grad[2] else None
        return gx, gs, gb


@register("Scale")
class Scale(Layer):
    """``y = x * scale (+ bias)``, scale broadcast over axes ``[axis, axis+num_axes)``; the scale
    is a blob (filler default constant 1) or, with two bottoms, bottom 1."""

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1, 2)
        self.expect_tops(1)
        p = lp.get_msg("scale_param")
        self.axis = p.get_int("axis", 1)
        self.num_axes = p.get_int("num_axes", 1)
        self.bias_term = p.get_bool("bias_term", False)
        self.from_bottom = len(self.bottoms) == 2
        s0 = bottom_shapes[0]
        if self.from_bottom:
            shape = bottom_shapes[1]
        elif s0 is None:
            shape = None
        else:
            a = self._axis(len(s0))
            end = len(s0) if self.num_axes == -1 else a + self.num_axes
            shape = tuple(s0[a:end])
        plan = []
        if not self.from_bottom:
            filler = p.get_msg("filler") if "filler" in p else None
            plan.append((shape if shape is not None else (None,), filler, 1.0))
        if self.bias_term:
            filler = p.get_msg("bias_filler") if "bias_filler" in p else None
            plan.append((shape if shape is not None else (None,), filler, 0.0))
        if plan:
            self.plan_blobs(plan)

    def _axis(self, rank: int) -> int:
        a = self.axis + rank if self.axis < 0 else self.axis
        if not 0 <= a <= rank:
            raise self.error(f"axis {self.axis} is out of range for a {rank}-D bottom")
        return a

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor]:
        a = self._axis(x.dim())
        if self.from_bottom:
            shape = tuple(rest[0].shape)
        else:
            end = x.dim() if self.num_axes == -1 else a + self.num_axes
            shape = tuple(x.shape[a:end])
        if self._blob_plan is not None:
            self.materialize([shape] * len(self._blob_plan), x.device)
        scale = rest[0] if self.from_bottom else self.blobs[0]
        if tuple(x.shape[a:a + scale.dim()]) != tuple(scale.shape):
            raise self.error(f"scale shape {tuple(scale.shape)} does not match bottom {tuple(x.shape)} at axis {a}")
        view = (1,) * a + tuple(scale.shape) + (1,) * (x.dim() - a - scale.dim())
        if self.bias_term:
            bias = self.blobs[-1].reshape(view)
            if torch.is_grad_enabled() and x.dtype == bias.dtype == scale.dtype:
                return (_ScaleBias.apply(x, scale.reshape(view), bias),)
            return (torch.addcmul(bias, x, scale.reshape(view)),)
        return (x * scale.reshape(view),)
