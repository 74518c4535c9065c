"""Prototxt fields checked against caffe.proto's schema: misspelt names, wrong kinds, out-of-range
integers, unknown enum names and repeated singular fields are errors naming file:line:col and the
field, for nets (new and V1 format) and solvers; known fields the engine ignores stay accepted."""

import pytest

from frcnn.caffe import TEST, TRAIN, Net
from frcnn.caffe.prototxt import PrototxtError, parse, parse_file
from frcnn.caffe.schema import ENUMS, MESSAGES, SCALARS
from frcnn.caffe.solver_param import read_solver
from frcnn.caffe.validate import check

HEAD = 'name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 28 dim: 28 }\n'
CONV = 'layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv"\n  convolution_param {{ {} }} }}\n'


def net(text: str, phase: str = TEST) -> Net:
    return Net(parse(HEAD + text, "net.prototxt"), phase=phase)


def test_a_misspelt_stride_is_an_error_not_a_default(tmp_path):
    ok = net(CONV.format("num_output: 4 kernel_size: 3 pad: 1 stride: 2"))
    assert ok.blob_shapes()["conv"] == (1, 4, 14, 14)
    path = tmp_path / "net.prototxt"
    path.write_text(HEAD + CONV.format("num_output: 4 kernel_size: 3 pad: 1 strid: 2"))
    with pytest.raises(PrototxtError) as e:
        Net(str(path))
    assert str(e.value) == (f"{path}:5:59: 'strid' is not a ConvolutionParameter field "
                            "(in convolution_param of layer 'conv'; did you mean 'stride'?)")


@pytest.mark.parametrize(("layer", "where", "message"), [
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "data" relu_param { negative_slop: 0.1 } }',
     "4:72", "'negative_slop' is not a ReLUParameter field (in relu_param of layer 'r'; did you mean 'negative_slope'?)"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "data" relux_param { negative_slope: 0.1 } }',
     "4:59", "'relux_param' is not a LayerParameter field (in layer 'r'; did you mean 'relu_param'?)"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\nnmae: "x"',
     "5:1", "'nmae' is not a NetParameter field (did you mean 'name'?)"),
    (('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 '
     'kernel_size: 1 weight_filler { type: "gaussian" sdt: 0.1 } } }'),
     "4:145", ("'sdt' is not a FillerParameter field (in weight_filler of convolution_param of layer 'c'; "
              "did you mean 'std'?)")),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "data" include { phaze: TRAIN } }',
     "4:69", "'phaze' is not a NetStateRule field (in include of layer 'r'; did you mean 'phase'?)"),
    (('layer { name: "c" type: "Convolution" bottom: "data" top: "c" param { lr_mul: 1 } '
     'convolution_param { num_output: 2 kernel_size: 1 } }'),
     "4:71", "'lr_mul' is not a ParamSpec field (in param of layer 'c'; did you mean 'lr_mult'?)"),
    ('layer { name: "r" type: "ReLU" bottom: "data" top: "data" frobnicate: 1 }',
     "4:59", "'frobnicate' is not a LayerParameter field (in layer 'r')"),
])
def test_unknown_fields_anywhere_in_a_net_name_file_line_column_and_field(layer, where, message):
    with pytest.raises(PrototxtError) as e:
        net(layer)
    assert str(e.value) == f"net.prototxt:{where}: {message}"


@pytest.mark.parametrize(("params", "message"), [
    ("num_output: 4 kernel_size: 3 convolution_param: 3", r"'convolution_param' is not a ConvolutionParameter"),
    ("num_output { } kernel_size: 3", r"5:23: field 'num_output' expects an integer, got a \{ \} block"),
    ("num_output: 4 kernel_size: 3 pad: -1", r"field 'pad' must not be negative, got -1 \(in convolution_param"),
    ("num_output: 99999999999 kernel_size: 3", r"field 'num_output' is out of range for uint32, got 99999999999"),
    ("num_output: 4 kernel_size: 3 engine: CUDA", r"field 'engine' expects one of DEFAULT, CAFFE, CUDNN, got CUDA"),
    ("num_output: 4 kernel_size: 3 engine: 7", r"field 'engine' has no enum value 7"),
    ("num_output: 4 kernel_size: 3 bias_term: maybe", r"field 'bias_term' expects a boolean, got the bare word maybe"),
    ("num_output: 2 num_output: 4 kernel_size: 3",
     (r"5:37: field 'num_output' is given more than once \(it takes one value; first given at line 5\) "
     r"\(in convolution_param of layer 'conv'\)")),
    ('num_output: 4 kernel_size: 3 weight_filler { type: gaussian }', r"field 'type' expects a string, got the bare word gaussian \(in weight_filler"),
])
def test_values_of_the_wrong_kind_are_refused_as_protobuf_does(params, message):
    with pytest.raises(PrototxtError, match=message):
        net(CONV.format(params))


def test_fields_caffe_knows_but_the_engine_ignores_keep_working():
    n = net('force_backward: true debug_info: false state { phase: TEST level: 0 }\n'
            + CONV.format("num_output: 4 kernel_size: 3 engine: CUDNN force_nd_im2col: false") +
            'layer { name: "r" type: "ReLU" bottom: "conv" top: "conv" relu_param { engine: CAFFE } phase: TEST '
            'transform_param { mirror: true mean_value: 104 } }')
    assert [x.name for x in n.layers] == ["input", "conv", "r"]
    # and fields the engine refuses still get the engine's own "not supported" message
    with pytest.raises(PrototxtError, match="STOCHASTIC pooling is not supported"):
        net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 } }')


def test_pooling_keeps_two_values_for_height_and_width():
    n = net('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 2 kernel_size: 4 '
            'stride: 2 stride: 4 } }')
    assert n.blob_shapes()["p"] == (1, 3, 14, 7)


V1 = '''name: "CaffeNet" input: "data" input_dim: 1 input_dim: 3 input_dim: 32 input_dim: 32
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" blobs_lr: 1 blobs_lr: 2 weight_decay: 1
  weight_decay: 0 convolution_param { num_output: 8 kernel_size: 5 stride: 2
  weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 } } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layers { name: "norm1" type: LRN bottom: "pool1" top: "norm1" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layers { name: "fc6" type: INNER_PRODUCT bottom: "norm1" top: "fc6" param: "fc6_w" param: "fc6_b"
  inner_product_param { num_output: 16 } }
layers { name: "drop6" type: DROPOUT bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } include { phase: TRAIN } }
layers { name: "prob" type: SOFTMAX bottom: "fc6" top: "prob" }
'''


def test_v1_layers_files_pass_the_schema_and_their_typos_do_not():
    for phase in (TRAIN, TEST):
        n = Net(parse(V1, "v1.prototxt"), phase=phase)
        assert n.blob_shapes()["fc6"] == (1, 16)
    bad = V1.replace("blobs_lr: 2", "blob_lr: 2")
    with pytest.raises(PrototxtError, match=r"v1.prototxt:2:82: 'blob_lr' is not a V1LayerParameter field "
                                            r"\(in layer 'conv1'; did you mean 'blobs_lr'\?\)"):
        Net(parse(bad, "v1.prototxt"))
    with pytest.raises(PrototxtError, match="unknown V1 layer type 'CONVOLUTON'"):
        Net(parse(V1.replace("type: CONVOLUTION", "type: CONVOLUTON"), "v1.prototxt"))


def test_solver_files_are_checked_to_the_last_nested_field(tmp_path):
    with pytest.raises(PrototxtError, match=r"s.prototxt:1:10: 'momentun' is not a SolverParameter field "
                                            r"\(did you mean 'momentum'\?\)"):
        read_solver(parse('net: "x" momentun: 0.9', "s.prototxt"))
    with pytest.raises(PrototxtError, match=r"s.prototxt:1:33: 'phse' is not a NetState field \(in train_state"):
        read_solver(parse('net: "x" train_state { level: 0 phse: TRAIN }', "s.prototxt"))
    with pytest.raises(PrototxtError, match=r"'kernal_size' is not a ConvolutionParameter field "
                                            r"\(in convolution_param of layer 'c'; did you mean 'kernel_size'\?\)"):
        read_solver(parse('net_param { layer { name: "c" type: "Convolution" convolution_param { kernal_size: 3 } } }',
                          "s.prototxt"))
    with pytest.raises(PrototxtError, match=r"field 'solver_mode' expects one of CPU, GPU, got TPU"):
        read_solver(parse('net: "x" solver_mode: TPU', "s.prototxt"))
    with pytest.raises(PrototxtError, match=r"field 'max_iter' is out of range for int32, got 4294967296"):
        read_solver(parse('net: "x" max_iter: 4294967296', "s.prototxt"))
    path = tmp_path / "solver.prototxt"
    path.write_text('train_net: "t.prototxt"\nbase_lr: 0.001\ndisplay: 20\nlr_plicy: "step"\n')
    with pytest.raises(PrototxtError, match=rf"{path}:4:1: 'lr_plicy' is not a SolverParameter field"):
        read_solver(str(path))
    # the solver's engine-specific leniency: later Caffe's 'weights' field is known
    assert read_solver(parse('net: "x" weights: "w.caffemodel"', "s.prototxt")).net == "x"


def test_the_schema_tables_are_consistent():
    for name, fields in MESSAGES.items():
        for field, spec in fields.items():
            kind = spec.lstrip("*")
            assert kind in SCALARS or kind in ENUMS or kind in MESSAGES or kind in ("any", "v1type", "layertype"), \
                (name, field, kind)
    # every *_param of a layer is a message named like Caffe's (a typo here would reject valid files)
    for field, kind in MESSAGES["LayerParameter"].items():
        if field.endswith("_param"):
            assert kind.endswith("Parameter"), field


def test_every_shipped_model_file_passes_the_schema():
    import glob
    import os

    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    files = sorted(glob.glob(os.path.join(root, "models", "**", "*.prototxt"), recursive=True))
    assert len(files) > 50
    for path in files:
        msg = parse_file(path)
        check(msg, "SolverParameter" if "solver" in os.path.basename(path) else "NetParameter")
