"""COCO -> VOC weight surgery: rows picked by class name on tiny models with known rows."""

import os

import numpy as np
import pytest

from frcnn.caffe.caffemodel import BlobData, CaffeModel, LayerData, read_caffemodel, write_caffemodel
from frcnn.datasets.coco import COCO_CLASSES
from frcnn.datasets.pascal_voc import VOC_CLASSES
from frcnn.errors import InputError, UnknownNameError
from frcnn.nets import surgery
from tests.tools.helpers import run_tool_process

# the COCO category that each VOC class comes from, written out (independent of the table)
VOC_FROM_COCO = {
    "aeroplane": "airplane", "bicycle": "bicycle", "bird": "bird", "boat": "boat", "bottle": "bottle",
    "bus": "bus", "car": "car", "cat": "cat", "chair": "chair", "cow": "cow", "diningtable": "dining table",
    "dog": "dog", "horse": "horse", "motorbike": "motorcycle", "person": "person", "pottedplant": "potted plant",
    "sheep": "sheep", "sofa": "couch", "train": "train", "tvmonitor": "tv",
}  # fmt: skip


def known_model(num_classes, dim=3):
    """cls_score row k holds k (+ column / 10), bias k; bbox_pred row r holds 1000 + r, bias -r."""
    cls_w = np.arange(num_classes, dtype=np.float32)[:, None] + np.arange(dim, dtype=np.float32)[None, :] / 10
    cls_b = np.arange(num_classes, dtype=np.float32)
    box_w = 1000 + np.repeat(np.arange(4 * num_classes, dtype=np.float32)[:, None], dim, axis=1)
    box_b = -np.arange(4 * num_classes, dtype=np.float32)
    conv = np.random.RandomState(0).randn(2, 1, 3, 3).astype(np.float32)
    return CaffeModel("net", [
        LayerData("conv1", "Convolution", [BlobData(conv), BlobData(np.ones(2, np.float32))], ["data"], ["conv1"]),
        LayerData("relu1", "ReLU", [], ["conv1"], ["conv1"]),
        LayerData("cls_score", "InnerProduct", [BlobData(cls_w), BlobData(cls_b)], ["fc7"], ["cls_score"]),
        LayerData("bbox_pred", "InnerProduct", [BlobData(box_w), BlobData(box_b)], ["fc7"], ["bbox_pred"]),
    ])


def test_the_builtin_table_maps_onto_coco_and_voc_names():
    assert len(COCO_CLASSES) == 80 and len(VOC_CLASSES) == 21
    assert set(surgery.COCO_TO_VOC) <= set(COCO_CLASSES)
    assert set(surgery.COCO_TO_VOC.values()) <= set(VOC_CLASSES)
    rows = surgery.class_rows(COCO_CLASSES, VOC_CLASSES, surgery.COCO_TO_VOC)
    coco = ["__background__", *COCO_CLASSES]
    assert rows[0] == 0
    assert [coco[r] for r in rows[1:]] == [VOC_FROM_COCO[v] for v in VOC_CLASSES[1:]]
    assert rows[1] == 5 and rows[VOC_CLASSES.index("tvmonitor")] == 63  # airplane, tv (1-based, after background)


def test_coco_model_to_voc_picks_rows_by_name(tmp_path):
    src, dst = str(tmp_path / "coco.caffemodel"), str(tmp_path / "voc.caffemodel")
    write_caffemodel(src, known_model(81))
    picked = surgery.narrow_classes(src, dst, COCO_CLASSES, VOC_CLASSES, surgery.COCO_TO_VOC)
    out = read_caffemodel(dst)
    cls_w, cls_b = (b.array for b in out.layer("cls_score").blobs)
    box_w, box_b = (b.array for b in out.layer("bbox_pred").blobs)
    assert cls_w.shape == (21, 3) and cls_b.shape == (21,) and box_w.shape == (84, 3) and box_b.shape == (84,)
    coco = ["__background__", *COCO_CLASSES]
    for k, voc in enumerate(VOC_CLASSES):
        j = 0 if k == 0 else coco.index(VOC_FROM_COCO[voc])
        assert cls_b[k] == j and np.allclose(cls_w[k], j + np.arange(3) / 10), voc
        assert box_b[4 * k : 4 * k + 4].tolist() == [-(4 * j + i) for i in range(4)], voc
        assert (box_w[4 * k : 4 * k + 4] == 1000 + 4 * j + np.arange(4)[:, None]).all(), voc
        assert picked[k] == (j, coco[j], voc)
    # every other layer is copied as it was
    src_model = known_model(81)
    assert np.array_equal(out.layer("conv1").blobs[0].array, src_model.layer("conv1").blobs[0].array)
    assert out.layer("relu1").blobs == [] and out.layer("conv1").tops == ["conv1"]


def test_the_narrowed_model_loads_into_a_21_class_net(tmp_path):
    """A real (tiny) 81-class test net's weights, narrowed, fill the same net with 21 classes."""
    from frcnn.caffe import TEST, Net
    from frcnn.caffe.prototxt import parse_file, write_file
    from tests.training.tiny_setup import SMALL, narrow

    for k in (81, 21):
        write_file(str(tmp_path / f"test{k}.prototxt"), narrow(parse_file(os.path.join(SMALL, "test.prototxt")), k))
    coco_net = Net(str(tmp_path / "test81.prototxt"), phase=TEST)
    coco_net.save(str(tmp_path / "coco.caffemodel"))
    surgery.narrow_classes(str(tmp_path / "coco.caffemodel"), str(tmp_path / "voc.caffemodel"), COCO_CLASSES,
                           VOC_CLASSES, surgery.COCO_TO_VOC)
    voc_net = Net(str(tmp_path / "test21.prototxt"), str(tmp_path / "voc.caffemodel"), phase=TEST)
    rows = surgery.class_rows(COCO_CLASSES, VOC_CLASSES, surgery.COCO_TO_VOC)
    box_rows = [4 * r + i for r in rows for i in range(4)]
    for layer, idx in (("cls_score", rows), ("bbox_pred", box_rows)):
        for i in range(2):
            got = voc_net.params[layer][i].data.cpu().numpy()
            want = coco_net.params[layer][i].data.cpu().numpy()[idx]
            assert np.array_equal(got, want), (layer, i)
    for layer in ("conv1", "rpn_cls_score", "fc7"):
        assert np.array_equal(voc_net.params[layer][0].data.cpu().numpy(), coco_net.params[layer][0].data.cpu().numpy())


def test_unknown_class_in_a_mapping_is_named():
    with pytest.raises(UnknownNameError, match="'aeroplan' is not a source class"):
        surgery.class_rows(COCO_CLASSES, VOC_CLASSES, surgery.COCO_TO_VOC, checked={"aeroplan": "aeroplane"})
    with pytest.raises(UnknownNameError, match="'aeroplan' is not a destination class"):
        surgery.class_rows(COCO_CLASSES, VOC_CLASSES, surgery.COCO_TO_VOC, checked={"airplane": "aeroplan"})
    # a destination class with no source: named, with a hint
    with pytest.raises(UnknownNameError, match=r"destination class\(es\) 'unicorn'.*SRC=DST"):
        surgery.class_rows(COCO_CLASSES, ["person", "unicorn"], surgery.COCO_TO_VOC)
    # a user mapping can supply it, and overrides the built-in table
    assert surgery.class_rows(COCO_CLASSES, ["person", "unicorn"], checked={"horse": "unicorn"}) == [0, 1, 18]
    assert surgery.class_rows(COCO_CLASSES, ["tvmonitor"], surgery.COCO_TO_VOC, checked={"laptop": "tvmonitor"}) == [
        0, 64]


def test_bad_models_and_lists_are_errors_naming_the_problem(tmp_path):
    src = str(tmp_path / "m.caffemodel")
    write_caffemodel(src, known_model(5))
    with pytest.raises(InputError, match=r"cls_score' blob 0 has 5 rows .* 81 source classes"):
        surgery.narrow_classes(src, str(tmp_path / "o.caffemodel"), COCO_CLASSES, VOC_CLASSES, surgery.COCO_TO_VOC)
    with pytest.raises(UnknownNameError, match="has no layer 'score'.*conv1, cls_score, bbox_pred"):
        surgery.narrow_classes(src, str(tmp_path / "o.caffemodel"), ["a", "b", "c", "d"], ["b"], cls_layer="score")
    assert not (tmp_path / "o.caffemodel").exists()
    with pytest.raises(InputError, match="may only come first"):
        surgery.with_background(["a", "__background__"])
    with pytest.raises(InputError, match="'a' listed more than once"):
        surgery.with_background(["a", "b", "a"])
    # a 4-class model narrowed to 2 of them, background kept, in the destination's order
    surgery.narrow_classes(src, str(tmp_path / "o.caffemodel"), ["a", "b", "c", "d"], ["d", "b"])
    assert read_caffemodel(str(tmp_path / "o.caffemodel")).layer("cls_score").blobs[1].array.tolist() == [0, 4, 2]


def test_tool_writes_the_model_and_names_an_unknown_class(tmp_path):
    src, dst = str(tmp_path / "coco.caffemodel"), str(tmp_path / "voc.caffemodel")
    write_caffemodel(src, known_model(81))
    r = run_tool_process("coco_to_voc.py", src, dst)
    assert r.returncode == 0, r.stderr
    assert "      1        5  aeroplane  (from airplane)" in r.stdout and "Wrote " + dst in r.stdout
    assert read_caffemodel(dst).layer("cls_score").blobs[1].array.tolist()[:2] == [0, 5]
    classes = tmp_path / "classes.txt"
    classes.write_text("# two classes\nperson\nunicorn\n")
    r = run_tool_process("coco_to_voc.py", src, str(tmp_path / "x.caffemodel"), "--dst_classes", str(classes),
                         "--map", "zebra=unicorn")
    assert r.returncode == 0, r.stderr
    assert read_caffemodel(str(tmp_path / "x.caffemodel")).layer("cls_score").blobs[1].array.tolist() == [0, 1, 23]
    r = run_tool_process("coco_to_voc.py", src, str(tmp_path / "y.caffemodel"), "--map", "zebraa=sofa")
    assert r.returncode == 2 and "'zebraa' is not a source class" in r.stderr
    r = run_tool_process("coco_to_voc.py", src, src)
    assert r.returncode == 2 and "overwrite the source model" in r.stderr
