"""The data layer sharded over ranks (``set_world_size``): rank r of R takes the minibatches one
rank with iter_size R x I takes at passes r*I .. r*I + I - 1, over permutation boundaries, with
prefetching, and between iterations every rank's state is the same."""

import numpy as np
import pytest

from tests.roi_data.test_layer import _layer


def _images(layer, iteration, pass_index, iter_size, rank):
    """The image paths and scale choices of one pass at a position."""
    layer.set_batch_position(iteration, pass_index, iter_size, rank)
    _state, entries, plan = layer._next_job()
    return [e["image"] for e in entries], plan.scale_inds.tolist()


@pytest.mark.parametrize("ranks, iter_size, ims, grouping", [
    (2, 1, 1, True), (3, 1, 1, False), (2, 2, 1, True), (2, 1, 2, True), (3, 2, 2, False),
])
def test_rank_shards_are_the_passes_of_one_rank_with_iter_size_r(roidb, ranks, iter_size, ims, grouping):
    iters = 9  # several permutations of the six entries (a new one is drawn near each end)
    single = _layer(ims=ims, grouping=grouping)
    single.set_roidb(roidb)
    want = [[_images(single, t, k, ranks * iter_size, 0) for k in range(ranks * iter_size)] for t in range(iters)]
    for r in range(ranks):
        layer = _layer(ims=ims, grouping=grouping)
        layer.set_roidb(roidb)
        layer.set_world_size(ranks)
        for t in range(iters):
            for k in range(iter_size):
                assert _images(layer, t, k, iter_size, r) == want[t][r * iter_size + k], (r, t, k)


def _order_state(layer):
    s = layer.get_state()
    return s["perm"].tolist(), s["cur"], s["rng_keys"].tolist(), s["rng_pos"]


def test_between_iterations_every_rank_holds_the_same_state(roidb):
    layers = []
    for r in range(3):
        layer = _layer(ims=1, prefetch=True, workers=1, depth=2)
        layer.set_roidb(roidb)
        layer.set_world_size(3)
        layers.append(layer)
    single = _layer(ims=1)
    single.set_roidb(roidb)
    for t in range(5):
        for r, layer in enumerate(layers):
            layer.set_batch_position(t, 0, 1, r)
            layer.forward()
        for k in range(3):
            single.set_batch_position(t, k, 3, 0)
            single.forward()
        states = [_order_state(layer) for layer in layers]
        assert states[1] == states[0] and states[2] == states[0] == _order_state(single), t
    for layer in layers:
        layer.close()


def test_a_state_saved_by_rank_0_resumes_every_rank(roidb):
    ref = _layer(ims=1)
    ref.set_roidb(roidb)
    ref.set_world_size(2)
    for t in range(3):
        _images(ref, t, 0, 1, 0)
    saved = ref.get_state()  # what rank 0's snapshot holds after 3 iterations
    # rank 1 of the resumed run continues where rank 1 of the uninterrupted one would
    other = _layer(ims=1)
    other.set_roidb(roidb)
    other.set_world_size(2)
    for t in range(3):
        _images(other, t, 0, 1, 1)
    want = _images(other, 3, 0, 1, 1)
    resumed = _layer(ims=1)
    resumed.set_state(saved)
    resumed.set_roidb(roidb)
    resumed.set_world_size(2)
    assert _images(resumed, 3, 0, 1, 1) == want


def test_world_size_checks(roidb):
    layer = _layer(ims=1)
    layer.set_roidb(roidb)
    with pytest.raises(ValueError, match="set_world_size: need >= 1"):
        layer.set_world_size(0)
    layer.set_world_size(2)
    with pytest.raises(ValueError, match="rank 2 of a world of 2"):
        _images(layer, 0, 0, 1, 2)
    assert np.all(layer.get_state()["perm"] >= 0)
