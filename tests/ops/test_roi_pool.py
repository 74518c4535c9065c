"""frcnn.ops.roi_pool / RoIPool against the plain-Python Caffe reference (roi_pool_reference)."""

import numpy as np
import pytest
import torch

from frcnn.ops import RoIPool, roi_pool
from tests.ops.roi_pool_reference import c_round, roi_pool_backward_reference, roi_pool_reference

DTYPES = [torch.float32, torch.float64]


def random_rois(rng: np.random.Generator, r: int, batch: int, img_h: float, img_w: float) -> np.ndarray:
    """RoIs in image pixels: inside, partly and wholly outside the map, x2 < x1, tiny, and
    corners on exact .5 after scaling (multiples of 8 for scale 1/16)."""
    x1 = rng.uniform(-0.3 * img_w, 1.1 * img_w, r)
    y1 = rng.uniform(-0.3 * img_h, 1.1 * img_h, r)
    x2 = x1 + rng.uniform(-20, 0.8 * img_w, r)
    y2 = y1 + rng.uniform(-20, 0.8 * img_h, r)
    rois = np.stack([rng.integers(0, batch, r), x1, y1, x2, y2], axis=1)
    half = rng.random(r) < 0.3  # snap to multiples of 8: scaled by 1/16 they end in .5 or .0
    rois[half, 1:] = np.round(rois[half, 1:] / 8) * 8
    return rois


def run_case(features: np.ndarray, rois: np.ndarray, ph: int, pw: int, scale: float, dtype):
    f = torch.tensor(features, dtype=dtype)
    r = torch.tensor(rois, dtype=dtype)
    out = roi_pool(f, r, ph, pw, scale)
    ref_out, _ = roi_pool_reference(f.numpy(), r.numpy(), ph, pw, scale)
    assert out.dtype == dtype and out.shape == ref_out.shape
    assert torch.equal(out, torch.from_numpy(ref_out)), "forward differs from the Caffe reference"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_rois_match_reference(dtype, seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2, 3, 9, 13))
    rois = random_rois(rng, 24, 2, img_h=9 * 16, img_w=13 * 16)
    run_case(features, rois, 3, 4, 1 / 16, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmax_and_backward_match_reference(dtype):
    rng = np.random.default_rng(5)
    features = rng.normal(size=(2, 2, 7, 8))
    rois = random_rois(rng, 16, 2, img_h=7 * 8, img_w=8 * 8)
    f = torch.tensor(features, dtype=dtype, requires_grad=True)
    r = torch.tensor(rois, dtype=dtype)
    out, argmax = torch.ops.frcnn.roi_pool_forward(f.detach(), r, 0.125, 3, 2)
    ref_out, ref_arg = roi_pool_reference(f.detach().numpy(), r.numpy(), 3, 2, 0.125)
    assert torch.equal(out, torch.from_numpy(ref_out))
    assert torch.equal(argmax.long(), torch.from_numpy(ref_arg))
    grad = torch.tensor(rng.normal(size=out.shape), dtype=dtype)
    roi_pool(f, r, 3, 2, 0.125).backward(grad)
    ref_grad = roi_pool_backward_reference(grad.numpy(), r.numpy(), ref_arg, f.shape)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(f.grad.double(), torch.from_numpy(ref_grad), rtol=tol, atol=tol)


def test_c_round_half_away_from_zero():
    # x1 = 8 at scale 1/16 is 0.5: Caffe rounds to 1 (torch.round / numpy would give 0)
    assert [c_round(v) for v in (0.5, 1.5, 2.5, -0.5, -1.5, 0.49999999)] == [1, 2, 3, -1, -2, 0]
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0, 8, 8, 8, 8]], dtype=torch.float32)  # one pixel at (1, 1)
    out = roi_pool(features, rois, 1, 1, 1 / 16)
    assert out.item() == features[0, 0, 1, 1].item() == 5.0


def test_golden_values_on_a_ramp():
    # 1 x 1 x 6 x 6 ramp, RoI covering the map, 2 x 2 bins: max of each quadrant
    features = torch.arange(36.0).reshape(1, 1, 6, 6)
    rois = torch.tensor([[0, 0, 0, 5, 5]], dtype=torch.float32)
    out = roi_pool(features, rois, 2, 2, 1.0)
    assert out.flatten().tolist() == [14.0, 17.0, 32.0, 35.0]
    # 4 x 4 bins on a 6-wide RoI overlap: bin_w = 1.5, col bins [0,2) [1,3) [3,5) [4,6)
    out = roi_pool(features, rois, 1, 4, 1.0)
    assert out.flatten().tolist() == [31.0, 32.0, 34.0, 35.0]


def test_empty_bins_are_zero_with_argmax_minus_one():
    features = torch.full((1, 2, 4, 4), -3.0)
    rois = torch.tensor([[0, 100, 100, 120, 120], [0, -50, -50, -40, -40]], dtype=torch.float32)
    out, argmax = torch.ops.frcnn.roi_pool_forward(features, rois, 1.0, 2, 2)
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(argmax, torch.full_like(argmax, -1))
    # more bins than pixels: with floor/ceil edges every bin of a 1-pixel RoI sees that pixel
    out, argmax = torch.ops.frcnn.roi_pool_forward(features, torch.tensor([[0.0, 1, 1, 1, 1]]), 1.0, 3, 3)
    assert torch.equal(out, torch.full_like(out, -3.0)) and torch.equal(argmax, torch.full_like(argmax, 5))


def test_malformed_roi_x2_lt_x1_is_one_pixel():
    features = torch.arange(25.0).reshape(1, 1, 5, 5)
    rois = torch.tensor([[0, 3, 2, 1, 0]], dtype=torch.float32)  # x2 < x1, y2 < y1
    out = roi_pool(features, rois, 2, 2, 1.0)
    ref, _ = roi_pool_reference(features.numpy(), rois.numpy(), 2, 2, 1.0)
    assert torch.equal(out, torch.from_numpy(ref))
    assert out.max().item() == features[0, 0, 2, 3].item()


def test_ties_first_maximum_wins():
    features = torch.ones(1, 1, 4, 4)
    _, argmax = torch.ops.frcnn.roi_pool_forward(features, torch.tensor([[0.0, 0, 0, 3, 3]]), 1.0, 2, 2)
    assert argmax.flatten().tolist() == [0, 2, 8, 10]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gradcheck_float64(seed):
    rng = np.random.default_rng(seed)
    # distinct values, spaced far beyond gradcheck's eps, so the argmax is stable
    values = rng.permutation(2 * 2 * 5 * 6).astype(np.float64) * 0.1
    features = torch.tensor(values.reshape(2, 2, 5, 6), requires_grad=True)
    rois = torch.tensor(random_rois(rng, 6, 2, img_h=5 * 4, img_w=6 * 4), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_pool(f, rois, 3, 2, 0.25), (features,))


def test_empty_rois_and_module():
    features = torch.randn(1, 4, 5, 5, requires_grad=True)
    out = roi_pool(features, torch.zeros(0, 5), 7, 7, 0.0625)
    assert out.shape == (0, 4, 7, 7)
    out.sum().backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    pool = RoIPool(2, 3, 0.5)
    rois = torch.tensor([[0.0, 0, 0, 8, 8]])
    assert torch.equal(pool(features, rois), roi_pool(features, rois, 2, 3, 0.5))
    assert "pooled_h=2, pooled_w=3, spatial_scale=0.5" in repr(pool)


@pytest.mark.parametrize("dtype", DTYPES)
def test_many_channels_nan_inf_ties_and_channels_last_match_reference(dtype):
    """The CPU kernel takes the max of every channel at once (on an NHWC copy): channel counts
    that are no multiple of a vector, windows of NaN and -inf (lowest value, argmax -1), NaN
    beside numbers (never the max), ties in some channels only, and a channels-last input."""
    rng = np.random.default_rng(21)
    features = rng.normal(size=(2, 37, 10, 11)).round(1)  # rounded: many equal maxima
    features[0, 3] = np.nan
    features[1, 4] = -np.inf
    features[0, 5, ::2] = np.nan
    features[1, 6, 2:5, 2:5] = 9.0
    rois = random_rois(rng, 30, 2, img_h=10 * 8, img_w=11 * 8)
    f = torch.tensor(features, dtype=dtype)
    r = torch.tensor(rois, dtype=dtype)
    ref_out, ref_arg = roi_pool_reference(f.numpy(), r.numpy(), 3, 3, 0.125)
    for form in (f, f.contiguous(memory_format=torch.channels_last)):
        out, argmax = torch.ops.frcnn.roi_pool_forward(form, r, 0.125, 3, 3)
        torch.testing.assert_close(out, torch.from_numpy(ref_out), rtol=0, atol=0, equal_nan=True)
        assert torch.equal(argmax.long(), torch.from_numpy(ref_arg))
    first, second = rois[:, 0] == 0, rois[:, 0] == 1
    assert (ref_arg[first, 3] == -1).all() and (ref_arg[second, 4] == -1).all()  # the cases were hit
    assert (ref_arg[second, 3] >= 0).any() and (ref_arg[first, 5] >= 0).any()


def test_the_default_copy_of_the_cpu_kernel_matches_the_reference_too():
    """The forward has an AVX2 copy, chosen at run time; FRCNN_CPU_NO_AVX2=1 runs the tests of
    this file that check it against the reference on the default (SSE2) copy, in a new process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "FRCNN_CPU_NO_AVX2": "1"}
    tests = "test_random_rois_match_reference or test_many_channels or test_argmax_and_backward or test_ties"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", tests],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_same_result_on_one_and_many_threads():
    rng = np.random.default_rng(9)
    features = torch.tensor(rng.normal(size=(1, 16, 12, 12)))
    rois = torch.tensor(random_rois(rng, 40, 1, img_h=96, img_w=96))
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = roi_pool(features, rois, 4, 4, 0.125)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(roi_pool(features, rois, 4, 4, 0.125), one)


def test_bad_input_errors_name_the_argument():
    f = torch.randn(2, 3, 5, 5)
    ok = torch.tensor([[0.0, 0, 0, 4, 4]])
    with pytest.raises(ValueError, match=r"rois must have shape \(R, 5\)"):
        roi_pool(f, torch.zeros(3, 4), 2, 2, 1.0)
    with pytest.raises(ValueError, match="features must have shape"):
        roi_pool(torch.randn(3, 5, 5), ok, 2, 2, 1.0)
    with pytest.raises(TypeError, match="features"):
        roi_pool(f.int(), ok, 2, 2, 1.0)
    with pytest.raises(TypeError, match="differ in dtype"):
        roi_pool(f, ok.double(), 2, 2, 1.0)
    with pytest.raises(ValueError, match="pooled_h"):
        roi_pool(f, ok, 0, 2, 1.0)
    with pytest.raises(ValueError, match="spatial_scale"):
        roi_pool(f, ok, 2, 2, 0.0)
    with pytest.raises(ValueError, match="features is on meta"):
        roi_pool(f.to("meta"), ok, 2, 2, 1.0)
    for bad, what in (([2.0, 0, 0, 4, 4], "batch index"), ([-1.0, 0, 0, 4, 4], "batch index"),
                      ([0.5, 0, 0, 4, 4], "batch index"), ([0.0, float("nan"), 0, 4, 4], "NaN or inf"),
                      ([0.0, 0, 0, float("inf"), 4], "NaN or inf")):
        rois = torch.cat([ok, torch.tensor([bad])])
        with pytest.raises(ValueError, match=rf"rois\[1\].*{what}"):
            roi_pool(f, rois, 2, 2, 1.0)
    with pytest.raises(ValueError, match="pooled_w"):
        RoIPool(2, -1, 1.0)


def test_raw_forward_op_checks_its_inputs():
    # frcnn.ops.roi_pool leaves shapes, dtypes and values to the op: a raw caller gets the
    # same errors, naming the argument
    f = torch.randn(2, 3, 5, 5)
    ok = torch.tensor([[0.0, 0, 0, 4, 4]])
    op = torch.ops.frcnn.roi_pool_forward
    with pytest.raises(ValueError, match=r"rois must have shape \(R, 5\)"):
        op(f, torch.zeros(3, 4), 1.0, 2, 2)
    with pytest.raises(ValueError, match=r"features must have shape \(N, C, H, W\)"):
        op(f[0], ok, 1.0, 2, 2)
    with pytest.raises(TypeError, match="features must be float32 or float64, got Half"):
        op(f.half(), ok.half(), 1.0, 2, 2)
    with pytest.raises(TypeError, match="differ in dtype"):
        op(f.double(), ok, 1.0, 2, 2)
    with pytest.raises(ValueError, match="pooled_w must be > 0, got -3"):
        op(f, ok, 1.0, 2, -3)
    with pytest.raises(ValueError, match="spatial_scale must be a finite number > 0"):
        op(f, ok, float("inf"), 2, 2)
    with pytest.raises(ValueError, match=r"roi_pool_forward: rois\[0\] has a batch index"):
        op(f, torch.tensor([[2.0, 0, 0, 4, 4]]), 1.0, 2, 2)
    with pytest.raises(ValueError, match="pooled_h must be a positive int"):
        roi_pool(f, ok, 2.0, 2, 1.0)  # the Python face checks the parameters' types
    with pytest.raises(TypeError, match="spatial_scale must be a number"):
        roi_pool(f, ok, 2, 2, "1")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    rng = np.random.default_rng(11)
    features = torch.tensor(rng.normal(size=(2, 8, 19, 31)), dtype=dtype)
    rois = torch.tensor(random_rois(rng, 200, 2, img_h=19 * 16, img_w=31 * 16), dtype=dtype)
    cpu_out, cpu_arg = torch.ops.frcnn.roi_pool_forward(features, rois, 1 / 16, 7, 7)
    gpu_out, gpu_arg = torch.ops.frcnn.roi_pool_forward(features.cuda(), rois.cuda(), 1 / 16, 7, 7)
    assert torch.equal(gpu_out.cpu(), cpu_out) and torch.equal(gpu_arg.cpu(), cpu_arg)
    grad = torch.tensor(rng.normal(size=cpu_out.shape), dtype=dtype)
    f_cpu = features.clone().requires_grad_()
    f_gpu = features.cuda().requires_grad_()
    roi_pool(f_cpu, rois, 7, 7, 1 / 16).backward(grad)
    roi_pool(f_gpu, rois.cuda(), 7, 7, 1 / 16).backward(grad.cuda())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(f_gpu.grad.cpu(), f_cpu.grad, rtol=tol, atol=tol)


@pytest.mark.cuda
def test_cuda_reference_gradcheck_and_errors():
    rng = np.random.default_rng(12)
    features = torch.tensor(rng.normal(size=(1, 3, 6, 7)))
    rois = torch.tensor(random_rois(rng, 10, 1, img_h=6 * 8, img_w=7 * 8))
    ref, _ = roi_pool_reference(features.numpy(), rois.numpy(), 2, 3, 0.125)
    assert torch.equal(roi_pool(features.cuda(), rois.cuda(), 2, 3, 0.125).cpu(), torch.from_numpy(ref))
    values = torch.tensor(rng.permutation(42).astype(np.float64).reshape(1, 1, 6, 7) * 0.1)
    f = values.cuda().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: roi_pool(x, rois[:, :].cuda(), 2, 3, 0.125), (f,))
    bad = rois.clone()
    bad[3, 0] = 1.0
    with pytest.raises(ValueError, match=r"rois\[3\].*batch index"):
        roi_pool(features.cuda(), bad.cuda(), 2, 3, 0.125)
    bad[3, 0] = 0.0
    bad[5, 2] = float("nan")
    with pytest.raises(ValueError, match=r"rois\[5\].*NaN or inf"):
        roi_pool(features.cuda(), bad.cuda(), 2, 3, 0.125)
    with pytest.raises(ValueError, match="features is on"):
        roi_pool(features.cuda(), rois, 2, 3, 0.125)
    assert roi_pool(features.cuda(), rois[:0].cuda(), 2, 3, 0.125).shape == (0, 3, 2, 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_features_pool_in_float32(dtype):
    rng = np.random.default_rng(13)
    features = torch.tensor(rng.normal(size=(1, 3, 6, 6)), dtype=dtype, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 40, 40], [0, 8, 8, 24, 40]], dtype=dtype)
    out = roi_pool(features, rois, 2, 2, 1 / 8)
    assert out.dtype == dtype
    expected = roi_pool(features.detach().float(), rois.float(), 2, 2, 1 / 8)
    assert torch.equal(out.float(), expected)  # max of values already in `dtype`: exact
    out.float().sum().backward()
    assert features.grad.dtype == dtype and features.grad.sum().item() == 2 * 3 * 4
