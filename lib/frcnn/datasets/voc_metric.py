"""Which AP a VOC-format evaluation computes, chosen by ``TEST.VOC_METRIC``.

Upstream's rule, kept as ``"auto"``: the VOC07 11-point metric for PASCAL VOC 2007
(``use_07_metric = year < 2010``), the area under the precision-recall curve (VOC2010+)
for every other set. ``"11point"`` or ``"area"`` chooses one for any VOC-format set. The
two differ on the same detections (the 11-point average samples the precision envelope at
recall 0, 0.1, ..., 1), so a number is quoted with its metric's name (:func:`metric_name`).
"""

from __future__ import annotations

from typing import Any

from frcnn.config import ConfigError

VOC_METRICS = ("auto", "11point", "area")
_AUTO = "_voc_metric_auto"  # an imdb's own (upstream's) choice, kept for "auto"


def metric_name(use_07_metric: bool) -> str:
    """The metric's name as the evaluation prints it beside ``Mean AP``."""
    return "VOC07 11-point metric" if use_07_metric else "area under the precision-recall curve"


def check_voc_metric(setting: str) -> str:
    """``setting`` when it is one of :data:`VOC_METRICS`, else ConfigError naming the key."""
    if setting not in VOC_METRICS:
        raise ConfigError(
            f"TEST.VOC_METRIC: expected one of {', '.join(repr(m) for m in VOC_METRICS)}, got {setting!r}"
        )
    return setting


def apply_voc_metric(imdb: Any, setting: str) -> str | None:
    """Make ``imdb``'s evaluation use the metric ``setting``; return the metric's name, or None
    for a set that is not evaluated the VOC way (COCO: COCOeval), with a note when ``setting``
    asked for a metric there."""
    check_voc_metric(setting)
    config = getattr(imdb, "config", None)
    if not isinstance(config, dict) or "use_07_metric" not in config:
        if setting != "auto":
            print(f"Note: TEST.VOC_METRIC {setting} does not apply to {imdb.name} (not evaluated the VOC way)")
        return None
    if not hasattr(imdb, _AUTO):
        setattr(imdb, _AUTO, bool(config["use_07_metric"]))
    use_07 = getattr(imdb, _AUTO) if setting == "auto" else setting == "11point"
    config["use_07_metric"] = bool(use_07)
    return metric_name(use_07)
