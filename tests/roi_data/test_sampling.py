"""frcnn.roi_data.sampling against upstream's rules written out with plain loops, on both kinds
of input, and the exact use of each caller's random stream."""

import numpy as np
import pytest
import torch

from frcnn.roi_data.sampling import (
    fg_bg_candidates,
    fg_rois_per_image,
    numpy_choice,
    sample_fg_bg,
    torch_choice,
    where_true,
)


def ref_split(max_overlaps, fg_thresh, bg_hi, bg_lo):
    """Upstream's candidate sets, one comparison per row: fg >= FG_THRESH, bg in [LO, HI)."""
    fg = [i for i, o in enumerate(max_overlaps) if o >= fg_thresh]
    bg = [i for i, o in enumerate(max_overlaps) if bg_lo <= o < bg_hi]
    return fg, bg


def ref_sample_numpy(max_overlaps, fg_quota, rois, fg_thresh, bg_hi, bg_lo, rng):
    """Upstream's _sample_rois (lib/roi_data_layer/minibatch.py), its draws included."""
    fg, bg = ref_split(max_overlaps, fg_thresh, bg_hi, bg_lo)
    fg, bg = np.array(fg, np.int64), np.array(bg, np.int64)
    n_fg = int(min(fg_quota, fg.size))
    if fg.size > 0:
        fg = rng.choice(fg, size=n_fg, replace=False)
    n_bg = int(min(rois - n_fg, bg.size))
    if bg.size > 0:
        bg = rng.choice(bg, size=n_bg, replace=False)
    return list(fg) + list(bg), n_fg


def ref_sample_torch(max_overlaps, fg_quota, rois, fg_thresh, bg_hi, bg_lo):
    """The proposal target layer's draws: a randperm over each candidate set, always called."""
    fg, bg = ref_split(max_overlaps, fg_thresh, bg_hi, bg_lo)
    n_fg = min(fg_quota, len(fg))
    fg_perm = torch.randperm(len(fg))[:n_fg].tolist()
    n_bg = min(rois - n_fg, len(bg))
    bg_perm = torch.randperm(len(bg))[:n_bg].tolist()
    return [fg[j] for j in fg_perm] + [bg[j] for j in bg_perm], n_fg


# boundary values: exactly FG_THRESH is fg, exactly BG_THRESH_HI is not bg, exactly BG_THRESH_LO is bg
BOUNDARY = np.array([0.5, 0.5 - 1e-9, 0.1, 0.1 - 1e-9, 0.0, 1.0, 0.7, 0.3, 0.5, 0.1, 0.25, 0.0999])


def check_rules(keep, n_fg, ov, fg_quota, rois, fg_thresh=0.5, hi=0.5, lo=0.1):
    fg, bg = ref_split(ov, fg_thresh, hi, lo)
    keep = [int(k) for k in keep]
    assert n_fg == min(fg_quota, len(fg))
    assert len(keep) == n_fg + min(rois - n_fg, len(bg))
    assert len(set(keep)) == len(keep)  # without replacement
    assert set(keep[:n_fg]) <= set(fg) and set(keep[n_fg:]) <= set(bg)


def test_boundary_values_are_split_as_upstream():
    fg, bg = ref_split(BOUNDARY, 0.5, 0.5, 0.1)
    assert fg == [0, 5, 6, 8] and bg == [1, 2, 7, 9, 10]
    for ov in (BOUNDARY, torch.from_numpy(BOUNDARY)):
        got_fg, got_bg = fg_bg_candidates(ov, 0.5, 0.5, 0.1)
        assert got_fg.tolist() == fg and got_bg.tolist() == bg
    keep, n_fg = sample_fg_bg(BOUNDARY, 100, 100, 0.5, 0.5, 0.1, numpy_choice(np.random.RandomState(0)))
    assert n_fg == 4 and sorted(keep[:4].tolist()) == fg and sorted(keep[4:].tolist()) == bg
    t = torch.from_numpy(BOUNDARY)
    keep_t, n_fg_t = sample_fg_bg(t, 100, 100, 0.5, 0.5, 0.1, torch_choice)
    assert n_fg_t == 4 and sorted(keep_t[:4].tolist()) == fg and sorted(keep_t[4:].tolist()) == bg


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fg_quota,rois", [(4, 16), (32, 128), (0, 8), (16, 16), (3, 5)])
def test_numpy_draws_equal_upstreams(seed, fg_quota, rois):
    ov = np.random.RandomState(100 + seed).choice(np.r_[BOUNDARY, np.linspace(0, 1, 37)], 60)
    rng_a, rng_b = np.random.RandomState(seed), np.random.RandomState(seed)
    keep, n_fg = sample_fg_bg(ov, fg_quota, rois, 0.5, 0.5, 0.1, numpy_choice(rng_a))
    ref_keep, ref_n_fg = ref_sample_numpy(ov, fg_quota, rois, 0.5, 0.5, 0.1, rng_b)
    assert keep.dtype == np.int64 and keep.tolist() == ref_keep and n_fg == ref_n_fg
    check_rules(keep, n_fg, ov, fg_quota, rois)
    assert rng_a.randint(1 << 30) == rng_b.randint(1 << 30)  # the same amount of the stream was used


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fg_quota,rois", [(4, 16), (32, 128), (0, 8), (16, 16), (3, 5)])
def test_torch_draws_equal_the_proposal_target_layers(seed, fg_quota, rois):
    ov = np.random.RandomState(200 + seed).choice(np.r_[BOUNDARY, np.linspace(0, 1, 37)], 60)
    torch.manual_seed(seed)
    keep, n_fg = sample_fg_bg(torch.from_numpy(ov), fg_quota, rois, 0.5, 0.5, 0.1, torch_choice)
    after = torch.rand(3)
    torch.manual_seed(seed)
    ref_keep, ref_n_fg = ref_sample_torch(ov, fg_quota, rois, 0.5, 0.5, 0.1)
    assert keep.dtype == torch.int64 and keep.tolist() == ref_keep and n_fg == ref_n_fg
    check_rules(keep, n_fg, ov, fg_quota, rois)
    torch.testing.assert_close(torch.rand(3), after, rtol=0, atol=0)


def test_fewer_fg_than_wanted_fill_with_bg():
    ov = np.array([0.9, 0.2, 0.3, 0.4, 0.15, 0.6, 0.05])
    for ov_k, choose in ((ov, numpy_choice(np.random.RandomState(1))), (torch.from_numpy(ov), torch_choice)):
        keep, n_fg = sample_fg_bg(ov_k, 4, 6, 0.5, 0.5, 0.1, choose)
        assert n_fg == 2 and sorted(keep[:2].tolist()) == [0, 5]
        assert sorted(keep[2:].tolist()) == [1, 2, 3, 4]  # all 4 bg: 6 - 2 wanted, 4 there


def test_no_bg_and_no_gt():
    all_fg = np.array([0.6, 0.8, 1.0])
    for ov, choose in ((all_fg, numpy_choice(np.random.RandomState(2))), (torch.from_numpy(all_fg), torch_choice)):
        keep, n_fg = sample_fg_bg(ov, 2, 8, 0.5, 0.5, 0.1, choose)
        assert n_fg == 2 and len(keep) == 2 and set(keep.tolist()) <= {0, 1, 2}
    no_gt = np.zeros(5)  # no gt box: every overlap is 0
    for ov, choose in ((no_gt, numpy_choice(np.random.RandomState(3))), (torch.from_numpy(no_gt), torch_choice)):
        keep, n_fg = sample_fg_bg(ov, 2, 4, 0.5, 0.5, 0.1, choose)  # BG_THRESH_LO 0.1: nothing qualifies
        assert n_fg == 0 and len(keep) == 0 and keep.dtype in (np.int64, torch.int64)
        keep, n_fg = sample_fg_bg(ov, 2, 4, 0.5, 0.5, 0.0, choose)  # end2end's BG_THRESH_LO 0
        assert n_fg == 0 and len(keep) == 4 and len(set(keep.tolist())) == 4
    empty = np.zeros(0)
    keep, n_fg = sample_fg_bg(empty, 2, 4, 0.5, 0.5, 0.0, numpy_choice(np.random.RandomState(4)))
    assert (n_fg, keep.shape, keep.dtype) == (0, (0,), np.int64)


def test_empty_candidates_take_nothing_from_the_numpy_stream():
    rng, untouched = np.random.RandomState(5), np.random.RandomState(5)
    sample_fg_bg(np.zeros(4), 2, 4, 0.5, 0.5, 0.1, numpy_choice(rng))  # neither fg nor bg
    assert rng.randint(1 << 30) == untouched.randint(1 << 30)


def test_fg_quota_rounds_halves_to_even_and_is_an_int():
    assert fg_rois_per_image(0.25, 128) == 32 and isinstance(fg_rois_per_image(0.25, 128), int)
    assert fg_rois_per_image(0.25, 64) == 16 and fg_rois_per_image(0.25, 10) == 2  # 2.5 -> 2
    assert fg_rois_per_image(0.5, 7) == 4 and fg_rois_per_image(0.25, 6) == 2  # 3.5 -> 4, 1.5 -> 2
    for frac in np.linspace(0, 1, 41):
        for n in (1, 2, 3, 5, 16, 128, 256):
            assert fg_rois_per_image(float(frac), n) == int(np.round(frac * n)) == round(float(frac) * n)


def test_where_true_on_both_kinds():
    mask = np.array([False, True, True, False, True])
    assert where_true(mask).tolist() == [1, 2, 4]
    t = where_true(torch.from_numpy(mask))
    assert t.dtype == torch.int64 and t.tolist() == [1, 2, 4]


@pytest.mark.cuda
def test_cuda_uses_the_cuda_stream_and_stays_on_device():
    ov = torch.from_numpy(np.random.RandomState(6).uniform(0, 1, 300)).cuda()
    torch.cuda.manual_seed(0)
    keep, n_fg = sample_fg_bg(ov, 32, 128, 0.5, 0.5, 0.1, torch_choice)
    assert keep.device.type == "cuda" and len(keep) == 128 and n_fg == 32
    check_rules(keep.cpu(), n_fg, ov.cpu().numpy(), 32, 128)
    torch.cuda.manual_seed(0)
    assert sample_fg_bg(ov, 32, 128, 0.5, 0.5, 0.1, torch_choice)[0].tolist() == keep.tolist()
