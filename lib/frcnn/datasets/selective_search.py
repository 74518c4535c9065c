"""Selective Search computed here, with OpenCV's ximgproc (opencv-contrib-python).

Upstream read the boxes of the MATLAB implementation from ``selective_search_data/<imdb>.mat``
(downloaded). ``tools/selective_search.py --imdb NAME`` computes them instead with OpenCV's
``cv2.ximgproc.segmentation`` selective search in its "fast" mode (the paper's setting; HSV and
Lab colour spaces, two segmentation thresholds, two similarity strategies), on the image at its
own size, and keeps the first ``top_n`` boxes of OpenCV's ranking (2000, the paper's count).
OpenCV's ranking draws random numbers from the C library's ``rand()`` (not OpenCV's own RNG,
which ``cv2.setRNGSeed`` seeds): ``srand(seed)`` is called before each image, so a rerun, or a
run in several processes, gives the same boxes (with one OpenCV thread, the default).

The file, :func:`cache_file`, is ``<proposals_dir>/<imdb>_opencv_ss_<key>.npz``: the proposal
format of :mod:`frcnn.datasets.proposals` (0-based ``x1, y1, x2, y2``), keyed like the roidb
caches by a hash of the image set's images (path, size, modification time), so edited or
other images never meet stale boxes. The imdb's ``selective_search`` method reads it when
there is no upstream ``.mat`` (or ``<imdb>.npz``) file. Besides the boxes it holds each image's
run time, ``seconds`` (wall clock) and ``cpu_seconds`` (the process's CPU time; one OpenCV
thread per process by default), and ``info``, a JSON string with the settings and the mean
seconds per image (Table 5's SS row): :func:`read_timing`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from frcnn.datasets import roidb_io
from frcnn.errors import UserError

MODES = ("fast", "quality", "single")
CONTRIB_HINT = (
    "selective search needs OpenCV's contrib module ximgproc (cv2.ximgproc), which the opencv-python "
    "package lacks; opencv-contrib-python provides the same cv2 with it, replacing opencv-python: "
    "pip uninstall -y opencv-python && pip install opencv-contrib-python"
)


def have_ximgproc() -> bool:
    """True when this cv2 has the selective search of ximgproc."""
    seg = getattr(getattr(cv2, "ximgproc", None), "segmentation", None)
    return seg is not None and hasattr(seg, "createSelectiveSearchSegmentation")


def require_ximgproc() -> None:
    """Raise a UserError saying what to install when ximgproc is missing."""
    if not have_ximgproc():
        raise UserError(f"cv2 {cv2.__version__} has no ximgproc: {CONTRIB_HINT}")


def _seed_c_rand(seed: int) -> None:
    """``srand(seed)`` of the C library the process uses (where ctypes can reach it)."""
    import ctypes

    try:
        ctypes.CDLL(None).srand(ctypes.c_uint(int(seed)))
    except (OSError, AttributeError, TypeError):  # no dlopen(NULL) (Windows): the ranking is not seeded
        pass


def selective_search_boxes(im: np.ndarray, mode: str = "fast", top_n: int = 2000, seed: int = 0) -> np.ndarray:
    """Boxes (R, 4) float32, 0-based inclusive ``x1, y1, x2, y2``, of a BGR uint8 image, in
    OpenCV's ranking; the first ``top_n`` when ``top_n > 0``."""
    require_ximgproc()
    if mode not in MODES:
        raise ValueError(f"selective_search_boxes: mode must be one of {', '.join(MODES)}, got {mode!r}")
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(im)
    {"fast": ss.switchToSelectiveSearchFast, "quality": ss.switchToSelectiveSearchQuality,
     "single": ss.switchToSingleStrategy}[mode]()
    _seed_c_rand(seed)
    rects = np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)  # x, y, w, h
    if top_n > 0:
        rects = rects[:top_n]
    boxes = np.hstack((rects[:, 0:2], rects[:, 0:2] + rects[:, 2:4] - 1))
    return boxes.astype(np.float32)


def images_key(image_paths: Sequence[str]) -> str:
    """The cache key of a list of images (their paths, sizes and modification times, in order)."""
    return roidb_io.fingerprint(["opencv_selective_search", len(image_paths)], image_paths)


def cache_file(proposals_dir: str, imdb_name: str, image_paths: Sequence[str]) -> str:
    """``<proposals_dir>/<imdb_name>_opencv_ss_<key>.npz`` (module docstring)."""
    return os.path.join(proposals_dir, f"{imdb_name}_opencv_ss_{images_key(image_paths)}.npz")


def stale_files(path: str) -> list[str]:
    """Other keys' files of the same imdb beside ``path`` (older images)."""
    folder, name = os.path.split(path)
    stem = name[: name.rindex("_opencv_ss_") + len("_opencv_ss_")]
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder)
        if f.startswith(stem) and f.endswith(".npz") and f != name and len(f) == len(name)
    )


def image_job(job: tuple[str, str, int, int, int]) -> tuple[np.ndarray, float, float]:
    """Run on one image (a worker's unit): (boxes, wall seconds, CPU seconds). ``job``:
    (path, mode, top_n, seed, OpenCV threads)."""
    from frcnn.utils.blob import read_image

    path, mode, top_n, seed, threads = job
    cv2.setNumThreads(int(threads))
    im = read_image(path)
    t0, c0 = time.perf_counter(), time.process_time()
    boxes = selective_search_boxes(im, mode, top_n, seed)
    return boxes, time.perf_counter() - t0, time.process_time() - c0


def info_json(mode: str, top_n: int, threads: int, workers: int, seconds: np.ndarray, cpu: np.ndarray) -> str:
    """The ``info`` field of a file: settings and mean times."""
    return json.dumps({
        "method": "opencv_selective_search",
        "mode": mode,
        "top_n": top_n,
        "opencv": cv2.__version__,
        "opencv_threads": threads,
        "workers": workers,
        "images": len(seconds),
        "mean_seconds_per_image": float(np.mean(seconds)) if len(seconds) else 0.0,
        "mean_cpu_seconds_per_image": float(np.mean(cpu)) if len(cpu) else 0.0,
    }, sort_keys=True)


def read_timing(path: str) -> dict[str, Any]:
    """The ``info`` of a file written by ``tools/selective_search.py`` (settings, mean times),
    with the per-image ``seconds`` and ``cpu_seconds`` arrays."""
    from frcnn.datasets.proposals import load_proposal_extras
    from frcnn.errors import InputError

    extras = load_proposal_extras(path)
    if "info" not in extras:
        raise InputError(f"{path}: holds no selective-search timing (not written by tools/selective_search.py)")
    out = json.loads(str(extras["info"]))
    for k in ("seconds", "cpu_seconds"):
        if k in extras:
            out[k] = extras[k]
    return out
