"""Element-wise layers: ReLU, Sigmoid, TanH, Dropout (with the change-set's ``scale_train``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..prototxt import Message
from .base import Layer, Shape, register


class _Elementwise(Layer):
    low_precision = True  # element-wise, as precise as its input type

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)
        self.expect_tops(1)


@register("ReLU")
class ReLU(_Elementwise):
    """``max(x, 0)``, or ``x * negative_slope`` where ``x <= 0``.

    In place, as Caffe computes a ReLU whose top is its bottom: when the net says so for this
    forward (``overwrite``, see ``Net._may_overwrite``) the bottom tensor itself is clamped
    (``relu_``), which saves a bottom-sized allocation and pass (VGG16's conv1 outputs are 150 MB
    each at 600 x 1000). The values are the same either way, and so are the gradients: torch's
    ReLU backward reads the output in both forms.
    """

    #: set by the net before each forward call: whether the bottom may be overwritten
    overwrite = False

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase, bottom_shapes)
        self.negative_slope = lp.get_msg("relu_param").get_float("negative_slope", 0.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        if self.negative_slope == 0.0:
            return (torch.relu_(x) if self.overwrite else F.relu(x),)
        return (torch.where(x > 0, x, x * self.negative_slope),)


@register("Sigmoid")
class Sigmoid(_Elementwise):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.sigmoid(x),)


@register("TanH")
class TanH(_Elementwise):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.tanh(x),)


@register("Dropout")
class Dropout(_Elementwise):
    """Train: ``x * mask / (1 - p)``, or ``x * mask`` with ``scale_train: false``.
    Test: ``x``, or ``x * (1 - p)`` with ``scale_train: false``. Mode follows ``self.training``."""

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase, bottom_shapes)
        p = lp.get_msg("dropout_param")
        self.ratio = p.get_float("dropout_ratio", 0.5)
        if not 0.0 <= self.ratio < 1.0:
            raise self.error(f"dropout_ratio must be in [0, 1), got {self.ratio}", "dropout_param")
        self.scale_train = p.get_bool("scale_train", True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        keep = 1.0 - self.ratio
        if not self.training:
            return (x if self.scale_train else x * keep,)
        mask = (torch.rand_like(x) < keep).to(x.dtype)
        if self.scale_train:
            mask = mask / keep
        return (x * mask,)
