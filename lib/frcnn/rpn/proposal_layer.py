"""ProposalLayer: turn RPN scores and deltas into object proposals (upstream's rules, on device).

Bottoms: ``rpn_cls_prob_reshape`` (N, 2A, H, W: A background then A foreground channels),
``rpn_bbox_pred`` (N, 4A, H, W, channel 4a + k), ``im_info`` (N, 3: height, width, scale of
each image). Tops (float32, on the bottoms' device): ``rois`` (R, 5) = (image, x1, y1, x2, y2);
optional ``scores`` (R, 1). Each image gives at most post_nms_top_n rows; images follow each
other in batch order (upstream took one image; with one image every number is as before).

Per image:
1. Foreground scores (channels A..2A-1) and deltas, both rearranged to (h, w, a) order.
2. Decode every shifted anchor with bbox_transform_inv (no -1 on x2/y2, as upstream).
3. Clip to [0, W_im - 1] x [0, H_im - 1] (the image's own size, not the padded blob's).
4. Keep boxes with (x2 - x1 + 1) >= min_size * im_scale and likewise the height.
5. Sort by score, descending (stable: equal scores keep the lower (h, w, a) index first;
   upstream's reversed quicksort left that order unspecified); keep the first pre_nms_top_n if > 0.
6. NMS at nms_thresh (``frcnn.ops.nms``: suppress IoU > thresh, +1 convention).
7. Keep the first post_nms_top_n if > 0.

The phase picks the config: TRAIN.RPN_* or TEST.RPN_* (PRE/POST_NMS_TOP_N, NMS_THRESH, MIN_SIZE).

Test-time ablations (TEST.RPN_ABLATION, the paper's Table 2, lower half; TEST phase only):

- ``no_nms``: step 6 is skipped: the first post_nms_top_n boxes by score (after the
  pre_nms_top_n cap, as set).
- ``no_cls``: the scores choose nothing: post_nms_top_n boxes (all, if <= 0) drawn at random
  without replacement from the decoded, clipped boxes that pass step 4 (no pre-NMS cap, which is
  a score ranking; no NMS), in draw order. The draw is seeded from RNG_SEED and the image's place
  in the sequence of forward passes (``frcnn.roi_data.keys``: pass k of the net draws with key
  (RNG_SEED, k, image)), so the same images in the same order give the same proposals. The
  ``scores`` top still carries the RPN's scores of the drawn boxes.
- ``no_reg``: step 2 is skipped: the proposals are the anchor boxes themselves (the paper:
  "the proposals are the anchor boxes"), then steps 3-7 as usual. The RPN's scores still rank
  them and NMS still runs, since the paper removes only the regression layer; anchors are
  clipped like decoded boxes, so an anchor reaching past the border becomes its visible part.

Host synchronisation: none except where the output size is data-dependent: the NMS op returns
its kept indices (their count is known only after the kernel ran), and dropping the boxes that
failed step 4 from that list fixes the final count. Step 4 is a mask (failing boxes get a score
below every real one, so they sort last and cannot suppress a real box). No backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from frcnn.boxes.transform import bbox_transform_inv, clip_boxes
from frcnn.ops.nms import nms as _nms
from frcnn.roi_data.keys import NO_CLS, BatchPosition, PositionedLayer, random_keys, torch_generator
from frcnn.rpn.layer_base import AnchorLayer, shape_channels

ABLATIONS = ("none", "no_nms", "no_cls", "no_reg")


class ProposalLayer(PositionedLayer, AnchorLayer):
    """Decode, clip, filter, sort and NMS the RPN's anchors into (R, 5) RoIs."""

    top_names = ("rois", "scores")
    phase_config = True
    config_keys: ClassVar[dict[str, str]] = {  # constructor argument <- cfg.TRAIN or cfg.TEST key
        "pre_nms_top_n": "RPN_PRE_NMS_TOP_N",
        "post_nms_top_n": "RPN_POST_NMS_TOP_N",
        "nms_thresh": "RPN_NMS_THRESH",
        "min_size": "RPN_MIN_SIZE",
    }
    top_config_keys: ClassVar[dict[str, str]] = {"seed": "RNG_SEED"}

    def __init__(
        self,
        feat_stride: int = 16,
        scales: Sequence[float] = (8, 16, 32),
        ratios: Sequence[float] = (0.5, 1, 2),
        pre_nms_top_n: int = 6000,
        post_nms_top_n: int = 300,
        nms_thresh: float = 0.7,
        min_size: float = 16,
        ablation: str = "none",
        seed: int = 3,
    ) -> None:
        super().__init__(feat_stride, scales, ratios)
        if ablation not in ABLATIONS:
            raise ValueError(f"ProposalLayer: TEST.RPN_ABLATION must be one of {', '.join(ABLATIONS)}, got {ablation!r}")
        self.pre_nms_top_n = int(pre_nms_top_n)
        self.post_nms_top_n = int(post_nms_top_n)
        self.nms_thresh = float(nms_thresh)
        self.min_size = float(min_size)
        self.ablation = ablation
        self.seed = int(seed)
        self._init_position()

    @classmethod
    def from_caffe(cls, param_str: str, phase: str, cfg: Any) -> ProposalLayer:
        """As every RPN layer (``ConfiguredLayer.from_caffe``); a TEST net also takes TEST.RPN_ABLATION."""
        layer = super().from_caffe(param_str, phase, cfg)
        if str(phase).upper() == "TEST":
            ablation = str(cfg.TEST.get("RPN_ABLATION", "none"))
            if ablation not in ABLATIONS:
                raise ValueError(
                    f"ProposalLayer: TEST.RPN_ABLATION must be one of {', '.join(ABLATIONS)}, got {ablation!r}"
                )
            layer.ablation = ablation
        return layer

    def top_shapes(self, bottom_shapes: list) -> None:
        """Checks the RPN channels against the anchors at build time; the top sizes are data-dependent."""
        self.check_channels("rpn_cls_prob_reshape", shape_channels(bottom_shapes[0]), 2)
        if len(bottom_shapes) > 1:
            self.check_channels("rpn_bbox_pred", shape_channels(bottom_shapes[1]), 4)

    @torch.no_grad()
    def forward(
        self, rpn_cls_prob_reshape: torch.Tensor, rpn_bbox_pred: torch.Tensor, im_info: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        position = self._take_position()
        A = self.num_anchors
        prob, deltas = rpn_cls_prob_reshape.detach(), rpn_bbox_pred.detach()
        if deltas.dtype not in (torch.float32, torch.float64):  # half precision: decode in float32
            prob, deltas = prob.float(), deltas.float()
        if prob.ndim != 4:
            raise ValueError(
                f"ProposalLayer: rpn_cls_prob_reshape must be (N, {2 * A}, H, W) ({A} anchors), "
                f"got shape {tuple(prob.shape)}"
            )
        self.check_channels("rpn_cls_prob_reshape", prob.shape[1], 2)
        num_images, _, height, width = prob.shape
        if tuple(deltas.shape) != (num_images, 4 * A, height, width):
            raise ValueError(
                f"ProposalLayer: rpn_bbox_pred must be ({num_images}, {4 * A}, {height}, {width}), "
                f"got {tuple(deltas.shape)}"
            )
        device = prob.device
        info = torch.as_tensor(im_info).detach().to(device)
        if info.numel() < 3 * num_images or info.numel() % max(num_images, 1) != 0:
            raise ValueError(
                f"ProposalLayer: im_info must be ({num_images}, 3) (one row per image), got shape {tuple(info.shape)}"
            )
        info = info.reshape(num_images, -1)
        anchors = self.feature_map_anchors(height, width, device)
        rois, scores = [], []
        for i in range(num_images):
            boxes, s = self._image_proposals(prob[i], deltas[i], info[i], anchors, position, i, num_images)
            batch = torch.full((boxes.shape[0], 1), float(i), dtype=torch.float32, device=device)
            rois.append(torch.cat((batch, boxes), dim=1))
            scores.append(s[:, None])
        return torch.cat(rois, dim=0), torch.cat(scores, dim=0)

    def _image_proposals(
        self,
        prob: torch.Tensor,
        deltas: torch.Tensor,
        info: torch.Tensor,
        anchors: torch.Tensor,
        position: BatchPosition,
        image: int,
        num_images: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(boxes (R, 4), scores (R,)) of one image: ``prob`` (2A, H, W), ``deltas`` (4A, H, W)."""
        A = self.num_anchors
        # 1. (A, H, W) -> (H, W, A) -> (H*W*A,); (4A, H, W) -> (H, W, 4A) -> (H*W*A, 4)
        scores = prob[A:].permute(1, 2, 0).reshape(-1)
        deltas = deltas.permute(1, 2, 0).reshape(-1, 4)

        # 2.-3. decode in the deltas' dtype (no_reg: the anchors themselves), clip to the image
        boxes = anchors.to(deltas.dtype) if self.ablation == "no_reg" else bbox_transform_inv(anchors, deltas)
        boxes = clip_boxes(boxes, info[:2])

        # 4. boxes smaller than min_size (original-image pixels) scaled by the image scale fail
        min_size = self.min_size * info[2].to(boxes.dtype)
        valid = ((boxes[:, 2:4] - boxes[:, 0:2] + 1) >= min_size).all(dim=1)  # width and height
        boxes = torch.where(valid[:, None], boxes, torch.zeros((), dtype=boxes.dtype, device=boxes.device)).float()
        scores = scores.float()
        n = scores.shape[0]
        if n == 0:
            return boxes, scores

        if self.ablation == "no_cls":
            gen = torch_generator(self.seed, NO_CLS, position.iteration, position.image_index(image, num_images),
                                  scores.device)
            keys = torch.where(valid, random_keys(n, gen, scores.device), -1.0)
            k = n if self.post_nms_top_n <= 0 else min(self.post_nms_top_n, n)
            order = torch.topk(keys, k, sorted=True).indices
            order = order[valid[order]]  # data-dependent: the final count
            return boxes[order], scores[order]

        # 5. sort by score, descending (failing boxes last), and cap before NMS
        ranked = torch.where(valid, scores, scores.min() - 1)
        order = torch.sort(ranked, descending=True, stable=True).indices
        if self.pre_nms_top_n > 0:
            order = order[: self.pre_nms_top_n]
        boxes, scores, ranked, valid = boxes[order], scores[order], ranked[order], valid[order]

        # 6.-7. NMS (data-dependent: the op's kept indices), drop the failures, cap after it
        keep = torch.arange(order.shape[0], device=order.device) if self.ablation == "no_nms" else _nms(
            boxes, ranked, self.nms_thresh
        )
        keep = keep[valid[keep]]  # data-dependent: the final count
        if self.post_nms_top_n > 0:
            keep = keep[: self.post_nms_top_n]
        return boxes[keep], scores[keep]
