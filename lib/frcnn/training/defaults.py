"""Settings derived from a dataset, for a set that has no ``models/<name>/`` of its own.

The shipped PASCAL VOC nets and solvers assume VOC: anchors of 128-512 px, a learning-rate
step every 2000 iterations (the SMALL solver) or at 50000 (upstream's end2end solvers), snapshots every
10000. For another set :func:`derive_defaults` measures the data
(:func:`frcnn.datasets.summary.summarize`) and derives, each with the reason printed:

- ``ANCHOR_SCALES`` / ``ANCHOR_RATIOS``: the anchors that cover the most boxes at the
  training scale with the fewest anchors (:func:`frcnn.rpn.anchor_fit.fit_anchors`);
- ``TRAIN.SOLVER_STEPSIZE``: the learning-rate step at 5/7 of the run
  (:func:`frcnn.training.schedule.derive_schedule`, upstream's 50000 of 70000);
- ``TRAIN.SNAPSHOT_ITERS``: a snapshot every 1/7 of the run (upstream's 10000 of 70000).

A key the user set (in a ``--cfg`` file or with ``--set``) is kept and reported as theirs.
The anchor keys are derived only where this build's config has them. The result is a yml
file (:func:`write_defaults`) that the experiment scripts pass to the tools with ``--cfg``
before the user's ``--set``, so that any derived value can be overridden.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frcnn.datasets.summary import DatasetSummary, format_summary
from frcnn.errors import InputError
from frcnn.rpn.anchor_fit import AnchorFit, best_anchor_iou, coverage, fit_anchors
from frcnn.training.schedule import derive_schedule
from frcnn.utils.io import atomic_write

ANCHOR_KEYS = ("ANCHOR_SCALES", "ANCHOR_RATIOS")
#: upstream's param_str defaults of the RPN layers
DEFAULT_SCALES = (8.0, 16.0, 32.0)
DEFAULT_RATIOS = (0.5, 1.0, 2.0)


@dataclass
class Setting:
    """One derived (or user-given) setting: config key, value, why, and who set it."""

    key: str
    value: Any
    reason: str
    source: str = "derived"  # or where the user set it: "--set", a yml file

    @property
    def derived(self) -> bool:
        return self.source == "derived"


@dataclass
class NetAnchors:
    """What a training net's anchor target layer says: stride, scales and ratios."""

    feat_stride: int = 16
    scales: tuple[float, ...] = DEFAULT_SCALES
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    where: str = "upstream's defaults"


@dataclass
class DerivedDefaults:
    """The summary, the settings (in print order) and notes of one derivation."""

    summary: DatasetSummary
    settings: list[Setting]
    notes: list[str] = field(default_factory=list)

    def overrides(self) -> dict[str, Any]:
        """The derived settings (not the user's) as a nested config mapping."""
        out: dict[str, Any] = {}
        for s in self.settings:
            if not s.derived:
                continue
            d = out
            *parents, last = s.key.split(".")
            for p in parents:
                d = d.setdefault(p, {})
            d[last] = s.value
        return out

    def set_args(self) -> list[str]:
        """The derived settings as ``--set`` words (``KEY VALUE ...``)."""
        return [w for s in self.settings if s.derived for w in (s.key, _literal(s.value))]

    def lines(self) -> list[str]:
        """What the scripts print: the summary, each setting with its reason, the notes."""
        out = format_summary(self.summary)
        out.append("Settings derived from the data (each can be overridden with --set KEY VALUE):")
        for s in self.settings:
            origin = "" if s.derived else f" (yours, from {s.source})"
            out.append(f"  {s.key} {_literal(s.value)}{origin}: {s.reason}")
        out += [f"  Note: {n}" for n in self.notes]
        return out


def _num(x: float) -> int | float:
    x = float(x)
    return int(x) if x.is_integer() else x


def _literal(value: Any) -> str:
    """A value as ``--set`` reads it (a Python literal: ``[4, 8, 16]``, ``7143``)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(_num(v)) for v in value) + "]"
    return str(value)


def _px(scales: Sequence[float], base_size: int = 16) -> str:
    px = [round(s * base_size) for s in scales]
    return f"{min(px)}-{max(px)} px"


def _cover_txt(fit: AnchorFit) -> str:
    return f"{fit.covered} of {fit.total} boxes ({100 * fit.coverage:.1f}%)"


def user_set_keys(cfg_files: Iterable[str], set_list: Sequence[str] | None) -> dict[str, str]:
    """Config keys the user set: ``{"TRAIN.SCALES": "my.yml", "ANCHOR_SCALES": "--set", ...}``
    (every key of every yml file in ``cfg_files``, then the keys of a ``--set`` list)."""
    import yaml

    found: dict[str, str] = {}

    def walk(d: Any, prefix: str, where: str) -> None:
        if not isinstance(d, dict):
            return
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, key + ".", where)
            else:
                found[key] = where

    for path in cfg_files:
        with open(path) as f:
            walk(yaml.safe_load(f) or {}, "", path)
    words = list(set_list or [])
    for key in words[0::2]:
        found[key] = "--set"
    return found


def net_anchors(net_prototxt: str) -> NetAnchors:
    """The feature stride, scales and ratios of a net's anchor target layer (upstream's
    defaults where its ``param_str`` says nothing, or when it has no such layer)."""
    from frcnn.caffe.prototxt import parse_file
    from frcnn.caffe.python_layer import parse_param_str

    msg = parse_file(net_prototxt)
    for layer in msg.get_msgs("layer") + msg.get_msgs("layers"):
        if "python_param" not in layer:
            continue
        pp = layer.get_msg("python_param")
        if str(pp.get("layer", "")) != "AnchorTargetLayer":
            continue
        p = parse_param_str(str(pp.get("param_str", "")), f"{net_prototxt}: layer {layer.get('name')} param_str")
        return NetAnchors(
            feat_stride=int(p.get("feat_stride", 16)),
            scales=tuple(float(s) for s in p.get("scales", DEFAULT_SCALES)),
            ratios=tuple(float(r) for r in p.get("ratios", DEFAULT_RATIOS)),
            where=f"{os.path.relpath(net_prototxt)} (layer {layer.get('name')})",
        )
    return NetAnchors()


def _anchor_settings(
    summary: DatasetSummary, net: NetAnchors, cfg: Any, user: dict[str, str], anchor_keys: bool
) -> tuple[list[Setting], list[str]]:
    boxes, sizes, stride = summary.boxes, summary.image_sizes, net.feat_stride
    shipped = coverage(boxes, sizes, net.scales, net.ratios, stride)
    shipped_txt = (
        f"the net's own anchors ({net.where}: scales {_literal(net.scales)} = {_px(net.scales)}, "
        f"ratios {_literal(net.ratios)}) cover {_cover_txt(shipped)}"
    )
    if not anchor_keys:
        note = (
            "this build's RPN layers take their anchors from the prototxt only (no ANCHOR_SCALES "
            f"config key), so training keeps them: {shipped_txt}"
        )
        return [], [note]
    if "ANCHOR_SCALES" in user or "ANCHOR_RATIOS" in user:
        scales = tuple(cfg.ANCHOR_SCALES) if cfg.ANCHOR_SCALES is not None else net.scales
        ratios = tuple(cfg.ANCHOR_RATIOS) if cfg.ANCHOR_RATIOS is not None else net.ratios
        fit = coverage(boxes, sizes, scales, ratios, stride)
        why = f"cover {_cover_txt(fit)} at their centres' cells (IoU >= 0.5); {shipped_txt}"
        out = []
        for key, value in (("ANCHOR_SCALES", scales), ("ANCHOR_RATIOS", ratios)):
            out.append(Setting(key, list(value), why, user.get(key, "derived")))
        return out, _uncovered_notes(summary, fit, stride)
    fit = fit_anchors(boxes, sizes, stride)
    why_scales = (
        f"{fit.num_anchors} anchors per position ({_px(fit.scales)}) cover {_cover_txt(fit)} at their "
        f"centres' cells (IoU >= 0.5; the fewest anchors that cover as many); {shipped_txt}"
    )
    why_ratios = (
        f"upstream's h/w ratios{' widened' if len(fit.ratios) > 3 else ''}; box aspect ratios "
        f"{summary.aspect_ratios.min():.2f}-{summary.aspect_ratios.max():.2f}"
    )
    settings = [
        Setting("ANCHOR_SCALES", [_num(s) for s in fit.scales], why_scales),
        Setting("ANCHOR_RATIOS", [_num(r) for r in fit.ratios], why_ratios),
    ]
    return settings, _uncovered_notes(summary, fit, stride)


def _uncovered_notes(summary: DatasetSummary, fit: AnchorFit, stride: int) -> list[str]:
    if fit.covered == fit.total:
        return []
    best = best_anchor_iou(summary.boxes, summary.image_sizes, fit.scales, fit.ratios, stride)
    small = summary.sizes[best < 0.5]
    return [(
        f"{fit.total - fit.covered} boxes (sizes {small.min():.0f}-{small.max():.0f} px, median "
        f"{np.median(small):.0f} px at the training scale) have no anchor of IoU >= 0.5 at their cell: "
        f"at stride {stride} a square box needs about {round(2.5 * stride)} px for that wherever its centre "
        "lies; a larger TRAIN.SCALES enlarges them"
    )]


def _min_size_note(summary: DatasetSummary, cfg: Any) -> list[str]:
    """Boxes smaller than TRAIN.RPN_MIN_SIZE (original pixels): their proposals are dropped."""
    min_size = float(cfg.TRAIN.RPN_MIN_SIZE)
    if summary.boxes.size == 0 or min_size <= 0:
        return []
    w = (summary.boxes[:, 2] - summary.boxes[:, 0] + 1) / summary.box_scales
    h = (summary.boxes[:, 3] - summary.boxes[:, 1] + 1) / summary.box_scales
    n_scales = max(1, len(summary.scales))
    n = int(np.sum(np.minimum(w, h) < min_size)) // n_scales
    if n == 0:
        return []
    return [(
        f"{n} boxes have a side under TRAIN.RPN_MIN_SIZE / TEST.RPN_MIN_SIZE ({min_size:g} px in the original "
        "image), below which the proposal layer drops proposals; lower both (--set) to propose boxes that small"
    )]


def _schedule_settings(iters: int, solver_stepsize: int | None, cfg: Any, user: dict[str, str]) -> list[Setting]:
    sched = derive_schedule(iters)
    out = []
    if solver_stepsize is None:
        pass  # not a "step" solver: nothing to fit (the caller notes it)
    elif "TRAIN.SOLVER_STEPSIZE" in user:
        out.append(Setting("TRAIN.SOLVER_STEPSIZE", int(cfg.TRAIN.SOLVER_STEPSIZE), "the learning-rate step", user["TRAIN.SOLVER_STEPSIZE"]))
    else:
        drops = list(range(solver_stepsize, iters, solver_stepsize)) if solver_stepsize > 0 else []
        own = ", ".join(str(d) for d in drops[:4]) + (", ..." if len(drops) > 4 else "")
        why = (
            f"the learning rate drops x gamma once, at {sched.stepsize} of ITERS {iters} (5/7 of the run, as "
            f"upstream's 50000 of 70000); the solver's own stepsize {solver_stepsize} would drop it "
            + (f"at {own}" if drops else "not at all within the run")
        )
        out.append(Setting("TRAIN.SOLVER_STEPSIZE", sched.stepsize, why))
    if "TRAIN.SNAPSHOT_ITERS" in user:
        out.append(Setting("TRAIN.SNAPSHOT_ITERS", int(cfg.TRAIN.SNAPSHOT_ITERS), "the snapshot interval",
                           user["TRAIN.SNAPSHOT_ITERS"]))
    else:
        out.append(Setting(
            "TRAIN.SNAPSHOT_ITERS", sched.snapshot_iters,
            f"a snapshot every 1/7 of the run, rounded down (upstream's 10000 of 70000; "
            f"the config's {cfg.TRAIN.SNAPSHOT_ITERS})",
        ))
    return out


def derive_defaults(
    summary: DatasetSummary,
    iters: int,
    cfg: Any,
    net: NetAnchors | None = None,
    solver_stepsize: int | None = None,
    user: dict[str, str] | None = None,
) -> DerivedDefaults:
    """The settings for training on ``summary``'s set for ``iters`` iterations.

    ``cfg`` is the run's config (the user's values of the keys in ``user``, a
    ``{key: where}`` from :func:`user_set_keys`); ``net`` the training net's anchors;
    ``solver_stepsize`` the solver's ``stepsize`` (None when its policy is not "step").
    """
    user = dict(user or {})
    net = net or NetAnchors()
    anchor_keys = all(k in cfg for k in ANCHOR_KEYS)
    if summary.boxes.size == 0:
        raise InputError(f"{summary.name}: the set has no boxes (of its classes) to derive anchors from")
    settings, notes = _anchor_settings(summary, net, cfg, user, anchor_keys)
    settings += _schedule_settings(int(iters), solver_stepsize, cfg, user)
    if solver_stepsize is None:
        notes.append("the solver's lr_policy is not \"step\": its learning-rate schedule is kept")
    notes += _min_size_note(summary, cfg)
    return DerivedDefaults(summary=summary, settings=settings, notes=notes)


def write_defaults(path: str, derived: DerivedDefaults) -> None:
    """The derived settings as a config yml (``--cfg``), their reasons as comments."""
    import yaml

    head = [f"# Settings derived from {derived.summary.name} by tools/dataset_defaults.py; --set overrides any."]
    head += [f"# {s.key}: {s.reason}" for s in derived.settings if s.derived]
    body = yaml.safe_dump(derived.overrides(), default_flow_style=None, sort_keys=True)
    with atomic_write(path, "w") as f:
        f.write("\n".join(head) + "\n" + body)
