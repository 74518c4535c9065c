"""The pictures of the toy quick start (`make quickstart`, which CI runs before the tests):
a loss curve beside the snapshots and precision-recall curves beside the detections, valid PNGs.

Where this checkout has run no quick start of this version (no loss table beside the toy
snapshots, no drawn examples beside the toy detections), there is nothing to check; the same
pictures are checked after a short run of the tools in tests/tools/test_first_hour.py."""

import glob
import os

import pytest

from tests.tools.helpers import ROOT
from tests.utils.png_check import assert_valid_png

OUT = os.path.join(ROOT, "output", "faster_rcnn_end2end")


def test_the_quick_start_drew_its_loss_curve():
    table = os.path.join(OUT, "toy_trainval", "small_faster_rcnn_losses.csv")
    if not os.path.exists(table):
        pytest.skip("no toy quick start of this version here (make quickstart)")
    assert_valid_png(os.path.join(OUT, "toy_trainval", "small_faster_rcnn_loss.png"), 800, 600)


def test_the_quick_start_drew_its_precision_recall_curves():
    tested = [d for d in glob.glob(os.path.join(OUT, "toy_test", "*")) if os.path.isdir(os.path.join(d, "examples"))]
    if not tested:
        pytest.skip("no toy quick start of this version here (make quickstart)")
    for d in tested:
        assert_valid_png(os.path.join(d, "pr_curves.png"), 600, 500)
        assert len(glob.glob(os.path.join(d, "examples", "*.jpg"))) == 6
