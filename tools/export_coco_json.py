#!/usr/bin/env python3
"""Export a VOC-format set's ground truth as a COCO-format json (and its images beside it).

    python tools/export_coco_json.py --imdb toy_trainval --out data/toy_coco/annotations/train.json \\
        --image_dir data/toy_coco/images/train

writes the ``images``, ``annotations`` and ``categories`` of a COCO instances file: one image per
entry of the set (ids 1, 2, ... in the set's order, or from ``--first_id``), one annotation per
ground-truth box, ``bbox = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` (the inverse of the COCO loader's
``x2 = x1 + w - 1``, so the boxes come back unchanged), ``area = w * h``, ``iscrowd 0``.
``--no_annotations`` writes an ``image_info`` file instead (a test split: images and categories
only). Images are copied (hard-linked where the file system allows) into ``--image_dir`` as
``--file_name`` (a pattern with ``{id}``, e.g. ``COCO_train2014_{id:012d}.jpg``; default the
image's own file name).

Categories: ``--categories own`` (default) lists the set's classes; ``coco`` lists the 80 MS COCO
categories (ids 1..80 in the order of ``frcnn.datasets.coco.COCO_CLASSES``, not COCO's sparse
ids) and maps each class to a COCO name: by ``--map SRC=DST``, else through the COCO <-> VOC
name table (``aeroplane`` -> ``airplane``, ...), else by the same name; a class with no COCO name
is an error. The smoke mode of the paper's scripts builds its COCO splits with this tool
(``tools/paper_smoke_data.py``).
"""

from __future__ import annotations

import json
import os
import shutil

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.errors import InputError


def parse_args(argv=None):
    parser = tool_parser("Export a VOC-format set's ground truth as a COCO json", cfg=True, help_if_empty=True)
    parser.add_argument("--imdb", dest="imdb_name", required=True, help="the set to export (e.g. toy_trainval)")
    parser.add_argument("--out", required=True, help="the json file to write")
    add_flag(parser, "--image_dir", default=None,
             help="copy the images here (default: leave them, file_name = the image's path relative to the json)")
    add_flag(parser, "--file_name", default=None,
             help="file name pattern of the copied images, with {id} (e.g. COCO_train2014_{id:012d}.jpg)")
    parser.add_argument("--categories", choices=("own", "coco"), default="own",
                        help="own: the set's classes (default); coco: the 80 MS COCO categories")
    parser.add_argument("--map", dest="mapping", action="append", default=None, metavar="SRC=DST",
                        help="class SRC of the set is COCO category DST (repeatable; with --categories coco)")
    add_flag(parser, "--first_id", type=int, default=1, help="id of the first image (default 1)")
    add_flag(parser, "--no_annotations", action="store_true",
             help="write an image_info file (images and categories, no annotations), as COCO's test splits")
    return parser.parse_args(argv)


def category_names(classes: list[str], kind: str, mapping: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The category list and, for each class of the set, its category name."""
    own = [c for c in classes if c != "__background__"]
    unknown = sorted(set(mapping) - set(own))
    if unknown:
        raise InputError(f"--map: {', '.join(unknown)} is not a class of the set (classes: {', '.join(own)})")
    if kind == "own":
        if mapping:
            raise InputError("--map: only with --categories coco (own categories keep the set's names)")
        return own, {c: c for c in own}
    from frcnn.datasets.coco import COCO_CLASSES
    from frcnn.nets.surgery import COCO_TO_VOC

    voc_to_coco = {v: k for k, v in COCO_TO_VOC.items()}
    to_cat = {}
    for c in own:
        name = mapping.get(c, voc_to_coco.get(c, c))
        if name not in COCO_CLASSES:
            raise InputError(f"class '{c}' has no MS COCO category (as '{name}'); give one with --map {c}=<category>")
        to_cat[c] = name
    return list(COCO_CLASSES), to_cat


def coco_document(imdb, kind: str, mapping: dict[str, str], first_id: int, annotations: bool,
                  file_name) -> tuple[dict, list[tuple[str, str]]]:
    """The json document and the (source image, file_name) pairs of a set."""
    cats, to_cat = category_names(list(imdb.classes), kind, mapping)
    cat_id = {name: k + 1 for k, name in enumerate(cats)}
    images, anns, files = [], [], []
    roidb = imdb.gt_roidb() if annotations else [None] * imdb.num_images
    for i, entry in enumerate(roidb):
        image_id = first_id + i
        src = imdb.image_path_at(i)
        name = file_name(image_id, src)
        if entry is None:
            from frcnn.datasets.image_info import image_size

            width, height = image_size(src)
        else:
            width, height = int(entry["width"]), int(entry["height"])
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        files.append((src, name))
        if entry is None:
            continue
        for box, cls in zip(entry["boxes"].astype(float), entry["gt_classes"]):
            w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_id[to_cat[imdb.classes[cls]]],
                         "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
    doc = {"info": {"description": f"{imdb.name}, exported by tools/export_coco_json.py"},
           "images": images, "categories": [{"id": cat_id[n], "name": n, "supercategory": "none"} for n in cats]}
    if annotations:
        doc["annotations"] = anns
    return doc, files


def copy_image(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst`` (a copy where linking is not possible); replaces ``dst``."""
    tmp = dst + ".part"
    if os.path.exists(tmp):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def export(imdb, out: str, image_dir: str | None = None, pattern: str | None = None, kind: str = "own",
           mapping: dict[str, str] | None = None, first_id: int = 1, annotations: bool = True) -> dict:
    """Write ``out`` (and the images into ``image_dir``); returns the document."""
    from frcnn.utils.io import atomic_write

    if first_id < 0:
        raise InputError(f"--first_id: must be >= 0, got {first_id}")
    out_dir = os.path.dirname(os.path.abspath(out))

    def file_name(image_id: int, src: str) -> str:
        if image_dir is None:
            return os.path.relpath(src, out_dir)
        if pattern is None:
            return os.path.basename(src)
        try:
            return pattern.format(id=image_id)
        except (KeyError, IndexError, ValueError) as e:
            raise InputError(f"--file_name {pattern!r}: not a pattern with {{id}} ({e})") from None

    doc, files = coco_document(imdb, kind, mapping or {}, first_id, annotations, file_name)
    if image_dir is not None:
        os.makedirs(image_dir, exist_ok=True)
        names = [n for _, n in files]
        if len(set(names)) != len(names):
            raise InputError(f"--file_name {pattern!r}: gives two images the same name")
        for src, name in files:
            copy_image(src, os.path.join(image_dir, name))
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(out, "w") as f:
        json.dump(doc, f)
    return doc


def main(argv=None) -> int:
    args = parse_args(argv)
    args.cpu_mode = True
    cfg = config_from_args(args, show=False)
    from frcnn.datasets.factory import get_imdb

    from_map = {}
    for pair in args.mapping or []:
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise InputError(f"--map {pair!r}: expected SRC=DST")
        from_map[src.strip()] = dst.strip()
    imdb = get_imdb(args.imdb_name, cfg)
    doc = export(imdb, args.out, args.image_dir, args.file_name, args.categories, from_map, args.first_id,
                 not args.no_annotations)
    print(f"Wrote {args.out}: {len(doc['images'])} images, {len(doc.get('annotations', []))} annotations, "
          f"{len(doc['categories'])} categories")
    return 0


if __name__ == "__main__":
    run_tool(main)
