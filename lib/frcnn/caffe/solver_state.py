"""The ``.solverstate`` file: a ``torch.save`` of tensors and plain values only, read back with
``weights_only=True`` (nothing is unpickled). It holds the iteration, the multistep counter,
the momentum history, the torch/numpy/Python RNG states, the ``get_state()`` of layers that
have one (the data layer) and, for Caffe-style snapshots, the weights file (``learned_net``).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from frcnn.errors import InputError
from frcnn.utils.io import atomic_write

FORMAT = "frcnn.caffe.solverstate/1"


def to_safe(value: Any, where: str) -> Any:
    """Arrays -> tagged tensors, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: cannot store an array of dtype {value.dtype} in a solver state")
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value)).clone(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_safe(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in a solver state")


def from_safe(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return value["__ndarray__"].numpy().astype(np.dtype(value["dtype"]))
        return {k: from_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_safe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_safe(v) for v in value)
    return value


def capture_rng() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU the saving process saw; a machine showing fewer GPUs restores those it has
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


def save_state(path: str, state: dict[str, Any]) -> None:
    state = dict(state, format=FORMAT)
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_state(path: str) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: solver state not found") from None
    except Exception as e:  # noqa: BLE001 (torch.load raises many kinds; the message is what matters)
        raise InputError(f"{path}: not a readable solver state: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a solver state written by frcnn.caffe (format {FORMAT})")
    return state
