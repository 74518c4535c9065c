"""Snapshots of a training run: names, un-normalised ``bbox_pred``, and the resume state.

A snapshot at iteration N is three files in the run's output folder:

- ``<prefix>[_<infix>]_iter_<N>.caffemodel``: the weights as upstream saved them, with
  ``bbox_pred`` un-normalised (``W * std``, ``b * std + mean``) so that a test net applies
  its deltas directly;
- ``<...>_iter_<N>.solverstate``: the engine's solver state (iteration, momentum history,
  RNG states, the data layer's order state);
- ``<...>_iter_<N>.trainstate.npz``: what the engine does not hold but an exact resume
  needs: the training-form (normalised) ``bbox_pred`` and a fingerprint of the run's
  settings.

A snapshot counts as complete (and can be resumed from) only when all three exist, and it
is all three or none: :func:`staged_snapshot` writes them into a hidden staging folder
``.<prefix>[_<infix>]_iter_<N>.<random>.tmp/`` beside them and then renames them out, the
caffemodel last, so that :func:`find_snapshots` and :func:`resumable_snapshots` (which start
from the caffemodel) only ever see complete sets. A write that fails (a full disk: the error
names the file and says ENOSPC) publishes nothing; what a killed run leaves (the staging
folder, a state file whose caffemodel was not renamed yet) is removed by
:func:`remove_stale_files` when the next run starts.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from frcnn.utils.io import atomic_write, fsync_dir, temporary_dir, temporary_target

CAFFEMODEL = ".caffemodel"
SOLVERSTATE = ".solverstate"
TRAINSTATE = ".trainstate.npz"


#: the order in which a snapshot's files are published; the caffemodel, which readers look
#: for first, comes last
PUBLISH_ORDER = (SOLVERSTATE, TRAINSTATE, CAFFEMODEL)


def run_stem(prefix: str, infix: str) -> str:
    """``<prefix>[_<infix>]``: what the names of one run's snapshots (and its lock) start with."""
    return f"{prefix}_{infix}" if infix else prefix


def snapshot_basename(prefix: str, infix: str, iteration: int) -> str:
    """Upstream's name without extension: ``<prefix>[_<infix>]_iter_<N>``."""
    return f"{run_stem(prefix, infix)}_iter_{int(iteration)}"


def _basename_pattern(prefix: str, infix: str) -> str:
    """A regular expression for ``<prefix>[_<infix>]_iter_<N>`` with N in group 1."""
    return re.escape(os.path.basename(run_stem(prefix, infix))) + r"_iter_(\d+)"


def find_snapshots(output_dir: str, prefix: str, infix: str) -> list[tuple[int, str]]:
    """``(iteration, caffemodel path)`` of every snapshot of this run, by iteration."""
    stem = snapshot_basename(prefix, infix, 0)[: -len("0")]  # '<prefix>[_<infix>]_iter_'
    pattern = re.compile(_basename_pattern(prefix, infix) + re.escape(CAFFEMODEL))
    found = []
    for path in glob.glob(os.path.join(output_dir, glob.escape(stem) + "*" + CAFFEMODEL)):
        m = pattern.fullmatch(os.path.basename(path))
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


# ------------------------------------------------------------------ writing all three or none


class SnapshotDiskFull(OSError):
    """The disk filled up while a snapshot was written (errno ENOSPC or EDQUOT); nothing of
    that snapshot was kept. The message starts with the file that did not fit."""

    def __str__(self) -> str:
        return str(self.strerror)


def _disk_full_errno(exc: BaseException) -> int | None:
    """ENOSPC/EDQUOT if ``exc`` or an exception it was raised from says the disk is full
    (torch's writer reports it as 'unexpected pos ...', with the OSError as its context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None


def _disk_full(exc: BaseException, path: str, output_dir: str) -> SnapshotDiskFull:
    code = _disk_full_errno(exc) or errno.ENOSPC
    return SnapshotDiskFull(
        code,
        f"{path}: no space left on device ({errno.errorcode[code]}: the disk is full) while writing "
        f"this snapshot; none of its files was kept. Free space in {output_dir} and run the same "
        "command again: it resumes from the newest complete snapshot",
    )


@contextlib.contextmanager
def staged_snapshot(output_dir: str, basename: str) -> Iterator[Callable[[str], str]]:
    """Write one snapshot as all of its files or none.

    Yields ``path_for(ext)``: where to write the file ``<basename><ext>`` (one of
    :data:`PUBLISH_ORDER`). When the block ends, every file is renamed into ``output_dir`` in
    :data:`PUBLISH_ORDER`; if the block raises, none is, and the staging folder is removed.
    A full disk raises :class:`SnapshotDiskFull` naming the file that did not fit.
    """
    writing = {"file": os.path.join(output_dir, basename)}
    try:
        stage = temporary_dir(output_dir, basename)
    except OSError as e:
        if _disk_full_errno(e) is None:
            raise
        raise _disk_full(e, writing["file"], output_dir) from e

    def path_for(ext: str) -> str:
        if ext not in PUBLISH_ORDER:
            raise ValueError(f"staged_snapshot: unknown snapshot file extension '{ext}'")
        writing["file"] = os.path.join(output_dir, basename + ext)
        return os.path.join(stage, basename + ext)

    published: list[str] = []
    try:
        yield path_for
        missing = [ext for ext in PUBLISH_ORDER if not os.path.exists(os.path.join(stage, basename + ext))]
        if missing:
            raise RuntimeError(
                f"{os.path.join(output_dir, basename)}: the snapshot lacks {', '.join(missing)}"
            )
        for ext in PUBLISH_ORDER:
            writing["file"] = os.path.join(output_dir, basename + ext)
            os.replace(os.path.join(stage, basename + ext), writing["file"])
            published.append(writing["file"])
        fsync_dir(output_dir)
    except BaseException as e:
        for path in published:  # a rename failed after the first: take the set back
            with contextlib.suppress(OSError):
                os.remove(path)
        shutil.rmtree(stage, ignore_errors=True)
        if _disk_full_errno(e) is None:
            raise
        raise _disk_full(e, writing["file"], output_dir) from e
    os.rmdir(stage)


def remove_stale_files(output_dir: str, prefix: str, infix: str) -> list[str]:
    """Remove what a killed run of these snapshots left in ``output_dir``; return the names.

    That is: staging folders and atomic-write temporaries whose target is one of this run's
    snapshot names (``.<prefix>[_<infix>]_iter_<N>[<ext>].<random>.tmp``), and state files
    whose caffemodel is missing (the run was killed between the renames of
    :func:`staged_snapshot`, so the set was never complete). Other runs' files, and anything
    not named like ours, are left alone. Call it while holding the run's lock.
    """
    folder = os.path.join(output_dir, os.path.dirname(run_stem(prefix, infix)))  # a prefix may hold a path
    if not os.path.isdir(folder):
        return []
    exts = "|".join(re.escape(e) for e in PUBLISH_ORDER)
    ours = re.compile(_basename_pattern(prefix, infix) + f"({exts})?")
    state = re.compile(_basename_pattern(prefix, infix) + f"({re.escape(SOLVERSTATE)}|{re.escape(TRAINSTATE)})")
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        target = temporary_target(name)
        if target is not None and ours.fullmatch(target):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            removed.append(name)
            continue
        m = state.fullmatch(name)
        if m and not os.path.exists(path[: -len(m.group(2))] + CAFFEMODEL):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            removed.append(name)
    return removed
