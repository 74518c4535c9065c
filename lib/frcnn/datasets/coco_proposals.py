"""External proposals for COCO (upstream's ``coco.py``): Hosang-layout ``.mat`` files and
the crowd filter."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from frcnn.datasets import ds_utils
from frcnn.datasets.class_overlaps import as_class_overlaps
from frcnn.errors import InputError


def box_file(data_name: str, index: int) -> str:
    """``<first 14>/<first 22>/<name>.mat``, e.g.
    ``COCO_val2014_0/COCO_val2014_000000447/COCO_val2014_000000447991.mat``."""
    file_name = f"COCO_{data_name}_{int(index):012d}.mat"
    return os.path.join(file_name[:14], file_name[:22], file_name)


def load_hosang_proposals(
    coco_api: Any,
    image_index: Sequence[int],
    data_name: str,
    mat_dir: str,
    mcg_order: bool,
    top_k: int,
    min_size: float,
) -> list[np.ndarray]:
    """Per image: the ``boxes`` of its ``.mat`` (1-based; MCG's in y1, x1, y2, x2 order) made
    0-based, de-duplicated, small ones removed, the first ``top_k`` kept (uint16)."""
    from frcnn.datasets.mat5 import load_mat

    box_list = []
    for i, index in enumerate(image_index):
        if i % 1000 == 0:
            print(f"{os.path.basename(os.path.dirname(mat_dir))}: {i + 1:d}/{len(image_index):d}")
        path = os.path.join(mat_dir, box_file(data_name, index))
        raw = np.asarray(load_mat(path, ["boxes"]).get("boxes"), dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != 4:
            raise InputError(f"{path}: 'boxes' must be an (R, 4) matrix, got shape {raw.shape}")
        boxes = np.maximum(raw - 1, 0).astype(np.uint16)
        if mcg_order:
            boxes = boxes[:, (1, 0, 3, 2)]
        boxes = boxes[ds_utils.unique_boxes(boxes), :]
        boxes = boxes[ds_utils.filter_small_boxes(boxes, min_size), :]
        boxes = boxes[:top_k, :]
        im = coco_api.imgs[index]
        ds_utils.validate_boxes(boxes, width=im.get("width", 0), height=im.get("height", 0), where=path)
        box_list.append(boxes)
    return box_list


def filter_crowd_proposals(roidb: list[dict], crowd_thresh: float) -> list[dict]:
    """Set overlap -1 for proposals whose crowd IoU (intersection / proposal area) with a
    crowd box exceeds ``crowd_thresh`` (in place; returns ``roidb``)."""
    from pycocotools import mask as coco_mask

    for entry in roidb:
        overlaps = as_class_overlaps(entry["gt_overlaps"])
        crowd_inds = np.where(overlaps.max(axis=1) == -1)[0] if len(overlaps) else np.zeros(0, int)
        non_gt_inds = np.where(entry["gt_classes"] == 0)[0]
        if len(crowd_inds) == 0 or len(non_gt_inds) == 0:
            continue
        crowd_boxes = ds_utils.xyxy_to_xywh(entry["boxes"][crowd_inds, :].astype(np.float64))
        non_gt_boxes = ds_utils.xyxy_to_xywh(entry["boxes"][non_gt_inds, :].astype(np.float64))
        ious = coco_mask.iou(non_gt_boxes, crowd_boxes, [1] * len(crowd_inds))
        bad_inds = np.where(np.asarray(ious).max(axis=1) > crowd_thresh)[0]
        entry["gt_overlaps"] = overlaps.with_rows(non_gt_inds[bad_inds], -1.0)
    return roidb
