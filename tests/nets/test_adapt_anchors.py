"""frcnn.nets.adapt for anchors (ANCHOR_SCALES / ANCHOR_RATIOS) and the RPN box-loss weight."""

import os

import pytest

from frcnn.caffe import TEST, TRAIN, Net
from frcnn.caffe.prototxt import parse_file
from frcnn.caffe.python_layer import parse_param_str
from frcnn.config import ConfigError, cfg_from_file, cfg_from_list, get_default_config
from frcnn.nets import adapt as am

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMALL = os.path.join(ROOT, "models", "pascal_voc", "SMALL")
TOY_ALT = os.path.join(ROOT, "models", "toy", "SMALL", "faster_rcnn_alt_opt")


def layers(msg):
    return {lp.get("name"): lp for lp in msg.get_msgs("layer")}


def rpn_shape(msg):
    """(rpn_cls_score outputs, rpn_bbox_pred outputs, rpn_cls_prob_reshape channels or None, anchor param_strs)."""
    by = layers(msg)
    conv = [by[n].get_msg("convolution_param").get_int("num_output") for n in ("rpn_cls_score", "rpn_bbox_pred")]
    reshape = by.get("rpn_cls_prob_reshape")
    ch = reshape.get_msg("reshape_param").get_msg("shape").get_ints("dim")[1] if reshape is not None else None
    strs = [parse_param_str(lp.get_msg("python_param").get("param_str")) for lp in am.anchor_layers(msg)]
    return conv[0], conv[1], ch, strs


def cfg_with(*pairs):
    cfg = get_default_config()
    cfg_from_list(list(pairs), cfg)
    return cfg


def test_adapt_net_rewrites_channels_reshape_and_param_str():
    msg = parse_file(os.path.join(SMALL, "faster_rcnn_end2end", "train.prototxt"))
    out = am.adapt_net(msg, None, scales=(8,), ratios=(1,))
    cls_n, box_n, ch, strs = rpn_shape(out)
    assert (cls_n, box_n, ch) == (2, 4, 2)
    assert strs == [{"feat_stride": 16, "scales": [8], "ratios": [1]}] * 2
    assert am.net_num_classes(out) == 21 and rpn_shape(msg)[:3] == (18, 36, 18)  # the original is untouched
    # a key left None keeps the net's own value (its param_str, else upstream's)
    out = am.adapt_net(msg, None, scales=(4, 8, 16, 32))
    assert rpn_shape(out)[:3] == (24, 48, 24) and rpn_shape(out)[3][0]["ratios"] == [0.5, 1, 2]


def test_ensure_net_from_a_config_and_the_built_net_matches(tmp_path):
    src = os.path.join(SMALL, "faster_rcnn_end2end", "test.prototxt")
    cfg = cfg_with("ANCHOR_SCALES", "[8, 16]", "ANCHOR_RATIOS", "[1]")
    dst = am.ensure_net_classes(src, 21, str(tmp_path), cfg=cfg)
    assert dst != src and rpn_shape(parse_file(dst))[:3] == (4, 8, 4)
    net = Net(dst, phase=TEST, cfg=cfg)
    assert net.params["rpn_cls_score"][0].shape[0] == 4
    assert net.layer_dict["proposal"].impl.num_anchors == 2
    # the prototxt alone (no --set at test time) says the same anchors
    assert Net(dst, phase=TEST).layer_dict["proposal"].impl.num_anchors == 2
    # the shipped anchors: nothing to do
    assert am.ensure_net_classes(src, 21, str(tmp_path / "x"), cfg=cfg_with("ANCHOR_SCALES", "[8, 16, 32]")) == src
    assert am.ensure_net_classes(src, 21, str(tmp_path / "x"), cfg=get_default_config()) == src
    assert not (tmp_path / "x").exists()


def test_alt_opt_folder_gets_one_anchor_setting_for_every_net(tmp_path):
    # the toy folder says scales [2, 4, 8, 16] in its RPN nets; only the ratios are set
    cfg = cfg_with("ANCHOR_RATIOS", "[1]")
    dst = am.adapt_model_dir(TOY_ALT, 6, str(tmp_path / "toy"), ROOT, cfg=cfg)
    assert dst != TOY_ALT
    for f in sorted(os.listdir(dst)):
        msg = parse_file(os.path.join(dst, f))
        if not msg.get_msgs("layer"):
            assert parse_file(os.path.join(dst, f)).get_str("train_net").startswith(dst)
            continue
        cls_n, box_n, ch, strs = rpn_shape(msg)
        assert (cls_n, box_n) == (8, 16), f  # also the Fast R-CNN nets' frozen RPN
        assert ch in (None, 8) and all(p["scales"] == [2, 4, 8, 16] and p["ratios"] == [1] for p in strs), f
    # the stage-1 RPN's weights fit the stage-1 Fast R-CNN net (the hand-over)
    rpn = Net(os.path.join(dst, "stage1_rpn_train.prototxt"), phase=TRAIN, cfg=cfg)
    frcn = Net(os.path.join(dst, "stage1_fast_rcnn_train.prototxt"), phase=TRAIN, cfg=cfg)
    assert rpn.params["rpn_bbox_pred"][0].shape == frcn.params["rpn_bbox_pred"][0].shape
    # nothing set: the shipped folder
    assert am.adapt_model_dir(TOY_ALT, 6, str(tmp_path / "same"), ROOT, cfg=get_default_config()) == TOY_ALT


def test_rpn_loss_bbox_weight_is_written_into_the_loss_layer(tmp_path):
    solver = os.path.join(SMALL, "faster_rcnn_end2end", "solver.prototxt")
    cfg = cfg_with("TRAIN.RPN_LOSS_BBOX_WEIGHT", "0.1")
    new = am.ensure_solver_classes(solver, 21, str(tmp_path), ROOT, cfg=cfg)
    net = layers(parse_file(parse_file(new).get_str("train_net")))
    assert net["rpn_loss_bbox"].get_floats("loss_weight") == [0.1]
    assert net["loss_bbox"].get_floats("loss_weight") == [1.0]  # the detector's is not the RPN's
    alt = am.adapt_model_dir(os.path.join(SMALL, "faster_rcnn_alt_opt"), 21, str(tmp_path / "alt"), ROOT, cfg=cfg)
    for stage in (1, 2):
        rpn = layers(parse_file(os.path.join(alt, f"stage{stage}_rpn_train.prototxt")))
        assert rpn["rpn_loss_bbox"].get_floats("loss_weight") == [0.1]


def test_config_keys_and_their_checks(tmp_path):
    cfg = cfg_with("ANCHOR_SCALES", "[8]", "ANCHOR_RATIOS", "[0.5,1,2]", "TRAIN.RPN_LOSS_BBOX_WEIGHT", "10")
    assert cfg.ANCHOR_SCALES == (8,) and cfg.ANCHOR_RATIOS == (0.5, 1, 2) and cfg.TRAIN.RPN_LOSS_BBOX_WEIGHT == 10.0
    cfg_from_list(["ANCHOR_SCALES", "None", "ANCHOR_RATIOS", "2"], cfg)  # back to the net's; a bare number
    assert cfg.ANCHOR_SCALES is None and cfg.ANCHOR_RATIOS == (2,)
    yml = tmp_path / "a.yml"
    yml.write_text("ANCHOR_SCALES: [4, 8, 16, 32]\nTEST:\n  RPN_ABLATION: no_reg\n")
    cfg_from_file(str(yml), cfg)
    assert cfg.ANCHOR_SCALES == (4, 8, 16, 32) and cfg.TEST.RPN_ABLATION == "no_reg"
    for pair, msg in ((["ANCHOR_SCALES", "[]"], "non-empty list of numbers > 0"),
                      (["ANCHOR_RATIOS", "[1, -2]"], "ANCHOR_RATIOS"), (["ANCHOR_SCALES", "big"], "ANCHOR_SCALES"),
                      (["TRAIN.RPN_LOSS_BBOX_WEIGHT", "-1"], "a number >= 0"),
                      (["TEST.RPN_ABLATION", "none2"], "expected one of none")):
        with pytest.raises(ConfigError, match=msg):
            cfg_from_list(pair, get_default_config())
    assert get_default_config().TRAIN.RPN_STAGE_IMS_PER_BATCH == 1
