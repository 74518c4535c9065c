"""AnchorTargetLayer: label every anchor and give it regression targets (upstream's rules).

Bottoms: ``rpn_cls_score`` (1, 2A, H, W; only H and W are read), ``gt_boxes`` (G, 5: x1, y1, x2,
y2, class, in input-image pixels), ``im_info`` (1, 3: height, width, scale), ``data`` (unused).
Tops (float32, on ``rpn_cls_score``'s device): ``rpn_labels`` (1, 1, A*H, W), ``rpn_bbox_targets``,
``rpn_bbox_inside_weights``, ``rpn_bbox_outside_weights`` (1, 4A, H, W, channel 4a + k).

1. Shift the A reference anchors to every cell; keep those with x1 >= -border, y1 >= -border,
   x2 < W_im + border, y2 < H_im + border (the rest: label -1, zero targets and weights).
2. IoU (+1 convention, float64) of inside anchors against every gt box.
3. Labels start at -1; unless CLOBBER_POSITIVES, label 0 where max IoU < NEGATIVE_OVERLAP.
4. For each gt its best IoU; every anchor whose IoU with some gt *equals* that gt's best is
   labelled 1 (ties included). Caveat kept from upstream: a gt whose best IoU is 0 makes every
   anchor with IoU 0 to it positive.
5. Label 1 where max IoU >= POSITIVE_OVERLAP; with CLOBBER_POSITIVES the negatives come now.
6. Keep at most int(FG_FRACTION * BATCHSIZE) positives, at random (the extras -> -1).
7. Keep at most BATCHSIZE - #positives negatives, at random.
8. Targets = bbox_transform(anchor, its best gt) for every inside anchor (not normalised).
9. Inside weights = RPN_BBOX_INSIDE_WEIGHTS for positives. Outside weights: POSITIVE_WEIGHT < 0:
   1 / #labelled for positives and negatives; else p / #pos and (1 - p) / #neg.

Randomness: torch's global RNG (``torch.randperm`` on the bottoms' device; on a GPU that is
the CUDA generator), so ``torch.manual_seed`` makes a run repeatable. Differences from
upstream, both where upstream crashed: no gt boxes -> every inside anchor has max IoU 0 and so
is a negative (then sampled); no anchor inside the image (#63) -> all labels -1 and a warning
(the RPN losses get no example from that image).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from frcnn.boxes.iou import box_iou
from frcnn.boxes.transform import bbox_transform
from frcnn.rpn.layer_base import AnchorLayer


class AnchorTargetLayer(AnchorLayer):
    """Anchor labels and regression targets for the RPN losses (no backward)."""

    top_names = ("rpn_labels", "rpn_bbox_targets", "rpn_bbox_inside_weights", "rpn_bbox_outside_weights")
    param_defaults: ClassVar[dict[str, Any]] = {**AnchorLayer.param_defaults, "allowed_border": 0}
    config_keys: ClassVar[dict[str, str]] = {  # constructor argument <- cfg.TRAIN key
        "positive_overlap": "RPN_POSITIVE_OVERLAP",
        "negative_overlap": "RPN_NEGATIVE_OVERLAP",
        "clobber_positives": "RPN_CLOBBER_POSITIVES",
        "fg_fraction": "RPN_FG_FRACTION",
        "batch_size": "RPN_BATCHSIZE",
        "bbox_inside_weights": "RPN_BBOX_INSIDE_WEIGHTS",
        "positive_weight": "RPN_POSITIVE_WEIGHT",
    }

    def __init__(
        self,
        feat_stride: int = 16,
        scales: Sequence[float] = (8, 16, 32),
        ratios: Sequence[float] = (0.5, 1, 2),
        allowed_border: float = 0,
        positive_overlap: float = 0.7,
        negative_overlap: float = 0.3,
        clobber_positives: bool = False,
        fg_fraction: float = 0.5,
        batch_size: int = 256,
        bbox_inside_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        positive_weight: float = -1.0,
    ) -> None:
        super().__init__(feat_stride, scales, ratios)
        if not (positive_weight < 0 or 0 < positive_weight < 1):
            raise ValueError(
                f"AnchorTargetLayer: RPN_POSITIVE_WEIGHT must be < 0 (uniform) or in (0, 1), got {positive_weight}"
            )
        if batch_size <= 0:
            raise ValueError(f"AnchorTargetLayer: RPN_BATCHSIZE must be > 0, got {batch_size}")
        if len(bbox_inside_weights) != 4:
            raise ValueError(f"AnchorTargetLayer: RPN_BBOX_INSIDE_WEIGHTS needs 4 values, got {bbox_inside_weights}")
        self.allowed_border = float(allowed_border)
        self.positive_overlap = float(positive_overlap)
        self.negative_overlap = float(negative_overlap)
        self.clobber_positives = bool(clobber_positives)
        self.num_fg = int(fg_fraction * batch_size)
        self.batch_size = int(batch_size)
        self.inside_weights = tuple(float(v) for v in bbox_inside_weights)
        self.positive_weight = float(positive_weight)

    @torch.no_grad()
    def forward(
        self,
        rpn_cls_score: torch.Tensor,
        gt_boxes: torch.Tensor,
        im_info: torch.Tensor,
        data: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if rpn_cls_score.ndim != 4 or rpn_cls_score.shape[0] != 1:
            raise ValueError(
                f"AnchorTargetLayer: rpn_cls_score must be (1, 2A, H, W) (one image per batch), "
                f"got shape {tuple(rpn_cls_score.shape)}"
            )
        device = rpn_cls_score.device
        gt = torch.as_tensor(gt_boxes).detach().to(device)
        if gt.ndim != 2 or (gt.shape[0] > 0 and gt.shape[1] < 4):
            raise ValueError(f"AnchorTargetLayer: gt_boxes must be (G, 5), got shape {tuple(gt.shape)}")
        info = torch.as_tensor(im_info).detach().to(device).reshape(-1)
        if info.numel() < 2:
            raise ValueError(f"AnchorTargetLayer: im_info must be (1, 3), got shape {tuple(im_info.shape)}")
        height, width = rpn_cls_score.shape[-2:]
        A = self.num_anchors

        # 1. all anchors (H*W*A, 4) in (row, col, anchor) order; keep the inside ones
        all_anchors = self.feature_map_anchors(height, width, device)
        total = all_anchors.shape[0]
        b = self.allowed_border
        inside = (
            (all_anchors[:, 0] >= -b)
            & (all_anchors[:, 1] >= -b)
            & (all_anchors[:, 2] < info[1] + b)
            & (all_anchors[:, 3] < info[0] + b)
        )
        inds_inside = inside.nonzero().squeeze(1)
        anchors = all_anchors[inds_inside]
        n = anchors.shape[0]
        if n == 0 and total > 0:
            warnings.warn(
                f"AnchorTargetLayer: no anchor lies inside the {int(info[0])}x{int(info[1])} image "
                f"(allowed_border {b:g}); every anchor is labelled -1, so this image adds no RPN example",
                RuntimeWarning,
                stacklevel=2,
            )

        # 2.-5. labels of the inside anchors
        labels = torch.full((n,), -1.0, dtype=torch.float32, device=device)
        num_gt = gt.shape[0]
        if num_gt > 0 and n > 0:
            overlaps = box_iou(anchors, gt[:, :4].to(torch.float64))  # (n, G) float64
            argmax_overlaps = overlaps.argmax(dim=1)
            max_overlaps = overlaps.gather(1, argmax_overlaps[:, None]).squeeze(1)
            gt_max_overlaps = overlaps.max(dim=0).values  # (G,)
            is_gt_best = (overlaps == gt_max_overlaps[None, :]).any(dim=1)
        else:
            argmax_overlaps = torch.zeros((n,), dtype=torch.long, device=device)
            max_overlaps = torch.zeros((n,), dtype=torch.float64, device=device)
            is_gt_best = torch.zeros((n,), dtype=torch.bool, device=device)
        if not self.clobber_positives:
            labels[max_overlaps < self.negative_overlap] = 0
        labels[is_gt_best] = 1
        labels[max_overlaps >= self.positive_overlap] = 1
        if self.clobber_positives:
            labels[max_overlaps < self.negative_overlap] = 0

        # 6.-7. subsample positives, then negatives
        fg_inds = (labels == 1).nonzero().squeeze(1)
        if fg_inds.numel() > self.num_fg:
            drop = torch.randperm(fg_inds.numel(), device=device)[: fg_inds.numel() - self.num_fg]
            labels[fg_inds[drop]] = -1
        num_bg = self.batch_size - min(fg_inds.numel(), self.num_fg)
        bg_inds = (labels == 0).nonzero().squeeze(1)
        if bg_inds.numel() > num_bg:
            drop = torch.randperm(bg_inds.numel(), device=device)[: bg_inds.numel() - num_bg]
            labels[bg_inds[drop]] = -1

        # 8. targets for every inside anchor (float64 arithmetic, float32 top)
        if num_gt > 0:
            targets = bbox_transform(anchors, gt[argmax_overlaps, :4].to(torch.float64)).float()
        else:
            targets = torch.zeros((n, 4), dtype=torch.float32, device=device)

        # 9. inside and outside weights
        pos = (labels == 1)[:, None]
        neg = (labels == 0)[:, None]
        inside_w = torch.tensor(self.inside_weights, dtype=torch.float32, device=device)
        inside_weights = torch.where(pos, inside_w[None, :], torch.zeros((), device=device))
        if self.positive_weight < 0:
            num_examples = (labels >= 0).sum().to(torch.float32)
            pos_w = neg_w = 1.0 / num_examples
        else:
            pos_w = self.positive_weight / pos.sum().to(torch.float32)
            neg_w = (1.0 - self.positive_weight) / neg.sum().to(torch.float32)
        zero = torch.zeros((), dtype=torch.float32, device=device)
        outside_weights = torch.where(pos, pos_w, torch.where(neg, neg_w, zero)).expand(n, 4)

        # unmap to all anchors, then (H*W*A, .) -> (1, H, W, A*.) -> (1, A*., H, W)
        def unmap(x: torch.Tensor, fill: float) -> torch.Tensor:
            out = torch.full((total,) + tuple(x.shape[1:]), fill, dtype=torch.float32, device=device)
            out[inds_inside] = x
            return out

        rpn_labels = unmap(labels, -1.0).reshape(1, height, width, A).permute(0, 3, 1, 2)
        rpn_labels = rpn_labels.reshape(1, 1, A * height, width)  # (1, A, H, W) -> (1, 1, A*H, W)

        def to_map(x: torch.Tensor) -> torch.Tensor:
            # (total, 4) -> (1, H, W, 4A) -> (1, 4A, H, W)
            return unmap(x, 0.0).reshape(1, height, width, A * 4).permute(0, 3, 1, 2).contiguous()

        return rpn_labels, to_map(targets), to_map(inside_weights), to_map(outside_weights)
