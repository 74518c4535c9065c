"""The lock a training run holds on its output folder: ``<output_dir>/<prefix>[_<infix>].lock``.

A second run of the same command would resume from, and then race with, the first one's
snapshots, so it is refused. The lock file says who holds it, one ``key=value`` per line
after the pid (the first line is the bare pid, as older versions wrote and read it)::

    12345
    host=gpu-box-3
    boot_id=4f9c...            (/proc/sys/kernel/random/boot_id)
    start_ticks=81234567       (/proc/<pid>/stat field 22: start time in clock ticks after boot)
    started=2025-01-02 03:04:05
    command=python tools/train_net.py --solver ...

A lock is stale, and is taken over with a log line, when it was written on this host and
its process is gone, is a zombie, or is another process now (the pid was reused: the start
time differs, the machine has rebooted since, or the pid is the caller's own). A lock of another host cannot be checked
from here and is refused; the message names the holder and how to remove the lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass

from frcnn.errors import UserError

#: a lock file with no content yet may be in the middle of being written: wait this long
_WRITE_GRACE_S = 2.0


class RunLockHeld(UserError, RuntimeError):
    """Another live training run holds the output folder's lock."""


@dataclass
class LockHolder:
    """What a lock file says about the run that holds it (fields missing from older files are None)."""

    pid: int
    host: str | None = None
    boot_id: str | None = None
    start_ticks: int | None = None
    started: str | None = None
    command: str | None = None

    def to_text(self) -> str:
        lines = [str(self.pid)]
        for key in ("host", "boot_id", "start_ticks", "started", "command"):
            value = getattr(self, key)
            if value is not None:  # one line each: a command line's newlines are shown as \n
                lines.append(f"{key}=" + str(value).replace("\r", "\\r").replace("\n", "\\n"))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> LockHolder | None:
        """Parse a lock file's content; None when it is empty or garbled."""
        lines = text.splitlines()
        try:
            holder = cls(pid=int(lines[0].split()[0]))
        except (IndexError, ValueError):
            return None
        for line in lines[1:]:
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key == "start_ticks":
                with contextlib.suppress(ValueError):
                    holder.start_ticks = int(value)
            elif key in ("host", "boot_id", "started", "command"):
                setattr(holder, key, value)
        return holder

    def describe(self) -> str:
        parts = [f"pid {self.pid}", f"on host {self.host or '(not recorded)'}"]
        parts.append(f"started {self.started or '(not recorded)'}")
        parts.append(f"command: {self.command or '(not recorded)'}")
        return ", ".join(parts)


# ------------------------------------------------------------------ facts about processes


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def boot_id() -> str | None:
    """This boot's id (Linux); None where the system has none."""
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def process_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks after boot) of ``pid`` from /proc; None if unknown."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)
    except (IndexError, ValueError):
        return None


def _started_text(start_ticks: int | None) -> str:
    """The local wall-clock time a process started (now, where /proc cannot tell)."""
    when = time.time()
    stat = _read("/proc/stat")
    if start_ticks is not None and stat:
        btime = next((int(line.split()[1]) for line in stat.splitlines() if line.startswith("btime ")), None)
        if btime is not None:
            when = btime + start_ticks / os.sysconf("SC_CLK_TCK")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _command_line() -> str:
    raw = _read("/proc/self/cmdline")
    argv = [a for a in raw.split("\0") if a] if raw else [sys.executable, *sys.argv]
    return shlex.join(argv)


def this_process() -> LockHolder:
    """The lock record of the calling process."""
    stat = process_stat(os.getpid())
    ticks = stat[1] if stat else None
    return LockHolder(
        pid=os.getpid(),
        host=socket.gethostname(),
        boot_id=boot_id(),
        start_ticks=ticks,
        started=_started_text(ticks),
        command=_command_line(),
    )


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def stale_reason(holder: LockHolder, me: LockHolder) -> str | None:
    """Why the run ``holder`` cannot be alive any more (seen from process ``me``), or None
    when it may be: a live process, or one on another host."""
    if holder.host is not None and holder.host != me.host:
        return None
    if holder.boot_id and me.boot_id and holder.boot_id != me.boot_id:
        return f"written before this machine restarted (pid {holder.pid})"
    if holder.pid == me.pid:  # not written by this `with`: by us before, or by a dead run with our pid
        return f"pid {holder.pid} is this process"
    if not _pid_exists(holder.pid):
        return f"its process (pid {holder.pid}) is gone"
    stat = process_stat(holder.pid)
    if stat is not None and stat[0] == "Z":
        return f"its process (pid {holder.pid}) has exited (a zombie)"
    if stat is not None and holder.start_ticks is not None and stat[1] != holder.start_ticks:
        return (
            f"pid {holder.pid} now belongs to another process (started at tick {stat[1]}, "
            f"the lock's at {holder.start_ticks}): the pid was reused"
        )
    return None


def live_runs(folder: str) -> list[LockHolder]:
    """The training runs that may still be writing to ``folder``: the holders of its ``*.lock``
    files that are not stale (:func:`stale_reason`), so alive here or on another host."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".lock"))
    except OSError:
        return []
    me = this_process()
    runs = []
    for name in names:
        text = _read(os.path.join(folder, name))
        holder = LockHolder.from_text(text) if text else None
        if holder is not None and stale_reason(holder, me) is None:
            runs.append(holder)
    return runs


# ------------------------------------------------------------------ the lock


class RunLock:
    """Hold ``<output_dir>/<stem>.lock`` for the ``with`` block (see the module docstring);
    a training run's stem is :func:`frcnn.training.snapshot.run_stem`."""

    def __init__(self, output_dir: str, stem: str) -> None:
        self.path = os.path.join(output_dir, stem + ".lock")
        self._me: LockHolder | None = None

    def _create(self, me: LockHolder) -> bool:
        """Create the lock file holding ``me``; False if it exists already."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w") as f:
                f.write(me.to_text())
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            with contextlib.suppress(OSError):
                os.remove(self.path)
            full = " (ENOSPC: the disk is full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise OSError(e.errno, f"{self.path}: cannot write the run lock{full}: {e.strerror}") from None
        return True

    def _holder(self) -> tuple[str | None, LockHolder | None]:
        """(raw text, parsed holder) of the lock file, waiting a moment for a file that is
        still being written; (None, None) when it has disappeared meanwhile."""
        deadline = time.monotonic() + _WRITE_GRACE_S
        while True:
            text = _read(self.path)
            if text is None:
                return None, None
            holder = LockHolder.from_text(text)
            if holder is not None or time.monotonic() > deadline:
                return text, holder
            time.sleep(0.05)

    def _refusal(self, holder: LockHolder) -> RunLockHeld:
        rm = f"rm {shlex.quote(self.path)}"
        if holder.host not in (None, self._me.host):
            how = (
                f"That run is on another host, which this process cannot check: if it is no longer alive "
                f"there, remove the stale lock: {rm}"
            )
        else:
            how = (
                f"Process {holder.pid} is alive on this host; if it is not a training run of this folder, "
                f"remove the lock: {rm}"
            )
        return RunLockHeld(
            f"{self.path}: another training run is writing snapshots to this folder ({holder.describe()}). "
            f"Wait for it, stop it, or use another EXP_DIR. {how}"
        )

    def __enter__(self) -> RunLock:  # noqa: PYI034 (py3.9: no typing.Self)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._me = me = this_process()
        for _ in range(3):
            if self._create(me):
                return self
            text, holder = self._holder()
            if text is None:
                continue  # removed meanwhile: try again
            if holder is None:
                reason = "its content is unreadable"
            else:
                reason = stale_reason(holder, me)
                if reason is None:
                    raise self._refusal(holder)
            print(f"{self.path}: taking over a stale run lock ({reason})", flush=True)
            if _read(self.path) == text:  # not replaced by another run meanwhile
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
        raise RuntimeError(f"{self.path}: could not take the run lock (other runs keep replacing it)")

    def __exit__(self, *exc: object) -> None:
        text = _read(self.path)
        holder = LockHolder.from_text(text) if text else None
        me = self._me
        if (
            holder is not None
            and me is not None
            and (holder.pid, holder.start_ticks) == (me.pid, me.start_ticks)
        ):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)  # only our own lock: one replaced meanwhile stays
