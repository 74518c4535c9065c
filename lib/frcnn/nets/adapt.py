"""Copies of shipped prototxts for a dataset with another number of classes.

The shipped nets are written for PASCAL VOC (21 classes) or COCO (81). For a set with K
classes (background included) three things change, exactly as one would edit them by
hand in py-faster-rcnn:

- ``num_classes`` in the ``param_str`` of Python layers (the data and proposal target layers);
- ``num_output`` of ``cls_score`` -> K;
- ``num_output`` of ``bbox_pred`` -> 4K.

A solver is copied with its ``train_net`` (or ``net``) pointing at the adapted copy of its
net. Adapted files go into the run's output folder; the shipped files never change. When
K already matches, the original path is returned and nothing is written.
"""

from __future__ import annotations

import os
import re
from typing import Any

from frcnn.caffe.prototxt import Message, parse_file, write_file

_NUM_CLASSES = re.compile(r"""(['"]?num_classes['"]?\s*:\s*)(\d+)""")
_NET_FIELDS = ("train_net", "net")


def _layers(msg: Message) -> list[Message]:
    return msg.get_msgs("layer") + msg.get_msgs("layers")


def net_num_classes(msg: Message) -> int | None:
    """K as the net declares it: ``cls_score``'s outputs, else a Python layer's ``num_classes``."""
    for layer in _layers(msg):
        if layer.get("name") == "cls_score":
            return layer.get_msg("inner_product_param").get_int("num_output")
    for layer in _layers(msg):
        m = _NUM_CLASSES.search(str(layer.get_msg("python_param").get("param_str", "")))
        if m:
            return int(m.group(2))
    return None


def adapt_net(msg: Message, num_classes: int) -> Message:
    """A copy of a net message with K = ``num_classes`` (see the module docstring)."""
    if num_classes < 2:
        raise ValueError(f"adapt_net: num_classes must count background and >= 1 class, got {num_classes}")
    out = msg.copy()
    for layer in _layers(out):
        pp = layer.get_msg("python_param") if "python_param" in layer else None
        if pp is not None and "param_str" in pp:
            pp.set("param_str", _NUM_CLASSES.sub(lambda m: m.group(1) + str(num_classes), pp.get("param_str")))
        name = layer.get("name")
        if name in ("cls_score", "bbox_pred"):
            param_name = "inner_product_param" if "inner_product_param" in layer else "convolution_param"
            if param_name not in layer:
                raise layer.error("name", f"layer '{name}' has neither inner_product_param nor convolution_param")
            layer.get_msg(param_name).set("num_output", num_classes if name == "cls_score" else 4 * num_classes)
    return out


def _resolve(path: str, solver_path: str, root_dir: str) -> str:
    """A solver's net path as the engine finds it: absolute, from the cwd, the project root,
    or beside the solver."""
    if os.path.isabs(path):
        return path
    for base in (os.getcwd(), root_dir, os.path.dirname(os.path.abspath(solver_path))):
        cand = os.path.join(base, path)
        if os.path.exists(cand):
            return os.path.abspath(cand)
    raise FileNotFoundError(f"{solver_path}: net file '{path}' not found (cwd, {root_dir} or beside the solver)")


def solver_net_path(solver_path: str, root_dir: str) -> tuple[str, str]:
    """(field name, resolved path) of the net a solver trains."""
    msg = parse_file(solver_path)
    for field in _NET_FIELDS:
        if field in msg:
            return field, _resolve(msg.get_str(field), solver_path, root_dir)
    raise msg.error("train_net", "solver names no net (train_net or net)")


def _adapted_name(path: str, dst_dir: str) -> str:
    return os.path.join(dst_dir, os.path.basename(path))


def ensure_net_classes(prototxt: str, num_classes: int, dst_dir: str) -> str:
    """``prototxt`` itself when it has K classes (or none at all), else an adapted copy in ``dst_dir``."""
    msg = parse_file(prototxt)
    have = net_num_classes(msg)
    if have is None or have == num_classes:
        return prototxt
    dst = _adapted_name(prototxt, dst_dir)
    os.makedirs(dst_dir, exist_ok=True)
    write_file(dst, adapt_net(msg, num_classes))
    print(f"Adapted {prototxt} from {have} to {num_classes} classes: {dst}")
    return dst


def ensure_solver_classes(
    solver: str, num_classes: int, dst_dir: str, root_dir: str, overrides: dict[str, Any] | None = None
) -> str:
    """``solver`` itself when its net has K classes and there are no ``overrides``; else a copy
    in ``dst_dir`` that trains the adapted net (and has the overridden solver fields)."""
    field, net_path = solver_net_path(solver, root_dir)
    new_net = ensure_net_classes(net_path, num_classes, dst_dir)
    if new_net == net_path and not overrides:
        return solver
    msg = parse_file(solver).copy()
    msg.set(field, os.path.abspath(new_net))
    for k, v in (overrides or {}).items():
        msg.set(k, v)
    dst = _adapted_name(solver, dst_dir)
    os.makedirs(dst_dir, exist_ok=True)
    write_file(dst, msg)
    print(f"Wrote solver {dst} (net {new_net})")
    return dst


def adapt_model_dir(src_dir: str, num_classes: int, dst_dir: str, root_dir: str) -> str:
    """For a folder of nets and solvers (alt-opt): ``src_dir`` when every net has K classes,
    else ``dst_dir`` holding adapted copies of all of them (solvers pointing at the copies)."""
    files = sorted(f for f in os.listdir(src_dir) if f.endswith((".prototxt", ".pt")))
    nets, solvers = [], []
    for f in files:
        msg = parse_file(os.path.join(src_dir, f))
        (nets if _layers(msg) else solvers).append((f, msg))
    if all(net_num_classes(m) in (None, num_classes) for _, m in nets):
        return src_dir
    os.makedirs(dst_dir, exist_ok=True)
    for f, msg in nets:
        write_file(os.path.join(dst_dir, f), adapt_net(msg, num_classes))
    for f, msg in solvers:
        src = os.path.join(src_dir, f)
        field = next((n for n in _NET_FIELDS if n in msg), None)
        out = msg.copy()
        if field is not None:
            net = _resolve(msg.get_str(field), src, root_dir)
            out.set(field, os.path.abspath(os.path.join(dst_dir, os.path.basename(net))))
        write_file(os.path.join(dst_dir, f), out)
    print(f"Adapted the nets of {src_dir} to {num_classes} classes in {dst_dir}")
    return dst_dir
