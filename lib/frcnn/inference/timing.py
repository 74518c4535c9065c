"""Per-stage test-time timing of a Faster R-CNN test net, as the paper's Table 5 splits it:

- conv: the shared trunk (every layer before the first RPN layer);
- proposal: the RPN head and the proposal layer (decode, clip, NMS, top-N);
- region-wise: RoI pooling, the detection head, and the post-processing of ``test_net``
  (box decoding, per-class score threshold and NMS, top 100 per image).

The image is prepared (mean subtraction, resize, copy to the device) outside the timed
stages, as the paper's numbers exclude image loading; it is reported as ``preprocess``.
Each stage ends with a device synchronisation so GPU times are real.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from frcnn.boxes.transform import bbox_transform_inv, clip_boxes
from frcnn.inference.test import _numpy, detections_for_image, get_image_blob
from frcnn.utils.timer import Timer

STAGES = ("preprocess", "conv", "proposal", "region-wise")


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
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    stages = stage_layers(net)
    for s in STAGES:
        timers.setdefault(s, Timer(sync=sync))
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
        scores = _numpy(out["cls_prob"])
        deltas = _numpy(out["bbox_pred"])
        boxes = _numpy(net.blobs["rois"].data)[:, 1:5] / im_scales[0]
        pred = clip_boxes(bbox_transform_inv(boxes, deltas), im.shape)
        dets = detections_for_image(scores, pred, nms_fn, cfg.TEST.NMS, 0.05, max_per_image)
        timers["region-wise"].toc()
    return dets
