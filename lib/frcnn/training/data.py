"""The roidb a training run uses (upstream's ``get_training_roidb`` / ``filter_roidb`` of
``train.py`` and ``get_roidb`` of the tools): load, flip, prepare and filter, with the
pieces of :mod:`frcnn.roi_data.roidb` and :mod:`frcnn.datasets.factory`."""

from __future__ import annotations

from typing import Any


def get_training_roidb(imdb: Any, cfg: Any) -> list[dict]:
    """Add flipped images when ``TRAIN.USE_FLIPPED``, then prepare the roidb for training."""
    from frcnn.roi_data.roidb import prepare_roidb

    if cfg.TRAIN.USE_FLIPPED:
        print("Appending horizontally-flipped training examples...")
        imdb.append_flipped_images()
        print("done")
    print("Preparing training data...")
    prepare_roidb(imdb)
    print("done")
    return imdb.roidb


def get_roidb(imdb_name: str, cfg: Any, rpn_file: str | None = None) -> tuple[list[dict], Any]:
    """The training roidb of ``imdb_name`` (``a+b`` joins sets) with ``TRAIN.PROPOSAL_METHOD``
    (and ``rpn_file``, the proposal ``.npz``, for the ``rpn`` method), cut to the first
    ``TRAIN.PROPOSAL_TOP_N`` proposals of each image when > 0; returns (roidb, imdb)."""
    from frcnn.datasets.factory import get_imdb

    imdb = get_imdb(imdb_name, cfg)
    print(f"Loaded dataset `{imdb.name}` for training")
    if rpn_file is not None:
        imdb.config["rpn_file"] = rpn_file
    imdb.set_proposal_method(cfg.TRAIN.PROPOSAL_METHOD)
    print(f"Set proposal method: {cfg.TRAIN.PROPOSAL_METHOD}")
    if cfg.TRAIN.PROPOSAL_TOP_N > 0:  # before flipping: the flipped copies inherit the cut
        from frcnn.datasets.proposals import keep_first_proposals

        keep_first_proposals(imdb.roidb, cfg.TRAIN.PROPOSAL_TOP_N)
        print(f"Kept the first {cfg.TRAIN.PROPOSAL_TOP_N} proposals of each image (TRAIN.PROPOSAL_TOP_N)")
    return get_training_roidb(imdb, cfg), imdb


def filter_roidb(roidb: list[dict], cfg: Any) -> list[dict]:
    """Drop entries with neither a foreground nor a background RoI (``TRAIN`` thresholds)."""
    from frcnn.roi_data.roidb import filter_roidb as _filter

    t = cfg.TRAIN
    return _filter(roidb, fg_thresh=t.FG_THRESH, bg_thresh_hi=t.BG_THRESH_HI, bg_thresh_lo=t.BG_THRESH_LO)
