"""Draw detections on an image with OpenCV and save it (no matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from frcnn.utils.io import atomic_write


def _color(j: int) -> tuple[int, int, int]:
    """A fixed, well separated BGR colour per class index."""
    hue = (j * 47) % 180
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_boxes(
    im: np.ndarray, dets_per_class: Sequence[np.ndarray], class_names: Sequence[str], thresh: float = 0.5
) -> tuple[np.ndarray, int]:
    """Return a copy of the BGR image with every detection scoring >= thresh drawn, and their count.

    ``dets_per_class[j]`` is an (N, 5) ``[x1, y1, x2, y2, score]`` array for class j
    (class 0, background, is skipped).
    """
    out = np.ascontiguousarray(im.copy())
    thickness = max(1, round(min(im.shape[:2]) / 300))
    drawn = 0
    for j in range(1, len(dets_per_class)):
        dets = np.asarray(dets_per_class[j]).reshape(-1, 5)
        for x1, y1, x2, y2, score in dets[dets[:, 4] >= thresh]:
            color = _color(j)
            p1, p2 = (round(x1), round(y1)), (round(x2), round(y2))
            cv2.rectangle(out, p1, p2, color, thickness)
            label = f"{class_names[j]} {score:.3f}"
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
            ty = max(p1[1], th + base)
            cv2.rectangle(out, (p1[0], ty - th - base), (p1[0] + tw, ty), color, -1)
            cv2.putText(out, label, (p1[0], ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            drawn += 1
    return out, drawn


def save_image(path: str, im: np.ndarray) -> None:
    """Encode by the file's extension and write atomically; raise naming the file on failure."""
    ext = "." + path.rsplit(".", 1)[-1] if "." in path else ".png"
    ok, buf = cv2.imencode(ext, im)
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot encode an image as '{ext}'")
    with atomic_write(path, "wb") as f:
        f.write(buf.tobytes())


def draw_detections(
    im: np.ndarray, dets_per_class: Sequence[np.ndarray], class_names: Sequence[str], path: str, thresh: float = 0.5
) -> int:
    """Draw and save; return the number of boxes drawn."""
    out, n = draw_boxes(im, dets_per_class, class_names, thresh)
    save_image(path, out)
    return n
