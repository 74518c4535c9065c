"""Upstream's ``fast_rcnn.bbox_transform``: :mod:`frcnn.boxes.transform`."""

from frcnn.boxes.transform import bbox_transform, bbox_transform_inv, clip_boxes

__all__ = ["bbox_transform", "bbox_transform_inv", "clip_boxes"]
