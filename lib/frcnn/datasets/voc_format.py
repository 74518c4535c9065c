"""Any PASCAL-VOC-format folder as an imdb.

A folder ``<root>`` with ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` (or .jpeg/.png/.bmp)
and ``ImageSets/Main/<split>.txt``. Classes come from ``<root>/classes.txt`` (one name per
line, ``#`` comments, an optional leading ``__background__``) or else from every annotation
file in ``Annotations/`` (all splits, so every split gets the same order), sorted. Names are
compared lower-cased. At ``<DATA_DIR>/<name>`` the set is called ``<name>_<split>``.
"""

from __future__ import annotations

import glob
import json
import os
import uuid
import warnings
from collections.abc import Sequence

from frcnn.datasets import roidb_io
from frcnn.datasets.imdb import imdb
from frcnn.datasets.voc_xml import AnnotationWarning, read_voc_xml, voc_gt_entry
from frcnn.errors import InputError
from frcnn.utils.io import atomic_write

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


def is_voc_folder(path: str) -> bool:
    """True if ``path`` has the Annotations/, JPEGImages/ and ImageSets/Main/ folders."""
    return all(
        os.path.isdir(os.path.join(path, d))
        for d in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main"))
    )


def read_classes_file(path: str) -> list[str]:
    """Class names of a classes.txt (without ``__background__``), lower-cased."""
    names: list[str] = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            name = line.split("#", 1)[0].strip().lower()
            if not name:
                continue
            if name == "__background__":
                if names:
                    raise InputError(f"{path}:{n}: __background__ may only be the first class")
                continue
            if name in names:
                raise InputError(f"{path}:{n}: class '{name}' is listed twice")
            names.append(name)
    if not names:
        raise InputError(f"{path}: lists no classes")
    return names


def collect_classes(annotation_dir: str, cache_dir: str | None = None) -> list[str]:
    """Sorted distinct object names (lower-cased) over every XML file in ``annotation_dir``."""
    files = sorted(glob.glob(os.path.join(annotation_dir, "*.xml")))
    if not files:
        raise FileNotFoundError(f"{annotation_dir}: no .xml annotation files to read the classes from")
    cache = None
    if cache_dir:
        key = roidb_io.fingerprint(["voc_classes", os.path.abspath(annotation_dir)], files)
        cache = os.path.join(cache_dir, f"classes_{key}.json")
        if os.path.exists(cache):
            try:
                with open(cache) as f:
                    return list(json.load(f))
            except (OSError, ValueError):
                pass
    names = sorted({obj.name for path in files for obj in read_voc_xml(path).objects})
    if not names:
        raise InputError(f"{annotation_dir}: the annotation files hold no objects, so no classes")
    if cache:
        with atomic_write(cache, "w") as f:
            json.dump(names, f)
    return names


class VOCFormatDataset(imdb):
    """A VOC-format folder (``data_path``) and one of its splits."""

    def __init__(
        self,
        name: str,
        image_set: str,
        data_path: str,
        cache_dir: str | None,
        classes: Sequence[str] | None = None,
        proposals_dir: str | None = None,
        use_07_metric: bool = False,
    ) -> None:
        if not is_voc_folder(data_path):
            raise FileNotFoundError(
                f"{data_path}: not a VOC-format folder (needs Annotations/, JPEGImages/ and ImageSets/Main/)"
            )
        self._image_set = image_set
        self._data_path = data_path
        if classes is None:
            cls_file = os.path.join(data_path, "classes.txt")
            if os.path.exists(cls_file):
                classes = read_classes_file(cls_file)
            else:
                classes = collect_classes(os.path.join(data_path, "Annotations"), cache_dir)
        classes = [c for c in classes if c != "__background__"]
        super().__init__(name, ("__background__", *classes), cache_dir)
        self._class_to_ind = {c: i for i, c in enumerate(self.classes)}
        self._image_index = self._load_image_set_index()
        self._image_paths: dict[str, str] = {}
        self._proposals_dir = proposals_dir
        self._salt = str(uuid.uuid4())
        self._comp_id = "comp4"
        self._roidb_handler = self.gt_roidb
        self.config = {
            "cleanup": True,
            "use_salt": True,
            "use_diff": False,
            "matlab_eval": False,
            "rpn_file": None,
            "min_size": 2,
            "use_07_metric": use_07_metric,
        }

    # ---------------------------------------------------------------- paths
    @property
    def data_path(self) -> str:
        return self._data_path

    @property
    def image_set(self) -> str:
        return self._image_set

    def image_set_file(self) -> str:
        return os.path.join(self._data_path, "ImageSets", "Main", self._image_set + ".txt")

    def annotation_path(self, index: str) -> str:
        return os.path.join(self._data_path, "Annotations", index + ".xml")

    def image_path_at(self, i: int) -> str:
        return self.image_path_from_index(self._image_index[i])

    def image_path_from_index(self, index: str) -> str:
        """JPEGImages/<id>.jpg, or the first of .jpeg/.png/.bmp that exists."""
        path = self._image_paths.get(index)
        if path is None:
            base = os.path.join(self._data_path, "JPEGImages", index)
            path = next((base + e for e in IMAGE_EXTS if os.path.exists(base + e)), None)
            if path is None:
                raise FileNotFoundError(
                    f"{base}.jpg: image file not found (also tried {', '.join(IMAGE_EXTS[1:])})"
                )
            self._image_paths[index] = path
        return path

    def _load_image_set_index(self) -> list[str]:
        path = self.image_set_file()
        if not os.path.exists(path):
            have = sorted(
                os.path.splitext(f)[0] for f in os.listdir(os.path.dirname(path)) if f.endswith(".txt")
            )
            raise FileNotFoundError(
                f"{path}: image set file not found (splits here: {', '.join(have) or 'none'})"
            )
        with open(path) as f:
            index = [x.strip() for x in f]
        index = [x for x in index if x]
        for x in index:
            if len(x.split()) != 1:
                raise InputError(f"{path}: line '{x}' is not a single image id (ids cannot hold spaces)")
        if not index:
            raise InputError(f"{path}: image set is empty")
        return index

    # ---------------------------------------------------------------- roidbs
    def _gt_key(self) -> str:
        files = [self.image_set_file()]
        files += [self.annotation_path(i) for i in self._image_index]
        files += [self.image_path_from_index(i) for i in self._image_index]
        return roidb_io.fingerprint(
            ["voc_gt", os.path.abspath(self._data_path), self.classes, bool(self.config["use_diff"])], files
        )

    def gt_roidb(self) -> list[dict]:
        """Ground-truth roidb (cached under the cache folder, keyed by the annotation files)."""
        return self._cached_roidb(f"{self.name}_gt_roidb", self._gt_key(), self._build_gt_roidb)

    def _build_gt_roidb(self) -> list[dict]:
        from frcnn.datasets.image_info import image_size

        unknown: dict[str, int] = {}
        roidb = []
        for index in self._image_index:
            record = read_voc_xml(self.annotation_path(index))
            size = image_size(self.image_path_from_index(index))
            roidb.append(
                voc_gt_entry(record, self._class_to_ind, size, bool(self.config["use_diff"]), unknown)
            )
        if unknown:
            listed = ", ".join(f"{k} ({v})" for k, v in sorted(unknown.items()))
            warnings.warn(
                AnnotationWarning(
                    f"{self.name}: objects of classes not in the class list were left out: {listed}"
                ),
                stacklevel=2,
            )
        return roidb

    def _include_gt_with_proposals(self) -> bool:
        return True

    def rpn_roidb(self) -> list[dict]:
        """gt + RPN proposals from ``config['rpn_file']``."""
        if self._include_gt_with_proposals():
            gt_roidb = self.gt_roidb()
            return self.merge_roidbs(gt_roidb, self._load_rpn_roidb(gt_roidb))
        return self._load_rpn_roidb(None)

    def selective_search_roidb(self) -> list[dict]:
        """gt + selective-search boxes from ``<proposals_dir>/<name>.mat`` (or ``.npz``, or the
        file ``tools/selective_search.py`` computed)."""
        path = self._proposal_file("selective_search")
        gt_roidb = self.gt_roidb() if self._include_gt_with_proposals() else None
        key = roidb_io.fingerprint(
            ["ss", self.config["min_size"], gt_roidb is not None],
            [path]
            + (
                [self.image_set_file()] + [self.annotation_path(i) for i in self._image_index]
                if gt_roidb is not None
                else []
            ),
        )

        def build() -> list[dict]:
            ss = self._load_box_file_roidb(path, gt_roidb)
            return self.merge_roidbs(gt_roidb, ss) if gt_roidb is not None else ss

        return self._cached_roidb(f"{self.name}_selective_search_roidb", key, build)

    def image_paths(self) -> list[str]:
        """The image file of every entry, in order."""
        return [self.image_path_from_index(i) for i in self._image_index]

    def selective_search_file(self) -> str:
        """Where ``tools/selective_search.py`` writes this set's boxes (keyed by its images)."""
        from frcnn.datasets.selective_search import cache_file

        if not self._proposals_dir:
            raise InputError(f"imdb {self.name}: no folder for selective_search proposals was given")
        return cache_file(self._proposals_dir, self.name, self.image_paths())

    def _proposal_file(self, method: str) -> str:
        """Upstream's ``<name>.mat``, else ``<name>.npz``, else (selective search) the file
        ``tools/selective_search.py`` computed for these images."""
        if not self._proposals_dir:
            raise InputError(f"imdb {self.name}: no folder for {method} proposals was given")
        base = os.path.join(self._proposals_dir, self.name)
        for ext in (".mat", ".npz"):
            if os.path.exists(base + ext):
                return base + ext
        computed = self.selective_search_file() if method == "selective_search" else None
        if computed is not None and os.path.exists(computed):
            return computed
        hint = f" nor {os.path.basename(computed)}; compute it with tools/selective_search.py --imdb {self.name}"
        raise FileNotFoundError(f"{base}.mat: {method} data not found (nor {base}.npz{hint if computed else ''})")

    def _load_box_file_roidb(self, path: str, gt_roidb: list | None) -> list[dict]:
        from frcnn.datasets import ds_utils
        from frcnn.datasets.proposals import load_proposal_file

        box_list, ids = load_proposal_file(path)
        self._check_proposal_ids(path, box_list, ids)
        kept = []
        for boxes in box_list:
            boxes = boxes[ds_utils.unique_boxes(boxes), :]
            boxes = boxes[ds_utils.filter_small_boxes(boxes, self.config["min_size"]), :]
            kept.append(boxes)
        return self.create_roidb_from_box_list(kept, gt_roidb)

    # ---------------------------------------------------------------- evaluation
    def _get_comp_id(self) -> str:
        return self._comp_id + "_" + self._salt if self.config["use_salt"] else self._comp_id

    def _results_dir(self, output_dir: str) -> str:
        return os.path.join(output_dir, "results")

    def _annotation_cache_dir(self) -> str | None:
        return os.path.join(self._cache_dir, "annotations_cache") if self._cache_dir else None

    def results_file_template(self, output_dir: str) -> str:
        """``<results dir>/<comp_id>_det_<image_set>_{:s}.txt``."""
        folder = self._results_dir(output_dir)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, self._get_comp_id() + "_det_" + self._image_set + "_{:s}.txt")

    def evaluate_detections(self, all_boxes: list, output_dir: str) -> dict:
        """Write comp4 results files, compute per-class AP, print and return them."""
        from frcnn.datasets.voc_results import do_python_eval, write_voc_results_file

        if len(all_boxes) != self.num_classes:
            raise InputError(
                f"evaluate_detections: all_boxes has {len(all_boxes)} classes, {self.name} has {self.num_classes}"
            )
        if self.config["matlab_eval"]:
            raise NotImplementedError(
                "config['matlab_eval']: the MATLAB devkit evaluation is not supported; "
                "the Python evaluation reproduces it"
            )
        for j, per_class in enumerate(all_boxes):
            if len(per_class) != self.num_images:
                raise InputError(
                    f"evaluate_detections: all_boxes[{j}] has {len(per_class)} images, {self.name} has {self.num_images}"
                )
        template = self.results_file_template(output_dir)
        paths = write_voc_results_file(all_boxes, self._image_index, self.classes, template)
        try:
            result = do_python_eval(
                self.classes,
                template,
                os.path.join(self._data_path, "Annotations", "{:s}.xml"),
                self.image_set_file(),
                self._annotation_cache_dir(),
                output_dir,
                bool(self.config["use_07_metric"]),
            )
        finally:
            if self.config["cleanup"]:
                for p in paths:
                    if os.path.exists(p):
                        os.remove(p)
        return result

    def competition_mode(self, on: bool) -> None:
        self.config["use_salt"] = not on
        self.config["cleanup"] = not on
