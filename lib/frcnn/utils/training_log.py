"""Loss values read back from a training log: ours and py-faster-rcnn's (Caffe's) format.

Ours (:class:`frcnn.training.hooks.ProgressLog`), every ``display`` iterations::

    Iteration 20/3000, loss = 1.0705 (rpn_cls_loss = 0.3544, loss_cls = 0.4172, ...), lr = 0.01; ...

Caffe's, as py-faster-rcnn's logs hold it::

    I1203 10:12:13.40 15123 solver.cpp:228] Iteration 20, loss = 1.2345
    I1203 10:12:13.40 15123 solver.cpp:244]     Train net output #0: loss_bbox = 0.0271 (* 1 = 0.0271 loss)

Our logs hold both: the engine's solver logs Caffe's lines too; our progress lines are read
then. A log may hold several runs (the four alt-opt stages, or a test between trainings): a
run ends where the iteration number falls to or below that run's first one. A resumed run
(the iteration falls back less far) replaces the rows it repeats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from frcnn.errors import InputError

_OURS = re.compile(r"Iteration (\d+)/\d+, loss = (\S+) \(([^)]*)\)")
_CAFFE = re.compile(r"\] Iteration (\d+), loss = (\S+)|^Iteration (\d+), loss = (\S+)")
_OUTPUT = re.compile(r"Train net output #\d+: (\S+) = (\S+)")
_TERM = re.compile(r"([^\s,=]+) = ([^\s,]+)")
TOTAL = "loss"


def _float(text: str) -> float:
    try:
        return float(text.rstrip(",;"))
    except ValueError:
        return math.nan


@dataclass
class Run:
    """One training run of a log: per iteration, the total loss and each named output."""

    rows: dict[int, dict[str, float]] = field(default_factory=dict)
    first: int = -1

    def add(self, iteration: int, name: str, value: float) -> None:
        self.rows.setdefault(iteration, {})[name] = value

    def start(self, iteration: int) -> None:
        """A new loss line at ``iteration``: drop rows it repeats (a resumed run)."""
        if self.first < 0:
            self.first = iteration
        for it in [i for i in self.rows if i >= iteration]:
            del self.rows[it]

    def series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"loss": (iters, values), <output>: (iters, values), ...}``, in iteration order."""
        iters = sorted(self.rows)
        names = [TOTAL]
        for it in iters:
            names += [n for n in self.rows[it] if n not in names]
        out = {}
        for name in names:
            its = [it for it in iters if name in self.rows[it]]
            out[name] = (np.array(its, dtype=np.float64), np.array([self.rows[i][name] for i in its]))
        return out


class _Reader:
    """The runs of one format, built line by line (module docstring)."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.current: Run | None = None
        self.last_iter = -1

    def begin(self, iteration: int) -> Run:
        if self.current is None or iteration <= self.current.first:
            self.current = Run()
            self.runs.append(self.current)
        self.current.start(iteration)
        self.last_iter = iteration
        return self.current


def parse_training_log(path: str) -> list[Run]:
    """The runs of a training log (module docstring); raises InputError naming the file when it
    holds no loss line of either format. A log with lines of both (ours, whose engine also logs
    Caffe's lines) gives our progress lines: every loss averaged like the total."""
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read the log: {e.strerror}") from None
    ours, caffe = _Reader(), _Reader()
    for line in lines:
        m = _OURS.search(line)
        if m:
            it = int(m.group(1))
            run = ours.begin(it)
            run.add(it, TOTAL, _float(m.group(2)))
            for name, value in _TERM.findall(m.group(3)):
                run.add(it, name, _float(value))
            continue
        m = _CAFFE.search(line)
        if m:
            it = int(m.group(1) or m.group(3))
            caffe.begin(it).add(it, TOTAL, _float(m.group(2) or m.group(4)))
            continue
        m = _OUTPUT.search(line)
        if m and caffe.current is not None:
            caffe.current.add(caffe.last_iter, m.group(1), _float(m.group(2)))
    runs = [r for r in (ours.runs or caffe.runs) if r.rows]
    if not runs:
        raise InputError(
            f"{path}: no training loss lines found (expected 'Iteration N/M, loss = X (...)' or Caffe's "
            "'Iteration N, loss = X')"
        )
    return runs
