"""The solver's schedule from the config: overrides of a solver file's fields, and a
schedule that fits the number of iterations.

``TRAIN.SOLVER_BASE_LR``, ``TRAIN.SOLVER_STEPSIZE`` and ``TRAIN.SOLVER_ITER_SIZE`` (0 keeps the
solver file's value) replace a solver's ``base_lr`` / ``stepsize`` / ``iter_size`` in every
training run (end2end, Fast R-CNN, each alt-opt step: :func:`apply_solver_overrides`, called by
the solver wrapper). The shipped solvers hold upstream's single-GPU schedules; the paper trained
COCO on 8 GPUs at lr 0.003 for 240k iterations and 0.0003 for 80k (Sec. 4.2), which
``experiments/cfgs/coco_paper.yml`` asks for through these keys, with Caffe's ``iter_size``
standing in for the GPUs. The keys live in ``TRAIN``, so a run's resume fingerprint covers them.

Upstream trained VGG16 end2end on VOC for 70000 iterations with the learning rate dropped
(x ``gamma`` = 0.1) once at 50000, and snapshotted every 10000: the step at 5/7 of the run,
a snapshot every 1/7. A shipped solver's ``stepsize`` is fixed, whatever ``--iters`` is (the
SMALL PASCAL VOC solver steps every 2000), so a run of 10000 iterations would spend most of its
time at 1e-4 and below. :func:`derive_schedule` keeps upstream's proportions for any number of
iterations; the derived defaults of a new dataset (:mod:`frcnn.training.defaults`) put its step
into ``TRAIN.SOLVER_STEPSIZE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from frcnn.config import ConfigError

#: upstream: the step at 50000 of 70000 iterations, a snapshot every 10000
STEP_FRACTION = 5 / 7
SNAPSHOT_FRACTION = 1 / 7


def _two_significant_digits(n: int) -> int:
    """``n`` rounded down to two significant digits (1428 -> 1400, 714 -> 710, 42 -> 42)."""
    if n < 100:
        return n
    unit = 10 ** (int(math.log10(n)) - 1)
    return n // unit * unit


@dataclass(frozen=True)
class Schedule:
    """``stepsize`` (iteration of the learning-rate drop) and ``snapshot_iters`` for ``iters``."""

    iters: int
    stepsize: int
    snapshot_iters: int


def derive_schedule(iters: int) -> Schedule:
    """Upstream's proportions (module docstring) for a run of ``iters`` iterations: the step
    at round(5/7 * iters), inside the run (1 <= step < iters when iters >= 2), and a snapshot
    every iters / 7 rounded down to two significant digits (at least 1)."""
    iters = int(iters)
    if iters < 1:
        raise ValueError(f"derive_schedule: iters must be >= 1, got {iters}")
    step = round(iters * STEP_FRACTION)
    step = max(1, min(step, iters - 1)) if iters >= 2 else 1
    snapshot = max(1, _two_significant_digits(int(iters * SNAPSHOT_FRACTION)))
    return Schedule(iters=iters, stepsize=step, snapshot_iters=snapshot)


_KEYS = (("SOLVER_BASE_LR", "base_lr"), ("SOLVER_STEPSIZE", "stepsize"), ("SOLVER_ITER_SIZE", "iter_size"))


def apply_solver_overrides(param: Any, cfg: Any) -> dict[str, tuple[Any, Any]]:
    """Set the overridden fields of ``param`` (a ``SolverParameter``) from ``cfg.TRAIN``;
    returns ``{field: (file's value, new value)}`` for the fields changed."""
    changed = {}
    for key, field in _KEYS:
        value = cfg.TRAIN[key]
        if value < 0:
            raise ConfigError(f"config: TRAIN.{key} must be >= 0 (0 keeps the solver's {field}), got {value}")
        if value == 0:
            continue
        if field == "stepsize" and param.lr_policy not in ("step", "sigmoid"):
            raise ConfigError(
                f"config: TRAIN.{key} {value}: the solver {param.source} has lr_policy '{param.lr_policy}', "
                "which has no stepsize"
            )
        changed[field] = (getattr(param, field), type(getattr(param, field))(value))
        setattr(param, field, changed[field][1])
    return changed
