#!/usr/bin/env python3
"""Write dense sliding windows (every anchor of the conv5 grid, no RPN) as a proposal file for
a dataset: the proposals of the paper's one-stage system (Table 10; see frcnn.rpn.dense).

Default output: output/<EXP_DIR>/<imdb>/dense_proposals_s<scale>_m<max_size>[_a<scales>x<ratios>].npz
(the suffix for anchors other than upstream's), for tools/train_net.py --proposals /
tools/test_net.py --proposals / tools/eval_recall.py --method rpn --rpn_file. The windows lie on
the grid of the image resized to --scale (default TRAIN.SCALES[0], 600) / --max_size
(TRAIN.MAX_SIZE, 1000); the anchors are --scales / --ratios, each by default the config's
ANCHOR_SCALES / ANCHOR_RATIOS where set (--set, or a config such as coco_paper.yml), else those of
the anchor layers of the net given with --def (its feat_stride too), else upstream's 8 16 32 /
0.5 1 2 (frcnn.rpn.dense.window_settings). About 20000 windows per VOC image: 0.3 MB of file and
about 2.3 MB of training roidb per image (flipped copy included; tools/dev/roidb_memory.py).
"""

import os

import numpy as np

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.config import get_output_dir
from frcnn.errors import InputError


def parse_args(argv=None):
    parser = tool_parser("Write dense sliding-window proposals", cfg=True, help_if_empty=True,
                         prototxt="optional: a net whose anchor layers give the default --scales, --ratios and "
                                  "--feat_stride (where ANCHOR_SCALES / ANCHOR_RATIOS are not set)")
    parser.add_argument("--imdb", dest="imdb_name", required=True, help="dataset to write windows for")
    parser.add_argument("--scale", type=int, default=None,
                        help="shorter side of the resized image whose grid the windows lie on (default TRAIN.SCALES[0])")
    add_flag(parser, "--max_size", type=int, default=None, help="longest side limit (default TRAIN.MAX_SIZE)")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="anchor scales in units of the stride (default ANCHOR_SCALES, else the --def net's, "
                             "else 8 16 32)")
    parser.add_argument("--ratios", type=float, nargs="+", default=None,
                        help="anchor aspect ratios h/w (default ANCHOR_RATIOS, else the --def net's, else 0.5 1 2)")
    add_flag(parser, "--feat_stride", type=int, default=None,
             help="feature stride of conv5 (default the --def net's, else 16, as for ZF and VGG16)")
    parser.add_argument("--out", default=None, help="proposal file to write (.npz)")
    return parser.parse_args(argv)


def net_anchor_settings(prototxt):
    """((scales, ratios), feat_stride) of the first anchor layer of ``prototxt`` (None: no file, or
    no anchor layer / no feat_stride in it)."""
    if prototxt is None:
        return None, None
    from frcnn.caffe.prototxt import parse_file
    from frcnn.caffe.python_layer import parse_param_str
    from frcnn.nets.adapt import anchor_layers, net_anchors

    msg = parse_file(prototxt)
    layers = anchor_layers(msg)
    if not layers:
        raise InputError(f"--def {prototxt}: the net has no anchor layer (proposal / anchor target) to take "
                         "the windows' anchors from")
    p = parse_param_str(str(layers[0].get_msg("python_param").get("param_str", "") or ""), f"--def {prototxt}")
    stride = p.get("feat_stride")
    return net_anchors(msg), None if stride is None else int(stride)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False, echo=True)
    scale = args.scale if args.scale is not None else int(cfg.TRAIN.SCALES[0])
    max_size = args.max_size if args.max_size is not None else int(cfg.TRAIN.MAX_SIZE)
    net_anchors, net_stride = net_anchor_settings(args.prototxt)
    feat_stride = next(v for v in (args.feat_stride, net_stride, 16) if v is not None)
    if scale <= 0 or max_size <= 0 or feat_stride <= 0:
        raise InputError(f"--scale, --max_size, --feat_stride: must be positive, got {scale}, {max_size}, "
                         f"{feat_stride}")
    if args.out is not None and not args.out.endswith(".npz"):
        raise InputError(f"--out {args.out}: proposal files end in .npz")

    from frcnn.datasets.factory import get_imdb
    from frcnn.datasets.image_info import image_size
    from frcnn.datasets.proposals import save_proposals
    from frcnn.rpn.dense import dense_windows, settings_suffix, window_anchors, window_settings

    scales, ratios = window_settings(args.scales, args.ratios, cfg, net_anchors)
    try:
        anchors = window_anchors(scales, ratios)
    except ValueError as e:
        raise InputError(f"--scales / --ratios: {e}") from None
    print(f"Windows: anchor scales {list(scales)} x ratios {list(ratios)}, stride {feat_stride}")
    imdb = get_imdb(args.imdb_name, cfg)
    boxes_list = []
    for i in range(imdb.num_images):
        w, h = image_size(imdb.image_path_at(i))
        boxes_list.append(dense_windows(h, w, scale, max_size, anchors, feat_stride))
    name = f"dense_proposals_s{scale}_m{max_size}{settings_suffix(scales, ratios)}.npz"
    path = args.out or os.path.join(get_output_dir(cfg, imdb.name), name)
    save_proposals(path, boxes_list, list(imdb.image_index))
    counts = np.array([len(b) for b in boxes_list])
    print(f"{len(anchors)} anchors per cell; {counts.mean():.0f} windows per image (min {counts.min()}, "
          f"max {counts.max()})")
    print(f"Wrote dense proposals to {path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
