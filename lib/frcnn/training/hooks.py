"""The built-in steps of a training run, as :class:`~frcnn.training.loop.Hook` s.

:func:`default_hooks` gives them in the order they run after each iteration:

1. :class:`RecordLoss`: (iteration, total loss) into a list (``SolverWrapper.loss_history``);
2. :class:`DivergenceCheck`: a NaN or infinite loss stops the run (:class:`TrainingDiverged`)
   before anything of that state is saved;
3. :class:`ProgressLog`: every ``display`` iterations and at the last one, a line with the
   smoothed losses, the learning rate, the speed and the time left;
4. :class:`PeriodicSnapshot`: a snapshot every ``TRAIN.SNAPSHOT_ITERS`` iterations and at
   the end (unless the last iteration was just saved);
5. :class:`KeepLatestState`: after each snapshot, older snapshots lose their solver and train
   state (their weights stay), so only the newest one is resumable;
6. :class:`~frcnn.training.loss_curve.LossCurve`: every loss term of every iteration, saved
   with each snapshot (``<prefix>_losses.csv``) and drawn at the end (``<prefix>_loss.png``).

In a data-parallel run 3, 4, 5 and 6 run on rank 0 alone (``Hook.rank_zero_only``); 1 and 2 on
every rank, which all see the losses averaged over the ranks, so all stop together.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from frcnn.training import snapshot as snap
from frcnn.training.loop import Hook, TrainLoop
from frcnn.training.loss_curve import LossCurve


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf; the message names the iteration, the loss and the last snapshot."""


class RecordLoss(Hook):
    """Append ``(iteration, total loss)`` of every iteration to ``history``."""

    def __init__(self, history: list[tuple[int, float]]) -> None:
        self.history = history

    def after_step(self, loop: TrainLoop) -> None:
        self.history.append((loop.iter, loop.total_loss))


class DivergenceCheck(Hook):
    """Stop with :class:`TrainingDiverged` when the total loss is not finite."""

    def after_step(self, loop: TrainLoop) -> None:
        total = loop.total_loss
        if math.isfinite(total):
            return
        bad = ", ".join(f"{k} = {v}" for k, v in loop.losses.items())
        w = loop.wrapper
        last = snap.find_snapshots(w.output_dir, w.prefix, w.infix)
        last_txt = last[-1][1] if last else "none (no snapshot was written yet)"
        raise TrainingDiverged(
            f"loss became {total} at iteration {loop.iter} ({bad}); stopping without a snapshot "
            f"of this state. Last good snapshot: {last_txt}"
        )


def _fmt_time(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressLog(Hook):
    """Every ``display`` iterations (and at the last): iteration, losses averaged over the
    last ``average_loss`` iterations, learning rate, speed and time left. Both numbers are
    the solver's (``display: 0`` means every 20), read when training starts."""

    rank_zero_only = True

    def __init__(self) -> None:
        self.display = 20
        self.average_loss = 1
        self.smoothed: dict[str, list[float]] = {}

    def before_train(self, loop: TrainLoop) -> None:
        self.display = loop.solver.param.display or 20
        self.average_loss = loop.solver.param.average_loss
        self.smoothed = {}

    def after_step(self, loop: TrainLoop) -> None:
        for k, v in loop.losses.items():
            self.smoothed.setdefault(k, []).append(v)
            del self.smoothed[k][: -self.average_loss]
        if loop.iter % self.display == 0 or loop.iter == loop.max_iters:
            print(self.line(loop), flush=True)

    def line(self, loop: TrainLoop) -> str:
        """The progress line for the current iteration."""
        parts = [f"{k} = {np.mean(v):.4f}" for k, v in self.smoothed.items()]
        total = sum(np.mean(v) for v in self.smoothed.values())
        per_iter = loop.step_timer.average_time
        rate = 1.0 / per_iter if per_iter > 0 else float("inf")
        left = (loop.max_iters - loop.iter) * per_iter
        return (
            f"Iteration {loop.iter}/{loop.max_iters}, loss = {total:.4f} ({', '.join(parts)}), "
            f"lr = {loop.solver.lr:g}; {rate:.2f} iter/s, {per_iter:.3f}s / iter, time left {_fmt_time(left)}"
        )


class PeriodicSnapshot(Hook):
    """A snapshot every ``TRAIN.SNAPSHOT_ITERS`` iterations (read when training starts), and
    one at the end unless the last iteration has one already (a run resumed at
    ``max_iters`` writes nothing)."""

    rank_zero_only = True

    def __init__(self) -> None:
        self.every = 1
        self.last_iter = -1

    def before_train(self, loop: TrainLoop) -> None:
        self.every = loop.wrapper.cfg.TRAIN.SNAPSHOT_ITERS
        self.last_iter = loop.iter if loop.iter > 0 else -1

    def after_step(self, loop: TrainLoop) -> None:
        if loop.iter % self.every == 0:
            self.last_iter = loop.iter
            loop.snapshot()

    def after_train(self, loop: TrainLoop) -> None:
        if self.last_iter != loop.iter:
            loop.snapshot()


class KeepLatestState(Hook):
    """After a snapshot, drop the solver and train state of every older one (weights stay)."""

    rank_zero_only = True

    def after_snapshot(self, loop: TrainLoop, path: str) -> None:
        for old in loop.snapshots[:-1]:
            if old != path:  # a rerun at iteration 0 rewrites the same snapshot
                snap.remove_snapshot(old, keep_model=True)


def default_hooks(wrapper: Any) -> list[Hook]:
    """The built-in hooks of a :class:`~frcnn.training.train.SolverWrapper`, in order."""
    return [
        RecordLoss(wrapper.loss_history),
        DivergenceCheck(),
        ProgressLog(),
        PeriodicSnapshot(),
        KeepLatestState(),
        LossCurve(),
    ]
