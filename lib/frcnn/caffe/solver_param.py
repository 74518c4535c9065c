"""SolverParameter: reading a solver prototxt, Caffe's defaults, and the learning-rate policies."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .prototxt import Message, PrototxtError, parse_file
from .validate import check

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")
_SOLVER_TYPES = {"SGD": 0, "NESTEROV": 1, "ADAGRAD": 2, "RMSPROP": 3, "ADADELTA": 4, "ADAM": 5}


@dataclass
class SolverParameter:
    """The solver settings, with Caffe's defaults. ``source`` is the solver file."""

    source: str = "<solver>"
    net: str = ""  # the resolved path of the train net ('' when net_param is inline)
    net_param: Message | None = None
    base_lr: float = 0.0
    lr_policy: str = "fixed"
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = 0
    stepvalue: list[int] = field(default_factory=list)
    max_iter: int = 0
    momentum: float = 0.0
    weight_decay: float = 0.0
    regularization_type: str = "L2"
    iter_size: int = 1
    average_loss: int = 1
    display: int = 0
    snapshot: int = 0
    snapshot_prefix: str = ""
    clip_gradients: float = -1.0
    random_seed: int = -1
    test_interval: int = 0

    def learning_rate(self, iteration: int, current_step: int) -> tuple[float, int]:
        """Caffe's GetLearningRate at ``iteration`` (before the increment); returns the rate and
        the (possibly advanced) multistep counter."""
        base, it = self.base_lr, iteration
        p = self.lr_policy
        if p == "fixed":
            return base, current_step
        if p == "step":
            return base * self.gamma ** (it // self.stepsize), current_step
        if p == "exp":
            return base * self.gamma ** it, current_step
        if p == "inv":
            return base * (1.0 + self.gamma * it) ** (-self.power), current_step
        if p == "multistep":
            if current_step < len(self.stepvalue) and it >= self.stepvalue[current_step]:
                current_step += 1  # one step per call, as Caffe
            return base * self.gamma ** current_step, current_step
        if p == "poly":
            return base * (1.0 - it / self.max_iter) ** self.power, current_step
        if p == "sigmoid":
            return base * (1.0 / (1.0 + math.exp(-self.gamma * (it - self.stepsize)))), current_step
        raise AssertionError(p)


def _resolve(path: str, solver_path: str, root_dir: str | None) -> str:
    """Caffe opens net paths relative to the working directory; we also try the solver's folder
    and the project root, in that order."""
    if os.path.isabs(path):
        return path
    bases = [os.getcwd(), os.path.dirname(os.path.abspath(solver_path))] + ([root_dir] if root_dir else [])
    for base in bases:
        cand = os.path.join(base, path)
        if os.path.exists(cand):
            return cand
    return path  # Net will report it missing


def read_solver(solver: str | Message, root_dir: str | None = None) -> SolverParameter:
    """Parse and check a solver prototxt (path or parsed message)."""
    msg = solver if isinstance(solver, Message) else parse_file(solver)
    src = msg.filename
    check(msg, "SolverParameter")
    sp = SolverParameter(source=src)
    given = [k for k in ("net", "net_param", "train_net", "train_net_param") if k in msg]
    if len(given) != 1:
        raise PrototxtError(f"{src}: a solver needs exactly one of net, net_param, train_net, train_net_param; "
                            f"got {', '.join(given) or 'none'}")
    if given[0] in ("net", "train_net"):
        sp.net = _resolve(msg.get_str(given[0]), src, root_dir)
    else:
        sp.net_param = msg.get_msg(given[0])
    kind = msg.get_str("type", None)
    if kind is None and "solver_type" in msg:
        kind = msg.get_enum("solver_type", "SGD", _SOLVER_TYPES)
    if kind not in (None, "SGD"):
        raise msg.error("type" if "type" in msg else "solver_type", f"only the SGD solver is implemented, got {kind}")
    sp.base_lr = msg.get_float("base_lr", 0.0)
    sp.lr_policy = msg.get_str("lr_policy", "fixed")
    if sp.lr_policy not in POLICIES:
        raise msg.error("lr_policy", f"unknown lr_policy '{sp.lr_policy}' (expected one of {', '.join(POLICIES)})")
    sp.gamma = msg.get_float("gamma", 0.0)
    sp.power = msg.get_float("power", 0.0)
    sp.stepsize = msg.get_int("stepsize", 0)
    sp.stepvalue = msg.get_ints("stepvalue")
    sp.max_iter = msg.get_int("max_iter", 0)
    if sp.lr_policy == "step" and sp.stepsize <= 0:
        raise msg.error("stepsize", "lr_policy 'step' needs stepsize > 0")
    if sp.lr_policy == "poly" and sp.max_iter <= 0:
        raise msg.error("max_iter", "lr_policy 'poly' needs max_iter > 0")
    if any(b <= a for a, b in zip(sp.stepvalue, sp.stepvalue[1:])):
        raise msg.error("stepvalue", f"stepvalue must increase, got {sp.stepvalue}")
    sp.momentum = msg.get_float("momentum", 0.0)
    sp.weight_decay = msg.get_float("weight_decay", 0.0)
    sp.regularization_type = msg.get_str("regularization_type", "L2")
    if sp.regularization_type not in ("L1", "L2"):
        raise msg.error("regularization_type", f"expected \"L1\" or \"L2\", got {sp.regularization_type!r}")
    sp.iter_size = msg.get_int("iter_size", 1)
    sp.average_loss = msg.get_int("average_loss", 1)
    sp.display = msg.get_int("display", 0)
    sp.snapshot = msg.get_int("snapshot", 0)
    for name in ("iter_size", "average_loss"):
        if getattr(sp, name) < 1:
            raise msg.error(name, f"{name} must be at least 1")
    for name in ("display", "snapshot", "max_iter"):
        if getattr(sp, name) < 0:
            raise msg.error(name, f"{name} must not be negative")
    # as written ('' when absent, as Caffe at 33f2445); relative to the working directory
    sp.snapshot_prefix = msg.get_str("snapshot_prefix", "") or ""
    sp.clip_gradients = msg.get_float("clip_gradients", -1.0)
    sp.random_seed = msg.get_int("random_seed", -1)
    sp.test_interval = msg.get_int("test_interval", 0)
    return sp
