"""User errors end a tool with one line on stderr and exit status 2 (the traceback behind
--debug); real tools, run as subprocesses with bad input."""

import os

import cv2
import numpy as np
import pytest

from tests.tools.helpers import ROOT, run_tools, tool_env

SMALL_TEST = os.path.join(ROOT, "models", "toy", "SMALL", "faster_rcnn_end2end", "test.prototxt")

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
    """Every bad command at once (each is a fresh process: a few seconds of imports)."""
    debug_env = tool_env(FRCNN_DEBUG="1")
    commands = {
        "missing model": ("test_net.py", ["--cpu", "--def", SMALL_TEST, "--net", str(bad / "none.caffemodel"),
                                          "--wait", "False"], None),
        "missing prototxt": ("compress_net.py", ["--def", str(bad / "none.prototxt"), "--net",
                                                 str(bad / "none.caffemodel"), "--fc6_rank", "4"], None),
        "bad --set key": ("reval.py", [str(bad), "--set", "NO_SUCH_KEY", "1"], None),
        "bad --set key, --debug": ("reval.py", [str(bad), "--debug", "--set", "NO_SUCH_KEY", "1"], None),
        "bad --set key, FRCNN_DEBUG": ("reval.py", [str(bad), "--set", "NO_SUCH_KEY", "1"], debug_env),
        "bad yml key": ("eval_recall.py", ["--cfg", str(bad / "bad.yml")], None),
        "malformed prototxt": ("time_net.py", ["--cpu", "--def", str(bad / "bad.prototxt"), "--images",
                                               str(bad / "a.jpg")], None),
        "corrupt caffemodel": ("time_net.py", ["--cpu", "--def", SMALL_TEST, "--net", str(bad / "bad.caffemodel"),
                                               "--images", str(bad / "a.jpg")], None),
        "unknown dataset": ("eval_recall.py", ["--imdb", "no_such_set_test"], None),
        "bad annotation": ("eval_recall.py", ["--imdb", "myset_test", "--method", "gt", "--set", "DATA_DIR",
                                              str(bad / "data")], None),
        "missing torchvision file": ("import_torchvision_vgg16.py", [str(bad / "none.pth"), str(bad / "o.caffemodel")],
                                     None),
    }
    return run_tools(commands)


@pytest.mark.parametrize(
    "case, tool, needles",
    [
        ("missing model", "test_net.py", ["none.caffemodel", "not found"]),
        ("missing prototxt", "compress_net.py", ["none.prototxt"]),
        ("bad --set key", "reval.py", ["--set", "NO_SUCH_KEY"]),
        ("bad yml key", "eval_recall.py", ["bad.yml", "TRAIN.NO_SUCH_KEY"]),
        ("malformed prototxt", "time_net.py", ["bad.prototxt:3:1"]),
        ("corrupt caffemodel", "time_net.py", ["bad.caffemodel"]),
        ("unknown dataset", "eval_recall.py", ["no_such_set_test"]),
        ("bad annotation", "eval_recall.py", ["a.xml", "xmin", "yes"]),
        ("missing torchvision file", "import_torchvision_vgg16.py", ["none.pth"]),
    ],
)
def test_user_error_is_one_line_and_exit_2(results, case, tool, needles):
    r = results[case]
    assert r.returncode == 2, f"{case}: exit {r.returncode}\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"{tool}: error: ") and lines[0].endswith("(--debug shows the traceback)")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", ["bad --set key, --debug", "bad --set key, FRCNN_DEBUG"])
def test_debug_shows_the_traceback(results, case):
    r = results[case]
    assert r.returncode == 2
    assert r.stderr.startswith("Traceback (most recent call last):")
    assert "frcnn.config.ConfigError: --set: unknown config key 'NO_SUCH_KEY'" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "reval.py: error: --set: unknown config key 'NO_SUCH_KEY'"
