"""Numeric precision and memory layout of a Net (frcnn's options; Caffe computed in float32).

Three settings, all off by default so the default numbers stay Caffe's:

- ``TRAIN.AMP`` / ``TEST.AMP`` ("none" | "bf16" | "fp16"): the net's forward runs under
  ``torch.autocast`` in that type. Layers that are exact or safe in low precision run on
  autocast's tensors (``Layer.low_precision``: convolutions and inner products, which autocast
  computes in the low type, and ReLU, pooling, RoI pooling, dropout, the shape layers); every
  other layer (softmax, the losses, LRN, BatchNorm/Scale, the Python layers: anchor targets,
  proposals, proposal targets) gets its bottoms widened to float32 and runs with autocast off,
  so probabilities, losses and box arithmetic stay in float32. RoI pooling is given float32
  RoIs (a bfloat16 coordinate would be off by up to 2 px at 600 px); ``frcnn.ops.roi_pool``
  widens half/bfloat16 features to float32 at its edge and returns the features' type (max
  pooling is exact either way), ``frcnn.ops.nms`` widens its inputs likewise (IoU is float64).
  Parameters and their gradients stay float32 (autocast casts the weights per call).
  "fp16" training adds :class:`LossScaler` (torch's dynamic loss scaling) in the solver.
- ``TF32`` (bool): :func:`set_tf32`, process-wide torch flags for cuDNN convolutions and
  matrix products; applied when a Net is built with a config.
- ``CHANNELS_LAST`` (bool): convolution inputs and weights in NHWC memory order (the same
  numbers to rounding; faster on tensor cores). The logical shapes do not change.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from frcnn.config import ConfigError

logger = logging.getLogger("frcnn.caffe.precision")

AMP_TYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
LOW_PRECISION = (torch.float16, torch.bfloat16)


def amp_dtype(name: str, key: str = "AMP") -> torch.dtype | None:
    """The autocast dtype of an AMP setting ("none" -> None); ConfigError naming ``key`` otherwise."""
    if not isinstance(name, str) or name.lower() not in AMP_TYPES:
        raise ConfigError(f"config: {key}: expected one of {', '.join(AMP_TYPES)}, got {name!r}")
    return AMP_TYPES[name.lower()]


@dataclass(frozen=True)
class Precision:
    """A net's precision settings: the autocast type (None: float32) and channels-last."""

    amp: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def from_config(cls, cfg: Any, phase: str) -> Precision:
        """``TRAIN.AMP`` for a TRAIN net, ``TEST.AMP`` for a TEST net, and ``CHANNELS_LAST``."""
        section = "TRAIN" if phase == "TRAIN" else "TEST"
        amp = amp_dtype(cfg[section].get("AMP", "none"), f"{section}.AMP")
        channels_last = cfg.get("CHANNELS_LAST", False)
        if not isinstance(channels_last, bool):
            raise ConfigError(f"config: CHANNELS_LAST: expected True or False, got {channels_last!r}")
        return cls(amp, channels_last)

    @property
    def name(self) -> str:
        return {None: "float32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp]


def set_tf32(enabled: bool) -> None:
    """TensorFloat-32 for cuDNN convolutions and CUDA matrix products, on or off (process-wide)."""
    if not isinstance(enabled, bool):
        raise ConfigError(f"config: TF32: expected True or False, got {enabled!r}")
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


@functools.cache
def cpu_has_native(dtype: torch.dtype) -> bool:
    """Whether this CPU computes ``dtype`` (bfloat16 / float16) matrix products and convolutions
    natively (oneDNN with AVX512-BF16 / AVX512-FP16 or AMX). Without, torch falls back to generic
    kernels: on a 2-core AMD EPYC (Zen 1, AVX2 only) a bf16 ZF training iteration at 192 x 256 took
    110 s against 1.3 s in float32 (fc6's backward, a bf16 matrix product of one layout, 13 s a
    call; docs/benchmarks.md). True where torch cannot tell."""
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    try:
        return bool(getattr(torch.ops.mkldnn, check)()) if check else True
    except (AttributeError, RuntimeError):
        return True


_warned_slow: set[torch.dtype] = set()


def warn_if_emulated(device_type: str, dtype: torch.dtype | None) -> bool:
    """Say once per process (a logging warning) when ``dtype`` autocast on the CPU will run on
    torch's generic kernels (:func:`cpu_has_native`); return whether it will."""
    if device_type != "cpu" or dtype is None or cpu_has_native(dtype):
        return False
    if dtype not in _warned_slow:
        _warned_slow.add(dtype)
        name = "bf16" if dtype == torch.bfloat16 else "fp16"
        logger.warning(
            "%s autocast on a CPU without native %s kernels (AVX512-%s or AMX; this CPU: %s): torch's "
            "generic kernels run it, far slower than float32 (bf16 on an AVX2 AMD EPYC: the "
            "convolutions 10x, a training iteration 90x); AMP none is faster here", name, name,
            name.upper(), torch.backends.cpu.get_cpu_capability())
    return True


def autocast(device_type: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in ``dtype`` (a no-op context for None). The weight-cast cache is off:
    each weight is used once per forward, and a cache would not survive a CUDA graph replay.
    On a CPU without native kernels for ``dtype`` it warns once (:func:`warn_if_emulated`)."""
    if dtype is None:
        return contextlib.nullcontext()
    warn_if_emulated(device_type, dtype)
    return torch.autocast(device_type, dtype=dtype, cache_enabled=False)


def autocast_active(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (False for a type autocast does not know, e.g. meta)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


@contextlib.contextmanager
def float32_region(device_type: str) -> Iterator[None]:
    """Autocast off (for a layer that computes in float32 inside an autocast forward)."""
    with torch.autocast(device_type, enabled=False):
        yield


def widen(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; any other tensor as it is."""
    return x.float() if x.dtype in LOW_PRECISION else x


class _UpdateStep:
    """What ``torch.amp.GradScaler.step`` needs of an optimizer: the parameters (to unscale
    their gradients and look for inf/NaN) and a ``step()``, here the solver's own update."""

    def __init__(self, params: list[torch.nn.Parameter], update: Callable[[], None]) -> None:
        self.param_groups = [{"params": params}]
        self._update = update
        self.stepped = False

    def step(self) -> None:
        self._update()
        self.stepped = True


class LossScaler:
    """Dynamic loss scaling for float16 training (torch's ``GradScaler`` rules: start at 2**16,
    halve after an overflow, double after 2000 clean iterations).

    ``scale(loss)`` before backward; ``step(params, update)`` unscales the gradients and runs
    ``update()`` (the solver's Caffe update) unless one of them is inf/NaN, then adjusts the
    scale; returns whether the update ran.
    """

    def __init__(self, device: torch.device) -> None:
        self.scaler = torch.amp.GradScaler(device.type)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss)

    def step(self, params: list[torch.nn.Parameter], update: Callable[[], None]) -> bool:
        step = _UpdateStep(params, update)
        self.scaler.step(step)
        self.scaler.update()
        return step.stepped

    @property
    def current(self) -> float:
        return float(self.scaler.get_scale())

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scaler.load_state_dict(state)
