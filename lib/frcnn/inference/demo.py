"""The demo's per-image work (upstream's ``tools/demo.py``): detect, then per class NMS at
0.3 over all proposals (no score pre-filter) and keep what scores >= the confidence."""

from __future__ import annotations

from typing import Any

import numpy as np

from frcnn.datasets.pascal_voc import VOC_CLASSES
from frcnn.inference.test import im_detect
from frcnn.utils.timer import Timer

__all__ = ["CONF_THRESH", "NMS_THRESH", "VOC_CLASSES", "demo_detections"]

#: upstream's demo settings
CONF_THRESH = 0.8
NMS_THRESH = 0.3


def demo_detections(
    net: Any, im: np.ndarray, cfg: Any, nms_fn: Any, conf_thresh: float = CONF_THRESH, nms_thresh: float = NMS_THRESH
) -> tuple[list[np.ndarray], int, float]:
    """Per class (index 0 empty) the (N, 5) detections to draw, the number of proposals,
    and the detection time in seconds."""
    timer = Timer()
    timer.tic()
    scores, boxes = im_detect(net, im, cfg=cfg)
    timer.toc()
    out = [np.zeros((0, 5), dtype=np.float32)]
    for j in range(1, scores.shape[1]):
        dets = np.hstack((boxes[:, 4 * j : 4 * (j + 1)], scores[:, j : j + 1])).astype(np.float32)
        keep = nms_fn(dets, nms_thresh) if len(dets) else []
        dets = dets[np.asarray(keep, dtype=np.int64), :]
        out.append(dets[dets[:, -1] >= conf_thresh, :])
    return out, int(boxes.shape[0]), timer.diff
