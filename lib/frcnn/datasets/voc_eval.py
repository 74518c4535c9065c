"""PASCAL VOC detection AP, upstream's ``lib/datasets/voc_eval.py`` rules.

- Detections of one class are sorted by descending confidence (ties keep file order) and
  matched greedily to the gt of that class in their image: best IoU (with +1 areas) above
  ``ovthresh`` (strictly) against a difficult gt is ignored, against an unmatched gt is a
  TP, otherwise FP. Only non-difficult gt count as positives.
- AP: VOC07 11-point (``use_07_metric``) or the area under the monotone PR curve.

Differences from upstream, each a fix: the annotation cache is keyed by the image set and
the annotation files (upstream's single ``annots.pkl`` gave KeyError for another image set,
#163) and stored as JSON; class names are compared lower-cased (as the training loader
does); coordinates may be non-integer; zero-size/inverted gt boxes are dropped with a
warning (as in training); an empty detection file gives AP 0 instead of an IndexError.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from frcnn.datasets.roidb_io import fingerprint
from frcnn.datasets.voc_xml import AnnotationWarning, read_voc_xml
from frcnn.errors import InputError
from frcnn.utils.io import atomic_write

_CACHE_VERSION = 1


def parse_rec(filename: str) -> list[dict]:
    """All objects of a VOC XML file (difficult ones included): name, pose, truncated,
    difficult, bbox (raw 1-based ``[xmin, ymin, xmax, ymax]``)."""
    record = read_voc_xml(filename)
    objects = []
    for obj in record.objects:
        x1, y1, x2, y2 = obj.bbox
        if x2 <= x1 or y2 <= y1:
            warnings.warn(
                AnnotationWarning(
                    f"{filename}: object {obj.index} ({obj.name}) box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) "
                    "is zero-size or inverted: left out of evaluation"
                ),
                stacklevel=2,
            )
            continue
        objects.append(
            {
                "name": obj.name,
                "truncated": int(obj.truncated),
                "difficult": int(obj.difficult),
                "bbox": [x1, y1, x2, y2],
            }
        )
    return objects


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """AP from recall and precision arrays (VOC07 11-point if ``use_07_metric``)."""
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        # upstream's thresholds, float error included (0.30000000000000004, ...)
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0.0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return float(ap)
    # correct AP calculation: first append sentinel values at the end
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    # compute the precision envelope
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    # to calculate area under PR curve, look for points where X axis (recall) changes value
    i = np.where(mrec[1:] != mrec[:-1])[0]
    # and sum (\Delta recall) * prec
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def read_imageset(imagesetfile: str) -> list[str]:
    """Image ids of an image-set file, one per line (blank lines skipped)."""
    try:
        with open(imagesetfile) as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{imagesetfile}: image set file not found") from None
    return [x.strip() for x in lines if x.strip()]


def load_annotations(annopath: str, imagesetfile: str, cachedir: str | None) -> dict[str, list[dict]]:
    """{image id: parse_rec(...)} for the image set, cached in ``cachedir`` as JSON under a key
    made of the image set and every annotation file's path, mtime and size."""
    imagenames = read_imageset(imagesetfile)
    files = [annopath.format(name) for name in imagenames]
    cachefile = None
    if cachedir:
        key = fingerprint(
            ["voc_eval_annots", _CACHE_VERSION, os.path.abspath(imagesetfile), annopath],
            [imagesetfile, *files],
        )
        stem = os.path.splitext(os.path.basename(imagesetfile))[0]
        cachefile = os.path.join(cachedir, f"annots_{stem}_{key}.json")
        if os.path.exists(cachefile):
            try:
                with open(cachefile) as f:
                    data = json.load(f)
                if data.get("version") == _CACHE_VERSION and list(data["recs"]) == imagenames:
                    return data["recs"]
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: rebuild it
    recs = {}
    for i, (name, path) in enumerate(zip(imagenames, files)):
        recs[name] = parse_rec(path)
        if (i + 1) % 1000 == 0:
            print(f"Reading annotation for {i + 1}/{len(imagenames)}")
    if cachefile:
        print(f"Saving cached annotations to {cachefile}")
        with atomic_write(cachefile, "w") as f:
            json.dump({"version": _CACHE_VERSION, "recs": recs}, f)
    return recs


def read_detections(detfile: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids, confidences (N,), boxes (N, 4)) of a comp4 results file."""
    try:
        with open(detfile) as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{detfile}: detection results file not found") from None
    ids, conf, boxes = [], [], []
    for n, line in enumerate(lines):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise InputError(
                f"{detfile}:{n + 1}: expected '<id> <score> <x1> <y1> <x2> <y2>', got {line.strip()!r}"
            )
        try:
            values = [float(z) for z in parts[1:]]
        except ValueError:
            raise InputError(f"{detfile}:{n + 1}: non-numeric field in {line.strip()!r}") from None
        ids.append(parts[0])
        conf.append(values[0])
        boxes.append(values[1:])
    return ids, np.array(conf, dtype=np.float64), np.array(boxes, dtype=np.float64).reshape(-1, 4)


def voc_eval(
    detpath: str,
    annopath: str,
    imagesetfile: str,
    classname: str,
    cachedir: str | None,
    ovthresh: float = 0.5,
    use_07_metric: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(recall, precision, AP) of one class.

    ``detpath.format(classname)`` is the results file (lines ``<id> <score> <x1> <y1> <x2> <y2>``,
    1-based); ``annopath.format(image_id)`` an annotation file; ``imagesetfile`` lists the ids.
    """
    recs = load_annotations(annopath, imagesetfile, cachedir)
    match_name = classname.strip().lower()

    # extract gt objects for this class
    class_recs = {}
    npos = 0
    for imagename, objs in recs.items():
        R = [obj for obj in objs if obj["name"] == match_name]
        bbox = np.array([x["bbox"] for x in R], dtype=np.float64).reshape(-1, 4)
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + int(np.sum(~difficult))
        class_recs[imagename] = {"bbox": bbox, "difficult": difficult, "det": det}

    detfile = detpath.format(classname)
    image_ids, confidence, BB = read_detections(detfile)

    # sort by confidence (stable: equal scores keep file order)
    sorted_ind = np.argsort(-confidence, kind="stable")
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]

    # go down dets and mark TPs and FPs
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs.get(image_ids[d])
        if R is None:
            raise InputError(f"{detfile}: image id '{image_ids[d]}' is not in {imagesetfile}")
        bb = BB[d, :]
        ovmax = -np.inf
        BBGT = R["bbox"]
        if BBGT.size > 0:
            # intersection
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            # union
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = int(np.argmax(overlaps))
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0

    # compute precision recall
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    if npos == 0:
        warnings.warn(
            f"voc_eval: class '{classname}' has no non-difficult objects in {imagesetfile}; AP is nan",
            stacklevel=2,
        )
        return tp * np.nan, tp * np.nan, float("nan")
    rec = tp / float(npos)
    # avoid divide by zero in case the first detection matches a difficult ground truth
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = voc_ap(rec, prec, use_07_metric)
    return rec, prec, ap
