"""TEST.RPN_ABLATION (Table 2, lower half): no NMS, no cls (random, seeded), no reg (the anchors)."""

import numpy as np
import pytest
import torch

from frcnn.boxes.transform import clip_boxes
from frcnn.config import ConfigError, cfg_from_list, get_default_config
from frcnn.roi_data.keys import NO_CLS, random_keys, torch_generator
from frcnn.rpn.generate_anchors import generate_anchors, shifted_anchors
from frcnn.rpn.proposal_layer import ProposalLayer
from tests.rpn.test_proposal_layer import nms_backend, random_inputs, ref_proposals  # noqa: F401 (fixture)

H, W, INFO = 12, 16, [192.0, 256.0, 1.0]


def run(layer, prob, deltas, info=INFO):
    return layer(torch.from_numpy(prob), torch.from_numpy(deltas), torch.tensor([info], dtype=torch.float32))


def decoded(prob, deltas, info=INFO, min_size=16):
    """Every decoded, clipped box passing the min-size filter, with its score, in (h, w, a) order."""
    ref, scores = ref_proposals(prob, deltas, info, pre=-1, post=-1, thresh=1.0, min_size=min_size)
    return ref, scores  # thresh 1.0: NMS suppresses nothing (IoU > 1 never holds)


def test_no_nms_is_the_top_n_by_score():
    prob, deltas = random_inputs(np.random.RandomState(0), H, W)
    layer = ProposalLayer(16, pre_nms_top_n=600, post_nms_top_n=150, ablation="no_nms")
    rois, scores = run(layer, prob, deltas)
    ref, ref_scores = decoded(prob, deltas)  # sorted by score, stable
    assert rois.shape == (150, 5)  # the asked N
    np.testing.assert_allclose(rois.numpy(), ref[:150], rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(scores.numpy(), ref_scores[:150])
    with_nms = run(ProposalLayer(16, pre_nms_top_n=600, post_nms_top_n=150), prob, deltas)[0]
    assert not torch.equal(with_nms, rois)  # NMS would have removed overlapping boxes
    # the pre-NMS cap applies as set: N above it gives the first pre_nms_top_n
    rois = run(ProposalLayer(16, pre_nms_top_n=100, post_nms_top_n=6000, ablation="no_nms"), prob, deltas)[0]
    np.testing.assert_allclose(rois.numpy(), ref[:100], rtol=1e-6, atol=1e-4)


def test_no_reg_proposals_are_the_clipped_anchors_scored_and_nmsed():
    rng = np.random.RandomState(1)
    prob, deltas = random_inputs(rng, H, W)
    layer = ProposalLayer(16, pre_nms_top_n=-1, post_nms_top_n=-1, nms_thresh=1.0, min_size=0, ablation="no_reg")
    rois, scores = run(layer, prob, deltas)
    anchors = shifted_anchors(generate_anchors(), H, W, 16).numpy()
    clipped = clip_boxes(anchors.astype(np.float32), INFO)
    fg = prob[0, 9:].transpose(1, 2, 0).reshape(-1)
    order = np.argsort(-fg, kind="stable")
    assert rois.shape == (H * W * 9, 5)
    np.testing.assert_array_equal(rois.numpy()[:, 1:], clipped[order])  # exactly the anchors, no deltas applied
    np.testing.assert_array_equal(scores.numpy()[:, 0], fg[order])
    # the deltas play no part; with the usual settings NMS and the caps still run
    shifted = run(layer, prob, deltas + 5)
    torch.testing.assert_close(shifted[0], rois, rtol=0, atol=0)
    capped = run(ProposalLayer(16, pre_nms_top_n=500, post_nms_top_n=50, ablation="no_reg"), prob, deltas)[0]
    assert capped.shape[0] == 50
    assert set(map(tuple, capped.numpy()[:, 1:].tolist())) <= set(map(tuple, clipped.tolist()))


def test_no_cls_draws_n_boxes_without_replacement_seeded():
    # one 32-px anchor per cell: the decoded boxes are all distinct, so rows name their candidates
    prob, deltas = random_inputs(np.random.RandomState(2), H, W, A=1)
    kw = {"scales": (2,), "ratios": (1,), "ablation": "no_cls", "seed": 7}
    layer = ProposalLayer(16, pre_nms_top_n=50, post_nms_top_n=100, **kw)
    layer.set_batch_position(0)
    rois, scores = run(layer, prob, deltas)
    base = generate_anchors(scales=(2,), ratios=(1,))
    cand, cand_scores = ref_proposals(prob, deltas, INFO, -1, -1, 1.0, 16, base=base)  # decoded, clipped, filtered

    def which(boxes):
        """The candidate each row is (each must be one, within float rounding)."""
        d = np.abs(boxes[:, None, 1:] - cand[None, :, 1:]).max(axis=2)
        assert (d.min(axis=1) < 1e-3).all()
        return d.argmin(axis=1)

    assert len(cand) > 100 and (np.abs(cand[:, None, 1:] - cand[None, :, 1:]).max(2) + np.eye(len(cand))).min() > 0.01
    picked = which(rois.numpy())
    assert rois.shape == (100, 5)  # the asked N, not the pre-NMS cap of 50
    assert len(set(picked.tolist())) == 100  # without replacement
    np.testing.assert_array_equal(scores.numpy()[:, 0], cand_scores[picked, 0])  # their RPN scores
    assert not np.all(np.diff(scores.numpy()[:, 0]) <= 0)  # not ranked by score
    # reproducible from the seed and the position; another pass or seed draws others
    layer.set_batch_position(0)
    torch.testing.assert_close(run(layer, prob, deltas)[0], rois, rtol=0, atol=0)
    assert not torch.equal(run(layer, prob, deltas)[0], rois)
    other = ProposalLayer(16, post_nms_top_n=100, **{**kw, "seed": 8})
    assert not torch.equal(run(other, prob, deltas)[0], rois)
    # every candidate, once, when N exceeds them (or N <= 0)
    for n in (10**6, -1):
        every = run(ProposalLayer(16, post_nms_top_n=n, **kw), prob, deltas)[0]
        assert sorted(which(every.numpy()).tolist()) == list(range(len(cand)))


def test_no_cls_order_is_the_keys_order():
    """Written out: the kept boxes are the valid boxes of largest key, in descending key order."""
    prob, deltas = random_inputs(np.random.RandomState(3), 4, 5)
    layer = ProposalLayer(16, post_nms_top_n=20, min_size=16, ablation="no_cls", seed=3)
    layer.set_batch_position(iteration=4)
    rois = run(layer, prob, deltas, [64.0, 80.0, 1.0])[0].numpy()
    p = ref_proposals(prob, deltas, [64.0, 80.0, 1.0], pre=-1, post=-1, thresh=1.0, min_size=0)[0]
    ws, hs = p[:, 3] - p[:, 1] + 1, p[:, 4] - p[:, 2] + 1
    # ref_proposals sorted by score; recover (h, w, a) order through the scores' argsort
    fg = prob[0, 9:].transpose(1, 2, 0).reshape(-1)
    order = np.argsort(-fg, kind="stable")
    boxes = np.empty_like(p[:, 1:])
    boxes[order] = p[:, 1:]
    valid = np.empty(len(order), bool)
    valid[order] = (ws >= 16) & (hs >= 16)
    keys = random_keys(len(order), torch_generator(3, NO_CLS, 4, 0), "cpu").numpy()
    keys[~valid] = -1
    pick = np.argsort(-keys, kind="stable")[: min(20, valid.sum())]
    np.testing.assert_allclose(rois[:, 1:], boxes[pick], rtol=1e-6, atol=1e-4)


def test_ablation_is_a_test_time_setting():
    cfg = get_default_config()
    cfg_from_list(["TEST.RPN_ABLATION", "no_nms"], cfg)
    assert ProposalLayer.from_caffe("'feat_stride': 16", "TEST", cfg).ablation == "no_nms"
    assert ProposalLayer.from_caffe("'feat_stride': 16", "TRAIN", cfg).ablation == "none"  # training proposals
    cfg.RNG_SEED = 11
    assert ProposalLayer.from_caffe("'feat_stride': 16", "TEST", cfg).seed == 11
    with pytest.raises(ConfigError, match="TEST.RPN_ABLATION: expected one of none, no_nms, no_cls, no_reg"):
        cfg_from_list(["TEST.RPN_ABLATION", "no_rpn"], get_default_config())
    with pytest.raises(ValueError, match="RPN_ABLATION"):
        ProposalLayer(16, ablation="nms")
