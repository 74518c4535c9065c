"""AnchorTargetLayer: label every anchor and give it regression targets (upstream's rules).

Bottoms: ``rpn_cls_score`` (N, 2A, H, W; only N, H and W are read), ``gt_boxes`` (G, 5: x1, y1,
x2, y2, class, in input-image pixels; or (G, 6) with the image's index in the batch as column 5,
which the data layer writes when N > 1), ``im_info`` (N, 3: height, width, scale of each image),
``data`` (unused). Tops (float32, on ``rpn_cls_score``'s device): ``rpn_labels`` (N, 1, A*H, W),
``rpn_bbox_targets``, ``rpn_bbox_inside_weights``, ``rpn_bbox_outside_weights`` (N, 4A, H, W,
channel 4a + k). Each image is labelled on its own (its own size, its own gt boxes), as
upstream labelled its one image:

1. Shift the A reference anchors to every cell; keep those with x1 >= -border, y1 >= -border,
   x2 < W_im + border, y2 < H_im + border (the rest: label -1, zero targets and weights).
2. IoU (+1 convention, float64) of inside anchors against every gt box of the image.
3. Labels start at -1; unless CLOBBER_POSITIVES, label 0 where max IoU < NEGATIVE_OVERLAP.
4. For each gt its best IoU; every anchor whose IoU with some gt *equals* that gt's best is
   labelled 1 (ties included). Caveat kept from upstream: a gt whose best IoU is 0 makes every
   anchor with IoU 0 to it positive.
5. Label 1 where max IoU >= POSITIVE_OVERLAP; with CLOBBER_POSITIVES the negatives come now.
6. Keep at most int(FG_FRACTION * BATCHSIZE) positives, at random (the extras -> -1).
7. Keep at most BATCHSIZE - #positives negatives, at random.
8. Targets = bbox_transform(anchor, its best gt) for every inside anchor (not normalised).
9. Inside weights = RPN_BBOX_INSIDE_WEIGHTS for positives. Outside weights: POSITIVE_WEIGHT < 0:
   1 / #labelled for positives and negatives; else p / #pos and (1 - p) / #neg (per image).

Several images: the losses then follow Caffe's rules over the whole blob. SoftmaxWithLoss
(``normalize: true``) divides the summed log-loss by the number of labelled anchors of all
images; SmoothL1Loss divides by N, so with the per-image outside weights 1 / #labelled the box
loss is the mean over the images of each image's upstream box loss. We keep both (they are what
Caffe computes from these blobs; per-image weights keep an image with few labelled anchors from
being drowned out), and with N = 1 both are upstream's.

Randomness (steps 6-7): each image's own torch generator, keyed by (RNG_SEED, iteration,
global image index) (``frcnn.roi_data.keys``; the solver sets the position before each pass),
on the bottoms' device. Every anchor gets a random key; "k at random" is "the k with the largest
keys" (``frcnn.roi_data.sampling.keyed_take``).

No host synchronisation: on a GPU inside-ness, labels and sampling are masks over all H*W*A
anchors (the outside ones are computed and then ignored); on the CPU, where it is free, the work
is restricted to the anchors inside some image (the numbers are the same). The one host-side
check, the warning below, reads a flag copied without waiting, at the next forward on a GPU. Differences from upstream, both where
upstream crashed: no gt boxes -> every inside anchor has max IoU 0 and so is a negative (then
sampled); no anchor inside the image (#63) -> all labels -1 and a warning (the RPN losses get
no example from that image).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from frcnn.boxes.iou import box_iou
from frcnn.boxes.transform import bbox_transform
from frcnn.roi_data.device_values import device_constant
from frcnn.roi_data.keys import ANCHORS, PositionedLayer, random_keys, torch_generator
from frcnn.roi_data.sampling import keyed_take
from frcnn.rpn.layer_base import AnchorLayer, shape_channels


class AnchorTargetLayer(PositionedLayer, AnchorLayer):
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
    top_config_keys: ClassVar[dict[str, str]] = {"seed": "RNG_SEED"}

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
        seed: int = 3,
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
        self.seed = int(seed)
        self._init_position()
        self._pending_flag: tuple[torch.Tensor, Any, str] | None = None

    def top_shapes(self, bottom_shapes: list) -> None:
        """Checks the score channels against the anchors at build time (the tops' sizes are the
        feature map's, known at the first forward)."""
        self.check_channels("rpn_cls_score", shape_channels(bottom_shapes[0]), 2)

    @torch.no_grad()
    def forward(
        self,
        rpn_cls_score: torch.Tensor,
        gt_boxes: torch.Tensor,
        im_info: torch.Tensor,
        data: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        position = self._take_position()
        if rpn_cls_score.ndim != 4 or rpn_cls_score.shape[0] < 1:
            raise ValueError(
                f"AnchorTargetLayer: rpn_cls_score must be (N, 2A, H, W), got shape {tuple(rpn_cls_score.shape)}"
            )
        self.check_channels("rpn_cls_score", rpn_cls_score.shape[1], 2)
        device = rpn_cls_score.device
        num_images, _, height, width = rpn_cls_score.shape
        gt = torch.as_tensor(gt_boxes).detach().to(device)
        if gt.ndim != 2 or (gt.shape[0] > 0 and gt.shape[1] < 4):
            raise ValueError(f"AnchorTargetLayer: gt_boxes must be (G, 5), got shape {tuple(gt.shape)}")
        if num_images > 1 and gt.shape[1] < 6:
            raise ValueError(
                f"AnchorTargetLayer: a batch of {num_images} images needs gt_boxes (G, 6) with the image "
                f"index in column 5, got shape {tuple(gt.shape)}"
            )
        info = torch.as_tensor(im_info).detach().to(device)
        if info.numel() < 2 * num_images or info.numel() % num_images != 0:
            raise ValueError(
                f"AnchorTargetLayer: im_info must be ({num_images}, 3) (one row per image), "
                f"got shape {tuple(im_info.shape)}"
            )
        info = info.reshape(num_images, -1)
        self._report_pending_flag()
        A = self.num_anchors

        # 1. all anchors (H*W*A, 4) in (row, col, anchor) order; the inside ones per image (N, n)
        all_anchors = self.feature_map_anchors(height, width, device)
        n = all_anchors.shape[0]
        b = self.allowed_border
        inside = (
            (all_anchors[None, :, 0] >= -b)
            & (all_anchors[None, :, 1] >= -b)
            & (all_anchors[None, :, 2] < info[:, 1:2] + b)
            & (all_anchors[None, :, 3] < info[:, 0:1] + b)
        )
        if n > 0:
            self._flag_images_without_anchors(~inside.any(dim=1), info, b)
        fg_keys, bg_keys = self._keys(num_images, n, position, device)
        # The rows worked on: on a GPU every anchor (fixed size; the outside ones are masked); on
        # the CPU, where listing them costs no synchronisation, the anchors inside some image
        # (upstream's inds_inside). The numbers are the same either way.
        rows = inside.any(dim=0).nonzero().squeeze(1) if device.type == "cpu" else None
        if rows is not None:
            all_anchors, inside = all_anchors[rows], inside[:, rows]
            fg_keys, bg_keys = fg_keys[:, rows], bg_keys[:, rows]
        anchors = all_anchors
        r = anchors.shape[0]

        # 2.-5. labels
        labels = torch.full((num_images, r), -1.0, dtype=torch.float32, device=device)
        num_gt = gt.shape[0]
        if num_gt > 0 and r > 0:
            overlaps = box_iou(anchors, gt[:, :4].to(torch.float64))  # (r, G) float64
            if num_images == 1 and gt.shape[1] < 6:
                gt_image = torch.zeros((num_gt,), dtype=torch.long, device=device)
            else:
                gt_image = gt[:, 5].long()
            mine = gt_image[None, :] == torch.arange(num_images, device=device)[:, None]  # (N, G)
            pair = mine[:, None, :] & inside[:, :, None]  # (N, r, G): counted anchor-gt pairs
            ov = torch.where(pair, overlaps[None], torch.full((), -1.0, dtype=torch.float64, device=device))
            max_overlaps, argmax_overlaps = ov.max(dim=2)  # (N, r); ties: the first gt
            max_overlaps = max_overlaps.clamp_min(0.0)
            gt_max_overlaps = ov.max(dim=1).values  # (N, G): each gt's best over inside anchors
            # a gt with no inside anchor (best -1) must match nothing, not the masked -1 entries
            gt_max_overlaps = torch.where(gt_max_overlaps < 0, torch.full((), -2.0, dtype=torch.float64,
                                                                          device=device), gt_max_overlaps)
            is_gt_best = (ov == gt_max_overlaps[:, None, :]).any(dim=2)
            has_gt = mine.any(dim=1)  # (N,)
        else:
            argmax_overlaps = torch.zeros((num_images, r), dtype=torch.long, device=device)
            max_overlaps = torch.zeros((num_images, r), dtype=torch.float64, device=device)
            is_gt_best = torch.zeros((num_images, r), dtype=torch.bool, device=device)
            has_gt = torch.zeros((num_images,), dtype=torch.bool, device=device)
        one = torch.ones((), dtype=torch.float32, device=device)
        zero = torch.zeros((), dtype=torch.float32, device=device)
        if not self.clobber_positives:
            labels = torch.where(inside & (max_overlaps < self.negative_overlap), zero, labels)
        labels = torch.where(inside & (is_gt_best | (max_overlaps >= self.positive_overlap)), one, labels)
        if self.clobber_positives:
            labels = torch.where(inside & (max_overlaps < self.negative_overlap), zero, labels)

        # 6.-7. subsample positives, then negatives, by each image's random keys
        fg = labels == 1
        kept_fg = keyed_take(fg, fg_keys, self.num_fg)
        bg = labels == 0
        kept_bg = keyed_take(bg, bg_keys, self.batch_size - kept_fg.sum(dim=1), bound=self.batch_size)
        minus_one = torch.full((), -1.0, dtype=torch.float32, device=device)
        labels = torch.where((fg & ~kept_fg) | (bg & ~kept_bg), minus_one, labels)

        # 8. targets for every inside anchor of an image with gt boxes (float64 arithmetic, float32 top)
        if num_gt > 0 and r > 0:
            assigned = gt[:, :4].to(torch.float64)[argmax_overlaps.reshape(-1)]
            targets = bbox_transform(anchors.repeat(num_images, 1), assigned).float().reshape(num_images, r, 4)
            targets = torch.where((inside & has_gt[:, None])[:, :, None], targets, zero)
        else:
            targets = torch.zeros((num_images, r, 4), dtype=torch.float32, device=device)

        # 9. inside and outside weights (per image)
        pos = (labels == 1)[:, :, None]
        neg = (labels == 0)[:, :, None]
        inside_w = device_constant(self.inside_weights, torch.float32, device)
        inside_weights = torch.where(pos, inside_w, zero)
        if self.positive_weight < 0:
            num_examples = (labels >= 0).sum(dim=1).to(torch.float32)[:, None, None]
            pos_w = neg_w = 1.0 / num_examples
        else:
            pos_w = self.positive_weight / pos.sum(dim=1, keepdim=True).to(torch.float32)
            neg_w = (1.0 - self.positive_weight) / neg.sum(dim=1, keepdim=True).to(torch.float32)
        outside_weights = torch.where(pos, pos_w, torch.where(neg, neg_w, zero)).expand(num_images, r, 4)

        def unmap(x: torch.Tensor, fill: float) -> torch.Tensor:
            """(N, r, ...) on the rows worked on -> (N, n, ...) over every anchor."""
            if rows is None:
                return x
            out = torch.full((num_images, n, *x.shape[2:]), fill, dtype=x.dtype, device=device)
            out[:, rows] = x
            return out

        # (N, H*W*A) -> (N, H, W, A) -> (N, A, H, W) -> (N, 1, A*H, W)
        rpn_labels = unmap(labels, -1.0).reshape(num_images, height, width, A).permute(0, 3, 1, 2)
        rpn_labels = rpn_labels.reshape(num_images, 1, A * height, width)

        def to_map(x: torch.Tensor) -> torch.Tensor:
            # (N, H*W*A, 4) -> (N, H, W, 4A) -> (N, 4A, H, W)
            return unmap(x, 0.0).reshape(num_images, height, width, A * 4).permute(0, 3, 1, 2).contiguous()

        return rpn_labels, to_map(targets), to_map(inside_weights), to_map(outside_weights)

    def _keys(self, num_images: int, n: int, position: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's fg and bg keys (N, n), from its own generator."""
        fg, bg = [], []
        for i in range(num_images):
            g = torch_generator(self.seed, ANCHORS, position.iteration, position.image_index(i, num_images), device)
            fg.append(random_keys(n, g, device))
            bg.append(random_keys(n, g, device))
        return torch.stack(fg), torch.stack(bg)

    # ---------------------------------------------------------------- the no-anchor-inside warning
    def _flag_images_without_anchors(self, none_inside: torch.Tensor, info: torch.Tensor, border: float) -> None:
        """Warn about images with no anchor inside. On the CPU at once; on a GPU the flag (and the
        sizes) are copied to the host without waiting and looked at by the next forward."""
        flag = torch.cat((none_inside.to(info.dtype)[:, None], info[:, :2]), dim=1)
        where = f"allowed_border {border:g}"
        if flag.device.type == "cpu":
            self._warn(flag, where)
            return
        host = torch.empty(flag.shape, dtype=flag.dtype, pin_memory=True)
        host.copy_(flag, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(flag.device))  # the copy's stream, not device 0's
        self._pending_flag = (host, event, where)

    def _report_pending_flag(self) -> None:
        if self._pending_flag is not None and self._pending_flag[1].query():
            host, _event, where = self._pending_flag
            self._pending_flag = None
            self._warn(host, where)

    @staticmethod
    def _warn(flag: torch.Tensor, where: str) -> None:
        for none_inside, h, w in flag.tolist():
            if none_inside:
                warnings.warn(
                    f"AnchorTargetLayer: no anchor lies inside the {int(h)}x{int(w)} image ({where}); every "
                    "anchor is labelled -1, so this image adds no RPN example",
                    RuntimeWarning,
                    stacklevel=3,
                )
