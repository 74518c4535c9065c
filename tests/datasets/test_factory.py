import os
import warnings

import numpy as np
import pytest

from frcnn.datasets.factory import get_imdb
from frcnn.datasets.voc_xml import AnnotationWarning


def test_voc_names_point_at_upstream_folders(data_cfg):
    with pytest.raises(FileNotFoundError, match=r"VOCdevkit2007: VOCdevkit path does not exist.*ln -s"):
        get_imdb("voc_2007_trainval", data_cfg)


def test_coco_names_point_at_upstream_folders(data_cfg):
    pytest.importorskip("pycocotools")  # optional (COCO only): a GPU check machine may lack it
    with pytest.raises(FileNotFoundError, match=r"coco/annotations/instances_minival2014.json"):
        get_imdb("coco_2014_minival", data_cfg)
    with pytest.raises(FileNotFoundError, match=r"coco/annotations/image_info_test-dev2015.json"):
        get_imdb("coco_2015_test-dev", data_cfg)


def test_voc_devkit_layout(write_voc, data_cfg):
    devkit = os.path.join(data_cfg.DATA_DIR, "VOCdevkit2007")
    write_voc(
        os.path.join(devkit, "VOC2007"), {"000001": (40, 30, [("dog", (1, 1, 20, 20))])}, {"test": ["000001"]}
    )
    d = get_imdb("voc_2007_test", data_cfg)
    assert d.name == "voc_2007_test" and d.num_classes == 21 and d.classes[12] == "dog"
    assert d.config["use_07_metric"] is True
    with pytest.raises(FileNotFoundError, match="selective_search_data/voc_2007_test.mat"):
        _ = d.roidb  # upstream's default proposal method
    d.set_proposal_method("gt")
    assert d.roidb[0]["gt_classes"].tolist() == [12]
    # results go to the devkit as upstream
    all_boxes = [[np.zeros((0, 5))] for _ in range(21)]
    all_boxes[12][0] = np.array([[0, 0, 19, 19, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the other 19 classes have no positives
        res = d.evaluate_detections(all_boxes, os.path.join(data_cfg.DATA_DIR, "out"))
    assert res["ap"]["dog"] == pytest.approx(1.0) and res["mean_ap"] == pytest.approx(1.0)  # 11 x 1/11
    assert os.path.isdir(os.path.join(devkit, "results", "VOC2007", "Main"))


def test_joined_sets_must_share_classes(tiny_voc, write_voc):
    cfg, _ = tiny_voc
    write_voc(os.path.join(cfg.DATA_DIR, "other"), {"o1": (20, 20, [("fox", (1, 1, 9, 9))])}, {"all": ["o1"]})
    with pytest.raises(ValueError, match="other_all has classes"):
        get_imdb("shapes_trainval+other_all", cfg)


# ------------------------------------------------------------------ real data (../shared/data)


@pytest.fixture
def real_cfg(shared_data, data_cfg):
    for name in ("bccd", "raccoon"):
        os.symlink(os.path.join(shared_data, name), os.path.join(data_cfg.DATA_DIR, name))
    return data_cfg


def test_bccd_trainval(real_cfg):
    d = get_imdb("bccd_trainval", real_cfg)
    assert d.classes == ("__background__", "platelets", "rbc", "wbc")
    with pytest.warns(AnnotationWarning) as rec:
        r = d.gt_roidb()
    msgs = sorted(str(w.message) for w in rec)
    assert len(msgs) == 2
    assert "BloodImage_00338.xml: object 12 (rbc) box (504, 337, 504, 337) is zero-size" in msgs[0]
    assert "BloodImage_00343.xml" in msgs[1]
    assert len(r) == 292 and sum(len(e["boxes"]) for e in r) == 3943 - 2
    assert all(e["boxes"][:, 2].max(initial=0) <= 639 and e["boxes"][:, 3].max(initial=0) <= 479 for e in r)
    d.append_flipped_images()  # would fail on wrapped or out-of-image boxes
    assert d.num_images == 584


def test_raccoon_train_and_perfect_bccd_test_eval(real_cfg, tmp_path):
    d = get_imdb("raccoon_train", real_cfg)
    r = d.gt_roidb()
    assert d.classes == ("__background__", "raccoon") and len(r) == 160
    assert sum(len(e["boxes"]) for e in r) == 173

    t = get_imdb("bccd_test", real_cfg)
    gt = t.gt_roidb()
    all_boxes = [[np.zeros((0, 5))] * t.num_images for _ in range(t.num_classes)]
    for i, e in enumerate(gt):
        for c in range(1, t.num_classes):
            b = e["boxes"][e["gt_classes"] == c].astype(np.float64)
            all_boxes[c][i] = np.hstack([b, np.ones((len(b), 1))])
    res = t.evaluate_detections(all_boxes, str(tmp_path / "out"))
    assert res["ap"] == {"platelets": 1.0, "rbc": 1.0, "wbc": 1.0}


def test_missing_toy_set_says_how_to_make_it(data_cfg):
    with pytest.raises(KeyError, match="make_toy_dataset.py"):
        get_imdb("toy_trainval", data_cfg)
