"""ProposalTargetLayer: sample RoIs from the proposals and give them class and box targets.

Bottoms: ``rpn_rois`` (N, 5) = (image, x1, y1, x2, y2) and ``gt_boxes`` (G, 5) = (x1, y1, x2, y2,
class), or (G, 6) with the image's index in the batch as column 5 (the data layer's form for
TRAIN.IMS_PER_BATCH > 1; the layer then takes IMS_PER_BATCH images). Tops (float32, on
``rpn_rois``' device): ``rois`` (R, 5), ``labels`` (R,), ``bbox_targets``,
``bbox_inside_weights``, ``bbox_outside_weights`` (R, 4K); R <= batch_size.

Per image (upstream had one; its rules, with ``rois_per_image = BATCH_SIZE / images``, as the
Fast R-CNN data layer divides its BATCH_SIZE over the images of a minibatch):
1. Append the image's gt boxes to its proposals (every row's image index must be in the batch).
2. IoU (+1 convention, float64) of each candidate against the image's gt; label = class of the
   best-IoU gt (the first gt on ties).
3. fg: IoU >= fg_thresh, take min(round(fg_fraction * rois_per_image), #fg) at random; bg: IoU in
   [bg_thresh_lo, bg_thresh_hi), take min(rois_per_image - #fg taken, #bg) at random.
4. Targets = bbox_transform(roi, assigned gt); with normalize_targets_precomputed,
   (t - means) / stds. Expanded to 4K columns: the 4 values at 4c..4c+3 for the label's class
   c > 0, inside weights ``bbox_inside_weights`` there, outside weights = (inside > 0).
Rows come image by image; within an image fg first, then bg (labels 0), each part in candidate
order (proposals, then the gt boxes). Upstream listed each part in its random draw's order; the
order of the rows changes no loss but the rounding of its sums.

The losses over several images follow Caffe's rules: SoftmaxWithLoss (VALID) divides by all R
labels, SmoothL1Loss by R (outside weights 1), i.e. every sampled RoI of the batch weighs the
same, as in the Fast R-CNN data layer's minibatches of two images.

Step 3 and the expansion of step 4 are the data layer's own rules (``frcnn.roi_data.sampling``
in its fixed-size form ``keyed_fg_bg``, ``frcnn.roi_data.class_targets``). Class ids are cast to
integers before indexing (upstream #480). Randomness: each image's own torch generator keyed by
(RNG_SEED, iteration, global image index) (``frcnn.roi_data.keys``), on the bottoms' device. No
gt boxes: every candidate has IoU 0 (bg when bg_thresh_lo is 0), and no targets. No backward.

Host synchronisation: one, for the data-dependent number of rows R (the sampling itself is
masks and sorts); the checks of the image indices and class ids run on the host for CPU
tensors and as device-side assertions on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from frcnn.boxes.iou import box_iou
from frcnn.boxes.transform import bbox_transform
from frcnn.roi_data.class_targets import expand_bbox_targets
from frcnn.roi_data.device_values import device_constant
from frcnn.roi_data.keys import PROPOSAL_ROIS, BatchPosition, PositionedLayer, random_keys, torch_generator
from frcnn.roi_data.sampling import fg_rois_per_image, keyed_fg_bg
from frcnn.rpn.layer_base import ConfiguredLayer


class ProposalTargetLayer(PositionedLayer, ConfiguredLayer):
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
        "ims_per_batch": "IMS_PER_BATCH",
    }
    top_config_keys: ClassVar[dict[str, str]] = {"seed": "RNG_SEED"}

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
        ims_per_batch: int = 1,
        seed: int = 3,
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
        if int(ims_per_batch) < 1:
            raise ValueError(f"ProposalTargetLayer: TRAIN.IMS_PER_BATCH must be >= 1, got {ims_per_batch}")
        self.num_classes = int(num_classes)
        self.batch_size = int(batch_size)
        self.fg_fraction = float(fg_fraction)
        self.rois_per_image = int(batch_size)  # of a one-image batch (gt_boxes with 5 columns)
        self.fg_rois_per_image = fg_rois_per_image(fg_fraction, self.rois_per_image)
        #: images of a batch whose gt_boxes carry image indices (6 columns): TRAIN.IMS_PER_BATCH
        self.ims_per_batch = int(ims_per_batch)
        self.seed = int(seed)
        self._init_position()
        self.fg_thresh = float(fg_thresh)
        self.bg_thresh_hi = float(bg_thresh_hi)
        self.bg_thresh_lo = float(bg_thresh_lo)
        self.inside_weights = tuple(float(v) for v in bbox_inside_weights)
        self.normalize = bool(normalize_targets_precomputed)
        self.means = tuple(float(v) for v in normalize_means)
        self.stds = tuple(float(v) for v in normalize_stds)

    @torch.no_grad()
    def forward(self, rpn_rois: torch.Tensor, gt_boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        position = self._take_position()
        rpn_rois = torch.as_tensor(rpn_rois).detach()
        device = rpn_rois.device
        gt = torch.as_tensor(gt_boxes).detach().to(device)
        if rpn_rois.ndim != 2 or rpn_rois.shape[1] != 5:
            raise ValueError(f"ProposalTargetLayer: rpn_rois must be (N, 5), got shape {tuple(rpn_rois.shape)}")
        if gt.ndim != 2 or gt.shape[1] not in (5, 6):
            raise ValueError(f"ProposalTargetLayer: gt_boxes must be (G, 5) or (G, 6), got shape {tuple(gt.shape)}")
        num_images = 1 if gt.shape[1] == 5 else self.ims_per_batch
        if self.batch_size % num_images != 0:
            raise ValueError(
                f"ProposalTargetLayer: TRAIN.IMS_PER_BATCH ({num_images}) must divide TRAIN.BATCH_SIZE "
                f"({self.batch_size})"
            )
        rois_per_image = self.batch_size // num_images
        fg_quota = fg_rois_per_image(self.fg_fraction, rois_per_image)
        num_gt = gt.shape[0]
        if gt.shape[1] == 5:
            gt_image = torch.zeros((num_gt,), dtype=torch.long, device=device)
        else:
            gt_image = gt[:, 5].long()

        # 1. candidates = proposals + gt boxes, (M, 5), with their image indices
        gt_rois = torch.cat((gt_image[:, None].to(torch.float32), gt[:, :4].to(torch.float32)), dim=1)
        all_rois = torch.cat((rpn_rois.to(torch.float32), gt_rois), dim=0)
        row_image = all_rois[:, 0].long()
        self._check_images(all_rois[:, 0], gt_image, num_images)
        m = all_rois.shape[0]

        # 2. best gt of the same image per candidate
        if num_gt > 0:
            overlaps = box_iou(all_rois[:, 1:5].double(), gt[:, :4].double())  # (M, G)
            same = row_image[:, None] == gt_image[None, :]
            ov = torch.where(same, overlaps, torch.full((), -1.0, dtype=torch.float64, device=device))
            gt_assignment = ov.argmax(dim=1)
            max_overlaps = ov.gather(1, gt_assignment[:, None]).squeeze(1).clamp_min(0.0)
            zero = torch.zeros((), dtype=torch.float32, device=device)
            labels = torch.where(same.any(dim=1), gt[gt_assignment, 4].to(torch.float32), zero)
        else:
            gt_assignment = torch.zeros((m,), dtype=torch.long, device=device)
            max_overlaps = torch.zeros((m,), dtype=torch.float64, device=device)
            labels = torch.zeros((m,), dtype=torch.float32, device=device)

        # 3. sample fg then bg, per image, by each image's keys; rows image by image, fg then bg
        fg_keys, bg_keys = self._keys(num_images, m, position, device)
        fg, bg = keyed_fg_bg(
            max_overlaps, row_image, num_images, fg_quota, rois_per_image, self.fg_thresh, self.bg_thresh_hi,
            self.bg_thresh_lo, fg_keys, bg_keys,
        )
        chosen = fg | bg
        arange = torch.arange(m, device=device)
        sort_key = torch.where(chosen, row_image * (2 * m) + bg.long() * m + arange, (num_images + 1) * 2 * m + arange)
        order = torch.sort(sort_key).indices
        keep = order[: int(chosen.sum())]  # data-dependent: the number of sampled RoIs (host sync)
        labels = torch.where(fg[keep], labels[keep], torch.zeros((), dtype=torch.float32, device=device))
        rois = all_rois[keep]

        # 4. targets (float64 arithmetic), normalised, expanded to the label's 4 columns
        r = rois.shape[0]
        if num_gt > 0:
            targets = bbox_transform(rois[:, 1:5].double(), gt[gt_assignment[keep], :4].double())
            if self.normalize:
                means = device_constant(self.means, torch.float64, device)
                stds = device_constant(self.stds, torch.float64, device)
                targets = (targets - means) / stds
            targets = targets.float()
        else:
            targets = torch.zeros((r, 4), dtype=torch.float32, device=device)
        bbox_targets, bbox_inside = expand_bbox_targets(
            labels, targets, self.num_classes, self.inside_weights, "ProposalTargetLayer: gt_boxes"
        )
        bbox_outside = (bbox_inside > 0).to(torch.float32)
        return rois, labels, bbox_targets, bbox_inside, bbox_outside

    def _keys(
        self, num_images: int, m: int, position: BatchPosition, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's fg and bg keys over the M candidates of the batch, (N, M) each."""
        fg, bg = [], []
        for i in range(num_images):
            g = torch_generator(self.seed, PROPOSAL_ROIS, position.iteration, position.image_index(i, num_images),
                                device)
            fg.append(random_keys(m, g, device))
            bg.append(random_keys(m, g, device))
        return torch.stack(fg), torch.stack(bg)

    @staticmethod
    def _check_images(row_image: torch.Tensor, gt_image: torch.Tensor, num_images: int) -> None:
        """Every image index must lie in the batch (on the host for CPU tensors, else a device assertion)."""
        bad_rows = (row_image < 0) | (row_image >= num_images) | (row_image != row_image.floor())
        bad_gt = (gt_image < 0) | (gt_image >= num_images)
        what = (
            "a single-image batch (gt_boxes has 5 columns): every index must be 0"
            if num_images == 1
            else f"a batch of {num_images} images (TRAIN.IMS_PER_BATCH)"
        )
        msg = f"ProposalTargetLayer: rpn_rois or gt_boxes hold an image index outside {what}"
        if row_image.device.type == "cpu":
            if bool(bad_rows.any()) or bool(bad_gt.any()):
                raise ValueError(msg)
        elif row_image.numel() > 0:
            torch._assert_async(~(bad_rows.any() | bad_gt.any()), msg)
