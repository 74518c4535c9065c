"""Dataset names to imdbs (upstream's ``lib/datasets/factory.py``), plus our own sets.

Names:
- ``voc_<year>_<split>``: PASCAL VOC under ``<DATA_DIR>/VOCdevkit<year>`` (2007, 2012).
- ``coco_<year>_<split>``: MS COCO under ``<DATA_DIR>/coco`` (2014: train, val, minival,
  valminusminival; 2015: test, test-dev).
- ``<name>_<split>``: a VOC-format folder ``<DATA_DIR>/<name>`` (``ImageSets/Main/<split>.txt``),
  or a COCO-format folder ``<DATA_DIR>/<name>`` with ``annotations/<split>.json`` and the
  images in ``images/<split>/`` (or ``images/``). ``toy_trainval`` is the embedded toy set.
- ``coco_json:<file.json>[:<image folder>]``: any COCO-format json; images are looked up by
  ``file_name`` in the given folder (default: the json's folder). Its name is the json's stem.
- ``a+b``: the listed sets joined, for training: the paper's "07+12" is
  ``voc_2007_trainval+voc_2012_trainval``, "07++12" ``voc_2007_trainval+voc_2007_test+voc_2012_trainval``,
  COCO "trainval" ``coco_2014_train+coco_2014_val``. RPN proposals for a joined set are one file
  in the joined order (:class:`frcnn.datasets.combined.CombinedImdb`).
"""

from __future__ import annotations

import os
import re
from typing import Any

from frcnn.datasets.imdb import imdb
from frcnn.errors import InputError, UnknownNameError

UPSTREAM_NAMES = (
    [f"voc_{y}_{s}" for y in ("2007", "2012") for s in ("train", "val", "trainval", "test")]
    + [f"coco_2014_{s}" for s in ("train", "val", "minival", "valminusminival")]
    + [f"coco_2015_{s}" for s in ("test", "test-dev")]
)


def _dirs(cfg: Any) -> tuple[str, str]:
    data_dir = os.path.abspath(cfg.DATA_DIR)
    return data_dir, os.path.join(data_dir, "cache")


def _upstream_imdb(name: str, data_dir: str, cache_dir: str) -> imdb | None:
    """``voc_<year>_<split>`` or ``coco_<year>_<split>`` in upstream's folders, else None."""
    m = re.fullmatch(r"(voc|coco)_(\d{4})_(.+)", name)
    if m is None:
        return None
    family, year, split = m.groups()
    if family == "voc":
        from frcnn.datasets.pascal_voc import pascal_voc as dataset

        root, proposals = "VOCdevkit" + year, "selective_search_data"
    else:
        from frcnn.datasets.coco import coco as dataset

        root, proposals = "coco", "coco_proposals"
    return dataset(
        split, year, os.path.join(data_dir, root), cache_dir, proposals_dir=os.path.join(data_dir, proposals)
    )


def _custom_imdb(name: str, data_dir: str, cache_dir: str) -> imdb | None:
    from frcnn.datasets.voc_format import VOCFormatDataset, is_voc_folder

    parts = name.split("_")
    for k in range(len(parts) - 1, 0, -1):
        base, split = "_".join(parts[:k]), "_".join(parts[k:])
        root = os.path.join(data_dir, base)
        if not os.path.isdir(root):
            continue
        if is_voc_folder(root) and os.path.isfile(os.path.join(root, "ImageSets", "Main", split + ".txt")):
            return VOCFormatDataset(
                name, split, root, cache_dir, proposals_dir=os.path.join(data_dir, "selective_search_data")
            )
        ann = os.path.join(root, "annotations", split + ".json")
        if os.path.isfile(ann):
            from frcnn.datasets.coco import COCODataset

            images = os.path.join(root, "images", split)
            if not os.path.isdir(images):
                images = os.path.join(root, "images")
            return COCODataset(name, ann, images, cache_dir)
    return None


def _coco_json_imdb(spec: str, cache_dir: str) -> imdb:
    from frcnn.datasets.coco import COCODataset

    rest = spec[len("coco_json:") :]
    json_path, image_dir = rest, None
    if ":" in rest:
        json_path, image_dir = rest.split(":", 1)
    if not json_path:
        raise InputError(f"'{spec}': expected coco_json:<file.json>[:<image folder>]")
    json_path = os.path.abspath(os.path.expanduser(json_path))
    image_dir = os.path.abspath(os.path.expanduser(image_dir)) if image_dir else os.path.dirname(json_path)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(os.path.basename(json_path))[0])
    return COCODataset(stem, json_path, image_dir, cache_dir)


def get_imdb(name: str, cfg: Any) -> imdb:
    """The imdb called ``name`` (see the module docstring); ``cfg.DATA_DIR`` locates the data."""
    data_dir, cache_dir = _dirs(cfg)
    if name.startswith("coco_json:"):
        return _coco_json_imdb(name, cache_dir)
    if "+" in name:
        from frcnn.datasets.combined import CombinedImdb

        parts = name.split("+")
        if not all(parts):
            raise InputError(f"dataset '{name}': an empty name in a joined ('a+b') dataset")
        return CombinedImdb([get_imdb(n, cfg) for n in parts], name)
    found = _upstream_imdb(name, data_dir, cache_dir)
    if found is not None:
        return found
    found = _custom_imdb(name, data_dir, cache_dir)
    if found is not None:
        return found
    if name.startswith("toy_") and not os.path.isdir(os.path.join(data_dir, "toy")):
        raise UnknownNameError(
            f"Unknown dataset: {name}: {data_dir}/toy does not exist; make it with tools/make_toy_dataset.py"
        )
    raise UnknownNameError(
        f"Unknown dataset: {name} (known here: {', '.join(list_imdbs(cfg))}; a VOC-format folder at "
        f"{data_dir}/<name> with ImageSets/Main/<split>.txt is called <name>_<split>)"
    )


def list_imdbs(cfg: Any) -> list[str]:
    """Upstream's names and the custom sets found in ``cfg.DATA_DIR``."""
    from frcnn.datasets.voc_format import is_voc_folder

    data_dir, _ = _dirs(cfg)
    names = list(UPSTREAM_NAMES)
    if os.path.isdir(data_dir):
        for base in sorted(os.listdir(data_dir)):
            root = os.path.join(data_dir, base)
            if base.startswith("VOCdevkit") or base in ("coco", "cache"):
                continue
            if os.path.isdir(root) and is_voc_folder(root):
                main = os.path.join(root, "ImageSets", "Main")
                names += [
                    f"{base}_{f[:-4]}"
                    for f in sorted(os.listdir(main))
                    if f.endswith(".txt") and "_" not in f
                ]
            elif os.path.isdir(os.path.join(root, "annotations")):
                ann = os.path.join(root, "annotations")
                names += [f"{base}_{f[:-5]}" for f in sorted(os.listdir(ann)) if f.endswith(".json")]
    return names
