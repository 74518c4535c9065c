import numpy as np
import pytest

from frcnn.config import get_default_config
from frcnn.roi_data.minibatch import MinibatchConfig, get_minibatch, plan_minibatch
from frcnn.roi_data.roidb import compute_bbox_regression_targets
from frcnn.utils.blob import read_image


def _conf(**kw):
    base = {"num_classes": 3, "scales": (30, 36), "max_size": 80, "batch_size": 32, "fg_fraction": 0.25}
    base.update(kw)
    return MinibatchConfig(**base)


def _reference_sample(entries, conf, rng):
    """Upstream's get_minibatch sampling, restated from its description: per image, up to
    round(fg_fraction * R) fg rows (overlap >= FG_THRESH) drawn without replacement, then bg
    rows (overlap in [BG_THRESH_LO, BG_THRESH_HI)) to fill R = batch_size / images; the RNG
    is used in that order (scales, then fg and bg draws per image, skipped when empty)."""

    def draw(pool, n):
        return rng.choice(pool, size=n, replace=False) if pool.size else pool

    scale_inds = rng.randint(0, high=len(conf.scales), size=len(entries))
    rois_per_image = conf.batch_size // len(entries)
    fg_per_image = int(np.round(conf.fg_fraction * rois_per_image))
    out = []
    for e in entries:
        ov = e["max_overlaps"]
        fg_pool = np.flatnonzero(ov >= conf.fg_thresh)
        bg_pool = np.flatnonzero((ov >= conf.bg_thresh_lo) & (ov < conf.bg_thresh_hi))
        n_fg = min(fg_per_image, fg_pool.size)
        keep = np.concatenate([draw(fg_pool, n_fg), draw(bg_pool, min(rois_per_image - n_fg, bg_pool.size))])
        labels = np.where(np.arange(keep.size) < n_fg, e["max_classes"][keep.astype(int)], 0)
        out.append((keep.astype(int), labels, n_fg))
    return scale_inds, out


def test_sampling_matches_upstreams_algorithm_and_rng_use(roidb):
    conf = _conf(bbox_reg=False)
    for seed in range(5):
        entries = [roidb[seed], roidb[(seed + 1) % 6]]
        blobs = get_minibatch(entries, conf, np.random.RandomState(seed))
        scale_inds, ref = _reference_sample(entries, conf, np.random.RandomState(seed))
        rois, labels = blobs["rois"], blobs["labels"]
        start = 0
        for im_i, (keep, ref_labels, n_fg) in enumerate(ref):
            e = entries[im_i]
            im = read_image(e["image"])
            scale = min(conf.scales[scale_inds[im_i]] / min(im.shape[:2]), conf.max_size / max(im.shape[:2]))
            part = rois[start : start + len(keep)]
            np.testing.assert_array_equal(part[:, 0], im_i)
            np.testing.assert_allclose(part[:, 1:], e["boxes"][keep] * scale, rtol=1e-6)
            np.testing.assert_array_equal(labels[start : start + len(keep)], ref_labels)
            assert n_fg <= 4 and len(keep) <= 16  # 16 RoIs per image, round(0.25 * 16) = 4 fg
            assert (e["max_overlaps"][keep[:n_fg]] >= 0.5).all()
            bg_ov = e["max_overlaps"][keep[n_fg:]]
            assert ((bg_ov < 0.5) & (bg_ov >= 0.1)).all()
            start += len(keep)
        assert start == len(rois) and blobs["data"].shape[0] == 2
        assert all(blobs[k].dtype == np.float32 for k in blobs)


def test_global_rng_is_the_default(roidb):
    conf = _conf()
    np.random.seed(7)
    a = plan_minibatch(roidb[:2], conf)
    np.random.seed(7)
    b = plan_minibatch(roidb[:2], conf, np.random)
    assert a.scale_inds.tolist() == b.scale_inds.tolist()
    assert all((x == y).all() for x, y in zip(a.keep_inds, b.keep_inds))


def test_bbox_targets_expand_to_the_class_columns(roidb):
    for e in roidb:
        e["bbox_targets"] = np.zeros((len(e["boxes"]), 5), np.float32)
        e["bbox_targets"][:, 0] = np.where(e["max_overlaps"] >= 0.5, e["max_classes"], 0)
        e["bbox_targets"][:, 1:] = np.arange(len(e["boxes"]) * 4).reshape(-1, 4)
    conf = _conf(bbox_inside_weights=(1.0, 2.0, 3.0, 4.0))
    plan = plan_minibatch(roidb[:2], conf, np.random.RandomState(0))
    blobs = get_minibatch(roidb[:2], conf, np.random.RandomState(0))
    t, w_in, w_out = blobs["bbox_targets"], blobs["bbox_inside_weights"], blobs["bbox_outside_weights"]
    assert t.shape == w_in.shape == w_out.shape == (len(blobs["rois"]), 12)
    keep = np.concatenate([plan.keep_inds[0], plan.keep_inds[1]])
    src = np.concatenate(
        [roidb[0]["bbox_targets"][plan.keep_inds[0]], roidb[1]["bbox_targets"][plan.keep_inds[1]]]
    )
    assert len(keep) == len(t)
    for r in range(len(t)):
        c = int(src[r, 0])
        expect = np.zeros(12, np.float32)
        weights = np.zeros(12, np.float32)
        if c > 0:
            expect[4 * c : 4 * c + 4] = src[r, 1:]
            weights[4 * c : 4 * c + 4] = [1, 2, 3, 4]
        np.testing.assert_array_equal(t[r], expect)
        np.testing.assert_array_equal(w_in[r], weights)
        np.testing.assert_array_equal(w_out[r], (weights > 0).astype(np.float32))


def test_without_bbox_reg_and_missing_targets(roidb):
    blobs = get_minibatch(roidb[:2], _conf(bbox_reg=False), np.random.RandomState(0))
    assert set(blobs) == {"data", "rois", "labels"}
    with pytest.raises(ValueError, match="lacks bbox_targets"):
        get_minibatch(roidb[:2], _conf(), np.random.RandomState(0))
    with pytest.raises(ValueError, match="must divide BATCH_SIZE"):
        get_minibatch(roidb[:3], _conf(bbox_reg=False), np.random.RandomState(0))


def test_rpn_path_gt_boxes_and_im_info(roidb):
    e = dict(roidb[0])
    e["gt_classes"] = e["gt_classes"].copy()
    conf = _conf(has_rpn=True, scales=(60,), max_size=1000)
    blobs = get_minibatch([e], conf, np.random.RandomState(0))
    assert set(blobs) == {"data", "im_info", "gt_boxes"}
    # 40x30 image, shorter side 30 -> 60: scale 2
    assert blobs["data"].shape == (1, 3, 60, 80)
    np.testing.assert_allclose(blobs["im_info"], [[60, 80, 2.0]])
    gt = blobs["gt_boxes"]
    assert gt.dtype == np.float32 and gt.shape == (2, 5)
    np.testing.assert_allclose(gt[:, :4], e["boxes"][:2] * 2)
    assert gt[:, 4].tolist() == [1, 2]
    # several images (TRAIN.IMS_PER_BATCH > 1; upstream refused): a padded blob, each image's own
    # size in im_info, and the gt rows' image index in a sixth column
    two = get_minibatch([e, roidb[1]], conf, np.random.RandomState(0))  # 40x30 and 30x40 images, scale 2
    assert two["data"].shape == (2, 3, 80, 80)
    np.testing.assert_allclose(two["im_info"], [[60, 80, 2.0], [80, 60, 2.0]])
    assert two["gt_boxes"].shape == (4, 6) and two["gt_boxes"][:, 5].tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(two["gt_boxes"][:2], np.c_[gt, [0, 0]])
    np.testing.assert_allclose(two["gt_boxes"][2:, :4], roidb[1]["boxes"][:2] * 2)
    with pytest.raises(ValueError, match="gt class 2 is outside the net's classes 1..1"):
        get_minibatch([e], _conf(has_rpn=True, scales=(60,), num_classes=2), np.random.RandomState(0))


def test_flipped_entries_mirror_the_pixels(roidb):
    plain = get_minibatch([roidb[0]], _conf(has_rpn=True, scales=(30,)), np.random.RandomState(0))
    e = dict(roidb[0], flipped=True)
    flipped = get_minibatch([e], _conf(has_rpn=True, scales=(30,)), np.random.RandomState(0))
    np.testing.assert_array_equal(flipped["data"], plain["data"][..., ::-1])


def test_image_size_change_is_detected(roidb):
    e = dict(roidb[0], width=41)
    with pytest.raises(ValueError, match="image is 40x30 but the roidb says 41x30"):
        get_minibatch([e], _conf(has_rpn=True), np.random.RandomState(0))


def test_config_reading():
    cfg = get_default_config()
    cfg.TRAIN.SCALES = (400, 500)
    conf = MinibatchConfig.from_config(cfg, 21)
    assert conf.scales == (400, 500) and conf.num_classes == 21 and conf.batch_size == 128
    assert conf.pixel_means == pytest.approx((102.9801, 115.9465, 122.7717))


def test_targets_then_minibatch_regress_to_the_right_gt():
    """Geometry end to end: targets from real overlaps, normalised with precomputed stds."""
    boxes = np.array([[0, 0, 9, 9], [20, 20, 39, 29], [1, 0, 10, 9], [20, 21, 39, 30]], np.float64)
    ov = np.array([[0, 1, 0], [0, 0, 1], [0, 0.818, 0], [0, 0, 0.9]], np.float32)
    e = {"boxes": boxes, "gt_overlaps": ov, "max_overlaps": ov.max(1), "max_classes": ov.argmax(1)}
    compute_bbox_regression_targets([e], normalize_precomputed=True)
    t = e["bbox_targets"]
    assert t[:, 0].tolist() == [1, 2, 1, 2]
    # row 2 regresses to gt 0: dx = (5 - 6) / 10 = -0.1, normalised by 0.1 -> -1
    np.testing.assert_allclose(t[2, 1:], [-1.0, 0.0, 0.0, 0.0], atol=1e-6)
    # row 3 regresses to gt 1: dy = (25 - 26) / 10 = -0.1 -> -1
    np.testing.assert_allclose(t[3, 1:], [0.0, -1.0, 0.0, 0.0], atol=1e-6)
