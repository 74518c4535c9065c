"""pycaffe-like views: ``net.blobs[name]`` (:class:`Blob`) and ``net.params[layer][i]``
(:class:`ParamBlob`). ``.data`` is a torch tensor; ``.diff`` the gradient where there is one."""

from __future__ import annotations

import torch


class Blob:
    """A named activation. ``data`` is the tensor of the last forward (or of ``reshape``)."""

    def __init__(self, name: str, shape: tuple | None = None) -> None:
        self.name = name
        self.declared_shape = shape
        self._data: torch.Tensor | None = None

    @property
    def data(self) -> torch.Tensor:
        if self._data is None:
            s = self.declared_shape
            if s is None or any(d is None for d in s):
                shown = "unknown" if s is None else tuple("?" if d is None else d for d in s)
                raise RuntimeError(f"blob '{self.name}' has no data yet (shape {shown}); run net.forward first")
            self._data = torch.zeros(s, dtype=torch.float32)
        return self._data

    @data.setter
    def data(self, value: torch.Tensor) -> None:
        self._data = value

    @property
    def diff(self) -> torch.Tensor | None:
        """The gradient of the loss w.r.t. this blob after backward, when the net retained it
        (``Net(..., retain_diffs=True)``); None otherwise."""
        return None if self._data is None else self._data.grad

    @property
    def shape(self) -> tuple:
        if self._data is not None:
            return tuple(self._data.shape)
        return tuple(self.declared_shape or ())

    @property
    def count(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def reshape(self, *shape: int) -> None:
        """Give the blob this shape (zeros unless it already has it), as pycaffe's reshape."""
        shape = tuple(int(d) for d in shape)
        if self._data is None or tuple(self._data.shape) != shape:
            device = self._data.device if self._data is not None else torch.device("cpu")
            self._data = torch.zeros(shape, dtype=torch.float32, device=device)

    def __repr__(self) -> str:
        return f"Blob({self.name!r}, shape={self.shape})"


class ParamBlob:
    """A learnable blob of a layer: ``data`` aliases the parameter's storage (writes go into
    the net), ``diff`` is its gradient (zeros when none)."""

    def __init__(self, param: torch.nn.Parameter, layer: str, index: int) -> None:
        self.param = param
        self.layer = layer
        self.index = index

    @property
    def data(self) -> torch.Tensor:
        return self.param.data

    @data.setter
    def data(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value)
        if tuple(value.shape) != tuple(self.param.shape):
            raise ValueError(f"params['{self.layer}'][{self.index}]: shape {tuple(value.shape)} does not match "
                             f"{tuple(self.param.shape)}")
        with torch.no_grad():
            self.param.copy_(value)

    @property
    def diff(self) -> torch.Tensor:
        g = self.param.grad
        return torch.zeros_like(self.param.data) if g is None else g

    @property
    def shape(self) -> tuple:
        return tuple(self.param.shape)

    @property
    def count(self) -> int:
        return self.param.numel()

    def __repr__(self) -> str:
        return f"ParamBlob({self.layer!r}[{self.index}], shape={self.shape})"
