"""Upstream's ``fast_rcnn.nms_wrapper.nms(dets, thresh, force_cpu=False)``: :func:`frcnn.boxes.nms_dets`."""

from frcnn.boxes.nms import nms_dets as nms

__all__ = ["nms"]
