"""Small constant tensors made on the device itself.

``torch.tensor([...], device="cuda")`` copies from host memory and waits for the copy (a host
synchronisation, which ``torch.cuda.set_sync_debug_mode`` reports). The RPN layers and the
class-target expansion need a few constants per forward (inside weights, target means and
stds); :func:`device_constant` fills them on the device instead, one value per element.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def device_constant(values: Sequence[float], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """A 1-D tensor of ``values`` on ``device``, filled there (no host-to-device copy)."""
    if len(values) == 0:
        return torch.zeros((0,), dtype=dtype, device=device)
    return torch.stack([torch.full((), float(v), dtype=dtype, device=device) for v in values])
