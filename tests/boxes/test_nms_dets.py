"""frcnn.boxes.nms_dets (upstream's nms_wrapper.nms): types, devices and errors (agreement is in test_nms_versions)."""

import numpy as np
import pytest
import torch

from frcnn.boxes.nms import nms_dets as nms
from tests.boxes.nms_reference import random_dets, reference_nms


def test_numpy_in_numpy_out():
    dets = random_dets(np.random.default_rng(0), 60, np.float32, clusters=5)
    keep = nms(dets, 0.3)
    assert isinstance(keep, np.ndarray) and keep.dtype == np.int64
    assert keep.tolist() == reference_nms(dets, 0.3)
    # descending score order
    assert np.all(np.diff(dets[keep, 4]) <= 0)


def test_torch_in_torch_out_and_force_cpu():
    dets = torch.from_numpy(random_dets(np.random.default_rng(1), 60, np.float64, clusters=5))
    keep = nms(dets, 0.3)
    assert isinstance(keep, torch.Tensor) and keep.dtype == torch.int64 and keep.device.type == "cpu"
    assert torch.equal(nms(dets, 0.3, force_cpu=True), keep)
    assert keep.tolist() == reference_nms(dets.numpy(), 0.3)


def test_extra_columns_rejected():
    with pytest.raises(ValueError, match=r"dets must have shape \(N, 5\)"):
        nms(np.zeros((4, 6), np.float32), 0.3)
    with pytest.raises(ValueError, match="dets"):
        nms(np.zeros((5,), np.float32), 0.3)


def test_bad_types_and_threshold():
    with pytest.raises(TypeError, match="dets"):
        nms([[0, 0, 1, 1, 1]], 0.3)
    with pytest.raises(TypeError, match="float32 or float64"):
        nms(np.zeros((2, 5), np.int64), 0.3)
    with pytest.raises(ValueError, match="thresh"):
        nms(np.zeros((2, 5), np.float32), float("nan"))
    with pytest.raises(ValueError, match="NaN or inf"):
        nms(np.array([[0, 0, np.inf, 1, 1.0]]), 0.3)


@pytest.mark.cuda
def test_cuda_tensor_stays_on_gpu():
    dets = torch.from_numpy(random_dets(np.random.default_rng(2), 500, np.float32, clusters=20))
    keep = nms(dets.cuda(), 0.5)
    assert keep.is_cuda and keep.dtype == torch.int64
    assert keep.cpu().tolist() == reference_nms(dets.numpy(), 0.5)
    keep_np = nms(dets.numpy(), 0.5, device="cuda")
    assert isinstance(keep_np, np.ndarray) and keep_np.tolist() == keep.cpu().tolist()
    assert nms(dets.cuda(), 0.5, force_cpu=True).device.type == "cpu"
