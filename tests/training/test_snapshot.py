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
    W3, b3 = snap.normalize_bbox_pred(W2, b2, means, stds)
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


def test_run_lock_refuses_a_second_live_run_and_takes_over_a_stale_lock(tmp_path):
    import subprocess
    import sys

    lock = snap.RunLock(str(tmp_path), "p", "stage1")
    assert os.path.basename(lock.path) == "p_stage1.lock"
    with lock, open(lock.path) as f:
        assert f.read().strip() == str(os.getpid())
    assert not os.path.exists(lock.path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with open(lock.path, "w") as f:
            f.write(f"{sleeper.pid}\n")
        with pytest.raises(RuntimeError, match=f"pid {sleeper.pid}"), snap.RunLock(str(tmp_path), "p", "stage1"):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with snap.RunLock(str(tmp_path), "p", "stage1"):  # its process is gone: stale, taken over
        pass
    assert not os.path.exists(lock.path)
