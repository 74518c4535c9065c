#!/usr/bin/env python3
"""Time frcnn's native ops beside torchvision.ops (when importable), same run, same device.

usage: python tools/dev/bench_ops.py [--device cpu|cuda] [--repeats N] [--warmup N] [--quick]

Rows: NMS of 6,000 / 12,000 / 20,000 proposal-like boxes at IoU 0.7; RoI max pooling 7 x 7
forward and forward+backward at 128 / 300 / 2,000 RoIs on a 1 x 512 x 38 x 63 float32 map
(a 600 x 1000 image at stride 16). Each number is the median of N runs, each run bracketed
by torch.cuda.synchronize() on a GPU. torchvision's NMS uses IoU without the +1 pixel
convention, so its kept sets may differ slightly; the timing compares like with like work.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Callable

import torch

from frcnn.cli import run_tool, tool_parser
from frcnn.ops import nms, roi_pool

try:  # optional: only for the comparison column
    import torchvision.ops as tv_ops
except Exception:  # noqa: BLE001 - any import failure just drops the column
    tv_ops = None

IMG_H, IMG_W, STRIDE = 600, 1000, 16
FEATURE_SHAPE = (1, 512, 38, 63)


def proposals(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """RPN-like boxes: anchor-sized boxes (64..512 px, three ratios) jittered around random
    centres in a 600 x 1000 image, many overlapping; uniform random scores."""
    g = torch.Generator().manual_seed(seed)
    ctr = torch.rand(n, 2, generator=g) * torch.tensor([IMG_W, IMG_H])
    size = 2.0 ** (6 + 3 * torch.rand(n, generator=g))
    ratio = torch.tensor([0.5, 1.0, 2.0])[torch.randint(0, 3, (n,), generator=g)]
    w, h = size / ratio.sqrt(), size * ratio.sqrt()
    boxes = torch.stack([ctr[:, 0] - w / 2, ctr[:, 1] - h / 2, ctr[:, 0] + w / 2, ctr[:, 1] + h / 2], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, IMG_W - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, IMG_H - 1)
    scores = torch.rand(n, generator=g)
    return boxes.to(device), scores.to(device)


def random_rois(r: int, device: torch.device, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(r, 2, generator=g) * torch.tensor([IMG_W * 0.8, IMG_H * 0.8])
    wh = 16 + torch.rand(r, 2, generator=g) * torch.tensor([IMG_W * 0.5, IMG_H * 0.5])
    rois = torch.cat([torch.zeros(r, 1), xy, xy + wh], 1)
    return rois.to(device)


def median_ms(device: torch.device, repeats: int, warmup: int, fn: Callable[..., object], *args) -> float:
    """Median wall time of fn(*args) in ms; on a GPU each run is bracketed by synchronize()."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn(*args)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _frcnn_pool(features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    return roi_pool(features, rois, 7, 7, 1.0 / STRIDE)


def _tv_pool(features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    return tv_ops.roi_pool(features, rois, (7, 7), 1.0 / STRIDE)


def _fwd_bwd(pool: Callable, features: torch.Tensor, rois: torch.Tensor, grad: torch.Tensor) -> None:
    features.grad = None
    pool(features, rois).backward(grad)


def bench(device: torch.device, repeats: int, warmup: int, quick: bool) -> list[tuple]:
    """One row per (op, size): (op, size, frcnn ms, torchvision ms or None)."""
    timed = functools.partial(median_ms, device, repeats, warmup)
    rows = []
    for n in (6000, 12000) if quick else (6000, 12000, 20000):
        boxes, scores = proposals(n, device)
        ours = timed(nms, boxes, scores, 0.7)
        theirs = None if tv_ops is None else timed(tv_ops.nms, boxes, scores, 0.7)
        kept = int(nms(boxes, scores, 0.7).numel())
        rows.append((f"nms IoU 0.7 ({kept} kept)", f"{n} boxes", ours, theirs))

    features = torch.randn(FEATURE_SHAPE, device=device)
    feat = features.clone().requires_grad_()
    for r in (128, 300) if quick else (128, 300, 2000):
        rois = random_rois(r, device)
        ours = timed(_frcnn_pool, features, rois)
        theirs = None if tv_ops is None else timed(_tv_pool, features, rois)
        rows.append(("roi_pool 7x7 forward", f"{r} RoIs", ours, theirs))
        grad = torch.randn(r, FEATURE_SHAPE[1], 7, 7, device=device)
        ours = timed(_fwd_bwd, _frcnn_pool, feat, rois, grad)
        theirs = None if tv_ops is None else timed(_fwd_bwd, _tv_pool, feat, rois, grad)
        rows.append(("roi_pool 7x7 fwd+bwd", f"{r} RoIs", ours, theirs))
    return rows


def format_table(rows: list[tuple], device_name: str, repeats: int) -> str:
    lines = [
        f"device: {device_name}; median of {repeats} runs; torch {torch.__version__}"
        + ("" if tv_ops is None else f"; torchvision {__import__('torchvision').__version__}"),
        f"| {'op':<30} | {'size':<12} | {'frcnn ms':>9} | {'torchvision ms':>14} | {'speed-up':>8} |",
        f"|{'-' * 32}|{'-' * 14}|{'-' * 11}|{'-' * 16}|{'-' * 10}|",
    ]
    for op, size, ours, theirs in rows:
        tv = "-" if theirs is None else f"{theirs:.3f}"
        ratio = "-" if theirs is None else f"{theirs / ours:.2f}x"
        lines.append(f"| {op:<30} | {size:<12} | {ours:>9.3f} | {tv:>14} | {ratio:>8} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = tool_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda[:i] (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 50 GPU, 5 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 5 GPU, 1 CPU)")
    parser.add_argument("--quick", action="store_true", help="skip the largest size of each op")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    on_gpu = device.type == "cuda"
    repeats = args.repeats or (50 if on_gpu else 5)
    warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    name = torch.cuda.get_device_name(device) if on_gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(format_table(bench(device, repeats, warmup, args.quick), name, repeats), flush=True)


if __name__ == "__main__":
    run_tool(main)
