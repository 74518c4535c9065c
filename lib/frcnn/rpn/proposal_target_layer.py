"""ProposalTargetLayer: sample RoIs from the proposals and give them class and box targets.

Bottoms: ``rpn_rois`` (N, 5) = (0, x1, y1, x2, y2) and ``gt_boxes`` (G, 5) = (x1, y1, x2, y2, class).
Tops (float32, on ``rpn_rois``' device): ``rois`` (R, 5), ``labels`` (R,), ``bbox_targets``,
``bbox_inside_weights``, ``bbox_outside_weights`` (R, 4K); R <= batch_size.

1. Append the gt boxes (batch index 0) to the proposals; every row's batch index must be 0.
2. IoU (+1 convention, float64) of each candidate against the gt; label = class of the
   best-IoU gt (the first gt on ties).
3. fg: IoU >= fg_thresh, take min(round(fg_fraction * batch_size), #fg) at random; bg: IoU in
   [bg_thresh_lo, bg_thresh_hi), take min(batch_size - #fg taken, #bg) at random. Rows come
   fg first (in random order), then bg, whose labels are set to 0.
4. Targets = bbox_transform(roi, assigned gt); with normalize_targets_precomputed,
   (t - means) / stds. Expanded to 4K columns: the 4 values at 4c..4c+3 for the label's class
   c > 0, inside weights ``bbox_inside_weights`` there, outside weights = (inside > 0).

Step 3 and the expansion of step 4 are the data layer's own functions
(``frcnn.roi_data.sampling``, ``frcnn.roi_data.class_targets``). Class ids are cast to
integers before indexing (upstream #480). Randomness: torch's global RNG on the bottoms'
device. No gt boxes: every candidate has IoU 0 (bg when bg_thresh_lo is 0), and no targets.
No backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from frcnn.boxes.iou import box_iou
from frcnn.boxes.transform import bbox_transform
from frcnn.roi_data.class_targets import expand_bbox_targets
from frcnn.roi_data.sampling import fg_rois_per_image, sample_fg_bg, torch_choice
from frcnn.rpn.layer_base import ConfiguredLayer


class ProposalTargetLayer(ConfiguredLayer):
    """Fast R-CNN minibatch sampling from RPN proposals (no backward)."""

    top_names = ("rois", "labels", "bbox_targets", "bbox_inside_weights", "bbox_outside_weights")
    required_params = ("num_classes",)
    config_keys: ClassVar[dict[str, str]] = {  # constructor argument <- cfg.TRAIN key
        "batch_size": "BATCH_SIZE",
        "fg_fraction": "FG_FRACTION",
        "fg_thresh": "FG_THRESH",
        "bg_thresh_hi": "BG_THRESH_HI",
        "bg_thresh_lo": "BG_THRESH_LO",
        "bbox_inside_weights": "BBOX_INSIDE_WEIGHTS",
        "normalize_targets_precomputed": "BBOX_NORMALIZE_TARGETS_PRECOMPUTED",
        "normalize_means": "BBOX_NORMALIZE_MEANS",
        "normalize_stds": "BBOX_NORMALIZE_STDS",
    }

    def __init__(
        self,
        num_classes: int,
        batch_size: int = 128,
        fg_fraction: float = 0.25,
        fg_thresh: float = 0.5,
        bg_thresh_hi: float = 0.5,
        bg_thresh_lo: float = 0.1,
        bbox_inside_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        normalize_targets_precomputed: bool = False,
        normalize_means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        normalize_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
    ) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"ProposalTargetLayer: num_classes must be >= 1, got {num_classes}")
        if int(batch_size) <= 0:
            raise ValueError(f"ProposalTargetLayer: TRAIN.BATCH_SIZE must be > 0, got {batch_size}")
        for name, v in (("BBOX_INSIDE_WEIGHTS", bbox_inside_weights), ("BBOX_NORMALIZE_MEANS", normalize_means),
                        ("BBOX_NORMALIZE_STDS", normalize_stds)):
            if len(v) != 4:
                raise ValueError(f"ProposalTargetLayer: TRAIN.{name} needs 4 values, got {v}")
        if normalize_targets_precomputed and any(float(s) == 0 for s in normalize_stds):
            raise ValueError(f"ProposalTargetLayer: TRAIN.BBOX_NORMALIZE_STDS has a zero: {normalize_stds}")
        self.num_classes = int(num_classes)
        self.rois_per_image = int(batch_size)  # one image per batch
        self.fg_rois_per_image = fg_rois_per_image(fg_fraction, self.rois_per_image)
        self.fg_thresh = float(fg_thresh)
        self.bg_thresh_hi = float(bg_thresh_hi)
        self.bg_thresh_lo = float(bg_thresh_lo)
        self.inside_weights = tuple(float(v) for v in bbox_inside_weights)
        self.normalize = bool(normalize_targets_precomputed)
        self.means = tuple(float(v) for v in normalize_means)
        self.stds = tuple(float(v) for v in normalize_stds)

    @torch.no_grad()
    def forward(self, rpn_rois: torch.Tensor, gt_boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rpn_rois = torch.as_tensor(rpn_rois).detach()
        device = rpn_rois.device
        gt = torch.as_tensor(gt_boxes).detach().to(device)
        if rpn_rois.ndim != 2 or rpn_rois.shape[1] != 5:
            raise ValueError(f"ProposalTargetLayer: rpn_rois must be (N, 5), got shape {tuple(rpn_rois.shape)}")
        if gt.ndim != 2 or gt.shape[1] != 5:
            raise ValueError(f"ProposalTargetLayer: gt_boxes must be (G, 5), got shape {tuple(gt.shape)}")

        # 1. candidates = proposals + gt boxes, (N + G, 5), batch index 0
        gt_rois = torch.cat((torch.zeros_like(gt[:, :1]), gt[:, :4]), dim=1)
        all_rois = torch.cat((rpn_rois.to(torch.float32), gt_rois.to(torch.float32)), dim=0)
        if bool((all_rois[:, 0] != 0).any()):
            raise ValueError("ProposalTargetLayer: rpn_rois: only single-image batches (batch index 0) are supported")

        # 2. best gt per candidate
        num_gt = gt.shape[0]
        if num_gt > 0:
            overlaps = box_iou(all_rois[:, 1:5].double(), gt[:, :4].double())  # (N + G, G)
            gt_assignment = overlaps.argmax(dim=1)
            max_overlaps = overlaps.gather(1, gt_assignment[:, None]).squeeze(1)
            labels = gt[gt_assignment, 4].to(torch.float32)
        else:
            gt_assignment = torch.zeros((all_rois.shape[0],), dtype=torch.long, device=device)
            max_overlaps = torch.zeros((all_rois.shape[0],), dtype=torch.float64, device=device)
            labels = torch.zeros((all_rois.shape[0],), dtype=torch.float32, device=device)

        # 3. sample fg then bg
        keep, num_fg = sample_fg_bg(
            max_overlaps, self.fg_rois_per_image, self.rois_per_image, self.fg_thresh, self.bg_thresh_hi,
            self.bg_thresh_lo, torch_choice,
        )
        labels = labels[keep]
        labels[num_fg:] = 0
        rois = all_rois[keep]

        # 4. targets (float64 arithmetic), normalised, expanded to the label's 4 columns
        r = rois.shape[0]
        if num_gt > 0:
            targets = bbox_transform(rois[:, 1:5].double(), gt[gt_assignment[keep], :4].double())
            if self.normalize:
                means = torch.tensor(self.means, dtype=torch.float64, device=device)
                stds = torch.tensor(self.stds, dtype=torch.float64, device=device)
                targets = (targets - means) / stds
            targets = targets.float()
        else:
            targets = torch.zeros((r, 4), dtype=torch.float32, device=device)
        bbox_targets, bbox_inside = expand_bbox_targets(
            labels, targets, self.num_classes, self.inside_weights, "ProposalTargetLayer: gt_boxes"
        )
        bbox_outside = (bbox_inside > 0).to(torch.float32)
        return rois, labels, bbox_targets, bbox_inside, bbox_outside
