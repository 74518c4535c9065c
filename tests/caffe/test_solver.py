"""SGDSolver against Caffe's update computed by hand; lr policies; iter_size; snapshot/restore; logs."""

import logging
import math
import textwrap

import numpy as np
import pytest
import torch

from frcnn.caffe import SGDSolver
from frcnn.caffe.prototxt import PrototxtError, parse
from frcnn.caffe.solver_param import read_solver

DATA_MODULE = '''
import numpy as np
import torch
from frcnn.caffe.python_layer import PythonLayer


class Batches(PythonLayer):
    """Cycles through fixed batches; adds numpy noise (to test that the RNG state is restored)."""

    def __init__(self, noise):
        super().__init__()
        g = np.random.RandomState(7)
        self.xs = [g.randn(4, 3).astype(np.float32) for _ in range(3)]
        self.ys = [g.randint(0, 2, size=4).astype(np.float32) for _ in range(3)]
        self.k = 0
        self.noise = noise

    @classmethod
    def from_caffe(cls, param_str, phase, cfg):
        return cls(noise=float(param_str or 0))

    def top_shapes(self, bottom_shapes):
        return [(4, 3), (4,)]

    def forward(self):
        i = self.k % 3
        self.k += 1
        x = self.xs[i] + self.noise * np.random.randn(4, 3).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(self.ys[i])

    def get_state(self):
        return {"k": self.k, "seen": np.arange(self.k, dtype=np.int64)}

    def set_state(self, state):
        assert state["seen"].dtype == np.int64
        self.k = int(state["k"])
'''

NET = '''name: "lin"
layer {{ name: "data" type: "Python" top: "x" top: "y"
  python_param {{ module: "frcnn_test_solver_data" layer: "Batches" param_str: "{noise}" }} }}
layer {{ name: "frozen" type: "InnerProduct" bottom: "x" top: "h" param {{ lr_mult: 0 decay_mult: 0 }} param {{ lr_mult: 0 decay_mult: 0 }}
  inner_product_param {{ num_output: 3 weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
{extra}
layer {{ name: "fc" type: "InnerProduct" bottom: "h" top: "s" param {{ lr_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
  inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "constant" value: 0.2 }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "y" top: "loss" }}
'''

SOLVER = '''net: "net.prototxt"
base_lr: 0.1
lr_policy: "step"
gamma: 0.1
stepsize: 2
momentum: 0.9
weight_decay: 0.01
display: {display}
max_iter: 100
iter_size: {iter_size}
snapshot_prefix: "snaps/lin"
random_seed: 3
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "frcnn_test_solver_data.py").write_text(textwrap.dedent(DATA_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_solver(workdir, iter_size=1, display=0, noise=0.0, extra=""):
    (workdir / "net.prototxt").write_text(NET.format(noise=noise, extra=extra))
    (workdir / "solver.prototxt").write_text(SOLVER.format(iter_size=iter_size, display=display))
    return SGDSolver(str(workdir / "solver.prototxt"), allow_python_modules=["frcnn_test_solver_data"])


def hand_updates(solver, iters, iter_size):
    """Caffe's SGD on fc, by hand in float64: grads of the mean softmax loss from plain torch."""
    layer = solver.net.layers[0].impl
    wf = solver.net.params["frozen"][0].data.double().clone()
    bf = solver.net.params["frozen"][1].data.double().clone()
    w = solver.net.params["fc"][0].data.double().clone()
    b = solver.net.params["fc"][1].data.double().clone()
    vw, vb = torch.zeros_like(w), torch.zeros_like(b)
    k = 0
    history = []
    for it in range(iters):
        gw, gb = torch.zeros_like(w), torch.zeros_like(b)
        for _ in range(iter_size):
            x = torch.from_numpy(layer.xs[k % 3]).double()
            y = torch.from_numpy(layer.ys[k % 3]).long()
            k += 1
            w_, b_ = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy((x @ wf.T + bf) @ w_.T + b_, y)
            loss.backward()
            gw += w_.grad
            gb += b_.grad
        rate = 0.1 * 0.1 ** (it // 2)  # step policy at the iteration before the increment
        gw, gb = gw / iter_size, gb / iter_size
        gw = gw + 0.01 * 1.0 * w  # decay_mult 1 for the weight
        gb = gb + 0.01 * 0.0 * b  # decay_mult 0 for the bias
        vw = 0.9 * vw + rate * 1.0 * gw  # lr_mult 1
        vb = 0.9 * vb + rate * 2.0 * gb  # lr_mult 2
        w, b = w - vw, b - vb
        history.append((w.clone(), b.clone()))
    return history, (wf, bf)


@pytest.mark.parametrize("iter_size", [1, 2])
def test_updates_match_caffe_by_hand_across_lr_change(workdir, iter_size):
    solver = make_solver(workdir, iter_size=iter_size)
    expected, (wf, bf) = hand_updates(solver, 5, iter_size)
    for it in range(5):
        solver.step(1)
        assert solver.iter == it + 1
        w, b = solver.net.params["fc"][0].data.double(), solver.net.params["fc"][1].data.double()
        assert torch.allclose(w, expected[it][0], atol=1e-6), it
        assert torch.allclose(b, expected[it][1], atol=1e-6), it
    # lr_mult 0: untouched, no history
    assert torch.equal(solver.net.params["frozen"][0].data.double(), wf)
    assert torch.equal(solver.net.params["frozen"][1].data.double(), bf)
    assert set(solver.history) == {"fc/0", "fc/1"}
    assert solver.net.layers[0].impl.k == 5 * iter_size
    # after two lr steps the history still carries the old rate (Caffe, unlike torch.optim.SGD)
    assert solver.lr == pytest.approx(0.1 * 0.01)


def test_step_n_equals_n_single_steps(workdir):
    a = make_solver(workdir)
    a.step(4)
    b = make_solver(workdir)
    for _ in range(4):
        b.step(1)
    for x, y in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(x, y)


def test_snapshot_and_restore_continue_identically(workdir):
    dropout = 'layer { name: "drop" type: "Dropout" bottom: "h" top: "h" dropout_param { dropout_ratio: 0.3 } }'
    a = make_solver(workdir, noise=0.1, extra=dropout)
    a.step(3)
    model = a.snapshot()
    assert model == "snaps/lin_iter_3.caffemodel"
    assert (workdir / "snaps" / "lin_iter_3.solverstate").exists()
    a.step(3)
    torch.manual_seed(123)
    np.random.seed(123)  # scrambled: restore must bring back the RNG states of iteration 3
    b = make_solver(workdir, noise=0.1, extra=dropout)
    b.restore("snaps/lin_iter_3.solverstate")
    assert b.iter == 3 and b.net.layers[0].impl.k == 3
    b.step(3)
    for (name, pa), (_, pb) in zip(a.net.named_parameters(), b.net.named_parameters()):
        assert torch.equal(pa, pb), name
    # a state written alone (the caller saves the weights) restores the counters, not weights
    path = b.snapshot(str(workdir / "alone.solverstate"))
    c = make_solver(workdir)
    c.restore(path)
    assert c.iter == 6 and not torch.equal(c.net.params["fc"][0].data, b.net.params["fc"][0].data)
    (workdir / "junk.solverstate").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="junk.solverstate: not a readable solver state"):
        c.restore(str(workdir / "junk.solverstate"))


def solver_log(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "frcnn.caffe.solver"]


def test_log_lines_in_caffe_format(workdir, caplog):
    caplog.set_level(logging.INFO, logger="frcnn.caffe.solver")
    solver = make_solver(workdir, display=2)
    solver.step(3)
    out = solver_log(caplog)
    loss0 = solver.last_losses()["loss"]
    assert out[0].startswith("Iteration 0, loss = ")
    assert out[1].startswith("    Train net output #0: loss = ") and out[1].endswith(" loss)")
    value = float(out[1].split("= ")[1].split(" ")[0])
    assert f"(* 1 = {value:.6g} loss)" in out[1]
    assert out[2] == "Iteration 0, lr = 0.1"
    assert any(line.startswith("Iteration 2, loss = ") for line in out)
    assert any(line.startswith("    speed: ") and "time left" in line for line in out)
    assert "Iteration 2, lr = 0.01" in out
    assert not any(line.startswith("Iteration 1,") for line in out)
    assert math.isfinite(loss0)


def test_lr_policies():
    def sp(text):
        return read_solver(parse('net: "x.prototxt" base_lr: 0.5 ' + text, "s.prototxt"))

    def rates(p, n):
        out, step = [], 0
        for it in range(n):
            r, step = p.learning_rate(it, step)
            out.append(r)
        return out

    assert rates(sp('lr_policy: "fixed"'), 3) == [0.5] * 3
    assert rates(sp('lr_policy: "step" gamma: 0.1 stepsize: 2'), 5) == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005])
    assert rates(sp('lr_policy: "exp" gamma: 0.9'), 3) == pytest.approx([0.5, 0.45, 0.405])
    assert rates(sp('lr_policy: "inv" gamma: 0.1 power: 0.75'), 2) == pytest.approx([0.5, 0.5 * 1.1 ** -0.75])
    assert rates(sp('lr_policy: "multistep" gamma: 0.5 stepvalue: 1 stepvalue: 3'), 5) == \
        pytest.approx([0.5, 0.25, 0.25, 0.125, 0.125])
    assert rates(sp('lr_policy: "poly" power: 2 max_iter: 4'), 4) == pytest.approx([0.5, 0.5 * 0.5625, 0.125, 0.5 / 16])
    assert rates(sp('lr_policy: "sigmoid" gamma: 1 stepsize: 1'), 2) == pytest.approx([0.5 / (1 + math.e), 0.25])


def test_solver_file_errors(tmp_path):
    with pytest.raises(PrototxtError, match=r"s.prototxt:1:\d+: 'base_rate' is not a SolverParameter field"):
        read_solver(parse('net: "x" base_rate: 0.1', "s.prototxt"))
    with pytest.raises(PrototxtError, match="exactly one of net"):
        read_solver(parse("base_lr: 0.1", "s.prototxt"))
    with pytest.raises(PrototxtError, match="only the SGD solver"):
        read_solver(parse('net: "x" type: "Adam"', "s.prototxt"))
    with pytest.raises(PrototxtError, match="needs stepsize > 0"):
        read_solver(parse('net: "x" lr_policy: "step"', "s.prototxt"))
    with pytest.raises(PrototxtError, match="unknown lr_policy 'cosine'"):
        read_solver(parse('net: "x" lr_policy: "cosine"', "s.prototxt"))
    # net paths: the working directory first (Caffe), then the solver's folder
    (tmp_path / "n.prototxt").write_text("")
    (tmp_path / "s.prototxt").write_text('net: "n.prototxt"')
    assert read_solver(str(tmp_path / "s.prototxt")).net == str(tmp_path / "n.prototxt")
    assert read_solver(str(tmp_path / "s.prototxt")).snapshot_prefix == ""


def test_clip_gradients(workdir, caplog):
    caplog.set_level(logging.INFO, logger="frcnn.caffe.solver")
    solver = make_solver(workdir)
    solver.param.clip_gradients = 1e-4
    solver.param.momentum = 0.0
    solver.param.weight_decay = 0.0
    before = [p.data.clone() for p in solver.net.params["fc"]]
    solver.step(1)
    steps = [b - p.data for b, p in zip(before, solver.net.params["fc"])]
    # the clipped gradient has norm 1e-4; the step is lr * lr_mult * g per blob
    g = torch.cat([steps[0].flatten() / 0.1, steps[1].flatten() / 0.2])
    assert g.norm().item() == pytest.approx(1e-4, rel=1e-3)
    assert any(m.startswith("Gradient clipping: scaling down gradients") for m in solver_log(caplog))
