"""In-place ReLU (top == bottom) overwrites its bottom tensor only where nothing else can see the
old values, and gives the same outputs, losses and gradients as the out-of-place form."""

from __future__ import annotations

import torch

from frcnn.caffe import TRAIN
from tests.caffe.helpers import net_for

CONV = 'convolution_param {{ num_output: {n} kernel_size: 3 pad: 1 weight_filler {{ type: "gaussian" std: 0.3 }} }}'


def _conv(name: str, bottom: str, top: str, n: int = 4) -> str:
    return f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" {CONV.format(n=n)} }}\n'


def _relu(name: str, blob: str, top: str | None = None, slope: float = 0.0) -> str:
    param = f" relu_param {{ negative_slope: {slope} }}" if slope else ""
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{top or blob}"{param} }}\n'


def _keep_top(net, layer: str, seen: dict) -> None:
    """Record the tensor the layer returns (the hook returns None: the output stays the layer's)."""
    net.layer_dict[layer].register_forward_hook(lambda m, i, o: seen.update({layer: o[0]}) and None)


def _overwriting(net) -> set[str]:
    return {layer.name for layer, o in zip(net.layers, net._overwrite) if o}


def test_only_relus_right_after_a_fresh_top_overwrite():
    text = (_relu("relu_input", "x")  # the caller's input
            + _conv("c1", "x", "c1") + _relu("relu1", "c1")  # straight after a convolution
            + _conv("c2", "c1", "c2") + _conv("side", "c2", "side") + _relu("relu2", "c2")  # c2 read before
            + _conv("c3", "c1", "c3") + _relu("relu3", "c3", top="r3")  # not in place
            + _conv("c4", "c1", "c4") + _relu("relu4", "c4", slope=0.1)  # leaky
            + 'layer { name: "drop" type: "Dropout" bottom: "c1" top: "d" }\n' + _relu("relu5", "d")  # an alias
            + 'layer { name: "fc" type: "InnerProduct" bottom: "r3" top: "fc" inner_product_param { num_output: 3 } }\n'
            + _relu("relu6", "fc"))
    net = net_for(text, {"x": (1, 2, 5, 5)})
    assert _overwriting(net) == {"relu1", "relu6"}
    x = torch.randn(1, 2, 5, 5)
    kept = x.clone()
    net.forward(x=x)
    assert torch.equal(x, kept) and (kept < 0).any()  # the caller's tensor is not overwritten...
    assert torch.equal(net.blobs["x"].data, kept.clamp(min=0))  # ...the name is rebound to the ReLU's


def _train_net():
    text = (_conv("c1", "data", "c1", 6)
            + 'layer { name: "bn" type: "BatchNorm" bottom: "c1" top: "c1" }\n'
            + 'layer { name: "sc" type: "Scale" bottom: "c1" top: "c1" scale_param { bias_term: true } }\n'
            + _relu("relu1", "c1")
            + _conv("c2", "c1", "c2", 5) + _relu("relu2", "c2")
            + 'layer { name: "pool" type: "Pooling" bottom: "c2" top: "p" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
            + 'layer { name: "fc1" type: "InnerProduct" bottom: "p" top: "fc1" inner_product_param { num_output: 7 '
              'weight_filler { type: "gaussian" std: 0.3 } } }\n'
            + _relu("relu3", "fc1")
            + 'layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 3 '
              'weight_filler { type: "gaussian" std: 0.3 } } }\n'
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }\n')
    return net_for(text, {"data": (4, 3, 8, 8), "label": (4,)}, phase=TRAIN)


def test_in_place_training_equals_the_out_of_place_form():
    torch.manual_seed(0)
    a = _train_net()
    b = _train_net()
    b.load_state_dict(a.state_dict())
    b._overwrite = [False] * len(b._overwrite)
    assert _overwriting(a) == {"relu1", "relu2", "relu3"}
    seen = {}
    _keep_top(a, "c2", seen)
    data, label = torch.randn(4, 3, 8, 8), torch.tensor([0.0, 1.0, 2.0, 1.0])
    for net in (a, b):
        net.forward(data=data, label=label)
        net.backward()
    assert (seen["c2"] >= 0).all()  # the convolution's own tensor was clamped: overwritten in place
    assert torch.equal(a.loss, b.loss)
    for name in a.params:
        for pa, pb in zip(a.params[name], b.params[name]):
            assert torch.equal(pa.data, pb.data), name  # BatchNorm's running sums too
            if pa.diff is not None or pb.diff is not None:
                assert torch.equal(pa.diff, pb.diff), name


def test_no_overwrite_of_a_blob_the_caller_set_or_with_retained_diffs():
    net = net_for(_conv("c", "x", "c") + _relu("relu", "c"), {"x": (1, 2, 5, 5)})
    assert _overwriting(net) == {"relu"}
    mine = torch.randn(1, 4, 5, 5)
    kept = mine.clone()
    net.blobs["c"].data = mine
    out = net.forward(start="relu")
    assert torch.equal(mine, kept) and torch.equal(out["c"], kept.clamp(min=0))

    net = net_for(_conv("c", "x", "c") + _relu("relu", "c"), {"x": (1, 2, 5, 5)}, phase=TRAIN, retain_diffs=True)
    seen = {}
    _keep_top(net, "c", seen)
    net.forward(x=torch.randn(1, 2, 5, 5))
    assert (seen["c"] < 0).any()  # the convolution's tensor kept its values
