"""The loss-curve hook: a table of every loss term, continued across a resume, and its picture."""

import csv
import os

import pytest

from frcnn.training import hooks as H
from frcnn.training import loss_curve as LC
from frcnn.training.loop import TrainLoop
from tests.training.test_loop import _wrapper
from tests.utils.png_check import assert_valid_png


def _losses(i):
    return {"a": 2.0 / i, "b": 0.1 + (i % 3) * 0.01}


def test_every_term_of_every_iteration_is_tabled_and_drawn(tmp_path, capsys):
    w = _wrapper(tmp_path, _losses, snapshot_iters=10, average_loss=5)
    TrainLoop(w, 30, H.default_hooks(w)).run()
    out = capsys.readouterr().out
    png, table = tmp_path / "p_loss.png", tmp_path / "p_losses.csv"
    assert f"Loss curve: {png}" in out
    assert_valid_png(str(png), 600, 300)
    with open(table) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["iter", "lr", "total", "a", "b"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 31))
    assert float(rows[3][3]) == pytest.approx(2.0 / 3) and float(rows[3][2]) == pytest.approx(2.0 / 3 + 0.5 * 0.1)


def test_a_resumed_run_continues_the_table_from_its_snapshot(tmp_path):
    w = _wrapper(tmp_path, _losses, snapshot_iters=10)
    hook = LC.LossCurve()
    loop = TrainLoop(w, 14, [*H.default_hooks(w)[:-1], hook])
    loop.run()  # snapshots at 10 and 14; the table written with each
    # "killed" at 14 and resumed from the snapshot at 10: rows 11-14 come again, once
    w.solver.iter = 10
    hook2 = LC.LossCurve()
    TrainLoop(w, 20, [hook2]).run()
    assert [r[0] for r in hook2.rows] == list(range(1, 21))
    assert [r[0] for r in LC.read_loss_table(str(tmp_path / "p_losses.csv"))] == list(range(1, 21))


def test_learning_rate_drops_are_marked(tmp_path):
    w = _wrapper(tmp_path, _losses)
    hook = LC.LossCurve()

    class Step:  # the fake solver's lr falls by 10 at iteration 5
        def after_step(self, loop):
            loop.solver.lr = 0.01 if loop.iter < 5 else 0.001

    TrainLoop(w, 8, [type("S", (Step, H.Hook), {})(), hook]).run()
    assert hook.lr_drops() == [5]


def test_without_matplotlib_the_table_is_written_and_one_line_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(LC, "plot_loss_curves", lambda *a, **k: None)
    w = _wrapper(tmp_path, _losses)
    TrainLoop(w, 3, [LC.LossCurve()]).run()
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("Note: matplotlib is not installed (pip install matplotlib), so no loss curve")
    assert not os.path.exists(tmp_path / "p_loss.png") and os.path.exists(tmp_path / "p_losses.csv")


def test_figure_class_is_none_without_matplotlib(monkeypatch):
    import builtins

    from frcnn.utils import plots

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    assert plots.figure_class() is None
    assert plots.plot_loss_curves({"x": ([1], [1])}, "/nonexistent/x.png", "t", 1) is None


def test_an_unreadable_table_starts_afresh(tmp_path, capsys):
    bad = tmp_path / "t.csv"
    bad.write_text("not,a,table\n1,2\n")
    assert LC.read_loss_table(str(bad)) == []
    assert "is unreadable" in capsys.readouterr().out


def test_smoothing_is_a_trailing_mean_that_skips_nan():
    import numpy as np

    from frcnn.utils.plots import smooth

    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(smooth([1, np.nan, 3], 3), [1, 1, 2])
