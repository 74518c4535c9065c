"""ProposalTargetLayer: hand-made cases, sampling caps, round trip, and a plain-NumPy reference of upstream."""

import numpy as np
import pytest
import torch

from frcnn.boxes.overlaps import bbox_overlaps
from frcnn.boxes.transform import bbox_transform_inv
from frcnn.config import get_default_config
from frcnn.rpn.proposal_target_layer import ProposalTargetLayer
from tests.rpn.reference import ref_encode

STDS, MEANS = np.array([0.1, 0.1, 0.2, 0.2]), np.array([0.0, 0.0, 0.0, 0.0])

# ------------------------------------------------------------------ NumPy reference (upstream, no shuffling)


def ref_proposal_targets(rois, gt, num_classes, batch=128, fg_frac=0.25, fg_th=0.5, hi=0.5, lo=0.1, norm=False):
    """upstream proposal_target_layer.forward; npr.choice replaced by 'the first k' (valid when caps do not bite)."""
    all_rois = np.vstack((rois, np.hstack((np.zeros((gt.shape[0], 1), gt.dtype), gt[:, :-1]))))
    fg_per_image = int(np.round(fg_frac * batch))
    ov = bbox_overlaps(np.ascontiguousarray(all_rois[:, 1:5], np.float64), np.ascontiguousarray(gt[:, :4], np.float64))
    assignment, max_ov = ov.argmax(1), ov.max(1)
    labels = gt[assignment, 4]
    fg = np.where(max_ov >= fg_th)[0][:fg_per_image]
    bg = np.where((max_ov < hi) & (max_ov >= lo))[0][: batch - fg.size]
    keep = np.append(fg, bg)
    labels = labels[keep]
    labels[fg.size:] = 0
    out_rois = all_rois[keep]
    t = ref_encode(out_rois[:, 1:5].astype(np.float64), gt[assignment[keep], :4].astype(np.float64))
    if norm:
        t = (t - MEANS) / STDS
    targets = np.zeros((keep.size, 4 * num_classes), np.float32)
    inside = np.zeros_like(targets)
    for i in np.where(labels > 0)[0]:
        c = int(labels[i])
        targets[i, 4 * c:4 * c + 4] = t[i]
        inside[i, 4 * c:4 * c + 4] = 1.0
    return fg.size, out_rois.astype(np.float32), labels.astype(np.float32), targets, inside, (inside > 0).astype(np.float32)


def rows(*cols):
    """Rows of the given tops side by side, sorted, for comparing sets of sampled RoIs."""
    m = np.hstack([np.asarray(c, np.float64).reshape(len(c), -1) for c in cols])
    return m[np.lexsort(m.T[::-1])] if len(m) else m


def random_case(rng, n_rois=300, n_gt=4, num_classes=6, im=300.0):
    xy = rng.uniform(0, im - 60, (n_gt, 2))
    gt = np.hstack((xy, xy + rng.uniform(20, 120, (n_gt, 2)), rng.randint(1, num_classes, (n_gt, 1))))
    # proposals: jittered copies of gt boxes (many fg) plus random boxes (bg)
    base = gt[rng.randint(0, n_gt, n_rois // 2), :4] + rng.normal(0, 8, (n_rois // 2, 4))
    xy = rng.uniform(0, im - 60, (n_rois - n_rois // 2, 2))
    rnd = np.hstack((xy, xy + rng.uniform(5, 80, xy.shape)))
    boxes = np.vstack((base, rnd))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    rois = np.hstack((np.zeros((n_rois, 1)), boxes)).astype(np.float32)
    return rois, gt.astype(np.float32)


def run(layer, rois, gt, dtype=torch.float32):
    return layer(torch.as_tensor(rois, dtype=dtype).reshape(-1, 5), torch.as_tensor(gt, dtype=dtype).reshape(-1, 5))


# ------------------------------------------------------------------ against the reference


@pytest.mark.parametrize("seed,lo,norm", [(0, 0.1, False), (1, 0.0, True), (2, 0.0, False)])
def test_matches_numpy_reference_when_caps_do_not_bite(seed, lo, norm):
    rng = np.random.RandomState(seed)
    rois, gt = random_case(rng)
    layer = ProposalTargetLayer(6, batch_size=2000, bg_thresh_lo=lo, normalize_targets_precomputed=norm)
    out = run(layer, rois, gt)
    nfg, *ref = ref_proposal_targets(rois, gt, 6, batch=2000, lo=lo, norm=norm)
    assert nfg > 20 and len(ref[0]) - nfg > 20
    assert out[0].shape == ref[0].shape and out[2].shape == (len(ref[0]), 24) and out[1].shape == (len(ref[0]),)
    assert all(t.dtype == torch.float32 for t in out)
    # fg rows come first, then bg; within each part the order is random, so compare sorted rows
    for part in (slice(0, nfg), slice(nfg, None)):
        got = rows(*(t.numpy()[part] for t in out))
        exp = rows(*(r[part] for r in ref))
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5)
    assert np.all(out[1].numpy()[:nfg] > 0) and np.all(out[1].numpy()[nfg:] == 0)


def test_sampling_caps_128_rois_32_fg():
    rng = np.random.RandomState(3)
    rois, gt = random_case(rng, n_rois=1000)
    layer = ProposalTargetLayer(6, bg_thresh_lo=0.0)
    layer.set_batch_position(0)
    out_rois, labels, *_ = run(layer, rois, gt)
    assert out_rois.shape == (128, 5) and int((labels > 0).sum()) == 32
    ov = bbox_overlaps(out_rois[:, 1:].numpy().astype(np.float64), gt[:, :4].astype(np.float64)).max(1)
    assert np.all(ov[:32] >= 0.5) and np.all(ov[32:] < 0.5)
    # re-keyed (issue 11): repeatable by the image's key (RNG_SEED, iteration, image), not torch's global RNG
    torch.manual_seed(99)
    layer.set_batch_position(0)
    torch.testing.assert_close(run(layer, rois, gt)[0], out_rois)
    assert not torch.equal(run(layer, rois, gt)[0], out_rois)  # the next iteration draws anew


def test_draws_are_the_largest_keys_of_the_images_generator():
    """The random stream of the end2end path, re-keyed (issue 11): the image's generator (RNG_SEED,
    iteration, global image index) gives one key per candidate for fg, then one per candidate for
    bg; the kept rows are the candidates with the largest keys, fg first, each part in index order."""
    from frcnn.roi_data.keys import PROPOSAL_ROIS, random_keys, torch_generator

    rois, gt = random_case(np.random.RandomState(8), n_rois=600)
    all_rois = np.vstack((rois, np.hstack((np.zeros((len(gt), 1), np.float32), gt[:, :4]))))
    ov = bbox_overlaps(all_rois[:, 1:].astype(np.float64), gt[:, :4].astype(np.float64)).max(1)
    fg, bg = np.where(ov >= 0.5)[0], np.where((ov < 0.5) & (ov >= 0.0))[0]
    assert len(fg) > 32 and len(bg) > 96
    layer = ProposalTargetLayer(6, bg_thresh_lo=0.0, seed=3)
    layer.set_batch_position(iteration=7, pass_index=1, iter_size=2)
    out_rois = run(layer, rois, gt)[0]
    g = torch_generator(3, PROPOSAL_ROIS, 7, 1, "cpu")  # pass 1 of 2, one image: global image 1
    fg_keys, bg_keys = random_keys(len(all_rois), g, "cpu").numpy(), random_keys(len(all_rois), g, "cpu").numpy()
    keep_fg = np.sort(fg[np.argsort(-fg_keys[fg], kind="stable")[:32]])
    keep_bg = np.sort(bg[np.argsort(-bg_keys[bg], kind="stable")[:96]])
    np.testing.assert_array_equal(out_rois.numpy(), all_rois[np.r_[keep_fg, keep_bg]])


def test_few_background_gives_a_short_minibatch():
    gt = np.array([[10, 10, 49, 49, 1]], np.float32)
    rois = np.array([[0, 12, 10, 51, 49], [0, 100, 100, 140, 140]], np.float32)  # fg and IoU-0 box
    out = run(ProposalTargetLayer(3), rois, gt)  # bg_thresh_lo 0.1: the IoU-0 box is neither
    assert out[0].shape == (2, 5)  # the proposal and the appended gt, both fg


def test_hand_case_columns_and_int_class_ids():
    # class id 3.0 (a float, as in the gt blob) -> columns 12..15 (upstream #480 crashed on the float)
    gt = np.array([[10, 10, 49, 49, 3]], np.float32)
    rois = np.array([[0, 10, 10, 49, 49], [0, 14, 10, 53, 49], [0, 100, 100, 140, 140]], np.float32)
    out_rois, labels, targets, inside, outside = run(ProposalTargetLayer(5, bg_thresh_lo=0.0), rois, gt)
    assert out_rois.shape == (4, 5) and targets.shape == (4, 20)
    np.testing.assert_array_equal(np.sort(labels.numpy()), [0, 3, 3, 3])
    fg = labels.numpy() == 3
    assert np.all(inside.numpy()[fg][:, 12:16] == 1) and inside.numpy().sum() == 12
    np.testing.assert_array_equal(outside.numpy(), inside.numpy())
    shifted = np.where(out_rois.numpy()[:, 1] == 14)[0][0]  # x shifted by 4 on a 40-px box
    np.testing.assert_allclose(targets.numpy()[shifted, 12:16], [-0.1, 0, 0, 0], atol=1e-7)
    with pytest.raises(ValueError, match="class ids"):
        run(ProposalTargetLayer(3), rois, gt)


@pytest.mark.parametrize("norm", [False, True])
def test_targets_round_trip_through_bbox_transform_inv(norm):
    rng = np.random.RandomState(4)
    rois, gt = random_case(rng)
    out_rois, labels, targets, _, _ = run(ProposalTargetLayer(6, normalize_targets_precomputed=norm), rois, gt)
    fg = np.where(labels.numpy() > 0)[0]
    cls = labels.numpy()[fg].astype(int)
    t = np.stack([targets.numpy()[i, 4 * c:4 * c + 4] for i, c in zip(fg, cls)]).astype(np.float64)
    if norm:
        t = t * STDS + MEANS
    decoded = bbox_transform_inv(out_rois.numpy()[fg, 1:].astype(np.float64), t)
    ov = bbox_overlaps(out_rois.numpy()[fg, 1:].astype(np.float64), gt[:, :4].astype(np.float64))
    assigned = gt[ov.argmax(1), :4]
    np.testing.assert_allclose(decoded, assigned + [0, 0, 1, 1], atol=1e-3)  # the decoder's +1 quirk
    np.testing.assert_array_equal(cls, gt[ov.argmax(1), 4])


# ------------------------------------------------------------------ empty inputs, dtypes, errors


def test_empty_proposals_use_the_gt_boxes():
    gt = np.array([[10, 10, 49, 49, 2], [60, 60, 99, 99, 1]], np.float32)
    out_rois, labels, targets, inside, _ = run(ProposalTargetLayer(3), np.zeros((0, 5)), gt)
    assert out_rois.shape == (2, 5) and sorted(labels.tolist()) == [1, 2]
    assert float(targets.abs().sum()) == 0 and float(inside.sum()) == 8


def test_empty_gt_makes_everything_background():
    rois, _ = random_case(np.random.RandomState(5), n_rois=50)
    out = run(ProposalTargetLayer(3, bg_thresh_lo=0.0), rois, np.zeros((0, 5)))
    assert out[0].shape == (50, 5) and float(out[1].abs().sum()) == 0 and float(out[2].abs().sum()) == 0
    out = run(ProposalTargetLayer(3), rois, np.zeros((0, 5)))  # bg_thresh_lo 0.1: nothing qualifies
    assert out[0].shape == (0, 5) and out[2].shape == (0, 12)
    out = run(ProposalTargetLayer(3), np.zeros((0, 5)), np.zeros((0, 5)))
    assert [tuple(t.shape) for t in out] == [(0, 5), (0,), (0, 12), (0, 12), (0, 12)]


def test_float64_inputs():
    rois, gt = random_case(np.random.RandomState(6))
    layer = ProposalTargetLayer(6, batch_size=2000)
    torch.manual_seed(1)
    a = run(layer, rois, gt)
    torch.manual_seed(1)
    b = run(layer, rois.astype(np.float64), gt.astype(np.float64), dtype=torch.float64)
    for x, y in zip(a, b):
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, x)


def test_bad_inputs_raise():
    layer = ProposalTargetLayer(3)
    with pytest.raises(ValueError, match="single-image"):
        run(layer, [[1, 0, 0, 10, 10]], [[0, 0, 10, 10, 1]])
    with pytest.raises(ValueError, match="gt_boxes"):
        layer(torch.zeros(1, 5), torch.zeros(1, 4))


def test_from_caffe_reads_the_end2end_config():
    cfg = get_default_config()
    cfg.TRAIN.BG_THRESH_LO = 0.0
    cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED = True
    layer = ProposalTargetLayer.from_caffe("'num_classes': 21", "TRAIN", cfg)
    assert (layer.num_classes, layer.rois_per_image, layer.fg_rois_per_image) == (21, 128, 32)
    assert layer.bg_thresh_lo == 0.0 and layer.normalize and layer.stds == (0.1, 0.1, 0.2, 0.2)
    assert not ProposalTargetLayer.from_caffe("'num_classes': 21", "TRAIN", get_default_config()).normalize
    with pytest.raises(ValueError, match="num_classes"):
        ProposalTargetLayer.from_caffe("'feat_stride': 16", "TRAIN", cfg)


@pytest.mark.cuda
def test_cuda_matches_cpu_when_caps_do_not_bite():
    rois, gt = random_case(np.random.RandomState(7))
    layer = ProposalTargetLayer(6, batch_size=2000)
    cpu = run(layer, rois, gt)
    gpu = layer(torch.from_numpy(rois).cuda(), torch.from_numpy(gt).cuda())
    nfg = int((cpu[1] > 0).sum())
    for c, g in zip(cpu, gpu):
        assert g.device.type == "cuda"
        for part in (slice(0, nfg), slice(nfg, None)):
            np.testing.assert_allclose(rows(g.cpu().numpy()[part]), rows(c.numpy()[part]), rtol=1e-5, atol=1e-5)
