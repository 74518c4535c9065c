"""Test-time post-processing on the net's device: box decoding, the per-class score threshold,
per-class NMS as one batched call, the top ``max_per_image``; one copy to the host at the end.

It computes what :func:`frcnn.inference.test.detections_for_image` computes from NumPy arrays
(the reference, ``TEST.DEVICE_POSTPROCESS False``), step for step:

1. decode: ``bbox_transform_inv`` + ``clip_boxes`` (:mod:`frcnn.boxes.transform`), the RPN's
   RoIs divided by the image scale in float64 first, as NumPy does;
2. candidates: every (RoI r, class j >= 1) with ``score > thresh``, ordered class by class and
   by r within a class, as the reference's loop over classes visits them;
3. NMS per class in one call: each class's boxes are moved by ``class * offset`` (an integer
   larger than every coordinate) so that boxes of two classes never overlap, and the shifted
   float64 boxes go through :func:`frcnn.ops.nms` once. The shift is exact whenever every
   coordinate is >= 0 and carries no bits below float64's ulp at the shifted size (float32
   coordinates >= about 2**-12 always do); that is checked on the device, and when it fails
   (coordinates below 0, a positive coordinate under about 2**-12, NaN) the classes run one
   NMS call each, so the kept boxes are those of the reference in every case;
4. regroup the kept candidates by class (a stable sort: within a class they stay in NMS
   order, descending score, equal scores by lower RoI index);
5. top ``max_per_image``: every detection scoring >= the max_per_image-th largest score is
   kept (upstream's rule, so ties at the limit all stay);
6. one copy of the packed detections (box, score, class, kept-by-5) to the host, split into
   upstream's per-class (N, 5) float32 arrays.

On the CPU the decode of step 1 runs the NumPy functions on the tensors' own memory (no copy):
NumPy's float32 ``exp`` and torch's differ in the last bit for about 4 inputs in 10 (2,000,000
normal deltas, NumPy 2.4 / torch 2.13), and the CPU result must be the reference's bit for bit.
On a GPU the decode is the torch form of the same functions (its ``exp`` is the device's).

Host synchronisations per image: the candidate count (``nonzero``), the exactness flag of
step 3, the NMS kernel's result count, and the final copy.
"""

from __future__ import annotations

import numpy as np
import torch

from frcnn.boxes.transform import bbox_transform_inv, clip_boxes
from frcnn.ops import nms


def decode_boxes(
    boxes: torch.Tensor, deltas: torch.Tensor | None, num_classes: int, im_shape: tuple, scale: float | None = None
) -> torch.Tensor:
    """(R, 4K) float32 predicted boxes in image pixels, on ``boxes``' device.

    ``boxes``: (R, 4) proposals, in image pixels, or in input pixels with ``scale`` (the RPN's
    RoIs: divided by ``scale`` in float64, as the reference divides a float32 array by a NumPy
    float64). ``deltas``: (R, 4K) ``bbox_pred``, or None (no ``TEST.BBOX_REG``: the boxes
    repeated K times). ``im_shape``: the original image's (H, W, ...).
    """
    boxes = boxes.double()
    if scale is not None:
        boxes = boxes / float(scale)
    if deltas is None:
        return boxes.repeat(1, num_classes).float()
    deltas = deltas.float()
    if boxes.device.type == "cpu":  # NumPy's exp, bit for bit (module docstring)
        pred = clip_boxes(bbox_transform_inv(boxes.numpy(), deltas.numpy()), im_shape)
        return torch.from_numpy(pred)
    return clip_boxes(bbox_transform_inv(boxes, deltas), im_shape)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each class in one kernel call (classes shifted apart); kept indices on the device.

    Returns the kept indices in descending score order, equal scores by lower index, as one
    :func:`frcnn.ops.nms` call per class would keep them (see the module docstring, step 3).
    """
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    b = boxes.double()
    offset = torch.floor(b.max()) + 2.0  # > every coordinate + 1: shifted classes never touch
    shift = (classes.double() * offset)[:, None]
    shifted = b + shift
    exact = ((shifted - shift) == b).all() & (b.min() >= 0)
    if bool(exact):
        return nms(shifted, scores.double(), iou_threshold)
    keep = []
    for c in torch.unique(classes).tolist():
        idx = torch.nonzero(classes == c).squeeze(1)
        keep.append(idx[nms(b[idx], scores[idx].double(), iou_threshold)])
    keep = torch.cat(keep)
    order = torch.sort(scores[keep], descending=True, stable=True).indices
    return keep[order]


def detections_on_device(
    scores: torch.Tensor, boxes: torch.Tensor, nms_thresh: float, thresh: float, max_per_image: int
) -> list[np.ndarray]:
    """Upstream's per-class detections of one image (class 0 empty), computed on the device.

    ``scores`` (R, K), ``boxes`` (R, 4K) float32 on one device (from :func:`decode_boxes`).
    Returns ``[ (N_j, 5) float32 x1, y1, x2, y2, score ]`` for j = 0..K-1, equal to
    :func:`frcnn.inference.test.detections_for_image` with :func:`frcnn.ops.nms`.
    """
    num_rois, num_classes = scores.shape
    out = [np.zeros((0, 5), dtype=np.float32) for _ in range(num_classes)]
    if num_classes < 2 or num_rois == 0:
        return out
    scores = scores.float()
    boxes = boxes.float().reshape(num_rois, num_classes, 4)
    # (K-1, R) -> (class, roi) pairs, class-major like the reference's loop
    cand = torch.nonzero(scores[:, 1:].t() > thresh)
    if cand.shape[0] == 0:
        return out
    cls, roi = cand[:, 0] + 1, cand[:, 1]
    cand_scores = scores[roi, cls]
    cand_boxes = boxes[roi, cls]
    keep = batched_nms(cand_boxes, cand_scores, cls, nms_thresh)
    keep = keep[torch.sort(cls[keep], stable=True).indices]  # by class, NMS order within
    kept_scores = cand_scores[keep]
    within = torch.ones_like(kept_scores)
    if 0 < max_per_image < keep.shape[0]:
        # the max_per_image-th largest score: np.sort(scores)[-max_per_image]
        limit = torch.kthvalue(kept_scores, keep.shape[0] - max_per_image + 1).values
        within = (kept_scores >= limit).float()
    packed = torch.cat(
        [cand_boxes[keep], kept_scores[:, None], cls[keep, None].float(), within[:, None]], dim=1
    ).cpu().numpy()  # the one device -> host copy
    packed = packed[packed[:, 6] > 0]
    classes = packed[:, 5].astype(np.int64)
    bounds = np.searchsorted(classes, np.arange(num_classes + 1))
    for j in range(1, num_classes):
        if bounds[j + 1] > bounds[j]:
            out[j] = np.ascontiguousarray(packed[bounds[j] : bounds[j + 1], :5])
    return out

