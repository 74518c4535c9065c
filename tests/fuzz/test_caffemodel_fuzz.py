"""Mutated .caffemodel bytes: each one parses or raises CaffeModelError, and what parses is
copied into a net or refused with a WeightsError; never a struct.error, IndexError, MemoryError,
UnicodeDecodeError or numpy error."""

import warnings

import numpy as np
import pytest

pytest.importorskip("hypothesis")  # a test requirement (README); a machine without it skips these

from hypothesis import given
from hypothesis import strategies as st

from frcnn.caffe import wire
from frcnn.caffe.caffemodel import BlobData, CaffeModel, CaffeModelError, LayerData, parse_caffemodel
from frcnn.caffe.weights import WeightsError, copy_blobs

from ..caffe.helpers import net_for
from .mutations import fuzz_settings, mutate, mutations

LAYERS = '''
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 3 } }
'''


def _net():
    return net_for(LAYERS, {"data": (1, 2, 3, 3)})


def _new_format(tmp_path) -> bytes:
    from frcnn.caffe.caffemodel import write_caffemodel

    rng = np.random.default_rng(0)
    model = CaffeModel("fuzz", [
        LayerData("data", "Input", [], [], ["data"]),
        LayerData("conv", "Convolution", [BlobData(rng.standard_normal((2, 2, 2, 2)).astype(np.float32)),
                                          BlobData(np.ones(2, np.float32), legacy=True)], ["data"], ["conv"]),
        LayerData("fc", "InnerProduct", [BlobData(rng.standard_normal((3, 8)).astype(np.float32)),
                                         BlobData(np.zeros(3, np.float32))], ["conv"], ["fc"]),
    ])
    path = tmp_path / "new.caffemodel"
    write_caffemodel(str(path), model)
    return path.read_bytes()


def _v1_format() -> bytes:
    """Legacy ``layers`` entries (V1LayerParameter) with num/channels/height/width blobs, unpacked
    float data and packed double data, as old Caffe wrote them."""
    def blob(dims, values, double=False):
        head = b"".join(wire.varint_field(i + 1, d) for i, d in enumerate(dims))
        if double:
            return head + wire.length_delimited(8, np.asarray(values, "<f8").tobytes())
        return head + b"".join(wire.float_field(5, v) for v in values)

    conv = (wire.string_field(4, "conv") + wire.varint_field(5, 4) + wire.string_field(2, "data")
            + wire.string_field(3, "conv") + wire.length_delimited(6, blob((2, 2, 2, 2), [0.5] * 16))
            + wire.length_delimited(6, blob((1, 1, 1, 2), [1, 2], double=True)))
    fc = (wire.string_field(4, "fc") + wire.varint_field(5, 14) + wire.string_field(2, "conv")
          + wire.string_field(3, "fc") + wire.length_delimited(6, blob((1, 1, 3, 8), [0.25] * 24))
          + wire.length_delimited(6, blob((1, 1, 1, 3), [0, 0, 0])))
    return wire.string_field(1, "v1") + wire.length_delimited(2, conv) + wire.length_delimited(2, fc)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return [_new_format(tmp_path_factory.mktemp("seed")), _v1_format()]


def _load(raw: bytes, net) -> None:
    try:
        model = parse_caffemodel(bytearray(raw), "fuzz.caffemodel")
    except CaffeModelError:
        return
    assert all(isinstance(b.array, np.ndarray) and b.array.dtype == np.float32 for x in model.layers for b in x.blobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            copy_blobs(net, [(x.name, x.blobs) for x in model.layers], "fuzz.caffemodel", allow_empty=True)
        except WeightsError:
            pass


def test_the_seeds_load_completely(seeds):
    for raw in seeds:
        net = _net()
        report = copy_blobs(net, [(x.name, x.blobs) for x in parse_caffemodel(bytearray(raw), "s").layers], "s")
        assert list(report) == ["conv", "fc"] and report.blobs == 4 and not report.missing


@pytest.mark.parametrize("which", [0, 1])
@given(edits=mutations)
@fuzz_settings(700)
def test_mutated_caffemodels_parse_and_copy_or_raise_our_errors(seeds, which, edits):
    _load(mutate(seeds[which], edits), _NET)


_NET = _net()


# random well-framed protobuf messages on the field numbers the reader looks at, nested as
# NetParameter > layer(s) > blobs > shape: wrong wire types, huge or negative dims, odd lengths
def _encode(fields) -> bytes:
    out = b""
    for number, kind, value in fields:
        if kind == "varint":
            out += wire.varint_field(number, value)
        elif kind == "fixed32":
            out += wire.key(number, wire.FIXED32) + value[:4].ljust(4, b"\0")
        elif kind == "fixed64":
            out += wire.key(number, wire.FIXED64) + value[:8].ljust(8, b"\0")
        elif kind == "bytes":
            out += wire.length_delimited(number, value)
        else:
            out += wire.length_delimited(number, _encode(value))
    return out


_numbers = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 100, 1001])
_scalar = st.one_of(
    st.tuples(_numbers, st.just("varint"), st.one_of(st.integers(0, 40), st.sampled_from([2**31, 2**63, 2**64 - 1]))),
    st.tuples(_numbers, st.sampled_from(["fixed32", "fixed64", "bytes"]), st.binary(max_size=24)),
)
_messages = st.recursive(st.lists(_scalar, max_size=6),
                         lambda inner: st.lists(st.one_of(_scalar, st.tuples(_numbers, st.just("msg"), inner)),
                                                max_size=6), max_leaves=40)


@given(fields=_messages)
@fuzz_settings(700)
def test_random_protobuf_messages_parse_and_copy_or_raise_our_errors(fields):
    _load(_encode(fields), _NET)
