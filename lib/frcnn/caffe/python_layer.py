"""The base class of layers that a prototxt names with ``type: "Python"``.

Upstream's Python layers were pycaffe classes with setup/reshape/forward/backward that
read the global config. Ours are torch modules: the engine builds them with
``cls.from_caffe(param_str, phase, cfg)``, which is the one place a layer reads the
config, and calls ``forward(*bottoms)``, which returns every top the layer can make, in
order; the engine keeps as many as the prototxt names. Layers whose upstream backward
was empty return tensors that carry no gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import yaml


class _ParamLoader(yaml.SafeLoader):
    """YAML's safe loader plus ``!!python/tuple`` (upstream's COCO prototxts write
    ``'scales': !!python/tuple [4, 8, 16, 32]``); no other Python tags are honoured."""


_ParamLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node))
)


def parse_param_str(
    param_str: str,
    where: str = "param_str",
    known: Iterable[str] | None = None,
    required: Iterable[str] = (),
) -> dict[str, Any]:
    """Parse a Python layer's ``param_str`` as upstream does (YAML, e.g. ``'num_classes': 21``).

    ``known`` (if given) lists the keys the layer understands and ``required`` those it needs;
    anything else is an error naming ``where``."""
    value: Any = None
    if param_str and param_str.strip():
        try:
            value = yaml.load(param_str, Loader=_ParamLoader)  # _ParamLoader is a SafeLoader
        except yaml.YAMLError as e:
            raise ValueError(f"{where}: cannot parse param_str {param_str!r}: {e}") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: param_str must be a mapping, got {param_str!r}")  # noqa: TRY004 (bad file content)
    if known is not None:
        known = list(known)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {known}")
    for key in required:
        if key not in value:
            raise ValueError(f"{where}: '{key}' is required, got {param_str!r}")
    return value


class PythonLayer(torch.nn.Module):
    """Base class: subclasses implement ``from_caffe`` and ``forward``."""

    #: the tops this layer can produce, in order (documentation and error messages)
    top_names: tuple[str, ...] = ()

    @classmethod
    def from_caffe(cls, param_str: str, phase: str, cfg) -> PythonLayer:
        """Build the layer from its prototxt ``param_str``, the net phase ('TRAIN' or 'TEST')
        and the run's config (an EasyDict from ``frcnn.config``)."""
        raise NotImplementedError(f"{cls.__name__}.from_caffe")

    def top_shapes(self, bottom_shapes: list) -> list | None:
        """Optional: the shapes of the tops given the bottoms' (tuples with ``None`` for sizes
        known only at run time), like a pycaffe ``setup`` reshape. The engine needs the channel
        count of a top that feeds a Convolution or InnerProduct to size its weights before the
        first forward (e.g. the data layer's ``data`` top: ``(N, 3, None, None)``). ``None``
        (the default) means unknown: such weights are then made at the first forward."""
        return None
