"""The data-parallel hooks in one process: BatchNorm's running sums merged as one rank running
every pass in rank order would have them, and per-rank, per-iteration seeds for Dropout."""

import types

import numpy as np
import pytest
import torch

from frcnn.training import data_parallel
from frcnn.training.data_parallel import MergeRunningStats, RankStreams
from frcnn.utils.distributed import World


def _bn(maf, values):
    blobs = [types.SimpleNamespace(data=torch.tensor(v, dtype=torch.float32)) for v in values]
    return types.SimpleNamespace(type_name="BatchNorm", use_global_stats=False, maf=maf, blobs=blobs)


def _loop(iter_size):
    return types.SimpleNamespace(solver=types.SimpleNamespace(param=types.SimpleNamespace(iter_size=iter_size)), iter=1)


@pytest.mark.parametrize("ranks, passes", [(2, 1), (3, 2)])
def test_batchnorm_sums_merge_into_those_of_one_rank_running_every_pass(monkeypatch, ranks, passes):
    maf = 0.9
    rng = np.random.RandomState(0)
    start = [rng.rand(4), rng.rand(4), np.array([3.0])]  # mean sum, variance sum, scale factor
    xs = [[[rng.rand(4), rng.rand(4), np.array([1.0])] for _ in range(passes)] for _ in range(ranks)]

    def run(sums, passes_of_ranks):  # Caffe's BatchNorm update, pass after pass
        for x in passes_of_ranks:
            sums = [maf * s + xi for s, xi in zip(sums, x)]
        return sums

    want = run(start, [x for r in range(ranks) for x in xs[r]])  # one rank, every pass in rank order

    def rank(r):  # rank r after its own passes, its hook primed at the iteration's start
        layer = _bn(maf, start)
        hook = MergeRunningStats(types.SimpleNamespace(layers=[layer]), World(r, ranks))
        hook.before_train(_loop(passes))
        for b, v in zip(layer.blobs, run(start, xs[r])):
            b.data.copy_(torch.tensor(v, dtype=torch.float32))
        return hook, layer

    sent = []  # what each rank gives the all-reduce
    monkeypatch.setattr(data_parallel.distributed, "average_", lambda ts: sent.append([t.clone() for t in ts]))
    for r in range(ranks):
        rank(r)[0].after_step(_loop(passes))
    mean = [sum(s[k] for s in sent) / ranks for k in range(len(sent[0]))]
    monkeypatch.setattr(data_parallel.distributed, "average_",
                        lambda ts: [t.copy_(m) for t, m in zip(ts, mean)])
    for r in range(ranks):
        hook, layer = rank(r)
        hook.after_step(_loop(passes))
        for b, w in zip(layer.blobs, want):
            np.testing.assert_allclose(b.data.numpy(), w, rtol=1e-6)
        assert all(torch.equal(a, b.data) for a, b in zip(hook.before, layer.blobs))  # the next iteration's start


def test_rank_streams_differ_between_ranks_and_repeat_for_a_rank():
    def draws(rank, iteration):
        hook = RankStreams(3, World(rank, 2))
        hook._reseed(iteration)
        return torch.rand(3).tolist(), float(np.random.rand())

    assert draws(0, 5) == draws(0, 5)  # a resumed run draws what an uninterrupted one does
    assert draws(0, 5) != draws(1, 5) and draws(0, 5) != draws(0, 6)
    hook = RankStreams(3, World(1, 2))
    hook.after_step(types.SimpleNamespace(iter=6))
    assert (torch.rand(3).tolist(), float(np.random.rand())) == draws(1, 6)
