"""Pictures at the end of a test: precision-recall curves and a few images with their detections.

:func:`test_pictures` runs after the evaluation (``test_net`` calls it last) and writes, next
to ``detections.npz``:

- ``pr_curves.png``: precision against recall of every class, from the evaluation's own
  recall and precision arrays (a VOC-format set: ``result["pr"]``), the legend giving each
  AP and the title the mean AP with its metric; sets evaluated otherwise (COCO) get none;
- ``examples/<image>.jpg``: :data:`NUM_EXAMPLES` test images spread over the set, the
  ground-truth boxes in thin white and the detections scoring >= :data:`DRAW_THRESH` drawn
  with their class and score (OpenCV: no matplotlib needed).

Each path is printed. Without matplotlib the curves are skipped with a one-line note.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from frcnn.utils.blob import read_image
from frcnn.utils.draw import draw_boxes, save_image
from frcnn.utils.plots import missing_note, plot_pr_curves

NUM_EXAMPLES = 6
DRAW_THRESH = 0.5


def example_indices(num_images: int, count: int = NUM_EXAMPLES) -> list[int]:
    """``count`` image indices spread evenly over the set (first and last included)."""
    if num_images <= 0 or count <= 0:
        return []
    return sorted({round(x) for x in np.linspace(0, num_images - 1, min(count, num_images))})


def _gt_boxes(imdb: Any) -> list[np.ndarray] | None:
    """Per image, the gt boxes of a set that has them (None otherwise, e.g. a test split without
    annotations)."""
    try:
        roidb = imdb.gt_roidb()
    except Exception:  # noqa: BLE001 (no annotations: the pictures go without gt)
        return None
    return [np.asarray(e["boxes"], dtype=np.float64)[np.asarray(e["gt_classes"]) > 0] for e in roidb]


def draw_examples(
    imdb: Any, all_boxes: Sequence[Sequence[np.ndarray]], folder: str, indices: Sequence[int],
    thresh: float = DRAW_THRESH,
) -> list[str]:
    """Draw the images ``indices`` with gt (white) and detections >= ``thresh``; return the paths."""
    gt = _gt_boxes(imdb)
    paths = []
    for i in indices:
        im = read_image(imdb.image_path_at(i))
        if gt is not None and i < len(gt):
            for x1, y1, x2, y2 in gt[i]:
                cv2.rectangle(im, (round(x1), round(y1)), (round(x2), round(y2)), (255, 255, 255), 1)
        dets = [all_boxes[j][i] for j in range(len(all_boxes))]
        out, _ = draw_boxes(im, dets, imdb.classes, thresh=thresh)
        stem = os.path.splitext(os.path.basename(imdb.image_path_at(i)))[0]
        path = os.path.join(folder, f"{stem}.jpg")
        save_image(path, out)
        paths.append(path)
    return paths


def test_pictures(imdb: Any, all_boxes: Sequence[Sequence[np.ndarray]], result: Any, output_dir: str) -> list[str]:
    """The pictures of the module docstring; returns the paths written (also printed)."""
    written = []
    pr = result.get("pr") if isinstance(result, dict) else None
    if pr:
        mean_ap, metric = result.get("mean_ap", float("nan")), result.get("metric", "")
        title = f"{imdb.name}: mean AP {mean_ap:.4f}" + (f" ({metric})" if metric else "")
        path = plot_pr_curves(pr, os.path.join(output_dir, "pr_curves.png"), title)
        if path is None:
            print(missing_note("precision-recall curve"))
        else:
            print(f"Precision-recall curves: {path}")
            written.append(path)
    examples = draw_examples(imdb, all_boxes, os.path.join(output_dir, "examples"),
                             example_indices(len(imdb.image_index)))
    if examples:
        print(f"Detections (score >= {DRAW_THRESH}) drawn on {len(examples)} test images, gt in white: "
              f"{os.path.dirname(examples[0])}/ ({', '.join(os.path.basename(p) for p in examples)})")
    return written + examples
