"""Truncated-SVD compression of ``fc6`` / ``fc7`` (upstream's ``tools/compress_net.py``;
Fast R-CNN section 3.1).

A fully connected layer ``y = W x + b`` with W (N x M) becomes two: ``fc_L`` (l outputs, no
bias) with weights ``diag(s_l) V_l`` (l x M), then ``fc_U`` (N outputs) with weights ``U_l``
(N x l) and the original bias. :func:`svd_net` writes the matching prototxt (upstream
shipped none); :func:`compress_net` fills it from a trained model.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from frcnn.caffe.prototxt import Message


def compress_weights(W: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(U_l (N x l), L = diag(s_l) V_l (l x M)) with ``U_l @ L`` the best rank-l approximation of W."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"compress_weights: W must be 2-D, got shape {W.shape}")
    if not 0 < rank <= min(W.shape):
        raise ValueError(f"compress_weights: rank must be in [1, {min(W.shape)}] for W {W.shape}, got {rank}")
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    return U[:, :rank], np.diag(s[:rank]) @ Vt[:rank, :]


def _layers(msg: Message) -> list[Message]:
    return msg.get_msgs("layer")


def svd_net(msg: Message, ranks: dict[str, int]) -> Message:
    """A copy of a net with each InnerProduct layer named in ``ranks`` split into ``<name>_L``
    and ``<name>_U`` (the top keeps its name, so the rest of the net is unchanged)."""
    out = Message(filename=msg.filename)
    found = set()
    for f in msg.fields:
        if f.name != "layer" or f.value.get("name") not in ranks:
            out.fields.append(type(f)(f.name, f.value.copy() if isinstance(f.value, Message) else f.value))
            continue
        layer, name = f.value, f.value.get("name")
        if layer.get("type") != "InnerProduct":
            raise layer.error("type", f"layer '{name}' is {layer.get('type')}, not InnerProduct")
        found.add(name)
        ip = layer.get_msg("inner_product_param")
        low = Message().add("name", f"{name}_L").add("type", "InnerProduct")
        for b in layer.get_strs("bottom"):
            low.add("bottom", b)
        low.add("top", f"{name}_L")
        low.add("inner_product_param", Message().add("num_output", int(ranks[name])).add("bias_term", False))
        up = Message().add("name", f"{name}_U").add("type", "InnerProduct").add("bottom", f"{name}_L")
        for t in layer.get_strs("top"):
            up.add("top", t)
        up.add("inner_product_param", Message().add("num_output", ip.get_int("num_output")))
        out.add("layer", low).add("layer", up)
    missing = set(ranks) - found
    if missing:
        raise ValueError(f"{msg.filename}: no layer named {', '.join(sorted(missing))}")
    return out


def compress_net(prototxt: str, prototxt_svd: str | Message, caffemodel: str, cfg: Any = None) -> str:
    """Fill the SVD net from ``caffemodel``; save ``<model>_svd[_fc6_<l>][_fc7_<l>].caffemodel``
    beside it and return that path."""
    from frcnn.caffe import TEST, Net
    from frcnn.caffe.weights import WeightsWarning

    net = Net(prototxt, caffemodel, TEST, cfg=cfg)
    net_svd = Net(prototxt_svd, None, TEST, cfg=cfg)
    with warnings.catch_warnings():
        # fc6_L/fc6_U/fc7_L/fc7_U are not in the file: they are filled from the SVD just below
        warnings.filterwarnings("ignore", category=WeightsWarning, message=r".*'fc[67]_[LU]'")
        net_svd.copy_from(caffemodel, allow_empty=True)  # the layers outside fc6/fc7 (none in an fc-only net)
    out = os.path.splitext(os.path.basename(caffemodel))[0] + "_svd"
    for name in ("fc6", "fc7"):
        if f"{name}_L" not in net_svd.params:
            continue
        rank = net_svd.params[f"{name}_L"][0].shape[0]
        W = net.params[name][0].data.double().cpu().numpy()
        U, L = compress_weights(W, rank)
        net_svd.params[f"{name}_L"][0].data = torch.from_numpy(L).float()
        net_svd.params[f"{name}_U"][0].data = torch.from_numpy(U).float()
        net_svd.params[f"{name}_U"][1].data = net.params[name][1].data.clone()
        out += f"_{name}_{rank}"
    path = os.path.join(os.path.dirname(os.path.abspath(caffemodel)), out + ".caffemodel")
    net_svd.save(path)
    return path
