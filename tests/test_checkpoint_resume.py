"""Checkpoints: exact resume (bit for bit on the CPU), format, divergence leaves them intact."""

import json

import numpy as np
import pytest

import ranvier
from ranvier import nn, optim
from ranvier.data import DataLoader, TensorDataset
from ranvier.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau
from ranvier.train import (EarlyStopping, LearningRateScheduler, ModelCheckpoint,
                           TrainingDivergedError, fit, load_checkpoint, save_checkpoint)


def _data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def _setup(scheduler="cosine", restore_best_weights=False):
    """The same model, optimizer and callbacks each call (initialisation seeded)."""
    ranvier.manual_seed(123)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = optim.Adam(model.parameters(), lr=0.02)
    sched = (CosineAnnealingLR(optimizer, T_max=3) if scheduler == "cosine"
             else ReduceLROnPlateau(optimizer, patience=0, factor=0.5))
    callbacks = [LearningRateScheduler(sched),
                 EarlyStopping(monitor="val_loss", patience=10,
                               restore_best_weights=restore_best_weights)]
    return model, optimizer, callbacks


def _fit(model, optimizer, callbacks, epochs, **kwargs):
    x, y = _data()
    xv, yv = _data(30, seed=1)
    return fit(model, (x, y), loss=nn.CrossEntropyLoss(), optimizer=optimizer, epochs=epochs,
               batch_size=16, validation_data=(xv, yv), callbacks=callbacks, seed=7,
               progress=False, **kwargs)


def _same_state(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        if isinstance(a[key], dict):
            if not (isinstance(b[key], dict) and a[key].keys() == b[key].keys() and all(
                    np.array_equal(a[key][k], b[key][k]) for k in a[key])):
                return False
        elif a[key] != b[key]:
            return False
    return True


def test_resume_with_a_random_augmentation_in_the_loader_matches_a_straight_run(tmp_path):
    """The augmentation draws from ranvier's default generator, which checkpoints save."""
    x, y = _data()

    def jitter(xb, yb):
        noise = ranvier.random.default_generator.numpy.normal(scale=0.1, size=xb.shape)
        return xb + noise.astype(np.float32), yb

    def run(epochs, **kwargs):
        ranvier.manual_seed(5)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, transform=jitter)
        fit(model, loader, loss=nn.CrossEntropyLoss(), optimizer=optimizer, epochs=epochs,
            progress=False, **kwargs)
        return model.state_dict()

    path = tmp_path / "augmented.safetensors"
    straight = run(3, callbacks=[ModelCheckpoint(tmp_path / "straight.safetensors", monitor="loss")])
    run(1, callbacks=[ModelCheckpoint(path, monitor="loss", save_best_only=False)])
    resumed = run(3, callbacks=[ModelCheckpoint(path, monitor="loss", save_best_only=False)], resume=path)
    for key, value in straight.items():
        assert resumed[key].tobytes() == value.tobytes(), key
    # The augmentation mattered: without it the run ends elsewhere.
    ranvier.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    fit(model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), loss=nn.CrossEntropyLoss(),
        optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9), epochs=3, progress=False)
    assert not np.array_equal(model.state_dict()["0.weight"], straight["0.weight"])


@pytest.mark.parametrize("scheduler,restore", [("cosine", False), ("plateau", True)])
def test_resume_after_two_epochs_matches_four_straight_bit_for_bit(tmp_path, scheduler, restore):
    def _setup_here():
        return _setup(scheduler, restore)

    model, optimizer, callbacks = _setup_here()
    straight = _fit(model, optimizer, callbacks, 4)
    straight_weights = model.state_dict()
    straight_adam = optimizer.state_dict()
    straight_early_stopping = callbacks[1].state_dict()
    straight_scheduler = callbacks[0].scheduler.state_dict()

    path = tmp_path / "run.safetensors"
    model, optimizer, callbacks = _setup_here()
    _fit(model, optimizer, callbacks + [ModelCheckpoint(path, save_best_only=False)], 2)
    # A fresh process would start from scratch: new model, new optimizer, the generator moved on.
    model, optimizer, callbacks = _setup_here()
    ranvier.manual_seed(999)
    resumed = _fit(model, optimizer, callbacks + [ModelCheckpoint(path)], 4, resume=path)

    for key, value in straight_weights.items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)
        assert model.state_dict()[key].tobytes() == value.tobytes()
    for index, state in straight_adam["state"].items():
        got = optimizer.state_dict()["state"][index]
        assert got["step"] == state["step"]
        np.testing.assert_array_equal(got["exp_avg"], state["exp_avg"])
        np.testing.assert_array_equal(got["exp_avg_sq"], state["exp_avg_sq"])
    assert resumed.history == straight.history
    assert resumed.epoch == [0, 1, 2, 3]
    assert optimizer.param_groups[0]["lr"] == straight_adam["param_groups"][0]["lr"]
    assert _same_state(callbacks[1].state_dict(), straight_early_stopping)
    assert (callbacks[1].best_weights is not None) == restore
    assert callbacks[0].scheduler.state_dict() == straight_scheduler


def test_resume_without_the_generator_state_would_differ(tmp_path):
    """The test above can fail: skipping the restored shuffling/dropout state changes the weights."""
    model, optimizer, callbacks = _setup()
    _fit(model, optimizer, callbacks, 4)
    straight = model.state_dict()

    path = tmp_path / "run.safetensors"
    model, optimizer, callbacks = _setup()
    _fit(model, optimizer, callbacks + [ModelCheckpoint(path)], 2)
    model, optimizer, callbacks = _setup()
    saved = load_checkpoint(path, model, optimizer)
    callbacks[0].load_state_dict(saved["training"]["callbacks"][0]["state"])
    x, y = _data()
    xv, yv = _data(30, seed=1)
    # Epochs 3-4 with a fresh generator: weights must differ from the uninterrupted run.
    fit(model, (x, y), loss=nn.CrossEntropyLoss(), optimizer=optimizer, epochs=2, batch_size=16,
        validation_data=(xv, yv), callbacks=callbacks, seed=7, progress=False)
    assert any(not np.array_equal(model.state_dict()[k], v) for k, v in straight.items())


def test_checkpoint_file_layout(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    model, optimizer, callbacks = _setup()
    _fit(model, optimizer, callbacks + [ModelCheckpoint(path)], 1)
    arrays, metadata = ranvier.load(path, with_metadata=True)
    assert metadata["format"] == "ranvier.checkpoint" and metadata["epoch"] == "0"
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(arrays["model." + key], value)
    training = json.loads(metadata["training"])
    assert set(training) == {"history", "rng", "loader", "callbacks"}
    assert training["rng"]["numpy"]["bit_generator"] == "PCG64"
    assert [c["class"] for c in training["callbacks"]] == ["LearningRateScheduler", "EarlyStopping",
                                                           "ModelCheckpoint"]
    optimizer_json = json.loads(metadata["optimizer"])
    assert optimizer_json["param_groups"][0]["lr"] == optimizer.param_groups[0]["lr"]
    # plain weights load with the usual calls, and so does the optimizer
    other, other_optimizer, _ = _setup()
    saved = load_checkpoint(path, other, other_optimizer)
    assert saved["epoch"] == 0
    assert other_optimizer.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]


def test_save_and_load_checkpoint_without_fit(tmp_path):
    model, optimizer, _ = _setup()
    x, y = _data()
    loss = nn.CrossEntropyLoss()(model(ranvier.Tensor(x)), ranvier.Tensor(y))
    loss.backward()
    optimizer.step()
    save_checkpoint(tmp_path / "c.safetensors", model, optimizer, epoch=5)
    other, other_optimizer, _ = _setup()
    saved = load_checkpoint(tmp_path / "c.safetensors", other, other_optimizer)
    assert saved["epoch"] == 5 and saved["training"] is None
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
    np.testing.assert_array_equal(other_optimizer.state_dict()["state"][0]["exp_avg"],
                                  optimizer.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="no training state"):
        _fit(*_setup(), 2, resume=tmp_path / "c.safetensors")


def test_resume_refuses_other_files_and_other_callbacks(tmp_path):
    weights = tmp_path / "weights.safetensors"
    model, optimizer, callbacks = _setup()
    ranvier.save(model.state_dict(), weights)
    with pytest.raises(ValueError, match="not a ranvier checkpoint"):
        _fit(model, optimizer, callbacks, 2, resume=weights)
    path = tmp_path / "run.safetensors"
    _fit(model, optimizer, callbacks + [ModelCheckpoint(path)], 1)
    model, optimizer, callbacks = _setup()
    with pytest.raises(ValueError, match="same callbacks"):
        _fit(model, optimizer, callbacks[:1] + [ModelCheckpoint(path)], 2, resume=path)


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_last_checkpoint(tmp_path):
    x, y = _data()
    x_bad = x.copy()
    path = tmp_path / "last.safetensors"
    model, optimizer, _ = _setup()

    class PoisonAfterTwoEpochs(ranvier.train.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                x_bad[40:50] = np.nan  # batch 3 of 16 (samples 32..47), order unshuffled below

    loader = DataLoader(TensorDataset(x_bad, y), batch_size=16, shuffle=False)
    with pytest.raises(TrainingDivergedError, match=r"epoch 3, batch 3") as info:
        fit(model, loader, loss=nn.CrossEntropyLoss(), optimizer=optimizer, epochs=5,
            callbacks=[PoisonAfterTwoEpochs(), ModelCheckpoint(path)], progress=False)
    assert info.value.epoch == 3 and info.value.batch == 3 and np.isnan(info.value.value)
    saved = load_checkpoint(path)
    assert saved["epoch"] == 1  # the checkpoint of epoch 2 (0-based 1), intact
    assert all(np.isfinite(v).all() for v in saved["model"].values())
    # parameters were not updated with the NaN batch
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_infinite_loss_is_reported_too():
    model = nn.Linear(2, 1)
    x = np.array([[1e30, 1e30]] * 4, dtype=np.float32)
    y = np.zeros((4, 1), dtype=np.float32)
    with pytest.raises(TrainingDivergedError, match="the loss is inf at epoch 1, batch 1"):
        with np.errstate(over="ignore"):
            fit(model, (x, y), loss=nn.MSELoss(), optimizer=optim.SGD(model.parameters(), lr=0.1),
                epochs=1, progress=False)
