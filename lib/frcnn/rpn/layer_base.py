"""What the RPN's Python layers share: building from a prototxt, and the anchor grid.

``ConfiguredLayer.from_caffe`` is the one reading of ``param_str`` and the config for the
three layers of ``frcnn.rpn``. Each layer declares, instead of writing its own:

- ``param_defaults``: the ``param_str`` keys it understands and their defaults;
  ``required_params``: those it needs (e.g. ``feat_stride``, ``num_classes``);
- ``config_keys``: constructor argument -> config key, read from ``cfg.TRAIN`` or, with
  ``phase_config``, from ``cfg.TRAIN`` / ``cfg.TEST`` by the net's phase;
- ``top_config_keys``: constructor argument -> top-level config key (e.g. ``RNG_SEED``);
- ``override_keys``: ``param_str`` key -> top-level config key that replaces it unless None
  (``ANCHOR_SCALES`` / ``ANCHOR_RATIOS`` over the prototxt's ``scales`` / ``ratios``).

List values (YAML lists, config sequences) are passed on as tuples.

``AnchorLayer`` adds what the anchor target and proposal layers have in common: the
``feat_stride``, ``scales`` and ``ratios`` params, the reference anchors as a buffer (they move
with the layer's device), ``feature_map_anchors`` for an ``H`` x ``W`` feature map, and the
check that a bottom has the channels the anchors need (``check_channels``: 2A scores, 4A
deltas), made at build time from the bottoms' shapes where they are known, else at the first
forward; a mismatch is an :class:`AnchorMismatchError` naming both counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from frcnn.caffe.python_layer import PythonLayer, parse_param_str
from frcnn.errors import InputError
from frcnn.rpn.generate_anchors import generate_anchors, shifted_anchors


class AnchorMismatchError(InputError):
    """A net's RPN channels do not match its anchors (ANCHOR_SCALES / ANCHOR_RATIOS or param_str)."""


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _listed(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def shape_channels(shape: Any) -> int | None:
    """Axis 1 of a build-time shape (a tuple with None for unknown sizes), or None."""
    if shape is None or len(shape) < 2 or shape[1] is None:
        return None
    return int(shape[1])


class ConfiguredLayer(PythonLayer):
    """A Python layer whose ``from_caffe`` is declared (see the module docstring)."""

    param_defaults: ClassVar[dict[str, Any]] = {}
    required_params: ClassVar[tuple[str, ...]] = ()
    config_keys: ClassVar[dict[str, str]] = {}
    top_config_keys: ClassVar[dict[str, str]] = {}
    override_keys: ClassVar[dict[str, str]] = {}
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
        kwargs.update({arg: _plain(cfg[key]) for arg, key in cls.top_config_keys.items()})
        kwargs.update({arg: _plain(cfg[key]) for arg, key in cls.override_keys.items() if cfg.get(key) is not None})
        return cls(**kwargs)


class AnchorLayer(ConfiguredLayer):
    """Base of the layers that place the reference anchors over the RPN's feature map."""

    param_defaults: ClassVar[dict[str, Any]] = {"scales": (8, 16, 32), "ratios": (0.5, 1, 2)}
    required_params: ClassVar[tuple[str, ...]] = ("feat_stride",)
    override_keys: ClassVar[dict[str, str]] = {"scales": "ANCHOR_SCALES", "ratios": "ANCHOR_RATIOS"}

    def __init__(self, feat_stride: int, scales: Sequence[float], ratios: Sequence[float]) -> None:
        super().__init__()
        if int(feat_stride) <= 0:
            raise ValueError(f"{type(self).__name__}: feat_stride must be > 0, got {feat_stride}")
        self.feat_stride = int(feat_stride)
        self.scales = tuple(scales)
        self.ratios = tuple(ratios)
        anchors = torch.from_numpy(generate_anchors(ratios=ratios, scales=scales))
        self.register_buffer("anchors", anchors, persistent=False)  # (A, 4) float64

    @property
    def num_anchors(self) -> int:
        return self.anchors.shape[0]

    def check_channels(self, bottom: str, channels: int | None, per_anchor: int) -> None:
        """Raise :class:`AnchorMismatchError` unless ``channels`` (None: not known yet) is
        ``per_anchor`` x the number of anchors."""
        if channels is None or int(channels) == per_anchor * self.num_anchors:
            return
        a = self.num_anchors
        fits = f"; the net was made for {int(channels) // per_anchor} anchors" if int(channels) % per_anchor == 0 else ""
        raise AnchorMismatchError(
            f"{type(self).__name__}: bottom '{bottom}' has {int(channels)} channels, but the anchor setting "
            f"(scales {_listed(self.scales)} x ratios {_listed(self.ratios)}: {a} anchors) needs {per_anchor * a} "
            f"({per_anchor} x {a}){fits}. Set ANCHOR_SCALES / ANCHOR_RATIOS to the net's anchors, or write the net "
            "for them (frcnn.nets.adapt, which train_net, test_net, rpn_generate and the alt-opt driver apply to --set values; "
            "tools/dev/make_model_prototxts.py --anchor_scales/--anchor_ratios)"
        )

    def feature_map_anchors(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Every anchor of a ``height`` x ``width`` feature map, (H*W*A, 4) float64 on ``device``,
        in (row, column, anchor) order (:func:`frcnn.rpn.generate_anchors.shifted_anchors`).

        Made once per feature-map size and device and then reused (a training run sees a few
        sizes; the grid is a dozen small tensor operations per forward otherwise): the caller
        must not write into it. A change of the reference anchors (another buffer, or one
        written in place) makes it anew."""
        key = (int(height), int(width), torch.device(device))
        cache = self.__dict__.setdefault("_anchor_grids", {})
        entry = cache.get(key)  # (the reference anchors it was made from, their version, the grid)
        base = self.anchors
        if entry is None or entry[0] is not base or entry[1] != base._version:
            if entry is None and len(cache) >= 8:  # sizes vary with the images' aspect ratios
                cache.pop(next(iter(cache)))
            entry = cache[key] = (base, base._version, shifted_anchors(base, height, width, self.feat_stride,
                                                                       device=device))
        grid = entry[2]
        return grid
