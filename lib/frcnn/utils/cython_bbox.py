"""Upstream's ``utils.cython_bbox``: the Cython IoU matrix lives in :mod:`frcnn.boxes.overlaps`."""

from frcnn.boxes.overlaps import bbox_overlaps

__all__ = ["bbox_overlaps"]
