#!/usr/bin/env python3
"""Table 5's timing: conv / proposal / region-wise / total ms per image of a trained system.

    paper_timing.py --gpu 0 --system rpn --def faster_rcnn_test.prototxt --net M --imdb voc_2007_test --out t.json
    paper_timing.py --gpu 0 --system ss --def fast_rcnn/test.prototxt --net M --imdb voc_2007_test \\
        --ss_file data/selective_search_data/voc_2007_test_opencv_ss_<key>.npz --out t.json

``--system rpn`` (RPN + Fast R-CNN): ``frcnn.inference.timing.time_image`` on each image: conv =
the shared trunk, proposal = the RPN head and proposal layer, region-wise = RoI pooling, the
detection head and the post-processing (decode, per-class NMS, top 100). ``--system ss`` (SS +
Fast R-CNN): the Fast R-CNN net on the image's selective-search boxes (the first
TEST.PROPOSAL_TOP_N, all by default: about 2000): conv = every layer before RoI pooling,
region-wise = RoI pooling to the end and the same post-processing, and proposal = the CPU
time ``tools/selective_search.py`` recorded for each of these images in ``--ss_file`` (as the
paper: SS runs on the CPU). The image is prepared (resize, mean, RoI projection) outside the timed
stages. Each stage is timed by CUDA events on the net's GPU (the device of ``--gpu``) or by the
wall clock on the CPU; the numbers are medians over ``--num`` images (at least 50) after
``--warmup`` untimed ones; total = the median of the per-image sums, rate = 1000 / total.
``--precision`` fp32 (TF32 off, Caffe's arithmetic), tf32 (GPUs only) or bf16 (autocast, TF32 on).
"""

from __future__ import annotations

import json
import os
import platform

import numpy as np
import torch

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.errors import InputError

PRECISIONS = ("fp32", "tf32", "bf16")
MIN_IMAGES = 50


def parse_args(argv=None):
    parser = tool_parser("Table 5: per-stage test time of a trained system", device=True, cfg=True,
                         prototxt="required: the test prototxt (faster_rcnn_test for rpn, fast_rcnn test for ss)",
                         weights="required: the trained model", help_if_empty=True)
    parser.add_argument("--system", choices=("rpn", "ss"), required=True,
                        help="rpn: RPN + Fast R-CNN; ss: SS + Fast R-CNN (needs --ss_file)")
    parser.add_argument("--imdb", dest="imdb_name", required=True, help="the images to time (their first --num)")
    parser.add_argument("--num", type=int, default=100, help=f"images timed (default 100, at least {MIN_IMAGES})")
    parser.add_argument("--warmup", type=int, default=10, help="untimed images first (default 10)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default), tf32 or bf16")
    add_flag(parser, "--ss_file", default=None,
             help="selective search file of --imdb written by tools/selective_search.py (its boxes and times)")
    add_flag(parser, "--allow_few", action="store_true",
             help=f"allow fewer than {MIN_IMAGES} images (smoke runs on small sets)")
    parser.add_argument("--out", required=True, help="write the numbers here (.json)")
    return parser.parse_args(argv)


def apply_precision(cfg, precision: str, device: torch.device) -> None:
    """The config keys of a precision mode (TF32, TEST.AMP)."""
    if precision == "tf32" and device.type != "cuda":
        raise InputError("--precision tf32: TensorFloat-32 is a setting of NVIDIA GPUs; on the CPU use fp32 or bf16")
    cfg.TF32 = precision in ("tf32", "bf16")
    cfg.TEST.AMP = "bf16" if precision == "bf16" else "none"


def stage_timers(device: torch.device) -> dict:
    """A timer per stage for work on ``device``: CUDA events on that GPU's current stream (so
    ``--gpu 1`` times GPU 1), the wall clock on the CPU."""
    from frcnn.inference.timing import STAGES, stage_timer

    return {s: stage_timer(device) for s in STAGES}


def roi_stage_start(net) -> str:
    """The name of the first RoI pooling layer (where a Fast R-CNN net's region-wise stage starts)."""
    for layer in net.layers:
        if type(layer).__name__ == "ROIPooling":
            return layer.name
    raise InputError(f"net '{net.name}': has no ROIPooling layer, so it is not a Fast R-CNN test net")


def time_fast_rcnn(net, im, boxes, cfg, timers, max_per_image: int = 100) -> None:
    """The SS system's conv and region-wise stages on one image and its proposal boxes."""
    from frcnn.inference.on_device import detections_on_device
    from frcnn.inference.test import DEDUP_WEIGHTS, _decode_on_device, get_image_blob, get_rois_blob

    timers["preprocess"].tic()
    data, scales = get_image_blob(im, cfg.TEST.SCALES, cfg.TEST.MAX_SIZE, cfg.PIXEL_MEANS)
    rois = get_rois_blob(boxes, scales)
    inv = None
    if cfg.DEDUP_BOXES > 0:  # as im_detect: duplicate RoIs run once
        _, index, inv = np.unique(np.round(rois * cfg.DEDUP_BOXES).dot(DEDUP_WEIGHTS), return_index=True,
                                  return_inverse=True)
        rois, boxes = rois[index], boxes[index]
    net.blobs["data"].data = torch.from_numpy(data).to(net.device)
    net.blobs["rois"].data = torch.from_numpy(np.ascontiguousarray(rois)).to(net.device)
    timers["preprocess"].toc()
    start = roi_stage_start(net)
    names = [layer.name for layer in net.layers]
    with torch.no_grad():
        timers["conv"].tic()
        net.forward(end=names[names.index(start) - 1])
        timers["conv"].toc()
        timers["region-wise"].tic()
        out = net.forward(start=start)
        scores, pred = _decode_on_device(out["cls_prob"], out["bbox_pred"], None, boxes, scales[0], im.shape, inv)
        detections_on_device(scores, pred, cfg.TEST.NMS, 0.05, max_per_image)
        timers["region-wise"].toc()


def ss_seconds(path: str, image_ids: list[str]) -> tuple[np.ndarray, list]:
    """The recorded seconds per image and the boxes of ``image_ids`` in an SS file."""
    from frcnn.datasets.proposals import load_proposals
    from frcnn.datasets.selective_search import read_timing

    info = read_timing(path)
    boxes, ids = load_proposals(path)
    pos = {str(i): k for k, i in enumerate(ids)}
    missing = [i for i in image_ids if str(i) not in pos]
    if missing:
        raise InputError(f"--ss_file {path}: has no boxes for image {missing[0]} of --imdb")
    sel = [pos[str(i)] for i in image_ids]
    return np.asarray(info["seconds"], dtype=np.float64)[sel], [boxes[k] for k in sel]


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False)
    from frcnn.caffe import TEST, Net
    from frcnn.config import device_from_config
    from frcnn.datasets.factory import get_imdb
    from frcnn.inference.timing import time_image
    from frcnn.utils.blob import read_image

    device = device_from_config(cfg)
    apply_precision(cfg, args.precision, device)
    if args.num < MIN_IMAGES and not args.allow_few:
        raise InputError(f"--num {args.num}: Table 5 takes the median over at least {MIN_IMAGES} images")
    if args.system == "ss" and not args.ss_file:
        raise InputError("--system ss: needs --ss_file (tools/selective_search.py's file of --imdb)")
    imdb = get_imdb(args.imdb_name, cfg)
    n = min(args.num, imdb.num_images)
    if n < args.num and not args.allow_few:
        raise InputError(f"--imdb {imdb.name}: has {imdb.num_images} images, fewer than --num {args.num}")
    paths = [imdb.image_path_at(i) for i in range(n)]
    cfg.TEST.HAS_RPN = args.system == "rpn"
    net = Net(args.prototxt, args.caffemodel, TEST, cfg=cfg).to(device)
    if args.system == "ss":
        seconds, boxes = ss_seconds(args.ss_file, list(imdb.image_index[:n]))
        top = int(cfg.TEST.PROPOSAL_TOP_N)
        boxes = [b[:top] if top > 0 else b for b in boxes]
    images = [read_image(p) for p in paths]
    from frcnn.boxes.nms import nms_from_config

    nms_fn = nms_from_config(cfg)

    def one(k: int, timers: dict) -> None:
        for s, t in stage_timers(net.device).items():
            timers.setdefault(s, t)
        if args.system == "rpn":
            time_image(net, images[k], cfg, nms_fn, timers)
        else:
            time_fast_rcnn(net, images[k], boxes[k].astype(np.float64), cfg, timers)

    for k in range(args.warmup):
        one(k % n, {})
    per = {s: [] for s in ("conv", "proposal", "region-wise")}
    for k in range(n):
        timers: dict = {}
        one(k, timers)
        per["conv"].append(timers["conv"].diff * 1e3)
        per["region-wise"].append(timers["region-wise"].diff * 1e3)
        per["proposal"].append(timers["proposal"].diff * 1e3 if args.system == "rpn" else seconds[k] * 1e3)
    arr = {s: np.asarray(v) for s, v in per.items()}
    totals = arr["conv"] + arr["proposal"] + arr["region-wise"]
    total = float(np.median(totals))
    result = {
        "conv": float(np.median(arr["conv"])), "proposal": float(np.median(arr["proposal"])),
        "region": float(np.median(arr["region-wise"])), "total": total, "fps": 1000.0 / total,
        "means": {s: float(v.mean()) for s, v in arr.items()}, "system": args.system, "images": n,
        "warmup": args.warmup, "precision": args.precision, "device": str(net.device),
        "device_name": torch.cuda.get_device_name(net.device) if net.device.type == "cuda" else platform.processor()
        or platform.machine(),
        "clock": "CUDA events" if net.device.type == "cuda" else "wall clock",
        "proposal_clock": "RPN on the net's device" if args.system == "rpn"
        else "selective search on the CPU, recorded by tools/selective_search.py",
        "model": os.path.abspath(args.caffemodel), "imdb": imdb.name, "scale": list(cfg.TEST.SCALES),
    }
    from frcnn.utils.io import atomic_write

    with atomic_write(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{args.system}: {n} images on {result['device']} ({result['clock']}, {args.precision}), medians: "
          f"conv {result['conv']:.1f} ms, proposal {result['proposal']:.1f} ms, region-wise {result['region']:.1f} ms, "
          f"total {total:.1f} ms ({result['fps']:.1f} fps)")
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_tool(main)
