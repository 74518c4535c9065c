#!/usr/bin/env python3
"""Summarise a training set and derive the settings that fit it (anchors, learning-rate step,
snapshot interval), each printed with its reason; write them as a config file for --cfg.

    tools/dataset_defaults.py --imdb raccoon_train --iters 4000 \\
        --solver models/pascal_voc/SMALL/faster_rcnn_end2end/solver.prototxt \\
        --cfg experiments/cfgs/faster_rcnn_end2end.yml [--set KEY VALUE ...]

The experiment scripts run it for a VOC-format set that has no models/<name>/ folder and pass
the file to training and testing before your --set, so any derived value can be overridden.
Keys you set (--cfg files, --set) are kept and reported as yours.
"""

import os

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser, write_path_file
from frcnn.config import get_output_dir
from frcnn.errors import UserError


def parse_args(argv=None):
    parser = tool_parser("Derive training settings from a dataset", cfg=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", required=True, help="the training set (e.g. raccoon_train)")
    parser.add_argument("--iters", dest="max_iters", required=True, type=int, help="iterations the run will train")
    parser.add_argument("--solver", required=True, help="the solver the run will train (its net's anchors and stride)")
    parser.add_argument("--out", default=None,
                        help="the config file to write (default: <output dir>/derived_defaults.yml)")
    add_flag(parser, "--path_file", default=None, help="write the config file's path into this file (for scripts)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.max_iters < 1:
        raise UserError(f"--iters: must be >= 1, got {args.max_iters}")
    cfg = config_from_args(args, show=False)

    from frcnn.caffe.prototxt import parse_file
    from frcnn.datasets.factory import get_imdb
    from frcnn.datasets.summary import summarize
    from frcnn.nets.adapt import solver_net_path
    from frcnn.training.defaults import derive_defaults, net_anchors, user_set_keys, write_defaults

    _, net_path = solver_net_path(args.solver, cfg.ROOT_DIR)
    solver = parse_file(args.solver)
    stepsize = solver.get_int("stepsize", 0) if solver.get_str("lr_policy", "fixed") == "step" else None
    imdb = get_imdb(args.imdb_name, cfg)
    summary = summarize(imdb, cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE)
    cfg_files = args.cfg_file or []
    user = user_set_keys(cfg_files, args.set_cfgs)
    derived = derive_defaults(summary, args.max_iters, cfg, net=net_anchors(net_path), solver_stepsize=stepsize,
                              user=user)
    print("\n".join(derived.lines()))
    out = args.out or os.path.join(get_output_dir(cfg, imdb.name), "derived_defaults.yml")
    write_defaults(out, derived)
    words = derived.set_args()
    same = " ".join(f'"{w}"' if " " in w else w for w in words)
    print(f"Wrote {out} (passed to the tools as --cfg; the same as --set {same})")
    write_path_file(args.path_file, out)
    return 0


if __name__ == "__main__":
    run_tool(main)
