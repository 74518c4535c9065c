"""The start-up check of a run of several ranks: every rank must run the same config on the
same files and data, or their gradients (or detections) would not belong to one run.

Each rank describes what it runs as named items (a config key's value, a file's SHA-256, a
digest of the roidb); :func:`check_ranks_agree` gathers them and raises
:class:`RanksDisagree` on every rank, naming each item that differs, the ranks where it
does and both values, when any rank's items differ from rank 0's. A single process passes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from frcnn.errors import UserError
from frcnn.utils import distributed

#: config keys that may differ between ranks: each rank's own GPU, and where its machine keeps
#: the repository and the data (the files and the roidb are compared by content instead)
PER_RANK_KEYS = ("GPU_ID", "ROOT_DIR", "DATA_DIR", "MODELS_DIR")
#: differences listed in the message (the count of the others is given)
SHOWN = 6


class RanksDisagree(UserError, RuntimeError):
    """The ranks of a run do not run the same config, files or data."""


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def config_items(cfg: Any, prefix: str = "") -> dict[str, str]:
    """``"config KEY"`` -> the value as JSON, for every leaf key but :data:`PER_RANK_KEYS`."""
    out: dict[str, str] = {}
    for k in sorted(cfg):
        v = cfg[k]
        if isinstance(v, dict):
            out.update(config_items(v, f"{prefix}{k}."))
        elif f"{prefix}{k}" not in PER_RANK_KEYS:
            out[f"config {prefix}{k}"] = json.dumps(_plain(v), sort_keys=True, default=str)
    return out


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes (``missing`` when it cannot be read on this rank)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        return f"unreadable ({e.strerror})"
    return "sha256 " + h.hexdigest()[:16]


def file_items(files: dict[str, str]) -> dict[str, str]:
    """label -> :func:`file_digest` of the file, for ``files`` = {label: path}; the path is
    not compared (machines may keep the same file in different places)."""
    return {label: f"{file_digest(p)} ({os.path.basename(p)})" for label, p in files.items()}


def roidb_digest(roidb: list[dict]) -> str:
    """The images (file names, sizes, flips) and boxes of a roidb, as a count and a digest."""
    h = hashlib.sha256()
    for r in roidb:
        h.update(os.path.basename(str(r.get("image", ""))).encode())
        h.update(json.dumps([int(r.get("width", 0)), int(r.get("height", 0)), bool(r.get("flipped", False))]).encode())
        for key in ("boxes", "gt_classes"):
            if key in r:
                h.update(np.ascontiguousarray(r[key]).tobytes())
    return f"{len(roidb)} images, sha256 {h.hexdigest()[:16]}"


def image_list_digest(names: Iterable[str]) -> str:
    names = [str(n) for n in names]
    return f"{len(names)} images, sha256 {hashlib.sha256(chr(10).join(names).encode()).hexdigest()[:16]}"


def differences(per_rank: list[dict[str, str]]) -> list[str]:
    """One line per item that differs from rank 0's (missing items too)."""
    base = per_rank[0]
    lines = []
    for key in sorted(set().union(*per_rank)):
        ranks = [r for r, items in enumerate(per_rank) if items.get(key) != base.get(key)]
        if not ranks:
            continue
        r = ranks[0]
        more = f" (also rank {', '.join(map(str, ranks[1:]))})" if len(ranks) > 1 else ""
        lines.append(f"{key}: rank {r} has {per_rank[r].get(key, '(none)')}, rank 0 {base.get(key, '(none)')}{more}")
    return lines


def check_ranks_agree(items: dict[str, str], what: str) -> None:
    """Raise :class:`RanksDisagree` (on every rank) when the ranks' ``items`` differ."""
    if not distributed.current().distributed:
        return
    lines = differences(distributed.all_gather_json(items))
    if lines:
        shown = "; ".join(lines[:SHOWN]) + (f"; and {len(lines) - SHOWN} more" if len(lines) > SHOWN else "")
        raise RanksDisagree(f"the ranks do not run the same {what} (each must get the same command, files and data): "
                            f"{shown}")
