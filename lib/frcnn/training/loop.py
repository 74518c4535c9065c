"""The training loop: step the solver, then let each hook do its part.

The loop itself only runs the solver one iteration at a time and computes that iteration's
losses; everything else a run does (recording and printing losses, stopping on NaN,
snapshots, removing old resume state) is a :class:`Hook`, called in list order::

    before_train(loop)                     once, before the first step
    after_step(loop)                       after every iteration
    after_snapshot(loop, caffemodel_path)  after every snapshot (from any hook)
    after_train(loop)                      once, when max_iters is reached

A hook that raises stops the run there (no later hook runs, no final snapshot). To add
one, subclass :class:`Hook` and append an instance to ``SolverWrapper.hooks`` (or pass
``hooks=[...]`` to ``train_net``); the built-in ones are in :mod:`frcnn.training.hooks`.
In a data-parallel run a hook with ``rank_zero_only`` runs on rank 0 alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from frcnn.utils.timer import Timer


class Hook:
    """One named step of the training loop; override the methods you need (all do nothing).

    ``rank_zero_only``: in a data-parallel run (torchrun ranks) the hook runs on rank 0 alone
    (logging, snapshots); the others run on every rank (all ranks see the same averaged losses).
    """

    rank_zero_only = False

    def before_train(self, loop: TrainLoop) -> None:
        """Called once before the first iteration (also when there is none left to run)."""

    def after_step(self, loop: TrainLoop) -> None:
        """Called after each iteration; ``loop.iter`` is the number of iterations done."""

    def after_snapshot(self, loop: TrainLoop, path: str) -> None:
        """Called after :meth:`TrainLoop.snapshot` wrote the snapshot whose caffemodel is ``path``."""

    def after_train(self, loop: TrainLoop) -> None:
        """Called once after the last iteration."""


class TrainLoop:
    """One pass of a :class:`~frcnn.training.train.SolverWrapper` from its current iteration
    to ``max_iters``. What hooks read:

    - ``wrapper``, ``solver``, ``net``, ``max_iters``, ``start_iter`` and ``iter`` (done so far);
    - ``losses``: the last iteration's loss outputs (unweighted) and ``total_loss``, their
      sum with the net's loss weights;
    - ``step_timer``: the time of each ``solver.step(1)``;
    - ``snapshots``: the caffemodel paths of this run's snapshots, oldest first (those of a
      resumed run included); the list :meth:`run` returns.
    """

    def __init__(
        self, wrapper: Any, max_iters: int, hooks: Sequence[Hook], snapshots: Sequence[str] = ()
    ) -> None:
        self.wrapper = wrapper
        self.solver = wrapper.solver
        self.net = wrapper.net
        self.max_iters = int(max_iters)
        #: this process's rank (0 alone); hooks marked ``rank_zero_only`` run on rank 0 only
        self.rank = int(getattr(self.solver, "rank", 0))
        self.hooks = [h for h in hooks if self.rank == 0 or not h.rank_zero_only]
        self.snapshots = list(snapshots)
        self.start_iter = self.solver.iter
        self.step_timer = Timer()
        self.losses: dict[str, float] = {}
        self.total_loss = math.nan

    @property
    def iter(self) -> int:
        return self.solver.iter

    def snapshot(self) -> str:
        """Write a snapshot of the current iteration, tell every hook; return its caffemodel path."""
        path = self.wrapper.snapshot()
        self.snapshots.append(path)
        for hook in self.hooks:
            hook.after_snapshot(self, path)
        return path

    def run(self) -> list[str]:
        """Step to ``max_iters`` calling the hooks; return :attr:`snapshots`."""
        for hook in self.hooks:
            hook.before_train(self)
        while self.solver.iter < self.max_iters:
            self.step_timer.tic()
            self.solver.step(1)
            self.step_timer.toc()
            self.losses = {k: float(v) for k, v in self.solver.last_losses().items()}
            self.total_loss = sum(self.net.loss_weights.get(k, 1.0) * v for k, v in self.losses.items())
            for hook in self.hooks:
                hook.after_step(self)
        for hook in self.hooks:
            hook.after_train(self)
        return self.snapshots
