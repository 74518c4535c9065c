"""Proposal files from an RPN (tools/rpn_generate.py, frcnn.rpn.generate): upstream's counts by
default, the command line's --set counts when it names them, the config's with --test_counts."""

import os

import numpy as np
import pytest
import torch

from frcnn.config import get_default_config
from frcnn.datasets.proposals import load_proposals
from frcnn.rpn import generate
from tests.tools.helpers import load_tool
from tests.training.tiny_setup import make_tiny_voc, write_tiny_alt_opt


def test_generation_counts_are_upstreams_unless_set_names_them():
    cfg = get_default_config()
    cfg.TEST.RPN_PRE_NMS_TOP_N, cfg.TEST.RPN_POST_NMS_TOP_N = 1500, 300  # e.g. from a yml file
    g = generate.proposal_generation_config(cfg)
    assert (g.TEST.RPN_PRE_NMS_TOP_N, g.TEST.RPN_POST_NMS_TOP_N) == (-1, 2000)
    assert generate.counts_suffix(g) == ""
    g = generate.proposal_generation_config(cfg, keep=generate.set_keys(["TEST.RPN_POST_NMS_TOP_N", "300", "X", "1"]))
    assert (g.TEST.RPN_PRE_NMS_TOP_N, g.TEST.RPN_POST_NMS_TOP_N) == (-1, 300)
    assert generate.counts_suffix(g) == "_pre-1_post300"
    g = generate.proposal_generation_config(cfg, keep={"TEST.RPN_PRE_NMS_TOP_N", "TEST.RPN_POST_NMS_TOP_N"})
    assert (g.TEST.RPN_PRE_NMS_TOP_N, g.TEST.RPN_POST_NMS_TOP_N) == (1500, 300)
    g = generate.proposal_generation_config(cfg, test_counts=True)
    assert (g.TEST.RPN_PRE_NMS_TOP_N, g.TEST.RPN_POST_NMS_TOP_N) == (1500, 300)
    assert (cfg.TEST.RPN_PRE_NMS_TOP_N, cfg.TEST.RPN_POST_NMS_TOP_N) == (1500, 300)  # the input is untouched
    assert generate.set_keys(None) == frozenset()


@pytest.fixture(scope="module")
def rpn_setup(tmp_path_factory):
    """The tiny set, the narrowed SMALL rpn_test net and random weights for it."""
    from frcnn.caffe import TEST, Net

    tmp = tmp_path_factory.mktemp("gen")
    make_tiny_voc(str(tmp / "data" / "tiny"), n_train=4, n_test=2)
    models = write_tiny_alt_opt(str(tmp / "models"))
    prototxt = os.path.join(models, "rpn_test.prototxt")
    torch.manual_seed(0)
    weights = str(tmp / "rpn.caffemodel")
    Net(prototxt, None, TEST, cfg=get_default_config()).save(weights)
    return tmp, prototxt, weights


def _generate_set(rpn_setup, name, *pairs, flags=()):
    tmp, prototxt, weights = rpn_setup
    out = str(tmp / f"{name}.npz")
    argv = ["--cpu", "--def", prototxt, "--net", weights, "--imdb", "tiny_trainval", "--wait", "False", "--out", out,
            *flags, "--set", "DATA_DIR", str(tmp / "data"), "ROOT_DIR", str(tmp), "TEST.SCALES", "[192]",
            "TEST.MAX_SIZE", "256", "USE_GPU_NMS", "False", *pairs]
    assert load_tool("rpn_generate.py").main(argv) == 0
    return load_proposals(out)[0]


def test_set_counts_are_the_counts_of_the_file_and_a_prefix_of_larger_ones(rpn_setup, capsys):
    seven = _generate_set(rpn_setup, "n7", "TEST.RPN_POST_NMS_TOP_N", "7")
    twenty = _generate_set(rpn_setup, "n20", "TEST.RPN_POST_NMS_TOP_N", "20")
    default = _generate_set(rpn_setup, "default")
    assert [len(b) for b in seven] == [7] * 4 and [len(b) for b in twenty] == [20] * 4
    # upstream's -1 / 2000: more than 20 here (a few hundred boxes survive NMS on these images)
    assert all(20 < len(b) <= 2000 for b in default)
    for a, b, c in zip(seven, twenty, default):
        np.testing.assert_array_equal(a, b[:7])  # score order after NMS: the first N are the top N
        np.testing.assert_array_equal(b, c[:20])
    assert "TEST.RPN_PRE_NMS_TOP_N -1, TEST.RPN_POST_NMS_TOP_N 20" in capsys.readouterr().out


def test_config_files_do_not_set_the_counts_but_test_counts_takes_them(rpn_setup):
    tmp = rpn_setup[0]
    yml = tmp / "counts.yml"
    yml.write_text("TEST:\n  RPN_PRE_NMS_TOP_N: 30\n  RPN_POST_NMS_TOP_N: 300\n")  # a pre-NMS cap shows
    ignored = _generate_set(rpn_setup, "from_file", flags=("--cfg", str(yml)))
    taken = _generate_set(rpn_setup, "test_counts", flags=("--cfg", str(yml), "--test_counts"))
    assert all(len(b) > 30 for b in ignored)  # upstream's -1 / 2000 (a few hundred here)
    assert all(0 < len(b) <= 30 for b in taken)


def test_default_output_name_carries_other_counts(rpn_setup):
    tmp, prototxt, weights = rpn_setup
    base = ["--cpu", "--def", prototxt, "--net", weights, "--imdb", "tiny_trainval", "--wait", "False",
            "--set", "DATA_DIR", str(tmp / "data"), "ROOT_DIR", str(tmp), "TEST.SCALES", "[192]", "TEST.MAX_SIZE",
            "256", "USE_GPU_NMS", "False", "EXP_DIR", "gen"]
    tool = load_tool("rpn_generate.py")
    assert tool.main(base + ["TEST.RPN_POST_NMS_TOP_N", "5"]) == 0
    out = os.path.join(str(tmp), "output", "gen", "tiny_trainval", "rpn")
    assert os.listdir(out) == ["rpn_rpn_proposals_pre-1_post5.npz"]


def test_anchor_settings_adapt_the_net_as_test_net_does(rpn_setup, capsys):
    """`--set ANCHOR_SCALES "[8]"` on the shipped (9-anchor) rpn_test prototxt: the tool adapts
    the net (3 anchors, 6 / 12 RPN channels) so the weights of a net trained with those anchors
    load, and writes what the adapted prototxt itself gives."""
    from frcnn.caffe import TEST, Net
    from frcnn.caffe.prototxt import parse_file
    from frcnn.config import cfg_from_list
    from frcnn.nets.adapt import ensure_net_classes, net_anchors, rpn_anchor_count

    tmp, prototxt, _ = rpn_setup
    assert rpn_anchor_count(parse_file(prototxt)) == 9
    cfg = get_default_config()
    cfg_from_list(["ANCHOR_SCALES", "[8]"], cfg)
    adapted = ensure_net_classes(prototxt, 3, str(tmp / "adapted8"), cfg=cfg)
    assert adapted != prototxt and net_anchors(parse_file(adapted)) == ((8,), (0.5, 1, 2))
    torch.manual_seed(1)
    weights = str(tmp / "rpn8.caffemodel")
    Net(adapted, None, TEST, cfg=get_default_config()).save(weights)
    stock = [_generate_set((tmp, prototxt, weights), "stock8", "ANCHOR_SCALES", "[8]"),
             _generate_set((tmp, prototxt, weights), "stock8_ratios", "ANCHOR_SCALES", "[8]",
                           "ANCHOR_RATIOS", "[0.5, 1, 2]")]
    assert "Adapted " in capsys.readouterr().out  # the copy went to the run's output folder
    direct = _generate_set((tmp, adapted, weights), "adapted8")
    assert all(len(b) > 0 for b in direct)
    for got in stock:
        assert len(got) == len(direct)
        for a, b in zip(got, direct):
            np.testing.assert_array_equal(a, b)
    # the config's anchors are what the net uses: 3 anchors per cell, all of side 8 x 16 = 128
    net = Net(adapted, weights, TEST, cfg=cfg)
    layer = next(m for m in net.modules() if hasattr(m, "anchors") and hasattr(m, "feat_stride"))
    w = layer.anchors[:, 2] - layer.anchors[:, 0] + 1
    h = layer.anchors[:, 3] - layer.anchors[:, 1] + 1
    assert layer.anchors.shape[0] == 3 and torch.allclose((w * h).sqrt(), torch.full((3,), 128.0, dtype=w.dtype),
                                                          rtol=0.05)
