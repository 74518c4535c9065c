"""AnchorTargetLayer: hand-made gt layouts, sampling caps, and a plain-NumPy reference of upstream."""

import warnings

import numpy as np
import pytest
import torch

from frcnn.boxes.overlaps import bbox_overlaps
from frcnn.config import get_default_config
from frcnn.rpn.anchor_target_layer import AnchorTargetLayer
from frcnn.rpn.generate_anchors import generate_anchors
from tests.rpn.reference import ref_encode

# ------------------------------------------------------------------ NumPy reference (upstream, no sampling)


def ref_anchor_targets(base, height, width, gt_boxes, im_info, stride=16, border=0, pos=0.7, neg=0.3,
                       clobber=False, positive_weight=-1.0):
    """upstream anchor_target_layer.forward with sampling switched off; returns flat (K*A,) arrays."""
    A = base.shape[0]
    sx, sy = np.meshgrid(np.arange(width) * stride, np.arange(height) * stride)
    shifts = np.vstack((sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel())).T
    all_anchors = (base.reshape(1, A, 4) + shifts.reshape(1, -1, 4).transpose(1, 0, 2)).reshape(-1, 4)
    total = all_anchors.shape[0]
    inds_inside = np.where((all_anchors[:, 0] >= -border) & (all_anchors[:, 1] >= -border)
                           & (all_anchors[:, 2] < im_info[1] + border) & (all_anchors[:, 3] < im_info[0] + border))[0]
    anchors = all_anchors[inds_inside]
    labels = np.full(len(inds_inside), -1, dtype=np.float32)
    overlaps = bbox_overlaps(np.ascontiguousarray(anchors, dtype=np.float64),
                             np.ascontiguousarray(gt_boxes[:, :4], dtype=np.float64))
    argmax_overlaps = overlaps.argmax(axis=1)
    max_overlaps = overlaps[np.arange(len(inds_inside)), argmax_overlaps]
    gt_argmax = overlaps.argmax(axis=0)
    gt_max = overlaps[gt_argmax, np.arange(overlaps.shape[1])]
    gt_argmax = np.where(overlaps == gt_max)[0]
    if not clobber:
        labels[max_overlaps < neg] = 0
    labels[gt_argmax] = 1
    labels[max_overlaps >= pos] = 1
    if clobber:
        labels[max_overlaps < neg] = 0
    targets = ref_encode(anchors, gt_boxes[argmax_overlaps, :4].astype(np.float64)).astype(np.float32)
    inside_w = np.zeros((len(inds_inside), 4), dtype=np.float32)
    inside_w[labels == 1, :] = 1.0
    outside_w = np.zeros((len(inds_inside), 4), dtype=np.float32)
    if positive_weight < 0:
        pw = nw = 1.0 / np.sum(labels >= 0)
    else:
        pw, nw = positive_weight / np.sum(labels == 1), (1 - positive_weight) / np.sum(labels == 0)
    outside_w[labels == 1, :] = pw
    outside_w[labels == 0, :] = nw

    def unmap(x, fill):
        out = np.full((total,) + x.shape[1:], fill, dtype=np.float32)
        out[inds_inside] = x
        return out

    return unmap(labels, -1), unmap(targets, 0), unmap(inside_w, 0), unmap(outside_w, 0)


def run(layer, gt, im_info, height, width, A=None, dtype=torch.float32):
    A = A or layer.num_anchors
    score = torch.zeros(1, 2 * A, height, width, dtype=dtype)
    return layer(score, torch.as_tensor(gt, dtype=dtype).reshape(-1, 5),
                 torch.as_tensor([im_info], dtype=dtype), torch.zeros(1, 3, 4, 4))


def one_anchor_layer(**kw):
    return AnchorTargetLayer(feat_stride=16, scales=(1,), ratios=(1,), **kw)  # anchor (0, 0, 15, 15)


# ------------------------------------------------------------------ hand-made layouts


def test_ties_give_every_best_anchor_a_positive_label():
    # 2x3 map, image 32x48: anchors (16j, 16i, 16j+15, 16i+15); gt straddles anchors 0 and 1 (IoU 1/3 each)
    layer = one_anchor_layer()
    labels, targets, inside, outside = run(layer, [[8, 0, 23, 15, 1]], [32, 48, 1], 2, 3)
    assert labels.shape == (1, 1, 2, 3) and targets.shape == (1, 4, 2, 3)
    assert all(t.dtype == torch.float32 for t in (labels, targets, inside, outside))
    np.testing.assert_array_equal(labels[0, 0].numpy(), [[1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(targets[0, :, 0, 0].numpy(), [0.5, 0, 0, 0])
    np.testing.assert_allclose(targets[0, :, 0, 1].numpy(), [-0.5, 0, 0, 0])
    np.testing.assert_array_equal(inside[0, :, 0, :2].numpy(), np.ones((4, 2)))
    assert float(inside.sum()) == 8
    np.testing.assert_allclose(outside.numpy(), np.full((1, 4, 2, 3), 1 / 6), rtol=1e-6)


def test_negatives_first_then_best_anchor_and_clobber_mode():
    gt = [[0, 0, 3, 3, 1]]  # IoU with anchor 0 is 16/256 < 0.3, yet it is the gt's best anchor
    labels = run(one_anchor_layer(), gt, [32, 48, 1], 2, 3)[0]
    np.testing.assert_array_equal(labels[0, 0].numpy(), [[1, 0, 0], [0, 0, 0]])
    labels = run(one_anchor_layer(clobber_positives=True), gt, [32, 48, 1], 2, 3)[0]
    np.testing.assert_array_equal(labels[0, 0].numpy(), [[0, 0, 0], [0, 0, 0]])


def test_positive_overlap_threshold_and_in_between_anchors_ignored():
    # two anchors at one cell: (0,0,15,15) and, with scale 1.125, (-1,-1,16,16) (IoU 256/324 = 0.79 with gt)
    kw = {"feat_stride": 16, "scales": (1, 1.125), "ratios": (1,), "allowed_border": 1}
    layer = AnchorTargetLayer(**kw)
    np.testing.assert_array_equal(layer.anchors.numpy(), [[0, 0, 15, 15], [-1, -1, 16, 16]])
    labels = run(layer, [[0, 0, 15, 15, 1]], [16, 16, 1], 1, 1)[0]
    np.testing.assert_array_equal(labels.reshape(-1).numpy(), [1, 1])
    labels = run(AnchorTargetLayer(positive_overlap=0.8, **kw), [[0, 0, 15, 15, 1]], [16, 16, 1], 1, 1)[0]
    np.testing.assert_array_equal(labels.reshape(-1).numpy(), [1, -1])  # 0.79: neither pos nor neg


def test_border_and_the_zero_iou_gt_caveat():
    # image 32x48 minus 8 columns: anchors of column 2 (x2 = 47) are outside with border 0
    gt = [[0, 0, 15, 15, 1], [33, 0, 39, 15, 2]]
    labels, targets, _, outside = run(one_anchor_layer(), gt, [32, 40, 1], 2, 3)
    # the second gt overlaps no inside anchor, so its best IoU is 0 and (upstream's caveat) every
    # inside anchor with IoU 0 to it is labelled positive; outside anchors are ignored with zero targets
    np.testing.assert_array_equal(labels[0, 0].numpy(), [[1, 1, -1], [1, 1, -1]])
    assert float(targets[0, :, :, 2].abs().sum()) == 0 and float(outside[0, :, :, 2].sum()) == 0
    labels = run(one_anchor_layer(allowed_border=8), gt, [32, 40, 1], 2, 3)[0]
    np.testing.assert_array_equal(labels[0, 0].numpy(), [[1, 0, 1], [0, 0, 0]])


def test_positive_weight_mode():
    out = run(one_anchor_layer(positive_weight=0.25), [[8, 0, 23, 15, 1]], [32, 48, 1], 2, 3)[3]
    np.testing.assert_allclose(out[0, :, 0, :2].numpy(), np.full((4, 2), 0.25 / 2))
    np.testing.assert_allclose(out[0, :, 0, 2].numpy(), np.full(4, 0.75 / 4))
    with pytest.raises(ValueError, match="RPN_POSITIVE_WEIGHT"):
        one_anchor_layer(positive_weight=1.5)


def test_empty_gt_makes_every_inside_anchor_negative():
    labels, targets, inside, outside = run(one_anchor_layer(), np.zeros((0, 5)), [32, 40, 1], 2, 3)
    np.testing.assert_array_equal(labels[0, 0].numpy(), [[0, 0, -1], [0, 0, -1]])
    assert float(targets.abs().sum()) == 0 and float(inside.sum()) == 0
    np.testing.assert_allclose(outside[0, :, :, :2].numpy(), np.full((4, 2, 2), 0.25))


def test_no_anchor_inside_warns_and_ignores_everything():
    with pytest.warns(RuntimeWarning, match="no anchor lies inside"):
        labels, targets, inside, outside = run(one_anchor_layer(), [[0, 0, 5, 5, 1]], [8, 8, 1], 1, 1)
    assert labels.shape == (1, 1, 1, 1) and float(labels) == -1
    assert not torch.isnan(outside).any() and float(outside.sum()) == 0 and float(targets.abs().sum()) == 0
    assert float(inside.sum()) == 0


# ------------------------------------------------------------------ against the reference


def random_gt(rng, n, im_h, im_w):
    xy = rng.uniform(0, [im_w - 40, im_h - 40], (n, 2))
    wh = rng.uniform(20, 300, (n, 2))
    boxes = np.hstack((xy, np.minimum(xy + wh, [im_w - 1, im_h - 1])))
    return np.hstack((np.round(boxes), rng.randint(1, 21, (n, 1)))).astype(np.float32)


@pytest.mark.parametrize("seed,clobber,border,pw", [(0, False, 0, -1.0), (1, True, 0, -1.0),
                                                    (2, False, 32, 0.5), (3, False, 0, -1.0)])
def test_matches_numpy_reference_without_sampling(seed, clobber, border, pw):
    rng = np.random.RandomState(seed)
    H, W, im = 19, 25, [300.0, 400.0, 1.0]
    gt = random_gt(rng, rng.randint(1, 8), 300, 400)
    if seed == 3:  # adversarial: a duplicate gt box and a box equal to anchor 3 at cell (4, 4)
        gt = np.vstack((gt, gt[:1], [[8, 8, 135, 135, 3]])).astype(np.float32)
    layer = AnchorTargetLayer(16, allowed_border=border, clobber_positives=clobber, batch_size=10**6,
                              positive_weight=pw)
    out = run(layer, gt, im, H, W)
    ref = ref_anchor_targets(generate_anchors(), H, W, gt, im, border=border, clobber=clobber, positive_weight=pw)
    A = 9
    labels = out[0].numpy()
    # explicit layout: label of anchor a at (h, w) sits at [0, 0, a*H + h, w]; coordinate k at channel 4a + k
    flat = labels.reshape(A, H, W).transpose(1, 2, 0).reshape(-1)
    np.testing.assert_array_equal(flat, ref[0])
    for top, r in zip(out[1:], ref[1:]):
        flat = top.numpy().reshape(A, 4, H, W).transpose(2, 3, 0, 1).reshape(-1, 4)
        np.testing.assert_allclose(flat, r, rtol=1e-5, atol=1e-6)
    assert (ref[0] == 1).sum() > 0 and (ref[0] == 0).sum() > 0


def test_float64_inputs_give_the_float32_result():
    rng = np.random.RandomState(5)
    gt = random_gt(rng, 5, 300, 400)
    layer = AnchorTargetLayer(16, batch_size=10**6)
    a = run(layer, gt, [300, 400, 1], 19, 25)
    b = run(layer, gt.astype(np.float64), [300, 400, 1], 19, 25, dtype=torch.float64)
    for x, y in zip(a, b):
        assert y.dtype == torch.float32
        torch.testing.assert_close(x, y)


# ------------------------------------------------------------------ sampling


def test_sampling_caps_and_repeatability():
    rng = np.random.RandomState(6)
    im, H, W = [600.0, 800.0, 1.6], 38, 50
    gt = random_gt(rng, 60, 600, 800)
    layer = AnchorTargetLayer(16)  # defaults: 256 per image, at most 128 positives
    layer.set_batch_position(0)
    out = run(layer, gt, im, H, W)
    labels = out[0].numpy().reshape(9, H, W).transpose(1, 2, 0).reshape(-1)
    full = ref_anchor_targets(generate_anchors(), H, W, gt, im)[0]
    assert (full == 1).sum() > 128 and (full == 0).sum() > 256  # both samplers are active
    assert (labels == 1).sum() == 128 and (labels == 0).sum() == 128
    assert np.all(full[labels == 1] == 1) and np.all(full[labels == 0] == 0)  # sampled from the right sets
    np.testing.assert_allclose(out[3].numpy()[out[3].numpy() > 0], 1 / 256)
    # re-keyed (issue 11): the draws come from the image's key (RNG_SEED, iteration, image), not
    # from torch's global RNG: the same position repeats them, another iteration or seed does not
    torch.manual_seed(123)
    layer.set_batch_position(0)
    again = run(layer, gt, im, H, W)
    torch.testing.assert_close(again[0], out[0])
    assert layer.batch_position.iteration == 1  # an untold layer moves on by itself
    assert not torch.equal(run(layer, gt, im, H, W)[0], out[0])
    other = AnchorTargetLayer(16, seed=4)
    other.set_batch_position(0)
    assert not torch.equal(run(other, gt, im, H, W)[0], out[0])


def test_few_positives_fill_the_batch_with_negatives():
    rng = np.random.RandomState(7)
    gt = random_gt(rng, 1, 600, 800)
    labels = run(AnchorTargetLayer(16), gt, [600, 800, 1.6], 38, 50)[0].numpy()
    npos = (labels == 1).sum()
    assert 0 < npos < 128 and (labels == 0).sum() == 256 - npos


# ------------------------------------------------------------------ construction


def test_from_caffe_reads_param_str_and_cfg():
    cfg = get_default_config()
    cfg.TRAIN.RPN_BATCHSIZE = 64
    cfg.TRAIN.RPN_CLOBBER_POSITIVES = True
    layer = AnchorTargetLayer.from_caffe("'feat_stride': 16\n'scales': [4, 8, 16, 32]", "TRAIN", cfg)
    assert layer.num_anchors == 12 and layer.batch_size == 64 and layer.num_fg == 32 and layer.clobber_positives
    layer = AnchorTargetLayer.from_caffe("'feat_stride': 16", "TRAIN", get_default_config())
    assert layer.num_anchors == 9 and layer.batch_size == 256 and layer.allowed_border == 0
    with pytest.raises(ValueError, match="feat_stride"):
        AnchorTargetLayer.from_caffe("'scales': [8]", "TRAIN", cfg)
    with pytest.raises(ValueError, match="unknown key"):
        AnchorTargetLayer.from_caffe("'feat_stride': 16\n'stride': 3", "TRAIN", cfg)


def test_bad_bottoms_raise():
    layer = one_anchor_layer()
    # two images (IMS_PER_BATCH 2) need gt rows that say their image, and one im_info row each
    with pytest.raises(ValueError, match=r"batch of 2 images needs gt_boxes \(G, 6\)"):
        layer(torch.zeros(2, 2, 3, 3), torch.zeros(1, 5), torch.tensor([[32.0, 32, 1]]))
    with pytest.raises(ValueError, match=r"im_info must be \(2, 3\)"):
        layer(torch.zeros(2, 2, 3, 3), torch.zeros(1, 6), torch.tensor([[32.0, 32, 1]]))
    with pytest.raises(ValueError, match="gt_boxes"):
        layer(torch.zeros(1, 2, 3, 3), torch.zeros(5), torch.tensor([[32.0, 32, 1]]))


@pytest.mark.cuda
def test_cuda_matches_cpu_without_sampling():
    rng = np.random.RandomState(8)
    gt = torch.from_numpy(random_gt(rng, 6, 600, 800))
    layer = AnchorTargetLayer(16, batch_size=10**6)
    score, info = torch.zeros(1, 18, 38, 50), torch.tensor([[600.0, 800.0, 1.6]])
    cpu = layer(score, gt, info)
    layer.cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpu = layer(score.cuda(), gt.cuda(), info.cuda())
    for c, g in zip(cpu, gpu):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g.cpu(), c)
