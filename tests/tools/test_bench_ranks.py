"""tools/dev/bench_ranks.py reads the training loop's own progress line: its pattern must match
the line ProgressLog prints (a changed format would make the benchmark fail, not misread)."""

from __future__ import annotations

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
