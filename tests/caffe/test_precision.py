"""Precision options of the engine (frcnn.caffe.precision): autocast with float32 islands,
the float16 loss scaler, channels-last, TF32 flags, and their config checks."""

import os

import pytest
import torch

from frcnn.caffe import TEST, TRAIN, Net
from frcnn.caffe.precision import Precision, amp_dtype, set_tf32
from frcnn.config import ConfigError, get_default_config
from frcnn.nets.random_init import fill_random

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOY = os.path.join(ROOT, "models", "toy", "SMALL", "faster_rcnn_end2end")


def toy_cfg(**settings):
    cfg = get_default_config()
    cfg.GPU_ID = -1
    cfg.TEST.HAS_RPN = True
    cfg.TEST.RPN_PRE_NMS_TOP_N, cfg.TEST.RPN_POST_NMS_TOP_N = 600, 100
    for key, value in settings.items():
        section, _, name = key.rpartition("__")
        (cfg[section] if section else cfg)[name] = value
    return cfg


def make_test_net(cfg, seed=0):
    net = Net(os.path.join(TOY, "test.prototxt"), None, TEST, cfg=cfg)
    data = torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(seed)) * 50
    inputs = {"data": data, "im_info": torch.tensor([[128.0, 160.0, 1.0]])}
    net.forward(**inputs)  # sizes the lazily made blobs
    fill_random(net)
    return net, inputs


def test_amp_setting_names_the_key_and_maps_to_a_dtype():
    assert amp_dtype("none") is None and amp_dtype("bf16") is torch.bfloat16 and amp_dtype("FP16") is torch.float16
    with pytest.raises(ConfigError, match=r"TEST\.AMP.*none, bf16, fp16.*'fp8'"):
        Net(os.path.join(TOY, "test.prototxt"), None, TEST, cfg=toy_cfg(TEST__AMP="fp8"))
    with pytest.raises(ConfigError, match="CHANNELS_LAST"):
        Precision.from_config(toy_cfg(CHANNELS_LAST="yes"), TEST)
    assert Precision.from_config(toy_cfg(TRAIN__AMP="fp16"), TRAIN).amp is torch.float16
    assert Precision.from_config(toy_cfg(TRAIN__AMP="fp16"), TEST).amp is None  # a TEST net reads TEST.AMP


def test_emulated_low_precision_on_the_cpu_is_said_once(monkeypatch, caplog):
    from frcnn.caffe import precision

    monkeypatch.setattr(precision, "_warned_slow", set())
    monkeypatch.setattr(precision, "cpu_has_native", lambda dtype: dtype != torch.bfloat16)
    with caplog.at_level("WARNING", logger="frcnn.caffe.precision"):
        for _ in range(3):
            with precision.autocast("cpu", torch.bfloat16):
                pass
        assert not precision.warn_if_emulated("cpu", torch.float16)  # native here
        assert not precision.warn_if_emulated("cuda", torch.bfloat16)  # a GPU: never
        assert not precision.warn_if_emulated("cpu", None)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "bf16 autocast on a CPU without native bf16 kernels" in said[0], said
    assert precision.warn_if_emulated("cpu", torch.bfloat16)  # still emulated, not said again
    assert len(caplog.records) == 1


def test_native_kernels_are_what_torch_reports():
    from frcnn.caffe.precision import cpu_has_native

    assert cpu_has_native(torch.bfloat16) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert cpu_has_native(torch.float16) == torch.ops.mkldnn._is_mkldnn_fp16_supported()
    assert cpu_has_native(torch.float32)


def test_bf16_runs_convolutions_low_and_keeps_probabilities_rois_and_losses_float32():
    net, inputs = make_test_net(toy_cfg(TEST__AMP="bf16"))
    out = net.forward(**inputs)
    assert net.blobs["rpn_bbox_pred"].data.dtype == torch.bfloat16  # autocast ran the convolutions
    assert net.blobs["conv5"].data.dtype == torch.float32  # in-place BatchNorm/Scale: a float32 layer
    assert net.blobs["rois"].data.dtype == torch.float32  # the proposal layer ran in float32
    assert out["cls_prob"].dtype == torch.float32
    ref_net, _ = make_test_net(toy_cfg())
    ref = ref_net.forward(**inputs)
    assert ref["cls_prob"].dtype == torch.float32 and ref_net.blobs["rpn_bbox_pred"].data.dtype == torch.float32
    # same weights: bf16 changes the numbers a little, not the picture
    assert not torch.equal(out["cls_prob"], ref["cls_prob"]) or not torch.equal(net.blobs["rois"].data,
                                                                                 ref_net.blobs["rois"].data)


def test_a_caller_autocast_is_honoured_with_the_same_float32_islands():
    net, inputs = make_test_net(toy_cfg())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net.forward(**inputs)
    assert net.blobs["rpn_bbox_pred"].data.dtype == torch.bfloat16
    assert net.blobs["rois"].data.dtype == torch.float32 and out["cls_prob"].dtype == torch.float32


def test_roi_pooling_gets_float32_rois_under_autocast():
    from tests.caffe.helpers import net_for

    layers = ('layer { name: "p" type: "ROIPooling" bottom: "f" bottom: "r" top: "p"\n'
              '  roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 1.0 } }')
    net = net_for(layers, {"f": (1, 1, 700, 700), "r": (1, 5)})
    f = torch.zeros(1, 1, 700, 700)
    f[0, 0, 601, 601] = 1.0  # a bfloat16 RoI corner of 601 would round to 600 and miss... 602 x 602
    f[0, 0, 600, 600] = 5.0
    rois = torch.tensor([[0.0, 601, 601, 604, 604]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net.forward(f=f.bfloat16(), r=rois)["p"]
    assert out.dtype == torch.bfloat16
    assert float(out.float().max()) == 1.0  # the cell at 600 is outside the RoI


def test_channels_last_gives_the_same_outputs():
    net, inputs = make_test_net(toy_cfg())
    ref = {k: v.clone() for k, v in net.forward(**inputs).items()}
    ref_rois = net.blobs["rois"].data.clone()
    cl, _ = make_test_net(toy_cfg(CHANNELS_LAST=True))
    got = cl.forward(**inputs)
    assert cl.blobs["rpn_bbox_pred"].data.is_contiguous(memory_format=torch.channels_last)
    assert cl.params["conv1"][0].data.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl.blobs["rois"].data, ref_rois, rtol=1e-4, atol=1e-3)
    for k, v in ref.items():
        torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-5)


def test_channels_last_weights_save_in_caffe_order(tmp_path):
    net, inputs = make_test_net(toy_cfg(CHANNELS_LAST=True))
    net.forward(**inputs)
    path = str(tmp_path / "cl.caffemodel")
    net.save(path)
    back = Net(os.path.join(TOY, "test.prototxt"), path, TEST, cfg=toy_cfg())
    for name in ("conv1", "conv3", "rpn_cls_score"):
        assert torch.equal(back.params[name][0].data, net.params[name][0].data.contiguous())


def test_tf32_follows_the_config_of_a_built_net():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        Net(os.path.join(TOY, "test.prototxt"), None, TEST, cfg=toy_cfg(TF32=True))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        Net(os.path.join(TOY, "test.prototxt"), None, TEST, cfg=toy_cfg())
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        with pytest.raises(ConfigError, match="TF32"):
            set_tf32("on")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_on_a_gpu_autocast_forward_keeps_the_float32_islands(amp):
    net, inputs = make_test_net(toy_cfg(TEST__AMP=amp, GPU_ID=0))
    net.to("cuda")
    out = net.forward(**{k: v.cuda() for k, v in inputs.items()})
    low = torch.bfloat16 if amp == "bf16" else torch.float16
    assert net.blobs["rpn_bbox_pred"].data.dtype == low
    assert net.blobs["rois"].data.dtype == torch.float32 and out["cls_prob"].dtype == torch.float32
    ref_net, _ = make_test_net(toy_cfg(GPU_ID=0))
    ref_net.to("cuda")
    ref_net.forward(**{k: v.cuda() for k, v in inputs.items()})
    assert torch.isfinite(out["cls_prob"]).all() and torch.isfinite(out["bbox_pred"].float()).all()
    # the dense RPN probabilities (no data-dependent selection yet) are float32's to bf16/fp16 rounding
    torch.testing.assert_close(net.blobs["rpn_cls_prob_reshape"].data, ref_net.blobs["rpn_cls_prob_reshape"].data,
                               rtol=0, atol=0.05)


@pytest.mark.cuda
def test_on_a_gpu_tf32_flags_follow_the_config():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for flag in (True, False):
            Net(os.path.join(TOY, "test.prototxt"), None, TEST, cfg=toy_cfg(TF32=flag, GPU_ID=0))
            assert torch.backends.cuda.matmul.allow_tf32 is flag and torch.backends.cudnn.allow_tf32 is flag
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
