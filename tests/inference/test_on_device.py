"""The device-resident post-processing (TEST.DEVICE_POSTPROCESS) equals upstream's NumPy one
(``detections_for_image`` with the CPU NMS) exactly: same classes, same order, same bits.

Crafted cases put values exactly at each limit (the score threshold, the NMS IoU threshold,
equal scores, the top-N score); random cases cover the rest; a net with fixed random weights
runs test_net both ways on toy images and the two detection files must hold the same arrays.
"""

import os

import numpy as np
import pytest
import torch

from frcnn.boxes.nms import nms_dets
from frcnn.inference import test as frcnn_test
from frcnn.inference.on_device import batched_nms, decode_boxes, detections_on_device
from frcnn.nets.random_init import fill_random


def cpu_nms(dets, thresh):
    return nms_dets(dets, thresh, force_cpu=True)


def reference(scores, boxes, nms_thresh=0.3, thresh=0.05, max_per_image=100):
    return frcnn_test.detections_for_image(scores, boxes, cpu_nms, nms_thresh, thresh, max_per_image)


def assert_same_detections(got, want):
    """Same number of classes, and per class the same rows in the same order, bit for bit."""
    assert len(got) == len(want)
    for j, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == np.float32 and g.shape == w.shape, (j, g.shape, w.shape)
        np.testing.assert_array_equal(g.view(np.uint32), np.asarray(w, np.float32).view(np.uint32), err_msg=f"class {j}")


def on_device(scores, boxes, nms_thresh=0.3, thresh=0.05, max_per_image=100):
    return detections_on_device(torch.from_numpy(scores), torch.from_numpy(boxes), nms_thresh, thresh, max_per_image)


def test_score_threshold_is_strict_at_float32_of_the_threshold():
    t = np.float32(0.05)
    s = np.array([t, np.nextafter(t, np.float32(1)), np.nextafter(t, np.float32(0)), 0.9], np.float32)
    scores = np.stack([1 - s, s], axis=1).astype(np.float32)
    boxes = np.tile(np.array([[i * 50, 0, i * 50 + 9, 9] for i in range(4)], np.float32), (1, 2))
    got = on_device(scores, boxes)
    assert_same_detections(got, reference(scores, boxes))
    assert got[1][:, 4].tolist() == [np.float32(0.9), np.nextafter(t, np.float32(1))]


def test_nms_at_iou_exactly_the_threshold_keeps_both_and_equal_scores_keep_the_lower_row():
    # +1 widths: a = [0, 5] (6 px), b = [3, 9] (7 px): inter 3, union 10 -> IoU 0.3 exactly (kept);
    # c = [0, 5] is a's twin with an equal score (suppressed: a comes first); d over a at IoU > 0.3
    rows = np.array([[0, 0, 5, 0], [3, 0, 9, 0], [0, 0, 5, 0], [1, 0, 5, 0], [100, 0, 140, 30]], np.float32)
    s = np.array([0.8, 0.7, 0.8, 0.6, 0.8], np.float32)
    k = 3
    scores = np.zeros((len(rows), k), np.float32)
    scores[:, 1] = s
    scores[:, 2] = s[::-1]  # another class with the same boxes: never suppressed by class 1
    boxes = np.tile(rows, (1, k))
    want = reference(scores, boxes)
    assert want[1][:, 4].tolist() == pytest.approx([0.8, 0.8, 0.7])  # a, the far box, b
    assert_same_detections(on_device(scores, boxes), want)


def test_top_n_keeps_every_tie_at_the_limit():
    n, k = 12, 4
    boxes = np.tile(np.array([[i * 40, 0, i * 40 + 20, 20] for i in range(n)], np.float32), (1, k))
    scores = np.zeros((n, k), np.float32)
    scores[:, 1] = np.linspace(0.9, 0.6, n)
    scores[:, 2] = 0.7  # twelve ties
    scores[:, 3] = np.float32(0.7)
    for limit in (1, 5, 9, 12, 13, 24, 36, 100, 0):
        want = reference(scores, boxes, max_per_image=limit)
        assert_same_detections(on_device(scores, boxes, max_per_image=limit), want)
    # class 1 has 8 scores above 0.7, so the 9th largest is 0.7: all 24 ties stay (32, not 9)
    assert sum(len(d) for d in on_device(scores, boxes, max_per_image=9)) == 32


def random_case(seed, num_rois=300, num_classes=6, coarse=False):
    """Proposal-like boxes (clipped to 200 x 160) and softmax scores; ``coarse`` rounds
    coordinates to 1/4 px and scores to 1/64, making exact IoU and score ties common."""
    rng = np.random.RandomState(seed)
    ctr = rng.uniform(0, [200, 160], size=(num_rois, 1, 2))
    size = rng.uniform(8, 90, size=(num_rois, num_classes, 2))
    jitter = rng.normal(0, 4, size=(num_rois, num_classes, 2))
    x1y1 = ctr + jitter - size / 2
    x2y2 = ctr + jitter + size / 2
    boxes = np.concatenate([x1y1, x2y2], axis=2)
    boxes[..., 0::2] = boxes[..., 0::2].clip(0, 199)
    boxes[..., 1::2] = boxes[..., 1::2].clip(0, 159)
    logits = rng.normal(0, 1.5, size=(num_rois, num_classes))
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if coarse:
        boxes = np.round(boxes * 4) / 4
        scores = np.round(scores * 64) / 64
    return scores.astype(np.float32), boxes.reshape(num_rois, -1).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("coarse", [False, True])
def test_random_images_equal_the_reference(seed, coarse):
    scores, boxes = random_case(seed, coarse=coarse)
    for nms_thresh, limit in ((0.3, 100), (0.5, 20), (0.0, 100)):
        want = reference(scores, boxes, nms_thresh=nms_thresh, max_per_image=limit)
        assert_same_detections(on_device(scores, boxes, nms_thresh=nms_thresh, max_per_image=limit), want)


def test_coordinates_the_class_shift_cannot_carry_take_the_per_class_path():
    # a = [1e-14, 5] and b = [3, 9]: IoU 3 / (10 - 1e-14), just above 0.3, so b is suppressed;
    # shifted by 2 * 142 the 1e-14 would round away and leave IoU 0.3 exactly (b kept)
    rows = np.array([[1e-14, 0, 5, 0], [3, 0, 9, 0], [100, 0, 140, 30]], np.float32)
    scores = np.zeros((3, 3), np.float32)
    scores[:, 2] = [0.9, 0.8, 0.7]
    boxes = np.tile(rows, (1, 3))
    want = reference(scores, boxes)
    assert want[2][:, 4].tolist() == pytest.approx([0.9, 0.7])
    assert_same_detections(on_device(scores, boxes), want)
    scores, boxes = random_case(7, num_rois=60)
    boxes[5, 8] = -2.5  # a negative coordinate
    assert_same_detections(on_device(scores, boxes), reference(scores, boxes))


def test_batched_nms_equals_one_call_per_class():
    rng = np.random.RandomState(3)
    n = 500
    xy = rng.uniform(0, 300, (n, 2))
    b = np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], 1).round(1).astype(np.float32)
    s = rng.choice(np.linspace(0.1, 1, 7), n).astype(np.float32)  # many equal scores
    c = rng.randint(1, 5, n)
    keep = batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(c), 0.4).numpy()
    per_class = {}
    for j in np.unique(c):
        idx = np.flatnonzero(c == j)
        per_class[j] = idx[cpu_nms(np.hstack([b[idx], s[idx, None]]), 0.4)].tolist()
    for j, want in per_class.items():
        assert [i for i in keep if c[i] == j] == want
    assert np.all(np.diff(s[keep]) <= 0)  # one list by descending score


def test_nothing_above_the_threshold_and_background_only():
    scores = np.full((5, 3), 0.01, np.float32)
    boxes = np.zeros((5, 12), np.float32)
    assert_same_detections(on_device(scores, boxes), reference(scores, boxes))
    got = on_device(np.ones((4, 1), np.float32), np.zeros((4, 4), np.float32))
    assert len(got) == 1 and got[0].shape == (0, 5)


def test_decode_equals_the_numpy_decode_bit_for_bit():
    rng = np.random.RandomState(0)
    rois = np.hstack([np.zeros((400, 1)), rng.uniform(0, 300, (400, 2)), rng.uniform(300, 640, (400, 2))])
    rois = rois.astype(np.float32)
    deltas = rng.normal(0, 0.5, (400, 24)).astype(np.float32)
    scale = 1.6
    from frcnn.boxes.transform import bbox_transform_inv, clip_boxes

    want = clip_boxes(bbox_transform_inv(rois[:, 1:5] / np.array([scale])[0], deltas), (240, 400, 3))
    got = decode_boxes(torch.from_numpy(rois[:, 1:5]), torch.from_numpy(deltas), 6, (240, 400, 3), scale=scale)
    np.testing.assert_array_equal(got.numpy().view(np.uint32), want.view(np.uint32))
    tiled = decode_boxes(torch.from_numpy(rois[:, 1:5]), None, 6, (240, 400, 3), scale=scale)
    np.testing.assert_array_equal(tiled.numpy(), np.tile(rois[:, 1:5] / np.array([scale])[0], (1, 6)).astype(np.float32))


# ----------------------------------------------------------------------------- a whole net


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from tests.training.tiny_setup import toy_config

    return toy_config(tmp_path_factory.mktemp("toy"), "faster_rcnn_end2end", num_trainval=2, num_test=5, seed=4)


@pytest.mark.parametrize("cls_gain", [1.0, 40.0])
def test_test_net_writes_the_same_detections_both_ways(toy, tmp_path, cls_gain):
    from frcnn.caffe import TEST, Net
    from frcnn.datasets.factory import get_imdb
    from frcnn.inference.detections import load_detections

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    prototxt = os.path.join(root, "models", "toy", "SMALL", "faster_rcnn_end2end", "test.prototxt")
    net = Net(prototxt, None, TEST, cfg=toy)
    net.forward(data=np.zeros((1, 3, 320, 400), np.float32), im_info=np.array([[320, 400, 1.0]], np.float32))
    fill_random(net, seed=1, gains={"cls_score": cls_gain, "bbox_pred": 0.05})
    imdb = get_imdb("toy_test", toy)
    files = {}
    for flag in (False, True):
        toy.TEST.DEVICE_POSTPROCESS = flag
        out = str(tmp_path / str(flag))
        os.makedirs(out)
        frcnn_test.test_net(net, imdb, toy, out, max_per_image=100)
        files[flag] = load_detections(os.path.join(out, "detections.npz"))
    total = 0
    for j in range(imdb.num_classes):
        for i in range(imdb.num_images):
            ref, got = files[False][j][i], files[True][j][i]
            total += len(ref)
            assert ref.shape == got.shape, (j, i)
            np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))
    assert total > 0


@pytest.mark.cuda
@pytest.mark.parametrize("seed", range(4))
def test_on_a_gpu_the_selection_equals_the_cpu_reference_exactly(seed):
    # the same float32 scores and boxes: threshold, NMS (the CUDA kernel's IoU is the CPU's,
    # bit for bit) and the top-N give the reference's rows
    scores, boxes = random_case(seed, coarse=seed % 2 == 1)
    got = detections_on_device(torch.from_numpy(scores).cuda(), torch.from_numpy(boxes).cuda(), 0.3, 0.05, 100)
    assert_same_detections(got, reference(scores, boxes))


@pytest.mark.cuda
def test_on_a_gpu_the_decode_is_the_numpy_decode_to_an_ulp():
    from frcnn.boxes.transform import bbox_transform_inv, clip_boxes

    rng = np.random.RandomState(1)
    rois = np.hstack([rng.uniform(0, 300, (400, 2)), rng.uniform(300, 640, (400, 2))]).astype(np.float32)
    deltas = rng.normal(0, 0.5, (400, 24)).astype(np.float32)
    want = clip_boxes(bbox_transform_inv(rois / np.array([1.6])[0], deltas), (240, 400, 3))
    got = decode_boxes(torch.from_numpy(rois).cuda(), torch.from_numpy(deltas).cuda(), 6, (240, 400, 3), scale=1.6)
    assert got.device.type == "cuda"
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-6, atol=1e-4)


def test_im_detect_on_device_equals_the_numpy_form_for_both_paths():
    from tests.inference.test_test import FakeFastRCNNNet, FakeRPNNet, _cfg

    im = np.zeros((60, 100, 3), np.uint8)
    proposals = np.array([[16, 16, 44, 44], [17, 17, 45, 45], [64, 0, 90, 30], [16, 16, 44, 44]], np.float64)
    rng = np.random.RandomState(0)
    rois = np.hstack([np.zeros((5, 1)), rng.uniform(0, 50, (5, 2)), rng.uniform(60, 110, (5, 2))]).astype(np.float32)
    cases = [
        (FakeFastRCNNNet, (), proposals, _cfg()),  # de-duplicated RoIs mapped back, float64 proposals
        (FakeRPNNet, (rois, rng.uniform(0, 1, (5, 3)).astype(np.float32),
                      rng.normal(0, 0.3, (5, 12)).astype(np.float32)), None, _cfg(HAS_RPN=True)),
        (FakeRPNNet, (rois, np.full((5, 3), 0.5, np.float32), np.zeros((5, 12), np.float32)), None,
         _cfg(HAS_RPN=True, BBOX_REG=False)),
    ]
    for cls, args, boxes, cfg in cases:
        ref = frcnn_test.im_detect(cls(*args), im, boxes, cfg=cfg)
        got = frcnn_test.im_detect(cls(*args), im, boxes, cfg=cfg, on_device=True)
        assert all(isinstance(t, torch.Tensor) for t in got)
        for g, r in zip(got, ref):
            np.testing.assert_array_equal(g.numpy(), np.asarray(r, np.float32))
