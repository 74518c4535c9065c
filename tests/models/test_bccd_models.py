"""The BCCD nets (models/bccd/SMALL/faster_rcnn_end2end): 3 classes + background, anchors sized
for blood cells, and the experiment scripts picking them for DATASET bccd."""

import os
import subprocess

import numpy as np
import pytest

from frcnn.caffe.prototxt import parse_file
from frcnn.caffe.python_layer import parse_param_str
from frcnn.rpn.generate_anchors import generate_anchors

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FOLDER = "models/bccd/SMALL/faster_rcnn_end2end"
SCALES = [2, 2.83, 4, 5.66, 8, 11.31, 16]  # 32-256 px anchors, steps of about sqrt(2)


def layers(path: str) -> dict:
    return {lp.get_str("name"): lp for lp in parse_file(os.path.join(ROOT, FOLDER, path)).get_msgs("layer")}


def num_output(lp) -> int:
    kind = "convolution_param" if lp.get_str("type") == "Convolution" else "inner_product_param"
    return lp.get_msg(kind).get_int("num_output")


@pytest.mark.parametrize("stem", ["train", "test"])
def test_classes_and_anchors(stem):
    ls = layers(f"{stem}.prototxt")
    anchors = 3 * len(SCALES)
    assert num_output(ls["cls_score"]) == 4 and num_output(ls["bbox_pred"]) == 16
    assert num_output(ls["rpn_cls_score"]) == 2 * anchors and num_output(ls["rpn_bbox_pred"]) == 4 * anchors
    dims = ls["rpn_cls_prob_reshape"].get_msg("reshape_param").get_msg("shape").get_ints("dim")
    assert dims == [0, 2 * anchors, -1, 0]
    rpn_layers = ["rpn-data", "proposal"] if stem == "train" else ["proposal"]
    for name in rpn_layers:
        p = parse_param_str(ls[name].get_msg("python_param").get_str("param_str"))
        assert p == {"feat_stride": 16, "scales": SCALES}
    if stem == "train":
        for name in ("input-data", "roi-data"):
            assert parse_param_str(ls[name].get_msg("python_param").get_str("param_str")) == {"num_classes": 4}


def test_anchors_cover_cell_sizes():
    """Every square cell of 32-256 px (platelets to white cells at 480 px) has a same-centred anchor
    of IoU >= 0.7 (the RPN's positive threshold); the default anchors (128-512 px) miss the small ones."""

    def best_iou(scales, side):
        a = generate_anchors(scales=np.array(scales, dtype=float))
        ctr = 7.5  # generate_anchors centres every anchor on the 16 px cell (0..15)
        box = np.array([ctr - (side - 1) / 2, ctr - (side - 1) / 2, ctr + (side - 1) / 2, ctr + (side - 1) / 2])
        iw = np.clip(np.minimum(a[:, 2], box[2]) - np.maximum(a[:, 0], box[0]) + 1, 0, None)
        ih = np.clip(np.minimum(a[:, 3], box[3]) - np.maximum(a[:, 1], box[1]) + 1, 0, None)
        inter = iw * ih
        union = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1) + side * side - inter
        return float((inter / union).max())

    sides = np.arange(32, 257, 2)
    assert min(best_iou(SCALES, s) for s in sides) >= 0.7
    assert best_iou((8, 16, 32), 40) < 0.15  # a platelet against the default anchors


def test_solver():
    s = parse_file(os.path.join(ROOT, FOLDER, "solver.prototxt"))
    assert s.get_str("train_net") == f"{FOLDER}/train.prototxt"
    assert s.get_float("base_lr") == 0.01 and s.get_str("lr_policy") == "step"
    assert s.get_int("stepsize") == 3750  # 3/4 of ITERS=5000 (experiments/cfgs/bccd.yml)
    assert s.get_str("snapshot_prefix") == "small_faster_rcnn"


def _resolve(tmp_path, net: str, method: str) -> str:
    """PT_DIR from common.sh's resolve_dataset for DATASET bccd, in a scratch tree."""
    sets = tmp_path / "data" / "bccd" / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    for split in ("trainval", "test"):
        (sets / f"{split}.txt").write_text("a\n")
    (tmp_path / "models" / "bccd" / "SMALL" / "faster_rcnn_end2end").mkdir(parents=True, exist_ok=True)
    common = os.path.join(ROOT, "experiments", "scripts", "common.sh")
    cmd = f'set -eu; NET={net}; METHOD={method}; source "{common}"; resolve_dataset bccd 1 2 3 4; echo "$PT_DIR"'
    r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, check=True, capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


def test_scripts_pick_the_datasets_own_nets(tmp_path):
    assert _resolve(tmp_path, "SMALL", "faster_rcnn_end2end") == "bccd"
    assert _resolve(tmp_path, "ZF", "faster_rcnn_end2end") == "pascal_voc"  # no models/bccd/ZF: adapted VOC nets
    assert _resolve(tmp_path, "SMALL", "faster_rcnn_alt_opt") == "pascal_voc"
