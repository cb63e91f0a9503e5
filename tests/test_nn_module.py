"""nn.Module machinery: registration, traversal, modes, state dicts, repr; save/load round trip."""

from collections import OrderedDict

import numpy as np
import pytest

import ranvier
from ranvier import nn


class Block(nn.Module):
    """A module with every kind of member: own parameter, buffers, a child."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.fc = nn.Linear(3, 4)
        self.register_buffer("running", np.zeros(4, np.float32))
        self.register_buffer("scratch", np.zeros(2), persistent=False)
        self.not_registered = np.ones(3)

    def forward(self, x):
        return self.fc(x) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
        self.block = Block()
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.head(self.block(self.encoder(x)))


def small_mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


# ---------------------------------------------------------------------------- registration


def test_attributes_register_by_kind():
    block = Block()
    assert list(block._parameters) == ["scale"]
    assert list(block._modules) == ["fc"]
    assert list(block._buffers) == ["running", "scratch"]
    assert "not_registered" in block.__dict__
    assert isinstance(block.fc, nn.Linear) and isinstance(block.scale, nn.Parameter)
    assert block.running.shape == (4,)


def test_reassigning_changes_registration():
    block = Block()
    block.fc = nn.Parameter(np.zeros(2, np.float32))  # a module name becomes a parameter
    assert "fc" not in block._modules and "fc" in block._parameters
    block.scale = None
    assert block.scale is None and "scale" in block._parameters
    assert [name for name, _ in block.named_parameters()] == ["fc"]
    block.running = np.ones(4, np.float32)  # buffers are reassigned in place of the old
    np.testing.assert_array_equal(block.running, np.ones(4))
    assert "running" in block._buffers and "running" not in block.__dict__


def test_registration_errors():
    block = Block()
    with pytest.raises(TypeError, match=r"cannot assign 'ndarray' as parameter 'scale'"):
        block.scale = np.ones(1)
    with pytest.raises(TypeError, match=r"cannot assign 'int' as child module 'fc'"):
        block.fc = 3
    with pytest.raises(KeyError, match=r'buffer name can.+t contain "\."'):
        block.register_buffer("a.b", np.ones(1))
    with pytest.raises(KeyError, match=r"attribute 'not_registered' already exists"):
        block.register_parameter("not_registered", nn.Parameter(np.ones(1, np.float32)))
    with pytest.raises(TypeError, match=r"nn.Parameter or None required"):
        block.register_parameter("w", np.ones(1))
    with pytest.raises(TypeError, match=r"must be a numeric array"):
        block.register_buffer("labels", ["a", "b"])
    with pytest.raises(TypeError, match=r"list is not a Module subclass"):
        block.add_module("x", [])


def test_assigning_before_super_init_is_a_clear_error():
    class Forgetful(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(1, np.float32))

    with pytest.raises(AttributeError, match=r"before Module.__init__\(\) call.*Forgetful"):
        Forgetful()


def test_getattr_and_delattr():
    block = Block()
    with pytest.raises(AttributeError, match=r"'Block' object has no attribute 'missing'"):
        block.missing
    del block.fc
    del block.running
    del block.scale
    assert not hasattr(block, "fc") and not hasattr(block, "running")
    assert list(block.parameters()) == []
    assert list(block.state_dict()) == []
    del block.not_registered
    assert not hasattr(block, "not_registered")


def test_forward_missing_is_not_implemented():
    with pytest.raises(NotImplementedError, match=r"Module \[Module\] is missing the required"):
        nn.Module()(1)


def test_call_runs_forward():
    block = Block()
    x = ranvier.Tensor(np.ones((2, 3), np.float32))
    out = block(x)
    expected = (x.data @ block.fc.weight.data.T + block.fc.bias.data) * block.scale.data
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)


# ------------------------------------------------------------------------------- traversal


def test_named_parameters_order_and_dotted_names():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == [
        "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
        "block.scale", "block.fc.weight", "block.fc.bias", "head.weight"]
    assert [name for name, _ in net.named_parameters(prefix="model")][0] == "model.encoder.0.weight"
    assert list(net.named_parameters(recurse=False)) == []
    assert [name for name, _ in net.block.named_parameters(recurse=False)] == ["scale"]
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    assert net.encoder[0].weight is next(net.parameters())


def test_named_buffers_children_and_modules():
    net = Net()
    assert [name for name, _ in net.named_buffers()] == ["block.running", "block.scratch"]
    assert [name for name, _ in net.named_children()] == ["encoder", "block", "head"]
    assert list(net.children()) == [net.encoder, net.block, net.head]
    assert [name for name, _ in net.named_modules()] == [
        "", "encoder", "encoder.0", "encoder.1", "encoder.2", "block", "block.fc", "head"]
    assert len(list(net.modules())) == 8


def test_shared_parameters_and_modules_counted_once():
    first = nn.Linear(4, 4)
    second = nn.Linear(4, 4)
    second.weight = first.weight  # tied weights
    model = nn.Sequential(first, nn.ReLU(), second, first)  # first used twice
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.bias"]
    assert len(list(model.parameters())) == 3
    assert len(list(model.modules())) == 4  # Sequential, first, ReLU, second
    # The state dict names every path, as PyTorch does.
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias",
                                        "3.weight", "3.bias"]
    # Loading it back works and keeps the tie.
    model.load_state_dict(model.state_dict())
    assert second.weight is first.weight


def test_train_eval_propagate():
    net = Net()
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.block.train()
    assert net.block.fc.training and not net.encoder.training and not net.training
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match=r"expected to be boolean"):
        net.train("yes")


def test_zero_grad_and_requires_grad_():
    model = small_mlp()
    x = ranvier.Tensor(np.ones((2, 3), np.float32))
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert any(np.any(p.grad.data != 0) for p in model.parameters())
    grads = [p.grad for p in model.parameters()]
    model.zero_grad(set_to_none=False)
    for p, g in zip(model.parameters(), grads):
        assert p.grad is g  # same gradient object, filled with zeros
        assert np.all(p.grad.data == 0)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.zero_grad()  # no gradients: nothing to do

    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    model[0].requires_grad_()
    assert [p.requires_grad for p in model.parameters()] == [True, True, False, False]


def test_apply_visits_children_first():
    net = Net()
    visited = []
    assert net.apply(lambda m: visited.append(type(m).__name__)) is net
    assert visited == ["Linear", "ReLU", "Linear", "Sequential", "Linear", "Block", "Linear",
                       "Net"]


def test_apply_for_custom_init():
    model = small_mlp()

    def init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    model.apply(init_weights)
    np.testing.assert_array_equal(model[2].weight.data, np.ones((2, 4)))
    np.testing.assert_array_equal(model[0].bias.data, np.zeros(4))


# ------------------------------------------------------------------------------ state dict


def test_state_dict_keys_as_pytorch_names_them():
    assert list(small_mlp().state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    # Own parameters, then own persistent buffers, then children, recursively.
    assert list(Net().state_dict()) == [
        "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
        "block.scale", "block.running", "block.fc.weight", "block.fc.bias", "head.weight"]
    assert list(small_mlp().state_dict(prefix="model.")) == [
        "model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"]


def test_state_dict_values_are_detached_copies():
    model = small_mlp()
    state = model.state_dict()
    assert isinstance(state, OrderedDict)
    for key, value in state.items():
        assert type(value) is np.ndarray
        assert value.dtype == np.float32
    before = state["0.weight"].copy()
    model[0].weight.data[...] += 1.0  # training continues
    np.testing.assert_array_equal(state["0.weight"], before)
    state["0.bias"][...] = 99.0  # and editing the dict does not change the model
    assert not np.any(model[0].bias.data == 99.0)


def test_state_dict_keep_vars_returns_the_parameters():
    model = small_mlp()
    state = model.state_dict(keep_vars=True)
    assert state["0.weight"] is model[0].weight


def test_load_state_dict_copies_in_place():
    source, target = small_mlp(), small_mlp()
    weight = target[0].weight
    weight_array = weight.data
    result = target.load_state_dict(source.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    assert target[0].weight is weight and target[0].weight.data is weight_array
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key], value)


def test_load_state_dict_accepts_tensors_lists_and_other_dtypes():
    model = small_mlp()
    rng = np.random.default_rng(0)
    state = {
        "0.weight": rng.standard_normal((4, 3)),  # float64 into float32 parameters
        "0.bias": ranvier.Tensor(rng.standard_normal(4).astype(np.float32)),
        "2.weight": rng.standard_normal((2, 4)).tolist(),
        "2.bias": np.array([1, -2], dtype=np.int64),
    }
    model.load_state_dict(state)
    for key, value in state.items():
        got = model.state_dict()[key]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.asarray(value, dtype=np.float64).astype(np.float32))


def test_load_state_dict_strict_lists_every_problem():
    model = small_mlp()
    before = model.state_dict()
    state = small_mlp().state_dict()
    del state["0.bias"]
    del state["2.weight"]
    state["3.weight"] = np.zeros((2, 4), np.float32)
    state["0.weight"] = np.zeros((4, 5), np.float32)
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for Sequential:\n\t")
    assert 'Missing key(s) in state_dict: "0.bias", "2.weight". ' in message
    assert 'Unexpected key(s) in state_dict: "3.weight". ' in message
    assert ("size mismatch for 0.weight: copying a param with shape (4, 5) from checkpoint, "
            "the shape in current model is (4, 3).") in message
    # Nothing was loaded: the matching 2.bias was not copied either.
    for key, value in before.items():
        np.testing.assert_array_equal(model.state_dict()[key], value)


def test_load_state_dict_non_strict_reports_keys():
    model = small_mlp()
    state = small_mlp().state_dict()
    del state["2.bias"]
    state["extra.weight"] = np.ones(3)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["2.bias"]
    assert result.unexpected_keys == ["extra.weight"]
    missing, unexpected = result
    assert missing == ["2.bias"]
    np.testing.assert_array_equal(model[0].weight.data, state["0.weight"])


def test_load_state_dict_shape_mismatch_is_an_error_even_when_not_strict():
    model = small_mlp()
    state = model.state_dict()
    state["2.bias"] = np.zeros(3, np.float32)
    with pytest.raises(RuntimeError, match=r"size mismatch for 2.bias: copying a param with "
                                           r"shape \(3,\) from checkpoint, the shape in "
                                           r"current model is \(2,\)"):
        model.load_state_dict(state, strict=False)


def test_load_state_dict_bad_values():
    model = small_mlp()
    state = model.state_dict()
    state["0.bias"] = np.array(["a", "b", "c", "d"])
    with pytest.raises(RuntimeError, match=r'parameter named "0.bias", expected a numeric '
                                           r'array but got dtype <U1'):
        model.load_state_dict(state)
    with pytest.raises(TypeError, match=r"Expected state_dict to be dict-like"):
        model.load_state_dict([1, 2])


def test_buffers_in_state_dict_and_loaded_in_place():
    block = Block()
    running = block.running
    state = block.state_dict()
    assert "running" in state and "scratch" not in state
    state["running"] = np.arange(4, dtype=np.float64)
    block.load_state_dict(state)
    assert block.running is running
    np.testing.assert_array_equal(block.running, [0, 1, 2, 3])
    assert block.running.dtype == np.float32


def test_pytorch_shaped_state_dict_loads():
    """A dict laid out exactly as torch.nn would save these architectures loads strictly."""
    rng = np.random.default_rng(1)
    # torch.nn.Sequential(Linear(3, 4), ReLU(), Linear(4, 2)).state_dict(): weight (out, in).
    torch_like = OrderedDict([
        ("0.weight", rng.standard_normal((4, 3)).astype(np.float32)),
        ("0.bias", rng.standard_normal(4).astype(np.float32)),
        ("2.weight", rng.standard_normal((2, 4)).astype(np.float32)),
        ("2.bias", rng.standard_normal(2).astype(np.float32)),
    ])
    model = small_mlp()
    model.load_state_dict(torch_like)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    hidden = np.maximum(x @ torch_like["0.weight"].T + torch_like["0.bias"], 0)
    expected = hidden @ torch_like["2.weight"].T + torch_like["2.bias"]
    np.testing.assert_allclose(model(ranvier.Tensor(x)).data, expected, rtol=1e-5, atol=1e-6)


def test_torch_state_dict_loads():
    torch = pytest.importorskip("torch")
    torch_model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                      torch.nn.Linear(4, 2))
    model = small_mlp()
    model.load_state_dict(torch_model.state_dict())
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    expected = torch_model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model(ranvier.Tensor(x)).data, expected, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    net = Net()
    net.block.running[...] = np.arange(4)
    path = tmp_path / "net.safetensors"
    ranvier.save(net.state_dict(), path, metadata={"architecture": "Net"})
    ranvier.manual_seed(123)
    restored = Net()
    x = ranvier.Tensor(np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32))
    assert not np.array_equal(restored(x).data, net(x).data)
    restored.load_state_dict(ranvier.load(path))
    np.testing.assert_array_equal(restored(x).data, net(x).data)
    np.testing.assert_array_equal(restored.block.running, np.arange(4))
    assert ranvier.load_metadata(path) == {"architecture": "Net"}


def test_save_accepts_parameters_directly(tmp_path):
    model = small_mlp()
    path = tmp_path / "params.safetensors"
    ranvier.save(model.state_dict(keep_vars=True), path)
    loaded = ranvier.load(path)
    np.testing.assert_array_equal(loaded["2.weight"], model[2].weight.data)


# ------------------------------------------------------------------------------------ repr


def test_repr_of_a_small_sequential():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.25),
                          nn.Linear(4, 2, bias=False), nn.Softmax(dim=1))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Dropout(p=0.25)\n"
        "  (3): Linear(in_features=4, out_features=2, bias=False)\n"
        "  (4): Softmax(dim=1)\n"
        ")")


def test_repr_nests_with_indentation():
    assert repr(Net()) == (
        "Net(\n"
        "  (encoder): Sequential(\n"
        "    (0): Linear(in_features=5, out_features=8, bias=True)\n"
        "    (1): ReLU()\n"
        "    (2): Linear(in_features=8, out_features=3, bias=True)\n"
        "  )\n"
        "  (block): Block(\n"
        "    (fc): Linear(in_features=3, out_features=4, bias=True)\n"
        "  )\n"
        "  (head): Linear(in_features=4, out_features=2, bias=False)\n"
        ")")


def test_parameter_basics():
    p = nn.Parameter(np.array([1.0, 2.0], np.float32))
    assert p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter containing:\ntensor([1., 2.]")
    assert not nn.Parameter(np.zeros(2), requires_grad=False).requires_grad
    assert nn.Parameter().shape == (0,)
    array = np.zeros(3, np.float32)
    assert nn.Parameter(array).data is array  # shares memory, as torch.nn.Parameter
    assert nn.Parameter(ranvier.Tensor(array)).data is array
    with pytest.raises(TypeError, match=r"only floating-point tensors can require gradients"):
        nn.Parameter(np.arange(3))


# ------------------------------------------------------------------------------ Sequential


def test_sequential_container_protocol():
    first, relu, last = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    model = nn.Sequential(first, relu, last)
    assert len(model) == 3
    assert model[0] is first and model[-1] is last
    assert list(model) == [first, relu, last]
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [first, relu]
    assert list(model[1:].state_dict()) == ["2.weight", "2.bias"]  # keys kept, as PyTorch
    extra = nn.Sigmoid()
    assert model.append(extra) is model
    assert model[3] is extra and len(model) == 4
    replacement = nn.Tanh()
    model[1] = replacement
    assert model[1] is replacement
    with pytest.raises(IndexError, match=r"index 4 is out of range for a Sequential of length 4"):
        model[4]
    with pytest.raises(IndexError, match=r"index -5 is out of range"):
        model[-5]
    with pytest.raises(TypeError, match=r"indices must be integers or slices, not str"):
        model["0"]
    with pytest.raises(TypeError, match=r"cannot set element 0 to a int"):
        model[0] = 3
    with pytest.raises(TypeError, match=r"element '1' is a function, not a Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_sequential_from_ordered_dict():
    model = nn.Sequential(OrderedDict([("hidden", nn.Linear(3, 4)), ("act", nn.ReLU()),
                                       ("out", nn.Linear(4, 2))]))
    assert list(model.state_dict()) == ["hidden.weight", "hidden.bias", "out.weight",
                                        "out.bias"]
    assert model.hidden is model[0]
    x = ranvier.Tensor(np.ones((2, 3), np.float32))
    expected = model.out(model.act(model.hidden(x))).data
    np.testing.assert_array_equal(model(x).data, expected)
