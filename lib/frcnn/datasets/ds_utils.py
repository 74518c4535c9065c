"""Small box utilities of py-faster-rcnn's ``lib/datasets/ds_utils.py``.

Boxes are ``x1, y1, x2, y2`` inclusive (width = x2 - x1 + 1); ``xywh`` is ``x, y, w, h``.
"""

from __future__ import annotations

import numpy as np

from frcnn.errors import InputError


def unique_boxes(boxes: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Sorted indices of the first occurrence of each distinct box (rounded after ``scale``)."""
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    v = np.array([1, 1e3, 1e6, 1e9])
    hashes = np.round(np.asarray(boxes, dtype=np.float64) * scale).dot(v)
    _, index = np.unique(hashes, return_index=True)
    return np.sort(index)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``[x, y, w, h]`` to ``[x1, y1, x2, y2]`` (x2 = x + w - 1)."""
    return np.hstack((boxes[:, 0:2], boxes[:, 0:2] + boxes[:, 2:4] - 1))


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` to ``[x, y, w, h]`` (w = x2 - x1 + 1)."""
    return np.hstack((boxes[:, 0:2], boxes[:, 2:4] - boxes[:, 0:2] + 1))


def validate_boxes(boxes: np.ndarray, width: int = 0, height: int = 0, where: str = "boxes") -> None:
    """Raise ValueError unless every box has x1, y1 >= 0, x2 >= x1, y2 >= y1 and lies inside
    a ``width`` x ``height`` image (the bounds are checked when they are > 0)."""
    if len(boxes) == 0:
        return
    b = np.asarray(boxes, dtype=np.float64)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    checks = [
        (x1 >= 0, "x1 < 0"),
        (y1 >= 0, "y1 < 0"),
        (x2 >= x1, "x2 < x1"),
        (y2 >= y1, "y2 < y1"),
    ]
    if width > 0:
        checks.append((x2 < width, f"x2 >= image width {width}"))
    if height > 0:
        checks.append((y2 < height, f"y2 >= image height {height}"))
    for ok, what in checks:
        if not np.all(ok):
            i = int(np.where(~ok)[0][0])
            raise InputError(f"{where}: box {i} {b[i].tolist()} is invalid: {what}")


def filter_small_boxes(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Indices of boxes with ``x2 - x1 >= min_size`` and ``y2 - y1 > min_size`` (upstream's
    asymmetric test, no +1)."""
    b = np.asarray(boxes, dtype=np.float64)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    return np.where((w >= min_size) & (h > min_size))[0]
