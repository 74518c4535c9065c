"""The training loop and its hooks, with a stand-in solver (no net is trained here)."""

import math
import os
import types

import pytest

from frcnn.config import get_default_config
from frcnn.training import hooks as H
from frcnn.training.loop import Hook, TrainLoop


class FakeSolver:
    """Counts iterations; the loss of iteration i is ``losses(i)``."""

    def __init__(self, losses, display=0, average_loss=1):
        self.iter = 0
        self.param = types.SimpleNamespace(display=display, average_loss=average_loss, max_iter=0)
        self._losses = losses
        self.lr = 0.001

    def step(self, n):
        self.iter += n

    def last_losses(self):
        return self._losses(self.iter)


def _wrapper(tmp_path, losses, snapshot_iters=2, **param):
    cfg = get_default_config()
    cfg.TRAIN.SNAPSHOT_ITERS = snapshot_iters
    solver = FakeSolver(losses, **param)
    w = types.SimpleNamespace(
        solver=solver,
        net=types.SimpleNamespace(loss_weights={"a": 1.0, "b": 0.5}),
        cfg=cfg,
        output_dir=str(tmp_path),
        prefix="p",
        infix="",
        loss_history=[],
    )

    def snapshot():
        path = os.path.join(str(tmp_path), f"p_iter_{solver.iter}.caffemodel")
        for ext in (".caffemodel", ".solverstate", ".trainstate.npz"):
            open(path[: -len(".caffemodel")] + ext, "w").close()
        return path

    w.snapshot = snapshot
    return w


class Recorder(Hook):
    def __init__(self, events):
        self.events = events

    def before_train(self, loop):
        self.events.append(("before_train", loop.iter))

    def after_step(self, loop):
        self.events.append(("after_step", loop.iter, loop.total_loss))

    def after_snapshot(self, loop, path):
        self.events.append(("after_snapshot", os.path.basename(path)))

    def after_train(self, loop):
        self.events.append(("after_train", loop.iter))


def test_hooks_run_in_order_and_see_the_weighted_loss(tmp_path):
    w = _wrapper(tmp_path, lambda i: {"a": float(i), "b": 2.0})
    events = []
    snapshots = TrainLoop(w, 3, [*H.default_hooks(w), Recorder(events)]).run()
    assert events == [
        ("before_train", 0),
        ("after_step", 1, 2.0),  # a * 1 + b * 0.5
        ("after_snapshot", "p_iter_2.caffemodel"),  # PeriodicSnapshot's after_step runs before ours
        ("after_step", 2, 3.0),
        ("after_step", 3, 4.0),
        ("after_snapshot", "p_iter_3.caffemodel"),  # the final one, from after_train
        ("after_train", 3),
    ]
    assert [os.path.basename(p) for p in snapshots] == ["p_iter_2.caffemodel", "p_iter_3.caffemodel"]
    assert w.loss_history == [(1, 2.0), (2, 3.0), (3, 4.0)]
    # KeepLatestState: the older snapshot keeps only its weights
    assert sorted(os.listdir(tmp_path)) == [
        "p_iter_2.caffemodel", "p_iter_3.caffemodel", "p_iter_3.solverstate", "p_iter_3.trainstate.npz",
        "p_loss.png", "p_losses.csv",  # LossCurve: the picture and the table
    ]  # fmt: skip


def test_divergence_stops_before_later_hooks_and_without_a_final_snapshot(tmp_path):
    w = _wrapper(tmp_path, lambda i: {"a": math.nan if i == 3 else 1.0, "b": 0.0})
    events = []
    loop = TrainLoop(w, 10, [*H.default_hooks(w), Recorder(events)])
    with pytest.raises(H.TrainingDiverged, match=r"loss became nan at iteration 3 \(a = nan, b = 0.0\)") as err:
        loop.run()
    assert "p_iter_2.caffemodel" in str(err.value)
    assert events[-1] == ("after_step", 2, 1.0)  # no hook after the check saw iteration 3
    assert [os.path.basename(p) for p in loop.snapshots] == ["p_iter_2.caffemodel"]
    assert w.loss_history[-1][0] == 3  # recorded before the check


def test_progress_log_every_display_iterations_and_at_the_end(tmp_path, capsys):
    w = _wrapper(tmp_path, lambda i: {"a": float(i), "b": 0.0}, snapshot_iters=100, display=2, average_loss=2)
    TrainLoop(w, 5, [H.ProgressLog()]).run()
    lines = [s for s in capsys.readouterr().out.splitlines() if s.startswith("Iteration")]
    assert [s.split(",")[0] for s in lines] == ["Iteration 2/5", "Iteration 4/5", "Iteration 5/5"]
    assert lines[1].startswith("Iteration 4/5, loss = 3.5000 (a = 3.5000, b = 0.0000), lr = 0.001; ")


def test_display_zero_means_every_20_iterations(tmp_path, capsys):
    w = _wrapper(tmp_path, lambda i: {"a": 1.0}, snapshot_iters=100)
    TrainLoop(w, 41, [H.ProgressLog()]).run()
    lines = [s.split(",")[0] for s in capsys.readouterr().out.splitlines()]
    assert lines == ["Iteration 20/41", "Iteration 40/41", "Iteration 41/41"]


def test_a_resumed_run_at_max_iters_writes_nothing(tmp_path):
    w = _wrapper(tmp_path, lambda i: {"a": 1.0})
    w.solver.iter = 4
    loop = TrainLoop(w, 4, H.default_hooks(w), snapshots=["old.caffemodel"])
    assert loop.run() == ["old.caffemodel"] and os.listdir(tmp_path) == []
