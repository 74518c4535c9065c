"""The .caffemodel reader/writer against hand-encoded protobuf bytes, round trips and corrupt files."""

import struct

import numpy as np
import pytest

from frcnn.caffe.caffemodel import (
    BlobData,
    CaffeModel,
    CaffeModelError,
    LayerData,
    read_caffemodel,
    write_caffemodel,
)


# a tiny independent protobuf encoder, written from the wire-format rules
def vint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def fld(num, wt, payload):
    key = vint(num << 3 | wt)
    if wt == 2:
        return key + vint(len(payload)) + payload
    return key + payload


def test_writer_bytes_follow_the_wire_format(tmp_path):
    path = str(tmp_path / "a.caffemodel")
    write_caffemodel(path, CaffeModel("ab", [LayerData("c", "Convolution", [BlobData(np.array([[1.5, -2.0]], np.float32))])]))
    data = (tmp_path / "a.caffemodel").read_bytes()
    shape = fld(7, 2, fld(1, 2, vint(1) + vint(2)))
    blob = shape + fld(5, 2, struct.pack("<2f", 1.5, -2.0))
    layer = fld(1, 2, b"c") + fld(2, 2, b"Convolution") + fld(7, 2, blob)
    assert data == fld(1, 2, b"ab") + fld(100, 2, layer)  # field 100 key is a2 06
    assert data[4:6] == b"\xa2\x06"


def test_round_trip(tmp_path):
    rs = np.random.RandomState(0)
    model = CaffeModel("net ü", [
        LayerData("conv1", "Convolution", [BlobData(rs.randn(4, 3, 3, 3).astype(np.float32)),
                                           BlobData(rs.randn(4).astype(np.float32))], ["data"], ["conv1"]),
        LayerData("relu", "ReLU", [], ["conv1"], ["conv1"]),
        LayerData("scalar", "X", [BlobData(np.array(3.25, np.float32)), BlobData(np.zeros((2, 0), np.float32))]),
        LayerData("legacy", "InnerProduct", [BlobData(rs.randn(1, 1, 5, 7).astype(np.float32), legacy=True)]),
    ])
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, model)
    back = read_caffemodel(path)
    assert back.name == model.name
    assert [(x.name, x.type, x.bottoms, x.tops) for x in back.layers] == \
           [(x.name, x.type, x.bottoms, x.tops) for x in model.layers]
    for a, b in zip(model.layers, back.layers):
        assert len(a.blobs) == len(b.blobs)
        for x, y in zip(a.blobs, b.blobs):
            assert x.array.shape == y.array.shape and np.array_equal(x.array, y.array) and x.legacy == y.legacy
    assert [p.name for p in tmp_path.iterdir()] == ["m.caffemodel"]


def test_reads_v1_layers_unpacked_floats_doubles_and_skips_unknown_fields(tmp_path):
    # V1LayerParameter: name 4, type 5 (enum: CONVOLUTION = 4, INNER_PRODUCT = 14), blobs 6
    blob_legacy = fld(1, 0, vint(1)) + fld(2, 0, vint(2)) + fld(3, 0, vint(1)) + fld(4, 0, vint(2))
    blob_legacy += b"".join(fld(5, 5, struct.pack("<f", v)) for v in (1, 2, 3, 4))  # not packed
    blob_legacy += fld(6, 2, struct.pack("<4f", 9, 9, 9, 9))  # diff, ignored
    blob_double = fld(7, 2, fld(1, 0, vint(3))) + fld(8, 2, struct.pack("<3d", 0.5, 0.25, -1))
    v1 = fld(4, 2, b"conv") + fld(5, 0, vint(4)) + fld(6, 2, blob_legacy) + fld(7, 5, struct.pack("<f", 1.0))
    v1b = fld(4, 2, b"fc") + fld(5, 0, vint(14)) + fld(6, 2, blob_double)
    unknown = fld(99, 0, vint(12345)) + fld(98, 1, b"\0" * 8) + fld(97, 2, b"whatever") + fld(96, 5, b"abcd")
    shape_unpacked = fld(7, 2, fld(1, 0, vint(2)) + fld(1, 0, vint(1)))
    new = fld(1, 2, b"new") + fld(2, 2, b"Scale") + fld(7, 2, shape_unpacked + fld(5, 2, struct.pack("<2f", 7, 8)))
    data = fld(1, 2, b"old") + unknown + fld(2, 2, v1) + fld(2, 2, v1b) + fld(100, 2, new) + unknown
    path = tmp_path / "old.caffemodel"
    path.write_bytes(data)
    m = read_caffemodel(str(path))
    assert m.name == "old" and [(x.name, x.type) for x in m.layers] == \
           [("conv", "Convolution"), ("fc", "InnerProduct"), ("new", "Scale")]
    conv = m.layers[0].blobs[0]
    assert conv.legacy and conv.array.shape == (1, 2, 1, 2) and conv.array.ravel().tolist() == [1, 2, 3, 4]
    assert m.layers[1].blobs[0].array.tolist() == [0.5, 0.25, -1.0]
    assert m.layers[2].blobs[0].array.shape == (2, 1) and m.layers[2].blobs[0].array.ravel().tolist() == [7, 8]


def _small(tmp_path):
    path = str(tmp_path / "s.caffemodel")
    write_caffemodel(path, CaffeModel("s", [LayerData("fc", "InnerProduct", [BlobData(np.arange(50, dtype=np.float32))])]))
    with open(path, "rb") as f:
        return path, f.read()


def test_truncated_files_raise_naming_file_and_byte(tmp_path):
    _, data = _small(tmp_path)
    cut = tmp_path / "cut.caffemodel"
    for n in range(4, len(data)):  # bytes 0-2 are the name field; every later cut lands inside the layer
        cut.write_bytes(data[:n])
        with pytest.raises(CaffeModelError) as e:
            read_caffemodel(str(cut))
        assert str(e.value).startswith(f"{cut}: byte ")
    cut.write_bytes(data[:-10])
    with pytest.raises(CaffeModelError, match=r"byte 5: field 100 claims \d+ bytes but only \d+ remain"):
        read_caffemodel(str(cut))


def test_corrupt_files(tmp_path):
    p = tmp_path / "c.caffemodel"
    p.write_bytes(b"")
    with pytest.raises(CaffeModelError, match="empty file"):
        read_caffemodel(str(p))
    p.write_bytes(b"\x0f\x00")  # wire type 7
    with pytest.raises(CaffeModelError, match="byte 0: unsupported wire type 7"):
        read_caffemodel(str(p))
    p.write_bytes(b"\xff" * 12)
    with pytest.raises(CaffeModelError, match="varint longer than 10 bytes"):
        read_caffemodel(str(p))
    blob = fld(7, 2, fld(1, 2, vint(3))) + fld(5, 2, struct.pack("<2f", 1, 2))
    p.write_bytes(fld(100, 2, fld(1, 2, b"x") + fld(7, 2, blob)))
    with pytest.raises(CaffeModelError, match=r"blob 0 of layer 'x' has shape \(3,\) \(3 values\) but holds 2 values"):
        read_caffemodel(str(p))
    p.write_bytes(fld(100, 2, fld(1, 0, vint(5))))
    with pytest.raises(CaffeModelError, match="field 'name' has wire type 0"):
        read_caffemodel(str(p))
    p.write_bytes(b"name: 'a text prototxt, not a binary file'\n")
    with pytest.raises(CaffeModelError):
        read_caffemodel(str(p))
    with pytest.raises(CaffeModelError, match="cannot read"):
        read_caffemodel(str(tmp_path / "missing.caffemodel"))
