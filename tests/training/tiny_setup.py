"""Shared by the training/testing tests: a tiny generated VOC-format set and a tiny net.

The set: 96 x 128 PNG images (lossless, so the pixels are exact), noise background, one or
two filled squares per image, class 'red' or 'blue' by colour, sides 56-88 px (anchors of the
stride-16 nets start at 128 px, so at TRAIN.SCALES 192 the objects match them). The net:
the SMALL end2end net with every layer narrowed (fast on a CPU), written next to the data.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from frcnn.caffe.prototxt import parse_file, write_file
from frcnn.config import get_default_config
from frcnn.nets.adapt import adapt_net

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMALL = os.path.join(ROOT, "models", "pascal_voc", "SMALL", "faster_rcnn_end2end")
COLORS = {"red": (40, 40, 220), "blue": (220, 60, 40)}  # BGR
WIDTHS = {"conv1": 8, "conv2": 16, "conv3": 16, "conv4": 16, "conv5": 32, "rpn_conv/3x3": 32, "fc6": 64, "fc7": 64}


def make_tiny_voc(root: str, n_train: int = 8, n_test: int = 4, seed: int = 0) -> None:
    """Write ``root`` as a VOC-format set with splits trainval and test."""
    rng = np.random.RandomState(seed)
    for d in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    ids = {"trainval": [], "test": []}
    for i in range(n_train + n_test):
        split = "trainval" if i < n_train else "test"
        name = f"{i:06d}"
        ids[split].append(name)
        h, w = 96, 128
        im = rng.randint(90, 160, size=(h, w, 3)).astype(np.uint8)
        objs = []
        n_obj = 1 + (i % 2)
        for k in range(n_obj):
            cls = ("red", "blue")[(i + k) % 2]
            side = int(rng.randint(56, 89)) if n_obj == 1 else int(rng.randint(48, 60))
            x1 = int(rng.randint(0, w - side)) if n_obj == 1 else (0 if k == 0 else w - side)
            y1 = int(rng.randint(0, h - side))
            x2, y2 = x1 + side - 1, y1 + side - 1
            im[y1 : y2 + 1, x1 : x2 + 1] = COLORS[cls]
            objs.append((cls, x1, y1, x2, y2))
        cv2.imwrite(os.path.join(root, "JPEGImages", name + ".png"), im)
        xml = [f"<annotation><filename>{name}.png</filename>",
               f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
        for cls, x1, y1, x2, y2 in objs:  # VOC XML is 1-based
            xml.append(f"<object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                       f"<ymin>{y1 + 1}</ymin><xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object>")
        xml.append("</annotation>")
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write("\n".join(xml))
    for split, names in ids.items():
        with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("\n".join(names) + "\n")


def narrow(msg, num_classes: int):
    """The SMALL net with fewer channels (``WIDTHS``) and ``num_classes`` classes."""
    out = adapt_net(msg, num_classes)
    for layer in out.get_msgs("layer"):
        name = layer.get("name")
        if name in WIDTHS or name == "rpn_conv1":
            key = "inner_product_param" if "inner_product_param" in layer else "convolution_param"
            layer.get_msg(key).set("num_output", WIDTHS.get(name, WIDTHS["rpn_conv/3x3"]))
        if layer.get("type") == "DummyData":  # stands in for the pooled conv5 (C x 6 x 6)
            shape = layer.get_msg("dummy_data_param").get_msg("shape")
            dims = shape.get_ints("dim")
            shape.remove("dim")
            for d in [dims[0], WIDTHS["conv5"] * 36, *dims[2:]]:
                shape.add("dim", d)
    return out


def write_tiny_alt_opt(folder: str, num_classes: int = 3) -> str:
    """The SMALL alt-opt folder, narrowed, in ``folder`` (solvers pointing at the copies)."""
    src = os.path.join(ROOT, "models", "pascal_voc", "SMALL", "faster_rcnn_alt_opt")
    os.makedirs(folder, exist_ok=True)
    for f in sorted(os.listdir(src)):
        msg = parse_file(os.path.join(src, f))
        if msg.get_msgs("layer"):
            write_file(os.path.join(folder, f), narrow(msg, num_classes))
        else:
            net = os.path.basename(msg.get_str("train_net"))
            write_file(os.path.join(folder, f), msg.copy().set("train_net", os.path.join(folder, net)).set("display", 0))
    return folder


def write_tiny_nets(folder: str, num_classes: int = 3, base_lr: float = 0.01, prefix: str = "tiny") -> dict:
    """train/test prototxts and a solver in ``folder``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = {k: os.path.join(folder, f"{k}.prototxt") for k in ("train", "test", "solver")}
    write_file(paths["train"], narrow(parse_file(os.path.join(SMALL, "train.prototxt")), num_classes))
    write_file(paths["test"], narrow(parse_file(os.path.join(SMALL, "test.prototxt")), num_classes))
    solver = parse_file(os.path.join(SMALL, "solver.prototxt")).copy()
    solver.set("train_net", paths["train"]).set("base_lr", base_lr).set("snapshot_prefix", prefix)
    solver.set("display", 0)
    write_file(paths["solver"], solver)
    return paths


#: the end2end settings scaled down to the tiny set and net, on the CPU
TINY_SETTINGS = {
    "GPU_ID": -1,
    "USE_GPU_NMS": False,
    "TRAIN": {
        "SCALES": (192,),
        "MAX_SIZE": 256,
        "RPN_BATCHSIZE": 64,
        "BATCH_SIZE": 32,
        "RPN_PRE_NMS_TOP_N": 600,
        "RPN_POST_NMS_TOP_N": 100,
        "SNAPSHOT_ITERS": 4,
    },
    "TEST": {"SCALES": (192,), "MAX_SIZE": 256, "RPN_PRE_NMS_TOP_N": 300, "RPN_POST_NMS_TOP_N": 50},
}


def tiny_config(data_dir: str, out_root: str):
    """end2end settings (experiments/cfgs/faster_rcnn_end2end.yml) at the tiny scale, on the CPU."""
    from frcnn.config import cfg_from_file, merge_dict

    cfg = get_default_config()
    cfg_from_file(os.path.join(ROOT, "experiments", "cfgs", "faster_rcnn_end2end.yml"), cfg)
    merge_dict({"DATA_DIR": data_dir, "ROOT_DIR": out_root, **TINY_SETTINGS}, cfg, where="tiny_config")
    return cfg


def toy_config(root, method: str, num_trainval: int, num_test: int, seed: int):
    """The embedded toy set (``frcnn.datasets.toy``, the quick start's) made small under
    ``root/data/toy``, with the config the experiment scripts give it (``experiments/cfgs/<method>.yml``
    then ``toy.yml``), data and outputs under ``root``, on the CPU with the CPU NMS."""
    from frcnn.config import cfg_from_file
    from frcnn.datasets.toy import make_toy_dataset

    root = str(root)
    make_toy_dataset(os.path.join(root, "data", "toy"), num_trainval=num_trainval, num_test=num_test, seed=seed)
    cfg = get_default_config()
    for name in (f"{method}.yml", "toy.yml"):
        cfg_from_file(os.path.join(ROOT, "experiments", "cfgs", name), cfg)
    cfg.DATA_DIR, cfg.ROOT_DIR = os.path.join(root, "data"), root
    cfg.GPU_ID, cfg.USE_GPU_NMS = -1, False
    return cfg
