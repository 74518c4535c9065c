#!/usr/bin/env python3
"""Train a Fast R-CNN or Faster R-CNN (end2end) network (upstream's tools/train_net.py).

A run that was stopped continues from its last snapshot when the same command is run
again (or with --resume); --fresh ignores earlier snapshots. The paper's nets (ZF, VGG16,
VGG_CNN_M_1024) need --weights (their ImageNet weights) or an explicit --from_scratch.
Under torchrun (`torchrun --nproc_per_node N tools/train_net.py ...`) the N ranks train one
model data parallel: each its share of the images, gradients averaged, rank 0 logs and saves.
"""

import os
import sys

from frcnn.cli import (
    check_pretrained,
    config_from_args,
    run_ranks,
    run_tool,
    solver_net_name,
    tool_parser,
    write_path_file,
)
from frcnn.config import get_output_dir
from frcnn.datasets.classes_file import write_classes_file
from frcnn.nets.adapt import ensure_solver_classes
from frcnn.training.train import TrainingDiverged, get_roidb, set_random_seeds, train_net


def parse_args(argv=None):
    parser = tool_parser("Train a Fast R-CNN network", device=True, cfg=True, training=True, help_if_empty=True)
    parser.add_argument("--solver", dest="solver", help="solver prototxt", required=True)
    parser.add_argument("--iters", dest="max_iters", help="number of iterations to train", default=40000, type=int)
    parser.add_argument("--imdb", dest="imdb_name", help="dataset to train on ('a+b' joins several)",
                        default="voc_2007_trainval")
    parser.add_argument("--rand", dest="randomize", help="randomize (do not use a fixed seed)", action="store_true")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue from the last snapshot of this run (the default when one exists); "
                             "fail if there is none")
    resume.add_argument("--fresh", action="store_true", help="ignore snapshots of an earlier run")
    parser.add_argument("--proposals", default=None,
                        help="proposal file (.npz, e.g. from rpn_generate.py) to train Fast R-CNN on "
                             "(sets TRAIN.PROPOSAL_METHOD rpn)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, echo=True)
    with run_ranks(cfg) as world:  # under torchrun: one rank of a data-parallel run
        return train(args, cfg, world)


def train(args, cfg, world) -> int:
    check_pretrained(solver_net_name(args.solver, cfg.ROOT_DIR), args.pretrained_model, args.from_scratch,
                     cfg.DATA_DIR)
    if not args.randomize:
        # fix the random seeds (numpy and torch) for reproducibility
        set_random_seeds(cfg.RNG_SEED)
    if args.proposals is not None:
        cfg.TRAIN.PROPOSAL_METHOD = "rpn"
    roidb, imdb = get_roidb(args.imdb_name, cfg, rpn_file=args.proposals)
    print(f"{len(roidb):d} roidb entries")
    output_dir = get_output_dir(cfg, imdb.name)
    print(f"Output will be saved to `{output_dir}`")
    solver = ensure_solver_classes(args.solver, imdb.num_classes, os.path.join(output_dir, "models"), cfg.ROOT_DIR,
                                   cfg=cfg)
    print(f"Wrote the class names to {write_classes_file(output_dir, imdb.classes, imdb.name)}")
    if args.pretrained_model is None:
        print("No --weights given: training from scratch (random initialisation)")
    try:
        model_paths = train_net(solver, roidb, output_dir, cfg, pretrained_model=args.pretrained_model,
                                max_iters=args.max_iters, resume=not args.fresh,
                                require_resume=args.resume)
    except TrainingDiverged as e:
        print(f"Training stopped: {e}", file=sys.stderr)
        return 3
    if world.is_main:
        write_path_file(args.final_model_file, model_paths[-1])
    return 0


if __name__ == "__main__":
    run_tool(main, distributed=True)
