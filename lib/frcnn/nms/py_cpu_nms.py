"""Plain NumPy NMS: the reference the Cython, C++ and CUDA versions are held to.

Rule: visit boxes by descending score (equal scores: lower index first); a box is suppressed
when its IoU with an already kept box is strictly greater than ``thresh``. IoU is computed in
float64 with the +1 pixel convention, in exactly the operation order of csrc/nms/nms.h:
area = ((x2 - x1) + 1) * ((y2 - y1) + 1); inter = w * h; iou = inter / ((area_i + area_j) - inter).
"""

from __future__ import annotations

import numpy as np


def py_cpu_nms(dets: np.ndarray, thresh: float) -> list[int]:
    """dets: (N, 5) array of x1, y1, x2, y2, score. Returns the kept indices by descending score."""
    dets = np.asarray(dets)
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"py_cpu_nms: dets must be an (N, 5) array, got shape {dets.shape}")
    if dets.dtype not in (np.float32, np.float64):
        raise TypeError(f"py_cpu_nms: dets must be float32 or float64, got {dets.dtype}")
    if dets.shape[0] == 0:
        return []
    d = dets.astype(np.float64)
    if not np.isfinite(d).all():
        raise ValueError("py_cpu_nms: dets contains NaN or inf")
    x1, y1, x2, y2, scores = d[:, 0], d[:, 1], d[:, 2], d[:, 3], d[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-(scores + 0.0), kind="stable")  # + 0.0: -0.0 and 0.0 tie

    keep = []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        while order.size > 0:
            i = order[0]
            keep.append(int(i))
            rest = order[1:]
            xx1 = np.maximum(x1[i], x1[rest])
            yy1 = np.maximum(y1[i], y1[rest])
            xx2 = np.minimum(x2[i], x2[rest])
            yy2 = np.minimum(y2[i], y2[rest])
            w = np.maximum(0.0, xx2 - xx1 + 1)
            h = np.maximum(0.0, yy2 - yy1 + 1)
            inter = w * h
            ovr = inter / (areas[i] + areas[rest] - inter)
            order = rest[~(ovr > thresh)]
    return keep
