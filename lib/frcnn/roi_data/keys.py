"""Per-image random generators keyed by (seed, iteration, global image index, purpose).

Every random draw made for one training image (its scale and the data layer's RoI sampling, the
anchor target layer's anchor sampling, the proposal target layer's RoI sampling) comes from a
generator made for that image alone, seeded from

    (RNG_SEED, purpose, iteration, global image index)

so that the draws for an image do not depend on how the images of an iteration are spread
over forward passes or processes. The *global image index* numbers the images of one solver
iteration: with ``R`` processes (torchrun ranks), ``iter_size`` forward passes per iteration and
``N`` images per pass (TRAIN.IMS_PER_BATCH), image ``j`` of pass ``k`` on rank ``r`` is

    r * (iter_size * N) + k * N + j

so that R ranks x 1 image, 1 rank x iter_size R and 1 rank x R images per batch all number
the same images 0 .. R-1. (What an image is, is the data layer's order; sharding that order
over ranks is the data-parallel launcher's part.) :class:`BatchPosition` carries
(iteration, pass, iter_size, rank) from the solver to the layers
(``set_batch_position``); a layer that is never told counts forward passes itself, starting
at iteration 0.

The draws of an image are a function of its key *and of its minibatch* (a layer may draw one
number per anchor of the padded feature map): the same minibatch gives the same draws, which
is what the layouts above share. Purposes keep the streams of the layers apart.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

#: purpose tags (part of the key; never reuse a number for another draw)
DATA = 1  # data layer: which of TRAIN.SCALES, then (Fast R-CNN path) the fg/bg RoI sampling
ANCHORS = 3  # anchor target layer: fg/bg anchor sampling
PROPOSAL_ROIS = 4  # proposal target layer: fg/bg RoI sampling
NO_CLS = 5  # proposal layer, TEST.RPN_ABLATION no_cls: the random proposals

_MASK64 = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class BatchPosition:
    """Where a forward pass sits in training: solver ``iteration``, ``pass_index`` of
    ``iter_size`` passes, the process's ``rank``."""

    iteration: int = 0
    pass_index: int = 0
    iter_size: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        if self.iteration < 0 or self.iter_size < 1 or not 0 <= self.pass_index < self.iter_size or self.rank < 0:
            raise ValueError(
                f"BatchPosition: need iteration >= 0, 0 <= pass_index < iter_size and rank >= 0, got {self}"
            )

    def image_index(self, j: int, ims_per_batch: int) -> int:
        """The global index of image ``j`` of this pass's minibatch of ``ims_per_batch`` images."""
        return (self.rank * self.iter_size + self.pass_index) * int(ims_per_batch) + int(j)

    def next(self) -> BatchPosition:
        """The position of the following forward pass."""
        if self.pass_index + 1 < self.iter_size:
            return dataclasses.replace(self, pass_index=self.pass_index + 1)
        return dataclasses.replace(self, iteration=self.iteration + 1, pass_index=0)

    def as_array(self) -> np.ndarray:
        """(iteration, pass_index, iter_size, rank) as int64, for a layer's ``get_state``."""
        return np.array([self.iteration, self.pass_index, self.iter_size, self.rank], dtype=np.int64)

    @classmethod
    def from_array(cls, a: np.ndarray) -> BatchPosition:
        v = [int(x) for x in np.asarray(a).reshape(-1)]
        if len(v) != 4:
            raise ValueError(f"BatchPosition.from_array: expected 4 numbers, got {v}")
        return cls(*v)


def image_seed(seed: int, purpose: int, iteration: int, image_index: int) -> int:
    """A 64-bit seed of the key (NumPy's SeedSequence mixes the four numbers)."""
    words = [int(seed) & _MASK64, int(purpose), int(iteration), int(image_index)]
    if min(words) < 0:
        raise ValueError(f"image_seed: iteration and image index must be >= 0, got {words[2:]}")
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return (int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1)


def numpy_generator(seed: int, purpose: int, iteration: int, image_index: int) -> np.random.Generator:
    """The image's NumPy generator (PCG64) for ``purpose``."""
    return np.random.Generator(np.random.PCG64(image_seed(seed, purpose, iteration, image_index)))


def torch_generator(
    seed: int, purpose: int, iteration: int, image_index: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """The image's torch generator for ``purpose`` on ``device`` (a CUDA generator there, so the
    draws stay on the device; CPU and CUDA generators give different numbers)."""
    g = torch.Generator(device=device)
    g.manual_seed(image_seed(seed, purpose, iteration, image_index))
    return g


def random_keys(n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """``n`` sampling keys in [0, 1), float64 (see ``frcnn.roi_data.sampling.keyed_take``)."""
    return torch.rand(n, generator=generator, device=device, dtype=torch.float64)


class PositionedLayer:
    """Mixin of the layers that key draws by :class:`BatchPosition`: ``set_batch_position``
    (called by the solver before each forward pass) and ``_take_position`` (the position of the
    pass now running; the next pass defaults to the one after it)."""

    _position: BatchPosition

    def _init_position(self) -> None:
        self._position = BatchPosition()

    def set_batch_position(self, iteration: int, pass_index: int = 0, iter_size: int = 1, rank: int = 0) -> None:
        """The next forward pass is ``pass_index`` of ``iter_size`` in solver ``iteration`` on ``rank``."""
        self._position = BatchPosition(int(iteration), int(pass_index), int(iter_size), int(rank))

    @property
    def batch_position(self) -> BatchPosition:
        """The position the next forward pass will use."""
        return self._position

    def _take_position(self) -> BatchPosition:
        position = self._position
        self._position = position.next()
        return position
