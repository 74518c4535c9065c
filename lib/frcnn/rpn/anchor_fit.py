"""Anchors that cover a set's boxes: the coverage test and the choice of scales and ratios.

A box is *covered* when one of the reference anchors placed at the feature-map cell nearest
the box's centre overlaps it with IoU >= 0.5 (+1 pixel areas, as ``bbox_overlaps``). The
anchors of cell ``(i, j)`` are :func:`~frcnn.rpn.generate_anchors.generate_anchors` shifted
by ``(stride * j, stride * i)`` (centres at ``stride * j + (base_size - 1) / 2``), exactly as
the RPN layers place them.

:func:`fit_anchors` tries the scale and ratio sets below and keeps the one that covers the
most boxes with the fewest anchors:

- ratios (``h / w``): upstream's ``(0.5, 1, 2)``, widened by ``0.25`` and/or ``4`` for
  very flat or tall boxes (a candidate always holds upstream's three);
- scales (in units of the stride, as upstream's ``(8, 16, 32)``): a run of consecutive
  octaves (x2, like upstream's) or of half-octaves (x sqrt 2, like ``models/bccd``) from
  1 (16 px) to 64 (1024 px).

Ties go to octaves, then to the closer fit (higher mean IoU of each box's best anchor).
Not every box can be covered: at stride 16 a square box whose centre lies half a cell (8 px
in x and y) from every anchor centre needs a side of about 40 px for IoU 0.5 with any
anchor, so smaller boxes are covered only where their centres happen to fall near a cell
centre (the remedy is a larger ``TRAIN.SCALES``, which enlarges the boxes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from frcnn.rpn.generate_anchors import generate_anchors

#: candidate ratios h / w; every candidate set holds upstream's (0.5, 1, 2)
RATIO_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
UPSTREAM_RATIOS = (0.5, 1.0, 2.0)
#: candidate scales: half-octaves from 1 (16 px at base size 16) to 64 (1024 px), 2 decimals
SCALE_GRID = tuple(round(2.0 ** (k / 2), 2) for k in range(13))
COVER_IOU = 0.5
#: the search looks at this many boxes at most (evenly spaced); the result is checked on all
MAX_SEARCH_BOXES = 5000


def _iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of box n with each of its own anchors: boxes (N, 4), anchors (N, A, 4) -> (N, A)."""
    b = boxes[:, None, :]
    iw = np.minimum(b[..., 2], anchors[..., 2]) - np.maximum(b[..., 0], anchors[..., 0]) + 1
    ih = np.minimum(b[..., 3], anchors[..., 3]) - np.maximum(b[..., 1], anchors[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    area_a = (anchors[..., 2] - anchors[..., 0] + 1) * (anchors[..., 3] - anchors[..., 1] + 1)
    return inter / (area_b + area_a - inter)


def nearest_cell_shifts(boxes: np.ndarray, image_sizes: np.ndarray, stride: int, base_size: int = 16) -> np.ndarray:
    """(N, 4) shifts ``(sx, sy, sx, sy)`` of the cell whose anchor centre is nearest each
    box's centre, within the feature map of its image (``ceil(size / stride)`` cells a side)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    offset = (base_size - 1) / 2.0
    cx = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cy = (boxes[:, 1] + boxes[:, 3]) / 2.0
    last_col = np.maximum(np.ceil(sizes[:, 0] / stride) - 1, 0)
    last_row = np.maximum(np.ceil(sizes[:, 1] / stride) - 1, 0)
    col = np.clip(np.round((cx - offset) / stride), 0, last_col)
    row = np.clip(np.round((cy - offset) / stride), 0, last_row)
    sx, sy = col * stride, row * stride
    return np.stack([sx, sy, sx, sy], axis=1)


def best_anchor_iou(
    boxes: np.ndarray,
    image_sizes: np.ndarray,
    scales: Sequence[float],
    ratios: Sequence[float],
    stride: int = 16,
    base_size: int = 16,
) -> np.ndarray:
    """(N,) the best IoU of each box with the anchors (``scales`` x ``ratios``) at its nearest cell."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0)
    ref = generate_anchors(base_size=base_size, ratios=ratios, scales=scales)  # (A, 4)
    shifts = nearest_cell_shifts(boxes, image_sizes, stride, base_size)
    return _iou(boxes, ref[None, :, :] + shifts[:, None, :]).max(axis=1)


@dataclass(frozen=True)
class AnchorFit:
    """The chosen anchors and how well they cover the boxes (on all boxes, not the sample)."""

    scales: tuple[float, ...]
    ratios: tuple[float, ...]
    covered: int
    total: int
    mean_best_iou: float

    @property
    def num_anchors(self) -> int:
        return len(self.scales) * len(self.ratios)

    @property
    def coverage(self) -> float:
        return self.covered / self.total if self.total else 1.0


def coverage(
    boxes: np.ndarray, image_sizes: np.ndarray, scales: Sequence[float], ratios: Sequence[float],
    stride: int = 16, base_size: int = 16,
) -> AnchorFit:
    """How well the anchors ``scales`` x ``ratios`` cover ``boxes`` (see the module docstring)."""
    best = best_anchor_iou(boxes, image_sizes, scales, ratios, stride, base_size)
    return AnchorFit(
        scales=tuple(float(s) for s in scales),
        ratios=tuple(float(r) for r in ratios),
        covered=int(np.sum(best >= COVER_IOU)),
        total=int(best.size),
        mean_best_iou=float(best.mean()) if best.size else 1.0,
    )


def _ratio_windows() -> list[tuple[int, ...]]:
    """Index runs of RATIO_GRID that hold upstream's three ratios."""
    need = {RATIO_GRID.index(r) for r in UPSTREAM_RATIOS}
    out = []
    for lo in range(len(RATIO_GRID)):
        for hi in range(lo, len(RATIO_GRID)):
            run = tuple(range(lo, hi + 1))
            if need <= set(run):
                out.append(run)
    return out


def _sample(n: int, limit: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def fit_anchors(
    boxes: np.ndarray, image_sizes: np.ndarray, stride: int = 16, base_size: int = 16,
    max_search_boxes: int = MAX_SEARCH_BOXES,
) -> AnchorFit:
    """The candidate anchor set (module docstring) covering the most boxes, fewest anchors first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        raise ValueError("fit_anchors: no boxes to fit anchors to")
    idx = _sample(len(boxes), max_search_boxes)
    b, sz = boxes[idx], np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)[idx]
    # IoU of every box with every grid anchor at its cell: (N, ratios, scales)
    ref = generate_anchors(base_size=base_size, ratios=RATIO_GRID, scales=SCALE_GRID)
    shifts = nearest_cell_shifts(b, sz, stride, base_size)
    iou = _iou(b, ref[None, :, :] + shifts[:, None, :]).reshape(len(b), len(RATIO_GRID), len(SCALE_GRID))
    best_key, best_choice = None, None
    for rw in _ratio_windows():
        per_scale = iou[:, list(rw), :].max(axis=1)  # (N, scales)
        for step in (2, 1):  # octaves first: they win ties
            for start in range(len(SCALE_GRID)):
                running = np.zeros(len(b))
                for end in range(start, len(SCALE_GRID), step):
                    running = np.maximum(running, per_scale[:, end])
                    n_scales = (end - start) // step + 1
                    key = (-int(np.sum(running >= COVER_IOU)), len(rw) * n_scales, step == 1, -float(running.mean()))
                    if best_key is None or key < best_key:
                        best_key, best_choice = key, (rw, tuple(range(start, end + 1, step)))
    rw, sw = best_choice
    return coverage(
        boxes, image_sizes, [SCALE_GRID[i] for i in sw], [RATIO_GRID[i] for i in rw], stride, base_size
    )
