"""Pieces of py-faster-rcnn's nets as prototxt text, for tools/dev/make_model_prototxts.py.

A message is a list of (field, value) pairs; a value is a scalar or a message. A net is made of
a trunk (conv1..conv5), an RPN head, the proposal layers and a detection head, each rendered for
one `mode`: "train" (stage-1, end2end and fast_rcnn freezing), "frozen" (alt-opt stage 2: the
whole trunk fixed) or "test" (no learning settings, as upstream's test nets).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class NetDef:
    """One network: its trunk ops and the settings that differ between nets."""

    folder: str  # models/<dataset>/<folder>/
    name: str  # the prototxt's `name:`
    prefix: str  # snapshot_prefix stem
    trunk: list  # ops: ("conv", name, n, k, s, p), ("bn", bn, scale), ("relu", name), ("lrn", ...), ("pool", ...)
    feature: str  # blob the RPN and RoI pooling read
    frozen: tuple  # convs with lr_mult 0 in stage-1, end2end and fast_rcnn nets
    rpn_channels: int
    roi: tuple  # (layer name, top blob, pooled size)
    fc: tuple  # (fc6, fc7) widths
    alt_opt_rpn_conv1: bool = False  # alt-opt nets name the RPN conv rpn_conv1 (ZF; #256)
    scale_train: bool = True  # Dropout scale_train (ZF: false)
    test_dropout_alt: bool = True  # faster_rcnn_test keeps drop6/drop7 (VGG16's omits them)
    end2end_iter_size: int = 1
    scratch: bool = False  # trained from scratch: msra fillers, no conv bias, BatchNorm+Scale
    base_lr: float = 0.001
    steps: tuple = (60000, 30000, 50000, 30000)  # rpn, alt-opt fast_rcnn, end2end, fast_rcnn
    # the four alt-opt solvers' stepsizes (stage-1 rpn, stage-1 fast_rcnn, stage-2 rpn, stage-2
    # fast_rcnn); None: steps' rpn and alt-opt fast_rcnn ones for both stages, as upstream
    alt_steps: tuple | None = None


# ---------------------------------------------------------------------------------------------
# Text.


class Enum(str):
    """A bare enum word (MAX, WITHIN_CHANNEL) rather than a quoted string."""


@dataclasses.dataclass(frozen=True)
class Note:
    """A scalar followed by a `# comment` on its line."""

    value: object
    comment: str


INLINE = {"param", "weight_filler", "bias_filler", "data_filler", "filler", "shape", "input_shape",
          "reshape_param", "smooth_l1_loss_param", "batch_norm_param", "loss_param", "dropout_param"}


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (Enum, int)):
        return str(v)
    if isinstance(v, float):
        s = f"{v:.10f}".rstrip("0")
        return s + "0" if s.endswith(".") else s
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _inline(msg: list) -> str:
    return " ".join(f"{k} {{ {_inline(v)} }}" if isinstance(v, list) else f"{k}: {_scalar(v)}" for k, v in msg)


def render(msg: list, indent: int = 0) -> list[str]:
    """Prototxt lines of a message: short sub-messages (param, fillers, shapes) on one line."""
    pad, out = "  " * indent, []
    for key, value in msg:
        if isinstance(value, Note):
            out.append(f"{pad}{key}: {_scalar(value.value)}  # {value.comment}")
        elif not isinstance(value, list):
            out.append(f"{pad}{key}: {_scalar(value)}")
        elif key in INLINE:
            out.append(f"{pad}{key} {{ {_inline(value)} }}")
        else:
            out += [f"{pad}{key} {{", *render(value, indent + 1), f"{pad}}}"]
    return out


def layer(name, type_, bottom=(), top=(), params=(), body=()) -> str:
    msg = [("name", name), ("type", type_)] + [("bottom", b) for b in bottom] + [("top", t) for t in top]
    msg += [("param", p) for p in params] + list(body)
    return "\n".join(render([("layer", msg)]))


LEARN = ([("lr_mult", 1)], [("lr_mult", 2)])  # weights, biases (no decay_mult: biases decay too)
FREEZE = ([("lr_mult", 0), ("decay_mult", 0)],) * 2
ZERO = [("type", "constant"), ("value", 0)]
MSRA = [("type", "msra")]


def gauss(std: float) -> list:
    return [("type", "gaussian"), ("std", std)]


def conv(name, bottom, top, n, k, s=1, p=0, params=(), weight=None, bias=True, explicit=False) -> str:
    cp = [("num_output", n), ("kernel_size", k)]
    cp += [("pad", p)] if p or explicit else []
    cp += [("stride", s)] if s != 1 or explicit else []
    cp += [] if bias else [("bias_term", False)]
    if weight:
        cp += [("weight_filler", weight)] + ([("bias_filler", ZERO)] if bias else [])
    return layer(name, "Convolution", [bottom], [top], params, [("convolution_param", cp)])


def fc(name, bottom, n, params=(), weight=None) -> str:
    ip = [("num_output", n)] + ([("weight_filler", weight), ("bias_filler", ZERO)] if weight else [])
    return layer(name, "InnerProduct", [bottom], [name], params, [("inner_product_param", ip)])


def relu(name, blob) -> str:
    return layer(name, "ReLU", [blob], [blob])


def python(name, bottom, top, module, cls, param_str) -> str:
    body = [("python_param", [("module", module), ("layer", cls), ("param_str", param_str)])]
    return layer(name, "Python", bottom, top, body=body)


# ---------------------------------------------------------------------------------------------
# Nets.


def trunk(net: NetDef, mode: str) -> list[str]:
    out, blob = [], "data"
    weight = MSRA if net.scratch and mode != "test" else None
    for op in net.trunk:
        kind, name = op[0], op[1]
        if kind == "conv":
            frozen = mode == "frozen" or (mode == "train" and name in net.frozen)
            params = () if mode == "test" else FREEZE if frozen else LEARN
            params = params[:1] if net.scratch else params  # BatchNorm follows: no conv bias
            out.append(conv(name, blob, name, *op[2:], params=params, weight=weight, bias=not net.scratch))
            blob = name
        elif kind == "bn":  # Caffe's BatchNorm (statistics only, never learned) + Scale (the affine)
            stats = () if mode == "test" else FREEZE + FREEZE[:1]
            # Every phase normalises with the statistics of the image(s) at hand: training runs one
            # image per batch, so running averages (Caffe's, moving_average_fraction 0.999) lag the
            # weights of a short schedule and differ from any one image's statistics; on the toy
            # set, test-time global statistics cost 0.13 mAP (0.27 vs 0.40, docs/benchmarks.md).
            use_global = [("batch_norm_param", [("use_global_stats", False)])]
            out.append(layer(name, "BatchNorm", [blob], [blob], stats, use_global))
            affine = {"test": (), "frozen": FREEZE, "train": ([("lr_mult", 1), ("decay_mult", 0)],) * 2}[mode]
            sp = [("bias_term", True)]
            sp += [] if mode == "test" else [("filler", [("type", "constant"), ("value", 1)]), ("bias_filler", ZERO)]
            out.append(layer(op[2], "Scale", [blob], [blob], affine, [("scale_param", sp)]))
        elif kind == "relu":
            out.append(relu(name, blob))
        elif kind == "lrn":
            size, alpha, beta, k, region = op[2:]
            lp = [("local_size", size), ("alpha", alpha), ("beta", beta)] + ([("k", k)] if k is not None else [])
            lp += [("norm_region", Enum(region)), ("engine", Enum("CAFFE"))] if region else []
            out.append(layer(name, "LRN", [blob], [name], body=[("lrn_param", lp)]))
            blob = name
        elif kind == "pool":
            k, s, p = op[2:]
            pp = [("pool", Enum("MAX")), ("kernel_size", k), ("stride", s)] + ([("pad", p)] if p else [])
            out.append(layer(name, "Pooling", [blob], [name], body=[("pooling_param", pp)]))
            blob = name
        else:
            raise ValueError(f"{net.folder}: unknown trunk op {op!r}")
    return out


def rpn_names(net: NetDef, method: str) -> tuple[str, str, str]:
    """(conv layer, its top, relu layer) of the RPN's 3x3 conv."""
    if method == "faster_rcnn_alt_opt" and net.alt_opt_rpn_conv1:
        return "rpn_conv1", "rpn_conv1", "rpn_relu1"
    return "rpn_conv/3x3", "rpn/output", "rpn_relu/3x3"


def rpn_head(net: NetDef, method: str, mode: str, anchors: int, reshape: bool = True) -> list[str]:
    conv_name, out, relu_name = rpn_names(net, method)
    params = {"train": LEARN, "frozen": FREEZE, "test": ()}[mode]
    w = None if mode == "test" else gauss(0.01)
    cls_n = Note(2 * anchors, f"2 (bg/fg) x {anchors} anchors")
    box_n = Note(4 * anchors, f"4 x {anchors} anchors")
    layers = [conv(conv_name, net.feature, out, net.rpn_channels, 3, 1, 1, params, w, explicit=True),
              relu(relu_name, out),
              conv("rpn_cls_score", out, "rpn_cls_score", cls_n, 1, 1, 0, params, w, explicit=True),
              conv("rpn_bbox_pred", out, "rpn_bbox_pred", box_n, 1, 1, 0, params, w, explicit=True)]
    return layers + ([reshape_layer("rpn_cls_score_reshape", "rpn_cls_score", 2)] if reshape else [])


def reshape_layer(name, bottom, channels) -> str:
    """(1, C, H, W) -> (1, channels, C*H/channels, W): 0 copies a dimension, -1 is inferred."""
    shape = [("shape", [("dim", 0), ("dim", channels), ("dim", -1), ("dim", 0)])]
    return layer(name, "Reshape", [bottom], [name], body=[("reshape_param", shape)])


DEFAULT_RATIOS = (0.5, 1, 2)


def rpn_param_str(scales: tuple, ratios: tuple = DEFAULT_RATIOS) -> str:
    """The anchor layers' param_str: upstream's defaults (scales 8, 16, 32; ratios 0.5, 1, 2) unsaid."""
    out = "'feat_stride': 16" + ("" if tuple(scales) == (8, 16, 32) else f"\n'scales': {list(scales)}")
    return out + ("" if tuple(ratios) == DEFAULT_RATIOS else f"\n'ratios': {list(ratios)}")


def rpn_losses(scales: tuple, ratios: tuple = DEFAULT_RATIOS) -> list[str]:
    targets = ["rpn_labels", "rpn_bbox_targets", "rpn_bbox_inside_weights", "rpn_bbox_outside_weights"]
    return [python("rpn-data", ["rpn_cls_score", "gt_boxes", "im_info", "data"], targets,
                   "rpn.anchor_target_layer", "AnchorTargetLayer", rpn_param_str(scales, ratios)),
            layer("rpn_loss_cls", "SoftmaxWithLoss", ["rpn_cls_score_reshape", "rpn_labels"], ["rpn_cls_loss"],
                  body=[("propagate_down", True), ("propagate_down", False), ("loss_weight", 1),
                        ("loss_param", [("ignore_label", -1), ("normalize", True)])]),
            layer("rpn_loss_bbox", "SmoothL1Loss", ["rpn_bbox_pred"] + targets[1:], ["rpn_loss_bbox"],
                  body=[("loss_weight", 1), ("smooth_l1_loss_param", [("sigma", 3.0)])])]


def proposals(scales: tuple, tops: list[str], ratios: tuple = DEFAULT_RATIOS) -> list[str]:
    return [layer("rpn_cls_prob", "Softmax", ["rpn_cls_score_reshape"], ["rpn_cls_prob"]),
            reshape_layer("rpn_cls_prob_reshape", "rpn_cls_prob", 2 * len(ratios) * len(scales)),
            python("proposal", ["rpn_cls_prob_reshape", "rpn_bbox_pred", "im_info"], tops,
                   "rpn.proposal_layer", "ProposalLayer", rpn_param_str(scales, ratios))]


def proposal_targets(classes: int) -> str:
    tops = ["rois", "labels", "bbox_targets", "bbox_inside_weights", "bbox_outside_weights"]
    return python("roi-data", ["rpn_rois", "gt_boxes"], tops, "rpn.proposal_target_layer",
                  "ProposalTargetLayer", f"'num_classes': {classes}")


def det_head(net: NetDef, mode: str, classes: int, dropout: bool = True) -> list[str]:
    name, top, size = net.roi
    rp = [("pooled_w", size), ("pooled_h", size), ("spatial_scale", Note(0.0625, "1/16"))]
    out = [layer(name, "ROIPooling", [net.feature, "rois"], [top], body=[("roi_pooling_param", rp)])]
    params = () if mode == "test" else LEARN
    weight = MSRA if net.scratch and mode != "test" else None
    drop = [("dropout_ratio", 0.5)] + ([] if net.scale_train else [("scale_train", False)])
    bottom = top
    for i, width in zip((6, 7), net.fc):
        out += [fc(f"fc{i}", bottom, width, params, weight), relu(f"relu{i}", f"fc{i}")]
        if dropout and not net.scratch:  # nets trained from scratch on small sets: no dropout
            out.append(layer(f"drop{i}", "Dropout", [f"fc{i}"], [f"fc{i}"], body=[("dropout_param", drop)]))
        bottom = f"fc{i}"
    test = mode == "test"
    return out + [fc("cls_score", "fc7", classes, params, None if test else gauss(0.01)),
                  fc("bbox_pred", "fc7", 4 * classes, params, None if test else gauss(0.001))]


def det_losses(propagate: bool) -> list[str]:
    pd = [("propagate_down", True), ("propagate_down", False)] if propagate else []
    return [layer("loss_cls", "SoftmaxWithLoss", ["cls_score", "labels"], ["loss_cls"],
                  body=pd + [("loss_weight", 1)]),
            layer("loss_bbox", "SmoothL1Loss", ["bbox_pred", "bbox_targets", "bbox_inside_weights",
                                                "bbox_outside_weights"], ["loss_bbox"], body=[("loss_weight", 1)])]


def dummy_fc(net: NetDef) -> list[str]:
    """Frozen fc6/fc7 fed by noise and silenced: they only carry their weights into the saved model."""
    channels = [op[2] for op in net.trunk if op[0] == "conv"][-1]
    shape = [("shape", [("dim", 1), ("dim", channels * net.roi[2] ** 2)]), ("data_filler", gauss(0.01))]
    weight = MSRA if net.scratch else None
    return [layer("dummy_roi_pool_conv5", "DummyData", top=["dummy_roi_pool_conv5"],
                  body=[("dummy_data_param", shape)]),
            fc("fc6", "dummy_roi_pool_conv5", net.fc[0], FREEZE, weight),
            fc("fc7", "fc6", net.fc[1], FREEZE, weight),
            layer("silence_fc7", "Silence", ["fc7"])]
