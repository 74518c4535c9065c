"""Anchor coverage (the anchors of the cell nearest a box's centre) and the choice of anchors."""

import numpy as np
import pytest

from frcnn.boxes import bbox_overlaps
from frcnn.rpn.anchor_fit import SCALE_GRID, best_anchor_iou, coverage, fit_anchors, nearest_cell_shifts
from frcnn.rpn.generate_anchors import generate_anchors, shifted_anchors


def _random_boxes(rng, n, lo, hi, im=(800, 600), ratio=(0.5, 2.0)):
    side = rng.uniform(lo, hi, n)
    r = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), n))
    w, h = side / np.sqrt(r), side * np.sqrt(r)
    x1 = rng.uniform(0, im[0] - w)
    y1 = rng.uniform(0, im[1] - h)
    return np.stack([x1, y1, x1 + w - 1, y1 + h - 1], axis=1), np.tile(im, (n, 1)).astype(np.float64)


def test_best_iou_is_that_of_the_anchors_at_the_nearest_cell_centre():
    rng = np.random.RandomState(0)
    boxes, sizes = _random_boxes(rng, 300, 10, 400)
    scales, ratios = (2, 4, 8, 16), (0.5, 1, 2)
    got = best_anchor_iou(boxes, sizes, scales, ratios)
    # reference: every anchor of the image (the RPN layers' grid), the cell whose centre is nearest
    ref_anchors = generate_anchors(ratios=ratios, scales=scales)
    H, W = int(np.ceil(600 / 16)), int(np.ceil(800 / 16))
    grid = shifted_anchors(ref_anchors, H, W, 16).numpy().reshape(H, W, len(ref_anchors), 4)
    centres = (grid[:, :, 0, :2] + grid[:, :, 0, 2:]) / 2  # every anchor of a cell shares its centre
    for k, box in enumerate(boxes):
        c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        d = np.abs(centres - c).max(axis=2)  # the nearest cell in x and in y separately
        i = np.argmin(np.abs(centres[:, 0, 1] - c[1]))
        j = np.argmin(np.abs(centres[0, :, 0] - c[0]))
        assert d[i, j] <= 8.0 + 1e-9
        want = bbox_overlaps(grid[i, j].astype(np.float64), box[None, :]).max()
        assert got[k] == pytest.approx(want, abs=1e-9), k
    # never better than the best anchor anywhere in the image
    everywhere = bbox_overlaps(grid.reshape(-1, 4).astype(np.float64), boxes).max(axis=0)
    assert np.all(got <= everywhere + 1e-12)


def test_the_nearest_cell_stays_inside_the_feature_map():
    boxes = np.array([[790.0, 590.0, 799.0, 599.0], [0.0, 0.0, 3.0, 3.0]])
    shifts = nearest_cell_shifts(boxes, np.array([[800, 600], [800, 600]]), 16)
    assert shifts[0].tolist() == [784, 592, 784, 592]  # cell (37, 49): the last of 38 x 50
    assert shifts[1].tolist() == [0, 0, 0, 0]


def test_fit_prefers_octaves_and_few_anchors_when_they_cover_every_box():
    rng = np.random.RandomState(1)
    boxes, sizes = _random_boxes(rng, 400, 150, 450)  # VOC-like sizes
    fit = fit_anchors(boxes, sizes)
    assert fit.covered == fit.total == 400
    assert fit.ratios == (0.5, 1.0, 2.0)
    ladder = np.array(fit.scales[1:]) / np.array(fit.scales[:-1])
    assert np.allclose(ladder, 2.0, rtol=1e-3) and fit.num_anchors <= 12


def test_fit_covers_small_boxes_with_small_anchors_and_reports_the_rest():
    rng = np.random.RandomState(2)
    big, s1 = _random_boxes(rng, 200, 60, 240)
    tiny, s2 = _random_boxes(rng, 50, 6, 12)  # too small for stride 16 wherever they lie
    boxes, sizes = np.vstack([big, tiny]), np.vstack([s1, s2])
    fit = fit_anchors(boxes, sizes)
    upstream = coverage(boxes, sizes, (8, 16, 32), (0.5, 1, 2))
    assert fit.covered > upstream.covered
    assert min(fit.scales) < 8
    best = best_anchor_iou(boxes, sizes, fit.scales, fit.ratios)
    assert np.all(best[:200] >= 0.5)  # every coverable box covered
    assert fit.covered == int(np.sum(best >= 0.5)) < fit.total


def test_very_flat_boxes_widen_the_ratios():
    rng = np.random.RandomState(3)
    boxes, sizes = _random_boxes(rng, 200, 80, 200, ratio=(0.2, 0.3))
    fit = fit_anchors(boxes, sizes)
    assert 0.25 in fit.ratios and {0.5, 1.0, 2.0} <= set(fit.ratios)
    assert fit.coverage > coverage(boxes, sizes, fit.scales, (0.5, 1, 2)).coverage


def test_the_search_on_a_sample_reports_coverage_on_every_box():
    rng = np.random.RandomState(4)
    boxes, sizes = _random_boxes(rng, 900, 50, 300)
    fit = fit_anchors(boxes, sizes, max_search_boxes=100)
    assert fit.total == 900
    assert fit.covered == int(np.sum(best_anchor_iou(boxes, sizes, fit.scales, fit.ratios) >= 0.5))


def test_scale_grid_and_errors():
    assert SCALE_GRID[0] == 1 and SCALE_GRID[-1] == 64 and 2.83 in SCALE_GRID and 11.31 in SCALE_GRID
    with pytest.raises(ValueError, match="no boxes"):
        fit_anchors(np.zeros((0, 4)), np.zeros((0, 2)))
