"""The layer base class, the registry by Caffe type name, and Caffe's parameter specs.

A layer is a ``torch.nn.Module`` built from its ``LayerParameter`` message and the shapes of
its bottoms (entries may be ``None`` where unknown until run time, e.g. the tops of Python
layers). ``forward(*bottoms)`` returns a tuple of tops. Layers with learnable blobs keep them
in ``self.blobs`` (a ParameterList, in Caffe's order: weight, bias, ...); where a blob's
shape depends on an unknown bottom size the blobs are made at the first forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..fillers import fill
from ..prototxt import Message, PrototxtError

Shape = Optional[tuple]  # a tuple of int|None per axis, or None when even the rank is unknown

_REGISTRY: dict[str, type[Layer]] = {}

#: the most values one blob may hold: Caffe counts them in an int (Blob::Reshape checks INT_MAX)
MAX_BLOB_COUNT = 2**31 - 1


def register(*type_names: str) -> Callable[[type[Layer]], type[Layer]]:
    """Class decorator: make the class the implementation of the given Caffe type names."""

    def deco(cls: type[Layer]) -> type[Layer]:
        for name in type_names:
            _REGISTRY[name] = cls
        cls.type_name = type_names[0]
        return cls

    return deco


def layer_class(type_name: str, lp: Message) -> type[Layer]:
    from . import ensure_loaded

    ensure_loaded()
    if type_name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise lp.error("type", f"unknown layer type '{type_name}' (this engine implements: {known})")
    return _REGISTRY[type_name]


@dataclass
class ParamSpec:
    """One ``param {}`` block: Caffe's per-blob learning-rate and decay multipliers."""

    lr_mult: float = 1.0
    decay_mult: float = 1.0
    name: str = ""


def param_specs(lp: Message) -> list[ParamSpec]:
    specs = []
    for p in lp.get_msgs("param"):
        specs.append(ParamSpec(p.get_float("lr_mult", 1.0), p.get_float("decay_mult", 1.0), p.get_str("name", "")))
    return specs


def known(shape: Shape) -> bool:
    return shape is not None and all(d is not None for d in shape)


def prod(dims: Sequence[int | None]) -> int | None:
    out = 1
    for d in dims:
        if d is None:
            return None
        out *= d
    return out


class Layer(torch.nn.Module):
    """Base of every built-in layer; see the module docstring."""

    type_name = ""
    #: a layer whose top 0 gets loss weight 1 unless the prototxt says otherwise (Caffe: *Loss)
    is_loss = False
    #: False for blobs that hold statistics rather than weights (BatchNorm): never trained
    learnable_blobs = True
    #: True for a layer that may run under autocast on float16/bfloat16 bottoms (exact or
    #: autocast-managed arithmetic); the others get float32 bottoms (frcnn.caffe.precision)
    low_precision = False

    def __init__(self, lp: Message, phase: str) -> None:
        super().__init__()
        self.lp = lp
        self.phase = phase
        self.name: str = lp.get_str("name", "") or ""
        self.bottoms: list[str] = lp.get_strs("bottom")
        self.tops: list[str] = lp.get_strs("top")
        self.blobs = torch.nn.ParameterList()
        self.param_specs: list[ParamSpec] = param_specs(lp)
        self._blob_plan: list[tuple[tuple, Message | None, float]] | None = None  # (shape, filler, default value)

    @classmethod
    def build(cls, lp: Message, phase: str, bottom_shapes: list[Shape], ctx: dict) -> Layer:
        """Make the layer; ``ctx`` carries the net-level settings (cfg, allowed Python modules)."""
        return cls(lp, phase, bottom_shapes)

    # -- errors --------------------------------------------------------------------------
    def error(self, problem: str, field: str | None = None) -> PrototxtError:
        where = self.lp.where(self.lp._last(field)) if field and field in self.lp else self.lp.where()
        return PrototxtError(f"{where}: layer '{self.name}' ({self.type_name}): {problem}")

    def expect_bottoms(self, lo: int, hi: int | None = None) -> None:
        hi = lo if hi is None else hi
        n = len(self.bottoms)
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.error(f"needs {want} bottom(s), got {n}")

    def expect_tops(self, lo: int, hi: int | None = None) -> None:
        hi = lo if hi is None else hi
        n = len(self.tops)
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.error(f"needs {want} top(s), got {n}")

    # -- shapes --------------------------------------------------------------------------
    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        """Top shapes from bottom shapes (``None`` where unknown). Default: same as bottom 0."""
        return [bottom_shapes[0] if bottom_shapes else None for _ in self.tops]

    # -- learnable blobs -----------------------------------------------------------------
    def plan_blobs(self, plan: list[tuple[tuple, Message | None, float]]) -> None:
        """Declare the blobs (shape, filler message or None, default constant) and make them
        now if every shape is known; otherwise ``materialize`` makes them later."""
        self._blob_plan = plan
        if all(known(s) for s, _, _ in plan):
            self._make_blobs([s for s, _, _ in plan], torch.device("cpu"))

    def blobs_pending(self) -> bool:
        return self._blob_plan is not None and len(self.blobs) == 0

    def materialize(self, shapes: list[tuple], device: torch.device) -> None:
        """Make the pending blobs with concrete shapes (called from forward or copy_from)."""
        if self.blobs_pending():
            self._make_blobs([tuple(s) for s in shapes], device)

    def _make_blobs(self, shapes: list[tuple], device: torch.device) -> None:
        assert self._blob_plan is not None
        for i, (shape, (_, filler, default)) in enumerate(zip(shapes, self._blob_plan)):
            count = prod(shape)
            if count > MAX_BLOB_COUNT:
                raise self.error(f"blob {i} would have shape {tuple(shape)}: {count:,} values, more than a Caffe "
                                 f"blob may hold ({MAX_BLOB_COUNT:,}); check num_output and the bottom sizes")
            try:
                t = torch.empty(shape, dtype=torch.float32)
            except RuntimeError as e:  # the CPU allocator's "can't allocate memory"
                raise MemoryError(f"{self.lp.where()}: layer '{self.name}' ({self.type_name}): cannot allocate "
                                  f"blob {i} of shape {tuple(shape)} ({4 * count:,} bytes): {e}") from None
            fill(t, filler, default, where=f"layer '{self.name}' blob {i}")
            p = torch.nn.Parameter(t.to(device), requires_grad=self.learnable_blobs and self.spec(i).lr_mult != 0)
            self.blobs.append(p)

    def spec(self, i: int) -> ParamSpec:
        """The param spec of blob ``i`` (defaults 1, 1 when the prototxt gives fewer blocks)."""
        return self.param_specs[i] if i < len(self.param_specs) else ParamSpec()

    def extra_repr(self) -> str:
        return f"name={self.name!r}, bottoms={self.bottoms}, tops={self.tops}"
