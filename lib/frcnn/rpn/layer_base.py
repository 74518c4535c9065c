"""What the RPN's Python layers share: building from a prototxt, and the anchor grid.

``ConfiguredLayer.from_caffe`` is the one reading of ``param_str`` and the config for the
three layers of ``frcnn.rpn``. Each layer declares, instead of writing its own:

- ``param_defaults``: the ``param_str`` keys it understands and their defaults;
  ``required_params``: those it needs (e.g. ``feat_stride``, ``num_classes``);
- ``config_keys``: constructor argument -> config key, read from ``cfg.TRAIN`` or, with
  ``phase_config``, from ``cfg.TRAIN`` / ``cfg.TEST`` by the net's phase.

List values (YAML lists, config sequences) are passed on as tuples.

``AnchorLayer`` adds what the anchor target and proposal layers have in common: the
``feat_stride``, ``scales`` and ``ratios`` params, the reference anchors as a buffer (they move
with the layer's device) and ``feature_map_anchors`` for an ``H`` x ``W`` feature map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from frcnn.caffe.python_layer import PythonLayer, parse_param_str
from frcnn.rpn.generate_anchors import generate_anchors, shifted_anchors


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


class ConfiguredLayer(PythonLayer):
    """A Python layer whose ``from_caffe`` is declared (see the module docstring)."""

    param_defaults: ClassVar[dict[str, Any]] = {}
    required_params: ClassVar[tuple[str, ...]] = ()
    config_keys: ClassVar[dict[str, str]] = {}
    phase_config: ClassVar[bool] = False

    @classmethod
    def from_caffe(cls, param_str: str, phase: str, cfg: Any) -> ConfiguredLayer:
        """The layer of a prototxt's ``param_str``, for ``phase`` ('TRAIN' or 'TEST'), with
        the run's config ``cfg`` (which the engine always passes)."""
        name = cls.__name__
        known = tuple(cls.required_params) + tuple(cls.param_defaults)
        p = parse_param_str(param_str, f"{name} param_str", known=known, required=cls.required_params)
        section = "TRAIN"
        if cls.phase_config:
            section = str(phase).upper()
            if section not in ("TRAIN", "TEST"):
                raise ValueError(f"{name}: phase must be 'TRAIN' or 'TEST', got {phase!r}")
        c = cfg[section]
        kwargs = {k: _plain(p.get(k, default)) for k, default in cls.param_defaults.items()}
        kwargs.update({k: p[k] for k in cls.required_params})
        kwargs.update({arg: _plain(c[key]) for arg, key in cls.config_keys.items()})
        return cls(**kwargs)


class AnchorLayer(ConfiguredLayer):
    """Base of the layers that place the reference anchors over the RPN's feature map."""

    param_defaults: ClassVar[dict[str, Any]] = {"scales": (8, 16, 32), "ratios": (0.5, 1, 2)}
    required_params: ClassVar[tuple[str, ...]] = ("feat_stride",)

    def __init__(self, feat_stride: int, scales: Sequence[float], ratios: Sequence[float]) -> None:
        super().__init__()
        if int(feat_stride) <= 0:
            raise ValueError(f"{type(self).__name__}: feat_stride must be > 0, got {feat_stride}")
        self.feat_stride = int(feat_stride)
        anchors = torch.from_numpy(generate_anchors(ratios=ratios, scales=scales))
        self.register_buffer("anchors", anchors, persistent=False)  # (A, 4) float64

    @property
    def num_anchors(self) -> int:
        return self.anchors.shape[0]

    def feature_map_anchors(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Every anchor of a ``height`` x ``width`` feature map, (H*W*A, 4) float64 on ``device``,
        in (row, column, anchor) order (:func:`frcnn.rpn.generate_anchors.shifted_anchors`)."""
        return shifted_anchors(self.anchors, height, width, self.feat_stride, device=device)
