"""frcnn.utils.distributed without torchrun: the world read from the environment, the shards,
the buckets, and the collectives of a single process (which change nothing)."""

import numpy as np
import pytest
import torch

from frcnn.errors import InputError
from frcnn.utils import distributed
from frcnn.utils.distributed import World, world_from_environment


def test_world_from_environment(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert world_from_environment() == World(0, 1, 0) and not World().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    w = world_from_environment()
    assert (w.rank, w.size, w.local_rank, w.distributed, w.is_main) == (3, 4, 1, True, False)
    assert str(w) == "rank 3 of 4"
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(InputError, match="RANK < WORLD_SIZE"):
        world_from_environment()
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(InputError, match="environment variable WORLD_SIZE: expected an integer"):
        world_from_environment()


def test_a_group_of_one_needs_the_flag_and_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "FRCNN_DIST_GROUP_OF_ONE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("FRCNN_DIST_GROUP_OF_ONE", "1")
    assert not world_from_environment().distributed  # no rendezvous (not under torchrun): a plain process
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    w = world_from_environment()
    assert w.group_of_one and w.distributed and (w.rank, w.size) == (0, 1)
    monkeypatch.setenv("FRCNN_DIST_GROUP_OF_ONE", "0")
    assert not world_from_environment().distributed
    monkeypatch.setenv("FRCNN_DIST_GROUP_OF_ONE", "yes")
    with pytest.raises(InputError, match="FRCNN_DIST_GROUP_OF_ONE: expected 1 .* got 'yes'"):
        world_from_environment()


@pytest.mark.parametrize("n, size", [(0, 2), (1, 3), (10, 3), (7, 7), (5, 8)])
def test_shards_cover_every_item_once(n, size):
    parts = [list(distributed.shard(n, World(r, size))) for r in range(size)]
    assert sorted(i for p in parts for i in p) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_buckets_split_by_dtype_and_size(monkeypatch):
    monkeypatch.setattr(distributed, "BUCKET_ELEMENTS", 10)
    ts = [torch.zeros(4), torch.zeros(5), torch.zeros(3), torch.zeros(2, dtype=torch.float64), torch.zeros(20)]
    sizes = [[t.numel() for t in b] for b in distributed._buckets(ts)]
    assert sizes == [[4, 5], [3], [2], [20]]  # dtype change; a tensor larger than a bucket goes alone


def test_single_process_collectives_change_nothing():
    assert distributed.current() == World()
    t = torch.arange(5.0)
    distributed.average_([t])
    distributed.broadcast_([t])
    distributed.barrier()
    assert torch.equal(t, torch.arange(5.0))
    assert distributed.all_gather_bytes(b"abc") == [b"abc"]
    assert distributed.broadcast_json({"a": [1, 2]}) == {"a": [1, 2]}
    parts = distributed.gather_arrays({"0/1": np.ones((2, 5), np.float32), "s": np.array(["x"])})
    assert len(parts) == 1 and parts[0]["0/1"].shape == (2, 5) and parts[0]["s"].tolist() == ["x"]
    assert distributed.finish() is None
