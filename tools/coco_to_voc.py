#!/usr/bin/env python3
"""Narrow a COCO-trained detector to the PASCAL VOC classes (the paper's Table 12).

    python tools/coco_to_voc.py COCO.caffemodel VOC21.caffemodel

keeps background and the 20 VOC classes' rows of cls_score and bbox_pred, picked by class
name (COCO's airplane -> aeroplane, motorcycle -> motorbike, couch -> sofa, dining table ->
diningtable, potted plant -> pottedplant, tv -> tvmonitor; the other 14 are spelled alike),
and copies every other layer. The result is tested on VOC directly ("COCO, no VOC") or
fine-tuned on it ("COCO+VOC07+12": WEIGHTS=VOC21.caffemodel, see the README). Class lists:
'coco' (the 80 categories in id order), 'voc' (the 20 VOC classes), a text file with one
name per line, or comma-separated names; --map SRC=DST adds or overrides a name mapping.
"""

import os

from frcnn.cli import add_flag, run_tool, tool_parser
from frcnn.errors import InputError


def class_list(value: str, flag: str) -> list:
    """A class list argument: 'coco', 'voc', a file (one name per line, # comments) or 'a,b,c'."""
    from frcnn.datasets.coco import COCO_CLASSES
    from frcnn.datasets.pascal_voc import VOC_CLASSES

    if value.lower() == "coco":
        return list(COCO_CLASSES)
    if value.lower() == "voc":
        return list(VOC_CLASSES)
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            names = [line.split("#", 1)[0].strip() for line in f]
        names = [n for n in names if n]
        if not names:
            raise InputError(f"{flag} {value}: the file lists no class names")
        return names
    names = [n.strip() for n in value.split(",")]
    if not all(names):
        raise InputError(f"{flag} {value!r}: an empty class name (expected 'coco', 'voc', a file or 'a,b,c')")
    return names


def mapping_pairs(pairs: list, flag: str = "--map") -> dict:
    out = {}
    for pair in pairs or []:
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise InputError(f"{flag} {pair!r}: expected SRC=DST (a source and a destination class name)")
        out[src.strip()] = dst.strip()
    return out


def parse_args(argv=None):
    parser = tool_parser("Keep a COCO model's VOC class rows (cls_score, bbox_pred)", help_if_empty=True)
    parser.add_argument("src", help="the COCO-trained model (.caffemodel)")
    parser.add_argument("dst", help="where to write the narrowed model (.caffemodel)")
    add_flag(parser, "--src_classes", default="coco",
             help="the source model's classes without background: coco (default), voc, a file or a,b,c")
    add_flag(parser, "--dst_classes", default="voc",
             help="the classes to keep, in the new order: voc (default), coco, a file or a,b,c")
    parser.add_argument("--map", dest="mapping", action="append", default=None, metavar="SRC=DST",
                        help="a source class name -> destination class name (repeatable; added to the "
                             "built-in COCO -> VOC table)")
    add_flag(parser, "--cls_layer", default="cls_score", help="the class score layer (default cls_score)")
    add_flag(parser, "--bbox_layer", default="bbox_pred",
             help="the class-specific box layer (default bbox_pred; 'none' if the model has none)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from frcnn.nets.surgery import COCO_TO_VOC, narrow_classes, with_background

    if not os.path.isfile(args.src):
        raise FileNotFoundError(f"{args.src}: no such model file")
    if os.path.abspath(args.src) == os.path.abspath(args.dst):
        raise InputError(f"{args.dst}: the output would overwrite the source model; give another path")
    src = class_list(args.src_classes, "--src_classes")
    dst = class_list(args.dst_classes, "--dst_classes")
    bbox = None if args.bbox_layer.lower() == "none" else args.bbox_layer
    picked = narrow_classes(args.src, args.dst, src, dst, COCO_TO_VOC, checked=mapping_pairs(args.mapping),
                            cls_layer=args.cls_layer, bbox_layer=bbox)
    print(f"{'new row':>7}  {'old row':>7}  class")
    for new, (old, s, d) in enumerate(picked):
        print(f"{new:7d}  {old:7d}  {d}" + (f"  (from {s})" if s != d else ""))
    layers = args.cls_layer + (f" and {bbox} (4 rows per class)" if bbox else "")
    print(f"Wrote {args.dst}: {len(picked)} classes of {len(with_background(src))} kept in {layers}; other layers copied")
    return 0


if __name__ == "__main__":
    run_tool(main)
