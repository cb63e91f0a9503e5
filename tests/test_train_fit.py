"""fit / evaluate / predict: data forms, History, modes, no_grad validation, progress, plots."""

import io
import sys

import numpy as np
import pytest

import ranvier
from ranvier import nn, optim
from ranvier.data import DataLoader, TensorDataset
from ranvier.train import History, evaluate, fit, predict


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] - x[:, 1] > 0).astype(np.int64)


def _model(seed=0):
    ranvier.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))


def accuracy(y_true, y_pred):
    return float((np.argmax(y_pred, axis=1) == y_true).mean())


def _fit(model, data=None, **kwargs):
    kwargs.setdefault("epochs", 3)
    kwargs.setdefault("progress", False)
    return fit(model, data if data is not None else _data(), loss=nn.CrossEntropyLoss(),
               optimizer=kwargs.pop("optimizer", None) or optim.Adam(model.parameters(), lr=0.05),
               **kwargs)


def test_fit_learns_and_records_history():
    model = _model()
    history = _fit(model, epochs=8, validation_data=_data(48, seed=1), metrics=[accuracy])
    assert isinstance(history, History) and history.epoch == list(range(8))
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == 8 for v in history.history.values())
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    # val_* equal what evaluate computes on the same data after training
    result = evaluate(model, _data(48, seed=1), loss=nn.CrossEntropyLoss(), metrics=[accuracy])
    assert result["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    assert result["accuracy"] == history.history["val_accuracy"][-1]


def test_epoch_loss_is_the_sample_weighted_mean_of_batch_losses():
    losses = []

    class Batches(ranvier.train.Callback):
        def on_batch_end(self, batch, logs=None):
            losses.append((logs["loss"], logs["size"]))

    history = _fit(_model(), _data(50), epochs=1, batch_size=16, callbacks=[Batches()])
    assert [size for _, size in losses] == [16, 16, 16, 2]
    expected = sum(loss * size for loss, size in losses) / 50
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("form", ["pair", "dataset", "loader"])
def test_data_forms_give_the_same_run(form):
    x, y = _data()
    data = {"pair": (x, y), "dataset": TensorDataset(x, y),
            "loader": None}[form]
    model = _model()
    ranvier.manual_seed(5)
    if form == "loader":
        data = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    history = _fit(model, data, batch_size=32, seed=None if form == "loader" else 5)
    # all three shuffle from ranvier's generator seeded with 5 before the loader is made
    reference_model = _model()
    reference = _fit(reference_model, (x, y), batch_size=32, seed=5)
    assert history.history == reference.history
    np.testing.assert_array_equal(model[0].weight.data, reference_model[0].weight.data)


def test_train_and_eval_modes_and_no_grad_validation():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(5, 2)

        def forward(self, x):
            seen.append((self.training, ranvier.is_grad_enabled()))
            return self.linear(x)

    model = Probe()
    model.eval()  # fit switches to train mode itself, and puts the mode back afterwards
    _fit(model, _data(32), epochs=1, batch_size=16, validation_data=_data(16, seed=1))
    assert seen == [(True, True), (True, True), (False, False)]
    assert model.training is False
    seen.clear()
    model.train()
    predict(model, _data(16)[0])
    evaluate(model, _data(16), loss=nn.CrossEntropyLoss())
    assert seen == [(False, False), (False, False)] and model.training is True


def test_dropout_is_off_in_validation_and_predict():
    ranvier.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 32), nn.Dropout(0.5), nn.Linear(32, 2))
    x = _data(20)[0]
    first, second = predict(model, x, batch_size=7), predict(model, x)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (20, 2) and isinstance(first, np.ndarray)
    expected = model.eval()(ranvier.Tensor(x)).data
    np.testing.assert_allclose(first, expected, rtol=1e-6, atol=1e-7)


def test_predict_accepts_datasets_and_loaders_and_casts_float64():
    model = _model()
    x, y = _data(10)
    direct = predict(model, x)
    np.testing.assert_array_equal(predict(model, TensorDataset(x, y)), direct)
    np.testing.assert_array_equal(predict(model, DataLoader(TensorDataset(x), batch_size=3)), direct)
    np.testing.assert_allclose(predict(model, x.astype(np.float64)), direct, rtol=1e-6)
    assert predict(model, x.astype(np.float64)).dtype == np.float32
    counts = np.arange(20).reshape(4, 5)  # integer inputs (counts) become floats
    np.testing.assert_allclose(predict(model, counts), predict(model, counts.astype(np.float32)))
    history = _fit(model, (counts, np.array([0, 1, 0, 1])), epochs=1)
    assert np.isfinite(history.history["loss"][0])


def test_regression_with_mse():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    ranvier.manual_seed(0)
    model = nn.Linear(3, 1)

    def mae(y_true, y_pred):
        return float(np.abs(y_true - y_pred).mean())

    history = fit(model, (x, y), loss=nn.MSELoss(), optimizer=optim.Adam(model.parameters(), lr=0.1),
                  epochs=30, batch_size=16, metrics=[mae], progress=False)
    assert history.history["mae"][-1] < 0.1 * history.history["mae"][0]


def test_progress_lines_bar_and_silence(capsys):
    stream = io.StringIO()
    _fit(_model(), epochs=2, validation_data=_data(16, seed=1), metrics=[accuracy], stream=stream,
         progress=True)  # StringIO is not a terminal: plain lines
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2: loss ")
    assert "accuracy" in lines[1] and "val_loss" in lines[1]

    class FakeTerminal(io.StringIO):
        def isatty(self):
            return True

    terminal = FakeTerminal()
    _fit(_model(), epochs=2, stream=terminal, progress=True, metrics=[accuracy])
    text = terminal.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "3/3" in text and "loss" in text
    assert "accuracy" in text

    _fit(_model(), epochs=2, progress=False)
    default = _fit(_model(), epochs=1, progress=True)
    captured = capsys.readouterr()
    assert captured.out.count("epoch 1/1:") == 1 and captured.err == ""
    assert default.epoch == [0]
    with pytest.raises(ValueError, match="progress must be"):
        _fit(_model(), progress="fancy")


def test_bad_arguments():
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match="train_data has .*96.* inputs but .*95.* targets"):
        _fit(model, (x, y[:-1]))
    with pytest.raises(ValueError, match="an \\(inputs, targets\\) pair"):
        _fit(model, (x, y, y))
    with pytest.raises(TypeError, match="train_data must be"):
        _fit(model, 42)
    with pytest.raises(ValueError, match="train_data is empty"):
        _fit(model, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="epochs must be an integer >= 0"):
        _fit(model, epochs=-1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        _fit(model, batch_size=0)
    with pytest.raises(TypeError, match="loss must be callable"):
        fit(model, (x, y), loss="mse", optimizer=optim.SGD(model.parameters(), lr=0.1), epochs=1)
    with pytest.raises(ValueError, match="fit: device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        _fit(model, device="tpu")
    with pytest.raises(TypeError, match="a metric must be"):
        _fit(model, metrics=[3])
    with pytest.raises(ValueError, match="used twice or is reserved"):
        _fit(model, metrics=[accuracy, accuracy])


@pytest.mark.skipif(ranvier.cuda.is_available(), reason="checks the error raised when no GPU can be used")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_device_without_a_gpu_is_refused_clearly(device):
    model = _model()
    with pytest.raises(RuntimeError, match=f"fit: device='{device}' but CUDA is not available"):
        _fit(model, device=device)


def test_zero_epochs_returns_an_empty_history():
    history = _fit(_model(), epochs=0)
    assert history.epoch == [] and history.history == {}


def test_history_plot(tmp_path):
    pytest.importorskip("matplotlib")
    history = _fit(_model(), epochs=3, validation_data=_data(16, seed=1), metrics=[accuracy])
    path = tmp_path / "curves.png"
    history.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing recorded"):
        History().plot(tmp_path / "empty.png")


def test_history_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    history = History()
    history.record(0, {"loss": 1.0})
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # also when imported earlier
    with pytest.raises(ImportError, match=r'pip install "ranvier\[plot\]"'):
        history.plot(tmp_path / "x.png")


def test_named_metrics_match_ranvier_metrics_on_the_outputs():
    from ranvier import metrics

    x, y = _data()
    xv, yv = _data(64, seed=3)
    model = _model()
    history = _fit(model, (x, y), epochs=2, validation_data=(xv, yv),
                   metrics=["accuracy", "f1", metrics.ROCAUC()])
    assert list(history.history) == ["loss", "accuracy", "f1", "roc_auc", "val_loss",
                                     "val_accuracy", "val_f1", "val_roc_auc"]
    outputs = predict(model, xv)
    assert history.history["val_accuracy"][-1] == pytest.approx(
        metrics.accuracy_score(yv, outputs.argmax(1)))
    assert history.history["val_f1"][-1] == pytest.approx(
        metrics.f1_score(yv, outputs.argmax(1), average="macro"))
    assert history.history["val_roc_auc"][-1] == pytest.approx(
        metrics.get_metric("roc_auc")(yv, outputs))
    result = evaluate(model, (xv, yv), metrics=["accuracy"])
    assert result == {"accuracy": history.history["val_accuracy"][-1]}
    with pytest.raises(ValueError, match="fit: get_metric: unknown metric 'acuracy'"):
        _fit(model, metrics=["acuracy"])


def test_monitor_mode_auto_follows_the_metric():
    from ranvier.train import EarlyStopping, ModelCheckpoint

    assert EarlyStopping(monitor="val_f1").mode == "max"
    assert EarlyStopping(monitor="val_mse").mode == "min"
    assert EarlyStopping(monitor="val_r2").mode == "max"
    assert ModelCheckpoint("x.safetensors", monitor="loss").mode == "min"
