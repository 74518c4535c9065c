"""Small helpers for the engine tests: one-layer nets with declared inputs."""

from __future__ import annotations

import torch

from frcnn.caffe import Net
from frcnn.caffe.prototxt import parse


def net_for(layers: str, inputs: dict[str, tuple], phase: str = "TEST", **kw) -> Net:
    """A net with ``input:`` blobs of the given shapes followed by ``layers`` (prototxt text)."""
    head = "".join(
        f'input: "{k}"\ninput_shape {{ {" ".join(f"dim: {d}" for d in s)} }}\n' for k, s in inputs.items()
    )
    return Net(parse(head + layers, "test.prototxt"), phase=phase, **kw)


def run(layers: str, phase: str = "TEST", want: tuple = (), **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Build a net for ``layers`` with inputs shaped like the tensors given, run it, return the
    outputs plus the blobs named in ``want``."""
    net = net_for(layers, {k: tuple(v.shape) for k, v in inputs.items()}, phase)
    return net.forward(blobs=list(want), **inputs)
