#!/usr/bin/env python
"""Write every net and solver prototxt under models/ from the per-net definitions below.

Usage:
    python tools/dev/make_model_prototxts.py            # (re)write models/**/*.prototxt
    python tools/dev/make_model_prototxts.py --check    # exit 1 if a file differs from what we would write
    python tools/dev/make_model_prototxts.py --anchor_scales 8 --anchor_ratios 0.5,1,2 \
        --only models/pascal_voc/VGG16/faster_rcnn_alt_opt --out DIR
        # the nets for other anchors (Table 8), under DIR/models/...; solvers name their nets by
        # absolute path; the shipped files are not touched

The files mirror py-faster-rcnn's models/ (same layer and blob names, shapes, fillers,
lr_mult/decay_mult and solver settings; upstream's alt-opt `.pt` files are `.prototxt` here) so
that its .caffemodel weights load by layer name. Each file is plain Caffe prototxt: edit a copy
freely; edit this script to change the shipped ones (tests/models checks they match its output).
The small CPU net is defined in one place, `SMALL` below; models/README.md says why it is so.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from _prototxt_parts import (
    DEFAULT_RATIOS,
    NetDef,
    det_head,
    det_losses,
    dummy_fc,
    layer,
    proposal_targets,
    proposals,
    python,
    render,
    rpn_head,
    rpn_losses,
    trunk,
)

from frcnn.utils.io import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def vgg16_trunk() -> list[tuple]:
    """13 3x3 convs (conv1_1 .. conv5_3), max-pools after blocks 1-4; no pool5."""
    ops: list[tuple] = []
    for block, (n, ch) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], start=1):
        for i in range(1, n + 1):
            ops += [("conv", f"conv{block}_{i}", ch, 3, 1, 1), ("relu", f"relu{block}_{i}")]
        if block < 5:
            ops.append(("pool", f"pool{block}", 2, 2, 0))
    return ops


def five_conv_trunk(convs: list[tuple], lrn: tuple | None, pool: tuple, bn: bool = False) -> list[tuple]:
    """conv1 [bn] relu [norm1] pool1, conv2 likewise, conv3..conv5 (+relu): ZF / VGG_CNN_M style.

    convs: (num_output, kernel, stride, pad) x 5; lrn: (local_size, alpha, beta, k, region) or None;
    pool: (kernel, stride, pad) of pool1 and pool2; bn: BatchNorm+Scale after every conv."""
    ops: list[tuple] = []
    for i, (ch, k, s, p) in enumerate(convs, start=1):
        ops.append(("conv", f"conv{i}", ch, k, s, p))
        ops += [("bn", f"bn{i}", f"scale{i}")] if bn else []
        ops.append(("relu", f"relu{i}"))
        if i <= 2:
            ops += [("lrn", f"norm{i}") + lrn] if lrn else []
            ops.append(("pool", f"pool{i}") + pool)
    return ops


VGG16 = NetDef("VGG16", "VGG_ILSVRC_16_layers", "vgg16", vgg16_trunk(), "conv5_3",
               ("conv1_1", "conv1_2", "conv2_1", "conv2_2"), 512, ("roi_pool5", "pool5", 7), (4096, 4096),
               test_dropout_alt=False, end2end_iter_size=2)
ZF = NetDef("ZF", "ZF", "zf",
            five_conv_trunk([(96, 7, 2, 3), (256, 5, 2, 2), (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1)],
                            (3, 0.00005, 0.75, None, "WITHIN_CHANNEL"), (3, 2, 1)),
            "conv5", (), 256, ("roi_pool_conv5", "roi_pool_conv5", 6), (4096, 4096),
            alt_opt_rpn_conv1=True, scale_train=False, end2end_iter_size=2)
VGG_CNN_M_1024 = NetDef(
    "VGG_CNN_M_1024", "VGG_CNN_M_1024", "vgg_cnn_m_1024",
    five_conv_trunk([(96, 7, 2, 0), (256, 5, 2, 1), (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1)],
                    (5, 0.0005, 0.75, 2.0, None), (3, 2, 0)),
    "conv5", ("conv1",), 256, ("roi_pool5", "pool5", 6), (4096, 1024))
# The small net for CPU runs (ours; upstream has none): ZF's geometry and names (stride 16, the
# same conv5 size, rpn_conv1 in alt-opt) with 3x3 convs, BatchNorm+Scale after every conv, narrow
# channels and fc layers, trained from scratch. Stepsizes are for the toy set; scripts set --iters.
SMALL = NetDef("SMALL", "SMALL", "small",
               five_conv_trunk([(32, 3, 2, 1), (64, 3, 2, 1), (128, 3, 1, 1), (128, 3, 1, 1), (256, 3, 1, 1)],
                               None, (3, 2, 1), bn=True),
               "conv5", (), 256, ("roi_pool_conv5", "roi_pool_conv5", 6), (512, 512),
               alt_opt_rpn_conv1=True, scratch=True, base_lr=0.01, steps=(1500, 1000, 2000, 2000))

ALL_METHODS = ("faster_rcnn_alt_opt", "faster_rcnn_end2end", "fast_rcnn")
# (dataset, net, methods, num_classes, anchor scales); COCO: 81 classes, 12 anchors
MATRIX = [("pascal_voc", net, ALL_METHODS, 21, (8, 16, 32)) for net in (ZF, VGG16, VGG_CNN_M_1024, SMALL)]
MATRIX += [("coco", net, ALL_METHODS, 81, (4, 8, 16, 32)) for net in (VGG16, VGG_CNN_M_1024)]
# BCCD blood cells (ours; experiments/cfgs/bccd.yml): 3 classes + background. At the native 480 px the
# cells measure about 30-55 px (platelets), 85-120 px (red cells) and 120-240 px (white cells), below
# or between the default anchors of 128, 256 and 512 px; anchors of 32-256 px in steps of about
# sqrt(2) give every cell an anchor of IoU >= 0.7. The end2end step (lr / 10) comes at 3/4 of the
# CPU schedule of experiments/cfgs/bccd.yml, ITERS=5000 (--iters comes from the script).
BCCD_SCALES = (2, 2.83, 4, 5.66, 8, 11.31, 16)
SMALL_BCCD = dataclasses.replace(SMALL, steps=(1500, 1000, 3750, 2000))
MATRIX += [("bccd", SMALL_BCCD, ("faster_rcnn_end2end",), 4, BCCD_SCALES)]
# The embedded toy set (ours; experiments/cfgs/toy.yml): 5 shape classes + background. Its objects
# measure 20-90 px in images of about 200 x 160, i.e. 27-150 px at the toy's training scale, mostly
# below the smallest default anchor (128 px): a 40 px box has IoU 0.1 with it, so the RPN would only
# get the per-gt "best anchor" positives. Anchors of 32, 64, 128 and 256 px cover the range.
# Its end2end solver fits the 3000-iteration CPU quick start (experiments/scripts): base_lr 0.02
# and the step at 2400 (measured: docs/benchmarks.md).
# Its alt-opt solvers fit the toy schedule of experiments/scripts/faster_rcnn_alt_opt.sh
# (ALT_ITERS 800,3000,1000,800): the end2end base_lr 0.02 in every step, and each step's lr / 10
# at 3/4 of its iterations, upstream's ratio (the solver names: 60k of 80k, 30k of 40k).
SMALL_TOY = dataclasses.replace(SMALL, base_lr=0.02, steps=(1500, 1000, 2400, 2000), alt_steps=(600, 2250, 750, 600))
MATRIX += [("toy", SMALL_TOY, ("faster_rcnn_end2end", "faster_rcnn_alt_opt"), 6, (2, 4, 8, 16))]
COCO_STEPS = {"faster_rcnn_end2end": 350000, "fast_rcnn": 200000}
# COCO alt-opt (ours; upstream shipped none): the paper's step at 240k in every step (Sec. 4.2: 240k
# iterations, then 80k at lr / 10), at upstream's single-GPU lr; experiments/cfgs/coco_paper.yml adds
# the paper's lr 0.003 and 8-GPU minibatch. File names as the VOC folders' (alt_opt.SOLVERS).
COCO_ALT_STEPS = (240000, 240000)
DATASETS = {"pascal_voc": "PASCAL VOC", "coco": "COCO", "bccd": "BCCD", "toy": "the toy set"}
GENERATED = "# Written by tools/dev/make_model_prototxts.py (edit that script to change the shipped file)."


def data_layer(classes: int, rpn: bool) -> str:
    tops = ["data", "im_info", "gt_boxes"] if rpn else [
        "data", "rois", "labels", "bbox_targets", "bbox_inside_weights", "bbox_outside_weights"]
    return python("input-data" if rpn else "data", [], tops, "roi_data_layer.layer", "RoIDataLayer",
                  f"'num_classes': {classes}")


def test_inputs(second: str) -> str:
    """data (reshaped per image) and im_info (H, W, scale) or rois (batch index, x1, y1, x2, y2)."""
    dims = {"im_info": (1, 3), "rois": (1, 5)}[second]
    return "\n".join(render([("input", "data"), ("input_shape", [("dim", d) for d in (1, 3, 224, 224)]),
                             ("input", second), ("input_shape", [("dim", d) for d in dims])]))


def net_text(net: NetDef, title: str, sections: list[tuple]) -> str:
    parts = [f"# {title}\n{GENERATED}\nname: \"{net.name}\"\n"]
    for heading, chunks in sections:
        parts += ([f"#========= {heading} ============\n"] if heading else []) + [c + "\n" for c in chunks]
    return "\n".join(parts)


def net_files(ds: str, net: NetDef, method: str, classes: int, scales: tuple,
              ratios: tuple = DEFAULT_RATIOS) -> dict[str, str]:
    """The nets of one models/<ds>/<NET>/<method>/ folder: file stem -> text."""
    anchors = len(ratios) * len(scales)
    what = f"{net.folder}, {{}}, {DATASETS[ds]} ({classes} classes)"
    cls_prob = layer("cls_prob", "Softmax", ["cls_score"], ["cls_prob"])
    trunk_for = {mode: ("conv1-conv5", trunk(net, mode)) for mode in ("train", "frozen", "test")}
    if method == "fast_rcnn":
        return {"train": net_text(net, what.format("Fast R-CNN training net (proposals come with the data)"), [
                    (None, [data_layer(classes, rpn=False)]), trunk_for["train"],
                    ("RCNN", det_head(net, "train", classes) + det_losses(propagate=False))]),
                "test": net_text(net, what.format("Fast R-CNN test net"), [
                    (None, [test_inputs("rois")]), trunk_for["test"],
                    ("RCNN", det_head(net, "test", classes) + [cls_prob])])}
    test = [(None, [test_inputs("im_info")]), trunk_for["test"], ("RPN", rpn_head(net, method, "test", anchors)),
            ("RoI Proposal", proposals(scales, ["rois"], ratios))]
    if method == "faster_rcnn_end2end":
        return {"train": net_text(net, what.format("Faster R-CNN approximate joint (end2end) training net"), [
                    (None, [data_layer(classes, rpn=True)]), trunk_for["train"],
                    ("RPN", rpn_head(net, method, "train", anchors) + rpn_losses(scales, ratios)),
                    ("RoI Proposal", proposals(scales, ["rpn_rois"], ratios) + [proposal_targets(classes)]),
                    ("RCNN", det_head(net, "train", classes) + det_losses(propagate=True))]),
                "test": net_text(net, what.format("Faster R-CNN test net"),
                                 test + [("RCNN", det_head(net, "test", classes) + [cls_prob])])}
    files = {}
    silence = [layer(f"silence_{b}", "Silence", [b]) for b in ("rpn_cls_score", "rpn_bbox_pred")]
    for stage, mode in ((1, "train"), (2, "frozen")):
        files[f"stage{stage}_rpn_train"] = net_text(net, what.format(f"alt-opt stage {stage} RPN training net"), [
            (None, [data_layer(classes, rpn=True)]), trunk_for[mode],
            ("RPN", rpn_head(net, method, "train", anchors) + rpn_losses(scales, ratios)),
            ("RCNN (frozen and silenced: only carries fc6/fc7 into the saved model)", dummy_fc(net))])
        files[f"stage{stage}_fast_rcnn_train"] = net_text(
            net, what.format(f"alt-opt stage {stage} Fast R-CNN training net"), [
                (None, [data_layer(classes, rpn=False)]), trunk_for[mode],
                ("RCNN", det_head(net, "train", classes) + det_losses(propagate=False)),
                ("RPN (frozen and silenced: only carries the RPN into the saved model)",
                 rpn_head(net, method, "frozen", anchors, reshape=False) + silence)])
    files["rpn_test"] = net_text(net, what.format("alt-opt RPN-only net (proposal generation)"), [
        (None, [test_inputs("im_info")]), trunk_for["test"], ("RPN", rpn_head(net, method, "test", anchors)),
        ("RoI Proposal", proposals(scales, ["rois", "scores"], ratios))])
    files["faster_rcnn_test"] = net_text(net, what.format("Faster R-CNN test net (alt-opt naming)"), test + [
        ("RCNN", det_head(net, "test", classes, dropout=net.test_dropout_alt) + [cls_prob])])
    return files


def solver_text(ds: str, net: NetDef, method: str, train: str, stepsize: int, prefix: str, iter_size: int,
                net_root: str = "models") -> str:
    msg = [("train_net", f"{net_root}/{ds}/{net.folder}/{method}/{train}.prototxt"), ("base_lr", net.base_lr),
           ("lr_policy", "step"), ("gamma", 0.1), ("stepsize", stepsize), ("display", 20),
           ("average_loss", 100), ("momentum", 0.9), ("weight_decay", 0.0005), ("iter_size", iter_size)]
    return "\n".join([
        f"# {net.folder}, {method} solver, {DATASETS[ds]}", GENERATED, *render(msg),
        "# Caffe's own snapshotting is off: the training loop snapshots (un-normalising bbox_pred)",
        "# and names its files after snapshot_prefix.", *render([("snapshot", 0), ("snapshot_prefix", prefix)]), ""])


def all_files(anchor_scales: tuple | None = None, anchor_ratios: tuple | None = None,
              net_root: str = "models") -> dict[str, str]:
    """Every file this script writes: path relative to the project root -> text. ``anchor_scales``
    / ``anchor_ratios`` replace every net's (None: the shipped ones); ``net_root`` is where the
    solvers' ``train_net`` paths start."""
    out = {}
    for ds, net, methods, classes, scales in MATRIX:
        scales = tuple(anchor_scales) if anchor_scales is not None else scales
        ratios = tuple(anchor_ratios) if anchor_ratios is not None else DEFAULT_RATIOS
        rpn_steps, alt_steps, e2e_steps, frcn_steps = net.steps
        if ds == "coco":
            rpn_steps, alt_steps = COCO_ALT_STEPS
        alt_opt_steps = net.alt_steps or (rpn_steps, alt_steps, rpn_steps, alt_steps)
        for method in methods:
            folder = f"models/{ds}/{net.folder}/{method}"
            out.update({f"{folder}/{stem}.prototxt": text
                        for stem, text in net_files(ds, net, method, classes, scales, ratios).items()})
            if method == "faster_rcnn_alt_opt":
                for s in (1, 2):
                    rpn_step, frcn_step = alt_opt_steps[2 * s - 2:2 * s]
                    out[f"{folder}/stage{s}_rpn_solver60k80k.prototxt"] = solver_text(
                        ds, net, method, f"stage{s}_rpn_train", rpn_step, f"{net.prefix}_rpn", 1, net_root)
                    out[f"{folder}/stage{s}_fast_rcnn_solver30k40k.prototxt"] = solver_text(
                        ds, net, method, f"stage{s}_fast_rcnn_train", frcn_step, f"{net.prefix}_fast_rcnn", 1, net_root)
                continue
            end2end = method == "faster_rcnn_end2end"
            steps = COCO_STEPS[method] if ds == "coco" else e2e_steps if end2end else frcn_steps
            out[f"{folder}/solver.prototxt"] = solver_text(
                ds, net, method, "train", steps, f"{net.prefix}_{'faster' if end2end else 'fast'}_rcnn",
                net.end2end_iter_size if end2end else 1, net_root)
    return out


def number_list(text: str) -> tuple:
    """'8,16,32' or '[8, 16, 32]' -> (8, 16, 32): positive numbers, ints where whole."""
    words = [w for w in text.strip().strip("[]").replace(" ", "").split(",") if w]
    try:
        values = [float(w) for w in words]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return tuple(int(v) if v.is_integer() else v for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a file differs")
    parser.add_argument("--root", default=ROOT, help="project root (default: this checkout)")
    parser.add_argument("--anchor_scales", "--anchor-scales", type=number_list, default=None,
                        help="anchor scales in units of the stride, e.g. 8 or 8,16,32 (Table 8); needs --out")
    parser.add_argument("--anchor_ratios", "--anchor-ratios", type=number_list, default=None,
                        help="anchor aspect ratios h/w, e.g. 1 or 0.5,1,2 (Table 8); needs --out")
    parser.add_argument("--out", default=None,
                        help="write under this folder (DIR/models/...) instead of the project root")
    parser.add_argument("--only", default=None,
                        help="only the files under this path, e.g. models/pascal_voc/VGG16/faster_rcnn_end2end")
    args = parser.parse_args(argv)
    if (args.anchor_scales or args.anchor_ratios) and not args.out:
        parser.error("--anchor_scales/--anchor_ratios write nets other than the shipped ones: give --out DIR")
    if args.out and args.check:
        parser.error("--check compares the shipped files: it takes no --out")
    root = os.path.abspath(args.out) if args.out else args.root
    net_root = os.path.join(root, "models") if args.out else "models"
    files = all_files(args.anchor_scales, args.anchor_ratios, net_root)
    if args.only:
        prefix = args.only.rstrip("/") + "/"
        files = {rel: text for rel, text in files.items() if rel.startswith(prefix)}
        if not files:
            parser.error(f"--only {args.only}: no file this script writes lies under it")
    differ = []
    for rel, text in files.items():
        path = os.path.join(root, rel)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if old != text:
            differ.append(rel)
            if not args.check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with atomic_write(path, "w") as f:
                    f.write(text)
    verb = "differ from what tools/dev/make_model_prototxts.py writes" if args.check else "written"
    print(f"{len(differ)} file(s) {verb}" + "".join(f"\n  {p}" for p in differ))
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
