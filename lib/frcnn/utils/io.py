"""Atomic file writing: write to a temporary name in the same folder, then rename.

Every temporary made here is named ``.<target name>.<random>.tmp`` beside its target (a
hidden name that no reader looks for); :func:`temporary_target` recognises such a name, so
that a program can remove the temporaries a killed run left behind (``os.replace`` never
ran for them) without touching anything else.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from typing import IO

TEMP_SUFFIX = ".tmp"
# mkstemp/mkdtemp put 8 characters of [a-z0-9_] between the prefix and the suffix
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(target_name: str) -> str:
    return "." + target_name + "."


def temporary_target(name: str) -> str | None:
    """The target name of a temporary made by :func:`atomic_write` or :func:`temporary_dir`
    (``'.x.caffemodel.ab12cd34.tmp'`` -> ``'x.caffemodel'``); None for any other name."""
    m = _TEMP_NAME.fullmatch(name)
    return m.group("target") if m else None


def temporary_dir(folder: str, target_name: str) -> str:
    """A new empty folder ``<folder>/.<target_name>.<random>.tmp`` (same naming as
    :func:`atomic_write`'s temporaries), for files that are published together by rename."""
    os.makedirs(folder, exist_ok=True)
    return tempfile.mkdtemp(prefix=_temp_prefix(target_name), suffix=TEMP_SUFFIX, dir=folder)


def fsync_dir(folder: str) -> None:
    """Make the renames in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    If the body raises, the temporary file is removed and ``path`` is left as it was, so a
    reader never sees a half-written cache, snapshot or result file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(os.path.basename(path)), suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
