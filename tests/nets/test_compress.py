"""Truncated SVD of fc layers (compress_net)."""

import os

import numpy as np
import pytest
import torch

from frcnn.caffe.prototxt import parse
from frcnn.nets.compress import compress_net, compress_weights, svd_net

NET = """
name: "tiny"
input: "data"
input_shape { dim: 2 dim: 6 }
layer { name: "fc6" type: "InnerProduct" bottom: "data" top: "fc6"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "gaussian" std: 1 } } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "gaussian" std: 1 } } }
"""


def test_compress_weights_is_the_best_rank_l_approximation():
    rng = np.random.RandomState(0)
    W = rng.randn(8, 6)
    U, L = compress_weights(W, 6)
    np.testing.assert_allclose(U @ L, W, atol=1e-10)
    U2, L2 = compress_weights(W, 2)
    assert U2.shape == (8, 2) and L2.shape == (2, 6)
    s = np.linalg.svd(W, compute_uv=False)
    assert np.linalg.norm(W - U2 @ L2) == pytest.approx(np.sqrt((s[2:] ** 2).sum()))
    with pytest.raises(ValueError, match="rank"):
        compress_weights(W, 7)


def test_svd_net_splits_layers_and_keeps_the_top_names():
    out = svd_net(parse(NET), {"fc6": 3})
    names = [lp.get("name") for lp in out.get_msgs("layer")]
    assert names == ["fc6_L", "fc6_U", "relu6", "fc7"]
    low, up = out.get_msgs("layer")[:2]
    assert low.get_msg("inner_product_param").get_bool("bias_term") is False
    assert up.get_strs("top") == ["fc6"] and up.get_msg("inner_product_param").get_int("num_output") == 5
    with pytest.raises(ValueError, match="fc8"):
        svd_net(parse(NET), {"fc8": 2})


def test_compress_net_full_rank_gives_the_same_outputs(tmp_path):
    from frcnn.caffe import TEST, Net

    torch.manual_seed(0)
    proto = tmp_path / "net.prototxt"
    proto.write_text(NET)
    net = Net(str(proto), phase=TEST)
    model = str(tmp_path / "m.caffemodel")
    net.save(model)
    svd = tmp_path / "svd.prototxt"
    from frcnn.caffe.prototxt import write_file

    write_file(str(svd), svd_net(parse(NET), {"fc6": 5, "fc7": 4}))
    path = compress_net(str(proto), str(svd), model)
    assert os.path.basename(path) == "m_svd_fc6_5_fc7_4.caffemodel"
    x = torch.randn(2, 6)
    a = Net(str(proto), model, TEST).forward(data=x)["fc7"]
    b = Net(str(svd), path, TEST).forward(data=x)["fc7"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
