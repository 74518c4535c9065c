"""Protobuf text format, as Caffe writes nets and solvers, without a schema.

``parse(text, filename)`` / ``parse_file(path)`` return a :class:`Message`: an ordered list
of fields (name, value, line, column), where a value is an ``int``, ``float``, ``bool``,
``str`` (a quoted string), :class:`Enum` (a bare identifier such as ``MAX``) or a nested
``Message``. Repeated fields are simply fields that occur more than once, so the reader
needs no ``.proto`` file; the typed getters (``get_int``, ``get_float``, ...) check types
and name the file, line and field in their errors. ``to_text(message)`` writes a message
back (``write_file`` atomically), so tools can save adapted prototxts.
"""

from __future__ import annotations

import math
from typing import Any

from frcnn.utils.io import atomic_write

from .message import Enum, Field, Message
from .text_tokens import PrototxtError, Token, tokenize

__all__ = ["Enum", "Field", "Message", "PrototxtError", "parse", "parse_bytes", "parse_file", "to_text", "write_file"]


# -- parser --------------------------------------------------------------------------------
#: deepest nesting of messages accepted (protobuf's text parser stops at 100 too)
MAX_DEPTH = 100


class _Parser:
    def __init__(self, tokens: list[Token], filename: str) -> None:
        self.tokens = tokens
        self.i = 0
        self.filename = filename
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, tok: Token, expected: str) -> PrototxtError:
        got = "end of file" if tok.kind == "eof" else repr(tok.text)
        return PrototxtError(f"{self.filename}:{tok.line}:{tok.col}: expected {expected}, got {got}")

    def message(self, close: str | None, line: int, col: int) -> Message:
        msg = Message(filename=self.filename, line=line, col=col)
        while True:
            tok = self.peek()
            if close is None and tok.kind == "eof":
                return msg
            if close is not None and tok.kind == "punct" and tok.text == close:
                self.next()
                return msg
            if tok.kind != "ident":
                what = "a field name" + (f" or '{close}'" if close else "")
                raise self.fail(tok, what)
            self.next()
            sep = self.peek()
            if sep.kind == "punct" and sep.text == ":":
                self.next()
                sep = self.peek()
                if sep.kind == "punct" and sep.text in "{<":
                    self._sub(msg, tok)
                elif sep.kind == "punct" and sep.text == "[":
                    self.next()
                    self._list(msg, tok)
                else:
                    msg.fields.append(Field(tok.text, self.scalar(tok.text), tok.line, tok.col))
            elif sep.kind == "punct" and sep.text in "{<":
                self._sub(msg, tok)
            else:
                raise self.fail(sep, f"':' or '{{' after field name '{tok.text}'")
            nxt = self.peek()
            if nxt.kind == "punct" and nxt.text in ",;":
                self.next()

    def _sub(self, msg: Message, name: Token) -> None:
        open_tok = self.next()
        close = "}" if open_tok.text == "{" else ">"
        if self.depth >= MAX_DEPTH:
            raise PrototxtError(f"{self.filename}:{open_tok.line}:{open_tok.col}: messages nested more than "
                                f"{MAX_DEPTH} levels deep (at '{name.text}')")
        self.depth += 1
        try:
            sub = self.message(close, open_tok.line, open_tok.col)
        except PrototxtError as e:
            if str(e).endswith("got end of file"):
                raise PrototxtError(
                    f"{e} (the '{open_tok.text}' of '{name.text}' at line {open_tok.line} is never closed)"
                ) from None
            raise
        finally:
            self.depth -= 1
        msg.fields.append(Field(name.text, sub, name.line, name.col))

    def _list(self, msg: Message, name: Token) -> None:
        tok = self.peek()
        if tok.kind == "punct" and tok.text == "]":
            self.next()
            return
        while True:
            tok = self.peek()
            if tok.kind == "punct" and tok.text in "{<":
                self._sub(msg, name)
            else:
                msg.fields.append(Field(name.text, self.scalar(name.text), tok.line, tok.col))
            sep = self.next()
            if sep.kind == "punct" and sep.text == "]":
                return
            if not (sep.kind == "punct" and sep.text == ","):
                raise self.fail(sep, f"',' or ']' in the list of '{name.text}'")

    def scalar(self, field: str) -> Any:
        tok = self.next()
        if tok.kind == "string":
            text = tok.value
            while self.peek().kind == "string":  # adjacent strings concatenate
                text += self.next().value
            return text
        neg = False
        if tok.kind == "punct" and tok.text == "-":
            neg = True
            tok = self.next()
            if tok.kind not in ("number", "ident"):
                raise self.fail(tok, f"a number after '-' for field '{field}'")
        if tok.kind == "number":
            return -tok.value if neg else tok.value
        if tok.kind == "ident":
            low = tok.text.lower()
            if low in ("inf", "infinity", "nan"):
                v = math.nan if low == "nan" else math.inf
                return -v if neg else v
            if neg:
                raise self.fail(tok, f"a number after '-' for field '{field}'")
            if tok.text == "true":
                return True
            if tok.text == "false":
                return False
            return Enum(tok.text)
        raise self.fail(tok, f"a value for field '{field}'")


def parse(text: str, filename: str = "<string>") -> Message:
    """Parse protobuf text format; errors name ``filename``, line and column."""
    tokens = tokenize(text, filename)
    return _Parser(tokens, filename).message(None, 1, 1)


def parse_file(path: str) -> Message:
    """Read and parse a prototxt file (nets, solvers; ``.prototxt`` or upstream's ``.pt``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise PrototxtError(f"{path}: cannot read: {e.strerror}") from None
    return parse_bytes(raw, path)


def parse_bytes(raw: bytes, filename: str) -> Message:
    """Parse the bytes of a prototxt file (UTF-8); errors name ``filename``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PrototxtError(f"{filename}: not a text file (byte {e.start} is not UTF-8)") from None
    return parse(text, filename)


# -- writer --------------------------------------------------------------------------------
def _fmt_scalar(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        r = repr(v)
        return r
    if isinstance(v, str):
        out = []
        for ch in v:
            code = ord(ch)
            if ch == "\\":
                out.append("\\\\")
            elif ch == '"':
                out.append('\\"')
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t")
            elif ch == "\r":
                out.append("\\r")
            elif code < 32 or code == 127:
                out.append(f"\\{code:03o}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    raise TypeError(f"cannot write a {type(v).__name__} value ({v!r}) as protobuf text")


def to_text(msg: Message, indent: int = 0) -> str:
    """Protobuf text for ``msg`` (two-space indentation, Caffe's layout)."""
    pad = "  " * indent
    lines = []
    for f in msg.fields:
        if isinstance(f.value, Message):
            lines.append(f"{pad}{f.name} {{\n{to_text(f.value, indent + 1)}{pad}}}\n")
        else:
            lines.append(f"{pad}{f.name}: {_fmt_scalar(f.value)}\n")
    return "".join(lines)


def write_file(path: str, msg: Message) -> None:
    """Write ``msg`` as a prototxt file, atomically."""
    with atomic_write(path, "w") as f:
        f.write(to_text(msg))
