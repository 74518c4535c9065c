"""Upstream's ``lib/fast_rcnn`` import paths, kept for code written against py-faster-rcnn.

Each module here is an alias; the code lives in :mod:`frcnn.training` (train_net, solver
wrapper), :mod:`frcnn.inference` (im_detect, test_net) and :mod:`frcnn.boxes` (NMS, box
transforms). The config is :mod:`frcnn.config`.
"""
