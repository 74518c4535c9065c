"""TRAIN.SOLVER_BASE_LR / _STEPSIZE / _ITER_SIZE replace the solver file's schedule."""

import pytest

from frcnn.caffe.solver_param import SolverParameter
from frcnn.config import ConfigError, get_default_config
from frcnn.training.schedule import apply_solver_overrides
from tests.training.test_train import _setup, _wrapper


def test_overrides_replace_only_what_is_set():
    cfg = get_default_config()
    p = SolverParameter(base_lr=0.001, lr_policy="step", gamma=0.1, stepsize=50000, iter_size=2)
    assert apply_solver_overrides(p, cfg) == {}
    assert (p.base_lr, p.stepsize, p.iter_size) == (0.001, 50000, 2)
    cfg.TRAIN.SOLVER_BASE_LR, cfg.TRAIN.SOLVER_STEPSIZE = 0.003, 240000
    assert apply_solver_overrides(p, cfg) == {"base_lr": (0.001, 0.003), "stepsize": (50000, 240000)}
    assert (p.base_lr, p.stepsize, p.iter_size) == (0.003, 240000, 2)
    cfg.TRAIN.SOLVER_ITER_SIZE = 8
    apply_solver_overrides(p, cfg)
    assert p.iter_size == 8 and isinstance(p.iter_size, int)
    # the paper's schedule: 0.003 up to iteration 240k, then 0.0003
    assert p.learning_rate(239999, 0)[0] == pytest.approx(0.003)
    assert p.learning_rate(240000, 0)[0] == pytest.approx(0.0003)


def test_bad_overrides_are_named():
    cfg = get_default_config()
    cfg.TRAIN.SOLVER_STEPSIZE = 10
    with pytest.raises(ConfigError, match="TRAIN.SOLVER_STEPSIZE 10: the solver s.prototxt has lr_policy 'fixed'"):
        apply_solver_overrides(SolverParameter(source="s.prototxt", lr_policy="fixed"), cfg)
    cfg = get_default_config()
    cfg.TRAIN.SOLVER_BASE_LR = -0.1
    with pytest.raises(ConfigError, match="TRAIN.SOLVER_BASE_LR must be >= 0"):
        apply_solver_overrides(SolverParameter(), cfg)


def test_training_uses_the_overridden_schedule(tmp_path, capsys):
    cfg, nets = _setup(tmp_path, SOLVER_BASE_LR=0.004, SOLVER_STEPSIZE=2, SOLVER_ITER_SIZE=2, SNAPSHOT_ITERS=10)
    sw = _wrapper(cfg, nets)
    assert "base_lr 0.004 (solver file: 0.01), stepsize 2 (solver file: 2000), iter_size 2 (solver file: 1)" in (
        capsys.readouterr().out)
    calls = []
    real_forward = sw.net.forward

    def counting_forward(*args, **kwargs):
        calls.append(sw.solver.iter)
        return real_forward(*args, **kwargs)

    sw.net.forward = counting_forward
    assert sw.solver.lr == pytest.approx(0.004)
    sw.train_model(3)
    assert calls.count(0) == 2 and calls.count(2) == 2  # two minibatches per update
    assert sw.solver.lr == pytest.approx(0.0004)  # stepped at iteration 2


def test_overrides_are_part_of_the_resume_fingerprint(tmp_path):
    from frcnn.training.train import ResumeMismatch

    cfg, nets = _setup(tmp_path, SNAPSHOT_ITERS=1)
    _wrapper(cfg, nets).train_model(1)
    cfg.TRAIN.SOLVER_BASE_LR = 0.003
    with pytest.raises(ResumeMismatch, match="other settings"):
        _wrapper(cfg, nets).train_model(2)
