"""The class names of a trained model, kept beside its snapshots.

``tools/train_net.py`` writes ``classes.txt`` into the training output folder (where the
snapshots go): ``__background__`` and then the set's classes, one per line, in the order of
the net's outputs. Its format is a VOC-format set's ``classes.txt``
(:func:`frcnn.datasets.voc_format.read_classes_file`), so ``tools/demo.py`` can name the
detections of a model without its dataset at hand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from frcnn.datasets.voc_format import read_classes_file
from frcnn.utils.io import atomic_write

CLASSES_FILE = "classes.txt"


def write_classes_file(folder: str, classes: Sequence[str], dataset: str = "") -> str:
    """Write ``<folder>/classes.txt`` (``classes`` with ``__background__`` first); return its path."""
    names = [c for c in classes if c != "__background__"]
    path = os.path.join(folder, CLASSES_FILE)
    os.makedirs(folder, exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write(f"# classes of the models in this folder{' (trained on ' + dataset + ')' if dataset else ''}, "
                "in the order of the net's outputs\n")
        f.write("\n".join(["__background__", *names]) + "\n")
    return path


def classes_beside(model_path: str) -> tuple[str, ...] | None:
    """``("__background__", ...)`` from the ``classes.txt`` in a model's folder, or None if none."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), CLASSES_FILE)
    if not os.path.isfile(path):
        return None
    return ("__background__", *read_classes_file(path))
