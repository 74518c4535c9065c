#!/usr/bin/env python3
"""Per-stage test-time of a Faster R-CNN net, like the paper's Table 5 (conv / proposal /
region-wise ms per image); see frcnn.inference.timing.

    ./tools/time_net.py --gpu 0 --def models/pascal_voc/VGG16/faster_rcnn_alt_opt/faster_rcnn_test.prototxt \
        --net data/faster_rcnn_models/VGG16_faster_rcnn_final.caffemodel --imdb voc_2007_test --num 100
Without --net the weights are random (speed does not depend on them, except through the
number of proposals, which is capped by TEST.RPN_POST_NMS_TOP_N).
"""

import numpy as np

from frcnn.cli import config_from_args, run_tool, tool_parser
from frcnn.config import device_from_config
from frcnn.inference.timing import STAGES, time_image
from frcnn.utils.blob import read_image


def parse_args(argv=None):
    parser = tool_parser("Time the stages of a Faster R-CNN test net", device=True, cfg=True,
                         prototxt="required: test prototxt (with an RPN)",
                         weights="optional: weights (default: random init)", help_if_empty=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--imdb", dest="imdb_name", default=None, help="time on this dataset's images")
    source.add_argument("--images", nargs="+", default=None, help="or on these image files")
    parser.add_argument("--num", type=int, default=50, help="number of images to time")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes first")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False)
    cfg.TEST.HAS_RPN = True

    from frcnn.boxes.nms import nms_from_config
    from frcnn.caffe import TEST, Net

    if args.imdb_name:
        from frcnn.datasets.factory import get_imdb

        imdb = get_imdb(args.imdb_name, cfg)
        paths = [imdb.image_path_at(i) for i in range(min(args.num, imdb.num_images))]
    else:
        paths = (args.images * args.num)[: args.num]
    net = Net(args.prototxt, args.caffemodel, TEST, cfg=cfg).to(device_from_config(cfg))

    nms_fn = nms_from_config(cfg)

    images = [read_image(p) for p in paths]
    warm = {}
    for i in range(args.warmup):
        time_image(net, images[i % len(images)], cfg, nms_fn, warm)
    timers = {}
    per_image = {s: [] for s in STAGES}
    for im in images:
        time_image(net, im, cfg, nms_fn, timers)
        for s in STAGES:
            per_image[s].append(timers[s].diff * 1e3)
    total = np.sum([per_image[s] for s in STAGES[1:]], axis=0)
    print(f"device: {net.device}; {len(images)} images; TEST.SCALES {cfg.TEST.SCALES}, "
          f"RPN_POST_NMS_TOP_N {cfg.TEST.RPN_POST_NMS_TOP_N}")
    print(f"{'stage':<12} {'mean ms':>9} {'median ms':>10}")
    for s in STAGES:
        print(f"{s:<12} {np.mean(per_image[s]):9.1f} {np.median(per_image[s]):10.1f}")
    print(f"{'total':<12} {np.mean(total):9.1f} {np.median(total):10.1f}   (conv + proposal + region-wise)")
    return 0


if __name__ == "__main__":
    run_tool(main)
