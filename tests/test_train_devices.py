"""Training on a device through fit / evaluate / predict, `ranvier train --device`, and the
device route of ops.uniform and of the optimizers' multi-tensor updates.

The CPU tests run everywhere: device strings, the errors without a GPU, and the placement
logic where it can run on the host. The GPU tests (``requires_gpu``) skip cleanly unless
``ranvier.cuda.is_available()``; they compare the GPU runs with the CPU ones.
"""

import csv

import numpy as np
import pytest

import ranvier
from ranvier import nn, ops, optim
from ranvier.cli import main as cli_main
from ranvier.train import ModelCheckpoint, evaluate, fit, predict
from ranvier.train.loop import _check_device, _place

GPU = ranvier.cuda.is_available()
requires_gpu = pytest.mark.skipif(not GPU, reason=f"no usable GPU: {ranvier.cuda.unavailable_reason()}")
requires_no_gpu = pytest.mark.skipif(GPU, reason="checks the error raised when no GPU can be used")


def _data(n=96, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def _model(seed=0):
    ranvier.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))


def _fit(model, device, epochs=3, **kwargs):
    optimizer = kwargs.pop("optimizer", None) or optim.Adam(model.parameters(), lr=0.05, amsgrad=True)
    return fit(model, _data(), loss=nn.CrossEntropyLoss(), optimizer=optimizer, epochs=epochs, seed=3,
               validation_data=_data(40, seed=2), metrics=["accuracy"], device=device, progress=False,
               **kwargs), optimizer


def _host_weights(model):
    return {key: np.array(value) for key, value in model.state_dict().items()}


# --- device strings and errors (CPU) -----------------------------------------------------------

@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:x", "cuda:-1", "", 0, None])
def test_unknown_devices_are_value_errors_naming_the_op(device):
    with pytest.raises(ValueError, match="evaluate: device must be 'cpu', 'cuda' or 'cuda:N', got"):
        _check_device("evaluate", device)


def test_cpu_device_is_kept_as_is():
    assert _check_device("fit", "cpu") == "cpu"


@requires_no_gpu
@pytest.mark.parametrize("call", ["evaluate", "predict"])
def test_evaluate_and_predict_on_cuda_without_a_gpu_say_why(call):
    model = _model()
    x, y = _data()
    with pytest.raises(RuntimeError, match=f"{call}: device='cuda:1' but CUDA is not available"):
        if call == "evaluate":
            evaluate(model, (x, y), device="cuda:1")
        else:
            predict(model, x, device="cuda:1")
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())  # nothing moved


@requires_no_gpu
def test_uniform_on_cuda_without_a_gpu_says_why():
    with pytest.raises(RuntimeError, match="uniform: cannot use device 'cuda': CUDA is not available"):
        ops.uniform(5, seed=1, offset=0, device="cuda")


def test_uniform_device_argument_is_checked_and_cpu_is_the_default():
    with pytest.raises(ValueError, match="uniform: unknown device 'gpu'"):
        ops.uniform(5, seed=1, offset=0, device="gpu")
    np.testing.assert_array_equal(ops.uniform((3, 7), 5, 11, device="cpu"), ops.uniform((3, 7), 5, 11))


def test_fit_on_cpu_leaves_host_arrays_and_state(tmp_path):
    model = _model()
    history, optimizer = _fit(model, "cpu", callbacks=[ModelCheckpoint(str(tmp_path / "ckpt.safetensors"))])
    assert all(isinstance(p.data, np.ndarray) for p in model.parameters())
    assert all(isinstance(v, np.ndarray) for s in optimizer.state.values() for v in s.values()
               if not isinstance(v, int))
    assert np.isfinite(history.history["loss"]).all()


def test_place_keeps_state_already_on_its_parameters_device():
    model = _model()
    optimizer = optim.Adam(model.parameters())
    x, y = _data()
    nn.CrossEntropyLoss()(model(ranvier.tensor(x)), ranvier.tensor(y)).backward()
    optimizer.step()
    before = {id(p): dict(state) for p, state in optimizer.state.items()}
    _place(model, optimizer, "cpu")
    for p, state in optimizer.state.items():
        for name, value in state.items():
            assert value is before[id(p)][name]  # no copy when nothing has to move


def _write_table(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    labels = np.where(x[:, 0] > 0, "A", "B")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"g{i}" for i in range(4)] + ["type"])
        writer.writerows([[f"{v:.5f}" for v in x[i]] + [labels[i]] for i in range(n)])
    return str(path)


@requires_no_gpu
def test_cli_train_on_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    table = _write_table(tmp_path / "t.csv")
    assert cli_main(["train", table, "--target", "type", "--device", "cuda:0", "--epochs", "1",
                     "--no-progress", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda:0: CUDA is not available" in err[0]


def test_cli_train_rejects_an_unknown_device(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "t.csv", "--target", "type", "--device", "gpu"])
    assert exit_info.value.code == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err


# --- on the GPU ----------------------------------------------------------------------------------

@requires_gpu
def test_fit_on_cuda_matches_cpu_and_keeps_the_model_there(tmp_path):
    cpu_model, gpu_model = _model(), _model()
    cpu_history, _ = _fit(cpu_model, "cpu")
    gpu_history, gpu_optimizer = _fit(gpu_model, "cuda")
    assert all(ranvier._arrays.is_cuda_array(p.data) for p in gpu_model.parameters())
    assert all(ranvier._arrays.is_cuda_array(v) for s in gpu_optimizer.state.values() for v in s.values()
               if not isinstance(v, int))
    # The same data order and dropout masks (the generator's numbers are the same on both),
    # different summation orders in the GEMMs: close, not identical.
    for key, value in _host_weights(cpu_model).items():
        np.testing.assert_allclose(_host_weights(gpu_model)[key], value, rtol=2e-3, atol=2e-4, err_msg=key)
    for name in ("loss", "val_loss"):
        np.testing.assert_allclose(gpu_history.history[name], cpu_history.history[name], rtol=2e-3, atol=2e-3)
    for name in ("accuracy", "val_accuracy"):  # a sample on the decision boundary may flip
        np.testing.assert_allclose(gpu_history.history[name], cpu_history.history[name], atol=1 / 30)
    x, y = _data(40, seed=2)
    np.testing.assert_allclose(predict(gpu_model, x, device="cuda"), predict(cpu_model, x), rtol=1e-4, atol=1e-4)
    gpu_logs = evaluate(gpu_model, (x, y), loss=nn.CrossEntropyLoss(), metrics=["accuracy"], device="cuda")
    cpu_logs = evaluate(cpu_model, (x, y), loss=nn.CrossEntropyLoss(), metrics=["accuracy"])
    assert abs(gpu_logs["accuracy"] - cpu_logs["accuracy"]) <= 1 / 40 + 1e-12
    np.testing.assert_allclose(gpu_logs["loss"], cpu_logs["loss"], rtol=1e-4)


@requires_gpu
@pytest.mark.parametrize("first_device", ["cpu", "cuda"])
def test_resume_on_cuda_from_a_checkpoint_of_either_device(tmp_path, first_device):
    # The checkpoint holds host arrays; resuming on the GPU moves the optimizer state there and
    # reaches the weights of an uninterrupted GPU run.
    path = str(tmp_path / "ckpt.safetensors")
    uninterrupted = _model()
    _fit(uninterrupted, "cuda", epochs=4)
    first = _model()
    _fit(first, first_device, epochs=2, callbacks=[ModelCheckpoint(path)])
    saved = ranvier.load(path)
    assert all(isinstance(v, np.ndarray) for v in saved.values())
    resumed = _model(seed=9)  # other initial weights: all must come from the checkpoint
    _, optimizer = _fit(resumed, "cuda", epochs=4, resume=path, callbacks=[ModelCheckpoint(path)])
    assert all(ranvier._arrays.is_cuda_array(v) for s in optimizer.state.values() for v in s.values()
               if not isinstance(v, int))
    expected = _host_weights(uninterrupted)
    tolerance = dict(rtol=1e-5, atol=1e-6) if first_device == "cuda" else dict(rtol=2e-3, atol=2e-4)
    for key, value in _host_weights(resumed).items():
        np.testing.assert_allclose(value, expected[key], **tolerance, err_msg=key)


@requires_gpu
def test_fit_on_cuda_moves_optimizer_state_made_on_the_cpu():
    model = _model()
    _, optimizer = _fit(model, "cpu", epochs=1)
    _fit(model, "cuda", epochs=1, optimizer=optimizer)
    assert all(ranvier._arrays.is_cuda_array(v) for s in optimizer.state.values() for v in s.values()
               if not isinstance(v, int))


@requires_gpu
def test_cli_train_on_cuda(tmp_path, capsys):
    table = _write_table(tmp_path / "t.csv")
    out = tmp_path / "m"
    assert cli_main(["train", table, "--target", "type", "--device", "cuda", "--epochs", "3",
                     "--no-progress", "--hidden", "8", "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists()
    assert cli_main(["predict", str(out), table, "--out", str(tmp_path / "p.csv")]) == 0


@requires_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (1021,), (4099, 3)])
def test_uniform_on_cuda_equals_the_cpu(dtype, shape):
    import cupy as cp

    on_gpu = ops.uniform(shape, 123, 7, dtype=dtype, device="cuda")
    assert isinstance(on_gpu, cp.ndarray) and on_gpu.dtype == dtype and on_gpu.shape == shape
    np.testing.assert_array_equal(cp.asnumpy(on_gpu), ops.uniform(shape, 123, 7, dtype=dtype))


@requires_gpu
@pytest.mark.skipif(not GPU or ranvier.cuda.device_count() < 2, reason="needs two GPUs")
def test_arrays_on_another_gpu_than_the_current_one_are_refused():
    import cupy as cp

    with cp.cuda.Device(1):
        on_second = cp.ones(4, cp.float32)
    with cp.cuda.Device(0):
        with pytest.raises(ValueError, match="sgd_step: param is on cuda:1 but the current device is cuda:0"):
            ops.sgd_step(on_second, cp.ones(4, cp.float32), lr=0.1)
    assert ops.uniform(3, 1, 0, device="cuda:1").device.id == 1
    # fit and predict on the second GPU while the first is the current one.
    cpu_model, second_model = _model(), _model()
    _fit(cpu_model, "cpu")
    with cp.cuda.Device(0):
        _fit(second_model, "cuda:1")
        assert {p.data.device.id for p in second_model.parameters()} == {1}
        x, _ = _data(40, seed=2)
        np.testing.assert_allclose(predict(second_model, x, device="cuda:1"), predict(cpu_model, x),
                                   rtol=2e-3, atol=2e-3)


@requires_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_multi_tensor_updates_on_cuda_equal_the_cpu_bit_for_bit(dtype):
    # 40 tensors (more than one table of 32) of odd sizes, one of them larger than a whole
    # table's blocks (192 chunks of 65536) so that it continues into the next launch; each
    # parameter with its own step.
    import cupy as cp

    rng = np.random.default_rng(0)
    sizes = [1, 0, 7, 13, 31, 65, 255, 257, 1021, 65537] * 4
    sizes[5] = 192 * 65536 + 5
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    grads = [rng.standard_normal(n).astype(dtype) for n in sizes]
    state = [[np.abs(rng.standard_normal(n)).astype(dtype) for n in sizes] for _ in range(3)]
    steps = [1 + k % 5 for k in range(len(sizes))]
    gpu = [[cp.asarray(a) for a in arrays] for arrays in (params, grads, *state)]
    options = dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1, amsgrad=True, maximize=True)
    ops.adam_step_multi(params, grads, *state, steps=steps, **options)
    ops.adam_step_multi(gpu[0], gpu[1], *gpu[2:], steps=steps, **options)
    for host_arrays, device_arrays in zip((params, *state), (gpu[0], *gpu[2:])):
        for k, (h, d) in enumerate(zip(host_arrays, device_arrays)):
            np.testing.assert_array_equal(cp.asnumpy(d), h, err_msg=f"tensor {k}")
    first_steps = [k % 2 == 0 for k in range(len(sizes))]
    ops.sgd_step_multi(params, grads, state[0], first_steps=first_steps, lr=0.1, momentum=0.9, nesterov=True)
    ops.sgd_step_multi(gpu[0], gpu[1], gpu[2], first_steps=first_steps, lr=0.1, momentum=0.9, nesterov=True)
    ops.rmsprop_step_multi(params, grads, state[1], state[0], state[2], lr=1e-2, momentum=0.5, centered=True)
    ops.rmsprop_step_multi(gpu[0], gpu[1], gpu[3], gpu[2], gpu[4], lr=1e-2, momentum=0.5, centered=True)
    for host_arrays, device_arrays in zip((params, *state), (gpu[0], *gpu[2:])):
        for k, (h, d) in enumerate(zip(host_arrays, device_arrays)):
            np.testing.assert_array_equal(cp.asnumpy(d), h, err_msg=f"tensor {k}")
