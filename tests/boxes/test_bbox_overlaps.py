"""frcnn.boxes.overlaps.bbox_overlaps against a plain-Python IoU with the +1 convention."""

import numpy as np
import pytest

from frcnn.boxes.overlaps import bbox_overlaps


def iou_reference(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
    return iw * ih / ua


def test_golden_values():
    boxes = np.array([[0, 0, 9, 9], [5, 5, 14, 14], [10, 0, 19, 9], [9, 9, 9, 9]], dtype=np.float64)
    query = np.array([[0, 0, 9, 9]], dtype=np.float64)
    got = bbox_overlaps(boxes, query)[:, 0]
    # identical; 5x5 of 100+100; touching at x=10 is no overlap; one shared pixel (9, 9)
    np.testing.assert_array_equal(got, [1.0, 25 / 175, 0.0, 1 / 100])


@pytest.mark.parametrize("seed", [0, 1])
def test_random_boxes_match_reference(seed):
    rng = np.random.default_rng(seed)
    def boxes(n):
        xy = rng.uniform(-20, 100, (n, 2))
        return np.hstack([xy, xy + rng.uniform(-5, 60, (n, 2))])  # includes x2 < x1
    a, b = boxes(40), boxes(30)
    got = bbox_overlaps(a, b)
    assert got.shape == (40, 30) and got.dtype == np.float64
    ref = np.array([[iou_reference(x, y) for y in b] for x in a])
    np.testing.assert_array_equal(got, ref)


def test_integer_grid_exact_and_symmetric():
    rng = np.random.default_rng(3)
    xy = rng.integers(0, 10, (50, 2))
    a = np.hstack([xy, xy + rng.integers(0, 6, (50, 2))]).astype(np.float64)
    got = bbox_overlaps(a, a)
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(np.diag(got), np.ones(50))


def test_empty_shapes():
    assert bbox_overlaps(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    assert bbox_overlaps(np.zeros((2, 4)), np.zeros((0, 4))).shape == (2, 0)


def test_noncontiguous_input():
    a = np.asfortranarray(np.array([[0, 0, 9, 9], [0, 0, 4, 9]], dtype=np.float64))
    np.testing.assert_array_equal(bbox_overlaps(a, a[:1]), [[1.0], [0.5]])


def test_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="boxes must be float64"):
        bbox_overlaps(np.zeros((2, 4), np.float32), np.zeros((2, 4)))
    with pytest.raises(TypeError, match="query_boxes must be float64"):
        bbox_overlaps(np.zeros((2, 4)), np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"query_boxes must be an \(N, 4\) array"):
        bbox_overlaps(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="boxes must be"):
        bbox_overlaps(np.zeros(4), np.zeros((2, 4)))
