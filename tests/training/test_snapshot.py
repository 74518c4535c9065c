"""Snapshot names, bbox_pred un-normalisation, resume-state files."""

import os
import types

import numpy as np
import pytest
import torch

from frcnn.training import snapshot as snap


def test_snapshot_names_follow_upstream():
    assert snap.snapshot_basename("zf_rpn", "stage1", 80000) == "zf_rpn_stage1_iter_80000"
    assert snap.snapshot_basename("vgg16_faster_rcnn", "", 70000) == "vgg16_faster_rcnn_iter_70000"


def test_find_snapshots_sorts_by_iteration_and_ignores_other_runs(tmp_path):
    for name in ["p_iter_100", "p_iter_20", "p_stage1_iter_5", "q_iter_7", "p_iter_x"]:
        (tmp_path / (name + ".caffemodel")).write_bytes(b"")
    (tmp_path / "p_iter_30.solverstate").write_bytes(b"")
    found = snap.find_snapshots(str(tmp_path), "p", "")
    assert [it for it, _ in found] == [20, 100]
    assert [it for it, _ in snap.find_snapshots(str(tmp_path), "p", "stage1")] == [5]
    # resumable only with both state files
    assert snap.resumable_snapshots(str(tmp_path), "p", "") == []
    for ext in (snap.SOLVERSTATE, snap.TRAINSTATE):
        (tmp_path / ("p_iter_20" + ext)).write_bytes(b"")
    assert [it for it, _ in snap.resumable_snapshots(str(tmp_path), "p", "")] == [20]


def _normalize_bbox_pred(weight, bias, means, stds):
    """The inverse of snapshot.unnormalize_bbox_pred (up to rounding): ``W / std``, ``(b - mean) / std``."""
    means_t, stds_t = torch.as_tensor(means), torch.as_tensor(stds)
    return weight / stds_t.to(weight).reshape(-1, 1), (bias - means_t.to(bias)) / stds_t.to(bias)


def test_unnormalize_bbox_pred_is_w_times_std_and_b_times_std_plus_mean():
    K = 3
    rng = np.random.RandomState(0)
    W = torch.from_numpy(rng.randn(4 * K, 5).astype(np.float32))
    b = torch.from_numpy(rng.randn(4 * K).astype(np.float32))
    means = np.tile([0.1, -0.2, 0.3, 0.05], K)
    stds = np.tile([0.1, 0.1, 0.2, 0.2], K)
    W2, b2 = snap.unnormalize_bbox_pred(W, b, means, stds)
    for i in range(4 * K):
        np.testing.assert_allclose(W2[i].numpy(), W[i].numpy() * stds[i], rtol=1e-6)
        np.testing.assert_allclose(b2[i].item(), b[i].item() * stds[i] + means[i], rtol=1e-6, atol=1e-7)
    # the un-normalised layer predicts the un-normalised deltas: (W x + b) * std + mean
    x = torch.from_numpy(rng.randn(7, 5).astype(np.float32))
    raw = x @ W.T + b
    np.testing.assert_allclose((x @ W2.T + b2).numpy(), raw.numpy() * stds + means, rtol=1e-5, atol=1e-6)
    W3, b3 = _normalize_bbox_pred(W2, b2, means, stds)
    np.testing.assert_allclose(W3.numpy(), W.numpy(), rtol=1e-5)
    np.testing.assert_allclose(b3.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_unnormalize_bbox_pred_conv_shaped_weights():
    W = torch.ones(8, 3, 1, 1)
    b = torch.zeros(8)
    stds = np.arange(1, 9, dtype=np.float64)
    W2, _b2 = snap.unnormalize_bbox_pred(W, b, np.zeros(8), stds)
    assert torch.equal(W2[:, 0, 0, 0], torch.arange(1, 9, dtype=torch.float32))


def test_unnormalize_bbox_pred_rejects_mismatched_class_count():
    with pytest.raises(ValueError, match="num_classes"):
        snap.unnormalize_bbox_pred(torch.ones(8, 3), torch.zeros(8), np.zeros(12), np.ones(12))


def _fake_net(W, b):
    params = {"bbox_pred": [types.SimpleNamespace(data=W), types.SimpleNamespace(data=b)]}
    return types.SimpleNamespace(params=params)


def test_bbox_pred_unnormalized_restores_exact_values():
    rng = np.random.RandomState(1)
    W = torch.from_numpy(rng.randn(8, 4).astype(np.float32))
    b = torch.from_numpy(rng.randn(8).astype(np.float32))
    W0, b0 = W.clone(), b.clone()
    means, stds = np.full(8, 0.3), np.full(8, 0.137)  # W*std/std would not round-trip exactly
    net = _fake_net(W, b)
    with snap.bbox_pred_unnormalized(net, means, stds):
        assert not torch.equal(W, W0)
        np.testing.assert_allclose(W.numpy(), W0.numpy() * 0.137, rtol=1e-6)
    assert torch.equal(W, W0) and torch.equal(b, b0)
    # also restored when the body raises
    with pytest.raises(RuntimeError), snap.bbox_pred_unnormalized(net, means, stds):
        raise RuntimeError("disk full")
    assert torch.equal(W, W0) and torch.equal(b, b0)
    # nothing happens without statistics
    with snap.bbox_pred_unnormalized(net, None, None):
        assert torch.equal(W, W0)


def test_train_state_round_trip(tmp_path):
    path = str(tmp_path / "s.trainstate.npz")
    snap.save_train_state(path, {"x": torch.arange(3), "fingerprint": np.array("abc"), "iter": 7})
    loaded = snap.load_train_state(path)
    assert loaded["x"].tolist() == [0, 1, 2] and str(loaded["fingerprint"]) == "abc" and int(loaded["iter"]) == 7
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_train_state_rejects_objects_and_bad_files(tmp_path):
    with pytest.raises(TypeError, match="'bad'"):
        snap.save_train_state(str(tmp_path / "a.npz"), {"bad": {"a": 1}})
    bad = tmp_path / "b.trainstate.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="b.trainstate.npz"):
        snap.load_train_state(str(bad))


def test_remove_snapshot_keeps_model_when_asked(tmp_path):
    base = tmp_path / "p_iter_10"
    for ext in (snap.CAFFEMODEL, snap.SOLVERSTATE, snap.TRAINSTATE):
        (tmp_path / ("p_iter_10" + ext)).write_bytes(b"")
    snap.remove_snapshot(str(base) + snap.CAFFEMODEL, keep_model=True)
    assert sorted(os.listdir(tmp_path)) == ["p_iter_10.caffemodel"]
    snap.remove_snapshot(str(base) + snap.CAFFEMODEL)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ all three files or none


def _write_all(staged, content=b"x"):
    for ext in (snap.SOLVERSTATE, snap.TRAINSTATE, snap.CAFFEMODEL):
        with open(staged(ext), "wb") as f:
            f.write(content + ext.encode())


def test_staged_snapshot_publishes_all_three_caffemodel_last(tmp_path, monkeypatch):
    renamed = []
    real_replace = os.replace

    def recording_replace(src, dst):
        # a reader at this moment sees a complete set or no caffemodel at all
        found = snap.find_snapshots(str(tmp_path), "p", "")
        assert found == snap.resumable_snapshots(str(tmp_path), "p", "")
        renamed.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(snap.os, "replace", recording_replace)
    with snap.staged_snapshot(str(tmp_path), "p_iter_3") as staged:
        assert os.path.dirname(staged(snap.CAFFEMODEL)) != str(tmp_path)  # nothing visible yet
        _write_all(staged)
        assert os.listdir(tmp_path) == [os.path.basename(os.path.dirname(staged(snap.CAFFEMODEL)))]
    assert renamed == ["p_iter_3.solverstate", "p_iter_3.trainstate.npz", "p_iter_3.caffemodel"]
    assert sorted(os.listdir(tmp_path)) == sorted(renamed)
    assert (tmp_path / "p_iter_3.caffemodel").read_bytes() == b"x.caffemodel"


def test_staged_snapshot_publishes_nothing_when_a_write_fails(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), snap.staged_snapshot(str(tmp_path), "p_iter_3") as staged:
        with open(staged(snap.SOLVERSTATE), "wb") as f:
            f.write(b"complete")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    lacks = pytest.raises(RuntimeError, match=r"p_iter_4: the snapshot lacks \.caffemodel")
    with lacks, snap.staged_snapshot(str(tmp_path), "p_iter_4") as staged:
        for ext in (snap.SOLVERSTATE, snap.TRAINSTATE):
            with open(staged(ext), "wb") as f:
                f.write(b"s")
    assert os.listdir(tmp_path) == []


def test_disk_full_names_the_file_and_says_enospc(tmp_path):
    import errno

    # torch's writer reports a full disk as "unexpected pos ...", the OSError as its context
    with pytest.raises(snap.SnapshotDiskFull) as err, snap.staged_snapshot(str(tmp_path), "p_iter_3") as staged:
        staged(snap.SOLVERSTATE)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    e = err.value
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC
    assert str(tmp_path / "p_iter_3.solverstate") in str(e) and "ENOSPC" in str(e) and "disk is full" in str(e)
    assert os.listdir(tmp_path) == []
    quota = pytest.raises(snap.SnapshotDiskFull, match=r"p_iter_3\.caffemodel: no space left.*EDQUOT")
    with quota, snap.staged_snapshot(str(tmp_path), "p_iter_3") as staged:
        staged(snap.CAFFEMODEL)
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    with pytest.raises(OSError) as other, snap.staged_snapshot(str(tmp_path), "p_iter_3") as staged:
        raise OSError(errno.EACCES, "Permission denied")  # not a full disk: raised as it was
    assert not isinstance(other.value, snap.SnapshotDiskFull)


def test_remove_stale_files_removes_only_what_a_killed_run_of_these_snapshots_left(tmp_path):
    keep = [
        "p_iter_2.caffemodel", "p_iter_2.solverstate", "p_iter_2.trainstate.npz",  # complete
        "p_iter_1.caffemodel",  # an older snapshot's weights
        "q_iter_5.solverstate",  # another run's files
        ".q_iter_5.caffemodel.abcd1234.tmp",
        ".p_iter_2.notes.abcd1234.tmp",  # not a snapshot file of ours
        "p_iter_7.txt", ".p.lock.abcd1234", "p_stage1_iter_3.solverstate",
    ]  # fmt: skip
    stale = [
        ".p_iter_4.caffemodel.k2_9xq0a.tmp",  # atomic_write's temporary, killed before the rename
        ".p_iter_4.solverstate.zzzzzzzz.tmp",
        "p_iter_6.solverstate",  # killed between the renames: states without their caffemodel
        "p_iter_6.trainstate.npz",
    ]
    for name in keep + stale:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ".p_iter_8.a1b2c3d4.tmp").mkdir()  # a staging folder
    (tmp_path / ".p_iter_8.a1b2c3d4.tmp" / "p_iter_8.solverstate").write_bytes(b"half")
    removed = snap.remove_stale_files(str(tmp_path), "p", "")
    assert sorted(removed) == sorted([*stale, ".p_iter_8.a1b2c3d4.tmp"])
    assert sorted(os.listdir(tmp_path)) == sorted(keep)
    assert snap.remove_stale_files(str(tmp_path / "missing"), "p", "") == []


def test_remove_stale_files_looks_where_a_prefix_with_a_folder_puts_the_snapshots(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".p_iter_3.abcd1234.tmp").mkdir()
    (tmp_path / ".p_iter_3.abcd1234.tmp").mkdir()  # not where 'sub/p' snapshots go
    assert snap.remove_stale_files(str(tmp_path), "sub/p", "") == [".p_iter_3.abcd1234.tmp"]
    assert os.listdir(tmp_path / "sub") == [] and os.path.isdir(tmp_path / ".p_iter_3.abcd1234.tmp")
