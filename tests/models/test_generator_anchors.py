"""tools/dev/make_model_prototxts.py --anchor_scales / --anchor_ratios: nets for other anchors (Table 8)."""

import os
import subprocess
import sys

from frcnn.caffe import TEST, TRAIN, Net
from frcnn.caffe.prototxt import parse_file
from frcnn.caffe.python_layer import parse_param_str

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "tools", "dev", "make_model_prototxts.py")


def generate(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], check=False, capture_output=True, text=True, cwd=ROOT)


def test_other_anchors_are_written_only_under_out(tmp_path):
    folder = "models/pascal_voc/SMALL/faster_rcnn_alt_opt"
    r = generate("--anchor_scales", "8,16", "--anchor_ratios", "1", "--only", folder, "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / folder
    assert sorted(os.listdir(out)) == sorted(os.listdir(os.path.join(ROOT, folder)))
    for f in sorted(os.listdir(out)):
        msg = parse_file(str(out / f))
        by = {lp.get("name"): lp for lp in msg.get_msgs("layer")}
        if not by:  # a solver: its net by absolute path, under --out
            assert msg.get_str("train_net") == str(out / msg.get_str("train_net").split("/")[-1])
            continue
        assert by["rpn_cls_score"].get_msg("convolution_param").get_int("num_output") == 4, f
        assert by["rpn_bbox_pred"].get_msg("convolution_param").get_int("num_output") == 8, f
        if "rpn_cls_prob_reshape" in by:
            assert by["rpn_cls_prob_reshape"].get_msg("reshape_param").get_msg("shape").get_ints("dim")[1] == 4
        for lp in by.values():
            if lp.get_msg("python_param").get("module") in ("rpn.anchor_target_layer", "rpn.proposal_layer"):
                p = parse_param_str(lp.get_msg("python_param").get("param_str"))
                assert p == {"feat_stride": 16, "scales": [8, 16], "ratios": [1]}
    net = Net(str(out / "rpn_test.prototxt"), phase=TEST)
    assert net.layer_dict["proposal"].impl.num_anchors == 2
    Net(str(out / "stage1_rpn_train.prototxt"), phase=TRAIN)
    assert generate("--check").returncode == 0  # the shipped files are untouched


def test_anchor_flags_need_out_and_numbers():
    r = generate("--anchor_scales", "8")
    assert r.returncode == 2 and "give --out DIR" in r.stderr
    r = generate("--anchor_ratios", "1,x", "--out", "/tmp/unused")
    assert r.returncode == 2 and "expected comma-separated numbers" in r.stderr
    r = generate("--anchor_scales", "8", "--out", "/tmp/unused", "--only", "models/nowhere")
    assert r.returncode == 2 and "no file this script writes" in r.stderr
