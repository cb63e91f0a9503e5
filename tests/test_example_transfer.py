"""examples/transfer_learning.py on a small setting: the frozen body stays fixed, the head
trains, load_state_dict(strict=False) reports exactly the heads' keys, fine-tuning learns."""

import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("sklearn")

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "transfer_learning.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("transfer_learning_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    example = _load_example()
    path = tmp_path_factory.mktemp("transfer") / "digits_0to4.safetensors"
    return example.run(pretrain_epochs=3, head_epochs=5, finetune_epochs=5, few_shot=100,
                       seed=0, weights_path=str(path), log=lambda *args: None)


def test_load_state_dict_reports_exactly_the_heads_keys(metrics):
    assert metrics["missing_keys"] == ["head_5to9.weight", "head_5to9.bias"]
    assert metrics["unexpected_keys"] == ["head_0to4.weight", "head_0to4.bias"]
    assert sorted(metrics["missing_keys"]) == sorted(metrics["head_keys"]["new"])
    assert sorted(metrics["unexpected_keys"]) == sorted(metrics["head_keys"]["pretrained"])


def test_frozen_body_is_unchanged_and_head_trains(metrics):
    before, after = metrics["body_before"], metrics["body_after_head"]
    assert before.keys() == after.keys() and len(before) == 6   # 2 conv + 1 linear, w and b
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    for key in metrics["head_before"]:
        assert not np.array_equal(metrics["head_after_head"][key], metrics["head_before"][key]), key


def test_fine_tuned_accuracy_is_well_above_chance(metrics):
    # 5 classes: chance is 0.2. Measured on this setting (seed 0): see the README section.
    assert metrics["accuracy_finetuned"] > 0.6
    assert metrics["accuracy_head"] > 0.4


def test_main_runs_from_the_command_line(tmp_path, capsys):
    example = _load_example()
    assert example.main(["--pretrain-epochs", "1", "--epochs", "1", "--few-shot", "20",
                         "--save", str(tmp_path / "w.safetensors")]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    assert (tmp_path / "w.safetensors").exists()
