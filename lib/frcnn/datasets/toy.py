"""The embedded toy detection set: coloured shapes on textured backgrounds, in VOC format.

``make_toy_dataset(out_dir)`` writes a deterministic set (same seed, same files) of small
images (about 200 x 160, some portrait) with five classes - circle, square, triangle, star,
ring - drawn at several scales (box sides about 20-90 px, no side under 16) and aspect ratios, rotated, in random
colours with texture, on backgrounds of smooth colour fields, noise and distractor lines.
Objects may overlap (box IoU <= 0.3, each keeps >= 60% of its pixels visible); a few
images hold no object. Layout: ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/``
(trainval, test, train, val) and ``classes.txt``. 400 images take a few seconds on a CPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import cv2
import numpy as np

from frcnn.errors import InputError

TOY_CLASSES = ("circle", "square", "triangle", "star", "ring")
_MARKER = ".frcnn_toy_dataset"
MIN_EXTENT = 20


def _background(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    # smooth colour field: a coarse random grid, upsampled
    gh, gw = rng.randint(2, 6), rng.randint(2, 6)
    field = rng.uniform(-50, 50, size=(gh, gw, 3)).astype(np.float32)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)
    img = base[None, None, :] + field
    # fine texture
    noise = rng.normal(0, rng.uniform(4, 16), size=(h, w, 1)).astype(np.float32)
    img += cv2.GaussianBlur(noise, (3, 3), 0)[..., None] if noise.ndim == 3 else noise
    # distractor lines and arcs
    for _ in range(rng.randint(0, 6)):
        color = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        p1 = (int(rng.randint(0, w)), int(rng.randint(0, h)))
        p2 = (int(rng.randint(0, w)), int(rng.randint(0, h)))
        cv2.line(img, p1, p2, color, int(rng.randint(1, 3)), cv2.LINE_AA)
    return img


def _shape_mask(
    rng: np.random.RandomState, cls: str, h: int, w: int, cx: float, cy: float, bw: float, bh: float
) -> np.ndarray:
    """An anti-aliased float mask in [0, 1] of one shape centred at (cx, cy), about bw x bh."""
    mask = np.zeros((h, w), dtype=np.uint8)
    angle = rng.uniform(0, 360)
    if cls == "circle":
        cv2.ellipse(
            mask,
            (int(cx), int(cy)),
            (int(bw / 2), int(bh / 2)),
            rng.uniform(-20, 20),
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
        )
    elif cls == "ring":
        axes = (int(bw / 2), int(bh / 2))
        thick = max(3, int(min(axes) * rng.uniform(0.3, 0.45)))
        cv2.ellipse(
            mask,
            (int(cx), int(cy)),
            (axes[0] - thick // 2, axes[1] - thick // 2),
            rng.uniform(-20, 20),
            0,
            360,
            255,
            thick,
            cv2.LINE_AA,
        )
    else:
        if cls == "square":
            pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
            angle = rng.uniform(-15, 15)
        elif cls == "triangle":
            pts = np.array([[0, -1], [0.95, 0.75], [-0.95, 0.75]], dtype=np.float64)
        else:  # star
            k = np.arange(10)
            r = np.where(k % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
            t = -np.pi / 2 + k * np.pi / 5
            pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
        a = np.deg2rad(angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = pts @ rot.T
        pts = pts / np.abs(pts).max(axis=0)  # fill the requested box
        pts = pts * np.array([bw / 2, bh / 2]) + np.array([cx, cy])
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def _object_color(rng: np.random.RandomState, bg_mean: np.ndarray) -> np.ndarray:
    for _ in range(20):
        hsv = np.array([[[rng.randint(0, 180), rng.randint(120, 256), rng.randint(90, 256)]]], dtype=np.uint8)
        color = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        if np.abs(color - bg_mean).sum() > 120:
            return color
    return 255.0 - bg_mean


def render_toy_image(
    rng: np.random.RandomState,
) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """One BGR uint8 image and its objects as (class, 0-based inclusive box)."""
    w, h = int(rng.randint(176, 241)), int(rng.randint(144, 193))
    if rng.uniform() < 0.15:
        w, h = h, w  # some portrait images
    img = _background(rng, h, w)
    n_obj = int(rng.choice([0, 1, 2, 3, 4], p=[0.02, 0.28, 0.32, 0.24, 0.14]))
    masks: list[np.ndarray] = []
    objects: list[tuple[str, tuple[int, int, int, int]]] = []
    for _ in range(n_obj * 6):
        if len(objects) == n_obj:
            break
        cls = TOY_CLASSES[rng.randint(len(TOY_CLASSES))]
        side = rng.uniform(24, 76)
        ar = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
        # no extent under MIN_EXTENT: RPN_MIN_SIZE (16 px in the original image) drops smaller proposals
        bw = min(max(side * np.sqrt(ar), MIN_EXTENT), w - 6)
        bh = min(max(side / np.sqrt(ar), MIN_EXTENT), h - 6)
        cx, cy = rng.uniform(bw / 2 + 2, w - bw / 2 - 2), rng.uniform(bh / 2 + 2, h - bh / 2 - 2)
        m = _shape_mask(rng, cls, h, w, cx, cy, bw, bh)
        ys, xs = np.where(m > 0.5)
        if len(xs) < 30:
            continue
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        if any(_iou(box, b) > 0.3 for _, b in objects):
            continue
        visible_ok = all(((mm > 0.5) & (m <= 0.5)).sum() >= 0.6 * (mm > 0.5).sum() for mm in masks)
        if not visible_ok:
            continue
        color = _object_color(rng, img[ys, xs].mean(axis=0))
        ay, ax = np.where(m > 0)
        sl = (slice(ay.min(), ay.max() + 1), slice(ax.min(), ax.max() + 1))
        crop = m[sl][..., None]
        ch, cw = crop.shape[:2]
        tex = color[None, None, :] + rng.normal(0, 10, size=(ch, cw, 1)).astype(np.float32)
        if rng.uniform() < 0.5:  # a brightness gradient across the object
            tex = tex + np.linspace(-1, 1, cw, dtype=np.float32)[None, :, None] * rng.uniform(-30, 30)
        img[sl] = img[sl] * (1 - crop) + tex * crop
        masks = [mm * (1 - m) for mm in masks] + [m]
        objects.append((cls, box))
    img += rng.normal(0, 3, size=(h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)
    return inter / float(area(a) + area(b) - inter)


def _xml(image_id: str, w: int, h: int, objects: list) -> str:
    parts = [
        "<annotation>",
        "\t<folder>toy</folder>",
        f"\t<filename>{image_id}.jpg</filename>",
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for cls, (x1, y1, x2, y2) in objects:
        parts.append(
            f"\t<object>\n\t\t<name>{cls}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
            f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{x1 + 1}</xmin>\n\t\t\t<ymin>{y1 + 1}</ymin>\n"
            f"\t\t\t<xmax>{x2 + 1}</xmax>\n\t\t\t<ymax>{y2 + 1}</ymax>\n\t\t</bndbox>\n\t</object>"
        )
    parts.append("</annotation>\n")
    return "\n".join(parts)


def make_toy_dataset(
    out_dir: str, num_trainval: int = 300, num_test: int = 100, seed: int = 0, force: bool = False
) -> dict:
    """Write the toy set to ``out_dir`` (built in a temporary folder, then renamed into place).

    Returns {"images", "objects", "per_class", "path"}. An existing ``out_dir`` is replaced
    only with ``force`` and only if it is a toy set written by this function.
    """
    if num_trainval < 2 or num_test < 1:
        raise InputError(
            f"make_toy_dataset: need num_trainval >= 2 and num_test >= 1, got {num_trainval}, {num_test}"
        )
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        if not force:
            raise FileExistsError(f"{out_dir}: already exists (use --force to replace it)")
        if not os.path.exists(os.path.join(out_dir, _MARKER)):
            raise FileExistsError(
                f"{out_dir}: exists and is not a toy dataset made by this tool; not replacing it"
            )
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".toy.", dir=parent)
    try:
        for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(tmp, sub))
        total = num_trainval + num_test
        ids = [f"{i:06d}" for i in range(1, total + 1)]
        per_class = dict.fromkeys(TOY_CLASSES, 0)
        n_objects = 0
        for i, image_id in enumerate(ids):
            rng = np.random.RandomState((seed * 1_000_003 + i) % (2**32))
            img, objects = render_toy_image(rng)
            if not cv2.imwrite(
                os.path.join(tmp, "JPEGImages", image_id + ".jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92]
            ):
                raise OSError(f"{tmp}: cannot write {image_id}.jpg")
            with open(os.path.join(tmp, "Annotations", image_id + ".xml"), "w") as f:
                f.write(_xml(image_id, img.shape[1], img.shape[0], objects))
            for cls, _ in objects:
                per_class[cls] += 1
            n_objects += len(objects)
        splits = {
            "trainval": ids[:num_trainval],
            "test": ids[num_trainval:],
            "train": ids[:num_trainval:2],
            "val": ids[1:num_trainval:2],
        }
        for split, members in splits.items():
            with open(os.path.join(tmp, "ImageSets", "Main", split + ".txt"), "w") as f:
                f.write("\n".join(members) + "\n")
        with open(os.path.join(tmp, "classes.txt"), "w") as f:
            f.write("\n".join(TOY_CLASSES) + "\n")
        with open(os.path.join(tmp, _MARKER), "w") as f:
            f.write(f"seed {seed}\ntrainval {num_trainval}\ntest {num_test}\n")
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"images": total, "objects": n_objects, "per_class": per_class, "path": out_dir}


def default_toy_dir(data_dir: str | None = None) -> str:
    """``<DATA_DIR>/toy``."""
    if data_dir is None:
        from frcnn.config import get_default_config

        data_dir = get_default_config().DATA_DIR
    return os.path.join(data_dir, "toy")
