"""Caffe's weight fillers (``FillerParameter``), drawing from torch's global RNG.

constant (value), gaussian (mean, std), uniform (min, max), xavier and msra (variance_norm
FAN_IN / FAN_OUT / AVERAGE, fan_in = count / shape[0], fan_out = count / shape[1]),
positive_unitball (uniform [0,1] rows scaled to sum 1), bilinear (upsampling kernels).
"""

from __future__ import annotations

import math

import torch

from .prototxt import Message, PrototxtError

_NORMS = {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2}


def _fans(t: torch.Tensor, where: str) -> tuple[float, float]:
    if t.dim() < 2 and t.numel() > 0:
        # a 1-D blob (a bias): fan_in = 1, fan_out = count, as count / shape(0) and count / 1
        return t.numel() / t.shape[0], float(t.numel())
    if t.numel() == 0:
        return 1.0, 1.0
    return t.numel() / t.shape[0], t.numel() / t.shape[1]


def fill(t: torch.Tensor, filler: Message | None, default_value: float = 0.0, where: str = "filler") -> torch.Tensor:
    """Fill ``t`` in place from a ``FillerParameter`` message (None: constant ``default_value``)."""
    with torch.no_grad():
        if filler is None:
            return t.fill_(default_value)
        kind = filler.get_str("type", "constant")
        if kind == "constant":
            return t.fill_(filler.get_float("value", 0.0))
        if kind == "gaussian":
            if filler.get_int("sparse", -1) not in (-1, 0):
                raise filler.error("sparse", f"{where}: sparse gaussian fillers are not supported")
            mean, std = filler.get_float("mean", 0.0), filler.get_float("std", 1.0)
            if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
                raise filler.error("std", f"{where}: a gaussian filler needs a finite mean and std >= 0, got "
                                          f"mean {mean}, std {std}")
            return t.normal_(mean, std)
        if kind == "uniform":
            lo, hi = filler.get_float("min", 0.0), filler.get_float("max", 1.0)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise filler.error("min", f"{where}: a uniform filler needs finite min <= max, got [{lo}, {hi}]")
            return t.uniform_(lo, hi)
        if kind in ("xavier", "msra"):
            fan_in, fan_out = _fans(t, where)
            norm = filler.get_enum("variance_norm", "FAN_IN", _NORMS)
            n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[norm]
            if kind == "xavier":
                scale = math.sqrt(3.0 / n)
                return t.uniform_(-scale, scale)
            return t.normal_(0.0, math.sqrt(2.0 / n))
        if kind == "positive_unitball":
            t.uniform_(0.0, 1.0)
            rows = t.reshape(t.shape[0], -1) if t.dim() > 0 else t.reshape(1, -1)
            rows.div_(rows.sum(dim=1, keepdim=True))
            return t
        if kind == "bilinear":
            if t.dim() != 4 or t.shape[2] != t.shape[3]:
                raise PrototxtError(f"{filler.where()}: {where}: bilinear filler needs a square 4-D blob")
            k = t.shape[3]
            f = math.ceil(k / 2.0)
            c = (2 * f - 1 - f % 2) / (2.0 * f)
            x = torch.arange(k, dtype=torch.float64)
            w1 = 1 - (x / f - c).abs()
            t.copy_((w1[:, None] * w1[None, :]).to(t.dtype).expand_as(t))
            return t
        raise filler.error("type", f"{where}: unknown filler type '{kind}' "
                           "(constant, gaussian, uniform, xavier, msra, positive_unitball, bilinear)")
