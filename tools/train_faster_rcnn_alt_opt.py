#!/usr/bin/env python3
"""Train a Faster R-CNN network with 4-step alternating optimisation
(upstream's tools/train_faster_rcnn_alt_opt.py; see frcnn.training.alt_opt).

Rerunning the same command skips finished steps and resumes an unfinished one.
"""

import argparse
import os
import sys

from frcnn.cli import add_cfg_args, add_device_args, config_from_args, parse_or_help, write_path_file
from frcnn.config import get_output_dir
from frcnn.nets.adapt import adapt_model_dir
from frcnn.training.alt_opt import STAGE_ITERS, train_alt_opt
from frcnn.training.train import TrainingDiverged


def iters_list(value: str) -> list:
    try:
        out = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--iters: expected 4 comma-separated integers, got {value!r}") from None
    if len(out) != 4 or min(out) <= 0:
        raise argparse.ArgumentTypeError(f"--iters: expected 4 comma-separated positive integers, got {value!r}")
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train a Faster R-CNN network")
    add_device_args(parser)
    parser.add_argument("--net_name", dest="net_name", help="network name (e.g., 'ZF')", default=None, type=str)
    parser.add_argument("--models_dir", default=None,
                        help="folder of the stage prototxts (default: MODELS_DIR/<net_name>/faster_rcnn_alt_opt)")
    parser.add_argument("--weights", dest="pretrained_model", help="initialize with pretrained model weights",
                        default=None, type=str)
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to train on", default="voc_2007_trainval",
                        type=str)
    parser.add_argument("--iters", dest="max_iters", type=iters_list, default=list(STAGE_ITERS),
                        help="iterations of the 4 steps, comma-separated (default: upstream's "
                             f"{','.join(map(str, STAGE_ITERS))})")
    parser.add_argument("--final_model_file", default=None,
                        help="write the final model's path into this file (for scripts)")
    add_cfg_args(parser)
    return parse_or_help(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    print("Called with args:")
    print(args)
    if args.net_name is None:
        print("train_faster_rcnn_alt_opt.py: --net_name is required", file=sys.stderr)
        return 2
    cfg = config_from_args(args)

    from frcnn.datasets.factory import get_imdb

    num_classes = get_imdb(args.imdb_name, cfg).num_classes
    src_dir = args.models_dir or os.path.join(cfg.MODELS_DIR, args.net_name, "faster_rcnn_alt_opt")
    dst_dir = os.path.join(get_output_dir(cfg, args.imdb_name), "models", args.net_name, "faster_rcnn_alt_opt")
    models_dir = adapt_model_dir(src_dir, num_classes, dst_dir, cfg.ROOT_DIR)
    if args.pretrained_model is None:
        print("No --weights given: training from scratch (random initialisation)")
    try:
        final = train_alt_opt(args.net_name, args.imdb_name, cfg, models_dir,
                              pretrained_model=args.pretrained_model, max_iters=args.max_iters)
    except TrainingDiverged as e:
        print(f"Training stopped: {e}", file=sys.stderr)
        return 3
    write_path_file(args.final_model_file, final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
