"""examples/pbmc_cell_types.py: fit with validation, early stopping and a checkpoint on the PBMC
cells shipped inside scanpy (skipped unless anndata and scanpy's data file are installed)."""

import importlib.util
import pathlib

import numpy as np
import pytest

from ranvier.cli import main as ranvier_main
from ranvier.train import load_checkpoint

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "pbmc_cell_types.py"
spec = importlib.util.spec_from_file_location("examples_pbmc_cell_types", EXAMPLE)
pbmc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pbmc)

have_data = (importlib.util.find_spec("anndata") is not None and pbmc.find_data() is not None)
needs_data = pytest.mark.skipif(not have_data, reason=pbmc.HOW_TO_GET)


def test_main_without_data_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setattr(pbmc, "find_data", lambda: None)
    assert pbmc.main(["--epochs", "1"]) == 1
    assert "pip install --no-deps scanpy" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cells():
    if not have_data:
        pytest.skip(pbmc.HOW_TO_GET)
    return pbmc.load_cells()


@needs_data
def test_cells_shape_and_labels(cells):
    x, y, classes, genes, ids = cells
    assert x.shape == (700, 765) and y.shape == (700,) and len(classes) == 10
    assert len(genes) == 765 and len(ids) == 700 and set(np.unique(y)) == set(range(10))


@needs_data
def test_short_run_learns_the_cell_types(cells, tmp_path):
    # Measured when written (8 epochs, hidden 64): test accuracy 0.807 / 0.879 / 0.793 and macro
    # F1 0.672 / 0.722 / 0.644 for seeds 0, 1, 2; 10 classes, so chance is about 0.1-0.3.
    result = pbmc.run(epochs=8, hidden=64, seed=0, checkpoint_dir=tmp_path, progress=False,
                      data=cells)
    assert result["accuracy"] >= 0.7 and result["macro_f1"] >= 0.55
    assert result["confusion"].shape == (10, 10) and result["confusion"].sum() == result["n_test"]
    best = int(np.argmin(result["history"].history["val_loss"]))
    assert load_checkpoint(result["checkpoint"])["epoch"] == best


@needs_data
def test_exported_csv_trains_with_the_command_line(cells, tmp_path, capsys):
    table = tmp_path / "pbmc.csv"
    pbmc.export_csv(table, *cells)
    out = tmp_path / "model"
    assert ranvier_main(["train", str(table), "--target", "bulk_labels", "--epochs", "5",
                         "--hidden", "64", "--no-progress", "--out", str(out)]) == 0
    assert "classification of 10 classes" in capsys.readouterr().out
    assert ranvier_main(["predict", str(out), str(table), "--out", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 701
