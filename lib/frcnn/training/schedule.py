"""A learning-rate schedule and snapshot interval that fit the number of iterations.

Upstream trained VGG16 end2end on VOC for 70000 iterations with the learning rate dropped
(x ``gamma`` = 0.1) once at 50000, and snapshotted every 10000: the step at 5/7 of the run,
a snapshot every 1/7. A shipped solver's ``stepsize`` is fixed, whatever ``--iters`` is
(the SMALL PASCAL VOC solver steps every 2000), so a run of 10000 iterations would spend
most of its time at 1e-4 and below. :func:`derive_schedule` keeps upstream's proportions for
any number of iterations.

``TRAIN.STEPSIZE`` (config; 0 = the solver's own) makes ``tools/train_net.py`` train a copy of
the solver with that ``stepsize`` (:func:`solver_overrides`, written beside the class-count
adaptations by :func:`frcnn.nets.adapt.ensure_solver_classes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from frcnn.errors import InputError

#: upstream: the step at 50000 of 70000 iterations, a snapshot every 10000
STEP_FRACTION = 5 / 7
SNAPSHOT_FRACTION = 1 / 7


class ScheduleError(InputError):
    """TRAIN.STEPSIZE asked of a solver whose learning-rate policy has no single step size."""


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


def solver_overrides(cfg: Any, solver: str) -> dict[str, Any]:
    """The solver fields the config overrides: ``{"stepsize": TRAIN.STEPSIZE}`` when it is set
    (> 0), for a solver with ``lr_policy: "step"``; else nothing."""
    step = int(cfg.TRAIN.STEPSIZE)
    if step <= 0:
        return {}
    from frcnn.caffe.prototxt import parse_file

    policy = parse_file(solver).get_str("lr_policy", "fixed")
    if policy != "step":
        raise ScheduleError(
            f"TRAIN.STEPSIZE {step}: {solver} has lr_policy \"{policy}\", which has no stepsize; "
            "set TRAIN.STEPSIZE 0 (the default) or use a solver with lr_policy \"step\""
        )
    return {"stepsize": step}
