"""Adapted prototxt copies for datasets whose class count differs from the shipped nets'."""

import os

import pytest

from frcnn.caffe.prototxt import parse_file
from frcnn.nets import adapt as am

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMALL = os.path.join(ROOT, "models", "pascal_voc", "SMALL")


def _layer(msg, name):
    return next(lp for lp in msg.get_msgs("layer") if lp.get("name") == name)


def test_adapt_net_changes_exactly_the_class_dependent_fields():
    msg = parse_file(os.path.join(SMALL, "faster_rcnn_end2end", "train.prototxt"))
    assert am.net_num_classes(msg) == 21
    out = am.adapt_net(msg, 4)
    assert am.net_num_classes(out) == 4
    assert _layer(out, "cls_score").get_msg("inner_product_param").get_int("num_output") == 4
    assert _layer(out, "bbox_pred").get_msg("inner_product_param").get_int("num_output") == 16
    strs = [lp.get_msg("python_param").get("param_str") for lp in out.get_msgs("layer") if "python_param" in lp]
    assert "'num_classes': 4" in strs and "'feat_stride': 16" in strs
    assert all("21" not in s for s in strs)
    # everything else is untouched, and the original message too
    assert len(out.get_msgs("layer")) == len(msg.get_msgs("layer"))
    assert _layer(msg, "cls_score").get_msg("inner_product_param").get_int("num_output") == 21
    assert _layer(out, "conv1") == _layer(msg, "conv1")


def test_adapted_net_builds_with_the_new_shapes(tmp_path):
    from frcnn.caffe import TEST, Net

    src = os.path.join(SMALL, "faster_rcnn_end2end", "test.prototxt")
    dst = am.ensure_net_classes(src, 3, str(tmp_path))
    assert dst == str(tmp_path / "test.prototxt")
    net = Net(dst, phase=TEST)
    assert net.params["cls_score"][0].shape[0] == 3 and net.params["bbox_pred"][0].shape[0] == 12
    # same K: the shipped file itself, nothing written
    assert am.ensure_net_classes(src, 21, str(tmp_path / "x")) == src
    assert not (tmp_path / "x").exists()


def test_solver_copy_points_at_the_adapted_net(tmp_path):
    solver = os.path.join(SMALL, "faster_rcnn_end2end", "solver.prototxt")
    assert am.ensure_solver_classes(solver, 21, str(tmp_path), ROOT) == solver
    new = am.ensure_solver_classes(solver, 5, str(tmp_path), ROOT, overrides={"base_lr": 0.02})
    msg = parse_file(new)
    net_path = msg.get_str("train_net")
    assert os.path.isabs(net_path) and net_path == str(tmp_path / "train.prototxt")
    assert am.net_num_classes(parse_file(net_path)) == 5
    assert msg.get_float("base_lr") == 0.02
    assert msg.get_str("snapshot_prefix") == parse_file(solver).get_str("snapshot_prefix")


def test_adapt_model_dir_for_alt_opt(tmp_path):
    src = os.path.join(SMALL, "faster_rcnn_alt_opt")
    assert am.adapt_model_dir(src, 21, str(tmp_path / "same"), ROOT) == src
    dst = am.adapt_model_dir(src, 2, str(tmp_path / "two"), ROOT)
    assert sorted(os.listdir(dst)) == sorted(os.listdir(src))
    solver = parse_file(os.path.join(dst, "stage1_fast_rcnn_solver30k40k.prototxt"))
    assert solver.get_str("train_net") == os.path.join(dst, "stage1_fast_rcnn_train.prototxt")
    assert am.net_num_classes(parse_file(os.path.join(dst, "faster_rcnn_test.prototxt"))) == 2


def test_errors_name_the_problem(tmp_path):
    msg = parse_file(os.path.join(SMALL, "faster_rcnn_end2end", "train.prototxt"))
    with pytest.raises(ValueError, match="num_classes"):
        am.adapt_net(msg, 1)
    bad = tmp_path / "solver.prototxt"
    bad.write_text('train_net: "nowhere/train.prototxt"\n')
    with pytest.raises(FileNotFoundError, match="nowhere/train.prototxt"):
        am.ensure_solver_classes(str(bad), 3, str(tmp_path), ROOT)
