"""MS COCO and any COCO-format json, through pycocotools (upstream's ``lib/datasets/coco.py``).

- Classes: ``__background__`` then the json's categories in file order; images in file order.
- gt boxes (upstream's rule): ``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w - 1))`` (same
  for y), stored as uint16; kept when the area is > 0 and the box is not inverted. Crowd
  boxes keep their class but get overlap -1 in every column (left out of Fast R-CNN
  sampling); proposals inside a crowd region (crowd IoU > ``crowd_thresh``) get -1 too.
- Results: ``detections_<set>_results[_<salt>].json`` with ``[x, y, w, h]`` boxes
  (w = x2 - x1 + 1), evaluated with ``COCOeval`` for splits that have annotations.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings

import numpy as np

from frcnn.datasets import ds_utils, roidb_io
from frcnn.datasets.class_overlaps import ClassOverlaps
from frcnn.datasets.coco_proposals import filter_crowd_proposals, load_hosang_proposals
from frcnn.datasets.imdb import imdb
from frcnn.datasets.voc_xml import AnnotationWarning
from frcnn.errors import InputError
from frcnn.utils.io import atomic_write

#: the 80 MS COCO category names in category-id order, the order of upstream's
#: ``instances_*2014.json`` files and so of a COCO-trained net's ``cls_score`` rows 1..80
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

# splits whose images live in another split's folder
COCO_VIEW_MAP = {"minival2014": "val2014", "valminusminival2014": "val2014", "test-dev2015": "test2015"}


def _load_coco_api(ann_file: str):
    from pycocotools.coco import COCO

    if not os.path.isfile(ann_file):
        root = os.path.dirname(os.path.dirname(ann_file))
        if not os.path.isdir(root):
            hint = (f"link the COCO folder, which holds annotations/ and images/<split>/: "
                    f"ln -s /path/to/coco {root}")
        else:
            hint = f"{root} has no such file: put the split's annotation json into {os.path.dirname(ann_file)}"
        raise FileNotFoundError(f"{ann_file}: COCO annotation file not found ({hint})")
    try:
        return COCO(ann_file)
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise InputError(f"{ann_file}: not a valid COCO annotation file ({type(e).__name__}: {e})") from None


class COCODataset(imdb):
    """A COCO-format annotation json and the folder of its images."""

    def __init__(
        self,
        name: str,
        ann_file: str,
        image_dir: str,
        cache_dir: str | None,
        *,
        data_name: str | None = None,
        proposals_dir: str | None = None,
        results_stem: str | None = None,
        evaluate: bool = True,
    ) -> None:
        self._ann_file = ann_file
        self._COCO = _load_coco_api(ann_file)
        cats = self._COCO.loadCats(self._COCO.getCatIds())
        names = [c["name"] for c in cats]
        if len(set(names)) != len(names):
            raise InputError(f"{ann_file}: category names are not unique")
        super().__init__(name, ["__background__", *names], cache_dir)
        self._class_to_ind = {c: i for i, c in enumerate(self.classes)}
        self._class_to_coco_cat_id = dict(zip(names, [c["id"] for c in cats]))
        self._image_index = self._COCO.getImgIds()
        self._image_dir = image_dir
        self._data_name = data_name  # upstream file names COCO_<data_name>_<id>.jpg when set
        self._proposals_dir = proposals_dir
        self._results_stem = results_stem or name
        self._evaluate = evaluate
        self._has_gt = "annotations" in self._COCO.dataset
        self._salt = str(uuid.uuid4())
        self._roidb_handler = self.gt_roidb
        self.config = {
            "top_k": 2000,
            "use_salt": True,
            "cleanup": True,
            "crowd_thresh": 0.7,
            "min_size": 2,
            "rpn_file": None,
        }

    @property
    def coco_api(self):
        return self._COCO

    # ---------------------------------------------------------------- images
    def image_path_at(self, i: int) -> str:
        return self.image_path_from_index(self._image_index[i])

    def image_path_from_index(self, index: int) -> str:
        if self._data_name is not None:
            path = os.path.join(self._image_dir, f"COCO_{self._data_name}_{int(index):012d}.jpg")
            if os.path.exists(path):
                return path
        file_name = self._COCO.imgs[index].get("file_name")
        if not file_name:
            raise InputError(f"{self._ann_file}: image {index} has no file_name")
        return os.path.join(self._image_dir, file_name)

    # ---------------------------------------------------------------- roidbs
    def gt_roidb(self) -> list[dict]:
        """Ground-truth roidb (cached; keyed by the annotation file)."""
        if not self._has_gt:
            raise InputError(f"{self._ann_file}: has no annotations (a test split), so no gt roidb")
        key = roidb_io.fingerprint(["coco_gt", self.classes, self._image_dir], [self._ann_file])
        return self._cached_roidb(f"{self.name}_gt_roidb", key, self._build_gt_roidb)

    def _build_gt_roidb(self) -> list[dict]:
        dropped: list = []
        roidb = [self._load_coco_annotation(index, dropped) for index in self._image_index]
        if dropped:
            warnings.warn(
                AnnotationWarning(
                    f"{self._ann_file}: {len(dropped)} annotations with zero area or an empty box were left "
                    f"out (ids {', '.join(map(str, dropped[:5]))}{', ...' if len(dropped) > 5 else ''})"
                ),
                stacklevel=2,
            )
        return roidb

    def _load_coco_annotation(self, index: int, dropped: list) -> dict:
        im_ann = self._COCO.imgs[index]
        if "width" in im_ann and "height" in im_ann:
            width, height = int(im_ann["width"]), int(im_ann["height"])
        else:
            from frcnn.datasets.image_info import image_size

            width, height = image_size(self.image_path_from_index(index))
        objs = self._COCO.loadAnns(self._COCO.getAnnIds(imgIds=index, iscrowd=None))
        cat_to_ind = {self._class_to_coco_cat_id[c]: self._class_to_ind[c] for c in self.classes[1:]}
        valid = []
        for obj in objs:
            bbox = obj.get("bbox")
            if bbox is None or len(bbox) != 4:
                raise InputError(f"{self._ann_file}: annotation {obj.get('id')} has no 4-number bbox")
            if obj.get("category_id") not in cat_to_ind:
                raise InputError(
                    f"{self._ann_file}: annotation {obj.get('id')} has unknown category_id "
                    f"{obj.get('category_id')}"
                )
            x1 = max(0.0, float(bbox[0]))
            y1 = max(0.0, float(bbox[1]))
            x2 = min(width - 1.0, x1 + max(0.0, float(bbox[2]) - 1))
            y2 = min(height - 1.0, y1 + max(0.0, float(bbox[3]) - 1))
            area = float(obj.get("area", float(bbox[2]) * float(bbox[3])))
            if area > 0 and x2 >= x1 and y2 >= y1:
                valid.append((obj, (x1, y1, x2, y2), area))
            else:
                dropped.append(obj.get("id"))
        n = len(valid)
        boxes = np.zeros((n, 4), dtype=np.uint16)
        gt_classes = np.zeros((n,), dtype=np.int32)
        crowd_rows, gt_rows, gt_cols = [], [], []
        seg_areas = np.zeros((n,), dtype=np.float32)
        for ix, (obj, box, area) in enumerate(valid):
            cls = cat_to_ind[obj["category_id"]]
            boxes[ix, :] = np.array(box)  # truncates like upstream's uint16 store
            gt_classes[ix] = cls
            seg_areas[ix] = area
            if obj.get("iscrowd", 0):
                # crowd boxes get overlap -1 with every class: never fg or bg in Fast R-CNN
                crowd_rows.append(ix)
            else:
                gt_rows.append(ix)
                gt_cols.append(cls)
        overlaps = ClassOverlaps.from_entries(gt_rows, gt_cols, 1.0, (n, self.num_classes))
        overlaps = overlaps.with_rows(np.array(crowd_rows, dtype=np.int64), -1.0)
        ds_utils.validate_boxes(boxes, width=width, height=height, where=f"{self._ann_file} image {index}")
        return {
            "boxes": boxes,
            "gt_classes": gt_classes,
            "gt_overlaps": overlaps,
            "flipped": False,
            "seg_areas": seg_areas,
            "width": width,
            "height": height,
        }

    def rpn_roidb(self) -> list[dict]:
        """gt + RPN proposals from ``config['rpn_file']`` (proposals only for test splits)."""
        if self._has_gt:
            gt_roidb = self.gt_roidb()
            roidb = self.merge_roidbs(gt_roidb, self._load_rpn_roidb(gt_roidb))
            return filter_crowd_proposals(roidb, self.config["crowd_thresh"])
        return self._load_rpn_roidb(None)

    def selective_search_roidb(self) -> list[dict]:
        return self._roidb_from_proposals("selective_search")

    def edge_boxes_roidb(self) -> list[dict]:
        return self._roidb_from_proposals("edge_boxes_AR")

    def mcg_roidb(self) -> list[dict]:
        return self._roidb_from_proposals("MCG")

    def _roidb_from_proposals(self, method: str) -> list[dict]:
        top_k = self.config["top_k"]
        key = roidb_io.fingerprint(
            [
                "coco_props",
                method,
                top_k,
                self.config["min_size"],
                self._proposals_dir,
                self.config["crowd_thresh"],
            ],
            [self._ann_file],
        )

        def build() -> list[dict]:
            if self._has_gt:
                gt_roidb = self.gt_roidb()
                roidb = self.merge_roidbs(gt_roidb, self._load_proposals(method, gt_roidb))
                return filter_crowd_proposals(roidb, self.config["crowd_thresh"])
            return self._load_proposals(method, None)

        return self._cached_roidb(f"{self.name}_{method}_top{top_k}_roidb", key, build)

    def _load_proposals(self, method: str, gt_roidb: list | None) -> list[dict]:
        if not self._proposals_dir or self._data_name is None:
            raise InputError(
                f"imdb {self.name}: {method} proposals need the coco_proposals folder and an "
                "upstream COCO split name"
            )
        box_list = load_hosang_proposals(
            self._COCO,
            self._image_index,
            self._data_name,
            os.path.join(self._proposals_dir, method, "mat"),
            mcg_order=method == "MCG",
            top_k=self.config["top_k"],
            min_size=self.config["min_size"],
        )
        return self.create_roidb_from_box_list(box_list, gt_roidb)

    # ---------------------------------------------------------------- evaluation
    def competition_mode(self, on: bool) -> None:
        self.config["use_salt"] = not on
        self.config["cleanup"] = not on

    def write_results_file(self, all_boxes: list, res_file: str) -> int:
        """Write COCO json results (``[x, y, w, h]``, w = x2 - x1 + 1); returns the count."""
        results = []
        for cls_ind, cls in enumerate(self.classes):
            if cls == "__background__":
                continue
            cat_id = self._class_to_coco_cat_id[cls]
            for im_ind, index in enumerate(self._image_index):
                dets = all_boxes[cls_ind][im_ind]
                if dets is None or len(dets) == 0:
                    continue
                dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
                xs, ys = dets[:, 0], dets[:, 1]
                ws, hs = dets[:, 2] - xs + 1, dets[:, 3] - ys + 1
                results.extend(
                    {
                        "image_id": int(index) if isinstance(index, (int, np.integer)) else index,
                        "category_id": cat_id,
                        "bbox": [float(xs[k]), float(ys[k]), float(ws[k]), float(hs[k])],
                        "score": float(dets[k, -1]),
                    }
                    for k in range(dets.shape[0])
                )
        print(f"Writing results json to {res_file}")
        with atomic_write(res_file, "w") as f:
            json.dump(results, f)
        return len(results)

    def evaluate_detections(self, all_boxes: list, output_dir: str) -> dict:
        """Write the json results and, for splits with annotations, run COCOeval (bbox)."""
        os.makedirs(output_dir, exist_ok=True)
        stem = os.path.join(output_dir, f"detections_{self._results_stem}_results")
        res_file = stem + (f"_{self._salt}" if self.config["use_salt"] else "") + ".json"
        count = self.write_results_file(all_boxes, res_file)
        if not (self._evaluate and self._has_gt):
            print(f"{self.name}: no annotations to evaluate against; results kept in {res_file}")
            return {"results_file": res_file}
        try:
            from frcnn.datasets.coco_eval import coco_detection_eval

            cat_ids = [self._class_to_coco_cat_id[c] for c in self.classes[1:]]
            result = coco_detection_eval(self._COCO, res_file, count, self.classes, cat_ids, output_dir)
        finally:
            if self.config["cleanup"] and os.path.exists(res_file):
                os.remove(res_file)
        return result


class coco(COCODataset):
    """An upstream COCO split: ``coco_<year>_<image_set>`` under a ``coco`` root folder."""

    def __init__(
        self,
        image_set: str,
        year: str,
        coco_root: str,
        cache_dir: str | None,
        proposals_dir: str | None = None,
    ) -> None:
        prefix = "image_info" if "test" in image_set else "instances"
        ann_file = os.path.join(coco_root, "annotations", f"{prefix}_{image_set}{year}.json")
        coco_name = image_set + year
        data_name = COCO_VIEW_MAP.get(coco_name, coco_name)
        self._image_set, self._year = image_set, str(year)
        super().__init__(
            f"coco_{year}_{image_set}",
            ann_file,
            os.path.join(coco_root, "images", data_name),
            cache_dir,
            data_name=data_name,
            proposals_dir=proposals_dir,
            results_stem=coco_name,
            evaluate="test" not in image_set,
        )
