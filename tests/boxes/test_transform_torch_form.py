"""The torch forms of bbox_transform, bbox_transform_inv, clip_boxes and box_iou (x and y side by
side, few tensor operations: on a GPU, few kernel launches) against the plain per-column form, bit
for bit."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from frcnn.boxes import bbox_transform, bbox_transform_inv, box_iou, clip_boxes

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64, torch.float16: torch.int16,
            torch.bfloat16: torch.int16}


def same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    return torch.equal(a.contiguous().view(INT_VIEW[a.dtype]), b.contiguous().view(INT_VIEW[b.dtype]))


def decode_per_column(boxes, deltas):
    """py-faster-rcnn's bbox_transform_inv, one column at a time."""
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    dx, dy, dw, dh = deltas[:, 0::4], deltas[:, 1::4], deltas[:, 2::4], deltas[:, 3::4]
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    pred = torch.empty_like(deltas)
    pred[:, 0::4] = pred_ctr_x - 0.5 * pred_w
    pred[:, 1::4] = pred_ctr_y - 0.5 * pred_h
    pred[:, 2::4] = pred_ctr_x + 0.5 * pred_w
    pred[:, 3::4] = pred_ctr_y + 0.5 * pred_h
    return pred


def encode_per_column(ex, gt):
    """py-faster-rcnn's bbox_transform, one column at a time."""
    ex_w = ex[:, 2] - ex[:, 0] + 1.0
    ex_h = ex[:, 3] - ex[:, 1] + 1.0
    ex_x = ex[:, 0] + 0.5 * ex_w
    ex_y = ex[:, 1] + 0.5 * ex_h
    gt_w = gt[:, 2] - gt[:, 0] + 1.0
    gt_h = gt[:, 3] - gt[:, 1] + 1.0
    gt_x = gt[:, 0] + 0.5 * gt_w
    gt_y = gt[:, 1] + 0.5 * gt_h
    return torch.stack(((gt_x - ex_x) / ex_w, (gt_y - ex_y) / ex_h, torch.log(gt_w / ex_w), torch.log(gt_h / ex_h)), 1)


def iou_per_coordinate(a, b):
    """bbox_overlaps' arithmetic, one coordinate at a time (the torch form before)."""
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    iw = torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1]) + 1
    valid = (iw > 0) & (ih > 0)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(valid, inter / torch.where(valid, union, torch.ones_like(union)), torch.zeros_like(inter))


def clip_per_column(boxes, h_max, w_max):
    """min(x, W - 1) then max(., 0), one column at a time (limits: numbers or 0-d tensors)."""
    def upto(x, limit):
        return (torch.minimum(x, limit) if isinstance(limit, torch.Tensor) else x.clamp(max=limit)).clamp_min(0)

    out = boxes.clone()
    for col in range(4):
        out[:, col::4] = upto(boxes[:, col::4], w_max if col % 2 == 0 else h_max)
    return out


def random_case(n, c, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 900 - 50
    wh = torch.rand(n, 2, generator=g) * 400 - 20  # some negative widths
    boxes = torch.cat((xy, xy + wh), 1)
    deltas = torch.randn(n, 4 * c, generator=g) * torch.tensor([0.3, 0.3, 2.0, 2.0]).repeat(c)
    if n >= 8:
        deltas[0, 2] = 200.0  # exp overflows to inf
        deltas[1, 3] = -200.0  # exp underflows to 0
        deltas[2, 0] = float("nan")
        deltas[3, 1] = -0.0
        boxes[4] = torch.tensor([5.0, 5.0, 4.0, 4.0])  # width and height 0
        boxes[5, 0] = float("inf")
    return boxes.to(dtype), deltas.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(1, 1), (500, 1), (300, 21), (17, 3)])
def test_decode_equals_the_per_column_form_bit_for_bit(dtype, n, c):
    boxes, deltas = random_case(n, c, dtype, seed=n * 31 + c)
    assert same_bits(bbox_transform_inv(boxes, deltas), decode_per_column(boxes, deltas))
    # float32 boxes with float64 deltas (cast to the deltas' type first), and strided deltas
    if dtype == torch.float64:
        assert same_bits(bbox_transform_inv(boxes.float(), deltas), decode_per_column(boxes.float(), deltas))
    wide = torch.cat((deltas, deltas), 1)[:, 4 * c:]  # a non-contiguous view
    assert not wide.is_contiguous() or n == 1
    assert same_bits(bbox_transform_inv(boxes, wide), decode_per_column(boxes, wide))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 21])
def test_clip_equals_the_per_column_form_bit_for_bit(dtype, c):
    boxes, _ = random_case(400, 1, dtype, seed=c)
    boxes = boxes.repeat(1, c) * torch.linspace(0.5, 1.5, 4 * c, dtype=dtype)
    boxes[7, 3] = float("nan")
    boxes[8, 0] = -0.0
    info = torch.tensor([600.0, 1000.0, 1.6])
    for info_t in (info, info.double(), info.half()):
        h_max = info_t[0].to(dtype) - 1
        w_max = info_t[1].to(dtype) - 1
        assert same_bits(clip_boxes(boxes, info_t[:2]), clip_per_column(boxes, h_max, w_max))
    for shape in ((600, 1000), (600.7, 999.3), (1, 1)):
        h_max = (torch.tensor(float(shape[0]), dtype=dtype) - 1).item()
        w_max = (torch.tensor(float(shape[1]), dtype=dtype) - 1).item()
        assert same_bits(clip_boxes(boxes, shape), clip_per_column(boxes, h_max, w_max))
    # an image narrower than one pixel: min(x, -1) = -1, then max(-1, 0) = 0 (not clamp's -1)
    torch.testing.assert_close(clip_boxes(boxes, (0.0, 0.0)),
                               torch.zeros_like(boxes).masked_fill(boxes.isnan(), float("nan")),
                               rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 400])
def test_encode_equals_the_per_column_form_bit_for_bit(dtype, n):
    ex, deltas = random_case(n, 1, dtype, seed=n)
    gt = bbox_transform_inv(ex, deltas)  # near boxes; with inf, NaN and empty ones at n >= 8
    gt[0, 2] = ex[0, 0] - 3  # a negative width: log of a negative ratio is NaN
    assert same_bits(bbox_transform(ex, gt), encode_per_column(ex, gt))
    wide = torch.cat((ex, gt), 1)  # extra columns are ignored; a strided view
    assert same_bits(bbox_transform(wide[:, :5], wide[:, 4:]), encode_per_column(wide[:, :5], wide[:, 4:]))
    ints = (ex.float().nan_to_num(0, 0, 0) * 0 + torch.arange(n)[:, None] * 3).to(torch.int64)
    ints[:, 2:] += 10
    assert same_bits(bbox_transform(ints, ints + 2), encode_per_column(ints, ints + 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_iou_equals_the_per_coordinate_form_bit_for_bit(dtype):
    a, _ = random_case(300, 1, dtype, seed=5)
    b, _ = random_case(9, 1, dtype, seed=6)
    b[0] = a[10]  # IoU 1
    b[1] = a[11] + 0.5
    b[2, 2] = float("nan")
    b[3] = torch.tensor([3.0, 3.0, 2.0, 2.0])  # width and height 0: area 0
    got = box_iou(a, b)
    assert same_bits(got, iou_per_coordinate(a, b))
    assert same_bits(box_iou(a[:0], b), iou_per_coordinate(a[:0], b))
    ints = torch.tensor([[0, 0, 9, 9], [5, 5, 14, 14], [20, 20, 19, 29]])
    assert same_bits(box_iou(ints, ints), iou_per_coordinate(ints.float(), ints.float()))


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


# views, and what runs no kernel: type promotion, and the 0-d host tensor that a Python number
# passed to a tensor operation becomes (a GPU kernel takes it as an argument)
NOT_KERNELS = {"view", "reshape", "_reshape_alias", "slice", "select", "unsqueeze", "squeeze", "expand", "alias",
               "detach", "_unsafe_view", "as_strided", "permute", "t", "transpose", "promote_types",
               "scalar_tensor"}


def kernels(ops):
    """The operations that run a kernel (on a GPU, a launch each)."""
    return [op for op in ops if op not in NOT_KERNELS]


def test_decode_and_clip_run_few_kernels():
    boxes, deltas = random_case(1000, 1, torch.float32, seed=0)
    info = torch.tensor([600.0, 1000.0, 1.6])
    with CountOps() as decode:
        bbox_transform_inv(boxes, deltas)
    with CountOps() as clip:
        clip_boxes(boxes, info[:2])
    with CountOps() as per_column:
        clip_per_column(decode_per_column(boxes, deltas), info[0] - 1, info[1] - 1)
    assert len(kernels(decode.ops)) <= 12, decode.ops
    assert len(kernels(clip.ops)) <= 5, clip.ops
    assert len(kernels(per_column.ops)) >= 2 * (len(kernels(decode.ops)) + len(kernels(clip.ops))), per_column.ops
    gt = boxes + 3
    with CountOps() as encode:
        bbox_transform(boxes, gt)
    gt5 = gt[:5].clone()
    with CountOps() as iou:
        box_iou(boxes, gt5)
    assert len(kernels(encode.ops)) <= 13, encode.ops
    assert len(kernels(iou.ops)) <= 18, iou.ops
