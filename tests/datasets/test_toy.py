import filecmp
import os

import numpy as np
import pytest

from frcnn.datasets.factory import get_imdb
from frcnn.datasets.toy import TOY_CLASSES, make_toy_dataset, render_toy_image


def test_toy_set_is_deterministic_and_loads(tmp_path, data_cfg):
    out = os.path.join(data_cfg.DATA_DIR, "toy")
    info = make_toy_dataset(out, num_trainval=8, num_test=4, seed=1)
    assert info["images"] == 12 and sum(info["per_class"].values()) == info["objects"]
    again = make_toy_dataset(str(tmp_path / "copy"), num_trainval=8, num_test=4, seed=1)
    assert again["per_class"] == info["per_class"]
    cmp = filecmp.dircmp(out, str(tmp_path / "copy"))
    assert not cmp.diff_files and all(
        not filecmp.dircmp(os.path.join(out, s), os.path.join(tmp_path, "copy", s)).diff_files
        for s in ("JPEGImages", "Annotations")
    )

    d = get_imdb("toy_trainval", data_cfg)
    assert d.classes == ("__background__", *TOY_CLASSES) and d.num_images == 8
    assert get_imdb("toy_test", data_cfg).num_images == 4
    for e in d.gt_roidb():
        b = e["boxes"].astype(int)
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (b[:, 2] < e["width"]).all() and (b[:, 3] < e["height"]).all()


def test_toy_images_vary_in_size_objects_and_classes():
    sizes, counts, sides, classes = set(), [], [], set()
    for i in range(60):
        img, objs = render_toy_image(np.random.RandomState(i))
        assert img.dtype == np.uint8 and img.ndim == 3
        sizes.add(img.shape[:2])
        counts.append(len(objs))
        for cls, (x1, y1, x2, y2) in objs:
            classes.add(cls)
            sides.append(max(x2 - x1, y2 - y1) + 1)
    assert len(sizes) > 20 and any(h > w for h, w in sizes)  # some portrait images
    assert set(classes) == set(TOY_CLASSES) and max(counts) >= 3
    assert min(sides) < 30 and max(sides) > 60


def test_existing_folders_are_protected(tmp_path):
    out = str(tmp_path / "toy")
    make_toy_dataset(out, num_trainval=2, num_test=1)
    with pytest.raises(FileExistsError, match="--force"):
        make_toy_dataset(out, num_trainval=2, num_test=1)
    make_toy_dataset(out, num_trainval=3, num_test=1, force=True)
    assert len(os.listdir(os.path.join(out, "JPEGImages"))) == 4
    other = tmp_path / "mine"
    other.mkdir()
    with pytest.raises(FileExistsError, match="not a toy dataset"):
        make_toy_dataset(str(other), num_trainval=2, num_test=1, force=True)
    assert sorted(os.listdir(tmp_path)) == ["mine", "toy"]  # no temporary folders left
