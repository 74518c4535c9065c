"""tools/dev/bench_ranks.py reads the training loop's own progress line: its pattern must match
the line ProgressLog prints (a changed format would make the benchmark fail, not misread)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from frcnn.training.hooks import ProgressLog
from tests.tools.helpers import load_tool


def test_the_progress_line_pattern_matches_the_loops_line():
    bench = load_tool("dev/bench_ranks.py")
    log = ProgressLog()
    log.smoothed = {"loss_cls": [0.5], "rpn_loss_bbox": [0.25]}
    loop = SimpleNamespace(iter=200, max_iters=200, step_timer=SimpleNamespace(average_time=0.137),
                           solver=SimpleNamespace(lr=0.02))
    (found,) = bench.LINE.findall(log.line(loop))
    assert found[0] == "200" and found[1] == "200" and float(found[3]) == 0.137


def test_bad_counts_are_refused(capsys):
    bench = load_tool("dev/bench_ranks.py")
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--ranks", "0"])
    assert e.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def test_the_nets_train_on_the_toy_set_at_their_own_scale():
    bench = load_tool("dev/bench_ranks.py")
    small = bench.train_command("SMALL", "cpu", 20, "a")
    vgg = bench.train_command("VGG16", "0", 20, "b")
    assert "models/toy/SMALL/faster_rcnn_end2end/solver.prototxt" in small and "experiments/cfgs/toy.yml" in small
    assert "models/pascal_voc/VGG16/faster_rcnn_end2end/solver.prototxt" in vgg
    assert "experiments/cfgs/toy.yml" not in vgg  # upstream's scale, not the toy's 320
    assert vgg[vgg.index("TRAIN.SCALES") + 1] == "[600]" and vgg[vgg.index("TRAIN.MAX_SIZE") + 1] == "1000"
    for cmd in (small, vgg):
        assert "--from_scratch" in cmd and cmd[cmd.index("--imdb") + 1] == "toy_trainval"
        assert cmd[cmd.index("--iters") + 1] == "20"
    for net in bench.NETS:  # every solver the tool names exists
        assert os.path.isfile(os.path.join(bench.ROOT, bench.NETS[net][0])), net
