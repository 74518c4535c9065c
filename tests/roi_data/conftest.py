"""Hand-made roidbs over tiny images."""

import os

import cv2
import numpy as np
import pytest


def make_entry(path, w, h, gt, props=(), flipped=False, num_classes=3):
    """A prepared roidb entry: gt rows (x1, y1, x2, y2, cls), proposals with given
    (x1, y1, x2, y2, max_overlap, cls)."""
    gt = np.array(gt, np.float64).reshape(-1, 5)
    props = np.array(props, np.float64).reshape(-1, 6)
    boxes = np.vstack([gt[:, :4], props[:, :4]])
    n = len(boxes)
    overlaps = np.zeros((n, num_classes), np.float32)
    overlaps[np.arange(len(gt)), gt[:, 4].astype(int)] = 1
    for k, p in enumerate(props):
        if p[4] > 0:
            overlaps[len(gt) + k, int(p[5])] = p[4]
    return {
        "image": path,
        "width": w,
        "height": h,
        "flipped": flipped,
        "boxes": boxes,
        "gt_classes": np.r_[gt[:, 4], np.zeros(len(props))].astype(np.int32),
        "gt_overlaps": overlaps,
        "seg_areas": np.zeros(n, np.float32),
        "max_overlaps": overlaps.max(axis=1),
        "max_classes": overlaps.argmax(axis=1),
    }


@pytest.fixture
def image_files(tmp_path):
    """Images of several sizes with distinct content; returns {(w, h): path}."""
    out = {}
    rng = np.random.RandomState(0)
    for w, h in [(40, 30), (30, 40), (50, 20), (24, 36), (32, 32), (60, 45)]:
        p = os.path.join(tmp_path, f"im_{w}x{h}.png")
        cv2.imwrite(p, rng.randint(0, 256, (h, w, 3)).astype(np.uint8))
        out[(w, h)] = p
    return out


@pytest.fixture
def roidb(image_files):
    """Six entries (landscape and portrait) with gt and proposals at many overlaps."""
    rng = np.random.RandomState(1)
    entries = []
    for (w, h), path in image_files.items():
        props = []
        for _ in range(40):
            x1, y1 = rng.randint(0, w // 2), rng.randint(0, h // 2)
            props.append(
                [
                    x1,
                    y1,
                    rng.randint(x1 + 1, w),
                    rng.randint(y1 + 1, h),
                    round(rng.uniform(0, 1), 2),
                    rng.randint(1, 3),
                ]
            )
        entries.append(make_entry(path, w, h, [[1, 2, w // 2, h // 2, 1], [3, 1, w - 2, h - 3, 2]], props))
    return entries
