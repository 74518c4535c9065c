"""tools/eval_recall.py as data: recall at a list of IoU thresholds for each top-N (Figure 4)."""

import csv

import numpy as np

from frcnn.datasets.factory import get_imdb
from frcnn.datasets.proposals import save_proposals
from tests.tools.helpers import load_tool


def _proposals(tmp_path, cfg):
    imdb = get_imdb("shapes_test", cfg)  # one image: a dog at 0-based (1, 2, 59, 39), 59 x 38
    first = [1, 2, 59, 29]  # 59 x 28 inside the gt: IoU 28 / 38 = 0.737
    exact = [1, 2, 59, 39]
    path = str(tmp_path / "p.npz")
    save_proposals(path, [np.array([first, exact], np.float32)], list(imdb.image_index))
    return path


def test_recall_per_top_n_and_iou_list_as_csv(tiny_voc, tmp_path, capsys):
    cfg, _root = tiny_voc
    path = _proposals(tmp_path, cfg)
    out = tmp_path / "recall.csv"
    argv = ["--imdb", "shapes_test", "--method", "rpn", "--rpn_file", path, "--top_n", "1", "2", "-1",
            "--thresholds", "0.5", "0.7", "0.75", "1.0", "--out", str(out), "--set", "DATA_DIR", cfg.DATA_DIR]
    assert load_tool("eval_recall.py").main(argv) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    got = [(r["top_n"], float(r["iou"]), float(r["recall"])) for r in rows]
    assert got == [
        ("1", 0.5, 1.0), ("1", 0.7, 1.0), ("1", 0.75, 0.0), ("1", 1.0, 0.0),  # only the 0.737 box
        ("2", 0.5, 1.0), ("2", 0.7, 1.0), ("2", 0.75, 1.0), ("2", 1.0, 1.0),  # the exact box too
        ("all", 0.5, 1.0), ("all", 0.7, 1.0), ("all", 0.75, 1.0), ("all", 1.0, 1.0),
    ]
    assert {r["method"] for r in rows} == {"rpn"} and {r["num_gt"] for r in rows} == {"1"}
    assert {r["imdb"] for r in rows} == {"shapes_test"}
    text = capsys.readouterr().out
    assert "top_n: 1  AverageRec: 0.500" in text and "Recall@0.75: 0.000" in text


def test_evaluate_recall_returns_the_curve_and_the_gt_count(tiny_voc, tmp_path):
    cfg, _root = tiny_voc
    imdb = get_imdb("shapes_test", cfg)
    imdb.config["rpn_file"] = _proposals(tmp_path, cfg)
    imdb.set_proposal_method("rpn")
    res = imdb.evaluate_recall(thresholds=np.arange(0.5, 1.0 + 1e-5, 0.05), limit=1)
    assert res["num_pos"] == 1 and len(res["thresholds"]) == 11
    np.testing.assert_allclose(res["recalls"], [1.0] * 5 + [0.0] * 6)  # 0.737 passes 0.5 .. 0.7


def test_bad_top_n_and_thresholds_are_named(tiny_voc, tmp_path):
    import pytest

    from frcnn.errors import InputError

    cfg, _root = tiny_voc
    tool = load_tool("eval_recall.py")
    with pytest.raises(InputError, match="--top_n"):
        tool.main(["--imdb", "shapes_test", "--top_n", "0", "--set", "DATA_DIR", cfg.DATA_DIR])
    with pytest.raises(InputError, match="--thresholds"):
        tool.main(["--imdb", "shapes_test", "--thresholds", "1.5", "--set", "DATA_DIR", cfg.DATA_DIR])
