"""experiments/paper/paper_numbers.yml against numbers quoted from the paper, and against the
table scripts' row keys."""

import os
import re

import numpy as np
import pytest

from tests.tools.helpers import ROOT, load_tool

paper_table = load_tool("paper_table.py")
TABLES = paper_table.load_numbers()
SCRIPTS = os.path.join(ROOT, "experiments", "scripts", "paper")


def value(table, row, measure):
    return paper_table.row_spec(TABLES[table], table, row)[measure]


@pytest.mark.parametrize("table, row, measure, quoted", [
    ("table2", "rpn_shared", "mAP", 59.9),          # RPN+ZF, shared
    ("table3", "rpn_shared_0712", "mAP", 73.2),     # VGG16 on 07+12
    ("table5", "vgg_rpn", "total", 198),            # VGG16 RPN + Fast R-CNN, ms
    ("table11", "faster_train", "testdev_ap50", 42.1),
    ("table11", "faster_train", "testdev_ap", 21.5),
    ("table8", "s128_r1", "mAP", 65.8),             # 1 scale, 1 ratio, 128²
    ("table9", "lambda_0.1", "mAP", 67.2),
    ("table1", "s128_r2_1", "w", 188),              # 188 x 111
    ("table1", "s128_r2_1", "h", 111),
    ("table4", "rpn_07pp12", "mAP", 70.4),
    ("table10", "one_stage_5scales", "mAP", 53.9),
    ("table12", "coco_novoc", "voc07_test", 76.1),
    ("table12", "coco_novoc", "voc12_test", 73.0),
    ("table7", "rpn_coco07pp12", "cat", 91.3),
    ("table6", "ss_07", "aeroplane", 74.5),         # printed "areo"
])
def test_values_quoted_from_the_paper(table, row, measure, quoted):
    assert value(table, row, measure) == quoted


def test_every_table_and_row_count():
    counts = {"table1": 9, "table2": 14, "table3": 6, "table4": 5, "table5": 3, "table6": 6, "table7": 5,
              "table8": 6, "table9": 4, "table10": 3, "table11": 4, "table12": 6, "fig4": 12}
    assert {t: len(TABLES[t]["rows"]) for t in counts} == counts


def test_not_reported_cells_are_null():
    assert value("table11", "fast_rcnn_ref2", "val_ap50") is None
    assert value("table12", "voc0712", "voc12_test") is None
    assert all(v is None for r in TABLES["fig4"]["rows"] for k, v in r.items() if k.startswith("recall"))


@pytest.mark.parametrize("table", ["table6", "table7"])
def test_per_class_rows_average_to_their_map(table):
    classes = [m for m in TABLES[table]["measures"] if m != "mAP"]
    assert len(classes) == 20
    for r in TABLES[table]["rows"]:
        assert abs(np.mean([r[c] for c in classes]) - r["mAP"]) <= 0.05 + 1e-9, r["key"]


def test_per_class_tables_are_tables_3_and_4_row_by_row():
    for per_class, overall in (("table6", "table3"), ("table7", "table4")):
        assert [r["key"] for r in TABLES[per_class]["rows"]] == [r["key"] for r in TABLES[overall]["rows"]]
        assert [r["mAP"] for r in TABLES[per_class]["rows"]] == [r["mAP"] for r in TABLES[overall]["rows"]]


def test_timing_rows_add_up():
    for r in TABLES["table5"]["rows"]:
        assert r["conv"] + r["proposal"] + r["region"] == r["total"]


def test_default_rows_agree_across_tables():
    # the 3 scales x 3 ratios and lambda 10 defaults are Table 3's shared 07 model
    shared07 = value("table3", "rpn_shared_07", "mAP")
    assert value("table8", "s3_r3", "mAP") == value("table9", "lambda_10", "mAP") == shared07 == 69.9
    assert value("table12", "voc07", "voc07_test") == shared07
    assert value("table10", "two_stage", "mAP") == value("table2", "rpn_unshared", "mAP") == 58.7


def script_rows(name):
    with open(os.path.join(SCRIPTS, name + ".sh"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^\s*row\s+([A-Za-z0-9_.]+)\s", text, flags=re.MULTILINE)


@pytest.mark.parametrize("table", [f"table{i}" for i in (1, 2, 3, 4, 5, 8, 9, 10, 11, 12)])
def test_every_script_row_is_a_row_of_the_paper_and_each_has_its_protocol_comment(table):
    keys = [r["key"] for r in TABLES[table]["rows"]]
    rows = script_rows(table)
    assert rows and set(rows) <= set(keys)
    if table != "table1":  # table1 records its nine rows with one call
        assert sorted(rows) == sorted(keys)
    with open(os.path.join(SCRIPTS, table + ".sh"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*row\s", line):
            assert lines[i - 1].lstrip().startswith("#"), f"{table}.sh:{i + 1}: no protocol comment above the row"


def test_fig4_script_covers_its_rows():
    with open(os.path.join(SCRIPTS, "fig4.sh"), encoding="utf-8") as f:
        text = f.read()
    assert "for m in ss eb rpn_zf rpn_vgg" in text and "for n in 300 1000 2000" in text
    assert {r["key"] for r in TABLES["fig4"]["rows"]} == {f"{m}_{n}" for m in ("ss", "eb", "rpn_zf", "rpn_vgg")
                                                         for n in (300, 1000, 2000)}


def test_a_bad_numbers_file_is_refused(tmp_path):
    bad = tmp_path / "n.yml"
    bad.write_text("tables:\n  t:\n    measures: {mAP: m}\n    rows:\n      - {key: a, label: A, mAP: '5'}\n")
    with pytest.raises(paper_table.InputError, match="t.a.mAP: expected a number or null"):
        paper_table.load_numbers(str(bad))
    bad.write_text("tables:\n  t:\n    measures: {mAP: m}\n    rows:\n      - {key: a, label: A, mAP: 1}\n"
                   "      - {key: a, label: B, mAP: 2}\n")
    with pytest.raises(paper_table.InputError, match="unique"):
        paper_table.load_numbers(str(bad))
