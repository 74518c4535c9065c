"""What a detection set holds, measured the way training will see it.

:func:`summarize` reads an imdb's ground truth (the cached gt roidb: no image is decoded)
and gives the number of images, the boxes of each class, and every box as the training
net receives it: scaled by the factor of ``TRAIN.SCALES`` / ``TRAIN.MAX_SIZE``
(:func:`frcnn.utils.blob.im_scale_for`, upstream's rule), once per training scale. From
those :func:`format_summary` prints sizes (``sqrt(w * h)``, +1 pixel widths) and aspect
ratios (``h / w``, upstream's anchor ratio) as min / median / max, and
:mod:`frcnn.training.defaults` derives anchors that cover them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frcnn.errors import InputError
from frcnn.utils.blob import im_scale_for


@dataclass
class DatasetSummary:
    """One training set at its training scale(s).

    ``boxes`` (N, 4) float64 are the gt boxes in scaled-image pixels (``x1, y1, x2, y2``,
    inclusive), one row per box and training scale; ``image_sizes`` (N, 2) the scaled
    (width, height) of each row's image; ``box_scales`` (N,) its scale factor;
    ``box_classes`` (N,) the class index.
    """

    name: str
    classes: tuple[str, ...]
    num_images: int
    images_without_boxes: int
    boxes_per_class: dict[str, int]
    scales: tuple[int, ...]
    max_size: int
    boxes: np.ndarray = field(repr=False)
    image_sizes: np.ndarray = field(repr=False)
    box_scales: np.ndarray = field(repr=False)
    box_classes: np.ndarray = field(repr=False)

    @property
    def num_boxes(self) -> int:
        """Boxes in the set (each counted once, whatever the number of training scales)."""
        return int(sum(self.boxes_per_class.values()))

    @property
    def sizes(self) -> np.ndarray:
        """``sqrt(w * h)`` of every scaled box (+1 widths)."""
        w = self.boxes[:, 2] - self.boxes[:, 0] + 1
        h = self.boxes[:, 3] - self.boxes[:, 1] + 1
        return np.sqrt(w * h)

    @property
    def aspect_ratios(self) -> np.ndarray:
        """``h / w`` of every box (upstream's anchor ratio)."""
        w = self.boxes[:, 2] - self.boxes[:, 0] + 1
        h = self.boxes[:, 3] - self.boxes[:, 1] + 1
        return h / w


def _gt_entries(imdb: Any) -> list[dict]:
    """The ground-truth roidb of ``imdb`` (of every member of a joined ``a+b`` set)."""
    members = getattr(imdb, "imdbs", None)
    if members is not None:
        return [e for d in members for e in _gt_entries(d)]
    return imdb.gt_roidb()


def _image_size(imdb: Any, i: int, entry: dict) -> tuple[int, int]:
    if "width" in entry and "height" in entry:
        return int(entry["width"]), int(entry["height"])
    from frcnn.datasets.image_info import image_size

    return image_size(imdb.image_path_at(i))


def summarize(imdb: Any, scales: Sequence[int], max_size: int) -> DatasetSummary:
    """The summary of ``imdb`` (its gt boxes, difficult ones left out as in training) at the
    training scales ``scales`` (``TRAIN.SCALES``) and ``max_size`` (``TRAIN.MAX_SIZE``)."""
    scales = tuple(int(s) for s in scales)
    if not scales:
        raise InputError("TRAIN.SCALES: empty; the summary needs at least one training scale")
    entries = _gt_entries(imdb)
    counts = np.zeros(imdb.num_classes, dtype=np.int64)
    boxes, sizes, factors, classes = [], [], [], []
    empty = 0
    for i, entry in enumerate(entries):
        gt = np.asarray(entry["boxes"], dtype=np.float64).reshape(-1, 4)
        cls = np.asarray(entry["gt_classes"]).reshape(-1)
        keep = cls > 0
        gt, cls = gt[keep], cls[keep]
        if len(gt) == 0:
            empty += 1
            continue
        np.add.at(counts, cls, 1)
        width, height = _image_size(imdb, i, entry)
        for target in scales:
            s = im_scale_for((height, width), target, max_size)
            boxes.append(gt * s)
            # cv2.resize(fx=s) makes round(W * s) x round(H * s) pixels
            sizes.append(np.tile([round(width * s), round(height * s)], (len(gt), 1)))
            factors.append(np.full(len(gt), s))
            classes.append(cls)
    return DatasetSummary(
        name=imdb.name,
        classes=tuple(imdb.classes),
        num_images=len(entries),
        images_without_boxes=empty,
        boxes_per_class={c: int(counts[j]) for j, c in enumerate(imdb.classes) if j > 0},
        scales=scales,
        max_size=int(max_size),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        image_sizes=np.concatenate(sizes).astype(np.float64) if sizes else np.zeros((0, 2)),
        box_scales=np.concatenate(factors) if factors else np.zeros(0),
        box_classes=np.concatenate(classes).astype(np.int64) if classes else np.zeros(0, np.int64),
    )


def _mmm(values: np.ndarray, fmt: str) -> str:
    """``min / median / max`` of ``values``."""
    if values.size == 0:
        return "-"
    return " / ".join(format(v, fmt) for v in (values.min(), np.median(values), values.max()))


def format_summary(s: DatasetSummary) -> list[str]:
    """The summary as printed lines (counts, then sizes and aspect ratios at the training scale)."""
    scale_txt = ", ".join(str(x) for x in s.scales)
    lines = [
        (
            f"Dataset {s.name}: {s.num_images} images ({s.images_without_boxes} without boxes), "
            f"{s.num_boxes} boxes, {len(s.classes) - 1} classes"
        ),
        "  boxes per class: " + ", ".join(f"{c} {n}" for c, n in s.boxes_per_class.items()),
        f"  at the training scale (TRAIN.SCALES [{scale_txt}], TRAIN.MAX_SIZE {s.max_size}), min / median / max:",
        f"    box size sqrt(w*h): {_mmm(s.sizes, '.0f')} px",
        f"    aspect ratio h/w:   {_mmm(s.aspect_ratios, '.2f')}",
    ]
    if s.num_boxes:
        im = s.image_sizes
        lines.append(f"    image width x height: {_mmm(im[:, 0], '.0f')} x {_mmm(im[:, 1], '.0f')} px")
    return lines
