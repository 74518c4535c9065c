#!/usr/bin/env python3
"""Collect the paper's tables into one report: ``<root>/REPORT.md``.

    paper_report.py [--root output/paper] [--check]

Reads ``<root>/<table>/results.json`` of every table of ``experiments/paper/paper_numbers.yml``
(written by ``tools/paper_table.py render``, i.e. by experiments/scripts/paper/<table>.sh) and
writes ``<root>/REPORT.md``: a summary (table, rows measured) and every table with the paper's
numbers beside ours; a table that has not run is listed with all its rows "not run". A smoke
root (``output/paper_smoke``) is labelled SMOKE throughout.

``--check`` (CI) exits 1 when a results.json is missing for a table, cannot be read as strict
JSON, or holds a number that is not finite (NaN, infinity), naming the table, row and measure.
"""

from __future__ import annotations

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from paper_table import NUMBERS, SMOKE_NOTE, build_table, load_numbers, markdown

from frcnn.cli import run_tool, tool_parser
from frcnn.errors import InputError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def parse_args(argv=None):
    parser = tool_parser("Collect the paper's tables into REPORT.md")
    parser.add_argument("--root", default=os.path.join(ROOT, "output", "paper"),
                        help="folder of the table folders (default output/paper; output/paper_smoke for smoke)")
    parser.add_argument("--numbers", default=NUMBERS, help="the paper's numbers")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a table is missing or holds a non-finite number")
    return parser.parse_args(argv)


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def read_results(path: str) -> dict:
    """A results.json, as strict JSON (NaN and Infinity are errors)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_constant=_reject_constant)


def problems(doc: dict, table: str) -> list[str]:
    """The non-finite numbers of a results document, as 'table row measure: value'."""
    out = []
    for r in doc.get("rows", []):
        for part in ("ours", "diff"):
            for m, v in (r.get(part) or {}).items():
                if isinstance(v, float) and not math.isfinite(v):
                    out.append(f"{table} {r.get('key')} {m}: {v}")
    return out


def collect(root: str, tables: dict) -> tuple[list[dict], list[str]]:
    """Each table's document (from results.json, or all 'not run') and the problems found."""
    docs, errors = [], []
    modes = set()
    found = {}
    for name in tables:
        path = os.path.join(root, name, "results.json")
        if not os.path.exists(path):
            errors.append(f"{name}: no {path} (the table has not run)")
            continue
        try:
            found[name] = read_results(path)
        except (OSError, ValueError) as e:
            errors.append(f"{name}: {path}: {e}")
            continue
        modes.add(found[name].get("mode"))
        errors += problems(found[name], name)
    if len(modes) > 1:
        raise InputError(f"{root}: holds tables of several modes ({', '.join(sorted(map(str, modes)))})")
    mode = modes.pop() if modes else "full"
    for name, table in tables.items():
        # a table not rendered yet: the rows recorded so far (or none: every row "not run")
        docs.append(found.get(name) or build_table(name, table, os.path.join(root, name), mode))
    return docs, errors


def report(docs: list[dict]) -> str:
    smoke = any(d["mode"] == "smoke" for d in docs)
    lines = ["# The paper's tables: ours beside the paper's" + (" (SMOKE)" if smoke else ""), ""]
    if smoke:
        lines += [f"**{SMOKE_NOTE}**", ""]
    lines += ["| table | title | rows measured |", "|---|---|---|"]
    for d in docs:
        done = sum(r["status"] == "done" for r in d["rows"])
        lines.append(f"| {d['table']} | {d['title']} | {done} of {len(d['rows'])} |")
    lines.append("")
    for d in docs:
        body = markdown(d).splitlines()
        body = [("#" + x if x.startswith("# ") else x) for x in body if x != f"**{SMOKE_NOTE}**"]
        for x in body:  # (no two blank lines where the table's own SMOKE note was)
            if x or (lines and lines[-1]):
                lines.append(x)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    from frcnn.utils.io import atomic_write

    tables = load_numbers(args.numbers)
    docs, errors = collect(args.root, tables)
    os.makedirs(args.root, exist_ok=True)
    path = os.path.join(args.root, "REPORT.md")
    with atomic_write(path, "w") as f:
        f.write(report(docs))
    print(f"Wrote {path}")
    if args.check:
        if errors:
            for e in errors:
                print(f"paper_report.py: check failed: {e}", file=sys.stderr)
            return 1
        print(f"check passed: {len(docs)} tables, every number finite")
    return 0


if __name__ == "__main__":
    run_tool(main)
