"""PASCAL VOC 2007/2012 (upstream's ``lib/datasets/pascal_voc.py``).

``voc_<year>_<split>`` reads ``<devkit>/VOC<year>/`` (``devkit`` defaults to
``<DATA_DIR>/VOCdevkit<year>``), with the 20 VOC classes in upstream's order. VOC2007
is evaluated with the 11-point metric (``year < 2010``). Results files go to
``<devkit>/results/VOC<year>/Main/`` as upstream, or to ``<output_dir>/results`` when
the devkit is read-only. VOC2012 test has no public annotations: its detections are packed
for the evaluation server instead (``<output_dir>/VOC2012_test_comp4_results.tar.gz``).
"""

from __future__ import annotations

import os

from frcnn.datasets.voc_format import VOCFormatDataset

VOC_CLASSES = (
    "__background__",  # always index 0
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


class pascal_voc(VOCFormatDataset):
    """One split of one VOC year."""

    def __init__(
        self,
        image_set: str,
        year: str,
        devkit_path: str,
        cache_dir: str | None,
        proposals_dir: str | None = None,
    ) -> None:
        if not os.path.isdir(devkit_path):
            raise FileNotFoundError(
                f"{devkit_path}: VOCdevkit path does not exist (link it: ln -s /path/to/VOCdevkit {devkit_path})"
            )
        self._year = str(year)
        self._devkit_path = devkit_path
        super().__init__(
            f"voc_{year}_{image_set}",
            image_set,
            os.path.join(devkit_path, "VOC" + self._year),
            cache_dir,
            classes=VOC_CLASSES,
            proposals_dir=proposals_dir,
            use_07_metric=int(self._year) < 2010,
        )
        # upstream's default: Fast R-CNN with selective search boxes
        self._roidb_handler = self.selective_search_roidb

    @property
    def year(self) -> str:
        return self._year

    def _include_gt_with_proposals(self) -> bool:
        # VOC2012 test has no annotations; VOC2007 test does
        return int(self._year) == 2007 or self._image_set != "test"

    def evaluate_detections(self, all_boxes: list, output_dir: str) -> dict:
        """Evaluate as any VOC-format set; a split without annotations (VOC2012 test) is
        packed for the evaluation server instead (it scores them), and nothing is computed."""
        if self._include_gt_with_proposals():
            return super().evaluate_detections(all_boxes, output_dir)
        from frcnn.datasets.voc_results import VOC_SERVER, write_server_archive

        path = os.path.join(output_dir, f"VOC{self._year}_{self._image_set}_{self._comp_id}_results.tar.gz")
        names = write_server_archive(
            path, all_boxes, self._image_index, self.classes, self._year, self._image_set, self._comp_id
        )
        print(f"Wrote {len(names)} results files for the evaluation server to {path}")
        print(
            f"{self.name} has no public annotations, so no AP is computed here: the PASCAL VOC evaluation "
            f"server scores these results (upload {os.path.basename(path)} at {VOC_SERVER})"
        )
        return {"results_archive": path, "files": names}

    def _results_dir(self, output_dir: str) -> str:
        path = os.path.join(self._devkit_path, "results", "VOC" + self._year, "Main")
        try:
            os.makedirs(path, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            pass
        return super()._results_dir(output_dir)
