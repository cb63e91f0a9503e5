"""`ranvier train` / `ranvier predict` on CSV/TSV tables: a model that predict applies, and
one-line errors (exit code 2) for user mistakes."""

import csv
import json

import numpy as np
import pytest

from ranvier.cli import main


def _write(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _cells(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    labels = np.where(x[:, 0] > 0.3, "T", np.where(x[:, 1] > 0, "B", "NK"))
    header = ["cell"] + [f"gene{i}" for i in range(5)] + ["type"]
    rows = [[f"c{i}"] + [f"{v:.5f}" for v in x[i]] + [labels[i]] for i in range(n)]
    return header, rows, labels


FAST = ["--epochs", "25", "--hidden", "32", "--no-progress", "--lr", "0.01"]


def test_train_then_predict_classification(tmp_path, capsys):
    header, rows, labels = _cells()
    table = _write(tmp_path / "cells.csv", header, rows)
    test_header, test_rows, test_labels = _cells(60, seed=1)
    test = _write(tmp_path / "test.tsv", test_header, test_rows, delimiter="\t")
    out = tmp_path / "model"
    assert main(["train", table, "--target", "type", "--test", test, "--out", str(out)] + FAST) == 0
    printed = capsys.readouterr().out
    assert "classification of 3 classes" in printed and "test: accuracy" in printed
    for name in ("model.safetensors", "model.json", "metrics.json", "history.json"):
        assert (out / name).exists()
    spec = json.loads((out / "model.json").read_text())
    assert spec["classes"] == ["B", "NK", "T"] and spec["id_column"] == "cell"
    assert spec["features"] == [f"gene{i}" for i in range(5)] and spec["hidden"] == [32]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8 and set(metrics["test"]) == {"accuracy", "macro_f1", "roc_auc"}

    # predict: columns in another order and without the target
    order = [0, 3, 1, 5, 2, 4]
    shuffled = _write(tmp_path / "new.csv", [test_header[i] for i in order],
                      [[r[i] for i in order] for r in test_rows])
    predictions = tmp_path / "p.csv"
    assert main(["predict", str(out), shuffled, "--out", str(predictions)]) == 0
    with open(predictions) as f:
        result = list(csv.reader(f))
    assert result[0] == ["cell", "predicted", "probability_B", "probability_NK", "probability_T"]
    assert [r[0] for r in result[1:]] == [f"c{i}" for i in range(60)]
    probabilities = np.array([[float(v) for v in r[2:]] for r in result[1:]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    accuracy = np.mean([r[1] == label for r, label in zip(result[1:], test_labels)])
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)


def test_train_regression_on_numeric_target(tmp_path, capsys):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 10
    table = _write(tmp_path / "expr.csv", ["a", "b", "c", "level"],
                   [[f"{v:.6f}" for v in row] + [f"{t:.6f}"] for row, t in zip(x, y)])
    out = tmp_path / "reg"
    assert main(["train", table, "--target", "level", "--out", str(out), "--hidden", "16",
                 "--epochs", "60", "--lr", "0.01", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["validation"]
    assert set(metrics) == {"mse", "r2"} and metrics["r2"] > 0.9
    assert main(["predict", str(out), table, "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv") as f:
        result = list(csv.reader(f))
    assert result[0] == ["row", "predicted_level"]
    predicted = np.array([float(r[1]) for r in result[1:]])
    assert np.corrcoef(predicted, y)[0, 1] > 0.95
    capsys.readouterr()


def _error(capsys, argv, pattern):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert pattern in err, err
    return err


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    header, rows, _ = _cells(40)
    table = _write(tmp_path / "cells.csv", header, rows)
    _error(capsys, ["train", str(tmp_path / "nope.csv"), "--target", "type"], "no such file")
    _error(capsys, ["train", table, "--target", "celltype"], "no target column 'celltype'")
    bad = [list(r) for r in rows]
    bad[4][2] = "high"
    _error(capsys, ["train", _write(tmp_path / "bad.csv", header, bad), "--target", "type"],
           "column 'gene1' has the non-numeric value 'high' on line 6")
    single = [r[:-1] + ["T"] for r in rows]
    _error(capsys, ["train", _write(tmp_path / "one.csv", header, single), "--target", "type"],
           "single class 'T'")
    missing = [list(r) for r in rows]
    missing[2][3] = ""
    missing[7][1] = "NA"
    _error(capsys, ["train", _write(tmp_path / "na.csv", header, missing), "--target", "type"],
           "missing values on lines 4, 9 in columns 'gene0', 'gene2'")
    _error(capsys, ["train", _write(tmp_path / "empty.csv", header, []), "--target", "type"],
           "has a header but no rows")
    rare = [list(r) for r in rows]
    rare[0][-1] = "rare"
    _error(capsys, ["train", _write(tmp_path / "rare.csv", header, rare), "--target", "type"],
           "cannot hold out a validation part")
    _error(capsys, ["train", table, "--target", "type", "--lr", "1e30", "--epochs", "3"],
           "training diverged")
    (tmp_path / "blank.csv").write_text("")
    _error(capsys, ["train", str(tmp_path / "blank.csv"), "--target", "type"], "the table is empty")


def test_impute_fills_missing_values(tmp_path, capsys):
    header, rows, _ = _cells(80)
    missing = [list(r) for r in rows]
    missing[2][3] = ""
    table = _write(tmp_path / "na.csv", header, missing)
    out = tmp_path / "m"
    assert main(["train", table, "--target", "type", "--impute", "--out", str(out)] + FAST) == 0
    spec = json.loads((out / "model.json").read_text())
    assert len(spec["impute"]) == 5 and all(np.isfinite(spec["impute"]))
    assert main(["predict", str(out), table, "--out", str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()


def test_predict_refuses_mismatched_columns(tmp_path, capsys):
    header, rows, _ = _cells(60)
    table = _write(tmp_path / "cells.csv", header, rows)
    out = tmp_path / "m"
    assert main(["train", table, "--target", "type", "--out", str(out), "--epochs", "2",
                 "--hidden", "4", "--no-progress"]) == 0
    renamed = ["cell", "gene0", "geneX", "gene2", "gene3", "gene4", "type"]
    err = _error(capsys, ["predict", str(out), _write(tmp_path / "other.csv", renamed, rows)],
                 "do not match the model's")
    assert "missing columns 'gene1'" in err and "unexpected columns 'geneX'" in err
    _error(capsys, ["predict", str(tmp_path), table], "not a model directory")


def test_h5ad_table_through_anndata(tmp_path, capsys):
    anndata = pytest.importorskip("anndata")
    pd = pytest.importorskip("pandas")
    header, rows, labels = _cells(90)
    x = np.array([[float(v) for v in r[1:-1]] for r in rows], dtype=np.float32)
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels), "n_counts": np.arange(90.0)},
                       index=[f"cell{i}" for i in range(90)])
    var = pd.DataFrame(index=[f"gene{i}" for i in range(5)])
    path = tmp_path / "cells.h5ad"
    anndata.AnnData(X=x, obs=obs, var=var).write_h5ad(path)
    out = tmp_path / "m"
    assert main(["train", str(path), "--target", "cell_type", "--out", str(out)] + FAST) == 0
    spec = json.loads((out / "model.json").read_text())
    assert spec["features"] == [f"gene{i}" for i in range(5)] and spec["id_column"] == "obs_names"
    assert main(["predict", str(out), str(path), "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv") as f:
        result = list(csv.reader(f))
    assert result[0][:2] == ["obs_names", "predicted"] and result[1][0] == "cell0"
    assert np.mean([r[1] == label for r, label in zip(result[1:], labels)]) > 0.8
    _error(capsys, ["train", str(path), "--target", "louvain"], "no target column 'louvain'")
    (tmp_path / "broken.h5ad").write_text("not hdf5")
    _error(capsys, ["train", str(tmp_path / "broken.h5ad"), "--target", "cell_type"],
           "cannot be read as .h5ad")


def test_h5ad_without_anndata_says_how_to_install(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "anndata", None)
    (tmp_path / "x.h5ad").write_bytes(b"")
    _error(capsys, ["train", str(tmp_path / "x.h5ad"), "--target", "t"],
           "needs anndata (pip install anndata, or ranvier[h5ad])")
