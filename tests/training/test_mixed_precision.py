"""Mixed precision end to end on the CPU: bf16 testing keeps the mAP of float32 with the same
weights; fp16 training with the loss scaler runs with finite losses and skips an overflowed
update; channels-last training follows the float32 losses."""

import contextlib
import io
import logging

import numpy as np
import pytest
import torch

from frcnn.config import get_output_dir
from frcnn.training.train import SolverWrapper, filter_roidb, get_roidb, set_random_seeds
from tests.training.tiny_setup import make_tiny_voc, tiny_config, write_tiny_nets


def _wrapper(tmp, n_test=4, **settings):
    data = tmp / "data"
    if not (data / "tiny").exists():
        make_tiny_voc(str(data / "tiny"), n_train=16, n_test=n_test)
    nets = write_tiny_nets(str(tmp / "nets"))
    cfg = tiny_config(str(data), str(tmp))
    cfg.TRAIN.SNAPSHOT_ITERS = 1000
    for key, value in settings.items():
        section, _, name = key.rpartition("__")
        (cfg[section] if section else cfg)[name] = value
    set_random_seeds(cfg.RNG_SEED)
    roidb, imdb = get_roidb("tiny_trainval", cfg)
    return SolverWrapper(nets["solver"], filter_roidb(roidb, cfg), get_output_dir(cfg, imdb.name), cfg), cfg, nets


def test_bf16_test_map_is_within_0_02_of_float32_with_the_same_weights(tmp_path):
    from frcnn.caffe import TEST, Net
    from frcnn.datasets.factory import get_imdb
    from frcnn.inference.detections import load_detections
    from frcnn.inference.test import test_net

    sw, cfg, nets = _wrapper(tmp_path, n_test=150)
    with contextlib.redirect_stdout(io.StringIO()):
        model = sw.train_model(100)[-1]
    imdb = get_imdb("tiny_test", cfg)
    maps, dets = {}, {}
    for amp in ("none", "bf16"):
        cfg.TEST.AMP = amp
        net = Net(nets["test"], model, TEST, cfg=cfg)
        out = get_output_dir(cfg, imdb.name, amp)
        with contextlib.redirect_stdout(io.StringIO()):
            maps[amp] = test_net(net, imdb, cfg, out)["mean_ap"]
        dets[amp] = load_detections(out + "/detections.npz")
    assert maps["none"] > 0.5, maps  # a net that detects, so the comparison means something
    assert abs(maps["bf16"] - maps["none"]) <= 0.02, maps
    differ = any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(dets["none"][1], dets["bf16"][1]))
    assert differ  # bf16 did change the numbers


def test_fp16_training_with_the_loss_scaler_has_finite_losses_and_skips_an_overflow(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="frcnn.caffe.solver")
    sw, _cfg, _nets = _wrapper(tmp_path, TRAIN__AMP="fp16")
    assert sw.solver.scaler is not None and sw.solver.scaler.current == 2.0**16
    sw.train_model(4)
    losses = [v for _, v in sw.loss_history]
    assert len(losses) == 4 and all(np.isfinite(losses)), losses
    assert sw.net.blobs["rpn_bbox_pred"].data.dtype == torch.float16
    # a scale that overflows float16 gradients: the update is skipped, the scale halved
    sw.solver.scaler.scaler.update(2.0**100)
    learnable = {f"{layer}/{i}": p for layer, i, p, _ in sw.net.learnable_params()}
    before = {k: p.data.clone() for k, p in learnable.items()}
    sw.solver.step(1)
    assert sw.solver.iter == 5
    assert all(torch.equal(p.data, before[k]) for k, p in learnable.items())
    assert sw.solver.scaler.current == 2.0**99
    said = capsys.readouterr().out + caplog.text  # the solver prints, or logs when logging is set up
    assert "Iteration 4: float16 gradients overflowed; update skipped, loss scale now 6.33825e+29" in said


def test_fp16_loss_scale_is_saved_and_restored_with_the_solver_state(tmp_path):
    sw, _cfg, _nets = _wrapper(tmp_path, TRAIN__AMP="fp16")
    sw.train_model(2)
    sw.solver.scaler.scaler.update(1024.0)
    path = str(tmp_path / "s.solverstate")
    sw.solver.save_state(path)
    sw.solver.scaler.scaler.update(8.0)
    sw.solver.restore(path)
    assert sw.solver.scaler.current == 1024.0


def _terms(sw):
    """Each iteration's loss terms, from the loss-curve hook."""
    from frcnn.training.loss_curve import LossCurve

    (curve,) = [h for h in sw.hooks if isinstance(h, LossCurve)]
    return [row[3] for row in curve.rows]


@pytest.mark.parametrize("settings", [{"CHANNELS_LAST": True}, {"TRAIN__AMP": "bf16"}])
def test_training_losses_follow_float32(tmp_path, settings):
    """The RPN's losses of the first iteration (same weights, same anchors and targets) agree to
    the layout's or the precision's rounding; later iterations and the detector's losses only
    roughly: they depend on which proposals survive NMS and are sampled, a discrete choice that a
    last-bit change can flip (with one torch thread the channels-last run's iteration-3 loss is
    1.6 % off the NCHW one's, with two 0.05 %)."""
    ref, _, _ = _wrapper(tmp_path / "ref")
    ref.train_model(3)
    other, _, _ = _wrapper(tmp_path / "other", **settings)
    other.train_model(3)
    first_tol = 1e-4 if "CHANNELS_LAST" in settings else 0.05
    a, b = _terms(ref)[0], _terms(other)[0]
    for term in ("rpn_cls_loss", "rpn_loss_bbox"):
        np.testing.assert_allclose(b[term], a[term], rtol=first_tol, err_msg=term)
    a, b = np.array([v for _, v in ref.loss_history]), np.array([v for _, v in other.loss_history])
    np.testing.assert_allclose(b, a, rtol=0.1)


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_on_a_gpu_mixed_precision_training_follows_float32(tmp_path, amp):
    gpu = {"GPU_ID": 0, "USE_GPU_NMS": True}
    ref, _, _ = _wrapper(tmp_path / "ref", **gpu)
    ref.train_model(20)
    sw, _cfg, _nets = _wrapper(tmp_path / amp, TRAIN__AMP=amp, CHANNELS_LAST=True, **gpu)
    assert sw.net.device.type == "cuda" and (sw.solver.scaler is not None) == (amp == "fp16")
    sw.train_model(20)
    a, b = np.array([v for _, v in ref.loss_history]), np.array([v for _, v in sw.loss_history])
    assert len(b) == 20 and np.all(np.isfinite(b)), b
    assert b[0] == pytest.approx(a[0], rel=0.05)  # same weights, same batch: rounding only
    assert b.mean() == pytest.approx(a.mean(), rel=0.25), (a, b)
