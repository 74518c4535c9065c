"""Pooling with Caffe's rules.

Output size: ``ceil((H + 2p - k) / s) + 1``, minus one when padded and the last window would
start at or beyond ``H + p``. MAX ignores padding. AVE divides by the window clipped to
``[-p, H + p)`` (so padded zeros count in the interior and at the top/left border, but not
beyond ``H + p``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..prototxt import Message
from .base import Layer, Shape, register
from .linear import hw_pair

_POOL = {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}


def pool_out(size: int, k: int, p: int, s: int) -> int:
    """Caffe's pooling output size along one axis."""
    out = math.ceil((size + 2 * p - k) / s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


def _ave_divisor(size: int, out: int, k: int, p: int, s: int) -> list[int]:
    """Per output index, the window length clipped to [-p, size + p) (Caffe's AVE divisor)."""
    sizes = []
    for i in range(out):
        start = i * s - p
        end = min(start + k, size + p)
        sizes.append(end - start)
    return sizes


class _MaxPoolChannelsLast(torch.autograd.Function):
    """MAX pooling of a contiguous NCHW CPU tensor, computed in channels-last order.

    torch's NCHW max-pool kernel on the CPU is scalar; its channels-last one is vectorised over
    the channels, about 5x faster here even with the two layout copies. Max pooling is exact
    and both kernels scan a window in the same (row, column) order keeping the first maximum,
    so the values and the argmax are the NCHW kernel's; the backward is torch's NCHW backward
    on that argmax (the channels-last backward is slower), so the gradients are too.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                pad: tuple[int, int]) -> torch.Tensor:
        y, idx = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), kernel, stride, pad,
                              ceil_mode=True, return_indices=True)
        idx = idx.contiguous()
        ctx.save_for_backward(x, idx)
        ctx.args = (kernel, stride, pad)
        return y.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, idx = ctx.saved_tensors
        kernel, stride, pad = ctx.args
        gx = torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, kernel, stride, pad, (1, 1),
                                                            True, idx)
        return gx, None, None, None


def _max_along(x: torch.Tensor, dim: int, k: int, s: int, p: int, out_len: int) -> torch.Tensor:
    """Caffe's MAX pooling along one axis of ``x``: output ``j`` is the max over the inputs
    ``[j*s - p, j*s - p + k)`` clipped to the axis (``-inf`` for a window that holds none).

    The outputs whose window lies inside the axis are ``k - 1`` element-wise maxima of strided
    slices, written straight into the output; the few clipped ones at the ends are reduced one
    by one."""
    size = x.shape[dim]
    shape = list(x.shape)
    shape[dim] = out_len
    out = x.new_empty(shape)
    first = -(-p // s)  # first output whose window starts inside the axis
    last = min(out_len - 1, (size + p - k) // s)  # last one whose window ends inside it
    n = last - first + 1
    if n > 0:
        lead = (slice(None),) * dim

        def tap(d: int) -> torch.Tensor:  # element d of every inside window
            start = first * s - p + d
            return x[lead + (slice(start, start + (n - 1) * s + 1, s),)]

        inner = out.narrow(dim, first, n)
        if k == 1:
            inner.copy_(tap(0))
        else:
            torch.maximum(tap(0), tap(1), out=inner)
            for d in range(2, k):
                torch.maximum(inner, tap(d), out=inner)
    for j in [*range(min(first, out_len)), *range(max(last + 1, first), out_len)]:
        lo, hi = max(j * s - p, 0), min(j * s - p + k, size)
        if hi > lo:
            out.narrow(dim, j, 1).copy_(x.narrow(dim, lo, hi - lo).amax(dim, keepdim=True))
        else:
            out.narrow(dim, j, 1).fill_(float("-inf"))
    return out


def _separable_max_pool(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
                        out_hw: tuple[int, int]) -> torch.Tensor:
    """Caffe's MAX pooling of an (N,C,H,W) tensor as a max over rows, then over columns (a
    window's max is the max of its rows' maxima). Values only, no argmax: for forwards that
    record no gradient. On the CPU this streams the rows (contiguous) through vectorised
    element-wise maxima: VGG16's pool1 at 600 x 1000 in about 40 ms against 110 ms for torch's
    NCHW kernel and 120 ms for the channels-last one with its two layout copies. The values
    are the kernel's: a maximum is exact, and NaN wins in both (the sign of a zero maximum
    may differ, which no later value can see but a division by it)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    rows = _max_along(x, 2, kh, sh, ph, out_hw[0])
    return _max_along(rows, 3, kw, sw, pw, out_hw[1])


def _channels_last_max_pool(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                            pad: tuple[int, int]) -> bool:
    """Whether ``_MaxPoolChannelsLast`` computes Caffe's MAX pooling of ``x``: a contiguous NCHW
    float CPU tensor (not also channels-last), and settings for which torch's ceil-mode output
    size is Caffe's (padding at most half the kernel, as torch requires; without padding a
    kernel at least as large as the stride, since torch also drops a last window that starts
    beyond the input when there is no padding, Caffe only with padding)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not x.is_contiguous():
        return False
    if x.is_contiguous(memory_format=torch.channels_last):  # (also true for C == 1 or H == W == 1)
        return False
    return all(2 * p <= k and (p > 0 or k >= s) for k, s, p in zip(kernel, stride, pad))


def caffe_pool2d(x: torch.Tensor, method: str, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int]) -> torch.Tensor:
    """MAX or AVE pooling of an (N,C,H,W) tensor with Caffe's output size and divisor."""
    _n, _c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    oh, ow = pool_out(h, kh, ph, sh), pool_out(w, kw, pw, sw)
    if oh <= 0 or ow <= 0:
        raise ValueError(f"pooling a {h}x{w} input with kernel {kernel}, pad {pad} gives no output")
    if method == "MAX" and x.device.type == "cpu" and x.is_floating_point() and not (
            torch.is_grad_enabled() and x.requires_grad):
        return _separable_max_pool(x, kernel, stride, pad, (oh, ow))
    if method == "MAX" and _channels_last_max_pool(x, kernel, stride, pad):
        return _MaxPoolChannelsLast.apply(x, tuple(kernel), tuple(stride), tuple(pad))
    # pad so that every window of the Caffe grid lies inside; extra rows never reach a window's
    # clipped area for MAX (-inf) and add zeros for AVE (its divisor is computed separately)
    extra_h = max(0, (oh - 1) * sh + kh - (h + ph))
    extra_w = max(0, (ow - 1) * sw + kw - (w + pw))
    fill = float("-inf") if method == "MAX" else 0.0
    xp = F.pad(x, (pw, extra_w, ph, extra_h), value=fill)
    if method == "MAX":
        y = F.max_pool2d(xp, (kh, kw), (sh, sw))
        return y[:, :, :oh, :ow]
    sums = F.avg_pool2d(xp, (kh, kw), (sh, sw), divisor_override=1)[:, :, :oh, :ow]
    dh = torch.tensor(_ave_divisor(h, oh, kh, ph, sh), dtype=x.dtype, device=x.device)
    dw = torch.tensor(_ave_divisor(w, ow, kw, pw, sw), dtype=x.dtype, device=x.device)
    return sums / (dh[:, None] * dw[None, :])


@register("Pooling")
class Pooling(Layer):
    low_precision = True  # max: exact in any type; average: as precise as its input type

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)
        self.expect_tops(1, 2)
        p = lp.get_msg("pooling_param")
        self.method = p.get_enum("pool", "MAX", _POOL)
        if self.method == "STOCHASTIC":
            raise self.error("STOCHASTIC pooling is not supported", "pooling_param")
        if len(self.tops) == 2 and self.method != "MAX":
            raise self.error("a second (mask) top needs MAX pooling")
        if len(self.tops) == 2:
            raise self.error("the mask top of MAX pooling is not supported")
        self.global_pooling = p.get_bool("global_pooling", False)
        if self.global_pooling:
            if "kernel_size" in p or "kernel_h" in p:
                raise self.error("global_pooling and kernel_size cannot both be given", "pooling_param")
            self.kernel = None
        else:
            self.kernel = hw_pair(lp, p, "kernel_size", None, self)
            if min(self.kernel) <= 0:
                raise self.error("kernel_size must be positive", "pooling_param")
        self.pad = hw_pair(lp, p, "pad", 0, self)
        self.stride = hw_pair(lp, p, "stride", 1, self)
        if min(self.stride) <= 0:
            raise self.error("stride must be positive", "pooling_param")
        if self.global_pooling and (self.pad != (0, 0) or self.stride != (1, 1)):
            raise self.error("global_pooling needs pad 0 and stride 1", "pooling_param")
        if self.kernel is not None and (self.pad[0] >= self.kernel[0] or self.pad[1] >= self.kernel[1]):
            raise self.error(f"pad {self.pad} must be smaller than kernel {self.kernel}", "pooling_param")
        s0 = bottom_shapes[0]
        if s0 is not None and len(s0) != 4:
            raise self.error(f"needs a 4-D bottom (N,C,H,W), got shape {s0}")

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        s = bottom_shapes[0]
        if s is None:
            return [None]
        if self.global_pooling:
            return [(s[0], s[1], 1, 1)]
        h = None if s[2] is None else pool_out(s[2], self.kernel[0], self.pad[0], self.stride[0])
        w = None if s[3] is None else pool_out(s[3], self.kernel[1], self.pad[1], self.stride[1])
        if (h is not None and h <= 0) or (w is not None and w <= 0):
            raise self.error(f"kernel {self.kernel} is larger than the padded input: pooling a {s[2]}x{s[3]} "
                             f"bottom with pad {self.pad} gives no output", "pooling_param")
        return [(s[0], s[1], h, w)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        if x.dim() != 4:
            raise self.error(f"needs a 4-D bottom (N,C,H,W), got shape {tuple(x.shape)}")
        kernel = (x.shape[2], x.shape[3]) if self.global_pooling else self.kernel
        try:
            return (caffe_pool2d(x, self.method, kernel, self.stride, self.pad),)
        except ValueError as e:
            raise self.error(str(e)) from None
