#!/usr/bin/env python3
"""Demo: detect objects in images and save them with the boxes drawn (upstream's tools/demo.py,
drawing with OpenCV into files instead of matplotlib windows).

    ./tools/demo.py --net zf                 # data/faster_rcnn_models/ZF_faster_rcnn_final.caffemodel
    ./tools/demo.py --cpu --def models/.../test.prototxt --caffemodel output/.../x.caffemodel \
        --imdb toy_test --images data/toy/JPEGImages/000001.jpg
"""

import glob
import os

import numpy as np

from frcnn.cli import config_from_args, run_tool, tool_parser
from frcnn.config import device_from_config
from frcnn.inference.demo import CONF_THRESH, NMS_THRESH, VOC_CLASSES, demo_detections
from frcnn.utils.blob import read_image
from frcnn.utils.draw import draw_detections

NETS = {"vgg16": ("VGG16", "VGG16_faster_rcnn_final.caffemodel"), "zf": ("ZF", "ZF_faster_rcnn_final.caffemodel")}
DEMO_IMAGES = ("000456.jpg", "000542.jpg", "001150.jpg", "001763.jpg", "004545.jpg")


def parse_args(argv=None):
    parser = tool_parser("Faster R-CNN demo", device=True, cfg=True,
                         prototxt="optional: test prototxt (instead of --net's)")
    parser.add_argument("--net", dest="demo_net", help="network to use", choices=NETS.keys(), default="vgg16")
    parser.add_argument("--caffemodel", default=None, help="weights (instead of --net's)")
    parser.add_argument("--imdb", default=None, help="take the class names from this dataset (default: VOC)")
    parser.add_argument("--images", nargs="+", default=None, help="images (default: data/demo/*.jpg)")
    parser.add_argument("--out", default=None, help="folder for the drawn images (default: output/demo)")
    parser.add_argument("--conf", type=float, default=CONF_THRESH, help="draw detections scoring >= this")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False)
    cfg.TEST.HAS_RPN = True  # use RPN for proposals
    net_dir, weights = NETS[args.demo_net]
    prototxt = args.prototxt or os.path.join(cfg.MODELS_DIR, net_dir, "faster_rcnn_alt_opt", "faster_rcnn_test.prototxt")
    caffemodel = args.caffemodel or os.path.join(cfg.DATA_DIR, "faster_rcnn_models", weights)
    if not os.path.isfile(caffemodel):
        raise FileNotFoundError(f"{caffemodel} not found: did you run py-faster-rcnn's "
                                "data/scripts/fetch_faster_rcnn_models.sh (or pass --caffemodel)?")
    classes = VOC_CLASSES
    if args.imdb:
        from frcnn.datasets.factory import get_imdb

        classes = tuple(get_imdb(args.imdb, cfg).classes)

    from frcnn.boxes.nms import nms_from_config
    from frcnn.caffe import TEST, Net

    net = Net(prototxt, caffemodel, TEST, cfg=cfg).to(device_from_config(cfg))
    print(f"\n\nLoaded network {caffemodel}")

    nms_fn = nms_from_config(cfg)

    # warmup on a dummy image
    im = 128 * np.ones((300, 500, 3), dtype=np.uint8)
    for _ in range(2):
        demo_detections(net, im, cfg, nms_fn)
    images = args.images or [os.path.join(cfg.DATA_DIR, "demo", n) for n in DEMO_IMAGES]
    images = [p for pattern in images for p in (sorted(glob.glob(pattern)) or [pattern])]
    out_dir = args.out or os.path.join(cfg.ROOT_DIR, "output", "demo")
    for path in images:
        print("~" * 50 + f"\nDemo for {path}")
        im = read_image(path)
        dets, n_props, seconds = demo_detections(net, im, cfg, nms_fn, conf_thresh=args.conf, nms_thresh=NMS_THRESH)
        print(f"Detection took {seconds:.3f}s for {n_props:d} object proposals")
        stem = os.path.splitext(os.path.basename(path))[0]
        out_path = os.path.join(out_dir, stem + "_detections.jpg")
        n = draw_detections(im, dets, classes, out_path, thresh=args.conf)
        print(f"{n} detections drawn into {out_path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
