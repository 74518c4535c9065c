"""Joined sets ('a+b'): one RPN proposal file for the joined set, each member reading its part."""

import os

import numpy as np
import pytest

from frcnn.datasets.factory import get_imdb
from frcnn.datasets.proposals import load_proposal_ids, save_proposals
from frcnn.errors import InputError

IMAGES_A = {"a1": (60, 40, [("dog", (5, 5, 30, 20))]), "a2": (50, 70, [("cat", (10, 10, 40, 60))])}
IMAGES_B = {"b1": (64, 48, [("dog", (2, 3, 60, 40))]), "b2": (40, 40, [("cat", (1, 1, 20, 20))]),
            "b3": (30, 30, [("dog", (3, 3, 25, 25))])}


@pytest.fixture
def joined(write_voc, data_cfg):
    write_voc(os.path.join(data_cfg.DATA_DIR, "sa"), IMAGES_A, {"trainval": list(IMAGES_A)}, classes=["dog", "cat"])
    write_voc(os.path.join(data_cfg.DATA_DIR, "sb"), IMAGES_B, {"trainval": list(IMAGES_B)}, classes=["dog", "cat"])
    return data_cfg


def _proposals(n):
    """Image i gets i + 1 boxes; box k of image i is (i, k, i + 10 + k, 12)."""
    return [np.array([[i, k, i + 10 + k, 12] for k in range(i + 1)], np.float32) for i in range(n)]


def test_each_member_reads_its_part_of_the_joined_file(joined, tmp_path):
    d = get_imdb("sa_trainval+sb_trainval", joined)
    assert d.image_index == ["a1", "a2", "b1", "b2", "b3"]
    path = str(tmp_path / "joined_proposals.npz")
    props = _proposals(5)
    save_proposals(path, props, d.image_index)
    assert load_proposal_ids(path) == d.image_index
    d.config["rpn_file"] = path
    d.set_proposal_method("rpn")
    roidb = d.roidb
    assert len(roidb) == 5
    for i, entry in enumerate(roidb):
        gt = entry["gt_classes"] > 0
        assert gt.sum() == 1 and gt[0]  # each member's gt rows first
        assert np.array_equal(entry["boxes"][~gt], props[i]), i
    assert roidb[2]["width"] == 64 and roidb[4]["width"] == 30  # b's entries carry b's images
    # flipping flips each member: a, a flipped, b, b flipped
    d.append_flipped_images()
    assert len(d.roidb) == 10 and [e["flipped"] for e in d.roidb] == [False] * 2 + [True] * 2 + [False] * 3 + [True] * 3
    flipped_b1 = d.roidb[7]
    assert np.array_equal(flipped_b1["boxes"][1:, 0], 64 - props[2][:, 2] - 1)


def test_a_file_for_another_set_or_order_is_named(joined, tmp_path):
    d = get_imdb("sa_trainval+sb_trainval", joined)
    only_a = str(tmp_path / "a.npz")
    save_proposals(only_a, _proposals(2), ["a1", "a2"])
    d.config["rpn_file"] = only_a
    with pytest.raises(InputError, match=r"a.npz: holds proposals for 2 images, sa_trainval\+sb_trainval has 5"):
        d.set_proposal_method("rpn")
    swapped = str(tmp_path / "ba.npz")
    save_proposals(swapped, _proposals(5), ["b1", "b2", "b3", "a1", "a2"])
    d.config["rpn_file"] = swapped
    with pytest.raises(InputError, match="image 0 is 'b1' but sa_trainval.sb_trainval has 'a1' there"):
        d.set_proposal_method("rpn")


def test_empty_member_name_is_an_error(joined):
    with pytest.raises(InputError, match=r"'sa_trainval\+': an empty name in a joined"):
        get_imdb("sa_trainval+", joined)
