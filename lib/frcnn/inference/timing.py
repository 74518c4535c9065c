"""Per-stage test-time timing of a Faster R-CNN test net, as the paper's Table 5 splits it:

- conv: the shared trunk (every layer before the first RPN layer);
- proposal: the RPN head and the proposal layer (decode, clip, NMS, top-N);
- region-wise: RoI pooling, the detection head, and the post-processing of ``test_net``
  (box decoding, per-class score threshold and NMS, top 100 per image).

The image is prepared (mean subtraction, resize, copy to the device) outside the timed
stages, as the paper's numbers exclude image loading; it is reported as ``preprocess``.
On a GPU each stage is timed by CUDA events on the net's device (:class:`CudaEventTimer`:
the GPU's own clock from the end of the previous stage's work to the end of this stage's,
host work in between included); on the CPU by the wall clock. The region-wise stage
post-processes on the device or in NumPy as ``TEST.DEVICE_POSTPROCESS`` says.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from frcnn.boxes.transform import bbox_transform_inv, clip_boxes
from frcnn.inference.on_device import detections_on_device
from frcnn.inference.test import _decode_on_device, _numpy, detections_for_image, get_image_blob
from frcnn.utils.timer import Timer

STAGES = ("preprocess", "conv", "proposal", "region-wise")


class CudaEventTimer:
    """:class:`~frcnn.utils.timer.Timer`'s faces (``tic``, ``toc``, ``diff``, ``average_time``,
    ``total_time``, ``calls``) over CUDA events recorded on ``device``'s current stream;
    ``toc`` waits for its end event, so ``diff`` is known when it returns."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.total_time = self.diff = self.average_time = 0.0
        self.calls = 0
        self._start: torch.cuda.Event | None = None

    def tic(self) -> None:
        self._start = torch.cuda.Event(enable_timing=True)
        self._start.record(torch.cuda.current_stream(self.device))

    def toc(self, average: bool = True) -> float:
        if self._start is None:
            raise RuntimeError("CudaEventTimer.toc() called without a matching tic()")
        end = torch.cuda.Event(enable_timing=True)
        end.record(torch.cuda.current_stream(self.device))
        end.synchronize()
        self.diff = self._start.elapsed_time(end) / 1e3
        self._start = None
        self.total_time += self.diff
        self.calls += 1
        self.average_time = self.total_time / self.calls
        return self.average_time if average else self.diff


def stage_timer(device: torch.device) -> Any:
    """A timer for work on ``device``: CUDA events on a GPU, the wall clock on the CPU."""
    device = torch.device(device)
    return CudaEventTimer(device) if device.type == "cuda" else Timer()


def stage_layers(net: Any) -> dict[str, tuple[str, str]]:
    """``{stage: (first layer, last layer)}`` for the conv, proposal and region-wise stages."""
    names = [layer.name for layer in net.layers]
    types = [type(layer).__name__ for layer in net.layers]
    first_rpn = next((i for i, n in enumerate(names) if n.startswith("rpn")), None)
    proposal = next((i for i, n in enumerate(names) if n == "proposal"), None)
    if first_rpn is None or proposal is None or not 0 < first_rpn < proposal < len(names) - 1:
        raise ValueError(
            f"net '{net.name}': cannot split into conv / proposal / region-wise stages (needs layers named "
            f"'rpn*' after the trunk and a 'proposal' layer before the head; layers: {', '.join(names)})"
        )
    first = next(i for i, t in enumerate(types) if t != "Input")
    return {
        "conv": (names[first], names[first_rpn - 1]),
        "proposal": (names[first_rpn], names[proposal]),
        "region-wise": (names[proposal + 1], names[-1]),
    }


def time_image(
    net: Any, im: np.ndarray, cfg: Any, nms_fn: Callable, timers: dict[str, Timer], max_per_image: int = 100
) -> list[np.ndarray]:
    """Detect on one image stage by stage, adding each stage's time to ``timers``."""
    device = net.device
    stages = stage_layers(net)
    for s in STAGES:
        timers.setdefault(s, stage_timer(device))
    timers["preprocess"].tic()
    data, im_scales = get_image_blob(im, cfg.TEST.SCALES[:1], cfg.TEST.MAX_SIZE, cfg.PIXEL_MEANS)
    im_info = np.array([[data.shape[2], data.shape[3], im_scales[0]]], dtype=np.float32)
    net.blobs["data"].data = torch.from_numpy(data).to(device)
    net.blobs["im_info"].data = torch.from_numpy(im_info).to(device)
    timers["preprocess"].toc()
    with torch.no_grad():
        for stage in ("conv", "proposal"):
            timers[stage].tic()
            net.forward(start=stages[stage][0], end=stages[stage][1])
            timers[stage].toc()
        timers["region-wise"].tic()
        out = net.forward(start=stages["region-wise"][0], end=stages["region-wise"][1])
        if cfg.TEST.DEVICE_POSTPROCESS:
            scores_t, pred_t = _decode_on_device(out["cls_prob"], out["bbox_pred"], net.blobs["rois"].data, None,
                                                 im_scales[0], im.shape, None)
            dets = detections_on_device(scores_t, pred_t, cfg.TEST.NMS, 0.05, max_per_image)
        else:
            scores = _numpy(out["cls_prob"])
            deltas = _numpy(out["bbox_pred"])
            boxes = _numpy(net.blobs["rois"].data)[:, 1:5] / im_scales[0]
            pred = clip_boxes(bbox_transform_inv(boxes, deltas), im.shape)
            dets = detections_for_image(scores, pred, nms_fn, cfg.TEST.NMS, 0.05, max_per_image)
        timers["region-wise"].toc()
    return dets
