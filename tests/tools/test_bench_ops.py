"""tools/dev/bench_ops.py: the SGD update table (the op rows are timed by the GPU check)."""

import torch

from tests.tools.helpers import load_tool


def test_sgd_table_times_the_four_updates_on_small_blobs(monkeypatch):
    bench_ops = load_tool("dev/bench_ops.py")
    assert sum(s[0] * (1 + int(torch.tensor(s[1:]).prod())) for _, s in bench_ops.VGG16_LEARNABLE) == 136_818_079
    monkeypatch.setattr(bench_ops, "VGG16_LEARNABLE", [("conv", (8, 4, 3, 3)), ("fc6", (16, 1000)), ("fc", (5, 16))])
    count, rows = bench_ops.bench_sgd(torch.device("cpu"), repeats=2, warmup=0, quick=True)
    assert count == 8 * 36 + 8 + 5 * 16 + 5  # quick: without fc6
    labels = [label for label, _ in rows]
    assert labels == ["frcnn one pass (sgd_update_)", "frcnn torch operations", "torch.optim.SGD foreach",
                      "torch.optim.SGD fused"]
    assert all(ms > 0 for _, ms in rows[:3])
    table = bench_ops.format_sgd_table(count, rows)
    assert "(0.0 M parameters)" in table and "| frcnn one pass (sgd_update_)" in table
