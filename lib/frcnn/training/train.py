"""Train a Fast R-CNN / Faster R-CNN net (upstream's ``lib/fast_rcnn/train.py``).

``SolverWrapper`` wraps the engine's ``SGDSolver`` as upstream did, and adds what a long
run on shared machines needs:

1. snapshots every ``TRAIN.SNAPSHOT_ITERS`` and at the end, named
   ``<prefix>[_<infix>]_iter_<N>.caffemodel``, with ``bbox_pred`` un-normalised
   (:mod:`frcnn.training.snapshot`), written as all of their files or none;
2. resume: the run continues from its newest complete snapshot (weights, momentum,
   iteration, RNG and data-order state), so a killed run rerun with the same command
   ends with the same parameters as one that was never interrupted; what a killed run
   left half-written is removed first;
3. a loss that becomes NaN or inf stops the run (:class:`TrainingDiverged`, naming the
   iteration and the loss) without writing a snapshot of the broken state;
4. progress lines: iteration, losses, learning rate, speed and time left;
5. a lock on the output folder (:mod:`frcnn.training.run_lock`) while it trains;
6. data parallel under torchrun (:mod:`frcnn.training.data_parallel`): each rank trains on its
   share of the images, the gradients are averaged before each update, rank 0 logs and saves.

The loop (:mod:`frcnn.training.loop`) only steps the solver; 3, 4 and the snapshots are
hooks (:mod:`frcnn.training.hooks`) in ``SolverWrapper.hooks``, where more can be added.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from frcnn.errors import UserError
from frcnn.training import data_parallel
from frcnn.training import snapshot as snap
from frcnn.training.data import filter_roidb, get_roidb, get_training_roidb
from frcnn.training.hooks import TrainingDiverged, default_hooks
from frcnn.training.loop import Hook, TrainLoop
from frcnn.training.run_lock import RunLock
from frcnn.training.schedule import apply_solver_overrides
from frcnn.utils import distributed

__all__ = [
    "Hook",
    "ResumeMismatch",
    "SolverWrapper",
    "TrainingDiverged",
    "filter_roidb",
    "get_roidb",
    "get_training_roidb",
    "set_random_seeds",
    "train_net",
]


class ResumeMismatch(UserError, RuntimeError):
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
    anchors = [cfg.get("ANCHOR_SCALES"), cfg.get("ANCHOR_RATIOS")]
    if any(v is not None for v in anchors):  # (only then, so that earlier runs' fingerprints stay)
        h.update(json.dumps([list(v) if v is not None else None for v in anchors]).encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


class SolverWrapper:
    """Owns the solver, the snapshot statistics and the output folder of one training run.

    ``hooks`` are the steps :meth:`train_model` runs after each iteration (see
    :mod:`frcnn.training.hooks`); append to it, or pass ``hooks``, to add one.
    """

    def __init__(
        self,
        solver_prototxt: str,
        roidb: list[dict],
        output_dir: str,
        cfg: Any,
        pretrained_model: str | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        from frcnn.caffe import SGDSolver

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

        self.solver = SGDSolver(solver_prototxt, cfg)
        # snapshots are ours (un-normalised bbox_pred, resume state); upstream's solvers say 0 too
        self.solver.param.snapshot = 0
        overridden = apply_solver_overrides(self.solver.param, cfg)
        if overridden:
            print("Solver settings from the config (TRAIN.SOLVER_*): "
                  + ", ".join(f"{k} {new} (solver file: {old})" for k, (old, new) in overridden.items()))
        self.net = self.solver.net
        #: (iteration, total loss) of every iteration this process ran, for reports and tests
        self.loss_history: list[tuple[int, float]] = []
        #: this process's place in a data-parallel run (a single process: rank 0 of 1)
        self.world = distributed.current()
        self.fingerprint = run_fingerprint(solver_prototxt, cfg,
                                           extra=str(len(roidb)) + data_parallel.fingerprint_extra(self.world))
        if pretrained_model:
            report = self.net.copy_from(pretrained_model)  # raises when it fills nothing
            print(f"Loaded pretrained model weights from {pretrained_model}: {report.summary()}")
        self.net.layers[0].set_roidb(roidb)
        #: the loop's steps, in order (:func:`frcnn.training.hooks.default_hooks`, then ``hooks``)
        self.hooks: list[Hook] = [*default_hooks(self), *hooks]
        if self.world.distributed:  # (adds its hook first)
            data_parallel.join(self, solver_prototxt, roidb)

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
        (the caffemodel's is un-normalised, and dividing back would not be exact). The
        three appear together or not at all (:func:`snapshot.staged_snapshot`).
        """
        base = self._base(self.solver.iter)  # the prefix may hold a sub-folder
        state: dict[str, Any] = {"iter": self.solver.iter, "fingerprint": np.array(self.fingerprint)}
        if "bbox_pred" in self.net.params:
            state["bbox_pred/w"] = self.net.params["bbox_pred"][0].data
            state["bbox_pred/b"] = self.net.params["bbox_pred"][1].data
        with snap.staged_snapshot(os.path.dirname(base), os.path.basename(base)) as staged:
            self.solver.snapshot(staged(snap.SOLVERSTATE))
            snap.save_train_state(staged(snap.TRAINSTATE), state)
            with snap.bbox_pred_unnormalized(self.net, self.bbox_means, self.bbox_stds):
                self.net.save(staged(snap.CAFFEMODEL))
        filename = base + snap.CAFFEMODEL
        print(f"Wrote snapshot to: {filename}")
        return filename

    def restore(self, caffemodel_path: str) -> None:
        """Continue from a snapshot written by :meth:`snapshot` (same settings required)."""
        base = caffemodel_path[: -len(snap.CAFFEMODEL)]
        state = snap.load_train_state(base + snap.TRAINSTATE)
        got = str(state.get("fingerprint", ""))
        if got != self.fingerprint:
            raise ResumeMismatch(
                f"{base + snap.TRAINSTATE}: written by a run with other settings (solver, net, TRAIN "
                f"config or number of ranks; fingerprint {got} != {self.fingerprint}); use another EXP_DIR, remove the "
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
        chosen = None
        if self.world.is_main:
            candidates = [p for it, p in snap.resumable_snapshots(self.output_dir, self.prefix, self.infix)
                          if it <= max_iters]
            chosen = candidates[-1] if candidates else None
        if self.world.distributed:  # every rank restores the snapshot rank 0 found
            chosen = data_parallel.chosen_snapshot(chosen)
        if chosen is None:
            return None
        self.restore(chosen)
        return chosen

    # -------------------------------------------------------------- the loop

    def train_model(self, max_iters: int, resume: bool = True) -> list[str]:
        """Step the solver up to ``max_iters``; return the paths of this run's snapshots.

        Holds the output folder's lock meanwhile (:class:`run_lock.RunLock`), removes what a
        killed run left half-written, resumes (with ``resume``), then runs the hooks' loop.
        Data parallel: rank 0 alone holds the lock and cleans up; every rank returns rank 0's
        snapshot paths once its last snapshot is written.
        """
        main = self.world.is_main
        lock = RunLock(self.output_dir, snap.run_stem(self.prefix, self.infix)) if main else contextlib.nullcontext()
        with lock:
            stale = snap.remove_stale_files(self.output_dir, self.prefix, self.infix) if main else []
            if stale:
                print(f"Removed what an interrupted run left unfinished in {self.output_dir}: {', '.join(stale)}")
            snapshots = self._resume(max_iters) if resume else []
            if not self.solver.param.max_iter:  # upstream's solvers leave it unset; the solver's log uses it
                self.solver.param.max_iter = max_iters
            snapshots = TrainLoop(self, max_iters, self.hooks, snapshots).run()
        if self.world.distributed:
            snapshots = data_parallel.shared_result(snapshots)
        return snapshots

    def _resume(self, max_iters: int) -> list[str]:
        """Resume if a snapshot allows; return the snapshots up to the resumed iteration."""
        if self.try_resume(max_iters) is None:
            return []
        return [p for i, p in snap.find_snapshots(self.output_dir, self.prefix, self.infix) if i <= self.solver.iter]


def train_net(
    solver_prototxt: str,
    roidb: list[dict],
    output_dir: str,
    cfg: Any,
    pretrained_model: str | None = None,
    max_iters: int = 40000,
    resume: bool = True,
    require_resume: bool = False,
    hooks: Sequence[Hook] = (),
) -> list[str]:
    """Train a net; return the list of snapshot paths (the last is the final model).

    With ``resume`` the run continues from its newest snapshot in ``output_dir`` (if any);
    ``require_resume`` makes the absence of such a snapshot an error. ``hooks`` run after
    the built-in ones (:mod:`frcnn.training.hooks`).
    """
    roidb = filter_roidb(roidb, cfg)
    sw = SolverWrapper(solver_prototxt, roidb, output_dir, cfg, pretrained_model=pretrained_model, hooks=hooks)
    if require_resume and not snap.resumable_snapshots(output_dir, sw.prefix, sw.infix):
        raise FileNotFoundError(
            f"--resume: no complete snapshot of '{snap.snapshot_basename(sw.prefix, sw.infix, 0)[:-1]}*' "
            f"in {output_dir}"
        )
    print("Solving...")
    model_paths = sw.train_model(max_iters, resume=resume or require_resume)
    print("done solving")
    return model_paths
