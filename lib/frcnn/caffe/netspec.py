"""From a parsed NetParameter to the list of layer messages a Net builds, as Caffe's
``UpgradeNetAsNeeded`` + ``FilterNet`` do: legacy ``layers {}`` (V1) become ``layer {}``,
``input:`` declarations become an Input layer, ``include``/``exclude`` rules are applied."""

from __future__ import annotations

from .prototxt import Message, PrototxtError, parse_file
from .v1 import v1_type_name
from .validate import check

_PHASES = {"TRAIN": 0, "TEST": 1}


def load(prototxt: str | Message) -> Message:
    return prototxt if isinstance(prototxt, Message) else parse_file(prototxt)


def upgrade_v1_layer(v1: Message) -> Message:
    """A ``layers {}`` (V1LayerParameter) message as a ``layer {}`` message."""
    out = Message(filename=v1.filename, line=v1.line, col=v1.col)
    lrs = v1.get_floats("blobs_lr")
    decays = v1.get_floats("weight_decay")
    names = v1.get_strs("param")
    for f in v1.fields:
        if f.name == "type":
            value = f.value
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise PrototxtError(f"{v1.where(f)}: field 'type' expects a V1 layer type name, got {value!r}")
            out.fields.append(type(f)("type", v1_type_name(value, v1.where(f)), f.line, f.col))
        elif f.name in ("blobs_lr", "weight_decay", "param"):
            continue
        elif f.name == "layer":
            raise PrototxtError(f"{v1.where(f)}: this is the V0 net format (layers {{ layer {{ ... }} }}), "
                                "which this engine does not read; upgrade it with Caffe's upgrade_net_proto_text")
        else:
            out.fields.append(f)
    for i in range(max(len(lrs), len(decays), len(names))):
        spec = Message(filename=v1.filename)
        if i < len(names) and names[i]:
            spec.add("name", names[i])
        if i < len(lrs):
            spec.add("lr_mult", lrs[i])
        if i < len(decays):
            spec.add("decay_mult", decays[i])
        out.add("param", spec)
    return out


def input_layer(net: Message) -> Message | None:
    """The Input layer that Caffe makes from ``input:`` + ``input_shape``/``input_dim``."""
    names = net.get_strs("input")
    shapes = net.get_msgs("input_shape")
    dims = net.get_ints("input_dim")
    if not names:
        if shapes or dims:
            raise net.error("input_shape" if shapes else "input_dim", "given without any 'input:' name")
        return None
    if shapes and dims:
        raise net.error("input_dim", "give either input_shape or input_dim, not both")
    lp = Message(filename=net.filename, line=net.line, col=net.col)
    lp.add("name", "input").add("type", "Input")
    for n in names:
        lp.add("top", n)
    param = Message(filename=net.filename)
    if dims:
        if len(dims) != 4 * len(names):
            raise net.error("input_dim", f"needs 4 values per input ({len(names)} inputs), got {len(dims)}")
        for i in range(len(names)):
            param.add("shape", Message(filename=net.filename).add("dim", dims[4 * i]).add("dim", dims[4 * i + 1])
                      .add("dim", dims[4 * i + 2]).add("dim", dims[4 * i + 3]))
    elif shapes:
        if len(shapes) not in (1, len(names)):
            raise net.error("input_shape", f"needs one shape per input ({len(names)}), got {len(shapes)}")
        for s in shapes:
            param.add("shape", s)
    if param.fields:
        lp.add("input_param", param)
    return lp


def _rule_matches(rule: Message, phase: str, level: int, stages: tuple[str, ...]) -> bool:
    if "phase" in rule and rule.get_enum("phase", None, _PHASES) != phase:
        return False
    if "min_level" in rule and level < rule.get_int("min_level"):
        return False
    if "max_level" in rule and level > rule.get_int("max_level"):
        return False
    if any(s not in stages for s in rule.get_strs("stage")):
        return False
    return not any(s in stages for s in rule.get_strs("not_stage"))


def included(lp: Message, phase: str, level: int = 0, stages: tuple[str, ...] = ()) -> bool:
    """Caffe's StateMeetsRule: with include rules, any matching one includes the layer; with
    exclude rules, any matching one excludes it; with neither, it is always included."""
    inc, exc = lp.get_msgs("include"), lp.get_msgs("exclude")
    if inc and exc:
        raise lp.error("exclude", "a layer may have include rules or exclude rules, not both")
    if inc:
        return any(_rule_matches(r, phase, level, stages) for r in inc)
    return not any(_rule_matches(r, phase, level, stages) for r in exc)


def net_layers(net: Message, phase: str, level: int = 0, stages: tuple[str, ...] = ()) -> list[Message]:
    """The layer messages (new format) of ``net`` that run in ``phase``, in order. The net is
    checked against Caffe's NetParameter schema first (unknown fields are errors, as in Caffe);
    a net with nothing in it, or nothing in ``phase``, is refused."""
    if phase not in _PHASES:
        raise ValueError(f"phase must be 'TRAIN' or 'TEST', got {phase!r}")
    check(net, "NetParameter")
    new, old = net.get_msgs("layer"), net.get_msgs("layers")
    if not new and not old and "input" not in net:
        raise PrototxtError(f"{net.filename}: the net has no layers and no inputs (an empty file?)")
    if new and old:
        raise net.error("layers", "the file mixes 'layer' and legacy 'layers' blocks")
    layers = new if new else [upgrade_v1_layer(m) for m in old]
    inp = input_layer(net)
    if inp is not None:
        layers = [inp] + layers
    out = []
    for lp in layers:
        if included(lp, phase, level, stages):
            out.append(lp)
    if not out:
        raise PrototxtError(f"{net.filename}: no layer of the net runs in the {phase} phase "
                            f"(level {level}, stages {list(stages)}): check the include/exclude rules")
    return out
