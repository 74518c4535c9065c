"""Caffe MAX pooling on the CPU through torch's channels-last kernel (``_MaxPoolChannelsLast``,
training) and as a max over rows then columns (``_separable_max_pool``, forwards without a
gradient) equals the padded NCHW form they replaced, bit for bit: the values, and the gradients
(which depend on which of equal values is the argmax and on the order the sums are made in)."""

import pytest
import torch
import torch.nn.functional as F

from frcnn.caffe.layers import pooling
from frcnn.caffe.layers.pooling import _channels_last_max_pool, _separable_max_pool, caffe_pool2d, pool_out


def padded_nchw_pool(x, kernel, stride, pad):
    """The NCHW form: pad with -inf to cover Caffe's grid, pool without padding, cut."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    h, w = x.shape[2:]
    oh, ow = pool_out(h, kh, ph, sh), pool_out(w, kw, pw, sw)
    extra_h = max(0, (oh - 1) * sh + kh - (h + ph))
    extra_w = max(0, (ow - 1) * sw + kw - (w + pw))
    xp = F.pad(x, (pw, extra_w, ph, extra_h), value=float("-inf"))
    return F.max_pool2d(xp, kernel, stride)[:, :, :oh, :ow]


CASES = [((3, 3), (2, 2), (1, 1)), ((3, 3), (2, 2), (0, 0)), ((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1)),
         ((5, 3), (2, 3), (2, 1)), ((3, 3), (3, 3), (1, 1)), ((4, 4), (3, 3), (2, 2))]


@pytest.mark.parametrize(("kernel", "stride", "pad"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ties", [False, True])
def test_channels_last_max_pool_equals_the_padded_nchw_form(kernel, stride, pad, dtype, ties):
    g = torch.Generator().manual_seed(7)
    for shape in [(1, 32, 41, 53), (2, 5, 9, 8), (1, 3, 4, 4)]:
        x = torch.randn(shape, generator=g, dtype=dtype)
        if ties:  # ReLU'd, coarsely rounded: windows with several equal maxima (zeros above all)
            x = torch.relu(x).mul(2).round()
        assert _channels_last_max_pool(x, kernel, stride, pad)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = caffe_pool2d(a, "MAX", kernel, stride, pad), padded_nchw_pool(b, kernel, stride, pad)
        assert ya.shape == yb.shape and ya.is_contiguous()
        assert torch.equal(ya, yb)
        grad = torch.randn(ya.shape, generator=g, dtype=dtype)
        ya.backward(grad)
        yb.backward(grad)
        assert torch.equal(a.grad, b.grad)
        with torch.no_grad():
            assert torch.equal(caffe_pool2d(x, "MAX", kernel, stride, pad), yb)


def test_channels_last_max_pool_is_used_only_where_it_is_caffe_pooling():
    x = torch.randn(1, 4, 9, 9)
    assert not _channels_last_max_pool(x, (1, 1), (3, 3), (0, 0))  # torch drops the last window, Caffe not
    assert not _channels_last_max_pool(x, (3, 3), (2, 2), (2, 2))  # torch allows padding <= kernel / 2
    assert not _channels_last_max_pool(x.contiguous(memory_format=torch.channels_last), (3, 3), (2, 2), (1, 1))
    assert not _channels_last_max_pool(x[:, :, :, ::2], (3, 3), (2, 2), (1, 1))
    assert not _channels_last_max_pool(x.half(), (3, 3), (2, 2), (1, 1))
    # the cases left to the padded form still give Caffe's sizes (unpadded, Caffe keeps a last
    # window that starts beyond the input: 4 outputs of 9 with kernel 1, stride 3; torch 3)
    assert caffe_pool2d(x, "MAX", (1, 1), (3, 3), (0, 0)).shape[2:] == (4, 4)
    assert caffe_pool2d(x, "MAX", (3, 3), (2, 2), (2, 2)).shape[2:] == (6, 6)


# every shape of window: square and not, stride above the kernel (unpadded windows that start
# beyond the input, which Caffe fills with its lowest value), padding above half the kernel,
# inputs smaller than the kernel
SEPARABLE_CASES = CASES + [((1, 1), (3, 3), (0, 0)), ((2, 2), (3, 3), (0, 0)), ((3, 3), (2, 2), (2, 2)),
                           ((1, 1), (1, 1), (0, 0)), ((2, 3), (1, 2), (1, 0)), ((7, 7), (1, 1), (3, 3))]


def _separable(x, kernel, stride, pad):
    h, w = x.shape[2:]
    out_hw = (pool_out(h, kernel[0], pad[0], stride[0]), pool_out(w, kernel[1], pad[1], stride[1]))
    return _separable_max_pool(x, kernel, stride, pad, out_hw)


@pytest.mark.parametrize(("kernel", "stride", "pad"), SEPARABLE_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("ties", [False, True])
def test_separable_max_pool_equals_the_padded_nchw_form(kernel, stride, pad, dtype, ties):
    g = torch.Generator().manual_seed(11)
    for shape in [(1, 32, 41, 53), (2, 5, 9, 8), (1, 3, 4, 4), (1, 2, 1, 1), (1, 1, 2, 7)]:
        x = torch.randn(shape, generator=g).to(dtype)
        if ties:
            x = torch.relu(x).mul(2).round()
        if min(pool_out(n, k, p, st) for n, k, p, st in zip(shape[2:], kernel, pad, stride)) <= 0:
            continue  # no output (caffe_pool2d refuses it)
        ref = padded_nchw_pool(x.float(), kernel, stride, pad).to(dtype)
        for form in (x, x.contiguous(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)):
            y = _separable(form, kernel, stride, pad)
            assert y.shape == ref.shape and y.dtype == dtype and y.is_contiguous()
            assert torch.equal(y, ref), (shape, form.stride())
        with torch.no_grad():
            assert torch.equal(caffe_pool2d(x, "MAX", kernel, stride, pad), ref)


def test_separable_max_pool_keeps_nan_and_infinities_where_the_kernel_does():
    x = torch.randn(1, 2, 9, 11, generator=torch.Generator().manual_seed(3))
    x[0, 0, 4, 4] = float("nan")  # inside a window of every case below
    x[0, 1, 0, 0] = float("inf")
    x[0, 1, 8, 10] = float("-inf")
    x[0, 1, 2, :] = float("-inf")
    for kernel, stride, pad in [((3, 3), (2, 2), (1, 1)), ((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 3), (1, 0))]:
        ref = padded_nchw_pool(x, kernel, stride, pad)
        y = _separable(x, kernel, stride, pad)
        torch.testing.assert_close(y, ref, rtol=0, atol=0, equal_nan=True)
        assert torch.isnan(y[0, 0]).any()


def test_forwards_without_gradient_take_the_separable_form_and_training_the_argmax_kernel(monkeypatch):
    x = torch.randn(1, 4, 12, 12)
    calls = []
    real = F.max_pool2d

    def counting(*a, **k):
        calls.append(k.get("return_indices", False))
        return real(*a, **k)

    monkeypatch.setattr(pooling.F, "max_pool2d", counting)
    with torch.no_grad():
        caffe_pool2d(x.requires_grad_(True), "MAX", (3, 3), (2, 2), (1, 1))
    caffe_pool2d(x.detach(), "MAX", (3, 3), (2, 2), (1, 1))  # grad mode on, but nothing to differentiate
    assert calls == []
    caffe_pool2d(x.detach().requires_grad_(True), "MAX", (3, 3), (2, 2), (1, 1))
    assert calls == [True]  # training: torch's kernel, for its argmax
