"""One table script end to end in smoke mode (the fastest, Table 1: one 4-step training of a
few iterations on the smoke data and the anchor statistics), and its results.md."""

import json
import os
import subprocess
import sys

import pytest

from tests.tools.helpers import ROOT


@pytest.mark.slow
def test_table1_smoke_end_to_end(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FRCNN_DEBUG"}
    env.update(PAPER_OUT=str(tmp_path / "paper_smoke"), PYTHON=sys.executable, OMP_NUM_THREADS="1",
               PYTHONPATH=os.path.join(ROOT, "lib") + os.pathsep + env.get("PYTHONPATH", ""))
    script = os.path.join(ROOT, "experiments", "scripts", "paper", "table1.sh")
    p = subprocess.run(["bash", script, "cpu", "--smoke"], check=False, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    table = tmp_path / "paper_smoke" / "table1"
    md = (table / "results.md").read_text()
    assert "| row | measure | paper | ours (SMOKE) | diff |" in md and "SMOKE RUN" in md
    assert "| 128², 2:1 | proposal width (px) | 188 |" in md and "| 512², 1:2 |" in md
    doc = json.loads((table / "results.json").read_text())
    assert doc["mode"] == "smoke" and all(r["status"] == "done" for r in doc["rows"])
    assert (tmp_path / "paper_smoke" / "REPORT.md").exists()
    # the model went where the scripts keep models, and a rerun skips the recorded rows
    assert list((tmp_path / "paper_smoke" / "models").glob("SMALL_voc07/final_stop4.txt"))
    again = subprocess.run(["bash", script, "cpu", "--smoke"], check=False, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "s128_r2_1: recorded, skipped" in again.stdout


def test_scripts_refuse_bad_arguments():
    script = os.path.join(ROOT, "experiments", "scripts", "paper", "table3.sh")
    for args, needle in ((["gpu0"], "GPU_ID must be a GPU number, a list (0,1) or 'cpu'"),
                         (["cpu", "--smok"], "unknown option '--smok'"), ([], "Usage:")):
        p = subprocess.run(["bash", script, *args], check=False, capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and needle in p.stderr, (args, p.stderr)


def test_a_full_table_without_its_data_marks_every_row_not_run(tmp_path):
    """The paper's protocol, no VOC or COCO on disk: no row trains, each says what it needs."""
    env = {k: v for k, v in os.environ.items() if k != "FRCNN_DEBUG"}
    data = tmp_path / "data"
    data.mkdir()
    env.update(PAPER_OUT=str(tmp_path / "paper"), PAPER_DATA=str(data), PYTHON=sys.executable, FROM_SCRATCH="1",
               PYTHONPATH=os.path.join(ROOT, "lib") + os.pathsep + env.get("PYTHONPATH", ""))
    script = os.path.join(ROOT, "experiments", "scripts", "paper", "table3.sh")
    p = subprocess.run(["bash", script, "cpu"], check=False, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    doc = json.loads((tmp_path / "paper" / "table3" / "results.json").read_text())
    assert doc["mode"] == "full" and [r["status"] for r in doc["rows"]] == ["not run"] * 6
    assert doc["rows"][0]["reason"] == f"needs voc_2007_trainval: no {data}/VOCdevkit2007/VOC2007/ImageSets/Main/trainval.txt"
    assert "coco_2014_train" in doc["rows"][5]["reason"]
    assert not (tmp_path / "paper" / "models").exists() or not list((tmp_path / "paper" / "models").iterdir())
    md = (tmp_path / "paper" / "table3" / "results.md").read_text()
    assert "| row | paper | ours | diff |" in md and "SMOKE" not in md


def test_a_full_table_stops_at_once_without_imagenet_weights(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("FRCNN_DEBUG", "FROM_SCRATCH")}
    env.update(PAPER_OUT=str(tmp_path / "paper"), PAPER_DATA=str(tmp_path), PYTHON=sys.executable)
    script = os.path.join(ROOT, "experiments", "scripts", "paper", "table2.sh")
    p = subprocess.run(["bash", script, "cpu"], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != 0 and "ZF starts from its ImageNet weights" in p.stdout + p.stderr
