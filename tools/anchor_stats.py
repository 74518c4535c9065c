#!/usr/bin/env python3
"""The learned average proposal size (w x h) of each anchor of a trained RPN (the paper's
Table 1), over a set of images, in the paper's layout; also written as JSON and CSV.

    ./tools/anchor_stats.py --gpu 0 --def models/pascal_voc/ZF/faster_rcnn_alt_opt/rpn_test.prototxt \\
        --net output/.../ZF_faster_rcnn_final.caffemodel --imdb voc_2007_test

--mode proposals (default): the test-time proposals (TEST.RPN_* settings: top 6000, NMS 0.7,
top 300), each counted for its anchor; --mode all: every anchor decoded (not clipped),
weighted by its objectness. Sizes are in input pixels at TEST.SCALES[0] (s = 600), the scale
the anchors are defined in. See frcnn.rpn.anchor_stats.
"""

import csv
import json
import os

import numpy as np
import torch

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.config import device_from_config, get_output_dir
from frcnn.rpn import anchor_stats as st
from frcnn.utils.blob import read_image
from frcnn.utils.io import atomic_write


def parse_args(argv=None):
    parser = tool_parser("Average proposal size per anchor (Table 1)", device=True, cfg=True,
                         prototxt="required: an RPN test net (rpn_test or faster_rcnn_test prototxt)",
                         weights="required: the trained model", help_if_empty=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--imdb", dest="imdb_name", default=None, help="the images of this dataset")
    source.add_argument("--images", nargs="+", default=None, help="or these image files")
    parser.add_argument("--num", type=int, default=0, help="use the first NUM images (default: all)")
    parser.add_argument("--mode", choices=st.MODES, default="proposals",
                        help="proposals: the test-time proposals, each weighing 1 (default); all: every "
                             "anchor decoded, unclipped, weighted by objectness")
    add_flag(parser, "--out_prefix", default=None,
             help="write OUT_PREFIX.json and OUT_PREFIX.csv (default: <output dir>/anchor_stats_<mode>)")
    return parser.parse_args(argv)


def image_paths(args, cfg) -> tuple[list, str]:
    if args.imdb_name:
        from frcnn.datasets.factory import get_imdb

        imdb = get_imdb(args.imdb_name, cfg)
        n = imdb.num_images if args.num <= 0 else min(args.num, imdb.num_images)
        return [imdb.image_path_at(i) for i in range(n)], imdb.name
    return (args.images if args.num <= 0 else args.images[: args.num]), "images"


def collect(net, layer, paths, cfg, mode) -> st.AnchorSizes:
    """Run the net up to its proposal layer on each image and add its boxes per anchor."""
    from frcnn.inference.test import get_image_blob

    sizes = st.AnchorSizes(layer.impl.num_anchors)
    cls_prob, bbox_pred, im_info_name = layer.bottoms
    for k, path in enumerate(paths):
        im = read_image(path)
        data, scales = get_image_blob(im, (cfg.TEST.SCALES[0],), cfg.TEST.MAX_SIZE, cfg.PIXEL_MEANS)
        im_info = np.array([[data.shape[2], data.shape[3], scales[0]]], dtype=np.float32)
        with torch.no_grad():
            net.forward(end=layer.name, **{"data": data, im_info_name: im_info})
            prob, deltas = net.blobs[cls_prob].data, net.blobs[bbox_pred].data
            if mode == "proposals":
                boxes, _scores, index = st.proposals_by_anchor(layer.impl, prob, deltas, net.blobs[im_info_name].data)
                sizes.add(boxes, index)
            else:
                boxes, scores, index = st.decoded_by_anchor(layer.impl, prob, deltas)
                sizes.add(boxes, index, scores)
        if (k + 1) % 100 == 0 or k + 1 == len(paths):
            print(f"anchor stats: {k + 1}/{len(paths)} images", flush=True)
    return sizes


def write_results(prefix: str, rows: list, meta: dict) -> list:
    with atomic_write(prefix + ".json", "w") as f:
        json.dump({**meta, "anchors": rows}, f, indent=1, ensure_ascii=False)
    fields = ["anchor", "label", "scale", "ratio", "anchor_w", "anchor_h", "mean_w", "mean_h", "count", "weight"]
    with atomic_write(prefix + ".csv", "w") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return [prefix + ".json", prefix + ".csv"]


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False)
    cfg.TEST.HAS_RPN = True
    from frcnn.caffe import TEST, Net

    paths, set_name = image_paths(args, cfg)
    if not paths:
        raise FileNotFoundError(f"{args.imdb_name or '--images'}: no images to run on")
    net = Net(args.prototxt, args.caffemodel, TEST, cfg=cfg).to(device_from_config(cfg))
    layer = st.find_proposal_layer(net)
    sizes = collect(net, layer, paths, cfg, args.mode)
    anchors = layer.impl.anchors.detach().cpu().numpy()
    rows = st.anchor_table(st.nominal_anchors(layer), layer.impl.feat_stride, anchors, sizes)
    print(f"Average proposal size per anchor ({args.mode}; {len(paths)} images of {set_name}; "
          f"input pixels at scale {cfg.TEST.SCALES[0]})")
    print(st.format_table(rows))
    net_name = os.path.splitext(os.path.basename(args.caffemodel))[0]
    prefix = args.out_prefix or os.path.join(get_output_dir(cfg, set_name, net_name), f"anchor_stats_{args.mode}")
    meta = {"mode": args.mode, "images": len(paths), "set": set_name, "model": os.path.abspath(args.caffemodel),
            "scale": cfg.TEST.SCALES[0], "max_size": cfg.TEST.MAX_SIZE, "feat_stride": layer.impl.feat_stride}
    for path in write_results(prefix, rows, meta):
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
