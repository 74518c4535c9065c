"""Minibatches from roidb entries (upstream's ``lib/roi_data_layer/minibatch.py``).

Split in two so that a data layer can decide every random draw in its own process and
load images anywhere: ``plan_minibatch`` draws the scale of each image and (Fast R-CNN
path) the sampled RoIs, consuming one RNG exactly as upstream's ``get_minibatch`` did, or
each image's own generator (the data layer's keyed draws, ``frcnn.roi_data.keys``);
``build_minibatch`` reads and scales the images and assembles the blobs.

Fast R-CNN RoI sampling, per image (``rois_per_image = BATCH_SIZE / IMS_PER_BATCH``,
``fg_per_image = round(FG_FRACTION * rois_per_image)``):
1. fg: rows with max overlap >= FG_THRESH, up to fg_per_image, without replacement;
2. bg: rows with max overlap in [BG_THRESH_LO, BG_THRESH_HI), up to the rest;
3. labels = max_classes, bg set to 0; RoIs scaled by the image scale, batch index first;
4. targets expanded to 4K columns (class c -> columns 4c..4c+3), inside weights there,
   outside weights = (inside > 0).
Steps 1-2 are ``frcnn.roi_data.sampling`` (drawing with ``rng.choice``) and step 4 is
``frcnn.roi_data.class_targets``, shared with the end2end proposal target layer.
RPN path: the images zero-padded into one blob (as the Fast R-CNN path); ``im_info`` (N, 3)
= each image's own (H, W, scale) after scaling (for one image, the blob's size); ``gt_boxes``
= scaled boxes + class of rows with ``gt_classes != 0``, (G, 5) for one image (upstream's
blob) and (G, 6) for several, column 5 being the image's index in the batch. A gt class
outside the net's ``num_classes`` is an error here, on the host, so that the RPN layers need
not look at the class ids on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frcnn.roi_data.class_targets import expand_bbox_targets
from frcnn.roi_data.sampling import fg_rois_per_image, numpy_choice, sample_fg_bg
from frcnn.utils.blob import im_list_to_blob, prep_im_for_blob, read_image


@dataclass(frozen=True)
class MinibatchConfig:
    """The plain values minibatch building needs (``from_config`` reads them from a config)."""

    num_classes: int
    scales: tuple[int, ...] = (600,)
    max_size: int = 1000
    pixel_means: tuple[float, float, float] = (102.9801, 115.9465, 122.7717)
    batch_size: int = 128
    fg_fraction: float = 0.25
    fg_thresh: float = 0.5
    bg_thresh_hi: float = 0.5
    bg_thresh_lo: float = 0.1
    bbox_reg: bool = True
    bbox_inside_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    has_rpn: bool = False

    @classmethod
    def from_config(cls, cfg: Any, num_classes: int) -> MinibatchConfig:
        t = cfg.TRAIN
        return cls(
            num_classes=int(num_classes),
            scales=tuple(int(s) for s in t.SCALES),
            max_size=int(t.MAX_SIZE),
            pixel_means=tuple(float(x) for x in np.asarray(cfg.PIXEL_MEANS).ravel()),
            batch_size=int(t.BATCH_SIZE),
            fg_fraction=float(t.FG_FRACTION),
            fg_thresh=float(t.FG_THRESH),
            bg_thresh_hi=float(t.BG_THRESH_HI),
            bg_thresh_lo=float(t.BG_THRESH_LO),
            bbox_reg=bool(t.BBOX_REG),
            bbox_inside_weights=tuple(float(x) for x in t.BBOX_INSIDE_WEIGHTS),
            has_rpn=bool(t.HAS_RPN),
        )


@dataclass
class MinibatchPlan:
    """Every random decision of one minibatch."""

    scale_inds: np.ndarray  # (num_images,) index into scales
    keep_inds: list[np.ndarray] = field(default_factory=list)  # per image: fg rows then bg rows
    fg_counts: list[int] = field(default_factory=list)  # per image: how many of keep_inds are fg


def plan_minibatch(roidb: Sequence[dict], conf: MinibatchConfig, rng: Any = None) -> MinibatchPlan:
    """Draw the random choices of a minibatch of ``roidb``.

    ``rng``: one RNG for the batch (default: numpy's global RNG), used as upstream did: the
    scales of all images, then each image's RoIs; or a list of one ``np.random.Generator`` per
    image (the data layer's keyed draws), each giving its image's scale, then its RoIs."""
    num_images = len(roidb)
    per_image = isinstance(rng, (list, tuple))
    if per_image:
        if len(rng) != num_images:
            raise ValueError(f"minibatch: {len(rng)} generators for {num_images} images")
        scale_inds = [int(g.integers(len(conf.scales))) for g in rng]
    else:
        rng = np.random if rng is None else rng
        # sample random scales to use for each image in this batch
        scale_inds = rng.randint(0, high=len(conf.scales), size=num_images)
    plan = MinibatchPlan(scale_inds=np.asarray(scale_inds, dtype=np.int64))
    if conf.has_rpn:
        return plan
    if conf.batch_size % num_images != 0:
        raise ValueError(f"minibatch: num_images ({num_images}) must divide BATCH_SIZE ({conf.batch_size})")
    rois_per_image = conf.batch_size // num_images
    fg_quota = fg_rois_per_image(conf.fg_fraction, rois_per_image)
    shared = None if per_image else numpy_choice(rng)
    for im_i, entry in enumerate(roidb):
        choose = numpy_choice(rng[im_i]) if per_image else shared
        keep, nfg = sample_fg_bg(
            entry["max_overlaps"], fg_quota, rois_per_image, conf.fg_thresh, conf.bg_thresh_hi,
            conf.bg_thresh_lo, choose,
        )
        plan.keep_inds.append(keep)
        plan.fg_counts.append(nfg)
    return plan


def get_image_blob(
    roidb: Sequence[dict], scale_inds: np.ndarray, conf: MinibatchConfig
) -> tuple[np.ndarray, list[float]]:
    """The (N, 3, H, W) blob of the images of ``roidb`` at the chosen scales, and their scales."""
    processed_ims, im_scales = prepare_images(roidb, scale_inds, conf)
    return im_list_to_blob(processed_ims), im_scales


def prepare_images(
    roidb: Sequence[dict], scale_inds: np.ndarray, conf: MinibatchConfig
) -> tuple[list[np.ndarray], list[float]]:
    """Each image of ``roidb`` read, flipped if so marked, mean-subtracted and scaled; and the scales."""
    processed_ims, im_scales = [], []
    for entry, si in zip(roidb, scale_inds):
        im = read_image(entry["image"])
        if "width" in entry and (im.shape[1], im.shape[0]) != (entry["width"], entry["height"]):
            raise ValueError(
                f"{entry['image']}: image is {im.shape[1]}x{im.shape[0]} but the roidb says "
                f"{entry['width']}x{entry['height']} (image changed? delete the dataset cache)"
            )
        if entry["flipped"]:
            im = im[:, ::-1, :]
        im, im_scale = prep_im_for_blob(im, np.array(conf.pixel_means), conf.scales[int(si)], conf.max_size)
        im_scales.append(im_scale)
        processed_ims.append(im)
    return processed_ims, im_scales


def rpn_gt_boxes(roidb: Sequence[dict], im_scales: Sequence[float], num_classes: int) -> np.ndarray:
    """The RPN path's gt blob: (G, 5) for one image, (G, 6) with the image index for several."""
    cols = 5 if len(roidb) == 1 else 6
    parts = []
    for im_i, (entry, scale) in enumerate(zip(roidb, im_scales)):
        gt_inds = np.where(entry["gt_classes"] != 0)[0]
        gt_boxes = np.empty((len(gt_inds), cols), dtype=np.float32)
        gt_boxes[:, 0:4] = entry["boxes"][gt_inds, :].astype(np.float64) * scale
        gt_boxes[:, 4] = entry["gt_classes"][gt_inds]
        if cols == 6:
            gt_boxes[:, 5] = im_i
        bad = (gt_boxes[:, 4] < 1) | (gt_boxes[:, 4] >= num_classes)
        if bad.any():
            raise ValueError(
                f"{entry.get('image')}: gt class {int(gt_boxes[bad, 4][0])} is outside the net's classes "
                f"1..{num_classes - 1} (num_classes {num_classes} in the data layer's param_str: a net for "
                "another dataset?)"
            )
        parts.append(gt_boxes)
    return np.concatenate(parts, axis=0)


def build_minibatch(
    roidb: Sequence[dict], plan: MinibatchPlan, conf: MinibatchConfig
) -> dict[str, np.ndarray]:
    """The blobs of a planned minibatch (float32 arrays)."""
    ims, im_scales = prepare_images(roidb, plan.scale_inds, conf)
    im_blob = im_list_to_blob(ims)
    blobs = {"data": im_blob}
    if conf.has_rpn:
        blobs["gt_boxes"] = rpn_gt_boxes(roidb, im_scales, conf.num_classes)
        # each image's own size (for one image, the blob's): clipping and the anchors' border use it
        blobs["im_info"] = np.array([[im.shape[0], im.shape[1], s] for im, s in zip(ims, im_scales)], dtype=np.float32)
        return blobs

    k = conf.num_classes
    rois_l, labels_l, targets_l, inside_l = [], [], [], []
    for im_i, entry in enumerate(roidb):
        keep, nfg = plan.keep_inds[im_i], plan.fg_counts[im_i]
        labels = np.asarray(entry["max_classes"])[keep].astype(np.float32)
        labels[nfg:] = 0  # clamp labels for the background RoIs to 0
        rois = entry["boxes"][keep, :].astype(np.float64) * im_scales[im_i]
        batch_ind = im_i * np.ones((rois.shape[0], 1))
        rois_l.append(np.hstack((batch_ind, rois)))
        labels_l.append(labels)
        if conf.bbox_reg:
            if "bbox_targets" not in entry:
                raise ValueError(
                    f"{entry.get('image')}: roidb entry lacks bbox_targets "
                    "(call add_bbox_regression_targets before training with BBOX_REG)"
                )
            rows = entry["bbox_targets"][keep, :]  # (R, 5): class, tx, ty, tw, th
            t, w = expand_bbox_targets(
                rows[:, 0], rows[:, 1:], k, conf.bbox_inside_weights, f"{entry.get('image')}: bbox_targets"
            )
            targets_l.append(t)
            inside_l.append(w)
    blobs["rois"] = np.vstack(rois_l).astype(np.float32)
    blobs["labels"] = np.hstack(labels_l).astype(np.float32)
    if conf.bbox_reg:
        blobs["bbox_targets"] = np.vstack(targets_l)
        blobs["bbox_inside_weights"] = np.vstack(inside_l)
        blobs["bbox_outside_weights"] = (blobs["bbox_inside_weights"] > 0).astype(np.float32)
    return blobs


def get_minibatch(
    roidb: Sequence[dict], conf: MinibatchConfig, rng: Any | None = None
) -> dict[str, np.ndarray]:
    """Upstream's ``get_minibatch``: plan with ``rng`` (default numpy's global RNG), then build."""
    return build_minibatch(roidb, plan_minibatch(roidb, conf, rng), conf)
