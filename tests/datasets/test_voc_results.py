"""VOC results files and the VOC2012 test archive for the evaluation server (Table 4)."""

import os
import tarfile

import numpy as np
import pytest

from frcnn.datasets.factory import get_imdb
from frcnn.datasets.voc_results import write_server_archive, write_voc_results_file
from frcnn.errors import InputError


def _voc2012_test(write_voc, cfg):
    """A VOCdevkit2012 whose test split, like the real one, has no annotation files."""
    root = os.path.join(cfg.DATA_DIR, "VOCdevkit2012", "VOC2012")
    write_voc(root, {"2008_000001": (40, 30, []), "2008_000007": (50, 40, [])}, {"test": ["2008_000001", "2008_000007"]})
    for f in os.listdir(os.path.join(root, "Annotations")):
        os.remove(os.path.join(root, "Annotations", f))
    return get_imdb("voc_2012_test", cfg)


def _boxes(d):
    all_boxes = [[np.zeros((0, 5), np.float32) for _ in range(d.num_images)] for _ in range(d.num_classes)]
    all_boxes[15][1] = np.array([[0, 1.5, 19, 29, 0.98765], [3, 4, 5, 6, 0.5]], np.float32)  # person
    all_boxes[1][0] = np.array([[10, 10, 30, 20, 0.25]], np.float32)  # aeroplane
    return all_boxes


def test_voc2012_test_is_packed_for_the_server(write_voc, data_cfg, tmp_path, capsys):
    d = _voc2012_test(write_voc, data_cfg)
    out = str(tmp_path / "out")
    res = d.evaluate_detections(_boxes(d), out)
    text = capsys.readouterr().out
    assert res["results_archive"] == os.path.join(out, "VOC2012_test_comp4_results.tar.gz")
    assert "the PASCAL VOC evaluation server scores these results" in text and "AP for" not in text
    with tarfile.open(res["results_archive"], "r:gz") as tar:
        names = tar.getnames()
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
    assert names[:3] == ["results", "results/VOC2012", "results/VOC2012/Main"]
    assert sorted(files) == sorted(f"results/VOC2012/Main/comp4_det_test_{c}.txt" for c in d.classes[1:])
    assert len(files) == 20
    # 1-based pixel coordinates, score to 3 places, as the devkit's format
    assert files["results/VOC2012/Main/comp4_det_test_person.txt"] == (
        "2008_000007 0.988 1.0 2.5 20.0 30.0\n2008_000007 0.500 4.0 5.0 6.0 7.0\n")
    assert files["results/VOC2012/Main/comp4_det_test_aeroplane.txt"] == "2008_000001 0.250 11.0 11.0 31.0 21.0\n"
    assert files["results/VOC2012/Main/comp4_det_test_dog.txt"] == ""
    # the same lines as the per-class results files the local evaluation writes
    paths = write_voc_results_file(_boxes(d), d.image_index, d.classes, str(tmp_path / "r_{:s}.txt"))
    with open(paths[14]) as f:
        assert f.read() == files["results/VOC2012/Main/comp4_det_test_person.txt"]


def test_salted_or_competition_mode_the_archive_names_are_the_servers(write_voc, data_cfg, tmp_path):
    d = _voc2012_test(write_voc, data_cfg)
    for comp in (False, True):
        d.competition_mode(comp)
        res = d.evaluate_detections(_boxes(d), str(tmp_path / str(comp)))
        assert all(os.path.basename(n).startswith("comp4_det_test_") for n in res["files"])


def test_archive_checks_the_detections_shape(tmp_path):
    with pytest.raises(InputError, match="detections: 2 classes, VOC2012 test has 3"):
        write_server_archive(str(tmp_path / "a.tar.gz"), [[], []], ["x"], ["__background__", "a", "b"], "2012", "test")
    with pytest.raises(InputError, match="class 1 has 0 images, VOC2012 test has 1"):
        write_server_archive(str(tmp_path / "a.tar.gz"), [[[]], []], ["x"], ["__background__", "a"], "2012", "test")
    assert not os.listdir(tmp_path)  # nothing half-written
