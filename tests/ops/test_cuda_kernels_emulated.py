"""The CUDA kernels, run on the CPU under the host emulation of tests/ops/cuda_emulation.

The device code of csrc/nms/nms_kernels.cuh and csrc/roi_pool/roi_pool_kernels.cuh runs
unchanged, launched as its host wrappers launch it (same shapes, buffers, int32/int64 choice),
with the threads of a block in a shuffled order and barriers, shuffles and buffer bounds
checked. Its results must equal the CPU ops' exactly (the atomic backward in float32: to
rounding), on random and adversarial inputs. The first tests show that the emulator catches
the bugs it is meant to catch, so that its silence on the real kernels means something.
This runs wherever a C++ compiler is; the same kernels on a real GPU are in the tests marked
cuda (tests/ops/test_nms.py, test_roi_pool.py, test_roi_pool_backward.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np
import pytest
import torch

from frcnn.ops._native import native
from tests.boxes.nms_reference import (
    degenerate_dets,
    integer_dets,
    proposal_dets,
    py_cpu_nms,
    random_dets,
    threshold_dets,
)
from tests.ops import cuda_emulation
from tests.ops.test_roi_pool import random_rois

INT_MAX = 2**31 - 1
NO_PROBLEM = np.iinfo(np.uint64).max  # the backward flags' "nothing found" (-1 as int64)


@pytest.fixture(scope="module")
def emu(tmp_path_factory) -> cuda_emulation.Runner:
    native()  # frcnn._C registers torch.ops.frcnn.*, the CPU ops compared with
    if cuda_emulation.compiler() is None:
        pytest.skip("no C++ compiler (g++ or $CXX) to build the CUDA emulation runner")
    return cuda_emulation.Runner(cuda_emulation.build(tmp_path_factory.mktemp("cuda_emulation")))


# ---- the emulator catches planted bugs -----------------------------------------------------

def selftest(emu, name, dtype=np.int32, **params):
    p = {"threads": 64, "blocks": 3, "len": 1, "seed": 0}
    p.update(params)
    return emu.run(f"selftest_{name}", p, {}, {"out": dtype})["out"]


def test_emulator_exposes_a_missing_barrier_by_the_shuffled_thread_order(emu):
    # thread 0 writes a shared value the others read without a __syncthreads in between: in a
    # fixed thread order every reader would see it; in the shuffled order many do not
    out = selftest(emu, "missing_barrier").reshape(3, 64)
    expected = 7 + np.arange(3)[:, None]
    assert (out != expected).sum() > 10
    assert (out == expected).sum() > 10


def test_emulator_reports_divergent_barriers_and_shuffles(emu):
    with pytest.raises(cuda_emulation.EmulationError, match="after 32 thread.s. of the block exited"):
        selftest(emu, "divergent_barrier")
    with pytest.raises(cuda_emulation.EmulationError, match="wait at different __syncthreads"):
        selftest(emu, "split_barrier")
    with pytest.raises(cuda_emulation.EmulationError, match="not the warp's live lanes"):
        selftest(emu, "partial_shuffle", threads=32, blocks=1)


def test_emulator_shuffles_move_the_source_lanes_values(emu):
    out = selftest(emu, "shuffle_up", dtype=np.int64, threads=64, blocks=1)
    lane = np.arange(64) % 32
    assert out.tolist() == np.where(lane >= 1, 1000 + np.arange(64) - 1, 1000 + np.arange(64)).tolist()


def test_emulator_faults_on_a_write_past_the_end(emu):
    with pytest.raises(cuda_emulation.EmulationError, match="SIGSEGV"):
        selftest(emu, "off_by_one", len=100)  # 400 bytes: the next float is on the guard page
    with pytest.raises(cuda_emulation.EmulationError, match="past the end of a buffer of 404 bytes"):
        selftest(emu, "off_by_one", len=101)  # 404 bytes: the next float is alignment slack


# ---- NMS -----------------------------------------------------------------------------------

def emu_nms(emu, dets: np.ndarray, thresh: float, seed=0, reduce_threads=1024, removed="auto"):
    dtype = dets.dtype
    out = emu.run("nms", {"n": len(dets), "dtype": "f32" if dtype == np.float32 else "f64",
                          "threshold": repr(float(thresh)), "seed": seed,
                          "reduce_threads": reduce_threads, "removed": removed},
                  {"boxes": dets[:, :4].copy(), "scores": dets[:, 4].copy()},
                  {"keep": np.int64, "info": np.int64})
    return out["keep"].tolist(), out["info"]


def cpu_nms(dets: np.ndarray, thresh: float) -> list[int]:
    t = torch.from_numpy(dets)
    return torch.ops.frcnn.nms(t[:, :4].contiguous(), t[:, 4].contiguous(), float(thresh)).tolist()


def check_nms(emu, dets, thresh, **kw):
    keep, info = emu_nms(emu, dets, thresh, **kw)
    assert info[1] == 0
    assert info[0] == len(keep)
    expected = cpu_nms(dets, thresh)
    assert keep == expected
    assert expected == py_cpu_nms(dets, thresh)
    return keep


# reduce_threads 64 and 32 run the production kernel's template with fewer threads, so that
# more 64-box words than threads (the OR sweep's and the compaction's loops) are reached at
# sizes the emulation runs quickly; "global" puts `removed` in global memory, as the wrapper
# does past 5,120 words
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 129, 700, 2100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", [(1024, "auto"), (64, "global"), (32, "shared")])
def test_nms_equals_the_cpu_op_on_random_clustered_boxes(emu, n, dtype, variant):
    rng = np.random.default_rng(n)
    dets = random_dets(rng, n, dtype, spread=40 + n, clusters=max(1, n // 20))
    threads, removed = variant
    for thresh in (0.3, 0.7):
        check_nms(emu, dets, thresh, reduce_threads=threads, removed=removed, seed=n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms_ties_exact_thresholds_and_degenerate_boxes(emu, dtype):
    dets, thresh = threshold_dets()
    assert check_nms(emu, dets.astype(dtype), thresh) == [0, 1, 2, 4, 5]
    rng = np.random.default_rng(7)
    for n in (50, 333):  # integer boxes: many IoUs exactly 0.5 / 0.25, tied scores
        d = integer_dets(rng, n, dtype)
        for thresh in (0.25, 0.5):
            check_nms(emu, d, thresh, reduce_threads=32)
    check_nms(emu, degenerate_dets().astype(dtype), 0.5)
    same = np.tile(np.array([[5, 5, 20, 20, 0.5]], dtype), (130, 1))  # all identical: keep one
    assert check_nms(emu, same, 0.5) == [0]
    zeros = np.array([[0, 0, 9, 9, 0.0], [0, 0, 9, 9, -0.0], [50, 50, 59, 59, -0.0],
                      [50, 50, 59, 59, 0.0]], dtype)  # -0.0 ties +0.0: lower index first
    assert check_nms(emu, zeros, 0.5) == [0, 2]


def test_nms_on_proposal_sized_inputs_under_several_schedules(emu):
    dets = proposal_dets(np.random.default_rng(3), 3000, np.float32)
    expected = cpu_nms(dets, 0.7)
    for seed in (1, 2):
        keep, info = emu_nms(emu, dets, 0.7, seed=seed)
        assert keep == expected and info[1] == 0
    # the proposal layer's training size (RPN_PRE_NMS_TOP_N 12000): 188 words, 17,766 tiles
    dets = proposal_dets(np.random.default_rng(12), 12000, np.float32)
    keep, info = emu_nms(emu, dets, 0.7, seed=3)
    assert keep == cpu_nms(dets, 0.7) and info[1] == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nms_flags_non_finite_boxes_and_scores(emu, bad):
    dets = random_dets(np.random.default_rng(0), 100, np.float32)
    for col in (2, 4):
        d = dets.copy()
        d[37, col] = bad
        _, info = emu_nms(emu, d, 0.5)
        assert info[1] == 1


# ---- RoI pooling ---------------------------------------------------------------------------

def roi_case(seed, dtype, batch=2, channels=5, height=14, width=19, rois=23, scale=1 / 16,
             ties=False):
    rng = np.random.default_rng(seed)
    if ties:  # few levels: many equal maxima in a window (the first must win)
        features = rng.integers(-2, 3, (batch, channels, height, width)).astype(dtype)
    else:
        features = rng.standard_normal((batch, channels, height, width)).astype(dtype)
    r = random_rois(rng, rois, batch, height / scale, width / scale).astype(dtype)
    return features, r


def emu_forward(emu, features, rois, ph, pw, scale, index="auto", seed=0):
    n, c, h, w = features.shape
    dtype = "f32" if features.dtype == np.float32 else "f64"
    out = emu.run("roi_forward", {"dtype": dtype, "batch": n, "channels": c, "height": h, "width": w,
                                  "rois": len(rois), "pooled_h": ph, "pooled_w": pw, "scale": repr(scale),
                                  "seed": seed, "index": index},
                  {"features": features, "rois": rois},
                  {"output": features.dtype, "argmax": np.int32, "bad_row": np.int32})
    shape = (len(rois), c, ph, pw)
    return out["output"].reshape(shape), out["argmax"].reshape(shape), int(out["bad_row"][0])


def cpu_forward(features, rois, ph, pw, scale):
    out, arg = torch.ops.frcnn.roi_pool_forward(torch.from_numpy(features), torch.from_numpy(rois),
                                                scale, ph, pw)
    return out.numpy(), arg.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", ["auto", "int64"])
@pytest.mark.parametrize("seed", [0, 1])
def test_roi_forward_equals_the_cpu_op(emu, dtype, index, seed):
    for ties, (ph, pw), scale in [(False, (7, 7), 1 / 16), (True, (3, 2), 1 / 8), (True, (6, 6), 0.5)]:
        features, rois = roi_case(seed, dtype, scale=scale, ties=ties)
        out, arg, bad = emu_forward(emu, features, rois, ph, pw, scale, index=index, seed=seed)
        ref_out, ref_arg = cpu_forward(features, rois, ph, pw, scale)
        assert bad == INT_MAX
        assert np.array_equal(arg, ref_arg)
        assert np.array_equal(out, ref_out)
        assert (arg == -1).any() and (arg >= 0).any()  # empty bins and real ones both reached


def test_roi_forward_skips_and_reports_the_first_bad_row(emu):
    features, rois = roi_case(5, np.float32)
    bad_rois = rois.copy()
    bad_rois[9, 3] = np.nan
    bad_rois[4, 0] = 2  # batch index == batch size
    bad_rois[15, 0] = 0.5  # not a whole number
    out, arg, bad = emu_forward(emu, features, bad_rois, 7, 7, 1 / 16)
    assert bad == 4
    good = np.setdiff1d(np.arange(len(rois)), [4, 9, 15])
    ref_out, ref_arg = cpu_forward(features, rois[good], 7, 7, 1 / 16)
    assert np.array_equal(out[good], ref_out) and np.array_equal(arg[good], ref_arg)
    assert (out[[4, 9, 15]] == 0).all() and (arg[[4, 9, 15]] == -1).all()


def test_roi_forward_without_rois_launches_nothing(emu):
    features, _ = roi_case(0, np.float32)
    out, arg, bad = emu_forward(emu, features, np.zeros((0, 5), np.float32), 7, 7, 1 / 16)
    assert out.shape == (0, 5, 7, 7) and arg.shape == (0, 5, 7, 7) and bad == INT_MAX


def emu_backward(emu, op, grad, rois, argmax, shape, scale=None, index="auto", seed=0):
    n, c, h, w = shape
    r, _, ph, pw = grad.shape
    params = {"dtype": "f32" if grad.dtype == np.float32 else "f64", "batch": n, "channels": c,
              "height": h, "width": w, "rois": r, "pooled_h": ph, "pooled_w": pw, "seed": seed, "index": index}
    if scale is not None:
        params["scale"] = repr(scale)
    out = emu.run(op, params, {"grad": grad, "rois": rois, "argmax": argmax},
                  {"grad_input": grad.dtype, "flags": np.uint64})
    return out["grad_input"].reshape(shape), out["flags"]


def backward_case(seed, dtype, integer_grads=False, **kw):
    features, rois = roi_case(seed, dtype, **kw)
    _, argmax = cpu_forward(features, rois, 7, 7, 1 / 16)
    rng = np.random.default_rng(seed + 100)
    if integer_grads:  # every partial sum exact: any summation order gives the same result
        grad = rng.integers(-8, 9, argmax.shape).astype(dtype)
    else:
        grad = rng.standard_normal(argmax.shape).astype(dtype)
    return features, rois, argmax, grad


def cpu_backward(grad, rois, argmax, shape, gather_scale=None):
    n, c, h, w = shape
    g, r, a = torch.from_numpy(grad), torch.from_numpy(rois), torch.from_numpy(argmax)
    if gather_scale is None:
        return torch.ops.frcnn.roi_pool_backward(g, r, a, n, c, h, w).numpy()
    return torch.ops.frcnn.roi_pool_backward_gather(g, r, a, gather_scale, n, c, h, w).numpy()


@pytest.mark.parametrize("index", ["auto", "int64"])
def test_atomic_backward_equals_the_cpu_scatter(emu, index):
    # many RoIs on a small map, so that many gradients land on one cell in a shuffled order
    kw = {"rois": 60, "height": 9, "width": 11, "ties": True}
    features, rois, argmax, grad = backward_case(1, np.float64, integer_grads=True, **kw)
    got, flags = emu_backward(emu, "roi_backward", grad, rois, argmax, features.shape, index=index)
    assert flags.tolist() == [NO_PROBLEM] * 2
    assert np.array_equal(got, cpu_backward(grad, rois, argmax, features.shape))
    features, rois, argmax, grad = backward_case(2, np.float32, **kw)
    got, flags = emu_backward(emu, "roi_backward", grad, rois, argmax, features.shape, index=index)
    assert flags.tolist() == [NO_PROBLEM] * 2
    np.testing.assert_allclose(got, cpu_backward(grad, rois, argmax, features.shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", ["auto", "int64"])
def test_gather_backward_is_bit_identical_to_the_cpu(emu, dtype, index):
    for seed, kw in [(3, {"rois": 60, "height": 9, "width": 11, "ties": True}), (4, {})]:
        features, rois, argmax, grad = backward_case(seed, dtype, **kw)
        got, flags = emu_backward(emu, "roi_gather", grad, rois, argmax, features.shape,
                                  scale=1 / 16, index=index, seed=seed)
        assert flags.tolist() == [NO_PROBLEM] * 3
        assert np.array_equal(got, cpu_backward(grad, rois, argmax, features.shape, 1 / 16))
        assert np.array_equal(got, cpu_backward(grad, rois, argmax, features.shape))


def test_backward_kernels_skip_and_report_bad_rois_and_argmax(emu):
    features, rois, argmax, grad = backward_case(6, np.float64, integer_grads=True)
    shape = features.shape
    plane = shape[2] * shape[3]
    last = argmax.size - 1  # the last RoI's last channel: one past its plane is past the map
    for positions, values in [([500], [plane]), ([last], [plane]), ([80], [-2]),
                              ([500, 80], [plane, -2])]:
        flat = argmax.reshape(-1).copy()
        flat[positions] = values  # outside the map: the first (lowest position) is reported
        bad_arg = flat.reshape(argmax.shape)
        _, flags = emu_backward(emu, "roi_backward", grad, rois, bad_arg, shape)
        assert flags.tolist() == [NO_PROBLEM, min(positions)]
        _, flags = emu_backward(emu, "roi_gather", grad, rois, bad_arg, shape, scale=1 / 16)
        assert flags.tolist() == [NO_PROBLEM, min(positions), NO_PROBLEM]
    # inside the map but outside its bin: only the gather, which knows the bins, can tell.
    # RoI 0 covers the top-left 2 x 2 cells; its first entry is pointed at the last cell.
    rois0 = rois.copy()
    rois0[0] = [0, 0, 0, 15, 15]
    _, argmax0 = cpu_forward(features, rois0, 7, 7, 1 / 16)
    assert argmax0.reshape(-1)[0] == 0
    flat = argmax0.reshape(-1).copy()
    flat[0] = plane - 1
    _, flags = emu_backward(emu, "roi_gather", grad, rois0, flat.reshape(argmax.shape), shape, scale=1 / 16)
    assert flags.tolist() == [NO_PROBLEM, NO_PROBLEM, 0]
    bad_rois = rois.copy()
    bad_rois[[7, 3], 0] = [-1, np.inf]
    bad_rois[11, 2] = np.nan
    good = np.setdiff1d(np.arange(len(rois)), [3, 7, 11])
    for op, scale in (("roi_backward", None), ("roi_gather", 1 / 16)):
        got, flags = emu_backward(emu, op, grad, bad_rois, argmax, shape, scale=scale)
        assert flags[0] == 3
        # the bad RoIs' gradients are skipped, the others' all arrive
        expected = cpu_backward(grad[good], rois[good], argmax[good], shape)
        assert np.array_equal(got, expected)
    # one bin per RoI: the row is still checked (by its channel 0, bin 0 thread)
    _, argmax1 = cpu_forward(features, rois, 1, 1, 1 / 16)
    grad1 = np.ones(argmax1.shape)
    for op, scale in (("roi_backward", None), ("roi_gather", 1 / 16)):
        _, flags = emu_backward(emu, op, grad1, bad_rois, argmax1, shape, scale=scale)
        assert flags[0] == 3


# ---- the SGD update (csrc/sgd/sgd_kernels.cuh) -------------------------------------------

@functools.cache
def libm_fmaf():
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.fmaf.restype = ctypes.c_float
    libm.fmaf.argtypes = [ctypes.c_float] * 3
    return libm.fmaf


def fmaf(a, b, c):
    """a * b + c rounded once to float32 (the C library's fmaf)."""
    return libm_fmaf()(a, b, c)


def sgd_inputs(n, seed):
    g = np.random.RandomState(seed)
    w = (g.randn(n) * 0.01).astype(np.float32)
    grad = (g.randn(n) * 1e-3 * np.exp(g.randn(n))).astype(np.float32)
    v = (g.randn(n) * 1e-4).astype(np.float32)
    if n >= 8:  # zeros of both signs, a subnormal, infinities, NaN
        w[:4] = [0.0, -0.0, 1e-40, np.inf]
        grad[4:8] = [-0.0, np.nan, -np.inf, 3e38]
    return w, grad, v


@pytest.mark.parametrize("n,blocks", [(0, None), (1, None), (300, None), (5000, None), (5000, 3)])
@pytest.mark.parametrize("iter_size,decay", [(1, 0.0), (1, 0.0005), (2, 0.0005), (3, 0.0)])
def test_sgd_update_kernel_gives_the_torch_operations_bits(emu, n, blocks, iter_size, decay):
    from frcnn.caffe import solver as solver_mod

    w, grad, v = sgd_inputs(n, n + iter_size)
    momentum, rate = 0.9, 0.001 * 2
    grad_scale = 1.0 / iter_size if iter_size > 1 else 1.0
    params = {"n": n, "grad_scale": grad_scale.hex(), "decay": decay.hex(), "momentum": momentum.hex(),
              "rate": rate.hex(), "seed": n}
    if blocks is not None:  # fewer threads than elements: the grid-stride loop
        params["blocks"] = blocks
    out = emu.run("sgd_update", params, {"weight": w, "grad": grad, "history": v},
                  {"weight": np.float32, "history": np.float32})
    # the reference: the solver's steps with each multiply-add fused by the C library's fmaf (the
    # kernel's __fmaf_rn fuses, as torch's CUDA kernel does), then, where torch's CPU kernels fuse
    # it themselves, the solver's torch operations
    tw, tg, tv = (torch.from_numpy(a.copy()) for a in (w, grad, v))
    d = tg * grad_scale if iter_size > 1 else tg
    if decay:
        d = tw * decay + d
    h = torch.tensor([fmaf(a, np.float32(rate), b) for a, b in zip(d.tolist(), (tv * momentum).tolist())],
                     dtype=torch.float32)
    expected_w = (tw - h).numpy()
    assert np.array_equal(out["history"].view(np.int32), h.numpy().view(np.int32))
    assert np.array_equal(out["weight"].view(np.int32), expected_w.view(np.int32))
    if solver_mod._fused_update_matches_torch():  # on this CPU torch's kernels fuse it themselves
        solver_mod._torch_update(tw, tg, tv, iter_size, decay, "L2", momentum, rate)
        assert np.array_equal(out["weight"].view(np.int32), tw.numpy().view(np.int32))
        assert np.array_equal(out["history"].view(np.int32), tv.numpy().view(np.int32))
