#!/usr/bin/env python3
"""Generate RPN proposals for an image database (upstream's tools/rpn_generate.py).

Writes output/<EXP_DIR>/<imdb>/<net>/<net>_rpn_proposals.npz (frcnn.datasets.proposals format).
"""

import os

from frcnn.cli import config_from_args, run_tool, tool_parser, wait_for_file
from frcnn.config import device_from_config, get_output_dir
from frcnn.rpn.generate import imdb_proposals, proposal_generation_config, save_imdb_proposals


def parse_args(argv=None):
    parser = tool_parser("Generate RPN proposals", device=True, cfg=True, prototxt="required", weights="required",
                         wait=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to run on", default="voc_2007_test")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # RPN test settings for proposal generation: no pre-NMS cap, 2000 kept
    cfg = proposal_generation_config(config_from_args(args, echo=True))
    wait_for_file(args.caffemodel, args.wait)

    from frcnn.caffe import TEST, Net
    from frcnn.datasets.factory import get_imdb

    net = Net(args.prototxt, args.caffemodel, TEST, cfg=cfg).to(device_from_config(cfg))
    net_name = os.path.splitext(os.path.basename(args.caffemodel))[0]
    imdb = get_imdb(args.imdb_name, cfg)
    output_dir = get_output_dir(cfg, imdb.name, net_name)
    boxes = imdb_proposals(net, imdb, cfg)
    path = save_imdb_proposals(os.path.join(output_dir, net_name + "_rpn_proposals.npz"), boxes, imdb)
    print(f"Wrote RPN proposals to {path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
