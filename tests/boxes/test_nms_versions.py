"""Every NMS version against the plain-Python reference (nms_reference.reference_nms): the
NumPy py_cpu_nms (tests only), the C++/CUDA op through frcnn.ops.nms, and nms_dets on NumPy
and torch detections.

All must return the same indices, including at IoU exactly equal to the threshold, on ties,
degenerate boxes and 20,000 boxes, for float32 and float64 input.
"""

import numpy as np
import pytest
import torch

from frcnn.boxes.nms import nms_dets as wrapper_nms
from frcnn.ops import nms as ops_nms
from frcnn.ops._native import native
from tests.boxes.nms_reference import (
    degenerate_dets,
    integer_dets,
    proposal_dets,
    py_cpu_nms,
    random_dets,
    reference_nms,
    threshold_dets,
)


def all_versions(dets: np.ndarray, thresh: float) -> dict:
    t = torch.from_numpy(dets)
    return {
        "py_cpu_nms": list(py_cpu_nms(dets, thresh)),
        "ops.nms": ops_nms(t[:, :4], t[:, 4], thresh).tolist(),
        "wrapper(numpy)": wrapper_nms(dets, thresh).tolist(),
        "wrapper(torch)": wrapper_nms(t, thresh).tolist(),
    }


def assert_all_match(dets: np.ndarray, thresh: float, expected: list) -> None:
    for name, got in all_versions(dets, thresh).items():
        assert got == expected, f"{name} differs from the reference at thresh {thresh}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thresh", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_random_boxes_match_reference(dtype, seed, thresh):
    rng = np.random.default_rng(seed)
    dets = random_dets(rng, 150, dtype, clusters=10)
    expected = reference_nms(dets, thresh)
    assert 0 < len(expected) <= len(dets)
    assert_all_match(dets, thresh, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_integer_boxes_with_exact_ious_and_ties(dtype, seed):
    rng = np.random.default_rng(100 + seed)
    dets = integer_dets(rng, 120, dtype)
    # thresholds that many integer-box IoUs hit exactly
    for thresh in (0.0, 0.25, 1 / 3, 0.5, 0.6, 2 / 3, 0.75):
        assert_all_match(dets, thresh, reference_nms(dets, thresh))


def test_exact_threshold_is_not_suppressed():
    dets, thresh = threshold_dets()
    expected = [0, 1, 2, 4, 5]  # box 1 has IoU exactly 0.5 with box 0: kept; box 3 (0.6) goes
    assert reference_nms(dets, thresh) == expected
    assert_all_match(dets, thresh, expected)
    # just below the exact IoU, the 0.5 box is suppressed too
    assert_all_match(dets, np.nextafter(0.5, 0.0), [0, 2, 4, 5])


def test_exact_threshold_one_third():
    dets = np.array([[0, 0, 9, 9, 1.0], [5, 0, 14, 9, 0.5]])  # IoU = 50 / 150
    assert_all_match(dets, 1 / 3, [0, 1])
    assert_all_match(dets, np.nextafter(1 / 3, 0.0), [0])


def test_equal_scores_keep_lower_index_first():
    dets = np.array([[0, 0, 9, 9, 0.5], [0, 0, 9, 9, 0.5], [30, 30, 40, 40, 0.5], [0, 0, 9, 9, 0.9]])
    assert_all_match(dets, 0.5, [3, 2])
    dets[3, 4] = 0.5
    assert_all_match(dets, 0.5, [0, 2])
    # -0.0 and 0.0 are one score
    zeros = np.array([[0, 0, 9, 9, -0.0], [50, 0, 59, 9, 0.0], [100, 0, 109, 9, -0.0]])
    assert_all_match(zeros, 0.5, [0, 1, 2])


@pytest.mark.parametrize("thresh", [-0.5, 0.0, 0.3, 0.9, 1.5])
def test_degenerate_boxes_do_not_crash_and_agree(thresh):
    dets = degenerate_dets()
    assert_all_match(dets, thresh, reference_nms(dets, thresh))
    assert_all_match(dets.astype(np.float32), thresh, reference_nms(dets.astype(np.float32), thresh))


def test_upstream_rule_differs_from_cython_ge():
    # upstream's Cython suppressed at IoU >= thresh; ours (like its GPU and NumPy versions) at >
    dets = np.array([[0, 0, 9, 9, 0.9], [0, 0, 9, 4, 0.8]])
    assert wrapper_nms(dets, 0.5).tolist() == [0, 1]


def test_twenty_thousand_boxes():
    dets = proposal_dets(np.random.default_rng(7), 20000)
    expected = py_cpu_nms(dets, 0.7)
    assert 1000 <= len(expected) < 20000
    t = torch.from_numpy(dets)
    assert ops_nms(t[:, :4], t[:, 4], 0.7).tolist() == expected
    assert wrapper_nms(dets, 0.7).tolist() == expected


def test_empty_input():
    empty = np.zeros((0, 5), np.float32)
    for name, got in all_versions(empty, 0.5).items():
        assert got == [], name
    assert wrapper_nms(empty, 0.5).dtype == np.int64
    assert wrapper_nms(torch.zeros(0, 5), 0.5).dtype == torch.int64


def _nms_dets_torch(dets: np.ndarray, thresh: float):
    return wrapper_nms(torch.from_numpy(dets), thresh)


@pytest.mark.parametrize("fn", [py_cpu_nms, wrapper_nms, _nms_dets_torch],
                         ids=["py_cpu_nms", "nms_dets(numpy)", "nms_dets(torch)"])
def test_bad_input_raises(fn):
    with pytest.raises(ValueError, match="dets"):
        fn(np.zeros((3, 4), np.float32), 0.5)
    with pytest.raises(TypeError, match="dets"):
        fn(np.zeros((3, 5), np.int32), 0.5)
    bad = np.array([[0, 0, 9, 9, 0.9], [0, 0, np.nan, 9, 0.8]])
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, 0.5)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        fn(bad, 0.5)


def test_bad_input_raises_in_the_raw_op():
    # the same cases against torch.ops.frcnn.nms (boxes and scores apart), which checks them
    # itself for callers that bypass the Python faces
    native()
    op = torch.ops.frcnn.nms
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        op(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(TypeError, match="boxes must be float32 or float64"):
        op(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3, dtype=torch.int32), 0.5)
    bad = torch.tensor([[0, 0, 9, 9, 0.9], [0, 0, float("nan"), 9, 0.8]], dtype=torch.float64)
    with pytest.raises(ValueError, match="boxes contains NaN"):
        op(bad[:, :4], bad[:, 4], 0.5)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="boxes contains NaN or inf"):
        op(bad[:, :4], bad[:, 4], 0.5)
    bad[1, 2], bad[0, 4] = 9.0, float("nan")
    with pytest.raises(ValueError, match="scores contains NaN or inf"):
        op(bad[:, :4], bad[:, 4], 0.5)


@pytest.mark.cuda
def test_cuda_version_matches_reference():
    dets, thresh = threshold_dets()
    cases = [(dets, thresh), (dets, np.nextafter(0.5, 0.0))]
    cases += [(degenerate_dets(), t) for t in (-0.5, 0.0, 0.3, 0.9, 1.5)]
    rng = np.random.default_rng(4)
    cases += [(integer_dets(rng, 300), t) for t in (0.0, 0.25, 1 / 3, 0.5, 2 / 3)]
    cases += [(random_dets(rng, 500, np.float32, clusters=20), t) for t in (0.3, 0.7)]
    for d, t in cases:
        g = torch.from_numpy(d).cuda()
        got = ops_nms(g[:, :4], g[:, 4], t)
        assert got.is_cuda
        assert got.cpu().tolist() == reference_nms(d, t), f"thresh {t}"
        assert wrapper_nms(g, t).cpu().tolist() == reference_nms(d, t)
    big = proposal_dets(np.random.default_rng(7), 20000)
    g = torch.from_numpy(big).cuda()
    assert ops_nms(g[:, :4], g[:, 4], 0.7).cpu().tolist() == py_cpu_nms(big, 0.7)
    empty = torch.zeros(0, 5, device="cuda")
    assert ops_nms(empty[:, :4], empty[:, 4], 0.5).shape == (0,)
    bad = torch.tensor([[0.0, 0, float("nan"), 5]], device="cuda")
    with pytest.raises(ValueError, match="NaN or inf"):
        ops_nms(bad, torch.ones(1, device="cuda"), 0.5)
    with pytest.raises(ValueError, match="scores is on"):
        ops_nms(torch.zeros(2, 4, device="cuda"), torch.zeros(2), 0.5)
