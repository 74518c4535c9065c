"""A tiny MATLAB level-5 writer for tests, written from the format description: byte orders
and element forms (small elements, compression) that scipy does not all produce."""

import struct
import zlib

import numpy as np


def mat_elem(e, mtype, payload, small=False):
    if small and len(payload) <= 4:  # "small data element": count and type share the first 4 bytes
        return struct.pack(e + "I", (len(payload) << 16) | mtype) + payload.ljust(4, b"\0")
    pad = (-len(payload)) % 8
    return struct.pack(e + "II", mtype, len(payload)) + payload + b"\0" * pad


def mat_matrix(e, name, mx_class, dims, body, flags=0, small_name=False):
    content = mat_elem(e, 6, struct.pack(e + "II", mx_class | flags, 0))
    content += mat_elem(e, 5, struct.pack(e + f"{len(dims)}i", *dims))
    content += mat_elem(e, 1, name.encode(), small=small_name)
    content += body
    return mat_elem(e, 14, content)


def mat_header(e):
    text = b"MATLAB 5.0 MAT-file, test".ljust(116, b" ")
    return text + b"\0" * 8 + struct.pack(e + "H", 0x0100) + (b"IM" if e == "<" else b"MI")


def write_double_mat(path, name, array, compress=True):
    """A MAT file holding one double matrix ``name``."""
    a = np.asarray(array, np.float64)
    body = mat_matrix("<", name, 6, a.shape, mat_elem("<", 9, a.ravel(order="F").astype("<f8").tobytes()))
    if compress:
        z = zlib.compress(body)
        body = struct.pack("<II", 15, len(z)) + z
    with open(path, "wb") as f:
        f.write(mat_header("<") + body)
