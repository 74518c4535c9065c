"""What counts as a *user error*: bad input that the user can fix (a wrong path, an unknown
config key, a malformed prototxt), as opposed to a bug in frcnn.

The tools (``frcnn.cli.run_tool``) print a user error as one line and exit with status 2;
anything else keeps its traceback, because only a traceback helps to fix a bug. This module
is the one place that draws the line (``is_user_error``). It imports nothing from frcnn, so
any module can raise its classes.

New code raises a subclass of ``UserError``. The classes below also derive from the builtin
that callers catch today (``ValueError``, ``KeyError``), so raising them breaks no ``except``.
"""

from __future__ import annotations

__all__ = ["InputError", "UnknownNameError", "UserError", "is_user_error", "user_message"]


class UserError(Exception):
    """Bad input the user can fix; the message names the file or argument, the field and the problem."""


class InputError(UserError, ValueError):
    """A file or argument whose content is wrong: malformed, of the wrong type, out of range."""


class UnknownNameError(UserError, KeyError):
    """A name (a dataset, a config key, a net) that names nothing known."""

    def __str__(self) -> str:  # KeyError would show the message as a quoted repr
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


def is_user_error(exc: BaseException) -> bool:
    """True for bad input the user can fix; False for what is (or may be) a bug in frcnn.

    User errors: ``UserError`` and its subclasses (frcnn's ``ConfigError``, ``PrototxtError``,
    ``CaffeModelError``, ``WeightsError``, ``AnnotationError``, ``ResumeMismatch``,
    ``RunLockHeld`` and every error the dataset and weight readers raise about a file) and
    ``OSError`` (a path that is missing, unreadable or already there, a full disk).
    """
    return isinstance(exc, (UserError, OSError))


def user_message(exc: BaseException) -> str:
    """The error's message on one line (KeyError without quotes, OSError as 'path: reason')."""
    if isinstance(exc, OSError) and exc.filename is not None and str(exc).startswith("[Errno"):
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
