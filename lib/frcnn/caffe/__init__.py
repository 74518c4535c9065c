"""The Caffe-compatible engine: prototxt nets on torch tensors, Caffe's SGD solver and
.caffemodel weights.

``Net(prototxt, weights=None, phase=TEST, cfg=None)``; ``SGDSolver(solver_prototxt, cfg=None)``;
``prototxt.parse_file`` / ``prototxt.write_file``; ``caffemodel.read_caffemodel`` /
``caffemodel.write_caffemodel``.
"""

from .net import TEST, TRAIN, Net

__all__ = ["TEST", "TRAIN", "Net", "SGDSolver"]


def __getattr__(name: str):
    if name == "SGDSolver":
        from .solver import SGDSolver

        return SGDSolver
    raise AttributeError(f"module 'frcnn.caffe' has no attribute {name!r}")
