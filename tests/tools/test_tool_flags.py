"""The tools' flags: one parser helper, upstream's names, underscores with dashed aliases,
required flags declared as required."""

import argparse

import pytest

from frcnn.cli import add_flag, tool_parser
from tests.tools.helpers import (
    DEV_TOOLS,
    TOOLS,
    load_tool,
    minimal_argv,
    run_tool_process,
    sample_value,
    tool_parser_of,
)

# upstream's flags per tool (py-faster-rcnn's tools/*.py); each must still parse
UPSTREAM_FLAGS = {
    "train_net.py": ["--gpu", "--solver", "--iters", "--weights", "--cfg", "--imdb", "--rand", "--set"],
    "test_net.py": ["--gpu", "--def", "--net", "--cfg", "--wait", "--imdb", "--comp", "--set", "--vis", "--num_dets"],
    "train_faster_rcnn_alt_opt.py": ["--gpu", "--net_name", "--weights", "--cfg", "--imdb", "--set"],
    "rpn_generate.py": ["--gpu", "--def", "--net", "--cfg", "--wait", "--imdb", "--set"],
    "demo.py": ["--gpu", "--cpu", "--net"],
    "compress_net.py": ["--def", "--def-svd", "--net"],
    "reval.py": ["--imdb", "--matlab", "--comp", "--nms"],
    "eval_recall.py": ["--imdb", "--method", "--rpn-file"],
}
# tools that share the device / config flags (upstream's had them, and ours that run nets)
DEVICE_TOOLS = ["train_net.py", "test_net.py", "train_faster_rcnn_alt_opt.py", "rpn_generate.py", "demo.py",
                "time_net.py"]
CFG_TOOLS = DEVICE_TOOLS + ["reval.py", "eval_recall.py", "make_toy_dataset.py"]
REQUIRED = {
    "train_net.py": ["--solver"],
    "test_net.py": ["--def", "--net"],
    "train_faster_rcnn_alt_opt.py": ["--net_name"],
    "rpn_generate.py": ["--def", "--net"],
    "compress_net.py": ["--def", "--net"],
    "time_net.py": ["--def"],
}


@pytest.mark.parametrize("tool", TOOLS + DEV_TOOLS)
def test_every_tool_help_runs(tool, capsys):
    module = load_tool(tool)
    entry = getattr(module, "parse_args", None) or module.main
    with pytest.raises(SystemExit) as e:
        entry(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage:") and "--debug" in out


@pytest.mark.parametrize("tool", sorted(UPSTREAM_FLAGS))
def test_upstream_flags_still_exist(tool, monkeypatch):
    parser = tool_parser_of(tool, monkeypatch)
    known = {s for a in parser._actions for s in a.option_strings}
    missing = [f for f in UPSTREAM_FLAGS[tool] if f not in known]
    assert not missing, f"{tool} lost upstream's {missing}"


@pytest.mark.parametrize("tool", TOOLS + DEV_TOOLS)
def test_multiword_flags_have_both_spellings_and_parse_the_same(tool, monkeypatch):
    parser = tool_parser_of(tool, monkeypatch)
    base = minimal_argv(parser)
    for action in parser._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        multi = [s for s in long if "_" in s[2:] or "-" in s[2:]]
        if not multi:
            continue
        under = "--" + multi[0][2:].replace("-", "_")
        dashed = "--" + multi[0][2:].replace("_", "-")
        assert under in long and dashed in long, f"{tool}: {action.option_strings} lacks one spelling"
        assert long[0] == under, f"{tool}: the underscored {under} should be the name shown first"
        if action.required:  # already in base
            continue
        value = sample_value(action)
        a = parser.parse_args(base + [under, *value])
        b = parser.parse_args(base + [dashed, *value])
        assert a == b and getattr(a, action.dest) != action.default, f"{tool}: {under} vs {dashed}"


def test_shared_flags_come_from_the_one_helper(monkeypatch):
    for tool in DEVICE_TOOLS:
        parser = tool_parser_of(tool, monkeypatch)
        args = parser.parse_args(minimal_argv(parser) + ["--gpu", "cpu"])
        assert args.gpu_id == -1 and args.cpu_mode is False, tool
        assert parser.parse_args(minimal_argv(parser)).gpu_id is None, tool  # default: see config_from_args
    for tool in CFG_TOOLS:
        parser = tool_parser_of(tool, monkeypatch)
        args = parser.parse_args(minimal_argv(parser) + ["--cfg", "a.yml", "--cfg", "b.yml", "--set", "A", "1"])
        assert args.cfg_file == ["a.yml", "b.yml"] and args.set_cfgs == ["A", "1"], tool


@pytest.mark.parametrize("tool", sorted(REQUIRED))
def test_required_flags_are_declared_required(tool, monkeypatch):
    parser = tool_parser_of(tool, monkeypatch)
    declared = {a.option_strings[0] for a in parser._actions if a.required and a.option_strings}
    assert declared == set(REQUIRED[tool])


def test_missing_required_flag_exits_2_naming_it():
    r = run_tool_process("train_net.py", "--iters", "10")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "train_net.py: error: the following arguments are required: --solver"


@pytest.mark.parametrize(
    "tool, args, flag",
    [
        ("test_net.py", ["--def", "x.prototxt"], "--net"),
        ("rpn_generate.py", ["--net", "x.caffemodel"], "--def"),
        ("train_faster_rcnn_alt_opt.py", ["--imdb", "toy_trainval"], "--net_name"),
        ("compress_net.py", ["--net", "x.caffemodel", "--fc6_rank", "4"], "--def"),
        ("time_net.py", ["--images", "a.jpg"], "--def"),
        ("import_torchvision_vgg16.py", ["a.pth"], "dst"),
    ],
)
def test_missing_required_flag_is_named(tool, args, flag, capsys):
    with pytest.raises(SystemExit) as e:
        load_tool(tool).parse_args(args)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: the following arguments are required: {flag}" in last, last


def test_compress_net_needs_an_svd_prototxt_or_a_rank(monkeypatch, capsys):
    parser_args = ["--def", "a.prototxt", "--net", "a.caffemodel"]
    with pytest.raises(SystemExit) as e:
        load_tool("compress_net.py").parse_args(parser_args)
    assert e.value.code == 2 and "--def_svd, or --fc6_rank" in capsys.readouterr().err


def test_time_net_needs_imdb_or_images(monkeypatch, capsys):
    parser = tool_parser_of("time_net.py", monkeypatch)
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--def", "a.prototxt"])
    assert e.value.code == 2 and "--imdb --images" in capsys.readouterr().err


def test_add_flag_registers_both_spellings_once():
    p = argparse.ArgumentParser()
    add_flag(p, "--fc6_rank", type=int)
    add_flag(p, "--def_svd", "--def-svd")  # an alias equal to the dashed form is not added twice
    add_flag(p, "--gpu")
    assert p.parse_args(["--fc6-rank", "3"]).fc6_rank == 3 == p.parse_args(["--fc6_rank", "3"]).fc6_rank
    assert p.parse_args(["--def-svd", "s"]).def_svd == "s"
    assert [a.option_strings for a in p._actions[1:]] == [["--fc6_rank", "--fc6-rank"], ["--def_svd", "--def-svd"],
                                                          ["--gpu"]]


def test_tool_parser_rejects_a_bad_model_flag_spec():
    with pytest.raises(ValueError, match="--def"):
        tool_parser("x", prototxt="needed")


def test_tool_parser_help_if_empty(capsys):
    p = tool_parser("x", cfg=True, help_if_empty=True)
    with pytest.raises(SystemExit) as e:
        p.parse_args([])
    assert e.value.code == 1 and "usage:" in capsys.readouterr().out
    assert tool_parser("x").parse_args([]).debug is False
