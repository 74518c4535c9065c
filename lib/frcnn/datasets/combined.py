"""Several imdbs joined with ``+`` for training (upstream's ``voc_2007_trainval+voc_2012_trainval``)."""

from __future__ import annotations

from collections.abc import Sequence

from frcnn.datasets.imdb import imdb
from frcnn.errors import InputError


class CombinedImdb(imdb):
    """The concatenation of member imdbs that share one class list (training only).

    Flipping flips each member, so the roidb order is upstream's: A, A flipped, B, B flipped.
    RPN proposals (``config['rpn_file']``, as alt-opt and ``train_net.py --proposals`` set
    it) are one file for the joined set, in its image order (what a proposal pass over the
    joined set writes); each member reads its own part of it, so the gt rows, crowd rules
    and checks of each member's ``rpn_roidb`` apply.
    """

    def __init__(self, imdbs: Sequence[imdb], name: str) -> None:
        if not imdbs:
            raise InputError("CombinedImdb: no member imdbs")
        for d in imdbs[1:]:
            if tuple(d.classes) != tuple(imdbs[0].classes):
                raise InputError(
                    f"{name}: {d.name} has classes {list(d.classes)} but {imdbs[0].name} has "
                    f"{list(imdbs[0].classes)}; only sets with the same classes can be joined"
                )
        super().__init__(name, imdbs[0].classes)
        self._imdbs = list(imdbs)
        self._roidb_handler = self._member_roidbs

    @property
    def imdbs(self) -> list[imdb]:
        return self._imdbs

    @property
    def image_index(self) -> list:
        return [x for d in self._imdbs for x in d.image_index]

    @property
    def num_images(self) -> int:
        return sum(d.num_images for d in self._imdbs)

    def _locate(self, i: int) -> tuple[imdb, int]:
        if i < 0:
            i += self.num_images
        for d in self._imdbs:
            if i < d.num_images:
                return d, i
            i -= d.num_images
        raise IndexError(f"{self.name}: image {i} out of range")

    def image_path_at(self, i: int) -> str:
        d, j = self._locate(i)
        return d.image_path_at(j)

    def image_id_at(self, i: int):
        d, j = self._locate(i)
        return d.image_id_at(j)

    def _member_roidbs(self) -> list[dict]:
        return [e for d in self._imdbs for e in d.roidb]

    def set_proposal_method(self, method: str) -> None:
        if method == "rpn" and self.config.get("rpn_file"):
            self._share_rpn_file(self.config["rpn_file"])
        for d in self._imdbs:
            d.set_proposal_method(method)
        self.roidb_handler = self._member_roidbs

    def _share_rpn_file(self, filename: str) -> None:
        """Check that ``filename`` holds this joined set's images in order; point each member
        at its part of it."""
        from frcnn.datasets.proposals import load_proposal_ids

        ids = load_proposal_ids(filename)
        self._check_proposal_ids(filename, ids, ids)
        start = 0
        for d in self._imdbs:
            d.config["rpn_file"] = filename
            d.config["rpn_part"] = (start, start + d.num_images)
            start += d.num_images

    def append_flipped_images(self) -> None:
        for d in self._imdbs:
            d.append_flipped_images()
        self._roidb = None

    def competition_mode(self, on: bool) -> None:
        for d in self._imdbs:
            d.competition_mode(on)

    def evaluate_detections(self, all_boxes: list, output_dir: str) -> dict:
        raise InputError(f"{self.name}: a joined ('+') dataset is for training; evaluate each member instead")
