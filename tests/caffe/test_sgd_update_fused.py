"""frcnn::sgd_update_ (csrc/sgd): the solver's per-blob update in one pass over memory.

It must give the torch operations' bits (the solver's general path), and the solver must take it
only where a check on the running machine says so."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from frcnn.caffe import solver as solver_mod
from frcnn.ops._native import native

from .test_solver import make_solver, workdir  # noqa: F401  (workdir is a fixture)

native()
op = torch.ops.frcnn.sgd_update_
FAST_CPU = platform.machine() in ("x86_64", "AMD64") and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def bits(t):
    return t.contiguous().view(torch.int32)


def blobs(n, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, generator=gen) * 0.01
    g = torch.randn(n, generator=gen) * 1e-3 * torch.exp(torch.randn(n, generator=gen))
    v = torch.randn(n, generator=gen) * 1e-4
    return w, g, v


@pytest.mark.skipif(not FAST_CPU, reason="the fused copy is checked against torch's AVX2/AVX-512 kernels")
def test_the_solver_takes_the_one_pass_update_on_this_cpu():
    assert solver_mod._fused_update_matches_torch()


@pytest.mark.skipif(not FAST_CPU, reason="needs torch's AVX2/AVX-512 kernels")
@pytest.mark.parametrize("n", [1, 5, 8, 17, 64, 1000, 32768 * 3 + 11, 1_000_003])
@pytest.mark.parametrize("iter_size,decay", [(1, 0.0), (1, 0.0005), (2, 0.0005), (3, 0.0)])
def test_op_gives_the_bits_of_the_torch_operations(n, iter_size, decay):
    w1, g1, v1 = blobs(n, n + iter_size)
    w2, g2, v2 = w1.clone(), g1.clone(), v1.clone()
    rate, momentum = 0.001 * 2, 0.9
    solver_mod._torch_update(w1, g1, v1, iter_size, decay, "L2", momentum, rate)
    with_threads = torch.get_num_threads()
    torch.set_num_threads(2)  # more than one chunk of at::parallel_for for the large sizes
    try:
        op(w2, g2, v2, 1.0 / iter_size if iter_size > 1 else 1.0, decay, momentum, rate)
    finally:
        torch.set_num_threads(with_threads)
    assert torch.equal(bits(w1), bits(w2))
    assert torch.equal(bits(v1), bits(v2))
    assert torch.equal(g2, g1)  # the gradient is read, not written
    # the update did something: a broken op that leaves w alone must not pass
    assert not torch.equal(w2, blobs(n, n + iter_size)[0]) or n == 0


def test_op_rejects_what_it_cannot_update():
    w, g, v = blobs(10, 0)
    with pytest.raises(ValueError, match="weight must be float32"):
        op(w.double(), g, v, 1.0, 0.0, 0.9, 0.1)
    with pytest.raises(ValueError, match="history has shape"):
        op(w, g, v[:5], 1.0, 0.0, 0.9, 0.1)
    with pytest.raises(ValueError, match="grad must be contiguous"):
        op(torch.zeros(4, 5), torch.zeros(5, 4).t(), torch.zeros(4, 5), 1.0, 0.0, 0.9, 0.1)
    with pytest.raises(ValueError, match="three different tensors"):
        op(w, g, w, 1.0, 0.0, 0.9, 0.1)


@pytest.mark.parametrize("iter_size", [1, 2])
def test_solver_parameters_and_history_equal_the_torch_path(workdir, monkeypatch, iter_size):  # noqa: F811
    fused_calls = []
    real = solver_mod._fused_update_applies

    def counting(*args):
        ok = real(*args)
        fused_calls.append(ok)
        return ok

    monkeypatch.setattr(solver_mod, "_fused_update_applies", counting)
    a = make_solver(workdir, iter_size=iter_size)
    a.step(6)
    monkeypatch.setattr(solver_mod, "_fused_update_applies", lambda *args: False)
    b = make_solver(workdir, iter_size=iter_size)
    b.step(6)
    if FAST_CPU:
        assert fused_calls and all(fused_calls)
    for name in ("frozen", "fc"):
        for pa, pb in zip(a.net.params[name], b.net.params[name]):
            assert torch.equal(bits(pa.data), bits(pb.data)), name
    assert set(a.history) == set(b.history) == {"fc/0", "fc/1"}
    for key in a.history:
        assert torch.equal(bits(a.history[key]), bits(b.history[key])), key
    assert a.last_losses() == b.last_losses()


def test_l1_decay_and_other_types_take_the_torch_path():
    w, g, v = blobs(8, 1)
    assert not solver_mod._fused_update_applies(w, g, v, 0.0005, "L1")
    assert not solver_mod._fused_update_applies(w.double(), g.double(), v.double(), 0.0005, "L2")
    assert not solver_mod._fused_update_applies(w, g, w, 0.0005, "L2")
    if FAST_CPU:
        assert solver_mod._fused_update_applies(w, g, v, 0.0005, "L2")
        assert solver_mod._fused_update_applies(w, g, v, 0.0, "L1")  # no decay: L1 is not used


def probe_in(env):
    code = ("import torch; from frcnn.caffe import solver; "
            "print(torch.backends.cpu.get_cpu_capability(), solver._fused_update_matches_torch())")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(not FAST_CPU, reason="needs torch's AVX2/AVX-512 kernels")
def test_the_check_finds_a_copy_that_rounds_otherwise():
    # torch's AVX2/AVX-512 kernels fuse the multiply-add; the portable copy rounds apart: refused
    assert probe_in({"FRCNN_CPU_NO_AVX2": "1"})[1] == "False"
    # torch's default kernels round apart too: the portable copy is then the same, and taken
    cap, ok = probe_in({"FRCNN_CPU_NO_AVX2": "1", "ATEN_CPU_CAPABILITY": "default"})
    assert (cap, ok) == ("DEFAULT", "True")
    # and the fused copy is refused beside them
    assert probe_in({"ATEN_CPU_CAPABILITY": "default"})[1] == "False"
    assert probe_in({"FRCNN_FUSED_SGD": "0"})[1] == "False"


@pytest.mark.cuda
@pytest.mark.parametrize("n", [1, 1000, 65536 * 256 + 5])  # the last: more elements than the grid's threads
@pytest.mark.parametrize("iter_size,decay", [(1, 0.0), (1, 0.0005), (2, 0.0005)])
def test_cuda_op_gives_the_bits_of_torchs_cuda_operations(n, iter_size, decay):
    w1, g1, v1 = (t.cuda() for t in blobs(n, n))
    w2, g2, v2 = w1.clone(), g1.clone(), v1.clone()
    solver_mod._torch_update(w1, g1, v1, iter_size, decay, "L2", 0.9, 0.002)
    op(w2, g2, v2, 1.0 / iter_size if iter_size > 1 else 1.0, decay, 0.9, 0.002)
    assert torch.equal(bits(w1), bits(w2))
    assert torch.equal(bits(v1), bits(v2))
    with pytest.raises(ValueError, match="grad is on cpu"):
        op(w2, g2.cpu(), v2, 1.0, 0.0, 0.9, 0.1)


@pytest.mark.cuda
def test_the_solver_takes_the_one_pass_update_on_the_gpu():
    assert solver_mod._fused_update_matches_torch("cuda:0")
