"""What every command-line tool shares: the device flags, building the run's config, waiting
for a model file. The tools under ``tools/`` only parse arguments and call into ``frcnn``."""

from __future__ import annotations

import argparse
import os
import pprint
import sys
import time
from typing import Any

from frcnn.config import cfg_from_file, cfg_from_list, get_default_config


def gpu_id(value: str) -> int:
    """``--gpu`` value: a GPU number, or ``cpu`` (= -1)."""
    if value.lower() == "cpu":
        return -1
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpu: expected a GPU number or 'cpu', got {value!r}") from None
    if n < -1:
        raise argparse.ArgumentTypeError(f"--gpu: expected a GPU number >= 0 or 'cpu', got {value!r}")
    return n


def str2bool(value: str) -> bool:
    """``--wait False`` style booleans (upstream used ``type=bool``, for which any value was True)."""
    v = value.lower()
    if v in ("1", "true", "yes", "y", "t"):
        return True
    if v in ("0", "false", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


def add_device_args(parser: argparse.ArgumentParser, default_gpu: int = 0) -> None:
    parser.add_argument("--gpu", dest="gpu_id", help="GPU device id to use (a number, or 'cpu')",
                        default=default_gpu, type=gpu_id)
    parser.add_argument("--cpu", dest="cpu_mode", help="run on the CPU (same as --gpu cpu)", action="store_true")


def add_cfg_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", dest="cfg_file", action="append", default=None, type=str,
                        help="optional config file (repeat to merge several, in order)")
    parser.add_argument("--set", dest="set_cfgs", help="set config keys", default=None, nargs=argparse.REMAINDER)


def parse_or_help(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Upstream's tools print their help and exit 1 when called without arguments."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 0:
        parser.print_help()
        sys.exit(1)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace, show: bool = True) -> Any:
    """Default config, then ``--cfg``, then ``--set``, then the device (upstream's order)."""
    cfg = get_default_config()
    cfg_files = getattr(args, "cfg_file", None) or []
    for cfg_file in [cfg_files] if isinstance(cfg_files, str) else cfg_files:
        cfg_from_file(cfg_file, cfg)
    if getattr(args, "set_cfgs", None):
        cfg_from_list(args.set_cfgs, cfg)
    gpu = -1 if getattr(args, "cpu_mode", False) else getattr(args, "gpu_id", cfg.GPU_ID)
    if gpu >= 0:
        import torch

        if not torch.cuda.is_available():
            print(f"Note: GPU {gpu} asked for, but this torch has no CUDA device; running on the CPU")
            gpu = -1
    cfg.GPU_ID = gpu
    if gpu < 0:
        cfg.USE_GPU_NMS = False
    if show:
        print("Using config:")
        pprint.pprint(dict(cfg))
    return cfg


def wait_for_file(path: str, wait: bool, poll_s: float = 10.0) -> None:
    """Wait (polling) until ``path`` exists when ``wait``; otherwise raise if it is missing."""
    while not os.path.exists(path):
        if not wait:
            raise FileNotFoundError(f"{path}: model file not found")
        print(f"Waiting for {path} to exist...", flush=True)
        time.sleep(poll_s)


def write_path_file(path_file: str | None, value: str) -> None:
    """Write one path (and a newline) atomically, for scripts that pass paths between steps."""
    if not path_file:
        return
    from frcnn.utils.io import atomic_write

    with atomic_write(path_file, "w") as f:
        f.write(os.path.abspath(value) + "\n")
