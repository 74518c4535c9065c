"""The learned average proposal size of each anchor (the paper's Table 1).

Table 1 lists, for each of the k = 9 anchors of the ZF RPN at s = 600, the average size
(w x h) of "the proposals" that anchor regresses to. What is averaged is not spelled out; we
take what the RPN hands to the detector at test time, and offer the plain alternative:

- ``proposals`` (the default): the boxes of the test-time proposal layer (decode, clip to
  the image, drop boxes under ``RPN_MIN_SIZE``, top ``RPN_PRE_NMS_TOP_N`` by score, NMS at
  ``RPN_NMS_THRESH``, top ``RPN_POST_NMS_TOP_N``: 6000 / 0.7 / 300 by default), each counted
  for the anchor it was decoded from, every proposal weighing 1.
- ``all``: every anchor at every position, decoded but not clipped (what the regressor
  predicts, border or not), weighted by its objectness (the foreground probability).

Sizes are in pixels of the network's input, i.e. of the image rescaled to s (the scale the
anchors are defined in: "128^2" is 128 x 128 input pixels), with the +1 convention
(w = x2 - x1 + 1; the decode has upstream's missing -1, so an unchanged anchor of width w
comes back w + 1 wide). :func:`proposals_by_anchor` mirrors ``ProposalLayer.forward``
step by step, carrying each box's anchor index; a test holds its boxes equal to the layer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from frcnn.boxes.transform import bbox_transform_inv, clip_boxes
from frcnn.errors import InputError
from frcnn.ops.nms import nms as _nms
from frcnn.rpn.proposal_layer import ProposalLayer

MODES = ("proposals", "all")


def find_proposal_layer(net: Any) -> Any:
    """The net's first Python layer running :class:`ProposalLayer` (its ``impl``), or an error."""
    for layer in net.layers:
        if isinstance(getattr(layer, "impl", None), ProposalLayer):
            return layer
    raise InputError(
        f"net '{net.name}' ({net.source}): has no proposal layer (rpn.proposal_layer.ProposalLayer); "
        "give an RPN test net (rpn_test.prototxt or faster_rcnn_test.prototxt)"
    )


def nominal_anchors(layer: Any) -> tuple[list[float], list[float]] | None:
    """The (scales, ratios) that made a net proposal layer's anchors (its ``param_str``, else
    the defaults), or None when they do not give the layer's anchors (then the table names
    anchors by their size)."""
    from frcnn.caffe.python_layer import parse_param_str
    from frcnn.rpn.generate_anchors import generate_anchors

    p = parse_param_str(getattr(layer, "param_str", ""), "proposal layer param_str")
    scales = list(p.get("scales", ProposalLayer.param_defaults["scales"]))
    ratios = list(p.get("ratios", ProposalLayer.param_defaults["ratios"]))
    made = layer.impl.anchors.detach().cpu().numpy()
    ref = generate_anchors(ratios=ratios, scales=scales)
    return (scales, ratios) if ref.shape == made.shape and np.allclose(ref, made) else None


def _flat(layer: ProposalLayer, prob: torch.Tensor, deltas: torch.Tensor) -> tuple:
    """Steps 1 of the layer: fg scores (H*W*A,), deltas (H*W*A, 4), anchors, anchor index."""
    a = layer.num_anchors
    prob, deltas = prob.detach(), deltas.detach()
    if deltas.dtype not in (torch.float32, torch.float64):
        prob, deltas = prob.float(), deltas.float()
    if prob.ndim != 4 or prob.shape[0] != 1 or prob.shape[1] != 2 * a:
        raise ValueError(f"anchor stats: scores must be (1, {2 * a}, H, W), got {tuple(prob.shape)}")
    height, width = prob.shape[-2:]
    if tuple(deltas.shape) != (1, 4 * a, height, width):
        raise ValueError(f"anchor stats: deltas must be (1, {4 * a}, {height}, {width}), got {tuple(deltas.shape)}")
    scores = prob[:, a:, :, :].permute(0, 2, 3, 1).reshape(-1)
    deltas = deltas.permute(0, 2, 3, 1).reshape(-1, 4)
    anchors = layer.feature_map_anchors(height, width, prob.device)
    index = torch.arange(scores.shape[0], device=prob.device) % a
    return scores, deltas, anchors, index


def proposals_by_anchor(
    layer: ProposalLayer, rpn_cls_prob_reshape: torch.Tensor, rpn_bbox_pred: torch.Tensor, im_info: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The proposal layer's boxes (N, 4), scores (N,) and the anchor index (N,) of each."""
    scores, deltas, anchors, index = _flat(layer, rpn_cls_prob_reshape, rpn_bbox_pred)
    info = torch.as_tensor(im_info).detach().to(scores.device).reshape(-1)
    proposals = clip_boxes(bbox_transform_inv(anchors, deltas), info[:2])
    min_size = layer.min_size * info[2].to(proposals.dtype)
    ws = proposals[:, 2] - proposals[:, 0] + 1
    hs = proposals[:, 3] - proposals[:, 1] + 1
    keep = ((ws >= min_size) & (hs >= min_size)).nonzero().squeeze(1)
    proposals, scores, index = proposals[keep].float(), scores[keep].float(), index[keep]
    order = torch.sort(scores, descending=True, stable=True).indices
    if layer.pre_nms_top_n > 0:
        order = order[: layer.pre_nms_top_n]
    proposals, scores, index = proposals[order], scores[order], index[order]
    keep = _nms(proposals, scores, layer.nms_thresh)
    if layer.post_nms_top_n > 0:
        keep = keep[: layer.post_nms_top_n]
    return proposals[keep], scores[keep], index[keep]


def decoded_by_anchor(
    layer: ProposalLayer, rpn_cls_prob_reshape: torch.Tensor, rpn_bbox_pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every anchor decoded, not clipped: boxes (H*W*A, 4), fg scores, anchor index."""
    scores, deltas, anchors, index = _flat(layer, rpn_cls_prob_reshape, rpn_bbox_pred)
    return bbox_transform_inv(anchors, deltas), scores, index


class AnchorSizes:
    """Running (weighted) means of box width and height per anchor index."""

    def __init__(self, num_anchors: int) -> None:
        self.w = np.zeros(num_anchors)
        self.h = np.zeros(num_anchors)
        self.weight = np.zeros(num_anchors)
        self.count = np.zeros(num_anchors, dtype=np.int64)

    def add(self, boxes: torch.Tensor | np.ndarray, index: torch.Tensor | np.ndarray, weights: Any = None) -> None:
        b = torch.as_tensor(boxes).detach().cpu().double().numpy().reshape(-1, 4)
        i = torch.as_tensor(index).detach().cpu().numpy().astype(np.int64).reshape(-1)
        wt = np.ones(len(i)) if weights is None else torch.as_tensor(weights).detach().cpu().double().numpy().ravel()
        n = len(self.w)
        self.w += np.bincount(i, wt * (b[:, 2] - b[:, 0] + 1), minlength=n)
        self.h += np.bincount(i, wt * (b[:, 3] - b[:, 1] + 1), minlength=n)
        self.weight += np.bincount(i, wt, minlength=n)
        self.count += np.bincount(i, minlength=n)

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean width and height per anchor (NaN where nothing was counted)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.w / self.weight, self.h / self.weight


def ratio_label(ratio: float) -> str:
    """The paper's w:h label of an aspect ratio h/w: 0.5 -> '2:1', 1 -> '1:1', 2 -> '1:2'."""
    f = Fraction(float(ratio)).limit_denominator(100)
    return f"{f.denominator}:{f.numerator}"


def anchor_table(
    nominal: tuple[Sequence[float], Sequence[float]] | None, feat_stride: int, anchors: np.ndarray, sizes: AnchorSizes
) -> list[dict]:
    """One row per anchor: with ``nominal`` (scales, ratios) in the paper's order (scale, then
    w:h from wide to tall) and labels such as '128², 2:1'; without, in anchor order, labelled
    by the anchor's size."""
    mean_w, mean_h = sizes.means()
    if nominal is None:
        order = [(a, None, None) for a in range(len(anchors))]
    else:
        scales, ratios = nominal
        order = [
            (r_i * len(scales) + s_i, float(s), float(r))  # generate_anchors: ratio-major, scale-minor
            for s_i, s in sorted(enumerate(scales), key=lambda t: t[1])
            for r_i, r in sorted(enumerate(ratios), key=lambda t: t[1])
        ]
    rows = []
    for a, s, r in order:
        aw, ah = float(anchors[a, 2] - anchors[a, 0] + 1), float(anchors[a, 3] - anchors[a, 1] + 1)
        label = f"{aw:g}\u00d7{ah:g} anchor" if s is None else f"{s * feat_stride:g}\u00b2, {ratio_label(r)}"
        rows.append({
            "anchor": a,
            "label": label,
            "scale": s,
            "ratio": r,
            "anchor_w": aw,
            "anchor_h": ah,
            "mean_w": None if np.isnan(mean_w[a]) else float(mean_w[a]),
            "mean_h": None if np.isnan(mean_h[a]) else float(mean_h[a]),
            "count": int(sizes.count[a]),
            "weight": float(sizes.weight[a]),
        })
    return rows


def format_table(rows: Sequence[dict]) -> str:
    """Table 1's layout: a row of anchors and a row of average proposal sizes (w x h)."""
    heads = ["anchor"] + [r["label"] for r in rows]
    cells = ["proposal"] + [
        "-" if r["mean_w"] is None else f"{round(r['mean_w'])}\u00d7{round(r['mean_h'])}" for r in rows
    ]
    widths = [max(len(a), len(b)) for a, b in zip(heads, cells)]
    line = " | ".join(h.ljust(w) for h, w in zip(heads, widths))
    return line + "\n" + " | ".join(c.ljust(w) for c, w in zip(cells, widths))
