"""The data-parallel checks with NCCL, one rank per GPU. The same runs as
tests/training/test_data_parallel.py with ``--gpu 0``: each rank on GPU LOCAL_RANK. cuDNN's
backward sums in an order of its own, so the parameters are compared to 1e-4 relative here (1e-5
on the CPU). Two ranks need two GPUs (NCCL refuses two ranks on one GPU); on a machine with one,
a group of one rank (``FRCNN_DIST_GROUP_OF_ONE=1``) runs every NCCL code path: collectives on the
GPU, the rank watch, rank 0's gathers."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from frcnn.inference.detections import load_detections
from tests.training.test_data_parallel import (
    _assert_same_parameters,
    _model,
    _run,
    _test_args,
    _torchrun,
    _train_args,
    group_of_one_matches_a_plain_process,
    tiny,  # noqa: F401 (the fixture, by name)
)

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs (one rank per GPU)")


def _on_gpu(args):
    return [a if a != "cpu" else "0" for a in args]


def test_a_group_of_one_nccl_rank_trains_and_tests_as_one_plain_process(tiny):  # noqa: F811
    group_of_one_matches_a_plain_process(tiny, "0", rtol=1e-4)


@two_gpus
def test_two_gpus_give_the_parameters_of_one_gpu_with_iter_size_2_and_the_same_detections(tiny):  # noqa: F811
    _one, two = _run([sys.executable, *_on_gpu(_train_args(tiny, "gpu_one", "TRAIN.SOLVER_ITER_SIZE", "2"))],
                     [*_torchrun(2), *_on_gpu(_train_args(tiny, "gpu_two"))])
    assert "Distributed run: 2 ranks (NCCL)" in two.stdout
    _assert_same_parameters(_model(tiny, "gpu_two"), _model(tiny, "gpu_one"), rtol=1e-4)
    model = _model(tiny, "gpu_two")
    _run([sys.executable, *_on_gpu(_test_args(tiny, model, "gpu_test_one"))],
         [*_torchrun(2), *_on_gpu(_test_args(tiny, model, "gpu_test_two"))])
    a, b = (load_detections(os.path.join(str(tiny["root"]), "output", exp, "tiny_test", "tiny_iter_10",
                                         "detections.npz")) for exp in ("gpu_test_one", "gpu_test_two"))
    for j in range(len(a)):
        for i in range(len(a[j])):
            assert a[j][i].shape == b[j][i].shape and np.allclose(a[j][i], b[j][i], rtol=1e-5, atol=1e-3), (j, i)
