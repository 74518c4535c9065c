"""Reading the losses of a training log (ours and Caffe's) and tools/plot_training_log.py."""

import numpy as np
import pytest

from frcnn.errors import InputError
from frcnn.utils.training_log import parse_training_log
from tests.tools.helpers import run_tool_process
from tests.utils.png_check import assert_valid_png

OURS = """Solving...
Iteration 20/60, loss = 1.5000 (rpn_cls_loss = 0.5000, rpn_loss_bbox = 0.0500, loss_cls = 0.7000, loss_bbox = 0.2500), lr = 0.01; 4.1 iter/s, 0.24s / iter, time left 0:00:10
Iteration 20, loss = 1.15214
    Train net output #0: loss_bbox = 0.51001 (* 1 = 0.51001 loss)
    Train net output #1: loss_cls = 0.623778 (* 1 = 0.623778 loss)
    speed: 0.260s / iter (3.84 iter/s), time left to max_iter 40: 0:00:05
Iteration 20, lr = 0.01
Wrote snapshot to: x_iter_20.caffemodel
Iteration 40/60, loss = 1.0000 (rpn_cls_loss = 0.3000, rpn_loss_bbox = 0.0400, loss_cls = 0.5000, loss_bbox = 0.1600), lr = 0.01; 4.1 iter/s, 0.24s / iter, time left 0:00:05
Resumed from x_iter_20.caffemodel at iteration 20
Iteration 40/60, loss = 0.9000 (rpn_cls_loss = 0.3000, rpn_loss_bbox = 0.0400, loss_cls = 0.4000, loss_bbox = 0.1600), lr = 0.01; 4.1 iter/s, 0.24s / iter, time left 0:00:05
Iteration 60/60, loss = 0.8000 (rpn_cls_loss = 0.2000, rpn_loss_bbox = 0.0300, loss_cls = 0.4000, loss_bbox = 0.1700), lr = 0.001; 4.1 iter/s, 0.24s / iter, time left 0:00:00
"""

CAFFE = """I1203 10:12:13.407253 15123 solver.cpp:228] Iteration 0, loss = 4.64212
I1203 10:12:13.407297 15123 solver.cpp:244]     Train net output #0: loss_bbox = 0.0271426 (* 1 = 0.0271426 loss)
I1203 10:12:13.407305 15123 solver.cpp:244]     Train net output #1: loss_cls = 3.04437 (* 1 = 3.04437 loss)
I1203 10:12:13.407325 15123 sgd_solver.cpp:106] Iteration 0, lr = 0.001
I1203 10:12:23.407253 15123 solver.cpp:228] Iteration 20, loss = 2.5
I1203 10:12:23.407297 15123 solver.cpp:244]     Train net output #0: loss_bbox = 0.02 (* 1 = 0.02 loss)
I1203 10:12:23.407305 15123 solver.cpp:244]     Train net output #1: loss_cls = 1.5 (* 1 = 1.5 loss)
I1203 10:13:00.000000 15123 solver.cpp:228] Iteration 0, loss = 0.9
I1203 10:13:00.000001 15123 solver.cpp:244]     Train net output #0: rpn_cls_loss = 0.6 (* 1 = 0.6 loss)
"""


def test_our_log_a_resumed_run_replaces_what_it_repeats(tmp_path):
    # our logs also hold the engine's Caffe-style lines: the progress lines are the ones read
    log = tmp_path / "ours.txt"
    log.write_text(OURS)
    (run,) = parse_training_log(str(log))
    s = run.series()
    assert list(s) == ["loss", "rpn_cls_loss", "rpn_loss_bbox", "loss_cls", "loss_bbox"]
    np.testing.assert_array_equal(s["loss"][0], [20, 40, 60])
    np.testing.assert_allclose(s["loss"][1], [1.5, 0.9, 0.8])  # the resumed run's 40
    np.testing.assert_allclose(s["loss_cls"][1], [0.7, 0.4, 0.4])


def test_caffe_log_with_two_runs(tmp_path):
    log = tmp_path / "caffe.log"
    log.write_text(CAFFE)
    first, second = parse_training_log(str(log))
    s = first.series()
    assert list(s) == ["loss", "loss_bbox", "loss_cls"]
    np.testing.assert_allclose(s["loss"][1], [4.64212, 2.5])
    np.testing.assert_allclose(s["loss_cls"][1], [3.04437, 1.5])
    assert list(second.series()) == ["loss", "rpn_cls_loss"]


def test_a_log_without_losses_is_an_error_naming_it(tmp_path):
    log = tmp_path / "x.txt"
    log.write_text("nothing here\n")
    with pytest.raises(InputError, match=r"x.txt: no training loss lines found"):
        parse_training_log(str(log))


def test_the_plot_tool_writes_one_png_per_run(tmp_path):
    log = tmp_path / "caffe.log"
    log.write_text(CAFFE)
    r = run_tool_process("plot_training_log.py", str(log), "--out", str(tmp_path / "c.png"))
    assert r.returncode == 0, r.stderr
    assert f"Wrote {tmp_path / 'c.png'} (loss, loss_bbox, loss_cls)" in r.stdout
    assert_valid_png(str(tmp_path / "c.png"), 500, 300)
    assert_valid_png(str(tmp_path / "c.run2.png"), 300, 200)
    ours = tmp_path / "ours.txt"
    ours.write_text(OURS)
    r = run_tool_process("plot_training_log.py", str(ours))
    assert r.returncode == 0 and f"Wrote {ours}.png" in r.stdout
    assert_valid_png(str(ours) + ".png", 600, 400)
    r = run_tool_process("plot_training_log.py", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and "missing.txt: cannot read the log" in r.stderr
