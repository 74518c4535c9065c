#!/usr/bin/env python3
"""Draw the loss curves of a training log (ours, or py-faster-rcnn's Caffe log) into a PNG.

    tools/plot_training_log.py experiments/logs/faster_rcnn_end2end_SMALL_.txt.2026-12-01_10-00-00
    tools/plot_training_log.py caffe_train.log --out curves.png --smooth 10

One panel per loss (the total first), the logged values and their moving average. A log of
several runs (the four alt-opt stages) gives one PNG per run, <out>.run<k>.png after the first.
Needs matplotlib (pip install matplotlib).
"""

import os

from frcnn.cli import run_tool, tool_parser
from frcnn.errors import UserError
from frcnn.utils.plots import figure_class, plot_loss_curves
from frcnn.utils.training_log import parse_training_log


def parse_args(argv=None):
    parser = tool_parser("Plot the losses of a training log", help_if_empty=True)
    parser.add_argument("log", help="a training log (experiments/logs/..., or a py-faster-rcnn/Caffe log)")
    parser.add_argument("--out", default=None, help="the PNG to write (default: <log>.png)")
    parser.add_argument("--smooth", type=int, default=0,
                        help="moving-average window in logged points (default: about 1/30 of the points)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smooth < 0:
        raise UserError(f"--smooth: must be >= 0, got {args.smooth}")
    runs = parse_training_log(args.log)
    if figure_class() is None:
        raise UserError("matplotlib is not installed (pip install matplotlib); it draws the curves")
    base = args.out or args.log + ".png"
    stem, ext = os.path.splitext(base)
    for k, run in enumerate(runs, 1):
        series = run.series()
        n = len(series["loss"][0])
        window = args.smooth or max(1, round(n / 30))
        out = base if k == 1 else f"{stem}.run{k}{ext or '.png'}"
        title = f"{os.path.basename(args.log)}" + (f" (run {k} of {len(runs)})" if len(runs) > 1 else "")
        plot_loss_curves(series, out, f"{title}: {n} logged iterations", window)
        print(f"Wrote {out} ({', '.join(series)})")
    return 0


if __name__ == "__main__":
    run_tool(main)
