#!/usr/bin/env python3
"""Where the time of one training iteration (``--mode train``) or one test image (``--mode test``)
goes, as a table: engine layers by type, the Python layers, the data layer and its prefetch
threads, backward, the solver update, and the Python bookkeeping around them.

    OMP_NUM_THREADS=1 python tools/dev/profile_iteration.py --mode train --iters 100
    OMP_NUM_THREADS=1 python tools/dev/profile_iteration.py --mode test --iters 100 \\
        --net output/faster_rcnn_end2end/toy_trainval/small_faster_rcnn_iter_3000.caffemodel

Defaults: the toy set and the SMALL end2end nets that ``experiments/scripts/faster_rcnn_end2end.sh
cpu SMALL toy`` runs (models/toy/SMALL/faster_rcnn_end2end/, experiments/cfgs/faster_rcnn_end2end.yml
then toy.yml), made by tools/make_toy_dataset.py; one torch thread (``--threads``).

Clocks: CPU time, not the wall clock, so that other jobs on the machine change the numbers less.
An iteration's (image's) total is the process's CPU time (``time.process_time``: every thread,
the data layer's prefetch workers included); each part is the calling thread's CPU time
(``time.thread_time``) inside that part; "prefetch threads" is the difference between the two
clocks. The wall clock per iteration is printed beside it. Backward is one call; hooks on its
autograd nodes time each node (the engine runs a CPU graph on the calling thread), and each
node's row is the layer type that made it (``BACKWARD_NODES``); "rest" is the backward call's
time outside the nodes (the engine, and the AccumulateGrad nodes, which cannot be timed so). The wrappers, hooks and clock calls (a few us per
layer and node) land in the rows around them, so the timed iterations cost a little more than
plain ones: the same number of plain iterations runs first, and its times are printed under
the table. On a GPU the rows are host time (launches and bookkeeping), not kernel time.

The training iterations are ``SGDSolver.step(1)`` calls of the real solver (data layer, RPN
layers, losses, backward, Caffe's update) after ``--warmup`` untimed ones; the test images go
through ``frcnn.inference.test.im_detect`` and the per-image detections of ``test_net``
(``TEST.DEVICE_POSTPROCESS`` says which post-processing), images read beforehand.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import statistics
import sys
import time
from typing import Any, Callable

import torch

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.errors import UserError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _path(p: str) -> str:
    """A path as given (absolute, or relative to the working directory), else under the repository."""
    return p if os.path.exists(p) else os.path.join(ROOT, p)
TOY = os.path.join("models", "toy", "SMALL", "faster_rcnn_end2end")
CFGS = [os.path.join("experiments", "cfgs", "faster_rcnn_end2end.yml"), os.path.join("experiments", "cfgs", "toy.yml")]

#: autograd node name (without its trailing version digit) -> the layer type that made it
BACKWARD_NODES = {
    "ConvolutionBackward": "Convolution",
    "MkldnnConvolutionBackward": "Convolution",
    "AddmmBackward": "InnerProduct",
    "MmBackward": "InnerProduct",
    "TBackward": "InnerProduct",
    "NativeBatchNormBackward": "BatchNorm",
    "CudnnBatchNormBackward": "BatchNorm",
    "AddcmulBackward": "Scale",
    "MaxPool2DWithIndicesBackward": "Pooling",
    "ConstantPadNdBackward": "Pooling",
    "ReluBackward": "ReLU",
    "ThresholdBackward": "ReLU",
    "RoIPoolFunctionBackward": "ROIPooling",
    "_RoIPoolFunctionBackward": "ROIPooling",
    "SoftmaxBackward": "Softmax",
    "LogSoftmaxBackward": "SoftmaxWithLoss",
    "GatherBackward": "SoftmaxWithLoss",
    "_MaxPoolChannelsLastBackward": "Pooling",
    "_ScaleBiasBackward": "Scale",
}


def parse_args(argv: list[str] | None = None) -> Any:
    parser = tool_parser("Profile a training iteration or a test image: a table of where the time goes",
                         device=True, cfg=True)
    add_flag(parser, "--mode", choices=("train", "test"), default="train", help="train: solver iterations; "
             "test: images through im_detect and the per-image detections")
    add_flag(parser, "--iters", type=int, default=50, help="timed iterations (train) or images (test)")
    add_flag(parser, "--warmup", type=int, default=5, help="untimed iterations / images first")
    add_flag(parser, "--no_backward_split", action="store_true",
             help="time backward as one row (no hooks on the autograd nodes)")
    add_flag(parser, "--threads", type=int, default=1, help="torch threads (torch.set_num_threads)")
    add_flag(parser, "--solver", default=os.path.join(TOY, "solver.prototxt"), help="solver prototxt (train)")
    add_flag(parser, "--def", dest="prototxt", default=os.path.join(TOY, "test.prototxt"), help="test prototxt (test)")
    add_flag(parser, "--net", dest="caffemodel", default=None,
             help="test weights (default: random; the number of detections, and so the post-processing "
                  "time, then differ from a trained model's)")
    add_flag(parser, "--imdb", dest="imdb_name", default=None, help="dataset (default toy_trainval / toy_test)")
    add_flag(parser, "--by_layer", action="store_true", help="one forward row per layer (default: per layer type)")
    add_flag(parser, "--cprofile", type=int, default=0, help="also print the N functions of most own time (cProfile)")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or args.threads < 1:
        raise UserError("--iters and --threads must be >= 1, --warmup >= 0")
    if args.cfg_file is None:
        args.cfg_file = [os.path.join(ROOT, c) for c in CFGS]
    return args


# ---------------------------------------------------------------------------------- the meter
class Meter:
    """CPU time of the calling thread per named part (``wrap``), counted while ``on``."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = collections.defaultdict(float)
        self.on = False

    def wrap(self, fn: Callable, key: str) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return fn(*args, **kwargs)
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[key] += time.thread_time() - t0

        return timed


def layer_key(layer: Any, by_name: bool = False) -> str:
    """The table row of a layer: its Caffe type (or name), or the class of a Python layer."""
    impl = getattr(layer, "impl", None)
    if impl is None:
        return f"layer {layer.name} ({layer.type_name})" if by_name else f"layer {layer.type_name}"
    name = type(impl).__name__
    return "data layer (main thread)" if name == "RoIDataLayer" else f"Python {name}"


def instrument_net(net: Any, meter: Meter, by_name: bool = False) -> list[str]:
    """Time every layer's forward and the net's own forward; return the layer rows."""
    keys = []
    for layer in net.layer_list:
        key = layer_key(layer, by_name)
        layer.forward = meter.wrap(layer.forward, key)
        keys.append(key)
    net.forward = meter.wrap(net.forward, "net.forward")
    return list(dict.fromkeys(keys))


def backward_row(node: Any) -> str:
    """The table row of an autograd node: the layer type that made it."""
    name = type(node).__name__.split("::")[-1].rstrip("0123456789")
    return "backward: " + BACKWARD_NODES.get(name, "other (losses, reshapes, sums)")


def time_nodes(root: Any, meter: Meter) -> None:
    """Hooks on every autograd node reachable from ``root``: each node's CPU time (the engine
    runs a CPU graph on the calling thread, one node at a time) goes to its row."""
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(nxt for nxt, _ in node.next_functions)
        if type(node).__name__ == "AccumulateGrad":  # its pre-hook runs as a tensor hook, at another time
            continue
        key, start = backward_row(node), []
        node.register_prehook(lambda grads, start=start: start.append(time.thread_time()))

        def done(grad_inputs: Any, grad_outputs: Any, key: str = key, start: list = start) -> None:
            if start:
                meter.totals[key] += time.thread_time() - start.pop()

        node.register_hook(done)


@contextlib.contextmanager
def timed_backward(meter: Meter, per_node: bool = True) -> Any:
    """Time every ``Tensor.backward`` call (the solver's) while inside, and (``per_node``) each
    autograd node of it."""
    original = torch.Tensor.backward

    def backward(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if meter.on and per_node and self.grad_fn is not None:
            time_nodes(self.grad_fn, meter)
        return meter.wrap(original, "backward")(self, *args, **kwargs)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = original


class Clocks:
    """Per iteration (image): the process's CPU time, the wall clock, the calling thread's CPU time."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self.thread: list[float] = []

    def run(self, step: Callable[[], None]) -> None:
        p0, w0, t0 = time.process_time(), time.perf_counter(), time.thread_time()
        step()
        self.cpu.append(time.process_time() - p0)
        self.wall.append(time.perf_counter() - w0)
        self.thread.append(time.thread_time() - t0)

    def mean(self, which: str = "cpu") -> float:
        values = getattr(self, which)
        return sum(values) / len(values)


# ---------------------------------------------------------------------------------- train
def _quiet(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def build_solver(args: Any, cfg: Any) -> Any:
    from frcnn.nets.adapt import ensure_solver_classes
    from frcnn.training.train import SolverWrapper, filter_roidb, get_roidb, set_random_seeds

    set_random_seeds(cfg.RNG_SEED)
    roidb, imdb = _quiet(get_roidb, args.imdb_name or "toy_trainval", cfg)
    roidb = filter_roidb(roidb, cfg)
    out = os.path.join(cfg.ROOT_DIR, "output", "profile_iteration")  # (the adapted nets, if any)
    solver = ensure_solver_classes(_path(args.solver), imdb.num_classes, os.path.join(out, "models"), ROOT, cfg=cfg)
    sw = _quiet(SolverWrapper, solver, roidb, out, cfg)
    sw.solver.param.display = 0
    return sw.solver


def profile_train(args: Any, cfg: Any) -> tuple[list[tuple[str, float]], Clocks, Clocks]:
    """(rows, the instrumented iterations' clocks, the plain iterations' clocks)."""
    solver = build_solver(args, cfg)
    meter = Meter()
    layer_rows = instrument_net(solver.net, meter, args.by_layer)
    solver._apply_update = meter.wrap(solver._apply_update, "solver update")
    solver.step(args.warmup)
    plain = Clocks()
    for _ in range(args.iters):  # the wrappers are off: what an iteration costs without them
        plain.run(lambda: solver.step(1))
    clocks = Clocks()
    with timed_backward(meter, per_node=not args.no_backward_split):
        meter.on = True
        for _ in range(args.iters):
            clocks.run(lambda: solver.step(1))
        meter.on = False
    t = {k: v / args.iters for k, v in meter.totals.items()}
    layers = sum(t.get(k, 0.0) for k in layer_rows)
    rows = [(k, t.get(k, 0.0)) for k in layer_rows if k.startswith("layer ")]
    rows += [(k, t.get(k, 0.0)) for k in layer_rows if k.startswith("Python ")]
    rows += [("data layer (main thread)", t.get("data layer (main thread)", 0.0))]
    rows += [("data prefetch threads", clocks.mean("cpu") - clocks.mean("thread"))]
    bwd = t.get("backward", 0.0)
    nodes = sorted(((k, v) for k, v in t.items() if k.startswith("backward: ")), key=lambda kv: -kv[1])
    rows += nodes
    rows += [("backward: rest (autograd engine, gradient accumulation into .grad)" if nodes else "backward",
              bwd - sum(v for _, v in nodes))]
    rows += [("solver update", t.get("solver update", 0.0))]
    rows += [("engine bookkeeping (Net.forward minus its layers)", t.get("net.forward", 0.0) - layers)]
    rows += [("solver step, rest (loss sums, positions, loop)",
              clocks.mean("thread") - t.get("net.forward", 0.0) - bwd - t.get("solver update", 0.0))]
    return rows, clocks, plain


# ---------------------------------------------------------------------------------- test
def profile_test(args: Any, cfg: Any) -> tuple[list[tuple[str, float]], Clocks, Clocks]:
    """(rows, the instrumented images' clocks, the plain images' clocks)."""
    import frcnn.inference.test as test_mod
    from frcnn.boxes.nms import nms_from_config
    from frcnn.caffe import TEST, Net
    from frcnn.config import device_from_config
    from frcnn.datasets.factory import get_imdb
    from frcnn.inference.on_device import detections_on_device
    from frcnn.utils.blob import read_image

    cfg.TEST.HAS_RPN = True
    imdb = _quiet(get_imdb, args.imdb_name or "toy_test", cfg)
    count = args.warmup + args.iters
    images = [read_image(imdb.image_path_at(i % imdb.num_images)) for i in range(count)]
    net = Net(_path(args.prototxt), args.caffemodel, TEST, cfg=cfg).to(device_from_config(cfg))
    if args.caffemodel is None:
        print("Note: random weights (no --net): the detections, and so the post-processing time, are not a "
              "trained model's")
    if net.device.type == "cpu":  # as test_net does
        try:
            from frcnn.caffe.host_memory import keep_freed_memory
        except ImportError:  # a checkout from before it (for before/after tables)
            pass
        else:
            keep_freed_memory()
    meter = Meter()
    layer_rows = instrument_net(net, meter, args.by_layer)
    on_device = bool(cfg.TEST.DEVICE_POSTPROCESS)
    nms_fn = nms_from_config(cfg)
    saved = {name: getattr(test_mod, name) for name in ("get_image_blob", "_decode_on_device")}
    test_mod.get_image_blob = meter.wrap(saved["get_image_blob"], "preprocess (image blob)")
    test_mod._decode_on_device = meter.wrap(saved["_decode_on_device"], "post-processing: decode")
    detect_device = meter.wrap(detections_on_device, "post-processing: threshold, NMS, top 100")
    detect_numpy = meter.wrap(test_mod.detections_for_image, "post-processing: threshold, NMS, top 100")

    def one(im: Any) -> None:
        scores, boxes = test_mod.im_detect(net, im, None, cfg=cfg, on_device=on_device)
        if on_device:
            detect_device(scores, boxes, cfg.TEST.NMS, 0.05, 100)
        else:
            detect_numpy(scores, boxes, nms_fn, cfg.TEST.NMS, 0.05, 100)

    plain, clocks = Clocks(), Clocks()
    try:
        for im in images[: args.warmup]:
            one(im)
        for im in images[args.warmup:]:
            plain.run(lambda im=im: one(im))
        meter.on = True
        for im in images[args.warmup:]:
            clocks.run(lambda im=im: one(im))
        meter.on = False
    finally:
        for name, fn in saved.items():
            setattr(test_mod, name, fn)
    t = {k: v / args.iters for k, v in meter.totals.items()}
    layers = sum(t.get(k, 0.0) for k in layer_rows)
    rows = [("preprocess (image blob)", t.get("preprocess (image blob)", 0.0))]
    rows += [(k, t.get(k, 0.0)) for k in layer_rows if k.startswith("layer ")]
    rows += [(k, t.get(k, 0.0)) for k in layer_rows if k.startswith("Python ")]
    rows += [("engine bookkeeping (Net.forward minus its layers)", t.get("net.forward", 0.0) - layers)]
    post = [k for k in t if k.startswith("post-processing")]
    rows += [(k, t[k]) for k in sorted(post)]
    rows += [("im_detect, rest (input tensors, copies)",
              clocks.mean("thread") - sum(t.get(k, 0.0) for k in ("preprocess (image blob)", "net.forward", *post)))]
    rows += [("other threads", clocks.mean("cpu") - clocks.mean("thread"))]
    return rows, clocks, plain


# ---------------------------------------------------------------------------------- output
def _summary(clocks: Clocks, unit: str) -> str:
    cpu = clocks.cpu
    return (f"CPU time mean {1e3 * clocks.mean():.2f} ms, median {1e3 * statistics.median(cpu):.2f} ms, "
            f"min {1e3 * min(cpu):.2f} ms; wall clock median {1e3 * statistics.median(clocks.wall):.2f} ms "
            f"({len(cpu)} {unit}s)")


def print_table(rows: list[tuple[str, float]], clocks: Clocks, plain: Clocks, unit: str, title: str) -> None:
    cpu = clocks.mean()
    print(f"\n{title}")
    print(f"| part | CPU ms per {unit} | share |")
    print("|---|---:|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec * 1e3:.2f} | {100 * sec / cpu:.1f}% |")
    print(f"| **total (process CPU time)** | **{cpu * 1e3:.2f}** | 100% |")
    print(f"\nper {unit}, timed part by part (the table): {_summary(clocks, unit)}")
    print(f"per {unit}, not instrumented: {_summary(plain, unit)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = config_from_args(args, show=False)
    if not os.path.isfile(os.path.join(cfg.DATA_DIR, "toy", "ImageSets", "Main", "test.txt")) and \
            args.imdb_name is None:
        raise UserError(f"no toy set in {cfg.DATA_DIR}/toy: make it with python tools/make_toy_dataset.py")
    prof = None
    if args.cprofile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    if args.mode == "train":
        rows, clocks, plain = profile_train(args, cfg)
    else:
        rows, clocks, plain = profile_test(args, cfg)
    if prof is not None:
        import pstats

        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(args.cprofile)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    unit = "iteration" if args.mode == "train" else "image"
    print_table(rows, clocks, plain, unit, f"{args.mode}: {args.iters} {unit}s, torch threads {torch.get_num_threads()} "
                                           f"(OMP_NUM_THREADS {threads}), device {'cpu' if cfg.GPU_ID < 0 else cfg.GPU_ID}")
    return 0


if __name__ == "__main__":
    run_tool(main)
