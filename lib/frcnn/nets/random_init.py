"""Random weights for a whole net: for timing runs and tests that need a net without a model file.

The shipped test prototxts carry no fillers (their weights come from a .caffemodel), so a net
built without one holds zeros, whose outputs are degenerate (every RPN score 0.5, every class
score 1/K). :func:`fill_random` gives every Convolution and InnerProduct He-normal weights
(std sqrt(2 / fan_in), which keeps activations of the order of the input through ReLU trunks)
and small random biases, and BatchNorm unit statistics, from one seeded generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def fill_random(net: Any, seed: int = 0, gains: dict[str, float] | None = None) -> None:
    """Fill ``net``'s weights in place (see the module docstring); ``gains`` multiplies the
    weights of named layers (e.g. ``{"cls_score": 40.0}`` for peaked class scores).

    Blobs still waiting for their shape (made at the first forward) are skipped: run one
    forward first.
    """
    g = torch.Generator().manual_seed(seed)
    gains = gains or {}
    with torch.no_grad():
        for name, blobs in net.params.items():
            kind = net.layer_dict[name].type_name
            if kind in ("Convolution", "InnerProduct"):
                w = blobs[0].data
                std = np.sqrt(2.0 / max(1, int(np.prod(w.shape[1:]))))
                w.copy_(torch.randn(w.shape, generator=g) * std * gains.get(name, 1.0))
                if len(blobs) > 1:
                    blobs[1].data.copy_(torch.randn(blobs[1].data.shape, generator=g) * 0.1)
            elif kind == "BatchNorm":  # mean 0, variance 1, scale factor 1
                blobs[0].data.zero_()
                blobs[1].data.fill_(1.0)
                blobs[2].data.fill_(1.0)
