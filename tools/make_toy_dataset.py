#!/usr/bin/env python3
"""Write the embedded toy detection set (VOC format) to data/toy, or to --out.

Usage: tools/make_toy_dataset.py [--out DIR] [--trainval N] [--test N] [--seed S] [--force]
Then train and test on `toy_trainval` / `toy_test`.
"""

import time

from frcnn.cli import config_from_args, run_tool, tool_parser


def parse_args(argv=None):
    parser = tool_parser("Write the toy detection dataset (VOC format)", cfg=True)
    parser.add_argument("--out", default=None, help="output folder (default: <DATA_DIR>/toy)")
    parser.add_argument("--trainval", type=int, default=300, help="images in the trainval split (300)")
    parser.add_argument("--test", type=int, default=100, help="images in the test split (100)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    parser.add_argument("--force", action="store_true", help="replace an existing toy set")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from frcnn.datasets.toy import default_toy_dir, make_toy_dataset

    out = args.out
    if out is None:
        args.cpu_mode = True
        out = default_toy_dir(config_from_args(args, show=False).DATA_DIR)
    t0 = time.time()
    info = make_toy_dataset(out, args.trainval, args.test, args.seed, args.force)
    per_class = ", ".join(f"{k} {v}" for k, v in info["per_class"].items())
    print(
        f"Wrote {info['images']} images with {info['objects']} objects ({per_class}) "
        f"to {info['path']} in {time.time() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    run_tool(main)
