"""Safe on-disk roidb caches: one ``.npz`` per roidb, keyed by what it was built from.

Upstream pickled roidbs to ``data/cache/<imdb>_gt_roidb.pkl`` and never invalidated them
(a classic source of stale-cache errors). Here a cache file name carries a hash of the
format version, the annotation files (path, mtime, size) and the loader's options, so an
edited annotation or a new code format gives a new file; the file is written atomically
and read with ``allow_pickle=False``.

Layout of the npz: per key, array fields of all entries concatenated along axis 0 plus a
``<key>.len`` array of per-entry lengths; ``gt_overlaps`` (a
:class:`frcnn.datasets.class_overlaps.ClassOverlaps`) as its per-row nonzero counts, columns and
values; scalar and string fields as (N,) arrays; a ``__meta__`` JSON string with the version and
the kind of each key.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from frcnn.datasets.class_overlaps import ClassOverlaps, as_class_overlaps
from frcnn.errors import InputError, UnknownNameError
from frcnn.utils.io import atomic_write

#: bump when the content or layout of any cached roidb changes (2: gt_overlaps stored by row)
ROIDB_FORMAT_VERSION = 2


def fingerprint(parts: Iterable[Any], files: Iterable[str] = ()) -> str:
    """A 16-hex-digit hash of ``parts`` (JSON-able values) and of each file's path, mtime and size.

    A missing file contributes its path and ``missing``, so creating it changes the key.
    """
    h = hashlib.sha1()
    h.update(json.dumps([ROIDB_FORMAT_VERSION, list(parts)], sort_keys=True, default=str).encode())
    for path in files:
        try:
            st = os.stat(path)
            h.update(f"{os.path.abspath(path)}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
        except FileNotFoundError:
            h.update(f"{os.path.abspath(path)}\0missing\n".encode())
    return h.hexdigest()[:16]


def cache_path(cache_dir: str, stem: str, key: str) -> str:
    """``<cache_dir>/<stem>_<key>.npz``."""
    return os.path.join(cache_dir, f"{stem}_{key}.npz")


def _kind(value: Any) -> str:
    if isinstance(value, ClassOverlaps):
        return "class_overlaps"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, str):
        return "str"
    raise TypeError(f"roidb cache: cannot store a field of type {type(value).__name__}")


def pack_roidb(roidb: list[dict]) -> dict[str, np.ndarray]:
    """The npz arrays that hold ``roidb`` (see the module docstring)."""
    keys = sorted(roidb[0].keys()) if roidb else []
    kinds: dict[str, str] = {}
    out: dict[str, np.ndarray] = {}
    for key in keys:
        values = []
        for i, entry in enumerate(roidb):
            if key not in entry:
                raise UnknownNameError(f"roidb cache: entry {i} lacks field '{key}' that entry 0 has")
            values.append(entry[key])
        kind = _kind(values[0])
        if kind == "array" and any(isinstance(v, ClassOverlaps) for v in values):
            kind = "class_overlaps"  # dense entries beside compact ones: store all compactly
        kinds[key] = kind
        if kind == "class_overlaps":
            out.update(_pack_class_overlaps(key, [as_class_overlaps(v) for v in values]))
        elif kind == "array":
            out[key] = np.concatenate([np.asarray(v) for v in values], axis=0)
            out[key + ".len"] = np.array([len(v) for v in values], dtype=np.int64)
        elif kind == "str":
            out[key] = np.array([str(v) for v in values], dtype=str)
        else:
            out[key] = np.array(values, dtype={"bool": bool, "int": np.int64, "float": np.float64}[kind])
    meta = {"version": ROIDB_FORMAT_VERSION, "num_entries": len(roidb), "kinds": kinds}
    out["__meta__"] = np.array(json.dumps(meta))
    return out


def unpack_roidb(arrays: Any, where: str = "roidb cache") -> list[dict]:
    """The roidb held by ``arrays`` (an open npz or a dict from :func:`pack_roidb`)."""
    meta = json.loads(str(arrays["__meta__"]))
    if meta.get("version") != ROIDB_FORMAT_VERSION:
        raise InputError(f"{where}: format version {meta.get('version')} != {ROIDB_FORMAT_VERSION}")
    n = int(meta["num_entries"])
    roidb: list[dict] = [{} for _ in range(n)]
    for key, kind in meta["kinds"].items():
        if kind == "class_overlaps":
            for i, value in enumerate(_unpack_class_overlaps(arrays, key, n)):
                roidb[i][key] = value
            continue
        data = np.asarray(arrays[key])
        if kind == "array":
            lens = np.asarray(arrays[key + ".len"])
            offsets = np.concatenate(([0], np.cumsum(lens)))
            for i in range(n):
                roidb[i][key] = data[offsets[i] : offsets[i + 1]].copy()
        else:
            cast = {"bool": bool, "int": int, "float": float, "str": str}[kind]
            for i in range(n):
                roidb[i][key] = cast(data[i])
    return roidb


def _pack_class_overlaps(key: str, values: list[ClassOverlaps]) -> dict[str, np.ndarray]:
    """``<key>.len`` rows and ``<key>.classes`` K per entry; ``<key>.row_nnz`` per row;
    ``<key>.cols`` / ``<key>.vals`` the nonzeros of all rows in order."""
    parts = [v.entries() for v in values]
    return {
        key + ".len": np.array([len(v) for v in values], dtype=np.int64),
        key + ".classes": np.array([v.shape[1] for v in values], dtype=np.int64),
        key + ".row_nnz": np.concatenate([v.row_counts() for v in values]).astype(np.int64),
        key + ".cols": np.concatenate([p[1] for p in parts]),
        key + ".vals": np.concatenate([p[2] for p in parts]),
    }


def _unpack_class_overlaps(arrays: Any, key: str, n: int) -> list[ClassOverlaps]:
    lens, classes = np.asarray(arrays[key + ".len"]), np.asarray(arrays[key + ".classes"])
    row_nnz, cols, vals = (np.asarray(arrays[key + s]) for s in (".row_nnz", ".cols", ".vals"))
    if len(lens) != n or len(classes) != n or lens.sum() != len(row_nnz) or row_nnz.sum() != len(cols):
        raise ValueError(f"field '{key}': inconsistent row counts")
    row_start = np.concatenate(([0], np.cumsum(lens)))
    ptr = np.concatenate(([0], np.cumsum(row_nnz)))
    out = []
    for i in range(n):
        r0, r1 = row_start[i], row_start[i + 1]
        indptr = ptr[r0 : r1 + 1] - ptr[r0]
        out.append(ClassOverlaps(indptr, cols[ptr[r0] : ptr[r1]], vals[ptr[r0] : ptr[r1]], int(classes[i])))
    return out


def save_roidb(path: str, roidb: list[dict], stale_glob: str | None = None) -> None:
    """Write ``roidb`` to ``path`` atomically; then remove files matching ``stale_glob`` (older
    caches of the same roidb under other keys)."""
    arrays = pack_roidb(roidb)
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    if stale_glob:
        for old in glob.glob(stale_glob):
            if os.path.abspath(old) != os.path.abspath(path):
                try:
                    os.unlink(old)
                except OSError:
                    pass


def load_roidb(path: str) -> list[dict]:
    """Read a roidb written by :func:`save_roidb` (never unpickles)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return unpack_roidb(npz, where=path)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a readable roidb cache ({e}); delete it to rebuild") from None
