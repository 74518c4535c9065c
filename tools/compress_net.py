#!/usr/bin/env python3
"""Compress a Fast/Faster R-CNN network with truncated SVD of fc6/fc7 (upstream's
tools/compress_net.py). Give an SVD prototxt (--def-svd, with fc6_L/fc6_U and/or fc7_L/fc7_U),
or let --fc6-rank/--fc7-rank write one beside the model."""

import argparse
import os
import sys

from frcnn.caffe.prototxt import parse_file, write_file
from frcnn.nets.compress import compress_net, svd_net


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Compress a Fast R-CNN network")
    parser.add_argument("--def", dest="prototxt", help="prototxt file defining the uncompressed network",
                        default=None, type=str)
    parser.add_argument("--def-svd", dest="prototxt_svd", help="prototxt file defining the SVD compressed network",
                        default=None, type=str)
    parser.add_argument("--net", dest="caffemodel", help="model to compress", default=None, type=str)
    parser.add_argument("--fc6-rank", type=int, default=None, help="write the SVD prototxt with this fc6 rank")
    parser.add_argument("--fc7-rank", type=int, default=None, help="write the SVD prototxt with this fc7 rank")
    if argv is None and len(sys.argv) == 1:
        parser.print_help()
        sys.exit(1)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prototxt is None or args.caffemodel is None:
        print("compress_net.py: --def and --net are required", file=sys.stderr)
        return 2
    prototxt_svd = args.prototxt_svd
    if prototxt_svd is None:
        ranks = {k: v for k, v in (("fc6", args.fc6_rank), ("fc7", args.fc7_rank)) if v}
        if not ranks:
            print("compress_net.py: give --def-svd, or --fc6-rank and/or --fc7-rank", file=sys.stderr)
            return 2
        stem = os.path.splitext(os.path.abspath(args.caffemodel))[0]
        prototxt_svd = stem + "_svd_" + "_".join(f"{k}_{v}" for k, v in ranks.items()) + ".prototxt"
        write_file(prototxt_svd, svd_net(parse_file(args.prototxt), ranks))
        print(f"Wrote SVD prototxt {prototxt_svd}")
    path = compress_net(args.prototxt, prototxt_svd, args.caffemodel)
    print(f"Wrote svd model to: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
