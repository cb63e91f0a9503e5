"""Callbacks (EarlyStopping, ModelCheckpoint, LearningRateScheduler, custom), gradient
clipping and freeze/unfreeze."""

import math

import numpy as np
import pytest

import ranvier
from ranvier import nn, optim
from ranvier.nn.utils import clip_grad_norm_, freeze, unfreeze
from ranvier.optim.lr_scheduler import ReduceLROnPlateau, StepLR
from ranvier.train import (Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint, fit,
                           load_checkpoint)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _model():
    ranvier.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


class ScriptedLogs(Callback):
    """Replaces the epoch's val_loss by a scripted sequence (runs before the others)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def _fit(model, callbacks, epochs, lr=0.01, **kwargs):
    return fit(model, _data(), loss=nn.CrossEntropyLoss(),
               optimizer=kwargs.pop("optimizer", None) or optim.SGD(model.parameters(), lr=lr),
               epochs=epochs, batch_size=16, validation_data=_data(32, seed=1),
               callbacks=callbacks, progress=False, **kwargs)


def test_early_stopping_patience_and_min_delta():
    values = [1.0, 0.9, 0.95, 0.899, 0.97, 0.5, 0.4]
    stopper = EarlyStopping(patience=1, min_delta=0.01)
    history = _fit(_model(), [ScriptedLogs(values), stopper], epochs=7)
    # 0.9 improves; 0.95 bad (wait 1); 0.899 not by more than 0.01 (wait 2 > 1): stop at 3
    assert history.epoch == [0, 1, 2, 3]
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 1 and stopper.best == 0.9
    assert history.history["val_loss"] == values[:4]


def test_early_stopping_max_mode_auto_for_accuracy():
    assert EarlyStopping(monitor="val_accuracy").mode == "max"
    assert EarlyStopping(monitor="val_loss").mode == "min"
    assert EarlyStopping(monitor="val_mse").mode == "min"
    assert EarlyStopping(monitor="val_loss", mode="max").mode == "max"


def test_early_stopping_restore_best_weights():
    values = [1.0, 0.5, 0.7, 0.8, 0.9]
    model = _model()
    weights_after_epoch = []

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights_after_epoch.append(self.trainer.model.state_dict())

    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    _fit(model, [ScriptedLogs(values), Snapshot(), stopper], epochs=5)
    # 0.5 at epoch 1, then three worse epochs: more than patience=2, stop after epoch 4
    assert stopper.stopped_epoch == 4 and len(weights_after_epoch) == 5
    for key, value in weights_after_epoch[1].items():
        np.testing.assert_array_equal(model.state_dict()[key], value)
    assert not np.array_equal(weights_after_epoch[4]["0.weight"], weights_after_epoch[1]["0.weight"])


def test_early_stopping_names_a_missing_monitor():
    with pytest.raises(KeyError, match="'val_auc' is not in the epoch's logs"):
        _fit(_model(), [EarlyStopping(monitor="val_auc")], epochs=1)


def test_model_checkpoint_every_epoch_and_best_only(tmp_path):
    values = [1.0, 0.8, 0.9, 0.7]
    every = ModelCheckpoint(tmp_path / "e{epoch}.safetensors")
    best = ModelCheckpoint(tmp_path / "best.safetensors", save_best_only=True)
    model = _model()
    _fit(model, [ScriptedLogs(values), best, every], epochs=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.safetensors", "e1.safetensors", "e2.safetensors", "e3.safetensors", "e4.safetensors"]
    assert load_checkpoint(tmp_path / "best.safetensors")["epoch"] == 3
    assert best.best == 0.7 and every.last_path.endswith("e4.safetensors")
    assert load_checkpoint(tmp_path / "e2.safetensors")["epoch"] == 1


def test_model_checkpoint_best_only_skips_worse_epochs(tmp_path):
    values = [1.0, 0.8, 0.9, 0.95]
    best = ModelCheckpoint(tmp_path / "best.safetensors", save_best_only=True)
    _fit(_model(), [ScriptedLogs(values), best], epochs=4)
    assert load_checkpoint(tmp_path / "best.safetensors")["epoch"] == 1


def test_model_checkpoint_bad_path_template(tmp_path):
    with pytest.raises(ValueError, match="cannot fill in the path"):
        _fit(_model(), [ModelCheckpoint(tmp_path / "{nonsense}.safetensors")], epochs=1)


def test_learning_rate_scheduler_steps_per_epoch_and_logs_lr():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    history = _fit(model, [LearningRateScheduler(StepLR(optimizer, step_size=2, gamma=0.5))],
                   epochs=5, optimizer=optimizer)
    assert history.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** (5 // 2))  # epoch 5's


def test_reduce_on_plateau_gets_the_monitored_value():
    model = _model()
    optimizer = optim.SGD(model.parameters(), lr=1.0)
    values = [1.0, 1.0, 1.0, 0.5, 0.5]
    plateau = ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
    history = _fit(model, [ScriptedLogs(values), LearningRateScheduler(plateau)], epochs=5,
                   optimizer=optimizer)
    assert history.history["lr"] == pytest.approx([1.0, 1.0, 0.5, 0.25, 0.25])


def test_custom_callback_hooks_and_stop_training():
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, logs=None):
            calls.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            calls.append(f"epoch_begin {epoch}")

        def on_batch_end(self, batch, logs=None):
            assert math.isfinite(logs["loss"]) and logs["size"] == 16
            calls.append("batch")

        def on_epoch_end(self, epoch, logs=None):
            assert {"loss", "val_loss"} <= set(logs)
            calls.append(f"epoch_end {epoch}")
            if epoch == 1:
                self.trainer.stop_training = True

        def on_train_end(self, logs=None):
            calls.append("train_end")

    history = _fit(_model(), [Recorder()], epochs=10)
    assert history.epoch == [0, 1]
    assert calls == (["train_begin", "epoch_begin 0"] + ["batch"] * 4 + ["epoch_end 0", "epoch_begin 1"]
                     + ["batch"] * 4 + ["epoch_end 1", "train_end"])


def test_callbacks_must_be_callbacks():
    with pytest.raises(TypeError, match="Callback instances"):
        _fit(_model(), [lambda epoch: None], epochs=1)


# ------------------------------------------------------------------ gradient clipping

def _params_with_grads(grads):
    params = []
    for g in grads:
        p = nn.Parameter(np.zeros_like(g))
        p.grad = ranvier.Tensor(g.copy())
        params.append(p)
    return params


def test_clip_grad_norm_scales_to_max_norm():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(3, 5)), rng.normal(size=(7,))]
    total = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
    params = _params_with_grads(grads)
    returned = clip_grad_norm_(params, max_norm=1.0)
    assert returned == pytest.approx(total, rel=1e-12)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.data, g * (1.0 / (total + 1e-6)), rtol=1e-12)
    clipped = math.sqrt(sum(float((p.grad.data ** 2).sum()) for p in params))
    assert clipped == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_leaves_small_gradients_and_supports_inf_norm():
    grads = [np.array([0.1, -0.2]), np.array([[0.05]])]
    params = _params_with_grads(grads)
    assert clip_grad_norm_(params, 10.0) == pytest.approx(math.sqrt(0.01 + 0.04 + 0.0025))
    np.testing.assert_array_equal(params[0].grad.data, grads[0])
    params = _params_with_grads(grads)
    assert clip_grad_norm_(params, 0.1, norm_type=float("inf")) == pytest.approx(0.2)
    np.testing.assert_allclose(params[0].grad.data, grads[0] * 0.1 / (0.2 + 1e-6))


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]
    torch_params = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for tp, g in zip(torch_params, grads):
        tp.grad = torch.tensor(g)
    expected = float(torch.nn.utils.clip_grad_norm_(torch_params, 0.5, norm_type=3.0))
    params = _params_with_grads(grads)
    assert clip_grad_norm_(params, 0.5, norm_type=3.0) == pytest.approx(expected, rel=1e-5)
    for p, tp in zip(params, torch_params):
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_bad_input():
    params = _params_with_grads([np.array([np.nan, 1.0])])
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="max_norm must be finite and >= 0"):
        clip_grad_norm_(params, -1.0)
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        clip_grad_norm_(params, 1.0, norm_type=0)
    with pytest.raises(TypeError, match="expected Tensors"):
        clip_grad_norm_([np.zeros(2)], 1.0)
    assert clip_grad_norm_([nn.Parameter(np.zeros(2))], 1.0) == 0.0  # no gradients


def test_fit_clip_grad_norm_bounds_every_update():
    """With SGD(lr=1) and a tiny max_norm, each step moves the weights by at most max_norm."""
    model = _model()
    before = [p.data.copy() for p in model.parameters()]
    steps = []

    class StepSize(Callback):
        def on_batch_end(self, batch, logs=None):
            now = [p.data.copy() for p in self.trainer.model.parameters()]
            steps.append(math.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(now, before))))
            before[:] = now

    _fit(model, [StepSize()], epochs=1, lr=1.0, clip_grad_norm=1e-3)
    assert len(steps) == 4 and max(steps) <= 1e-3 * (1 + 1e-4) and min(steps) > 0
    with pytest.raises(ValueError, match="clip_grad_norm must be a positive number"):
        _fit(model, [], epochs=1, clip_grad_norm=-1)


# ------------------------------------------------------------------------ freezing

def test_freeze_and_unfreeze_for_fine_tuning():
    model = _model()
    freeze(model[0])
    assert all(not p.requires_grad for p in model[0].parameters())
    assert all(p.requires_grad for p in model[2].parameters())
    frozen = model[0].weight.data.copy()
    head = model[2].weight.data.copy()
    optimizer = optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    _fit(model, [], epochs=1, optimizer=optimizer)
    np.testing.assert_array_equal(model[0].weight.data, frozen)
    assert not np.array_equal(model[2].weight.data, head)
    assert unfreeze(model[0]) is model[0] and model[0].weight.requires_grad
    with pytest.raises(TypeError, match="freeze: expected a Module"):
        freeze(np.zeros(2))
