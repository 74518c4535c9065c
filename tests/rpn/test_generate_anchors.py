"""The reference anchors (golden values from py-faster-rcnn) and their shifts."""

import numpy as np
import pytest
import torch

from frcnn.rpn.generate_anchors import generate_anchors, shifted_anchors

NINE = [
    [-84, -40, 99, 55],
    [-176, -88, 191, 103],
    [-360, -184, 375, 199],
    [-56, -56, 71, 71],
    [-120, -120, 135, 135],
    [-248, -248, 263, 263],
    [-36, -80, 51, 95],
    [-80, -168, 95, 183],
    [-168, -344, 183, 359],
]


def test_the_nine_anchors():
    a = generate_anchors()
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, np.array(NINE, dtype=np.float64))
    np.testing.assert_array_equal(generate_anchors(16, [0.5, 1, 2], 2 ** np.arange(3, 6)), a)
    sizes = np.stack((a[:, 2] - a[:, 0] + 1, a[:, 3] - a[:, 1] + 1), 1)
    np.testing.assert_array_equal(sizes[[0, 3, 6]], [[184, 96], [128, 128], [88, 176]])


def test_coco_twelve_anchors_ratio_major():
    a = generate_anchors(scales=(4, 8, 16, 32))
    assert a.shape == (12, 4)
    np.testing.assert_array_equal(a[[0, 4, 8]], [[-38, -16, 53, 31], [-24, -24, 39, 39], [-14, -36, 29, 51]])
    np.testing.assert_array_equal(a[[1, 2, 3]], NINE[0:3])
    np.testing.assert_array_equal(a[[5, 6, 7]], NINE[3:6])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="scales"):
        generate_anchors(scales=())
    with pytest.raises(ValueError, match="> 0"):
        generate_anchors(ratios=(0, 1))


def test_shifted_anchor_count_and_inside_count_for_800x600():
    # 800x600 input -> conv5 38x50 with stride 16 -> 17100 anchors, 5944 fully inside
    a = shifted_anchors(generate_anchors(), 38, 50, 16)
    assert a.shape == (38 * 50 * 9, 4) == (17100, 4)
    inside = (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] < 800) & (a[:, 3] < 600)
    assert int(inside.sum()) == 5944


def test_shifted_anchor_order_row_col_anchor():
    base = generate_anchors()
    H, W, A = 3, 4, 9
    a = shifted_anchors(base, H, W, 16, dtype=torch.float64).numpy()
    for i in range(H):
        for j in range(W):
            for k in range(A):
                np.testing.assert_array_equal(a[(i * W + j) * A + k], base[k] + [16 * j, 16 * i, 16 * j, 16 * i])
    f32 = shifted_anchors(torch.from_numpy(base), H, W, 16, device="cpu", dtype=torch.float32)
    assert f32.dtype == torch.float32 and f32.device.type == "cpu"
    assert shifted_anchors(base, 0, 5, 16).shape == (0, 4)


@pytest.mark.cuda
def test_shifted_anchors_on_cuda_equal_cpu():
    base = generate_anchors()
    cpu = shifted_anchors(base, 38, 50, 16)
    gpu = shifted_anchors(base, 38, 50, 16, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)
