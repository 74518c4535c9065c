#!/usr/bin/env python3
"""Time frcnn's native ops beside torchvision.ops (when importable), same run, same device.

usage: python tools/dev/bench_ops.py [--device cpu|cuda] [--repeats N] [--warmup N] [--quick]

Rows: NMS of 6,000 / 12,000 / 20,000 proposal-like boxes at IoU 0.7; RoI max pooling 7 x 7
forward and forward+backward at 128 / 300 / 2,000 RoIs on a 1 x 512 x 38 x 63 float32 map
(a 600 x 1000 image at stride 16). Each number is the median of N runs, each run bracketed
by torch.cuda.synchronize() on a GPU. torchvision's NMS uses IoU without the +1 pixel
convention, so its kept sets may differ slightly; the timing compares like with like work.

A second table times one SGD update of the learnable blobs of VGG16's end2end net (conv3_1 to
bbox_pred, 136.8 M float32 parameters; --quick: without fc6, 34.1 M) with momentum 0.9 and weight
decay 0.0005: the solver's one-pass op (frcnn::sgd_update_), the solver's torch operations (its
path with FRCNN_FUSED_SGD=0), and torch.optim.SGD with foreach and, where torch has it for the
device, fused kernels (a different rule, lr inside the history, at the same memory traffic).
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


# VGG16 end2end's learnable blobs (conv1_x and conv2_x have lr_mult 0 in py-faster-rcnn's
# prototxt): (name, weight shape); each has a bias of shape[0]
VGG16_LEARNABLE = (
    [("conv3_1", (256, 128, 3, 3)), ("conv3_2", (256, 256, 3, 3)), ("conv3_3", (256, 256, 3, 3)),
     ("conv4_1", (512, 256, 3, 3))]
    + [(f"conv{b}_{i}", (512, 512, 3, 3)) for b, i in ((4, 2), (4, 3), (5, 1), (5, 2), (5, 3))]
    + [("rpn_conv/3x3", (512, 512, 3, 3)), ("rpn_cls_score", (18, 512, 1, 1)), ("rpn_bbox_pred", (36, 512, 1, 1)),
       ("fc6", (4096, 25088)), ("fc7", (4096, 4096)), ("cls_score", (21, 4096)), ("bbox_pred", (84, 4096))]
)


def bench_sgd(device: torch.device, repeats: int, warmup: int, quick: bool) -> tuple[int, list[tuple]]:
    """(parameter count, rows (implementation, ms or None)) for one update of VGG16's blobs."""
    from frcnn.caffe import solver as solver_mod
    from frcnn.ops._native import native

    native()
    shapes = [shape for name, shape in VGG16_LEARNABLE if not (quick and name == "fc6")]
    shapes = [s for shape in shapes for s in (shape, (shape[0],))]
    g = torch.Generator(device=device).manual_seed(0)
    ws = [torch.randn(s, generator=g, device=device) * 0.01 for s in shapes]
    gs = [torch.randn(s, generator=g, device=device) * 1e-3 for s in shapes]
    vs = [torch.zeros(s, device=device) for s in shapes]
    count = sum(w.numel() for w in ws)
    # py-faster-rcnn's trained layers give biases lr_mult 2 and no decay_mult (so 1): biases are
    # weight-decayed like the weights
    decays = [0.0005 for s in shapes]
    rates = [0.001 if len(s) > 1 else 0.002 for s in shapes]  # biases: lr_mult 2
    scratch = {(device, torch.float32): torch.empty(max(w.numel() for w in ws), device=device)}

    def one_pass():
        for w, gr, v, d, r in zip(ws, gs, vs, decays, rates):
            torch.ops.frcnn.sgd_update_(w, gr, v, 1.0, d, 0.9, r)

    def torch_ops():
        for w, gr, v, d, r in zip(ws, gs, vs, decays, rates):
            solver_mod._torch_update(w, gr, v, 1, d, "L2", 0.9, r, scratch)

    params = [torch.nn.Parameter(w) for w in ws]
    for p, gr in zip(params, gs):
        p.grad = gr
    timed = functools.partial(median_ms, device, repeats, warmup)
    rows = [("frcnn one pass (sgd_update_)", timed(one_pass)), ("frcnn torch operations", timed(torch_ops))]
    for label, kw in (("torch.optim.SGD foreach", {"foreach": True}), ("torch.optim.SGD fused", {"fused": True})):
        try:
            opt = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=0.0005, **kw)
            opt.step()
        except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device
            rows.append((label, None))
            continue
        rows.append((label, timed(opt.step)))
    return count, rows


def format_sgd_table(count: int, rows: list[tuple]) -> str:
    lines = [f"SGD update of VGG16 end2end's learnable blobs ({count / 1e6:.1f} M parameters)",
             f"| {'implementation':<30} | {'ms':>9} |", f"|{'-' * 32}|{'-' * 11}|"]
    for label, ms in rows:
        lines.append(f"| {label:<30} | {'-' if ms is None else f'{ms:.3f}':>9} |")
    return "\n".join(lines)


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
    print(flush=True)
    print(format_sgd_table(*bench_sgd(device, repeats, warmup, args.quick)), flush=True)


if __name__ == "__main__":
    run_tool(main)
