"""Images to network input blobs, as py-faster-rcnn's ``lib/utils/blob.py``.

An image is read as BGR uint8, turned into float32, has ``PIXEL_MEANS`` subtracted
*before* it is resized, and is scaled so that its shorter side becomes the target size
unless that makes the longer side exceed ``max_size``:

    scale = target / min(H, W);  if round(scale * max(H, W)) > max_size: scale = max_size / max(H, W)

Several images are zero-padded (top-left aligned) to the largest H and W and stacked
NCHW. No division by 255, no std normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def read_image(path: str) -> np.ndarray:
    """Read an image as BGR uint8 (H, W, 3) or raise naming the file.

    EXIF orientation is ignored on purpose: annotation tools and the image headers that
    give the dataset's widths use the stored pixel grid, and so does everything here.
    """
    im = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if im is None:
        raise FileNotFoundError(f"{path}: cannot read image (missing, unreadable or not an image file)")
    return im


def im_scale_for(shape: Sequence[int], target_size: int, max_size: int) -> float:
    """The resize factor for an image of ``shape`` (H, W, ...) (upstream's rule)."""
    im_size_min = min(shape[0], shape[1])
    im_size_max = max(shape[0], shape[1])
    if im_size_min <= 0:
        raise ValueError(f"im_scale_for: image has an empty side, shape {tuple(shape)}")
    im_scale = float(target_size) / float(im_size_min)
    # Prevent the biggest axis from being more than max_size
    if np.round(im_scale * im_size_max) > max_size:
        im_scale = float(max_size) / float(im_size_max)
    return im_scale


def prep_im_for_blob(
    im: np.ndarray, pixel_means: np.ndarray, target_size: int, max_size: int
) -> tuple[np.ndarray, float]:
    """Mean-subtract and scale an image for use in a blob; returns (float32 image, scale)."""
    if im.ndim != 3 or im.shape[2] != 3:
        raise ValueError(f"prep_im_for_blob: im must be (H, W, 3) BGR, got shape {im.shape}")
    im = im.astype(np.float32, copy=True)
    im -= np.asarray(pixel_means, dtype=np.float32).reshape(1, 1, 3)
    im_scale = im_scale_for(im.shape, target_size, max_size)
    im = cv2.resize(im, None, None, fx=im_scale, fy=im_scale, interpolation=cv2.INTER_LINEAR)
    return im, im_scale


def im_list_to_blob(ims: Sequence[np.ndarray]) -> np.ndarray:
    """Stack (H, W, 3) images into a zero-padded (N, 3, maxH, maxW) float32 blob."""
    if len(ims) == 0:
        raise ValueError("im_list_to_blob: empty image list")
    max_shape = np.array([im.shape for im in ims]).max(axis=0)
    blob = np.zeros((len(ims), max_shape[0], max_shape[1], 3), dtype=np.float32)
    for i, im in enumerate(ims):
        blob[i, 0 : im.shape[0], 0 : im.shape[1], :] = im
    # (N, H, W, C) -> (N, C, H, W)
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))
