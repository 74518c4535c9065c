"""Every prototxt under models/: the file set, parsing, and the original's names and settings.

The expectations are written out here from the reference (sections 1.5, 4.3, 4.7-4.9, 6), not
taken from tools/dev/make_model_prototxts.py, so a wrong generator cannot agree with itself.
"""

import os
import subprocess
import sys

import pytest

from frcnn.caffe.prototxt import parse_file
from frcnn.caffe.python_layer import parse_param_str

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ALT_OPT = ["stage1_rpn_train", "stage1_rpn_solver60k80k", "stage1_fast_rcnn_train", "stage1_fast_rcnn_solver30k40k",
           "stage2_rpn_train", "stage2_rpn_solver60k80k", "stage2_fast_rcnn_train",
           "stage2_fast_rcnn_solver30k40k", "rpn_test", "faster_rcnn_test"]
SIMPLE = ["solver", "train", "test"]
FOLDERS = [("pascal_voc", n, m) for n in ("ZF", "VGG16", "VGG_CNN_M_1024", "SMALL")
           for m in ("faster_rcnn_alt_opt", "faster_rcnn_end2end", "fast_rcnn")]
FOLDERS += [("coco", n, m) for n in ("VGG16", "VGG_CNN_M_1024")
            for m in ("faster_rcnn_alt_opt", "faster_rcnn_end2end", "fast_rcnn")]  # alt-opt: ours, the paper's
EXPECTED = sorted(f"models/{d}/{n}/{m}/{s}.prototxt" for d, n, m in FOLDERS
                  for s in (ALT_OPT if m == "faster_rcnn_alt_opt" else SIMPLE))
NETS = [p for p in EXPECTED if "solver" not in os.path.basename(p)]
SOLVERS = [p for p in EXPECTED if "solver" in os.path.basename(p)]

VGG16_CONVS = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]
TRUNK = {"VGG16": VGG16_CONVS, "ZF": [f"conv{i}" for i in range(1, 6)],
         "VGG_CNN_M_1024": [f"conv{i}" for i in range(1, 6)],
         "SMALL": [f"conv{i}" for i in range(1, 6)] + [f"scale{i}" for i in range(1, 6)]}
STAGE1_FROZEN = {"VGG16": VGG16_CONVS[:4], "ZF": [], "VGG_CNN_M_1024": ["conv1"], "SMALL": []}
FC = {"VGG16": (4096, 4096), "ZF": (4096, 4096), "VGG_CNN_M_1024": (4096, 1024), "SMALL": (512, 512)}
ROI = {"VGG16": ("roi_pool5", "conv5_3", 7), "ZF": ("roi_pool_conv5", "conv5", 6),
       "VGG_CNN_M_1024": ("roi_pool5", "conv5", 6), "SMALL": ("roi_pool_conv5", "conv5", 6)}
NAME = {"VGG16": "VGG_ILSVRC_16_layers", "ZF": "ZF", "VGG_CNN_M_1024": "VGG_CNN_M_1024", "SMALL": "SMALL"}


def parts(path: str) -> tuple[str, str, str, str]:
    _, ds, net, method, fname = path.split("/")
    return ds, net, method, fname[: -len(".prototxt")]


def layers(msg) -> dict:
    return {lp.get_str("name"): lp for lp in msg.get_msgs("layer")}


def rpn_conv_name(net: str, method: str) -> str:
    return "rpn_conv1" if net in ("ZF", "SMALL") and method == "faster_rcnn_alt_opt" else "rpn_conv/3x3"


def test_file_set_is_the_originals():
    found = sorted(os.path.relpath(os.path.join(d, f), ROOT).replace(os.sep, "/")
                   for d, _, files in os.walk(os.path.join(ROOT, "models")) for f in files if f.endswith(".prototxt"))
    bccd = [f"models/bccd/SMALL/faster_rcnn_end2end/{s}.prototxt" for s in SIMPLE]  # tests/models/test_bccd_models.py
    toy = [f"models/toy/SMALL/faster_rcnn_end2end/{s}.prototxt" for s in SIMPLE]
    toy += [f"models/toy/SMALL/faster_rcnn_alt_opt/{s}.prototxt" for s in ALT_OPT]
    assert found == sorted(EXPECTED + bccd + toy)
    assert len(EXPECTED) == 96


def test_files_equal_generator_output():
    script = os.path.join(ROOT, "tools", "dev", "make_model_prototxts.py")
    r = subprocess.run([sys.executable, script, "--check"], check=False, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", NETS)
def test_net_layers(path):
    """Names, shapes, classes/anchors, RoI pooling and dropout as the original's."""
    ds, net, method, stem = parts(path)
    msg = parse_file(os.path.join(ROOT, path))
    assert msg.get_str("name") == NAME[net]
    ls = layers(msg)
    assert len(ls) == len(msg.get_msgs("layer")), "duplicate layer names"
    classes, anchors = (81, 12) if ds == "coco" else (21, 9)

    def num_output(name):
        lp = ls[name]
        return lp.get_msg("convolution_param" if lp.get_str("type") == "Convolution"
                          else "inner_product_param").get_int("num_output")

    rpn_conv = rpn_conv_name(net, method)
    if method != "fast_rcnn":  # every alt-opt and end2end net has the RPN layers
        other = "rpn_conv/3x3" if rpn_conv == "rpn_conv1" else "rpn_conv1"
        assert other not in ls
        assert num_output(rpn_conv) == (512 if net == "VGG16" else 256)
        assert num_output("rpn_cls_score") == 2 * anchors and num_output("rpn_bbox_pred") == 4 * anchors
        top = ls[rpn_conv].get_strs("top")
        assert top == (["rpn_conv1"] if rpn_conv == "rpn_conv1" else ["rpn/output"])
        assert ls["rpn_cls_score"].get_strs("bottom") == top
    if "rpn_cls_score_reshape" in ls:
        dims = ls["rpn_cls_score_reshape"].get_msg("reshape_param").get_msg("shape").get_ints("dim")
        assert dims == [0, 2, -1, 0]
    if "rpn_cls_prob_reshape" in ls:
        dims = ls["rpn_cls_prob_reshape"].get_msg("reshape_param").get_msg("shape").get_ints("dim")
        assert dims == [0, 2 * anchors, -1, 0]
    has_head = "fast_rcnn" in stem or stem in ("train", "test", "faster_rcnn_test")
    if has_head:
        roi_name, feature, size = ROI[net]
        rp = ls[roi_name].get_msg("roi_pooling_param")
        assert ls[roi_name].get_strs("bottom") == [feature, "rois"]
        assert (rp.get_int("pooled_w"), rp.get_int("pooled_h"), rp.get_float("spatial_scale")) == (size, size, 0.0625)
        assert (num_output("fc6"), num_output("fc7")) == FC[net]
        assert num_output("cls_score") == classes and num_output("bbox_pred") == 4 * classes
        drops = [lp for lp in ls.values() if lp.get_str("type") == "Dropout"]
        for lp in drops:
            dp = lp.get_msg("dropout_param")
            assert dp.get_float("dropout_ratio") == 0.5
            assert dp.get_bool("scale_train", True) == (net != "ZF")
        expect_drop = not (net == "VGG16" and stem == "faster_rcnn_test") and net != "SMALL"  # SMALL: none
        assert sorted(lp.get_str("name") for lp in drops) == (["drop6", "drop7"] if expect_drop else [])
    if stem.endswith("rpn_train"):  # frozen fc6/fc7 fed by noise of the RoI pooling output's size
        pooled = {"VGG16": 512 * 49, "ZF": 256 * 36, "VGG_CNN_M_1024": 512 * 36, "SMALL": 256 * 36}[net]
        shape = ls["dummy_roi_pool_conv5"].get_msg("dummy_data_param").get_msg("shape").get_ints("dim")
        assert shape == [1, pooled] and ls["fc6"].get_strs("bottom") == ["dummy_roi_pool_conv5"]
        assert (num_output("fc6"), num_output("fc7")) == FC[net]
        assert ls["silence_fc7"].get_strs("bottom") == ["fc7"]
    if "test" in stem:
        second = "rois" if method == "fast_rcnn" else "im_info"
        assert msg.get_strs("input") == ["data", second]
        assert [s.get_ints("dim") for s in msg.get_msgs("input_shape")] == [
            [1, 3, 224, 224], [1, 5] if second == "rois" else [1, 3]]
        if stem != "rpn_test":
            assert ls["cls_prob"].get_str("type") == "Softmax" and ls["cls_prob"].get_strs("bottom") == ["cls_score"]


def frozen_layers(msg) -> set:
    """Learned layers whose every param block has lr_mult 0 (BatchNorm holds statistics: skipped)."""
    out = set()
    for lp in msg.get_msgs("layer"):
        specs = lp.get_msgs("param")
        if lp.get_str("type") == "BatchNorm" or not specs:
            continue
        lrs = [s.get_float("lr_mult", 1.0) for s in specs]
        if all(lr == 0 for lr in lrs):
            assert all(s.get_float("decay_mult", 1.0) == 0 for s in specs), lp.get_str("name")
            out.add(lp.get_str("name"))
        else:
            assert 0 not in lrs, f"{lp.get_str('name')}: partly frozen"
    return out


@pytest.mark.parametrize("path", NETS)
def test_frozen_layers(path):
    """The frozen-layer table of the reference (section 6.4), per file."""
    _, net, method, stem = parts(path)
    msg = parse_file(os.path.join(ROOT, path))
    rpn = {rpn_conv_name(net, method), "rpn_cls_score", "rpn_bbox_pred"}
    expect = {
        "train": set(STAGE1_FROZEN[net]), "test": set(), "rpn_test": set(), "faster_rcnn_test": set(),
        "stage1_rpn_train": set(STAGE1_FROZEN[net]) | {"fc6", "fc7"},
        "stage1_fast_rcnn_train": set(STAGE1_FROZEN[net]) | rpn,
        "stage2_rpn_train": set(TRUNK[net]) | {"fc6", "fc7"},
        "stage2_fast_rcnn_train": set(TRUNK[net]) | rpn,
    }[stem]
    assert frozen_layers(msg) == expect
    for lp in msg.get_msgs("layer"):
        specs = lp.get_msgs("param")
        kind = lp.get_str("type")
        if "test" in stem:
            assert not specs, f"{lp.get_str('name')}: test nets carry no learning settings"
        elif kind in ("Convolution", "InnerProduct") and lp.get_str("name") not in expect:
            lrs = [s.get_float("lr_mult") for s in specs]
            assert lrs == ([1.0] if net == "SMALL" and lp.get_str("name") in TRUNK[net] else [1.0, 2.0])
            assert all("decay_mult" not in s for s in specs)  # biases are weight-decayed too
        if kind == "BatchNorm":
            use_global = lp.get_msg("batch_norm_param").get_bool("use_global_stats")
            assert use_global is False  # per-image statistics in every phase (_prototxt_parts.trunk)
            assert all(s.get_float("lr_mult") == 0 for s in specs) and len(specs) in (0, 3)


@pytest.mark.parametrize("path", NETS)
def test_python_layers(path):
    """Upstream's module/layer names, tops and param_str (sections 4.3, 4.7-4.9)."""
    ds, _, method, stem = parts(path)
    ls = layers(parse_file(os.path.join(ROOT, path)))
    classes = 81 if ds == "coco" else 21
    rpn_params = {"feat_stride": 16} if ds == "pascal_voc" else {"feat_stride": 16, "scales": [4, 8, 16, 32]}
    frcn_tops = ["data", "rois", "labels", "bbox_targets", "bbox_inside_weights", "bbox_outside_weights"]
    spec = {
        "input-data": ("roi_data_layer.layer", "RoIDataLayer", {"num_classes": classes},
                       [], ["data", "im_info", "gt_boxes"]),
        "data": ("roi_data_layer.layer", "RoIDataLayer", {"num_classes": classes}, [], frcn_tops),
        "rpn-data": ("rpn.anchor_target_layer", "AnchorTargetLayer", rpn_params,
                     ["rpn_cls_score", "gt_boxes", "im_info", "data"],
                     ["rpn_labels", "rpn_bbox_targets", "rpn_bbox_inside_weights", "rpn_bbox_outside_weights"]),
        "proposal": ("rpn.proposal_layer", "ProposalLayer", rpn_params,
                     ["rpn_cls_prob_reshape", "rpn_bbox_pred", "im_info"],
                     {"train": ["rpn_rois"], "rpn_test": ["rois", "scores"]}.get(stem, ["rois"])),
        "roi-data": ("rpn.proposal_target_layer", "ProposalTargetLayer", {"num_classes": classes},
                     ["rpn_rois", "gt_boxes"], frcn_tops[1:]),
    }
    expect = {"train": ["input-data", "rpn-data", "proposal", "roi-data"] if method == "faster_rcnn_end2end"
              else ["data"],
              "test": ["proposal"] if method == "faster_rcnn_end2end" else [],
              "rpn_test": ["proposal"], "faster_rcnn_test": ["proposal"],
              "stage1_rpn_train": ["input-data", "rpn-data"], "stage2_rpn_train": ["input-data", "rpn-data"],
              "stage1_fast_rcnn_train": ["data"], "stage2_fast_rcnn_train": ["data"]}[stem]
    python = [n for n, lp in ls.items() if lp.get_str("type") == "Python"]
    assert python == expect
    for name in python:
        module, cls, params, bottoms, tops = spec[name]
        pp = ls[name].get_msg("python_param")
        assert (pp.get_str("module"), pp.get_str("layer")) == (module, cls)
        assert parse_param_str(pp.get_str("param_str")) == params
        assert ls[name].get_strs("bottom") == bottoms and ls[name].get_strs("top") == tops


def test_python_param_str_text():
    """The param_str text itself, as upstream writes it for VOC nets."""
    ls = layers(parse_file(os.path.join(ROOT, "models/pascal_voc/VGG16/faster_rcnn_end2end/train.prototxt")))
    assert ls["input-data"].get_msg("python_param").get_str("param_str") == "'num_classes': 21"
    assert ls["rpn-data"].get_msg("python_param").get_str("param_str") == "'feat_stride': 16"


SOLVER_TABLE = {  # (stepsize, iter_size, snapshot_prefix stem) per net/method/solver, reference 1.5
    "stage1_rpn_solver60k80k": (60000, 1, "{}_rpn"), "stage2_rpn_solver60k80k": (60000, 1, "{}_rpn"),
    "stage1_fast_rcnn_solver30k40k": (30000, 1, "{}_fast_rcnn"),
    "stage2_fast_rcnn_solver30k40k": (30000, 1, "{}_fast_rcnn"),
}
PREFIX = {"VGG16": "vgg16", "ZF": "zf", "VGG_CNN_M_1024": "vgg_cnn_m_1024", "SMALL": "small"}
SMALL_STEPS = {"stage1_rpn_solver60k80k": 1500, "stage2_rpn_solver60k80k": 1500, "stage1_fast_rcnn_solver30k40k": 1000,
               "stage2_fast_rcnn_solver30k40k": 1000, "faster_rcnn_end2end": 2000, "fast_rcnn": 2000}


@pytest.mark.parametrize("path", SOLVERS)
def test_solver(path):
    ds, net, method, stem = parts(path)
    s = parse_file(os.path.join(ROOT, path))
    if stem in SOLVER_TABLE:
        step, iter_size, prefix = SOLVER_TABLE[stem]
        if ds == "coco":  # the paper's COCO schedule (Sec. 4.2): 240k iterations, then 80k at lr / 10
            step = 240000
        train = stem.replace("_solver60k80k", "_train").replace("_solver30k40k", "_train")
    elif method == "faster_rcnn_end2end":
        step = 350000 if ds == "coco" else 50000
        iter_size, prefix, train = (2 if net in ("VGG16", "ZF") else 1), "{}_faster_rcnn", "train"
    else:
        step, iter_size, prefix, train = (200000 if ds == "coco" else 30000), 1, "{}_fast_rcnn", "train"
    if net == "SMALL":
        step = SMALL_STEPS.get(stem, SMALL_STEPS.get(method))
    assert s.get_str("train_net") == f"models/{ds}/{net}/{method}/{train}.prototxt"
    assert os.path.exists(os.path.join(ROOT, s.get_str("train_net")))
    assert s.get_int("stepsize") == step and s.get_int("iter_size", 1) == iter_size
    assert s.get_str("snapshot_prefix") == prefix.format(PREFIX[net])
    assert s.get_float("base_lr") == (0.01 if net == "SMALL" else 0.001)
    assert s.get_str("lr_policy") == "step" and s.get_float("gamma") == 0.1
    assert (s.get_float("momentum"), s.get_float("weight_decay")) == (0.9, 0.0005)
    assert (s.get_int("display"), s.get_int("average_loss"), s.get_int("snapshot")) == (20, 100, 0)


def test_toy_nets_use_small_anchors_and_six_classes():
    from frcnn.caffe.prototxt import parse_file
    from frcnn.caffe.python_layer import parse_param_str

    for method, files in (("faster_rcnn_end2end", ["train", "test"]), ("faster_rcnn_alt_opt", ["stage1_rpn_train", "rpn_test"])):
        for f in files:
            net = parse_file(os.path.join(ROOT, "models", "toy", "SMALL", method, f + ".prototxt"))
            pys = [lay for lay in net.get_msgs("layer") if lay.get("type") == "Python"]
            scales = [parse_param_str(lay.get_msg("python_param").get("param_str")).get("scales") for lay in pys]
            assert [2, 4, 8, 16] in scales, (method, f, scales)
            score = next(lay for lay in net.get_msgs("layer") if lay.get("name") == "rpn_cls_score")
            assert score.get_msg("convolution_param").get_int("num_output") == 2 * 12
