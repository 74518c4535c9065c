"""TEST.VOC_METRIC: which AP a VOC-format evaluation computes, and that it says which."""

import os

import numpy as np
import pytest

from frcnn.config import ConfigError, get_default_config
from frcnn.datasets.factory import get_imdb
from frcnn.datasets.voc_eval import voc_ap
from frcnn.datasets.voc_format import VOCFormatDataset
from frcnn.datasets.voc_metric import apply_voc_metric, check_voc_metric, metric_name

# the imperfect case of test_voc_format: recall .5 .5 1, precision 1 .5 2/3 for 'cat'
AREA = 0.5 + 0.5 * 2 / 3
ELEVEN = (6 * 1.0 + 5 * 2 / 3) / 11


def _all_boxes(d):
    gt = d.gt_roidb()
    all_boxes = [[np.zeros((0, 5), np.float32) for _ in range(d.num_images)] for _ in range(d.num_classes)]
    for i, e in enumerate(gt):
        for b, c in zip(e["boxes"], e["gt_classes"]):
            all_boxes[c][i] = np.vstack([all_boxes[c][i], np.r_[b.astype(np.float32), 0.9][None]])
    all_boxes[2][0] = np.array([[30, 9, 49, 34, 0.5], [0, 0, 5, 5, 0.8]], np.float32)
    return all_boxes


def test_the_two_metrics_differ_on_the_same_detections_and_are_named(tiny_voc, tmp_path, capsys):
    cfg, _ = tiny_voc
    d = get_imdb("shapes_trainval", cfg)
    all_boxes = _all_boxes(d)
    assert cfg.TEST.VOC_METRIC == "auto"
    assert apply_voc_metric(d, "auto") == "area under the precision-recall curve"
    res = d.evaluate_detections(all_boxes, str(tmp_path / "a"))
    text = capsys.readouterr().out
    assert res["ap"]["cat"] == pytest.approx(AREA) and res["metric"] == metric_name(False)
    assert "VOC07 metric? No" in text
    assert f"Mean AP = {(1 + AREA) / 2:.4f} (area under the precision-recall curve)" in text

    assert apply_voc_metric(d, "11point") == "VOC07 11-point metric"
    res = d.evaluate_detections(all_boxes, str(tmp_path / "b"))
    text = capsys.readouterr().out
    assert res["ap"]["cat"] == pytest.approx(ELEVEN)
    assert "VOC07 metric? Yes" in text and f"Mean AP = {(1 + ELEVEN) / 2:.4f} (VOC07 11-point metric)" in text
    # the curves behind the numbers are exposed, the same whichever metric
    rec, prec, ap = res["pr"]["cat"]
    np.testing.assert_allclose(rec, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(prec, [1.0, 0.5, 2 / 3])
    assert ap == pytest.approx(voc_ap(rec, prec, True))

    assert apply_voc_metric(d, "auto") == metric_name(False)  # back to the set's own rule
    assert apply_voc_metric(d, "area") == metric_name(False)


def test_auto_keeps_the_sets_own_rule(tiny_voc):
    _cfg, root = tiny_voc
    voc07_like = VOCFormatDataset("x_trainval", "trainval", root, None, use_07_metric=True)
    assert apply_voc_metric(voc07_like, "auto") == "VOC07 11-point metric"
    assert apply_voc_metric(voc07_like, "area") == "area under the precision-recall curve"
    assert voc07_like.config["use_07_metric"] is False
    assert apply_voc_metric(voc07_like, "auto") == "VOC07 11-point metric"


def test_pascal_voc_2007_is_11_point_by_default(tmp_path):
    from frcnn.datasets.pascal_voc import pascal_voc

    root = tmp_path / "VOCdevkit2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(root / "VOC2007" / sub)
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    d = pascal_voc("test", "2007", str(root), None)
    assert apply_voc_metric(d, "auto") == "VOC07 11-point metric"


def test_a_bad_value_is_named_and_other_sets_get_a_note(capsys):
    assert get_default_config().TEST.VOC_METRIC == "auto"
    with pytest.raises(ConfigError, match=r"TEST.VOC_METRIC: expected one of 'auto', '11point', 'area', got '07'"):
        check_voc_metric("07")

    class Coco:
        name = "coco_json_set"

        def __init__(self):
            self.config = {"use_salt": True}

    assert apply_voc_metric(Coco(), "auto") is None and capsys.readouterr().out == ""
    assert apply_voc_metric(Coco(), "area") is None
    assert "TEST.VOC_METRIC area does not apply to coco_json_set" in capsys.readouterr().out
