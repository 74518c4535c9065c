"""frcnn.roi_data.class_targets against upstream's per-row loop, on NumPy and torch inputs."""

import numpy as np
import pytest
import torch

from frcnn.roi_data.class_targets import expand_bbox_targets


def ref_expand(classes, targets, num_classes, inside_weights):
    """Upstream's _get_bbox_regression_labels with the #480 int cast, one row at a time."""
    out = np.zeros((len(classes), 4 * num_classes), np.float32)
    inside = np.zeros_like(out)
    for i, c in enumerate(classes):
        if c > 0:
            c = int(c)
            out[i, 4 * c : 4 * c + 4] = targets[i]
            inside[i, 4 * c : 4 * c + 4] = inside_weights
    return out, inside


def random_rows(seed, n=40, num_classes=6):
    rng = np.random.RandomState(seed)
    classes = rng.randint(0, num_classes, n).astype(np.float32)  # float ids, as in the blobs
    targets = rng.normal(0, 1, (n, 4)).astype(np.float32)
    return classes, targets


@pytest.mark.parametrize("seed", range(4))
def test_both_kinds_equal_the_loop(seed):
    classes, targets = random_rows(seed)
    w = (1.0, 0.5, 2.0, 0.25)
    ref_t, ref_w = ref_expand(classes, targets, 6, w)
    t, iw = expand_bbox_targets(classes, targets, 6, w)
    assert t.dtype == iw.dtype == np.float32 and t.shape == (40, 24)
    np.testing.assert_array_equal(t, ref_t)
    np.testing.assert_array_equal(iw, ref_w)
    tt, tw = expand_bbox_targets(torch.from_numpy(classes), torch.from_numpy(targets), 6, w)
    assert tt.dtype == tw.dtype == torch.float32
    np.testing.assert_array_equal(tt.numpy(), ref_t)
    np.testing.assert_array_equal(tw.numpy(), ref_w)


def test_float64_targets_and_truncated_class_ids():
    classes = np.array([3.0, 2.7, 0.0, 1.2])  # int() truncates: 3, 2, bg, 1
    targets = np.arange(16, dtype=np.float64).reshape(4, 4) / 3
    t, w = expand_bbox_targets(classes, targets, 4, (1, 1, 1, 1))
    np.testing.assert_array_equal(t[0, 12:16], targets[0].astype(np.float32))
    np.testing.assert_array_equal(t[1, 8:12], targets[1].astype(np.float32))
    np.testing.assert_array_equal(t[3, 4:8], targets[3].astype(np.float32))
    assert w.sum() == 12 and np.count_nonzero(t[2]) == 0 and t.dtype == np.float32
    tt, _ = expand_bbox_targets(torch.from_numpy(classes), torch.from_numpy(targets), 4, (1, 1, 1, 1))
    np.testing.assert_array_equal(tt.numpy(), t)


def test_background_rows_are_plain_zeros():
    classes = np.zeros(3, np.float32)
    targets = -np.ones((3, 4), np.float32)  # negative targets must not leave -0.0 behind
    for c, x in ((classes, targets), (torch.from_numpy(classes), torch.from_numpy(targets))):
        t, w = expand_bbox_targets(c, x, 3, (1, 1, 1, 1))
        t = np.asarray(t)
        assert not np.signbit(t).any() and not np.asarray(w).any()


def test_empty_and_bad_input():
    t, w = expand_bbox_targets(np.zeros(0), np.zeros((0, 4)), 5, (1, 1, 1, 1))
    assert t.shape == w.shape == (0, 20)
    tt, _ = expand_bbox_targets(torch.zeros(0), torch.zeros(0, 4), 5, (1, 1, 1, 1))
    assert tt.shape == (0, 20)
    with pytest.raises(ValueError, match=r"roidb x.jpg: class ids must be in \[0, 3\), got \[1, 3\]"):
        expand_bbox_targets(np.array([1.0, 3.0]), np.zeros((2, 4)), 3, (1, 1, 1, 1), "roidb x.jpg")
    with pytest.raises(ValueError, match="class ids"):
        expand_bbox_targets(torch.tensor([-1.0]), torch.zeros(1, 4), 3, (1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"targets \(R, 4\)"):
        expand_bbox_targets(np.zeros(2), np.zeros((3, 4)), 3, (1, 1, 1, 1))


@pytest.mark.cuda
def test_cuda_equals_cpu():
    classes, targets = random_rows(9)
    cpu = expand_bbox_targets(torch.from_numpy(classes), torch.from_numpy(targets), 6, (1, 2, 3, 4))
    gpu = expand_bbox_targets(torch.from_numpy(classes).cuda(), torch.from_numpy(targets).cuda(), 6, (1, 2, 3, 4))
    for c, g in zip(cpu, gpu):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g.cpu(), c, rtol=0, atol=0)
