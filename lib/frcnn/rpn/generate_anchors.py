"""Reference anchors and their shifts over a feature map (py-faster-rcnn's rules).

1. Base box (0, 0, base_size-1, base_size-1): for base_size 16 the centre is (7.5, 7.5).
2. For each ratio r (= h / w): w = round(sqrt(area / r)), h = round(w * r), same centre
   (``np.round``: halves go to even, as upstream).
3. For each scale s: w * s, h * s, same centre. Corners are ``ctr -/+ 0.5 * (size - 1)``.
4. Order: ratio-major, scale-minor. The defaults give the nine anchors of the paper, the first
   being (-84, -40, 99, 55); COCO's scales (4, 8, 16, 32) give twelve.

``shifted_anchors`` places them at every feature-map cell: shifts (stride * col, stride * row),
no half-stride offset, ordered (row, col, anchor) with the anchor fastest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _whctrs(anchor: np.ndarray) -> tuple[float, float, float, float]:
    """Width, height and centre of one box (+1 sizes, centre x1 + 0.5 * (w - 1))."""
    w = anchor[2] - anchor[0] + 1
    h = anchor[3] - anchor[1] + 1
    return w, h, anchor[0] + 0.5 * (w - 1), anchor[1] + 0.5 * (h - 1)


def _mkanchors(ws: np.ndarray, hs: np.ndarray, x_ctr: float, y_ctr: float) -> np.ndarray:
    """Boxes (len(ws), 4) of the given sizes around one centre."""
    ws = ws[:, None]
    hs = hs[:, None]
    return np.hstack((x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1), x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)))


def generate_anchors(
    base_size: int = 16,
    ratios: Sequence[float] = (0.5, 1, 2),
    scales: Sequence[float] | np.ndarray = (8, 16, 32),  # upstream's 2 ** np.arange(3, 6)
) -> np.ndarray:
    """The (len(ratios) * len(scales), 4) float64 reference anchors, ratio-major."""
    ratios = np.asarray(ratios, dtype=np.float64).ravel()
    scales = np.asarray(scales, dtype=np.float64).ravel()
    if ratios.size == 0 or scales.size == 0:
        raise ValueError(f"generate_anchors: ratios and scales must be non-empty, got {ratios}, {scales}")
    if not (np.all(ratios > 0) and np.all(scales > 0) and base_size > 0):
        raise ValueError(
            f"generate_anchors: base_size, ratios and scales must be > 0, got {base_size}, {ratios}, {scales}"
        )
    base_anchor = np.array([1, 1, base_size, base_size], dtype=np.float64) - 1
    w, h, x_ctr, y_ctr = _whctrs(base_anchor)
    ws = np.round(np.sqrt(w * h / ratios))
    hs = np.round(ws * ratios)
    ratio_anchors = _mkanchors(ws, hs, x_ctr, y_ctr)
    out = []
    for anchor in ratio_anchors:
        w, h, x_ctr, y_ctr = _whctrs(anchor)
        out.append(_mkanchors(w * scales, h * scales, x_ctr, y_ctr))
    return np.vstack(out)


def shifted_anchors(
    anchors: np.ndarray | torch.Tensor,
    height: int,
    width: int,
    feat_stride: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """All anchors of an ``height`` x ``width`` feature map: (height * width * A, 4) on ``device``.

    Row ``(i * width + j) * A + a`` is reference anchor ``a`` shifted by
    ``(feat_stride * j, feat_stride * i)``, in input-image pixels.
    """
    if height < 0 or width < 0 or feat_stride <= 0:
        raise ValueError(
            f"shifted_anchors: need height, width >= 0 and feat_stride > 0, got {height}, {width}, {feat_stride}"
        )
    base = torch.as_tensor(anchors, dtype=dtype, device=device)
    if base.ndim != 2 or base.shape[1] != 4:
        raise ValueError(f"shifted_anchors: anchors must be (A, 4), got shape {tuple(base.shape)}")
    shift_x = torch.arange(width, dtype=dtype, device=base.device) * feat_stride
    shift_y = torch.arange(height, dtype=dtype, device=base.device) * feat_stride
    sy, sx = torch.meshgrid(shift_y, shift_x, indexing="ij")  # (H, W) each
    shifts = torch.stack((sx.reshape(-1), sy.reshape(-1), sx.reshape(-1), sy.reshape(-1)), dim=1)  # (K, 4)
    # (1, A, 4) + (K, 1, 4) -> (K, A, 4) -> (K * A, 4)
    return (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)
