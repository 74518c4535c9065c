#!/usr/bin/env python3
"""The data of the paper scripts' smoke mode: the toy set laid out as the paper's datasets.

    python tools/paper_smoke_data.py --out output/paper_smoke/data          # build (once)
    python tools/paper_smoke_data.py rekey --src VOC.npz --coco_json J --out COCO.npz

``--out DIR`` becomes the smoke run's ``DATA_DIR``, holding a small toy set (``toy/``, made by
``frcnn.datasets.toy``: --trainval and --test images, default 16 and 8) under the names the
paper's tables use, so that every row runs the code path of the full run:

- ``VOCdevkit2007/VOC2007``: ``trainval`` = the first half of the toy trainval images, ``test`` =
  the first half of the toy test images;
- ``VOCdevkit2012/VOC2012``: ``trainval`` = the second half of each; its ``test`` split has no
  annotation files, as the real VOC2012 test (its results are packed for the evaluation server);
- ``coco/``: ``instances_train2014.json`` (= VOC2007 trainval), ``instances_val2014.json``
  (= VOC2007 test) and ``image_info_test-dev2015.json`` (= VOC2012 test, no annotations), written
  by ``tools/export_coco_json.py`` with the 80 COCO categories, images in ``images/train2014`` ...
  as ``COCO_<split>_<id>.jpg``.

The joined sets are then what they are in the paper: 07+12 = both trainval halves, 07++12 adds
the VOC2007 test images. The five toy shapes get VOC class names (circle aeroplane, square
tvmonitor, triangle sofa, star motorbike, ring bottle), four of which COCO spells otherwise
(airplane, tv, couch, motorcycle), so COCO -> VOC surgery maps names as on the real data. The other
15 VOC classes (75 COCO categories) have no objects: their AP is undefined and left out of the mean.

``rekey`` copies a proposal file made for a VOC view (``voc_2007_trainval``) to the ids of the COCO
json exported from it (same images, same order): the smoke stand-in for COCO's selective-search
files, which come from upstream's downloads on the real data.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from frcnn.cli import add_flag, config_from_args, run_tool, tool_parser
from frcnn.errors import InputError

#: toy class -> VOC class of the smoke copies
TOY_TO_VOC = {"circle": "aeroplane", "square": "tvmonitor", "triangle": "sofa", "star": "motorbike",
              "ring": "bottle"}
MARKER = ".paper_smoke_data.json"
#: the COCO splits of the smoke data: (json name, VOC view exported, image folder, annotated)
COCO_SPLITS = (
    ("instances_train2014", "voc_2007_trainval", "train2014", True),
    ("instances_val2014", "voc_2007_test", "val2014", True),
    ("image_info_test-dev2015", "voc_2012_test", "test2015", False),
)


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["rekey"]:
        parser = tool_parser("Give a VOC view's proposal file the ids of its COCO export")
        parser.add_argument("--src", required=True, help="proposal file (.npz) of the VOC view")
        add_flag(parser, "--coco_json", required=True, help="the COCO json exported from that view")
        parser.add_argument("--out", required=True, help="proposal file (.npz) to write")
        args = parser.parse_args(argv[1:])
        args.command = "rekey"
        return args
    parser = tool_parser("Build the smoke data of experiments/scripts/paper (the toy set as VOC and COCO)",
                         help_if_empty=True)
    parser.add_argument("--out", required=True, help="the smoke DATA_DIR to build")
    parser.add_argument("--trainval", type=int, default=16, help="toy trainval images (default 16)")
    parser.add_argument("--test", type=int, default=8, help="toy test images (default 8)")
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists with these settings")
    args = parser.parse_args(argv)
    args.command = "build"
    return args


def voc_split(toy: str, devkit: str, year: str, splits: dict[str, list[str]], annotated: set[str]) -> None:
    """``devkit/VOC<year>`` with the given splits of toy ids; the classes renamed to VOC's."""
    root = os.path.join(devkit, f"VOC{year}")
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for split, ids in splits.items():
        for i in ids:
            shutil.copyfile(os.path.join(toy, "JPEGImages", i + ".jpg"), os.path.join(root, "JPEGImages", i + ".jpg"))
            if split in annotated:
                with open(os.path.join(toy, "Annotations", i + ".xml")) as f:
                    xml = f.read()
                for a, b in TOY_TO_VOC.items():
                    xml = xml.replace(f"<name>{a}</name>", f"<name>{b}</name>")
                xml = xml.replace("<folder>toy</folder>", f"<folder>VOC{year}</folder>")
                with open(os.path.join(root, "Annotations", i + ".xml"), "w") as f:
                    f.write(xml)
        with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")


def build(out: str, n_trainval: int, n_test: int, force: bool) -> str:
    """Build the smoke DATA_DIR ``out`` (replaced when its settings differ or ``force``)."""
    from export_coco_json import export

    from frcnn.config import get_default_config
    from frcnn.datasets.factory import get_imdb
    from frcnn.datasets.toy import make_toy_dataset

    if n_trainval < 4 or n_test < 2:
        raise InputError(f"--trainval / --test: need at least 4 and 2 images (two halves each), got {n_trainval}, "
                         f"{n_test}")
    out = os.path.abspath(out)
    settings = {"trainval": n_trainval, "test": n_test, "format": 1}
    marker = os.path.join(out, MARKER)
    if os.path.exists(marker) and not force:
        with open(marker) as f:
            if json.load(f) == settings:
                print(f"Smoke data already built: {out}")
                return out
    if os.path.exists(out):
        if not os.path.exists(marker):
            raise FileExistsError(f"{out}: exists and is not smoke data made by this tool; not replacing it")
        shutil.rmtree(out)
    toy = os.path.join(out, "toy")
    make_toy_dataset(toy, n_trainval, n_test, seed=0)

    def ids(split: str) -> list[str]:
        with open(os.path.join(toy, "ImageSets", "Main", split + ".txt")) as f:
            return [x.strip() for x in f if x.strip()]

    tv, te = ids("trainval"), ids("test")
    htv, hte = len(tv) // 2, len(te) // 2
    voc_split(toy, os.path.join(out, "VOCdevkit2007"), "2007", {"trainval": tv[:htv], "test": te[:hte]},
              {"trainval", "test"})
    voc_split(toy, os.path.join(out, "VOCdevkit2012"), "2012", {"trainval": tv[htv:], "test": te[hte:]},
              {"trainval"})
    cfg = get_default_config()
    cfg.DATA_DIR = out
    first = 1
    for name, view, folder, annotated in COCO_SPLITS:
        imdb = get_imdb(view, cfg)
        export(imdb, os.path.join(out, "coco", "annotations", name + ".json"),
               os.path.join(out, "coco", "images", folder), f"COCO_{folder}_{{id:012d}}.jpg", "coco",
               first_id=first, annotations=annotated)
        first += imdb.num_images
    with open(marker, "w") as f:
        json.dump(settings, f)
    print(f"Wrote the smoke data to {out}: VOC2007 trainval {htv} / test {hte}, VOC2012 trainval {len(tv) - htv} / "
          f"test {len(te) - hte} images; COCO train2014 / val2014 / test-dev2015 from the VOC2007 trainval / "
          "VOC2007 test / VOC2012 test images")
    return out


def rekey(src: str, coco_json: str, out: str) -> None:
    """Write ``src``'s boxes under the image ids of ``coco_json`` (same images, same order)."""
    from frcnn.datasets.proposals import load_proposals, save_proposals

    boxes, _ = load_proposals(src)
    try:
        with open(coco_json) as f:
            images = json.load(f)["images"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"--coco_json {coco_json}: not a readable COCO json with images ({e})") from None
    if len(images) != len(boxes):
        raise InputError(f"--src {src} holds {len(boxes)} images, --coco_json {coco_json} {len(images)}")
    save_proposals(out, boxes, [str(im["id"]) for im in images])
    print(f"Wrote {out}: the proposals of {src} under the ids of {coco_json}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "rekey":
        rekey(args.src, args.coco_json, args.out)
        return 0
    args.cpu_mode = True
    config_from_args(args, show=False)
    build(args.out, args.trainval, args.test, args.force)
    return 0


if __name__ == "__main__":
    run_tool(main)
