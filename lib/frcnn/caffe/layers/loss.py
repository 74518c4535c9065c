"""Softmax, SoftmaxWithLoss, SmoothL1Loss and Accuracy, with Caffe's normalisation rules."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..prototxt import Message
from .base import Layer, Shape, register

_NORMALIZATION = {"FULL": 0, "VALID": 1, "BATCH_SIZE": 2, "NONE": 3}
_LOG_FLT_MIN = math.log(1.1754943508222875e-38)  # Caffe clamps prob at FLT_MIN before the log


def _axis(layer: Layer, axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise layer.error(f"axis {axis} is out of range for a {rank}-D bottom")
    return a


@register("Softmax")
class Softmax(Layer):
    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)
        self.expect_tops(1)
        self.axis = lp.get_msg("softmax_param").get_int("axis", 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (F.softmax(x, dim=_axis(self, self.axis, x.dim())),)


def loss_normalization(lp: Message) -> str:
    """Caffe's rule: ``normalization`` if given; else legacy ``normalize`` (true VALID, false
    BATCH_SIZE); else VALID."""
    p = lp.get_msg("loss_param")
    if "normalization" not in p and "normalize" in p:
        return "VALID" if p.get_bool("normalize") else "BATCH_SIZE"
    return p.get_enum("normalization", "VALID", _NORMALIZATION)


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(Layer):
    """``loss = -sum log(max(p[label], FLT_MIN)) / normaliser`` over non-ignored labels.

    Labels arrive as float blobs (as Caffe's) and are cast. Normalisers: FULL = outer*inner,
    VALID = number of non-ignored labels, BATCH_SIZE = outer, NONE = 1, each at least 1
    (newer Caffe's guard against an all-ignored batch). Optional second top: the probabilities.
    """

    is_loss = True

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(2)
        self.expect_tops(1, 2)
        self.axis = lp.get_msg("softmax_param").get_int("axis", 1)
        p = lp.get_msg("loss_param")
        self.ignore_label = p.get_int("ignore_label")
        self.normalization = loss_normalization(lp)

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [()] + ([bottom_shapes[0]] if len(self.tops) > 1 else [])

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = _axis(self, self.axis, scores.dim())
        outer = math.prod(scores.shape[:a])
        inner = math.prod(scores.shape[a + 1:])
        if labels.numel() != outer * inner:
            raise self.error(f"labels have {labels.numel()} entries but scores {tuple(scores.shape)} need "
                             f"{outer * inner} (outer x inner around axis {a})")
        logp = F.log_softmax(scores, dim=a)
        # (outer, C, inner) -> (outer*inner, C): one row per label
        rows = logp.reshape(outer, scores.shape[a], inner).transpose(1, 2).reshape(-1, scores.shape[a])
        lab = labels.reshape(-1).to(torch.long)
        valid = torch.ones_like(lab, dtype=torch.bool) if self.ignore_label is None else lab != self.ignore_label
        bad = valid & ((lab < 0) | (lab >= scores.shape[a]))
        if bool(bad.any()):
            raise self.error(f"label {int(lab[bad][0])} is outside [0, {scores.shape[a]})")
        picked = rows.gather(1, torch.where(valid, lab, 0)[:, None])[:, 0]
        # forward value clamped as Caffe's log(max(p, FLT_MIN)); gradient p - 1 as Caffe's backward
        picked = picked + (picked.clamp(min=_LOG_FLT_MIN) - picked).detach()
        total = -(picked * valid.to(picked.dtype)).sum()
        if self.normalization == "VALID":
            # the count stays on the device (no value read back mid-forward on a GPU), divided
            # in at least float32 where it is exact: rounded as torch divides by the number
            # (a half-precision loss too)
            count = valid.sum().clamp_min(1).to(torch.promote_types(total.dtype, torch.float32))
            loss = (total / count).to(total.dtype)
        else:
            norm = {"FULL": float(outer * inner), "BATCH_SIZE": float(outer)}.get(self.normalization, 1.0)
            loss = total / max(norm, 1.0)
        if len(self.tops) == 2:
            return loss, logp.exp()
        return (loss,)


@register("SmoothL1Loss")
class SmoothL1Loss(Layer):
    """``d = w_in * (pred - target)``; ``f(d) = 0.5 (sigma d)^2`` if ``|d| < 1/sigma^2`` else
    ``|d| - 0.5/sigma^2``; ``loss = sum(w_out * f(d)) / N`` with N = pred.shape[0]."""

    is_loss = True

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(2, 4)
        if len(self.bottoms) == 3:
            raise self.error("needs 2 bottoms, or 4 (with inside and outside weights), got 3")
        self.expect_tops(1)
        self.sigma2 = lp.get_msg("smooth_l1_loss_param").get_float("sigma", 1.0) ** 2

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [()]

    def forward(self, pred: torch.Tensor, target: torch.Tensor, *weights: torch.Tensor) -> tuple[torch.Tensor]:
        for i, t in enumerate((target, *weights), start=1):
            if t.numel() != pred.numel() or t.shape[1:] != pred.shape[1:]:
                raise self.error(f"bottom {i} shape {tuple(t.shape)} does not match bottom 0 {tuple(pred.shape)}")
        d = pred - target.reshape(pred.shape)
        if weights:
            d = weights[0].reshape(pred.shape) * d
        ad = d.abs()
        f = torch.where(ad < 1.0 / self.sigma2, 0.5 * self.sigma2 * d * d, ad - 0.5 / self.sigma2)
        if weights:
            f = weights[1].reshape(pred.shape) * f
        return (f.sum() / pred.shape[0],)


@register("Accuracy")
class Accuracy(Layer):
    """Top-k accuracy over non-ignored labels (ties broken toward counting as correct only when
    fewer than k scores are strictly greater, as Caffe)."""

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(2)
        self.expect_tops(1)
        p = lp.get_msg("accuracy_param")
        self.top_k = p.get_int("top_k", 1)
        self.axis = p.get_int("axis", 1)
        self.ignore_label = p.get_int("ignore_label")

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return [()]

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor]:
        with torch.no_grad():
            a = _axis(self, self.axis, scores.dim())
            c = scores.shape[a]
            rows = scores.movedim(a, -1).reshape(-1, c)
            lab = labels.reshape(-1).to(torch.long)
            if lab.numel() != rows.shape[0]:
                raise self.error(f"{lab.numel()} labels for {rows.shape[0]} score rows")
            valid = torch.ones_like(lab, dtype=torch.bool) if self.ignore_label is None else lab != self.ignore_label
            own = rows.gather(1, lab.clamp(0, c - 1)[:, None])
            correct = (rows > own).sum(1) < self.top_k
            n = int(valid.sum())
            acc = (correct & valid).sum().to(scores.dtype) / max(n, 1)
        return (acc,)
