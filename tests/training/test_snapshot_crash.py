"""Snapshots under hostile conditions: a training process killed (SIGKILL) in the middle of
writing a snapshot, and a disk that fills up (a small tmpfs, mounted when running as root)."""

import contextlib
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from frcnn.config import get_output_dir
from frcnn.training import snapshot as snap
from frcnn.training.train import SolverWrapper, filter_roidb, get_roidb, set_random_seeds
from tests.training.tiny_setup import ROOT, make_tiny_voc, tiny_config, write_tiny_nets

pytestmark = pytest.mark.slow

# The child trains with snapshots every 2 iterations; inside the write of the file that ends
# with argv[1] of the snapshot at iteration 4 it writes a few bytes, says so and waits.
CHILD = textwrap.dedent(
    """
    import contextlib, os, sys, time
    block_ext, signal_file, data_dir, out_root, solver = sys.argv[1:6]
    sys.path[:0] = [os.path.join({root!r}, "lib"), {root!r}]
    import frcnn.caffe.caffemodel, frcnn.caffe.solver_state, frcnn.training.snapshot
    from frcnn.config import get_output_dir
    from frcnn.training.train import SolverWrapper, filter_roidb, get_roidb, set_random_seeds
    from tests.training.tiny_setup import tiny_config

    def blocking(module):
        real = module.atomic_write

        @contextlib.contextmanager
        def write(path, mode="wb"):
            with real(path, mode) as f:
                if "_iter_4" in path and path.endswith(block_ext):
                    f.write(b"the first bytes of the file")
                    f.flush()
                    open(signal_file, "w").close()
                    time.sleep(300)
                yield f

        module.atomic_write = write

    for module in (frcnn.caffe.caffemodel, frcnn.caffe.solver_state, frcnn.training.snapshot):
        blocking(module)
    cfg = tiny_config(data_dir, out_root)
    cfg.TRAIN.SNAPSHOT_ITERS = 2
    set_random_seeds(cfg.RNG_SEED)
    roidb, imdb = get_roidb("tiny_trainval", cfg)
    SolverWrapper(solver, filter_roidb(roidb, cfg), get_output_dir(cfg, imdb.name), cfg).train_model(6)
    """
).format(root=ROOT)


def _setup(tmp_path):
    data = tmp_path / "data"
    make_tiny_voc(str(data / "tiny"))
    nets = write_tiny_nets(str(tmp_path / "nets"))
    cfg = tiny_config(str(data), str(tmp_path))
    cfg.TRAIN.SNAPSHOT_ITERS = 2
    return cfg, nets


def _wrapper(cfg, nets, output_dir=None):
    set_random_seeds(cfg.RNG_SEED)
    roidb, imdb = get_roidb("tiny_trainval", cfg)
    out = output_dir or get_output_dir(cfg, imdb.name)
    return SolverWrapper(nets["solver"], filter_roidb(roidb, cfg), out, cfg)


def _iteration_files(folder, iteration):
    """The files of the snapshot at ``iteration`` that a reader can see (hidden ones left out)."""
    return sorted(f for f in os.listdir(folder) if f.startswith(f"tiny_iter_{iteration}."))


@pytest.mark.parametrize("block_ext", [snap.SOLVERSTATE, snap.CAFFEMODEL])
def test_sigkill_while_writing_a_snapshot_leaves_no_partial_snapshot(tmp_path, block_ext, capsys):
    cfg, nets = _setup(tmp_path)
    out = get_output_dir(cfg, "tiny_trainval")
    signal_file = tmp_path / "blocked"
    args = [block_ext, str(signal_file), cfg.DATA_DIR, cfg.ROOT_DIR, nets["solver"]]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(tmp_path / "child.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 240
        while not signal_file.exists():
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the child never reached the snapshot at iteration 4"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # in the middle of writing tiny_iter_4<block_ext>
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()

    # what a reader sees: the snapshot at 2, complete, and nothing of the one at 4
    assert [i for i, _ in snap.find_snapshots(out, "tiny", "")] == [2]
    assert [i for i, _ in snap.resumable_snapshots(out, "tiny", "")] == [2]
    assert _iteration_files(out, 4) == []
    leftovers = [f for f in os.listdir(out) if f.startswith(".")]
    assert leftovers, "the kill should have left the hidden temporaries of the write"

    # the next start removes them (and the dead run's lock) and resumes from 2
    sw = _wrapper(cfg, nets)
    paths = sw.train_model(6)
    text = capsys.readouterr().out
    assert "Removed what an interrupted run left unfinished" in text and leftovers[0] in text
    assert "taking over a stale run lock" in text and f"pid {child.pid}" in text
    assert f"Resumed from {os.path.join(out, 'tiny_iter_2.caffemodel')} at iteration 2" in text
    assert [os.path.basename(p) for p in paths] == [f"tiny_iter_{i}.caffemodel" for i in (2, 4, 6)]
    assert [f for f in os.listdir(out) if f.startswith(".") or f.endswith(".tmp")] == []
    assert sorted(os.listdir(out)) == sorted(
        ["tiny_iter_2.caffemodel", "tiny_iter_4.caffemodel"]
        + [f"tiny_iter_6{ext}" for ext in (snap.CAFFEMODEL, snap.SOLVERSTATE, snap.TRAINSTATE)]
        + ["tiny_losses.csv", "tiny_loss.png"]  # the loss-curve hook's table and picture
    )


@contextlib.contextmanager
def _tmpfs(path, size):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    os.makedirs(path)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                       capture_output=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {getattr(e, 'stderr', b'') or e}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path, size):
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


def _pages(n):
    return -(-n // 4096)


@pytest.mark.parametrize("full_at", [snap.SOLVERSTATE, snap.CAFFEMODEL])
def test_disk_full_while_snapshotting_names_the_file_and_keeps_no_partial_snapshot(tmp_path, full_at, capsys):
    cfg, nets = _setup(tmp_path)
    with _tmpfs(tmp_path / "mnt", "64m") as mnt:
        out = str(mnt / "out")
        _wrapper(cfg, nets, out).train_model(2)  # a complete snapshot at 2
        sizes = {ext: os.path.getsize(os.path.join(out, "tiny_iter_2" + ext)) for ext in snap.PUBLISH_ORDER}
        # leave room for the next run's lock, the files written before `full_at` and half of it
        order = list(snap.PUBLISH_ORDER)
        room = 1 + sum(_pages(sizes[e]) for e in order[: order.index(full_at)]) + _pages(sizes[full_at]) // 2
        st = os.statvfs(mnt)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        _remount(mnt, used + room * 4096)

        with pytest.raises(OSError) as err:
            _wrapper(cfg, nets, out).train_model(4)
        e = err.value
        msg = str(e)
        assert e.errno == errno.ENOSPC and isinstance(e, snap.SnapshotDiskFull)
        assert msg.startswith(os.path.join(out, "tiny_iter_4" + full_at) + ": ")
        assert "ENOSPC" in msg and "disk is full" in msg
        assert _iteration_files(out, 4) == []  # all three files or none
        assert [f for f in os.listdir(out) if f.startswith(".") or f.endswith(".tmp")] == []
        assert [i for i, _ in snap.resumable_snapshots(out, "tiny", "")] == [2]

        _remount(mnt, "64m")  # space freed: the same command resumes from 2
        capsys.readouterr()
        paths = _wrapper(cfg, nets, out).train_model(4)
        assert "Resumed from" in capsys.readouterr().out
        assert [os.path.basename(p) for p in paths] == ["tiny_iter_2.caffemodel", "tiny_iter_4.caffemodel"]
        assert [i for i, _ in snap.resumable_snapshots(out, "tiny", "")] == [4]
