"""PASCAL VOC XML annotations: reading, and turning them into gt roidb entries.

VOC coordinates are 1-based inclusive; upstream subtracted 1 from all four and stored them
as uint16, so an ``xmin`` of 0 wrapped to 65535 and broke flipping (fast-rcnn#11). Real
annotation files have such defects, so here (each one warned with the file, the object (index
and name) and the field):

- a coordinate of 0 is clamped to 0 after the shift (no warning: 0-based tools write it);
  a negative one is clamped to 0 too, with a warning;
- a zero-size or inverted box (``xmax <= xmin`` or ``ymax <= ymin``) is dropped;
- a box that leaves the image is clipped to it (dropped if nothing is left);
- an unreadable ``<size>`` is ignored (the image's own size is used);
- a malformed XML, a missing object name, box or coordinate, a non-numeric coordinate or a
  ``<difficult>``/``<truncated>`` flag that is not a number raise an :class:`AnnotationError`.
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from frcnn.datasets.class_overlaps import ClassOverlaps
from frcnn.errors import InputError

_COORDS = ("xmin", "ymin", "xmax", "ymax")


class AnnotationWarning(UserWarning):
    """A defect in an annotation file that the loader repaired or skipped."""


class AnnotationError(InputError):
    """An annotation file that cannot be used; the message names the file, the object
    (index and name) and the field."""


@dataclass
class VocObject:
    name: str  # lower-cased, stripped
    difficult: bool
    truncated: bool
    bbox: tuple[float, float, float, float]  # raw xmin, ymin, xmax, ymax (1-based)
    index: int  # position among the file's <object> elements


@dataclass
class VocRecord:
    path: str
    size: tuple[int, int] | None  # (width, height) from <size>, if present and valid
    objects: list[VocObject]


def _text(node: ET.Element | None) -> str | None:
    return None if node is None or node.text is None else node.text.strip()


def _parse(path: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotation file not found") from None
    except ET.ParseError as e:
        raise AnnotationError(f"{path}: not valid XML ({e})") from None
    except (LookupError, ValueError) as e:  # an unknown or unsupported encoding="..." declaration
        raise AnnotationError(f"{path}: not valid XML ({e})") from None
    except OSError as e:
        raise OSError(f"{path}: cannot read annotation file ({e.strerror})") from None


def _size(root: ET.Element, path: str) -> tuple[int, int] | None:
    node = root.find("size")
    if node is None:
        return None
    texts = [_text(node.find(tag)) for tag in ("width", "height")]
    try:
        w, h = (float(t) for t in texts)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        w = h = math.nan
    if not (math.isfinite(w) and math.isfinite(h) and w >= 1 and h >= 1):
        warnings.warn(AnnotationWarning(f"{path}: <size> has <width> {texts[0]!r} and <height> {texts[1]!r}, not "
                                        "a usable size: using the image's own size"), stacklevel=3)
        return None
    return int(w), int(h)


def _flag(obj: ET.Element, tag: str, what: str) -> bool:
    """``<difficult>`` / ``<truncated>``: absent or empty is false, a number is true when non-zero."""
    t = _text(obj.find(tag))
    if not t:
        return False
    try:
        v = float(t)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise AnnotationError(f"{what}: <{tag}> is {t!r}, expected 0 or 1")
    return int(v) != 0


def read_voc_xml(path: str) -> VocRecord:
    """Parse one VOC annotation file; raises AnnotationError naming the file, object and field
    on bad input (FileNotFoundError / OSError when it cannot be read)."""
    root = _parse(path)
    size = _size(root, path)
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = _text(obj.find("name"))
        if not name:
            raise AnnotationError(f"{path}: object {k} has no <name>")
        what = f"{path}: object {k} ({name})"
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(f"{what} has no <bndbox>")
        coords = []
        for tag in _COORDS:
            t = _text(bb.find(tag))
            if t is None:
                raise AnnotationError(f"{what}: <bndbox> has no <{tag}>")
            try:
                v = float(t)
            except ValueError:
                raise AnnotationError(f"{what}: <{tag}> is {t!r}, not a number") from None
            if not math.isfinite(v):
                raise AnnotationError(f"{what}: <{tag}> is {t!r}, not a finite number")
            coords.append(v)
        objects.append(
            VocObject(
                name=name.lower(),
                difficult=_flag(obj, "difficult", what),
                truncated=_flag(obj, "truncated", what),
                bbox=(coords[0], coords[1], coords[2], coords[3]),
                index=k,
            )
        )
    return VocRecord(path=path, size=size, objects=objects)


def clean_voc_box(obj: VocObject, path: str, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The 0-based box of ``obj`` inside a ``width`` x ``height`` image, or None (dropped, warned)."""
    x1, y1, x2, y2 = obj.bbox
    what = f"{path}: object {obj.index} ({obj.name}) box ({x1:g}, {y1:g}, {x2:g}, {y2:g})"
    if x2 <= x1 or y2 <= y1:
        warnings.warn(AnnotationWarning(f"{what} is zero-size or inverted: dropped"), stacklevel=3)
        return None
    negative = [f"<{tag}> {v:g}" for tag, v in zip(_COORDS, obj.bbox) if v < 0]
    if negative:
        warnings.warn(AnnotationWarning(f"{what}: negative {', '.join(negative)}: clamped to 0"), stacklevel=3)
    # 1-based -> 0-based; a 0 written by a 0-based tool must not become -1
    b = [max(v - 1.0, 0.0) for v in (x1, y1, x2, y2)]
    limits = (width - 1.0, height - 1.0, width - 1.0, height - 1.0)
    clipped = [min(v, lim) for v, lim in zip(b, limits)]
    # truncate to integers as upstream's uint16 store did
    bx1, by1, bx2, by2 = (math.floor(v) for v in clipped)
    if clipped != b:
        fields = ", ".join(f"<{tag}>" for tag, v, c in zip(_COORDS, b, clipped) if v != c)
        if bx2 <= bx1 or by2 <= by1:
            warnings.warn(
                AnnotationWarning(f"{what} lies outside the {width}x{height} image ({fields}): dropped"),
                stacklevel=3,
            )
            return None
        warnings.warn(
            AnnotationWarning(f"{what} extends outside the {width}x{height} image ({fields}): clipped"),
            stacklevel=3,
        )
    if bx2 < bx1 or by2 < by1:  # pragma: no cover - excluded by the checks above
        return None
    return bx1, by1, bx2, by2


def voc_gt_entry(
    record: VocRecord,
    class_to_ind: dict[str, int],
    image_size: tuple[int, int],
    use_diff: bool = False,
    unknown: dict[str, int] | None = None,
) -> dict:
    """A gt roidb entry for one annotation file in an image of ``image_size`` (width, height).

    Difficult objects are left out unless ``use_diff``; objects of classes not in
    ``class_to_ind`` are left out and counted in ``unknown`` (name -> count).
    """
    width, height = image_size
    if record.size is not None and record.size != (width, height):
        warnings.warn(
            AnnotationWarning(
                f"{record.path}: <size> says {record.size[0]}x{record.size[1]} but the image is "
                f"{width}x{height}: using the image's size"
            ),
            stacklevel=2,
        )
    boxes, classes = [], []
    for obj in record.objects:
        if obj.difficult and not use_diff:
            continue
        cls = class_to_ind.get(obj.name)
        if cls is None or cls == 0:
            if unknown is not None:
                unknown[obj.name] = unknown.get(obj.name, 0) + 1
            continue
        box = clean_voc_box(obj, record.path, width, height)
        if box is None:
            continue
        boxes.append(box)
        classes.append(cls)
    num_objs = len(boxes)
    boxes_arr = np.array(boxes, dtype=np.uint16).reshape(num_objs, 4)
    gt_classes = np.array(classes, dtype=np.int32)
    overlaps = ClassOverlaps.from_entries(np.arange(num_objs), gt_classes, 1.0, (num_objs, len(class_to_ind)))
    b = boxes_arr.astype(np.float32)
    seg_areas = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return {
        "boxes": boxes_arr,
        "gt_classes": gt_classes,
        "gt_overlaps": overlaps,
        "flipped": False,
        "seg_areas": seg_areas.astype(np.float32),
        "width": int(width),
        "height": int(height),
    }
