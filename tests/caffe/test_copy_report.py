"""Net.copy_from reports what it copied, warns for each net layer with parameters that the file
leaves alone, and refuses a file that fills nothing (the model of another net), unless asked."""

import logging

import numpy as np
import pytest
import torch

from frcnn.caffe import TRAIN, Net, SGDSolver
from frcnn.caffe.caffemodel import BlobData, CaffeModel, LayerData, write_caffemodel
from frcnn.caffe.prototxt import parse
from frcnn.caffe.weights import CopyReport, WeightsError, WeightsWarning

NET = '''name: "tiny"
input: "data" input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "fc_twin" type: "InnerProduct" bottom: "conv1" top: "fc_twin" param { name: "tw" } param { name: "tb" }
  inner_product_param { num_output: 3 } }
layer { name: "fc_shared" type: "InnerProduct" bottom: "conv1" top: "fc_shared" param { name: "tw" } param { name: "tb" }
  inner_product_param { num_output: 3 } }
'''


def tiny() -> Net:
    return Net(parse(NET, "tiny.prototxt"))


def model(tmp_path, name: str, *layers: LayerData) -> str:
    path = str(tmp_path / name)
    write_caffemodel(path, CaffeModel("m", list(layers)))
    return path


def conv1() -> LayerData:
    return LayerData("conv1", "Convolution", [BlobData(np.full((2, 3, 3, 3), 0.5, np.float32)),
                                              BlobData(np.ones(2, np.float32))])


def test_a_model_that_shares_no_layer_with_the_net_is_refused(tmp_path):
    path = model(tmp_path, "other.caffemodel",
                 LayerData("conv1_1", "Convolution", [BlobData(np.zeros((4, 3, 3, 3), np.float32))]),
                 LayerData("relu1", "ReLU", []))  # a namesake without blobs fills nothing
    net = tiny()
    before = net.params["conv1"][0].data.clone()
    with pytest.raises(WeightsError) as e:
        net.copy_from(path)
    assert str(e.value) == (
        f"{path}: no weights copied into net 'tiny' (tiny.prototxt): no layer with parameters has a namesake in "
        "the file (the net's: conv1, fc, fc_twin, fc_shared; the file's: conv1_1); is it the model for another "
        "net? Pass allow_empty=True to load nothing on purpose")
    assert torch.equal(net.params["conv1"][0].data, before)
    with pytest.raises(WeightsError, match="no weights copied into net 'tiny'"):
        Net(parse(NET, "tiny.prototxt"), weights=path)
    with pytest.warns(WeightsWarning, match="net layer 'conv1'"):
        report = net.copy_from(path, allow_empty=True)
    assert list(report) == ["relu1"] and report.blobs == 0 and report.ignored == ["conv1_1"]


def test_a_partial_load_reports_counts_and_warns_for_each_untouched_layer(tmp_path, caplog):
    path = model(tmp_path, "part.caffemodel", conv1(), LayerData("extra", "ReLU", []))
    net = tiny()
    with pytest.warns(WeightsWarning) as rec, caplog.at_level(logging.INFO, "frcnn.caffe.weights"):
        report = net.copy_from(path)
    assert isinstance(report, CopyReport) and report == ["conv1"]  # still the list of layers copied
    assert (report.blobs, report.values) == (2, 56)
    assert report.missing == ["fc", "fc_twin", "fc_shared"] and report.ignored == ["extra"]
    assert [str(w.message) for w in rec] == [
        f"{path}: net layer '{n}' (InnerProduct) has parameters but the file has no layer of that name: it keeps "
        "its initial values" for n in report.missing]
    assert report.summary() == (
        f"copied 1 layer (2 blobs, 56 values) from {path} into net 'tiny'; 3 layers with parameters kept their "
        "initial values: fc, fc_twin, fc_shared; 1 layer of the file not in the net")
    assert report.summary() in caplog.text
    assert torch.equal(net.params["conv1"][0].data, torch.full((2, 3, 3, 3), 0.5))


def test_layers_sharing_copied_parameters_are_not_reported_missing(tmp_path, recwarn):
    src = tiny()
    path = str(tmp_path / "all.caffemodel")
    src.save(path)
    report = tiny().copy_from(path)
    assert report.missing == [] and report.blobs == 8
    assert not [w for w in recwarn if issubclass(w.category, WeightsWarning)]
    # only the first of two layers sharing their blobs is in the file: the second is filled too
    path = model(tmp_path, "twin.caffemodel", conv1(),
                 LayerData("fc_twin", "InnerProduct", [BlobData(np.ones((3, 8), np.float32)), BlobData(np.ones(3, np.float32))]))
    with pytest.warns(WeightsWarning, match="'fc'"):
        report = tiny().copy_from(path)
    assert report.missing == ["fc"]


def test_the_solver_logs_what_its_initial_weights_filled(tmp_path, caplog):
    path = model(tmp_path, "init.caffemodel", conv1())
    net_text = NET + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }\n'
    net_text = net_text.replace('input: "data"', 'input: "label" input_shape { dim: 1 } input: "data"')
    solver = parse(f'net_param {{ {net_text} }} base_lr: 0.1', "s.prototxt")
    with pytest.warns(WeightsWarning), caplog.at_level(logging.INFO, "frcnn.caffe.solver"):
        s = SGDSolver(solver, weights=path)
    assert s.net.phase == TRAIN
    assert f"copied 1 layer (2 blobs, 56 values) from {path} into net 'tiny'" in caplog.text
