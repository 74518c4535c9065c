"""Weight surgery: a detector trained on one class list, narrowed to another (COCO -> VOC).

The paper's Table 12 tests a COCO-trained Faster R-CNN directly on PASCAL VOC ("COCO, no
VOC") and uses it to initialise VOC fine-tuning ("COCO+VOC07+12"): the softmax then runs
over the 20 VOC classes and background only, and the COCO-only classes are dropped. In the
weights that means picking, by class name, rows of the two class-specific layers:

- ``cls_score`` (K x D weights, K biases): row 0 (background) and the row of each kept class;
- ``bbox_pred`` (4K x D, 4K): the four rows ``4k .. 4k + 3`` of each kept class k, and row
  block 0 for background.

Every other layer (trunk, RPN, fc6/fc7) is copied unchanged, so the result loads into the
same net with K' = 21 classes (``frcnn.nets.adapt`` writes that prototxt). Source names map
to destination names through :data:`COCO_TO_VOC` (COCO's ``airplane`` is VOC's
``aeroplane``, ...); names that are the same in both need no entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from frcnn.caffe.caffemodel import BlobData, CaffeModel, LayerData, read_caffemodel, write_caffemodel
from frcnn.errors import InputError, UnknownNameError

BACKGROUND = "__background__"

#: COCO category names whose PASCAL VOC class has another name (the other 14 VOC classes are
#: spelled the same in COCO: bicycle, bird, boat, bottle, bus, car, cat, chair, cow, dog, horse,
#: person, sheep, train)
COCO_TO_VOC: dict[str, str] = {
    "airplane": "aeroplane",
    "dining table": "diningtable",
    "motorcycle": "motorbike",
    "potted plant": "pottedplant",
    "couch": "sofa",
    "tv": "tvmonitor",
}


def with_background(classes: Sequence[str]) -> list[str]:
    """``classes`` with ``__background__`` first (added when missing; elsewhere an error)."""
    names = [str(c) for c in classes]
    if BACKGROUND in names[1:]:
        raise InputError(f"class list: {BACKGROUND} may only come first (found at index {names.index(BACKGROUND, 1)})")
    if len(set(names)) != len(names):
        twice = sorted({c for c in names if names.count(c) > 1})
        raise InputError(f"class list: {', '.join(repr(c) for c in twice)} listed more than once")
    return names if names and names[0] == BACKGROUND else [BACKGROUND, *names]


def class_rows(
    src_classes: Sequence[str],
    dst_classes: Sequence[str],
    mapping: Mapping[str, str] | None = None,
    *,
    checked: Mapping[str, str] | None = None,
) -> list[int]:
    """For each destination class (background first), its index in the source class list.

    A destination class takes the source class that ``mapping`` sends to it, else the source
    class of the same name. ``checked`` are mapping entries the user gave: each must name a
    source class and a destination class (an unknown one is an error naming it) and replaces
    a ``mapping`` entry to the same destination. Entries of ``mapping`` whose names are not in
    the lists are simply unused (the built-in table also covers classes a shorter list leaves
    out).
    """
    src = with_background(src_classes)
    dst = with_background(dst_classes)
    table = dict(mapping or {})
    for s, d in (checked or {}).items():
        if s not in src:
            raise UnknownNameError(
                f"class mapping {s!r} -> {d!r}: {s!r} is not a source class (source classes: {', '.join(src[1:])})"
            )
        if d not in dst:
            raise UnknownNameError(
                f"class mapping {s!r} -> {d!r}: {d!r} is not a destination class (destination classes: "
                f"{', '.join(dst[1:])})"
            )
        # a user's entry replaces a built-in one for the same destination
        table = {k: v for k, v in table.items() if v != d}
        table[s] = d
    source_of: dict[str, int] = {}
    for i, s in enumerate(src):
        d = table.get(s, s)
        if d in source_of and d in dst:
            raise InputError(
                f"class mapping: destination class {d!r} gets two source classes, {src[source_of[d]]!r} and {s!r}"
            )
        source_of.setdefault(d, i)
    missing = [d for d in dst[1:] if d not in source_of]
    if missing:
        raise UnknownNameError(
            f"destination class(es) {', '.join(repr(d) for d in missing)}: no source class of that name and no "
            f"mapping to it (source classes: {', '.join(src[1:])}; add SRC=DST pairs to the mapping)"
        )
    return [source_of[d] for d in dst]


def _class_layer(model: CaffeModel, name: str, rows_per_class: int, num_src: int, where: str) -> LayerData:
    layer = model.layer(name)
    if layer is None:
        have = ", ".join(x.name for x in model.layers if x.blobs) or "none"
        raise UnknownNameError(f"{where}: has no layer '{name}' (layers with weights: {have})")
    if not layer.blobs:
        raise InputError(f"{where}: layer '{name}' has no weights")
    for i, blob in enumerate(layer.blobs):
        rows = blob.array.shape[0] if blob.array.ndim else 0
        if rows != rows_per_class * num_src:
            raise InputError(
                f"{where}: layer '{name}' blob {i} has {rows} rows (shape {tuple(blob.array.shape)}), but "
                f"{num_src} source classes (background included) need {rows_per_class * num_src}"
            )
    return layer


def select_class_rows(
    model: CaffeModel,
    rows: Sequence[int],
    num_src: int,
    cls_layer: str = "cls_score",
    bbox_layer: str | None = "bbox_pred",
    where: str = "model",
) -> CaffeModel:
    """A copy of ``model`` whose ``cls_layer`` keeps the class rows ``rows`` (source indices,
    background first) and whose ``bbox_layer`` keeps those classes' 4-row blocks. ``num_src``
    is the source class count (background included), checked against both layers."""
    picks = {cls_layer: np.asarray(rows, dtype=np.int64)}
    if bbox_layer:
        picks[bbox_layer] = (4 * picks[cls_layer][:, None] + np.arange(4)[None, :]).reshape(-1)
    for name, per in ((cls_layer, 1), (bbox_layer, 4)):
        if name:
            _class_layer(model, name, per, num_src, where)
    out = CaffeModel(name=model.name)
    for layer in model.layers:
        blobs = layer.blobs
        if layer.name in picks:
            idx = picks[layer.name]
            blobs = [BlobData(np.ascontiguousarray(b.array[idx], dtype=np.float32), b.legacy) for b in blobs]
        out.layers.append(LayerData(layer.name, layer.type, list(blobs), list(layer.bottoms), list(layer.tops)))
    return out


def narrow_classes(
    src_path: str,
    dst_path: str,
    src_classes: Sequence[str],
    dst_classes: Sequence[str],
    mapping: Mapping[str, str] | None = None,
    *,
    checked: Mapping[str, str] | None = None,
    cls_layer: str = "cls_score",
    bbox_layer: str | None = "bbox_pred",
) -> list[tuple[int, str, str]]:
    """Read ``src_path``, keep the rows of ``dst_classes`` (see :func:`class_rows`), write
    ``dst_path`` (atomically). Returns (source row, source name, destination name) per
    destination class, background first."""
    src = with_background(src_classes)
    dst = with_background(dst_classes)
    rows = class_rows(src, dst, mapping, checked=checked)
    model = read_caffemodel(src_path)
    write_caffemodel(dst_path, select_class_rows(model, rows, len(src), cls_layer, bbox_layer, where=src_path))
    return [(r, src[r], d) for r, d in zip(rows, dst)]
