"""Plain-Python NMS reference and adversarial box sets for the NMS tests.

The rule: visit by descending score, equal scores lower index first; suppress a box whose
IoU with a kept box is strictly greater than the threshold. IoU in double precision (Python
floats) with the +1 convention, in the operation order of csrc/nms/nms.h.
"""

from __future__ import annotations

import math

import numpy as np


def iou_plus1(a: list[float], b: list[float]) -> float:
    """IoU of two boxes, +1 pixel convention, Python floats, the project's operation order."""
    area_a = ((a[2] - a[0]) + 1.0) * ((a[3] - a[1]) + 1.0)
    area_b = ((b[2] - b[0]) + 1.0) * ((b[3] - b[1]) + 1.0)
    w = max(0.0, (min(a[2], b[2]) - max(a[0], b[0])) + 1.0)
    h = max(0.0, (min(a[3], b[3]) - max(a[1], b[1])) + 1.0)
    inter = w * h
    union = (area_a + area_b) - inter
    if union == 0.0:  # IEEE: 0/0 is NaN (never above a threshold), x/0 is +inf
        return math.nan if inter == 0.0 else math.inf
    return inter / union


def reference_nms(dets: np.ndarray, thresh: float) -> list[int]:
    """Greedy NMS with plain loops; dets (N, 5) x1, y1, x2, y2, score."""
    rows = [[float(v) for v in row] for row in np.asarray(dets)]
    order = sorted(range(len(rows)), key=lambda i: -rows[i][4])  # stable: ties keep index order
    suppressed = [False] * len(rows)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if not suppressed[j] and iou_plus1(rows[i], rows[j]) > thresh:
                suppressed[j] = True
    return keep


def random_dets(rng: np.random.Generator, n: int, dtype=np.float64, spread: float = 300.0,
                clusters: int = 0) -> np.ndarray:
    """Random boxes (optionally around `clusters` centres, so many overlap) with random scores."""
    if clusters:
        centres = rng.uniform(0, spread, (clusters, 2))[rng.integers(0, clusters, n)]
        xy = centres + rng.normal(0, 6, (n, 2))
    else:
        xy = rng.uniform(0, spread, (n, 2))
    wh = rng.uniform(4, 60, (n, 2))
    scores = rng.random((n, 1))
    return np.hstack([xy, xy + wh, scores]).astype(dtype)


def integer_dets(rng: np.random.Generator, n: int, dtype=np.float64) -> np.ndarray:
    """Integer boxes on a small grid with scores from a few levels: many exact IoU values,
    equal IoUs and tied scores, which is where implementations drift apart."""
    xy = rng.integers(0, 12, (n, 2))
    wh = rng.integers(0, 8, (n, 2))
    scores = rng.integers(0, 4, (n, 1)) / 4.0
    return np.hstack([xy, xy + wh, scores]).astype(dtype)


def threshold_dets() -> tuple[np.ndarray, float]:
    """Pairs whose IoU is exactly the threshold 0.5 (must survive) or just above it."""
    dets = np.array(
        [
            [0, 0, 9, 9, 0.9],  # area 100
            [0, 0, 9, 4, 0.8],  # inter 50 / union 100 = 0.5 exactly: kept
            [20, 0, 29, 9, 0.7],  # area 100
            [20, 0, 29, 5, 0.6],  # inter 60 / union 100 = 0.6 > 0.5: suppressed
            [40, 0, 49, 9, 0.5],
            [45, 0, 54, 9, 0.5],  # inter 50 / union 150 = 1/3: kept, tie in score
        ],
        dtype=np.float64,
    )
    return dets, 0.5


def degenerate_dets() -> np.ndarray:
    """x2 < x1, zero-area, identical, huge and negative boxes."""
    return np.array(
        [
            [10, 10, 5, 5, 0.9],  # x2 < x1, y2 < y1: (-4) * (-4) area
            [10, 10, 8, 20, 0.85],  # x2 < x1 only: negative area
            [0, 0, -1, -1, 0.8],  # width 0: area 0
            [0, 0, -1, 5, 0.8],  # width 0: zero union against itself class
            [3, 3, 3, 3, 0.7],  # one pixel
            [3, 3, 3, 3, 0.7],  # identical, tied score
            [-1e6, -1e6, 1e6, 1e6, 0.6],  # huge
            [-5e5, -5e5, 1e6, 1e6, 0.55],  # huge, large IoU with the one above
            [-50, -50, -10, -10, 0.5],  # negative coordinates
            [1e7, 1e7, 1e7 + 3, 1e7 + 3, 0.4],  # far away
        ],
        dtype=np.float64,
    )


def proposal_dets(rng: np.random.Generator, n: int, dtype=np.float32) -> np.ndarray:
    """RPN-like proposals: anchor-sized boxes (64..512 px, ratios 0.5/1/2) around random
    centres in a 600 x 1000 image, clipped to it; most of them overlap."""
    ctr = rng.uniform(0, 1, (n, 2)) * [1000, 600]
    size = 2.0 ** rng.uniform(6, 9, n)
    ratio = rng.choice([0.5, 1.0, 2.0], n)
    w, h = size / np.sqrt(ratio), size * np.sqrt(ratio)
    boxes = np.stack([ctr[:, 0] - w / 2, ctr[:, 1] - h / 2, ctr[:, 0] + w / 2, ctr[:, 1] + h / 2], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, 999)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, 599)
    return np.hstack([boxes, rng.random((n, 1))]).astype(dtype)

# The vectorised NumPy version (upstream's py_cpu_nms, with the project's rule), fast enough for
# 20,000 boxes; itself held to reference_nms above.
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
