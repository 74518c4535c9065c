"""Dense sliding windows: every anchor of the conv5 grid as a proposal, with no RPN.

The paper's one-stage system (Table 10, after OverFeat) feeds Fast R-CNN "dense sliding
windows of 3 scales (128, 256, 512) and 3 aspect ratios (1:1, 1:2, 2:1)", about 20000 per
image. Here the windows of an image are exactly the anchors an RPN would score on it:

1. the image is resized as for the net (shorter side ``target_size``, longer side at most
   ``max_size``: :func:`frcnn.utils.blob.im_scale_for`); its size is
   ``round(H * scale) x round(W * scale)``, as ``cv2.resize`` makes it;
2. the grid is ``ceil(h / feat_stride) x ceil(w / feat_stride)`` cells, the size of the
   resized image divided by the stride and rounded up: VGG16's conv5_3 size (four 2x2
   ceil-mode poolings; ``rpn.layer_base`` anchors are placed on the net's own map). ZF's
   rounding can give one row or column more, whose windows lie past the image edge;
3. at each cell the reference anchors of :func:`frcnn.rpn.generate_anchors.generate_anchors`
   (ratio-major, scale-minor; defaults 8, 16, 32 times the 16-pixel stride), shifted by
   (stride * col, stride * row), in (row, col, anchor) order
   (:func:`frcnn.rpn.generate_anchors.shifted_anchors`);
4. clipped to the resized image, divided by the scale and clipped to the original image
   (as ``frcnn.rpn.generate`` maps RPN proposals back); exact duplicates (windows the clip
   made equal) are dropped, keeping the first.

A 600 x 800 input gives 38 x 50 x 9 = 17100 windows; 600 x 1000, 21546 (the paper's 20000).
``tools/dense_proposals.py`` writes them for a dataset as a proposal file (``.npz``). The
anchors (:func:`window_settings`): the tool's flags, else the config's ``ANCHOR_SCALES`` /
``ANCHOR_RATIOS`` (e.g. ``coco_paper.yml``'s four scales), else a given net's anchor layers,
else upstream's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from frcnn.boxes.transform import clip_boxes
from frcnn.rpn.generate_anchors import generate_anchors, shifted_anchors
from frcnn.utils.blob import im_scale_for

#: the paper's windows: 3 scales (128, 256, 512 px at stride 16) x 3 ratios (h / w)
DEFAULT_SCALES = (8, 16, 32)
DEFAULT_RATIOS = (0.5, 1, 2)


def grid_size(height: int, width: int, feat_stride: int = 16) -> tuple[int, int]:
    """The conv5 grid of a ``height`` x ``width`` net input: each side divided by the stride,
    rounded up."""
    if height <= 0 or width <= 0 or feat_stride <= 0:
        raise ValueError(f"grid_size: need positive sizes and stride, got {height} x {width}, stride {feat_stride}")
    return -(-int(height) // int(feat_stride)), -(-int(width) // int(feat_stride))


def dense_windows(
    im_height: int,
    im_width: int,
    target_size: int,
    max_size: int,
    anchors: np.ndarray,
    feat_stride: int = 16,
) -> np.ndarray:
    """Every anchor of the conv5 grid of an ``im_height`` x ``im_width`` image, in the
    original image's pixels: (N, 4) float32, clipped, duplicates removed (module docstring)."""
    scale = im_scale_for((int(im_height), int(im_width), 3), target_size, max_size)
    h, w = int(np.rint(im_height * scale)), int(np.rint(im_width * scale))
    rows, cols = grid_size(h, w, feat_stride)
    boxes = shifted_anchors(anchors, rows, cols, feat_stride).numpy()
    boxes = clip_boxes(boxes, (h, w)) / scale
    boxes = clip_boxes(boxes, (int(im_height), int(im_width))).astype(np.float32)
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def window_settings(
    scales: Sequence[float] | None = None,
    ratios: Sequence[float] | None = None,
    cfg: Any = None,
    net_anchors: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scales, ratios) of the windows, each from the first of: the value given (a flag), the
    config's ``ANCHOR_SCALES`` / ``ANCHOR_RATIOS`` when set (what the run's RPN layers use),
    ``net_anchors`` (the ``scales`` / ``ratios`` of a net's anchor layers), upstream's 8, 16, 32
    and 0.5, 1, 2."""
    net = net_anchors or (None, None)
    chosen = []
    for given, key, own, default in ((scales, "ANCHOR_SCALES", net[0], DEFAULT_SCALES),
                                     (ratios, "ANCHOR_RATIOS", net[1], DEFAULT_RATIOS)):
        from_cfg = cfg.get(key) if cfg is not None else None
        value = next(v for v in (given, from_cfg, own, default) if v is not None)
        chosen.append(tuple(value))
    return chosen[0], chosen[1]


def settings_suffix(scales: Sequence[float], ratios: Sequence[float]) -> str:
    """``""`` for upstream's anchors, else ``_a<scales>x<ratios>`` (e.g. ``_a4-8-16-32x0.5-1-2``),
    so windows of other anchors get other default file names."""
    if (tuple(float(s) for s in scales), tuple(float(r) for r in ratios)) == (
        tuple(float(s) for s in DEFAULT_SCALES), tuple(float(r) for r in DEFAULT_RATIOS)):
        return ""
    return "_a" + "-".join(f"{float(s):g}" for s in scales) + "x" + "-".join(f"{float(r):g}" for r in ratios)


def window_anchors(scales: Sequence[float] | None = None, ratios: Sequence[float] | None = None) -> np.ndarray:
    """The reference windows (A, 4): ``scales`` in units of the stride and ``ratios`` (h / w),
    upstream's 8, 16, 32 and 0.5, 1, 2 where None."""
    return generate_anchors(
        scales=DEFAULT_SCALES if scales is None else scales, ratios=DEFAULT_RATIOS if ratios is None else ratios
    )
