"""Copying weights into a Net by layer name, and saving them.

Two file formats: ``.caffemodel`` (Caffe's binary NetParameter; see ``caffemodel.py``) and our
torch parameter file (``torch.save`` of ``{"format": "frcnn.caffe.params", "name": net name,
"params": {layer: [tensor, ...]}}``, loaded with ``weights_only=True``), told apart by content
(a torch file is a zip archive), so either may be given to ``copy_from`` under any name.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import numpy as np
import torch

from frcnn.utils.io import atomic_write

from .caffemodel import BlobData, CaffeModel, LayerData, read_caffemodel, write_caffemodel

if TYPE_CHECKING:
    from .net import Net

TORCH_FORMAT = "frcnn.caffe.params"


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
        raise ValueError(f"{path}: cannot load as a torch parameter file: {e}") from None
    if isinstance(obj, dict) and obj.get("format") == TORCH_FORMAT:
        obj = obj.get("params")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of layer name -> list of tensors")  # noqa: TRY004
    out = collections.OrderedDict()
    for name, blobs in obj.items():
        if isinstance(blobs, torch.Tensor):
            blobs = [blobs]
        if not isinstance(name, str) or not isinstance(blobs, (list, tuple)) or not all(
                isinstance(b, torch.Tensor) for b in blobs):
            raise ValueError(f"{path}: entry {name!r} is not a list of tensors")
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


def copy_weights(net: Net, path: str) -> list[str]:
    """See ``Net.copy_from``."""
    source = read_any(path)
    layers = net.layer_dict
    copied = []
    for name, blobs in source:
        layer = layers.get(name)
        if layer is None:
            continue  # Caffe: "Ignoring source layer"
        if layer.blobs_pending() and layer._blob_plan is not None and len(blobs) == len(layer._blob_plan):
            layer.materialize([b.array.shape for b in blobs], net.device)
        if len(layer.blobs) != len(blobs):
            raise ValueError(f"{path}: layer '{name}' has {len(blobs)} blob(s) in the file but {len(layer.blobs)} "
                             f"in the net ({net.source})")
        for i, (p, b) in enumerate(zip(layer.blobs, blobs)):
            target = tuple(p.shape)
            src = tuple(b.array.shape)
            if target != src and not (b.legacy and _legacy_fits(target, src)):
                raise ValueError(f"{path}: layer '{name}' blob {i}: shape {src} in the file does not match "
                                 f"{target} in the net ({net.source})")
            with torch.no_grad():
                p.copy_(torch.from_numpy(b.array.reshape(target)).to(p.device, p.dtype))
        copied.append(name)
    return copied


def net_to_caffemodel(net: Net) -> CaffeModel:
    model = CaffeModel(name=net.name)
    for layer in net.layers:
        if layer.blobs_pending():
            raise ValueError(f"layer '{layer.name}' has no weights yet (its shape is set by the first forward)")
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
