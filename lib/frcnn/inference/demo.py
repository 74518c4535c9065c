"""The demo's per-image work (upstream's ``tools/demo.py``): detect, then per class NMS at
0.3 over all proposals (no score pre-filter) and keep what scores >= the confidence; and
what the demo needs around it for a user's own model and images: the image files of
folders and patterns, the model's class names, one JSON record per image."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from frcnn.datasets.pascal_voc import VOC_CLASSES
from frcnn.errors import InputError
from frcnn.inference.test import im_detect
from frcnn.utils.timer import Timer

__all__ = [
    "CONF_THRESH", "NMS_THRESH", "VOC_CLASSES", "demo_detections", "detections_record", "image_files", "model_classes",
]

#: upstream's demo settings
CONF_THRESH = 0.8
NMS_THRESH = 0.3


def demo_detections(
    net: Any, im: np.ndarray, cfg: Any, nms_fn: Any, conf_thresh: float = CONF_THRESH, nms_thresh: float = NMS_THRESH
) -> tuple[list[np.ndarray], int, float]:
    """Per class (index 0 empty) the (N, 5) detections to draw, the number of proposals,
    and the detection time in seconds."""
    timer = Timer()
    timer.tic()
    scores, boxes = im_detect(net, im, cfg=cfg)
    timer.toc()
    out = [np.zeros((0, 5), dtype=np.float32)]
    for j in range(1, scores.shape[1]):
        dets = np.hstack((boxes[:, 4 * j : 4 * (j + 1)], scores[:, j : j + 1])).astype(np.float32)
        keep = nms_fn(dets, nms_thresh) if len(dets) else []
        dets = dets[np.asarray(keep, dtype=np.int64), :]
        out.append(dets[dets[:, -1] >= conf_thresh, :])
    return out, int(boxes.shape[0]), timer.diff


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def image_files(specs: Sequence[str]) -> list[str]:
    """The images named by ``specs``: files, glob patterns, and folders (their image files,
    sorted by name, by extension: :data:`IMAGE_EXTS`). A spec that names nothing is an error."""
    out: list[str] = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(
                os.path.join(spec, f) for f in os.listdir(spec)
                if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(spec, f))
            )
            if not found:
                raise InputError(f"--images {spec}: the folder holds no image files ({', '.join(IMAGE_EXTS)})")
            out += found
        elif os.path.isfile(spec):
            out.append(spec)
        else:
            found = sorted(glob.glob(spec))
            if not found:
                raise InputError(f"--images {spec}: no such file, folder or matching files")
            out += found
    return out


def model_classes(
    caffemodel: str, num_outputs: int | None, classes_file: str | None = None
) -> tuple[tuple[str, ...], str]:
    """The class names of a model and where they came from: ``classes_file``, else the
    ``classes.txt`` that training wrote beside the model, else VOC's when the net has VOC's 21
    outputs. Anything else is an error saying what to pass."""
    from frcnn.datasets.classes_file import classes_beside
    from frcnn.datasets.voc_format import read_classes_file

    if classes_file:
        if not os.path.isfile(classes_file):
            raise InputError(f"--classes {classes_file}: no such file")
        return ("__background__", *read_classes_file(classes_file)), classes_file
    beside = classes_beside(caffemodel)
    if beside is not None:
        return beside, os.path.join(os.path.dirname(os.path.abspath(caffemodel)), "classes.txt")
    if num_outputs in (None, len(VOC_CLASSES)):
        return tuple(VOC_CLASSES), "PASCAL VOC's (the default)"
    raise InputError(
        f"{caffemodel}: no class names for its {num_outputs} outputs: pass --imdb NAME (the model's dataset) or "
        "--classes FILE (tools/train_net.py writes classes.txt beside its snapshots)"
    )


def detections_record(path: str, im: np.ndarray, dets: Sequence[np.ndarray], classes: Sequence[str]) -> dict:
    """One image's entry of the demo's JSON: its size and every detection (class name, score,
    box ``[x1, y1, x2, y2]`` in the image's pixels, 0-based, inclusive), best score first."""
    found = []
    for j in range(1, len(dets)):
        for x1, y1, x2, y2, score in np.asarray(dets[j]).reshape(-1, 5):
            found.append({"class": classes[j], "score": round(float(score), 4),
                          "box": [round(float(v), 1) for v in (x1, y1, x2, y2)]})
    found.sort(key=lambda d: -d["score"])
    return {"image": path, "width": int(im.shape[1]), "height": int(im.shape[0]), "detections": found}
