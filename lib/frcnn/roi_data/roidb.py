"""Roidb preparation for training (upstream's ``lib/roi_data_layer/roidb.py``).

1. ``prepare_roidb``: add ``image`` (path), ``width``, ``height``, ``max_overlaps`` and
   ``max_classes`` to every entry (the max / argmax over the classes of ``gt_overlaps``, a
   :class:`frcnn.datasets.class_overlaps.ClassOverlaps` or a dense array: the same values).
2. ``compute_bbox_regression_targets``: ``bbox_targets`` (R, 5) = class, tx, ty, tw, th for
   rows whose max overlap >= ``bbox_thresh`` (against the best gt row, overlap == 1), then
   normalised per class by the empirical means/stds (E[x^2] - E[x]^2, class counts start at
   ``eps``) or by fixed ones. ``add_bbox_regression_targets(roidb, cfg)`` reads the config.
3. ``filter_roidb``: drop entries with neither a fg nor a bg RoI (e.g. images with no objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from frcnn.datasets.class_overlaps import as_class_overlaps
from frcnn.roi_data.sampling import fg_bg_candidates


def prepare_roidb(imdb: Any) -> None:
    """Add image path, size and max overlap/class to ``imdb.roidb`` (in place)."""
    from frcnn.datasets.image_info import image_size

    roidb = imdb.roidb
    for i, entry in enumerate(roidb):
        entry["image"] = imdb.image_path_at(i)
        if "width" not in entry or "height" not in entry:
            entry["width"], entry["height"] = image_size(entry["image"])
        gt_overlaps = as_class_overlaps(entry["gt_overlaps"])  # (R, K), dense arrays too
        if gt_overlaps.shape[0]:
            # max overlap with gt over classes (columns) and the class that has it
            max_overlaps = gt_overlaps.max(axis=1)
            max_classes = gt_overlaps.argmax(axis=1)
        else:
            max_overlaps = np.zeros((0,), dtype=np.float32)
            max_classes = np.zeros((0,), dtype=np.int64)
        entry["max_classes"] = max_classes
        entry["max_overlaps"] = max_overlaps
        # sanity checks: max overlap of 0 => class should be zero (background)
        if np.any(max_classes[max_overlaps == 0] != 0):
            raise ValueError(f"{entry['image']}: a row with overlap 0 has a non-background class")
        # max overlap > 0 => class should not be zero (must be a fg class)
        if np.any(max_classes[max_overlaps > 0] == 0):
            raise ValueError(f"{entry['image']}: a row with overlap > 0 has the background class")


def _compute_targets(
    rois: np.ndarray, overlaps: np.ndarray, labels: np.ndarray, bbox_thresh: float
) -> np.ndarray:
    """(R, 5) class + regression targets of each row w.r.t. its best-overlapping gt row."""
    from frcnn.boxes.overlaps import bbox_overlaps
    from frcnn.boxes.transform import bbox_transform

    targets = np.zeros((rois.shape[0], 5), dtype=np.float32)
    # indices of ground-truth ROIs
    gt_inds = np.where(overlaps == 1)[0]
    if len(gt_inds) == 0:
        # bail if the image has no ground-truth ROIs
        return targets
    # indices of examples for which we try to make predictions
    ex_inds = np.where(overlaps >= bbox_thresh)[0]
    rois = np.ascontiguousarray(rois, dtype=np.float64)
    # which gt ROI each ex ROI has max overlap with (this is the gt it regresses to)
    ex_gt_overlaps = bbox_overlaps(
        np.ascontiguousarray(rois[ex_inds, :]), np.ascontiguousarray(rois[gt_inds, :])
    )
    gt_assignment = ex_gt_overlaps.argmax(axis=1)
    gt_rois = rois[gt_inds[gt_assignment], :]
    ex_rois = rois[ex_inds, :]
    targets[ex_inds, 0] = labels[ex_inds]
    targets[ex_inds, 1:] = bbox_transform(ex_rois, gt_rois)
    return targets


def compute_bbox_regression_targets(
    roidb: list[dict],
    *,
    bbox_thresh: float = 0.5,
    normalize_targets: bool = True,
    normalize_precomputed: bool = False,
    normalize_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    normalize_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
    eps: float = 1e-14,
) -> tuple[np.ndarray, np.ndarray]:
    """Add (normalised) ``bbox_targets`` to every entry; return the (4K,) means and stds."""
    if not roidb:
        raise ValueError("compute_bbox_regression_targets: empty roidb")
    num_classes = roidb[0]["gt_overlaps"].shape[1]
    for entry in roidb:
        entry["bbox_targets"] = _compute_targets(
            entry["boxes"], entry["max_overlaps"], entry["max_classes"], bbox_thresh
        )

    if normalize_precomputed:
        # use fixed / precomputed "means" and "stds" instead of empirical values
        means = np.tile(np.array(normalize_means, dtype=np.float64), (num_classes, 1))
        stds = np.tile(np.array(normalize_stds, dtype=np.float64), (num_classes, 1))
    else:
        # compute values needed for means and stds: var(x) = E(x^2) - E(x)^2
        class_counts = np.zeros((num_classes, 1)) + eps
        sums = np.zeros((num_classes, 4))
        squared_sums = np.zeros((num_classes, 4))
        for entry in roidb:
            targets = entry["bbox_targets"]
            for cls in range(1, num_classes):
                cls_inds = np.where(targets[:, 0] == cls)[0]
                if cls_inds.size > 0:
                    class_counts[cls] += cls_inds.size
                    sums[cls, :] += targets[cls_inds, 1:].sum(axis=0)
                    squared_sums[cls, :] += (targets[cls_inds, 1:].astype(np.float64) ** 2).sum(axis=0)
        means = sums / class_counts
        stds = np.sqrt(np.maximum(squared_sums / class_counts - means**2, 0.0))

    print("bbox target means:")
    print(means)
    print(means[1:, :].mean(axis=0))  # ignore bg class
    print("bbox target stdevs:")
    print(stds)
    print(stds[1:, :].mean(axis=0))  # ignore bg class

    # normalize targets
    if normalize_targets:
        print("Normalizing targets")
        # A component with no spread (std 0: every target of the class has the mean's value, e.g.
        # a class whose only examples are its gt boxes) is left at target - mean = 0 instead of
        # upstream's 0 / 0 = NaN, which stopped training; un-normalising with that std of 0 then
        # predicts the mean, the only value the class was trained on.
        divisors = np.where(stds > 0, stds, 1.0)
        for entry in roidb:
            targets = entry["bbox_targets"]
            for cls in range(1, num_classes):
                cls_inds = np.where(targets[:, 0] == cls)[0]
                targets[cls_inds, 1:] -= means[cls, :]
                targets[cls_inds, 1:] /= divisors[cls, :]
    else:
        print("NOT normalizing targets")

    # these values will be needed for making predictions (the predicts will need to be unnormalized)
    return means.ravel(), stds.ravel()


def add_bbox_regression_targets(roidb: list[dict], cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's entry point: :func:`compute_bbox_regression_targets` with ``cfg.TRAIN``'s values."""
    t = cfg.TRAIN
    return compute_bbox_regression_targets(
        roidb,
        bbox_thresh=t.BBOX_THRESH,
        normalize_targets=t.BBOX_NORMALIZE_TARGETS,
        normalize_precomputed=t.BBOX_NORMALIZE_TARGETS_PRECOMPUTED,
        normalize_means=t.BBOX_NORMALIZE_MEANS,
        normalize_stds=t.BBOX_NORMALIZE_STDS,
        eps=cfg.EPS,
    )


def filter_roidb(
    roidb: list[dict], fg_thresh: float = 0.5, bg_thresh_hi: float = 0.5, bg_thresh_lo: float = 0.1
) -> list[dict]:
    """Entries with at least one fg RoI (max overlap >= fg_thresh) or one bg RoI (max overlap
    in [bg_thresh_lo, bg_thresh_hi)). An image with no objects and no proposals has neither."""

    def is_valid(entry: dict) -> bool:
        fg_inds, bg_inds = fg_bg_candidates(entry["max_overlaps"], fg_thresh, bg_thresh_hi, bg_thresh_lo)
        return len(fg_inds) > 0 or len(bg_inds) > 0

    filtered = [entry for entry in roidb if is_valid(entry)]
    print(f"Filtered {len(roidb) - len(filtered)} roidb entries: {len(roidb)} -> {len(filtered)}")
    return filtered
