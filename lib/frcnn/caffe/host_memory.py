"""Keep freed host memory inside the process, so that each CPU iteration reuses the last one's pages.

A CPU training iteration of the toy SMALL net allocates and frees some 100 MB of tensors
(activations, gradients, the update's work space). glibc's malloc serves blocks above its
mmap threshold (at first 128 KiB, raised as blocks are freed, up to 32 MiB) with a fresh
``mmap`` and hands them back with ``munmap``, and gives the free top of its heap back to the
system (``M_TRIM_THRESHOLD``); every block is then faulted in and zeroed by the kernel again on
its next use. Measured on a 2-core VM: ~2,100 page faults and ~6 ms of system time per
iteration; with the settings below ~600 faults and ~1 ms (docs/benchmarks.md).

:func:`keep_freed_memory` sets, once per process, ``M_MMAP_THRESHOLD`` to 32 MiB (glibc's
largest; larger blocks are still mapped and unmapped) and ``M_TRIM_THRESHOLD`` to 2 GiB - 1 (its
largest value: in effect the heap is not trimmed): the process keeps the high-water mark of its heap, which a training or
test run reaches every iteration anyway. Nothing changes in what is computed. It does nothing
off glibc, with ``FRCNN_KEEP_HOST_MEMORY=0`` in the environment (glibc's own behaviour), or when
the environment sets malloc's parameters itself (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_``, or ``glibc.malloc`` in
``GLIBC_TUNABLES``: those are the user's). The solver calls it for a net on the CPU, and so does
``test_net``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
ENV_KEYS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
OFF_SWITCH = "FRCNN_KEEP_HOST_MEMORY"

_done: bool | None = None


def left_to_the_user(environ: dict | None = None) -> bool:
    """Whether the environment turns this off or sets glibc malloc's parameters itself."""
    env = os.environ if environ is None else environ
    if env.get(OFF_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return True
    return any(k in env for k in ENV_KEYS) or "glibc.malloc." in env.get("GLIBC_TUNABLES", "")


def keep_freed_memory() -> bool:
    """Set glibc malloc's thresholds as the module docstring says (once per process); return
    whether they are set (False off glibc, or when the environment says otherwise)."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or left_to_the_user():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu = libc.gnu_get_libc_version  # glibc only (musl has no mallopt thresholds)
    except (OSError, AttributeError):
        return False
    del gnu
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
