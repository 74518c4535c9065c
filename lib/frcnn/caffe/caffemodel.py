"""Read and write ``.caffemodel`` files (a binary NetParameter) without Caffe or protoc.

Fields used (caffe.proto): NetParameter ``name`` = 1, ``layer`` = 100 (LayerParameter:
``name`` = 1, ``type`` = 2, ``bottom`` = 3, ``top`` = 4, ``blobs`` = 7), legacy ``layers`` = 2
(V1LayerParameter: ``bottom`` = 2, ``top`` = 3, ``name`` = 4, ``type`` = 5 (enum), ``blobs`` = 6).
BlobProto: ``num``/``channels``/``height``/``width`` = 1-4 (legacy shape), ``data`` = 5 (float,
packed or not), ``diff`` = 6, ``shape`` = 7 (BlobShape ``dim`` = 1, int64), ``double_data`` = 8.
Every other field is skipped.
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass, field

import numpy as np

from frcnn.utils.io import atomic_write

from . import wire
from .v1 import v1_type_name
from .wire import FIXED32, FIXED64, LENGTH, VARINT, CaffeModelError, Reader

__all__ = ["BlobData", "CaffeModel", "CaffeModelError", "LayerData", "parse_caffemodel", "read_caffemodel",
           "write_caffemodel"]


@dataclass
class BlobData:
    array: np.ndarray  # float32, in its shape
    legacy: bool = False  # the shape came from num/channels/height/width


@dataclass
class LayerData:
    name: str
    type: str
    blobs: list[BlobData] = field(default_factory=list)
    bottoms: list[str] = field(default_factory=list)
    tops: list[str] = field(default_factory=list)


@dataclass
class CaffeModel:
    name: str = ""
    layers: list[LayerData] = field(default_factory=list)

    def layer(self, name: str) -> LayerData | None:
        return next((x for x in self.layers if x.name == name), None)


def _need(r: Reader, wt: int, want: int, offset: int, what: str) -> None:
    if wt != want:
        raise r.error(offset, f"field '{what}' has wire type {wt}, expected {want} (corrupt data)")


def _read_blob(r: Reader, layer: str, index: int) -> BlobData:
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    dims: list[int] | None = None
    legacy: dict[int, int] = {}
    for f, wt, v, off in r.fields():
        if f == 5:  # data
            if wt == LENGTH:
                if len(v) % 4:
                    raise r.error(off, f"packed float data of {len(v)} bytes is not a multiple of 4")
                floats.append(np.frombuffer(v, dtype="<f4"))
            else:
                _need(r, wt, FIXED32, off, "data")
                floats.append(np.frombuffer(v, dtype="<f4"))
        elif f == 8:  # double_data
            if wt == LENGTH:
                if len(v) % 8:
                    raise r.error(off, f"packed double data of {len(v)} bytes is not a multiple of 8")
                doubles.append(np.frombuffer(v, dtype="<f8"))
            else:
                _need(r, wt, FIXED64, off, "double_data")
                doubles.append(np.frombuffer(v, dtype="<f8"))
        elif f == 7:  # shape
            _need(r, wt, LENGTH, off, "shape")
            dims = []
            sr = r.sub(v, off, f"the shape of blob {index} of layer '{layer}'")
            for g, wt2, v2, off2 in sr.fields():
                if g != 1:
                    continue
                if wt2 == LENGTH:
                    dims.extend(wire.as_int64(d) for d in sr.packed_varints(v2, off2))
                else:
                    _need(sr, wt2, VARINT, off2, "dim")
                    dims.append(wire.as_int64(v2))
        elif f in (1, 2, 3, 4):
            _need(r, wt, VARINT, off, ("num", "channels", "height", "width")[f - 1])
            legacy[f] = wire.as_int64(v)
    is_legacy = bool(legacy)
    if is_legacy:  # Caffe prefers the legacy fields when any is present
        shape = tuple(legacy.get(k, 0) for k in (1, 2, 3, 4))
    else:
        shape = tuple(dims or ())
    if any(d < 0 for d in shape):
        raise r.error(0, f"blob {index} of layer '{layer}' has a negative dimension {shape}")
    chunks = doubles or floats
    values = (chunks[0] if len(chunks) == 1 else np.concatenate(chunks)) if chunks else np.zeros(0, np.float32)
    count = math.prod(shape)
    if values.size != count:
        raise r.error(0, f"blob {index} of layer '{layer}' has shape {shape} ({count} values) but holds "
                         f"{values.size} values")
    if values.dtype != np.float32:
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, as Caffe's cast
            values = values.astype(np.float32)  # double_data
    return BlobData(values.reshape(shape), is_legacy)


def _read_layer(r: Reader, v1: bool) -> LayerData:
    name_f, type_f, blobs_f, bottom_f, top_f = (4, 5, 6, 2, 3) if v1 else (1, 2, 7, 3, 4)
    layer = LayerData(name="", type="")
    blob_chunks = []
    for f, wt, v, off in r.fields():
        if f == name_f:
            _need(r, wt, LENGTH, off, "name")
            layer.name = r.string(v, off, "name")
        elif f == type_f:
            if v1:
                _need(r, wt, VARINT, off, "type")
                try:
                    layer.type = v1_type_name(int(v), f"{r.filename}: byte {r.base + off}")
                except ValueError:
                    layer.type = f"V1_TYPE_{int(v)}"
            else:
                _need(r, wt, LENGTH, off, "type")
                layer.type = r.string(v, off, "type")
        elif f == bottom_f and wt == LENGTH:
            layer.bottoms.append(r.string(v, off, "bottom"))
        elif f == top_f and wt == LENGTH:
            layer.tops.append(r.string(v, off, "top"))
        elif f == blobs_f:
            _need(r, wt, LENGTH, off, "blobs")
            blob_chunks.append((v, off))
    for i, (v, off) in enumerate(blob_chunks):
        layer.blobs.append(_read_blob(r.sub(v, off, f"blob {i} of layer '{layer.name}'"), layer.name, i))
    return layer


def read_caffemodel(path: str) -> CaffeModel:
    """Parse a .caffemodel (new ``layer`` or legacy V1 ``layers`` entries)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise CaffeModelError(f"{path}: empty file (byte 0)")
            # a private, writable mapping: the blobs are views into it (pages load as they are
            # read; no copy of the weights until they go into the net)
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except OSError as e:
        raise CaffeModelError(f"{path}: cannot read: {e.strerror}") from None
    return parse_caffemodel(memoryview(data), path)


def parse_caffemodel(data: bytes | bytearray | memoryview, filename: str) -> CaffeModel:
    """Parse the bytes of a .caffemodel; errors name ``filename`` and the byte offset. The blobs
    are views into ``data``."""
    r = Reader(memoryview(data), filename, 0, "NetParameter")
    model = CaffeModel()
    for f, wt, v, off in r.fields():
        if f == 1:
            _need(r, wt, LENGTH, off, "name")
            model.name = r.string(v, off, "name")
        elif f in (100, 2):
            _need(r, wt, LENGTH, off, "layer" if f == 100 else "layers")
            what = f"layer entry {len(model.layers)}"
            model.layers.append(_read_layer(r.sub(v, off, what), v1=f == 2))
    return model


def _blob_chunks(arr: np.ndarray, legacy: bool = False) -> tuple[list[bytes], int]:
    if legacy and arr.ndim <= 4:  # num/channels/height/width, as pre-2015 Caffe wrote them
        dims = (1,) * (4 - arr.ndim) + tuple(int(d) for d in arr.shape)
        shape = b"".join(wire.varint_field(i + 1, d) for i, d in enumerate(dims))
    else:
        shape = wire.length_delimited(7, wire.packed_varints(1, [int(d) for d in arr.shape]) if arr.ndim else b"")
    data = memoryview(np.ascontiguousarray(arr.reshape(-1), dtype="<f4")).cast("B")
    head = shape + wire.packed_float_header(5, arr.size)
    return [head, data], len(head) + len(data)


def write_caffemodel(path: str, model: CaffeModel) -> None:
    """Write ``model`` as a binary NetParameter with new-style ``layer`` entries, atomically.
    Blobs marked ``legacy`` get num/channels/height/width (padded with leading 1s) instead of
    ``shape``."""
    with atomic_write(path, "wb") as f:
        if model.name:
            f.write(wire.string_field(1, model.name))
        for layer in model.layers:
            head = wire.string_field(1, layer.name) + wire.string_field(2, layer.type)
            head += b"".join(wire.string_field(3, b) for b in layer.bottoms)
            head += b"".join(wire.string_field(4, t) for t in layer.tops)
            blobs = []
            size = len(head)
            for b in layer.blobs:
                arr = np.asarray(b.array if isinstance(b, BlobData) else b, dtype=np.float32)
                chunks, n = _blob_chunks(arr, isinstance(b, BlobData) and b.legacy)
                prefix = wire.key(7, LENGTH) + wire.varint(n)
                blobs.append([prefix] + chunks)
                size += len(prefix) + n
            f.write(wire.key(100, LENGTH) + wire.varint(size))
            f.write(head)
            for chunks in blobs:
                for c in chunks:
                    f.write(c)
