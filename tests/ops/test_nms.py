"""frcnn.ops.nms (torch.ops.frcnn.nms): API, dtypes, devices and errors.

Agreement of every NMS version with the plain-Python reference is in tests/boxes; here the op is
checked against the NumPy reference py_cpu_nms (itself held to the plain loops there).
"""

import numpy as np
import pytest
import torch

from frcnn.ops import nms
from tests.boxes.nms_reference import py_cpu_nms


def make_dets(seed: int, n: int, dtype=torch.float32, clusters: int = 30) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(clusters, 2, generator=g, dtype=torch.float64) * 1000
    xy = centres[torch.randint(0, clusters, (n,), generator=g)] + torch.randn(n, 2, generator=g, dtype=torch.float64) * 8
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 80 + 20
    scores = torch.rand(n, 1, generator=g, dtype=torch.float64)
    scores[: n // 4] = scores[n // 4: 2 * (n // 4)]  # many exact ties
    return torch.cat([xy, xy + wh, scores], 1).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("thresh", [0.3, 0.7])
def test_matches_numpy_reference(dtype, thresh):
    dets = make_dets(0, 800, dtype)
    keep = nms(dets[:, :4], dets[:, 4], thresh)
    assert keep.dtype == torch.int64 and keep.device.type == "cpu"
    assert keep.tolist() == py_cpu_nms(dets.numpy(), thresh)


def test_result_is_in_descending_score_order_and_kept_boxes_do_not_overlap():
    dets = make_dets(1, 500, torch.float64)
    keep = nms(dets[:, :4], dets[:, 4], 0.5)
    s = dets[keep, 4]
    assert torch.all(s[:-1] >= s[1:])
    b = dets[keep, :4]
    x1 = torch.maximum(b[:, None, 0], b[None, :, 0])
    x2 = torch.minimum(b[:, None, 2], b[None, :, 2])
    y1 = torch.maximum(b[:, None, 1], b[None, :, 1])
    y2 = torch.minimum(b[:, None, 3], b[None, :, 3])
    inter = (x2 - x1 + 1).clamp(min=0) * (y2 - y1 + 1).clamp(min=0)
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    iou.fill_diagonal_(0)
    assert iou.max() <= 0.5


def test_noncontiguous_inputs():
    dets = make_dets(2, 300, torch.float64)
    boxes = dets[:, :4].t().contiguous().t()  # column-major view
    assert not boxes.is_contiguous()
    assert nms(boxes, dets[:, 4], 0.6).tolist() == py_cpu_nms(dets.numpy(), 0.6)


def test_empty_and_single():
    keep = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64
    assert nms(torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([0.3]), 0.5).tolist() == [0]


def test_bad_inputs_name_the_argument():
    b, s = torch.zeros(3, 4), torch.zeros(3)
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        nms(torch.zeros(3, 5), s, 0.5)
    with pytest.raises(ValueError, match="scores must have shape"):
        nms(b, torch.zeros(4), 0.5)
    with pytest.raises(TypeError, match="boxes must be float32 or float64"):
        nms(b.long(), s, 0.5)
    with pytest.raises(TypeError, match="differ in dtype"):
        nms(b, s.double(), 0.5)
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        nms(b, np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="iou_threshold must be finite"):
        nms(b, s, float("inf"))
    with pytest.raises(ValueError, match="scores is on meta"):
        nms(b, s.to("meta"), 0.5)
    bad = torch.tensor([[0.0, 0, float("nan"), 5]])
    with pytest.raises(ValueError, match="boxes contains NaN or inf"):
        nms(bad, torch.ones(1), 0.5)
    with pytest.raises(ValueError, match="scores contains NaN or inf"):
        nms(torch.zeros(1, 4), torch.tensor([float("-inf")]), 0.5)


def test_op_checks_its_inputs_itself():
    # the registered op validates too (for callers that bypass frcnn.ops.nms)
    with pytest.raises(ValueError, match="boxes must be an"):
        torch.ops.frcnn.nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(TypeError, match="same dtype"):
        torch.ops.frcnn.nms(torch.zeros(3, 4), torch.zeros(3, dtype=torch.float64), 0.5)


def test_op_checks_are_the_wrappers_checks():
    # frcnn.ops.nms leaves shapes, dtypes and values to the op: a raw caller gets the same
    # errors, naming the argument, as ValueError / TypeError
    b, s = torch.zeros(3, 4), torch.zeros(3)
    op = torch.ops.frcnn.nms
    with pytest.raises(ValueError, match=r"scores must have shape \(N,\) = \(3,\)"):
        op(b, torch.zeros(3, 1), 0.5)
    with pytest.raises(TypeError, match="boxes must be float32 or float64, got Half"):
        op(b.half(), s.half(), 0.5)  # the Python face widens these; the op does not
    with pytest.raises(TypeError, match="differ in dtype"):
        op(b.double(), s, 0.5)
    with pytest.raises(ValueError, match="iou_threshold must be finite"):
        op(b, s, float("nan"))
    with pytest.raises(ValueError, match="scores contains NaN or inf"):
        op(b, torch.tensor([0.0, float("nan"), 1.0]), 0.5)
    with pytest.raises(TypeError, match="iou_threshold must be a number"):
        nms(b, s, "0.5")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 20000])
def test_cuda_matches_cpu(dtype, n):
    dets = make_dets(3, n, dtype, clusters=max(1, n // 50))
    for thresh in (0.0, 0.5, 0.7):
        cpu = nms(dets[:, :4], dets[:, 4], thresh)
        gpu = nms(dets[:, :4].cuda(), dets[:, 4].cuda(), thresh)
        assert gpu.is_cuda and gpu.dtype == torch.int64
        assert torch.equal(gpu.cpu(), cpu), f"n={n} thresh={thresh}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_widened_exactly(dtype):
    dets = make_dets(4, 200, torch.float32).to(dtype)
    keep = nms(dets[:, :4], dets[:, 4], 0.5)
    assert keep.tolist() == py_cpu_nms(dets.float().numpy(), 0.5)
