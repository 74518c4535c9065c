import os
import shutil
import time

import numpy as np
import pytest

from frcnn.datasets import roidb_io
from frcnn.datasets.factory import get_imdb, list_imdbs
from frcnn.datasets.voc_xml import AnnotationWarning
from frcnn.roi_data.roidb import filter_roidb, prepare_roidb


def test_name_split_classes_from_classes_txt(tiny_voc):
    cfg, root = tiny_voc
    d = get_imdb("shapes_trainval", cfg)
    assert d.name == "shapes_trainval"
    assert d.classes == ("__background__", "dog", "cat")  # classes.txt order, not sorted
    assert d.image_index == ["a1", "a2", "a3"]
    assert d.image_path_at(1) == os.path.join(root, "JPEGImages", "a2.jpg")
    assert "shapes_test" in list_imdbs(cfg) and "shapes_trainval" in list_imdbs(cfg)


def test_gt_roidb_contents(tiny_voc):
    cfg, _ = tiny_voc
    r = get_imdb("shapes_trainval", cfg).gt_roidb()
    assert r[0]["boxes"].tolist() == [[4, 4, 29, 19], [30, 9, 49, 34]]
    assert r[0]["gt_classes"].tolist() == [1, 2]
    assert r[1]["gt_classes"].tolist() == [2]  # difficult dog left out (use_diff False)
    assert r[2]["boxes"].shape == (0, 4)  # no objects: kept for testing
    assert [(e["width"], e["height"]) for e in r] == [(60, 40), (50, 70), (40, 40)]


def test_use_diff_keeps_difficult_and_changes_the_cache_key(tiny_voc):
    cfg, _ = tiny_voc
    d = get_imdb("shapes_trainval", cfg)
    d.config["use_diff"] = True
    assert d.gt_roidb()[1]["gt_classes"].tolist() == [2, 1]
    d2 = get_imdb("shapes_trainval", cfg)
    assert d2.gt_roidb()[1]["gt_classes"].tolist() == [2]


def test_classes_collected_sorted_over_all_annotations(write_voc, data_cfg):
    root = os.path.join(data_cfg.DATA_DIR, "my_set")
    images = {
        "b1": (30, 30, [("Zebra", (1, 1, 10, 10))]),
        "b2": (30, 30, [("ant", (1, 1, 10, 10))]),
        "b3": (30, 30, [("mole", (1, 1, 10, 10))]),
    }
    write_voc(root, images, {"train": ["b1"], "test": ["b2", "b3"]})
    tr = get_imdb("my_set_train", data_cfg)  # underscore in the folder name
    te = get_imdb("my_set_test", data_cfg)
    # every split sees every class, in the same (sorted, lower-case) order
    assert tr.classes == te.classes == ("__background__", "ant", "mole", "zebra")
    assert tr.gt_roidb()[0]["gt_classes"].tolist() == [3]


def test_filter_roidb_drops_images_without_objects_for_training(tiny_voc):
    cfg, _ = tiny_voc
    d = get_imdb("shapes_trainval", cfg)
    d.set_proposal_method("gt")
    prepare_roidb(d)
    kept = filter_roidb(d.roidb, 0.5, 0.5, 0.0)
    assert [os.path.basename(e["image"]) for e in kept] == ["a1.jpg", "a2.jpg"]


def test_append_flipped_images(tiny_voc):
    cfg, _ = tiny_voc
    d = get_imdb("shapes_trainval", cfg)
    d.append_flipped_images()
    assert d.num_images == 6 and d.image_index[3:] == ["a1", "a2", "a3"]
    f = d.roidb[3]
    assert f["flipped"] and f["boxes"].dtype == np.uint16
    # W = 60: x1' = 60 - x2 - 1, x2' = 60 - x1 - 1
    assert f["boxes"].tolist() == [[30, 4, 55, 19], [10, 9, 29, 34]]
    assert d.roidb[5]["boxes"].shape == (0, 4)
    assert d.image_path_at(4) == d.image_path_at(1)


def test_cache_is_reused_and_invalidated_by_annotation_edits(tiny_voc, monkeypatch):
    cfg, root = tiny_voc
    get_imdb("shapes_trainval", cfg).gt_roidb()
    cache_dir = os.path.join(cfg.DATA_DIR, "cache")
    files = [f for f in os.listdir(cache_dir) if f.startswith("shapes_trainval_gt_roidb_")]
    assert len(files) == 1 and files[0].endswith(".npz")
    # the cache is a plain npz, loadable without pickle
    with np.load(os.path.join(cache_dir, files[0]), allow_pickle=False) as z:
        assert "boxes" in z.files

    d = get_imdb("shapes_trainval", cfg)
    monkeypatch.setattr(d, "_build_gt_roidb", lambda: pytest.fail("cache not used"))
    assert d.gt_roidb()[0]["boxes"].tolist() == [[4, 4, 29, 19], [30, 9, 49, 34]]

    # edit an annotation: a new key, the new box, and the stale file is removed
    xml = os.path.join(root, "Annotations", "a1.xml")
    with open(xml) as f:
        text = f.read().replace("<xmin>5</xmin>", "<xmin>7</xmin>")
    time.sleep(0.01)
    with open(xml, "w") as f:
        f.write(text)
    r = get_imdb("shapes_trainval", cfg).gt_roidb()
    assert r[0]["boxes"][0].tolist() == [6, 4, 29, 19]
    files2 = [f for f in os.listdir(cache_dir) if f.startswith("shapes_trainval_gt_roidb_")]
    assert len(files2) == 1 and files2 != files


def test_corrupt_cache_is_rebuilt_with_a_warning(tiny_voc):
    cfg, _ = tiny_voc
    d = get_imdb("shapes_trainval", cfg)
    path = roidb_io.cache_path(d.cache_path, "shapes_trainval_gt_roidb", d._gt_key())
    with open(path, "wb") as f:
        f.write(b"garbage")
    with pytest.warns(UserWarning, match="rebuilding"):
        r = d.gt_roidb()
    assert len(r) == 3


def test_roidb_pack_round_trip():
    roidb = [
        {
            "boxes": np.array([[1, 2, 3, 4]], np.uint16),
            "flipped": False,
            "width": 5,
            "image": "a.jpg",
            "gt_overlaps": np.ones((1, 3), np.float32),
            "scale": 0.5,
        },
        {
            "boxes": np.zeros((0, 4), np.uint16),
            "flipped": True,
            "width": 7,
            "image": "b.jpg",
            "gt_overlaps": np.zeros((0, 3), np.float32),
            "scale": 1.5,
        },
    ]
    back = roidb_io.unpack_roidb(roidb_io.pack_roidb(roidb))
    for a, b in zip(roidb, back):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], np.ndarray):
                assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k])
            else:
                assert a[k] == b[k] and type(a[k]) is type(b[k])


@pytest.mark.filterwarnings("ignore::frcnn.datasets.voc_xml.AnnotationWarning")
def test_missing_files_raise_naming_them(tiny_voc):
    cfg, root = tiny_voc
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/val.txt.*splits here: test, trainval"):
        from frcnn.datasets.voc_format import VOCFormatDataset

        VOCFormatDataset("shapes_val", "val", root, None)
    os.remove(os.path.join(root, "JPEGImages", "a2.jpg"))
    with pytest.raises(FileNotFoundError, match="a2.jpg"):
        get_imdb("shapes_trainval", cfg).gt_roidb()
    shutil.copy(os.path.join(root, "JPEGImages", "a1.jpg"), os.path.join(root, "JPEGImages", "a2.jpg"))
    os.remove(os.path.join(root, "Annotations", "a3.xml"))
    with pytest.raises(FileNotFoundError, match="a3.xml"):
        get_imdb("shapes_trainval", cfg).gt_roidb()


def test_unknown_name_lists_what_exists(tiny_voc):
    cfg, _ = tiny_voc
    with pytest.raises(KeyError, match="Unknown dataset: shapes_nosuchsplit.*shapes_trainval"):
        get_imdb("shapes_nosuchsplit", cfg)
    with pytest.raises(ValueError, match="unknown proposal method 'nope'.*gt.*rpn"):
        get_imdb("shapes_test", cfg).set_proposal_method("nope")


def test_missing_xml_size_reads_the_image_and_png_images(write_voc, data_cfg):
    root = os.path.join(data_cfg.DATA_DIR, "pngs")
    write_voc(
        root, {"p1": (33, 21, [("cat", (1, 1, 33, 21))])}, {"all": ["p1"]}, sizes_in_xml=False, ext=".png"
    )
    d = get_imdb("pngs_all", data_cfg)
    e = d.gt_roidb()[0]
    assert (e["width"], e["height"]) == (33, 21) and e["boxes"].tolist() == [[0, 0, 32, 20]]
    assert d.image_path_at(0).endswith("p1.png")


def test_unknown_class_in_annotations_is_warned(write_voc, data_cfg):
    root = os.path.join(data_cfg.DATA_DIR, "sub")
    write_voc(
        root,
        {"c1": (30, 30, [("cat", (1, 1, 9, 9)), ("bird", (2, 2, 9, 9))])},
        {"all": ["c1"]},
        classes=["cat"],
    )
    with pytest.warns(AnnotationWarning, match=r"bird \(1\)"):
        r = get_imdb("sub_all", data_cfg).gt_roidb()
    assert r[0]["gt_classes"].tolist() == [1]


def test_evaluate_detections_perfect_and_imperfect(tiny_voc, tmp_path, capsys):
    cfg, _ = tiny_voc
    d = get_imdb("shapes_trainval", cfg)
    gt = d.gt_roidb()
    all_boxes = [[np.zeros((0, 5), np.float32) for _ in range(d.num_images)] for _ in range(d.num_classes)]
    for i, e in enumerate(gt):
        for b, c in zip(e["boxes"], e["gt_classes"]):
            all_boxes[c][i] = np.vstack([all_boxes[c][i], np.r_[b.astype(np.float32), 0.9][None]])
    out = str(tmp_path / "out")
    res = d.evaluate_detections(all_boxes, out)
    text = capsys.readouterr().out
    assert "AP for dog = 1.0000" in text and "AP for cat = 1.0000" in text and "Mean AP = 1.0000" in text
    assert res["ap"] == {"dog": 1.0, "cat": 1.0} and res["mean_ap"] == 1.0
    assert os.listdir(os.path.join(out, "results")) == []  # cleaned up
    assert os.path.exists(os.path.join(out, "dog_pr.npz"))

    # two cats (a1, a2); on a1 a false positive (0.8) ranks above the true positive (0.5):
    # TP(0.9, a2), FP, TP -> recall .5 .5 1, precision 1 .5 2/3 -> AP = .5 * 1 + .5 * 2/3
    d.competition_mode(True)
    all_boxes[2][0] = np.array([[30, 9, 49, 34, 0.5], [0, 0, 5, 5, 0.8]], np.float32)
    res = d.evaluate_detections(all_boxes, out)
    assert res["ap"]["cat"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    files = sorted(os.listdir(os.path.join(out, "results")))
    assert files == ["comp4_det_trainval_cat.txt", "comp4_det_trainval_dog.txt"]  # kept, no salt
    with open(os.path.join(out, "results", files[0])) as f:
        lines = f.read().splitlines()
    # 1-based, 3-decimal scores, images in image-set order
    assert lines == [
        "a1 0.500 31.0 10.0 50.0 35.0",
        "a1 0.800 1.0 1.0 6.0 6.0",
        "a2 0.900 10.0 10.0 40.0 60.0",
    ]
