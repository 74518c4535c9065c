"""RoI pooling backward: the raw ops check their inputs (and never crash), and the deterministic
gather backward equals the scatter backward.

torch.ops.frcnn.roi_pool_backward scatters through the argmax (CPU: fixed order; CUDA:
atomicAdd); torch.ops.frcnn.roi_pool_backward_gather lets each input cell gather its
gradients in the same order without atomics. On the CPU both are run here and must agree bit
for bit; the CUDA tests (marked) check the GPU kernels the same way.
"""

import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import frcnn
from frcnn.ops import RoIPool, roi_pool
from frcnn.ops._native import native
from tests.ops.roi_pool_reference import roi_pool_backward_reference, roi_pool_reference
from tests.ops.test_roi_pool import random_rois

DTYPES = [torch.float32, torch.float64]
native()  # registers torch.ops.frcnn.*


def case(seed: int, dtype, n=2, c=3, h=9, w=13, r=40, ph=3, pw=4, scale=1 / 16, device="cpu"):
    """features, rois, forward output and argmax, and a random output gradient."""
    rng = np.random.default_rng(seed)
    features = torch.tensor(rng.normal(size=(n, c, h, w)), dtype=dtype, device=device)
    rois = torch.tensor(random_rois(rng, r, n, img_h=h / scale, img_w=w / scale), dtype=dtype, device=device)
    out, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, scale, ph, pw)
    grad = torch.tensor(rng.normal(size=tuple(out.shape)), dtype=dtype, device=device)
    return features, rois, out, argmax, grad


def scatter(grad, rois, argmax, shape):
    return torch.ops.frcnn.roi_pool_backward(grad, rois, argmax, *shape)


def gather(grad, rois, argmax, scale, shape):
    return torch.ops.frcnn.roi_pool_backward_gather(grad, rois, argmax, scale, *shape)


# ------------------------------------------------------------------ input checks (CPU)


@pytest.mark.parametrize("op", ["scatter", "gather"])
def test_argmax_outside_the_map_raises(op):
    features, rois, _, argmax, grad = case(0, torch.float32, r=6)
    n, c, h, w = features.shape

    def run(a):
        if op == "scatter":
            return scatter(grad, rois, a, features.shape)
        return gather(grad, rois, a, 1 / 16, features.shape)

    for value in (h * w, h * w + 1000, 2**31 - 1, -2, -(2**31)):
        bad = argmax.clone()
        bad[4, 1, 2, 3] = value
        with pytest.raises(ValueError, match=rf"argmax\[4, 1, 2, 3\] = {value} is outside the feature map"):
            run(bad)
    # -1 (an empty bin) is allowed everywhere and contributes nothing
    assert torch.equal(run(torch.full_like(argmax, -1)), torch.zeros(n, c, h, w))


@pytest.mark.parametrize("op", ["scatter", "gather"])
def test_shapes_dtypes_and_batch_indices_are_checked(op):
    features, rois, _, argmax, grad = case(1, torch.float64, r=5)
    n, c, h, w = features.shape
    name = "roi_pool_backward" if op == "scatter" else "roi_pool_backward_gather"

    def run(g, r, a, shape=(n, c, h, w)):
        if op == "scatter":
            return scatter(g, r, a, shape)
        return gather(g, r, a, 1 / 16, shape)

    with pytest.raises(ValueError, match=rf"{name}: grad must have shape \(R, C, pooled_h, pooled_w\) with C"):
        run(grad, rois, argmax, (n, c + 1, h, w))
    with pytest.raises(ValueError, match="grad must have shape"):
        run(grad[0], rois, argmax[0])
    with pytest.raises(TypeError, match="grad must be float32 or float64"):
        run(grad.int(), rois, argmax)
    with pytest.raises(ValueError, match=r"rois must have shape \(R, 5\) with R = grad.size\(0\) = 5"):
        run(grad, rois[:4], argmax)
    with pytest.raises(TypeError, match="argmax must be an int32 tensor"):
        run(grad, rois, argmax.long())
    with pytest.raises(ValueError, match="argmax must have grad's shape"):
        run(grad, rois, argmax[:, :, :1])
    with pytest.raises(ValueError, match="must be >= 0"):
        run(grad, rois, argmax, (n, c, -1, w))
    for value, what in ((float(n), "batch index"), (-1.0, "batch index"), (0.5, "batch index"),
                        (float("nan"), "NaN or inf")):
        bad = rois.clone()
        bad[3, 0 if what == "batch index" else 2] = value
        with pytest.raises(ValueError, match=rf"{name}: rois\[3\] .*{what}"):
            run(grad, bad, argmax)


def test_gather_rejects_an_argmax_outside_its_bin():
    # the gather reads only the bins that contain a cell, so it insists that the argmax came
    # from the forward with these rois and this spatial_scale
    features = torch.arange(36.0).reshape(1, 1, 6, 6)
    rois = torch.tensor([[0.0, 0, 0, 5, 5]])
    _, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, 1.0, 2, 2)
    grad = torch.ones(1, 1, 2, 2)
    assert argmax.flatten().tolist() == [14, 17, 32, 35]
    bad = argmax.clone()
    bad[0, 0, 0, 0] = 35  # in the map, but in bin (1, 1)
    with pytest.raises(ValueError, match=r"argmax\[0, 0, 0, 0\] = 35 is not inside the window of its bin"):
        gather(grad, rois, bad, 1.0, features.shape)
    with pytest.raises(ValueError, match="spatial_scale must be a finite number > 0"):
        gather(grad, rois, argmax, 0.0, features.shape)
    scattered = scatter(grad, rois, bad, features.shape)  # the scatter cannot tell, and adds it
    assert scattered.flatten()[35].item() == 2.0


SUBPROCESS_CASES = textwrap.dedent(
    """
    import sys
    import torch
    from frcnn.ops._native import native

    native()  # registers torch.ops.frcnn.*

    device = sys.argv[1]
    f = torch.randn(2, 3, 5, 5, device=device)
    rois = torch.tensor([[0.0, 0, 0, 4, 4], [1.0, 1, 1, 3, 3]], device=device)
    out, am = torch.ops.frcnn.roi_pool_forward(f, rois, 1.0, 2, 2)
    g = torch.ones_like(out)
    cases = {
        "argmax_too_large": (rois, 10**9), "argmax_negative": (rois, -12345),
        "argmax_min_int": (rois, -2**31), "batch_index": (torch.tensor([[7.0, 0, 0, 4, 4], [1.0, 1, 1, 3, 3]], device=device), None),
    }
    for name, (r, value) in cases.items():
        a = am.clone()
        if value is not None:
            a[1, 2, 1, 0] = value
        for op in ("scatter", "gather"):
            try:
                if op == "scatter":
                    torch.ops.frcnn.roi_pool_backward(g, r, a, 2, 3, 5, 5)
                else:
                    torch.ops.frcnn.roi_pool_backward_gather(g, r, a, 1.0, 2, 3, 5, 5)
                print(name, op, "NO ERROR", flush=True)
            except ValueError as e:
                print(name, op, "ValueError", str(e).splitlines()[0], flush=True)
    if device == "cuda":
        torch.cuda.synchronize()  # a kernel that wrote out of bounds would fail here
    print("done", flush=True)
    """
)


def run_cases_in_subprocess(device: str) -> str:
    """Run the bad-input cases in a fresh interpreter: a crash (SIGSEGV, illegal address) shows
    as a failed run instead of killing pytest."""
    lib = os.path.dirname(os.path.dirname(os.path.abspath(frcnn.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([lib, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", SUBPROCESS_CASES, device], check=False, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, f"crashed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def check_subprocess_output(out: str) -> None:
    lines = out.splitlines()
    assert lines[-1] == "done"
    results = {tuple(line.split()[:2]): line for line in lines[:-1]}
    assert len(results) == 8
    for (name, op), line in results.items():
        assert " ValueError " in line, line
        if name == "batch_index":
            assert r"rois[0] has a batch index" in line, line
        else:
            assert "argmax[1, 2, 1, 0] = " in line and "is outside the feature map" in line, line


def test_bad_input_raises_in_a_subprocess_cpu():
    check_subprocess_output(run_cases_in_subprocess("cpu"))


@pytest.mark.cuda
def test_bad_input_raises_in_a_subprocess_cuda():
    check_subprocess_output(run_cases_in_subprocess("cuda"))


# ------------------------------------------------------------------ gather == scatter (CPU)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_gather_equals_scatter_bitwise(dtype, seed):
    # random RoIs (inside, across and outside the map, x2 < x1, corners on .5): the gather sums
    # each cell's gradients in the scatter's order, so the results are identical, float32 too
    features, rois, _, argmax, grad = case(seed, dtype, r=60)
    s = scatter(grad, rois, argmax, features.shape)
    g = gather(grad, rois, argmax, 1 / 16, features.shape)
    assert g.dtype == dtype and torch.equal(g, s)
    ref = roi_pool_backward_reference(grad.numpy(), rois.numpy(), argmax.numpy(), tuple(features.shape))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(g.double(), torch.from_numpy(ref), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pooled", [(1, 1), (2, 3), (7, 7), (13, 5)])
def test_gather_bins_are_exact_for_every_bin_size(dtype, pooled):
    # more bins than pixels (overlapping bins, every cell in several bins), one bin, tiny and
    # map-sized RoIs, several batches, ties in the features (first maximum wins)
    ph, pw = pooled
    rng = np.random.default_rng(ph * 31 + pw)
    features = torch.tensor(rng.integers(0, 4, size=(3, 2, 7, 11)), dtype=dtype)
    rois = torch.tensor(random_rois(rng, 50, 3, img_h=7 * 4, img_w=11 * 4), dtype=dtype)
    rois[:5, 1:] = torch.tensor([[0, 0, 40, 24], [4, 4, 4, 4], [0, 0, 0, 0], [-8, -8, 60, 60], [40, 24, 41, 25]],
                                dtype=dtype)
    out, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, 0.25, ph, pw)
    grad = torch.tensor(rng.normal(size=tuple(out.shape)), dtype=dtype)
    s = scatter(grad, rois, argmax, features.shape)
    assert torch.equal(gather(grad, rois, argmax, 0.25, features.shape), s)
    _, ref_arg = roi_pool_reference(features.numpy(), rois.numpy(), ph, pw, 0.25)
    assert torch.equal(argmax.long(), torch.from_numpy(ref_arg))


def test_gather_empty_inputs():
    features, rois, _, argmax, grad = case(2, torch.float32, r=4)
    shape = features.shape
    assert torch.equal(gather(grad[:0], rois[:0], argmax[:0], 1 / 16, shape), torch.zeros(shape))
    assert gather(grad[:, :0], rois, argmax[:, :0], 1 / 16, (2, 0, 9, 13)).shape == (2, 0, 9, 13)


def test_gather_same_result_on_one_and_many_threads():
    features, rois, _, argmax, grad = case(3, torch.float32, c=8, r=80)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gather(grad, rois, argmax, 1 / 16, features.shape)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(gather(grad, rois, argmax, 1 / 16, features.shape), one)


# ------------------------------------------------------------------ the deterministic option


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_option_on_cpu_gives_the_same_gradient(dtype):
    # the CPU backward is deterministic by construction: the option changes nothing there
    features, rois, _, _, grad = case(4, dtype, r=30)
    grads = []
    for det in (None, False, True):
        f = features.clone().requires_grad_()
        roi_pool(f, rois, 3, 4, 1 / 16, deterministic=det).backward(grad)
        grads.append(f.grad)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])
    with pytest.raises(TypeError, match="deterministic must be True, False or None"):
        roi_pool(features, rois, 3, 4, 1 / 16, deterministic="yes")
    pool = RoIPool(3, 4, 1 / 16, deterministic=True)
    assert "deterministic=True" in repr(pool)
    assert torch.equal(pool(features, rois), roi_pool(features, rois, 3, 4, 1 / 16))


def run_backward(features, rois, grad, deterministic=None):
    f = features.clone().requires_grad_()
    roi_pool(f, rois, grad.shape[2], grad.shape[3], 1 / 16, deterministic=deterministic).backward(grad)
    return f.grad


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_deterministic_backward_is_bit_identical_and_equals_cpu(dtype):
    # VGG16-like conv5 map and 128 overlapping RoIs in 2 images
    features, rois, _, _, grad = case(5, dtype, n=2, c=64, h=38, w=50, r=128, ph=7, pw=7)
    gpu = [run_backward(features.cuda(), rois.cuda(), grad.cuda(), True) for _ in range(3)]
    assert all(torch.equal(g, gpu[0]) for g in gpu[1:]), "deterministic backward differs between runs"
    # same order of summation as the CPU scatter: the same bits
    assert torch.equal(gpu[0].cpu(), run_backward(features, rois, grad))
    # the raw gather op on the GPU equals the CPU gather
    _, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, 1 / 16, 7, 7)
    g_cuda = gather(grad.cuda(), rois.cuda(), argmax.cuda(), 1 / 16, features.shape)
    assert torch.equal(g_cuda.cpu(), gather(grad, rois, argmax, 1 / 16, features.shape))


@pytest.mark.cuda
def test_cuda_deterministic_equals_atomic_exactly_in_float64():
    # gradients that are multiples of 1/8: every partial sum is exact, so any summation order
    # (the atomic one included) gives the same bits
    features, rois, out, _, _ = case(6, torch.float64, n=2, c=32, h=30, w=40, r=128, ph=7, pw=7)
    rng = np.random.default_rng(6)
    grad = torch.tensor(rng.integers(-64, 64, size=tuple(out.shape)) / 8.0)
    f, r, g = features.cuda(), rois.cuda(), grad.cuda()
    assert torch.equal(run_backward(f, r, g, True), run_backward(f, r, g, False))


@pytest.mark.cuda
def test_cuda_deterministic_equals_atomic_in_float32_within_rounding():
    # random float32 gradients: the atomic sums run in another order, so they may differ in
    # the last bits; relative tolerance 1e-5 (a cell sums at most a few hundred terms)
    features, rois, _, _, grad = case(7, torch.float32, n=2, c=64, h=38, w=50, r=128, ph=7, pw=7)
    f, r, g = features.cuda(), rois.cuda(), grad.cuda()
    torch.testing.assert_close(run_backward(f, r, g, True), run_backward(f, r, g, False), rtol=1e-5, atol=1e-5)


def test_none_follows_torch_deterministic_algorithms(monkeypatch):
    module = importlib.import_module("frcnn.ops.roi_pool")  # the package's roi_pool is the function
    seen = []
    apply = module._RoIPoolFunction.apply
    monkeypatch.setattr(module._RoIPoolFunction, "apply", lambda *args: seen.append(args[-1]) or apply(*args))
    features, rois, _, _, _ = case(8, torch.float32, r=4)
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        roi_pool(features, rois, 3, 4, 1 / 16)
        roi_pool(features, rois, 3, 4, 1 / 16, deterministic=False)  # an explicit choice wins
    finally:
        torch.use_deterministic_algorithms(was)
    roi_pool(features, rois, 3, 4, 1 / 16)
    RoIPool(3, 4, 1 / 16, deterministic=True)(features, rois)
    assert seen == [True, False, was, True]


@pytest.mark.cuda
def test_cuda_torch_deterministic_algorithms_selects_the_gather():
    features, rois, _, _, grad = case(8, torch.float32, c=16, r=64)
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        det = run_backward(features.cuda(), rois.cuda(), grad.cuda())
    finally:
        torch.use_deterministic_algorithms(was)
    assert torch.equal(det.cpu(), run_backward(features, rois, grad))


@pytest.mark.cuda
def test_cuda_backward_checks_like_cpu():
    features, rois, _, argmax, grad = case(9, torch.float32, r=8, device="cuda")
    bad = argmax.clone()
    bad[2, 0, 1, 1] = 10**6
    with pytest.raises(ValueError, match=r"roi_pool_backward: argmax\[2, 0, 1, 1\] = 1000000 is outside"):
        scatter(grad, rois, bad, features.shape)
    with pytest.raises(ValueError, match=r"roi_pool_backward_gather: argmax\[2, 0, 1, 1\] = 1000000 is outside"):
        gather(grad, rois, bad, 1 / 16, features.shape)
    bad_rois = rois.clone()
    bad_rois[5, 0] = 2.0
    for run in (lambda: scatter(grad, bad_rois, argmax, features.shape),
                lambda: gather(grad, bad_rois, argmax, 1 / 16, features.shape)):
        with pytest.raises(ValueError, match=r"rois\[5\] has a batch index"):
            run()
    with pytest.raises(ValueError, match="must be on one device"):
        scatter(grad, rois.cpu(), argmax, features.shape)
    # an argmax in the map but outside its bin: only the gather, which knows the bins, can tell
    f = torch.arange(36.0, device="cuda").reshape(1, 1, 6, 6)
    r = torch.tensor([[0.0, 0, 0, 5, 5]], device="cuda")
    _, a = torch.ops.frcnn.roi_pool_forward(f, r, 1.0, 2, 2)
    a[0, 0, 0, 0] = 35
    with pytest.raises(ValueError, match=r"argmax\[0, 0, 0, 0\] = 35 is not inside the window of its bin"):
        gather(torch.ones(1, 1, 2, 2, device="cuda"), r, a, 1.0, f.shape)


@pytest.mark.cuda
@pytest.mark.slow
def test_cuda_index_past_the_int32_wrap_window():
    # 2^31 - 4096 outputs: the old int32 grid-stride counter wrapped negative on its last step
    # (above 2^31 - 65536 * 256) and wrote out of bounds. float64 so the counts below are exact.
    r_count = (2**31 - 1000) // 4096
    features = torch.randn(1, 1, 8, 8, dtype=torch.float64, device="cuda")
    rng = np.random.default_rng(10)
    rois = torch.tensor(random_rois(rng, 64, 1, img_h=8, img_w=8), dtype=torch.float64, device="cuda")
    rois = rois.repeat(r_count // 64 + 1, 1)[:r_count]
    out, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, 1.0, 64, 64)
    assert out.numel() == r_count * 4096 > 2**31 - 65536 * 256
    ref_out, ref_arg = torch.ops.frcnn.roi_pool_forward(features.cpu(), rois[-64:].cpu(), 1.0, 64, 64)
    assert torch.equal(out[-64:].cpu(), ref_out) and torch.equal(argmax[-64:].cpu(), ref_arg)
    del out
    grad = torch.ones(argmax.shape, dtype=torch.float64, device="cuda")
    counts = torch.bincount(argmax[argmax >= 0].long(), minlength=64).double().reshape(1, 1, 8, 8)
    assert torch.equal(scatter(grad, rois, argmax, features.shape), counts)
