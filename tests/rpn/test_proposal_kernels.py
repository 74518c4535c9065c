"""The proposal layer's tensor operations that run a kernel (on a GPU, one launch each): the test
phase at VGG16's 600 x 1000 feature map (38 x 63, 9 anchors). A count, not a timing: the GPU's
proposal stage is launch-bound (issue 13's target: 0.4 ms)."""

import torch

from frcnn.ops._native import native
from frcnn.rpn.proposal_layer import ProposalLayer
from tests.boxes.test_transform_torch_form import CountOps, kernels


def test_proposal_layer_test_phase_runs_at_most_45_kernels():
    native()
    layer = ProposalLayer(feat_stride=16)  # test phase defaults: 6000 before NMS, 300 after
    g = torch.Generator().manual_seed(0)
    prob = torch.rand(1, 18, 38, 63, generator=g)
    deltas = torch.randn(1, 36, 38, 63, generator=g) * 0.1
    info = torch.tensor([[600.0, 1000.0, 1.6]])
    rois, _ = layer.forward(prob, deltas, info)
    assert rois.shape == (300, 5)
    with CountOps() as count:
        layer.forward(prob, deltas, info)
    ran = kernels(count.ops)
    assert ran.count("nms") == 1 and ran.count("sort") == 1
    assert len(ran) <= 45, ran  # 74 with the per-column decode and clip and the two-column size test
