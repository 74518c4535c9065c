"""Settings derived from a dataset: anchors that cover its boxes, a schedule inside ITERS, the
user's own keys kept, the yml the scripts pass on; and the dataset summary they start from."""

import os

import numpy as np
import pytest
import yaml

from frcnn.config import cfg_from_file, get_default_config
from frcnn.datasets.factory import get_imdb
from frcnn.datasets.summary import format_summary, summarize
from frcnn.rpn.generate_anchors import generate_anchors
from frcnn.training.defaults import derive_defaults, net_anchors, user_set_keys, write_defaults
from frcnn.training.schedule import derive_schedule
from tests.tools.helpers import run_tool_process, tool_env

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMALL_SOLVER = os.path.join(ROOT, "models", "pascal_voc", "SMALL", "faster_rcnn_end2end", "solver.prototxt")
W, H = 320, 240  # every image; at TRAIN.SCALES 600 (MAX_SIZE 1000) the factor is 600 / 240 = 2.5
FACTOR = 2.5


def _small_box_images(seed=0, n_images=30):
    """Images of 320 x 240 holding 3-5 boxes with sides of 22-34 px (55-85 px at the training
    scale, below the shipped anchors' 128-512 px), h/w between 0.8 and 1.25, anywhere."""
    rng = np.random.RandomState(seed)
    images = {}
    for i in range(n_images):
        objects = []
        for _ in range(rng.randint(3, 6)):
            side = rng.uniform(22, 34)
            ratio = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
            w, h = side / np.sqrt(ratio), side * np.sqrt(ratio)
            x1, y1 = rng.randint(1, int(W - w)), rng.randint(1, int(H - h))
            objects.append((("bird", "bee")[len(objects) % 2], (x1, y1, int(x1 + w), int(y1 + h))))
        images[f"im{i:03d}"] = (W, H, objects)
    return images


@pytest.fixture
def small_boxes(write_voc, data_cfg):
    images = _small_box_images()
    names = sorted(images)
    root = os.path.join(data_cfg.DATA_DIR, "smallbox")
    for k in range(0, len(names), 15):  # write_voc's grey levels run out after 21 images
        chunk = {n: images[n] for n in names[k : k + 15]}
        write_voc(root, chunk, {"train": names[:24], "test": names[24:]})
    return data_cfg, images, names[:24]


def _anchor_cfg(cfg):
    """The run's config with the anchor keys (None: the prototxt's), as the RPN layers read them."""
    for key in ("ANCHOR_SCALES", "ANCHOR_RATIOS"):
        if key not in cfg:
            cfg[key] = None
    return cfg


def _iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    def area(r):
        return (r[2] - r[0] + 1) * (r[3] - r[1] + 1)

    return inter / (area(a) + area(b) - inter)


def _best_iou_at_nearest_cell(box, scales, ratios, stride=16):
    """Plain reference: the anchors of the cell whose anchor centre (stride * j + 7.5) is nearest
    the box centre, and the best IoU among them."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    cells_x = int(np.ceil(W * FACTOR / stride))
    cells_y = int(np.ceil(H * FACTOR / stride))
    j = min(range(cells_x), key=lambda c: abs(stride * c + 7.5 - cx))
    i = min(range(cells_y), key=lambda c: abs(stride * c + 7.5 - cy))
    anchors = generate_anchors(ratios=ratios, scales=scales) + np.array([stride * j, stride * i] * 2)
    return max(_iou(box, a) for a in anchors)


def test_derived_anchors_cover_every_small_box_and_the_step_falls_inside_iters(small_boxes):
    cfg, images, train_ids = small_boxes
    cfg = _anchor_cfg(cfg)
    imdb = get_imdb("smallbox_train", cfg)
    summary = summarize(imdb, cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE)
    iters = 4000
    derived = derive_defaults(summary, iters, cfg, solver_stepsize=2000)
    values = {s.key: s.value for s in derived.settings}
    scales, ratios = values["ANCHOR_SCALES"], values["ANCHOR_RATIOS"]
    gt = [
        [(x1 - 1) * FACTOR, (y1 - 1) * FACTOR, (x2 - 1) * FACTOR, (y2 - 1) * FACTOR]  # 1-based XML, scaled
        for image_id in train_ids for _cls, (x1, y1, x2, y2) in images[image_id][2]
    ]
    assert len(gt) == summary.num_boxes > 80
    best = [_best_iou_at_nearest_cell(b, scales, ratios) for b in gt]
    assert min(best) >= 0.5, (scales, ratios, sorted(best)[:5])
    # the boxes are small for the shipped anchors: most of them have no anchor of IoU 0.5
    shipped = [_best_iou_at_nearest_cell(b, (8, 16, 32), (0.5, 1, 2)) for b in gt]
    assert np.mean(np.array(shipped) >= 0.5) < 0.5
    assert min(scales) * 16 < 128
    # the schedule: the step inside the run, the snapshots at 1/7
    assert 0 < values["TRAIN.SOLVER_STEPSIZE"] < iters and values["TRAIN.SOLVER_STEPSIZE"] == round(iters * 5 / 7)
    assert values["TRAIN.SNAPSHOT_ITERS"] == 570
    text = "\n".join(derived.lines())
    assert f"cover {len(gt)} of {len(gt)} boxes (100.0%)" in text
    assert "the learning rate drops x gamma once, at 2857 of ITERS 4000" in text and "at 2000" in text


@pytest.mark.parametrize("iters", [1, 2, 3, 7, 20, 100, 999, 3000, 5000, 10000, 70000, 490000])
def test_schedule_step_lies_inside_the_run_at_five_sevenths(iters):
    s = derive_schedule(iters)
    if iters >= 2:
        assert 1 <= s.stepsize < iters
        assert abs(s.stepsize - iters * 5 / 7) <= 1
    assert 1 <= s.snapshot_iters <= max(1, iters // 7)
    assert s.snapshot_iters >= 0.9 * (iters // 7)  # rounded down to two significant digits only
    assert derive_schedule(70000).stepsize == 50000 and derive_schedule(70000).snapshot_iters == 10000


def test_schedule_refuses_no_iterations():
    with pytest.raises(ValueError, match="iters must be >= 1"):
        derive_schedule(0)


def test_summary_counts_and_scales_the_boxes(write_voc, data_cfg):
    root = os.path.join(data_cfg.DATA_DIR, "sum")
    images = {
        "a": (400, 200, [("cat", (1, 1, 100, 50)), ("dog", (11, 21, 60, 120))]),
        "b": (200, 400, [("cat", (1, 1, 20, 20))]),
        "c": (100, 100, []),  # no objects
        "d": (3000, 300, [("dog", (1, 1, 300, 300))]),  # MAX_SIZE caps this one's scale
    }
    write_voc(root, images, {"train": list(images)})
    imdb = get_imdb("sum_train", data_cfg)
    s = summarize(imdb, [400], 1000)
    assert s.num_images == 4 and s.images_without_boxes == 1 and s.num_boxes == 4
    assert s.boxes_per_class == {"cat": 2, "dog": 2}
    # a: x2 (200 -> 400); b: x2 (200 -> 400, 800 <= 1000); d: 1000 / 3000
    np.testing.assert_allclose(s.box_scales, [2, 2, 2, 1 / 3])
    # boxes are scaled, then measured with +1 widths, as the net's layers measure them
    np.testing.assert_allclose(s.sizes[:3], [np.sqrt(199 * 99), np.sqrt(99 * 199), 39])
    np.testing.assert_allclose(s.aspect_ratios[:2], [99 / 199, 199 / 99])
    np.testing.assert_allclose(s.image_sizes[3], [1000, 100])
    two = summarize(imdb, [200, 400], 1000)  # each box once per training scale
    assert len(two.boxes) == 8 and two.num_boxes == 4
    text = "\n".join(format_summary(s))
    assert "Dataset sum_train: 4 images (1 without boxes), 4 boxes, 2 classes" in text
    assert "boxes per class: cat 2, dog 2" in text and "TRAIN.SCALES [400], TRAIN.MAX_SIZE 1000" in text
    assert "box size sqrt(w*h): 39 / " in text


def test_keys_the_user_set_are_kept_and_named(small_boxes, tmp_path):
    cfg, _images, _ = small_boxes
    cfg = _anchor_cfg(cfg)
    mine = tmp_path / "mine.yml"
    mine.write_text("TRAIN:\n  SNAPSHOT_ITERS: 250\n")
    cfg_from_file(str(mine), cfg)
    cfg.ANCHOR_SCALES = (4, 8)
    cfg.TRAIN.SOLVER_STEPSIZE = 1234
    user = user_set_keys([str(mine)], ["ANCHOR_SCALES", "[4, 8]", "TRAIN.SOLVER_STEPSIZE", "1234"])
    assert user == {"TRAIN.SNAPSHOT_ITERS": str(mine), "ANCHOR_SCALES": "--set", "TRAIN.SOLVER_STEPSIZE": "--set"}
    summary = summarize(get_imdb("smallbox_train", cfg), cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE)
    derived = derive_defaults(summary, 4000, cfg, solver_stepsize=2000, user=user)
    by_key = {s.key: s for s in derived.settings}
    assert by_key["ANCHOR_SCALES"].value == [4, 8] and by_key["ANCHOR_SCALES"].source == "--set"
    assert by_key["TRAIN.SOLVER_STEPSIZE"].value == 1234 and not by_key["TRAIN.SOLVER_STEPSIZE"].derived
    assert by_key["TRAIN.SNAPSHOT_ITERS"].source == str(mine)
    # what the scripts pass on holds only what was derived
    out = derived.overrides()
    assert "TRAIN" not in out or not ({"SOLVER_STEPSIZE", "SNAPSHOT_ITERS"} & set(out["TRAIN"]))
    assert "ANCHOR_SCALES" not in out
    text = "\n".join(derived.lines())
    assert "TRAIN.SOLVER_STEPSIZE 1234 (yours, from --set)" in text and "ANCHOR_SCALES [4, 8] (yours, from --set)" in text


def test_without_the_anchor_keys_the_net_keeps_its_anchors_and_says_how_well_they_cover(small_boxes, tmp_path):
    cfg, _images, _ = small_boxes
    cfg = {k: v for k, v in cfg.items() if k not in ("ANCHOR_SCALES", "ANCHOR_RATIOS")}
    from easydict import EasyDict

    cfg = EasyDict(cfg)
    summary = summarize(get_imdb("smallbox_train", cfg), cfg.TRAIN.SCALES, cfg.TRAIN.MAX_SIZE)
    derived = derive_defaults(summary, 3000, cfg, net=net_anchors(_small_net()), solver_stepsize=2000)
    assert [s.key for s in derived.settings] == ["TRAIN.SOLVER_STEPSIZE", "TRAIN.SNAPSHOT_ITERS"]
    note = "\n".join(derived.notes)
    assert "no ANCHOR_SCALES config key" in note and "scales [8, 16, 32] = 128-512 px" in note
    path = tmp_path / "d.yml"
    write_defaults(str(path), derived)
    loaded = cfg_from_file(str(path), get_default_config())  # loads into this build's config
    assert loaded.TRAIN.SOLVER_STEPSIZE == 2143 and loaded.TRAIN.SNAPSHOT_ITERS == 420
    assert "# TRAIN.SOLVER_STEPSIZE: the learning rate drops" in path.read_text()


def _small_net():
    from frcnn.nets.adapt import solver_net_path

    return solver_net_path(SMALL_SOLVER, ROOT)[1]


def test_net_anchors_reads_the_anchor_target_layer():
    a = net_anchors(_small_net())
    assert (a.feat_stride, a.scales, a.ratios) == (16, (8.0, 16.0, 32.0), (0.5, 1.0, 2.0))
    bccd = net_anchors(os.path.join(ROOT, "models", "bccd", "SMALL", "faster_rcnn_end2end", "train.prototxt"))
    assert bccd.scales == (2, 2.83, 4, 5.66, 8, 11.31, 16)


def test_tiny_boxes_are_reported_as_too_small_for_the_stride(write_voc, data_cfg):
    root = os.path.join(data_cfg.DATA_DIR, "tiny")
    # 6 px boxes at native scale 600: no anchor reaches IoU 0.5 at their cell unless centred on it
    images = {f"t{i}": (600, 600, [("dot", (50 + 37 * i, 60 + 23 * i, 55 + 37 * i, 65 + 23 * i))]) for i in range(8)}
    write_voc(root, images, {"train": list(images)})
    cfg = _anchor_cfg(data_cfg)
    summary = summarize(get_imdb("tiny_train", cfg), [600], 1000)
    derived = derive_defaults(summary, 100, cfg, solver_stepsize=2000)
    note = "\n".join(derived.notes)
    assert "have no anchor of IoU >= 0.5 at their cell" in note and "a larger TRAIN.SCALES enlarges them" in note
    assert "8 boxes have a side under TRAIN.RPN_MIN_SIZE / TEST.RPN_MIN_SIZE (16 px" in note


def test_the_tool_prints_the_summary_and_writes_the_config(small_boxes, tmp_path):
    cfg, _images, _ = small_boxes
    out = tmp_path / "derived.yml"
    path_file = tmp_path / "path.txt"
    args = ["--imdb", "smallbox_train", "--iters", "3000", "--solver", SMALL_SOLVER, "--out", str(out),
            "--path_file", str(path_file), "--cfg", os.path.join(ROOT, "experiments", "cfgs", "faster_rcnn_end2end.yml"),
            "--set", "DATA_DIR", cfg.DATA_DIR, "TRAIN.SNAPSHOT_ITERS", "100"]
    r = run_tool_process("dataset_defaults.py", *args, env=tool_env())
    assert r.returncode == 0, r.stderr[-3000:]
    text = r.stdout
    assert "Dataset smallbox_train: 24 images (0 without boxes)" in text
    assert "boxes per class: bee " in text and "box size sqrt(w*h): " in text
    assert "TRAIN.SOLVER_STEPSIZE 2143: the learning rate drops x gamma once, at 2143 of ITERS 3000" in text
    assert "TRAIN.SNAPSHOT_ITERS 100 (yours, from --set)" in text
    assert f"Wrote {out}" in text and path_file.read_text().strip() == str(out)
    written = yaml.safe_load(out.read_text())
    assert written["TRAIN"] == {"SOLVER_STEPSIZE": 2143}
    cfg_from_file(str(out), _anchor_cfg(get_default_config()))  # a valid config file


def test_the_tool_names_a_bad_dataset(tmp_path):
    r = run_tool_process("dataset_defaults.py", "--imdb", "nosuch_train", "--iters", "10", "--solver", SMALL_SOLVER,
                         "--set", "DATA_DIR", str(tmp_path))
    assert r.returncode == 2 and "dataset_defaults.py: error: Unknown dataset: nosuch_train" in r.stderr


def test_stepsize_needs_a_step_solver(tmp_path):
    from frcnn.caffe.solver_param import SolverParameter
    from frcnn.config import ConfigError
    from frcnn.training.schedule import apply_solver_overrides

    cfg = get_default_config()
    step = SolverParameter(source=SMALL_SOLVER, lr_policy="step", stepsize=2000)
    assert apply_solver_overrides(step, cfg) == {}  # 0: the solver's own
    cfg.TRAIN.SOLVER_STEPSIZE = 700
    assert apply_solver_overrides(step, cfg) == {"stepsize": (2000, 700)} and step.stepsize == 700
    with pytest.raises(ConfigError, match=r"TRAIN.SOLVER_STEPSIZE 700: the solver s.prototxt has lr_policy 'fixed'"):
        apply_solver_overrides(SolverParameter(source="s.prototxt", lr_policy="fixed"), cfg)


def test_a_set_without_boxes_and_a_bad_iters_are_user_errors(write_voc, data_cfg):
    from frcnn.errors import InputError

    write_voc(os.path.join(data_cfg.DATA_DIR, "empty"), {"e": (50, 50, [("cat", (1, 1, 5, 5), 1)])},
              {"train": ["e"]}, classes=["cat"])  # its only box is difficult
    summary = summarize(get_imdb("empty_train", data_cfg), [600], 1000)
    with pytest.raises(InputError, match="empty_train: the set has no boxes"):
        derive_defaults(summary, 100, data_cfg)
    r = run_tool_process("dataset_defaults.py", "--imdb", "empty_train", "--iters", "0", "--solver", SMALL_SOLVER)
    assert r.returncode == 2 and "--iters: must be >= 1, got 0" in r.stderr
