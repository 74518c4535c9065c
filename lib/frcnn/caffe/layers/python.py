"""``type: "Python"`` layers: resolve ``python_param { module layer param_str }`` to a
:class:`frcnn.caffe.python_layer.PythonLayer` subclass and run it.

Upstream module names map to ours; our own module names are accepted as they are. Any other
module is refused unless the net was built with ``allow_python_modules=True`` or a list that
names it, so that a prototxt cannot be used to import and run arbitrary code.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from frcnn.errors import UserError

from ..prototxt import Message
from ..python_layer import PythonLayer
from .base import Layer, Shape, register

#: upstream py-faster-rcnn module -> our module
UPSTREAM_MODULES = {
    "roi_data_layer.layer": "frcnn.roi_data.layer",
    "rpn.anchor_target_layer": "frcnn.rpn.anchor_target_layer",
    "rpn.proposal_layer": "frcnn.rpn.proposal_layer",
    "rpn.proposal_target_layer": "frcnn.rpn.proposal_target_layer",
}
OWN_MODULES = frozenset(UPSTREAM_MODULES.values())


def resolve_module(name: str, allow: Any) -> str:
    """The module to import for a prototxt's ``python_param.module``; raises if not allowed."""
    if name in UPSTREAM_MODULES:
        return UPSTREAM_MODULES[name]
    if name in OWN_MODULES or allow is True:
        return name
    if isinstance(allow, (list, tuple, set, frozenset)) and name in allow:
        return name
    raise PermissionError(
        f"Python module '{name}' is not one of the known layer modules "
        f"({', '.join(sorted(UPSTREAM_MODULES))} and their frcnn.* names); pass "
        f"allow_python_modules=['{name}'] to Net to run it")


def _to_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    arr = np.asarray(value)
    if arr.dtype.kind == "f" or arr.dtype.kind in "iub":
        arr = arr.astype(np.float32)  # Caffe blobs are float32, labels included
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device)


@register("Python")
class Python(Layer):
    """Wraps one PythonLayer instance (``self.impl``); tops beyond the prototxt's are dropped."""

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape], ctx: dict) -> None:
        """``ctx``: the net's settings; ``ctx["cfg"]`` is the run's config (``Net`` always sets it)."""
        super().__init__(lp, phase)
        p = lp.get_msg("python_param")
        module_name = p.get_str("module")
        class_name = p.get_str("layer")
        if not module_name or not class_name:
            raise self.error("python_param needs both 'module' and 'layer'", "python_param")
        try:
            target = resolve_module(module_name, ctx.get("allow_python_modules"))
        except PermissionError as e:
            raise self.error(str(e), "python_param") from None
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise self.error(f"cannot import Python layer module '{target}': {e}", "python_param") from None
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, PythonLayer)):
            raise self.error(f"'{target}.{class_name}' is not a frcnn.caffe.python_layer.PythonLayer subclass",
                             "python_param")
        self.module_name = target
        self.param_str = p.get_str("param_str", "") or ""
        self.impl: PythonLayer = cls.from_caffe(self.param_str, phase, ctx["cfg"])
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)
        self._bottom_shapes = bottom_shapes

    @classmethod
    def build(cls, lp: Message, phase: str, bottom_shapes: list[Shape], ctx: dict) -> Python:
        return cls(lp, phase, bottom_shapes, ctx)

    def get_state(self) -> dict | None:
        fn = getattr(self.impl, "get_state", None)
        return fn() if callable(fn) else None

    def set_state(self, state: dict) -> None:
        fn = getattr(self.impl, "set_state", None)
        if not callable(fn):
            raise self.error("has no set_state() but the solver state holds one for it")
        fn(state)

    def __getattr__(self, name: str) -> Any:
        # the wrapped layer's own methods (set_roidb, ...) are reachable from net.layers[i]
        try:
            return super().__getattr__(name)
        except AttributeError:
            impl = super().__getattr__("impl")
            return getattr(impl, name)

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        fn = getattr(self.impl, "top_shapes", None)
        try:
            shapes = fn(bottom_shapes) if callable(fn) else None
        except UserError as e:  # a check of the layer's (e.g. the RPN's anchor channels): say where
            raise type(e)(f"{self.lp.where()}: layer '{self.name}' ({self.type_name}): {e}") from None
        if shapes is None:
            return [None] * len(self.tops)
        shapes = list(shapes)
        if len(shapes) < len(self.tops):
            raise self.error(f"makes {len(shapes)} top(s) but the prototxt names {len(self.tops)}")
        return [None if s is None else tuple(s) for s in shapes[: len(self.tops)]]

    def forward(self, *bottoms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.impl(*bottoms)
        if isinstance(out, (torch.Tensor, np.ndarray)):
            out = (out,)
        out = tuple(out)
        if len(out) < len(self.tops):
            raise self.error(f"returned {len(out)} top(s) but the prototxt names {len(self.tops)}")
        device = self._device_anchor.device
        return tuple(_to_tensor(v, device) for v in out[: len(self.tops)])
