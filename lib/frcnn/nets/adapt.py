"""Copies of shipped prototxts for another class count, other anchors, another RPN box-loss weight.

The shipped nets are written for PASCAL VOC (21 classes) or COCO (81). For a set with K
classes (background included) three things change, exactly as one would edit them by
hand in py-faster-rcnn:

- ``num_classes`` in the ``param_str`` of Python layers (the data and proposal target layers);
- ``num_output`` of ``cls_score`` -> K;
- ``num_output`` of ``bbox_pred`` -> 4K.

Anchors (config ``ANCHOR_SCALES`` / ``ANCHOR_RATIOS``, the paper's Table 8): for A = #scales x
#ratios, ``num_output`` of ``rpn_cls_score`` -> 2A and of ``rpn_bbox_pred`` -> 4A (also in the
alt-opt Fast R-CNN nets, which carry a frozen RPN), the channel dim of the ``Reshape`` that makes
``rpn_cls_prob_reshape`` -> 2A, and ``'scales'`` / ``'ratios'`` in the ``param_str`` of the anchor
target and proposal layers. The layers are found by upstream's names and by what feeds the
anchor layers. A key left None keeps the net's own value (its param_str, else upstream's).

RPN box-loss weight (``TRAIN.RPN_LOSS_BBOX_WEIGHT``, the paper's lambda / 10, Table 9): the
``loss_weight`` of ``rpn_loss_bbox`` (and of any SmoothL1Loss fed by ``rpn_bbox_pred``).

A solver is copied with its ``train_net`` (or ``net``) pointing at the adapted copy of its
net. Adapted files go into the run's output folder; the shipped files never change. When
nothing differs, the original path is returned and nothing is written. The tools pass their
config (``cfg=``), from which the anchor and loss-weight settings are read.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

from frcnn.caffe.prototxt import Message, parse_file, write_file
from frcnn.caffe.python_layer import parse_param_str

_NUM_CLASSES = re.compile(r"""(['"]?num_classes['"]?\s*:\s*)(\d+)""")
_NET_FIELDS = ("train_net", "net")
#: python_param modules of the layers that place anchors (upstream's and ours)
_ANCHOR_MODULES = {"rpn.anchor_target_layer", "rpn.proposal_layer", "frcnn.rpn.anchor_target_layer",
                   "frcnn.rpn.proposal_layer"}
#: upstream's anchors (generate_anchors' defaults)
DEFAULT_SCALES = (8, 16, 32)
DEFAULT_RATIOS = (0.5, 1, 2)


@dataclasses.dataclass(frozen=True)
class NetSettings:
    """What an adapted net is made for; None = keep what the net says."""

    num_classes: int | None = None
    anchor_scales: tuple | None = None
    anchor_ratios: tuple | None = None
    rpn_loss_bbox_weight: float | None = None

    @classmethod
    def from_config(cls, cfg: Any, num_classes: int | None) -> NetSettings:
        """``num_classes`` and, from a run's config, ANCHOR_SCALES, ANCHOR_RATIOS and
        TRAIN.RPN_LOSS_BBOX_WEIGHT (None when ``cfg`` is None or lacks them)."""
        if cfg is None:
            return cls(num_classes)
        scales, ratios = cfg.get("ANCHOR_SCALES"), cfg.get("ANCHOR_RATIOS")
        weight = cfg.TRAIN.get("RPN_LOSS_BBOX_WEIGHT") if "TRAIN" in cfg else None
        return cls(num_classes, None if scales is None else tuple(scales), None if ratios is None else tuple(ratios),
                   None if weight is None else float(weight))


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


def _python_module(layer: Message) -> str:
    return str(layer.get_msg("python_param").get("module", "")) if "python_param" in layer else ""


def anchor_layers(msg: Message) -> list[Message]:
    """The net's anchor target and proposal layers."""
    return [lp for lp in _layers(msg) if _python_module(lp) in _ANCHOR_MODULES]


def net_anchors(msg: Message) -> tuple[tuple, tuple] | None:
    """(scales, ratios) the net's first anchor layer says (upstream's for a missing key), or
    None when the net has no anchor layer."""
    layers = anchor_layers(msg)
    if not layers:
        return None
    p = parse_param_str(str(layers[0].get_msg("python_param").get("param_str", "") or ""), "param_str")
    return tuple(p.get("scales", DEFAULT_SCALES)), tuple(p.get("ratios", DEFAULT_RATIOS))


def rpn_anchor_count(msg: Message) -> int | None:
    """A as the net's channels say: ``rpn_cls_score``'s num_output / 2 (None without an RPN)."""
    for layer in _layers(msg):
        if layer.get("name") == "rpn_cls_score":
            n = layer.get_msg("convolution_param").get_int("num_output")
            return None if n is None else n // 2
    return None


def _producers(msg: Message) -> dict[str, Message]:
    """Blob -> the (last) layer that writes it."""
    out = {}
    for layer in _layers(msg):
        for t in layer.get_strs("top"):
            out[t] = layer
    return out


def _rpn_layers(msg: Message) -> tuple[list[Message], list[Message], list[Message], list[Message]]:
    """(score convs (2A), delta convs (4A), reshapes to 2A channels, RPN box losses) by upstream's
    names and by what feeds the anchor layers."""
    prod = _producers(msg)
    cls_convs = [lp for lp in _layers(msg) if lp.get("name") == "rpn_cls_score"]
    box_convs = [lp for lp in _layers(msg) if lp.get("name") == "rpn_bbox_pred"]
    reshapes = [lp for lp in _layers(msg) if lp.get("type") == "Reshape" and "rpn_cls_prob_reshape" in lp.get_strs("top")]
    for lp in anchor_layers(msg):
        bottoms = lp.get_strs("bottom")
        first = prod.get(bottoms[0]) if bottoms else None
        if _python_module(lp).endswith("anchor_target_layer"):
            cls_convs += [first] if first is not None and first.get("type") == "Convolution" else []
        else:
            reshapes += [first] if first is not None and first.get("type") == "Reshape" else []
            second = prod.get(bottoms[1]) if len(bottoms) > 1 else None
            box_convs += [second] if second is not None and second.get("type") == "Convolution" else []
    box_tops = {t for lp in box_convs for t in lp.get_strs("top")}
    losses = [lp for lp in _layers(msg) if lp.get("name") == "rpn_loss_bbox"
              or (lp.get("type") == "SmoothL1Loss" and lp.get_strs("bottom")[:1] and lp.get_strs("bottom")[0] in box_tops)]

    def unique(xs: list[Message]) -> list[Message]:
        seen: list[Message] = []
        for x in xs:
            if not any(x is y for y in seen):
                seen.append(x)
        return seen

    return unique(cls_convs), unique(box_convs), unique(reshapes), unique(losses)


def _param_str(values: dict[str, Any]) -> str:
    """param_str text in upstream's style: one ``'key': value`` per line."""

    def text(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(text(x) for x in v) + "]"
        if isinstance(v, str):
            return repr(v)
        return str(v)

    return "\n".join(f"'{k}': {text(v)}" for k, v in values.items())


def wanted_anchors(msg: Message, settings: NetSettings, fallback: tuple[tuple, tuple] | None = None) -> tuple | None:
    """(scales, ratios) an adapted ``msg`` should have, or None when the settings leave them alone.
    A None key keeps the net's own value (``fallback``, else its param_str, else upstream's)."""
    if settings.anchor_scales is None and settings.anchor_ratios is None:
        return None
    own = fallback or net_anchors(msg) or (DEFAULT_SCALES, DEFAULT_RATIOS)
    return (tuple(settings.anchor_scales) if settings.anchor_scales is not None else own[0],
            tuple(settings.anchor_ratios) if settings.anchor_ratios is not None else own[1])


def _set_num_output(layer: Message, n: int) -> None:
    if "convolution_param" not in layer:
        raise layer.error("name", f"layer '{layer.get('name')}' has no convolution_param")
    layer.get_msg("convolution_param").set("num_output", n)


def _set_reshape_channels(layer: Message, channels: int) -> None:
    shape = layer.get_msg("reshape_param").get_msg("shape")
    dims = shape.get_ints("dim")
    if len(dims) < 2:
        raise layer.error("reshape_param", f"layer '{layer.get('name')}': expected a shape with >= 2 dims, got {dims}")
    shape.remove("dim")
    for d in [dims[0], channels, *dims[2:]]:
        shape.add("dim", d)


def adapt_net(msg: Message, num_classes: int | None, scales: Sequence[float] | None = None,
              ratios: Sequence[float] | None = None, rpn_loss_bbox_weight: float | None = None) -> Message:
    """A copy of a net message with K = ``num_classes`` classes (None: as it is), the anchors
    ``scales`` x ``ratios`` (None: as they are) and the RPN box-loss weight (see the module docstring)."""
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"adapt_net: num_classes must count background and >= 1 class, got {num_classes}")
    out = msg.copy()
    if num_classes is not None:
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
    cls_convs, box_convs, reshapes, losses = _rpn_layers(out)
    if scales is not None or ratios is not None:
        own = net_anchors(out) or (DEFAULT_SCALES, DEFAULT_RATIOS)
        scales = tuple(scales) if scales is not None else own[0]
        ratios = tuple(ratios) if ratios is not None else own[1]
        a = len(scales) * len(ratios)
        for layer in anchor_layers(out):
            pp = layer.get_msg("python_param")
            p = parse_param_str(str(pp.get("param_str", "") or ""), f"layer '{layer.get('name')}' param_str")
            p["scales"], p["ratios"] = list(scales), list(ratios)
            pp.set("param_str", _param_str(p))
        for layer in cls_convs:
            _set_num_output(layer, 2 * a)
        for layer in box_convs:
            _set_num_output(layer, 4 * a)
        for layer in reshapes:
            _set_reshape_channels(layer, 2 * a)
    if rpn_loss_bbox_weight is not None:
        for layer in losses:
            layer.set("loss_weight", float(rpn_loss_bbox_weight))
    return out


def adapt_for(msg: Message, settings: NetSettings, anchors: tuple | None = None) -> tuple[Message, list[str]]:
    """``msg`` adapted to ``settings`` (anchors: the (scales, ratios) to use, default
    :func:`wanted_anchors`), and what changed, in words (empty: nothing to change)."""
    changes = []
    k = settings.num_classes
    have_k = net_num_classes(msg)
    if k is not None and have_k is not None and have_k != k:
        changes.append(f"{have_k} -> {k} classes")
    else:
        k = None
    anchors = anchors if anchors is not None else wanted_anchors(msg, settings)
    if anchors is not None:
        have = net_anchors(msg)
        have_a = rpn_anchor_count(msg)
        a = len(anchors[0]) * len(anchors[1])
        rpn = have is not None or have_a is not None
        if rpn and ((have is not None and (tuple(have[0]), tuple(have[1])) != anchors) or (have_a not in (None, a))):
            changes.append(f"{have_a} -> {a} anchors (scales {list(anchors[0])}, ratios {list(anchors[1])})")
        else:
            anchors = None
    weight = settings.rpn_loss_bbox_weight
    if weight is not None:
        losses = _rpn_layers(msg)[3]
        old = [lp.get_floats("loss_weight") or [1.0] for lp in losses]
        if losses and any(w != [weight] for w in old):
            changes.append(f"rpn_loss_bbox loss_weight {old[0][0]:g} -> {weight:g}")
        else:
            weight = None
    if not changes:
        return msg, []
    scales, ratios = anchors if anchors is not None else (None, None)
    return adapt_net(msg, k, scales, ratios, weight), changes


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


def ensure_net_classes(prototxt: str, num_classes: int, dst_dir: str, cfg: Any = None) -> str:
    """``prototxt`` itself when it has K classes (or none at all) and, with ``cfg``, the config's
    anchors and RPN box-loss weight; else an adapted copy in ``dst_dir``."""
    msg = parse_file(prototxt)
    out, changes = adapt_for(msg, NetSettings.from_config(cfg, num_classes))
    if not changes:
        return prototxt
    dst = _adapted_name(prototxt, dst_dir)
    os.makedirs(dst_dir, exist_ok=True)
    write_file(dst, out)
    print(f"Adapted {prototxt} ({', '.join(changes)}): {dst}")
    return dst


def ensure_solver_classes(
    solver: str, num_classes: int, dst_dir: str, root_dir: str, overrides: dict[str, Any] | None = None,
    cfg: Any = None,
) -> str:
    """``solver`` itself when its net needs no change (:func:`ensure_net_classes`) and there are
    no ``overrides``; else a copy in ``dst_dir`` that trains the adapted net (and has the
    overridden solver fields)."""
    field, net_path = solver_net_path(solver, root_dir)
    new_net = ensure_net_classes(net_path, num_classes, dst_dir, cfg)
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


def adapt_model_dir(src_dir: str, num_classes: int, dst_dir: str, root_dir: str, cfg: Any = None) -> str:
    """For a folder of nets and solvers (alt-opt): ``src_dir`` when no net needs a change
    (:func:`ensure_net_classes`), else ``dst_dir`` holding adapted copies of all of them
    (solvers pointing at the copies). Every net gets the same anchors: a key left None takes
    the value of the folder's first net with anchor layers."""
    files = sorted(f for f in os.listdir(src_dir) if f.endswith((".prototxt", ".pt")))
    nets, solvers = [], []
    for f in files:
        msg = parse_file(os.path.join(src_dir, f))
        (nets if _layers(msg) else solvers).append((f, msg))
    settings = NetSettings.from_config(cfg, num_classes)
    own = next((net_anchors(m) for _, m in nets if net_anchors(m) is not None), None)
    anchors = wanted_anchors(Message(), settings, own)
    adapted = [(f, *adapt_for(msg, settings, anchors)) for f, msg in nets]
    if not any(changes for _, _, changes in adapted):
        return src_dir
    os.makedirs(dst_dir, exist_ok=True)
    for f, out, _changes in adapted:
        write_file(os.path.join(dst_dir, f), out)
    for f, msg in solvers:
        src = os.path.join(src_dir, f)
        field = next((n for n in _NET_FIELDS if n in msg), None)
        out = msg.copy()
        if field is not None:
            net = _resolve(msg.get_str(field), src, root_dir)
            out.set(field, os.path.abspath(os.path.join(dst_dir, os.path.basename(net))))
        write_file(os.path.join(dst_dir, f), out)
    changes = sorted({c for _, _, cs in adapted for c in cs})
    print(f"Adapted the nets of {src_dir} ({'; '.join(changes)}) in {dst_dir}")
    return dst_dir
