"""Net: building, blobs, in-place and fan-out, outputs, losses, weights, Python layers."""

import textwrap

import numpy as np
import pytest
import torch

from frcnn.caffe import TEST, TRAIN, Net
from frcnn.caffe.caffemodel import BlobData, CaffeModel, LayerData, write_caffemodel
from frcnn.caffe.layers.python import resolve_module
from frcnn.caffe.prototxt import PrototxtError, parse
from tests.caffe.helpers import net_for

TINY = '''name: "tiny"
input: "data"
input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 5 kernel_size: 1 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc"
  inner_product_param { num_output: 6 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" include { phase: TEST } }
'''


def tiny(phase=TEST, **kw):
    return Net(parse(TINY, "tiny.prototxt"), phase=phase, **kw)


def test_blobs_params_outputs_and_in_place():
    net = tiny()
    assert [layer.name for layer in net.layers] == ["input", "conv1", "relu1", "conv2", "fc", "prob"]
    assert net.layers[0].type_name == "Input" and net.inputs == ["data"]
    assert list(net.blobs) == ["data", "conv1", "conv2", "fc", "prob"]
    assert list(net.params) == ["conv1", "conv2", "fc"]
    assert net.params["fc"][0].shape == (6, 4 * 8 * 8)
    assert net.outputs == ["conv2", "prob"]  # tops no later layer reads, sorted by name (Caffe's std::set)
    x = torch.randn(2, 3, 8, 8)
    out = net.forward(data=x)
    assert list(out) == ["conv2", "prob"]
    conv = torch.nn.functional.conv2d(x, net.params["conv1"][0].data, net.params["conv1"][1].data, padding=1)
    assert torch.allclose(net.blobs["conv1"].data, conv.clamp(min=0), atol=1e-6)  # in place: post-ReLU
    assert not out["prob"].requires_grad  # TEST nets record no graph
    assert net.layer_dict["conv2"] is net.layers[3]


def test_frozen_params_and_specs():
    net = tiny(TRAIN)
    conv1, conv2 = net.layer_dict["conv1"], net.layer_dict["conv2"]
    assert [p.requires_grad for p in conv1.blobs] == [False, False]
    assert [(s.lr_mult, s.decay_mult) for s in (conv2.spec(0), conv2.spec(1))] == [(1, 1), (2, 0)]
    assert net.layer_dict["fc"].spec(1).lr_mult == 1.0  # default when no param block
    names = [(layer, i) for layer, i, _, _ in net.learnable_params()]
    assert names == [("conv2", 0), ("conv2", 1), ("fc", 0), ("fc", 1)]
    assert "prob" not in net.layer_dict  # TEST-only layer excluded


def test_fan_out_gradients_sum_and_loss_weights():
    layers = '''layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" inner_product_param { num_output: 3
                  weight_filler { type: "gaussian" std: 1 } } }
                layer { name: "b1" type: "InnerProduct" bottom: "a" top: "b1" loss_weight: 0.5
                  inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 1 } } }
                layer { name: "b2" type: "InnerProduct" bottom: "a" top: "b2" loss_weight: 2
                  inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 1 } } }'''
    net = net_for(layers, {"x": (4, 2)}, phase=TRAIN)
    x = torch.randn(4, 2)
    out = net.forward(x=x)
    assert set(out) == {"b1", "b2"} and net.loss_weights == {"b1": 0.5, "b2": 2.0}
    assert net.loss.item() == pytest.approx(0.5 * out["b1"].sum().item() + 2 * out["b2"].sum().item(), rel=1e-5)
    net.backward()
    w1, w2 = net.params["b1"][0].data, net.params["b2"][0].data
    # d loss / d a = 0.5 w1 + 2 w2 per row; d loss / d W_a = (that)^T x summed over rows
    da = (0.5 * w1 + 2 * w2).expand(4, 3)
    assert torch.allclose(net.params["a"][0].diff, da.T @ x, atol=1e-5)


def test_propagate_down_false_blocks_the_gradient():
    layers = '''layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" inner_product_param { num_output: 2 } }
                layer { name: "l" type: "SmoothL1Loss" bottom: "a" bottom: "t" top: "loss" propagate_down: false
                        propagate_down: false }'''
    net = net_for(layers, {"x": (3, 2), "t": (3, 2)}, phase=TRAIN)
    net.forward(x=torch.randn(3, 2), t=torch.randn(3, 2))
    assert not net.loss.requires_grad


def test_errors_name_the_layer_and_file():
    with pytest.raises(PrototxtError, match=r"t.prototxt:1:\d+: .*unknown bottom blob 'nope'"):
        Net(parse('layer { name: "r" type: "ReLU" bottom: "nope" top: "r" }', "t.prototxt"))
    with pytest.raises(PrototxtError, match="unknown layer type 'Frobnicate'"):
        Net(parse('layer { name: "r" type: "Frobnicate" }', "t.prototxt"))
    with pytest.raises(PrototxtError, match="duplicate layer name 'r'"):
        net_for('layer { name: "r" type: "ReLU" bottom: "x" top: "x" } layer { name: "r" type: "ReLU" bottom: "x" top: "x" }',
                {"x": (1,)})
    with pytest.raises(KeyError, match="'datum' is not an input blob"):
        tiny().forward(datum=torch.zeros(1))


def test_pycaffe_style_reshape_start_end_and_diffs():
    net = tiny(TRAIN, retain_diffs=True)
    net.blobs["data"].reshape(1, 3, 8, 8)
    net.blobs["data"].data[...] = 1.0
    out = net.forward()  # inputs not passed keep their blob data
    assert out["conv2"].shape == (1, 5, 8, 8)
    part = net.forward(end="conv2")
    assert list(part) == ["conv2"]
    net.forward(start="fc")  # reads conv1 from the blob of the last forward
    net.blobs["fc"].data.sum().backward()
    assert net.blobs["fc"].diff is not None


def test_v1_net_and_legacy_inputs_build():
    net = Net(parse('''name: "old" input: "data" input_dim: 1 input_dim: 1 input_dim: 5 input_dim: 5
        layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 0 blobs_lr: 0
                 convolution_param { num_output: 2 kernel_size: 3 } }
        layers { name: "relu" type: RELU bottom: "conv" top: "conv" }''', "v1.prototxt"), phase=TRAIN)
    assert net.blobs["conv"].shape == (1, 2, 3, 3) and not net.params["conv"][0].param.requires_grad


def test_shared_params():
    net = net_for('''layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" } inner_product_param { num_output: 2 } }
                     layer { name: "b" type: "InnerProduct" bottom: "x" top: "b" param { name: "w" } inner_product_param { num_output: 2 } }''',
                  {"x": (1, 3)})
    assert net.params["a"][0].param is net.params["b"][0].param
    assert net.params["a"][1].param is not net.params["b"][1].param
    assert len(net.learnable_params()) == 3


# -- weights ---------------------------------------------------------------------------------
def test_save_and_copy_from_caffemodel_and_torch_file(tmp_path):
    src = tiny()
    for ext in (".caffemodel", ".pth"):
        path = str(tmp_path / f"w{ext}")
        src.save(path)
        dst = tiny(TRAIN)
        copied = dst.copy_from(path)
        assert {"conv1", "conv2", "fc"} <= set(copied)
        for name in src.params:
            for a, b in zip(src.params[name], dst.params[name]):
                assert torch.equal(a.data, b.data)
    via_ctor = Net(parse(TINY, "tiny.prototxt"), weights=str(tmp_path / "w.caffemodel"))
    assert torch.equal(via_ctor.params["fc"][0].data, src.params["fc"][0].data)


def test_copy_from_ignores_unknown_layers_and_checks_shapes(tmp_path):
    net = tiny()
    before = net.params["conv2"][0].data.clone()
    fc_w = np.arange(6 * 256, dtype=np.float32).reshape(6, 256)
    path = str(tmp_path / "m.caffemodel")
    write_caffemodel(path, CaffeModel("m", [
        LayerData("not_in_net", "ReLU", [BlobData(np.ones(3, np.float32))]),
        LayerData("fc", "InnerProduct", [BlobData(fc_w.reshape(1, 1, 6, 256), legacy=True), BlobData(np.ones(6, np.float32))]),
    ]))
    # a legacy (num, channels, height, width) blob fits a 2-D weight, as Caffe's ShapeEquals
    from frcnn.caffe.caffemodel import read_caffemodel

    assert read_caffemodel(path).layers[1].blobs[0].array.shape == (1, 1, 6, 256)
    assert net.copy_from(path) == ["fc"]
    assert torch.equal(net.params["fc"][0].data, torch.from_numpy(fc_w))
    assert torch.equal(net.params["conv2"][0].data, before)
    bad = str(tmp_path / "bad.caffemodel")
    write_caffemodel(bad, CaffeModel("m", [LayerData("conv2", "Convolution", [BlobData(np.zeros((5, 3, 1, 1), np.float32)),
                                                                             BlobData(np.zeros(5, np.float32))])]))
    with pytest.raises(ValueError, match=r"layer 'conv2' blob 0: shape \(5, 3, 1, 1\) in the file does not match \(5, 4, 1, 1\)"):
        net.copy_from(bad)
    write_caffemodel(bad, CaffeModel("m", [LayerData("conv2", "Convolution", [BlobData(np.zeros((5, 4, 1, 1), np.float32))])]))
    with pytest.raises(ValueError, match="layer 'conv2' has 1 blob"):
        net.copy_from(bad)


# -- Python layers ---------------------------------------------------------------------------
PY_MODULE = '''
import numpy as np
import torch
from frcnn.caffe.python_layer import PythonLayer, parse_param_str


class Doubler(PythonLayer):
    """tops: doubled bottom, a numpy float64 array, and a third top the prototxt may skip."""

    def __init__(self, factor, phase):
        super().__init__()
        self.factor = factor
        self.phase = phase
        self.calls = 0

    @classmethod
    def from_caffe(cls, param_str, phase, cfg):
        assert cfg is not None
        return cls(parse_param_str(param_str).get("factor", 2), phase)

    def top_shapes(self, bottom_shapes):
        return [bottom_shapes[0], (1,), None]

    def forward(self, x):
        self.calls += 1
        return x * self.factor, np.array([self.calls], dtype=np.float64), torch.zeros(1)

    def get_state(self):
        return {"calls": self.calls}

    def set_state(self, state):
        self.calls = int(state["calls"])


class NotALayer:
    pass
'''

PY_NET = '''layer {{ name: "py" type: "Python" bottom: "x" top: "y" top: "n"
  python_param {{ module: "{module}" layer: "{cls}" param_str: "'factor': 3" }} }}
layer {{ name: "conv" type: "Convolution" bottom: "y" top: "c" convolution_param {{ num_output: 2 kernel_size: 1 }} }}'''


@pytest.fixture
def py_module(tmp_path, monkeypatch):
    (tmp_path / "frcnn_test_pylayers.py").write_text(textwrap.dedent(PY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "frcnn_test_pylayers"


def test_python_layer_refused_unless_allowed(py_module):
    text = PY_NET.format(module=py_module, cls="Doubler")
    with pytest.raises(PrototxtError, match="Python module 'frcnn_test_pylayers' is not one of the known layer modules"):
        net_for(text, {"x": (1, 4, 2, 2)})
    net = net_for(text, {"x": (1, 4, 2, 2)}, allow_python_modules=[py_module])
    assert net.params["conv"][0].shape == (2, 4, 1, 1)  # sized through top_shapes before any forward
    x = torch.randn(1, 4, 2, 2)
    out = net.forward(x=x, blobs=["y", "n"])
    assert torch.allclose(out["y"], 3 * x)
    assert out["n"].dtype == torch.float32 and out["n"].tolist() == [1.0]  # numpy -> float32 tensor
    assert net.layers[1].phase == TEST and net.layers[1].calls == 1  # wrapped layer's attributes reachable
    assert net.layers[1].get_state() == {"calls": 1}
    with pytest.raises(PrototxtError, match="is not a frcnn.caffe.python_layer.PythonLayer subclass"):
        net_for(PY_NET.format(module=py_module, cls="NotALayer"), {"x": (1, 4, 2, 2)}, allow_python_modules=True)


def test_python_layer_top_count_and_lazy_weights(py_module, monkeypatch):
    import frcnn_test_pylayers as mod

    monkeypatch.setattr(mod.Doubler, "top_shapes", lambda self, shapes: None)
    net = net_for(PY_NET.format(module=py_module, cls="Doubler"), {"x": (1, 4, 2, 2)}, allow_python_modules=True)
    assert "conv" not in net.params  # weights made at the first forward, when the channels are known
    net.forward(x=torch.randn(1, 4, 2, 2))
    assert net.params["conv"][0].shape == (2, 4, 1, 1)
    too_many = PY_NET.format(module=py_module, cls="Doubler").replace('top: "n"', 'top: "n" top: "m" top: "k"')
    with pytest.raises(PrototxtError, match="returned 3 top"):
        net_for(too_many, {"x": (1, 4, 2, 2)}, allow_python_modules=True).forward(x=torch.randn(1, 4, 2, 2))


def test_upstream_module_names_map_to_ours():
    assert resolve_module("rpn.proposal_layer", None) == "frcnn.rpn.proposal_layer"
    assert resolve_module("roi_data_layer.layer", None) == "frcnn.roi_data.layer"
    assert resolve_module("rpn.anchor_target_layer", None) == "frcnn.rpn.anchor_target_layer"
    assert resolve_module("rpn.proposal_target_layer", None) == "frcnn.rpn.proposal_target_layer"
    assert resolve_module("frcnn.rpn.proposal_layer", None) == "frcnn.rpn.proposal_layer"
    for name in ("os", "subprocess", "rpn.generate"):
        with pytest.raises(PermissionError):
            resolve_module(name, None)


ZF_TRUNK = '''name: "ZF" input: "data" input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 96 kernel_size: 7 pad: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 3 alpha: 0.00005 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" pooling_param { kernel_size: 3 stride: 2 pad: 1 pool: MAX } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2" convolution_param { num_output: 256 kernel_size: 5 pad: 2 stride: 2 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { kernel_size: 3 stride: 2 pad: 1 pool: MAX } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3" convolution_param { num_output: 384 kernel_size: 3 pad: 1 } }
'''


@pytest.mark.parametrize(("h", "w", "fh", "fw"), [(600, 1000, 39, 64), (800, 1000, 51, 64), (1000, 1000, 64, 64)])
def test_blob_shapes_golden_zf_stride_16(h, w, fh, fw):
    net = Net(parse(ZF_TRUNK, "zf.prototxt"))
    assert net.blob_shapes(data=(1, 3, h, w))["conv3"] == (1, 384, fh, fw)
    assert net.blobs["conv3"].shape == (1, 384, 15, 15)  # the declared 224 x 224 input
    with pytest.raises(KeyError, match="'im_info' is not an input blob"):
        net.blob_shapes(im_info=(1, 3))


def test_inputs_and_python_layer_tops_follow_the_net_device(py_module):
    # the meta device stands in for a GPU: every tensor of the forward must end up there
    net = net_for(PY_NET.format(module=py_module, cls="Doubler"), {"x": (1, 4, 2, 2)}, allow_python_modules=True)
    net.to("meta")
    out = net.forward(x=np.ones((1, 4, 2, 2)), blobs=["n"])
    assert net.device.type == "meta"
    assert out["c"].device.type == "meta" and out["n"].device.type == "meta"  # numpy top moved too


def test_param_str_accepts_upstream_python_tuple_tag_only():
    import pytest as _pytest
    import yaml as _yaml

    from frcnn.caffe.python_layer import parse_param_str

    got = parse_param_str("'feat_stride': 16\n'scales': !!python/tuple [4, 8, 16, 32]")
    assert got == {"feat_stride": 16, "scales": (4, 8, 16, 32)}
    with _pytest.raises((ValueError, _yaml.YAMLError)):
        parse_param_str("'x': !!python/object/apply:os.system ['true']")
