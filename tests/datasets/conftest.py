"""Fixtures for the dataset tests: tiny VOC-format folders written on the fly."""

import os

import cv2
import numpy as np
import pytest

from frcnn.config import get_default_config


def _xml(name, w, h, objects, with_size=True):
    size = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>" if with_size else ""
    objs = ""
    for o in objects:
        cls, (x1, y1, x2, y2) = o[0], o[1]
        difficult = o[2] if len(o) > 2 else 0
        objs += (
            f"<object><name>{cls}</name><difficult>{difficult}</difficult><bndbox>"
            f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    return f"<annotation><filename>{name}.jpg</filename>{size}{objs}</annotation>"


@pytest.fixture
def write_voc():
    """write_voc(root, images, splits, classes=None, sizes_in_xml=True) -> root.

    images: {id: (width, height, [(class, (xmin, ymin, xmax, ymax) 1-based[, difficult]), ...])}
    splits: {split: [ids]}; classes: written to classes.txt when given.
    """

    def write(root, images, splits, classes=None, sizes_in_xml=True, ext=".jpg"):
        for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        for k, (image_id, (w, h, objects)) in enumerate(images.items()):
            im = np.full((h, w, 3), 40 + 10 * k, dtype=np.uint8)
            assert cv2.imwrite(os.path.join(root, "JPEGImages", image_id + ext), im)
            with open(os.path.join(root, "Annotations", image_id + ".xml"), "w") as f:
                f.write(_xml(image_id, w, h, objects, sizes_in_xml))
        for split, ids in splits.items():
            with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
                f.write("\n".join(ids) + "\n")
        if classes is not None:
            with open(os.path.join(root, "classes.txt"), "w") as f:
                f.write("\n".join(classes) + "\n")
        return root

    return write


@pytest.fixture
def data_cfg(tmp_path):
    """A config whose DATA_DIR is an empty temporary folder."""
    cfg = get_default_config()
    cfg.DATA_DIR = str(tmp_path / "data")
    os.makedirs(cfg.DATA_DIR)
    return cfg


@pytest.fixture
def tiny_voc(write_voc, data_cfg):
    """data/shapes: 4 images, classes cat/dog (from classes.txt: dog first), splits trainval/test."""
    root = os.path.join(data_cfg.DATA_DIR, "shapes")
    images = {
        "a1": (60, 40, [("dog", (5, 5, 30, 20)), ("cat", (31, 10, 50, 35))]),
        "a2": (50, 70, [("cat", (10, 10, 40, 60)), ("dog", (1, 1, 10, 10), 1)]),  # second is difficult
        "a3": (40, 40, []),  # an image with no objects
        "a4": (64, 48, [("dog", (2, 3, 60, 40))]),
    }
    write_voc(root, images, {"trainval": ["a1", "a2", "a3"], "test": ["a4"]}, classes=["dog", "cat"])
    return data_cfg, root
