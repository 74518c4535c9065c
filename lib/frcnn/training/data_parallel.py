"""Data-parallel training: what a :class:`~frcnn.training.train.SolverWrapper` does when it is
one of R ranks (torchrun; the process group is started by the tool, :func:`frcnn.cli.run_ranks`).

The rank contract (docs/DEVELOPING.md):

- every rank builds the same solver and net from the same files, config and roidb (checked
  at start-up: :func:`join` names what differs and on which rank), and starts from rank 0's
  weights (broadcast, as Caffe's multi-GPU solver did);
- the data layer of rank r takes its images from the one order all ranks draw (the layer's
  ``set_world_size``), the solver averages the gradients over the ranks before each update
  (``SGDSolver.world_size``), and the layers key their draws by the global image index
  (``solver.rank``): R ranks x 1 image is the update of 1 rank with ``iter_size`` R;
- BatchNorm's running sums (updated by each forward pass) are merged after each iteration into
  those of the one-rank run (:class:`MergeRunningStats`); the draws not keyed per image
  (Dropout) come from per-rank, per-iteration seeds (:class:`RankStreams`);
- rank 0 alone logs, takes the output folder's lock and writes snapshots; a resume restores
  the same snapshot on every rank (rank 0 picks it), so every rank needs to read the output
  folder (one folder shared by the machines of a multi-machine run).
"""

from __future__ import annotations

from typing import Any

import torch

from frcnn.errors import InputError
from frcnn.training.loop import Hook, TrainLoop
from frcnn.utils import distributed
from frcnn.utils.rank_agreement import check_ranks_agree, file_items, roidb_digest


def join(wrapper: Any, solver_prototxt: str, roidb: list[dict]) -> None:
    """Make ``wrapper`` one rank of the current run: check the ranks agree, then set the
    solver's rank and world size, shard the data layer, and copy rank 0's weights."""
    world = distributed.current()
    solver = wrapper.solver
    files = {"solver file": solver_prototxt}
    if solver.param.net:
        files["train net file"] = solver.param.net
    check_ranks_agree({**file_items(files), "training roidb": roidb_digest(roidb)}, "training run")
    solver.rank, solver.world_size = world.rank, world.size
    data_layer = wrapper.net.layers[0]
    if not hasattr(data_layer, "set_world_size"):
        raise InputError(f"{solver_prototxt}: the train net's first layer ({type(data_layer).__name__}) cannot be "
                         "sharded over ranks (data-parallel training needs the RoIDataLayer)")
    data_layer.set_world_size(world.size)
    distributed.broadcast_([p.data for p in wrapper.net.parameters()])
    wrapper.hooks[:0] = [RankStreams(int(wrapper.cfg.RNG_SEED), world), MergeRunningStats(wrapper.net, world)]


#: the purpose tag of :class:`RankStreams`' seeds (apart from frcnn.roi_data.keys' per-image tags)
RANK_STREAM = 101


class RankStreams(Hook):
    """Before each iteration, the process-wide torch and NumPy generators of rank r are seeded
    from (RNG_SEED, iteration, r): the draws that are not keyed per image (Dropout's masks) then
    differ between the ranks, as Caffe's multi-GPU solver seeded each GPU with seed + rank, and a
    resumed run draws what an uninterrupted one does. (R ranks x 1 image equal 1 rank with
    iter_size R for nets without Dropout, such as SMALL; with Dropout, the masks differ.)"""

    def __init__(self, seed: int, world: distributed.World) -> None:
        self.seed, self.rank = seed, world.rank

    def _reseed(self, iteration: int) -> None:
        import numpy as np

        from frcnn.roi_data.keys import image_seed

        s = image_seed(self.seed, RANK_STREAM, iteration, self.rank)
        torch.manual_seed(s)
        np.random.seed(s % (1 << 32))

    def before_train(self, loop: TrainLoop) -> None:
        self._reseed(loop.iter)

    def after_step(self, loop: TrainLoop) -> None:
        self._reseed(loop.iter)


class MergeRunningStats(Hook):
    """After each iteration, the running sums of every training-mode BatchNorm become what one
    rank with ``iter_size`` R x I would hold (its passes in rank order), on every rank.

    Caffe's BatchNorm updates ``S <- maf * S + x`` once per forward pass. Rank r's I passes
    give ``S_r = maf^I S + y_r``; one rank running all R x I passes in rank order would hold
    ``maf^(R I) S + sum_r maf^((R - 1 - r) I) y_r``: a weighted all-reduce of the ``y_r``. (Caffe's
    multi-GPU solver kept each GPU's own sums and saved the first GPU's; the nets of the paper
    have no BatchNorm, the SMALL nets do.) Runs first among the hooks, before any snapshot."""

    def __init__(self, net: Any, world: distributed.World) -> None:
        self.world = world
        self.layers = [layer for layer in net.layers
                       if getattr(layer, "type_name", "") == "BatchNorm" and not layer.use_global_stats]
        self.before: list[torch.Tensor] = []

    def _blobs(self) -> list[torch.Tensor]:
        return [b.data for layer in self.layers for b in layer.blobs]

    def before_train(self, loop: TrainLoop) -> None:
        self.before = [b.detach().clone() for b in self._blobs()]

    def after_step(self, loop: TrainLoop) -> None:
        if not self.layers:
            return
        passes = int(loop.solver.param.iter_size)
        size, rank = self.world.size, self.world.rank
        blobs = self._blobs()
        if [b.shape for b in self.before] != [b.shape for b in blobs]:  # made at the first forward pass
            self.before = [torch.zeros_like(b) for b in blobs]  # (BatchNorm's blobs start at 0)
        increments = []
        k = 0
        for layer in self.layers:
            maf = float(layer.maf)
            for b in layer.blobs:
                y = b.data.double() - maf**passes * self.before[k].double()
                increments.append(y * maf ** ((size - 1 - rank) * passes))
                k += 1
        distributed.average_(increments)  # the mean; times size below: the sum
        k = 0
        with torch.no_grad():
            for layer in self.layers:
                maf = float(layer.maf)
                for _ in layer.blobs:
                    merged = maf ** (size * passes) * self.before[k].double() + increments[k] * size
                    blobs[k].copy_(merged.to(blobs[k].dtype))
                    k += 1
        self.before = [b.detach().clone() for b in blobs]


def fingerprint_extra(world: distributed.World) -> str:
    """The number of ranks, for the resume fingerprint (a run resumes with as many; nothing for one)."""
    return f" ranks {world.size}" if world.distributed else ""


def chosen_snapshot(path: str | None) -> str | None:
    """Rank 0's choice of the snapshot to resume from, on every rank."""
    return distributed.broadcast_json(path)


def shared_result(value: Any) -> Any:
    """Rank 0's (JSON-able) result on every rank, once rank 0 has it (e.g. the snapshot paths
    after its final snapshot)."""
    return distributed.broadcast_json(value)
