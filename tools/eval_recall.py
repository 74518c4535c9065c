#!/usr/bin/env python3
"""Evaluate the recall of object proposals (upstream's tools/eval_recall.py, with its
dict-unpacking bug fixed: the numbers printed are the recalls, not key names).

``--top_n 300 1000 2000`` evaluates the first N proposals of each image (in the file's order;
RPN files are in score order) for each N; ``--thresholds`` lists the IoU thresholds (default
upstream's 0.5:0.05:0.95; ``--thresholds 0.5 0.55 ... 1.0`` for the paper's Figure 4);
``--out recall.csv`` writes one row per (N, IoU) for plotting: method, imdb, top_n, iou,
recall, num_gt (top_n ``all`` where no cut was asked for).
"""

import csv

import numpy as np

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.errors import InputError


def parse_args(argv=None):
    parser = tool_parser("Evaluate the recall of proposals", cfg=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to evaluate", default="voc_2007_test")
    parser.add_argument("--method", dest="method", help="proposal method", default="selective_search")
    add_flag(parser, "--rpn_file", dest="rpn_file", default=None,
             help="proposal file (.npz) for --method rpn (any .npz proposal file: RPN, selective search, dense)")
    add_flag(parser, "--top_n", type=int, nargs="+", default=None,
             help="evaluate the first N proposals of each image, for each N given (default: all of them)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=None,
                        help="IoU thresholds (default: 0.5, 0.55, ..., 0.95)")
    parser.add_argument("--area", default="all", help="gt area range: all, small, medium, large, ...")
    parser.add_argument("--out", default=None, help="write the recalls as CSV rows to this file")
    return parser.parse_args(argv)


def recall_rows(imdb, method: str, top_ns, thresholds, area: str, candidate_boxes=None) -> list[dict]:
    """One row per (N, IoU threshold): the recall of the first N proposals of each image."""
    rows = []
    for n in top_ns:
        res = imdb.evaluate_recall(candidate_boxes=candidate_boxes, thresholds=thresholds, area=area,
                                   limit=n if n > 0 else None)
        label = str(n) if n > 0 else "all"
        print(f"Method: {method}  top_n: {label}  AverageRec: {float(res['ar']):.3f}  (gt boxes: {res['num_pos']})")
        for t, r in zip(np.asarray(res["thresholds"]), np.asarray(res["recalls"])):
            print(f"Recall@{t:.2f}: {r:.3f}")
            rows.append({"method": method, "imdb": imdb.name, "top_n": label, "iou": f"{t:.4g}",
                         "recall": f"{r:.6f}", "num_gt": int(res["num_pos"])})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False, echo=True)
    top_ns = args.top_n or [-1]
    if any(n == 0 or n < -1 for n in top_ns):
        raise InputError(f"--top_n: expected positive counts (or -1 for all), got {top_ns}")
    thresholds = None
    if args.thresholds is not None:
        thresholds = np.asarray(args.thresholds, dtype=np.float64)
        if np.any(thresholds < 0) or np.any(thresholds > 1):
            raise InputError(f"--thresholds: IoU thresholds lie in [0, 1], got {args.thresholds}")

    from frcnn.datasets.factory import get_imdb
    from frcnn.utils.io import atomic_write

    imdb = get_imdb(args.imdb_name, cfg)
    if args.rpn_file is not None:
        imdb.config["rpn_file"] = args.rpn_file
    imdb.set_proposal_method(args.method)
    candidate_boxes = None
    if "gt" in args.method:
        print("Loading ground truth as proposals")
        candidate_boxes = [r["boxes"][r["gt_classes"] > 0] for r in imdb.roidb]
    rows = recall_rows(imdb, args.method, top_ns, thresholds, args.area, candidate_boxes)
    if args.out:
        with atomic_write(args.out, "w") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["method"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        print(f"Wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    run_tool(main)
