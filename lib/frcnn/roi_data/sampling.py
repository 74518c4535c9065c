"""Fast R-CNN's foreground/background RoI sampling, one rule for both of its callers.

Upstream wrote it twice: the data layer's minibatch (``roi_data.minibatch``, NumPy, drawing
with ``rng.choice``) and the end2end proposal target layer (``rpn.proposal_target_layer``,
torch, drawing with ``torch.randperm``). Here the rule is written once and each caller keeps
its own random stream by handing in its draw function:

1. quota: ``fg_rois_per_image = round(FG_FRACTION * rois_per_image)`` as an integer (halves to
   even, like ``np.round``; upstream's proposal target layer kept a float there, #480);
2. fg: rows with max overlap >= ``fg_thresh``, ``min(quota, #fg)`` of them drawn without
   replacement;
3. bg: rows with max overlap in ``[bg_thresh_lo, bg_thresh_hi)``, ``min(rois_per_image - #fg
   taken, #bg)`` of them drawn likewise;
4. the kept row indices (int64), fg first, then bg, each part in the draw's order.

A draw ``choose(inds, k)`` returns ``k`` of ``inds`` without replacement; ``numpy_choice(rng)``
and ``torch_choice`` are the two callers' draws, each consuming its RNG exactly as upstream
(NumPy: ``rng.choice(inds, size=k, replace=False)``, skipped when ``inds`` is empty; torch:
``torch.randperm`` on ``inds``' device, always called).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]
Choose = Callable[[Array, int], Array]


def fg_rois_per_image(fg_fraction: float, rois_per_image: int) -> int:
    """The foreground quota of one image: ``round(fg_fraction * rois_per_image)``, an int."""
    return int(np.round(fg_fraction * rois_per_image))


def numpy_choice(rng: Any) -> Choose:
    """The data layer's draw: ``rng.choice(inds, size=k, replace=False)`` (``rng`` is a
    ``RandomState`` or the ``np.random`` module), not called for an empty ``inds``."""

    def choose(inds: np.ndarray, k: int) -> np.ndarray:
        if inds.size == 0:
            return inds
        return rng.choice(inds, size=k, replace=False)

    return choose


def torch_choice(inds: torch.Tensor, k: int) -> torch.Tensor:
    """The proposal target layer's draw: ``k`` of ``inds`` in random order, from torch's
    global RNG (``torch.randperm`` on ``inds``' device; on a GPU, the CUDA generator)."""
    return inds[torch.randperm(inds.numel(), device=inds.device)[:k]]


def where_true(mask: Array) -> Array:
    """The indices (int64) of the true entries of a 1-D mask, NumPy or torch."""
    if isinstance(mask, torch.Tensor):
        return mask.nonzero().squeeze(1)
    return np.where(mask)[0]


def fg_bg_candidates(
    max_overlaps: Array, fg_thresh: float, bg_thresh_hi: float, bg_thresh_lo: float
) -> tuple[Array, Array]:
    """The rows that may be sampled as fg (max overlap >= ``fg_thresh``) and as bg (max overlap
    in ``[bg_thresh_lo, bg_thresh_hi)``), as int64 indices of ``max_overlaps``' kind."""
    fg_inds = where_true(max_overlaps >= fg_thresh)
    bg_inds = where_true((max_overlaps < bg_thresh_hi) & (max_overlaps >= bg_thresh_lo))
    return fg_inds, bg_inds


def sample_fg_bg(
    max_overlaps: Array,
    fg_rois_per_image: int,
    rois_per_image: int,
    fg_thresh: float,
    bg_thresh_hi: float,
    bg_thresh_lo: float,
    choose: Choose,
) -> tuple[Array, int]:
    """(kept row indices, how many of them are fg) for one image; see the module docstring.

    ``max_overlaps`` (R,) is a NumPy array or a torch tensor; the indices come back as the
    same kind (int64, on the same device)."""
    fg_inds, bg_inds = fg_bg_candidates(max_overlaps, fg_thresh, bg_thresh_hi, bg_thresh_lo)
    num_fg = int(min(fg_rois_per_image, fg_inds.shape[0]))
    fg_inds = choose(fg_inds, num_fg)
    num_bg = int(min(rois_per_image - num_fg, bg_inds.shape[0]))
    bg_inds = choose(bg_inds, num_bg)
    if isinstance(fg_inds, torch.Tensor):
        return torch.cat((fg_inds, bg_inds)), num_fg
    return np.append(fg_inds, bg_inds).astype(np.int64), num_fg
