"""Mutated prototxts: each one parses (and builds) or raises PrototxtError, never anything else
(no RecursionError, IndexError, UnicodeDecodeError, KeyError from deep inside the engine)."""

import os
import pathlib
import warnings

import pytest

pytest.importorskip("hypothesis")  # a test requirement (README); a machine without it skips these

from hypothesis import given

from frcnn.caffe import TEST, TRAIN, Net
from frcnn.caffe.netspec import net_layers
from frcnn.caffe.prototxt import PrototxtError, parse_bytes, to_text
from frcnn.caffe.solver_param import read_solver
from frcnn.caffe.validate import check

from .mutations import field_edits, fuzz_settings, mutate, mutate_message, mutations

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# every layer type the engine builds without a Python module, on small shapes
BUILD_SEED = b'''name: "fuzz"
input: "data" input_shape { dim: 1 dim: 3 dim: 12 dim: 12 }
input: "label" input_shape { dim: 1 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.1 } }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 3 alpha: 0.0005 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "bn" type: "BatchNorm" bottom: "pool1" top: "pool1" batch_norm_param { use_global_stats: true } }
layer { name: "scale" type: "Scale" bottom: "pool1" top: "pool1" scale_param { bias_term: true } }
layer { name: "split" type: "Split" bottom: "pool1" top: "a" top: "b" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" eltwise_param { operation: SUM coeff: 1 coeff: -1 } }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "a" top: "cat" concat_param { axis: 1 } }
layer { name: "flat" type: "Flatten" bottom: "cat" top: "flat" }
layer { name: "shape" type: "Reshape" bottom: "flat" top: "flat2" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "flat2" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.5 } include { phase: TRAIN } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" loss_param { ignore_label: -1 } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" accuracy_param { top_k: 1 } }
layer { name: "dummy" type: "DummyData" top: "d" dummy_data_param { shape { dim: 2 dim: 4 } data_filler { type: "uniform" } } }
layer { name: "silence" type: "Silence" bottom: "d" }
'''

V1_SEED = b'''name: "v1" input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" blobs_lr: 1 blobs_lr: 2 weight_decay: 1
  weight_decay: 0 convolution_param { num_output: 2 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "pool" type: POOLING bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 2 } }
'''

SEEDS = [BUILD_SEED, V1_SEED] + [
    pathlib.Path(ROOT, "models/pascal_voc/SMALL", p).read_bytes()
    for p in ("faster_rcnn_end2end/test.prototxt", "faster_rcnn_alt_opt/stage1_rpn_train.prototxt")
]
SOLVER_SEED = b'''net_param { name: "n" input: "x" input_shape { dim: 1 dim: 2 }
  layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" inner_product_param { num_output: 2 } } }
base_lr: 0.001 lr_policy: "multistep" stepvalue: 10 stepvalue: 20 gamma: 0.1 momentum: 0.9
weight_decay: 0.0005 display: 20 max_iter: 100 snapshot: 0 snapshot_prefix: "x" iter_size: 2 solver_mode: GPU
'''


def _parse(raw: bytes):
    msg = parse_bytes(raw, "fuzz.prototxt")
    parse_bytes(to_text(msg).encode(), "again.prototxt")  # what we write, we read
    return msg


@pytest.mark.parametrize("seed", range(len(SEEDS)))
@given(edits=mutations)
@fuzz_settings(500)
def test_mutated_nets_parse_check_and_filter_or_raise_prototxt_errors(seed, edits):
    try:
        msg = _parse(mutate(SEEDS[seed], edits))
        check(msg, "NetParameter")
        net_layers(msg, TRAIN)
        net_layers(msg, TEST)
    except PrototxtError:
        pass


@given(edits=mutations)
@fuzz_settings(800)
def test_mutated_nets_build_or_raise_prototxt_errors(edits):
    raw = mutate(BUILD_SEED, edits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for phase in (TRAIN, TEST):
            try:
                Net(_parse(raw), phase=phase)
            except PrototxtError:
                pass


@pytest.mark.parametrize("seed", [0, 1])
@given(edits=field_edits)
@fuzz_settings(600)
def test_nets_with_mutated_fields_build_or_raise_prototxt_errors(seed, edits):
    """Well-formed text with wrong values, missing, repeated, renamed or reordered fields: this
    reaches the schema check and every layer's own checks, where byte edits mostly stop at the
    tokenizer."""
    msg = mutate_message(_parse(SEEDS[seed]), edits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for phase in (TRAIN, TEST):
            try:
                Net(_parse(to_text(msg).encode()), phase=phase)
            except PrototxtError:
                pass


@given(edits=mutations)
@fuzz_settings(500)
def test_mutated_solvers_read_or_raise_prototxt_errors(edits):
    try:
        read_solver(_parse(mutate(SOLVER_SEED, edits)))
    except PrototxtError:
        pass


def test_the_seeds_themselves_are_valid():
    for seed in SEEDS:
        check(_parse(seed), "NetParameter")
    for phase in (TRAIN, TEST):
        assert len(Net(_parse(BUILD_SEED), phase=phase).layers) == (19 if phase == TRAIN else 18)
    assert read_solver(_parse(SOLVER_SEED)).iter_size == 2
