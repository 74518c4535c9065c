"""Detections on disk: ``detections.npz`` instead of upstream's ``detections.pkl``.

In memory, detections are upstream's ``all_boxes[class][image]``: an (N, 5) float32 array
``[x1, y1, x2, y2, score]`` per class and image (class 0, background, stays empty). On
disk they are flattened into three arrays (``dets`` (M, 5), ``cls`` (M,), ``img`` (M,))
plus the numbers of classes and images, readable with ``allow_pickle=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from frcnn.errors import InputError
from frcnn.utils.io import atomic_write

AllBoxes = list  # list[list[np.ndarray]]: [num_classes][num_images] -> (N, 5)


def empty_all_boxes(num_classes: int, num_images: int) -> AllBoxes:
    """``all_boxes`` with an empty (0, 5) array in every slot."""
    return [[np.zeros((0, 5), dtype=np.float32) for _ in range(num_images)] for _ in range(num_classes)]


def save_detections(path: str, all_boxes: AllBoxes, class_names: Sequence[str] = ()) -> None:
    """Write ``all_boxes`` to ``path`` (``.npz``) atomically."""
    num_classes = len(all_boxes)
    num_images = len(all_boxes[0]) if num_classes else 0
    dets, cls, img = [], [], []
    for j, per_image in enumerate(all_boxes):
        if len(per_image) != num_images:
            raise InputError(f"{path}: class {j} has {len(per_image)} images, class 0 has {num_images}")
        for i, d in enumerate(per_image):
            d = np.asarray(d, dtype=np.float32).reshape(-1, 5) if len(d) else np.zeros((0, 5), np.float32)
            dets.append(d)
            cls.append(np.full(len(d), j, dtype=np.int32))
            img.append(np.full(len(d), i, dtype=np.int32))
    with atomic_write(path, "wb") as f:
        np.savez_compressed(
            f,
            dets=np.concatenate(dets) if dets else np.zeros((0, 5), np.float32),
            cls=np.concatenate(cls) if cls else np.zeros(0, np.int32),
            img=np.concatenate(img) if img else np.zeros(0, np.int32),
            num_classes=np.int64(num_classes),
            num_images=np.int64(num_images),
            class_names=np.array(list(class_names), dtype=str),
        )


def load_detections(path: str) -> AllBoxes:
    """Read a file written by :func:`save_detections` back into ``all_boxes``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            dets, cls, img = z["dets"], z["cls"], z["img"]
            num_classes, num_images = int(z["num_classes"]), int(z["num_images"])
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a detections file written by test_net: {e}") from None
    if dets.ndim != 2 or dets.shape[1] != 5 or len(cls) != len(dets) or len(img) != len(dets):
        raise InputError(f"{path}: dets/cls/img have inconsistent shapes {dets.shape}, {cls.shape}, {img.shape}")
    if len(dets) and (cls.min() < 0 or cls.max() >= num_classes or img.min() < 0 or img.max() >= num_images):
        raise InputError(f"{path}: class or image index out of range ({num_classes} classes, {num_images} images)")
    all_boxes = empty_all_boxes(num_classes, num_images)
    order = np.lexsort((img, cls))  # stable: keeps the saved order within a (class, image) slot
    dets, cls, img = dets[order], cls[order], img[order]
    bounds = np.flatnonzero(np.diff(cls.astype(np.int64) * num_images + img)) + 1
    for chunk in np.split(np.arange(len(dets)), bounds):
        if len(chunk):
            all_boxes[int(cls[chunk[0]])][int(img[chunk[0]])] = dets[chunk].astype(np.float32)
    return all_boxes
