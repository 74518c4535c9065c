"""Test a Fast R-CNN / Faster R-CNN net on an imdb (upstream's ``lib/fast_rcnn/test.py``).

``im_detect`` follows upstream step by step:

1. image pyramid over ``TEST.SCALES`` (mean subtracted, then resized);
2. Fast R-CNN path: proposals projected to the pyramid level whose scaled area is closest
   to 224x224, duplicates (after rounding by ``DEDUP_BOXES``) run once;
   RPN path: ``im_info = [[H, W, scale]]`` and the net's own ``rois`` divided by the scale;
3. scores from ``cls_prob`` (``cls_score`` with ``TEST.SVM``);
4. boxes decoded from ``bbox_pred`` (already un-normalised in the saved weights) and
   clipped to the image, or the proposals repeated K times without ``TEST.BBOX_REG``.

``test_net`` feeds a Fast R-CNN net the first ``TEST.PROPOSAL_TOP_N`` proposals of each
image (all when <= 0) and keeps, per class, detections scoring ``> thresh`` (0.05), applies NMS at
``TEST.NMS``, limits each image to ``max_per_image`` detections (ties at the limit kept),
saves ``detections.npz``, evaluates through ``imdb.evaluate_detections`` (with the AP of
``TEST.VOC_METRIC``) and ends with :func:`frcnn.inference.pictures.test_pictures`
(precision-recall curves, a few test images drawn). Under torchrun each rank detects images
``rank, rank + R, ...`` and rank 0 gathers them, then saves, evaluates and draws
alone (the same file and mAP as one process; the other ranks return None).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from frcnn.boxes.transform import bbox_transform_inv, clip_boxes
from frcnn.caffe.host_memory import keep_freed_memory
from frcnn.datasets.proposals import proposal_boxes
from frcnn.datasets.voc_metric import apply_voc_metric
from frcnn.inference.detections import empty_all_boxes, save_detections
from frcnn.inference.on_device import decode_boxes, detections_on_device
from frcnn.utils import distributed
from frcnn.utils.blob import im_list_to_blob, prep_im_for_blob, read_image
from frcnn.utils.timer import Timer

DEDUP_WEIGHTS = np.array([1, 1e3, 1e6, 1e9, 1e12])


def get_image_blob(im: np.ndarray, scales, max_size: int, pixel_means) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, H, W) float32 blob of the pyramid and the scale of each level."""
    processed, im_scales = [], []
    for target in scales:
        im_resized, im_scale = prep_im_for_blob(im, pixel_means, target, max_size)
        processed.append(im_resized)
        im_scales.append(im_scale)
    return im_list_to_blob(processed), np.array(im_scales)


def project_im_rois(im_rois: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled RoIs and the pyramid level of each (the one whose area is closest to 224**2)."""
    im_rois = im_rois.astype(np.float64, copy=False)
    if len(scales) > 1:
        widths = im_rois[:, 2] - im_rois[:, 0] + 1
        heights = im_rois[:, 3] - im_rois[:, 1] + 1
        areas = widths * heights
        scaled_areas = areas[:, np.newaxis] * (scales[np.newaxis, :] ** 2)
        levels = np.abs(scaled_areas - 224 * 224).argmin(axis=1)[:, np.newaxis]
    else:
        levels = np.zeros((im_rois.shape[0], 1), dtype=np.int64)
    return im_rois * scales[levels], levels


def get_rois_blob(im_rois: np.ndarray, im_scale_factors: np.ndarray) -> np.ndarray:
    """(R, 5) ``[level, x1, y1, x2, y2]`` in pyramid coordinates."""
    rois, levels = project_im_rois(im_rois, im_scale_factors)
    return np.hstack((levels, rois)).astype(np.float32, copy=False)


def _net_device(net: Any) -> torch.device:
    """The device of an engine net (where its inputs go)."""
    return torch.device(net.device)


def _numpy(x: torch.Tensor) -> np.ndarray:
    """A blob or net output as a float32 host array."""
    return x.detach().float().cpu().numpy()


def im_detect(
    net: Any,
    im: np.ndarray,
    boxes: np.ndarray | None = None,
    *,
    cfg: Any,
    timers: dict[str, Timer] | None = None,
    on_device: bool = False,
) -> tuple[Any, Any]:
    """Detect object classes in a BGR image.

    Returns ``scores`` (R, K) and ``boxes`` (R, 4K) in original-image pixels. ``boxes`` are
    the proposals (R, 4) for a Fast R-CNN net; None for a net with an RPN
    (``cfg.TEST.HAS_RPN``). ``cfg`` is the run's config (upstream read a global one), a
    required keyword. ``timers``, if given, gets ``preprocess``, ``forward`` and
    ``postprocess`` entries. With ``on_device`` the two are float32 tensors left on the net's
    device (decoded by :func:`frcnn.inference.on_device.decode_boxes`, the same numbers);
    otherwise NumPy arrays, as upstream.
    """
    timers = timers if timers is not None else {}
    for name in ("preprocess", "forward", "postprocess"):
        timers.setdefault(name, Timer())
    device = _net_device(net)
    has_rpn = bool(cfg.TEST.HAS_RPN)
    if not has_rpn and boxes is None:
        raise ValueError("im_detect: a net without an RPN (TEST.HAS_RPN False) needs proposal boxes")

    timers["preprocess"].tic()
    data, im_scales = get_image_blob(im, cfg.TEST.SCALES, cfg.TEST.MAX_SIZE, cfg.PIXEL_MEANS)
    inputs = {"data": data}
    inv_index = None
    if has_rpn:
        if len(im_scales) != 1:
            raise ValueError(f"im_detect: an RPN net tests at one scale, TEST.SCALES is {cfg.TEST.SCALES}")
        inputs["im_info"] = np.array([[data.shape[2], data.shape[3], im_scales[0]]], dtype=np.float32)
    else:
        boxes = np.asarray(boxes)
        rois = get_rois_blob(boxes, im_scales)
        if cfg.DEDUP_BOXES > 0:
            hashes = np.round(rois * cfg.DEDUP_BOXES).dot(DEDUP_WEIGHTS)
            _, index, inv_index = np.unique(hashes, return_index=True, return_inverse=True)
            rois, boxes = rois[index, :], boxes[index, :]
        inputs["rois"] = rois
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in inputs.items()}
    timers["preprocess"].toc()

    timers["forward"].tic()
    with torch.no_grad():
        out = net.forward(**tensors)
        scores_t = net.blobs["cls_score"].data if cfg.TEST.SVM else out["cls_prob"]
        deltas_t = out["bbox_pred"] if cfg.TEST.BBOX_REG else None
        rois_t = net.blobs["rois"].data if has_rpn else None
        if not on_device:
            scores = _numpy(scores_t)  # copies to the host: the forward is finished here
            deltas = _numpy(deltas_t) if deltas_t is not None else None
            if has_rpn:
                rois_out = _numpy(rois_t)
    timers["forward"].toc()

    if on_device:
        timers["postprocess"].tic()
        scores_t, pred_t = _decode_on_device(scores_t, deltas_t, rois_t, boxes, im_scales[0], im.shape, inv_index)
        timers["postprocess"].toc()
        return scores_t, pred_t

    timers["postprocess"].tic()
    if has_rpn:
        boxes = rois_out[:, 1:5] / im_scales[0]
    scores = scores.reshape(scores.shape[0], -1)
    if deltas is not None:
        deltas = deltas.reshape(deltas.shape[0], -1)
        pred_boxes = clip_boxes(bbox_transform_inv(boxes, deltas), im.shape)
    else:
        pred_boxes = np.tile(boxes, (1, scores.shape[1]))
    if inv_index is not None:
        scores, pred_boxes = scores[inv_index, :], pred_boxes[inv_index, :]
    timers["postprocess"].toc()
    return scores, pred_boxes


def _decode_on_device(scores: torch.Tensor, deltas: torch.Tensor | None, rois: torch.Tensor | None,
                      boxes: np.ndarray | None, im_scale: float, im_shape: tuple,
                      inv_index: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """im_detect's post-processing in torch on the outputs' device (``on_device``)."""
    scores = scores.detach().float()
    scores = scores.reshape(scores.shape[0], -1)
    if deltas is not None:
        deltas = deltas.detach().float()
        deltas = deltas.reshape(deltas.shape[0], -1)
    if rois is not None:  # RPN: the net's RoIs are in input pixels
        pred = decode_boxes(rois.detach()[:, 1:5], deltas, scores.shape[1], im_shape, scale=im_scale)
    else:
        pred = decode_boxes(torch.from_numpy(np.asarray(boxes, dtype=np.float64)).to(scores.device), deltas,
                            scores.shape[1], im_shape)
    if inv_index is not None:
        index = torch.from_numpy(inv_index.reshape(-1)).to(scores.device)
        scores, pred = scores[index], pred[index]
    return scores, pred


def detections_for_image(
    scores: np.ndarray, boxes: np.ndarray, nms_fn: Any, nms_thresh: float, thresh: float, max_per_image: int
) -> list[np.ndarray]:
    """Per class j >= 1: score > thresh, NMS, then a global top ``max_per_image`` (>= rule)."""
    num_classes = scores.shape[1]
    out = [np.zeros((0, 5), dtype=np.float32)]
    for j in range(1, num_classes):
        inds = np.where(scores[:, j] > thresh)[0]
        cls_dets = np.hstack((boxes[inds, j * 4 : (j + 1) * 4], scores[inds, j, np.newaxis]))
        cls_dets = cls_dets.astype(np.float32, copy=False)
        keep = nms_fn(cls_dets, nms_thresh) if len(cls_dets) else []
        out.append(cls_dets[np.asarray(keep, dtype=np.int64), :])
    if max_per_image > 0:
        image_scores = np.hstack([out[j][:, -1] for j in range(1, num_classes)])
        if len(image_scores) > max_per_image:
            image_thresh = np.sort(image_scores)[-max_per_image]
            for j in range(1, num_classes):
                out[j] = out[j][out[j][:, -1] >= image_thresh, :]
    return out


def test_net(
    net: Any,
    imdb: Any,
    cfg: Any,
    output_dir: str,
    max_per_image: int = 100,
    thresh: float = 0.05,
    vis: bool = False,
) -> Any:
    """Detect on every image of ``imdb``, save ``detections.npz`` in ``output_dir``, evaluate
    (data parallel: this rank's share; rank 0 saves and evaluates, the others return None)."""
    from frcnn.boxes.nms import nms_from_config

    nms_fn = nms_from_config(cfg)  # USE_GPU_NMS: the configured GPU, else the CPU
    on_device = bool(cfg.TEST.DEVICE_POSTPROCESS)  # else upstream's NumPy post-processing
    if _net_device(net).type == "cpu":  # the images reuse their host memory (frcnn.caffe.host_memory)
        keep_freed_memory()
    net = _maybe_graphed(net, cfg)
    apply_voc_metric(imdb, cfg.TEST.VOC_METRIC)  # checked before the images are run
    num_images = len(imdb.image_index)
    all_boxes = empty_all_boxes(imdb.num_classes, num_images)
    world = distributed.current()
    mine = distributed.shard(num_images, world)  # all of them for a single process
    sync = _device_sync(_net_device(net)) if on_device else None  # device work is asynchronous
    timers = {name: Timer(sync=sync) for name in ("preprocess", "forward", "postprocess")}
    t_detect, t_misc = Timer(sync=sync), Timer(sync=sync)
    roidb = None if cfg.TEST.HAS_RPN else imdb.roidb
    for count, i in enumerate(mine, 1):
        set_image_position(net, i)
        box_proposals = None
        if roidb is not None:  # the first TEST.PROPOSAL_TOP_N proposals (all when <= 0)
            box_proposals = proposal_boxes(roidb[i], cfg.TEST.PROPOSAL_TOP_N)
        im = read_image(imdb.image_path_at(i))
        t_detect.tic()
        scores, boxes = im_detect(net, im, box_proposals, cfg=cfg, timers=timers, on_device=on_device)
        t_detect.toc()
        t_misc.tic()
        if on_device:
            dets = detections_on_device(scores, boxes, cfg.TEST.NMS, thresh, max_per_image)
        else:
            dets = detections_for_image(scores, boxes, nms_fn, cfg.TEST.NMS, thresh, max_per_image)
        for j in range(1, imdb.num_classes):
            all_boxes[j][i] = dets[j]
        t_misc.toc()
        if vis:
            from frcnn.utils.draw import draw_detections

            vis_path = os.path.join(output_dir, "vis", os.path.basename(imdb.image_path_at(i)))
            draw_detections(im, dets, imdb.classes, vis_path, thresh=0.3)
        print(
            f"im_detect: {count:d}/{len(mine):d} {t_detect.average_time:.3f}s {t_misc.average_time:.3f}s "
            f"(preprocess {timers['preprocess'].average_time * 1e3:.1f} ms, "
            f"forward {timers['forward'].average_time * 1e3:.1f} ms, "
            f"postprocess {(timers['postprocess'].average_time + t_misc.average_time) * 1e3:.1f} ms)",
            flush=True,
        )
    if world.distributed:  # rank 0 gathers every rank's images, then saves and evaluates alone
        all_boxes = gather_detections(all_boxes, mine)
        if all_boxes is None:
            return None
    det_file = os.path.join(output_dir, "detections.npz")
    save_detections(det_file, all_boxes, imdb.classes)
    print(f"Wrote detections to {det_file}")
    print("Evaluating detections")
    return evaluate_and_draw(imdb, all_boxes, output_dir)


def evaluate_and_draw(imdb: Any, all_boxes: list, output_dir: str) -> Any:
    """``imdb.evaluate_detections``, then the test's pictures (PR curves, drawn examples)."""
    from frcnn.inference.pictures import test_pictures

    result = imdb.evaluate_detections(all_boxes, output_dir)
    test_pictures(imdb, all_boxes, result, output_dir)
    return result


def set_image_position(net: Any, image: int) -> None:
    """Tell the layers that key random draws by position (``TEST.RPN_ABLATION`` no_cls) that
    the next pass is image ``image`` of the imdb: its draws then do not depend on which rank,
    or which pass of a process, detects it (a single process counting passes gives the same)."""
    for layer in getattr(net, "layers", ()):
        set_position = getattr(layer, "set_batch_position", None)
        if callable(set_position):
            set_position(int(image))


def gather_detections(all_boxes: list, mine: range) -> list | None:
    """Data parallel: every rank's detections of its images (``mine``) into one ``all_boxes``
    on rank 0 (None on the others)."""
    num_classes = len(all_boxes)
    arrays = {f"{i}/{j}": np.asarray(all_boxes[j][i], dtype=np.float32).reshape(-1, 5)
              for i in mine for j in range(1, num_classes)}
    parts = distributed.gather_arrays(arrays)
    if parts is None:
        return None
    for part in parts:
        for key, dets in part.items():
            i, j = (int(v) for v in key.split("/"))
            all_boxes[j][i] = dets
    return all_boxes


def _device_sync(device: torch.device) -> Any:
    """A synchronisation of ``device`` for timers (None on the CPU, where work is synchronous)."""
    if device.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(device)


def _maybe_graphed(net: Any, cfg: Any) -> Any:
    """The net, or with ``TEST.CUDA_GRAPH`` its trunk and RPN head replayed from a CUDA graph."""
    if not cfg.TEST.CUDA_GRAPH:
        return net
    from frcnn.inference.cuda_graph import graphed_net

    return graphed_net(net)


def apply_nms(all_boxes: list, thresh: float, nms_fn: Any = None) -> list:
    """Re-apply NMS to every class/image slot with ``nms_fn(dets, thresh)``; by default on
    the CPU, as upstream (tools pass ``frcnn.boxes.nms_from_config(cfg)``)."""
    if nms_fn is None:
        from frcnn.boxes.nms import nms_dets

        def nms_fn(dets: np.ndarray, t: float) -> np.ndarray:
            return nms_dets(dets, t, force_cpu=True)

    out = [[np.zeros((0, 5), dtype=np.float32) for _ in per_class] for per_class in all_boxes]
    for j, per_class in enumerate(all_boxes):
        for i, dets in enumerate(per_class):
            dets = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
            if len(dets) == 0:
                continue
            keep = nms_fn(dets, thresh)
            out[j][i] = dets[np.asarray(keep, dtype=np.int64), :].copy()
    return out

