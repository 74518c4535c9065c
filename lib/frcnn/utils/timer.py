"""A wall-clock timer with a running average (upstream's ``lib/utils/timer.py``).

On a GPU, timings of asynchronous work are only meaningful after a synchronisation;
``Timer(sync=torch.cuda.synchronize)`` calls the given function before reading the clock.
"""

from __future__ import annotations

import time
from typing import Callable


class Timer:
    """``tic()`` / ``toc()`` pairs; keeps the total, the count, the last and the average."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.total_time = 0.0
        self.calls = 0
        self.start_time = 0.0
        self.diff = 0.0
        self.average_time = 0.0
        self._sync = sync
        self._running = False

    def tic(self) -> None:
        """Start (or restart) the clock."""
        if self._sync is not None:
            self._sync()
        self.start_time = time.perf_counter()
        self._running = True

    def toc(self, average: bool = True) -> float:
        """Stop the clock; return the average over all calls (or this call's time)."""
        if not self._running:
            raise RuntimeError("Timer.toc() called without a matching tic()")
        if self._sync is not None:
            self._sync()
        self.diff = time.perf_counter() - self.start_time
        self._running = False
        self.total_time += self.diff
        self.calls += 1
        self.average_time = self.total_time / self.calls
        return self.average_time if average else self.diff

    def reset(self) -> None:
        """Forget every measurement."""
        self.__init__(self._sync)  # type: ignore[misc]
