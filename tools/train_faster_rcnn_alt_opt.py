#!/usr/bin/env python3
"""Train a Faster R-CNN network with 4-step alternating optimisation
(upstream's tools/train_faster_rcnn_alt_opt.py; see frcnn.training.alt_opt).

Rerunning the same command skips finished steps and resumes an unfinished one. The paper's
nets (ZF, VGG16, VGG_CNN_M_1024) need --weights (their ImageNet weights) or --from_scratch.
--stop_after 1 trains the stage-1 RPN alone; --stop_after 2 stops with the unshared stage-1 RPN
and Fast R-CNN (Table 2's ablations; see frcnn.training.alt_opt). --set TEST.RPN_PRE_NMS_TOP_N /
TEST.RPN_POST_NMS_TOP_N change the proposal steps' counts too (upstream's -1 / 2000 otherwise).
Under torchrun every step runs on all ranks (training data parallel, proposals shared out).
"""

import argparse
import os
import sys

from frcnn.cli import (
    add_flag,
    check_pretrained,
    config_from_args,
    run_ranks,
    run_tool,
    tool_parser,
    write_path_file,
)
from frcnn.config import get_output_dir
from frcnn.nets.adapt import adapt_model_dir
from frcnn.rpn.generate import set_keys
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
    parser = tool_parser("Train a Faster R-CNN network", device=True, cfg=True, training=True, help_if_empty=True)
    add_flag(parser, "--net_name", dest="net_name", required=True,
             help="network name (e.g., 'ZF'): the prototxts are MODELS_DIR/<net_name>/faster_rcnn_alt_opt")
    add_flag(parser, "--models_dir", default=None,
             help="folder of the stage prototxts (default: MODELS_DIR/<net_name>/faster_rcnn_alt_opt)")
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to train on", default="voc_2007_trainval")
    parser.add_argument("--iters", dest="max_iters", type=iters_list, default=list(STAGE_ITERS),
                        help="iterations of the 4 steps, comma-separated (default: upstream's "
                             f"{','.join(map(str, STAGE_ITERS))})")
    add_flag(parser, "--stop_after", type=int, choices=(1, 2, 3, 4), default=4,
             help="stop after this step: 1 = the stage-1 RPN alone, 2 = the unshared stage-1 RPN and Fast "
                  "R-CNN (the paper's 'unshared' rows), 4 = all (default)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, echo=True)
    with run_ranks(cfg) as world:  # under torchrun: every step on all ranks
        return train(args, cfg, world)


def train(args, cfg, world) -> int:
    check_pretrained(args.net_name, args.pretrained_model, args.from_scratch, cfg.DATA_DIR)

    from frcnn.datasets.factory import get_imdb

    num_classes = get_imdb(args.imdb_name, cfg).num_classes
    src_dir = args.models_dir or os.path.join(cfg.MODELS_DIR, args.net_name, "faster_rcnn_alt_opt")
    dst_dir = os.path.join(get_output_dir(cfg, args.imdb_name), "models", args.net_name, "faster_rcnn_alt_opt")
    models_dir = adapt_model_dir(src_dir, num_classes, dst_dir, cfg.ROOT_DIR, cfg=cfg)
    if args.pretrained_model is None:
        print("No --weights given: training from scratch (random initialisation)")
    try:
        final = train_alt_opt(args.net_name, args.imdb_name, cfg, models_dir,
                              pretrained_model=args.pretrained_model, max_iters=args.max_iters,
                              stop_after=args.stop_after, generation_keys=set_keys(args.set_cfgs))
    except TrainingDiverged as e:
        print(f"Training stopped: {e}", file=sys.stderr)
        return 3
    if world.is_main:
        write_path_file(args.final_model_file, final)
    return 0


if __name__ == "__main__":
    run_tool(main, distributed=True)
