"""The library's GPU paths run without a GPU: on torch's ``meta`` device (shapes and devices, no
data), under a dispatch mode that records every point where a GPU run would make the host wait.

A layer, a net or a whole solver iteration moved to ``meta`` takes the branches it takes on a
GPU (everything that is not ``device.type == "cpu"``), and torch checks devices on ``meta`` as
on a GPU, so a tensor left on the host where the device was meant fails here as it would there.
:class:`HostWaits` answers what a GPU would have to send back (values, data-dependent sizes,
copies to the host) with stand-ins, so the run goes on to its end, and lists each such point
with the library line that asked for it. frcnn's own ops get shape-only stand-ins too (each is a
wait on a GPU: the NMS op reads back its kept count, RoI pooling its error flag).
"""

from __future__ import annotations

import os
import sys
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
LIB = os.sep + "frcnn" + os.sep

#: the kinds of wait, as recorded
READ_BACK, DATA_SIZE, TO_HOST, FROM_HOST, NMS_OP, OP_FLAG = (
    "a value read back", "a size from the data", "a copy to the host", "a copy from the host",
    "the NMS op", "an op's error flag read back")


def caller() -> str:
    """``path:line: source`` of the innermost library frame (``path`` below lib/frcnn/)."""
    for frame in reversed(traceback.extract_stack()):
        if LIB in frame.filename and f"{os.sep}tests{os.sep}" not in frame.filename:
            return f"{frame.filename.rsplit(LIB, 1)[1]}:{frame.lineno}: {frame.line}"
    return "?"


class HostWaits(TorchDispatchMode):
    """Records every op that would make the host wait for a GPU, while code runs on ``meta``:
    a value read back (``.item()``, ``bool``, ``int``, ``float``), a size that depends on the
    data (``nonzero``, boolean-mask indexing), a blocking copy to or from the host
    (``torch.tensor`` of host data included), frcnn's ops. Read-backs are answered with ``item``
    (integers), ``truth`` (booleans) or 0.5, nonzero rows with half of them and the NMS op with
    half of its boxes, so that the code runs on; ``non_blocking`` copies are allowed. ``waits``:
    ``[(kind, where)]`` in order."""

    def __init__(self, item: int = 128, truth: bool = True) -> None:
        super().__init__()
        self.item, self.truth, self.waits = item, truth, []
        self._factories = {}

    # torch.tensor / torch.as_tensor of host data (lists, numbers, arrays) copy to the device
    # below any dispatch mode: they are watched at the Python call instead
    def __enter__(self):
        for name in ("tensor", "as_tensor"):
            made = self._factories[name] = getattr(torch, name)

            def factory(data, *args, _made=made, **kwargs):
                device = kwargs.get("device")
                if device is not None and torch.device(device).type != "cpu" and not isinstance(data, torch.Tensor):
                    self.waits.append((FROM_HOST, caller()))
                return _made(data, *args, **kwargs)

            setattr(torch, name, factory)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, made in self._factories.items():
            setattr(torch, name, made)
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "namespace", None) == "frcnn" and args[0].device.type == "meta":
            return self._frcnn_op(func, args)
        if func in (aten._local_scalar_dense.default, aten.nonzero.default) and args[0].device.type == "cpu":
            return func(*args, **kwargs)  # host values: no device to wait for
        if func is aten._local_scalar_dense.default:
            self.waits.append((READ_BACK, caller()))
            t = args[0]
            return self.truth if t.dtype == torch.bool else (0.5 if t.dtype.is_floating_point else self.item)
        if func is aten.nonzero.default:
            self.waits.append((DATA_SIZE, caller()))
            t = args[0]
            return torch.empty((max(t.numel() // 2, 1), t.dim()), dtype=torch.int64, device=t.device)
        if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default) and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        ) and args[0].device.type != "cpu":  # boolean-mask indexing: the mask's nonzero (below this mode)
            self.waits.append((DATA_SIZE, caller()))
            if func is not aten.index.Tensor:
                return args[0] if func is aten.index_put_.default else args[0].clone()
            indices = []
            for i in args[1]:
                if i is not None and i.dtype in (torch.bool, torch.uint8):
                    rows = max(i.numel() // 2, 1)
                    indices += [torch.zeros(rows, dtype=torch.int64, device=i.device)] * i.dim()
                else:
                    indices.append(i)
            return func(args[0], indices)
        if func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst = args[0].device if func is aten.copy_.default else torch.device(kwargs.get("device") or src.device)
            non_blocking = kwargs.get("non_blocking", len(args) > 2 and bool(args[2]))
            if src.device.type == "meta" and dst.type == "cpu":
                if not non_blocking:
                    self.waits.append((TO_HOST, caller()))
                if func is aten.copy_.default:
                    return args[0]
                return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype)
            if src.device.type == "cpu" and dst.type == "meta" and not non_blocking:
                self.waits.append((FROM_HOST, caller()))
        if kwargs.get("pin_memory"):
            kwargs = {**kwargs, "pin_memory": False}  # pinned host memory needs a CUDA build
        return func(*args, **kwargs)

    def _frcnn_op(self, func, args):
        name = func.name()
        if name == "frcnn::nms":
            self.waits.append((NMS_OP, caller()))
            return torch.empty(max(args[0].shape[0] // 2, 1), dtype=torch.int64, device="meta")
        self.waits.append((OP_FLAG, caller()))
        if name == "frcnn::roi_pool_forward":
            features, rois, _, pooled_h, pooled_w = args
            shape = (rois.shape[0], features.shape[1], pooled_h, pooled_w)
            return (torch.empty(shape, dtype=features.dtype, device="meta"),
                    torch.empty(shape, dtype=torch.int32, device="meta"))
        if name in ("frcnn::roi_pool_backward", "frcnn::roi_pool_backward_gather"):
            return torch.empty(tuple(args[-4:]), dtype=args[0].dtype, device="meta")
        raise NotImplementedError(f"HostWaits: no meta stand-in for {name}")


def patch_for_meta(monkeypatch) -> None:
    """What cannot run on ``meta`` as such: the per-image generators (a CUDA generator there) and
    the CUDA event of the anchor target layer's deferred warning."""
    from frcnn.roi_data import keys

    def no_generator(*args, **kwargs):
        return None

    def keys_on(n, generator, device):
        return torch.rand(n, dtype=torch.float64, device=device)

    for name, module in list(sys.modules.items()):
        if name.startswith("frcnn") and module is not keys:
            if getattr(module, "torch_generator", None) is keys.torch_generator:
                monkeypatch.setattr(module, "torch_generator", no_generator)
            if getattr(module, "random_keys", None) is keys.random_keys:
                monkeypatch.setattr(module, "random_keys", keys_on)

    class Event:
        def record(self, stream=None):
            pass

        def query(self):
            return False

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)


def kinds(waits) -> list[str]:
    return [kind for kind, _ in waits]
