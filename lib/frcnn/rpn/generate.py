"""Generate RPN proposals over an imdb (upstream's ``lib/rpn/generate.py``).

The net is an RPN-only test net (``rpn_test.prototxt``) whose proposal layer outputs
``rois`` and ``scores``. The counts, which the caller puts into the config *before* building
the net (the proposal layer reads them then), come from :func:`proposal_generation_config`:
upstream's ``TEST.RPN_PRE_NMS_TOP_N = -1`` (no cap) and ``TEST.RPN_POST_NMS_TOP_N = 2000``,
except where the command line's ``--set`` names one of the two keys: that value is kept
(upstream forced -1 / 2000 after ``--set``, so a file of 300 proposals could not be made).
Config files do not count as naming them: their ``TEST.RPN_*`` values are the test settings
of a full Faster R-CNN net (e.g. ``experiments/cfgs/toy.yml``), and alt-opt's training
proposals stay upstream's 2000. ``test_counts=True`` keeps the config's values instead (the
proposals a full test net would see, for testing a separate detector on them).

Each image runs once, un-flipped, at ``TEST.SCALES[0]`` / ``TEST.MAX_SIZE``; boxes are
divided by the image scale (and clipped to the original image); scores are returned but
not saved (as upstream). The boxes of an image are in score order after NMS, so the first N
of a file made with POST_NMS_TOP_N = M >= N are the file made with N. Under torchrun the
ranks share the images and rank 0 gathers the boxes (:func:`imdb_proposals`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from frcnn.boxes.transform import clip_boxes
from frcnn.config import copy_config
from frcnn.inference.test import _net_device, _numpy, get_image_blob, set_image_position
from frcnn.utils import distributed
from frcnn.utils.blob import read_image
from frcnn.utils.timer import Timer

#: upstream's proposal-generation counts: no pre-NMS filtering, the top 2000 after NMS
GENERATION_COUNTS = {"TEST.RPN_PRE_NMS_TOP_N": -1, "TEST.RPN_POST_NMS_TOP_N": 2000}


def set_keys(set_cfgs: Sequence[str] | None) -> frozenset[str]:
    """The KEY words of a ``--set KEY VALUE ...`` list (``args.set_cfgs`` of a tool)."""
    return frozenset(str(k) for k in list(set_cfgs or [])[0::2])


def proposal_generation_config(cfg: Any, keep: Iterable[str] = (), test_counts: bool = False) -> Any:
    """A copy of ``cfg`` with upstream's proposal-generation counts, :data:`GENERATION_COUNTS`,
    except for the keys in ``keep`` (those the command line's ``--set`` named, see
    :func:`set_keys`), which keep their value; ``test_counts`` keeps both."""
    cfg = copy_config(cfg)
    if test_counts:
        return cfg
    keep = set(keep)
    for key, value in GENERATION_COUNTS.items():
        if key not in keep:
            cfg.TEST[key.split(".", 1)[1]] = value
    return cfg


def counts_suffix(cfg: Any) -> str:
    """``""`` for upstream's generation counts, else ``_pre<N>_post<M>``: a part of proposal
    file names, so that files of other counts neither overwrite nor stand in for upstream's."""
    pre, post = int(cfg.TEST.RPN_PRE_NMS_TOP_N), int(cfg.TEST.RPN_POST_NMS_TOP_N)
    if (pre, post) == tuple(GENERATION_COUNTS.values()):
        return ""
    return f"_pre{pre}_post{post}"


def im_proposals(net: Any, im: np.ndarray, cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Proposals (R, 4) in original-image pixels, sorted by score, and their scores (R, 1)."""
    data, im_scales = get_image_blob(im, (cfg.TEST.SCALES[0],), cfg.TEST.MAX_SIZE, cfg.PIXEL_MEANS)
    im_info = np.array([[data.shape[2], data.shape[3], im_scales[0]]], dtype=np.float32)
    device = _net_device(net)
    with torch.no_grad():
        out = net.forward(data=torch.from_numpy(data).to(device), im_info=torch.from_numpy(im_info).to(device))
        rois = _numpy(out["rois"] if "rois" in out else net.blobs["rois"].data)
        scores = _numpy(out["scores"] if "scores" in out else net.blobs["scores"].data)
    boxes = rois[:, 1:5].astype(np.float32) / np.float32(im_scales[0])
    # The proposal layer clips to the resized image, whose last pixel maps back to up to
    # W - 1 + (1 - 1/scale); clip to the original image so that every box lies inside it
    # (upstream kept e.g. x2 = W - 0.5, which flipping then turned into x1 = -0.5).
    boxes = clip_boxes(boxes, im.shape)
    return boxes, scores.reshape(-1, 1)


def imdb_proposals(net: Any, imdb: Any, cfg: Any) -> list[np.ndarray] | None:
    """Proposals for every image of ``imdb`` (which must not hold flipped entries).

    Under torchrun each rank runs images ``rank, rank + R, ...`` and rank 0 gathers them: it
    returns the whole list, the other ranks None."""
    num_images = len(imdb.image_index)
    world = distributed.current()
    mine = distributed.shard(num_images, world)
    timer = Timer()
    boxes_list: list[np.ndarray] = [np.zeros((0, 4), dtype=np.float32)] * num_images
    for count, i in enumerate(mine, 1):
        set_image_position(net, i)
        im = read_image(imdb.image_path_at(i))
        timer.tic()
        boxes, _scores = im_proposals(net, im, cfg)
        timer.toc()
        boxes_list[i] = boxes
        if count % 10 == 0 or count == len(mine):
            print(f"im_proposals: {count:d}/{len(mine):d} {timer.average_time:.3f}s", flush=True)
    if not world.distributed:
        return boxes_list
    parts = distributed.gather_arrays({str(i): boxes_list[i] for i in mine})
    if parts is None:
        return None
    for part in parts:
        for key, boxes in part.items():
            boxes_list[int(key)] = boxes
    return boxes_list


def save_imdb_proposals(path: str, boxes_list: list[np.ndarray], imdb: Any) -> str:
    """Save with :func:`frcnn.datasets.proposals.save_proposals` (``.npz``); return the path."""
    from frcnn.datasets.proposals import save_proposals

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_proposals(path, boxes_list, list(imdb.image_index))
    return path
