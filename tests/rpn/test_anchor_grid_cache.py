"""AnchorLayer.feature_map_anchors: made once per feature-map size and device, remade when the
reference anchors change, always equal to shifted_anchors."""

import torch

from frcnn.rpn.generate_anchors import shifted_anchors
from frcnn.rpn.proposal_layer import ProposalLayer


def test_the_anchor_grid_is_reused_per_size_and_equals_shifted_anchors():
    layer = ProposalLayer(feat_stride=16, scales=(2, 4), ratios=(0.5, 1, 2))
    a = layer.feature_map_anchors(5, 7, torch.device("cpu"))
    assert torch.equal(a, shifted_anchors(layer.anchors, 5, 7, 16))
    assert layer.feature_map_anchors(5, 7, torch.device("cpu")) is a  # reused
    b = layer.feature_map_anchors(7, 5, torch.device("cpu"))
    assert b is not a and torch.equal(b, shifted_anchors(layer.anchors, 7, 5, 16))
    for h in range(1, 20):  # many sizes: the cache keeps a few, the answers stay right
        assert torch.equal(layer.feature_map_anchors(h, 3, "cpu"), shifted_anchors(layer.anchors, h, 3, 16))
    assert len(layer.__dict__["_anchor_grids"]) <= 8


def test_the_anchor_grid_follows_a_change_of_the_reference_anchors():
    layer = ProposalLayer(feat_stride=16, scales=(2, 4), ratios=(1,))
    a = layer.feature_map_anchors(3, 4, "cpu")
    with torch.no_grad():
        layer.anchors.add_(1.0)  # written in place
    b = layer.feature_map_anchors(3, 4, "cpu")
    assert torch.equal(b, a + 1.0)
    layer.anchors = layer.anchors.clone() * 2  # another buffer
    assert torch.equal(layer.feature_map_anchors(3, 4, "cpu"), shifted_anchors(layer.anchors, 3, 4, 16))
