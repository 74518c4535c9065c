"""Snapshots of a training run: names, un-normalised ``bbox_pred``, and the resume state.

A snapshot at iteration N is three files in the run's output folder, each written
atomically (temporary name, then rename):

- ``<prefix>[_<infix>]_iter_<N>.caffemodel``: the weights as upstream saved them, with
  ``bbox_pred`` un-normalised (``W * std``, ``b * std + mean``) so that a test net applies
  its deltas directly;
- ``<...>_iter_<N>.solverstate``: the engine's solver state (iteration, momentum history,
  RNG states, the data layer's order state);
- ``<...>_iter_<N>.trainstate.npz``: what the engine does not hold but an exact resume
  needs: the training-form (normalised) ``bbox_pred`` and a fingerprint of the run's
  settings.

A snapshot counts as complete (and can be resumed from) only when all three exist.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from frcnn.utils.io import atomic_write

CAFFEMODEL = ".caffemodel"
SOLVERSTATE = ".solverstate"
TRAINSTATE = ".trainstate.npz"


def snapshot_basename(prefix: str, infix: str, iteration: int) -> str:
    """Upstream's name without extension: ``<prefix>[_<infix>]_iter_<N>``."""
    infix_part = f"_{infix}" if infix else ""
    return f"{prefix}{infix_part}_iter_{int(iteration)}"


def find_snapshots(output_dir: str, prefix: str, infix: str) -> list[tuple[int, str]]:
    """``(iteration, caffemodel path)`` of every snapshot of this run, by iteration."""
    stem = snapshot_basename(prefix, infix, 0)[: -len("0")]  # '<prefix>[_<infix>]_iter_'
    pattern = re.compile(re.escape(os.path.basename(stem)) + r"(\d+)" + re.escape(CAFFEMODEL) + "$")
    found = []
    for path in glob.glob(os.path.join(output_dir, glob.escape(stem) + "*" + CAFFEMODEL)):
        m = pattern.match(os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def resumable_snapshots(output_dir: str, prefix: str, infix: str) -> list[tuple[int, str]]:
    """The subset of :func:`find_snapshots` that has its solver and train state too."""
    out = []
    for it, path in find_snapshots(output_dir, prefix, infix):
        base = path[: -len(CAFFEMODEL)]
        if os.path.exists(base + SOLVERSTATE) and os.path.exists(base + TRAINSTATE):
            out.append((it, path))
    return out


# ------------------------------------------------------------------ bbox_pred un-normalisation


def _per_output(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-output-unit vector to broadcast over a weight of shape ``(out, ...)``."""
    return v.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def unnormalize_bbox_pred(
    weight: torch.Tensor, bias: torch.Tensor, means: np.ndarray, stds: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W * std[:, None], b * std + mean)``: the layer then predicts un-normalised deltas.

    ``means`` and ``stds`` hold one value per output unit (4K of them, class-major, as the
    roidb's regression-target statistics are tiled). Returns new tensors; the inputs are
    unchanged.
    """
    means_t = torch.as_tensor(np.asarray(means, dtype=np.float64).ravel())
    stds_t = torch.as_tensor(np.asarray(stds, dtype=np.float64).ravel())
    n_out = weight.shape[0]
    if means_t.numel() != n_out or stds_t.numel() != n_out or bias.numel() != n_out:
        raise ValueError(
            f"bbox_pred: weight has {n_out} outputs, bias {bias.numel()}, but the regression "
            f"target statistics have {means_t.numel()} means and {stds_t.numel()} stds "
            "(num_classes of the net and of the dataset differ?)"
        )
    new_w = weight * _per_output(stds_t, weight)
    new_b = bias * stds_t.to(bias) + means_t.to(bias)
    return new_w, new_b


def normalize_bbox_pred(
    weight: torch.Tensor, bias: torch.Tensor, means: np.ndarray, stds: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`unnormalize_bbox_pred` (up to rounding)."""
    means_t = torch.as_tensor(np.asarray(means, dtype=np.float64).ravel())
    stds_t = torch.as_tensor(np.asarray(stds, dtype=np.float64).ravel())
    return weight / _per_output(stds_t, weight), (bias - means_t.to(bias)) / stds_t.to(bias)


@contextlib.contextmanager
def bbox_pred_unnormalized(net: Any, means: np.ndarray | None, stds: np.ndarray | None) -> Iterator:
    """Within the block, ``net``'s ``bbox_pred`` holds un-normalised weights; afterwards the
    exact original values are put back (copies, not a division, so training is unchanged).
    With ``means``/``stds`` None, or no ``bbox_pred`` layer, nothing changes."""
    if means is None or stds is None or "bbox_pred" not in net.params:
        yield
        return
    w, b = net.params["bbox_pred"][0].data, net.params["bbox_pred"][1].data
    orig_w, orig_b = w.detach().clone(), b.detach().clone()
    new_w, new_b = unnormalize_bbox_pred(orig_w, orig_b, means, stds)
    with torch.no_grad():
        w.copy_(new_w)
        b.copy_(new_b)
    try:
        yield
    finally:
        with torch.no_grad():
            w.copy_(orig_w)
            b.copy_(orig_b)


# ------------------------------------------------------------------ resume state


def save_train_state(path: str, arrays: dict[str, Any]) -> None:
    """Write a flat dict of arrays/numbers as ``.npz`` atomically (no pickled objects)."""
    clean = {}
    for k, v in arrays.items():
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.dtype == object:
            raise TypeError(f"{path}: train state entry '{k}' is not a plain array ({type(v).__name__})")
        clean[k] = a
    with atomic_write(path, "wb") as f:
        np.savez(f, **clean)


def load_train_state(path: str) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_train_state`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the training state: {e}") from None


def remove_snapshot(caffemodel_path: str, keep_model: bool = False) -> None:
    """Delete a snapshot's state files (and its caffemodel unless ``keep_model``)."""
    base = caffemodel_path.removesuffix(CAFFEMODEL)
    suffixes = [SOLVERSTATE, TRAINSTATE] + ([] if keep_model else [CAFFEMODEL])
    for suffix in suffixes:
        with contextlib.suppress(FileNotFoundError):
            os.remove(base + suffix)


class RunLock:
    """``<output_dir>/<prefix>[_<infix>].lock`` while a run trains there: a second run of the same
    command (which would resume from, and then race with, the first one's snapshots) is refused.
    A lock whose process is gone (a killed run) is taken over."""

    def __init__(self, output_dir: str, prefix: str, infix: str) -> None:
        stem = snapshot_basename(prefix, infix, 0)[: -len("_iter_0")]
        self.path = os.path.join(output_dir, stem + ".lock")

    def _holder(self) -> int | None:
        try:
            with open(self.path) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def __enter__(self) -> RunLock:  # noqa: PYI034 (py3.9: no typing.Self)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and holder != os.getpid():
                    raise RuntimeError(
                        f"{self.path}: another training run (pid {holder}) is writing snapshots to this "
                        "folder; wait for it, stop it, or use another EXP_DIR"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return self
        raise RuntimeError(f"{self.path}: could not take the run lock")

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

