#!/usr/bin/env python3
"""Toy training throughput (images per second) on 1 and more data-parallel ranks.

usage: python tools/dev/bench_ranks.py [--iters 200] [--ranks 1 2] [--threads 1] [--gpu cpu]
           [--net SMALL|ZF|VGG16]

Trains on the toy set, from scratch, for ``--iters`` iterations, once per rank count, one run
after the other. ``--net SMALL`` (default): the toy quick start's net and settings
(models/toy/SMALL/faster_rcnn_end2end, ``faster_rcnn_end2end.yml`` then ``toy.yml``, scale 320).
``--net ZF`` / ``VGG16``: the PASCAL VOC end2end nets (models/pascal_voc/<NET>/faster_rcnn_end2end,
adapted by train_net to the toy's 6 classes) with ``faster_rcnn_end2end.yml`` at upstream's scale
(600, at most 1000: the toy images become 600 x 750), the iteration a VOC image costs: VGG16
end2end's images per second on 1, 2, ... GPUs is ``--net VGG16 --gpu 0 --ranks 1 2 ...``.
1 rank runs as a plain process, R > 1 ranks under torchrun (``python -m torch.distributed.run
--standalone``; gloo on the CPU, NCCL with ``--gpu 0``, one rank per GPU). Every rank uses
``--threads`` torch threads (OMP_NUM_THREADS). The peer row is one process with as many threads
as the largest rank count times ``--threads`` (the same cores used by one process instead of
several): what a user without torchrun gets from the machine.

Each rank trains one image per iteration (TRAIN.IMS_PER_BATCH 1), so an iteration of R ranks is
R images; the seconds per iteration are the training loop's own average (the last progress
line), which leaves out start-up (imports, the roidb, the process group). Runs go to
``output/bench_ranks/`` and are removed first (no resume). Needs the toy set
(``python tools/make_toy_dataset.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from frcnn.cli import run_tool, tool_parser

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
END2END_CFG = "experiments/cfgs/faster_rcnn_end2end.yml"
#: net -> (solver, configs, --set pairs)
NETS = {
    "SMALL": ("models/toy/SMALL/faster_rcnn_end2end/solver.prototxt", (END2END_CFG, "experiments/cfgs/toy.yml"), ()),
    **{net: (f"models/pascal_voc/{net}/faster_rcnn_end2end/solver.prototxt", (END2END_CFG,),
             ("TRAIN.SCALES", "[600]", "TRAIN.MAX_SIZE", "1000")) for net in ("ZF", "VGG16")},
}
LINE = re.compile(r"^Iteration (\d+)/(\d+), loss = .*; ([0-9.]+) iter/s, ([0-9.]+)s / iter", re.MULTILINE)


def parse_args(argv: list[str] | None = None) -> Any:
    p = tool_parser(__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=200, help="training iterations per run (default 200)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts to run (default 1 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (default 1)")
    p.add_argument("--gpu", default="cpu", help="'cpu' (gloo ranks) or a GPU number (NCCL, rank r on GPU r)")
    p.add_argument("--net", choices=sorted(NETS), default="SMALL",
                   help="SMALL (the toy quick start's, default), or ZF / VGG16 at scale 600")
    p.add_argument("--no_peer", "--no-peer", action="store_true", help="skip the one-process peer row")
    args = p.parse_args(argv)
    if args.iters < 1 or args.threads < 1 or min(args.ranks) < 1:
        p.error("--iters, --threads and --ranks must be >= 1")
    return args


def train_command(net: str, gpu: str, iters: int, name: str) -> list[str]:
    """The train_net.py command of one run (without the launcher)."""
    solver, cfgs, sets = NETS[net]
    cmd = [os.path.join(ROOT, "tools", "train_net.py"), "--gpu", gpu, "--solver", solver, "--from_scratch",
           "--imdb", "toy_trainval", "--iters", str(iters), "--fresh"]
    for c in cfgs:
        cmd += ["--cfg", c]
    return cmd + ["--set", "EXP_DIR", os.path.join("bench_ranks", name), "TRAIN.SNAPSHOT_ITERS", str(10 * iters),
                  *sets]


def run_once(ranks: int, threads: int, iters: int, gpu: str, name: str, net: str = "SMALL") -> dict[str, float]:
    """One training run; its loop's seconds per iteration and the wall clock of the command."""
    out = os.path.join(ROOT, "output", "bench_ranks", name)
    shutil.rmtree(out, ignore_errors=True)
    cmd = train_command(net, gpu, iters, name)
    launcher = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    print(f"[{name}] {' '.join(launcher[1:] + cmd)}", flush=True)  # (launcher[1:]: torchrun's flags)
    t0 = time.perf_counter()
    r = subprocess.run(launcher + cmd, check=False, cwd=ROOT, env=env, text=True, capture_output=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench_ranks: the {name} run failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    found = LINE.findall(r.stdout)
    if not found or int(found[-1][0]) != iters:
        raise SystemExit(f"bench_ranks: no final progress line in the {name} run's output:\n{r.stdout[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return {"s_per_iter": float(found[-1][3]), "wall": wall}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.path.isdir(os.path.join(ROOT, "data", "toy")):
        raise SystemExit("bench_ranks: no toy set: run python tools/make_toy_dataset.py first")
    rows = []
    for n in args.ranks:
        res = run_once(n, args.threads, args.iters, args.gpu, f"ranks{n}", args.net)
        rows.append((f"{n} rank{'s' if n > 1 else ''} x {args.threads} thread{'s' if args.threads > 1 else ''}", n, res))
    if not args.no_peer and args.gpu == "cpu" and max(args.ranks) > 1:
        t = max(args.ranks) * args.threads
        rows.append((f"peer: 1 process x {t} threads", 1, run_once(1, t, args.iters, args.gpu, f"peer{t}", args.net)))
    base = rows[0][1] / rows[0][2]["s_per_iter"]
    print(f"\nTraining throughput on the toy images, net {args.net}, {args.iters} iterations per run, "
          f"device {args.gpu}")
    print("| run | s / iteration | images / iteration | images / s | vs first row | wall clock (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, n, res in rows:
        ips = n / res["s_per_iter"]
        print(f"| {label} | {res['s_per_iter']:.3f} | {n} | {ips:.2f} | {ips / base:.2f}x | {res['wall']:.1f} |")
    return 0


if __name__ == "__main__":
    run_tool(main)
