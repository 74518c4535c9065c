"""Nets that Caffe refuses and we used to build or crash on: two producers of one blob, empty
files, nesting past protobuf's depth limit, blobs too large to allocate, kernels larger than their
padded input. Each error names the file, the layer and the problem."""

import pytest
import torch

from frcnn.caffe import TEST, TRAIN, Net
from frcnn.caffe.layers import linear
from frcnn.caffe.prototxt import PrototxtError, parse, parse_file

HEAD = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'


def net(text: str, phase: str = TEST, head: str = HEAD) -> Net:
    return Net(parse(head + text, "n.prototxt"), phase=phase)


# -- one producer per blob -------------------------------------------------------------------
def test_two_layers_writing_one_top_is_an_error_naming_both_and_the_blob():
    with pytest.raises(PrototxtError) as e:
        net('layer { name: "a" type: "ReLU" bottom: "data" top: "x" }\n'
            'layer { name: "b" type: "Sigmoid" bottom: "data" top: "x" }')
    assert str(e.value).startswith("n.prototxt:4:50: top blob 'x' produced by multiple sources: layers 'a' and 'b'")


def test_in_place_layers_and_fan_out_are_fine_but_in_place_must_be_position_for_position():
    n = net('layer { name: "a" type: "ReLU" bottom: "data" top: "data" }\n'
            'layer { name: "b" type: "Dropout" bottom: "data" top: "data" }\n'
            'layer { name: "c" type: "Sigmoid" bottom: "data" top: "s" }\n'
            'layer { name: "d" type: "TanH" bottom: "data" top: "t" }', TRAIN)
    assert n.outputs == ["s", "t"]
    with pytest.raises(PrototxtError, match="top blob 'data' produced by multiple sources: layers 'input' and 'e' "
                                            r"\(only an in-place layer, whose top 1 is its bottom 1, may write"):
        net('layer { name: "e" type: "Split" bottom: "data" top: "x" top: "data" }')
    with pytest.raises(PrototxtError, match="top blob 'y' produced by multiple sources: layers 's' and 's'"):
        net('layer { name: "s" type: "Split" bottom: "data" top: "y" top: "y" }')
    with pytest.raises(PrototxtError, match="top blob 'data' produced by multiple sources: layers 'input' and 'input'"):
        net("", head='input: "data" input: "data"\n')


def test_layers_of_the_other_phase_may_write_the_same_blob():
    n = net('layer { name: "a" type: "ReLU" bottom: "data" top: "x" include { phase: TRAIN } }\n'
            'layer { name: "b" type: "Sigmoid" bottom: "data" top: "x" include { phase: TEST } }')
    assert [x.name for x in n.layers] == ["input", "b"]


# -- empty nets ------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", 'name: "empty"\n'])
def test_an_empty_prototxt_is_an_error_naming_the_file(tmp_path, text):
    path = tmp_path / "empty.prototxt"
    path.write_text(text)
    with pytest.raises(PrototxtError, match=rf"^{path}: the net has no layers and no inputs \(an empty file\?\)$"):
        Net(str(path))


def test_a_net_with_no_layer_in_the_phase_is_an_error():
    with pytest.raises(PrototxtError, match=r"^n.prototxt: no layer of the net runs in the TEST phase"):
        Net(parse('layer { name: "a" type: "DummyData" top: "x" dummy_data_param { shape { dim: 1 } } '
                  'include { phase: TRAIN } }', "n.prototxt"))


# -- nesting depth ---------------------------------------------------------------------------
def test_deep_nesting_is_a_parse_error_with_file_and_line_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.prototxt"
    path.write_text("layer {\n" + "a {" * 5000 + "}" * 5000 + "\n}\n")
    with pytest.raises(PrototxtError, match=rf"^{path}:2:300: messages nested more than 100 levels deep \(at 'a'\)$"):
        parse_file(str(path))
    assert parse("a {" * 100 + "}" * 100).get_msg("a") is not None  # protobuf's limit itself is fine
    with pytest.raises(PrototxtError, match="nested more than 100 levels"):
        parse("a: [" + "{ a: [" * 120 + "]}" * 120 + "]")  # lists of messages count too


# -- sizes -----------------------------------------------------------------------------------
def test_a_huge_num_output_is_refused_at_build_time_naming_the_layer_and_shape():
    with pytest.raises(PrototxtError) as e:
        net('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
            'inner_product_param { num_output: 2000000000 } }')
    assert str(e.value) == ("n.prototxt:3:7: layer 'fc' (InnerProduct): blob 0 would have shape (2000000000, 192): "
                            "384,000,000,000 values, more than a Caffe blob may hold (2,147,483,647); check "
                            "num_output and the bottom sizes")
    with pytest.raises(PrototxtError, match=r"field 'num_output' is out of range for uint32, got 20000000000"):
        net('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
            'inner_product_param { num_output: 20000000000 } }')


def test_blobs_sized_at_the_first_forward_are_checked_too():
    n = net('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
            'inner_product_param { num_output: 1000000 } }', head='input: "data"\n')
    with pytest.raises(PrototxtError, match=r"layer 'fc' \(InnerProduct\): blob 0 would have shape \(1000000, 3000\)"):
        n.forward(data=torch.zeros(1, 3, 10, 100))


def test_a_huge_top_blob_is_refused_at_build_time():
    with pytest.raises(PrototxtError, match=r"n.prototxt:\d+:\d+: field 'top': layer 'c': top blob 'c' would have "
                                            r"shape \(1, 100000, 1000, 1000\): 100,000,000,000 values"):
        net('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
            'convolution_param { num_output: 100000 kernel_size: 1 } }',
            head='input: "data" input_shape { dim: 1 dim: 3 dim: 1000 dim: 1000 }\n')


def test_an_allocation_failure_names_the_layer_and_shape(monkeypatch):
    real_empty = torch.empty

    def failing_empty(*shape, **kw):
        if shape and shape[0] == (64, 3, 3, 3):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
        return real_empty(*shape, **kw)

    monkeypatch.setattr(torch, "empty", failing_empty)
    with pytest.raises(MemoryError, match=r"n.prototxt:3:7: layer 'conv' \(Convolution\): cannot allocate blob 0 of "
                                          r"shape \(64, 3, 3, 3\) \(6,912 bytes\): .*can't allocate memory"):
        net('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 64 kernel_size: 3 } }')


def test_running_out_of_memory_in_forward_names_the_layer(monkeypatch):
    n = net('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 4 kernel_size: 3 } }')

    def oom(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes")

    monkeypatch.setattr(linear.F, "conv2d", oom)
    with pytest.raises(MemoryError, match=r"layer 'conv' \(Convolution\) ran out of memory on bottoms "
                                          r"\(1, 3, 8, 8\): DefaultCPUAllocator"):
        n.forward(data=torch.zeros(1, 3, 8, 8))

    def cuda_oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(linear.F, "conv2d", cuda_oom)
    with pytest.raises(torch.OutOfMemoryError, match=r"layer 'conv' \(Convolution\) ran out of memory on bottoms "
                                                     r"\(1, 3, 8, 8\): CUDA out of memory"):
        n.forward(data=torch.zeros(1, 3, 8, 8))

    def bug(*args, **kwargs):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(linear.F, "conv2d", bug)
    with pytest.raises(RuntimeError, match="^some other failure$"):  # other errors pass through untouched
        n.forward(data=torch.zeros(1, 3, 8, 8))


# -- kernels larger than the input -----------------------------------------------------------
def test_a_kernel_larger_than_the_padded_input_is_named_at_build_time():
    with pytest.raises(PrototxtError) as e:
        net('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 4 kernel_size: 11 pad: 1 } }')
    assert str(e.value) == ("n.prototxt:3:69: layer 'conv' (Convolution): kernel (11, 11) is larger than the padded "
                            "input: a 8x8 bottom with pad (1, 1) gives no output")
    with pytest.raises(PrototxtError, match=r"kernel \(9, 9\) \(dilated by \(4, 4\)\) is larger"):
        net('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 4 kernel_size: 3 dilation: 4 } }')
    with pytest.raises(PrototxtError, match=r"layer 'pool' \(Pooling\): kernel \(12, 12\) is larger than the padded "
                                            r"input: pooling a 8x8 bottom with pad \(1, 1\) gives no output"):
        net('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
            'pooling_param { kernel_size: 12 pad: 1 stride: 2 } }')
    # exactly the padded size still gives one output, as Caffe
    assert net('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
               'convolution_param { num_output: 4 kernel_size: 10 pad: 1 } }').blob_shapes()["conv"] == (1, 4, 1, 1)


def test_a_kernel_larger_than_an_undeclared_input_is_named_in_forward_and_in_blob_shapes():
    n = net('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 4 kernel_size: 11 } }', head='input: "data"\n')
    with pytest.raises(PrototxtError, match=r"layer 'conv' \(Convolution\): kernel \(11, 11\) is larger than the "
                                            r"padded input: a 5x7 bottom"):
        n.forward(data=torch.zeros(1, 3, 5, 7))
    with pytest.raises(PrototxtError, match=r"layer 'conv' \(Convolution\): kernel \(11, 11\) is larger"):
        n.blob_shapes(data=(1, 3, 5, 7))
