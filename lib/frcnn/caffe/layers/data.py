"""Input (declared net inputs), DummyData, and ROIPooling (through ``frcnn.ops.roi_pool``)."""

from __future__ import annotations

import torch

from ..fillers import fill
from ..prototxt import Message
from .base import Layer, Shape, register


def blob_shape(layer: Layer, msg: Message) -> tuple[int, ...]:
    dims = msg.get_ints("dim")
    if any(d < 0 for d in dims):
        raise layer.error(f"shape dims must not be negative, got {dims}")
    return tuple(dims)


@register("Input")
class Input(Layer):
    """The net's inputs: ``forward`` receives the tensors given to ``Net.forward`` and passes
    them on. ``shapes`` are the declared shapes (for ``net.blobs`` before the first forward)."""

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(0)
        shapes = [blob_shape(self, m) for m in lp.get_msg("input_param").get_msgs("shape")]
        if len(shapes) not in (0, 1, len(self.tops)):
            raise self.error(f"input_param gives {len(shapes)} shapes for {len(self.tops)} tops")
        if len(shapes) == 1:
            shapes = shapes * len(self.tops)
        self.shapes: list[Shape] = shapes or [None] * len(self.tops)

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return list(self.shapes)

    def forward(self, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(values)


@register("DummyData")
class DummyData(Layer):
    """Tops filled by ``data_filler`` (one for all tops or one per top; default constant 0)."""

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(0)
        p = lp.get_msg("dummy_data_param")
        n = len(self.tops)
        if "shape" in p:
            if any(k in p for k in ("num", "channels", "height", "width")):
                raise self.error("give either dummy_data_param.shape or num/channels/height/width, not both")
            shapes = [blob_shape(self, m) for m in p.get_msgs("shape")]
        else:
            legacy = [p.get_ints(k) for k in ("num", "channels", "height", "width")]
            counts = {len(v) for v in legacy}
            if len(counts) != 1:
                raise self.error("num, channels, height and width must be given the same number of times")
            shapes = [tuple(v) for v in zip(*legacy)]
        if len(shapes) == 1:
            shapes = shapes * n
        if len(shapes) != n:
            raise self.error(f"dummy_data_param gives {len(shapes)} shapes for {n} tops", "dummy_data_param")
        fillers = p.get_msgs("data_filler")
        if len(fillers) not in (0, 1, n):
            raise self.error(f"dummy_data_param gives {len(fillers)} fillers for {n} tops", "dummy_data_param")
        self.fillers: list[Message | None] = (fillers * n if len(fillers) == 1 else fillers) or [None] * n
        self.shapes = shapes
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return list(self.shapes)

    def forward(self) -> tuple[torch.Tensor, ...]:
        outs = []
        device = self._device_anchor.device
        for shape, filler in zip(self.shapes, self.fillers):
            # filled on the host (its generator draws the numbers, on every device alike), in
            # pinned memory for a GPU, whose copy then runs without the host waiting for it
            t = torch.empty(shape, dtype=torch.float32, pin_memory=device.type == "cuda")
            outs.append(fill(t, filler, 0.0, where=f"layer '{self.name}'").to(device, non_blocking=True))
        return tuple(outs)


@register("ROIPooling")
class ROIPooling(Layer):
    """Caffe's RoI max pooling; the kernel is ``frcnn.ops.roi_pool`` (imported at first use)."""

    #: max pooling is exact in any type; the op pools float16/bfloat16 features in float32
    low_precision = True

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(2)
        self.expect_tops(1)
        p = lp.get_msg("roi_pooling_param")
        self.pooled_h = p.get_int("pooled_h", 0)
        self.pooled_w = p.get_int("pooled_w", 0)
        if self.pooled_h <= 0 or self.pooled_w <= 0:
            raise self.error("roi_pooling_param.pooled_h and pooled_w must be > 0", "roi_pooling_param")
        self.spatial_scale = p.get_float("spatial_scale", 1.0)

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        feat, rois = bottom_shapes
        c = feat[1] if feat is not None and len(feat) == 4 else None
        r = rois[0] if rois is not None and len(rois) >= 1 else None
        return [(r, c, self.pooled_h, self.pooled_w)]

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor]:
        from frcnn.ops import roi_pool  # written separately; imported lazily

        if rois.dim() != 2:  # upstream's rois blob may be (R,5,1,1)
            rois = rois.reshape(rois.shape[0], -1)
        if rois.shape[1] != 5:
            raise self.error(f"rois must be (R, 5) [batch, x1, y1, x2, y2], got shape {tuple(rois.shape)}")
        # RoIs in the features' type, but never below float32 (a bfloat16 x of 600 is off by 2 px)
        dtype = torch.float32 if features.dtype in (torch.float16, torch.bfloat16) else features.dtype
        return (roi_pool(features, rois.to(dtype), self.pooled_h, self.pooled_w, self.spatial_scale),)
