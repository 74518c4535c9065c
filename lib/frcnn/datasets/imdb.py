"""The image database base class (upstream's ``lib/datasets/imdb.py``).

An imdb has a name, classes (index 0 = ``__background__``), an image index (ids), and a
roidb built lazily by the handler that ``set_proposal_method(<method>)`` selects
(``<method>_roidb``: ``gt``, ``rpn``, ``selective_search``, ...). Roidb entries hold
``boxes`` (R, 4), ``gt_classes`` (R,) int32, ``gt_overlaps`` (R, K) float32 held as a
:class:`frcnn.datasets.class_overlaps.ClassOverlaps` (per row the nonzero class columns;
``.toarray()`` gives the dense array, as upstream's ``csr_matrix`` did), ``flipped``,
``seg_areas`` and, where known, the image ``width`` and ``height``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Callable, Generic, TypeVar

import numpy as np

from frcnn.datasets import roidb_io
from frcnn.datasets.class_overlaps import ClassOverlaps, as_class_overlaps
from frcnn.errors import InputError

# evaluate_recall's area ranges, upstream's table
_AREAS = {
    "all": 0,
    "small": 1,
    "medium": 2,
    "large": 3,
    "96-128": 4,
    "128-256": 5,
    "256-512": 6,
    "512-inf": 7,
}
_AREA_RANGES = [
    [0**2, 1e5**2],
    [0**2, 32**2],
    [32**2, 96**2],
    [96**2, 1e5**2],
    [96**2, 128**2],
    [128**2, 256**2],
    [256**2, 512**2],
    [512**2, 1e5**2],
]


def _overlaps(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    from frcnn.boxes.overlaps import bbox_overlaps

    return bbox_overlaps(
        np.ascontiguousarray(boxes, dtype=np.float64), np.ascontiguousarray(query, dtype=np.float64)
    )


T = TypeVar("T")


class _ReadOnly(Generic[T]):
    """A read-only attribute that returns ``self.<private>`` (upstream's imdb exposes its
    fields as properties; subclasses set the private names)."""

    def __init__(self, private: str, doc: str) -> None:
        self.private = private
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.public = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  (the class attribute, for help())
        return getattr(obj, self.private)

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(f"imdb.{self.public} is read-only (set {self.private})")


class imdb:
    """Image database base class."""

    def __init__(self, name: str, classes: Sequence[str] = (), cache_dir: str | None = None) -> None:
        self._name = name
        self._classes: tuple[str, ...] = tuple(classes)
        self._image_index: list = []
        self._roidb: list[dict] | None = None
        self._roidb_handler: Callable[[], list[dict]] = self.default_roidb
        self._cache_dir = cache_dir
        # Use this dict for storing dataset specific config options
        self.config: dict[str, Any] = {}

    # ---------------------------------------------------------------- properties
    name = _ReadOnly[str]("_name", "The set's name, e.g. ``voc_2007_trainval``.")
    classes = _ReadOnly[tuple]("_classes", "The class names; index 0 is ``__background__``.")
    image_index = _ReadOnly[list]("_image_index", "The image ids, in roidb order.")

    @property
    def num_classes(self) -> int:
        return len(self._classes)

    @property
    def num_images(self) -> int:
        return len(self._image_index)

    @property
    def roidb_handler(self) -> Callable[[], list[dict]]:
        return self._roidb_handler

    @roidb_handler.setter
    def roidb_handler(self, handler: Callable[[], list[dict]]) -> None:
        self._roidb_handler = handler
        self._roidb = None

    @property
    def roidb(self) -> list[dict]:
        """A list of dicts, one per image (built by the roidb handler on first use)."""
        if self._roidb is None:
            self._roidb = self.roidb_handler()
        return self._roidb

    @property
    def cache_path(self) -> str:
        if self._cache_dir is None:
            raise InputError(f"imdb {self.name}: no cache folder was given")
        os.makedirs(self._cache_dir, exist_ok=True)
        return self._cache_dir

    def proposal_methods(self) -> list[str]:
        """The names ``set_proposal_method`` accepts."""
        names = [a for a in dir(type(self)) if a.endswith("_roidb") and not a.startswith("_")]
        return sorted(a[: -len("_roidb")] for a in names if a != "default_roidb")

    def set_proposal_method(self, method: str) -> None:
        """Select the roidb handler ``<method>_roidb`` (e.g. ``gt``, ``rpn``, ``selective_search``)."""
        handler = getattr(self, f"{method}_roidb", None)
        if method == "default" or method.startswith("_") or not callable(handler):
            raise InputError(
                f"imdb {self.name}: unknown proposal method '{method}' (known: {', '.join(self.proposal_methods())})"
            )
        self.roidb_handler = handler

    # ---------------------------------------------------------------- to override
    def image_path_at(self, i: int) -> str:
        raise NotImplementedError

    def image_id_at(self, i: int):
        return self._image_index[i]

    def default_roidb(self) -> list[dict]:
        raise NotImplementedError(f"imdb {self.name}: no proposal method selected")

    def gt_roidb(self) -> list[dict]:
        raise NotImplementedError(f"imdb {self.name}: has no ground truth")

    def evaluate_detections(self, all_boxes: list, output_dir: str) -> dict:
        """all_boxes[class][image] = (N, 5) array of x1, y1, x2, y2, score (or [])."""
        raise NotImplementedError(f"imdb {self.name}: cannot evaluate detections")

    def competition_mode(self, on: bool) -> None:
        """Turn competition mode on or off (no salt in result names, no cleanup)."""

    # ---------------------------------------------------------------- caching
    def _cached_roidb(self, stem: str, key: str, build: Callable[[], list[dict]]) -> list[dict]:
        """Load ``<cache>/<stem>_<key>.npz`` or build the roidb and write it there."""
        import warnings

        if self._cache_dir is None:
            return build()
        path = roidb_io.cache_path(self.cache_path, stem, key)
        if os.path.exists(path):
            try:
                roidb = roidb_io.load_roidb(path)
                print(f"{self.name} {stem} loaded from {path}")
                return roidb
            except ValueError as e:
                warnings.warn(f"{e}; rebuilding", stacklevel=2)
        roidb = build()
        roidb_io.save_roidb(path, roidb, stale_glob=roidb_io.cache_path(self.cache_path, stem, "*"))
        print(f"wrote {stem} to {path}")
        return roidb

    # ---------------------------------------------------------------- roidb helpers
    def _get_widths(self) -> list[int]:
        from frcnn.datasets.image_info import image_size

        roidb = self.roidb
        return [
            int(roidb[i]["width"]) if "width" in roidb[i] else image_size(self.image_path_at(i))[0]
            for i in range(self.num_images)
        ]

    def append_flipped_images(self) -> None:
        """Append a horizontally flipped copy of every entry (x1' = W - x2 - 1, x2' = W - x1 - 1)."""
        num_images = self.num_images
        widths = self._get_widths()
        roidb = self.roidb
        for i in range(num_images):
            src = roidb[i]
            boxes = src["boxes"]
            old = boxes.astype(np.float64)
            flipped = old.copy()
            flipped[:, 0] = widths[i] - old[:, 2] - 1
            flipped[:, 2] = widths[i] - old[:, 0] - 1
            bad = np.where((flipped[:, 2] < flipped[:, 0]) | (flipped[:, 0] < 0))[0]
            if len(bad):
                raise InputError(
                    f"{self.image_path_at(i)}: box {old[bad[0]].tolist()} does not fit the image width "
                    f"{widths[i]}, cannot flip it (check the annotations; delete stale caches)"
                )
            entry = dict(src)
            entry["boxes"] = flipped.astype(boxes.dtype)
            entry["flipped"] = True
            roidb.append(entry)
        self._image_index = self._image_index * 2

    def create_roidb_from_box_list(self, box_list: Sequence[np.ndarray], gt_roidb: list | None) -> list[dict]:
        """Roidb entries for proposal boxes; each proposal's overlap with its best gt goes in
        that gt's class column."""
        if len(box_list) != self.num_images:
            raise InputError(f"imdb {self.name}: {len(box_list)} proposal lists for {self.num_images} images")
        roidb = []
        for i in range(self.num_images):
            boxes = np.asarray(box_list[i])
            num_boxes = boxes.shape[0]
            overlaps = ClassOverlaps.zeros(num_boxes, self.num_classes)
            if gt_roidb is not None and gt_roidb[i]["boxes"].size > 0 and num_boxes > 0:
                gt_boxes = gt_roidb[i]["boxes"]
                gt_classes = gt_roidb[i]["gt_classes"]
                gt_overlaps = _overlaps(boxes, gt_boxes)
                argmaxes = gt_overlaps.argmax(axis=1)
                maxes = gt_overlaps.max(axis=1)
                inds = np.where(maxes > 0)[0]
                # one nonzero per row at most: the IoU with the best gt, in that gt's class column
                overlaps = ClassOverlaps.from_entries(
                    inds, gt_classes[argmaxes[inds]], maxes[inds], (num_boxes, self.num_classes)
                )
            entry = {
                "boxes": boxes,
                "gt_classes": np.zeros((num_boxes,), dtype=np.int32),
                "gt_overlaps": overlaps,
                "flipped": False,
                "seg_areas": np.zeros((num_boxes,), dtype=np.float32),
            }
            if gt_roidb is not None:
                for k in ("width", "height"):
                    if k in gt_roidb[i]:
                        entry[k] = gt_roidb[i][k]
            roidb.append(entry)
        return roidb

    @staticmethod
    def merge_roidbs(a: list[dict], b: list[dict]) -> list[dict]:
        """Append b's rows to a's, entry by entry (gt rows first); returns ``a``."""
        if len(a) != len(b):
            raise InputError(f"merge_roidbs: {len(a)} entries vs {len(b)}")
        for i in range(len(a)):
            a[i]["boxes"] = np.vstack((a[i]["boxes"], b[i]["boxes"]))
            a[i]["gt_classes"] = np.hstack((a[i]["gt_classes"], b[i]["gt_classes"]))
            a[i]["gt_overlaps"] = ClassOverlaps.vstack((a[i]["gt_overlaps"], b[i]["gt_overlaps"]))
            a[i]["seg_areas"] = np.hstack((a[i]["seg_areas"], b[i]["seg_areas"]))
        return a

    def _load_rpn_roidb(self, gt_roidb: list | None) -> list[dict]:
        """Roidb entries from ``config['rpn_file']`` (an ``.npz`` from ``save_proposals``).
        ``config['rpn_part'] = (start, stop)``: this set's images are entries start..stop-1 of
        the file (a joined set's file, see :class:`frcnn.datasets.combined.CombinedImdb`)."""
        from frcnn.datasets.proposals import load_proposals

        filename = self.config.get("rpn_file")
        if not filename:
            raise InputError(f"imdb {self.name}: config['rpn_file'] is not set (the RPN proposal file)")
        print(f"loading {filename}")
        box_list, ids = load_proposals(filename)
        part = self.config.get("rpn_part")
        if part is not None:
            box_list, ids = box_list[part[0] : part[1]], ids[part[0] : part[1]]
        self._check_proposal_ids(filename, box_list, ids)
        return self.create_roidb_from_box_list(box_list, gt_roidb)

    def _check_proposal_ids(self, filename: str, box_list: list, ids: list | None) -> None:
        if len(box_list) != self.num_images:
            raise InputError(
                f"{filename}: holds proposals for {len(box_list)} images, {self.name} has {self.num_images}"
            )
        if ids is not None:
            expected = [str(x) for x in self.image_index]
            got = [str(x) for x in ids]
            if got != expected:
                j = next(k for k in range(len(got)) if got[k] != expected[k])
                raise InputError(
                    f"{filename}: image {j} is '{got[j]}' but {self.name} has '{expected[j]}' there "
                    f"(proposals made for another image set or order)"
                )

    # ---------------------------------------------------------------- recall
    def evaluate_recall(
        self,
        candidate_boxes: Sequence[np.ndarray] | None = None,
        thresholds: np.ndarray | None = None,
        area: str = "all",
        limit: int | None = None,
    ) -> dict:
        """Recall of gt boxes (rows with overlap 1) by proposals: greedy one-to-one matching,
        best-covered gt first; ``limit``: only the first N proposals of each image (in the
        roidb's order, which is the proposal file's). ``thresholds``: the IoU thresholds
        (default 0.5, 0.55, ..., 0.95; Figure 4 of the paper runs them to 1.0). Returns
        {'ar', 'recalls', 'thresholds', 'gt_overlaps', 'num_pos'}: ``recalls[k]`` is the
        fraction of the ``num_pos`` gt boxes covered at IoU >= ``thresholds[k]``."""
        if area not in _AREAS:
            raise InputError(f"evaluate_recall: unknown area range '{area}' (known: {', '.join(_AREAS)})")
        area_range = _AREA_RANGES[_AREAS[area]]
        gt_overlaps = np.zeros(0)
        num_pos = 0
        roidb = self.roidb
        for i in range(self.num_images):
            go = as_class_overlaps(roidb[i]["gt_overlaps"])
            max_gt_overlaps = go.max(axis=1) if go.shape[0] else np.zeros(0)
            gt_inds = np.where((roidb[i]["gt_classes"] > 0) & (max_gt_overlaps == 1))[0]
            gt_boxes = roidb[i]["boxes"][gt_inds, :]
            gt_areas = roidb[i]["seg_areas"][gt_inds]
            valid = np.where((gt_areas >= area_range[0]) & (gt_areas <= area_range[1]))[0]
            gt_boxes = gt_boxes[valid, :]
            num_pos += len(valid)
            if candidate_boxes is None:
                boxes = roidb[i]["boxes"][roidb[i]["gt_classes"] == 0, :]
            else:
                boxes = np.asarray(candidate_boxes[i])
            if boxes.shape[0] == 0:
                continue
            if limit is not None and boxes.shape[0] > limit:
                boxes = boxes[:limit, :]
            overlaps = _overlaps(boxes[:, :4], gt_boxes)
            _gt_overlaps = np.zeros(gt_boxes.shape[0])
            for j in range(gt_boxes.shape[0]):
                # the proposal that covers each gt best, and the gt covered best overall
                argmax_overlaps = overlaps.argmax(axis=0)
                max_overlaps = overlaps.max(axis=0)
                gt_ind = max_overlaps.argmax()
                box_ind = argmax_overlaps[gt_ind]
                # (fewer proposals than gt: the rest stay uncovered, upstream asserted here)
                _gt_overlaps[j] = max(overlaps[box_ind, gt_ind], 0.0)
                # mark that proposal and that gt as used
                overlaps[box_ind, :] = -1
                overlaps[:, gt_ind] = -1
            gt_overlaps = np.hstack((gt_overlaps, _gt_overlaps))
        gt_overlaps = np.sort(gt_overlaps)
        if thresholds is None:
            thresholds = np.arange(0.5, 0.95 + 1e-5, 0.05)
        thresholds = np.asarray(thresholds, dtype=np.float64)
        recalls = np.zeros_like(thresholds)
        for k, t in enumerate(thresholds):
            recalls[k] = (gt_overlaps >= t).sum() / float(num_pos) if num_pos else 0.0
        return {
            "ar": recalls.mean(),
            "recalls": recalls,
            "thresholds": thresholds,
            "gt_overlaps": gt_overlaps,
            "num_pos": num_pos,
        }
