#!/usr/bin/env python3
"""Write dense sliding windows (every anchor of the conv5 grid, no RPN) as a proposal file for
a dataset: the proposals of the paper's one-stage system (Table 10; see frcnn.rpn.dense).

Default output: output/<EXP_DIR>/<imdb>/dense_proposals_s<scale>_m<max_size>.npz, for
tools/train_net.py --proposals / tools/test_net.py --proposals / tools/eval_recall.py --method
rpn --rpn_file. The windows lie on the grid of the image resized to --scale (default
TRAIN.SCALES[0], 600) / --max_size (TRAIN.MAX_SIZE, 1000); the anchors are --scales / --ratios
(default the config's ANCHOR_SCALES / ANCHOR_RATIOS where set, else upstream's 8 16 32 / 0.5 1 2).
About 20000 windows per VOC image: 0.3 MB of file and about 2.5 MB of training roidb per image.
"""

import os

import numpy as np

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.config import get_output_dir
from frcnn.errors import InputError


def parse_args(argv=None):
    parser = tool_parser("Write dense sliding-window proposals", cfg=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", required=True, help="dataset to write windows for")
    parser.add_argument("--scale", type=int, default=None,
                        help="shorter side of the resized image whose grid the windows lie on (default TRAIN.SCALES[0])")
    add_flag(parser, "--max_size", type=int, default=None, help="longest side limit (default TRAIN.MAX_SIZE)")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="anchor scales in units of the stride (default ANCHOR_SCALES, else 8 16 32)")
    parser.add_argument("--ratios", type=float, nargs="+", default=None,
                        help="anchor aspect ratios h/w (default ANCHOR_RATIOS, else 0.5 1 2)")
    add_flag(parser, "--feat_stride", type=int, default=16, help="feature stride of conv5 (16 for ZF and VGG16)")
    parser.add_argument("--out", default=None, help="proposal file to write (.npz)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False, echo=True)
    scale = args.scale if args.scale is not None else int(cfg.TRAIN.SCALES[0])
    max_size = args.max_size if args.max_size is not None else int(cfg.TRAIN.MAX_SIZE)
    if scale <= 0 or max_size <= 0 or args.feat_stride <= 0:
        raise InputError(f"--scale, --max_size, --feat_stride: must be positive, got {scale}, {max_size}, "
                         f"{args.feat_stride}")
    if args.out is not None and not args.out.endswith(".npz"):
        raise InputError(f"--out {args.out}: proposal files end in .npz")
    scales = args.scales if args.scales is not None else cfg.get("ANCHOR_SCALES")
    ratios = args.ratios if args.ratios is not None else cfg.get("ANCHOR_RATIOS")

    from frcnn.datasets.factory import get_imdb
    from frcnn.datasets.image_info import image_size
    from frcnn.datasets.proposals import save_proposals
    from frcnn.rpn.dense import dense_windows, window_anchors

    try:
        anchors = window_anchors(scales, ratios)
    except ValueError as e:
        raise InputError(f"--scales / --ratios: {e}") from None
    imdb = get_imdb(args.imdb_name, cfg)
    boxes_list = []
    for i in range(imdb.num_images):
        w, h = image_size(imdb.image_path_at(i))
        boxes_list.append(dense_windows(h, w, scale, max_size, anchors, args.feat_stride))
    path = args.out or os.path.join(get_output_dir(cfg, imdb.name), f"dense_proposals_s{scale}_m{max_size}.npz")
    save_proposals(path, boxes_list, list(imdb.image_index))
    counts = np.array([len(b) for b in boxes_list])
    print(f"{len(anchors)} anchors per cell; {counts.mean():.0f} windows per image (min {counts.min()}, "
          f"max {counts.max()})")
    print(f"Wrote dense proposals to {path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
