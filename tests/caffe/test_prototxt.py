"""The protobuf text parser and writer, and the net-level upgrades (V1 layers, inputs, phases)."""

import math

import pytest

from frcnn.caffe.netspec import net_layers
from frcnn.caffe.prototxt import Enum, Message, PrototxtError, parse, parse_file, to_text, write_file

NET = r'''# a comment at the top
name: "VGG_ILSVRC_16_layers"   # trailing comment
input: "data"
input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }
layer {
  name: 'conv1_1' type: "Convolution"
  bottom: "data" top: "conv1_1"
  param { lr_mult: 0 decay_mult: 0 }
  param { lr_mult: 2.0 }
  convolution_param {
    num_output: 64 pad: 1 kernel_size: 3
    weight_filler { type: "gaussian" std: 1e-2 }
    bias_term: true
  }
}
layer < name: "pool" type: "Pooling" bottom: "conv1_1" top: "pool"
        pooling_param: { pool: MAX kernel_size: 2 stride: 2 } >;
layer { name: "py" type: "Python" top: "x"
  python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "'feat_stride': 16" } }
'''


def test_parse_structure_and_types():
    m = parse(NET, "net.prototxt")
    assert m.get_str("name") == "VGG_ILSVRC_16_layers"
    assert m.get_strs("input") == ["data"]
    assert m.get_msg("input_shape").get_ints("dim") == [1, 3, 224, 224]
    layers = m.get_msgs("layer")
    assert [x.get_str("name") for x in layers] == ["conv1_1", "pool", "py"]
    conv = layers[0]
    specs = conv.get_msgs("param")
    assert specs[0].get_float("lr_mult") == 0.0 and specs[1].get_float("lr_mult") == 2.0
    cp = conv.get_msg("convolution_param")
    assert cp.get_int("num_output") == 64
    assert cp.get_msg("weight_filler").get_float("std") == pytest.approx(0.01)
    assert cp.get_bool("bias_term") is True
    pool = layers[1].get_msg("pooling_param")
    assert pool.get_enum("pool") == "MAX" and isinstance(pool.get("pool"), Enum)
    assert layers[2].get_msg("python_param").get_str("param_str") == "'feat_stride': 16"
    # an absent sub-message reads as empty, as protobuf defaults
    assert conv.get_msg("pooling_param").fields == []
    assert conv.get_int("absent", 7) == 7


def test_scalars_escapes_lists_and_numbers():
    m = parse(r'''s: "a\"b\\c\n\t\101\x42" s2: 'it''s' t: "x" "y"
        f: -1.5e-3 g: .25 h: 5. i: -7 j: 0x1F k: inf l: -inf m: nan n: 3f
        b1: true b2: false e: TRAIN lst: [1, 2, 3] msgs: [{a: 1}, {a: 2}] empty: []''')
    assert m.get("s") == 'a"b\\c\n\tAB'
    assert m.get("s2") == "its"  # adjacent strings concatenate
    assert m.get("t") == "xy"
    assert m.get("f") == pytest.approx(-1.5e-3) and m.get("g") == 0.25 and m.get("h") == 5.0
    assert m.get("i") == -7 and m.get("j") == 31 and m.get("n") == 3.0
    assert m.get("k") == math.inf and m.get("l") == -math.inf and math.isnan(m.get("m"))
    assert m.get("b1") is True and m.get("b2") is False
    assert m.get("e") == "TRAIN" and isinstance(m.get("e"), Enum)
    assert m.get_ints("lst") == [1, 2, 3]
    assert [x.get_int("a") for x in m.get_msgs("msgs")] == [1, 2]
    assert "empty" not in m


def test_last_value_of_an_optional_field_wins():
    m = parse("a: 1 a: 2")
    assert m.get_int("a") == 2 and m.get_ints("a") == [1, 2]


@pytest.mark.parametrize(
    ("text", "line", "col", "expected"),
    [
        ('layer {\n  name: "a"\n', 3, 1, "expected a field name or '}', got end of file"),
        ("a: 1\nb c", 2, 3, "expected ':' or '{' after field name 'b', got 'c'"),
        ('x {\n  name: "abc\n}', 2, 9, "unterminated string"),
        ("x { y: }", 1, 8, "expected a value for field 'y', got '}'"),
        ("a: 12ab", 1, 4, "expected a number, got '12a'"),
        ("a: 1 }", 1, 6, "expected a field name, got '}'"),
        ("a: [1, 2", 1, 9, "expected ',' or ']' in the list of 'a', got end of file"),
        ("a: - x", 1, 6, "expected a number after '-'"),
        ("a: 1\n  @", 2, 3, "unexpected character '@'"),
        (r'a: "\q"', 1, 5, r"unknown escape \q"),
    ],
)
def test_errors_name_file_line_column_and_expectation(text, line, col, expected):
    with pytest.raises(PrototxtError) as e:
        parse(text, "bad.prototxt")
    msg = str(e.value)
    assert msg.startswith(f"bad.prototxt:{line}:{col}: "), msg
    assert expected in msg


def test_unclosed_brace_names_where_it_opened():
    with pytest.raises(PrototxtError, match=r"the '\{' of 'layer' at line 2 is never closed"):
        parse('name: "n"\nlayer {\n name: "a"\n', "f.prototxt")


def test_typed_getter_errors_name_the_field_position():
    m = parse('x: 1\nlayer {\n  kernel_size: "3"\n}', "t.prototxt")
    with pytest.raises(PrototxtError, match=r"t.prototxt:3:3: field 'kernel_size' expects an integer"):
        m.get_msg("layer").get_int("kernel_size")
    with pytest.raises(PrototxtError, match=r"expects one of MAX, AVE"):
        parse("pool: MIN").get_enum("pool", choices={"MAX": 0, "AVE": 1})
    assert parse("pool: 1").get_enum("pool", choices={"MAX": 0, "AVE": 1}) == "AVE"


def test_writer_round_trip_and_atomic_file(tmp_path):
    m = parse(NET, "net.prototxt")
    m.get_msgs("layer")[0].get_msg("convolution_param").set("num_output", 21)
    m.add("note", "quote \" backslash \\ newline \n tab \t bell \x07")
    text = to_text(m)
    again = parse(text)
    assert again == m
    assert again.get_msgs("layer")[0].get_msg("convolution_param").get_int("num_output") == 21
    path = str(tmp_path / "out.prototxt")
    write_file(path, m)
    assert parse_file(path) == m
    assert [p.name for p in tmp_path.iterdir()] == ["out.prototxt"]  # no temporary left behind


def test_message_editing():
    m = parse("a: 1 b: 2 a: 3")
    m.set("a", 9)
    assert m.get_ints("a") == [9] and [f.name for f in m.fields] == ["a", "b"]
    m.remove("b").add("c", Message().add("d", Enum("X")))
    assert to_text(m) == "a: 9\nc {\n  d: X\n}\n"
    c = m.copy()
    c.get_msg("c").set("d", Enum("Y"))
    assert m.get_msg("c").get("d") == "X"


def test_parse_file_errors(tmp_path):
    with pytest.raises(PrototxtError, match="cannot read"):
        parse_file(str(tmp_path / "missing.prototxt"))
    p = tmp_path / "bin.prototxt"
    p.write_bytes(b"name: \xff\xfe")
    with pytest.raises(PrototxtError, match="not a text file"):
        parse_file(str(p))


# -- net-level upgrades -------------------------------------------------------------------
def test_v1_layers_upgrade_types_and_learning_rates():
    m = parse('''layers { name: "c" type: CONVOLUTION bottom: "d" top: "c" blobs_lr: 1 blobs_lr: 2
                 weight_decay: 1 weight_decay: 0 convolution_param { num_output: 2 kernel_size: 1 } }
                 layers { name: "l" type: SOFTMAX_LOSS bottom: "c" bottom: "y" top: "loss" }
                 layers { name: "r" type: RELU bottom: "c" top: "c" include { phase: TEST } }''', "v1.prototxt")
    train = net_layers(m, "TRAIN")
    assert [x.get_str("type") for x in train] == ["Convolution", "SoftmaxWithLoss"]
    specs = train[0].get_msgs("param")
    assert [(s.get_float("lr_mult"), s.get_float("decay_mult")) for s in specs] == [(1, 1), (2, 0)]
    assert len(net_layers(m, "TEST")) == 3
    with pytest.raises(PrototxtError, match="unknown V1 layer type 'CONV'"):
        net_layers(parse('layers { name: "x" type: CONV }'), "TEST")
    with pytest.raises(PrototxtError, match="V1 enum type CONVOLUTION inside a 'layer' block"):
        net_layers(parse('layer { name: "x" type: CONVOLUTION }'), "TEST")


def test_inputs_become_an_input_layer():
    dims = net_layers(parse('input: "data" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 5 '
                            'input: "im_info" input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1'), "TEST")
    assert dims[0].get_str("type") == "Input" and dims[0].get_strs("top") == ["data", "im_info"]
    shapes = [s.get_ints("dim") for s in dims[0].get_msg("input_param").get_msgs("shape")]
    assert shapes == [[1, 3, 4, 5], [1, 3, 1, 1]]
    with pytest.raises(PrototxtError, match="needs 4 values per input"):
        net_layers(parse('input: "data" input_dim: 1 input_dim: 3'), "TEST")
    with pytest.raises(PrototxtError, match="mixes 'layer' and legacy 'layers'"):
        net_layers(parse('layer { name: "a" type: "ReLU" } layers { name: "b" type: RELU }'), "TEST")


def test_include_exclude_rules():
    m = parse('''layer { name: "a" type: "ReLU" include { phase: TRAIN } }
                 layer { name: "b" type: "ReLU" exclude { phase: TRAIN } }
                 layer { name: "c" type: "ReLU" }
                 layer { name: "d" type: "ReLU" include { phase: TEST stage: "deploy" } }
                 layer { name: "e" type: "ReLU" include { min_level: 1 } }''')

    def names(phase, **kw):
        return [x.get_str("name") for x in net_layers(m, phase, **kw)]

    assert names("TRAIN") == ["a", "c"]
    assert names("TEST") == ["b", "c"]
    assert names("TEST", stages=("deploy",), level=1) == ["b", "c", "d", "e"]
    with pytest.raises(PrototxtError, match="include rules or exclude rules, not both"):
        net_layers(parse('layer { name: "x" type: "ReLU" include { phase: TEST } exclude { phase: TRAIN } }'), "TEST")
