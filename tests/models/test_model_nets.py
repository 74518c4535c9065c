"""Every net under models/ built by frcnn.caffe.Net in its phase: parameter shapes against the
original networks, conv5 sizes (reference 5.6), small forwards, weights moving by layer name."""

import gc
import os
import shutil

import pytest
import torch

from frcnn.caffe import TEST, TRAIN, Net
from tests.models.test_models import NETS, ROOT, STAGE1_FROZEN, TRUNK, parts, rpn_conv_name

C3 = (3, 3)


def _conv(out, inp, k=C3, bias=True):
    return [(out, inp, *k), (out,)] if bias else [(out, inp, *k)]


def trunk_params(net: str) -> dict:
    """The original trunks' blob shapes, written out by hand (reference 6.1)."""
    if net == "VGG16":
        chans = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
                 (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
        names = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]
        return {n: _conv(o, i) for n, (o, i) in zip(names, chans)}
    if net == "ZF":
        return {"conv1": _conv(96, 3, (7, 7)), "conv2": _conv(256, 96, (5, 5)), "conv3": _conv(384, 256),
                "conv4": _conv(384, 384), "conv5": _conv(256, 384)}
    if net == "VGG_CNN_M_1024":
        return {"conv1": _conv(96, 3, (7, 7)), "conv2": _conv(256, 96, (5, 5)), "conv3": _conv(512, 256),
                "conv4": _conv(512, 512), "conv5": _conv(512, 512)}
    out = {}
    for i, (o, c) in enumerate([(32, 3), (64, 32), (128, 64), (128, 128), (256, 128)], start=1):
        out.update({f"conv{i}": _conv(o, c, bias=False), f"bn{i}": [(o,), (o,), (1,)], f"scale{i}": [(o,), (o,)]})
    return out


FEAT = {"VGG16": 512, "ZF": 256, "VGG_CNN_M_1024": 512, "SMALL": 256}
RPN = {"VGG16": 512, "ZF": 256, "VGG_CNN_M_1024": 256, "SMALL": 256}
HEAD = {"VGG16": (7, 4096, 4096), "ZF": (6, 4096, 4096), "VGG_CNN_M_1024": (6, 4096, 1024), "SMALL": (6, 512, 512)}


def expected_params(path: str) -> dict:
    ds, net, method, stem = parts(path)
    classes, anchors = (81, 12) if ds == "coco" else (21, 9)
    out = trunk_params(net)
    r = RPN[net]
    if method != "fast_rcnn":
        out.update({rpn_conv_name(net, method): _conv(r, FEAT[net]), "rpn_cls_score": _conv(2 * anchors, r, (1, 1)),
                    "rpn_bbox_pred": _conv(4 * anchors, r, (1, 1))})
    size, f6, f7 = HEAD[net]
    fcs = {"fc6": [(f6, FEAT[net] * size * size), (f6,)], "fc7": [(f7, f6), (f7,)]}
    if stem.endswith("rpn_train"):
        out.update(fcs)
    elif stem != "rpn_test":
        out.update(fcs)
        out.update({"cls_score": [(classes, f7), (classes,)], "bbox_pred": [(4 * classes, f7), (4 * classes,)]})
    return out


def phase_of(path: str) -> str:
    return TRAIN if "train" in os.path.basename(path) else TEST


def check_built(path: str, net: Net) -> None:
    """Blob shapes as the original's; lr_mult and requires_grad as the frozen-layer table.

    A training net's first conv may wait for the first forward to make its blobs when the data
    layer does not declare its top shapes; every other blob must exist after construction."""
    expect = expected_params(path)
    layers = net.layer_dict
    pending = {n for n, layer in layers.items() if layer.blobs_pending()}
    assert pending <= {"conv1", "conv1_1"}
    shapes = {name: [tuple(p.data.shape) for p in blobs] for name, blobs in net.params.items()}
    assert shapes == {n: v for n, v in expect.items() if n not in pending}
    _, name, method, stem = parts(path)
    rpn = [rpn_conv_name(name, method), "rpn_cls_score", "rpn_bbox_pred"]
    frozen = {"train": STAGE1_FROZEN[name], "stage1_rpn_train": STAGE1_FROZEN[name] + ["fc6", "fc7"],
              "stage1_fast_rcnn_train": STAGE1_FROZEN[name] + rpn, "stage2_rpn_train": TRUNK[name] + ["fc6", "fc7"],
              "stage2_fast_rcnn_train": TRUNK[name] + rpn}.get(stem, [])
    for lname, blob_shapes in expect.items():
        layer = layers[lname]
        for i in range(len(blob_shapes)):
            grad = None if lname in pending else layer.blobs[i].requires_grad
            if layer.type_name == "BatchNorm":  # statistics, never learned
                assert grad is False
            elif net.phase == TEST:
                continue
            elif lname in frozen:
                assert layer.spec(i).lr_mult == 0 and grad in (None, False), lname
            else:  # weights 1, biases 2; Scale (SMALL's BatchNorm affine) 1 and 1
                lr = 1.0 if layer.type_name == "Scale" else (1.0, 2.0)[i]
                assert layer.spec(i).lr_mult == lr and grad in (None, True), lname


TEST_NETS = [p for p in NETS if phase_of(p) == TEST]
TRAIN_NETS = [p for p in NETS if phase_of(p) == TRAIN]


@pytest.mark.parametrize("path", TEST_NETS)
def test_test_net_builds(path):
    net = Net(os.path.join(ROOT, path), phase=TEST)
    check_built(path, net)
    assert not any(layer.type_name in ("SoftmaxWithLoss", "SmoothL1Loss") for layer in net.layers)
    del net
    gc.collect()


@pytest.mark.parametrize("path", TRAIN_NETS)
def test_train_net_builds(path):
    pytest.importorskip("frcnn.roi_data.layer", reason="RoIDataLayer (frcnn.roi_data.layer) is not written yet")
    net = Net(os.path.join(ROOT, path), phase=TRAIN)
    check_built(path, net)
    del net
    gc.collect()


def test_vgg16_parameter_counts():
    """VGG16's well-known sizes: conv trunk 14,714,688; fc6 102,764,544; fc7 16,781,312
    (with the 1000-way fc8 the ImageNet net has 138,357,544)."""
    p = expected_params("models/pascal_voc/VGG16/fast_rcnn/test.prototxt")
    count = {n: sum(torch.Size(s).numel() for s in shapes) for n, shapes in p.items()}
    trunk = sum(v for n, v in count.items() if n.startswith("conv"))
    assert (trunk, count["fc6"], count["fc7"]) == (14714688, 102764544, 16781312)
    assert trunk + count["fc6"] + count["fc7"] + 4096 * 1000 + 1000 == 138357544


FEATURE_SIZES = [("VGG16", "relu5_3", (38, 63)), ("ZF", "relu5", (39, 64)),
                 ("VGG_CNN_M_1024", "relu5", (36, 61)), ("SMALL", "relu5", (39, 64))]


@pytest.mark.parametrize("net_name,end,hw", FEATURE_SIZES)
def test_conv5_size_on_600x1000(net_name, end, hw):
    """Reference 5.6: a 600x1000 image gives conv5 38x63 (VGG16), 39x64 (ZF), 36x61 (VGG_CNN_M_1024).
    The big trunks run on the meta device (shapes only, torch's own conv/pool shape rules); the
    small net runs for real."""
    net = Net(os.path.join(ROOT, f"models/pascal_voc/{net_name}/fast_rcnn/test.prototxt"), phase=TEST)
    feature = end.replace("relu", "conv")
    device = "cpu" if net_name == "SMALL" else "meta"
    net.to(device)
    with torch.no_grad():
        out = net.forward(blobs=[feature], end=end, data=torch.zeros(1, 3, 600, 1000, device=device))
    assert tuple(out[feature].shape) == (1, FEAT[net_name]) + hw


@pytest.mark.parametrize("path", [p for p in TEST_NETS if p.endswith("fast_rcnn/test.prototxt")])
def test_fast_rcnn_test_forward(path):
    """Untrained test nets hold zeros (no fillers: weights come from a .caffemodel), so a forward
    gives uniform class probabilities and zero deltas, one row per RoI."""
    classes = 81 if "/coco/" in path else 21
    net = Net(os.path.join(ROOT, path), phase=TEST)
    rois = torch.tensor([[0, 0, 0, 31, 31], [0, 8, 8, 90, 60], [0, 40, 2, 41, 3]], dtype=torch.float32)
    with torch.no_grad():
        out = net.forward(data=torch.randn(1, 3, 64, 96), rois=rois)
    assert sorted(out) == ["bbox_pred", "cls_prob"]
    torch.testing.assert_close(out["cls_prob"], torch.full((3, classes), 1.0 / classes))
    assert torch.equal(out["bbox_pred"], torch.zeros(3, 4 * classes))
    del net
    gc.collect()


def _randomize(net: Net) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for blobs in net.params.values():
            for p in blobs:
                p.data.copy_(torch.rand(p.data.shape, generator=g) * 0.1)


@pytest.mark.parametrize("stem", ["faster_rcnn_end2end/test", "faster_rcnn_alt_opt/faster_rcnn_test",
                                  "faster_rcnn_alt_opt/rpn_test"])
def test_small_rpn_test_nets_run(stem):
    """The SMALL RPN test nets run end to end on a small image (proposal layer included)."""
    net = Net(os.path.join(ROOT, f"models/pascal_voc/SMALL/{stem}.prototxt"), phase=TEST)
    _randomize(net)
    with torch.no_grad():
        out = net.forward(data=torch.randn(1, 3, 128, 160), im_info=torch.tensor([[128.0, 160.0, 1.0]]))
    rois = net.blobs["rois"].data
    assert rois.dim() == 2 and rois.shape[1] == 5 and 0 < rois.shape[0] <= 300
    assert bool((rois[:, 0] == 0).all()) and float(rois[:, 3].max()) <= 159 and float(rois[:, 4].max()) <= 127
    if stem.endswith("rpn_test"):
        assert tuple(out["scores"].shape) == (rois.shape[0], 1)
    else:
        assert tuple(out["cls_prob"].shape) == (rois.shape[0], 21)
        torch.testing.assert_close(out["cls_prob"].sum(1), torch.ones(rois.shape[0]))


def test_weights_move_by_layer_name(tmp_path):
    """An alt-opt detector's weights load into the other test nets by name; the end2end net does
    not find the alt-opt RPN conv (rpn_conv1 vs rpn_conv/3x3, py-faster-rcnn #256)."""
    alt = Net(os.path.join(ROOT, "models/pascal_voc/SMALL/faster_rcnn_alt_opt/faster_rcnn_test.prototxt"))
    _randomize(alt)
    path = str(tmp_path / "small.caffemodel")
    alt.save(path)
    rpn = Net(os.path.join(ROOT, "models/pascal_voc/SMALL/faster_rcnn_alt_opt/rpn_test.prototxt"))
    assert set(rpn.copy_from(path)) >= set(rpn.params)
    e2e = Net(os.path.join(ROOT, "models/pascal_voc/SMALL/faster_rcnn_end2end/test.prototxt"))
    assert set(e2e.copy_from(path)) & set(e2e.params) == set(e2e.params) - {"rpn_conv/3x3"}
    assert torch.equal(e2e.params["rpn_cls_score"][0].data, alt.params["rpn_cls_score"][0].data)
    assert torch.equal(e2e.params["fc6"][0].data, alt.params["fc6"][0].data)


def test_upstream_pt_suffix_loads(tmp_path):
    """Upstream names its alt-opt nets .pt: the same text under that name builds."""
    src = os.path.join(ROOT, "models/pascal_voc/SMALL/faster_rcnn_alt_opt/rpn_test.prototxt")
    dst = str(tmp_path / "rpn_test.pt")
    shutil.copy(src, dst)
    assert sorted(Net(dst).params) == sorted(Net(src).params)
