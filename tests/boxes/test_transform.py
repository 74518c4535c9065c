"""bbox_transform / bbox_transform_inv / clip_boxes (NumPy and torch) and the torch IoU."""

import numpy as np
import pytest
import torch

from frcnn.boxes.iou import box_iou
from frcnn.boxes.overlaps import bbox_overlaps
from frcnn.boxes.transform import bbox_transform, bbox_transform_inv, clip_boxes


def random_boxes(rng, n, size=200.0, dtype=np.float64):
    xy = rng.uniform(-20, size, (n, 2))
    wh = rng.uniform(0, size / 2, (n, 2))
    return np.hstack((xy, xy + wh)).astype(dtype)


# ------------------------------------------------------------------ encode


def test_encode_hand_values():
    ex = np.array([[0.0, 0.0, 9.0, 19.0]])  # w 10, h 20, centre (5, 10)
    gt = np.array([[5.0, 10.0, 24.0, 29.0]])  # w 20, h 20, centre (15, 20)
    t = bbox_transform(ex, gt)
    np.testing.assert_allclose(t, [[1.0, 0.5, np.log(2.0), 0.0]], rtol=0, atol=1e-12)
    tt = bbox_transform(torch.tensor(ex), torch.tensor(gt))
    assert isinstance(tt, torch.Tensor) and tt.dtype == torch.float64
    np.testing.assert_allclose(tt.numpy(), t, rtol=0, atol=1e-15)


def test_encode_identity_is_zero_and_uses_first_four_columns():
    b = np.array([[3.0, 4.0, 10.0, 30.0, 7.0]])  # a 5th column (class) is ignored
    np.testing.assert_array_equal(bbox_transform(b, b), np.zeros((1, 4)))


def test_encode_numpy_and_torch_agree_on_random_boxes():
    rng = np.random.RandomState(0)
    ex, gt = random_boxes(rng, 300), random_boxes(rng, 300)
    t_np = bbox_transform(ex, gt)
    t_th = bbox_transform(torch.from_numpy(ex), torch.from_numpy(gt)).numpy()
    np.testing.assert_allclose(t_th, t_np, rtol=1e-12, atol=1e-12)
    assert t_np.shape == (300, 4)


# ------------------------------------------------------------------ decode


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_decode_zero_deltas_has_the_one_pixel_quirk(kind):
    boxes = np.array([[0.0, 0.0, 9.0, 19.0], [10.0, 20.0, 10.0, 20.0]])
    deltas = np.zeros((2, 8), dtype=np.float32)  # two classes
    if kind == "torch":
        out = bbox_transform_inv(torch.from_numpy(boxes), torch.from_numpy(deltas)).numpy()
    else:
        out = bbox_transform_inv(boxes, deltas)
    expected = np.array([[0, 0, 10, 20] * 2, [10, 20, 11, 21] * 2], dtype=np.float32)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32  # boxes cast to the deltas' dtype


def test_decode_hand_values_per_class_group():
    boxes = np.array([[0.0, 0.0, 9.0, 19.0]])  # w 10, h 20, centre (5, 10)
    deltas = np.array([[0, 0, 0, 0, 1.0, -0.5, np.log(2.0), np.log(0.5)]])
    out = bbox_transform_inv(boxes, deltas)
    # class 1: centre (15, 0), size (20, 10) -> (5, -5, 25, 5)
    np.testing.assert_allclose(out[0, 4:], [5.0, -5.0, 25.0, 5.0], atol=1e-12)


def test_decode_numpy_and_torch_agree_and_torch_keeps_dtype():
    rng = np.random.RandomState(1)
    boxes = random_boxes(rng, 100)
    deltas = rng.normal(0, 0.5, (100, 12)).astype(np.float32)
    a = bbox_transform_inv(boxes, deltas)
    b = bbox_transform_inv(torch.from_numpy(boxes), torch.from_numpy(deltas))
    assert b.dtype == torch.float32 and a.dtype == np.float32
    np.testing.assert_allclose(b.numpy(), a, rtol=1e-6, atol=1e-4)
    d64 = bbox_transform_inv(torch.from_numpy(boxes), torch.from_numpy(deltas.astype(np.float64)))
    assert d64.dtype == torch.float64


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_round_trip_gives_gt_plus_one_on_x2_y2(kind):
    rng = np.random.RandomState(2)
    ex, gt = random_boxes(rng, 200), random_boxes(rng, 200)
    if kind == "torch":
        ex, gt = torch.from_numpy(ex), torch.from_numpy(gt)
    back = bbox_transform_inv(ex, bbox_transform(ex, gt))
    back = back.numpy() if kind == "torch" else back
    gt = np.asarray(gt)
    np.testing.assert_allclose(back, gt + [0, 0, 1, 1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_decode_empty_and_no_clamp(kind):
    lib = torch if kind == "torch" else np
    conv = torch.from_numpy if kind == "torch" else np.asarray
    empty = bbox_transform_inv(conv(np.zeros((0, 4))), conv(np.zeros((0, 8), np.float32)))
    assert tuple(empty.shape) == (0, 8) and str(empty.dtype).endswith("float32")
    big = bbox_transform_inv(conv(np.array([[0.0, 0.0, 9.0, 9.0]])), conv(np.array([[0, 0, 100.0, 0]])))
    assert bool(lib.isinf(big[0, 2])) or float(big[0, 2]) > 1e40  # exp(100) * 10, not clamped


def test_mixed_kinds_and_bad_shapes_raise():
    with pytest.raises(TypeError, match="both"):
        bbox_transform_inv(np.zeros((1, 4)), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="deltas"):
        bbox_transform_inv(np.zeros((1, 4)), np.zeros((1, 5)))
    with pytest.raises(ValueError, match="rows"):
        bbox_transform(np.zeros((2, 4)), np.zeros((3, 4)))


# ------------------------------------------------------------------ clip


@pytest.mark.parametrize("kind", ["numpy", "torch", "torch-tensor-shape"])
def test_clip_boxes(kind):
    boxes = np.array([[-5.0, 3.0, 900.0, 700.0, 10.0, -1.0, 20.0, 599.5]])
    expected = np.array([[0.0, 3.0, 799.0, 599.0, 10.0, 0.0, 20.0, 599.0]])
    if kind == "numpy":
        out = clip_boxes(boxes, (600, 800, 3))
    elif kind == "torch":
        out = clip_boxes(torch.from_numpy(boxes), (600, 800)).numpy()
    else:
        im_info = torch.tensor([600.0, 800.0, 1.6])
        out = clip_boxes(torch.from_numpy(boxes).float(), im_info[:2]).numpy()
    np.testing.assert_array_equal(out, expected)
    assert boxes[0, 0] == -5.0  # the input is left as it was


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_boxes_with_a_number_shape_rounds_as_a_tensor_shape(dtype):
    # a fractional size (a scaled image): H - 1 is computed in the boxes' type, as with an
    # im_info tensor, and NaN stays NaN; the number form makes no tensor on the boxes' device
    rng = np.random.default_rng(3)
    boxes = torch.tensor(rng.uniform(-50, 1100, (500, 8)), dtype=dtype)
    boxes[7, 2] = float("nan")
    for h, w in ((600.7, 800.3), (375, 500), (1e-3, 2.5)):
        want = clip_boxes(boxes, torch.tensor([h, w], dtype=dtype))
        got = clip_boxes(boxes, (h, w))
        assert got.dtype == dtype and torch.equal(got.isnan(), want.isnan())
        assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(want)), (h, w)
    assert clip_boxes(boxes, (600.7, 800.3))[7, 2].isnan()


# ------------------------------------------------------------------ IoU


def adversarial_boxes():
    return np.array(
        [
            [0, 0, 9, 9],
            [0, 0, 9, 9],  # identical
            [10, 0, 19, 9],  # touches at the +1 edge: no overlap
            [9, 0, 18, 9],  # one shared column: overlap 10 px
            [5, 5, 5, 5],  # a single pixel
            [3, 3, 2, 2],  # zero area (x2 = x1 - 1)
            [-50, -50, 500, 500],
            [0.5, 0.5, 9.25, 9.75],
        ],
        dtype=np.float64,
    )


def test_box_iou_equals_cython_bbox_overlaps():
    rng = np.random.RandomState(3)
    a = np.vstack((random_boxes(rng, 120), adversarial_boxes()))
    b = np.vstack((random_boxes(rng, 30), adversarial_boxes()))
    ref = bbox_overlaps(a, b)
    out = box_iou(torch.from_numpy(a), torch.from_numpy(b))
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), ref)
    assert ref[120, 30 + 2] == 0 and ref[120, 30 + 3] == pytest.approx(10 / 190)


def test_box_iou_float32_close_and_empty():
    rng = np.random.RandomState(4)
    a, b = random_boxes(rng, 40), random_boxes(rng, 9)
    out = box_iou(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), bbox_overlaps(a, b), atol=1e-5)
    assert box_iou(torch.zeros(0, 4), torch.zeros(3, 4)).shape == (0, 3)
    assert box_iou(torch.zeros(5, 5), torch.zeros(0, 4)).shape == (5, 0)
    with pytest.raises(ValueError, match="query_boxes"):
        box_iou(torch.zeros(2, 4), torch.zeros(2, 3))
