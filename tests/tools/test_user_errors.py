"""User errors end a tool with one line on stderr and exit status 2 (the traceback behind
--debug); real tools, run as subprocesses with bad input."""

import os

import cv2
import numpy as np
import pytest

from frcnn.cli import run_tool
from tests.tools.helpers import ROOT, load_tool, run_tools, tool_env, tool_path

SMALL_TEST = os.path.join(ROOT, "models", "toy", "SMALL", "faster_rcnn_end2end", "test.prototxt")
END2END_CFG = os.path.join(ROOT, "experiments", "cfgs", "faster_rcnn_end2end.yml")

BAD_XML = """<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>cat</name><difficult>0</difficult>
<bndbox><xmin>yes</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>
"""


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Bad input files: a malformed prototxt, a corrupt caffemodel, a yml with an unknown key,
    a VOC-format set whose annotation has a non-numeric coordinate."""
    d = tmp_path_factory.mktemp("bad_input")
    (d / "bad.prototxt").write_text('name: "x"\nlayer { name: "a" type: "Convolution"\n')
    (d / "bad.caffemodel").write_bytes(b"\x0a\xff\xff\xff\x0f")  # a length prefix past the end
    (d / "bad.yml").write_text("TRAIN:\n  NO_SUCH_KEY: 1\n")
    (d / "bad.pth").write_text("not a state dict\n")
    img = np.zeros((48, 64, 3), np.uint8)
    cv2.imwrite(str(d / "a.jpg"), img)
    voc = d / "data" / "myset"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(BAD_XML)
    cv2.imwrite(str(voc / "JPEGImages" / "a.jpg"), img)
    (voc / "ImageSets" / "Main" / "test.txt").write_text("a\n")
    (voc / "classes.txt").write_text("cat\n")
    return d


@pytest.fixture(scope="module")
def results(bad):
    """The bad commands run as real processes, all at once (each takes seconds of imports)."""
    commands = {
        "missing model": ("test_net.py", ["--cpu", "--def", SMALL_TEST, "--net", str(bad / "none.caffemodel"),
                                          "--wait", "False", "--cfg", END2END_CFG], None),
        # upstream waited forever; with no training run writing to the folder, it is an error
        "missing model, waiting": ("rpn_generate.py", ["--cpu", "--def", SMALL_TEST, "--net",
                                                       str(bad / "none.caffemodel"), "--imdb", "voc_2007_test"], None),
        # an RPN net tested with upstream's default TEST.HAS_RPN False: said before any proposal file is read
        "RPN net, HAS_RPN False": ("test_net.py", ["--cpu", "--def", SMALL_TEST, "--net", str(bad / "bad.caffemodel"),
                                                   "--imdb", "voc_2007_test", "--set", "DATA_DIR", str(bad)], None),
        "bad --set key": ("reval.py", [str(bad), "--set", "NO_SUCH_KEY", "1"], None),
        "malformed prototxt": ("time_net.py", ["--cpu", "--def", str(bad / "bad.prototxt"), "--images",
                                               str(bad / "a.jpg")], None),
        "bad --set key, --debug": ("reval.py", [str(bad), "--debug", "--set", "NO_SUCH_KEY", "1"], None),
        "bad --set key, FRCNN_DEBUG": ("reval.py", [str(bad), "--set", "NO_SUCH_KEY", "1"],
                                       tool_env(FRCNN_DEBUG="1")),
    }
    return run_tools(commands)


def assert_one_line_error(status, stderr, tool, needles):
    assert status == 2, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith(f"{tool}: error: ") and lines[0].endswith("(--debug shows the traceback)")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize(
    "case, tool, needles",
    [
        ("missing model", "test_net.py", ["none.caffemodel", "not found"]),
        ("RPN net, HAS_RPN False", "test_net.py", ["has no 'rois' input", "faster_rcnn_end2end.yml"]),
        ("missing model, waiting", "rpn_generate.py", ["none.caffemodel: model file not found", "no training run"]),
        ("bad --set key", "reval.py", ["--set", "NO_SUCH_KEY"]),
        ("malformed prototxt", "time_net.py", ["bad.prototxt:3:1"]),
    ],
)
def test_user_error_is_one_line_and_exit_2(results, case, tool, needles):
    r = results[case]
    assert_one_line_error(r.returncode, r.stderr, tool, needles)


@pytest.mark.parametrize("case", ["bad --set key, --debug", "bad --set key, FRCNN_DEBUG"])
def test_debug_shows_the_traceback(results, case):
    r = results[case]
    assert r.returncode == 2
    assert r.stderr.startswith("Traceback (most recent call last):")
    assert "frcnn.config.ConfigError: --set: unknown config key 'NO_SUCH_KEY'" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "reval.py: error: --set: unknown config key 'NO_SUCH_KEY'"


# the same through run_tool in this process (what differs from the above is only the bad input)
@pytest.mark.parametrize(
    "tool, args, needles",
    [
        ("compress_net.py", ["--def", "{bad}/none.prototxt", "--net", "{bad}/none.caffemodel", "--fc6_rank", "4"],
         ["none.prototxt"]),
        ("eval_recall.py", ["--cfg", "{bad}/bad.yml"], ["bad.yml", "TRAIN.NO_SUCH_KEY"]),
        ("time_net.py", ["--cpu", "--def", SMALL_TEST, "--net", "{bad}/bad.caffemodel", "--images", "{bad}/a.jpg"],
         ["bad.caffemodel"]),
        ("eval_recall.py", ["--imdb", "no_such_set_test"], ["Unknown dataset: no_such_set_test"]),
        ("eval_recall.py", ["--imdb", "myset_test", "--method", "gt", "--set", "DATA_DIR", "{bad}/data"],
         ["a.xml", "xmin", "yes"]),
        ("import_torchvision_vgg16.py", ["{bad}/none.pth", "{bad}/o.caffemodel"], ["none.pth"]),
        ("import_torchvision_vgg16.py", ["{bad}/bad.pth", "{bad}/o.caffemodel"], ["bad.pth", "cannot load"]),
    ],
)
def test_more_user_errors_in_process(bad, tool, args, needles, monkeypatch, capsys):
    argv = [a.format(bad=bad) for a in args]
    monkeypatch.delenv("FRCNN_DEBUG", raising=False)
    monkeypatch.setattr("sys.argv", [tool_path(tool), *argv])
    with pytest.raises(SystemExit) as e:
        run_tool(load_tool(tool).main, argv)
    assert_one_line_error(e.value.code, capsys.readouterr().err, tool, needles)
