import json
import os

import cv2
import numpy as np
import pytest

pytest.importorskip("pycocotools")  # optional (COCO only): these tests skip without it

from frcnn.datasets.class_overlaps import ClassOverlaps
from frcnn.datasets.coco import COCODataset
from frcnn.datasets.factory import get_imdb
from frcnn.datasets.proposals import save_proposals
from frcnn.datasets.voc_xml import AnnotationWarning

IMAGES = [
    {"id": 10, "file_name": "ten.jpg", "width": 50, "height": 40},
    {"id": 2, "file_name": "two.png", "width": 30, "height": 60},
    {"id": 5, "file_name": "five.jpg", "width": 20, "height": 20},
]
# categories deliberately not in id order: classes follow the file, COCOeval sorts by id
CATEGORIES = [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}]
ANNOTATIONS = [
    {"id": 1, "image_id": 10, "category_id": 3, "bbox": [5.7, 6.2, 20.5, 10.9], "area": 200, "iscrowd": 0},
    {"id": 2, "image_id": 10, "category_id": 7, "bbox": [30, 20, 40, 30], "area": 1200, "iscrowd": 0},
    {"id": 3, "image_id": 10, "category_id": 7, "bbox": [0, 0, 20, 20], "area": 300, "iscrowd": 1},
    {"id": 4, "image_id": 2, "category_id": 3, "bbox": [1, 1, 0, 5], "area": 0, "iscrowd": 0},
    {"id": 5, "image_id": 2, "category_id": 3, "bbox": [2, 3, 10, 20], "area": 150, "iscrowd": 0},
]


def _write_coco(folder, name="inst.json", annotations=ANNOTATIONS):
    os.makedirs(folder, exist_ok=True)
    for im in IMAGES:
        cv2.imwrite(os.path.join(folder, im["file_name"]), np.zeros((im["height"], im["width"], 3), np.uint8))
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump({"images": IMAGES, "categories": CATEGORIES, "annotations": annotations}, f)
    return path


@pytest.fixture
def coco_set(tmp_path):
    path = _write_coco(str(tmp_path / "imgs"))
    return COCODataset("mini", path, str(tmp_path / "imgs"), str(tmp_path / "cache"))


@pytest.fixture
def coco_eval_set(tmp_path):
    """Without the zero-area annotation, which COCOeval would count as an undetectable gt."""
    path = _write_coco(str(tmp_path / "imgs"), annotations=[a for a in ANNOTATIONS if a["area"] > 0])
    return COCODataset("mini", path, str(tmp_path / "imgs"), str(tmp_path / "cache"))


def _perfect(d, only=None):
    all_boxes = [[np.zeros((0, 5), np.float32) for _ in range(d.num_images)] for _ in range(d.num_classes)]
    cat_to_cls = {7: 1, 3: 2}
    for a in ANNOTATIONS:
        if a["iscrowd"] or a["area"] == 0 or (only and cat_to_cls[a["category_id"]] != only):
            continue
        x, y, w, h = a["bbox"]
        i, c = d.image_index.index(a["image_id"]), cat_to_cls[a["category_id"]]
        all_boxes[c][i] = np.vstack([all_boxes[c][i], [[x, y, x + w - 1, y + h - 1, 0.9]]])
    return all_boxes


def test_classes_images_and_paths(coco_set):
    d = coco_set
    assert d.classes == ("__background__", "b", "a")
    assert d.image_index == [10, 2, 5]
    assert d.image_path_at(1).endswith("two.png")


def test_gt_roidb_rules(coco_set):
    with pytest.warns(AnnotationWarning, match=r"1 annotations with zero area .*ids 4"):
        r = coco_set.gt_roidb()
    e = r[0]
    assert e["boxes"].dtype == np.uint16
    # x2 = min(W-1, x1 + max(0, w-1)); floats truncated by the uint16 store
    assert e["boxes"].tolist() == [[5, 6, 25, 16], [30, 20, 49, 39], [0, 0, 19, 19]]
    assert e["gt_classes"].tolist() == [2, 1, 1]
    assert isinstance(e["gt_overlaps"], ClassOverlaps)
    assert e["gt_overlaps"][:2].toarray().tolist() == [[0, 0, 1], [0, 1, 0]]
    assert e["gt_overlaps"][2].tolist() == [-1, -1, -1]  # crowd (an integer index gives a dense row)
    assert e["gt_overlaps"].toarray().tolist() == [[0, 0, 1], [0, 1, 0], [-1, -1, -1]]
    assert e["seg_areas"].tolist() == [200, 1200, 300]
    assert r[1]["boxes"].tolist() == [[2, 3, 11, 22]]
    assert r[2]["boxes"].shape == (0, 4) and (r[2]["width"], r[2]["height"]) == (20, 20)


@pytest.mark.filterwarnings("ignore::frcnn.datasets.voc_xml.AnnotationWarning")
def test_proposals_inside_crowds_get_minus_one(coco_set, tmp_path):
    d = coco_set
    props = [np.array([[2, 2, 10, 10], [30, 20, 49, 39]], np.float32), np.zeros((0, 4)), np.zeros((0, 4))]
    save_proposals(str(tmp_path / "rpn.npz"), props, d.image_index)
    d.config["rpn_file"] = str(tmp_path / "rpn.npz")
    d.set_proposal_method("rpn")
    e = d.roidb[0]
    assert e["boxes"].shape == (5, 4) and e["gt_classes"].tolist() == [2, 1, 1, 0, 0]
    assert e["gt_overlaps"][3].tolist() == [-1, -1, -1]  # inside the crowd region
    assert e["gt_overlaps"][4].tolist() == [0, 1, 0]
    assert e["gt_overlaps"].toarray().tolist() == [[0, 0, 1], [0, 1, 0], [-1, -1, -1], [-1, -1, -1], [0, 1, 0]]


def test_evaluate_perfect_and_per_class_mapping(coco_eval_set, tmp_path, capsys):
    d = coco_eval_set
    out = str(tmp_path / "out")
    res = d.evaluate_detections(_perfect(d), out)
    assert res["mean_ap"] == pytest.approx(1.0) and res["ap50"] == pytest.approx(1.0)
    assert res["ap"] == {"b": pytest.approx(1.0), "a": pytest.approx(1.0)}
    assert "~~~~ Mean and per-category AP @ IoU=[0.50,0.95] ~~~~" in capsys.readouterr().out
    # the salted results json is cleaned up; the one json left is the numbers' summary
    assert [f for f in os.listdir(out) if f.endswith(".json")] == ["detection_results.json"]
    assert os.path.exists(os.path.join(out, "detection_results.npz"))

    # only class 'a' detected: its AP must stay 1 although COCOeval orders 'a' (id 3) first
    res = d.evaluate_detections(_perfect(d, only=2), out)
    assert res["ap"]["a"] == pytest.approx(1.0) and res["ap"]["b"] == pytest.approx(0.0)


@pytest.mark.filterwarnings("ignore::frcnn.datasets.voc_xml.AnnotationWarning")
def test_results_json_format(coco_set, tmp_path):
    d = coco_set
    d.competition_mode(True)
    all_boxes = [[np.zeros((0, 5))] * 3 for _ in range(3)]
    all_boxes[2][1] = np.array([[2, 3, 11, 22, 0.25]])
    out = str(tmp_path / "out")
    d.evaluate_detections(all_boxes, out)
    with open(os.path.join(out, "detections_mini_results.json")) as f:
        res = json.load(f)
    assert res == [{"image_id": 2, "category_id": 3, "bbox": [2.0, 3.0, 10.0, 20.0], "score": 0.25}]


def test_no_detections_gives_zero(coco_set, tmp_path):
    empty = [[np.zeros((0, 5))] * 3 for _ in range(3)]
    with pytest.warns(UserWarning, match="no detections"):
        res = coco_set.evaluate_detections(empty, str(tmp_path / "o"))
    assert res["mean_ap"] == 0.0
    with open(tmp_path / "o" / "detection_results.json") as f:
        assert json.load(f)["mAP@.5"] == 0.0


def _shifted(d, frac):
    """Every gt box, moved right by ``frac`` of its width: IoU (1 - frac) / (1 + frac) with its gt."""
    def move(b):
        w = b[:, 2] - b[:, 0] + 1
        return b + np.stack([frac * w, 0 * w, frac * w, 0 * w, 0 * w], axis=1)

    return [[move(b) if len(b) else b for b in per_class] for per_class in _perfect(d)]


def test_paper_metrics_printed_labelled_after_the_summary_and_saved(coco_eval_set, tmp_path, capsys):
    """Boxes with IoU between .5 and .75 with their gt: mAP@.5 is 100, mAP@[.5,.95] far less."""
    d = coco_eval_set
    out = str(tmp_path / "out")
    res = d.evaluate_detections(_shifted(d, 0.2), out)  # IoU 2/3 with every gt
    text = capsys.readouterr().out
    # AP 1 at IoU .5, .55, .6, .65 and 0 from .7 on: 4 of 10 thresholds
    assert res["ap50"] == pytest.approx(1.0) and res["mean_ap"] == pytest.approx(0.4)
    summary = text.index("~~~~ Summary metrics ~~~~")
    labelled = text.index("~~~~ The paper's COCO metrics (Table 11), in percent ~~~~")
    assert summary < labelled
    lines = text[labelled:].splitlines()
    assert lines[1] == "mAP@.5 = 100.0" and lines[2] == "mAP@[.5,.95] = 40.0"
    with open(os.path.join(out, "detection_results.json")) as f:
        saved = json.load(f)
    assert saved["mAP@.5"] == pytest.approx(1.0) and saved["mAP@[.5,.95]"] == pytest.approx(res["mean_ap"])
    # the paper's mAP@[.5,.95] is COCOeval's first summary number, mAP@.5 its second
    assert saved["stats"]["AP@[.5,.95]"] == pytest.approx(res["mean_ap"])
    assert saved["stats"]["AP@.5"] == pytest.approx(1.0) and saved["stats"]["AP@.75"] < 1.0
    assert set(saved["ap"]) == {"a", "b"}


def test_factory_coco_json_and_folder_convention(tmp_path, data_cfg):
    path = _write_coco(str(tmp_path / "elsewhere"), name="my set.json")
    d = get_imdb(f"coco_json:{path}", data_cfg)
    assert d.name == "my_set" and d.classes == ("__background__", "b", "a")
    assert os.path.exists(d.image_path_at(0))
    imgs = str(tmp_path / "elsewhere")
    d2 = get_imdb(f"coco_json:{path}:{imgs}", data_cfg)
    assert d2.image_path_at(2) == os.path.join(imgs, "five.jpg")

    root = os.path.join(data_cfg.DATA_DIR, "mycoco")
    _write_coco(os.path.join(root, "images", "val"), name="unused.json")
    os.makedirs(os.path.join(root, "annotations"))
    with open(os.path.join(root, "annotations", "val.json"), "w") as f:
        json.dump({"images": IMAGES, "categories": CATEGORIES, "annotations": ANNOTATIONS[:3]}, f)
    d3 = get_imdb("mycoco_val", data_cfg)
    assert d3.num_images == 3 and os.path.exists(d3.image_path_at(1))
    assert len(d3.gt_roidb()[0]["boxes"]) == 3


def test_bad_json_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        COCODataset("x", str(tmp_path / "nothere.json"), str(tmp_path), None)
    # the missing file says what to do: link the COCO folder, or add the split's json to it
    missing = tmp_path / "data" / "coco" / "annotations" / "instances_train2014.json"
    with pytest.raises(FileNotFoundError, match=f"ln -s /path/to/coco {tmp_path / 'data' / 'coco'}"):
        COCODataset("x", str(missing), str(tmp_path), None)
    missing.parent.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="put the split's annotation json into .*annotations"):
        COCODataset("x", str(missing), str(tmp_path), None)
    bad = _write_coco(
        str(tmp_path / "b"),
        name="bad.json",
        annotations=[{"id": 9, "image_id": 10, "category_id": 99, "bbox": [1, 1, 5, 5], "area": 25}],
    )
    with pytest.raises(ValueError, match="bad.json: annotation 9 has unknown category_id 99"):
        COCODataset("x", bad, str(tmp_path / "b"), None).gt_roidb()


@pytest.mark.filterwarnings("ignore::frcnn.datasets.voc_xml.AnnotationWarning")
@pytest.mark.parametrize("method", ["selective_search", "mcg"])
def test_hosang_layout_proposals(tmp_path, method):
    from frcnn.datasets.coco_proposals import box_file
    from tests.datasets.matfile_writer import write_double_mat

    path = _write_coco(str(tmp_path / "imgs"))
    props = str(tmp_path / "coco_proposals")
    d = COCODataset("mini", path, str(tmp_path / "imgs"), None, data_name="val2014", proposals_dir=props)
    d.config["top_k"] = 3
    folder = {"selective_search": "selective_search", "mcg": "MCG"}[method]
    assert box_file("val2014", 447991) == os.path.join(
        "COCO_val2014_0", "COCO_val2014_000000447", "COCO_val2014_000000447991.mat"
    )
    for index in d.image_index:
        f = os.path.join(props, folder, "mat", box_file("val2014", index))
        os.makedirs(os.path.dirname(f), exist_ok=True)
        # 1-based; a duplicate, a tiny box (dropped by min_size 2) and more than top_k
        rows = [[1, 2, 11, 12], [1, 2, 11, 12], [5, 5, 6, 6], [3, 4, 13, 14], [2, 2, 20, 18], [4, 4, 9, 9]]
        if method == "mcg":
            rows = [[r[1], r[0], r[3], r[2]] for r in rows]  # MCG writes y1, x1, y2, x2
        write_double_mat(f, "boxes", rows)
    d.set_proposal_method(method)
    e = d.roidb[1]  # image 2: one gt box, then the proposals
    assert e["boxes"][1:].tolist() == [[0, 1, 10, 11], [2, 3, 12, 13], [1, 1, 19, 17]]
    assert e["gt_classes"].tolist() == [2, 0, 0, 0]
