"""Mutated VOC annotation files: each one reads (and becomes a roidb entry) or raises
AnnotationError naming the file; never a bare ValueError from float(), an IndexError, a
LookupError from an odd encoding declaration or an OverflowError."""

import warnings

import pytest

pytest.importorskip("hypothesis")  # a test requirement (README); a machine without it skips these

from hypothesis import given

from frcnn.datasets.voc_xml import AnnotationError, read_voc_xml, voc_gt_entry

from .mutations import fuzz_settings, mutate, mutations

SEED = b'''<?xml version="1.0"?>
<annotation>
  <folder>VOC2007</folder><filename>000001.jpg</filename>
  <size><width>100</width><height>80</height><depth>3</depth></size>
  <object><name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>48</xmin><ymin>24</ymin><xmax>95</xmax><ymax>71</ymax></bndbox></object>
  <object><name>Person</name><truncated>0</truncated><difficult>1</difficult>
    <bndbox><xmin>8.5</xmin><ymin>0</ymin><xmax>37</xmax><ymax>80</ymax></bndbox></object>
</annotation>
'''
CLASSES = {"__background__": 0, "dog": 1, "person": 2}


@pytest.fixture(scope="module")
def xml_path(tmp_path_factory):
    return tmp_path_factory.mktemp("voc") / "000001.xml"


def _read(path, raw: bytes):
    path.write_bytes(raw)
    return read_voc_xml(str(path))


def test_the_seed_reads(xml_path):
    rec = _read(xml_path, SEED)
    assert [(o.name, o.difficult, o.truncated) for o in rec.objects] == [("dog", False, True), ("person", True, False)]


@given(edits=mutations)
@fuzz_settings(1500)
def test_mutated_annotations_read_or_raise_annotation_errors(xml_path, edits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rec = _read(xml_path, mutate(SEED, edits))
        except AnnotationError as e:
            assert ".xml: " in str(e)
            return
        entry = voc_gt_entry(rec, CLASSES, (100, 80), use_diff=True)
    boxes = entry["boxes"]
    assert ((boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 2] <= 99) & (boxes[:, 3] <= 79)).all()
