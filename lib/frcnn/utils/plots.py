"""Pictures of a run as PNG files: loss curves and precision-recall curves.

matplotlib is optional: :func:`figure_class` returns None without it, and each caller prints
one line (:func:`missing_note`) instead of the picture. Figures are drawn with matplotlib's
object API on its Agg canvas (no pyplot, no display, no global backend change) and written
atomically.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from frcnn.utils.io import atomic_write

Series = tuple[np.ndarray, np.ndarray]  # (iterations, values)


def figure_class() -> Any:
    """matplotlib's ``Figure`` class, or None when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def missing_note(what: str) -> str:
    """The one line printed instead of a picture when matplotlib is missing."""
    return f"Note: matplotlib is not installed (pip install matplotlib), so no {what} was drawn"


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (fewer at the start), NaNs left out."""
    v = np.asarray(values, dtype=np.float64)
    window = max(1, int(window))
    ok = np.isfinite(v)
    csum = np.concatenate(([0.0], np.cumsum(np.where(ok, v, 0.0))))
    count = np.concatenate(([0], np.cumsum(ok)))
    hi = np.arange(1, len(v) + 1)
    lo = np.maximum(0, hi - window)
    n = count[hi] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (csum[hi] - csum[lo]) / np.maximum(n, 1), np.nan)


def _save(fig: Any, path: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def plot_loss_curves(
    series: Mapping[str, Series],
    path: str,
    title: str,
    window: int,
    marks: Sequence[float] = (),
    mark_label: str = "learning-rate step",
) -> str | None:
    """One panel per loss (in ``series`` order): the raw values faint, their moving average over
    ``window`` points bold, dashed lines at the iterations ``marks``. Returns ``path``, or None
    without matplotlib."""
    Figure = figure_class()
    if Figure is None:
        return None
    names = [k for k, (x, _) in series.items() if len(x)]
    if not names:
        raise ValueError(f"{path}: no loss values to plot")
    cols = 1 if len(names) == 1 else 2
    rows = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(6 * cols, 3.2 * rows))
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        x, y = (np.asarray(a, dtype=np.float64) for a in series[name])
        ax.plot(x, y, color="tab:blue", alpha=0.25, linewidth=0.8, label="raw")
        ax.plot(x, smooth(y, window), color="tab:blue", linewidth=1.8, label=f"mean of the last {max(1, window)}")
        for i, m in enumerate(marks):
            ax.axvline(m, color="grey", linestyle="--", linewidth=1, label=mark_label if i == 0 else None)
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: str, title: str) -> str | None:
    """Precision against recall, one line per class (legend: its AP). Classes without a curve
    (no positives) are left out. Returns ``path``, or None without matplotlib."""
    Figure = figure_class()
    if Figure is None:
        return None
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    for name, (rec, prec, ap) in curves.items():
        rec, prec = np.asarray(rec, dtype=np.float64), np.asarray(prec, dtype=np.float64)
        if rec.size == 0 or not np.all(np.isfinite(rec)):
            continue
        # from (recall 0, the first precision) so that a class with one detection shows a mark
        ax.plot(np.concatenate(([0.0], rec)), np.concatenate((prec[:1], prec)), linewidth=1.5,
                label=f"{name} (AP {ap:.3f})", marker="." if rec.size < 3 else None)
        drawn += 1
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8 if drawn <= 10 else 6, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no detections", ha="center", va="center")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)
