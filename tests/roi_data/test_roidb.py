import numpy as np
import pytest

from frcnn.config import get_default_config
from frcnn.datasets.imdb import imdb
from frcnn.roi_data.roidb import (
    add_bbox_regression_targets,
    compute_bbox_regression_targets,
    filter_roidb,
    prepare_roidb,
)


def _targets_by_hand(ex, gt):
    ew, eh = ex[2] - ex[0] + 1.0, ex[3] - ex[1] + 1.0
    gw, gh = gt[2] - gt[0] + 1.0, gt[3] - gt[1] + 1.0
    ex_c = (ex[0] + 0.5 * ew, ex[1] + 0.5 * eh)
    gt_c = (gt[0] + 0.5 * gw, gt[1] + 0.5 * gh)
    return [(gt_c[0] - ex_c[0]) / ew, (gt_c[1] - ex_c[1]) / eh, np.log(gw / ew), np.log(gh / eh)]


def _entry(boxes, overlaps):
    ov = np.array(overlaps, np.float32)
    return {
        "boxes": np.array(boxes, np.float64),
        "gt_overlaps": ov,
        "max_overlaps": ov.max(axis=1),
        "max_classes": ov.argmax(axis=1),
    }


def _two_images():
    a = _entry(
        [[0, 0, 9, 9], [50, 50, 69, 89], [2, 1, 11, 12], [48, 50, 69, 85], [0, 0, 30, 30]],
        [[0, 1, 0], [0, 0, 1], [0, 0.7, 0], [0, 0, 0.8], [0, 0.3, 0]],
    )
    b = _entry([[10, 10, 29, 19], [12, 9, 30, 21]], [[0, 1, 0], [0, 0.6, 0]])
    return [a, b]


def test_targets_and_empirical_normalisation():
    roidb = _two_images()
    means, stds = compute_bbox_regression_targets(roidb, bbox_thresh=0.5, eps=1e-14)
    assert means.shape == stds.shape == (12,)
    # raw targets by hand: rows with overlap >= 0.5, each against its best gt (overlap == 1 rows)
    raw = {
        1: [
            [0, 0, 0, 0],
            _targets_by_hand([2, 1, 11, 12], [0, 0, 9, 9]),
            [0, 0, 0, 0],
            _targets_by_hand([12, 9, 30, 21], [10, 10, 29, 19]),
        ],
        2: [[0, 0, 0, 0], _targets_by_hand([48, 50, 69, 85], [50, 50, 69, 89])],
    }
    for c in (1, 2):
        x = np.array(raw[c])
        np.testing.assert_allclose(means[4 * c : 4 * c + 4], x.mean(0), atol=1e-6)
        np.testing.assert_allclose(stds[4 * c : 4 * c + 4], x.std(0), atol=1e-6)
    assert (means[:4] == 0).all() and (stds[:4] == 0).all()
    a, _b = roidb
    assert a["bbox_targets"][:, 0].tolist() == [1, 2, 1, 2, 0]  # 0.3 < BBOX_THRESH: no target
    assert (a["bbox_targets"][4] == 0).all()
    x = (np.array(_targets_by_hand([2, 1, 11, 12], [0, 0, 9, 9])) - means[4:8]) / stds[4:8]
    np.testing.assert_allclose(a["bbox_targets"][2, 1:], x, rtol=1e-5)


def test_precomputed_normalisation_and_config_entry():
    cfg = get_default_config()
    cfg.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED = True
    roidb = _two_images()
    means, stds = add_bbox_regression_targets(roidb, cfg)
    np.testing.assert_allclose(stds, np.tile([0.1, 0.1, 0.2, 0.2], 3))
    assert (means == 0).all()
    raw = _targets_by_hand([2, 1, 11, 12], [0, 0, 9, 9])
    np.testing.assert_allclose(
        roidb[0]["bbox_targets"][2, 1:], np.array(raw) / [0.1, 0.1, 0.2, 0.2], rtol=1e-5
    )
    roidb = _two_images()
    cfg.TRAIN.BBOX_NORMALIZE_TARGETS = False
    add_bbox_regression_targets(roidb, cfg)
    np.testing.assert_allclose(roidb[0]["bbox_targets"][2, 1:], raw, rtol=1e-5)


def test_image_without_gt_has_zero_targets():
    e = _entry(np.zeros((0, 4)), np.zeros((0, 3)))
    compute_bbox_regression_targets([e, *_two_images()])
    assert e["bbox_targets"].shape == (0, 5)


def test_prepare_roidb_adds_fields(tmp_path):
    import cv2

    p = str(tmp_path / "x.jpg")
    cv2.imwrite(p, np.zeros((12, 17, 3), np.uint8))

    class One(imdb):
        def image_path_at(self, i):
            return p

    d = One("one", ("__background__", "a", "b"))
    d._image_index = [0, 1]
    d._roidb = [
        {
            "boxes": np.array([[0, 0, 3, 3], [1, 1, 4, 4]]),
            "gt_classes": np.array([2, 0], np.int32),
            "gt_overlaps": np.array([[0, 0, 1], [0, 0.4, 0]], np.float32),
            "flipped": False,
        },
        {
            "boxes": np.zeros((0, 4)),
            "gt_classes": np.zeros(0, np.int32),
            "gt_overlaps": np.zeros((0, 3), np.float32),
            "flipped": False,
            "width": 99,
            "height": 98,
        },
    ]
    prepare_roidb(d)
    e0, e1 = d.roidb
    assert (e0["image"], e0["width"], e0["height"]) == (p, 17, 12)
    assert e0["max_overlaps"].tolist() == pytest.approx([1.0, 0.4]) and e0["max_classes"].tolist() == [2, 1]
    assert (e1["width"], e1["height"]) == (99, 98) and e1["max_overlaps"].shape == (0,)
    d._roidb[0]["gt_overlaps"] = np.array([[1, 0, 0], [0, 0, 0]], np.float32)  # overlap on background
    with pytest.raises(ValueError, match="x.jpg: a row with overlap > 0 has the background class"):
        prepare_roidb(d)


def test_filter_roidb_rules():
    keep_fg = {"max_overlaps": np.array([0.5])}
    keep_bg = {"max_overlaps": np.array([0.1])}
    drop_low = {"max_overlaps": np.array([0.05])}
    drop_empty = {"max_overlaps": np.zeros(0)}
    out = filter_roidb([keep_fg, keep_bg, drop_low, drop_empty], 0.5, 0.5, 0.1)
    assert out == [keep_fg, keep_bg]
    assert filter_roidb([drop_low], 0.5, 0.5, 0.0) == [drop_low]  # BG_THRESH_LO 0 keeps it


def test_a_target_component_without_spread_stays_finite():
    # class 2's only examples are its gt boxes: every target is 0, so its stds are 0; upstream
    # divided 0 by 0 (NaN targets, a NaN loss); the targets stay at 0 and the std stays 0
    a = _entry([[0, 0, 9, 9], [50, 50, 69, 89], [2, 1, 11, 12]], [[0, 1, 0], [0, 0, 1], [0, 0.7, 0]])
    b = _entry([[10, 10, 29, 19], [5, 5, 24, 24]], [[0, 0, 1], [0, 0, 0]])
    means, stds = compute_bbox_regression_targets([a, b], bbox_thresh=0.5, eps=1e-14)
    # (class 1's two examples have the same width too: its dw has no spread either)
    assert (stds[8:12] == 0).all() and stds[6] == 0 and (stds[[4, 5, 7]] > 0).all()
    for e in (a, b):
        assert np.isfinite(e["bbox_targets"]).all()
    assert np.abs(a["bbox_targets"][1, 1:]).max() < 1e-6 and a["bbox_targets"][1, 0] == 2
    # the components with a spread are normalised as before, the others are target - mean
    raw = np.array(_targets_by_hand([2, 1, 11, 12], [0, 0, 9, 9]))
    x = (raw - means[4:8]) / np.where(stds[4:8] > 0, stds[4:8], 1.0)
    np.testing.assert_allclose(a["bbox_targets"][2, 1:], x, rtol=1e-5, atol=1e-7)
    assert abs(a["bbox_targets"][2, 3]) < 1e-6
