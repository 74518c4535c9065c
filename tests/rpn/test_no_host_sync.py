"""The RPN layers inside a training iteration: no host synchronisation where a fixed-size form
exists (issue 13), and the fixed-size sampling equals a plain statement of upstream's rules."""

import os
import traceback
import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from frcnn.roi_data.keys import ANCHORS, random_keys, torch_generator
from frcnn.rpn.anchor_target_layer import AnchorTargetLayer
from frcnn.rpn.generate_anchors import generate_anchors
from frcnn.rpn.proposal_layer import ProposalLayer
from frcnn.rpn.proposal_target_layer import ProposalTargetLayer
from tests.rpn.test_anchor_target_layer import random_gt, ref_anchor_targets
from tests.rpn.test_proposal_layer import random_inputs
from tests.rpn.test_proposal_target_layer import random_case


def test_anchor_sampling_is_the_largest_keys_of_the_images_generator():
    """Steps 6-7 written out: of the positives, the int(0.5 * 256) with the largest fg keys; of the
    negatives, 256 - #kept positives with the largest bg keys (keys: the image's generator)."""
    rng = np.random.RandomState(6)
    im, H, W = [600.0, 800.0, 1.6], 38, 50
    gt = random_gt(rng, 60, 600, 800)
    layer = AnchorTargetLayer(16, seed=5)
    layer.set_batch_position(iteration=9, pass_index=1, iter_size=2, rank=1)  # global image 1 * 2 + 1 = 3
    labels = layer(torch.zeros(1, 18, H, W), torch.from_numpy(gt), torch.tensor([im]))[0]
    got = labels.numpy().reshape(9, H, W).transpose(1, 2, 0).reshape(-1)
    full = ref_anchor_targets(generate_anchors(), H, W, gt, im)[0]  # upstream's labels before sampling
    g = torch_generator(5, ANCHORS, 9, 3)
    fg_keys, bg_keys = random_keys(len(full), g, "cpu").numpy(), random_keys(len(full), g, "cpu").numpy()
    want = np.full(len(full), -1.0, np.float32)
    fg, bg = np.where(full == 1)[0], np.where(full == 0)[0]
    keep_fg = fg[np.argsort(-fg_keys[fg], kind="stable")[:128]]
    keep_bg = bg[np.argsort(-bg_keys[bg], kind="stable")[: 256 - len(keep_fg)]]
    want[keep_fg], want[keep_bg] = 1, 0
    assert len(fg) > 128 and len(bg) > 256
    np.testing.assert_array_equal(got, want)


def _count_syncs(fn):
    """(result, number of synchronising CUDA calls ``fn`` made), by torch's sync debug mode."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return out, sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.cuda
def test_layers_synchronise_only_for_data_dependent_sizes():
    from frcnn.ops.nms import nms

    dev = torch.device("cuda")
    rng = np.random.RandomState(0)
    # anchor target layer, two images: nothing leaves the device
    gt = torch.from_numpy(np.vstack((np.c_[random_gt(rng, 6, 600, 800), np.zeros(6)],
                                     np.c_[random_gt(rng, 4, 480, 640), np.ones(4)])).astype(np.float32)).to(dev)
    info = torch.tensor([[600.0, 800.0, 1.6], [480.0, 640.0, 1.28]], device=dev)
    atl = AnchorTargetLayer(16).to(dev)
    atl(torch.zeros(2, 18, 38, 50, device=dev), gt, info)  # warm-up (lazy CUDA initialisation)
    out, syncs = _count_syncs(lambda: atl(torch.zeros(2, 18, 38, 50, device=dev), gt, info))
    assert syncs == 0 and out[0].device.type == "cuda"
    # proposal layer: only the NMS op's kept indices and the final count per image
    prob, deltas = (torch.from_numpy(np.concatenate(x)).to(dev) for x in zip(*(random_inputs(rng, 38, 50) for _ in range(2))))
    pl = ProposalLayer(16, pre_nms_top_n=6000, post_nms_top_n=300).to(dev)
    pl(prob, deltas, info)
    boxes = torch.rand(6000, 4, device=dev) * 100
    boxes[:, 2:] += boxes[:, :2]
    _, nms_syncs = _count_syncs(lambda: nms(boxes, torch.rand(6000, device=dev), 0.7))
    out, syncs = _count_syncs(lambda: pl(prob, deltas, info))
    assert syncs <= 2 * (nms_syncs + 1) and out[0].device.type == "cuda", (syncs, nms_syncs)
    # proposal target layer: one, for the number of sampled RoIs
    rois_np, gt_np = random_case(rng, n_rois=600)
    ptl = ProposalTargetLayer(6, bg_thresh_lo=0.0).to(dev)
    r, g = torch.from_numpy(rois_np).to(dev), torch.from_numpy(gt_np).to(dev)
    ptl(r, g)
    out, syncs = _count_syncs(lambda: ptl(r, g))
    assert syncs == 1 and out[0].shape == (128, 5)


# ------------------------------------------- the same on any machine: the non-CPU path on "meta"

aten = torch.ops.aten


def _caller() -> str:
    """``file:line source`` of the innermost frame in the library (where the op was asked for)."""
    for frame in reversed(traceback.extract_stack()):
        if f"{os.sep}frcnn{os.sep}" in frame.filename and f"{os.sep}tests{os.sep}" not in frame.filename:
            return f"{frame.filename.rsplit(os.sep + 'frcnn' + os.sep, 1)[1]}:{frame.lineno}: {frame.line}"
    return "?"


class HostWaits(TorchDispatchMode):
    """Records every op that would make the host wait for a GPU, while a layer runs its non-CPU
    path on the meta device (shapes, no data): a value read back (``.item()``, ``bool``,
    ``int``), a size that depends on the data (``nonzero``, boolean-mask indexing), a copy from
    the device to the host, and a host-to-device copy (pageable, so it waits too). The read-backs
    are answered with ``item`` (ints), ``True`` or 0.5 and the nonzero rows with half of them,
    so that the layer runs on to its end; an asynchronous copy (``non_blocking``) is allowed."""

    def __init__(self, item: int = 128) -> None:
        super().__init__()
        self.item, self.waits = item, []
        self._factories = {}

    # torch.tensor / torch.as_tensor of host data (lists, numbers, arrays) copy to the device
    # below any dispatch mode: they are watched at the Python call instead
    def __enter__(self):
        for name in ("tensor", "as_tensor"):
            made = self._factories[name] = getattr(torch, name)

            def factory(data, *args, _made=made, **kwargs):
                device = kwargs.get("device")
                if device is not None and torch.device(device).type != "cpu" and not isinstance(data, torch.Tensor):
                    self.waits.append(("a copy from the host", _caller()))
                return _made(data, *args, **kwargs)

            setattr(torch, name, factory)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, made in self._factories.items():
            setattr(torch, name, made)
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (aten._local_scalar_dense.default, aten.nonzero.default) and args[0].device.type == "cpu":
            return func(*args, **kwargs)  # on host values: no device to wait for
        if func is aten._local_scalar_dense.default:
            self.waits.append(("a value read back", _caller()))
            t = args[0]
            return True if t.dtype == torch.bool else (0.5 if t.dtype.is_floating_point else self.item)
        if func is aten.nonzero.default:
            self.waits.append(("a size from the data", _caller()))
            t = args[0]
            return torch.empty((max(t.numel() // 2, 1), t.dim()), dtype=torch.int64, device=t.device)
        if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default) and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]
        ) and args[0].device.type != "cpu":  # boolean-mask indexing: the mask's nonzero (below this mode), a size from the data
            self.waits.append(("a size from the data", _caller()))
            if func is not aten.index.Tensor:
                return args[0] if func is aten.index_put_.default else args[0].clone()
            indices = []
            for i in args[1]:
                if i is not None and i.dtype in (torch.bool, torch.uint8):
                    rows = max(i.numel() // 2, 1)
                    indices += [torch.zeros(rows, dtype=torch.int64, device=i.device)] * i.dim()
                else:
                    indices.append(i)
            return func(args[0], indices)
        if func in (aten._to_copy.default, aten.copy_.default):
            src = args[1] if func is aten.copy_.default else args[0]
            dst = args[0].device if func is aten.copy_.default else torch.device(kwargs.get("device") or src.device)
            non_blocking = kwargs.get("non_blocking", len(args) > 2 and bool(args[2]))
            if src.device.type == "meta" and dst.type == "cpu":
                if not non_blocking:
                    self.waits.append(("a copy to the host", _caller()))
                if func is aten.copy_.default:
                    return args[0]
                return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype)
            if src.device.type == "cpu" and dst.type == "meta" and not non_blocking:
                self.waits.append(("a copy from the host", _caller()))
        if kwargs.get("pin_memory"):
            kwargs = {**kwargs, "pin_memory": False}  # pinned host memory needs a CUDA build
        return func(*args, **kwargs)


@pytest.fixture
def on_meta(monkeypatch):
    """The layers' generators and the no-anchor flag's CUDA event, made possible on "meta"."""
    import frcnn.rpn.anchor_target_layer as atl_module
    import frcnn.rpn.proposal_layer as pl_module
    import frcnn.rpn.proposal_target_layer as ptl_module

    for module in (atl_module, pl_module, ptl_module):
        monkeypatch.setattr(module, "torch_generator", lambda *args, **kwargs: None)
        monkeypatch.setattr(module, "random_keys", lambda n, g, device: torch.rand(n, dtype=torch.float64, device=device))

    class Event:
        def record(self, stream=None):
            pass

        def query(self):
            return False

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    return pl_module


def _meta(*arrays):
    return [torch.empty(a.shape, dtype=torch.float32, device="meta") for a in arrays]


def test_on_the_meta_device_the_layers_wait_only_for_data_dependent_sizes(on_meta, monkeypatch):
    """The GPU test above, without a GPU: each layer's non-CPU path, op by op."""
    rng = np.random.RandomState(0)
    gt = np.vstack((np.c_[random_gt(rng, 6, 600, 800), np.zeros(6)], np.c_[random_gt(rng, 4, 480, 640), np.ones(4)]))
    info = np.array([[600.0, 800.0, 1.6], [480.0, 640.0, 1.28]])
    # anchor target layer, two images: nothing waits
    atl = AnchorTargetLayer(16).to("meta")
    with HostWaits() as log:
        out = atl(torch.empty(2, 18, 38, 50, device="meta"), *_meta(gt, info))
    assert log.waits == [] and out[0].shape == (2, 1, 9 * 38, 50) and out[1].shape == (2, 36, 38, 50)
    # proposal layer: per image, the NMS op's kept indices and the final count
    nms_calls = []

    def nms(boxes, scores, thresh):
        nms_calls.append(_caller())
        return torch.empty(min(boxes.shape[0], 2000), dtype=torch.int64, device=boxes.device)

    monkeypatch.setattr(on_meta, "_nms", nms)
    prob, deltas = (np.concatenate(x) for x in zip(*(random_inputs(rng, 38, 50) for _ in range(2))))
    pl = ProposalLayer(16, pre_nms_top_n=6000, post_nms_top_n=300).to("meta")
    with HostWaits() as log:
        out = pl(*_meta(prob, deltas, info))
    assert len(nms_calls) == 2 and out[0].device.type == "meta" and out[0].shape[1] == 5
    assert [kind for kind, _ in log.waits] == ["a size from the data"] * 2, log.waits
    assert all("final count" in where for _, where in log.waits), log.waits
    # proposal target layer: one, the number of sampled RoIs (normalised targets, as end2end trains)
    rois_np, gt_np = random_case(rng, n_rois=600)
    ptl = ProposalTargetLayer(6, bg_thresh_lo=0.0, normalize_targets_precomputed=True).to("meta")
    with HostWaits(item=128) as log:
        out = ptl(*_meta(rois_np, gt_np))
    assert [kind for kind, _ in log.waits] == ["a value read back"], log.waits
    assert "number of sampled RoIs" in log.waits[0][1] and out[0].shape == (128, 5)


def test_the_meta_check_sees_each_kind_of_wait():
    x = torch.empty(10, 4, device="meta")
    with HostWaits() as log:
        _ = float(x.sum())
        _ = x[x[:, 0] > 0]
        _ = x.cpu()
        _ = x.to("cpu", non_blocking=True)  # asynchronous: allowed
        _ = torch.tensor([1.0, 2.0], device="meta")
        _ = x * 2 + x.topk(3, dim=0).values.sum()  # no wait
    assert [kind for kind, _ in log.waits] == ["a value read back", "a size from the data", "a copy to the host",
                                               "a copy from the host"], log.waits


def test_on_the_meta_device_the_test_path_waits_only_for_its_candidates_and_the_final_copy(monkeypatch):
    """TEST.DEVICE_POSTPROCESS on a GPU: decoding waits for nothing; the detections wait for the
    number of candidates over the threshold, the exactness check of the class shift (one bool),
    the NMS op, and the one copy of the final detections to the host."""
    import frcnn.inference.on_device as on_device

    nms_calls = []

    def nms(boxes, scores, thresh):
        nms_calls.append(_caller())
        return torch.empty(min(boxes.shape[0], 50), dtype=torch.int64, device=boxes.device)

    monkeypatch.setattr(on_device, "nms", nms)
    rois, deltas = torch.empty(300, 4, device="meta"), torch.empty(300, 4 * 21, device="meta")
    with HostWaits() as log:
        boxes = on_device.decode_boxes(rois, deltas, 21, (375, 500, 3), scale=1.6)
    assert log.waits == [] and boxes.shape == (300, 84) and boxes.device.type == "meta"
    with HostWaits() as log:
        on_device.detections_on_device(torch.empty(300, 21, device="meta"), boxes, 0.3, 0.05, 100)
    where = [(kind, w.split(":")[0]) for kind, w in log.waits]
    assert where == [("a size from the data", "inference/on_device.py"), ("a value read back", "inference/on_device.py"),
                     ("a copy to the host", "inference/on_device.py")], log.waits
    assert "scores[:, 1:].t() > thresh" in log.waits[0][1] and "exact" in log.waits[1][1]
    assert "the one device -> host copy" in log.waits[2][1] and len(nms_calls) == 1
