#!/usr/bin/env python3
"""Generate RPN proposals for an image database (upstream's tools/rpn_generate.py).

Writes output/<EXP_DIR>/<imdb>/<net>/<net>_rpn_proposals[_pre<N>_post<M>].npz
(frcnn.datasets.proposals format), or --out. The counts are upstream's (no pre-NMS cap, the top
2000 after NMS) unless --set names TEST.RPN_PRE_NMS_TOP_N / TEST.RPN_POST_NMS_TOP_N, or
--test_counts takes them from the config as a full Faster R-CNN test net would.

The net is adapted to the config as tools/test_net.py adapts it (frcnn.nets.adapt): with
``--set ANCHOR_SCALES [...]`` / ``ANCHOR_RATIOS [...]`` a shipped prototxt gets the matching RPN
channels (a copy in the output folder), so the weights of a net trained with those anchors load.
"""

import os

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser, wait_for_file
from frcnn.config import device_from_config, get_output_dir
from frcnn.errors import InputError
from frcnn.nets.adapt import ensure_net_classes
from frcnn.rpn.generate import (
    counts_suffix,
    imdb_proposals,
    proposal_generation_config,
    save_imdb_proposals,
    set_keys,
)


def parse_args(argv=None):
    parser = tool_parser("Generate RPN proposals", device=True, cfg=True, prototxt="required", weights="required",
                         wait=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to run on", default="voc_2007_test")
    parser.add_argument("--out", default=None,
                        help="proposal file to write (.npz; default: "
                             "output/<EXP_DIR>/<imdb>/<net>/<net>_rpn_proposals[_pre<N>_post<M>].npz)")
    add_flag(parser, "--test_counts", action="store_true",
             help="use the config's TEST.RPN_PRE_NMS_TOP_N / TEST.RPN_POST_NMS_TOP_N (files and --set; "
                  "6000 / 300 by default), as a full Faster R-CNN test net does, instead of upstream's "
                  "generation counts -1 / 2000 (for testing a separate detector on these proposals)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # RPN test settings for proposal generation: no pre-NMS cap, 2000 kept, unless --set says otherwise
    cfg = proposal_generation_config(config_from_args(args, echo=True), keep=set_keys(args.set_cfgs),
                                     test_counts=args.test_counts)
    print(f"Proposal counts: TEST.RPN_PRE_NMS_TOP_N {cfg.TEST.RPN_PRE_NMS_TOP_N}, "
          f"TEST.RPN_POST_NMS_TOP_N {cfg.TEST.RPN_POST_NMS_TOP_N}")
    if args.out is not None and not args.out.endswith(".npz"):
        raise InputError(f"--out {args.out}: proposal files end in .npz")
    wait_for_file(args.caffemodel, args.wait)

    from frcnn.caffe import TEST, Net
    from frcnn.datasets.factory import get_imdb

    net_name = os.path.splitext(os.path.basename(args.caffemodel))[0]
    imdb = get_imdb(args.imdb_name, cfg)
    output_dir = get_output_dir(cfg, imdb.name, net_name)
    # the net made for the config's anchors (ANCHOR_SCALES / ANCHOR_RATIOS), as test_net does
    prototxt = ensure_net_classes(args.prototxt, imdb.num_classes, output_dir, cfg=cfg)
    net = Net(prototxt, args.caffemodel, TEST, cfg=cfg).to(device_from_config(cfg))
    path = args.out
    if path is None:
        path = os.path.join(output_dir, f"{net_name}_rpn_proposals{counts_suffix(cfg)}.npz")
    boxes = imdb_proposals(net, imdb, cfg)
    path = save_imdb_proposals(path, boxes, imdb)
    print(f"Wrote RPN proposals to {path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
