"""VOC results files (comp4), the archive for the evaluation server, and the Python
evaluation driver (upstream's ``pascal_voc.py``).

A results file per class, ``<comp_id>_det_<image_set>_<class>.txt``, one line per detection:
``<image id> <score %.3f> <x1+1 %.1f> <y1+1> <x2+1> <y2+1>`` (1-based, as the devkit wants).
Sets without public annotations (VOC2012 test, the paper's Tables 4 and 12) are scored by the
PASCAL VOC evaluation server, which takes these files as ``results/VOC<year>/Main/...`` in
a ``.tar.gz`` (:func:`write_server_archive`).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator, Sequence

import numpy as np

from frcnn.datasets.voc_eval import voc_eval
from frcnn.datasets.voc_metric import metric_name
from frcnn.errors import InputError
from frcnn.utils.io import atomic_write

#: where a submission's detections are sent (upstream's devkit docs)
VOC_SERVER = "http://host.robots.ox.ac.uk:8080/"


def result_lines(dets_per_image: Sequence, image_index: Sequence[str]) -> Iterator[str]:
    """The results-file lines of one class (``dets_per_image[i]``: (N, 5) x1, y1, x2, y2, score)."""
    for im_ind, index in enumerate(image_index):
        dets = dets_per_image[im_ind]
        if dets is None or len(dets) == 0:
            continue
        dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
        for k in range(dets.shape[0]):
            yield (
                f"{index} {dets[k, -1]:.3f} {dets[k, 0] + 1:.1f} {dets[k, 1] + 1:.1f} "
                f"{dets[k, 2] + 1:.1f} {dets[k, 3] + 1:.1f}\n"
            )


def write_voc_results_file(
    all_boxes: Sequence[Sequence], image_index: Sequence[str], classes: Sequence[str], template: str
) -> list[str]:
    """Write one results file per non-background class (``template.format(class)``); returns the paths."""
    paths = []
    for cls_ind, cls in enumerate(classes):
        if cls == "__background__":
            continue
        print(f"Writing {cls} VOC results file")
        filename = template.format(cls)
        with atomic_write(filename, "w") as f:
            f.writelines(result_lines(all_boxes[cls_ind], image_index))
        paths.append(filename)
    return paths


def check_all_boxes(all_boxes: Sequence[Sequence], num_classes: int, num_images: int, name: str) -> None:
    """``all_boxes[class][image]`` must have ``num_classes`` x ``num_images`` entries."""
    if len(all_boxes) != num_classes:
        raise InputError(f"detections: {len(all_boxes)} classes, {name} has {num_classes}")
    for j, per_class in enumerate(all_boxes):
        if len(per_class) != num_images:
            raise InputError(f"detections: class {j} has {len(per_class)} images, {name} has {num_images}")


def write_server_archive(
    path: str,
    all_boxes: Sequence[Sequence],
    image_index: Sequence[str],
    classes: Sequence[str],
    year: str,
    image_set: str,
    comp_id: str = "comp4",
) -> list[str]:
    """Write ``path`` (``.tar.gz``, atomically) holding ``results/VOC<year>/Main/<comp_id>_det_
    <image_set>_<class>.txt`` for every class, as the evaluation server wants them (comp4:
    trained on any data but the test set). Returns the member names."""
    check_all_boxes(all_boxes, len(classes), len(image_index), f"VOC{year} {image_set}")
    folder = f"results/VOC{year}/Main"
    now = time.time()
    names = []
    with atomic_write(path, "wb") as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        for d in ("results", f"results/VOC{year}", folder):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for cls_ind, cls in enumerate(classes):
            if cls == "__background__":
                continue
            data = "".join(result_lines(all_boxes[cls_ind], image_index)).encode("utf-8")
            info = tarfile.TarInfo(f"{folder}/{comp_id}_det_{image_set}_{cls}.txt")
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
            names.append(info.name)
    return names


def do_python_eval(
    classes: Sequence[str],
    template: str,
    annopath: str,
    imagesetfile: str,
    cachedir: str | None,
    output_dir: str | None,
    use_07_metric: bool,
    ovthresh: float = 0.5,
) -> dict:
    """Evaluate every class, print upstream's lines, save ``<cls>_pr.npz`` in ``output_dir``.

    Returns ``{"ap": {class: AP}, "mean_ap": mean over classes with positives, "metric": its
    name, "pr": {class: (recall, precision, AP)}}`` (the arrays of :func:`voc_eval`, for curves).
    """
    aps: dict[str, float] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    print("VOC07 metric? " + ("Yes" if use_07_metric else "No"))
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    for cls in classes:
        if cls == "__background__":
            continue
        rec, prec, ap = voc_eval(template, annopath, imagesetfile, cls, cachedir, ovthresh, use_07_metric)
        aps[cls] = ap
        curves[cls] = (rec, prec, ap)
        print(f"AP for {cls} = {ap:.4f}")
        if output_dir:
            with atomic_write(os.path.join(output_dir, f"{cls}_pr.npz")) as f:
                np.savez(f, rec=rec, prec=prec, ap=np.float64(ap))
    values = np.array(list(aps.values()), dtype=np.float64)
    valid = values[~np.isnan(values)]
    mean_ap = float(valid.mean()) if valid.size else float("nan")
    metric = metric_name(use_07_metric)
    print(f"Mean AP = {mean_ap:.4f} ({metric})")
    print("~~~~~~~~")
    print("Results:")
    for ap in values:
        print(f"{ap:.3f}")
    print(f"{mean_ap:.3f}")
    print("~~~~~~~~")
    print("(computed by the Python re-implementation of the VOC devkit's evaluation)")
    return {"ap": aps, "mean_ap": mean_ap, "metric": metric, "pr": curves}
