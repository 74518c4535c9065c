"""Configuration: py-faster-rcnn's keys and defaults, built fresh per run and validated.

Upstream kept one global, mutable ``cfg`` that layers deep inside the code read. Here
``get_default_config()`` returns a new EasyDict every time; the tools build one per run
(``--cfg`` file first, then ``--set`` pairs, then the device), and pass plain values on
to the layers. Unknown keys and values of the wrong type raise ``ConfigError`` naming
the key (and the file, for yml input).

Key names, defaults and comments follow ``lib/fast_rcnn/config.py`` of py-faster-rcnn.
"""

from __future__ import annotations

import ast
import copy
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
from easydict import EasyDict

from frcnn.errors import InputError


class ConfigError(InputError):
    """A config file or ``--set`` override that names an unknown key or a wrong type."""


def _find_root() -> str:
    """The project root: $FRCNN_ROOT, else the checkout this file lives in, else the cwd."""
    env = os.environ.get("FRCNN_ROOT")
    if env:
        return os.path.abspath(env)
    here = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    if os.path.isdir(os.path.join(here, "experiments")) and os.path.isdir(os.path.join(here, "models")):
        return here
    return os.path.abspath(os.getcwd())


def get_default_config() -> EasyDict:
    """A fresh config holding upstream's defaults (no state is shared between calls)."""
    C = EasyDict()

    # ------------------------------------------------------------------ training
    C.TRAIN = EasyDict()
    # Scales to use during training (can list multiple scales); each is the pixel
    # size of an image's shortest side, one drawn at random per image.
    C.TRAIN.SCALES = (600,)
    # Max pixel size of the longest side of a scaled input image
    C.TRAIN.MAX_SIZE = 1000
    # Images to use per minibatch
    C.TRAIN.IMS_PER_BATCH = 2
    # Minibatch size (number of regions of interest [ROIs])
    C.TRAIN.BATCH_SIZE = 128
    # Fraction of minibatch that is labeled foreground (i.e. class > 0)
    C.TRAIN.FG_FRACTION = 0.25
    # Overlap threshold for a ROI to be considered foreground (if >= FG_THRESH)
    C.TRAIN.FG_THRESH = 0.5
    # Overlap threshold for a ROI to be considered background (class = 0 if
    # overlap in [LO, HI))
    C.TRAIN.BG_THRESH_HI = 0.5
    C.TRAIN.BG_THRESH_LO = 0.1
    # Use horizontally-flipped images during training?
    C.TRAIN.USE_FLIPPED = True
    # Train bounding-box regressors
    C.TRAIN.BBOX_REG = True
    # Overlap required between a ROI and ground-truth box in order for that ROI to
    # be used as a bounding-box regression training example
    C.TRAIN.BBOX_THRESH = 0.5
    # Iterations between snapshots
    C.TRAIN.SNAPSHOT_ITERS = 10000
    # solver.prototxt specifies the snapshot path prefix, this adds an optional
    # infix to yield the path: <prefix>[_<infix>]_iter_<N>.caffemodel
    C.TRAIN.SNAPSHOT_INFIX = ""
    # Load minibatches in background workers, ahead of the training step. Upstream's default
    # was False (its prefetch process was experimental); ours gives the same minibatches either
    # way (the order and every random draw are made in the main process), so it is on.
    C.TRAIN.USE_PREFETCH = True
    # Number of background workers used when USE_PREFETCH is True
    C.TRAIN.PREFETCH_WORKERS = 2
    # Normalize the targets (subtract empirical mean, divide by empirical stddev)
    C.TRAIN.BBOX_NORMALIZE_TARGETS = True
    # Deprecated (inside weights)
    C.TRAIN.BBOX_INSIDE_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    # Normalize the targets using "precomputed" (or made up) means and stdevs
    # (BBOX_NORMALIZE_TARGETS must also be True)
    C.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED = False
    C.TRAIN.BBOX_NORMALIZE_MEANS = (0.0, 0.0, 0.0, 0.0)
    C.TRAIN.BBOX_NORMALIZE_STDS = (0.1, 0.1, 0.2, 0.2)
    # Train using these proposals
    C.TRAIN.PROPOSAL_METHOD = "selective_search"
    # Fast R-CNN on external proposals (a proposal file or method: selective_search, rpn, ...):
    # train on the first N proposals of each image, in the file's order (after the loader's
    # de-duplication and small-box filter); N <= 0 (-1) = all of them, as upstream. Not ours
    # to cap: an RPN in the net (TRAIN.HAS_RPN) keeps TRAIN.RPN_POST_NMS_TOP_N. (Table 2)
    C.TRAIN.PROPOSAL_TOP_N = -1
    # Make minibatches from images that have similar aspect ratios (i.e. both
    # tall and thin or both short and wide) in order to avoid wasting computation
    # on zero-padding.
    C.TRAIN.ASPECT_GROUPING = True
    # Use RPN to detect objects
    C.TRAIN.HAS_RPN = False
    # Mixed precision for training (not in upstream): "none" (float32, Caffe's arithmetic),
    # "bf16" or "fp16" (torch.autocast: convolutions and inner products in that type, every
    # other layer, the losses and the Python layers in float32; "fp16" adds a dynamic loss
    # scaler that skips the update of an iteration whose gradients overflow)
    C.TRAIN.AMP = "none"
    # IOU >= thresh: positive example
    C.TRAIN.RPN_POSITIVE_OVERLAP = 0.7
    # IOU < thresh: negative example
    C.TRAIN.RPN_NEGATIVE_OVERLAP = 0.3
    # If an anchor satisfied by positive and negative conditions set to negative
    C.TRAIN.RPN_CLOBBER_POSITIVES = False
    # Max number of foreground examples
    C.TRAIN.RPN_FG_FRACTION = 0.5
    # Total number of examples
    C.TRAIN.RPN_BATCHSIZE = 256
    # NMS threshold used on RPN proposals
    C.TRAIN.RPN_NMS_THRESH = 0.7
    # Number of top scoring boxes to keep before apply NMS to RPN proposals
    C.TRAIN.RPN_PRE_NMS_TOP_N = 12000
    # Number of top scoring boxes to keep after applying NMS to RPN proposals
    C.TRAIN.RPN_POST_NMS_TOP_N = 2000
    # Proposals narrower or shorter than RPN_MIN_SIZE (at the original image scale) are removed:
    # both sides must be >= it (upstream's comment said 'greater than'; its code, like this, keeps >=)
    C.TRAIN.RPN_MIN_SIZE = 16
    # Inside weights of the positive anchors' regression targets (upstream's comment called them
    # 'Deprecated (outside weights)'; they are the inside weights, and used)
    C.TRAIN.RPN_BBOX_INSIDE_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    # Give the positive RPN examples weight of p * 1 / {num positives}
    # and give negatives a weight of (1 - p) * 1 / {num negatives}
    # Set to -1.0 to use uniform example weighting
    C.TRAIN.RPN_POSITIVE_WEIGHT = -1.0
    # (ours) Replace the solver prototxt's base_lr / stepsize / iter_size in every training run
    # (end2end, Fast R-CNN, each alt-opt step) when > 0; 0 keeps the file's value. For the
    # paper's COCO schedule (experiments/cfgs/coco_paper.yml: lr 0.003 for 240k iterations,
    # then 0.0003, with the 8-GPU minibatch as iter_size 8) without editing the solver files.
    C.TRAIN.SOLVER_BASE_LR = 0.0
    C.TRAIN.SOLVER_STEPSIZE = 0
    C.TRAIN.SOLVER_ITER_SIZE = 0
    # Weight of the RPN box-regression loss (the loss_weight of the rpn_loss_bbox layer);
    # None = what the prototxt says (1 in upstream's nets). The paper's lambda is about
    # 10 x this weight (it divides the box term by ~2400 anchor locations, the nets here by the
    # 256 sampled anchors): Table 9's lambda 0.1, 1, 10, 100 are 0.01, 0.1, 1, 10. Applied to a
    # net by frcnn.nets.adapt (train_net, the alt-opt driver and the scripts call it).
    C.TRAIN.RPN_LOSS_BBOX_WEIGHT = None
    # Images per minibatch of the alt-opt RPN steps (1 and 3); upstream fixed 1. The end2end
    # RPN path takes TRAIN.IMS_PER_BATCH (1 in experiments/cfgs/faster_rcnn_end2end.yml).
    C.TRAIN.RPN_STAGE_IMS_PER_BATCH = 1

    # ------------------------------------------------------------------ testing
    C.TEST = EasyDict()
    # Scales to use during testing (can list multiple scales)
    C.TEST.SCALES = (600,)
    # Max pixel size of the longest side of a scaled input image
    C.TEST.MAX_SIZE = 1000
    # Overlap threshold used for non-maximum suppression (suppress boxes with
    # IoU > thresh)
    C.TEST.NMS = 0.3
    # Experimental: treat the (K+1) units in the cls_score layer as linear
    # predictors (trained, eg, with one-vs-rest SVMs).
    C.TEST.SVM = False
    # Test using bounding-box regressors
    C.TEST.BBOX_REG = True
    # Propose boxes
    C.TEST.HAS_RPN = False
    # Test using these proposals
    C.TEST.PROPOSAL_METHOD = "selective_search"
    # Fast R-CNN on external proposals: test on the first N proposals of each image, in the
    # file's order (RPN files are in score order, so the first N are the top N); N <= 0 (-1) =
    # all, as upstream. A net with an RPN (TEST.HAS_RPN) uses TEST.RPN_POST_NMS_TOP_N. (Table 2)
    C.TEST.PROPOSAL_TOP_N = -1
    # NMS threshold used on RPN proposals
    C.TEST.RPN_NMS_THRESH = 0.7
    # Post-process on the net's device (not in upstream): box decoding, score threshold,
    # per-class NMS in one batched call and the top max_per_image in torch, one copy of the
    # final detections to the host. False: upstream's NumPy post-processing (the reference).
    # On the CPU both write the same detections, bit for bit (tests/inference/test_on_device.py)
    C.TEST.DEVICE_POSTPROCESS = True
    # Replay the conv trunk and the RPN head from a CUDA graph (not in upstream): captured for
    # the first input size; other sizes, and the CPU, run as usual (with a message)
    C.TEST.CUDA_GRAPH = False
    # Mixed precision for testing (not in upstream): "none", "bf16" or "fp16" (see TRAIN.AMP)
    C.TEST.AMP = "none"
    # Number of top scoring boxes to keep before apply NMS to RPN proposals
    C.TEST.RPN_PRE_NMS_TOP_N = 6000
    # Number of top scoring boxes to keep after applying NMS to RPN proposals
    C.TEST.RPN_POST_NMS_TOP_N = 300
    # (Proposal files, tools/rpn_generate.py and alt-opt's proposal steps, use upstream's
    # -1 / 2000 for these two instead, unless the command line's --set names them.)
    # Proposals narrower or shorter than RPN_MIN_SIZE (at the original image scale) are removed:
    # both sides must be >= it (upstream's comment said 'greater than'; its code, like this, keeps >=)
    C.TEST.RPN_MIN_SIZE = 16
    # Test-time RPN ablations of the paper's Table 2 (lower half), in the proposal layer:
    # "none"; "no_nms" (top RPN_POST_NMS_TOP_N by score, no NMS); "no_cls" (RPN_POST_NMS_TOP_N
    # boxes drawn at random, seeded by RNG_SEED, from the decoded boxes: no score, no NMS);
    # "no_reg" (the anchors themselves, no box regression, then scored, sorted and NMSed).
    C.TEST.RPN_ABLATION = "none"
    # Ours: the AP of a VOC-format set's evaluation: "auto" (upstream's rule: the VOC07
    # 11-point metric for PASCAL VOC 2007, the area under the precision-recall curve for
    # every other set), "11point" or "area" for any VOC-format set. COCO sets use COCOeval.
    C.TEST.VOC_METRIC = "auto"

    # ------------------------------------------------------------------ misc
    # The mapping from image coordinates to feature map coordinates might cause
    # some boxes that are distinct in image space to become identical in feature
    # coordinates. If DEDUP_BOXES > 0, then DEDUP_BOXES is used as the scale factor
    # for identifying duplicate boxes.
    # 1/16 is correct for {Alex,Caffe}Net, VGG_CNN_M_1024, and VGG16
    C.DEDUP_BOXES = 1.0 / 16.0
    # Pixel mean values (BGR order) as a (1, 1, 3) array
    # We use the same pixel mean for all networks even though it's not exactly what
    # they were trained with
    C.PIXEL_MEANS = np.array([[[102.9801, 115.9465, 122.7717]]])
    # Anchors of every RPN layer: scales in units of the feature stride ([8, 16, 32] = 128, 256
    # and 512 px at stride 16) and aspect ratios h / w ([0.5, 1, 2]). None = what the net's
    # param_str says (upstream's defaults when it says nothing). frcnn.nets.adapt rewrites a
    # net's RPN channels (2A, 4A), Reshape dims and param_str to match; a net whose channels do
    # not match is an error naming both counts.
    C.ANCHOR_SCALES = None
    C.ANCHOR_RATIOS = None
    # For reproducibility (also keys every per-image random draw: frcnn.roi_data.keys)
    C.RNG_SEED = 3
    # A small number that's used many times
    C.EPS = 1e-14
    # Root directory of project
    C.ROOT_DIR = _find_root()
    # Data directory
    C.DATA_DIR = os.path.join(C.ROOT_DIR, "data")
    # Model directory
    C.MODELS_DIR = os.path.join(C.ROOT_DIR, "models", "pascal_voc")
    # Name (or path to) the matlab executable
    C.MATLAB = "matlab"
    # Place outputs under an experiments directory
    C.EXP_DIR = "default"
    # Use GPU implementation of non-maximum suppression
    C.USE_GPU_NMS = True
    # Default GPU device id; -1 means run on the CPU (set by --cpu or GPU_ID "cpu")
    C.GPU_ID = 0
    # TensorFloat-32 on NVIDIA GPUs from Ampere on (not in upstream): True lets cuDNN
    # convolutions and matrix products round their inputs to 10-bit mantissas (faster);
    # False keeps both in full float32, as Caffe computed. Process-wide (torch.backends
    # flags), set when a Net is built with this config. torch's own default would be TF32
    # convolutions with float32 matrix products; False is chosen to keep Caffe's numbers.
    C.TF32 = False
    # Channels-last (NHWC) memory layout for the convolutions (not in upstream): the same
    # numbers to rounding, faster convolutions on tensor-core GPUs
    C.CHANNELS_LAST = False
    # Several processes (torchrun ranks; not in upstream): seconds a rank waits for the others in
    # any collective (the process group's timeout) and after which a rank whose heartbeat stopped
    # is named and the others stop (frcnn.utils.rank_watch). A rank that is killed is noticed at
    # once; this bounds a hung rank or a lost machine. Long enough for rank 0's snapshot writes.
    C.DIST_TIMEOUT = 600.0
    return C


# --------------------------------------------------------------------- merging


def _positive_numbers(key: str, value: Any, where: str) -> tuple | None:
    """None, or a non-empty list of numbers > 0 (kept as given: ints stay ints)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in value
    )
    if not ok:
        raise ConfigError(f"{where}: {key}: expected None or a non-empty list of numbers > 0, got {value!r}")
    return tuple(value)


def _weight_or_none(key: str, value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value >= 0:
        return float(value)
    raise ConfigError(f"{where}: {key}: expected None or a number >= 0, got {value!r}")


#: the values TEST.RPN_ABLATION takes (frcnn.rpn.proposal_layer)
RPN_ABLATIONS = ("none", "no_nms", "no_cls", "no_reg")


def _rpn_ablation(key: str, value: Any, where: str) -> str:
    if isinstance(value, str) and value in RPN_ABLATIONS:
        return value
    raise ConfigError(f"{where}: {key}: expected one of {', '.join(RPN_ABLATIONS)}, got {value!r}")


def _positive_seconds(key: str, value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > 0:
        return float(value)
    raise ConfigError(f"{where}: {key}: expected a number of seconds > 0, got {value!r}")


#: keys checked by their own rule (whatever they hold now): full key -> check(key, value, where)
_KEY_RULES = {
    "ANCHOR_SCALES": _positive_numbers,
    "ANCHOR_RATIOS": _positive_numbers,
    "TRAIN.RPN_LOSS_BBOX_WEIGHT": _weight_or_none,
    "TEST.RPN_ABLATION": _rpn_ablation,
    "DIST_TIMEOUT": _positive_seconds,
}


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    """Return ``value`` converted to the type of ``default`` or raise ConfigError."""
    if key in _KEY_RULES:
        return _KEY_RULES[key](key, value, where)
    if isinstance(default, np.ndarray):
        try:
            return np.array(value, dtype=default.dtype)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {key}: cannot convert {value!r} to an array: {e}") from None
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        # yml and literal_eval give lists; upstream's easydict 1.4 turned tuples into
        # lists, so list-valued overrides of tuple defaults are accepted here.
        return tuple(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    elif isinstance(default, str) and isinstance(value, str) or type(value) is type(default):
        return value
    raise ConfigError(
        f"{where}: {key}: expected {type(default).__name__} (like the default {default!r}), "
        f"got {type(value).__name__} {value!r}"
    )


def merge_dict(src: dict, dst: EasyDict, where: str = "config", prefix: str = "") -> None:
    """Merge ``src`` into ``dst`` in place; every key must exist in ``dst``."""
    if not isinstance(src, dict):
        raise ConfigError(f"{where}: expected a mapping at '{prefix or '<top>'}', got {type(src).__name__}")
    for k, v in src.items():
        full = f"{prefix}{k}"
        if k not in dst:
            raise ConfigError(f"{where}: unknown config key '{full}'")
        if isinstance(dst[k], dict):
            merge_dict(v, dst[k], where, full + ".")
        else:
            dst[k] = _coerce(full, v, dst[k], where)


def cfg_from_file(filename: str, cfg: EasyDict) -> EasyDict:
    """Merge a yml file into ``cfg`` (in place) and return it."""
    import yaml  # PyYAML comes with the package's requirements

    try:
        with open(filename) as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{filename}: cannot read config file: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{filename}: not valid YAML: {e}") from None
    merge_dict(data or {}, cfg, where=filename)
    return cfg


def cfg_from_list(cfg_list: Iterable[str], cfg: EasyDict) -> EasyDict:
    """Apply ``--set KEY VALUE [KEY VALUE ...]`` overrides (in place) and return ``cfg``."""
    items = list(cfg_list)
    if len(items) % 2 != 0:
        raise ConfigError(f"--set: expected KEY VALUE pairs, got an odd number of words: {items}")
    for key, raw in zip(items[0::2], items[1::2]):
        parts = key.split(".")
        d = cfg
        for sub in parts[:-1]:
            if sub not in d or not isinstance(d[sub], dict):
                raise ConfigError(f"--set: unknown config key '{key}'")
            d = d[sub]
        last = parts[-1]
        if last not in d or isinstance(d[last], dict):
            raise ConfigError(f"--set: unknown config key '{key}'")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        d[last] = _coerce(key, value, d[last], "--set")
    return cfg


def copy_config(cfg: EasyDict) -> EasyDict:
    """A deep copy, for per-stage overrides (alt-opt) that must not leak back."""
    return copy.deepcopy(cfg)


def get_output_dir(cfg: EasyDict, imdb_name: str, net_name: str | None = None) -> str:
    """``output/<EXP_DIR>/<imdb>/[<net>/]``, created if missing (upstream's layout)."""
    path = os.path.abspath(os.path.join(cfg.ROOT_DIR, "output", cfg.EXP_DIR, imdb_name))
    if net_name is not None:
        path = os.path.join(path, net_name)
    os.makedirs(path, exist_ok=True)
    return path


def device_from_config(cfg: EasyDict):
    """The torch device a run uses: ``cuda:<GPU_ID>`` when GPU_ID >= 0 and CUDA exists, else cpu."""
    import torch

    if cfg.GPU_ID >= 0 and torch.cuda.is_available():
        return torch.device("cuda", cfg.GPU_ID)
    return torch.device("cpu")
