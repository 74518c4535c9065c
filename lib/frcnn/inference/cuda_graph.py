"""``TEST.CUDA_GRAPH``: the conv trunk and the RPN head of a test net replayed from a CUDA graph.

The layers from the first one after the inputs up to the last one before the first Python layer
(the proposal layer) have shapes fixed by the input size and no host synchronisation, so their
kernels can be recorded once (``torch.cuda.CUDAGraph``) and replayed per image, which removes
the per-layer launch overhead. The proposal layer (NMS: a data-dependent count) and the
region-wise layers run as usual after the replay.

The graph is captured at the first input size it sees, on a static input buffer; an image of
another size runs without the graph (saying so once per size), as does a net on the CPU. The
captured blobs live in the graph's memory and are overwritten by the next replay, so a caller
that keeps them across images must copy them (``im_detect`` uses them before the next image).
"""

from __future__ import annotations

from typing import Any

import torch


def capture_range(net: Any) -> tuple[int, int] | None:
    """(first, last) layer indices of the trunk + RPN head, or None when there is nothing to
    capture (no layer before the first Python layer)."""
    types = [layer.type_name for layer in net.layers]
    first = next((i for i, t in enumerate(types) if t != "Input"), None)
    python = next((i for i, t in enumerate(types) if t == "Python"), len(types))
    if first is None or python <= first:
        return None
    return first, python - 1


class GraphedNet:
    """A test ``Net`` whose trunk + RPN head replay from a CUDA graph; otherwise the net itself
    (``blobs``, ``layers``, ``device``, ... are the wrapped net's)."""

    def __init__(self, net: Any, first: int, last: int, say: Any = print) -> None:
        self.net = net
        self.first, self.last = first, last
        self._say = say
        self._replay: Any = None  # the captured graph's replay()
        self._graph: Any = None
        self._shape: tuple | None = None
        self._static_in: torch.Tensor | None = None
        self._static_out: dict[str, torch.Tensor] = {}
        self._told: set[tuple] = set()
        self.replays = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    @property
    def captured_shape(self) -> tuple | None:
        """The input shape the graph was captured for (None before the first image)."""
        return self._shape

    def forward(self, blobs: list[str] | None = None, start: str | None = None, end: str | None = None,
                **inputs: Any) -> dict[str, torch.Tensor]:
        data = inputs.get("data")
        if start is not None or end is not None or not isinstance(data, torch.Tensor):
            return self.net.forward(blobs=blobs, start=start, end=end, **inputs)
        if self._replay is None and self._shape is None:
            self._capture(data)
        if self._replay is None or tuple(data.shape) != self._shape or data.device != self._static_in.device:
            if self._replay is not None and tuple(data.shape) not in self._told:
                self._told.add(tuple(data.shape))
                self._say(f"TEST.CUDA_GRAPH: input {'x'.join(map(str, data.shape))} differs from the captured "
                          f"{'x'.join(map(str, self._shape))}; this size runs without the graph")
            return self.net.forward(blobs=blobs, **inputs)
        self._static_in.copy_(data)
        self._replay()
        self.replays += 1
        for name, tensor in self._static_out.items():
            self.net.blobs[name].data = tensor
        rest = {k: v for k, v in inputs.items() if k != "data"}
        after = self.net.layers[self.last + 1].name
        return self.net.forward(blobs=blobs, start=after, **rest)

    __call__ = forward

    def _run_captured(self) -> None:
        layers = self.net.layers
        self.net.forward(start=layers[self.first].name, end=layers[self.last].name)

    def _capture(self, data: torch.Tensor) -> None:
        """Record the captured layers on a static copy of ``data`` (a message if that fails)."""
        self._shape = tuple(data.shape)
        self._static_in = data.detach().clone()
        self.net.blobs["data"].data = self._static_in
        try:
            replay = self._record(data.device)
        except RuntimeError as e:
            self._say(f"TEST.CUDA_GRAPH: capture failed ({e}); running without the graph")
            return
        tops = [t for layer in self.net.layers[self.first : self.last + 1] for t in layer.tops]
        self._static_out = {t: self.net.blobs[t].data for t in dict.fromkeys(tops)}
        self._replay = replay
        self._say(f"TEST.CUDA_GRAPH: captured layers {self.net.layers[self.first].name} .. "
                  f"{self.net.layers[self.last].name} for input {'x'.join(map(str, self._shape))}")

    def _record(self, device: torch.device) -> Any:
        """Warm up on a side stream, then capture; returns the graph's ``replay``."""
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):  # lazily made blobs, cuDNN's choices, the allocator: all settled
                self._run_captured()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # the capture stream on the net's device: torch.cuda.graph's default one is made on the
        # current device, and work on another device would not be captured (an empty graph)
        with torch.cuda.graph(graph, stream=torch.cuda.Stream(device)), torch.no_grad():
            self._run_captured()
        self._graph = graph  # keeps the graph (and its memory pool) alive
        return graph.replay

def graphed_net(net: Any, say: Any = print) -> Any:
    """``net`` with its trunk + RPN head replayed from a CUDA graph (:class:`GraphedNet`), or
    ``net`` itself, with a message, when it runs on the CPU or has nothing to capture."""
    if net.device.type != "cuda":
        say(f"TEST.CUDA_GRAPH: ignored: the net runs on {net.device} (CUDA graphs need a CUDA device)")
        return net
    span = capture_range(net)
    if span is None:
        say(f"TEST.CUDA_GRAPH: ignored: net '{net.name}' has no layers before its first Python layer to capture")
        return net
    return GraphedNet(net, *span, say=say)
