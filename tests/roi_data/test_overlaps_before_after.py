"""The Fast R-CNN path on the toy set with dense windows as proposals, with gt_overlaps stored by
row (ClassOverlaps) against the dense layout it replaced: the same overlaps, max_overlaps,
max_classes, bbox targets and their means / stds, filtered entries and sampled minibatches."""

import copy

import numpy as np
import pytest

from frcnn.boxes.overlaps import bbox_overlaps
from frcnn.datasets.class_overlaps import ClassOverlaps
from frcnn.datasets.proposals import load_proposals
from frcnn.roi_data.minibatch import MinibatchConfig, build_minibatch, plan_minibatch
from frcnn.roi_data.roidb import compute_bbox_regression_targets, filter_roidb
from tests.tools.helpers import load_tool


def dense_reference(gt_entry, proposals, num_classes):
    """The roidb's (R, K) overlaps as the dense code built them: a 1 in each gt row's class
    column, then each proposal's IoU with its best gt in that gt's class column (0 if none)."""
    g = len(gt_entry["boxes"])
    gt = np.zeros((g, num_classes), np.float32)
    gt[np.arange(g), gt_entry["gt_classes"]] = 1
    props = np.zeros((len(proposals), num_classes), np.float32)
    if g and len(proposals):
        ov = bbox_overlaps(proposals.astype(np.float64), gt_entry["boxes"].astype(np.float64))
        best, arg = ov.max(axis=1), ov.argmax(axis=1)
        inds = np.where(best > 0)[0]
        props[inds, gt_entry["gt_classes"][arg[inds]]] = best[inds]
    return np.vstack((gt, props))


@pytest.fixture(scope="module")
def toy_dense_windows(tmp_path_factory):
    from frcnn.training import alt_opt
    from tests.training.tiny_setup import toy_config

    tmp = tmp_path_factory.mktemp("toy_windows")
    cfg = toy_config(tmp, "faster_rcnn_alt_opt", num_trainval=5, num_test=1, seed=2)
    cfg = alt_opt.fast_rcnn_stage_config(cfg, "windows")
    windows = str(tmp / "windows.npz")
    assert load_tool("dense_proposals.py").main(
        ["--imdb", "toy_trainval", "--out", windows, "--set", "DATA_DIR", str(tmp / "data")]) == 0
    roidb, imdb = alt_opt.get_roidb("toy_trainval", cfg, rpn_file=windows)
    return cfg, roidb, imdb, windows


def test_compact_and_dense_overlaps_give_the_same_training_data(toy_dense_windows):
    from frcnn.datasets.factory import get_imdb

    cfg, roidb, imdb, windows = toy_dense_windows
    k = imdb.num_classes
    n = len(roidb) // 2  # the flipped copies follow
    gt = get_imdb("toy_trainval", cfg).gt_roidb()
    boxes, _ = load_proposals(windows)
    assert len(gt) == n == 5 and min(len(b) for b in boxes) > 1000  # thousands of windows per image
    # the dense-layout twin of the roidb: the same entries with the dense overlaps, and max_overlaps /
    # max_classes as the dense code computed them (max / argmax over the classes)
    before = []
    for i, entry in enumerate(roidb):
        dense = dense_reference(gt[i % n], boxes[i % n], k)
        got = entry["gt_overlaps"]
        assert isinstance(got, ClassOverlaps) and got.shape == dense.shape
        assert np.array_equal(got.toarray(), dense)
        assert got.nbytes == 4 * (len(dense) + 1) + 8 * np.count_nonzero(dense) < dense.nbytes / 2  # K = 6 here
        twin = {**entry, "gt_overlaps": dense, "max_overlaps": dense.max(axis=1), "max_classes": dense.argmax(axis=1)}
        for key in ("max_overlaps", "max_classes"):
            assert entry[key].dtype == twin[key].dtype and np.array_equal(entry[key], twin[key]), key
        before.append(twin)
    assert sum((e["max_overlaps"] >= 0.5).sum() for e in roidb) > 20  # foreground windows exist
    after = copy.deepcopy(roidb)
    kw = {"bbox_thresh": cfg.TRAIN.BBOX_THRESH, "normalize_precomputed": False, "eps": cfg.EPS}
    means_b, stds_b = compute_bbox_regression_targets(before, **kw)
    means_a, stds_a = compute_bbox_regression_targets(after, **kw)
    assert np.array_equal(means_a, means_b) and np.array_equal(stds_a, stds_b)
    for a, b in zip(after, before):
        assert np.array_equal(a["bbox_targets"], b["bbox_targets"])
    after, before = filter_roidb(after), filter_roidb(before)
    assert len(after) == len(before) == 2 * n
    conf = MinibatchConfig.from_config(cfg, k)
    rng_a, rng_b = np.random.RandomState(cfg.RNG_SEED), np.random.RandomState(cfg.RNG_SEED)
    for start in range(0, len(after), 2):
        plan_a, plan_b = plan_minibatch(after[start:start + 2], conf, rng_a), plan_minibatch(before[start:start + 2],
                                                                                             conf, rng_b)
        assert plan_a.fg_counts == plan_b.fg_counts and plan_a.fg_counts[0] > 0
        assert all(np.array_equal(x, y) for x, y in zip(plan_a.keep_inds, plan_b.keep_inds))
        blobs_a, blobs_b = build_minibatch(after[start:start + 2], plan_a, conf), build_minibatch(
            before[start:start + 2], plan_b, conf)
        for key in ("rois", "labels", "bbox_targets", "bbox_inside_weights"):
            assert np.array_equal(blobs_a[key], blobs_b[key]), key


def test_recall_and_proposal_cuts_read_the_compact_overlaps(toy_dense_windows):
    from frcnn.datasets.proposals import keep_first_proposals

    _, roidb, imdb, _ = toy_dense_windows
    res = imdb.evaluate_recall()  # the gt rows are found by their overlap of 1
    assert res["num_pos"] == sum(int((e["gt_classes"] > 0).sum()) for e in roidb)
    assert res["recalls"][0] > 0.5  # windows cover most toy objects at IoU 0.5
    cut = keep_first_proposals(copy.deepcopy(roidb[:2]), 100)
    for entry, full in zip(cut, roidb[:2]):
        g = int((full["gt_classes"] > 0).sum())
        assert isinstance(entry["gt_overlaps"], ClassOverlaps) and len(entry["gt_overlaps"]) == g + 100
        assert np.array_equal(entry["gt_overlaps"].toarray(), full["gt_overlaps"].toarray()[: g + 100])
        assert np.array_equal(entry["max_overlaps"], full["max_overlaps"][: g + 100])


def test_memory_bound_of_a_training_roidb_with_2000_proposals_per_image():
    """tools/dev/roidb_memory.py's roidb (random gt, 2000 random proposals per image, flipped,
    prepared, with targets): gt_overlaps costs at most 4 bytes per row + 8 per nonzero (at most
    one per proposal row), against 4 K bytes per row dense: 7x less for VOC, 27x for COCO."""
    tool = load_tool("dev/roidb_memory.py")
    for k in (21, 81):
        m = tool.measure(num_images=6, num_proposals=2000, num_classes=k)
        assert m["rows"] > 6 * 2000
        assert m["gt_overlaps_dense"] == 4 * k * m["rows"]
        assert m["gt_overlaps_compact"] <= 12 * m["rows"] + 4 * 6
        assert m["gt_overlaps_compact"] * k / 3 <= m["gt_overlaps_dense"]
        assert m["gt_overlaps_traced"] >= m["gt_overlaps_compact"]  # nbytes does not undercount
        assert m["roidb_dense"] - m["roidb_compact"] == m["gt_overlaps_dense"] - m["gt_overlaps_compact"]
