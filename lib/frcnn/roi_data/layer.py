"""The training data layer (upstream's ``lib/roi_data_layer/layer.py``, ``RoIDataLayer``).

Outline:
1. ``set_roidb(roidb)`` stores the roidb and draws the first permutation of it.
2. Order: with ASPECT_GROUPING, landscape-or-square (w >= h) and portrait images are each
   permuted, concatenated, cut into consecutive pairs, and the pairs permuted; otherwise a
   plain permutation. A new permutation is drawn when ``cur + IMS_PER_BATCH >= len(roidb)``
   (upstream's rule: the tail of each permutation is never used).
3. The order comes from the layer's own ``np.random.RandomState(RNG_SEED)``, used for
   nothing else (every process of a data-parallel run draws the same permutations). Each
   image's own draws (its scale; on the Fast R-CNN path, its RoI sampling) come from a NumPy
   generator keyed by (RNG_SEED, iteration, global image index) (``frcnn.roi_data.keys``): the
   solver tells the layer the position of each forward pass (``set_batch_position``), and a
   layer never told counts its passes. Everything is decided in the calling thread, so
   prefetching or not gives the same batches; ``get_state``/``set_state`` save and restore
   exactly where it is (order, RNG and position).
   Data parallel (``set_world_size``): rank r of R takes the r-th of each group of R
   consecutive minibatches of that one order (with ``iter_size`` passes, the r-th group of
   ``iter_size``), stepping over the others', so R ranks x 1 image see the images of 1 rank
   with iter_size R; between iterations the state is the same on every rank.
4. With USE_PREFETCH, background threads read and scale the images of the next planned
   minibatches (OpenCV and NumPy release the GIL), a bounded number ahead.
5. ``forward()`` returns the tops as float32 tensors: with HAS_RPN ``data`` (N, 3, H, W: the
   IMS_PER_BATCH images zero-padded to the largest), ``im_info`` (N, 3), ``gt_boxes`` ((G, 5);
   (G, 6) with the image index when N > 1); otherwise ``data``, ``rois``, ``labels`` and, with
   BBOX_REG, ``bbox_targets``, ``bbox_inside_weights``, ``bbox_outside_weights``.
"""

from __future__ import annotations

import collections
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from frcnn.caffe.python_layer import PythonLayer, parse_param_str
from frcnn.roi_data.keys import DATA, BatchPosition, PositionedLayer, numpy_generator
from frcnn.roi_data.minibatch import MinibatchConfig, build_minibatch, plan_minibatch


class RoIDataLayer(PositionedLayer, PythonLayer):
    """Fast R-CNN / Faster R-CNN data layer."""

    def __init__(
        self,
        conf: MinibatchConfig,
        ims_per_batch: int = 2,
        aspect_grouping: bool = True,
        seed: int = 3,
        use_prefetch: bool = False,
        num_workers: int = 2,
        queue_depth: int | None = None,
    ) -> None:
        super().__init__()
        if ims_per_batch < 1:
            raise ValueError(f"RoIDataLayer: IMS_PER_BATCH must be >= 1, got {ims_per_batch}")
        self.conf = conf
        self.ims_per_batch = int(ims_per_batch)
        self.aspect_grouping = bool(aspect_grouping)
        self.seed = int(seed)
        self._rng = np.random.RandomState(seed)  # the order only
        self.world_size = 1  # data parallel: the number of ranks (set_world_size)
        self._init_position()
        self._roidb: list[dict] | None = None
        self._perm = np.zeros((0,), dtype=np.int64)
        self._cur = 0
        self._state_before_roidb: dict | None = None
        self.use_prefetch = bool(use_prefetch)
        self.num_workers = max(1, int(num_workers))
        self.queue_depth = int(queue_depth) if queue_depth else 2 * self.num_workers
        self._executor: ThreadPoolExecutor | None = None
        self._pending: collections.deque[tuple[dict, Future]] = collections.deque()  # (state before, batch)
        if conf.has_rpn:
            self.top_names = ("data", "im_info", "gt_boxes")
        else:
            self.top_names = ("data", "rois", "labels") + (
                ("bbox_targets", "bbox_inside_weights", "bbox_outside_weights") if conf.bbox_reg else ()
            )

    @classmethod
    def from_caffe(cls, param_str: str, phase: str, cfg: Any) -> RoIDataLayer:
        params = parse_param_str(param_str, "RoIDataLayer")
        if "num_classes" not in params:
            raise ValueError(f"RoIDataLayer: param_str {param_str!r} lacks 'num_classes'")
        t = cfg.TRAIN
        return cls(
            MinibatchConfig.from_config(cfg, int(params["num_classes"])),
            ims_per_batch=int(t.IMS_PER_BATCH),
            aspect_grouping=bool(t.ASPECT_GROUPING),
            seed=int(cfg.RNG_SEED),
            use_prefetch=bool(t.USE_PREFETCH),
            num_workers=int(t.PREFETCH_WORKERS),
        )

    def top_shapes(self, bottom_shapes: list) -> list:
        """Shapes known before the first batch (Caffe's setup reshape): the image blob has 3
        channels, so the first convolution's weights can be made at build time."""
        k = 4 * self.conf.num_classes
        if self.conf.has_rpn:
            gt_cols = 5 if self.ims_per_batch == 1 else 6
            return [(self.ims_per_batch, 3, None, None), (self.ims_per_batch, 3), (None, gt_cols)]
        return [(self.ims_per_batch, 3, None, None), (None, 5), (None,), (None, k), (None, k), (None, k)][
            : len(self.top_names)
        ]

    # ---------------------------------------------------------------- order
    def _shuffle_roidb_inds(self) -> None:
        """Randomly permute the training roidb."""
        if self.aspect_grouping:
            widths = np.array([r["width"] for r in self._roidb])
            heights = np.array([r["height"] for r in self._roidb])
            horz = widths >= heights
            vert = np.logical_not(horz)
            horz_inds = np.where(horz)[0]
            vert_inds = np.where(vert)[0]
            inds = np.hstack((self._rng.permutation(horz_inds), self._rng.permutation(vert_inds)))
            # consecutive pairs, then the pairs permuted (an odd last index is a group of one;
            # upstream's reshape failed there)
            groups = [inds[k : k + 2] for k in range(0, len(inds), 2)]
            row_perm = self._rng.permutation(np.arange(len(groups)))
            self._perm = np.concatenate([groups[j] for j in row_perm]).astype(np.int64)
        else:
            self._perm = self._rng.permutation(np.arange(len(self._roidb))).astype(np.int64)
        self._cur = 0

    def _get_next_minibatch_inds(self) -> np.ndarray:
        """The roidb indices of the next minibatch."""
        if self._cur + self.ims_per_batch >= len(self._roidb):
            self._shuffle_roidb_inds()
        db_inds = self._perm[self._cur : self._cur + self.ims_per_batch]
        self._cur += self.ims_per_batch
        return db_inds

    def set_world_size(self, world_size: int) -> None:
        """Data parallel: this layer is one of ``world_size`` ranks' (its rank is the batch
        position's). Every rank walks the one order; rank r of R takes the minibatches that
        passes ``r * iter_size .. r * iter_size + iter_size - 1`` of one rank with ``iter_size``
        ``R * iter_size`` would take, and steps over the others' (see :meth:`_shard_inds`)."""
        if int(world_size) < 1:
            raise ValueError(f"RoIDataLayer.set_world_size: need >= 1, got {world_size}")
        self._drop_pending()
        self.world_size = int(world_size)

    def _shard_inds(self, position: BatchPosition) -> np.ndarray:
        """The minibatch of ``position`` on its rank: the iteration's minibatches of the ranks
        before it are drawn and skipped at its first pass, those of the ranks after it at its
        last, so that between iterations every rank's order state is the same (the state a
        snapshot holds, valid for any rank)."""
        if position.rank >= self.world_size:
            raise ValueError(f"RoIDataLayer: rank {position.rank} of a world of {self.world_size}")
        first, last = position.pass_index == 0, position.pass_index == position.iter_size - 1
        for _ in range(position.rank * position.iter_size if first else 0):
            self._get_next_minibatch_inds()
        db_inds = self._get_next_minibatch_inds()
        for _ in range((self.world_size - 1 - position.rank) * position.iter_size if last else 0):
            self._get_next_minibatch_inds()
        return db_inds

    def _next_job(self) -> tuple[dict, list[dict], Any]:
        state = self._snapshot()
        if self.world_size == 1:
            db_inds = self._get_next_minibatch_inds()
        else:
            db_inds = self._shard_inds(self._position)
        entries = [self._roidb[i] for i in db_inds]  # type: ignore[index]
        position = self._take_position()
        n = len(entries)
        rngs = [numpy_generator(self.seed, DATA, position.iteration, position.image_index(j, n)) for j in range(n)]
        plan = plan_minibatch(entries, self.conf, rngs)
        return state, entries, plan

    def set_batch_position(self, iteration: int, pass_index: int = 0, iter_size: int = 1, rank: int = 0) -> None:
        """The next minibatch is for this position; minibatches planned ahead for another one
        (a prefetched batch) are dropped and planned again."""
        wanted = BatchPosition(int(iteration), int(pass_index), int(iter_size), int(rank))
        if self._pending and BatchPosition.from_array(self._pending[0][0]["position"]) != wanted:
            self._drop_pending()
        self._position = wanted

    # ---------------------------------------------------------------- roidb and state
    def set_roidb(self, roidb: list[dict]) -> None:
        """Set the roidb to be used by this layer during training."""
        if not roidb:
            raise ValueError("RoIDataLayer.set_roidb: empty roidb (no training images left after filtering?)")
        for k in ("image", "width", "height", "max_overlaps", "max_classes", "flipped"):
            if k not in roidb[0]:
                raise ValueError(
                    f"RoIDataLayer.set_roidb: roidb entries lack '{k}' (call prepare_roidb first)"
                )
        self._drop_pending()
        self._roidb = roidb
        if self._state_before_roidb is not None:
            state, self._state_before_roidb = self._state_before_roidb, None
            self._restore(state)
        else:
            self._shuffle_roidb_inds()

    def _snapshot(self) -> dict:
        _name, keys, pos, has_gauss, cached = self._rng.get_state()
        return {
            "num_images": len(self._roidb) if self._roidb is not None else 0,
            "perm": self._perm.copy(),
            "cur": int(self._cur),
            "rng_keys": np.array(keys, dtype=np.uint32),
            "rng_pos": int(pos),
            "rng_has_gauss": int(has_gauss),
            "rng_cached_gaussian": float(cached),
            "position": self._position.as_array(),
            "seed": self.seed,  # the keys of the per-image draws
        }

    def _restore(self, state: dict) -> None:
        n = len(self._roidb)
        if int(state["num_images"]) != n:
            raise ValueError(
                f"RoIDataLayer.set_state: the state was saved for {int(state['num_images'])} images, "
                f"the roidb has {n} (another dataset or other filtering settings?)"
            )
        self._perm = np.asarray(state["perm"], dtype=np.int64).copy()
        self._cur = int(state["cur"])
        self._rng.set_state(
            (
                "MT19937",
                np.asarray(state["rng_keys"], dtype=np.uint32),
                int(state["rng_pos"]),
                int(state["rng_has_gauss"]),
                float(state["rng_cached_gaussian"]),
            )
        )
        if "position" in state:  # states written before positions existed: the solver sets it anyway
            self._position = BatchPosition.from_array(state["position"])
        if "seed" in state:
            self.seed = int(state["seed"])

    def get_state(self) -> dict:
        """Where the layer is: the order, the place in it, the RNG and the batch position, as plain
        numbers and arrays; restoring it makes the next ``forward`` return what it would have returned."""
        if self._pending:
            return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._pending[0][0].items()}
        return self._snapshot()

    def set_state(self, state: dict) -> None:
        """Restore a :meth:`get_state` result (before or after ``set_roidb``)."""
        missing = [k for k in ("num_images", "perm", "cur", "rng_keys", "rng_pos") if k not in state]
        if missing:
            raise ValueError(f"RoIDataLayer.set_state: state lacks {', '.join(missing)}")
        self._drop_pending()
        if self._roidb is None:
            self._state_before_roidb = dict(state)
        else:
            self._restore(state)

    # ---------------------------------------------------------------- prefetching
    def _fill(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.num_workers, thread_name_prefix="roi_data")
        while len(self._pending) < self.queue_depth:
            state, entries, plan = self._next_job()
            self._pending.append((state, self._executor.submit(build_minibatch, entries, plan, self.conf)))

    def _drop_pending(self) -> None:
        """Forget minibatches planned ahead; the order state goes back to the first of them."""
        if self._pending:
            first_state = self._pending[0][0]
            for _, fut in self._pending:
                fut.cancel()
            for _, fut in self._pending:
                if not fut.cancelled():
                    # a dropped batch's error does not matter
                    with contextlib.suppress(Exception):
                        fut.result()
            self._pending.clear()
            self._restore(first_state)

    def close(self) -> None:
        """Stop the background workers (pending minibatches are dropped)."""
        self._drop_pending()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            with contextlib.suppress(Exception):  # interpreter shutdown
                executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- forward
    def next_blobs(self) -> dict[str, np.ndarray]:
        """The next minibatch as a dict of NumPy blobs."""
        if self._roidb is None:
            raise RuntimeError("RoIDataLayer: call set_roidb(roidb) before forward()")
        if self.use_prefetch:
            self._fill()
            _, fut = self._pending.popleft()
            blobs = fut.result()
            self._fill()
            return blobs
        _, entries, plan = self._next_job()
        return build_minibatch(entries, plan, self.conf)

    def forward(self, *bottoms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Get blobs and copy them into this layer's top blob vector."""
        blobs = self.next_blobs()
        return tuple(
            torch.from_numpy(np.ascontiguousarray(blobs[name], dtype=np.float32)) for name in self.top_names
        )
