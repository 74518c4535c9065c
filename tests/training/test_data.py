"""The training roidb (training.data): joined sets, flipping, preparation."""

import os

import pytest

from frcnn.training.data import get_roidb


def test_joined_sets_keep_upstreams_order(tiny_voc):
    cfg, _ = tiny_voc
    cfg.TRAIN.PROPOSAL_METHOD = "gt"
    roidb, d = get_roidb("shapes_trainval+shapes_test", cfg)
    assert d.name == "shapes_trainval+shapes_test"
    names = [(os.path.basename(e["image"]), e["flipped"]) for e in roidb]
    # A, A flipped, B, B flipped (upstream concatenated per-imdb training roidbs)
    assert names == [
        ("a1.jpg", False),
        ("a2.jpg", False),
        ("a3.jpg", False),
        ("a1.jpg", True),
        ("a2.jpg", True),
        ("a3.jpg", True),
        ("a4.jpg", False),
        ("a4.jpg", True),
    ]
    assert all("max_overlaps" in e for e in roidb)
    assert d.image_path_at(6).endswith("a4.jpg")
    with pytest.raises(ValueError, match="for training"):
        d.evaluate_detections([], "x")
