"""frcnn.cli and frcnn.errors in-process: what a user error is, run_tool, the device rule
and the pretrained-weights rule."""

import argparse
import glob
import os

import numpy as np
import pytest
import torch

from frcnn import cli
from frcnn.caffe.prototxt import PrototxtError, parse
from frcnn.config import ConfigError, cfg_from_list, get_default_config
from frcnn.errors import InputError, UnknownNameError, UserError, is_user_error, user_message
from tests.tools.helpers import ROOT


def raised(fn, *args):
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the test looks at what was raised
        return e
    raise AssertionError("nothing raised")


# ------------------------------------------------------------------ what a user error is
def test_user_errors_are_the_projects_input_errors():
    assert is_user_error(UserError("x")) and is_user_error(InputError("x")) and is_user_error(UnknownNameError("x"))
    assert is_user_error(raised(open, "/no/such/file"))
    assert is_user_error(raised(cfg_from_list, ["NO_SUCH", "1"], get_default_config()))
    assert is_user_error(raised(parse, "layer {", "x.prototxt"))
    from frcnn.datasets.factory import get_imdb

    assert is_user_error(raised(get_imdb, "no_such_set_test", get_default_config()))


def test_bugs_are_not_user_errors():
    assert not is_user_error(TypeError("x"))
    assert not is_user_error(RuntimeError("x"))
    assert not is_user_error(raised(np.zeros(3).reshape, 2))  # a ValueError from numpy
    assert not is_user_error(raised(lambda: {}["k"]))  # a KeyError outside the data readers
    assert not is_user_error(ValueError("never raised"))


def test_a_value_error_counts_only_when_raised_by_a_dataset_reader(tmp_path):
    from frcnn.datasets.voc_xml import read_voc_xml

    bad = tmp_path / "a.xml"
    bad.write_text("<annotation><object>")
    e = raised(read_voc_xml, str(bad))
    assert isinstance(e, ValueError) and is_user_error(e)
    # the same ValueError raised by frcnn code outside frcnn.datasets is a bug
    from frcnn.nets.adapt import adapt_net

    assert not is_user_error(raised(adapt_net, parse('name: "x"', "x"), 1))


def test_weights_that_do_not_fit_the_net_are_a_user_error(tmp_path):
    from frcnn.caffe.caffemodel import BlobData, CaffeModel, LayerData, write_caffemodel
    from tests.caffe.helpers import net_for

    net = net_for('layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                  "inner_product_param { num_output: 2 } }", {"data": (1, 3)})
    bad = str(tmp_path / "bad.caffemodel")
    write_caffemodel(bad, CaffeModel("m", [LayerData("fc", "InnerProduct", [BlobData(np.zeros((5, 3), np.float32))])]))
    e = raised(net.copy_from, bad)
    assert isinstance(e, ValueError) and is_user_error(e) and "bad.caffemodel" in user_message(e)


def test_new_error_classes_are_still_their_builtins():
    assert isinstance(InputError("x"), ValueError) and isinstance(UnknownNameError("x"), KeyError)
    assert issubclass(ConfigError, ValueError) and issubclass(PrototxtError, ValueError)


def test_user_message_is_one_line():
    assert user_message(UnknownNameError("Unknown dataset: foo")) == "Unknown dataset: foo"
    assert user_message(KeyError("no quotes")) == "no quotes"
    assert user_message(raised(open, "/no/such/file")) == "/no/such/file: No such file or directory"
    assert user_message(UserError("two\n  lines\n")) == "two lines"
    assert user_message(UserError()) == "UserError"


# ------------------------------------------------------------------ run_tool
def exit_code(main, argv, monkeypatch, prog="tool.py"):
    monkeypatch.setattr("sys.argv", [prog, *argv])
    with pytest.raises(SystemExit) as e:
        cli.run_tool(main, argv)
    return e.value.code


def test_run_tool_exit_status(monkeypatch):
    assert exit_code(lambda argv: 0, [], monkeypatch) == 0
    assert exit_code(lambda argv: None, [], monkeypatch) == 0
    assert exit_code(lambda argv: 3, [], monkeypatch) == 3


def test_run_tool_prints_a_user_error_as_one_line(monkeypatch, capsys):
    def main(argv):
        raise InputError("x.yml: TRAIN.FOO: unknown")

    assert exit_code(main, ["--imdb", "a"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err == "tool.py: error: x.yml: TRAIN.FOO: unknown (--debug shows the traceback)\n"


def test_run_tool_debug_prints_the_traceback_too(monkeypatch, capsys):
    def main(argv):
        raise InputError("bad")

    assert exit_code(main, ["--debug"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "InputError: bad" in err and err.endswith("tool.py: error: bad\n")
    # after --set, '--debug' is a config value, not the flag
    assert not cli.debug_requested(["--set", "EXP_DIR", "--debug"])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    assert cli.debug_requested([])
    monkeypatch.setenv(cli.DEBUG_ENV, "0")
    assert not cli.debug_requested([])


@pytest.mark.parametrize("exc", [TypeError("bug"), ValueError("bug"), AssertionError("bug"), KeyError("bug")])
def test_run_tool_keeps_the_traceback_of_bugs(exc, monkeypatch):
    def main(argv):
        raise exc

    monkeypatch.setattr("sys.argv", ["tool.py"])
    with pytest.raises(type(exc)):
        cli.run_tool(main, [])


def test_run_tool_passes_argparse_exits_through(monkeypatch):
    def main(argv):
        cli.tool_parser("x").parse_args(argv)

    assert exit_code(main, ["--no-such-flag"], monkeypatch) == 2


# ------------------------------------------------------------------ the device
def device_args(**kw):
    base = {"cfg_file": None, "set_cfgs": None, "gpu_id": None, "cpu_mode": False}
    base.update(kw)
    return argparse.Namespace(**base)


def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def cuda_devices(monkeypatch, n):
    """Pretend to have n CUDA devices; returns the list of the devices set_device was given."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    return current


def test_asking_for_a_gpu_that_is_not_there_is_an_error(monkeypatch):
    no_cuda(monkeypatch)
    with pytest.raises(UserError, match=r"GPU 0 asked for, but this torch sees no CUDA device.*'cpu' runs on the CPU"):
        cli.config_from_args(device_args(gpu_id=0), show=False)
    current = cuda_devices(monkeypatch, 2)
    with pytest.raises(UserError, match=r"GPU 2 asked for, but this machine has 2 CUDA device\(s\) \(0\.\.1\)"):
        cli.config_from_args(device_args(gpu_id=2), show=False)
    with pytest.raises(UserError, match="GPU 5"):
        cli.config_from_args(device_args(set_cfgs=["GPU_ID", "5"]), show=False)
    assert current == []
    cfg = cli.config_from_args(device_args(gpu_id=1), show=False)
    assert cfg.GPU_ID == 1 and cfg.USE_GPU_NMS is True
    assert current == [1]  # the chosen GPU is made the current device (upstream's caffe.set_device)


def test_cpu_is_chosen_with_cpu_and_is_the_default_without_cuda(monkeypatch, capsys):
    no_cuda(monkeypatch)
    for args in (device_args(gpu_id=-1), device_args(cpu_mode=True), device_args(gpu_id=0, cpu_mode=True)):
        cfg = cli.config_from_args(args, show=False)
        assert cfg.GPU_ID == -1 and cfg.USE_GPU_NMS is False
    assert capsys.readouterr().out == ""
    cfg = cli.config_from_args(device_args(), show=False)  # no --gpu: GPU_ID 0 if CUDA, else the CPU
    assert cfg.GPU_ID == -1 and cfg.USE_GPU_NMS is False
    assert "Note: no CUDA device, so running on the CPU" in capsys.readouterr().out
    cuda_devices(monkeypatch, 1)
    assert cli.config_from_args(device_args(), show=False).GPU_ID == 0


def test_config_echo_and_show(capsys):
    cli.config_from_args(device_args(cpu_mode=True), show=True, echo=True)
    out = capsys.readouterr().out
    assert out.startswith("Called with args:\nNamespace(") and "Using config:" in out


# ------------------------------------------------------------------ pretrained weights
@pytest.mark.parametrize("net, file", [("ZF", "ZF"), ("VGG16", "VGG16"), ("VGG_CNN_M_1024", "VGG_CNN_M_1024"),
                                       ("VGG_ILSVRC_16_layers", "VGG16")])
def test_paper_nets_without_weights_are_refused(net, file, tmp_path):
    with pytest.raises(UserError) as e:
        cli.check_pretrained(net, None, False, str(tmp_path))
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "imagenet_models", f"{file}.v2.caffemodel") in msg
    assert "fetch_imagenet_models.sh" in msg and "--from_scratch" in msg and "FROM_SCRATCH=1" in msg
    assert ("import_torchvision_vgg16.py" in msg) == (file == "VGG16")
    cli.check_pretrained(net, None, True, str(tmp_path))  # opted in


def test_other_nets_train_from_scratch_and_weights_must_exist(tmp_path):
    cli.check_pretrained("SMALL", None, False, str(tmp_path))
    cli.check_pretrained(None, None, False, str(tmp_path))
    w = tmp_path / "w.caffemodel"
    with pytest.raises(FileNotFoundError, match="w.caffemodel"):
        cli.check_pretrained("VGG16", str(w), False, str(tmp_path))
    w.write_bytes(b"")
    cli.check_pretrained("VGG16", str(w), False, str(tmp_path))


def test_solver_net_names_match_the_shipped_model_folders():
    solvers = sorted(glob.glob(os.path.join(ROOT, "models", "*", "*", "*", "solver.prototxt")))
    assert len(solvers) >= 10
    for solver in solvers:
        net_dir = solver.split(os.sep)[-3]  # models/<set>/<NET>/<method>/solver.prototxt
        name = cli.solver_net_name(solver, ROOT)
        assert cli.PAPER_NETS.get(name) == (None if net_dir == "SMALL" else net_dir), (solver, name)


def _live_lock(folder, pid):
    """A run lock in ``folder`` held by the live process ``pid`` on this host."""
    from frcnn.training import run_lock

    me = run_lock.this_process()
    holder = run_lock.LockHolder(pid, me.host, me.boot_id, run_lock.process_stat(pid)[1], "2026-01-01 00:00:00",
                                 "train_net.py --solver s")
    (folder / "small_faster_rcnn.lock").write_text(holder.to_text())


def test_wait_for_file_refuses_to_wait_when_no_training_run_writes_there(tmp_path):
    missing = str(tmp_path / "model.caffemodel")
    with pytest.raises(FileNotFoundError, match="model file not found$"):
        cli.wait_for_file(missing, wait=False)
    with pytest.raises(FileNotFoundError, match="no training run is writing to .*never end: check the path"):
        cli.wait_for_file(missing, wait=True, poll_s=0.01)
    # a lock whose process is gone is no training run either
    (tmp_path / "x.lock").write_text("999999999\n")
    with pytest.raises(FileNotFoundError, match="no training run is writing"):
        cli.wait_for_file(missing, wait=True, poll_s=0.01)
    open(missing, "w").close()
    cli.wait_for_file(missing, wait=True)  # there: returns at once


def test_wait_for_file_waits_while_a_training_run_holds_the_folder(tmp_path, capsys):
    import subprocess
    import sys
    import threading

    missing = tmp_path / "model.caffemodel"
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _live_lock(tmp_path, trainer.pid)
        threading.Timer(0.3, lambda: missing.write_bytes(b"weights")).start()
        cli.wait_for_file(str(missing), wait=True, poll_s=0.05)
        out = capsys.readouterr().out
        assert f"Waiting for {missing} to exist (a training run is writing to its folder: pid {trainer.pid}" in out
        assert "command: train_net.py --solver s" in out
        missing.unlink()
        # the run ends without writing the file: the wait ends with an error
        threading.Timer(0.3, trainer.kill).start()
        with pytest.raises(FileNotFoundError, match="the training run that was writing to .* has ended without"):
            cli.wait_for_file(str(missing), wait=True, poll_s=0.05)
    finally:
        trainer.kill()
        trainer.wait()
