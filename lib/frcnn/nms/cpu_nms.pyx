# cython: boundscheck=False, wraparound=False, cdivision=True
"""Greedy NMS in Cython, following the project's one rule.

A box is suppressed when its IoU (+1 pixel convention) with an already kept box is
strictly greater than ``thresh``. Boxes are visited by descending score; equal scores
keep the lower index first (a stable sort). Upstream's Cython version suppressed at
IoU >= thresh and visited ties in reverse index order; its GPU and pure-Python versions
used ``>``. We use ``>`` everywhere, so all four implementations agree.
"""

import numpy as np

cimport numpy as cnp

cnp.import_array()


def cpu_nms(dets, double thresh):
    """dets: (N, 5) float32/float64 array of x1, y1, x2, y2, score.

    Returns a list of kept indices (Python ints) in descending score order, as upstream.
    """
    dets = np.asarray(dets)
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"cpu_nms: dets must be an (N, 5) array, got shape {dets.shape}")
    if dets.dtype != np.float32 and dets.dtype != np.float64:
        raise TypeError(f"cpu_nms: dets must be float32 or float64, got {dets.dtype}")
    if not np.isfinite(thresh):
        raise ValueError(f"cpu_nms: thresh must be finite, got {thresh}")
    if dets.shape[0] == 0:
        return []
    # IoU in float64 whatever the input dtype (the arithmetic of csrc/nms/nms.h)
    cdef cnp.ndarray[cnp.float64_t, ndim=2] d = np.ascontiguousarray(dets, dtype=np.float64)
    if not np.isfinite(d).all():
        raise ValueError("cpu_nms: dets contains NaN or inf")
    # stable descending order: ties keep the lower index first (+ 0.0: -0.0 and 0.0 tie)
    cdef cnp.ndarray[cnp.int64_t, ndim=1] order = np.argsort(
        -(d[:, 4] + 0.0), kind="stable").astype(np.int64)
    cdef Py_ssize_t n = d.shape[0]
    cdef cnp.ndarray[cnp.float64_t, ndim=1] areas = (d[:, 2] - d[:, 0] + 1) * (d[:, 3] - d[:, 1] + 1)
    cdef cnp.ndarray[cnp.uint8_t, ndim=1] suppressed = np.zeros(n, dtype=np.uint8)
    cdef Py_ssize_t _i, _j, i, j
    cdef double ix1, iy1, ix2, iy2, iarea, xx1, yy1, xx2, yy2, w, h, inter, ovr
    keep = []
    for _i in range(n):
        i = order[_i]
        if suppressed[i]:
            continue
        keep.append(i)
        ix1 = d[i, 0]
        iy1 = d[i, 1]
        ix2 = d[i, 2]
        iy2 = d[i, 3]
        iarea = areas[i]
        for _j in range(_i + 1, n):
            j = order[_j]
            if suppressed[j]:
                continue
            xx1 = max(ix1, d[j, 0])
            yy1 = max(iy1, d[j, 1])
            xx2 = min(ix2, d[j, 2])
            yy2 = min(iy2, d[j, 3])
            w = max(0.0, xx2 - xx1 + 1)
            h = max(0.0, yy2 - yy1 + 1)
            inter = w * h
            ovr = inter / (iarea + areas[j] - inter)
            if ovr > thresh:
                suppressed[j] = 1
    return keep
