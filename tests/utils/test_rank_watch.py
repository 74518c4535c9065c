"""The rank watch over a real TCPStore in this process: two watches stand for rank 0 and rank 1;
each case names the rank at fault the way a failed collective would be explained."""

import socket

import pytest
import torch.distributed as dist

from frcnn.utils.rank_watch import RankWatch


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def store():
    return dist.TCPStore("127.0.0.1", _free_port(), 2, True, wait_for_workers=False)


def _pair(store, progress0=lambda: 5, progress1=lambda: 5, timeout=30.0):
    zero = RankWatch(store, 0, 2, timeout, progress=progress0, interval_s=0.05)
    one = RankWatch(store, 1, 2, timeout, progress=progress1, interval_s=0.05)
    return zero, one


def test_a_failed_rank_is_named_with_its_error(store):
    zero, one = _pair(store)
    zero.beat()
    one.beat()
    one.failed("FileNotFoundError: data/VOCdevkit2007: no such folder")
    assert zero.diagnose() == "rank 1 failed: FileNotFoundError: data/VOCdevkit2007: no such folder"


def test_a_rank_whose_heartbeat_stopped_is_named(store):
    zero, one = _pair(store)
    one.beat()  # once, then nothing: killed
    msg = zero.diagnose(wait_s=0.2)
    assert msg.startswith("rank 1 of 2 stopped (no heartbeat for 0 s)") and "killed or crashed" in msg


def test_a_rank_that_beats_but_is_behind_is_named(store):
    zero, one = _pair(store, progress0=lambda: 42, progress1=lambda: 41)
    one.start()  # alive (its thread beats) but stuck before the 42nd collective
    try:
        msg = zero.diagnose(wait_s=0.3)
    finally:
        one.stop()
    assert msg.startswith("rank 1 (41) entered fewer collectives than this rank (42)"), msg


def test_nobody_is_blamed_when_the_others_are_fine_or_done(store):
    zero, one = _pair(store)
    one.start()
    try:
        assert zero.diagnose(wait_s=0.3) is None  # beating, as far along: the error is this rank's own
    finally:
        one.stop()
    one.finished()
    assert zero.diagnose(wait_s=0.2) is None  # ended well: not at fault


def test_silence_for_the_timeout_is_noticed(store):
    zero, one = _pair(store, timeout=0.3)
    zero.start()
    zero.stop()  # (the thread would end the process; the check is called by hand here)
    one.beat()
    assert zero._silent_peers() == []
    import time

    time.sleep(0.4)
    assert zero._silent_peers() == [1]
    assert "has not been heard from for 0 s (DIST_TIMEOUT)" in zero.silence_message([1], 0.3)
    one.finished()
    assert zero._silent_peers() == []  # a rank that ended is not waited for


def test_rank_0_hosting_the_store_waits_for_the_others(store, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    zero, one = _pair(store)
    assert zero.hosts_store and not one.hosts_store
    one.finished()
    zero.finished()  # returns at once: rank 1 ended
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    assert not _pair(store)[0].hosts_store
