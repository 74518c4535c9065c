"""Byte-level mutation of a seed input, driven by hypothesis (so failures shrink to a few edits).

A mutation is ``(position, operation, piece)``: the position is taken modulo the input length;
operations insert the piece, overwrite with it, delete as many bytes as it has, duplicate or
drop a span, or cut the input there. Pieces are bytes that tend to break readers: delimiters,
quotes, escapes, huge and negative numbers, invalid UTF-8, varint continuation bytes.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from frcnn.caffe.prototxt import Enum, Field, Message

PIECES = [
    b"{", b"}", b"<", b">", b":", b"[", b"]", b",", b";", b"-", b'"', b"'", b"\\", b"#", b"\n", b" ", b"\x00",
    b"0", b"1", b"-1", b"0x", b"1e999", b"99999999999999999999", b"nan", b"inf", b"true", b"TRAIN",
    b"strid", b"layer {", b"layers {", b'type: "Convolution"', b"num_output: ", b"\\x", b"\\777", b"\\u",
    b"\xc3\xa9", b"\xff", b"\xed\xa0\x80", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", b"\x7f",
    b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x00", b"\x2a\x04\x00\x00\x80\x7f", b"\x3a\x02\x08\xff",
    b"<!DOCTYPE a [<!ENTITY e 'x'>]>", b"&e;", b"&amp;", b"<object>", b"</object>", b"<name>",
    b"<difficult>", b"yes", b"<xmin>", b"-5", b"<?xml version='1.0' encoding='utf-16'?>",
]
OPS = ("insert", "overwrite", "delete", "duplicate", "drop", "cut")

mutations = st.lists(
    st.tuples(st.integers(0, 2**20), st.sampled_from(OPS), st.sampled_from(PIECES)), min_size=1, max_size=6
)


def mutate(seed: bytes, edits: list[tuple[int, str, bytes]]) -> bytes:
    data = bytearray(seed)
    for pos, op, piece in edits:
        i = pos % (len(data) + 1)
        span = 1 + pos % 64
        if op == "insert":
            data[i:i] = piece
        elif op == "overwrite":
            data[i:i + len(piece)] = piece
        elif op == "delete":
            del data[i:i + len(piece)]
        elif op == "duplicate":
            data[i:i] = data[i:i + span]
        elif op == "drop":
            del data[i:i + span]
        else:
            del data[i:]
    return bytes(data)


def fuzz_settings(examples: int) -> settings:
    """Reproducible runs (CI and local alike) that stay well inside a minute in total."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- structural mutation of a parsed prototxt ------------------------------------------------
def _values() -> list:
    return [
        0, 1, -1, 2, 3, 7, 64, 2**31 - 1, 2**31, 2**32, 10**12, -(2**31), 0.5, -0.5, 1e30, float("nan"),
        float("inf"), "data", "conv1", "pool1", "a", "", Enum("MAX"), Enum("AVE"), Enum("TRAIN"), Enum("SUM"),
        Enum("FOO"), True, False, Message(), Message().add("dim", 2).add("dim", 0),
    ]


NAMES = [
    "bottom", "top", "name", "type", "num_output", "kernel_size", "pad", "stride", "group", "axis", "dim",
    "coeff", "operation", "shape", "include", "phase", "bias_term", "transpose", "dilation", "kernel_h",
    "pad_w", "global_pooling", "local_size", "norm_region", "end_axis", "num_axes", "loss_weight",
    "propagate_down", "param", "lr_mult", "ignore_label", "top_k", "dropout_ratio", "concat_dim", "pool",
    "use_global_stats", "filler", "weight_filler", "std", "value", "variance_norm", "input", "input_shape",
    "input_dim", "layer", "layers", "exclude", "stage", "min_level",
]
FIELD_OPS = ("value", "delete", "duplicate", "rename", "swap")

field_edits = st.lists(
    st.tuples(st.integers(0, 2**16), st.sampled_from(FIELD_OPS), st.integers(0, 2**8)), min_size=1, max_size=4
)


def mutate_message(msg: Message, edits: list[tuple[int, str, int]]) -> Message:
    """A copy of ``msg`` with fields given other values, removed, repeated, renamed or swapped."""
    out = msg.copy()
    values = _values()
    for pos, op, k in edits:
        flat = []
        stack = [out]
        while stack:
            m = stack.pop()
            for i, f in enumerate(m.fields):
                flat.append((m, i))
                if isinstance(f.value, Message):
                    stack.append(f.value)
        if not flat:
            return out
        parent, i = flat[pos % len(flat)]
        f = parent.fields[i]
        if op == "value":
            v = values[k % len(values)]
            parent.fields[i] = Field(f.name, v.copy() if isinstance(v, Message) else v, f.line, f.col)
        elif op == "delete":
            del parent.fields[i]
        elif op == "duplicate":
            parent.fields.insert(i, Field(f.name, f.value.copy() if isinstance(f.value, Message) else f.value))
        elif op == "rename":
            parent.fields[i] = Field(NAMES[k % len(NAMES)], f.value, f.line, f.col)
        elif i + 1 < len(parent.fields):
            parent.fields[i], parent.fields[i + 1] = parent.fields[i + 1], f
    return out
