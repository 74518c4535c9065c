"""VOC AP on small cases computed by hand."""

import os

import numpy as np
import pytest

from frcnn.datasets.voc_eval import voc_ap, voc_eval


def _obj(name, box, difficult=0):
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


@pytest.fixture
def voc_case(tmp_path):
    """Image i1: two cars (1..10 and 21..30 squares) and a difficult car (41..50); image i2: a person."""
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "i1.xml").write_text(
        "<annotation>"
        + _obj("Car", (1, 1, 10, 10))
        + _obj("car", (21, 21, 30, 30))
        + _obj("car", (41, 41, 50, 50), difficult=1)
        + "</annotation>"
    )
    (ann / "i2.xml").write_text("<annotation>" + _obj("person", (1, 1, 10, 10)) + "</annotation>")
    (tmp_path / "set.txt").write_text("i1\ni2\n")

    def run(lines, cls="car", use_07=False, cachedir=None, **kw):
        det = tmp_path / f"det_{cls}.txt"
        det.write_text("".join(line + "\n" for line in lines))
        return voc_eval(
            str(tmp_path / "det_{}.txt"),
            str(ann / "{}.xml"),
            str(tmp_path / "set.txt"),
            cls,
            cachedir if cachedir is not None else str(tmp_path / "cache"),
            use_07_metric=use_07,
            **kw,
        )

    return run


# d1 TP (gt 1), d2 duplicate of gt 1 (FP), d3 on the difficult car (ignored), d4 TP (gt 2), d5 FP
CASE = [
    "i1 0.9 1 1 10 10",
    "i1 0.8 1 1 10 10",
    "i1 0.7 41 41 50 50",
    "i1 0.6 21 21 30 30",
    "i1 0.5 60 60 70 70",
]


def test_tp_fp_difficult_duplicates_area_metric(voc_case):
    rec, prec, ap = voc_case(CASE)
    # cumulative: tp 1 1 1 2 2, fp 0 1 1 1 2 (the difficult hit counts as neither)
    np.testing.assert_allclose(rec, [0.5, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(prec, [1.0, 0.5, 0.5, 2 / 3, 0.5])
    # envelope: precision 1 up to recall .5, 2/3 up to recall 1
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_tp_fp_difficult_duplicates_07_metric(voc_case):
    _, _, ap = voc_case(CASE, use_07=True)
    # t = 0 .. 0.5 (6 points): max precision 1; t = 0.6 .. 1.0 (5 points): 2/3
    assert ap == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)


def test_order_is_by_score_not_by_file(voc_case):
    shuffled = [CASE[3], CASE[0], CASE[4], CASE[2], CASE[1]]
    assert voc_case(shuffled)[2] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_iou_threshold_is_strict_and_uses_plus_one(voc_case):
    # gt 1..10 is 10x10 = 100 px (+1 convention); 1..10 x 1..5 covers exactly half: IoU 0.5 -> FP
    rec, prec, ap = voc_case(["i1 0.9 1 1 10 5"])
    assert rec.tolist() == [0.0] and prec.tolist() == [0.0] and ap == 0.0
    # 1..10 x 1..6: IoU 0.6 -> TP
    rec, prec, ap = voc_case(["i1 0.9 1 1 10 6"])
    assert rec.tolist() == [0.5] and prec.tolist() == [1.0] and ap == pytest.approx(0.5)
    # ovthresh moves the bar
    assert voc_case(["i1 0.9 1 1 10 5"], ovthresh=0.4)[0].tolist() == [0.5]


def test_detection_in_an_image_without_that_class_is_fp(voc_case):
    rec, prec, _ = voc_case(["i2 0.9 1 1 10 10", "i1 0.8 1 1 10 10"])
    np.testing.assert_allclose(prec, [0.0, 0.5])
    np.testing.assert_allclose(rec, [0.0, 0.5])


def test_empty_detection_file_gives_zero(voc_case):
    rec, _prec, ap = voc_case([])
    assert ap == 0.0 and rec.size == 0


def test_class_with_no_positives_is_nan(voc_case):
    with pytest.warns(UserWarning, match="no non-difficult objects"):
        _, _, ap = voc_case(["i1 0.9 1 1 10 10"], cls="dog")
    assert np.isnan(ap)


def test_bad_detection_files_are_named(voc_case):
    with pytest.raises(ValueError, match="image id 'zz' is not in"):
        voc_case(["zz 0.9 1 1 10 10"])
    with pytest.raises(ValueError, match=r"det_car.txt:1: expected"):
        voc_case(["i1 0.9 1 1 10"])


def test_annotation_cache_is_keyed_by_image_set(voc_case, tmp_path):
    """Upstream's single annots.pkl gave KeyError for a second image set (#163)."""
    cache = str(tmp_path / "cache")
    voc_case(CASE, cachedir=cache)
    (tmp_path / "set.txt").write_text("i2\n")  # another image set, same cache folder
    _rec, _prec, ap = voc_case(["i2 0.9 1 1 10 10"], cls="person", cachedir=cache)
    assert ap == 1.0
    files = os.listdir(cache)
    assert len(files) == 2 and all(f.startswith("annots_set_") and f.endswith(".json") for f in files)


def test_annotation_cache_follows_edits(voc_case, tmp_path):
    voc_case(CASE)
    xml = tmp_path / "Annotations" / "i1.xml"
    xml.write_text("<annotation>" + _obj("car", (1, 1, 10, 10)) + "   </annotation>")  # one car left
    rec, _, _ = voc_case(["i1 0.9 1 1 10 10"])
    assert rec.tolist() == [1.0]


def test_voc_ap_07_uses_upstreams_float_thresholds():
    # np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004 > 0.3: recall 0.3 misses that point
    assert voc_ap(np.array([0.3]), np.array([1.0]), use_07_metric=True) == pytest.approx(3 / 11)
    assert voc_ap(np.array([0.5]), np.array([1.0]), use_07_metric=True) == pytest.approx(6 / 11)


def test_voc_ap_area_envelope():
    rec = np.array([0.25, 0.25, 0.5, 0.75])
    prec = np.array([1.0, 0.5, 0.6, 0.3])
    # envelope: 1 on (0, .25], 0.6 on (.25, .5], 0.3 on (.5, .75], then 0
    assert voc_ap(rec, prec) == pytest.approx(0.25 * 1 + 0.25 * 0.6 + 0.25 * 0.3)
    assert voc_ap(np.array([]), np.array([])) == 0.0
