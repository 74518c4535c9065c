import threading

import numpy as np
import pytest
import torch

from frcnn.config import get_default_config
from frcnn.roi_data.layer import RoIDataLayer
from frcnn.roi_data.minibatch import MinibatchConfig


def _layer(ims=2, grouping=True, prefetch=False, seed=3, rpn=False, bbox_reg=False, workers=2, depth=None):
    conf = MinibatchConfig(
        num_classes=3, scales=(24, 30), max_size=60, batch_size=16, has_rpn=rpn, bbox_reg=bbox_reg
    )
    return RoIDataLayer(
        conf,
        ims_per_batch=ims,
        aspect_grouping=grouping,
        seed=seed,
        use_prefetch=prefetch,
        num_workers=workers,
        queue_depth=depth,
    )


@pytest.mark.parametrize("grouping", [False, True])
def test_order_follows_upstream(roidb, grouping):
    layer = _layer(grouping=grouping, rpn=False)
    rec = []
    orig = layer._next_job

    def spy():
        state, entries, plan = orig()
        rec.append([next(i for i, r in enumerate(roidb) if r is e) for e in entries])
        return state, entries, plan

    layer._next_job = spy
    layer.set_roidb(roidb)
    ref = _reference_order_with_rois(roidb, 2, grouping, 3, 7, layer.conf)
    for _ in range(7):
        layer.forward()
    assert rec == ref


def _reference_order_with_rois(roidb, ims, grouping, seed, n, conf):
    rng = np.random.RandomState(seed)

    def shuffle():
        if grouping:
            w = np.array([r["width"] for r in roidb])
            h = np.array([r["height"] for r in roidb])
            inds = np.hstack((rng.permutation(np.where(w >= h)[0]), rng.permutation(np.where(w < h)[0])))
            inds = inds.reshape(-1, 2)
            return inds[rng.permutation(np.arange(inds.shape[0]))].reshape(-1)
        return rng.permutation(np.arange(len(roidb)))

    perm, cur, out = shuffle(), 0, []
    for _ in range(n):
        if cur + ims >= len(roidb):
            perm, cur = shuffle(), 0
        db = perm[cur : cur + ims]
        cur += ims
        # re-keyed (issue 11): the per-image draws (scales, RoIs) come from each image's own
        # generator (frcnn.roi_data.keys), so the order RNG draws nothing but the permutations
        out.append(db.tolist())
    return out


def test_epoch_boundary_drops_the_tail(roidb):
    # 5 images, 2 per batch: batches p0p1, p2p3, then 4 + 2 >= 5 reshuffles: p4 is never used
    layer = _layer(grouping=False, rpn=False)
    layer.set_roidb(roidb[:5])
    first_perm = layer._perm.copy()
    layer.forward()
    layer.forward()
    assert layer._cur == 4
    layer.forward()  # a new permutation; its first pair is used
    assert layer._cur == 2 and not np.array_equal(layer._perm, first_perm)


def test_aspect_grouping_pairs_same_orientation(roidb):
    layer = _layer(grouping=True)
    layer.set_roidb(roidb)  # 4 landscape-or-square (40x30, 50x20, 32x32, 60x45) and 2 portrait
    for _ in range(20):
        layer._shuffle_roidb_inds()
        pairs = layer._perm.reshape(-1, 2)
        orient = [[roidb[i]["width"] >= roidb[i]["height"] for i in p] for p in pairs]
        # 4 landscape + 2 portrait: every pair has one orientation
        assert all(a == b for a, b in orient)
        assert sorted(layer._perm.tolist()) == list(range(6))


def test_odd_count_with_grouping_does_not_crash(roidb):
    layer = _layer(grouping=True)
    layer.set_roidb(roidb[:5])
    assert sorted(layer._perm.tolist()) == list(range(5))
    for _ in range(6):
        layer.forward()


def test_tops_and_from_caffe(roidb):
    cfg = get_default_config()
    cfg.TRAIN.SCALES = (30,)
    cfg.TRAIN.BATCH_SIZE = 16
    layer = RoIDataLayer.from_caffe("'num_classes': 3", "TRAIN", cfg)
    assert layer.top_names == (
        "data",
        "rois",
        "labels",
        "bbox_targets",
        "bbox_inside_weights",
        "bbox_outside_weights",
    )
    for e in roidb:
        e["bbox_targets"] = np.zeros((len(e["boxes"]), 5), np.float32)
    layer.set_roidb(roidb)
    tops = layer.forward()
    assert len(tops) == 6 and all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 for t in tops)
    data, rois, _labels, targets, _w_in, _w_out = tops
    assert data.shape[:2] == (2, 3) and rois.shape[1] == 5 and targets.shape == (len(rois), 12)
    assert set(rois[:, 0].tolist()) <= {0.0, 1.0}

    cfg.TRAIN.HAS_RPN = True
    cfg.TRAIN.IMS_PER_BATCH = 1
    rpn = RoIDataLayer.from_caffe("{'num_classes': 3}", "TRAIN", cfg)
    assert rpn.top_names == ("data", "im_info", "gt_boxes")
    rpn.set_roidb(roidb)
    data, im_info, gt = rpn.forward()
    assert data.shape[0] == 1 and im_info.shape == (1, 3) and gt.shape[1] == 5
    assert im_info[0, 0] == data.shape[2] and im_info[0, 1] == data.shape[3]
    with pytest.raises(ValueError, match="lacks 'num_classes'"):
        RoIDataLayer.from_caffe("", "TRAIN", cfg)


def test_errors_before_and_on_bad_roidb(roidb):
    layer = _layer()
    with pytest.raises(RuntimeError, match="set_roidb"):
        layer.forward()
    with pytest.raises(ValueError, match="empty roidb"):
        layer.set_roidb([])
    with pytest.raises(ValueError, match="prepare_roidb"):
        layer.set_roidb([{"boxes": np.zeros((0, 4))}])


def _tops(layer, n):
    return [[t.numpy().copy() for t in layer.forward()] for _ in range(n)]


def _same(a, b):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y)) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("rpn", [False, True])
def test_prefetching_gives_identical_batches(roidb, rpn):
    ims = 1 if rpn else 2
    plain = _layer(ims=ims, rpn=rpn)
    plain.set_roidb(roidb)
    fetched = _layer(ims=ims, rpn=rpn, prefetch=True, workers=2, depth=3)
    fetched.set_roidb(roidb)
    a, b = _tops(plain, 9), _tops(fetched, 9)
    assert _same(a, b)
    assert len(fetched._pending) == 3  # bounded look-ahead
    fetched.close()
    assert fetched._executor is None and not fetched._pending


@pytest.mark.parametrize("prefetch", [False, True])
def test_state_round_trip_resumes_exactly(roidb, prefetch):
    layer = _layer(prefetch=prefetch)
    layer.set_roidb(roidb)
    _tops(layer, 4)
    state = layer.get_state()
    assert set(state) >= {"perm", "cur", "rng_keys", "rng_pos", "num_images"}
    expected = _tops(layer, 5)

    resumed = _layer(prefetch=prefetch, seed=99)  # another seed: the state must override it
    resumed.set_state(state)  # before set_roidb, as a solver restoring a snapshot might
    resumed.set_roidb(roidb)
    assert _same(_tops(resumed, 5), expected)

    again = _layer(prefetch=not prefetch)
    again.set_roidb(roidb)
    _tops(again, 1)
    again.set_state(state)  # after set_roidb, with batches pending
    assert _same(_tops(again, 5), expected)
    for lay in (layer, resumed, again):
        lay.close()

    with pytest.raises(ValueError, match="saved for 6 images, the roidb has 5"):
        bad = _layer()
        bad.set_roidb(roidb[:5])
        bad.set_state(state)


def test_close_stops_worker_threads(roidb):
    before = {t.ident for t in threading.enumerate()}
    layer = _layer(prefetch=True, workers=2)
    layer.set_roidb(roidb)
    layer.forward()
    assert any(t.name.startswith("roi_data") for t in threading.enumerate())
    layer.close()
    assert {t.ident for t in threading.enumerate() if t.name.startswith("roi_data")} <= before


def test_rpn_layer_takes_several_images_per_batch(roidb):
    """TRAIN.IMS_PER_BATCH > 1 on the RPN path (upstream: one image): a padded blob, one im_info
    row per image (its own scaled size) and gt rows that carry their image's index."""
    layer = _layer(ims=2, rpn=True, grouping=False)
    layer.set_roidb(roidb)
    for _ in range(4):
        data, im_info, gt = (t.numpy() for t in layer.forward())
        assert data.shape[0] == 2 and im_info.shape == (2, 3) and gt.shape[1] == 6
        assert set(gt[:, 5].tolist()) == {0.0, 1.0} and (gt[:, 4] >= 1).all()
        for i in range(2):
            h, w, _s = im_info[i]
            assert h <= data.shape[2] and w <= data.shape[3]
            assert (data[i, :, int(h):, :] == 0).all() and (data[i, :, :, int(w):] == 0).all()  # padding
            mine = gt[gt[:, 5] == i]
            assert (mine[:, 2] <= w).all() and (mine[:, 3] <= h).all()
        assert max(im_info[:, 0]) == data.shape[2] and max(im_info[:, 1]) == data.shape[3]
    assert layer.top_shapes([]) == [(2, 3, None, None), (2, 3), (None, 6)]
    assert _layer(ims=1, rpn=True).top_shapes([])[2] == (None, 5)


def test_draws_are_keyed_by_iteration_and_global_image_index(roidb):
    """N images in one pass draw what one image per pass draws at the same global indices: pass k
    of iter_size K, image j of N is global image k * N + j (frcnn.roi_data.keys)."""
    from frcnn.roi_data.keys import DATA, numpy_generator

    rec = []

    def spied(layer):
        orig = layer._next_job

        def spy():
            state, entries, plan = orig()
            rec.append(plan.scale_inds.tolist())
            return state, entries, plan

        layer._next_job = spy
        layer.set_roidb(roidb)
        return layer

    two = spied(_layer(ims=2, rpn=True, grouping=False))
    two.set_batch_position(5)
    two.forward()
    expected = [int(numpy_generator(3, DATA, 5, j).integers(2)) for j in range(2)]
    assert rec == [expected]
    one = spied(_layer(ims=1, rpn=True, grouping=False))
    one.set_batch_position(5, pass_index=1, iter_size=2)  # pass 1 of 2: global image 1
    one.forward()
    assert rec[-1] == [expected[1]]
    one.set_batch_position(5, pass_index=0, iter_size=1, rank=1)  # rank 1 of 1-image passes: image 1
    one.forward()
    assert rec[-1] == [expected[1]]


def test_set_batch_position_replans_prefetched_batches(roidb):
    plain = _layer(prefetch=False)
    plain.set_roidb(roidb)
    plain.set_batch_position(7)
    want = _tops(plain, 1)
    fetched = _layer(prefetch=True, workers=2, depth=3)
    fetched.set_roidb(roidb)
    fetched._fill()  # plans iterations 0, 1, 2 ahead
    fetched.set_batch_position(7)  # the solver says otherwise: the planned batches are dropped
    assert _same(_tops(fetched, 1), want)
    assert fetched.batch_position.iteration == 11  # planned ahead again: iterations 8, 9, 10
    fetched.close()
