#!/usr/bin/env python3
"""Compute Selective Search proposals for a dataset with OpenCV (see frcnn.datasets.selective_search).

Writes <DATA_DIR>/selective_search_data/<imdb>_opencv_ss_<key>.npz, where the imdb's
selective_search proposal method finds it (TRAIN.PROPOSAL_METHOD / TEST.PROPOSAL_METHOD
selective_search, the default of Fast R-CNN), or --out. Each image's run time is recorded in the
file; the mean is printed at the end (Table 5's SS row). Needs opencv-contrib-python (the same cv2
with the contrib modules): pip uninstall -y opencv-python && pip install opencv-contrib-python.
"""

import os
import time

import numpy as np

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.errors import InputError


def parse_args(argv=None):
    parser = tool_parser("Compute Selective Search proposals (OpenCV ximgproc)", cfg=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", required=True, help="dataset to compute proposals for")
    parser.add_argument("--mode", default="fast", choices=("fast", "quality", "single"),
                        help="OpenCV's strategy: fast (the paper's setting, default), quality or single")
    add_flag(parser, "--top_n", type=int, default=2000,
             help="keep the first N boxes of OpenCV's ranking per image (default 2000, the paper's; -1: all)")
    parser.add_argument("--workers", type=int, default=1, help="processes to run images in (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenCV threads per process (default 1: the time recorded is one core's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of OpenCV's ranking RNG, per image (default 0)")
    parser.add_argument("--force", action="store_true", help="recompute even if the file exists with these settings")
    parser.add_argument("--out", default=None, help="write here instead (.npz)")
    return parser.parse_args(argv)


def _progress(done: int, total: int, started: float) -> str:
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / rate if rate > 0 else 0.0
    h, rem = divmod(int(left), 3600)
    return (f"selective_search: {done}/{total} images, {rate:.2f} images/s, "
            f"{elapsed / max(done, 1):.3f} s/image, {h:d}:{rem // 60:02d}:{rem % 60:02d} left")


def _run(jobs, workers: int):
    if workers <= 1:
        from frcnn.datasets.selective_search import image_job

        yield from map(image_job, jobs)
        return
    import multiprocessing

    from frcnn.datasets.selective_search import image_job

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(image_job, jobs, chunksize=1)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = config_from_args(args, show=False, echo=True)
    if args.workers < 1 or args.threads < 1:
        raise InputError(f"--workers / --threads: must be >= 1, got {args.workers} / {args.threads}")
    if args.top_n == 0 or args.top_n < -1:
        raise InputError(f"--top_n: expected a positive count or -1 (all), got {args.top_n}")
    if args.out is not None and not args.out.endswith(".npz"):
        raise InputError(f"--out {args.out}: proposal files end in .npz")

    from frcnn.datasets import selective_search as ss
    from frcnn.datasets.factory import get_imdb
    from frcnn.datasets.proposals import save_proposals

    ss.require_ximgproc()
    imdb = get_imdb(args.imdb_name, cfg)
    if not hasattr(imdb, "selective_search_file"):
        raise InputError(f"--imdb {imdb.name}: only VOC-format sets (VOC, toy, data/<name>) take computed "
                         "selective search; COCO's come from the coco_proposals folder")
    path = args.out or imdb.selective_search_file()
    if os.path.exists(path) and not args.force:
        info = ss.read_timing(path)
        if (info.get("mode"), info.get("top_n")) == (args.mode, args.top_n):
            print(f"Already computed for these images and settings: {path} "
                  f"({info['mean_seconds_per_image']:.3f} s per image; --force recomputes)")
            return 0
    paths = imdb.image_paths()
    jobs = [(p, args.mode, args.top_n, args.seed, args.threads) for p in paths]
    boxes_list, seconds, cpu = [], [], []
    started = time.perf_counter()
    step = max(1, min(100, len(jobs) // 20))
    for i, (boxes, wall, cpu_s) in enumerate(_run(jobs, args.workers)):
        boxes_list.append(boxes)
        seconds.append(wall)
        cpu.append(cpu_s)
        if (i + 1) % step == 0 or i + 1 == len(jobs):
            print(_progress(i + 1, len(jobs), started), flush=True)
    seconds_a, cpu_a = np.array(seconds), np.array(cpu)
    info = ss.info_json(args.mode, args.top_n, args.threads, args.workers, seconds_a, cpu_a)
    save_proposals(path, boxes_list, list(imdb.image_index),
                   extra={"seconds": seconds_a, "cpu_seconds": cpu_a, "info": np.array(info)})
    if args.out is None:
        for old in ss.stale_files(path):
            os.unlink(old)
            print(f"Removed {old} (made for other images)")
    counts = np.array([len(b) for b in boxes_list])
    print(f"{counts.mean():.0f} boxes per image (min {counts.min()}, max {counts.max()}); "
          f"{seconds_a.mean():.3f} s per image (CPU {cpu_a.mean():.3f} s, {args.threads} OpenCV thread(s))")
    print(f"Wrote selective search proposals to {path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
