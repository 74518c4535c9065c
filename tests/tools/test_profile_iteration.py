"""tools/dev/profile_iteration.py: the table of where a training iteration's and a test image's
CPU time goes, on a small toy set; its rows add up to the measured total."""

import re

import pytest

from tests.tools.helpers import load_tool


def _rows(out: str) -> tuple[dict[str, float], float]:
    rows = dict(re.findall(r"^\| ([^|*]+?) \| (-?[0-9.]+) \| -?[0-9.]+% \|$", out, flags=re.MULTILINE))
    total = float(re.search(r"^\| \*\*total \(process CPU time\)\*\* \| \*\*([0-9.]+)\*\* \| 100% \|$", out,
                            flags=re.MULTILINE).group(1))
    return {k: float(v) for k, v in rows.items()}, total


@pytest.mark.slow
def test_profile_iteration_tables_on_a_small_toy_set(tmp_path, capsys):
    from frcnn.datasets.toy import make_toy_dataset

    make_toy_dataset(str(tmp_path / "data" / "toy"), num_trainval=6, num_test=3, seed=1)
    tool = load_tool("dev/profile_iteration.py")
    where = ["--set", "DATA_DIR", str(tmp_path / "data"), "ROOT_DIR", str(tmp_path)]
    assert tool.main(["--cpu", "--mode", "train", "--iters", "2", "--warmup", "1", *where]) == 0
    out = capsys.readouterr().out
    rows, total = _rows(out)
    for name in ("layer Convolution", "layer InnerProduct", "layer ROIPooling", "Python AnchorTargetLayer",
                 "Python ProposalLayer", "Python ProposalTargetLayer", "data layer (main thread)",
                 "data prefetch threads", "backward: InnerProduct", "backward: Convolution", "solver update",
                 "engine bookkeeping (Net.forward minus its layers)"):
        assert name in rows, name
    assert rows["layer InnerProduct"] > 0 and rows["backward: Convolution"] > 0 and rows["solver update"] > 0
    assert sum(rows.values()) == pytest.approx(total, abs=0.01 * len(rows))  # the parts make the whole
    assert min(rows.values()) > -0.05, rows  # and none overlaps another
    assert "per iteration, not instrumented: CPU time mean" in out

    assert tool.main(["--cpu", "--mode", "test", "--iters", "2", "--warmup", "0", "--by_layer", *where]) == 0
    out = capsys.readouterr().out
    assert "random weights (no --net)" in out
    rows, total = _rows(out)
    assert "layer fc6 (InnerProduct)" in rows and "Python ProposalLayer" in rows
    assert any(k.startswith("post-processing") for k in rows) and "preprocess (image blob)" in rows
    assert sum(rows.values()) == pytest.approx(total, abs=0.01 * len(rows))
    assert min(rows.values()) > -0.05, rows


def test_profile_iteration_says_where_the_toy_set_is_missing(tmp_path):
    from frcnn.errors import UserError

    tool = load_tool("dev/profile_iteration.py")
    with pytest.raises(UserError, match="make_toy_dataset.py"):
        tool.main(["--cpu", "--set", "DATA_DIR", str(tmp_path)])
    with pytest.raises(UserError, match="--iters"):
        tool.main(["--iters", "0"])
