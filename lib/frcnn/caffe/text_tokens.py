"""The tokenizer of protobuf text format: identifiers, numbers, quoted strings, punctuation,
``#`` comments; every token keeps its line and column (1-based) for error messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from frcnn.errors import InputError


class PrototxtError(InputError):
    """A malformed prototxt (or a field with the wrong type): the message names file:line:col."""


@dataclass
class Token:
    kind: str  # ident, number, string, punct, eof
    text: str
    value: Any
    line: int
    col: int


_NUMBER = re.compile(
    r"""(?:0[xX][0-9a-fA-F]+
        |(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?
        )""",
    re.VERBOSE,
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "?": "?",
}
_PUNCT = "{}<>[]:,;-"
_DIGITS = frozenset("0123456789")
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


def _number(text: str) -> int | float:
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    body = text[:-1] if text[-1] in "fF" else text
    if any(c in body for c in ".eE") or body != text:
        return float(body)
    if len(body) > 1 and body[0] == "0":
        return int(body, 8)  # protobuf text reads a leading 0 as octal
    return int(body)


def tokenize(text: str, filename: str) -> list[Token]:
    """Split ``text`` into tokens; raises PrototxtError naming file:line:col on a bad character
    or an unterminated string."""
    tokens: list[Token] = []
    i, line, line_start, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        col = i - line_start + 1
        if c == "\n":
            line += 1
            line_start = i + 1
            i += 1
        elif c in " \t\r\f\v":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "\"'":
            start = i
            value, i = _string(text, i, filename, line, col)
            tokens.append(Token("string", text[start:i], value, line, col))
        elif c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER.match(text, i)
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] in "_."):  # 12ab, 1.2.3, 0x1g
                raise PrototxtError(f"{filename}:{line}:{col}: expected a number, got {text[i:end + 1]!r}")
            tokens.append(Token("number", m.group(0), _number(m.group(0)), line, col))
            i = end
        elif c in _IDENT_START:  # ASCII only, as protobuf's tokenizer (not 'é' or '٣')
            m = _IDENT.match(text, i)
            tokens.append(Token("ident", m.group(0), m.group(0), line, col))
            i = m.end()
        elif c in _PUNCT:
            tokens.append(Token("punct", c, c, line, col))
            i += 1
        else:
            raise PrototxtError(f"{filename}:{line}:{col}: unexpected character {c!r}")
    tokens.append(Token("eof", "", None, line, i - line_start + 1))
    return tokens


def _string(text: str, i: int, filename: str, line: int, col: int) -> tuple[str, int]:
    """Read a quoted string starting at ``text[i]``; returns (value, index after the quote)."""
    quote = text[i]
    i += 1
    out = bytearray()
    n = len(text)
    while True:
        if i >= n or text[i] == "\n":
            raise PrototxtError(f"{filename}:{line}:{col}: unterminated string (expected a closing {quote})")
        c = text[i]
        if c == quote:
            i += 1
            break
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        if i + 1 >= n:
            raise PrototxtError(f"{filename}:{line}:{col}: unterminated string (expected a closing {quote})")
        e = text[i + 1]
        if e in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[e].encode()
            i += 2
        elif e in "01234567":
            j = i + 1
            while j < min(i + 4, n) and text[j] in "01234567":
                j += 1
            out.append(int(text[i + 1:j], 8) & 0xFF)
            i = j
        elif e in "xX":
            j = i + 2
            while j < min(i + 4, n) and text[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i + 2:
                ecol = i - (text.rfind("\n", 0, i) + 1) + 1
                raise PrototxtError(f"{filename}:{line}:{ecol}: expected hex digits after \\x")
            out.append(int(text[i + 2:j], 16))
            i = j
        else:
            ecol = i - (text.rfind("\n", 0, i) + 1) + 1
            raise PrototxtError(f"{filename}:{line}:{ecol}: unknown escape \\{e} in string")
    try:
        return out.decode("utf-8"), i
    except UnicodeDecodeError:
        return out.decode("latin-1"), i
