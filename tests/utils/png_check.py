"""What the picture tests check of a PNG: a real PNG file, a useful size, not blank."""

from __future__ import annotations

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path: str, min_width: int = 300, min_height: int = 200) -> np.ndarray:
    """Assert ``path`` is a PNG that decodes to at least ``min_width`` x ``min_height`` pixels
    with drawn content (many distinct colours, not one flat fill); return the image."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, f"{path}: not a PNG file"
    im = cv2.imread(path, cv2.IMREAD_COLOR)
    assert im is not None, f"{path}: does not decode"
    h, w = im.shape[:2]
    assert w >= min_width and h >= min_height, f"{path}: {w} x {h} px is too small"
    colours = np.unique(im.reshape(-1, 3), axis=0)
    assert len(colours) > 20, f"{path}: only {len(colours)} colours: blank"
    # not mostly one colour: less than 99.5% of the pixels are the most common one (the background)
    flat = im.reshape(-1, 3)
    _, counts = np.unique(flat, axis=0, return_counts=True)
    assert counts.max() < 0.995 * len(flat), f"{path}: almost all one colour"
    return im
