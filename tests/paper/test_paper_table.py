"""tools/paper_table.py (record, skip, render) and tools/paper_report.py on fake results."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.tools.helpers import load_tool, run_tool_process, tool_env

paper_table = load_tool("paper_table.py")
paper_report = load_tool("paper_report.py")

VOC = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
       "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def fake_voc_result(folder, aps):
    """A VOC test's output folder: <class>_pr.npz with the given APs (fractions; nan = no objects)."""
    os.makedirs(folder, exist_ok=True)
    for cls, ap in aps.items():
        np.savez(os.path.join(folder, f"{cls}_pr.npz"), rec=np.zeros(1), prec=np.zeros(1), ap=np.float64(ap))
    return str(folder)


def tool(*args):
    paper_table.main(list(args))


def run(*args):
    with pytest.raises(SystemExit) as e:
        paper_table.run_tool(paper_table.main, list(args))
    return e.value.code


def test_record_render_prints_the_paper_beside_ours(tmp_path):
    d = str(tmp_path / "table3")
    aps = dict.fromkeys(VOC, 0.7)
    aps["cat"] = 0.9
    res = fake_voc_result(tmp_path / "res", aps)
    tool("record", "--dir", d, "--table", "table3", "--mode", "full", "--row", "rpn_shared_07", "--voc", res)
    tool("render", "--dir", d, "--table", "table3", "--mode", "full")
    md = Path(d, "results.md").read_text()
    ours = 100 * np.mean(list(aps.values()))
    assert "| row | paper | ours | diff |" in md
    assert f"| RPN+VGG shared, 300, 07 | 69.9 | {ours:.1f} | {ours - 69.9:.1f} |" in md
    assert "| SS, 2000, 07 | 66.9 | not run | - |" in md
    assert "1 of 6 rows measured" in md and "SMOKE" not in md
    doc = json.loads(Path(os.path.join(d, "results.json")).read_text())
    row = next(r for r in doc["rows"] if r["key"] == "rpn_shared_07")
    assert row["paper"]["mAP"] == 69.9 and row["ours"]["mAP"] == pytest.approx(ours)
    assert row["diff"]["mAP"] == pytest.approx(ours - 69.9)
    assert run("has", "--dir", d, "--table", "table3", "--mode", "full", "--row", "rpn_shared_07") == 0
    assert run("has", "--dir", d, "--table", "table3", "--mode", "full", "--row", "ss_07") == 1


def test_per_class_table_and_absent_classes(tmp_path):
    d = str(tmp_path / "table6")
    aps = dict.fromkeys(VOC, float("nan"))
    aps.update(aeroplane=0.5, sofa=0.25)
    res = fake_voc_result(tmp_path / "res", aps)
    tool("record", "--dir", d, "--table", "table6", "--mode", "smoke", "--row", "ss_07", "--voc", res)
    doc = paper_table.render(d, "table6", "smoke", paper_table.load_numbers())
    row = doc["rows"][0]
    assert row["ours"]["mAP"] == pytest.approx(37.5)  # the mean over the classes with objects
    assert row["ours"]["aeroplane"] == pytest.approx(50.0) and row["ours"]["cat"] is None
    assert any("no objects of bicycle" in n for n in row["notes"])
    md = Path(d, "results.md").read_text()
    assert "(SMOKE)" in md and "SMOKE RUN" in md
    assert "| SS, 2000, 07 | paper | 66.9 | 74.5 |" in md  # the paper's layout: a column per class
    assert "|  | ours (SMOKE) | 37.5 | 50.0 | - |" in md
    # a strict JSON file: no NaN anywhere
    json.loads(Path(d, "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_modes_do_not_mix_and_skips_are_retried(tmp_path):
    d = str(tmp_path / "table2")
    tool("skip", "--dir", d, "--table", "table2", "--mode", "smoke", "--row", "eb_eb", "--reason", "no EB files")
    assert run("has", "--dir", d, "--table", "table2", "--mode", "smoke", "--row", "eb_eb") == 1
    assert run("has", "--dir", d, "--table", "table2", "--mode", "full", "--row", "eb_eb") == 2  # a smoke folder
    doc = paper_table.render(d, "table2", "smoke", paper_table.load_numbers())
    assert doc["rows"][1]["status"] == "not run" and doc["rows"][1]["reason"] == "no EB files"
    assert "not run (no EB files)" in Path(d, "results.md").read_text()


def test_server_coco_json_recall_and_values(tmp_path):
    tables = paper_table.load_numbers()
    d11 = str(tmp_path / "table11")
    coco = tmp_path / "coco"
    coco.mkdir()
    (coco / "detection_results.json").write_text(json.dumps({"mAP@.5": 0.415, "mAP@[.5,.95]": 0.212}))
    server = tmp_path / "detections_test-dev2015_results.json"
    server.write_text("[]")
    tool("record", "--dir", d11, "--table", "table11", "--mode", "full", "--row", "faster_train",
         "--coco", str(coco), "--prefix", "val_", "--server", str(server), "--measures", "testdev_ap50", "testdev_ap")
    doc = paper_table.build_table("table11", tables["table11"], d11, "full")
    row = doc["rows"][2]
    assert row["ours"] == {"val_ap50": pytest.approx(41.5), "val_ap": pytest.approx(21.2),
                           "testdev_ap50": "server", "testdev_ap": "server"}
    assert row["diff"]["val_ap50"] == pytest.approx(0.0, abs=1e-9) and row["diff"]["testdev_ap"] is None
    md = paper_table.markdown(doc)
    assert "| Faster R-CNN, RPN 300, COCO train | COCO val mAP@.5 | 41.5 | 41.5 | 0.0 |" in md
    assert "|  | COCO test-dev mAP@.5 | 42.1 | server | - |" in md

    d5 = str(tmp_path / "table5")
    timing = tmp_path / "t.json"
    timing.write_text(json.dumps({"conv": 140.0, "proposal": 11.0, "region": 50.0, "total": 201.0, "fps": 4.97,
                                  "device": "cuda:1"}))
    tool("record", "--dir", d5, "--table", "table5", "--mode", "full", "--row", "vgg_rpn", "--json", str(timing))
    assert paper_table.read_row(d5, "vgg_rpn")["values"]["total"] == 201.0

    df = str(tmp_path / "fig4")
    csv = tmp_path / "r.csv"
    csv.write_text("method,imdb,top_n,iou,recall,num_gt\n" + "".join(
        f"rpn,voc_2007_test,{n},{t:.4g},{r:.6f},10\n" for n in (300, 2000)
        for t, r in zip(np.arange(0.5, 1.0001, 0.05), np.linspace(1, 0, 11))))
    tool("record", "--dir", df, "--table", "fig4", "--mode", "full", "--row", "rpn_zf_300", "--recall", str(csv),
         "--top_n", "300")
    v = paper_table.read_row(df, "rpn_zf_300")["values"]
    assert v["recall_0.5"] == pytest.approx(1.0) and v["recall_0.7"] == pytest.approx(0.6)
    assert v["recall_avg"] == pytest.approx(0.5)

    d12 = str(tmp_path / "table12")
    res = fake_voc_result(tmp_path / "r12", dict.fromkeys(VOC, 0.6))
    archive = tmp_path / "VOC2012_test_comp4_results.tar.gz"
    archive.write_bytes(b"x")
    tool("record", "--dir", d12, "--table", "table12", "--mode", "full", "--row", "voc07", "--voc", res,
         "--as", "voc07_test", "--server", str(archive), "--measures", "voc12_test")
    assert paper_table.read_row(d12, "voc07")["values"] == {"voc07_test": pytest.approx(60.0), "voc12_test": "server"}


def test_anchor_stats_fill_table1(tmp_path):
    d = str(tmp_path / "table1")
    stats = tmp_path / "a.json"
    anchors = [{"label": "128², 2:1", "mean_w": 180.4, "mean_h": 110.0}, {"label": "512², 1:2", "mean_w": None,
                                                                          "mean_h": None}]
    stats.write_text(json.dumps({"anchors": anchors}))
    tool("record", "--dir", d, "--table", "table1", "--mode", "full", "--anchor_stats", str(stats))
    assert paper_table.read_row(d, "s128_r2_1")["values"] == {"w": 180.4, "h": 110.0}
    assert paper_table.read_row(d, "s512_r1_2")["values"] == {"w": None, "h": None}
    md = paper_table.markdown(paper_table.build_table("table1", paper_table.load_numbers()["table1"], d, "full"))
    assert "| 128², 2:1 | proposal width (px) | 188 | 180 | -8 |" in md


@pytest.mark.parametrize("args, needle", [
    (["record", "--table", "table3", "--row", "nope", "--voc", "x"], "--row nope: table3 has no such row"),
    (["record", "--table", "tableX", "--row", "a", "--voc", "x"], "--table tableX: not a table"),
    (["record", "--table", "table3", "--row", "ss_07"], "no measurement given"),
    (["record", "--table", "table3", "--row", "ss_07", "--voc", "/nonexistent"], "no <class>_pr.npz files"),
    (["record", "--table", "table3", "--row", "ss_07", "--value", "mAP=abc"], "expected KEY=NUMBER"),
])
def test_bad_input_is_one_line(tmp_path, args, needle):
    p = run_tool_process("paper_table.py", *args, "--dir", str(tmp_path / "t"), "--mode", "full")
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr


def test_report_collects_tables_and_marks_rows_not_run(tmp_path):
    root = tmp_path / "paper"
    res = fake_voc_result(tmp_path / "res", dict.fromkeys(VOC, 0.5))
    d = str(root / "table3")
    tool("record", "--dir", d, "--table", "table3", "--mode", "full", "--row", "ss_07", "--voc", res)
    paper_table.render(d, "table3", "full", paper_table.load_numbers())
    assert paper_report.main(["--root", str(root)]) == 0
    text = (root / "REPORT.md").read_text()
    assert "| table3 | " in text and "| 1 of 6 |" in text
    assert "| table11 | " in text and "| 0 of 4 |" in text   # a table that has not run: every row listed
    assert "| Fast R-CNN [2], SS 2000, COCO train | COCO val mAP@.5 | - | not run | - |" in text
    assert "|  | COCO test-dev mAP@.5 | 35.9 |  | - |" in text
    assert "| SS, 2000, 07 | 66.9 | 50.0 | -16.9 |" in text
    # --check: tables missing
    assert paper_report.main(["--root", str(root), "--check"]) == 1


def test_report_check_fails_on_a_non_finite_number(tmp_path, capsys):
    root = tmp_path / "paper"
    tables = paper_table.load_numbers()
    for name in tables:
        paper_table.render(str(root / name), name, "smoke", tables)
    assert paper_report.main(["--root", str(root), "--check"]) == 0
    res = fake_voc_result(tmp_path / "res", dict.fromkeys(VOC, float("nan")))  # no class has objects: mAP nan
    tool("record", "--dir", str(root / "table9"), "--table", "table9", "--mode", "smoke", "--row", "lambda_1",
         "--voc", res)
    paper_table.render(str(root / "table9"), "table9", "smoke", tables)
    capsys.readouterr()
    assert paper_report.main(["--root", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert "table9 lambda_1 mAP: NaN" in err or "non-finite number NaN" in err
    assert "SMOKE" in (root / "REPORT.md").read_text()


def test_the_bookkeeping_tools_run_without_torch(tmp_path):
    # the paper scripts call paper_table.py / paper_report.py a few times per row: importing torch
    # (2.5 s a call on 2 cores) was half of the smoke run's time. A torch that cannot be imported
    # stands first on the path here, so any import of it fails the commands.
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('the bookkeeping tools must not import torch')\n")
    env = tool_env()
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), env.get("PYTHONPATH", "")])
    d = str(tmp_path / "table3")
    res = fake_voc_result(tmp_path / "res", dict.fromkeys(VOC, 0.5))
    common = ("--dir", d, "--table", "table3", "--mode", "smoke")
    for args, code in [(("has", *common, "--row", "ss_07"), 1),
                       (("record", *common, "--row", "ss_07", "--voc", res), 0),
                       (("skip", *common, "--row", "ss_0712", "--reason", "no data"), 0),
                       (("has", *common, "--row", "ss_07"), 0),
                       (("render", *common), 0)]:
        p = run_tool_process("paper_table.py", *args, env=env)
        assert p.returncode == code and not p.stderr, (args, p.stderr)  # has's 1: "not recorded", silently
    p = run_tool_process("paper_report.py", "--root", str(tmp_path), env=env)
    assert p.returncode == 0 and not p.stderr, p.stderr
    assert (tmp_path / "REPORT.md").is_file() and (tmp_path / "table3" / "results.md").is_file()
