import base64
import os
import struct
import zlib

import numpy as np
import pytest

from frcnn.datasets.mat5 import load_mat
from frcnn.datasets.proposals import (
    load_proposal_file,
    load_proposals,
    load_selective_search_mat,
    save_proposals,
)
from tests.datasets.matfile_writer import mat_elem, mat_header, mat_matrix

# Written by scipy.io.savemat(do_compression=True) (an independent writer) with
# boxes = 1x3 cell {[11 21 31 41; 1 2 3 5], zeros(0, 4), single([5 6 50 60])},
# images = 3x1 cell {'000005'; '000007'; '000009'}, other = int16([0 1 2; 3 4 5]).
SCIPY_MAT = base64.b64decode(
    "TUFUTEFCIDUuMCBNQVQtZmlsZSBQbGF0Zm9ybTogcG9zaXgsIENyZWF0ZWQgb246IFRodSBOb3YgMjYgMDY6NTM6NDAgMjAyNgAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABSU0PAAAAdgAAAHic42NgYNBgZGBgA9Ic"
    "QAxkggErEp8ZSoPEkvIrUouBNB8QFzAg9LGh6WMCYhYk8ziB2IEBBtSgzA/2ENoUJgWl7aE0B4RucIHyRRxA9hrgsZcBi70MUPc6"
    "IOljx+JPZH0geQEwawFQ2wEg9nAC+tgJAIPiC+0PAAAARAAAAHic42NgYPgAxGxAzAHEjAwQwArlM0PFGKFqMnMT01OLGRj4gGwL"
    "JH0saPpg6mHmCUD5BiBgSqF+cwr1WzIwAACWCAiaDwAAADQAAAB4nONjYGDwAGI2IOYAYi4GCGCF8pmAmBmIGaFi+SUZqUVQMR6w"
    "SmagHAtQHSuYBwBmoQLH"
)


def test_save_load_round_trip(tmp_path):
    boxes = [np.array([[0, 1, 10.5, 20]], np.float32), np.zeros((0, 4)), np.arange(12).reshape(3, 4)]
    path = str(tmp_path / "p.npz")
    save_proposals(path, boxes, ["a", "b", 7])
    got, ids = load_proposals(path)
    assert ids == ["a", "b", "7"]
    for a, b in zip(boxes, got):
        assert b.dtype == np.float32 and b.shape == np.asarray(a).shape
        np.testing.assert_array_equal(b, np.asarray(a, np.float32))
    assert os.listdir(tmp_path) == ["p.npz"]  # no temporary left behind
    assert load_proposal_file(path)[1] == ids


def test_save_and_load_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="image 1 have shape"):
        save_proposals(str(tmp_path / "x.npz"), [np.zeros((1, 4)), np.zeros((2, 5))], ["a", "b"])
    with pytest.raises(ValueError, match="2 box arrays but 1 image ids"):
        save_proposals(str(tmp_path / "x.npz"), [np.zeros((1, 4))] * 2, ["a"])
    with pytest.raises(ValueError, match="pickle proposal files are not read"):
        load_proposals(str(tmp_path / "old.pkl"))
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_proposals(str(tmp_path / "missing.npz"))
    (tmp_path / "junk.npz").write_bytes(b"\x80\x04junk")
    with pytest.raises(ValueError, match="junk.npz: not a readable"):
        load_proposals(str(tmp_path / "junk.npz"))
    np.savez(str(tmp_path / "other.npz"), a=np.zeros(3))
    with pytest.raises(ValueError, match="missing boxes"):
        load_proposals(str(tmp_path / "other.npz"))
    with pytest.raises(ValueError, match="unknown proposal file type"):
        load_proposal_file(str(tmp_path / "p.txt"))


def test_scipy_written_mat(tmp_path):
    path = tmp_path / "ss.mat"
    path.write_bytes(SCIPY_MAT)
    data = load_mat(str(path))
    assert data["boxes"].shape == (1, 3) and data["boxes"].dtype == object
    np.testing.assert_array_equal(data["boxes"][0, 0], [[11, 21, 31, 41], [1, 2, 3, 5]])
    assert data["boxes"][0, 1].shape == (0, 4)
    assert data["boxes"][0, 2].dtype == np.float32
    assert [data["images"][k, 0] for k in range(3)] == ["000005", "000007", "000009"]
    assert data["other"].dtype == np.int16 and data["other"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert set(load_mat(str(path), ["images"])) == {"images"}

    boxes, ids = load_selective_search_mat(str(path))
    assert ids == ["000005", "000007", "000009"]
    # (y1, x1, y2, x2) 1-based -> (x1, y1, x2, y2) 0-based
    np.testing.assert_array_equal(boxes[0], [[20, 10, 40, 30], [1, 0, 4, 2]])
    assert boxes[1].shape == (0, 4)
    np.testing.assert_array_equal(boxes[2], [[5, 4, 59, 49]])


@pytest.mark.parametrize("e", ["<", ">"])
@pytest.mark.parametrize("compress", [False, True])
def test_hand_built_mat_both_byte_orders(tmp_path, e, compress):
    # a 2x3 double stored as uint8 values (MATLAB stores small integers compactly), column-major
    m = np.array([[1, 2, 3], [4, 5, 6]], np.float64)
    dbl = mat_matrix(
        e, "m", 6, (2, 3), mat_elem(e, 2, bytes(m.ravel(order="F").astype(np.uint8))), small_name=True
    )
    cell_item = mat_matrix(e, "", 6, (1, 4), mat_elem(e, 9, np.array([3, 1, 9, 7], e + "f8").tobytes()))
    cell = mat_matrix(e, "boxes", 1, (1, 1), cell_item)
    chars = mat_matrix(
        e,
        "s",
        4,
        (1, 3),
        mat_elem(e, 4, np.array([ord(c) for c in "abc"], e + "u2").tobytes()),
        small_name=True,
    )
    logical = mat_matrix(e, "b", 9, (1, 2), mat_elem(e, 2, bytes([1, 0])), flags=0x0200, small_name=True)
    body = dbl + cell + chars + logical
    if compress:
        z = zlib.compress(body)
        body = struct.pack(e + "II", 15, len(z)) + z
    path = tmp_path / "h.mat"
    path.write_bytes(mat_header(e) + body)
    data = load_mat(str(path))
    np.testing.assert_array_equal(data["m"], m)
    assert data["m"].dtype == np.float64
    np.testing.assert_array_equal(data["boxes"][0, 0], [[3, 1, 9, 7]])
    assert data["s"] == "abc"
    assert data["b"].dtype == bool and data["b"].tolist() == [[True, False]]
    boxes, ids = load_selective_search_mat(str(path))
    assert ids is None and boxes[0].tolist() == [[0, 2, 6, 8]]


def test_unsupported_mat_files_are_named(tmp_path):
    e = "<"
    v73 = tmp_path / "v73.mat"
    v73.write_bytes(
        b"MATLAB 7.3 MAT-file, Platform: x".ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM" + b"\0" * 600
    )
    with pytest.raises(ValueError, match="v7.3 .*HDF5.*'-v7'"):
        load_mat(str(v73))
    struct_mat = tmp_path / "st.mat"
    struct_mat.write_bytes(mat_header(e) + mat_matrix(e, "st", 2, (1, 1), b""))
    with pytest.raises(ValueError, match="st.mat: variable 'st' is a struct"):
        load_mat(str(struct_mat))
    assert load_mat(str(struct_mat), ["other"]) == {}  # not asked for: skipped
    (tmp_path / "v4.mat").write_bytes(b"\0" * 40)
    with pytest.raises(ValueError, match="v4.mat: not a MATLAB level-5"):
        load_mat(str(tmp_path / "v4.mat"))
    with pytest.raises(FileNotFoundError, match="none.mat"):
        load_mat(str(tmp_path / "none.mat"))
    trunc = tmp_path / "trunc.mat"
    trunc.write_bytes(mat_header(e) + struct.pack("<II", 14, 1000) + b"\0" * 8)
    with pytest.raises(ValueError, match="trunc.mat: .*past the end"):
        load_mat(str(trunc))
