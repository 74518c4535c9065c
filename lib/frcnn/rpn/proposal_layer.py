"""ProposalLayer: turn RPN scores and deltas into object proposals (upstream's rules, on device).

Bottoms: ``rpn_cls_prob_reshape`` (1, 2A, H, W: A background then A foreground channels),
``rpn_bbox_pred`` (1, 4A, H, W, channel 4a + k), ``im_info`` (1, 3: height, width, scale).
Tops (float32, on the bottoms' device): ``rois`` (N, 5) = (0, x1, y1, x2, y2); optional
``scores`` (N, 1). N <= post_nms_top_n; no padding.

1. Foreground scores (channels A..2A-1) and deltas, both rearranged to (h, w, a) order.
2. Decode every shifted anchor with bbox_transform_inv (no -1 on x2/y2, as upstream).
3. Clip to [0, W_im - 1] x [0, H_im - 1].
4. Keep boxes with (x2 - x1 + 1) >= min_size * im_scale and likewise the height.
5. Sort by score, descending (stable: equal scores keep the lower (h, w, a) index first;
   upstream's reversed quicksort left that order unspecified); keep the first pre_nms_top_n if > 0.
6. NMS at nms_thresh (``frcnn.ops.nms``: suppress IoU > thresh, +1 convention).
7. Keep the first post_nms_top_n if > 0.

The phase picks the config: TRAIN.RPN_* or TEST.RPN_* (PRE/POST_NMS_TOP_N, NMS_THRESH, MIN_SIZE).
Nothing here leaves the device; the layer has no backward (no gradient flows to its bottoms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from frcnn.boxes.transform import bbox_transform_inv, clip_boxes
from frcnn.ops.nms import nms as _nms
from frcnn.rpn.layer_base import AnchorLayer


class ProposalLayer(AnchorLayer):
    """Decode, clip, filter, sort and NMS the RPN's anchors into (N, 5) RoIs."""

    top_names = ("rois", "scores")
    phase_config = True
    config_keys: ClassVar[dict[str, str]] = {  # constructor argument <- cfg.TRAIN or cfg.TEST key
        "pre_nms_top_n": "RPN_PRE_NMS_TOP_N",
        "post_nms_top_n": "RPN_POST_NMS_TOP_N",
        "nms_thresh": "RPN_NMS_THRESH",
        "min_size": "RPN_MIN_SIZE",
    }

    def __init__(
        self,
        feat_stride: int = 16,
        scales: Sequence[float] = (8, 16, 32),
        ratios: Sequence[float] = (0.5, 1, 2),
        pre_nms_top_n: int = 6000,
        post_nms_top_n: int = 300,
        nms_thresh: float = 0.7,
        min_size: float = 16,
    ) -> None:
        super().__init__(feat_stride, scales, ratios)
        self.pre_nms_top_n = int(pre_nms_top_n)
        self.post_nms_top_n = int(post_nms_top_n)
        self.nms_thresh = float(nms_thresh)
        self.min_size = float(min_size)

    @torch.no_grad()
    def forward(
        self, rpn_cls_prob_reshape: torch.Tensor, rpn_bbox_pred: torch.Tensor, im_info: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        A = self.num_anchors
        prob, deltas = rpn_cls_prob_reshape.detach(), rpn_bbox_pred.detach()
        if deltas.dtype not in (torch.float32, torch.float64):  # half precision: decode in float32
            prob, deltas = prob.float(), deltas.float()
        if prob.ndim != 4 or prob.shape[0] != 1 or prob.shape[1] != 2 * A:
            raise ValueError(
                f"ProposalLayer: rpn_cls_prob_reshape must be (1, {2 * A}, H, W) (one image, {A} anchors), "
                f"got shape {tuple(prob.shape)}"
            )
        height, width = prob.shape[-2:]
        if tuple(deltas.shape) != (1, 4 * A, height, width):
            raise ValueError(
                f"ProposalLayer: rpn_bbox_pred must be (1, {4 * A}, {height}, {width}), got {tuple(deltas.shape)}"
            )
        device = prob.device
        info = torch.as_tensor(im_info).detach().to(device).reshape(-1)
        if info.numel() < 3:
            raise ValueError(f"ProposalLayer: im_info must be (1, 3), got shape {tuple(im_info.shape)}")

        # 1. (1, A, H, W) -> (1, H, W, A) -> (H*W*A,); (1, 4A, H, W) -> (1, H, W, 4A) -> (H*W*A, 4)
        scores = prob[:, A:, :, :].permute(0, 2, 3, 1).reshape(-1)
        deltas = deltas.permute(0, 2, 3, 1).reshape(-1, 4)
        anchors = self.feature_map_anchors(height, width, device)

        # 2.-3. decode in the deltas' dtype, clip to the resized image
        proposals = clip_boxes(bbox_transform_inv(anchors, deltas), info[:2])

        # 4. drop boxes smaller than min_size (original-image pixels) scaled by the image scale
        min_size = self.min_size * info[2].to(proposals.dtype)
        ws = proposals[:, 2] - proposals[:, 0] + 1
        hs = proposals[:, 3] - proposals[:, 1] + 1
        keep = ((ws >= min_size) & (hs >= min_size)).nonzero().squeeze(1)
        proposals = proposals[keep].float()
        scores = scores[keep].float()

        # 5. sort by score, descending, and cap before NMS
        order = torch.sort(scores, descending=True, stable=True).indices
        if self.pre_nms_top_n > 0:
            order = order[: self.pre_nms_top_n]
        proposals, scores = proposals[order], scores[order]

        # 6.-7. NMS, then cap after it
        keep = _nms(proposals, scores, self.nms_thresh)
        if self.post_nms_top_n > 0:
            keep = keep[: self.post_nms_top_n]
        proposals, scores = proposals[keep], scores[keep]

        # 8. rois (N, 5) with batch index 0; scores (N, 1)
        batch = torch.zeros((proposals.shape[0], 1), dtype=torch.float32, device=device)
        return torch.cat((batch, proposals), dim=1), scores[:, None]
