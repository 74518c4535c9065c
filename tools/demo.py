#!/usr/bin/env python3
"""Demo: detect objects in images and save them with the boxes drawn (upstream's tools/demo.py,
drawing with OpenCV into files instead of matplotlib windows), plus a JSON of the detections.

    ./tools/demo.py --net zf                 # data/faster_rcnn_models/ZF_faster_rcnn_final.caffemodel
    ./tools/demo.py --cpu --def models/pascal_voc/SMALL/faster_rcnn_end2end/test.prototxt \\
        --caffemodel output/faster_rcnn_end2end/raccoon_train/small_faster_rcnn_iter_4000.caffemodel \\
        --images my_photos/ --out my_photos_detected/

Your own model: --def its test prototxt (the shipped one is adapted to the model's class count),
--caffemodel the snapshot. Class names: --imdb NAME (the model's dataset), or --classes FILE, or
the classes.txt that tools/train_net.py wrote beside the snapshots. --images takes files, glob
patterns and folders. Writes <out>/<image>_detections.jpg and <out>/detections.json (per image:
its size and each detection's class, score and box [x1, y1, x2, y2] in pixels, 0-based).
When the model's folder holds derived_defaults.yml (the settings experiments/scripts derived for
its dataset) and no --cfg is given, it is read, so the net is built as it was trained.
"""

import json
import os

import numpy as np

from frcnn.cli import config_from_args, run_tool, tool_parser
from frcnn.config import device_from_config
from frcnn.errors import InputError
from frcnn.inference.demo import (
    CONF_THRESH,
    NMS_THRESH,
    demo_detections,
    detections_record,
    image_files,
    model_classes,
)
from frcnn.utils.blob import read_image
from frcnn.utils.draw import draw_detections
from frcnn.utils.io import atomic_write

NETS = {"vgg16": ("VGG16", "VGG16_faster_rcnn_final.caffemodel"), "zf": ("ZF", "ZF_faster_rcnn_final.caffemodel")}
DEMO_IMAGES = ("000456.jpg", "000542.jpg", "001150.jpg", "001763.jpg", "004545.jpg")
DERIVED = "derived_defaults.yml"


def parse_args(argv=None):
    parser = tool_parser("Faster R-CNN demo", device=True, cfg=True,
                         prototxt="optional: test prototxt (instead of --net's)")
    parser.add_argument("--net", dest="demo_net", help="network to use", choices=NETS.keys(), default="vgg16")
    parser.add_argument("--caffemodel", default=None, help="weights (instead of --net's)")
    parser.add_argument("--imdb", default=None, help="take the class names from this dataset")
    parser.add_argument("--classes", default=None,
                        help="take the class names from this file (one per line; default: the classes.txt "
                             "beside --caffemodel, else PASCAL VOC's)")
    parser.add_argument("--images", nargs="+", default=None,
                        help="images, glob patterns or folders (default: data/demo/*.jpg)")
    parser.add_argument("--out", default=None, help="folder for the drawn images and the JSON (default: output/demo)")
    parser.add_argument("--json", default=None, help="the JSON of detections (default: <out>/detections.json)")
    parser.add_argument("--conf", type=float, default=CONF_THRESH, help="keep and draw detections scoring >= this")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    derived = os.path.join(os.path.dirname(os.path.abspath(args.caffemodel)), DERIVED) if args.caffemodel else None
    if derived and os.path.isfile(derived) and not args.cfg_file:
        print(f"Reading {derived}: the settings derived for this model's dataset (--cfg to choose others)")
        args.cfg_file = [derived]
    cfg = config_from_args(args, show=False)
    cfg.TEST.HAS_RPN = True  # use RPN for proposals
    net_dir, weights = NETS[args.demo_net]
    prototxt = args.prototxt or os.path.join(cfg.MODELS_DIR, net_dir, "faster_rcnn_alt_opt", "faster_rcnn_test.prototxt")
    caffemodel = args.caffemodel or os.path.join(cfg.DATA_DIR, "faster_rcnn_models", weights)
    if not os.path.isfile(caffemodel):
        raise FileNotFoundError(f"{caffemodel} not found: did you run py-faster-rcnn's "
                                "data/scripts/fetch_faster_rcnn_models.sh (or pass --caffemodel)?")
    if not os.path.isfile(prototxt):
        raise FileNotFoundError(f"--def {prototxt}: no such file")
    if args.images is None:
        demo_dir = os.path.join(cfg.DATA_DIR, "demo")
        images = [os.path.join(demo_dir, n) for n in DEMO_IMAGES]
        missing = [os.path.basename(p) for p in images if not os.path.isfile(p)]
        if missing:  # upstream committed these five PASCAL VOC 2007 images; this repository does not
            raise InputError(
                f"{demo_dir}: the default demo images ({', '.join(missing)}: upstream's, from VOC2007's "
                "JPEGImages) are not here: copy them there from VOCdevkit2007/VOC2007/JPEGImages, or pass "
                "--images FILES, PATTERNS or FOLDERS")
    else:
        images = image_files(args.images)

    from frcnn.boxes.nms import nms_from_config
    from frcnn.caffe import TEST, Net
    from frcnn.caffe.prototxt import parse_file
    from frcnn.nets.adapt import ensure_net_classes, net_num_classes

    if args.imdb:
        from frcnn.datasets.factory import get_imdb

        classes, source = tuple(get_imdb(args.imdb, cfg).classes), f"--imdb {args.imdb}"
    else:
        classes, source = model_classes(caffemodel, net_num_classes(parse_file(prototxt)), args.classes)
    print(f"Classes ({source}): {', '.join(classes[1:])}")
    out_dir = args.out or os.path.join(cfg.ROOT_DIR, "output", "demo")
    prototxt = ensure_net_classes(prototxt, len(classes), out_dir, cfg=cfg)  # classes and anchors
    net = Net(prototxt, caffemodel, TEST, cfg=cfg).to(device_from_config(cfg))
    print(f"\n\nLoaded network {caffemodel}")

    nms_fn = nms_from_config(cfg)

    # warmup on a dummy image
    im = 128 * np.ones((300, 500, 3), dtype=np.uint8)
    for _ in range(2):
        demo_detections(net, im, cfg, nms_fn)
    records = []
    for path in images:
        print("~" * 50 + f"\nDemo for {path}")
        im = read_image(path)
        dets, n_props, seconds = demo_detections(net, im, cfg, nms_fn, conf_thresh=args.conf, nms_thresh=NMS_THRESH)
        print(f"Detection took {seconds:.3f}s for {n_props:d} object proposals")
        stem = os.path.splitext(os.path.basename(path))[0]
        out_path = os.path.join(out_dir, stem + "_detections.jpg")
        n = draw_detections(im, dets, classes, out_path, thresh=args.conf)
        print(f"{n} detections drawn into {out_path}")
        records.append({**detections_record(path, im, dets, classes), "drawn": out_path})
    json_path = args.json or os.path.join(out_dir, "detections.json")
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with atomic_write(json_path, "w") as f:
        json.dump({"model": os.path.abspath(caffemodel), "prototxt": os.path.abspath(prototxt),
                   "classes": list(classes[1:]), "conf_thresh": args.conf, "images": records}, f, indent=1)
    print(f"Detections of {len(records)} images: {json_path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
