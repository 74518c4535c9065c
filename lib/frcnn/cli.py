"""What every command-line tool shares: the parser with the shared flags, building the run's
config (and its device), the check that the paper's nets start from their ImageNet weights,
and ``run_tool``, which turns user errors into one line on stderr and exit status 2.

The tools under ``tools/`` only parse arguments and call into ``frcnn``. Flags are spelled
with underscores, as upstream's were (``--num_dets``, ``--net_name``); ``add_flag`` also
accepts the dashed spelling of every multi-word flag (``--num-dets``), so upstream's two
dashed flags (``--def-svd``, ``--rpn-file``) keep working too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pprint
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, Callable, NoReturn

from frcnn.config import cfg_from_file, cfg_from_list, get_default_config
from frcnn.errors import UserError, is_user_error, user_message
from frcnn.utils.distributed import World, world_from_environment

DEBUG_ENV = "FRCNN_DEBUG"
#: set to 1 to keep the stdout of every rank of a torchrun run (rank 0's alone otherwise)
ALL_RANKS_LOG_ENV = "FRCNN_LOG_ALL_RANKS"

# The paper's nets, which start from ImageNet weights (data/imagenet_models/<NET>.v2.caffemodel,
# upstream's file names); keyed by our NET names and by the names their prototxts carry.
PAPER_NETS = {"ZF": "ZF", "VGG16": "VGG16", "VGG_ILSVRC_16_layers": "VGG16", "VGG_CNN_M_1024": "VGG_CNN_M_1024"}


# ------------------------------------------------------------------ argument types
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


# ------------------------------------------------------------------ the parser
class ToolParser(argparse.ArgumentParser):
    """An ArgumentParser that, with ``help_if_empty``, prints its help and exits 1 when called
    without arguments (as upstream's tools did)."""

    def __init__(self, *args: Any, help_if_empty: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help_if_empty = help_if_empty

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        argv = sys.argv[1:] if args is None else list(args)
        if self.help_if_empty and not argv:
            self.print_help()
            sys.exit(1)
        return super().parse_args(argv, namespace)


def add_flag(parser: Any, name: str, *aliases: str, **kwargs: Any) -> argparse.Action:
    """``parser.add_argument`` for ``--name_with_underscores`` that also accepts
    ``--name-with-dashes`` (same destination, same value)."""
    flags = [name]
    dashed = "--" + name[2:].replace("_", "-")
    if dashed != name:
        flags.append(dashed)
    flags.extend(a for a in aliases if a not in flags)
    return parser.add_argument(*flags, **kwargs)


def tool_parser(
    description: str,
    *,
    device: bool = False,
    cfg: bool = False,
    prototxt: str | None = None,
    weights: str | None = None,
    wait: bool = False,
    training: bool = False,
    help_if_empty: bool = False,
    **kwargs: Any,
) -> ToolParser:
    """The parser a tool starts from, holding the shared flags it asks for.

    - ``device``: ``--gpu N|cpu`` and ``--cpu``;
    - ``cfg``: ``--cfg FILE`` (repeatable) and ``--set KEY VALUE ...`` (the rest of the line);
    - always ``--debug`` (tracebacks for user errors too; see ``run_tool``);
    - ``prototxt`` / ``weights``: ``--def`` (dest ``prototxt``) / ``--net`` (dest ``caffemodel``),
      each ``"required"`` or ``"optional"``, with an optional help text: ``"optional: random weights"``;
    - ``wait``: ``--wait True|False``, wait until ``--net``'s file exists while a training run is
      writing to its folder (upstream's default True; :func:`wait_for_file`);
    - ``training`` (the trainers): ``--weights`` (dest ``pretrained_model``) or ``--from_scratch``,
      and ``--final_model_file`` (where the final model's path is written, for scripts).
    """
    parser = ToolParser(description=description, help_if_empty=help_if_empty, **kwargs)
    if prototxt is not None:
        _add_model_flag(parser, "--def", "prototxt", prototxt, "prototxt file defining the network")
    if weights is not None:
        _add_model_flag(parser, "--net", "caffemodel", weights, "model weights (.caffemodel)")
    if wait:
        parser.add_argument("--wait", dest="wait", default=True, type=str2bool,
                            help="wait until the model file exists, while a training run is writing to its "
                                 "folder (True/False; default True)")
    if training:
        init = parser.add_mutually_exclusive_group()
        init.add_argument("--weights", dest="pretrained_model", default=None,
                          help="initialize with pretrained model weights (the paper's nets: their ImageNet "
                               "weights, data/imagenet_models/<NET>.v2.caffemodel)")
        add_flag(init, "--from_scratch", action="store_true",
                 help="train from random initialisation; needed for the paper's nets (ZF, VGG16, "
                      "VGG_CNN_M_1024) when no --weights are given")
        add_flag(parser, "--final_model_file", default=None,
                 help="write the final model's path into this file (for scripts)")
    # listed after the tool's own options in --help
    shared = parser.add_argument_group("options shared by the frcnn tools")
    if device:
        shared.add_argument("--gpu", dest="gpu_id", type=gpu_id, default=None,
                            help="GPU device id to use (a number, or 'cpu'); default: GPU 0 if there is one, "
                                 "else the CPU")
        shared.add_argument("--cpu", dest="cpu_mode", action="store_true", help="run on the CPU (same as --gpu cpu)")
    if cfg:
        shared.add_argument("--cfg", dest="cfg_file", action="append", default=None,
                            help="optional config file (repeat to merge several, in order)")
        shared.add_argument("--set", dest="set_cfgs", default=None, nargs=argparse.REMAINDER,
                            help="set config keys: KEY VALUE ... (the rest of the command line)")
    shared.add_argument("--debug", action="store_true",
                        help=f"show the traceback of user errors (bad paths, keys, files) too; {DEBUG_ENV}=1 does "
                             "the same")
    return parser


def _add_model_flag(parser: argparse.ArgumentParser, flag: str, dest: str, spec: str, what: str) -> None:
    kind, _, text = spec.partition(":")
    if kind not in ("required", "optional"):
        raise ValueError(f"tool_parser: {flag} must be 'required' or 'optional' (+ ': help'), got {spec!r}")
    parser.add_argument(flag, dest=dest, required=kind == "required", default=None, help=text.strip() or what)


# ------------------------------------------------------------------ config and device
def check_gpu(gpu: int) -> None:
    """Raise a UserError when GPU ``gpu`` (>= 0) is not there; -1 (the CPU) always is."""
    if gpu < 0:
        return
    import torch

    cpu_hint = "'cpu' runs on the CPU (--gpu cpu; GPU_ID cpu for experiments/scripts)"
    if not torch.cuda.is_available():
        raise UserError(f"GPU {gpu} asked for, but this torch sees no CUDA device (torch {torch.__version__}, "
                        f"CUDA {torch.version.cuda or 'not built'}); {cpu_hint}")
    count = torch.cuda.device_count()
    if gpu >= count:
        raise UserError(f"GPU {gpu} asked for, but this machine has {count} CUDA device(s) (0..{count - 1}); "
                        f"{cpu_hint}")


def config_from_args(args: argparse.Namespace, show: bool = True, echo: bool = False) -> Any:
    """Default config, then ``--cfg``, then ``--set``, then the device (upstream's order).
    ``echo`` first prints the arguments and ``show`` then the config, as upstream's tools did.

    The device: ``--cpu`` or ``--gpu cpu`` is the CPU; ``--gpu N`` is GPU N, an error when it
    is not there; without ``--gpu`` it is ``GPU_ID`` (0 unless set) when CUDA is available,
    else the CPU, with a note. Under torchrun (``WORLD_SIZE`` > 1) a GPU run puts each rank on
    GPU ``LOCAL_RANK`` (of those ``CUDA_VISIBLE_DEVICES`` shows): the number only says "a GPU".
    """
    if echo:
        print("Called with args:")
        print(args)
    cfg = get_default_config()
    cfg_files = getattr(args, "cfg_file", None) or []
    for cfg_file in [cfg_files] if isinstance(cfg_files, str) else cfg_files:
        cfg_from_file(cfg_file, cfg)
    if getattr(args, "set_cfgs", None):
        cfg_from_list(args.set_cfgs, cfg)
    asked = getattr(args, "gpu_id", None)
    world = world_from_environment()
    if getattr(args, "cpu_mode", False):
        gpu = -1
    elif asked is not None:
        gpu = asked
    else:
        gpu = cfg.GPU_ID
        if gpu >= 0:
            import torch

            if not torch.cuda.is_available():
                if hasattr(args, "gpu_id"):  # a tool with device flags: say where it runs
                    print(f"Note: no CUDA device, so running on the CPU (GPU_ID {gpu} needs one)")
                gpu = -1
    if gpu >= 0 and not world.distributed:
        check_gpu(gpu)
    elif gpu >= 0:  # under torchrun: each rank its own GPU
        gpu = world.local_rank
        try:
            check_gpu(gpu)
        except UserError as e:
            raise UserError(f"{world} (LOCAL_RANK {gpu}): {e}; start at most one rank per GPU (--nproc_per_node), "
                            "CUDA_VISIBLE_DEVICES picks which") from None
    cfg.GPU_ID = gpu
    if gpu < 0:
        cfg.USE_GPU_NMS = False
    else:
        import torch

        # the current device, as upstream's caffe.set_device(gpu_id): what is made without an
        # explicit device (CUDA graphs' capture stream, events, torch.cuda.* defaults) goes there
        torch.cuda.set_device(gpu)
    if show:
        print("Using config:")
        pprint.pprint(dict(cfg))
    return cfg


# ------------------------------------------------------------------ pretrained weights
def imagenet_weights_path(net: str, data_dir: str) -> str:
    """Where upstream's scripts expect a paper net's ImageNet weights."""
    return os.path.join(data_dir, "imagenet_models", f"{net}.v2.caffemodel")


def check_pretrained(net_name: str | None, weights: str | None, from_scratch: bool, data_dir: str) -> None:
    """Refuse (UserError) to train one of the paper's nets without its ImageNet weights unless
    ``from_scratch`` asks for it: that takes days and does not reach the paper's numbers.
    Other nets (SMALL, yours) train from scratch when no weights are given. A ``weights``
    path that does not exist is an error at once, not after the data are loaded."""
    if weights is not None:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"--weights {weights}: no such file")
        return
    net = PAPER_NETS.get(net_name or "")
    if net is None or from_scratch:
        return
    path = _shown(imagenet_weights_path(net, data_dir))
    get = "py-faster-rcnn's data/scripts/fetch_imagenet_models.sh downloads it"
    if net == "VGG16":
        get += f"; or convert torchvision's: python tools/import_torchvision_vgg16.py vgg16-397923af.pth {path}"
    raise UserError(
        f"{net} is one of the paper's nets, which start from ImageNet weights, and none were given: put the "
        f"file at {path} ({get}) and pass --weights {path} (experiments/scripts look there); or pass --from_scratch "
        "(FROM_SCRATCH=1 for experiments/scripts) to train it from random initialisation anyway"
    )


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def solver_net_name(solver: str, root_dir: str) -> str | None:
    """The ``name:`` of the net a solver trains (upstream's nets: ZF, VGG_ILSVRC_16_layers, ...)."""
    from frcnn.caffe.prototxt import parse_file
    from frcnn.nets.adapt import solver_net_path

    _, net_path = solver_net_path(solver, root_dir)
    name = parse_file(net_path).get("name")
    return None if name is None else str(name)


# ------------------------------------------------------------------ files between steps
def wait_for_file(path: str, wait: bool, poll_s: float = 10.0) -> None:
    """Wait (polling) until ``path`` exists when ``wait``, as long as a training run holds a live
    run lock in its folder (:mod:`frcnn.training.run_lock`: a run that may still write it);
    raise when it is missing and nothing is writing there (a mistyped path, or a run that ended
    without it), or at once when not ``wait``. Upstream waited forever for any missing file."""
    from frcnn.training.run_lock import live_runs

    folder = os.path.dirname(os.path.abspath(path))
    waited = False
    while not os.path.exists(path):
        if not wait:
            raise FileNotFoundError(f"{path}: model file not found")
        runs = live_runs(folder)
        if not runs:
            if waited:
                raise FileNotFoundError(
                    f"{path}: model file not found, and the training run that was writing to {folder} "
                    "has ended without writing it")
            raise FileNotFoundError(
                f"{path}: model file not found, and no training run is writing to {folder} (no live run "
                "lock there), so waiting for it would never end: check the path")
        print(f"Waiting for {path} to exist (a training run is writing to its folder: {runs[0].describe()})...",
              flush=True)
        waited = True
        time.sleep(poll_s)


def write_path_file(path_file: str | None, value: str) -> None:
    """Write one path (and a newline) atomically, for scripts that pass paths between steps."""
    if not path_file:
        return
    from frcnn.utils.io import atomic_write

    with atomic_write(path_file, "w") as f:
        f.write(os.path.abspath(value) + "\n")


# ------------------------------------------------------------------ running a tool
def debug_requested(argv: Sequence[str]) -> bool:
    """``--debug`` before ``--set`` (whose values are the rest of the line), or $FRCNN_DEBUG=1."""
    argv = list(argv)
    head = argv[: argv.index("--set")] if "--set" in argv else argv
    return "--debug" in head or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_tool(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, *,
             distributed: bool = False) -> NoReturn:
    """Run a tool's ``main(argv)`` and exit with its status. A user error (``frcnn.errors``)
    prints ``<tool>: error: <message>`` on stderr and exits 2, its traceback shown only with
    ``--debug``; any other exception is a bug and keeps its traceback (exit 1).

    Under torchrun (``WORLD_SIZE`` > 1): a tool that is not ``distributed`` refuses to run (it
    would do the same work once per rank); in one that is, ranks other than 0 print nothing on
    stdout (rank 0 alone logs; ``FRCNN_LOG_ALL_RANKS=1`` keeps every rank's) and their error
    lines say which rank they come from."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = os.path.basename(sys.argv[0]) or "frcnn"
    try:
        world = world_from_environment()
        if world.distributed and not distributed:
            raise UserError(f"{prog} runs as one process, and torchrun started {world.size} (WORLD_SIZE): run it "
                            "with python; train_net.py, test_net.py and train_faster_rcnn_alt_opt.py run on ranks")
        if world.distributed and not world.is_main:
            prog = f"{prog} ({world})"
            if os.environ.get(ALL_RANKS_LOG_ENV, "") in ("", "0"):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        status = main(argv)
    except Exception as e:
        if not is_user_error(e):
            raise
        if debug_requested(argv):
            traceback.print_exc()
        sys.stdout.flush()
        hint = "" if debug_requested(argv) else " (--debug shows the traceback)"
        print(f"{prog}: error: {user_message(e)}{hint}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(status or 0)


# ------------------------------------------------------------------ several processes
@contextlib.contextmanager
def run_ranks(cfg: Any) -> Iterator[World]:
    """The body of a tool run by torchrun on several ranks (a single process: nothing changes).

    Joins the process group (NCCL when ``cfg.GPU_ID`` is a GPU, else gloo; ``DIST_TIMEOUT``),
    checks that every rank has the same config (:mod:`frcnn.utils.rank_agreement`), and leaves
    the group at the end. When the body fails because another rank failed, died or hung, the
    error raised instead names that rank (:class:`frcnn.utils.distributed.RankFailure`)."""
    import torch

    from frcnn.utils import distributed
    from frcnn.utils.rank_agreement import check_ranks_agree, config_items

    world = distributed.start(cfg.DIST_TIMEOUT, use_cuda=cfg.GPU_ID >= 0 and torch.cuda.is_available())
    if not world.distributed:
        yield world
        return
    print(f"Distributed run: {world.size} ranks ({'NCCL' if cfg.GPU_ID >= 0 else 'gloo'}), DIST_TIMEOUT "
          f"{cfg.DIST_TIMEOUT:g} s; rank 0 logs", flush=True)
    try:
        check_ranks_agree(config_items(cfg), "config")
        yield world
    except BaseException as e:
        failure = distributed.finish(error=e)
        if failure is not None:
            raise failure from e
        raise
    distributed.finish()
