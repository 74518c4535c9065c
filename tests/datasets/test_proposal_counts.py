"""How many external proposals a Fast R-CNN run uses: the first N of each image, in the
file's order (TRAIN.PROPOSAL_TOP_N / TEST.PROPOSAL_TOP_N), and the extra arrays of a file."""

import numpy as np
import pytest

from frcnn.datasets.factory import get_imdb
from frcnn.datasets.proposals import (
    keep_first_proposals,
    load_proposal_extras,
    load_proposals,
    proposal_boxes,
    save_proposals,
)
from frcnn.errors import InputError


def _entry(n_gt, n_props):
    rows = n_gt + n_props
    return {
        "boxes": np.arange(rows * 4, dtype=np.float32).reshape(rows, 4),
        "gt_classes": np.r_[np.arange(1, n_gt + 1), np.zeros(n_props)].astype(np.int32),
        "gt_overlaps": np.arange(rows * 3, dtype=np.float32).reshape(rows, 3),
        "seg_areas": np.arange(rows, dtype=np.float32),
        "max_overlaps": np.arange(rows, dtype=np.float32) / 10,
        "flipped": False,
        "width": 50,
    }


def test_keep_first_proposals_keeps_every_gt_row_and_the_first_n_in_order():
    roidb = [_entry(2, 6), _entry(0, 3), _entry(1, 0)]
    before = [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in e.items()} for e in roidb]
    assert keep_first_proposals(roidb, 4) is roidb
    rows = [0, 1, 2, 3, 4, 5]  # 2 gt + proposals 0..3
    for key in ("boxes", "gt_classes", "gt_overlaps", "seg_areas", "max_overlaps"):
        np.testing.assert_array_equal(roidb[0][key], before[0][key][rows], err_msg=key)
        np.testing.assert_array_equal(roidb[1][key], before[1][key], err_msg=key)  # 3 <= 4: untouched
        np.testing.assert_array_equal(roidb[2][key], before[2][key], err_msg=key)
    assert roidb[0]["flipped"] is False and roidb[0]["width"] == 50


@pytest.mark.parametrize("n", [0, -1])
def test_keep_first_proposals_zero_or_negative_keeps_all(n):
    roidb = [_entry(1, 5)]
    keep_first_proposals(roidb, n)
    assert len(roidb[0]["boxes"]) == 6


def test_proposal_boxes_first_n_non_gt_rows():
    e = _entry(2, 5)
    np.testing.assert_array_equal(proposal_boxes(e), e["boxes"][2:])
    np.testing.assert_array_equal(proposal_boxes(e, 3), e["boxes"][2:5])
    np.testing.assert_array_equal(proposal_boxes(e, 99), e["boxes"][2:])


def test_extra_arrays_round_trip_and_do_not_disturb_the_boxes(tmp_path):
    path = str(tmp_path / "p.npz")
    boxes = [np.array([[0, 0, 5, 5]], np.float32), np.zeros((0, 4), np.float32)]
    save_proposals(path, boxes, ["a", "b"], extra={"seconds": np.array([0.5, 0.25]), "info": np.array('{"x": 1}')})
    got, ids = load_proposals(path)
    assert ids == ["a", "b"] and [b.tolist() for b in got] == [b.tolist() for b in boxes]
    extras = load_proposal_extras(path)
    assert sorted(extras) == ["info", "seconds"] and extras["seconds"].tolist() == [0.5, 0.25]
    assert str(extras["info"]) == '{"x": 1}'
    with pytest.raises(InputError, match="extra field 'boxes' is reserved"):
        save_proposals(path, boxes, ["a", "b"], extra={"boxes": np.zeros(2)})


def _rpn_file(tmp_path, imdb, per_image=5):
    """Proposals in a known order: box k of image i is a distinct box inside the image."""
    boxes = [np.array([[k, k, k + 10, k + 12] for k in range(per_image)], np.float32) for _ in imdb.image_index]
    path = str(tmp_path / "props.npz")
    save_proposals(path, boxes, list(imdb.image_index))
    return path, boxes


def test_train_roidb_holds_the_first_n_proposals_flipped_copies_too(tiny_voc, tmp_path):
    from frcnn.training.data import get_roidb

    cfg, _root = tiny_voc
    imdb = get_imdb("shapes_trainval", cfg)
    path, boxes = _rpn_file(tmp_path, imdb)
    cfg.TRAIN.PROPOSAL_METHOD = "rpn"
    cfg.TRAIN.PROPOSAL_TOP_N = 3
    roidb, imdb = get_roidb("shapes_trainval", cfg, rpn_file=path)
    n = imdb.num_images // 2
    assert len(roidb) == 2 * n and roidb[n]["flipped"]
    for i, entry in enumerate(roidb):
        props = entry["boxes"][entry["gt_classes"] == 0]
        assert len(props) == 3, i
        assert len(entry["max_overlaps"]) == len(entry["boxes"]) == len(entry["gt_overlaps"])
        if not entry["flipped"]:
            np.testing.assert_array_equal(props, boxes[i][:3])
    cfg.TRAIN.PROPOSAL_TOP_N = -1
    roidb, _ = get_roidb("shapes_trainval", cfg, rpn_file=path)
    assert all((e["gt_classes"] == 0).sum() == 5 for e in roidb)


class _CountingNet:
    """A Fast R-CNN stand-in that records how many RoIs each forward gets."""

    def __init__(self, num_classes):
        import torch

        self.device = torch.device("cpu")
        self.num_classes = num_classes
        self.seen = []

    def forward(self, data, rois):
        import torch

        self.seen.append(int(rois.shape[0]))
        r = rois.shape[0]
        return {"cls_prob": torch.full((r, self.num_classes), 1.0 / self.num_classes),
                "bbox_pred": torch.zeros((r, 4 * self.num_classes))}


@pytest.mark.parametrize("top_n, expected", [(2, 2), (4, 4), (-1, 5)])
def test_test_net_feeds_the_first_n_proposals(tiny_voc, tmp_path, top_n, expected):
    from frcnn.inference.test import test_net

    cfg, _root = tiny_voc
    imdb = get_imdb("shapes_trainval", cfg)
    path, _ = _rpn_file(tmp_path, imdb)
    imdb.config["rpn_file"] = path
    imdb.set_proposal_method("rpn")
    cfg.TEST.PROPOSAL_TOP_N = top_n
    cfg.DEDUP_BOXES = 0  # every RoI reaches the net
    cfg.TEST.SCALES, cfg.TEST.MAX_SIZE = (60,), 100
    net = _CountingNet(imdb.num_classes)
    test_net(net, imdb, cfg, str(tmp_path / "out"))
    assert net.seen == [expected] * imdb.num_images
