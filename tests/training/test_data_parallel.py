"""Data-parallel runs on the CPU (2 gloo ranks under torchrun, or started by hand), on the tiny
set and net of tiny_setup:

- 2 ranks x 1 image for 10 iterations end with the parameters (learnable blobs and BatchNorm's
  running sums) of 1 process with iter_size 2, and the same losses; rank 0 alone logs and saves;
- a rank killed mid-run stops the run (torchrun names the rank), and the rerun resumes from the
  last snapshot to those same parameters;
- a hung rank is named by the others, which stop after DIST_TIMEOUT;
- ranks given different configs refuse to start, naming the key and the rank;
- test_net on 2 ranks writes the detections and the mAP of one process;
- a group of one rank (``FRCNN_DIST_GROUP_OF_ONE=1``: every distributed path with one rank, the
  way the NCCL path is checked on one GPU) trains and tests exactly as one plain process;
- the alt-opt driver on 2 ranks (steps 1 and 2: RPN, proposals shared out, Fast R-CNN on them)
  ends with the models and proposals of 1 process with iter_size 2.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from frcnn.caffe.caffemodel import read_caffemodel
from frcnn.inference.detections import load_detections
from frcnn.training import snapshot as snap
from tests.tools.helpers import ROOT, tool_env
from tests.training.tiny_setup import TINY_SETTINGS, make_tiny_voc, write_tiny_alt_opt, write_tiny_nets

END2END_CFG = os.path.join(ROOT, "experiments", "cfgs", "faster_rcnn_end2end.yml")
ITERS = 10


def _plain(d):
    return {k: _plain(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    make_tiny_voc(str(root / "data" / "tiny"))
    nets = write_tiny_nets(str(root / "nets"))
    cfg = root / "tiny.yml"
    cfg.write_text(yaml.safe_dump({"DATA_DIR": str(root / "data"), "ROOT_DIR": str(root), **_plain(TINY_SETTINGS)}))
    return {"root": root, "nets": nets, "cfg": str(cfg)}


def _env():
    return tool_env(OMP_NUM_THREADS="1")


def _train_args(tiny, exp, *sets, iters=ITERS):
    return [os.path.join(ROOT, "tools", "train_net.py"), "--gpu", "cpu", "--solver", tiny["nets"]["solver"],
            "--imdb", "tiny_trainval", "--iters", str(iters), "--cfg", END2END_CFG, "--cfg", tiny["cfg"],
            "--set", "EXP_DIR", exp, *sets]


def _torchrun(n):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n)]


def _run(*cmds, timeout=150, env=None):
    """Run the commands at once (the machine's cores are shared out); their results, in order."""
    env = {**_env(), **(env or {})}
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for c in cmds]
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:  # a hang: stop them all rather than leave them running
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, (stdout[-3000:], stderr[-3000:])
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out if len(out) > 1 else out[0]


def _out_dir(tiny, exp):
    return str(tiny["root"] / "output" / exp / "tiny_trainval")


def _model(tiny, exp, it=ITERS):
    return os.path.join(_out_dir(tiny, exp), f"tiny_iter_{it}.caffemodel")


def _blobs(path):
    return {f"{layer.name}/{i}": b.array for layer in read_caffemodel(path).layers for i, b in enumerate(layer.blobs)}


def _assert_same_parameters(path, ref_path, rtol=1e-5):
    got, want = _blobs(path), _blobs(ref_path)
    assert got.keys() == want.keys()
    for k in want:
        scale = max(float(np.abs(want[k]).max()), 1e-12)
        assert float(np.abs(got[k] - want[k]).max()) <= rtol * scale, k


def _loss_line(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith(f"Iteration {ITERS}/{ITERS}, loss = ")]
    assert len(lines) == 1, stdout[-3000:]  # printed once: by rank 0
    return lines[0].split("; ")[0]  # without the speed


@pytest.fixture(scope="module")
def trained(tiny):
    """1 process with iter_size 2 (the solver override) and 2 ranks x 1 image, on the same images."""
    one, two = _run([sys.executable, *_train_args(tiny, "one_rank", "TRAIN.SOLVER_ITER_SIZE", "2")],
                    [*_torchrun(2), *_train_args(tiny, "two_ranks")])
    return {"reference": _model(tiny, "one_rank"), "reference_loss": _loss_line(one.stdout),
            "model": _model(tiny, "two_ranks"), "stdout": two.stdout}


def test_two_ranks_give_the_parameters_of_one_rank_with_iter_size_2(tiny, trained):
    stdout = trained["stdout"]
    _assert_same_parameters(trained["model"], trained["reference"])
    assert _loss_line(stdout) == trained["reference_loss"]  # the losses are averaged over the ranks
    assert "Distributed run: 2 ranks (gloo)" in stdout
    # rank 0 alone wrote the snapshots and said so
    assert stdout.count(f"Wrote snapshot to: {_model(tiny, 'two_ranks')}") == 1
    names = sorted(os.listdir(_out_dir(tiny, "two_ranks")))
    assert [n for n in names if n.endswith(".caffemodel")] == [f"tiny_iter_{i}.caffemodel" for i in (10, 4, 8)]
    assert not any(n.endswith(".lock") for n in names)


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(d))
    return out


def _rank_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    return int(env.get(b"RANK", b"-1"))


def _wait_for_snapshot(tiny, exp, it, procs, limit=120):
    t0 = time.monotonic()
    while it not in [i for i, _ in snap.resumable_snapshots(_out_dir(tiny, exp), "tiny", "")]:
        assert time.monotonic() - t0 < limit, "no snapshot"
        assert all(p.poll() is None for p in procs), "a rank ended early"
        time.sleep(0.1)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds rank 1 through /proc")
def test_a_killed_rank_stops_the_run_and_the_rerun_resumes_to_the_same_parameters(tiny, trained):
    exp = "killed"
    p = subprocess.Popen([*_torchrun(2), *_train_args(tiny, exp)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=_env(), cwd=ROOT)
    try:
        _wait_for_snapshot(tiny, exp, 4, [p])
        rank1 = next(c for c in _children(p.pid) if _rank_of(c) == 1)
        os.kill(rank1, signal.SIGSTOP)  # rank 0 cannot pass the next all-reduce: no snapshot 8
        os.kill(rank1, signal.SIGKILL)
        t0 = time.monotonic()
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0 and time.monotonic() - t0 < 60
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)\s*\n\s*exitcode\s*:\s*-9", out), out[-3000:]
    assert [i for i, _ in snap.resumable_snapshots(_out_dir(tiny, exp), "tiny", "")] == [4]

    r = _run([*_torchrun(2), *_train_args(tiny, exp)])  # the same command again
    assert f"Resumed from {_model(tiny, exp, 4)} at iteration 4" in r.stdout
    _assert_same_parameters(_model(tiny, exp), trained["reference"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _by_hand(args_of_rank, n=2):
    """Ranks started without torchrun (as on machines whose launcher does not stop the others)."""
    base = dict(_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(n))
    return [subprocess.Popen([sys.executable, *args_of_rank(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=ROOT, env=dict(base, RANK=str(r), LOCAL_RANK=str(r))) for r in range(n)]


def test_a_hung_rank_is_named_and_the_others_stop(tiny):
    exp = "hung"
    procs = _by_hand(lambda r: _train_args(tiny, exp, "DIST_TIMEOUT", "6", iters=40))
    try:
        _wait_for_snapshot(tiny, exp, 4, procs)
        os.kill(procs[1].pid, signal.SIGSTOP)  # alive, holding its connections, doing nothing
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        for q in procs:
            if q.poll() is None:
                q.kill()
            q.communicate()
    assert procs[0].returncode == 2, err[-3000:]
    assert re.search(r"rank 1 of 2 (has not been heard from for \d+ s|stopped)", err), err[-3000:]
    assert took < 6 + 30  # DIST_TIMEOUT, then a few seconds to name the rank


def test_ranks_with_different_configs_refuse_to_start(tiny):
    procs = _by_hand(lambda r: _train_args(tiny, "disagree", *(["TRAIN.SCALES", "[160]"] if r == 1 else [])))
    outs = [q.communicate(timeout=120) for q in procs]
    for q, (_, err) in zip(procs, outs):
        assert q.returncode == 2, err[-3000:]
        assert "the ranks do not run the same config" in err and \
            "config TRAIN.SCALES: rank 1 has [160], rank 0 [192]" in err, err[-3000:]
    assert "train_net.py (rank 1 of 2): error:" in outs[1][1]
    assert "Solving" not in outs[0][0]


def _test_args(tiny, model, exp):
    return [os.path.join(ROOT, "tools", "test_net.py"), "--gpu", "cpu", "--def", tiny["nets"]["test"], "--net", model,
            "--imdb", "tiny_test", "--cfg", END2END_CFG, "--cfg", tiny["cfg"], "--set", "EXP_DIR", exp]


def test_test_net_on_two_ranks_writes_the_detections_of_one_process(tiny, trained):
    model = trained["model"]
    one, two = _run([sys.executable, *_test_args(tiny, model, "test_one")],
                    [*_torchrun(2), *_test_args(tiny, model, "test_two")])
    det = {exp: load_detections(str(tiny["root"] / "output" / exp / "tiny_test" / "tiny_iter_10" / "detections.npz"))
           for exp in ("test_one", "test_two")}
    a, b = det["test_one"], det["test_two"]
    assert len(a) == len(b) == 3 and all(len(c) == 4 for c in a)
    assert sum(len(d) for c in a for d in c) > 0
    for j in range(3):
        for i in range(4):
            assert np.array_equal(a[j][i], b[j][i]), (j, i)

    def mean_ap(out):
        return [line for line in out.splitlines() if line.startswith("Mean AP")]

    assert mean_ap(two.stdout) == mean_ap(one.stdout) and len(mean_ap(one.stdout)) == 1
    assert "im_detect: 2/2" in two.stdout and "im_detect: 4/4" in one.stdout  # each rank half the images


def _detections(tiny, exp):
    return load_detections(str(tiny["root"] / "output" / exp / "tiny_test" / "tiny_iter_10" / "detections.npz"))


def group_of_one_matches_a_plain_process(tiny, gpu: str, rtol: float) -> None:
    """Train and test as one plain process and as a torchrun group of one rank (on ``gpu``):
    the same parameters (to ``rtol``; 0: the same bytes) and detections; the group's run said it
    was distributed, did collectives, and had rank 0's part (snapshots, detections) to itself."""
    def on(args):
        return [gpu if a == "cpu" else a for a in args]

    group = {"FRCNN_DIST_GROUP_OF_ONE": "1"}
    tag = "gpu" if gpu != "cpu" else "cpu"
    plain, one = f"{tag}_plain", f"{tag}_group_of_one"
    _, out = _run([sys.executable, *on(_train_args(tiny, plain))], [*_torchrun(1), *on(_train_args(tiny, one))],
                  env=group)
    backend = "NCCL" if gpu != "cpu" else "gloo"
    assert f"Distributed run: 1 ranks ({backend})" in out.stdout, out.stdout[-2000:]
    if rtol == 0:
        with open(_model(tiny, one), "rb") as f, open(_model(tiny, plain), "rb") as g:
            assert f.read() == g.read()
    else:
        _assert_same_parameters(_model(tiny, one), _model(tiny, plain), rtol=rtol)
    model = _model(tiny, plain)
    _, out = _run([sys.executable, *on(_test_args(tiny, model, f"{plain}_test"))],
                  [*_torchrun(1), *on(_test_args(tiny, model, f"{one}_test"))], env=group)
    assert f"Distributed run: 1 ranks ({backend})" in out.stdout
    a, b = _detections(tiny, f"{plain}_test"), _detections(tiny, f"{one}_test")
    for j in range(len(a)):
        for i in range(len(a[j])):
            if rtol == 0:
                assert np.array_equal(a[j][i], b[j][i]), (j, i)
            else:
                assert a[j][i].shape == b[j][i].shape and np.allclose(a[j][i], b[j][i], rtol=1e-5, atol=1e-3), (j, i)


def test_a_group_of_one_rank_trains_and_tests_exactly_as_one_plain_process(tiny):
    group_of_one_matches_a_plain_process(tiny, "cpu", rtol=0)


def test_alt_opt_on_two_ranks_gives_the_models_and_proposals_of_one_rank_with_iter_size_2(tiny):
    from frcnn.datasets.proposals import load_proposals

    models = write_tiny_alt_opt(str(tiny["root"] / "alt_opt_models"))

    def args(exp, *sets):
        return [os.path.join(ROOT, "tools", "train_faster_rcnn_alt_opt.py"), "--gpu", "cpu", "--net_name", "SMALL",
                "--models_dir", models, "--imdb", "tiny_trainval", "--iters", "2,2,2,2", "--stop_after", "2",
                "--cfg", os.path.join(ROOT, "experiments", "cfgs", "faster_rcnn_alt_opt.yml"), "--cfg", tiny["cfg"],
                "--set", "EXP_DIR", exp, *sets]

    _run([sys.executable, *args("alt_one", "TRAIN.SOLVER_ITER_SIZE", "2")], [*_torchrun(2), *args("alt_two")])
    one, two = _out_dir(tiny, "alt_one"), _out_dir(tiny, "alt_two")
    for name in ("SMALL_rpn_stage1_final.caffemodel", "SMALL_fast_rcnn_stage1_final.caffemodel"):
        _assert_same_parameters(os.path.join(two, name), os.path.join(one, name))
    (a, ids_a), (b, ids_b) = (load_proposals(os.path.join(d, "small_rpn_stage1_iter_2_proposals.npz"))
                              for d in (one, two))
    assert list(ids_a) == list(ids_b) and len(a) == 8
    for x, y in zip(a, b):  # every image's proposals, whichever rank made them (the RPNs agree to 1e-5)
        assert x.shape == y.shape and np.allclose(x, y, atol=1e-3)
