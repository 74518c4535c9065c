"""im_detect / test_net post-processing against hand-made cases, with fake nets."""

import types

import numpy as np
import pytest
import torch

from frcnn.config import get_default_config
from frcnn.inference import test as frcnn_test
from frcnn.inference.detections import empty_all_boxes, load_detections, save_detections


def ref_nms(dets, thresh):
    """Greedy NMS, suppressing IoU > thresh (+1 widths); equal scores keep the lower index."""
    order = sorted(range(len(dets)), key=lambda i: (-dets[i, 4], i))
    keep, removed = [], set()
    for a, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        for j in order[a + 1 :]:
            xx1, yy1 = max(dets[i, 0], dets[j, 0]), max(dets[i, 1], dets[j, 1])
            xx2, yy2 = min(dets[i, 2], dets[j, 2]), min(dets[i, 3], dets[j, 3])
            w, h = max(0.0, xx2 - xx1 + 1), max(0.0, yy2 - yy1 + 1)
            area = lambda k: (dets[k, 2] - dets[k, 0] + 1) * (dets[k, 3] - dets[k, 1] + 1)
            inter = w * h
            if inter / (area(i) + area(j) - inter) > thresh:
                removed.add(j)
    return keep


def test_detections_for_image_threshold_is_strict_and_background_skipped():
    boxes = np.tile(np.array([[0, 0, 9, 9], [50, 50, 59, 59]], np.float32), (1, 3))
    scores = np.array([[0.9, 0.05, 0.95], [0.1, 0.0500001, 0.2]], np.float32)
    dets = frcnn_test.detections_for_image(scores, boxes, ref_nms, 0.3, 0.05, 100)
    assert len(dets) == 3 and dets[0].shape == (0, 5)
    assert dets[1].shape == (1, 5) and dets[1][0, 4] == pytest.approx(0.0500001)  # 0.05 itself dropped
    assert dets[2][:, 4].tolist() == pytest.approx([0.95, 0.2])


def test_detections_for_image_nms_per_class():
    b = np.array([[0, 0, 99, 99], [5, 0, 104, 99], [200, 200, 220, 220]], np.float32)  # IoU(0,1) ~ 0.9
    boxes = np.tile(b, (1, 2))
    scores = np.array([[0, 0.8], [0, 0.9], [0, 0.7]], np.float32)
    dets = frcnn_test.detections_for_image(scores, boxes, ref_nms, 0.3, 0.05, 100)
    assert dets[1][:, 4].tolist() == pytest.approx([0.9, 0.7])


def test_max_per_image_keeps_ties_at_the_limit():
    n = 6
    boxes = np.array([[i * 100, 0, i * 100 + 10, 10] for i in range(n)], np.float32)
    boxes = np.tile(boxes, (1, 3))
    s = np.array([0.9, 0.8, 0.7, 0.7, 0.6, 0.5], np.float32)
    scores = np.stack([np.zeros(n), s, s[::-1]], axis=1).astype(np.float32)
    dets = frcnn_test.detections_for_image(scores, boxes, ref_nms, 0.3, 0.05, 5)
    kept = sorted(np.concatenate([dets[1][:, 4], dets[2][:, 4]]).tolist(), reverse=True)
    # 12 detections; the 5th largest is 0.7 and every score >= 0.7 stays (8, not 5: ties)
    assert kept == pytest.approx([0.9, 0.9, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7])
    unlimited = frcnn_test.detections_for_image(scores, boxes, ref_nms, 0.3, 0.05, 0)
    assert sum(len(d) for d in unlimited) == 12


class FakeRPNNet:
    """Returns fixed rois (in input pixels), softmax scores and zero or given deltas."""

    def __init__(self, rois, scores, deltas):
        self.device = torch.device("cpu")
        self.rois, self.scores, self.deltas = rois, scores, deltas
        self.blobs = {}
        self.seen = {}

    def forward(self, **inputs):
        self.seen = {k: v.clone() for k, v in inputs.items()}
        self.blobs["rois"] = types.SimpleNamespace(data=torch.from_numpy(self.rois))
        return {"cls_prob": torch.from_numpy(self.scores), "bbox_pred": torch.from_numpy(self.deltas)}


def _cfg(**test):
    cfg = get_default_config()
    cfg.TEST.SCALES = (60,)
    cfg.TEST.MAX_SIZE = 200
    for k, v in test.items():
        cfg.TEST[k] = v
    return cfg


def test_im_detect_rpn_path_divides_rois_by_scale_and_applies_the_decode_quirk():
    im = np.zeros((30, 50, 3), np.uint8)  # scale 2 -> 60 x 100 input
    rois = np.array([[0, 10, 20, 29, 39], [0, 0, 0, 99, 59]], np.float32)
    K = 2
    net = FakeRPNNet(rois, np.full((2, K), 0.5, np.float32), np.zeros((2, 4 * K), np.float32))
    scores, boxes = frcnn_test.im_detect(net, im, cfg=_cfg(HAS_RPN=True))
    assert net.seen["data"].shape == (1, 3, 60, 100)
    assert net.seen["im_info"].tolist() == [[60.0, 100.0, 2.0]]
    # zero deltas decode to (x1, y1, x2 + 1, y2 + 1) (upstream's off-by-one), then clip to 49 x 29
    # roi 0 / 2 = (5, 10, 14.5, 19.5) -> (5, 10, 15.5, 20.5)
    np.testing.assert_allclose(boxes[0, 4:8], [5, 10, 15.5, 20.5])
    np.testing.assert_allclose(boxes[1, 4:8], [0, 0, 49, 29])
    assert scores.shape == (2, K)


def test_im_detect_without_bbox_reg_repeats_boxes():
    im = np.zeros((30, 50, 3), np.uint8)
    rois = np.array([[0, 10, 20, 29, 39]], np.float32)
    net = FakeRPNNet(rois, np.full((1, 3), 1 / 3, np.float32), np.zeros((1, 12), np.float32))
    _, boxes = frcnn_test.im_detect(net, im, cfg=_cfg(HAS_RPN=True, BBOX_REG=False))
    np.testing.assert_allclose(boxes, [[5, 10, 14.5, 19.5] * 3])


class FakeFastRCNNNet:
    """Score of class 1 = x1 of the RoI it got (so rows can be traced), zero deltas."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.blobs = {}
        self.calls = []

    def forward(self, data, rois):
        self.calls.append(rois.clone())
        r = rois.numpy()
        s = np.stack([np.zeros(len(r)), r[:, 1] / 1000.0], axis=1).astype(np.float32)
        return {"cls_prob": torch.from_numpy(s), "bbox_pred": torch.zeros(len(r), 8)}


def test_im_detect_dedups_rois_and_maps_results_back():
    im = np.zeros((60, 100, 3), np.uint8)  # scale 1
    boxes = np.array([[16, 16, 44, 44], [17, 17, 45, 45], [64, 0, 90, 30], [16, 16, 44, 44]], np.float64)
    net = FakeFastRCNNNet()
    scores, pred = frcnn_test.im_detect(net, im, boxes, cfg=_cfg())
    # rows 0, 1 and 3 hash alike at DEDUP_BOXES = 1/16: only 2 unique RoIs run
    assert net.calls[0].shape == (2, 5)
    assert scores.shape == (4, 2) and pred.shape == (4, 8)
    assert scores[0, 1] == scores[1, 1] == scores[3, 1]
    np.testing.assert_allclose(pred[2, 4:], [64, 0, 91, 31])
    cfg = _cfg()
    cfg.DEDUP_BOXES = 0.0
    net2 = FakeFastRCNNNet()
    scores2, _ = frcnn_test.im_detect(net2, im, boxes, cfg=cfg)
    assert net2.calls[0].shape == (4, 5)
    assert scores2[1, 1] == pytest.approx(0.017)


def test_im_detect_fast_rcnn_needs_boxes():
    with pytest.raises(ValueError, match="proposal boxes"):
        frcnn_test.im_detect(FakeFastRCNNNet(), np.zeros((10, 10, 3), np.uint8), None, cfg=_cfg())


def test_project_im_rois_picks_the_level_closest_to_224_squared():
    rois = np.array([[0, 0, 111, 111], [0, 0, 447, 447]], np.float64)  # 112 px and 448 px
    scaled, levels = frcnn_test.project_im_rois(rois, np.array([0.5, 1.0, 2.0]))
    assert levels.ravel().tolist() == [2, 0]
    np.testing.assert_allclose(scaled[0], rois[0] * 2.0)


def test_detections_file_round_trip(tmp_path):
    all_boxes = empty_all_boxes(3, 4)
    all_boxes[1][0] = np.array([[1, 2, 3, 4, 0.5], [5, 6, 7, 8, 0.9]], np.float32)
    all_boxes[2][3] = np.array([[0, 0, 10, 10, 0.7]], np.float32)
    path = str(tmp_path / "detections.npz")
    save_detections(path, all_boxes, ["__background__", "a", "b"])
    back = load_detections(path)
    assert len(back) == 3 and all(len(c) == 4 for c in back)
    for j in range(3):
        for i in range(4):
            np.testing.assert_array_equal(back[j][i], all_boxes[j][i])
    with np.load(path, allow_pickle=False) as z:  # a plain npz, no pickled objects
        assert z["dets"].shape == (3, 5)


def test_detections_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "detections.npz"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="detections.npz"):
        load_detections(str(bad))
