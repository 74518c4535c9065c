"""The tools under torchrun, without starting any: which tools may run on ranks, what ranks other
than 0 print, the GPU of each rank, the timeout key, and the scripts' GPU lists."""

import os
import shlex
import subprocess
import sys

import pytest

from frcnn.cli import run_tool
from frcnn.config import ConfigError, cfg_from_list, get_default_config
from tests.tools.helpers import ROOT


def _as_rank(monkeypatch, rank, size=2):
    monkeypatch.setenv("WORLD_SIZE", str(size))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # (run_tool may replace it; restored after the test)
    monkeypatch.setattr(sys, "argv", ["demo.py"])


def test_a_tool_that_runs_as_one_process_refuses_torchrun(monkeypatch, capsys):
    _as_rank(monkeypatch, 0)
    called = []
    with pytest.raises(SystemExit) as e:
        run_tool(lambda argv: called.append(argv))
    assert e.value.code == 2 and not called
    err = capsys.readouterr().err
    assert "demo.py: error: demo.py runs as one process, and torchrun started 2 (WORLD_SIZE)" in err


def test_ranks_other_than_0_print_nothing_and_name_themselves_in_errors(monkeypatch, capsys):
    from frcnn.errors import InputError

    _as_rank(monkeypatch, 1)

    def main(argv):
        print("a progress line")
        raise InputError("data/x: no such folder")

    with pytest.raises(SystemExit) as e:
        run_tool(main, distributed=True)
    out, err = capsys.readouterr()
    assert e.value.code == 2 and "a progress line" not in out
    assert "demo.py (rank 1 of 2): error: data/x: no such folder" in err

    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    monkeypatch.setenv("FRCNN_LOG_ALL_RANKS", "1")
    printed = []
    monkeypatch.setattr(sys, "stdout", type("W", (), {"write": lambda self, t: printed.append(t),
                                                      "flush": lambda self: None})())
    with pytest.raises(SystemExit):
        run_tool(lambda argv: print("kept"), distributed=True)
    assert "kept" in "".join(printed)


def test_rank_0_keeps_its_stdout(monkeypatch, capsys):
    _as_rank(monkeypatch, 0)
    with pytest.raises(SystemExit) as e:
        run_tool(lambda argv: print("rank 0 logs"), distributed=True)
    assert e.value.code == 0 and "rank 0 logs" in capsys.readouterr().out


def test_dist_timeout_is_seconds_above_zero():
    cfg = get_default_config()
    assert cfg.DIST_TIMEOUT == 600.0
    cfg_from_list(["DIST_TIMEOUT", "30"], cfg)
    assert cfg.DIST_TIMEOUT == 30.0
    for bad in ("0", "-5", "soon"):
        with pytest.raises(ConfigError, match="DIST_TIMEOUT: expected a number of seconds > 0"):
            cfg_from_list(["DIST_TIMEOUT", bad], cfg)


def test_a_cpu_run_under_torchrun_stays_on_the_cpu(monkeypatch):
    import argparse

    from frcnn.cli import config_from_args

    _as_rank(monkeypatch, 1)
    cfg = config_from_args(argparse.Namespace(gpu_id=-1, cpu_mode=False), show=False)
    assert cfg.GPU_ID == -1



def test_a_gpu_run_under_torchrun_names_the_ranks_own_gpu_when_it_is_missing(monkeypatch):
    # the scripts pass --gpu 0 to every rank; rank 1's error is about its own GPU, 1
    import argparse

    import torch

    from frcnn.cli import config_from_args
    from frcnn.errors import UserError

    _as_rank(monkeypatch, 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"\(LOCAL_RANK 1\): GPU 1 asked for, but this machine has 1 CUDA device"):
        config_from_args(argparse.Namespace(gpu_id=0, cpu_mode=False), show=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"\(LOCAL_RANK 1\): GPU 1 asked for, but this torch sees no CUDA device"):
        config_from_args(argparse.Namespace(gpu_id=0, cpu_mode=False), show=False)


# ------------------------------------------------------------------ the scripts' GPU lists
FAKE_PYTHON = """#!/usr/bin/env bash
printf 'CVD=%s %s\\n' "${CUDA_VISIBLE_DEVICES:-}" "$*" >> "$FAKE_LOG"
prev=""
for a in "$@"; do
  if [ "$prev" = "--final_model_file" ]; then echo /trained/final.caffemodel > "$a"; fi
  prev="$a"
done
"""


def _script(tmp_path, gpu_id, script="faster_rcnn_end2end.sh", **env_extra):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "calls.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "TORCHRUN_ARGS", "ITERS")}
    env.update(PYTHON=str(fake), FAKE_LOG=str(log), LOG_DIR=str(tmp_path / "logs"), FROM_SCRATCH="1", **env_extra)
    r = subprocess.run(["bash", os.path.join(ROOT, "experiments", "scripts", script), gpu_id, "SMALL", "pascal_voc"],
                       capture_output=True, text=True, env=env, timeout=60, check=False)
    calls = [line.split(" ", 1) for line in log.read_text().splitlines()] if log.exists() else []
    return r, [(cvd[4:], shlex.split(rest)) for cvd, rest in calls]


def test_a_gpu_list_runs_train_and_test_under_torchrun_one_rank_per_gpu(tmp_path):
    r, calls = _script(tmp_path, "0,1,2,3")
    assert r.returncode == 0, r.stderr
    assert [c[1][c[1].index("--nproc_per_node") + 1] for c in calls] == ["4", "4"]
    for cvd, argv in calls:
        assert cvd == "0,1,2,3" and argv[:3] == ["-m", "torch.distributed.run", "--standalone"]
        assert argv[argv.index("--gpu") + 1] == "0"  # each rank takes GPU LOCAL_RANK of the list
    assert [os.path.basename(next(a for a in c[1] if a.endswith(".py"))) for c in calls] == [
        "train_net.py", "test_net.py"]


def test_cpu_ranks_and_the_rendezvous_arguments(tmp_path):
    r, calls = _script(tmp_path, "cpu:2", script="faster_rcnn_alt_opt.sh",
                       TORCHRUN_ARGS="--nnodes 2 --node_rank 1 --rdzv_backend c10d --rdzv_endpoint h0:29400")
    assert r.returncode == 0, r.stderr
    argv = calls[0][1]
    assert argv[:12] == ["-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", "1", "--rdzv_backend",
                         "c10d", "--rdzv_endpoint", "h0:29400", "--nproc_per_node", "2"]
    assert "tools/train_faster_rcnn_alt_opt.py" in argv and argv[argv.index("--gpu") + 1] == "cpu"
    assert calls[0][0] == ""


def test_one_gpu_or_cpu_runs_one_process_as_before(tmp_path):
    _, calls = _script(tmp_path, "1")
    assert calls and all(c[1][0].endswith("train_net.py") or c[1][0].endswith("test_net.py") for c in calls)
    assert all(c[1][c[1].index("--gpu") + 1] == "1" for c in calls)


@pytest.mark.parametrize("gpu_id, message", [
    ("0,0", "GPU_ID '0,0' names a GPU twice (one rank per GPU)"),
    ("cpu:0", "GPU_ID must be a GPU number or 'cpu', a list of GPUs (0,1,2,3) or cpu:N (N CPU processes)"),
    ("1,", "GPU_ID must be a GPU number or 'cpu'"),
])
def test_bad_gpu_lists_are_named(tmp_path, gpu_id, message):
    r, calls = _script(tmp_path, gpu_id)
    assert r.returncode == 1 and message in r.stderr and not calls
