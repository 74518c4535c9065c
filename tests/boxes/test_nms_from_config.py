"""frcnn.boxes.nms_from_config: the one meaning of USE_GPU_NMS for every tool (test_net, demo,
time_net, reval): the configured GPU when USE_GPU_NMS is set and the run is on a GPU, else the CPU."""

import os

import numpy as np
import pytest
import torch

import frcnn.boxes.nms as boxes_nms
from frcnn.boxes.nms import nms_device, nms_from_config
from frcnn.config import get_default_config
from tests.boxes.nms_reference import random_dets, reference_nms


def config(use_gpu_nms: bool, gpu_id: int):
    cfg = get_default_config()
    cfg.USE_GPU_NMS = use_gpu_nms
    cfg.GPU_ID = gpu_id
    return cfg


@pytest.mark.parametrize(
    "use_gpu_nms, gpu_id, cuda_available, expected",
    [
        (True, 0, True, "cuda:0"),
        (True, 2, True, "cuda:2"),  # the configured GPU, not the first one
        (False, 0, True, "cpu"),  # USE_GPU_NMS off: the CPU even on a GPU run
        (True, -1, True, "cpu"),  # a CPU run (--cpu, GPU_ID -1)
        (True, 0, False, "cpu"),  # no CUDA device: the run itself is on the CPU
    ],
)
def test_device_choice(monkeypatch, use_gpu_nms, gpu_id, cuda_available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_available)
    assert nms_device(config(use_gpu_nms, gpu_id)) == torch.device(expected)


def test_gpu_choice_passes_the_configured_device(monkeypatch):
    # a fake GPU: the returned nms_fn hands NumPy detections to nms_dets with device=cuda:1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    calls = []
    monkeypatch.setattr(boxes_nms, "nms_dets", lambda dets, thresh, **kw: calls.append(kw) or np.zeros(0, np.int64))
    nms_fn = nms_from_config(config(True, 1))
    nms_fn(np.zeros((2, 5), np.float32), 0.3)
    assert calls == [{"device": torch.device("cuda", 1)}]
    nms_from_config(config(False, 1))(np.zeros((2, 5), np.float32), 0.3)
    assert calls[-1] == {"force_cpu": True}


def test_cpu_choice_runs_the_cpu_kernel():
    dets = random_dets(np.random.default_rng(0), 80, np.float32, clusters=6)
    nms_fn = nms_from_config(config(True, -1))
    keep = nms_fn(dets, 0.3)
    assert isinstance(keep, np.ndarray) and keep.tolist() == reference_nms(dets, 0.3)
    # torch detections are moved to the CPU too (upstream's force_cpu)
    kept = nms_fn(torch.from_numpy(dets), 0.3)
    assert isinstance(kept, torch.Tensor) and kept.device.type == "cpu" and kept.tolist() == keep.tolist()


def test_every_tool_uses_it():
    # demo and time_net used to pass force_cpu=not USE_GPU_NMS, which ran NumPy input on the CPU
    # whatever the flag: now each tool (and test_net) asks nms_from_config
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for rel in ("tools/demo.py", "tools/time_net.py", "tools/reval.py", "lib/frcnn/inference/test.py"):
        with open(os.path.join(root, rel)) as f:
            source = f.read()
        assert "nms_from_config(cfg)" in source, rel
        assert "cfg.USE_GPU_NMS" not in source, rel  # read in one place only: nms_device


@pytest.mark.cuda
def test_gpu_choice_runs_on_the_gpu(monkeypatch):
    seen = []
    ops_nms = boxes_nms._ops_nms
    monkeypatch.setattr(boxes_nms, "_ops_nms", lambda b, s, t: seen.append(b.device) or ops_nms(b, s, t))
    dets = random_dets(np.random.default_rng(1), 300, np.float32, clusters=10)
    keep = nms_from_config(config(True, 0))(dets, 0.5)
    assert isinstance(keep, np.ndarray) and keep.tolist() == reference_nms(dets, 0.5)
    assert seen == [torch.device("cuda", 0)]
