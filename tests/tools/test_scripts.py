"""Usage errors of the experiment scripts and the tools (no training is started)."""

import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPTS = ["faster_rcnn_end2end.sh", "faster_rcnn_alt_opt.sh", "fast_rcnn.sh"]


def run_script(name, *args, **env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("FROM_SCRATCH", "FRCNN_DEBUG", "ITERS", "LOG_DIR")}
    env.update(PYTHON=sys.executable, **env_overrides)
    return subprocess.run(
        ["bash", os.path.join(ROOT, "experiments", "scripts", name), *args],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_arguments_prints_usage(script):
    r = run_script(script)
    assert r.returncode == 1
    assert "Usage:" in r.stderr and "GPU_ID NET DATASET" in r.stderr


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "args, message",
    [
        (("gpu0", "ZF", "pascal_voc"), "GPU_ID must be a GPU number or 'cpu'"),
        (("cpu", "ResNet", "pascal_voc"), "NET must be ZF, VGG_CNN_M_1024, VGG16 or SMALL"),
        (("0", "ZF", "no_such_set"), "unknown DATASET 'no_such_set'"),
        (("0", "ZF", "../etc"), "not a plain name"),
    ],
)
def test_bad_arguments_are_named(script, args, message):
    r = run_script(script, *args)
    assert r.returncode != 0
    assert message in r.stderr
    logs = os.path.join(ROOT, "experiments", "logs")
    assert not any("no_such" in n for n in (os.listdir(logs) if os.path.isdir(logs) else []))  # no log started


@pytest.mark.parametrize("tool", ["train_net.py", "test_net.py", "train_faster_rcnn_alt_opt.py", "rpn_generate.py"])
def test_tools_without_arguments_print_help_and_exit_1(tool):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool)], check=False, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert "usage:" in r.stdout and "--gpu" in r.stdout and "--cfg" in r.stdout


def test_gpu_flag_accepts_numbers_and_cpu():
    import argparse

    from frcnn.cli import gpu_id

    assert gpu_id("0") == 0 and gpu_id("3") == 3 and gpu_id("cpu") == -1 and gpu_id("CPU") == -1
    with pytest.raises(argparse.ArgumentTypeError, match="--gpu"):
        gpu_id("gpu1")


def test_config_from_args_merges_several_cfg_files_in_order(tmp_path):
    import argparse

    from frcnn.cli import config_from_args

    a, b = tmp_path / "a.yml", tmp_path / "b.yml"
    a.write_text("EXP_DIR: a\nTRAIN:\n  SCALES: [300]\n")
    b.write_text("TRAIN:\n  SCALES: [200, 250]\n")
    args = argparse.Namespace(cfg_file=[str(a), str(b)], set_cfgs=["RNG_SEED", "7"], gpu_id=0, cpu_mode=True)
    cfg = config_from_args(args, show=False)
    assert cfg.EXP_DIR == "a" and tuple(cfg.TRAIN.SCALES) == (200, 250) and cfg.RNG_SEED == 7
    assert cfg.GPU_ID == -1 and cfg.USE_GPU_NMS is False


# ------------------------------------------------------------------ no GPU, no ImageNet weights
no_voc = pytest.mark.skipif(os.path.exists(os.path.join(ROOT, "data", "VOCdevkit2007")),
                            reason="data/VOCdevkit2007 exists: the run would start training")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


def error_line(out):
    """The tool's one error line in a script's output (the log's tee carries stderr too)."""
    lines = [line for line in out.splitlines() if ".py: error: " in line]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


def vgg16_weights_absent():
    return not os.path.exists(os.path.join(ROOT, "data", "imagenet_models", "VGG16.v2.caffemodel"))


# fast_rcnn.sh trains through the same common.sh step (train_solver) as faster_rcnn_end2end.sh
TRAINERS = ["faster_rcnn_end2end.sh", "faster_rcnn_alt_opt.sh"]


@no_cuda
@pytest.mark.parametrize("script", TRAINERS)
def test_asking_for_a_gpu_without_cuda_is_an_error(script, tmp_path):
    r = run_script(script, "0", "SMALL", "pascal_voc", LOG_DIR=str(tmp_path))
    assert r.returncode == 2, r.stdout[-3000:]
    last = error_line(r.stdout)
    assert "error: GPU 0 asked for, but this torch sees no CUDA device" in last and "'cpu' runs on the CPU" in last
    assert "Traceback" not in r.stdout and "Solving" not in r.stdout


@no_voc
@pytest.mark.parametrize("script", TRAINERS)
def test_paper_net_without_imagenet_weights_is_an_error(script, tmp_path):
    if not vgg16_weights_absent():
        pytest.skip("data/imagenet_models/VGG16.v2.caffemodel exists")
    r = run_script(script, "cpu", "VGG16", "pascal_voc", LOG_DIR=str(tmp_path))
    assert r.returncode == 2, r.stdout[-3000:]
    last = error_line(r.stdout)
    assert "error: VGG16 is one of the paper's nets, which start from ImageNet weights" in last
    for needle in ("data/imagenet_models/VGG16.v2.caffemodel", "fetch_imagenet_models.sh",
                   "tools/import_torchvision_vgg16.py", "FROM_SCRATCH=1"):
        assert needle in last, needle
    assert "Solving" not in r.stdout
    assert os.listdir(tmp_path), "the log goes to LOG_DIR"


@no_voc
@pytest.mark.parametrize("net, env", [("VGG16", {"FROM_SCRATCH": "1"}), ("SMALL", {})])
def test_from_scratch_is_explicit_for_paper_nets_and_silent_for_small(net, env, tmp_path):
    # past the weights check the run stops at the missing VOC devkit (nothing is trained here)
    r = run_script("faster_rcnn_end2end.sh", "cpu", net, "pascal_voc", LOG_DIR=str(tmp_path), **env)
    assert r.returncode == 2, r.stdout[-3000:]
    assert "training from scratch (random initialisation)" in r.stdout
    assert "from_scratch=True" in r.stdout
    last = error_line(r.stdout)
    assert "VOCdevkit" in last and "ImageNet weights" not in last


def test_a_script_has_written_its_whole_output_when_it_exits(tmp_path):
    # a tee slower than the script (as it sometimes is): without waiting for it, a short run's
    # output redirected to a file could still be missing when the script had exited
    import shutil

    real_tee = shutil.which("tee")
    fake = tmp_path / "bin" / "tee"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nsleep 0.5\nexec {real_tee} "$@"\n')
    fake.chmod(0o755)
    snippet = ("set -euo pipefail; NET=X; EXTRA_ARGS=(); source experiments/scripts/common.sh; "
               f"LOG_DIR={tmp_path / 'logs'} start_log t; final_model_file; echo \"the last line\"; exit 3")
    out = tmp_path / "out.txt"
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    with open(out, "w") as f:
        r = subprocess.run(["bash", "-c", snippet], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                           check=False, timeout=60)
    assert r.returncode == 3  # the script's own status
    lines = out.read_text().splitlines()
    assert lines[0].startswith("Logging output to ") and lines[-1] == "the last line"
    (log,) = (tmp_path / "logs").iterdir()
    assert log.read_text().splitlines()[-1] == "the last line"
