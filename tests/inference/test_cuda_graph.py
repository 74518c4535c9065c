"""TEST.CUDA_GRAPH: refused with a message on the CPU; on a GPU the replayed trunk + RPN head
give the eager detections, and a new input size falls back to the eager net."""

import os

import numpy as np
import pytest
import torch

from frcnn.caffe import TEST, Net
from frcnn.config import get_default_config
from frcnn.inference.cuda_graph import GraphedNet, capture_range, graphed_net
from frcnn.inference.test import im_detect
from frcnn.nets.random_init import fill_random

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTOTXT = os.path.join(ROOT, "models", "toy", "SMALL", "faster_rcnn_end2end", "test.prototxt")


def _cfg(device="cpu"):
    cfg = get_default_config()
    cfg.GPU_ID = -1 if device == "cpu" else 0
    cfg.TEST.HAS_RPN = True
    cfg.TEST.SCALES, cfg.TEST.MAX_SIZE = (160,), 240
    cfg.TEST.RPN_PRE_NMS_TOP_N, cfg.TEST.RPN_POST_NMS_TOP_N = 600, 100
    return cfg


def _net(cfg, device):
    net = Net(PROTOTXT, None, TEST, cfg=cfg)
    net.forward(data=np.zeros((1, 3, 160, 200), np.float32), im_info=np.array([[160, 200, 1.0]], np.float32))
    fill_random(net, seed=2)
    return net.to(device)


def _image(h, w, seed):
    return np.random.RandomState(seed).randint(0, 255, (h, w, 3)).astype(np.uint8)


def test_capture_range_is_the_trunk_and_the_rpn_head():
    net = _net(_cfg(), "cpu")
    first, last = capture_range(net)
    names = [layer.name for layer in net.layers]
    assert names[first] == "conv1" and names[last + 1] == "proposal"
    assert all(layer.type_name != "Python" for layer in net.layers[first : last + 1])


def test_on_the_cpu_the_option_is_ignored_with_a_message(tmp_path, capsys):
    from frcnn.inference.test import _maybe_graphed

    cfg = _cfg()
    net = _net(cfg, "cpu")
    said = []
    assert graphed_net(net, say=said.append) is net
    assert said == ["TEST.CUDA_GRAPH: ignored: the net runs on cpu (CUDA graphs need a CUDA device)"]
    cfg.TEST.CUDA_GRAPH = True
    assert _maybe_graphed(net, cfg) is net  # what test_net does with the option
    assert "TEST.CUDA_GRAPH: ignored" in capsys.readouterr().out
    scores, boxes = im_detect(net, _image(120, 150, 0), cfg=cfg)
    assert scores.shape[0] == boxes.shape[0] > 0


class EagerReplay(GraphedNet):
    """GraphedNet with a stand-in for the CUDA graph, so its plumbing runs on the CPU: a
    "replay" reruns the captured layers on the static input and writes the static outputs
    in place, as a graph replay does."""

    def _record(self, device):
        self._run_captured()

        def replay():  # leaves the blobs bound as it found them, as a graph replay does
            static = dict(self._static_out)
            bound = {n: self.net.blobs[n].data for n in [*static, "data"]}
            self.net.blobs["data"].data = self._static_in
            self._run_captured()
            for name, tensor in static.items():
                tensor.copy_(self.net.blobs[name].data)
            for name, tensor in bound.items():
                self.net.blobs[name].data = tensor

        return replay


def test_replay_plumbing_on_the_cpu():
    cfg = _cfg()
    net = _net(cfg, "cpu")
    said = []
    graphed = EagerReplay(net, *capture_range(net), say=said.append)
    for im in (_image(120, 150, 0), _image(150, 120, 1), _image(120, 150, 2), _image(150, 120, 3)):
        got = im_detect(graphed, im, cfg=cfg)  # first: the blobs hold the previous image's
        want = im_detect(net, im, cfg=cfg)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    assert graphed.replays == 2 and graphed.captured_shape == (1, 3, 160, 200)
    assert said == ["TEST.CUDA_GRAPH: captured layers conv1 .. rpn_cls_prob_reshape for input 1x3x160x200",
                    ("TEST.CUDA_GRAPH: input 1x3x200x160 differs from the captured 1x3x160x200; "
                     "this size runs without the graph")]


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_replay_gives_the_eager_detections_and_other_sizes_fall_back(amp):
    cfg = _cfg("cuda")
    cfg.TEST.AMP = amp
    net = _net(cfg, "cuda")
    said = []
    graphed = graphed_net(net, say=said.append)
    assert isinstance(graphed, GraphedNet)
    for seed in range(3):  # same size: captured once, then replayed
        im = _image(120, 150, seed)
        got = [t.clone() for t in im_detect(graphed, im, cfg=cfg, on_device=True)]
        want = im_detect(net, im, cfg=cfg, on_device=True)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert graphed.replays == 3 and len(said) == 1 and said[0].startswith("TEST.CUDA_GRAPH: captured layers conv1")
    im = _image(150, 120, 5)  # another size: eager, said once
    want = im_detect(net, im, cfg=cfg, on_device=True)
    for _ in range(2):
        got = im_detect(graphed, im, cfg=cfg, on_device=True)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert graphed.replays == 3 and len(said) == 2 and "runs without the graph" in said[1]
    got = im_detect(graphed, _image(120, 150, 0), cfg=cfg, on_device=True)  # the captured size again
    assert graphed.replays == 4
