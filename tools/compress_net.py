#!/usr/bin/env python3
"""Compress a Fast/Faster R-CNN network with truncated SVD of fc6/fc7 (upstream's
tools/compress_net.py). Give an SVD prototxt (--def_svd, with fc6_L/fc6_U and/or fc7_L/fc7_U),
or let --fc6_rank/--fc7_rank write one beside the model."""

import os

from frcnn.caffe.prototxt import parse_file, write_file
from frcnn.cli import add_flag, run_tool, tool_parser
from frcnn.nets.compress import compress_net, svd_net


def parse_args(argv=None):
    parser = tool_parser("Compress a Fast R-CNN network", help_if_empty=True,
                         prototxt="required: prototxt file defining the uncompressed network",
                         weights="required: model to compress")
    add_flag(parser, "--def_svd", dest="prototxt_svd", default=None,
             help="prototxt file defining the SVD compressed network")
    add_flag(parser, "--fc6_rank", type=int, default=None, help="write the SVD prototxt with this fc6 rank")
    add_flag(parser, "--fc7_rank", type=int, default=None, help="write the SVD prototxt with this fc7 rank")
    args = parser.parse_args(argv)
    if args.prototxt_svd is None and not (args.fc6_rank or args.fc7_rank):
        parser.error("give --def_svd, or --fc6_rank and/or --fc7_rank")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    prototxt_svd = args.prototxt_svd
    if prototxt_svd is None:
        ranks = {k: v for k, v in (("fc6", args.fc6_rank), ("fc7", args.fc7_rank)) if v}
        stem = os.path.splitext(os.path.abspath(args.caffemodel))[0]
        prototxt_svd = stem + "_svd_" + "_".join(f"{k}_{v}" for k, v in ranks.items()) + ".prototxt"
        write_file(prototxt_svd, svd_net(parse_file(args.prototxt), ranks))
        print(f"Wrote SVD prototxt {prototxt_svd}")
    path = compress_net(args.prototxt, prototxt_svd, args.caffemodel)
    print(f"Wrote svd model to: {path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
