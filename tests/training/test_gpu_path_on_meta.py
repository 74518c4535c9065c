"""A whole training iteration of the end2end net and a test image through the GPU path, run on
torch's ``meta`` device (tests/meta_device.py): no tensor is left on the host where the device
was meant (torch checks devices on ``meta`` as on a GPU), and the points where a GPU run makes the
host wait are exactly the known ones, each named by its library line."""

import collections
import os
from functools import partial

import numpy as np
import pytest
import torch

from frcnn.caffe import TEST, Net
from frcnn.config import cfg_from_list, get_output_dir
from frcnn.inference.test import im_detect
from frcnn.nets.adapt import ensure_net_classes, ensure_solver_classes
from frcnn.rpn.generate import im_proposals
from frcnn.training.train import SolverWrapper, filter_roidb, get_roidb, set_random_seeds
from tests.meta_device import (
    DATA_SIZE,
    FROM_HOST,
    NMS_OP,
    OP_FLAG,
    READ_BACK,
    TO_HOST,
    HostWaits,
    kinds,
    patch_for_meta,
)
from tests.training.tiny_setup import ROOT, make_tiny_voc, tiny_config, write_tiny_nets


def _where(waits):
    """Count of (kind, file, source text) of the waits (line numbers left out)."""
    out = collections.Counter()
    for kind, where in waits:
        path, _line, source = where.split(":", 2)
        out[(kind, path, source.strip())] += 1
    return out


def _tiny_config(tmp_path, sets=()):
    """The tiny set written under ``tmp_path`` and its end2end config (``sets``: cfg_from_list)."""
    make_tiny_voc(str(tmp_path / "data" / "tiny"))
    cfg = tiny_config(str(tmp_path / "data"), str(tmp_path))
    cfg_from_list(list(sets), cfg)
    return cfg


def _solver_on_meta(monkeypatch, solver, cfg):
    """(a SolverWrapper of ``solver`` on tiny_trainval with its net on meta, the imdb)."""
    set_random_seeds(cfg.RNG_SEED)
    roidb, imdb = get_roidb("tiny_trainval", cfg)
    solver = ensure_solver_classes(solver, imdb.num_classes, os.path.join(cfg.ROOT_DIR, "adapted"), ROOT, cfg=cfg)
    sw = SolverWrapper(solver, filter_roidb(roidb, cfg), get_output_dir(cfg, imdb.name), cfg)
    patch_for_meta(monkeypatch)
    sw.solver.net.to(torch.device("meta"))
    return sw, imdb


def _second_iteration_waits(sw):
    """The host waits of the solver's second iteration (the first makes the momentum histories
    on the device); the error checks ("is any label bad?") are answered no."""
    with HostWaits(truth=False) as log:
        sw.solver.step(1)
        del log.waits[:]
        sw.solver.step(1)
    return log.waits


def _test_image_waits(net, cfg, run):
    """The host waits of ``run(net, image, cfg=cfg)`` on one 96 x 128 image, the net on meta;
    (its result, the waits)."""
    net.to(torch.device("meta"))
    im = np.random.RandomState(0).randint(0, 255, (96, 128, 3)).astype(np.uint8)
    with HostWaits() as log:
        out = run(net, im, cfg=cfg)
    return out, log.waits


def test_a_training_iteration_on_the_gpu_path(tmp_path, monkeypatch):
    cfg = _tiny_config(tmp_path)
    sw, _ = _solver_on_meta(monkeypatch, write_tiny_nets(str(tmp_path / "nets"))["solver"], cfg)
    waits = _second_iteration_waits(sw)
    net = sw.solver.net
    assert all(p.device.type == "meta" for _, _, p, _ in net.learnable_params())
    assert all(v.device.type == "meta" for v in sw.solver.history.values()) and len(sw.solver.history) > 10
    got = _where(waits)
    loss = "caffe/layers/loss.py"
    want = collections.Counter({
        # the data layer's three blobs (data, im_info, gt_boxes), from the host
        (FROM_HOST, "caffe/layers/python.py", "return value.to(device)"): 3,
        # SoftmaxWithLoss (RPN and detection): the label range check
        (READ_BACK, loss, "if bool(bad.any()):"): 2,
        # the RPN: the NMS op and the final count (one image), the sampled RoIs' count
        (NMS_OP, "ops/nms.py", "return torch.ops.frcnn.nms(boxes, scores, float(iou_threshold))"): 1,
        (DATA_SIZE, "rpn/proposal_layer.py", "keep = keep[valid[keep]]  # data-dependent: the final count"): 1,
        (READ_BACK, "rpn/proposal_target_layer.py",
         "keep = order[: int(chosen.sum())]  # data-dependent: the number of sampled RoIs (host sync)"): 1,
        # RoI pooling's error flags, forward and backward
        (OP_FLAG, "ops/roi_pool.py",
         "output, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, spatial_scale, pooled_h, pooled_w)"): 1,
        (OP_FLAG, "ops/roi_pool.py",
         "grad_features = torch.ops.frcnn.roi_pool_backward(grad_output, rois, argmax, n, c, h, w)"): 1,
        # the solver: the loss and each loss output, once per pass (the log and the smoothed loss)
        (READ_BACK, "caffe/solver.py", "total += float(self.net.loss.detach())"): 1,
        (READ_BACK, "caffe/solver.py",
         "sums[name] = sums.get(name, 0.0) + float(outputs[name].detach().sum())"): 4,
    })
    assert got == want, "\n".join(f"{n} x {k}" for k, n in (got - want).items()) + "\n-- missing:\n" + "\n".join(
        f"{n} x {k}" for k, n in (want - got).items())
    assert TO_HOST not in kinds(waits)


def test_a_test_image_on_the_gpu_path(tmp_path, monkeypatch):
    cfg = tiny_config(str(tmp_path / "data"), str(tmp_path))
    cfg_from_list(["TEST.SCALES", "[96]", "TEST.MAX_SIZE", "128"], cfg)
    patch_for_meta(monkeypatch)
    net = Net(write_tiny_nets(str(tmp_path / "nets"))["test"], None, TEST, cfg=cfg)
    (scores, boxes), waits = _test_image_waits(net, cfg, partial(im_detect, on_device=True))
    assert scores.device.type == "meta" and boxes.shape[1] == 4 * scores.shape[1]
    # the image blob and im_info in; the proposal layer's NMS and final count; RoI pooling's flag
    assert collections.Counter(kinds(waits)) == {FROM_HOST: 2, NMS_OP: 1, DATA_SIZE: 1, OP_FLAG: 1}, waits


MODELS = os.path.join(ROOT, "models", "pascal_voc")


@pytest.mark.parametrize("net", ["ZF", "VGG16"])
@pytest.mark.parametrize("method", ["end2end", "alt_opt stage 1 RPN"])
def test_the_papers_nets_take_the_gpu_path(tmp_path, monkeypatch, net, method):
    """The model zoo's own prototxts (upstream's iter_size 2 for end2end), at the tiny set's
    sizes: a training iteration and the matching test net run on the device, the waits per pass
    as above."""
    rpn_only = method != "end2end"
    if rpn_only:
        folder = os.path.join(MODELS, net, "faster_rcnn_alt_opt")
        solver, test = os.path.join(folder, "stage1_rpn_solver60k80k.prototxt"), os.path.join(folder, "rpn_test.prototxt")
    else:
        folder = os.path.join(MODELS, net, "faster_rcnn_end2end")
        solver, test = os.path.join(folder, "solver.prototxt"), os.path.join(folder, "test.prototxt")
    cfg = _tiny_config(tmp_path, ["TRAIN.BBOX_REG", "False"] if rpn_only else [])
    sw, imdb = _solver_on_meta(monkeypatch, solver, cfg)
    passes = sw.solver.param.iter_size
    got = collections.Counter(kinds(_second_iteration_waits(sw)))
    if rpn_only:  # the data layer's three blobs; the RPN loss's label check; the solver's two losses
        want = {FROM_HOST: 3, READ_BACK: 1 + 3}
    else:
        want = {FROM_HOST: 3, READ_BACK: 2 + 1 + 5, NMS_OP: 1, DATA_SIZE: 1, OP_FLAG: 2}
    assert passes == (1 if rpn_only else 2) and got == {k: v * passes for k, v in want.items()}, got

    test = ensure_net_classes(test, imdb.num_classes, os.path.join(cfg.ROOT_DIR, "adapted"), cfg=cfg)
    run = im_proposals if rpn_only else partial(im_detect, on_device=True)
    out, waits = _test_image_waits(Net(test, None, TEST, cfg=cfg), cfg, run)
    if rpn_only:
        boxes, scores = out  # NumPy out: the two copies back
        assert boxes.shape[1] == 4 and scores.shape[1] == 1
    else:
        scores, boxes = out
        assert scores.device.type == "meta" and boxes.shape[1] == 4 * imdb.num_classes
    want = {FROM_HOST: 2, NMS_OP: 1, DATA_SIZE: 1, **({TO_HOST: 2} if rpn_only else {OP_FLAG: 1})}
    assert collections.Counter(kinds(waits)) == want, waits
