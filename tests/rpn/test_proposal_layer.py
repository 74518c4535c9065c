"""ProposalLayer: hand-made cases (min size, clip, order), phases, and a plain-NumPy reference of upstream."""

import numpy as np
import pytest
import torch

from frcnn.boxes.iou import box_iou
from frcnn.config import get_default_config
from frcnn.rpn import proposal_layer
from frcnn.rpn.generate_anchors import generate_anchors
from frcnn.rpn.proposal_layer import ProposalLayer


def fallback_nms(boxes, scores, thresh):
    """Greedy NMS (+1 IoU, suppress > thresh, stable order); used only while frcnn.ops.nms is not built."""
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou(boxes[order].double(), boxes[order].double())
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= iou[i] > thresh
    return order[torch.tensor(keep, dtype=torch.long)]


@pytest.fixture(autouse=True)
def nms_backend(monkeypatch):
    try:
        proposal_layer._nms(torch.zeros(1, 4), torch.ones(1), 0.7)
    except (ImportError, AttributeError):
        monkeypatch.setattr(proposal_layer, "_nms", fallback_nms)


# ------------------------------------------------------------------ NumPy reference (upstream)


def ref_nms(dets, thresh):
    x1, y1, x2, y2 = (dets[:, i].astype(np.float64) for i in range(4))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = np.arange(dets.shape[0]), []  # the input is already sorted by score
    while order.size > 0:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return np.array(keep, dtype=np.int64)


def ref_proposals(prob, deltas, im_info, pre, post, thresh, min_size, base=None, stride=16):
    base = generate_anchors() if base is None else base
    A = base.shape[0]
    H, W = prob.shape[-2:]
    sx, sy = np.meshgrid(np.arange(W) * stride, np.arange(H) * stride)
    shifts = np.vstack((sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel())).T
    anchors = (base.reshape(1, A, 4) + shifts.reshape(1, -1, 4).transpose(1, 0, 2)).reshape(-1, 4)
    d = deltas.transpose(0, 2, 3, 1).reshape(-1, 4)
    s = prob[:, A:].transpose(0, 2, 3, 1).reshape(-1)
    b = anchors.astype(d.dtype)
    w, h = b[:, 2] - b[:, 0] + 1.0, b[:, 3] - b[:, 1] + 1.0
    cx, cy = d[:, 0] * w + b[:, 0] + 0.5 * w, d[:, 1] * h + b[:, 1] + 0.5 * h
    pw, ph = np.exp(d[:, 2]) * w, np.exp(d[:, 3]) * h
    p = np.stack((cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw, cy + 0.5 * ph), 1)
    p[:, 0::2] = np.maximum(np.minimum(p[:, 0::2], im_info[1] - 1), 0)
    p[:, 1::2] = np.maximum(np.minimum(p[:, 1::2], im_info[0] - 1), 0)
    ms = min_size * im_info[2]
    keep = np.where((p[:, 2] - p[:, 0] + 1 >= ms) & (p[:, 3] - p[:, 1] + 1 >= ms))[0]
    p, s = p[keep], s[keep]
    order = np.argsort(-s, kind="stable")
    if pre > 0:
        order = order[:pre]
    p, s = p[order], s[order]
    keep = ref_nms(p, thresh)
    if post > 0:
        keep = keep[:post]
    p, s = p[keep], s[keep]
    return np.hstack((np.zeros((len(keep), 1), np.float32), p.astype(np.float32))), s.astype(np.float32)[:, None]


def random_inputs(rng, H, W, A=9, dtype=np.float32):
    logits = rng.normal(0, 2, (1, 2, A, H, W))
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return prob.reshape(1, 2 * A, H, W).astype(dtype), rng.normal(0, 0.3, (1, 4 * A, H, W)).astype(dtype)


def run(layer, prob, deltas, im_info):
    return layer(torch.from_numpy(prob), torch.from_numpy(deltas), torch.tensor([im_info], dtype=torch.float32))


# ------------------------------------------------------------------ against the reference


@pytest.mark.parametrize("seed,pre,post,thresh,min_size", [(0, 500, 100, 0.7, 16), (1, -1, -1, 0.7, 16),
                                                           (2, 300, 30, 0.5, 4)])
def test_matches_numpy_reference(seed, pre, post, thresh, min_size):
    rng = np.random.RandomState(seed)
    H, W, im_info = 10, 14, [160.0, 224.0, 0.8]
    prob, deltas = random_inputs(rng, H, W)
    layer = ProposalLayer(16, pre_nms_top_n=pre, post_nms_top_n=post, nms_thresh=thresh, min_size=min_size)
    rois, scores = run(layer, prob, deltas, im_info)
    ref_rois, ref_scores = ref_proposals(prob, deltas, im_info, pre, post, thresh, min_size)
    assert rois.dtype == torch.float32 and scores.dtype == torch.float32
    assert rois.shape == ref_rois.shape and scores.shape == ref_scores.shape
    np.testing.assert_allclose(rois.numpy(), ref_rois, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(scores.numpy(), ref_scores)
    if post > 0:
        assert rois.shape[0] == post  # enough boxes survive: the cap bites
    assert np.all(np.diff(scores.numpy()[:, 0]) <= 0)  # descending
    assert np.all(rois.numpy()[:, 0] == 0)


def test_hand_case_min_size_clip_and_order():
    # one 16x16 anchor per cell of a 1x3 map; decoded widths (with +1) are 15, 16 and 17 px
    layer = ProposalLayer(16, scales=(1,), ratios=(1,), pre_nms_top_n=-1, post_nms_top_n=-1, min_size=16)
    prob = np.zeros((1, 2, 1, 3), np.float32)
    prob[0, 1, 0] = [0.7, 0.8, 0.9]
    deltas = np.zeros((1, 4, 1, 3), np.float32)
    deltas[0, 2, 0] = np.log(np.array([14, 15, 16]) / 16.0)
    rois, scores = run(layer, prob, deltas, [16.0, 48.0, 1.0])
    # cell 0 (width 15) is too small; cell 2's x2 = 48 and every y2 = 16 are clipped to 47 and 15
    np.testing.assert_allclose(rois.numpy(), [[0, 32, 0, 47, 15], [0, 16.5, 0, 31.5, 15]])
    np.testing.assert_allclose(scores.numpy(), [[0.9], [0.8]])
    rois, _ = run(layer, prob, deltas, [16.0, 48.0, 0.5])  # min size 16 * 0.5 = 8 keeps all three
    assert rois.shape == (3, 5)


def test_equal_scores_keep_index_order_and_pre_cap_counts():
    # far-apart boxes (stride 64, anchors 16 px): NMS removes nothing
    layer = ProposalLayer(64, scales=(1,), ratios=(1,), pre_nms_top_n=5, post_nms_top_n=-1, min_size=0)
    prob = np.full((1, 2, 3, 4), 0.5, np.float32)
    rois, _ = run(layer, prob, np.zeros((1, 4, 3, 4), np.float32), [192.0, 256.0, 1.0])
    # (h, w) order: (0,0), (0,1), (0,2), (0,3), (1,0)
    np.testing.assert_array_equal(rois.numpy()[:, 1:3], [[0, 0], [64, 0], [128, 0], [192, 0], [0, 64]])


def test_nms_suppresses_strictly_above_threshold():
    # two anchors (sizes 16 and 17 at the same place) -> IoU 256/289 = 0.886
    layer = ProposalLayer(16, scales=(1, 17 / 16), ratios=(1,), pre_nms_top_n=-1, post_nms_top_n=-1, min_size=0,
                          nms_thresh=0.7)
    prob = np.array([0, 0, 0.6, 0.9], np.float32).reshape(1, 4, 1, 1)
    deltas = np.zeros((1, 8, 1, 1), np.float32)
    assert run(layer, prob, deltas, [64.0, 64.0, 1.0])[0].shape == (1, 5)
    layer.nms_thresh = 0.95
    rois, scores = run(layer, prob, deltas, [64.0, 64.0, 1.0])
    assert rois.shape == (2, 5) and scores[0, 0] == pytest.approx(0.9)


def test_everything_filtered_gives_empty_tops():
    layer = ProposalLayer(16, min_size=10_000)
    prob, deltas = random_inputs(np.random.RandomState(3), 5, 6)
    rois, scores = run(layer, prob, deltas, [80.0, 96.0, 1.0])
    assert rois.shape == (0, 5) and scores.shape == (0, 1)


def test_float64_inputs_and_no_gradient():
    rng = np.random.RandomState(4)
    prob, deltas = random_inputs(rng, 8, 9)
    layer = ProposalLayer(16, pre_nms_top_n=200, post_nms_top_n=50)
    a = run(layer, prob, deltas, [128.0, 144.0, 1.0])
    p64 = torch.from_numpy(prob.astype(np.float64)).requires_grad_()
    b = layer(p64, torch.from_numpy(deltas.astype(np.float64)), torch.tensor([[128.0, 144.0, 1.0]], dtype=torch.float64))
    assert b[0].dtype == torch.float32 and not b[0].requires_grad
    torch.testing.assert_close(b[0], a[0], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(b[1], a[1])


def test_phase_picks_the_config():
    cfg = get_default_config()
    train = ProposalLayer.from_caffe("'feat_stride': 16", "TRAIN", cfg)
    test = ProposalLayer.from_caffe("'feat_stride': 16", "TEST", get_default_config())
    assert (train.pre_nms_top_n, train.post_nms_top_n) == (12000, 2000)
    assert (test.pre_nms_top_n, test.post_nms_top_n, test.nms_thresh, test.min_size) == (6000, 300, 0.7, 16)
    cfg.TEST.RPN_PRE_NMS_TOP_N, cfg.TEST.RPN_POST_NMS_TOP_N = -1, 2000  # rpn_generate's settings
    gen = ProposalLayer.from_caffe("'feat_stride': 16\n'scales': [4, 8, 16, 32]", "TEST", cfg)
    assert (gen.pre_nms_top_n, gen.post_nms_top_n, gen.num_anchors) == (-1, 2000, 12)
    with pytest.raises(ValueError, match="phase"):
        ProposalLayer.from_caffe("'feat_stride': 16", "VAL", cfg)
    with pytest.raises(ValueError, match="feat_stride"):
        ProposalLayer.from_caffe("", "TEST", cfg)


def test_bad_bottoms_raise():
    layer = ProposalLayer(16)
    with pytest.raises(ValueError, match="rpn_cls_prob_reshape"):
        layer(torch.zeros(1, 9, 3, 3), torch.zeros(1, 36, 3, 3), torch.tensor([[48.0, 48, 1]]))
    with pytest.raises(ValueError, match="rpn_bbox_pred"):
        layer(torch.zeros(1, 18, 3, 3), torch.zeros(1, 36, 3, 4), torch.tensor([[48.0, 48, 1]]))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    rng = np.random.RandomState(5)
    prob, deltas = random_inputs(rng, 38, 50)
    layer = ProposalLayer(16, pre_nms_top_n=6000, post_nms_top_n=300)
    info = torch.tensor([[600.0, 800.0, 1.6]])
    cpu = layer(torch.from_numpy(prob), torch.from_numpy(deltas), info)
    layer.cuda()
    gpu = layer(torch.from_numpy(prob).cuda(), torch.from_numpy(deltas).cuda(), info.cuda())
    assert gpu[0].device.type == "cuda"
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-5, atol=1e-3)


def test_half_precision_bottoms_are_decoded_in_float32():
    prob, deltas = random_inputs(np.random.RandomState(6), 6, 7)
    layer = ProposalLayer(16, pre_nms_top_n=100, post_nms_top_n=20)
    info = torch.tensor([[96.0, 112.0, 1.0]])
    half = layer(torch.from_numpy(prob).half(), torch.from_numpy(deltas).half(), info)
    ref = layer(torch.from_numpy(prob).half().float(), torch.from_numpy(deltas).half().float(), info)
    assert half[0].dtype == torch.float32
    torch.testing.assert_close(half[0], ref[0], rtol=0, atol=0)


UPSTREAM_PROPOSAL = '''layer { name: "proposal" type: "Python" bottom: "rpn_cls_prob_reshape" bottom: "rpn_bbox_pred"
  bottom: "im_info" top: "rois"
  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "'feat_stride': 16" } }
layer { name: "proposal2" type: "Python" bottom: "rpn_cls_prob_reshape" bottom: "rpn_bbox_pred"
  bottom: "im_info" top: "rois2"
  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "'feat_stride': 16" } }'''


def test_a_net_built_without_cfg_gives_its_python_layers_one_default_config(monkeypatch):
    from frcnn.caffe import net as net_module
    from tests.caffe.helpers import net_for

    made = []

    def counted_default_config():
        made.append(get_default_config())
        return made[-1]

    monkeypatch.setattr(net_module, "get_default_config", counted_default_config)
    inputs = {"rpn_cls_prob_reshape": (1, 18, 4, 5), "rpn_bbox_pred": (1, 36, 4, 5), "im_info": (1, 3)}
    net = net_for(UPSTREAM_PROPOSAL, inputs, "TEST")
    assert len(made) == 1  # once, at the engine's edge, for both layers
    layers = [layer.impl for layer in net.layers if hasattr(layer, "impl")]
    assert [(x.pre_nms_top_n, x.post_nms_top_n) for x in layers] == [(6000, 300)] * 2
    cfg = get_default_config()
    cfg.TEST.RPN_POST_NMS_TOP_N = 50
    net = net_for(UPSTREAM_PROPOSAL, inputs, "TEST", cfg=cfg)
    assert len(made) == 1 and net.layers[-1].impl.post_nms_top_n == 50
