"""4-step alternating optimisation (upstream's ``tools/train_faster_rcnn_alt_opt.py``).

| # | step               | solver                          | init weights              | iters (VOC) |
|---|--------------------|---------------------------------|---------------------------|-------------|
| 1 | stage-1 RPN        | stage1_rpn_solver60k80k         | ImageNet (--weights)      | 80000       |
| - | stage-1 proposals  | rpn_test                        | step-1 final              | -           |
| 2 | stage-1 Fast R-CNN | stage1_fast_rcnn_solver30k40k   | ImageNet (--weights)      | 40000       |
| 3 | stage-2 RPN        | stage2_rpn_solver60k80k         | step-2 final              | 80000       |
| - | stage-2 proposals  | rpn_test                        | step-3 final              | -           |
| 4 | stage-2 Fast R-CNN | stage2_fast_rcnn_solver30k40k   | step-3 final              | 40000       |

Each step gets its own copy of the run's config with the step's overrides, re-seeds the
RNGs, and hands its model path explicitly to the next. Upstream ran each step in a child
process to free GPU memory; here the steps run one after the other in this process and
drop their nets before the next starts. A finished step is found by its final snapshot
(or proposal file) and skipped when the command is rerun; an unfinished step resumes from
its last snapshot. Intermediate snapshots of each step are deleted, as upstream.

Under torchrun every step runs on all ranks: the training steps data parallel
(:mod:`frcnn.training.data_parallel`), the proposal steps with the images shared out and
rank 0 writing the file; rank 0 alone deletes and copies snapshots.

``stop_after`` (the paper's ablations, Table 2): 1 trains the stage-1 RPN alone (from
ImageNet, "RPN trained alone": test its proposals with ``tools/rpn_generate.py`` on a detector
trained on other proposals); 2 stops after step 2, the "unshared" system: the stage-1 RPN and
the stage-1 Fast R-CNN, two nets with their own conv layers (test with
``tools/rpn_generate.py --test_counts`` and ``tools/test_net.py --proposals``; the script
``faster_rcnn_alt_opt.sh`` with ``STOP_AFTER=2`` does both). The models of the stopped run are
copied to names of their own beside the snapshots (:func:`final_model_names`).

The proposal steps use upstream's counts (-1 / 2000) unless ``generation_keys`` names
``TEST.RPN_PRE_NMS_TOP_N`` / ``TEST.RPN_POST_NMS_TOP_N`` (the keys of the command line's
``--set``, :func:`frcnn.rpn.generate.set_keys`); other counts change the proposal file names.
"""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Iterable, Sequence
from typing import Any

from frcnn.caffe.prototxt import parse_file
from frcnn.config import copy_config, get_output_dir
from frcnn.datasets.classes_file import write_classes_file
from frcnn.errors import InputError
from frcnn.training import snapshot as snap
from frcnn.training.train import get_roidb, set_random_seeds, train_net
from frcnn.utils import distributed
from frcnn.utils.io import atomic_write

#: upstream's hard-coded iterations of the four training steps
STAGE_ITERS = (80000, 40000, 80000, 40000)

SOLVERS = (
    "stage1_rpn_solver60k80k",
    "stage1_fast_rcnn_solver30k40k",
    "stage2_rpn_solver60k80k",
    "stage2_fast_rcnn_solver30k40k",
)


def model_file(models_dir: str, stem: str) -> str:
    """``<stem>.prototxt`` (ours) or ``<stem>.pt`` (upstream's name) in ``models_dir``."""
    for ext in (".prototxt", ".pt"):
        path = os.path.join(models_dir, stem + ext)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{models_dir}: no {stem}.prototxt (or {stem}.pt)")


def rpn_stage_config(cfg: Any, infix: str) -> Any:
    """Steps 1 and 3: train the RPN on gt boxes, TRAIN.RPN_STAGE_IMS_PER_BATCH images per batch
    (upstream: one), no box regression head."""
    cfg = copy_config(cfg)
    cfg.TRAIN.HAS_RPN = True
    cfg.TRAIN.BBOX_REG = False  # applies only to Fast R-CNN bbox regression
    cfg.TRAIN.PROPOSAL_METHOD = "gt"
    cfg.TRAIN.IMS_PER_BATCH = int(cfg.TRAIN.RPN_STAGE_IMS_PER_BATCH)
    cfg.TRAIN.SNAPSHOT_INFIX = infix
    return cfg


def fast_rcnn_stage_config(cfg: Any, infix: str) -> Any:
    """Steps 2 and 4: train Fast R-CNN on the RPN's proposals, two images per batch."""
    cfg = copy_config(cfg)
    cfg.TRAIN.HAS_RPN = False  # not generating proposals on-the-fly
    cfg.TRAIN.PROPOSAL_METHOD = "rpn"  # use pre-computed RPN proposals instead
    cfg.TRAIN.IMS_PER_BATCH = 2
    cfg.TRAIN.SNAPSHOT_INFIX = infix
    return cfg


def final_snapshot_path(solver: str, cfg: Any, imdb_name: str, max_iters: int) -> str:
    """Where a step's last snapshot is written (used to skip a finished step)."""
    prefix = parse_file(solver).get_str("snapshot_prefix", "")
    name = snap.snapshot_basename(prefix, cfg.TRAIN.SNAPSHOT_INFIX, max_iters) + snap.CAFFEMODEL
    return os.path.join(get_output_dir(cfg, imdb_name), name)


def train_step(
    imdb_name: str, init_model: str | None, solver: str, max_iters: int, cfg: Any, rpn_file: str | None = None
) -> str:
    """One training step (RPN or Fast R-CNN, by ``cfg``); returns the final model path."""
    final = final_snapshot_path(solver, cfg, imdb_name, max_iters)
    if distributed.broadcast_json(os.path.exists(final)):  # (rank 0's answer, on every rank)
        print(f"Step already finished: {final}")
        return final
    set_random_seeds(cfg.RNG_SEED)
    roidb, imdb = get_roidb(imdb_name, cfg, rpn_file=rpn_file)
    output_dir = get_output_dir(cfg, imdb.name)
    print(f"Output will be saved to `{output_dir}`")
    if distributed.current().is_main:  # as tools/train_net.py: demo.py names the detections from it
        print(f"Wrote the class names to {write_classes_file(output_dir, imdb.classes, imdb.name)}")
    model_paths = train_net(solver, roidb, output_dir, cfg, pretrained_model=init_model, max_iters=max_iters)
    if distributed.current().is_main:
        for path in model_paths[:-1]:  # cleanup all but the final model, as upstream
            snap.remove_snapshot(path)
    gc.collect()
    return model_paths[-1]


def generate_step(
    imdb_name: str, rpn_model_path: str, cfg: Any, rpn_test_prototxt: str, generation_keys: Iterable[str] = ()
) -> str:
    """Proposals of an RPN model on the un-flipped imdb; returns the ``.npz`` path."""
    from frcnn.caffe import TEST, Net
    from frcnn.config import device_from_config
    from frcnn.datasets.factory import get_imdb
    from frcnn.rpn.generate import (
        counts_suffix,
        imdb_proposals,
        proposal_generation_config,
        save_imdb_proposals,
    )

    cfg = proposal_generation_config(cfg, keep=generation_keys)
    imdb = get_imdb(imdb_name, cfg)
    rpn_net_name = os.path.splitext(os.path.basename(rpn_model_path))[0]
    path = os.path.join(get_output_dir(cfg, imdb.name), f"{rpn_net_name}_proposals{counts_suffix(cfg)}.npz")
    if distributed.broadcast_json(os.path.exists(path)):
        print(f"Proposals already generated: {path}")
        return path
    set_random_seeds(cfg.RNG_SEED)
    net = Net(rpn_test_prototxt, rpn_model_path, TEST, cfg=cfg).to(device_from_config(cfg))
    print(f"Generating proposals with {rpn_model_path} on {imdb.name}")
    boxes = imdb_proposals(net, imdb, cfg)  # (under torchrun: the ranks share the images)
    if boxes is not None:  # rank 0 (or a single process)
        save_imdb_proposals(path, boxes, imdb)
        print(f"Wrote RPN proposals to {path}")
    distributed.barrier()  # the next step reads the file on every rank
    del net
    gc.collect()
    return path


#: what each step trains (the names of the copies a run stopped after that step leaves)
STEP_MODELS = ("rpn_stage1", "fast_rcnn_stage1", "rpn_stage2", "faster_rcnn")


def final_model_names(net_name: str, stop_after: int = 4) -> list[str]:
    """The final-model files of a run stopped after ``stop_after``: 4 gives
    ``<net>_faster_rcnn_final.caffemodel`` (upstream's), 1 ``<net>_rpn_stage1_final``,
    2 ``<net>_fast_rcnn_stage1_final`` and ``<net>_rpn_stage1_final`` (the unshared pair: the
    detector first), 3 ``<net>_rpn_stage2_final``."""
    steps = [2, 1] if stop_after == 2 else [stop_after]
    return [f"{net_name}_{STEP_MODELS[k - 1]}_final.caffemodel" for k in steps]


def _copy_model(src: str, dst: str) -> str:
    with open(src, "rb") as f, atomic_write(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return dst


def _banner(text: str) -> None:
    print("~" * 70 + f"\n{text}\n" + "~" * 70, flush=True)


def train_alt_opt(
    net_name: str,
    imdb_name: str,
    cfg: Any,
    models_dir: str,
    pretrained_model: str | None = None,
    max_iters: Sequence[int] = STAGE_ITERS,
    stop_after: int = 4,
    generation_keys: Iterable[str] = (),
) -> str:
    """Run the four steps (or the first ``stop_after``); return the path of the final model,
    ``<net_name>_faster_rcnn_final.caffemodel`` after all four (see :func:`final_model_names`).

    ``models_dir`` is the folder holding the stage prototxts and solvers (normally
    ``<MODELS_DIR>/<net_name>/faster_rcnn_alt_opt``).
    """
    if len(max_iters) != 4 or any(int(i) <= 0 for i in max_iters):
        raise ValueError(f"max_iters: expected 4 positive iteration counts, got {list(max_iters)}")
    if stop_after not in (1, 2, 3, 4):
        raise InputError(f"stop_after: expected a step 1, 2, 3 or 4, got {stop_after!r}")
    solvers = [model_file(models_dir, s) for s in SOLVERS[:stop_after]]
    rpn_test = model_file(models_dir, "rpn_test")
    models: list[str] = []

    init = "init from ImageNet model" if pretrained_model else "from scratch (random initialisation)"
    _banner(f"Stage 1 RPN, {init}")
    rpn1 = train_step(imdb_name, pretrained_model, solvers[0], max_iters[0], rpn_stage_config(cfg, "stage1"))
    models.append(rpn1)
    if stop_after >= 2:
        _banner("Stage 1 RPN, generate proposals")
        proposals1 = generate_step(imdb_name, rpn1, cfg, rpn_test, generation_keys)
        _banner(f"Stage 1 Fast R-CNN using RPN proposals, {init}")
        frcn1 = train_step(
            imdb_name, pretrained_model, solvers[1], max_iters[1], fast_rcnn_stage_config(cfg, "stage1"), proposals1
        )
        models.append(frcn1)
    if stop_after >= 3:
        _banner("Stage 2 RPN, init from stage 1 Fast R-CNN model")
        rpn2 = train_step(imdb_name, frcn1, solvers[2], max_iters[2], rpn_stage_config(cfg, "stage2"))
        models.append(rpn2)
    if stop_after >= 4:
        _banner("Stage 2 RPN, generate proposals")
        proposals2 = generate_step(imdb_name, rpn2, cfg, rpn_test, generation_keys)
        _banner("Stage 2 Fast R-CNN, init from stage 2 RPN R-CNN model")
        frcn2 = train_step(
            imdb_name, rpn2, solvers[3], max_iters[3], fast_rcnn_stage_config(cfg, "stage2"), proposals2
        )
        models.append(frcn2)

    folder = os.path.dirname(models[-1])
    names = final_model_names(net_name, stop_after)
    sources = [models[1], models[0]] if stop_after == 2 else [models[-1]]
    finals = [os.path.join(folder, name) for name in names]
    if distributed.current().is_main:
        for src, dst in zip(sources, finals):
            _copy_model(src, dst)
    distributed.barrier()
    if stop_after == 2:
        print(f"Stage-1 RPN (unshared): {finals[1]}")
    elif stop_after < 4:
        print(f"Stopped after step {stop_after} (--stop_after {stop_after})")
    print(f"Final model: {finals[0]}")
    return finals[0]
