"""tools/bench_detector.py runs on the CPU: rows per net and mode, totals that add up, JSON."""

import json

import pytest
import torch

from frcnn.caffe.precision import cpu_has_native
from tests.tools.helpers import load_tool


@pytest.mark.slow
def test_bench_detector_dry_run_on_the_cpu(tmp_path, capsys):
    tool = load_tool("bench_detector.py")
    path = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--nets", "ZF", "--modes", "fp32,tf32,bf16", "--size", "192x256",
            "--repeats", "1", "--warmup", "0", "--json", str(path)]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "tf32 is a GPU mode" in out  # left out on the CPU, with a word
    assert ("| net | mode | impl | conv ms | proposal ms | region-wise ms | test total ms | train ms/iter | test RoIs |"
            in out)
    data = json.loads(path.read_text())
    rows = data["rows"]
    impls = ["frcnn"] + (["torchvision"] if tool.torchvision is not None else [])
    assert [(r["net"], r["mode"], r["impl"]) for r in rows] == [("ZF", m, i) for m in ("fp32", "bf16") for i in impls]
    native_bf16 = cpu_has_native(torch.bfloat16)
    # bf16 training on a CPU without native bf16 kernels is left out, with a word (minutes an iteration)
    assert ("bf16 training is left out" in out) == (not native_bf16)
    for r in rows:
        assert all(r[k] > 0 for k in ("conv", "proposal", "region-wise"))
        if r["mode"] == "bf16" and not native_bf16:
            assert r["train"] is None
        else:
            assert r["train"] > 0
        assert r["total"] == pytest.approx(r["conv"] + r["proposal"] + r["region-wise"])
        assert r["rois"] >= 1 and r["rois"] == int(r["rois"])  # the proposals the heads ran on
    ours = [r for r in rows if r["impl"] == "frcnn"]
    # random weights must not collapse the proposals (they did: the heads were timed on a handful)
    assert all(r["rois"] >= 100 for r in ours), [r["rois"] for r in ours]  # 154 here, 28 before
    assert data["meta"]["size"] == "192x256" and data["meta"]["device"] == "cpu"


def test_bf16_training_is_timed_only_where_the_cpu_has_native_bf16(monkeypatch):
    from frcnn.caffe import precision

    tool = load_tool("bench_detector.py")
    cpu = tool.Settings(torch.device("cpu"), 1, 1, repeats=1, warmup=0, channels_last=False)
    gpu = tool.Settings(torch.device("cuda"), 1, 1, repeats=1, warmup=0, channels_last=False)
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_native", lambda dtype, native=native: native)
        assert tool.trains_in(cpu, "fp32") and tool.trains_in(gpu, "bf16")
        assert tool.trains_in(cpu, "bf16") == native


def test_bench_detector_rejects_bad_lists():
    from frcnn.errors import UserError

    tool = load_tool("bench_detector.py")
    with pytest.raises(UserError, match="--nets: expected a comma-separated list of ZF, VGG16"):
        tool.main(["--nets", "ResNet"])
    with pytest.raises(UserError, match="--size: expected HEIGHTxWIDTH"):
        tool.main(["--size", "600"])


def test_the_implementations_take_turns_and_each_gets_its_own_median():
    tool = load_tool("bench_detector.py")
    s = tool.Settings(None, 1, 1, repeats=3, warmup=1, channels_last=False)
    order = []

    def runner(name, values):
        it = iter(values)

        def run():
            order.append(name)
            return {"ms": next(it)}

        return run

    out = tool.take_turns(s, {"ours": runner("ours", [99, 5, 1, 3]), "theirs": runner("theirs", [99, 7, 9, 8])})
    assert order == ["ours", "theirs"] * 4  # the warm-up round, then one run of each per round
    assert out == {"ours": {"ms": 3}, "theirs": {"ms": 8}}  # medians of the timed runs only


def test_device_gets_an_index_for_set_device(monkeypatch):
    # torch.cuda.set_device(torch.device("cuda")) raises (no index): "--device cuda" must become
    # the current device's "cuda:N" before main() calls it
    tool = load_tool("bench_detector.py")
    assert tool.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(tool.UserError, match="no CUDA device"):
        tool.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert tool.resolve_device("cuda") == torch.device("cuda", 1)
    assert tool.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(tool.UserError, match="2 CUDA device"):
        tool.resolve_device("cuda:2")
    for bad in ("tpu", "gpu0"):
        with pytest.raises(tool.UserError, match="expected cpu or cuda"):
            tool.resolve_device(bad)


def test_a_quick_run_on_a_cpu_without_native_bf16_times_fp32_only(monkeypatch, capsys):
    from frcnn.caffe import precision

    tool = load_tool("bench_detector.py")
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_native", lambda dtype, native=native: native)
        assert tool.default_modes(gpu, quick=True) == "fp32,tf32,bf16"
        assert tool.default_modes(cpu, quick=False) == "fp32,bf16"
        assert tool.default_modes(cpu, quick=True) == ("fp32,bf16" if native else "fp32")
    assert "--quick on a CPU without native bf16 kernels: fp32 only" in capsys.readouterr().out
