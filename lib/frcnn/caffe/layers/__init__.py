"""Layers by Caffe type name; ``layer_class(type, lp)`` finds one (see ``base.register``)."""

from .base import Layer, ParamSpec, Shape, layer_class, register

__all__ = ["Layer", "ParamSpec", "Shape", "ensure_loaded", "layer_class", "register"]


def ensure_loaded() -> None:
    """Import every built-in layer module so that their ``@register`` calls have run."""
    from . import activation, data, linear, loss, normalization, pooling, python, shape_ops  # noqa: F401
