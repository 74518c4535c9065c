#!/usr/bin/env python3
"""Figure 4 of the paper: recall against IoU at 300, 1000 and 2000 proposals, one curve per method.

    paper_fig4.py --curve "SS=recall_ss.csv" --curve "RPN ZF=recall_rpn_zf.csv" --out_dir output/paper/fig4

Each ``--curve LABEL=CSV`` is a CSV of ``tools/eval_recall.py --top_n 300 1000 2000 --thresholds
0.5 0.55 ... 1.0 --out CSV``. Writes ``OUT_DIR/recall.csv`` (label, top_n, iou, recall, num_gt:
every curve, one row per point) and, when matplotlib is installed (an optional dependency),
``OUT_DIR/fig4.png`` in the paper's layout: three panels titled "300 proposals", "1000 proposals"
and "2000 proposals", x = IoU from 0.5 to 1, y = recall from 0 to 1 (labelled on the first panel),
a legend of the methods. Without matplotlib only the CSV is written, and a line says so.
"""

from __future__ import annotations

import csv
import os

from frcnn.cli import add_flag, run_tool, tool_parser
from frcnn.errors import InputError

PANELS = (300, 1000, 2000)


def parse_args(argv=None):
    parser = tool_parser("Figure 4: recall vs. IoU at 300 / 1000 / 2000 proposals", help_if_empty=True)
    parser.add_argument("--curve", action="append", required=True, metavar="LABEL=CSV",
                        help="a method's eval_recall.py CSV (repeatable; the legend's order)")
    add_flag(parser, "--out_dir", required=True, help="folder for recall.csv and fig4.png")
    add_flag(parser, "--title", default=None, help="a title above the panels (e.g. SMOKE)")
    return parser.parse_args(argv)


def read_curves(specs: list[str]) -> dict[str, list[dict]]:
    """label -> CSV rows (top_n, iou, recall, num_gt) of each ``LABEL=CSV``."""
    curves: dict[str, list[dict]] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise InputError(f"--curve {spec!r}: expected LABEL=CSV")
        try:
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            raise InputError(f"--curve {spec!r}: cannot read {path}: {e.strerror}") from None
        if not rows or not {"top_n", "iou", "recall"} <= set(rows[0]):
            raise InputError(f"--curve {spec!r}: {path} is not an eval_recall.py CSV (top_n, iou, recall)")
        curves[label.strip()] = rows
    return curves


def write_csv(path: str, curves: dict[str, list[dict]]) -> int:
    from frcnn.utils.io import atomic_write

    fields = ["label", "top_n", "iou", "recall", "num_gt"]
    n = 0
    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for label, rows in curves.items():
            for r in rows:
                w.writerow({"label": label, "top_n": r["top_n"], "iou": r["iou"], "recall": r["recall"],
                            "num_gt": r.get("num_gt", "")})
                n += 1
    return n


def plot(path: str, curves: dict[str, list[dict]], title: str | None) -> bool:
    """The three panels as a PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from frcnn.utils.io import atomic_write

    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 3.8), sharey=True)
    for ax, n in zip(axes, PANELS):
        for label, rows in curves.items():
            pts = sorted((float(r["iou"]), float(r["recall"])) for r in rows if r["top_n"] == str(n))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
        ax.set_title(f"{n} proposals")
        ax.set_xlim(0.5, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_xlabel("IoU")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Recall")
    axes[-1].legend(loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    curves = read_curves(args.curve)
    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = os.path.join(args.out_dir, "recall.csv")
    n = write_csv(csv_path, curves)
    print(f"Wrote {csv_path} ({n} points, {len(curves)} curves)")
    png = os.path.join(args.out_dir, "fig4.png")
    if plot(png, curves, args.title):
        print(f"Wrote {png}")
    else:
        print("matplotlib is not installed (an optional dependency: pip install matplotlib): "
              f"no fig4.png, only {csv_path}")
    return 0


if __name__ == "__main__":
    run_tool(main)
