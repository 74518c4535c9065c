import numpy as np
import pytest

from frcnn.datasets.imdb import imdb


def _entry(gt, props, crowd=()):
    gt = np.array(gt, np.float64).reshape(-1, 4)
    crowd = np.array(crowd, np.float64).reshape(-1, 4)
    props = np.array(props, np.float64).reshape(-1, 4)
    boxes = np.vstack([gt, crowd, props])
    n_gt = len(gt) + len(crowd)
    overlaps = np.zeros((len(boxes), 2), np.float32)
    overlaps[: len(gt), 1] = 1
    overlaps[len(gt) : n_gt, :] = -1
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    areas[n_gt:] = 0
    return {
        "boxes": boxes,
        "gt_classes": np.r_[np.ones(n_gt), np.zeros(len(props))].astype(np.int32),
        "gt_overlaps": overlaps,
        "seg_areas": areas.astype(np.float32),
        "flipped": False,
    }


@pytest.fixture
def rec_imdb():
    d = imdb("recall_case", ("__background__", "x"))
    d._image_index = [0, 1]
    d._roidb = [
        # G1 10x10, G2 10x25; P1 = G1 (IoU 1), P2 half of G1, P3 covers 18/25 of G2 (IoU 0.72);
        # a crowd box that must not count as a positive
        _entry(
            [[0, 0, 9, 9], [20, 0, 29, 24]],
            [[0, 0, 9, 9], [0, 0, 9, 4], [20, 0, 29, 17]],
            crowd=[[40, 40, 60, 60]],
        ),
        # one proposal, two gt it overlaps (IoU 1 and 100/120): it can cover only one of them
        _entry([[0, 0, 9, 9], [0, 0, 9, 11]], [[0, 0, 9, 9]]),
    ]
    return d


def test_greedy_one_to_one_recall(rec_imdb):
    res = rec_imdb.evaluate_recall()
    np.testing.assert_allclose(res["thresholds"], np.arange(0.5, 0.95 + 1e-5, 0.05))
    # four positives with best-first overlaps 1.0, 0.72 | 1.0, 0 (the second gt got nothing)
    np.testing.assert_allclose(res["gt_overlaps"], [0.0, 0.72, 1.0, 1.0])
    # 0.72 passes 0.50 .. 0.70 (5 thresholds)
    np.testing.assert_allclose(res["recalls"], [0.75] * 5 + [0.5] * 5)
    assert res["ar"] == pytest.approx(0.625)


def test_candidate_boxes_limit_and_area(rec_imdb):
    cand = [np.array([[20, 0, 29, 24], [0, 0, 9, 9]]), np.zeros((0, 4))]
    res = rec_imdb.evaluate_recall(candidate_boxes=cand)
    np.testing.assert_allclose(res["recalls"], [0.5] * 10)  # image 1 has no candidates: 2 misses
    res = rec_imdb.evaluate_recall(candidate_boxes=cand, limit=1)
    np.testing.assert_allclose(res["gt_overlaps"], [0.0, 1.0])  # only the first candidate of image 0
    assert rec_imdb.evaluate_recall(area="large")["recalls"].tolist() == [0.0] * 10  # no large gt
    assert rec_imdb.evaluate_recall(thresholds=[0.7, 0.75])["recalls"].tolist() == [0.75, 0.5]
    with pytest.raises(ValueError, match="unknown area range 'huge'"):
        rec_imdb.evaluate_recall(area="huge")
