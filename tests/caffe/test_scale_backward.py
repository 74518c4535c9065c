"""The Scale layer's training form (``_ScaleBias``: addcmul with its own backward) equals
``torch.addcmul(bias, x, scale)`` under autograd, the form it replaced, bit for bit: the values
and the gradients of x, scale and bias."""

import pytest
import torch

from frcnn.caffe.layers.normalization import _ScaleBias


@pytest.mark.parametrize("shape", [(1, 32, 160, 200), (2, 5, 9, 13), (1, 256, 20, 25), (3, 7, 1, 1), (1, 3, 2, 17)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scale_bias_equals_addcmul_under_autograd(shape, dtype):
    g = torch.Generator().manual_seed(3)
    c = shape[1]
    view = (1, c, 1, 1)
    x = torch.randn(shape, generator=g, dtype=dtype) * 10
    s = torch.randn(c, generator=g, dtype=dtype)
    b = torch.randn(c, generator=g, dtype=dtype) * 3
    grad = torch.randn(shape, generator=g, dtype=dtype)
    results = []
    for fast in (True, False):
        xs, ss, bs = (t.clone().requires_grad_(True) for t in (x, s, b))
        if fast:
            y = _ScaleBias.apply(xs, ss.reshape(view), bs.reshape(view))
        else:
            y = torch.addcmul(bs.reshape(view), xs, ss.reshape(view))
        y.backward(grad)
        results.append((y.detach(), xs.grad, ss.grad, bs.grad))
    for fast, ref in zip(*results):
        assert torch.equal(fast, ref)


def test_scale_layer_trains_through_its_own_backward():
    from tests.caffe.helpers import net_for

    net = net_for('layer { name: "s" type: "Scale" bottom: "x" top: "y" param { lr_mult: 1 } param { lr_mult: 1 } '
                  'scale_param { bias_term: true } }', {"x": (2, 4, 3, 5)})
    net.compute_grad = True
    with torch.no_grad():
        net.params["s"][0].data.copy_(torch.tensor([1.0, 2.0, -1.0, 0.5]))
        net.params["s"][1].data.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
    x = torch.randn(2, 4, 3, 5)
    y = net.forward(x=x)["y"]
    ref = torch.addcmul(net.params["s"][1].data.reshape(1, 4, 1, 1), x, net.params["s"][0].data.reshape(1, 4, 1, 1))
    assert torch.equal(y, ref)
    assert y.grad_fn is not None and "ScaleBias" in type(y.grad_fn).__name__
    y.sum().backward()
    assert torch.equal(net.params["s"][0].diff, x.sum(dim=(0, 2, 3)))
    assert torch.equal(net.params["s"][1].diff, torch.full((4,), 30.0))
