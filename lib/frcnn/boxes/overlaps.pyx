# cython: boundscheck=False, wraparound=False, cdivision=True
"""IoU matrix with py-faster-rcnn's +1 pixel convention (width = x2 - x1 + 1)."""

import numpy as np

cimport numpy as cnp

cnp.import_array()


def bbox_overlaps(boxes, query_boxes):
    """IoU of every box against every query box.

    boxes:       (N, 4) float64 array of x1, y1, x2, y2 (inclusive pixel coordinates)
    query_boxes: (K, 4) float64 array
    returns:     (N, K) float64 array; 0 where the boxes do not intersect
    """
    boxes = np.ascontiguousarray(boxes)
    query_boxes = np.ascontiguousarray(query_boxes)
    for name, arr in (("boxes", boxes), ("query_boxes", query_boxes)):
        if arr.dtype != np.float64:
            raise TypeError(f"bbox_overlaps: {name} must be float64, got {arr.dtype}")
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise ValueError(f"bbox_overlaps: {name} must be an (N, 4) array, got shape {arr.shape}")
    return _overlaps(boxes, query_boxes)


cdef _overlaps(double[:, ::1] boxes, double[:, ::1] query_boxes):
    cdef Py_ssize_t N = boxes.shape[0]
    cdef Py_ssize_t K = query_boxes.shape[0]
    out = np.zeros((N, K), dtype=np.float64)
    cdef double[:, ::1] overlaps = out
    cdef double iw, ih, box_area, ua
    cdef Py_ssize_t k, n
    with nogil:
        for k in range(K):
            box_area = ((query_boxes[k, 2] - query_boxes[k, 0] + 1) *
                        (query_boxes[k, 3] - query_boxes[k, 1] + 1))
            for n in range(N):
                iw = (min(boxes[n, 2], query_boxes[k, 2]) -
                      max(boxes[n, 0], query_boxes[k, 0]) + 1)
                if iw > 0:
                    ih = (min(boxes[n, 3], query_boxes[k, 3]) -
                          max(boxes[n, 1], query_boxes[k, 1]) + 1)
                    if ih > 0:
                        ua = ((boxes[n, 2] - boxes[n, 0] + 1) *
                              (boxes[n, 3] - boxes[n, 1] + 1) +
                              box_area - iw * ih)
                        overlaps[n, k] = iw * ih / ua
    return out
