"""Several images per batch (TRAIN.IMS_PER_BATCH > 1): each RPN layer works per image and
concatenates, so a batch of N gives what N one-image passes at the same global image indices give."""

import numpy as np
import pytest
import torch

from frcnn.rpn.anchor_target_layer import AnchorTargetLayer
from frcnn.rpn.proposal_layer import ProposalLayer
from frcnn.rpn.proposal_target_layer import ProposalTargetLayer
from tests.rpn.test_anchor_target_layer import random_gt
from tests.rpn.test_proposal_layer import nms_backend, random_inputs  # noqa: F401 (fixture)
from tests.rpn.test_proposal_target_layer import random_case

# two images in one padded blob: 600x800 and 480x640 (feature map of the larger, 38 x 50)
H, W = 38, 50
INFOS = [[600.0, 800.0, 1.6], [480.0, 640.0, 1.28]]


def gt_pair(seed):
    rng = np.random.RandomState(seed)
    a, b = random_gt(rng, 5, 600, 800), random_gt(rng, 3, 480, 640)
    batch = np.vstack((np.c_[a, np.zeros(len(a))], np.c_[b, np.ones(len(b))])).astype(np.float32)
    return [a, b], batch


def test_anchor_targets_of_a_batch_are_the_one_image_passes():
    singles, batch = gt_pair(0)
    layer = AnchorTargetLayer(16)  # sampling on: the keys must be the same image's
    layer.set_batch_position(iteration=3)
    out = layer(torch.zeros(2, 18, H, W), torch.from_numpy(batch), torch.tensor(INFOS))
    assert [tuple(t.shape) for t in out] == [(2, 1, 9 * H, W), (2, 36, H, W), (2, 36, H, W), (2, 36, H, W)]
    for i in range(2):
        layer.set_batch_position(iteration=3, pass_index=i, iter_size=2)  # global image i, alone
        one = layer(torch.zeros(1, 18, H, W), torch.from_numpy(singles[i]), torch.tensor([INFOS[i]]))
        for t, o in zip(out, one):
            torch.testing.assert_close(t[i : i + 1], o, rtol=0, atol=0)
    # the second image's anchors beyond its own 480x640 are outside it (the padding)
    labels = out[0][1, 0].reshape(9, H, W)
    assert (labels[:, 30:, :] == -1).all() and (labels[:, :, 40:] == -1).all()
    # outside weights are per image: 1 / #labelled of that image (the SmoothL1 sum / N is their mean)
    for i in range(2):
        w = out[3][i][out[3][i] > 0]
        assert torch.allclose(w, torch.full_like(w, 1 / int((out[0][i] >= 0).sum())))


def test_an_image_without_gt_in_a_batch_only_gets_negatives():
    singles, batch = gt_pair(1)
    batch = batch[batch[:, 5] == 0]  # image 1 has no gt box
    layer = AnchorTargetLayer(16, batch_size=10**6)
    labels, targets, inside, _ = layer(torch.zeros(2, 18, H, W), torch.from_numpy(batch), torch.tensor(INFOS))
    assert set(labels[1].unique().tolist()) == {-1.0, 0.0}
    assert float(targets[1].abs().sum()) == 0 and float(inside[1].sum()) == 0
    alone = AnchorTargetLayer(16, batch_size=10**6)(torch.zeros(1, 18, H, W), torch.from_numpy(singles[0]),
                                                   torch.tensor([INFOS[0]]))
    torch.testing.assert_close(labels[:1], alone[0], rtol=0, atol=0)


def test_proposals_of_a_batch_are_per_image_with_batch_indices():
    rng = np.random.RandomState(2)
    probs, deltas = zip(*(random_inputs(rng, H, W) for _ in range(2)))
    layer = ProposalLayer(16, pre_nms_top_n=2000, post_nms_top_n=200)
    rois, scores = layer(torch.from_numpy(np.concatenate(probs)), torch.from_numpy(np.concatenate(deltas)),
                         torch.tensor(INFOS))
    start = 0
    for i in range(2):
        one_rois, one_scores = layer(torch.from_numpy(probs[i]), torch.from_numpy(deltas[i]), torch.tensor([INFOS[i]]))
        part = slice(start, start + len(one_rois))
        assert (rois[part, 0] == i).all()
        torch.testing.assert_close(rois[part, 1:], one_rois[:, 1:], rtol=0, atol=0)
        torch.testing.assert_close(scores[part], one_scores, rtol=0, atol=0)
        start += len(one_rois)
    assert start == len(rois) == 400
    assert float(rois[rois[:, 0] == 1, 3].max()) <= 639 and float(rois[rois[:, 0] == 1, 4].max()) <= 479  # own size


def test_proposal_targets_per_image_with_the_batch_split_of_batch_size():
    rng = np.random.RandomState(3)
    (r0, g0), (r1, g1) = random_case(rng, n_rois=300), random_case(rng, n_rois=200)
    rois = np.vstack((r0, np.c_[np.ones(len(r1)), r1[:, 1:]])).astype(np.float32)
    gt = np.vstack((np.c_[g0, np.zeros(len(g0))], np.c_[g1, np.ones(len(g1))])).astype(np.float32)
    # caps that do not bite: the batch is the two one-image results, image by image
    layer = ProposalTargetLayer(6, batch_size=4000, ims_per_batch=2, bg_thresh_lo=0.0)
    out = layer(torch.from_numpy(rois), torch.from_numpy(gt))
    one = ProposalTargetLayer(6, batch_size=2000, bg_thresh_lo=0.0)
    parts = [one(torch.from_numpy(r), torch.from_numpy(g)) for r, g in ((r0, g0), (r1[:, :], g1))]
    for k in range(5):
        expect = torch.cat([p[k] for p in parts])
        if k == 0:
            expect[len(parts[0][0]):, 0] = 1
        torch.testing.assert_close(out[k], expect, rtol=0, atol=0)
    # caps that bite: per image BATCH_SIZE / 2 RoIs, a quarter of them fg
    layer = ProposalTargetLayer(6, batch_size=128, ims_per_batch=2, bg_thresh_lo=0.0)
    out_rois, labels, *_ = layer(torch.from_numpy(rois), torch.from_numpy(gt))
    for i in range(2):
        mine = out_rois[:, 0] == i
        assert int(mine.sum()) == 64 and int((labels[mine] > 0).sum()) == 16
    assert (out_rois[:64, 0] == 0).all() and (out_rois[64:, 0] == 1).all()
    with pytest.raises(ValueError, match="must divide TRAIN.BATCH_SIZE"):
        ProposalTargetLayer(6, batch_size=127, ims_per_batch=2)(torch.from_numpy(rois), torch.from_numpy(gt))
    with pytest.raises(ValueError, match="image index outside a batch of 2 images"):
        layer(torch.from_numpy(np.c_[np.full(3, 2.0), r0[:3, 1:]].astype(np.float32)), torch.from_numpy(gt))
