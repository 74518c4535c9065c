"""The rank watch: every rank's heartbeat in the run's store, so that a rank that died, hung or
lost its network is named, and no rank waits for it for ever.

A daemon thread of each rank, every :data:`INTERVAL_S` seconds, adds 1 to ``frcnn/beat/<rank>``
and sets ``frcnn/progress/<rank>`` to the number of collectives its rank has entered; it reads
the other ranks' beats, and when one that has neither finished nor failed has not beaten for
the timeout (``DIST_TIMEOUT``), it names that rank on stderr and ends this process (status 2):
a rank blocked in an NCCL collective would otherwise wait for a dead peer. The store is
torchrun's agent's (or, started by hand, rank 0's), so it outlives a worker that died.

A rank that ends writes ``frcnn/done/<rank>``; one that fails writes ``frcnn/failed/<rank>``
with its error. When a collective raises (gloo: a peer's connection was closed; any backend:
the timeout), :meth:`RankWatch.diagnose` names the cause: a rank that failed (with its message),
else a rank whose beat stopped within a few intervals, else the ranks that entered fewer
collectives than this one (they hung in between).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable

#: seconds between beats
INTERVAL_S = 1.0
#: the status of a process that the watch ends because another rank went silent
EXIT_PEER_LOST = 2

_PREFIX = "frcnn/"
#: what a store operation raises when the store cannot be reached (torch's DistError is a RuntimeError)
STORE_ERRORS = (RuntimeError, OSError)


class RankWatch:
    """See the module docstring. ``progress()``: this rank's count of collectives."""

    def __init__(self, store: Any, rank: int, size: int, timeout_s: float,
                 progress: Callable[[], int] = lambda: 0, interval_s: float = INTERVAL_S) -> None:
        self.store = store
        self.rank = int(rank)
        self.size = int(size)
        self.timeout_s = float(timeout_s)
        self.interval_s = float(interval_s)
        self.progress = progress
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[int, tuple[int, float]] = {}  # rank -> (beat, when it last changed)
        #: rank 0 hosts the store itself unless torchrun's agent does: it waits for the others at the end
        self.hosts_store = self.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"

    # ------------------------------------------------------------------ keys
    def _key(self, kind: str, rank: int) -> str:
        return f"{_PREFIX}{kind}/{rank}"

    def _count(self, kind: str, rank: int) -> int:
        return int(self.store.add(self._key(kind, rank), 0))

    def _flag(self, kind: str, rank: int) -> str | None:
        key = self._key(kind, rank)
        if not self.store.check([key]):
            return None
        return self.store.get(key).decode(errors="replace")

    def _peers(self) -> list[int]:
        return [r for r in range(self.size) if r != self.rank]

    def _ended(self, rank: int) -> bool:
        return self._flag("done", rank) is not None or self._flag("failed", rank) is not None

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        self.beat()
        now = time.monotonic()
        self._seen = {r: (-1, now) for r in self._peers()}
        self._thread = threading.Thread(target=self._run, name="frcnn-rank-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5 * self.interval_s)

    def beat(self) -> None:
        self.store.add(self._key("beat", self.rank), 1)
        self.store.set(self._key("progress", self.rank), str(int(self.progress())))

    def _run(self) -> None:
        unreachable_since = None
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
                silent = self._silent_peers()
                unreachable_since = None
            except STORE_ERRORS as e:  # the store's host (torchrun's agent, or rank 0) is gone
                if self._stop.is_set():
                    return
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since >= self.timeout_s:
                    self._end(f"the run's rendezvous store (MASTER_ADDR {os.environ.get('MASTER_ADDR')}, "
                              f"MASTER_PORT {os.environ.get('MASTER_PORT')}) has not answered for "
                              f"{self.timeout_s:g} s ({type(e).__name__}: {e}): rank 0's machine or "
                              "torchrun is gone")
                continue
            if silent:
                self._end(self.silence_message(silent, self.timeout_s))

    def _silent_peers(self) -> list[int]:
        """Peers not ended whose beat has not changed for the timeout."""
        now = time.monotonic()
        out = []
        for r in self._peers():
            beat = self._count("beat", r)
            last, since = self._seen[r]
            if beat != last:
                self._seen[r] = (beat, now)
            elif now - since >= self.timeout_s and not self._ended(r):
                out.append(r)
        return out

    def silence_message(self, ranks: list[int], seconds: float, timed_out: bool = True) -> str:
        who = ", ".join(str(r) for r in ranks)
        if timed_out:
            return (f"rank {who} of {self.size} has not been heard from for {seconds:.0f} s (DIST_TIMEOUT): it hung "
                    "or was stopped, or its machine or network is gone; see its log")
        return (f"rank {who} of {self.size} stopped (no heartbeat for {seconds:.0f} s): it was killed or crashed, "
                "or its machine or network is gone; see its log")

    def _end(self, message: str) -> None:
        print(f"frcnn (rank {self.rank} of {self.size}): {message}; stopping this rank too", file=sys.stderr,
              flush=True)
        try:
            self.finished(wait=False)
        finally:
            os._exit(EXIT_PEER_LOST)

    # ------------------------------------------------------------------ ends
    def finished(self, wait: bool = True) -> None:
        """This rank ended well. Rank 0 hosting the store waits (``wait``) until every other
        rank has ended or gone silent, so that none loses the store before its end."""
        self.store.set(self._key("done", self.rank), "1")
        if not (wait and self.hosts_store):
            return
        pending = set(self._peers())
        while pending:  # (a peer that falls silent meanwhile is named by the thread, which ends this process)
            pending = {r for r in pending if not self._ended(r)}
            if pending:
                time.sleep(self.interval_s / 4)

    def failed(self, message: str) -> None:
        """This rank failed with ``message`` (the others' :meth:`diagnose` reports it)."""
        try:
            self.store.set(self._key("failed", self.rank), message[:2000])
        except STORE_ERRORS:  # the store is gone too: the others see this rank fall silent
            return

    def linger(self, seconds: float) -> None:
        """Rank 0 hosting the store: keep it up to ``seconds`` more, until the others have ended
        (so that they can read why this rank failed)."""
        deadline = time.monotonic() + seconds
        pending = set(self._peers()) if self.hosts_store else set()
        while pending and time.monotonic() < deadline:
            try:
                pending = {r for r in pending if not self._ended(r)}
            except STORE_ERRORS:
                return
            time.sleep(self.interval_s / 4)

    def diagnose(self, wait_s: float | None = None) -> str | None:
        """Why a collective failed, naming the rank(s); None when no other rank is at fault."""
        wait_s = 3 * self.interval_s if wait_s is None else wait_s
        try:
            return self._diagnose(wait_s)
        except STORE_ERRORS:  # the store cannot be reached either: nothing to add to the error
            return None

    def _diagnose(self, wait_s: float) -> str | None:
        peers = self._peers()
        before = {r: self._count("beat", r) for r in peers}
        deadline = time.monotonic() + wait_s
        while True:
            failed = {r: m for r in peers if (m := self._flag("failed", r)) is not None}
            if failed:
                return "; ".join(f"rank {r} failed: {m}" for r, m in sorted(failed.items()))
            if time.monotonic() >= deadline:
                break
            time.sleep(self.interval_s / 4)
        stopped = [r for r in peers if self._count("beat", r) == before[r] and self._flag("done", r) is None]
        if stopped:
            return self.silence_message(stopped, wait_s, timed_out=False)
        mine = int(self.progress())
        behind = {r: int(self._flag("progress", r) or 0) for r in peers}
        behind = {r: n for r, n in behind.items() if n < mine and self._flag("done", r) is None}
        if behind:
            who = ", ".join(f"rank {r} ({n})" for r, n in sorted(behind.items()))
            return (f"{who} entered fewer collectives than this rank ({mine}) and did not arrive within "
                    f"DIST_TIMEOUT {self.timeout_s:g} s: hung, or far slower (see its log)")
        return None
