"""Fast R-CNN's foreground/background RoI sampling, one rule for both of its callers.

Upstream wrote it twice, both in NumPy drawing with ``npr.choice``: the data layer's minibatch
(``roi_data/minibatch.py``) and the end2end proposal target layer
(``rpn/proposal_target_layer.py``). Here the rule is written once: the data layer hands in its
draw function, the proposal target layer uses the rule's fixed-size form (``keyed_fg_bg``, below):

1. quota: ``fg_rois_per_image = round(FG_FRACTION * rois_per_image)`` as an integer (halves to
   even, like ``np.round``; upstream's proposal target layer kept a float there, #480);
2. fg: rows with max overlap >= ``fg_thresh``, ``min(quota, #fg)`` of them drawn without
   replacement;
3. bg: rows with max overlap in ``[bg_thresh_lo, bg_thresh_hi)``, ``min(rois_per_image - #fg
   taken, #bg)`` of them drawn likewise;
4. the kept row indices (int64), fg first, then bg, each part in the draw's order.

A draw ``choose(inds, k)`` returns ``k`` of ``inds`` without replacement: ``numpy_choice(rng)``
is the data layer's, consuming its RNG as upstream's minibatch does
(``rng.choice(inds, size=k, replace=False)``, skipped when ``inds`` is empty); ``torch_choice``
is the same rule on torch index tensors (``torch.randperm`` on ``inds``' device), which the tests
use to hold the two array forms to one another. The proposal target layer itself draws with the
keyed form below.

The fixed-size form (``keyed_take``, ``keyed_fg_bg``) is what the RPN layers use on the device:
the same rule with masks instead of index lists, so that no count leaves the device. Every
candidate gets a random key in [0, 1) (float64, from the image's own generator,
``frcnn.roi_data.keys``) and "k of the candidates at random, without replacement" is "the k
candidates with the largest keys". The kept rows come back as a mask; a caller that needs them
in order lists them fg first, then bg, each part by index.
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
    max_overlaps: Array, fg_thresh: float, bg_thresh_hi: float, bg_thresh_lo: float, as_masks: bool = False
) -> tuple[Array, Array]:
    """The rows that may be sampled as fg (max overlap >= ``fg_thresh``) and as bg (max overlap
    in ``[bg_thresh_lo, bg_thresh_hi)``), as int64 indices of ``max_overlaps``' kind (or, with
    ``as_masks``, as boolean masks)."""
    fg = max_overlaps >= fg_thresh
    bg = (max_overlaps < bg_thresh_hi) & (max_overlaps >= bg_thresh_lo)
    if as_masks:
        return fg, bg
    return where_true(fg), where_true(bg)


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


def keyed_take(
    candidates: torch.Tensor, keys: torch.Tensor, limit: int | torch.Tensor, bound: int | None = None
) -> torch.Tensor:
    """The at most ``limit`` candidates of each row with the largest keys, as a mask.

    ``candidates`` (N, M) bool, ``keys`` (N, M) floats in [0, 1) (float64: ties, which would leave
    the choice to the top-k's order, have probability ~1e-9), ``limit`` an int or an (N,) tensor
    (one limit per row) with ``bound`` >= every limit (a host int: the top-k size). Fixed-size
    arithmetic only (a top-k, a gather, a scatter, compares)."""
    if candidates.shape != keys.shape or candidates.ndim != 2:
        raise ValueError(
            f"keyed_take: need candidates and keys of one (N, M) shape, got {tuple(candidates.shape)}, "
            f"{tuple(keys.shape)}"
        )
    m = candidates.shape[1]
    if isinstance(limit, torch.Tensor):
        k = m if bound is None else min(int(bound), m)
        limit = limit.reshape(-1, 1)
    else:
        k = min(int(limit), m)
    out = torch.zeros_like(candidates)
    if k <= 0:
        return out
    masked = torch.where(candidates, keys, torch.full((), -1.0, dtype=keys.dtype, device=keys.device))
    top = torch.topk(masked, k, dim=1, largest=True, sorted=True).indices  # (N, k), largest key first
    ok = (torch.arange(k, device=top.device)[None, :] < limit) & candidates.gather(1, top)
    return out.scatter_(1, top, ok)


def keyed_fg_bg(
    max_overlaps: torch.Tensor,
    image_of_row: torch.Tensor,
    num_images: int,
    fg_rois_per_image: int,
    rois_per_image: int,
    fg_thresh: float,
    bg_thresh_hi: float,
    bg_thresh_lo: float,
    fg_keys: torch.Tensor,
    bg_keys: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_fg_bg`'s rule for every image of a batch at once, on the device.

    ``max_overlaps`` (M,) and ``image_of_row`` (M,) (the image each row belongs to) describe the
    candidates of all images; ``fg_keys`` / ``bg_keys`` (num_images, M) are each image's keys.
    Returns (fg mask, bg mask), both (M,) bool: per image, min(quota, #fg) fg rows and
    min(rois_per_image - #fg taken, #bg) bg rows, those with the largest keys."""
    fg_cand, bg_cand = fg_bg_candidates(max_overlaps, fg_thresh, bg_thresh_hi, bg_thresh_lo, as_masks=True)
    mine = image_of_row[None, :] == torch.arange(num_images, device=image_of_row.device)[:, None]  # (N, M)
    fg = keyed_take(mine & fg_cand[None, :], fg_keys, fg_rois_per_image)
    bg_limit = rois_per_image - fg.sum(dim=1)
    bg = keyed_take(mine & bg_cand[None, :], bg_keys, bg_limit, bound=rois_per_image)
    return fg.any(dim=0), bg.any(dim=0)
