import numpy as np
import pytest

from frcnn.datasets.voc_xml import AnnotationError, AnnotationWarning, read_voc_xml, voc_gt_entry

CLASSES = {"__background__": 0, "cat": 1, "dog": 2}


def _write(tmp_path, body, name="x.xml"):
    path = tmp_path / name
    path.write_text(f"<annotation><size><width>100</width><height>80</height></size>{body}</annotation>")
    return str(path)


def _obj(name, box, difficult=0):
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def test_one_based_coordinates_become_zero_based_uint16(tmp_path):
    path = _write(tmp_path, _obj(" Cat ", (1, 2, 100, 80)) + _obj("dog", (10.7, 20.2, 30.5, 40.9)))
    e = voc_gt_entry(read_voc_xml(path), CLASSES, (100, 80))
    assert e["boxes"].dtype == np.uint16
    # -1 on every coordinate; fractions truncated as upstream's uint16 store did
    assert e["boxes"].tolist() == [[0, 1, 99, 79], [9, 19, 29, 39]]
    assert e["gt_classes"].tolist() == [1, 2]
    assert e["gt_overlaps"].dtype == np.float32
    assert e["gt_overlaps"].toarray().tolist() == [[0, 1, 0], [0, 0, 1]]
    assert e["gt_overlaps"].nnz == 2  # stored by row: one nonzero per gt row
    assert e["seg_areas"].tolist() == [100 * 79, 21 * 21]
    assert (e["width"], e["height"], e["flipped"]) == (100, 80, False)


def test_zero_coordinate_does_not_underflow(tmp_path):
    path = _write(tmp_path, _obj("cat", (0, 0, 10, 10)))
    e = voc_gt_entry(read_voc_xml(path), CLASSES, (100, 80))
    assert e["boxes"].tolist() == [[0, 0, 9, 9]]  # not 65535


def test_zero_size_and_inverted_boxes_are_dropped_with_a_named_warning(tmp_path):
    path = _write(
        tmp_path, _obj("cat", (5, 5, 5, 5)) + _obj("dog", (10, 10, 40, 40)) + _obj("dog", (30, 5, 20, 9))
    )
    with pytest.warns(AnnotationWarning) as rec:
        e = voc_gt_entry(read_voc_xml(path), CLASSES, (100, 80))
    msgs = [str(w.message) for w in rec]
    assert any("x.xml: object 0 (cat)" in m and "zero-size" in m for m in msgs)
    assert any("x.xml: object 2 (dog)" in m and "inverted" in m for m in msgs)
    assert e["boxes"].tolist() == [[9, 9, 39, 39]]


def test_boxes_outside_the_image_are_clipped_or_dropped(tmp_path):
    path = _write(tmp_path, _obj("cat", (90, 70, 120, 95)) + _obj("dog", (150, 10, 160, 20)))
    with pytest.warns(AnnotationWarning) as rec:
        e = voc_gt_entry(read_voc_xml(path), CLASSES, (100, 80))
    msgs = [str(w.message) for w in rec]
    assert any("object 0 (cat)" in m and "clipped" in m for m in msgs)
    assert any("object 1 (dog)" in m and "dropped" in m for m in msgs)
    assert e["boxes"].tolist() == [[89, 69, 99, 79]]


def test_xmax_equal_to_width_is_inside(tmp_path, recwarn):
    path = _write(tmp_path, _obj("cat", (1, 1, 100, 80)))
    e = voc_gt_entry(read_voc_xml(path), CLASSES, (100, 80))
    assert e["boxes"].tolist() == [[0, 0, 99, 79]]
    assert not [w for w in recwarn if issubclass(w.category, AnnotationWarning)]


def test_difficult_objects_follow_use_diff(tmp_path):
    path = _write(tmp_path, _obj("cat", (1, 1, 10, 10), difficult=1) + _obj("dog", (20, 20, 30, 30)))
    rec = read_voc_xml(path)
    assert voc_gt_entry(rec, CLASSES, (100, 80))["gt_classes"].tolist() == [2]
    assert voc_gt_entry(rec, CLASSES, (100, 80), use_diff=True)["gt_classes"].tolist() == [1, 2]


def test_unknown_classes_are_counted_and_left_out(tmp_path):
    path = _write(tmp_path, _obj("bird", (1, 1, 10, 10)) + _obj("cat", (20, 20, 30, 30)))
    unknown = {}
    e = voc_gt_entry(read_voc_xml(path), CLASSES, (100, 80), unknown=unknown)
    assert unknown == {"bird": 1}
    assert e["gt_classes"].tolist() == [1]


def test_image_with_no_objects_gives_empty_arrays(tmp_path):
    e = voc_gt_entry(read_voc_xml(_write(tmp_path, "")), CLASSES, (100, 80))
    assert e["boxes"].shape == (0, 4) and e["gt_overlaps"].shape == (0, 3) and e["gt_classes"].shape == (0,)


def test_size_mismatch_warns_and_uses_the_image(tmp_path):
    path = _write(tmp_path, _obj("cat", (1, 1, 120, 10)))
    with pytest.warns(AnnotationWarning, match="says 100x80 but the image is 130x90"):
        e = voc_gt_entry(read_voc_xml(path), CLASSES, (130, 90))
    assert e["boxes"].tolist() == [[0, 0, 119, 9]]


def test_bad_files_raise_naming_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        read_voc_xml(str(tmp_path / "missing.xml"))
    (tmp_path / "broken.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="broken.xml: not valid XML"):
        read_voc_xml(str(tmp_path / "broken.xml"))
    bad = _write(tmp_path, _obj("cat", (1, "abc", 10, 10)), name="bad.xml")
    with pytest.raises(ValueError, match=r"bad.xml: object 0 \(cat\): <ymin> is 'abc'"):
        read_voc_xml(bad)
    noname = _write(tmp_path, "<object><bndbox/></object>", name="noname.xml")
    with pytest.raises(ValueError, match="noname.xml: object 0 has no <name>"):
        read_voc_xml(noname)
    nobox = _write(tmp_path, "<object><name>cat</name></object>", name="nobox.xml")
    with pytest.raises(ValueError, match="nobox.xml: object 0 .* no <bndbox>"):
        read_voc_xml(nobox)


def test_missing_size_is_none(tmp_path):
    path = tmp_path / "nosize.xml"
    path.write_text("<annotation>" + _obj("cat", (1, 1, 5, 5)) + "</annotation>")
    assert read_voc_xml(str(path)).size is None


# -- every annotation problem names the file, the object (index and name) and the field ------
@pytest.mark.parametrize(("tag", "value"), [("difficult", "yes"), ("difficult", "nan"), ("truncated", "partly")])
def test_a_non_numeric_flag_names_file_object_and_field(tmp_path, tag, value):
    body = _obj("cat", (1, 1, 10, 10)) + _obj("dog", (2, 2, 20, 20)).replace(
        "<difficult>0</difficult>", f"<{tag}>{value}</{tag}>")
    path = _write(tmp_path, body, name="flags.xml")
    with pytest.raises(AnnotationError) as e:
        read_voc_xml(path)
    assert str(e.value) == f"{path}: object 1 (dog): <{tag}> is '{value}', expected 0 or 1"
    assert isinstance(e.value, ValueError)


def test_numeric_and_absent_flags_still_read(tmp_path):
    body = (_obj("cat", (1, 1, 10, 10), difficult="1.0") + _obj("dog", (2, 2, 20, 20), difficult="")
            + "<object><name>cat</name><truncated> 1 </truncated><bndbox><xmin>1</xmin><ymin>1</ymin>"
              "<xmax>5</xmax><ymax>5</ymax></bndbox></object>")
    rec = read_voc_xml(_write(tmp_path, body))
    assert [(o.difficult, o.truncated) for o in rec.objects] == [(True, False), (False, False), (False, True)]


def test_a_negative_coordinate_is_clamped_with_a_warning_naming_the_field(tmp_path):
    path = _write(tmp_path, _obj("cat", (-5, 3, 10, 10)) + _obj("dog", (0, 0, 10, 10)), name="neg.xml")
    with pytest.warns(AnnotationWarning) as rec:
        e = voc_gt_entry(read_voc_xml(path), CLASSES, (100, 80))
    msgs = [str(w.message) for w in rec]
    assert msgs == [f"{path}: object 0 (cat) box (-5, 3, 10, 10): negative <xmin> -5: clamped to 0"]
    assert e["boxes"].tolist() == [[0, 2, 9, 9], [0, 0, 9, 9]]  # and the 0 of a 0-based tool stays silent


def test_clipping_names_the_fields_that_left_the_image(tmp_path):
    path = _write(tmp_path, _obj("cat", (90, 10, 120, 95)))
    with pytest.warns(AnnotationWarning, match=r"object 0 \(cat\) box \(90, 10, 120, 95\) extends outside the "
                                               r"100x80 image \(<xmax>, <ymax>\): clipped"):
        voc_gt_entry(read_voc_xml(path), CLASSES, (100, 80))


def test_missing_coordinates_and_bad_xml_raise_annotation_errors(tmp_path):
    body = _obj("cat", (1, 1, 10, 10)).replace("<ymax>10</ymax>", "")
    path = _write(tmp_path, body, name="noymax.xml")
    with pytest.raises(AnnotationError, match=r"noymax.xml: object 0 \(cat\): <bndbox> has no <ymax>$"):
        read_voc_xml(path)
    enc = tmp_path / "enc.xml"
    enc.write_bytes(b"<?xml version='1.0' encoding='no-such-codec'?><annotation/>")
    with pytest.raises(AnnotationError, match="enc.xml: not valid XML"):
        read_voc_xml(str(enc))
    broken = tmp_path / "broken.xml"
    broken.write_text("<annotation><object>")
    with pytest.raises(AnnotationError, match="broken.xml: not valid XML"):
        read_voc_xml(str(broken))


def test_an_unreadable_size_is_warned_and_ignored(tmp_path):
    path = tmp_path / "size.xml"
    path.write_text("<annotation><size><width>wide</width><height>80</height></size>"
                    + _obj("cat", (1, 1, 5, 5)) + "</annotation>")
    with pytest.warns(AnnotationWarning, match=r"size.xml: <size> has <width> 'wide' and <height> '80', not a usable "
                                               r"size: using the image's own size"):
        assert read_voc_xml(str(path)).size is None
