"""Train a Fast R-CNN / Faster R-CNN net (upstream's ``lib/fast_rcnn/train.py``).

``SolverWrapper`` wraps the engine's ``SGDSolver`` as upstream did, and adds what a long
run on shared machines needs:

1. snapshots every ``TRAIN.SNAPSHOT_ITERS`` and at the end, named
   ``<prefix>[_<infix>]_iter_<N>.caffemodel``, with ``bbox_pred`` un-normalised
   (:mod:`frcnn.training.snapshot`), written atomically;
2. resume: the run continues from its newest complete snapshot (weights, momentum,
   iteration, RNG and data-order state), so a killed run rerun with the same command
   ends with the same parameters as one that was never interrupted;
3. a loss that becomes NaN or inf stops the run (:class:`TrainingDiverged`, naming the
   iteration and the loss) without writing a snapshot of the broken state;
4. progress lines: iteration, losses, learning rate, speed and time left.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Callable

import numpy as np
import torch

from frcnn.training import snapshot as snap
from frcnn.training.data import filter_roidb, get_roidb, get_training_roidb
from frcnn.utils.timer import Timer

__all__ = [
    "ResumeMismatch",
    "SolverWrapper",
    "TrainingDiverged",
    "filter_roidb",
    "get_roidb",
    "get_training_roidb",
    "set_random_seeds",
    "train_net",
]


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf; the message names the iteration, the loss and the last snapshot."""


class ResumeMismatch(RuntimeError):
    """Snapshots in the output folder were made with other settings than this run's."""


def set_random_seeds(seed: int) -> None:
    """Seed numpy's and torch's global RNGs (upstream: numpy and Caffe)."""
    np.random.seed(seed)
    torch.manual_seed(seed)


def bbox_target_stats(roidb: list[dict], cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Add ``bbox_targets`` to the roidb; return the (4K,) means and stds used to normalise them."""
    from frcnn.roi_data import roidb as rdl_roidb

    means, stds = rdl_roidb.add_bbox_regression_targets(roidb, cfg)
    return np.asarray(means, dtype=np.float64).ravel(), np.asarray(stds, dtype=np.float64).ravel()


def run_fingerprint(solver_prototxt: str, cfg: Any, extra: str = "") -> str:
    """A short hash of what must not change between a run and its resume: the solver and
    net definitions and the TRAIN config (the device and the paths may change)."""
    h = hashlib.sha256()
    with open(solver_prototxt, "rb") as f:
        h.update(f.read())
    # keys that change how fast a run goes or how often it saves, never its numbers
    speed_only = ("USE_PREFETCH", "PREFETCH_WORKERS", "SNAPSHOT_ITERS")
    train = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in cfg.TRAIN.items() if k not in speed_only}
    h.update(json.dumps(train, sort_keys=True, default=str).encode())
    h.update(json.dumps([cfg.RNG_SEED, np.asarray(cfg.PIXEL_MEANS).tolist()]).encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def _fmt_time(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SolverWrapper:
    """Owns the solver, the snapshot statistics and the output folder of one training run."""

    def __init__(
        self,
        solver_prototxt: str,
        roidb: list[dict],
        output_dir: str,
        cfg: Any,
        pretrained_model: str | None = None,
        solver_factory: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.cfg = cfg
        t = cfg.TRAIN
        if t.HAS_RPN and t.BBOX_REG and t.BBOX_NORMALIZE_TARGETS and not t.BBOX_NORMALIZE_TARGETS_PRECOMPUTED:
            raise ValueError(
                "config: TRAIN.HAS_RPN with TRAIN.BBOX_REG and TRAIN.BBOX_NORMALIZE_TARGETS needs "
                "TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED True (the proposal target layer "
                "normalises with the fixed means/stds)"
            )
        self.bbox_means = self.bbox_stds = None
        if cfg.TRAIN.BBOX_REG:
            print("Computing bounding-box regression targets...")
            means, stds = bbox_target_stats(roidb, cfg)
            if cfg.TRAIN.BBOX_NORMALIZE_TARGETS:
                self.bbox_means, self.bbox_stds = means, stds
            print("done")

        if solver_factory is None:
            from frcnn.caffe import SGDSolver

            solver_factory = SGDSolver
        self.solver = solver_factory(solver_prototxt, cfg)
        # snapshots are ours (un-normalised bbox_pred, resume state); upstream's solvers say 0 too
        self.solver.param.snapshot = 0
        self.net = self.solver.net
        #: (iteration, total loss) of every iteration this process ran, for reports and tests
        self.loss_history: list[tuple[int, float]] = []
        self.fingerprint = run_fingerprint(solver_prototxt, cfg, extra=str(len(roidb)))
        if pretrained_model:
            print(f"Loading pretrained model weights from {pretrained_model}")
            self.net.copy_from(pretrained_model)
        self.net.layers[0].set_roidb(roidb)

    # -------------------------------------------------------------- names

    @property
    def prefix(self) -> str:
        return str(self.solver.param.snapshot_prefix)

    @property
    def infix(self) -> str:
        return str(self.cfg.TRAIN.SNAPSHOT_INFIX)

    def _base(self, iteration: int) -> str:
        return os.path.join(self.output_dir, snap.snapshot_basename(self.prefix, self.infix, iteration))

    # -------------------------------------------------------------- snapshot / resume

    def snapshot(self) -> str:
        """Write the three snapshot files for the current iteration; return the caffemodel path.

        The solver state holds the iteration, momentum history, RNG and data-layer state;
        the train state holds this run's fingerprint and the training-form ``bbox_pred``
        (the caffemodel's is un-normalised, and dividing back would not be exact).
        """
        base = self._base(self.solver.iter)
        self.solver.snapshot(base + snap.SOLVERSTATE)
        state: dict[str, Any] = {"iter": self.solver.iter, "fingerprint": np.array(self.fingerprint)}
        if "bbox_pred" in self.net.params:
            state["bbox_pred/w"] = self.net.params["bbox_pred"][0].data
            state["bbox_pred/b"] = self.net.params["bbox_pred"][1].data
        snap.save_train_state(base + snap.TRAINSTATE, state)
        filename = base + snap.CAFFEMODEL
        with snap.bbox_pred_unnormalized(self.net, self.bbox_means, self.bbox_stds):
            self.net.save(filename)
        print(f"Wrote snapshot to: {filename}")
        return filename

    def restore(self, caffemodel_path: str) -> None:
        """Continue from a snapshot written by :meth:`snapshot` (same settings required)."""
        base = caffemodel_path[: -len(snap.CAFFEMODEL)]
        state = snap.load_train_state(base + snap.TRAINSTATE)
        got = str(state.get("fingerprint", ""))
        if got != self.fingerprint:
            raise ResumeMismatch(
                f"{base + snap.TRAINSTATE}: written by a run with other settings (solver, net or TRAIN "
                f"config; fingerprint {got} != {self.fingerprint}); use another EXP_DIR, remove the "
                "old snapshots, or run with --fresh"
            )
        self.net.copy_from(caffemodel_path)
        self.solver.restore(base + snap.SOLVERSTATE)
        if "bbox_pred/w" in state:
            with torch.no_grad():
                for i, key in enumerate(("bbox_pred/w", "bbox_pred/b")):
                    p = self.net.params["bbox_pred"][i].data
                    p.copy_(torch.from_numpy(state[key]).to(p))
        if int(state["iter"]) != self.solver.iter:
            raise ValueError(
                f"{base}: the solver state is at iteration {self.solver.iter}, the train state at "
                f"{int(state['iter'])}"
            )
        print(f"Resumed from {caffemodel_path} at iteration {self.solver.iter}")

    def try_resume(self, max_iters: int) -> str | None:
        """Restore the newest complete snapshot at or below ``max_iters``; return its path."""
        candidates = [(it, p) for it, p in snap.resumable_snapshots(self.output_dir, self.prefix, self.infix)]
        candidates = [(it, p) for it, p in candidates if it <= max_iters]
        if not candidates:
            return None
        self.restore(candidates[-1][1])
        return candidates[-1][1]

    # -------------------------------------------------------------- the loop

    def _losses(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.solver.last_losses().items()}

    def train_model(self, max_iters: int, resume: bool = True) -> list[str]:
        """Step the solver up to ``max_iters``; return the paths of this run's snapshots.
        Holds a lock on the output folder meanwhile (:class:`snapshot.RunLock`)."""
        with snap.RunLock(self.output_dir, self.prefix, self.infix):
            return self._train_model(max_iters, resume)

    def _train_model(self, max_iters: int, resume: bool) -> list[str]:
        written: list[str] = []
        if resume:
            resumed = self.try_resume(max_iters)
            if resumed is not None:
                written = [
                    p
                    for i, p in snap.find_snapshots(self.output_dir, self.prefix, self.infix)
                    if i <= self.solver.iter
                ]
        last_snapshot_iter = self.solver.iter if self.solver.iter > 0 else -1
        if not self.solver.param.max_iter:  # upstream's solvers leave it unset; the solver's log uses it
            self.solver.param.max_iter = max_iters
        display = max(1, int(getattr(self.solver.param, "display", 20) or 20))
        timer = Timer()
        smoothed: dict[str, list[float]] = {}
        average_loss = max(1, int(getattr(self.solver.param, "average_loss", 1) or 1))
        start_iter = self.solver.iter
        while self.solver.iter < max_iters:
            timer.tic()
            self.solver.step(1)
            timer.toc()
            it = self.solver.iter
            losses = self._losses()
            total = sum(self.net.loss_weights.get(k, 1.0) * v for k, v in losses.items())
            self.loss_history.append((it, total))
            if not math.isfinite(total):
                bad = ", ".join(f"{k} = {v}" for k, v in losses.items())
                last = snap.find_snapshots(self.output_dir, self.prefix, self.infix)
                last_txt = last[-1][1] if last else "none (no snapshot was written yet)"
                raise TrainingDiverged(
                    f"loss became {total} at iteration {it} ({bad}); stopping without a snapshot "
                    f"of this state. Last good snapshot: {last_txt}"
                )
            for k, v in losses.items():
                smoothed.setdefault(k, []).append(v)
                del smoothed[k][:-average_loss]
            if it % display == 0 or it == max_iters:
                self._print_progress(it, max_iters, smoothed, timer, it - start_iter)
            if it % self.cfg.TRAIN.SNAPSHOT_ITERS == 0:
                last_snapshot_iter = it
                written.append(self._snapshot_keep_latest_state(written))
        if last_snapshot_iter != self.solver.iter:
            written.append(self._snapshot_keep_latest_state(written))
        return written

    def _snapshot_keep_latest_state(self, older: list[str]) -> str:
        """Snapshot, then drop the solver/train state of older snapshots (their weights stay)."""
        path = self.snapshot()
        for old in older:
            if old != path:
                snap.remove_snapshot(old, keep_model=True)
        return path

    def _print_progress(
        self, it: int, max_iters: int, smoothed: dict[str, list[float]], timer: Timer, done: int
    ) -> None:
        parts = [f"{k} = {np.mean(v):.4f}" for k, v in smoothed.items()]
        total = sum(np.mean(v) for v in smoothed.values())
        rate = 1.0 / timer.average_time if timer.average_time > 0 else float("inf")
        left = (max_iters - it) * timer.average_time
        lr = getattr(self.solver, "lr", None)
        lr_txt = f", lr = {lr:g}" if isinstance(lr, (int, float)) else ""
        print(
            f"Iteration {it}/{max_iters}, loss = {total:.4f} ({', '.join(parts)}){lr_txt}; "
            f"{rate:.2f} iter/s, {timer.average_time:.3f}s / iter, time left {_fmt_time(left)}",
            flush=True,
        )


def train_net(
    solver_prototxt: str,
    roidb: list[dict],
    output_dir: str,
    cfg: Any,
    pretrained_model: str | None = None,
    max_iters: int = 40000,
    resume: bool = True,
    require_resume: bool = False,
) -> list[str]:
    """Train a net; return the list of snapshot paths (the last is the final model).

    With ``resume`` the run continues from its newest snapshot in ``output_dir`` (if any);
    ``require_resume`` makes the absence of such a snapshot an error.
    """
    roidb = filter_roidb(roidb, cfg)
    sw = SolverWrapper(solver_prototxt, roidb, output_dir, cfg, pretrained_model=pretrained_model)
    if require_resume and not snap.resumable_snapshots(output_dir, sw.prefix, sw.infix):
        raise FileNotFoundError(
            f"--resume: no complete snapshot of '{snap.snapshot_basename(sw.prefix, sw.infix, 0)[:-1]}*' "
            f"in {output_dir}"
        )
    print("Solving...")
    model_paths = sw.train_model(max_iters, resume=resume or require_resume)
    print("done solving")
    return model_paths
