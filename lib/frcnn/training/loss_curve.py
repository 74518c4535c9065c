"""The loss-curve hook: every loss term of every iteration, kept and drawn beside the snapshots.

:class:`LossCurve` records, after each iteration, the learning rate, the total (weighted)
loss and each loss output of the net (unweighted, as the progress lines print them). It
writes them to ``<output dir>/<prefix>[_<infix>]_losses.csv`` at every snapshot, so that a
resumed run continues the same table (rows past the resumed iteration are dropped), and at
the end of training draws ``<prefix>[_<infix>]_loss.png``: one panel per term, the raw values
and their mean over the solver's ``average_loss`` iterations, dashed lines where the learning
rate dropped. Without matplotlib the table is still written and one line says so.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from frcnn.training import snapshot as snap
from frcnn.training.loop import Hook, TrainLoop
from frcnn.utils.io import atomic_write
from frcnn.utils.plots import missing_note, plot_loss_curves

Row = tuple[int, float, float, dict[str, float]]  # iteration, lr, total, terms


class LossCurve(Hook):
    """Keeps ``rows`` (iteration, lr, total loss, {term: loss}); see the module docstring."""

    rank_zero_only = True  # it writes files beside the snapshots, which rank 0 alone writes

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.csv_path = ""
        self.png_path = ""

    # ------------------------------------------------------------------ the hook
    def before_train(self, loop: TrainLoop) -> None:
        w = loop.wrapper
        stem = os.path.join(w.output_dir, snap.run_stem(w.prefix, w.infix))
        self.csv_path, self.png_path = stem + "_losses.csv", stem + "_loss.png"
        self.rows = read_loss_table(self.csv_path, upto=loop.iter) if loop.iter > 0 else []

    def after_step(self, loop: TrainLoop) -> None:
        self.rows.append((loop.iter, float(loop.solver.lr), float(loop.total_loss), dict(loop.losses)))

    def after_snapshot(self, loop: TrainLoop, path: str) -> None:
        write_loss_table(self.csv_path, self.rows)

    def after_train(self, loop: TrainLoop) -> None:
        if not self.rows:
            return
        write_loss_table(self.csv_path, self.rows)
        window = max(1, min(int(loop.solver.param.average_loss or 1), len(self.rows) // 10 or 1))
        title = f"{os.path.basename(self.png_path)[: -len('_loss.png')]}: training loss ({len(self.rows)} iterations)"
        drawn = plot_loss_curves(self.series(), self.png_path, title, window, marks=self.lr_drops())
        print(f"Loss curve: {drawn}" if drawn else missing_note("loss curve") + f" (the losses are in {self.csv_path})")

    # ------------------------------------------------------------------ what it drew
    def series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"total loss": (iters, values), <term>: (iters, values), ...}`` of the rows."""
        iters = np.array([r[0] for r in self.rows], dtype=np.float64)
        out = {"total loss (weighted)": (iters, np.array([r[2] for r in self.rows]))}
        for name in _term_names(self.rows):
            out[name] = (iters, np.array([r[3].get(name, math.nan) for r in self.rows]))
        return out

    def lr_drops(self) -> list[int]:
        """Iterations whose learning rate is lower than the previous row's."""
        return [b[0] for a, b in zip(self.rows, self.rows[1:]) if b[1] < a[1]]


def _term_names(rows: list[Row]) -> list[str]:
    names: list[str] = []
    for r in rows:
        names += [k for k in r[3] if k not in names]
    return names


def write_loss_table(path: str, rows: list[Row]) -> None:
    """The rows as CSV: ``iter,lr,total,<term>,...`` (empty where a term is missing)."""
    names = _term_names(rows)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path, "w") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["iter", "lr", "total", *names])
        for it, lr, total, terms in rows:
            out.writerow([it, repr(lr), repr(total), *(repr(terms[n]) if n in terms else "" for n in names)])


def read_loss_table(path: str, upto: int | None = None) -> list[Row]:
    """Rows of a table written by :func:`write_loss_table` (those with iter <= ``upto``);
    an absent or unreadable table gives no rows (a note says so for an unreadable one)."""
    if not os.path.isfile(path):
        return []
    rows: list[Row] = []
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            if header[:3] != ["iter", "lr", "total"]:
                raise ValueError(f"header {header[:3]}")
            names = header[3:]
            for rec in reader:
                it = int(rec[0])
                if upto is not None and it > upto:
                    continue
                terms = {n: float(v) for n, v in zip(names, rec[3:]) if v != ""}
                rows.append((it, float(rec[1]), float(rec[2]), terms))
    except (OSError, ValueError, IndexError, StopIteration) as e:
        print(f"Note: {path} is unreadable ({e}); the loss curve starts afresh")
        return []
    return rows
