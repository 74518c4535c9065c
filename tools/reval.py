#!/usr/bin/env python3
"""Re-evaluate saved detections (upstream's tools/reval.py; reads detections.npz, not a pickle).

    tools/reval.py output/faster_rcnn_end2end/bccd_test/small_faster_rcnn_iter_5000 --imdb bccd_test --metric both

--metric picks the AP of a VOC-format set: auto (TEST.VOC_METRIC, upstream's rule: VOC07 11-point
for PASCAL VOC 2007, area under the curve otherwise), 11point, area, or both (one after the other).
"""

import os

from frcnn.boxes.nms import nms_from_config
from frcnn.cli import config_from_args, run_tool, tool_parser
from frcnn.datasets.voc_metric import VOC_METRICS, apply_voc_metric
from frcnn.errors import InputError
from frcnn.inference.detections import load_detections
from frcnn.inference.test import apply_nms


def parse_args(argv=None):
    parser = tool_parser("Re-evaluate results", cfg=True, help_if_empty=True)
    parser.add_argument("output_dir", nargs=1, help="results directory (holding detections.npz)", type=str)
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to re-evaluate", default="voc_2007_test")
    parser.add_argument("--matlab", dest="matlab_eval", help="use matlab for evaluation", action="store_true")
    parser.add_argument("--comp", dest="comp_mode", help="competition mode", action="store_true")
    parser.add_argument("--nms", dest="apply_nms", help="apply nms (on the CPU)", action="store_true")
    parser.add_argument("--metric", choices=(*VOC_METRICS, "both"), default=None,
                        help="AP of a VOC-format set: auto (upstream's rule), 11point, area, or both "
                             "(default: TEST.VOC_METRIC, itself 'auto' by default)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False)
    cfg.GPU_ID = -1
    output_dir = os.path.abspath(args.output_dir[0])
    all_boxes = load_detections(os.path.join(output_dir, "detections.npz"))

    from frcnn.datasets.factory import get_imdb

    imdb = get_imdb(args.imdb_name, cfg)
    imdb.competition_mode(args.comp_mode)
    if args.matlab_eval:
        imdb.config["matlab_eval"] = True
    if len(all_boxes) != imdb.num_classes or len(all_boxes[0]) != len(imdb.image_index):
        raise InputError(f"{output_dir}/detections.npz has {len(all_boxes)} classes x {len(all_boxes[0])} images; "
                         f"{imdb.name} has {imdb.num_classes} x {len(imdb.image_index)}")
    if args.apply_nms:
        print("Applying NMS to all detections")
        all_boxes = apply_nms(all_boxes, cfg.TEST.NMS, nms_from_config(cfg))
    metrics = ["11point", "area"] if args.metric == "both" else [args.metric or cfg.TEST.VOC_METRIC]
    for metric in metrics:
        name = apply_voc_metric(imdb, metric)
        print("Evaluating detections" + (f" ({name})" if name else ""))
        imdb.evaluate_detections(all_boxes, output_dir)
    return 0


if __name__ == "__main__":
    run_tool(main)
