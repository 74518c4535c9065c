"""A user's first hour, with the tools as a user runs them, on the tiny generated set and net:
train (TRAIN.SOLVER_STEPSIZE, classes.txt, the loss curve), test (PR curves, drawn examples, the
metric's name), re-evaluate with either metric, run the demo on a folder, and the end2end
script deriving the settings of a set without its own models/ folder."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.tools.helpers import ROOT, run_tool_process, tool_env
from tests.training.tiny_setup import make_tiny_voc, write_tiny_nets
from tests.utils.png_check import assert_valid_png

END2END_CFG = os.path.join(ROOT, "experiments", "cfgs", "faster_rcnn_end2end.yml")
SMALL_SETTINGS = [
    "GPU_ID", "-1", "USE_GPU_NMS", "False",
    "TRAIN.SCALES", "[192]", "TRAIN.MAX_SIZE", "256", "TRAIN.RPN_BATCHSIZE", "64", "TRAIN.BATCH_SIZE", "32",
    "TRAIN.RPN_PRE_NMS_TOP_N", "600", "TRAIN.RPN_POST_NMS_TOP_N", "100",
    "TEST.SCALES", "[192]", "TEST.MAX_SIZE", "256", "TEST.RPN_PRE_NMS_TOP_N", "300", "TEST.RPN_POST_NMS_TOP_N", "50",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first_hour")
    data, out_root = tmp / "data", tmp / "root"
    make_tiny_voc(str(data / "tiny"))
    nets = write_tiny_nets(str(tmp / "nets"))
    settings = ["DATA_DIR", str(data), "ROOT_DIR", str(out_root), *SMALL_SETTINGS]
    final = tmp / "final.txt"
    r = run_tool_process(
        "train_net.py", "--cpu", "--solver", nets["solver"], "--imdb", "tiny_trainval", "--iters", "12",
        "--final_model_file", str(final), "--cfg", END2END_CFG,
        "--set", *settings, "TRAIN.SNAPSHOT_ITERS", "6", "TRAIN.SOLVER_STEPSIZE", "8",
        env=tool_env(OMP_NUM_THREADS="1"), timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {"tmp": tmp, "data": data, "nets": nets, "settings": settings, "train": r,
            "model": final.read_text().strip(), "out": out_root / "output" / "faster_rcnn_end2end" / "tiny_trainval"}


def test_training_steps_where_asked_and_writes_the_class_names_and_the_loss_curve(trained):
    out, text = trained["out"], trained["train"].stdout
    assert "Solver settings from the config (TRAIN.SOLVER_*): stepsize 8 (solver file: " in text
    assert (out / "classes.txt").read_text().splitlines()[1:] == ["__background__", "blue", "red"]
    assert f"Loss curve: {out / 'tiny_loss.png'}" in text
    assert_valid_png(str(out / "tiny_loss.png"), 800, 600)
    with open(out / "tiny_losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iter"]) for r in rows] == list(range(1, 13))
    assert set(rows[0]) == {"iter", "lr", "total", "rpn_cls_loss", "rpn_loss_bbox", "loss_cls", "loss_bbox"}
    lrs = [float(r["lr"]) for r in rows]
    assert max(lrs) == pytest.approx(0.01) and min(lrs) == pytest.approx(0.001)  # one step, within the run
    assert rows[lrs.index(min(lrs))]["iter"] == "8"  # TRAIN.SOLVER_STEPSIZE 8: the drop comes at 8


@pytest.fixture(scope="module")
def tested(trained):
    r = run_tool_process(
        "test_net.py", "--cpu", "--def", trained["nets"]["test"], "--net", trained["model"], "--imdb", "tiny_test",
        "--cfg", END2END_CFG, "--set", *trained["settings"], env=tool_env(OMP_NUM_THREADS="1"), timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = trained["tmp"] / "root" / "output" / "faster_rcnn_end2end" / "tiny_test" / "tiny_iter_12"
    return r, out


def test_testing_draws_pr_curves_and_examples_and_names_the_metric(tested):
    r, out = tested
    assert "Mean AP = " in r.stdout and "(area under the precision-recall curve)" in r.stdout
    assert f"Precision-recall curves: {out / 'pr_curves.png'}" in r.stdout
    assert_valid_png(str(out / "pr_curves.png"), 600, 500)
    examples = sorted(os.listdir(out / "examples"))
    assert examples == ["000008.jpg", "000009.jpg", "000010.jpg", "000011.jpg"]
    assert f"drawn on 4 test images, gt in white: {out / 'examples'}/" in r.stdout


def test_reval_recomputes_either_metric_from_the_saved_detections(trained, tested):
    _, out = tested
    r = run_tool_process("reval.py", str(out), "--imdb", "tiny_test", "--metric", "both",
                         "--set", "DATA_DIR", str(trained["data"]))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Evaluating detections (VOC07 11-point metric)" in r.stdout
    assert "Evaluating detections (area under the precision-recall curve)" in r.stdout
    first, second = (line for line in r.stdout.splitlines() if line.startswith("Mean AP = "))
    assert first.endswith("(VOC07 11-point metric)") and second.endswith("(area under the precision-recall curve)")
    _, tested_line = tested[0].stdout.split("Mean AP = ", 1)
    assert second.split("Mean AP = ")[1] == tested_line.splitlines()[0]  # area: the number test_net printed


def test_demo_on_a_folder_names_the_classes_from_the_training_run(trained, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("000008.png", "000009.png"):
        shutil.copy(trained["data"] / "tiny" / "JPEGImages" / name, photos / name)
    (photos / "notes.txt").write_text("not an image")
    demo_out = tmp_path / "drawn"
    r = run_tool_process(
        "demo.py", "--cpu", "--def", trained["nets"]["test"], "--caffemodel", trained["model"],
        "--images", str(photos), "--out", str(demo_out), "--conf", "0.05", "--set", *trained["settings"],
        env=tool_env(OMP_NUM_THREADS="1"), timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"Classes ({trained['out'] / 'classes.txt'}): blue, red" in r.stdout
    report = json.loads((demo_out / "detections.json").read_text())
    assert report["classes"] == ["blue", "red"] and report["conf_thresh"] == 0.05
    assert [os.path.basename(x["image"]) for x in report["images"]] == ["000008.png", "000009.png"]
    for rec in report["images"]:
        assert (rec["width"], rec["height"]) == (128, 96) and os.path.isfile(rec["drawn"])
        scores = [d["score"] for d in rec["detections"]]
        assert scores == sorted(scores, reverse=True) and all(s >= 0.05 for s in scores)
        for d in rec["detections"]:
            assert d["class"] in ("blue", "red") and len(d["box"]) == 4
    assert f"Detections of 2 images: {demo_out / 'detections.json'}" in r.stdout


def test_demo_says_what_to_pass_when_the_classes_are_unknown(trained, tmp_path):
    lone = tmp_path / "model.caffemodel"
    shutil.copy(trained["model"], lone)
    args = ["demo.py", "--cpu", "--def", trained["nets"]["test"], "--caffemodel", str(lone)]
    r = run_tool_process(*args, "--images", str(tmp_path), "--set", *trained["settings"])
    assert r.returncode == 2 and f"--images {tmp_path}: the folder holds no image files" in r.stderr
    images = str(trained["data"] / "tiny" / "JPEGImages")
    r = run_tool_process(*args, "--images", images, "--set", *trained["settings"])
    assert r.returncode == 2
    assert f"{lone}: no class names for its 3 outputs: pass --imdb NAME" in r.stderr and "--classes FILE" in r.stderr
    # no --images: upstream's five VOC2007 demo images, which this repository does not ship
    r = run_tool_process(*args, "--classes", str(trained["out"] / "classes.txt"), "--set", *trained["settings"])
    assert r.returncode == 2
    assert f"{trained['data'] / 'demo'}: the default demo images (000456.jpg, " in r.stderr and "--images" in r.stderr


def test_end2end_script_derives_the_settings_of_a_set_without_models(tmp_path):
    name = f"frcnntest{os.getpid()}"
    exp_dir = f"_{name}"
    link = os.path.join(ROOT, "data", name)
    make_tiny_voc(str(tmp_path / "data" / name))
    os.symlink(tmp_path / "data" / name, link)
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("FROM_SCRATCH", "FRCNN_DEBUG", "ITERS")}
        env.update(PYTHON=sys.executable, ITERS="3", LOG_DIR=str(tmp_path / "logs"), OMP_NUM_THREADS="1")
        r = subprocess.run(
            ["bash", os.path.join(ROOT, "experiments", "scripts", "faster_rcnn_end2end.sh"), "cpu", "SMALL", name,
             "--set", "EXP_DIR", exp_dir, "DATA_DIR", str(tmp_path / "data"), *SMALL_SETTINGS,
             "TRAIN.SNAPSHOT_ITERS", "2"],
            check=False, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
        )
        text = r.stdout
        assert r.returncode == 0, text[-4000:] + r.stderr[-2000:]
        derived = os.path.join(ROOT, "output", exp_dir, f"{name}_trainval", "derived_defaults.yml")
        assert f"Dataset {name}_trainval: 8 images (0 without boxes), 12 boxes, 2 classes" in text
        assert "TRAIN.SOLVER_STEPSIZE 2: the learning rate drops x gamma once, at 2 of ITERS 3" in text
        assert "TRAIN.SNAPSHOT_ITERS 2 (yours, from --set)" in text
        assert f"Wrote {derived}" in text and os.path.isfile(derived)
        # training and testing got the file, before the user's --set
        assert text.count(f"cfg_file=['experiments/cfgs/faster_rcnn_end2end.yml', '{derived}']") == 2
        assert "Solver settings from the config (TRAIN.SOLVER_*): stepsize 2 (solver file: " in text
        assert "Mean AP = " in text and "Loss curve: " in text and "Precision-recall curves: " in text
    finally:
        os.remove(link)
        shutil.rmtree(os.path.join(ROOT, "output", exp_dir), ignore_errors=True)


def test_demo_builds_the_net_with_the_anchors_of_the_models_derived_settings(trained, tmp_path):
    # a model trained with 12 anchors (as experiments/scripts derive for some sets), its
    # derived_defaults.yml beside it, and the shipped 9-anchor test prototxt given to the demo
    model_dir = tmp_path / "model"
    final = tmp_path / "final.txt"
    settings = [*trained["settings"], "ROOT_DIR", str(tmp_path / "root")]
    r = run_tool_process(
        "train_net.py", "--cpu", "--solver", trained["nets"]["solver"], "--imdb", "tiny_trainval", "--iters", "2",
        "--final_model_file", str(final), "--cfg", END2END_CFG, "--set", *settings,
        "ANCHOR_SCALES", "[4, 8, 16, 32]", env=tool_env(OMP_NUM_THREADS="1"), timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    model_dir.mkdir()
    model = model_dir / "model.caffemodel"
    shutil.copy(final.read_text().strip(), model)
    shutil.copy(os.path.join(os.path.dirname(final.read_text().strip()), "classes.txt"), model_dir / "classes.txt")
    (model_dir / "derived_defaults.yml").write_text("ANCHOR_SCALES: [4, 8, 16, 32]\n")
    r = run_tool_process(
        "demo.py", "--cpu", "--def", trained["nets"]["test"], "--caffemodel", str(model),
        "--images", str(trained["data"] / "tiny" / "JPEGImages" / "000008.png"), "--out", str(tmp_path / "drawn"),
        "--set", *settings, env=tool_env(OMP_NUM_THREADS="1"), timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"Reading {model_dir / 'derived_defaults.yml'}" in r.stdout
    assert "9 -> 12 anchors (scales [4, 8, 16, 32]" in r.stdout
    assert os.path.isfile(tmp_path / "drawn" / "detections.json")
