"""The protobuf binary wire format, by hand: enough to read and write Caffe's NetParameter.

Reading walks ``(field number, wire type, value)`` triples over a memoryview; every error
names the file and the absolute byte offset. Writing builds field keys, varints and
length-delimited chunks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Union

from frcnn.errors import InputError

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5


class CaffeModelError(InputError):
    """A truncated or corrupt binary protobuf file; the message names the file and byte offset."""


Value = Union[int, memoryview]


class Reader:
    """Iterates the fields of one message held in ``buf`` (which starts at ``base`` in the file)."""

    def __init__(self, buf: memoryview, filename: str, base: int = 0, what: str = "message") -> None:
        self.buf = buf
        self.filename = filename
        self.base = base
        self.what = what

    def error(self, pos: int, problem: str) -> CaffeModelError:
        return CaffeModelError(f"{self.filename}: byte {self.base + pos}: {problem} (in {self.what})")

    def _varint(self, pos: int) -> tuple[int, int]:
        result, shift, buf, n = 0, 0, self.buf, len(self.buf)
        start = pos
        while True:
            if pos >= n:
                raise self.error(start, "truncated varint (file cut short?)")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise self.error(start, "varint longer than 10 bytes (corrupt data)")

    def fields(self) -> Iterator[tuple[int, int, Value, int]]:
        """Yield (field number, wire type, value, offset of the value within ``buf``)."""
        pos, n = 0, len(self.buf)
        while pos < n:
            key_pos = pos
            key, pos = self._varint(pos)
            field, wt = key >> 3, key & 7
            if field == 0:
                raise self.error(key_pos, "field number 0 (corrupt data)")
            if wt == VARINT:
                value, pos2 = self._varint(pos)
                yield field, wt, value, pos
                pos = pos2
            elif wt == FIXED64:
                if pos + 8 > n:
                    raise self.error(pos, f"truncated 8-byte field {field}")
                yield field, wt, self.buf[pos:pos + 8], pos
                pos += 8
            elif wt == FIXED32:
                if pos + 4 > n:
                    raise self.error(pos, f"truncated 4-byte field {field}")
                yield field, wt, self.buf[pos:pos + 4], pos
                pos += 4
            elif wt == LENGTH:
                length, start = self._varint(pos)
                if start + length > n:
                    raise self.error(pos, f"field {field} claims {length} bytes but only {n - start} remain "
                                          "(file cut short?)")
                yield field, wt, self.buf[start:start + length], start
                pos = start + length
            else:
                raise self.error(key_pos, f"unsupported wire type {wt} for field {field} (corrupt data)")

    def sub(self, value: memoryview, offset: int, what: str) -> Reader:
        return Reader(value, self.filename, self.base + offset, what)

    def string(self, value: Value, offset: int, field: str) -> str:
        if not isinstance(value, memoryview):
            raise self.error(offset, f"field '{field}' should be a string")
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(offset, f"field '{field}' is not valid UTF-8") from None

    def packed_varints(self, value: memoryview, offset: int) -> list[int]:
        r = Reader(value, self.filename, self.base + offset, self.what)
        out, pos = [], 0
        while pos < len(value):
            v, pos = r._varint(pos)
            out.append(v)
        return out


def as_int64(v: int) -> int:
    """A varint read as a signed 64-bit integer (two's complement)."""
    return v - (1 << 64) if v >= 1 << 63 else v


# -- writing -------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field: int, wt: int) -> bytes:
    return varint((field << 3) | wt)


def length_delimited(field: int, payload: bytes) -> bytes:
    return key(field, LENGTH) + varint(len(payload)) + payload


def string_field(field: int, s: str) -> bytes:
    return length_delimited(field, s.encode("utf-8"))


def varint_field(field: int, n: int) -> bytes:
    return key(field, VARINT) + varint(n)


def float_field(field: int, x: float) -> bytes:
    return key(field, FIXED32) + struct.pack("<f", x)


def packed_varints(field: int, values: list[int]) -> bytes:
    return length_delimited(field, b"".join(varint(v) for v in values))


def packed_float_header(field: int, count: int) -> bytes:
    """Key and length of a packed float field of ``count`` values (the data follow as ``<f4``)."""
    return key(field, LENGTH) + varint(4 * count)

