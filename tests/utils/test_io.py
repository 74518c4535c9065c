import os
import stat

import pytest

from frcnn.utils.io import atomic_write


def test_atomic_write_replaces_whole_file_with_umask_mode(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    old = os.umask(0o022)
    try:
        with atomic_write(str(path)) as f:
            f.write(b"new contents")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new contents"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_keeps_old_file_when_body_fails(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(str(path)) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
