"""The RPN layers inside a training iteration: no host synchronisation where a fixed-size form
exists (issue 13), and the fixed-size sampling equals a plain statement of upstream's rules."""

import warnings

import numpy as np
import pytest
import torch

from frcnn.roi_data.keys import ANCHORS, random_keys, torch_generator
from frcnn.rpn.anchor_target_layer import AnchorTargetLayer
from frcnn.rpn.generate_anchors import generate_anchors
from frcnn.rpn.proposal_layer import ProposalLayer
from frcnn.rpn.proposal_target_layer import ProposalTargetLayer
from tests.meta_device import (
    DATA_SIZE,
    FROM_HOST,
    NMS_OP,
    READ_BACK,
    TO_HOST,
    HostWaits,
    kinds,
    patch_for_meta,
)
from tests.rpn.test_anchor_target_layer import random_gt, ref_anchor_targets
from tests.rpn.test_proposal_layer import random_inputs
from tests.rpn.test_proposal_target_layer import random_case


def test_anchor_sampling_is_the_largest_keys_of_the_images_generator():
    """Steps 6-7 written out: of the positives, the int(0.5 * 256) with the largest fg keys; of the
    negatives, 256 - #kept positives with the largest bg keys (keys: the image's generator)."""
    rng = np.random.RandomState(6)
    im, H, W = [600.0, 800.0, 1.6], 38, 50
    gt = random_gt(rng, 60, 600, 800)
    layer = AnchorTargetLayer(16, seed=5)
    layer.set_batch_position(iteration=9, pass_index=1, iter_size=2, rank=1)  # global image 1 * 2 + 1 = 3
    labels = layer(torch.zeros(1, 18, H, W), torch.from_numpy(gt), torch.tensor([im]))[0]
    got = labels.numpy().reshape(9, H, W).transpose(1, 2, 0).reshape(-1)
    full = ref_anchor_targets(generate_anchors(), H, W, gt, im)[0]  # upstream's labels before sampling
    g = torch_generator(5, ANCHORS, 9, 3)
    fg_keys, bg_keys = random_keys(len(full), g, "cpu").numpy(), random_keys(len(full), g, "cpu").numpy()
    want = np.full(len(full), -1.0, np.float32)
    fg, bg = np.where(full == 1)[0], np.where(full == 0)[0]
    keep_fg = fg[np.argsort(-fg_keys[fg], kind="stable")[:128]]
    keep_bg = bg[np.argsort(-bg_keys[bg], kind="stable")[: 256 - len(keep_fg)]]
    want[keep_fg], want[keep_bg] = 1, 0
    assert len(fg) > 128 and len(bg) > 256
    np.testing.assert_array_equal(got, want)


def _count_syncs(fn):
    """(result, number of synchronising CUDA calls ``fn`` made), by torch's sync debug mode."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return out, sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.cuda
def test_layers_synchronise_only_for_data_dependent_sizes():
    from frcnn.ops.nms import nms

    dev = torch.device("cuda")
    rng = np.random.RandomState(0)
    # anchor target layer, two images: nothing leaves the device
    gt = torch.from_numpy(np.vstack((np.c_[random_gt(rng, 6, 600, 800), np.zeros(6)],
                                     np.c_[random_gt(rng, 4, 480, 640), np.ones(4)])).astype(np.float32)).to(dev)
    info = torch.tensor([[600.0, 800.0, 1.6], [480.0, 640.0, 1.28]], device=dev)
    atl = AnchorTargetLayer(16).to(dev)
    atl(torch.zeros(2, 18, 38, 50, device=dev), gt, info)  # warm-up (lazy CUDA initialisation)
    out, syncs = _count_syncs(lambda: atl(torch.zeros(2, 18, 38, 50, device=dev), gt, info))
    assert syncs == 0 and out[0].device.type == "cuda"
    # proposal layer: only the NMS op's kept indices and the final count per image
    prob, deltas = (torch.from_numpy(np.concatenate(x)).to(dev) for x in zip(*(random_inputs(rng, 38, 50) for _ in range(2))))
    pl = ProposalLayer(16, pre_nms_top_n=6000, post_nms_top_n=300).to(dev)
    pl(prob, deltas, info)
    boxes = torch.rand(6000, 4, device=dev) * 100
    boxes[:, 2:] += boxes[:, :2]
    _, nms_syncs = _count_syncs(lambda: nms(boxes, torch.rand(6000, device=dev), 0.7))
    out, syncs = _count_syncs(lambda: pl(prob, deltas, info))
    assert syncs <= 2 * (nms_syncs + 1) and out[0].device.type == "cuda", (syncs, nms_syncs)
    # proposal target layer: one, for the number of sampled RoIs
    rois_np, gt_np = random_case(rng, n_rois=600)
    ptl = ProposalTargetLayer(6, bg_thresh_lo=0.0).to(dev)
    r, g = torch.from_numpy(rois_np).to(dev), torch.from_numpy(gt_np).to(dev)
    ptl(r, g)
    out, syncs = _count_syncs(lambda: ptl(r, g))
    assert syncs == 1 and out[0].shape == (128, 5)


# ------------------------------------------- the same on any machine: the non-CPU path on "meta"


@pytest.fixture
def on_meta(monkeypatch):
    patch_for_meta(monkeypatch)


def _meta(*arrays):
    return [torch.empty(a.shape, dtype=torch.float32, device="meta") for a in arrays]


def test_on_the_meta_device_the_layers_wait_only_for_data_dependent_sizes(on_meta):
    """The GPU test above, without a GPU: each layer's non-CPU path, op by op."""
    rng = np.random.RandomState(0)
    gt = np.vstack((np.c_[random_gt(rng, 6, 600, 800), np.zeros(6)], np.c_[random_gt(rng, 4, 480, 640), np.ones(4)]))
    info = np.array([[600.0, 800.0, 1.6], [480.0, 640.0, 1.28]])
    # anchor target layer, two images: nothing waits
    atl = AnchorTargetLayer(16).to("meta")
    with HostWaits() as log:
        out = atl(torch.empty(2, 18, 38, 50, device="meta"), *_meta(gt, info))
    assert log.waits == [] and out[0].shape == (2, 1, 9 * 38, 50) and out[1].shape == (2, 36, 38, 50)
    # proposal layer: per image, the NMS op's kept indices and the final count
    prob, deltas = (np.concatenate(x) for x in zip(*(random_inputs(rng, 38, 50) for _ in range(2))))
    pl = ProposalLayer(16, pre_nms_top_n=6000, post_nms_top_n=300).to("meta")
    with HostWaits() as log:
        out = pl(*_meta(prob, deltas, info))
    assert out[0].device.type == "meta" and out[0].shape[1] == 5
    assert kinds(log.waits) == [NMS_OP, DATA_SIZE] * 2, log.waits
    assert all("final count" in where for kind, where in log.waits if kind == DATA_SIZE), log.waits
    # proposal target layer: one, the number of sampled RoIs (normalised targets, as end2end trains)
    rois_np, gt_np = random_case(rng, n_rois=600)
    ptl = ProposalTargetLayer(6, bg_thresh_lo=0.0, normalize_targets_precomputed=True).to("meta")
    with HostWaits(item=128) as log:
        out = ptl(*_meta(rois_np, gt_np))
    assert kinds(log.waits) == [READ_BACK], log.waits
    assert "number of sampled RoIs" in log.waits[0][1] and out[0].shape == (128, 5)


def test_the_meta_check_sees_each_kind_of_wait():
    x = torch.empty(10, 4, device="meta")
    with HostWaits() as log:
        _ = float(x.sum())
        _ = x[x[:, 0] > 0]
        _ = x.cpu()
        _ = x.to("cpu", non_blocking=True)  # asynchronous: allowed
        _ = torch.tensor([1.0, 2.0], device="meta")
        _ = x * 2 + x.topk(3, dim=0).values.sum()  # no wait
        _ = torch.tensor(3.0).item()  # a host value: no wait
    assert kinds(log.waits) == [READ_BACK, DATA_SIZE, TO_HOST, FROM_HOST], log.waits
    # devices are checked on meta as on a GPU
    with pytest.raises(RuntimeError, match="same device|device"), HostWaits():
        _ = x + torch.ones(10, 4)


def test_on_the_meta_device_the_test_path_waits_only_for_its_candidates_and_the_final_copy():
    """TEST.DEVICE_POSTPROCESS on a GPU: decoding waits for nothing; the detections wait for the
    number of candidates over the threshold, the exactness check of the class shift (one bool),
    the NMS op, and the one copy of the final detections to the host."""
    from frcnn.inference.on_device import decode_boxes, detections_on_device

    rois, deltas = torch.empty(300, 4, device="meta"), torch.empty(300, 4 * 21, device="meta")
    with HostWaits() as log:
        boxes = decode_boxes(rois, deltas, 21, (375, 500, 3), scale=1.6)
    assert log.waits == [] and boxes.shape == (300, 84) and boxes.device.type == "meta"
    with HostWaits() as log:
        detections_on_device(torch.empty(300, 21, device="meta"), boxes, 0.3, 0.05, 100)
    assert kinds(log.waits) == [DATA_SIZE, READ_BACK, NMS_OP, TO_HOST], log.waits
    assert all(where.startswith(("inference/on_device.py", "ops/nms.py")) for _, where in log.waits), log.waits
    assert "scores[:, 1:].t() > thresh" in log.waits[0][1] and "exact" in log.waits[1][1]
    assert "the one device -> host copy" in log.waits[3][1]
