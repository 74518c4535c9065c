"""Upstream's ``fast_rcnn.test``: :mod:`frcnn.inference.test`."""

from frcnn.inference.test import apply_nms, im_detect, test_net

__all__ = ["apply_nms", "im_detect", "test_net"]
