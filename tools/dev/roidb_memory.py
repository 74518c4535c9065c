#!/usr/bin/env python3
"""Memory of a Fast R-CNN training roidb: gt_overlaps stored by row (ClassOverlaps) vs dense.

usage: python tools/dev/roidb_memory.py [--images 500] [--proposals 2000] [--classes 21 81] [--seed 0]

A synthetic set of 500 x 375 images, each with 1-6 gt boxes of random classes and N random
proposals (boxes of 16-400 px anywhere in the image), built by the pipeline's own code:
imdb.create_roidb_from_box_list, merge_roidbs (gt rows first), append_flipped_images,
prepare_roidb and the bbox regression targets. For each class count it prints the bytes of
``gt_overlaps`` as stored now and as the dense (R, K) float32 array it was before (``toarray()``
of every entry: exactly the old layout), and the whole roidb's arrays (each array counted once:
flipped entries share theirs) with either. ``tracemalloc`` also gives what the gt_overlaps
objects hold, to check the ``nbytes`` sums.
"""

from __future__ import annotations

import contextlib
import gc
import io
import tracemalloc
from typing import Any

import numpy as np

from frcnn.cli import run_tool, tool_parser
from frcnn.datasets.imdb import imdb

WIDTH, HEIGHT = 500, 375


class SyntheticImdb(imdb):
    """``num_images`` images of WIDTH x HEIGHT with random gt boxes (no files)."""

    def __init__(self, num_images: int, num_classes: int, seed: int = 0) -> None:
        super().__init__(f"synthetic_{num_images}_{num_classes}", ["__background__"] + [f"c{i}" for i in range(1, num_classes)])
        self._image_index = list(range(num_images))
        self._rng = np.random.RandomState(seed)
        self._roidb_handler = self.gt_roidb

    def image_path_at(self, i: int) -> str:
        return f"synthetic/{i:06d}.jpg"

    def gt_roidb(self) -> list[dict]:
        from frcnn.datasets.class_overlaps import ClassOverlaps

        out = []
        for _ in self._image_index:
            n = self._rng.randint(1, 7)
            boxes = random_boxes(self._rng, n, 24, 300)
            classes = self._rng.randint(1, self.num_classes, size=n).astype(np.int32)
            out.append({
                "boxes": boxes.astype(np.uint16),
                "gt_classes": classes,
                "gt_overlaps": ClassOverlaps.from_entries(np.arange(n), classes, 1.0, (n, self.num_classes)),
                "flipped": False,
                "seg_areas": ((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)).astype(np.float32),
                "width": WIDTH,
                "height": HEIGHT,
            })
        return out


def random_boxes(rng: np.random.RandomState, n: int, min_side: int, max_side: int) -> np.ndarray:
    """(n, 4) float32 boxes with sides in [min_side, max_side] inside the image."""
    w = rng.randint(min_side, max_side + 1, size=n)
    h = rng.randint(min_side, min(max_side, HEIGHT - 1) + 1, size=n)
    x1 = rng.randint(0, WIDTH - w)
    y1 = rng.randint(0, HEIGHT - h)
    return np.stack([x1, y1, x1 + w - 1, y1 + h - 1], axis=1).astype(np.float32)


def build_roidb(num_images: int, num_proposals: int, num_classes: int, seed: int = 0) -> list[dict]:
    """The prepared training roidb (flipped copies included, bbox targets added) of the
    synthetic set with ``num_proposals`` random proposals per image."""
    from frcnn.roi_data.roidb import compute_bbox_regression_targets, prepare_roidb

    d = SyntheticImdb(num_images, num_classes, seed)
    gt = d.roidb
    rng = np.random.RandomState(seed + 1)
    props = [random_boxes(rng, num_proposals, 16, 400) for _ in range(num_images)]
    d._roidb = d.merge_roidbs(gt, d.create_roidb_from_box_list(props, gt))
    d.append_flipped_images()
    with contextlib.redirect_stdout(io.StringIO()):  # the targets' means / stds
        prepare_roidb(d)
        compute_bbox_regression_targets(d.roidb, normalize_targets=False)
    return d.roidb


def array_bytes(value: Any, seen: set[int]) -> int:
    """Bytes of the arrays held by ``value`` (an array or a ClassOverlaps), each counted once."""
    from frcnn.datasets.class_overlaps import ClassOverlaps

    if isinstance(value, ClassOverlaps):
        return 0 if id(value) in seen or seen.add(id(value)) else value.nbytes
    if isinstance(value, np.ndarray):
        base = value if value.base is None else value.base
        return 0 if id(base) in seen or seen.add(id(base)) else value.nbytes
    return 0


def roidb_bytes(roidb: list[dict], keys: tuple[str, ...] | None = None) -> int:
    """Bytes of the roidb's arrays (only ``keys`` when given), shared arrays counted once."""
    seen: set[int] = set()
    return sum(array_bytes(v, seen) for e in roidb for k, v in e.items() if keys is None or k in keys)


def densify(roidb: list[dict]) -> list[dict]:
    """A shallow copy of ``roidb`` with every gt_overlaps as its dense (R, K) array (the layout
    before ClassOverlaps; a shared object stays shared)."""
    dense: dict[int, np.ndarray] = {}
    out = []
    for e in roidb:
        g = e["gt_overlaps"]
        if id(g) not in dense:
            dense[id(g)] = g.toarray()
        out.append({**e, "gt_overlaps": dense[id(g)]})
    return out


def traced_bytes(make: Any) -> tuple[Any, int]:
    """(make(), bytes that stay allocated after it) by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    value = make()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return value, after - before


def measure(num_images: int, num_proposals: int, num_classes: int, seed: int = 0) -> dict[str, float]:
    """The numbers the tool prints for one class count."""
    roidb = build_roidb(num_images, num_proposals, num_classes, seed)
    rows = sum(len(e["boxes"]) for e in roidb[:num_images])
    compact = roidb_bytes(roidb, ("gt_overlaps",))
    # what the objects hold by tracemalloc: a fresh copy of each, traced while it is made
    copies, traced = traced_bytes(lambda: [e["gt_overlaps"][:] for e in roidb[:num_images]])
    dense_roidb = densify(roidb)
    return {
        "rows": rows,
        "gt_overlaps_compact": compact,
        "gt_overlaps_traced": traced,
        "gt_overlaps_dense": roidb_bytes(dense_roidb, ("gt_overlaps",)),
        "roidb_compact": roidb_bytes(roidb),
        "roidb_dense": roidb_bytes(dense_roidb),
        "copies": len(copies),
    }


def main(argv: list[str] | None = None) -> int:
    p = tool_parser("Memory of a training roidb: gt_overlaps by row vs dense")
    p.add_argument("--images", type=int, default=500, help="images (the roidb holds twice as many entries: flipped)")
    p.add_argument("--proposals", type=int, default=2000, help="random proposals per image")
    p.add_argument("--classes", type=int, nargs="+", default=[21, 81], help="class counts K (background included)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    mb = 1e6
    print(f"{args.images} images (+ flipped), {args.proposals} random proposals each; MB = 10^6 bytes")
    print("| K | rows | gt_overlaps dense | gt_overlaps by row (tracemalloc) | bytes/row | roidb dense | roidb by row |")
    print("|---|---|---|---|---|---|---|")
    for k in args.classes:
        m = measure(args.images, args.proposals, k, args.seed)
        print(f"| {k} | {m['rows']} | {m['gt_overlaps_dense'] / mb:.1f} MB | {m['gt_overlaps_compact'] / mb:.2f} MB "
              f"({m['gt_overlaps_traced'] / mb:.2f} MB) | {m['gt_overlaps_compact'] / m['rows']:.1f} | "
              f"{m['roidb_dense'] / mb:.1f} MB | {m['roidb_compact'] / mb:.1f} MB |")
    return 0


if __name__ == "__main__":
    run_tool(main)
