"""Loads the compiled extension ``frcnn._C`` (which registers ``torch.ops.frcnn.*``), and the
few checks the Python faces make before a call reaches the op's dispatcher."""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import torch


@functools.cache
def native() -> ModuleType:
    """Import ``frcnn._C`` once (its import registers the ops) and return it.

    Raises ImportError with the build command when the extension has not been built.
    """
    try:
        return importlib.import_module("frcnn._C")
    except ImportError as exc:
        raise ImportError(
            "frcnn._C (the C++/CUDA ops) is not built or does not load: "
            f"{exc}. Build it with `pip install --no-build-isolation -e .` or "
            "`python setup.py build_ext --inplace` in the repository root."
        ) from exc


def with_cuda() -> bool:
    """True when frcnn._C was built with its CUDA kernels."""
    return bool(native().with_cuda())


def check_cuda_build(device_type: str, op: str) -> None:
    """Raise a clear error when a CUDA tensor reaches a build without the CUDA kernels."""
    if device_type == "cuda" and not with_cuda():
        raise RuntimeError(
            f"{op}: the tensors are on a CUDA device but frcnn._C was built without CUDA; "
            "rebuild on a machine with nvcc (or with FORCE_CUDA=1)"
        )


def check_tensor(t: object, name: str, where: str) -> None:
    """TypeError naming the argument when ``t`` is not a torch tensor (the op's dispatcher
    would raise a RuntimeError that names no argument of ours)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")


def check_same_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str, where: str) -> None:
    """ValueError when two tensors are on different devices: the dispatcher would route the
    call by one of them (or fail on a device frcnn has no kernel for, such as meta)."""
    if a.device != b.device:
        raise ValueError(f"{where}: {name_a} is on {a.device} but {name_b} is on {b.device}")
