"""``Net``: a prototxt network as a torch module with pycaffe's faces.

Build: parse the prototxt, upgrade legacy forms, keep the layers of the phase, make each layer
from its message and the (partly known) shapes of its bottoms. Blobs are names: an in-place
layer (top == bottom) rebinds the name to its output, a blob read by several layers is simply
read several times (autograd sums the gradients, which is what Caffe's implicit Split does).
An in-place ReLU overwrites its bottom tensor where nothing else can see the old values (see
``_in_place_relus``); everywhere else it makes a new tensor.
Outputs, as Caffe's: the blobs that no later layer consumes, sorted by name.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from frcnn.config import get_default_config

from .blob import Blob, ParamBlob
from .layers import Layer, layer_class
from .layers.activation import ReLU
from .layers.base import MAX_BLOB_COUNT, prod
from .layers.data import Input
from .layers.linear import Convolution
from .netspec import load, net_layers
from .precision import Precision, autocast, autocast_active, float32_region, set_tf32, widen
from .prototxt import Message, PrototxtError

if TYPE_CHECKING:
    from .weights import CopyReport

TRAIN = "TRAIN"
TEST = "TEST"


def _as_tensor(value: Any, device: torch.device, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, np.ndarray) or np.isscalar(value) or isinstance(value, (list, tuple)):
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.float32)))
    else:
        raise TypeError(f"input '{name}': expected a tensor or array, got {type(value).__name__}")
    if not t.is_floating_point():
        t = t.float()
    return t.to(device)


def _check_tops(lp: Message, name: str, bottoms: list[str], shapes: list[Any], producers: dict[str, str]) -> None:
    """Caffe's rules for tops: a blob has one producer, except that an in-place layer (top i the
    same blob as bottom i) rewrites it; a blob holds at most MAX_BLOB_COUNT values."""
    for j, f in enumerate(lp.all_fields("top")):
        t = f.value
        in_place = j < len(bottoms) and bottoms[j] == t
        if t in producers and not in_place:
            raise PrototxtError(f"{lp.where(f)}: top blob '{t}' produced by multiple sources: layers "
                                f"'{producers[t]}' and '{name}' (only an in-place layer, whose top {j} is its "
                                f"bottom {j}, may write an existing blob)")
        producers[t] = name
    for t, s in zip(lp.get_strs("top"), shapes):
        count = None if s is None else prod(s)
        if count is not None and count > MAX_BLOB_COUNT:
            raise lp.error("top", f"layer '{name}': top blob '{t}' would have shape {s}: {count:,} values, "
                                  f"more than a Caffe blob may hold ({MAX_BLOB_COUNT:,})")


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(e)


def _oom_error(e: BaseException) -> type[BaseException]:
    """The error type to re-raise an allocation failure as (CUDA's keeps its own type)."""
    return torch.OutOfMemoryError if isinstance(e, torch.OutOfMemoryError) else MemoryError


#: layer types whose top is a new tensor that their backward does not read (it reads bottoms and
#: weights only), so that an in-place ReLU right after them may overwrite it, also in training
_FRESH_TOPS = frozenset({"Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "Scale", "Eltwise",
                         "ROIPooling", "Concat"})


def _in_place_relus(layers: list[Layer]) -> list[bool]:
    """Per layer: whether it is a ReLU (slope 0) written in place (top == bottom) whose bottom
    comes straight from a ``_FRESH_TOPS`` layer with no other layer reading it in between. Such
    a ReLU may overwrite its bottom: every later reader sees the name's new (ReLU) values, as in
    Caffe, and no earlier reader or backward holds the old ones."""
    made_by: dict[str, str] = {}
    reads: dict[str, int] = {}  # blob -> layers that read it since it was last written
    out = []
    for layer in layers:
        bottoms = layer.bottoms
        out.append(isinstance(layer, ReLU) and layer.negative_slope == 0.0 and len(bottoms) == 1
                   and layer.tops == bottoms and made_by.get(bottoms[0]) in _FRESH_TOPS and reads.get(bottoms[0]) == 0)
        for b in bottoms:
            reads[b] = reads.get(b, 0) + 1
        for t in layer.tops:
            made_by[t], reads[t] = layer.type_name, 0
    return out


class Net(torch.nn.Module):
    """A Caffe net from a prototxt (path or parsed Message); see the module docstring.

    ``weights``: a .caffemodel (or our torch param file) copied in by layer name.
    ``cfg``: the run's config, handed to Python layers (default: ``get_default_config()``).
    ``allow_python_modules``: True or a list of extra Python-layer module names to allow.
    ``retain_diffs``: keep gradients of intermediate blobs (``net.blobs[n].diff``).

    Precision (:mod:`frcnn.caffe.precision`): the config's ``TRAIN.AMP`` (TRAIN nets) or
    ``TEST.AMP`` (TEST nets) and ``CHANNELS_LAST`` are kept in ``net.precision`` and used by
    every forward; a config passed here also sets ``TF32`` (a process-wide torch flag).
    """

    def __init__(self, prototxt: str | Message, weights: str | None = None, phase: str = TEST, cfg: Any = None,
                 *, allow_python_modules: Any = None, level: int = 0, stages: tuple[str, ...] = (),
                 retain_diffs: bool = False) -> None:
        super().__init__()
        if phase not in (TRAIN, TEST):
            raise ValueError(f"phase must be frcnn.caffe.TRAIN or TEST, got {phase!r}")
        msg = load(prototxt)
        self.source = msg.filename
        self.name: str = msg.get_str("name", "") or ""
        self.phase = phase
        self.retain_diffs = retain_diffs
        #: gradients are recorded in TRAIN nets (set False/True to override)
        self.compute_grad = phase == TRAIN
        self.layer_list = torch.nn.ModuleList()
        self._blobs: collections.OrderedDict[str, Blob] = collections.OrderedDict()
        self.inputs: list[str] = []
        self.loss_weights: dict[str, float] = {}  # top blob -> weight, for tops that count in the loss
        self._loss_tops: list[tuple[int, int, float]] = []  # (layer index, top index, weight)
        self._propagate: list[list[bool]] = []
        self._overwrite: list[bool] = []  # per layer: an in-place ReLU that may overwrite its bottom
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)
        if cfg is None:  # a net built on its own (e.g. an upstream prototxt): the defaults, made once here
            cfg = get_default_config()
        else:
            set_tf32(cfg.get("TF32", False))
        #: autocast type and memory layout of every forward (see the class docstring)
        self.precision = Precision.from_config(cfg, phase)
        ctx = {"cfg": cfg, "allow_python_modules": allow_python_modules}
        self._build(net_layers(msg, phase, level, tuple(stages)), ctx)
        self.train(phase == TRAIN)
        self.set_channels_last(self.precision.channels_last)
        self.loss: torch.Tensor | None = None
        if weights is not None:
            self.copy_from(weights)

    # -- construction ------------------------------------------------------------------
    def _build(self, lps: list[Message], ctx: dict) -> None:
        shapes: dict[str, Any] = {}
        available: dict[str, None] = {}
        names: set[str] = set()
        producers: dict[str, str] = {}  # blob -> the layer that made it last
        shared: dict[str, tuple[torch.nn.Parameter, str]] = {}
        for i, lp in enumerate(lps):
            type_name = lp.get_str("type")
            if not type_name:
                raise lp.error("type", "layer has no type")
            name = lp.get_str("name", "") or f"{type_name.lower()}_{i}"
            if name in names:
                raise lp.error("name", f"duplicate layer name '{name}'")
            names.add(name)
            bottoms = lp.get_strs("bottom")
            for b in bottoms:
                if b not in shapes:
                    raise lp.error("bottom", f"layer '{name}': unknown bottom blob '{b}' (no earlier layer of the "
                                             f"{self.phase} net makes it)")
            layer = layer_class(type_name, lp).build(lp, self.phase, [shapes[b] for b in bottoms], ctx)
            layer.name = name
            if isinstance(layer, Input):
                self.inputs.extend(layer.tops)
            top_shapes = layer.infer([shapes[b] for b in bottoms])
            _check_tops(lp, name, bottoms, top_shapes, producers)
            for b in bottoms:
                available.pop(b, None)
            for t, s in zip(layer.tops, top_shapes):
                shapes[t] = s
                available[t] = None
                if t not in self._blobs:
                    self._blobs[t] = Blob(t, s)
                else:
                    self._blobs[t].declared_shape = s
            self._loss_setup(len(self.layer_list), layer, lp)
            prop = lp.get("propagate_down") is not None and [bool(v) for v in lp.get_all("propagate_down")]
            if prop and len(prop) != len(bottoms):
                raise lp.error("propagate_down", f"needs one value per bottom ({len(bottoms)}), got {len(prop)}")
            self._propagate.append(prop or [True] * len(bottoms))
            self._share(layer, shared)
            self.layer_list.append(layer)
        self.outputs: list[str] = sorted(available)
        self._overwrite = _in_place_relus(list(self.layer_list))

    def _loss_setup(self, index: int, layer: Layer, lp: Message) -> None:
        weights = lp.get_floats("loss_weight")
        if weights and len(weights) != len(layer.tops):
            raise lp.error("loss_weight", f"needs one value per top ({len(layer.tops)}), got {len(weights)}")
        if not weights:
            weights = [1.0 if (layer.is_loss and j == 0) else 0.0 for j in range(len(layer.tops))]
        for j, w in enumerate(weights):
            if w != 0.0:
                self._loss_tops.append((index, j, w))
                self.loss_weights[layer.tops[j]] = w

    def _share(self, layer: Layer, shared: dict[str, tuple[torch.nn.Parameter, str]]) -> None:
        """Caffe's weight sharing: blobs whose ``param { name }`` matches an earlier one reuse it."""
        for i, spec in enumerate(layer.param_specs):
            if not spec.name:
                continue
            if layer.blobs_pending():
                raise layer.error(f"param '{spec.name}' is shared but its shape is unknown before the first forward")
            if i >= len(layer.blobs):
                raise layer.error(f"param block {i} names '{spec.name}' but the layer has {len(layer.blobs)} blobs")
            if spec.name in shared:
                owner, owner_layer = shared[spec.name]
                if owner.shape != layer.blobs[i].shape:
                    raise layer.error(f"shared param '{spec.name}' has shape {tuple(layer.blobs[i].shape)} here "
                                      f"but {tuple(owner.shape)} in layer '{owner_layer}'")
                layer.blobs[i] = owner
            else:
                shared[spec.name] = (layer.blobs[i], layer.name)

    # -- pycaffe faces -----------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self.layer_list)

    @property
    def layer_dict(self) -> collections.OrderedDict[str, Layer]:
        return collections.OrderedDict((layer.name, layer) for layer in self.layer_list)

    @property
    def blobs(self) -> collections.OrderedDict[str, Blob]:
        return self._blobs

    @property
    def params(self) -> collections.OrderedDict[str, list[ParamBlob]]:
        """Layer name -> its learnable blobs (layers with blobs only, in layer order)."""
        out = collections.OrderedDict()
        for layer in self.layer_list:
            if len(layer.blobs):
                out[layer.name] = [ParamBlob(p, layer.name, i) for i, p in enumerate(layer.blobs)]
        return out

    @property
    def device(self) -> torch.device:
        return self._device_anchor.device

    def set_channels_last(self, enabled: bool) -> None:
        """Convolutions take their inputs and weights in NHWC memory order (``CHANNELS_LAST``)."""
        self.precision = Precision(self.precision.amp, bool(enabled))
        for layer in self.layer_list:
            if isinstance(layer, Convolution):
                layer.channels_last = bool(enabled)

    def learnable_params(self) -> list[tuple[str, int, torch.nn.Parameter, Any]]:
        """(layer, index, parameter, ParamSpec) for every distinct blob with lr_mult != 0."""
        seen: set[int] = set()
        out = []
        for layer in self.layer_list:
            for i, p in enumerate(layer.blobs):
                if id(p) in seen or not p.requires_grad:
                    continue
                seen.add(id(p))
                out.append((layer.name, i, p, layer.spec(i)))
        return out

    # -- running -----------------------------------------------------------------------
    def forward(self, blobs: list[str] | None = None, start: str | None = None, end: str | None = None,
                **inputs: Any) -> dict[str, torch.Tensor]:
        """Run the layers (from ``start`` to ``end``, by name) and return the output blobs
        (plus any named in ``blobs``). Inputs not passed keep their current ``blobs[...].data``.
        ``net.loss`` is set to the weighted sum of the loss tops computed."""
        for k in inputs:
            if k not in self.inputs:
                raise KeyError(f"net '{self.name}' ({self.source}): '{k}' is not an input blob "
                               f"(inputs: {', '.join(self.inputs) or 'none'})")
        names = [layer.name for layer in self.layer_list]
        lo = 0 if start is None else self._layer_index(start, names)
        hi = len(names) - 1 if end is None else self._layer_index(end, names)
        device = self.device
        for k, v in inputs.items():
            self._blobs[k].data = _as_tensor(v, device, k)
        values: dict[str, torch.Tensor] = {}
        loss = None
        grad = torch.set_grad_enabled(self.compute_grad and torch.is_grad_enabled())
        with grad, autocast(device.type, self.precision.amp):
            # under autocast (ours or the caller's) the float32 layers get float32 bottoms
            mixed = self.precision.amp is not None or autocast_active(device.type)
            for idx in range(lo, hi + 1):
                layer = self.layer_list[idx]
                if isinstance(layer, Input):
                    for t in layer.tops:
                        values[t] = _as_tensor(self._blobs[t].data, device, t)
                    continue
                bottoms = []
                for b, prop in zip(layer.bottoms, self._propagate[idx]):
                    x = values[b] if b in values else self._blobs[b].data
                    bottoms.append(x if prop else x.detach())
                if self._overwrite[idx]:
                    layer.overwrite = self._may_overwrite(layer.bottoms[0], bottoms[0], values, idx)
                try:
                    if mixed and not layer.low_precision:
                        with float32_region(device.type):
                            tops = layer(*[widen(x) for x in bottoms])
                    else:
                        tops = layer(*bottoms)
                except (MemoryError, RuntimeError) as e:
                    if not _out_of_memory(e):
                        raise
                    shapes = ", ".join(str(tuple(x.shape)) for x in bottoms)
                    raise _oom_error(e)(f"net '{self.name}' ({self.source}): layer '{layer.name}' "
                                        f"({layer.type_name}) ran out of memory on bottoms {shapes}: {e}") from e
                if len(tops) != len(layer.tops):
                    raise RuntimeError(f"layer '{layer.name}' made {len(tops)} tops, the prototxt names {len(layer.tops)}")
                for t, v in zip(layer.tops, tops):
                    if self.retain_diffs and v.requires_grad and not v.is_leaf:
                        v.retain_grad()
                    values[t] = v
                    self._blobs[t].data = v
            for li, j, w in self._loss_tops:
                if lo <= li <= hi:
                    term = values[self.layer_list[li].tops[j]].sum() * w
                    loss = term if loss is None else loss + term
        self.loss = loss
        wanted = [n for n in self.outputs if n in values] + [n for n in (blobs or []) if n not in self.outputs]
        return {n: self._blobs[n].data for n in wanted}

    def _may_overwrite(self, name: str, x: torch.Tensor, values: dict[str, torch.Tensor], idx: int) -> bool:
        """Whether the in-place ReLU ``idx`` may overwrite its bottom ``x`` (blob ``name``) in
        this forward: the tensor was made by this forward (not set by the caller, nor left by an
        earlier forward that started elsewhere), is not a view of another tensor, and autograd
        allows it; with ``retain_diffs`` the blob keeps a tensor of its own."""
        return (name in values and values[name] is x and x._base is None and not self.retain_diffs
                and self._propagate[idx][0] and not (x.is_leaf and x.requires_grad))

    def blob_shapes(self, **input_shapes: tuple) -> dict[str, tuple | None]:
        """Every blob's shape for the given input shapes, by the layers' shape rules, without
        running anything (``None`` entries: sizes known only at run time, e.g. RoI counts).
        ``net.blob_shapes(data=(1, 3, 600, 1000))["conv5_3"] == (1, 512, 38, 63)``."""
        shapes: dict[str, tuple | None] = {}
        for k in input_shapes:
            if k not in self.inputs:
                raise KeyError(f"net '{self.name}': '{k}' is not an input blob (inputs: {', '.join(self.inputs)})")
        for layer in self.layer_list:
            if isinstance(layer, Input):
                tops = [tuple(input_shapes[t]) if t in input_shapes else s
                        for t, s in zip(layer.tops, layer.infer([]))]
            else:
                tops = layer.infer([shapes.get(b) for b in layer.bottoms])
            shapes.update(zip(layer.tops, tops))
        return shapes

    def backward(self) -> None:
        """Back-propagate ``net.loss`` of the last forward (accumulating into param grads)."""
        if self.loss is None:
            raise RuntimeError(f"net '{self.name}': no loss to back-propagate (no loss tops, or no forward yet)")
        if not self.loss.requires_grad:
            raise RuntimeError(f"net '{self.name}': the loss carries no gradient (TEST net, or no_grad)")
        self.loss.backward()

    def _layer_index(self, name: str, names: list[str]) -> int:
        if name not in names:
            raise KeyError(f"net '{self.name}': no layer named '{name}'")
        return names.index(name)

    # -- weights -----------------------------------------------------------------------
    def copy_from(self, path: str, *, allow_empty: bool = False) -> CopyReport:
        """Copy weights by layer name from a .caffemodel or our torch param file, as Caffe's
        CopyTrainedLayersFrom: layers absent from the net are ignored; a blob-count or shape
        mismatch raises naming the layer. Each net layer with parameters that the file leaves
        untouched gets a WeightsWarning; a file that fills no parameter at all (the model of
        another net) raises a WeightsError naming the file and the net, unless ``allow_empty``.
        Returns a CopyReport: the list of the layers copied, with counts and ``summary()``."""
        from .weights import copy_weights

        return copy_weights(self, path, allow_empty=allow_empty)

    def save(self, path: str) -> None:
        """Write the learnable blobs as a .caffemodel (``.pth``: our torch param file), atomically."""
        from .weights import save_weights

        save_weights(self, path)

    def __repr__(self) -> str:
        return f"Net({self.name!r}, phase={self.phase}, layers={len(self.layer_list)}, source={self.source!r})"
