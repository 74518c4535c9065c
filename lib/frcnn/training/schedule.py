"""Config overrides of a solver's schedule (``TRAIN.SOLVER_BASE_LR``, ``_STEPSIZE``, ``_ITER_SIZE``).

The shipped solvers hold upstream's single-GPU schedules. The paper trained COCO on 8 GPUs
(8 images per RPN minibatch, 16 per Fast R-CNN minibatch) at lr 0.003 for 240k iterations
and 0.0003 for 80k (Sec. 4.2); ``experiments/cfgs/coco_paper.yml`` asks for that through
these keys, and Caffe's ``iter_size`` (gradients averaged over that many minibatches before
an update) stands in for the GPUs. A value of 0 keeps the solver file's setting. The keys
live in ``TRAIN``, so a run's resume fingerprint covers them.
"""

from __future__ import annotations

from typing import Any

from frcnn.config import ConfigError

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
