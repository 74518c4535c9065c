"""Training runs on a tiny generated set with a tiny net: the loss falls, snapshots hold
un-normalised bbox_pred, a killed run resumes to the very same parameters, NaN stops the run,
and test_net writes detections and a mAP."""

import os

import numpy as np
import pytest
import torch

from frcnn.config import get_output_dir
from frcnn.training import snapshot as snap
from frcnn.training.train import SolverWrapper, TrainingDiverged, filter_roidb, get_roidb, set_random_seeds
from tests.training.tiny_setup import make_tiny_voc, tiny_config, write_tiny_nets


def _setup(tmp_path, **cfg_overrides):
    data = tmp_path / "data"
    if not (data / "tiny").exists():
        make_tiny_voc(str(data / "tiny"))
    nets = write_tiny_nets(str(tmp_path / "nets"))
    cfg = tiny_config(str(data), str(tmp_path))
    for k, v in cfg_overrides.items():
        cfg.TRAIN[k] = v
    return cfg, nets


def _wrapper(cfg, nets, pretrained=None):
    """What tools/train_net.py does, up to the solver (a fresh 'process': seeds reset)."""
    set_random_seeds(cfg.RNG_SEED)
    roidb, imdb = get_roidb("tiny_trainval", cfg)
    out = get_output_dir(cfg, imdb.name)
    return SolverWrapper(nets["solver"], filter_roidb(roidb, cfg), out, cfg, pretrained_model=pretrained)


def _params(net):
    return {f"{k}/{i}": p.data.detach().clone() for k, ps in net.params.items() for i, p in enumerate(ps)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg, nets = _setup(tmp)
    cfg.TRAIN.SNAPSHOT_ITERS = 10
    sw = _wrapper(cfg, nets)
    paths = sw.train_model(20)
    return cfg, nets, sw, paths


def test_loss_falls_and_snapshots_are_named_like_upstream(trained):
    _cfg, _nets, sw, paths = trained
    assert [os.path.basename(p) for p in paths] == ["tiny_iter_10.caffemodel", "tiny_iter_20.caffemodel"]
    assert all(os.path.exists(p) for p in paths)
    # only the newest snapshot keeps its resume state
    assert not os.path.exists(paths[0][: -len(".caffemodel")] + snap.SOLVERSTATE)
    assert os.path.exists(paths[1][: -len(".caffemodel")] + snap.SOLVERSTATE)
    losses = [v for _, v in sw.loss_history]
    assert [i for i, _ in sw.loss_history] == list(range(1, 21))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_snapshot_holds_unnormalised_bbox_pred(trained):
    from frcnn.caffe import TEST, Net

    cfg, nets, sw, paths = trained
    net = Net(nets["test"], paths[-1], TEST, cfg=cfg)
    W, b = net.params["bbox_pred"][0].data, net.params["bbox_pred"][1].data
    W_train, b_train = sw.net.params["bbox_pred"][0].data, sw.net.params["bbox_pred"][1].data
    stds = torch.tensor(np.tile(cfg.TRAIN.BBOX_NORMALIZE_STDS, 3), dtype=torch.float32)
    torch.testing.assert_close(W, W_train * stds[:, None])
    torch.testing.assert_close(b, b_train * stds)  # means are 0
    # the net in memory kept its training-form weights
    assert not torch.allclose(W, W_train)
    torch.testing.assert_close(net.params["conv1"][0].data, sw.net.params["conv1"][0].data, rtol=0, atol=0)


def test_rerun_of_a_finished_run_does_nothing(trained):
    cfg, nets, sw, paths = trained
    sw2 = _wrapper(cfg, nets)
    assert sw2.train_model(20) == paths  # resumed at 20: nothing left to do
    assert sw2.solver.iter == 20 and sw2.loss_history == []
    for k, v in _params(sw.net).items():
        assert torch.equal(v, _params(sw2.net)[k]), k


def test_kill_and_resume_gives_the_same_parameters(tmp_path):
    cfg, nets = _setup(tmp_path, SNAPSHOT_ITERS=3)
    cfg.EXP_DIR = "uninterrupted"
    a = _wrapper(cfg, nets)
    a.train_model(6)

    cfg.EXP_DIR = "killed"
    b = _wrapper(cfg, nets)
    real_step = b.solver.step

    def dying_step(n):
        if b.solver.iter == 5:
            raise KeyboardInterrupt("killed")  # after the snapshot at 3, before iteration 6
        real_step(n)

    b.solver.step = dying_step
    with pytest.raises(KeyboardInterrupt):
        b.train_model(6)
    out = get_output_dir(cfg, "tiny_trainval")
    assert [i for i, _ in snap.resumable_snapshots(out, "tiny", "")] == [3]

    c = _wrapper(cfg, nets)  # "rerunning the same command": a fresh process state
    paths = c.train_model(6)
    assert c.loss_history[0][0] == 4 and c.solver.iter == 6
    assert [os.path.basename(p) for p in paths] == ["tiny_iter_3.caffemodel", "tiny_iter_6.caffemodel"]
    pa, pc = _params(a.net), _params(c.net)
    assert pa.keys() == pc.keys()
    for k in pa:
        assert torch.equal(pa[k], pc[k]), f"{k} differs after resume"
    for k in a.solver.history:
        assert torch.equal(a.solver.history[k], c.solver.history[k]), k
    with open(os.path.join(get_output_dir(cfg, "tiny_trainval"), "tiny_iter_6.caffemodel"), "rb") as f:
        resumed = f.read()
    cfg.EXP_DIR = "uninterrupted"
    with open(os.path.join(get_output_dir(cfg, "tiny_trainval"), "tiny_iter_6.caffemodel"), "rb") as f:
        assert f.read() == resumed


def test_resume_refuses_snapshots_of_other_settings(tmp_path):
    from frcnn.training.train import ResumeMismatch

    cfg, nets = _setup(tmp_path, SNAPSHOT_ITERS=1)
    _wrapper(cfg, nets).train_model(1)
    cfg.TRAIN.FG_FRACTION = 0.5
    with pytest.raises(ResumeMismatch, match="other settings"):
        _wrapper(cfg, nets).train_model(2)


def test_nan_loss_stops_and_keeps_the_last_good_snapshot(tmp_path):
    cfg, nets = _setup(tmp_path, SNAPSHOT_ITERS=2)
    sw = _wrapper(cfg, nets)
    real_step = sw.solver.step

    def poisoned_step(n):
        if sw.solver.iter == 2:  # the 3rd iteration's forward sees a NaN weight
            with torch.no_grad():
                sw.net.params["fc7"][0].data[0, 0] = float("nan")
        real_step(n)

    sw.solver.step = poisoned_step
    with pytest.raises(TrainingDiverged) as err:
        sw.train_model(6)
    msg = str(err.value)
    assert "iteration 3" in msg and "nan" in msg and "tiny_iter_2.caffemodel" in msg
    out = get_output_dir(cfg, "tiny_trainval")
    assert [i for i, _ in snap.find_snapshots(out, "tiny", "")] == [2]


def test_test_net_writes_detections_and_a_map(trained, capsys):
    from frcnn.caffe import TEST, Net
    from frcnn.datasets.factory import get_imdb
    from frcnn.inference import test as frcnn_test
    from frcnn.inference.detections import load_detections

    cfg, nets, _sw, paths = trained
    net = Net(nets["test"], paths[-1], TEST, cfg=cfg)
    imdb = get_imdb("tiny_test", cfg)
    out = get_output_dir(cfg, imdb.name, "tiny_iter_20")
    frcnn_test.test_net(net, imdb, cfg, out, max_per_image=100)
    text = capsys.readouterr().out
    assert "im_detect: 4/4" in text and "Mean AP = " in text
    all_boxes = load_detections(os.path.join(out, "detections.npz"))
    assert len(all_boxes) == 3 and len(all_boxes[1]) == 4
    for j in (1, 2):
        for d in all_boxes[j]:
            assert d.shape[1] == 5 and np.all(d[:, 4] > 0.05)
            assert np.all(d[:, 0] >= 0) and np.all(d[:, 2] <= 127) and np.all(d[:, 3] <= 95)


def test_stage_timing_splits_the_test_net_like_table_5(trained):
    from frcnn.caffe import TEST, Net
    from frcnn.inference.timing import STAGES, stage_layers, time_image
    from frcnn.utils.blob import read_image

    cfg, nets, _sw, paths = trained
    net = Net(nets["test"], paths[-1], TEST, cfg=cfg)
    stages = stage_layers(net)
    assert stages["conv"] == ("conv1", "relu5")
    assert stages["proposal"] == ("rpn_conv/3x3", "proposal")
    assert stages["region-wise"][0] == "roi_pool_conv5" and stages["region-wise"][1] == net.layers[-1].name
    from frcnn.datasets.factory import get_imdb
    from frcnn.inference.test import detections_for_image, im_detect

    def cpu_nms(dets, t):
        from frcnn.boxes.nms import nms_dets as nms

        return nms(dets, t, force_cpu=True)

    im = read_image(get_imdb("tiny_test", cfg).image_path_at(0))
    timers = {}
    dets = time_image(net, im, cfg, cpu_nms, timers)
    assert set(timers) == set(STAGES) and all(timers[s].calls == 1 and timers[s].diff > 0 for s in STAGES)
    # the staged run detects exactly what im_detect + test_net's post-processing detect
    scores, boxes = im_detect(net, im, cfg=cfg)
    ref = detections_for_image(scores, boxes, cpu_nms, cfg.TEST.NMS, 0.05, 100)
    for a, b in zip(dets, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_an_added_hook_sees_every_iteration_and_snapshot(tmp_path):
    from frcnn.training.train import Hook, train_net

    class LossCurve(Hook):  # what a loss-plotting hook would collect
        def __init__(self):
            self.points, self.snapshots = [], []

        def after_step(self, loop):
            self.points.append((loop.iter, loop.total_loss))

        def after_snapshot(self, loop, path):
            self.snapshots.append(os.path.basename(path))

    cfg, nets = _setup(tmp_path, SNAPSHOT_ITERS=2)
    set_random_seeds(cfg.RNG_SEED)
    roidb, imdb = get_roidb("tiny_trainval", cfg)
    curve = LossCurve()
    paths = train_net(nets["solver"], roidb, get_output_dir(cfg, imdb.name), cfg, max_iters=3, hooks=[curve])
    assert [i for i, _ in curve.points] == [1, 2, 3] and all(np.isfinite([v for _, v in curve.points]))
    assert curve.snapshots == ["tiny_iter_2.caffemodel", "tiny_iter_3.caffemodel"]
    assert [os.path.basename(p) for p in paths] == curve.snapshots
