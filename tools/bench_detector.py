#!/usr/bin/env python3
"""Time our ZF / VGG16 Faster R-CNN beside an assembly of torchvision parts with the same trunk.

usage: python tools/bench_detector.py [--device cpu|cuda[:i]] [--nets ZF,VGG16] [--modes fp32,tf32,bf16]
           [--size 600x1000] [--repeats N] [--warmup N] [--channels_last] [--no_train] [--quick]
           [--json PATH]

Per net and precision mode, for ours and for torchvision's parts, in the same run on the same
device, with random weights (speed does not depend on them):
- test ms per image split as the paper's Table 5: conv (the trunk), proposal (RPN head and
  proposals), region-wise (RoI pooling, the head and the post-processing: decode, per-class
  NMS, top 100), and their total. Ours is ``frcnn.inference.timing.time_image`` (the image
  prepared outside the timed stages, post-processing as TEST.DEVICE_POSTPROCESS says);
- training ms per iteration, one image per iteration: forward, backward and the SGD update
  (ours: ``SGDSolver.step(1)`` with iter_size 1 and the data layer replaced by fixed blobs, so
  image loading is not timed; torchvision's: the same parts in train mode and torch.optim.SGD).

torchvision's assembly: the trunk (``torchvision.models.vgg16().features`` without its last
max pooling, or a ZF-shaped ``nn.Sequential`` with ZF's convolutions and within-channel LRN),
``AnchorGenerator`` (128/256/512 px, ratios 0.5/1/2) + ``RPNHead`` + ``RegionProposalNetwork``
(upstream's 12000/2000 training and 6000/300 test proposals, NMS 0.7), ``torchvision.ops.roi_pool``
(6 x 6 for ZF, 7 x 7 for VGG16, as ours), ``TwoMLPHead`` (4096) + ``FastRCNNPredictor`` (21
classes) in ``RoIHeads`` (score 0.05, NMS 0.3, 100 detections). Without torchvision its rows
are left out (said in the output).

Modes: fp32 (TF32 off), tf32 (TF32 on; GPUs only), bf16 (autocast bfloat16 with TF32 on for
what stays float32; on a CPU without native bf16 kernels only its test is timed, training
there takes minutes an iteration). Times: CUDA events on the chosen GPU, the wall clock on the CPU; the
median over ``--repeats`` runs after ``--warmup`` untimed ones, ours and torchvision's taking
turns (one run of each per round, tests first, then training). Prints a markdown table and
writes the rows as JSON (``--json``, default output/bench_detector/<device>.json).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from frcnn.cli import add_flag, check_gpu, run_tool, tool_parser
from frcnn.errors import UserError

try:  # optional: only for the comparison rows
    import torchvision
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
except Exception:  # noqa: BLE001 - any import failure just drops the rows
    torchvision = None

NETS = ("ZF", "VGG16")
MODES = ("fp32", "tf32", "bf16")
STAGES = ("conv", "proposal", "region-wise")
POOLED = {"ZF": 6, "VGG16": 7}
CHANNELS = {"ZF": 256, "VGG16": 512}
NUM_CLASSES = 21
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# Random weights for ours. rpn_bbox_pred without weights (its deltas are its small random biases):
# with random weights it decodes the anchors of a deep trunk (VGG16) to boxes of about the whole
# image, NMS keeps a handful and the heads would be timed on 1-50 RoIs instead of the 300 (test) and
# 128 sampled of 2000 (training) that torchvision's get; each row reports its test RoI count.
RANDOM_GAINS = {"bbox_pred": 0.05, "rpn_bbox_pred": 0.0}


# ----------------------------------------------------------------------------- shared


class Settings:
    """One bench run: device, input size, repeats and the precision mode being timed."""

    def __init__(self, device: torch.device, height: int, width: int, repeats: int, warmup: int,
                 channels_last: bool) -> None:
        self.device, self.height, self.width = device, height, width
        self.repeats, self.warmup, self.channels_last = repeats, warmup, channels_last

    def timer(self) -> Any:
        from frcnn.inference.timing import stage_timer

        return stage_timer(self.device)


def set_mode(mode: str) -> torch.dtype | None:
    """Apply a mode's TF32 flags (process-wide); return its autocast dtype."""
    from frcnn.caffe.precision import set_tf32

    set_tf32(mode in ("tf32", "bf16"))
    return torch.bfloat16 if mode == "bf16" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    from frcnn.caffe.precision import autocast as _autocast

    return _autocast(device.type, dtype)


def gt_boxes(h: int, w: int, n: int = 5, seed: int = 0) -> np.ndarray:
    """(n, 5) ground-truth rows x1, y1, x2, y2, class in input pixels (a fixed draw)."""
    rng = np.random.RandomState(seed)
    x1 = rng.uniform(0, w * 0.6, n)
    y1 = rng.uniform(0, h * 0.6, n)
    bw = rng.uniform(0.1, 0.4, n) * w
    bh = rng.uniform(0.1, 0.4, n) * h
    cls = rng.randint(1, NUM_CLASSES, n)
    return np.stack([x1, y1, np.minimum(x1 + bw, w - 1), np.minimum(y1 + bh, h - 1), cls], 1).astype(np.float32)


Run = Callable[[], dict[str, float]]


def take_turns(s: Settings, runs: dict[str, Run]) -> dict[str, dict[str, float]]:
    """Per implementation, the median of each entry of its ``run()`` (ms) over ``s.repeats`` runs
    after ``s.warmup``. The implementations take turns, one run each per round, so that a change
    of the machine's speed during the bench (clock, other jobs: 10-30 % between minutes on a
    shared CPU) falls on all of them alike instead of on whichever ran in that minute."""
    for _ in range(s.warmup):
        for run in runs.values():
            run()
    done: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for _ in range(s.repeats):
        for name, run in runs.items():
            done[name].append(run())
    return {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in done.items()}


# ----------------------------------------------------------------------------- ours


def our_config(s: Settings, mode: str) -> Any:
    from frcnn.config import cfg_from_file, get_default_config

    cfg = get_default_config()
    cfg_from_file(os.path.join(ROOT, "experiments", "cfgs", "faster_rcnn_end2end.yml"), cfg)
    cfg.GPU_ID = -1 if s.device.type == "cpu" else (s.device.index or 0)
    cfg.TEST.HAS_RPN = True
    cfg.TEST.SCALES, cfg.TEST.MAX_SIZE = (s.height,), max(s.height, s.width)
    cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE = (s.height,), max(s.height, s.width)
    cfg.TRAIN.IMS_PER_BATCH = 1
    cfg.TF32 = mode in ("tf32", "bf16")
    cfg.TEST.AMP = cfg.TRAIN.AMP = "bf16" if mode == "bf16" else "none"
    cfg.CHANNELS_LAST = s.channels_last
    return cfg


def ours_test(s: Settings, net_name: str, mode: str) -> Run:
    from frcnn.boxes.nms import nms_from_config
    from frcnn.caffe import TEST, Net
    from frcnn.inference.timing import time_image
    from frcnn.nets.random_init import fill_random

    cfg = our_config(s, mode)
    net = Net(os.path.join(ROOT, "models", "pascal_voc", net_name, "faster_rcnn_end2end", "test.prototxt"),
              None, TEST, cfg=cfg)
    fill_random(net, seed=0, gains=RANDOM_GAINS)
    net.to(s.device)
    set_mode(mode)
    im = np.random.RandomState(0).randint(0, 255, (s.height, s.width, 3)).astype(np.uint8)
    nms_fn = nms_from_config(cfg)

    def run() -> dict[str, float]:
        timers: dict[str, Any] = {}
        time_image(net, im, cfg, nms_fn, timers)
        return {**{st: timers[st].diff * 1e3 for st in STAGES}, "rois": float(net.blobs["rois"].data.shape[0])}

    return lambda: _add_total(run())


class FixedBlobs(nn.Module):
    """Stands in for the training data layer: the same data / im_info / gt_boxes every call."""

    def __init__(self, *tops: torch.Tensor) -> None:
        super().__init__()
        self.tops = tops

    def forward(self) -> tuple[torch.Tensor, ...]:
        return self.tops


def ours_train(s: Settings, net_name: str, mode: str) -> Run:
    from frcnn.caffe import SGDSolver
    from frcnn.nets.random_init import fill_random

    cfg = our_config(s, mode)
    solver_path = os.path.join(ROOT, "models", "pascal_voc", net_name, "faster_rcnn_end2end", "solver.prototxt")
    solver = SGDSolver(solver_path, cfg)
    p = solver.param
    p.display, p.snapshot, p.iter_size = 0, 0, 1
    p.base_lr = 1e-6  # timing only: random weights must not diverge into NaN boxes
    fill_random(solver.net, seed=0, gains=RANDOM_GAINS)
    h, w, dev = s.height, s.width, s.device
    data = torch.from_numpy(np.random.RandomState(1).randn(1, 3, h, w).astype(np.float32) * 50).to(dev)
    im_info = torch.tensor([[float(h), float(w), 1.0]], device=dev)
    gt = torch.from_numpy(gt_boxes(h, w)).to(dev)
    solver.net.layers[0].impl = FixedBlobs(data, im_info, gt)
    set_mode(mode)

    def run() -> dict[str, float]:
        t = s.timer()
        t.tic()
        solver.step(1)
        t.toc()
        return {"train": t.diff * 1e3}

    return run


def _add_total(stages: dict[str, float]) -> dict[str, float]:
    """The stages plus their sum (so that the reported total is the median of per-image totals)."""
    return {**stages, "total": sum(stages[st] for st in STAGES)}


# ----------------------------------------------------------------------------- torchvision


class WithinChannelLRN(nn.Module):
    """Caffe's LRN with norm_region WITHIN_CHANNEL (ZF's norm1/norm2): x / (1 + alpha * mean of
    x^2 over a size x size window) ** beta."""

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75) -> None:
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.size - 1) // 2
        mean = nn.functional.avg_pool2d(x * x, self.size, 1, pad, count_include_pad=True)
        return x / (1 + self.alpha * mean) ** self.beta


def tv_trunk(net_name: str) -> nn.Module:
    if net_name == "VGG16":
        return torchvision.models.vgg16(weights=None).features[:-1]  # to conv5_3 + ReLU, stride 16
    return nn.Sequential(  # ZF (Zeiler & Fergus) as py-faster-rcnn's ZF prototxts define it
        nn.Conv2d(3, 96, 7, 2, 3), nn.ReLU(inplace=True), WithinChannelLRN(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(96, 256, 5, 2, 2), nn.ReLU(inplace=True), WithinChannelLRN(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(384, 384, 3, 1, 1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(inplace=True),
    )


class RoIPoolHead(nn.Module):
    """``torchvision.ops.roi_pool`` with RoIHeads' box_roi_pool signature (one feature map)."""

    def __init__(self, size: int, spatial_scale: float) -> None:
        super().__init__()
        self.size, self.spatial_scale = size, spatial_scale

    def forward(self, features: dict, proposals: list, image_shapes: list) -> torch.Tensor:
        x = features["0"]
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # its CPU kernel has no bf16
        return torchvision.ops.roi_pool(x, proposals, (self.size, self.size), self.spatial_scale)


class Float32Outputs(nn.Module):
    """A module whose outputs are widened to float32 (the RPN head's scores and deltas go on to
    box decoding and NMS in float32, as our proposal layer's)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Any) -> Any:
        scores, deltas = self.module(x)
        return [t.float() for t in scores], [t.float() for t in deltas]


def tv_detector(net_name: str, device: torch.device, channels_last: bool) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    c, size = CHANNELS[net_name], POOLED[net_name]
    trunk = tv_trunk(net_name)
    anchors = AnchorGenerator(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    rpn = RegionProposalNetwork(
        anchors, Float32Outputs(RPNHead(c, 9)), fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256,
        positive_fraction=0.5, pre_nms_top_n={"training": 12000, "testing": 6000},
        post_nms_top_n={"training": 2000, "testing": 300}, nms_thresh=0.7)
    heads = RoIHeads(
        RoIPoolHead(size, 1.0 / 16), TwoMLPHead(c * size * size, 4096), FastRCNNPredictor(4096, NUM_CLASSES),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=128, positive_fraction=0.25,
        bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.3, detections_per_img=100)
    parts = {"trunk": trunk.to(device), "rpn": rpn.to(device), "heads": heads.to(device)}
    if channels_last:
        parts["trunk"] = parts["trunk"].to(memory_format=torch.channels_last)
    return parts


def _tv_input(s: Settings) -> tuple[torch.Tensor, Any]:
    x = torch.from_numpy(np.random.RandomState(1).randn(1, 3, s.height, s.width).astype(np.float32)).to(s.device)
    if s.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, ImageList(x, [(s.height, s.width)])


def tv_test(s: Settings, net_name: str, mode: str) -> Run:
    parts = tv_detector(net_name, s.device, s.channels_last)
    for m in parts.values():
        m.eval()
    dtype = set_mode(mode)
    x, images = _tv_input(s)

    def run() -> dict[str, float]:
        out = {}
        with torch.no_grad(), autocast(s.device, dtype):
            t = s.timer()
            t.tic()
            feats = {"0": parts["trunk"](x)}
            t.toc()
            out["conv"] = t.diff * 1e3
            t.tic()
            proposals, _ = parts["rpn"](images, feats)
            t.toc()
            out["proposal"] = t.diff * 1e3
            out["rois"] = float(len(proposals[0]))
            t.tic()
            dets, _ = parts["heads"](feats, proposals, images.image_sizes)
            _ = [d["boxes"].cpu() for d in dets]  # the detections reach the host, as ours
            t.toc()
            out["region-wise"] = t.diff * 1e3
        return _add_total(out)

    return run


def tv_train(s: Settings, net_name: str, mode: str) -> Run:
    parts = tv_detector(net_name, s.device, s.channels_last)
    for m in parts.values():
        m.train()
    params = [p for m in parts.values() for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=1e-6, momentum=0.9, weight_decay=5e-4)
    dtype = set_mode(mode)
    x, images = _tv_input(s)
    gt = torch.from_numpy(gt_boxes(s.height, s.width)).to(s.device)
    targets = [{"boxes": gt[:, :4], "labels": gt[:, 4].long()}]

    def run() -> dict[str, float]:
        t = s.timer()
        t.tic()
        opt.zero_grad(set_to_none=True)
        with autocast(s.device, dtype):
            feats = {"0": parts["trunk"](x)}
            proposals, rpn_losses = parts["rpn"](images, feats, targets)
            _, head_losses = parts["heads"](feats, proposals, images.image_sizes, targets)
            loss = sum(rpn_losses.values()) + sum(head_losses.values())
        loss.backward()
        opt.step()
        float(loss.detach())  # the loss reaches the host, as ours (the solver reads it every iteration)
        t.toc()
        return {"train": t.diff * 1e3}

    return run


# ----------------------------------------------------------------------------- the run


def trains_in(s: Settings, mode: str) -> bool:
    """Whether a mode's training iterations are timed: not bf16 on a CPU without native bf16
    kernels, where one ZF iteration takes minutes (torch's generic bf16 matrix product; see
    frcnn.caffe.precision.cpu_has_native)."""
    from frcnn.caffe.precision import cpu_has_native

    return not (s.device.type == "cpu" and mode == "bf16" and not cpu_has_native(torch.bfloat16))


def default_modes(device: torch.device, quick: bool) -> str:
    """The modes timed without --modes: fp32, TF32 and bf16 on a GPU, fp32 and bf16 on a CPU;
    a --quick dry run on a CPU without native bf16 kernels leaves bf16 out (a VGG16 bf16 test
    image alone takes many seconds there), with a word."""
    from frcnn.caffe.precision import cpu_has_native

    if device.type == "cuda":
        return "fp32,tf32,bf16"
    if quick and not cpu_has_native(torch.bfloat16):
        print("bench_detector: --quick on a CPU without native bf16 kernels: fp32 only (--modes fp32,bf16 for both)")
        return "fp32"
    return "fp32,bf16"


def bench(s: Settings, nets: list[str], modes: list[str], train: bool, with_tv: bool) -> list[dict]:
    rows = []
    if train and not all(trains_in(s, m) for m in modes):
        print("bench_detector: this CPU has no native bf16 kernels (AVX512-BF16 or AMX): bf16 training "
              "is left out (torch's generic kernels take minutes per iteration); bf16 testing is timed")
    for net_name in nets:
        for mode in modes:
            impls = {"frcnn": (ours_test, ours_train)}
            if with_tv:
                impls["torchvision"] = (tv_test, tv_train)
            tests = take_turns(s, {impl: fns[0](s, net_name, mode) for impl, fns in impls.items()})
            timed = train and trains_in(s, mode)
            trains = take_turns(s, {impl: fns[1](s, net_name, mode) for impl, fns in impls.items()}) if timed else {}
            for impl in impls:
                row: dict[str, Any] = {"net": net_name, "mode": mode, "impl": impl, **tests[impl]}
                row["train"] = trains[impl]["train"] if timed else None
                rows.append(row)
                print(f"bench_detector: {format_row(row)}", flush=True)
    return rows


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}" if v >= 100 else f"{v:.2f}"


def format_row(r: dict) -> str:
    cells = [r["net"], r["mode"], r["impl"], *(_ms(r[k]) for k in (*STAGES, "total", "train")), f"{r['rois']:.0f}"]
    return "| " + " | ".join(cells) + " |"


def format_table(rows: list[dict], meta: dict) -> str:
    lines = [
        (f"device: {meta['device_name']}; input {meta['size']}; median of {meta['repeats']} after "
         f"{meta['warmup']} warm-up; torch {meta['torch']}, torchvision {meta['torchvision'] or 'not installed'}; "
         f"channels-last {meta['channels_last']}; {meta['date']}"),
        "| net | mode | impl | conv ms | proposal ms | region-wise ms | test total ms | train ms/iter | test RoIs |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(lines + [format_row(r) for r in rows])


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size: expected HEIGHTxWIDTH such as 600x1000, got {text!r}") from None
    if h < 32 or w < 32:
        raise UserError(f"--size: {h}x{w} is too small for a stride-16 trunk (at least 32x32)")
    return h, w


def parse_list(text: str, known: tuple[str, ...], flag: str) -> list[str]:
    items = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in items if v not in known]
    if bad or not items:
        raise UserError(f"{flag}: expected a comma-separated list of {', '.join(known)}, got {text!r}")
    return items


def resolve_device(text: str) -> torch.device:
    """--device: cpu, or cuda[:i] with its index filled in ("cuda" is the current device), since
    torch.cuda.set_device refuses a device without one."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"--device: expected cpu or cuda[:i], got {text!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device: expected cpu or cuda[:i], got {text!r}")
    if device.type == "cuda":
        try:  # the tools' own check: CUDA there, the index one of the machine's devices
            check_gpu(0 if device.index is None else device.index)
        except UserError as e:
            raise UserError(f"--device {text}: {e}") from None
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda[:i] (default: cuda when available)")
    parser.add_argument("--nets", default="ZF,VGG16", help="comma-separated: ZF, VGG16")
    parser.add_argument("--modes", default=None,
                        help="comma-separated: fp32, tf32, bf16 (default: all three on a GPU, fp32,bf16 on the CPU)")
    parser.add_argument("--size", default="600x1000", help="input HEIGHTxWIDTH (default 600x1000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 5 GPU, 1 CPU)")
    add_flag(parser, "--channels_last", action="store_true", help="NHWC trunks (ours: CHANNELS_LAST)")
    add_flag(parser, "--no_train", action="store_true", help="skip the training iterations")
    add_flag(parser, "--no_torchvision", action="store_true", help="time ours only")
    parser.add_argument("--quick", action="store_true",
                        help="a dry run: 192x256 input, 2 runs after 1 warm-up (checks the tool, not the speed); "
                             "on a CPU without native bf16 kernels, fp32 only unless --modes says otherwise")
    parser.add_argument("--json", default=None, help="where to write the rows (default output/bench_detector/)")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    nets = parse_list(args.nets, NETS, "--nets")
    modes = parse_list(args.modes or default_modes(device, args.quick), MODES, "--modes")
    if not on_gpu and "tf32" in modes:
        print("bench_detector: tf32 is a GPU mode (NVIDIA Ampere and later); left out on the CPU")
        modes = [m for m in modes if m != "tf32"]
    height, width = (192, 256) if args.quick else parse_size(args.size)
    repeats = args.repeats or (2 if args.quick else 20 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick or not on_gpu else 5)
    if repeats < 1 or warmup < 0:
        raise UserError(f"--repeats must be >= 1 and --warmup >= 0, got {repeats} and {warmup}")
    with_tv = torchvision is not None and not args.no_torchvision
    if torchvision is None and not args.no_torchvision:
        print("bench_detector: torchvision is not importable here: its rows are left out")
    if on_gpu:
        torch.cuda.set_device(device)
    s = Settings(device, height, width, repeats, warmup, args.channels_last)
    meta = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_gpu else f"cpu ({platform.processor() or 'x86_64'}, "
                                                                           f"{torch.get_num_threads()} threads)",
        "size": f"{height}x{width}", "repeats": repeats, "warmup": warmup, "channels_last": args.channels_last,
        "torch": torch.__version__, "torchvision": torchvision.__version__ if torchvision is not None else None,
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
    }
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        rows = bench(s, nets, modes, train=not args.no_train, with_tv=with_tv)
    finally:  # the modes set process-wide flags: leave them as they were
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    print(format_table(rows, meta), flush=True)
    path = args.json or os.path.join(ROOT, "output", "bench_detector", f"{device.type}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    from frcnn.utils.io import atomic_write

    with atomic_write(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"bench_detector: wrote {path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
