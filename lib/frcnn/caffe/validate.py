"""Checking a parsed prototxt against Caffe's message schema (``schema.py``), as protobuf's text
parser does when Caffe reads a net or a solver.

``check(msg, "NetParameter")`` / ``check(msg, "SolverParameter")`` raise a :class:`PrototxtError`
naming the file, line, column and field for the first field that Caffe would refuse:

- a name the message type does not have (``strid`` in a ``convolution_param``), with the closest
  known name as a hint;
- a value of the wrong kind: a block for a scalar, a scalar for a block, a string for a number,
  an integer out of its type's range (``uint32`` pads, ``int32`` counts), an unknown enum name;
- a non-repeated field given more than once (protobuf's "specified multiple times").

Values are checked by kind only; what a layer makes of them (positive sizes, matching counts)
stays with the layer.
"""

from __future__ import annotations

import difflib
from typing import Any

from .message import Enum, Field, Message
from .schema import ENUMS, MESSAGES, SCALARS
from .text_tokens import PrototxtError
from .v1 import V1_TYPE_NAMES

__all__ = ["check"]

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
_KINDS = {
    "float": "a number", "double": "a number", "bool": "a boolean", "string": "a string", "bytes": "a string",
    "layertype": "a string",
}


def check(msg: Message, type_name: str, context: str = "") -> None:
    """Raise a PrototxtError for the first field of ``msg`` (a ``type_name`` message, nested
    messages included) that Caffe's parser would refuse. ``context`` names where ``msg`` sits
    (e.g. "convolution_param of layer 'conv1'") for the error message."""
    table = MESSAGES[type_name]
    if type_name in ("LayerParameter", "V1LayerParameter"):
        name = msg.get("name")
        context = f"layer '{name}'" if isinstance(name, str) else "a layer without a name"
    first: dict[str, Field] = {}
    for f in msg.fields:
        spec = table.get(f.name)
        if spec is None:
            raise _unknown(msg, f, type_name, table, context)
        kind = spec.lstrip("*")
        if not spec.startswith("*"):
            if f.name in first:
                raise PrototxtError(f"{msg.where(f)}: field '{f.name}' is given more than once (it takes one "
                                    f"value; first given at line {first[f.name].line}){_in(context)}")
            first[f.name] = f
        if kind in MESSAGES:
            sub = _typed(msg, f, "a message", context)
            check(sub, kind, f"{f.name} of {context}" if context else f.name)
        elif kind == "layertype" and isinstance(f.value, Enum) and f.value in V1_TYPE_NAMES:
            raise PrototxtError(f"{msg.where(f)}: V1 enum type {f.value} inside a 'layer' block; write "
                                f"\"{V1_TYPE_NAMES[f.value]}\"{_in(context)}")
        elif kind in ("any", "v1type"):
            continue  # the V0 'layer' (refused by netspec with a better message); V1 types (v1.py)
        elif isinstance(f.value, Message):
            raise PrototxtError(f"{msg.where(f)}: field '{f.name}' expects {_describe(kind)}, got a {{ }} block"
                                f"{_in(context)}")
        elif kind in ENUMS:
            _check_enum(msg, f, ENUMS[kind], context)
        elif kind in _INT_RANGES:
            v = _typed(msg, f, "an integer", context)
            lo, hi = _INT_RANGES[kind]
            if not lo <= v <= hi:
                what = "must not be negative" if lo == 0 and v < 0 else f"is out of range for {kind}"
                raise PrototxtError(f"{msg.where(f)}: field '{f.name}' {what}, got {v}{_in(context)}")
        else:
            assert kind in SCALARS or kind == "layertype", kind
            _typed(msg, f, _KINDS[kind], context)


def _typed(msg: Message, f: Field, kind: str, context: str) -> Any:
    try:
        return msg._typed(f, kind, f.value)
    except PrototxtError as e:
        raise PrototxtError(f"{e}{_in(context)}") from None


def _describe(kind: str) -> str:
    if kind in ENUMS:
        return "one of " + ", ".join(ENUMS[kind])
    if kind in _INT_RANGES:
        return "an integer"
    return _KINDS[kind]


def _in(context: str) -> str:
    return f" (in {context})" if context else ""


def _unknown(msg: Message, f: Field, type_name: str, table: dict[str, str], context: str) -> PrototxtError:
    hint = difflib.get_close_matches(f.name, list(table), n=1, cutoff=0.6)
    notes = ([f"in {context}"] if context else []) + ([f"did you mean '{hint[0]}'?"] if hint else [])
    tail = f" ({'; '.join(notes)})" if notes else ""
    return PrototxtError(f"{msg.where(f)}: '{f.name}' is not a {type_name} field{tail}")


def _check_enum(msg: Message, f: Field, values: dict[str, int], context: str) -> None:
    v = _typed(msg, f, "an enum name", context)
    if isinstance(v, int):
        if v not in values.values():
            raise PrototxtError(f"{msg.where(f)}: field '{f.name}' has no enum value {v}{_in(context)}")
    elif v not in values:
        raise PrototxtError(f"{msg.where(f)}: field '{f.name}' expects one of {', '.join(values)}, got {v}"
                            f"{_in(context)}")
