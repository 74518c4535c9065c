"""experiments/cfgs/coco_paper.yml's ANCHOR_SCALES [4, 8, 16, 32] agree with the shipped COCO nets
(12 anchors): adapt leaves them as they are and every end2end and alt-opt net builds with the
config, its anchor layers placing the 12 anchors; a VOC net with the config becomes a 12-anchor one."""

import gc
import os

import pytest

from frcnn.caffe import TEST, TRAIN, Net
from frcnn.caffe.prototxt import parse_file
from frcnn.config import cfg_from_file, get_default_config
from frcnn.nets import adapt as am

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CFGS = os.path.join(ROOT, "experiments", "cfgs")


def paper_config(method):
    cfg = get_default_config()
    for f in (f"{method}.yml", "coco_paper.yml"):
        cfg_from_file(os.path.join(CFGS, f), cfg)
    return cfg


def net_files(net, method):
    folder = os.path.join(ROOT, "models", "coco", net, method)
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if "solver" not in f]


def test_the_config_asks_for_the_papers_coco_anchors():
    for method in ("faster_rcnn_end2end", "faster_rcnn_alt_opt"):
        cfg = paper_config(method)
        assert cfg.ANCHOR_SCALES == (4, 8, 16, 32) and cfg.ANCHOR_RATIOS is None  # ratios: the nets' 0.5, 1, 2


@pytest.mark.parametrize("net", ["VGG16", "VGG_CNN_M_1024"])
@pytest.mark.parametrize("method", ["faster_rcnn_end2end", "faster_rcnn_alt_opt"])
def test_coco_nets_need_no_adapting_and_build_with_the_config(net, method, tmp_path):
    cfg = paper_config(method)
    folder = os.path.join(ROOT, "models", "coco", net, method)
    if method == "faster_rcnn_alt_opt":  # the alt-opt driver's call
        assert am.adapt_model_dir(folder, 81, str(tmp_path / "adapted"), ROOT, cfg=cfg) == folder
    built = 0
    for path in net_files(net, method):
        msg = parse_file(path)
        assert am.adapt_for(msg, am.NetSettings.from_config(cfg, 81)) == (msg, []), path
        assert am.ensure_net_classes(path, 81, str(tmp_path / "e"), cfg=cfg) == path  # the tools' call
        if not am.anchor_layers(msg):
            continue  # the alt-opt Fast R-CNN train nets carry no anchor layer
        assert am.net_anchors(msg) == ((4, 8, 16, 32), (0.5, 1, 2)) and am.rpn_anchor_count(msg) == 12
        phase = TEST if os.path.basename(path).endswith("test.prototxt") else TRAIN
        n = Net(path, None, phase, cfg=cfg)  # an anchor / channel mismatch would raise here
        anchor_impls = [lay.impl for lay in n.layers if hasattr(getattr(lay, "impl", None), "num_anchors")]
        assert anchor_impls and all(a.num_anchors == 12 and a.scales == (4, 8, 16, 32) for a in anchor_impls)
        assert n.params["rpn_cls_score"][0].shape[0] == 24 and n.params["rpn_bbox_pred"][0].shape[0] == 48
        built += 1
        del n
        gc.collect()
    assert built >= (2 if method == "faster_rcnn_end2end" else 4)


def test_a_voc_net_with_the_config_gets_the_twelve_anchors(tmp_path):
    src = os.path.join(ROOT, "models", "pascal_voc", "SMALL", "faster_rcnn_end2end", "test.prototxt")
    cfg = paper_config("faster_rcnn_end2end")
    dst = am.ensure_net_classes(src, 81, str(tmp_path), cfg=cfg)
    assert dst != src
    msg = parse_file(dst)
    assert am.rpn_anchor_count(msg) == 12 and am.net_anchors(msg) == ((4, 8, 16, 32), (0.5, 1, 2))
    assert Net(dst, None, TEST, cfg=cfg).layer_dict["proposal"].impl.num_anchors == 12
