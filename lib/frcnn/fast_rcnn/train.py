"""Upstream's ``fast_rcnn.train``: :mod:`frcnn.training.train`."""

from frcnn.training.data import filter_roidb, get_training_roidb
from frcnn.training.train import SolverWrapper, train_net

__all__ = ["SolverWrapper", "filter_roidb", "get_training_roidb", "train_net"]
