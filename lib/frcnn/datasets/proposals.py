"""Proposal files: our ``.npz`` format, and upstream's selective-search ``.mat`` files.

``save_proposals(path, boxes_list, image_ids)`` writes one (R_i, 4) float32 array of
0-based ``x1, y1, x2, y2`` boxes per image (concatenated, with per-image lengths) and the
image ids; ``load_proposals`` reads it back without unpickling. Upstream's RPN proposal
files were pickles; they are refused (unsafe to load): regenerate them with
``tools/rpn_generate.py``.

A file may hold more than the boxes: ``save_proposals(..., extra={...})`` adds named arrays
(e.g. the per-image run time of ``tools/selective_search.py``), which ``load_proposals``
ignores and :func:`load_proposal_extras` reads.

How many proposals a Fast R-CNN run uses (``TRAIN.PROPOSAL_TOP_N`` / ``TEST.PROPOSAL_TOP_N``):
the first N of each image in the file's order, by :func:`keep_first_proposals` (training
roidb) and :func:`proposal_boxes` (testing).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from frcnn.datasets.class_overlaps import ClassOverlaps
from frcnn.errors import InputError
from frcnn.utils.io import atomic_write

PROPOSALS_FORMAT_VERSION = 1


_RESERVED = ("version", "boxes", "lengths", "image_ids")

#: the per-row fields of a roidb entry (one row per box), cut together by keep_first_proposals
ROW_FIELDS = ("boxes", "gt_classes", "gt_overlaps", "seg_areas", "max_overlaps", "max_classes", "bbox_targets")


def save_proposals(
    path: str, boxes_list: Sequence[np.ndarray], image_ids: Sequence, extra: dict[str, np.ndarray] | None = None
) -> None:
    """Write proposals (one (R, 4) array per image, same order as ``image_ids``) atomically;
    ``extra``: more named arrays to store (no object arrays)."""
    if len(boxes_list) != len(image_ids):
        raise InputError(
            f"save_proposals({path}): {len(boxes_list)} box arrays but {len(image_ids)} image ids"
        )
    arrays = []
    for i, b in enumerate(boxes_list):
        b = np.asarray(b, dtype=np.float32)
        if b.size == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise InputError(
                f"save_proposals({path}): boxes of image {i} have shape {b.shape}, expected (R, 4)"
            )
        arrays.append(b)
    boxes = np.concatenate(arrays, axis=0) if arrays else np.zeros((0, 4), np.float32)
    extra = {k: np.asarray(v) for k, v in (extra or {}).items()}
    for k, v in extra.items():
        if k in _RESERVED or v.dtype == object:
            raise InputError(f"save_proposals({path}): extra field '{k}' is reserved or an object array")
    with atomic_write(path) as f:
        np.savez(
            f,
            version=np.int64(PROPOSALS_FORMAT_VERSION),
            boxes=boxes,
            lengths=np.array([len(b) for b in arrays], dtype=np.int64),
            image_ids=np.array([str(x) for x in image_ids], dtype=str),
            **extra,
        )


def load_proposal_extras(path: str) -> dict[str, np.ndarray]:
    """The arrays a proposal file holds besides the boxes (``extra`` of :func:`save_proposals`)."""
    with _open_npz(path) as z:
        return {k: z[k] for k in z.files if k not in _RESERVED}


def proposal_boxes(entry: dict, top_n: int = -1) -> np.ndarray:
    """The proposal rows (``gt_classes == 0``) of a roidb entry, the first ``top_n`` of them
    in the entry's (= the file's) order when ``top_n > 0``."""
    boxes = entry["boxes"][np.asarray(entry["gt_classes"]) == 0]
    return boxes[:top_n] if top_n > 0 else boxes


def keep_first_proposals(roidb: list[dict], top_n: int) -> list[dict]:
    """Cut every entry to its gt rows and its first ``top_n`` proposal rows (in order), in
    place; ``top_n <= 0`` keeps everything. Returns ``roidb``."""
    if top_n <= 0:
        return roidb
    for entry in roidb:
        is_proposal = np.asarray(entry["gt_classes"]) == 0
        rows = np.flatnonzero(is_proposal)
        if len(rows) <= top_n:
            continue
        keep = ~is_proposal
        keep[rows[:top_n]] = True
        for key in ROW_FIELDS:
            if key in entry:
                value = entry[key]
                entry[key] = (value if isinstance(value, ClassOverlaps) else np.asarray(value))[keep]
    return roidb


def _open_npz(path: str):
    """``np.load`` of a proposal ``.npz`` (no pickles), with errors that name the file."""
    if path.endswith(".pkl"):
        raise InputError(
            f"{path}: pickle proposal files are not read (unpickling is unsafe); "
            "regenerate the proposals with tools/rpn_generate.py (it writes .npz)"
        )
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: proposal file not found") from None
    except (OSError, EOFError, ValueError) as e:
        raise InputError(f"{path}: not a readable .npz proposal file ({e})") from None
    if not hasattr(z, "files"):
        raise InputError(f"{path}: not an .npz proposal file (a single array)")
    return z


def load_proposals(path: str) -> tuple[list[np.ndarray], list[str]]:
    """(boxes_list, image_ids) from a file written by :func:`save_proposals`."""
    with _open_npz(path) as z:
        missing = [k for k in ("boxes", "lengths", "image_ids") if k not in z.files]
        if missing:
            raise InputError(f"{path}: not a proposal file (missing {', '.join(missing)})")
        boxes, lengths, ids = z["boxes"], z["lengths"], [str(x) for x in z["image_ids"]]
    if boxes.ndim != 2 or boxes.shape[1] != 4 or lengths.sum() != boxes.shape[0] or len(lengths) != len(ids):
        raise InputError(
            f"{path}: inconsistent proposal file (boxes {boxes.shape}, {len(lengths)} lengths, "
            f"{len(ids)} ids)"
        )
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    return [boxes[offsets[i] : offsets[i + 1]].copy() for i in range(len(ids))], ids


def load_proposal_ids(path: str) -> list[str]:
    """The image ids of a file written by :func:`save_proposals`, without reading its boxes."""
    with _open_npz(path) as z:
        if "image_ids" not in z.files:
            raise InputError(f"{path}: not a proposal file (missing image_ids)")
        return [str(x) for x in z["image_ids"]]


def load_selective_search_mat(path: str) -> tuple[list[np.ndarray], list[str] | None]:
    """Upstream's ``selective_search_data/<imdb>.mat``: a ``boxes`` cell of (R, 4) 1-based
    ``y1, x1, y2, x2`` matrices (and an ``images`` cell of ids); returns 0-based
    ``x1, y1, x2, y2`` float arrays and the ids (None if the file has none)."""
    from frcnn.datasets.mat5 import load_mat

    data = load_mat(path, ["boxes", "images"])
    if "boxes" not in data:
        raise InputError(f"{path}: has no 'boxes' variable")
    raw = data["boxes"]
    if not (isinstance(raw, np.ndarray) and raw.dtype == object):
        raise InputError(f"{path}: 'boxes' is not a cell array")
    boxes_list = []
    for i, b in enumerate(raw.ravel(order="F")):
        b = np.asarray(b, dtype=np.float64)
        if b.size == 0:
            boxes_list.append(np.zeros((0, 4)))
            continue
        if b.ndim != 2 or b.shape[1] != 4:
            raise InputError(f"{path}: boxes{{{i + 1}}} has shape {b.shape}, expected (R, 4)")
        boxes_list.append(b[:, (1, 0, 3, 2)] - 1)
    ids = None
    if "images" in data:
        imgs = data["images"]
        if isinstance(imgs, np.ndarray) and imgs.dtype == object:
            ids = [str(x) for x in imgs.ravel(order="F")]
        elif isinstance(imgs, list):
            ids = [s.rstrip() for s in imgs]  # a char matrix: one padded row per image
    return boxes_list, ids


def load_proposal_file(path: str) -> tuple[list[np.ndarray], list[str] | None]:
    """Read ``.npz`` (ours) or ``.mat`` (upstream's selective search) proposals by extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".mat":
        return load_selective_search_mat(path)
    if ext in (".npz", ".pkl"):
        return load_proposals(path)  # a .pkl gets the explanatory error
    raise InputError(f"{path}: unknown proposal file type '{ext}' (expected .npz or .mat)")
