"""The 4-step alternating optimisation on the tiny set: files, weight flow, rerun skips."""

import os

import numpy as np
import pytest
import torch

from frcnn.config import copy_config, get_output_dir
from frcnn.datasets.classes_file import classes_beside
from frcnn.training import alt_opt
from tests.training.tiny_setup import make_tiny_voc, tiny_config, write_tiny_alt_opt


def test_stage_configs_apply_upstreams_overrides_to_copies():
    from frcnn.config import get_default_config

    cfg = get_default_config()
    rpn = alt_opt.rpn_stage_config(cfg, "stage1")
    frcn = alt_opt.fast_rcnn_stage_config(cfg, "stage2")
    assert (rpn.TRAIN.HAS_RPN, rpn.TRAIN.BBOX_REG, rpn.TRAIN.PROPOSAL_METHOD, rpn.TRAIN.IMS_PER_BATCH) == (
        True, False, "gt", 1)
    assert (frcn.TRAIN.HAS_RPN, frcn.TRAIN.PROPOSAL_METHOD, frcn.TRAIN.IMS_PER_BATCH) == (False, "rpn", 2)
    assert rpn.TRAIN.SNAPSHOT_INFIX == "stage1" and frcn.TRAIN.SNAPSHOT_INFIX == "stage2"
    assert cfg.TRAIN.HAS_RPN is False and cfg.TRAIN.SNAPSHOT_INFIX == ""  # the run's config is untouched
    assert alt_opt.STAGE_ITERS == (80000, 40000, 80000, 40000)


def test_model_file_accepts_upstream_pt_names(tmp_path):
    (tmp_path / "rpn_test.pt").write_text("")
    assert alt_opt.model_file(str(tmp_path), "rpn_test").endswith("rpn_test.pt")
    with pytest.raises(FileNotFoundError, match="faster_rcnn_test"):
        alt_opt.model_file(str(tmp_path), "faster_rcnn_test")


def _trunk(path):
    from frcnn.caffe.caffemodel import read_caffemodel

    model = read_caffemodel(path)
    return {lay.name: [b.array for b in lay.blobs] for lay in model.layers if lay.name.startswith(("conv", "scale"))}


def test_four_steps_run_hand_over_models_and_skip_when_rerun(tmp_path, capsys):
    make_tiny_voc(str(tmp_path / "data" / "tiny"))
    models = write_tiny_alt_opt(str(tmp_path / "models"))
    cfg = tiny_config(str(tmp_path / "data"), str(tmp_path))
    cfg.EXP_DIR = "faster_rcnn_alt_opt"
    cfg.TRAIN.SNAPSHOT_ITERS = 2
    final = alt_opt.train_alt_opt("SMALL", "tiny_trainval", copy_config(cfg), models, max_iters=(4, 2, 2, 2))
    out = get_output_dir(cfg, "tiny_trainval")
    assert final == os.path.join(out, "SMALL_faster_rcnn_final.caffemodel")
    names = sorted(f for f in os.listdir(out) if f.endswith((".caffemodel", "_proposals.npz")))
    assert names == sorted([
        "small_rpn_stage1_iter_4.caffemodel", "small_rpn_stage1_iter_4_proposals.npz",
        "small_fast_rcnn_stage1_iter_2.caffemodel", "small_rpn_stage2_iter_2.caffemodel",
        "small_rpn_stage2_iter_2_proposals.npz", "small_fast_rcnn_stage2_iter_2.caffemodel",
        "SMALL_faster_rcnn_final.caffemodel",
    ])  # the stage-1 RPN snapshot at iteration 2 was removed, as upstream removes intermediates
    with open(final, "rb") as a, open(os.path.join(out, "small_fast_rcnn_stage2_iter_2.caffemodel"), "rb") as b:
        assert a.read() == b.read()
    text = capsys.readouterr().out
    assert "Final model: " + final in text
    # no --weights: the banners say so; the class names beside the final model, for demo.py
    assert "Stage 1 RPN, from scratch (random initialisation)" in text and "ImageNet" not in text.split("Stage 2")[0]
    assert classes_beside(final) == ("__background__", "blue", "red")
    # weight flow: the trunk is trained in step 2 only after step 1; frozen in steps 3 and 4
    t1 = _trunk(os.path.join(out, "small_fast_rcnn_stage1_iter_2.caffemodel"))
    t3 = _trunk(os.path.join(out, "small_rpn_stage2_iter_2.caffemodel"))
    t4 = _trunk(final)
    t0 = _trunk(os.path.join(out, "small_rpn_stage1_iter_4.caffemodel"))
    for k in t1:
        for i, blob in enumerate(t1[k]):
            assert torch.equal(torch.as_tensor(blob), torch.as_tensor(t3[k][i])), k
            assert torch.equal(torch.as_tensor(blob), torch.as_tensor(t4[k][i])), k
    assert any(not torch.equal(torch.as_tensor(t0[k][0]), torch.as_tensor(t1[k][0])) for k in t1 if k.startswith("conv"))
    # rerun: every step is found finished
    mtimes = {f: os.path.getmtime(os.path.join(out, f)) for f in names}
    assert alt_opt.train_alt_opt("SMALL", "tiny_trainval", copy_config(cfg), models, max_iters=(4, 2, 2, 2)) == final
    text = capsys.readouterr().out
    assert text.count("Step already finished") == 4 and text.count("Proposals already generated") == 2
    assert all(os.path.getmtime(os.path.join(out, f)) == t for f, t in mtimes.items() if "final" not in f)


def test_joined_set_runs_per_set_proposal_passes_merged_in_joined_order(tmp_path, capsys):
    """Alt-opt on 'a+b' (the paper's 07+12): one proposal pass over the joined set gives each
    member's images the proposals a pass over that member alone gives, and both Fast R-CNN
    steps train on them."""
    from frcnn.datasets.factory import get_imdb
    from frcnn.datasets.proposals import load_proposals

    make_tiny_voc(str(tmp_path / "data" / "tinya"), n_train=4, n_test=1, seed=0)
    make_tiny_voc(str(tmp_path / "data" / "tinyb"), n_train=3, n_test=1, seed=1)
    models = write_tiny_alt_opt(str(tmp_path / "models"))
    cfg = tiny_config(str(tmp_path / "data"), str(tmp_path))
    cfg.EXP_DIR = "faster_rcnn_alt_opt"
    joined = "tinya_trainval+tinyb_trainval"
    final = alt_opt.train_alt_opt("SMALL", joined, copy_config(cfg), models, max_iters=(2, 2, 2, 2))
    out = get_output_dir(cfg, joined)
    assert final == os.path.join(out, "SMALL_faster_rcnn_final.caffemodel") and os.path.exists(final)
    text = capsys.readouterr().out
    assert text.count(f"Loaded dataset `{joined}` for training") == 4
    rpn1 = os.path.join(out, "small_rpn_stage1_iter_2.caffemodel")
    boxes, ids = load_proposals(os.path.join(out, "small_rpn_stage1_iter_2_proposals.npz"))
    assert ids == [str(x) for x in get_imdb(joined, cfg).image_index] and len(ids) == 7
    # the same RPN run on each member alone: the joined file is the two passes, in order
    per_set = []
    for name in ("tinya_trainval", "tinyb_trainval"):
        path = alt_opt.generate_step(name, rpn1, cfg, alt_opt.model_file(models, "rpn_test"))
        per_set += load_proposals(path)[0]
    assert len(per_set) == 7 and all(a.shape[0] > 0 for a in per_set)
    for i, (a, b) in enumerate(zip(boxes, per_set)):
        assert np.array_equal(a, b), i


def _files(out):
    return sorted(f for f in os.listdir(out) if f.endswith((".caffemodel", "_proposals.npz", "_post5.npz")))


def test_stop_after_1_trains_the_stage1_rpn_alone(tmp_path, capsys):
    make_tiny_voc(str(tmp_path / "data" / "tiny"))
    models = write_tiny_alt_opt(str(tmp_path / "models"))
    cfg = tiny_config(str(tmp_path / "data"), str(tmp_path))
    cfg.EXP_DIR = "alt1"
    final = alt_opt.train_alt_opt("SMALL", "tiny_trainval", copy_config(cfg), models, max_iters=(2, 2, 2, 2),
                                  stop_after=1)
    out = get_output_dir(cfg, "tiny_trainval")
    assert final == os.path.join(out, "SMALL_rpn_stage1_final.caffemodel")
    assert _files(out) == ["SMALL_rpn_stage1_final.caffemodel", "small_rpn_stage1_iter_2.caffemodel"]
    with open(final, "rb") as a, open(os.path.join(out, "small_rpn_stage1_iter_2.caffemodel"), "rb") as b:
        assert a.read() == b.read()
    assert "Stopped after step 1" in capsys.readouterr().out
    with pytest.raises(ValueError, match="stop_after: expected a step 1, 2, 3 or 4, got 5"):
        alt_opt.train_alt_opt("SMALL", "tiny_trainval", copy_config(cfg), models, stop_after=5)


def test_stop_after_2_leaves_the_unshared_pair_and_its_test_runs(tmp_path, capsys):
    """The unshared system of Table 2: the stage-1 RPN and Fast R-CNN; --set counts reach the
    proposal step; the documented test (rpn_generate --test_counts, test_net --proposals) runs;
    a later full run skips the two finished steps."""
    from frcnn.caffe.prototxt import parse_file, write_file
    from frcnn.datasets.proposals import load_proposals
    from tests.tools.helpers import load_tool
    from tests.training.tiny_setup import ROOT, narrow

    make_tiny_voc(str(tmp_path / "data" / "tiny"))
    models = write_tiny_alt_opt(str(tmp_path / "models"))
    cfg = tiny_config(str(tmp_path / "data"), str(tmp_path))
    cfg.EXP_DIR = "alt2"
    cfg.TEST.RPN_POST_NMS_TOP_N = 5  # as if given by --set: generation_keys names it
    keys = {"TEST.RPN_POST_NMS_TOP_N"}
    final = alt_opt.train_alt_opt("SMALL", "tiny_trainval", copy_config(cfg), models, max_iters=(2, 2, 2, 2),
                                  stop_after=2, generation_keys=keys)
    out = get_output_dir(cfg, "tiny_trainval")
    assert final == os.path.join(out, "SMALL_fast_rcnn_stage1_final.caffemodel")
    assert _files(out) == sorted([
        "SMALL_fast_rcnn_stage1_final.caffemodel", "SMALL_rpn_stage1_final.caffemodel",
        "small_rpn_stage1_iter_2.caffemodel", "small_fast_rcnn_stage1_iter_2.caffemodel",
        "small_rpn_stage1_iter_2_proposals_pre-1_post5.npz",
    ])
    boxes, _ = load_proposals(os.path.join(out, "small_rpn_stage1_iter_2_proposals_pre-1_post5.npz"))
    assert [len(b) for b in boxes] == [5] * 8
    for copy, src in (("SMALL_fast_rcnn_stage1_final", "small_fast_rcnn_stage1_iter_2"),
                      ("SMALL_rpn_stage1_final", "small_rpn_stage1_iter_2")):
        with open(os.path.join(out, copy + ".caffemodel"), "rb") as a, \
                open(os.path.join(out, src + ".caffemodel"), "rb") as b:
            assert a.read() == b.read(), copy
    assert "Stage-1 RPN (unshared): " + os.path.join(out, "SMALL_rpn_stage1_final.caffemodel") in capsys.readouterr().out

    # the unshared test, as experiments/scripts/faster_rcnn_alt_opt.sh runs it with STOP_AFTER=2
    frcn_test = str(tmp_path / "fast_rcnn_test.prototxt")
    write_file(frcn_test, narrow(parse_file(os.path.join(ROOT, "models", "pascal_voc", "SMALL", "fast_rcnn",
                                                         "test.prototxt")), 3))
    props = str(tmp_path / "test_proposals.npz")
    common = ["--cfg", os.path.join(ROOT, "experiments", "cfgs", "faster_rcnn_alt_opt.yml"), "--set",
              "DATA_DIR", cfg.DATA_DIR, "ROOT_DIR", str(tmp_path), "EXP_DIR", "alt2", "TEST.SCALES", "[192]",
              "TEST.MAX_SIZE", "256", "USE_GPU_NMS", "False", "TEST.RPN_PRE_NMS_TOP_N", "300"]
    assert load_tool("rpn_generate.py").main(
        ["--cpu", "--def", os.path.join(models, "rpn_test.prototxt"), "--net",
         os.path.join(out, "SMALL_rpn_stage1_final.caffemodel"), "--imdb", "tiny_test", "--wait", "False",
         "--out", props, "--test_counts", *common]) == 0
    boxes, _ = load_proposals(props)
    assert all(0 < len(b) <= 300 for b in boxes)  # the config's TEST counts (PRE 300 from --set, POST 300)
    capsys.readouterr()
    assert load_tool("test_net.py").main(
        ["--cpu", "--def", frcn_test, "--net", final, "--imdb", "tiny_test", "--wait", "False",
         "--proposals", props, *common, "TEST.RPN_POST_NMS_TOP_N", "5"]) == 0
    assert "Mean AP = " in capsys.readouterr().out

    # the full run after it: steps 1 and 2 are found finished
    alt_opt.train_alt_opt("SMALL", "tiny_trainval", copy_config(cfg), models, max_iters=(2, 2, 2, 2),
                          generation_keys=keys)
    text = capsys.readouterr().out
    assert text.count("Step already finished") == 2 and text.count("Proposals already generated") == 1
    assert os.path.exists(os.path.join(out, "SMALL_faster_rcnn_final.caffemodel"))
