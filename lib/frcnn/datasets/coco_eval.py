"""COCO bbox evaluation with pycocotools and upstream's printout (``coco.py``), then the
paper's two numbers (Table 11: mAP@.5 and mAP@[.5, .95], in percent), labelled, and a
``detection_results.json`` beside the detections for scripts that collect tables.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence

import numpy as np

from frcnn.utils.io import atomic_write

#: COCOeval's 12 summary numbers (``stats``), in its order
STAT_NAMES = (
    "AP@[.5,.95]", "AP@.5", "AP@.75", "AP@[.5,.95] small", "AP@[.5,.95] medium", "AP@[.5,.95] large",
    "AR@[.5,.95] 1 det", "AR@[.5,.95] 10 dets", "AR@[.5,.95] 100 dets", "AR@[.5,.95] small",
    "AR@[.5,.95] medium", "AR@[.5,.95] large",
)  # fmt: skip


def paper_numbers(result: dict, output_dir: str) -> str:
    """Print the paper's two COCO numbers (percent, labelled) and write every number of
    ``result`` to ``<output_dir>/detection_results.json``; returns the json's path."""
    print("~~~~ The paper's COCO metrics (Table 11), in percent ~~~~")
    print(f"mAP@.5 = {100 * result['ap50']:.1f}")
    print(f"mAP@[.5,.95] = {100 * result['mean_ap']:.1f}")
    path = os.path.join(output_dir, "detection_results.json")
    summary = {
        "mAP@.5": result["ap50"],
        "mAP@[.5,.95]": result["mean_ap"],
        "stats": dict(zip(STAT_NAMES, result["stats"])),
        "ap": result["ap"],
    }
    with atomic_write(path, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"Wrote the COCO numbers to: {path}")
    return path


def _mean_valid(precision: np.ndarray) -> float:
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else float("nan")


def coco_detection_eval(
    coco_gt, res_file: str, num_results: int, classes: Sequence[str], cat_ids: Sequence[int], output_dir: str
) -> dict:
    """COCOeval (bbox) of ``res_file``; prints AP@[.50:.95] overall and per class, then the
    standard summary; saves ``detection_results.npz``. ``cat_ids[k]`` is the category of
    ``classes[k + 1]``. Returns
    ``{"ap": {class: AP}, "mean_ap": AP@[.5:.95], "ap50": AP@.5, "stats": [12 numbers]}``
    and prints / writes them with :func:`paper_numbers`."""
    from pycocotools.cocoeval import COCOeval

    if num_results == 0:
        warnings.warn(f"{res_file}: no detections; every AP is 0", stacklevel=2)
        result = {"ap": {c: 0.0 for c in classes[1:]}, "mean_ap": 0.0, "ap50": 0.0, "stats": [0.0] * 12}
        paper_numbers(result, output_dir)
        return result
    coco_dt = coco_gt.loadRes(res_file)
    coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()

    eval_cat_ids = list(coco_eval.params.catIds)
    iou_thrs = coco_eval.params.iouThrs
    ind_lo = int(np.where(np.isclose(iou_thrs, 0.5))[0][0])
    ind_hi = int(np.where(np.isclose(iou_thrs, 0.95))[0][0])
    # precision: (iou, recall, class, area range, max dets); area 'all' = 0, maxDets 100 = 2
    precision = coco_eval.eval["precision"][ind_lo : ind_hi + 1, :, :, 0, 2]
    ap_default = _mean_valid(precision)
    print(f"~~~~ Mean and per-category AP @ IoU=[{iou_thrs[ind_lo]:.2f},{iou_thrs[ind_hi]:.2f}] ~~~~")
    print(f"{100 * ap_default:.1f}")
    aps = {}
    for cls_ind, cls in enumerate(classes):
        if cls == "__background__":
            continue
        # COCOeval orders classes by sorted category id, not by the json's order
        aps[cls] = _mean_valid(precision[:, :, eval_cat_ids.index(cat_ids[cls_ind - 1])])
        print(f"{100 * aps[cls]:.1f}")
    print("~~~~ Summary metrics ~~~~")
    coco_eval.summarize()
    stats = [float(x) for x in coco_eval.stats]
    path = os.path.join(output_dir, "detection_results.npz")
    with atomic_write(path) as f:
        np.savez(
            f,
            precision=coco_eval.eval["precision"],
            recall=coco_eval.eval["recall"],
            stats=np.array(stats),
            iou_thrs=iou_thrs,
            classes=np.array(list(classes), dtype=str),
        )
    print(f"Wrote COCO eval results to: {path}")
    result = {"ap": aps, "mean_ap": ap_default, "ap50": stats[1], "stats": stats}
    paper_numbers(result, output_dir)
    return result
