#!/usr/bin/env python3
"""Write the embedded toy detection set (VOC format) to data/toy, or to --out.

Usage: tools/make_toy_dataset.py [--out DIR] [--trainval N] [--test N] [--seed S] [--force]
Then train and test on `toy_trainval` / `toy_test`.
"""

import argparse
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Write the toy detection dataset (VOC format)")
    parser.add_argument("--out", default=None, help="output folder (default: <DATA_DIR>/toy)")
    parser.add_argument("--trainval", type=int, default=300, help="images in the trainval split (300)")
    parser.add_argument("--test", type=int, default=100, help="images in the test split (100)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    parser.add_argument("--force", action="store_true", help="replace an existing toy set")
    parser.add_argument(
        "--cfg", dest="cfg_file", action="append", default=None, help="config file (for DATA_DIR)"
    )
    parser.add_argument(
        "--set",
        dest="set_cfgs",
        default=None,
        nargs=argparse.REMAINDER,
        help="set config keys (e.g. DATA_DIR /path)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from frcnn.datasets.toy import default_toy_dir, make_toy_dataset

    out = args.out
    if out is None:
        from frcnn.cli import config_from_args

        args.cpu_mode = True
        out = default_toy_dir(config_from_args(args, show=False).DATA_DIR)
    t0 = time.time()
    try:
        info = make_toy_dataset(out, args.trainval, args.test, args.seed, args.force)
    except (FileExistsError, ValueError) as e:
        print(f"make_toy_dataset: {e}", file=sys.stderr)
        return 1
    per_class = ", ".join(f"{k} {v}" for k, v in info["per_class"].items())
    print(
        f"Wrote {info['images']} images with {info['objects']} objects ({per_class}) "
        f"to {info['path']} in {time.time() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
