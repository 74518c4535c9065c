"""Table 1's average proposal size per anchor: the proposal layer's boxes with their anchors,
and a tiny net whose rpn_bbox_pred is set by hand so that the expected sizes are known."""

import json
import math

import cv2
import numpy as np
import pytest
import torch

from frcnn.boxes.transform import clip_boxes
from frcnn.rpn import anchor_stats as st
from frcnn.rpn.generate_anchors import generate_anchors
from frcnn.rpn.proposal_layer import ProposalLayer
from tests.tools.helpers import load_tool

ANCHORS = generate_anchors()  # the paper's nine, ratio-major: (0.5, 1, 2) x (8, 16, 32)
W_A = ANCHORS[:, 2] - ANCHORS[:, 0] + 1
H_A = ANCHORS[:, 3] - ANCHORS[:, 1] + 1
F_W = np.linspace(0.6, 1.8, 9)  # each anchor's predicted width / its width (exp(dw))
F_H = np.linspace(1.5, 0.7, 9)


def test_boxes_are_the_proposal_layers_and_each_comes_from_its_anchor():
    torch.manual_seed(0)
    layer = ProposalLayer(pre_nms_top_n=300, post_nms_top_n=60)
    prob = torch.softmax(torch.randn(1, 2, 9 * 7, 10), dim=1).reshape(1, 18, 7, 10)
    deltas = torch.randn(1, 36, 7, 10) * 0.3
    im_info = torch.tensor([[112.0, 160.0, 1.0]])
    rois, scores = layer(prob, deltas, im_info)
    boxes, s, index = st.proposals_by_anchor(layer, prob, deltas, im_info)
    assert torch.equal(boxes, rois[:, 1:]) and torch.equal(s, scores[:, 0]) and len(boxes) > 20
    decoded, fg, every = st.decoded_by_anchor(layer, prob, deltas)
    clipped = clip_boxes(decoded, im_info[0, :2]).float()
    assert torch.equal(every, torch.arange(7 * 10 * 9) % 9)
    for box, a in zip(boxes, index):
        # the box is the (clipped) decode of anchor a at some position, with the score given
        hits = (clipped == box).all(dim=1).nonzero().squeeze(1)
        hits = hits[hits % 9 == a]
        assert len(hits) and torch.isin(fg[hits].float(), s).any()


def _one_position(dw, dh, fg_logit):
    """One feature-map cell; anchor a's box centred at (1500 + 2500a, 1500): far apart, inside."""
    ctr = 7.5
    dx = (1500 + 2500 * np.arange(9) - ctr) / W_A
    dy = (1500 - ctr) / H_A
    deltas = np.zeros((1, 36, 1, 1), np.float32)
    for a in range(9):
        deltas[0, 4 * a : 4 * a + 4, 0, 0] = (dx[a], dy[a], dw[a], dh[a])
    logits = np.zeros((1, 2, 9, 1), np.float32)
    logits[0, 1, :, 0] = fg_logit
    prob = torch.softmax(torch.from_numpy(logits), dim=1).reshape(1, 18, 1, 1)
    return prob, torch.from_numpy(deltas), torch.tensor([[3000.0, 30000.0, 1.0]])


def test_known_deltas_give_known_sizes_and_the_selection_counts():
    layer = ProposalLayer(pre_nms_top_n=6000, post_nms_top_n=300)
    sizes = st.AnchorSizes(9)
    images = [(np.log(F_W), np.log(F_H)), (np.log(F_W * 1.2), np.log(F_H * 0.8))]
    for dw, dh in images:
        boxes, _, index = st.proposals_by_anchor(layer, *_one_position(dw, dh, np.arange(9.0)))
        sizes.add(boxes, index)
    mean_w, mean_h = sizes.means()
    # upstream's decode has no -1: a box of predicted width p measures p + 1 (float32 boxes far
    # from the origin: 1e-5)
    want_w = np.mean([F_W * W_A, F_W * 1.2 * W_A], axis=0) + 1
    want_h = np.mean([F_H * H_A, F_H * 0.8 * H_A], axis=0) + 1
    assert np.allclose(mean_w, want_w, rtol=1e-5) and np.allclose(mean_h, want_h, rtol=1e-5)
    assert sizes.count.tolist() == [2] * 9
    # only the top post_nms_top_n proposals count: anchors 5..8 score highest
    layer.post_nms_top_n = 4
    few = st.AnchorSizes(9)
    few.add(*st.proposals_by_anchor(layer, *_one_position(*images[0], np.arange(9.0)))[::2])
    assert few.count.tolist() == [0] * 5 + [1] * 4 and np.isnan(few.means()[0][0])
    # 'all': weighted by objectness
    both = st.AnchorSizes(9)
    for (dw, dh), logit in zip(images, (0.0, 2.0)):
        boxes, fg, index = st.decoded_by_anchor(layer, *_one_position(dw, dh, np.full(9, logit))[:2])
        both.add(boxes, index, fg)
    p0, p1 = 0.5, 1 / (1 + math.exp(-2.0))
    assert np.allclose(both.means()[0], (p0 * F_W * W_A + p1 * F_W * 1.2 * W_A) / (p0 + p1) + 1, rtol=1e-5)


def test_table_is_in_the_papers_layout():
    sizes = st.AnchorSizes(9)
    sizes.add(np.array([[0, 0, 187, 110]] * 2), [0, 0])  # anchor 0: 0.5 ratio, scale 8 = '128², 2:1'
    sizes.add(np.array([[0, 0, 767, 436]]), [5])  # anchor 5: ratio 1, scale 32 = '512², 1:1'
    rows = st.anchor_table(([8, 16, 32], [0.5, 1, 2]), 16, ANCHORS, sizes)
    assert [r["label"] for r in rows] == [f"{s}\u00b2, {r}" for s in (128, 256, 512) for r in ("2:1", "1:1", "1:2")]
    assert [r["anchor"] for r in rows] == [0, 3, 6, 1, 4, 7, 2, 5, 8]
    text = st.format_table(rows).splitlines()
    assert text[0].startswith("anchor   | 128\u00b2, 2:1 | 128\u00b2, 1:1")
    assert text[1].split(" | ")[0] == "proposal" and text[1].split(" | ")[1].strip() == "188\u00d7111"
    assert text[1].split(" | ")[8].strip() == "768\u00d7437" and text[1].split(" | ")[2].strip() == "-"
    assert [st.ratio_label(r) for r in (0.5, 1, 2, 1 / 3)] == ["2:1", "1:1", "1:2", "3:1"]
    unnamed = st.anchor_table(None, 16, ANCHORS, sizes)
    assert unnamed[0]["label"] == "184\u00d796 anchor" and unnamed[0]["scale"] is None


TINY_RPN = """name: "tiny_rpn"
input: "data"
input_shape { dim: 1 dim: 3 dim: 64 dim: 64 }
input: "im_info"
input_shape { dim: 1 dim: 3 }
layer { name: "pool" type: "Pooling" bottom: "data" top: "feat"
        pooling_param { pool: AVE kernel_size: 16 stride: 16 } }
layer { name: "rpn_cls_score" type: "Convolution" bottom: "feat" top: "rpn_cls_score"
        convolution_param { num_output: 18 kernel_size: 1 } }
layer { name: "rpn_bbox_pred" type: "Convolution" bottom: "feat" top: "rpn_bbox_pred"
        convolution_param { num_output: 36 kernel_size: 1 } }
layer { name: "rpn_cls_score_reshape" type: "Reshape" bottom: "rpn_cls_score" top: "rpn_cls_score_reshape"
        reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } } }
layer { name: "rpn_cls_prob" type: "Softmax" bottom: "rpn_cls_score_reshape" top: "rpn_cls_prob" }
layer { name: "rpn_cls_prob_reshape" type: "Reshape" bottom: "rpn_cls_prob" top: "rpn_cls_prob_reshape"
        reshape_param { shape { dim: 0 dim: 18 dim: -1 dim: 0 } } }
layer { name: "proposal" type: "Python" bottom: "rpn_cls_prob_reshape" bottom: "rpn_bbox_pred"
        bottom: "im_info" top: "rois"
        python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "'feat_stride': 16" } }
"""


@pytest.fixture
def tiny_rpn(tmp_path):
    """The tiny RPN with rpn_bbox_pred = (0, 0, log F_W[a], log F_H[a]) for every cell."""
    from frcnn.caffe import TEST, Net

    proto = tmp_path / "rpn.prototxt"
    proto.write_text(TINY_RPN)
    net = Net(str(proto), phase=TEST)
    with torch.no_grad():
        for name in ("rpn_cls_score", "rpn_bbox_pred"):
            net.params[name][0].data.zero_()
        bias = np.zeros(36, np.float32)
        bias[2::4], bias[3::4] = np.log(F_W), np.log(F_H)
        net.params["rpn_bbox_pred"][1].data.copy_(torch.from_numpy(bias))
        net.params["rpn_cls_score"][1].data.copy_(torch.linspace(-1, 1, 18))
    net.save(str(tmp_path / "rpn.caffemodel"))
    images = []
    for k in range(3):
        path = str(tmp_path / f"im{k}.png")
        cv2.imwrite(path, np.full((48 + 16 * k, 80, 3), 60 * k, np.uint8))
        images.append(path)
    return str(proto), str(tmp_path / "rpn.caffemodel"), images


def test_tool_prints_table1_and_writes_json_and_csv(tiny_rpn, tmp_path, capsys):
    proto, model, images = tiny_rpn
    tool = load_tool("anchor_stats.py")
    prefix = str(tmp_path / "stats")
    assert tool.main(["--gpu", "cpu", "--def", proto, "--net", model, "--images", *images, "--mode", "all",
                      "--out_prefix", prefix, "--set", "TEST.SCALES", "[96]", "TEST.MAX_SIZE", "200"]) == 0
    out = capsys.readouterr().out
    assert "Average proposal size per anchor (all; 3 images of images; input pixels at scale 96)" in out
    header, row = out.splitlines()[-4:-2]
    assert [c.strip() for c in header.split("|")][:4] == ["anchor", "128\u00b2, 2:1", "128\u00b2, 1:1", "128\u00b2, 1:2"]
    with open(prefix + ".json", encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["mode"] == "all" and saved["images"] == 3 and saved["scale"] == 96
    for r in saved["anchors"]:
        a = r["anchor"]  # constant deltas: every decoded box of anchor a has the same size
        assert r["mean_w"] == pytest.approx(F_W[a] * W_A[a] + 1) and r["mean_h"] == pytest.approx(F_H[a] * H_A[a] + 1)
        assert (r["anchor_w"], r["anchor_h"]) == (W_A[a], H_A[a])
    cells = [c.strip() for c in row.split("|")]
    assert cells[1] == f"{round(F_W[0] * W_A[0] + 1)}\u00d7{round(F_H[0] * H_A[0] + 1)}"
    with open(prefix + ".csv") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("anchor,label,scale,ratio") and len(lines) == 10
    # proposals mode: the test-time proposals (at most TEST.RPN_POST_NMS_TOP_N per image)
    assert tool.main(["--gpu", "cpu", "--def", proto, "--net", model, "--images", *images,
                      "--out_prefix", prefix, "--set", "TEST.SCALES", "[96]", "TEST.RPN_POST_NMS_TOP_N", "5",
                      "TEST.RPN_MIN_SIZE", "1"]) == 0
    with open(prefix + ".json", encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["mode"] == "proposals" and 0 < sum(r["count"] for r in saved["anchors"]) <= 15


def test_a_net_without_proposal_layer_is_named(tmp_path):
    from frcnn.caffe import TEST, Net
    from frcnn.errors import InputError

    proto = tmp_path / "plain.prototxt"
    proto.write_text(TINY_RPN.split('layer { name: "proposal"')[0])
    with pytest.raises(InputError, match="has no proposal layer"):
        st.find_proposal_layer(Net(str(proto), phase=TEST))

