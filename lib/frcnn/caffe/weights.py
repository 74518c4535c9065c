"""Copying weights into a Net by layer name, and saving them.

Two file formats: ``.caffemodel`` (Caffe's binary NetParameter; see ``caffemodel.py``) and our
torch parameter file (``torch.save`` of ``{"format": "frcnn.caffe.params", "name": net name,
"params": {layer: [tensor, ...]}}``, loaded with ``weights_only=True``), told apart by content
(a torch file is a zip archive), so either may be given to ``copy_from`` under any name.
"""

from __future__ import annotations

import collections
import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from frcnn.errors import InputError
from frcnn.utils.io import atomic_write

from .caffemodel import BlobData, CaffeModel, LayerData, read_caffemodel, write_caffemodel

if TYPE_CHECKING:
    from .net import Net

TORCH_FORMAT = "frcnn.caffe.params"
logger = logging.getLogger("frcnn.caffe.weights")


def is_torch_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def read_torch_params(path: str) -> collections.OrderedDict[str, list[BlobData]]:
    """Our torch parameter file (or a plain ``{layer: [tensors]}`` dict) as layer -> blobs."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch.load raises many kinds; the message is what matters)
        raise WeightsError(f"{path}: cannot load as a torch parameter file: {e}") from None
    if isinstance(obj, dict) and obj.get("format") == TORCH_FORMAT:
        obj = obj.get("params")
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: expected a dict of layer name -> list of tensors")
    out = collections.OrderedDict()
    for name, blobs in obj.items():
        if isinstance(blobs, torch.Tensor):
            blobs = [blobs]
        if not isinstance(name, str) or not isinstance(blobs, (list, tuple)) or not all(
                isinstance(b, torch.Tensor) for b in blobs):
            raise WeightsError(f"{path}: entry {name!r} is not a list of tensors")
        out[name] = [BlobData(b.detach().float().cpu().numpy()) for b in blobs]
    return out


def read_any(path: str) -> list[tuple[str, list[BlobData]]]:
    """(layer name, blobs) in file order, from a .caffemodel or our torch parameter file."""
    if is_torch_file(path):
        return list(read_torch_params(path).items())
    return [(layer.name, layer.blobs) for layer in read_caffemodel(path).layers]


def _legacy_fits(target: tuple, source: tuple) -> bool:
    """Caffe's ShapeEquals for legacy (num, channels, height, width) blobs: the target shape
    left-padded with 1s to 4 axes equals the source's."""
    if len(target) > 4:
        return False
    return (1,) * (4 - len(target)) + tuple(target) == tuple(source)


class WeightsError(InputError):
    """Weights that do not fit the net (nothing in common, a blob count or shape mismatch), or a
    torch parameter file that cannot be read; the message names the file and the net."""


class WeightsWarning(UserWarning):
    """A net layer with parameters that the weights file left at its initial values."""


class CopyReport(list):
    """What ``Net.copy_from`` did: the names of the layers copied (the list itself, in file
    order), ``blobs`` and ``values`` copied, ``missing`` (net layers with parameters that got
    nothing) and ``ignored`` (layers of the file that the net lacks)."""

    def __init__(self, path: str, net_name: str) -> None:
        super().__init__()
        self.path = path
        self.net_name = net_name
        self.blobs = 0
        self.values = 0
        self.missing: list[str] = []
        self.ignored: list[str] = []

    def summary(self) -> str:
        """One line for the log, e.g. "copied 13 layers (26 blobs, 14,710,464 values) from
        VGG16.caffemodel into net 'VGG_ILSVRC_16_layers'; 5 layers with parameters kept their
        initial values: rpn_conv/3x3, ..."."""
        text = (f"copied {_count(len(self), 'layer')} ({_count(self.blobs, 'blob')}, {self.values:,} values) "
                f"from {self.path} into net '{self.net_name}'")
        if self.missing:
            text += (f"; {_count(len(self.missing), 'layer')} with parameters kept their initial values: "
                     f"{_names(self.missing)}")
        if self.ignored:
            text += f"; {_count(len(self.ignored), 'layer')} of the file not in the net"
        return text


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _names(names: list[str], most: int = 8) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names) - most} more)" if len(names) > most else "")


def copy_weights(net: Net, path: str, allow_empty: bool = False) -> CopyReport:
    """See ``Net.copy_from``."""
    return copy_blobs(net, read_any(path), path, allow_empty)


def copy_blobs(net: Net, source: list[tuple[str, list[BlobData]]], path: str, allow_empty: bool = False) -> CopyReport:
    """Copy (layer name, blobs) pairs read from ``path`` into ``net``; see ``Net.copy_from``."""
    layers = net.layer_dict
    report = CopyReport(path, net.name)
    filled: set[int] = set()  # ids of the parameters copied into (shared ones count once)
    for name, blobs in source:
        layer = layers.get(name)
        if layer is None:
            report.ignored.append(name)  # Caffe: "Ignoring source layer"
            continue
        if layer.blobs_pending() and layer._blob_plan is not None and len(blobs) == len(layer._blob_plan):
            layer.materialize([b.array.shape for b in blobs], net.device)
        if len(layer.blobs) != len(blobs):
            raise WeightsError(f"{path}: layer '{name}' has {len(blobs)} blob(s) in the file but {len(layer.blobs)} "
                               f"in the net ({net.source})")
        for i, (p, b) in enumerate(zip(layer.blobs, blobs)):
            target = tuple(p.shape)
            src = tuple(b.array.shape)
            if target != src and not (b.legacy and _legacy_fits(target, src)):
                raise WeightsError(f"{path}: layer '{name}' blob {i}: shape {src} in the file does not match "
                                   f"{target} in the net ({net.source})")
            with torch.no_grad():
                p.copy_(torch.from_numpy(b.array.reshape(target)).to(p.device, p.dtype))
            filled.add(id(p))
            report.blobs += 1
            report.values += int(b.array.size)
        report.append(name)
    for layer in net.layers:
        has_params = len(layer.blobs) > 0 or layer._blob_plan is not None
        if has_params and layer.name not in report and not (
                len(layer.blobs) and all(id(p) in filled for p in layer.blobs)):  # all shared with copied ones
            report.missing.append(layer.name)
    if report.blobs == 0 and not allow_empty:
        file_layers = [n for n, blobs in source if blobs]
        raise WeightsError(
            f"{path}: no weights copied into net '{net.name}' ({net.source}): no layer with parameters has a "
            f"namesake in the file (the net's: {_names(report.missing) or 'none'}; the file's: "
            f"{_names(file_layers) or 'none'}); is it the model for another net? Pass allow_empty=True to "
            "load nothing on purpose")
    for name in report.missing:
        warnings.warn(WeightsWarning(f"{path}: net layer '{name}' ({layers[name].type_name}) has parameters but the "
                                     "file has no layer of that name: it keeps its initial values"), stacklevel=4)
    logger.info(report.summary())
    return report


def net_to_caffemodel(net: Net) -> CaffeModel:
    model = CaffeModel(name=net.name)
    for layer in net.layers:
        if layer.blobs_pending():
            raise InputError(f"layer '{layer.name}' has no weights yet (its shape is set by the first forward)")
        blobs = [BlobData(p.detach().float().cpu().numpy()) for p in layer.blobs]
        model.layers.append(LayerData(layer.name, layer.type_name, blobs, list(layer.bottoms), list(layer.tops)))
    return model


def save_weights(net: Net, path: str) -> None:
    """``.pth``: our torch parameter file; anything else: a .caffemodel. Written atomically."""
    model = net_to_caffemodel(net)
    if path.endswith(".pth"):
        params = {x.name: [torch.from_numpy(np.ascontiguousarray(b.array)) for b in x.blobs]
                  for x in model.layers if x.blobs}
        with atomic_write(path, "wb") as f:
            torch.save({"format": TORCH_FORMAT, "name": net.name, "params": params}, f)
    else:
        write_caffemodel(path, model)
