"""What the ranks compare at start-up, and how a difference is named."""

import numpy as np

from frcnn.config import get_default_config
from frcnn.utils.rank_agreement import (
    check_ranks_agree,
    config_items,
    differences,
    file_digest,
    file_items,
    roidb_digest,
)


def test_config_items_skip_what_may_differ_per_rank():
    a, b = get_default_config(), get_default_config()
    b.GPU_ID, b.DATA_DIR, b.ROOT_DIR = 3, "/elsewhere/data", "/elsewhere"
    assert config_items(a) == config_items(b)
    b.TRAIN.SCALES = (500,)
    lines = differences([config_items(a), config_items(b)])
    assert lines == ["config TRAIN.SCALES: rank 1 has [500], rank 0 [600]"]


def test_differences_name_every_rank_and_missing_items():
    base = {"solver file": "sha256 aa", "training roidb": "10 images, sha256 x"}
    other = {"solver file": "sha256 bb", "training roidb": "10 images, sha256 x"}
    lines = differences([base, dict(base), other, other])
    assert lines == ["solver file: rank 2 has sha256 bb, rank 0 sha256 aa (also rank 3)"]
    assert differences([base, {"solver file": "sha256 aa"}]) == [
        "training roidb: rank 1 has (none), rank 0 10 images, sha256 x"]
    check_ranks_agree(base, "training run")  # a single process agrees with itself


def test_file_and_roidb_digests(tmp_path):
    p = tmp_path / "solver.prototxt"
    p.write_text("base_lr: 0.001\n")
    d = file_digest(str(p))
    assert d.startswith("sha256 ") and file_items({"solver file": str(p)}) == {"solver file": f"{d} (solver.prototxt)"}
    p.write_text("base_lr: 0.01\n")
    assert file_digest(str(p)) != d
    assert file_digest(str(tmp_path / "none")).startswith("unreadable")
    roidb = [{"image": "/a/000001.jpg", "width": 10, "height": 8, "flipped": False,
              "boxes": np.array([[0, 0, 4, 4]], np.uint16), "gt_classes": np.array([1], np.int32)}]
    moved = [dict(roidb[0], image="/b/000001.jpg")]
    assert roidb_digest(roidb) == roidb_digest(moved)  # the folder may differ between machines
    changed = [dict(roidb[0], boxes=np.array([[0, 0, 5, 4]], np.uint16))]
    assert roidb_digest(roidb) != roidb_digest(changed) and roidb_digest(roidb).startswith("1 images")
