"""Dense sliding windows (Table 10's one-stage system): every anchor of the conv5 grid, against a
plain-loop reference; the tool's file; Fast R-CNN trained on them and tested at 5 scales."""

import math
import os

import numpy as np
import pytest

from frcnn.rpn.dense import dense_windows, grid_size, window_anchors
from frcnn.rpn.generate_anchors import generate_anchors
from tests.tools.helpers import load_tool


def reference_windows(h, w, target, max_size, scales, ratios, stride):
    """Loops over rows, columns and anchors; clip, unscale, clip; first of each duplicate."""
    scale = target / min(h, w)
    if round(scale * max(h, w)) > max_size:
        scale = max_size / max(h, w)
    hs, ws = int(np.rint(h * scale)), int(np.rint(w * scale))
    out, seen = [], set()
    for r in range(math.ceil(hs / stride)):
        for c in range(math.ceil(ws / stride)):
            for a in generate_anchors(ratios=ratios, scales=scales):
                x1, y1, x2, y2 = a + [c * stride, r * stride, c * stride, r * stride]
                x1, x2 = (min(max(v, 0), ws - 1) / scale for v in (x1, x2))
                y1, y2 = (min(max(v, 0), hs - 1) / scale for v in (y1, y2))
                box = tuple(np.float32(min(max(v, 0), lim - 1)) for v, lim in ((x1, w), (y1, h), (x2, w), (y2, h)))
                if box not in seen:
                    seen.add(box)
                    out.append(box)
    return np.array(out, np.float32)


@pytest.mark.parametrize("h, w, target, max_size, scales, ratios, stride", [
    (375, 500, 600, 1000, (8, 16, 32), (0.5, 1, 2), 16),  # a VOC image: 600 x 800, 38 x 50 cells
    (100, 333, 64, 150, (2, 4), (1,), 8),  # max_size binds
    (61, 47, 47, 1000, (1.5,), (0.5, 2), 16),
])
def test_windows_match_the_plain_loop_reference(h, w, target, max_size, scales, ratios, stride):
    got = dense_windows(h, w, target, max_size, generate_anchors(ratios=ratios, scales=scales), stride)
    np.testing.assert_allclose(got, reference_windows(h, w, target, max_size, scales, ratios, stride), atol=1e-4)
    assert got.dtype == np.float32
    assert np.all(got[:, :2] >= 0) and np.all(got[:, 2] <= w - 1) and np.all(got[:, 3] <= h - 1)
    assert np.all(got[:, 2] > got[:, 0]) and np.all(got[:, 3] > got[:, 1])


def test_a_voc_sized_image_has_about_the_papers_20000_windows():
    anchors = window_anchors()
    assert anchors.shape == (9, 4) and anchors[0].tolist() == [-84, -40, 99, 55]
    assert grid_size(600, 1000) == (38, 63) and grid_size(600, 800) == (38, 50)
    n = len(dense_windows(600, 1000, 600, 1000, anchors))
    assert 19000 < n <= 38 * 63 * 9  # clipping makes some windows equal; 20570 distinct ones
    assert len(dense_windows(375, 500, 600, 1000, window_anchors((8,), (1,)))) <= 38 * 50


def test_the_tool_writes_every_images_windows(tiny_voc_setup):
    tmp, _cfg, paths = tiny_voc_setup
    from frcnn.datasets.proposals import load_proposals

    boxes, ids = load_proposals(paths["trainval"])
    assert len(boxes) == 8 and ids[0] == "000000"
    # 96 x 128 images at scale 192 / max 256: 192 x 256, 12 x 16 cells, 9 anchors
    expected = dense_windows(96, 128, 192, 256, window_anchors())
    for b in boxes:
        np.testing.assert_array_equal(b, expected)
    one = str(tmp / "one.npz")
    assert load_tool("dense_proposals.py").main(
        ["--imdb", "tiny_test", "--scale", "192", "--max_size", "256", "--scales", "8", "--ratios", "1",
         "--out", one, "--set", "DATA_DIR", str(tmp / "data")]) == 0
    assert all(len(b) <= 12 * 16 for b in load_proposals(one)[0])


@pytest.fixture(scope="module")
def tiny_voc_setup(tmp_path_factory):
    from tests.training.tiny_setup import make_tiny_voc, tiny_config

    tmp = tmp_path_factory.mktemp("dense")
    make_tiny_voc(str(tmp / "data" / "tiny"))
    cfg = tiny_config(str(tmp / "data"), str(tmp))
    paths = {}
    for split in ("trainval", "test"):
        paths[split] = str(tmp / f"dense_{split}.npz")
        argv = ["--imdb", f"tiny_{split}", "--scale", "192", "--max_size", "256", "--out", paths[split],
                "--set", "DATA_DIR", str(tmp / "data")]
        assert load_tool("dense_proposals.py").main(argv) == 0
    return tmp, cfg, paths


def test_fast_rcnn_trains_on_dense_windows_and_tests_at_five_scales(tiny_voc_setup, capsys):
    """The one-stage system end to end: train Fast R-CNN on the windows, test with a 5-scale
    pyramid (TEST.SCALES); every RoI goes to the level whose area is closest to 224 x 224."""
    from frcnn.caffe import TEST, Net
    from frcnn.caffe.prototxt import parse_file, write_file
    from frcnn.config import copy_config, get_output_dir
    from frcnn.datasets.factory import get_imdb
    from frcnn.inference.test import project_im_rois, test_net
    from frcnn.training import alt_opt
    from frcnn.training.train import train_net
    from tests.training.tiny_setup import ROOT, narrow, write_tiny_alt_opt

    tmp, cfg, paths = tiny_voc_setup
    models = write_tiny_alt_opt(str(tmp / "models"))
    cfg = alt_opt.fast_rcnn_stage_config(copy_config(cfg), "dense")
    cfg.TRAIN.PROPOSAL_TOP_N = 500  # also shows the count applies to these files
    roidb, imdb = alt_opt.get_roidb("tiny_trainval", cfg, rpn_file=paths["trainval"])
    assert all((e["gt_classes"] == 0).sum() == 500 for e in roidb)
    model = train_net(os.path.join(models, "stage1_fast_rcnn_solver30k40k.prototxt"), roidb,
                      get_output_dir(cfg, imdb.name), cfg, max_iters=2)[-1]

    test_def = str(tmp / "fast_rcnn_test.prototxt")
    write_file(test_def, narrow(parse_file(os.path.join(ROOT, "models", "pascal_voc", "SMALL", "fast_rcnn",
                                                        "test.prototxt")), 3))
    cfg.TEST.HAS_RPN = False
    cfg.TEST.SCALES, cfg.TEST.MAX_SIZE = (96, 144, 192, 240, 288), 400
    imdb = get_imdb("tiny_test", cfg)
    imdb.config["rpn_file"] = paths["test"]
    imdb.set_proposal_method("rpn")
    net = Net(test_def, model, TEST, cfg=cfg)
    capsys.readouterr()
    result = test_net(net, imdb, cfg, str(tmp / "test_out"))
    assert "Mean AP = " in capsys.readouterr().out and result is not None
    data = net.blobs["data"].data
    rois = net.blobs["rois"].data.numpy()
    assert tuple(data.shape) == (5, 3, 288, 384)  # the 96 x 128 image at 5 scales, padded to the largest
    # the last image's RoIs: each at its level closest to 224^2, several levels used
    boxes = imdb.roidb[-1]["boxes"][imdb.roidb[-1]["gt_classes"] == 0]
    scales = np.array(cfg.TEST.SCALES, np.float64) / 96
    _, levels = project_im_rois(boxes.astype(np.float64), scales)
    assert set(np.unique(rois[:, 0]).astype(int)) == set(np.unique(levels).astype(int))
    assert len(np.unique(rois[:, 0])) >= 3


def test_window_settings_take_the_flag_then_the_config_then_the_net_then_upstreams():
    from frcnn.config import cfg_from_list, get_default_config
    from frcnn.rpn.dense import settings_suffix, window_settings

    cfg = get_default_config()
    assert window_settings(cfg=cfg) == ((8, 16, 32), (0.5, 1, 2))
    net = ((4, 8, 16, 32), (1,))
    assert window_settings(cfg=cfg, net_anchors=net) == net
    cfg_from_list(["ANCHOR_SCALES", "[2, 3]"], cfg)
    assert window_settings(cfg=cfg, net_anchors=net) == ((2, 3), (1,))  # each key on its own
    assert window_settings(cfg=cfg) == ((2, 3), (0.5, 1, 2))
    assert window_settings([5], [2], cfg, net) == ((5,), (2,))
    assert settings_suffix((8, 16, 32), (0.5, 1, 2)) == "" and settings_suffix((8.0, 16, 32), (0.5, 1.0, 2)) == ""
    assert settings_suffix((4, 8, 16, 32), (0.5, 1, 2)) == "_a4-8-16-32x0.5-1-2"


def test_the_tool_takes_its_anchors_from_the_config_and_the_nets_prototxt(tiny_voc_setup, capsys):
    """The windows of `--set ANCHOR_SCALES`, of coco_paper.yml (4 scales) and of a COCO net given
    with --def are those anchors' (12 per cell for COCO), not upstream's 9; a flag still wins."""
    from frcnn.datasets.proposals import load_proposals
    from tests.tools.helpers import ROOT

    tmp = tiny_voc_setup[0]
    tool = load_tool("dense_proposals.py")
    base = ["--imdb", "tiny_test", "--scale", "192", "--max_size", "256"]
    data = ["DATA_DIR", str(tmp / "data"), "ROOT_DIR", str(tmp), "EXP_DIR", "windows"]

    def windows(*argv):
        capsys.readouterr()
        assert tool.main([*base, *argv]) == 0
        path = capsys.readouterr().out.rsplit("Wrote dense proposals to ", 1)[1].strip()
        return path, load_proposals(path)[0]

    coco = windows("--set", *data, "ANCHOR_SCALES", "[4, 8, 16, 32]")
    want = dense_windows(96, 128, 192, 256, window_anchors((4, 8, 16, 32), (0.5, 1, 2)))
    assert os.path.basename(coco[0]) == "dense_proposals_s192_m256_a4-8-16-32x0.5-1-2.npz"
    assert all(np.array_equal(b, want) for b in coco[1])
    assert len(want) > len(dense_windows(96, 128, 192, 256, window_anchors()))
    yml = windows("--cfg", os.path.join(ROOT, "experiments", "cfgs", "coco_paper.yml"), "--set", *data)
    assert yml[0] == coco[0] and all(np.array_equal(b, want) for b in yml[1])
    net = os.path.join(ROOT, "models", "coco", "VGG16", "faster_rcnn_end2end", "test.prototxt")
    by_net = windows("--def", net, "--out", str(tmp / "by_net.npz"), "--set", *data)
    assert all(np.array_equal(b, want) for b in by_net[1])
    ratios = windows("--def", net, "--out", str(tmp / "r.npz"), "--set", *data, "ANCHOR_RATIOS", "[1]")
    assert all(np.array_equal(b, dense_windows(96, 128, 192, 256, window_anchors((4, 8, 16, 32), (1,))))
               for b in ratios[1])
    flag = windows("--scales", "8", "--ratios", "1", "--out", str(tmp / "f.npz"), "--set", *data,
                   "ANCHOR_SCALES", "[4, 8, 16, 32]")
    assert all(np.array_equal(b, dense_windows(96, 128, 192, 256, window_anchors((8,), (1,)))) for b in flag[1])


def test_a_def_without_anchor_layers_is_an_error_naming_it(tiny_voc_setup):
    from frcnn.errors import InputError
    from tests.tools.helpers import ROOT

    tmp = tiny_voc_setup[0]
    net = os.path.join(ROOT, "models", "coco", "VGG16", "fast_rcnn", "test.prototxt")
    with pytest.raises(InputError, match=r"--def .*fast_rcnn/test.prototxt: the net has no anchor layer"):
        load_tool("dense_proposals.py").main(["--imdb", "tiny_test", "--def", net, "--set", "DATA_DIR",
                                              str(tmp / "data")])
