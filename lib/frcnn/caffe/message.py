"""``Message``: a schema-less protobuf text message (ordered fields with positions), with
typed getters whose errors name the file, line and field. Parsed by ``prototxt.parse``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .text_tokens import PrototxtError

__all__ = ["Enum", "Field", "Message", "PrototxtError"]


class Enum(str):
    """A bare identifier value (an enum such as ``MAX`` or ``TRAIN``), as opposed to a quoted string."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Enum({str.__repr__(self)})"


@dataclass
class Field:
    name: str
    value: Any
    line: int = 0
    col: int = 0


class Message:
    """An ordered, schema-less protobuf text message; see the module docstring."""

    def __init__(self, fields: list[Field] | None = None, filename: str = "<string>",
                 line: int = 0, col: int = 0) -> None:
        self.fields: list[Field] = list(fields or [])
        self.filename = filename
        self.line = line
        self.col = col

    # -- generic access ----------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return [(f.name, f.value) for f in self.fields] == [(f.name, f.value) for f in other.fields]

    def __repr__(self) -> str:
        from .prototxt import to_text

        return f"Message({to_text(self).strip()!r})"

    def where(self, field: Field | None = None) -> str:
        """``file:line:col`` of a field (or of this message)."""
        if field is not None:
            return f"{self.filename}:{field.line}:{field.col}"
        return f"{self.filename}:{self.line}:{self.col}"

    def all_fields(self, name: str) -> list[Field]:
        return [f for f in self.fields if f.name == name]

    def get_all(self, name: str) -> list[Any]:
        """Every value of a (repeated) field, in order."""
        return [f.value for f in self.fields if f.name == name]

    def _last(self, name: str) -> Field | None:
        found = self.all_fields(name)
        return found[-1] if found else None  # protobuf: the last value of an optional field wins

    def get(self, name: str, default: Any = None) -> Any:
        f = self._last(name)
        return default if f is None else f.value

    def add(self, name: str, value: Any) -> Message:
        """Append a field (repeated fields: call again)."""
        self.fields.append(Field(name, value))
        return self

    def set(self, name: str, value: Any) -> Message:
        """Replace every occurrence of ``name`` by one field (appended if absent)."""
        for i, f in enumerate(self.fields):
            if f.name == name:
                self.fields[i] = Field(name, value, f.line, f.col)
                self.fields = [g for j, g in enumerate(self.fields) if j <= i or g.name != name]
                return self
        return self.add(name, value)

    def remove(self, name: str) -> Message:
        self.fields = [f for f in self.fields if f.name != name]
        return self

    def copy(self) -> Message:
        out = Message(filename=self.filename, line=self.line, col=self.col)
        for f in self.fields:
            v = f.value.copy() if isinstance(f.value, Message) else f.value
            out.fields.append(Field(f.name, v, f.line, f.col))
        return out

    # -- typed access ------------------------------------------------------------------
    def _typed(self, f: Field, kind: str, v: Any) -> Any:
        def bad() -> PrototxtError:
            got = f"the bare word {v}" if isinstance(v, Enum) else repr(v)
            return PrototxtError(f"{self.where(f)}: field '{f.name}' expects {kind}, got {got}")

        if kind == "an integer":
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad()
            return v
        if kind == "a number":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad()
            return float(v)
        if kind == "a boolean":
            if isinstance(v, bool):
                return v
            if isinstance(v, int) and v in (0, 1):
                return bool(v)
            if isinstance(v, Enum) and v in ("t", "f", "True", "False"):
                return v in ("t", "True")
            raise bad()
        if kind == "a string":
            if isinstance(v, Enum) or not isinstance(v, str):
                raise bad()
            return str(v)
        if kind == "an enum name":
            if isinstance(v, Enum):
                return str(v)
            if isinstance(v, int) and not isinstance(v, bool):
                return v  # numeric enum value; the caller maps it
            raise bad()
        if kind == "a message":
            if not isinstance(v, Message):
                raise bad()
            return v
        raise AssertionError(kind)

    def _get_typed(self, name: str, kind: str, default: Any) -> Any:
        f = self._last(name)
        return default if f is None else self._typed(f, kind, f.value)

    def _all_typed(self, name: str, kind: str) -> list[Any]:
        return [self._typed(f, kind, f.value) for f in self.all_fields(name)]

    def get_int(self, name: str, default: int | None = None) -> int | None:
        return self._get_typed(name, "an integer", default)

    def get_float(self, name: str, default: float | None = None) -> float | None:
        return self._get_typed(name, "a number", default)

    def get_bool(self, name: str, default: bool | None = None) -> bool | None:
        return self._get_typed(name, "a boolean", default)

    def get_str(self, name: str, default: str | None = None) -> str | None:
        return self._get_typed(name, "a string", default)

    def get_enum(self, name: str, default: str | None = None, choices: dict[str, int] | None = None) -> Any:
        """An enum value as its name; with ``choices`` (name -> number) numbers map to names
        and an unknown name raises."""
        f = self._last(name)
        if f is None:
            return default
        v = self._typed(f, "an enum name", f.value)
        if choices is not None:
            if isinstance(v, int):
                names = [k for k, n in choices.items() if n == v]
                if not names:
                    raise PrototxtError(f"{self.where(f)}: field '{name}' has no enum value {v}")
                return names[0]
            if v not in choices:
                raise PrototxtError(
                    f"{self.where(f)}: field '{name}' expects one of {', '.join(choices)}, got {v}")
        return v

    def get_msg(self, name: str) -> Message:
        """The sub-message ``name`` (an empty message when absent, as protobuf's default)."""
        f = self._last(name)
        if f is None:
            return Message(filename=self.filename, line=self.line, col=self.col)
        return self._typed(f, "a message", f.value)

    def get_ints(self, name: str) -> list[int]:
        return self._all_typed(name, "an integer")

    def get_floats(self, name: str) -> list[float]:
        return self._all_typed(name, "a number")

    def get_strs(self, name: str) -> list[str]:
        return self._all_typed(name, "a string")

    def get_msgs(self, name: str) -> list[Message]:
        return self._all_typed(name, "a message")

    def error(self, name: str, problem: str) -> PrototxtError:
        """An error naming the file, the position of field ``name`` (or of the message) and the problem."""
        f = self._last(name)
        return PrototxtError(f"{self.where(f)}: field '{name}': {problem}")
