"""The roidb cache (frcnn.datasets.roidb_io) with gt_overlaps stored by row: exact round trips,
format 2 (an older cache file is not read, it is rebuilt), and a cached roidb equals a built one."""

import json
import os

import numpy as np
import pytest

from frcnn.datasets import roidb_io
from frcnn.datasets.class_overlaps import ClassOverlaps
from frcnn.datasets.factory import get_imdb
from frcnn.errors import InputError


def _entries():
    crowd = ClassOverlaps.from_entries([0], [2], 1.0, (2, 3)).with_rows([1], -1.0)
    return [
        {"boxes": np.array([[1, 2, 3, 4], [0, 0, 9, 9]], np.uint16), "gt_overlaps": crowd, "flipped": False},
        {"boxes": np.zeros((0, 4), np.uint16), "gt_overlaps": ClassOverlaps.zeros(0, 3), "flipped": True},
        {"boxes": np.ones((3, 4), np.uint16), "gt_overlaps": ClassOverlaps.from_entries([0, 2], [1, 1], [1.0, 0.3],
                                                                                      (3, 3)), "flipped": False},
    ]


def test_pack_round_trip_keeps_every_value_and_the_type():
    roidb = _entries()
    arrays = roidb_io.pack_roidb(roidb)
    assert json.loads(str(arrays["__meta__"]))["kinds"]["gt_overlaps"] == "class_overlaps"
    assert "gt_overlaps" not in arrays  # no dense copy on disk
    back = roidb_io.unpack_roidb(arrays)
    for a, b in zip(roidb, back):
        assert isinstance(b["gt_overlaps"], ClassOverlaps) and b["gt_overlaps"] == a["gt_overlaps"]
        assert np.array_equal(b["gt_overlaps"].toarray(), a["gt_overlaps"].toarray())
        assert b["gt_overlaps"].max(axis=1).tolist() == a["gt_overlaps"].max(axis=1).tolist()


def test_dense_entries_beside_compact_ones_are_stored_compactly():
    roidb = _entries()
    roidb[2]["gt_overlaps"] = roidb[2]["gt_overlaps"].toarray()  # written by hand, say
    back = roidb_io.unpack_roidb(roidb_io.pack_roidb(roidb))
    assert isinstance(back[2]["gt_overlaps"], ClassOverlaps)
    assert np.array_equal(back[2]["gt_overlaps"].toarray(), roidb[2]["gt_overlaps"])


def test_format_1_caches_are_refused_and_the_key_changed(monkeypatch):
    assert roidb_io.ROIDB_FORMAT_VERSION == 2
    arrays = roidb_io.pack_roidb(_entries())
    meta = json.loads(str(arrays["__meta__"]))
    meta["version"] = 1
    arrays["__meta__"] = np.array(json.dumps(meta))
    with pytest.raises(InputError, match="format version 1 != 2"):
        roidb_io.unpack_roidb(arrays, where="old.npz")
    new_key = roidb_io.fingerprint(["voc_gt", "x"])
    monkeypatch.setattr(roidb_io, "ROIDB_FORMAT_VERSION", 1)
    assert roidb_io.fingerprint(["voc_gt", "x"]) != new_key  # a format-1 file has another name


def test_inconsistent_counts_are_an_error_naming_the_file(tmp_path):
    arrays = roidb_io.pack_roidb(_entries())
    arrays["gt_overlaps.row_nnz"] = arrays["gt_overlaps.row_nnz"][:-1]
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=r"bad\.npz: not a readable roidb cache .*gt_overlaps"):
        roidb_io.load_roidb(path)


def test_a_cached_gt_roidb_equals_the_built_one(tiny_voc):
    cfg, _ = tiny_voc
    built = get_imdb("shapes_trainval", cfg).gt_roidb()
    d = get_imdb("shapes_trainval", cfg)
    path = roidb_io.cache_path(d.cache_path, "shapes_trainval_gt_roidb", d._gt_key())
    assert os.path.exists(path)
    cached = d.gt_roidb()
    assert len(cached) == len(built)
    for a, b in zip(built, cached):
        assert isinstance(b["gt_overlaps"], ClassOverlaps) and a["gt_overlaps"] == b["gt_overlaps"]
        assert np.array_equal(a["gt_overlaps"].toarray(), b["gt_overlaps"].toarray())
