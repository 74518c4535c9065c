"""``SGDSolver``: Caffe's SGD solver, update for update.

Per iteration (Solver::Step + SGDSolver::ApplyUpdate): clear the gradients; run forward and
backward ``iter_size`` times, accumulating; log (every ``display`` iterations); the learning
rate of the policy at the current iteration (before the increment); clip gradients if
``clip_gradients`` > 0; then per learnable blob, with ``local_rate = rate * lr_mult``:
(1) ``g /= iter_size``, (2) ``g += weight_decay * decay_mult * w`` (L2; L1 uses sign(w)),
(3) ``v = momentum * v + local_rate * g``, (4) ``w -= v``; ``iter += 1``; snapshot every
``snapshot`` iterations. With ``world_size`` > 1 (torchrun ranks) the gradients and losses are
averaged over the ranks after the ``iter_size`` passes and before (1) (Caffe's multi-GPU solver). Blobs with ``lr_mult: 0`` never change (their history stays 0).
With float16 training (``TRAIN.AMP`` "fp16") the loss is scaled before backward and the
gradients unscaled before the update, which is skipped for an iteration whose gradients
overflow (``frcnn.caffe.precision.LossScaler``; the iteration still counts).

The displayed loss is smoothed over ``average_loss`` iterations *within one ``step()`` call*
(Caffe restarts the smoothing at each call, so py-faster-rcnn's ``step(1)`` loop printed the
plain loss of each iteration).

Paths: ``net``/``train_net`` are opened relative to the working directory as in Caffe (then
the solver's folder, then ``cfg.ROOT_DIR``); ``snapshot_prefix`` is used as written, i.e.
relative to the working directory, as in Caffe.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import time
from typing import Any

import torch

from . import solver_state as st
from .host_memory import keep_freed_memory
from .net import TRAIN, Net
from .precision import LossScaler
from .prototxt import Message
from .solver_param import SolverParameter, read_solver

logger = logging.getLogger("frcnn.caffe.solver")


def _emit(msg: str) -> None:
    """Log through ``logging`` when the program configured it, else print (Caffe logs always show)."""
    if logging.getLogger().handlers or logger.handlers:
        logger.info(msg)
    else:
        print(msg, flush=True)


def _g(x: float) -> str:
    """A number as C++ ostream prints it by default (6 significant digits)."""
    return f"{x:.6g}"


class SGDSolver:
    """See the module docstring. ``weights``: initial weights copied in by layer name."""

    def __init__(self, solver_prototxt: str | Message, cfg: Any = None, weights: str | None = None, *,
                 allow_python_modules: Any = None) -> None:
        root = getattr(cfg, "ROOT_DIR", None) if cfg is not None else None
        self.param: SolverParameter = read_solver(solver_prototxt, root)
        if self.param.random_seed >= 0:
            torch.manual_seed(self.param.random_seed)  # before the net, so fillers repeat (as Caffe)
        if self.param.test_interval:
            _emit(f"{self.param.source}: test nets are not run by this solver (test_interval ignored)")
        net_src = self.param.net_param if self.param.net_param is not None else self.param.net
        self.net = Net(net_src, None, TRAIN, cfg, allow_python_modules=allow_python_modules)
        if weights is not None:
            _emit(self.net.copy_from(weights).summary())
        if cfg is not None and getattr(cfg, "GPU_ID", None) is not None:
            from frcnn.config import device_from_config

            self.net.to(device_from_config(cfg))
        if self.net.device.type == "cpu":  # the iterations reuse their host memory (host_memory)
            keep_freed_memory()
        #: float16 training (TRAIN.AMP "fp16"): dynamic loss scaling around Caffe's update
        self.scaler = LossScaler(self.net.device) if self.net.precision.amp == torch.float16 else None
        self.iter = 0
        self.current_step = 0
        #: this process's rank in a data-parallel run (0 alone); with the iteration and the pass it
        #: tells the layers which images a forward pass holds (``set_batch_position``)
        self.rank = 0
        #: the number of ranks of a data-parallel run (1 alone; set by the launcher with ``rank``):
        #: with more, the gradients and losses are averaged over the ranks before each update
        self.world_size = 1
        self.history: dict[str, torch.Tensor] = {}  # "layer/index" -> momentum history
        self._last_losses: dict[str, float] = {}
        self._timer: tuple[float, int] | None = None

    # -- learning rate ------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The rate the next update will use (the multistep counter is not advanced)."""
        return self.param.learning_rate(self.iter, self.current_step)[0]

    # -- one iteration ------------------------------------------------------------------
    def step(self, iters: int) -> None:
        """Run ``iters`` iterations (Caffe's Solver::Step)."""
        p = self.param
        start_iter, stop = self.iter, self.iter + iters
        losses: list[float] = []
        smoothed = 0.0
        if self._timer is None:
            self._timer = (time.perf_counter(), self.iter)
        while self.iter < stop:
            for q in self.net.parameters():
                q.grad = None
            loss, outputs = self._forward_backward(p.iter_size)
            if self.world_size > 1:
                loss = self._average_over_ranks(loss)
            # Caffe's UpdateSmoothedLoss, restarted for every step() call
            if len(losses) < p.average_loss:
                losses.append(loss)
                smoothed = (smoothed * (len(losses) - 1) + loss) / len(losses)
            else:
                idx = (self.iter - start_iter) % p.average_loss
                smoothed += (loss - losses[idx]) / p.average_loss
                losses[idx] = loss
            display = p.display > 0 and self.iter % p.display == 0 and self.rank == 0  # (Caffe: the root solver)
            if display:
                self._log_iteration(smoothed, outputs)
            if self.scaler is None:
                self._apply_update(display)
            elif not self.scaler.step([p for _, _, p, _ in self.net.learnable_params()],
                                      functools.partial(self._apply_update, display)):
                _emit(f"Iteration {self.iter}: float16 gradients overflowed; update skipped, "
                      f"loss scale now {_g(self.scaler.current)}")
            self.iter += 1
            if p.snapshot > 0 and self.iter % p.snapshot == 0:
                self.snapshot()

    def _forward_backward(self, iter_size: int) -> tuple[float, dict[str, torch.Tensor]]:
        total = 0.0
        sums: dict[str, float] = {}
        outputs: dict[str, torch.Tensor] = {}
        for k in range(iter_size):
            for layer in self.net.layers:  # the data and RPN layers key their random draws by it
                set_position = getattr(layer, "set_batch_position", None)
                if callable(set_position):
                    set_position(self.iter, k, iter_size, self.rank)
            outputs = self.net.forward()
            if self.net.loss is None:
                raise RuntimeError(f"{self.param.source}: the train net has no loss (no *Loss layer or loss_weight)")
            if self.net.loss.requires_grad:
                (self.net.loss if self.scaler is None else self.scaler.scale(self.net.loss)).backward()
            total += float(self.net.loss.detach())
            for name in self.net.loss_weights:
                if name in outputs:
                    sums[name] = sums.get(name, 0.0) + float(outputs[name].detach().sum())
        self._last_losses = {k: v / iter_size for k, v in sums.items()}
        return total / iter_size, {k: v.detach() for k, v in outputs.items()}

    def _average_over_ranks(self, loss: float) -> float:
        """Data parallel: each learnable blob's gradient (accumulated over ``iter_size`` passes)
        and the losses become their mean over the ranks, all-reduce sum / R, before the update
        (Caffe's multi-GPU solver, P2PSync); returns the mean loss. R ranks x 1 image is then
        1 rank with ``iter_size`` R, and every rank logs, checks and updates alike."""
        from frcnn.utils.distributed import average_

        params = [w for _, _, w, _ in self.net.learnable_params()]
        for w in params:
            if w.grad is None:  # (every rank sends every blob, in the net's order)
                w.grad = torch.zeros_like(w)
        names = list(self._last_losses)  # (the net's order: the same on every rank)
        stats = torch.tensor([loss, *(self._last_losses[k] for k in names)], dtype=torch.float64,
                             device=self.net.device)
        average_([*(w.grad for w in params), stats])
        values = stats.tolist()
        self._last_losses = dict(zip(names, values[1:]))
        return values[0]

    def last_losses(self) -> dict[str, float]:
        """The loss outputs of the last iteration (mean over its ``iter_size`` passes), unweighted."""
        return dict(self._last_losses)

    def _log_iteration(self, smoothed: float, outputs: dict[str, torch.Tensor]) -> None:
        _emit(f"Iteration {self.iter}, loss = {_g(smoothed)}")
        index = 0
        for name, value in outputs.items():
            w = self.net.loss_weights.get(name, 0.0)
            flat = value.reshape(-1).float().cpu().tolist()
            for k, v in enumerate(flat):
                if k == 100 and len(flat) > 101:
                    _emit(f"    Train net output #{index}...: {name} ({len(flat) - k} more values not shown)")
                    index += len(flat) - k
                    break
                extra = f" (* {_g(w)} = {_g(w * v)} loss)" if w else ""
                _emit(f"    Train net output #{index}: {name} = {_g(v)}{extra}")
                index += 1
        t0, i0 = self._timer or (time.perf_counter(), self.iter)
        done = self.iter - i0
        if done > 0:
            per = (time.perf_counter() - t0) / done
            left = max(self.param.max_iter - self.iter, 0) * per
            _emit(f"    speed: {per:.3f}s / iter ({1 / per:.2f} iter/s), "
                  f"time left to max_iter {self.param.max_iter}: {datetime.timedelta(seconds=round(left))}")
            self._timer = (time.perf_counter(), self.iter)

    def _apply_update(self, display: bool) -> None:
        p = self.param
        rate, self.current_step = p.learning_rate(self.iter, self.current_step)
        if display:
            _emit(f"Iteration {self.iter}, lr = {_g(rate)}")
        params = self.net.learnable_params()
        with torch.no_grad():
            grads = [w.grad if w.grad is not None else torch.zeros_like(w) for _, _, w, _ in params]
            if p.clip_gradients > 0:
                norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
                if norm > p.clip_gradients:
                    factor = p.clip_gradients / norm
                    _emit(f"Gradient clipping: scaling down gradients (L2 norm {_g(norm)} > "
                          f"{_g(p.clip_gradients)}) by scale factor {_g(factor)}")
                    grads = [g * factor for g in grads]
            scratch = None
            for (layer, i, w, spec), g in zip(params, grads):
                key = f"{layer}/{i}"
                v = self.history.get(key)
                if v is None:
                    v = torch.zeros_like(w)
                elif v.shape != w.shape:
                    raise RuntimeError(f"momentum history of {key} has shape {tuple(v.shape)}, the blob "
                                       f"{tuple(w.shape)} (solver state from another net?)")
                else:
                    v = v.to(w.device)
                decay = p.weight_decay * spec.decay_mult
                if _fused_update_applies(w, g, v, decay, p.regularization_type):
                    torch.ops.frcnn.sgd_update_(w, g, v, _grad_scale(p.iter_size), decay, p.momentum,
                                                rate * spec.lr_mult)
                else:
                    if scratch is None:
                        scratch = self._scratch_for(params)
                    _torch_update(w, g, v, p.iter_size, decay, p.regularization_type, p.momentum,
                                  rate * spec.lr_mult, scratch)
                self.history[key] = v

    def _scratch_for(self, params: list) -> dict[tuple, torch.Tensor]:
        """Work space for the update, kept between iterations: one buffer per (device, dtype) as
        large as the largest blob (a fresh gradient-sized tensor per blob and iteration costs more
        than the arithmetic: the allocator returns large blocks to the system and faults them in
        again)."""
        need: dict[tuple, int] = {}
        for _, _, w, _ in params:
            key = (w.device, w.dtype)
            need[key] = max(need.get(key, 0), w.numel())
        scratch = getattr(self, "_scratch", {})
        for key, n in need.items():
            if key not in scratch or scratch[key].numel() < n:
                scratch[key] = torch.empty(n, device=key[0], dtype=key[1])
        self._scratch = scratch
        return scratch

    # -- snapshots ----------------------------------------------------------------------
    def snapshot(self, path: str | None = None) -> str:
        """Without ``path``: Caffe's snapshot, ``<prefix>_iter_<n>.caffemodel`` plus
        ``<prefix>_iter_<n>.solverstate`` naming it; returns the .caffemodel path. With
        ``path``: only the solver state, written there (the caller saves the weights itself,
        e.g. with transformed ``bbox_pred``); returns ``path``."""
        if path is not None:
            self.save_state(path)
            return path
        # no snapshot_prefix: the solver file's path without its extension (newer Caffe's default)
        prefix = self.param.snapshot_prefix or os.path.splitext(self.param.source)[0]
        base = f"{prefix}_iter_{self.iter}"
        model = base + ".caffemodel"
        _emit(f"Snapshotting to binary proto file {model}")
        self.net.save(model)
        _emit(f"Snapshotting solver state to binary proto file {base}.solverstate")
        self.save_state(base + ".solverstate", model)
        return model

    def save_state(self, path: str, weights_path: str | None = None) -> None:
        """Write the resume state (see ``solver_state``); ``weights_path`` is recorded as
        ``learned_net`` (relative to the state file's folder when it lies there)."""
        layers = {}
        for layer in self.net.layers:
            get = getattr(layer, "get_state", None)
            state = get() if callable(get) else None
            if state is not None:
                layers[layer.name] = st.to_safe(state, f"layer '{layer.name}' get_state()")
        learned = ""
        if weights_path:
            folder = os.path.dirname(os.path.abspath(path))
            learned = os.path.relpath(os.path.abspath(weights_path), folder)
        st.save_state(path, {
            "iter": self.iter, "current_step": self.current_step, "learned_net": learned,
            "history": {k: v.detach().cpu() for k, v in self.history.items()},
            "rng": st.capture_rng(), "layers": layers,
            **({} if self.scaler is None else {"loss_scaler": self.scaler.state_dict()}),
        })

    def restore(self, path: str) -> None:
        """Continue from a state file: iteration, multistep counter, momentum history, RNG
        states, layer states, and the weights of ``learned_net`` when it names a file."""
        state = st.load_state(path)
        if state.get("learned_net"):
            weights = os.path.join(os.path.dirname(os.path.abspath(path)), state["learned_net"])
            self.net.copy_from(weights)
        self.iter = int(state["iter"])
        self.current_step = int(state["current_step"])
        device = self.net.device
        self.history = {k: v.to(device) for k, v in state["history"].items()}
        by_name = self.net.layer_dict
        for name, layer_state in state["layers"].items():
            if name not in by_name:
                raise ValueError(f"{path}: holds the state of layer '{name}', which the net lacks")
            by_name[name].set_state(st.from_safe(layer_state))
        st.restore_rng(state["rng"])
        if self.scaler is not None and "loss_scaler" in state:
            self.scaler.load_state_dict(state["loss_scaler"])
        self._timer = None


def regularized_gradient(g: torch.Tensor, w: torch.Tensor, iter_size: int, decay: float, regularization: str,
                         scratch: dict[tuple, torch.Tensor]) -> torch.Tensor:
    """Caffe's Normalize and Regularize: ``g / iter_size``, then ``+ decay * w`` (L2) or
    ``+ decay * sign(w)`` (L1). The same float operations, in the same order, as the plain
    expressions ``g * (1 / iter_size) + decay * w``; the result is written into ``scratch``
    (``_scratch_for``) rather than into new tensors, and ``g`` itself is left as it is."""
    if iter_size <= 1 and not decay:
        return g
    buf = scratch[(w.device, w.dtype)][: w.numel()].view(w.shape)
    if not decay:
        return torch.mul(g, 1.0 / iter_size, out=buf)
    if regularization == "L2":
        torch.mul(w, decay, out=buf)
    else:
        torch.sign(w, out=buf).mul_(decay)
    if iter_size > 1:
        return buf.add_(g * (1.0 / iter_size))  # (x + y == y + x in IEEE arithmetic)
    return buf.add_(g)


def momentum_update(v: torch.Tensor, g: torch.Tensor, momentum: float, local_rate: float) -> torch.Tensor:
    """Caffe's history update ``v = momentum * v + local_rate * g`` (caffe_cpu_axpby)."""
    return v.mul_(momentum).add_(g, alpha=local_rate)


def _torch_update(w: torch.Tensor, g: torch.Tensor, v: torch.Tensor, iter_size: int, decay: float,
                  regularization: str, momentum: float, rate: float,
                  scratch: dict[tuple, torch.Tensor] | None = None) -> None:
    """The update of one blob by torch operations, in place in ``w`` and ``v`` (``_apply_update``'s
    general path; ``scratch`` as ``regularized_gradient`` takes it, or None for a fresh one)."""
    if scratch is None:
        scratch = {(w.device, w.dtype): torch.empty(w.numel(), dtype=w.dtype, device=w.device)}
    g = regularized_gradient(g, w, iter_size, decay, regularization, scratch)
    momentum_update(v, g, momentum, rate)
    w.sub_(v)


def _grad_scale(iter_size: int) -> float:
    """``sgd_update_``'s grad_scale: 1 / iter_size, or exactly 1 (no scaling) for iter_size 1."""
    return 1.0 / iter_size if iter_size > 1 else 1.0


@functools.cache
def _fused_update_matches_torch(device: str = "cpu") -> bool:
    """Whether ``torch.ops.frcnn.sgd_update_`` (csrc/sgd: the update in one pass over memory)
    gives, on this machine and device (``"cpu"``, ``"cuda:0"``, ...), the bits of the torch
    operations of the general path. Checked once per process and device on 2,000 values of the
    sizes a solver sees (normal, tiny, subnormal, zero of both signs, infinite, NaN), for every
    form of the update (iter_size 1 and 3, decay 0 and not), lengths that end inside a vector
    register included. False (the torch path) where it differs, where the extension or its CUDA
    kernel is missing, or with ``FRCNN_FUSED_SGD=0``."""
    if os.environ.get("FRCNN_FUSED_SGD", "1") == "0":
        return False
    try:
        from frcnn.ops._native import native, with_cuda

        native()
        op = torch.ops.frcnn.sgd_update_
        if torch.device(device).type == "cuda" and not with_cuda():
            return False
    except (ImportError, AttributeError, RuntimeError):
        return False
    gen = torch.Generator().manual_seed(20161201)
    n = 2000

    def values(scale: float) -> torch.Tensor:
        x = torch.randn(n, generator=gen) * scale * torch.exp(torch.randn(n, generator=gen) * 3)
        x[:12] = torch.tensor([0.0, -0.0, 1e-40, -1e-40, 1e-30, float("inf"), float("-inf"), float("nan"),
                               1.0, -1.0, 3e38, -3e38])
        return x[torch.randperm(n, generator=gen)].to(device)

    w0, g0, v0 = values(1e-2), values(1e-3), values(1e-4)
    for iter_size in (1, 3):
        for decay in (0.0, 0.0005):
            for momentum, rate in ((0.9, 0.001), (0.9, 0.002 * 2), (0.0, 0.1)):
                for length in (n, 1, 7, 13, 31, 1027):
                    w1, g1, v1 = w0[:length].clone(), g0[:length].clone(), v0[:length].clone()
                    w2, g2, v2 = w1.clone(), g1.clone(), v1.clone()
                    _torch_update(w1, g1, v1, iter_size, decay, "L2", momentum, rate)
                    try:
                        op(w2, g2, v2, _grad_scale(iter_size), decay, momentum, rate)
                    except (RuntimeError, NotImplementedError) as exc:  # no kernel for this device
                        logger.info("frcnn::sgd_update_ is not available on %s (%s): the solver updates "
                                    "by the torch operations", device, exc)
                        return False
                    for a, b in ((w1, w2), (v1, v2)):
                        if not torch.equal(a.view(torch.int32), b.view(torch.int32)):
                            logger.info("frcnn::sgd_update_ differs from the torch operations on %s: "
                                        "the solver updates by the torch operations", device)
                            return False
    return True


def _fused_update_applies(w: torch.Tensor, g: torch.Tensor, v: torch.Tensor, decay: float,
                          regularization: str) -> bool:
    """The one-pass update serves float32 blobs on the CPU or a CUDA device with L2 (or no)
    weight decay; anything else takes the torch operations."""
    return (w.device.type in ("cpu", "cuda") and g.device == w.device and v.device == w.device
            and w.dtype == torch.float32 and g.dtype == torch.float32 and v.dtype == torch.float32
            and w.is_contiguous() and g.is_contiguous() and v.is_contiguous()
            and (regularization == "L2" or not decay)
            and g.data_ptr() != w.data_ptr() and v.data_ptr() != w.data_ptr() and v.data_ptr() != g.data_ptr()
            and _fused_update_matches_torch(str(w.device)))
