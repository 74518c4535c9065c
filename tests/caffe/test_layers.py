"""Every built-in layer against hand formulas or plain-loop references that follow Caffe's code."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from frcnn.caffe.prototxt import PrototxtError
from tests.caffe.helpers import net_for, run

torch.manual_seed(0)


# -- Convolution / InnerProduct -------------------------------------------------------------
@pytest.mark.parametrize(("pad", "stride", "group", "dilation"), [(0, 1, 1, 1), (1, 2, 1, 1), (2, 3, 2, 1), (1, 1, 2, 2)])
def test_convolution_matches_conv2d_and_caffe_size(pad, stride, group, dilation):
    x = torch.randn(2, 4, 11, 9)
    net = net_for(f'''layer {{ name: "c" type: "Convolution" bottom: "x" top: "y"
        convolution_param {{ num_output: 6 kernel_size: 3 pad: {pad} stride: {stride} group: {group}
        dilation: {dilation} weight_filler {{ type: "gaussian" std: 0.1 }} bias_filler {{ type: "constant" value: 0.5 }} }} }}''',
                  {"x": tuple(x.shape)})
    w, b = net.params["c"][0].data, net.params["c"][1].data
    assert tuple(w.shape) == (6, 4 // group, 3, 3) and torch.all(b == 0.5)
    y = net.forward(x=x)["y"]
    ref = F.conv2d(x, w, b, stride, pad, dilation, group)
    k = dilation * 2 + 1
    assert y.shape[2:] == ((11 + 2 * pad - k) // stride + 1, (9 + 2 * pad - k) // stride + 1)
    assert torch.allclose(y, ref, atol=1e-6)
    assert net.blobs["y"].shape == tuple(y.shape)  # inferred before the forward as well


def test_convolution_hw_fields_and_no_bias():
    net = net_for('''layer { name: "c" type: "Convolution" bottom: "x" top: "y"
        convolution_param { num_output: 2 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 1
        bias_term: false } }''', {"x": (1, 3, 8, 5)})
    assert len(net.params["c"]) == 1 and net.params["c"][0].shape == (2, 3, 3, 1)
    assert net.blobs["y"].shape == (1, 2, 4, 5)
    with pytest.raises(PrototxtError, match="num_output"):
        net_for('layer { name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param { kernel_size: 1 } }',
                {"x": (1, 1, 2, 2)})


def test_inner_product_axis_and_flatten():
    x = torch.randn(3, 2, 4, 5)
    net = net_for('''layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y"
        inner_product_param { num_output: 7 weight_filler { type: "xavier" } } }
        layer { name: "fc2" type: "InnerProduct" bottom: "x" top: "z"
        inner_product_param { num_output: 7 axis: 2 bias_filler { type: "uniform" min: -1 max: 1 } } }''',
                  {"x": tuple(x.shape)})
    assert net.params["fc"][0].shape == (7, 40) and net.params["fc2"][0].shape == (7, 20)
    out = net.forward(x=x)
    w, b = net.params["fc"][0].data, net.params["fc"][1].data
    assert torch.allclose(out["y"], x.reshape(3, 40) @ w.T + b, atol=1e-5)
    w2, b2 = net.params["fc2"][0].data, net.params["fc2"][1].data
    assert out["z"].shape == (3, 2, 7)
    assert torch.allclose(out["z"], x.reshape(3, 2, 20) @ w2.T + b2, atol=1e-5)


# -- Pooling ---------------------------------------------------------------------------------
def caffe_pool_ref(x: np.ndarray, method: str, k: int, s: int, p: int) -> np.ndarray:
    """A plain loop over Caffe's PoolingLayer::Forward_cpu for one (H, W) plane."""
    h, w = x.shape
    ph = math.ceil((h + 2 * p - k) / s) + 1
    pw = math.ceil((w + 2 * p - k) / s) + 1
    if p:
        if (ph - 1) * s >= h + p:
            ph -= 1
        if (pw - 1) * s >= w + p:
            pw -= 1
    out = np.zeros((ph, pw))
    for i in range(ph):
        for j in range(pw):
            hs, ws = i * s - p, j * s - p
            if method == "MAX":
                he, we = min(hs + k, h), min(ws + k, w)
                hs, ws = max(hs, 0), max(ws, 0)
                out[i, j] = x[hs:he, ws:we].max()
            else:
                he, we = min(hs + k, h + p), min(ws + k, w + p)
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                out[i, j] = x[hs:he, ws:we].sum() / size
    return out


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize(("h", "w", "k", "s", "p"), [(7, 9, 3, 2, 0), (6, 5, 3, 2, 1), (4, 4, 3, 3, 2),
                                                     (13, 10, 2, 2, 0), (5, 8, 3, 1, 1), (1, 1, 3, 2, 1)])
def test_pooling_matches_caffe_loop(method, h, w, k, s, p):
    x = torch.randn(2, 3, h, w)
    y = run(f'''layer {{ name: "p" type: "Pooling" bottom: "x" top: "y"
        pooling_param {{ pool: {method} kernel_size: {k} stride: {s} pad: {p} }} }}''', x=x)["y"]
    for n in range(2):
        for c in range(3):
            ref = caffe_pool_ref(x[n, c].double().numpy(), method, k, s, p)
            assert y.shape[2:] == ref.shape
            np.testing.assert_allclose(y[n, c].numpy(), ref, rtol=1e-5, atol=1e-6)


def test_pooling_golden_sizes_and_global():
    # Caffe drops the last window when it would start in the padding: 4 -> 2, not 3
    assert net_for('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: MAX kernel_size: 3 '
                   'stride: 3 pad: 2 } }', {"x": (1, 1, 4, 4)}).blobs["y"].shape == (1, 1, 2, 2)
    # ceil mode: 13 -> 7 (floor would give 6)
    assert net_for('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: MAX kernel_size: 3 '
                   'stride: 2 } }', {"x": (1, 1, 14, 14)}).blobs["y"].shape == (1, 1, 7, 7)
    x = torch.randn(2, 3, 5, 4)
    out = run('''layer { name: "g" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: AVE global_pooling: true } }
                 layer { name: "m" type: "Pooling" bottom: "x" top: "z" pooling_param { pool: MAX global_pooling: true } }''',
              x=x)
    assert torch.allclose(out["y"][..., 0, 0], x.mean(dim=(2, 3)), atol=1e-6)
    assert torch.equal(out["z"][..., 0, 0], x.amax(dim=(2, 3)))


def test_max_pool_gradient_goes_to_the_max():
    x = torch.tensor([[[[1.0, 5.0, 2.0], [0.0, 3.0, 4.0], [9.0, 1.0, 1.0]]]], requires_grad=True)
    net = net_for('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: MAX kernel_size: 2 '
                  'stride: 2 } }', {"x": (1, 1, 3, 3)})
    net.compute_grad = True
    y = net.forward(x=x)["y"]
    assert y.shape == (1, 1, 2, 2)
    assert y.flatten().tolist() == [5.0, 4.0, 9.0, 1.0]
    y.sum().backward()
    assert x.grad.flatten().tolist() == [0, 1, 0, 0, 0, 1, 1, 0, 1]  # the clipped windows pool 2 and 1 values


# -- LRN ----------------------------------------------------------------------------------------
def test_lrn_across_channels_matches_formula_and_torch():
    x = torch.randn(2, 7, 4, 5) * 3
    y = run('''layer { name: "n" type: "LRN" bottom: "x" top: "y"
               lrn_param { local_size: 5 alpha: 0.0005 beta: 0.75 k: 2 } }''', x=x)["y"]
    ref = torch.nn.LocalResponseNorm(5, alpha=0.0005, beta=0.75, k=2.0)(x)
    assert torch.allclose(y, ref, rtol=1e-5)
    xd = x.double()
    hand = torch.empty_like(xd)
    for c in range(7):
        s = (xd[:, max(0, c - 2):c + 3] ** 2).sum(1)
        hand[:, c] = xd[:, c] * (2 + 0.0005 / 5 * s) ** -0.75
    assert torch.allclose(y.double(), hand, rtol=1e-5)


def test_lrn_within_channel_divides_by_nine_everywhere():
    x = torch.randn(1, 2, 5, 6) * 40
    y = run('''layer { name: "n" type: "LRN" bottom: "x" top: "y"
               lrn_param { local_size: 3 alpha: 0.00005 beta: 0.75 k: 7 norm_region: WITHIN_CHANNEL engine: CAFFE } }''',
            x=x)["y"]
    xd = x.double().numpy()
    hand = np.empty_like(xd)
    for c in range(2):
        padded = np.pad(xd[0, c] ** 2, 1)
        for i in range(5):
            for j in range(6):
                avg = padded[i:i + 3, j:j + 3].sum() / 9.0  # zeros counted, k unused
                hand[0, c, i, j] = xd[0, c, i, j] * (1 + 0.00005 * avg) ** -0.75
    np.testing.assert_allclose(y.numpy(), hand, rtol=1e-5)


# -- element-wise -------------------------------------------------------------------------------
def test_relu_sigmoid_tanh():
    x = torch.randn(3, 4)
    out = run('''layer { name: "r" type: "ReLU" bottom: "x" top: "r" relu_param { negative_slope: 0.1 } }
                 layer { name: "r0" type: "ReLU" bottom: "x" top: "r0" }
                 layer { name: "s" type: "Sigmoid" bottom: "x" top: "s" }
                 layer { name: "t" type: "TanH" bottom: "x" top: "t" }''', x=x)
    assert torch.equal(out["r"], torch.where(x > 0, x, 0.1 * x))
    assert torch.equal(out["r0"], x.clamp(min=0))
    assert torch.allclose(out["s"], 1 / (1 + torch.exp(-x)))
    assert torch.allclose(out["t"], torch.tanh(x))


@pytest.mark.parametrize("scale_train", [True, False])
def test_dropout_train_and_test(scale_train):
    x = torch.rand(20000) + 1.0
    layer = f'''layer {{ name: "d" type: "Dropout" bottom: "x" top: "x"
                dropout_param {{ dropout_ratio: 0.3 scale_train: {str(scale_train).lower()} }} }}'''
    train = net_for(layer, {"x": (20000,)}, phase="TRAIN").forward(x=x)["x"]
    kept = train != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.02
    factor = 1 / 0.7 if scale_train else 1.0
    assert torch.allclose(train[kept], x[kept] * factor)
    test = net_for(layer, {"x": (20000,)}, phase="TEST").forward(x=x)["x"]
    assert torch.allclose(test, x if scale_train else x * 0.7)


# -- Softmax and losses -------------------------------------------------------------------------
def test_softmax_axis():
    x = torch.randn(2, 3, 4)
    out = run('layer { name: "s" type: "Softmax" bottom: "x" top: "y" softmax_param { axis: 2 } }', x=x)["y"]
    assert torch.allclose(out, torch.softmax(x, 2))


SWL = '''layer {{ name: "l" type: "SoftmaxWithLoss" bottom: "s" bottom: "y" top: "loss" {extra} }}'''


def _swl(scores, labels, extra=""):
    net = net_for(SWL.format(extra=extra), {"s": tuple(scores.shape), "y": tuple(labels.shape)}, phase="TRAIN")
    s = scores.clone().requires_grad_(True)
    loss = net.forward(s=s, y=labels)["loss"]
    net.backward()
    return loss, s.grad


@pytest.mark.parametrize(("extra", "divisor"), [
    ("", "valid"), ("loss_param { ignore_label: -1 normalize: true }", "valid"),
    ("loss_param { ignore_label: -1 normalize: false }", "batch"),
    ("loss_param { ignore_label: -1 normalization: FULL }", "full"),
    ("loss_param { ignore_label: -1 normalization: VALID }", "valid"),
    ("loss_param { ignore_label: -1 normalization: BATCH_SIZE }", "batch"),
    ("loss_param { ignore_label: -1 normalization: NONE }", "none"),
])
def test_softmax_with_loss_ignore_and_normalisation(extra, divisor):
    # RPN-like: scores (1, 2, A*H, W), labels (1, 1, A*H, W) as float, -1 = ignore
    scores = torch.randn(1, 2, 6, 4)
    labels = torch.tensor(np.random.RandomState(1).choice([-1, 0, 1], size=(1, 1, 6, 4)), dtype=torch.float32)
    if "ignore_label" not in extra:
        labels = labels.clamp(min=0)
    loss, grad = _swl(scores, labels, extra)
    p = torch.softmax(scores.double(), 1)
    lab = labels.long()[:, 0]
    valid = lab != -1
    logp = torch.log(p.gather(1, lab.clamp(min=0)[:, None])[:, 0])
    total = -(logp * valid).sum()
    n = {"valid": valid.sum().item(), "full": 24, "batch": 1, "none": 1}[divisor]
    assert loss.item() == pytest.approx(total.item() / n, rel=1e-5)
    onehot = F.one_hot(lab.clamp(min=0), 2).permute(0, 3, 1, 2).double()
    ref = (p - onehot) * valid[:, None] / n
    assert torch.allclose(grad.double(), ref, atol=1e-6)


def test_softmax_with_loss_all_ignored_and_clamp():
    loss, grad = _swl(torch.randn(3, 4), torch.full((3,), -1.0), "loss_param { ignore_label: -1 }")
    assert loss.item() == 0.0 and torch.all(grad == 0)
    # a probability below FLT_MIN: Caffe's loss is -log(FLT_MIN), its gradient still p - 1
    loss, grad = _swl(torch.tensor([[0.0, 200.0]]), torch.tensor([0.0]))
    assert loss.item() == pytest.approx(-math.log(np.finfo(np.float32).tiny), rel=1e-6)
    assert grad[0, 0].item() == pytest.approx(-1.0)
    with pytest.raises(PrototxtError, match="label 5 is outside"):
        _swl(torch.randn(2, 3), torch.tensor([0.0, 5.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_softmax_with_loss_valid_normaliser_divides_as_by_the_number(dtype):
    # the count of valid labels stays a tensor (no read-back on a GPU); the loss must be the sum
    # divided by that count as a number, bit for bit, in every type (2999 is neither a float16 nor
    # a bfloat16 number: rounding the count to the loss's type first would be off)
    from frcnn.caffe.layers.loss import SoftmaxWithLoss

    scores = torch.randn(3000, 3, dtype=torch.float64).to(dtype)
    labels = torch.tensor(np.random.RandomState(2).choice([0, 1, 2], size=3000), dtype=torch.float32)
    labels[17] = -1
    layer = net_for(SWL.format(extra="loss_param { ignore_label: -1 normalization: VALID }"),
                    {"s": (3000, 3), "y": (3000,)}, phase="TRAIN").layer_dict["l"]
    assert isinstance(layer, SoftmaxWithLoss)
    (loss,) = layer.forward(scores, labels)
    lab = labels.long()
    valid = lab != -1
    logp = F.log_softmax(scores, dim=1).gather(1, torch.where(valid, lab, 0)[:, None])[:, 0]
    total = -(logp * valid.to(logp.dtype)).sum()
    assert loss.dtype == dtype and torch.equal(loss, total / float(valid.sum()))


def test_softmax_with_loss_second_top_is_prob():
    s, y = torch.randn(4, 3), torch.tensor([0.0, 1, 2, 1])
    out = run('layer { name: "l" type: "SoftmaxWithLoss" bottom: "s" bottom: "y" top: "loss" top: "prob" }', s=s, y=y)
    assert torch.allclose(out["prob"], torch.softmax(s, 1))


def smooth_l1_ref(pred, target, w_in, w_out, sigma):
    s2 = sigma * sigma
    d = w_in * (pred - target)
    f = np.where(np.abs(d) < 1 / s2, 0.5 * s2 * d * d, np.abs(d) - 0.5 / s2)
    df = np.where(np.abs(d) < 1 / s2, s2 * d, np.sign(d))
    n = pred.shape[0]
    return (w_out * f).sum() / n, w_in * w_out * df / n


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_smooth_l1_loss_value_and_gradient(sigma):
    rs = np.random.RandomState(2)
    shape = (3, 8, 2, 2)
    pred = rs.randn(*shape).astype(np.float32)
    target = rs.randn(*shape).astype(np.float32)
    w_in = (rs.rand(*shape) > 0.4).astype(np.float32)
    w_out = (rs.rand(*shape) * 2).astype(np.float32)
    net = net_for(f'''layer {{ name: "l" type: "SmoothL1Loss" bottom: "p" bottom: "t" bottom: "wi" bottom: "wo"
                 top: "loss" smooth_l1_loss_param {{ sigma: {sigma} }} }}''',
                  {k: shape for k in ("p", "t", "wi", "wo")}, phase="TRAIN")
    p = torch.from_numpy(pred).requires_grad_(True)
    loss = net.forward(p=p, t=torch.from_numpy(target), wi=torch.from_numpy(w_in), wo=torch.from_numpy(w_out))["loss"]
    net.backward()
    ref_loss, ref_grad = smooth_l1_ref(pred.astype(np.float64), target, w_in, w_out, sigma)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(p.grad.numpy(), ref_grad, rtol=1e-5, atol=1e-7)
    # two bottoms: no weights, still divided by the first dimension
    two = run('layer { name: "l" type: "SmoothL1Loss" bottom: "p" bottom: "t" top: "loss" }',
              p=torch.from_numpy(pred), t=torch.from_numpy(target))["loss"]
    assert two.item() == pytest.approx(smooth_l1_ref(pred, target, 1.0, 1.0, 1.0)[0], rel=1e-5)


def test_accuracy():
    s = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]])
    y = torch.tensor([1.0, 1.0, 2.0, -1.0])
    out = run('''layer { name: "a" type: "Accuracy" bottom: "s" bottom: "y" top: "acc" accuracy_param { ignore_label: -1 } }
                 layer { name: "a2" type: "Accuracy" bottom: "s" bottom: "y" top: "acc2"
                 accuracy_param { top_k: 2 ignore_label: -1 } }''', s=s, y=y)
    assert out["acc"].item() == pytest.approx(2 / 3) and out["acc2"].item() == pytest.approx(1.0)


# -- shape layers -------------------------------------------------------------------------------
def test_reshape_copy_infer_axis():
    x = torch.randn(1, 18, 5, 7)
    out = run('''layer { name: "r" type: "Reshape" bottom: "x" top: "a" reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } } }
                 layer { name: "r2" type: "Reshape" bottom: "a" top: "b" reshape_param { shape { dim: 0 dim: 18 dim: -1 dim: 0 } } }
                 layer { name: "r3" type: "Reshape" bottom: "x" top: "c" reshape_param { axis: 1 num_axes: 1 shape { dim: 3 dim: 6 } } }
                 layer { name: "r4" type: "Reshape" bottom: "x" top: "d" reshape_param { axis: -1 shape { dim: 1 } } }''', want=("a",), x=x)
    assert out["a"].shape == (1, 2, 45, 7) and torch.equal(out["a"].flatten(), x.flatten())
    assert torch.equal(out["b"], x)
    assert out["c"].shape == (1, 3, 6, 5, 7) and out["d"].shape == (1, 18, 5, 7, 1)
    with pytest.raises(PrototxtError, match="not divisible"):
        net_for('layer { name: "r" type: "Reshape" bottom: "x" top: "y" reshape_param { shape { dim: 4 dim: -1 } } }',
                {"x": (3, 3)})


def test_split_concat_flatten_silence_eltwise():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    out = run('''layer { name: "cat" type: "Concat" bottom: "a" bottom: "b" top: "c" }
                 layer { name: "cat0" type: "Concat" bottom: "a" bottom: "a" top: "c0" concat_param { concat_dim: 0 } }
                 layer { name: "sp" type: "Split" bottom: "a" top: "s1" top: "s2" }
                 layer { name: "f" type: "Flatten" bottom: "b" top: "f" }
                 layer { name: "sil" type: "Silence" bottom: "s2" }''', a=a, b=b)
    assert torch.equal(out["c"], torch.cat([a, b], 1)) and torch.equal(out["c0"], torch.cat([a, a], 0))
    assert torch.equal(out["s1"], a) and "s2" not in out and out["f"].shape == (2, 20)
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    out = run('''layer { name: "e" type: "Eltwise" bottom: "x" bottom: "y" top: "sum" eltwise_param { coeff: 2 coeff: -1 } }
                 layer { name: "p" type: "Eltwise" bottom: "x" bottom: "y" top: "prod" eltwise_param { operation: PROD } }
                 layer { name: "m" type: "Eltwise" bottom: "x" bottom: "y" top: "max" eltwise_param { operation: MAX } }''',
              x=x, y=y)
    assert torch.allclose(out["sum"], 2 * x - y) and torch.allclose(out["prod"], x * y)
    assert torch.equal(out["max"], torch.maximum(x, y))


def test_eltwise_max_gradient_to_first_maximum():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = torch.tensor([1.0, 5.0, 0.0], requires_grad=True)
    net = net_for('layer { name: "m" type: "Eltwise" bottom: "x" bottom: "y" top: "z" eltwise_param { operation: MAX } }',
                  {"x": (3,), "y": (3,)})
    net.compute_grad = True
    net.forward(x=x, y=y)["z"].sum().backward()
    assert x.grad.tolist() == [1, 0, 1] and y.grad.tolist() == [0, 1, 0]


def test_batchnorm_and_scale():
    x = torch.randn(4, 3, 2, 5) * 2 + 1
    layers = '''layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" batch_norm_param { moving_average_fraction: 0.9 } }
                layer { name: "sc" type: "Scale" bottom: "y" top: "z" scale_param { bias_term: true
                        filler { type: "constant" value: 2 } bias_filler { type: "constant" value: 0.5 } } }'''
    net = net_for(layers, {"x": tuple(x.shape)}, phase="TRAIN")
    assert [p.param.requires_grad for p in net.params["bn"]] == [False, False, False]
    out = net.forward(x=x)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    norm = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-5)
    assert torch.allclose(out["z"], 2 * norm + 0.5, atol=1e-5)
    m = 4 * 2 * 5
    bn = net.params["bn"]
    assert bn[2].data.item() == pytest.approx(1.0)
    assert torch.allclose(bn[0].data, mean) and torch.allclose(bn[1].data, var * m / (m - 1), rtol=1e-5)
    # TEST phase (use_global_stats): statistics are blob / scale factor
    test = net_for(layers, {"x": tuple(x.shape)})
    with torch.no_grad():
        test.params["bn"][0].data.copy_(mean * 4)
        test.params["bn"][1].data.copy_(var * 4)
        test.params["bn"][2].data.fill_(4)
    assert torch.allclose(test.forward(x=x)["z"], 2 * norm + 0.5, atol=1e-5)
    # Scale with the factor as a second bottom
    s = torch.randn(3)
    out = run('layer { name: "sc" type: "Scale" bottom: "x" bottom: "s" top: "z" }', x=x, s=s)
    assert torch.allclose(out["z"], x * s[None, :, None, None])


def test_dummy_data_and_fillers():
    torch.manual_seed(1)
    net = net_for('''layer { name: "d" type: "DummyData" top: "a" top: "b" top: "c" top: "e" top: "f"
        dummy_data_param {
          shape { dim: 200 dim: 100 } shape { dim: 3 } shape { dim: 100 dim: 300 } shape { dim: 400 dim: 50 }
          shape { dim: 5 dim: 7 }
          data_filler { type: "gaussian" std: 0.5 mean: 1 } data_filler { type: "constant" value: 3 }
          data_filler { type: "xavier" } data_filler { type: "msra" variance_norm: FAN_OUT }
          data_filler { type: "positive_unitball" } } }''', {})
    out = net.forward(blobs=["a", "b", "c", "e", "f"])
    assert abs(out["a"].std().item() - 0.5) < 0.01 and abs(out["a"].mean().item() - 1) < 0.01
    assert torch.all(out["b"] == 3)
    bound = math.sqrt(3 / 300)  # fan_in = count / shape[0]
    assert out["c"].abs().max().item() <= bound and out["c"].abs().max().item() > 0.95 * bound
    assert abs(out["e"].std().item() - math.sqrt(2 / 400)) < 0.003  # fan_out = count / shape[1]
    assert torch.allclose(out["f"].sum(1), torch.ones(5)) and torch.all(out["f"] >= 0)
    legacy = net_for('layer { name: "d" type: "DummyData" top: "a" dummy_data_param { num: 2 channels: 3 height: 4 '
                     'width: 5 } }', {})
    assert legacy.forward(blobs=["a"])["a"].shape == (2, 3, 4, 5)


def caffe_roi_pool_ref(feat, rois, ph, pw, scale):
    """Plain loop over Caffe's ROIPoolingLayer::Forward_cpu."""
    _n, c, h, w = feat.shape
    out = np.zeros((len(rois), c, ph, pw))

    def cround(v):
        return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)

    for r, (b, x1, y1, x2, y2) in enumerate(rois):
        sw, sh, ew, eh = cround(x1 * scale), cround(y1 * scale), cround(x2 * scale), cround(y2 * scale)
        rh, rw = max(eh - sh + 1, 1), max(ew - sw + 1, 1)
        bh, bw = rh / ph, rw / pw
        for i in range(ph):
            for j in range(pw):
                hs = min(max(math.floor(i * bh) + sh, 0), h)
                he = min(max(math.ceil((i + 1) * bh) + sh, 0), h)
                ws = min(max(math.floor(j * bw) + sw, 0), w)
                we = min(max(math.ceil((j + 1) * bw) + sw, 0), w)
                if he <= hs or we <= ws:
                    continue
                out[r, :, i, j] = feat[int(b), :, hs:he, ws:we].reshape(c, -1).max(1)
    return out


def test_roi_pooling_layer():
    feat = torch.randn(2, 3, 10, 12)
    rois = torch.tensor([[0, 0, 0, 100, 80], [1, 16.5, 8, 40, 40], [0, 150, 150, 200, 190], [1, 30, 30, 10, 10]])
    y = run('''layer { name: "roi_pool5" type: "ROIPooling" bottom: "f" bottom: "r" top: "p"
               roi_pooling_param { pooled_w: 3 pooled_h: 2 spatial_scale: 0.0625 } }''', f=feat, r=rois)["p"]
    ref = caffe_roi_pool_ref(feat.double().numpy(), rois.numpy(), 2, 3, 0.0625)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6)
    net = net_for('layer { name: "r" type: "ROIPooling" bottom: "f" bottom: "r" top: "p" roi_pooling_param '
                  '{ pooled_w: 7 pooled_h: 7 spatial_scale: 0.0625 } }', {"f": (1, 512, 38, 63), "r": (1, 5)})
    assert net.blobs["p"].shape == (1, 512, 7, 7)
