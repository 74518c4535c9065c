#!/usr/bin/env python3
"""The results tables of experiments/scripts/paper: one measured row at a time, then the table
with the paper's numbers beside ours (row | paper | ours | diff).

    paper_table.py has    --dir D --table T --row R --mode M      exit 0 when row R is recorded
    paper_table.py record --dir D --table T --row R --mode M  SOURCE [--note TEXT ...]
    paper_table.py skip   --dir D --table T --row R --mode M --reason TEXT
    paper_table.py render --dir D --table T --mode M             writes D/results.md and D/results.json

``D`` is the table's folder (``output/paper/<table>``); each row is kept as ``D/rows/<row>.json``
(written atomically), so a rerun of a script skips the rows it finds and the table is rendered
from whatever is there. ``--mode full`` (the paper's protocol) or ``smoke``: a folder holds one
mode only, and smoke tables say so in every heading. The paper's numbers, the measures and the
row keys come from ``experiments/paper/paper_numbers.yml`` (``--numbers`` for another file).

SOURCE, what the row measured (values in the paper's units):

- ``--voc DIR [--as M]``: a VOC test's output folder (``tools/test_net.py``): each class's AP from
  ``<class>_pr.npz``, ``mAP`` = their mean over the classes with objects, in percent (``--as M``:
  the mean is measure M). A class without objects in the test set (AP undefined: only in smoke
  data) is recorded as null, noted;
- ``--coco DIR [--prefix P]``: ``DIR/detection_results.json`` of a COCO test: ``<P>ap50`` and
  ``<P>ap`` (mAP@.5 and mAP@[.5,.95], percent);
- ``--server FILE``: a results archive (VOC2012 test) or json (COCO test-dev) for an evaluation
  server, which scores it: the measures ``--measures`` (default all) are "server"; with another
  source in the same call, each gives its own measures (Table 12: ``--voc D --as voc07_test
  --server F --measures voc12_test``);
- ``--json FILE``: the numbers of a JSON object whose keys are measures (``tools/paper_timing.py``);
- ``--recall CSV --top_n N``: ``tools/eval_recall.py``'s CSV: recall at IoU 0.5 and 0.7 and the
  mean over its thresholds (Figure 4);
- ``--anchor_stats JSON``: ``tools/anchor_stats.py``'s JSON, every anchor row of Table 1 at once
  (``--row`` is not given);
- ``--value KEY=NUMBER`` (repeatable).
"""

from __future__ import annotations

import csv
import datetime
import glob
import json
import math
import os

import numpy as np

from frcnn.cli import add_flag, run_tool, tool_parser
from frcnn.errors import InputError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NUMBERS = os.path.join(ROOT, "experiments", "paper", "paper_numbers.yml")
MODES = ("full", "smoke")
SERVER = "server"
SMOKE_NOTE = ("SMOKE RUN: toy data laid out as the paper's sets, the SMALL net and a few iterations "
              "(experiments/scripts/paper --smoke). The numbers only show that each row's code path runs; "
              "they are not comparable with the paper's.")


# ----------------------------------------------------------------------------- the paper's numbers


def load_numbers(path: str = NUMBERS) -> dict:
    """The tables of ``paper_numbers.yml``, checked: every row has a unique key and a value
    (number or null) for each measure."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise InputError(f"{path}: cannot read the paper's numbers: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
    tables = (data or {}).get("tables")
    if not isinstance(tables, dict) or not tables:
        raise InputError(f"{path}: no 'tables' mapping")
    for name, table in tables.items():
        measures = table.get("measures")
        rows = table.get("rows")
        if not isinstance(measures, dict) or not measures or not isinstance(rows, list) or not rows:
            raise InputError(f"{path}: {name}: needs 'measures' (a mapping) and 'rows' (a list)")
        keys = [r.get("key") for r in rows]
        if len(set(keys)) != len(keys) or not all(isinstance(k, str) and k for k in keys):
            raise InputError(f"{path}: {name}: row keys must be unique non-empty strings, got {keys}")
        for r in rows:
            for m in measures:
                v = r.get(m, "missing")
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise InputError(f"{path}: {name}.{r['key']}.{m}: expected a number or null, got {v!r}")
    return tables


def table_spec(tables: dict, name: str) -> dict:
    if name not in tables:
        raise InputError(f"--table {name}: not a table of the paper's numbers ({', '.join(tables)})")
    return tables[name]


def row_spec(table: dict, name: str, key: str) -> dict:
    for r in table["rows"]:
        if r["key"] == key:
            return r
    raise InputError(f"--row {key}: {name} has no such row ({', '.join(r['key'] for r in table['rows'])})")


# ----------------------------------------------------------------------------- the rows on disk


def row_path(folder: str, key: str) -> str:
    return os.path.join(folder, "rows", key + ".json")


def read_row(folder: str, key: str) -> dict | None:
    path = row_path(folder, key)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable row record ({e}); delete it to rerun the row") from None


def write_row(folder: str, record: dict) -> str:
    from frcnn.utils.io import atomic_write

    path = row_path(folder, record["row"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return path


def check_mode(folder: str, mode: str) -> None:
    """A table folder holds rows of one mode: a smoke row never counts for a full table."""
    for path in sorted(glob.glob(os.path.join(folder, "rows", "*.json"))):
        with open(path, encoding="utf-8") as f:
            other = json.load(f).get("mode")
        if other != mode:
            raise InputError(f"{folder}: holds {other} rows ({os.path.basename(path)}), this is a {mode} run; "
                             f"use another folder (smoke runs write output/paper_smoke)")
        return


def is_done(folder: str, key: str, mode: str) -> bool:
    check_mode(folder, mode)
    rec = read_row(folder, key)
    return rec is not None and rec.get("status") == "done"


# ----------------------------------------------------------------------------- reading measurements


def voc_values(folder: str) -> tuple[dict, list[str]]:
    """``mAP`` and per-class AP (percent) from a VOC test's ``<class>_pr.npz`` files, and a note
    naming the classes without objects (null AP)."""
    files = sorted(glob.glob(os.path.join(folder, "*_pr.npz")))
    if not files:
        raise InputError(f"--voc {folder}: no <class>_pr.npz files (not the output folder of a VOC test)")
    values, absent, valid = {}, [], []
    for path in files:
        cls = os.path.basename(path)[: -len("_pr.npz")]
        with np.load(path, allow_pickle=False) as z:
            ap = float(z["ap"])
        if math.isnan(ap):  # voc_eval: the class has no (non-difficult) objects in the test set
            values[cls] = None
            absent.append(cls)
        else:
            values[cls] = 100.0 * ap
            valid.append(100.0 * ap)
    values["mAP"] = float(np.mean(valid)) if valid else float("nan")
    notes = []
    if absent:
        notes.append(f"no objects of {', '.join(absent)} in the test set: their AP is undefined and left out "
                     "of the mean")
    return values, notes


def coco_values(folder: str, prefix: str) -> dict:
    path = os.path.join(folder, "detection_results.json")
    try:
        with open(path, encoding="utf-8") as f:
            res = json.load(f)
        return {prefix + "ap50": 100.0 * float(res["mAP@.5"]), prefix + "ap": 100.0 * float(res["mAP@[.5,.95]"])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"--coco {folder}: no readable detection_results.json with mAP@.5 and mAP@[.5,.95] ({e})") \
            from None


def recall_values(path: str, top_n: int) -> dict:
    """Recall at IoU 0.5 and 0.7 and the mean recall over the CSV's thresholds, for one N."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("top_n") == str(top_n)]
    except OSError as e:
        raise InputError(f"--recall {path}: cannot read: {e.strerror}") from None
    if not rows:
        raise InputError(f"--recall {path}: no rows for top_n {top_n}")
    by_iou = {round(float(r["iou"]), 4): float(r["recall"]) for r in rows}
    out = {"recall_avg": float(np.mean(list(by_iou.values())))}
    for t in (0.5, 0.7):
        if t in by_iou:
            out[f"recall_{t:g}"] = by_iou[t]
    return out


def anchor_rows(path: str, table: dict) -> dict[str, dict]:
    """Table 1: row key -> {w, h} from anchor_stats.py's JSON, matched by the anchors' labels
    (null for an anchor from which no proposal was decoded)."""
    try:
        with open(path, encoding="utf-8") as f:
            anchors = json.load(f)["anchors"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"--anchor_stats {path}: not anchor_stats.py's JSON ({e})") from None
    by_label = {a["label"]: a for a in anchors}
    out = {}
    for r in table["rows"]:
        a = by_label.get(r["label"])
        if a is not None:
            none = a.get("mean_w") is None
            out[r["key"]] = {"w": None if none else float(a["mean_w"]), "h": None if none else float(a["mean_h"])}
    if not out:
        raise InputError(f"--anchor_stats {path}: none of its anchors ({', '.join(by_label)}) is one of the table's")
    return out


def number_pairs(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise InputError(f"--value {pair!r}: expected KEY=NUMBER") from None
        if not sep or not k.strip():
            raise InputError(f"--value {pair!r}: expected KEY=NUMBER")
    return out


def json_values(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"--json {path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"--json {path}: expected an object of measure: number")
    return {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ----------------------------------------------------------------------------- records


def make_record(table_name: str, key: str, mode: str, values: dict, notes: list[str], sources: list[str],
                status: str = "done") -> dict:
    return {"table": table_name, "row": key, "mode": mode, "status": status, "values": values, "notes": notes,
            "sources": sources, "recorded": datetime.datetime.now().isoformat(timespec="seconds")}


def keep_measures(table: dict, values: dict, wanted: list[str] | None, where: str) -> dict:
    """The values of the table's measures (``wanted`` of them, when given); none is an error."""
    measures = list(table["measures"])
    if wanted:
        unknown = [m for m in wanted if m not in measures]
        if unknown:
            raise InputError(f"--measures: {', '.join(unknown)} not a measure of the table ({', '.join(measures)})")
        measures = wanted
    kept = {m: values[m] for m in measures if m in values}
    if not kept:
        raise InputError(f"{where}: gives none of the measures {', '.join(measures)} (it has {', '.join(values)})")
    return kept


def record(args, tables: dict) -> list[str]:
    table = table_spec(tables, args.table)
    check_mode(args.dir, args.mode)
    notes = list(args.note or [])
    if args.anchor_stats:
        written = []
        for key, values in anchor_rows(args.anchor_stats, table).items():
            empty = ["no test-time proposal was decoded from this anchor"] if values["w"] is None else []
            rec = make_record(args.table, key, args.mode, values, notes + empty, [os.path.abspath(args.anchor_stats)])
            written.append(write_row(args.dir, rec))
        return written
    if not args.row:
        raise InputError("record: --row is required (except with --anchor_stats)")
    row_spec(table, args.table, args.row)
    sources: list[str] = []
    values: dict = {}
    if args.voc:
        v, n = voc_values(args.voc)
        if args.as_measure:  # the mean AP is this measure (Table 12: voc07_test)
            v = {args.as_measure: v["mAP"]}
        values.update(v)
        sources.append(os.path.abspath(args.voc))
        notes += n
    if args.coco:
        values.update(coco_values(args.coco, args.prefix))
        sources.append(os.path.abspath(args.coco))
    if args.json:
        values.update(json_values(args.json))
        sources.append(os.path.abspath(args.json))
    if args.recall:
        if args.top_n is None:
            raise InputError("--recall: needs --top_n")
        values.update(recall_values(args.recall, args.top_n))
        sources.append(os.path.abspath(args.recall))
    values.update(number_pairs(args.value or []))
    if args.server:
        if not os.path.isfile(args.server):
            raise InputError(f"--server {args.server}: no such file")
        for m in args.measures or list(table["measures"]):
            values[m] = SERVER
        sources.append(os.path.abspath(args.server))
        notes.append(f"results for the evaluation server in {os.path.abspath(args.server)}: the server scores "
                     "them, no AP is computed here")
    if not values:
        raise InputError("record: no measurement given (--voc, --coco, --server, --json, --recall, --value, "
                         "--anchor_stats)")
    kept = keep_measures(table, values, None if args.server else args.measures, "record")
    return [write_row(args.dir, make_record(args.table, args.row, args.mode, kept, notes, sources))]


# ----------------------------------------------------------------------------- rendering


def fmt(value, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return str(value)  # nan / inf, shown as they are (the CI check fails on them)
    return f"{value:.{digits}f}"


def diff(ours, paper):
    if isinstance(ours, (int, float)) and isinstance(paper, (int, float)) and math.isfinite(ours):
        return float(ours) - float(paper)
    return None


def build_table(name: str, table: dict, folder: str, mode: str) -> dict:
    """The table as a JSON-ready dict: every row of the paper, with ours where recorded."""
    rows = []
    known = {r["key"] for r in table["rows"]}
    for path in sorted(glob.glob(os.path.join(folder, "rows", "*.json"))):
        key = os.path.basename(path)[:-5]
        if key not in known:
            raise InputError(f"{path}: row '{key}' is not a row of {name} in the paper's numbers")
    for spec in table["rows"]:
        rec = read_row(folder, spec["key"])
        if rec is not None and rec.get("mode") != mode:
            raise InputError(f"{row_path(folder, spec['key'])}: a {rec.get('mode')} row in a {mode} table")
        status = "not run" if rec is None else rec.get("status", "done")
        ours = rec.get("values", {}) if rec is not None and status == "done" else {}
        paper = {m: spec.get(m) for m in table["measures"]}
        rows.append({
            "key": spec["key"], "label": spec["label"], "status": status,
            "paper": paper, "ours": {m: ours.get(m) for m in table["measures"]},
            "diff": {m: diff(ours.get(m), paper[m]) for m in table["measures"]},
            "notes": ([spec["note"]] if spec.get("note") else []) + (rec.get("notes", []) if rec else []),
            "reason": rec.get("reason") if rec else None,
            "sources": rec.get("sources", []) if rec else [],
        })
    return {"table": name, "title": table["title"], "mode": mode, "measures": table["measures"],
            "digits": int(table.get("digits", 1)), "rows": rows,
            "generated": datetime.datetime.now().isoformat(timespec="seconds")}


#: tables with more measures than this print the paper's wide layout (a column per measure)
WIDE = 5


def markdown(doc: dict) -> str:
    """row | [measure |] paper | ours | diff, one line per row and measure; tables of many
    measures (the per-class Tables 6 and 7) as the paper prints them, a column per measure and
    three lines per row (paper, ours, diff)."""
    d = doc["digits"]
    measures = doc["measures"]
    smoke = doc["mode"] == "smoke"
    title = f"{doc['table']}: {doc['title']}" + (" (SMOKE)" if smoke else "")
    lines = [f"# {title}", ""]
    if smoke:
        lines += [f"**{SMOKE_NOTE}**", ""]
    ours_head = "ours (SMOKE)" if smoke else "ours"

    def status(r: dict) -> str:
        return r["status"] + (f" ({r['reason']})" if r.get("reason") else "")

    if len(measures) > WIDE:
        head = ["row", ""] + list(measures.values())
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in doc["rows"]:
            lines.append("| " + " | ".join([r["label"], "paper"] + [fmt(r["paper"][m], d) for m in measures]) + " |")
            if r["status"] == "done":
                ours = [fmt(r["ours"][m], d) for m in measures]
            else:
                ours = [status(r)] + ["-"] * (len(measures) - 1)
            lines.append("| " + " | ".join(["", ours_head] + ours) + " |")
            lines.append("| " + " | ".join(["", "diff"] + [fmt(r["diff"][m], d) for m in measures]) + " |")
    else:
        many = len(measures) > 1
        head = ["row"] + (["measure"] if many else []) + ["paper", ours_head, "diff"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in doc["rows"]:
            for k, m in enumerate(measures):
                if r["status"] == "done":
                    ours = fmt(r["ours"][m], d)
                else:
                    ours = status(r) if k == 0 else ""
                cells = [r["label"] if k == 0 else ""] + ([measures[m]] if many else [])
                cells += [fmt(r["paper"][m], d), ours, fmt(r["diff"][m], d)]
                lines.append("| " + " | ".join(cells) + " |")
    by_note: dict[str, list[str]] = {}  # a note shared by several rows is printed once, naming them
    for r in doc["rows"]:
        for n in r["notes"]:
            by_note.setdefault(n, []).append(r["label"])
    if by_note:
        lines += ["", "Notes:"] + [f"- {'; '.join(labels)}: {n}" for n, labels in by_note.items()]
    done = sum(r["status"] == "done" for r in doc["rows"])
    lines += ["", f"{done} of {len(doc['rows'])} rows measured; diff = ours - paper. Generated {doc['generated']}.", ""]
    return "\n".join(lines)


def render(folder: str, name: str, mode: str, tables: dict) -> dict:
    from frcnn.utils.io import atomic_write

    check_mode(folder, mode)
    doc = build_table(name, table_spec(tables, name), folder, mode)
    os.makedirs(folder, exist_ok=True)
    text = markdown(doc)
    with atomic_write(os.path.join(folder, "results.md"), "w") as f:
        f.write(text)
    with atomic_write(os.path.join(folder, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(text)
    return doc


# ----------------------------------------------------------------------------- command line


def parse_args(argv=None):
    parser = tool_parser("Record and render the paper's tables (experiments/scripts/paper)", help_if_empty=True)
    sub = parser.add_subparsers(dest="command", required=True)
    common = tool_parser("", add_help=False)
    common.add_argument("--dir", required=True, help="the table's folder (output/paper/<table>)")
    common.add_argument("--table", required=True, help="table key of the paper's numbers (table1 ... table12, fig4)")
    common.add_argument("--mode", choices=MODES, required=True, help="full (the paper's protocol) or smoke")
    common.add_argument("--numbers", default=NUMBERS, help="the paper's numbers (default experiments/paper/paper_numbers.yml)")
    has = sub.add_parser("has", parents=[common], help="exit 0 when the row is recorded")
    has.add_argument("--row", required=True)
    rec = sub.add_parser("record", parents=[common], help="record a row's measurement")
    rec.add_argument("--row", default=None)
    rec.add_argument("--voc", default=None, help="a VOC test's output folder")
    rec.add_argument("--coco", default=None, help="a COCO test's output folder (detection_results.json)")
    rec.add_argument("--prefix", default="", help="prefix of the COCO measures (val_, testdev_)")
    rec.add_argument("--server", default=None, help="results file scored by an evaluation server")
    rec.add_argument("--json", default=None, help="a JSON object of measure: number")
    rec.add_argument("--recall", default=None, help="eval_recall.py CSV")
    add_flag(rec, "--top_n", type=int, default=None, help="the proposal count of --recall's rows")
    add_flag(rec, "--anchor_stats", default=None, help="anchor_stats.py JSON (all of Table 1's rows)")
    rec.add_argument("--value", action="append", default=None, metavar="KEY=NUMBER")
    rec.add_argument("--measures", nargs="+", default=None, help="record only these measures")
    rec.add_argument("--as", dest="as_measure", default=None,
                     help="with --voc: record its mean AP as this measure (e.g. voc07_test)")
    rec.add_argument("--note", action="append", default=None, help="a note printed under the table")
    skip = sub.add_parser("skip", parents=[common], help="record why a row was not run (a rerun tries again)")
    skip.add_argument("--row", required=True)
    skip.add_argument("--reason", required=True)
    sub.add_parser("render", parents=[common], help="write results.md and results.json")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tables = load_numbers(args.numbers)
    table = table_spec(tables, args.table)
    if args.command == "has":
        row_spec(table, args.table, args.row)
        return 0 if is_done(args.dir, args.row, args.mode) else 1
    if args.command == "record":
        for path in record(args, tables):
            print(f"Recorded {path}")
        return 0
    if args.command == "skip":
        row_spec(table, args.table, args.row)
        check_mode(args.dir, args.mode)
        old = read_row(args.dir, args.row)
        if old is not None and old.get("status") == "done":
            print(f"{args.table} {args.row}: already measured; not marking it skipped")
            return 0
        rec = make_record(args.table, args.row, args.mode, {}, [], [], status="not run")
        rec["reason"] = args.reason
        write_row(args.dir, rec)
        print(f"{args.table} {args.row}: not run ({args.reason})")
        return 0
    render(args.dir, args.table, args.mode, tables)
    return 0


if __name__ == "__main__":
    run_tool(main)
