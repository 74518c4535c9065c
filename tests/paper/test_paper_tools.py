"""The tools behind the paper scripts: the COCO json export, the smoke data, Table 5's timing
and Figure 4's plot."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from frcnn.config import get_default_config
from frcnn.datasets.factory import get_imdb
from frcnn.nets.surgery import COCO_TO_VOC
from tests.tools.helpers import load_tool, run_tool_process

export_coco_json = load_tool("export_coco_json.py")
smoke_data = load_tool("paper_smoke_data.py")
paper_fig4 = load_tool("paper_fig4.py")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("smoke") / "data")
    smoke_data.build(out, 8, 4, force=False)
    cfg = get_default_config()
    cfg.DATA_DIR = out
    return out, cfg


def test_smoke_data_lays_the_toy_set_out_as_the_papers_sets(smoke):
    out, cfg = smoke
    v07, v07t = get_imdb("voc_2007_trainval", cfg), get_imdb("voc_2007_test", cfg)
    v12, v12t = get_imdb("voc_2012_trainval", cfg), get_imdb("voc_2012_test", cfg)
    assert (v07.num_images, v07t.num_images, v12.num_images, v12t.num_images) == (4, 2, 4, 2)
    assert not set(v07.image_index) & set(v12.image_index)
    assert get_imdb("voc_2007_trainval+voc_2007_test+voc_2012_trainval", cfg).num_images == 10
    names = {v07.classes[c] for r in v07.gt_roidb() for c in r["gt_classes"]}
    assert names <= set(smoke_data.TOY_TO_VOC.values()) and names
    # VOC2012 test has no annotations, as the real one: its results go to the server
    assert not os.path.exists(os.path.join(out, "VOCdevkit2012", "VOC2012", "Annotations", v12t.image_index[0] + ".xml"))
    coco_train, coco_dev = get_imdb("coco_2014_train", cfg), get_imdb("coco_2015_test-dev", cfg)
    assert coco_train.num_classes == 81 and coco_dev.num_images == 2
    # the COCO export holds the same boxes as the VOC split it came from, under COCO's names
    for a, b in zip(v07.gt_roidb(), coco_train.gt_roidb()):
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        coco_names = [coco_train.classes[c] for c in b["gt_classes"]]
        assert [v07.classes[c] for c in a["gt_classes"]] == [COCO_TO_VOC.get(n, n) for n in coco_names]
    assert os.path.exists(coco_train.image_path_at(0)) and "COCO_train2014_000000000001.jpg" in coco_train.image_path_at(0)
    # a second build with the same settings keeps the folder
    mtime = os.path.getmtime(os.path.join(out, smoke_data.MARKER))
    smoke_data.build(out, 8, 4, force=False)
    assert os.path.getmtime(os.path.join(out, smoke_data.MARKER)) == mtime


def test_rekey_gives_a_voc_views_proposals_the_coco_ids(smoke, tmp_path):
    from frcnn.datasets.proposals import load_proposals, save_proposals

    out, cfg = smoke
    view = get_imdb("voc_2007_test", cfg)
    boxes = [np.array([[1, 2, 30, 40]], np.float32) * (i + 1) for i in range(view.num_images)]
    src = str(tmp_path / "v.npz")
    save_proposals(src, boxes, view.image_index)
    dst = str(tmp_path / "c.npz")
    smoke_data.rekey(src, os.path.join(out, "coco", "annotations", "instances_val2014.json"), dst)
    got, ids = load_proposals(dst)
    assert ids == [str(i) for i in get_imdb("coco_2014_val", cfg).image_index]
    assert all((a == b).all() for a, b in zip(got, boxes))


def test_export_own_categories_and_image_info(smoke, tmp_path):
    _, cfg = smoke
    imdb = get_imdb("toy_trainval", cfg)
    path = str(tmp_path / "ann" / "train.json")
    doc = export_coco_json.export(imdb, path, str(tmp_path / "img"), "im_{id:04d}.jpg", first_id=10)
    assert [c["name"] for c in doc["categories"]] == list(imdb.classes[1:])
    assert doc["images"][0]["id"] == 10 and doc["images"][0]["file_name"] == "im_0010.jpg"
    back = get_imdb(f"coco_json:{path}:{tmp_path / 'img'}", cfg)
    for a, b in zip(imdb.gt_roidb(), back.gt_roidb()):
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["gt_classes"], b["gt_classes"])
    info = export_coco_json.export(imdb, str(tmp_path / "info.json"), annotations=False)
    assert "annotations" not in info and info["images"][0]["file_name"].endswith(".jpg")


def test_export_refuses_a_class_without_a_coco_name(smoke, tmp_path):
    out, _ = smoke
    p = run_tool_process("export_coco_json.py", "--imdb", "toy_trainval", "--out", str(tmp_path / "x.json"),
                         "--categories", "coco", "--set", "DATA_DIR", out)
    assert p.returncode == 2 and "class 'circle' has no MS COCO category" in p.stderr
    p = run_tool_process("export_coco_json.py", "--imdb", "toy_trainval", "--out", str(tmp_path / "x.json"),
                         "--categories", "coco", "--map", "circle=sports ball", "--map", "square=tv",
                         "--map", "triangle=kite", "--map", "star=frisbee", "--map", "ring=donut", "--set", "DATA_DIR", out)
    assert p.returncode == 0, p.stderr
    assert len(json.loads(Path(tmp_path / "x.json").read_text())["categories"]) == 80


def test_fig4_csv_and_three_panel_png(tmp_path):
    rows = "method,imdb,top_n,iou,recall,num_gt\n" + "".join(
        f"rpn,voc_2007_test,{n},{t:.4g},{max(0.0, 1 - (t - 0.5) * k):.6f},7\n"
        for k, n in ((1.5, 300), (1.2, 1000), (1.0, 2000)) for t in np.arange(0.5, 1.0001, 0.05))
    (tmp_path / "a.csv").write_text(rows)
    (tmp_path / "b.csv").write_text(rows.replace("rpn,", "ss,"))
    paper_fig4.main(["--curve", f"RPN ZF={tmp_path / 'a.csv'}", "--curve", f"SS={tmp_path / 'b.csv'}",
                     "--out_dir", str(tmp_path / "out")])
    with open(tmp_path / "out" / "recall.csv") as f:
        got = list(csv.DictReader(f))
    assert len(got) == 66 and {r["label"] for r in got} == {"RPN ZF", "SS"}
    pytest.importorskip("matplotlib")
    png = (tmp_path / "out" / "fig4.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_fig4_without_matplotlib_writes_the_csv_and_says_so(tmp_path, monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    (tmp_path / "a.csv").write_text("method,imdb,top_n,iou,recall,num_gt\nrpn,x,300,0.5,0.9,3\n")
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    paper_fig4.main(["--curve", f"RPN={tmp_path / 'a.csv'}", "--out_dir", str(tmp_path / "o")])
    assert (tmp_path / "o" / "recall.csv").exists() and not (tmp_path / "o" / "fig4.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().out


def random_model(prototxt, path):
    """A model file of ``prototxt`` with its random initial weights (timing does not depend on them)."""
    from frcnn.caffe import TEST, Net

    net = Net(prototxt, None, TEST)
    net.save(path)
    return path


def test_table5_timing_of_both_systems(smoke, tmp_path):
    from frcnn.datasets.proposals import save_proposals
    from frcnn.datasets.selective_search import info_json

    out, cfg = smoke
    imdb = get_imdb("voc_2007_test", cfg)
    rng = np.random.RandomState(0)
    boxes = []
    for i in range(imdb.num_images):
        xy = rng.uniform(0, 100, (300, 2))
        boxes.append(np.hstack([xy, xy + rng.uniform(10, 60, (300, 2))]).astype(np.float32))
    seconds = np.array([1.25, 1.75])
    ss = str(tmp_path / "ss.npz")
    save_proposals(ss, boxes, imdb.image_index, extra={
        "seconds": seconds, "cpu_seconds": seconds, "info": np.array(info_json("fast", 2000, 1, 1, seconds, seconds))})
    root = "models/pascal_voc/SMALL"
    frcn = random_model(f"{root}/fast_rcnn/test.prototxt", str(tmp_path / "frcn.caffemodel"))
    faster = random_model(f"{root}/faster_rcnn_alt_opt/faster_rcnn_test.prototxt", str(tmp_path / "f.caffemodel"))
    common = ["--cpu", "--imdb", "voc_2007_test", "--num", "2", "--warmup", "1", "--allow_few"]
    p = run_tool_process("paper_timing.py", *common, "--system", "ss", "--def", f"{root}/fast_rcnn/test.prototxt",
                         "--net", frcn, "--ss_file", ss, "--out", str(tmp_path / "ss.json"),
                         "--set", "DATA_DIR", out, "TEST.SCALES", "[192]")
    assert p.returncode == 0, p.stderr
    t = json.loads(Path(tmp_path / "ss.json").read_text())
    assert t["proposal"] == pytest.approx(1500.0)  # the recorded selective search time: median of 1.25, 1.75 s
    assert t["conv"] > 0 and t["region"] > 0 and t["images"] == 2 and t["clock"] == "wall clock"
    assert t["total"] >= t["proposal"] and t["fps"] == pytest.approx(1000.0 / t["total"])
    p = run_tool_process("paper_timing.py", *common, "--system", "rpn", "--def",
                         f"{root}/faster_rcnn_alt_opt/faster_rcnn_test.prototxt", "--net", faster,
                         "--out", str(tmp_path / "rpn.json"), "--set", "DATA_DIR", out, "TEST.SCALES", "[192]")
    assert p.returncode == 0, p.stderr
    t = json.loads(Path(tmp_path / "rpn.json").read_text())
    assert min(t["conv"], t["proposal"], t["region"]) > 0 and t["system"] == "rpn" and t["precision"] == "fp32"
    # the paper's protocol needs 50 images; tf32 is a GPU setting
    p = run_tool_process("paper_timing.py", "--cpu", "--imdb", "voc_2007_test", "--system", "rpn", "--def",
                         f"{root}/faster_rcnn_alt_opt/faster_rcnn_test.prototxt", "--net", faster, "--num", "10",
                         "--out", str(tmp_path / "x.json"), "--set", "DATA_DIR", out)
    assert p.returncode == 2 and "at least 50 images" in p.stderr
    p = run_tool_process("paper_timing.py", *common, "--system", "rpn", "--precision", "tf32", "--def",
                         f"{root}/faster_rcnn_alt_opt/faster_rcnn_test.prototxt", "--net", faster,
                         "--out", str(tmp_path / "x.json"), "--set", "DATA_DIR", out)
    assert p.returncode == 2 and "TensorFloat-32 is a setting of NVIDIA GPUs" in p.stderr


def test_table5_timers_are_cuda_events_on_the_gpu_asked_for(monkeypatch):
    """--gpu 1 must time GPU 1: the events are recorded on (and waited for on) device 1's stream."""
    import torch

    from frcnn.inference import timing

    paper_timing = load_tool("paper_timing.py")
    streams, events = [], []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing
            events.append(self)

        def record(self, stream):
            self.stream = stream

        def synchronize(self):
            self.synced = True

        def elapsed_time(self, end):
            return 12.5

    monkeypatch.setattr(timing.torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(timing.torch.cuda, "current_stream", lambda d: streams.append(torch.device(d)) or f"s{d}")
    timers = paper_timing.stage_timers(torch.device("cuda", 1))
    assert all(isinstance(t, timing.CudaEventTimer) for t in timers.values())
    timers["conv"].tic()
    timers["conv"].toc()
    assert streams == [torch.device("cuda", 1)] * 2 and events[1].synced and timers["conv"].diff == 0.0125
    assert {type(t) for t in paper_timing.stage_timers(torch.device("cpu")).values()} == {timing.Timer}
