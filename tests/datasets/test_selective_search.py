"""Selective Search computed here (tools/selective_search.py, OpenCV's ximgproc): the file the
imdb's selective_search method reads, its recall on the toy test images, its timing; a clear
error without opencv-contrib-python. The OpenCV tests skip where cv2 has no ximgproc."""

import os

import cv2
import numpy as np
import pytest

from frcnn.datasets import selective_search as ss
from frcnn.datasets.factory import get_imdb
from frcnn.errors import UserError
from tests.tools.helpers import load_tool

needs_ximgproc = pytest.mark.skipif(
    not ss.have_ximgproc(), reason="cv2 has no ximgproc (pip install opencv-contrib-python instead of opencv-python)"
)


def test_without_ximgproc_the_error_says_what_to_install(monkeypatch):
    monkeypatch.delattr(cv2, "ximgproc", raising=False)
    assert not ss.have_ximgproc()
    with pytest.raises(UserError, match="pip uninstall -y opencv-python && pip install opencv-contrib-python"):
        ss.selective_search_boxes(np.zeros((20, 20, 3), np.uint8))


def test_the_tool_fails_with_that_error_before_any_work(monkeypatch, tiny_voc):
    cfg, _root = tiny_voc
    monkeypatch.delattr(cv2, "ximgproc", raising=False)
    with pytest.raises(UserError, match="opencv-contrib-python"):
        load_tool("selective_search.py").main(["--imdb", "shapes_test", "--set", "DATA_DIR", cfg.DATA_DIR])


def test_the_file_is_keyed_by_the_images(tiny_voc):
    cfg, _root = tiny_voc
    imdb = get_imdb("shapes_test", cfg)
    path = imdb.selective_search_file()
    assert os.path.dirname(path) == os.path.join(cfg.DATA_DIR, "selective_search_data")
    assert os.path.basename(path).startswith("shapes_test_opencv_ss_") and path.endswith(".npz")
    image = imdb.image_path_at(0)
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an edited image: another key
    assert get_imdb("shapes_test", cfg).selective_search_file() != path


def test_upstreams_mat_file_wins_over_a_computed_one(tiny_voc):
    from frcnn.datasets.proposals import save_proposals
    from tests.datasets.matfile_writer import mat_elem, mat_header, mat_matrix

    cfg, _root = tiny_voc
    imdb = get_imdb("shapes_test", cfg)
    computed = imdb.selective_search_file()
    save_proposals(computed, [np.array([[0, 0, 9, 9]], np.float32)], list(imdb.image_index))
    assert imdb._proposal_file("selective_search") == computed
    mat = os.path.join(cfg.DATA_DIR, "selective_search_data", "shapes_test.mat")
    item = mat_matrix("<", "", 6, (1, 4), mat_elem("<", 9, np.array([3, 2, 30, 40], "<f8").tobytes()))
    with open(mat, "wb") as f:  # upstream's layout: a 'boxes' cell of 1-based y1, x1, y2, x2 rows
        f.write(mat_header("<") + mat_matrix("<", "boxes", 1, (1, 1), item))
    assert imdb._proposal_file("selective_search") == mat
    roidb = get_imdb("shapes_test", cfg).selective_search_roidb()
    np.testing.assert_array_equal(roidb[0]["boxes"][roidb[0]["gt_classes"] == 0], [[1, 2, 39, 29]])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from frcnn.config import get_default_config
    from frcnn.datasets.toy import make_toy_dataset

    data = tmp_path_factory.mktemp("ss") / "data"
    make_toy_dataset(str(data / "toy"))  # the toy set itself: its 100 test images
    cfg = get_default_config()
    cfg.DATA_DIR = str(data)
    return cfg


@needs_ximgproc
def test_toy_test_recall_timing_and_rerun(toy, capsys):
    tool = load_tool("selective_search.py")
    argv = ["--imdb", "toy_test", "--set", "DATA_DIR", toy.DATA_DIR]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "s/image" in out and "left" in out and "Wrote selective search proposals to" in out
    imdb = get_imdb("toy_test", toy)
    path = imdb.selective_search_file()
    timing = ss.read_timing(path)
    assert timing["images"] == 100 and timing["mode"] == "fast" and timing["top_n"] == 2000
    assert len(timing["seconds"]) == 100 and np.all(timing["seconds"] > 0)
    assert timing["mean_seconds_per_image"] == pytest.approx(float(np.mean(timing["seconds"])))
    imdb.set_proposal_method("selective_search")
    res = imdb.evaluate_recall(thresholds=[0.5, 0.7])
    assert res["num_pos"] > 150 and res["recalls"][0] >= 0.9, res["recalls"]
    counts = [int((e["gt_classes"] == 0).sum()) for e in imdb.roidb]
    assert max(counts) <= 2000 and min(counts) > 0  # small images: tens to hundreds of boxes
    # a rerun finds the file; the same boxes again when recomputed (the ranking RNG is seeded)
    assert tool.main(argv) == 0 and "Already computed" in capsys.readouterr().out
    from frcnn.datasets.proposals import load_proposals

    first = load_proposals(path)[0]
    again = str(os.path.join(os.path.dirname(path), "again.npz"))
    assert tool.main(["--imdb", "toy_test", "--workers", "2", "--out", again, "--set", "DATA_DIR", toy.DATA_DIR]) == 0
    for a, b in zip(first, load_proposals(again)[0]):
        np.testing.assert_array_equal(a, b)


@needs_ximgproc
def test_boxes_are_zero_based_inclusive_and_inside_the_image():
    rng = np.random.RandomState(0)
    im = np.zeros((60, 80, 3), np.uint8)
    im[10:30, 20:50] = (0, 0, 255)
    im += rng.randint(0, 10, size=im.shape).astype(np.uint8)
    boxes = ss.selective_search_boxes(im, top_n=50)
    assert 0 < len(boxes) <= 50 and boxes.dtype == np.float32
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 79) and np.all(boxes[:, 3] <= 59)
    assert np.all(boxes[:, 2] >= boxes[:, 0]) and np.all(boxes[:, 3] >= boxes[:, 1])
    # OpenCV's (x, y, w, h) rectangles, in its order: x2 = x + w - 1; the seeded ranking repeats
    seg = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    seg.setBaseImage(im)
    seg.switchToSelectiveSearchFast()
    ss._seed_c_rand(0)
    rects = np.asarray(seg.process())[:50]
    np.testing.assert_array_equal(boxes, np.hstack((rects[:, :2], rects[:, :2] + rects[:, 2:] - 1)))
    np.testing.assert_array_equal(boxes, ss.selective_search_boxes(im, top_n=50))
