"""Plain-Python RoI max pooling following Caffe's ROIPooling rules (caffe-fast-rcnn).

Scalar arithmetic is done in the input dtype (NumPy float32 / float64 scalars), as Caffe does
in its Dtype: C round (half away from zero) of the scaled corners, +1 sizes, floor/ceil bin
edges clamped to the map, empty bin -> 0 with argmax -1, first maximum wins (rows, then columns).
"""

from __future__ import annotations

import math

import numpy as np


def c_round(v: float) -> int:
    """C's round(): half away from zero (Python's round() is half to even)."""
    if v < 0:
        return -c_round(-v)
    f = math.floor(v)
    return int(f + 1 if v - f >= 0.5 else f)  # v - f is exact for any double


def roi_pool_reference(features: np.ndarray, rois: np.ndarray, pooled_h: int, pooled_w: int,
                       spatial_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns (output (R, C, ph, pw) in the features' dtype, argmax (R, C, ph, pw) int)."""
    t = features.dtype.type  # np.float32 or np.float64
    _, c, height, width = features.shape
    r = rois.shape[0]
    out = np.zeros((r, c, pooled_h, pooled_w), dtype=features.dtype)
    arg = np.full((r, c, pooled_h, pooled_w), -1, dtype=np.int64)
    scale = t(spatial_scale)
    lowest = np.finfo(features.dtype).min
    for i in range(r):
        roi = [t(v) for v in rois[i]]
        b = int(roi[0])
        start_w, start_h = c_round(roi[1] * scale), c_round(roi[2] * scale)
        end_w, end_h = c_round(roi[3] * scale), c_round(roi[4] * scale)
        roi_w = max(end_w - start_w + 1, 1)
        roi_h = max(end_h - start_h + 1, 1)
        bin_h = t(roi_h) / t(pooled_h)
        bin_w = t(roi_w) / t(pooled_w)
        for ph in range(pooled_h):
            hstart = min(max(math.floor(t(ph) * bin_h) + start_h, 0), height)
            hend = min(max(math.ceil(t(ph + 1) * bin_h) + start_h, 0), height)
            for pw in range(pooled_w):
                wstart = min(max(math.floor(t(pw) * bin_w) + start_w, 0), width)
                wend = min(max(math.ceil(t(pw + 1) * bin_w) + start_w, 0), width)
                if hend <= hstart or wend <= wstart:
                    continue  # empty bin: 0 and argmax -1
                for ch in range(c):
                    plane = features[b, ch]
                    best, best_idx = lowest, -1
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            if plane[h, w] > best:
                                best, best_idx = plane[h, w], h * width + w
                    out[i, ch, ph, pw] = best
                    arg[i, ch, ph, pw] = best_idx
    return out, arg


def roi_pool_backward_reference(grad: np.ndarray, rois: np.ndarray, argmax: np.ndarray,
                                feature_shape: tuple) -> np.ndarray:
    """Each input location receives the sum of the output gradients whose argmax is it (float64)."""
    n, c, height, width = feature_shape
    grad_in = np.zeros((n, c, height * width), dtype=np.float64)
    for i in range(grad.shape[0]):
        b = int(rois[i, 0])
        for ch in range(c):
            for k, a in enumerate(argmax[i, ch].ravel()):
                if a >= 0:
                    grad_in[b, ch, a] += float(grad[i, ch].ravel()[k])
    return grad_in.reshape(n, c, height, width)
