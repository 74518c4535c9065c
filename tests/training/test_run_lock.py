"""The output folder's run lock: who holds it, when it is stale, what a refused run is told."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from frcnn.training import run_lock
from frcnn.training.run_lock import LockHolder, RunLock, RunLockHeld
from frcnn.training.snapshot import run_stem

LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "lib"))


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _stop(proc):
    proc.kill()
    proc.wait()


def _holder(path):
    with open(path) as f:
        return LockHolder.from_text(f.read())


def _write(path, holder):
    with open(path, "w") as f:
        f.write(holder.to_text())


def test_run_lock_refuses_a_second_live_run_and_takes_over_a_stale_lock(tmp_path):
    lock = RunLock(str(tmp_path), run_stem("p", "stage1"))
    assert os.path.basename(lock.path) == "p_stage1.lock"
    with lock, open(lock.path) as f:
        first_line = f.read().splitlines()[0]
        assert first_line == str(os.getpid())  # older versions read the bare pid there
        held = _holder(lock.path)
        assert held.host == socket.gethostname() and held.command and held.started
        assert held.start_ticks == run_lock.process_stat(os.getpid())[1]
    assert not os.path.exists(lock.path)
    sleeper = _sleeper()
    try:
        with open(lock.path, "w") as f:  # a lock as older versions wrote it: the pid alone
            f.write(f"{sleeper.pid}\n")
        with (
            pytest.raises(RuntimeError, match=f"pid {sleeper.pid}"),
            RunLock(str(tmp_path), run_stem("p", "stage1")),
        ):
            pass
    finally:
        _stop(sleeper)
    with RunLock(str(tmp_path), run_stem("p", "stage1")):  # its process is gone: stale, taken over
        pass
    assert not os.path.exists(lock.path)


def _lock_holder_process(folder):
    """A real second training 'run': takes the lock, says so, then waits to be killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {LIB!r})
        from frcnn.training.run_lock import RunLock
        with RunLock({str(folder)!r}, "p"):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_refusal_names_the_holder_and_says_how_to_remove_the_lock(tmp_path):
    holder = _lock_holder_process(tmp_path)
    path = str(tmp_path / "p.lock")
    try:
        with pytest.raises(RunLockHeld) as err, RunLock(str(tmp_path), "p"):
            pass
        msg = str(err.value)
        recorded = _holder(path)
        assert recorded.pid == holder.pid
        assert f"pid {holder.pid}" in msg and f"on host {socket.gethostname()}" in msg
        assert f"started {recorded.started}" in msg and "RunLock" in msg  # the holder's command line
        assert f"rm {path}" in msg and path in msg
    finally:
        _stop(holder)


def test_lock_of_a_killed_run_is_taken_over_with_a_log_line(tmp_path, capsys):
    holder = _lock_holder_process(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    path = str(tmp_path / "p.lock")
    assert _holder(path).pid == holder.pid  # SIGKILL left the lock behind
    with RunLock(str(tmp_path), "p"):
        assert _holder(path).pid == os.getpid()
    out = capsys.readouterr().out
    assert "taking over a stale run lock" in out and f"pid {holder.pid}" in out and "is gone" in out


def test_lock_whose_pid_was_reused_is_stale(tmp_path, capsys):
    """The lock's pid is alive again, but as another process (another start time)."""
    holder = _lock_holder_process(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    path = str(tmp_path / "p.lock")
    dead = _holder(path)
    other = _sleeper()
    try:
        if run_lock.process_stat(other.pid)[1] == dead.start_ticks:
            pytest.skip("the two processes started in the same clock tick")
        dead.pid = other.pid  # the killed run's record, with its pid now someone else's
        _write(path, dead)
        with RunLock(str(tmp_path), "p"):
            assert _holder(path).pid == os.getpid()
    finally:
        _stop(other)
    out = capsys.readouterr().out
    assert f"pid {other.pid} now belongs to another process" in out and "reused" in out


def test_live_holder_with_the_recorded_start_time_is_refused(tmp_path):
    other = _sleeper()
    try:
        stat = run_lock.process_stat(other.pid)
        me = run_lock.this_process()
        _write(
            str(tmp_path / "p.lock"),
            LockHolder(other.pid, me.host, me.boot_id, stat[1], "2020-01-01 00:00:00", "train_net.py --x"),
        )
        with (
            pytest.raises(RunLockHeld, match=r"started 2020-01-01 00:00:00, command: train_net.py --x"),
            RunLock(str(tmp_path), "p"),
        ):
            pass
    finally:
        _stop(other)


def test_lock_of_another_host_is_refused_and_the_message_says_it_cannot_be_checked(tmp_path):
    path = str(tmp_path / "p.lock")
    _write(path, LockHolder(999999, "elsewhere-7", "b00t", 1, "2020-01-01 00:00:00", "python train_net.py"))
    with pytest.raises(RunLockHeld) as err, RunLock(str(tmp_path), "p"):
        pass
    msg = str(err.value)
    assert "on host elsewhere-7" in msg and "another host" in msg and f"rm {path}" in msg
    assert os.path.exists(path)


def test_lock_from_before_a_reboot_is_stale(tmp_path, capsys):
    me = run_lock.this_process()
    if me.boot_id is None:
        pytest.skip("no boot id on this system")
    _write(str(tmp_path / "p.lock"), LockHolder(os.getppid(), me.host, "another-boot", 1, "x", "y"))
    with RunLock(str(tmp_path), "p"):
        pass
    assert "restarted" in capsys.readouterr().out


def test_lock_of_a_zombie_is_stale(tmp_path, capsys):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):  # exited but not reaped: kill(pid, 0) still succeeds
            stat = run_lock.process_stat(child.pid)
            if stat is not None and stat[0] == "Z":
                break
            time.sleep(0.02)
        else:
            pytest.skip("the child did not become a zombie")
        _write(
            str(tmp_path / "p.lock"), LockHolder(child.pid, socket.gethostname(), run_lock.boot_id(), stat[1])
        )
        with RunLock(str(tmp_path), "p"):
            pass
    finally:
        child.wait()
    assert "zombie" in capsys.readouterr().out


def test_lock_with_our_own_pid_is_stale(tmp_path, capsys):
    (tmp_path / "p.lock").write_text(f"{os.getpid()}\n")  # an older version's lock, pid reused by us
    with RunLock(str(tmp_path), "p"):
        assert _holder(str(tmp_path / "p.lock")).host == socket.gethostname()
    assert "is this process" in capsys.readouterr().out


def test_exit_leaves_a_lock_that_is_not_ours(tmp_path):
    path = str(tmp_path / "p.lock")
    with RunLock(str(tmp_path), "p"):
        _write(path, LockHolder(12345, "elsewhere"))  # replaced meanwhile (by hand or another run)
    assert _holder(path).host == "elsewhere"


def test_garbled_lock_is_stale_after_a_grace_period(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_lock, "_WRITE_GRACE_S", 0.1)
    (tmp_path / "p.lock").write_text("")
    with RunLock(str(tmp_path), "p"):
        pass
    assert "unreadable" in capsys.readouterr().out
