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

import sys

__all__ = ["InputError", "UnknownNameError", "UserError", "is_user_error", "user_message"]


class UserError(Exception):
    """Bad input the user can fix; the message names the file or argument, the field and the problem."""


class InputError(UserError, ValueError):
    """A file or argument whose content is wrong: malformed, of the wrong type, out of range."""


class UnknownNameError(UserError, KeyError):
    """A name (a dataset, a config key, a net) that names nothing known."""

    def __str__(self) -> str:  # KeyError would show the message as a quoted repr
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


# Input-error types of frcnn that predate UserError: (module, class). They are looked up in
# sys.modules only, so this module imports nothing (an exception of a class whose module was
# never imported cannot be raised). Once they derive from UserError this list can go.
_PROJECT_INPUT_ERRORS = (
    ("frcnn.config", "ConfigError"),  # unknown config key, wrong value type, bad yml
    ("frcnn.caffe.text_tokens", "PrototxtError"),  # malformed prototxt (file:line:col)
    ("frcnn.caffe.wire", "CaffeModelError"),  # truncated or corrupt .caffemodel / .solverstate
    ("frcnn.training.train", "ResumeMismatch"),  # snapshots of a run with other settings
)

# Modules (a trailing "." : packages) that read the user's files, whose own ``raise ValueError``
# / ``raise KeyError`` statements are about those files: annotations, image sets, proposals,
# caches and images, get_imdb's unknown dataset name (frcnn.datasets); weights that do not fit
# the net (caffe.weights); torchvision state dicts, solver states, saved detections. Only an
# exception raised by a statement *in* these modules counts: a ValueError from numpy called by
# them keeps its traceback. Once they raise InputError / UnknownNameError this list can go.
_FILE_READERS = (
    "frcnn.datasets.",
    "frcnn.caffe.weights",
    "frcnn.caffe.torchvision_vgg16",
    "frcnn.caffe.solver_state",
    "frcnn.inference.detections",
)


def _project_input_error_types() -> tuple[type, ...]:
    found = []
    for module_name, class_name in _PROJECT_INPUT_ERRORS:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def _raised_in(exc: BaseException, modules: tuple[str, ...]) -> bool:
    """Whether the innermost frame of ``exc``'s traceback (its raise statement) is in ``modules``."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    name = tb.tb_frame.f_globals.get("__name__", "")
    return any(name == m or (m.endswith(".") and name.startswith(m)) for m in modules)


def is_user_error(exc: BaseException) -> bool:
    """True for bad input the user can fix; False for what is (or may be) a bug in frcnn.

    User errors: ``UserError`` and its subclasses; ``OSError`` (a path that is missing,
    unreadable or already there, a full disk); frcnn's older input-error types (config,
    prototxt, caffemodel, resume mismatch); and ValueError / KeyError raised by frcnn's
    readers of the user's files themselves (datasets, weights, saved states and detections).
    """
    if isinstance(exc, (UserError, OSError)):
        return True
    if isinstance(exc, _project_input_error_types()):
        return True
    return isinstance(exc, (ValueError, KeyError)) and _raised_in(exc, _FILE_READERS)


def user_message(exc: BaseException) -> str:
    """The error's message on one line (KeyError without quotes, OSError as 'path: reason')."""
    if isinstance(exc, OSError) and exc.filename is not None and str(exc).startswith("[Errno"):
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
