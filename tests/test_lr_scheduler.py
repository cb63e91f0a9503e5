"""Learning-rate schedulers: closed forms, PyTorch's sequences (when installed), state dicts."""

import json
import math

import numpy as np
import pytest

from ranvier import nn, optim
from ranvier.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau, StepLR


def _sgd(lr=0.1, groups=1):
    params = [nn.Parameter(np.zeros(2, dtype=np.float32)) for _ in range(groups)]
    if groups == 1:
        return optim.SGD(params, lr=lr)
    return optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)], lr=lr)


def _sequence(scheduler, optimizer, n, values=None):
    lrs = []
    for epoch in range(n):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        if values is None:
            scheduler.step()
        else:
            scheduler.step(values[epoch])
    return lrs


def test_step_lr_matches_closed_form():
    optimizer = _sgd(0.5, groups=2)
    scheduler = StepLR(optimizer, step_size=3, gamma=0.5)
    lrs = _sequence(scheduler, optimizer, 12)
    for epoch, row in enumerate(lrs):
        for base, lr in zip((0.5, 1.0), row):
            assert lr == pytest.approx(base * 0.5 ** (epoch // 3), rel=1e-12)
    assert scheduler.get_last_lr() == [g["lr"] for g in optimizer.param_groups]


def test_cosine_matches_closed_form_including_past_t_max():
    optimizer = _sgd(0.2)
    scheduler = CosineAnnealingLR(optimizer, T_max=5, eta_min=0.01)
    lrs = [row[0] for row in _sequence(scheduler, optimizer, 16)]
    expected = [0.01 + (0.2 - 0.01) * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(16)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-10, atol=1e-12)
    assert min(lrs) == pytest.approx(0.01)


def test_reduce_on_plateau_patience_threshold_cooldown_min_lr():
    optimizer = _sgd(1.0)
    scheduler = ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=1, cooldown=1,
                                  min_lr=0.2)
    # improves, improves, flat, flat (-> reduce), flat (cooldown), flat, flat (-> reduce) ...
    values = [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    lrs = []
    for v in values:
        scheduler.step(v)
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2]


def test_reduce_on_plateau_rel_threshold_and_max_mode():
    optimizer = _sgd(1.0)
    scheduler = ReduceLROnPlateau(optimizer, mode="min", patience=0, threshold=0.1)
    scheduler.step(1.0)
    scheduler.step(0.95)  # not 10% better than 1.0: a bad epoch, patience 0 -> reduce
    assert scheduler.get_last_lr() == [pytest.approx(0.1)]
    optimizer = _sgd(1.0)
    scheduler = ReduceLROnPlateau(optimizer, mode="max", patience=0, threshold=0.5,
                                  threshold_mode="abs")
    scheduler.step(1.0)
    scheduler.step(1.4)  # not 0.5 higher
    assert scheduler.get_last_lr() == [pytest.approx(0.1)]
    scheduler.step(2.0)  # better than 1.0 + 0.5
    assert scheduler.best == 2.0 and scheduler.num_bad_epochs == 0


@pytest.mark.parametrize("make", [
    lambda o: StepLR(o, step_size=2, gamma=0.3),
    lambda o: CosineAnnealingLR(o, T_max=4, eta_min=0.001),
])
def test_state_dict_round_trip_resumes_the_sequence(make):
    optimizer = _sgd(0.1)
    scheduler = make(optimizer)
    full = [row[0] for row in _sequence(scheduler, optimizer, 10)]

    first = _sgd(0.1)
    scheduler = make(first)
    head = [row[0] for row in _sequence(scheduler, first, 4)]
    state = json.loads(json.dumps(scheduler.state_dict()))  # must survive JSON
    optimizer_state = first.state_dict()
    second = _sgd(0.1)
    resumed = make(second)
    second.load_state_dict(optimizer_state)
    resumed.load_state_dict(state)
    tail = [row[0] for row in _sequence(resumed, second, 6)]
    assert head + tail == full


def test_plateau_state_dict_round_trip():
    optimizer = _sgd(1.0)
    scheduler = ReduceLROnPlateau(optimizer, patience=2)
    for v in (3.0, 2.0, 2.5):
        scheduler.step(v)
    other = ReduceLROnPlateau(_sgd(1.0), patience=2)
    other.load_state_dict(json.loads(json.dumps(scheduler.state_dict())))
    assert other.best == 2.0 and other.num_bad_epochs == 1 and other.last_epoch == 3


def test_bad_arguments():
    optimizer = _sgd()
    with pytest.raises(ValueError, match="step_size"):
        StepLR(optimizer, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        CosineAnnealingLR(optimizer, T_max=0)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        ReduceLROnPlateau(optimizer, factor=1.0)
    with pytest.raises(ValueError, match="mode 'up' is unknown"):
        ReduceLROnPlateau(optimizer, mode="up")
    with pytest.raises(ValueError, match="expected 1 min_lrs"):
        ReduceLROnPlateau(optimizer, min_lr=[0.1, 0.2])
    with pytest.raises(TypeError, match="not an Optimizer"):
        StepLR(object(), step_size=1)
    with pytest.raises(TypeError, match="monitored value"):
        ReduceLROnPlateau(optimizer).step("loss")
    with pytest.raises(ValueError, match="unknown entries"):
        StepLR(optimizer, step_size=1).load_state_dict({"T_max": 3})


def _torch_sequence(torch_scheduler_cls, kwargs, n, values=None, lr=0.1):
    torch = pytest.importorskip("torch")
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD(params, lr=lr)
    scheduler = torch_scheduler_cls(optimizer, **kwargs)
    lrs = []
    for epoch in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step() if values is None else scheduler.step(values[epoch])
    return lrs


@pytest.mark.parametrize("name,kwargs", [
    ("StepLR", dict(step_size=3, gamma=0.7)),
    ("CosineAnnealingLR", dict(T_max=6, eta_min=0.002)),
])
def test_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    expected = _torch_sequence(getattr(torch.optim.lr_scheduler, name), kwargs, 20)
    optimizer = _sgd(0.1)
    ours = getattr(optim.lr_scheduler, name)(optimizer, **kwargs)
    got = [row[0] for row in _sequence(ours, optimizer, 20)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_plateau_matches_torch():
    torch = pytest.importorskip("torch")
    values = list(np.random.default_rng(3).normal(size=40).cumsum() * 0.1 + 5)
    kwargs = dict(mode="min", factor=0.5, patience=2, threshold=0.01, cooldown=1, min_lr=0.005)
    expected = _torch_sequence(torch.optim.lr_scheduler.ReduceLROnPlateau, kwargs, 40, values)
    optimizer = _sgd(0.1)
    got = [row[0] for row in _sequence(ReduceLROnPlateau(optimizer, **kwargs), optimizer, 40, values)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert len(set(got)) > 2  # the sequence did get reduced
