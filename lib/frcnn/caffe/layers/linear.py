"""Convolution and InnerProduct, with Caffe's blob shapes and output-size rule."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..prototxt import Message
from .base import Layer, Shape, prod, register


def hw_pair(lp: Message, p: Message, field: str, default: int | None, layer: Layer) -> tuple[int, int]:
    """Caffe's 2-D setting: ``field`` once (both axes) or twice (h, w), or ``field_h``/``field_w``."""
    vals = p.get_ints(field)
    stem = "kernel" if field == "kernel_size" else field  # kernel_h, pad_h, stride_h
    h, w = p.get_int(stem + "_h"), p.get_int(stem + "_w")
    if h is not None or w is not None:
        if vals:
            raise layer.error(f"give either {field} or {stem}_h/{stem}_w, not both", field)
        if h is None or w is None:
            raise layer.error(f"{stem}_h and {stem}_w must be given together", stem + "_h")
        out = (h, w)
    elif not vals:
        if default is None:
            raise layer.error(f"{field} is required")
        out = (default, default)
    elif len(vals) == 1:
        out = (vals[0], vals[0])
    elif len(vals) == 2:
        out = (vals[0], vals[1])
    else:
        raise layer.error(f"{field} given {len(vals)} times; this engine handles 2-D (1 or 2 values)")
    if any(v < 0 for v in out):
        raise layer.error(f"{field} must not be negative, got {out}")
    return out


def conv_out(size: int | None, k: int, p: int, s: int, d: int = 1) -> int | None:
    """Caffe's convolution output size: floor((H + 2p - (d(k-1)+1)) / s) + 1."""
    if size is None:
        return None
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


@register("Convolution")
class Convolution(Layer):
    low_precision = True  # autocast computes it in its type
    #: inputs and weights in NHWC memory order (Net.set_channels_last)
    channels_last = False

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1, 99)
        if len(self.tops) != len(self.bottoms):
            raise self.error(f"needs one top per bottom, got {len(self.bottoms)} bottoms and {len(self.tops)} tops")
        p = lp.get_msg("convolution_param")
        self.num_output = p.get_int("num_output")
        if not self.num_output or self.num_output <= 0:
            raise self.error("convolution_param.num_output must be a positive integer", "convolution_param")
        self.kernel = hw_pair(lp, p, "kernel_size", None, self)
        self.pad = hw_pair(lp, p, "pad", 0, self)
        self.stride = hw_pair(lp, p, "stride", 1, self)
        self.dilation = hw_pair(lp, p, "dilation", 1, self)
        if min(self.kernel) <= 0 or min(self.stride) <= 0 or min(self.dilation) <= 0:
            raise self.error("kernel_size, stride and dilation must be positive", "convolution_param")
        self.group = p.get_int("group", 1)
        if self.group <= 0 or self.num_output % self.group:
            raise self.error(f"num_output {self.num_output} is not divisible by group {self.group}")
        if p.get_int("axis", 1) != 1:
            raise self.error("convolution_param.axis other than 1 is not supported")
        self.bias_term = p.get_bool("bias_term", True)
        s0 = bottom_shapes[0]
        if s0 is not None and len(s0) != 4:
            raise self.error(f"needs a 4-D bottom (N,C,H,W), got shape {s0}")
        c = s0[1] if s0 is not None else None
        if c is not None and c % self.group:
            raise self.error(f"bottom channels {c} are not divisible by group {self.group}")
        w_shape = (self.num_output, None if c is None else c // self.group, *self.kernel)
        plan = [(w_shape, p.get_msg("weight_filler") if "weight_filler" in p else None, 0.0)]
        if self.bias_term:
            plan.append(((self.num_output,), p.get_msg("bias_filler") if "bias_filler" in p else None, 0.0))
        self.plan_blobs(plan)

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        out = []
        for s in bottom_shapes:
            if s is None:
                out.append((None, self.num_output, None, None))
                continue
            out.append((s[0], self.num_output, *self._out_hw(s[2], s[3])))
        return out

    def _out_hw(self, h: int | None, w: int | None) -> tuple[int | None, int | None]:
        """The output size (Caffe's rule); a kernel larger than the padded input is an error."""
        oh = conv_out(h, self.kernel[0], self.pad[0], self.stride[0], self.dilation[0])
        ow = conv_out(w, self.kernel[1], self.pad[1], self.stride[1], self.dilation[1])
        if (oh is not None and oh <= 0) or (ow is not None and ow <= 0):
            extent = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))
            dilated = f" (dilated by {self.dilation})" if self.dilation != (1, 1) else ""
            raise self.error(f"kernel {extent}{dilated} is larger than the padded input: a {h}x{w} bottom with "
                             f"pad {self.pad} gives no output", "convolution_param")
        return oh, ow

    def forward(self, *bottoms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x0 = bottoms[0]
        if x0.dim() != 4:
            raise self.error(f"needs a 4-D bottom (N,C,H,W), got shape {tuple(x0.shape)}")
        if self.blobs_pending():
            c = x0.shape[1]
            if c % self.group:
                raise self.error(f"bottom channels {c} are not divisible by group {self.group}")
            shapes = [(self.num_output, c // self.group, *self.kernel)] + ([(self.num_output,)] if self.bias_term else [])
            self.materialize(shapes, x0.device)
        w = self.blobs[0]
        b = self.blobs[1] if self.bias_term else None
        if self.channels_last and not w.is_contiguous(memory_format=torch.channels_last):
            with torch.no_grad():  # once: the parameter keeps its identity (the solver holds it)
                w.data = w.data.contiguous(memory_format=torch.channels_last)
        outs = []
        for x in bottoms:
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if x.dim() != 4 or x.shape[1] != w.shape[1] * self.group:
                raise self.error(f"bottom shape {tuple(x.shape)} does not fit weights {tuple(w.shape)} "
                                 f"(group {self.group})")
            self._out_hw(x.shape[2], x.shape[3])
            outs.append(F.conv2d(x, w, b, self.stride, self.pad, self.dilation, self.group))
        return tuple(outs)


@register("InnerProduct")
class InnerProduct(Layer):
    low_precision = True  # autocast computes it in its type

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)
        self.expect_tops(1)
        p = lp.get_msg("inner_product_param")
        self.num_output = p.get_int("num_output")
        if not self.num_output or self.num_output <= 0:
            raise self.error("inner_product_param.num_output must be a positive integer", "inner_product_param")
        self.bias_term = p.get_bool("bias_term", True)
        self.transpose = p.get_bool("transpose", False)
        self.axis = p.get_int("axis", 1)
        s0 = bottom_shapes[0]
        k = None
        if s0 is not None:
            self.axis = self._axis(len(s0))
            k = prod(s0[self.axis:])
        w_shape = (k, self.num_output) if self.transpose else (self.num_output, k)
        plan = [(w_shape, p.get_msg("weight_filler") if "weight_filler" in p else None, 0.0)]
        if self.bias_term:
            plan.append(((self.num_output,), p.get_msg("bias_filler") if "bias_filler" in p else None, 0.0))
        self.plan_blobs(plan)

    def _axis(self, rank: int) -> int:
        a = self.axis + rank if self.axis < 0 else self.axis
        if not 0 <= a < rank:
            raise self.error(f"axis {self.axis} is out of range for a {rank}-D bottom")
        return a

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        s = bottom_shapes[0]
        if s is None:
            return [None]
        return [(*s[: self._axis(len(s))], self.num_output)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        a = self._axis(x.dim())
        flat = x.reshape(*x.shape[:a], -1)  # (..., C, H, W) -> (..., C*H*W)
        if self.blobs_pending():
            k = flat.shape[-1]
            w_shape = (k, self.num_output) if self.transpose else (self.num_output, k)
            self.materialize([w_shape] + ([(self.num_output,)] if self.bias_term else []), x.device)
        w = self.blobs[0].t() if self.transpose else self.blobs[0]
        if flat.shape[-1] != w.shape[1]:
            raise self.error(f"bottom has {flat.shape[-1]} inputs per item (shape {tuple(x.shape)}, axis {a}) "
                             f"but the weights expect {w.shape[1]}")
        return (F.linear(flat, w, self.blobs[1] if self.bias_term else None),)
