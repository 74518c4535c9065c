"""A minimal reader for MATLAB level-5 MAT files (what ``save -v7`` writes).

It reads what py-faster-rcnn's proposal files hold: numeric matrices (double, single,
integer, logical), char arrays and cell arrays of those, zlib-compressed or not, in
either byte order. Structs, objects and sparse matrices raise ``ValueError``; so do v4
and v7.3 (HDF5) files, which name the fix (re-save with ``save(..., '-v7')``).
SciPy is not needed.

Format: a 128-byte header (text, subsystem offset, version 0x0100, endian mark ``IM``),
then data elements, each an 8-byte tag (type, byte count; or the 4-byte "small element"
form) followed by data padded to 8 bytes. ``miCOMPRESSED`` elements hold a zlib stream of
elements; ``miMATRIX`` elements hold flags, dimensions, a name and the data, column-major.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from frcnn.errors import InputError

MI_MATRIX, MI_COMPRESSED = 14, 15
_MI_DTYPES = {
    1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8",
    16: "u1", 17: "u2", 18: "u4",  # miUTF8, miUTF16, miUTF32
}  # fmt: skip
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5
_MX_NUMERIC = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_F_COMPLEX, _F_LOGICAL = 0x0800, 0x0200


class _Reader:
    def __init__(self, data: bytes, endian: str, where: str) -> None:
        self.data, self.e, self.where = data, endian, where

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.where}: {what}")

    def tag(self, pos: int) -> tuple[int, int, int, int]:
        """(type, nbytes, data start, next element start) of the element at ``pos``."""
        if pos + 8 > len(self.data):
            raise self.fail(f"truncated data element at byte {pos}")
        first = int(np.frombuffer(self.data, self.e + "u4", 1, pos)[0])
        if first >> 16:  # small data element: 2-byte count, 2-byte type, 4 bytes of data
            return first & 0xFFFF, first >> 16, pos + 4, pos + 8
        nbytes = int(np.frombuffer(self.data, self.e + "u4", 1, pos + 4)[0])
        if pos + 8 + nbytes > len(self.data):
            raise self.fail(f"data element at byte {pos} claims {nbytes} bytes past the end of the file")
        if first == MI_COMPRESSED:
            return first, nbytes, pos + 8, pos + 8 + nbytes
        return first, nbytes, pos + 8, pos + 8 + ((nbytes + 7) // 8) * 8

    def numbers(self, pos: int) -> tuple[np.ndarray, int, int]:
        """(values, miType, next position) of a numeric sub-element."""
        mtype, nbytes, start, nxt = self.tag(pos)
        if mtype not in _MI_DTYPES:
            raise self.fail(f"unsupported data type {mtype} at byte {pos}")
        dt = np.dtype(self.e + _MI_DTYPES[mtype])
        return np.frombuffer(self.data, dt, nbytes // dt.itemsize, start), mtype, nxt

    def matrix(self, start: int, nbytes: int, want: list[str] | None = None) -> tuple[str, Any]:
        """(name, value) of the miMATRIX whose content is ``data[start:start + nbytes]``
        (value None when ``want`` is given and does not hold the name)."""
        if nbytes == 0:
            return "", np.zeros((0, 0))
        flags_arr, _, pos = self.numbers(start)
        flags = int(flags_arr[0])
        mx_class, complex_, logical = flags & 0xFF, bool(flags & _F_COMPLEX), bool(flags & _F_LOGICAL)
        dims_arr, _, pos = self.numbers(pos)
        dims = tuple(int(d) for d in dims_arr)
        name_arr, _, pos = self.numbers(pos)
        name = bytes(name_arr.astype(np.uint8)).decode("ascii", "replace")
        if want is not None and name not in want:
            return name, None
        count = int(np.prod(dims)) if dims else 0
        if mx_class == _MX_CELL:
            cells = np.empty(count, dtype=object)
            for k in range(count):
                mtype, nb, s, pos = self.tag(pos)
                if mtype != MI_MATRIX:
                    raise self.fail(f"cell '{name}' element {k} is not a matrix (type {mtype})")
                cells[k] = self.matrix(s, nb)[1]
            return name, cells.reshape(dims, order="F")
        if mx_class == _MX_CHAR:
            codes, _, _ = self.numbers(pos)
            chars = codes.astype(np.uint32).reshape(dims, order="F") if count else np.zeros(dims, np.uint32)
            if len(dims) == 2:
                rows = ["".join(map(chr, row)) for row in chars]
                return name, rows[0] if dims[0] == 1 else rows
            raise self.fail(f"char array '{name}' with {len(dims)} dimensions is not supported")
        if mx_class in (_MX_STRUCT, _MX_OBJECT, _MX_SPARSE):
            kind = {_MX_STRUCT: "struct", _MX_OBJECT: "object", _MX_SPARSE: "sparse"}[mx_class]
            raise self.fail(f"variable '{name}' is a {kind} array, which this reader does not support")
        if mx_class not in _MX_NUMERIC:
            raise self.fail(f"variable '{name}' has unsupported MATLAB class {mx_class}")
        real, _, pos = self.numbers(pos)
        if real.size != count:
            raise self.fail(f"variable '{name}' has {real.size} values for dimensions {dims}")
        values = real.astype(_MX_NUMERIC[mx_class])
        if complex_:
            imag, _, pos = self.numbers(pos)
            values = values + 1j * imag.astype(np.float64)
        if logical:
            values = values.astype(bool)
        return name, values.reshape(dims, order="F")


def load_mat(path: str, variable_names: list[str] | None = None) -> dict[str, Any]:
    """The variables of a level-5 MAT file: numeric arrays, str (or list of str) for char
    arrays, object arrays for cells (all with MATLAB's shape)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: MAT file not found") from None
    if len(data) < 128:
        raise InputError(
            f"{path}: not a MATLAB level-5 MAT file (too short for its 128-byte header; v4 files are not supported)"
        )
    text = data[:116].decode("latin-1")
    if data[126:128] == b"IM":
        endian = "<"
    elif data[126:128] == b"MI":
        endian = ">"
    else:
        raise InputError(f"{path}: not a MATLAB level-5 MAT file (a v4 file or another format)")
    if text.startswith("MATLAB 7.3") or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise InputError(
            f"{path}: MATLAB v7.3 (HDF5) MAT files are not supported; re-save it in MATLAB with "
            "save(file, vars, '-v7') or convert it to .npz with frcnn.datasets.proposals.save_proposals"
        )
    out: dict[str, Any] = {}
    reader = _Reader(data, endian, path)
    pos = 128
    while pos < len(data):
        mtype, nbytes, start, nxt = reader.tag(pos)
        if mtype == MI_COMPRESSED:
            try:
                inner = zlib.decompress(data[start : start + nbytes])
            except zlib.error as e:
                raise InputError(f"{path}: corrupt compressed element at byte {pos} ({e})") from None
            sub = _Reader(inner, endian, path)
            ipos = 0
            while ipos < len(inner):
                itype, inb, istart, ipos = sub.tag(ipos)
                if itype == MI_MATRIX:
                    name, value = sub.matrix(istart, inb, variable_names)
                    if variable_names is None or name in variable_names:
                        out[name] = value
        elif mtype == MI_MATRIX:
            name, value = reader.matrix(start, nbytes, variable_names)
            if variable_names is None or name in variable_names:
                out[name] = value
        pos = nxt
    return out
