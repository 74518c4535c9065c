"""The small CPU net (models/pascal_voc/SMALL) trains: one end2end forward/backward on a synthetic
image gives the four losses at their untrained values and gradients down to conv1."""

import math
import os

import cv2
import numpy as np
import pytest
import torch

from frcnn.caffe import TRAIN, Net
from frcnn.config import get_default_config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _roidb(tmp_path) -> list:
    rng = np.random.RandomState(0)
    im = rng.randint(0, 255, size=(200, 240, 3)).astype(np.uint8)
    im[40:150, 30:120] = (20, 200, 60)  # one object
    path = str(tmp_path / "im.png")
    cv2.imwrite(path, im)
    classes = np.array([5], dtype=np.int32)
    overlaps = np.zeros((1, 21), dtype=np.float32)
    overlaps[0, 5] = 1.0
    return [{"image": path, "width": 240, "height": 200, "flipped": False,
             "boxes": np.array([[30, 40, 119, 149]], dtype=np.uint16), "gt_classes": classes,
             "gt_overlaps": overlaps, "seg_areas": np.array([90.0 * 110.0], dtype=np.float32),
             "max_overlaps": np.array([1.0], dtype=np.float32), "max_classes": classes.copy()}]


def test_small_end2end_train_step(tmp_path):
    pytest.importorskip("frcnn.roi_data.layer", reason="RoIDataLayer (frcnn.roi_data.layer) is not written yet")
    cfg = get_default_config()
    t = cfg.TRAIN
    t.HAS_RPN, t.IMS_PER_BATCH, t.BBOX_NORMALIZE_TARGETS_PRECOMPUTED = True, 1, True
    t.PROPOSAL_METHOD, t.BG_THRESH_LO, t.SCALES, t.MAX_SIZE = "gt", 0.0, (160,), 256
    torch.manual_seed(0)
    np.random.seed(0)
    net = Net(os.path.join(ROOT, "models/pascal_voc/SMALL/faster_rcnn_end2end/train.prototxt"), phase=TRAIN, cfg=cfg)
    net.layers[0].set_roidb(_roidb(tmp_path))
    out = net.forward()
    assert sorted(out) == ["loss_bbox", "loss_cls", "rpn_cls_loss", "rpn_loss_bbox"]
    losses = {k: float(v.detach()) for k, v in out.items()}
    assert all(math.isfinite(v) for v in losses.values()), losses
    # untrained: the N(0, 0.01) classifiers score near zero, so the softmax losses are near
    # log(#classes) (the head's a little above: msra fc6/fc7 and dropout give fc7 a std of ~3)
    assert abs(losses["rpn_cls_loss"] - math.log(2)) < 0.05, losses
    assert abs(losses["loss_cls"] - math.log(21)) < 0.5, losses
    # 160x192 input: conv1 80x96, pool1 (ceil) 41x49, conv2 21x25, pool2 11x13, as ZF's arithmetic
    assert tuple(net.blobs["data"].data.shape) == (1, 3, 160, 192)
    assert tuple(net.blobs["conv5"].data.shape) == (1, 256, 11, 13)
    net.backward()
    layers = net.layer_dict
    for name in ("conv1", "scale1", "conv5", "rpn_conv/3x3", "fc6", "cls_score", "bbox_pred"):
        grad = layers[name].blobs[0].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    bn1 = layers["bn1"].blobs
    assert float(bn1[2][0]) == 1.0 and float(bn1[1].abs().sum()) > 0  # batch statistics accumulated
    assert all(b.grad is None for b in bn1)
