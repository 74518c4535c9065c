"""Layers that move data around: Reshape, Flatten, Concat, Split, Silence, Eltwise."""

from __future__ import annotations

import torch

from ..prototxt import Message
from .base import Layer, Shape, prod, register


def reshape_dims(layer: Layer, bottom: tuple, dims: list[int], axis: int, num_axes: int) -> tuple:
    """Caffe's Reshape: replace bottom axes ``[axis, axis+num_axes)`` by ``dims``, where 0 copies
    the bottom's axis at the same position and -1 is inferred. Entries may be None (unknown)."""
    rank = len(bottom)
    start = axis if axis >= 0 else rank + axis + 1
    if not 0 <= start <= rank:
        raise layer.error(f"reshape_param.axis {axis} is out of range for a {rank}-D bottom")
    end = rank if num_axes == -1 else start + num_axes
    if num_axes < -1 or end > rank:
        raise layer.error(f"reshape_param.num_axes {num_axes} is out of range for a {rank}-D bottom at axis {start}")
    if sum(d == -1 for d in dims) > 1:
        raise layer.error("reshape_param.shape may infer (-1) at most one axis")
    new = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= rank:
                raise layer.error(f"dim {i} is 0 (copy) but the bottom has no axis {start + i}")
            new.append(bottom[start + i])
        elif d < -1:
            raise layer.error(f"reshape_param.shape dim {i} is {d}; only -1 (infer) and 0 (copy) may be negative/zero")
        else:
            new.append(d)
    out = list(bottom[:start]) + new + list(bottom[end:])
    if -1 in out:
        total = prod(bottom)
        rest = prod([d for d in out if d != -1])
        i = out.index(-1)
        if total is None or rest is None:
            out[i] = None
        elif rest == 0 or total % rest:
            raise layer.error(f"cannot reshape {tuple(bottom)} to {tuple(out)}: {total} is not divisible by {rest}")
        else:
            out[i] = total // rest
    else:
        a, b = prod(bottom), prod(out)
        if a is not None and b is not None and a != b:
            raise layer.error(f"cannot reshape {tuple(bottom)} ({a} entries) to {tuple(out)} ({b} entries)")
    return tuple(out)


@register("Reshape")
class Reshape(Layer):
    low_precision = True  # moves values: no arithmetic of its own

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)
        self.expect_tops(1)
        p = lp.get_msg("reshape_param")
        self.dims = p.get_msg("shape").get_ints("dim")
        self.axis = p.get_int("axis", 0)
        self.num_axes = p.get_int("num_axes", -1)

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        s = bottom_shapes[0]
        return [None if s is None else reshape_dims(self, s, self.dims, self.axis, self.num_axes)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x.reshape(reshape_dims(self, tuple(x.shape), self.dims, self.axis, self.num_axes)),)


@register("Flatten")
class Flatten(Layer):
    low_precision = True  # moves values: no arithmetic of its own

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)
        self.expect_tops(1)
        p = lp.get_msg("flatten_param")
        self.axis = p.get_int("axis", 1)
        self.end_axis = p.get_int("end_axis", -1)

    def _range(self, rank: int) -> tuple[int, int]:
        a = self.axis + rank if self.axis < 0 else self.axis
        e = self.end_axis + rank if self.end_axis < 0 else self.end_axis
        if not (0 <= a <= e < rank):
            raise self.error(f"axis {self.axis} / end_axis {self.end_axis} are out of range for a {rank}-D bottom")
        return a, e

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        s = bottom_shapes[0]
        if s is None:
            return [None]
        a, e = self._range(len(s))
        return [(*s[:a], prod(s[a:e + 1]), *s[e + 1:])]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        a, e = self._range(x.dim())
        return (x.flatten(a, e),)


@register("Concat")
class Concat(Layer):
    low_precision = True  # moves values: no arithmetic of its own

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1, 10**6)
        self.expect_tops(1)
        p = lp.get_msg("concat_param")
        if "axis" in p and "concat_dim" in p:
            raise self.error("give either concat_param.axis or the legacy concat_dim, not both")
        self.axis = p.get_int("axis", p.get_int("concat_dim", 1))

    def _axis(self, rank: int) -> int:
        a = self.axis + rank if self.axis < 0 else self.axis
        if not 0 <= a < rank:
            raise self.error(f"axis {self.axis} is out of range for {rank}-D bottoms")
        return a

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        if any(s is None for s in bottom_shapes):
            return [None]
        a = self._axis(len(bottom_shapes[0]))
        out = list(bottom_shapes[0])
        sizes = [s[a] for s in bottom_shapes]
        out[a] = None if None in sizes else sum(sizes)
        return [tuple(out)]

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor]:
        a = self._axis(xs[0].dim())
        for i, x in enumerate(xs[1:], start=1):
            if x.dim() != xs[0].dim() or x.shape[:a] != xs[0].shape[:a] or x.shape[a + 1:] != xs[0].shape[a + 1:]:
                raise self.error(f"bottom {i} shape {tuple(x.shape)} does not match bottom 0 {tuple(xs[0].shape)} "
                                 f"outside axis {a}")
        return (torch.cat(xs, dim=a),)


@register("Split")
class Split(Layer):
    low_precision = True  # moves values: no arithmetic of its own

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(x for _ in self.tops)


@register("Silence")
class Silence(Layer):
    low_precision = True  # moves values: no arithmetic of its own

    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_tops(0)

    def infer(self, bottom_shapes: list[Shape]) -> list[Shape]:
        return []

    def forward(self, *xs: torch.Tensor) -> tuple:
        return ()


_ELTWISE = {"PROD": 0, "SUM": 1, "MAX": 2}


@register("Eltwise")
class Eltwise(Layer):
    def __init__(self, lp: Message, phase: str, bottom_shapes: list[Shape]) -> None:
        super().__init__(lp, phase)
        self.expect_bottoms(2, 10**6)
        self.expect_tops(1)
        p = lp.get_msg("eltwise_param")
        self.op = p.get_enum("operation", "SUM", _ELTWISE)
        self.coeff = p.get_floats("coeff")
        if self.coeff and (self.op != "SUM" or len(self.coeff) != len(self.bottoms)):
            raise self.error("coeff needs operation SUM and one value per bottom", "eltwise_param")

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor]:
        for i, x in enumerate(xs[1:], start=1):
            if x.shape != xs[0].shape:
                raise self.error(f"bottom {i} shape {tuple(x.shape)} differs from bottom 0 {tuple(xs[0].shape)}")
        if self.op == "SUM":
            coeff = self.coeff or [1.0] * len(xs)
            out = xs[0] * coeff[0] if coeff[0] != 1.0 else xs[0]
            for c, x in zip(coeff[1:], xs[1:]):
                out = out + (x * c if c != 1.0 else x)
            return (out,)
        if self.op == "MAX":
            # the first maximal bottom takes the gradient, as Caffe's strict '>' scan
            return (torch.stack(xs).max(dim=0).values,)
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return (out,)
