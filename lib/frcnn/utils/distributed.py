"""Several processes as one run (torchrun ranks): who this process is, the process group, and
the few collectives the tools use.

torchrun (``python -m torch.distributed.run``) starts one process per rank and tells each, in
its environment, ``RANK`` (0 .. ``WORLD_SIZE`` - 1 over all machines), ``WORLD_SIZE``,
``LOCAL_RANK`` (its number on this machine: its GPU) and where the rendezvous store is
(``MASTER_ADDR``, ``MASTER_PORT``). Without those variables, or with ``WORLD_SIZE`` 1, a
process is a run of its own and every function here is the single-process one (no
communication): the tools behave exactly as before. ``FRCNN_DIST_GROUP_OF_ONE=1`` makes a
one-rank torchrun join a process group all the same, so that every distributed code path
(sharding, collectives, the rank watch, rank 0's gathers) runs with one rank: how the NCCL
path is checked on a machine with one GPU (two ranks cannot share a GPU under NCCL).

:func:`start` joins the process group (NCCL on GPUs, gloo on the CPU) with a timeout on
every collective (the config's ``DIST_TIMEOUT``) and starts the rank watch
(:mod:`frcnn.utils.rank_watch`), which names a rank that died or hung; :func:`finish` leaves
it. The collectives run on the group's device (the rank's GPU for NCCL) and count themselves
(the watch publishes the count, so that a rank left behind can be named).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from frcnn.errors import InputError, UserError

# torch is imported where it is used: frcnn.cli (every tool) imports this module, and the
# bookkeeping tools (tools/paper_table.py, tools/paper_report.py) need no torch
if TYPE_CHECKING:
    import torch

#: the variables torchrun sets for each rank (all or none of the first three)
ENV_RANK, ENV_WORLD_SIZE, ENV_LOCAL_RANK = "RANK", "WORLD_SIZE", "LOCAL_RANK"
ENV_GROUP_OF_ONE = "FRCNN_DIST_GROUP_OF_ONE"

#: gradients are averaged in buckets of at most this many elements (one all-reduce each)
BUCKET_ELEMENTS = 1 << 23


class RankFailure(UserError, RuntimeError):
    """Another rank of the run failed, died or hung; the message names it."""


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in a run: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    #: a one-rank run that joins a process group anyway (``FRCNN_DIST_GROUP_OF_ONE``)
    group_of_one: bool = False

    @property
    def distributed(self) -> bool:
        return self.size > 1 or self.group_of_one

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, writes snapshots, detection and proposal files."""
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size}"


def _env_int(name: str, default: int | None = None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"environment variable {name}: expected an integer (torchrun sets it), got {raw!r}") from None


def world_from_environment() -> World:
    """The world torchrun describes in the environment; a single process without it."""
    size = _env_int(ENV_WORLD_SIZE, 1)
    rank = _env_int(ENV_RANK, 0)
    local = _env_int(ENV_LOCAL_RANK, rank)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise InputError(f"environment: need WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE, LOCAL_RANK >= 0; got "
                         f"WORLD_SIZE={size}, RANK={rank}, LOCAL_RANK={local}")
    flag = os.environ.get(ENV_GROUP_OF_ONE, "").strip()
    if flag not in ("", "0", "1"):
        raise InputError(f"environment variable {ENV_GROUP_OF_ONE}: expected 1 (a one-rank torchrun joins a process "
                         f"group) or 0, got {flag!r}")
    one = size == 1 and flag == "1" and bool(os.environ.get("MASTER_ADDR"))
    return World(rank, size, local, one)


@dataclasses.dataclass
class _Group:
    world: World
    device: torch.device
    watch: Any
    collectives: int = 0


_GROUP: _Group | None = None


def current() -> World:
    """This process's world: the started group's, else a single process."""
    return _GROUP.world if _GROUP is not None else World()


def collectives_done() -> int:
    """How many collectives this process has entered (0 without a group)."""
    return _GROUP.collectives if _GROUP is not None else 0


def start(timeout_s: float, use_cuda: bool) -> World:
    """Join the run the environment describes (a no-op for a single process); returns the world.

    ``use_cuda``: NCCL, each rank on GPU ``LOCAL_RANK`` (made the current device); else gloo on
    the CPU. ``timeout_s`` bounds the rendezvous and every collective.
    """
    global _GROUP
    import torch
    import torch.distributed as dist

    from frcnn.utils.rank_watch import RankWatch

    world = world_from_environment()
    if not world.distributed or _GROUP is not None:
        return current() if _GROUP is not None else world
    if use_cuda:
        if world.local_rank >= torch.cuda.device_count():
            raise UserError(f"{world}: LOCAL_RANK {world.local_rank} needs GPU {world.local_rank}, this machine shows "
                            f"{torch.cuda.device_count()} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                            "start at most one rank per GPU (--nproc_per_node)")
        torch.cuda.set_device(world.local_rank)
        device, backend = torch.device("cuda", world.local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    timeout = datetime.timedelta(seconds=float(timeout_s))
    # the rendezvous gives the store the watch uses as well as the group
    store, rank, size = next(dist.rendezvous("env://", timeout=timeout))
    # (NCCL: bound to the rank's GPU at once, so that barriers and collectives know their device)
    dist.init_process_group(backend, store=store, rank=rank, world_size=size, timeout=timeout,
                            **({"device_id": device} if use_cuda else {}))
    watch = RankWatch(store, rank, size, float(timeout_s), progress=collectives_done)
    _GROUP = _Group(dataclasses.replace(world, rank=rank, size=size), device, watch)
    watch.start()
    return _GROUP.world


def finish(error: BaseException | None = None) -> RankFailure | None:
    """Leave the group (a no-op without one). After an ``error`` the other ranks are told
    (their watch names this rank); returns a :class:`RankFailure` when the error (a
    RuntimeError, as a failed collective raises) came from another rank's failure, death or
    hang (the tool raises it instead, naming that rank)."""
    global _GROUP
    import torch.distributed as dist

    group, _GROUP = _GROUP, None
    if group is None:
        return None
    failure = None
    if error is None:
        group.watch.finished()
    else:
        # what a collective raises when a peer is gone (gloo, NCCL, a timeout) is a RuntimeError;
        # a user error or another exception is this rank's own
        from frcnn.errors import is_user_error

        failure = group.watch.diagnose() if isinstance(error, RuntimeError) and not is_user_error(error) else None
        if failure is None:
            group.watch.failed(_one_line(error))
        else:
            group.watch.finished(wait=False)  # (not this rank's fault: it does not claim the failure)
    group.watch.stop()
    if error is not None and failure is None and group.watch.hosts_store and group.device.type == "cpu":
        # gloo: closing this rank's connections wakes the others, who then read why from the store
        with contextlib.suppress(RuntimeError):
            dist.destroy_process_group()
        group.watch.linger(10 * group.watch.interval_s)
    if error is None:
        with contextlib.suppress(RuntimeError):  # a peer already gone: nothing left to tear down cleanly
            dist.destroy_process_group()
    return RankFailure(f"{group.world}: {failure}") if failure is not None else None


def _one_line(error: BaseException) -> str:
    from frcnn.errors import user_message

    return f"{type(error).__name__}: {user_message(error)}"


# ------------------------------------------------------------------ collectives
def _count() -> _Group:
    if _GROUP is None:
        raise RuntimeError("frcnn.utils.distributed: no process group (start() was not called)")
    _GROUP.collectives += 1
    return _GROUP


def barrier() -> None:
    """Wait for every rank (a no-op for a single process)."""
    if _GROUP is None:
        return
    import torch.distributed as dist

    _count()
    dist.barrier()


def _buckets(tensors: Sequence[torch.Tensor]) -> Iterable[list[torch.Tensor]]:
    """Consecutive tensors of one dtype and device, at most BUCKET_ELEMENTS each (or one tensor)."""
    bucket: list[torch.Tensor] = []
    n = 0
    for t in tensors:
        if bucket and (t.dtype != bucket[0].dtype or t.device != bucket[0].device or n + t.numel() > BUCKET_ELEMENTS):
            yield bucket
            bucket, n = [], 0
        bucket.append(t)
        n += t.numel()
    if bucket:
        yield bucket


def average_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor by its mean over the ranks, in place: all-reduce sum, then times
    1 / size (Caffe's multi-GPU gradient step). The same tensors, in the same order, on every rank."""
    if _GROUP is None or not tensors:
        return
    import torch
    import torch.distributed as dist

    scale = 1.0 / _GROUP.world.size
    for bucket in _buckets(tensors):
        _count()
        if len(bucket) == 1 and bucket[0].is_contiguous():
            dist.all_reduce(bucket[0])
            bucket[0].mul_(scale)
            continue
        flat = torch.cat([t.reshape(-1) for t in bucket])
        dist.all_reduce(flat)
        flat.mul_(scale)
        offset = 0
        for t in bucket:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def broadcast_(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Give every rank rank ``src``'s values of ``tensors`` (in place)."""
    if _GROUP is None:
        return
    import torch.distributed as dist

    for t in tensors:
        _count()
        if t.is_contiguous():
            dist.broadcast(t, src)
        else:
            tmp = t.contiguous()
            dist.broadcast(tmp, src)
            t.copy_(tmp)


def all_gather_bytes(data: bytes) -> list[bytes]:
    """Every rank's ``data``, in rank order (``[data]`` for a single process)."""
    if _GROUP is None:
        return [bytes(data)]
    import torch
    import torch.distributed as dist

    group = _count()
    size = group.world.size
    mine = torch.tensor([len(data)], dtype=torch.int64, device=group.device)
    lengths = [torch.zeros_like(mine) for _ in range(size)]
    dist.all_gather(lengths, mine)
    longest = max(int(n) for n in lengths)
    buf = torch.zeros(max(longest, 1), dtype=torch.uint8)
    if data:
        buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    buf = buf.to(group.device)
    bufs = [torch.empty_like(buf) for _ in range(size)]
    _count()
    dist.all_gather(bufs, buf)
    return [b[: int(n)].cpu().numpy().tobytes() for b, n in zip(bufs, lengths)]


def all_gather_json(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (JSON-able), in rank order."""
    return [json.loads(b.decode()) for b in all_gather_bytes(json.dumps(obj, sort_keys=True).encode())]


def broadcast_json(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (JSON-able) on every rank; ``obj`` itself for a single process."""
    if _GROUP is None:
        return obj
    return all_gather_json(obj if current().rank == src else None)[src]


def gather_arrays(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]] | None:
    """Rank 0 gets every rank's named arrays (a list in rank order); the others get None.
    Sent as ``.npz`` bytes (read back with ``allow_pickle=False``: numbers and strings only)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    parts = all_gather_bytes(buf.getvalue())
    if not current().is_main:
        return None
    out = []
    for part in parts:
        with np.load(io.BytesIO(part), allow_pickle=False) as z:
            out.append({k: z[k] for k in z.files})
    return out


def shard(n: int, world: World | None = None) -> range:
    """This rank's share of ``n`` items: ``rank, rank + size, ...`` (every item once over the ranks)."""
    world = world or current()
    return range(world.rank, int(n), world.size)
