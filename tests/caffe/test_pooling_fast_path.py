"""Caffe MAX pooling on the CPU through torch's channels-last kernel (``_MaxPoolChannelsLast``)
equals the padded NCHW form it replaced, bit for bit: the values, and the gradients (which
depend on which of equal values is the argmax and on the order the sums are made in)."""

import pytest
import torch
import torch.nn.functional as F

from frcnn.caffe.layers.pooling import _channels_last_max_pool, caffe_pool2d, pool_out


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
