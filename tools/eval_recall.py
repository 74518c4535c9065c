#!/usr/bin/env python3
"""Evaluate the recall of object proposals (upstream's tools/eval_recall.py, with its
dict-unpacking bug fixed: the numbers printed are the recalls, not key names)."""

import numpy as np

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser


def parse_args(argv=None):
    parser = tool_parser("Evaluate the recall of proposals", cfg=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to evaluate", default="voc_2007_test")
    parser.add_argument("--method", dest="method", help="proposal method", default="selective_search")
    add_flag(parser, "--rpn_file", dest="rpn_file", default=None, help="proposal file (.npz) for --method rpn")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False, echo=True)

    from frcnn.datasets.factory import get_imdb

    imdb = get_imdb(args.imdb_name, cfg)
    if args.rpn_file is not None:
        imdb.config["rpn_file"] = args.rpn_file
    imdb.set_proposal_method(args.method)
    candidate_boxes = None
    if "gt" in args.method:
        print("Loading ground truth as proposals")
        candidate_boxes = [r["boxes"][r["gt_classes"] > 0] for r in imdb.roidb]
    res = imdb.evaluate_recall(candidate_boxes=candidate_boxes)
    recalls, thresholds = np.asarray(res["recalls"]), np.asarray(res["thresholds"])
    print(f"Method: {args.method}")
    print(f"AverageRec: {float(res['ar']):.3f}")
    for t, r in zip(thresholds, recalls):
        print(f"Recall@{t:.2f}: {r:.3f}")
    return 0


if __name__ == "__main__":
    run_tool(main)
