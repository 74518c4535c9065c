"""The experiment scripts' DATASET names: what each trains and tests on, with which nets,
configs, iterations and weights (a stand-in interpreter records the tools' arguments)."""

import os
import shlex
import subprocess

import pytest

from frcnn.config import cfg_from_file, get_default_config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VOC_0712 = "voc_2007_trainval+voc_2012_trainval"
VOC_07PP12 = "voc_2007_trainval+voc_2007_test+voc_2012_trainval"

FAKE_PYTHON = """#!/usr/bin/env bash
# records each call; writes a model path into --final_model_file, as the training tools do
printf '%s\\n' "$*" >> "$FAKE_LOG"
prev=""
for a in "$@"; do
  if [ "$prev" = "--final_model_file" ]; then echo /trained/final.caffemodel > "$a"; fi
  prev="$a"
done
"""


@pytest.fixture
def run(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    weights = tmp_path / "coco_voc21.caffemodel"
    weights.write_bytes(b"")

    def go(script, net, dataset, **env_overrides):
        log = tmp_path / f"calls_{len(list(tmp_path.glob('calls_*')))}.txt"
        env = {k: v for k, v in os.environ.items()
               if k not in ("FROM_SCRATCH", "FRCNN_DEBUG", "ITERS", "ALT_ITERS", "WEIGHTS", "LOG_DIR")}
        env.update(PYTHON=str(fake), FAKE_LOG=str(log), LOG_DIR=str(tmp_path / "logs"), FROM_SCRATCH="1")
        env.update({k: (str(weights) if v == "<weights>" else v) for k, v in env_overrides.items()})
        r = subprocess.run(["bash", os.path.join(ROOT, "experiments", "scripts", script), "cpu", net, dataset],
                           capture_output=True, text=True, env=env, timeout=120, check=False)
        calls = [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []
        return r, calls

    go.weights = str(weights)
    return go


def flag(call, name):
    return [call[i + 1] for i, a in enumerate(call) if a == name]


@pytest.mark.parametrize("dataset, train, test", [
    ("pascal_voc", "voc_2007_trainval", "voc_2007_test"),
    ("pascal_voc_0712", VOC_0712, "voc_2007_test"),
    ("pascal_voc_2012", "voc_2012_trainval", "voc_2012_test"),
    ("pascal_voc_07++12", VOC_07PP12, "voc_2012_test"),
])
def test_voc_sets_joined_for_every_method(run, dataset, train, test):
    for script, tool in (("faster_rcnn_alt_opt.sh", "tools/train_faster_rcnn_alt_opt.py"),
                         ("faster_rcnn_end2end.sh", "tools/train_net.py"), ("fast_rcnn.sh", "tools/train_net.py")):
        r, calls = run(script, "VGG16", dataset)
        assert r.returncode == 0, r.stderr
        (train_call, test_call) = calls
        assert train_call[0] == tool and flag(train_call, "--imdb") == [train], script
        assert test_call[0] == "tools/test_net.py" and flag(test_call, "--imdb") == [test], script
        assert flag(test_call, "--net") == ["/trained/final.caffemodel"]
        if script == "faster_rcnn_alt_opt.sh":
            assert flag(train_call, "--iters") == ["80000,40000,80000,40000"]
            assert flag(train_call, "--models_dir") == ["models/pascal_voc/VGG16/faster_rcnn_alt_opt"]


@pytest.mark.parametrize("dataset, train, test", [
    ("coco_pascal_voc_0712", VOC_0712, "voc_2007_test"), ("coco_pascal_voc_07++12", VOC_07PP12, "voc_2012_test")])
def test_coco_plus_voc_starts_from_the_given_coco_model_with_coco_nets(run, dataset, train, test):
    r, calls = run("faster_rcnn_alt_opt.sh", "VGG16", dataset)
    assert r.returncode == 1 and not calls
    assert "tools/coco_to_voc.py" in r.stderr and "WEIGHTS=" in r.stderr
    r, calls = run("faster_rcnn_alt_opt.sh", "VGG16", dataset, WEIGHTS="<weights>")
    assert r.returncode == 0, r.stderr
    train_call, test_call = calls
    assert flag(train_call, "--weights") == [run.weights] and "--from_scratch" not in train_call
    assert flag(train_call, "--imdb") == [train] and flag(test_call, "--imdb") == [test]
    # the COCO nets (12 anchors), which the tools adapt to the 21 VOC classes
    assert flag(train_call, "--models_dir") == ["models/coco/VGG16/faster_rcnn_alt_opt"]
    assert flag(test_call, "--def") == ["models/coco/VGG16/faster_rcnn_alt_opt/faster_rcnn_test.prototxt"]
    r, _ = run("faster_rcnn_end2end.sh", "VGG16", dataset, WEIGHTS="/no/such.caffemodel")
    assert r.returncode == 1 and "WEIGHTS=/no/such.caffemodel: no such file" in r.stderr


def test_coco_paper_settings_for_the_baseline_and_faster_rcnn(run):
    r, calls = run("fast_rcnn.sh", "VGG16", "coco_paper")
    assert r.returncode == 0, r.stderr
    train_call, test_call = calls
    assert flag(train_call, "--imdb") == ["coco_2014_train"] and flag(test_call, "--imdb") == ["coco_2014_val"]
    assert flag(train_call, "--solver") == ["models/coco/VGG16/fast_rcnn/solver.prototxt"]
    assert flag(train_call, "--iters") == ["320000"] and flag(train_call, "--cfg") == ["experiments/cfgs/coco_paper.yml"]
    r, calls = run("faster_rcnn_alt_opt.sh", "VGG16", "coco_paper")
    assert r.returncode == 0, r.stderr
    train_call, test_call = calls
    assert flag(train_call, "--iters") == ["320000,320000,320000,320000"]
    assert flag(train_call, "--models_dir") == ["models/coco/VGG16/faster_rcnn_alt_opt"]
    assert flag(train_call, "--cfg") == ["experiments/cfgs/faster_rcnn_alt_opt.yml", "experiments/cfgs/coco_paper.yml"]
    r, calls = run("faster_rcnn_alt_opt.sh", "VGG16", "coco_paper_trainval", ALT_ITERS="1,2,3,4")
    assert r.returncode == 0, r.stderr
    train_call, test_call = calls
    assert flag(train_call, "--imdb") == ["coco_2014_train+coco_2014_val"] and flag(train_call, "--iters") == ["1,2,3,4"]
    assert flag(test_call, "--imdb") == ["coco_2015_test-dev"] and "experiments/cfgs/coco_paper.yml" in test_call
    # alt-opt on upstream's coco (which shipped no COCO alt-opt): our COCO nets, the paper's step
    # counts, the solvers' single-GPU lr (no paper config)
    r, calls = run("faster_rcnn_alt_opt.sh", "VGG16", "coco")
    assert r.returncode == 0, r.stderr
    assert flag(calls[0], "--models_dir") == ["models/coco/VGG16/faster_rcnn_alt_opt"]
    assert flag(calls[0], "--iters") == ["320000,320000,320000,320000"]
    assert flag(calls[0], "--cfg") == ["experiments/cfgs/faster_rcnn_alt_opt.yml"]
    # upstream's coco keeps its settings: no paper config, minival
    r, calls = run("faster_rcnn_end2end.sh", "VGG16", "coco")
    assert r.returncode == 0, r.stderr
    assert flag(calls[0], "--iters") == ["490000"] and "experiments/cfgs/coco_paper.yml" not in calls[0]
    assert flag(calls[1], "--imdb") == ["coco_2014_minival"]


def test_toy_alt_opt_schedule_drops_the_lr_inside_each_step(run):
    """The toy default is a learning schedule (not the old 400-per-step smoke run): each step's
    solver drops the lr once, before the step ends, so a changed ALT_ITERS default or stepsize
    that puts the drop past the step's end (no drop at all) fails here."""
    from frcnn.caffe.solver_param import read_solver
    from frcnn.training.alt_opt import SOLVERS

    r, calls = run("faster_rcnn_alt_opt.sh", "SMALL", "toy")
    assert r.returncode == 0, r.stderr
    (train,) = [c for c in calls if c[0] == "tools/train_faster_rcnn_alt_opt.py"]
    models = "models/toy/SMALL/faster_rcnn_alt_opt"
    assert flag(train, "--models_dir") == [models]
    iters = [int(n) for n in flag(train, "--iters")[0].split(",")]
    assert iters == [800, 3000, 1000, 800]
    end2end = read_solver(os.path.join(ROOT, "models/toy/SMALL/faster_rcnn_end2end/solver.prototxt"), ROOT)
    for stem, n in zip(SOLVERS, iters):
        p = read_solver(os.path.join(ROOT, models, stem + ".prototxt"), ROOT)
        assert p.lr_policy == "step" and 0 < p.stepsize < n, stem
        assert p.learning_rate(0, 0)[0] == end2end.base_lr == 0.02, stem
        assert p.learning_rate(n - 1, 0)[0] == pytest.approx(0.002), stem


def test_coco_paper_config_holds_the_papers_settings():
    cfg = get_default_config()
    for f in ("faster_rcnn_alt_opt.yml", "coco_paper.yml"):
        cfg_from_file(os.path.join(ROOT, "experiments", "cfgs", f), cfg)
    t = cfg.TRAIN
    assert (t.BG_THRESH_LO, t.SOLVER_BASE_LR, t.SOLVER_STEPSIZE, t.SOLVER_ITER_SIZE) == (0.0, 0.003, 240000, 8)
    # the Fast R-CNN baseline has no method config: the dataset config alone moves its negatives
    base = get_default_config()
    assert base.TRAIN.BG_THRESH_LO == 0.1
    cfg_from_file(os.path.join(ROOT, "experiments", "cfgs", "coco_paper.yml"), base)
    assert base.TRAIN.BG_THRESH_LO == 0.0
    assert tuple(base.TEST.SCALES) == (600,) and base.TEST.RPN_POST_NMS_TOP_N == 300


def test_coco_nets_have_the_papers_twelve_anchors():
    from frcnn.caffe.prototxt import parse_file
    from frcnn.caffe.python_layer import parse_param_str

    for method in ("faster_rcnn_alt_opt", "faster_rcnn_end2end"):
        folder = os.path.join(ROOT, "models", "coco", "VGG16", method)
        for f in sorted(os.listdir(folder)):
            if "solver" in f or (method == "faster_rcnn_alt_opt" and "fast_rcnn_train" in f):
                continue
            layers = parse_file(os.path.join(folder, f)).get_msgs("layer")
            anchors = [parse_param_str(lay.get_msg("python_param").get("param_str")).get("scales")
                       for lay in layers if lay.get("type") == "Python"
                       and lay.get_msg("python_param").get("module") in ("rpn.anchor_target_layer", "rpn.proposal_layer")]
            assert anchors and all(list(a) == [4, 8, 16, 32] for a in anchors), f
            score = next(lay for lay in layers if lay.get("name") == "rpn_cls_score")
            assert score.get_msg("convolution_param").get_int("num_output") == 24, f  # 2 x 12 anchors
