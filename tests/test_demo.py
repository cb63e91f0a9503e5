"""`ranvier demo`: trains the breast-tumour classifier and reports held-out metrics."""

import io
import subprocess
import sys

import numpy as np
import pytest

import ranvier
from ranvier.demo import load_tumours, run_demo

# Fewer epochs than the demo's 30 keep this test quick. Measured when it was written: after
# 10 epochs the held-out accuracy for seeds 0..4 was 0.958, 0.972, 0.958, 0.972, 0.965 and
# the ROC AUC at least 0.990.
DEMO_TEST_EPOCHS = 10


def test_load_tumours_split_is_stratified_and_standardised_on_training_only():
    x_train, y_train, x_test, y_test, names = load_tumours(seed=0)
    assert x_train.shape == (426, 30) and x_test.shape == (143, 30) and len(names) == 30
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    # Stratified: both parts keep the 212:357 malignant:benign balance (37.3 % malignant).
    assert abs((y_train == 0).mean() - 212 / 569) < 0.01
    assert abs((y_test == 0).mean() - 212 / 569) < 0.01
    # Training statistics only: the training part is exactly standardised, the held-out not.
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=0), 1, atol=1e-5)
    assert np.abs(x_test.mean(axis=0)).max() > 1e-3


def test_run_demo_learns_the_tumours():
    printed = io.StringIO()
    result = run_demo(epochs=DEMO_TEST_EPOCHS, seed=0, progress=False, stream=printed)
    assert result["n_test"] == 143 and result["n_features"] == 30 and result["n_train"] == 426
    assert len(result["history"]) == DEMO_TEST_EPOCHS
    assert result["accuracy"] >= 0.95
    assert result["roc_auc"] > 0.97
    # Training lowers the loss from its start (about log 2 = 0.69).
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0] < 0.75
    text = printed.getvalue()
    assert "held-out accuracy: " in text.splitlines()[-1]
    assert text.count("train loss") == DEMO_TEST_EPOCHS


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_the_full_demo_is_good_on_every_seed(seed):
    # The demo as shipped (30 epochs, hidden 64, Adam lr 1e-3, batch 32): when this test was
    # written it reached accuracy 0.958-0.986 and ROC AUC 0.990-0.996 on seeds 0..4, each
    # with a different held-out split.
    result = run_demo(seed=seed, progress=False, stream=io.StringIO())
    assert result["epochs"] == 30
    assert result["accuracy"] >= 0.95
    assert result["roc_auc"] >= 0.985


def test_run_demo_with_progress_bars_still_ends_with_the_summary():
    printed = io.StringIO()
    result = run_demo(epochs=2, seed=0, progress=True, stream=printed)
    text = printed.getvalue()
    assert "epoch 1/2" in text and "batch" in text  # tqdm's bar
    assert text.rstrip().splitlines()[-1] == (
        f"held-out accuracy: {result['accuracy']:.3f}  ROC AUC: {result['roc_auc']:.3f}  "
        "(143 tumours, 30 features)")


def test_run_demo_auc_agrees_with_sklearn_on_the_trained_model(monkeypatch):
    from sklearn.metrics import roc_auc_score

    import ranvier.demo as demo

    seen = {}
    original = demo.roc_auc_score

    def recording_roc_auc(labels, scores):
        seen["scores"], seen["labels"] = np.array(scores), np.array(labels)
        return original(labels, scores)

    monkeypatch.setattr(demo, "roc_auc_score", recording_roc_auc)
    result = demo.run_demo(epochs=2, seed=1, progress=False, stream=io.StringIO())
    assert result["roc_auc"] == pytest.approx(roc_auc_score(seen["labels"], seen["scores"]), abs=1e-12)


def test_run_demo_is_reproducible():
    first = run_demo(epochs=2, seed=3, progress=False, stream=io.StringIO())
    second = run_demo(epochs=2, seed=3, progress=False, stream=io.StringIO())
    assert [h["train_loss"] for h in first["history"]] == [h["train_loss"] for h in second["history"]]


@pytest.mark.parametrize("bad, match", [
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(hidden=-3), "hidden must be a positive integer"),
    (dict(batch_size=2.5), "batch_size must be a positive integer"),
    (dict(lr=float("nan")), "lr must be a positive number"),
    (dict(lr=0.0), "lr must be a positive number"),
])
def test_run_demo_rejects_bad_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        run_demo(progress=False, **bad)


def test_cli_rejects_bad_options(capsys):
    from ranvier.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--epochs", "0"])
    assert exit_info.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


def test_cli_without_command_prints_help(capsys):
    from ranvier.cli import main

    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_python_m_ranvier_demo_runs(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "ranvier", "demo", "--epochs", "2", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert lines[-1].startswith("held-out accuracy: ")
    assert "ROC AUC: " in lines[-1] and "(143 tumours, 30 features)" in lines[-1]
    assert sum(line.startswith("epoch ") for line in lines) == 2


def test_ranvier_console_script_is_installed():
    # pyproject.toml declares `ranvier = "ranvier.cli:main"`; pip puts it beside the interpreter.
    from pathlib import Path

    script = Path(sys.executable).parent / "ranvier"
    if not script.exists():
        pytest.skip(f"no console script at {script} (ranvier not installed into this interpreter's prefix)")
    completed = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"ranvier {ranvier.__version__}"
    completed = subprocess.run([str(script), "demo", "--help"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "--epochs" in completed.stdout
